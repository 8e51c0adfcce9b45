/*
 * exec_local.c - the in-process executor: every binding is one keyed
 * limiter (sluice/limiter.h) of one limit, and a plan is decided by
 * admitting each applied limit in turn, all-or-nothing (docs/policy.md,
 * "Engine").
 *
 * All-or-nothing across limiters. Each item of the plan is admitted with a
 * receipt (sluice__limiter_reserve); the first refusal cancels every
 * receipt already taken, in reverse order. Each reserve is a real, atomic
 * admission of its own cell, so at any instant every cell holds at most its
 * limit: nothing can over-admit, whatever the interleaving.
 *
 * A refused request consumes nothing (docs/limiter.md, "Refused requests
 * consume nothing"). A limiter whose cancel is exact (slots, sliding
 * counter, calendar: sluice__limiter_cancel_is_exact) gives back exactly
 * what the receipt took whatever landed since; a GCRA or sliding-log
 * limiter's cancel restores its word only if nothing landed since, else the
 * units stay consumed. So the reserves go exact limiters first, in the
 * plan's order, and the inexact ones last, the shallowest bucket first and
 * the deepest last: a refusal then needs an inexact cancel only of an
 * inexact limiter reserved before the refusing one, which needs two of
 * them. A plan with two or more inexact limiters therefore starts with a
 * read-only pass (sluice__limiter_check) over its inexact limiters, so
 * that a refusal there that is already visible reserves nothing (and a
 * refusal by a per-minute bucket reserves none of the exact limiters
 * either); only a race after that pass can leave at most `cost` units in
 * each inexact limiter reserved before the refusing one
 * (BM_engine_contended, docs/benchmarks.md, measures it). Each check hands
 * the entry it found to the reserve of the same limiter (struct
 * sluice__limiter_hint), so the pass adds a dry run per inexact limiter,
 * not a lookup.
 *
 * The denier reported is the first in the plan's order, as the Redis
 * executor's script reports it: when a reserve refuses, the items that
 * precede it in the plan's order are checked again (read-only, after the
 * cancels), and the first of them that refuses is the denier.
 *
 * The receipts live on the stack and are valid because the engine runs the
 * whole evaluation inside one read-side section (this executor is not
 * blocking): entries cannot be freed under it.
 *
 * A slot taken records its entry's address and hash (struct
 * sluice_engine_slot), so release finds the entry by pointer identity in
 * the hash's bucket without the key (sluice__limiter_release_entry): an
 * entry holding a slot is never idle, but one whose lease expired may be
 * reaped and reclaimed, and then the pointer is simply not found (ESTALE),
 * never dereferenced.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "engine/executor_internal.h"
#include "limiter/limiter_internal.h"

/* Tests only (sluice__exec_local_set_reserve_hook). */
static void (*_Atomic reserve_hook)(void *user, uint32_t limit);
static void *_Atomic reserve_hook_user;

void sluice__exec_local_set_reserve_hook(void (*fn)(void *user, uint32_t limit), void *user)
{
	/* relaxed: set by a test before the checks it observes, on their own
	 * thread or before starting them. */
	atomic_store_explicit(&reserve_hook_user, user, memory_order_relaxed); /* relaxed: why above */
	atomic_store_explicit(&reserve_hook, fn, memory_order_relaxed); /* relaxed: why above */
}

struct exec_local {
	uint64_t max_keys;
	uint32_t limiter_flags;
	/* Who makes a binding's limiter: NULL is sluice_limiter_create(). */
	sluice__exec_local_factory make;
	void *make_user;
	void (*make_user_free)(void *user);
};

int sluice__exec_local_create_with(void **out, uint64_t max_keys, uint32_t engine_flags,
				   sluice__exec_local_factory make, void *user,
				   void (*user_free)(void *user))
{
	struct exec_local *x = calloc(1, sizeof *x);
	if (x == NULL)
		return SLUICE_ENOMEM;
	x->max_keys = max_keys;
	x->limiter_flags = (engine_flags & SLUICE_ENGINE_CALLER_REGISTERS_RCU) ? SLUICE_LIMITER_CALLER_REGISTERS_RCU
									       : 0;
	x->make = make;
	x->make_user = user;
	x->make_user_free = user_free;
	*out = x;
	return SLUICE_OK;
}

int sluice__exec_local_create(void **out, uint64_t max_keys, uint32_t engine_flags)
{
	return sluice__exec_local_create_with(out, max_keys, engine_flags, NULL, NULL, NULL);
}

static void local_destroy(void *ex)
{
	struct exec_local *x = ex;

	if (x->make_user_free != NULL)
		x->make_user_free(x->make_user);
	free(x);
}

/* A GCRA limit's bucket depth in ns (burst x interval): the deeper, the
 * later it is reserved. */
static uint64_t depth_of(const struct sluice__binding *b)
{
	return b->spec.kind == SLUICE_LIMIT_GCRA ? b->spec.rate.tolerance_ns : 0;
}

static int local_open(void *ex, const struct sluice_policy_spec *spec, struct sluice__binding *b)
{
	(void)spec;
	struct exec_local *x = ex;
	struct sluice_limiter_options o;

	memset(&o, 0, sizeof o);
	o.size = sizeof o;
	o.max_keys = b->is_override ? 0 : x->max_keys;
	o.fail_mode = b->fail_closed ? SLUICE_FAIL_CLOSED : SLUICE_FAIL_OPEN;
	o.flags = x->limiter_flags;
	if (b->is_override)
		o.initial_buckets = 16; /* one key, usually */
	struct sluice_limiter *lim;
	int rc = x->make != NULL ? x->make(x->make_user, b, &o, &lim)
				 : sluice_limiter_create(&lim, &b->spec, 1, &o);
	if (rc == SLUICE_OK) {
		b->exec = lim;
		b->inexact_cancel = !sluice__limiter_cancel_is_exact(lim);
		b->reserve_rank = depth_of(b);
	}
	return rc;
}

static void local_close(void *ex, struct sluice__binding *const *b, size_t n)
{
	struct sluice_limiter *lims[64];
	(void)ex;
	/* One rcu_barrier per batch of limiters (~10 ms each otherwise). */
	for (size_t base = 0; base < n; base += 64) {
		size_t m = n - base < 64 ? n - base : 64;
		for (size_t k = 0; k < m; k++)
			lims[k] = b[base + k]->exec;
		sluice__limiter_destroy_many(lims, m);
	}
}

/* The order of the reserves (see the file comment): exact limiters in the
 * plan's order, then the inexact ones by bucket depth, shallowest first.
 * Returns the number of inexact limiters. */
static uint32_t reserve_order(const struct sluice__plan *p, uint32_t *order)
{
	uint32_t n = 0, inexact[SLUICE_POLICY_MAX_LIMITS], ni = 0;

	for (uint32_t j = 0; j < p->n; j++) {
		if (!p->item[j].b->inexact_cancel)
			order[n++] = j;
		else
			inexact[ni++] = j;
	}
	/* Insertion sort by depth (a handful of items), stable: equal depths
	 * keep the plan's order. Only GCRA has a depth; a sliding log sorts
	 * as depth 0 (first among the inexact). */
	for (uint32_t a = 1; a < ni; a++) {
		uint32_t j = inexact[a], at = a;
		uint64_t dj = p->item[j].b->reserve_rank;
		while (at > 0 && p->item[inexact[at - 1]].b->reserve_rank > dj) {
			inexact[at] = inexact[at - 1];
			at--;
		}
		inexact[at] = j;
	}
	for (uint32_t a = 0; a < ni; a++)
		order[n++] = inexact[a];
	return ni;
}

/* Item j refused (everything reserved is cancelled): the first item in the
 * plan's order that refuses now, read-only, or j. */
static uint32_t first_denier(const struct sluice__plan *p, uint32_t j, uint64_t cost, uint64_t now_ns,
			     struct sluice__exec_result *r)
{
	unsigned char key[SLUICE__ENGINE_KEY_MAX];
	struct sluice_decision d;

	for (uint32_t k = 0; k < j; k++) {
		size_t klen = sluice__plan_key(p, k, key);
		if (!sluice__limiter_check(p->item[k].b->exec, key, klen, cost, now_ns, &d, NULL)) {
			r->d[k] = d;
			r->decided |= UINT32_C(1) << k;
			return k;
		}
	}
	return j;
}

static int local_execute(void *ex, const struct sluice__plan *p, uint64_t cost, uint64_t now_ns,
			 struct sluice__exec_result *r)
{
	struct sluice__limiter_hold holds[SLUICE_POLICY_MAX_LIMITS];
	unsigned char key[SLUICE__ENGINE_KEY_MAX];
	uint32_t order[SLUICE_POLICY_MAX_LIMITS];
	struct sluice__limiter_hint hint[SLUICE_POLICY_MAX_LIMITS];
	(void)ex;

	r->denied = UINT32_MAX;
	r->governing = UINT32_MAX;
	r->decided = 0;
	bool ordered = p->n >= 2 && cost > 0;
	uint32_t ninexact = ordered ? reserve_order(p, order) : 0;
	uint32_t hinted = 0; /* bit j: hint[j] holds what the check found */
	if (ninexact >= 2) {
		/* 1. The read-only pass over the inexact limiters (the last
		 * ninexact of the order): a refusal there that is already
		 * visible reserves nothing. Each check keeps the entry it
		 * found, so its reserve below does not look the key up again:
		 * the pass costs a dry run per inexact limiter, not a lookup. */
		for (uint32_t a = p->n - ninexact; a < p->n; a++) {
			uint32_t j = order[a];
			size_t klen = sluice__plan_key(p, j, key);
			if (!sluice__limiter_check(p->item[j].b->exec, key, klen, cost, now_ns, &r->d[j], &hint[j])) {
				r->decided = UINT32_C(1) << j;
				r->slot_handle[j] = SLUICE_SLOT_NONE;
				r->denied = first_denier(p, j, cost, now_ns, r);
				return SLUICE_OK;
			}
			hinted |= UINT32_C(1) << j;
		}
	}
	/* 2. The reserves, exact limiters first when the order matters. */
	for (uint32_t a = 0; a < p->n; a++) {
		uint32_t j = ordered ? order[a] : a;
		struct sluice_limiter *lim = p->item[j].b->exec;
		size_t klen = sluice__plan_key(p, j, key);
		sluice__limiter_reserve(lim, key, klen, (hinted >> j) & 1 ? &hint[j] : NULL, cost, now_ns,
					&r->d[j], &holds[j]);
		r->decided |= UINT32_C(1) << j;
		r->slot_handle[j] = holds[j].handle;
		r->slot_entry[j] = (uint64_t)(uintptr_t)holds[j].entry;
		r->slot_hash[j] = holds[j].hash;
		if (r->d[j].allowed && a + 1 < p->n) {
			/* relaxed: see sluice__exec_local_set_reserve_hook(). */
			void (*hook)(void *, uint32_t) = atomic_load_explicit(&reserve_hook, memory_order_relaxed); /* relaxed: why above */
			if (hook != NULL)
				hook(atomic_load_explicit(&reserve_hook_user, memory_order_relaxed), /* relaxed: why above */
				     p->item[j].limit);
		}
		if (!r->d[j].allowed) {
			/* Refused: undo every reservation taken, newest first. */
			for (uint32_t b = a; b-- > 0;) {
				uint32_t k = ordered ? order[b] : b;
				sluice__limiter_cancel(p->item[k].b->exec, &holds[k]);
				r->slot_handle[k] = SLUICE_SLOT_NONE;
			}
			r->slot_handle[j] = SLUICE_SLOT_NONE;
			r->denied = ordered ? first_denier(p, j, cost, now_ns, r) : j;
			return SLUICE_OK;
		}
	}
	return SLUICE_OK;
}

static int local_peek(void *ex, const struct sluice__plan *p, uint64_t now_ns, struct sluice_decision *d)
{
	unsigned char key[SLUICE__ENGINE_KEY_MAX];
	struct sluice__limiter_hold hold;
	(void)ex;

	for (uint32_t j = 0; j < p->n; j++) {
		size_t klen = sluice__plan_key(p, j, key);
		sluice__limiter_reserve(p->item[j].b->exec, key, klen, NULL, 0, now_ns, &d[j], &hold);
	}
	return SLUICE_OK;
}

static int local_release(void *ex, struct sluice__binding *b, const struct sluice__slot_ref *s)
{
	(void)ex;
	return sluice__limiter_release_entry(b->exec, s->hash, (void *)(uintptr_t)s->entry, s->handle);
}

static int local_sweep(void *ex, struct sluice__binding *b, uint64_t now_ns, size_t budget)
{
	(void)ex;
	return sluice_limiter_sweep(b->exec, now_ns, budget, NULL);
}

static void local_foreach(void *ex, struct sluice__binding *b, uint64_t now_ns,
			  void (*fn)(void *user, const void *key, size_t key_len, const struct sluice_decision *d),
			  void *user)
{
	(void)ex;
	sluice__limiter_foreach(b->exec, now_ns, fn, user);
}

static void local_stats(void *ex, struct sluice__binding *b, struct sluice_engine_limit_stats *out)
{
	struct sluice_limiter_stats ls = { .size = sizeof ls };

	(void)ex;
	if (sluice_limiter_stats(b->exec, &ls) != SLUICE_OK)
		return;
	out->admitted += ls.admitted;
	out->denied += ls.denied;
	out->degraded += ls.degraded;
	out->live_keys += ls.live_keys;
	out->bytes += ls.bytes;
}

const struct sluice__executor_ops sluice__exec_local_ops = {
	.blocking = false,
	.open = local_open,
	.close = local_close,
	.prepare = NULL,
	.execute = local_execute,
	.peek = local_peek,
	.release = local_release,
	.sweep = local_sweep,
	.foreach = local_foreach,
	.stats = local_stats,
	.destroy = local_destroy,
};
