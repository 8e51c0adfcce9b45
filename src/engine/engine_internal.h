/*
 * engine_internal.h - the engine's snapshot, shared by engine.c (which
 * builds, publishes and retires it) and plan.c (which reads it to plan a
 * request). Not installed; executors see only executor_internal.h.
 */
#ifndef SLUICE_ENGINE_INTERNAL_H
#define SLUICE_ENGINE_INTERNAL_H

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

#endif /* SLUICE_ENGINE_INTERNAL_H */
