/*
 * table.c - the keyed limiter's table: the index of entries, hashing,
 * insertion, removal, resizing and the memory budget (docs/limiter.md,
 * "Table design", "Budget and fail modes").
 *
 * Entries. One allocation per key: one cell per limit of the policy (cell
 * 0 is the "commit cell": a GCRA limit, else a one-word counter or calendar
 * limit, else a hidden COMMIT word), the key length and the key bytes
 * (store_internal.h). Keys are hashed with XXH3 keyed by a per-limiter
 * random secret (limiter.c, fill_secret()).
 *
 * The index. An array of 64-byte groups of eight slot words, open
 * addressing with linear probing (store_internal.h gives the encoding): a
 * word holds an entry's address and a 15-bit tag of its hash, so a lookup
 * reads one line of words and compares the key of a tag match only
 * (a false match per slot is 2^-15 likely). Lookups take no lock and write
 * nothing; they run inside an RCU read-side section (urcu-memb), which
 * keeps the arrays and entries they may reach allocated.
 *
 * Why it is correct. (1) A slot word changes only EMPTY -> live (an
 * insert's CAS), live -> DELETED (an unlink's CAS) and any -> any|FROZEN
 * (a resize's fetch_or, after which it never changes): an EMPTY word never
 * comes back, so a probe that passed slot i saw there, and will see there,
 * something other than EMPTY. (2) An insert of key k walks k's probe
 * sequence and CASes the first EMPTY word it meets. Two inserters of k
 * meet the same first EMPTY word (by (1), everything before it is and
 * stays non-EMPTY, and holds no live k, or each would have found that
 * entry): one CAS wins, the other rereads the word, sees k and uses the
 * winner's entry, so both decisions count in one entry. (3) The insert's
 * CAS is a release of the entry's initialized cells and key, and every
 * probe loads words with acquire, so a found entry is complete. (4)
 * Inserts reserve a slot in `used` before claiming one and the reservation
 * fails at `limit` (3/4 of the slots), so EMPTY words remain and every
 * probe ends. (5) Removal CASes the entry's word to DELETED: one CAS
 * succeeds per array, so exactly one unlink returns 0 (the sweep's
 * protocol, sweep.c, needs that). (6) A resize, holding resize_lock, ORs
 * FROZEN into every word of the current array, copies the live words into
 * a fresh array (rehashing each key), publishes it with a release store,
 * and hands the old one to call_rcu: readers still in it see frozen words,
 * which they read like unfrozen ones, and the entries stay allocated. An
 * insert or unlink whose CAS meets a frozen word waits for resize_lock and
 * retries on the new array; whatever it saw before the freeze is in the new
 * array (a live word is copied, a DELETED or EMPTY one is not), so (2) and
 * (5) hold across a resize. A resize rebuilds at the size that puts the
 * live keys at 3/8 of the slots: doubling under growth, the same size or
 * smaller when DELETED words dominate (reclaimed keys give their slots
 * back). Inserts therefore take a lock only while a resize runs; lookups
 * never.
 *
 * The budget (max_keys, max_bytes) is charged before an insert and given
 * back when the entry is freed (after a grace period: sweep.c for a
 * reclaimed key; for an entry whose key moved into an inline slot, its
 * bytes only, free_moved_cb() or the sweep's batch): a relaxed
 * fetch_add with rollback, so two inserters near the limit may both fail
 * (each sees the other's transient charge) but never both pass beyond it.
 */
#include <stdlib.h>

#include "cells/gcra_internal.h"
#include "limiter/store_internal.h"

unsigned long sluice__limiter_initial_buckets(const struct sluice_limiter *lim)
{
	return lim->initial_buckets;
}

void sluice__limiter_set_hash_mask(struct sluice_limiter *lim, uint64_t mask)
{
	lim->hash_mask = mask;
}

uint64_t sluice__limiter_hash(const struct sluice_limiter *lim, const void *key, size_t key_len)
{
	return hash_key(lim, key, key_len);
}

/* Charge one key to the budget: its allocated entry of `size` bytes and
 * its share of the index. relaxed fetch_add with rollback: the counters
 * only bound memory, they order nothing; concurrent inserters near the
 * limit may each see the other's transient charge and fail (conservative),
 * never both pass beyond it. */
static bool charge(struct sluice_limiter *lim, size_t size)
{
	if (lim->max_keys != 0) {
		/* relaxed: see above. */
		if (atomic_fetch_add_explicit(&lim->nkeys, 1, memory_order_relaxed) >= lim->max_keys) { /* relaxed: why above */
			/* relaxed: rollback of our own increment. */
			atomic_fetch_sub_explicit(&lim->nkeys, 1, memory_order_relaxed); /* relaxed: why above */
			return false;
		}
	}
	if (lim->max_bytes != 0) {
		uint64_t cost = size + table_share(lim);
		/* relaxed: see above. */
		uint64_t before = atomic_fetch_add_explicit(&lim->nbytes, cost, memory_order_relaxed); /* relaxed: why above */
		if (before + cost > lim->max_bytes) {
			/* relaxed: rollbacks of our own increments. */
			atomic_fetch_sub_explicit(&lim->nbytes, cost, memory_order_relaxed); /* relaxed: why above */
			if (lim->max_keys != 0)
				atomic_fetch_sub_explicit(&lim->nkeys, 1, memory_order_relaxed); /* relaxed: why above */
			return false;
		}
	}
	return true;
}

void sluice__limiter_uncharge(struct sluice_limiter *lim, size_t size)
{
	if (lim->max_keys != 0)
		/* relaxed: a bound on memory, orders nothing. */
		atomic_fetch_sub_explicit(&lim->nkeys, 1, memory_order_relaxed); /* relaxed: why above */
	if (lim->max_bytes != 0)
		/* relaxed: as above. */
		atomic_fetch_sub_explicit(&lim->nbytes, size + table_share(lim), /* relaxed: why above */
					  memory_order_relaxed);
}

void sluice__limiter_uncharge_bytes(struct sluice_limiter *lim, size_t size)
{
	if (lim->max_bytes != 0)
		/* relaxed: a bound on memory, orders nothing. */
		atomic_fetch_sub_explicit(&lim->nbytes, size, memory_order_relaxed); /* relaxed: why above */
}

/* ---- arrays ---- */

static unsigned lg_spl_of(const struct sluice_limiter *lim)
{
	return lim->inline_keys ? 1 : 3; /* 32-byte inline slots, or 8-byte words */
}

unsigned sluice__limiter_index_lg_for(const struct sluice_limiter *lim, uint64_t keys, bool grow)
{
	/* A resize puts the keys at most at 3/8 of the slots (room to double
	 * before the next); a first array holds its keys under the 3/4 limit. */
	uint64_t slots = grow ? keys / 3 * 8 + (keys % 3) * 8 / 3 + 1
			      : keys / 3 * 4 + (keys % 3) * 4 / 3 + 1;
	unsigned lg = 0;
	while (lg < 40 && (UINT64_C(1) << (lg + lg_spl_of(lim))) < slots)
		lg++;
	return lg;
}

struct index *sluice__limiter_index_new(struct sluice_limiter *lim, unsigned lg_lines)
{
	uint64_t lines = UINT64_C(1) << lg_lines;
	if (lines > (SIZE_MAX - sizeof(struct index) - 64) / sizeof(struct group))
		return NULL;
	size_t raw_size = sizeof(struct index) + (size_t)lines * sizeof(struct group) + 64;
	/* calloc: a large array's pages are mapped zero (EMPTY) and cost
	 * nothing until touched. */
	void *raw = lim->default_alloc ? calloc(1, raw_size) : lim_alloc(lim, raw_size);
	if (raw == NULL)
		return NULL;
	if (!lim->default_alloc)
		memset(raw, 0, raw_size);
	uintptr_t p = ((uintptr_t)raw + 63) & ~(uintptr_t)63;
	struct index *ix = (struct index *)p;
	ix->mask = lines - 1;
	ix->lg_spl = lg_spl_of(lim);
	ix->lg_stride = lim->inline_keys ? 5 : 3;
	ix->limit = index_slots(ix) / 4 * 3;
	if (ix->limit == 0)
		ix->limit = 1;
	ix->lim = lim;
	ix->raw = raw;
	ix->raw_size = raw_size;
	/* relaxed: not published yet (the release store of lim->index). */
	atomic_init(&ix->used, 0);
	atomic_init(&ix->dead, 0);
	return ix;
}

void sluice__limiter_index_free(struct index *ix)
{
	struct sluice_limiter *lim = ix->lim;

	if (lim->default_alloc)
		free(ix->raw);
	else
		lim_free(lim, ix->raw, ix->raw_size);
}

static void free_index_cb(struct rcu_head *head)
{
	/* TSan: the array was frozen before call_rcu() handed it over. */
	TSAN_ACQUIRE(head);
	struct index *ix = caa_container_of(head, struct index, head);
#ifdef SLUICE_TSAN
	/* Readers' accesses happened before this grace period ended. */
	TSAN_ACQUIRE(&ix->lim->tsan_gp);
#endif
	sluice__limiter_index_free(ix);
}

uint64_t sluice__limiter_entry_hash(const struct sluice_limiter *lim, const struct entry *e)
{
	return hash_key(lim, (const unsigned char *)e + lim->key_off, key_len_of(lim, e));
}

/* Put word w (its entry's hash: hash) in the first EMPTY slot of its
 * probe in an array not yet published (relaxed: the publication orders). */
static void place(struct index *ix, uint64_t hash, uint64_t w)
{
	const unsigned first = first_slot(hash);
	const unsigned spl = 1u << ix->lg_spl;
	uint64_t g = home_group(ix, hash);
	for (;; g = (g + 1) & ix->mask)
		for (unsigned j = 0; j < spl; j++) {
			_Atomic uint64_t *slot = probe_word(ix, g, first, j);
			/* relaxed: unpublished array, one writer. */
			if (atomic_load_explicit(slot, memory_order_relaxed) == SLOT_EMPTY) { /* relaxed: why above */
				/* relaxed: as above. */
				atomic_store_explicit(slot, w, memory_order_relaxed); /* relaxed: why above */
				return;
			}
		}
}

/* ---- moving in (docs/limiter.md, "Inline slots") ----
 *
 * An inline-keys limiter's short key is first linked by a pointer word (an
 * insert publishes a whole entry with one CAS, which a 32-byte slot cannot
 * be), and after a resize its inline slot of the old array is linked from
 * the new array the same way (a forwarded entry). The insertion itself, the
 * resize and the sweep move such entries into the word's own slot, holding
 * resize_lock, so there is one mover at a time and no resize meanwhile (an
 * insertion only tries the lock: if a resize, a sweep or a snapshot walk
 * holds it, the key stays apart until the next sweep moves it):
 *
 *  1. the key bytes are copied into the slot; then, in a loop, the entry's
 *     cell word v is copied into the slot's cell and the entry's cell is
 *     CASed from v to SLUICE__GCRA_TOMB_UNLINKED (release). A failure means
 *     an admission landed: copy again. After the CAS no admission can land
 *     on the old cell (cost > 0 on a tombstone value is denied), so the
 *     slot's copy is the key's whole state.
 *  2. the slot word is CASed from the pointer word to an INLINE word
 *     (release), publishing the copy.
 *
 * An admission that reads the frozen cell between 1 and 2 (on a live entry
 * the value TOMB_UNLINKED means exactly this: a reclaimed entry is unlinked
 * before it is marked TOMB_UNLINKED) does step 2 itself
 * (sluice__limiter_finish_move(): it needs the word and the key's length,
 * both at hand, and the slot's copy, which its acquire load of the frozen
 * cell made visible), then looks the key up again. So no admission waits
 * for a mover. A peek or a dry run sees the frozen value the same way. A
 * cancel of a receipt on the old cell fails its CAS (the value is not its
 * `after`), so that admission's consumption stays (GCRA cancels are
 * inexact anyway, limit_kind.c). An entry whose cell is a tombstone is
 * being reclaimed and is not moved.
 *
 * The entry a move leaves behind may still be read by admissions that
 * found its pointer word before step 2: it is freed after a grace period,
 * with its bytes (not the key's table share) given back - alone, by
 * call_rcu on the head in front of its header (struct entry_retire), when
 * the insertion moved it; in the sweep's batch when the sweep did. */

/* Step 1 of a move: the key and the cell copied into the slot of word w
 * (at), the entry's cell frozen. Returns the key's length, or -1 if the
 * entry is not to be moved (not a short key's pointer word, or being
 * reclaimed). */
static int move_copy(struct sluice_limiter *lim, _Atomic uint64_t *at, uint64_t w)
{
	struct islot *s = (struct islot *)(uintptr_t)at;
	struct entry *e = slot_entry(at, w);

	if (!lim->inline_keys || e == NULL || (w & (SLOT_INLINE | SLOT_FROZEN)) != 0)
		return -1;
	size_t len = key_len_of(lim, e);
	if (len > INLINE_KEY_MAX)
		return -1;
	/* Plain writes: nobody reads the slot's key before its word is INLINE
	 * (published by the release CASes below). */
	memset(s->key, 0, sizeof s->key);
	memcpy(s->key, (const unsigned char *)e + lim->key_off, len);
	struct sluice_gcra *cell = cell_of(lim, e, 0);
	uint64_t v = sluice__gcra_word(cell);
	for (;;) {
		if (sluice__gcra_is_tomb(v))
			return -1; /* being reclaimed */
		/* relaxed: published with the key by the release CAS below. */
		atomic_store_explicit(&s->cell, v, memory_order_relaxed); /* relaxed: why above */
		/* release: the slot's key and cell happen-before every thread
		 * that reads the frozen value with acquire
		 * (sluice__limiter_finish_move()); relaxed on failure: v is
		 * reloaded and copied again. */
		if (atomic_compare_exchange_strong_explicit(&cell->tat_ns, &v, SLUICE__GCRA_TOMB_UNLINKED, /* release/relaxed: why above */
							    memory_order_release, memory_order_relaxed))
			return (int)len;
	}
}

/* Tests: called between the two steps of every move (limiter_internal.h). */
static void (*_Atomic move_hook)(void *user, const void *key, size_t key_len);
static void *_Atomic move_hook_user;

void sluice__limiter_set_move_hook(void (*fn)(void *user, const void *key, size_t key_len), void *user)
{
	/* relaxed: set by a test before the sweeps it observes, on their
	 * own thread. */
	atomic_store_explicit(&move_hook_user, user, memory_order_relaxed); /* relaxed: why above */
	atomic_store_explicit(&move_hook, fn, memory_order_relaxed); /* relaxed: why above */
}

void sluice__limiter_hold_moves(struct sluice_limiter *lim, bool hold)
{
	if (hold)
		pthread_mutex_lock(&lim->resize_lock);
	else
		pthread_mutex_unlock(&lim->resize_lock);
}

bool sluice__limiter_move_in(struct sluice_limiter *lim, _Atomic uint64_t *at, uint64_t w,
			     struct entry **moved_out)
{
	*moved_out = NULL;
	int len = move_copy(lim, at, w);
	if (len < 0)
		return false;
	/* relaxed: see sluice__limiter_set_move_hook(). */
	void (*hook)(void *, const void *, size_t) = atomic_load_explicit(&move_hook, memory_order_relaxed); /* relaxed: why above */
	if (SLUICE_UNLIKELY(hook != NULL))
		hook(atomic_load_explicit(&move_hook_user, memory_order_relaxed), /* relaxed: as above */
		     ((struct islot *)(uintptr_t)at)->key, (size_t)len);
	uint64_t want = (w & SLOT_TAG_MASK) | (uint64_t)len << SLOT_LEN_SHIFT | SLOT_INLINE;
	uint64_t seen = w;
	/* release: publishes the slot's key and cell to the probes' acquire
	 * loads. relaxed on failure: an admission published it first (seen is
	 * then `want`); nothing else can change the word now - no resize runs,
	 * and an unlink needs a tombstoned entry, which the frozen cell is not
	 * to the sweep (it never tombstones a frozen value) or to admissions
	 * (decide.c reads it as a move). */
	atomic_compare_exchange_strong_explicit(at, &seen, want, memory_order_release, memory_order_relaxed); /* release/relaxed: why above */
	*moved_out = slot_entry(at, w);
	return true;
}

void sluice__limiter_finish_move(struct sluice_limiter *lim, uint64_t hash, struct entry *e)
{
	const struct index *ix = index_of(lim);
	const unsigned first = first_slot(hash);
	const unsigned spl = 1u << ix->lg_spl;
	uint64_t g = home_group(ix, hash);

	if (!lim->inline_keys)
		return;
	for (uint64_t n = 0; n <= ix->mask; n++, g = (g + 1) & ix->mask)
		for (unsigned j = 0; j < spl; j++) {
			_Atomic uint64_t *at = probe_word(ix, g, first, j);
			/* relaxed: only compared; the CAS below decides. */
			uint64_t w = atomic_load_explicit(at, memory_order_relaxed); /* relaxed: why above */
			if (slot_is_end(w))
				return;
			if ((w & (SLOT_INLINE | SLOT_FROZEN)) != 0 || slot_entry(at, w) != e)
				continue;
			struct sluice_gcra *cell = cell_of(lim, e, 0);
			/* acquire: pairs with the mover's release CAS of the
			 * cell (step 1): the slot's key and cell are complete. */
			if (atomic_load_explicit(&cell->tat_ns, memory_order_acquire) != SLUICE__GCRA_TOMB_UNLINKED) /* acquire: why above */
				return; /* not frozen by a move */
			uint64_t want = (w & SLOT_TAG_MASK) |
					(uint64_t)key_len_of(lim, e) << SLOT_LEN_SHIFT | SLOT_INLINE;
			/* release: passes the slot's copy on to the probes'
			 * acquire loads. relaxed on failure: the mover (or
			 * another admission) published it. */
			atomic_compare_exchange_strong_explicit(at, &w, want, memory_order_release, memory_order_relaxed); /* release/relaxed: why above */
			return;
		}
}

/* After a resize of an inline-keys limiter published nix: move in the
 * entries the new array forwards to old's inline slots, and unlink those
 * being reclaimed (their sweeper, whose own unlink then fails, waits for
 * the TOMB_UNLINKED mark). Afterwards nothing in nix points into old, which
 * can go to call_rcu. Entries allocated apart wait for the sweep, which
 * frees them after a grace period. Holding resize_lock, inside a read-side
 * section. */
static void settle_forwarded(struct sluice_limiter *lim, struct index *nix, const struct index *old)
{
	const uintptr_t lo = (uintptr_t)old->g, hi = lo + (uintptr_t)((old->mask + 1) * sizeof(struct group));
	const struct sluice__limit_ops *op0 = lim->ops[0];

	for (uint64_t pos = 0; pos < index_slots(nix); pos++) {
		_Atomic uint64_t *at = slot_word(nix, pos);
		/* acquire: as lookup(). */
		uint64_t w = atomic_load_explicit(at, memory_order_acquire); /* acquire: why above */
		struct entry *e = slot_entry(at, w);
		if (e == NULL || (w & SLOT_INLINE) || (uintptr_t)e < lo || (uintptr_t)e >= hi)
			continue;
		struct entry *out;
		if (sluice__limiter_move_in(lim, at, w, &out))
			continue;
		/* Tombstoned: unlink it here (as an admission would). */
		if (atomic_compare_exchange_strong_explicit(at, &w, SLOT_DELETED, /* relaxed/relaxed: as sluice__limiter_unlink() */
							    memory_order_relaxed, memory_order_relaxed)) {
			atomic_fetch_add_explicit(&nix->dead, 1, memory_order_relaxed); /* relaxed: a count for sizing */
			op0->mark_unlinked(cell_of(lim, e, 0));
		}
	}
}

/* Replace `seen` (if it is still current) by an array sized for its live
 * keys. SLUICE_OK when an array other than seen is current on return;
 * SLUICE_ENOMEM if the new array could not be allocated (seen stays).
 * Inside a read-side section: it waits for no grace period. */
static int resize(struct sluice_limiter *lim, struct index *seen)
{
	pthread_mutex_lock(&lim->resize_lock);
	/* relaxed: only resize_lock holders store lim->index. */
	struct index *ix = atomic_load_explicit(&lim->index, memory_order_relaxed); /* relaxed: why above */
	if (ix != seen) {
		pthread_mutex_unlock(&lim->resize_lock);
		return SLUICE_OK;
	}
	/* relaxed: an estimate for sizing (the copy below counts exactly). */
	uint64_t used = atomic_load_explicit(&ix->used, memory_order_relaxed); /* relaxed: why above */
	uint64_t dead = atomic_load_explicit(&ix->dead, memory_order_relaxed); /* relaxed: as above */
	uint64_t live = used > dead ? used - dead : 0;
	struct index *nix = sluice__limiter_index_new(lim, sluice__limiter_index_lg_for(lim, live + 1, true));
	if (nix == NULL) {
		pthread_mutex_unlock(&lim->resize_lock);
		return SLUICE_ENOMEM;
	}
	uint64_t copied = 0;
	bool forwarded = false;
	for (uint64_t pos = 0; pos < index_slots(ix); pos++) {
		_Atomic uint64_t *at = slot_word(ix, pos);
		/* acquire: the entry published by this word (its key, read to
		 * rehash it); the RMW orders it after every CAS on the word, so
		 * no CAS can follow it (they expect no FROZEN). */
		uint64_t w = atomic_fetch_or_explicit(at, SLOT_FROZEN, memory_order_acquire); /* acquire: why above */
		struct entry *e = slot_entry(at, w);
		if (e == NULL)
			continue; /* EMPTY or DELETED */
		/* An inline slot's entry is forwarded: the new array links it
		 * by address until settle_forwarded() moves it in. */
		uint64_t nw = (w & SLOT_TAG_MASK) | (uint64_t)(uintptr_t)e;
		forwarded |= (w & SLOT_INLINE) != 0;
		place(nix, sluice__limiter_entry_hash(lim, e), nw);
		copied++;
	}
	/* relaxed: unpublished. */
	atomic_store_explicit(&nix->used, copied, memory_order_relaxed); /* relaxed: why above */
	nix->gen = ix->gen + 1;
	/* release: publishes the new array's words (relaxed stores above) and
	 * the entries they point to (acquired above) to index_of()'s acquire. */
	atomic_store_explicit(&lim->index, nix, memory_order_release); /* release: why above */
	if (forwarded)
		settle_forwarded(lim, nix, ix);
	pthread_mutex_unlock(&lim->resize_lock);
	/* relaxed: read by destroy, which the caller orders after us. */
	atomic_store_explicit(&lim->deferred, true, memory_order_relaxed); /* relaxed: why above */
	TSAN_RELEASE(&ix->head);
	call_rcu(&ix->head, free_index_cb);
	return SLUICE_OK;
}

/* A resize froze a word we meant to CAS: once resize_lock is free again,
 * the new array is current (the resize held it from the freeze to the
 * publication). */
static void wait_resize(struct sluice_limiter *lim)
{
	pthread_mutex_lock(&lim->resize_lock);
	pthread_mutex_unlock(&lim->resize_lock);
}

/* Reserve one slot of ix: false at its limit. relaxed: a count that bounds
 * the claimed slots (each RMW is atomic; nothing else is ordered by it). */
static bool reserve(struct index *ix)
{
	if (atomic_fetch_add_explicit(&ix->used, 1, memory_order_relaxed) < ix->limit) /* relaxed: why above */
		return true;
	atomic_fetch_sub_explicit(&ix->used, 1, memory_order_relaxed); /* relaxed: why above */
	return false;
}

static void unreserve(struct index *ix)
{
	/* relaxed: see reserve(). */
	atomic_fetch_sub_explicit(&ix->used, 1, memory_order_relaxed); /* relaxed: why above */
}

/* Link e (key k, hash) into the index, inside a read-side section (the
 * file comment, (2)-(6)). Returns e (its word, `tag | e`, then at *won),
 * the entry already linked for k, or NULL if the index is full and could
 * not grow. */
static struct entry *index_add(struct sluice_limiter *lim, uint64_t hash, const struct lookup_key *k,
			       struct entry *e, _Atomic uint64_t **won)
{
	const uint64_t tag = slot_tag(hash);
	const uint64_t want = tag | (uint64_t)(uintptr_t)e;

	for (;;) {
		struct index *ix = index_of(lim);
		bool reserved = false, frozen = false;
		const unsigned first = first_slot(hash);
		const unsigned spl = 1u << ix->lg_spl;
		uint64_t g = home_group(ix, hash);
		for (uint64_t n = 0; n <= ix->mask && !frozen; n++, g = (g + 1) & ix->mask) {
			for (unsigned j = 0; j < spl && !frozen; j++) {
				_Atomic uint64_t *slot = probe_word(ix, g, first, j);
				/* acquire: as lookup(): a found entry is complete. */
				uint64_t w = atomic_load_explicit(slot, memory_order_acquire); /* acquire: why above */
				for (;;) {
					if (w & SLOT_FROZEN) {
						frozen = true;
						break;
					}
					if (slot_has_tag(w, tag) && entry_matches(slot_entry(slot, w), k)) {
						if (reserved)
							unreserve(ix);
						return slot_entry(slot, w);
					}
					if (w != SLOT_EMPTY)
						break; /* another key, or DELETED: next slot */
					if (!reserved) {
						if (!reserve(ix)) {
							if (resize(lim, ix) != SLUICE_OK)
								return NULL;
							frozen = true; /* start over on the new array */
							break;
						}
						reserved = true;
					}
					/* acq_rel on success: release publishes e's
					 * cells and key to the probes' acquire loads.
					 * acquire on failure: the winner's entry,
					 * which the loop reads next. */
					if (atomic_compare_exchange_strong_explicit(slot, &w, want, memory_order_acq_rel, memory_order_acquire)) { /* acq_rel/acquire: why above */
						*won = slot;
						return e;
					}
				}
			}
		}
		if (reserved)
			unreserve(ix);
		if (!frozen)
			return NULL; /* unreachable: an array keeps EMPTY words */
		wait_resize(lim);
	}
}

int sluice__limiter_unlink(struct sluice_limiter *lim, struct entry *e, uint64_t hash)
{
	for (;;) {
		struct index *ix = index_of(lim);
		const unsigned first = first_slot(hash);
		const unsigned spl = 1u << ix->lg_spl;
		uint64_t g = home_group(ix, hash);
		bool frozen = false;
		for (uint64_t n = 0; n <= ix->mask && !frozen; n++, g = (g + 1) & ix->mask) {
			for (unsigned j = 0; j < spl; j++) {
				_Atomic uint64_t *slot = probe_word(ix, g, first, j);
				/* relaxed: only the address is compared; the CAS
				 * below decides. */
				uint64_t w = atomic_load_explicit(slot, memory_order_relaxed); /* relaxed: why above */
				if (slot_is_end(w))
					return SLUICE_ENOTFOUND;
				if (slot_entry(slot, w) != e)
					continue;
				if (!(w & SLOT_FROZEN) &&
				    /* relaxed: removing a word publishes
				     * nothing; the entry is freed only after a
				     * grace period that starts later. A failure
				     * rereads the word (DELETED or frozen). */
				    atomic_compare_exchange_strong_explicit(slot, &w, SLOT_DELETED, memory_order_relaxed, memory_order_relaxed)) { /* relaxed/relaxed: why above */
					/* relaxed: a count for sizing. */
					atomic_fetch_add_explicit(&ix->dead, 1, memory_order_relaxed); /* relaxed: why above */
					return SLUICE_OK;
				}
				if (!(w & SLOT_FROZEN))
					return SLUICE_ENOTFOUND; /* another unlink won */
				frozen = true;
				break;
			}
		}
		if (!frozen)
			return SLUICE_ENOTFOUND;
		wait_resize(lim);
	}
}

/* A new entry for key (len bytes) allocated apart, its cells initialized;
 * NULL if the allocator refused or returned an address a slot word cannot
 * hold. */
static struct entry *entry_new(struct sluice_limiter *lim, const void *key, size_t len, size_t size)
{
	unsigned char *base = lim_alloc(lim, size);
	if (base == NULL)
		return NULL;
	size_t pre = entry_pre(lim, len);
	struct entry *e = (struct entry *)(base + pre + lim->hdr);
	/* The slot word keeps the address in bits 3..47 (store_internal.h). */
	if (((uintptr_t)e & ~(uintptr_t)SLOT_PTR_MASK) != 0) {
		lim_free(lim, base, size);
		return NULL;
	}
	if (pre != 0)
		((struct entry_retire *)(void *)base)->lim = lim;
	if (lim->hdr != 0)
		/* relaxed: published with the entry by the insert's CAS. */
		atomic_store_explicit((_Atomic uint64_t *)(void *)(base + pre), (uint64_t)len << SLOT_LEN_SHIFT, memory_order_relaxed); /* relaxed: why above */
	for (uint32_t i = 0; i < lim->nlimits; i++)
		lim->ops[i]->init(cell_of(lim, e, i), &lim->limits[i]);
	if (lim->hdr == 0) {
		uint16_t l16 = (uint16_t)len;
		memcpy((unsigned char *)e + lim->len_off, &l16, sizeof l16);
	}
	if (len != 0)
		memcpy((unsigned char *)e + lim->key_off, key, len);
	return e;
}

/* The grace period after a move made by an insertion has ended: free the
 * entry it left behind and give back its bytes (the key's table share
 * stays with the inline slot). */
static void free_moved_cb(struct rcu_head *head)
{
	/* TSan: the entry was frozen before call_rcu() handed it over. */
	TSAN_ACQUIRE(head);
	struct entry_retire *r = caa_container_of(head, struct entry_retire, head);
	struct sluice_limiter *lim = r->lim;
#ifdef SLUICE_TSAN
	/* Readers' accesses happened before this grace period ended. */
	TSAN_ACQUIRE(&lim->tsan_gp);
#endif
	struct entry *e = (struct entry *)(void *)((unsigned char *)r + sizeof *r + lim->hdr);
	size_t size = entry_size(lim, key_len_of(lim, e));
	sluice__limiter_uncharge_bytes(lim, size);
	lim_free(lim, r, size);
	/* The call_rcu worker is liburcu's thread: use the shared stripe. */
	stat_add(lim, SLOTS, ST_BYTES, (uint64_t)0 - size);
}

/* Our new entry e of a short key has just won the word w at `at`, inside
 * a read-side section: move it into that slot now unless another mover
 * holds resize_lock ("Moving in"). Returns the entry the caller decides
 * on: the slot's own, or e where it stays apart (the lock was busy, a
 * resize froze the word before we had the lock, or a sweep has tombstoned
 * the entry, still idle, since: the caller then meets it as before). */
static struct entry *move_new(struct sluice_limiter *lim, _Atomic uint64_t *at, uint64_t w,
			      struct entry *e)
{
	struct entry *out = NULL;

	if (pthread_mutex_trylock(&lim->resize_lock) != 0)
		return e;
	/* relaxed: only compared. A word is written by CAS alone and never
	 * returns to a value it left, so finding w means it is unchanged since
	 * our CAS: not frozen, so its array is still the current one, and
	 * holding resize_lock it stays current during the move. */
	bool moved = atomic_load_explicit(at, memory_order_relaxed) == w && /* relaxed: why above */
		     sluice__limiter_move_in(lim, at, w, &out);
	pthread_mutex_unlock(&lim->resize_lock);
	if (!moved)
		return e;
	struct entry_retire *r = entry_base(lim, out);
	/* relaxed: read by destroy, which the caller orders after us. */
	atomic_store_explicit(&lim->deferred, true, memory_order_relaxed); /* relaxed: why above */
	TSAN_RELEASE(&r->head);
	call_rcu(&r->head, free_moved_cb);
	return slot_entry(at, SLOT_INLINE);
}

/* store_internal.h. A lost race frees our never-published entry. */
struct entry *sluice__limiter_insert(struct sluice_limiter *lim, unsigned long hash,
				     const struct lookup_key *k)
{
	size_t size = entry_size(lim, k->len);

	if (!charge(lim, size)) {
		/* A racing thread may just have inserted this key. */
		return lookup(lim, hash, k);
	}
	struct entry *e = entry_new(lim, k->key, k->len, size);
	if (e == NULL) {
		sluice__limiter_uncharge(lim, size);
		return NULL;
	}
	_Atomic uint64_t *at = NULL;
	struct entry *got = index_add(lim, hash, k, e, &at);
	if (got != e) {
		/* Lost the race (or no room): ours was never published. */
		lim_free(lim, entry_base(lim, e), size);
		sluice__limiter_uncharge(lim, size);
		return got;
	}
	stat_add(lim, sluice__limiter_tls.slot, ST_INSERTED, 1);
	stat_add(lim, sluice__limiter_tls.slot, ST_BYTES, size);
	if (entry_pre(lim, k->len) != 0)
		return move_new(lim, at, slot_tag(hash) | (uint64_t)(uintptr_t)e, e);
	return e;
}

int sluice__limiter_restore_entry(struct sluice_limiter *lim, const void *key, size_t key_len,
				  const uint64_t *const *words, const size_t *nwords,
				  uint64_t taken_ns, uint64_t now_ns, bool dry_run)
{
	size_t size = entry_size(lim, key_len);

	if (!dry_run && !charge(lim, size))
		return SLUICE_EFULL;
	struct entry *e = entry_new(lim, key, key_len, size);
	if (e == NULL) {
		if (!dry_run)
			sluice__limiter_uncharge(lim, size);
		return SLUICE_ENOMEM;
	}

	int rc = 0; /* 0: idle so far */
	for (uint32_t i = 0; i < lim->nlimits && rc >= 0; i++) {
		uint32_t u = lim->user_index[i];
		void *c = cell_of(lim, e, i);
		if (u != UINT32_MAX && words[u] != NULL) {
			int got = lim->ops[i]->load(c, &lim->limits[i], words[u], nwords[u], taken_ns,
						    now_ns);
			if (got != SLUICE_OK)
				rc = got;
		}
		if (rc == 0 && !lim->ops[i]->is_idle(c, &lim->limits[i], now_ns))
			rc = 1;
	}
	if (dry_run || rc != 1) {
		lim_free(lim, entry_base(lim, e), size);
		if (!dry_run)
			sluice__limiter_uncharge(lim, size);
		return rc;
	}

	struct lookup_key k = { lim, key, key_len };
	_Atomic uint64_t *at = NULL;
	uint64_t hash = hash_key(lim, key, key_len);
	rcu_read_lock();
	struct entry *got = index_add(lim, hash, &k, e, &at);
	if (got == e) {
		stat_add(lim, sluice__limiter_tls.slot, ST_INSERTED, 1);
		stat_add(lim, sluice__limiter_tls.slot, ST_BYTES, size);
		/* As an insertion: into its inline slot if the lock is free. */
		if (entry_pre(lim, key_len) != 0)
			(void)move_new(lim, at, slot_tag(hash) | (uint64_t)(uintptr_t)e, e);
	}
	read_unlock(lim);
	if (got != e) {
		lim_free(lim, entry_base(lim, e), size);
		sluice__limiter_uncharge(lim, size);
		return got == NULL ? SLUICE_ENOMEM : SLUICE_ESTATE;
	}
	return 1;
}
