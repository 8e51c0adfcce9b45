/*
 * test_policy_identity.c - identity declarations in a policy ("scope NAME
 * [from SOURCE] [required|optional|fallback SCOPE]", "trusted-proxies") and
 * their errors with line:column, the printer's round trip, and
 * sluice_identity_extract(): every source, hostile spellings, trusted and
 * untrusted X-Forwarded-For, over-long values.
 */
#include "policy_test_util.h"

#include <sluice/identity.h>

#define LIMIT "limit l per token sliding 5/1m\n"

static void expect_error(const char *text, int code, int line, int column, const char *needle)
{
	struct sluice_policy_error e = load_error(text);
	cr_expect_eq(e.code, code, "code %d (%s) for:\n%s", e.code, e.message, text);
	cr_expect_eq(e.line, line, "line %d (%s)", e.line, e.message);
	cr_expect_eq(e.column, column, "column %d (%s)", e.column, e.message);
	cr_expect_not_null(strstr(e.message, needle), "message '%s' lacks '%s'", e.message, needle);
}

static const struct sluice_policy_scope_rule *rule_of(const struct sluice_policy *p, const char *scope)
{
	int s = sluice_policy_scope_index(p, scope);
	cr_assert_geq(s, 0);
	return &sluice_policy_spec(p)->scope_rules[s];
}

static void round_trip(const struct sluice_policy *p)
{
	char text[8192];
	size_t len;
	cr_assert_eq(sluice_policy_print(p, text, sizeof text, &len), SLUICE_OK);
	struct sluice_policy *q = load_text(text);
	cr_assert(sluice_policy_equal(p, q), "printed:\n%s", text);
	sluice_policy_destroy(q);
}

Test(policy_identity, every_directive_form)
{
	struct sluice_policy *p = load_text("policy \"i\"\n"
					    "trusted-proxies 10.0.0.0/8 127.0.0.1 ::1 fd00::/8\n"
					    "scope token from authorization Token required\n"
					    "scope key from header X-Api-Key fallback ip\n"
					    "scope session from cookie sid optional\n"
					    "scope q from query api_key\n"
					    "scope ip from forwarded-for\n"
					    "scope peer_ip from peer optional\n" LIMIT);
	const struct sluice_policy_scope_rule *r = rule_of(p, "token");
	cr_expect_eq(r->source, SLUICE_POLICY_SOURCE_AUTHORIZATION);
	cr_expect_str_eq(r->name, "Token");
	cr_expect_eq(r->rule, SLUICE_POLICY_IDENTITY_REQUIRED);
	cr_expect(r->rule_declared && r->source_declared);
	r = rule_of(p, "key");
	cr_expect_eq(r->source, SLUICE_POLICY_SOURCE_HEADER);
	cr_expect_str_eq(r->name, "X-Api-Key");
	cr_expect_eq(r->rule, SLUICE_POLICY_IDENTITY_FALLBACK);
	cr_expect_eq(r->fallback, (uint32_t)sluice_policy_scope_index(p, "ip"), "a later scope");
	r = rule_of(p, "session");
	cr_expect_eq(r->source, SLUICE_POLICY_SOURCE_COOKIE);
	cr_expect_eq(r->rule, SLUICE_POLICY_IDENTITY_OPTIONAL);
	r = rule_of(p, "q");
	cr_expect_eq(r->source, SLUICE_POLICY_SOURCE_QUERY);
	cr_expect_eq(r->rule, SLUICE_POLICY_IDENTITY_REQUIRED, "the default rule");
	cr_expect_not(r->rule_declared);
	cr_expect_eq(rule_of(p, "ip")->source, SLUICE_POLICY_SOURCE_FORWARDED_FOR);
	cr_expect_eq(rule_of(p, "peer_ip")->source, SLUICE_POLICY_SOURCE_PEER);
	const struct sluice_policy_spec *spec = sluice_policy_spec(p);
	cr_assert_eq(spec->proxy_count, 4);
	cr_expect_eq(spec->proxies[0].family, 4);
	cr_expect_eq(spec->proxies[0].prefix, 8);
	cr_expect_eq(spec->proxies[1].prefix, 32);
	cr_expect_eq(spec->proxies[2].family, 6);
	cr_expect_eq(spec->proxies[2].prefix, 128);
	round_trip(p);
	sluice_policy_destroy(p);
}

Test(policy_identity, default_sources_and_the_default_answer)
{
	struct sluice_policy *p = load_text("policy \"i\"\nscope token\nscope ip\nscope api_key\n" LIMIT);
	cr_expect_eq(rule_of(p, "token")->source, SLUICE_POLICY_SOURCE_AUTHORIZATION);
	cr_expect_str_eq(rule_of(p, "token")->name, "Bearer");
	cr_expect_eq(rule_of(p, "ip")->source, SLUICE_POLICY_SOURCE_PEER);
	cr_expect_eq(rule_of(p, "api_key")->source, SLUICE_POLICY_SOURCE_HEADER);
	cr_expect_str_eq(rule_of(p, "api_key")->name, "X-api-key", "'_' -> '-'; names compare case-insensitively");
	cr_expect_not(rule_of(p, "api_key")->source_declared);
	const struct sluice_policy_answer *a = &sluice_policy_spec(p)->answers[SLUICE_POLICY_ANSWER_IDENTITY];
	cr_expect_eq(a->status, 401);
	cr_expect_str_eq(a->content_type, "application/json");
	cr_expect_not_null(strstr(a->body, "identity_required"));
	char text[4096];
	cr_assert_eq(sluice_policy_print(p, text, sizeof text, NULL), SLUICE_OK);
	cr_expect_null(strstr(text, "answer identity"), "the default is not printed:\n%s", text);
	cr_expect_not_null(strstr(text, "scope token\n"), "an undeclared source is not printed:\n%s", text);
	round_trip(p);
	sluice_policy_destroy(p);
}

Test(policy_identity, answer_identity_is_the_providers)
{
	struct sluice_policy *p = load_text("policy \"i\"\nanswer identity status 403 type \"text/plain\" body "
					    "\"no {scope}\"\nscope token\n" LIMIT);
	const struct sluice_policy_answer *a = &sluice_policy_spec(p)->answers[SLUICE_POLICY_ANSWER_IDENTITY];
	cr_expect_eq(a->status, 403);
	cr_expect_str_eq(a->body, "no {scope}");
	round_trip(p);
	sluice_policy_destroy(p);
}

Test(policy_identity, errors_carry_line_and_column)
{
	expect_error("policy \"i\"\nscope token from cookies sid\n" LIMIT, SLUICE_ESYNTAX, 2, 18,
		     "unknown identity source 'cookies'");
	expect_error("policy \"i\"\nscope token from header\n" LIMIT, SLUICE_ESYNTAX, 2, 24, "a header name");
	expect_error("policy \"i\"\nscope token from header X(y)\n" LIMIT, SLUICE_ESYNTAX, 2, 26,
		     "byte '(' is not allowed");
	expect_error("policy \"i\"\nscope token from header \"X\"\n" LIMIT, SLUICE_ESYNTAX, 2, 25, "quoted");
	expect_error("policy \"i\"\nscope token from authorization\n" LIMIT, SLUICE_ESYNTAX, 2, 31,
		     "an authorization scheme");
	expect_error("policy \"i\"\nscope token maybe\n" LIMIT, SLUICE_ESYNTAX, 2, 13,
		     "expected from, required, optional or fallback");
	expect_error("policy \"i\"\nscope token required optional\n" LIMIT, SLUICE_ESYNTAX, 2, 22, "");
	expect_error("policy \"i\"\nscope token fallback\n" LIMIT, SLUICE_ESYNTAX, 2, 21, "the scope to fall back to");
	expect_error("policy \"i\"\nscope token fallback nobody\n" LIMIT, SLUICE_ENOTFOUND, 2, 22,
		     "undeclared scope 'nobody'");
	expect_error("policy \"i\"\nscope token fallback token\n" LIMIT, SLUICE_EINVAL, 2, 22, "fallback cycle");
	expect_error("policy \"i\"\nscope a optional\nscope token fallback b\nscope b fallback token\n" LIMIT,
		     SLUICE_EINVAL, 3, 22, "fallback cycle: scope 'token'");
	expect_error("policy \"i\"\ntrusted-proxies\n" LIMIT, SLUICE_ESYNTAX, 2, 16, "an address");
	expect_error("policy \"i\"\ntrusted-proxies 10.0.0.1/8\n" LIMIT, SLUICE_EINVAL, 2, 17, "bits set past");
	expect_error("policy \"i\"\ntrusted-proxies 10.0.0.0/33\n" LIMIT, SLUICE_ERANGE, 2, 26, "");
	expect_error("policy \"i\"\ntrusted-proxies 10.0.0.0/8 example.com\n" LIMIT, SLUICE_ESYNTAX, 2, 28,
		     "not an IPv4 or IPv6 address");
	expect_error("policy \"i\"\ntrusted-proxies ::1\ntrusted-proxies ::2\n" LIMIT, SLUICE_EINVAL, 3, 1,
		     "second 'trusted-proxies' (line 2)");
	expect_error("policy \"i\"\nanswer identities status 401 body \"\"\n" LIMIT, SLUICE_ESYNTAX, 2, 8,
		     "or identity");
}

/* ---- extraction ---- */

static const unsigned char secret[SLUICE_IDENTITY_SECRET_MIN] = {1, 2, 3};

struct x {
	struct sluice_header_view h[16];
	struct sluice_request_view r;
	struct sluice_identity_set set;
};

static void x_init(struct x *x, const char *target, const char *peer)
{
	memset(x, 0, sizeof *x);
	x->r.target = target;
	x->r.target_len = target ? strlen(target) : 0;
	x->r.peer = peer;
	x->r.peer_len = peer ? strlen(peer) : 0;
	x->r.headers = x->h;
}

static void x_header(struct x *x, const char *name, const char *value)
{
	x->h[x->r.header_count++] = (struct sluice_header_view){name, strlen(name), value, strlen(value)};
}

static int x_run(const struct sluice_policy *p, struct x *x, bool xff_ip)
{
	const struct sluice_identity_options o = {.size = sizeof o, .secret = secret, .secret_len = sizeof secret,
						  .forwarded_for_ip = xff_ip};
	return sluice_identity_extract(p, &x->r, &o, &x->set);
}

/* Scope s's identity as a string ("<none>" when absent). */
static const char *id(const struct x *x, int s)
{
	static char buf[SLUICE_IDENTITY_MAX + 1];
	if (x->set.ids[s].bytes == NULL)
		return "<none>";
	memcpy(buf, x->set.ids[s].bytes, x->set.ids[s].len);
	buf[x->set.ids[s].len] = '\0';
	return buf;
}

static const char src_policy[] = "policy \"x\"\n"
				 "trusted-proxies 10.0.0.0/8 ::1\n"
				 "scope token\n"                          /* 0: Authorization Bearer */
				 "scope basic from authorization Basic\n" /* 1 */
				 "scope key from header X-Api-Key\n"      /* 2 */
				 "scope sid from cookie sid\n"            /* 3 */
				 "scope q from query api_key\n"           /* 4 */
				 "scope ip from forwarded-for\n"          /* 5 */
				 "scope peer from peer\n" LIMIT;          /* 6 */

Test(identity_extract, every_source)
{
	struct sluice_policy *p = load_text(src_policy);
	struct x x;
	x_init(&x, "/v1/a?x=1&api_key=k%2F1+2#frag", "192.0.2.7");
	x_header(&x, "authorization", "  bEaReR   tok_1  ");
	x_header(&x, "Authorization", "Basic dXNlcg==");
	x_header(&x, "x-api-key", "\tkey-9 ");
	x_header(&x, "Cookie", "a=1; sid=\"s 1\"; b=2");
	cr_assert_eq(x_run(p, &x, false), SLUICE_OK);
	cr_expect_str_eq(id(&x, 0), "tok_1");
	cr_expect_str_eq(id(&x, 1), "dXNlcg==");
	cr_expect_str_eq(id(&x, 2), "key-9");
	cr_expect_str_eq(id(&x, 3), "s 1");
	cr_expect_str_eq(id(&x, 4), "k/1 2");
	cr_expect_str_eq(id(&x, 5), "192.0.2.7", "untrusted peer: the peer");
	cr_expect_str_eq(id(&x, 6), "192.0.2.7");
	sluice_policy_destroy(p);
}

Test(identity_extract, missing_and_empty_values_are_no_identity)
{
	struct sluice_policy *p = load_text(src_policy);
	struct x x;
	x_init(&x, "/v1/a?api_key=&other=1", NULL);
	x_header(&x, "Authorization", "Bearer ");
	x_header(&x, "Authorization", "Bearertok");
	x_header(&x, "X-Api-Key", "   ");
	x_header(&x, "Cookie", "sid=; sidx=1; sid");
	cr_assert_eq(x_run(p, &x, false), SLUICE_OK);
	for (int s = 0; s <= 6; s++)
		cr_expect_str_eq(id(&x, s), "<none>", "scope %d", s);
	sluice_policy_destroy(p);
}

Test(identity_extract, duplicates_equal_are_one_different_are_ambiguous)
{
	struct sluice_policy *p = load_text(src_policy);
	struct x x;
	x_init(&x, "/?api_key=a&api_key=%61", "192.0.2.1");
	x_header(&x, "X-Api-Key", "k");
	x_header(&x, "x-api-key", " k");
	x_header(&x, "Cookie", "sid=1");
	x_header(&x, "Cookie", "sid=\"1\"");
	cr_assert_eq(x_run(p, &x, false), SLUICE_OK);
	cr_expect_str_eq(id(&x, 2), "k");
	cr_expect_str_eq(id(&x, 3), "1");
	cr_expect_str_eq(id(&x, 4), "a");
	const char *bad[][2] = {{"X-Api-Key", "other"}, {"Cookie", "x=0; sid=2"}, {"Authorization", "Bearer t"}};
	for (size_t i = 0; i < 3; i++) {
		x_init(&x, "/", "192.0.2.1");
		x_header(&x, bad[i][0], i == 2 ? "Bearer u" : "k");
		x_header(&x, bad[i][0], bad[i][1]);
		if (i == 1) {
			x.r.header_count = 0;
			x_header(&x, "Cookie", "sid=1; sid=2");
		}
		cr_expect_eq(x_run(p, &x, false), SLUICE_ESYNTAX, "case %zu", i);
	}
	x_init(&x, "/?api_key=a&api%5fkey=b", "192.0.2.1");
	cr_expect_eq(x_run(p, &x, false), SLUICE_ESYNTAX, "a re-spelled parameter name is the same parameter");
	sluice_policy_destroy(p);
}

Test(identity_extract, forwarded_for_only_through_trusted_proxies)
{
	struct sluice_policy *p = load_text(src_policy);
	struct x x;
	/* Untrusted peer: its X-Forwarded-For is ignored. */
	x_init(&x, "/", "192.0.2.50");
	x_header(&x, "X-Forwarded-For", "203.0.113.9");
	cr_assert_eq(x_run(p, &x, false), SLUICE_OK);
	cr_expect_str_eq(id(&x, 5), "192.0.2.50");
	/* Trusted peer, trusted hops skipped from the right, across fields. */
	x_init(&x, "/", "10.0.0.1");
	x_header(&x, "X-Forwarded-For", "1.1.1.1, 203.0.113.9");
	x_header(&x, "x-forwarded-for", " 10.2.3.4 ,10.9.9.9");
	cr_assert_eq(x_run(p, &x, false), SLUICE_OK);
	cr_expect_str_eq(id(&x, 5), "203.0.113.9");
	/* Every hop trusted: the leftmost. IPv6 peer, IPv4-mapped entries. */
	x_init(&x, "/", "::1");
	x_header(&x, "X-Forwarded-For", "::ffff:10.1.1.1, 10.0.0.2");
	cr_assert_eq(x_run(p, &x, false), SLUICE_OK);
	cr_expect_str_eq(id(&x, 5), "::ffff:10.1.1.1");
	/* Trusted peer without the field: the peer. */
	x_init(&x, "/", "10.0.0.1");
	cr_assert_eq(x_run(p, &x, false), SLUICE_OK);
	cr_expect_str_eq(id(&x, 5), "10.0.0.1");
	sluice_policy_destroy(p);
}

Test(identity_extract, default_ip_reads_forwarded_for_only_when_asked)
{
	struct sluice_policy *p = load_text("policy \"x\"\ntrusted-proxies 127.0.0.1\nscope ip\n"
					    "limit l per ip sliding 5/1m\n");
	struct x x;
	x_init(&x, "/", "127.0.0.1");
	x_header(&x, "X-Forwarded-For", "198.51.100.1");
	cr_assert_eq(x_run(p, &x, false), SLUICE_OK);
	cr_expect_str_eq(id(&x, 0), "127.0.0.1");
	cr_assert_eq(x_run(p, &x, true), SLUICE_OK);
	cr_expect_str_eq(id(&x, 0), "198.51.100.1");
	sluice_policy_destroy(p);
}

Test(identity_extract, over_long_values_are_hashed_alike_encoded_or_not)
{
	struct sluice_policy *p = load_text(src_policy);
	static char longv[700], target[2200];
	memset(longv, 'a', 600);
	char *t = target + sprintf(target, "/?api_key=");
	for (int i = 0; i < 600; i++)
		t += sprintf(t, "%%61");
	struct x x;
	x_init(&x, target, "192.0.2.1");
	x_header(&x, "X-Api-Key", longv);
	cr_assert_eq(x_run(p, &x, false), SLUICE_OK);
	cr_assert_eq(x.set.ids[2].len, 32);
	cr_assert_eq(x.set.ids[4].len, 32);
	char header_hash[33];
	strcpy(header_hash, id(&x, 2));
	cr_expect_str_eq(id(&x, 4), header_hash, "the decoded query value hashes as the raw header value");
	/* exactly SLUICE_IDENTITY_MAX bytes: kept as is */
	longv[SLUICE_IDENTITY_MAX] = '\0';
	x_init(&x, "/", "192.0.2.1");
	x_header(&x, "X-Api-Key", longv);
	cr_assert_eq(x_run(p, &x, false), SLUICE_OK);
	cr_expect_eq(x.set.ids[2].len, SLUICE_IDENTITY_MAX);
	sluice_policy_destroy(p);
}

Test(identity_extract, bad_arguments)
{
	struct sluice_policy *p = load_text(src_policy);
	struct x x;
	x_init(&x, "/", NULL);
	struct sluice_identity_options o = {.size = sizeof o, .secret = secret, .secret_len = sizeof secret - 1};
	cr_expect_eq(sluice_identity_extract(p, &x.r, &o, &x.set), SLUICE_EINVAL);
	o.secret_len = sizeof secret;
	cr_expect_eq(sluice_identity_extract(p, &x.r, &o, &x.set), SLUICE_OK);
	cr_expect_eq(sluice_identity_extract(p, &x.r, NULL, &x.set), SLUICE_EINVAL);
	cr_expect_eq(sluice_identity_extract(NULL, &x.r, &o, &x.set), SLUICE_EINVAL);
	o.proxy_count = 1;
	cr_expect_eq(sluice_identity_extract(p, &x.r, &o, &x.set), SLUICE_EINVAL);
	cr_expect_not(sluice_identity_cidr_match(NULL, 0, "1.2.3.4", 7));
	sluice_policy_destroy(p);
}

Test(identity_extract, cidr_parse_and_match)
{
	struct sluice_policy_cidr c[2];
	size_t at;
	cr_assert_eq(sluice_identity_cidr_parse("10.0.0.0/8", 10, &c[0], &at), SLUICE_OK);
	cr_assert_eq(sluice_identity_cidr_parse("2001:db8::/32", 13, &c[1], &at), SLUICE_OK);
	cr_expect_eq(c[1].family, 6);
	cr_expect(sluice_identity_cidr_match(c, 2, "10.200.1.1", 10));
	cr_expect(sluice_identity_cidr_match(c, 2, "::ffff:10.1.1.1", 15), "IPv4-mapped matches IPv4 blocks");
	cr_expect(sluice_identity_cidr_match(c, 2, "2001:db8:1::5", 13));
	cr_expect_not(sluice_identity_cidr_match(c, 2, "11.0.0.1", 8));
	cr_expect_not(sluice_identity_cidr_match(c, 2, "10.0.0.1 ", 9), "not an address");
	cr_expect_eq(sluice_identity_cidr_parse("10.0.0.0/", 9, &c[0], &at), SLUICE_ESYNTAX);
	cr_expect_eq(sluice_identity_cidr_parse("10.0.0.0/4x", 11, &c[0], &at), SLUICE_ESYNTAX);
	cr_expect_eq(at, 10);
	cr_expect_eq(sluice_identity_cidr_parse("::1/129", 7, &c[0], &at), SLUICE_ERANGE);
	cr_expect_eq(sluice_identity_cidr_parse("10.0.0.1/24", 11, &c[0], &at), SLUICE_EINVAL);
	cr_expect_eq(sluice_identity_cidr_parse("host", 4, &c[0], &at), SLUICE_ESYNTAX);
	cr_expect_eq(at, 0);
	cr_expect_eq(sluice_identity_cidr_parse("0.0.0.0/0", 9, &c[0], &at), SLUICE_OK);
	cr_expect(sluice_identity_cidr_match(c, 1, "8.8.8.8", 7));
}
