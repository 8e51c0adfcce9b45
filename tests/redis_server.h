/*
 * redis_server.h - the Criterion side of tests/redis_harness.h for the
 * Redis test suites: the same servers (a single node, a replica, a
 * three-node loopback cluster), each harness failure turned into
 * cr_assert_fail, and side connections (hiredis) for inspecting a server:
 * side, side_fmt, side_int, side_fmt_int, side_ok. redis-server missing is
 * a failure, not a skip: `.ci/deps test` installs it. Header-only (static
 * functions); include it after <criterion/criterion.h> and link
 * tests/redis_harness.c. Functions a file does not use are marked unused.
 */
#ifndef SLUICE_TESTS_REDIS_SERVER_H
#define SLUICE_TESTS_REDIS_SERVER_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "redis_harness.h"

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#endif

/* ---- redis-server processes ---- */

/* A free loopback port (nothing listens there until a server is started
 * on it). */
static int free_port(void)
{
	int port = 0;
	const char *why = redis_harness_free_port(false, &port);
	if (why != NULL)
		cr_assert_fail("%s", why);
	return port;
}

/* redis-server on `port` (0: a free one), a replica of port replica_of if
 * > 0; it answers PING. */
static struct redis_harness_server server_start_args(int port, int replica_of)
{
	struct redis_harness_server s;
	const char *why = redis_harness_start(&s, port, replica_of, NULL);
	if (why != NULL)
		cr_assert_fail("%s", why);
	return s;
}

static struct redis_harness_server server_start(void)
{
	return server_start_args(0, 0);
}

static void server_stop(struct redis_harness_server *s)
{
	redis_harness_stop(s);
}

/* A side connection for inspecting the server. */
static redisReply *side(int port, const char *cmd, const char *arg)
{
	struct timeval tv = { 1, 0 };
	redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
	cr_assert(c != NULL && c->err == 0);
	redisReply *rep = arg != NULL ? redisCommand(c, "%s %s", cmd, arg) : redisCommand(c, cmd);
	cr_assert_not_null(rep);
	redisFree(c);
	return rep;
}

/* A side command with a hiredis format (each %s is one argument). */
static redisReply *side_fmt(int port, const char *fmt, ...)
{
	struct timeval tv = { 1, 0 };
	redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
	cr_assert(c != NULL && c->err == 0);
	va_list ap;
	va_start(ap, fmt);
	redisReply *rep = redisvCommand(c, fmt, ap);
	va_end(ap);
	cr_assert_not_null(rep);
	redisFree(c);
	return rep;
}

static long long side_int(int port, const char *cmd, const char *arg)
{
	redisReply *rep = side(port, cmd, arg);
	cr_assert_eq(rep->type, REDIS_REPLY_INTEGER, "%s: type %d", cmd, rep->type);
	long long v = rep->integer;
	freeReplyObject(rep);
	return v;
}

/* A side command that must answer with an integer. */
static long long side_fmt_int(int port, const char *fmt, const char *a)
{
	redisReply *rep = side_fmt(port, fmt, a);
	cr_assert_eq(rep->type, REDIS_REPLY_INTEGER, "%s: type %d %s", fmt, rep->type,
		     rep->type == REDIS_REPLY_ERROR ? rep->str : "");
	long long v = rep->integer;
	freeReplyObject(rep);
	return v;
}

/* A side command with two arguments that must answer with a status (OK). */
static void side_ok(int port, const char *fmt, const char *a, const char *b)
{
	redisReply *rep = side_fmt(port, fmt, a, b);
	cr_assert(rep->type == REDIS_REPLY_STATUS, "%s: %s", fmt,
		  rep->type == REDIS_REPLY_ERROR ? rep->str : "not a status");
	freeReplyObject(rep);
}

/* ---- a three-node Redis Cluster on loopback ----
 *
 * cluster_start() = cluster_spawn() (three empty cluster nodes, each with
 * its own nodes-file directory) + cluster_form() (slots 0-5460,
 * 5461-10922, 10923-16383 to nodes 0, 1, 2; CLUSTER MEET; wait for
 * cluster_state:ok on all three). A test that needs a handle seeded before
 * the cluster has slots calls the two halves itself. The test stops the
 * nodes with server_stop(); register cluster_cleanup as its .fini: it
 * removes the directories also after a failed assertion. */

static struct redis_harness_cluster test_cluster;

static void cluster_cleanup(void)
{
	redis_harness_cluster_remove_dirs(&test_cluster);
}

static long long keyslot(int port, const char *key)
{
	long slot = redis_harness_keyslot(port, key);
	cr_assert(slot >= 0, "CLUSTER KEYSLOT %s on port %d: no answer", key, port);
	return slot;
}

/* The node owning a slot in cluster_form()'s ranges. */
static int owner_of(long long slot)
{
	return redis_harness_cluster_owner((long)slot);
}

static void cluster_spawn(struct redis_harness_server n[REDIS_HARNESS_NODES])
{
	const char *why = redis_harness_cluster_spawn(&test_cluster);
	if (why != NULL)
		cr_assert_fail("%s", why);
	memcpy(n, test_cluster.node, sizeof test_cluster.node);
}

static void cluster_form(const struct redis_harness_server n[REDIS_HARNESS_NODES])
{
	const char *why = redis_harness_cluster_form(n);
	if (why != NULL)
		cr_assert_fail("%s", why);
}

static void cluster_start(struct redis_harness_server n[REDIS_HARNESS_NODES])
{
	cluster_spawn(n);
	cluster_form(n);
}

#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#endif /* SLUICE_TESTS_REDIS_SERVER_H */
