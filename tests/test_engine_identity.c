/*
 * test_engine_identity.c - the engine applies each scope's identity rule
 * (docs/policy.md "Identities"): required -> refused with
 * SLUICE_REASON_IDENTITY, counted, nothing consumed; fallback -> the
 * limits keyed by the other scope's identity, in a key space that never
 * meets a real identity of the scope; optional -> the limits do not apply.
 */
#include "engine_test_util.h"
#include "policy_test_util.h"

#define T0 (UINT64_C(1795392000) * SLUICE_NS_PER_SEC)

/* scope 0: token, scope 1: ip */
static const char policy_text[] = "policy \"id\"\n"
				  "scope token fallback ip\n"
				  "scope ip required\n"
				  "class open match GET /open\n"
				  "limit per_token per token on default sliding 2/1m\n"
				  "limit per_ip per ip on default sliding 10/1m\n";

Test(engine_identity, required_missing_is_refused_counted_and_consumes_nothing)
{
	struct sluice_engine *e = engine_of(load_text(policy_text));
	struct req q;
	req_init(&q, "GET", "/x", "t1", NULL, T0);
	struct sluice_engine_decision d;
	cr_assert_eq(sluice_engine_check(e, &q.r, &d), SLUICE_OK);
	cr_expect_not(d.d.allowed);
	cr_expect_eq(d.d.reason, SLUICE_REASON_IDENTITY);
	cr_expect_eq(d.scope, 1, "the missing scope: ip");
	cr_expect_not(d.governed);
	cr_expect_eq(d.applied, 0);
	cr_expect_eq(d.slot_count, 0);
	cr_expect_eq(sluice_engine_identity_refusals(e), 1);
	/* Nothing was consumed from the token's limit. */
	req_init(&q, "GET", "/x", "t1", "192.0.2.1", T0);
	cr_expect_eq(used_of(e, NULL, &q, "per_token"), 0);
	/* A class with no limit keyed by ip does not need it. */
	req_init(&q, "GET", "/open", NULL, NULL, T0);
	d = run(e, &q);
	cr_expect(d.d.allowed);
	cr_expect_eq(sluice_engine_identity_refusals(e), 1);
	sluice_engine_destroy(e);
}

Test(engine_identity, fallback_keys_by_the_other_scope_apart_from_real_identities)
{
	struct sluice_engine *e = engine_of(load_text(policy_text));
	struct req q;
	/* Two requests without a token from 192.0.2.1 share one budget... */
	req_init(&q, "GET", "/x", NULL, "192.0.2.1", T0);
	cr_expect(run(e, &q).d.allowed);
	cr_expect(run(e, &q).d.allowed);
	struct sluice_engine_decision d = run(e, &q);
	cr_expect_not(d.d.allowed, "per_token applies, keyed by the ip");
	cr_expect_eq(d.d.limit_index, 0);
	/* ...which a real token spelled like that address does not touch. */
	req_init(&q, "GET", "/x", "192.0.2.1", "192.0.2.9", T0);
	cr_expect(run(e, &q).d.allowed);
	cr_expect_eq(used_of(e, NULL, &q, "per_token"), 1);
	/* Another address has its own fallback budget. */
	req_init(&q, "GET", "/x", NULL, "192.0.2.2", T0);
	cr_expect(run(e, &q).d.allowed);
	cr_expect_eq(sluice_engine_identity_refusals(e), 0);
	sluice_engine_destroy(e);
}

Test(engine_identity, fallback_chain_ends_at_the_last_rule)
{
	/* workspace -> token -> ip (optional): without any, nothing applies;
	 * with only an ip, the workspace limit is kept per ip. */
	struct sluice_engine *e = engine_of(load_text("policy \"c\"\n"
						      "scope workspace fallback token\n"
						      "scope token fallback ip\n"
						      "scope ip optional\n"
						      "limit ws per workspace sliding 1/1m\n"));
	struct sluice_identity ids[3] = {{NULL, 0}, {NULL, 0}, {NULL, 0}};
	struct req q;
	req_init(&q, "GET", "/x", NULL, NULL, T0);
	q.r.identities = ids;
	q.r.identity_count = 3;
	struct sluice_engine_decision d = run(e, &q);
	cr_expect(d.d.allowed);
	cr_expect_not(d.governed, "optional at the end of the chain: no limit");
	ids[2] = (struct sluice_identity){"1.2.3.4", 7};
	cr_expect(run(e, &q).d.allowed);
	d = run(e, &q);
	cr_expect_not(d.d.allowed, "the workspace limit keyed by the ip");
	ids[1] = (struct sluice_identity){"1.2.3.4", 7};
	cr_expect(run(e, &q).d.allowed, "the token stands in now: another key");
	sluice_engine_destroy(e);
}

Test(engine_identity, optional_missing_skips_the_limits)
{
	struct sluice_engine *e = engine_of(load_text("policy \"o\"\nscope token optional\nscope ip\n"
						      "limit per_token per token sliding 1/1m\n"
						      "limit per_ip per ip sliding 5/1m\n"));
	struct req q;
	req_init(&q, "GET", "/x", NULL, "192.0.2.1", T0);
	struct sluice_engine_decision d = run(e, &q);
	cr_expect(d.d.allowed);
	cr_expect_eq(d.applied, 0x2, "only per_ip");
	d = run(e, &q);
	cr_expect(d.d.allowed);
	sluice_engine_destroy(e);
}

Test(engine_identity, overrides_never_match_a_stand_in)
{
	struct sluice_engine *e = engine_of(load_text(
		"policy \"ov\"\nscope token fallback ip\nscope ip\n"
		"limit per_token per token sliding 1/1m\n"
		"override per_token token \"10.0.0.1\" 100 until 2099-01-01T00:00:00Z\n"));
	struct req q;
	req_init(&q, "GET", "/x", NULL, "10.0.0.1", T0);
	cr_expect(run(e, &q).d.allowed);
	cr_expect_not(run(e, &q).d.allowed, "the override is for the token 10.0.0.1, not the ip");
	req_init(&q, "GET", "/x", "10.0.0.1", "10.0.0.1", T0);
	cr_expect(run(e, &q).d.allowed);
	cr_expect(run(e, &q).d.allowed, "the real token has its override");
	sluice_engine_destroy(e);
}

Test(engine_identity, a_dry_run_limit_never_requires_an_identity)
{
	struct sluice_engine *e = engine_of(load_text("policy \"d\"\nscope token\nscope ip optional\n"
						      "limit shadow per token sliding 1/1m dry-run\n"
						      "limit per_ip per ip sliding 5/1m\n"));
	struct req q;
	req_init(&q, "GET", "/x", NULL, "192.0.2.1", T0);
	struct sluice_engine_decision d = run(e, &q);
	cr_expect(d.d.allowed, "the token is required only by a dry-run limit");
	cr_expect_eq(d.applied, 0x2);
	cr_expect_eq(sluice_engine_identity_refusals(e), 0);
	sluice_engine_destroy(e);
}
