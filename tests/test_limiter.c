/*
 * test_limiter.c - behaviour of the keyed limiter (include/sluice/limiter.h).
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <sluice.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "limiter/limiter_internal.h"
#include "limit_util.h"

#define DAY (86400 * SEC)

static struct sluice_limiter_options opts_default(void)
{
	struct sluice_limiter_options o;

	memset(&o, 0, sizeof o);
	o.size = sizeof o;
	return o;
}

static struct sluice_limiter *make(const struct sluice_limit *l, size_t n,
				   const struct sluice_limiter_options *o)
{
	struct sluice_limiter *lim = NULL;

	cr_assert_eq(sluice_limiter_create(&lim, l, n, o), SLUICE_OK);
	cr_assert_not_null(lim);
	return lim;
}

static struct sluice_limiter_stats stats_of(struct sluice_limiter *lim)
{
	struct sluice_limiter_stats s;

	memset(&s, 0, sizeof s);
	s.size = sizeof s;
	cr_assert_eq(sluice_limiter_stats(lim, &s), SLUICE_OK);
	return s;
}

static bool admit(struct sluice_limiter *lim, const char *key, uint64_t cost, uint64_t now,
		  struct sluice_decision *d)
{
	cr_assert_eq(sluice_limiter_admit(lim, key, strlen(key), cost, now, d), SLUICE_OK);
	return d->allowed;
}

/* ---- create / destroy ---- */

Test(limiter, create_rejects_bad_arguments)
{
	struct sluice_limit l = gcra(10, SEC, 10);
	struct sluice_limit many[SLUICE_LIMITER_MAX_LIMITS + 1];
	struct sluice_limiter *lim = (struct sluice_limiter *)&l;
	struct sluice_limiter_options o;

	cr_assert_eq(sluice_limiter_create(NULL, &l, 1, NULL), SLUICE_EINVAL);
	cr_assert_eq(sluice_limiter_create(&lim, NULL, 1, NULL), SLUICE_EINVAL);
	cr_assert_null(lim, "*out is cleared on error");
	cr_assert_eq(sluice_limiter_create(&lim, &l, 0, NULL), SLUICE_EINVAL);
	for (size_t i = 0; i < SLUICE_LIMITER_MAX_LIMITS + 1; i++)
		many[i] = l;
	cr_assert_eq(sluice_limiter_create(&lim, many, SLUICE_LIMITER_MAX_LIMITS + 1, NULL),
		     SLUICE_ETOOBIG);

	struct sluice_limit bad = l;
	bad.kind = 0;
	cr_assert_eq(sluice_limiter_create(&lim, &bad, 1, NULL), SLUICE_EINVAL);
	bad = l;
	bad.kind = 99;
	cr_assert_eq(sluice_limiter_create(&lim, &bad, 1, NULL), SLUICE_EINVAL);
	bad = l;
	bad.reserved_ = 1;
	cr_assert_eq(sluice_limiter_create(&lim, &bad, 1, NULL), SLUICE_EINVAL);
	bad = l;
	bad.rate.interval_ns++; /* not what sluice_rate_init() computed */
	cr_assert_eq(sluice_limiter_create(&lim, &bad, 1, NULL), SLUICE_EINVAL);
	bad = l;
	bad.params_[15] = 1; /* reserved parameter bytes */
	cr_assert_eq(sluice_limiter_create(&lim, &bad, 1, NULL), SLUICE_EINVAL);
	memset(&bad, 0, sizeof bad);
	bad.kind = SLUICE_LIMIT_GCRA; /* a zero rate */
	cr_assert_eq(sluice_limiter_create(&lim, &bad, 1, NULL), SLUICE_EINVAL);

	o = opts_default();
	o.size = 0;
	cr_assert_eq(sluice_limiter_create(&lim, &l, 1, &o), SLUICE_EINVAL);
	o.size = sizeof o + 8;
	cr_assert_eq(sluice_limiter_create(&lim, &l, 1, &o), SLUICE_EINVAL);
	o = opts_default();
	o.fail_mode = 2;
	cr_assert_eq(sluice_limiter_create(&lim, &l, 1, &o), SLUICE_EINVAL);
	o = opts_default();
	o.flags = 0x80;
	cr_assert_eq(sluice_limiter_create(&lim, &l, 1, &o), SLUICE_EINVAL);
	o = opts_default();
	o.hash_secret = "x";
	o.hash_secret_len = 0;
	cr_assert_eq(sluice_limiter_create(&lim, &l, 1, &o), SLUICE_EINVAL);
	o = opts_default();
	o.initial_buckets = 1000;
	cr_assert_eq(sluice_limiter_create(&lim, &l, 1, &o), SLUICE_EINVAL);
	cr_assert_null(lim);
}

static void *only_malloc(void *user, size_t size)
{
	(void)user;
	return malloc(size);
}

Test(limiter, create_rejects_half_an_allocator)
{
	struct sluice_limit l = gcra(10, SEC, 10);
	struct sluice_limiter *lim;
	struct sluice_limiter_options o = opts_default();

	o.malloc_fn = only_malloc;
	cr_assert_eq(sluice_limiter_create(&lim, &l, 1, &o), SLUICE_EINVAL);
}

Test(limiter, destroy_null_is_a_no_op)
{
	sluice_limiter_destroy(NULL);
}

Test(limiter, create_with_defaults_and_options)
{
	struct sluice_limit l[2] = { gcra(120, MIN, 120), gcra(50000, DAY, 50000) };
	struct sluice_limiter_options o = opts_default();

	o.hash_secret = "fixed secret";
	o.hash_secret_len = 12;
	o.initial_buckets = 4;
	o.max_keys = 10;
	sluice_limiter_destroy(make(l, 2, NULL));
	sluice_limiter_destroy(make(l, 2, &o));
}

/* ---- keys ---- */

Test(limiter, bad_keys_are_errors_not_crashes)
{
	struct sluice_limit l = gcra(10, SEC, 10);
	struct sluice_limiter *lim = make(&l, 1, NULL);
	struct sluice_decision d;
	static char big[SLUICE_LIMITER_MAX_KEY + 1];

	cr_assert_eq(sluice_limiter_admit(lim, NULL, 0, 1, SEC, &d), SLUICE_EKEY);
	cr_assert_eq(sluice_limiter_admit(lim, NULL, 5, 1, SEC, &d), SLUICE_EKEY);
	cr_assert_eq(sluice_limiter_admit(lim, big, sizeof big, 1, SEC, &d), SLUICE_EKEY);
	cr_assert_eq(sluice_limiter_admit(lim, big, SIZE_MAX, 1, SEC, &d), SLUICE_EKEY);
	cr_assert_eq(sluice_limiter_peek(lim, NULL, 1, SEC, &d), SLUICE_EKEY);
	cr_assert_eq(sluice_limiter_admit(NULL, "a", 1, 1, SEC, &d), SLUICE_EINVAL);
	cr_assert_eq(sluice_limiter_admit(lim, "a", 1, 1, SEC, NULL), SLUICE_EINVAL);
	cr_assert_eq(stats_of(lim).inserted, 0);

	/* The longest key and the empty key are valid keys. */
	memset(big, 'k', sizeof big);
	cr_assert_eq(sluice_limiter_admit(lim, big, SLUICE_LIMITER_MAX_KEY, 1, SEC, &d), SLUICE_OK);
	cr_assert(d.allowed);
	cr_assert_eq(sluice_limiter_admit(lim, "", 0, 1, SEC, &d), SLUICE_OK);
	cr_assert(d.allowed);
	cr_assert_eq(d.remaining, 9);
	cr_assert_eq(stats_of(lim).inserted, 2);
	sluice_limiter_destroy(lim);
}

Test(limiter, keys_are_compared_as_bytes)
{
	struct sluice_limit l = gcra(1, SEC, 1);
	struct sluice_limiter *lim = make(&l, 1, NULL);
	struct sluice_decision d;

	cr_assert_eq(sluice_limiter_admit(lim, "ab\0c", 4, 1, SEC, &d), SLUICE_OK);
	cr_assert(d.allowed);
	/* A prefix, and a key differing after a NUL byte, are other keys. */
	cr_assert_eq(sluice_limiter_admit(lim, "ab", 2, 1, SEC, &d), SLUICE_OK);
	cr_assert(d.allowed);
	cr_assert_eq(sluice_limiter_admit(lim, "ab\0d", 4, 1, SEC, &d), SLUICE_OK);
	cr_assert(d.allowed);
	cr_assert_eq(sluice_limiter_admit(lim, "ab\0c", 4, 1, SEC, &d), SLUICE_OK);
	cr_assert_not(d.allowed);
	cr_assert_eq(stats_of(lim).inserted, 3);
	sluice_limiter_destroy(lim);
}

/* ---- decisions ---- */

Test(limiter, new_key_behaves_like_a_fresh_cell)
{
	struct sluice_limit l = gcra(10, SEC, 5);
	struct sluice_limiter *lim = make(&l, 1, NULL);
	struct sluice_gcra cell;
	struct sluice_decision d, want;
	uint64_t t = 7 * SEC;

	sluice_gcra_init(&cell);
	for (int i = 0; i < 40; i++) {
		t += (uint64_t)(i % 7) * 13 * 1000 * 1000;
		bool a = admit(lim, "client-1", 1 + (uint64_t)(i % 3), t, &d);
		bool b = sluice_gcra_admit(&cell, &l.rate, t, 1 + (uint64_t)(i % 3), &want);
		cr_assert_eq(a, b, "request %d", i);
		cr_assert_eq(d.remaining, want.remaining);
		cr_assert_eq(d.reset_ns, want.reset_ns);
		cr_assert_eq(d.retry_after_ns, want.retry_after_ns);
		cr_assert_eq(d.reason, want.reason);
		cr_assert_not(d.degraded);
		cr_assert_eq(d.limit_index, 0);
	}
	struct sluice_limiter_stats s = stats_of(lim);
	cr_assert_eq(s.inserted, 1);
	cr_assert_eq(s.live_keys, 1);
	cr_assert_eq(s.admitted + s.denied, 40);
	sluice_limiter_destroy(lim);
}

/* Seed 002: a request refused by the per-minute limit does not count
 * against the daily allowance. */
Test(limiter, denied_request_consumes_nothing_from_any_limit)
{
	struct sluice_limit l[2] = { gcra(120, MIN, 120), gcra(50000, DAY, 50000) };
	struct sluice_limiter *lim = make(l, 2, NULL);
	struct sluice_decision d;
	uint64_t t = DAY;

	for (int i = 0; i < 120; i++)
		cr_assert(admit(lim, "user", 1, t, &d));
	for (int i = 0; i < 1000; i++) {
		cr_assert_not(admit(lim, "user", 1, t, &d));
		cr_assert_eq(d.limit_index, 0);
		cr_assert_eq(d.reason, SLUICE_REASON_RATE);
		cr_assert_eq(d.limit, 120);
		cr_assert_eq(d.retry_after_ns, MIN / 120);
	}
	/* The day limit saw exactly the 120 admitted requests. */
	cr_assert_eq(sluice_limiter_peek(lim, "user", 4, t, &d), SLUICE_OK);
	cr_assert(d.allowed);
	cr_assert_eq(d.limit_index, 0, "the minute limit has least remaining");
	cr_assert_eq(d.remaining, 0);
	/* A minute later the minute limit is full and the day limit governs
	 * only when it has less left: consume and look at both. */
	t += MIN;
	cr_assert(admit(lim, "user", 1, t, &d));
	cr_assert_eq(d.limit_index, 0);
	cr_assert_eq(d.remaining, 119);
	/* Cost 120 now: the minute limit has 119 and denies, the day limit
	 * is untouched: 50000 - 121 left. */
	cr_assert_not(admit(lim, "user", 120, t, &d));
	cr_assert_eq(d.limit_index, 0);
	struct sluice_limit tight[2] = { gcra(120, MIN, 120), gcra(200, DAY, 200) };
	struct sluice_limiter *lim2 = make(tight, 2, NULL);
	t = DAY;
	for (int m = 0; m < 2; m++, t += MIN)
		for (int i = 0; i < 150; i++)
			admit(lim2, "u", 1, t, &d);
	/* 120 in minute 1 (30 refused), then 80 in minute 2 before the day
	 * limit (200) is out: the 30 refused in minute 1 did not count
	 * against the day, else only 50 would have passed in minute 2. */
	cr_assert_not(d.allowed);
	cr_assert_eq(d.limit_index, 1);
	struct sluice_limiter_stats s = stats_of(lim2);
	cr_assert_eq(s.admitted, 200);
	cr_assert_eq(s.denied, 100);
	sluice_limiter_destroy(lim2);
	sluice_limiter_destroy(lim);
}

Test(limiter, governing_limit_is_least_remaining_then_shorter_reset)
{
	/* Both limits 10 tokens; the second refills slower (longer reset). */
	struct sluice_limit l[2] = { gcra(10, MIN, 10), gcra(10, SEC, 10) };
	struct sluice_limiter *lim = make(l, 2, NULL);
	struct sluice_decision d;

	cr_assert(admit(lim, "k", 1, SEC, &d));
	cr_assert_eq(d.remaining, 9);
	cr_assert_eq(d.limit_index, 1, "tie on remaining: the shorter reset governs");
	cr_assert_eq(d.reset_ns, SEC / 10);
	/* Half a second later the fast limit refilled: the slow one governs. */
	cr_assert(admit(lim, "k", 1, SEC + SEC / 2, &d));
	cr_assert_eq(d.limit_index, 0);
	cr_assert_eq(d.remaining, 8);
	cr_assert_eq(d.limit, 10);
	sluice_limiter_destroy(lim);
}

Test(limiter, cost_beyond_a_burst_is_never)
{
	struct sluice_limit l[2] = { gcra(100, SEC, 100), gcra(10, SEC, 10) };
	struct sluice_limiter *lim = make(l, 2, NULL);
	struct sluice_decision d;

	cr_assert_not(admit(lim, "k", 11, SEC, &d));
	cr_assert_eq(d.limit_index, 1);
	cr_assert_eq(d.reason, SLUICE_REASON_NEVER);
	cr_assert_eq(d.retry_after_ns, SLUICE_NEVER);
	cr_assert(admit(lim, "k", 10, SEC, &d));
	sluice_limiter_destroy(lim);
}

Test(limiter, time_going_backwards_never_over_admits)
{
	struct sluice_limit l[2] = { gcra(10, SEC, 10), gcra(100, MIN, 100) };
	struct sluice_limiter *lim = make(l, 2, NULL);
	struct sluice_decision d;
	int admitted = 0;

	for (int i = 0; i < 10; i++)
		admitted += admit(lim, "k", 1, 10 * SEC, &d);
	/* Stale clocks: earlier and earlier, and time 0. */
	for (uint64_t t = 10 * SEC; t > 0; t -= SEC / 4)
		admitted += admit(lim, "k", 1, t - 1, &d);
	admitted += admit(lim, "k", 1, 0, &d);
	cr_assert_eq(admitted, 10);
	sluice_limiter_destroy(lim);
}

Test(limiter, peek_reads_without_consuming_or_inserting)
{
	struct sluice_limit l[2] = { gcra(10, SEC, 10), gcra(100, MIN, 100) };
	struct sluice_limiter *lim = make(l, 2, NULL);
	struct sluice_decision d;

	cr_assert_eq(sluice_limiter_peek(lim, "new", 3, SEC, &d), SLUICE_OK);
	cr_assert(d.allowed);
	cr_assert_eq(d.remaining, 10);
	cr_assert_eq(d.limit_index, 0);
	cr_assert_eq(stats_of(lim).inserted, 0, "a peek does not insert");
	cr_assert(admit(lim, "new", 3, SEC, &d));
	for (int i = 0; i < 5; i++) {
		cr_assert_eq(sluice_limiter_peek(lim, "new", 3, SEC, &d), SLUICE_OK);
		cr_assert_eq(d.remaining, 7);
		cr_assert(admit(lim, "new", 0, SEC, &d), "cost 0 is a peek");
		cr_assert_eq(d.remaining, 7);
	}
	struct sluice_limiter_stats s = stats_of(lim);
	cr_assert_eq(s.admitted, 1, "peeks are not counted");
	cr_assert_eq(s.denied, 0);
	sluice_limiter_destroy(lim);
}

/* ---- reclaim ---- */

Test(limiter, sweep_reclaims_only_idle_entries)
{
	struct sluice_limit l[2] = { gcra(10, SEC, 10), gcra(100, MIN, 100) };
	struct sluice_limiter *lim = make(l, 2, NULL);
	struct sluice_decision d;
	size_t got;

	admit(lim, "a", 1, SEC, &d);
	admit(lim, "b", 1, 30 * SEC, &d);
	/* "a" is full again at 1.6 s (the minute limit's 0.6 s interval); "b"
	 * at 30.6 s. */
	cr_assert_eq(sluice_limiter_sweep(lim, 30 * SEC, 100, &got), SLUICE_OK);
	cr_assert_eq(got, 1, "only a is full at 30 s");
	cr_assert_eq(sluice_limiter_sweep(lim, 30 * SEC, 100, &got), SLUICE_OK);
	cr_assert_eq(got, 0);
	cr_assert_eq(sluice_limiter_sweep(lim, 31 * SEC, 100, &got), SLUICE_OK);
	cr_assert_eq(got, 1);
	struct sluice_limiter_stats s = stats_of(lim);
	cr_assert_eq(s.reclaimed, 2);
	cr_assert_eq(s.live_keys, 0);
	cr_assert_eq(sluice_limiter_sweep(NULL, 0, 1, &got), SLUICE_EINVAL);
	cr_assert_eq(sluice_limiter_sweep(lim, 31 * SEC, 0, NULL), SLUICE_OK);
	sluice_limiter_destroy(lim);
}

Test(limiter, sweep_respects_its_budget_and_resumes)
{
	struct sluice_limit l = gcra(10, SEC, 10);
	struct sluice_limiter *lim = make(&l, 1, NULL);
	struct sluice_decision d;
	char key[16];
	size_t got, total = 0;

	for (int i = 0; i < 100; i++) {
		snprintf(key, sizeof key, "k%d", i);
		admit(lim, key, 1, SEC, &d);
	}
	for (int round = 0; round < 10; round++) {
		cr_assert_eq(sluice_limiter_sweep(lim, 2 * SEC, 10, &got), SLUICE_OK);
		cr_assert_eq(got, 10, "round %d", round);
		total += got;
	}
	cr_assert_eq(total, 100);
	cr_assert_eq(sluice_limiter_sweep(lim, 2 * SEC, 10, &got), SLUICE_OK);
	cr_assert_eq(got, 0);
	cr_assert_eq(stats_of(lim).live_keys, 0);
	sluice_limiter_destroy(lim);
}

/* A random request stream on two limiters, one swept after every request:
 * reclaiming idle keys changes no decision. */
Test(limiter, reclaim_then_recreate_gives_identical_decisions)
{
	struct sluice_limit l[2] = { gcra(5, SEC, 5), gcra(20, 10 * SEC, 8) };
	struct sluice_limiter *kept = make(l, 2, NULL);
	struct sluice_limiter *swept = make(l, 2, NULL);
	uint64_t x = 0x9e3779b97f4a7c15ull, t = SEC;
	size_t reclaimed = 0, got;
	char key[8];

	for (int i = 0; i < 20000; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		t += x % (SEC / 3);
		snprintf(key, sizeof key, "k%u", (unsigned)(x >> 40) % 8);
		uint64_t cost = (x >> 20) % 4;
		struct sluice_decision a, b;
		cr_assert_eq(sluice_limiter_admit(kept, key, strlen(key), cost, t, &a), SLUICE_OK);
		cr_assert_eq(sluice_limiter_admit(swept, key, strlen(key), cost, t, &b), SLUICE_OK);
		cr_assert_eq(a.allowed, b.allowed, "request %d", i);
		cr_assert_eq(a.remaining, b.remaining);
		cr_assert_eq(a.reset_ns, b.reset_ns);
		cr_assert_eq(a.retry_after_ns, b.retry_after_ns);
		cr_assert_eq(a.limit_index, b.limit_index);
		cr_assert_eq(sluice_limiter_sweep(swept, t, 3, &got), SLUICE_OK);
		reclaimed += got;
	}
	cr_assert_gt(reclaimed, 1000, "the test did reclaim");
	sluice_limiter_destroy(kept);
	sluice_limiter_destroy(swept);
}

/* ---- capacity and fail modes ---- */

static void full_table(uint32_t mode)
{
	struct sluice_limit l = gcra(10, SEC, 10);
	struct sluice_limiter_options o = opts_default();
	struct sluice_decision d;
	char key[16];

	o.max_keys = 4;
	o.fail_mode = mode;
	struct sluice_limiter *lim = make(&l, 1, &o);
	for (int i = 0; i < 4; i++) {
		snprintf(key, sizeof key, "k%d", i);
		cr_assert(admit(lim, key, 1, SEC, &d));
		cr_assert_not(d.degraded);
	}
	for (int i = 4; i < 100; i++) {
		snprintf(key, sizeof key, "k%d", i);
		cr_assert_eq(admit(lim, key, 1, SEC, &d), mode == SLUICE_FAIL_OPEN);
		cr_assert(d.degraded);
		cr_assert_eq(d.reason,
			     mode == SLUICE_FAIL_OPEN ? SLUICE_REASON_NONE : SLUICE_REASON_CAPACITY);
	}
	/* Known keys are still served exactly. */
	cr_assert(admit(lim, "k0", 1, SEC, &d));
	cr_assert_not(d.degraded);
	cr_assert_eq(d.remaining, 8);
	struct sluice_limiter_stats s = stats_of(lim);
	cr_assert_eq(s.degraded, 96);
	cr_assert_eq(s.live_keys, 4);
	cr_assert_eq(s.admitted, 5);
	sluice_limiter_destroy(lim);
}

Test(limiter, full_table_fails_open)
{
	full_table(SLUICE_FAIL_OPEN);
}

Test(limiter, full_table_fails_closed)
{
	full_table(SLUICE_FAIL_CLOSED);
}

/* A flood of distinct keys beyond a byte budget: memory stays within it, and
 * once swept keys are freed (after a grace period) new keys fit again. */
Test(limiter, flood_of_keys_stays_within_the_byte_budget)
{
	struct sluice_limit l = gcra(10, SEC, 10);
	struct sluice_limiter_options o = opts_default();
	struct sluice_decision d;
	char key[32];

	o.max_bytes = 10000;
	o.fail_mode = SLUICE_FAIL_CLOSED;
	struct sluice_limiter *lim = make(&l, 1, &o);
	for (int i = 0; i < 100000; i++) {
		snprintf(key, sizeof key, "flood-%d", i);
		admit(lim, key, 1, SEC, &d);
	}
	struct sluice_limiter_stats s = stats_of(lim);
	cr_assert_leq(s.bytes, 10000);
	cr_assert_gt(s.live_keys, 100);
	cr_assert_eq(s.inserted + s.degraded, 100000);
	size_t got;
	cr_assert_eq(sluice_limiter_sweep(lim, 2 * SEC, SIZE_MAX, &got), SLUICE_OK);
	cr_assert_eq(got, s.live_keys);
	/* The frees land after a grace period; wait for them (bounded). */
	bool fits = false;
	for (int tries = 0; tries < 500 && !fits; tries++) {
		fits = admit(lim, "after-the-flood", 1, 2 * SEC, &d) && !d.degraded;
		if (!fits)
			usleep(10000);
	}
	cr_assert(fits);
	sluice_limiter_destroy(lim);
}

/* ---- allocation failure at every site ---- */

struct counting_alloc {
	long calls;
	long fail_at; /* 1-based call number that fails; 0: never */
	long live;
	size_t live_bytes;
	pthread_mutex_t mu;
};

static void *count_malloc(void *user, size_t size)
{
	struct counting_alloc *a = user;
	pthread_mutex_lock(&a->mu);
	long n = ++a->calls;
	bool fail = n == a->fail_at;
	if (!fail) {
		a->live++;
		a->live_bytes += size;
	}
	pthread_mutex_unlock(&a->mu);
	return fail ? NULL : malloc(size);
}

static void count_free(void *user, void *ptr, size_t size)
{
	struct counting_alloc *a = user;
	pthread_mutex_lock(&a->mu);
	a->live--;
	a->live_bytes -= size;
	pthread_mutex_unlock(&a->mu);
	free(ptr);
}

/* create, two new keys, an existing key, a sweep, a new key, destroy.
 * Returns the number of allocator calls. */
static long alloc_scenario(long fail_at, uint32_t mode)
{
	struct counting_alloc a = { .fail_at = fail_at, .mu = PTHREAD_MUTEX_INITIALIZER };
	struct sluice_limit l[2] = { gcra(10, SEC, 10), gcra(100, MIN, 100) };
	struct sluice_limiter_options o = opts_default();
	struct sluice_limiter *lim;
	struct sluice_decision d;
	size_t got;

	o.malloc_fn = count_malloc;
	o.free_fn = count_free;
	o.alloc_user = &a;
	o.fail_mode = mode;
	int rc = sluice_limiter_create(&lim, l, 2, &o);
	if (rc != SLUICE_OK) {
		cr_assert_eq(rc, SLUICE_ENOMEM);
		cr_assert_eq(a.live, 0);
		return a.calls;
	}
	const char *keys[] = { "one", "two", "one", "three" };
	for (int i = 0; i < 4; i++) {
		if (i == 3) {
			uint64_t live = stats_of(lim).live_keys;
			rc = sluice_limiter_sweep(lim, 60 * MIN, 100, &got);
			cr_assert(rc == SLUICE_OK || rc == SLUICE_ENOMEM);
			cr_assert_eq(got, rc == SLUICE_OK ? live : 0);
		}
		long before = a.calls;
		bool failed_here = a.fail_at > before;
		cr_assert(admit(lim, keys[i], 1, SEC + (uint64_t)i * 10 * MIN, &d) || d.degraded);
		failed_here = failed_here && a.fail_at <= a.calls;
		if (failed_here) {
			cr_assert(d.degraded, "key %d", i);
			cr_assert_eq(d.allowed, mode == SLUICE_FAIL_OPEN);
		} else {
			cr_assert_not(d.degraded);
			cr_assert(d.allowed);
		}
	}
	sluice_limiter_destroy(lim);
	cr_assert_eq(a.live, 0, "leak with failure at call %ld", fail_at);
	cr_assert_eq(a.live_bytes, 0);
	return a.calls;
}

Test(limiter, allocation_failure_at_every_site)
{
	long sites = alloc_scenario(0, SLUICE_FAIL_OPEN);
	cr_assert_geq(sites, 5, "create, 3 entries, 1 sweep batch");
	for (long f = 1; f <= sites; f++) {
		alloc_scenario(f, SLUICE_FAIL_OPEN);
		alloc_scenario(f, SLUICE_FAIL_CLOSED);
	}
}

/* ---- threads ---- */

struct race_arg {
	struct sluice_limiter *lim;
	pthread_barrier_t *barrier;
	int admitted;
};

static void *race_main(void *p)
{
	struct race_arg *a = p;
	struct sluice_decision d;

	pthread_barrier_wait(a->barrier);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(sluice_limiter_admit(a->lim, "contested", 9, 1, SEC, &d), SLUICE_OK);
		a->admitted += d.allowed;
	}
	return NULL;
}

/* Threads racing on one new key end with one entry that counts them all;
 * none of these threads registered with RCU themselves. */
Test(limiter, insertion_race_ends_in_one_entry_counting_everyone)
{
	enum { N = 8 };
	struct sluice_limit l = gcra(100, MIN, 100);
	for (int round = 0; round < 20; round++) {
		struct sluice_limiter *lim = make(&l, 1, NULL);
		pthread_barrier_t barrier;
		pthread_t th[N];
		struct race_arg arg[N];
		pthread_barrier_init(&barrier, NULL, N);
		for (int i = 0; i < N; i++) {
			arg[i] = (struct race_arg){ lim, &barrier, 0 };
			cr_assert_eq(pthread_create(&th[i], NULL, race_main, &arg[i]), 0);
		}
		int admitted = 0;
		for (int i = 0; i < N; i++) {
			pthread_join(th[i], NULL);
			admitted += arg[i].admitted;
		}
		pthread_barrier_destroy(&barrier);
		cr_assert_eq(admitted, 3 * N);
		struct sluice_decision d;
		cr_assert_eq(sluice_limiter_peek(lim, "contested", 9, SEC, &d), SLUICE_OK);
		cr_assert_eq(d.remaining, 100 - 3 * N);
		struct sluice_limiter_stats s = stats_of(lim);
		cr_assert_eq(s.inserted, 1);
		cr_assert_eq(s.admitted, 3 * N, "stripes of exited threads are kept");
		sluice_limiter_destroy(lim);
	}
}

#include <urcu.h>

/* ---- destroy against liburcu's own readers ---- */

/* destroy freed each entry right after its cds_lfht_del(), inside its own
 * read-side section, as if nothing else could reach it. But liburcu's lazy
 * resize threads walk the chains of entries under their read lock
 * (init_table_populate), and a grow still runs after a burst of new keys:
 * destroy then freed entries those threads were reading (shown with a free
 * hook that pointed freed entries at an unmapped page: some rounds faulted
 * in a liburcu partition-resize thread, gdb). Timing makes that flaky to
 * reproduce, so this test plays the resize thread deterministically: a
 * thread that reached the entry inside its read-side section and stays
 * there while destroy runs. The entry must not be freed before it leaves. */
static struct {
	_Atomic int inside;      /* the reader is in its read-side section */
	_Atomic int early_frees; /* entries freed while it was */
	void *entry;
} rcu_reader;

static void *reader_malloc(void *user, size_t size)
{
	(void)user;
	return malloc(size);
}

static void reader_free(void *user, void *p, size_t size)
{
	(void)user;
	(void)size;
	if (p == rcu_reader.entry && atomic_load(&rcu_reader.inside))
		atomic_fetch_add(&rcu_reader.early_frees, 1);
	free(p);
}

static void *reader_main(void *p)
{
	struct sluice_limiter *lim = p;
	struct sluice__limiter_hold hold;
	struct sluice_decision d;

	cr_assert_eq(sluice__limiter_thread_enter(lim), SLUICE_OK);
	rcu_read_lock();
	cr_assert_eq(sluice__limiter_reserve(lim, "k", 1, NULL, 1, SEC, &d, &hold), 0);
	cr_assert(d.allowed);
	rcu_reader.entry = hold.entry;
	atomic_store(&rcu_reader.inside, 1);
	struct timespec ts = { 0, 200 * 1000 * 1000 }; /* destroy runs meanwhile */
	nanosleep(&ts, NULL);
	atomic_store(&rcu_reader.inside, 0);
	rcu_read_unlock();
	return NULL;
}

Test(limiter, destroy_frees_no_entry_an_rcu_reader_still_holds)
{
	struct sluice_limit l = gcra(100, SEC, 100);
	struct sluice_limiter_options o = opts_default();
	struct sluice_decision d;
	pthread_t th;

	o.malloc_fn = reader_malloc;
	o.free_fn = reader_free;
	struct sluice_limiter *lim = make(&l, 1, &o);
	cr_assert(admit(lim, "k", 1, SEC, &d));
	cr_assert_eq(pthread_create(&th, NULL, reader_main, lim), 0);
	while (!atomic_load(&rcu_reader.inside))
		sched_yield();
	sluice_limiter_destroy(lim);
	pthread_join(th, NULL);
	cr_assert_eq(atomic_load(&rcu_reader.early_frees), 0,
		     "destroy freed the entry inside a reader's read-side section");
}

static void *self_registered_main(void *p)
{
	struct sluice_limiter *lim = p;
	struct sluice_decision d;

	rcu_register_thread();
	for (int i = 0; i < 100; i++)
		cr_assert_eq(sluice_limiter_admit(lim, "x", 1, 1, SEC, &d), SLUICE_OK);
	rcu_unregister_thread();
	return NULL;
}

Test(limiter, caller_registered_threads)
{
	struct sluice_limit l = gcra(50, SEC, 50);
	struct sluice_limiter_options o = opts_default();
	pthread_t th;

	o.flags = SLUICE_LIMITER_CALLER_REGISTERS_RCU;
	rcu_register_thread();
	struct sluice_limiter *lim = make(&l, 1, &o);
	cr_assert_eq(pthread_create(&th, NULL, self_registered_main, lim), 0);
	pthread_join(th, NULL);
	cr_assert_eq(stats_of(lim).admitted, 50);
	sluice_limiter_destroy(lim);
	rcu_unregister_thread();
}

static uint64_t late_clock(void *user)
{
	(void)user;
	return 1000 * SEC;
}

Test(limiter, maintenance_thread_reclaims)
{
	struct sluice_limit l = gcra(10, SEC, 10);
	struct sluice_limiter *lim = make(&l, 1, NULL);
	struct sluice_decision d;

	admit(lim, "a", 1, SEC, &d);
	admit(lim, "b", 1, SEC, &d);
	cr_assert_eq(sluice_limiter_maintenance_stop(lim), SLUICE_ESTATE);
	cr_assert_eq(sluice_limiter_maintenance_start(lim, 0, 10, NULL, NULL), SLUICE_EINVAL);
	cr_assert_eq(sluice_limiter_maintenance_start(lim, 1000000, 0, NULL, NULL), SLUICE_EINVAL);
	cr_assert_eq(sluice_limiter_maintenance_start(lim, 1000000, 10, late_clock, NULL), SLUICE_OK);
	cr_assert_eq(sluice_limiter_maintenance_start(lim, 1000000, 10, NULL, NULL), SLUICE_ESTATE);
	for (int i = 0; i < 500 && stats_of(lim).reclaimed < 2; i++)
		usleep(2000);
	cr_assert_eq(stats_of(lim).reclaimed, 2);
	cr_assert_eq(sluice_limiter_maintenance_stop(lim), SLUICE_OK);
	/* Destroy stops a running thread itself. */
	cr_assert_eq(sluice_limiter_maintenance_start(lim, 1000000, 10, NULL, NULL), SLUICE_OK);
	sluice_limiter_destroy(lim);
}

/* ---- batch ---- */

Test(limiter, batch_equals_one_at_a_time)
{
	struct sluice_limit l[2] = { gcra(5, SEC, 5), gcra(30, MIN, 30) };
	struct sluice_limiter *a = make(l, 2, NULL);
	struct sluice_limiter *b = make(l, 2, NULL);
	enum { N = 300 };
	struct sluice_limiter_request req[N];
	struct sluice_decision got[N], want;
	static char keys[N][8];
	uint64_t x = 12345;

	for (int round = 0; round < 10; round++) {
		uint64_t t = SEC + (uint64_t)round * SEC / 2;
		for (int i = 0; i < N; i++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			snprintf(keys[i], sizeof keys[i], "b%u", (unsigned)(x % 40));
			req[i] = (struct sluice_limiter_request){ keys[i], strlen(keys[i]),
								  (x >> 32) % 3 };
		}
		cr_assert_eq(sluice_limiter_admit_batch(a, req, N, t, got), SLUICE_OK);
		for (int i = 0; i < N; i++) {
			cr_assert_eq(sluice_limiter_admit(b, req[i].key, req[i].key_len,
							  req[i].cost, t, &want),
				     SLUICE_OK);
			cr_assert_eq(got[i].allowed, want.allowed, "round %d req %d", round, i);
			cr_assert_eq(got[i].remaining, want.remaining);
			cr_assert_eq(got[i].limit_index, want.limit_index);
			cr_assert_eq(got[i].retry_after_ns, want.retry_after_ns);
		}
	}
	struct sluice_limiter_stats sa = stats_of(a), sb = stats_of(b);
	cr_assert_eq(sa.admitted, sb.admitted);
	cr_assert_eq(sa.denied, sb.denied);
	cr_assert_eq(sa.inserted, sb.inserted);
	sluice_limiter_destroy(a);
	sluice_limiter_destroy(b);
}

Test(limiter, batch_validates_every_key_first)
{
	struct sluice_limit l = gcra(5, SEC, 5);
	struct sluice_limiter *lim = make(&l, 1, NULL);
	struct sluice_limiter_request req[3] = { { "a", 1, 1 }, { "b", 1, 1 }, { NULL, 1, 1 } };
	struct sluice_decision out[3];

	cr_assert_eq(sluice_limiter_admit_batch(lim, req, 3, SEC, out), SLUICE_EKEY);
	req[2] = (struct sluice_limiter_request){ "c", SLUICE_LIMITER_MAX_KEY + 1, 1 };
	cr_assert_eq(sluice_limiter_admit_batch(lim, req, 3, SEC, out), SLUICE_EKEY);
	cr_assert_eq(stats_of(lim).inserted, 0, "nothing admitted");
	cr_assert_eq(sluice_limiter_admit_batch(lim, NULL, 0, SEC, NULL), SLUICE_OK);
	cr_assert_eq(sluice_limiter_admit_batch(lim, NULL, 1, SEC, out), SLUICE_EINVAL);
	cr_assert_eq(sluice_limiter_admit_batch(NULL, req, 1, SEC, out), SLUICE_EINVAL);
	sluice_limiter_destroy(lim);
}

/* ---- statistics ---- */

Test(limiter, stats_count_every_outcome)
{
	struct sluice_limit l = gcra(2, SEC, 2);
	struct sluice_limiter_options o = opts_default();
	struct sluice_decision d;
	struct sluice_limiter_stats s;

	o.max_keys = 1;
	struct sluice_limiter *lim = make(&l, 1, &o);
	admit(lim, "a", 1, SEC, &d);
	admit(lim, "a", 1, SEC, &d);
	admit(lim, "a", 1, SEC, &d);
	admit(lim, "b", 1, SEC, &d);
	s = stats_of(lim);
	cr_assert_eq(s.admitted, 2);
	cr_assert_eq(s.denied, 1);
	cr_assert_eq(s.degraded, 1);
	cr_assert_eq(s.inserted, 1);
	cr_assert_eq(s.live_keys, 1);
	cr_assert_gt(s.bytes, 0);
	memset(&s, 0, sizeof s);
	cr_assert_eq(sluice_limiter_stats(lim, &s), SLUICE_EINVAL, "size not set");
	s.size = sizeof s;
	cr_assert_eq(sluice_limiter_stats(NULL, &s), SLUICE_EINVAL);
	cr_assert_eq(sluice_limiter_stats(lim, NULL), SLUICE_EINVAL);
	sluice_limiter_destroy(lim);
}

/* ---- hash flooding ---- */

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double time_admits(struct sluice_limiter *lim, const uint64_t *keys, int n, int rounds)
{
	struct sluice_decision d;
	double best = 1e9;

	for (int r = 0; r < rounds; r++) {
		double t0 = now_s();
		for (int i = 0; i < n; i++)
			sluice_limiter_admit(lim, &keys[i], sizeof keys[i], 1, SEC, &d);
		double dt = now_s() - t0;
		if (dt < best)
			best = dt;
	}
	return best;
}

/* Keys that all collide in the low 12 bits of unkeyed XXH3 (seed 0), the
 * bits cds_lfht uses to pick a bucket at ~4k buckets. Under the keyed hash
 * they spread like random keys, and lookups cost about the same. */
Test(limiter, crafted_collisions_do_not_slow_lookups)
{
	enum { N = 3000, MASK = 0xfff };
	static uint64_t bad[N], good[N];
	struct sluice_limit l = gcra(1000000, SEC, 1000000);
	struct sluice_limiter *lim = make(&l, 1, NULL);
	uint64_t x = 88172645463325252ull;
	int n = 0;

	for (uint64_t i = 0; n < N; i++)
		if ((XXH3_64bits(&i, sizeof i) & MASK) == 0x5a5)
			bad[n++] = i;
	for (int i = 0; i < N; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		good[i] = x;
	}

	/* The keyed hash spreads the crafted keys: no bucket (low 12 bits) gets
	 * more than a handful, where the unkeyed hash put all N in one. */
	static int bucket[MASK + 1];
	int worst = 0;
	for (int i = 0; i < N; i++) {
		int b = (int)(sluice__limiter_hash(lim, &bad[i], sizeof bad[i]) & MASK);
		if (++bucket[b] > worst)
			worst = bucket[b];
	}
	cr_assert_leq(worst, 12, "crafted keys still collide under the keyed hash: %d", worst);

	/* And the table sees it: admitting the crafted keys costs about what
	 * random keys cost (a chain of 3000 would make it ~100x slower). */
	double t_bad = time_admits(lim, bad, N, 5);
	double t_good = time_admits(lim, good, N, 5);
	cr_assert_lt(t_bad, 4 * t_good + 0.002, "crafted %.6f s vs random %.6f s", t_bad, t_good);
	sluice_limiter_destroy(lim);
}

static void *short_lived_main(void *p)
{
	struct sluice_limiter *lim = p;
	struct sluice_decision d;
	char key[16];

	for (int i = 0; i < 200; i++) {
		snprintf(key, sizeof key, "t%d", i);
		cr_assert_eq(sluice_limiter_admit(lim, key, strlen(key), 1, SEC, &d), SLUICE_OK);
	}
	return NULL; /* sluice unregisters this thread from RCU at exit */
}

/* Threads that sluice registered and that have exited must not be waited
 * for (or touched) by later grace periods: sweep (call_rcu) and destroy
 * (rcu_barrier) after they are gone. A thread left registered at exit would
 * leave a dangling reader in liburcu's registry. */
Test(limiter, exited_threads_do_not_block_grace_periods)
{
	struct sluice_limit l = gcra(10, SEC, 10);
	struct sluice_limiter *lim = make(&l, 1, NULL);
	pthread_t th[4];
	size_t got;

	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 4; i++)
			cr_assert_eq(pthread_create(&th[i], NULL, short_lived_main, lim), 0);
		for (int i = 0; i < 4; i++)
			pthread_join(th[i], NULL);
		cr_assert_eq(sluice_limiter_sweep(lim, 100 * SEC * (uint64_t)(round + 1), SIZE_MAX,
						  &got),
			     SLUICE_OK);
		cr_assert_eq(got, 200);
		synchronize_rcu();
	}
	cr_assert_eq(stats_of(lim).reclaimed, 600);
	sluice_limiter_destroy(lim);
}
