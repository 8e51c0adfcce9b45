/*
 * sluice/engine.h - the policy engine: a loaded policy (sluice/policy.h)
 * evaluated per request, all-or-nothing across every limit of every scope,
 * with hot reload, soft warnings, tiers, per-key overrides, slot release,
 * every limit's decision from one check, and usage introspection. Design and
 * the safety arguments: docs/policy.md, "Engine".
 *
 * Shape. One planner turns a request into its plan (the class, the limits
 * that apply, the binding in force for each after tier and override, the
 * key of each); an executor carries the plan out: in process over keyed
 * limiters (sluice_engine_create(), sluice/limiter.h), or on Redis in one
 * script call (sluice_redis_engine_create(), sluice/redis.h). The engine
 * owns the policy snapshot and reload, and picks the governing limit with
 * one rule for both.
 *
 * Binding. Every limit of the policy gets its own state per tier in force
 * (the base numbers, and one per tier for a "tiered" limit), plus one per
 * override. The key of a limit's state is the identities of the limit's
 * scopes (by scope id, each length-prefixed), followed by the endpoint
 * class's name when the limit is per scope+class.
 *
 * Dry run: a limit marked dry-run in the policy is decided after the
 * enforced ones and alone; its refusal does not refuse the request, it is
 * reported in dry_run_refused and counted (docs/policy.md, "Dry run").
 *
 * Evaluation of one request: route match -> class -> the limits that apply
 * to the class (sluice_policy_class_limits) whose scopes all have an
 * identity in the request -> one admission per limit, all-or-nothing:
 * concurrency slots first, then the other limits in index order, each
 * taking a receipt; the first refusal cancels every receipt already taken.
 * No limit ever admits more than its numbers allow, under any concurrency;
 * a refused request consumes nothing from any limit when evaluated alone,
 * and at worst (a cancel that meets a later write of another thread) leaves
 * a consumption in place, which only denies more (docs/policy.md).
 *
 * Time: now_ns is Unix time in nanoseconds (sluice_realtime_ns()): calendar
 * windows need wall time (the day resets at 00:00 UTC); GCRA and sliding
 * limits work on it as on any clock, and time going backwards (a clock step)
 * never makes them over-admit.
 *
 * Threads and RCU: as for the limiter (sluice/limiter.h), every function
 * registers its calling thread with urcu-memb on first use, unless the
 * engine was created with SLUICE_ENGINE_CALLER_REGISTERS_RCU. check, release,
 * usage, top, generation, sweep and reload may run concurrently from any
 * threads (reloads and sweeps serialize on a mutex; check, release, usage
 * and top never wait for it); create and destroy are not concurrent with
 * anything.
 *
 * Memory ordering a caller may rely on, per outcome (in process):
 *   - check, admitted: each limit's admission is linearized at its own
 *     atomic operation on the key's cell (relaxed: no ordering of any other
 *     memory is implied; publish data with your own release/acquire).
 *     The request as a whole is not one atomic step: a concurrent request
 *     may see one of its limits taken before another is.
 *   - check, refused: the limits taken before the refusal are given back
 *     before check returns (each undo atomic, exact unless another write
 *     landed on that cell since); nothing else is ordered.
 *   - check, any outcome: it decides on the policy of the snapshot it
 *     loaded (an acquire load of the snapshot pointer): every field of
 *     that policy, as reload published it, is visible to it.
 *   - reload, 0: the new policy is published by a release exchange; a call
 *     that starts after reload returned (in a thread ordered after the
 *     return) decides on it; calls in flight finish on the old one, and
 *     reload returns only once none can still use the old one (an RCU grace
 *     period). On an error nothing changed.
 *   - release, 0: the slot is free for the next acquire of that key (an
 *     atomic update of its cell); it orders nothing of the caller's memory.
 * On Redis (sluice/redis.h, "Engine on Redis") decisions are linearized on
 * the server and no call orders the caller's memory.
 */
#ifndef SLUICE_ENGINE_H
#define SLUICE_ENGINE_H

#include "common.h"
#include "policy.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Longest identity value of one scope, in bytes. */
#define SLUICE_ENGINE_MAX_IDENTITY 256
/* Most concurrency slots one decision can hold (limits of kind concurrency
 * that apply to one request). */
#define SLUICE_ENGINE_MAX_SLOTS 4

/* One identity value (e.g. the token "tok_123"). bytes NULL: the request
 * carries no identity for this scope, and the limits keyed by the scope do
 * not apply to it (e.g. a request without a workspace is only checked
 * against the token's limits). len 0 with bytes non-NULL is the empty
 * identity, a valid key. */
struct sluice_identity {
	const void *bytes;
	size_t len;
};

/*
 * One request.
 *   method, path     the route (path from '/', query ignored); method_len 0
 *                    or a NULL/relative path: SLUICE_EINVAL.
 *   identities       array indexed by the policy's scope ids
 *                    (sluice_policy_scope_index); identity_count may be less
 *                    than the scope count (the missing ones are absent).
 *   cost             units to admit; 0 evaluates without consuming or
 *                    inserting (a peek: allowed is true, d describes the
 *                    limit with the least remaining; no slot is taken).
 *   now_ns           Unix time, nanoseconds.
 *   tier             SLUICE_POLICY_NO_TIER (-1) or a tier index
 *                    (sluice_policy_tier_index); an index out of range is
 *                    SLUICE_EINVAL.
 *   limit_decisions  NULL, or an array of limit_decisions_cap decisions
 *                    indexed by policy limit index that sluice_engine_check()
 *                    fills for every applied limit i (bit i of
 *                    out->applied) with i < cap, limit_index = i, so that
 *                    one check gives what a renderer needs of every limit
 *                    (entries of limits that did not apply are untouched).
 *                    Admitted: each limit's decision of this admission
 *                    (the state right after it; allowed). Denied: the
 *                    refusing limit's decision (allowed false) and, for
 *                    every other applied limit, its state read after the
 *                    refusal undid the limits admitted before it (allowed;
 *                    a read-only peek, as sluice_engine_usage() would
 *                    give). cost 0: each limit's peek. A dry-run limit
 *                    is reported as its state after the check, allowed
 *                    (dry_run_refused says whether it would have refused).
 *                    On Redis the
 *                    script call reports every limit's decision with the
 *                    admission; a denial costs one more round trip (the
 *                    peeks; a limit it cannot read then is reported
 *                    degraded and allowed). cap 0 with NULL: nothing
 *                    reported.
 */
struct sluice_engine_request {
	const char *method;
	size_t method_len;
	const char *path;
	size_t path_len;
	const struct sluice_identity *identities;
	uint32_t identity_count;
	int32_t tier;
	uint64_t cost;
	uint64_t now_ns;
	struct sluice_decision *limit_decisions;
	uint32_t limit_decisions_cap;
	uint32_t reserved_; /* must be 0 */
};

/* A concurrency slot held by an admitted request: everything its release
 * needs (the request is not needed again). Opaque fields. */
struct sluice_engine_slot {
	uint64_t binding_id; /* private: the binding (limit x tier, override) */
	uint64_t handle;     /* private: the slot handle */
	uint64_t entry;      /* private: where the slot lives (in process) */
	uint64_t hash;       /* private: the key's hash (in process) */
	uint32_t limit;      /* index of the concurrency limit in the policy */
	uint32_t reserved_;
};

/*
 * The answer for one request.
 *   d                the governing limit's decision (struct sluice_decision):
 *                    d.limit_index is the index of the limit in the policy
 *                    (the first that refused; else the applied limit with
 *                    the least remaining, ties to the shorter reset).
 *                    d.limit/remaining/reset_ns/retry_after_ns are that
 *                    limit's (in force: after tier or override). d.reason:
 *                    SLUICE_REASON_RATE (GCRA, sliding), QUOTA (calendar),
 *                    CONCURRENCY (slots), CAPACITY (fail closed) or NONE.
 *                    When no limit applies: allowed, limit_index
 *                    UINT32_MAX, remaining UINT64_MAX, governed false.
 *                    Only enforced limits govern (and warn): a dry-run
 *                    limit never does, so a request to which only dry-run
 *                    limits apply is answered as when no limit applies.
 *   governed         some enforced limit applied (d describes a real limit).
 *   warn             a limit with "warn N%" has usage above N % of its count
 *                    in force after this decision (e.g. 80 % of a daily quota).
 *   warn_limit       the index of the first such limit (UINT32_MAX: none).
 *   scope            the first scope id of the governing limit's key, or -1.
 *   class_id         the endpoint class the route matched.
 *   applied          bit i: limit i applied to this request.
 *   limit_name       the governing limit's name (NUL-terminated copy; "").
 *   slot_count/slots the concurrency slots this request holds when allowed;
 *                    give them back with sluice_engine_release() when the
 *                    request completes. 0 when denied.
 *   generation       which policy answered (1 at create, +1 per reload).
 */
struct sluice_engine_decision {
	struct sluice_decision d;
	bool governed;
	bool warn;
	int32_t scope;
	uint32_t warn_limit;
	uint32_t class_id;
	uint32_t applied;
	uint32_t slot_count;
	struct sluice_engine_slot slots[SLUICE_ENGINE_MAX_SLOTS];
	uint64_t generation;
	char limit_name[SLUICE_POLICY_MAX_NAME + 1];
	/* Appended (docs/build.md, "ABI"): bit i set when dry-run limit i
	 * would have refused this request, which the enforced limits admitted
	 * (docs/policy.md, "Dry run"). 0 when no dry-run limit applied or the
	 * enforced limits refused (the dry-run limits are then not evaluated). */
	uint32_t dry_run_refused;
};

/* options.flags: the application registers with urcu-memb every thread that
 * calls the engine (see "Threads and RCU" above). */
#define SLUICE_ENGINE_CALLER_REGISTERS_RCU 0x1u
/* options.flags: a state file (options.state_path) that exists but cannot
 * be loaded (corrupt, truncated, foreign, written in the future, too many
 * keys) makes create start empty instead of failing (see "State file"). */
#define SLUICE_ENGINE_STATE_FRESH_ON_ERROR 0x2u
/* options.flags: sluice_engine_destroy() writes a last snapshot to
 * options.state_path (at sluice_realtime_ns()) before freeing anything. */
#define SLUICE_ENGINE_STATE_SAVE_AT_DESTROY 0x4u

struct sluice_snapshot_info; /* sluice/snapshot.h */

/*
 * Options, versioned: size = sizeof(struct sluice_engine_options); zero
 * fields take their defaults; NULL means all defaults.
 *   max_keys      per limiter: most keys tracked (0: no limit). When a
 *                 limiter cannot track a key, the policy's fail mode
 *                 answers (fail open: allowed, d.degraded; fail closed:
 *                 denied with reason CAPACITY).
 *   flags         SLUICE_ENGINE_* flags.
 *   sweep_interval_ns   run one maintenance thread for the engine that
 *                 sweeps every limit's state (sluice_engine_sweep(), budget
 *                 4096 entries per binding) with this interval (0: none;
 *                 the caller sweeps). The maintenance clock is
 *                 sluice_realtime_ns() minus SLUICE_LIMITER_SWEEP_LAG_NS.
 *   state_path    the engine's state file ("State file" below; copied):
 *                 restored at create, the default path of
 *                 sluice_engine_snapshot(), written by the maintenance
 *                 thread every snapshot_interval_ns and at destroy with
 *                 SLUICE_ENGINE_STATE_SAVE_AT_DESTROY. NULL: none.
 *   snapshot_interval_ns  with state_path: the maintenance thread (started
 *                 for it if sweep_interval_ns is 0) snapshots the engine
 *                 to state_path at this interval (0: never). A failed
 *                 snapshot is counted (sluice_engine_state_stats()) and
 *                 the thread goes on.
 *   restore_info  NULL, or where create reports the restore (size set by
 *                 the caller; message says why a file was refused).
 * An engine on Redis is made by sluice_redis_engine_create() (sluice/redis.h,
 * "Engine on Redis"), with the same options, except state_path and
 * snapshot_interval_ns (SLUICE_EUNSUPPORTED: Redis keeps its own state).
 */
struct sluice_engine_options {
	size_t size;
	uint64_t max_keys;
	uint32_t flags;
	uint32_t reserved_;
	uint64_t sweep_interval_ns;
	const char *state_path;
	uint64_t snapshot_interval_ns;
	struct sluice_snapshot_info *restore_info;
};

struct sluice_engine; /* opaque */

/*
 * Create an engine for `policy`. On success the engine owns the policy (it
 * is destroyed with the engine or when a reload has retired it), *out is set
 * and 0 returned. On failure the caller keeps the policy. Errors:
 *   SLUICE_EINVAL   NULL out/policy, bad options (size not this version's,
 *                   an unknown flag, reserved_ not 0);
 *   SLUICE_ETOOBIG  a limit the cells cannot express (e.g. sliding count
 *                   above SLUICE_WINDOW_COUNTER_MAX_LIMIT), or more than
 *                   SLUICE_ENGINE_MAX_SLOTS concurrency limits;
 *   SLUICE_ENOMEM, SLUICE_ETHREAD.
 *   SLUICE_EUNSUPPORTED  state_path or snapshot_interval_ns on Redis;
 *   with state_path, unless SLUICE_ENGINE_STATE_FRESH_ON_ERROR: the
 *   errors of sluice_engine_restore() but SLUICE_ENOTFOUND (no file: the
 *   engine starts empty), e.g. SLUICE_ECORRUPT for a bad file
 *   (options.restore_info->message says what was wrong).
 * With sweep_interval_ns or snapshot_interval_ns, one maintenance thread
 * is started for the engine.
 */
SLUICE_API int sluice_engine_create(struct sluice_engine **out, struct sluice_policy *policy,
				    const struct sluice_engine_options *opts);

/* Destroy the engine, its limiters and its policy. NULL is a no-op. Nothing
 * else may run on the engine concurrently or afterwards; slots still held
 * are dropped. Not from inside an RCU read-side section. */
SLUICE_API void sluice_engine_destroy(struct sluice_engine *eng);

/*
 * Evaluate one request (see the header comment) and fill *out.
 * Returns 0 (the verdict is out->d.allowed), or SLUICE_EINVAL (NULL
 * argument, bad method/path, tier out of range), SLUICE_EKEY (an identity
 * longer than SLUICE_ENGINE_MAX_IDENTITY), SLUICE_ETHREAD. On an error
 * nothing is consumed.
 * Also SLUICE_EINVAL for limit_decisions_cap > 0 with limit_decisions NULL.
 * Thread-safe, lock-free on known keys: one RCU read-side section, the
 * route match, one limiter admission per applied limit; no allocation
 * except when a key is first seen.
 * On Redis (sluice/redis.h, "Engine on Redis"): one round trip, blocking up
 * to the backend's timeout; also SLUICE_EKEY (a key longer than
 * SLUICE_LIMITER_MAX_KEY once escaped), SLUICE_EINVAL (a tag scope set and
 * the request lacks its identity while a limit applies) and
 * SLUICE_EUNSUPPORTED (Redis Cluster: the keys lie on different slots and
 * the backend cannot decide them together); nothing is consumed on any
 * error.
 */
SLUICE_API int sluice_engine_check(struct sluice_engine *eng, const struct sluice_engine_request *req,
				   struct sluice_engine_decision *out);

/*
 * Give back the concurrency slots of an admitted decision: the decision's
 * slots record everything release needs, so the request is not taken again
 * (and no route is matched, no key rebuilt). Each slot is released at most
 * once: the decision's slot_count is set to 0. Returns 0 when every slot
 * was released; SLUICE_ESTALE when some slot no longer exists (its limit
 * was changed or removed by a reload, its lease expired and its key was
 * reclaimed); SLUICE_EDOUBLE when some slot was already released (a copy
 * of the decision released before); SLUICE_EINVAL for NULL arguments. On
 * Redis also SLUICE_EBACKEND (the server could not be reached within the
 * timeout: the slot stays taken; retry with a copy made before the call,
 * or let its lease expire). Thread-safe; lock-free in process.
 */
SLUICE_API int sluice_engine_release(struct sluice_engine *eng, struct sluice_engine_decision *decision);

/*
 * Replace the policy while traffic flows. The engine takes ownership of
 * `policy` on success (on failure the caller keeps it). The new policy must
 * declare the same scopes in the same order (SLUICE_EINVAL otherwise): the
 * request's identity array is indexed by them.
 *
 * State: a limit of the new policy that is unchanged (same name, kind,
 * numbers, scopes, per-class flag, lease and retry-after; classes it
 * applies to may differ) keeps its limiters and so its per-key state and
 * held slots; a changed or new limit starts fresh (every key full); the
 * state of a removed or changed limit is dropped, and its slots then
 * release with SLUICE_ESTALE. An override (limit, scope, key, numbers and
 * expiry all equal) is kept the same way; a changed one starts fresh.
 *
 * The switch is an RCU pointer swap: requests in flight finish on the old
 * policy, later ones see the new one; the old policy and the dropped
 * limiters are freed after a grace period (synchronize_rcu) before return.
 * Reloads serialize on a mutex. Not from inside an RCU read-side section.
 * Returns 0, SLUICE_EINVAL, SLUICE_ETOOBIG, SLUICE_ENOMEM, SLUICE_ETHREAD.
 */
SLUICE_API int sluice_engine_reload(struct sluice_engine *eng, struct sluice_policy *policy);

/* The generation of the policy in force (1 at create, +1 per reload). */
SLUICE_API uint64_t sluice_engine_generation(const struct sluice_engine *eng);

/* Reclaim idle per-key state of every binding in turn
 * (sluice_limiter_sweep() with `budget_entries` per binding): what the
 * engine's maintenance thread calls. Returns 0 or the first error of a
 * sweep. On Redis, which expires idle keys itself, it forgets the keys of
 * slots whose lease has passed; 0. */
SLUICE_API int sluice_engine_sweep(struct sluice_engine *eng, uint64_t now_ns,
				   size_t budget_entries);

/*
 * The usage of one limit for one key.
 *   limit          index of the limit in the policy; name: its name.
 *   kind, reason   from the policy (enum sluice_policy_kind / sluice_reason).
 *   period_ns      the window (0 for concurrency).
 *   count          the count in force (tier/override applied).
 *   used           count - remaining at now_ns (slots: in flight).
 *   remaining      whole units left.
 *   reset_ns       time until full again (calendar: the next boundary).
 *   warn           usage above the limit's warn threshold.
 *   overridden     an override is in force for this key.
 */
struct sluice_engine_usage {
	uint32_t limit;
	uint8_t kind;
	uint8_t reason;
	bool warn;
	bool overridden;
	uint64_t period_ns;
	uint64_t count;
	uint64_t used;
	uint64_t remaining;
	uint64_t reset_ns;
	char name[SLUICE_POLICY_MAX_NAME + 1];
};

/*
 * Usage of every limit that can be keyed from `req`'s identities (all its
 * scopes present), in limit order, at req->now_ns, under req->tier and the
 * overrides in force; per-class limits use the class of req's route (the
 * default class when req->path is NULL). Nothing is consumed and no key is
 * inserted. Writes up to `cap` records into out and the number of such
 * limits into *count (may exceed cap: then SLUICE_ETRUNC). Returns 0,
 * SLUICE_ETRUNC, SLUICE_EINVAL, SLUICE_EKEY; on Redis also SLUICE_EBACKEND
 * (the backend could not answer; one pipelined round trip). Thread-safe,
 * lock-free (in process).
 */
SLUICE_API int sluice_engine_usage(struct sluice_engine *eng, const struct sluice_engine_request *req,
				   struct sluice_engine_usage *out, size_t cap, size_t *count);

/* Longest key bytes a top-N record carries (longer keys are cut). */
#define SLUICE_ENGINE_TOP_KEY 64

/* One of the busiest keys of a limit. key: the limiter key (the scope
 * identities, each prefixed by its length as a 2-byte little-endian number,
 * then the class name for per-class limits), cut to SLUICE_ENGINE_TOP_KEY
 * bytes; key_len is the full length. */
struct sluice_engine_top {
	uint64_t used;
	uint64_t remaining;
	uint64_t count;
	uint32_t key_len;
	uint8_t key[SLUICE_ENGINE_TOP_KEY];
};

/*
 * The `n` keys with the highest usage of limit `limit` under tier `tier`
 * (SLUICE_POLICY_NO_TIER: the base numbers) at now_ns, busiest first (ties:
 * key bytes ascending). Taken without stopping traffic: the limiter's table
 * is walked inside an RCU read-side section, each entry read once, and a
 * bounded heap of n records kept (no allocation). The snapshot is not
 * atomic across keys. Writes *count (<= n). Returns 0, SLUICE_EINVAL (NULL,
 * limit or tier out of range), SLUICE_ETHREAD; SLUICE_EUNSUPPORTED on Redis
 * (no table to walk). Thread-safe; O(keys log n).
 */
SLUICE_API int sluice_engine_top(struct sluice_engine *eng, uint32_t limit, int32_t tier,
				 uint64_t now_ns, struct sluice_engine_top *out, size_t n,
				 size_t *count);


/*
 * Counters of one limit of the policy in force, summed over its bindings:
 * the base numbers, each tier's and each override's (every one a keyed
 * limiter with its sluice_limiter_stats()). Versioned: set size.
 *   admitted   allowed answers of the limit's bindings (an all-or-nothing
 *              check that another limit refused may still count here:
 *              the limit admitted before the refusal was cancelled);
 *   denied     refusals by this limit (degraded ones excluded);
 *   degraded   answers given by the fail mode (no room for a new key);
 *   live_keys  keys tracked now (a gauge);
 *   bytes      bytes of their entries (a gauge);
 *   bindings   how many bindings were summed;
 *   dry_run_refused  requests the limit would have refused while it was
 *              dry-run and that passed (docs/policy.md, "Dry run"; also
 *              counted in denied, as refusals of its cells). Appended:
 *              a caller built before it (size without it) gets the rest.
 * Counters restart from zero for a binding a reload creates afresh (a
 * changed limit, tier or override); a kept binding keeps its counts.
 */
struct sluice_engine_limit_stats {
	size_t size;
	uint64_t admitted;
	uint64_t denied;
	uint64_t degraded;
	uint64_t live_keys;
	uint64_t bytes;
	uint32_t bindings;
	uint64_t dry_run_refused;
};

/*
 * Sum the counters of limit `limit` (index in the policy in force) into
 * *out. Wait-free reads (each limiter's striped counters read once,
 * relaxed): exact once the checks that update them are quiescent; while
 * they run, each counter is a recent value, and the counters are not a
 * consistent cut of one another (admitted and denied may be read at
 * different moments). Returns 0, SLUICE_EINVAL (NULL, out->size neither
 * sizeof this struct nor the offset of dry_run_refused (the struct before
 * it),
 * limit out of range), SLUICE_ETHREAD, or SLUICE_EUNSUPPORTED on an engine
 * on Redis (its counts live in the store). Thread-safe.
 */
SLUICE_API int sluice_engine_limit_stats(struct sluice_engine *eng, uint32_t limit,
					 struct sluice_engine_limit_stats *out);

/*
 * State file: the per-key state of every in-process binding (each limit x
 * tier, each override) in one file, so that a restart does not hand every
 * key a fresh allowance. Format, consistency and the bound:
 * docs/policy.md, "Engine snapshots".
 *
 * Each binding's state is its keyed limiter's snapshot (sluice/snapshot.h)
 * tagged with the binding's identity: limit name, tier name or override
 * (scope, key, expiry), kind, scopes, per-class flag and numbers (count,
 * burst, period, lease, retry-after), the rule reload uses to keep a
 * binding. A restore loads a binding's state only into the binding of the
 * engine's policy with the same identity; a changed, added or removed
 * limit or override starts fresh, and keys idle at now_ns are skipped.
 * Held concurrency slots: their holders died with the old process; with a
 * lease each slot comes back held until the snapshot's time plus the lease
 * (the lease expires it), without one it comes back free.
 *
 * The bound: a restored key can admit again at most what it admitted
 * between the snapshot and the end of the old process (at most one
 * snapshot interval's admissions after a crash; nothing after a snapshot
 * taken at a graceful stop, after the last admission).
 */

/*
 * Write the engine's state at now_ns (Unix time, as for a check) to path
 * (NULL: options.state_path) atomically: path.tmp, fsync, rename, fsync of
 * the directory; a crash leaves the old file or the new one. Admissions go
 * on meanwhile (each binding's limiter is walked as by
 * sluice_limiter_snapshot()); reloads and sweeps wait for it. Fills *info
 * (may be NULL; entries: keys written over every binding, limits_kept:
 * bindings written). Returns 0, SLUICE_EINVAL (NULL eng, no path),
 * SLUICE_EIO (info->sys_errno), SLUICE_ENOMEM, SLUICE_ETHREAD, or
 * SLUICE_EUNSUPPORTED (an engine on Redis, which keeps its own state).
 * Counted in sluice_engine_state_stats(). Any thread but create/destroy.
 */
SLUICE_API int sluice_engine_snapshot(struct sluice_engine *eng, const char *path, uint64_t now_ns,
				      struct sluice_snapshot_info *info);

/*
 * Load the state file at path (NULL: options.state_path) into an engine
 * just created (no check made yet, nothing else running on it), at now_ns.
 * The whole file is checked before anything is loaded, and on any error the
 * engine is left empty, as created. info (may be NULL): entries in the
 * file, loaded, skipped_idle; limits_kept/limits_dropped count bindings.
 * Returns 0, or:
 *   SLUICE_ENOTFOUND  no file (a first start);
 *   SLUICE_ECORRUPT   truncated, corrupt, foreign (a keyed limiter's
 *                     snapshot, another format version, byte order or word
 *                     size): info->message says which;
 *   SLUICE_ERANGE     now_ns earlier than the snapshot's time;
 *   SLUICE_EFULL      a binding's keys do not fit options.max_keys;
 *   SLUICE_ESTATE     the engine already holds state;
 *   SLUICE_EIO, SLUICE_EINVAL, SLUICE_ENOMEM, SLUICE_ETHREAD,
 *   SLUICE_EUNSUPPORTED (Redis).
 */
SLUICE_API int sluice_engine_restore(struct sluice_engine *eng, const char *path, uint64_t now_ns,
				     struct sluice_snapshot_info *info);

/* What the engine's snapshots did, versioned: set size. */
struct sluice_engine_state_stats {
	size_t size;
	uint64_t snapshots;       /* written successfully */
	uint64_t failures;        /* failed (the file kept its last good state) */
	uint64_t last_taken_ns;   /* now_ns of the last good snapshot; 0: none */
	uint64_t last_entries;    /* keys in it */
	uint64_t last_bytes;      /* its size */
	int last_error;           /* the last failure's SLUICE_E* code; 0: none */
	char last_message[160];   /* and what it said */
};

/* Copy the counters into *out. 0 or SLUICE_EINVAL. Thread-safe. */
SLUICE_API int sluice_engine_state_stats(struct sluice_engine *eng,
					 struct sluice_engine_state_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* SLUICE_ENGINE_H */
