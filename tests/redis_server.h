/*
 * redis_server.h - redis-server processes for the Redis tests: each test
 * starts its own servers on 127.0.0.1 at free ports (a single node, a
 * replica, or a cluster node) and kills them at the end; a server dies with
 * the test process (PR_SET_PDEATHSIG) if a test stops at an assertion.
 * redis-server missing is a failure, not a skip: `.ci/deps test` installs it.
 * Header-only (static functions) for Criterion test files; include it after
 * <criterion/criterion.h>. Functions a file does not use are marked unused.
 * Also side connections (side, side_fmt, side_int, side_fmt_int, side_ok)
 * and a three-node loopback cluster (cluster_start, cluster_cleanup).
 */
#ifndef SLUICE_TESTS_REDIS_SERVER_H
#define SLUICE_TESTS_REDIS_SERVER_H

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#endif

/* ---- redis-server processes ---- */

struct server {
	pid_t pid;
	int port;
};

static int free_port_once(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a;
	socklen_t len = sizeof a;

	cr_assert(fd >= 0);
	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

static bool pings(int port)
{
	struct timeval tv = { 0, 200000 };
	redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
	bool ok = false;

	if (c != NULL && c->err == 0) {
		redisReply *rep = redisCommand(c, "PING");
		ok = rep != NULL && rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "PONG") == 0;
		if (rep != NULL)
			freeReplyObject(rep);
	}
	if (c != NULL)
		redisFree(c);
	return ok;
}

static bool port_is_free(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a;

	cr_assert(fd >= 0);
	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port = htons((uint16_t)port);
	bool ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
	close(fd);
	return ok;
}

/* A free loopback port; with `bus`, also port + 10000 (a cluster node's bus
 * port) must be free and valid. */
static int free_port_for(bool bus)
{
	for (int i = 0; i < 1000; i++) {
		int p = free_port_once();
		if (!bus || (p + 10000 <= 65535 && port_is_free(p + 10000)))
			return p;
		if (p > 20000 && p - 10000 > 1024 && port_is_free(p - 10000))
			return p - 10000; /* p itself is the free bus port */
	}
	cr_assert_fail("no free pair of loopback ports");
	return 0;
}

static int free_port(void)
{
	return free_port_for(false);
}

static struct server server_spawn(int port, int replica_of, const char *cluster_dir);

static struct server server_start_args(int port, int replica_of)
{
	return server_spawn(port, replica_of, NULL);
}

static struct server server_spawn_once(int port, int replica_of, const char *cluster_dir, bool *lost);

/* Start redis-server on `port` (0: a free one): a replica of port
 * replica_of if > 0, a cluster node keeping its nodes file in cluster_dir
 * if not NULL. Waits until it answers PING. A port we chose can be taken by
 * another process between our check and the server's bind: then try
 * another. */
static struct server server_spawn(int port, int replica_of, const char *cluster_dir)
{
	for (int attempt = 0;; attempt++) {
		bool lost = false;
		int p = port != 0 ? port : free_port_for(cluster_dir != NULL);
		struct server s = server_spawn_once(p, replica_of, cluster_dir, &lost);
		if (!lost)
			return s;
		cr_assert(port == 0 && attempt < 5,
			  "redis-server did not start on port %d: it must be installed "
			  "(apt-get install -y redis-server; .ci/deps test does it)", p);
	}
}

static struct server server_spawn_once(int port, int replica_of, const char *cluster_dir, bool *lost)
{
	struct server s = { 0, port };
	char portstr[16], masterport[16];

	snprintf(portstr, sizeof portstr, "%d", s.port);
	snprintf(masterport, sizeof masterport, "%d", replica_of);
	pid_t parent = getpid();
	s.pid = fork();
	cr_assert(s.pid >= 0);
	if (s.pid == 0) {
		/* Die with the process that started us, even when it stops at a
		 * failed assertion without running the teardown. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(1);
		int devnull = open("/dev/null", O_WRONLY);
		if (devnull >= 0) {
			dup2(devnull, 1);
			dup2(devnull, 2);
		}
		if (cluster_dir != NULL)
			execlp("redis-server", "redis-server", "--port", portstr, "--bind", "127.0.0.1",
			       "--save", "", "--appendonly", "no", "--cluster-enabled", "yes",
			       "--dir", cluster_dir, "--cluster-node-timeout", "5000", (char *)NULL);
		else if (replica_of > 0)
			execlp("redis-server", "redis-server", "--port", portstr, "--bind", "127.0.0.1",
			       "--save", "", "--appendonly", "no", "--replicaof", "127.0.0.1",
			       masterport, (char *)NULL);
		else
			execlp("redis-server", "redis-server", "--port", portstr, "--bind", "127.0.0.1",
			       "--save", "", "--appendonly", "no", (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 500; i++) {
		int status;
		if (waitpid(s.pid, &status, WNOHANG) == s.pid) {
			/* 127: exec failed, redis-server is not installed. */
			cr_assert(!WIFEXITED(status) || WEXITSTATUS(status) != 127,
				  "redis-server not found: it must be installed "
				  "(apt-get install -y redis-server; .ci/deps test does it)");
			*lost = true; /* e.g. the port was taken meanwhile */
			s.pid = 0;
			return s;
		}
		if (pings(s.port))
			return s;
		usleep(10000);
	}
	kill(s.pid, SIGKILL);
	waitpid(s.pid, NULL, 0);
	cr_assert_fail("redis-server on port %d did not answer PING within 5 s", s.port);
	return s;
}

static struct server server_start(void)
{
	return server_start_args(0, 0);
}

static void server_stop(struct server *s)
{
	if (s->pid > 0) {
		kill(s->pid, SIGCONT);
		kill(s->pid, SIGKILL);
		waitpid(s->pid, NULL, 0);
		s->pid = 0;
	}
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
 * its own nodes-file directory) + cluster_form() (slots 0-5460, 5461-10922,
 * 10923-16383 to nodes 0, 1, 2; CLUSTER MEET; wait for cluster_state:ok on
 * all three). A test that needs a handle seeded before the cluster has
 * slots calls the two halves itself. Register cluster_cleanup as the test's
 * .fini: it removes the directories also after a failed assertion. */

static char cluster_dir[3][64];

static void cluster_cleanup(void)
{
	for (int i = 0; i < 3; i++) {
		if (cluster_dir[i][0] == '\0')
			continue;
		char path[256];
		snprintf(path, sizeof path, "%s/nodes.conf", cluster_dir[i]);
		unlink(path);
		rmdir(cluster_dir[i]);
	}
}

static bool cluster_ok(int port)
{
	redisReply *rep = side(port, "CLUSTER INFO", NULL);
	bool ok = rep->type == REDIS_REPLY_STRING && strstr(rep->str, "cluster_state:ok") != NULL;
	freeReplyObject(rep);
	return ok;
}

static long long keyslot(int port, const char *key)
{
	return side_fmt_int(port, "CLUSTER KEYSLOT %s", key);
}

/* The node owning a slot in cluster_form()'s ranges. */
static int owner_of(long long slot)
{
	return slot <= 5460 ? 0 : slot <= 10922 ? 1 : 2;
}

static void cluster_spawn(struct server n[3])
{
	for (int i = 0; i < 3; i++) {
		snprintf(cluster_dir[i], sizeof cluster_dir[i], "/tmp/sluice-cluster-XXXXXX");
		cr_assert_not_null(mkdtemp(cluster_dir[i]));
		n[i] = server_spawn(0, 0, cluster_dir[i]);
	}
}

static void cluster_form(const struct server n[3])
{
	static const char *const ranges[3][2] = { { "0", "5460" }, { "5461", "10922" }, { "10923", "16383" } };
	for (int i = 0; i < 3; i++)
		side_ok(n[i].port, "CLUSTER ADDSLOTSRANGE %s %s", ranges[i][0], ranges[i][1]);
	for (int i = 1; i < 3; i++) {
		char port[16];
		snprintf(port, sizeof port, "%d", n[i].port);
		freeReplyObject(side_fmt(n[0].port, "CLUSTER MEET 127.0.0.1 %s", port));
	}
	bool ok = false;
	for (int t = 0; t < 3000 && !ok; t++) { /* up to 30 s: a loaded CI machine */
		ok = cluster_ok(n[0].port) && cluster_ok(n[1].port) && cluster_ok(n[2].port);
		if (!ok)
			usleep(10000);
	}
	cr_assert(ok, "the three-node cluster did not reach cluster_state:ok");
}

static void cluster_start(struct server n[3])
{
	cluster_spawn(n);
	cluster_form(n);
}

#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#endif /* SLUICE_TESTS_REDIS_SERVER_H */
