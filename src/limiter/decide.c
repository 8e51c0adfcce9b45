/*
 * decide.c - the keyed limiter's decisions: one key's admission,
 * all-or-nothing over the limits of its entry, and the entry points that
 * make one (admit, peek, acquire, release, admit_batch, and the engine's
 * reserve, cancel and check; docs/limiter.md, "All-or-nothing", "Hot
 * path").
 *
 * All-or-nothing. A request first checks every cell without writing (a dry
 * run); if any denies, nothing is written. Otherwise it commits cells
 * 1..k-1 with receipts - those whose cancel is exact first, GCRA limits
 * last - then, after a release fence, cell 0. If a commit denies (another
 * thread got there first) the receipts already taken are cancelled. The
 * counting kinds' cancels (counter, calendar, sliding log, slots) are exact
 * whatever landed since: they remove exactly the units the receipt added
 * (their operations commute; window_internal.h), so a refused request
 * consumes nothing there. A GCRA cancel pops its admission only if nothing
 * landed since, else the consumption stays (a refill that a full bucket
 * wasted cannot be returned); the commit order (limiter.c, create) makes
 * that case need two GCRA limits in one policy and a race between the dry
 * run and the commit (docs/limiter.md, "Refused requests"). So every cell
 * always holds at least the exact result of its non-cancelled operations
 * and never less: no cell ever admits more than its own limit allows.
 *
 * Cell 0 last. The release fence before the cell-0 commit is the
 * admitters' half of the reclaim protocol (sweep.c, "Reclaim"): a sweeper
 * that reads our cell-0 commit also sees our other cells. An admission that
 * finds its entry tombstoned (V_DEAD) helps unlink it and retries the
 * lookup, which inserts a fresh entry (table.c).
 *
 * The hot path. One GCRA limit on an existing, live key - the common
 * policy - is inlined into each entry point (admit_locked(), decide_gcra1():
 * one lookup and one CAS, no call through the ops table); everything else
 * goes out of line to admit_slow(). sluice_limiter_admit() has a narrower
 * fast path still (a live key of at most 16 bytes, probed in the inline
 * array with its shape as constants, a registered thread, cost > 0) that
 * leaves every other case to admit_general() before writing anything. An
 * entry met in the middle of a move into its inline slot (V_MOVED) is
 * finished and looked up again (table.c, "Moving in"). tests/test_limiter_hotpath.c
 * and test_limiter_fastpath.c check both against standalone cells,
 * bench/bench_limiter.c counts their instructions.
 */
#include <sluice/limiter.h>

#include <stdatomic.h>
#include <string.h>

#include "cells/gcra_internal.h"
#include "common/govern_internal.h"
#include "limiter/store_internal.h"

/* ---- decisions ---- */

/* V_MOVED: the entry's cell was frozen by a move into an inline slot
 * (table.c, "Moving in"): finish the move, look the key up again. */
enum verdict { V_DENY, V_ADMIT, V_DEAD, V_DEGRADED, V_MOVED };

/* The verdict on an entry whose cell-0 GCRA word w is a tombstone value.
 * In an inline-keys limiter TOMB_UNLINKED on an entry still found linked is
 * a move (table.c): a reclaimed entry is unlinked before it is marked so,
 * and a lookup that found it anyway just finds nothing to finish. */
static inline enum verdict gone(const struct sluice_limiter *lim, uint64_t w)
{
	return lim->inline_keys && w == SLUICE__GCRA_TOMB_UNLINKED ? V_MOVED : V_DEAD;
}

/* The cell holding the caller's limit 0. */
static uint32_t first_user_cell(const struct sluice_limiter *lim)
{
	for (uint32_t i = 0; i < lim->nlimits; i++)
		if (lim->user_index[i] == 0)
			return i;
	return 0;
}

static void fill_degraded(const struct sluice_limiter *lim, struct sluice_decision *out)
{
	bool open = lim->fail_mode == SLUICE_FAIL_OPEN;
	struct sluice_decision fresh;
	uint32_t c = first_user_cell(lim);

	lim->ops[c]->fresh(&lim->limits[c], 0, &fresh);
	memset(out, 0, sizeof *out);
	out->allowed = open;
	out->degraded = true;
	out->reason = open ? SLUICE_REASON_NONE : SLUICE_REASON_CAPACITY;
	out->limit = fresh.limit;
}

/* The governing limit among admitted decisions, by the one rule
 * (common/govern_internal.h) ranked by cell order (the first GCRA limit,
 * then the others in the caller's order: the Redis backend decides in the
 * same order); the COMMIT word never governs. limit_index is the caller's
 * index. */
static void govern(const struct sluice_limiter *lim, struct sluice_decision *d, uint32_t n,
		   struct sluice_decision *out)
{
	uint32_t best = UINT32_MAX, best_rank = UINT32_MAX;

	(void)n;
	/* Ranked by position in check_order (the first GCRA limit, then the
	 * caller's order), whatever the commit order; the COMMIT word is not in
	 * check_order. */
	for (uint32_t c = 0; c < lim->ncheck; c++) {
		uint32_t i = lim->check_order[c];
		if (best == UINT32_MAX || sluice__decision_governs(&d[i], c, &d[best], best_rank)) {
			best = i;
			best_rank = c;
		}
	}
	*out = d[best];
	out->limit_index = lim->user_index[best];
}

static inline void deny_with(const struct sluice_limiter *lim, struct sluice_decision d, uint32_t i,
			     struct sluice_decision *out)
{
	*out = d;
	out->limit_index = lim->user_index[i];
}

/* The one-limit policy, whose cell 0 is always a GCRA cell (a policy
 * without a GCRA limit gets the COMMIT word as well, so k >= 2): the
 * admission is one CAS, already all-or-nothing, so there is no dry run and no
 * separate commit. The GCRA code is inlined (gcra_internal.h) rather than
 * reached through the ops table: this is the hot path of the common policy. */
static inline enum verdict decide_gcra1(struct sluice_limiter *lim, struct entry *e, uint64_t cost,
					uint64_t now_ns, struct sluice_decision *out,
					struct sluice__limiter_hold *hold)
{
	struct sluice_gcra *cell = cell_of(lim, e, 0);
	const struct sluice_rate *rate = &lim->limits[0].rate;

	if (cost == 0) {
		uint64_t w = sluice__gcra_word(cell);
		if (sluice__gcra_is_tomb(w))
			return gone(lim, w);
		sluice__gcra_check_word(w, rate, now_ns, 0, out);
		return V_ADMIT;
	}
	if (hold == NULL) {
		if (SLUICE_LIKELY(sluice__gcra_admit(cell, rate, now_ns, cost, out, NULL)))
			return V_ADMIT;
	} else {
		struct sluice_gcra_receipt r;
		if (sluice__gcra_admit(cell, rate, now_ns, cost, out, &r)) {
			hold->r[0].w[0] = r.before;
			hold->r[0].w[1] = r.after;
			hold->entry = e;
			return V_ADMIT;
		}
	}
	/* A denial on a tombstone word: the entry died, or moved. */
	uint64_t w = sluice__gcra_word(cell);
	if (sluice__gcra_is_tomb(w))
		return gone(lim, w);
	return V_DENY;
}

/* A one-cell entry of another kind (a one-word window, cell 0 itself): one
 * admission through the ops table, already all-or-nothing. */
static enum verdict decide_one(struct sluice_limiter *lim, struct entry *e, uint64_t cost,
			       uint64_t now_ns, struct sluice_decision *out,
			       struct sluice__limiter_hold *hold)
{
	const struct sluice__limit_ops *op0 = lim->ops[0];
	void *c0 = cell_of(lim, e, 0);

	if (cost == 0) {
		uint64_t w = op0->word(c0);
		if (op0->is_tomb(w))
			return V_DEAD;
		op0->check_word(w, &lim->limits[0], now_ns, 0, out);
		return V_ADMIT;
	}
	if (op0->admit(c0, &lim->limits[0], now_ns, cost, out, hold != NULL ? &hold->r[0] : NULL)) {
		if (hold != NULL)
			hold->entry = e;
		return V_ADMIT;
	}
	if (op0->is_tomb(op0->word(c0)))
		return V_DEAD;
	return V_DENY;
}

/* Tests: called after each commit of cells 1..k-1 (limiter_internal.h). */
static void (*_Atomic commit_hook)(void *user, uint32_t limit_index);
static void *_Atomic commit_hook_user;

void sluice__limiter_set_commit_hook(void (*fn)(void *user, uint32_t limit_index), void *user)
{
	/* relaxed: set by a test before the admissions it observes, on their
	 * own thread or before starting them. */
	atomic_store_explicit(&commit_hook_user, user, memory_order_relaxed); /* relaxed: why above */
	atomic_store_explicit(&commit_hook, fn, memory_order_relaxed); /* relaxed: why above */
}

/* The dry run of every cell on the entry's current state, nothing written:
 * cell 0 judged on w0, the word tested for a tombstone. Fills d[] and, on a
 * denial, *out with the first denier (check_order). */
static bool dry_run(const struct sluice_limiter *lim, struct entry *e, uint64_t w0, uint64_t cost,
		    uint64_t now_ns, struct sluice_decision *d, struct sluice_decision *out)
{
	for (uint32_t n = 0; n < lim->ncheck; n++) {
		uint32_t i = lim->check_order[n];
		bool ok = i == 0 ? lim->ops[0]->check_word(w0, &lim->limits[0], now_ns, cost, &d[0])
				 : lim->ops[i]->check(cell_of(lim, e, i), &lim->limits[i], now_ns, cost,
						      &d[i]);
		if (!ok) {
			deny_with(lim, d[i], i, out);
			return false;
		}
	}
	if (lim->user_index[0] == UINT32_MAX) /* the COMMIT word: never denies a live entry */
		lim->ops[0]->check_word(w0, &lim->limits[0], now_ns, cost, &d[0]);
	return true;
}

/* Decide for an entry found in the table (inside a read-side section).
 * hold (may be NULL): on admission, receives the entry and a receipt of
 * every cell (cell 0 included) so that sluice__limiter_cancel() can undo it;
 * its slot handle is that of the SLOTS cell, if any. */
static enum verdict entry_decide(struct sluice_limiter *lim, struct entry *e, uint64_t cost,
				 uint64_t now_ns, struct sluice_decision *out,
				 struct sluice__limiter_hold *hold)
{
	const struct sluice__limit_ops *op0 = lim->ops[0];
	void *c0 = cell_of(lim, e, 0);
	uint32_t k = lim->nlimits;

	if (k == 1)
		return lim->one_gcra ? decide_gcra1(lim, e, cost, now_ns, out, hold)
				     : decide_one(lim, e, cost, now_ns, out, hold);

	struct sluice_decision d[NCELLS];
	struct sluice__receipt local[NCELLS];
	struct sluice__receipt *rc = hold != NULL ? hold->r : local;

	/* Dry run of every cell; cell 0 judged on the very word we tested for a
	 * tombstone. */
	uint64_t w0 = op0->word(c0);
	if (op0->is_tomb(w0))
		return V_DEAD;
	if (!dry_run(lim, e, w0, cost, now_ns, d, out))
		return V_DENY;
	if (cost == 0) {
		govern(lim, d, k, out);
		return V_ADMIT;
	}

	/* Commit 1..k-1 with receipts, then cell 0. */
	for (uint32_t i = 1; i < k; i++) {
		if (!lim->ops[i]->admit(cell_of(lim, e, i), &lim->limits[i], now_ns, cost, &d[i],
					&rc[i])) {
			for (uint32_t j = i - 1; j >= 1; j--)
				lim->ops[j]->cancel(cell_of(lim, e, j), &lim->limits[j], &rc[j]);
			if (op0->is_tomb(op0->word(c0)))
				return V_DEAD;
			deny_with(lim, d[i], i, out);
			return V_DENY;
		}
		/* relaxed: see sluice__limiter_set_commit_hook(). */
		void (*hook)(void *, uint32_t) = atomic_load_explicit(&commit_hook, memory_order_relaxed); /* relaxed: why above */
		if (SLUICE_UNLIKELY(hook != NULL))
			hook(atomic_load_explicit(&commit_hook_user, memory_order_relaxed), /* relaxed: as above */
			     lim->user_index[i]);
	}
	/* release: our commits to cells 1..k-1 happen-before any sweeper whose
	 * acquire fence follows a load of cell 0 that reads our commit below or
	 * a later read-modify-write of cell 0 (sweep.c, "Reclaim"). */
	atomic_thread_fence(memory_order_release); /* release: why above */
	if (!op0->admit(c0, &lim->limits[0], now_ns, cost, &d[0], hold != NULL ? &rc[0] : NULL)) {
		for (uint32_t j = k - 1; j >= 1; j--)
			lim->ops[j]->cancel(cell_of(lim, e, j), &lim->limits[j], &rc[j]);
		if (op0->is_tomb(op0->word(c0)))
			return V_DEAD;
		deny_with(lim, d[0], 0, out);
		return V_DENY;
	}
	govern(lim, d, k, out);
	if (hold != NULL) {
		hold->entry = e;
	} else if (lim->slots_cell > 0) {
		/* Only reached through acquire, which passes a hold. */
		lim->ops[lim->slots_cell]->cancel(cell_of(lim, e, (uint32_t)lim->slots_cell),
						  &lim->limits[lim->slots_cell], &rc[lim->slots_cell]);
	}
	return V_ADMIT;
}

/* An unknown key under a peek: every limit full. */
static void decide_fresh_peek(const struct sluice_limiter *lim, uint64_t now_ns,
			      struct sluice_decision *out)
{
	struct sluice_decision d[NCELLS];

	for (uint32_t i = 0; i < lim->nlimits; i++)
		lim->ops[i]->fresh(&lim->limits[i], now_ns, &d[i]);
	govern(lim, d, lim->nlimits, out);
}

/* A tombstoned entry: help remove it. If our del unlinked it, say so to the
 * sweeper, which owns the free. */
static void help_unlink(struct sluice_limiter *lim, struct entry *e)
{
	if (sluice__limiter_unlink(lim, e, sluice__limiter_entry_hash(lim, e)) == SLUICE_OK)
		lim->ops[0]->mark_unlinked(cell_of(lim, e, 0));
}

/* lookup_any(), out of line: admit_slow()'s retries. */
static __attribute__((noinline)) struct entry *lookup_call(const struct sluice_limiter *lim,
							   unsigned long hash,
							   const struct lookup_key *k)
{
	return lookup_any(lim, hash, k);
}

/* The whole admission of one key, inside a read-side section: everything
 * but the common case (admit_locked() below), out of line. e: the entry
 * found, or NULL; looked_up: a NULL e is the answer of a lookup just made
 * (so a new key is not looked up twice before its insert). */
static __attribute__((noinline)) enum verdict
admit_slow(struct sluice_limiter *lim, unsigned long hash, const struct lookup_key *k,
	   struct entry *e, bool looked_up, uint64_t cost, uint64_t now_ns,
	   struct sluice_decision *out, struct sluice__limiter_hold *hold)
{
	for (;;) {
		if (e == NULL && !looked_up)
			e = lookup_call(lim, hash, k);
		looked_up = false;
		if (e == NULL) {
			if (cost == 0) {
				decide_fresh_peek(lim, now_ns, out);
				return V_ADMIT;
			}
			e = sluice__limiter_insert(lim, hash, k);
			if (e == NULL) {
				fill_degraded(lim, out);
				return V_DEGRADED;
			}
		}
		enum verdict v = lim->one_gcra ? decide_gcra1(lim, e, cost, now_ns, out, hold)
					       : entry_decide(lim, e, cost, now_ns, out, hold);
		if (v == V_MOVED)
			sluice__limiter_finish_move(lim, hash, e);
		else if (v == V_DEAD)
			help_unlink(lim, e);
		else
			return v;
		e = NULL;
	}
}

/* The whole admission of one key, inside a read-side section. The common
 * case - the key exists, one GCRA limit, the entry is alive - is inlined into
 * each caller; new keys, dead entries and every other policy (a one-word
 * window alone: decide_one()) go to admit_slow(). */
static inline __attribute__((always_inline)) enum verdict
admit_locked(struct sluice_limiter *lim, unsigned long hash, const struct lookup_key *k,
	     struct entry *e, uint64_t cost, uint64_t now_ns, struct sluice_decision *out,
	     struct sluice__limiter_hold *hold)
{
	if (e == NULL)
		e = lookup_any(lim, hash, k);
	if (SLUICE_LIKELY(e != NULL && lim->one_gcra)) {
		enum verdict v = decide_gcra1(lim, e, cost, now_ns, out, hold);
		if (SLUICE_LIKELY(v == V_ADMIT || v == V_DENY))
			return v;
		if (v == V_MOVED)
			sluice__limiter_finish_move(lim, hash, e);
		else
			help_unlink(lim, e);
		return admit_slow(lim, hash, k, NULL, false, cost, now_ns, out, hold);
	}
	return admit_slow(lim, hash, k, e, true, cost, now_ns, out, hold);
}

/* The statistic of each verdict that reaches count() (never V_DEAD). */
static const unsigned char stat_of_verdict[] = {
	[V_DENY] = ST_DENIED,
	[V_ADMIT] = ST_ADMITTED,
	[V_DEAD] = ST_DEGRADED, /* unused */
	[V_DEGRADED] = ST_DEGRADED,
	[V_MOVED] = ST_DEGRADED, /* unused */
};

static inline void count(struct sluice_limiter *lim, enum verdict v, uint64_t cost)
{
	if (cost == 0)
		return; /* peeks are not admissions */
	stat_add(lim, sluice__limiter_tls.slot, stat_of_verdict[v], 1);
}

static inline int check_key(const void *key, size_t key_len)
{
	return key == NULL || key_len > SLUICE_LIMITER_MAX_KEY ? SLUICE_EKEY : SLUICE_OK;
}

/* sluice_limiter_admit() for every case its fast path leaves out: a
 * peek, another store, a policy of other limits, an unregistered thread,
 * bad arguments. */
static __attribute__((noinline)) int admit_general(struct sluice_limiter *lim, const void *key,
						   size_t key_len, uint64_t cost, uint64_t now_ns,
						   struct sluice_decision *out)
{
	if (SLUICE_UNLIKELY(lim != NULL && lim->store != NULL))
		return out == NULL ? SLUICE_EINVAL : lim->store->admit(lim->backend, key, key_len, cost, now_ns, out);
	if (lim == NULL || out == NULL || (cost > 0 && lim->slots_cell >= 0))
		return SLUICE_EINVAL;
	int rc = check_key(key, key_len);
	if (rc != SLUICE_OK)
		return rc;
	rc = thread_enter(lim);
	if (rc != SLUICE_OK)
		return rc;

	struct lookup_key k = { lim, key, key_len };
	unsigned long hash = hash_key(lim, key, key_len);
	rcu_read_lock();
	enum verdict v = admit_locked(lim, hash, &k, NULL, cost, now_ns, out, NULL);
	read_unlock(lim);
	if (cost == 0)
		out->allowed = true;
	count(lim, v, cost);
	return SLUICE_OK;
}

/* admit_general() for a caller inside a read-side section: leave it first.
 * Out of line, so that the fast path below reaches it by a tail call. */
static __attribute__((noinline)) int admit_unlock_general(struct sluice_limiter *lim, const void *key,
							  size_t key_len, uint64_t cost,
							  uint64_t now_ns,
							  struct sluice_decision *out)
{
	read_unlock(lim);
	return admit_general(lim, key, key_len, cost, now_ns, out);
}

/* The fast path: a request (cost > 0) of a registered thread under the
 * one-GCRA policy (an inline-keys limiter), for a live key of at most
 * INLINE_KEY_MAX bytes. one_gcra implies this file's store (a backend's
 * limiter has it false) and no SLOTS limit, so the checks admit_general()
 * makes one by one reduce to these. The entry's cell is at its address
 * (store_internal.h), whether inline or allocated apart. Every other case -
 * and a new key, a dead entry or one being moved - leaves the read-side
 * section having written nothing (the GCRA admission writes only on
 * admission) and starts over in admit_general().
 *
 * Every way out before the end is a tail call, and the statistic is
 * counted before the read-side section ends, so that nothing but the
 * return value is live across urcu's rare futex wake-up in the unlock.
 * (gcc still keeps the six arguments in callee-saved registers for the
 * ways out: 22 instructions of the admit; keeping them in the frame
 * instead measured 8 more.) */
int sluice_limiter_admit(struct sluice_limiter *lim, const void *key, size_t key_len, uint64_t cost,
			 uint64_t now_ns, struct sluice_decision *out)
{
	if (SLUICE_UNLIKELY(lim == NULL || !lim->one_gcra || cost == 0 || out == NULL || key == NULL ||
			    key_len > INLINE_KEY_MAX || thread_enter_fast(lim) != SLUICE_OK))
		return admit_general(lim, key, key_len, cost, now_ns, out);

	unsigned long hash = (unsigned long)(XXH3_len_0to16_64b((const xxh_u8 *)key, key_len, lim->secret, 0) &
					     lim->hash_mask);
	rcu_read_lock();
	struct entry *e = lookup_inline(lim, hash, key, key_len);
	if (SLUICE_UNLIKELY(e == NULL))
		return admit_unlock_general(lim, key, key_len, cost, now_ns, out);
	struct sluice_gcra *cell = (struct sluice_gcra *)(void *)e;
	int which = ST_ADMITTED;
	if (SLUICE_UNLIKELY(!sluice__gcra_admit(cell, &lim->limits[0].rate, now_ns, cost, out, NULL))) {
		if (sluice__gcra_is_tomb(sluice__gcra_word(cell)))
			return admit_unlock_general(lim, key, key_len, cost, now_ns, out);
		which = ST_DENIED;
	}
	stat_add(lim, sluice__limiter_tls.slot, which, 1);
	read_unlock(lim);
	return SLUICE_OK;
}

int sluice_limiter_peek(struct sluice_limiter *lim, const void *key, size_t key_len,
			uint64_t now_ns, struct sluice_decision *out)
{
	return sluice_limiter_admit(lim, key, key_len, 0, now_ns, out);
}

int sluice_limiter_acquire(struct sluice_limiter *lim, const void *key, size_t key_len,
			   uint64_t cost, uint64_t now_ns, struct sluice_decision *out,
			   sluice_slot_handle *handle)
{
	if (handle != NULL)
		*handle = SLUICE_SLOT_NONE;
	if (lim == NULL || out == NULL || handle == NULL)
		return SLUICE_EINVAL;
	if (lim->store != NULL)
		return lim->store->acquire(lim->backend, key, key_len, cost, now_ns, out, handle);
	int rc = check_key(key, key_len);
	if (rc != SLUICE_OK)
		return rc;
	rc = thread_enter(lim);
	if (rc != SLUICE_OK)
		return rc;

	struct lookup_key k = { lim, key, key_len };
	struct sluice__limiter_hold hold;
	unsigned long hash = hash_key(lim, key, key_len);
	hold.entry = NULL;
	rcu_read_lock();
	enum verdict v = admit_locked(lim, hash, &k, NULL, cost, now_ns, out, &hold);
	read_unlock(lim);
	if (cost == 0)
		out->allowed = true;
	else if (v == V_ADMIT && lim->slots_cell >= 0)
		*handle = hold.r[lim->slots_cell].w[0];
	count(lim, v, cost);
	return SLUICE_OK;
}

int sluice_limiter_release(struct sluice_limiter *lim, const void *key, size_t key_len,
			   sluice_slot_handle handle)
{
	if (lim != NULL && lim->store != NULL)
		return lim->store->release(lim->backend, key, key_len, handle);
	if (lim == NULL || lim->slots_cell < 0)
		return SLUICE_EINVAL;
	int rc = check_key(key, key_len);
	if (rc != SLUICE_OK)
		return rc;
	rc = thread_enter(lim);
	if (rc != SLUICE_OK)
		return rc;

	struct lookup_key k = { lim, key, key_len };
	uint32_t s = (uint32_t)lim->slots_cell;
	rcu_read_lock();
	struct entry *e = lookup(lim, hash_key(lim, key, key_len), &k);
	if (e == NULL)
		rc = SLUICE_ENOTFOUND;
	else
		/* An entry holding our slot is never idle, so it is live; a
		 * handle of a reclaimed entry carries the old cell's tag and is
		 * refused as ESTALE by the cell. */
		rc = sluice_slots_release(cell_of(lim, e, s), &lim->limits[s].slots, handle);
	read_unlock(lim);
	return rc;
}

/* ---- internal API for the policy engine (limiter_internal.h) ---- */

int sluice__limiter_reserve(struct sluice_limiter *lim, const void *key, size_t key_len,
			    const struct sluice__limiter_hint *hint, uint64_t cost, uint64_t now_ns,
			    struct sluice_decision *out, struct sluice__limiter_hold *hold)
{
	if (lim->store != NULL)
		return lim->store->reserve(lim->backend, key, key_len, cost, now_ns, out, hold);
	struct lookup_key k = { lim, key, key_len };
	unsigned long hash = hint != NULL ? (unsigned long)hint->hash : hash_key(lim, key, key_len);
	/* A hint's entry was found in this read-side section: still
	 * allocated; if it died since, the decision sees the tombstone and
	 * looks the key up again (admit_locked). */
	struct entry *e = hint != NULL ? hint->entry : NULL;

	hold->entry = NULL;
	hold->hash = hash;
	enum verdict v = admit_locked(lim, hash, &k, e, cost, now_ns, out, hold);
	if (cost == 0)
		out->allowed = true;
	count(lim, v, cost);
	if (v == V_ADMIT && cost > 0 && lim->slots_cell >= 0)
		hold->handle = hold->r[lim->slots_cell].w[0];
	else
		hold->handle = SLUICE_SLOT_NONE;
	return v == V_DEGRADED ? 1 : 0;
}

int sluice__limiter_release_entry(struct sluice_limiter *lim, uint64_t hash, const void *entry,
				  sluice_slot_handle handle)
{
	if (lim != NULL && lim->store != NULL)
		return lim->store->release_entry(lim->backend, hash, entry, handle);
	if (lim == NULL || lim->slots_cell < 0)
		return SLUICE_EINVAL;
	if (entry == NULL)
		return SLUICE_ESTALE;
	int rc = thread_enter(lim);
	if (rc != SLUICE_OK)
		return rc;
	uint32_t s = (uint32_t)lim->slots_cell;
	rcu_read_lock();
	/* Only the address is compared: an entry is read only once found
	 * linked in the index, inside this read-side section. */
	struct entry *e = lookup_address(lim, hash, entry);
	if (e == NULL)
		rc = SLUICE_ENOTFOUND;
	else
		rc = sluice_slots_release(cell_of(lim, e, s), &lim->limits[s].slots, handle);
	read_unlock(lim);
	return rc;
}

void sluice__limiter_cancel(struct sluice_limiter *lim, const struct sluice__limiter_hold *hold)
{
	struct entry *e = hold->entry;

	if (lim->store != NULL) {
		lim->store->cancel(lim->backend, hold);
		return;
	}
	if (e == NULL)
		return;
	/* Cell 0 is cancelled only when it is the entry's only cell. The
	 * sweeper tombstones cell 0 by a CAS from the word it judged idle, so
	 * beside other cells no write may bring that word back ("Reclaim"):
	 * restoring cell 0's older word lets a later admission write the judged
	 * value again (ABA), and the sweeper, which checked the other cells
	 * before that admission committed there, would reclaim its units. So
	 * there cell 0 keeps our consumption (sluice__limiter_cancel_is_exact()
	 * says so); the COMMIT word carries none. A one-cell entry holds
	 * nothing an ABA could hide: the word the sweeper judged idle is the
	 * whole state. (The engine's limiters have one limit each.) Each other
	 * cell's cancel is exact for the counting kinds, else pops our
	 * admission only if nothing landed since (limit_kind_internal.h). */
	uint32_t first = lim->nlimits > 1 ? 1 : 0;
	for (uint32_t j = lim->nlimits; j-- > first;)
		lim->ops[j]->cancel(cell_of(lim, e, j), &lim->limits[j], &hold->r[j]);
}

bool sluice__limiter_cancel_is_exact(const struct sluice_limiter *lim)
{
	if (lim->store != NULL)
		return lim->store->cancel_is_exact(lim->backend);
	if (lim->nlimits == 1)
		return lim->ops[0]->cancel_exact;
	if (lim->user_index[0] != UINT32_MAX)
		return false; /* cell 0 keeps its consumption (above) */
	for (uint32_t i = 1; i < lim->nlimits; i++)
		if (!lim->ops[i]->cancel_exact)
			return false;
	return true;
}

bool sluice__limiter_check(struct sluice_limiter *lim, const void *key, size_t key_len,
			   uint64_t cost, uint64_t now_ns, struct sluice_decision *out,
			   struct sluice__limiter_hint *hint)
{
	if (lim->store != NULL) {
		if (hint != NULL)
			hint->entry = NULL;
		return lim->store->check(lim->backend, key, key_len, cost, now_ns, out);
	}
	struct lookup_key k = { lim, key, key_len };
	struct sluice_decision d[NCELLS];
	unsigned long hash = hash_key(lim, key, key_len);
	struct entry *e = lookup_any(lim, hash, &k);
	uint64_t w0 = e == NULL ? 0
		    : lim->one_gcra ? sluice__gcra_word(cell_of(lim, e, 0))
				    : lim->ops[0]->word(cell_of(lim, e, 0));
	while (e != NULL && lim->inline_keys && w0 == SLUICE__GCRA_TOMB_UNLINKED) {
		/* Mid-move: judge the key's state where it moves to. */
		sluice__limiter_finish_move(lim, hash, e);
		e = lookup_any(lim, hash, &k);
		w0 = e == NULL ? 0 : sluice__gcra_word(cell_of(lim, e, 0));
	}

	if (hint != NULL) {
		hint->entry = e;
		hint->hash = hash;
	}
	if (lim->one_gcra && e != NULL && !sluice__gcra_is_tomb(w0)) {
		/* The one-GCRA policy: its cell's own dry run, inlined (the
		 * engine's read-only pass calls this for every bucket). */
		bool ok = sluice__gcra_check_word(w0, &lim->limits[0].rate, now_ns, cost, out);
		out->limit_index = 0;
		return ok;
	}
	if (e == NULL || lim->ops[0]->is_tomb(w0)) {
		/* Unknown (or dying) key: every cell full, so each admits cost iff
		 * it fits the whole capacity (a slot: one per request); more never
		 * fits (reason NEVER, as the admit would say). */
		for (uint32_t i = 0; i < lim->nlimits; i++) {
			lim->ops[i]->fresh(&lim->limits[i], now_ns, &d[i]);
			uint64_t need = lim->limits[i].kind == SLUICE_LIMIT_SLOTS ? cost != 0 : cost;
			if (lim->user_index[i] != UINT32_MAX && need > d[i].remaining) {
				deny_with(lim, d[i], i, out);
				out->allowed = false;
				out->reason = SLUICE_REASON_NEVER;
				out->retry_after_ns = SLUICE_NEVER;
				return false;
			}
		}
		govern(lim, d, lim->nlimits, out);
		return true;
	}
	if (!dry_run(lim, e, w0, cost, now_ns, d, out))
		return false;
	govern(lim, d, lim->nlimits, out);
	return true;
}

void sluice__limiter_foreach(struct sluice_limiter *lim, uint64_t now_ns,
			     void (*fn)(void *user, const void *key, size_t key_len,
					const struct sluice_decision *d),
			     void *user)
{
	if (lim->store != NULL) {
		if (lim->store->foreach != NULL)
			lim->store->foreach(lim->backend, now_ns, fn, user);
		return;
	}
	struct index *ix = index_of(lim);
	for (uint64_t pos = 0; pos < index_slots(ix); pos++) {
		_Atomic uint64_t *at = slot_word(ix, pos);
		struct sluice_decision d;
		struct entry *e;
		enum verdict v;
		/* acquire: pairs with the insert's CAS (table.c). A word met
		 * mid-move is read again once the move is published. */
		do {
			uint64_t w = atomic_load_explicit(at, memory_order_acquire); /* acquire: why above */
			e = slot_entry(at, w);
			if (e == NULL)
				break;
			v = entry_decide(lim, e, 0, now_ns, &d, NULL);
			if (v == V_MOVED)
				sluice__limiter_finish_move(lim, sluice__limiter_entry_hash(lim, e), e);
		} while (e != NULL && v == V_MOVED);
		if (e == NULL || v != V_ADMIT)
			continue; /* empty, or dead */
		fn(user, (const unsigned char *)e + lim->key_off, key_len_of(lim, e), &d);
	}
}

/* Requests looked up ahead of deciding, per group. */
#define BATCH_GROUP 16

int sluice_limiter_admit_batch(struct sluice_limiter *lim, const struct sluice_limiter_request *reqs,
			       size_t n, uint64_t now_ns, struct sluice_decision *out)
{
	if (lim == NULL || (n > 0 && (reqs == NULL || out == NULL)))
		return SLUICE_EINVAL;
	if (lim->store != NULL)
		return lim->store->admit_batch(lim->backend, reqs, n, now_ns, out);
	if (lim->slots_cell >= 0)
		for (size_t i = 0; i < n; i++)
			if (reqs[i].cost > 0)
				return SLUICE_EINVAL;
	for (size_t i = 0; i < n; i++)
		if (check_key(reqs[i].key, reqs[i].key_len) != SLUICE_OK)
			return SLUICE_EKEY;
	if (n == 0)
		return SLUICE_OK;
	int rc = thread_enter(lim);
	if (rc != SLUICE_OK)
		return rc;

	uint64_t counts[V_MOVED + 1] = { 0 };
	unsigned long hash[BATCH_GROUP];
	struct entry *found[BATCH_GROUP];

	for (size_t base = 0; base < n; base += BATCH_GROUP) {
		size_t g = SLUICE_MIN(n - base, (size_t)BATCH_GROUP);
		const struct sluice_limiter_request *r = reqs + base;

		/* One read-side section per group: entries found in phase 2 stay
		 * valid through phase 3, and a huge batch does not hold back
		 * grace periods. */
		rcu_read_lock();

		/* 1: hash everything (keys are in the caller's cache) and
		 * prefetch each key's home group: the misses overlap. */
		for (size_t j = 0; j < g; j++) {
			hash[j] = hash_key(lim, r[j].key, r[j].key_len);
			prefetch_group(lim, hash[j]);
		}
		/* 2: the entry each group's tag points to, prefetched, again
		 * all misses in flight at once (write intent: the commit will
		 * CAS cell 0; the key's last byte may be on the next line). An
		 * inline slot's entry is in the line already prefetched: an
		 * inline-keys limiter skips this pass. */
		for (size_t j = 0; j < g && !lim->inline_keys; j++) {
			struct entry *c = lookup_candidate(lim, hash[j]);
			if (c != NULL) {
				__builtin_prefetch(cell_of(lim, c, 0), 1, 3);
				__builtin_prefetch((const unsigned char *)c + lim->key_off + r[j].key_len - 1, 0, 3);
			}
		}
		/* 3: look up everything, now from the cache. */
		for (size_t j = 0; j < g; j++) {
			struct lookup_key k = { lim, r[j].key, r[j].key_len };
			found[j] = lookup_any(lim, hash[j], &k);
		}
		/* 4: decide in order. An entry found in phase 3 may have died
		 * or, for a repeated new key, appeared since: admit_locked()
		 * handles both. */
		for (size_t j = 0; j < g; j++) {
			struct lookup_key k = { lim, r[j].key, r[j].key_len };
			enum verdict v = admit_locked(lim, hash[j], &k, found[j], r[j].cost, now_ns,
						      &out[base + j], NULL);
			if (r[j].cost == 0)
				out[base + j].allowed = true;
			else
				counts[v]++;
		}
		read_unlock(lim);
	}
	if (counts[V_ADMIT])
		stat_add(lim, sluice__limiter_tls.slot, ST_ADMITTED, counts[V_ADMIT]);
	if (counts[V_DENY])
		stat_add(lim, sluice__limiter_tls.slot, ST_DENIED, counts[V_DENY]);
	if (counts[V_DEGRADED])
		stat_add(lim, sluice__limiter_tls.slot, ST_DEGRADED, counts[V_DEGRADED]);
	return SLUICE_OK;
}
