/*
 * engine.c - the policy engine: a loaded policy bound to an executor's
 * state, one request at a time (docs/policy.md, "Engine").
 *
 * Shape. The engine owns the policy snapshot (`struct sluice__state`):
 * the policy and, per policy limit, the binding of its base numbers and one
 * per tier (for a tiered limit), plus one binding per override. The planner
 * (plan.c) turns a request into a plan over those bindings; an executor
 * (executor_internal.h: in process, exec_local.c; on Redis, plugged in from
 * above) decides the plan and returns one decision per limit; this file
 * picks the governing limit with the one rule (common/govern_internal.h)
 * and fills the public decision. So planning, governing, warn, slots,
 * reload and the snapshot's lifetime are written once for every executor.
 *
 * State. Readers load the snapshot pointer inside an urcu-memb read-side
 * section; reload swaps it with an atomic exchange, waits for a grace
 * period (synchronize_rcu) and drops the engine's reference to the old
 * snapshot, whose last reference frees what it alone held. An executor
 * that blocks on network I/O must not hold a read-side section (a reload
 * would wait for the network), so for it a request pins the snapshot with
 * a reference taken inside the section and drops the section before
 * executing; the last reference, the request's or the reload's, frees the
 * snapshot (under the reload lock: bindings' reference counts are only
 * touched there). The in-process executor never pins: its snapshots are
 * freed by the reload after the grace period, so no reader ever sees a
 * freed limiter or policy. The pointer is a C11 atomic (acquire load /
 * acq_rel exchange: rcu_dereference / rcu_xchg_pointer's contract, visible
 * to TSan, which liburcu's volatile accesses are not).
 *
 * Bindings are reference counted so a reload carries the unchanged ones
 * (same name, tier, scopes, per-class flag and numbers; for overrides, the
 * same scope, key and expiry) over into the next snapshot with their state.
 *
 * Maintenance: one thread per engine (maintenance.c), which sweeps every
 * binding in turn (sluice_engine_sweep), however many limits, tiers and
 * overrides the policy has, and writes the state file
 * (engine_snapshot.c) at its interval.
 */
#include <sluice/engine.h>
#include <sluice/limiter.h>
#include <sluice/snapshot.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <urcu.h>

#include "common/govern_internal.h"
#include "common/util_internal.h"
#include "engine/engine_internal.h"
#include "limiter/limiter_internal.h"

#if defined(__SANITIZE_THREAD__)
#define ENGINE_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define ENGINE_TSAN 1
#endif
#endif
#ifdef ENGINE_TSAN
#include <sanitizer/tsan_interface.h>
#define TSAN_RELEASE(p) __tsan_release((void *)(p))
#define TSAN_ACQUIRE(p) __tsan_acquire((void *)(p))
#else
#define TSAN_RELEASE(p) ((void)0)
#define TSAN_ACQUIRE(p) ((void)0)
#endif

/* ---- bindings ---- */

static int binding_new(struct sluice_engine *eng, const struct sluice_policy_spec *spec,
		       const struct sluice_policy_limit *pl,
		       const char *tier, const struct sluice_limit *ls, uint64_t count, uint64_t burst,
		       bool is_override, struct sluice__binding **out)
{
	struct sluice__binding *b = calloc(1, sizeof *b);
	if (b == NULL)
		return SLUICE_ENOMEM;
	snprintf(b->name, sizeof b->name, "%s", pl->name);
	snprintf(b->tier, sizeof b->tier, "%s", tier);
	b->spec = *ls;
	b->policy_kind = pl->kind;
	b->count = count;
	b->burst = burst;
	b->period_ns = pl->period_ns;
	b->lease_ns = pl->lease_ns;
	b->retry_after_ns = pl->retry_after_ns;
	b->scope_mask = pl->scope_mask;
	b->per_class = pl->per_class;
	b->is_override = is_override;
	b->fail_closed = spec->fail == SLUICE_FAIL_CLOSED;
	b->refs = 1;
	b->id = ++eng->next_id;
	*out = b;
	return SLUICE_OK;
}

/* A binding of `old` that the new (limit, tier) may keep, or NULL. */
static struct sluice__binding *find_kept(const struct sluice__state *old, const struct sluice_policy_limit *pl,
					 const char *tier, const struct sluice_limit *ls)
{
	if (old == NULL)
		return NULL;
	for (uint32_t i = 0; i < old->spec->limit_count; i++) {
		const struct sluice__state_limit *sl = &old->limits[i];
		for (uint32_t t = 0; t <= old->spec->tier_count; t++) {
			struct sluice__binding *b = t == 0 ? sl->base : sl->tier[t - 1];
			if (b != NULL && strcmp(b->name, pl->name) == 0 && strcmp(b->tier, tier) == 0 &&
			    b->scope_mask == pl->scope_mask && b->per_class == pl->per_class &&
			    memcmp(&b->spec, ls, sizeof *ls) == 0)
				return b;
		}
	}
	return NULL;
}

/* An override binding of `old` equal to `ov` (same limit, scope, key,
 * numbers and expiry), or NULL. */
static struct sluice__binding *find_kept_override(const struct sluice__state *old,
						  const struct sluice_policy_limit *pl,
						  const struct sluice_policy_override *ov,
						  const struct sluice_limit *ls)
{
	if (old == NULL)
		return NULL;
	for (uint32_t j = 0; j < old->spec->override_count; j++) {
		struct sluice__binding *b = old->overrides[j];
		if (strcmp(b->name, pl->name) == 0 && b->scope_mask == pl->scope_mask &&
		    b->per_class == pl->per_class && b->oscope == ov->scope &&
		    b->okey_len == ov->key_len && b->oexpires_ns == ov->expires_at_ns &&
		    memcmp(b->okey, ov->key, ov->key_len) == 0 && memcmp(&b->spec, ls, sizeof *ls) == 0)
			return b;
	}
	return NULL;
}

/* Free a snapshot: drop its references to bindings, close and free those
 * it held last. Under eng->lock (or at create/destroy). */
static void state_free(struct sluice_engine *eng, struct sluice__state *st, bool free_policy)
{
	if (st == NULL)
		return;
	const struct sluice_policy_spec *spec = st->spec;
	size_t cap = (size_t)spec->limit_count * (spec->tier_count + 1) + spec->override_count + 1;
	struct sluice__binding **dead = calloc(cap, sizeof *dead);
	size_t n = 0;
	STATE_BINDINGS(st, b, {
		if (--b->refs == 0) {
			if (dead != NULL) {
				dead[n++] = b;
			} else {
				eng->ops->close(eng->ex, &b, 1);
				free(b);
			}
		}
	});
	if (dead != NULL) {
		/* One call for all: in process, one rcu_barrier for every
		 * limiter instead of one each. */
		if (n > 0)
			eng->ops->close(eng->ex, dead, n);
		for (size_t k = 0; k < n; k++)
			free(dead[k]);
		free(dead);
	}
	free(st->overrides);
	if (free_policy)
		sluice_policy_destroy(st->policy);
	free(st);
}

/* Drop one reference to a snapshot; `locked`: eng->lock is held. */
static void state_put(struct sluice_engine *eng, struct sluice__state *st, bool locked)
{
	/* acq_rel: release orders this holder's reads of the snapshot before
	 * the free; acquire (for the last holder) orders the free after every
	 * other holder's release. */
	if (atomic_fetch_sub_explicit(&st->refs, 1, memory_order_acq_rel) != 1) /* acq_rel: why above */
		return;
	if (!locked)
		pthread_mutex_lock(&eng->lock);
	state_free(eng, st, true);
	if (!locked)
		pthread_mutex_unlock(&eng->lock);
}

/* Build a snapshot for `policy`, keeping what `old` (may be NULL) can lend. */
static int state_build(struct sluice_engine *eng, struct sluice_policy *policy,
		       const struct sluice__state *old, struct sluice__state **out)
{
	const struct sluice_policy_spec *spec = sluice_policy_spec(policy);
	int rc = SLUICE_OK;
	uint32_t nconc = 0;

	for (uint32_t i = 0; i < spec->limit_count; i++)
		nconc += spec->limits[i].kind == SLUICE_POLICY_KIND_CONCURRENCY;
	if (nconc > SLUICE_ENGINE_MAX_SLOTS)
		return SLUICE_ETOOBIG; /* a decision could not report every slot */
	struct sluice__state *st = calloc(1, sizeof *st);
	if (st == NULL)
		return SLUICE_ENOMEM;
	st->policy = policy;
	st->spec = spec;
	if (spec->override_count != 0) {
		st->overrides = calloc(spec->override_count, sizeof *st->overrides);
		if (st->overrides == NULL) {
			free(st);
			return SLUICE_ENOMEM;
		}
	}
	size_t cap = (size_t)spec->limit_count * (spec->tier_count + 1) + spec->override_count + 1;
	struct sluice__binding **fresh = calloc(cap, sizeof *fresh);
	size_t nfresh = 0;
	if (fresh == NULL) {
		free(st->overrides);
		free(st);
		return SLUICE_ENOMEM;
	}
	/* Evaluation order: concurrency limits first (exact cancel), then the
	 * others in policy order. */
	uint32_t n = 0;
	for (uint32_t pass = 0; pass < 2; pass++)
		for (uint32_t i = 0; i < spec->limit_count; i++)
			if ((spec->limits[i].kind == SLUICE_POLICY_KIND_CONCURRENCY) == (pass == 0))
				st->order[n++] = i;

	for (uint32_t i = 0; i < spec->limit_count && rc == SLUICE_OK; i++) {
		const struct sluice_policy_limit *pl = &spec->limits[i];
		for (int t = -1; t < (int)spec->tier_count && rc == SLUICE_OK; t++) {
			if (t >= 0 && !pl->tiered)
				break;
			uint64_t count, burst;
			struct sluice_limit ls;
			rc = sluice_policy_limit_numbers(policy, i, t, &count, &burst);
			if (rc == SLUICE_OK)
				rc = sluice__engine_limit_spec(pl, count, burst, &ls);
			if (rc != SLUICE_OK)
				break;
			const char *tname = t < 0 ? "" : spec->tiers[t].name;
			struct sluice__binding *b = find_kept(old, pl, tname, &ls);
			if (b != NULL) {
				b->refs++;
			} else {
				rc = binding_new(eng, spec, pl, tname, &ls, count, burst, false, &b);
				if (rc != SLUICE_OK)
					break;
				fresh[nfresh++] = b;
			}
			if (t < 0)
				st->limits[i].base = b;
			else
				st->limits[i].tier[t] = b;
		}
	}
	for (uint32_t j = 0; j < spec->override_count && rc == SLUICE_OK; j++) {
		const struct sluice_policy_override *ov = &spec->overrides[j];
		const struct sluice_policy_limit *pl = &spec->limits[ov->limit];
		struct sluice_limit ls;
		uint64_t burst = pl->kind == SLUICE_POLICY_KIND_GCRA ? ov->burst : ov->count;
		burst = burst != 0 ? burst : ov->count;
		rc = sluice__engine_limit_spec(pl, ov->count, burst, &ls);
		if (rc != SLUICE_OK)
			break;
		struct sluice__binding *b = find_kept_override(old, pl, ov, &ls);
		if (b != NULL) {
			b->refs++;
		} else {
			rc = binding_new(eng, spec, pl, "", &ls, ov->count, burst, true, &b);
			if (rc != SLUICE_OK)
				break;
			b->oscope = ov->scope;
			b->okey_len = ov->key_len;
			b->oexpires_ns = ov->expires_at_ns;
			memcpy(b->okey, ov->key, ov->key_len);
			fresh[nfresh++] = b;
		}
		st->overrides[j] = b;
	}
	/* The executor's state of every new binding, then its check of the
	 * whole snapshot (on Redis: every limit validated once, here). A
	 * binding whose open failed has exec NULL: close skips it. */
	for (size_t k = 0; k < nfresh && rc == SLUICE_OK; k++)
		rc = eng->ops->open(eng->ex, spec, fresh[k]);
	if (rc == SLUICE_OK && eng->ops->prepare != NULL)
		rc = eng->ops->prepare(eng->ex, policy, fresh, nfresh);
	free(fresh);
	if (rc != SLUICE_OK) {
		state_free(eng, st, false);
		return rc;
	}
	atomic_init(&st->refs, 1); /* the engine's; not shared yet */
	*out = st;
	return SLUICE_OK;
}

/* ---- per-request helpers ---- */

static inline int enter(struct sluice_engine *eng)
{
	return sluice__rcu_thread_enter(eng->flags & SLUICE_ENGINE_CALLER_REGISTERS_RCU);
}

/* The current snapshot, for one request. In process the caller stays in
 * the read-side section until snapshot_end(); a blocking executor pins the
 * snapshot instead. */
static inline struct sluice__state *snapshot_begin(struct sluice_engine *eng)
{
	rcu_read_lock();
	/* acquire: pairs with the acq_rel exchange in sluice_engine_reload():
	 * the snapshot and everything it points to were written before. */
	struct sluice__state *st = atomic_load_explicit(&eng->state, memory_order_acquire); /* acquire: why above */
	TSAN_ACQUIRE(st);
	if (eng->ops->blocking) {
		/* relaxed: the read-side section keeps the snapshot alive
		 * until the reload's grace period, which follows this
		 * increment; the put's acq_rel orders the rest. */
		atomic_fetch_add_explicit(&st->refs, 1, memory_order_relaxed); /* relaxed: why above */
		rcu_read_unlock();
	}
	return st;
}

static inline void snapshot_end(struct sluice_engine *eng, struct sluice__state *st)
{
	if (eng->ops->blocking) {
		state_put(eng, st, false);
		return;
	}
#ifdef ENGINE_TSAN
	/* Our reads happen-before the frees after the next grace period. */
	TSAN_RELEASE(&eng->tsan_gp);
#endif
	rcu_read_unlock();
}

static int first_scope(uint32_t mask)
{
	return mask == 0 ? -1 : __builtin_ctz(mask);
}

/* out's governing fields from policy limit i's decision d. */
static void fill_governing(const struct sluice_policy_spec *spec, uint32_t i,
			   const struct sluice_decision *d, struct sluice_engine_decision *out)
{
	const struct sluice_policy_limit *pl = &spec->limits[i];

	out->d = *d;
	out->d.limit_index = i;
	out->governed = true;
	out->scope = first_scope(pl->scope_mask);
	sluice__engine_name_copy(out->limit_name, pl->name);
}

/* The public decision from an executor's per-limit answers. */
static void compose(const struct sluice__plan *p, const struct sluice__exec_result *r, uint64_t cost,
		    struct sluice_engine_decision *out)
{
	const struct sluice_policy_spec *spec = p->spec;
	bool degraded = false;
	for (uint32_t j = 0; j < p->n; j++)
		if (r->decided & (UINT32_C(1) << j))
			degraded = degraded || r->d[j].degraded;
	if (r->denied != UINT32_MAX) {
		fill_governing(spec, p->item[r->denied].limit, &r->d[r->denied], out);
		out->d.allowed = false;
		out->d.degraded = degraded;
		return;
	}
	uint32_t best = r->governing;
	for (uint32_t j = 0; j < p->n; j++) {
		const struct sluice_decision *d = &r->d[j];
		if (d->degraded || !(r->decided & (UINT32_C(1) << j)))
			continue; /* answered by the fail mode: cannot govern */
		if (r->governing == UINT32_MAX &&
		    (best == UINT32_MAX ||
		     sluice__decision_governs(d, p->item[j].limit, &r->d[best], p->item[best].limit)))
			best = j;
		if (!out->warn && sluice__engine_over_warn(&spec->limits[p->item[j].limit], d)) {
			out->warn = true;
			out->warn_limit = p->item[j].limit;
		}
	}
	for (uint32_t j = 0; j < p->n && cost > 0; j++) {
		if (r->slot_handle[j] == SLUICE_SLOT_NONE || out->slot_count >= SLUICE_ENGINE_MAX_SLOTS)
			continue;
		struct sluice_engine_slot *s = &out->slots[out->slot_count++];
		s->binding_id = p->item[j].b->id;
		s->handle = r->slot_handle[j];
		s->entry = r->slot_entry[j];
		s->hash = r->slot_hash[j];
		s->limit = p->item[j].limit;
	}
	if (best != UINT32_MAX) {
		fill_governing(spec, p->item[best].limit, &r->d[best], out);
		out->d.reason = SLUICE_REASON_NONE;
		out->d.retry_after_ns = 0;
	} else {
		out->d.limit_index = UINT32_MAX;
		out->d.remaining = UINT64_MAX;
	}
	out->d.allowed = true;
	out->d.degraded = degraded;
}

/* The caller's per-limit decisions (req->limit_decisions, indexed by
 * policy limit). After an admission, each limit's decision as the executor
 * answered it (the state right after this admission); after a denial, the
 * denier's refusal and, for every other applied limit, its state read
 * after the cancels (the limits before the denier were undone, later ones
 * never evaluated). A limit the store did not report is read the same way;
 * one it cannot read (Redis down) reads as degraded and allowed. */
static void report_limits(struct sluice_engine *eng, const struct sluice__plan *p,
			  struct sluice__exec_result *r, const struct sluice_engine_request *req)
{
	uint32_t full = p->n >= 32 ? UINT32_MAX : (UINT32_C(1) << p->n) - 1;
	bool denied = r->denied != UINT32_MAX;

	if (denied || (r->decided & full) != full) {
		struct sluice_decision d[SLUICE_POLICY_MAX_LIMITS];
		int rc = eng->ops->peek(eng->ex, p, req->now_ns, d);
		for (uint32_t j = 0; rc != SLUICE_OK && j < p->n; j++) {
			/* The store could not be read: those limits are
			 * reported as the fail mode's open answer. */
			memset(&d[j], 0, sizeof d[j]);
			d[j].allowed = true;
			d[j].degraded = true;
		}
		for (uint32_t j = 0; j < p->n; j++)
			if (j != r->denied && (denied || !(r->decided & (UINT32_C(1) << j))))
				r->d[j] = d[j];
	}
	for (uint32_t j = 0; j < p->n; j++) {
		uint32_t i = p->item[j].limit;
		if (i >= req->limit_decisions_cap)
			continue;
		struct sluice_decision *to = &req->limit_decisions[i];
		*to = r->d[j];
		to->limit_index = i;
		to->allowed = j != r->denied;
	}
}

/* ---- check ---- */

int sluice_engine_check(struct sluice_engine *eng, const struct sluice_engine_request *req,
			struct sluice_engine_decision *out)
{
	if (eng == NULL || req == NULL || out == NULL)
		return SLUICE_EINVAL;
	if (req->limit_decisions == NULL && req->limit_decisions_cap != 0)
		return SLUICE_EINVAL;
	int rc = enter(eng);
	if (rc != SLUICE_OK)
		return rc;

	struct sluice__plan plan;
	struct sluice__exec_result res;

	memset(out, 0, offsetof(struct sluice_engine_decision, limit_name) + 1);
	out->scope = -1;
	out->warn_limit = UINT32_MAX;
	out->dry_run_refused = 0;

	struct sluice__state *st = snapshot_begin(eng);
	rc = sluice__plan_build(st, req, SLUICE__PLAN_CHECK, &plan);
	if (rc != SLUICE_OK)
		goto done;
	plan.want_all = req->limit_decisions != NULL;
	out->class_id = plan.class_id;
	out->generation = st->generation;
	out->applied = plan.applied;
	if (plan.n == 0) {
		out->d.allowed = true;
		out->d.limit_index = UINT32_MAX;
		out->d.remaining = UINT64_MAX;
		goto done;
	}
	rc = sluice__engine_execute(eng->ops, eng->ex, &plan, req->cost, req->now_ns, &res, &out->dry_run_refused);
	if (rc != SLUICE_OK)
		goto done;
	compose(&plan, &res, req->cost, out);
	if (req->limit_decisions != NULL)
		report_limits(eng, &plan, &res, req);
done:
	snapshot_end(eng, st);
	return rc;
}

/* ---- release ---- */

static struct sluice__binding *binding_by_id(const struct sluice__state *st, uint64_t id)
{
	STATE_BINDINGS(st, b, {
		if (b->id == id)
			return b;
	});
	return NULL;
}

int sluice_engine_release(struct sluice_engine *eng, struct sluice_engine_decision *decision)
{
	if (eng == NULL || decision == NULL || decision->slot_count > SLUICE_ENGINE_MAX_SLOTS)
		return SLUICE_EINVAL;
	int rc = enter(eng);
	if (rc != SLUICE_OK)
		return rc;
	struct sluice__state *st = snapshot_begin(eng);
	for (uint32_t k = 0; k < decision->slot_count; k++) {
		const struct sluice_engine_slot *s = &decision->slots[k];
		struct sluice__binding *b = binding_by_id(st, s->binding_id);
		int r;
		if (b == NULL) {
			r = SLUICE_ESTALE; /* its limit changed or was removed */
		} else {
			struct sluice__slot_ref ref = { s->handle, s->entry, s->hash };
			r = eng->ops->release(eng->ex, b, &ref);
			if (r == SLUICE_ENOTFOUND)
				r = SLUICE_ESTALE;
		}
		if (r != SLUICE_OK && (rc == SLUICE_OK || r == SLUICE_EDOUBLE))
			rc = r;
	}
	snapshot_end(eng, st);
	decision->slot_count = 0;
	return rc;
}

/* ---- reload ---- */

int sluice_engine_reload(struct sluice_engine *eng, struct sluice_policy *policy)
{
	if (eng == NULL || policy == NULL)
		return SLUICE_EINVAL;
	int rc = enter(eng);
	if (rc != SLUICE_OK)
		return rc;
	pthread_mutex_lock(&eng->lock);
	/* relaxed: only reloads (serialized by the lock) store the pointer. */
	struct sluice__state *old = atomic_load_explicit(&eng->state, memory_order_relaxed); /* relaxed: why above */
	const struct sluice_policy_spec *ns = sluice_policy_spec(policy);
	if (ns->scope_count != old->spec->scope_count) {
		rc = SLUICE_EINVAL;
	} else {
		for (uint32_t s = 0; s < ns->scope_count; s++)
			if (strcmp(ns->scopes[s], old->spec->scopes[s]) != 0)
				rc = SLUICE_EINVAL;
	}
	struct sluice__state *st = NULL;
	if (rc == SLUICE_OK)
		rc = state_build(eng, policy, old, &st);
	if (rc != SLUICE_OK) {
		pthread_mutex_unlock(&eng->lock);
		return rc;
	}
	st->generation = old->generation + 1;
	TSAN_RELEASE(st);
	/* acq_rel: release publishes the new snapshot's fields to readers'
	 * acquire loads (rcu_xchg_pointer's contract); acquire is not needed
	 * for `old` (we own it under the lock) but costs nothing here. */
	atomic_exchange_explicit(&eng->state, st, memory_order_acq_rel); /* acq_rel: why above */
	/* Wait for every reader that may still use `old` (or be about to pin
	 * it). */
	synchronize_rcu();
#ifdef ENGINE_TSAN
	TSAN_ACQUIRE(&eng->tsan_gp);
#endif
	state_put(eng, old, true);
	pthread_mutex_unlock(&eng->lock);
	return SLUICE_OK;
}

uint64_t sluice_engine_generation(const struct sluice_engine *eng)
{
	if (eng == NULL)
		return 0;
	struct sluice_engine *e = (struct sluice_engine *)(uintptr_t)eng;
	if (enter(e) != SLUICE_OK)
		return 0;
	/* The snapshot may be freed right after we read its generation, so
	 * read it inside a read-side section. */
	rcu_read_lock();
	/* acquire: pairs with the acq_rel exchange in reload (publication of
	 * the snapshot's fields). */
	struct sluice__state *st = atomic_load_explicit(&e->state, memory_order_acquire); /* acquire: why above */
	uint64_t g = st->generation;
	rcu_read_unlock();
	return g;
}

/* ---- sweep (the maintenance thread: maintenance.c) ---- */

int sluice_engine_sweep(struct sluice_engine *eng, uint64_t now_ns, size_t budget_entries)
{
	if (eng == NULL)
		return SLUICE_EINVAL;
	if (eng->ops->sweep == NULL)
		return SLUICE_OK; /* the store expires idle state itself */
	int rc = enter(eng);
	if (rc != SLUICE_OK)
		return rc;
	pthread_mutex_lock(&eng->lock);
	/* relaxed: the lock excludes reloads, the only writers. */
	struct sluice__state *st = atomic_load_explicit(&eng->state, memory_order_relaxed); /* relaxed: why above */
	STATE_BINDINGS(st, b, {
		int r = eng->ops->sweep(eng->ex, b, now_ns, budget_entries);
		if (r != SLUICE_OK && rc == SLUICE_OK)
			rc = r;
	});
	pthread_mutex_unlock(&eng->lock);
	return rc;
}

/* ---- usage ---- */

int sluice_engine_usage(struct sluice_engine *eng, const struct sluice_engine_request *req,
			struct sluice_engine_usage *out, size_t cap, size_t *count)
{
	if (eng == NULL || req == NULL || count == NULL || (cap > 0 && out == NULL))
		return SLUICE_EINVAL;
	*count = 0;
	int rc = enter(eng);
	if (rc != SLUICE_OK)
		return rc;
	struct sluice__plan plan;
	struct sluice_decision d[SLUICE_POLICY_MAX_LIMITS];
	struct sluice__state *st = snapshot_begin(eng);
	const struct sluice_policy_spec *spec = st->spec;
	rc = sluice__plan_build(st, req, SLUICE__PLAN_USAGE, &plan);
	if (rc != SLUICE_OK)
		goto done;
	plan.want_all = true;
	if (plan.n > cap)
		plan.n = (uint32_t)cap; /* only what fits is read */
	if (plan.n > 0) {
		rc = eng->ops->peek(eng->ex, &plan, req->now_ns, d);
		if (rc != SLUICE_OK)
			goto done;
	}
	for (uint32_t j = 0; j < plan.n; j++) {
		const struct sluice_policy_limit *pl = &spec->limits[plan.item[j].limit];
		struct sluice_engine_usage *u = &out[j];
		memset(u, 0, sizeof *u);
		u->limit = plan.item[j].limit;
		u->kind = pl->kind;
		u->reason = pl->reason;
		u->overridden = plan.item[j].overridden;
		u->period_ns = pl->period_ns;
		u->count = d[j].limit;
		u->remaining = d[j].remaining;
		u->used = d[j].remaining < d[j].limit ? d[j].limit - d[j].remaining : 0;
		u->reset_ns = d[j].reset_ns;
		u->warn = sluice__engine_over_warn(pl, &d[j]);
		sluice__engine_name_copy(u->name, pl->name);
	}
	*count = (size_t)__builtin_popcount(plan.applied);
	if (*count > cap)
		rc = SLUICE_ETRUNC;
done:
	snapshot_end(eng, st);
	return rc;
}
int sluice_engine_top(struct sluice_engine *eng, uint32_t limit, int32_t tier, uint64_t now_ns,
		      struct sluice_engine_top *out, size_t n, size_t *count)
{
	if (eng == NULL || count == NULL || (n > 0 && out == NULL))
		return SLUICE_EINVAL;
	*count = 0;
	if (eng->ops->foreach == NULL)
		return SLUICE_EUNSUPPORTED; /* no table to walk: the keys live in the store */
	int rc = enter(eng);
	if (rc != SLUICE_OK)
		return rc;
	struct sluice__state *st = snapshot_begin(eng);
	if (limit >= st->spec->limit_count || tier < SLUICE_POLICY_NO_TIER ||
	    (tier >= 0 && (uint32_t)tier >= st->spec->tier_count)) {
		rc = SLUICE_EINVAL;
		goto done;
	}
	struct sluice__binding *b = st->limits[limit].base;
	if (tier >= 0 && st->limits[limit].tier[tier] != NULL)
		b = st->limits[limit].tier[tier];
	struct sluice__top_heap h = { out, n, 0 };
	if (n > 0)
		eng->ops->foreach(eng->ex, b, now_ns, sluice__top_visit, &h);
	*count = sluice__top_sort(&h);
done:
	snapshot_end(eng, st);
	return rc;
}

int sluice_engine_limit_stats(struct sluice_engine *eng, uint32_t limit,
			      struct sluice_engine_limit_stats *out)
{
	/* the sizes of this version's struct and of the one before dry_run_refused */
	if (eng == NULL || out == NULL ||
	    (out->size != sizeof *out && out->size != offsetof(struct sluice_engine_limit_stats, dry_run_refused)))
		return SLUICE_EINVAL;
	if (eng->ops->stats == NULL)
		return SLUICE_EUNSUPPORTED; /* the counts live in the store */
	int rc = enter(eng);
	if (rc != SLUICE_OK)
		return rc;
	struct sluice__state *st = snapshot_begin(eng);
	if (limit >= st->spec->limit_count) {
		rc = SLUICE_EINVAL;
		goto done;
	}
	size_t size = out->size; /* a caller's older, shorter struct gets its part */
	struct sluice_engine_limit_stats sum = {.size = size};
	/* Bindings of a limit: its base, its tiers, the overrides naming it. */
	struct sluice__binding *own[1 + SLUICE_POLICY_MAX_TIERS + SLUICE_POLICY_MAX_OVERRIDES];
	size_t n = 0;
	own[n++] = st->limits[limit].base;
	for (uint32_t t = 0; t < st->spec->tier_count; t++)
		own[n++] = st->limits[limit].tier[t];
	for (uint32_t j = 0; st->overrides != NULL && j < st->spec->override_count; j++)
		if (st->overrides[j] != NULL && st->spec->overrides[j].limit == limit)
			own[n++] = st->overrides[j];
	for (size_t i = 0; i < n; i++)
		if (own[i] != NULL) {
			eng->ops->stats(eng->ex, own[i], &sum);
			/* relaxed: a statistics counter (dry_run.c) */
			sum.dry_run_refused += atomic_load_explicit(&own[i]->dry_run_refused, memory_order_relaxed); /* relaxed: why above */
			sum.bindings++;
		}
	memcpy(out, &sum, size);
done:
	snapshot_end(eng, st);
	return rc;
}

/* ---- create / destroy ---- */

#define ENGINE_FLAGS \
	(SLUICE_ENGINE_CALLER_REGISTERS_RCU | SLUICE_ENGINE_STATE_FRESH_ON_ERROR | \
	 SLUICE_ENGINE_STATE_SAVE_AT_DESTROY)

/* Free an engine whose state is gone (or was never built). */
static void engine_free(struct sluice_engine *eng)
{
	pthread_mutex_destroy(&eng->s_lock);
	pthread_mutex_destroy(&eng->lock);
	free(eng->state_path);
	free(eng);
}

/* The state file at create: no file starts empty; a bad one fails create
 * unless the caller chose SLUICE_ENGINE_STATE_FRESH_ON_ERROR. */
static int restore_at_create(struct sluice_engine *eng, struct sluice_snapshot_info *info)
{
	int rc = sluice_engine_restore(eng, NULL, sluice_realtime_ns(), info);
	if (rc == SLUICE_ENOTFOUND) {
		if (info != NULL && info->size == sizeof *info)
			info->message[0] = '\0'; /* a first start is no error */
		return SLUICE_OK;
	}
	if (rc != SLUICE_OK && (eng->flags & SLUICE_ENGINE_STATE_FRESH_ON_ERROR))
		return SLUICE_OK; /* the restore left the engine empty; info says why */
	return rc;
}

int sluice__engine_create_exec(struct sluice_engine **out, struct sluice_policy *policy,
			       const struct sluice_engine_options *opts,
			       const struct sluice__executor_ops *ops, void *ex)
{
	struct sluice_engine_options o;

	if (out == NULL)
		return SLUICE_EINVAL;
	*out = NULL;
	if (policy == NULL)
		return SLUICE_EINVAL;
	memset(&o, 0, sizeof o);
	if (opts != NULL) {
		if (opts->size != sizeof o)
			return SLUICE_EINVAL;
		memcpy(&o, opts, sizeof o);
	}
	if ((o.flags & ~ENGINE_FLAGS) != 0 || o.reserved_ != 0 ||
	    (o.snapshot_interval_ns != 0 && o.state_path == NULL))
		return SLUICE_EINVAL;
	if (o.state_path != NULL && ops != &sluice__exec_local_ops)
		return SLUICE_EUNSUPPORTED; /* Redis keeps its own state */
	int rc = sluice__rcu_thread_enter(o.flags & SLUICE_ENGINE_CALLER_REGISTERS_RCU);
	if (rc != SLUICE_OK)
		return rc;
	struct sluice_engine *eng = calloc(1, sizeof *eng);
	if (eng == NULL)
		return SLUICE_ENOMEM;
	if (pthread_mutex_init(&eng->lock, NULL) != 0) {
		free(eng);
		return SLUICE_ENOMEM;
	}
	if (pthread_mutex_init(&eng->s_lock, NULL) != 0) {
		pthread_mutex_destroy(&eng->lock);
		free(eng);
		return SLUICE_ENOMEM;
	}
	eng->s_stats.size = sizeof eng->s_stats;
	if (o.state_path != NULL && (eng->state_path = strdup(o.state_path)) == NULL) {
		engine_free(eng);
		return SLUICE_ENOMEM;
	}
	eng->flags = o.flags;
	eng->ops = ops;
	eng->ex = ex;
	struct sluice__state *st;
	rc = state_build(eng, policy, NULL, &st);
	if (rc == SLUICE_OK) {
		st->generation = 1;
		/* Not shared yet; whoever receives *out is ordered by the
		 * caller's own synchronisation. */
		atomic_init(&eng->state, st); /* relaxed (initialisation): why above */
		if (eng->state_path != NULL)
			rc = restore_at_create(eng, o.restore_info);
		uint64_t sweep_ns = ops->sweep != NULL ? o.sweep_interval_ns : 0;
		if (rc == SLUICE_OK && (sweep_ns != 0 || o.snapshot_interval_ns != 0))
			rc = sluice__engine_maintenance_start(eng, sweep_ns, o.snapshot_interval_ns);
		if (rc != SLUICE_OK)
			state_free(eng, st, false);
	}
	if (rc != SLUICE_OK) {
		engine_free(eng);
		return rc;
	}
	*out = eng;
	return SLUICE_OK;
}

int sluice_engine_create(struct sluice_engine **out, struct sluice_policy *policy,
			 const struct sluice_engine_options *opts)
{
	if (out == NULL)
		return SLUICE_EINVAL;
	*out = NULL;
	if (policy == NULL || (opts != NULL && opts->size != sizeof *opts))
		return SLUICE_EINVAL;
	void *ex;
	int rc = sluice__exec_local_create(&ex, opts != NULL ? opts->max_keys : 0,
					   opts != NULL ? opts->flags : 0);
	if (rc != SLUICE_OK)
		return rc;
	rc = sluice__engine_create_exec(out, policy, opts, &sluice__exec_local_ops, ex);
	if (rc != SLUICE_OK)
		sluice__exec_local_ops.destroy(ex);
	return rc;
}

void sluice_engine_destroy(struct sluice_engine *eng)
{
	if (eng == NULL)
		return;
	sluice__engine_maintenance_stop(eng);
	if ((eng->flags & SLUICE_ENGINE_STATE_SAVE_AT_DESTROY) && eng->state_path != NULL)
		(void)sluice_engine_snapshot(eng, NULL, sluice_realtime_ns(), NULL); /* counted; nobody to tell */
	(void)enter(eng);
	pthread_mutex_lock(&eng->lock);
	/* relaxed: no concurrent user by contract. */
	state_put(eng, atomic_load_explicit(&eng->state, memory_order_relaxed), true); /* relaxed: why above */
	pthread_mutex_unlock(&eng->lock);
	eng->ops->destroy(eng->ex);
	engine_free(eng);
}

void *sluice__engine_exec(struct sluice_engine *eng, const struct sluice__executor_ops *ops)
{
	return eng != NULL && eng->ops == ops ? eng->ex : NULL;
}
