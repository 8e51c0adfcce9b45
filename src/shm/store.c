/*
 * store.c - the decisions of the shm keyed store and the limiter it makes
 * (the operations table of src/limiter/backend_internal.h, engine entry
 * points included), on the table of table.c (docs/shm.md).
 *
 * Decisions are the in-process limiter's (src/limiter/decide.c), cell for
 * cell: the same cell order (sluice__shm_cells(), after limiter.c's
 * create), the same dry run, commits of cells 1..k-1 with receipts, a
 * release fence and cell 0 last, the same cancels and governing rule, so
 * that a trace gives the same decisions on both (tests/test_shm_limiter.c).
 * What differs is reuse: an entry's slot may be reclaimed and claimed for
 * another key while a slow process still acts on it, so every decision
 * revalidates the slot's state word after its cell operations (still()):
 * a changed word means the operations may have landed on another key's
 * cells, which are then undone with their receipts, and the decision is
 * retried on the key's own entry (table.c, "Reuse").
 */
#include <sluice/shm.h>

#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "cells/gcra_internal.h"
#include "common/govern_internal.h"
#include "limiter/backend_internal.h"
#include "shm/store_internal.h"

/* ---- decisions ---- */

enum verdict { V_DENY, V_ADMIT, V_DEAD, V_DEGRADED, V_STALE };

/* A hold's token for slot i. */
#define ENTRY_OF(i) ((void *)(uintptr_t)((i) + 1))
#define SLOT_OF(e) ((uint64_t)(uintptr_t)(e)-1)

/* The governing decision among d[] (every cell's, admitted), by the one
 * rule ranked by check_order; limit_index is the caller's
 * (src/limiter/decide.c, govern()). */
static void govern(const struct shm_store *s, const struct sluice_decision *d, struct sluice_decision *out)
{
	uint32_t best = UINT32_MAX, best_rank = UINT32_MAX;

	for (uint32_t c = 0; c < s->ncheck; c++) {
		uint32_t i = s->check_order[c];
		if (best == UINT32_MAX || sluice__decision_governs(&d[i], c, &d[best], best_rank)) {
			best = i;
			best_rank = c;
		}
	}
	*out = d[best];
	out->limit_index = s->user_index[best];
}

/* The dry run of every cell on the entry's current state, cell 0 judged on
 * w0: false with *out the first denier (check_order). */
static bool dry_run(const struct shm_store *s, uint64_t i, uint64_t w0, uint64_t cost, uint64_t now_ns,
		    struct sluice_decision *d, struct sluice_decision *out)
{
	for (uint32_t n = 0; n < s->ncheck; n++) {
		uint32_t c = s->check_order[n];
		bool ok = c == 0 ? s->ops[0]->check_word(w0, &s->limits[0], now_ns, cost, &d[0])
				 : s->ops[c]->check(cell_of(s, i, c), &s->limits[c], now_ns, cost, &d[c]);
		if (!ok) {
			*out = d[c];
			out->limit_index = s->user_index[c];
			return false;
		}
	}
	if (s->user_index[0] == UINT32_MAX) /* the COMMIT word: never denies a live entry */
		s->ops[0]->check_word(w0, &s->limits[0], now_ns, cost, &d[0]);
	return true;
}

/* Cancel the receipts of cells upto .. 1 (never cell 0). */
static void cancel_cells(const struct shm_store *s, uint64_t i, uint32_t upto, const struct sluice__receipt *r)
{
	for (uint32_t c = upto; c >= 1; c--)
		s->ops[c]->cancel(cell_of(s, i, c), &s->limits[c], &r[c]);
}

/* An entry of k >= 2 cells: entry_decide() of src/limiter/decide.c: a dry
 * run, cells 1..k-1 committed with receipts, then (after a release fence)
 * cell 0; a commit that loses cancels the receipts taken. */
static enum verdict decide_entry(const struct shm_store *s, uint64_t i, uint64_t w, uint64_t cost,
				 uint64_t now_ns, struct sluice_decision *out, struct sluice__limiter_hold *hold)
{
	const struct sluice__limit_ops *op0 = s->ops[0];
	void *c0 = cell_of(s, i, 0);
	struct sluice_decision d[SHM_NCELLS];
	struct sluice__receipt r[SHM_NCELLS];
	uint32_t k = s->ncells;

	uint64_t w0 = op0->word(c0);
	if (op0->is_tomb(w0))
		return V_DEAD;
	if (!dry_run(s, i, w0, cost, now_ns, d, out))
		return still(s, i, w) ? V_DENY : V_STALE;
	if (cost == 0) {
		govern(s, d, out);
		return still(s, i, w) ? V_ADMIT : V_STALE;
	}
	for (uint32_t c = 1; c < k; c++) {
		if (!s->ops[c]->admit(cell_of(s, i, c), &s->limits[c], now_ns, cost, &d[c], &r[c])) {
			cancel_cells(s, i, c - 1, r);
			if (op0->is_tomb(op0->word(c0)))
				return V_DEAD;
			*out = d[c];
			out->limit_index = s->user_index[c];
			return still(s, i, w) ? V_DENY : V_STALE;
		}
	}
	/* release: our commits to cells 1..k-1 happen-before a sweeper whose
	 * acquire fence follows a load of cell 0 that reads the commit below
	 * (or a later RMW): sluice__shm_reclaim_slot(). */
	atomic_thread_fence(memory_order_release); /* release: why above */
	if (!op0->admit(c0, &s->limits[0], now_ns, cost, &d[0], &r[0])) {
		cancel_cells(s, i, k - 1, r);
		if (op0->is_tomb(op0->word(c0)))
			return V_DEAD;
		*out = d[0];
		out->limit_index = s->user_index[0];
		return still(s, i, w) ? V_DENY : V_STALE;
	}
	if (!still(s, i, w)) {
		/* A reused slot: undo what we took of another key (cell 0
		 * keeps its commit, as a cancel leaves it: decide.c). */
		cancel_cells(s, i, k - 1, r);
		return V_STALE;
	}
	govern(s, d, out);
	if (hold != NULL) {
		memcpy(hold->r, r, sizeof *r * k);
		hold->entry = ENTRY_OF(i);
		hold->hash = w;
	}
	return V_ADMIT;
}

/* Decide on slot i, state w. hold (may be NULL) receives the receipts. */
static enum verdict decide(const struct shm_store *s, uint64_t i, uint64_t w, uint64_t cost, uint64_t now_ns,
			   struct sluice_decision *out, struct sluice__limiter_hold *hold)
{
	const struct sluice__limit_ops *op0 = s->ops[0];
	void *c0 = cell_of(s, i, 0);
	struct sluice__receipt r[2];

	if (s->ncells == 1) {
		if (cost == 0) {
			uint64_t x = op0->word(c0);
			if (op0->is_tomb(x))
				return V_DEAD;
			op0->check_word(x, &s->limits[0], now_ns, 0, out);
			return still(s, i, w) ? V_ADMIT : V_STALE;
		}
		bool ok;
		if (s->one_gcra) {
			/* The common policy: the GCRA admission inlined
			 * (gcra_internal.h), as the in-process one-GCRA path. */
			struct sluice_gcra_receipt g;
			ok = sluice__gcra_admit(c0, &s->limits[0].rate, now_ns, cost, out, &g);
			if (ok) {
				r[0].w[0] = g.before;
				r[0].w[1] = g.after;
			}
		} else {
			ok = op0->admit(c0, &s->limits[0], now_ns, cost, out, &r[0]);
		}
		if (ok) {
			if (!still(s, i, w)) {
				op0->cancel(c0, &s->limits[0], &r[0]);
				return V_STALE;
			}
			if (hold != NULL) {
				hold->r[0] = r[0];
				hold->entry = ENTRY_OF(i);
				hold->hash = w;
			}
			return V_ADMIT;
		}
		if (op0->is_tomb(op0->word(c0)))
			return V_DEAD;
		return still(s, i, w) ? V_DENY : V_STALE;
	}

	return decide_entry(s, i, w, cost, now_ns, out, hold);
}

static void fill_degraded(const struct shm_store *s, struct sluice_decision *out)
{
	bool open = s->fail_mode == SLUICE_FAIL_OPEN;
	struct sluice_decision fresh;

	s->ops[s->lc]->fresh(&s->limits[s->lc], 0, &fresh);
	memset(out, 0, sizeof *out);
	out->allowed = open;
	out->degraded = true;
	out->reason = open ? SLUICE_REASON_NONE : SLUICE_REASON_CAPACITY;
	out->limit = fresh.limit;
}

/* One key's admission (cost 0: a peek, nothing inserted). */
static enum verdict admit_key(const struct shm_store *s, const void *key, size_t key_len, uint64_t cost,
			      uint64_t now_ns, struct sluice_decision *out, struct sluice__limiter_hold *hold)
{
	struct krepr k;
	uint64_t hash = sluice__shm_key_repr(s->secret, key, key_len, &k), w;
	enum verdict v;

	if (hold != NULL) {
		hold->entry = NULL;
		hold->handle = SLUICE_SLOT_NONE;
	}
	for (;;) {
		uint64_t i = sluice__shm_lookup(s, hash, &k, &w);
		if (i == UINT64_MAX) {
			if (cost == 0) { /* an unknown key: every limit full */
				struct sluice_decision d[SHM_NCELLS];
				for (uint32_t c = 0; c < s->ncells; c++)
					s->ops[c]->fresh(&s->limits[c], now_ns, &d[c]);
				govern(s, d, out);
				v = V_ADMIT;
				break;
			}
			i = sluice__shm_insert(s, hash, &k, now_ns, &w);
			if (i == UINT64_MAX) {
				fill_degraded(s, out);
				v = V_DEGRADED;
				break;
			}
		}
		v = decide(s, i, w, cost, now_ns, out, hold);
		if (v == V_DEAD)
			sluice__shm_free_slot(s, i, w); /* help: a tombstoned entry is freed by whoever sees it */
		else if (v != V_STALE)
			break;
	}
	if (s->ncells == 1)
		out->limit_index = 0; /* the cell's own decision */
	if (cost == 0) {
		out->allowed = true;
		return v;
	}
	stat_add(s, v == V_ADMIT ? SHM_ST_ADMITTED : v == V_DENY ? SHM_ST_DENIED : SHM_ST_DEGRADED);
	if (hold != NULL && v == V_ADMIT && s->slots_cell >= 0)
		hold->handle = hold->r[s->slots_cell].w[0];
	return v;
}

/* ---- the limiter's operations (backend_internal.h) ---- */

static int check_key(const void *key, size_t key_len)
{
	return key == NULL || key_len > SLUICE_LIMITER_MAX_KEY ? SLUICE_EKEY : SLUICE_OK;
}

static int shm_admit(void *be, const void *key, size_t key_len, uint64_t cost, uint64_t now_ns,
		     struct sluice_decision *out)
{
	struct shm_store *s = be;
	if (cost > 0 && s->slots_cell >= 0)
		return SLUICE_EINVAL;
	int rc = check_key(key, key_len);
	if (rc != SLUICE_OK)
		return rc;
	admit_key(s, key, key_len, cost, now_ns, out, NULL);
	return SLUICE_OK;
}

static int shm_acquire(void *be, const void *key, size_t key_len, uint64_t cost, uint64_t now_ns,
		       struct sluice_decision *out, sluice_slot_handle *handle)
{
	struct sluice__limiter_hold hold;
	int rc = check_key(key, key_len);
	if (rc != SLUICE_OK)
		return rc;
	admit_key(be, key, key_len, cost, now_ns, out, &hold);
	*handle = hold.handle;
	return SLUICE_OK;
}

static int shm_release(void *be, const void *key, size_t key_len, sluice_slot_handle handle)
{
	struct shm_store *s = be;
	struct krepr k;
	uint64_t w;

	if (s->slots_cell < 0)
		return SLUICE_EINVAL;
	int rc = check_key(key, key_len);
	if (rc != SLUICE_OK)
		return rc;
	uint64_t i = sluice__shm_lookup(s, sluice__shm_key_repr(s->secret, key, key_len, &k), &k, &w);
	if (i == UINT64_MAX)
		return SLUICE_ENOTFOUND;
	/* An entry holding our slot is never idle, so it is live; a handle of
	 * an older generation carries another tag: ESTALE by the cell. */
	return sluice_slots_release(cell_of(s, i, (uint32_t)s->slots_cell), &s->limits[s->slots_cell].slots,
				    handle);
}

static int shm_admit_batch(void *be, const struct sluice_limiter_request *reqs, size_t n, uint64_t now_ns,
			   struct sluice_decision *out)
{
	struct shm_store *s = be;
	if (n > 0 && (reqs == NULL || out == NULL))
		return SLUICE_EINVAL;
	for (size_t j = 0; j < n; j++) {
		if (reqs[j].cost > 0 && s->slots_cell >= 0)
			return SLUICE_EINVAL;
		int rc = check_key(reqs[j].key, reqs[j].key_len);
		if (rc != SLUICE_OK)
			return rc;
	}
	for (size_t j = 0; j < n; j++)
		admit_key(s, reqs[j].key, reqs[j].key_len, reqs[j].cost, now_ns, &out[j], NULL);
	return SLUICE_OK;
}

static int shm_sweep(void *be, uint64_t now_ns, size_t budget, size_t *reclaimed)
{
	struct shm_store *s = be;
	uint64_t units = claim_now();
	size_t n = 0;

	if (budget > s->nslots)
		budget = (size_t)s->nslots;
	/* relaxed: sweeps share the cursor only to spread their work; any
	 * value is a valid starting slot. */
	uint64_t at = atomic_fetch_add_explicit(&s->reg->cursor, budget, memory_order_relaxed) % s->nslots; /* relaxed: why above */
	for (size_t j = 0; j < budget; j++) {
		n += sluice__shm_reclaim_slot(s, at, now_ns, units);
		at = at + 1 == s->nslots ? 0 : at + 1;
	}
	if (reclaimed != NULL)
		*reclaimed = n;
	return SLUICE_OK;
}

static int shm_stats(const void *be, struct sluice_limiter_stats *out)
{
	const struct shm_store *s = be;
	uint64_t c[SHM_ST_COUNT] = { 0 };

	for (uint32_t j = 0; j < SHM_STRIPES; j++)
		for (int x = 0; x < SHM_ST_COUNT; x++)
			/* relaxed: a recent sum (sluice_limiter_stats()). */
			c[x] += atomic_load_explicit(&s->stripes[j].c[x], memory_order_relaxed); /* relaxed: why above */
	out->admitted = c[SHM_ST_ADMITTED];
	out->denied = c[SHM_ST_DENIED];
	out->degraded = c[SHM_ST_DEGRADED];
	out->inserted = c[SHM_ST_INSERTED];
	out->reclaimed = c[SHM_ST_RECLAIMED];
	out->live_keys = c[SHM_ST_INSERTED] - c[SHM_ST_RECLAIMED];
	out->bytes = out->live_keys * (s->body_bytes + 8);
	return SLUICE_OK;
}

static void shm_destroy(void *be)
{
	free(be);
}

static int shm_reserve(void *be, const void *key, size_t key_len, uint64_t cost, uint64_t now_ns,
		       struct sluice_decision *out, struct sluice__limiter_hold *hold)
{
	return admit_key(be, key, key_len, cost, now_ns, out, hold) == V_DEGRADED ? 1 : 0;
}

/* Undo a hold on slot i if it is still the generation that took it (a
 * reclaimed entry held nothing: it was idle). */
static void shm_cancel(void *be, const struct sluice__limiter_hold *hold)
{
	const struct shm_store *s = be;

	if (hold->entry == NULL)
		return;
	uint64_t i = SLOT_OF(hold->entry);
	/* acquire: the body of the generation we hold is the one we cancel on. */
	if (atomic_load_explicit(&s->states[i], memory_order_acquire) != hold->hash) /* acquire: why above */
		return;
	/* Cell 0 is cancelled only when it is the entry's only cell: beside
	 * other cells it keeps its consumption (sluice__limiter_cancel()). */
	if (s->ncells == 1)
		s->ops[0]->cancel(cell_of(s, i, 0), &s->limits[0], &hold->r[0]);
	else
		cancel_cells(s, i, s->ncells - 1, hold->r);
}

static bool shm_check(void *be, const void *key, size_t key_len, uint64_t cost, uint64_t now_ns,
		      struct sluice_decision *out)
{
	const struct shm_store *s = be;
	struct krepr k;
	uint64_t hash = sluice__shm_key_repr(s->secret, key, key_len, &k), w;

	for (;;) {
		uint64_t i = sluice__shm_lookup(s, hash, &k, &w);
		bool ok;
		if (i == UINT64_MAX) {
			/* Unknown key: full, so it admits cost iff cost fits the
			 * whole capacity (a slot: one per request); more never
			 * fits (sluice__limiter_check()). */
			const struct sluice_limit *l = &s->limits[s->lc];
			s->ops[s->lc]->fresh(l, now_ns, out);
			uint64_t need = l->kind == SLUICE_LIMIT_SLOTS ? cost != 0 : cost;
			ok = need <= out->remaining;
			if (!ok) {
				out->allowed = false;
				out->reason = SLUICE_REASON_NEVER;
				out->retry_after_ns = SLUICE_NEVER;
			}
		} else {
			void *c = cell_of(s, i, s->lc);
			ok = s->ops[s->lc]->check(c, &s->limits[s->lc], now_ns, cost, out);
			if (!still(s, i, w))
				continue;
		}
		out->limit_index = 0;
		return ok;
	}
}

static int shm_release_entry(void *be, uint64_t hash, const void *entry, sluice_slot_handle handle)
{
	const struct shm_store *s = be;

	if (s->slots_cell < 0)
		return SLUICE_EINVAL;
	if (entry == NULL)
		return SLUICE_ESTALE;
	uint64_t i = SLOT_OF(entry);
	if (i >= s->nslots)
		return SLUICE_ESTALE;
	/* acquire: the generation that took the slot; another generation's
	 * cell would refuse the handle by its tag anyway. */
	if (atomic_load_explicit(&s->states[i], memory_order_acquire) != hash) /* acquire: why above */
		return SLUICE_ESTALE;
	return sluice_slots_release(cell_of(s, i, (uint32_t)s->slots_cell), &s->limits[s->slots_cell].slots,
				    handle);
}

/* sluice__limiter_cancel_is_exact() for this entry shape. */
static bool shm_cancel_is_exact(const void *be)
{
	const struct shm_store *s = be;

	if (s->ncells == 1)
		return s->ops[0]->cancel_exact;
	if (s->user_index[0] != UINT32_MAX)
		return false; /* cell 0 keeps its consumption */
	for (uint32_t c = 1; c < s->ncells; c++)
		if (!s->ops[c]->cancel_exact)
			return false;
	return true;
}

static void shm_foreach(void *be, uint64_t now_ns,
			void (*fn)(void *user, const void *key, size_t key_len, const struct sluice_decision *d),
			void *user)
{
	const struct shm_store *s = be;

	for (uint64_t i = 0; i < s->nslots; i++) {
		/* acquire: a LIVE word's body is visible. */
		uint64_t w = atomic_load_explicit(&s->states[i], memory_order_acquire); /* acquire: why above */
		if (st_of(w) != ST_LIVE)
			continue;
		struct krepr k;
		struct sluice_decision d;
		/* relaxed: validated by still() below. */
		k.meta = atomic_load_explicit(body_word(s, i, 0), memory_order_relaxed); /* relaxed: why above */
		for (uint32_t j = 0; j < SHM_KEY_WORDS; j++)
			/* relaxed: as above. */
			k.w[j] = atomic_load_explicit(body_word(s, i, 8 + 8 * j), memory_order_relaxed); /* relaxed: as above */
		if (s->ops[0]->is_tomb(s->ops[0]->word(cell_of(s, i, 0))))
			continue;
		s->ops[s->lc]->check(cell_of(s, i, s->lc), &s->limits[s->lc], now_ns, 0, &d);
		if (!still(s, i, w))
			continue;
		d.allowed = true;
		d.limit_index = 0;
		/* A long key is reported as its 16-byte digest. */
		size_t len = (k.meta & SHM_META_DIGEST) ? 16 : (size_t)(k.meta & 0xffff);
		unsigned char b[SLUICE_SHM_KEY_INLINE];
		memcpy(b, k.w, sizeof b);
		fn(user, b, len, &d);
	}
}

static const struct sluice__limiter_ops shm_ops = {
	.admit = shm_admit,
	.acquire = shm_acquire,
	.release = shm_release,
	.admit_batch = shm_admit_batch,
	.sweep = shm_sweep,
	.stats = shm_stats,
	.destroy = shm_destroy,
	.reserve = shm_reserve,
	.cancel = shm_cancel,
	.check = shm_check,
	.release_entry = shm_release_entry,
	.cancel_is_exact = shm_cancel_is_exact,
	.foreach = shm_foreach,
};

int sluice__shm_cells(const struct sluice_limit *limits, uint32_t n, struct shm_cells *c)
{
	uint32_t nslots_limits = 0;

	if (limits == NULL || n == 0 || n > SLUICE_LIMITER_MAX_LIMITS)
		return SLUICE_EINVAL;
	for (uint32_t i = 0; i < n; i++) {
		const struct sluice__limit_ops *op = sluice__limit_ops_of(limits[i].kind);
		if (op == NULL || limits[i].kind == SLUICE__LIMIT_COMMIT || sluice__limit_validate(&limits[i]) != SLUICE_OK)
			return SLUICE_EINVAL;
		nslots_limits += limits[i].kind == SLUICE_LIMIT_SLOTS;
	}
	if (nslots_limits > 1)
		return SLUICE_EINVAL; /* one slots limit per policy, as in process */
	/* The in-process limiter's cell order (src/limiter/limiter.c, create;
	 * its comment gives the reasons). */
	memset(c, 0, sizeof *c);
	uint32_t first = n, first_gcra = n, k = 0;
	for (uint32_t i = 0; i < n; i++)
		if (limits[i].kind == SLUICE_LIMIT_GCRA) {
			if (first_gcra == n)
				first_gcra = i;
			if (first == n || limits[i].rate.tolerance_ns > limits[first].rate.tolerance_ns)
				first = i;
		}
	for (uint32_t i = 0; i < n && first == n; i++) {
		const struct sluice__limit_ops *op = sluice__limit_ops_of(limits[i].kind);
		if (op->commit_ok != NULL && op->commit_ok(&limits[i]))
			first = i;
	}
	if (first < n) {
		c->limits[k] = limits[first];
		c->user_index[k++] = first;
	} else {
		c->limits[k].kind = SLUICE__LIMIT_COMMIT;
		c->user_index[k++] = UINT32_MAX;
	}
	for (uint32_t i = 0; i < n; i++) {
		/* The in-process flags (a sliding log's among the exact
		 * cancels), so that the cells and the decisions are in the
		 * in-process order; here its cancel pops only (log.c), which
		 * leaves its units counted at worst. */
		if (i == first || !sluice__limit_ops_of(limits[i].kind)->cancel_exact)
			continue;
		c->limits[k] = limits[i];
		c->user_index[k++] = i;
	}
	for (uint32_t i = 0; i < n; i++) { /* the other GCRA limits, by depth */
		if (i == first || limits[i].kind != SLUICE_LIMIT_GCRA)
			continue;
		uint32_t at = k++;
		while (at > 0 && c->limits[at - 1].kind == SLUICE_LIMIT_GCRA && at - 1 > 0 &&
		       c->limits[at - 1].rate.tolerance_ns > limits[i].rate.tolerance_ns) {
			c->limits[at] = c->limits[at - 1];
			c->user_index[at] = c->user_index[at - 1];
			at--;
		}
		c->limits[at] = limits[i];
		c->user_index[at] = i;
	}
	for (uint32_t i = 0; i < k; i++)
		if (first_gcra < n && c->user_index[i] == first_gcra)
			c->check_order[c->ncheck++] = i;
	for (uint32_t u = 0; u < n; u++)
		for (uint32_t i = 0; i < k; i++)
			if (c->user_index[i] == u && u != first_gcra)
				c->check_order[c->ncheck++] = i;
	c->ncells = k;
	uint32_t off = 8 + SLUICE_SHM_KEY_INLINE;
	for (uint32_t i = 0; i < k; i++) {
		c->cell_off[i] = off;
		off += (uint32_t)sluice__shm_ops_of(c->limits[i].kind)->cell_size(&c->limits[i]);
	}
	c->body_bytes = off;
	if (off - c->cell_off[0] > SHM_CELLS_MAX)
		return SLUICE_ETOOBIG;
	return SLUICE_OK;
}

void sluice__shm_store_init(struct shm_store *s, void *base, struct shm_region *r, const unsigned char *secret)
{
	unsigned char *b = base;
	struct shm_cells c;

	memset(s, 0, sizeof *s);
	s->states = (_Atomic uint64_t *)(void *)(b + r->states_off);
	s->bodies = b + r->bodies_off;
	s->stripes = (struct shm_stripe *)(void *)(b + r->stats_off);
	s->reg = r;
	s->secret = secret;
	s->nslots = r->nslots;
	s->window = r->nslots < 2 * SHM_WINDOW ? (uint32_t)r->nslots : 2 * SHM_WINDOW;
	s->body_bytes = r->body_bytes;
	/* The descriptor was checked against this layout when the zone was
	 * opened (zone.c) or made (init). */
	(void)sluice__shm_cells(r->spec, r->nlimits, &c);
	s->ncells = c.ncells;
	s->ncheck = c.ncheck;
	s->slots_cell = -1;
	for (uint32_t i = 0; i < c.ncells; i++) {
		s->cell_off[i] = c.cell_off[i];
		s->user_index[i] = c.user_index[i];
		s->check_order[i] = c.check_order[i];
		s->limits[i] = c.limits[i];
		s->ops[i] = sluice__shm_ops_of(c.limits[i].kind);
		if (c.limits[i].kind == SLUICE_LIMIT_SLOTS)
			s->slots_cell = (int32_t)i;
		if (c.user_index[i] == 0)
			s->lc = i;
	}
	s->one_gcra = c.ncells == 1 && c.limits[0].kind == SLUICE_LIMIT_GCRA;
}

int sluice__shm_limiter_open(struct sluice_limiter **out, void *base, struct shm_region *r, uint32_t fail_mode)
{
	const struct shm_header *h = base;
	struct shm_store *s = malloc(sizeof *s);
	if (s == NULL)
		return SLUICE_ENOMEM;
	sluice__shm_store_init(s, base, r, h->secret);
	s->fail_mode = fail_mode;
	return sluice__limiter_create_backend(out, &shm_ops, s);
}

int sluice__shm_census(struct sluice_limiter *lim, uint64_t *free_slots, uint64_t *claimed, uint64_t *live)
{
	const struct shm_store *s = sluice__limiter_backend(lim, &shm_ops);
	if (s == NULL)
		return SLUICE_EINVAL;
	*free_slots = *claimed = *live = 0;
	for (uint64_t i = 0; i < s->nslots; i++) {
		/* relaxed: a census, each word read once. */
		uint64_t w = atomic_load_explicit(&s->states[i], memory_order_relaxed); /* relaxed: why above */
		*(st_of(w) == ST_FREE ? free_slots : st_of(w) == ST_CLAIMED ? claimed : live) += 1;
	}
	return SLUICE_OK;
}
