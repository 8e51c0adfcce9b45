/*
 * redis_server.h - the benchmark run's redis-server and three-node Redis
 * Cluster (bench/bench_redis_server.c, on tests/redis_harness.h). Built
 * without the Redis backend, sbench_redis_server() says so and the cluster
 * functions are not defined (their callers are compiled out too).
 */
#ifndef SLUICE_BENCH_REDIS_SERVER_H
#define SLUICE_BENCH_REDIS_SERVER_H

#include <stdint.h>

/*
 * Start one redis-server for the whole benchmark run on a free loopback
 * port, the first time a benchmark asks (later calls reuse it), and kill it
 * at exit. Only with SLUICE_BENCH_REDIS=1 in the environment. Returns NULL
 * and sets *port, or a message saying why there is no server (to pass to
 * sbench_error()).
 */
const char *sbench_redis_server(int *port);

struct sluice_redis;
struct sluice_limit;
typedef struct sbench_state sbench_state;

/* A backend handle (1 s timeout) on the run's server; NULL after
 * sbench_error() if there is none. */
struct sluice_redis *sbench_redis_open(sbench_state *st);

/*
 * Start a three-node Redis Cluster on free loopback ports for the whole run,
 * the first time a benchmark asks (later calls reuse it), and kill it (and
 * remove its nodes files) at exit. Slots 0-5460, 5461-10922 and
 * 10923-16383 go to nodes 0, 1 and 2 (tests/redis_harness.h). Only with
 * SLUICE_BENCH_REDIS=1. Returns NULL and sets ports[0..2], or a message
 * saying why there is no cluster.
 */
const char *sbench_redis_cluster(int ports[3]);

/* The node (0..2) that owns a hash slot in that cluster. */
int sbench_redis_cluster_node(uint32_t slot);

/* The hash slot of a Redis key (the backend's prefix included), as the
 * cluster computes it (CLUSTER KEYSLOT, one connection per call: for
 * setup, not for timed loops); -1 without a cluster. */
long sbench_redis_cluster_keyslot(const char *key);

/* A backend handle (SLUICE_REDIS_CLUSTER, node 0 as the seed, 1 s
 * timeout) on the run's cluster; NULL after sbench_error() if there is
 * none. */
struct sluice_redis *sbench_redis_cluster_open(sbench_state *st);

/* A GCRA limit of `limit` per period_ns with bursts of `burst` (the limit
 * builder every Redis benchmark uses; rate errors are not checked). */
struct sluice_limit sbench_gcra(uint64_t limit, uint64_t period_ns, uint64_t burst);

/* The handle's round trips so far. */
uint64_t sbench_redis_trips(struct sluice_redis *r);

/* End a Redis benchmark: `decisions` items, the round trips per decision
 * since trips0 as counter rt_per_decision, an error if any answer was
 * degraded (the server failed); destroys r. */
void sbench_redis_finish(sbench_state *st, struct sluice_redis *r, uint64_t trips0,
			 uint64_t decisions);

#endif /* SLUICE_BENCH_REDIS_SERVER_H */
