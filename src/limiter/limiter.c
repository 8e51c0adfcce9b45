/*
 * limiter.c - the keyed limiter: key -> entry of cells in liburcu's cds_lfht.
 *
 * Entries. One allocation per key: the lfht node, one cell per limit of the
 * policy (cell 0 is the "commit cell": a GCRA limit, else a one-word
 * counter or calendar limit, else a hidden COMMIT word), the key length and
 * the key bytes. Keys are hashed with XXH3 keyed by a per-limiter random
 * secret. Lookups run inside an RCU read-side section (urcu-memb); a
 * missing key is inserted with cds_lfht_add_unique(), and a thread that
 * loses the insertion race frees its never-published node and uses the
 * winner's, so both decisions count in one entry.
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
 * wasted cannot be returned); the commit order makes that case need two
 * GCRA limits in one policy and a race between the dry run and the commit
 * (docs/limiter.md, "Refused requests"). So every cell always holds at
 * least the exact result of its non-cancelled operations and never less:
 * no cell ever admits more than its own limit allows.
 *
 * Reclaim. An entry is idle when all its cells are full. The sweeper loads
 * cell 0 (relaxed, then an acquire fence), checks cells 1..k-1 full, and CASes
 * cell 0 from the value it loaded to a tombstone. An admission commits cell 0
 * last, after a release fence, so if the sweeper's load saw any admission's
 * cell-0 commit (or a later RMW of cell 0), it also sees that admission's
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
 * tombstoned node is removed with cds_lfht_del(); admitters that find it
 * help remove it and retry the lookup, which then inserts a fresh entry.
 * Whoever's del returns 0 has unlinked it; if that is not the sweeper, it
 * stores TOMB_UNLINKED in cell 0 and the sweeper waits for that store
 * before handing the node to call_rcu (in a batch, so entries carry no
 * rcu_head).
 */
#include <sluice/limiter.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>

#include <urcu.h> /* memb flavor; must precede rculfhash.h */
#include <urcu/rculfhash.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "cells/gcra_internal.h"
#include "limiter/key_internal.h"
#include "limiter/limit_kind_internal.h"
#include "limiter/limiter_internal.h"
#include "redis/redis_backend_internal.h"
#include "common/util_internal.h"

/* ---- TSan: liburcu is not instrumented (docs/limiter.md, "TSan") ---- */
#if defined(__SANITIZE_THREAD__)
#define SLUICE_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SLUICE_TSAN 1
#endif
#endif
#ifdef SLUICE_TSAN
#include <sanitizer/tsan_interface.h>
#define TSAN_RELEASE(p) __tsan_release((void *)(p))
#define TSAN_ACQUIRE(p) __tsan_acquire((void *)(p))
#else
#define TSAN_RELEASE(p) ((void)0)
#define TSAN_ACQUIRE(p) ((void)0)
#endif

/* ---- striped statistics ---- */

/* Threads claim one of SLOTS exclusive stripes for their lifetime (single
 * writer: plain relaxed load + store); threads beyond that share the last
 * stripe with relaxed fetch_add. */
#define SLOTS 128
enum { ST_ADMITTED, ST_DENIED, ST_DEGRADED, ST_INSERTED, ST_RECLAIMED, ST_BYTES, ST_COUNT };

struct stat_slot {
	_Alignas(SLUICE_CACHELINE) _Atomic uint64_t c[ST_COUNT];
};
_Static_assert(sizeof(struct stat_slot) == SLUICE_CACHELINE, "one stripe per cache line");

static _Atomic unsigned char slot_owned[SLOTS];

struct thread_state {
	int slot;      /* stripe index, SLOTS = shared, -1 = not yet claimed */
	bool rcu;      /* registered with urcu-memb by sluice */
	bool keyed;    /* pthread key value set (destructor will run) */
};
static _Thread_local struct thread_state tls = { -1, false, false };

static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static pthread_key_t thread_key;
static int key_error;

static void thread_exit(void *unused)
{
	(void)unused;
	if (tls.rcu) {
		rcu_unregister_thread();
		tls.rcu = false;
	}
	if (tls.slot >= 0 && tls.slot < SLOTS)
		/* release: our last relaxed stripe stores happen-before the next
		 * owner's acquire CAS, so its read-modify-writes continue ours. */
		atomic_store_explicit(&slot_owned[tls.slot], 0, memory_order_release); /* release: why above */
	tls.slot = -1;
	tls.keyed = false;
}

static void key_create(void)
{
	key_error = pthread_key_create(&thread_key, thread_exit);
}

/* ---- the limiter ---- */

/* Cells of an entry: the policy's limits plus, without a GCRA limit, the
 * COMMIT word. */
#define NCELLS (SLUICE_LIMITER_MAX_LIMITS + 1)

struct entry {
	struct cds_lfht_node node;
	/* cells at cell_off[i] (8-byte aligned), then uint16_t key_len at
	 * len_off, then the key bytes at key_off. */
	unsigned char body[];
};
_Static_assert(sizeof(struct entry) == 16, "entry header is the lfht node");

/* Deferred frees: entries reclaimed by one sweep, freed by one call_rcu. */
#define BATCH_CAP 256
struct batch {
	struct rcu_head head; /* first chunk only */
	struct sluice_limiter *lim;
	struct batch *next;
	size_t n;
	struct entry *e[BATCH_CAP];
};

struct sluice_limiter {
	struct cds_lfht *ht;
	/* Non-NULL: created with options.redis; every public function hands
	 * over to limiter_redis.c and nothing below is used. */
	struct sluice__rlimiter *redis;
	uint32_t nlimits;
	uint32_t flags;
	uint32_t fail_mode;
	uint32_t len_off;
	uint32_t key_off;
	/* Internal cell order (docs/limiter.md, "Kinds"): cell 0 is a GCRA
	 * limit of the policy or the internal COMMIT word; user_index[i] is the
	 * caller's index of cell i (UINT32_MAX for the COMMIT word). */
	uint32_t cell_off[NCELLS];
	uint32_t user_index[NCELLS];
	int32_t slots_cell; /* cell of the SLOTS limit, -1: none */
	bool one_gcra;      /* one cell, a GCRA limit: decide_gcra1() */
	/* The dry run's order, and govern()'s: the caller's first GCRA limit,
	 * then the others in the caller's order (the COMMIT word skipped), so
	 * that a request several limits deny reports the same one, and ties
	 * govern the same way, whatever the commit order. */
	uint32_t check_order[NCELLS];
	uint32_t ncheck;
	const struct sluice__limit_ops *ops[NCELLS];
	struct sluice_limit limits[NCELLS];
	uint64_t max_keys;
	uint64_t max_bytes;
	sluice_malloc_fn malloc_fn;
	sluice_free_fn free_fn;
	void *alloc_user;
	void *raw;        /* what malloc_fn returned for this struct */
	size_t raw_size;
	unsigned long initial_buckets; /* the table's size at creation */
	unsigned char secret[XXH3_SECRET_DEFAULT_SIZE];

	/* Written on inserts and frees only (the budget), apart from the
	 * read-mostly fields above. */
	_Alignas(SLUICE_CACHELINE) _Atomic uint64_t nkeys;
	_Atomic uint64_t nbytes;
	_Atomic bool deferred; /* call_rcu was used: destroy needs rcu_barrier */
#ifdef SLUICE_TSAN
	char tsan_gp; /* grace-period token for TSan annotations */
#endif

	/* Sweeping: serialized by sweep_lock. */
	_Alignas(SLUICE_CACHELINE) pthread_mutex_t sweep_lock;
	struct entry *cursor; /* next entry to visit; NULL: start of table */

	/* Maintenance thread. */
	pthread_mutex_t m_lock;
	pthread_cond_t m_cond;
	pthread_t m_thread;
	bool m_running;
	bool m_stop;
	uint64_t m_interval_ns;
	size_t m_budget;
	sluice_clock_fn m_clock;
	void *m_clock_user;

	struct stat_slot slots[SLOTS + 1];
};

/* Budget estimate of the table's own memory per key: cds_lfht keeps about one
 * 16-byte bucket node per key at its load factor (docs/limiter.md). */
#define TABLE_SHARE_BYTES 16

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

static inline void *lim_alloc(const struct sluice_limiter *lim, size_t size)
{
	return lim->malloc_fn(lim->alloc_user, size);
}

static inline void lim_free(const struct sluice_limiter *lim, void *p, size_t size)
{
	lim->free_fn(lim->alloc_user, p, size);
}

/* ---- threads ---- */

static int thread_enter_slow(uint32_t flags)
{
	if (pthread_once(&key_once, key_create) != 0 || key_error != 0)
		return SLUICE_ETHREAD;
	if (!tls.keyed) {
		if (pthread_setspecific(thread_key, &tls) != 0)
			return SLUICE_ETHREAD;
		tls.keyed = true;
	}
	if (tls.slot < 0) {
		tls.slot = SLOTS;
		for (int i = 0; i < SLOTS; i++) {
			unsigned char expected = 0;
			/* The load is a relaxed pre-check (skip owned stripes
			 * without a locked RMW); the CAS decides. CAS acquire on
			 * success: pairs with the release store in thread_exit()
			 * of the stripe's previous owner. relaxed on failure:
			 * nothing is read. */
			if (atomic_load_explicit(&slot_owned[i], memory_order_relaxed) == 0 && /* relaxed pre-check: why above */
			    atomic_compare_exchange_strong_explicit(&slot_owned[i], &expected, 1, /* acquire/relaxed: why above */
								    memory_order_acquire,
								    memory_order_relaxed)) {
				tls.slot = i;
				break;
			}
		}
	}
	if (!tls.rcu && !(flags & SLUICE_LIMITER_CALLER_REGISTERS_RCU)) {
		rcu_register_thread();
		tls.rcu = true;
	}
	return SLUICE_OK;
}

static inline int thread_enter(const struct sluice_limiter *lim)
{
	if (SLUICE_LIKELY(tls.slot >= 0 &&
			  (tls.rcu || (lim->flags & SLUICE_LIMITER_CALLER_REGISTERS_RCU))))
		return SLUICE_OK;
	return thread_enter_slow(lim->flags);
}

/* Add to this thread's stripe. Exclusive stripes have one writer, so a
 * relaxed load and store suffice (readers only need each word's atomicity);
 * the shared stripe takes a relaxed fetch_add. */
static inline void stat_add(struct sluice_limiter *lim, int slot, int which, uint64_t n)
{
	_Atomic uint64_t *c = &lim->slots[slot].c[which];

	if (SLUICE_LIKELY(slot < SLOTS))
		/* relaxed: single writer; see above. */
		atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, /* relaxed: why above */
				      memory_order_relaxed);
	else
		/* relaxed: a counter; no other memory depends on it. */
		atomic_fetch_add_explicit(c, n, memory_order_relaxed); /* relaxed: why above */
}

/* ---- entries ---- */

static inline void *cell_of(const struct sluice_limiter *lim, struct entry *e, uint32_t i)
{
	return (unsigned char *)e + lim->cell_off[i];
}

static inline uint16_t key_len_of(const struct sluice_limiter *lim, const struct entry *e)
{
	uint16_t len;
	memcpy(&len, (const unsigned char *)e + lim->len_off, sizeof len);
	return len;
}

static inline size_t entry_size(const struct sluice_limiter *lim, size_t key_len)
{
	return lim->key_off + key_len;
}

struct lookup_key {
	const struct sluice_limiter *lim;
	const void *key;
	size_t len;
};

static int match_key(struct cds_lfht_node *node, const void *arg)
{
	const struct lookup_key *k = arg;
	const struct entry *e = caa_container_of(node, struct entry, node);

	/* The node's contents were published by cds_lfht_add_unique(). */
	TSAN_ACQUIRE(e);
	/* cds_lfht_lookup() calls us only for nodes whose full hash equals
	 * ours (it compares the stored reverse hash first), so the length is
	 * the cheap early reject and the bytes are compared almost only on a
	 * true match, inline for keys up to 32 bytes (key_internal.h). */
	return key_len_of(k->lim, e) == k->len &&
	       sluice__key_equal((const unsigned char *)e + k->lim->key_off, k->key, k->len);
}

static inline unsigned long hash_key(const struct sluice_limiter *lim, const void *key, size_t len)
{
	return (unsigned long)XXH3_64bits_withSecret(key, len, lim->secret, sizeof lim->secret);
}

unsigned long sluice__limiter_initial_buckets(const struct sluice_limiter *lim)
{
	return lim->initial_buckets;
}

uint64_t sluice__limiter_hash(const struct sluice_limiter *lim, const void *key, size_t key_len)
{
	return hash_key(lim, key, key_len);
}

static inline struct entry *lookup(const struct sluice_limiter *lim, unsigned long hash,
				   const struct lookup_key *k)
{
	struct cds_lfht_iter it;

	cds_lfht_lookup(lim->ht, hash, match_key, k, &it);
	struct cds_lfht_node *node = cds_lfht_iter_get_node(&it);
	if (node == NULL)
		return NULL;
	TSAN_ACQUIRE(node);
	return caa_container_of(node, struct entry, node);
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

static void uncharge(struct sluice_limiter *lim, size_t size)
{
	if (lim->max_keys != 0)
		/* relaxed: a bound on memory, orders nothing. */
		atomic_fetch_sub_explicit(&lim->nkeys, 1, memory_order_relaxed); /* relaxed: why above */
	if (lim->max_bytes != 0)
		/* relaxed: as above. */
		atomic_fetch_sub_explicit(&lim->nbytes, size + TABLE_SHARE_BYTES, /* relaxed: why above */
					  memory_order_relaxed);
}

/* Insert a new entry for k (inside a read-side section). Returns the entry
 * now in the table for k (ours or a racing winner's), or NULL if the budget
 * or the allocator refused. */
static struct entry *insert(struct sluice_limiter *lim, unsigned long hash,
			    const struct lookup_key *k)
{
	size_t size = entry_size(lim, k->len);

	if (!charge(lim, size)) {
		/* A racing thread may just have inserted this key. */
		return lookup(lim, hash, k);
	}
	struct entry *e = lim_alloc(lim, size);
	if (e == NULL) {
		uncharge(lim, size);
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
		uncharge(lim, size);
		TSAN_ACQUIRE(got);
		return caa_container_of(got, struct entry, node);
	}
	stat_add(lim, tls.slot, ST_INSERTED, 1);
	stat_add(lim, tls.slot, ST_BYTES, size);
	return e;
}

/* ---- decisions ---- */

enum verdict { V_DENY, V_ADMIT, V_DEAD, V_DEGRADED };

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

/* The governing limit among admitted decisions: least remaining, then the
 * shorter reset; the COMMIT word never governs. limit_index is the caller's
 * index. */
static void govern(const struct sluice_limiter *lim, struct sluice_decision *d, uint32_t n,
		   struct sluice_decision *out)
{
	uint32_t best = UINT32_MAX;

	(void)n;
	/* In check_order, so ties go as they always did (first GCRA, then the
	 * caller's order), whatever the commit order. */
	for (uint32_t c = 0; c < lim->ncheck; c++) {
		uint32_t i = lim->check_order[c];
		if (best == UINT32_MAX || d[i].remaining < d[best].remaining ||
		    (d[i].remaining == d[best].remaining && d[i].reset_ns < d[best].reset_ns))
			best = i;
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
			return V_DEAD;
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
	/* A denial on a tombstone word means the entry died. */
	if (sluice__gcra_is_tomb(sluice__gcra_word(cell)))
		return V_DEAD;
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
	 * a later read-modify-write of cell 0 (limiter.c header, "Reclaim"). */
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
	if (cds_lfht_del(lim->ht, &e->node) == 0)
		lim->ops[0]->mark_unlinked(cell_of(lim, e, 0));
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
			e = lookup(lim, hash, k);
		looked_up = false;
		if (e == NULL) {
			if (cost == 0) {
				decide_fresh_peek(lim, now_ns, out);
				return V_ADMIT;
			}
			e = insert(lim, hash, k);
			if (e == NULL) {
				fill_degraded(lim, out);
				return V_DEGRADED;
			}
		}
		enum verdict v = lim->one_gcra ? decide_gcra1(lim, e, cost, now_ns, out, hold)
					       : entry_decide(lim, e, cost, now_ns, out, hold);
		if (SLUICE_LIKELY(v != V_DEAD))
			return v;
		help_unlink(lim, e);
		e = NULL;
	}
}

/* The whole admission of one key, inside a read-side section. The common
 * case - the key exists, one GCRA limit, the entry is alive - is inlined into
 * each caller; new keys, dead entries and every other policy (a one-word
 * window alone: decide_one()) go to admit_slow(). */
static inline enum verdict admit_locked(struct sluice_limiter *lim, unsigned long hash,
					const struct lookup_key *k, struct entry *e,
					uint64_t cost, uint64_t now_ns,
					struct sluice_decision *out,
					struct sluice__limiter_hold *hold)
{
	if (e == NULL)
		e = lookup(lim, hash, k);
	if (SLUICE_LIKELY(e != NULL && lim->one_gcra)) {
		enum verdict v = decide_gcra1(lim, e, cost, now_ns, out, hold);
		if (SLUICE_LIKELY(v != V_DEAD))
			return v;
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
};

static inline void count(struct sluice_limiter *lim, enum verdict v, uint64_t cost)
{
	if (cost == 0)
		return; /* peeks are not admissions */
	stat_add(lim, tls.slot, stat_of_verdict[v], 1);
}

static inline int check_key(const void *key, size_t key_len)
{
	return key == NULL || key_len > SLUICE_LIMITER_MAX_KEY ? SLUICE_EKEY : SLUICE_OK;
}

static inline void read_unlock(struct sluice_limiter *lim)
{
	/* TSan: our reads of entries happen-before frees after a grace period. */
#ifdef SLUICE_TSAN
	TSAN_RELEASE(&lim->tsan_gp);
#else
	(void)lim;
#endif
	rcu_read_unlock();
}

int sluice_limiter_admit(struct sluice_limiter *lim, const void *key, size_t key_len, uint64_t cost,
			 uint64_t now_ns, struct sluice_decision *out)
{
	if (SLUICE_UNLIKELY(lim != NULL && lim->redis != NULL))
		return sluice__rlimiter_admit(lim->redis, key, key_len, cost, now_ns, out);
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
	if (lim->redis != NULL)
		return sluice__rlimiter_acquire(lim->redis, key, key_len, cost, now_ns, out, handle);
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
	if (lim != NULL && lim->redis != NULL)
		return sluice__rlimiter_release(lim->redis, key, key_len, handle);
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

int sluice__limiter_thread_enter(struct sluice_limiter *lim)
{
	return thread_enter(lim);
}

int sluice__rcu_thread_enter(bool caller_registers)
{
	if (SLUICE_LIKELY(tls.slot >= 0 && (tls.rcu || caller_registers)))
		return SLUICE_OK;
	return thread_enter_slow(caller_registers ? SLUICE_LIMITER_CALLER_REGISTERS_RCU : 0);
}

int sluice__limiter_reserve(struct sluice_limiter *lim, const void *key, size_t key_len,
			    uint64_t cost, uint64_t now_ns, struct sluice_decision *out,
			    struct sluice__limiter_hold *hold)
{
	struct lookup_key k = { lim, key, key_len };

	hold->entry = NULL;
	enum verdict v = admit_locked(lim, hash_key(lim, key, key_len), &k, NULL, cost, now_ns,
				      out, hold);
	if (cost == 0)
		out->allowed = true;
	count(lim, v, cost);
	if (v == V_ADMIT && cost > 0 && lim->slots_cell >= 0)
		hold->handle = hold->r[lim->slots_cell].w[0];
	else
		hold->handle = SLUICE_SLOT_NONE;
	return v == V_DEGRADED ? 1 : 0;
}

void sluice__limiter_cancel(struct sluice_limiter *lim, const struct sluice__limiter_hold *hold)
{
	struct entry *e = hold->entry;

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
			   uint64_t cost, uint64_t now_ns, struct sluice_decision *out)
{
	struct lookup_key k = { lim, key, key_len };
	struct sluice_decision d[NCELLS];
	struct entry *e = lookup(lim, hash_key(lim, key, key_len), &k);
	uint64_t w0 = e != NULL ? lim->ops[0]->word(cell_of(lim, e, 0)) : 0;

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
	struct cds_lfht_iter it;
	struct cds_lfht_node *node;

	cds_lfht_first(lim->ht, &it);
	while ((node = cds_lfht_iter_get_node(&it)) != NULL) {
		struct entry *e = caa_container_of(node, struct entry, node);
		TSAN_ACQUIRE(e);
		cds_lfht_next(lim->ht, &it);
		struct sluice_decision d;
		if (entry_decide(lim, e, 0, now_ns, &d, NULL) != V_ADMIT)
			continue; /* dead */
		fn(user, (const unsigned char *)e + lim->key_off, key_len_of(lim, e), &d);
	}
}

/* ---- snapshots (snapshot.c; limiter_internal.h) ---- */

static void remove_all(struct sluice_limiter *lim, bool account); /* below, with destroy */

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

	if (lim->redis != NULL)
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

	/* Holding sweep_lock, no entry is tombstoned during the walk (only
	 * sweeps do that, and a sweep unlinks what it tombstoned before it
	 * unlocks), so the entry a chunk stops at is still linked when the
	 * next chunk starts there, as a sweep's cursor is. Admits never take
	 * the lock; the maintenance thread's sweeps wait for the walk. */
	pthread_mutex_lock(&lim->sweep_lock);
	struct entry *resume = NULL;
	bool first = true;
	while (rc == SLUICE_OK && (first || resume != NULL)) {
		struct cds_lfht_iter it;
		struct cds_lfht_node *node;
		size_t n = 0;

		rcu_read_lock();
		if (first) {
			cds_lfht_first(lim->ht, &it);
			first = false;
		} else {
			TSAN_ACQUIRE(resume);
			it.node = &resume->node;
			it.next = rcu_dereference(resume->node.next);
		}
		while (rc == SLUICE_OK && n < VISIT_CHUNK &&
		       (node = cds_lfht_iter_get_node(&it)) != NULL) {
			struct entry *e = caa_container_of(node, struct entry, node);
			TSAN_ACQUIRE(e);
			cds_lfht_next(lim->ht, &it);
			n++;
			rc = visit_entry(lim, e, now_ns, cell_of_user, nuser, buf, fn, user);
		}
		node = cds_lfht_iter_get_node(&it);
		resume = node != NULL ? caa_container_of(node, struct entry, node) : NULL;
		read_unlock(lim);
	}
	pthread_mutex_unlock(&lim->sweep_lock);
	free(buf);
	return rc;
}

int sluice__limiter_restore_begin(struct sluice_limiter *lim)
{
	struct cds_lfht_iter it;

	if (lim->redis != NULL)
		return SLUICE_EUNSUPPORTED;
	int rc = thread_enter(lim);
	if (rc != SLUICE_OK)
		return rc;
	rcu_read_lock();
	cds_lfht_first(lim->ht, &it);
	bool empty = cds_lfht_iter_get_node(&it) == NULL;
	read_unlock(lim);
	return empty ? SLUICE_OK : SLUICE_ESTATE;
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
			uncharge(lim, size);
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
			uncharge(lim, size);
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
		uncharge(lim, size);
		return SLUICE_ESTATE;
	}
	stat_add(lim, tls.slot, ST_INSERTED, 1);
	stat_add(lim, tls.slot, ST_BYTES, size);
	return 1;
}

void sluice__limiter_clear(struct sluice_limiter *lim)
{
	if (lim->redis == NULL && thread_enter(lim) == SLUICE_OK)
		remove_all(lim, true);
}

/* Requests looked up ahead of deciding, per group. */
#define BATCH_GROUP 16

int sluice_limiter_admit_batch(struct sluice_limiter *lim, const struct sluice_limiter_request *reqs,
			       size_t n, uint64_t now_ns, struct sluice_decision *out)
{
	if (lim == NULL || (n > 0 && (reqs == NULL || out == NULL)))
		return SLUICE_EINVAL;
	if (lim->redis != NULL)
		return sluice__rlimiter_admit_batch(lim->redis, reqs, n, now_ns, out);
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

	uint64_t counts[4] = { 0, 0, 0, 0 };
	unsigned long hash[BATCH_GROUP];
	struct entry *found[BATCH_GROUP];

	for (size_t base = 0; base < n; base += BATCH_GROUP) {
		size_t g = SLUICE_MIN(n - base, (size_t)BATCH_GROUP);
		const struct sluice_limiter_request *r = reqs + base;

		/* One read-side section per group: entries found in phase 2 stay
		 * valid through phase 3, and a huge batch does not hold back
		 * grace periods. */
		rcu_read_lock();

		/* 1: hash everything (keys are in the caller's cache). */
		for (size_t j = 0; j < g; j++)
			hash[j] = hash_key(lim, r[j].key, r[j].key_len);
		/* 2: look up everything. The lookups are independent, so the
		 * core overlaps their misses within its out-of-order window. */
		for (size_t j = 0; j < g; j++) {
			struct lookup_key k = { lim, r[j].key, r[j].key_len };
			found[j] = lookup(lim, hash[j], &k);
			if (found[j] != NULL)
				/* write intent: the commit will CAS cell 0. */
				__builtin_prefetch(cell_of(lim, found[j], 0), 1, 3);
		}
		/* 3: decide in order. An entry found in phase 2 may have died
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
		stat_add(lim, tls.slot, ST_ADMITTED, counts[V_ADMIT]);
	if (counts[V_DENY])
		stat_add(lim, tls.slot, ST_DENIED, counts[V_DENY]);
	if (counts[V_DEGRADED])
		stat_add(lim, tls.slot, ST_DEGRADED, counts[V_DEGRADED]);
	return SLUICE_OK;
}

/* ---- reclaim ---- */

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
			uncharge(lim, size);
			lim_free(lim, b->e[i], size);
			bytes += size;
		}
		lim_free(lim, b, sizeof *b);
		b = next;
	}
	/* The call_rcu worker is liburcu's thread: use the shared stripe. */
	stat_add(lim, SLOTS, ST_BYTES, (uint64_t)0 - bytes);
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

static int sweep_locked(struct sluice_limiter *lim, uint64_t now_ns, size_t budget,
			size_t *reclaimed)
{
	const struct sluice__limit_ops *op0 = lim->ops[0];
	struct batch *head = NULL, *cur = NULL;
	struct cds_lfht_iter it;
	int rc = SLUICE_OK;
	size_t visited = 0, got = 0;
	bool wrapped;

	rcu_read_lock();
	if (lim->cursor != NULL) {
		/* The cursor entry is still linked: only sweeps (serialized by
		 * sweep_lock) tombstone entries, and only tombstoned entries are
		 * ever removed. Rebuild the iterator at it. */
		TSAN_ACQUIRE(lim->cursor);
		it.node = &lim->cursor->node;
		it.next = rcu_dereference(lim->cursor->node.next);
		wrapped = false;
	} else {
		cds_lfht_first(lim->ht, &it);
		wrapped = true;
	}
	while (visited < budget) {
		struct cds_lfht_node *node = cds_lfht_iter_get_node(&it);
		if (node == NULL) {
			if (wrapped)
				break;
			wrapped = true;
			cds_lfht_first(lim->ht, &it);
			continue;
		}
		struct entry *e = caa_container_of(node, struct entry, node);
		TSAN_ACQUIRE(e);
		/* Advance first: e may be removed below. */
		cds_lfht_next(lim->ht, &it);
		visited++;

		uint64_t w0;
		if (!entry_idle(lim, e, now_ns, &w0))
			continue;
		if (cur == NULL || cur->n == BATCH_CAP) {
			struct batch *b = lim_alloc(lim, sizeof *b);
			if (b == NULL) {
				rc = SLUICE_ENOMEM;
				break;
			}
			b->lim = lim;
			b->next = NULL;
			b->n = 0;
			if (cur != NULL)
				cur->next = b;
			else
				head = b;
			cur = b;
		}
		void *c0 = cell_of(lim, e, 0);
		if (!op0->tomb(c0, w0))
			continue; /* an admission landed since we looked */
		if (cds_lfht_del(lim->ht, node) != 0) {
			/* An admitter's del won; wait until it has returned. */
			while (!op0->is_unlinked(c0))
				sched_yield();
		}
		cur->e[cur->n++] = e;
		got++;
	}
	struct cds_lfht_node *next = cds_lfht_iter_get_node(&it);
	lim->cursor = next != NULL ? caa_container_of(next, struct entry, node) : NULL;
	read_unlock(lim);

	if (head != NULL && got == 0) {
		lim_free(lim, head, sizeof *head);
		head = NULL;
	}
	if (head != NULL) {
		/* relaxed: read by destroy, which the caller orders after us. */
		atomic_store_explicit(&lim->deferred, true, memory_order_relaxed); /* relaxed: why above */
		TSAN_RELEASE(&head->head);
		call_rcu(&head->head, free_batch_cb);
	}
	if (got != 0)
		stat_add(lim, tls.slot, ST_RECLAIMED, got);
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
	if (lim->redis != NULL)
		return SLUICE_OK; /* Redis expires idle keys itself */
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
	if (lim->redis != NULL) {
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
	if (lim->redis != NULL) {
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

/* Version 1 of the options: everything before the Redis fields. */
#define LIMITER_OPTIONS_V1_SIZE offsetof(struct sluice_limiter_options, redis)

/* A limiter that only carries its Redis backend (limiter_redis.c). */
static int create_on_redis(struct sluice_limiter **out, const struct sluice_limit *limits,
			   size_t nlimits, const struct sluice_limiter_options *o)
{
	struct sluice__rlimiter *rl;
	int rc = sluice__rlimiter_create(&rl, limits, nlimits, o);
	if (rc != SLUICE_OK)
		return rc;
	size_t raw_size = sizeof(struct sluice_limiter) + SLUICE_CACHELINE;
	void *raw = calloc(1, raw_size);
	if (raw == NULL) {
		sluice__rlimiter_destroy(rl);
		return SLUICE_ENOMEM;
	}
	uintptr_t p = ((uintptr_t)raw + SLUICE_CACHELINE - 1) & ~(uintptr_t)(SLUICE_CACHELINE - 1);
	struct sluice_limiter *lim = (struct sluice_limiter *)p;
	lim->raw = raw;
	lim->raw_size = raw_size;
	lim->free_fn = default_free;
	lim->redis = rl;
	*out = lim;
	return SLUICE_OK;
}

/* Most buckets the table may grow to, which also picks liburcu's bucket
 * allocator: with 0 < max <= 2^32 on a 64-bit target, cds_lfht_new() uses
 * its mmap allocator, one contiguous array reserved up front (PROT_NONE
 * address space, populated as the table grows), where a bucket is
 * `&tbl[index]`; with 0 ("unbounded") it uses the order allocator, whose
 * bucket_at() calls fls() through the PLT and loads a per-order pointer:
 * about 23 more instructions per lookup (docs/limiter.md, "Hot path").
 * The bound is the budget's key count (keys beyond it are never inserted):
 * the reservation is then what the caller declared it may need. Without a
 * budget there is no bound worth reserving for: a fixed large one (2^28
 * buckets, 4 GiB) per limiter adds up in an engine with one limiter per
 * limit, tier and override (47-bit user space holds ~32000 of them) and
 * makes emulators that track guest pages one by one (qemu-user: ~5 s per
 * fuzz_engine input) crawl; so such a table keeps the order allocator.
 * liburcu aborts if the reservation fails (e.g. under RLIMIT_AS), so try it
 * first and fall back to the order allocator (0) if it cannot be had. */
static unsigned long table_max_buckets(unsigned long init, uint64_t keys_bound)
{
	if (keys_bound == 0)
		return 0;
	unsigned long max = 1;
	while (max < keys_bound && max < (1ul << 32))
		max <<= 1;
	if (max < init)
		max = init;
	if ((uint64_t)max > (UINT64_C(1) << 32))
		return 0; /* liburcu would pick the order allocator anyway */
	size_t bytes = (size_t)max * sizeof(struct cds_lfht_node);
	void *probe = mmap(NULL, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (probe == MAP_FAILED)
		return 0;
	munmap(probe, bytes);
	return max;
}

/* Largest options.initial_buckets: liburcu's mmap bucket allocator takes
 * at most 2^32 buckets (64 GiB of bucket nodes), and the probe below
 * multiplies the count by the node size. */
#define MAX_INITIAL_BUCKETS (UINT64_C(1) << 32)

/* Whether `buckets` bucket nodes can be mapped now. cds_lfht_new() allocates
 * the initial array itself and cannot fail gracefully: its order allocator
 * asserts on a failed calloc(), its mmap allocator calls abort(). So ask the
 * kernel first, for the same amount of writable memory (RLIMIT_AS and the
 * overcommit check see the same request). */
static bool table_fits(unsigned long buckets)
{
	size_t bytes = (size_t)buckets * sizeof(struct cds_lfht_node);
	void *probe = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (probe == MAP_FAILED)
		return false;
	munmap(probe, bytes);
	return true;
}

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
		/* Versions 1 and 2 (the Redis fields): an earlier version's
		 * size leaves the later fields at their zero defaults; a size
		 * this library does not know is refused. */
		if (opts->size != sizeof o && opts->size != LIMITER_OPTIONS_V1_SIZE)
			return SLUICE_EINVAL;
		memcpy(&o, opts, opts->size);
	}
	if (o.redis != NULL)
		return create_on_redis(out, limits, nlimits, &o);
	if (o.redis_connections != 0 || o.reserved_ != 0)
		return SLUICE_EINVAL;
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
	size_t off = sizeof(struct entry);
	for (uint32_t i = 0; i < n; i++) {
		lim->ops[i] = sluice__limit_ops_of(lim->limits[i].kind);
		if (lim->limits[i].kind == SLUICE_LIMIT_SLOTS)
			lim->slots_cell = (int32_t)i;
		lim->cell_off[i] = (uint32_t)off;
		off += lim->ops[i]->cell_size(&lim->limits[i]);
	}
	lim->len_off = (uint32_t)off;
	lim->key_off = (uint32_t)(off + sizeof(uint16_t));

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
	if (pthread_mutex_init(&lim->m_lock, NULL) != 0) {
		rc = SLUICE_ENOMEM;
		goto fail_sweep_lock;
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
	/* Default size: cds_lfht grows lazily in the call_rcu thread, which can
	 * lag far behind a burst of inserts (docs/limiter.md, "Table size"), so
	 * start at the most keys the budget admits when there is one (at most
	 * 2^20 buckets, 16 MiB). A byte budget alone bounds the keys too: by
	 * max_bytes over the charge of the smallest entry (the empty key). */
	uint64_t keys_bound = o.max_keys;
	if (o.max_bytes != 0) {
		uint64_t by_bytes = o.max_bytes / (entry_size(lim, 0) + TABLE_SHARE_BYTES);
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
	if (!table_fits(init)) {
		rc = SLUICE_ENOMEM;
		goto fail_cond;
	}
	lim->ht = cds_lfht_new(init, init < 64 ? init : 64, table_max_buckets(init, keys_bound),
			       CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING, NULL);
	if (lim->ht == NULL) {
		rc = SLUICE_ENOMEM;
		goto fail_cond;
	}
	*out = lim;
	return SLUICE_OK;

fail_cond:
	pthread_cond_destroy(&lim->m_cond);
fail_m_lock:
	pthread_mutex_destroy(&lim->m_lock);
fail_sweep_lock:
	pthread_mutex_destroy(&lim->sweep_lock);
fail_raw:
	ff(o.alloc_user, raw, raw_size);
	return rc;
}

/* Entries destroy removes per grace period (8 KiB of pointers on the stack;
 * 1M entries cost about 1000 synchronize_rcu() calls). */
#define DESTROY_CHUNK 1024

/* Remove and free every entry of a limiter no caller uses any more (or not
 * yet: a restore that failed half-way). liburcu's own resize threads may
 * still walk the chains under their read lock, so a removed entry is freed
 * only after a grace period, as for sweeps, but without call_rcu (no
 * rcu_barrier needed): remove up to DESTROY_CHUNK entries in one read-side
 * section, synchronize_rcu(), free them, and go on from the next entry,
 * which is still linked (only we remove entries now), rebuilding the
 * iterator at it as a sweep does at its cursor. account: give the entries
 * back to the budget and count them as reclaimed (the limiter lives on).
 * Entries of earlier sweeps wait in call_rcu. */
static void remove_all(struct sluice_limiter *lim, bool account)
{
	struct entry *dead[DESTROY_CHUNK];
	struct entry *resume = NULL;
	bool first = true;
	while (first || resume != NULL) {
		struct cds_lfht_iter it;
		struct cds_lfht_node *node;
		size_t n = 0;

		rcu_read_lock();
		if (first) {
			cds_lfht_first(lim->ht, &it);
			first = false;
		} else {
			it.node = &resume->node;
			it.next = rcu_dereference(resume->node.next);
		}
		while (n < DESTROY_CHUNK && (node = cds_lfht_iter_get_node(&it)) != NULL) {
			cds_lfht_next(lim->ht, &it);
			struct entry *e = caa_container_of(node, struct entry, node);
			TSAN_ACQUIRE(e);
			cds_lfht_del(lim->ht, node);
			dead[n++] = e;
		}
		node = cds_lfht_iter_get_node(&it);
		resume = node != NULL ? caa_container_of(node, struct entry, node) : NULL;
		rcu_read_unlock();
		if (n == 0)
			break;
		synchronize_rcu();
		uint64_t bytes = 0;
		for (size_t i = 0; i < n; i++) {
			size_t size = entry_size(lim, key_len_of(lim, dead[i]));
			if (account)
				uncharge(lim, size);
			bytes += size;
			lim_free(lim, dead[i], size);
		}
		if (account) {
			stat_add(lim, tls.slot, ST_RECLAIMED, n);
			stat_add(lim, tls.slot, ST_BYTES, (uint64_t)0 - bytes);
		}
	}
}

/* Destroy, first half: everything but the pending deferred frees and the
 * struct itself. Returns whether call_rcu callbacks may still use lim. */
static bool destroy_begin(struct sluice_limiter *lim)
{
	if (lim->m_running)
		sluice_limiter_maintenance_stop(lim);
	(void)thread_enter(lim);

	/* No caller uses the limiter any more, but liburcu's own resize threads
	 * may: remove_all() frees after grace periods. */
	remove_all(lim, false);
	cds_lfht_destroy(lim->ht, NULL);
	/* relaxed: the sweeps that set it happened-before this call. */
	return atomic_load_explicit(&lim->deferred, memory_order_relaxed); /* relaxed: why above */
}

static void destroy_end(struct sluice_limiter *lim)
{
	pthread_cond_destroy(&lim->m_cond);
	pthread_mutex_destroy(&lim->m_lock);
	pthread_mutex_destroy(&lim->sweep_lock);
	lim->free_fn(lim->alloc_user, lim->raw, lim->raw_size);
}

void sluice_limiter_destroy(struct sluice_limiter *lim)
{
	if (lim == NULL)
		return;
	if (lim->redis != NULL) {
		sluice__rlimiter_destroy(lim->redis);
		lim->free_fn(lim->alloc_user, lim->raw, lim->raw_size);
		return;
	}
	if (destroy_begin(lim))
		rcu_barrier(); /* pending free_batch_cb() use lim */
	destroy_end(lim);
}

void sluice__limiter_destroy_many(struct sluice_limiter *const *lims, size_t n)
{
	bool deferred = false;

	for (size_t i = 0; i < n; i++)
		if (lims[i] != NULL && lims[i]->redis != NULL)
			sluice_limiter_destroy(lims[i]);
	for (size_t i = 0; i < n; i++)
		if (lims[i] != NULL && lims[i]->redis == NULL && destroy_begin(lims[i]))
			deferred = true;
	if (deferred)
		rcu_barrier(); /* once for all: pending free_batch_cb() use them */
	for (size_t i = 0; i < n; i++)
		if (lims[i] != NULL && lims[i]->redis == NULL)
			destroy_end(lims[i]);
}

int sluice_limiter_stats(const struct sluice_limiter *lim, struct sluice_limiter_stats *out)
{
	uint64_t sum[ST_COUNT] = { 0 };

	if (lim == NULL || out == NULL || out->size < sizeof *out)
		return SLUICE_EINVAL;
	if (lim->redis != NULL)
		return sluice__rlimiter_stats(lim->redis, out);
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

int sluice__limiter_redis_stats(struct sluice_limiter *lim, struct sluice_redis_stats *out)
{
	if (lim == NULL || lim->redis == NULL)
		return SLUICE_EINVAL;
	return sluice__rlimiter_backend_stats(lim->redis, out);
}
