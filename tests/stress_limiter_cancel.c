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
 * Then the sliding log's exact cancel on a bare cell, the one cancel that
 * rewrites live slots (window_log.c): THREADS threads admit one unit each
 * with a receipt and cancel their receipts out of order (usually not the
 * newest write: the rewrite path), with lock-free readers deciding between
 * the rewrites. Never more than LOG_L units held at once (a reader that
 * accepted a torn snapshot could let one more in), and once every receipt
 * is cancelled the log holds nothing.
 *
 * Duration: SLUICE_STRESS_MS (default 1000), for each part.
 */
#include <pthread.h>
#include <sluice.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cells/window_internal.h"

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

/* ---- the sliding log's exact cancel on a bare cell ---- */

#define LOG_L 16
#define LOG_HELD 4

static struct sluice_window_log *log_cell;
static struct sluice_window_log_config log_cfg;
static _Atomic int64_t log_held; /* units held: up after an admit, down before its cancel */
static _Atomic uint64_t log_over, log_cancels, log_admits;
static _Atomic uint64_t log_clock;

static void *log_worker(void *arg)
{
	uint64_t x = 0x9e3779b97f4a7c15ull * (uint64_t)(uintptr_t)arg + 1;
	struct sluice__window_log_receipt held[LOG_HELD];
	int n = 0;

	/* relaxed: a flag polled; the join orders everything after it. */
	while (!atomic_load_explicit(&stop, memory_order_relaxed) || n > 0) { /* relaxed: why above */
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		bool stopping = atomic_load_explicit(&stop, memory_order_relaxed); /* relaxed: as above */
		if (n < LOG_HELD && !stopping) {
			/* relaxed: a clock; any order of the times is allowed. */
			uint64_t t = T0 + atomic_fetch_add_explicit(&log_clock, 1, memory_order_relaxed); /* relaxed: why above */
			if (sluice__window_log_admit(log_cell, &log_cfg, t, 1, NULL, &held[n])) {
				n++;
				/* relaxed: counters, checked against the bound only. */
				if (atomic_fetch_add_explicit(&log_held, 1, memory_order_relaxed) + 1 > LOG_L) /* relaxed: why above */
					atomic_fetch_add_explicit(&log_over, 1, memory_order_relaxed); /* relaxed: counter */
				atomic_fetch_add_explicit(&log_admits, 1, memory_order_relaxed); /* relaxed: counter */
			}
		} else if (n > 0) {
			int i = (int)(x % (uint64_t)n); /* any of ours: rarely the newest write */
			/* relaxed: down before the cancel, so the count never exceeds
			 * what the cell holds. */
			atomic_fetch_sub_explicit(&log_held, 1, memory_order_relaxed); /* relaxed: why above */
			if (!sluice__window_log_cancel_exact(log_cell, &log_cfg, &held[i]))
				atomic_fetch_add_explicit(&errors, 1, memory_order_relaxed); /* relaxed: counter */
			atomic_fetch_add_explicit(&log_cancels, 1, memory_order_relaxed); /* relaxed: counter */
			held[i] = held[--n];
		}
		/* A lock-free reader between the writes. */
		struct sluice_decision d;
		sluice_window_log_admit(log_cell, &log_cfg, T0, 0, &d);
	}
	return NULL;
}

static int log_part(long ms)
{
	if (sluice_window_log_config_init(&log_cfg, LOG_L, BIG_W) != SLUICE_OK)
		return 1;
	log_cell = aligned_alloc(8, sluice_window_log_size(&log_cfg));
	sluice_window_log_init(log_cell, &log_cfg);
	atomic_store_explicit(&stop, false, memory_order_relaxed); /* relaxed: before the threads start */
	pthread_t w[THREADS];
	for (int i = 0; i < THREADS; i++)
		pthread_create(&w[i], NULL, log_worker, (void *)(uintptr_t)(i + 1));
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };
	nanosleep(&ts, NULL);
	atomic_store_explicit(&stop, true, memory_order_relaxed); /* relaxed: a flag; join orders the rest */
	for (int i = 0; i < THREADS; i++)
		pthread_join(w[i], NULL);
	struct sluice_decision d;
	sluice_window_log_admit(log_cell, &log_cfg, T0 + LOAD(&log_clock), 0, &d);
	bool ok = LOAD(&log_over) == 0 && LOAD(&log_held) == 0 && d.remaining == LOG_L &&
		  LOAD(&log_cancels) == LOAD(&log_admits) && LOAD(&log_cancels) > 0;
	printf("%slog exact cancels: %llu admits, %llu cancels, %llu over the bound, %llu units left\n",
	       ok ? "" : "FAIL: ", (unsigned long long)LOAD(&log_admits),
	       (unsigned long long)LOAD(&log_cancels), (unsigned long long)LOAD(&log_over),
	       (unsigned long long)(LOG_L - d.remaining));
	free(log_cell);
	return ok ? 0 : 1;
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
	if (log_part(want) != 0)
		failed++;
	else
		passed++;
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
