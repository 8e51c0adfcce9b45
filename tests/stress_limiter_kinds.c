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
 *        slot back at the end.
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

enum { A, B, C, D, NLIM };

static struct sluice_limiter *lims[NLIM];
static _Atomic uint32_t tally[NLIM][MAX_PHASES][KEYS];
static _Atomic int inflight[KEYS], inflight_max[KEYS];
static _Atomic uint64_t phase, errors, denials[NLIM];
static _Atomic bool stop;
static pthread_barrier_t barrier;

static const char *const key_names[KEYS] = { "k0", "k1", "k2", "k3" };

static int init_limits(void)
{
	struct sluice_limit a[2], b, c, d[2];
	memset(a, 0, sizeof a);
	memset(&b, 0, sizeof b);
	memset(&c, 0, sizeof c);
	memset(d, 0, sizeof d);
	a[0].kind = SLUICE_LIMIT_SLIDING_LOG;
	a[1].kind = SLUICE_LIMIT_GCRA;
	b.kind = SLUICE_LIMIT_SLIDING_COUNTER;
	c.kind = SLUICE_LIMIT_CALENDAR;
	d[0].kind = SLUICE_LIMIT_SLOTS;
	d[1].kind = SLUICE_LIMIT_GCRA;
	if (sluice_window_log_config_init(&a[0].log, 20, W) || sluice_rate_init(&a[1].rate, 5, STEP, 10) ||
	    sluice_window_counter_config_init(&b.counter, 20, W) ||
	    sluice_calendar_config_init(&c.calendar, 20, W) ||
	    sluice_slots_config_init(&d[0].slots, 2, 0, SEC) || sluice_rate_init(&d[1].rate, 40, STEP, 40))
		return -1;
	if (sluice_limiter_create(&lims[A], a, 2, NULL) || sluice_limiter_create(&lims[B], &b, 1, NULL) ||
	    sluice_limiter_create(&lims[C], &c, 1, NULL) || sluice_limiter_create(&lims[D], d, 2, NULL))
		return -1;
	return 0;
}

static void *worker_main(void *arg)
{
	uint64_t x = 0x9e3779b97f4a7c15ull * (uint64_t)(uintptr_t)arg + 7;
	/* Up to 3 held, one more than a key's 2 slots: even a thread running
	 * alone (a loaded machine serializes the workers) meets denials when
	 * its random keys repeat. */
	sluice_slot_handle held[3];
	int held_key[3], nheld = 0;

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
			for (int l = A; l <= C; l++) {
				if (sluice_limiter_admit(lims[l], key_names[k], 2, 1, now, &dec) != SLUICE_OK)
					atomic_fetch_add_explicit(&errors, 1, memory_order_relaxed); /* relaxed: counter */
				else if (dec.allowed)
					atomic_fetch_add_explicit(&tally[l][p][k], 1, memory_order_relaxed); /* relaxed: counter */
				else
					atomic_fetch_add_explicit(&denials[l], 1, memory_order_relaxed); /* relaxed: counter */
			}
			if (nheld == 3 || (nheld > 0 && (x >> 40) % 4 == 0)) {
				nheld--;
				/* relaxed: counters; down before the release. */
				atomic_fetch_sub_explicit(&inflight[held_key[nheld]], 1, memory_order_relaxed); /* relaxed: why above */
				if (sluice_limiter_release(lims[D], key_names[held_key[nheld]], 2, held[nheld]) != SLUICE_OK)
					atomic_fetch_add_explicit(&errors, 1, memory_order_relaxed); /* relaxed: counter */
			}
			sluice_slot_handle h;
			if (sluice_limiter_acquire(lims[D], key_names[k], 2, 1, now, &dec, &h) != SLUICE_OK) {
				atomic_fetch_add_explicit(&errors, 1, memory_order_relaxed); /* relaxed: counter */
			} else if (dec.allowed) {
				int n = atomic_fetch_add_explicit(&inflight[k], 1, memory_order_relaxed) + 1; /* relaxed: counter */
				int m = atomic_load_explicit(&inflight_max[k], memory_order_relaxed); /* relaxed: a max */
				while (n > m && !atomic_compare_exchange_weak_explicit(&inflight_max[k], &m, n, /* relaxed: a max */
										       memory_order_relaxed,
										       memory_order_relaxed))
					;
				held[nheld] = h;
				held_key[nheld++] = k;
			} else {
				atomic_fetch_add_explicit(&denials[D], 1, memory_order_relaxed); /* relaxed: counter */
			}
		}
		while (nheld > 0) {
			nheld--;
			atomic_fetch_sub_explicit(&inflight[held_key[nheld]], 1, memory_order_relaxed); /* relaxed: counter */
			if (sluice_limiter_release(lims[D], key_names[held_key[nheld]], 2, held[nheld]) != SLUICE_OK)
				atomic_fetch_add_explicit(&errors, 1, memory_order_relaxed); /* relaxed: counter */
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
			if (p % 4 == 0 && p + 3 < phases) {
				/* T0 is a multiple of W: phases 4j..4j+3 are one window. */
				if (sum(B, p, p + 3, k) > 20)
					bad[B]++;
				if (sum(C, p, p + 3, k) > 20)
					bad[C]++;
			}
		}
		for (uint64_t a = 0; a < phases; a++)
			for (uint64_t b = a; b < phases && b < a + 64; b++)
				if (sum(A, a, b, k) > 10 + 5 * (b - a))
					bad[A]++;
		if (LOAD(&inflight_max[k]) > 2 || LOAD(&inflight[k]) != 0)
			bad[D]++;
		struct sluice_decision d;
		/* Every slot back: a peek sees 2 free (the bucket, full again
		 * a phase later, has 40). */
		if (sluice_limiter_peek(lims[D], key_names[k], 2, T0 + (phases + 1) * STEP, &d) != SLUICE_OK ||
		    d.remaining != 2)
			bad[D]++;
	}
	const char *names[NLIM] = { "sliding log + gcra", "sliding counter", "calendar", "slots + gcra" };
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
