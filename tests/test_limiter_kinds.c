/*
 * test_limiter_kinds.c - the sliding-log, sliding-counter, calendar and slots
 * kinds inside the keyed limiter (include/sluice/limiter.h): each against
 * its standalone cell, all-or-nothing with a GCRA limit in both directions,
 * reclaim then re-create identical, slots acquired and released with the
 * other limits, entry sizes.
 */
#include <criterion/criterion.h>
#include <sluice.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <urcu.h> /* rcu_read_lock for the engine's internal API below */

#include "limiter/limiter_internal.h"
#include "limit_util.h"

#define DAY (86400 * SEC)

static struct sluice_limiter *make(const struct sluice_limit *l, size_t n)
{
	struct sluice_limiter *lim = NULL;
	cr_assert_eq(sluice_limiter_create(&lim, l, n, NULL), SLUICE_OK);
	return lim;
}

static bool admit(struct sluice_limiter *lim, const char *key, uint64_t cost, uint64_t now,
		  struct sluice_decision *d)
{
	cr_assert_eq(sluice_limiter_admit(lim, key, strlen(key), cost, now, d), SLUICE_OK);
	return d->allowed;
}

static uint64_t bytes_of(struct sluice_limiter *lim)
{
	struct sluice_limiter_stats s;
	memset(&s, 0, sizeof s);
	s.size = sizeof s;
	cr_assert_eq(sluice_limiter_stats(lim, &s), SLUICE_OK);
	return s.bytes;
}

/* ---- validation ---- */

Test(limiter_kinds, create_validates_every_kind)
{
	struct sluice_limiter *lim = NULL;
	struct sluice_limit l = slog(10, SEC);
	l.log.capacity = 3; /* not what config_init made */
	cr_assert_eq(sluice_limiter_create(&lim, &l, 1, NULL), SLUICE_EINVAL);
	l = counter(10, SEC);
	l.counter.div_magic ^= 1;
	cr_assert_eq(sluice_limiter_create(&lim, &l, 1, NULL), SLUICE_EINVAL);
	l = calendar(10, DAY);
	l.params_[15] = 1;
	cr_assert_eq(sluice_limiter_create(&lim, &l, 1, NULL), SLUICE_EINVAL);
	l = slots_retry(4, 0, SEC);
	l.slots.retry_after_ns = 0; /* config_init never leaves 0 */
	cr_assert_eq(sluice_limiter_create(&lim, &l, 1, NULL), SLUICE_EINVAL);
	struct sluice_limit two[2] = { slots_retry(2, 0, SEC), slots_retry(3, 0, SEC) };
	cr_assert_eq(sluice_limiter_create(&lim, two, 2, NULL), SLUICE_EINVAL, "one SLOTS limit at most");
	l.kind = 0x7fffffffu; /* the internal commit kind is not a user kind */
	cr_assert_eq(sluice_limiter_create(&lim, &l, 1, NULL), SLUICE_EINVAL);
	cr_assert_null(lim);
	cr_assert_eq(sizeof(struct sluice_limit), 136, "size unchanged by the new kinds");
}

/* A config made by its config_init in a variable of its own and copied into
 * the limit: the padding inside the config struct is whatever that variable
 * held (config_init writes the fields). create refused the counter and
 * calendar configs then (their validation counted the padding as "unused
 * bytes of the parameter block"), while it accepted a GCRA rate, whose
 * validation starts after the struct. Padding is not a parameter. */
Test(limiter_kinds, a_config_copied_with_garbage_in_its_padding_is_accepted)
{
	struct sluice_limiter *lim = NULL;
	struct sluice_window_counter_config cc;
	struct sluice_calendar_config kc;
	struct sluice_rate rate;

	_Static_assert(sizeof cc > offsetof(struct sluice_window_counter_config, div_shift2) + 1,
		       "the counter config has tail padding");
	memset(&cc, 0xa5, sizeof cc);
	memset(&kc, 0xa5, sizeof kc);
	memset(&rate, 0xa5, sizeof rate);
	cr_assert_eq(sluice_window_counter_config_init(&cc, 10, SEC), SLUICE_OK);
	cr_assert_eq(sluice_calendar_config_init(&kc, 10, DAY), SLUICE_OK);
	cr_assert_eq(sluice_rate_init(&rate, 10, SEC, 10), SLUICE_OK);

	struct sluice_limit l[3];
	memset(l, 0, sizeof l);
	l[0].kind = SLUICE_LIMIT_GCRA;
	memcpy(&l[0].rate, &rate, sizeof rate);
	l[1].kind = SLUICE_LIMIT_SLIDING_COUNTER;
	memcpy(&l[1].counter, &cc, sizeof cc);
	l[2].kind = SLUICE_LIMIT_CALENDAR;
	memcpy(&l[2].calendar, &kc, sizeof kc);
	for (size_t i = 0; i < 3; i++) {
		cr_assert_eq(sluice_limiter_create(&lim, &l[i], 1, NULL), SLUICE_OK, "kind %u",
			     l[i].kind);
		sluice_limiter_destroy(lim);
	}
	/* Bytes past the struct are still refused. */
	l[1].params_[15] = 1;
	cr_assert_eq(sluice_limiter_create(&lim, &l[1], 1, NULL), SLUICE_EINVAL);
}

/* ---- each kind alone equals its cell ---- */

Test(limiter_kinds, each_window_kind_alone_decides_as_its_cell)
{
	struct sluice_limit l[3] = { slog(7, 10 * SEC), counter(7, 10 * SEC),
				     calendar(7, MIN) };
	for (int k = 0; k < 3; k++) {
		struct sluice_limiter *lim = make(&l[k], 1);
		union {
			struct sluice_window_log log;
			uint64_t raw[2 + 16];
		} cell;
		struct sluice_window_counter wc;
		struct sluice_calendar cal;
		sluice_window_log_init(&cell.log, &l[0].log);
		sluice_window_counter_init(&wc);
		sluice_calendar_init(&cal);
		uint64_t t = DAY, x = 88172645463325252ull;
		for (int i = 0; i < 3000; i++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			t += x % (2 * SEC);
			uint64_t cost = x >> 60 & 3;
			struct sluice_decision got, want;
			bool a = admit(lim, "key", cost, t, &got);
			bool b = k == 0   ? sluice_window_log_admit(&cell.log, &l[0].log, t, cost, &want)
				 : k == 1 ? sluice_window_counter_admit(&wc, &l[1].counter, t, cost, &want)
					  : sluice_calendar_admit(&cal, &l[2].calendar, t, cost, &want);
			cr_assert_eq(a, b, "kind %d request %d", k, i);
			cr_assert_eq(got.remaining, want.remaining, "kind %d request %d", k, i);
			cr_assert_eq(got.reset_ns, want.reset_ns);
			cr_assert_eq(got.retry_after_ns, want.retry_after_ns);
			cr_assert_eq(got.limit_index, 0);
		}
		sluice_limiter_destroy(lim);
	}
}

/* ---- all-or-nothing with a GCRA limit ---- */

static void window_vs_bucket(struct sluice_limit window)
{
	/* Window: 5 per minute; bucket: 8 per 10 minutes. The window is the
	 * caller's limit 0, so the internal reordering (GCRA to cell 0) is
	 * exercised. */
	struct sluice_limit l[2] = { window, gcra(8, 10 * MIN, 8) };
	struct sluice_limiter *lim = make(l, 2);
	struct sluice_decision d;
	uint64_t t = DAY + 10 * SEC;

	for (int i = 0; i < 5; i++)
		cr_assert(admit(lim, "a", 1, t, &d));
	/* The window refuses: nothing consumed from the bucket. */
	for (int i = 0; i < 10; i++) {
		cr_assert_not(admit(lim, "a", 1, t, &d));
		cr_assert_eq(d.limit_index, 0, "the window (caller's index 0) governs");
	}
	/* Two minutes later the window is empty and the bucket holds
	 * 3 + 1.6 units: 4 pass, the 5th is the bucket's. Had the refusals
	 * consumed, it would hold 1. */
	t += 2 * MIN;
	cr_assert(admit(lim, "a", 4, t, &d));
	cr_assert_not(admit(lim, "a", 1, t, &d));
	cr_assert_eq(d.limit_index, 1);
	sluice_limiter_destroy(lim);

	/* The bucket refuses: nothing consumed from the window. */
	struct sluice_limit m[2] = { window, gcra(2, 10 * MIN, 2) };
	lim = make(m, 2);
	t = DAY + 10 * SEC;
	cr_assert(admit(lim, "a", 2, t, &d));
	for (int i = 0; i < 10; i++) {
		cr_assert_not(admit(lim, "a", 1, t, &d));
		cr_assert_eq(d.limit_index, 1, "the bucket governs");
	}
	/* The window saw only the 2 admitted units: 3 remain in it. */
	struct sluice_limiter *alone = make(&window, 1);
	cr_assert(admit(alone, "a", 2, t, &d));
	cr_assert_eq(d.remaining, 3);
	cr_assert(admit(alone, "a", 3, t, &d), "the window alone takes 3 more");
	sluice_limiter_destroy(alone);
	sluice_limiter_destroy(lim);
}

Test(limiter_kinds, denied_by_window_consumes_nothing_from_bucket_and_vice_versa)
{
	window_vs_bucket(slog(5, MIN));
	window_vs_bucket(counter(5, MIN));
	window_vs_bucket(calendar(5, MIN));
}

Test(limiter_kinds, window_refusal_leaves_the_bucket_exact)
{
	struct sluice_limit l[2] = { calendar(3, DAY), gcra(10, MIN, 10) };
	struct sluice_limiter *lim = make(l, 2);
	struct sluice_decision d;
	uint64_t t = DAY + SEC;

	cr_assert(admit(lim, "k", 3, t, &d));
	for (int i = 0; i < 50; i++)
		cr_assert_not(admit(lim, "k", 1, t, &d));
	cr_assert_eq(d.reason, SLUICE_REASON_QUOTA);
	cr_assert_eq(d.limit_index, 0);
	cr_assert_eq(d.retry_after_ns, DAY - SEC);
	/* Next day: the bucket still holds 7 (only the 3 admitted counted). */
	t = 2 * DAY;
	cr_assert(admit(lim, "k", 3, t, &d));
	cr_assert_eq(sluice_limiter_peek(lim, "k", 1, t, &d), SLUICE_OK);
	/* least remaining: calendar 0 */
	cr_assert_eq(d.remaining, 0);
	cr_assert_eq(d.limit_index, 0);
	sluice_limiter_destroy(lim);
}

/* ---- reclaim then re-create ---- */

static void reclaim_identical(const struct sluice_limit *l, size_t n)
{
	struct sluice_limiter *kept = make(l, n), *swept = make(l, n);
	uint64_t x = 0x9e3779b97f4a7c15ull, t = DAY;
	size_t reclaimed = 0, got;
	char key[8];

	for (int i = 0; i < 6000; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		t += x % (SEC / 2);
		snprintf(key, sizeof key, "k%u", (unsigned)(x >> 40) % 8);
		uint64_t cost = (x >> 20) % 3;
		struct sluice_decision a, b;
		cr_assert_eq(sluice_limiter_admit(kept, key, strlen(key), cost, t, &a), SLUICE_OK);
		cr_assert_eq(sluice_limiter_admit(swept, key, strlen(key), cost, t, &b), SLUICE_OK);
		cr_assert_eq(a.allowed, b.allowed, "request %d", i);
		cr_assert_eq(a.remaining, b.remaining, "request %d", i);
		cr_assert_eq(a.reset_ns, b.reset_ns);
		cr_assert_eq(a.retry_after_ns, b.retry_after_ns);
		cr_assert_eq(a.limit_index, b.limit_index);
		cr_assert_eq(sluice_limiter_sweep(swept, t, 3, &got), SLUICE_OK);
		reclaimed += got;
	}
	cr_assert_gt(reclaimed, 100, "the test did reclaim (%zu)", reclaimed);
	sluice_limiter_destroy(kept);
	sluice_limiter_destroy(swept);
}

Test(limiter_kinds, reclaim_then_recreate_is_identical_for_every_kind)
{
	struct sluice_limit a = slog(4, 2 * SEC);
	reclaim_identical(&a, 1);
	struct sluice_limit b = counter(4, 2 * SEC);
	reclaim_identical(&b, 1);
	struct sluice_limit c = calendar(4, SEC);
	reclaim_identical(&c, 1);
	struct sluice_limit mix[3] = { slog(6, 3 * SEC), gcra(3, SEC, 3), calendar(9, 5 * SEC) };
	reclaim_identical(mix, 3);
	struct sluice_limit nog[2] = { counter(6, 3 * SEC), calendar(5, 2 * SEC) };
	reclaim_identical(nog, 2);
}

/* ---- slots ---- */

Test(limiter_kinds, slots_with_rate_limits_all_or_nothing_and_release)
{
	struct sluice_limit l[3] = { gcra(120, MIN, 120), calendar(50000, DAY), slots_retry(20, 0, SEC) };
	struct sluice_limiter *lim = make(l, 3);
	struct sluice_decision d;
	sluice_slot_handle h[21];
	uint64_t t = DAY + SEC;

	cr_assert_eq(sluice_limiter_admit(lim, "tok", 3, 1, t, &d), SLUICE_EINVAL,
		     "a slots policy needs acquire");
	cr_assert_eq(sluice_limiter_acquire(lim, "tok", 3, 1, t, &d, NULL), SLUICE_EINVAL);
	for (int i = 0; i < 20; i++) {
		cr_assert_eq(sluice_limiter_acquire(lim, "tok", 3, 1, t, &d, &h[i]), SLUICE_OK);
		cr_assert(d.allowed);
		cr_assert_neq(h[i], SLUICE_SLOT_NONE);
	}
	cr_assert_eq(sluice_limiter_acquire(lim, "tok", 3, 1, t, &d, &h[20]), SLUICE_OK);
	cr_assert_not(d.allowed);
	cr_assert_eq(d.reason, SLUICE_REASON_CONCURRENCY);
	cr_assert_eq(d.limit_index, 2);
	cr_assert_eq(d.retry_after_ns, SEC);
	cr_assert_eq(h[20], SLUICE_SLOT_NONE);
	/* The 21st consumed nothing from the rate limits. */
	cr_assert_eq(sluice_limiter_peek(lim, "tok", 3, t, &d), SLUICE_OK);
	cr_assert_eq(d.remaining, 0, "slots govern the peek");
	/* An entry holding slots is never idle. */
	size_t got;
	cr_assert_eq(sluice_limiter_sweep(lim, t + 2 * DAY, 100, &got), SLUICE_OK);
	cr_assert_eq(got, 0);
	/* Release: exact, double release detected, another key's handle and
	 * an unknown key refused. */
	cr_assert_eq(sluice_limiter_release(lim, "tok", 3, h[0]), SLUICE_OK);
	cr_assert_eq(sluice_limiter_release(lim, "tok", 3, h[0]), SLUICE_EDOUBLE);
	sluice_slot_handle other;
	cr_assert_eq(sluice_limiter_acquire(lim, "oth", 3, 1, t, &d, &other), SLUICE_OK);
	cr_assert_eq(sluice_limiter_release(lim, "tok", 3, other), SLUICE_ESTALE);
	cr_assert_eq(sluice_limiter_release(lim, "nope", 4, h[1]), SLUICE_ENOTFOUND);
	cr_assert_eq(sluice_limiter_release(lim, "tok", 3, SLUICE_SLOT_NONE), SLUICE_ESTALE);
	cr_assert_eq(sluice_limiter_acquire(lim, "tok", 3, 1, t, &d, &h[0]), SLUICE_OK);
	cr_assert(d.allowed);
	for (int i = 0; i < 20; i++)
		cr_assert_eq(sluice_limiter_release(lim, "tok", 3, h[i]), SLUICE_OK);
	cr_assert_eq(sluice_limiter_release(lim, "oth", 3, other), SLUICE_OK);
	/* A day later, no slot held and every limit full: reclaimed; the old
	 * handles are stale against the new entry. */
	cr_assert_eq(sluice_limiter_sweep(lim, t + 2 * DAY, 100, &got), SLUICE_OK);
	cr_assert_eq(got, 2);
	cr_assert_eq(sluice_limiter_acquire(lim, "tok", 3, 1, t + 2 * DAY, &d, &h[1]), SLUICE_OK);
	cr_assert_eq(sluice_limiter_release(lim, "tok", 3, h[0]), SLUICE_ESTALE);
	cr_assert_eq(sluice_limiter_release(lim, "tok", 3, h[1]), SLUICE_OK);
	sluice_limiter_destroy(lim);
}

Test(limiter_kinds, rate_refusal_gives_the_slot_back)
{
	struct sluice_limit l[2] = { slots_retry(5, 0, SEC), gcra(3, MIN, 3) };
	struct sluice_limiter *lim = make(l, 2);
	struct sluice_decision d;
	sluice_slot_handle h;
	uint64_t t = DAY;

	for (int i = 0; i < 3; i++) {
		cr_assert_eq(sluice_limiter_acquire(lim, "k", 1, 1, t, &d, &h), SLUICE_OK);
		cr_assert(d.allowed);
		cr_assert_eq(sluice_limiter_release(lim, "k", 1, h), SLUICE_OK);
	}
	for (int i = 0; i < 10; i++) {
		cr_assert_eq(sluice_limiter_acquire(lim, "k", 1, 1, t, &d, &h), SLUICE_OK);
		cr_assert_not(d.allowed);
		cr_assert_eq(d.limit_index, 1);
		cr_assert_eq(h, SLUICE_SLOT_NONE);
	}
	/* All 5 slots free: a slots-only limiter on the same key shape sees 5. */
	cr_assert_eq(sluice_limiter_peek(lim, "k", 1, t + MIN, &d), SLUICE_OK);
	cr_assert_eq(d.remaining, 3, "the bucket, full again, governs with 3 < 5");
	cr_assert_eq(sluice_limiter_acquire(lim, "k", 1, 0, t, &d, &h), SLUICE_OK);
	cr_assert_eq(h, SLUICE_SLOT_NONE, "a peek takes no slot");
	sluice_limiter_destroy(lim);
}

/* A slot whose lease expired holds an entry only until a sweep: the sweep
 * reaps it as an acquire would and reclaims the entry once every limit is
 * full. A lease still running, or a slot without a lease, keeps it. */
Test(limiter_kinds, sweep_reaps_expired_leases_and_reclaims_the_entry)
{
	for (int with_rate = 0; with_rate < 2; with_rate++) {
		struct sluice_limit l[2] = { slots_retry(3, 0, SEC), gcra(100, SEC, 100) };
		cr_assert_eq(sluice_slots_config_init(&l[0].slots, 3, MIN, SEC), SLUICE_OK);
		struct sluice_limiter *lim = make(l, with_rate ? 2 : 1);
		struct sluice_decision d;
		struct sluice_limiter_stats st;
		sluice_slot_handle h[2];
		size_t got = 99;
		uint64_t t = DAY;

		for (int i = 0; i < 2; i++) {
			cr_assert_eq(sluice_limiter_acquire(lim, "k", 1, 1, t, &d, &h[i]), SLUICE_OK);
			cr_assert(d.allowed);
		}
		cr_assert_eq(sluice_limiter_release(lim, "k", 1, h[1]), SLUICE_OK);
		/* The lease of h[0] runs until t + MIN: the entry stays. */
		cr_assert_eq(sluice_limiter_sweep(lim, t + MIN / 2, 100, &got), SLUICE_OK);
		cr_assert_eq(got, 0);
		cr_assert_eq(sluice_limiter_peek(lim, "k", 1, t + MIN / 2, &d), SLUICE_OK);
		cr_assert_eq(d.remaining, 2, "one slot still held: %llu",
			     (unsigned long long)d.remaining);
		/* Expired: reaped, then the entry is idle and reclaimed. */
		cr_assert_eq(sluice_limiter_sweep(lim, t + MIN, 100, &got), SLUICE_OK);
		cr_assert_eq(got, 1);
		memset(&st, 0, sizeof st);
		st.size = sizeof st;
		cr_assert_eq(sluice_limiter_stats(lim, &st), SLUICE_OK);
		cr_assert_eq(st.live_keys, 0);
		cr_assert_eq(sluice_limiter_release(lim, "k", 1, h[0]), SLUICE_ENOTFOUND);
		/* Re-created full: three slots again. */
		for (int i = 0; i < 3; i++) {
			cr_assert_eq(sluice_limiter_acquire(lim, "k", 1, 1, t + MIN, &d, &h[0]),
				     SLUICE_OK);
			cr_assert(d.allowed);
		}
		sluice_limiter_destroy(lim);
	}
	/* Without a lease a held slot is never taken away. */
	struct sluice_limit s = slots_retry(3, 0, SEC);
	struct sluice_limiter *lim = make(&s, 1);
	struct sluice_decision d;
	sluice_slot_handle h;
	size_t got = 99;
	cr_assert_eq(sluice_limiter_acquire(lim, "k", 1, 1, DAY, &d, &h), SLUICE_OK);
	cr_assert_eq(sluice_limiter_sweep(lim, UINT64_MAX - 1, 100, &got), SLUICE_OK);
	cr_assert_eq(got, 0);
	cr_assert_eq(sluice_limiter_release(lim, "k", 1, h), SLUICE_OK);
	sluice_limiter_destroy(lim);
}

/* ---- the engine's reserve/cancel against a sweep ---- */

/* The sweeper tombstones cell 0 with a CAS from the word it judged idle
 * (docs/limiter.md, "Reclaim"). sluice__limiter_cancel() restored a GCRA
 * cell 0 too, so the word could go v -> older -> v between the sweeper's
 * load and its CAS (ABA: a cancel, then an admission writing the same TAT),
 * and the sweeper, which checked the other cells before that admission
 * committed to them, reclaimed the entry with the admission's calendar unit
 * in it: the day then admitted twice its quota. The allocator hook runs in
 * that window (the sweep allocates its batch between its checks and its
 * CAS); it plays the engine's cancel, split where the sweeper can
 * interleave, and a concurrent admission. */
static struct sluice_limiter *race_lim;
static struct sluice__limiter_hold race_hold;
static uint64_t race_t;
static int race_armed, race_b_allowed = -1;

static void *race_malloc(void *user, size_t size)
{
	(void)user;
	if (race_armed) {
		race_armed = 0;
		/* The rest of the reservation's cancel: cell 0 (the calendar's
		 * receipt is spent: zeroed, it cancels nothing). */
		struct sluice__limiter_hold rest = race_hold;
		memset(&rest.r[1], 0, sizeof rest.r[1]);
		sluice__limiter_cancel(race_lim, &rest);
		/* Another request at the same time, admitted on every limit. */
		struct sluice_decision d;
		cr_assert_eq(sluice_limiter_admit(race_lim, "k", 1, 1, race_t, &d), SLUICE_OK);
		race_b_allowed = d.allowed;
	}
	return malloc(size);
}

static void race_free(void *user, void *p, size_t size)
{
	(void)user;
	(void)size;
	free(p);
}

Test(limiter_kinds, cancel_during_a_sweep_never_loses_another_admission)
{
	struct sluice_limit l[2] = { gcra(1, 10 * SEC, 1), calendar(1, DAY) };
	struct sluice_limiter_options o = { .size = sizeof o, .malloc_fn = race_malloc,
					    .free_fn = race_free };
	struct sluice_decision d;
	size_t got = 0;

	cr_assert_eq(sluice_limiter_create(&race_lim, l, 2, &o), SLUICE_OK);
	race_t = 10 * DAY + 1000 * SEC;
	rcu_read_lock();
	/* The engine's reservation A: both limits take one unit... */
	cr_assert_eq(sluice__limiter_reserve(race_lim, "k", 1, NULL, 1, race_t, &d, &race_hold), 0);
	cr_assert(d.allowed);
	/* ...and its cancel has undone the calendar so far (it cancels the
	 * newest cell first, cell 0 last). */
	struct sluice__limiter_hold first = race_hold;
	memset(&first.r[0], 0, sizeof first.r[0]);
	sluice__limiter_cancel(race_lim, &first);
	/* A sweep 20 s later, the same day: cell 0's TAT (t + 10 s) has
	 * drained, the calendar reads 0. */
	race_armed = 1;
	cr_assert_eq(sluice_limiter_sweep(race_lim, race_t + 20 * SEC, 100, &got), SLUICE_OK);
	rcu_read_unlock();
	cr_assert_eq(race_armed, 0, "the hook ran inside the sweep");
	cr_assert_neq(race_b_allowed, -1);
	/* A third request later that day. At most one of B and C may pass: the
	 * calendar allows 1 per day and A was cancelled. */
	cr_assert_eq(sluice_limiter_admit(race_lim, "k", 1, 1, race_t + 30 * SEC, &d), SLUICE_OK);
	cr_assert_leq(race_b_allowed + (int)d.allowed, 1,
		      "B %d and C %d both admitted in one day of a 1/day quota (reclaimed %zu)",
		      race_b_allowed, d.allowed, got);
	sluice_limiter_destroy(race_lim);
}

/* A peek is an allowed decision whatever the slots hold: reason NONE and
 * retry_after_ns 0 (common.h), as a peek of an exhausted bucket reads. It
 * read reason CONCURRENCY and a 1 s retry-after with allowed set, with and
 * without leases. */
Test(limiter_kinds, peek_of_a_key_with_every_slot_held_is_an_allowed_decision)
{
	for (int ttl = 0; ttl < 2; ttl++) {
		struct sluice_limit l[2] = { gcra(100, SEC, 100), slots_retry(2, 0, SEC) };
		if (ttl)
			cr_assert_eq(sluice_slots_config_init(&l[1].slots, 2, MIN, SEC), SLUICE_OK);
		struct sluice_limiter *lim = make(l, 2);
		struct sluice_decision d;
		sluice_slot_handle h[2], none;
		uint64_t t = DAY;

		for (int i = 0; i < 2; i++) {
			cr_assert_eq(sluice_limiter_acquire(lim, "k", 1, 1, t, &d, &h[i]), SLUICE_OK);
			cr_assert(d.allowed);
		}
		for (int via = 0; via < 2; via++) {
			memset(&d, 0xa5, sizeof d);
			if (via == 0)
				cr_assert_eq(sluice_limiter_peek(lim, "k", 1, t, &d), SLUICE_OK);
			else
				cr_assert_eq(sluice_limiter_acquire(lim, "k", 1, 0, t, &d, &none), SLUICE_OK);
			cr_assert(d.allowed, "ttl %d via %d", ttl, via);
			cr_assert_not(d.degraded);
			cr_assert_eq(d.reason, SLUICE_REASON_NONE, "ttl %d via %d: reason %d", ttl, via,
				     d.reason);
			cr_assert_eq(d.retry_after_ns, 0, "ttl %d via %d", ttl, via);
			cr_assert_eq(d.limit_index, 1, "the slots govern: none left");
			cr_assert_eq(d.limit, 2);
			cr_assert_eq(d.remaining, 0);
			cr_assert_eq(d.reset_ns, SEC, "a full cell's reset is the hint");
		}
		/* The acquire itself is still refused, and the peeks took nothing. */
		cr_assert_eq(sluice_limiter_acquire(lim, "k", 1, 1, t, &d, &none), SLUICE_OK);
		cr_assert_not(d.allowed);
		cr_assert_eq(d.reason, SLUICE_REASON_CONCURRENCY);
		cr_assert_eq(sluice_limiter_release(lim, "k", 1, h[0]), SLUICE_OK);
		cr_assert_eq(sluice_limiter_peek(lim, "k", 1, t, &d), SLUICE_OK);
		cr_assert_eq(d.remaining, 1);
		cr_assert_eq(d.reason, SLUICE_REASON_NONE);
		cr_assert_eq(sluice_limiter_release(lim, "k", 1, h[1]), SLUICE_OK);
		sluice_limiter_destroy(lim);
	}
}

/* ---- entry sizes ---- */

Test(limiter_kinds, entry_sizes_gcra_unchanged_commit_word_only_without_gcra)
{
	struct sluice_decision d;
	struct sluice_limit g = gcra(10, SEC, 10);
	struct sluice_limiter *lim = make(&g, 1);
	/* The one-GCRA policy: a retire head 24 (call_rcu's head and the
	 * limiter) + a header word 8 + GCRA 8 + key 16, allocated apart while
	 * the insertion cannot move the key into its inline slot (another
	 * mover holds the lock), which allocates nothing (docs/limiter.md,
	 * "Inline slots"). */
	sluice__limiter_hold_moves(lim, true);
	cr_assert(admit(lim, "0123456789abcdef", 1, SEC, &d));
	sluice__limiter_hold_moves(lim, false);
	cr_assert_eq(bytes_of(lim), 56);
	size_t got;
	cr_assert_eq(sluice_limiter_sweep(lim, SEC, 100, &got), SLUICE_OK);
	cr_assert_eq(got, 0);
	cr_assert_eq(bytes_of(lim), 56, "freed after a grace period");
	rcu_barrier();
	cr_assert_eq(bytes_of(lim), 0);
	cr_assert(admit(lim, "0123456789abcdef", 9, SEC, &d), "the state moved with the key");
	cr_assert_not(admit(lim, "0123456789abcdef", 1, SEC, &d));
	/* A new key that its insertion moves in: freed without a sweep. */
	cr_assert(admit(lim, "fedcba9876543210", 1, SEC, &d));
	rcu_barrier();
	cr_assert_eq(bytes_of(lim), 0);
	/* Longer keys stay apart, without the retire head: 8 + 8 + 17. */
	cr_assert(admit(lim, "0123456789abcdefg", 1, SEC, &d));
	rcu_barrier();
	cr_assert_eq(bytes_of(lim), 33);
	sluice_limiter_destroy(lim);

	struct sluice_limit gc[2] = { calendar(100, DAY), gcra(10, SEC, 10) };
	lim = make(gc, 2);
	cr_assert(admit(lim, "0123456789abcdef", 1, DAY, &d));
	cr_assert_eq(bytes_of(lim), 34, "GCRA is the commit cell: no extra word");
	sluice_limiter_destroy(lim);

	struct sluice_limit c = calendar(100, DAY);
	lim = make(&c, 1);
	cr_assert(admit(lim, "0123456789abcdef", 1, DAY, &d));
	cr_assert_eq(bytes_of(lim), 26, "calendar 8 (the commit cell) + 2 + 16");
	sluice_limiter_destroy(lim);

	struct sluice_limit w = counter(100, MIN);
	lim = make(&w, 1);
	cr_assert(admit(lim, "0123456789abcdef", 1, DAY, &d));
	cr_assert_eq(bytes_of(lim), 26, "counter 8 (the commit cell) + 2 + 16");
	sluice_limiter_destroy(lim);

	/* A window too short for a day before its index wraps keeps the word. */
	struct sluice_limit ms = counter(100, 1000000);
	lim = make(&ms, 1);
	cr_assert(admit(lim, "0123456789abcdef", 1, DAY, &d));
	cr_assert_eq(bytes_of(lim), 34, "commit 8 + counter 8 + 2 + 16");
	sluice_limiter_destroy(lim);

	struct sluice_limit s = slog(100, MIN);
	lim = make(&s, 1);
	cr_assert(admit(lim, "0123456789abcdef", 1, DAY, &d));
	cr_assert_eq(bytes_of(lim), 8 + sluice_window_log_size(&s.log) + 2 + 16);
	sluice_limiter_destroy(lim);
}
