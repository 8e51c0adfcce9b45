/*
 * bench_redis_server.c - one redis-server for the benchmark run, shared by
 * bench_redis*.c, and a three-node Redis Cluster for the cross-slot
 * benchmarks (bench/redis_server.h). It has no benchmarks of its own.
 * Speaks just enough RESP to see a server answer PING and to form the
 * cluster (inline commands, one reply each), so that it needs no hiredis
 * (the limiter/engine benchmarks build without it). The cluster is formed
 * as tests/redis_server.h forms the tests' (same slot ranges, CLUSTER MEET,
 * wait for cluster_state:ok); that header is not shared because it asserts
 * with Criterion on every step.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sluice.h>

#include "redis_server.h"
#include "shim.h"

static pid_t server_pid;
static int server_port;

static void server_kill(void)
{
	if (server_pid > 0) {
		kill(server_pid, SIGKILL);
		waitpid(server_pid, NULL, 0);
		server_pid = 0;
	}
}

/* A connection to 127.0.0.1:port with 2 s send/receive timeouts, or -1. */
static int dial(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a;
	struct timeval tv = { 2, 0 };
	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port = htons((uint16_t)port);
	if (fd >= 0 && (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
			setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0 ||
			connect(fd, (struct sockaddr *)&a, sizeof a) != 0)) {
		close(fd);
		fd = -1;
	}
	return fd;
}

/* Send one inline command (words without spaces or quotes) and read its
 * reply, a status, error, integer or bulk string, into buf (NUL-ended).
 * The reply's length, or -1 (no connection, lost, or longer than cap). */
static int command(int port, const char *cmd, char *buf, size_t cap)
{
	int fd = dial(port);
	size_t used = 0, want = 0;
	if (fd < 0)
		return -1;
	size_t len = strlen(cmd);
	bool ok = write(fd, cmd, len) == (ssize_t)len && write(fd, "\r\n", 2) == 2;
	while (ok) {
		ssize_t got = read(fd, buf + used, cap - 1 - used);
		if (got <= 0) {
			ok = false;
			break;
		}
		used += (size_t)got;
		buf[used] = '\0';
		char *eol = strstr(buf, "\r\n");
		if (eol == NULL)
			continue;
		if (buf[0] != '$') /* one line */
			break;
		if (want == 0) /* "$<n>" then n bytes and CRLF */
			want = (size_t)(eol - buf) + 2 + (size_t)atol(buf + 1) + 2;
		if (used >= want || used == cap - 1)
			break;
	}
	ok = ok && (buf[0] != '$' || used >= want);
	close(fd);
	return ok ? (int)used : -1;
}

static bool answers(int port)
{
	char buf[64];
	return command(port, "PING", buf, sizeof buf) > 0 && buf[0] == '+';
}

static bool server_answers(void)
{
	return answers(server_port);
}

/* A free loopback port; with `bus`, port + 10000 (a cluster node's bus
 * port) must be free too. 0 if none was found. */
static int free_port(bool bus)
{
	for (int i = 0; i < 100; i++) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in a;
		socklen_t len = sizeof a;
		memset(&a, 0, sizeof a);
		a.sin_family = AF_INET;
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		bool ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
			  getsockname(fd, (struct sockaddr *)&a, &len) == 0;
		if (fd >= 0)
			close(fd);
		int port = ok ? ntohs(a.sin_port) : 0;
		if (!ok || !bus)
			return port;
		if (port + 10000 > 65535)
			continue;
		fd = socket(AF_INET, SOCK_STREAM, 0);
		a.sin_port = htons((uint16_t)(port + 10000));
		ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
		if (fd >= 0)
			close(fd);
		if (ok)
			return port;
	}
	return 0;
}

/* Fork redis-server on `port`, a cluster node keeping its nodes file in
 * `dir` if not NULL; it dies with the benchmark (PR_SET_PDEATHSIG). The
 * child's pid, or -1. */
static pid_t spawn(int port, const char *dir)
{
	char portstr[16];
	snprintf(portstr, sizeof portstr, "%d", port);
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	/* Die with the benchmark, even if it stops without running its
	 * atexit handlers. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(1);
	int devnull = open("/dev/null", O_WRONLY);
	if (devnull >= 0) {
		dup2(devnull, 1);
		dup2(devnull, 2);
	}
	if (dir != NULL)
		execlp("redis-server", "redis-server", "--port", portstr, "--bind", "127.0.0.1", "--save", "",
		       "--appendonly", "no", "--cluster-enabled", "yes", "--dir", dir,
		       "--cluster-node-timeout", "5000", (char *)NULL);
	else
		execlp("redis-server", "redis-server", "--port", portstr, "--bind", "127.0.0.1", "--save", "",
		       "--appendonly", "no", (char *)NULL);
	_exit(127);
}

/* Wait up to 5 s for pid to answer PING on port; false if it died. */
static bool started(pid_t pid, int port)
{
	for (int i = 0; i < 500; i++) {
		if (waitpid(pid, NULL, WNOHANG) == pid)
			return false;
		if (answers(port))
			return true;
		usleep(10000);
	}
	return false;
}

const char *sbench_redis_server(int *port)
{
	const char *on = getenv("SLUICE_BENCH_REDIS");
	if (on == NULL || strcmp(on, "1") != 0)
		return "needs redis-server: run with SLUICE_BENCH_REDIS=1";
	if (server_pid > 0) {
		*port = server_port;
		return NULL;
	}
	server_port = free_port(false);
	if (server_port == 0)
		return "no free loopback port";
	pid_t pid = spawn(server_port, NULL);
	if (pid < 0)
		return "fork failed";
	server_pid = pid;
	atexit(server_kill);
	for (int i = 0; i < 500; i++) {
		if (waitpid(pid, NULL, WNOHANG) == pid) {
			server_pid = 0;
			return "redis-server did not start (apt-get install -y redis-server)";
		}
		if (server_answers()) {
			*port = server_port;
			return NULL;
		}
		usleep(10000);
	}
	server_kill();
	return "redis-server did not answer PING";
}

struct sluice_redis *sbench_redis_open(sbench_state *st)
{
	int port = 0;
	const char *why = sbench_redis_server(&port);
	if (why != NULL) {
		sbench_error(st, why);
		return NULL;
	}
	struct sluice_redis_options o;
	memset(&o, 0, sizeof o);
	o.size = sizeof o;
	o.port = (uint32_t)port;
	o.timeout_ns = SLUICE_NS_PER_SEC;
	struct sluice_redis *r = NULL;
	if (sluice_redis_create(&r, &o) != SLUICE_OK || r == NULL) {
		sbench_error(st, "sluice_redis_create failed");
		return NULL;
	}
	return r;
}

/* ---- the three-node cluster ---- */

static pid_t cluster_pid[3];
static int cluster_port[3];
static char cluster_dir[3][64];

static void cluster_kill(void)
{
	for (int i = 0; i < 3; i++) {
		if (cluster_pid[i] > 0) {
			kill(cluster_pid[i], SIGKILL);
			waitpid(cluster_pid[i], NULL, 0);
			cluster_pid[i] = 0;
		}
		if (cluster_dir[i][0] != '\0') {
			char path[256];
			snprintf(path, sizeof path, "%s/nodes.conf", cluster_dir[i]);
			unlink(path);
			rmdir(cluster_dir[i]);
			cluster_dir[i][0] = '\0';
		}
	}
}

static bool cluster_ok(int port)
{
	char buf[4096];
	return command(port, "CLUSTER INFO", buf, sizeof buf) > 0 && strstr(buf, "cluster_state:ok") != NULL;
}

static const char *cluster_form(void)
{
	static const char *const ranges[3] = { "0 5460", "5461 10922", "10923 16383" };
	char cmd[64], buf[256];
	for (int i = 0; i < 3; i++) {
		snprintf(cmd, sizeof cmd, "CLUSTER ADDSLOTSRANGE %s", ranges[i]);
		if (command(cluster_port[i], cmd, buf, sizeof buf) <= 0 || buf[0] != '+')
			return "CLUSTER ADDSLOTSRANGE failed";
	}
	for (int i = 1; i < 3; i++) {
		snprintf(cmd, sizeof cmd, "CLUSTER MEET 127.0.0.1 %d", cluster_port[i]);
		if (command(cluster_port[0], cmd, buf, sizeof buf) <= 0 || buf[0] != '+')
			return "CLUSTER MEET failed";
	}
	for (int t = 0; t < 1000; t++) {
		if (cluster_ok(cluster_port[0]) && cluster_ok(cluster_port[1]) && cluster_ok(cluster_port[2]))
			return NULL;
		usleep(10000);
	}
	return "the three-node cluster did not reach cluster_state:ok within 10 s";
}

const char *sbench_redis_cluster(int ports[3])
{
	const char *on = getenv("SLUICE_BENCH_REDIS");
	if (on == NULL || strcmp(on, "1") != 0)
		return "needs redis-server: run with SLUICE_BENCH_REDIS=1";
	if (cluster_pid[0] <= 0) {
		atexit(cluster_kill);
		for (int i = 0; i < 3; i++) {
			snprintf(cluster_dir[i], sizeof cluster_dir[i], "/tmp/sluice-bench-cluster-XXXXXX");
			if (mkdtemp(cluster_dir[i]) == NULL) {
				cluster_dir[i][0] = '\0';
				cluster_kill();
				return "mkdtemp failed";
			}
			cluster_port[i] = free_port(true);
			if (cluster_port[i] == 0) {
				cluster_kill();
				return "no free pair of loopback ports";
			}
			cluster_pid[i] = spawn(cluster_port[i], cluster_dir[i]);
			if (cluster_pid[i] < 0 || !started(cluster_pid[i], cluster_port[i])) {
				cluster_kill();
				return "a cluster node did not start (apt-get install -y redis-server)";
			}
		}
		const char *why = cluster_form();
		if (why != NULL) {
			cluster_kill();
			return why;
		}
	}
	memcpy(ports, cluster_port, sizeof cluster_port);
	return NULL;
}

int sbench_redis_cluster_node(uint32_t slot)
{
	return slot <= 5460 ? 0 : slot <= 10922 ? 1 : 2;
}

long sbench_redis_cluster_keyslot(const char *key)
{
	int ports[3];
	char cmd[300], buf[64];
	if (sbench_redis_cluster(ports) != NULL || strlen(key) > 256)
		return -1;
	snprintf(cmd, sizeof cmd, "CLUSTER KEYSLOT %s", key);
	if (command(ports[0], cmd, buf, sizeof buf) <= 0 || buf[0] != ':')
		return -1;
	return atol(buf + 1);
}

struct sluice_redis *sbench_redis_cluster_open(sbench_state *st)
{
	int ports[3];
	const char *why = sbench_redis_cluster(ports);
	if (why != NULL) {
		sbench_error(st, why);
		return NULL;
	}
	struct sluice_redis_options o;
	memset(&o, 0, sizeof o);
	o.size = sizeof o;
	o.port = (uint32_t)ports[0];
	o.flags = SLUICE_REDIS_CLUSTER;
	o.timeout_ns = SLUICE_NS_PER_SEC;
	struct sluice_redis *r = NULL;
	if (sluice_redis_create(&r, &o) != SLUICE_OK || r == NULL) {
		sbench_error(st, "sluice_redis_create failed");
		return NULL;
	}
	return r;
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
