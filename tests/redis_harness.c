/*
 * redis_harness.c - redis-server processes for the Redis tests and the
 * benchmarks (the contract is in redis_harness.h).
 *
 * A server is forked and exec'd with its output sent to /dev/null; it is
 * "up" once it answers PING on its port. A port chosen here can be taken by
 * another process between the check and the server's bind: the server then
 * exits, and a start on port 0 tries another port (five in all). An exec
 * that fails exits 127, which is how "redis-server is not installed" is told
 * apart from a lost port.
 *
 * Commands go out as RESP arrays of bulk strings on a fresh connection
 * each, so keys may hold any byte but NUL; replies are read only as far as
 * one status, error, integer or bulk string, which is all the harness and
 * its callers ask for.
 */
#include "redis_harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#define INSTALL_HINT "it must be installed (apt-get install -y redis-server; .ci/deps test does it)"

static _Thread_local char message[256];

static const char *fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(message, sizeof message, fmt, ap);
	va_end(ap);
	return message;
}

/* ---- ports ---- */

static struct sockaddr_in loopback(int port)
{
	struct sockaddr_in a;
	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port = htons((uint16_t)port);
	return a;
}

/* Bind port (0: any) on loopback and close again: the port bound, or 0. */
static int bind_once(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = loopback(port);
	socklen_t len = sizeof a;
	bool ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
		  getsockname(fd, (struct sockaddr *)&a, &len) == 0;
	if (fd >= 0)
		close(fd);
	return ok ? ntohs(a.sin_port) : 0;
}

const char *redis_harness_free_port(bool bus, int *port)
{
	for (int i = 0; i < 1000; i++) {
		int p = bind_once(0);
		if (p == 0)
			return fail("no loopback port could be bound");
		if (!bus || (p + 10000 <= 65535 && bind_once(p + 10000) != 0)) {
			*port = p;
			return NULL;
		}
		if (p > 20000 && p - 10000 > 1024 && bind_once(p - 10000) != 0) {
			*port = p - 10000; /* p itself is the free bus port */
			return NULL;
		}
	}
	return fail("no free pair of loopback ports");
}

/* ---- commands ---- */

/* A connection to 127.0.0.1:port with `timeout` send/receive timeouts, or
 * -1. */
static int dial(int port, struct timeval timeout)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = loopback(port);
	if (fd >= 0 && (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout) != 0 ||
			setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout) != 0 ||
			connect(fd, (struct sockaddr *)&a, sizeof a) != 0)) {
		close(fd);
		fd = -1;
	}
	return fd;
}

static bool write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

/* One reply into buf (see redis_harness_command); false if the connection
 * failed or the reply does not fit. */
static bool read_reply(int fd, char *buf, size_t cap)
{
	size_t used = 0, want = 0;
	for (;;) {
		if (used == cap - 1)
			return false;
		ssize_t got = read(fd, buf + used, cap - 1 - used);
		if (got <= 0)
			return false;
		used += (size_t)got;
		buf[used] = '\0';
		char *eol = strstr(buf, "\r\n");
		if (eol == NULL)
			continue;
		if (buf[0] != '$' || atol(buf + 1) < 0) /* one line (or a nil bulk) */
			return true;
		if (want == 0) /* "$<n>" then n bytes and CRLF */
			want = (size_t)(eol - buf) + 2 + (size_t)atol(buf + 1) + 2;
		if (used >= want)
			return true;
	}
}

static const char *command_timed(int port, struct timeval timeout, char *reply, size_t cap,
				 va_list ap)
{
	char head[32];
	const char *word[16];
	int n = 0;
	for (const char *w = va_arg(ap, const char *); w != NULL; w = va_arg(ap, const char *)) {
		if (n == 16)
			return fail("more than 16 words in a command");
		word[n++] = w;
	}
	if (n == 0 || cap < 2)
		return fail(n == 0 ? "an empty command" : "no room for a reply");
	int fd = dial(port, timeout);
	if (fd < 0)
		return fail("no connection to 127.0.0.1:%d", port);
	snprintf(head, sizeof head, "*%d\r\n", n);
	bool ok = write_all(fd, head, strlen(head));
	for (int i = 0; ok && i < n; i++) {
		size_t len = strlen(word[i]);
		snprintf(head, sizeof head, "$%zu\r\n", len);
		ok = write_all(fd, head, strlen(head)) && write_all(fd, word[i], len) &&
		     write_all(fd, "\r\n", 2);
	}
	ok = ok && read_reply(fd, reply, cap);
	close(fd);
	return ok ? NULL : fail("%s on 127.0.0.1:%d: no answer, or one over %zu bytes", word[0], port, cap);
}

static const char *command_with(int port, struct timeval timeout, char *reply, size_t cap, ...)
{
	va_list ap;
	va_start(ap, cap);
	const char *why = command_timed(port, timeout, reply, cap, ap);
	va_end(ap);
	return why;
}

const char *redis_harness_command(int port, char *reply, size_t cap, ...)
{
	va_list ap;
	va_start(ap, cap);
	const char *why = command_timed(port, (struct timeval){ 2, 0 }, reply, cap, ap);
	va_end(ap);
	return why;
}

bool redis_harness_pings(int port)
{
	char buf[64];
	return command_with(port, (struct timeval){ 0, 200000 }, buf, sizeof buf, "PING", (char *)NULL) ==
		       NULL &&
	       strcmp(buf, "+PONG\r\n") == 0;
}

long redis_harness_keyslot(int port, const char *key)
{
	char buf[64];
	if (redis_harness_command(port, buf, sizeof buf, "CLUSTER", "KEYSLOT", key, (char *)NULL) != NULL ||
	    buf[0] != ':')
		return -1;
	return atol(buf + 1);
}

/* ---- processes ---- */

/* Fork and exec redis-server on `port` (see redis_harness_start); the
 * child's pid, or -1. */
static pid_t spawn(int port, int replica_of, const char *cluster_dir)
{
	char portstr[16], masterport[16];
	snprintf(portstr, sizeof portstr, "%d", port);
	snprintf(masterport, sizeof masterport, "%d", replica_of);
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	/* Die with the process that started us, even when it stops at a
	 * failed assertion or exits without running its handlers. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(1);
	int devnull = open("/dev/null", O_WRONLY);
	if (devnull >= 0) {
		dup2(devnull, 1);
		dup2(devnull, 2);
	}
	if (cluster_dir != NULL)
		execlp("redis-server", "redis-server", "--port", portstr, "--bind", "127.0.0.1", "--save", "",
		       "--appendonly", "no", "--cluster-enabled", "yes", "--dir", cluster_dir,
		       "--cluster-node-timeout", "5000", (char *)NULL);
	else if (replica_of > 0)
		execlp("redis-server", "redis-server", "--port", portstr, "--bind", "127.0.0.1", "--save", "",
		       "--appendonly", "no", "--replicaof", "127.0.0.1", masterport, (char *)NULL);
	else
		execlp("redis-server", "redis-server", "--port", portstr, "--bind", "127.0.0.1", "--save", "",
		       "--appendonly", "no", (char *)NULL);
	_exit(127);
}

/* One try on `port`: NULL once it answers PING; *lost if it exited (the
 * port was likely taken meanwhile). */
static const char *start_once(struct redis_harness_server *s, int port, int replica_of,
			      const char *cluster_dir, bool *lost)
{
	s->port = port;
	s->pid = spawn(port, replica_of, cluster_dir);
	if (s->pid < 0) {
		s->pid = 0;
		return fail("fork failed");
	}
	for (int i = 0; i < 500; i++) {
		int status;
		if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
			s->pid = 0;
			if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
				return fail("redis-server not found: " INSTALL_HINT);
			*lost = true;
			return fail("redis-server did not start on port %d: " INSTALL_HINT, port);
		}
		if (redis_harness_pings(port))
			return NULL;
		usleep(10000);
	}
	redis_harness_stop(s);
	return fail("redis-server on port %d did not answer PING within 5 s", port);
}

const char *redis_harness_start(struct redis_harness_server *s, int port, int replica_of,
				const char *cluster_dir)
{
	s->pid = 0;
	s->port = port;
	for (int attempt = 0;; attempt++) {
		bool lost = false;
		int p = port;
		const char *why = port != 0 ? NULL : redis_harness_free_port(cluster_dir != NULL, &p);
		if (why == NULL)
			why = start_once(s, p, replica_of, cluster_dir, &lost);
		if (why == NULL || !lost || port != 0 || attempt == 4)
			return why;
	}
}

void redis_harness_stop(struct redis_harness_server *s)
{
	if (s->pid > 0) {
		kill(s->pid, SIGCONT);
		kill(s->pid, SIGKILL);
		waitpid(s->pid, NULL, 0);
		s->pid = 0;
	}
}

/* ---- the three-node cluster ---- */

void redis_harness_cluster_remove_dirs(struct redis_harness_cluster *c)
{
	for (int i = 0; i < REDIS_HARNESS_NODES; i++) {
		if (c->dir[i][0] == '\0')
			continue;
		char path[256];
		snprintf(path, sizeof path, "%s/nodes.conf", c->dir[i]);
		unlink(path);
		rmdir(c->dir[i]);
		c->dir[i][0] = '\0';
	}
}

void redis_harness_cluster_stop(struct redis_harness_cluster *c)
{
	for (int i = 0; i < REDIS_HARNESS_NODES; i++)
		redis_harness_stop(&c->node[i]);
	redis_harness_cluster_remove_dirs(c);
}

const char *redis_harness_cluster_spawn(struct redis_harness_cluster *c)
{
	memset(c, 0, sizeof *c);
	for (int i = 0; i < REDIS_HARNESS_NODES; i++) {
		snprintf(c->dir[i], sizeof c->dir[i], "/tmp/sluice-cluster-XXXXXX");
		if (mkdtemp(c->dir[i]) == NULL) {
			c->dir[i][0] = '\0';
			redis_harness_cluster_stop(c);
			return fail("mkdtemp failed");
		}
		const char *why = redis_harness_start(&c->node[i], 0, 0, c->dir[i]);
		if (why != NULL) {
			redis_harness_cluster_stop(c);
			return why;
		}
	}
	return NULL;
}

static bool cluster_ok(int port)
{
	char buf[4096];
	return redis_harness_command(port, buf, sizeof buf, "CLUSTER", "INFO", (char *)NULL) == NULL &&
	       strstr(buf, "cluster_state:ok") != NULL;
}

/* Whether the node at port knows all three nodes as masters, none still in
 * the handshake: "cluster_state:ok" can come first (the slots are covered
 * by gossip), and CLUSTER SETSLOT ... IMPORTING <id> answers "Target node
 * is not a master" while the target's flags are not yet known there. */
static bool cluster_masters_known(int port)
{
	char buf[4096];
	int masters = 0;
	if (redis_harness_command(port, buf, sizeof buf, "CLUSTER", "NODES", (char *)NULL) != NULL)
		return false;
	for (char *line = buf; line != NULL && *line != '\0';) {
		char *end = strchr(line, '\n');
		if (end != NULL)
			*end = '\0';
		if (strstr(line, "master") != NULL && strstr(line, "handshake") == NULL &&
		    strstr(line, "noaddr") == NULL && strstr(line, "fail") == NULL)
			masters++;
		line = end != NULL ? end + 1 : NULL;
	}
	return masters == REDIS_HARNESS_NODES;
}

const char *redis_harness_cluster_form(const struct redis_harness_server node[REDIS_HARNESS_NODES])
{
	static const char *const ranges[REDIS_HARNESS_NODES][2] = { { "0", "5460" },
								    { "5461", "10922" },
								    { "10923", "16383" } };
	char buf[256], port[16];
	for (int i = 0; i < REDIS_HARNESS_NODES; i++) {
		const char *why = redis_harness_command(node[i].port, buf, sizeof buf, "CLUSTER", "ADDSLOTSRANGE",
							ranges[i][0], ranges[i][1], (char *)NULL);
		if (why != NULL || buf[0] != '+')
			return why != NULL ? why : fail("CLUSTER ADDSLOTSRANGE on port %d: %s", node[i].port, buf);
	}
	for (int i = 1; i < REDIS_HARNESS_NODES; i++) {
		snprintf(port, sizeof port, "%d", node[i].port);
		const char *why = redis_harness_command(node[0].port, buf, sizeof buf, "CLUSTER", "MEET",
							"127.0.0.1", port, (char *)NULL);
		if (why != NULL || buf[0] != '+')
			return why != NULL ? why : fail("CLUSTER MEET 127.0.0.1 %s: %s", port, buf);
	}
	for (int t = 0; t < 3000; t++) { /* up to 30 s: a loaded CI machine */
		bool ready = true;
		for (int i = 0; i < REDIS_HARNESS_NODES && ready; i++)
			ready = cluster_ok(node[i].port) && cluster_masters_known(node[i].port);
		if (ready)
			return NULL;
		usleep(10000);
	}
	return fail("the three-node cluster did not reach cluster_state:ok with every node a known master within 30 s");
}

const char *redis_harness_cluster_start(struct redis_harness_cluster *c)
{
	const char *why = redis_harness_cluster_spawn(c);
	if (why == NULL && (why = redis_harness_cluster_form(c->node)) != NULL)
		redis_harness_cluster_stop(c);
	return why;
}

int redis_harness_cluster_owner(long slot)
{
	return slot <= 5460 ? 0 : slot <= 10922 ? 1 : 2;
}
