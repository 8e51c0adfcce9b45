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

#include <urcu.h> /* memb flavor */

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "limiter/backend_internal.h"
#include "limiter/key_internal.h"
#include "limiter/limit_kind_internal.h"
#include "limiter/limiter_internal.h"
#include "common/util_internal.h"

/* ---- TSan: liburcu's grace periods are not instrumented (docs/limiter.md, "TSan") ---- */
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

/* One allocation per key, no header of its own: cells at cell_off[i]
 * (cell 0 at offset 0, each 8-byte aligned), then uint16_t key_len at
 * len_off, then the key bytes at key_off. Only ever used by pointer. */
struct entry;

/* ---- the index (table.c; docs/limiter.md, "Table design") ----
 *
 * Open addressing over 64-byte lines of slots, linear probing. A slot
 * starts with its slot word: EMPTY (0), DELETED (1: a removed entry's slot,
 * skipped by probes and never reused in this array), or a live entry.
 * FROZEN (2) is or'ed into every word of an array being replaced by a
 * resize: a frozen word is never written again. A live word holds
 * TAG_BIT | a 15-bit tag of the hash in bits 48..62, and either the
 * address of an entry allocated apart (below 2^48, 8-byte aligned), or,
 * with INLINE (4), the key length in bits 8..23: the entry is the slot's
 * own cell and key (an inline slot).
 *
 * Two slot sizes (struct index, lg_stride). Pointer arrays: a slot is its
 * word, eight to a line. Inline arrays (the one-GCRA policy, whose entry is
 * one cell word and its key): a slot is struct islot, 32 bytes, two to a
 * line, so a key of at most INLINE_KEY_MAX bytes lives with its cell in the
 * line its lookup reads first. Longer keys, and new keys until their
 * insertion (or, if it could not, the sweep or a resize) moves them in
 * (table.c, "Moving in"), sit in pointer words of the same array.
 *
 * A key's probe starts at line (hash >> 16) & mask, reads the line's slots
 * from slot (hash >> 61) on, cyclically, then the next line's the same
 * way, until its entry or an EMPTY word. */
#define GROUP_SLOTS 8 /* slots per line of a pointer array */
#define SLOT_EMPTY UINT64_C(0)
#define SLOT_DELETED UINT64_C(1)
#define SLOT_FROZEN UINT64_C(2)
#define SLOT_INLINE UINT64_C(4)
#define SLOT_LEN_SHIFT 8
#define SLOT_TAG_SHIFT 48
#define SLOT_TAG_BIT (UINT64_C(1) << 63)
#define SLOT_TAG_MASK (UINT64_C(0xffff) << SLOT_TAG_SHIFT)
#define SLOT_PTR_MASK (((UINT64_C(1) << SLOT_TAG_SHIFT) - 1) & ~UINT64_C(7))
#define INLINE_KEY_MAX 16

struct group {
	_Alignas(64) _Atomic uint64_t w[GROUP_SLOTS];
};
_Static_assert(sizeof(struct group) == 64, "a group is one 64-byte line");

/* An inline array's slot. cell and key are written only while the word is
 * not INLINE (by the one thread moving an entry in, table.c), and read only
 * after an acquire load of an INLINE word. */
struct islot {
	_Atomic uint64_t w;
	_Atomic uint64_t cell;
	unsigned char key[INLINE_KEY_MAX];
};
_Static_assert(sizeof(struct islot) == 32, "two inline slots per line");

struct index {
	uint64_t mask;  /* lines - 1 */
	uint64_t limit; /* most slots claimed (live or DELETED) before a resize */
	uint64_t gen;   /* resizes before this array (the sweep's cursor) */
	unsigned lg_spl;    /* log2 slots per line: 3 (pointer) or 1 (inline) */
	unsigned lg_stride; /* log2 bytes per slot: 3 or 5 */
	struct sluice_limiter *lim;
	struct rcu_head head; /* freed by call_rcu after a resize */
	void *raw;            /* what the allocator returned */
	size_t raw_size;
	/* Written by inserts and unlinks only. */
	_Alignas(64) _Atomic uint64_t used; /* slots claimed: live + DELETED */
	_Atomic uint64_t dead;              /* DELETED slots */
	struct group g[];
};

struct sluice_limiter {
	/* The current array. acquire loads (index_of()); a resize publishes a
	 * new one with a release store, holding resize_lock. */
	struct index *_Atomic index;
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
	/* The one-GCRA policy keeps keys of at most INLINE_KEY_MAX bytes in
	 * inline slots. Its entries, in a slot or allocated apart, all have an
	 * inline slot's layout from the word before the entry on: that word
	 * holds the key length at SLOT_LEN_SHIFT (an allocated entry's header,
	 * hdr = 8 bytes before it), cell 0 is at 0, the key at 8. Otherwise
	 * hdr is 0 and the length is a uint16_t at len_off. */
	bool inline_keys;
	uint32_t hdr;
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
	unsigned long initial_buckets; /* the keys the first array was sized for */
	bool default_alloc;            /* malloc_fn is malloc(): arrays by calloc() */
	uint64_t hash_mask; /* all ones; tests narrow it (sluice__limiter_set_hash_mask()) */
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
	uint64_t cursor;     /* next slot to visit ... */
	uint64_t cursor_gen; /* ... in the array of this gen */
	uint64_t cursor_slots; /* ... and this many slots */
	/* Held by a resize from the first FROZEN word to the new array's
	 * publication, and by a snapshot walk (no resize under it). */
	pthread_mutex_t resize_lock;

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

/* Budget estimate of the index's memory per key: an 8-byte slot at a load
 * between 3/8 and 3/4, or a 32-byte inline slot at that load
 * (docs/limiter.md, "Table design"). */
#define TABLE_SHARE_BYTES 16
#define TABLE_SHARE_INLINE_BYTES 64

static inline uint64_t table_share(const struct sluice_limiter *lim)
{
	return lim->inline_keys ? TABLE_SHARE_INLINE_BYTES : TABLE_SHARE_BYTES;
}

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

/* Is this thread ready (a stripe, and registered with urcu-memb by us or
 * by its caller)? thread_enter() without the slow half. */
static inline int thread_enter_fast(const struct sluice_limiter *lim)
{
	if (SLUICE_LIKELY(sluice__limiter_tls.slot >= 0 &&
			  (sluice__limiter_tls.rcu || (lim->flags & SLUICE_LIMITER_CALLER_REGISTERS_RCU))))
		return SLUICE_OK;
	return SLUICE_ETHREAD;
}

static inline int thread_enter(const struct sluice_limiter *lim)
{
	if (SLUICE_LIKELY(thread_enter_fast(lim) == SLUICE_OK))
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

/* The word before an entry of an inline-keys limiter: an inline slot's
 * word, or an allocated entry's header. relaxed: the length bits never
 * change while the entry is reachable; a slot word is atomic. */
static inline uint64_t entry_head(const struct entry *e)
{
	return atomic_load_explicit((_Atomic uint64_t *)((uintptr_t)e - 8), memory_order_relaxed); /* relaxed: why above */
}

static inline uint16_t key_len_of(const struct sluice_limiter *lim, const struct entry *e)
{
	uint16_t len;

	if (lim->hdr != 0)
		return (uint16_t)(entry_head(e) >> SLOT_LEN_SHIFT);
	memcpy(&len, (const unsigned char *)e + lim->len_off, sizeof len);
	return len;
}

/* In front of the header of an inline-keys limiter's allocated entry with
 * a short key: once its key has moved into an inline slot (table.c,
 * "Moving in"), the entry alone goes to call_rcu, which needs a head, and
 * its callback needs the limiter. */
struct entry_retire {
	struct rcu_head head;
	struct sluice_limiter *lim;
};
_Static_assert(sizeof(struct entry_retire) % 8 == 0, "entries stay 8-byte aligned");

/* Bytes in front of the header of an allocated entry with a key of key_len
 * bytes. */
static inline size_t entry_pre(const struct sluice_limiter *lim, size_t key_len)
{
	return lim->inline_keys && key_len <= INLINE_KEY_MAX ? sizeof(struct entry_retire) : 0;
}

/* Bytes of an allocated entry with a key of key_len bytes (header and
 * retire prefix included). */
static inline size_t entry_size(const struct sluice_limiter *lim, size_t key_len)
{
	return entry_pre(lim, key_len) + lim->hdr + lim->key_off + key_len;
}

/* What the allocator returned for an allocated entry. */
static inline void *entry_base(const struct sluice_limiter *lim, struct entry *e)
{
	return (unsigned char *)e - lim->hdr - entry_pre(lim, key_len_of(lim, e));
}

/* Is e an inline slot's entry (of this array or an older one)? Only while
 * e is live: an unlink rewrites a slot's word. */
static inline bool entry_is_inline(const struct sluice_limiter *lim, const struct entry *e)
{
	return lim->hdr != 0 && (entry_head(e) & SLOT_INLINE) != 0;
}

struct lookup_key {
	const struct sluice_limiter *lim;
	const void *key;
	size_t len;
};

static inline bool entry_matches(const struct entry *e, const struct lookup_key *k)
{
	return key_len_of(k->lim, e) == k->len &&
	       sluice__key_equal((const unsigned char *)e + k->lim->key_off, k->key, k->len);
}

/* XXH3 keyed with the limiter's secret. A key of at most 16 bytes (the
 * common one: an address, a short id) takes XXH3's own short-input
 * function inline - the very function XXH3_64bits_withSecret() runs for
 * such a length (seed 0), so the value is the same - instead of a call into
 * the whole XXH3 dispatch, which the compiler keeps out of line. */
static inline unsigned long hash_key(const struct sluice_limiter *lim, const void *key, size_t len)
{
	uint64_t h;

	if (SLUICE_LIKELY(len <= 16))
		h = XXH3_len_0to16_64b((const xxh_u8 *)key, len, lim->secret, 0);
	else
		h = XXH3_64bits_withSecret(key, len, lim->secret, sizeof lim->secret);
	return (unsigned long)(h & lim->hash_mask);
}

/* The current array, inside a read-side section. */
static inline struct index *index_of(const struct sluice_limiter *lim)
{
	/* acquire: pairs with the release store that published the array
	 * (table.c, resize()): its slot words are visible. */
	return atomic_load_explicit(&((struct sluice_limiter *)lim)->index, memory_order_acquire); /* acquire: why above */
}

static inline uint64_t slot_tag(uint64_t hash)
{
	/* The shift drops every bit above the tag's 15 (and bit 15 under
	 * TAG_BIT): hash bits 0..14 in bits 48..62. */
	return SLOT_TAG_BIT | hash << SLOT_TAG_SHIFT;
}

static inline uint64_t home_group(const struct index *ix, uint64_t hash)
{
	return (hash >> 16) & ix->mask;
}

/* The slot of a line a probe of hash reads first; it reads the line's
 * other slots after it, cyclically, then the next line's the same way.
 * Keys of one line then start at different slots: a lookup reads about
 * one slot word instead of half the line's, within the same line. */
static inline unsigned first_slot(uint64_t hash)
{
	return (unsigned)(hash >> 61);
}

static inline uint64_t index_slots(const struct index *ix)
{
	return (ix->mask + 1) << ix->lg_spl;
}

/* The word of slot `pos` (line pos >> lg_spl). */
static inline _Atomic uint64_t *slot_word(const struct index *ix, uint64_t pos)
{
	return (_Atomic uint64_t *)((uintptr_t)ix->g + (uintptr_t)(pos << ix->lg_stride));
}

/* The j-th slot of line `line` in the order of a probe that starts at
 * `first`, for an array of the given shape (lg_spl, lg_stride: the
 * array's own, or constants where the caller knows them). */
static inline _Atomic uint64_t *probe_word_shaped(const struct index *ix, unsigned lg_spl,
						  unsigned lg_stride, uint64_t line, unsigned first,
						  unsigned j)
{
	uint64_t pos = (line << lg_spl) | ((first + j) & ((1u << lg_spl) - 1));
	return (_Atomic uint64_t *)((uintptr_t)ix->g + (uintptr_t)(pos << lg_stride));
}

static inline _Atomic uint64_t *probe_word(const struct index *ix, uint64_t line, unsigned first,
					   unsigned j)
{
	return probe_word_shaped(ix, ix->lg_spl, ix->lg_stride, line, first, j);
}

/* The entry of the live word w read at `at`: the slot's own (INLINE) or the
 * one it points to; NULL for EMPTY and DELETED. */
static inline struct entry *slot_entry(const _Atomic uint64_t *at, uint64_t w)
{
	if (w & SLOT_INLINE)
		return (struct entry *)((uintptr_t)at + 8);
	return (struct entry *)(uintptr_t)(w & SLOT_PTR_MASK);
}

/* Is w a live word with this tag (FROZEN ignored)? EMPTY and DELETED
 * words have no tag bits. */
static inline bool slot_has_tag(uint64_t w, uint64_t tag)
{
	return (w & SLOT_TAG_MASK) == tag;
}

/* EMPTY, frozen or not: the end of every probe that reaches it. */
static inline bool slot_is_end(uint64_t w)
{
	return (w & ~SLOT_FROZEN) == SLOT_EMPTY;
}

/* lookup() past its first slot word, for an array of one shape (both
 * compile to constants: lookup_rest() below). */
static inline __attribute__((always_inline)) struct entry *
lookup_rest_shaped(const struct index *ix, unsigned lg_spl, unsigned lg_stride, uint64_t tag,
		   unsigned first, uint64_t g, const struct lookup_key *k)
{
	unsigned j = 1;

	/* An array always keeps EMPTY words (used <= limit < slots), so the
	 * walk ends; the bound only guards that invariant. */
	for (uint64_t n = 0; n <= ix->mask; n++, g = (g + 1) & ix->mask, j = 0) {
		for (; j < 1u << lg_spl; j++) {
			const _Atomic uint64_t *at = probe_word_shaped(ix, lg_spl, lg_stride, g, first, j);
			/* acquire: pairs with the CAS that published the entry
			 * (table.c): its cells and key are visible. */
			uint64_t w = atomic_load_explicit(at, memory_order_acquire); /* acquire: why above */
			if (slot_has_tag(w, tag)) {
				struct entry *e = slot_entry(at, w);
				if (SLUICE_LIKELY(entry_matches(e, k)))
					return e;
			} else if (slot_is_end(w)) {
				return NULL;
			}
		}
	}
	return NULL;
}

/* lookup() past its first slot word: the rest of the probe, in the same
 * order (out of line: at the index's load most lookups end at the first
 * word). */
static __attribute__((noinline, unused)) struct entry *
lookup_rest(const struct index *ix, uint64_t tag, unsigned first, uint64_t g,
	    const struct lookup_key *k)
{
	if (ix->lg_spl == 1)
		return lookup_rest_shaped(ix, 1, 5, tag, first, g, k);
	return lookup_rest_shaped(ix, 3, 3, tag, first, g, k);
}

static inline __attribute__((always_inline)) struct entry *
lookup(const struct sluice_limiter *lim, unsigned long hash, const struct lookup_key *k)
{
	const struct index *ix = index_of(lim);
	const uint64_t tag = slot_tag(hash);
	const unsigned first = first_slot(hash);
	uint64_t g = home_group(ix, hash);
	/* The first slot's address with the array's shape as a constant. */
	const _Atomic uint64_t *at = lim->inline_keys
		? (const _Atomic uint64_t *)(uintptr_t)((const struct islot *)(uintptr_t)ix->g + (g << 1 | (first & 1)))
		: &ix->g[g].w[first];

	/* acquire: as in lookup_rest(). */
	uint64_t w = atomic_load_explicit(at, memory_order_acquire); /* acquire: why above */
	if (slot_has_tag(w, tag) && SLUICE_LIKELY(entry_matches(slot_entry(at, w), k)))
		return slot_entry(at, w);
	if (slot_is_end(w))
		return NULL;
	return lookup_rest(ix, tag, first, g, k);
}

/* lookup() in an inline array (an inline-keys limiter's: two 32-byte
 * slots per line) for a key of at most INLINE_KEY_MAX bytes, with the
 * shapes as constants and no call: a slot word is compared with the INLINE
 * word the key would have (tag, length, INLINE: one comparison), then its
 * key bytes, in the same line; an entry still allocated apart (a pointer
 * word with the key's tag) by its header and key. The admit fast path's
 * and admit_batch's (decide.c). */
static inline struct entry *lookup_inline(const struct sluice_limiter *lim, unsigned long hash,
					  const void *key, size_t len)
{
	const struct index *ix = index_of(lim);
	const struct islot *slots = (const struct islot *)(uintptr_t)ix->g;
	const uint64_t tag = slot_tag(hash);
	const uint64_t want = tag | (uint64_t)len << SLOT_LEN_SHIFT | SLOT_INLINE;
	unsigned first = first_slot(hash) & 1;
	uint64_t g = home_group(ix, hash);

	/* An array always keeps EMPTY words: the walk ends (the bound only
	 * guards that invariant). */
	for (uint64_t n = 0; n <= ix->mask; n++, g = (g + 1) & ix->mask) {
		for (unsigned j = 0; j < 2; j++, first ^= 1) {
			const struct islot *s = &slots[g << 1 | first];
			/* acquire: pairs with the CAS that published the slot
			 * or the entry (table.c): its cell and key are visible. */
			uint64_t w = atomic_load_explicit(&s->w, memory_order_acquire); /* acquire: why above */
			if (SLUICE_LIKELY((w & ~SLOT_FROZEN) == want)) {
				if (SLUICE_LIKELY(sluice__key_equal16(s->key, key, len)))
					return (struct entry *)(uintptr_t)&s->cell;
			} else if (slot_has_tag(w, tag) && !(w & SLOT_INLINE)) {
				struct entry *e = slot_entry(&s->w, w);
				if (key_len_of(lim, e) == len &&
				    sluice__key_equal16((const unsigned char *)e + 8, key, len))
					return e;
			} else if (slot_is_end(w)) {
				return NULL;
			}
		}
	}
	return NULL;
}

/* lookup_inline(), out of line. */
static __attribute__((noinline, unused)) struct entry *
lookup_inline_call(const struct sluice_limiter *lim, unsigned long hash, const void *key, size_t len)
{
	return lookup_inline(lim, hash, key, len);
}

/* lookup() for any limiter and key, small enough to inline everywhere: a
 * short key of an inline-keys limiter found inline in its first slot
 * costs one comparison of words and one of keys; anything else goes on
 * out of line. */
static inline __attribute__((always_inline)) struct entry *
lookup_any(const struct sluice_limiter *lim, unsigned long hash, const struct lookup_key *k)
{
	if (!lim->inline_keys || k->len > INLINE_KEY_MAX)
		return lookup(lim, hash, k);
	const struct index *ix = index_of(lim);
	const struct islot *s = (const struct islot *)(uintptr_t)ix->g +
				(home_group(ix, hash) << 1 | (first_slot(hash) & 1));
	/* acquire: as in lookup_rest(). */
	uint64_t w = atomic_load_explicit(&s->w, memory_order_acquire); /* acquire: why above */
	if (SLUICE_LIKELY((w & ~SLOT_FROZEN) == (slot_tag(hash) | (uint64_t)k->len << SLOT_LEN_SHIFT | SLOT_INLINE)) &&
	    SLUICE_LIKELY(sluice__key_equal16(s->key, k->key, k->len)))
		return (struct entry *)(uintptr_t)&s->cell;
	return lookup_inline_call(lim, hash, k->key, k->len);
}

/* The entry a probe of hash would look at first (its home line's first
 * slot with hash's tag), without reading it; NULL: none there. For
 * prefetching (admit_batch). */
static inline struct entry *lookup_candidate(const struct sluice_limiter *lim, unsigned long hash)
{
	const struct index *ix = index_of(lim);
	const uint64_t tag = slot_tag(hash);
	const uint64_t g = home_group(ix, hash);
	const unsigned first = first_slot(hash);
	const unsigned spl = 1u << ix->lg_spl;

	for (unsigned j = 0; j < spl; j++) {
		const _Atomic uint64_t *at = probe_word(ix, g, first, j);
		/* relaxed: only an address to prefetch; lookup() reads it again
		 * with acquire before using it. */
		uint64_t w = atomic_load_explicit(at, memory_order_relaxed); /* relaxed: why above */
		if (slot_has_tag(w, tag))
			return slot_entry(at, w);
		if (slot_is_end(w))
			return NULL;
	}
	return NULL;
}

/* The entry at address `entry` if it is linked under hash, found by its
 * address alone (never dereferenced unless found); NULL. */
static inline __attribute__((always_inline)) struct entry *
lookup_address_shaped(const struct index *ix, unsigned lg_spl, unsigned lg_stride, uint64_t hash,
		      const void *entry)
{
	const unsigned first = first_slot(hash);
	uint64_t g = home_group(ix, hash);

	for (uint64_t n = 0; n <= ix->mask; n++, g = (g + 1) & ix->mask)
		for (unsigned j = 0; j < 1u << lg_spl; j++) {
			const _Atomic uint64_t *at = probe_word_shaped(ix, lg_spl, lg_stride, g, first, j);
			/* acquire: as lookup(). */
			uint64_t w = atomic_load_explicit(at, memory_order_acquire); /* acquire: why above */
			if (slot_entry(at, w) == entry && entry != NULL)
				return slot_entry(at, w);
			if (slot_is_end(w))
				return NULL;
		}
	return NULL;
}

static inline struct entry *lookup_address(const struct sluice_limiter *lim, uint64_t hash,
					   const void *entry)
{
	const struct index *ix = index_of(lim);

	if (ix->lg_spl == 1)
		return lookup_address_shaped(ix, 1, 5, hash, entry);
	return lookup_address_shaped(ix, 3, 3, hash, entry);
}

/* Prefetch hash's home line: for writing in an inline array (the line
 * holds the cell an admission CASes), for reading in a pointer array (its
 * lines are read-mostly and shared between threads). */
static inline void prefetch_group(const struct sluice_limiter *lim, unsigned long hash)
{
	const struct index *ix = index_of(lim);
	const struct group *line = &ix->g[home_group(ix, hash)];

	if (lim->inline_keys)
		__builtin_prefetch(line, 1, 3);
	else
		__builtin_prefetch(line, 0, 3);
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
/* Give back the budget charge of one key whose allocated entry had `size`
 * bytes (0: an inline slot's). */
void sluice__limiter_uncharge(struct sluice_limiter *lim, size_t size);
/* Give back `size` bytes of an allocated entry whose key stays (moved into
 * an inline slot). */
void sluice__limiter_uncharge_bytes(struct sluice_limiter *lim, size_t size);
/* Remove e (whose key hashes to hash) from the index, inside a read-side
 * section: 0 if this call removed it, SLUICE_ENOTFOUND if it was not there
 * (another call removed it). Exactly one call per linked entry returns 0. */
int sluice__limiter_unlink(struct sluice_limiter *lim, struct entry *e, uint64_t hash);
/* The hash of e's key. */
uint64_t sluice__limiter_entry_hash(const struct sluice_limiter *lim, const struct entry *e);
/* Allocate an array of 2^lg_lines lines for lim (all EMPTY); NULL. */
struct index *sluice__limiter_index_new(struct sluice_limiter *lim, unsigned lg_lines);
/* Lines (log2) of lim's array sized for `keys` keys: at 3/8 load after a
 * resize (grow), else just under the 3/4 limit (a first array). */
unsigned sluice__limiter_index_lg_for(const struct sluice_limiter *lim, uint64_t keys, bool grow);
/* Free an array nobody can reach (no grace period). */
void sluice__limiter_index_free(struct index *ix);

/* Moving in (table.c). An inline-keys limiter's entry with a short key that
 * a pointer word of the current array links - allocated apart, or an inline
 * slot of an older array after a resize - is moved into the word's own
 * slot. */

/* Move the entry of the word w read at `at` (current array) into that
 * slot; true if it now lives there. The caller holds resize_lock (one
 * mover at a time, no resize) inside a read-side section. *moved_out:
 * the entry it replaced (to free after a grace period if allocated apart),
 * else NULL. */
bool sluice__limiter_move_in(struct sluice_limiter *lim, _Atomic uint64_t *at, uint64_t w,
			     struct entry **moved_out);
/* An admission met e's cell frozen by a move (the GCRA word
 * SLUICE__GCRA_TOMB_UNLINKED on a live entry): publish the slot it moves
 * to, if the mover has not yet, so that the next lookup finds it there.
 * Never waits. Inside a read-side section. */
void sluice__limiter_finish_move(struct sluice_limiter *lim, uint64_t hash, struct entry *e);

#endif /* SLUICE_LIMITER_STORE_INTERNAL_H */
