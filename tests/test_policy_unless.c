/*
 * test_policy_unless.c - limits for some callers only: "limit ... unless
 * <scope>[+<scope>]" keeps a limit from applying to a request that carries
 * one of those scopes' own identities (docs/policy.md, "Limits for some
 * callers only"): the policy text and its mistakes, and the engine's
 * behaviour (anonymous callers per IP, authenticated ones per token, never
 * both; a fallback stand-in is not an identity of the scope).
 */
#include "engine_test_util.h"
#include "policy_test_util.h"

#define HEAD "policy \"t\"\nscope token optional\nscope ip\nscope key optional\n"

static void expect_error(const char *text, int code, int line, int column, const char *needle)
{
	struct sluice_policy_error e = load_error(text);
	cr_expect_eq(e.code, code, "code %d (%s) for:\n%s", e.code, e.message, text);
	cr_expect_eq(e.line, line, "line %d (%s)", e.line, e.message);
	cr_expect_eq(e.column, column, "column %d (%s)", e.column, e.message);
	cr_expect_not_null(strstr(e.message, needle), "message '%s' lacks '%s'", e.message, needle);
}

Test(policy_unless, option_sets_the_masks_and_prints_back)
{
	struct sluice_policy *p = load_text(HEAD "limit core per token quota 5000/1h@utc\n"
						 "limit anon per ip quota 60/1h@utc unless token+key resource \"core\"\n"
						 "limit b per ip rate 10/1s unless key dry-run\n");
	const struct sluice_policy_spec *s = sluice_policy_spec(p);
	cr_assert_eq(s->limits[0].unless_mask, 0u);
	cr_assert_eq(s->limits[1].unless_mask, 0x5u, "token (0) and key (2)");
	cr_assert_eq(s->limits[2].unless_mask, 0x4u);
	cr_assert_eq(s->unless_limits, 0x6u);
	char buf[4096];
	size_t len = 0;
	cr_assert_eq(sluice_policy_print(p, buf, sizeof buf, &len), SLUICE_OK);
	cr_expect_not_null(strstr(buf, " unless token+key"), "%s", buf);
	struct sluice_policy *q = load_text(buf);
	cr_assert(sluice_policy_equal(p, q), "printed form differs:\n%s", buf);
	sluice_policy_destroy(q);
	/* part of equality: a reload that adds or drops it is a change */
	q = load_text(HEAD "limit core per token quota 5000/1h@utc\n"
			   "limit anon per ip quota 60/1h@utc unless token resource \"core\"\n"
			   "limit b per ip rate 10/1s unless key dry-run\n");
	cr_expect(!sluice_policy_equal(p, q));
	sluice_policy_destroy(q);
	sluice_policy_destroy(p);
}

Test(policy_unless, mistakes_at_line_and_column)
{
	expect_error(HEAD "limit a per ip rate 1/1s unless nobody\n", SLUICE_ENOTFOUND, 5, 33, "unknown scope 'nobody'");
	expect_error(HEAD "limit a per ip rate 1/1s unless token+ip\n", SLUICE_EINVAL, 5, 39, "would never let it apply");
	expect_error(HEAD "limit a per ip rate 1/1s unless token+token\n", SLUICE_EINVAL, 5, 39,
		     "twice in 'unless'");
	expect_error(HEAD "limit a per ip rate 1/1s unless token unless key\n", SLUICE_EINVAL, 5, 39,
		     "duplicate 'unless'");
	expect_error(HEAD "limit a per ip rate 1/1s unless\n", SLUICE_ESYNTAX, 5, 32, "scopes after 'unless'");
	expect_error(HEAD "limit a per ip rate 1/1s unless \"token\"\n", SLUICE_ESYNTAX, 5, 33, "expected scopes");
	expect_error(HEAD "limit a per ip rate 1/1s unless class\n", SLUICE_ENOTFOUND, 5, 33, "unknown scope 'class'");
}

/* scope 0: token (optional), scope 1: ip */
static const char anon_policy[] = "policy \"anon\"\n"
				  "scope token optional\n"
				  "scope ip\n"
				  "limit core per token sliding 5/1m\n"
				  "limit anon per ip sliding 2/1m unless token\n";

Test(policy_unless, engine_applies_the_limit_only_without_the_identity)
{
	struct sluice_engine *e = engine_of(load_text(anon_policy));
	struct req q;
	struct sluice_engine_decision d;

	/* Authenticated requests from 192.0.2.1: only core applies, and they
	 * leave the address's anonymous budget untouched. */
	req_init(&q, "GET", "/x", "t1", "192.0.2.1", DAY0);
	for (int i = 0; i < 5; i++) {
		d = run(e, &q);
		cr_assert(d.d.allowed, "request %d", i);
		cr_expect_eq(d.applied, 0x1u, "core only");
	}
	cr_expect_not(run(e, &q).d.allowed, "core's 5 spent");
	/* Anonymous requests from the same address: anon alone, its 2 whole. */
	req_init(&q, "GET", "/x", NULL, "192.0.2.1", DAY0);
	for (int i = 0; i < 2; i++) {
		d = run(e, &q);
		cr_assert(d.d.allowed, "anonymous %d", i);
		cr_expect_eq(d.applied, 0x2u, "anon only");
	}
	d = run(e, &q);
	cr_expect_not(d.d.allowed);
	cr_expect_eq(d.d.limit_index, 1);
	cr_expect_eq(d.d.reason, SLUICE_REASON_RATE);
	/* The engine's rule: bytes NULL is no identity; bytes set with length
	 * 0 is one (callers map an empty value to NULL, as the server and
	 * sluice_identity_extract() do), so anon does not apply. */
	req_init(&q, "GET", "/x", "", "192.0.2.1", DAY0);
	cr_expect_eq(run(e, &q).applied, 0x1u);
	/* Another token from that address is not held by anon. */
	req_init(&q, "GET", "/x", "t2", "192.0.2.1", DAY0);
	cr_expect(run(e, &q).d.allowed);
	sluice_engine_destroy(e);
}

Test(policy_unless, a_fallback_stand_in_is_not_the_scopes_identity)
{
	/* token falls back to ip: an anonymous request is held both by the
	 * token's limits (keyed by its address) and by anon. */
	struct sluice_engine *e = engine_of(load_text("policy \"fb\"\n"
						      "scope token fallback ip\n"
						      "scope ip\n"
						      "limit core per token sliding 5/1m\n"
						      "limit anon per ip sliding 2/1m unless token\n"));
	struct req q;
	req_init(&q, "GET", "/x", NULL, "192.0.2.7", DAY0);
	struct sluice_engine_decision d = run(e, &q);
	cr_expect(d.d.allowed);
	cr_expect_eq(d.applied, 0x3u, "core (by stand-in) and anon");
	sluice_engine_destroy(e);
}

Test(policy_unless, a_skipped_limit_never_makes_its_scope_required)
{
	/* ip is required, but the only limit keyed by ip is for anonymous
	 * callers: an authenticated request without an address passes. */
	struct sluice_engine *e = engine_of(load_text(anon_policy));
	struct req q;
	req_init(&q, "GET", "/x", "t1", NULL, DAY0);
	struct sluice_engine_decision d = run(e, &q);
	cr_expect(d.d.allowed);
	cr_expect_eq(d.applied, 0x1u);
	/* Anonymous and without an address: refused for the missing ip. */
	req_init(&q, "GET", "/x", NULL, NULL, DAY0);
	d = run(e, &q);
	cr_expect_not(d.d.allowed);
	cr_expect_eq(d.d.reason, SLUICE_REASON_IDENTITY);
	cr_expect_eq(d.scope, 1);
	sluice_engine_destroy(e);
}
