/*
 * limiter.c - the keyed limiter: key -> entry of cells in an RCU index.
 * This file creates and destroys a limiter, lays out its entries and its
 * cell order, and sums its statistics; the store's work is spread over the
 * files of src/limiter/ by job (docs/limiter.md, "Files"):
 *
 *   store_internal.h  the structures and inline helpers the files share
 *   thread.c          per-thread statistics stripes, urcu registration
 *   table.c           entries, the index (lookup, insertion, removal,
 *                     resizing), hashing, the memory budget
 *   decide.c          all-or-nothing decisions and the hot path; the entry
 *                     points admit, peek, acquire, release, admit_batch and
 *                     the engine's reserve, cancel, check
 *   sweep.c           reclaim of idle entries, the maintenance thread
 *   limit_kind.c      each limit kind's cell operations
 *
 * A limiter made by a layer above (Redis: backend_internal.h) holds only
 * its operations table and state; every public function hands over to it.
 *
 * The cell order chosen here carries two of the proofs elsewhere: cell 0 is
 * committed last and tombstoned by the sweeper (sweep.c, "Reclaim"), and
 * the order of cells 1..k-1 - exact cancels first, then the other GCRA
 * limits shallowest first - keeps a refused request from consuming
 * anything except between two GCRA limits (decide.c, "All-or-nothing").
 * Destroy frees the entries still linked after one grace period (a
 * caller's read-side section may still hold one); the index has no
 * threads of its own.
 */
#include <sluice/limiter.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "limiter/store_internal.h"

static void *default_malloc(void *user, size_t size)
{
	(void)user;
	return malloc(size);
}

static void default_free(void *user, void *ptr, size_t size)
{
	(void)user;
	(void)size;
	free(ptr);
}

/* ---- create / destroy / stats ---- */

static int fill_secret(struct sluice_limiter *lim, const struct sluice_limiter_options *o)
{
	unsigned char seed[32];
	const void *src = seed;
	size_t len = sizeof seed;

	if (o->hash_secret != NULL) {
		src = o->hash_secret;
		len = o->hash_secret_len;
	} else {
		size_t have = 0;
		while (have < sizeof seed) {
			ssize_t r = getrandom(seed + have, sizeof seed - have, 0);
			if (r < 0) {
				if (errno == EINTR)
					continue;
				return SLUICE_EUNSUPPORTED;
			}
			have += (size_t)r;
		}
	}
	/* Derive a full-size XXH3 secret of good quality from any seed. */
	if (XXH3_generateSecret(lim->secret, sizeof lim->secret, src, len) != XXH_OK)
		return SLUICE_EINVAL;
	return SLUICE_OK;
}

int sluice__limiter_create_backend(struct sluice_limiter **out, const struct sluice__limiter_ops *ops,
				   void *backend)
{
	size_t raw_size = sizeof(struct sluice_limiter) + SLUICE_CACHELINE;
	void *raw = calloc(1, raw_size);
	if (raw == NULL) {
		ops->destroy(backend);
		return SLUICE_ENOMEM;
	}
	uintptr_t p = ((uintptr_t)raw + SLUICE_CACHELINE - 1) & ~(uintptr_t)(SLUICE_CACHELINE - 1);
	struct sluice_limiter *lim = (struct sluice_limiter *)p;
	lim->raw = raw;
	lim->raw_size = raw_size;
	lim->free_fn = default_free;
	lim->store = ops;
	lim->backend = backend;
	*out = lim;
	return SLUICE_OK;
}

void *sluice__limiter_backend(struct sluice_limiter *lim, const struct sluice__limiter_ops *ops)
{
	return lim != NULL && lim->store == ops ? lim->backend : NULL;
}

/* Largest options.initial_buckets (keys the first array is sized for). */
#define MAX_INITIAL_BUCKETS (UINT64_C(1) << 32)

int sluice_limiter_create(struct sluice_limiter **out, const struct sluice_limit *limits,
			  size_t nlimits, const struct sluice_limiter_options *opts)
{
	struct sluice_limiter_options o;

	if (out == NULL)
		return SLUICE_EINVAL;
	*out = NULL;
	if (limits == NULL || nlimits == 0)
		return SLUICE_EINVAL;
	if (nlimits > SLUICE_LIMITER_MAX_LIMITS)
		return SLUICE_ETOOBIG;
	memset(&o, 0, sizeof o);
	if (opts != NULL) {
		/* A size this library does not know is refused. */
		if (opts->size != sizeof o)
			return SLUICE_EINVAL;
		memcpy(&o, opts, sizeof o);
	}
	if (o.fail_mode > SLUICE_FAIL_CLOSED || (o.flags & ~SLUICE_LIMITER_CALLER_REGISTERS_RCU) ||
	    (o.hash_secret != NULL && o.hash_secret_len == 0) ||
	    ((o.malloc_fn == NULL) != (o.free_fn == NULL)) ||
	    (o.initial_buckets & (o.initial_buckets - 1)) != 0)
		return SLUICE_EINVAL;
	if (o.initial_buckets > MAX_INITIAL_BUCKETS)
		return SLUICE_ETOOBIG;
	size_t nslots = 0;
	for (size_t i = 0; i < nlimits; i++) {
		if (limits[i].kind == SLUICE__LIMIT_COMMIT ||
		    sluice__limit_ops_of(limits[i].kind) == NULL ||
		    sluice__limit_validate(&limits[i]) != SLUICE_OK)
			return SLUICE_EINVAL;
		nslots += limits[i].kind == SLUICE_LIMIT_SLOTS;
	}
	if (nslots > 1)
		return SLUICE_EINVAL;

	sluice_malloc_fn mf = o.malloc_fn != NULL ? o.malloc_fn : default_malloc;
	sluice_free_fn ff = o.free_fn != NULL ? o.free_fn : default_free;
	size_t raw_size = sizeof(struct sluice_limiter) + SLUICE_CACHELINE;
	void *raw = mf(o.alloc_user, raw_size);
	if (raw == NULL)
		return SLUICE_ENOMEM;
	uintptr_t p = ((uintptr_t)raw + SLUICE_CACHELINE - 1) & ~(uintptr_t)(SLUICE_CACHELINE - 1);
	struct sluice_limiter *lim = (struct sluice_limiter *)p;
	memset(lim, 0, sizeof *lim);
	lim->raw = raw;
	lim->raw_size = raw_size;
	lim->malloc_fn = mf;
	lim->free_fn = ff;
	lim->alloc_user = o.alloc_user;
	lim->default_alloc = o.malloc_fn == NULL;
	lim->hash_mask = UINT64_MAX;
	lim->flags = o.flags;
	lim->fail_mode = o.fail_mode;
	lim->max_keys = o.max_keys;
	lim->max_bytes = o.max_bytes;
	/* Cell 0 (docs/limiter.md, "Kinds"): the GCRA limit of the deepest
	 * bucket (the least likely to refuse; ties: the caller's first); else
	 * the first one-word window that may be cell 0 (so a one-limit counter
	 * or calendar policy is one word and one CAS); else the COMMIT word.
	 * Then the other limits, committed in this order: those whose cancel is
	 * exact first (in the caller's order), then the other GCRA limits,
	 * shallowest bucket first, so that a refusal by a later limit needs
	 * exact cancels only, except between two GCRA limits, and there the
	 * likelier refuser is tried first (docs/limiter.md, "Refused requests
	 * consume nothing"). */
	size_t first = nlimits, first_gcra = nlimits;
	for (size_t i = 0; i < nlimits; i++)
		if (limits[i].kind == SLUICE_LIMIT_GCRA) {
			if (first_gcra == nlimits)
				first_gcra = i;
			if (first == nlimits || limits[i].rate.tolerance_ns > limits[first].rate.tolerance_ns)
				first = i;
		}
	for (size_t i = 0; i < nlimits && first == nlimits; i++) {
		const struct sluice__limit_ops *op = sluice__limit_ops_of(limits[i].kind);
		if (op->commit_ok != NULL && op->commit_ok(&limits[i]))
			first = i;
	}
	uint32_t n = 0;
	if (first < nlimits) {
		lim->limits[n] = limits[first];
		lim->user_index[n++] = (uint32_t)first;
	} else {
		memset(&lim->limits[n], 0, sizeof lim->limits[n]);
		lim->limits[n].kind = SLUICE__LIMIT_COMMIT;
		lim->user_index[n++] = UINT32_MAX;
	}
	for (size_t i = 0; i < nlimits; i++) {
		if (i == first || !sluice__limit_ops_of(limits[i].kind)->cancel_exact)
			continue;
		lim->limits[n] = limits[i];
		lim->user_index[n++] = (uint32_t)i;
	}
	for (size_t i = 0; i < nlimits; i++) { /* the other GCRA limits, by depth */
		if (i == first || limits[i].kind != SLUICE_LIMIT_GCRA)
			continue;
		uint32_t at = n++;
		while (at > 0 && lim->limits[at - 1].kind == SLUICE_LIMIT_GCRA && at - 1 > 0 &&
		       lim->limits[at - 1].rate.tolerance_ns > limits[i].rate.tolerance_ns) {
			lim->limits[at] = lim->limits[at - 1];
			lim->user_index[at] = lim->user_index[at - 1];
			at--;
		}
		lim->limits[at] = limits[i];
		lim->user_index[at] = (uint32_t)i;
	}
	/* The dry run's order (struct comment). */
	lim->ncheck = 0;
	for (uint32_t i = 0; i < n; i++)
		if (first_gcra < nlimits && lim->user_index[i] == first_gcra)
			lim->check_order[lim->ncheck++] = i;
	for (uint32_t u = 0; u < nlimits; u++)
		for (uint32_t i = 0; i < n; i++)
			if (lim->user_index[i] == u && u != first_gcra)
				lim->check_order[lim->ncheck++] = i;
	lim->one_gcra = n == 1 && lim->limits[0].kind == SLUICE_LIMIT_GCRA;
	lim->nlimits = n;
	lim->slots_cell = -1;
	size_t off = 0; /* struct entry has no header */
	for (uint32_t i = 0; i < n; i++) {
		lim->ops[i] = sluice__limit_ops_of(lim->limits[i].kind);
		if (lim->limits[i].kind == SLUICE_LIMIT_SLOTS)
			lim->slots_cell = (int32_t)i;
		lim->cell_off[i] = (uint32_t)off;
		off += lim->ops[i]->cell_size(&lim->limits[i]);
	}
	lim->len_off = (uint32_t)off;
	lim->key_off = (uint32_t)(off + sizeof(uint16_t));
	/* The one-GCRA policy: inline slots (store_internal.h). Its entry
	 * is the cell at 0 and the key at 8, after a header word. */
	lim->inline_keys = lim->one_gcra;
	lim->hdr = 0;
	if (lim->inline_keys) {
		lim->hdr = 8;
		lim->len_off = 0; /* unused: the length is in the header */
		lim->key_off = 8;
	}

	int rc = fill_secret(lim, &o);
	if (rc != SLUICE_OK)
		goto fail_raw;
	rc = thread_enter(lim);
	if (rc != SLUICE_OK)
		goto fail_raw;
	if (pthread_mutex_init(&lim->sweep_lock, NULL) != 0) {
		rc = SLUICE_ENOMEM;
		goto fail_raw;
	}
	if (pthread_mutex_init(&lim->resize_lock, NULL) != 0) {
		rc = SLUICE_ENOMEM;
		goto fail_sweep_lock;
	}
	if (pthread_mutex_init(&lim->m_lock, NULL) != 0) {
		rc = SLUICE_ENOMEM;
		goto fail_resize_lock;
	}
	pthread_condattr_t ca;
	if (pthread_condattr_init(&ca) != 0) {
		rc = SLUICE_ENOMEM;
		goto fail_m_lock;
	}
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	int cr = pthread_cond_init(&lim->m_cond, &ca);
	pthread_condattr_destroy(&ca);
	if (cr != 0) {
		rc = SLUICE_ENOMEM;
		goto fail_m_lock;
	}
	/* Default size: the most keys the budget admits when there is one (at
	 * most 2^20), so that a server's flood of new keys resizes rarely. A
	 * byte budget alone bounds the keys too: by max_bytes over the charge
	 * of the smallest entry (the empty key). The array grows (and
	 * shrinks) by itself (table.c). */
	uint64_t keys_bound = o.max_keys;
	if (o.max_bytes != 0) {
		/* The retire prefix is given back once the key moves in. */
		uint64_t by_bytes = o.max_bytes / (entry_size(lim, 0) - entry_pre(lim, 0) + table_share(lim));
		if (keys_bound == 0 || by_bytes < keys_bound)
			keys_bound = by_bytes;
	}
	unsigned long init = 1024;
	if (o.initial_buckets != 0)
		init = (unsigned long)o.initial_buckets;
	else
		while (init < keys_bound && init < (1ul << 20))
			init <<= 1;
	lim->initial_buckets = init;
	struct index *ix = sluice__limiter_index_new(lim, sluice__limiter_index_lg_for(lim, init, false));
	if (ix == NULL) {
		rc = SLUICE_ENOMEM;
		goto fail_cond;
	}
	/* relaxed: the limiter is not shared yet; the caller publishes it. */
	atomic_store_explicit(&lim->index, ix, memory_order_relaxed); /* relaxed: why above */
	*out = lim;
	return SLUICE_OK;

fail_cond:
	pthread_cond_destroy(&lim->m_cond);
fail_m_lock:
	pthread_mutex_destroy(&lim->m_lock);
fail_resize_lock:
	pthread_mutex_destroy(&lim->resize_lock);
fail_sweep_lock:
	pthread_mutex_destroy(&lim->sweep_lock);
fail_raw:
	ff(o.alloc_user, raw, raw_size);
	return rc;
}

/* Remove and free every entry of a limiter no caller uses any more (or not
 * yet: a restore that failed half-way). The index has no threads of its
 * own, and destroy first waits a grace period for callers' read-side
 * sections, so entries are freed at once and the array is emptied in
 * place. account: give the entries back to the budget and
 * count them as reclaimed (the limiter lives on). Entries of earlier sweeps
 * wait in call_rcu. */
static void remove_all(struct sluice_limiter *lim, bool account)
{
	/* relaxed: no concurrent caller (above). */
	struct index *ix = atomic_load_explicit(&lim->index, memory_order_relaxed); /* relaxed: why above */
	uint64_t n = 0, bytes = 0;

	for (uint64_t pos = 0; pos < index_slots(ix); pos++) {
		_Atomic uint64_t *at = slot_word(ix, pos);
		/* relaxed: as above. */
		uint64_t w = atomic_load_explicit(at, memory_order_relaxed); /* relaxed: why above */
		/* relaxed: as above. */
		atomic_store_explicit(at, SLOT_EMPTY, memory_order_relaxed); /* relaxed: why above */
		struct entry *e = slot_entry(at, w);
		if (e == NULL)
			continue;
		n++;
		if (w & SLOT_INLINE) { /* the slot itself: nothing allocated */
			if (account)
				sluice__limiter_uncharge(lim, 0);
			continue;
		}
		size_t size = entry_size(lim, key_len_of(lim, e));
		if (account)
			sluice__limiter_uncharge(lim, size);
		bytes += size;
		lim_free(lim, entry_base(lim, e), size);
	}
	/* relaxed: as above. */
	atomic_store_explicit(&ix->used, 0, memory_order_relaxed); /* relaxed: why above */
	atomic_store_explicit(&ix->dead, 0, memory_order_relaxed); /* relaxed: as above */
	if (account && n != 0) {
		stat_add(lim, sluice__limiter_tls.slot, ST_RECLAIMED, n);
		stat_add(lim, sluice__limiter_tls.slot, ST_BYTES, (uint64_t)0 - bytes);
	}
}

/* Destroy, first half: everything but the pending deferred frees and the
 * struct itself. Returns whether call_rcu callbacks may still use lim.
 * synced: a grace period has passed since the last caller's read-side
 * section (destroy_many waits for one for all its limiters). */
static bool destroy_begin(struct sluice_limiter *lim, bool synced)
{
	if (lim->m_running)
		sluice_limiter_maintenance_stop(lim);
	(void)thread_enter(lim);

	/* A caller's read-side section that began before destroy (an engine
	 * request still holding an entry) may still read entries: one grace
	 * period, then nothing reaches them. */
	if (!synced)
		synchronize_rcu();
	remove_all(lim, false);
	/* relaxed: no caller uses the limiter any more. */
	sluice__limiter_index_free(atomic_load_explicit(&lim->index, memory_order_relaxed)); /* relaxed: why above */
	/* relaxed: the sweeps that set it happened-before this call. */
	return atomic_load_explicit(&lim->deferred, memory_order_relaxed); /* relaxed: why above */
}

static void destroy_end(struct sluice_limiter *lim)
{
	pthread_cond_destroy(&lim->m_cond);
	pthread_mutex_destroy(&lim->m_lock);
	pthread_mutex_destroy(&lim->resize_lock);
	pthread_mutex_destroy(&lim->sweep_lock);
	lim->free_fn(lim->alloc_user, lim->raw, lim->raw_size);
}

void sluice_limiter_destroy(struct sluice_limiter *lim)
{
	if (lim == NULL)
		return;
	if (lim->store != NULL) {
		if (lim->m_running)
			sluice_limiter_maintenance_stop(lim);
		lim->store->destroy(lim->backend);
		lim->free_fn(lim->alloc_user, lim->raw, lim->raw_size);
		return;
	}
	if (destroy_begin(lim, false))
		rcu_barrier(); /* pending free_batch_cb() / free_index_cb() use lim */
	destroy_end(lim);
}

void sluice__limiter_destroy_many(struct sluice_limiter *const *lims, size_t n)
{
	bool deferred = false, local = false;

	for (size_t i = 0; i < n; i++)
		if (lims[i] != NULL && lims[i]->store == NULL)
			local = true;
	if (local)
		synchronize_rcu(); /* once for all (destroy_begin()) */
	for (size_t i = 0; i < n; i++)
		if (lims[i] != NULL && lims[i]->store == NULL && destroy_begin(lims[i], true))
			deferred = true;
	if (deferred)
		rcu_barrier(); /* once for all: pending free_batch_cb() use them */
	/* Each limiter is looked at once more, then freed (a limiter of
	 * another store by its own destroy). */
	for (size_t i = 0; i < n; i++) {
		if (lims[i] == NULL)
			continue;
		if (lims[i]->store != NULL)
			sluice_limiter_destroy(lims[i]);
		else
			destroy_end(lims[i]);
	}
}

int sluice_limiter_stats(const struct sluice_limiter *lim, struct sluice_limiter_stats *out)
{
	uint64_t sum[ST_COUNT] = { 0 };

	if (lim == NULL || out == NULL || out->size < sizeof *out)
		return SLUICE_EINVAL;
	if (lim->store != NULL)
		return lim->store->stats(lim->backend, out);
	for (int s = 0; s <= SLOTS; s++)
		for (int c = 0; c < ST_COUNT; c++)
			/* relaxed: counters; each stripe word is read once. */
			sum[c] += atomic_load_explicit(&lim->slots[s].c[c], memory_order_relaxed); /* relaxed: why above */
	out->admitted = sum[ST_ADMITTED];
	out->denied = sum[ST_DENIED];
	out->degraded = sum[ST_DEGRADED];
	out->inserted = sum[ST_INSERTED];
	out->reclaimed = sum[ST_RECLAIMED];
	out->live_keys = sum[ST_INSERTED] - sum[ST_RECLAIMED];
	out->bytes = sum[ST_BYTES];
	return SLUICE_OK;
}

/* ---- snapshots (snapshot.c; limiter_internal.h) ---- */

size_t sluice__limiter_policy(const struct sluice_limiter *lim, struct sluice_limit *out)
{
	size_t n = 0;

	for (uint32_t i = 0; i < lim->nlimits; i++)
		if (lim->user_index[i] != UINT32_MAX) {
			out[lim->user_index[i]] = lim->limits[i];
			n++;
		}
	return n;
}

int sluice__limiter_restore_begin(struct sluice_limiter *lim)
{
	if (lim->store != NULL)
		return SLUICE_EUNSUPPORTED;
	int rc = thread_enter(lim);
	if (rc != SLUICE_OK)
		return rc;
	bool empty = true;
	rcu_read_lock();
	struct index *ix = index_of(lim);
	for (uint64_t pos = 0; pos < index_slots(ix) && empty; pos++) {
		_Atomic uint64_t *at = slot_word(ix, pos);
		/* relaxed: only whether a live word exists (a limiter not yet
		 * shared). */
		empty = slot_entry(at, atomic_load_explicit(at, memory_order_relaxed)) == NULL; /* relaxed: why above */
	}
	read_unlock(lim);
	return empty ? SLUICE_OK : SLUICE_ESTATE;
}

void sluice__limiter_clear(struct sluice_limiter *lim)
{
	if (lim->store == NULL && thread_enter(lim) == SLUICE_OK)
		remove_all(lim, true);
}
