/*
 * test_http_template.c - response templates (sluice/template.h): every
 * placeholder with exact values and rounding, brace escapes, JSON escaping
 * (each special byte, UTF-8 kept or replaced, long values), sizes (exact
 * fit, one byte short), and compile errors with their offsets.
 */
#include <criterion/criterion.h>
#include <sluice.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEC 1000000000ull
#define MAX_INT 999999999999999ull
#define SLUICE_MIN_TEST(a, b) ((a) < (b) ? (a) : (b))

static struct sluice_template tpl; /* 4 KiB and more: not on the stack */

/* A denial: limit 100, nothing left, full again in 30.500000001 s, retry in
 * 1.2 s, at Unix time 1795392000.25 s. */
static struct sluice_template_values denial(void)
{
	struct sluice_template_values v = {
		.decision = {.allowed = false, .reason = SLUICE_REASON_RATE, .limit = 100, .remaining = 0,
			     .reset_ns = 30 * SEC + 500000001ull, .retry_after_ns = 1200000000ull},
		.now_unix_ns = 1795392000ull * SEC + 250000000ull,
		.status = 429,
		.limit_name = "per_token",
		.limit_name_len = 9,
		.scope = "token",
		.scope_len = 5,
		.policy = "Seed 000",
		.policy_len = 8,
	};
	return v;
}

static void compile(const char *text, unsigned flags)
{
	struct sluice_template_error e;
	int rc = sluice_template_compile(text, strlen(text), flags, &tpl, &e);
	cr_assert_eq(rc, SLUICE_OK, "'%s': %d at %zu: %s", text, rc, e.offset, e.message);
}

/* Render into a fresh buffer; checks size and NUL. */
static const char *render(const struct sluice_template_values *v)
{
	static char buf[1 << 16];
	size_t size = 0;
	int rc = sluice_template_render(&tpl, v, buf, sizeof(buf), &size);
	cr_assert_eq(rc, SLUICE_OK);
	cr_assert_eq(size, strlen(buf) + 1);
	return buf;
}

static void expect(const char *text, unsigned flags, const struct sluice_template_values *v, const char *want)
{
	compile(text, flags);
	cr_assert_str_eq(render(v), want, "%s", text);
}

Test(http_template, every_placeholder_exact_values)
{
	struct sluice_template_values v = denial();
	expect("{limit}", 0, &v, "100");
	expect("{remaining}", 0, &v, "0");
	expect("{reset_s}", 0, &v, "31");
	expect("{reset_ms}", 0, &v, "30501");
	expect("{reset_unix}", 0, &v, "1795392031");
	expect("{reset_unix_ms}", 0, &v, "1795392030751");
	expect("{retry_after_s}", 0, &v, "2");
	expect("{retry_after_ms}", 0, &v, "1200");
	expect("{retry_after_unix}", 0, &v, "1795392002");
	expect("{limit_name}", 0, &v, "per_token");
	expect("{scope}", 0, &v, "token");
	expect("{policy}", 0, &v, "Seed 000");
	expect("{reason}", 0, &v, "rate");
	expect("{status}", 0, &v, "429");
	/* literal braces are doubled, as in Python's str.format */
	expect("{{\"error\":{{\"code\":\"{reason}\",\"limit\":\"{limit_name}\",\"retryAfterSec\":{retry_after_s}}}}}", 0,
	       &v, "{\"error\":{\"code\":\"rate\",\"limit\":\"per_token\",\"retryAfterSec\":2}}");
	/* the same seconds rule as the Retry-After header */
	char hdr[64];
	struct sluice_http_limit l = {.name = "x", .decision = v.decision};
	cr_assert_eq(sluice_http_render_headers(SLUICE_HTTP_RETRY_AFTER, &l, 1, 0, hdr, sizeof(hdr), NULL), 0);
	cr_assert_str_eq(hdr, "Retry-After: 2\r\n");
}

Test(http_template, rounding_and_clamping_edges)
{
	struct sluice_template_values v = denial();
	/* whole units do not round up */
	v.decision.reset_ns = 30 * SEC;
	v.decision.retry_after_ns = 2 * SEC;
	v.now_unix_ns = 1795392000ull * SEC;
	expect("{reset_s} {reset_ms} {reset_unix} {reset_unix_ms} {retry_after_s} {retry_after_ms} {retry_after_unix}",
	       0, &v, "30 30000 1795392030 1795392030000 2 2000 1795392002");
	/* a denial never says "retry now": 1 ns -> 1 s, 1 ms; 0 -> the same */
	v.decision.retry_after_ns = 1;
	expect("{retry_after_s} {retry_after_ms}", 0, &v, "1 1");
	v.decision.retry_after_ns = 0;
	expect("{retry_after_s} {retry_after_ms}", 0, &v, "1 1");
	/* never, and huge numbers, clamp to the RFC 9651 Integer maximum */
	v.decision.retry_after_ns = SLUICE_NEVER;
	v.decision.reset_ns = UINT64_MAX;
	v.decision.limit = UINT64_MAX;
	v.decision.remaining = MAX_INT + 1;
	expect("{retry_after_s} {retry_after_ms} {retry_after_unix}", 0, &v,
	       "999999999999999 999999999999999 999999999999999");
	expect("{limit} {remaining} {reset_unix_ms}", 0, &v, "999999999999999 999999999999999 18446744073710");
	/* an allowed decision: no wait, reason none */
	v = denial();
	v.decision.allowed = true;
	v.decision.reason = SLUICE_REASON_NONE;
	v.decision.remaining = 7;
	expect("{retry_after_s} {retry_after_ms} {retry_after_unix} {reason} {remaining}", 0, &v, "0 0 0 none 7");
}

Test(http_template, reason_words_and_override)
{
	static const char *const words[] = {"none", "rate", "quota", "concurrency", "capacity", "never"};
	struct sluice_template_values v = denial();
	compile("{reason}", 0);
	for (uint8_t r = 0; r < 6; r++) {
		v.decision.reason = r;
		cr_assert_str_eq(render(&v), words[r]);
	}
	v.decision.reason = 99;
	cr_assert_str_eq(render(&v), "");
	v.reason = "missing_identity";
	v.reason_len = 16;
	cr_assert_str_eq(render(&v), "missing_identity");
	/* NULL strings render empty */
	v = denial();
	v.limit_name = v.scope = v.policy = NULL;
	expect("[{limit_name}|{scope}|{policy}]", SLUICE_TEMPLATE_JSON, &v, "[||]");
}

Test(http_template, brace_escapes)
{
	struct sluice_template_values v = denial();
	expect("{{limit}}", 0, &v, "{limit}");
	expect("{{{limit}}}", 0, &v, "{100}");
	expect("}}{{", 0, &v, "}{");
	expect("", 0, &v, "");
	expect("no placeholders at all", 0, &v, "no placeholders at all");
	expect("{limit}{limit}{status}", 0, &v, "100100429");
}

Test(http_template, json_escapes_each_special_byte)
{
	struct sluice_template_values v = denial();
	compile("\"{limit_name}\"", SLUICE_TEMPLATE_JSON);
	for (int c = 0; c < 0x80; c++) {
		char name[1] = {(char)c};
		char want[16];
		v.limit_name = name;
		v.limit_name_len = 1;
		if (c == '"' || c == '\\')
			snprintf(want, sizeof(want), "\"\\%c\"", c);
		else if (c < 0x20)
			snprintf(want, sizeof(want), "\"\\u%04x\"", c);
		else
			snprintf(want, sizeof(want), "\"%c\"", c);
		const char *got = render(&v);
		cr_assert_str_eq(got, want, "byte %#x", c);
	}
	/* a NUL inside a value is a value byte, escaped */
	v.limit_name = "a\0b";
	v.limit_name_len = 3;
	cr_assert_str_eq(render(&v), "\"a\\u0000b\"");
	/* the template's own text is never escaped */
	v = denial();
	v.policy = "say \"hi\"";
	v.policy_len = 8;
	expect("\"\\{policy}\\\"", SLUICE_TEMPLATE_JSON, &v, "\"\\say \\\"hi\\\"\\\"");
	/* plain templates copy values as they are */
	expect("{policy}", SLUICE_TEMPLATE_PLAIN, &v, "say \"hi\"");
}

Test(http_template, json_utf8_kept_or_replaced)
{
	static const struct {
		const char *in;
		const char *want;
	} cases[] = {
		{"caf\xc3\xa9", "caf\xc3\xa9"},                          /* 2 bytes */
		{"\xe2\x82\xac", "\xe2\x82\xac"},                        /* 3 bytes: euro */
		{"\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80"},                /* 4 bytes */
		{"\xef\xbf\xbf", "\xef\xbf\xbf"},                        /* U+FFFF */
		{"\xf4\x8f\xbf\xbf", "\xf4\x8f\xbf\xbf"},                /* U+10FFFF */
		{"\x80", "\\ufffd"},                                     /* lone continuation */
		{"\xc0\xaf", "\\ufffd\\ufffd"},                          /* overlong '/' */
		{"\xc1\xbf", "\\ufffd\\ufffd"},                          /* overlong */
		{"\xe0\x80\xaf", "\\ufffd\\ufffd\\ufffd"},               /* overlong, 3 bytes */
		{"\xf0\x80\x80\xaf", "\\ufffd\\ufffd\\ufffd\\ufffd"},    /* overlong, 4 bytes */
		{"\xed\xa0\x80", "\\ufffd\\ufffd\\ufffd"},               /* surrogate U+D800 */
		{"\xf4\x90\x80\x80", "\\ufffd\\ufffd\\ufffd\\ufffd"},    /* above U+10FFFF */
		{"\xf5\x80\x80\x80", "\\ufffd\\ufffd\\ufffd\\ufffd"},    /* no such lead byte */
		{"\xff", "\\ufffd"},
		{"a\xe2\x82", "a\\ufffd\\ufffd"},                        /* cut short at the end */
		{"\xe2\x82z", "\\ufffd\\ufffdz"},                        /* cut short inside */
		{"\xc3\xa9\xc3", "\xc3\xa9\\ufffd"},
	};
	struct sluice_template_values v = denial();
	compile("{scope}", SLUICE_TEMPLATE_JSON);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		v.scope = cases[i].in;
		v.scope_len = strlen(cases[i].in);
		cr_assert_str_eq(render(&v), cases[i].want, "case %zu", i);
	}
	/* plain: bytes as they are */
	compile("{scope}", SLUICE_TEMPLATE_PLAIN);
	v.scope = "\xff\"\x01";
	v.scope_len = 3;
	cr_assert_str_eq(render(&v), "\xff\"\x01");
}

Test(http_template, long_values)
{
	size_t n = 10000;
	char *name = malloc(n);
	cr_assert_not_null(name);
	memset(name, '"', n);
	struct sluice_template_values v = denial();
	v.limit_name = name;
	v.limit_name_len = n;
	compile("<{limit_name}>", SLUICE_TEMPLATE_JSON);
	const char *got = render(&v);
	cr_assert_eq(strlen(got), 2 + 2 * n);
	for (size_t i = 0; i < n; i++)
		cr_assert(got[1 + 2 * i] == '\\' && got[2 + 2 * i] == '"');
	free(name);
}

Test(http_template, sizes_exact_fit_and_one_short)
{
	struct sluice_template_values v = denial();
	char buf[64];
	size_t size = 0;
	compile("retry in {retry_after_s} s", 0); /* "retry in 2 s": 12 bytes + NUL */
	cr_assert_eq(sluice_template_render(&tpl, &v, buf, 13, &size), SLUICE_OK);
	cr_assert_eq(size, 13);
	cr_assert_str_eq(buf, "retry in 2 s");
	memset(buf, 'x', sizeof(buf));
	size = 0;
	cr_assert_eq(sluice_template_render(&tpl, &v, buf, 12, &size), SLUICE_ETRUNC);
	cr_assert_eq(size, 13);
	cr_assert_eq(memcmp(buf, "retry in 2 s", 12), 0);
	cr_assert_eq(buf[12], 'x'); /* nothing past cap */
	/* cut inside a value */
	memset(buf, 'x', sizeof(buf));
	cr_assert_eq(sluice_template_render(&tpl, &v, buf, 9, &size), SLUICE_ETRUNC);
	cr_assert_eq(size, 13);
	cr_assert_eq(buf[9], 'x');
	cr_assert_eq(sluice_template_render(&tpl, &v, NULL, 0, &size), SLUICE_ETRUNC);
	cr_assert_eq(size, 13);
	/* an escaped value counts its escapes */
	v.scope = "\x01";
	v.scope_len = 1;
	compile("{scope}", SLUICE_TEMPLATE_JSON);
	cr_assert_eq(sluice_template_render(&tpl, &v, buf, 6, &size), SLUICE_ETRUNC);
	cr_assert_eq(size, 7);
	cr_assert_eq(sluice_template_render(&tpl, &v, buf, 7, &size), SLUICE_OK);
	cr_assert_str_eq(buf, "\\u0001");
	cr_assert_eq(sluice_template_render(NULL, &v, buf, 7, &size), SLUICE_EINVAL);
	cr_assert_eq(sluice_template_render(&tpl, NULL, buf, 7, &size), SLUICE_EINVAL);
	cr_assert_eq(sluice_template_render(&tpl, &v, NULL, 7, &size), SLUICE_EINVAL);
}

static void expect_error(const char *text, size_t len, int code, size_t offset, const char *msg_part)
{
	struct sluice_template_error e;
	memset(&e, 0, sizeof(e));
	int rc = sluice_template_compile(text, len, SLUICE_TEMPLATE_JSON, &tpl, &e);
	cr_assert_eq(rc, code, "'%.*s': %d, want %d", (int)SLUICE_MIN_TEST(len, 60), text, rc, code);
	cr_assert_eq(e.code, code);
	cr_assert_eq(e.offset, offset, "'%.*s': offset %zu, want %zu (%s)", (int)SLUICE_MIN_TEST(len, 60), text,
		     e.offset, offset, e.message);
	cr_assert_not_null(strstr(e.message, msg_part), "%s", e.message);
}

Test(http_template, compile_errors_with_offsets)
{
	expect_error("x {limitt}", 10, SLUICE_ENOTFOUND, 2, "unknown placeholder '{limitt}'");
	expect_error("{reset}", 7, SLUICE_ENOTFOUND, 0, "{reset}");
	expect_error("abc {limit", 10, SLUICE_ESYNTAX, 4, "unterminated");
	expect_error("abc {", 5, SLUICE_ESYNTAX, 4, "unterminated");
	expect_error("a}b", 3, SLUICE_ESYNTAX, 1, "unmatched '}'");
	expect_error("{limit}}", 8, SLUICE_ESYNTAX, 7, "unmatched '}'");
	expect_error("ab{Limit}", 9, SLUICE_ESYNTAX, 2, "placeholder name");
	expect_error("{}", 2, SLUICE_ESYNTAX, 0, "placeholder name");
	expect_error("{ limit}", 8, SLUICE_ESYNTAX, 0, "placeholder name");
	expect_error("{lim\nit}", 8, SLUICE_ESYNTAX, 0, "placeholder name");
	expect_error("{limit\0}", 8, SLUICE_ESYNTAX, 0, "placeholder name");
	expect_error("{limit", 6, SLUICE_ESYNTAX, 0, "unterminated");
	/* a NUL in literal text is a byte like any other */
	compile("", 0);
	cr_assert_eq(sluice_template_compile("a\0b", 3, 0, &tpl, NULL), SLUICE_OK);
	char buf[8];
	size_t size = 0;
	struct sluice_template_values v = denial();
	cr_assert_eq(sluice_template_render(&tpl, &v, buf, sizeof(buf), &size), SLUICE_OK);
	cr_assert_eq(size, 4);
	cr_assert_eq(memcmp(buf, "a\0b", 4), 0);
	/* bad arguments */
	struct sluice_template_error e;
	cr_assert_eq(sluice_template_compile(NULL, 1, 0, &tpl, &e), SLUICE_EINVAL);
	cr_assert_eq(sluice_template_compile(NULL, 0, 0, &tpl, &e), SLUICE_OK);
	cr_assert_eq(sluice_template_compile("x", 1, 0, NULL, &e), SLUICE_EINVAL);
	cr_assert_eq(sluice_template_compile("x", 1, 2, &tpl, &e), SLUICE_EINVAL);
	cr_assert_eq(e.code, SLUICE_EINVAL);
}

Test(http_template, size_limits)
{
	static char text[SLUICE_TEMPLATE_MAX_TEXT + 8];
	struct sluice_template_error e;
	/* exactly the maximum: fine; one byte more: refused at that byte */
	memset(text, 'a', sizeof(text));
	cr_assert_eq(sluice_template_compile(text, SLUICE_TEMPLATE_MAX_TEXT, 0, &tpl, &e), SLUICE_OK);
	expect_error(text, SLUICE_TEMPLATE_MAX_TEXT + 1, SLUICE_ETOOBIG, SLUICE_TEMPLATE_MAX_TEXT, "longer than 4096");
	/* a maximal template of escaped braces compiles to half its size */
	memset(text, '{', SLUICE_TEMPLATE_MAX_TEXT);
	cr_assert_eq(sluice_template_compile(text, SLUICE_TEMPLATE_MAX_TEXT, 0, &tpl, &e), SLUICE_OK);
	struct sluice_template_values v = denial();
	size_t size = 0;
	cr_assert_eq(sluice_template_render(&tpl, &v, NULL, 0, &size), SLUICE_ETRUNC);
	cr_assert_eq(size, SLUICE_TEMPLATE_MAX_TEXT / 2 + 1);
	/* 64 placeholders: fine; the 65th is refused where it starts */
	size_t n = 0;
	for (int i = 0; i < SLUICE_TEMPLATE_MAX_FIELDS; i++)
		n += (size_t)sprintf(text + n, "{status}");
	cr_assert_eq(sluice_template_compile(text, n, 0, &tpl, &e), SLUICE_OK);
	const char *got = render(&v);
	cr_assert_eq(strlen(got), 3 * SLUICE_TEMPLATE_MAX_FIELDS);
	n += (size_t)sprintf(text + n, "-{limit}");
	expect_error(text, n, SLUICE_ETOOBIG, 8 * SLUICE_TEMPLATE_MAX_FIELDS + 1, "more than 64 placeholders");
}
