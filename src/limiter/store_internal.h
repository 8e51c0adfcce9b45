/*
 * store_internal.h - the in-process store of the keyed limiter: the
 * structures and the small inline helpers its files share (limiter.c,
 * thread.c, table.c, decide.c, sweep.c; docs/limiter.md, "Files"). Not
 * installed; only src/limiter/ includes it.
 *
 * What is here is inline on purpose: the hot path (an admission of an
 * existing key, decide.c) hashes, looks up, registers the thread and
 * counts without a call of its own, exactly as when all of it was one file.
 * The arguments for the atomics below are made where they are used: the
 * stripes' single-writer rule in thread.c, the memory budget in table.c.
 */
#ifndef SLUICE_LIMITER_STORE_INTERNAL_H
#define SLUICE_LIMITER_STORE_INTERNAL_H

#include <sluice/limiter.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <urcu.h> /* memb flavor; must precede rculfhash.h */
#include <urcu/rculfhash.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "limiter/backend_internal.h"
#include "limiter/key_internal.h"
#include "limiter/limit_kind_internal.h"
#include "limiter/limiter_internal.h"
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

struct thread_state {
	int slot;      /* stripe index, SLOTS = shared, -1 = not yet claimed */
	bool rcu;      /* registered with urcu-memb by sluice */
	bool keyed;    /* pthread key value set (destructor will run) */
};
/* This thread's stripe and registration (thread.c). Hidden and
 * local-dynamic: the access model a static variable gets, which the linker
 * relaxes to one %fs-relative load in an executable; an extern variable's
 * default (global-dynamic) costs the hot path one more instruction per
 * admit (docs/limiter.md, "Files"). */
extern _Thread_local struct thread_state sluice__limiter_tls
	__attribute__((visibility("hidden"), tls_model("local-dynamic")));

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

struct sluice_limiter {
	struct cds_lfht *ht;
	/* Non-NULL: another store (backend_internal.h); every public
	 * function hands over to ops and nothing below is used. NULL: this
	 * file's store. */
	const struct sluice__limiter_ops *store;
	void *backend;
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

static inline void *lim_alloc(const struct sluice_limiter *lim, size_t size)
{
	return lim->malloc_fn(lim->alloc_user, size);
}

static inline void lim_free(const struct sluice_limiter *lim, void *p, size_t size)
{
	lim->free_fn(lim->alloc_user, p, size);
}

/* ---- threads (thread.c) ---- */

/* Claim a stripe, set the exit destructor and register with urcu-memb
 * (unless the caller registers its threads): 0 or SLUICE_ETHREAD. */
int sluice__limiter_thread_enter_slow(uint32_t flags);

static inline int thread_enter(const struct sluice_limiter *lim)
{
	if (SLUICE_LIKELY(sluice__limiter_tls.slot >= 0 &&
			  (sluice__limiter_tls.rcu || (lim->flags & SLUICE_LIMITER_CALLER_REGISTERS_RCU))))
		return SLUICE_OK;
	return sluice__limiter_thread_enter_slow(lim->flags);
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

static inline int match_key(struct cds_lfht_node *node, const void *arg)
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

/* ---- entries (table.c) ---- */

/* Insert a new entry for k (inside a read-side section). Returns the entry
 * now in the table for k (ours or a racing winner's), or NULL if the budget
 * or the allocator refused. */
struct entry *sluice__limiter_insert(struct sluice_limiter *lim, unsigned long hash,
				     const struct lookup_key *k);
/* Give back the budget charge of one entry of `size` bytes. */
void sluice__limiter_uncharge(struct sluice_limiter *lim, size_t size);

#endif /* SLUICE_LIMITER_STORE_INTERNAL_H */
