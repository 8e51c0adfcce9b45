/*
 * server.h - the example HTTP server's internal interfaces (sluice-server is
 * an executable, not part of libsluice; nothing here is exported).
 *
 *   server_decide.c  the decision step: request identities -> one decision
 *                    over every limit of the policy, and the slot release
 *                    after the response is written. The one place to swap
 *                    for the policy engine.
 *   server_http.c    the HTTP/1.1 request parser and response writer.
 *   server_loop.c    one epoll event loop per thread (SO_REUSEPORT).
 *   server_admin.c   the admin listener's answers: /metrics, /stats.
 *   server_main.c    command line, policy load, threads, signals.
 *
 * Design and the identity mapping: docs/server.md.
 */
#ifndef SLUICE_SERVER_H
#define SLUICE_SERVER_H

#include <sluice.h>

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Ceilings of one request (docs/server.md, "Answers"). */
#define SERVER_MAX_HEAD 8192          /* request line + headers: beyond, 431 */
#define SERVER_MAX_HEADERS 64         /* header fields: beyond, 431 */
#define SERVER_MAX_IDENTITY 256       /* bytes of one identity: beyond, 400 */
#define SERVER_DEFAULT_MAX_BODY 65536 /* Content-Length beyond --max-body: 413 */
#define SERVER_OUT_CAP 16384          /* per-connection output buffer */
#define SERVER_MAX_RESPONSE 4096      /* one response never exceeds this */
#define SERVER_MAX_ANSWER_BODY 2048   /* a rendered answer body; beyond, no body */

/* ------------------------------------------------------------------------
 * Requests, as the parser hands them to the decision step.
 */
struct server_header {
	const char *name;
	size_t name_len;
	const char *value;
	size_t value_len;
};

struct server_request {
	const char *method;
	size_t method_len;
	const char *path; /* the request target (origin form), query included */
	size_t path_len;
	int minor_version; /* HTTP/1.<minor> */
	struct server_header headers[SERVER_MAX_HEADERS];
	size_t nheaders;
	const char *peer_ip; /* the socket's peer address, text */
	size_t peer_ip_len;
};

/* a[0..n) equals b[0..n) ignoring ASCII case (header names, auth schemes). */
bool server_ascii_ieq(const char *a, const char *b, size_t n);

/* The value of the first header named `name` (case-insensitive), or NULL. */
const struct server_header *server_request_header(const struct server_request *req,
						  const char *name);

/* ------------------------------------------------------------------------
 * The decision step (server_decide.c, on the policy engine).
 */
struct server_decider;

struct server_decider_options {
	bool trust_forwarded_for; /* ip scope from X-Forwarded-For (rightmost) */
	bool frozen_clock;        /* time stands still at start (tests, demos) */
	uint64_t max_keys;        /* per keyed limiter; 0: unbounded */
	/* The engine's state file (docs/server.md, "State file"): restored
	 * at create, written every state_interval_ns (0: only when asked) and
	 * by server_decider_save(). NULL: none. */
	const char *state_file;
	uint64_t state_interval_ns;
	bool state_fresh_on_error; /* a bad file: start empty, not fail */
	struct sluice_snapshot_info *restore_info; /* what the restore did */
};

/* Build the decider for a loaded policy. On success the decider owns the
 * policy (destroyed with it); on failure the caller keeps it. Returns 0 or
 * a SLUICE_E* code; *why says what failed. */
int server_decider_create(struct server_decider **out, struct sluice_policy *policy,
			  const struct server_decider_options *opts, const char **why);
void server_decider_destroy(struct server_decider *d);

/* Write the state file now (after the loops stopped: nothing is admitted
 * after it). 0 or the SLUICE_E* code of sluice_engine_snapshot(); *info
 * says what was written or what failed. */
int server_decider_save(struct server_decider *d, struct sluice_snapshot_info *info);

/* The name of the policy in force. */
const char *server_decider_policy_name(const struct server_decider *d);

/* The engine and the spec of the policy in force (the admin endpoint's
 * per-limit counters). */
struct sluice_engine *server_decider_engine(const struct server_decider *d);
const struct sluice_policy_spec *server_decider_spec(const struct server_decider *d);

/* How many limits one verdict can describe for the renderer. */
#define SERVER_VERDICT_MAX_LIMITS SLUICE_POLICY_MAX_LIMITS

/*
 * A decision and what the response needs: the status, the limit states to
 * render, the header families and body style, and what the engine needs to
 * give the request's concurrency slots back once its response is written:
 * the engine's decision and the identities, which point into the request's
 * buffer or into `hashed` (so the buffer must stay untouched until then).
 */
struct server_verdict {
	int status;          /* 200, the refusal's (429 unless the policy's answer
			      * says otherwise), 400 (target refused) or 503 (engine error) */
	bool limited;        /* at least one limit applied to the request */
	struct sluice_decision decision; /* the governing one */
	unsigned families;   /* enum sluice_http_families */
	const struct sluice_http_custom *custom; /* the policy's "headers custom" names */
	int body_style;      /* enum sluice_http_body_style, when !answered */
	bool refused;        /* a limit refused: status is the answer's (429 by default) */
	bool answered;       /* refused with the policy's answer: content_type, body */
	const char *content_type; /* NULL: no body */
	size_t body_len;
	char body[SERVER_MAX_ANSWER_BODY];
	size_t nlimits;
	struct sluice_http_limit limits[SERVER_VERDICT_MAX_LIMITS];
	uint64_t now_unix_ns;
	struct sluice_engine_decision engine;
	struct sluice_identity ids[SLUICE_POLICY_MAX_SCOPES];
	char hashed[SLUICE_POLICY_MAX_SCOPES][33];
};

/* Decide one request. Fills *v. Thread-safe. */
void server_decide(struct server_decider *d, const struct server_request *req,
		   struct server_verdict *v);

/* The policy's dry-run header line ("Name: limit, limit\r\n", the dry-run
 * limits that would have refused *v) into buf: its length, 0 when there is
 * none to add (no header named, no dry-run refusal) or it does not fit. */
size_t server_dry_run_header(const struct server_decider *d, const struct server_verdict *v, char *buf,
			     size_t cap);

/* Does *v hold concurrency slots (then call server_decider_release)? */
static inline bool server_verdict_holds(const struct server_verdict *v)
{
	return v->engine.slot_count > 0;
}

/* Give back the slots *v holds; req is the same request, its buffer
 * untouched since server_decide. Idempotent. Thread-safe. */
void server_decider_release(struct server_decider *d, const struct server_request *req,
			    struct server_verdict *v);

/* ------------------------------------------------------------------------
 * Counters, one block per event-loop thread, on its own cache line(s).
 */

/* Responses are counted by status: one counter per code in
 * server_status_codes (the codes this server and its policies answer), the
 * last (code 0) for any other. */
#define SERVER_NSTATUS 16
extern const int server_status_codes[SERVER_NSTATUS];
unsigned server_status_index(int status);

struct server_counters {
	_Alignas(SLUICE_CACHELINE) _Atomic uint64_t requests; /* answered, all statuses */
	_Atomic uint64_t ok;         /* 2xx */
	_Atomic uint64_t limited;    /* 429 */
	_Atomic uint64_t errors;     /* 4xx/5xx other than 429 */
	_Atomic uint64_t accepted;   /* connections */
	_Atomic uint64_t dry_run;    /* admitted, a dry-run limit would have refused */
	_Atomic uint64_t by_status[SERVER_NSTATUS]; /* responses by status */
};
_Static_assert(sizeof(struct server_counters) % SLUICE_CACHELINE == 0,
	       "one counter block per cache line(s): no false sharing between loops");

/* ------------------------------------------------------------------------
 * The HTTP layer.
 */
enum server_parse_result {
	SERVER_PARSE_INCOMPLETE = 0, /* need more bytes */
	SERVER_PARSE_OK = 1,         /* *head_len bytes form a request head */
	SERVER_PARSE_ERROR = 2,      /* *status says which answer (400/413/431/501/505) */
};

/*
 * Parse one request head from buf[0..len). On OK fills *req (pointers into
 * buf), *head_len, *content_length and *keep_alive. max_body: the largest
 * Content-Length accepted (413 beyond).
 */
enum server_parse_result server_parse_request(const char *buf, size_t len, uint64_t max_body,
					      struct server_request *req, size_t *head_len,
					      uint64_t *content_length, bool *keep_alive,
					      int *status);

/* Write a complete response into out (cap bytes): status line, Date,
 * Server, Content-Type (if body), Content-Length, Connection: close when
 * !keep_alive, `extra` header lines (already CRLF-terminated, may be NULL),
 * then the body. Returns the length, or 0 if it does not fit. */
size_t server_write_response(char *out, size_t cap, int status, const char *date,
			     bool keep_alive, const char *extra, size_t extra_len,
			     const char *content_type, const char *body, size_t body_len);

/* The reason phrase of a status code this server sends. */
const char *server_reason_phrase(int status);

/* IMF-fixdate of a Unix time in seconds into buf (30 bytes incl. NUL). */
void server_format_date(uint64_t unix_s, char buf[30]);

/* ------------------------------------------------------------------------
 * The event loops.
 */
struct server_config {
	const char *host;
	uint16_t port;
	unsigned threads;
	uint64_t max_body;
	unsigned max_conns;     /* per thread */
	uint64_t idle_timeout_ns;
	uint64_t drain_timeout_ns;
	bool no_limit;
	uint64_t work_ns; /* hold every 2xx answer this long (simulated work) */
	/* The admin listener (GET /metrics, GET /stats), served by the first
	 * loop; admin_host NULL: none. */
	const char *admin_host;
	uint16_t admin_port;
};

struct server;

/* Bind every thread's listening socket (SO_REUSEPORT; port 0 picks one port
 * for all) and the admin listener, and start the loops. *port_out receives
 * the bound port, *admin_port_out the admin one (0: none). */
int server_start(struct server **out, const struct server_config *cfg,
		 struct server_decider *decider, uint16_t *port_out, uint16_t *admin_port_out,
		 const char **why);

/* Ask every loop to stop accepting, finish the responses in progress and
 * close (async-signal-safe: one write to each loop's eventfd). */
void server_stop(struct server *srv);

/* The counters summed over every loop. */
struct server_totals {
	uint64_t requests, ok, limited, errors, accepted, dry_run;
	uint64_t by_status[SERVER_NSTATUS];
};

/* ------------------------------------------------------------------------
 * The admin endpoint (server_admin.c).
 */

/* The body of GET /metrics: the Prometheus text exposition format 0.0.4,
 * the server's totals and, with a decider, every limit's engine counters.
 * Returns its length, or 0 if it does not fit in cap. */
size_t server_admin_metrics(struct server_decider *d, const struct server_totals *t, char *out,
			    size_t cap);

/* The body of GET /stats (JSON). Returns its length, or 0 if it does not
 * fit. */
size_t server_admin_stats(const struct server_totals *t, char *out, size_t cap);

/* Join the loops, sum their counters into *total (may be NULL) and free
 * everything. */
void server_join(struct server *srv, struct server_totals *total);

#endif /* SLUICE_SERVER_H */
