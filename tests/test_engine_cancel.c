/*
 * test_engine_cancel.c - a refused request consumes nothing across the
 * engine's limiters (src/engine/exec_local.c, docs/limiter.md "Refused
 * requests consume nothing"), played deterministically: request A reserves
 * its first limit, request B lands on the same key through the executor's
 * reserve hook, A's later limit refuses and A's reservation is cancelled.
 * Exactly B's units remain. With two inexact (GCRA) limits the read-only
 * pass answers a visible refusal before anything is reserved.
 */
#include <criterion/criterion.h>

#include "engine/executor_internal.h"
#include "engine_test_util.h"

/* The daily quota is listed first: a policy's order must not matter. The
 * per-minute limit applies to writes only, so a read (B) touches only the
 * daily quota. */
static const char policy_counting[] = "policy \"c\"\n"
				      "scope token\n"
				      "class write match POST /v1/items\n"
				      "limit day per token quota 100/1d@utc\n"
				      "limit minute per token on write rate 1/1h\n";

static const char policy_gcra2[] = "policy \"g\"\n"
				   "scope token\n"
				   "class write match POST /v1/items\n"
				   "limit day per token rate 100/1d burst 100\n"
				   "limit minute per token on write rate 1/1h\n";

struct race {
	struct sluice_engine *e;
	struct req b;
	int fired;
	bool b_allowed;
};

/* B: one read of the same token, in the middle of A's check. */
static void land_b(void *user, uint32_t limit)
{
	struct race *x = user;
	struct sluice_engine_decision d;
	(void)limit;
	if (x->fired++ != 0)
		return;
	sluice__exec_local_set_reserve_hook(NULL, NULL); /* B itself must not recurse */
	cr_assert_eq(sluice_engine_check(x->e, &x->b.r, &d), SLUICE_OK);
	x->b_allowed = d.d.allowed;
}

static uint64_t remaining_of(struct sluice_engine *e, struct req *q, const char *name)
{
	struct sluice_engine_usage u[SLUICE_POLICY_MAX_LIMITS];
	size_t n = 0;
	uint64_t cost = q->r.cost;
	q->r.cost = 0;
	cr_assert_eq(sluice_engine_usage(e, &q->r, u, SLUICE_POLICY_MAX_LIMITS, &n), SLUICE_OK);
	q->r.cost = cost;
	for (size_t i = 0; i < n; i++)
		if (strcmp(u[i].name, name) == 0)
			return u[i].remaining;
	cr_assert_fail("no usage for %s", name);
	return 0;
}

Test(engine_cancel, a_refusal_after_a_landed_admission_gives_back_exactly_its_own_units)
{
	struct sluice_engine *e = engine_of(load_text(policy_counting));
	struct race x = { .e = e };
	struct req a;
	req_init(&a, "POST", "/v1/items", "t1", NULL, DAY0 + SEC);
	req_init(&x.b, "GET", "/v1/items", "t1", NULL, DAY0 + SEC);
	x.b.r.identity_count = 1;
	a.r.identity_count = 1;
	cr_assert(run(e, &a).d.allowed, "the first write passes both limits");
	cr_assert_eq(remaining_of(e, &a, "day"), 99);

	/* A's second write: the daily quota (exact cancel) is reserved
	 * first, B lands on it, the per-minute limit refuses, A cancels. */
	sluice__exec_local_set_reserve_hook(land_b, &x);
	struct sluice_engine_decision d = run(e, &a);
	sluice__exec_local_set_reserve_hook(NULL, NULL);
	cr_assert_not(d.d.allowed);
	cr_assert_str_eq(d.limit_name, "minute");
	cr_assert_eq(x.fired, 1, "B landed between A's reserves");
	cr_assert(x.b_allowed);
	cr_assert_eq(remaining_of(e, &a, "day"), 98, "A's write and B's read: exactly 2 used");
	sluice_engine_destroy(e);
}

/* The bucket is listed first and applies to every class; the daily quota
 * (exact cancel) applies to writes only and is exhausted by one. */
static const char policy_bucket_first[] = "policy \"q\"\n"
					  "scope token\n"
					  "class write match POST /v1/items\n"
					  "limit minute per token rate 100/1h burst 100\n"
					  "limit day per token on write quota 1/1d@utc\n";

Test(engine_cancel, the_quota_is_reserved_before_the_bucket_whatever_the_policy_order)
{
	struct sluice_engine *e = engine_of(load_text(policy_bucket_first));
	struct race x = { .e = e };
	struct req a;
	req_init(&a, "POST", "/v1/items", "t2", NULL, DAY0 + SEC);
	req_init(&x.b, "GET", "/v1/items", "t2", NULL, DAY0 + SEC);
	a.r.identity_count = x.b.r.identity_count = 1;
	cr_assert(run(e, &a).d.allowed, "the first write takes the day's only unit");
	/* The second write: were the bucket reserved first, B would land on
	 * it and the quota's refusal would need the bucket's (inexact)
	 * cancel, which cannot pop A's unit from under B's. The quota goes
	 * first and refuses: nothing was reserved, B never lands. */
	sluice__exec_local_set_reserve_hook(land_b, &x);
	struct sluice_engine_decision d = run(e, &a);
	sluice__exec_local_set_reserve_hook(NULL, NULL);
	cr_assert_not(d.d.allowed);
	cr_assert_str_eq(d.limit_name, "day");
	cr_assert_eq(x.fired, 0, "the quota refused before the bucket was reserved");
	cr_assert_eq(remaining_of(e, &a, "minute"), 99, "only the first write's unit");
	sluice_engine_destroy(e);
}

Test(engine_cancel, two_inexact_limits_a_visible_refusal_reserves_nothing)
{
	struct sluice_engine *e = engine_of(load_text(policy_gcra2));
	struct race x = { .e = e };
	struct req a;
	req_init(&a, "POST", "/v1/items", "t3", NULL, DAY0 + SEC);
	req_init(&x.b, "GET", "/v1/items", "t3", NULL, DAY0 + SEC);
	a.r.identity_count = x.b.r.identity_count = 1;
	cr_assert(run(e, &a).d.allowed);
	sluice__exec_local_set_reserve_hook(land_b, &x);
	for (int i = 0; i < 10; i++) {
		struct sluice_engine_decision d = run(e, &a);
		cr_assert_not(d.d.allowed);
		cr_assert_str_eq(d.limit_name, "minute");
	}
	sluice__exec_local_set_reserve_hook(NULL, NULL);
	cr_assert_eq(x.fired, 0, "the read-only pass refused before any reserve");
	cr_assert_eq(remaining_of(e, &a, "day"), 99, "ten refusals took nothing");
	sluice_engine_destroy(e);
}

Test(engine_cancel, the_denier_reported_is_the_first_in_policy_order)
{
	/* Both limits refuse; the quota is reserved first (exact), but the
	 * denier reported is the one the policy lists first, as on Redis. */
	static const char both[] = "policy \"b\"\n"
				   "scope token\n"
				   "limit minute per token rate 1/1h\n"
				   "limit day per token quota 1/1d@utc\n";
	struct sluice_engine *e = engine_of(load_text(both));
	struct req a;
	req_init(&a, "GET", "/", "t4", NULL, DAY0 + SEC);
	a.r.identity_count = 1;
	cr_assert(run(e, &a).d.allowed);
	struct sluice_engine_decision d = run(e, &a);
	cr_assert_not(d.d.allowed);
	cr_assert_str_eq(d.limit_name, "minute");
	cr_assert_eq(remaining_of(e, &a, "day"), 0);
	sluice_engine_destroy(e);
}
