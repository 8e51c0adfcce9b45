/*
 * bench_redis_server.c - one redis-server for the benchmark run, shared by
 * bench_redis*.c, and a three-node Redis Cluster for the cross-slot
 * benchmarks (bench/redis_server.h), both started by the harness the Redis
 * tests use (tests/redis_harness.c, built into sluice_bench with the Redis
 * backend). It has no benchmarks of its own.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <sluice.h>

#include "redis_server.h"
#include "shim.h"

/* A handle (1 s timeout) on 127.0.0.1:port, or NULL after sbench_error()
 * with `why` when there is no server. */
static struct sluice_redis *open_handle(sbench_state *st, const char *why, int port, uint32_t flags)
{
	if (why != NULL) {
		sbench_error(st, why);
		return NULL;
	}
	struct sluice_redis_options o;
	memset(&o, 0, sizeof o);
	o.size = sizeof o;
	o.port = (uint32_t)port;
	o.flags = flags;
	o.timeout_ns = SLUICE_NS_PER_SEC;
	struct sluice_redis *r = NULL;
	if (sluice_redis_create(&r, &o) != SLUICE_OK || r == NULL) {
		sbench_error(st, "sluice_redis_create failed");
		return NULL;
	}
	return r;
}

#ifdef SLUICE_WITH_REDIS
#include "redis_harness.h"

static struct redis_harness_server server;
static struct redis_harness_cluster cluster;

static void server_kill(void)
{
	redis_harness_stop(&server);
}

static void cluster_kill(void)
{
	redis_harness_cluster_stop(&cluster);
}

/* NULL if this run may start servers, or why not. */
static const char *servers_allowed(void)
{
	const char *on = getenv("SLUICE_BENCH_REDIS");
	if (on == NULL || strcmp(on, "1") != 0)
		return "needs redis-server: run with SLUICE_BENCH_REDIS=1";
	return NULL;
}

const char *sbench_redis_server(int *port)
{
	static bool registered;
	const char *why = servers_allowed();
	if (why != NULL)
		return why;
	if (server.pid <= 0) {
		if (!registered)
			atexit(server_kill);
		registered = true;
		if ((why = redis_harness_start(&server, 0, 0, NULL)) != NULL)
			return why;
	}
	*port = server.port;
	return NULL;
}

/* ---- the three-node cluster ---- */

const char *sbench_redis_cluster(int ports[3])
{
	static bool registered;
	const char *why = servers_allowed();
	if (why != NULL)
		return why;
	if (cluster.node[0].pid <= 0) {
		if (!registered)
			atexit(cluster_kill);
		registered = true;
		if ((why = redis_harness_cluster_start(&cluster)) != NULL)
			return why;
	}
	for (int i = 0; i < 3; i++)
		ports[i] = cluster.node[i].port;
	return NULL;
}

int sbench_redis_cluster_node(uint32_t slot)
{
	return redis_harness_cluster_owner((long)slot);
}

long sbench_redis_cluster_keyslot(const char *key)
{
	int ports[3];
	if (sbench_redis_cluster(ports) != NULL)
		return -1;
	return redis_harness_keyslot(ports[0], key);
}

struct sluice_redis *sbench_redis_cluster_open(sbench_state *st)
{
	int ports[3] = { 0, 0, 0 };
	const char *why = sbench_redis_cluster(ports);
	return open_handle(st, why, ports[0], SLUICE_REDIS_CLUSTER);
}

#else /* !SLUICE_WITH_REDIS: no harness, no servers */

const char *sbench_redis_server(int *port)
{
	(void)port;
	return "sluice was built without the Redis backend (SLUICE_WITH_REDIS=OFF)";
}

#endif

struct sluice_redis *sbench_redis_open(sbench_state *st)
{
	int port = 0;
	const char *why = sbench_redis_server(&port);
	return open_handle(st, why, port, 0);
}

struct sluice_limit sbench_gcra(uint64_t limit, uint64_t period_ns, uint64_t burst)
{
	struct sluice_limit l;
	memset(&l, 0, sizeof l);
	l.kind = SLUICE_LIMIT_GCRA;
	sluice_rate_init(&l.rate, limit, period_ns, burst);
	return l;
}

static struct sluice_redis_stats stats_of(struct sluice_redis *r)
{
	struct sluice_redis_stats s;
	memset(&s, 0, sizeof s);
	s.size = sizeof s;
	sluice_redis_stats(r, &s);
	return s;
}

uint64_t sbench_redis_trips(struct sluice_redis *r)
{
	return stats_of(r).round_trips;
}

void sbench_redis_finish(sbench_state *st, struct sluice_redis *r, uint64_t trips0,
			 uint64_t decisions)
{
	struct sluice_redis_stats s = stats_of(r);
	if (s.degraded != 0)
		sbench_error(st, "degraded answers: the server failed");
	sbench_items(st, (int64_t)decisions);
	sbench_counter(st, "rt_per_decision",
		       decisions ? (double)(s.round_trips - trips0) / (double)decisions : 0, 0);
	sluice_redis_destroy(r);
}
