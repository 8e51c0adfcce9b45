/*
 * executor_internal.h - the policy engine's planner and the interface of the
 * executors that carry a plan out (docs/policy.md, "Engine"). Not
 * installed.
 *
 * The engine (engine.c) owns the policy snapshot, its bindings (one per
 * limit x tier in force, one per override) and reload. For each request the
 * planner (plan.c) finds the class, the limits that apply, the binding in
 * force for each (after tier and override) and the length of each limit's
 * key; an executor decides the plan: in process over keyed limiters
 * (exec_local.c), on Redis in one script call (src/redis/exec_redis.c,
 * plugged in from above by sluice_redis_engine_create()). The executor
 * returns one decision per planned limit; the engine picks the governing
 * one with the one rule (common/govern_internal.h) and fills the public
 * decision. Layers above the engine include this header; the engine
 * includes nothing of theirs.
 */
#ifndef SLUICE_ENGINE_EXECUTOR_INTERNAL_H
#define SLUICE_ENGINE_EXECUTOR_INTERNAL_H

#include <stdbool.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <sluice/engine.h>
#include <sluice/limiter.h>
#include <sluice/policy.h>

/* Largest key of a limit: the limiter's. */
#define SLUICE__ENGINE_KEY_MAX SLUICE_LIMITER_MAX_KEY

/*
 * One binding: the state of one (limit, tier) or one override. Owned by the
 * engine, shared by consecutive snapshots when a reload keeps it (refs is
 * only touched under the engine's reload lock). What makes it "the same
 * binding" across a reload is everything but id, refs and exec.
 */
struct sluice__binding {
	uint64_t id; /* engine-unique, never reused; slots record it */
	uint32_t refs;
	uint8_t policy_kind; /* enum sluice_policy_kind */
	bool per_class;
	bool is_override;
	bool fail_closed; /* the policy's fail mode when the binding was made */
	char name[SLUICE_POLICY_MAX_NAME + 1];
	char tier[SLUICE_POLICY_MAX_NAME + 1]; /* "" for the base numbers */
	struct sluice_limit spec;              /* the numbers in force */
	/* The policy's numbers in force (spec is made from them). */
	uint64_t count, burst, period_ns, lease_ns, retry_after_ns;
	uint32_t scope_mask;
	/* Overrides: which key of which scope, until when. */
	uint32_t oscope;
	uint32_t okey_len;
	uint64_t oexpires_ns;
	uint8_t okey[SLUICE_POLICY_MAX_KEY];
	/* The executor's state of this binding (in process: its keyed
	 * limiter; on Redis: the key segment). */
	void *exec;
	/* In process: the limiter's cancel may keep consumption (GCRA,
	 * sliding log), and the order among such limiters (a GCRA bucket's
	 * depth in ns); set at open, read by every check (exec_local.c). */
	bool inexact_cancel;
	uint64_t reserve_rank;
	/* Requests this binding refused while its limit was dry-run
	 * (dry_run.c); on a line of its own, away from the fields every
	 * check reads, since refusals under load write it from every thread. */
	char pad_[SLUICE_CACHELINE];
	_Atomic uint64_t dry_run_refused;
};

/* One applied limit of a request. */
struct sluice__plan_item {
	uint32_t limit; /* index in the policy */
	bool overridden;
	uint16_t key_len; /* the engine's key (sluice__plan_key), 1 .. KEY_MAX */
	struct sluice__binding *b;
};

/* A request's plan: its applied limits in evaluation order (concurrency
 * limits first, then the others in policy order). */
struct sluice__plan {
	const struct sluice_policy *policy;
	const struct sluice_policy_spec *spec;
	const struct sluice_engine_request *req;
	uint32_t class_id;
	uint32_t applied; /* bit i: limit i is an item */
	bool want_all;    /* the caller wants every item's decision */
	uint32_t n;
	struct sluice__plan_item item[SLUICE_POLICY_MAX_LIMITS];
};

/* What an executor answers for a plan. */
struct sluice__exec_result {
	/* d[j]: item j's decision (limit_index is not set). All items are
	 * decided when no item denied; on a denial, the items the executor
	 * evaluated before the denier (in its own order, which may differ from
	 * the plan's: exec_local.c) are decided, d[j] as admitted and then
	 * cancelled or as checked, and the others not. A
	 * degraded d[j] allowed is a limit the fail mode answered open: it
	 * cannot govern. */
	struct sluice_decision d[SLUICE_POLICY_MAX_LIMITS];
	/* Slot taken by item j (admitted, cost > 0): handle and the entry it
	 * lives in (in process; 0 on Redis). SLUICE_SLOT_NONE: none. */
	uint64_t slot_handle[SLUICE_POLICY_MAX_LIMITS];
	uint64_t slot_entry[SLUICE_POLICY_MAX_LIMITS];
	uint64_t slot_hash[SLUICE_POLICY_MAX_LIMITS];
	uint32_t decided;   /* bit j: d[j] is valid */
	uint32_t denied;    /* item index of the denier, or UINT32_MAX */
	uint32_t governing; /* item index the executor's store named (Redis),
			     * or UINT32_MAX: the engine applies the rule */
};

/* A slot as the executor sees it (struct sluice_engine_slot's fields). */
struct sluice__slot_ref {
	uint64_t handle;
	uint64_t entry;
	uint64_t hash;
};

/*
 * An executor. `ex` is its own state (from its constructor). Every
 * function may be called concurrently from any threads except open/close/
 * destroy, which the engine calls under its reload lock (or at create/
 * destroy). blocking executors (network I/O) are called outside any RCU
 * read-side section, on a snapshot pinned by a reference.
 */
struct sluice__executor_ops {
	bool blocking;
	/* Make b->exec for a new binding. */
	int (*open)(void *ex, const struct sluice_policy_spec *spec, struct sluice__binding *b);
	/* Free the exec state of n bindings no snapshot uses any more (after
	 * a grace period). */
	void (*close)(void *ex, struct sluice__binding *const *b, size_t n);
	/* Check a whole new snapshot before it is published (0 or an error
	 * that fails create/reload). NULL: nothing to check. */
	int (*prepare)(void *ex, const struct sluice_policy *policy,
		       struct sluice__binding *const *fresh, size_t nfresh);
	/* Decide the plan at now_ns with cost (0: peek every item). Returns
	 * 0, or an error with nothing consumed. */
	int (*execute)(void *ex, const struct sluice__plan *p, uint64_t cost, uint64_t now_ns,
		       struct sluice__exec_result *r);
	/* Read-only state of every item (d[j]), nothing inserted. 0 or an
	 * error (SLUICE_EBACKEND on Redis when the store did not answer). */
	int (*peek)(void *ex, const struct sluice__plan *p, uint64_t now_ns, struct sluice_decision *d);
	/* Give back a slot of binding b. Returns 0, SLUICE_EDOUBLE,
	 * SLUICE_ESTALE (gone), SLUICE_EBACKEND. */
	int (*release)(void *ex, struct sluice__binding *b, const struct sluice__slot_ref *s);
	/* Reclaim idle state of binding b (NULL: nothing to do). */
	int (*sweep)(void *ex, struct sluice__binding *b, uint64_t now_ns, size_t budget);
	/* The busiest keys of binding b (NULL: SLUICE_EUNSUPPORTED). */
	void (*foreach)(void *ex, struct sluice__binding *b, uint64_t now_ns,
			void (*fn)(void *user, const void *key, size_t key_len,
				   const struct sluice_decision *d),
			void *user);
	/* Add binding b's counters to *out (NULL: SLUICE_EUNSUPPORTED). */
	void (*stats)(void *ex, struct sluice__binding *b, struct sluice_engine_limit_stats *out);
	/* Stop using the store (engine destroy, after every binding closed). */
	void (*destroy)(void *ex);
};

/*
 * Decide plan p on executor ops: ops->execute when no applied limit is
 * dry-run (inline: the common path pays one AND); else (dry_run.c) the
 * enforced limits as one all-or-nothing plan, then, when they admitted,
 * each dry-run limit alone. r is over p's items; the dry-run items are left
 * out of r->decided (they never govern) and *would_refuse gets bit i for
 * each dry-run limit i that refused.
 */
int sluice__engine_execute_dry_run(const struct sluice__executor_ops *ops, void *ex, const struct sluice__plan *p,
				   uint64_t cost, uint64_t now_ns, struct sluice__exec_result *r,
				   uint32_t *would_refuse);

static inline int sluice__engine_execute(const struct sluice__executor_ops *ops, void *ex,
					 const struct sluice__plan *p, uint64_t cost, uint64_t now_ns,
					 struct sluice__exec_result *r, uint32_t *would_refuse)
{
	*would_refuse = 0;
	if ((p->applied & p->spec->dry_run_mask) == 0)
		return ops->execute(ex, p, cost, now_ns, r);
	return sluice__engine_execute_dry_run(ops, ex, p, cost, now_ns, r, would_refuse);
}

/* The in-process executor (exec_local.c). */
int sluice__exec_local_create(void **out, uint64_t max_keys, uint32_t engine_flags);
/* The same executor over limiters made by `make` instead of
 * sluice_limiter_create() (a store plugged in from above: src/shm/): make
 * gets the binding and the options exec_local would pass, and returns 0
 * with *out, or an error that fails the open. user_free(user) (may be
 * NULL) runs when the executor is destroyed, also when the engine's create
 * fails after this returned. */
typedef int (*sluice__exec_local_factory)(void *user, const struct sluice__binding *b,
					  const struct sluice_limiter_options *o,
					  struct sluice_limiter **out);
int sluice__exec_local_create_with(void **out, uint64_t max_keys, uint32_t engine_flags,
				   sluice__exec_local_factory make, void *user,
				   void (*user_free)(void *user));
/* Tests only: call fn(user, policy limit index) after each admitted reserve
 * of a plan but its last, in this thread, inside the check's read-side
 * section; fn may check other requests on the same engine (deterministic
 * interleavings: tests/test_engine_cancel.c). NULL removes it. Not for
 * concurrent use with checks. */
void sluice__exec_local_set_reserve_hook(void (*fn)(void *user, uint32_t limit), void *user);
extern const struct sluice__executor_ops sluice__exec_local_ops;

/* Create an engine over an executor (engine.c). On success the engine owns
 * `ex` (destroyed with ops->destroy) and the policy; on failure the caller
 * keeps both. */
int sluice__engine_create_exec(struct sluice_engine **out, struct sluice_policy *policy,
			       const struct sluice_engine_options *opts,
			       const struct sluice__executor_ops *ops, void *ex);

/* The executor state of an engine (for tests of a store): NULL when the
 * engine does not run on `ops`. */
void *sluice__engine_exec(struct sluice_engine *eng, const struct sluice__executor_ops *ops);

/* ---- the planner (plan.c) ---- */

/* The limit spec of policy limit pl with the numbers in force (count,
 * burst after tier or override). */
int sluice__engine_limit_spec(const struct sluice_policy_limit *pl, uint64_t count, uint64_t burst,
			      struct sluice_limit *out);

/* Request checks common to every call: identities, tier; route when
 * need_route. */
int sluice__plan_validate(const struct sluice_policy_spec *spec, const struct sluice_engine_request *req,
			  bool need_route);

/* Whether the request carries an identity for scope s. */
static inline bool sluice__plan_has_identity(const struct sluice_engine_request *req, uint32_t s)
{
	return s < req->identity_count && req->identities[s].bytes != NULL;
}

/* The engine's key of item j into key (KEY_MAX bytes); returns its length
 * (the planned key_len). */
size_t sluice__plan_key(const struct sluice__plan *p, uint32_t j, unsigned char *key);

/* Is decision d of policy limit pl above its warn threshold? */
bool sluice__engine_over_warn(const struct sluice_policy_limit *pl, const struct sluice_decision *d);

/* Copy a limit name (truncated to SLUICE_POLICY_MAX_NAME). */
void sluice__engine_name_copy(char *dst, const char *src);

#endif /* SLUICE_ENGINE_EXECUTOR_INTERNAL_H */
