/*
 * redis_server.h - the benchmark run's redis-server (bench/bench_redis_server.c).
 */
#ifndef SLUICE_BENCH_REDIS_SERVER_H
#define SLUICE_BENCH_REDIS_SERVER_H

/*
 * Start one redis-server for the whole benchmark run on a free loopback
 * port, the first time a benchmark asks (later calls reuse it), and kill it
 * at exit. Only with SLUICE_BENCH_REDIS=1 in the environment. Returns NULL
 * and sets *port, or a message saying why there is no server (to pass to
 * sbench_error()).
 */
const char *sbench_redis_server(int *port);

#endif /* SLUICE_BENCH_REDIS_SERVER_H */
