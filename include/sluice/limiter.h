/*
 * sluice/limiter.h - the keyed limiter: per-key state for millions of keys in
 * a lock-free hash table (memory reclaimed through liburcu's RCU), several
 * limits per key, all-or-nothing.
 *
 * A limiter holds a policy (an array of limits, e.g. 120/min + 50000/day)
 * and, for every key it has seen recently, one entry with one cell per limit.
 * sluice_limiter_admit() admits a request only if every limit of the key
 * admits it, and a denied request consumes nothing from any limit. Entries
 * whose limits are all back to full carry no information; sweeping
 * (sluice_limiter_sweep(), or the optional maintenance thread) reclaims them,
 * and re-creating a reclaimed key gives the same decisions as keeping it.
 * Design, memory orders and the safety arguments: docs/limiter.md.
 *
 * Threads and RCU: the table uses liburcu's "memb" flavor (<urcu.h>). Every
 * function registers its calling thread with liburcu on first use and
 * unregisters it when the thread exits (a pthread key destructor), so callers
 * need do nothing. An application that registers its threads with urcu-memb
 * itself sets SLUICE_LIMITER_CALLER_REGISTERS_RCU in the options of every
 * limiter it creates; sluice then never registers or unregisters a thread.
 * No function may be called from inside a caller's own rcu_read_lock()
 * section of another flavor.
 *
 * Thread safety: admit, admit_batch, peek, sweep and stats may be called
 * concurrently from any threads. create/destroy and maintenance_start/stop
 * are not concurrent with anything else on the same limiter.
 *
 * Memory ordering a caller may rely on, per outcome:
 *   - admit/acquire, admitted: every limit of the key took `cost`, each at
 *     its own atomic operation (the entry's commit cell last); the answer
 *     is linearized at that commit. No ordering of any other memory is
 *     implied (the operations are relaxed): a caller that hands data to
 *     whoever is admitted next needs its own release/acquire.
 *   - admit/acquire, denied: nothing was taken (a racing commit that lost
 *     is undone before return); nothing is ordered.
 *   - peek: a snapshot of each limit read atomically, not of the key as a
 *     whole; nothing is ordered.
 *   - release, 0: the slot is free for the next acquire (an atomic update
 *     of the slots cell); the caller's memory is not ordered by it.
 *   - sweep: an entry is reclaimed only if, at its tombstoning CAS, every
 *     limit was full (docs/limiter.md, "Reclaim"); admits never wait for it.
 * Other stores (sluice_redis_limiter_create(), sluice/redis.h) linearize
 * decisions in the store and order nothing of the caller's memory.
 *
 * Keys: any bytes, key_len 0 .. SLUICE_LIMITER_MAX_KEY (the empty key is a
 * valid key, e.g. one global bucket); a NULL key pointer (even with length 0)
 * or a longer key is SLUICE_EKEY.
 */
#ifndef SLUICE_LIMITER_H
#define SLUICE_LIMITER_H

#include "common.h"
#include "gcra.h"
#include "slots.h"
#include "window.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Longest key, in bytes. */
#define SLUICE_LIMITER_MAX_KEY 1024

/* Most limits in one policy. */
#define SLUICE_LIMITER_MAX_LIMITS 8

/* The kind of one limit of a policy. 0 is invalid (catches zeroed specs). */
enum sluice_limit_kind {
	SLUICE_LIMIT_GCRA = 1,            /* token bucket: struct sluice_rate */
	SLUICE_LIMIT_SLIDING_LOG = 2,     /* exact sliding window: .log */
	SLUICE_LIMIT_SLIDING_COUNTER = 3, /* approximate sliding window: .counter */
	SLUICE_LIMIT_CALENDAR = 4,        /* fixed UTC-aligned window: .calendar */
	SLUICE_LIMIT_SLOTS = 5,           /* concurrency slots: .slots */
};

/*
 * One limit of a policy: a kind tag and that kind's parameters, made by the
 * kind's own config_init (sluice_rate_init, sluice_window_log_config_init,
 * sluice_window_counter_config_init, sluice_calendar_config_init,
 * sluice_slots_config_init). The union is 128 bytes so that the parameters of
 * future kinds fit without changing the size of the struct (ABI); unused
 * bytes must be zero.
 *
 *     struct sluice_limit l = { .kind = SLUICE_LIMIT_GCRA };
 *     sluice_rate_init(&l.rate, 120, 60 * SLUICE_NS_PER_SEC, 120);
 *
 * Kinds in a keyed policy: every kind takes part in the all-or-nothing
 * decision. A policy holds at most one SLUICE_LIMIT_SLOTS limit; a request
 * admitted by such a policy holds one slot (whatever its cost) until
 * sluice_limiter_release(), so these policies are admitted with
 * sluice_limiter_acquire() (sluice_limiter_admit() and admit_batch refuse
 * them with SLUICE_EINVAL; peeks are fine). An entry holding a slot is never
 * idle. Calendar limits need Unix time (sluice_realtime_ns()) as now_ns;
 * the other kinds work on any clock. Memory per key: docs/limiter.md
 * ("Kinds"): a sliding log costs 16 + 8 * capacity bytes, slots 16 + 16 * N.
 */
struct sluice_limit {
	uint32_t kind;      /* enum sluice_limit_kind */
	uint32_t reserved_; /* must be 0 */
	union {
		struct sluice_rate rate;                        /* SLUICE_LIMIT_GCRA */
		struct sluice_window_log_config log;            /* SLUICE_LIMIT_SLIDING_LOG */
		struct sluice_window_counter_config counter;    /* SLUICE_LIMIT_SLIDING_COUNTER */
		struct sluice_calendar_config calendar;         /* SLUICE_LIMIT_CALENDAR */
		struct sluice_slots_config slots;               /* SLUICE_LIMIT_SLOTS */
		uint64_t params_[16];                           /* size of the parameter block */
	};
};

/* What admit answers when it cannot track a key (key budget exhausted or an
 * allocation failed) is options.fail_mode, an enum sluice_fail_mode
 * (sluice/common.h). Either way decision.degraded is set and the event is
 * counted in stats.degraded. */

/* options.flags */
/* The application registers with urcu-memb every thread that calls this
 * limiter (create and destroy included); see "Threads and RCU" above. */
#define SLUICE_LIMITER_CALLER_REGISTERS_RCU 0x1u

/* Allocator hooks: both set or both NULL (then malloc/free). free_fn gets the
 * size that was passed to malloc_fn. Called from admitting threads (new
 * keys), sweeping threads and liburcu's call_rcu worker thread, so they must
 * be thread-safe. They allocate the table's arrays too (8 bytes per slot;
 * entries must come back 8-byte aligned at addresses below 2^48, as every
 * 64-bit Linux malloc returns by default; any other address is answered as
 * an allocation failure). */
typedef void *(*sluice_malloc_fn)(void *user, size_t size);
typedef void (*sluice_free_fn)(void *user, void *ptr, size_t size);

/*
 * Options, versioned: set `size` to sizeof(struct sluice_limiter_options) and
 * zero every field you do not use (zero is the default of each field). A
 * NULL options pointer means all defaults.
 */
struct sluice_limiter_options {
	size_t size;
	/* Most keys tracked at once; 0: no limit. */
	uint64_t max_keys;
	/* Most bytes of entries tracked at once (entry allocations plus an
	 * estimate of the table's share, docs/limiter.md "Memory"); 0: none. */
	uint64_t max_bytes;
	/* enum sluice_fail_mode */
	uint32_t fail_mode;
	/* SLUICE_LIMITER_* flags */
	uint32_t flags;
	/* Secret that keys the hash (any length >= 1); NULL: 32 random bytes
	 * from getrandom(). Fix it only for reproducible tests. */
	const void *hash_secret;
	size_t hash_secret_len;
	sluice_malloc_fn malloc_fn;
	sluice_free_fn free_fn;
	void *alloc_user;
	/* Keys the table's first array is sized for (power of two, at most
	 * 2^32; about 21 bytes per key, allocated at create). 0: the most
	 * keys the budget admits (max_keys, or max_bytes over the charge of
	 * an entry with an empty key, whichever is smaller) rounded up to a
	 * power of two, between 1024 and 2^20. The table grows (and shrinks
	 * after reclaims) by itself, inside the insert that fills it; inserts
	 * wait while it copies, lookups never: presize it when you expect a
	 * burst of new keys (docs/limiter.md, "Table size"). */
	uint64_t initial_buckets;
};

/* A limiter on Redis is made by sluice_redis_limiter_create() (sluice/redis.h,
 * "Limiter on Redis"): the same functions and decisions, every key's state
 * on a server shared by a fleet. */

struct sluice_limiter; /* opaque */

/*
 * Create a limiter for the policy `limits[0 .. nlimits-1]` (copied; the
 * caller's array may be freed afterwards).
 * Returns 0 and sets *out, or:
 *   SLUICE_EINVAL   out or limits NULL, nlimits 0, an unknown kind, a rate
 *                   not made by sluice_rate_init(), opts->size not this
 *                   version's, an unknown flag or fail mode,
 *                   hash_secret_len 0 with a secret, only one allocator hook,
 *                   initial_buckets not a power of two;
 *   SLUICE_ETOOBIG  nlimits > SLUICE_LIMITER_MAX_LIMITS, or initial_buckets
 *                   above 2^32;
 *   SLUICE_ENOMEM   an allocation failed, the initial array among them
 *                   (nothing is leaked);
 *   SLUICE_ETHREAD  the calling thread could not be registered;
 *   SLUICE_EUNSUPPORTED  no hash_secret and getrandom() failed.
 * Not thread-safe with respect to the new limiter (it is not shared yet).
 */
SLUICE_API int sluice_limiter_create(struct sluice_limiter **out, const struct sluice_limit *limits,
				     size_t nlimits, const struct sluice_limiter_options *opts);

/*
 * Stop the maintenance thread if any, free every entry (after a grace
 * period: liburcu's resize threads may still walk them), wait once for the
 * pending deferred frees (rcu_barrier, ~10 ms, only if this limiter ever
 * deferred one) and free the limiter. NULL is a no-op. No other call on the
 * limiter may run concurrently or follow. Must not be called from inside an
 * RCU read-side critical section or a call_rcu callback.
 */
SLUICE_API void sluice_limiter_destroy(struct sluice_limiter *lim);

/*
 * Admit `cost` units for `key` at `now_ns`: allowed iff every limit of the
 * policy admits them; then all limits consume `cost`, else none does.
 * cost == 0 is a read-only peek of the key's state (see sluice_limiter_peek).
 *
 * The decision names the governing limit (limit_index): the first limit that
 * denied, else the one with the least remaining after the decision (ties:
 * the shorter reset_ns). A key seen for the first time is inserted (two
 * threads racing on a new key share one entry and both count in it); if it
 * cannot be (key budget full, allocation failure) the configured fail mode
 * answers with decision.degraded set.
 *
 * Returns 0 with the verdict in out->allowed (out must not be NULL), or
 * SLUICE_EINVAL (lim or out NULL), SLUICE_EKEY (key NULL or key_len >
 * SLUICE_LIMITER_MAX_KEY), SLUICE_ETHREAD (thread registration failed); on
 * an error nothing is consumed and *out is unspecified.
 *
 * Thread-safe, lock-free on an existing key: a relaxed RCU lookup, one CAS
 * per limit, no allocation, lock or syscall. Time may go backwards per
 * limit as for sluice_gcra_admit (denies more, never over-admits).
 */
SLUICE_API int sluice_limiter_admit(struct sluice_limiter *lim, const void *key, size_t key_len,
				    uint64_t cost, uint64_t now_ns, struct sluice_decision *out);

/*
 * sluice_limiter_admit() for a policy with a SLUICE_LIMIT_SLOTS limit (also
 * accepted for any other policy, where *handle is always SLUICE_SLOT_NONE).
 * When the request is admitted (cost > 0), one slot of the key is taken
 * together with every other limit, all-or-nothing, and *handle receives it;
 * pass it to sluice_limiter_release() when the request completes. On denial
 * (reason SLUICE_REASON_CONCURRENCY when the slots governed) or a degraded
 * answer, *handle is SLUICE_SLOT_NONE. handle must not be NULL (EINVAL).
 * Errors and thread safety as for sluice_limiter_admit().
 */
SLUICE_API int sluice_limiter_acquire(struct sluice_limiter *lim, const void *key, size_t key_len,
				      uint64_t cost, uint64_t now_ns, struct sluice_decision *out,
				      sluice_slot_handle *handle);

/*
 * Give back a slot taken by sluice_limiter_acquire() for `key`. Returns 0;
 * SLUICE_EDOUBLE (already released); SLUICE_ESTALE (the handle is not of
 * this key's current entry: another key's, a reclaimed entry's, or its lease
 * expired and was reclaimed; SLUICE_SLOT_NONE); SLUICE_ENOTFOUND (the key
 * has no entry); SLUICE_EINVAL (lim NULL, or the policy has no slots);
 * SLUICE_EKEY; SLUICE_ETHREAD (thread registration failed). Only a 0 return
 * changes the state. Thread-safe, lock-free.
 */
SLUICE_API int sluice_limiter_release(struct sluice_limiter *lim, const void *key, size_t key_len,
				      sluice_slot_handle handle);

/* The state of `key` at now_ns without consuming anything: out->allowed is
 * true, remaining/reset_ns/limit_index describe the governing limit (least
 * remaining). An unknown key reads as full and is NOT inserted. Errors as
 * for sluice_limiter_admit. Thread-safe; lock-free. */
SLUICE_API int sluice_limiter_peek(struct sluice_limiter *lim, const void *key, size_t key_len,
				   uint64_t now_ns, struct sluice_decision *out);

/* One request of a batch. */
struct sluice_limiter_request {
	const void *key;
	size_t key_len;
	uint64_t cost;
};

/*
 * Admit n requests at now_ns; out[i] receives the decision of reqs[i],
 * exactly as n calls to sluice_limiter_admit() in index order would (the
 * same key twice in a batch counts twice). Lookups are overlapped so that
 * cache misses of different keys are served in parallel.
 * Returns 0, or SLUICE_EINVAL (lim NULL, or reqs/out NULL with n > 0) or
 * SLUICE_EKEY (some key invalid), or SLUICE_ETHREAD (thread registration
 * failed): every key is validated before any request is admitted, so on an
 * error nothing is consumed. n == 0 is a no-op.
 */
SLUICE_API int sluice_limiter_admit_batch(struct sluice_limiter *lim,
					  const struct sluice_limiter_request *reqs, size_t n,
					  uint64_t now_ns, struct sluice_decision *out);

/*
 * Incremental reclaim: visit up to `budget_entries` entries, continuing where
 * the previous sweep stopped (wrapping around at the end of the table), and
 * reclaim those whose limits are all full at now_ns; a slot whose lease has
 * expired at now_ns is reclaimed first (sluice_slots_reap(), as the next
 * acquire would), so a key whose holders vanished does not stay for ever
 * (its handle's release then answers SLUICE_ENOTFOUND). Reclaimed entries are
 * freed after an RCU grace period (call_rcu); their memory counts against
 * max_keys/max_bytes until then. *reclaimed (may be NULL) receives the count.
 * A limiter of one GCRA limit keeps keys of at most 16 bytes in the table
 * itself (one cache line per admission; a new key is moved there by its
 * first admission, the memory it used apart freed after a grace period);
 * the sweep moves those it visits whose first admission found another
 * mover (a resize, a sweep, a snapshot) at work: a server that never
 * sweeps keeps such keys' decisions exact but pays a second cache line per
 * admission and the memory apart.
 * Returns 0, SLUICE_EINVAL (lim NULL), SLUICE_ETHREAD, or SLUICE_ENOMEM (the
 * small batch that defers the frees could not be allocated: the sweep stops
 * early, having reclaimed *reclaimed entries).
 * Thread-safe: concurrent sweeps serialize on a mutex (sweeping is
 * maintenance, not a hot path); admits never wait for a sweep.
 * Use a now_ns from the same clock as the admits; requests with a time
 * earlier than a sweep's now_ns may see a reclaimed key as full.
 */
SLUICE_API int sluice_limiter_sweep(struct sluice_limiter *lim, uint64_t now_ns,
				    size_t budget_entries, size_t *reclaimed);

/* A clock for the maintenance thread. NULL means sluice_monotonic_ns() minus
 * SLUICE_LIMITER_SWEEP_LAG_NS: sweeping a little in the past keeps requests
 * whose clock reading is up to that stale (a thread preempted between its
 * clock read and its admit) from meeting a reclaimed key. A custom clock
 * should lag the admitters' clock the same way. */
typedef uint64_t (*sluice_clock_fn)(void *user);
#define SLUICE_LIMITER_SWEEP_LAG_NS SLUICE_NS_PER_SEC

/*
 * Start a thread that calls sluice_limiter_sweep(lim, clock(user),
 * budget_entries) every interval_ns. Returns 0, SLUICE_EINVAL (lim NULL,
 * interval_ns or budget_entries 0), SLUICE_ESTATE (already running) or
 * SLUICE_ETHREAD (thread creation failed). Not concurrent with stop/destroy.
 */
SLUICE_API int sluice_limiter_maintenance_start(struct sluice_limiter *lim, uint64_t interval_ns,
						size_t budget_entries, sluice_clock_fn clock,
						void *clock_user);

/* Stop and join the maintenance thread. Returns 0, SLUICE_EINVAL (NULL) or
 * SLUICE_ESTATE (not running). */
SLUICE_API int sluice_limiter_maintenance_stop(struct sluice_limiter *lim);

/* Counters, versioned: set size = sizeof(struct sluice_limiter_stats). Each
 * counter is exact once the threads updating it are quiescent; while they
 * run, a read is a recent sum (each stripe read once, relaxed). */
struct sluice_limiter_stats {
	size_t size;
	uint64_t admitted;   /* admit answers allowed (degraded ones excluded) */
	uint64_t denied;     /* admit answers denied (degraded ones excluded) */
	uint64_t degraded;   /* answers by the fail mode */
	uint64_t inserted;   /* entries created */
	uint64_t reclaimed;  /* entries reclaimed by sweeps */
	uint64_t live_keys;  /* inserted - reclaimed */
	uint64_t bytes;      /* bytes of entry allocations, incl. entries awaiting
			      * free (max_bytes charges each entry 16 more, for
			      * its share of the table) */
};

/* Sum the counters into *out. Returns 0, or SLUICE_EINVAL (NULL argument or
 * out->size too small). Thread-safe, wait-free (no shared write). */
SLUICE_API int sluice_limiter_stats(const struct sluice_limiter *lim,
				    struct sluice_limiter_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* SLUICE_LIMITER_H */
