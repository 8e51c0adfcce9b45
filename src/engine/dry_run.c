/*
 * dry_run.c - dry-run (shadow) limits: evaluated and counted like any
 * limit, but a would-be refusal does not refuse the request
 * (docs/policy.md, "Dry run").
 *
 * The plan is split in two. The enforced limits are decided first, as one
 * all-or-nothing plan by the executor, exactly as if the dry-run limits
 * were not in the policy. If they refuse, the request is refused and no
 * dry-run limit is touched: an enforced refusal cancels every reservation,
 * and a dry-run limit never reserved has nothing to cancel. If they admit,
 * each dry-run limit is then decided alone, as a plan of one item:
 *   - when it admits, it consumes what an enforced limit would (a slot, a
 *     unit of its window or bucket), so its state and counters show what
 *     enforcing it would do;
 *   - when it refuses, it consumes nothing (a plan of one item that refuses
 *     reserves nothing: docs/limiter.md, "Refused requests consume
 *     nothing"), so it never holds more than its own bound; the request
 *     passes, the limit's bit is set in the decision's dry_run_refused and
 *     its binding's counter is incremented.
 * A dry-run refusal therefore never cancels an enforced reservation (they
 * were final before it was evaluated), and each dry-run limit is decided as
 * if it alone were enforced besides the enforced ones, whatever the other
 * dry-run limits say.
 *
 * Every dry-run limit is left out of r->decided, so compose() in engine.c
 * never lets one govern or warn: the answer and its headers are those of
 * the enforced limits, as a client would see them with the dry-run limits
 * absent, and a caller that asks for every limit's decision reads the
 * dry-run limits' state after the check (report_limits()). What a client
 * sees changes only by the dry-run header the server adds.
 *
 * Cost: nothing for a plan without a dry-run limit (one AND with the
 * policy's mask, inline in executor_internal.h); one more executor call per
 * applied dry-run limit.
 */
#include <string.h>

#include "engine/executor_internal.h"

/* Item `from` of plan q's result into item j of r. */
static void take_item(struct sluice__exec_result *r, uint32_t j, const struct sluice__exec_result *q, uint32_t from)
{
	r->d[j] = q->d[from];
	r->slot_handle[j] = q->slot_handle[from];
	r->slot_entry[j] = q->slot_entry[from];
	r->slot_hash[j] = q->slot_hash[from];
}

int sluice__engine_execute_dry_run(const struct sluice__executor_ops *ops, void *ex, const struct sluice__plan *p,
				   uint64_t cost, uint64_t now_ns, struct sluice__exec_result *r,
				   uint32_t *would_refuse)
{
	uint32_t dry = p->applied & p->spec->dry_run_mask;
	struct sluice__plan sub;
	struct sluice__exec_result q;
	uint32_t map[SLUICE_POLICY_MAX_LIMITS]; /* sub's item -> p's item */

	memcpy(&sub, p, offsetof(struct sluice__plan, n));
	sub.n = 0;
	sub.applied = 0;
	r->decided = 0;
	r->denied = UINT32_MAX;
	r->governing = UINT32_MAX;
	for (uint32_t j = 0; j < p->n; j++) {
		r->slot_handle[j] = SLUICE_SLOT_NONE;
		if ((dry >> p->item[j].limit) & 1)
			continue;
		map[sub.n] = j;
		sub.item[sub.n++] = p->item[j];
		sub.applied |= UINT32_C(1) << p->item[j].limit;
	}
	if (sub.n > 0) {
		int rc = ops->execute(ex, &sub, cost, now_ns, &q);
		if (rc != SLUICE_OK)
			return rc;
		for (uint32_t k = 0; k < sub.n; k++) {
			if (!((q.decided >> k) & 1))
				continue;
			take_item(r, map[k], &q, k);
			r->decided |= UINT32_C(1) << map[k];
		}
		if (q.denied != UINT32_MAX) {
			r->denied = map[q.denied];
			return SLUICE_OK; /* no dry-run limit is touched */
		}
		if (q.governing != UINT32_MAX)
			r->governing = map[q.governing];
	}
	sub.n = 1;
	for (uint32_t j = 0; j < p->n; j++) {
		uint32_t i = p->item[j].limit;
		if (!((dry >> i) & 1))
			continue;
		sub.item[0] = p->item[j];
		sub.applied = UINT32_C(1) << i;
		/* An executor error here cannot undo the enforced admission:
		 * the dry-run limit is then left unevaluated (not counted). */
		if (ops->execute(ex, &sub, cost, now_ns, &q) != SLUICE_OK || !(q.decided & 1))
			continue;
		take_item(r, j, &q, 0);
		if (q.denied == UINT32_MAX)
			continue;
		r->slot_handle[j] = SLUICE_SLOT_NONE;
		*would_refuse |= UINT32_C(1) << i;
		/* relaxed: a statistics counter; sluice_engine_limit_stats()
		 * reads it relaxed and promises no ordering with anything. */
		atomic_fetch_add_explicit(&p->item[j].b->dry_run_refused, 1, memory_order_relaxed); /* relaxed: why above */
	}
	return SLUICE_OK;
}
