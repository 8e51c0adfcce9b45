/*
 * stress_limiter.c - the keyed limiter under concurrency, with its
 * conservation law checked exactly. A plain executable (runs under TSan).
 *
 * N threads admit on 8 hot and 2000 cold keys against a two-limit policy, on
 * a shared fake clock that each request advances; requests use clock
 * readings up to STALE units old (stale clocks). One thread admits in
 * batches. A sweeper reclaims idle entries concurrently, at the clock minus
 * STALE, so no later request is older than a sweep. At the end, for every
 * key and every limit i:
 *
 *     admitted cost <= burst_i + floor((t_last - t_first) / interval_i)
 *
 * over the admitted requests' times: no limit ever admitted more than it
 * allows, across insert races, commit races, cancels and reclaims.
 * Duration: SLUICE_STRESS_MS (default 1000). STRESS_NLIMITS (default 2)
 * selects a policy of the first one or both limits: stress_limiter_one.c
 * builds this file with 1, the single-pass path.
 */
#include <pthread.h>
#include <sluice.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HOT 8
#define COLD 2000
#define KEYS (HOT + COLD)
#define THREADS 4
#define STALE 50
#define BATCH 8

#ifndef STRESS_NLIMITS
#define STRESS_NLIMITS 2
#endif
#define STRESS_NAME (STRESS_NLIMITS == 1 ? "stress_limiter_one" : "stress_limiter")

static struct sluice_limit limits[2];
static struct sluice_limiter *lim;
static _Atomic uint64_t fake_clock = 1000000;
static _Atomic bool stop;

struct key_tally {
	uint64_t cost;
	uint64_t t_first;
	uint64_t t_last;
	uint64_t requests;
};

struct worker {
	pthread_t th;
	int id;
	uint64_t admitted;
	uint64_t denied;
	struct key_tally tally[KEYS];
};

static struct worker workers[THREADS];

static void key_name(int k, char *buf, size_t *len)
{
	*len = (size_t)snprintf(buf, 16, k < HOT ? "hot-%d" : "cold-%d", k);
}

static inline uint64_t xorshift(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static void record(struct worker *w, int k, uint64_t cost, uint64_t t, bool allowed)
{
	if (!allowed) {
		w->denied++;
		return;
	}
	struct key_tally *kt = &w->tally[k];
	if (kt->requests == 0 || t < kt->t_first)
		kt->t_first = t;
	if (kt->requests == 0 || t > kt->t_last)
		kt->t_last = t;
	kt->requests++;
	kt->cost += cost;
	w->admitted++;
}

static int pick_key(uint64_t *x)
{
	uint64_t r = xorshift(x);
	return (r % 10) < 7 ? (int)((r >> 8) % HOT) : HOT + (int)((r >> 8) % COLD);
}

static uint64_t request_time(uint64_t *x)
{
	/* relaxed: the fake clock is a counter; only its values matter. */
	uint64_t now = atomic_fetch_add_explicit(&fake_clock, 1, memory_order_relaxed);
	return now - xorshift(x) % STALE;
}

static void *worker_main(void *p)
{
	struct worker *w = p;
	uint64_t x = 0x9e3779b97f4a7c15ull * (uint64_t)(w->id + 1);
	char names[BATCH][16];
	struct sluice_limiter_request req[BATCH];
	struct sluice_decision d[BATCH];
	int ks[BATCH];

	/* relaxed: a stop flag polled in a loop. */
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		if (w->id == 0) {
			/* The batch admitter: one time for the whole batch. */
			uint64_t t = request_time(&x);
			for (int j = 0; j < BATCH; j++) {
				ks[j] = pick_key(&x);
				key_name(ks[j], names[j], &req[j].key_len);
				req[j].key = names[j];
				req[j].cost = 1 + xorshift(&x) % 2;
			}
			if (sluice_limiter_admit_batch(lim, req, BATCH, t, d) != SLUICE_OK)
				abort();
			for (int j = 0; j < BATCH; j++)
				record(w, ks[j], req[j].cost, t, d[j].allowed);
			continue;
		}
		int k = pick_key(&x);
		size_t len;
		key_name(k, names[0], &len);
		uint64_t cost = 1 + xorshift(&x) % 2;
		uint64_t t = request_time(&x);
		if (sluice_limiter_admit(lim, names[0], len, cost, t, &d[0]) != SLUICE_OK)
			abort();
		record(w, k, cost, t, d[0].allowed);
	}
	return NULL;
}

static uint64_t reclaimed_total;

static void *sweeper_main(void *p)
{
	(void)p;
	/* relaxed: as above. */
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		size_t got;
		/* relaxed: the fake clock's value is all we need. */
		uint64_t now = atomic_load_explicit(&fake_clock, memory_order_relaxed) - STALE;
		if (sluice_limiter_sweep(lim, now, 64, &got) != SLUICE_OK)
			abort();
		reclaimed_total += got;
	}
	return NULL;
}

int main(void)
{
	const char *ms_env = getenv("SLUICE_STRESS_MS");
	long ms = ms_env != NULL ? atol(ms_env) : 1000;
	int failed = 0, passed = 0;

	memset(limits, 0, sizeof limits);
	limits[0].kind = limits[1].kind = SLUICE_LIMIT_GCRA;
	/* 1 per 32 units, burst 4; 1 per 40 units, burst 16 (exact rates). */
	if (sluice_rate_init(&limits[0].rate, 1, 32, 4) != SLUICE_OK ||
	    sluice_rate_init(&limits[1].rate, 1, 40, 16) != SLUICE_OK ||
	    sluice_limiter_create(&lim, limits, STRESS_NLIMITS, NULL) != SLUICE_OK) {
		printf("0 passed, 1 failed (setup)\n");
		return 1;
	}

	pthread_t sweeper;
	for (int i = 0; i < THREADS; i++) {
		workers[i].id = i;
		pthread_create(&workers[i].th, NULL, worker_main, &workers[i]);
	}
	pthread_create(&sweeper, NULL, sweeper_main, NULL);
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };
	nanosleep(&ts, NULL);
	/* relaxed: joins below order everything the threads did. */
	atomic_store_explicit(&stop, true, memory_order_relaxed);
	for (int i = 0; i < THREADS; i++)
		pthread_join(workers[i].th, NULL);
	pthread_join(sweeper, NULL);

	/* The bound, for every key and limit. */
	uint64_t admitted = 0, denied = 0, violations = 0;
	for (int i = 0; i < THREADS; i++) {
		admitted += workers[i].admitted;
		denied += workers[i].denied;
	}
	for (int k = 0; k < KEYS; k++) {
		struct key_tally all = { 0, UINT64_MAX, 0, 0 };
		for (int i = 0; i < THREADS; i++) {
			struct key_tally *kt = &workers[i].tally[k];
			if (kt->requests == 0)
				continue;
			all.cost += kt->cost;
			all.requests += kt->requests;
			if (kt->t_first < all.t_first)
				all.t_first = kt->t_first;
			if (kt->t_last > all.t_last)
				all.t_last = kt->t_last;
		}
		if (all.requests == 0)
			continue;
		for (int l = 0; l < STRESS_NLIMITS; l++) {
			const struct sluice_rate *r = &limits[l].rate;
			uint64_t bound = r->burst + (all.t_last - all.t_first) / r->interval_ns;
			if (all.cost > bound) {
				violations++;
				fprintf(stderr, "key %d limit %d: admitted %llu > bound %llu\n", k, l,
					(unsigned long long)all.cost, (unsigned long long)bound);
			}
		}
	}
	if (violations == 0)
		passed++;
	else
		failed++;

	/* The striped counters agree with what the threads saw. */
	struct sluice_limiter_stats s;
	memset(&s, 0, sizeof s);
	s.size = sizeof s;
	sluice_limiter_stats(lim, &s);
	if (s.admitted == admitted && s.denied == denied && s.degraded == 0 &&
	    s.reclaimed == reclaimed_total && s.live_keys == s.inserted - s.reclaimed)
		passed++;
	else {
		failed++;
		fprintf(stderr, "stats: admitted %llu/%llu denied %llu/%llu reclaimed %llu/%llu\n",
			(unsigned long long)s.admitted, (unsigned long long)admitted,
			(unsigned long long)s.denied, (unsigned long long)denied,
			(unsigned long long)s.reclaimed, (unsigned long long)reclaimed_total);
	}
	/* The run exercised what it claims to. */
	if (admitted > 1000 && denied > 1000 && reclaimed_total > 100)
		passed++;
	else {
		failed++;
		fprintf(stderr, "too little happened: admitted %llu denied %llu reclaimed %llu\n",
			(unsigned long long)admitted, (unsigned long long)denied,
			(unsigned long long)reclaimed_total);
	}
	fprintf(stderr, "%s: %ld ms, %llu admitted, %llu denied, %llu inserted, %llu reclaimed\n",
		STRESS_NAME, ms, (unsigned long long)admitted, (unsigned long long)denied,
		(unsigned long long)s.inserted, (unsigned long long)reclaimed_total);
	sluice_limiter_destroy(lim);
	printf("%d passed, %d failed\n", passed, failed);
	return failed == 0 ? 0 : 1;
}
