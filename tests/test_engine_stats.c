/*
 * test_engine_stats.c - sluice_engine_limit_stats(): one limit's counters
 * summed over its bindings (base numbers, each tier, each override naming
 * it), other limits' bindings left out, argument checks.
 */
#include <criterion/criterion.h>

#include <sluice.h>
#include <string.h>

#include "engine_test_util.h"

static const char policy_tiers[] = "policy \"st\"\n"
				   "scope org\n"
				   "tier S x1\n"
				   "tier M x2\n"
				   "limit calls per org rate 3/1m tiered\n"
				   "limit day per org quota 1000/1d@utc\n"
				   "override calls org \"big\" 5 until 2027-01-01T00:00:00Z\n";

static struct sluice_engine_limit_stats stats_of(struct sluice_engine *e, uint32_t limit)
{
	struct sluice_engine_limit_stats s;
	memset(&s, 0xa5, sizeof s);
	s.size = sizeof s;
	cr_assert_eq(sluice_engine_limit_stats(e, limit, &s), SLUICE_OK);
	return s;
}

/* n requests of org `id` under tier (SLUICE_POLICY_NO_TIER: base); returns
 * how many were admitted. */
static int send(struct sluice_engine *e, const char *id, int tier, int n)
{
	struct req q;
	int admitted = 0;
	req_init(&q, "GET", "/x", id, NULL, DAY0 + SEC);
	q.r.tier = tier;
	for (int i = 0; i < n; i++)
		admitted += run(e, &q).d.allowed;
	return admitted;
}

Test(engine_limit_stats, sums_base_tier_and_override_bindings)
{
	struct sluice_policy *p = load_text(policy_tiers);
	int m = sluice_policy_tier_index(p, "M");
	struct sluice_engine *e = engine_of(p);

	struct sluice_engine_limit_stats s = stats_of(e, 0);
	cr_assert_eq(s.size, sizeof s);
	cr_assert_eq(s.admitted + s.denied + s.degraded + s.live_keys, 0, "fresh");
	cr_assert_eq(s.bindings, 4, "base, S, M, the override");

	cr_assert_eq(send(e, "a", SLUICE_POLICY_NO_TIER, 4), 3, "base: 3/1m");
	cr_assert_eq(send(e, "b", m, 8), 6, "tier M: x2");
	cr_assert_eq(send(e, "big", SLUICE_POLICY_NO_TIER, 7), 5, "override: 5");
	s = stats_of(e, 0);
	cr_assert_eq(s.admitted, 3 + 6 + 5);
	cr_assert_eq(s.denied, 1 + 2 + 2);
	cr_assert_eq(s.degraded, 0);
	cr_assert_eq(s.live_keys, 3, "a (base), b (M), big (override)");
	/* Entries allocated apart: these short keys' are freed a grace period
	 * after their insertion moved them into inline slots. */
	cr_assert_leq(s.bytes, 3 * 64);
	/* The daily limit: its own binding only, none of calls' tiers or
	 * overrides. Its exact-cancel quota is reserved before the bucket
	 * (exec_local.c's order), so the 5 requests calls refused were
	 * admitted by it and then cancelled: counted, as documented. */
	s = stats_of(e, 1);
	cr_assert_eq(s.bindings, 1);
	cr_assert_eq(s.admitted, 19, "%llu", (unsigned long long)s.admitted);
	cr_assert_eq(s.denied, 0);
	cr_assert_eq(s.live_keys, 3);
	sluice_engine_destroy(e);
}

Test(engine_limit_stats, refuses_bad_arguments)
{
	struct sluice_engine *e = engine_of(load_text(policy_tiers));
	struct sluice_engine_limit_stats s = { .size = sizeof s };

	cr_assert_eq(sluice_engine_limit_stats(NULL, 0, &s), SLUICE_EINVAL);
	cr_assert_eq(sluice_engine_limit_stats(e, 0, NULL), SLUICE_EINVAL);
	cr_assert_eq(sluice_engine_limit_stats(e, 2, &s), SLUICE_EINVAL, "limit out of range");
	s.size = sizeof s - 1;
	cr_assert_eq(sluice_engine_limit_stats(e, 0, &s), SLUICE_EINVAL, "size too small");
	sluice_engine_destroy(e);
}
