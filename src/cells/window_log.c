/*
 * Sliding-window log: exact "at most L units in any window of length W".
 *
 * The cell records the time of every admitted unit in a ring, in admission
 * order: position p (a count of units since init) lives in slot p mod C,
 * with C a power of two >= 2L. `pos` is the next position. Only the last L
 * positions [pos - L, pos) can matter: a window holds at most L units, so an
 * older unit is out of every window that a later admission could see.
 *
 * Recorded times are sorted: a unit is recorded at r = max(t, newest), where
 * newest is the time at pos - 1. A unit at r is "in the window at t" iff
 * t < r + W (tested as !(t >= r && t - r >= W): no overflow), so the units
 * that have left the window form a prefix of [pos - L, pos), found by binary
 * search; `live` is the length of the rest. A request of c units at t is
 * admitted iff live + c <= L. If it is denied, the (live + c - L)-th oldest
 * live unit is the one whose departure admits it: retry_after is the time
 * until it leaves.
 *
 * Stale clocks. Recording at max(t, newest) keeps the ring sorted and only
 * makes units look younger, so it can deny spuriously, never over-admit.
 * The invariant also holds for the times passed in: suppose L + 1 units
 * with passed times in (x - W, x] were admitted, and let z be the last of
 * them. When z was decided the other L were recorded, each at a time >= its
 * passed time > x - W, so the L newest recorded times were all > x - W >=
 * t_z - W: z saw at least L live units and was denied. Contradiction.
 *
 * Why a writer takes a (tiny) lock. An admission must, atomically, test the
 * c-th oldest live unit and append c times to the ring. C11 gives one-word
 * CAS only (16-byte atomics are not guaranteed lock-free and go through
 * libatomic's locks). Claiming positions with a CAS on pos and writing the
 * times afterwards lets a concurrent reader see a slot that is claimed but
 * not yet written: it still holds the time of a unit C positions older,
 * which looks expired, and the reader over-admits. Tagging slots with their
 * lap needs bits that full 64-bit Unix-ns times do not leave, and publishing
 * a descriptor for helpers to finish the write needs memory reclamation that
 * a caller-owned cell cannot have. So writers serialize on `seq` (a sequence
 * lock): the critical section is the decision plus c <= L relaxed stores, no
 * allocation, no syscall. Readers (denials, peeks, is_idle, and the first
 * look of every admission) never wait for it:
 *
 *   - A writer only stores into slots of positions >= pos, whose slots hold
 *     units C - L >= L positions older than pos, i.e. outside every window
 *     a reader of either the old or the new pos can look at; then it
 *     publishes pos with a release store. So a reader that overlaps a single
 *     writer sees the state before or after it, whichever pos it loaded
 *     (acquire). A cancel only moves pos back.
 *   - Overlap with two or more writers is detected the seqlock way: seq is
 *     loaded (acquire) before and (after an acquire fence) again after the
 *     reads; each writer adds 2, so a difference of at most 1 means at most
 *     one writer overlapped. Otherwise the reader retries; each retry means
 *     two writes completed, so the system progresses.
 *
 * A denial is decided on such a snapshot and linearizes at it. An admission
 * first decides on a snapshot (so denials never touch the lock), then takes
 * the lock and decides again on the current state, which is what it writes.
 *
 * Cancel. Since an admission only overwrites slots outside every window,
 * moving pos back to where that admission found it restores the previous
 * state exactly. The receipt records the seq value the admission published;
 * cancel checks it under the lock, so "no write since" is exact (seq never
 * repeats: 2^62 writes).
 *
 * Exact cancel (the keyed limiter's, window_internal.h). When other writes
 * landed since, the receipt's c units (recorded at one time r) are removed
 * where they are: under the lock, the newest c units recorded at r among
 * the last L + c positions are cut out and the newer units move down over
 * them (units at the same time are interchangeable; removing from a sorted
 * sequence keeps it sorted). If fewer than c are there, the others lie
 * further back, and the last L units after the removal are the same either
 * way; if none, ours weigh no more. Such a cancel rewrites live slots,
 * which the readers' argument above excludes for a lone writer, so it
 * flags seq (bit 62, SEQ_REWRITING) before its first store, behind a
 * release fence, and unlocks 3 ahead of its locked value instead of 1: a
 * reader that saw any of its stores (its acquire fence, then its second
 * seq load) sees the flag or a difference above 1, and one that starts
 * while the flag is set sees it at once; either retries. A reader that
 * saw none of them read the state before it.
 *
 * Positions are 64-bit and grow by at most L per admission: at 10^9 units
 * per second they would wrap after 292 years.
 */
#include <sluice/window.h>

#include <stdatomic.h>
#include <string.h>

#include "cells/window_internal.h"
#include "common/spin_internal.h"
#include "common/util_internal.h"

_Static_assert(sizeof(struct sluice_window_log) == 16, "log header is two words");
_Static_assert(_Alignof(struct sluice_window_log) == 8, "ring follows the header unpadded");

typedef _Atomic uint64_t ring_word;

static inline ring_word *ring_of(const struct sluice_window_log *cell)
{
	return (ring_word *)(uintptr_t)(cell + 1);
}

int sluice_window_log_config_init(struct sluice_window_log_config *cfg, uint64_t limit,
				  uint64_t window_ns)
{
	if (cfg == NULL || limit == 0 || window_ns == 0)
		return SLUICE_EINVAL;
	if (limit > SLUICE_WINDOW_LOG_MAX_LIMIT)
		return SLUICE_ETOOBIG;
	uint64_t capacity = 1;
	while (capacity < 2 * limit)
		capacity <<= 1;
	cfg->limit = limit;
	cfg->window_ns = window_ns;
	cfg->capacity = capacity;
	return SLUICE_OK;
}

size_t sluice_window_log_size(const struct sluice_window_log_config *cfg)
{
	if (cfg == NULL)
		return 0;
	return sizeof(struct sluice_window_log) + (size_t)cfg->capacity * sizeof(uint64_t);
}

void sluice_window_log_init(struct sluice_window_log *cell, const struct sluice_window_log_config *cfg)
{
	ring_word *ring = ring_of(cell);

	/* relaxed: initialisation precedes publication of the cell; whatever
	 * publishes it (thread start, RCU insert) orders these stores. */
	atomic_store_explicit(&cell->seq, 0, memory_order_relaxed); /* relaxed: why above */
	atomic_store_explicit(&cell->pos, 0, memory_order_relaxed); /* relaxed: why above */
	for (uint64_t i = 0; i < cfg->capacity; i++)
		atomic_store_explicit(&ring[i], 0, memory_order_relaxed); /* relaxed: as above */
}

/* Time from t until a unit recorded at r leaves the window (r + W - t);
 * SLUICE_NEVER if that is past the end of the clock. Only called for live
 * units (t < r + W). */
static inline uint64_t wait_until_gone(uint64_t r, uint64_t t, uint64_t window_ns)
{
	if (r > UINT64_MAX - window_ns)
		return SLUICE_NEVER;
	return r + window_ns - t;
}

static inline bool gone(uint64_t r, uint64_t t, uint64_t window_ns)
{
	return t >= r && t - r >= window_ns;
}

/* A decision computed from one state of the ring. */
struct eval {
	uint64_t live;        /* units in the window at t */
	uint64_t newest;      /* time of position pos - 1 (valid if pos > 0) */
	uint64_t retry_ns;    /* wait until `cost` more fit (if they do not now) */
	uint64_t reset_ns;    /* wait until every live unit is gone */
};

/* Set in seq while an exact cancel rewrites live slots (read_snapshot()). */
#define SEQ_REWRITING (UINT64_C(1) << 62)

static inline uint64_t at(ring_word *ring, uint64_t mask, uint64_t p)
{
	/* relaxed: the slot is published by the writer's release store of pos
	 * (or, when read under the lock, by the lock's acquire); a value from a
	 * later writer is caught by the seq check of read_snapshot(). */
	return atomic_load_explicit(&ring[p & mask], memory_order_relaxed); /* relaxed: why above */
}

static void evaluate(ring_word *ring, const struct sluice_window_log_config *cfg, uint64_t pos,
		     uint64_t t, uint64_t cost, struct eval *ev)
{
	uint64_t mask = cfg->capacity - 1, w = cfg->window_ns;
	uint64_t lo = pos > cfg->limit ? pos - cfg->limit : 0, hi = pos;

	/* First live position in [lo, pos): "gone" holds on a prefix. */
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;
		if (gone(at(ring, mask, mid), t, w))
			lo = mid + 1;
		else
			hi = mid;
	}
	ev->live = pos - lo;
	ev->newest = pos > 0 ? at(ring, mask, pos - 1) : 0;
	ev->reset_ns = ev->live > 0 ? wait_until_gone(ev->newest, t, w) : 0;
	ev->retry_ns = 0;
	if (ev->live + cost > cfg->limit) {
		uint64_t k = ev->live + cost - cfg->limit; /* 1 <= k <= live as cost <= limit */
		ev->retry_ns = wait_until_gone(at(ring, mask, lo + k - 1), t, w);
	}
}

/* Evaluate a consistent snapshot without taking the lock. Returns the seq
 * value it started from: if that is even and a writer later locks from it,
 * nothing was written in between and the snapshot is still the state. */
static uint64_t read_snapshot(const struct sluice_window_log *cell,
			      const struct sluice_window_log_config *cfg, uint64_t t, uint64_t cost,
			      struct eval *ev)
{
	struct sluice_window_log *c = (struct sluice_window_log *)(uintptr_t)cell;

	for (;;) {
		/* acquire: pairs with the release unlock of the last writer, so
		 * its whole write is visible to the reads below. */
		uint64_t s1 = atomic_load_explicit(&c->seq, memory_order_acquire); /* acquire: why above */
		/* acquire: pairs with a writer's release store of pos, making
		 * the slots it wrote for these positions visible. */
		uint64_t pos = atomic_load_explicit(&c->pos, memory_order_acquire); /* acquire: why above */

		evaluate(ring_of(c), cfg, pos, t, cost, ev);
		/* acquire fence: if any relaxed slot load above read a value of a
		 * later writer, that writer's lock (ordered before its stores by
		 * the release fence in lock()) is visible to the load below. */
		atomic_thread_fence(memory_order_acquire); /* acquire: why above */
		/* relaxed: ordered by the fence above. */
		uint64_t s2 = atomic_load_explicit(&c->seq, memory_order_relaxed); /* relaxed: why above */
		/* A rewrite of live slots (an exact cancel) in progress at
		 * either end, or overlapped (it unlocks 3 ahead), is retried. */
		if (s2 - s1 <= 1 && !((s1 | s2) & SEQ_REWRITING))
			return s1;
	}
}

size_t sluice__window_log_save(const struct sluice_window_log *cell,
			       const struct sluice_window_log_config *cfg, uint64_t now_ns,
			       uint64_t *times)
{
	struct sluice_window_log *c = (struct sluice_window_log *)(uintptr_t)cell;
	uint64_t mask = cfg->capacity - 1;

	/* The protocol of read_snapshot(): a copy that overlapped at most one
	 * writer is the state before or after it. */
	for (;;) {
		/* acquire: as in read_snapshot(). */
		uint64_t s1 = atomic_load_explicit(&c->seq, memory_order_acquire); /* acquire: why above */
		/* acquire: as in read_snapshot() (publishes the slots below pos). */
		uint64_t pos = atomic_load_explicit(&c->pos, memory_order_acquire); /* acquire: why above */
		size_t n = 0;

		for (uint64_t p = pos > cfg->limit ? pos - cfg->limit : 0; p < pos; p++) {
			uint64_t r = at(ring_of(c), mask, p);
			if (!gone(r, now_ns, cfg->window_ns))
				times[n++] = r;
		}
		/* acquire fence: as in read_snapshot(). */
		atomic_thread_fence(memory_order_acquire); /* acquire: why above */
		/* relaxed: ordered by the fence above. */
		uint64_t s2 = atomic_load_explicit(&c->seq, memory_order_relaxed); /* relaxed: why above */
		if (s2 - s1 <= 1 && !((s1 | s2) & SEQ_REWRITING))
			return n;
	}
}

int sluice__window_log_load(struct sluice_window_log *cell, const struct sluice_window_log_config *cfg,
			    const uint64_t *times, size_t n)
{
	ring_word *ring = ring_of(cell);

	if (n > cfg->limit)
		return SLUICE_ECORRUPT;
	for (size_t i = 1; i < n; i++)
		if (times[i] < times[i - 1])
			return SLUICE_ECORRUPT;
	/* relaxed: the cell is not published yet (as in init). Positions
	 * 0 .. n - 1 hold the units; the ring's other slots stay 0, out of
	 * every window a reader looks at (it reads the last `limit` only). */
	for (size_t i = 0; i < n; i++)
		atomic_store_explicit(&ring[i], times[i], memory_order_relaxed); /* relaxed: why above */
	atomic_store_explicit(&cell->pos, n, memory_order_relaxed); /* relaxed: as above */
	return SLUICE_OK;
}

static uint64_t lock(struct sluice_window_log *cell)
{
	unsigned steps = 0;

	for (;;) {
		/* relaxed: only a hint of whether the lock is free; the CAS below
		 * decides. */
		uint64_t s = atomic_load_explicit(&cell->seq, memory_order_relaxed); /* relaxed: why above */
		/* acquire on success: pairs with the release unlock of the
		 * previous writer (we read its slots and pos); relaxed on failure:
		 * we just retry. */
		if ((s & 1) == 0 &&
		    atomic_compare_exchange_weak_explicit(&cell->seq, &s, s + 1, memory_order_acquire, /* acquire/relaxed: why above */
							  memory_order_relaxed)) {
			/* release fence: orders the odd seq before our slot stores,
			 * for readers' fence-then-recheck (Boehm's seqlock). */
			atomic_thread_fence(memory_order_release); /* release: why above */
			return s + 1;
		}
		sluice__spin(&steps);
	}
}

static inline void unlock(struct sluice_window_log *cell, uint64_t locked_seq)
{
	/* release: publishes this write to the next writer's lock (acquire) and
	 * to readers' first seq load (acquire). */
	atomic_store_explicit(&cell->seq, locked_seq + 1, memory_order_release); /* release: why above */
}

/* Unlock after writing nothing: seq goes back to its value before the lock,
 * so readers that straddled us still validate (nothing changed for them)
 * and receipts stay cancellable. */
static inline void unlock_unchanged(struct sluice_window_log *cell, uint64_t locked_seq)
{
	/* release: pairs with the next writer's lock (acquire), so lock
	 * holders stay ordered one after another. */
	atomic_store_explicit(&cell->seq, locked_seq - 1, memory_order_release); /* release: why above */
}

static inline void fill(struct sluice_decision *out, const struct sluice_window_log_config *cfg,
			bool allowed, uint64_t in_window, uint64_t reset_ns, uint64_t retry_ns,
			uint8_t reason)
{
	if (out == NULL)
		return;
	sluice__decision_set(out, allowed, reason, cfg->limit,
			     in_window >= cfg->limit ? 0 : cfg->limit - in_window, reset_ns, retry_ns);
}

/* Shared mode (window_internal.h, "Shared use"): before the seq lock, a
 * writer takes `claim`, a word holding 0 or the CLOCK_MONOTONIC time (| 1)
 * its holder took it at. A claim at least stale_ns old belongs to a dead
 * process (the caller's assumption: a live one never stays that long);
 * its taker breaks the seq lock the dead writer may have left odd.
 * Returns the value taken, for claim_release(). */
static uint64_t claim_take(struct sluice_window_log *cell, _Atomic uint64_t *claim, uint64_t stale_ns)
{
	unsigned steps = 0;

	for (;;) {
		uint64_t now = sluice_monotonic_ns() | 1, w = 0;
		/* acquire on success: pairs with the release in claim_release()
		 * of the previous holder (its cell writes are visible). relaxed
		 * on failure: w is only judged by its age. */
		if (atomic_compare_exchange_strong_explicit(claim, &w, now, memory_order_acquire, /* acquire/relaxed: why above */
							    memory_order_relaxed))
			return now;
		/* now > w: a claim taken after our clock read is young. The
		 * CAS fails if the holder released or another taker came first;
		 * acquire on success: orders the seq and pos loads below after
		 * the takeover (no earlier holder's release to pair with: the
		 * dead writer's state is read through pos's acquire, in
		 * sluice__window_log_break()). */
		if (w != 0 && now > w && now - w >= stale_ns &&
		    atomic_compare_exchange_strong_explicit(claim, &w, now, memory_order_acquire, /* acquire/relaxed: why above */
							    memory_order_relaxed)) {
			/* relaxed: only a claim holder changes seq's lock bit,
			 * and we hold the claim. */
			uint64_t s = atomic_load_explicit(&cell->seq, memory_order_relaxed); /* relaxed: why above */
			if (s & 1)
				sluice__window_log_break(cell, s);
			return now;
		}
		sluice__spin(&steps);
	}
}

static inline void claim_release(_Atomic uint64_t *claim, uint64_t mine)
{
	/* release: publishes this holder's cell writes to the next taker's
	 * acquire CAS. A CAS, not a store: if our claim was taken over (we
	 * stalled past the bound, against the assumption), it is not ours to
	 * clear. */
	atomic_compare_exchange_strong_explicit(claim, &mine, 0, memory_order_release, /* release/relaxed: why above */
						memory_order_relaxed);
}

/* The admission, in process (claim NULL: always inlined with a constant,
 * so the in-process path has no trace of the shared mode) or shared. */
static inline __attribute__((always_inline)) bool
admit_impl(struct sluice_window_log *cell, const struct sluice_window_log_config *cfg, uint64_t t,
	   uint64_t cost, struct sluice_decision *out, struct sluice_window_log_receipt *receipt,
	   uint64_t *recorded, _Atomic uint64_t *claim, uint64_t stale_ns)
{
	struct eval ev;
	uint64_t mine = 0;

	if (SLUICE_UNLIKELY(cost > cfg->limit)) {
		read_snapshot(cell, cfg, t, 0, &ev);
		fill(out, cfg, false, ev.live, ev.reset_ns, SLUICE_NEVER, SLUICE_REASON_NEVER);
		return false;
	}
	uint64_t seen = read_snapshot(cell, cfg, t, cost, &ev);
	if (ev.live + cost > cfg->limit) {
		fill(out, cfg, false, ev.live, ev.reset_ns, ev.retry_ns, SLUICE_REASON_RATE);
		return false;
	}
	if (cost == 0) {
		fill(out, cfg, true, ev.live, ev.reset_ns, 0, SLUICE_REASON_NONE);
		return true;
	}

	if (claim != NULL)
		mine = claim_take(cell, claim, stale_ns);
	uint64_t seq = lock(cell);
	/* relaxed: the lock's acquire ordered the last writer's store of pos
	 * before this load, and only lock holders store pos. */
	uint64_t pos = atomic_load_explicit(&cell->pos, memory_order_relaxed); /* relaxed: why above */
	ring_word *ring = ring_of(cell);

	/* Locked straight from the even seq the snapshot started at: no write
	 * since, so its evaluation stands; otherwise decide again. */
	if (seq != seen + 1) {
		evaluate(ring, cfg, pos, t, cost, &ev);
		if (ev.live + cost > cfg->limit) {
			unlock_unchanged(cell, seq);
			if (claim != NULL)
				claim_release(claim, mine);
			fill(out, cfg, false, ev.live, ev.reset_ns, ev.retry_ns, SLUICE_REASON_RATE);
			return false;
		}
	}
	uint64_t r = pos > 0 && ev.newest > t ? ev.newest : t;
	uint64_t mask = cfg->capacity - 1;
	for (uint64_t p = pos; p < pos + cost; p++)
		/* relaxed: published by the release store of pos below. */
		atomic_store_explicit(&ring[p & mask], r, memory_order_relaxed); /* relaxed: why above */
	/* release: publishes the slots above to readers that load pos with
	 * acquire (read_snapshot). */
	atomic_store_explicit(&cell->pos, pos + cost, memory_order_release); /* release: why above */
	unlock(cell, seq);
	if (claim != NULL)
		claim_release(claim, mine);

	if (receipt != NULL) {
		receipt->seq_after = seq + 1;
		receipt->pos_before = pos;
		receipt->pos_after = pos + cost;
	}
	if (recorded != NULL)
		*recorded = r;
	fill(out, cfg, true, ev.live + cost, wait_until_gone(r, t, cfg->window_ns), 0,
	     SLUICE_REASON_NONE);
	return true;
}

static bool admit(struct sluice_window_log *cell, const struct sluice_window_log_config *cfg,
		  uint64_t t, uint64_t cost, struct sluice_decision *out,
		  struct sluice_window_log_receipt *receipt, uint64_t *recorded)
{
	return admit_impl(cell, cfg, t, cost, out, receipt, recorded, NULL, 0);
}

bool sluice_window_log_admit(struct sluice_window_log *cell, const struct sluice_window_log_config *cfg,
			     uint64_t now_ns, uint64_t cost, struct sluice_decision *out)
{
	return admit(cell, cfg, now_ns, cost, out, NULL, NULL);
}

bool sluice_window_log_admit_receipt(struct sluice_window_log *cell,
				     const struct sluice_window_log_config *cfg, uint64_t now_ns,
				     uint64_t cost, struct sluice_decision *out,
				     struct sluice_window_log_receipt *receipt)
{
	if (receipt != NULL)
		memset(receipt, 0, sizeof(*receipt));
	return admit(cell, cfg, now_ns, cost, out, receipt, NULL);
}

bool sluice_window_log_cancel(struct sluice_window_log *cell,
			      const struct sluice_window_log_receipt *receipt)
{
	if (receipt == NULL || receipt->pos_after == receipt->pos_before)
		return false;
	/* relaxed: a cheap filter; the decision is taken under the lock. */
	if (atomic_load_explicit(&cell->seq, memory_order_relaxed) != receipt->seq_after) /* relaxed: why above */
		return false;

	uint64_t seq = lock(cell);
	if (seq != receipt->seq_after + 1) {
		unlock_unchanged(cell, seq);
		return false;
	}
	/* release: as for an admission; readers that load the older pos see
	 * slots that were never overwritten since (see top). */
	atomic_store_explicit(&cell->pos, receipt->pos_before, memory_order_release); /* release: why above */
	unlock(cell, seq);
	return true;
}

/* ---- for the keyed limiter (window_internal.h) ---- */

bool sluice__window_log_admit(struct sluice_window_log *cell, const struct sluice_window_log_config *cfg,
			      uint64_t now_ns, uint64_t cost, struct sluice_decision *out,
			      struct sluice__window_log_receipt *receipt)
{
	struct sluice_window_log_receipt r;

	if (receipt == NULL)
		return admit(cell, cfg, now_ns, cost, out, NULL, NULL);
	bool ok = admit(cell, cfg, now_ns, cost, out, &r, &receipt->at_ns);
	receipt->seq_after = r.seq_after;
	receipt->cost = ok ? cost : 0;
	return ok;
}

/* Nothing written since the admission of c units (seq is its seq_after
 * locked): pop them, as sluice_window_log_cancel(), and unlock. */
static void pop_locked(struct sluice_window_log *cell, uint64_t seq, uint64_t pos, uint64_t c)
{
	/* release: as for an admission (see top). */
	atomic_store_explicit(&cell->pos, pos - c, memory_order_release); /* release: why above */
	unlock(cell, seq);
}

bool sluice__window_log_cancel_exact(struct sluice_window_log *cell,
				     const struct sluice_window_log_config *cfg,
				     const struct sluice__window_log_receipt *receipt)
{
	if (receipt == NULL || receipt->cost == 0)
		return false;
	uint64_t c = receipt->cost, r = receipt->at_ns;
	uint64_t seq = lock(cell);
	/* relaxed: ordered by the lock's acquire, as in admit(). */
	uint64_t pos = atomic_load_explicit(&cell->pos, memory_order_relaxed); /* relaxed: why above */

	if (seq == receipt->seq_after + 1) {
		pop_locked(cell, seq, pos, c);
		return true;
	}
	/* Remove c units recorded at r from the last L + c positions (the
	 * only ones that can be among the last L once they are gone). Units
	 * recorded at the same time are interchangeable, so removing the newest
	 * c of them is removing ours; if fewer are there, the rest lie below
	 * and the L newest units after the removal are the same either way. */
	ring_word *ring = ring_of(cell);
	uint64_t mask = cfg->capacity - 1;
	uint64_t lo = pos > cfg->limit + c ? pos - cfg->limit - c : 0, top = pos, m = 0;
	while (top > lo && at(ring, mask, top - 1) > r)
		top--;
	while (top - m > lo && m < c && at(ring, mask, top - m - 1) == r)
		m++;
	if (m == 0) {
		unlock_unchanged(cell, seq);
		return true; /* nothing of ours weighs any more */
	}
	/* These stores rewrite live slots, which readers do not expect of a
	 * lone writer: flag seq first. relaxed store + release fence: a
	 * reader that loads any slot or pos written below, then its acquire
	 * fence, sees the flag (or the unlock after it) in its second seq load
	 * (read_snapshot()). */
	atomic_store_explicit(&cell->seq, seq | SEQ_REWRITING, memory_order_relaxed); /* relaxed: why above */
	atomic_thread_fence(memory_order_release); /* release: why above */
	for (uint64_t q = top; q < pos; q++)
		/* relaxed: published by the release store of pos below. */
		atomic_store_explicit(&ring[(q - m) & mask], at(ring, mask, q), memory_order_relaxed); /* relaxed: why above */
	/* release: publishes the slots above (readers load pos with acquire). */
	atomic_store_explicit(&cell->pos, pos - m, memory_order_release); /* release: why above */
	/* release: as unlock(); 3 ahead of the locked value, so a reader that
	 * began before the flag and ends after it sees a difference > 1. */
	atomic_store_explicit(&cell->seq, seq + 3, memory_order_release); /* release: why above */
	return true;
}

bool sluice_window_log_is_idle(const struct sluice_window_log *cell,
			       const struct sluice_window_log_config *cfg, uint64_t now_ns)
{
	struct eval ev;

	read_snapshot(cell, cfg, now_ns, 0, &ev);
	return ev.live == 0;
}

/* ---- shared use (window_internal.h) ---- */

bool sluice__window_log_admit_shared(struct sluice_window_log *cell, _Atomic uint64_t *claim,
				     uint64_t stale_ns, const struct sluice_window_log_config *cfg,
				     uint64_t now_ns, uint64_t cost, struct sluice_decision *out,
				     struct sluice__window_log_receipt *receipt)
{
	struct sluice_window_log_receipt r = { 0 };

	if (receipt == NULL)
		return admit_impl(cell, cfg, now_ns, cost, out, NULL, NULL, claim, stale_ns);
	bool ok = admit_impl(cell, cfg, now_ns, cost, out, &r, &receipt->at_ns, claim, stale_ns);
	receipt->seq_after = r.seq_after;
	receipt->cost = ok ? cost : 0;
	return ok;
}

bool sluice__window_log_cancel_shared(struct sluice_window_log *cell, _Atomic uint64_t *claim,
				      uint64_t stale_ns, const struct sluice__window_log_receipt *receipt)
{
	if (receipt == NULL || receipt->cost == 0)
		return false;
	/* relaxed: a cheap filter; the decision is taken under the lock. */
	if (atomic_load_explicit(&cell->seq, memory_order_relaxed) != receipt->seq_after) /* relaxed: why above */
		return false;
	uint64_t mine = claim_take(cell, claim, stale_ns);
	uint64_t seq = lock(cell);
	bool popped = seq == receipt->seq_after + 1;
	if (popped)
		/* relaxed: ordered by the lock's acquire, as in admit_impl(). */
		pop_locked(cell, seq, atomic_load_explicit(&cell->pos, memory_order_relaxed), receipt->cost); /* relaxed: why above */
	else
		unlock_unchanged(cell, seq);
	claim_release(claim, mine);
	return popped;
}

bool sluice__window_log_break(struct sluice_window_log *cell, uint64_t observed_seq)
{
	if ((observed_seq & 1) == 0 || (observed_seq & SEQ_REWRITING) != 0)
		return false;
	/* relaxed: the caller holds the claim, so no live writer races this
	 * CAS; it fails only if seq is no longer the value judged dead. The
	 * dead writer's unlock, done for it: readers that straddle it see a
	 * difference of 1 and the state before or after its write (see top). */
	if (!atomic_compare_exchange_strong_explicit(&cell->seq, &observed_seq, observed_seq + 1, /* relaxed: why above */
						     memory_order_relaxed, memory_order_relaxed))
		return false;
	/* acquire: if the dead writer published pos (release), its slot
	 * stores become visible to us, the next writer, who reads them. */
	(void)atomic_load_explicit(&cell->pos, memory_order_acquire); /* acquire: why above */
	return true;
}
