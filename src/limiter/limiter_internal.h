/*
 * limiter_internal.h - hooks into the keyed limiter for tests and fuzzing.
 * Not installed; not part of the API.
 */
#ifndef SLUICE_LIMITER_INTERNAL_H
#define SLUICE_LIMITER_INTERNAL_H

#include <sluice/limiter.h>

#include "limiter/limit_kind_internal.h"

/* The keyed hash the table uses for `key`. */
uint64_t sluice__limiter_hash(const struct sluice_limiter *lim, const void *key, size_t key_len);

/* The number of keys the table's first array was sized for. */
unsigned long sluice__limiter_initial_buckets(const struct sluice_limiter *lim);

/* Tests only, before the first key: AND every key's hash with mask, so
 * that keys collide (mask 0: one hash for all; the index's tag is bits
 * 0..14 of the hash, its home group bits 16 and up). */
void sluice__limiter_set_hash_mask(struct sluice_limiter *lim, uint64_t mask);

/* Tests only: fn(user, key, key_len) runs in the middle of every move of a
 * key into its inline slot (docs/limiter.md, "Inline slots"): after the
 * copy and the freeze, before the publication - where a mover descheduled
 * there would leave it - on the mover's thread, inside its read-side
 * section and holding resize_lock (fn may admit, peek and check existing
 * keys of the limiter, not insert). NULL: none. */
void sluice__limiter_set_move_hook(void (*fn)(void *user, const void *key, size_t key_len), void *user);
/* Tests only: take (hold) or release lim's resize_lock, the lock every
 * move holds, so that keys inserted meanwhile stay allocated apart (their
 * insertion's trylock fails) until a sweep without the lock moves them. On
 * the caller's thread: inserting so many keys that the array must grow
 * would wait for the caller itself. */
void sluice__limiter_hold_moves(struct sluice_limiter *lim, bool hold);

/* ---- for the policy engine (engine.c) ---- */

/* What sluice__limiter_check() found: the key's hash and entry (NULL:
 * none), which sluice__limiter_reserve() of the same key in the same
 * read-side section takes instead of hashing and looking the key up again.
 * NULL hint: the reserve hashes and looks up itself. */
struct sluice__limiter_hint {
	void *entry;
	uint64_t hash;
};

/* An admission that can still be undone: the entry and a receipt per cell.
 * Valid only inside the read-side section that took it. */
struct sluice__limiter_hold {
	void *entry;    /* NULL: nothing to undo (denied, degraded, peek) */
	uint64_t handle; /* the slot taken, or SLUICE_SLOT_NONE */
	uint64_t hash;   /* the key's hash (sluice__limiter_release_entry) */
	struct sluice__receipt r[SLUICE_LIMITER_MAX_LIMITS + 1];
};

/* Register the calling thread as sluice_limiter_admit() would (0 or
 * SLUICE_ETHREAD). Call before rcu_read_lock(). */
int sluice__limiter_thread_enter(struct sluice_limiter *lim);
/* The same without a limiter: caller_registers as the limiter flag. */
int sluice__rcu_thread_enter(bool caller_registers);

/*
 * sluice_limiter_acquire() for a caller already inside rcu_read_lock() (and
 * registered): key validated by the caller. On admission fills *hold so that
 * sluice__limiter_cancel(), in the same read-side section, can undo it
 * (exactly, whatever landed since, on cells whose cancel is exact; on a GCRA
 * or sliding-log cell only if nothing landed since, else the consumption
 * stays: never over-admits). On a limiter of several limits the commit cell
 * (cell 0, when it carries a limit) keeps its consumption: cancelling it
 * could hide other cells' units from a concurrent sweep (sweep.c, "Reclaim").
 * Returns 1 when the fail mode answered (degraded), else 0.
 */
int sluice__limiter_reserve(struct sluice_limiter *lim, const void *key, size_t key_len,
			    const struct sluice__limiter_hint *hint, uint64_t cost, uint64_t now_ns,
			    struct sluice_decision *out, struct sluice__limiter_hold *hold);
void sluice__limiter_cancel(struct sluice_limiter *lim, const struct sluice__limiter_hold *hold);

/*
 * What the engine needs to keep a refused request from consuming anything
 * across limiters (docs/limiter.md, "Refused requests"):
 *
 * sluice__limiter_cancel_is_exact(): true iff sluice__limiter_cancel() of
 * any hold of this limiter restores exactly the state without that
 * admission, whatever landed since (slots, sliding counter and calendar
 * limits, and a COMMIT word; one-limit limiters of those kinds). False for
 * a GCRA or sliding-log limit, and for a multi-limit entry whose cell 0
 * carries a limit (it keeps its consumption). The engine reserves the
 * limiters whose cancel is exact first and the others last, so a refusal
 * by a later limiter needs only exact cancels, except between two inexact
 * ones.
 *
 * sluice__limiter_check(): the dry run of a reserve of `cost` on the key's
 * current state, nothing written (an unknown key: a full entry): true iff
 * the reserve would admit now; *out is the decision (the first denier). A
 * read-only pass over every limiter before reserving anything means a
 * refusal already visible reserves nothing. Inside the caller's read-side
 * section, registered, key validated, like sluice__limiter_reserve().
 * hint (may be NULL) receives what a reserve of the same key in the same
 * section can start from.
 */
bool sluice__limiter_cancel_is_exact(const struct sluice_limiter *lim);
bool sluice__limiter_check(struct sluice_limiter *lim, const void *key, size_t key_len,
			   uint64_t cost, uint64_t now_ns, struct sluice_decision *out,
			   struct sluice__limiter_hint *hint);

/* Tests only: call fn(user, caller's limit index) after each commit of a
 * limit other than cell 0 (the last) in a multi-limit admission, in this
 * thread, inside the admission's read-side section; fn may admit on the
 * same limiter (deterministic interleavings: tests/test_limiter_cancel.c).
 * NULL removes it. Not for concurrent use with admissions. */
void sluice__limiter_set_commit_hook(void (*fn)(void *user, uint32_t limit_index), void *user);

/*
 * sluice_limiter_release() of a slot taken by sluice__limiter_reserve(),
 * found without the key: the entry at address `entry` in the chain of
 * `hash` (hold->entry, hold->hash), matched by pointer identity inside a
 * read-side section of its own, so a reclaimed (even freed) entry is never
 * dereferenced: it is not found (SLUICE_ENOTFOUND). An address reused by a
 * new entry of the same key is found, and its slots cell refuses the old
 * handle by its tag (SLUICE_ESTALE). Same returns as sluice_limiter_release().
 */
int sluice__limiter_release_entry(struct sluice_limiter *lim, uint64_t hash, const void *entry,
				  sluice_slot_handle handle);

/* sluice_limiter_destroy() of n limiters (NULLs skipped) with one
 * rcu_barrier() for all of them instead of one each (~10 ms apiece). */
void sluice__limiter_destroy_many(struct sluice_limiter *const *lims, size_t n);

/* Call fn for every live entry with its peek decision at now_ns (governing
 * limit), inside the caller's read-side section. Not atomic across keys. */
void sluice__limiter_foreach(struct sluice_limiter *lim, uint64_t now_ns,
			     void (*fn)(void *user, const void *key, size_t key_len,
					const struct sluice_decision *d),
			     void *user);

/* ---- snapshots (snapshot.c; docs/limiter.md, "Snapshots") ---- */

/* The policy in the caller's order into out[0 .. SLUICE_LIMITER_MAX_LIMITS);
 * returns the number of limits. */
size_t sluice__limiter_policy(const struct sluice_limiter *lim, struct sluice_limit *out);

/* Called once per live entry: its key, and the saved words of the caller's
 * limit u at words[sum of nwords[0 .. u)], nwords[u] of them (the cell's
 * kind's save(), limit_kind_internal.h). Runs inside a read-side section
 * and may not block for long; nonzero stops the walk and is returned. */
typedef int (*sluice__limiter_visit_fn)(void *user, const void *key, size_t key_len,
					const uint64_t *words, const size_t *nwords);

/*
 * Walk every live entry, VISIT_CHUNK (1024) entries per read-side section,
 * holding the sweep lock (sweeps wait; admits never do). Per entry: cell 0
 * loaded first, an acquire fence, then the other cells, so every admission
 * that the saved cell 0 counts is counted in every other saved cell too
 * (the sweeper's argument); each cell's copy is one state it held. Entries
 * inserted during the walk may be missed; entries reclaimed before it are.
 * Returns 0, fn's nonzero, SLUICE_ENOMEM, SLUICE_ETHREAD, or
 * SLUICE_EUNSUPPORTED (a limiter on Redis). Any thread; not inside the
 * caller's read-side section.
 */
int sluice__limiter_visit(struct sluice_limiter *lim, uint64_t now_ns, sluice__limiter_visit_fn fn,
			  void *user);

/* 0 if the limiter may be restored into (in process, registered, empty);
 * SLUICE_ESTATE (it has entries), SLUICE_EUNSUPPORTED (Redis), ETHREAD. */
int sluice__limiter_restore_begin(struct sluice_limiter *lim);

/*
 * Build key's entry from saved words (the caller's limit u from words[u],
 * nwords[u] of them; words[u] NULL: that limit starts full), and insert it
 * unless every cell is idle at now_ns. dry_run: build and judge, insert
 * nothing, charge nothing. Returns 1 (inserted, or would be), 0 (idle:
 * skipped), SLUICE_ECORRUPT (some words are no state of their limit),
 * SLUICE_ENOMEM, SLUICE_EFULL (key budget), SLUICE_ESTATE (the key is
 * already there). Only on a limiter not yet shared.
 */
int sluice__limiter_restore_entry(struct sluice_limiter *lim, const void *key, size_t key_len,
				  const uint64_t *const *words, const size_t *nwords,
				  uint64_t taken_ns, uint64_t now_ns, bool dry_run);

/* Remove every entry (a restore that failed half-way), giving them back to
 * the budget. Only on a limiter not yet shared. */
void sluice__limiter_clear(struct sluice_limiter *lim);


/* ---- the file machinery, shared with the engine's snapshot
 * (src/engine/engine_snapshot.c): one writer, one reader ---- */

struct sluice_snapshot_info;

/* A growing buffer; oom latches the first allocation failure (later puts
 * do nothing). Free p. */
struct sluice__snap_buf {
	unsigned char *p;
	size_t len, cap;
	bool oom;
};
void sluice__snap_put(struct sluice__snap_buf *b, const void *src, size_t n);

/* Append one whole limiter snapshot (the format of
 * sluice_limiter_snapshot_mem(), its own header, trailer and checksum) to
 * b. info (may be NULL): entries and bytes of this one. Returns as
 * sluice_limiter_snapshot_mem(). */
int sluice__limiter_snapshot_append(struct sluice_limiter *lim, uint64_t now_ns,
				    struct sluice__snap_buf *b, struct sluice_snapshot_info *info);

/* The trailer every snapshot file ends with: count (u64), "SLUICEND", the
 * XXH3-64 of b->p[start ..] up to the checksum. unseal checks it on p[0 ..
 * len) (SLUICE_ECORRUPT: truncated, no trailer, checksum mismatch; info's
 * message) and returns the count. */
void sluice__snap_seal(struct sluice__snap_buf *b, size_t start, uint64_t count);
int sluice__snap_unseal(const unsigned char *p, size_t len, uint64_t *count,
			struct sluice_snapshot_info *info);

/* Write buf atomically to path (path.tmp, fsync, rename, directory fsync;
 * sluice_limiter_snapshot()'s contract). 0, SLUICE_EIO, SLUICE_ENOMEM. */
int sluice__snap_write_file(const char *path, const void *buf, size_t len,
			    struct sluice_snapshot_info *info);

/* Read the whole file at path into *buf (free() it). 0, SLUICE_ENOTFOUND
 * (no file), SLUICE_EIO, SLUICE_ENOMEM. */
int sluice__snap_read_file(const char *path, unsigned char **buf, size_t *len,
			   struct sluice_snapshot_info *info);

/* info zeroed (size kept) when info->size is this version's. */
void sluice__snap_info_reset(struct sluice_snapshot_info *info);
/* Set info->message from fmt (when info is usable) and return rc. */
int sluice__snap_fail(struct sluice_snapshot_info *info, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif /* SLUICE_LIMITER_INTERNAL_H */
