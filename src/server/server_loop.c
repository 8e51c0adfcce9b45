/*
 * server_loop.c - one epoll event loop per thread.
 *
 * Every thread owns a listening socket bound to the same address with
 * SO_REUSEPORT (the kernel spreads new connections over them), an epoll
 * instance, an eventfd that asks it to stop, and the connections it
 * accepted: no connection state is shared between threads, so the loop takes
 * no lock. The only shared state is the decider (lock-free) and the
 * per-thread counters (relaxed atomics, read by the admin endpoint).
 *
 * The admin listener (--admin), when there is one, is one more socket in
 * the first loop's epoll set; its connections answer only GET /metrics and
 * GET /stats (server_admin.c), one response each (then close), and count
 * in none of the traffic counters. The traffic port has no such paths: a
 * request for /stats there is limited and answered like any other.
 *
 * Connections are level-triggered: a connection waits either for input
 * (EPOLLIN) or, while a response is partly written, for room to write
 * (EPOLLOUT) and then reads nothing more (backpressure: a client that does
 * not read its answers stops being read). Input is one head-sized buffer;
 * requests may be pipelined; a request body (Content-Length) is read and
 * discarded. Responses are appended to a per-connection output buffer and
 * written at once with send(). A response that holds concurrency slots is
 * the last one processed until its last byte has been handed to the kernel:
 * then the slots are given back (the request's head, which the release
 * needs, stays in the input buffer until then) and processing resumes.
 *
 * Shutdown: the eventfd closes the listener; idle connections close at once,
 * busy ones after their current response (sent with Connection: close), and
 * whatever is left after the drain timeout is closed.
 */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

struct conn {
	struct conn *prev, *next;
	int fd;
	bool closing;  /* close once the output has drained */
	int waiting;   /* WAIT_*: what epoll reports for it */
	bool head_only; /* the request being answered is a HEAD */
	uint64_t send_at_ns; /* --work-ms: the response goes out then (0: now) */
	bool lingering; /* write side shut: reading and discarding until EOF */
	bool admin;     /* accepted on the admin listener */
	uint64_t body_left;
	uint64_t last_ns;
	size_t in_len, out_len, out_off;
	/* A response holding slots is being written: its request (head_len
	 * bytes at the start of `in`, then held_body bytes of body) is
	 * consumed only after the release. */
	bool held;
	size_t held_head_len;
	uint64_t held_body;
	struct server_request held_req;
	struct server_verdict verdict; /* scratch of handle_request; kept while held */
	char peer_ip[INET6_ADDRSTRLEN];
	size_t peer_ip_len;
	char in[SERVER_MAX_HEAD];
	char out[SERVER_OUT_CAP];
};

struct loop {
	struct server_counters counters; /* first: its own cache line */
	struct server *srv;
	pthread_t thread;
	bool started;
	int epfd, listen_fd, event_fd;
	int admin_fd; /* the admin listener (first loop only; -1: none) */
	struct conn *conns;
	unsigned nconns;
	bool draining;
	uint64_t drain_deadline_ns;
	uint64_t last_sweep_ns;
	uint64_t now_ns; /* monotonic, read once per wake-up */
	uint64_t date_s;
	char date[30];
};

struct server {
	struct server_config cfg;
	struct server_decider *decider;
	unsigned nloops;
	struct loop *loops;
};

/* Tags for the non-connection fds of a loop in epoll's data.ptr. */
static char tag_listen, tag_event, tag_admin;

static void count(_Atomic uint64_t *c)
{
	/* A statistic; the admin endpoint reads it while loops run, the final sum after
	 * pthread_join (which orders it). */
	atomic_fetch_add_explicit(c, 1, memory_order_relaxed); /* relaxed: a statistic */
}

static uint64_t load(const _Atomic uint64_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed); /* relaxed: a recent value suffices */
}

/* What a connection waits for: input, room to write, or nothing (a
 * response held back by --work-ms; errors and hang-ups still report). */
enum { WAIT_IN, WAIT_OUT, WAIT_NONE };

static void watch(struct loop *lp, struct conn *c, int what)
{
	static const uint32_t events[] = { EPOLLIN, EPOLLOUT, 0 };
	struct epoll_event ev = { .events = events[what], .data.ptr = c };

	if (c->waiting != what && epoll_ctl(lp->epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0)
		c->waiting = what;
}

/* Give back the held request's slots and consume the request. */
static void finish_held(struct loop *lp, struct conn *c)
{
	server_decider_release(lp->srv->decider, &c->held_req, &c->verdict);
	c->held = false;
	memmove(c->in, c->in + c->held_head_len, c->in_len - c->held_head_len);
	c->in_len -= c->held_head_len;
	c->body_left = c->held_body;
}

static void conn_close(struct loop *lp, struct conn *c)
{
	if (c->held)
		finish_held(lp, c);
	close(c->fd); /* also removes it from the epoll set */
	if (c->prev)
		c->prev->next = c->next;
	else
		lp->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	lp->nconns--;
	free(c);
}

/* Write what is buffered. false: the connection is gone. */
static bool conn_flush(struct loop *lp, struct conn *c)
{
	if (c->send_at_ns != 0)
		return true; /* simulated work in progress */
	while (c->out_off < c->out_len) {
		ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			conn_close(lp, c);
			return false;
		}
		c->out_off += (size_t)w;
	}
	if (c->out_off == c->out_len) {
		c->out_off = c->out_len = 0;
		if (c->held)
			finish_held(lp, c);
	}
	return true;
}

/* Append a traffic response (counted by status). */
static void append_response(struct loop *lp, struct conn *c, int status, bool keep_alive,
			    const char *date, const char *extra, size_t extra_len,
			    const char *content_type, const char *body, size_t body_len)
{
	size_t n = server_write_response(c->out + c->out_len, SERVER_OUT_CAP - c->out_len, status,
					 date, keep_alive, extra, extra_len, content_type, body,
					 body_len);
	if (n == 0) {
		/* Cannot happen within SERVER_MAX_RESPONSE; answer something. */
		n = server_write_response(c->out + c->out_len, SERVER_OUT_CAP - c->out_len, 500,
					  date, false, NULL, 0, NULL, NULL, 0);
		keep_alive = false;
		status = 500;
	}
	count(&lp->counters.by_status[server_status_index(status)]);
	/* HEAD: the same fields (Content-Length included), no body (RFC 9110
	 * 9.3.2); the body is the tail of what was written. */
	if (c->head_only && n > body_len)
		n -= body_len;
	c->out_len += n;
	if (!keep_alive)
		c->closing = true;
}

static void answer_error(struct loop *lp, struct conn *c, int status)
{
	char body[96];
	int n = snprintf(body, sizeof body, "{\"error\":{\"code\":%d,\"message\":\"%s\"}}", status,
			 server_reason_phrase(status));

	count(&lp->counters.requests);
	count(&lp->counters.errors);
	append_response(lp, c, status, false, lp->date, NULL, 0, "application/json", body, (size_t)n);
}

/* The counters summed over every loop (relaxed loads: recent values). */
static void sum_counters(const struct server *srv, struct server_totals *t)
{
	memset(t, 0, sizeof *t);
	for (unsigned i = 0; i < srv->nloops; i++) {
		const struct server_counters *k = &srv->loops[i].counters;
		t->requests += load(&k->requests);
		t->ok += load(&k->ok);
		t->limited += load(&k->limited);
		t->errors += load(&k->errors);
		t->accepted += load(&k->accepted);
		t->dry_run += load(&k->dry_run);
		for (unsigned j = 0; j < SERVER_NSTATUS; j++)
			t->by_status[j] += load(&k->by_status[j]);
	}
}

static bool is_path(const struct server_request *req, const char *path)
{
	size_t n = strlen(path);
	return req->path_len >= n && memcmp(req->path, path, n) == 0 &&
	       (req->path_len == n || req->path[n] == '?');
}

/* An admin request: /metrics, /stats (GET or HEAD), else 404 or 405. The
 * output buffer is empty (conn_process), so the answer may use all of it. */
static void answer_admin(struct loop *lp, struct conn *c, const struct server_request *req)
{
	static const char metrics_type[] = "text/plain; version=0.0.4; charset=utf-8";
	char body[SERVER_OUT_CAP - 512];
	struct server_totals t;
	size_t blen = 0;
	int status = 200;
	const char *ctype = "application/json";
	bool get = (req->method_len == 3 && memcmp(req->method, "GET", 3) == 0) || c->head_only;

	sum_counters(lp->srv, &t);
	if (is_path(req, "/metrics")) {
		blen = server_admin_metrics(lp->srv->decider, &t, body, sizeof body);
		ctype = metrics_type;
	} else if (is_path(req, "/stats")) {
		blen = server_admin_stats(&t, body, sizeof body);
	} else {
		status = 404;
	}
	if (status == 200 && !get)
		status = 405;
	else if (status == 200 && blen == 0)
		status = 500; /* cannot happen with SERVER_MAX_LIMITS limits */
	if (status != 200) {
		blen = (size_t)snprintf(body, sizeof body, "{\"error\":{\"code\":%d,\"message\":\"%s\"}}",
					status, server_reason_phrase(status));
		ctype = "application/json";
	}
	size_t n = server_write_response(c->out, SERVER_OUT_CAP, status, lp->date, false,
					 status == 405 ? "Allow: GET, HEAD\r\n" : NULL,
					 status == 405 ? 18 : 0, ctype, body, blen);
	if (n == 0)
		n = server_write_response(c->out, SERVER_OUT_CAP, 500, lp->date, false, NULL, 0,
					  NULL, NULL, 0);
	if (c->head_only && n > blen)
		n -= blen;
	c->out_len = n;
	c->closing = true;
}

/* Answer one request. The verdict stays in c->verdict (for a later release
 * when it holds slots). */
static void handle_request(struct loop *lp, struct conn *c, struct server_request *req,
			   bool keep_alive)
{
	static const char ok_body[] = "{\"ok\":true}";
	struct server *srv = lp->srv;
	struct server_verdict *v = &c->verdict;
	char headers[1024];
	char body[512];
	size_t hlen = 0, blen, size;

	if (lp->draining)
		keep_alive = false;
	if (c->admin) {
		answer_admin(lp, c, req);
		return;
	}
	count(&lp->counters.requests);
	if (srv->cfg.no_limit) {
		count(&lp->counters.ok);
		append_response(lp, c, 200, keep_alive, lp->date, NULL, 0, "application/json", ok_body,
				sizeof ok_body - 1);
		return;
	}

	req->peer_ip = c->peer_ip;
	req->peer_ip_len = c->peer_ip_len;
	server_decide(srv->decider, req, v);
	if (v->status != 200 && !v->refused) {
		/* The matcher refused the target (400) or the engine failed (503). */
		count(&lp->counters.errors);
		append_response(lp, c, v->status, false, lp->date, NULL, 0, NULL, NULL, 0);
		return;
	}
	if (v->limited && v->nlimits > 0 &&
	    sluice_http_render_custom(v->families, v->custom, v->limits, v->nlimits, v->now_unix_ns, headers,
				      sizeof headers, &size, NULL, 0, NULL) == SLUICE_OK)
		hlen = size - 1;
	if (v->engine.dry_run_refused != 0) {
		count(&lp->counters.dry_run);
		hlen += server_dry_run_header(srv->decider, v, headers + hlen, sizeof headers - hlen);
	}
	if (v->refused) {
		const char *ctype = sluice_http_body_content_type(v->body_style);
		count(&lp->counters.limited);
		blen = 0;
		if (v->answered) /* the policy's answer, rendered by server_decide() */
			append_response(lp, c, v->status, keep_alive, lp->date, headers, hlen,
					v->body_len ? v->content_type : NULL, v->body, v->body_len);
		else {
			if (sluice_http_render_body(v->body_style, &v->decision, body, sizeof body,
						    &size) == SLUICE_OK)
				blen = size - 1;
			append_response(lp, c, v->status, keep_alive, lp->date, headers, hlen,
					blen ? ctype : NULL, body, blen);
		}
	} else {
		count(&lp->counters.ok);
		append_response(lp, c, 200, keep_alive, lp->date, headers, hlen, "application/json",
				ok_body, sizeof ok_body - 1);
		if (srv->cfg.work_ns > 0) {
			/* Simulated work: the answer (and its slots) waits. */
			c->send_at_ns = lp->now_ns + srv->cfg.work_ns;
			if (c->send_at_ns == 0)
				c->send_at_ns = 1;
		}
	}
}

/* Answer the complete requests in the input buffer while the output buffer
 * has room for one more response. */
static void conn_process(struct loop *lp, struct conn *c)
{
	while (!c->closing && !c->held && c->send_at_ns == 0) {
		if (c->body_left > 0) {
			size_t k = c->in_len < c->body_left ? c->in_len : (size_t)c->body_left;
			memmove(c->in, c->in + k, c->in_len - k);
			c->in_len -= k;
			c->body_left -= k;
			if (c->body_left > 0)
				return;
		}
		if (c->in_len == 0)
			return;
		if (SERVER_OUT_CAP - c->out_len < SERVER_MAX_RESPONSE || (c->admin && c->out_len != 0))
			return;

		struct server_request req;
		size_t head_len;
		uint64_t content_length;
		bool keep_alive;
		int status;
		switch (server_parse_request(c->in, c->in_len, lp->srv->cfg.max_body, &req, &head_len,
					     &content_length, &keep_alive, &status)) {
		case SERVER_PARSE_INCOMPLETE:
			return;
		case SERVER_PARSE_ERROR:
			c->head_only = false;
			if (c->admin) {
				c->closing = true; /* a bad admin request: no answer, not counted */
				c->in_len = 0;
				return;
			}
			answer_error(lp, c, status);
			c->in_len = 0;
			return;
		case SERVER_PARSE_OK:
			c->verdict.engine.slot_count = 0;
			c->head_only = req.method_len == 4 && memcmp(req.method, "HEAD", 4) == 0;
			handle_request(lp, c, &req, keep_alive);
			if (server_verdict_holds(&c->verdict)) {
				c->held = true;
				c->held_req = req;
				c->held_head_len = head_len;
				c->held_body = content_length;
				return;
			}
			memmove(c->in, c->in + head_len, c->in_len - head_len);
			c->in_len -= head_len;
			c->body_left = content_length;
			break;
		}
	}
}

/*
 * Close after the last response without losing it: closing a socket whose
 * receive queue holds unread bytes (the rest of a refused request) sends a
 * RST, which may destroy the response in flight. So shut the write side
 * (FIN after the response), then read and discard until the client closes
 * or LINGER_NS passes (RFC 9112 9.6, "lingering close").
 */
#define LINGER_NS (2 * SLUICE_NS_PER_SEC)

static void conn_linger(struct loop *lp, struct conn *c)
{
	if (shutdown(c->fd, SHUT_WR) != 0) {
		conn_close(lp, c);
		return;
	}
	c->lingering = true;
	c->in_len = 0;
	c->body_left = 0;
	watch(lp, c, WAIT_IN);
}

static void conn_discard(struct loop *lp, struct conn *c)
{
	for (;;) {
		ssize_t r = recv(c->fd, c->in, sizeof c->in, 0);
		if (r > 0)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (r < 0 && errno == EINTR)
			continue;
		conn_close(lp, c); /* EOF or error */
		return;
	}
}

/* Process, write, and decide what to wait for next. */
static void conn_pump(struct loop *lp, struct conn *c)
{
	for (;;) {
		conn_process(lp, c);
		if (!conn_flush(lp, c))
			return;
		if (c->out_len != 0) {
			watch(lp, c, c->send_at_ns ? WAIT_NONE : WAIT_OUT);
			return;
		}
		if (c->closing) {
			conn_linger(lp, c);
			return;
		}
		/* Drained: go on only if a complete request may be waiting. */
		watch(lp, c, WAIT_IN);
		if (c->in_len == 0)
			return;
		if (c->body_left > 0)
			continue; /* body bytes to discard, maybe a request after them */
		struct server_request req;
		size_t head_len;
		uint64_t cl;
		bool ka;
		int st;
		if (server_parse_request(c->in, c->in_len, lp->srv->cfg.max_body, &req, &head_len, &cl,
					 &ka, &st) == SERVER_PARSE_INCOMPLETE)
			return;
	}
}

static void conn_readable(struct loop *lp, struct conn *c, uint64_t now_ns)
{
	ssize_t r;

	if (c->lingering) {
		conn_discard(lp, c);
		return;
	}
	if (c->closing || c->out_len != 0)
		return; /* level-triggered; we are waiting to write */
	if (c->in_len == sizeof c->in) {
		/* Cannot happen: a full buffer without a head is answered 431. */
		conn_close(lp, c);
		return;
	}
	r = recv(c->fd, c->in + c->in_len, sizeof c->in - c->in_len, 0);
	if (r == 0) {
		conn_close(lp, c);
		return;
	}
	if (r < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			conn_close(lp, c);
		return;
	}
	c->in_len += (size_t)r;
	c->last_ns = now_ns;
	conn_pump(lp, c);
}

static void accept_all(struct loop *lp, int listen_fd, bool admin, uint64_t now_ns)
{
	for (int i = 0; i < 64; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof ss;
		int fd = accept4(listen_fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return; /* EAGAIN, or a transient error (EMFILE...): retry on the next event */
		if (lp->nconns >= lp->srv->cfg.max_conns) {
			close(fd);
			continue;
		}
		struct conn *c = malloc(sizeof *c);
		if (c == NULL) {
			close(fd);
			continue;
		}
		memset(c, 0, offsetof(struct conn, in));
		c->fd = fd;
		c->admin = admin;
		c->last_ns = now_ns;
		int one = 1;
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		if (ss.ss_family == AF_INET6)
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, c->peer_ip, sizeof c->peer_ip);
		else
			inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, c->peer_ip, sizeof c->peer_ip);
		c->peer_ip_len = strlen(c->peer_ip);
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
		if (epoll_ctl(lp->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
			close(fd);
			free(c);
			continue;
		}
		c->next = lp->conns;
		if (lp->conns)
			lp->conns->prev = c;
		lp->conns = c;
		lp->nconns++;
		if (!admin)
			count(&lp->counters.accepted);
	}
}

static void start_drain(struct loop *lp, uint64_t now_ns)
{
	lp->draining = true;
	lp->drain_deadline_ns = now_ns + lp->srv->cfg.drain_timeout_ns;
	close(lp->listen_fd); /* removes it from the epoll set */
	lp->listen_fd = -1;
	if (lp->admin_fd >= 0) {
		close(lp->admin_fd);
		lp->admin_fd = -1;
	}
}

/* Once a second (and on every wake-up while draining): close idle
 * connections, and everything once the drain deadline has passed. */
static void sweep(struct loop *lp, uint64_t now_ns)
{
	struct conn *c = lp->conns, *next;

	for (; c != NULL; c = next) {
		next = c->next;
		bool idle = (c->in_len == 0 && c->out_len == 0 && c->body_left == 0) || c->lingering;
		if ((lp->draining && (idle || now_ns >= lp->drain_deadline_ns)) ||
		    (c->lingering && now_ns - c->last_ns >= LINGER_NS) ||
		    now_ns - c->last_ns >= lp->srv->cfg.idle_timeout_ns)
			conn_close(lp, c);
	}
	lp->last_sweep_ns = now_ns;
}

static void *loop_main(void *arg)
{
	struct loop *lp = arg;
	struct epoll_event evs[64];

	while (!lp->draining || lp->nconns > 0) {
		int timeout_ms = lp->draining ? 50 : 1000;
		if (lp->srv->cfg.work_ns > 0)
			timeout_ms = 5; /* --work-ms: a test and demo aid, not a fast path */
		int n = epoll_wait(lp->epfd, evs, 64, timeout_ms);
		uint64_t now_ns = sluice_monotonic_ns();
		lp->now_ns = now_ns;
		uint64_t unix_s = sluice_realtime_ns() / SLUICE_NS_PER_SEC;
		if (unix_s != lp->date_s) {
			lp->date_s = unix_s;
			server_format_date(unix_s, lp->date);
		}
		for (int i = 0; i < n; i++) {
			void *p = evs[i].data.ptr;
			if (p == &tag_listen) {
				if (!lp->draining)
					accept_all(lp, lp->listen_fd, false, now_ns);
			} else if (p == &tag_admin) {
				if (!lp->draining)
					accept_all(lp, lp->admin_fd, true, now_ns);
			} else if (p == &tag_event) {
				uint64_t v;
				if (read(lp->event_fd, &v, sizeof v) == (ssize_t)sizeof v && !lp->draining)
					start_drain(lp, now_ns);
			} else {
				struct conn *c = p;
				if (evs[i].events & (EPOLLERR | EPOLLHUP) && !(evs[i].events & EPOLLIN)) {
					conn_close(lp, c);
				} else if (c->waiting == WAIT_OUT) {
					c->last_ns = now_ns;
					conn_pump(lp, c);
				} else {
					conn_readable(lp, c, now_ns);
				}
			}
		}
		if (lp->srv->cfg.work_ns > 0) {
			struct conn *c = lp->conns, *next;
			for (; c != NULL; c = next) {
				next = c->next;
				if (c->send_at_ns != 0 && now_ns >= c->send_at_ns) {
					c->send_at_ns = 0;
					c->last_ns = now_ns;
					conn_pump(lp, c);
				}
			}
		}
		if (lp->draining || now_ns - lp->last_sweep_ns >= SLUICE_NS_PER_SEC)
			sweep(lp, now_ns);
	}
	return NULL;
}

static int listen_socket(const char *host, uint16_t port, bool reuseport, uint16_t *bound,
			 const char **why)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE };
	struct addrinfo *ai;
	char service[8];
	int fd, one = 1;

	snprintf(service, sizeof service, "%u", (unsigned)port);
	if (getaddrinfo(host, service, &hints, &ai) != 0) {
		*why = "not a numeric IPv4 or IPv6 address";
		return -1;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
	    (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 4096) != 0) {
		*why = "cannot bind or listen on the address";
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return -1;
	}
	freeaddrinfo(ai);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
		*why = "getsockname failed";
		close(fd);
		return -1;
	}
	*bound = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						: ((struct sockaddr_in *)&ss)->sin_port);
	return fd;
}

int server_start(struct server **out, const struct server_config *cfg,
		 struct server_decider *decider, uint16_t *port_out, uint16_t *admin_port_out,
		 const char **why)
{
	struct server *srv = calloc(1, sizeof *srv);
	uint16_t port = cfg->port;

	*why = "out of memory";
	if (srv == NULL)
		return -1;
	srv->cfg = *cfg;
	srv->decider = decider;
	srv->nloops = cfg->threads;
	srv->loops = aligned_alloc(SLUICE_CACHELINE,
				   ((cfg->threads * sizeof *srv->loops + SLUICE_CACHELINE - 1) /
				    SLUICE_CACHELINE) * SLUICE_CACHELINE);
	if (srv->loops == NULL) {
		free(srv);
		return -1;
	}
	memset(srv->loops, 0, cfg->threads * sizeof *srv->loops);
	for (unsigned i = 0; i < srv->nloops; i++) {
		struct loop *lp = &srv->loops[i];
		lp->srv = srv;
		lp->epfd = lp->listen_fd = lp->event_fd = lp->admin_fd = -1;
	}
	/* Port 0: the first socket picks the port, the others share it. */
	for (unsigned i = 0; i < srv->nloops; i++) {
		struct loop *lp = &srv->loops[i];
		struct epoll_event ev = { .events = EPOLLIN };
		lp->listen_fd = listen_socket(cfg->host, port, true, &port, why);
		if (lp->listen_fd < 0)
			goto fail;
		lp->epfd = epoll_create1(EPOLL_CLOEXEC);
		lp->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		*why = "cannot create the epoll instance or eventfd";
		if (lp->epfd < 0 || lp->event_fd < 0)
			goto fail;
		ev.data.ptr = &tag_listen;
		if (epoll_ctl(lp->epfd, EPOLL_CTL_ADD, lp->listen_fd, &ev) != 0)
			goto fail;
		ev.data.ptr = &tag_event;
		if (epoll_ctl(lp->epfd, EPOLL_CTL_ADD, lp->event_fd, &ev) != 0)
			goto fail;
	}
	*admin_port_out = 0;
	if (cfg->admin_host != NULL) {
		struct loop *lp = &srv->loops[0];
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &tag_admin };
		lp->admin_fd = listen_socket(cfg->admin_host, cfg->admin_port, false, admin_port_out, why);
		if (lp->admin_fd < 0)
			goto fail;
		if (epoll_ctl(lp->epfd, EPOLL_CTL_ADD, lp->admin_fd, &ev) != 0)
			goto fail;
	}
	for (unsigned i = 0; i < srv->nloops; i++) {
		struct loop *lp = &srv->loops[i];
		if (pthread_create(&lp->thread, NULL, loop_main, lp) != 0) {
			*why = "cannot create an event-loop thread";
			server_stop(srv);
			server_join(srv, NULL);
			return -1;
		}
		lp->started = true;
	}
	*port_out = port;
	*why = NULL;
	*out = srv;
	return 0;
fail:
	for (unsigned i = 0; i < srv->nloops; i++) {
		struct loop *lp = &srv->loops[i];
		if (lp->listen_fd >= 0)
			close(lp->listen_fd);
		if (lp->epfd >= 0)
			close(lp->epfd);
		if (lp->event_fd >= 0)
			close(lp->event_fd);
		if (lp->admin_fd >= 0)
			close(lp->admin_fd);
	}
	free(srv->loops);
	free(srv);
	return -1;
}

void server_stop(struct server *srv)
{
	const uint64_t one = 1;

	for (unsigned i = 0; i < srv->nloops; i++)
		if (write(srv->loops[i].event_fd, &one, sizeof one) < 0) {
			/* eventfd writes fail only on counter overflow: already signalled. */
		}
}

void server_join(struct server *srv, struct server_totals *total)
{
	for (unsigned i = 0; i < srv->nloops; i++) {
		struct loop *lp = &srv->loops[i];
		if (lp->started)
			pthread_join(lp->thread, NULL);
	}
	if (total != NULL)
		sum_counters(srv, total); /* ordered after the loops' adds by pthread_join */
	for (unsigned i = 0; i < srv->nloops; i++) {
		struct loop *lp = &srv->loops[i];
		while (lp->conns != NULL)
			conn_close(lp, lp->conns);
		if (lp->listen_fd >= 0)
			close(lp->listen_fd);
		if (lp->admin_fd >= 0)
			close(lp->admin_fd);
		close(lp->epfd);
		close(lp->event_fd);
	}
	free(srv->loops);
	free(srv);
}
