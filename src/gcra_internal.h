/*
 * gcra_internal.h - what the keyed limiter needs from the GCRA cell beyond
 * the public API: the raw word and the two reserved "tombstone" values.
 * Not installed; not part of the API.
 *
 * The word of a cell is its TAT. sluice_gcra_admit() never writes a value
 * above SLUICE__GCRA_TAT_MAX (its horizon rule denies instead), so the two
 * values above it can mark a dead limiter entry (docs/limiter.md, "Reclaim"):
 *   SLUICE__GCRA_TOMB           the entry is dead; it may still be linked.
 *   SLUICE__GCRA_TOMB_UNLINKED  dead, and the thread whose cds_lfht_del()
 *                               won has returned from it.
 * Every admit with cost > 0 on a tombstone word is denied (base exceeds the
 * horizon whatever now_ns is), so a tombstone is never overwritten by an
 * admission; cancels restore values an admission replaced, never a tombstone.
 */
#ifndef SLUICE_GCRA_INTERNAL_H
#define SLUICE_GCRA_INTERNAL_H

#include <sluice/gcra.h>

#include <stdatomic.h>

#define SLUICE__GCRA_TOMB UINT64_MAX
#define SLUICE__GCRA_TOMB_UNLINKED (UINT64_MAX - 1)
#define SLUICE__GCRA_TAT_MAX (UINT64_MAX - 2)

/* The raw word. relaxed: callers that need ordering add their own fences
 * (limiter.c pairs an acquire fence after it with the admitters' release
 * fence before their commit to cell 0). */
static inline uint64_t sluice__gcra_word(const struct sluice_gcra *cell)
{
	return atomic_load_explicit(&((struct sluice_gcra *)cell)->tat_ns, memory_order_relaxed); /* relaxed: why above */
}

static inline bool sluice__gcra_is_tomb(uint64_t word)
{
	return word > SLUICE__GCRA_TAT_MAX;
}

/* The decision sluice_gcra_admit() would take on a cell holding `word`,
 * without writing anything: the dry run of the all-or-nothing check. It runs
 * the real admit on a private copy so that both can never disagree. */
static inline bool sluice__gcra_check_word(uint64_t word, const struct sluice_rate *rate,
					   uint64_t now_ns, uint64_t cost,
					   struct sluice_decision *out)
{
	struct sluice_gcra copy;

	/* relaxed: a private object, never shared. */
	atomic_init(&copy.tat_ns, word);
	return sluice_gcra_admit(&copy, rate, now_ns, cost, out);
}

/* CAS the word from `observed` (a live, full value) to SLUICE__GCRA_TOMB.
 * relaxed on success and failure: the sweeper orders its earlier reads with
 * an acquire fence after loading `observed`; the CAS itself only needs to be
 * atomic: it fails if any admission landed on the word since (the word only
 * grows between tombstones, so there is no ABA). */
static inline bool sluice__gcra_tomb(struct sluice_gcra *cell, uint64_t observed)
{
	return atomic_compare_exchange_strong_explicit(&cell->tat_ns, &observed, SLUICE__GCRA_TOMB, /* relaxed: why above */
						       memory_order_relaxed, memory_order_relaxed);
}

#endif /* SLUICE_GCRA_INTERNAL_H */
