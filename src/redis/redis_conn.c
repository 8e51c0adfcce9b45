/*
 * redis_conn.c - the Redis backend's connections (redis.c's file comment,
 * "Connections"): one hiredis blocking context per node, connected with
 * the script loaded on first use and after a failure (with exponential
 * backoff); every blocking step gets the time left until the call's
 * deadline as its socket timeout; SIGPIPE is blocked around I/O; the pause
 * before a TRYAGAIN resend.
 */
#include "redis/redis_internal.h"

#ifdef SLUICE_WITH_REDIS

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

/* ---- small helpers ---- */

static struct timeval tv_of(uint64_t ns)
{
	struct timeval tv;

	if (ns < 1000)
		ns = 1000; /* a zero timeval means "no timeout" to setsockopt */
	tv.tv_sec = (time_t)(ns / SLUICE_NS_PER_SEC);
	tv.tv_usec = (suseconds_t)(ns % SLUICE_NS_PER_SEC / 1000);
	return tv;
}

/* Time left before the deadline, 0 if none. */
uint64_t sluice__redis_time_left(uint64_t deadline_ns)
{
	uint64_t now = sluice_monotonic_ns();
	return deadline_ns > now ? deadline_ns - now : 0;
}

/*
 * TRYAGAIN (cluster): a multi-key call whose keys a live slot migration has
 * split between the two nodes is refused, unrun, until the last of them
 * has moved. The call is resent after a pause of 1 ms, doubling up to 8 ms,
 * while its deadline allows (docs/redis.md, "TRYAGAIN": why these pauses;
 * TRYAGAIN_PAUSE_MIN_NS is in redis_internal.h).
 */
#define TRYAGAIN_PAUSE_MAX_NS (UINT64_C(8000000))

/* Sleep *pause_ns before a TRYAGAIN retry and double it (up to the cap).
 * False, without sleeping, when the pause would end at or past the
 * deadline: no time would be left to send the retry, so the call answers
 * by the fail mode now (counted as a timeout). */
bool sluice__redis_tryagain_pause(struct sluice_redis *r, uint64_t deadline_ns, uint64_t *pause_ns)
{
	uint64_t left = sluice__redis_time_left(deadline_ns);
	if (left <= *pause_ns) {
		r->st.timeouts++;
		return false;
	}
	struct timespec ts = { (time_t)(*pause_ns / SLUICE_NS_PER_SEC), (long)(*pause_ns % SLUICE_NS_PER_SEC) };
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
	*pause_ns = *pause_ns * 2 > TRYAGAIN_PAUSE_MAX_NS ? TRYAGAIN_PAUSE_MAX_NS : *pause_ns * 2;
	return true;
}

/* SIGPIPE guard (redis.c's file comment, "Connections"). */
void sluice__redis_sigpipe_block(struct sluice__sigpipe_guard *g)
{
	sigset_t set, pending;

	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	sigemptyset(&pending);
	sigpending(&pending);
	g->was_pending = sigismember(&pending, SIGPIPE) == 1;
	pthread_sigmask(SIG_BLOCK, &set, &g->old);
}

void sluice__redis_sigpipe_restore(const struct sluice__sigpipe_guard *g)
{
	sigset_t set, pending;

	if (!g->was_pending) {
		sigemptyset(&pending);
		sigpending(&pending);
		if (sigismember(&pending, SIGPIPE) == 1) {
			sigemptyset(&set);
			sigaddset(&set, SIGPIPE);
			struct timespec zero = { 0, 0 };
			while (sigtimedwait(&set, NULL, &zero) == -1 && errno == EINTR)
				;
		}
	}
	pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

/* ---- connection ---- */

void sluice__redis_drop(struct node *nd)
{
	if (nd->ctx != NULL) {
		redisFree(nd->ctx);
		nd->ctx = NULL;
	}
	nd->ever_worked = false;
}

static void schedule_retry(struct sluice_redis *r, struct node *nd)
{
	nd->next_attempt_ns = sluice__add_sat(sluice_monotonic_ns(), nd->backoff_ns);
	nd->backoff_ns = nd->backoff_ns > r->backoff_max_ns / 2 ? r->backoff_max_ns : nd->backoff_ns * 2;
}

/* Set the socket timeout to the time left; false (dropped) if none is. */
bool sluice__redis_arm_timeout(struct sluice_redis *r, struct node *nd, uint64_t deadline_ns)
{
	uint64_t left = sluice__redis_time_left(deadline_ns);
	if (left == 0 || redisSetTimeout(nd->ctx, tv_of(left)) != REDIS_OK) {
		r->st.timeouts += left == 0;
		sluice__redis_drop(nd);
		return false;
	}
	return true;
}

/* SCRIPT LOAD on nd's connection. 0, or -1 (connection dropped). */
int sluice__redis_load_script(struct sluice_redis *r, struct node *nd, uint64_t deadline_ns)
{
	if (!sluice__redis_arm_timeout(r, nd, deadline_ns))
		return -1;
	r->st.script_loads++;
	r->st.round_trips++;
	const char *argv[3] = { "SCRIPT", "LOAD", sluice__redis_script };
	size_t argvlen[3] = { 6, 4, sluice__redis_script_len };
	redisReply *rep = redisCommandArgv(nd->ctx, 3, argv, argvlen);
	if (rep == NULL) {
		r->st.io_errors++;
		r->st.timeouts += sluice__redis_time_left(deadline_ns) == 0;
		sluice__redis_drop(nd);
		return -1;
	}
	int rc = -1;
	if (rep->type == REDIS_REPLY_STRING && rep->len == 40) {
		/* The SHA1 of the script: the same on every node. */
		memcpy(r->sha, rep->str, 40);
		r->sha[40] = '\0';
		rc = 0;
	} else {
		r->st.server_errors++;
		sluice__redis_drop(nd);
	}
	freeReplyObject(rep);
	return rc;
}

/* Make sure nd has a connection with the script loaded. 0, or -1 (fail
 * mode: down, in backoff, or out of time). */
int sluice__redis_ensure_connected(struct sluice_redis *r, struct node *nd, uint64_t deadline_ns)
{
	if (nd->ctx != NULL)
		return 0;
	if (sluice_monotonic_ns() < nd->next_attempt_ns) {
		r->st.backoff_skips++;
		return -1;
	}
	uint64_t left = sluice__redis_time_left(deadline_ns);
	if (left == 0) {
		r->st.timeouts++;
		return -1;
	}
	nd->ctx = redisConnectWithTimeout(nd->host, nd->port, tv_of(left));
	if (nd->ctx == NULL || nd->ctx->err != 0) {
		r->st.connect_failures++;
		sluice__redis_drop(nd);
		schedule_retry(r, nd);
		return -1;
	}
	if (sluice__redis_load_script(r, nd, deadline_ns) != 0) {
		r->st.connect_failures++;
		schedule_retry(r, nd);
		return -1;
	}
	r->st.connects++;
	nd->backoff_ns = r->backoff_min_ns;
	nd->next_attempt_ns = 0;
	if (r->slot_node != NULL && nd == &r->nodes[0])
		sluice__redis_refresh_slots(r, nd, deadline_ns);
	/* sluice__redis_refresh_slots() drops the connection if its reply is lost or
	 * unreadable (fuzz/corpus/redis/regress_cluster_slots_drop). */
	return nd->ctx != NULL ? 0 : -1;
}

#endif /* SLUICE_WITH_REDIS */
