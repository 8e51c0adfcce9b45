/*
 * test_policy_errors.c - the policy parser's errors (include/sluice/policy.h):
 * for each kind of mistake the code, line, column and message, the ceilings,
 * and NULL arguments and malformed options.
 */
#include "policy_test_util.h"

#define HEAD "policy \"t\"\nscope ip\n"

static void expect_error(const char *text, int code, int line, int column, const char *needle)
{
	struct sluice_policy_error e = load_error(text);
	cr_expect_eq(e.code, code, "code %d (%s) for:\n%s", e.code, e.message, text);
	cr_expect_eq(e.line, line, "line %d (%s)", e.line, e.message);
	cr_expect_eq(e.column, column, "column %d (%s)", e.column, e.message);
	cr_expect_not_null(strstr(e.message, needle), "message '%s' lacks '%s'", e.message, needle);
}

Test(policy_errors, structure)
{
	expect_error("", SLUICE_ESYNTAX, 1, 1, "policy");
	expect_error("# only a comment\n", SLUICE_ESYNTAX, 1, 1, "policy");
	expect_error("scope ip\n", SLUICE_ESYNTAX, 1, 1, "first directive");
	expect_error("policy \"a\"\npolicy \"b\"\n", SLUICE_EINVAL, 2, 1, "second");
	expect_error("policy \"a\"\n", SLUICE_EINVAL, 1, 1, "at least one");
	expect_error(HEAD "limits x\n", SLUICE_ESYNTAX, 3, 1, "unknown directive 'limits'");
	expect_error("policy a\n", SLUICE_ESYNTAX, 1, 8, "quoted string");
	expect_error("policy\n", SLUICE_ESYNTAX, 1, 7, "at end of line");
	expect_error("policy \"a\" extra\n", SLUICE_ESYNTAX, 1, 12, "end of line");
	expect_error("policy \"\"\n", SLUICE_EINVAL, 1, 8, "empty");
}

Test(policy_errors, lexical)
{
	expect_error("policy \"abc\n", SLUICE_ESYNTAX, 1, 8, "unterminated");
	expect_error("policy \"a\"x\n", SLUICE_ESYNTAX, 1, 11, "space");
	expect_error("policy \"a\\q\"\n", SLUICE_ESYNTAX, 1, 10, "escape");
	expect_error("policy \"a\\x4\"\n", SLUICE_ESYNTAX, 1, 10, "hex");
	expect_error("policy \"\\x01\"\n", SLUICE_EINVAL, 1, 9, "printable");
	expect_error("policy \"a\"\nscope \xc3\xa9\n", SLUICE_ESYNTAX, 2, 7, "0xc3");
	expect_error("policy \"a\"\rscope ip\n", SLUICE_ESYNTAX, 1, 11, "carriage return");
	expect_error("policy \"a\" # \x01\n", SLUICE_ESYNTAX, 1, 14, "comment");
	static const char nul[] = "policy \"a\"\nscope i\0p\n";
	struct sluice_policy *p = NULL;
	struct sluice_policy_error e;
	cr_assert_eq(sluice_policy_parse(nul, sizeof(nul) - 1, NULL, &p, &e), SLUICE_ESYNTAX);
	cr_assert(e.line == 2 && e.column == 8);
	cr_assert_not_null(strstr(e.message, "NUL"));
	expect_error(HEAD "scope a\"b\"\n", SLUICE_ESYNTAX, 3, 8, "inside a word");
}

Test(policy_errors, names)
{
	expect_error(HEAD "scope 9x\n", SLUICE_ESYNTAX, 3, 7, "a letter or '_' first");
	expect_error(HEAD "scope a.b\n", SLUICE_ESYNTAX, 3, 8, "'.'");
	expect_error(HEAD "scope ip\n", SLUICE_EINVAL, 3, 7, "already declared");
	expect_error(HEAD "scope class\n", SLUICE_EINVAL, 3, 7, "reserved");
	expect_error(HEAD "scope abcdefghijabcdefghijabcdefghijab\n", SLUICE_ETOOBIG, 3, 7, "longer than 31");
	expect_error(HEAD "scope \"ip\"\n", SLUICE_ESYNTAX, 3, 7, "not a string");
	expect_error(HEAD "limit a per ip rate 1/1s\nlimit a per ip rate 1/1s\n", SLUICE_EINVAL, 4, 7,
		     "already declared on line 3");
	expect_error(HEAD "class a\nclass a\n", SLUICE_EINVAL, 4, 7, "already declared");
}

Test(policy_errors, limits)
{
	expect_error(HEAD "limit a\n", SLUICE_ESYNTAX, 3, 8, "'per'");
	expect_error(HEAD "limit a by ip\n", SLUICE_ESYNTAX, 3, 9, "expected 'per'");
	expect_error(HEAD "limit a per tok rate 1/1s\n", SLUICE_ENOTFOUND, 3, 13, "unknown scope 'tok'");
	expect_error(HEAD "limit a per ip+ip rate 1/1s\n", SLUICE_EINVAL, 3, 16, "twice");
	expect_error(HEAD "limit a per ip+ rate 1/1s\n", SLUICE_ESYNTAX, 3, 16, "scope name");
	expect_error(HEAD "limit a per ip on nope rate 1/1s\n", SLUICE_ENOTFOUND, 3, 19, "unknown class");
	expect_error(HEAD "limit a per ip on default,default rate 1/1s\n", SLUICE_EINVAL, 3, 27, "twice");
	expect_error(HEAD "limit a per ip bucket 1/1s\n", SLUICE_ESYNTAX, 3, 16, "limit kind");
	expect_error(HEAD "limit a per ip rate\n", SLUICE_ESYNTAX, 3, 20, "at end of line");
	expect_error(HEAD "limit a per ip rate 120\n", SLUICE_ESYNTAX, 3, 24, "'/'");
	expect_error(HEAD "limit a per ip rate 120/1\n", SLUICE_ESYNTAX, 3, 26, "unit");
	expect_error(HEAD "limit a per ip rate 120/1w\n", SLUICE_ESYNTAX, 3, 26, "unit");
	expect_error(HEAD "limit a per ip rate 120/m\n", SLUICE_ESYNTAX, 3, 25, "digits");
	expect_error(HEAD "limit a per ip rate 0/1m\n", SLUICE_EINVAL, 3, 21, "at least 1");
	expect_error(HEAD "limit a per ip rate 1/0s\n", SLUICE_EINVAL, 3, 23, "longer than 0");
	expect_error(HEAD "limit a per ip rate 1099511627777/1s\n", SLUICE_ERANGE, 3, 21, "out of range");
	expect_error(HEAD "limit a per ip rate 99999999999999999999999/1s\n", SLUICE_ERANGE, 3, 21, "out of range");
	expect_error(HEAD "limit a per ip sliding 1/4611686018427387905ns\n", SLUICE_ERANGE, 3, 26, "2^62");
	expect_error(HEAD "limit a per ip sliding 1/53376d\n", SLUICE_ERANGE, 3, 26, "2^62");
	expect_error(HEAD "limit a per ip rate 1/1m@utc\n", SLUICE_EINVAL, 3, 25, "quota");
	expect_error(HEAD "limit a per ip quota 1/1d\n", SLUICE_ESYNTAX, 3, 26, "@utc");
	expect_error(HEAD "limit a per ip quota 1/7d@utc\n", SLUICE_EINVAL, 3, 22, "divide one day");
	expect_error(HEAD "limit a per ip quota 1/500ms@utc\n", SLUICE_EINVAL, 3, 22, "at least 1s");
	expect_error(HEAD "limit a per ip quota 1/7m@utc\n", SLUICE_EINVAL, 3, 22, "divide one day");
	expect_error(HEAD "limit a per ip rate 1/50000d burst 2\n", SLUICE_ERANGE, 3, 16, "too deep");
	expect_error(HEAD "limit a per ip sliding 1/1s burst 2\n", SLUICE_EINVAL, 3, 29, "'rate' limits only");
	expect_error(HEAD "limit a per ip rate 1/1s burst 2 burst 3\n", SLUICE_EINVAL, 3, 34, "duplicate");
	expect_error(HEAD "limit a per ip rate 1/1s burst 0\n", SLUICE_EINVAL, 3, 32, "at least 1");
	expect_error(HEAD "limit a per ip rate 1/1s lease 1s\n", SLUICE_EINVAL, 3, 26, "'concurrency' limits only");
	expect_error(HEAD "limit a per ip concurrency 0\n", SLUICE_EINVAL, 3, 28, "at least 1");
	expect_error(HEAD "limit a per ip concurrency 5 retry-after 0s\n", SLUICE_EINVAL, 3, 42, "longer than 0");
	expect_error(HEAD "limit a per ip concurrency 5/1s\n", SLUICE_ESYNTAX, 3, 29, "digits");
	expect_error(HEAD "limit a per ip rate 1/1s warn 80\n", SLUICE_ESYNTAX, 3, 33, "'%'");
	expect_error(HEAD "limit a per ip rate 1/1s warn 0%\n", SLUICE_EINVAL, 3, 31, "1% to 100%");
	expect_error(HEAD "limit a per ip rate 1/1s warn 101%\n", SLUICE_ERANGE, 3, 31, "out of range");
	expect_error(HEAD "limit a per ip rate 1/1s tiered tiered\n", SLUICE_EINVAL, 3, 33, "duplicate");
	expect_error(HEAD "limit a per ip rate 1/1s fast\n", SLUICE_ESYNTAX, 3, 26, "an option");
}

Test(policy_errors, response_directives)
{
	expect_error(HEAD "headers draft-5\n", SLUICE_ESYNTAX, 3, 9, "header family");
	expect_error(HEAD "headers draft-6 reset=unix-ms\n", SLUICE_EINVAL, 3, 17, "delta seconds");
	expect_error(HEAD "headers x-ratelimit reset=unix\n", SLUICE_ESYNTAX, 3, 27, "unix-ms");
	expect_error(HEAD "headers x-ratelimit reset=delta reset=delta\n", SLUICE_EINVAL, 3, 33, "duplicate");
	expect_error(HEAD "headers x-ratelimit retry-after=maybe\n", SLUICE_ESYNTAX, 3, 33, "yes or no");
	expect_error(HEAD "headers none\nheaders none\n", SLUICE_EINVAL, 4, 1, "second");
	expect_error(HEAD "body html\n", SLUICE_ESYNTAX, 3, 6, "body style");
	expect_error(HEAD "fail sometimes\n", SLUICE_ESYNTAX, 3, 6, "open or closed");
}

Test(policy_errors, routes)
{
	expect_error(HEAD "class a match get /x\n", SLUICE_ESYNTAX, 3, 15, "upper case");
	expect_error(HEAD "class a match GET x\n", SLUICE_ESYNTAX, 3, 19, "starting with '/'");
	expect_error(HEAD "class a match GET /x/\n", SLUICE_ESYNTAX, 3, 22, "trailing");
	expect_error(HEAD "class a match GET /x//y\n", SLUICE_ESYNTAX, 3, 22, "empty segment");
	expect_error(HEAD "class a match GET /*/y\n", SLUICE_ESYNTAX, 3, 21, "last segment");
	expect_error(HEAD "class a match GET /x*\n", SLUICE_ESYNTAX, 3, 21, "'*'");
	expect_error(HEAD "class a match GET /x?y\n", SLUICE_ESYNTAX, 3, 21, "'?'");
	expect_error(HEAD "class a match GET /:\n", SLUICE_ESYNTAX, 3, 21, "parameter name");
	expect_error(HEAD "class a match GET /a:b\n", SLUICE_ESYNTAX, 3, 21, "':'");
	expect_error(HEAD "class a match GET\n", SLUICE_ESYNTAX, 3, 18, "path pattern");
	expect_error(HEAD "class a matches GET /x\n", SLUICE_ESYNTAX, 3, 9, "'match'");
	expect_error(HEAD "class a match GET /x\nclass b match GET /x\n", SLUICE_EINVAL, 4, 19, "line 3");
	expect_error(HEAD "class a match * /x/*\nclass b match * /x/*\n", SLUICE_EINVAL, 4, 17, "duplicate route");
	expect_error(HEAD "class a match ABCDEFGHIJKLMNOPQ /x\n", SLUICE_ETOOBIG, 3, 15, "method longer");
	expect_error(HEAD "class a match GET /1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16/17\n", SLUICE_ETOOBIG, 3, 59,
		     "more than 16 segments");
}

Test(policy_errors, tiers_and_overrides)
{
	expect_error(HEAD "tier S 2\n", SLUICE_ESYNTAX, 3, 8, "multiplier");
	expect_error(HEAD "tier S x0\n", SLUICE_ERANGE, 3, 8, "x0.001");
	expect_error(HEAD "tier S x1000.001\n", SLUICE_ERANGE, 3, 8, "x1000");
	expect_error(HEAD "tier S x1001\n", SLUICE_ERANGE, 3, 9, "out of range");
	expect_error(HEAD "tier S x1.2345\n", SLUICE_ESYNTAX, 3, 14, "3 decimals");
	expect_error(HEAD "tier S x1.\n", SLUICE_ESYNTAX, 3, 11, "digits after '.'");
	expect_error(HEAD "tier S x1\ntier S x2\n", SLUICE_EINVAL, 4, 6, "already declared");
	/* tiers are checked against limits declared after them too */
	expect_error(HEAD "tier tiny x0.1\nlimit a per ip rate 5/1s tiered\n", SLUICE_ERANGE, 4, 1, "rounds down to 0");
	expect_error(HEAD "limit a per ip rate 1099511627776/1s tiered\ntier big x2\n", SLUICE_ERANGE, 3, 1,
		     "out of range");

#define OV HEAD "scope org\nlimit a per org rate 10/1s\n"
	expect_error(OV "override b org \"x\" 1 until 2030-01-01T00:00:00Z\n", SLUICE_ENOTFOUND, 5, 10, "unknown limit");
	expect_error(OV "override a team \"x\" 1 until 2030-01-01T00:00:00Z\n", SLUICE_ENOTFOUND, 5, 12, "unknown scope");
	expect_error(OV "override a ip \"x\" 1 until 2030-01-01T00:00:00Z\n", SLUICE_EINVAL, 5, 12, "not kept per 'ip'");
	expect_error(OV "override a org x 1 until 2030-01-01T00:00:00Z\n", SLUICE_ESYNTAX, 5, 16, "quoted");
	expect_error(OV "override a org \"\" 1 until 2030-01-01T00:00:00Z\n", SLUICE_EINVAL, 5, 16, "empty");
	expect_error(OV "override a org \"x\" 1 after 2030-01-01T00:00:00Z\n", SLUICE_ESYNTAX, 5, 22, "'until'");
	expect_error(OV "override a org \"x\" 1 until 2030-01-01\n", SLUICE_ESYNTAX, 5, 28, "UTC time");
	expect_error(OV "override a org \"x\" 1 until 2030-01-01T00:00:00\n", SLUICE_ESYNTAX, 5, 28, "UTC time");
	expect_error(OV "override a org \"x\" 1 until 2030-01-01T00:00:00+01:00\n", SLUICE_ESYNTAX, 5, 47, "'Z'");
	expect_error(OV "override a org \"x\" 1 until 2030-02-29T00:00:00Z\n", SLUICE_ERANGE, 5, 28, "no such time");
	expect_error(OV "override a org \"x\" 1 until 2100-02-29T00:00:00Z\n", SLUICE_ERANGE, 5, 28, "no such time");
	expect_error(OV "override a org \"x\" 1 until 1969-12-31T23:59:59Z\n", SLUICE_ERANGE, 5, 28, "1970");
	expect_error(OV "override a org \"x\" 1 until 2501-01-01T00:00:00Z\n", SLUICE_ERANGE, 5, 28, "2500");
	expect_error(OV "override a org \"x\" 1 until 2030-01-01T24:00:00Z\n", SLUICE_ERANGE, 5, 28, "no such time");
	expect_error(OV "override a org \"x\" 1 until 2030-01-01T00:00:00.Z\n", SLUICE_ESYNTAX, 5, 48, "after '.'");
	expect_error(OV "override a org \"x\" 1 until 2030-01-01T00:00:00.1234567891Z\n", SLUICE_ESYNTAX, 5, 57, "'Z'");
	expect_error(OV "override a org \"x\" 1 until 2030-01-01T00:00:00Z\n"
			"override a org \"x\" 2 until 2031-01-01T00:00:00Z\n",
		     SLUICE_EINVAL, 6, 16, "duplicate override (line 5)");
	expect_error(OV "limit s per ip sliding 1/1s\noverride s ip \"x\" 2 burst 3 until 2031-01-01T00:00:00Z\n",
		     SLUICE_EINVAL, 6, 21, "'rate' limits only");
	expect_error(OV "override a org \"x\" 0 until 2030-01-01T00:00:00Z\n", SLUICE_EINVAL, 5, 20, "at least 1");
#undef OV
}

static void expect_too_big(const char *head, const char *line_fmt, int n, int bad_line)
{
	size_t cap = 1 << 16;
	char *text = malloc(cap);
	size_t len = (size_t)snprintf(text, cap, "%s", head);
	for (int i = 0; i < n; i++)
		len += (size_t)snprintf(text + len, cap - len, line_fmt, i, i, i);
	struct sluice_policy *p = NULL;
	struct sluice_policy_error e;
	cr_assert_eq(sluice_policy_parse(text, len, NULL, &p, &e), SLUICE_ETOOBIG, "%s", e.message);
	cr_assert_eq(e.line, bad_line, "line %d: %s", e.line, e.message);
	free(text);
}

Test(policy_errors, ceilings)
{
	expect_too_big("policy \"t\"\n", "scope s%d%d%d\n", 9, 10);
	expect_too_big(HEAD, "limit l%d%d%d per ip rate 1/1s\n", 33, 35);
	expect_too_big(HEAD, "class c%d%d%d\n", 64, 66);
	expect_too_big(HEAD, "class c match GET /r%d%d%d\n", 257, 259);
	expect_too_big(HEAD, "class c match M%dX%dX%d /r\n", 17, 19);
	expect_too_big(HEAD, "tier t%d%d%d x1\n", 17, 19);
	expect_too_big(HEAD "limit l per ip rate 1/1s\n", "override l ip \"k%d%d%d\" 1 until 2030-01-01T00:00:00Z\n",
		       257, 260);

	/* the whole input, and a key, a pattern, a title past their sizes */
	size_t big = SLUICE_POLICY_MAX_INPUT + 1;
	char *text = malloc(big);
	memset(text, ' ', big);
	struct sluice_policy *p = NULL;
	struct sluice_policy_error e;
	cr_assert_eq(sluice_policy_parse(text, big, NULL, &p, &e), SLUICE_ETOOBIG);
	cr_assert_eq(e.line, 0);
	cr_assert_eq(sluice_policy_parse(text, big - 1, NULL, &p, &e), SLUICE_ESYNTAX); /* all blank: no policy */
	free(text);

	char buf[1024];
	char key[SLUICE_POLICY_MAX_KEY + 2];
	memset(key, 'k', sizeof(key) - 1);
	key[sizeof(key) - 1] = '\0';
	snprintf(buf, sizeof(buf), HEAD "limit l per ip rate 1/1s\noverride l ip \"%s\" 1 until 2030-01-01T00:00:00Z\n", key);
	expect_error(buf, SLUICE_ETOOBIG, 4, 15, "longer than 128");
	key[SLUICE_POLICY_MAX_KEY] = '\0';
	snprintf(buf, sizeof(buf), HEAD "limit l per ip rate 1/1s\noverride l ip \"%s\" 1 until 2030-01-01T00:00:00Z\n", key);
	sluice_policy_destroy(load_text(buf));

	char pat[SLUICE_POLICY_MAX_PATTERN + 2];
	memset(pat, 'a', sizeof(pat) - 1);
	pat[0] = '/';
	pat[sizeof(pat) - 1] = '\0';
	snprintf(buf, sizeof(buf), HEAD "class c match GET %s\n", pat);
	expect_error(buf, SLUICE_ETOOBIG, 3, 19, "longer than 256");

	expect_error("policy \"0123456789012345678901234567890123456789012345678901234567890123\"\n", SLUICE_ETOOBIG, 1,
		     8, "longer than 63");
}

Test(policy_errors, too_many_words_on_a_line)
{
	expect_error(HEAD "limit a per ip rate 1/1s tiered tiered tiered tiered tiered tiered tiered tiered "
			  "tiered tiered tiered tiered tiered tiered tiered tiered tiered tiered x\n",
		     SLUICE_ESYNTAX, 3, 152, "too many words");
}

Test(policy_errors, null_arguments_and_options)
{
	struct sluice_policy *p = (struct sluice_policy *)&p;
	struct sluice_policy_error e;
	cr_assert_eq(sluice_policy_parse(NULL, 0, NULL, &p, &e), SLUICE_EINVAL);
	cr_assert_null(p);
	cr_assert_eq(sluice_policy_parse("x", 1, NULL, NULL, &e), SLUICE_EINVAL);
	cr_assert_eq(sluice_policy_parse("x", 1, NULL, &p, NULL), SLUICE_ESYNTAX); /* err may be NULL */

	struct sluice_policy_options o = {0};
	cr_assert_eq(sluice_policy_parse("x", 1, &o, &p, &e), SLUICE_EINVAL); /* size 0 */
	o.size = sizeof(o) + 8;
	cr_assert_eq(sluice_policy_parse("x", 1, &o, &p, &e), SLUICE_EINVAL);
	o.size = sizeof(o);
	o.alloc_ctx = NULL;
	o.free = NULL;
	o.alloc = NULL;
	const char *t = HEAD "limit a per ip rate 1/1s\n";
	cr_assert_eq(sluice_policy_parse(t, strlen(t), &o, &p, &e), SLUICE_OK);
	sluice_policy_destroy(p);
}
