/*
 * gcra_internal.h - what the keyed limiter needs from the GCRA cell beyond
 * the public API: the raw word, the two reserved "tombstone" values, and the
 * admission itself as an inline function (sluice__gcra_admit(), the body of
 * sluice_gcra_admit() and its siblings in gcra.c, whose file comment gives
 * the algorithm), so the limiter's one-limit path runs it without a call.
 * Not installed; not part of the API.
 *
 * The word of a cell is its TAT. sluice_gcra_admit() never writes a value
 * above SLUICE__GCRA_TAT_MAX (its horizon rule denies instead), so the two
 * values above it can mark a dead limiter entry (docs/limiter.md, "Reclaim"):
 *   SLUICE__GCRA_TOMB           the entry is dead; it may still be linked.
 *   SLUICE__GCRA_TOMB_UNLINKED  dead, and the thread whose unlink from the
 *                               limiter's index won has returned from it.
 * Every admit with cost > 0 on a tombstone word is denied (base exceeds the
 * horizon whatever now_ns is), so a tombstone is never overwritten by an
 * admission; cancels restore values an admission replaced, never a tombstone.
 */
#ifndef SLUICE_GCRA_INTERNAL_H
#define SLUICE_GCRA_INTERNAL_H

#include <sluice/gcra.h>

#include <stdatomic.h>

#include "common/util_internal.h"

#define SLUICE__GCRA_TOMB UINT64_MAX
#define SLUICE__GCRA_TOMB_UNLINKED (UINT64_MAX - 1)
#define SLUICE__GCRA_TAT_MAX (UINT64_MAX - 2)

/* The raw word. relaxed: callers that need ordering add their own fences
 * (the limiter's sweep.c pairs an acquire fence after it with the admitters' release
 * fence before their commit to cell 0). */
static inline uint64_t sluice__gcra_word(const struct sluice_gcra *cell)
{
	return atomic_load_explicit(&((struct sluice_gcra *)cell)->tat_ns, memory_order_relaxed); /* relaxed: why above */
}

static inline bool sluice__gcra_is_tomb(uint64_t word)
{
	return word > SLUICE__GCRA_TAT_MAX;
}

/* floor(n / interval_ns) by the precomputed reciprocal (gcra.c,
 * divider_init()). */
static inline uint64_t sluice__gcra_div_interval(const struct sluice_rate *rate, uint64_t n)
{
	return (uint64_t)(((sluice__u128)n * rate->div_magic) >> rate->div_shift);
}

/* Fill *out for a state whose debt after the decision is `debt` ns. */
static inline void sluice__gcra_fill(struct sluice_decision *out, const struct sluice_rate *rate,
				     bool allowed, uint64_t debt, uint64_t retry_after_ns, uint8_t reason)
{
	uint64_t remaining = debt >= rate->tolerance_ns
				     ? 0
				     : sluice__gcra_div_interval(rate, rate->tolerance_ns - debt);
	sluice__decision_set(out, allowed, reason, rate->limit, remaining, debt, retry_after_ns);
}

/* sluice_gcra_admit_receipt() without resetting the receipt on denial
 * (callers read it only on admission): the whole algorithm of gcra.c, here so
 * that the keyed limiter inlines it on its one-limit path. receipt and out may
 * be NULL. */
static inline bool sluice__gcra_admit(struct sluice_gcra *cell, const struct sluice_rate *rate,
				      uint64_t now_ns, uint64_t cost, struct sluice_decision *out,
				      struct sluice_gcra_receipt *receipt)
{
	/* relaxed: F publishes no other memory; a stale value is either caught by
	 * the CAS below or, for a denial, describes a state that did exist. */
	uint64_t tat = atomic_load_explicit(&cell->tat_ns, memory_order_relaxed); /* relaxed: see above */

	if (SLUICE_UNLIKELY(cost > rate->burst)) {
		if (out != NULL) {
			uint64_t debt = tat > now_ns ? tat - now_ns : 0;
			sluice__gcra_fill(out, rate, false, debt, SLUICE_NEVER,
					  SLUICE_REASON_NEVER);
		}
		return false;
	}
	if (cost == 0) {
		/* A peek is always allowed, even at a stale time whose debt exceeds
		 * the bucket depth (remaining is then 0). */
		if (out != NULL)
			sluice__gcra_fill(out, rate, true, tat > now_ns ? tat - now_ns : 0, 0,
					  SLUICE_REASON_NONE);
		return true;
	}
	uint64_t need = cost * rate->interval_ns; /* 0 < need <= tolerance_ns <= 2^62 */

	for (;;) {
		uint64_t base = tat > now_ns ? tat : now_ns;
		uint64_t debt = base - now_ns;

		/* Horizon: base never decreases for this request (F only grows
		 * except by cancel, and waiting raises now), so once base + need
		 * passes SLUICE__GCRA_TAT_MAX no wait helps: deny with "never", also
		 * when the rate would deny anyway. Not UINT64_MAX: the top two
		 * values of the word are the keyed limiter's tombstones
		 * (above). */
		if (SLUICE_UNLIKELY(base > SLUICE__GCRA_TAT_MAX - need)) {
			if (out != NULL)
				sluice__gcra_fill(out, rate, false, debt, SLUICE_NEVER,
						  SLUICE_REASON_NEVER);
			return false;
		}
		if (debt > rate->tolerance_ns - need) {
			if (out != NULL)
				sluice__gcra_fill(out, rate, false, debt,
						  debt - (rate->tolerance_ns - need), SLUICE_REASON_RATE);
			return false;
		}
		uint64_t next = base + need;
		/* relaxed on success and failure: the CAS only has to be atomic on
		 * this one word (gcra.c, "Concurrency"); on failure `tat` is
		 * reloaded and the decision recomputed from the newer state. */
		if (atomic_compare_exchange_weak_explicit(&cell->tat_ns, &tat, next, /* relaxed/relaxed: see above */
							  memory_order_relaxed,
							  memory_order_relaxed)) {
			if (receipt != NULL) {
				receipt->before = tat;
				receipt->after = next;
			}
			if (out != NULL)
				sluice__gcra_fill(out, rate, true, debt + need, 0, SLUICE_REASON_NONE);
			return true;
		}
	}
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
	return sluice__gcra_admit(&copy, rate, now_ns, cost, out, NULL);
}

/* CAS the word from `observed` (a live, full value) to SLUICE__GCRA_TOMB.
 * relaxed on success and failure: the sweeper orders its earlier reads with
 * an acquire fence after loading `observed`; the CAS itself only needs to be
 * atomic: it fails if any admission landed on the word since (the word only
 * grows between tombstones when the entry has other cells, as the limiter
 * never cancels such a cell 0, so there is no ABA; a one-cell entry's ABA
 * hides nothing: the word is its whole state). */
static inline bool sluice__gcra_tomb(struct sluice_gcra *cell, uint64_t observed)
{
	return atomic_compare_exchange_strong_explicit(&cell->tat_ns, &observed, SLUICE__GCRA_TOMB, /* relaxed: why above */
						       memory_order_relaxed, memory_order_relaxed);
}

#endif /* SLUICE_GCRA_INTERNAL_H */
