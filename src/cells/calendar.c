/*
 * Calendar windows: at most L units per aligned window [k * W, (k + 1) * W)
 * of Unix time, in one 64-bit word.
 *
 * The word packs the window index k_s (mod 2^32, bits 32-63) and the units
 * admitted in it (bits 0-31). A request of c units at t (window k = t / W)
 * reads the distance d = (k - k_s) mod 2^32:
 *   0:             same window, count applies;
 *   1 .. 2^31 - 1: a later window, count restarts at 0 and k is stored;
 *   2^31 and up:   k is before k_s: time went backwards. The request is
 *                  judged against, and counted in, the cell's window, so no
 *                  window of the cell ever holds more than L units. (A cell
 *                  untouched for 2^31+ windows aliases to this case and waits
 *                  for its window: W = 1 s gives 68 years, W = 1 ns 2.1 s.)
 * and is admitted iff count + c <= L. The word 0 means "fresh" (every word
 * an admission stores has count >= 1), so a new cell has no window of its
 * own to be "behind" of. Because POSIX time counts exactly
 * 86400 s per day, multiples of 86400 s are 00:00:00 UTC: W = SLUICE_DAY_NS
 * resets at UTC midnight, W = SLUICE_HOUR_NS on the hour.
 *
 * reset_ns is (k_eff + 1) * W - t, the time to the end of the window the
 * request was judged in, computed in 128 bits; a boundary past the end of
 * the clock (2^64 - 1 ns) never comes, so it reads SLUICE_NEVER, as does
 * the retry-after of a request denied in that last window.
 *
 * Concurrency: the word is the whole state and publishes nothing else, so
 * every access is relaxed, as in the GCRA cell.
 */
#include <sluice/window.h>

#include <stdatomic.h>

#include "cells/window_internal.h"
#include "common/divide_internal.h"
#include "common/util_internal.h"

#define COUNT_MASK UINT64_C(0xffffffff)
#define BACKWARDS (UINT64_C(1) << 31)

_Static_assert(sizeof(struct sluice_calendar) == 8, "calendar cell is one word");

int sluice_calendar_config_init(struct sluice_calendar_config *cfg, uint64_t limit, uint64_t window_ns)
{
	if (cfg == NULL || limit == 0 || window_ns == 0)
		return SLUICE_EINVAL;
	if (limit > SLUICE_CALENDAR_MAX_LIMIT)
		return SLUICE_ETOOBIG;
	cfg->limit = limit;
	cfg->window_ns = window_ns;
	sluice__divider_init(window_ns, &cfg->div_magic, &cfg->div_shift1, &cfg->div_shift2);
	return SLUICE_OK;
}

void sluice_calendar_init(struct sluice_calendar *cell)
{
	/* relaxed: initialisation precedes publication of the cell. */
	atomic_store_explicit(&cell->word, 0, memory_order_relaxed); /* relaxed: why above */
}

struct view {
	uint64_t index;  /* k to store, mod 2^32 */
	uint64_t count;  /* units that count against this request's window */
	uint64_t end_ns; /* time from t to the end of that window */
};

static inline void view_of(uint64_t word, const struct sluice_calendar_config *cfg, uint64_t t,
			   struct view *v)
{
	uint64_t k = sluice__divide(t, cfg->div_magic, cfg->div_shift1, cfg->div_shift2);
	uint64_t ks = word >> 32, d = (k - ks) & COUNT_MASK;
	sluice__u128 k_eff = k;

	if (word == 0) { /* fresh: every stored word has count >= 1 */
		v->index = k & COUNT_MASK;
		v->count = 0;
	} else if (d == 0) {
		v->index = ks;
		v->count = word & COUNT_MASK;
	} else if (d < BACKWARDS) {
		v->index = k & COUNT_MASK;
		v->count = 0;
	} else {
		v->index = ks;
		v->count = word & COUNT_MASK;
		k_eff += (COUNT_MASK + 1) - d;
	}
	sluice__u128 end = (k_eff + 1) * cfg->window_ns; /* absolute boundary */
	v->end_ns = end > UINT64_MAX ? SLUICE_NEVER : (uint64_t)end - t;
}

static inline void fill(struct sluice_decision *out, const struct sluice_calendar_config *cfg,
			bool allowed, uint64_t count_after, uint64_t end_ns, uint64_t retry_ns,
			uint8_t reason)
{
	if (out == NULL)
		return;
	sluice__decision_set(out, allowed, reason, cfg->limit,
			     count_after >= cfg->limit ? 0 : cfg->limit - count_after, end_ns, retry_ns);
}

/* tombs: the tombstone words are never states (window_internal.h): deny
 * on them. */
static bool admit(struct sluice_calendar *cell, const struct sluice_calendar_config *cfg, uint64_t t,
		  uint64_t cost, struct sluice_decision *out, struct sluice_calendar_receipt *receipt,
		  bool tombs)
{
	/* relaxed: the word publishes no other memory; a stale value is caught
	 * by the CAS, or (for a denial) describes a state that did exist. */
	uint64_t word = atomic_load_explicit(&cell->word, memory_order_relaxed); /* relaxed: why above */
	struct view v;

	for (;;) {
		view_of(word, cfg, t, &v);
		if (SLUICE_UNLIKELY(cost > cfg->limit || (tombs && sluice__word_is_tomb(word)))) {
			fill(out, cfg, false, v.count, v.end_ns, SLUICE_NEVER, SLUICE_REASON_NEVER);
			return false;
		}
		if (v.count + cost > cfg->limit) {
			fill(out, cfg, false, v.count, v.end_ns, v.end_ns, SLUICE_REASON_QUOTA);
			return false;
		}
		if (cost == 0) {
			fill(out, cfg, true, v.count, v.end_ns, 0, SLUICE_REASON_NONE);
			return true;
		}
		uint64_t next = v.index << 32 | (v.count + cost);
		/* relaxed on success and failure: only this word's atomicity
		 * matters; on failure `word` is reloaded and the decision redone. */
		if (atomic_compare_exchange_weak_explicit(&cell->word, &word, next, /* relaxed: why above */
							  memory_order_relaxed,
							  memory_order_relaxed)) {
			if (receipt != NULL) {
				receipt->before = word;
				receipt->after = next;
			}
			fill(out, cfg, true, v.count + cost, v.end_ns, 0, SLUICE_REASON_NONE);
			return true;
		}
	}
}

bool sluice_calendar_admit(struct sluice_calendar *cell, const struct sluice_calendar_config *cfg,
			   uint64_t now_ns, uint64_t cost, struct sluice_decision *out)
{
	return admit(cell, cfg, now_ns, cost, out, NULL, false);
}

bool sluice_calendar_admit_now(struct sluice_calendar *cell, const struct sluice_calendar_config *cfg,
			       uint64_t cost, struct sluice_decision *out)
{
	return admit(cell, cfg, sluice_realtime_ns(), cost, out, NULL, false);
}

bool sluice_calendar_admit_receipt(struct sluice_calendar *cell,
				   const struct sluice_calendar_config *cfg, uint64_t now_ns,
				   uint64_t cost, struct sluice_decision *out,
				   struct sluice_calendar_receipt *receipt)
{
	if (receipt != NULL)
		receipt->before = receipt->after = 0;
	return admit(cell, cfg, now_ns, cost, out, receipt, false);
}

bool sluice_calendar_cancel(struct sluice_calendar *cell, const struct sluice_calendar_receipt *receipt)
{
	if (receipt == NULL || receipt->before == receipt->after)
		return false;
	uint64_t expected = receipt->after;
	/* relaxed: as for admit; success means no other operation landed after
	 * ours, so the old word is exactly the state without our admission. */
	return atomic_compare_exchange_strong_explicit(&cell->word, &expected, receipt->before, /* relaxed: why above */
						       memory_order_relaxed, memory_order_relaxed);
}

/* ---- for the keyed limiter (window_internal.h) ---- */

static inline bool tombs_of(const struct sluice_calendar_config *cfg)
{
	return cfg->limit <= SLUICE__CALENDAR_CELL0_MAX_LIMIT;
}

bool sluice__calendar_admit(struct sluice_calendar *cell, const struct sluice_calendar_config *cfg,
			    uint64_t now_ns, uint64_t cost, struct sluice_decision *out,
			    struct sluice_calendar_receipt *receipt)
{
	return admit(cell, cfg, now_ns, cost, out, receipt, tombs_of(cfg));
}

bool sluice__calendar_check_word(uint64_t word, const struct sluice_calendar_config *cfg,
				 uint64_t now_ns, uint64_t cost, struct sluice_decision *out)
{
	struct sluice_calendar copy;

	/* relaxed: a private object, never shared. */
	atomic_init(&copy.word, word);
	return admit(&copy, cfg, now_ns, cost, out, NULL, tombs_of(cfg));
}

bool sluice__calendar_cancel_exact(struct sluice_calendar *cell, const struct sluice_calendar_config *cfg,
				   const struct sluice_calendar_receipt *receipt)
{
	if (receipt == NULL || receipt->before == receipt->after)
		return false;
	uint64_t b = receipt->before, a = receipt->after, ka = a >> 32;
	/* The admission added to the count of window ka: from the before
	 * word's count if that word was already in ka, else from 0. */
	uint64_t cost = (a & COUNT_MASK) - (b != 0 && b >> 32 == ka ? b & COUNT_MASK : 0);
	bool tombs = tombs_of(cfg);
	/* relaxed: the word publishes nothing (file comment); the CAS below
	 * decides on the latest value. */
	uint64_t w = atomic_load_explicit(&cell->word, memory_order_relaxed); /* relaxed: why above */

	for (;;) {
		if (tombs && sluice__word_is_tomb(w))
			return true; /* the entry died: nothing left to undo */
		if (w == 0 || w >> 32 != ka)
			return true; /* the cell left ka: its count weighs no more */
		/* relaxed on success and failure: only this word's atomicity
		 * matters; count >= cost as our units are still in it. */
		if (atomic_compare_exchange_weak_explicit(&cell->word, &w, w - cost, memory_order_relaxed, /* relaxed: why above */
							  memory_order_relaxed))
			return true;
	}
}

bool sluice_calendar_is_idle(const struct sluice_calendar *cell, const struct sluice_calendar_config *cfg,
			     uint64_t now_ns)
{
	/* relaxed: a snapshot of one word; the limiter re-checks under its own
	 * protocol before reclaiming. */
	uint64_t word = atomic_load_explicit(&((struct sluice_calendar *)(uintptr_t)cell)->word, /* relaxed: why above */
					     memory_order_relaxed);
	struct view v;

	view_of(word, cfg, now_ns, &v);
	return v.count == 0;
}
