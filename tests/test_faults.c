/*
 * test_faults.c - sluice under faults (docs/reliability.md): clock jumps of
 * hours in both directions, times at the end of the clock, keys of length 0
 * and SLUICE_LIMITER_MAX_KEY, policies at the extremes, allocation failure
 * at the sites tests/test_limiter.c does not reach (sweep batches after the
 * first, batch admit, the maintenance thread, the seed policies), and a
 * scaled-down key flood. The 10-million-key flood and the threaded fault
 * runs are plain executables: stress_flood.c and stress_faults.c.
 *
 * The law checked wherever requests are admitted, per cell (or key and
 * limit), over the admitted requests' times t:
 *
 *     admitted cost <= burst + floor((max t - min t) / interval)
 *
 * the exact bound of a token bucket, which GCRA keeps whatever order the
 * times come in.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sluice.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "limiter/limiter_internal.h"

#define SEC 1000000000ull
#define HOUR (3600 * SEC)
#define DAY (24 * HOUR)
#define YEAR (365 * DAY)
#define T62 (UINT64_C(1) << 62)

static struct sluice_rate mkrate(uint64_t limit, uint64_t period_ns, uint64_t burst)
{
	struct sluice_rate r;

	cr_assert_eq(sluice_rate_init(&r, limit, period_ns, burst), SLUICE_OK, "rate %llu/%llu b%llu",
		     (unsigned long long)limit, (unsigned long long)period_ns,
		     (unsigned long long)burst);
	return r;
}

static struct sluice_limit gcra(uint64_t limit, uint64_t period_ns, uint64_t burst)
{
	struct sluice_limit l;

	memset(&l, 0, sizeof l);
	l.kind = SLUICE_LIMIT_GCRA;
	l.rate = mkrate(limit, period_ns, burst);
	return l;
}

static struct sluice_limiter_options opts(void)
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

static uint64_t rng(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* ---- the law ---- */

struct law {
	uint64_t cost;
	uint64_t t_first;
	uint64_t t_last;
};

static void law_add(struct law *l, uint64_t cost, uint64_t t)
{
	if (l->cost == 0 || t < l->t_first)
		l->t_first = t;
	if (l->cost == 0 || t > l->t_last)
		l->t_last = t;
	l->cost += cost;
}

/* extra: bursts a documented fault may add (a sweep ahead of the admitters). */
static void law_check(const struct law *l, const struct sluice_rate *r, uint64_t extra_bursts,
		      const char *what)
{
	if (l->cost == 0)
		return;
	uint64_t bound = r->burst * (1 + extra_bursts) + (l->t_last - l->t_first) / r->interval_ns;
	cr_assert_leq(l->cost, bound, "%s: admitted %llu > bound %llu", what,
		      (unsigned long long)l->cost, (unsigned long long)bound);
}

/* The law over every window [a, b] of time, not just the whole span (with
 * jumps of hours the whole span bounds nothing): for admissions sorted by
 * time with prefix costs P, (P_j - P_{i-1}) * I - (t_j - t_i) <= burst * I
 * for all i <= j; one pass keeps the least P_{i-1} * I - t_i. */
struct adm {
	uint64_t t;
	uint64_t cost;
};

static int adm_by_time(const void *pa, const void *pb)
{
	const struct adm *a = pa, *b = pb;
	return a->t < b->t ? -1 : a->t > b->t;
}

static void window_law(struct adm *a, size_t n, const struct sluice_rate *r, const char *what)
{
	qsort(a, n, sizeof *a, adm_by_time);
	const __int128 iv = r->interval_ns, depth = (__int128)r->burst * r->interval_ns;
	__int128 prefix = 0, least = 0;
	for (size_t j = 0; j < n; j++) {
		__int128 start = prefix * iv - (__int128)a[j].t;
		if (j == 0 || start < least)
			least = start;
		prefix += a[j].cost;
		cr_assert_leq(prefix * iv - (__int128)a[j].t - least, depth,
			      "%s: a window ending at %llu admits more than the bucket", what,
			      (unsigned long long)a[j].t);
	}
}

/* ---- clock jumps on a GCRA cell ---- */

/* Forward by hours: the bucket is full again, never fuller. */
Test(clock_jump, cell_forward_by_hours_refills_only_the_burst)
{
	struct sluice_rate r = mkrate(10, SEC, 5);
	struct sluice_gcra c;
	struct sluice_decision d;
	uint64_t t = 10 * DAY;

	sluice_gcra_init(&c);
	cr_assert(sluice_gcra_admit(&c, &r, t, 5, NULL));
	cr_assert_not(sluice_gcra_admit(&c, &r, t, 1, NULL));
	t += 7 * HOUR;
	int n = 0;
	while (sluice_gcra_admit(&c, &r, t, 1, &d))
		n++;
	cr_assert_eq(n, 5, "7 hours refill a burst of 5, not 252000");
	cr_assert_eq(d.retry_after_ns, SEC / 10);
}

/* Backward by hours: every request is judged as at the newest admission
 * plus the lag as debt, so all are denied and none consumes; when the clock
 * comes forward again the cell decides as if the backward period never
 * happened. */
Test(clock_jump, cell_backward_by_hours_then_forward_again)
{
	struct sluice_rate r = mkrate(10, SEC, 5);
	struct sluice_gcra c, twin;
	struct sluice_decision d;
	uint64_t t = 10 * DAY;

	sluice_gcra_init(&c);
	sluice_gcra_init(&twin);
	cr_assert(sluice_gcra_admit(&c, &r, t, 2, NULL));
	cr_assert(sluice_gcra_admit(&twin, &r, t, 2, NULL));
	/* 3 hours back, and 10 minutes of requests there. */
	for (uint64_t s = 0; s < 600; s++) {
		cr_assert_not(sluice_gcra_admit(&c, &r, t - 3 * HOUR + s * SEC, 1, &d));
		cr_assert_eq(d.reason, SLUICE_REASON_RATE);
		cr_assert_geq(d.retry_after_ns, 3 * HOUR - s * SEC - 5 * SEC);
		/* A peek in the past is still allowed and writes nothing. */
		cr_assert(sluice_gcra_admit(&c, &r, t - 3 * HOUR + s * SEC, 0, &d));
	}
	/* Forward again, a little after t: identical to the twin. */
	for (uint64_t i = 0; i < 100; i++) {
		uint64_t now = t + i * SEC / 20;
		struct sluice_decision a, b;
		cr_assert_eq(sluice_gcra_admit(&c, &r, now, 1, &a),
			     sluice_gcra_admit(&twin, &r, now, 1, &b));
		cr_assert_eq(a.remaining, b.remaining);
		cr_assert_eq(a.retry_after_ns, b.retry_after_ns);
		cr_assert_eq(a.reset_ns, b.reset_ns);
	}
}

/* Random walks with jumps of hours either way, stale readings and small
 * steps, over several rates: the law holds after every admission. */
Test(clock_jump, cell_random_jumps_keep_the_bound)
{
	const struct sluice_rate rates[] = {
		mkrate(10, SEC, 5),      mkrate(1, HOUR, 1),     mkrate(1000, SEC, 1000),
		mkrate(7, 3 * SEC, 2),   mkrate(SEC, SEC, 1),    mkrate(1, YEAR, 3),
	};
	for (size_t ri = 0; ri < sizeof rates / sizeof rates[0]; ri++) {
		const struct sluice_rate *r = &rates[ri];
		uint64_t seed = 0x1234567 + ri;
		for (int run = 0; run < 20; run++) {
			struct sluice_gcra c;
			struct law law = { 0 };
			static struct adm log[3000];
			size_t nlog = 0;
			uint64_t t = 100 * DAY;

			sluice_gcra_init(&c);
			for (int i = 0; i < 3000; i++) {
				uint64_t x = rng(&seed);
				if (x % 64 == 0)
					t += (1 + x % 5) * HOUR;       /* forward jump */
				else if (x % 64 == 1)
					t -= (1 + (x >> 8) % 5) * HOUR; /* backward jump */
				else
					t += (x >> 16) % (2 * r->interval_ns + 1);
				uint64_t now = x % 7 == 0 ? t - (x >> 20) % SEC : t; /* stale */
				uint64_t cost = 1 + (x >> 40) % 3;
				if (sluice_gcra_admit(&c, r, now, cost, NULL)) {
					law_add(&law, cost, now);
					law_check(&law, r, 0, "cell");
					log[nlog++] = (struct adm){ now, cost };
				}
			}
			window_law(log, nlog, r, "cell windows");
		}
	}
}

/* ---- clock jumps on the limiter ---- */

/* The same walk through the limiter: two limits, several keys, batches, and
 * sweeps that run at a time no later admission precedes (a lagging sweeper,
 * as the maintenance thread's clock is), so reclaim never over-admits. */
Test(clock_jump, limiter_random_jumps_keep_the_bound_across_reclaim)
{
	/* 20 keys hit every ~20 s against a 12-minute-deep limit: entries are
	 * in use most of the time, and idle after the forward jumps, so a
	 * sweep at the wrong time would show (checked: sweeping 10 h ahead
	 * breaks the windowed law here). */
	enum { KEYS = 20, STEPS = 20000 };
	struct sluice_limit l[2] = { gcra(10, SEC, 5), gcra(100, HOUR, 20) };
	struct sluice_limiter *lim = make(l, 2, NULL);
	static uint64_t times[STEPS], suffix_min[STEPS + 1];
	struct law law[KEYS] = { { 0 } };
	static struct adm log[KEYS][2 * STEPS / KEYS * 4];
	size_t nlog[KEYS] = { 0 };
	uint64_t seed = 0xfeedface, t = 100 * DAY;
	size_t reclaimed_total = 0;

	/* The clock: small steps, forward jumps of hours, and excursions hours
	 * into the past that last a few dozen requests before the clock comes
	 * back (a wrong NTP step, then its correction). */
	uint64_t back = 0;
	int excursion = 0;
	for (int i = 0; i < STEPS; i++) {
		uint64_t x = rng(&seed);
		if (x % 1000 == 0)
			t += (1 + x % 4) * HOUR;
		else if (x % 1000 == 1 && excursion == 0) {
			back = (1 + (x >> 8) % 4) * HOUR;
			excursion = 40;
		} else
			t += (x >> 16) % (2 * SEC);
		uint64_t now = excursion > 0 ? t - back : t;
		excursion -= excursion > 0;
		times[i] = x % 5 == 0 ? now - (x >> 24) % SEC : now;
	}
	suffix_min[STEPS] = UINT64_MAX;
	for (int i = STEPS - 1; i >= 0; i--)
		suffix_min[i] = times[i] < suffix_min[i + 1] ? times[i] : suffix_min[i + 1];

	for (int i = 0; i < STEPS; i++) {
		uint64_t x = rng(&seed);
		char key[16];
		int k = (int)(x % KEYS);
		uint64_t cost = 1 + (x >> 8) % 2;
		struct sluice_decision d;
		snprintf(key, sizeof key, "k%d", k);
		if (x % 9 == 0) {
			/* the same key twice in a batch counts twice */
			struct sluice_limiter_request req[2] = { { key, strlen(key), cost },
								 { key, strlen(key), cost } };
			struct sluice_decision out[2];
			cr_assert_eq(sluice_limiter_admit_batch(lim, req, 2, times[i], out), SLUICE_OK);
			for (int j = 0; j < 2; j++)
				if (out[j].allowed) {
					law_add(&law[k], cost, times[i]);
					log[k][nlog[k]++] = (struct adm){ times[i], cost };
				}
		} else if (admit(lim, key, cost, times[i], &d)) {
			law_add(&law[k], cost, times[i]);
			log[k][nlog[k]++] = (struct adm){ times[i], cost };
		}
		cr_assert_lt(nlog[k], sizeof log[k] / sizeof log[k][0] - 2);
		for (int li = 0; li < 2; li++)
			law_check(&law[k], &l[li].rate, 0, "limiter key");
		if (i % 7 == 0 && suffix_min[i + 1] != UINT64_MAX) {
			size_t got;
			cr_assert_eq(sluice_limiter_sweep(lim, suffix_min[i + 1], SIZE_MAX, &got), SLUICE_OK);
			reclaimed_total += got;
		}
	}
	cr_assert_gt(reclaimed_total, 10, "the walk did reclaim entries");
	for (int k = 0; k < KEYS; k++)
		for (int li = 0; li < 2; li++)
			window_law(log[k], nlog[k], &l[li].rate, "limiter key windows");
	struct sluice_limiter_stats s = stats_of(lim);
	cr_assert_eq(s.reclaimed, reclaimed_total);
	cr_assert_eq(s.live_keys, s.inserted - s.reclaimed);
	sluice_limiter_destroy(lim);
}

/* Backward by hours then forward again, through the limiter: nothing
 * consumed in the past, identical to a twin key afterwards. */
Test(clock_jump, limiter_backward_then_forward)
{
	struct sluice_limit l[2] = { gcra(10, SEC, 5), gcra(50, HOUR, 50) };
	struct sluice_limiter *lim = make(l, 2, NULL);
	struct sluice_decision a, b;
	uint64_t t = 10 * DAY;

	cr_assert(admit(lim, "jumpy", 3, t, &a));
	cr_assert(admit(lim, "steady", 3, t, &b));
	for (uint64_t s = 0; s < 1000; s++) {
		cr_assert_not(admit(lim, "jumpy", 1, t - 5 * HOUR + s * SEC, &a));
		cr_assert_not(a.degraded);
	}
	for (uint64_t i = 1; i < 200; i++) {
		uint64_t now = t + i * SEC / 10;
		cr_assert_eq(admit(lim, "jumpy", 1, now, &a), admit(lim, "steady", 1, now, &b));
		cr_assert_eq(a.remaining, b.remaining);
		cr_assert_eq(a.limit_index, b.limit_index);
		cr_assert_eq(a.retry_after_ns, b.retry_after_ns);
	}
	/* forward by 2 hours: both limits full again, exactly */
	cr_assert(admit(lim, "jumpy", 5, t + 2 * HOUR, &a));
	cr_assert_eq(a.remaining, 0);
	cr_assert_not(admit(lim, "jumpy", 1, t + 2 * HOUR, &a));
	sluice_limiter_destroy(lim);
}

/* A sweep whose clock is hours ahead of the admitters (a misconfigured
 * maintenance clock) reclaims entries the admitters still see as in use: the
 * contract (limiter.h, sluice_limiter_sweep) allows a reclaimed key to look
 * full to an earlier request. The damage is exactly bounded: each such
 * reclaim of a key gives it at most one extra burst per limit, and the
 * reclaimed counter says how often it happened. A sweep behind the admitters
 * reclaims nothing that is in use. */
Test(clock_jump, sweep_ahead_of_admitters_costs_at_most_a_burst_per_reclaim)
{
	struct sluice_limit l[2] = { gcra(10, SEC, 5), gcra(100, HOUR, 30) };
	struct sluice_limiter *lim = make(l, 2, NULL);
	struct sluice_decision d;
	struct law law = { 0 };
	uint64_t t = 10 * DAY;
	size_t got, reclaims = 0;

	for (int round = 0; round < 4; round++) {
		/* Behind: nothing in use is reclaimed. */
		cr_assert_eq(sluice_limiter_sweep(lim, t - 3 * HOUR, SIZE_MAX, &got), SLUICE_OK);
		cr_assert_eq(got, 0);
		for (int i = 0; i < 20; i++)
			if (admit(lim, "victim", 1, t, &d))
				law_add(&law, 1, t);
		cr_assert_eq(sluice_limiter_sweep(lim, t - 1, SIZE_MAX, &got), SLUICE_OK);
		cr_assert_eq(got, 0, "in use at t - 1");
		/* Ahead by 6 hours: the key is full there, so it goes. */
		cr_assert_eq(sluice_limiter_sweep(lim, t + 6 * HOUR, SIZE_MAX, &got), SLUICE_OK);
		cr_assert_eq(got, 1);
		reclaims += got;
	}
	/* Each round admitted one fresh burst of the tighter limit at the same t. */
	cr_assert_eq(law.cost, 4 * 5);
	law_check(&law, &l[0].rate, reclaims - 1, "burst per reclaim");
	cr_assert_eq(stats_of(lim).reclaimed, reclaims);
	sluice_limiter_destroy(lim);
}

/* ---- the end of the clock through the limiter ---- */

Test(horizon, limiter_near_uint64_max)
{
	struct sluice_limit l[2] = { gcra(1, SEC, 2), gcra(10, HOUR, 10) };
	struct sluice_limiter *lim = make(l, 2, NULL);
	struct sluice_decision d;
	const uint64_t tmax = UINT64_MAX - 2; /* largest state (two tombstones above) */
	size_t got;

	/* Admitting at the last instants: a new key is inserted, the request
	 * is "never", nothing is consumed, no crash. */
	for (uint64_t back = 0; back < 4; back++) {
		cr_assert_not(admit(lim, "end", 1, UINT64_MAX - back, &d));
		cr_assert_eq(d.reason, SLUICE_REASON_NEVER);
		cr_assert_eq(d.retry_after_ns, SLUICE_NEVER);
		cr_assert_not(d.degraded);
	}
	/* Peeks there read a full key. */
	cr_assert_eq(sluice_limiter_peek(lim, "end", 3, UINT64_MAX, &d), SLUICE_OK);
	cr_assert(d.allowed);
	cr_assert_eq(d.remaining, 2);
	/* The latest admissible time: both limits reach exactly tmax. The
	 * hour limit's interval is 360 s, so its state reaches tmax only
	 * when now + 360 s <= tmax; the tighter horizon governs. */
	uint64_t last = tmax - 360 * SEC;
	cr_assert(admit(lim, "end", 1, last, &d), "reason %d", d.reason);
	cr_assert_not(admit(lim, "end", 1, last + 1, &d));
	cr_assert_eq(d.reason, SLUICE_REASON_NEVER);
	/* A sweep at the end of the clock reclaims the key (full there) and
	 * tombstone values never leak into decisions. */
	cr_assert_eq(sluice_limiter_sweep(lim, UINT64_MAX, SIZE_MAX, &got), SLUICE_OK);
	cr_assert_eq(got, 1);
	cr_assert_not(admit(lim, "end", 1, UINT64_MAX, &d));
	cr_assert_eq(d.reason, SLUICE_REASON_NEVER);
	cr_assert(admit(lim, "end", 1, last - SEC, &d), "a fresh entry after the reclaim");
	/* A batch at the end of the clock. */
	struct sluice_limiter_request req[3] = { { "a", 1, 1 }, { "", 0, 0 }, { "end", 3, 1 } };
	struct sluice_decision out[3];
	cr_assert_eq(sluice_limiter_admit_batch(lim, req, 3, UINT64_MAX, out), SLUICE_OK);
	cr_assert_not(out[0].allowed);
	cr_assert_eq(out[0].reason, SLUICE_REASON_NEVER);
	cr_assert(out[1].allowed);
	cr_assert_not(out[2].allowed);
	/* Time 0 after the end: a stale clock far behind, denied, no wrap. */
	cr_assert_not(admit(lim, "end", 1, 0, &d));
	cr_assert_eq(d.reason, SLUICE_REASON_RATE);
	struct sluice_limiter_stats s = stats_of(lim);
	cr_assert_eq(s.live_keys, 2);
	sluice_limiter_destroy(lim);
}

static uint64_t clock_end(void *user)
{
	(void)user;
	return UINT64_MAX;
}

static uint64_t clock_zero(void *user)
{
	(void)user;
	return 0;
}

/* The maintenance thread with clocks at both ends: at 0 nothing in use is
 * reclaimed; at UINT64_MAX everything goes (all full there), and the thread
 * neither crashes nor spins on the saturated arithmetic. */
Test(horizon, maintenance_clock_at_both_ends)
{
	struct sluice_limit l = gcra(10, SEC, 10);
	struct sluice_limiter *lim = make(&l, 1, NULL);
	struct sluice_decision d;
	char key[16];

	for (int i = 0; i < 100; i++) {
		snprintf(key, sizeof key, "m%d", i);
		cr_assert(admit(lim, key, 1, 5 * SEC, &d));
	}
	cr_assert_eq(sluice_limiter_maintenance_start(lim, 1000000, 1000, clock_zero, NULL), SLUICE_OK);
	usleep(30000);
	cr_assert_eq(sluice_limiter_maintenance_stop(lim), SLUICE_OK);
	cr_assert_eq(stats_of(lim).reclaimed, 0);
	cr_assert_eq(sluice_limiter_maintenance_start(lim, 1000000, 1000, clock_end, NULL), SLUICE_OK);
	for (int tries = 0; tries < 2500 && stats_of(lim).reclaimed < 100; tries++)
		usleep(2000);
	cr_assert_eq(sluice_limiter_maintenance_stop(lim), SLUICE_OK);
	cr_assert_eq(stats_of(lim).reclaimed, 100);
	cr_assert_eq(stats_of(lim).live_keys, 0);
	sluice_limiter_destroy(lim);
}

/* ---- keys at the extremes ---- */

Test(keys, empty_and_maximum_length)
{
	struct sluice_limit l[2] = { gcra(10, SEC, 3), gcra(100, HOUR, 100) };
	struct sluice_limiter_options o = opts();
	o.max_bytes = 64 * 1024;
	struct sluice_limiter *lim = make(l, 2, &o);
	struct sluice_decision d;
	static unsigned char big[SLUICE_LIMITER_MAX_KEY + 1];
	size_t got;

	/* The empty key is one key, distinct from every other. */
	for (int i = 0; i < 3; i++)
		cr_assert_eq(sluice_limiter_admit(lim, "", 0, 1, SEC, &d), SLUICE_OK);
	cr_assert_eq(sluice_limiter_admit(lim, "x", 0, 1, SEC, &d), SLUICE_OK);
	cr_assert_not(d.allowed, "any pointer with length 0 is the empty key");
	cr_assert_eq(sluice_limiter_admit(lim, NULL, 0, 1, SEC, &d), SLUICE_EKEY);
	cr_assert_eq(sluice_limiter_admit(lim, "\0", 1, 1, SEC, &d), SLUICE_OK);
	cr_assert(d.allowed, "a one-byte NUL key is not the empty key");

	/* Maximum-length keys differing only in their first or last byte. */
	memset(big, 'k', sizeof big);
	uint64_t before = stats_of(lim).bytes;
	for (int v = 0; v < 8; v++) {
		big[0] = (unsigned char)('a' + v);
		big[SLUICE_LIMITER_MAX_KEY - 1] = (unsigned char)('a' + v);
		for (int i = 0; i < 3; i++) {
			cr_assert_eq(sluice_limiter_admit(lim, big, SLUICE_LIMITER_MAX_KEY, 1, SEC, &d), SLUICE_OK);
			cr_assert(d.allowed, "variant %d request %d", v, i);
		}
		cr_assert_eq(sluice_limiter_admit(lim, big, SLUICE_LIMITER_MAX_KEY, 1, SEC, &d), SLUICE_OK);
		cr_assert_not(d.allowed);
		cr_assert_not(d.degraded);
	}
	/* A key one byte shorter is another key. */
	cr_assert_eq(sluice_limiter_admit(lim, big, SLUICE_LIMITER_MAX_KEY - 1, 1, SEC, &d), SLUICE_OK);
	cr_assert(d.allowed);
	cr_assert_geq(stats_of(lim).bytes - before, 9 * (uint64_t)SLUICE_LIMITER_MAX_KEY,
		      "the key bytes are charged");
	/* One byte too long: an error, nothing consumed or inserted, also in a
	 * batch whose other keys are valid. */
	uint64_t live = stats_of(lim).live_keys;
	cr_assert_eq(sluice_limiter_admit(lim, big, SLUICE_LIMITER_MAX_KEY + 1, 1, SEC, &d), SLUICE_EKEY);
	cr_assert_eq(sluice_limiter_peek(lim, big, SLUICE_LIMITER_MAX_KEY + 1, SEC, &d), SLUICE_EKEY);
	struct sluice_limiter_request req[2] = { { "fresh", 5, 1 }, { big, SLUICE_LIMITER_MAX_KEY + 1, 1 } };
	struct sluice_decision out[2];
	cr_assert_eq(sluice_limiter_admit_batch(lim, req, 2, SEC, out), SLUICE_EKEY);
	cr_assert_eq(stats_of(lim).live_keys, live);
	cr_assert_eq(sluice_limiter_peek(lim, "fresh", 5, SEC, &d), SLUICE_OK);
	cr_assert_eq(d.remaining, 3, "nothing consumed by the refused batch");

	/* Reclaim and re-create them: same decisions as never reclaimed. */
	cr_assert_eq(sluice_limiter_sweep(lim, 2 * HOUR, SIZE_MAX, &got), SLUICE_OK);
	cr_assert_eq(got, live);
	big[0] = 'a';
	big[SLUICE_LIMITER_MAX_KEY - 1] = 'a';
	cr_assert_eq(sluice_limiter_admit(lim, big, SLUICE_LIMITER_MAX_KEY, 3, 2 * HOUR, &d), SLUICE_OK);
	cr_assert(d.allowed);
	cr_assert_eq(d.remaining, 0);
	cr_assert_eq(sluice_limiter_admit(lim, "", 0, 3, 2 * HOUR, &d), SLUICE_OK);
	cr_assert(d.allowed);
	sluice_limiter_destroy(lim);
}

/* A byte budget smaller than one maximum-length entry: every such key is
 * degraded, the short ones still fit, the budget is never passed. */
Test(keys, maximum_length_against_a_small_byte_budget)
{
	struct sluice_limit l = gcra(10, SEC, 3);
	struct sluice_limiter_options o = opts();
	o.max_bytes = 1000;
	o.fail_mode = SLUICE_FAIL_CLOSED;
	struct sluice_limiter *lim = make(&l, 1, &o);
	struct sluice_decision d;
	static unsigned char big[SLUICE_LIMITER_MAX_KEY];

	memset(big, 'z', sizeof big);
	cr_assert_eq(sluice_limiter_admit(lim, big, sizeof big, 1, SEC, &d), SLUICE_OK);
	cr_assert_not(d.allowed);
	cr_assert(d.degraded);
	cr_assert_eq(d.reason, SLUICE_REASON_CAPACITY);
	cr_assert(admit(lim, "short", 1, SEC, &d));
	cr_assert_not(d.degraded);
	struct sluice_limiter_stats s = stats_of(lim);
	cr_assert_leq(s.bytes, 1000);
	cr_assert_eq(s.degraded, 1);
	cr_assert_eq(s.live_keys, 1);
	sluice_limiter_destroy(lim);
}

/* ---- policies at the extremes ---- */

Test(extreme_policy, cell_one_per_year_and_a_billion_per_second)
{
	struct sluice_gcra c;
	struct sluice_decision d;

	/* 1 per year, burst 1: exact retry of a year, to the nanosecond. */
	struct sluice_rate year = mkrate(1, YEAR, 1);
	cr_assert(year.exact);
	sluice_gcra_init(&c);
	cr_assert(sluice_gcra_admit(&c, &year, 5 * SEC, 1, &d));
	cr_assert_eq(d.reset_ns, YEAR);
	cr_assert_not(sluice_gcra_admit(&c, &year, 5 * SEC + YEAR - 1, 1, &d));
	cr_assert_eq(d.retry_after_ns, 1);
	cr_assert(sluice_gcra_admit(&c, &year, 5 * SEC + YEAR, 1, &d));

	/* The deepest 1-per-year bucket: burst * YEAR <= 2^62. */
	uint64_t max_burst = T62 / YEAR;
	struct sluice_rate r;
	cr_assert_eq(sluice_rate_init(&r, 1, YEAR, max_burst + 1), SLUICE_ERANGE);
	year = mkrate(1, YEAR, max_burst);
	sluice_gcra_init(&c);
	cr_assert(sluice_gcra_admit(&c, &year, 0, max_burst, &d));
	cr_assert_eq(d.reset_ns, max_burst * YEAR);
	cr_assert_not(sluice_gcra_admit(&c, &year, YEAR - 1, 1, &d));
	cr_assert(sluice_gcra_admit(&c, &year, YEAR, 1, &d));

	/* 1e9 per second: one per ns; burst 1 and the deepest burst 2^62. */
	struct sluice_rate fast = mkrate(SEC, SEC, 1);
	sluice_gcra_init(&c);
	uint64_t n = 0;
	for (uint64_t t = 1000; t < 1000 + 100000; t++)
		n += sluice_gcra_admit(&c, &fast, t, 1, NULL);
	cr_assert_eq(n, 100000, "one per nanosecond, every nanosecond");
	cr_assert_not(sluice_gcra_admit(&c, &fast, 1000 + 99999, 1, NULL));
	cr_assert_not(sluice_gcra_admit(&c, &fast, 5000, 2, &d));
	cr_assert_eq(d.reason, SLUICE_REASON_NEVER);

	fast = mkrate(SEC, SEC, T62);
	cr_assert_eq(sluice_rate_init(&r, SEC, SEC, T62 + 1), SLUICE_ERANGE);
	sluice_gcra_init(&c);
	cr_assert(sluice_gcra_admit(&c, &fast, 10, T62 / 2, &d));
	cr_assert_eq(d.remaining, T62 / 2);
	cr_assert(sluice_gcra_admit(&c, &fast, 10, T62 / 2, &d));
	cr_assert_eq(d.remaining, 0);
	cr_assert_not(sluice_gcra_admit(&c, &fast, 10, 1, &d));
	cr_assert_eq(d.retry_after_ns, 1);

	/* Above one per ns: served at one per ns (documented rounding). */
	struct sluice_rate faster = mkrate(4 * SEC, SEC, 4);
	sluice_gcra_init(&c);
	cr_assert(sluice_gcra_admit(&c, &faster, 100, 4, NULL));
	cr_assert_not(sluice_gcra_admit(&c, &faster, 100, 1, &d));
	cr_assert_eq(d.retry_after_ns, 1);
}

/* The same extremes as limits of one limiter: all-or-nothing across a
 * 1-per-year and a 1e9-per-second limit with a huge burst. */
Test(extreme_policy, limiter_year_and_nanosecond_limits_together)
{
	struct sluice_limit l[3] = { gcra(SEC, SEC, T62), gcra(1, YEAR, 2), gcra(SEC, SEC, 1) };
	struct sluice_limiter *lim = make(l, 2, NULL);
	struct sluice_decision d;

	cr_assert(admit(lim, "k", 1, SEC, &d));
	cr_assert_eq(d.limit_index, 1);
	cr_assert_eq(d.remaining, 1);
	cr_assert(admit(lim, "k", 1, SEC, &d));
	cr_assert_not(admit(lim, "k", 1, SEC + 1, &d));
	cr_assert_eq(d.limit_index, 1);
	cr_assert_eq(d.retry_after_ns, YEAR - 1);
	cr_assert_not(admit(lim, "k", 3, SEC, &d));
	cr_assert_eq(d.reason, SLUICE_REASON_NEVER);
	/* The huge bucket alone takes 2^62 at once on another key... */
	sluice_limiter_destroy(lim);
	lim = make(l, 1, NULL);
	cr_assert(admit(lim, "deep", T62, SEC, &d));
	cr_assert_eq(d.remaining, 0);
	cr_assert_not(admit(lim, "deep", 1, SEC, &d));
	cr_assert_eq(d.retry_after_ns, 1);
	cr_assert_not(admit(lim, "deep", T62 + 1, 2 * T62, &d));
	cr_assert_eq(d.reason, SLUICE_REASON_NEVER);
	/* ... and is idle (reclaimable) exactly 2^62 ns later. */
	size_t got;
	cr_assert_eq(sluice_limiter_sweep(lim, SEC + T62 - 1, SIZE_MAX, &got), SLUICE_OK);
	cr_assert_eq(got, 0);
	cr_assert_eq(sluice_limiter_sweep(lim, SEC + T62, SIZE_MAX, &got), SLUICE_OK);
	cr_assert_eq(got, 1);
	sluice_limiter_destroy(lim);
	/* burst 1 at one per ns: each key alternates exactly. */
	lim = make(&l[2], 1, NULL);
	for (uint64_t t = 100; t < 200; t++) {
		cr_assert(admit(lim, "ns", 1, t, &d));
		cr_assert_not(admit(lim, "ns", 1, t, &d));
	}
	sluice_limiter_destroy(lim);
}

/* ---- allocation failure (sites test_limiter.c does not reach) ---- */

struct fault_alloc {
	pthread_mutex_t mu;
	long calls;
	long fail_at;        /* 1-based call that fails; 0: none */
	_Atomic bool fail_all; /* every call fails while set */
	long live;
	size_t live_bytes;
};

static void *fault_malloc(void *user, size_t size)
{
	struct fault_alloc *a = user;
	pthread_mutex_lock(&a->mu);
	long n = ++a->calls;
	/* relaxed: the test thread sets it; the mutex orders the rest */
	bool fail = n == a->fail_at || atomic_load_explicit(&a->fail_all, memory_order_relaxed);
	if (!fail) {
		a->live++;
		a->live_bytes += size;
	}
	pthread_mutex_unlock(&a->mu);
	return fail ? NULL : malloc(size);
}

static void fault_free(void *user, void *ptr, size_t size)
{
	struct fault_alloc *a = user;
	pthread_mutex_lock(&a->mu);
	a->live--;
	a->live_bytes -= size;
	pthread_mutex_unlock(&a->mu);
	free(ptr);
}

static long calls_of(struct fault_alloc *a)
{
	pthread_mutex_lock(&a->mu);
	long n = a->calls;
	pthread_mutex_unlock(&a->mu);
	return n;
}

static struct sluice_limiter *make_faulty(struct fault_alloc *a, const struct sluice_limit *l,
					  size_t n, uint32_t mode)
{
	struct sluice_limiter_options o = opts();
	o.malloc_fn = fault_malloc;
	o.free_fn = fault_free;
	o.alloc_user = a;
	o.fail_mode = mode;
	return make(l, n, &o);
}

/* A sweep that needs several deferred-free batches, with the k-th batch
 * allocation failing: ENOMEM, exactly the entries of the batches it had are
 * reclaimed, the rest stay live and correct, the next sweep gets them, and
 * nothing leaks. */
Test(alloc_fault, sweep_batch_failure_at_every_batch)
{
	enum { KEYS = 1000 };
	struct sluice_limit l[2] = { gcra(10, SEC, 10), gcra(100, HOUR, 100) };
	char key[16];
	long batches = -1;

	for (long k = 0; k <= (batches < 0 ? 0 : batches); k++) {
		struct fault_alloc a = { .mu = PTHREAD_MUTEX_INITIALIZER };
		struct sluice_limiter *lim = make_faulty(&a, l, 2, SLUICE_FAIL_CLOSED);
		struct sluice_decision d;
		size_t got;

		for (int i = 0; i < KEYS; i++) {
			snprintf(key, sizeof key, "s%d", i);
			cr_assert(admit(lim, key, 1, SEC, &d));
		}
		long before = calls_of(&a);
		a.fail_at = k == 0 ? 0 : before + k;
		int rc = sluice_limiter_sweep(lim, 2 * HOUR, SIZE_MAX, &got);
		if (k == 0) {
			cr_assert_eq(rc, SLUICE_OK);
			cr_assert_eq(got, KEYS);
			batches = calls_of(&a) - before;
			cr_assert_geq(batches, 2, "the sweep needs several batches");
		} else {
			cr_assert_eq(rc, SLUICE_ENOMEM, "batch %ld", k);
			cr_assert_lt(got, KEYS);
			cr_assert_eq(stats_of(lim).reclaimed, got);
			cr_assert_eq(stats_of(lim).live_keys, KEYS - got);
			/* The survivors are intact: each still has 9 + refill. */
			for (int i = 0; i < KEYS; i++) {
				snprintf(key, sizeof key, "s%d", i);
				cr_assert_eq(sluice_limiter_peek(lim, key, strlen(key), SEC, &d), SLUICE_OK);
			}
			size_t more;
			cr_assert_eq(sluice_limiter_sweep(lim, 2 * HOUR, SIZE_MAX, &more), SLUICE_OK);
			cr_assert_eq(got + more, KEYS);
		}
		cr_assert_eq(stats_of(lim).live_keys, 0);
		sluice_limiter_destroy(lim);
		cr_assert_eq(a.live, 0, "leak, batch failure %ld", k);
		cr_assert_eq(a.live_bytes, 0);
	}
}

/* A batch of new keys spanning several lookup groups, with the k-th entry
 * allocation failing, in both fail modes: exactly that request is degraded
 * (and answered by the fail mode), the others are exact, a repeat of the
 * failed key later in the batch is inserted normally, the counters agree. */
Test(alloc_fault, batch_admit_failure_at_every_insert)
{
	enum { N = 40 };
	struct sluice_limit l = gcra(10, SEC, 2);
	char keys[N][16];
	struct sluice_limiter_request req[N + 1];

	for (int i = 0; i < N; i++) {
		snprintf(keys[i], sizeof keys[i], "b%d", i);
		req[i] = (struct sluice_limiter_request){ keys[i], strlen(keys[i]), 1 };
	}
	for (uint32_t mode = SLUICE_FAIL_OPEN; mode <= SLUICE_FAIL_CLOSED; mode++) {
		for (int k = 0; k < N; k++) {
			struct fault_alloc a = { .mu = PTHREAD_MUTEX_INITIALIZER };
			struct sluice_limiter *lim = make_faulty(&a, &l, 1, mode);
			struct sluice_decision out[N + 1];

			req[N] = req[k]; /* the failed key once more, last */
			a.fail_at = calls_of(&a) + k + 1;
			cr_assert_eq(sluice_limiter_admit_batch(lim, req, N + 1, SEC, out), SLUICE_OK);
			for (int i = 0; i < N; i++) {
				if (i == k) {
					cr_assert(out[i].degraded, "k %d", k);
					cr_assert_eq(out[i].allowed, mode == SLUICE_FAIL_OPEN);
					cr_assert_eq(out[i].reason, mode == SLUICE_FAIL_OPEN
									   ? SLUICE_REASON_NONE
									   : SLUICE_REASON_CAPACITY);
				} else {
					cr_assert_not(out[i].degraded, "k %d i %d", k, i);
					cr_assert(out[i].allowed);
					cr_assert_eq(out[i].remaining, 1);
				}
			}
			cr_assert_not(out[N].degraded);
			cr_assert(out[N].allowed);
			cr_assert_eq(out[N].remaining, 1, "the retry starts from a full bucket");
			struct sluice_limiter_stats s = stats_of(lim);
			cr_assert_eq(s.degraded, 1);
			cr_assert_eq(s.admitted, N);
			cr_assert_eq(s.inserted, N);
			sluice_limiter_destroy(lim);
			cr_assert_eq(a.live, 0);
		}
	}
}

/* The maintenance thread while every allocation fails: its sweeps fail
 * (ENOMEM, inside the thread), nothing is reclaimed or leaked, admissions of
 * known keys stay exact and new keys get the fail mode; when memory comes
 * back the thread reclaims everything. */
Test(alloc_fault, maintenance_thread_under_allocation_failure)
{
	struct sluice_limit l = gcra(10, SEC, 5);
	struct fault_alloc a = { .mu = PTHREAD_MUTEX_INITIALIZER };
	struct sluice_limiter *lim = make_faulty(&a, &l, 1, SLUICE_FAIL_CLOSED);
	struct sluice_decision d;
	char key[32];

	/* Keys over 16 bytes stay allocated apart: a sweep needs its batch to
	 * reclaim them (short keys live in inline slots, freed without one). */
	for (int i = 0; i < 600; i++) {
		snprintf(key, sizeof key, "maintenance-%06d", i);
		cr_assert(admit(lim, key, 1, SEC, &d));
	}
	atomic_store_explicit(&a.fail_all, true, memory_order_relaxed); /* relaxed: see fault_malloc */
	cr_assert_eq(sluice_limiter_maintenance_start(lim, 1000000, 100000, clock_end, NULL), SLUICE_OK);
	long before = calls_of(&a);
	for (int tries = 0; tries < 5000 && calls_of(&a) < before + 5; tries++)
		usleep(1000);
	cr_assert_geq(calls_of(&a), before + 5, "the thread tried (and failed) several sweeps");
	cr_assert_eq(stats_of(lim).reclaimed, 0);
	cr_assert(admit(lim, "maintenance-000001", 1, SEC, &d), "known keys are served exactly");
	cr_assert_eq(d.remaining, 3);
	cr_assert_not(admit(lim, "new", 1, SEC, &d));
	cr_assert(d.degraded);
	atomic_store_explicit(&a.fail_all, false, memory_order_relaxed); /* relaxed: see fault_malloc */
	for (int tries = 0; tries < 5000 && stats_of(lim).live_keys > 0; tries++)
		usleep(1000);
	cr_assert_eq(sluice_limiter_maintenance_stop(lim), SLUICE_OK);
	cr_assert_eq(stats_of(lim).reclaimed, 600);
	sluice_limiter_destroy(lim);
	cr_assert_eq(a.live, 0);
	cr_assert_eq(a.live_bytes, 0);
}

/* Every allocation site of the parser, on every seed policy of docs/: the
 * load fails with ENOMEM and no position, *out stays NULL, nothing leaks;
 * with no failure the load succeeds with exactly as many allocations. */
struct policy_alloc {
	int calls;
	int fail_at;
	int live;
};

static void *policy_malloc(void *ctx, size_t size)
{
	struct policy_alloc *a = ctx;
	if (++a->calls == a->fail_at)
		return NULL;
	a->live++;
	return malloc(size);
}

static void policy_free(void *ctx, void *p)
{
	struct policy_alloc *a = ctx;
	a->live--;
	free(p);
}

Test(alloc_fault, policy_parser_every_site_on_the_seed_policies)
{
	for (int seed = 0; seed < 5; seed++) {
		char path[512];
		snprintf(path, sizeof path, "%s/docs/policies/seed%03d.policy", SLUICE_SOURCE_DIR, seed);
		FILE *f = fopen(path, "rb");
		cr_assert_not_null(f, "%s", path);
		static char text[1 << 20];
		size_t len = fread(text, 1, sizeof text, f);
		fclose(f);

		struct policy_alloc a = { 0, 0, 0 };
		struct sluice_policy_options o = { sizeof o, policy_malloc, policy_free, &a, 0, NULL };
		struct sluice_policy *p = NULL;
		struct sluice_policy_error e;
		cr_assert_eq(sluice_policy_parse(text, len, &o, &p, &e), SLUICE_OK, "%s: %s", path, e.message);
		int sites = a.calls;
		sluice_policy_destroy(p);
		cr_assert_eq(a.live, 0);
		for (int site = 1; site <= sites; site++) {
			a = (struct policy_alloc){ 0, site, 0 };
			p = (struct sluice_policy *)&a; /* must be reset to NULL */
			cr_assert_eq(sluice_policy_parse(text, len, &o, &p, &e), SLUICE_ENOMEM);
			cr_assert_null(p);
			cr_assert_eq(e.code, SLUICE_ENOMEM);
			cr_assert_eq(e.line, 0);
			cr_assert_eq(a.live, 0, "%s site %d", path, site);
		}
	}
}

/* ---- a key flood, scaled down (stress_flood.c runs 10 million) ---- */

static void flood(uint32_t mode, bool bytes_budget)
{
	enum { KEYS = 200000, BUDGET = 20000 };
	struct sluice_limit l = gcra(10, SEC, 10);
	struct sluice_limiter_options o = opts();
	struct sluice_decision d;
	char key[32];

	o.fail_mode = mode;
	if (bytes_budget)
		o.max_bytes = BUDGET * 64;
	else
		o.max_keys = BUDGET;
	struct sluice_limiter *lim = make(&l, 1, &o);
	uint64_t allowed = 0;
	for (int i = 0; i < KEYS; i++) {
		snprintf(key, sizeof key, "flood-%d", i);
		allowed += admit(lim, key, 1, SEC, &d);
	}
	struct sluice_limiter_stats s = stats_of(lim);
	if (bytes_budget) {
		/* stats.bytes counts the entries allocated apart; the budget
		 * also charges a share of the table per key (64 bytes of inline
		 * slots for the one-GCRA policy, docs/limiter.md). */
		uint64_t charged = s.bytes + 64 * s.live_keys;
		uint64_t entry = s.bytes / s.live_keys;
		cr_assert_leq(charged, o.max_bytes);
		cr_assert_gt(charged + 2 * (entry + 64), o.max_bytes, "filled up to the budget: %llu",
			     (unsigned long long)charged);
	} else {
		cr_assert_eq(s.live_keys, BUDGET);
	}
	cr_assert_eq(s.inserted + s.degraded, KEYS);
	cr_assert_eq(s.admitted, s.inserted);
	cr_assert_eq(allowed, mode == SLUICE_FAIL_OPEN ? KEYS : s.inserted);
	/* The tracked keys are still exact after the flood. */
	cr_assert(admit(lim, "flood-0", 9, SEC, &d));
	cr_assert_not(admit(lim, "flood-0", 1, SEC, &d));
	cr_assert_not(d.degraded);
	sluice_limiter_destroy(lim);
}

Test(flood, key_budget_fail_open)
{
	flood(SLUICE_FAIL_OPEN, false);
}

Test(flood, key_budget_fail_closed)
{
	flood(SLUICE_FAIL_CLOSED, false);
}

Test(flood, byte_budget_fail_closed)
{
	flood(SLUICE_FAIL_CLOSED, true);
}

/* Regression: a limiter with only a byte budget started with 1024 buckets
 * whatever the budget, and cds_lfht's lazy growth lags a flood: a 10M-key
 * flood against 64 MiB cost ~10 us per request (chains of hundreds of
 * nodes) instead of ~0.5 us. The byte budget now sizes the table. */
Test(flood, byte_budget_sizes_the_table)
{
	struct sluice_limit l = gcra(10, SEC, 10);
	struct sluice_limiter_options o = opts();
	struct sluice_limiter *lim;

	o.max_bytes = 64u << 20;
	lim = make(&l, 1, &o);
	cr_assert_eq(sluice__limiter_initial_buckets(lim), 1ul << 20);
	sluice_limiter_destroy(lim);
	o.max_bytes = 100000; /* 1250 empty keys: 16 bytes apart + 64 of inline slots */
	lim = make(&l, 1, &o);
	cr_assert_eq(sluice__limiter_initial_buckets(lim), 2048);
	sluice_limiter_destroy(lim);
	o.max_keys = 1000; /* the smaller bound wins */
	lim = make(&l, 1, &o);
	cr_assert_eq(sluice__limiter_initial_buckets(lim), 1024);
	sluice_limiter_destroy(lim);
	o.max_bytes = 0;
	o.max_keys = 0;
	lim = make(&l, 1, &o);
	cr_assert_eq(sluice__limiter_initial_buckets(lim), 1024);
	sluice_limiter_destroy(lim);
	o.initial_buckets = 64;
	o.max_bytes = 64u << 20;
	lim = make(&l, 1, &o);
	cr_assert_eq(sluice__limiter_initial_buckets(lim), 64, "an explicit size is kept");
	sluice_limiter_destroy(lim);
}
