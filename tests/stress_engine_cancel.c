/*
 * stress_engine_cancel.c - a refused request consumes nothing across the
 * engine's limiters, under concurrency: the conservation law in both
 * directions. A plain executable (runs under TSan).
 *
 * Policy: a large daily quota listed BEFORE a per-second limit that refuses
 * most requests when THREADS threads hammer one token (a shared clock that
 * advances 1 us per request). At the end, the quota's consumption (read with
 * sluice_engine_usage) must equal exactly the number of admitted requests:
 * more would be units taken by refused requests (lost consumption), fewer an
 * admission that consumed nothing. A second case with the quota as a GCRA
 * (two inexact limits) checks that consumption never falls below the
 * admissions and prints the units lost to races after the read-only pass.
 * Both cases also check that the per-second limit never over-admitted.
 * Duration: SLUICE_STRESS_MS per case (default 500).
 */
#include <pthread.h>
#include <sluice.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SEC 1000000000ull
#define DAY0 (UINT64_C(1795392000) * SEC)
#define THREADS 4

static const char *const texts[2] = {
	"policy \"c\"\nscope token\n"
	"limit day per token quota 100_000_000/1d@utc\n"
	"limit second per token rate 1000/1s burst 5\n",
	"policy \"g\"\nscope token\n"
	"limit day per token rate 10_000_000/10000d burst 10_000_000\n"
	"limit second per token rate 1000/1s burst 5\n",
};

struct shared {
	struct sluice_engine *eng;
	_Atomic uint64_t clock;   /* ns since DAY0 + 1 h, +1 us per request */
	_Atomic uint64_t admitted;
	_Atomic uint64_t refused;
	_Atomic int stop;
};

static void request_init(struct sluice_engine_request *r, struct sluice_identity *id)
{
	memset(r, 0, sizeof *r);
	id->bytes = "hot";
	id->len = 3;
	r->method = "GET";
	r->method_len = 3;
	r->path = "/";
	r->path_len = 1;
	r->identities = id;
	r->identity_count = 1;
	r->tier = SLUICE_POLICY_NO_TIER;
	r->cost = 1;
}

static void *worker(void *arg)
{
	struct shared *s = arg;
	struct sluice_identity id;
	struct sluice_engine_request r;
	struct sluice_engine_decision d;
	uint64_t admitted = 0, refused = 0;

	request_init(&r, &id);
	/* relaxed: a stop flag; nothing is published with it. */
	while (!atomic_load_explicit(&s->stop, memory_order_relaxed)) { /* relaxed: why above */
		/* relaxed: the clock only has to be a shared counter. */
		r.now_ns = DAY0 + 3600 * SEC + atomic_fetch_add_explicit(&s->clock, 1000, memory_order_relaxed); /* relaxed: why above */
		if (sluice_engine_check(s->eng, &r, &d) != SLUICE_OK)
			abort();
		if (d.d.allowed)
			admitted++;
		else
			refused++;
	}
	/* relaxed: read after pthread_join, which orders them. */
	atomic_fetch_add_explicit(&s->admitted, admitted, memory_order_relaxed); /* relaxed: why above */
	atomic_fetch_add_explicit(&s->refused, refused, memory_order_relaxed);   /* relaxed: why above */
	return NULL;
}

/* Returns the failures of one case. */
static int run_case(int g, long ms)
{
	struct shared s;
	struct sluice_policy *p = NULL;
	memset(&s, 0, sizeof s);
	if (sluice_policy_parse(texts[g], strlen(texts[g]), NULL, &p, NULL) != SLUICE_OK ||
	    sluice_engine_create(&s.eng, p, NULL) != SLUICE_OK) {
		printf("FAILED: case %d: policy or engine\n", g);
		return 1;
	}
	pthread_t t[THREADS];
	for (int i = 0; i < THREADS; i++)
		pthread_create(&t[i], NULL, worker, &s);
	struct timespec pause = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&pause, NULL);
	/* relaxed: see worker(). */
	atomic_store_explicit(&s.stop, 1, memory_order_relaxed); /* relaxed: why above */
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);

	/* relaxed: after the joins. */
	uint64_t admitted = atomic_load_explicit(&s.admitted, memory_order_relaxed); /* relaxed: why above */
	uint64_t refused = atomic_load_explicit(&s.refused, memory_order_relaxed);   /* relaxed: why above */
	uint64_t elapsed = atomic_load_explicit(&s.clock, memory_order_relaxed);     /* relaxed: why above */
	struct sluice_identity id;
	struct sluice_engine_request r;
	struct sluice_engine_usage u[2];
	size_t n = 0;
	request_init(&r, &id);
	r.cost = 0;
	/* Read the quota at the last instant of the run (the GCRA quota then
	 * has refilled less than one unit: 86 s per unit). */
	r.now_ns = DAY0 + 3600 * SEC + elapsed;
	int failed = 0;
	if (sluice_engine_usage(s.eng, &r, u, 2, &n) != SLUICE_OK || n != 2) {
		printf("FAILED: case %d: usage\n", g);
		failed++;
	} else {
		uint64_t used = u[0].used;
		/* The per-second limit: burst 5 + 1 per ms of the shared clock. */
		uint64_t bound = 5 + elapsed / 1000000;
		printf("case %d (%s quota): %llu admitted, %llu refused, quota used %llu, lost %lld, "
		       "per-second bound %llu\n",
		       g, g ? "GCRA" : "calendar", (unsigned long long)admitted, (unsigned long long)refused,
		       (unsigned long long)used, (long long)(used - admitted), (unsigned long long)bound);
		if (admitted > bound) {
			printf("FAILED: case %d: the per-second limit over-admitted\n", g);
			failed++;
		}
		if (used < admitted) {
			printf("FAILED: case %d: an admission consumed nothing\n", g);
			failed++;
		}
		if (g == 0 && used != admitted) {
			printf("FAILED: case %d: refused requests took %llu quota units\n", g,
			       (unsigned long long)(used - admitted));
			failed++;
		}
		if (refused == 0) {
			printf("FAILED: case %d: nothing was refused: the race was not exercised\n", g);
			failed++;
		}
	}
	sluice_engine_destroy(s.eng);
	return failed;
}

int main(void)
{
	const char *env = getenv("SLUICE_STRESS_MS");
	long ms = env != NULL ? atol(env) : 500;
	int failed = 0, passed = 0;
	for (int g = 0; g < 2; g++) {
		int f = run_case(g, ms);
		failed += f;
		passed += f == 0;
	}
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
