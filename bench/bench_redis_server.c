/*
 * bench_redis_server.c - one redis-server for the benchmark run, shared by
 * bench_redis*.c (bench/redis_server.h). It has no benchmarks of its own.
 * Speaks just enough RESP to see the server answer PING, so that it needs
 * no hiredis (the limiter/engine benchmarks build without it).
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

static bool server_answers(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a;
	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port = htons((uint16_t)server_port);
	bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
	if (ok) {
		char buf[16];
		ok = write(fd, "PING\r\n", 6) == 6 && read(fd, buf, sizeof buf) > 0 && buf[0] == '+';
	}
	if (fd >= 0)
		close(fd);
	return ok;
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
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a;
	socklen_t len = sizeof a;
	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
		if (fd >= 0)
			close(fd);
		return "no free loopback port";
	}
	close(fd);
	server_port = ntohs(a.sin_port);
	char portstr[16];
	snprintf(portstr, sizeof portstr, "%d", server_port);
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0)
		return "fork failed";
	if (pid == 0) {
		/* Die with the benchmark, even if it stops without running
		 * its atexit handlers. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(1);
		int devnull = open("/dev/null", O_WRONLY);
		if (devnull >= 0) {
			dup2(devnull, 1);
			dup2(devnull, 2);
		}
		execlp("redis-server", "redis-server", "--port", portstr, "--bind", "127.0.0.1",
		       "--save", "", "--appendonly", "no", (char *)NULL);
		_exit(127);
	}
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
