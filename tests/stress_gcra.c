/*
 * stress_gcra.c - threads hammer one GCRA cell with a shared fake clock that
 * the main thread advances. A plain executable (Criterion cannot run under
 * TSan); prints "N passed, N failed" and exits non-zero on a failure.
 *
 * Phases (total duration SLUICE_STRESS_MS, default 1000 ms):
 *   plentiful  burst 2^40 tokens of 1 ns each: consumption and clock
 *              movement in the phase stay far below the bucket depth, so
 *              no request may be refused, whatever the thread interleaving
 *              and however stale a thread's clock reading is.
 *   scarce     small burst, the clock advances in random steps while the
 *              workers over-demand: total admitted <= burst +
 *              floor(elapsed * limit / period) exactly (an exact and a
 *              non-multiple rate), and each denial describes a state the
 *              cell really held (between the thread's earlier and later
 *              observations of the word).
 *   receipts   admit_receipt + cancel from every thread at one fixed time:
 *              the word ends exactly at now + net * interval (0 if net is 0),
 *              net = admitted - cancelled units; then with a moving clock,
 *              net <= burst + floor(elapsed * limit / period).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <time.h>

#include <sluice.h>

#define NTHREADS 4

__extension__ typedef unsigned __int128 u128;

static int passed, failed;

static void check(int ok, const char *what)
{
	if (ok) {
		passed++;
	} else {
		failed++;
		fprintf(stderr, "FAIL: %s\n", what);
	}
}

static uint64_t wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += UINT64_C(0x9E3779B97F4A7C15));
	z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
	return z ^ (z >> 31);
}

/* Shared by the workers of one phase. */
struct shared {
	struct sluice_gcra cell __attribute__((aligned(SLUICE_CACHELINE)));
	/* relaxed everywhere: the fake clock and the stop flag publish only
	 * themselves; results are read after pthread_join, which orders them. */
	_Atomic uint64_t clock_ns __attribute__((aligned(SLUICE_CACHELINE)));
	_Atomic int stop __attribute__((aligned(SLUICE_CACHELINE)));
	struct sluice_rate rate;
	uint64_t max_cost;
	uint64_t fixed_now;   /* receipts phase: 0 means read the clock */
	uint64_t worker_step; /* workers also advance the clock by < this */
};

struct worker {
	pthread_t th;
	struct shared *sh;
	int mode; /* 0 plain admits, 1 receipts */
	uint64_t seed;
	uint64_t requests, admitted_units, denied, bad_denials;
	uint64_t cancelled_units, cancels_ok, cancels_refused;
} __attribute__((aligned(SLUICE_CACHELINE)));

static uint64_t read_word(struct sluice_gcra *cell)
{
	/* relaxed: a test observation of the cell's word; coherence on this one
	 * object orders it against the thread's own earlier and later loads. */
	return atomic_load_explicit(&cell->tat_ns, memory_order_relaxed);
}

static void *worker_main(void *p)
{
	struct worker *w = p;
	struct shared *sh = w->sh;
	uint64_t s = w->seed;
	uint64_t seen = read_word(&sh->cell);

	/* relaxed: see struct shared */
	while (!atomic_load_explicit(&sh->stop, memory_order_relaxed)) {
		uint64_t now = sh->fixed_now != 0
				       ? sh->fixed_now
				       /* relaxed: see struct shared */
				       : atomic_load_explicit(&sh->clock_ns, memory_order_relaxed);
		uint64_t cost = 1 + rng_next(&s) % sh->max_cost;
		struct sluice_decision d;
		w->requests++;
		if (w->mode == 0) {
			bool ok = sluice_gcra_admit(&sh->cell, &sh->rate, now, cost, &d);
			uint64_t after = read_word(&sh->cell);
			if (ok) {
				w->admitted_units += cost;
			} else {
				/* the denial's state F = now + reset_ns was really held:
				 * F is monotone here (no cancels), so it lies between
				 * this thread's observations before and after; and at
				 * `now` it has fewer than cost tokens */
				uint64_t f = now + d.reset_ns;
				u128 lhs = (u128)d.reset_ns + (u128)cost * sh->rate.interval_ns;
				w->denied++;
				/* help the clock along from the workers too, so that it
				 * moves while they run (on 2 shared cores the main thread
				 * is often descheduled) */
				if (sh->worker_step != 0 && rng_next(&s) % 8 == 0)
					/* relaxed: see struct shared */
					atomic_fetch_add_explicit(&sh->clock_ns,
								  rng_next(&s) % sh->worker_step,
								  memory_order_relaxed);
				if (f < seen || f > after || lhs <= sh->rate.tolerance_ns ||
				    d.retry_after_ns == 0)
					w->bad_denials++;
			}
			seen = after;
		} else {
			struct sluice_gcra_receipt r;
			if (sluice_gcra_admit_receipt(&sh->cell, &sh->rate, now, cost, NULL, &r)) {
				w->admitted_units += cost;
				if (rng_next(&s) % 2 == 0) {
					if (rng_next(&s) % 4 == 0)
						sched_yield(); /* let others land on top */
					if (sluice_gcra_cancel(&sh->cell, &r)) {
						w->cancelled_units += cost;
						w->cancels_ok++;
					} else {
						w->cancels_refused++;
					}
				}
			} else {
				w->denied++;
			}
		}
	}
	return NULL;
}

struct totals {
	uint64_t requests, admitted_units, denied, bad_denials;
	uint64_t cancelled_units, cancels_ok, cancels_refused;
};

/* Run workers for `ms` while the main thread advances the clock by a random
 * step in [0, max_step] at a time (max_step 0: the clock stays put). */
static struct totals run_phase(struct shared *sh, int mode, uint64_t ms, uint64_t max_step,
			       uint64_t seed)
{
	struct worker w[NTHREADS];
	struct totals t = {0};

	/* relaxed: threads start after this (pthread_create orders it) */
	atomic_store_explicit(&sh->stop, 0, memory_order_relaxed);
	for (int i = 0; i < NTHREADS; i++) {
		memset(&w[i], 0, sizeof(w[i]));
		w[i].sh = sh;
		w[i].mode = mode;
		w[i].seed = seed * 100 + (uint64_t)i;
		if (pthread_create(&w[i].th, NULL, worker_main, &w[i]) != 0) {
			perror("pthread_create");
			exit(2);
		}
	}
	uint64_t s = seed;
	uint64_t end = wall_ns() + ms * 1000000u;
	while (wall_ns() < end) {
		if (max_step != 0)
			/* relaxed: see struct shared */
			atomic_fetch_add_explicit(&sh->clock_ns, rng_next(&s) % (max_step + 1),
						  memory_order_relaxed);
		for (volatile int spin = 0; spin < 200; spin++)
			;
	}
	/* relaxed: see struct shared */
	atomic_store_explicit(&sh->stop, 1, memory_order_relaxed);
	for (int i = 0; i < NTHREADS; i++) {
		pthread_join(w[i].th, NULL);
		t.requests += w[i].requests;
		t.admitted_units += w[i].admitted_units;
		t.denied += w[i].denied;
		t.bad_denials += w[i].bad_denials;
		t.cancelled_units += w[i].cancelled_units;
		t.cancels_ok += w[i].cancels_ok;
		t.cancels_refused += w[i].cancels_refused;
	}
	return t;
}

static void init_shared(struct shared *sh, uint64_t limit, uint64_t period, uint64_t burst,
			uint64_t max_cost, uint64_t clock0)
{
	memset(sh, 0, sizeof(*sh));
	if (sluice_rate_init(&sh->rate, limit, period, burst) != SLUICE_OK) {
		fprintf(stderr, "rate_init failed\n");
		exit(2);
	}
	sluice_gcra_init(&sh->cell);
	sh->max_cost = max_cost;
	/* relaxed: before the threads start */
	atomic_store_explicit(&sh->clock_ns, clock0, memory_order_relaxed);
}

static uint64_t clock_of(struct shared *sh)
{
	/* relaxed: after join */
	return atomic_load_explicit(&sh->clock_ns, memory_order_relaxed);
}

/* burst + floor(elapsed * limit / period), the most a bucket can give */
static u128 bound(const struct sluice_rate *r, uint64_t elapsed)
{
	return (u128)r->burst + (u128)elapsed * r->limit / r->period_ns;
}

static void phase_plentiful(uint64_t ms)
{
	static struct shared sh;
	const uint64_t burst = UINT64_C(1) << 40;

	init_shared(&sh, SLUICE_NS_PER_SEC, SLUICE_NS_PER_SEC, burst, 3, UINT64_C(1) << 62);
	struct totals t = run_phase(&sh, 0, ms, 50, 1);
	uint64_t elapsed = clock_of(&sh) - (UINT64_C(1) << 62);
	char msg[256];
	snprintf(msg, sizeof(msg),
		 "plentiful: %llu requests, %llu denied (consumed %llu of %llu, clock moved %llu)",
		 (unsigned long long)t.requests, (unsigned long long)t.denied,
		 (unsigned long long)t.admitted_units, (unsigned long long)burst,
		 (unsigned long long)elapsed);
	/* premise: the phase stayed far inside the bucket */
	check(t.admitted_units < burst / 4 && elapsed < burst / 4, "plentiful: premise");
	check(t.denied == 0, msg);
	check(t.requests > 1000, "plentiful: workers ran");
	printf("%s\n", msg);
}

static void phase_scarce(uint64_t ms, uint64_t limit, uint64_t period, uint64_t burst,
			 uint64_t seed)
{
	static struct shared sh;
	const uint64_t clock0 = UINT64_C(1000000000000000000);

	init_shared(&sh, limit, period, burst, burst < 3 ? burst : 3, clock0);
	sh.worker_step = sh.rate.interval_ns;
	struct totals t = run_phase(&sh, 0, ms, 2 * sh.rate.interval_ns, seed);
	uint64_t elapsed = clock_of(&sh) - clock0;
	u128 b = bound(&sh.rate, elapsed);
	char msg[256];
	snprintf(msg, sizeof(msg),
		 "scarce %llu/%llu burst %llu: admitted %llu units <= bound %llu "
		 "(%llu requests, %llu denied, clock moved %llu ns)",
		 (unsigned long long)limit, (unsigned long long)period, (unsigned long long)burst,
		 (unsigned long long)t.admitted_units, (unsigned long long)b,
		 (unsigned long long)t.requests, (unsigned long long)t.denied,
		 (unsigned long long)elapsed);
	check((u128)t.admitted_units <= b, msg);
	check(t.bad_denials == 0, "scarce: every denial describes a state the cell held");
	check(t.denied > 0 && t.admitted_units > burst, "scarce: the bucket ran dry and refilled");
	printf("%s\n", msg);
}

static void phase_receipts(uint64_t ms)
{
	static struct shared sh;
	const uint64_t now = UINT64_C(5000000000000000000);

	/* one fixed time: the exact law */
	init_shared(&sh, 1, 1000, 100000, 4, now);
	sh.fixed_now = now;
	struct totals t = run_phase(&sh, 1, ms / 2, 0, 7);
	uint64_t net = t.admitted_units - t.cancelled_units;
	uint64_t w = read_word(&sh.cell);
	uint64_t expect = net == 0 ? 0 : now + net * sh.rate.interval_ns;
	char msg[256];
	snprintf(msg, sizeof(msg),
		 "receipts: word %llu == %llu (admitted %llu, cancelled %llu units; "
		 "%llu cancels done, %llu refused)",
		 (unsigned long long)w, (unsigned long long)expect,
		 (unsigned long long)t.admitted_units, (unsigned long long)t.cancelled_units,
		 (unsigned long long)t.cancels_ok, (unsigned long long)t.cancels_refused);
	check(w == expect, msg);
	check(net <= sh.rate.burst, "receipts: net consumption <= burst");
	check(t.cancels_ok > 0, "receipts: some cancels applied");
	printf("%s\n", msg);

	/* a moving clock: the bound on net consumption */
	init_shared(&sh, 3, 3000, 16, 3, now);
	t = run_phase(&sh, 1, ms / 2, 2000, 8);
	uint64_t elapsed = clock_of(&sh) - now;
	net = t.admitted_units - t.cancelled_units;
	u128 b = bound(&sh.rate, elapsed);
	snprintf(msg, sizeof(msg),
		 "receipts, moving clock: net %llu units <= bound %llu (%llu cancels, %llu refused)",
		 (unsigned long long)net, (unsigned long long)b, (unsigned long long)t.cancels_ok,
		 (unsigned long long)t.cancels_refused);
	check((u128)net <= b, msg);
	printf("%s\n", msg);
}

int main(void)
{
	uint64_t ms = 1000;
	const char *env = getenv("SLUICE_STRESS_MS");
	if (env != NULL && *env != '\0')
		ms = strtoull(env, NULL, 10);
	if (ms < 40)
		ms = 40;

	phase_plentiful(ms / 4);
	phase_scarce(ms / 8, 3, 3000, 64, 11);          /* exact: 1 us per unit */
	phase_scarce(ms / 8, 7, 10000, 20, 12);         /* non-multiple: 1429 ns */
	phase_scarce(ms / 8, 1000000, SLUICE_NS_PER_SEC, 1, 13); /* burst 1 */
	phase_receipts(3 * ms / 8);

	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
