/*
 * table.c - the keyed limiter's entries in liburcu's cds_lfht: hashing,
 * insertion and the memory budget (docs/limiter.md, "Table
 * design", "Budget and fail modes").
 *
 * One allocation per key: the lfht node, one cell per limit of the policy
 * (cell 0 is the "commit cell": a GCRA limit, else a one-word counter or
 * calendar limit, else a hidden COMMIT word), the key length and the key
 * bytes (struct entry, store_internal.h). Keys are hashed with XXH3 keyed
 * by a per-limiter random secret (limiter.c, fill_secret()). Lookups run
 * inside an RCU read-side section (urcu-memb; lookup() in
 * store_internal.h); a missing key is inserted with cds_lfht_add_unique(),
 * and a thread that loses the insertion race frees its never-published node
 * and uses the winner's, so both decisions count in one entry.
 *
 * The budget (max_keys, max_bytes) is charged before an insert and given
 * back when the entry is freed (sweep.c, after a grace period): a relaxed
 * fetch_add with rollback, so two inserters near the limit may both fail
 * (each sees the other's transient charge) but never both pass beyond it.
 */
#include "limiter/store_internal.h"

unsigned long sluice__limiter_initial_buckets(const struct sluice_limiter *lim)
{
	return lim->initial_buckets;
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

/* store_internal.h. A lost race frees our never-published node. */
struct entry *sluice__limiter_insert(struct sluice_limiter *lim, unsigned long hash,
				     const struct lookup_key *k)
{
	size_t size = entry_size(lim, k->len);

	if (!charge(lim, size)) {
		/* A racing thread may just have inserted this key. */
		return lookup(lim, hash, k);
	}
	struct entry *e = lim_alloc(lim, size);
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
	cds_lfht_node_init(&e->node);

	/* cds_lfht_add_unique() publishes the node with a full barrier. */
	TSAN_RELEASE(e);
	struct cds_lfht_node *got = cds_lfht_add_unique(lim->ht, hash, match_key, k, &e->node);
	if (got != &e->node) {
		/* Lost the race: ours was never published; use the winner's. */
		lim_free(lim, e, size);
		sluice__limiter_uncharge(lim, size);
		TSAN_ACQUIRE(got);
		return caa_container_of(got, struct entry, node);
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
	cds_lfht_node_init(&e->node);
	/* cds_lfht_add_unique() publishes the node with a full barrier. */
	TSAN_RELEASE(e);
	rcu_read_lock();
	struct cds_lfht_node *got = cds_lfht_add_unique(lim->ht, hash_key(lim, key, key_len),
							 match_key, &k, &e->node);
	read_unlock(lim);
	if (got != &e->node) {
		lim_free(lim, e, size);
		sluice__limiter_uncharge(lim, size);
		return SLUICE_ESTATE;
	}
	stat_add(lim, sluice__limiter_tls.slot, ST_INSERTED, 1);
	stat_add(lim, sluice__limiter_tls.slot, ST_BYTES, size);
	return 1;
}

