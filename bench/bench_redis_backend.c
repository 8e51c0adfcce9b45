/*
 * bench_redis_backend.c - the limiter and the engine on Redis
 * (sluice_redis_limiter_create(), sluice_redis_engine_create()) against the
 * raw backend handle they are built on, same server, same run.
 *
 *   BM_redis_backend_direct            sluice_redis_admit() on one handle:
 *                                      one key of 1000, two limits
 *                                      (10/s + 600/min), server time
 *   BM_redis_backend_limiter           the same through sluice_limiter_admit()
 *                                      of a Redis-backed limiter (pool of 1:
 *                                      dispatch + pool lock + counters)
 *   BM_redis_backend_limiter_pool/T    T threads on a pool of 2 connections
 *                                      (real time; items/s is the fleet view)
 *   BM_redis_backend_direct_scopes2    sluice_redis_admit_scopes() of two
 *                                      scopes (token 120/min, workspace
 *                                      300/min), 1000 tokens in 100 workspaces
 *   BM_redis_backend_engine_check      the same request as a seed 002
 *                                      engine check (rate limits only):
 *                                      route match, keys, one round trip
 *
 * rt_per_decision counts request/reply exchanges per decision (the
 * backend's round_trips). Needs redis-server: run with SLUICE_BENCH_REDIS=1
 * and one is started on a free loopback port for the run (killed at exit);
 * otherwise these benchmarks report an error and the rest runs as usual.
 */
#include <sluice.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis/redis_backend_internal.h"
#include "redis_server.h"
#include "shim.h"

#define SEC 1000000000ull
#define NKEYS 1000

static int server_port;

/* The run's redis-server (bench/bench_redis_server.c). NULL, or why not. */
static const char *server_ensure(void)
{
	return sbench_redis_server(&server_port);
}

static struct sluice_redis_options ropts(void)
{
	struct sluice_redis_options o;
	memset(&o, 0, sizeof o);
	o.size = sizeof o;
	o.port = (uint32_t)server_port;
	o.timeout_ns = SEC;
	return o;
}

static char keys[NKEYS][16];
static char workspaces[NKEYS / 10][16];

static void keys_init(void)
{
	for (int i = 0; i < NKEYS; i++)
		snprintf(keys[i], sizeof keys[i], "k%05d", i);
	for (int i = 0; i < NKEYS / 10; i++)
		snprintf(workspaces[i], sizeof workspaces[i], "w%04d", i);
}

static void report(sbench_state *st, const struct sluice_redis_stats *s0,
		   const struct sluice_redis_stats *s1, uint64_t decisions)
{
	if (s1->degraded != s0->degraded)
		sbench_error(st, "degraded answers: the server failed");
	sbench_items(st, (int64_t)decisions);
	sbench_counter(st, "rt_per_decision",
		       decisions ? (double)(s1->round_trips - s0->round_trips) / (double)decisions : 0, 0);
}

static void BM_redis_backend_direct(sbench_state *st)
{
	struct sluice_redis *r = sbench_redis_open(st);
	if (r == NULL)
		return;
	keys_init();
	struct sluice_limit l[2] = { sbench_gcra(10, SEC, 10), sbench_gcra(600, 60 * SEC, 600) };
	uint64_t trips0 = sbench_redis_trips(r);
	uint64_t i = 0;
	for (uint64_t n; (n = sbench_batch(st)) != 0;)
		for (uint64_t j = 0; j < n; j++, i++) {
			struct sluice_decision d;
			const char *k = keys[i % NKEYS];
			sluice_redis_admit(r, k, strlen(k), l, 2, 1, 0, &d);
			sbench_keep(d.allowed);
		}
	sbench_redis_finish(st, r, trips0, i);
}
SBENCH_REGISTER(BM_redis_backend_direct)
{
	(void)b;
}

static struct sluice_limiter *shared_lim;
static struct sluice_redis_stats shared_s0;

static void BM_redis_backend_limiter_run(sbench_state *st, uint32_t conns)
{
	bool lead = sbench_thread_index(st) == 0;
	if (lead) {
		const char *why = server_ensure();
		if (why != NULL) {
			sbench_error(st, why);
			return;
		}
		keys_init();
		struct sluice_redis_options ro = ropts();
		struct sluice_redis_limiter_options o = { .size = sizeof o, .redis = &ro, .connections = conns };
		struct sluice_limit l[2] = { sbench_gcra(10, SEC, 10), sbench_gcra(600, 60 * SEC, 600) };
		shared_lim = NULL;
		if (sluice_redis_limiter_create(&shared_lim, l, 2, NULL, &o) != SLUICE_OK) {
			sbench_error(st, "sluice_limiter_create on Redis failed");
			return;
		}
		/* Before the first batch (a barrier): no thread has started. */
		shared_s0 = (struct sluice_redis_stats){ .size = sizeof shared_s0 };
		sluice__limiter_redis_stats(shared_lim, &shared_s0);
	}
	struct sluice_redis_stats s1 = { .size = sizeof s1 };
	uint64_t i = (uint64_t)sbench_thread_index(st) * 7919, done = 0;
	for (uint64_t n; (n = sbench_batch(st)) != 0;) {
		if (shared_lim == NULL)
			return; /* thread 0 failed to set up */
		for (uint64_t j = 0; j < n; j++, i++, done++) {
			struct sluice_decision d;
			const char *k = keys[i % NKEYS];
			sluice_limiter_admit(shared_lim, k, strlen(k), 1, 0, &d);
			sbench_keep(d.allowed);
		}
	}
	/* Every thread ran the same iteration count; the loop's end is a
	 * barrier, so thread 0 reads the totals and tears down. */
	if (lead && shared_lim != NULL) {
		sluice__limiter_redis_stats(shared_lim, &s1);
		uint64_t total = done * (uint64_t)sbench_thread_count(st);
		if (s1.degraded != shared_s0.degraded)
			sbench_error(st, "degraded answers: the server failed");
		sbench_counter(st, "rt_per_decision",
			       total ? (double)(s1.round_trips - shared_s0.round_trips) / (double)total : 0, 0);
		sluice_limiter_destroy(shared_lim);
		shared_lim = NULL;
	}
	sbench_items(st, (int64_t)done);
}

static void BM_redis_backend_limiter(sbench_state *st)
{
	BM_redis_backend_limiter_run(st, 1);
}
SBENCH_REGISTER(BM_redis_backend_limiter)
{
	sbench_baseline(b, "BM_redis_backend_direct");
}

static void BM_redis_backend_limiter_pool(sbench_state *st)
{
	BM_redis_backend_limiter_run(st, 2);
}
SBENCH_REGISTER(BM_redis_backend_limiter_pool)
{
	sbench_thread_range(b, 1, sbench_max_threads(2));
	sbench_real_time(b);
}

static void BM_redis_backend_direct_scopes2(sbench_state *st)
{
	struct sluice_redis *r = sbench_redis_open(st);
	if (r == NULL)
		return;
	keys_init();
	struct sluice_limit tok = sbench_gcra(120, 60 * SEC, 120), ws = sbench_gcra(300, 60 * SEC, 300);
	uint64_t trips0 = sbench_redis_trips(r);
	uint64_t i = 0;
	for (uint64_t n; (n = sbench_batch(st)) != 0;)
		for (uint64_t j = 0; j < n; j++, i++) {
			char kt[64], kw[64];
			int lt = snprintf(kt, sizeof kt, "{token=%s}:token=%s:L=token_minute", keys[i % NKEYS],
					  keys[i % NKEYS]);
			int lw = snprintf(kw, sizeof kw, "{workspace=%s}:workspace=%s:L=ws_minute",
					  workspaces[i % (NKEYS / 10)], workspaces[i % (NKEYS / 10)]);
			struct sluice_redis_scope sc[2] = { { kt, (size_t)lt, &tok, 1 }, { kw, (size_t)lw, &ws, 1 } };
			struct sluice_decision d;
			sluice_redis_admit_scopes(r, sc, 2, 1, 0, &d);
			sbench_keep(d.allowed);
		}
	sbench_redis_finish(st, r, trips0, i);
}
SBENCH_REGISTER(BM_redis_backend_direct_scopes2)
{
	(void)b;
}

static const char seed002_rates[] = "policy \"seed002-rates\"\n"
				    "scope token\n"
				    "scope workspace\n"
				    "limit token_minute per token rate 120/1m\n"
				    "limit ws_minute per workspace rate 300/1m\n";

static void BM_redis_backend_engine_check(sbench_state *st)
{
	const char *why = server_ensure();
	if (why != NULL) {
		sbench_error(st, why);
		return;
	}
	keys_init();
	struct sluice_redis_options ro = ropts();
	struct sluice_redis_limiter_options o = { .size = sizeof o, .redis = &ro, .connections = 1 };
	struct sluice_policy *p = NULL;
	struct sluice_engine *e = NULL;
	if (sluice_policy_parse(seed002_rates, strlen(seed002_rates), NULL, &p, NULL) != SLUICE_OK ||
	    sluice_redis_engine_create(&e, p, NULL, &o) != SLUICE_OK) {
		sluice_policy_destroy(p);
		sbench_error(st, "engine on Redis: create failed");
		return;
	}
	struct sluice_redis_stats s0 = { .size = sizeof s0 }, s1 = { .size = sizeof s1 };
	sluice__engine_redis_stats(e, &s0);
	uint64_t i = 0;
	for (uint64_t n; (n = sbench_batch(st)) != 0;)
		for (uint64_t j = 0; j < n; j++, i++) {
			const char *t = keys[i % NKEYS], *w = workspaces[i % (NKEYS / 10)];
			struct sluice_identity ids[2] = { { t, strlen(t) }, { w, strlen(w) } };
			struct sluice_engine_request r = { "GET", 3, "/v1/things", 10, ids, 2,
							   SLUICE_POLICY_NO_TIER, 1, 0, NULL, 0, 0 };
			struct sluice_engine_decision d;
			sluice_engine_check(e, &r, &d);
			sbench_keep(d.d.allowed);
		}
	sluice__engine_redis_stats(e, &s1);
	report(st, &s0, &s1, i);
	sluice_engine_destroy(e);
}
SBENCH_REGISTER(BM_redis_backend_engine_check)
{
	sbench_baseline(b, "BM_redis_backend_direct_scopes2");
}
