/*
 * redis_harness.h - redis-server processes for the Redis tests and the
 * benchmarks (tests/redis_harness.c): a single node, a replica, or a
 * three-node Redis Cluster on 127.0.0.1 at free ports, without persistence.
 * Every server is a child that dies with the process that started it
 * (PR_SET_PDEATHSIG), even one that stops at a failed assertion or without
 * running its atexit handlers.
 *
 * No Criterion and no hiredis: it speaks just enough RESP to see a server
 * answer PING and to form the cluster. The Criterion suites reach it through
 * tests/redis_server.h (which turns each failure into cr_assert_fail), the
 * benchmark run through bench/bench_redis_server.c, the TSan stress test
 * directly.
 *
 * Functions that can fail return NULL on success or a message saying why,
 * in a thread-local buffer valid until the calling thread's next harness
 * call. Call them from one thread at a time per server: they fork.
 */
#ifndef SLUICE_TESTS_REDIS_HARNESS_H
#define SLUICE_TESTS_REDIS_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* One redis-server child; pid 0 when none runs. */
struct redis_harness_server {
	pid_t pid;
	int port;
};

/* The nodes of a three-node cluster and the directories of their nodes
 * files ("" where none was made). */
#define REDIS_HARNESS_NODES 3
struct redis_harness_cluster {
	struct redis_harness_server node[REDIS_HARNESS_NODES];
	char dir[REDIS_HARNESS_NODES][64];
};

/*
 * A free loopback port in *port. With `bus`, port + 10000 (a cluster node's
 * bus port) is free and valid too. Another process may take the port
 * before a server binds it; redis_harness_start(port 0) retries for that.
 */
const char *redis_harness_free_port(bool bus, int *port);

/*
 * Start redis-server on `port` (0: a free one, with another tried if the
 * server loses it to another process before binding): a replica of
 * 127.0.0.1:replica_of if replica_of > 0, a cluster node keeping its nodes
 * file in cluster_dir if not NULL. Returns once it answers PING (within
 * 5 s), with *s set; on failure nothing is left running and s->pid is 0.
 * redis-server not installed is a failure that says how to install it.
 */
const char *redis_harness_start(struct redis_harness_server *s, int port, int replica_of,
				const char *cluster_dir);

/* Kill the server (SIGKILL, also when stopped with SIGSTOP) and reap it;
 * a no-op when s->pid is 0. */
void redis_harness_stop(struct redis_harness_server *s);

/* Whether a server on 127.0.0.1:port answers PING with PONG (200 ms). */
bool redis_harness_pings(int port);

/*
 * Send one command, the NULL-terminated words after `reply` (any bytes but
 * NUL), on a fresh connection to 127.0.0.1:port (2 s timeouts), and read a
 * status, error, integer or bulk-string reply into reply[0..cap) as RESP
 * (e.g. "+OK\r\n", ":42\r\n", "$5\r\nhello\r\n"), NUL-ended.
 */
const char *redis_harness_command(int port, char *reply, size_t cap, ...);

/*
 * The cluster in halves: redis_harness_cluster_spawn() starts three empty
 * cluster nodes, each with its own directory under /tmp;
 * redis_harness_cluster_form() gives slots 0-5460, 5461-10922 and
 * 10923-16383 to nodes 0, 1 and 2, joins them (CLUSTER MEET) and waits up
 * to 30 s for cluster_state:ok on all three. redis_harness_cluster_start()
 * does both. On failure, spawn and start leave nothing running (and no
 * directory) behind.
 */
const char *redis_harness_cluster_spawn(struct redis_harness_cluster *c);
const char *redis_harness_cluster_form(const struct redis_harness_server node[REDIS_HARNESS_NODES]);
const char *redis_harness_cluster_start(struct redis_harness_cluster *c);

/* Kill the nodes still running and remove the directories. */
void redis_harness_cluster_stop(struct redis_harness_cluster *c);

/* Remove the nodes files and their directories only (the nodes are killed
 * elsewhere); safe to call more than once. */
void redis_harness_cluster_remove_dirs(struct redis_harness_cluster *c);

/* The node (0..2) owning a hash slot in redis_harness_cluster_form()'s
 * ranges. */
int redis_harness_cluster_owner(long slot);

/* The hash slot of `key` as the cluster node on `port` computes it
 * (CLUSTER KEYSLOT), or -1 (no answer). One connection per call. */
long redis_harness_keyslot(int port, const char *key);

#endif /* SLUICE_TESTS_REDIS_HARNESS_H */
