/*
 * sluice/slots.h - concurrency slots: a counting semaphore per key with
 * handles and leases ("at most N requests in flight").
 *
 * Acquire takes one of N slots and returns a handle; release gives it back.
 * A handle names its slot (index), the slot's use (generation) and the cell
 * (a tag drawn at init), so a second release of the same handle reports
 * SLUICE_EDOUBLE and a handle from another cell SLUICE_ESTALE, and neither
 * changes the count. With a lease TTL, a slot held for TTL or longer may be
 * reclaimed (by an acquirer that finds the cell full, or by
 * sluice_slots_reap()), so a handler that crashed or forgot to release
 * cannot shrink capacity forever; releasing a reclaimed slot reports
 * SLUICE_ESTALE and leaves the count alone.
 *
 * The cell is caller-owned: a header followed by 16 bytes per slot;
 * sluice_slots_size(cfg) gives its size so it can be embedded in a key
 * entry. Acquire and release are lock-free (CAS on the count and on one slot
 * word). Slots bound concurrency; they do not protect memory: after a lease
 * is reclaimed its old holder may still be running.
 *
 * Time is explicit (now_ns) as for every sluice cell; it is only used for
 * leases. sluice_slots_acquire_wait() reads CLOCK_MONOTONIC itself, so a cell
 * used with it must be given sluice_monotonic_ns() times everywhere.
 *
 * Thread safety: every function taking a cell may be called concurrently
 * from any number of threads, except sluice_slots_init() on that cell.
 *
 * Memory ordering (docs/windows.md, "Concurrency slots"). What a caller may
 * rely on:
 *   - a release (sluice_slots_release(), sluice_slots_cancel()) that
 *     returns 0 / true happens-before the acquire that takes the capacity it
 *     freed (release decrement, acquire CAS on the count): what a holder
 *     wrote before releasing is visible to the next holder of that capacity;
 *   - a slot taken over from an expired lease (by an acquirer or by
 *     sluice_slots_reap()) hands over no memory: its old holder may still be
 *     running and writing;
 *   - a denial, sluice_slots_peek() and sluice_slots_is_idle() give the
 *     caller no ordering: they judge by a value the count really held (a
 *     relaxed load) and write nothing.
 */
#ifndef SLUICE_SLOTS_H
#define SLUICE_SLOTS_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Largest number of slots per cell (12 bits of slot index in a handle). */
#define SLUICE_SLOTS_MAX 4096u

/* Default retry-after hint of a denial: 1 s. */
#define SLUICE_SLOTS_DEFAULT_RETRY_NS SLUICE_NS_PER_SEC

/* No slot: the handle of a denied acquire. Real handles are never 0. */
#define SLUICE_SLOT_NONE UINT64_C(0)

/* A handle: opaque. Bits: slot index (12), generation (28), cell tag (24). */
typedef uint64_t sluice_slot_handle;

struct sluice_slots_config {
	uint64_t slots;          /* N */
	uint64_t lease_ttl_ns;   /* 0: leases never expire */
	uint64_t retry_after_ns; /* hint returned on denial */
};

/* The per-key state: this header followed by `slots` pairs of 8-byte words.
 * Allocate sluice_slots_size(cfg) bytes aligned to 8 (SLUICE_CACHELINE is
 * better under contention). All members are private. */
struct sluice_slots {
	SLUICE_ATOMIC(uint64_t) in_use; /* slots reserved */
	uint64_t tag;                   /* cell identity, drawn at init */
	/* struct { SLUICE_ATOMIC(uint64_t) state, deadline_ns; } slot[slots] */
};

/*
 * Validate a config: N = `slots` concurrent holders, leases of
 * `lease_ttl_ns` (0: no expiry), denial hint `retry_after_ns` (0 selects
 * SLUICE_SLOTS_DEFAULT_RETRY_NS: a zero hint would invite a busy retry).
 * Returns 0, SLUICE_EINVAL (NULL, zero slots) or SLUICE_ETOOBIG
 * (slots > SLUICE_SLOTS_MAX).
 */
SLUICE_API int sluice_slots_config_init(struct sluice_slots_config *cfg, uint64_t slots,
					uint64_t lease_ttl_ns, uint64_t retry_after_ns);

/* Bytes a cell occupies: 16 + 16 * slots (at most 65552). 0 for NULL. */
SLUICE_API size_t sluice_slots_size(const struct sluice_slots_config *cfg);

/* Reset a cell to N free slots and draw a new tag, so handles of the cell's
 * previous life report SLUICE_ESTALE (tags repeat after 2^24 inits).
 * Call before publishing the cell. */
SLUICE_API void sluice_slots_init(struct sluice_slots *cell, const struct sluice_slots_config *cfg);

/*
 * Take a slot at now_ns. On success returns true and stores the handle in
 * *handle; on denial returns false, stores SLUICE_SLOT_NONE, and `out` gets
 * reason SLUICE_REASON_CONCURRENCY and retry_after_ns = cfg->retry_after_ns.
 * With a lease TTL, an acquirer that finds every slot taken first reclaims
 * one whose lease has expired (now_ns >= acquired + TTL) and takes it over.
 * `handle` NULL makes the call a read-only peek (as cost 0 elsewhere).
 *
 * `out` (may be NULL): limit = N; remaining = free slots after the decision;
 * reset_ns = 0 (slots have no time-based reset) or, on denial, the hint;
 * retry_after_ns as above.
 *
 * Time going backwards only delays lease expiry. Lock-free; O(1) when a slot
 * is free; a denial with leases enabled scans the N slot words.
 */
SLUICE_API bool sluice_slots_acquire(struct sluice_slots *cell, const struct sluice_slots_config *cfg,
				     uint64_t now_ns, struct sluice_decision *out,
				     sluice_slot_handle *handle);

/* Read-only: the decision an acquire would get (remaining free slots). */
SLUICE_API bool sluice_slots_peek(const struct sluice_slots *cell,
				  const struct sluice_slots_config *cfg, uint64_t now_ns,
				  struct sluice_decision *out);

/*
 * Give a slot back. Returns 0; SLUICE_EDOUBLE if this handle was already
 * released; SLUICE_ESTALE if the handle belongs to another cell (or to this
 * cell before its last init), is malformed, or its lease was reclaimed.
 * Only a 0 return changes the cell. The release happens-before the
 * acquisition that reuses the freed capacity (release/acquire on the count).
 * A double release of a handle whose slot has since been reused and reclaimed
 * again may be reported as SLUICE_EDOUBLE instead of SLUICE_ESTALE; handle
 * generations repeat after 2^28 uses of one slot.
 */
SLUICE_API int sluice_slots_release(struct sluice_slots *cell, const struct sluice_slots_config *cfg,
				    sluice_slot_handle handle);

/*
 * Composition (all-or-nothing policies): an acquire's receipt is its handle;
 * cancel undoes the acquisition exactly (a semaphore's operations commute,
 * so this holds whatever landed since) and returns true, or returns false if
 * the handle was not live (already released or reclaimed).
 */
SLUICE_API bool sluice_slots_cancel(struct sluice_slots *cell, const struct sluice_slots_config *cfg,
				    sluice_slot_handle handle);

/* Reclaim every slot whose lease has expired at now_ns. Returns how many.
 * 0 when the config has no TTL. Lock-free; O(N). */
SLUICE_API unsigned sluice_slots_reap(struct sluice_slots *cell, const struct sluice_slots_config *cfg,
				      uint64_t now_ns);

/* True iff no slot is held (a fresh cell would decide identically; handles
 * of the old cell would then report SLUICE_ESTALE against a re-initialised
 * one). Read-only. */
SLUICE_API bool sluice_slots_is_idle(const struct sluice_slots *cell,
				     const struct sluice_slots_config *cfg, uint64_t now_ns);

/*
 * Acquire, waiting until `deadline_ns` (CLOCK_MONOTONIC, as
 * sluice_monotonic_ns()) for a slot: polls with sluice_slots_acquire() at
 * sluice_monotonic_ns() and sleeps (nanosleep) between tries, from 1 us
 * doubling up to 1 ms, never past the deadline. Not for hot paths: it reads
 * the clock and sleeps. Returns 0 with *handle set, SLUICE_ETIMEDOUT once
 * the deadline has passed (*handle = SLUICE_SLOT_NONE; `out` holds the last
 * denial), or SLUICE_EINVAL for a NULL cell, cfg or handle.
 */
SLUICE_API int sluice_slots_acquire_wait(struct sluice_slots *cell,
					 const struct sluice_slots_config *cfg, uint64_t deadline_ns,
					 struct sluice_decision *out, sluice_slot_handle *handle);

#ifdef __cplusplus
}
#endif

#endif /* SLUICE_SLOTS_H */
