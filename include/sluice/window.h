/*
 * sluice/window.h - window limits: the exact sliding-window log, the
 * approximate sliding-window counter, and fixed calendar windows aligned to
 * the Unix epoch (UTC minute, hour, day, or any length).
 *
 * All three follow the GCRA cell's conventions (sluice/gcra.h): a config
 * validated once by its *_init (returns 0 or SLUICE_E*), a caller-owned cell
 * that zero-filled memory or *_init() puts in its fresh state, explicit time
 * (uint64_t nanoseconds passed in), and
 *
 *     bool admit(cell, cfg, now_ns, cost, out)
 *
 * with cost == 0 a read-only peek (always allowed, writes nothing), cost >
 * limit always denied with retry_after_ns == SLUICE_NEVER and reason
 * SLUICE_REASON_NEVER, time going backwards never over-admitting, and the
 * composition primitives the keyed limiter uses for all-or-nothing policies:
 * *_admit_receipt() / *_cancel() and *_is_idle(). A denial changes nothing.
 * A wait (reset_ns, retry_after_ns) whose end would pass 2^64 - 1 ns reads
 * SLUICE_NEVER.
 *
 * Which one to choose (docs/windows.md has the algorithms and proofs):
 *   - sliding-window log: exact ("never more than limit units in any window
 *     of length W ending at now"), 8 bytes per unit of limit times two
 *     (ring of 2 * limit rounded up to a power of two), limit <=
 *     SLUICE_WINDOW_LOG_MAX_LIMIT. Writers take a tiny per-cell critical
 *     section (see below); denials and peeks are lock-free.
 *   - sliding-window counter: 8 bytes, one CAS, lock-free; may admit up to
 *     limit + prev * elapsed / W units in a window (< 2 * limit), never more
 *     than limit per aligned window. Choose it for limits above a few hundred
 *     or when per-key memory matters.
 *   - calendar window: 8 bytes, one CAS, lock-free; exact per aligned
 *     window ("N per UTC day"), resets at the boundary.
 *
 * Thread safety: every function taking a cell may be called concurrently
 * from any number of threads, except *_init on that cell. Configs are
 * immutable after their *_init. A cell must always be used with the same
 * config and the same clock.
 *
 * Memory ordering (docs/windows.md has the table of every atomic). What a
 * caller may rely on:
 *   - counter and calendar cells: as the GCRA cell (sluice/gcra.h). One
 *     word, relaxed atomics only: an admission is linearized at its
 *     successful CAS, a denial, a peek or *_is_idle() at its one load, a
 *     cancel at its CAS; none orders any other memory.
 *   - log cells: an admission is linearized inside the cell's sequence lock
 *     (all admissions and cancels of a cell are serialized by it); a denial,
 *     a peek or sluice_window_log_is_idle() is linearized at a moment
 *     between its first and last read of the sequence, and judges a state
 *     of the ring some write really left (it retries while writes land
 *     under it). The lock's acquire/release pairs order the cell's own
 *     words only: a caller may not rely on an admission to order any other
 *     memory.
 * A caller that needs "admitted, so I see what an earlier admitted request
 * wrote" adds its own fences or locks.
 */
#ifndef SLUICE_WINDOW_H
#define SLUICE_WINDOW_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SLUICE_MINUTE_NS (60ull * SLUICE_NS_PER_SEC)
#define SLUICE_HOUR_NS (3600ull * SLUICE_NS_PER_SEC)
/* POSIX time has exactly 86400 s per day (leap seconds are not counted), so
 * Unix-time multiples of SLUICE_DAY_NS are 00:00:00 UTC. */
#define SLUICE_DAY_NS (86400ull * SLUICE_NS_PER_SEC)

/* ======================================================================
 * Sliding-window log (exact)
 * ====================================================================== */

/* Largest limit of a log. Above it the per-key ring (16 to 32 bytes per unit
 * of limit) and the O(cost) write path stop being reasonable: use the
 * sliding-window counter. */
#define SLUICE_WINDOW_LOG_MAX_LIMIT 4096u

/* A validated log config. Fields after window_ns are private. */
struct sluice_window_log_config {
	uint64_t limit;     /* units per window */
	uint64_t window_ns; /* window length W */
	uint64_t capacity;  /* private: ring slots, power of two >= 2 * limit */
};

/*
 * The per-key state: this header followed immediately by capacity 8-byte
 * timestamps. Allocate sluice_window_log_size(cfg) bytes aligned to
 * _Alignof(struct sluice_window_log) (8) and treat them as the cell; embed
 * it as the last member of a larger object or in a separately sized block.
 * All members are private.
 */
struct sluice_window_log {
	SLUICE_ATOMIC(uint64_t) seq; /* sequence lock: odd while a writer is in */
	SLUICE_ATOMIC(uint64_t) pos; /* units admitted since init (ring head) */
	/* SLUICE_ATOMIC(uint64_t) at_ns[capacity] follows */
};

/*
 * Validate a log config: at most `limit` units in any window of `window_ns`.
 * Returns 0, SLUICE_EINVAL (NULL cfg, zero limit or window), or
 * SLUICE_ETOOBIG (limit > SLUICE_WINDOW_LOG_MAX_LIMIT). On error *cfg is
 * unchanged.
 */
SLUICE_API int sluice_window_log_config_init(struct sluice_window_log_config *cfg, uint64_t limit,
					     uint64_t window_ns);

/* Bytes a cell of this config occupies (header plus ring): 16 + 8 * capacity,
 * at most 16 + 8 * 8192 = 65552. 0 for a NULL cfg. */
SLUICE_API size_t sluice_window_log_size(const struct sluice_window_log_config *cfg);

/* Reset a cell (all sluice_window_log_size(cfg) bytes) to empty. Not atomic
 * with respect to concurrent use: call it before publishing the cell. */
SLUICE_API void sluice_window_log_init(struct sluice_window_log *cell,
				       const struct sluice_window_log_config *cfg);

/*
 * Admit `cost` units at `now_ns` iff fewer than limit - cost + 1 units were
 * admitted in the window (now_ns - W, now_ns]; record them if so.
 *
 * `out` (may be NULL): limit; remaining = limit minus the units still in the
 * window after the decision; reset_ns = time until every recorded unit has
 * left the window; retry_after_ns = 0 if admitted, else the exact wait until
 * enough units leave the window for this request (if nothing else happens).
 * Reason SLUICE_REASON_RATE on denial.
 *
 * Time going backwards: units are recorded at max(now_ns, newest recorded
 * time), so the ring stays sorted and a stale request can be denied
 * spuriously but never over-admits (the invariant holds for the times passed
 * in, too: docs/windows.md).
 *
 * Progress: a denial or a peek is lock-free (an optimistic, validated read).
 * An admission takes the cell's sequence lock for O(cost) stores; a writer
 * that finds it held spins (with a CPU pause, then sched_yield() after a
 * while, which only happens when the holder was preempted).
 */
SLUICE_API bool sluice_window_log_admit(struct sluice_window_log *cell,
					const struct sluice_window_log_config *cfg, uint64_t now_ns,
					uint64_t cost, struct sluice_decision *out);

/* Receipt of an admission, for sluice_window_log_cancel(). Private fields. */
struct sluice_window_log_receipt {
	uint64_t seq_after; /* private: the sequence our write published */
	uint64_t pos_before;
	uint64_t pos_after;
};

/*
 * sluice_window_log_admit() that fills `receipt` on admission (zeroed
 * otherwise). sluice_window_log_cancel() undoes that admission exactly if no
 * other write (admission or cancel) has landed on the cell since, and
 * returns whether it did; otherwise the units stay recorded (conservative).
 * Undo is exact because a ring of at least 2 * limit slots means an
 * admission only overwrites slots that were already out of every window.
 * Cancel each receipt at most once.
 */
SLUICE_API bool sluice_window_log_admit_receipt(struct sluice_window_log *cell,
						const struct sluice_window_log_config *cfg,
						uint64_t now_ns, uint64_t cost,
						struct sluice_decision *out,
						struct sluice_window_log_receipt *receipt);
SLUICE_API bool sluice_window_log_cancel(struct sluice_window_log *cell,
					 const struct sluice_window_log_receipt *receipt);

/* True iff no recorded unit is in the window at now_ns: a fresh cell would
 * decide every later request identically. Read-only, lock-free. */
SLUICE_API bool sluice_window_log_is_idle(const struct sluice_window_log *cell,
					  const struct sluice_window_log_config *cfg,
					  uint64_t now_ns);

/* ======================================================================
 * Sliding-window counter (approximate, O(1))
 * ====================================================================== */

/* Field widths of the packed word: current count, previous count, window
 * index (mod 2^24). */
#define SLUICE_WINDOW_COUNTER_COUNT_BITS 20
#define SLUICE_WINDOW_COUNTER_INDEX_BITS 24
#define SLUICE_WINDOW_COUNTER_MAX_LIMIT ((1u << SLUICE_WINDOW_COUNTER_COUNT_BITS) - 1u)

struct sluice_window_counter_config {
	uint64_t limit;     /* units per window */
	uint64_t window_ns; /* window length W */
	uint64_t div_magic; /* private: t / W by multiplication */
	uint8_t div_shift1; /* private */
	uint8_t div_shift2; /* private */
};

/* The per-key state: one word (window index, previous and current counts).
 * Private member. */
struct sluice_window_counter {
	SLUICE_ATOMIC(uint64_t) word;
};

/*
 * Validate: the estimate prev * (W - elapsed) / W + cur stays <= limit.
 * Returns 0, SLUICE_EINVAL (NULL, zero limit or window) or SLUICE_ETOOBIG
 * (limit > SLUICE_WINDOW_COUNTER_MAX_LIMIT, 1048575).
 */
SLUICE_API int sluice_window_counter_config_init(struct sluice_window_counter_config *cfg,
						 uint64_t limit, uint64_t window_ns);

/* Reset to empty. Call before publishing the cell. */
SLUICE_API void sluice_window_counter_init(struct sluice_window_counter *cell);

/*
 * Admit `cost` units at `now_ns` iff cur + cost + prev * (W - e) / W <= limit
 * (exact rational test), where cur and prev are the units admitted in the
 * aligned window k = now_ns / W and in k - 1, and e = now_ns % W.
 *
 * Error bound (docs/windows.md): in any window of length W the cell admits
 * at most limit + floor(prev * e / W) < 2 * limit units, and at most limit
 * units per aligned window. It can also deny what the exact log admits.
 *
 * `out`: remaining = floor of what the estimate leaves; reset_ns = time until
 * the estimate is back to 0; retry_after_ns = exact wait (under the model)
 * until this request passes if nothing else happens. Reason RATE on denial.
 *
 * Time going backwards (now_ns in a window before the cell's): the request
 * is judged against the cell's window with no decay (elapsed 0) and counted
 * there: never over-admits, for a step back of fewer than 2^23 windows. The
 * index is kept mod 2^24, so distances alias: a window index 2^23 or more
 * windows ahead of the cell's reads as "backwards" (a cell untouched that
 * long, W = 1 s: 97 days, is judged conservatively until its window comes
 * round; the keyed limiter reclaims idle cells long before, is_idle), and a
 * step back of 2^23 windows or more reads as a step forward: its window
 * starts empty, so such a request can pass beyond the limit. Keep W large
 * enough that no clock of the cell is ever that stale.
 *
 * Lock-free: one load and a CAS loop; no allocation, lock or syscall.
 */
SLUICE_API bool sluice_window_counter_admit(struct sluice_window_counter *cell,
					    const struct sluice_window_counter_config *cfg,
					    uint64_t now_ns, uint64_t cost,
					    struct sluice_decision *out);

struct sluice_window_counter_receipt {
	uint64_t before; /* private */
	uint64_t after;  /* private */
};

/* As sluice_gcra_admit_receipt() / sluice_gcra_cancel(): the cancel restores
 * the word only if it still holds what our admission wrote. */
SLUICE_API bool sluice_window_counter_admit_receipt(struct sluice_window_counter *cell,
						    const struct sluice_window_counter_config *cfg,
						    uint64_t now_ns, uint64_t cost,
						    struct sluice_decision *out,
						    struct sluice_window_counter_receipt *receipt);
SLUICE_API bool sluice_window_counter_cancel(struct sluice_window_counter *cell,
					     const struct sluice_window_counter_receipt *receipt);

/* True iff both counts that matter at now_ns are zero. Read-only. */
SLUICE_API bool sluice_window_counter_is_idle(const struct sluice_window_counter *cell,
					      const struct sluice_window_counter_config *cfg,
					      uint64_t now_ns);

/* ======================================================================
 * Calendar windows (fixed, aligned to the Unix epoch)
 * ====================================================================== */

/* Packed word: window index mod 2^32, count (32 bits). */
#define SLUICE_CALENDAR_MAX_LIMIT UINT32_MAX

struct sluice_calendar_config {
	uint64_t limit;     /* units per window */
	uint64_t window_ns; /* SLUICE_MINUTE_NS, SLUICE_HOUR_NS, SLUICE_DAY_NS, or any */
	uint64_t div_magic; /* private: t / W by multiplication */
	uint8_t div_shift1; /* private */
	uint8_t div_shift2; /* private */
};

struct sluice_calendar {
	SLUICE_ATOMIC(uint64_t) word; /* private */
};

/*
 * Validate: at most `limit` units per window [k * W, (k + 1) * W) of Unix
 * time. Returns 0, SLUICE_EINVAL (NULL, zero limit or window) or
 * SLUICE_ETOOBIG (limit > SLUICE_CALENDAR_MAX_LIMIT).
 */
SLUICE_API int sluice_calendar_config_init(struct sluice_calendar_config *cfg, uint64_t limit,
					   uint64_t window_ns);

/* Reset to empty. Call before publishing the cell. */
SLUICE_API void sluice_calendar_init(struct sluice_calendar *cell);

/*
 * Admit `cost` units at `now_ns` (Unix nanoseconds, e.g. sluice_realtime_ns())
 * iff count + cost <= limit in the window now_ns / W; the count restarts at
 * 0 at each boundary (with W = SLUICE_DAY_NS: 00:00:00 UTC).
 *
 * `out`: remaining = limit - count; reset_ns = time to the next boundary
 * (of the window the request was counted in); retry_after_ns = 0, or
 * reset_ns when this window is exhausted. Reason SLUICE_REASON_QUOTA.
 * A boundary past the end of the clock (2^64 - 1 ns, year 2554) never
 * comes: reset_ns (and the retry-after of a denial) is then SLUICE_NEVER.
 *
 * Time going backwards (now_ns in a window before the cell's): the request
 * is counted in the cell's window, so per window of the cell never more than
 * limit pass, for a step back of fewer than 2^31 windows. The index is kept
 * mod 2^32: a cell untouched for 2^31 windows or more (W = 1 s: 68 years)
 * may be read as such a case (it then waits for its window, see docs), and a
 * step back of 2^31 windows or more (W = 1 ns: 2.1 s) reads as a step
 * forward into an empty window, which can pass beyond the limit.
 *
 * Lock-free: one load and a CAS loop.
 */
SLUICE_API bool sluice_calendar_admit(struct sluice_calendar *cell,
				      const struct sluice_calendar_config *cfg, uint64_t now_ns,
				      uint64_t cost, struct sluice_decision *out);

/* sluice_calendar_admit() at sluice_realtime_ns() (reads the clock). */
SLUICE_API bool sluice_calendar_admit_now(struct sluice_calendar *cell,
					  const struct sluice_calendar_config *cfg, uint64_t cost,
					  struct sluice_decision *out);

struct sluice_calendar_receipt {
	uint64_t before; /* private */
	uint64_t after;  /* private */
};

SLUICE_API bool sluice_calendar_admit_receipt(struct sluice_calendar *cell,
					      const struct sluice_calendar_config *cfg,
					      uint64_t now_ns, uint64_t cost,
					      struct sluice_decision *out,
					      struct sluice_calendar_receipt *receipt);
SLUICE_API bool sluice_calendar_cancel(struct sluice_calendar *cell,
				       const struct sluice_calendar_receipt *receipt);

/* True iff the count that applies at now_ns is zero. Read-only. */
SLUICE_API bool sluice_calendar_is_idle(const struct sluice_calendar *cell,
					const struct sluice_calendar_config *cfg, uint64_t now_ns);

#ifdef __cplusplus
}
#endif

#endif /* SLUICE_WINDOW_H */
