/*
 * store_internal.h - one region's keyed store as a process sees it: the
 * slot state word, the store's per-process view, and the table operations
 * (table.c) its decisions (store.c) use. Not installed; only src/shm/
 * includes it. The protocol and its arguments: table.c's opening comment
 * and docs/shm.md, "State machine".
 */
#ifndef SLUICE_SHM_STORE_INTERNAL_H
#define SLUICE_SHM_STORE_INTERNAL_H

#include <sluice/shm.h>

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "common/util_internal.h"
#include "limiter/limit_kind_internal.h"
#include "shm/zone_internal.h"

/* ---- the state word ---- */

enum { ST_FREE = 0, ST_CLAIMED = 1, ST_LIVE = 2 };
#define TAG_BITS 16
#define GEN_BITS 22
#define TIME_BITS 24
#define TAG_SHIFT 2
#define GEN_SHIFT (TAG_SHIFT + TAG_BITS)
#define TIME_SHIFT (GEN_SHIFT + GEN_BITS)
#define TIME_UNIT_SHIFT 20 /* claim time in units of 2^20 ns (~1 ms) */
#define TIME_MASK ((UINT64_C(1) << TIME_BITS) - 1)
#define CLAIM_UNITS ((SLUICE_SHM_CLAIM_TIMEOUT_NS >> TIME_UNIT_SHIFT) + 1)
_Static_assert(TIME_SHIFT + TIME_BITS == 64, "the state word is full");

static inline uint64_t st_of(uint64_t w)
{
	return w & 3;
}
static inline uint64_t tag_of(uint64_t w)
{
	return (w >> TAG_SHIFT) & ((UINT64_C(1) << TAG_BITS) - 1);
}
static inline uint64_t gen_of(uint64_t w)
{
	return (w >> GEN_SHIFT) & ((UINT64_C(1) << GEN_BITS) - 1);
}
static inline uint64_t make_word(uint64_t st, uint64_t tag, uint64_t gen, uint64_t time)
{
	return st | tag << TAG_SHIFT | (gen & ((UINT64_C(1) << GEN_BITS) - 1)) << GEN_SHIFT |
	       (time & TIME_MASK) << TIME_SHIFT;
}
static inline uint64_t claim_now(void)
{
	return (sluice_monotonic_ns() >> TIME_UNIT_SHIFT) & TIME_MASK;
}
/* A claim at least the timeout old (ages compare modulo the field: a
 * claim older than the field's wrap, ~4.7 h, may look young for one
 * timeout more). */
static inline bool claim_expired(uint64_t w, uint64_t now_units)
{
	return ((now_units - (w >> TIME_SHIFT)) & TIME_MASK) >= CLAIM_UNITS;
}

/* ---- the store of one region, as one process sees it ---- */

struct shm_store {
	_Atomic uint64_t *states;
	unsigned char *bodies;
	struct shm_stripe *stripes;
	struct shm_region *reg;
	const unsigned char *secret;
	uint64_t nslots;
	uint32_t window;
	uint32_t body_bytes;
	uint32_t ncells;
	uint32_t fail_mode;
	int32_t slots_cell; /* the SLOTS cell, -1: none */
	bool one_gcra;      /* one cell, a GCRA limit: its admission inlined */
	uint32_t lc;        /* the cell of the caller's limit 0 */
	uint32_t ncheck;
	uint32_t cell_off[SHM_NCELLS];
	uint32_t user_index[SHM_NCELLS];
	uint32_t check_order[SHM_NCELLS];
	const struct sluice__limit_ops *ops[SHM_NCELLS];
	struct sluice_limit limits[SHM_NCELLS]; /* per cell */
};

/* A key as stored: meta and the key words (zero-padded). */
struct krepr {
	uint64_t meta;
	uint64_t w[SHM_KEY_WORDS];
};

static inline _Atomic uint64_t *body_word(const struct shm_store *s, uint64_t i, uint32_t off)
{
	return (_Atomic uint64_t *)(void *)(s->bodies + i * s->body_bytes + off);
}
static inline void *cell_of(const struct shm_store *s, uint64_t i, uint32_t c)
{
	return s->bodies + i * s->body_bytes + s->cell_off[c];
}

/* A key's probe sequence: SHM_WINDOW slots from h1, then SHM_WINDOW from
 * h2 (two random segments: a window overflows only if both are full). The
 * segments never overlap, so no slot appears twice in a sequence; a region
 * of at most 2 * SHM_WINDOW slots is one segment of all its slots. */
struct probe {
	uint64_t h1, h2;
};

static inline uint64_t wrap(const struct shm_store *s, uint64_t i)
{
	return i >= s->nslots ? i - s->nslots : i;
}

static inline struct probe home_of(const struct shm_store *s, uint64_t hash)
{
	struct probe p;
	uint64_t h2 = (hash >> 32 | hash << 32) * UINT64_C(0x9e3779b97f4a7c15);

	p.h1 = (uint64_t)(((sluice__u128)hash * s->nslots) >> 64);
	p.h2 = (uint64_t)(((sluice__u128)h2 * s->nslots) >> 64);
	uint64_t d = p.h2 >= p.h1 ? p.h2 - p.h1 : p.h2 + s->nslots - p.h1; /* h1 to h2, forward */
	if (s->nslots <= 2 * SHM_WINDOW || d < SHM_WINDOW || d > s->nslots - SHM_WINDOW)
		p.h2 = wrap(s, p.h1 + SHM_WINDOW);
	return p;
}
static inline uint64_t tag_of_hash(uint64_t hash)
{
	return hash & ((UINT64_C(1) << TAG_BITS) - 1);
}
static inline uint64_t slot_at(const struct shm_store *s, const struct probe *p, uint32_t k)
{
	return k < SHM_WINDOW ? wrap(s, p->h1 + k) : wrap(s, p->h2 + (k - SHM_WINDOW));
}

/* The state word still w: an acquire fence, then the word. Whatever was
 * read before the fence belonged to generation w if so (file comment,
 * "Reuse"). */
static inline bool still(const struct shm_store *s, uint64_t i, uint64_t w)
{
	/* acquire: pairs with the release fence a claimant issues after its
	 * claim and before it writes the body: a read above that saw a new
	 * body word makes the load below see the claim (or later). */
	atomic_thread_fence(memory_order_acquire); /* acquire: why above */
	/* relaxed: ordered by the fence above. */
	return atomic_load_explicit(&s->states[i], memory_order_relaxed) == w; /* relaxed: why above */
}

/* Slot i (state w, LIVE) holds key k: a seqlock read of the body. */
static inline bool key_matches(const struct shm_store *s, uint64_t i, uint64_t w, const struct krepr *k)
{
	bool eq = true;
	/* relaxed: validated by still() below. */
	eq = atomic_load_explicit(body_word(s, i, 0), memory_order_relaxed) == k->meta; /* relaxed: why above */
	for (uint32_t j = 0; j < SHM_KEY_WORDS && eq; j++)
		/* relaxed: validated by still() below. */
		eq = atomic_load_explicit(body_word(s, i, 8 + 8 * j), memory_order_relaxed) == k->w[j]; /* relaxed: why above */
	return still(s, i, w) && eq;
}

static inline void stat_add(const struct shm_store *s, int which)
{
	static _Thread_local uint32_t stripe = UINT32_MAX;
	static _Atomic uint32_t next_stripe;
	if (SLUICE_UNLIKELY(stripe == UINT32_MAX))
		/* relaxed: only spreads threads over stripes. */
		stripe = atomic_fetch_add_explicit(&next_stripe, 1, memory_order_relaxed) % SHM_STRIPES; /* relaxed: why above */
	/* relaxed: a counter; no other memory depends on it. */
	atomic_fetch_add_explicit(&s->stripes[stripe].c[which], 1, memory_order_relaxed); /* relaxed: why above */
}

/* ---- the table (table.c) ---- */

/* The stored form of key (*k) and its hash. */
uint64_t sluice__shm_key_repr(const unsigned char *secret, const void *key, size_t len, struct krepr *k);
/* The LIVE slot of k, or UINT64_MAX; *wout its state word. */
uint64_t sluice__shm_lookup(const struct shm_store *s, uint64_t hash, const struct krepr *k, uint64_t *wout);
/* The entry of k, inserted unless present (its slot, state *wout), or
 * UINT64_MAX when its probe sequence is full even after reclaiming what is
 * idle at now_ns. */
uint64_t sluice__shm_insert(const struct shm_store *s, uint64_t hash, const struct krepr *k, uint64_t now_ns,
			    uint64_t *wout);
/* LIVE w -> FREE (the reclaim is counted when ours). */
bool sluice__shm_free_slot(const struct shm_store *s, uint64_t i, uint64_t w);
/* Reclaim slot i if idle at now_ns, dead, or an expired claim; true if it
 * freed a LIVE slot. */
bool sluice__shm_reclaim_slot(const struct shm_store *s, uint64_t i, uint64_t now_ns, uint64_t now_units);
/* The operations of a limit kind in a zone: the in-process ones, except
 * the sliding log's (log.c). */
const struct sluice__limit_ops *sluice__shm_ops_of(uint32_t kind);
/* The process's view of region r of the zone at base (store.c). */
void sluice__shm_store_init(struct shm_store *s, void *base, struct shm_region *r, const unsigned char *secret);

#endif /* SLUICE_SHM_STORE_INTERNAL_H */
