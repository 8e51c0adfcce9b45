/*
 * sweep.c - reclaiming idle keys: the sweep, its deferred frees and the
 * maintenance thread that runs it (docs/limiter.md, "Reclaim").
 *
 * Reclaim. An entry is idle when all its cells are full. The sweeper loads
 * cell 0 (relaxed, then an acquire fence), checks cells 1..k-1 full, and CASes
 * cell 0 from the value it loaded to a tombstone. An admission commits cell 0
 * last, after a release fence (decide.c, entry_decide()), so if the
 * sweeper's load saw any admission's cell-0 commit (or a later RMW of cell
 * 0), it also sees that admission's
 * cells 1..k-1; and an admission whose cell-0 commit comes later makes the
 * CAS fail, because beside other cells cell 0 never takes the same value
 * twice: only admissions write it (sluice__limiter_cancel() never restores
 * it), a GCRA word only grows, and a window word advances strictly in
 * (window index, count) - a count grows within a window, the index moves
 * forward - so it could repeat only after its index wraps, which
 * limit_kind.c allows no sooner than a day of the callers' time (2^24
 * counter or 2^32 calendar windows), far longer than a sweep's load-to-CAS.
 * Once the CAS succeeds no admission can complete on the entry (cost > 0
 * commits on a tombstone word are denied: the tombstones are word values no
 * admission writes), and nothing it held is lost (it was full). The
 * tombstoned entry is removed from the index (sluice__limiter_unlink(),
 * table.c); admitters that find it help remove it and retry the lookup,
 * which then inserts a fresh entry. Whoever's unlink returns 0 has
 * removed it (exactly one does); if that is not the sweeper, it stores
 * TOMB_UNLINKED in cell 0 and the sweeper waits for that store before
 * handing the entry to call_rcu (in a batch, so entries carry no
 * rcu_head): every reader that could still reach it started before the
 * grace period that call_rcu waits for.
 *
 * The walk. A sweep visits the current array's slots from a cursor (a slot
 * position, kept across sweeps with the array's generation; after a resize
 * it restarts at the same fraction of the new array), at most one full
 * cycle per call. A resize during a sweep leaves it walking the old array
 * (still allocated: its read-side section); entries inserted into the new
 * one meanwhile wait for the next sweep.
 */
#include <sluice/limiter.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "limiter/store_internal.h"


/* Deferred frees: entries reclaimed by one sweep, or allocated entries
 * whose key it moved into an inline slot, freed by one call_rcu. */
#define BATCH_CAP 256
struct batch {
	struct rcu_head head; /* first chunk only */
	struct sluice_limiter *lim;
	struct batch *next;
	size_t n;
	bool moved; /* the keys live on in inline slots: give back bytes only */
	struct entry *e[BATCH_CAP];
};

static void free_batch_cb(struct rcu_head *head)
{
	/* TSan: the batch was filled before call_rcu() handed it over. */
	TSAN_ACQUIRE(head);
	struct batch *b = caa_container_of(head, struct batch, head);
	struct sluice_limiter *lim = b->lim;
	uint64_t bytes = 0;

#ifdef SLUICE_TSAN
	/* Readers' accesses happened before this grace period ended. */
	TSAN_ACQUIRE(&lim->tsan_gp);
#endif
	while (b != NULL) {
		struct batch *next = b->next;
		for (size_t i = 0; i < b->n; i++) {
			size_t size = entry_size(lim, key_len_of(lim, b->e[i]));
			if (b->moved)
				sluice__limiter_uncharge_bytes(lim, size);
			else
				sluice__limiter_uncharge(lim, size);
			lim_free(lim, entry_base(lim, b->e[i]), size);
			bytes += size;
		}
		lim_free(lim, b, sizeof *b);
		b = next;
	}
	/* The call_rcu worker is liburcu's thread: use the shared stripe. */
	stat_add(lim, SLOTS, ST_BYTES, (uint64_t)0 - bytes);
}

static void batch_hand_over(struct sluice_limiter *lim, struct batch *head)
{
	if (head == NULL)
		return;
	/* relaxed: read by destroy, which the caller orders after us. */
	atomic_store_explicit(&lim->deferred, true, memory_order_relaxed); /* relaxed: why above */
	TSAN_RELEASE(&head->head);
	call_rcu(&head->head, free_batch_cb);
}

/* Is e idle at now_ns? Returns the cell-0 word it judged in *w0. */
static bool entry_idle(struct sluice_limiter *lim, struct entry *e, uint64_t now_ns, uint64_t *w0)
{
	const struct sluice__limit_ops *op0 = lim->ops[0];

	*w0 = op0->word(cell_of(lim, e, 0));
	if (!op0->word_is_idle(*w0, &lim->limits[0], now_ns))
		return false;
	/* acquire: pairs with the release fence each admission issues before
	 * committing cell 0. If *w0 is that commit (or any later RMW of cell 0:
	 * every write to cell 0 after publication is an RMW, so it continues
	 * the release sequence), the admission's cells 1..k-1 are visible to
	 * the loads below. */
	atomic_thread_fence(memory_order_acquire); /* acquire: why above */
	for (uint32_t i = 1; i < lim->nlimits; i++) {
		void *c = cell_of(lim, e, i);
		/* A slot whose lease has expired is one nobody will release (its
		 * holder crashed or forgot): reclaim it, as the next acquire
		 * would, so that such an entry can become idle. Slots are never
		 * cell 0, and a reap is one more RMW on cell i, so the argument
		 * above is unchanged; a lease still running keeps the entry. */
		if ((int32_t)i == lim->slots_cell && lim->limits[i].slots.lease_ttl_ns != 0)
			(void)sluice_slots_reap(c, &lim->limits[i].slots, now_ns);
		if (!lim->ops[i]->is_idle(c, &lim->limits[i], now_ns))
			return false;
	}
	return true;
}

/* Make room for one more entry at the tail *cur of the batch list *head
 * (before a tombstone is set, so that its entry always has a place); false
 * if no memory. */
static bool batch_room(struct sluice_limiter *lim, struct batch **head, struct batch **cur, bool moved)
{
	if (*cur != NULL && (*cur)->n < BATCH_CAP)
		return true;
	struct batch *b = lim_alloc(lim, sizeof *b);
	if (b == NULL)
		return false;
	b->lim = lim;
	b->next = NULL;
	b->n = 0;
	b->moved = moved;
	if (*cur != NULL)
		(*cur)->next = b;
	else
		*head = b;
	*cur = b;
	return true;
}

static int sweep_locked(struct sluice_limiter *lim, uint64_t now_ns, size_t budget,
			size_t *reclaimed)
{
	const struct sluice__limit_ops *op0 = lim->ops[0];
	struct batch *head = NULL, *cur = NULL, *mhead = NULL, *mcur = NULL;
	int rc = SLUICE_OK;
	size_t visited = 0, got = 0, inline_got = 0;

	/* Moving short keys into inline slots needs resize_lock (one mover,
	 * no resize meanwhile; table.c, "Moving in"); a sweep that cannot have
	 * it at once only reclaims. Taken before the read-side section: the
	 * array the walk reads is then the one no resize replaces. */
	bool mover = lim->inline_keys && pthread_mutex_trylock(&lim->resize_lock) == 0;
	rcu_read_lock();
	struct index *ix = index_of(lim);
	uint64_t nslots = index_slots(ix), pos = lim->cursor;
	if (lim->cursor_gen != ix->gen) {
		/* Resized since: the same fraction of the new array. */
		pos = lim->cursor_slots == 0 ? 0
		      : (uint64_t)((double)pos / (double)lim->cursor_slots * (double)nslots);
	}
	if (pos >= nslots)
		pos = 0;
	for (uint64_t step = 0; step < nslots && visited < budget; step++) {
		_Atomic uint64_t *at = slot_word(ix, pos);
		/* acquire: pairs with the insert's CAS (table.c): the entry's
		 * cells and key are visible. */
		uint64_t w = atomic_load_explicit(at, memory_order_acquire); /* acquire: why above */
		pos = pos + 1 == nslots ? 0 : pos + 1;
		struct entry *e = slot_entry(at, w);
		if (e == NULL)
			continue;
		visited++;

		uint64_t w0;
		if (!entry_idle(lim, e, now_ns, &w0)) {
			struct entry *out;
			if (mover && !(w & SLOT_INLINE) && batch_room(lim, &mhead, &mcur, true) &&
			    sluice__limiter_move_in(lim, at, w, &out))
				mcur->e[mcur->n++] = out;
			continue;
		}
		/* An inline slot's entry has nothing to free: decided now, while
		 * it is live (its unlink rewrites the slot's word). */
		bool in_slot = entry_is_inline(lim, e);
		if (!in_slot && !batch_room(lim, &head, &cur, false)) {
			rc = SLUICE_ENOMEM;
			break;
		}
		void *c0 = cell_of(lim, e, 0);
		if (!op0->tomb(c0, w0))
			continue; /* an admission landed since we looked */
		if (sluice__limiter_unlink(lim, e, sluice__limiter_entry_hash(lim, e)) != SLUICE_OK) {
			/* An admitter's unlink won; wait until it has returned. */
			while (!op0->is_unlinked(c0))
				sched_yield();
		}
		if (in_slot)
			inline_got++;
		else
			cur->e[cur->n++] = e;
		got++;
	}
	lim->cursor = pos;
	lim->cursor_gen = ix->gen;
	lim->cursor_slots = nslots;
	read_unlock(lim);
	if (mover)
		pthread_mutex_unlock(&lim->resize_lock);
	if (head != NULL && head->n == 0) {
		lim_free(lim, head, sizeof *head);
		head = NULL;
	}
	if (mhead != NULL && mhead->n == 0) {
		lim_free(lim, mhead, sizeof *mhead);
		mhead = NULL;
	}
	batch_hand_over(lim, head);
	batch_hand_over(lim, mhead);
	/* An inline slot gives its budget back at once: no memory waits for a
	 * grace period (the slot is reused by the next resize). */
	for (size_t i = 0; i < inline_got; i++)
		sluice__limiter_uncharge(lim, 0);
	if (got != 0)
		stat_add(lim, sluice__limiter_tls.slot, ST_RECLAIMED, got);
	*reclaimed = got;
	return rc;
}

int sluice_limiter_sweep(struct sluice_limiter *lim, uint64_t now_ns, size_t budget_entries,
			 size_t *reclaimed)
{
	size_t got = 0;

	if (reclaimed != NULL)
		*reclaimed = 0;
	if (lim == NULL)
		return SLUICE_EINVAL;
	if (lim->store != NULL)
		return lim->store->sweep != NULL ? lim->store->sweep(lim->backend, now_ns, budget_entries, reclaimed)
					       : SLUICE_OK; /* the store expires idle keys itself */
	int rc = thread_enter(lim);
	if (rc != SLUICE_OK)
		return rc;
	pthread_mutex_lock(&lim->sweep_lock);
	rc = sweep_locked(lim, now_ns, budget_entries, &got);
	pthread_mutex_unlock(&lim->sweep_lock);
	if (reclaimed != NULL)
		*reclaimed = got;
	return rc;
}

/* ---- maintenance thread ---- */

static uint64_t default_clock(void *user)
{
	(void)user;
	uint64_t now = sluice_monotonic_ns();
	return now > SLUICE_LIMITER_SWEEP_LAG_NS ? now - SLUICE_LIMITER_SWEEP_LAG_NS : 0;
}

static void *maintenance_main(void *arg)
{
	struct sluice_limiter *lim = arg;
	bool own_rcu = lim->flags & SLUICE_LIMITER_CALLER_REGISTERS_RCU;

	/* Our own thread: with CALLER_REGISTERS_RCU nobody else registers it. */
	if (own_rcu)
		rcu_register_thread();
	pthread_mutex_lock(&lim->m_lock);
	while (!lim->m_stop) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		uint64_t at = (uint64_t)ts.tv_sec * SLUICE_NS_PER_SEC + (uint64_t)ts.tv_nsec;
		at = sluice__add_sat(at, lim->m_interval_ns);
		ts.tv_sec = (time_t)(at / SLUICE_NS_PER_SEC);
		ts.tv_nsec = (long)(at % SLUICE_NS_PER_SEC);
		int w = 0;
		while (!lim->m_stop && w != ETIMEDOUT)
			w = pthread_cond_timedwait(&lim->m_cond, &lim->m_lock, &ts);
		if (lim->m_stop)
			break;
		pthread_mutex_unlock(&lim->m_lock);
		sluice_limiter_sweep(lim, lim->m_clock(lim->m_clock_user), lim->m_budget, NULL);
		pthread_mutex_lock(&lim->m_lock);
	}
	pthread_mutex_unlock(&lim->m_lock);
	if (own_rcu)
		rcu_unregister_thread();
	return NULL;
}

int sluice_limiter_maintenance_start(struct sluice_limiter *lim, uint64_t interval_ns,
				     size_t budget_entries, sluice_clock_fn clock, void *clock_user)
{
	if (lim == NULL || interval_ns == 0 || budget_entries == 0)
		return SLUICE_EINVAL;
	if (lim->m_running)
		return SLUICE_ESTATE;
	if (lim->store != NULL && lim->store->sweep == NULL) {
		lim->m_running = true; /* nothing to sweep: no thread */
		return SLUICE_OK;
	}
	lim->m_stop = false;
	lim->m_interval_ns = interval_ns;
	lim->m_budget = budget_entries;
	lim->m_clock = clock != NULL ? clock : default_clock;
	lim->m_clock_user = clock_user;
	if (pthread_create(&lim->m_thread, NULL, maintenance_main, lim) != 0)
		return SLUICE_ETHREAD;
	lim->m_running = true;
	return SLUICE_OK;
}

int sluice_limiter_maintenance_stop(struct sluice_limiter *lim)
{
	if (lim == NULL)
		return SLUICE_EINVAL;
	if (!lim->m_running)
		return SLUICE_ESTATE;
	if (lim->store != NULL && lim->store->sweep == NULL) {
		lim->m_running = false;
		return SLUICE_OK;
	}
	pthread_mutex_lock(&lim->m_lock);
	lim->m_stop = true;
	pthread_cond_signal(&lim->m_cond);
	pthread_mutex_unlock(&lim->m_lock);
	pthread_join(lim->m_thread, NULL);
	lim->m_running = false;
	return SLUICE_OK;
}

/* ---- the snapshot walk (snapshot.c; limiter_internal.h) ---- */

/* Entries copied per read-side section. */
#define VISIT_CHUNK 1024

/* Copy one entry's words (in the caller's limit order) and hand them to fn;
 * 0 without calling fn for a dead entry. Cell 0 first, then an acquire
 * fence, then the others: the sweeper's order (entry_idle()). */
static int visit_entry(struct sluice_limiter *lim, struct entry *e, uint64_t now_ns,
		       const uint32_t *cell_of_user, uint32_t nuser, uint64_t *buf,
		       sluice__limiter_visit_fn fn, void *user)
{
	const struct sluice__limit_ops *op0 = lim->ops[0];
	size_t nwords[SLUICE_LIMITER_MAX_LIMITS];
	uint64_t w0 = op0->word(cell_of(lim, e, 0));
	size_t off = 0;

	if (op0->is_tomb(w0))
		return 0; /* reclaimed: it was idle */
	/* acquire: pairs with the release fence each admission issues before
	 * committing cell 0 (entry_decide()). If w0 holds an admission's
	 * commit (or a later RMW of cell 0), that admission's cells 1..k-1 are
	 * visible to the copies below, so every admission counted in the saved
	 * cell 0 is counted in every saved cell (docs/limiter.md, "Snapshots"). */
	atomic_thread_fence(memory_order_acquire); /* acquire: why above */
	for (uint32_t u = 0; u < nuser; u++) {
		uint32_t c = cell_of_user[u];
		if (c == 0) {
			buf[off] = w0;
			nwords[u] = 1;
		} else {
			nwords[u] = lim->ops[c]->save(cell_of(lim, e, c), &lim->limits[c], now_ns,
						      buf + off);
		}
		off += nwords[u];
	}
	return fn(user, (const unsigned char *)e + lim->key_off, key_len_of(lim, e), buf, nwords);
}

int sluice__limiter_visit(struct sluice_limiter *lim, uint64_t now_ns, sluice__limiter_visit_fn fn,
			  void *user)
{
	uint32_t cell_of_user[SLUICE_LIMITER_MAX_LIMITS];
	uint32_t nuser = 0;
	size_t max_words = 0;

	if (lim->store != NULL)
		return SLUICE_EUNSUPPORTED;
	for (uint32_t i = 0; i < lim->nlimits; i++)
		if (lim->user_index[i] != UINT32_MAX) {
			cell_of_user[lim->user_index[i]] = i;
			nuser++;
			max_words += sluice__limit_saved_max(&lim->limits[i]);
		}
	int rc = thread_enter(lim);
	if (rc != SLUICE_OK)
		return rc;
	uint64_t *buf = malloc(max_words * sizeof *buf);
	if (buf == NULL)
		return SLUICE_ENOMEM;

	/* Holding sweep_lock, no entry is tombstoned (only sweeps do that),
	 * hence none is removed or freed during the walk; holding resize_lock,
	 * the array is not replaced (an insert that needs a resize waits for
	 * the walk), so the chunks walk one array, each slot once. Admits
	 * never take either lock; the maintenance thread's sweeps wait. */
	pthread_mutex_lock(&lim->sweep_lock);
	pthread_mutex_lock(&lim->resize_lock);
	uint64_t pos = 0, nslots = 1;
	while (rc == SLUICE_OK && pos < nslots) {
		rcu_read_lock();
		struct index *ix = index_of(lim);
		nslots = index_slots(ix);
		for (size_t n = 0; rc == SLUICE_OK && n < VISIT_CHUNK && pos < nslots; pos++) {
			_Atomic uint64_t *at = slot_word(ix, pos);
			/* acquire: pairs with the insert's CAS (table.c). */
			uint64_t w = atomic_load_explicit(at, memory_order_acquire); /* acquire: why above */
			struct entry *e = slot_entry(at, w);
			if (e == NULL)
				continue;
			n++;
			rc = visit_entry(lim, e, now_ns, cell_of_user, nuser, buf, fn, user);
		}
		read_unlock(lim);
	}
	pthread_mutex_unlock(&lim->resize_lock);
	pthread_mutex_unlock(&lim->sweep_lock);
	free(buf);
	return rc;
}

