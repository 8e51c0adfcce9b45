/*
 * stress_limiter_cancel.c - a refused request consumes nothing, under
 * threads: every limit's consumption equals exactly what the admitted
 * requests took (the conservation law in both directions). A plain
 * executable (runs under TSan).
 *
 * THREADS threads hammer one key of each limiter below at the same time,
 * each with its own reading of a clock (monotonic, offset to T0). Each
 * limiter pairs counting limits of BIG units over one long window with a
 * tight limit of 1 per TICK committed last (GCRA, or a calendar as cell 0),
 * so most requests are refused, and at every new token several threads pass
 * the dry run, reserve the counting limits, and all but one meet the tight
 * limit's refusal at its commit: each of those cancels what it reserved. At
 * the end, with the tight limit refilled one request per 2 TICKs, exactly
 * BIG - admitted more requests pass before a counting limit refuses: a
 * cancel that kept units (or a mutant that skips one) makes that fewer, a
 * lost admission more.
 *
 *   0  GCRA + calendar       1  sliding counter + GCRA
 *   2  sliding log + GCRA    3  calendar + counter + log + GCRA
 *   4  calendar 1 per TICK (cell 0) + log + counter (no GCRA)
 *
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
#define TICK (200 * 1000ull)  /* 200 us */
#define BIG_W (65536 * SEC) /* one window for the whole run and the probes */
#define T0 BIG_W            /* the start of a window of every length used */
#define BIG 4000u
#define THREADS 3
#define NLIM 5

static struct sluice_limiter *lims[NLIM];
static _Atomic uint64_t admitted[NLIM], denied[NLIM], errors;
static _Atomic bool stop;
static uint64_t start_ns;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return T0 + (uint64_t)ts.tv_sec * SEC + (uint64_t)ts.tv_nsec - start_ns;
}

static int make(int l, const struct sluice_limit *ls, size_t n)
{
	return sluice_limiter_create(&lims[l], ls, n, NULL);
}

static int init_limits(void)
{
	struct sluice_limit g, cal, cnt, lg, tight;
	memset(&g, 0, sizeof g);
	memset(&cal, 0, sizeof cal);
	memset(&cnt, 0, sizeof cnt);
	memset(&lg, 0, sizeof lg);
	memset(&tight, 0, sizeof tight);
	g.kind = SLUICE_LIMIT_GCRA;
	cal.kind = SLUICE_LIMIT_CALENDAR;
	cnt.kind = SLUICE_LIMIT_SLIDING_COUNTER;
	lg.kind = SLUICE_LIMIT_SLIDING_LOG;
	tight.kind = SLUICE_LIMIT_CALENDAR;
	if (sluice_rate_init(&g.rate, 1, TICK, 1) || sluice_calendar_config_init(&cal.calendar, BIG, BIG_W) ||
	    sluice_window_counter_config_init(&cnt.counter, BIG, BIG_W) ||
	    sluice_window_log_config_init(&lg.log, BIG, BIG_W) ||
	    sluice_calendar_config_init(&tight.calendar, 1, TICK))
		return -1;
	struct sluice_limit l0[2] = { g, cal }, l1[2] = { cnt, g }, l2[2] = { lg, g };
	struct sluice_limit l3[4] = { cal, cnt, lg, g }, l4[3] = { tight, lg, cnt };
	return make(0, l0, 2) || make(1, l1, 2) || make(2, l2, 2) || make(3, l3, 4) || make(4, l4, 3);
}

static void *worker_main(void *arg)
{
	(void)arg;
	/* relaxed: a flag polled; the join orders everything after it. */
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) { /* relaxed: why above */
		for (int l = 0; l < NLIM; l++) {
			/* Leave room for the probes (an overshoot of a few units
			 * by racing threads is harmless). */
			if (LOAD(&admitted[l]) >= BIG / 2)
				continue;
			struct sluice_decision d;
			if (sluice_limiter_admit(lims[l], "hot", 3, 1, now_ns(), &d) != SLUICE_OK)
				atomic_fetch_add_explicit(&errors, 1, memory_order_relaxed); /* relaxed: counter */
			else
				atomic_fetch_add_explicit(d.allowed ? &admitted[l] : &denied[l], 1, /* relaxed: counter */
							  memory_order_relaxed);
		}
	}
	return NULL;
}

/* Requests that still pass, one per 2 TICKs from `from` (the tight limit
 * has room again each time), until a counting limit refuses. */
static uint64_t probe(struct sluice_limiter *lim, uint64_t from)
{
	for (uint64_t n = 0; n <= BIG; n++) {
		struct sluice_decision d;
		if (sluice_limiter_admit(lim, "hot", 3, 1, from + 2 * n * TICK, &d) != SLUICE_OK)
			return UINT64_MAX;
		if (!d.allowed)
			return n;
	}
	return UINT64_MAX;
}

int main(void)
{
	int passed = 0, failed = 0;

	if (init_limits() != 0) {
		printf("0 passed, 1 failed (setup)\n");
		return 1;
	}
	start_ns = 0;
	start_ns = now_ns() - T0;
	pthread_t w[THREADS];
	for (int i = 0; i < THREADS; i++)
		pthread_create(&w[i], NULL, worker_main, NULL);
	const char *ms = getenv("SLUICE_STRESS_MS");
	long want = ms != NULL ? atol(ms) : 1000;
	struct timespec ts = { want / 1000, (want % 1000) * 1000000 };
	nanosleep(&ts, NULL);
	atomic_store_explicit(&stop, true, memory_order_relaxed); /* relaxed: a flag; join orders the rest */
	for (int i = 0; i < THREADS; i++)
		pthread_join(w[i], NULL);
	uint64_t end = now_ns() + 2 * TICK;

	const char *names[NLIM] = { "gcra + calendar", "counter + gcra", "log + gcra",
				    "calendar + counter + log + gcra", "calendar cell 0 + log + counter" };
	for (int l = 0; l < NLIM; l++) {
		uint64_t a = LOAD(&admitted[l]), left = probe(lims[l], end);
		bool ok = a < BIG && LOAD(&denied[l]) > 0 && left == BIG - a;
		printf("%s%s: %llu admitted, %llu refused; %llu left of %u (want %llu)\n",
		       ok ? "" : "FAIL: ", names[l], (unsigned long long)a,
		       (unsigned long long)LOAD(&denied[l]), (unsigned long long)left, BIG,
		       (unsigned long long)(BIG - a));
		if (ok)
			passed++;
		else
			failed++;
	}
	if (LOAD(&errors) != 0) {
		printf("FAIL: %llu call errors\n", (unsigned long long)LOAD(&errors));
		failed++;
	} else {
		passed++;
	}
	for (int l = 0; l < NLIM; l++)
		sluice_limiter_destroy(lims[l]);
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
