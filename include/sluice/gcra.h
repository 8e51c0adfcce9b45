/*
 * sluice/gcra.h - the GCRA cell: an exact, lock-free token bucket in one
 * 64-bit word.
 *
 * A rate (struct sluice_rate) describes a token bucket of capacity `burst`
 * refilled at `limit` units per `period_ns`, starting full. A cell (struct
 * sluice_gcra) is the per-key state of such a bucket: 8 bytes, caller-owned,
 * embeddable anywhere, updated with one compare-and-swap. One rate may serve
 * any number of cells; a cell must always be used with the same rate.
 *
 * Exactness: when period_ns is a multiple of limit, every decision equals that
 * of a token bucket computed in exact rational arithmetic. Otherwise the
 * emission interval is rounded up to whole nanoseconds, so the cell refills
 * slightly slower than the nominal rate (by less than 1 ns per unit; a rate
 * above one unit per ns is served at one per ns) and every admission is one
 * an exact bucket fed the same admissions would allow (docs/design.md,
 * "Rounding").
 *
 * Thread safety: every function on a cell may be called concurrently from
 * any number of threads, with or without RCU registration, except
 * sluice_gcra_init() on that cell. A struct sluice_rate is immutable after
 * sluice_rate_init().
 *
 * Memory ordering. The cell is one word, read and written with relaxed
 * atomics only (docs/design.md, "Memory orders"). What a caller may rely on:
 *   - admission: linearized at its successful CAS; the admissions of a
 *     cell form one total order, and each is judged on the state every
 *     earlier one left (no two admissions spend the same tokens);
 *   - denial, peek (cost 0), sluice_gcra_is_idle(): linearized at their one
 *     load, which returns a value the word really held, no older than any
 *     this thread has seen; they write nothing;
 *   - cancel: linearized at its CAS; it succeeds only if no other admission
 *     or cancel landed on the cell after the receipt's admission;
 *   - none of them orders any other memory. An admission is not a
 *     synchronization point: it does not make writes made before an earlier
 *     admission (by another thread) visible. A caller that needs "admitted,
 *     so I see what the previous admitted request wrote" adds its own
 *     fences or locks.
 */
#ifndef SLUICE_GCRA_H
#define SLUICE_GCRA_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Largest bucket depth in nanoseconds (burst * interval). 2^62 ns is about
 * 146 years; the bound keeps every intermediate sum inside 64 bits and the
 * reciprocal used for division inside 64 bits.
 */
#define SLUICE_GCRA_MAX_TOLERANCE_NS (UINT64_C(1) << 62)

/* A validated rate. Fields after `burst` are derived; treat them as private. */
struct sluice_rate {
	uint64_t limit;        /* units per period, as configured */
	uint64_t period_ns;    /* period, as configured */
	uint64_t burst;        /* bucket capacity in units */
	uint64_t interval_ns;  /* private: ns per unit, ceil(period_ns / limit) */
	uint64_t tolerance_ns; /* private: burst * interval_ns */
	uint64_t div_magic;    /* private: reciprocal of interval_ns */
	uint32_t div_shift;    /* private */
	bool exact;            /* period_ns % limit == 0: decisions are exact */
};

/* The per-key state. 8 bytes; the member is private. Zero-filled memory and
 * sluice_gcra_init() both give a full bucket. */
struct sluice_gcra {
	SLUICE_ATOMIC(uint64_t) tat_ns; /* theoretical arrival time */
};

/*
 * Validate and precompute a rate: `limit` units per `period_ns`, bucket
 * capacity `burst` units (burst == limit gives the classic "limit per period,
 * all of it usable at once").
 * Returns 0, SLUICE_EINVAL (NULL rate, or zero limit, period or burst), or
 * SLUICE_ERANGE (burst * ceil(period_ns / limit) exceeds
 * SLUICE_GCRA_MAX_TOLERANCE_NS). On error *rate is left unchanged.
 */
SLUICE_API int sluice_rate_init(struct sluice_rate *rate, uint64_t limit, uint64_t period_ns,
				uint64_t burst);

/* Reset a cell to a full bucket. Not atomic with respect to concurrent
 * admits: call it before publishing the cell. */
SLUICE_API void sluice_gcra_init(struct sluice_gcra *cell);

/*
 * Decide whether `cost` units may pass at time `now_ns`, and take them if so.
 *
 * Admitted iff at least `cost` tokens are available at now_ns; a denied
 * request changes nothing (it only reads the cell). cost == 0 is a read-only
 * peek: always allowed, fills `out`, writes nothing. cost > burst is always
 * denied with retry_after_ns == SLUICE_NEVER and reason SLUICE_REASON_NEVER.
 *
 * `out` (may be NULL) receives: allowed; limit = rate->limit; remaining =
 * whole tokens right after the decision; reset_ns = time until the bucket is
 * full; retry_after_ns = 0 if admitted, else the exact wait after which this
 * request would be admitted if nothing else happened.
 *
 * Time may go backwards (a thread with a stale clock): a request older than
 * the last admission is judged as if it came at that admission's time with
 * the difference counted as extra debt, so it can be denied spuriously but
 * never over-admits; a peek at such a time still returns true (remaining may
 * be 0). Horizon: a request whose new state would pass UINT64_MAX - 2 ns
 * (now or the cell's state within cost * interval of the end of the clock) is
 * denied with retry_after_ns == SLUICE_NEVER and reason SLUICE_REASON_NEVER;
 * the two top values of the word are reserved (the keyed limiter marks dead
 * entries with them).
 *
 * Lock-free: one relaxed load and a CAS loop; no allocation, lock, syscall.
 */
SLUICE_API bool sluice_gcra_admit(struct sluice_gcra *cell, const struct sluice_rate *rate,
				  uint64_t now_ns, uint64_t cost, struct sluice_decision *out);

/* sluice_gcra_admit() at sluice_monotonic_ns(). */
SLUICE_API bool sluice_gcra_admit_now(struct sluice_gcra *cell, const struct sluice_rate *rate,
				      uint64_t cost, struct sluice_decision *out);

/* True iff the cell is idle at now_ns: its bucket is full, so it carries no
 * information and can be forgotten (a fresh cell decides identically).
 * Read-only: one relaxed load. */
SLUICE_API bool sluice_gcra_is_idle(const struct sluice_gcra *cell, const struct sluice_rate *rate,
				    uint64_t now_ns);

/*
 * Composition of several cells (all-or-nothing across limits).
 *
 * sluice_gcra_admit_receipt() is sluice_gcra_admit() that also records, on
 * admission, the word it replaced and the word it wrote. sluice_gcra_cancel()
 * undoes that admission exactly if no other operation has landed on the cell
 * since (the word still holds receipt->after), and returns whether it did.
 * When it returns false the consumption stays: a conservative outcome that
 * can deny spuriously later but never over-admits. Because a cancel only
 * pops the most recent operation, the cell always holds the exact result of
 * the operations that were not cancelled. Cancel a receipt at most once: a
 * second cancel of the same receipt could pop a later admission that happens
 * to have written the same word. A receipt of a denial or a peek cancels
 * nothing (returns false). Thread-safe like admit; lock-free (one CAS).
 */
struct sluice_gcra_receipt {
	uint64_t before; /* private */
	uint64_t after;  /* private */
};

SLUICE_API bool sluice_gcra_admit_receipt(struct sluice_gcra *cell, const struct sluice_rate *rate,
					  uint64_t now_ns, uint64_t cost,
					  struct sluice_decision *out,
					  struct sluice_gcra_receipt *receipt);

SLUICE_API bool sluice_gcra_cancel(struct sluice_gcra *cell, const struct sluice_gcra_receipt *receipt);

#ifdef __cplusplus
}
#endif

#endif /* SLUICE_GCRA_H */
