/*
 * sluice/snapshot.h - keyed-limiter state that survives a restart: write
 * every live entry of an in-process limiter to a file while admissions go
 * on, and load it into a fresh limiter when the process starts again.
 * Format, consistency and the over-admission bound: docs/limiter.md,
 * "Snapshots".
 *
 * What is kept. Each live entry's key and, for each limit, its state (a
 * GCRA, counter or calendar limit: its one word; a sliding log: the times
 * of the units still in its window; slots: how many are held). The file
 * also records each limit's identity (kind and the numbers that define it,
 * the rule hot reload uses), so a restore into a limiter whose policy has
 * changed loads a limit's state only where the new policy has a limit of
 * the same kind and numbers; a changed, added or removed limit starts full.
 * Entries idle at the restore's now_ns (every limit full) are not loaded.
 * Held slots: their holders died with the process and their handles name
 * the old cell, so nobody can release them: with a lease each comes back
 * held until the snapshot's time plus the lease TTL (leases expire them),
 * without one it comes back free.
 *
 * The bound. A restored cell holds a state it really held at the instant
 * the snapshot copied it, so after a restore a limit can admit again at
 * most what it admitted between that instant and the end of the old
 * process: for periodic snapshots, at most the snapshot interval's
 * admissions (plus the time one snapshot takes). A snapshot taken at a
 * graceful stop, after the last admission, loses nothing.
 *
 * Time. The file stores absolute times of the limiter's clock (now_ns), so
 * snapshot only limiters driven by a clock that keeps running across the
 * restart: sluice_realtime_ns() (calendar limits need it anyway), or
 * sluice_monotonic_ns() only between processes of one boot. A restore whose
 * now_ns is earlier than the snapshot's is refused (SLUICE_ERANGE).
 *
 * Threads: the snapshot functions may run concurrently with every call but
 * create/destroy on the same limiter (admits never wait for them; sweeps
 * do, for the snapshot's duration); one snapshot per path at a time. The
 * restore functions need a limiter that is not shared yet and has no
 * entries (just created). Limiters on Redis: SLUICE_EUNSUPPORTED (Redis
 * keeps their state).
 */
#ifndef SLUICE_SNAPSHOT_H
#define SLUICE_SNAPSHOT_H

#include "limiter.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The file format's version (docs/limiter.md, "Snapshots"). */
#define SLUICE_SNAPSHOT_VERSION 1

/*
 * What a snapshot or restore did, versioned: set size to
 * sizeof(struct sluice_snapshot_info). May be NULL. Filled on success and
 * on failure (then `message` says what was wrong: "checksum mismatch",
 * "truncated: 1234 bytes, ..."), as far as the call got.
 */
struct sluice_snapshot_info {
	size_t size;
	uint64_t taken_ns;       /* the now_ns the snapshot was taken at */
	uint64_t entries;        /* entries written / in the file */
	uint64_t bytes;          /* bytes written / in the file */
	uint64_t loaded;         /* restore: entries inserted */
	uint64_t skipped_idle;   /* restore: entries idle at now_ns, not loaded */
	uint32_t limits_kept;    /* restore: the file's limits whose state loads */
	uint32_t limits_dropped; /* restore: the file's limits the limiter no
				  * longer has (changed or removed) */
	int sys_errno;           /* SLUICE_EIO: errno of the failed call */
	char message[160];       /* on failure: what was wrong; else "" */
};

/*
 * Write the limiter's state at now_ns (the time of its clock, as for an
 * admit) to `path`, atomically: into `path`.tmp in the same directory,
 * fsync, rename over `path`, fsync of the directory. A crash at any point
 * leaves `path` as it was (the previous snapshot) or the new one, never a
 * mix; a stale `path`.tmp is overwritten by the next snapshot.
 * Returns 0, SLUICE_EINVAL (NULL lim or path), SLUICE_EIO (a file call
 * failed: info->sys_errno), SLUICE_ENOMEM, SLUICE_ETHREAD, or
 * SLUICE_EUNSUPPORTED (on Redis). Memory: the whole file is built in memory
 * first, with malloc (23 bytes per key of 11 bytes and one GCRA limit;
 * docs/benchmarks.md, "Snapshots"). Cost: about 0.35 us of CPU per key.
 */
SLUICE_API int sluice_limiter_snapshot(struct sluice_limiter *lim, const char *path,
				       uint64_t now_ns, struct sluice_snapshot_info *info);

/* The same snapshot into memory: *buf (free() it) of *len bytes. Returns as
 * above, SLUICE_EINVAL also for NULL buf or len. */
SLUICE_API int sluice_limiter_snapshot_mem(struct sluice_limiter *lim, uint64_t now_ns, void **buf,
					   size_t *len, struct sluice_snapshot_info *info);

/*
 * Load the snapshot at `path` into `lim`, a limiter just created (no
 * entries, not shared yet), at now_ns. The whole file is checked first
 * (structure, checksum, every saved state, no key twice) and nothing is
 * loaded unless all of it is good. Returns 0, or:
 *   SLUICE_ENOTFOUND  no file at path (a first start);
 *   SLUICE_ECORRUPT   truncated, corrupt, or not a snapshot of this format,
 *                     version, byte order and word size (info->message);
 *   SLUICE_ERANGE     now_ns earlier than the snapshot's time;
 *   SLUICE_EFULL      the entries do not fit options.max_keys/max_bytes;
 *   SLUICE_EIO        reading failed (info->sys_errno);
 *   SLUICE_ESTATE     the limiter already has entries;
 *   SLUICE_EINVAL, SLUICE_ENOMEM, SLUICE_ETHREAD, SLUICE_EUNSUPPORTED (Redis).
 * On any error the limiter is left empty, as created: the caller chooses
 * to run with it so (and log the error) or to refuse to start.
 */
SLUICE_API int sluice_limiter_restore(struct sluice_limiter *lim, const char *path, uint64_t now_ns,
				      struct sluice_snapshot_info *info);

/* The same from memory (buf, len); SLUICE_ENOTFOUND is not returned. */
SLUICE_API int sluice_limiter_restore_mem(struct sluice_limiter *lim, const void *buf, size_t len,
					  uint64_t now_ns, struct sluice_snapshot_info *info);

#ifdef __cplusplus
}
#endif

#endif /* SLUICE_SNAPSHOT_H */
