/*
 * stress_redis_backend.c - a Redis-backed limiter and engine shared by
 * threads, with conservation laws checked exactly. A plain executable (runs
 * under TSan, where Criterion cannot); it starts its own redis-server on a
 * free loopback port (tests/redis_harness.h) and kills it at the end (and
 * if it dies: PR_SET_PDEATHSIG).
 *
 * 1. THREADS threads admit (singly and in pipelined batches) on one hot key
 *    of a limiter with 3 connections, on the server's clock, for
 *    SLUICE_STRESS_MS (default 800) per case. The limit refills one unit
 *    per 7.2 s, so over the run:  admitted <= burst + floor(elapsed / 7.2 s),
 *    and with more attempts than that, admitted >= burst.
 * 2. THREADS threads check requests of one workspace on an engine while a
 *    thread reloads between two policies that keep the workspace limit
 *    unchanged (and change another): state survives every reload, so the
 *    workspace limit admits exactly its burst over the run, and no check
 *    fails.
 * 3. THREADS threads acquire and release slots of one key of a limiter with
 *    a 4-slot concurrency limit: counted in flight (incremented after an
 *    admitted acquire, decremented before its release), never more than 4.
 * Built without hiredis: the Redis options compile and both creates answer
 * SLUICE_EUNSUPPORTED.
 */
#include <pthread.h>
#include <sluice.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "redis_harness.h"

#define SEC 1000000000ull
#define MS 1000000ull
#define THREADS 4
#define BURST 500

static int failures;

#define CHECK(cond, ...)                                                     \
	do {                                                                 \
		if (!(cond)) {                                               \
			fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
			fprintf(stderr, __VA_ARGS__);                        \
			fprintf(stderr, "\n");                               \
			failures++;                                          \
		}                                                            \
	} while (0)

static uint64_t run_ms = 800;
static _Atomic bool stop;

/* ---- 1: one hot key, one limiter ---- */

struct lworker {
	pthread_t th;
	struct sluice_limiter *lim;
	uint64_t admitted, attempts;
	int errors;
};

static void *limiter_worker(void *arg)
{
	struct lworker *w = arg;
	/* relaxed: a stop flag; nothing is published through it. */
	for (uint64_t i = 0; !atomic_load_explicit(&stop, memory_order_relaxed); i++) {
		if (i % 4 == 3) {
			struct sluice_limiter_request rq[4] = {
				{ "hot", 3, 1 }, { "hot", 3, 2 }, { "hot", 3, 0 }, { "hot", 3, 1 }
			};
			struct sluice_decision d[4];
			if (sluice_limiter_admit_batch(w->lim, rq, 4, 0, d) != SLUICE_OK) {
				w->errors++;
				continue;
			}
			for (int j = 0; j < 4; j++) {
				if (rq[j].cost == 0)
					continue;
				w->attempts += rq[j].cost;
				w->errors += d[j].degraded;
				if (d[j].allowed && !d[j].degraded)
					w->admitted += rq[j].cost;
			}
		} else {
			struct sluice_decision d;
			if (sluice_limiter_admit(w->lim, "hot", 3, 1, 0, &d) != SLUICE_OK) {
				w->errors++;
				continue;
			}
			w->attempts++;
			w->errors += d.degraded;
			w->admitted += d.allowed && !d.degraded;
		}
	}
	return NULL;
}

static void limiter_case(int port)
{
	struct sluice_redis_options ro = { .size = sizeof ro, .port = (uint32_t)port, .timeout_ns = 2 * SEC };
	struct sluice_redis_limiter_options o = { .size = sizeof o, .redis = &ro, .connections = 3 };
	struct sluice_limit l = { .kind = SLUICE_LIMIT_GCRA };
	sluice_rate_init(&l.rate, BURST * 10, 10 * 3600 * SEC, BURST); /* one unit per 7.2 s */
	struct sluice_limiter *lim = NULL;
	int rc = sluice_redis_limiter_create(&lim, &l, 1, NULL, &o);
	CHECK(rc == SLUICE_OK, "limiter create: %d", rc);
	if (rc != SLUICE_OK)
		return;
	struct lworker w[THREADS];
	uint64_t t0 = sluice_monotonic_ns();
	atomic_store_explicit(&stop, false, memory_order_relaxed); /* relaxed: before the threads start */
	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct lworker){ .lim = lim };
		pthread_create(&w[i].th, NULL, limiter_worker, &w[i]);
	}
	usleep((useconds_t)(run_ms * 1000));
	atomic_store_explicit(&stop, true, memory_order_relaxed); /* relaxed: joins order the rest */
	uint64_t admitted = 0, attempts = 0;
	int errors = 0;
	for (int i = 0; i < THREADS; i++) {
		pthread_join(w[i].th, NULL);
		admitted += w[i].admitted;
		attempts += w[i].attempts;
		errors += w[i].errors;
	}
	uint64_t elapsed = sluice_monotonic_ns() - t0;
	uint64_t bound = BURST + elapsed / (7200 * MS);
	CHECK(errors == 0, "%d errors or degraded answers", errors);
	CHECK(admitted <= bound, "admitted %llu > bound %llu", (unsigned long long)admitted,
	      (unsigned long long)bound);
	CHECK(attempts <= BURST || admitted >= BURST, "admitted %llu of %llu attempts, burst %d",
	      (unsigned long long)admitted, (unsigned long long)attempts, BURST);
	struct sluice_limiter_stats s = { .size = sizeof s };
	sluice_limiter_stats(lim, &s);
	CHECK(s.degraded == 0, "stats.degraded %llu", (unsigned long long)s.degraded);
	printf("limiter: %llu attempts, %llu admitted (bound %llu) in %llu ms\n",
	       (unsigned long long)attempts, (unsigned long long)admitted, (unsigned long long)bound,
	       (unsigned long long)(elapsed / MS));
	sluice_limiter_destroy(lim);
}

/* ---- 2: an engine under reloads ---- */

static const char policy_a[] = "policy \"a\"\n"
			       "scope workspace\n"
			       "scope token\n"
			       "limit ws per workspace rate 5000/10h burst 500\n"
			       "limit tok per token rate 100/1s\n";
static const char policy_b[] = "policy \"b\"\n"
			       "scope workspace\n"
			       "scope token\n"
			       "limit ws per workspace rate 5000/10h burst 500\n"
			       "limit tok per token rate 200/1s\n";

struct eworker {
	pthread_t th;
	struct sluice_engine *eng;
	int id;
	uint64_t admitted, attempts;
	int errors;
};

static void *engine_worker(void *arg)
{
	struct eworker *w = arg;
	char tok[16];
	snprintf(tok, sizeof tok, "tok%d", w->id);
	struct sluice_identity ids[2] = { { "ws1", 3 }, { tok, strlen(tok) } };
	/* relaxed: a stop flag (see limiter_worker). */
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		struct sluice_engine_request r = { "GET", 3, "/x", 2, ids, 2, SLUICE_POLICY_NO_TIER, 1, 0, NULL, 0, 0 };
		struct sluice_engine_decision d;
		int rc = sluice_engine_check(w->eng, &r, &d);
		w->errors += rc != SLUICE_OK || d.d.degraded;
		w->attempts++;
		w->admitted += rc == SLUICE_OK && d.d.allowed && !d.d.degraded;
	}
	return NULL;
}

static void engine_case(int port)
{
	struct sluice_redis_options ro = { .size = sizeof ro, .port = (uint32_t)port, .timeout_ns = 2 * SEC };
	struct sluice_redis_limiter_options o = { .size = sizeof o, .redis = &ro, .connections = 2 };
	struct sluice_policy *p = NULL;
	struct sluice_engine *eng = NULL;
	sluice_policy_parse(policy_a, strlen(policy_a), NULL, &p, NULL);
	int rc = sluice_redis_engine_create(&eng, p, NULL, &o);
	CHECK(rc == SLUICE_OK, "engine create: %d", rc);
	if (rc != SLUICE_OK) {
		sluice_policy_destroy(p);
		return;
	}
	struct eworker w[THREADS];
	uint64_t t0 = sluice_monotonic_ns();
	atomic_store_explicit(&stop, false, memory_order_relaxed); /* relaxed: before the threads start */
	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct eworker){ .eng = eng, .id = i };
		pthread_create(&w[i].th, NULL, engine_worker, &w[i]);
	}
	int reloads = 0;
	while (sluice_monotonic_ns() - t0 < run_ms * MS) {
		const char *t = reloads % 2 == 0 ? policy_b : policy_a;
		struct sluice_policy *np = NULL;
		sluice_policy_parse(t, strlen(t), NULL, &np, NULL);
		rc = sluice_engine_reload(eng, np);
		CHECK(rc == SLUICE_OK, "reload: %d", rc);
		if (rc != SLUICE_OK)
			sluice_policy_destroy(np);
		reloads++;
		usleep(20000);
	}
	atomic_store_explicit(&stop, true, memory_order_relaxed); /* relaxed: joins order the rest */
	uint64_t admitted = 0, attempts = 0;
	int errors = 0;
	for (int i = 0; i < THREADS; i++) {
		pthread_join(w[i].th, NULL);
		admitted += w[i].admitted;
		attempts += w[i].attempts;
		errors += w[i].errors;
	}
	uint64_t elapsed = sluice_monotonic_ns() - t0;
	uint64_t bound = BURST + elapsed / (7200 * MS);
	CHECK(errors == 0, "%d failed checks", errors);
	CHECK(admitted <= bound, "workspace admitted %llu > bound %llu across %d reloads",
	      (unsigned long long)admitted, (unsigned long long)bound, reloads);
	CHECK(attempts <= BURST * 3 || admitted >= BURST, "admitted %llu of %llu",
	      (unsigned long long)admitted, (unsigned long long)attempts);
	CHECK(sluice_engine_generation(eng) == (uint64_t)reloads + 1, "generation");
	printf("engine: %llu checks, %llu admitted (bound %llu), %d reloads\n",
	       (unsigned long long)attempts, (unsigned long long)admitted, (unsigned long long)bound,
	       reloads);
	sluice_engine_destroy(eng);
}

/* ---- 3: concurrency slots ---- */

#define SLOTS 4
static _Atomic int in_flight;
static _Atomic int most_in_flight;

struct sworker {
	pthread_t th;
	struct sluice_limiter *lim;
	uint64_t acquired, refused;
	int errors;
};

static void *slot_worker(void *arg)
{
	struct sworker *w = arg;
	/* relaxed: a stop flag (see limiter_worker). */
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		struct sluice_decision d;
		sluice_slot_handle h;
		if (sluice_limiter_acquire(w->lim, "slot", 4, 1, 0, &d, &h) != SLUICE_OK || d.degraded) {
			w->errors++;
			continue;
		}
		if (!d.allowed) {
			w->refused++;
			continue;
		}
		w->acquired++;
		/* relaxed: a counter checked against the bound; the server's
		 * decisions order the slots, not this counter. */
		int now_in = atomic_fetch_add_explicit(&in_flight, 1, memory_order_relaxed) + 1; /* relaxed: why above */
		int most = atomic_load_explicit(&most_in_flight, memory_order_relaxed); /* relaxed: why above */
		while (now_in > most &&
		       /* relaxed both: a maximum of a statistic, no publication. */
		       !atomic_compare_exchange_weak_explicit(&most_in_flight, &most, now_in, memory_order_relaxed,
							      memory_order_relaxed))
			;
		usleep(200);
		atomic_fetch_sub_explicit(&in_flight, 1, memory_order_relaxed); /* relaxed: before the release, so the count never exceeds the server's */
		w->errors += sluice_limiter_release(w->lim, "slot", 4, h) != SLUICE_OK;
	}
	return NULL;
}

static void slots_case(int port)
{
	struct sluice_redis_options ro = { .size = sizeof ro, .port = (uint32_t)port, .timeout_ns = 2 * SEC };
	struct sluice_redis_limiter_options o = { .size = sizeof o, .redis = &ro, .connections = 2 };
	struct sluice_limit l[2] = { { .kind = SLUICE_LIMIT_GCRA }, { .kind = SLUICE_LIMIT_SLOTS } };
	sluice_rate_init(&l[0].rate, 1000000, SEC, 1000000);
	sluice_slots_config_init(&l[1].slots, SLOTS, 0, SEC);
	struct sluice_limiter *lim = NULL;
	int rc = sluice_redis_limiter_create(&lim, l, 2, NULL, &o);
	CHECK(rc == SLUICE_OK, "slots limiter create: %d", rc);
	if (rc != SLUICE_OK)
		return;
	struct sworker w[THREADS * 2];
	atomic_store_explicit(&stop, false, memory_order_relaxed); /* relaxed: before the threads start */
	for (int i = 0; i < THREADS * 2; i++) {
		w[i] = (struct sworker){ .lim = lim };
		pthread_create(&w[i].th, NULL, slot_worker, &w[i]);
	}
	usleep((useconds_t)(run_ms * 1000));
	atomic_store_explicit(&stop, true, memory_order_relaxed); /* relaxed: joins order the rest */
	uint64_t acquired = 0, refused = 0;
	int errors = 0;
	for (int i = 0; i < THREADS * 2; i++) {
		pthread_join(w[i].th, NULL);
		acquired += w[i].acquired;
		refused += w[i].refused;
		errors += w[i].errors;
	}
	int most = atomic_load_explicit(&most_in_flight, memory_order_relaxed); /* relaxed: after the joins */
	CHECK(errors == 0, "%d errors", errors);
	CHECK(most <= SLOTS, "%d in flight > %d slots", most, SLOTS);
	CHECK(acquired > 0 && refused > 0, "acquired %llu refused %llu", (unsigned long long)acquired,
	      (unsigned long long)refused);
	struct sluice_decision d;
	sluice_limiter_peek(lim, "slot", 4, 0, &d);
	printf("slots: %llu acquired, %llu refused, most in flight %d of %d; all back: %s\n",
	       (unsigned long long)acquired, (unsigned long long)refused, most, SLOTS,
	       d.remaining == SLOTS ? "yes" : "no");
	CHECK(d.remaining == SLOTS, "slots left %llu after every release", (unsigned long long)d.remaining);
	sluice_limiter_destroy(lim);
}

int main(void)
{
	const char *ms = getenv("SLUICE_STRESS_MS");
	if (ms != NULL)
		run_ms = strtoull(ms, NULL, 10);
	struct sluice_redis *probe = NULL;
	struct sluice_redis_options po = { .size = sizeof po, .port = 1 };
	if (sluice_redis_create(&probe, &po) == SLUICE_EUNSUPPORTED) {
		/* The options compile; create says the build cannot do it. */
		struct sluice_redis_limiter_options lo = { .size = sizeof lo, .redis = &po };
		struct sluice_limit l = { .kind = SLUICE_LIMIT_GCRA };
		sluice_rate_init(&l.rate, 10, SEC, 10);
		struct sluice_limiter *lim = (struct sluice_limiter *)&lim;
		int rc = sluice_redis_limiter_create(&lim, &l, 1, NULL, &lo);
		CHECK(rc == SLUICE_EUNSUPPORTED && lim == NULL, "limiter create: %d", rc);
				struct sluice_policy *p = NULL;
		struct sluice_engine *eng = NULL;
		sluice_policy_parse(policy_a, strlen(policy_a), NULL, &p, NULL);
		rc = sluice_redis_engine_create(&eng, p, NULL, &lo);
		CHECK(rc == SLUICE_EUNSUPPORTED && eng == NULL, "engine create: %d", rc);
		sluice_policy_destroy(p);
		printf("built without hiredis: create answers SLUICE_EUNSUPPORTED\n%d passed, %d failed\n",
		       failures == 0, failures != 0);
		return failures == 0 ? 0 : 1;
	}
	sluice_redis_destroy(probe);
	struct redis_harness_server srv;
	const char *why = redis_harness_start(&srv, 0, 0, NULL);
	if (why != NULL) {
		fprintf(stderr, "%s\n", why);
		printf("0 passed, 1 failed\n");
		return 1;
	}
	int port = srv.port;
	int before = failures;
	limiter_case(port);
	int passed = failures == before;
	before = failures;
	engine_case(port);
	passed += failures == before;
	before = failures;
	slots_case(port);
	passed += failures == before;
	redis_harness_stop(&srv);
	printf("%d passed, %d failed\n", passed, 3 - passed);
	return passed == 3 ? 0 : 1;
}
