/*
 * table.c - the table of one region of a shared-memory zone: a
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
 * resolving, so one of them publishes and the other uses its entry. An
 * inserter that finds no FREE slot (a rival took the last one) waits for
 * a claim of its tag in the same way before it calls the window full.
 *
 * Reclaim. As in process (src/limiter/sweep.c, "Reclaim"): a sweeper loads
 * cell 0, checks it and the other cells idle, and CASes cell 0 from the
 * word it loaded to a tombstone; an admission commits cell 0 last, after a
 * release fence, and a commit on a tombstone is denied. The tombstoned slot is
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
#include <sched.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "shm/store_internal.h"

/* The stored form of key and its hash. */
uint64_t sluice__shm_key_repr(const unsigned char *secret, const void *key, size_t len, struct krepr *k)
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

/* The LIVE slot of k in its window, or UINT64_MAX; *wout its state word.
 * Stops at a never-claimed slot (FREE, gen 0): an insertion takes the
 * first FREE slot of the window, so a key lives before any slot that was
 * FREE all along. */
uint64_t sluice__shm_lookup(const struct shm_store *s, uint64_t hash, const struct krepr *k, uint64_t *wout)
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
bool sluice__shm_free_slot(const struct shm_store *s, uint64_t i, uint64_t w)
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
bool sluice__shm_reclaim_slot(const struct shm_store *s, uint64_t i, uint64_t now_ns, uint64_t now_units)
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
		/* Cell 0 first, as the in-process sweep (entry_idle()): an
		 * entry whose cell 0 is busy is left alone, leases included. */
		if (!op0->word_is_idle(w0, &s->limits[0], now_ns))
			return false;
		/* acquire: pairs with the release fence an admission issues
		 * before committing cell 0 (decide_entry()): if w0 is that
		 * commit or a later RMW, its other cells are visible below. */
		atomic_thread_fence(memory_order_acquire); /* acquire: why above */
		for (uint32_t c = 1; c < s->ncells; c++) {
			void *cc = cell_of(s, i, c);
			/* An expired lease is reclaimed first, as the next
			 * acquire would (src/limiter/sweep.c). */
			if ((int32_t)c == s->slots_cell && s->limits[c].slots.lease_ttl_ns != 0)
				(void)sluice_slots_reap(cc, &s->limits[c].slots, now_ns);
			if (!s->ops[c]->is_idle(cc, &s->limits[c], now_ns))
				return false;
		}
		/* w0 was this generation's word (not a reused slot's). */
		if (!still(s, i, w))
			return false;
		if (!op0->tomb(c0, w0))
			return false;
	}
	return sluice__shm_free_slot(s, i, w);
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

/* The first slot of the window claimed for a key of our tag (its claim in
 * *cout), or UINT64_MAX. */
static uint64_t tag_claim(const struct shm_store *s, const struct probe *home, uint64_t tag, uint64_t *cout)
{
	for (uint32_t j = 0; j < s->window; j++) {
		uint64_t x = slot_at(s, home, j);
		/* relaxed: only picks a claim to wait for; wait_claim()
		 * rereads the word (seq_cst). */
		uint64_t w = atomic_load_explicit(&s->states[x], memory_order_relaxed); /* relaxed: why above */
		if (st_of(w) == ST_CLAIMED && tag_of(w) == tag) {
			*cout = w;
			return x;
		}
	}
	return UINT64_MAX;
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
uint64_t sluice__shm_insert(const struct shm_store *s, uint64_t hash, const struct krepr *k, uint64_t now_ns,
		       uint64_t *wout)
{
	struct probe home = home_of(s, hash);
	uint64_t tag = tag_of_hash(hash);

	for (;;) {
		uint64_t c, i = sluice__shm_lookup(s, hash, k, wout);
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
				any |= sluice__shm_reclaim_slot(s, slot_at(s, &home, j), now_ns, units);
			if (any)
				continue;
			/* Still full. A claim of our tag may be a rival inserting
			 * this key into the window's last FREE slot: wait for it,
			 * as for a rival met in the rescan below, then look again
			 * (it published the key, or gave the slot up). Full only
			 * when no such claim is left. */
			uint64_t x = tag_claim(s, &home, tag, &c);
			if (x == UINT64_MAX)
				return UINT64_MAX;
			wait_claim(s, x, c);
			continue;
		}
		uint64_t gen = gen_of(fw) + 1;
		c = make_word(ST_CLAIMED, tag, gen, units);
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

uint64_t sluice__shm_region_rehash(void *base, struct shm_region *r, const unsigned char *secret,
				   const void *old_base, const struct shm_region *old)
{
	struct shm_store s, o;
	uint64_t moved = 0;

	sluice__shm_store_init(&s, base, r, secret);
	sluice__shm_store_init(&o, (void *)(uintptr_t)old_base, (struct shm_region *)(uintptr_t)old, secret);
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
