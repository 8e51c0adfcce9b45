/*
 * sluice/redis.h - the Redis backend: the keyed limiter's semantics (every
 * limit kind: GCRA, sliding counter, calendar, sliding log, slots)
 * evaluated on a Redis server, so that one limit holds across a fleet.
 *
 * A backend handle is one connection to one Redis server (hiredis), or with
 * SLUICE_REDIS_CLUSTER one connection per node of a Redis Cluster. Each call
 * sends one Lua script invocation (EVALSHA; the script is loaded once with
 * SCRIPT LOAD and reloaded after NOSCRIPT) that decides every limit of every
 * scope (key) of a request all-or-nothing, atomically on the server, in one
 * round trip, and answers with the same struct sluice_decision as
 * sluice_limiter_admit(): for the same sequence of requests and times the
 * decisions, remaining, reset_ns and retry_after_ns are identical
 * (tests/test_redis.c, "differential"). Design, the script, the exactness
 * domain, time, expiry, failures: docs/redis.md.
 *
 * Time: by default the Redis server's clock (TIME inside the script): one
 * clock for the whole fleet, and now_ns arguments are ignored. With
 * SLUICE_REDIS_CALLER_CLOCK the caller's now_ns is used; every client of the
 * same keys must then use the same clock (e.g. Unix time from synchronized
 * hosts), and skew between hosts shifts decisions by at most the skew.
 * Redis expires keys in real time, so a caller clock must advance at real
 * speed.
 *
 * Failures (connection refused, timeouts, a restart, READONLY replica,
 * script errors) are not errors of the call: the configured fail mode
 * answers (SLUICE_FAIL_OPEN: allowed with degraded = true; SLUICE_FAIL_CLOSED:
 * denied, reason SLUICE_REASON_CAPACITY, degraded = true) and the event is
 * counted in the stats. No call blocks longer than the configured timeout
 * (plus scheduling); a lost connection is re-established by a later call,
 * with exponential backoff between attempts.
 *
 * Thread safety: a handle is NOT thread-safe (it owns one socket and its
 * buffers). Use one handle per thread, or guard a handle with a mutex.
 * Different handles are independent. The calls block on network I/O; they
 * are not for the lock-free hot path (docs/redis.md, "Threading").
 *
 * Builds without hiredis (SLUICE_WITH_REDIS=OFF) keep this API; create then
 * returns SLUICE_EUNSUPPORTED.
 */
#ifndef SLUICE_REDIS_H
#define SLUICE_REDIS_H

#include "common.h"
#include "engine.h"
#include "limiter.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Most scopes (keys) in one request, and most limits in one request (all
 * scopes together). A decision's limit_index counts limits across the
 * scopes in order: scope 0's limits first. */
#define SLUICE_REDIS_MAX_SCOPES 8
#define SLUICE_REDIS_MAX_LIMITS 32

/*
 * Largest bucket depth (burst * interval) a limit may have on this backend:
 * 2^52 ns, about 52 days. Redis Lua numbers are doubles; with durations below
 * 2^52 every sum and comparison in the script is exact. Times themselves are
 * full 64-bit values, handled as (seconds, nanoseconds) pairs.
 */
#define SLUICE_REDIS_MAX_TOLERANCE_NS (UINT64_C(1) << 52)

/*
 * Largest limit of a SLUICE_LIMIT_SLIDING_LOG limit on this backend (the
 * in-process ceiling is SLUICE_WINDOW_LOG_MAX_LIMIT, 4096): the log lives
 * in one hash field as up to `limit` decimal times (about 20 bytes each),
 * and every request reads, and every admission rewrites, the whole field;
 * its reply carries it too. Larger limits: the sliding counter.
 */
#define SLUICE_REDIS_MAX_LOG_LIMIT 1024u

/* options.flags */
/* Use the caller's now_ns instead of the server's TIME. */
#define SLUICE_REDIS_CALLER_CLOCK 0x1u
/* Redis Cluster: `host:port` is one node (the seed); the slot map is read
 * with CLUSTER SLOTS and corrected by MOVED replies, and each request goes
 * to the node of its slot (up to 16 nodes, one connection each). Keys of
 * one request that share a hash tag, e.g. "{ws:42}" and "{ws:42}:tok:abc",
 * are in one slot and decided in one round trip; a request whose keys are
 * on several slots runs the cross-slot protocol: one round trip per slot,
 * all-or-nothing by reserve and cancel (no over-admission; a denied
 * request consumes nothing unless a lost connection or a concurrent write
 * leaves its reservation in place; it blocks at most 2 * timeout_ns)
 * (docs/redis.md, "Scopes on different slots"). During a slot migration
 * an ASK reply is followed once (ASKING, then the call, on the importing
 * node) without changing the map; reserves, cancels and releases too. A
 * TRYAGAIN reply (the keys of one call split between the two nodes; the
 * call did not run) is retried after a pause of 1 ms doubling to 8 ms,
 * never past the call's timeout (then the fail mode answers). */
#define SLUICE_REDIS_CLUSTER 0x2u

/*
 * Options, versioned: size = sizeof(struct sluice_redis_options) (or
 * SLUICE_REDIS_OPTIONS_V1_SIZE from a caller built before the lease
 * fields); zero is the default of every field. NULL options: all defaults.
 */
struct sluice_redis_options {
	size_t size;
	const char *host;           /* NULL: "127.0.0.1" (copied) */
	uint32_t port;              /* 0: 6379; at most 65535 */
	uint32_t fail_mode;         /* enum sluice_fail_mode */
	uint32_t flags;             /* SLUICE_REDIS_* */
	uint32_t deny_cache_slots;  /* local deny cache size, a power of two; 0: off */
	uint64_t timeout_ns;        /* most time one call may block; 0: 50 ms */
	uint64_t backoff_min_ns;    /* first wait after a failed connect; 0: 10 ms */
	uint64_t backoff_max_ns;    /* the wait doubles up to this; 0: 1 s */
	const char *key_prefix;     /* prepended to every key; NULL: "sluice:" (copied) */
	/* Keys live this much longer than until full (at most
	 * SLUICE_REDIS_MAX_TOLERANCE_NS / 2, so that debt + grace stays
	 * exact in the script's doubles). 0 is right for the server's clock
	 * and for caller clocks that run at real speed; a caller clock that
	 * can stall against real time (replays, tests) needs a grace above
	 * the longest stall, or an expired key reads as full too early. */
	uint64_t expiry_grace_ns;
	/* ---- version 2: the local lease (docs/redis.md, "Local lease").
	 * A caller built against version 1 passes size =
	 * SLUICE_REDIS_OPTIONS_V1_SIZE and gets no lease. ---- */
	/* Units one lease takes from the server (all-or-nothing over every
	 * limit of every scope of the request, like a request of that cost);
	 * capped per request shape at the smallest burst of its limits.
	 * 0: no lease (every request is a round trip, as in version 1). */
	uint32_t lease_units;
	/* A request shape (its keys and limits) gets a lease once this handle
	 * has seen it this many times within one lease_ttl_ns; 0: lease_units
	 * (a shape busy enough to spend a whole lease in one lifetime). */
	uint32_t lease_hot_hits;
	/* Entries of the lease table (direct-mapped by request shape), a
	 * power of two; 0: 64. */
	uint32_t lease_slots;
	uint32_t lease_reserved_; /* must be 0 */
	/* Longest life of a lease, measured from before its round trip was
	 * sent; unused units are then dropped (not returned to the server).
	 * It widens the fleet's admission bound (docs/redis.md). 0: 100 ms;
	 * at most SLUICE_REDIS_MAX_TOLERANCE_NS. */
	uint64_t lease_ttl_ns;
};

/* Size of version 1 of struct sluice_redis_options (no lease fields). */
#define SLUICE_REDIS_OPTIONS_V1_SIZE offsetof(struct sluice_redis_options, lease_units)

/* One scope of a request: a key and its limits, of any kind (limits on
 * this backend: docs/redis.md, "Kinds on Redis"). The Redis key is
 * key_prefix + key, one hash holding one field per limit; keys of one
 * request must be distinct, and the same key must always come with the
 * same limits (as one keyed limiter's policy). */
struct sluice_redis_scope {
	const void *key;
	size_t key_len;
	const struct sluice_limit *limits;
	size_t nlimits;
};

/* One request of a batch: its scopes and cost. */
struct sluice_redis_request {
	const struct sluice_redis_scope *scopes;
	size_t nscopes;
	uint64_t cost;
};

struct sluice_redis; /* opaque */

/*
 * Create a backend handle and try to connect (within timeout_ns). A failed
 * connection is not an error: calls answer by the fail mode until a later
 * call connects (after the backoff).
 * Returns 0 and sets *out, or SLUICE_EINVAL (out NULL, opts->size neither
 * SLUICE_REDIS_OPTIONS_V1_SIZE nor at least the current size, unknown flag
 * or fail mode, host empty or 256 bytes or longer, port > 65535,
 * deny_cache_slots or lease_slots not a power of two, backoff_min_ns >
 * backoff_max_ns, expiry_grace_ns too large, lease_ttl_ns above
 * SLUICE_REDIS_MAX_TOLERANCE_NS, lease_reserved_ not 0), SLUICE_ENOMEM, or
 * SLUICE_EUNSUPPORTED (built without hiredis).
 */
SLUICE_API int sluice_redis_create(struct sluice_redis **out, const struct sluice_redis_options *opts);

/* Close the connection and free the handle. NULL is a no-op. Keys on the
 * server are left to expire. */
SLUICE_API void sluice_redis_destroy(struct sluice_redis *r);

/*
 * Admit `cost` units for every scope at once: allowed iff every limit of
 * every scope admits them; then all consume `cost`, else none does. Same
 * contract as sluice_limiter_admit() (cost == 0 is a read-only peek that
 * creates nothing; cost > burst of a limit denies with SLUICE_NEVER; the
 * governing limit is the first denier in scope order, else the least
 * remaining, ties to the shorter reset; time going backwards denies more,
 * never less). Limits are decided in the keyed limiter's order (within a
 * scope its first GCRA limit first), so every decision is that of one
 * sluice_limiter per scope visited in order (on a cluster, in ascending
 * hash-slot order, then the caller's). now_ns is used with
 * SLUICE_REDIS_CALLER_CLOCK and ignored otherwise (calendar limits then
 * need Unix time as now_ns). A local deny-cache hit answers without a round
 * trip (requests whose limits are all GCRA or calendar; docs/redis.md,
 * "Deny cache").
 *
 * With options.lease_units = L > 0, a request shape (the same keys and
 * limits in the same order; only shapes whose limits are all GCRA, with
 * every key on one hash slot: window and slot kinds, cross-slot requests,
 * acquires and peeks never lease and are one round trip each, exact as
 * without a lease) that this handle sees often takes a lease: the
 * request is sent with cost min(L, smallest burst), the caller is charged
 * its own cost, and the rest is held locally; later requests of the shape
 * are admitted from the held units without a round trip (allowed, remaining
 * = the units still held, reset_ns = the server's debt as last seen) until
 * they run out or the lease is lease_ttl_ns old. Denials are always exactly
 * those of a round trip with the request's cost. Over any window of length
 * W the fleet admits at most floor((W + lease_ttl_ns + tau) / T) units per
 * limit (docs/redis.md, "Local lease": the bound, the fields).
 *
 * Returns 0 with the verdict in *out (degraded set when the fail mode
 * answered), or, with nothing sent and *out unspecified:
 *   SLUICE_EINVAL   r, out or scopes NULL, nscopes 0, a scope with no limits
 *                   or NULL limits, a limit not made by its kind's
 *                   config_init or of an unknown kind, two scopes with the
 *                   same key, two slots limits in one scope, a slots limit
 *                   with cost > 0 (use sluice_redis_acquire_scopes(), as
 *                   sluice_limiter_admit() refuses it too);
 *   SLUICE_EKEY     a key NULL or longer than SLUICE_LIMITER_MAX_KEY;
 *   SLUICE_ETOOBIG  more than SLUICE_REDIS_MAX_SCOPES scopes or
 *                   SLUICE_REDIS_MAX_LIMITS limits;
 *   SLUICE_ERANGE   a GCRA bucket depth, a window or a lease above
 *                   SLUICE_REDIS_MAX_TOLERANCE_NS, a log limit above
 *                   SLUICE_REDIS_MAX_LOG_LIMIT, or (server's clock) a
 *                   counter or calendar window not a whole number of us;
 *   SLUICE_ENOMEM.
 * Not thread-safe (see above). Blocks at most timeout_ns (a cross-slot
 * request on a cluster: at most 2 * timeout_ns, reserves then cancels).
 */
SLUICE_API int sluice_redis_admit_scopes(struct sluice_redis *r, const struct sluice_redis_scope *scopes,
					 size_t nscopes, uint64_t cost, uint64_t now_ns,
					 struct sluice_decision *out);

/* sluice_redis_admit_scopes() with one scope. */
SLUICE_API int sluice_redis_admit(struct sluice_redis *r, const void *key, size_t key_len,
				  const struct sluice_limit *limits, size_t nlimits, uint64_t cost,
				  uint64_t now_ns, struct sluice_decision *out);

/*
 * Admit n requests, pipelined: every script call is sent, then every reply
 * read, so the batch costs one round trip. out[i] is the decision of reqs[i],
 * as n calls of sluice_redis_admit_scopes() in index order would give (the
 * server runs them in that order; other clients' calls may interleave; on
 * a cluster a request redirected by MOVED or ASK, or retried after
 * TRYAGAIN, runs after the rest of its node's pipeline).
 * Every request is validated before anything is sent (errors as above,
 * slots policies with cost > 0 included; on an error nothing is sent).
 * A cross-slot request (cluster) runs its protocol alone, in its place in
 * the order, between pipelined runs of the others. n == 0 is a no-op.
 * Blocks at most timeout_ns per pipelined run or cross-slot request. Not
 * thread-safe.
 */
SLUICE_API int sluice_redis_admit_batch(struct sluice_redis *r, const struct sluice_redis_request *reqs,
					size_t n, uint64_t now_ns, struct sluice_decision *out);

/*
 * sluice_redis_admit_scopes() for policies with a SLUICE_LIMIT_SLOTS limit
 * (at most one per scope; accepted for any policy). When the request is
 * admitted (cost > 0), every scope with a slots limit takes one slot
 * together with every other limit, all-or-nothing, and handles[s] receives
 * scope s's handle; give each back with sluice_redis_release() when the
 * request completes. handles must hold nscopes entries; a scope without
 * slots, a denial, a peek or a degraded answer leaves SLUICE_SLOT_NONE.
 * The decisions are sluice_limiter_acquire()'s: a full slots limit denies
 * with SLUICE_REASON_CONCURRENCY and retry_after_ns = its hint; with a
 * lease TTL a full limit takes over a lease held for the TTL or longer.
 * A key holding a slot without a lease never expires until its last slot
 * is released (docs/redis.md, "Slots"). Errors as
 * sluice_redis_admit_scopes(), and SLUICE_EINVAL for handles NULL or two
 * slots limits in one scope. Not thread-safe. Blocks at most timeout_ns.
 */
SLUICE_API int sluice_redis_acquire_scopes(struct sluice_redis *r, const struct sluice_redis_scope *scopes,
					   size_t nscopes, uint64_t cost, uint64_t now_ns,
					   struct sluice_decision *out, sluice_slot_handle *handles);

/*
 * Give back a slot taken by sluice_redis_acquire_scopes() for `scope` (its
 * key and the same limits). One round trip. Returns 0 (released);
 * SLUICE_EDOUBLE (already released); SLUICE_ESTALE (a handle of another key
 * or of an earlier state of this key, its lease taken over by another
 * acquirer, malformed, or SLUICE_SLOT_NONE); SLUICE_ENOTFOUND (the key does
 * not exist, whatever the handle: as sluice_limiter_release(), the key is
 * looked up first, so a malformed handle also costs a round trip);
 * SLUICE_EINVAL (r or scope NULL, or no slots limit among the limits); the
 * validation errors of sluice_redis_admit_scopes();
 * SLUICE_EBACKEND (the server could not be reached or is a replica within
 * the timeout: the slot stays taken; retry, or let its lease expire);
 * SLUICE_EPROTO (an unexpected reply). Only a 0 return changes the state.
 * Not thread-safe. Blocks at most timeout_ns.
 */
SLUICE_API int sluice_redis_release(struct sluice_redis *r, const struct sluice_redis_scope *scope,
				    sluice_slot_handle handle);

/* Counters, versioned: set size = sizeof(struct sluice_redis_stats), or
 * SLUICE_REDIS_STATS_V1_SIZE / SLUICE_REDIS_STATS_V2_SIZE (then only the
 * fields of that version are written). */
struct sluice_redis_stats {
	size_t size;
	uint64_t admitted;         /* answers allowed by the server or cache (not degraded) */
	uint64_t denied;           /* answers denied by the server or cache (not degraded) */
	uint64_t degraded;         /* answers by the fail mode */
	uint64_t round_trips;      /* request/reply exchanges: a script call, a
				      pipelined batch, a SCRIPT LOAD each count 1 */
	uint64_t cache_hits;       /* denials answered by the local deny cache */
	uint64_t connects;         /* connections established (script loaded) */
	uint64_t connect_failures; /* connection attempts that failed */
	uint64_t backoff_skips;    /* calls answered by the fail mode without trying (backoff) */
	uint64_t io_errors;        /* connections lost in a call (timeouts included) */
	uint64_t timeouts;         /* calls that ran out of timeout_ns */
	uint64_t script_loads;     /* SCRIPT LOAD sent */
	uint64_t noscript;         /* NOSCRIPT replies (script reloaded, call retried) */
	uint64_t readonly;         /* READONLY replies (a replica) */
	uint64_t server_errors;    /* other error replies or malformed replies */
	uint64_t moved;            /* MOVED replies (cluster: slot re-pointed, call resent) */
	/* ---- version 2 (a caller passing SLUICE_REDIS_STATS_V1_SIZE gets
	 * the fields above only) ---- */
	uint64_t leased;           /* admissions answered from a local lease (also in admitted) */
	uint64_t lease_grants;     /* leases taken (round trips that consumed a lease) */
	uint64_t lease_wasted;     /* leased units dropped unused (expired or superseded) */
	uint64_t ask;              /* ASK replies (cluster: ASKING + call sent to the importing node) */
	/* ---- version 3 (a caller passing SLUICE_REDIS_STATS_V2_SIZE gets
	 * the fields above only) ---- */
	uint64_t tryagain;         /* TRYAGAIN replies (cluster: a request's keys split by a slot
				      migration; the call did not run and is resent after a pause) */
};

/* Size of version 1 of struct sluice_redis_stats. */
#define SLUICE_REDIS_STATS_V1_SIZE offsetof(struct sluice_redis_stats, leased)
/* Size of version 2 of struct sluice_redis_stats (no tryagain). */
#define SLUICE_REDIS_STATS_V2_SIZE offsetof(struct sluice_redis_stats, tryagain)

/* Copy the counters into *out (those of the version out->size names;
 * out->size is set to the bytes written). Returns 0 or SLUICE_EINVAL (NULL argument, or out->size
 * neither SLUICE_REDIS_STATS_V1_SIZE, SLUICE_REDIS_STATS_V2_SIZE nor at
 * least the current size). Not thread-safe with calls on the same handle. */
SLUICE_API int sluice_redis_stats(const struct sluice_redis *r, struct sluice_redis_stats *out);

/* ======================================================================
 * Limiter and engine on Redis (docs/redis.md, "Limiter and engine on
 * Redis"): sluice_limiter_* and sluice_engine_* objects whose state lives
 * on a Redis server shared by a fleet, made by the two constructors below
 * and used through the ordinary functions of sluice/limiter.h and
 * sluice/engine.h. Both hold a pool of backend handles made from the Redis
 * options, each owned by one thread at a time (a pool mutex, never held
 * across I/O): a thread is given a home connection on first use (round
 * robin); when it is busy the thread takes any idle one, else waits for one,
 * at most the backend's timeout_ns (then the fail mode answers without
 * I/O). So a call blocks at most twice timeout_ns however many threads share
 * the pool. Builds without hiredis: both constructors return
 * SLUICE_EUNSUPPORTED.
 *
 * Memory ordering a caller may rely on: every decision is taken atomically
 * on the server (one script call), so admissions of all processes are
 * linearized there; nothing is ordered in the caller's memory (no fence is
 * implied by any call, on any outcome: add your own). A degraded answer
 * (fail mode) touched no state.
 * ====================================================================== */

/* Most connections of a limiter's or engine's pool. */
#define SLUICE_REDIS_MAX_CONNECTIONS 64

/* Options of a limiter or engine on Redis, versioned: size = sizeof. */
struct sluice_redis_limiter_options {
	size_t size;
	/* The backend's options (sluice_redis_create()); required. Read during
	 * create only. Their fail_mode must be 0: the limiter's (or the
	 * policy's) applies. */
	const struct sluice_redis_options *redis;
	/* Connections of the pool; 0: 4; at most SLUICE_REDIS_MAX_CONNECTIONS. */
	uint32_t connections;
	uint32_t reserved_; /* must be 0 */
	/* Engine only (NULL for a limiter): the name of the scope whose
	 * identity is the Redis Cluster hash tag of every key of a request
	 * (e.g. "workspace"); NULL: each limit's key is tagged with its own
	 * first scope. Copied. */
	const char *tag_scope;
};

/*
 * Limiter on Redis. The same functions, the same decisions as in process:
 * every call goes to the backend (sluice_redis_admit() with the limiter's
 * policy as one scope whose key is `key`). Differences, all documented here:
 *   - Blocking network I/O (the pool above), not the lock-free path.
 *     Thread safety is as for the in-process limiter.
 *   - Backend failures answer by lopts->fail_mode with decision.degraded
 *     set (peeks answer allowed), counted in stats.degraded.
 *   - Time: the backend's source (the server's TIME unless
 *     SLUICE_REDIS_CALLER_CLOCK; then now_ns, which must be a clock shared
 *     by the fleet, advancing at real speed).
 *   - admit_batch is pipelined: one round trip per 128 requests.
 *   - sweep: Redis expires idle keys itself; returns 0 with *reclaimed 0.
 *     maintenance_start/stop keep their state machine (0, ESTATE) but start
 *     no thread.
 *   - stats: admitted/denied/degraded as in process; inserted, reclaimed,
 *     live_keys and bytes are 0 (the keys live on Redis).
 *   - Limits: validated once, here (admit, peek and acquire do not
 *     validate them again; admit_batch does): the kinds and ranges the
 *     backend evaluates (a read-only peek sent at create finds a limit it refuses:
 *     SLUICE_EUNSUPPORTED for a kind, SLUICE_ERANGE for a range). Slots:
 *     acquire/release go to sluice_redis_acquire_scopes() and
 *     sluice_redis_release() with the same contract; release may also
 *     return SLUICE_EBACKEND (server unreachable within the timeout: the
 *     slot stays taken; retry, or let its lease expire).
 * Create: lopts as for sluice_limiter_create() (NULL: defaults), except that
 * the options of the local table are refused with SLUICE_EINVAL (max_keys,
 * max_bytes, hash_secret, the allocator hooks, initial_buckets);
 * SLUICE_LIMITER_CALLER_REGISTERS_RCU is accepted (nothing uses RCU).
 * Returns 0 and sets *out, or SLUICE_EINVAL (NULL out, limits, ropts or
 * ropts->redis; bad sizes; a local-table option; ropts->redis->fail_mode
 * nonzero; tag_scope set; connections above SLUICE_REDIS_MAX_CONNECTIONS;
 * bad Redis options), SLUICE_ETOOBIG (nlimits above
 * SLUICE_LIMITER_MAX_LIMITS), SLUICE_ERANGE, SLUICE_EUNSUPPORTED,
 * SLUICE_ENOMEM. A server that is down is not an error (fail mode later).
 * Destroy with sluice_limiter_destroy().
 */
SLUICE_API int sluice_redis_limiter_create(struct sluice_limiter **out, const struct sluice_limit *limits,
					   size_t nlimits, const struct sluice_limiter_options *lopts,
					   const struct sluice_redis_limiter_options *ropts);

/*
 * Engine on Redis. The same functions and the same decisions as in
 * process (one planner: sluice/engine.h), with every limit's per-key state
 * on Redis:
 *   - sluice_engine_check() sends ONE request to Redis: every applicable
 *     limit (after tier and override) is one scope of one script call
 *     (an acquire when it takes a slot), in the engine's evaluation order,
 *     decided all-or-nothing atomically on the server; the call reports
 *     every limit's decision and the engine picks the governing one and
 *     builds the decision as in process (warn, limit_decisions included).
 *     Backend failures answer by the policy's fail mode with d.degraded
 *     set (fail open: allowed, no governing limit; fail closed: denied with
 *     reason CAPACITY, governed by the first applicable limit).
 *   - Limits: validated once, when their binding is made (create, reload),
 *     by a read-only peek of each; a request does not validate them again.
 *   - Blocking network I/O (the pool above). A request pins the policy
 *     snapshot it started on by a reference (no RCU read-side section is
 *     held across I/O): reload never waits for a request in flight.
 *   - Keys: key_prefix + "{tag}" + the limit's scopes, name, tier or
 *     override and numbers (docs/redis.md, "Key naming"); a key must fit
 *     SLUICE_LIMITER_MAX_KEY bytes (else check returns SLUICE_EKEY). On a
 *     Redis Cluster, a request whose keys carry different tags lies on
 *     different slots: check returns SLUICE_EUNSUPPORTED and consumes
 *     nothing. With tag_scope set, a request that lacks its identity while
 *     a limit applies: SLUICE_EINVAL.
 *   - Reload: a limit whose name, scopes, per-class flag, tier/override
 *     and numbers are unchanged keeps its state (same keys); a changed one
 *     starts fresh (new keys; the old ones expire).
 *   - usage: read-only peeks of every keyable limit in one pipelined round
 *     trip; SLUICE_EBACKEND when the backend could not answer.
 *     top: SLUICE_EUNSUPPORTED. sweep: forgets the keys of slots whose
 *     lease has passed (Redis expires idle keys itself).
 *   - release: the engine keeps the key of each slot it hands out (a small
 *     record per held slot, freed by the release, or by a sweep once the
 *     slot's lease has passed), so release takes only the decision, as in
 *     process; one round trip per slot; also SLUICE_EBACKEND when the
 *     server cannot be reached (the slot stays taken: retry, or let its
 *     lease expire).
 *   - Round trips: one per check; a refusal that asks for limit_decisions:
 *     one more (read-only peeks of the other limits, pipelined).
 * Create: eopts as for sluice_engine_create() except max_keys (SLUICE_EINVAL);
 * sweep_interval_ns and SLUICE_ENGINE_CALLER_REGISTERS_RCU are accepted;
 * state_path is SLUICE_EUNSUPPORTED, as are sluice_engine_snapshot() and
 * sluice_engine_restore() on such an engine: Redis keeps the state, and a
 * restart of the process loses none of it.
 * Refused: ropts as for the limiter (tag_scope may be set: an unknown
 * scope is SLUICE_EINVAL), kinds the backend does not evaluate
 * (SLUICE_EUNSUPPORTED), a policy with a dry-run limit (SLUICE_EUNSUPPORTED,
 * before any connection; a reload to one too: docs/redis.md), more than SLUICE_REDIS_MAX_SCOPES limits
 * applicable to one class or a limit outside the backend's ranges
 * (SLUICE_ETOOBIG; e.g. a bucket deeper than SLUICE_REDIS_MAX_TOLERANCE_NS,
 * a sliding log above SLUICE_REDIS_MAX_LOG_LIMIT). On success the engine
 * owns the policy; on failure the caller keeps it. Destroy with
 * sluice_engine_destroy().
 */
SLUICE_API int sluice_redis_engine_create(struct sluice_engine **out, struct sluice_policy *policy,
					  const struct sluice_engine_options *eopts,
					  const struct sluice_redis_limiter_options *ropts);

#ifdef __cplusplus
}
#endif

#endif /* SLUICE_REDIS_H */
