/*
 * redis_internal.h - what the files of the Redis backend share (redis.c's
 * file comment tells the whole; docs/redis.md, "Source files", maps the
 * files): the handle (struct sluice_redis), a validated request (struct
 * prepared), the deny cache's and the lease's entries, the cluster's
 * nodes, and the sluice__redis_* functions one file calls in another.
 * Not installed. Everything but the embedded script needs hiredis
 * (SLUICE_WITH_REDIS).
 */
#ifndef SLUICE_REDIS_INTERNAL_H
#define SLUICE_REDIS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sluice/redis.h>


/* src/redis/limits.lua, embedded at build time (embed_script.cmake):
 * NUL-terminated, sluice__redis_script_len bytes before the NUL. */
extern const char sluice__redis_script[];
extern const size_t sluice__redis_script_len;

#ifdef SLUICE_WITH_REDIS

#include <signal.h>

#include <hiredis/hiredis.h>

#include "common/util_internal.h"
#include "limiter/limit_kind_internal.h"

enum { ST_OK = 0, ST_RATE = 1, ST_NEVER = 2 };

/* Bound on the arguments of one script call: EVALSHA sha numkeys, keys,
 * now, mode, grace, tag, then per scope k and at most 7 per limit; a
 * cancel has 4 per field written (every limit, plus "_full" per scope). */
#define MAX_ARGS                                                                                    \
	(3 + 4 + 2 * SLUICE_REDIS_MAX_SCOPES + 7 * SLUICE_REDIS_MAX_LIMITS +                          \
	 4 * (SLUICE_REDIS_MAX_LIMITS + SLUICE_REDIS_MAX_SCOPES))
/* Longest field name ("i:interval:tau", "c<i>:<limit>:<window>", ...) and
 * number. */
#define FIELD_MAX 48
#define NUM_MAX 24
/* Numbers per limit in build_args' scratch (the window kinds' five). */
#define NUMS_PER_LIMIT 5

/* Script modes (ARGV[2]). */
#define MODE_PEEK '0'
#define MODE_ADMIT '1'
#define MODE_RESERVE '2'

/* One slot of the local deny cache: what this handle last learnt of one
 * (key, limit), in the clock the cache uses (cache_now()). GCRA: until_ns
 * is F (a lower bound of the server's). Calendar: word is the cell's word
 * (window index and count) as the server held it, until_ns the end of that
 * window, and offset_ns the calendar's time minus the cache clock at the
 * moment the state was read (the server's TIME less our send time; 0 with
 * the caller's clock), so t + offset_ns is an estimate of the calendar's
 * time that is never early (docs/redis.md, "Deny cache"). held_batch: the
 * batch (r->cache_batch) in which a request on this limit was sent: later
 * requests of that batch are not judged on it. */
struct deny_slot {
	uint64_t tag; /* 0: empty */
	uint64_t until_ns;
	uint64_t word;
	uint64_t offset_ns;
	uint64_t held_batch;
};

/* A request, validated and flattened. Limits are in the order they are
 * decided: scope by scope, and within a scope the keyed limiter's order
 * (its first GCRA limit, then the others as given). */
struct prepared {
	const struct sluice_redis_request *req;
	size_t nlimits;
	const struct sluice_limit *limit[SLUICE_REDIS_MAX_LIMITS];
	uint64_t tag[SLUICE_REDIS_MAX_LIMITS];   /* deny-cache tags */
	uint16_t index[SLUICE_REDIS_MAX_LIMITS]; /* limit[j]'s index in its scope */
	uint8_t scope[SLUICE_REDIS_MAX_LIMITS];  /* limit[j]'s scope in req */
	/* Per scope of req: the caller's flat index of its limit 0 and the
	 * caller's scope index (differ from req's for a cross-slot group). */
	uint32_t base[SLUICE_REDIS_MAX_SCOPES];
	uint8_t caller_scope[SLUICE_REDIS_MAX_SCOPES];
	uint32_t slot;      /* cluster hash slot of its first key */
	char mode;          /* MODE_* */
	bool all_gcra;      /* every limit GCRA (the lease applies) */
	bool all_cacheable; /* every limit GCRA or calendar (the deny cache applies) */
	bool has_slots;     /* some scope has a SLOTS limit */
	bool cross;         /* cluster: keys on more than one slot */
	bool done;          /* decided (locally or from a reply) */
	bool sent;          /* in the current pipeline */
	redisReply *reply;  /* MODE_RESERVE: the reply, kept for its receipts */
	sluice_slot_handle *handles; /* acquire: one per caller scope; else NULL */
	/* sluice__redis_admit_each(): every limit's decision of an admission,
	 * by flat index (entries not written keep limit_index UINT32_MAX);
	 * else NULL. */
	struct sluice_decision *each;
	/* Local lease (lease_eligible()): while this request takes a lease,
	 * req points to take (the caller's request with cost = the lease's
	 * units) and orig to the caller's request; lease is its entry,
	 * lease_sig its shape. */
	const struct sluice_redis_request *orig;
	struct sluice_redis_request take;
	struct lease *lease;
	uint64_t lease_sig;
	int ask_node; /* cluster: the node an ASK reply named; -1: none */
	bool tryagain; /* cluster: answered TRYAGAIN; resent after a pause (rounds()) */
};

/* One entry of the lease table: a request shape's heat and its lease. */
struct lease {
	uint64_t sig;           /* request shape (hash of its deny-cache tags); 0: empty */
	uint64_t heat_start_ns; /* start of the current heat window */
	uint32_t hits;          /* requests of this shape since heat_start_ns */
	bool taking;            /* a request of the current call takes this lease */
	uint64_t left;          /* leased units not yet spent (0: no lease) */
	uint64_t start_ns;      /* the lease's start: before its round trip was sent */
	uint64_t gov_tat_ns;    /* the governing limit's F right after the take */
	uint64_t gov_limit;     /* the governing limit's limit */
	uint32_t gov_index;     /* and its flat index */
};

/* One slot group of a cross-slot request (admit_cross()). */
struct group {
	struct sluice_redis_scope sc[SLUICE_REDIS_MAX_SCOPES];
	struct sluice_redis_request req;
	struct prepared p;
};

/* One server: the configured one, or in cluster mode any node we learnt. */
#define MAX_NODES 16
#define HOST_MAX 256
#define CLUSTER_SLOTS 16384

struct node {
	redisContext *ctx; /* NULL: not connected */
	bool ever_worked;  /* ctx has answered a script call since it connected */
	char host[HOST_MAX];
	int port;
	uint64_t backoff_ns;      /* the next wait */
	uint64_t next_attempt_ns; /* monotonic; no connect before it */
};

struct sluice_redis {
	struct node nodes[MAX_NODES]; /* nodes[0]: the configured server */
	uint32_t nnodes;
	uint8_t *slot_node; /* cluster mode: node index per hash slot; else NULL */
	char sha[41];
	uint32_t fail_mode;
	uint32_t flags;
	uint64_t timeout_ns;
	char grace[NUM_MAX]; /* expiry grace, decimal ns */
	size_t grace_len;
	uint64_t backoff_min_ns;
	uint64_t backoff_max_ns;
	char *prefix;
	size_t prefix_len;
	struct deny_slot *cache;
	uint64_t cache_mask;
	uint64_t cache_seed;
	uint64_t cache_batch; /* counts sluice__redis_admit_prepared() calls */
	/* Scratch for one call's arguments: no allocation per call. */
	char *buf;
	size_t buf_cap;
	const char *argv[MAX_ARGS];
	size_t argvlen[MAX_ARGS];
	struct prepared *prep; /* batch scratch */
	size_t prep_cap;
	uint64_t slots_tag; /* the tag of a slots state this call creates */
	uint64_t next_tag;  /* the next call's (random start: two handles differ) */
	struct group *groups; /* cluster: scratch of admit_cross() */
	uint64_t call_deadline_ns; /* admit_cross(): the reserves' deadline; else 0 */
	struct sluice_window_log *log_cell; /* decide_state() scratch; NULL until a log is used */
	struct sluice_redis_stats st;
	/* The local lease (off: lease == NULL). */
	struct lease *lease;
	uint64_t lease_mask;
	uint64_t lease_units;
	uint64_t lease_hot_hits;
	uint64_t lease_ttl_ns;
};

/* The first pause before a TRYAGAIN resend (redis_conn.c). */
#define TRYAGAIN_PAUSE_MIN_NS (UINT64_C(1000000))

/* ---- connections and timeouts (redis_conn.c) ---- */

/* Time left before the deadline (monotonic ns), 0 if none. */
uint64_t sluice__redis_time_left(uint64_t deadline_ns);
/* Sleep *pause_ns before a TRYAGAIN retry and double it (up to 8 ms).
 * False, without sleeping, when the pause would end at or past the
 * deadline (counted as a timeout). */
bool sluice__redis_tryagain_pause(struct sluice_redis *r, uint64_t deadline_ns, uint64_t *pause_ns);

/* SIGPIPE blocked in the calling thread around I/O; a pending SIGPIPE we
 * caused is consumed on restore (redis.c's file comment). */
struct sluice__sigpipe_guard {
	sigset_t old;
	bool was_pending;
};
void sluice__redis_sigpipe_block(struct sluice__sigpipe_guard *g);
void sluice__redis_sigpipe_restore(const struct sluice__sigpipe_guard *g);

/* Close nd's connection (if any). */
void sluice__redis_drop(struct node *nd);
/* Set nd's socket timeout to the time left; false (dropped) if none is. */
bool sluice__redis_arm_timeout(struct sluice_redis *r, struct node *nd, uint64_t deadline_ns);
/* SCRIPT LOAD on nd's connection (learns r->sha). 0, or -1 (dropped). */
int sluice__redis_load_script(struct sluice_redis *r, struct node *nd, uint64_t deadline_ns);
/* Make sure nd has a connection with the script loaded. 0, or -1 (fail
 * mode: down, in backoff, or out of time). */
int sluice__redis_ensure_connected(struct sluice_redis *r, struct node *nd, uint64_t deadline_ns);

/* ---- cluster routing (redis_cluster.c) ---- */

/* The hash slot of a key (its {hash tag} if not empty). */
uint32_t sluice__redis_key_slot(const char *k, size_t n);
/* Learn the slot map from nd (CLUSTER SLOTS); best effort. */
void sluice__redis_refresh_slots(struct sluice_redis *r, struct node *nd, uint64_t deadline_ns);
/* "<word> <slot> <host>:<port>" (MOVED or ASK, the word and its space
 * `skip` bytes): the node it names (added if new) and *slot, or -1. */
int sluice__redis_parse_redirect(struct sluice_redis *r, const redisReply *rep, size_t skip,
				 uint32_t *slot);
/* "MOVED <slot> <host>:<port>": point the slot at that node. */
bool sluice__redis_learn_moved(struct sluice_redis *r, const redisReply *rep);
/* The node p's keys live on (0 outside cluster mode). */
uint32_t sluice__redis_node_of(const struct sluice_redis *r, const struct prepared *p);

/* ---- validation and arguments (redis_args.c) ---- */

/* Validate and flatten req into p (the limiter's order per scope). */
int sluice__redis_prepare(struct sluice_redis *r, const struct sluice_redis_request *req,
			  struct prepared *p);
/* The same; check_limits false skips each limit's validation (its kind,
 * numbers and the backend's ranges: 128-bit divides per limit) for limits
 * the caller validated once before (the engine's executor, when a binding
 * is opened; sluice__redis_admit_each()). */
int sluice__redis_prepare_checked(struct sluice_redis *r, const struct sluice_redis_request *req,
				  struct prepared *p, bool check_limits);
/* "<letter><i>:<a>:<b>" (GCRA: no letter) at f; returns its length. */
size_t sluice__redis_field_name(char *f, char letter, uint64_t i, uint64_t a, uint64_t b);
/* r->argv for p's script call; returns argc. */
int sluice__redis_build_args(struct sluice_redis *r, const struct prepared *p, uint64_t now_ns);
/* The argument prefix of a script call on p's keys in `mode` (cancel,
 * release); returns argc, *w where the scratch continues. */
int sluice__redis_head_args(struct sluice_redis *r, const struct prepared *p, uint64_t now_ns,
			    const char *mode, char **w);
/* The size of the argument scratch for a key prefix of prefix_len. */
size_t sluice__redis_buf_size_for(size_t prefix_len);

/* ---- decisions and replies (redis_decide.c) ---- */

/* What one decoded answer taught about the deny cache's limits, in the
 * order the cache is to learn it: per fact a limit's tag and the state the
 * server holds after the call (GCRA: a lower bound of F in until_ns;
 * calendar: the cell's word, its window's end and the calendar's offset
 * from the cache clock). Reservations and peeks teach nothing. */
struct sluice__redis_fact {
	uint64_t tag;
	uint64_t until_ns;
	uint64_t word;
	uint64_t offset_ns;
	bool calendar;
};
struct sluice__redis_learnt {
	size_t n;
	struct sluice__redis_fact fact[SLUICE_REDIS_MAX_LIMITS];
};

/* GCRA's decision for one limit given its debt before the request and the
 * status (ST_*) from the script or the cache, as gcra.c makes it. */
void sluice__redis_decide_limit(struct sluice_decision *out, const struct sluice_rate *rate, int status,
				uint64_t debt, uint64_t cost);
/* The fail mode's answer for p (counted as degraded). */
void sluice__redis_fill_degraded(struct sluice_redis *r, const struct prepared *p,
				 struct sluice_decision *out);
/* Count a decision in the backend's statistics (peeks are not counted). */
void sluice__redis_count(struct sluice_redis *r, const struct prepared *p, const struct sluice_decision *d);
/* An error reply starting with prefix. */
bool sluice__redis_reply_is_error(const redisReply *rep, const char *prefix);
/* Integer element i of an array reply, within [lo, hi]. */
bool sluice__redis_int_elem(const redisReply *rep, size_t i, long long lo, long long hi, long long *v);
/* A script answer for p turned into *out (an acquire's handles too) and
 * *learnt; writes nothing else. False if malformed. t: the request's time
 * in the cache's clock. */
bool sluice__redis_decode(const struct sluice_redis *r, const struct prepared *p, const redisReply *rep,
			  uint64_t t, uint64_t now_ns, struct sluice_decision *out,
			  struct sluice__redis_learnt *learnt);

/* ---- the governing rule (redis_govern.c) ---- */

/* Among n admitted decisions of p: the one rule (common/govern_internal.h)
 * ranked by evaluation order (index in limit_index). */
void sluice__redis_govern(const struct prepared *p, const struct sluice_decision *d, size_t n,
			  struct sluice_decision *out);
/* The same rule between two governing decisions, a of a later group than
 * b (a full tie stays with b). */
bool sluice__redis_governs_over(const struct sluice_decision *a, const struct sluice_decision *b);

/* ---- the deny cache (redis_cache.c) ---- */

/* The cache's (and the lease's) clock at now_ns. */
uint64_t sluice__redis_cache_now(const struct sluice_redis *r, uint64_t now_ns);
/* Write what an answer taught (no-op without a cache). */
void sluice__redis_cache_learn(struct sluice_redis *r, const struct sluice__redis_learnt *learnt);
/* Deny p, a request of batch `batch`, locally at cache time t if its
 * cached states provably deny and none is held by the batch. */
bool sluice__redis_cache_try_deny(struct sluice_redis *r, const struct prepared *p, uint64_t t,
				  uint64_t batch, struct sluice_decision *out);
/* p, a request of batch `batch`, goes to the server: hold its limits'
 * entries for the rest of the batch. */
void sluice__redis_cache_hold(struct sluice_redis *r, const struct prepared *p, uint64_t batch);

/* ---- the local lease (redis_lease.c) ---- */

bool sluice__redis_lease_eligible(const struct sluice_redis *r, const struct prepared *p);
bool sluice__redis_lease_answer(struct sluice_redis *r, struct prepared *p, uint64_t t,
				struct sluice_decision *out);
void sluice__redis_lease_mark_take(struct sluice_redis *r, struct prepared *p);
bool sluice__redis_lease_finish(struct sluice_redis *r, struct prepared *ps, size_t n, uint64_t t,
				struct sluice_decision *out);

/* ---- the exchange (redis_exchange.c) ---- */

/* Decide n prepared requests (one slot each): locally where the lease or
 * the deny cache can, the rest in pipelined rounds; the fail mode for
 * what is left. Always SLUICE_OK. */
int sluice__redis_admit_prepared(struct sluice_redis *r, struct prepared *ps, size_t n, uint64_t now_ns,
				 struct sluice_decision *out);
/* One script call (r->argv[0..argc-1]) routed by slot, outside a
 * pipeline; the reply (caller frees) or NULL (fail mode). */
redisReply *sluice__redis_call_script(struct sluice_redis *r, uint32_t slot, int argc, uint64_t deadline_ns);

/* ---- the cross-slot protocol (redis_cross.c) ---- */

int sluice__redis_admit_cross(struct sluice_redis *r, const struct prepared *whole, uint64_t now_ns,
			      struct sluice_decision *out, sluice_slot_handle *handles);

#endif /* SLUICE_WITH_REDIS */

#endif /* SLUICE_REDIS_INTERNAL_H */
