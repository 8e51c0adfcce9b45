/*
 * stress_limiter_kinds.c - the window and slot kinds inside the keyed
 * limiter under concurrency, with a sweeper, each kind's invariant checked
 * exactly. A plain executable (runs under TSan).
 *
 * Time advances in phases of STEP; within a phase every request of every
 * thread uses the phase's time (a barrier separates phases), and the sweeper
 * sweeps at the current phase's time. Per key:
 *
 *   A  sliding log 20 per 4 steps + GCRA 5 per step (burst 10):
 *        admitted in any 4 consecutive phases <= 20, and in phases a..b
 *        <= 10 + 5 * (b - a) (all-or-nothing must not let either overrun);
 *   B  sliding counter 20 per 4 steps: per aligned window <= 20, and in any
 *        4 consecutive phases <= 40 (its documented bound);
 *   C  calendar 20 per 4 steps: per aligned window <= 20;
 *   D  slots 2 + GCRA 40 per step: never more than 2 in flight per key
 *        (counted up after an acquire, down before its release) and every
 *        slot back at the end;
 *   E  as D with leases of 2 steps, and a holder that forgets one slot in 8
 *        (never releases it): never more than 2 active holders per key (a
 *        lease reaped before its end would let a third in), the forgotten
 *        slots taken back by acquires and sweeps, and after a last sweep
 *        past every lease no entry left;
 *   F  calendar 20 per 4 steps + sliding log 20 per 4 steps, no GCRA: the
 *        calendar word is the entry's commit cell (cell 0, tombstoned by
 *        the sweeper) beside the log: per aligned window <= 20 and in any
 *        4 consecutive phases <= 20; F rests 3 phases in 8, so its entries
 *        go idle and the sweeper reclaims them while admissions race it.
 * Duration: SLUICE_STRESS_MS (default 1000).
 */
#include <pthread.h>
#include <sluice.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Reads of the tallies after every thread was joined: pthread_join orders
 * the threads' writes before them, so relaxed suffices. */
#define LOAD(p) atomic_load_explicit((p), memory_order_relaxed) /* relaxed: why above */

#define SEC 1000000000ull
#define STEP SEC
#define W (4 * STEP)
#define T0 (1000 * W)
#define KEYS 4
#define THREADS 3
#define PER_PHASE 12
#define MAX_PHASES 10000

enum { A, B, C, D, E, F, NLIM };

static struct sluice_limiter *lims[NLIM];
static _Atomic uint32_t tally[NLIM][MAX_PHASES][KEYS];
/* Active holders of D's and E's slots (index l - D). */
static _Atomic int inflight[2][KEYS], inflight_max[2][KEYS];
static _Atomic uint64_t phase, errors, denials[NLIM], forgotten;
static _Atomic bool stop;
static pthread_barrier_t barrier;

static const char *const key_names[KEYS] = { "k0", "k1", "k2", "k3" };

static int init_limits(void)
{
	struct sluice_limit a[2], b, c, d[2], e[2], f[2];
	memset(a, 0, sizeof a);
	memset(&b, 0, sizeof b);
	memset(&c, 0, sizeof c);
	memset(d, 0, sizeof d);
	memset(e, 0, sizeof e);
	memset(f, 0, sizeof f);
	f[0].kind = SLUICE_LIMIT_CALENDAR;
	f[1].kind = SLUICE_LIMIT_SLIDING_LOG;
	if (sluice_calendar_config_init(&f[0].calendar, 20, W) || sluice_window_log_config_init(&f[1].log, 20, W))
		return -1;
	a[0].kind = SLUICE_LIMIT_SLIDING_LOG;
	a[1].kind = SLUICE_LIMIT_GCRA;
	b.kind = SLUICE_LIMIT_SLIDING_COUNTER;
	c.kind = SLUICE_LIMIT_CALENDAR;
	d[0].kind = SLUICE_LIMIT_SLOTS;
	d[1].kind = SLUICE_LIMIT_GCRA;
	e[0].kind = SLUICE_LIMIT_SLOTS;
	e[1].kind = SLUICE_LIMIT_GCRA;
	if (sluice_window_log_config_init(&a[0].log, 20, W) || sluice_rate_init(&a[1].rate, 5, STEP, 10) ||
	    sluice_window_counter_config_init(&b.counter, 20, W) ||
	    sluice_calendar_config_init(&c.calendar, 20, W) ||
	    sluice_slots_config_init(&d[0].slots, 2, 0, SEC) || sluice_rate_init(&d[1].rate, 40, STEP, 40) ||
	    sluice_slots_config_init(&e[0].slots, 2, 2 * STEP, SEC) || sluice_rate_init(&e[1].rate, 40, STEP, 40))
		return -1;
	if (sluice_limiter_create(&lims[A], a, 2, NULL) || sluice_limiter_create(&lims[B], &b, 1, NULL) ||
	    sluice_limiter_create(&lims[C], &c, 1, NULL) || sluice_limiter_create(&lims[D], d, 2, NULL) ||
	    sluice_limiter_create(&lims[E], e, 2, NULL) || sluice_limiter_create(&lims[F], f, 2, NULL))
		return -1;
	return 0;
}

/* A worker's slots of limiter D or E. */
struct holds {
	sluice_slot_handle h[3];
	int key[3], n;
};

/* Give back the last held slot: released, or (forget) abandoned to its
 * lease. Either way its holder is no longer active. */
static void drop_one(int l, struct holds *hs, bool forget)
{
	int k = hs->key[--hs->n];
	/* relaxed: counters; down before the release. */
	atomic_fetch_sub_explicit(&inflight[l - D][k], 1, memory_order_relaxed); /* relaxed: why above */
	if (forget)
		atomic_fetch_add_explicit(&forgotten, 1, memory_order_relaxed); /* relaxed: counter */
	else if (sluice_limiter_release(lims[l], key_names[k], 2, hs->h[hs->n]) != SLUICE_OK)
		atomic_fetch_add_explicit(&errors, 1, memory_order_relaxed); /* relaxed: counter */
}

static void take_one(int l, struct holds *hs, int k, uint64_t now)
{
	struct sluice_decision dec;
	sluice_slot_handle h;
	if (sluice_limiter_acquire(lims[l], key_names[k], 2, 1, now, &dec, &h) != SLUICE_OK) {
		atomic_fetch_add_explicit(&errors, 1, memory_order_relaxed); /* relaxed: counter */
	} else if (dec.allowed) {
		_Atomic int *in = &inflight[l - D][k], *max = &inflight_max[l - D][k];
		int n = atomic_fetch_add_explicit(in, 1, memory_order_relaxed) + 1; /* relaxed: counter */
		int m = atomic_load_explicit(max, memory_order_relaxed); /* relaxed: a max */
		while (n > m && !atomic_compare_exchange_weak_explicit(max, &m, n, /* relaxed: a max */
								       memory_order_relaxed, memory_order_relaxed))
			;
		hs->h[hs->n] = h;
		hs->key[hs->n++] = k;
	} else {
		atomic_fetch_add_explicit(&denials[l], 1, memory_order_relaxed); /* relaxed: counter */
	}
}

static void *worker_main(void *arg)
{
	uint64_t x = 0x9e3779b97f4a7c15ull * (uint64_t)(uintptr_t)arg + 7;
	/* Up to 3 held, one more than a key's 2 slots: even a thread running
	 * alone (a loaded machine serializes the workers) meets denials when
	 * its random keys repeat. */
	struct holds held[2] = { { .n = 0 }, { .n = 0 } }; /* D's, E's */

	for (;;) {
		/* relaxed: the barrier orders the phase's store before us. */
		uint64_t p = atomic_load_explicit(&phase, memory_order_relaxed); /* relaxed: why above */
		if (atomic_load_explicit(&stop, memory_order_relaxed)) /* relaxed: same */
			break;
		uint64_t now = T0 + p * STEP;
		for (int i = 0; i < PER_PHASE; i++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			int k = (int)(x % KEYS);
			struct sluice_decision dec;
			for (int l = A; l <= F; l++) {
				if (l == D)
					l = F; /* D and E acquire below */
				/* F rests in phases 8j+4..8j+6, so that in 8j+7 its
				 * entries start idle (a new calendar window, the log's
				 * units gone) and the sweeper races the admissions. */
				if (l == F && p % 8 >= 4 && p % 8 <= 6)
					continue;
				if (sluice_limiter_admit(lims[l], key_names[k], 2, 1, now, &dec) != SLUICE_OK)
					atomic_fetch_add_explicit(&errors, 1, memory_order_relaxed); /* relaxed: counter */
				else if (dec.allowed)
					atomic_fetch_add_explicit(&tally[l][p][k], 1, memory_order_relaxed); /* relaxed: counter */
				else
					atomic_fetch_add_explicit(&denials[l], 1, memory_order_relaxed); /* relaxed: counter */
			}
			for (int l = D; l <= E; l++) {
				struct holds *hs = &held[l - D];
				if (hs->n == 3 || (hs->n > 0 && (x >> 40) % 4 == 0))
					drop_one(l, hs, false);
				take_one(l, hs, k, now);
			}
		}
		/* Every active holder lets go before the phase ends, well
		 * within its lease; E's forget one slot in 8. */
		for (int l = D; l <= E; l++)
			while (held[l - D].n > 0) {
				x ^= x << 13, x ^= x >> 7, x ^= x << 17;
				drop_one(l, &held[l - D], l == E && (x >> 29) % 8 == 0);
			}
		if (pthread_barrier_wait(&barrier) == PTHREAD_BARRIER_SERIAL_THREAD) {
			static struct timespec start;
			static bool started;
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			if (!started) {
				start = ts;
				started = true;
			}
			const char *ms = getenv("SLUICE_STRESS_MS");
			long el = (ts.tv_sec - start.tv_sec) * 1000 + (ts.tv_nsec - start.tv_nsec) / 1000000;
			long want = ms != NULL ? atol(ms) : 1000;
			/* On a loaded machine run on (up to 30 times longer)
			 * until every limit denied once: main() checks it. */
			bool exercised = true;
			for (int l = 0; l < NLIM; l++)
				exercised = exercised && LOAD(&denials[l]) > 0;
			if ((el >= want && exercised) || el >= 30 * want || p + 1 >= MAX_PHASES)
				atomic_store_explicit(&stop, true, memory_order_relaxed); /* relaxed: barrier orders it */
			else
				atomic_store_explicit(&phase, p + 1, memory_order_relaxed); /* relaxed: barrier orders it */
		}
		pthread_barrier_wait(&barrier);
	}
	return NULL;
}

static void *sweeper_main(void *arg)
{
	(void)arg;
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) { /* relaxed: a flag polled */
		uint64_t p = atomic_load_explicit(&phase, memory_order_relaxed); /* relaxed: a hint */
		for (int l = 0; l < NLIM; l++)
			sluice_limiter_sweep(lims[l], T0 + p * STEP, 16, NULL);
		struct timespec ts = { 0, 200 * 1000 };
		nanosleep(&ts, NULL);
	}
	return NULL;
}

static uint32_t sum(int l, uint64_t from, uint64_t to, int k) /* phases [from, to] */
{
	uint32_t s = 0;
	for (uint64_t p = from; p <= to; p++)
		s += LOAD(&tally[l][p][k]);
	return s;
}

int main(void)
{
	int passed = 0, failed = 0;

	if (init_limits() != 0) {
		printf("0 passed, 1 failed (setup)\n");
		return 1;
	}
	pthread_barrier_init(&barrier, NULL, THREADS);
	pthread_t w[THREADS], sw;
	for (int i = 0; i < THREADS; i++)
		pthread_create(&w[i], NULL, worker_main, (void *)(uintptr_t)(i + 1));
	pthread_create(&sw, NULL, sweeper_main, NULL);
	for (int i = 0; i < THREADS; i++)
		pthread_join(w[i], NULL);
	pthread_join(sw, NULL);

	uint64_t phases = LOAD(&phase) + 1;
	int bad[NLIM] = { 0 };
	for (int k = 0; k < KEYS; k++) {
		for (uint64_t p = 0; p < phases; p++) {
			uint64_t from = p >= 3 ? p - 3 : 0;
			if (sum(A, from, p, k) > 20)
				bad[A]++;
			if (sum(B, from, p, k) > 40)
				bad[B]++;
			if (sum(F, from, p, k) > 20)
				bad[F]++;
			if (p % 4 == 0 && p + 3 < phases) {
				/* T0 is a multiple of W: phases 4j..4j+3 are one window. */
				if (sum(B, p, p + 3, k) > 20)
					bad[B]++;
				if (sum(C, p, p + 3, k) > 20)
					bad[C]++;
				if (sum(F, p, p + 3, k) > 20)
					bad[F]++;
			}
		}
		for (uint64_t a = 0; a < phases; a++)
			for (uint64_t b = a; b < phases && b < a + 64; b++)
				if (sum(A, a, b, k) > 10 + 5 * (b - a))
					bad[A]++;
		for (int l = D; l <= E; l++)
			if (LOAD(&inflight_max[l - D][k]) > 2 || LOAD(&inflight[l - D][k]) != 0)
				bad[l]++;
		struct sluice_decision d;
		/* Every slot back: a peek sees 2 free (the bucket, full again
		 * a phase later, has 40). */
		if (sluice_limiter_peek(lims[D], key_names[k], 2, T0 + (phases + 1) * STEP, &d) != SLUICE_OK ||
		    d.remaining != 2)
			bad[D]++;
	}
	/* E: past every lease, a sweep takes the forgotten slots back and
	 * reclaims every entry. */
	struct sluice_limiter_stats st;
	memset(&st, 0, sizeof st);
	st.size = sizeof st;
	if (LOAD(&forgotten) == 0 ||
	    sluice_limiter_sweep(lims[E], T0 + (phases + 4) * STEP, 1000, NULL) != SLUICE_OK ||
	    sluice_limiter_stats(lims[E], &st) != SLUICE_OK || st.live_keys != 0)
		bad[E]++;
	struct sluice_limiter_stats sf;
	memset(&sf, 0, sizeof sf);
	sf.size = sizeof sf;
	if (sluice_limiter_stats(lims[F], &sf) == SLUICE_OK)
		printf("F: %llu entries reclaimed during the run\n", (unsigned long long)sf.reclaimed);
	printf("E: %llu slots forgotten, %llu keys live after the last sweep\n",
	       (unsigned long long)LOAD(&forgotten), (unsigned long long)st.live_keys);
	const char *names[NLIM] = { "sliding log + gcra", "sliding counter", "calendar", "slots + gcra",
				    "slots with leases + gcra", "calendar (cell 0) + sliding log" };
	for (int l = 0; l < NLIM; l++) {
		bool exercised = LOAD(&denials[l]) > 0;
		if (bad[l] != 0 || !exercised) {
			printf("FAIL: %s: %d violations, %llu denials\n", names[l], bad[l],
			       (unsigned long long)LOAD(&denials[l]));
			failed++;
		} else {
			passed++;
		}
	}
	if (LOAD(&errors) != 0) {
		printf("FAIL: %llu call errors\n", (unsigned long long)LOAD(&errors));
		failed++;
	} else {
		passed++;
	}
	printf("phases %llu\n", (unsigned long long)phases);
	for (int l = 0; l < NLIM; l++)
		sluice_limiter_destroy(lims[l]);
	pthread_barrier_destroy(&barrier);
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
