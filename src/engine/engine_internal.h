/*
 * engine_internal.h - the engine's snapshot, shared by engine.c (which
 * builds, publishes and retires it) and plan.c (which reads it to plan a
 * request). Not installed; executors see only executor_internal.h.
 */
#ifndef SLUICE_ENGINE_INTERNAL_H
#define SLUICE_ENGINE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "engine/executor_internal.h"

struct sluice__state_limit {
	struct sluice__binding *base;
	struct sluice__binding *tier[SLUICE_POLICY_MAX_TIERS]; /* NULL: not tiered */
};

/* One immutable policy snapshot. */
struct sluice__state {
	struct sluice_policy *policy;
	const struct sluice_policy_spec *spec;
	uint64_t generation;
	/* References: 1 for the engine while the snapshot is current, plus one
	 * per request of a blocking executor in flight (engine.c, "State"). */
	_Atomic uint32_t refs;
	uint32_t order[SLUICE_POLICY_MAX_LIMITS]; /* evaluation order */
	struct sluice__state_limit limits[SLUICE_POLICY_MAX_LIMITS];
	struct sluice__binding **overrides; /* spec->override_count */
};

/* The engine (engine.c; its state file: engine_snapshot.c). */
struct sluice_engine {
	_Atomic(struct sluice__state *) state;
	const struct sluice__executor_ops *ops;
	void *ex;
	pthread_mutex_t lock; /* reload, sweep, snapshot, destroy, bindings' refs */
	uint64_t next_id;
	uint32_t flags;
	/* The maintenance thread (one per engine): sweeps every
	 * m_interval_ns, snapshots every m_snapshot_ns (0: never). */
	pthread_mutex_t m_lock;
	pthread_cond_t m_cond;
	pthread_t m_thread;
	bool m_running;
	bool m_stop;
	uint64_t m_interval_ns;
	uint64_t m_snapshot_ns;
	/* The state file (options.state_path, copied; NULL: none) and what
	 * the snapshots into it did (under s_lock). */
	char *state_path;
	pthread_mutex_t s_lock;
	struct sluice_engine_state_stats s_stats;
	char tsan_gp; /* TSan's token for the grace period (engine.c) */
	/* Checks refused for a missing required identity; on its own line:
	 * under a flood of such requests every checking thread writes it. */
	_Alignas(SLUICE_CACHELINE) _Atomic uint64_t identity_refusals;
};

/* Every binding slot of a snapshot, in a fixed order: fn(b) for each. */
#define STATE_BINDINGS(st, b, body)                                                     \
	do {                                                                            \
		for (uint32_t i_ = 0; i_ < (st)->spec->limit_count; i_++)               \
			for (uint32_t t_ = 0; t_ <= (st)->spec->tier_count; t_++) {     \
				struct sluice__binding *b = t_ == 0 ? (st)->limits[i_].base \
								    : (st)->limits[i_].tier[t_ - 1]; \
				if (b != NULL) { body; }                                \
			}                                                               \
		if ((st)->overrides != NULL)                                            \
			for (uint32_t j_ = 0; j_ < (st)->spec->override_count; j_++) {  \
				struct sluice__binding *b = (st)->overrides[j_];        \
				if (b != NULL) { body; }                                \
			}                                                               \
	} while (0)

/* What a plan is for. */
enum sluice__plan_mode {
	SLUICE__PLAN_CHECK, /* the route's class limits, evaluation order */
	SLUICE__PLAN_USAGE, /* every keyable limit, policy order; class of the
			     * route, the default class without a path */
};

/* Plan req on st. Returns 0, SLUICE_EINVAL, SLUICE_EKEY (a key too long),
 * or the matcher's error. */
int sluice__plan_build(const struct sluice__state *st, const struct sluice_engine_request *req,
		       enum sluice__plan_mode mode, struct sluice__plan *p);

/* Top-N (top.c): a bounded min-heap over the caller's array. */
struct sluice__top_heap {
	struct sluice_engine_top *heap; /* min-heap on (used, then key desc) */
	size_t cap;
	size_t n;
};
/* The executor's foreach callback: keep the record if it is among the
 * busiest cap seen (idle keys are skipped). */
void sluice__top_visit(void *user, const void *key, size_t key_len, const struct sluice_decision *d);
/* Sort the heap busiest first; returns the number of records. */
size_t sluice__top_sort(struct sluice__top_heap *h);

/* The maintenance thread (maintenance.c): started at create when either
 * interval is set (0: that job is not done), stopped at destroy. */
int sluice__engine_maintenance_start(struct sluice_engine *eng, uint64_t sweep_ns, uint64_t snapshot_ns);
void sluice__engine_maintenance_stop(struct sluice_engine *eng);

/* Engine snapshots (engine_snapshot.c): the snapshot without the argument
 * checks, for the maintenance thread and destroy (counted in s_stats). */
int sluice__engine_snapshot_locked(struct sluice_engine *eng, const char *path, uint64_t now_ns,
				   struct sluice_snapshot_info *info);

#endif /* SLUICE_ENGINE_INTERNAL_H */
