/*
 * test_gcra.c - behaviour of the GCRA cell (include/sluice/gcra.h): every
 * rule of the contract with exact expected values, a randomized differential
 * test against an exact token bucket (tests/gcra_model.h) with boundary times
 * generated on purpose, and the reciprocal division against real division.
 *
 * Some tests read or write the cell's private word (tat_ns) directly: white
 * box, to set a precise debt or to prove that a call wrote nothing.
 */
#include <criterion/criterion.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include <sluice.h>

#include "gcra_model.h"

#define SEC 1000000000ull
#define T62 (UINT64_C(1) << 62)

static struct sluice_rate mkrate(uint64_t limit, uint64_t period_ns, uint64_t burst)
{
	struct sluice_rate r;
	int rc = sluice_rate_init(&r, limit, period_ns, burst);
	cr_assert_eq(rc, SLUICE_OK, "rate_init(%llu, %llu, %llu) = %d", (unsigned long long)limit,
		     (unsigned long long)period_ns, (unsigned long long)burst, rc);
	return r;
}

static uint64_t word(const struct sluice_gcra *cell)
{
	return atomic_load_explicit(&((struct sluice_gcra *)cell)->tat_ns, memory_order_relaxed);
}

static void set_word(struct sluice_gcra *cell, uint64_t v)
{
	atomic_store_explicit(&cell->tat_ns, v, memory_order_relaxed);
}

/* splitmix64: a small deterministic generator for the randomized tests. */
static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += UINT64_C(0x9E3779B97F4A7C15));
	z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
	return z ^ (z >> 31);
}

static uint64_t rng_below(uint64_t *s, uint64_t n)
{
	return n == 0 ? 0 : rng_next(s) % n;
}

/* ------------------------------------------------------------------------ */
/* sluice_rate_init and sluice_strerror                                      */
/* ------------------------------------------------------------------------ */

Test(gcra_rate, init_fields_and_exact_flag)
{
	struct sluice_rate r = mkrate(120, 60 * SEC, 10);
	cr_assert_eq(r.limit, 120u);
	cr_assert_eq(r.period_ns, 60 * SEC);
	cr_assert_eq(r.burst, 10u);
	cr_assert_eq(r.interval_ns, SEC / 2);
	cr_assert_eq(r.tolerance_ns, 5 * SEC);
	cr_assert(r.exact);

	r = mkrate(7, SEC, 7);
	cr_assert_eq(r.interval_ns, 142857143u); /* ceil(1e9 / 7) */
	cr_assert_not(r.exact);

	r = mkrate(3 * SEC, SEC, 1); /* more than one unit per ns: interval 1 */
	cr_assert_eq(r.interval_ns, 1u);
	cr_assert_not(r.exact);
}

Test(gcra_rate, init_rejects_zero_and_null)
{
	struct sluice_rate r;
	memset(&r, 0xAB, sizeof(r));
	struct sluice_rate before = r;

	cr_assert_eq(sluice_rate_init(NULL, 1, SEC, 1), SLUICE_EINVAL);
	cr_assert_eq(sluice_rate_init(&r, 0, SEC, 1), SLUICE_EINVAL);
	cr_assert_eq(sluice_rate_init(&r, 1, 0, 1), SLUICE_EINVAL);
	cr_assert_eq(sluice_rate_init(&r, 1, SEC, 0), SLUICE_EINVAL);
	cr_assert_eq(sluice_rate_init(&r, 0, 0, 0), SLUICE_EINVAL);
	cr_assert_eq(memcmp(&r, &before, sizeof(r)), 0, "rate changed on error");
}

Test(gcra_rate, init_range_bound_is_exact)
{
	struct sluice_rate r;
	memset(&r, 0xCD, sizeof(r));
	struct sluice_rate before = r;

	/* burst * ceil(period / limit) <= 2^62 is accepted, one more is not. */
	cr_assert_eq(sluice_rate_init(&r, 1, T62, 1), SLUICE_OK);
	cr_assert_eq(r.tolerance_ns, T62);
	cr_assert_eq(sluice_rate_init(&r, 1, 1, T62), SLUICE_OK);
	cr_assert_eq(sluice_rate_init(&r, 4, 4 * (T62 / 8), 8), SLUICE_OK);

	memcpy(&r, &before, sizeof(r));
	cr_assert_eq(sluice_rate_init(&r, 1, T62 + 1, 1), SLUICE_ERANGE);
	cr_assert_eq(sluice_rate_init(&r, 1, 1, T62 + 1), SLUICE_ERANGE);
	cr_assert_eq(sluice_rate_init(&r, 1, 2, T62 / 2 + 1), SLUICE_ERANGE);
	cr_assert_eq(sluice_rate_init(&r, 1, UINT64_MAX, 1), SLUICE_ERANGE);
	cr_assert_eq(sluice_rate_init(&r, 1, SEC, UINT64_MAX), SLUICE_ERANGE);
	/* rounding up counts: ceil((2^62 + 1) / 2) * 2 > 2^62 */
	cr_assert_eq(sluice_rate_init(&r, 2, T62 + 1, 2), SLUICE_ERANGE);
	cr_assert_eq(memcmp(&r, &before, sizeof(r)), 0, "rate changed on error");

	/* extreme but representable */
	cr_assert_eq(sluice_rate_init(&r, UINT64_MAX, UINT64_MAX, 1), SLUICE_OK);
	cr_assert_eq(r.interval_ns, 1u);
	cr_assert(r.exact);
	cr_assert_eq(sluice_rate_init(&r, UINT64_MAX, 1, T62), SLUICE_OK);
}

Test(gcra_rate, strerror_names_every_code)
{
	struct {
		int code;
		const char *msg;
	} codes[] = {
#define X_(name, value, msg) {name, msg},
		SLUICE_ERRORS(X_)
#undef X_
	};
	size_t n = sizeof(codes) / sizeof(codes[0]);
	cr_assert_geq(n, 18u);
	for (size_t i = 0; i < n; i++) {
		const char *s = sluice_strerror(codes[i].code);
		cr_assert_not_null(s);
		cr_assert_str_eq(s, codes[i].msg);
		cr_assert_str_neq(s, "unknown error");
		for (size_t j = 0; j < i; j++) {
			cr_assert_neq(codes[i].code, codes[j].code);
			cr_assert_str_neq(s, sluice_strerror(codes[j].code));
		}
	}
	cr_assert_str_eq(sluice_strerror(SLUICE_EINVAL), "invalid argument");
	cr_assert_str_eq(sluice_strerror(SLUICE_ERANGE), "value outside the representable range");
	cr_assert_str_eq(sluice_strerror(1), "unknown error");
	cr_assert_str_eq(sluice_strerror(-1000), "unknown error");
	cr_assert_str_eq(sluice_strerror(INT_MIN), "unknown error");
	cr_assert_str_eq(sluice_strerror(INT_MAX), "unknown error");
}

/* ------------------------------------------------------------------------ */
/* The rules, with exact values                                              */
/* ------------------------------------------------------------------------ */

Test(gcra, starts_full_and_denies_past_burst)
{
	struct sluice_rate rate;
	struct sluice_gcra cell;
	struct sluice_decision d;

	cr_assert_eq(sluice_rate_init(&rate, 10, SEC, 10), SLUICE_OK);
	sluice_gcra_init(&cell);
	for (int i = 0; i < 10; i++) {
		cr_assert(sluice_gcra_admit(&cell, &rate, 5 * SEC, 1, &d));
		cr_assert_eq(d.remaining, 9u - (unsigned)i);
	}
	cr_assert_not(sluice_gcra_admit(&cell, &rate, 5 * SEC, 1, &d));
	cr_assert_eq(d.retry_after_ns, SEC / 10);
	cr_assert_eq(d.reset_ns, SEC);
	cr_assert_eq(d.limit, 10u);
}

Test(gcra, starts_full_at_any_time_and_zeroed_memory_is_a_cell)
{
	struct sluice_rate rate = mkrate(5, SEC, 5);
	uint64_t times[] = {0, 1, SEC, UINT64_C(1000000000000000000), UINT64_MAX / 2,
			    UINT64_MAX - 5 * SEC};
	for (size_t i = 0; i < sizeof(times) / sizeof(times[0]); i++) {
		struct sluice_gcra cell;
		struct sluice_decision d;
		memset(&cell, 0, sizeof(cell));
		cr_assert(sluice_gcra_is_idle(&cell, &rate, times[i]));
		cr_assert(sluice_gcra_admit(&cell, &rate, times[i], 0, &d));
		cr_assert_eq(d.remaining, 5u);
		cr_assert_eq(d.reset_ns, 0u);
		cr_assert(sluice_gcra_admit(&cell, &rate, times[i], 5, &d));
		cr_assert_eq(d.remaining, 0u);
		cr_assert_eq(d.reset_ns, SEC);
		cr_assert_not(sluice_gcra_admit(&cell, &rate, times[i], 1, &d));
	}
	cr_assert_eq(sizeof(struct sluice_gcra), 8u);
}

Test(gcra, admit_iff_at_least_cost_tokens)
{
	struct sluice_rate rate = mkrate(4, 4 * SEC, 4); /* 1 token per second */
	struct sluice_gcra cell;
	struct sluice_decision d;
	uint64_t t = 100 * SEC;

	sluice_gcra_init(&cell);
	cr_assert(sluice_gcra_admit(&cell, &rate, t, 3, &d)); /* 4 -> 1 */
	cr_assert_eq(d.remaining, 1u);
	cr_assert_not(sluice_gcra_admit(&cell, &rate, t, 2, &d)); /* 1 < 2 */
	cr_assert_eq(d.retry_after_ns, SEC);
	cr_assert(sluice_gcra_admit(&cell, &rate, t, 1, &d)); /* 1 >= 1 */
	cr_assert_eq(d.remaining, 0u);
	/* 2.5 s later: 2.5 tokens; 3 is too many, 2 fits, leaving 0.5 */
	t += 5 * SEC / 2;
	cr_assert_not(sluice_gcra_admit(&cell, &rate, t, 3, &d));
	cr_assert_eq(d.remaining, 2u);
	cr_assert_eq(d.retry_after_ns, SEC / 2);
	cr_assert(sluice_gcra_admit(&cell, &rate, t, 2, &d));
	cr_assert_eq(d.remaining, 0u);
	cr_assert_eq(d.reset_ns, 7 * SEC / 2);
	cr_assert_not(sluice_gcra_admit(&cell, &rate, t, 1, &d));
	cr_assert_eq(d.retry_after_ns, SEC / 2);
}

Test(gcra, denied_changes_nothing)
{
	struct sluice_rate rate = mkrate(10, SEC, 3);
	struct sluice_gcra cell;
	struct sluice_decision d1, d2;
	uint64_t t = 42 * SEC;

	sluice_gcra_init(&cell);
	cr_assert(sluice_gcra_admit(&cell, &rate, t, 3, NULL));
	uint64_t w = word(&cell);
	for (int i = 0; i < 1000; i++) {
		cr_assert_not(sluice_gcra_admit(&cell, &rate, t + (uint64_t)i, 1, &d1));
		cr_assert_eq(word(&cell), w);
	}
	cr_assert_not(sluice_gcra_admit(&cell, &rate, t, 2, &d1));
	cr_assert_not(sluice_gcra_admit(&cell, &rate, t, 2, &d2));
	cr_assert_eq(memcmp(&d1, &d2, sizeof(d1)), 0);
	cr_assert_eq(word(&cell), w);
	/* NULL out on a denial also works and writes nothing */
	cr_assert_not(sluice_gcra_admit(&cell, &rate, t, 1, NULL));
	cr_assert_eq(word(&cell), w);
}

Test(gcra, cost_above_burst_is_never)
{
	struct sluice_rate rate = mkrate(10, SEC, 5);
	struct sluice_gcra cell;
	struct sluice_decision d;
	uint64_t costs[] = {6, 7, 1000, T62, UINT64_MAX};

	sluice_gcra_init(&cell);
	for (size_t i = 0; i < sizeof(costs) / sizeof(costs[0]); i++) {
		cr_assert_not(sluice_gcra_admit(&cell, &rate, SEC, costs[i], &d));
		cr_assert_not(d.allowed);
		cr_assert_eq(d.retry_after_ns, SLUICE_NEVER);
		cr_assert_eq(d.reason, SLUICE_REASON_NEVER);
		cr_assert_eq(d.remaining, 5u); /* the bucket is full, untouched */
		cr_assert_eq(d.reset_ns, 0u);
		cr_assert_eq(d.limit, 10u);
		cr_assert_eq(word(&cell), 0u);
	}
	/* still never with a partly drained bucket and much later */
	cr_assert(sluice_gcra_admit(&cell, &rate, SEC, 2, NULL));
	cr_assert_not(sluice_gcra_admit(&cell, &rate, SEC, 6, &d));
	cr_assert_eq(d.retry_after_ns, SLUICE_NEVER);
	cr_assert_eq(d.remaining, 3u);
	cr_assert_not(sluice_gcra_admit(&cell, &rate, 1000 * SEC, 6, &d));
	cr_assert_eq(d.retry_after_ns, SLUICE_NEVER);
	/* cost == burst is possible */
	cr_assert(sluice_gcra_admit(&cell, &rate, 1000 * SEC, 5, &d));
	cr_assert_eq(d.reason, SLUICE_REASON_NONE);
}

Test(gcra, cost_zero_is_a_read_only_peek)
{
	struct sluice_rate rate = mkrate(2, SEC, 4); /* 0.5 s per token */
	struct sluice_gcra cell;
	struct sluice_decision d;
	uint64_t t = 10 * SEC;

	sluice_gcra_init(&cell);
	cr_assert(sluice_gcra_admit(&cell, &rate, t, 0, &d));
	cr_assert(d.allowed);
	cr_assert_eq(d.remaining, 4u);
	cr_assert_eq(d.reset_ns, 0u);
	cr_assert_eq(d.retry_after_ns, 0u);
	cr_assert_eq(word(&cell), 0u);

	cr_assert(sluice_gcra_admit(&cell, &rate, t, 4, NULL));
	uint64_t w = word(&cell);
	cr_assert(sluice_gcra_admit(&cell, &rate, t, 0, &d)); /* empty bucket */
	cr_assert_eq(d.remaining, 0u);
	cr_assert_eq(d.reset_ns, 2 * SEC);
	cr_assert_eq(d.retry_after_ns, 0u);
	cr_assert_eq(d.reason, SLUICE_REASON_NONE);
	cr_assert(sluice_gcra_admit(&cell, &rate, t + SEC / 2 + SEC / 4, 0, &d));
	cr_assert_eq(d.remaining, 1u); /* 1.5 tokens */
	cr_assert_eq(d.reset_ns, SEC + SEC / 4);
	cr_assert_eq(word(&cell), w);
	/* NULL out */
	cr_assert(sluice_gcra_admit(&cell, &rate, t, 0, NULL));
	cr_assert_eq(word(&cell), w);
}

/* Regression: a peek at a stale time whose debt exceeds the bucket depth was
 * reported as denied; a peek is always allowed. */
Test(gcra, peek_at_stale_time_is_allowed)
{
	struct sluice_rate rate = mkrate(1, SEC, 2);
	struct sluice_gcra cell;
	struct sluice_decision d;

	sluice_gcra_init(&cell);
	cr_assert(sluice_gcra_admit(&cell, &rate, 100 * SEC, 2, NULL)); /* F = 102 s */
	cr_assert(sluice_gcra_admit(&cell, &rate, 90 * SEC, 0, &d));    /* debt 12 s */
	cr_assert(d.allowed);
	cr_assert_eq(d.remaining, 0u);
	cr_assert_eq(d.reset_ns, 12 * SEC);
	cr_assert_eq(d.retry_after_ns, 0u);
	cr_assert_eq(word(&cell), 102 * SEC);
}

Test(gcra, decision_fields_exact)
{
	struct sluice_rate rate = mkrate(120, 60 * SEC, 120); /* 0.5 s per token */
	struct sluice_gcra cell;
	struct sluice_decision d;
	uint64_t t = 7 * SEC;

	sluice_gcra_init(&cell);
	cr_assert(sluice_gcra_admit(&cell, &rate, t, 1, &d));
	cr_assert(d.allowed);
	cr_assert_eq(d.reason, SLUICE_REASON_NONE);
	cr_assert_not(d.degraded);
	cr_assert_eq(d.limit_index, 0u);
	cr_assert_eq(d.limit, 120u);
	cr_assert_eq(d.remaining, 119u);
	cr_assert_eq(d.reset_ns, SEC / 2);
	cr_assert_eq(d.retry_after_ns, 0u);

	cr_assert(sluice_gcra_admit(&cell, &rate, t, 119, &d));
	cr_assert_eq(d.remaining, 0u);
	cr_assert_eq(d.reset_ns, 60 * SEC);

	cr_assert_not(sluice_gcra_admit(&cell, &rate, t + 1, 3, &d));
	cr_assert_not(d.allowed);
	cr_assert_eq(d.reason, SLUICE_REASON_RATE);
	cr_assert_eq(d.remaining, 0u);
	cr_assert_eq(d.reset_ns, 60 * SEC - 1);
	cr_assert_eq(d.retry_after_ns, 3 * SEC / 2 - 1);
	cr_assert_eq(d.limit, 120u);

	/* 10.25 s later: 20.5 tokens; reset counts the fraction */
	cr_assert(sluice_gcra_admit(&cell, &rate, t + 10 * SEC + SEC / 4, 0, &d));
	cr_assert_eq(d.remaining, 20u);
	cr_assert_eq(d.reset_ns, 50 * SEC - SEC / 4);
	/* far in the future: full again */
	cr_assert(sluice_gcra_admit(&cell, &rate, t + 3600 * SEC, 0, &d));
	cr_assert_eq(d.remaining, 120u);
	cr_assert_eq(d.reset_ns, 0u);
	cr_assert(sluice_gcra_is_idle(&cell, &rate, t + 3600 * SEC));
}

/* From an empty bucket, the request 1 ns before `cost` tokens exist is denied
 * with retry_after 1, and the one exactly then is admitted; checked against
 * the model for each shape, several costs and three time bases. */
static void check_boundary(uint64_t limit, uint64_t period, uint64_t burst, uint64_t base)
{
	struct sluice_rate rate = mkrate(limit, period, burst);
	uint64_t costs[] = {1, 2, burst / 2 + 1, burst};

	for (size_t k = 0; k < sizeof(costs) / sizeof(costs[0]); k++) {
		uint64_t cost = costs[k];
		if (cost == 0 || cost > burst)
			continue;
		for (int drain = 0; drain < 2; drain++) {
			struct sluice_gcra cell;
			struct sluice_decision d;
			struct gcra_model m;

			sluice_gcra_init(&cell);
			gcra_model_init(&m, limit, period, burst);
			/* drain: empty at base, or empty minus a fraction 1 ns later */
			cr_assert(sluice_gcra_admit(&cell, &rate, base, burst, NULL));
			gcra_model_commit(&m, base, burst);
			uint64_t t0 = base + (uint64_t)drain * (rate.interval_ns / 3);
			gcra_model_u128 ready = gcra_model_ready_at(&m, t0, cost);
			uint64_t exact_at = (uint64_t)ready;
			if (ready <= t0)
				continue; /* more than one unit per ns: already there */

			if (rate.exact) {
				cr_assert_not(sluice_gcra_admit(&cell, &rate, exact_at - 1, cost, &d),
					      "%llu/%llu b%llu cost %llu: admitted 1 ns early",
					      (unsigned long long)limit, (unsigned long long)period,
					      (unsigned long long)burst, (unsigned long long)cost);
				cr_assert_eq(d.retry_after_ns, 1u);
				cr_assert(sluice_gcra_admit(&cell, &rate, exact_at, cost, &d),
					  "%llu/%llu cost %llu: denied on time", (unsigned long long)limit,
					  (unsigned long long)period, (unsigned long long)cost);
				struct gcra_model_verdict v = gcra_model_decide(&m, exact_at, cost);
				cr_assert(v.allowed);
				cr_assert_eq(d.remaining, v.remaining);
				cr_assert(d.reset_ns == v.reset_ns);
			} else {
				/* Rounded interval: never before the exact instant; at
				 * most cost ns of rounding later (interval rounded up
				 * by < 1 ns per token). */
				cr_assert_not(sluice_gcra_admit(&cell, &rate, exact_at - 1, cost, &d));
				uint64_t retry = d.retry_after_ns;
				cr_assert_geq(retry, 1u);
				cr_assert_leq(retry, 1 + burst + cost);
				cr_assert_not(sluice_gcra_admit(&cell, &rate, exact_at - 2 + retry,
								cost, NULL));
				cr_assert(sluice_gcra_admit(&cell, &rate, exact_at - 1 + retry, cost, &d));
			}
		}
	}
}

Test(gcra, one_ns_early_denied_exactly_on_time_admitted)
{
	const uint64_t bases[] = {0, UINT64_C(1000000000000000000), UINT64_MAX - T62 / 3 * 4};
	const struct {
		uint64_t limit, period, burst;
	} shapes[] = {
		{3, SEC, 1},           {120, 60 * SEC, 120},   {120, 60 * SEC, 7},
		{50000, 86400 * SEC, 50000}, {50000, 86400 * SEC, 1000},
		{7, SEC, 7},           {7, SEC, 1},            {1, 1, 1},
		{1, 1, 1000},          {1000, SEC, 10},        {3, 10, 5},
		{UINT64_C(999999937), SEC, 999},    {1, 3600 * SEC, 3},
		{100, 3 * SEC, 100},   {2, T62, 1},
	};
	for (size_t b = 0; b < sizeof(bases) / sizeof(bases[0]); b++)
		for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++)
			check_boundary(shapes[s].limit, shapes[s].period, shapes[s].burst, bases[b]);
}

Test(gcra, non_multiple_rounding_is_documented_and_conservative)
{
	/* 7 per second: interval ceil(1e9/7) = 142857143 ns, 3/7 ns slow. */
	struct sluice_rate rate = mkrate(7, SEC, 7);
	struct sluice_gcra cell;
	struct sluice_decision d;

	sluice_gcra_init(&cell);
	cr_assert(sluice_gcra_admit(&cell, &rate, 0, 7, NULL));
	/* exact bucket: 1 token at ceil(1e9/7) = 142857143: same instant */
	cr_assert_not(sluice_gcra_admit(&cell, &rate, 142857142, 1, &d));
	cr_assert_eq(d.retry_after_ns, 1u);
	cr_assert(sluice_gcra_admit(&cell, &rate, 142857143, 1, &d));
	/* after 7 tokens the exact bucket is at 1e9 ns, the cell at 7 * 142857143 */
	sluice_gcra_init(&cell);
	cr_assert(sluice_gcra_admit(&cell, &rate, 0, 7, NULL));
	cr_assert_not(sluice_gcra_admit(&cell, &rate, SEC, 7, &d));
	cr_assert_eq(d.retry_after_ns, 1u);
	cr_assert(sluice_gcra_admit(&cell, &rate, SEC + 1, 7, &d));
	cr_assert_eq(d.reset_ns, 7 * 142857143u);
}

/* ------------------------------------------------------------------------ */
/* Time: near 0, around 1e18, the horizon near UINT64_MAX, going backwards   */
/* ------------------------------------------------------------------------ */

Test(gcra, times_near_zero)
{
	struct sluice_rate rate = mkrate(1, 10, 3); /* one per 10 ns */
	struct sluice_gcra cell;
	struct sluice_decision d;

	sluice_gcra_init(&cell);
	cr_assert(sluice_gcra_admit(&cell, &rate, 0, 3, &d));
	cr_assert_eq(d.reset_ns, 30u);
	cr_assert_eq(word(&cell), 30u);
	cr_assert_not(sluice_gcra_admit(&cell, &rate, 9, 1, &d));
	cr_assert_eq(d.retry_after_ns, 1u);
	cr_assert(sluice_gcra_admit(&cell, &rate, 10, 1, &d));
	cr_assert_eq(d.reset_ns, 30u);
	cr_assert_not(sluice_gcra_admit(&cell, &rate, 0, 1, &d)); /* stale */
	cr_assert(sluice_gcra_admit(&cell, &rate, 40, 3, &d));
	cr_assert_eq(word(&cell), 70u);
}

Test(gcra, times_around_1e18)
{
	const uint64_t e18 = UINT64_C(1000000000000000000);
	struct sluice_rate rate = mkrate(50000, 86400 * SEC, 50000); /* 1.728 s */
	struct sluice_gcra cell;
	struct sluice_decision d;

	sluice_gcra_init(&cell);
	cr_assert(sluice_gcra_admit(&cell, &rate, e18, 50000, &d));
	cr_assert_eq(d.reset_ns, 86400 * SEC);
	cr_assert_not(sluice_gcra_admit(&cell, &rate, e18 + 1727999999, 1, &d));
	cr_assert_eq(d.retry_after_ns, 1u);
	cr_assert(sluice_gcra_admit(&cell, &rate, e18 + 1728000000, 1, &d));
	cr_assert_eq(d.remaining, 0u);
	cr_assert(sluice_gcra_admit(&cell, &rate, e18 + 43200 * SEC, 0, &d));
	cr_assert_eq(d.remaining, 24999u);
	cr_assert_eq(d.reset_ns, 43200 * SEC + 1728000000);
}

Test(gcra, horizon_near_uint64_max)
{
	struct sluice_rate rate = mkrate(1, SEC, 2);
	struct sluice_gcra cell;
	struct sluice_decision d;
	uint64_t top = UINT64_MAX;
	uint64_t tmax = UINT64_MAX - 2; /* largest state: the top two are tombstones */

	/* A fresh cell is full even at the last instant, and peeks work there. */
	sluice_gcra_init(&cell);
	cr_assert(sluice_gcra_is_idle(&cell, &rate, top));
	cr_assert(sluice_gcra_admit(&cell, &rate, top, 0, &d));
	cr_assert_eq(d.remaining, 2u);

	/* base + cost*interval == UINT64_MAX - 2 still fits ... */
	cr_assert(sluice_gcra_admit(&cell, &rate, tmax - 2 * SEC, 1, &d));
	cr_assert(sluice_gcra_admit(&cell, &rate, tmax - 2 * SEC, 1, &d));
	cr_assert_eq(word(&cell), tmax);
	cr_assert_eq(d.reset_ns, 2 * SEC);
	/* ... one more ns would pass the end of the clock: never, nothing written */
	cr_assert(sluice_gcra_admit(&cell, &rate, top, 0, &d));
	cr_assert_eq(d.remaining, 2u);
	cr_assert(sluice_gcra_is_idle(&cell, &rate, top));
	cr_assert_not(sluice_gcra_admit(&cell, &rate, top, 1, &d));
	cr_assert_eq(d.retry_after_ns, SLUICE_NEVER);
	cr_assert_eq(d.reason, SLUICE_REASON_NEVER);
	cr_assert_eq(d.remaining, 2u);
	cr_assert_eq(word(&cell), tmax);

	sluice_gcra_init(&cell);
	cr_assert_not(sluice_gcra_admit(&cell, &rate, tmax - SEC + 1, 1, &d));
	cr_assert_eq(d.retry_after_ns, SLUICE_NEVER);
	cr_assert(sluice_gcra_admit(&cell, &rate, tmax - SEC, 1, &d));
	cr_assert_eq(word(&cell), tmax);
}

/* Regression: a request both rate-limited and past the horizon was told to
 * retry after the rate wait, at which time it would be denied as "never". */
Test(gcra, horizon_beats_rate_wait)
{
	struct sluice_rate rate = mkrate(1, SEC, 2);
	struct sluice_gcra cell;
	struct sluice_decision d;

	sluice_gcra_init(&cell);
	cr_assert(sluice_gcra_admit(&cell, &rate, (UINT64_MAX - 2) - 3 * SEC, 2, NULL)); /* F = TAT_MAX - S */
	cr_assert_not(sluice_gcra_admit(&cell, &rate, (UINT64_MAX - 2) - 3 * SEC, 2, &d));
	cr_assert_eq(d.reason, SLUICE_REASON_NEVER);
	cr_assert_eq(d.retry_after_ns, SLUICE_NEVER);
	/* one token still fits: base F + 1 s == UINT64_MAX - 2 */
	cr_assert_not(sluice_gcra_admit(&cell, &rate, (UINT64_MAX - 2) - 3 * SEC, 1, &d));
	cr_assert_eq(d.reason, SLUICE_REASON_RATE);
	cr_assert_eq(d.retry_after_ns, SEC);
	cr_assert(sluice_gcra_admit(&cell, &rate, (UINT64_MAX - 2) - 2 * SEC, 1, &d));
}

Test(gcra, horizon_with_largest_depth)
{
	struct sluice_rate rate = mkrate(1, T62, 1);
	struct sluice_gcra cell;
	struct sluice_decision d;

	sluice_gcra_init(&cell);
	cr_assert(sluice_gcra_admit(&cell, &rate, 3 * T62 - 3, 1, &d));
	cr_assert_eq(d.reset_ns, T62);
	cr_assert_eq(word(&cell), UINT64_MAX - 2);
	cr_assert_not(sluice_gcra_admit(&cell, &rate, UINT64_MAX, 1, &d));
	cr_assert_eq(d.retry_after_ns, SLUICE_NEVER);
	cr_assert(sluice_gcra_admit(&cell, &rate, UINT64_MAX, 0, &d));
	cr_assert_eq(d.remaining, 1u);
	sluice_gcra_init(&cell);
	cr_assert_not(sluice_gcra_admit(&cell, &rate, 3 * T62 - 2, 1, &d));
	cr_assert_eq(d.retry_after_ns, SLUICE_NEVER);
}

Test(gcra, time_going_backwards_never_over_admits)
{
	struct sluice_rate rate = mkrate(1, SEC, 3);
	struct sluice_gcra cell;
	struct sluice_decision d;
	uint64_t t = 1000 * SEC;

	sluice_gcra_init(&cell);
	cr_assert(sluice_gcra_admit(&cell, &rate, t, 3, NULL)); /* empty at t */
	/* a stale clock 1 s behind: 1 s of extra debt, nothing refilled */
	cr_assert_not(sluice_gcra_admit(&cell, &rate, t - SEC, 1, &d));
	cr_assert_eq(d.retry_after_ns, 2 * SEC);
	cr_assert_eq(d.reset_ns, 4 * SEC);
	cr_assert_eq(d.remaining, 0u);
	/* half a second later by the real clock: one token is not there yet */
	cr_assert_not(sluice_gcra_admit(&cell, &rate, t + SEC / 2, 1, NULL));
	/* at t + 1 s: one token; the stale thread at t cannot take it twice */
	cr_assert(sluice_gcra_admit(&cell, &rate, t + SEC, 1, NULL));
	for (uint64_t back = 0; back <= 2 * SEC; back += SEC / 8)
		cr_assert_not(sluice_gcra_admit(&cell, &rate, t + SEC - back, 1, NULL));
	/* clock at 0 while the cell is far ahead: debt near 1000 s, no overflow */
	cr_assert_not(sluice_gcra_admit(&cell, &rate, 0, 1, &d));
	cr_assert_eq(d.reset_ns, t + 4 * SEC);
	cr_assert_eq(d.retry_after_ns, t + 2 * SEC);
	cr_assert_not(sluice_gcra_admit(&cell, &rate, 0, 4, &d));
	cr_assert_eq(d.retry_after_ns, SLUICE_NEVER);

	/* a stale admission counts as at the newest time: the total over
	 * [t, t + 10 s] never passes burst + 10 */
	sluice_gcra_init(&cell);
	uint64_t admitted = 0;
	for (uint64_t i = 0; i <= 10 * 8; i++) {
		uint64_t now = t + i * SEC / 8;
		admitted += sluice_gcra_admit(&cell, &rate, now, 1, NULL);
		for (uint64_t back = 1; back <= 4; back++)
			admitted += sluice_gcra_admit(&cell, &rate, now - back * SEC / 4, 1, NULL);
	}
	cr_assert_eq(admitted, 3u + 10u);
}

Test(gcra, extreme_rates)
{
	struct sluice_gcra cell;
	struct sluice_decision d;

	/* interval 1 ns, bucket depth 2^62 */
	struct sluice_rate rate = mkrate(SEC, SEC, T62);
	sluice_gcra_init(&cell);
	cr_assert(sluice_gcra_admit(&cell, &rate, 5, T62, &d));
	cr_assert_eq(d.remaining, 0u);
	cr_assert_eq(d.reset_ns, T62);
	cr_assert_not(sluice_gcra_admit(&cell, &rate, 5 + 9, 10, &d));
	cr_assert_eq(d.retry_after_ns, 1u);
	cr_assert(sluice_gcra_admit(&cell, &rate, 5 + 10, 10, &d));

	/* one unit per 2^62 ns */
	rate = mkrate(1, T62, 1);
	sluice_gcra_init(&cell);
	cr_assert(sluice_gcra_admit(&cell, &rate, 0, 1, NULL));
	cr_assert_not(sluice_gcra_admit(&cell, &rate, T62 - 1, 1, &d));
	cr_assert_eq(d.retry_after_ns, 1u);
	cr_assert(sluice_gcra_admit(&cell, &rate, T62, 1, &d));

	/* limit UINT64_MAX per UINT64_MAX ns */
	rate = mkrate(UINT64_MAX, UINT64_MAX, 1000);
	sluice_gcra_init(&cell);
	cr_assert(sluice_gcra_admit(&cell, &rate, UINT64_MAX - 2000, 1000, &d));
	cr_assert_eq(d.limit, UINT64_MAX);
	cr_assert_not(sluice_gcra_admit(&cell, &rate, UINT64_MAX - 1999, 2, &d));
	cr_assert_eq(d.retry_after_ns, 1u);
	cr_assert(sluice_gcra_admit(&cell, &rate, UINT64_MAX - 1998, 2, &d));
	cr_assert_eq(word(&cell), UINT64_MAX - 998);
}

/* Regression: with interval 1 ns and a bucket depth of exactly 2^62, the
 * multiply-shift division gave remaining = 2^62 + 1 for a full bucket. */
Test(gcra, remaining_at_largest_depth)
{
	struct sluice_gcra cell;
	struct sluice_decision d;
	uint64_t pows[] = {1, 2, 1024, T62 >> 1, T62};

	for (size_t i = 0; i < sizeof(pows) / sizeof(pows[0]); i++) {
		struct sluice_rate rate = mkrate(1, pows[i], T62 / pows[i]);
		sluice_gcra_init(&cell);
		cr_assert(sluice_gcra_admit(&cell, &rate, 0, 0, &d));
		cr_assert_eq(d.remaining, T62 / pows[i], "interval %llu: remaining %llu",
			     (unsigned long long)pows[i], (unsigned long long)d.remaining);
		cr_assert(sluice_gcra_admit(&cell, &rate, 0, 1, &d));
		cr_assert_eq(d.remaining, T62 / pows[i] - 1);
	}
}

/* ------------------------------------------------------------------------ */
/* is_idle, admit_now, receipts                                              */
/* ------------------------------------------------------------------------ */

Test(gcra, is_idle)
{
	struct sluice_rate rate = mkrate(10, SEC, 5);
	struct sluice_gcra cell;

	sluice_gcra_init(&cell);
	cr_assert(sluice_gcra_is_idle(&cell, &rate, 0));
	cr_assert(sluice_gcra_admit(&cell, &rate, SEC, 1, NULL));
	cr_assert_not(sluice_gcra_is_idle(&cell, &rate, SEC));
	cr_assert_not(sluice_gcra_is_idle(&cell, &rate, SEC + SEC / 10 - 1));
	cr_assert(sluice_gcra_is_idle(&cell, &rate, SEC + SEC / 10));
	cr_assert_not(sluice_gcra_is_idle(&cell, &rate, 0)); /* stale time */
	/* a full cell decides like a fresh one */
	struct sluice_gcra fresh;
	struct sluice_decision a, b;
	sluice_gcra_init(&fresh);
	cr_assert(sluice_gcra_admit(&cell, &rate, 2 * SEC, 5, &a));
	cr_assert(sluice_gcra_admit(&fresh, &rate, 2 * SEC, 5, &b));
	cr_assert_eq(memcmp(&a, &b, sizeof(a)), 0);
}

Test(gcra, init_resets_and_one_rate_serves_many_cells)
{
	struct sluice_rate rate = mkrate(2, SEC, 2);
	struct sluice_gcra cells[3];
	struct sluice_decision d;

	for (int i = 0; i < 3; i++) {
		sluice_gcra_init(&cells[i]);
		cr_assert(sluice_gcra_admit(&cells[i], &rate, SEC, (uint64_t)i, NULL));
	}
	cr_assert(sluice_gcra_admit(&cells[0], &rate, SEC, 2, &d)); /* untouched by the others */
	cr_assert_not(sluice_gcra_admit(&cells[2], &rate, SEC, 1, &d));
	cr_assert_eq(d.retry_after_ns, SEC / 2);
	sluice_gcra_init(&cells[2]); /* reset a used cell: full again */
	cr_assert_eq(word(&cells[2]), 0u);
	cr_assert(sluice_gcra_admit(&cells[2], &rate, SEC, 2, &d));
	cr_assert_eq(d.remaining, 0u);
}

Test(gcra, admit_now_reads_the_monotonic_clock)
{
	struct sluice_rate rate = mkrate(1, 3600 * SEC, 2);
	struct sluice_gcra cell;
	struct sluice_decision d;

	sluice_gcra_init(&cell);
	uint64_t before = sluice_monotonic_ns();
	cr_assert(sluice_gcra_admit_now(&cell, &rate, 1, &d));
	cr_assert_eq(d.remaining, 1u);
	cr_assert(sluice_gcra_admit_now(&cell, &rate, 1, NULL));
	cr_assert_not(sluice_gcra_admit_now(&cell, &rate, 1, &d));
	uint64_t after = sluice_monotonic_ns();
	cr_assert_eq(d.reason, SLUICE_REASON_RATE);
	cr_assert_leq(d.retry_after_ns, 3600 * SEC);
	cr_assert_geq(d.retry_after_ns, 3600 * SEC - (after - before));
	/* the cell's state is in the monotonic clock's frame */
	cr_assert_geq(word(&cell), before + 2 * 3600 * SEC);
	cr_assert_leq(word(&cell), after + 2 * 3600 * SEC);
	cr_assert(sluice_gcra_admit_now(&cell, &rate, 0, &d));
	cr_assert_not(sluice_gcra_admit_now(&cell, &rate, 3, &d));
	cr_assert_eq(d.retry_after_ns, SLUICE_NEVER);
}

Test(gcra_receipt, cancel_undoes_exactly)
{
	struct sluice_rate rate = mkrate(10, SEC, 4);
	struct sluice_gcra cell;
	struct sluice_gcra_receipt r;
	struct sluice_decision d, d0;
	uint64_t t = 5 * SEC;

	sluice_gcra_init(&cell);
	cr_assert(sluice_gcra_admit(&cell, &rate, t, 1, NULL));
	uint64_t w = word(&cell);
	cr_assert(sluice_gcra_admit(&cell, &rate, t + 3, 0, &d0));
	cr_assert(sluice_gcra_admit_receipt(&cell, &rate, t + 3, 3, &d, &r));
	cr_assert_eq(d.remaining, 0u);
	cr_assert_neq(word(&cell), w);
	/* peeks and denials in between write nothing: cancel still applies */
	cr_assert_not(sluice_gcra_admit(&cell, &rate, t + 4, 1, NULL));
	cr_assert(sluice_gcra_admit(&cell, &rate, t + 4, 0, NULL));
	cr_assert(sluice_gcra_cancel(&cell, &r));
	cr_assert_eq(word(&cell), w);
	cr_assert(sluice_gcra_admit(&cell, &rate, t + 3, 0, &d));
	cr_assert_eq(memcmp(&d, &d0, sizeof(d)), 0);
	/* the tokens are back */
	cr_assert(sluice_gcra_admit(&cell, &rate, t + 3, 3, NULL));
}

Test(gcra_receipt, cancel_refused_after_another_admission)
{
	struct sluice_rate rate = mkrate(10, SEC, 4);
	struct sluice_gcra cell;
	struct sluice_gcra_receipt a, b;
	uint64_t t = 5 * SEC;

	sluice_gcra_init(&cell);
	cr_assert(sluice_gcra_admit_receipt(&cell, &rate, t, 1, NULL, &a));
	cr_assert(sluice_gcra_admit(&cell, &rate, t, 1, NULL));
	uint64_t w = word(&cell);
	cr_assert_not(sluice_gcra_cancel(&cell, &a));
	cr_assert_eq(word(&cell), w); /* the consumption stays */

	/* stack order: the top pops, then the one below it */
	sluice_gcra_init(&cell);
	cr_assert(sluice_gcra_admit_receipt(&cell, &rate, t, 1, NULL, &a));
	cr_assert(sluice_gcra_admit_receipt(&cell, &rate, t, 2, NULL, &b));
	cr_assert_not(sluice_gcra_cancel(&cell, &a));
	cr_assert(sluice_gcra_cancel(&cell, &b));
	cr_assert(sluice_gcra_cancel(&cell, &a));
	cr_assert_eq(word(&cell), 0u);
	cr_assert(sluice_gcra_is_idle(&cell, &rate, t));
}

Test(gcra_receipt, nothing_to_cancel)
{
	struct sluice_rate rate = mkrate(1, SEC, 1);
	struct sluice_gcra cell;
	struct sluice_gcra_receipt r;
	struct sluice_decision d;

	sluice_gcra_init(&cell);
	cr_assert_not(sluice_gcra_cancel(&cell, NULL));
	/* a peek's receipt */
	cr_assert(sluice_gcra_admit_receipt(&cell, &rate, SEC, 0, &d, &r));
	cr_assert_not(sluice_gcra_cancel(&cell, &r));
	/* a denial's receipt (also after an earlier admit that set the word) */
	cr_assert(sluice_gcra_admit(&cell, &rate, SEC, 1, NULL));
	uint64_t w = word(&cell);
	cr_assert_not(sluice_gcra_admit_receipt(&cell, &rate, SEC, 1, &d, &r));
	cr_assert_not(sluice_gcra_cancel(&cell, &r));
	cr_assert_not(sluice_gcra_admit_receipt(&cell, &rate, SEC, 2, &d, &r)); /* never */
	cr_assert_not(sluice_gcra_cancel(&cell, &r));
	cr_assert_eq(word(&cell), w);
	/* a NULL receipt is an ordinary admit */
	cr_assert(sluice_gcra_admit_receipt(&cell, &rate, 2 * SEC, 1, &d, NULL));
	cr_assert_eq(d.remaining, 0u);
}

Test(gcra_receipt, all_or_nothing_across_two_cells)
{
	struct sluice_rate per_sec = mkrate(5, SEC, 5);
	struct sluice_rate per_min = mkrate(8, 60 * SEC, 8);
	struct sluice_gcra a, b;
	uint64_t admitted = 0;

	sluice_gcra_init(&a);
	sluice_gcra_init(&b);
	for (uint64_t i = 0; i < 100; i++) {
		uint64_t now = 10 * SEC + i * (SEC / 10);
		struct sluice_gcra_receipt ra;
		if (!sluice_gcra_admit_receipt(&a, &per_sec, now, 1, NULL, &ra))
			continue;
		if (!sluice_gcra_admit(&b, &per_min, now, 1, NULL)) {
			cr_assert(sluice_gcra_cancel(&a, &ra));
			continue;
		}
		admitted++;
	}
	/* 8 at once, a 9th when the per-minute cell refills one (7.5 s) */
	cr_assert_eq(admitted, 9u);
	/* the per-second cell only paid for the ones that passed both */
	cr_assert(sluice_gcra_is_idle(&a, &per_sec, 10 * SEC + 100 * (SEC / 10)));
}

/* ------------------------------------------------------------------------ */
/* Concurrency (the thorough version is tests/stress_gcra.c, also under TSan) */
/* ------------------------------------------------------------------------ */

struct conc_arg {
	struct sluice_gcra *cell;
	const struct sluice_rate *rate;
	uint64_t admitted;
};

static void *conc_worker(void *p)
{
	struct conc_arg *a = p;
	for (int i = 0; i < 200000; i++)
		a->admitted += sluice_gcra_admit(a->cell, a->rate, SEC, 1, NULL);
	return NULL;
}

Test(gcra, concurrent_admits_take_exactly_burst)
{
	struct sluice_rate rate = mkrate(1, SEC, 100000);
	struct sluice_gcra cell;
	pthread_t th[4];
	struct conc_arg args[4];

	sluice_gcra_init(&cell);
	for (int i = 0; i < 4; i++) {
		args[i] = (struct conc_arg){&cell, &rate, 0};
		cr_assert_eq(pthread_create(&th[i], NULL, conc_worker, &args[i]), 0);
	}
	uint64_t total = 0;
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		total += args[i].admitted;
	}
	cr_assert_eq(total, 100000u);
	cr_assert_eq(word(&cell), SEC + 100000 * SEC);
}

/* ------------------------------------------------------------------------ */
/* Randomized differential test against the exact bucket                     */
/* ------------------------------------------------------------------------ */

struct diff_stats {
	uint64_t requests, admitted, boundary, retries_checked, cancels;
};

/*
 * Drive one cell and the model with `n` requests. The model is committed
 * only when the cell admits (see gcra_model.h). Checks:
 *   - exact rate, time not older than the model's: every field equal;
 *   - otherwise: the cell admits only what the exact bucket allows at that
 *     point, and never reports more tokens than it has;
 *   - a denial's retry_after is exact for the cell: 1 ns earlier is still
 *     denied, then it is admitted;
 *   - horizon denials only where the new state would pass UINT64_MAX;
 *   - a receipt cancels iff no admission landed since, and restores both.
 */
static void run_diff(uint64_t seed, uint64_t limit, uint64_t period, uint64_t burst, uint64_t base,
		     uint64_t n, bool backwards, struct diff_stats *st)
{
	struct sluice_rate rate = mkrate(limit, period, burst);
	struct sluice_gcra cell;
	struct gcra_model m, saved_m;
	struct sluice_gcra_receipt receipt = {0, 0};
	bool receipt_live = false;
	uint64_t s = seed;
	uint64_t t = base;

	sluice_gcra_init(&cell);
	gcra_model_init(&m, limit, period, burst); /* full at any time >= 0 */

	for (uint64_t i = 0; i < n; i++) {
		uint64_t cost;
		uint64_t r = rng_below(&s, 100);
		if (r < 55)
			cost = 1;
		else if (r < 80)
			cost = 1 + rng_below(&s, burst < 16 ? burst : 16);
		else if (r < 90)
			cost = rng_below(&s, burst + 1);
		else if (r < 95)
			cost = burst;
		else if (r < 97)
			cost = 0;
		else
			cost = burst + 1 + rng_below(&s, 3);

		/* choose the time */
		uint64_t k = rng_below(&s, 100);
		uint64_t step;
		if (k < 40 && cost >= 1 && cost <= burst) {
			/* the exact instant at which the model has `cost` tokens, +-1 */
			gcra_model_u128 ready = gcra_model_ready_at(&m, t, cost);
			int64_t jitter = (int64_t)rng_below(&s, 3) - 1;
			gcra_model_u128 want = ready + (gcra_model_u128)(int64_t)jitter;
			if (jitter < 0 && ready == 0)
				want = 0;
			if (want < t)
				want = t;
			if (want > UINT64_MAX)
				want = UINT64_MAX;
			t = (uint64_t)want;
			st->boundary++;
		} else if (k < 55) {
			/* same instant */
		} else if (k < 85) {
			step = rng_below(&s, rate.interval_ns * 2 + 1);
			t = step > UINT64_MAX - t ? UINT64_MAX : t + step;
		} else if (k < 92) {
			step = rng_below(&s, rate.tolerance_ns * 2 + 1);
			t = step > UINT64_MAX - t ? UINT64_MAX : t + step;
		} else if (backwards) {
			step = rng_below(&s, rate.tolerance_ns + rate.interval_ns + 1);
			t = step > t ? 0 : t - step;
		}

		bool use_receipt = rng_below(&s, 8) == 0;
		struct sluice_decision d;
		struct sluice_gcra_receipt rc;
		struct sluice_gcra before_cell = cell;
		struct gcra_model before_m = m;
		bool ok = use_receipt ? sluice_gcra_admit_receipt(&cell, &rate, t, cost, &d, &rc)
				      : sluice_gcra_admit(&cell, &rate, t, cost, &d);
		struct gcra_model_verdict v = gcra_model_decide(&m, t, cost);
		bool fresh_time = t >= m.t;

		cr_assert_eq(ok, d.allowed);
		cr_assert_eq(d.limit, limit);
		st->requests++;
		if (!ok && d.reason == SLUICE_REASON_NEVER && cost <= burst) {
			/* horizon */
			gcra_model_u128 end = (gcra_model_u128)t + d.reset_ns +
					      (gcra_model_u128)cost * rate.interval_ns;
			cr_assert(cost > 0);
			cr_assert(end > UINT64_MAX, "NEVER without reaching the horizon");
			cr_assert_eq(d.retry_after_ns, SLUICE_NEVER);
			cr_assert_eq(word(&cell), word(&before_cell));
			continue;
		}
		if (v.never) {
			cr_assert_not(ok);
			cr_assert_eq(d.reason, SLUICE_REASON_NEVER);
			cr_assert_eq(d.retry_after_ns, SLUICE_NEVER);
		} else if (rate.exact && fresh_time) {
			cr_assert_eq(ok, v.allowed,
				     "seed %llu req %llu t=%llu cost=%llu: cell %d model %d "
				     "(%llu/%llu b%llu base %llu)",
				     (unsigned long long)seed, (unsigned long long)i,
				     (unsigned long long)t, (unsigned long long)cost, ok, v.allowed,
				     (unsigned long long)limit, (unsigned long long)period,
				     (unsigned long long)burst, (unsigned long long)base);
			cr_assert_eq(d.remaining, v.remaining);
			cr_assert(d.reset_ns == v.reset_ns, "reset %llu vs %llu",
				  (unsigned long long)d.reset_ns, (unsigned long long)v.reset_ns);
			cr_assert(d.retry_after_ns == v.retry_after_ns);
		} else {
			cr_assert(!ok || v.allowed, "seed %llu req %llu: over-admission at t=%llu",
				  (unsigned long long)seed, (unsigned long long)i,
				  (unsigned long long)t);
			if (fresh_time) {
				/* the model state after the cell's verdict */
				if (!ok)
					v = gcra_model_decide(&m, t, 0);
				cr_assert_leq(d.remaining, v.remaining,
					      "seed %llu req %llu t=%llu cost=%llu ok %d: %llu > %llu "
					      "(%llu/%llu b%llu base %llu)",
					      (unsigned long long)seed, (unsigned long long)i,
					      (unsigned long long)t, (unsigned long long)cost, ok,
					      (unsigned long long)d.remaining,
					      (unsigned long long)v.remaining, (unsigned long long)limit,
					      (unsigned long long)period, (unsigned long long)burst,
					      (unsigned long long)base);
				cr_assert(d.reset_ns >= v.reset_ns);
			}
		}
		if (ok) {
			cr_assert_eq(d.retry_after_ns, 0u);
			cr_assert_eq(d.reason, SLUICE_REASON_NONE);
		}
		if (!ok && d.reason == SLUICE_REASON_RATE) {
			cr_assert_geq(d.retry_after_ns, 1u);
			cr_assert_eq(word(&cell), word(&before_cell));
			if (rng_below(&s, 4) == 0) {
				struct sluice_gcra probe = cell;
				uint64_t at = t + d.retry_after_ns;
				cr_assert_not(sluice_gcra_admit(&probe, &rate, at - 1, cost, NULL));
				cr_assert(sluice_gcra_admit(&probe, &rate, at, cost, NULL));
				st->retries_checked++;
			}
		}
		if (ok && cost > 0) {
			st->admitted++;
			saved_m = before_m;
			gcra_model_commit(&m, t, cost);
			if (use_receipt) {
				receipt = rc;
				receipt_live = true;
			} else {
				receipt_live = false;
			}
		}
		/* sometimes cancel the last receipt */
		if (rng_below(&s, 16) == 0 && (receipt.before != receipt.after)) {
			bool expect = receipt_live;
			bool got = sluice_gcra_cancel(&cell, &receipt);
			cr_assert_eq(got, expect);
			if (got) {
				m = saved_m;
				st->cancels++;
			}
			receipt.before = receipt.after = 0;
			receipt_live = false;
		}
	}
}

struct diff_shape {
	uint64_t limit, period, burst;
};

static const struct diff_shape exact_shapes[] = {
	{3, SEC, 1},          {120, 60 * SEC, 120}, {50000, 86400 * SEC, 50000},
	{50000, 86400 * SEC, 37}, {10, SEC, 10},    {1, 1, 1},
	{1, 1, 64},           {1000, SEC, 1},       {4, 4 * SEC, 9},
	{1, T62, 1},          {1, 1 << 20, 1 << 20}, {UINT64_MAX, UINT64_MAX, 1000},
	{3, 3 * (T62 / 8), 8},
};

static const struct diff_shape inexact_shapes[] = {
	{7, SEC, 7},   {7, SEC, 1},          {3, 10, 2},      {3, 10, 50},
	{1000, 999, 3}, {999999937, SEC, 5}, {3 * SEC, SEC, 1000}, {2, 3, 1},
	{6, 1000, 7},  {11, 86400 * SEC, 11},
};

static void run_shapes(const struct diff_shape *shapes, size_t nshapes, bool backwards,
		       uint64_t per_run, uint64_t seed0)
{
	const uint64_t bases[] = {0, UINT64_C(1000000000000000000), UINT64_MAX - (T62 / 2)};
	struct diff_stats st = {0};
	uint64_t seed = seed0;

	for (size_t b = 0; b < sizeof(bases) / sizeof(bases[0]); b++)
		for (size_t i = 0; i < nshapes; i++)
			run_diff(seed++, shapes[i].limit, shapes[i].period, shapes[i].burst,
				 bases[b], per_run, backwards, &st);
	/* the generator really produced the cases it is meant to */
	cr_assert_geq(st.boundary, st.requests / 4);
	cr_assert_geq(st.admitted, st.requests / 20);
	cr_assert_gt(st.retries_checked, 1000u);
	cr_assert_gt(st.cancels, 100u);
}

Test(gcra_diff, exact_rates_match_model, .timeout = 60)
{
	run_shapes(exact_shapes, sizeof(exact_shapes) / sizeof(exact_shapes[0]), false, 40000, 1);
}

Test(gcra_diff, inexact_rates_never_over_admit, .timeout = 60)
{
	run_shapes(inexact_shapes, sizeof(inexact_shapes) / sizeof(inexact_shapes[0]), false,
		   40000, 1000);
}

Test(gcra_diff, backwards_times_never_over_admit, .timeout = 60)
{
	run_shapes(exact_shapes, sizeof(exact_shapes) / sizeof(exact_shapes[0]), true, 20000,
		   2000);
	run_shapes(inexact_shapes, sizeof(inexact_shapes) / sizeof(inexact_shapes[0]), true,
		   20000, 3000);
}

/* Many random shapes, short runs each. */
Test(gcra_diff, random_shapes, .timeout = 60)
{
	uint64_t s = 77;
	struct diff_stats st = {0};

	for (int i = 0; i < 3000; i++) {
		uint64_t limit = 1 + rng_below(&s, i % 3 == 0 ? 1000000 : 1000);
		uint64_t mult = 1 + rng_below(&s, i % 2 ? 1000 : SEC);
		uint64_t period = i % 4 == 3 ? 1 + rng_below(&s, 10 * SEC) : limit * mult;
		uint64_t burst = 1 + rng_below(&s, i % 5 == 0 ? 100000 : 100);
		struct sluice_rate r;
		if (sluice_rate_init(&r, limit, period, burst) != SLUICE_OK)
			continue;
		uint64_t base = rng_next(&s) >> rng_below(&s, 64);
		run_diff(rng_next(&s), limit, period, burst, base, 500, i % 7 == 0, &st);
	}
	cr_assert_gt(st.requests, 1000000u);
}

/* ------------------------------------------------------------------------ */
/* The reciprocal division, through `remaining` with a chosen debt           */
/* ------------------------------------------------------------------------ */

/* remaining = floor((tolerance - debt) / interval); set debt = tolerance - num. */
static void check_div(uint64_t interval, uint64_t num)
{
	uint64_t burst = T62 / interval;
	struct sluice_rate rate = mkrate(1, interval, burst);
	uint64_t tol = rate.tolerance_ns;
	if (num > tol)
		num = tol;
	struct sluice_gcra cell;
	struct sluice_decision d;
	uint64_t now = UINT64_C(1) << 63;

	set_word(&cell, now + (tol - num));
	cr_assert(sluice_gcra_admit(&cell, &rate, now, 0, &d));
	cr_assert_eq(d.remaining, num / interval, "floor(%llu / %llu): got %llu",
		     (unsigned long long)num, (unsigned long long)interval,
		     (unsigned long long)d.remaining);
}

Test(gcra_div, reciprocal_matches_division, .timeout = 60)
{
	uint64_t s = 4242;
	/* edge divisors: 1, powers of two and their neighbours, large values */
	for (int k = 0; k <= 62; k++) {
		uint64_t p = UINT64_C(1) << k;
		uint64_t ts[] = {p - 1, p, p + 1, p + (p >> 1), 3 * (p >> 1)};
		for (size_t j = 0; j < sizeof(ts) / sizeof(ts[0]); j++) {
			uint64_t tv = ts[j];
			if (tv == 0 || tv > T62)
				continue;
			uint64_t tol = (T62 / tv) * tv;
			uint64_t nums[] = {0, 1, tv - 1, tv, tv + 1, tol, tol - 1, tol - tv,
					   tol - tv + 1, tol / 2, tol / 3};
			for (size_t q = 0; q < sizeof(nums) / sizeof(nums[0]); q++)
				check_div(tv, nums[q]);
			for (int q = 0; q < 200; q++)
				check_div(tv, rng_below(&s, tol + 1));
		}
	}
	uint64_t bigs[] = {T62, T62 - 1, T62 / 3, T62 / 3 + 1, 999999937, UINT64_C(3) << 60,
			   (UINT64_C(1) << 61) + 1, 1000000007, 86400 * SEC / 50000};
	for (size_t j = 0; j < sizeof(bigs) / sizeof(bigs[0]); j++)
		for (int q = 0; q < 2000; q++)
			check_div(bigs[j], rng_below(&s, T62 + 1));
	/* random divisors of every magnitude */
	for (int i = 0; i < 200000; i++) {
		uint64_t tv = 1 + (rng_next(&s) >> (2 + rng_below(&s, 62)));
		if (tv > T62)
			tv = T62;
		check_div(tv, rng_next(&s) >> 2);
		check_div(tv, rng_below(&s, 4 * tv + 1));
	}
}
