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
 * back when the entry is freed (sweep.c, after a grace period): a relaxed
 * fetch_add with rollback, so two inserters near the limit may both fail
 * (each sees the other's transient charge) but never both pass beyond it.
 */
#include <stdlib.h>

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

/* Charge one entry of `size` bytes to the budget. relaxed fetch_add with
 * rollback: the counters only bound memory, they order nothing; concurrent
 * inserters near the limit may each see the other's transient charge and
 * fail (conservative), never both pass beyond it. */
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
		uint64_t cost = size + TABLE_SHARE_BYTES;
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
		atomic_fetch_sub_explicit(&lim->nbytes, size + TABLE_SHARE_BYTES, /* relaxed: why above */
					  memory_order_relaxed);
}

/* ---- arrays ---- */

unsigned sluice__limiter_index_lg_for(uint64_t keys, bool grow)
{
	/* A resize puts the keys at most at 3/8 of the slots (room to double
	 * before the next); a first array holds its keys under the 3/4 limit. */
	uint64_t slots = grow ? keys / 3 * 8 + (keys % 3) * 8 / 3 + 1
			      : keys / 3 * 4 + (keys % 3) * 4 / 3 + 1;
	unsigned lg = 0;
	while (lg < 40 && ((uint64_t)GROUP_SLOTS << lg) < slots)
		lg++;
	return lg;
}

struct index *sluice__limiter_index_new(struct sluice_limiter *lim, unsigned lg_groups)
{
	uint64_t groups = UINT64_C(1) << lg_groups;
	if (groups > (SIZE_MAX - sizeof(struct index) - 64) / sizeof(struct group))
		return NULL;
	size_t raw_size = sizeof(struct index) + (size_t)groups * sizeof(struct group) + 64;
	/* calloc: a large array's pages are mapped zero (EMPTY) and cost
	 * nothing until touched. */
	void *raw = lim->default_alloc ? calloc(1, raw_size) : lim_alloc(lim, raw_size);
	if (raw == NULL)
		return NULL;
	if (!lim->default_alloc)
		memset(raw, 0, raw_size);
	uintptr_t p = ((uintptr_t)raw + 63) & ~(uintptr_t)63;
	struct index *ix = (struct index *)p;
	ix->mask = groups - 1;
	ix->limit = groups * GROUP_SLOTS / 4 * 3;
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
	uint64_t g = home_group(ix, hash);
	for (;; g = (g + 1) & ix->mask)
		for (unsigned j = 0; j < GROUP_SLOTS; j++) {
			_Atomic uint64_t *slot = &ix->g[g].w[PROBE_SLOT(first, j)];
			/* relaxed: unpublished array, one writer. */
			if (atomic_load_explicit(slot, memory_order_relaxed) == SLOT_EMPTY) { /* relaxed: why above */
				/* relaxed: as above. */
				atomic_store_explicit(slot, w, memory_order_relaxed); /* relaxed: why above */
				return;
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
	struct index *nix = sluice__limiter_index_new(lim, sluice__limiter_index_lg_for(live + 1, true));
	if (nix == NULL) {
		pthread_mutex_unlock(&lim->resize_lock);
		return SLUICE_ENOMEM;
	}
	uint64_t copied = 0;
	for (uint64_t g = 0; g <= ix->mask; g++)
		for (unsigned s = 0; s < GROUP_SLOTS; s++) {
			/* acquire: the entry published by this word (its key, read
			 * to rehash it); the RMW orders it after every CAS on the
			 * word, so no CAS can follow it (they expect no FROZEN). */
			uint64_t w = atomic_fetch_or_explicit(&ix->g[g].w[s], SLOT_FROZEN, memory_order_acquire); /* acquire: why above */
			struct entry *e = slot_entry(w);
			if (e == NULL)
				continue; /* EMPTY or DELETED */
			place(nix, sluice__limiter_entry_hash(lim, e), w & ~SLOT_FROZEN);
			copied++;
		}
	/* relaxed: unpublished. */
	atomic_store_explicit(&nix->used, copied, memory_order_relaxed); /* relaxed: why above */
	nix->gen = ix->gen + 1;
	/* release: publishes the new array's words (relaxed stores above) and
	 * the entries they point to (acquired above) to index_of()'s acquire. */
	atomic_store_explicit(&lim->index, nix, memory_order_release); /* release: why above */
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
 * file comment, (2)-(6)). Returns e, the entry already linked for k, or
 * NULL if the index is full and could not grow. */
static struct entry *index_add(struct sluice_limiter *lim, uint64_t hash, const struct lookup_key *k,
			       struct entry *e)
{
	const uint64_t tag = slot_tag(hash);
	const uint64_t want = tag | (uint64_t)(uintptr_t)e;

	for (;;) {
		struct index *ix = index_of(lim);
		bool reserved = false, frozen = false;
		const unsigned first = first_slot(hash);
		uint64_t g = home_group(ix, hash);
		for (uint64_t n = 0; n <= ix->mask && !frozen; n++, g = (g + 1) & ix->mask) {
			for (unsigned j = 0; j < GROUP_SLOTS && !frozen; j++) {
				_Atomic uint64_t *slot = &ix->g[g].w[PROBE_SLOT(first, j)];
				/* acquire: as lookup(): a found entry is complete. */
				uint64_t w = atomic_load_explicit(slot, memory_order_acquire); /* acquire: why above */
				for (;;) {
					if (w & SLOT_FROZEN) {
						frozen = true;
						break;
					}
					if (slot_has_tag(w, tag) && entry_matches(slot_entry(w), k)) {
						if (reserved)
							unreserve(ix);
						return slot_entry(w);
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
					if (atomic_compare_exchange_strong_explicit(slot, &w, want, memory_order_acq_rel, memory_order_acquire)) /* acq_rel/acquire: why above */
						return e;
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
		uint64_t g = home_group(ix, hash);
		bool frozen = false;
		for (uint64_t n = 0; n <= ix->mask && !frozen; n++, g = (g + 1) & ix->mask) {
			for (unsigned j = 0; j < GROUP_SLOTS; j++) {
				_Atomic uint64_t *slot = &ix->g[g].w[PROBE_SLOT(first, j)];
				/* relaxed: only the address is compared; the CAS
				 * below decides. */
				uint64_t w = atomic_load_explicit(slot, memory_order_relaxed); /* relaxed: why above */
				if (slot_is_end(w))
					return SLUICE_ENOTFOUND;
				if (slot_entry(w) != e)
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

/* store_internal.h. A lost race frees our never-published entry. */
struct entry *sluice__limiter_insert(struct sluice_limiter *lim, unsigned long hash,
				     const struct lookup_key *k)
{
	size_t size = entry_size(lim, k->len);

	if (!charge(lim, size)) {
		/* A racing thread may just have inserted this key. */
		return lookup(lim, hash, k);
	}
	struct entry *e = lim_alloc(lim, size);
	/* The slot word keeps the address in bits 2..47 (store_internal.h). */
	if (e != NULL && ((uintptr_t)e & ~(uintptr_t)SLOT_PTR_MASK) != 0) {
		lim_free(lim, e, size);
		e = NULL;
	}
	if (e == NULL) {
		sluice__limiter_uncharge(lim, size);
		return NULL;
	}
	for (uint32_t i = 0; i < lim->nlimits; i++)
		lim->ops[i]->init(cell_of(lim, e, i), &lim->limits[i]);
	uint16_t len = (uint16_t)k->len;
	memcpy((unsigned char *)e + lim->len_off, &len, sizeof len);
	if (k->len != 0)
		memcpy((unsigned char *)e + lim->key_off, k->key, k->len);

	struct entry *got = index_add(lim, hash, k, e);
	if (got != e) {
		/* Lost the race (or no room): ours was never published. */
		lim_free(lim, e, size);
		sluice__limiter_uncharge(lim, size);
		return got;
	}
	stat_add(lim, sluice__limiter_tls.slot, ST_INSERTED, 1);
	stat_add(lim, sluice__limiter_tls.slot, ST_BYTES, size);
	return e;
}

int sluice__limiter_restore_entry(struct sluice_limiter *lim, const void *key, size_t key_len,
				  const uint64_t *const *words, const size_t *nwords,
				  uint64_t taken_ns, uint64_t now_ns, bool dry_run)
{
	size_t size = entry_size(lim, key_len);

	if (!dry_run && !charge(lim, size))
		return SLUICE_EFULL;
	struct entry *e = lim_alloc(lim, size);
	if (e != NULL && ((uintptr_t)e & ~(uintptr_t)SLOT_PTR_MASK) != 0) {
		lim_free(lim, e, size);
		e = NULL;
	}
	if (e == NULL) {
		if (!dry_run)
			sluice__limiter_uncharge(lim, size);
		return SLUICE_ENOMEM;
	}
	for (uint32_t i = 0; i < lim->nlimits; i++)
		lim->ops[i]->init(cell_of(lim, e, i), &lim->limits[i]);
	uint16_t len = (uint16_t)key_len;
	memcpy((unsigned char *)e + lim->len_off, &len, sizeof len);
	if (key_len != 0)
		memcpy((unsigned char *)e + lim->key_off, key, key_len);

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
		lim_free(lim, e, size);
		if (!dry_run)
			sluice__limiter_uncharge(lim, size);
		return rc;
	}

	struct lookup_key k = { lim, key, key_len };
	rcu_read_lock();
	struct entry *got = index_add(lim, hash_key(lim, key, key_len), &k, e);
	read_unlock(lim);
	if (got != e) {
		lim_free(lim, e, size);
		sluice__limiter_uncharge(lim, size);
		return got == NULL ? SLUICE_ENOMEM : SLUICE_ESTATE;
	}
	stat_add(lim, sluice__limiter_tls.slot, ST_INSERTED, 1);
	stat_add(lim, sluice__limiter_tls.slot, ST_BYTES, size);
	return 1;
}

