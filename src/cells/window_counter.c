/*
 * Sliding-window counter: the two-window estimate in one 64-bit word.
 *
 * Time is cut into aligned windows k = t / W. The cell keeps cur, the units
 * admitted in its window k_s, and prev, those admitted in k_s - 1. At time t
 * in window k with elapsed e = t % W, the units of the sliding window
 * (t - W, t] are estimated as if prev's units had been spread evenly over
 * their window:
 *
 *     estimate = cur + prev * (W - e) / W
 *
 * and c units are admitted iff estimate + c <= L, tested exactly in 128-bit
 * integers as (L - cur - c) * W >= prev * (W - e). Moving to a later window
 * shifts (prev, cur) to (cur, 0) for the next window and to (0, 0) for any
 * later one.
 *
 * Error bound. Let t be in window k, e = t % W, and p the units admitted in
 * window k - 1. The units admitted in (t - W, t] are those of window k up to
 * t plus those of window k - 1 after t - W, at most cur + p. At the last
 * admission z <= t in window k, at elapsed e_z <= e, the test held with the
 * cur after it: cur <= L - p * (W - e_z) / W. So the window holds at most
 *
 *     L + p * e_z / W  <=  L + floor(p * e / W)  <  2L
 *
 * units, and never more than L per aligned window. The bound is reached when
 * window k - 1's units all arrived at its very end; with evenly spread
 * arrivals the estimate is exact. It can also deny what an exact log admits
 * (prev's units early in their window).
 *
 * Packing: bits 0-19 cur, 20-39 prev, 40-63 k_s mod 2^24. Counts fit since
 * L <= 2^20 - 1. The window distance d = (k - k_s) mod 2^24 reads as:
 *   0: same window; 1: next window; 2 .. 2^23 - 1: later; 2^23 and above:
 *   k is before k_s, i.e. time went backwards (or the cell sat untouched for
 *   2^23+ windows, which aliases to it: docs/windows.md).
 * The word 0 means "fresh" (every stored word has cur >= 1), so a new cell
 * never reads as being ahead of the clock. Backwards requests are judged against the cell's own window at elapsed 0
 * (prev at full weight, the most conservative point of that window) and
 * counted there, so a stale clock never over-admits.
 *
 * Concurrency: the word is the whole state and publishes nothing else, so
 * every access is relaxed, as in the GCRA cell: atomicity of the CAS and the
 * single modification order of the word are all the algorithm needs.
 */
#include <sluice/window.h>

#include <stdatomic.h>

#include "cells/window_internal.h"
#include "common/divide_internal.h"
#include "common/util_internal.h"

#define COUNT_MASK ((UINT64_C(1) << SLUICE_WINDOW_COUNTER_COUNT_BITS) - 1)
#define INDEX_MASK ((UINT64_C(1) << SLUICE_WINDOW_COUNTER_INDEX_BITS) - 1)
#define BACKWARDS (UINT64_C(1) << (SLUICE_WINDOW_COUNTER_INDEX_BITS - 1))

_Static_assert(2 * SLUICE_WINDOW_COUNTER_COUNT_BITS + SLUICE_WINDOW_COUNTER_INDEX_BITS == 64,
	       "counter fields fill one word");
_Static_assert(sizeof(struct sluice_window_counter) == 8, "counter cell is one word");

static inline uint64_t pack(uint64_t index, uint64_t prev, uint64_t cur)
{
	return index << (2 * SLUICE_WINDOW_COUNTER_COUNT_BITS) |
	       prev << SLUICE_WINDOW_COUNTER_COUNT_BITS | cur;
}

int sluice_window_counter_config_init(struct sluice_window_counter_config *cfg, uint64_t limit,
				      uint64_t window_ns)
{
	if (cfg == NULL || limit == 0 || window_ns == 0)
		return SLUICE_EINVAL;
	if (limit > SLUICE_WINDOW_COUNTER_MAX_LIMIT)
		return SLUICE_ETOOBIG;
	cfg->limit = limit;
	cfg->window_ns = window_ns;
	sluice__divider_init(window_ns, &cfg->div_magic, &cfg->div_shift1, &cfg->div_shift2);
	return SLUICE_OK;
}

void sluice_window_counter_init(struct sluice_window_counter *cell)
{
	/* relaxed: initialisation precedes publication of the cell. */
	atomic_store_explicit(&cell->word, 0, memory_order_relaxed); /* relaxed: why above */
}

/* The state that applies at t, as seen from one value of the word. */
struct view {
	uint64_t index;     /* k_s to store, mod 2^24 */
	uint64_t prev, cur; /* counts that apply */
	uint64_t elapsed;   /* e used in the estimate */
	sluice__u128 start; /* absolute start of the effective window */
};

/* Time from t until absolute time `at` (> t); SLUICE_NEVER past the end of
 * the clock. */
static inline uint64_t wait_until(sluice__u128 at, uint64_t t)
{
	return at > UINT64_MAX ? SLUICE_NEVER : (uint64_t)at - t;
}

static inline void view_of(uint64_t word, const struct sluice_window_counter_config *cfg,
			   uint64_t t, struct view *v)
{
	uint64_t w = cfg->window_ns;
	uint64_t k = sluice__divide(t, cfg->div_magic, cfg->div_shift1, cfg->div_shift2), e = t - k * w;
	uint64_t ks = word >> (2 * SLUICE_WINDOW_COUNTER_COUNT_BITS);
	uint64_t prev = (word >> SLUICE_WINDOW_COUNTER_COUNT_BITS) & COUNT_MASK;
	uint64_t cur = word & COUNT_MASK;
	uint64_t d = (k - ks) & INDEX_MASK;
	sluice__u128 k_eff = k;

	if (word == 0) { /* fresh: every stored word has cur >= 1 */
		*v = (struct view){ k & INDEX_MASK, 0, 0, e, 0 };
	} else if (d == 0) {
		*v = (struct view){ ks, prev, cur, e, 0 };
	} else if (d == 1) {
		*v = (struct view){ k & INDEX_MASK, cur, 0, e, 0 };
	} else if (d < BACKWARDS) {
		*v = (struct view){ k & INDEX_MASK, 0, 0, e, 0 };
	} else {
		*v = (struct view){ ks, prev, cur, 0, 0 };
		k_eff += (INDEX_MASK + 1) - d;
	}
	v->start = k_eff * w; /* k_eff < 2^64 + 2^24: no overflow in 128 bits */
}

/* Whole units the estimate leaves free: floor(L - cur - prev * (W - e) / W). */
static inline uint64_t remaining(const struct sluice_window_counter_config *cfg, uint64_t prev,
				 uint64_t cur, uint64_t elapsed)
{
	if (cur >= cfg->limit)
		return 0;
	uint64_t w = cfg->window_ns, used;
	/* ceil(prev * (W - e) / W), without the 128-bit divide when it fits */
	sluice__u128 num = (sluice__u128)prev * (w - elapsed);
	if (num <= UINT64_MAX)
		used = (uint64_t)num / w + ((uint64_t)num % w != 0);
	else
		used = (uint64_t)(num / w) + (num % w != 0);
	uint64_t room = cfg->limit - cur;
	return used >= room ? 0 : room - used;
}

static inline bool fits(const struct sluice_window_counter_config *cfg, const struct view *v,
			uint64_t cost)
{
	if (v->cur + cost > cfg->limit)
		return false;
	sluice__u128 room = (sluice__u128)(cfg->limit - v->cur - cost) * cfg->window_ns;
	return room >= (sluice__u128)v->prev * (cfg->window_ns - v->elapsed);
}

/* floor(a * b / c), with the 64-bit divide when the product fits. */
static inline sluice__u128 mul_div(uint64_t a, uint64_t b, uint64_t c)
{
	sluice__u128 p = (sluice__u128)a * b;
	return p <= UINT64_MAX ? (uint64_t)p / c : p / c;
}

/* Time until `cost` units fit, if nothing else happens (they do not now). */
static uint64_t retry_after(const struct sluice_window_counter_config *cfg, const struct view *v,
			    uint64_t t, uint64_t cost)
{
	uint64_t w = cfg->window_ns, l = cfg->limit;

	if (v->cur + cost <= l) {
		/* Later in this window: prev * (W - e') <= (L - cur - cost) * W,
		 * i.e. e' >= W - floor((L - cur - cost) * W / prev); prev > 0,
		 * and e' > e as the test failed at e. */
		sluice__u128 x = mul_div(l - v->cur - cost, w, v->prev);
		uint64_t e_min = x >= w ? 0 : w - (uint64_t)x;
		return wait_until(v->start + e_min, t);
	}
	/* Next window: prev' = cur (> 0 here), cur' = 0. e2 == W means the
	 * window after it, where prev'' = 0. */
	sluice__u128 x = mul_div(l - cost, w, v->cur);
	uint64_t e2 = x >= w ? 0 : w - (uint64_t)x;
	return wait_until(v->start + w + e2, t);
}

static inline void fill(struct sluice_decision *out, const struct sluice_window_counter_config *cfg,
			bool allowed, const struct view *v, uint64_t t, uint64_t cur_after,
			uint64_t retry_ns, uint8_t reason)
{
	if (out == NULL)
		return;
	/* The estimate reaches 0 at the end of the next window if cur > 0
	 * (cur becomes prev and decays over it), else at the end of this one. */
	uint64_t reset_ns;
	if (cur_after > 0)
		reset_ns = wait_until(v->start + 2 * (sluice__u128)cfg->window_ns, t);
	else
		reset_ns = v->prev > 0 ? wait_until(v->start + cfg->window_ns, t) : 0;
	sluice__decision_set(out, allowed, reason, cfg->limit,
			     remaining(cfg, v->prev, cur_after, v->elapsed), reset_ns, retry_ns);
}

/* tombs: the tombstone words are never states (window_internal.h): deny
 * on them. */
static bool admit(struct sluice_window_counter *cell, const struct sluice_window_counter_config *cfg,
		  uint64_t t, uint64_t cost, struct sluice_decision *out,
		  struct sluice_window_counter_receipt *receipt, bool tombs)
{
	/* relaxed: the word publishes no other memory; a stale value is caught
	 * by the CAS, or (for a denial) describes a state that did exist. */
	uint64_t word = atomic_load_explicit(&cell->word, memory_order_relaxed); /* relaxed: why above */
	struct view v;

	for (;;) {
		view_of(word, cfg, t, &v);
		if (SLUICE_UNLIKELY(cost > cfg->limit || (tombs && sluice__word_is_tomb(word)))) {
			fill(out, cfg, false, &v, t, v.cur, SLUICE_NEVER, SLUICE_REASON_NEVER);
			return false;
		}
		if (cost == 0) { /* a peek passes even when the estimate is over L */
			fill(out, cfg, true, &v, t, v.cur, 0, SLUICE_REASON_NONE);
			return true;
		}
		if (!fits(cfg, &v, cost)) {
			if (out != NULL)
				fill(out, cfg, false, &v, t, v.cur, retry_after(cfg, &v, t, cost),
				     SLUICE_REASON_RATE);
			return false;
		}
		uint64_t next = pack(v.index, v.prev, v.cur + cost);
		/* relaxed on success and failure: only this word's atomicity
		 * matters (file comment); on failure `word` is reloaded and the
		 * decision recomputed from the newer state. */
		if (atomic_compare_exchange_weak_explicit(&cell->word, &word, next, /* relaxed: why above */
							  memory_order_relaxed,
							  memory_order_relaxed)) {
			if (receipt != NULL) {
				receipt->before = word;
				receipt->after = next;
			}
			fill(out, cfg, true, &v, t, v.cur + cost, 0, SLUICE_REASON_NONE);
			return true;
		}
	}
}

bool sluice_window_counter_admit(struct sluice_window_counter *cell,
				 const struct sluice_window_counter_config *cfg, uint64_t now_ns,
				 uint64_t cost, struct sluice_decision *out)
{
	return admit(cell, cfg, now_ns, cost, out, NULL, false);
}

bool sluice_window_counter_admit_receipt(struct sluice_window_counter *cell,
					 const struct sluice_window_counter_config *cfg,
					 uint64_t now_ns, uint64_t cost, struct sluice_decision *out,
					 struct sluice_window_counter_receipt *receipt)
{
	if (receipt != NULL)
		receipt->before = receipt->after = 0;
	return admit(cell, cfg, now_ns, cost, out, receipt, false);
}

bool sluice_window_counter_cancel(struct sluice_window_counter *cell,
				  const struct sluice_window_counter_receipt *receipt)
{
	if (receipt == NULL || receipt->before == receipt->after)
		return false;
	uint64_t expected = receipt->after;
	/* relaxed: as for admit; success means no other operation landed after
	 * ours (every admission changes the word: its count grows), so the old
	 * word is exactly the state without our admission. */
	return atomic_compare_exchange_strong_explicit(&cell->word, &expected, receipt->before, /* relaxed: why above */
						       memory_order_relaxed, memory_order_relaxed);
}

/* ---- for the keyed limiter (window_internal.h) ---- */

static inline bool tombs_of(const struct sluice_window_counter_config *cfg)
{
	return cfg->limit <= SLUICE__WINDOW_COUNTER_CELL0_MAX_LIMIT;
}

bool sluice__window_counter_admit(struct sluice_window_counter *cell,
				  const struct sluice_window_counter_config *cfg, uint64_t now_ns,
				  uint64_t cost, struct sluice_decision *out,
				  struct sluice_window_counter_receipt *receipt)
{
	return admit(cell, cfg, now_ns, cost, out, receipt, tombs_of(cfg));
}

bool sluice__window_counter_check_word(uint64_t word, const struct sluice_window_counter_config *cfg,
				       uint64_t now_ns, uint64_t cost, struct sluice_decision *out)
{
	struct sluice_window_counter copy;

	/* relaxed: a private object, never shared. */
	atomic_init(&copy.word, word);
	return admit(&copy, cfg, now_ns, cost, out, NULL, tombs_of(cfg));
}

bool sluice__window_counter_cancel_exact(struct sluice_window_counter *cell,
					 const struct sluice_window_counter_config *cfg,
					 const struct sluice_window_counter_receipt *receipt)
{
	if (receipt == NULL || receipt->before == receipt->after)
		return false;
	uint64_t b = receipt->before, a = receipt->after;
	uint64_t ka = a >> (2 * SLUICE_WINDOW_COUNTER_COUNT_BITS);
	/* The admission added to cur of window ka: from the before word's cur
	 * if that word was already in ka (same window, or a stale clock counted
	 * there), else from 0. */
	uint64_t cost = (a & COUNT_MASK) -
			(b != 0 && b >> (2 * SLUICE_WINDOW_COUNTER_COUNT_BITS) == ka ? b & COUNT_MASK : 0);
	bool tombs = tombs_of(cfg);
	/* relaxed: the word publishes nothing (file comment); the CAS below
	 * decides on the latest value. */
	uint64_t w = atomic_load_explicit(&cell->word, memory_order_relaxed); /* relaxed: why above */

	for (;;) {
		if (tombs && sluice__word_is_tomb(w))
			return true; /* the entry died: nothing left to undo */
		uint64_t d = ((w >> (2 * SLUICE_WINDOW_COUNTER_COUNT_BITS)) - ka) & INDEX_MASK, next;
		if (w == 0 || d >= 2)
			return true; /* ka weighs no more (or a fresh cell): nothing owed */
		if (d == 0)
			next = w - cost; /* cur of ka holds our units (cur >= cost) */
		else
			next = w - (cost << SLUICE_WINDOW_COUNTER_COUNT_BITS); /* ka is prev */
		/* relaxed on success and failure: only this word's atomicity
		 * matters; on failure w is reloaded and the window found again. */
		if (atomic_compare_exchange_weak_explicit(&cell->word, &w, next, memory_order_relaxed, /* relaxed: why above */
							  memory_order_relaxed))
			return true;
	}
}

bool sluice_window_counter_is_idle(const struct sluice_window_counter *cell,
				   const struct sluice_window_counter_config *cfg, uint64_t now_ns)
{
	/* relaxed: a snapshot of one word; the limiter re-checks under its own
	 * protocol before reclaiming. */
	uint64_t word = atomic_load_explicit(&((struct sluice_window_counter *)(uintptr_t)cell)->word, /* relaxed: why above */
					     memory_order_relaxed);
	struct view v;

	view_of(word, cfg, now_ns, &v);
	return v.prev == 0 && v.cur == 0;
}
