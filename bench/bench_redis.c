/*
 * bench_redis.c - the Redis backend (include/sluice/redis.h) against a
 * naive fixed-window limiter (INCR, plus EXPIRE on a window's first hit) on
 * the same server, in the same run.
 *
 *   BM_redis_admit                 one decision per call, one key of 1000,
 *                                  two limits (10/s + 600/min), server time
 *   BM_redis_admit_scopes3         three scopes per request (workspace,
 *                                  token, route; 4 limits), one round trip
 *   BM_redis_admit_batch/N         admit_batch() of N requests (pipelined)
 *   BM_redis_lease/L               one hot key (one limit far above the
 *                                  offered rate), local lease of L units;
 *                                  L = 0: no lease, a round trip per call
 *   BM_redis_naive_incr_expire     baseline: INCR then EXPIRE when the
 *                                  window's counter is new, blocking calls
 *   BM_redis_naive_pipelined/N     baseline: N INCRs pipelined (EXPIREs of
 *                                  new windows appended to the next batch)
 *
 * Figures are per decision (wall time); the counter rt_per_decision is the
 * number of request/reply exchanges per decision. Needs redis-server: run
 * with SLUICE_BENCH_REDIS=1 and one is started on a free loopback port for
 * the run (killed at exit); otherwise these benchmarks report an error and
 * the rest of the suite runs as usual.
 */
#include <sluice.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_server.h"
#include "shim.h"

#define SEC 1000000000ull
#define NKEYS 1000

#ifdef SLUICE_WITH_REDIS


#include <hiredis/hiredis.h>

static int server_port;

/* The run's redis-server (bench/bench_redis_server.c). NULL, or why not. */
static const char *server_ensure(void)
{
	return sbench_redis_server(&server_port);
}

static char keys[NKEYS][16];

/* The run's server, a handle on it, and the keys named. */
static struct sluice_redis *open_backend(sbench_state *st)
{
	for (int i = 0; i < NKEYS; i++)
		snprintf(keys[i], sizeof keys[i], "k%05d", i);
	return sbench_redis_open(st);
}

static void BM_redis_admit(sbench_state *st)
{
	struct sluice_redis *r = open_backend(st);
	if (r == NULL)
		return;
	struct sluice_limit l[2] = { sbench_gcra(10, SEC, 10), sbench_gcra(600, 60 * SEC, 600) };
	uint64_t t0 = sbench_redis_trips(r), i = 0;
	for (uint64_t n; (n = sbench_batch(st)) != 0;) {
		for (uint64_t j = 0; j < n; j++, i++) {
			struct sluice_decision d;
			const char *k = keys[i % NKEYS];
			sluice_redis_admit(r, k, strlen(k), l, 2, 1, 0, &d);
			sbench_keep(d.allowed);
		}
	}
	sbench_redis_finish(st, r, t0, i);
}
SBENCH_REGISTER(BM_redis_admit)
{
	sbench_real_time(b);
	sbench_baseline(b, "BM_redis_naive_incr_expire");
}

static void BM_redis_admit_scopes3(sbench_state *st)
{
	struct sluice_redis *r = open_backend(st);
	if (r == NULL)
		return;
	struct sluice_limit ws[2] = { sbench_gcra(300, 60 * SEC, 300), sbench_gcra(100000, 86400 * SEC, 100000) };
	struct sluice_limit tok = sbench_gcra(10, SEC, 10), route = sbench_gcra(50, SEC, 50);
	uint64_t t0 = sbench_redis_trips(r), i = 0;
	for (uint64_t n; (n = sbench_batch(st)) != 0;) {
		for (uint64_t j = 0; j < n; j++, i++) {
			const char *k = keys[i % NKEYS];
			char tk[24], rk[24];
			snprintf(tk, sizeof tk, "%s:t%llu", k, (unsigned long long)(i % 7));
			snprintf(rk, sizeof rk, "%s:r%llu", k, (unsigned long long)(i % 3));
			struct sluice_redis_scope sc[3] = { { k, strlen(k), ws, 2 },
							    { tk, strlen(tk), &tok, 1 },
							    { rk, strlen(rk), &route, 1 } };
			struct sluice_decision d;
			sluice_redis_admit_scopes(r, sc, 3, 1, 0, &d);
			sbench_keep(d.allowed);
		}
	}
	sbench_redis_finish(st, r, t0, i);
}
SBENCH_REGISTER(BM_redis_admit_scopes3)
{
	sbench_real_time(b);
	sbench_baseline(b, "BM_redis_naive_incr_expire");
}

static void BM_redis_admit_batch(sbench_state *st)
{
	struct sluice_redis *r = open_backend(st);
	if (r == NULL)
		return;
	enum { MAXN = 256 };
	size_t nb = (size_t)sbench_range(st, 0);
	struct sluice_limit l[2] = { sbench_gcra(10, SEC, 10), sbench_gcra(600, 60 * SEC, 600) };
	struct sluice_redis_scope sc[MAXN];
	struct sluice_redis_request reqs[MAXN];
	struct sluice_decision out[MAXN];
	uint64_t t0 = sbench_redis_trips(r), i = 0;
	for (uint64_t n; (n = sbench_batch(st)) != 0;) {
		/* n decisions in batches of nb (the last one may be shorter). */
		for (uint64_t done = 0; done < n;) {
			size_t m = n - done < nb ? (size_t)(n - done) : nb;
			for (size_t q = 0; q < m; q++, i++) {
				const char *k = keys[i % NKEYS];
				sc[q] = (struct sluice_redis_scope){ k, strlen(k), l, 2 };
				reqs[q] = (struct sluice_redis_request){ &sc[q], 1, 1 };
			}
			sluice_redis_admit_batch(r, reqs, m, 0, out);
			sbench_keep(out[0].allowed);
			done += m;
		}
	}
	sbench_redis_finish(st, r, t0, i);
}
SBENCH_REGISTER(BM_redis_admit_batch)
{
	sbench_arg(b, 16);
	sbench_arg(b, 64);
	sbench_real_time(b);
	sbench_baseline(b, "BM_redis_naive_pipelined");
}

static void BM_redis_lease(sbench_state *st)
{
	const char *why = server_ensure();
	if (why != NULL) {
		sbench_error(st, why);
		return;
	}
	struct sluice_redis_options o;
	memset(&o, 0, sizeof o);
	o.size = sizeof o;
	o.port = (uint32_t)server_port;
	o.timeout_ns = SEC;
	o.lease_units = (uint32_t)sbench_range(st, 0);
	struct sluice_redis *r = NULL;
	if (sluice_redis_create(&r, &o) != SLUICE_OK || r == NULL) {
		sbench_error(st, "sluice_redis_create failed");
		return;
	}
	/* 10 M/s, burst 10000: never the limit here, so every decision admits
	 * and the figure is the cost of a decision, not of a denial. */
	struct sluice_limit l = sbench_gcra(10000000, SEC, 10000);
	uint64_t t0 = sbench_redis_trips(r), i = 0;
	for (uint64_t n; (n = sbench_batch(st)) != 0;) {
		for (uint64_t j = 0; j < n; j++, i++) {
			struct sluice_decision d;
			sluice_redis_admit(r, "hot", 3, &l, 1, 1, 0, &d);
			sbench_keep(d.allowed);
		}
	}
	struct sluice_redis_stats s;
	memset(&s, 0, sizeof s);
	s.size = sizeof s;
	sluice_redis_stats(r, &s);
	sbench_counter(st, "leased_share", i ? (double)s.leased / (double)i : 0, 0);
	sbench_redis_finish(st, r, t0, i);
}
SBENCH_REGISTER(BM_redis_lease)
{
	sbench_arg(b, 0);
	sbench_arg(b, 8);
	sbench_arg(b, 32);
	sbench_real_time(b);
	sbench_baseline(b, "BM_redis_naive_incr_expire");
}

static redisContext *open_raw(sbench_state *st)
{
	const char *why = server_ensure();
	if (why != NULL) {
		sbench_error(st, why);
		return NULL;
	}
	for (int i = 0; i < NKEYS; i++)
		snprintf(keys[i], sizeof keys[i], "k%05d", i);
	struct timeval tv = { 1, 0 };
	redisContext *c = redisConnectWithTimeout("127.0.0.1", server_port, tv);
	if (c == NULL || c->err != 0) {
		sbench_error(st, "connect failed");
		if (c != NULL)
			redisFree(c);
		return NULL;
	}
	return c;
}

static void BM_redis_naive_incr_expire(sbench_state *st)
{
	redisContext *c = open_raw(st);
	if (c == NULL)
		return;
	uint64_t i = 0, rt = 0, window = sluice_realtime_ns() / (60 * SEC);
	for (uint64_t n; (n = sbench_batch(st)) != 0;) {
		for (uint64_t j = 0; j < n; j++, i++) {
			redisReply *rep = redisCommand(c, "INCR naive:%s:%llu", keys[i % NKEYS],
						       (unsigned long long)window);
			rt++;
			bool first = rep != NULL && rep->type == REDIS_REPLY_INTEGER && rep->integer == 1;
			bool allowed = rep != NULL && rep->type == REDIS_REPLY_INTEGER && rep->integer <= 600;
			if (rep != NULL)
				freeReplyObject(rep);
			if (first) {
				rep = redisCommand(c, "EXPIRE naive:%s:%llu 60", keys[i % NKEYS],
						   (unsigned long long)window);
				rt++;
				if (rep != NULL)
					freeReplyObject(rep);
			}
			sbench_keep(allowed);
		}
	}
	sbench_items(st, (int64_t)i);
	sbench_counter(st, "rt_per_decision", i ? (double)rt / (double)i : 0, 0);
	redisFree(c);
}
SBENCH_REGISTER(BM_redis_naive_incr_expire)
{
	sbench_real_time(b);
}

static void BM_redis_naive_pipelined(sbench_state *st)
{
	redisContext *c = open_raw(st);
	if (c == NULL)
		return;
	size_t nb = (size_t)sbench_range(st, 0);
	uint64_t i = 0, rt = 0, window = sluice_realtime_ns() / (60 * SEC);
	for (uint64_t n; (n = sbench_batch(st)) != 0;) {
		for (uint64_t done = 0; done < n;) {
			size_t m = n - done < nb ? (size_t)(n - done) : nb;
			for (size_t q = 0; q < m; q++)
				redisAppendCommand(c, "INCR naive:%s:%llu", keys[(i + q) % NKEYS],
						   (unsigned long long)window);
			size_t expires = 0;
			rt++;
			for (size_t q = 0; q < m; q++) {
				redisReply *rep = NULL;
				if (redisGetReply(c, (void **)&rep) != REDIS_OK || rep == NULL)
					break;
				if (rep->type == REDIS_REPLY_INTEGER && rep->integer == 1) {
					redisAppendCommand(c, "EXPIRE naive:%s:%llu 60",
							   keys[(i + q) % NKEYS], (unsigned long long)window);
					expires++;
				}
				sbench_keep(rep->integer <= 600);
				freeReplyObject(rep);
			}
			if (expires > 0)
				rt++;
			for (size_t q = 0; q < expires; q++) {
				redisReply *rep = NULL;
				if (redisGetReply(c, (void **)&rep) == REDIS_OK && rep != NULL)
					freeReplyObject(rep);
			}
			i += m;
			done += m;
		}
	}
	sbench_items(st, (int64_t)i);
	sbench_counter(st, "rt_per_decision", i ? (double)rt / (double)i : 0, 0);
	redisFree(c);
}
SBENCH_REGISTER(BM_redis_naive_pipelined)
{
	sbench_arg(b, 16);
	sbench_arg(b, 64);
	sbench_real_time(b);
}

#else /* !SLUICE_WITH_REDIS */

static void BM_redis_admit(sbench_state *st)
{
	sbench_error(st, "sluice was built without the Redis backend (SLUICE_WITH_REDIS=OFF)");
}
SBENCH_REGISTER(BM_redis_admit)
{
	(void)b;
}

#endif
