/*
 * stress_limiter_table.c - the keyed limiter's index under concurrent
 * inserts, resizes and reclaims. A plain executable (runs under TSan).
 *
 * The limiter starts with a one-group array (initial_buckets 4) and its
 * hashes' tags narrowed to 8 bits (sluice__limiter_set_hash_mask(): keys
 * share tags, so lookups compare keys past false matches), and inserts
 * resize it again and again while other threads look up, insert and
 * unlink.
 *
 * Phase 1, insert races: THREADS threads admit every one of KEYS1 keys once,
 * all in the same order, at one frozen time, on a policy of burst BURST
 * (BURST < THREADS). Each key must end with exactly one entry that counted
 * every thread's request: BURST admitted and THREADS - BURST denied per
 * key, live_keys == KEYS1.
 *
 * Phase 2, reclaim racing lookups: threads admit random keys of KEYS2 on a
 * moving fake clock while a sweeper reclaims idle entries (at the clock
 * minus STALE) and new keys keep resizing the array. Per key, the admitted
 * cost never exceeds burst + floor(span / interval) over the admitted
 * requests' times (stress_limiter.c's bound).
 */
#include <pthread.h>
#include <sluice.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "limiter/limiter_internal.h"

#define THREADS 4
#define BURST 3
#define KEYS1 20000
#define KEYS2 4000
#define STALE 50
#define INTERVAL 40

static struct sluice_limiter *lim;
static _Atomic uint64_t fake_clock = 1000000;
static _Atomic bool stop;
static _Atomic int go;

struct tally {
	uint64_t cost, t_first, t_last;
};

struct worker {
	pthread_t th;
	int id;
	uint64_t admitted, denied;
	struct tally t[KEYS2];
};

static struct worker workers[THREADS];
static _Atomic uint64_t admitted1[KEYS1];

static size_t key_name(unsigned k, char *buf)
{
	return (size_t)snprintf(buf, 24, "key-%u", k);
}

static void *phase1_main(void *p)
{
	struct worker *w = p;
	struct sluice_decision d;
	char k[24];

	while (!atomic_load_explicit(&go, memory_order_acquire)) /* acquire: start together */
		;
	for (unsigned i = 0; i < KEYS1; i++) {
		size_t len = key_name(i, k);
		if (sluice_limiter_admit(lim, k, len, 1, 1000000, &d) != SLUICE_OK || d.degraded)
			abort();
		if (d.allowed) {
			w->admitted++;
			atomic_fetch_add_explicit(&admitted1[i], 1, memory_order_relaxed); /* relaxed: summed after join */
		} else {
			w->denied++;
		}
	}
	return NULL;
}

static inline uint64_t xorshift(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static void *phase2_main(void *p)
{
	struct worker *w = p;
	struct sluice_decision d;
	uint64_t x = 0x9e3779b97f4a7c15ull * (uint64_t)(w->id + 1);
	char k[24];

	while (!atomic_load_explicit(&stop, memory_order_relaxed)) { /* relaxed: a flag */
		unsigned i = (unsigned)(xorshift(&x) % KEYS2);
		uint64_t cost = 1 + xorshift(&x) % 3;
		uint64_t now = atomic_fetch_add_explicit(&fake_clock, 1, memory_order_relaxed) - /* relaxed: a clock */
			       xorshift(&x) % STALE;
		size_t len = key_name(KEYS1 + i, k);
		if (sluice_limiter_admit(lim, k, len, cost, now, &d) != SLUICE_OK || d.degraded)
			abort();
		if (!d.allowed) {
			w->denied++;
			continue;
		}
		w->admitted++;
		struct tally *t = &w->t[i];
		if (t->cost == 0 || now < t->t_first)
			t->t_first = now;
		if (now > t->t_last)
			t->t_last = now;
		t->cost += cost;
	}
	return NULL;
}

static uint64_t reclaimed;

static void *sweeper_main(void *p)
{
	(void)p;
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) { /* relaxed: a flag */
		size_t got = 0;
		uint64_t now = atomic_load_explicit(&fake_clock, memory_order_relaxed); /* relaxed: a clock */
		sluice_limiter_sweep(lim, now - STALE, 512, &got);
		reclaimed += got;
	}
	return NULL;
}

int main(void)
{
	struct sluice_limit l;
	struct sluice_limiter_options o;
	int passed = 0, failed = 0;
	char *ms_env = getenv("SLUICE_STRESS_MS");
	long ms = ms_env != NULL ? atol(ms_env) : 1000;

	memset(&l, 0, sizeof l);
	l.kind = SLUICE_LIMIT_GCRA;
	memset(&o, 0, sizeof o);
	o.size = sizeof o;
	o.initial_buckets = 4;
	o.hash_secret = "stress";
	o.hash_secret_len = 6;
	if (sluice_rate_init(&l.rate, 1, INTERVAL, BURST) != SLUICE_OK ||
	    sluice_limiter_create(&lim, &l, 1, &o) != SLUICE_OK) {
		printf("0 passed, 1 failed (setup)\n");
		return 1;
	}
	sluice__limiter_set_hash_mask(lim, UINT64_C(0xffff00ff));

	/* Phase 1. */
	for (int i = 0; i < THREADS; i++) {
		workers[i].id = i;
		pthread_create(&workers[i].th, NULL, phase1_main, &workers[i]);
	}
	atomic_store_explicit(&go, 1, memory_order_release); /* release: start together */
	for (int i = 0; i < THREADS; i++)
		pthread_join(workers[i].th, NULL);
	int bad = 0;
	for (unsigned i = 0; i < KEYS1; i++)
		if (atomic_load_explicit(&admitted1[i], memory_order_relaxed) != BURST) { /* relaxed: after join */
			if (bad++ < 5)
				fprintf(stderr, "phase 1: key %u admitted %llu, want %d\n", i,
					(unsigned long long)admitted1[i], BURST);
		}
	struct sluice_limiter_stats s;
	memset(&s, 0, sizeof s);
	s.size = sizeof s;
	sluice_limiter_stats(lim, &s);
	if (s.live_keys != KEYS1 || s.inserted != KEYS1) {
		fprintf(stderr, "phase 1: live %llu inserted %llu, want %d\n",
			(unsigned long long)s.live_keys, (unsigned long long)s.inserted, KEYS1);
		bad++;
	}
	bad == 0 ? passed++ : failed++;

	/* Phase 2: phase 1's keys are idle from here on and get reclaimed too. */
	atomic_store(&fake_clock, 2000000);
	pthread_t sw;
	for (int i = 0; i < THREADS; i++) {
		workers[i].id = i;
		workers[i].admitted = workers[i].denied = 0;
		pthread_create(&workers[i].th, NULL, phase2_main, &workers[i]);
	}
	pthread_create(&sw, NULL, sweeper_main, NULL);
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };
	nanosleep(&ts, NULL);
	atomic_store(&stop, true);
	for (int i = 0; i < THREADS; i++)
		pthread_join(workers[i].th, NULL);
	pthread_join(sw, NULL);
	bad = 0;
	uint64_t adm = 0, den = 0;
	for (unsigned i = 0; i < KEYS2; i++) {
		uint64_t cost = 0, first = UINT64_MAX, last = 0;
		for (int t = 0; t < THREADS; t++) {
			struct tally *ta = &workers[t].t[i];
			if (ta->cost == 0)
				continue;
			cost += ta->cost;
			first = ta->t_first < first ? ta->t_first : first;
			last = ta->t_last > last ? ta->t_last : last;
		}
		if (cost != 0 && cost > BURST + (last - first) / INTERVAL) {
			if (bad++ < 5)
				fprintf(stderr, "phase 2: key %u admitted %llu > bound %llu\n", i,
					(unsigned long long)cost,
					(unsigned long long)(BURST + (last - first) / INTERVAL));
		}
	}
	for (int t = 0; t < THREADS; t++) {
		adm += workers[t].admitted;
		den += workers[t].denied;
	}
	if (adm == 0 || den == 0 || reclaimed == 0) {
		fprintf(stderr, "phase 2: too little happened: admitted %llu denied %llu reclaimed %llu\n",
			(unsigned long long)adm, (unsigned long long)den, (unsigned long long)reclaimed);
		bad++;
	}
	bad == 0 ? passed++ : failed++;
	fprintf(stderr, "stress_limiter_table: %ld ms, %llu admitted, %llu denied, %llu reclaimed\n", ms,
		(unsigned long long)adm, (unsigned long long)den, (unsigned long long)reclaimed);
	sluice_limiter_destroy(lim);
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
