/*
 * exec_local.c - the in-process executor: every binding is one keyed
 * limiter (sluice/limiter.h) of one limit, and a plan is decided by
 * admitting each applied limit in turn, all-or-nothing (docs/policy.md,
 * "Engine").
 *
 * All-or-nothing across limiters. Each item of the plan is admitted with a
 * receipt (sluice__limiter_reserve), in the plan's order: concurrency slots
 * first (their cancel is always exact: a semaphore's operations commute),
 * then the other limits in policy order. The first refusal cancels every
 * receipt already taken, in reverse order. Each reserve is a real, atomic
 * admission of its own cell, so at any instant every cell holds at most its
 * limit: nothing can over-admit, whatever the interleaving. A cancel
 * restores a cell only if nothing landed on it since (else the units stay
 * consumed: conservative), so a refused request evaluated alone consumes
 * nothing; under contention its transient reservation may refuse a
 * concurrent request that would have fit, and rarely stay consumed. The
 * receipts live on the stack and are valid because the engine runs the
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
#include <stdlib.h>
#include <string.h>

#include "engine/executor_internal.h"
#include "limiter/limiter_internal.h"

struct exec_local {
	uint64_t max_keys;
	uint32_t limiter_flags;
};

int sluice__exec_local_create(void **out, uint64_t max_keys, uint32_t engine_flags)
{
	struct exec_local *x = calloc(1, sizeof *x);
	if (x == NULL)
		return SLUICE_ENOMEM;
	x->max_keys = max_keys;
	x->limiter_flags = (engine_flags & SLUICE_ENGINE_CALLER_REGISTERS_RCU) ? SLUICE_LIMITER_CALLER_REGISTERS_RCU
									       : 0;
	*out = x;
	return SLUICE_OK;
}

static void local_destroy(void *ex)
{
	free(ex);
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
	int rc = sluice_limiter_create(&lim, &b->spec, 1, &o);
	if (rc == SLUICE_OK)
		b->exec = lim;
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

static int local_execute(void *ex, const struct sluice__plan *p, uint64_t cost, uint64_t now_ns,
			 struct sluice__exec_result *r)
{
	struct sluice__limiter_hold holds[SLUICE_POLICY_MAX_LIMITS];
	unsigned char key[SLUICE__ENGINE_KEY_MAX];
	(void)ex;

	r->denied = UINT32_MAX;
	r->governing = UINT32_MAX;
	r->decided = 0;
	for (uint32_t j = 0; j < p->n; j++) {
		struct sluice_limiter *lim = p->item[j].b->exec;
		size_t klen = sluice__plan_key(p, j, key);
		sluice__limiter_reserve(lim, key, klen, cost, now_ns, &r->d[j], &holds[j]);
		r->decided |= UINT32_C(1) << j;
		r->slot_handle[j] = holds[j].handle;
		r->slot_entry[j] = (uint64_t)(uintptr_t)holds[j].entry;
		r->slot_hash[j] = holds[j].hash;
		if (!r->d[j].allowed) {
			/* Refused: undo every reservation taken, newest first. */
			for (uint32_t k = j; k-- > 0;) {
				sluice__limiter_cancel(p->item[k].b->exec, &holds[k]);
				r->slot_handle[k] = SLUICE_SLOT_NONE;
			}
			r->slot_handle[j] = SLUICE_SLOT_NONE;
			r->denied = j;
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
		sluice__limiter_reserve(p->item[j].b->exec, key, klen, 0, now_ns, &d[j], &hold);
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
	.destroy = local_destroy,
};
