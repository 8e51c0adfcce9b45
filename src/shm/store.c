/*
 * store.c - the keyed store of one region of a shared-memory zone: a
 * fixed-capacity open-addressing table whose slots are claimed, published
 * and reclaimed in place by any process, lock-free, with no state a dead
 * process can leave locked or half-made (docs/shm.md, "State machine").
 *
 * Slots. Each slot has a state word (separate array, eight to a cache line,
 * so a lookup scans states without touching bodies) and a body: the key
 * (inline up to SLUICE_SHM_KEY_INLINE bytes, else its keyed 128-bit digest)
 * and the limit's cells, the same words the in-process limiter uses,
 * driven through the same ops table (limit_kind_internal.h). A key lives
 * in its probe sequence: SHM_WINDOW slots from each of two homes drawn
 * from its hash (home_of()), in the first FREE slot when inserted.
 * The state word packs (state, tag, gen, claim time):
 *   FREE(g)             empty; the next claim takes gen g + 1
 *   CLAIMED(g, t, time) an insertion of a key with tag t (16 bits of its
 *                       hash) is writing the body; time: its claimant's
 *                       CLOCK_MONOTONIC reading (units of 2^20 ns)
 *   LIVE(g, t)          the body holds a key and its cells
 * Transitions, each one CAS of the state word:
 *   FREE(g) -> CLAIMED(g+1)   an inserter claims the first FREE slot of
 *                             the window (g bumps on every claim: a word
 *                             never repeats for 2^22 reuses of a slot)
 *   CLAIMED -> CLAIMED'       the claimant refreshes its time just before
 *                             writing the body
 *   CLAIMED(g) -> LIVE(g)     the claimant publishes (release: the body
 *                             is visible to whoever acquires LIVE)
 *   CLAIMED(g) -> FREE(g)     the claimant gives up (a duplicate), or
 *                             anyone, once the claim is CLAIM_TIMEOUT old
 *                             (its claimant died or stalled)
 *   LIVE(g) -> FREE(g)        anyone, once cell 0 holds a tombstone
 * A crash between any two of them leaves a FREE, CLAIMED or LIVE slot:
 * FREE and LIVE are consistent by construction, and a CLAIMED slot is
 * taken back by the first process that meets it after the timeout (an
 * inserter needing the window, a sweep). A dead sweeper's tombstone is
 * freed by the next admission or sweep that meets it.
 *
 * One entry per key. Two inserters of one key have the same home and tag.
 * Each claims a slot, then (seq_cst: claims and the scans after them are
 * totally ordered, so of two claimants at least one sees the other's
 * claim) rescans the window: a LIVE slot of the key wins (give up ours, use
 * it); a CLAIMED slot of our tag earlier in the window than ours makes us
 * give up and wait for it; one later than ours we wait for, then look at it
 * again (it gave up, or published: if the key, we give up). The later one
 * always yields and the earlier one waits only for a claim that is
 * resolving, so one of them publishes and the other uses its entry.
 *
 * Reclaim. As in process (src/limiter/sweep.c, "Reclaim"): a sweeper loads
 * cell 0, checks the other cell idle, and CASes cell 0 from the word it
 * loaded to a tombstone; an admission commits cell 0 last, after a release
 * fence, and a commit on a tombstone is denied. The tombstoned slot is
 * then freed (LIVE -> FREE) by whoever sees it first.
 *
 * Reuse. A slot can be reused while a slow admitter still holds its old
 * state word. Every decision therefore revalidates the state word after
 * its cell operation (an acquire fence, then the word): the claimant of
 * the new generation CASes the state word, then issues a release fence
 * before writing the cells, so an admitter whose CAS read any value of the
 * new cells sees the new state word and undoes its admission (its receipt)
 * before retrying on the key's own entry: an admission is counted on a
 * cell of the key it was made for. Key comparisons read the same way
 * (a seqlock on the state word).
 */
#include <sluice/shm.h>

#include <sched.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "common/util_internal.h"
#include "limiter/backend_internal.h"
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
	uint32_t cell_off[2];
	int32_t slots_cell; /* the SLOTS cell, -1: none */
	const struct sluice__limit_ops *ops[2];
	struct sluice_limit limits[2]; /* per cell */
	uint32_t lc;                   /* the cell of the user's limit */
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

/* The stored form of key and its hash. */
static uint64_t key_repr(const unsigned char *secret, const void *key, size_t len, struct krepr *k)
{
	memset(k, 0, sizeof *k);
	if (len <= SLUICE_SHM_KEY_INLINE) {
		if (len != 0)
			memcpy(k->w, key, len);
		k->meta = len;
		return XXH3_64bits_withSecret(key, len, secret, SHM_SECRET_BYTES);
	}
	XXH128_hash_t d = XXH3_128bits_withSecret(key, len, secret, SHM_SECRET_BYTES);
	k->w[0] = d.low64;
	k->w[1] = d.high64;
	k->meta = len | SHM_META_DIGEST;
	return d.high64;
}

/* The hash of a stored key (a rehash: zone.c). */
static uint64_t repr_hash(const unsigned char *secret, const struct krepr *k)
{
	if (k->meta & SHM_META_DIGEST)
		return k->w[1];
	unsigned char b[SLUICE_SHM_KEY_INLINE];
	memcpy(b, k->w, sizeof b);
	return XXH3_64bits_withSecret(b, (size_t)k->meta, secret, SHM_SECRET_BYTES);
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
static bool key_matches(const struct shm_store *s, uint64_t i, uint64_t w, const struct krepr *k)
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

/* The LIVE slot of k in its window, or UINT64_MAX; *wout its state word.
 * Stops at a never-claimed slot (FREE, gen 0): an insertion takes the
 * first FREE slot of the window, so a key lives before any slot that was
 * FREE all along. */
static uint64_t lookup(const struct shm_store *s, uint64_t hash, const struct krepr *k, uint64_t *wout)
{
	struct probe home = home_of(s, hash);
	uint64_t tag = tag_of_hash(hash);

	for (uint32_t j = 0; j < s->window; j++) {
		uint64_t i = slot_at(s, &home, j);
		/* acquire: pairs with the publishing CAS (release): the body of
		 * a LIVE word read here is visible. */
		uint64_t w = atomic_load_explicit(&s->states[i], memory_order_acquire); /* acquire: why above */
		if (st_of(w) == ST_LIVE && tag_of(w) == tag && key_matches(s, i, w, k)) {
			*wout = w;
			return i;
		}
		if (w == 0)
			break;
	}
	return UINT64_MAX;
}

/* ---- reclaim ---- */

/* LIVE w -> FREE: counts the reclaim when ours. */
static bool free_slot(const struct shm_store *s, uint64_t i, uint64_t w)
{
	uint64_t f = make_word(ST_FREE, 0, gen_of(w), 0);
	/* acq_rel on success: the tombstone and the body we judged are
	 * ordered before the next claimant's writes; relaxed on failure:
	 * someone else freed it (or it changed), nothing to do. */
	if (!atomic_compare_exchange_strong_explicit(&s->states[i], &w, f, memory_order_acq_rel, /* acq_rel: why above */
						     memory_order_relaxed))
		return false;
	stat_add(s, SHM_ST_RECLAIMED);
	return true;
}

/* Give up a claim c of ours (or take back an expired one). */
static void unclaim(const struct shm_store *s, uint64_t i, uint64_t c)
{
	uint64_t f = make_word(ST_FREE, 0, gen_of(c), 0);
	/* release: nothing of ours in the body matters; relaxed on failure:
	 * the claim was taken back already. */
	atomic_compare_exchange_strong_explicit(&s->states[i], &c, f, memory_order_release, /* release: why above */
						memory_order_relaxed);
}

/* Reclaim slot i if idle at now_ns (or dead, or an expired claim). Returns
 * true if it freed a LIVE slot. */
static bool reclaim_slot(const struct shm_store *s, uint64_t i, uint64_t now_ns, uint64_t now_units)
{
	/* acquire: a LIVE word's body is visible (the publishing CAS). */
	uint64_t w = atomic_load_explicit(&s->states[i], memory_order_acquire); /* acquire: why above */

	if (st_of(w) == ST_CLAIMED) {
		if (claim_expired(w, now_units))
			unclaim(s, i, w);
		return false;
	}
	if (st_of(w) != ST_LIVE)
		return false;
	const struct sluice__limit_ops *op0 = s->ops[0];
	void *c0 = cell_of(s, i, 0);
	uint64_t w0 = op0->word(c0);
	if (!op0->is_tomb(w0)) {
		/* acquire: pairs with the release fence an admission issues
		 * before committing cell 0 (decide()): if w0 is that commit or
		 * a later RMW, its cell 1 is visible below. */
		atomic_thread_fence(memory_order_acquire); /* acquire: why above */
		if (s->ncells == 2) {
			void *c1 = cell_of(s, i, 1);
			if (s->slots_cell == 1 && s->limits[1].slots.lease_ttl_ns != 0)
				(void)sluice_slots_reap(c1, &s->limits[1].slots, now_ns);
			if (!s->ops[1]->is_idle(c1, &s->limits[1], now_ns))
				return false;
		}
		if (!op0->word_is_idle(w0, &s->limits[0], now_ns))
			return false;
		/* w0 was this generation's word (not a reused slot's). */
		if (!still(s, i, w))
			return false;
		if (!op0->tomb(c0, w0))
			return false;
	}
	return free_slot(s, i, w);
}

/* ---- insertion ---- */

/* Wait until slot i no longer holds claim c (its claimant publishes or
 * gives up, or the claim expires and we take it back). */
static void wait_claim(const struct shm_store *s, uint64_t i, uint64_t c)
{
	/* seq_cst: part of the claim protocol's total order (file comment). */
	while (atomic_load_explicit(&s->states[i], memory_order_seq_cst) == c) { /* seq_cst: why above */
		if (claim_expired(c, claim_now())) {
			unclaim(s, i, c);
			return;
		}
		sched_yield();
	}
}

/* Write the body of claimed slot i: the key and fresh cells. */
static void write_body(const struct shm_store *s, uint64_t i, const struct krepr *k, uint64_t gen)
{
	uint64_t buf[SHM_CELLS_MAX / 8];
	uint32_t cells = s->body_bytes - s->cell_off[0];

	/* relaxed: published by the release CAS that makes the slot LIVE. */
	atomic_store_explicit(body_word(s, i, 0), k->meta, memory_order_relaxed); /* relaxed: why above */
	for (uint32_t j = 0; j < SHM_KEY_WORDS; j++)
		/* relaxed: as above. */
		atomic_store_explicit(body_word(s, i, 8 + 8 * j), k->w[j], memory_order_relaxed); /* relaxed: as above */
	memset(buf, 0, cells);
	for (uint32_t c = 0; c < s->ncells; c++)
		s->ops[c]->init((unsigned char *)buf + (s->cell_off[c] - s->cell_off[0]), &s->limits[c]);
	if (s->slots_cell >= 0) {
		/* A handle names its cell by tag (24 bits): a mix of the slot
		 * and its generation, so a handle of another slot or an older
		 * generation is refused by this cell (the process-local tag
		 * counter of sluice_slots_init() would repeat across processes). */
		struct sluice_slots *sc =
			(struct sluice_slots *)(void *)((unsigned char *)buf + (s->cell_off[s->slots_cell] - s->cell_off[0]));
		uint64_t z = (i << GEN_BITS | gen) * UINT64_C(0x9e3779b97f4a7c15);
		sc->tag = (z ^ z >> 29 ^ z >> 47) & ((UINT64_C(1) << 24) - 1);
	}
	for (uint32_t j = 0; j < cells / 8; j++)
		/* relaxed: as above. */
		atomic_store_explicit(body_word(s, i, s->cell_off[0] + 8 * j), buf[j], memory_order_relaxed); /* relaxed: as above */
}

/* Give up claim c at slot f because of slot i's state: 1 means i holds the
 * key (use it), 0 means retry the insertion. */
static int yield_to(const struct shm_store *s, uint64_t f, uint64_t c, uint64_t i, uint64_t w,
		    const struct krepr *k, uint64_t *wout)
{
	unclaim(s, f, c);
	if (st_of(w) == ST_LIVE && key_matches(s, i, w, k)) {
		*wout = w;
		return 1;
	}
	return 0;
}

/* The entry of k, inserted unless present: its slot (state *wout), or
 * UINT64_MAX when its window is full even after reclaiming what is idle
 * at now_ns. */
static uint64_t insert(const struct shm_store *s, uint64_t hash, const struct krepr *k, uint64_t now_ns,
		       uint64_t *wout)
{
	struct probe home = home_of(s, hash);
	uint64_t tag = tag_of_hash(hash);

	for (;;) {
		uint64_t i = lookup(s, hash, k, wout);
		if (i != UINT64_MAX)
			return i;
		/* The first FREE slot of the window. */
		uint64_t f = UINT64_MAX, fw = 0, units = claim_now();
		uint32_t fpos = 0;
		for (uint32_t j = 0; j < s->window && f == UINT64_MAX; j++) {
			uint64_t x = slot_at(s, &home, j);
			/* relaxed: the claim CAS below checks it. */
			uint64_t w = atomic_load_explicit(&s->states[x], memory_order_relaxed); /* relaxed: why above */
			if (st_of(w) == ST_CLAIMED && claim_expired(w, units)) {
				unclaim(s, x, w);
				/* relaxed: as above. */
				w = atomic_load_explicit(&s->states[x], memory_order_relaxed); /* relaxed: as above */
			}
			if (st_of(w) == ST_FREE) {
				f = x;
				fw = w;
				fpos = j;
			}
		}
		if (f == UINT64_MAX) {
			/* Full: reclaim what is idle now in the window, once. */
			bool any = false;
			for (uint32_t j = 0; j < s->window; j++)
				any |= reclaim_slot(s, slot_at(s, &home, j), now_ns, units);
			if (!any)
				return UINT64_MAX;
			continue;
		}
		uint64_t gen = gen_of(fw) + 1;
		uint64_t c = make_word(ST_CLAIMED, tag, gen, units);
		/* seq_cst: claims and the rescan below are totally ordered (the
		 * one-entry argument, file comment); failure: retry. */
		if (!atomic_compare_exchange_strong_explicit(&s->states[f], &fw, c, memory_order_seq_cst, /* seq_cst: why above */
							     memory_order_relaxed))
			continue;
		/* Rescan for the key published meanwhile and for rival claims
		 * of our tag. */
		int found = -1;
		uint64_t use = UINT64_MAX;
		for (uint32_t j = 0; j < s->window && found < 0; j++) {
			uint64_t x = slot_at(s, &home, j);
			if (x == f)
				continue;
			/* seq_cst: as above. */
			uint64_t w = atomic_load_explicit(&s->states[x], memory_order_seq_cst); /* seq_cst: why above */
			if (st_of(w) == ST_FREE || tag_of(w) != tag)
				continue;
			if (st_of(w) == ST_LIVE) {
				if (key_matches(s, x, w, k)) {
					found = yield_to(s, f, c, x, w, k, wout);
					use = x;
				}
				continue;
			}
			/* A rival claim of our tag. */
			if (j < fpos) {
				unclaim(s, f, c);
				wait_claim(s, x, w);
				found = 0;
			} else {
				wait_claim(s, x, w);
				/* acquire: a LIVE word's body is visible. */
				uint64_t w2 = atomic_load_explicit(&s->states[x], memory_order_acquire); /* acquire: why above */
				if (st_of(w2) == ST_LIVE && tag_of(w2) == tag && key_matches(s, x, w2, k)) {
					found = yield_to(s, f, c, x, w2, k, wout);
					use = x;
				}
			}
		}
		if (found == 1)
			return use;
		if (found == 0)
			continue;
		/* Ours. Refresh the claim's time right before writing, so that
		 * only a stall of CLAIM_TIMEOUT inside write_body() could let
		 * another process take the slot back under us. */
		uint64_t c2 = make_word(ST_CLAIMED, tag, gen, claim_now());
		/* seq_cst, as the claim; failure: taken back, retry. */
		if (!atomic_compare_exchange_strong_explicit(&s->states[f], &c, c2, memory_order_seq_cst, /* seq_cst: why above */
							     memory_order_relaxed))
			continue;
		/* release: orders the claim before every body write below, for
		 * the readers' still() (file comment, "Reuse"). */
		atomic_thread_fence(memory_order_release); /* release: why above */
		write_body(s, i = f, k, gen);
		uint64_t live = make_word(ST_LIVE, tag, gen, 0);
		/* release: publishes the body to lookups' acquire loads;
		 * failure: the claim was taken back (we stalled), retry. */
		if (!atomic_compare_exchange_strong_explicit(&s->states[f], &c2, live, memory_order_release, /* release: why above */
							     memory_order_relaxed))
			continue;
		stat_add(s, SHM_ST_INSERTED);
		*wout = live;
		return f;
	}
}

/* ---- decisions ---- */

enum verdict { V_DENY, V_ADMIT, V_DEAD, V_DEGRADED, V_STALE };

/* A hold's token for slot i. */
#define ENTRY_OF(i) ((void *)(uintptr_t)((i) + 1))
#define SLOT_OF(e) ((uint64_t)(uintptr_t)(e)-1)

/* Decide on slot i, state w. hold (may be NULL) receives the receipts. */
static enum verdict decide(const struct shm_store *s, uint64_t i, uint64_t w, uint64_t cost, uint64_t now_ns,
			   struct sluice_decision *out, struct sluice__limiter_hold *hold)
{
	const struct sluice__limit_ops *op0 = s->ops[0];
	void *c0 = cell_of(s, i, 0);
	struct sluice__receipt r[2];

	if (s->ncells == 1) {
		if (cost == 0) {
			uint64_t x = op0->word(c0);
			if (op0->is_tomb(x))
				return V_DEAD;
			op0->check_word(x, &s->limits[0], now_ns, 0, out);
			return still(s, i, w) ? V_ADMIT : V_STALE;
		}
		if (op0->admit(c0, &s->limits[0], now_ns, cost, out, &r[0])) {
			if (!still(s, i, w)) {
				op0->cancel(c0, &s->limits[0], &r[0]);
				return V_STALE;
			}
			if (hold != NULL) {
				hold->r[0] = r[0];
				hold->entry = ENTRY_OF(i);
				hold->hash = w;
			}
			return V_ADMIT;
		}
		if (op0->is_tomb(op0->word(c0)))
			return V_DEAD;
		return still(s, i, w) ? V_DENY : V_STALE;
	}

	/* Cell 0 is the COMMIT word, cell 1 the limit: entry_decide() of
	 * src/limiter/decide.c for k = 2. */
	const struct sluice__limit_ops *op1 = s->ops[1];
	void *c1 = cell_of(s, i, 1);
	struct sluice_decision d0;
	uint64_t x = op0->word(c0);
	if (op0->is_tomb(x))
		return V_DEAD;
	if (!op1->check(c1, &s->limits[1], now_ns, cost, out))
		return still(s, i, w) ? V_DENY : V_STALE;
	if (cost == 0)
		return still(s, i, w) ? V_ADMIT : V_STALE;
	if (!op1->admit(c1, &s->limits[1], now_ns, cost, out, &r[1])) {
		if (op0->is_tomb(op0->word(c0)))
			return V_DEAD;
		return still(s, i, w) ? V_DENY : V_STALE;
	}
	/* release: our cell-1 commit happens-before a sweeper whose acquire
	 * fence follows a load of cell 0 that reads the commit below (or a
	 * later RMW): reclaim_slot(). */
	atomic_thread_fence(memory_order_release); /* release: why above */
	if (!op0->admit(c0, &s->limits[0], now_ns, cost, &d0, &r[0])) {
		op1->cancel(c1, &s->limits[1], &r[1]);
		return op0->is_tomb(op0->word(c0)) ? V_DEAD : (still(s, i, w) ? V_DENY : V_STALE);
	}
	if (!still(s, i, w)) {
		/* Cell 0 keeps the commit: a generation bump limits nothing. */
		op1->cancel(c1, &s->limits[1], &r[1]);
		return V_STALE;
	}
	if (hold != NULL) {
		hold->r[0] = r[0];
		hold->r[1] = r[1];
		hold->entry = ENTRY_OF(i);
		hold->hash = w;
	}
	return V_ADMIT;
}

static void fill_degraded(const struct shm_store *s, struct sluice_decision *out)
{
	bool open = s->fail_mode == SLUICE_FAIL_OPEN;
	struct sluice_decision fresh;

	s->ops[s->lc]->fresh(&s->limits[s->lc], 0, &fresh);
	memset(out, 0, sizeof *out);
	out->allowed = open;
	out->degraded = true;
	out->reason = open ? SLUICE_REASON_NONE : SLUICE_REASON_CAPACITY;
	out->limit = fresh.limit;
}

/* One key's admission (cost 0: a peek, nothing inserted). */
static enum verdict admit_key(const struct shm_store *s, const void *key, size_t key_len, uint64_t cost,
			      uint64_t now_ns, struct sluice_decision *out, struct sluice__limiter_hold *hold)
{
	struct krepr k;
	uint64_t hash = key_repr(s->secret, key, key_len, &k), w;
	enum verdict v;

	if (hold != NULL) {
		hold->entry = NULL;
		hold->handle = SLUICE_SLOT_NONE;
	}
	for (;;) {
		uint64_t i = lookup(s, hash, &k, &w);
		if (i == UINT64_MAX) {
			if (cost == 0) {
				s->ops[s->lc]->fresh(&s->limits[s->lc], now_ns, out);
				v = V_ADMIT;
				break;
			}
			i = insert(s, hash, &k, now_ns, &w);
			if (i == UINT64_MAX) {
				fill_degraded(s, out);
				v = V_DEGRADED;
				break;
			}
		}
		v = decide(s, i, w, cost, now_ns, out, hold);
		if (v == V_DEAD)
			free_slot(s, i, w); /* help: a tombstoned entry is freed by whoever sees it */
		else if (v != V_STALE)
			break;
	}
	out->limit_index = 0;
	if (cost == 0) {
		out->allowed = true;
		return v;
	}
	stat_add(s, v == V_ADMIT ? SHM_ST_ADMITTED : v == V_DENY ? SHM_ST_DENIED : SHM_ST_DEGRADED);
	if (hold != NULL && v == V_ADMIT && s->slots_cell >= 0)
		hold->handle = hold->r[s->slots_cell].w[0];
	return v;
}

/* ---- the limiter's operations (backend_internal.h) ---- */

static int check_key(const void *key, size_t key_len)
{
	return key == NULL || key_len > SLUICE_LIMITER_MAX_KEY ? SLUICE_EKEY : SLUICE_OK;
}

static int shm_admit(void *be, const void *key, size_t key_len, uint64_t cost, uint64_t now_ns,
		     struct sluice_decision *out)
{
	struct shm_store *s = be;
	if (cost > 0 && s->slots_cell >= 0)
		return SLUICE_EINVAL;
	int rc = check_key(key, key_len);
	if (rc != SLUICE_OK)
		return rc;
	admit_key(s, key, key_len, cost, now_ns, out, NULL);
	return SLUICE_OK;
}

static int shm_acquire(void *be, const void *key, size_t key_len, uint64_t cost, uint64_t now_ns,
		       struct sluice_decision *out, sluice_slot_handle *handle)
{
	struct sluice__limiter_hold hold;
	int rc = check_key(key, key_len);
	if (rc != SLUICE_OK)
		return rc;
	admit_key(be, key, key_len, cost, now_ns, out, &hold);
	*handle = hold.handle;
	return SLUICE_OK;
}

static int shm_release(void *be, const void *key, size_t key_len, sluice_slot_handle handle)
{
	struct shm_store *s = be;
	struct krepr k;
	uint64_t w;

	if (s->slots_cell < 0)
		return SLUICE_EINVAL;
	int rc = check_key(key, key_len);
	if (rc != SLUICE_OK)
		return rc;
	uint64_t i = lookup(s, key_repr(s->secret, key, key_len, &k), &k, &w);
	if (i == UINT64_MAX)
		return SLUICE_ENOTFOUND;
	/* An entry holding our slot is never idle, so it is live; a handle of
	 * an older generation carries another tag: ESTALE by the cell. */
	return sluice_slots_release(cell_of(s, i, (uint32_t)s->slots_cell), &s->limits[s->slots_cell].slots,
				    handle);
}

static int shm_admit_batch(void *be, const struct sluice_limiter_request *reqs, size_t n, uint64_t now_ns,
			   struct sluice_decision *out)
{
	struct shm_store *s = be;
	if (n > 0 && (reqs == NULL || out == NULL))
		return SLUICE_EINVAL;
	for (size_t j = 0; j < n; j++) {
		if (reqs[j].cost > 0 && s->slots_cell >= 0)
			return SLUICE_EINVAL;
		int rc = check_key(reqs[j].key, reqs[j].key_len);
		if (rc != SLUICE_OK)
			return rc;
	}
	for (size_t j = 0; j < n; j++)
		admit_key(s, reqs[j].key, reqs[j].key_len, reqs[j].cost, now_ns, &out[j], NULL);
	return SLUICE_OK;
}

static int shm_sweep(void *be, uint64_t now_ns, size_t budget, size_t *reclaimed)
{
	struct shm_store *s = be;
	uint64_t units = claim_now();
	size_t n = 0;

	if (budget > s->nslots)
		budget = (size_t)s->nslots;
	/* relaxed: sweeps share the cursor only to spread their work; any
	 * value is a valid starting slot. */
	uint64_t at = atomic_fetch_add_explicit(&s->reg->cursor, budget, memory_order_relaxed) % s->nslots; /* relaxed: why above */
	for (size_t j = 0; j < budget; j++) {
		n += reclaim_slot(s, at, now_ns, units);
		at = at + 1 == s->nslots ? 0 : at + 1;
	}
	if (reclaimed != NULL)
		*reclaimed = n;
	return SLUICE_OK;
}

static int shm_stats(const void *be, struct sluice_limiter_stats *out)
{
	const struct shm_store *s = be;
	uint64_t c[SHM_ST_COUNT] = { 0 };

	for (uint32_t j = 0; j < SHM_STRIPES; j++)
		for (int x = 0; x < SHM_ST_COUNT; x++)
			/* relaxed: a recent sum (sluice_limiter_stats()). */
			c[x] += atomic_load_explicit(&s->stripes[j].c[x], memory_order_relaxed); /* relaxed: why above */
	out->admitted = c[SHM_ST_ADMITTED];
	out->denied = c[SHM_ST_DENIED];
	out->degraded = c[SHM_ST_DEGRADED];
	out->inserted = c[SHM_ST_INSERTED];
	out->reclaimed = c[SHM_ST_RECLAIMED];
	out->live_keys = c[SHM_ST_INSERTED] - c[SHM_ST_RECLAIMED];
	out->bytes = out->live_keys * (s->body_bytes + 8);
	return SLUICE_OK;
}

static void shm_destroy(void *be)
{
	free(be);
}

static int shm_reserve(void *be, const void *key, size_t key_len, uint64_t cost, uint64_t now_ns,
		       struct sluice_decision *out, struct sluice__limiter_hold *hold)
{
	return admit_key(be, key, key_len, cost, now_ns, out, hold) == V_DEGRADED ? 1 : 0;
}

/* Undo a hold on slot i if it is still the generation that took it (a
 * reclaimed entry held nothing: it was idle). */
static void shm_cancel(void *be, const struct sluice__limiter_hold *hold)
{
	const struct shm_store *s = be;

	if (hold->entry == NULL)
		return;
	uint64_t i = SLOT_OF(hold->entry);
	/* acquire: the body of the generation we hold is the one we cancel on. */
	if (atomic_load_explicit(&s->states[i], memory_order_acquire) != hold->hash) /* acquire: why above */
		return;
	/* Cell 0 is cancelled only when it is the limit itself (one cell): a
	 * COMMIT word keeps its bump (sluice__limiter_cancel()). */
	if (s->ncells == 1)
		s->ops[0]->cancel(cell_of(s, i, 0), &s->limits[0], &hold->r[0]);
	else
		s->ops[1]->cancel(cell_of(s, i, 1), &s->limits[1], &hold->r[1]);
}

static bool shm_check(void *be, const void *key, size_t key_len, uint64_t cost, uint64_t now_ns,
		      struct sluice_decision *out)
{
	const struct shm_store *s = be;
	struct krepr k;
	uint64_t hash = key_repr(s->secret, key, key_len, &k), w;

	for (;;) {
		uint64_t i = lookup(s, hash, &k, &w);
		bool ok;
		if (i == UINT64_MAX) {
			/* Unknown key: full, so it admits cost iff cost fits the
			 * whole capacity (a slot: one per request); more never
			 * fits (sluice__limiter_check()). */
			const struct sluice_limit *l = &s->limits[s->lc];
			s->ops[s->lc]->fresh(l, now_ns, out);
			uint64_t need = l->kind == SLUICE_LIMIT_SLOTS ? cost != 0 : cost;
			ok = need <= out->remaining;
			if (!ok) {
				out->allowed = false;
				out->reason = SLUICE_REASON_NEVER;
				out->retry_after_ns = SLUICE_NEVER;
			}
		} else {
			void *c = cell_of(s, i, s->lc);
			ok = s->ops[s->lc]->check(c, &s->limits[s->lc], now_ns, cost, out);
			if (!still(s, i, w))
				continue;
		}
		out->limit_index = 0;
		return ok;
	}
}

static int shm_release_entry(void *be, uint64_t hash, const void *entry, sluice_slot_handle handle)
{
	const struct shm_store *s = be;

	if (s->slots_cell < 0)
		return SLUICE_EINVAL;
	if (entry == NULL)
		return SLUICE_ESTALE;
	uint64_t i = SLOT_OF(entry);
	if (i >= s->nslots)
		return SLUICE_ESTALE;
	/* acquire: the generation that took the slot; another generation's
	 * cell would refuse the handle by its tag anyway. */
	if (atomic_load_explicit(&s->states[i], memory_order_acquire) != hash) /* acquire: why above */
		return SLUICE_ESTALE;
	return sluice_slots_release(cell_of(s, i, (uint32_t)s->slots_cell), &s->limits[s->slots_cell].slots,
				    handle);
}

static bool shm_cancel_is_exact(const void *be)
{
	const struct shm_store *s = be;
	return s->ops[s->lc]->cancel_exact;
}

static void shm_foreach(void *be, uint64_t now_ns,
			void (*fn)(void *user, const void *key, size_t key_len, const struct sluice_decision *d),
			void *user)
{
	const struct shm_store *s = be;

	for (uint64_t i = 0; i < s->nslots; i++) {
		/* acquire: a LIVE word's body is visible. */
		uint64_t w = atomic_load_explicit(&s->states[i], memory_order_acquire); /* acquire: why above */
		if (st_of(w) != ST_LIVE)
			continue;
		struct krepr k;
		struct sluice_decision d;
		/* relaxed: validated by still() below. */
		k.meta = atomic_load_explicit(body_word(s, i, 0), memory_order_relaxed); /* relaxed: why above */
		for (uint32_t j = 0; j < SHM_KEY_WORDS; j++)
			/* relaxed: as above. */
			k.w[j] = atomic_load_explicit(body_word(s, i, 8 + 8 * j), memory_order_relaxed); /* relaxed: as above */
		if (s->ops[0]->is_tomb(s->ops[0]->word(cell_of(s, i, 0))))
			continue;
		s->ops[s->lc]->check(cell_of(s, i, s->lc), &s->limits[s->lc], now_ns, 0, &d);
		if (!still(s, i, w))
			continue;
		d.allowed = true;
		d.limit_index = 0;
		/* A long key is reported as its 16-byte digest. */
		size_t len = (k.meta & SHM_META_DIGEST) ? 16 : (size_t)(k.meta & 0xffff);
		unsigned char b[SLUICE_SHM_KEY_INLINE];
		memcpy(b, k.w, sizeof b);
		fn(user, b, len, &d);
	}
}

static const struct sluice__limiter_ops shm_ops = {
	.admit = shm_admit,
	.acquire = shm_acquire,
	.release = shm_release,
	.admit_batch = shm_admit_batch,
	.sweep = shm_sweep,
	.stats = shm_stats,
	.destroy = shm_destroy,
	.reserve = shm_reserve,
	.cancel = shm_cancel,
	.check = shm_check,
	.release_entry = shm_release_entry,
	.cancel_is_exact = shm_cancel_is_exact,
	.foreach = shm_foreach,
};

int sluice__shm_cells(const struct sluice_limit *limit, uint32_t *ncells, uint32_t *cell_off,
		      uint32_t *body_bytes)
{
	const struct sluice__limit_ops *op = sluice__limit_ops_of(limit->kind);
	if (op == NULL || limit->kind == SLUICE__LIMIT_COMMIT || sluice__limit_validate(limit) != SLUICE_OK)
		return SLUICE_EINVAL;
	/* A sliding log's writers take a per-cell critical section
	 * (sluice/window.h): a process dying inside it would leave the cell
	 * locked for every other. */
	if (limit->kind == SLUICE_LIMIT_SLIDING_LOG)
		return SLUICE_EUNSUPPORTED;
	uint32_t off = 8 + SLUICE_SHM_KEY_INLINE;
	cell_off[0] = off;
	if (op->commit_ok != NULL && op->commit_ok(limit)) {
		*ncells = 1;
		off += (uint32_t)op->cell_size(limit);
	} else {
		struct sluice_limit commit = { .kind = SLUICE__LIMIT_COMMIT };
		*ncells = 2;
		off += (uint32_t)sluice__limit_ops_of(SLUICE__LIMIT_COMMIT)->cell_size(&commit);
		cell_off[1] = off;
		off += (uint32_t)op->cell_size(limit);
	}
	*body_bytes = off;
	if (off - cell_off[0] > SHM_CELLS_MAX)
		return SLUICE_ETOOBIG;
	return SLUICE_OK;
}

static void store_init(struct shm_store *s, void *base, struct shm_region *r, const unsigned char *secret)
{
	unsigned char *b = base;

	memset(s, 0, sizeof *s);
	s->states = (_Atomic uint64_t *)(void *)(b + r->states_off);
	s->bodies = b + r->bodies_off;
	s->stripes = (struct shm_stripe *)(void *)(b + r->stats_off);
	s->reg = r;
	s->secret = secret;
	s->nslots = r->nslots;
	s->window = r->nslots < 2 * SHM_WINDOW ? (uint32_t)r->nslots : 2 * SHM_WINDOW;
	s->body_bytes = r->body_bytes;
	s->ncells = r->ncells;
	s->cell_off[0] = r->cell_off[0];
	s->cell_off[1] = r->cell_off[1];
	s->slots_cell = -1;
	if (r->ncells == 1) {
		s->limits[0] = r->spec;
		s->lc = 0;
	} else {
		s->limits[0] = (struct sluice_limit){ .kind = SLUICE__LIMIT_COMMIT };
		s->limits[1] = r->spec;
		s->lc = 1;
	}
	for (uint32_t c = 0; c < r->ncells; c++)
		s->ops[c] = sluice__limit_ops_of(s->limits[c].kind);
	if (r->spec.kind == SLUICE_LIMIT_SLOTS)
		s->slots_cell = (int32_t)s->lc;
}

int sluice__shm_limiter_open(struct sluice_limiter **out, void *base, struct shm_region *r, uint32_t fail_mode)
{
	const struct shm_header *h = base;
	struct shm_store *s = malloc(sizeof *s);
	if (s == NULL)
		return SLUICE_ENOMEM;
	store_init(s, base, r, h->secret);
	s->fail_mode = fail_mode;
	return sluice__limiter_create_backend(out, &shm_ops, s);
}

uint64_t sluice__shm_region_rehash(void *base, struct shm_region *r, const unsigned char *secret,
				   const void *old_base, const struct shm_region *old)
{
	struct shm_store s, o;
	uint64_t moved = 0;

	store_init(&s, base, r, secret);
	store_init(&o, (void *)(uintptr_t)old_base, (struct shm_region *)(uintptr_t)old, secret);
	for (uint64_t i = 0; i < o.nslots; i++) {
		/* relaxed: no process uses either zone during init. */
		uint64_t w = atomic_load_explicit(&o.states[i], memory_order_relaxed); /* relaxed: why above */
		if (st_of(w) != ST_LIVE || o.ops[0]->is_tomb(o.ops[0]->word(cell_of(&o, i, 0))))
			continue;
		struct krepr k;
		/* relaxed: as above. */
		k.meta = atomic_load_explicit(body_word(&o, i, 0), memory_order_relaxed); /* relaxed: as above */
		for (uint32_t j = 0; j < SHM_KEY_WORDS; j++)
			/* relaxed: as above. */
			k.w[j] = atomic_load_explicit(body_word(&o, i, 8 + 8 * j), memory_order_relaxed); /* relaxed: as above */
		uint64_t hash = repr_hash(secret, &k);
		struct probe home = home_of(&s, hash);
		for (uint32_t j = 0; j < s.window; j++) {
			uint64_t x = slot_at(&s, &home, j);
			/* relaxed: as above. */
			uint64_t fw = atomic_load_explicit(&s.states[x], memory_order_relaxed); /* relaxed: as above */
			if (st_of(fw) != ST_FREE)
				continue;
			memcpy(s.bodies + x * s.body_bytes, o.bodies + i * o.body_bytes, s.body_bytes);
			/* relaxed: as above. */
			atomic_store_explicit(&s.states[x], make_word(ST_LIVE, tag_of_hash(hash), gen_of(w), 0), /* relaxed: as above */
					      memory_order_relaxed);
			stat_add(&s, SHM_ST_INSERTED);
			moved++;
			break;
		}
	}
	return moved;
}

int sluice__shm_census(struct sluice_limiter *lim, uint64_t *free_slots, uint64_t *claimed, uint64_t *live)
{
	const struct shm_store *s = sluice__limiter_backend(lim, &shm_ops);
	if (s == NULL)
		return SLUICE_EINVAL;
	*free_slots = *claimed = *live = 0;
	for (uint64_t i = 0; i < s->nslots; i++) {
		/* relaxed: a census, each word read once. */
		uint64_t w = atomic_load_explicit(&s->states[i], memory_order_relaxed); /* relaxed: why above */
		*(st_of(w) == ST_FREE ? free_slots : st_of(w) == ST_CLAIMED ? claimed : live) += 1;
	}
	return SLUICE_OK;
}
