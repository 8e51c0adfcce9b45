/*
 * test_engine_dry_run.c - dry-run (shadow) limits in the engine
 * (docs/policy.md, "Dry run"): a would-be refusal passes and is reported
 * (dry_run_refused) and counted; a dry-run limit consumes what enforcement
 * would when it admits and nothing beyond its bound when it refuses;
 * all-or-nothing both ways; concurrency slots in dry-run; the governing
 * limit is always an enforced one; a peek consumes nothing.
 */
#include <criterion/criterion.h>

#include <sluice.h>
#include <stddef.h>
#include <string.h>

#include "engine_test_util.h"

static const char shadow_policy[] = "policy \"dr\"\n"
				    "scope ip\n"
				    "limit enforced per ip rate 100/1m\n"
				    "limit shadow per ip sliding 3/1m dry-run\n";

static struct sluice_engine_limit_stats stats_of(struct sluice_engine *e, uint32_t limit)
{
	struct sluice_engine_limit_stats s = {.size = sizeof s};
	cr_assert_eq(sluice_engine_limit_stats(e, limit, &s), SLUICE_OK);
	return s;
}

Test(engine_dry_run, would_refuse_passes_is_flagged_and_counted)
{
	struct sluice_engine *e = engine_of(load_text(shadow_policy));
	const struct sluice_policy_spec *spec = NULL;
	struct req q;

	req_init(&q, "GET", "/x", "1.2.3.4", NULL, DAY0 + SEC);
	for (int i = 0; i < 5; i++) {
		struct sluice_engine_decision d = run(e, &q);
		cr_assert(d.d.allowed, "request %d refused", i);
		cr_assert_eq(d.applied, 0x3u);
		cr_assert_eq(d.dry_run_refused, i < 3 ? 0u : 0x2u, "request %d: %#x", i, d.dry_run_refused);
	}
	/* the shadow limit holds its bound; the enforced one took every request */
	cr_assert_eq(used_of(e, spec, &q, "shadow"), 3);
	cr_assert_eq(used_of(e, spec, &q, "enforced"), 5);
	struct sluice_engine_limit_stats s = stats_of(e, 1);
	cr_assert_eq(s.dry_run_refused, 2);
	cr_assert_eq(s.denied, 2);
	cr_assert_eq(s.admitted, 3);
	cr_assert_eq(stats_of(e, 0).dry_run_refused, 0);
	cr_assert_eq(stats_of(e, 0).admitted, 5);
	/* another key is fresh */
	req_init(&q, "GET", "/x", "5.6.7.8", NULL, DAY0 + SEC);
	cr_assert_eq(run(e, &q).dry_run_refused, 0);
	sluice_engine_destroy(e);
}

Test(engine_dry_run, governing_limit_is_enforced_and_per_limit_reads_admitted)
{
	struct sluice_engine *e = engine_of(load_text(shadow_policy));
	struct sluice_decision per[SLUICE_POLICY_MAX_LIMITS];
	struct sluice_engine_decision d;
	struct req q;

	req_init(&q, "GET", "/x", "1.2.3.4", NULL, DAY0 + SEC);
	q.r.limit_decisions = per;
	q.r.limit_decisions_cap = SLUICE_POLICY_MAX_LIMITS;
	for (int i = 0; i < 4; i++)
		d = run(e, &q);
	/* the shadow limit has less remaining (0) and refused, yet the
	 * enforced limit governs: the answer is what a client would get with
	 * the shadow limit absent */
	cr_assert(d.d.allowed);
	cr_assert(d.governed);
	cr_assert_eq(d.d.limit_index, 0);
	cr_assert_str_eq(d.limit_name, "enforced");
	cr_assert_eq(d.d.remaining, 96);
	cr_assert_eq(d.d.reason, SLUICE_REASON_NONE);
	cr_assert_eq(d.d.retry_after_ns, 0);
	cr_assert_eq(d.dry_run_refused, 0x2u);
	/* the shadow limit's state as it stands, reported admitted */
	cr_assert(per[1].allowed);
	cr_assert_eq(per[1].limit_index, 1);
	cr_assert_eq(per[1].remaining, 0);
	cr_assert_eq(per[1].limit, 3);
	cr_assert(per[0].allowed);
	cr_assert_eq(per[0].remaining, 96);
	sluice_engine_destroy(e);
}

Test(engine_dry_run, enforced_refusal_touches_no_dry_run_limit)
{
	struct sluice_engine *e = engine_of(load_text("policy \"dr\"\nscope ip\n"
						      "limit shadow per ip sliding 100/1m dry-run\n"
						      "limit enforced per ip rate 2/1m\n"));
	struct req q;

	req_init(&q, "GET", "/x", "1.2.3.4", NULL, DAY0 + SEC);
	int admitted = 0;
	for (int i = 0; i < 5; i++) {
		struct sluice_engine_decision d = run(e, &q);
		admitted += d.d.allowed;
		cr_assert_eq(d.dry_run_refused, 0);
		if (!d.d.allowed)
			cr_assert_eq(d.d.limit_index, 1);
	}
	cr_assert_eq(admitted, 2);
	/* the refused requests reserved nothing in the shadow limit */
	cr_assert_eq(used_of(e, NULL, &q, "shadow"), 2);
	cr_assert_eq(stats_of(e, 0).admitted, 2);
	cr_assert_eq(stats_of(e, 0).dry_run_refused, 0);
	sluice_engine_destroy(e);
}

Test(engine_dry_run, dry_run_refusal_never_cancels_enforced_limits)
{
	/* two enforced limits and a shadow one that refuses from the start */
	struct sluice_engine *e = engine_of(load_text("policy \"dr\"\nscope ip\n"
						      "limit a per ip rate 10/1m\n"
						      "limit shadow per ip quota 1/1h@utc dry-run\n"
						      "limit b per ip sliding 10/1m\n"));
	struct req q;

	req_init(&q, "GET", "/x", "1.2.3.4", NULL, DAY0 + SEC);
	for (int i = 0; i < 4; i++)
		cr_assert(run(e, &q).d.allowed);
	cr_assert_eq(used_of(e, NULL, &q, "a"), 4);
	cr_assert_eq(used_of(e, NULL, &q, "b"), 4);
	cr_assert_eq(used_of(e, NULL, &q, "shadow"), 1);
	cr_assert_eq(stats_of(e, 1).dry_run_refused, 3);
	sluice_engine_destroy(e);
}

Test(engine_dry_run, each_dry_run_limit_is_decided_alone)
{
	/* shadow1 refuses from the second request; shadow2 still consumes as
	 * it would if it alone were enforced */
	struct sluice_engine *e = engine_of(load_text("policy \"dr\"\nscope ip\ndry-run all\n"
						      "limit shadow1 per ip sliding 1/1m\n"
						      "limit shadow2 per ip sliding 3/1m\n"));
	struct req q;

	req_init(&q, "GET", "/x", "1.2.3.4", NULL, DAY0 + SEC);
	uint32_t want[] = {0, 0x1, 0x1, 0x3, 0x3};
	for (int i = 0; i < 5; i++) {
		struct sluice_engine_decision d = run(e, &q);
		cr_assert(d.d.allowed);
		/* only dry-run limits: nothing governs */
		cr_assert(!d.governed);
		cr_assert_eq(d.dry_run_refused, want[i], "request %d: %#x", i, d.dry_run_refused);
	}
	cr_assert_eq(used_of(e, NULL, &q, "shadow1"), 1);
	cr_assert_eq(used_of(e, NULL, &q, "shadow2"), 3);
	sluice_engine_destroy(e);
}

Test(engine_dry_run, concurrency_slots_in_dry_run)
{
	struct sluice_engine *e = engine_of(load_text("policy \"dr\"\nscope ip\n"
						      "limit conc per ip concurrency 2 dry-run\n"
						      "limit enforced per ip rate 100/1m\n"));
	struct sluice_engine_decision d[4];
	struct req q;

	req_init(&q, "GET", "/x", "1.2.3.4", NULL, DAY0 + SEC);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(sluice_engine_check(e, &q.r, &d[i]), SLUICE_OK);
		cr_assert(d[i].d.allowed);
	}
	/* two slots taken as enforcement would; the third would refuse and
	 * takes none */
	cr_assert_eq(d[0].slot_count, 1);
	cr_assert_eq(d[1].slot_count, 1);
	cr_assert_eq(d[2].slot_count, 0);
	cr_assert_eq(d[0].slots[0].limit, 0);
	cr_assert_eq(d[0].dry_run_refused | d[1].dry_run_refused, 0);
	cr_assert_eq(d[2].dry_run_refused, 0x1u);
	cr_assert_eq(used_of(e, NULL, &q, "conc"), 2);
	/* a release frees a slot for the next request */
	cr_assert_eq(sluice_engine_release(e, &d[0]), SLUICE_OK);
	cr_assert_eq(sluice_engine_check(e, &q.r, &d[3]), SLUICE_OK);
	cr_assert_eq(d[3].slot_count, 1);
	cr_assert_eq(d[3].dry_run_refused, 0);
	cr_assert_eq(sluice_engine_release(e, &d[1]), SLUICE_OK);
	cr_assert_eq(sluice_engine_release(e, &d[3]), SLUICE_OK);
	cr_assert_eq(used_of(e, NULL, &q, "conc"), 0);
	cr_assert_eq(stats_of(e, 0).dry_run_refused, 1);
	sluice_engine_destroy(e);
}

Test(engine_dry_run, peek_consumes_nothing)
{
	struct sluice_engine *e = engine_of(load_text(shadow_policy));
	struct sluice_engine_decision d;
	struct req q;

	req_init(&q, "GET", "/x", "1.2.3.4", NULL, DAY0 + SEC);
	for (int i = 0; i < 3; i++)
		run(e, &q);
	q.r.cost = 0;
	cr_assert_eq(sluice_engine_check(e, &q.r, &d), SLUICE_OK);
	cr_assert(d.d.allowed);
	cr_assert_eq(d.dry_run_refused, 0);
	cr_assert_eq(d.d.limit_index, 0);
	cr_assert_eq(used_of(e, NULL, &q, "shadow"), 3);
	cr_assert_eq(used_of(e, NULL, &q, "enforced"), 3);
	sluice_engine_destroy(e);
}

Test(engine_dry_run, stats_size_of_the_previous_version)
{
	struct sluice_engine *e = engine_of(load_text(shadow_policy));
	struct sluice_engine_limit_stats s;
	struct req q;

	req_init(&q, "GET", "/x", "1.2.3.4", NULL, DAY0 + SEC);
	for (int i = 0; i < 5; i++)
		run(e, &q);
	memset(&s, 0xa5, sizeof s);
	s.size = offsetof(struct sluice_engine_limit_stats, dry_run_refused);
	cr_assert_eq(sluice_engine_limit_stats(e, 1, &s), SLUICE_OK);
	cr_assert_eq(s.denied, 2);
	cr_assert_eq(s.dry_run_refused, UINT64_C(0xa5a5a5a5a5a5a5a5), "wrote past the caller's size");
	s.size = offsetof(struct sluice_engine_limit_stats, dry_run_refused) + 1;
	cr_assert_eq(sluice_engine_limit_stats(e, 1, &s), SLUICE_EINVAL);
	sluice_engine_destroy(e);
}

Test(engine_dry_run, reload_keeps_state_when_a_limit_goes_live)
{
	struct sluice_engine *e = engine_of(load_text(shadow_policy));
	struct req q;

	req_init(&q, "GET", "/x", "1.2.3.4", NULL, DAY0 + SEC);
	for (int i = 0; i < 4; i++)
		cr_assert(run(e, &q).d.allowed);
	/* enforce the shadow limit: same numbers, so its state is kept, and
	 * the next request is refused by it */
	cr_assert_eq(sluice_engine_reload(e, load_text("policy \"dr\"\nscope ip\n"
						       "limit enforced per ip rate 100/1m\n"
						       "limit shadow per ip sliding 3/1m\n")),
		     SLUICE_OK);
	struct sluice_engine_decision d = run(e, &q);
	cr_assert(!d.d.allowed);
	cr_assert_eq(d.d.limit_index, 1);
	cr_assert_eq(d.dry_run_refused, 0);
	sluice_engine_destroy(e);
}

Test(engine_dry_run, redis_engine_refuses_dry_run_policies)
{
	struct sluice_policy *p = load_text(shadow_policy);
	struct sluice_redis_options ro = {.size = sizeof ro, .host = "127.0.0.1", .port = 1};
	struct sluice_redis_limiter_options lo = {.size = sizeof lo, .redis = &ro};
	struct sluice_engine *e = NULL;

	cr_assert_eq(sluice_redis_engine_create(&e, p, NULL, &lo), SLUICE_EUNSUPPORTED);
	cr_assert_null(e);
	sluice_policy_destroy(p); /* on failure the caller keeps it */
}
