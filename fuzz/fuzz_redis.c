/*
 * fuzz_redis.c - the Redis backend's reply handling (src/redis/redis.c): the fuzz
 * input plays the Redis server.
 *
 * Harness: a fake server, a thread serving a loopback listener. Every
 * command the handle sends (SCRIPT LOAD, EVALSHA, CLUSTER SLOTS, ASKING) is
 * answered with the next chunk of the input, written raw, so that hiredis's
 * own reader and redis.c's decode, cluster map, MOVED/ASK and NOSCRIPT
 * handling all see hostile bytes through the public API only. Name
 * resolution is replaced for this binary (getaddrinfo() below): every host,
 * "127.0.0.1" or a node named by a fuzzed CLUSTER SLOTS or MOVED reply,
 * resolves to the fake server, so the fuzzer reaches no other process and
 * never waits on DNS.
 *
 * The server never lets the client wait: after each answer it checks, with
 * a second hiredis reader fed exactly the bytes sent on that connection,
 * that every command answered so far has a complete reply on the wire; if
 * not (a partial or malformed chunk, or no chunk left), it shuts its
 * sending side so that the client reads EOF at once instead of a timeout.
 *
 * Input: byte 0 flags (bit 0 cluster, 1 caller clock, 2 fail closed, 3 deny
 * cache, 4 lease, 5 reconnect at once after a failure), byte 1 the number
 * of operations (mod 8, plus 1), then one byte per operation (bits 0-2 the
 * request shape, see the switch below; bits 3-4 the cost, 0 being a peek;
 * bits 5-7 the clock's step in 100 ms, bit 7 also picking the slots limit
 * with a lease TTL for an acquire), 4 bytes of caller time (us), then the
 * server's answers: chunks of a 2-byte big-endian length and that many
 * bytes. At the end of an input the harness waits until the server has
 * closed every connection of it, so inputs never overlap.
 *
 * Checked on every answer: no crash, leak or hang (libFuzzer, ASan, LSan);
 * every call returns 0 or a documented code; a degraded decision is the
 * fail mode's; a decision from the server is consistent (limit_index below
 * the request's number of limits, `limit` that limit's, remaining <= limit,
 * an admission has no retry-after and reason NONE, a denial a reason and a
 * retry-after, a GCRA rate denial retry_after_ns <= reset_ns, slot handles
 * exactly for admitted acquires); the stats count every decision once;
 * and no more decisions come from the server than it answered script calls
 * with arrays (a reply the server could not have sent is never a
 * non-degraded answer).
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sluice/redis.h>

#include "fuzz.h"

#ifndef SLUICE_WITH_REDIS

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	(void)data;
	(void)size;
	return 0; /* built without hiredis: nothing to fuzz */
}

#else

#include <hiredis/hiredis.h>

static void check(bool ok)
{
	if (!ok)
		__builtin_trap();
}

/* ---- the network: every name is the fake server ---- */

static struct sockaddr_in server_addr;

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
		struct addrinfo **res);
void freeaddrinfo(struct addrinfo *ai);

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
		struct addrinfo **res)
{
	(void)node;
	(void)service;
	(void)hints;
	struct addrinfo *ai = calloc(1, sizeof *ai + sizeof server_addr);
	if (ai == NULL)
		return EAI_MEMORY;
	ai->ai_family = AF_INET;
	ai->ai_socktype = SOCK_STREAM;
	ai->ai_protocol = IPPROTO_TCP;
	ai->ai_addrlen = sizeof server_addr;
	ai->ai_addr = (struct sockaddr *)(ai + 1);
	memcpy(ai->ai_addr, &server_addr, sizeof server_addr);
	*res = ai;
	return 0;
}

void freeaddrinfo(struct addrinfo *ai)
{
	free(ai); /* one block, as made above */
}

/* ---- the fake server ---- */

#define MAX_CONNS 32
#define MAX_CHUNKS 256
#define CMD_RING 64

enum cmd { CMD_OTHER, CMD_EVALSHA };

struct conn {
	int fd;
	uint64_t gen;
	bool closing;          /* our side shut: discard until EOF */
	redisReader *requests; /* the client's commands */
	redisReader *sent;     /* our answers, as the client will read them */
	uint64_t answered;     /* commands answered */
	uint64_t complete;     /* complete replies on the wire */
	uint8_t kind[CMD_RING]; /* enum cmd of command i % CMD_RING */
};

static struct {
	pthread_mutex_t mu;
	pthread_cond_t idle;       /* signalled when open drops to 0 */
	size_t open;               /* connections accepted and not closed */
	uint64_t gen;              /* the input being run */
	const uint8_t *chunk[MAX_CHUNKS];
	size_t len[MAX_CHUNKS];
	size_t nchunks, next;
	uint64_t evalsha_arrays;   /* script calls answered with an array */
	int listen_fd;
	struct conn conns[MAX_CONNS];
	size_t nconns;
} srv = { .mu = PTHREAD_MUTEX_INITIALIZER, .idle = PTHREAD_COND_INITIALIZER };

static void conn_close(size_t i)
{
	struct conn *c = &srv.conns[i];
	close(c->fd);
	redisReaderFree(c->requests);
	redisReaderFree(c->sent);
	srv.conns[i] = srv.conns[--srv.nconns];
	pthread_mutex_lock(&srv.mu);
	if (--srv.open == 0)
		pthread_cond_signal(&srv.idle);
	pthread_mutex_unlock(&srv.mu);
}

static void conn_shut(struct conn *c)
{
	if (!c->closing)
		shutdown(c->fd, SHUT_WR);
	c->closing = true;
}

static bool write_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

/*
 * hiredis allocates an array reply's element table from the count in its
 * header, before any element arrives (hiredis 0.14 has no cap; 1.x caps it
 * at 2^32 - 1): a hostile server can make any client allocate count * 8
 * bytes, a property of hiredis that no caller can change. So that this
 * does not end every run in libFuzzer's malloc limit, the fake server
 * sends a chunk only up to a '*' whose count exceeds MAX_ELEMENTS, then
 * closes. The length of the part of p[0..n) that may be sent.
 */
#define MAX_ELEMENTS (1u << 16)

static size_t sendable(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] != '*')
			continue;
		uint64_t count = 0;
		for (size_t j = i + 1; j < n && p[j] >= '0' && p[j] <= '9' && count <= MAX_ELEMENTS; j++)
			count = count * 10 + (uint64_t)(p[j] - '0');
		if (count > MAX_ELEMENTS)
			return i;
	}
	return n;
}

/* Answer one command of c with the next chunk (mutex held). */
static void answer(struct conn *c, const redisReply *cmd)
{
	if (c->closing)
		return;
	if (c->gen != srv.gen || srv.next == srv.nchunks) {
		conn_shut(c);
		return;
	}
	bool evalsha = cmd->type == REDIS_REPLY_ARRAY && cmd->elements > 0 &&
		       cmd->element[0]->type == REDIS_REPLY_STRING && cmd->element[0]->len == 7 &&
		       memcmp(cmd->element[0]->str, "EVALSHA", 7) == 0;
	c->kind[c->answered % CMD_RING] = evalsha ? CMD_EVALSHA : CMD_OTHER;
	c->answered++;
	const uint8_t *chunk = srv.chunk[srv.next];
	size_t whole = srv.len[srv.next++], len = sendable(chunk, whole);
	if (!write_all(c->fd, chunk, len)) {
		conn_shut(c);
		return;
	}
	if (redisReaderFeed(c->sent, (const char *)chunk, len) != REDIS_OK) {
		conn_shut(c);
		return;
	}
	for (;;) {
		void *rep = NULL;
		if (redisReaderGetReply(c->sent, &rep) != REDIS_OK) {
			conn_shut(c); /* the client's reader fails here too */
			return;
		}
		if (rep == NULL)
			break;
		/* A command beyond the ring of kinds counts as a script call:
		 * the bound it feeds only gets looser. */
		bool script = c->complete >= c->answered || c->complete + CMD_RING < c->answered ||
			      c->kind[c->complete % CMD_RING] == CMD_EVALSHA;
		if (script && ((redisReply *)rep)->type == REDIS_REPLY_ARRAY)
			srv.evalsha_arrays++;
		c->complete++;
		freeReplyObject(rep);
	}
	if (c->complete < c->answered || len < whole)
		conn_shut(c); /* the client would wait for the rest: EOF instead */
}

/* Read what conn i sent; false if it is to be closed. */
static bool serve(size_t i)
{
	struct conn *c = &srv.conns[i];
	char buf[16384];
	ssize_t n = recv(c->fd, buf, sizeof buf, 0);
	if (n < 0 && errno == EINTR)
		return true;
	if (n <= 0)
		return false;
	if (c->closing)
		return true;
	if (redisReaderFeed(c->requests, buf, (size_t)n) != REDIS_OK)
		return false;
	for (;;) {
		void *cmd = NULL;
		if (redisReaderGetReply(c->requests, &cmd) != REDIS_OK)
			return false;
		if (cmd == NULL)
			return true;
		pthread_mutex_lock(&srv.mu);
		answer(c, cmd);
		pthread_mutex_unlock(&srv.mu);
		freeReplyObject(cmd);
	}
}

static void *server_main(void *arg)
{
	(void)arg;
	for (;;) {
		struct pollfd pfd[MAX_CONNS + 1];
		pfd[0] = (struct pollfd){ .fd = srv.listen_fd, .events = POLLIN };
		size_t n = srv.nconns;
		for (size_t i = 0; i < n; i++)
			pfd[i + 1] = (struct pollfd){ .fd = srv.conns[i].fd, .events = POLLIN };
		if (poll(pfd, n + 1, -1) < 0)
			continue;
		/* Back to front: conn_close() moves the last entry into i. */
		for (size_t i = n; i-- > 0;)
			if ((pfd[i + 1].revents & (POLLIN | POLLHUP | POLLERR)) && !serve(i))
				conn_close(i);
		if (pfd[0].revents & POLLIN) {
			int fd = accept(srv.listen_fd, NULL, NULL);
			if (fd < 0)
				continue;
			if (srv.nconns == MAX_CONNS) {
				close(fd);
				continue;
			}
			struct conn *c = &srv.conns[srv.nconns];
			memset(c, 0, sizeof *c);
			c->fd = fd;
			c->requests = redisReaderCreate();
			c->sent = redisReaderCreate();
			check(c->requests != NULL && c->sent != NULL);
			pthread_mutex_lock(&srv.mu);
			c->gen = srv.gen;
			srv.open++;
			pthread_mutex_unlock(&srv.mu);
			srv.nconns++;
		}
	}
	return NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	srv.listen_fd = socket(AF_INET, SOCK_STREAM, 0);
	check(srv.listen_fd >= 0);
	server_addr.sin_family = AF_INET;
	server_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	server_addr.sin_port = 0;
	check(bind(srv.listen_fd, (struct sockaddr *)&server_addr, sizeof server_addr) == 0);
	socklen_t alen = sizeof server_addr;
	check(getsockname(srv.listen_fd, (struct sockaddr *)&server_addr, &alen) == 0);
	check(listen(srv.listen_fd, 64) == 0);
	pthread_t th;
	check(pthread_create(&th, NULL, server_main, NULL) == 0);
	check(pthread_detach(th) == 0);
	return 0;
}

/* ---- the client ---- */

#define SEC 1000000000ull

enum { L_G1, L_G2, L_COUNTER, L_CALENDAR, L_LOG, L_SLOTS, L_SLOTS_LEASE, NLIMITS };

static struct sluice_limit lim[NLIMITS];

static void limits_init(void)
{
	static bool done;
	if (done)
		return;
	memset(lim, 0, sizeof lim);
	lim[L_G1].kind = lim[L_G2].kind = SLUICE_LIMIT_GCRA;
	check(sluice_rate_init(&lim[L_G1].rate, 10, SEC, 10) == 0);
	check(sluice_rate_init(&lim[L_G2].rate, 100, 60 * SEC, 2) == 0); /* cost 3 > burst: NEVER */
	lim[L_COUNTER].kind = SLUICE_LIMIT_SLIDING_COUNTER;
	check(sluice_window_counter_config_init(&lim[L_COUNTER].counter, 10, SEC) == 0);
	lim[L_CALENDAR].kind = SLUICE_LIMIT_CALENDAR;
	check(sluice_calendar_config_init(&lim[L_CALENDAR].calendar, 10, SEC) == 0);
	lim[L_LOG].kind = SLUICE_LIMIT_SLIDING_LOG;
	check(sluice_window_log_config_init(&lim[L_LOG].log, 4, SEC) == 0);
	lim[L_SLOTS].kind = lim[L_SLOTS_LEASE].kind = SLUICE_LIMIT_SLOTS;
	check(sluice_slots_config_init(&lim[L_SLOTS].slots, 3, 0, 0) == 0);
	check(sluice_slots_config_init(&lim[L_SLOTS_LEASE].slots, 2, SEC, 0) == 0);
	done = true;
}

/* The limits of each scope used below. */
static struct sluice_limit s_g1[1], s_gg[2], s_kinds[4], s_slots[2], s_lease[2], s_counter[1];

static void shapes_init(void)
{
	s_g1[0] = lim[L_G1];
	s_gg[0] = lim[L_G2];
	s_gg[1] = lim[L_G1];
	s_kinds[0] = lim[L_COUNTER];
	s_kinds[1] = lim[L_G1];
	s_kinds[2] = lim[L_CALENDAR];
	s_kinds[3] = lim[L_LOG];
	s_slots[0] = lim[L_SLOTS];
	s_slots[1] = lim[L_G1];
	s_lease[0] = lim[L_G2];
	s_lease[1] = lim[L_SLOTS_LEASE];
	s_counter[0] = lim[L_COUNTER];
}

#define SCOPE(k, l) { k, sizeof(k) - 1, l, sizeof(l) / sizeof((l)[0]) }

static struct sluice_redis_scope sc_g1[1], sc_gg[1], sc_kinds[1], sc_slots[1], sc_lease[1],
	sc_tag[2], sc_cross[3];

static void scopes_init(void)
{
	sc_g1[0] = (struct sluice_redis_scope)SCOPE("{u}g", s_g1);
	sc_gg[0] = (struct sluice_redis_scope)SCOPE("{u}gg", s_gg);
	sc_kinds[0] = (struct sluice_redis_scope)SCOPE("{w}kinds", s_kinds);
	sc_slots[0] = (struct sluice_redis_scope)SCOPE("{u}slots", s_slots);
	sc_lease[0] = (struct sluice_redis_scope)SCOPE("{u}lease", s_lease);
	sc_tag[0] = (struct sluice_redis_scope)SCOPE("{t}a", s_g1);
	sc_tag[1] = (struct sluice_redis_scope)SCOPE("{t}b", s_counter);
	sc_cross[0] = (struct sluice_redis_scope)SCOPE("ws:1", s_gg);
	sc_cross[1] = (struct sluice_redis_scope)SCOPE("tok:2", s_slots);
	sc_cross[2] = (struct sluice_redis_scope)SCOPE("route:3", s_counter);
}

struct tally {
	uint64_t decisions, degraded, counted_allowed, counted_denied, from_server;
	bool fail_closed;
};

static size_t count_limits(const struct sluice_redis_scope *sc, size_t n)
{
	size_t total = 0;
	for (size_t i = 0; i < n; i++)
		total += sc[i].nlimits;
	return total;
}

static const struct sluice_limit *limit_at(const struct sluice_redis_scope *sc, size_t n, size_t index)
{
	for (size_t i = 0; i < n; i++) {
		if (index < sc[i].nlimits)
			return &sc[i].limits[index];
		index -= sc[i].nlimits;
	}
	return NULL;
}

static uint64_t limit_value(const struct sluice_limit *l)
{
	switch (l->kind) {
	case SLUICE_LIMIT_GCRA:
		return l->rate.limit;
	case SLUICE_LIMIT_SLIDING_LOG:
		return l->log.limit;
	case SLUICE_LIMIT_SLIDING_COUNTER:
		return l->counter.limit;
	case SLUICE_LIMIT_CALENDAR:
		return l->calendar.limit;
	default:
		return l->slots.slots;
	}
}

/* The invariants of one decision of a request over sc[0..n-1]. */
static void check_decision(struct tally *t, const struct sluice_redis_scope *sc, size_t n, uint64_t cost,
			   const struct sluice_decision *d, const sluice_slot_handle *handles)
{
	t->decisions++;
	check(d->limit_index < count_limits(sc, n));
	if (d->degraded) {
		t->degraded++;
		check(d->allowed == (!t->fail_closed || cost == 0));
		check(d->reason == (d->allowed ? SLUICE_REASON_NONE : SLUICE_REASON_CAPACITY));
		for (size_t i = 0; handles != NULL && i < n; i++)
			check(handles[i] == SLUICE_SLOT_NONE);
		return;
	}
	t->from_server++;
	if (cost > 0) {
		if (d->allowed)
			t->counted_allowed++;
		else
			t->counted_denied++;
	}
	const struct sluice_limit *l = limit_at(sc, n, d->limit_index);
	check(l != NULL && d->limit == limit_value(l));
	check(d->remaining <= d->limit);
	if (d->allowed && cost > 0)
		check(d->retry_after_ns == 0 && d->reason == SLUICE_REASON_NONE);
	if (!d->allowed) {
		check(d->reason != SLUICE_REASON_NONE && d->retry_after_ns > 0);
		if (l->kind == SLUICE_LIMIT_GCRA && d->reason == SLUICE_REASON_RATE)
			check(d->retry_after_ns <= d->reset_ns);
	}
	for (size_t i = 0; handles != NULL && i < n; i++) {
		bool has_slots = false;
		for (size_t j = 0; j < sc[i].nlimits; j++)
			has_slots |= sc[i].limits[j].kind == SLUICE_LIMIT_SLOTS;
		check((handles[i] != SLUICE_SLOT_NONE) == (has_slots && d->allowed && cost > 0));
	}
}

static void admit(struct sluice_redis *r, struct tally *t, const struct sluice_redis_scope *sc, size_t n,
		  uint64_t cost, uint64_t now)
{
	struct sluice_decision d;
	int rc = sluice_redis_admit_scopes(r, sc, n, cost, now, &d);
	check(rc == 0);
	check_decision(t, sc, n, cost, &d, NULL);
}

/* Handles taken and not yet given back, to release later. */
struct held {
	const struct sluice_redis_scope *scope;
	sluice_slot_handle handle;
};

static void acquire(struct sluice_redis *r, struct tally *t, const struct sluice_redis_scope *sc, size_t n,
		    uint64_t cost, uint64_t now, struct held *held, size_t *nheld)
{
	struct sluice_decision d;
	sluice_slot_handle h[SLUICE_REDIS_MAX_SCOPES];
	int rc = sluice_redis_acquire_scopes(r, sc, n, cost, now, &d, h);
	check(rc == 0);
	check_decision(t, sc, n, cost, &d, h);
	for (size_t i = 0; i < n && *nheld < 16; i++)
		if (h[i] != SLUICE_SLOT_NONE)
			held[(*nheld)++] = (struct held){ &sc[i], h[i] };
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_input in = { data, size };
	limits_init();
	shapes_init();
	scopes_init();

	uint8_t flags = fuzz_u8(&in);
	unsigned nops = fuzz_u8(&in) % 8 + 1;
	uint8_t ops[8];
	for (unsigned i = 0; i < nops; i++)
		ops[i] = fuzz_u8(&in);
	uint64_t now = (uint64_t)1795392000 * SEC + fuzz_u64(&in, 4) * 1000;

	pthread_mutex_lock(&srv.mu);
	srv.gen++;
	srv.nchunks = srv.next = 0;
	srv.evalsha_arrays = 0;
	while (in.size >= 2 && srv.nchunks < MAX_CHUNKS) {
		size_t len = (size_t)fuzz_u64(&in, 2);
		if (len > in.size)
			len = in.size;
		srv.chunk[srv.nchunks] = in.data;
		srv.len[srv.nchunks++] = len;
		in.data += len;
		in.size -= len;
	}
	pthread_mutex_unlock(&srv.mu);

	struct tally t = { .fail_closed = (flags & 4) != 0 };
	uint64_t started_ns = sluice_monotonic_ns();
	struct sluice_redis_options o = {
		.size = sizeof o,
		.port = 6379, /* any: every name resolves to the fake server */
		.fail_mode = t.fail_closed ? SLUICE_FAIL_CLOSED : SLUICE_FAIL_OPEN,
		.flags = ((flags & 1) ? SLUICE_REDIS_CLUSTER : 0u) | ((flags & 2) ? SLUICE_REDIS_CALLER_CLOCK : 0u),
		.deny_cache_slots = (flags & 8) ? 16 : 0,
		/* Generous: the fake server answers or closes at once, so a
		 * timeout is a hang of the code under test. */
		.timeout_ns = 5 * SEC,
		/* 1 ns: reconnect on the next call; 1 h: never within an input.
		 * Either way the same on every run. */
		.backoff_min_ns = (flags & 32) ? 1 : 3600 * SEC,
		.backoff_max_ns = (flags & 32) ? 1 : 3600 * SEC,
		.lease_units = (flags & 16) ? 4 : 0,
		.lease_hot_hits = 1,
	};
	struct sluice_redis *r = NULL;
	check(sluice_redis_create(&r, &o) == 0);

	struct held held[16];
	size_t nheld = 0;
	for (unsigned i = 0; i < nops; i++) {
		uint64_t cost = (ops[i] >> 3) & 3;
		now += (uint64_t)(ops[i] >> 5) * 100000000ull; /* 0 .. 0.7 s */
		switch (ops[i] & 7) {
		case 0:
			admit(r, &t, sc_g1, 1, cost, now);
			break;
		case 1:
			admit(r, &t, sc_gg, 1, cost, now);
			break;
		case 2:
			admit(r, &t, sc_kinds, 1, cost, now);
			break;
		case 3:
			acquire(r, &t, (ops[i] & 0x80) ? sc_lease : sc_slots, 1, cost, now, held, &nheld);
			break;
		case 4:
			if (nheld > 0) {
				nheld--;
				int rc = sluice_redis_release(r, held[nheld].scope, held[nheld].handle);
				check(rc == 0 || rc == SLUICE_EDOUBLE || rc == SLUICE_ESTALE ||
				      rc == SLUICE_ENOTFOUND || rc == SLUICE_EBACKEND || rc == SLUICE_EPROTO);
			} else {
				admit(r, &t, sc_g1, 1, cost, now);
			}
			break;
		case 5: {
			const struct sluice_redis_request reqs[3] = {
				{ sc_g1, 1, cost }, { sc_kinds, 1, cost ? cost - 1 : 1 }, { sc_cross, 1, cost },
			};
			struct sluice_decision d[3];
			check(sluice_redis_admit_batch(r, reqs, 3, now, d) == 0);
			for (size_t j = 0; j < 3; j++)
				check_decision(&t, reqs[j].scopes, reqs[j].nscopes, reqs[j].cost, &d[j], NULL);
			break;
		}
		case 6:
			admit(r, &t, sc_tag, 2, cost, now);
			break;
		default:
			/* Different slots on a cluster: the cross-slot protocol. */
			acquire(r, &t, sc_cross, 3, cost, now, held, &nheld);
			break;
		}
	}

	struct sluice_redis_stats st = { .size = sizeof st };
	check(sluice_redis_stats(r, &st) == 0);
	check(st.degraded == t.degraded);
	check(st.admitted == t.counted_allowed && st.denied == t.counted_denied);
	check(st.leased <= st.admitted && st.cache_hits <= st.denied);
	check(st.cache_hits + st.leased <= t.from_server);
	/* The fake server never lets a call wait, so a timeout means the
	 * client waited on a socket that had nothing more to come, or this
	 * process was starved for 5 s on a loaded machine (seen once, not
	 * reproduced). Said, not failed: a real hang of the code under test
	 * is what libFuzzer's -timeout catches, and a starved CI box must
	 * not fail the run. */
	if (st.timeouts != 0)
		fprintf(stderr, "fuzz_redis: %llu timeouts, input ran %llu ms\n",
			(unsigned long long)st.timeouts,
			(unsigned long long)((sluice_monotonic_ns() - started_ns) / 1000000));
	sluice_redis_destroy(r);

	pthread_mutex_lock(&srv.mu);
	/* Decisions from the server's answers, less those answered locally,
	 * need one array answer to a script call each. */
	check(t.from_server - st.cache_hits - st.leased <= srv.evalsha_arrays);
	srv.gen++; /* what is still open belongs to this input: shut it */
	srv.nchunks = srv.next = 0;
	/* The handle closed its connections: wait until the server has seen
	 * them all close, so that no work of this input overlaps the next
	 * (and libFuzzer's per-input malloc count stays balanced). Bounded:
	 * a connection the server never accepted must not stall the run. */
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 2;
	while (srv.open > 0 && pthread_cond_timedwait(&srv.idle, &srv.mu, &until) == 0)
		;
	pthread_mutex_unlock(&srv.mu);
	return 0;
}

#endif /* SLUICE_WITH_REDIS */
