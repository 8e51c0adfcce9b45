/*
 * redis_server.h - the benchmark run's redis-server (bench/bench_redis_server.c).
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
typedef struct sbench_state sbench_state;

/* A backend handle (1 s timeout) on the run's server; NULL after
 * sbench_error() if there is none. */
struct sluice_redis *sbench_redis_open(sbench_state *st);

/* The handle's round trips so far. */
uint64_t sbench_redis_trips(struct sluice_redis *r);

/* End a Redis benchmark: `decisions` items, the round trips per decision
 * since trips0 as counter rt_per_decision, an error if any answer was
 * degraded (the server failed); destroys r. */
void sbench_redis_finish(sbench_state *st, struct sluice_redis *r, uint64_t trips0,
			 uint64_t decisions);

#endif /* SLUICE_BENCH_REDIS_SERVER_H */
