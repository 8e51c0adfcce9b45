/*
 * sluice/shm.h - the keyed limiter and the policy engine with their state in
 * one memory zone shared by several processes (nginx, Apache, PHP-FPM
 * workers): every worker decides on the same per-key state, with the same
 * decisions as the in-process store, without a server. Design, layout,
 * state machine, memory orders and the crash argument: docs/shm.md.
 *
 * A zone is a byte range the caller maps MAP_SHARED in every process (an
 * nginx shared zone, a file mapped with sluice_shm_map_file(), an anonymous
 * shared mapping made before fork()). Everything in it is an offset from
 * its base, so each process may map it at a different address. It holds a
 * header (magic, format version, sizes, the hash secret) and one region per
 * limit binding: a fixed-capacity hash table of entries, each the limit's
 * cell (the same 8-byte words as in process) plus the key.
 *
 * Life of a zone:
 *   1. its size: sluice_shm_zone_size() (from a key count) or
 *      sluice_shm_zone_capacity() (the key count a given size holds);
 *   2. once, by its creator (nginx's master in the zone's init callback
 *      before fork(), or the first opener of a file):
 *      sluice_shm_zone_init(), which keeps a compatible zone's state and
 *      formats anything else;
 *   3. in every process: sluice_shm_engine_create() (or
 *      sluice_shm_limiter_create() for a bare keyed limiter), then the
 *      usual sluice/engine.h or sluice/limiter.h calls.
 *
 * Crash safety: a process killed at any instruction leaves nothing locked
 * and nothing inconsistent. Lookups and updates of existing keys are
 * lock-free (one CAS on the key's cell); an insertion claims a slot with a
 * claim word stamped with the claimant's CLOCK_MONOTONIC time, which any
 * process takes over once it is SLUICE_SHM_CLAIM_TIMEOUT_NS old; a slot
 * held by a dead process comes back when its lease expires, as in process.
 *
 * Capacity is fixed at init: when a region's keys do not fit, the limit's
 * fail mode answers (open: allowed and degraded; closed: refused with
 * reason CAPACITY). Idle keys are reclaimed in place by sweeps
 * (sluice_limiter_sweep(), sluice_engine_sweep() or the maintenance
 * thread), from any process.
 *
 * Keys: up to SLUICE_SHM_KEY_INLINE bytes are stored as they are; a longer
 * key (up to SLUICE_LIMITER_MAX_KEY) is stored as its 128-bit XXH3 digest
 * keyed with the zone's secret, so two long keys share state only if their
 * keyed digests collide (a 2^-128 chance per pair that an outsider, not
 * knowing the secret, cannot steer).
 *
 * Scope: a bare limiter holds 1 to SLUICE_LIMITER_MAX_LIMITS limits per
 * key, all-or-nothing as in process; an engine binding is one limit.
 * Every kind. The sliding log's writers serialize inside the cell on a
 * claim stamped with the holder's CLOCK_MONOTONIC time: one that a dead
 * process left is taken over once SLUICE_SHM_CLAIM_TIMEOUT_NS old, so such
 * a key waits at most that long; a log's cancel (a request refused by
 * another limit) gives its units back only if no other write landed on the
 * key since. A key's cells take at most about 64 KiB (one log of
 * SLUICE_WINDOW_LOG_MAX_LIMIT; SLUICE_ETOOBIG beyond).
 */
#ifndef SLUICE_SHM_H
#define SLUICE_SHM_H

#include "common.h"
#include "engine.h"
#include "limiter.h"
#include "policy.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The zone format this build reads and writes. */
#define SLUICE_SHM_FORMAT_VERSION 1

/* Longest key stored as it is; longer keys are stored as a keyed digest. */
#define SLUICE_SHM_KEY_INLINE 32

/* An insertion claim older than this (CLOCK_MONOTONIC) belongs to a process
 * that died or stalled; any process takes the slot back. */
#define SLUICE_SHM_CLAIM_TIMEOUT_NS (UINT64_C(1000000000))

/* Smallest zone alignment: base must be aligned to this (a page is). */
#define SLUICE_SHM_ALIGN 64

/* sluice_shm_zone_init() flags */
/* Format the zone even when it holds a compatible one (drop its state). */
#define SLUICE_SHM_INIT_RESET 0x1u

/* What sluice_shm_zone_init() did, versioned: set size to
 * sizeof(struct sluice_shm_info) (or pass NULL). */
struct sluice_shm_info {
	size_t size;
	uint32_t regions;   /* limit bindings in the zone */
	uint32_t kept;      /* regions whose state was kept (same binding) */
	uint32_t reset;     /* regions formatted fresh */
	uint32_t formatted; /* 1: the whole zone was formatted (new secret) */
	uint64_t capacity;  /* keys per region */
	uint64_t bytes;     /* bytes of the zone in use */
	char message[160];  /* on an error: why */
};

/*
 * Bytes of a zone for `policy` (its engine: one region per limit binding:
 * per limit and tier in force, and per override) with room for max_keys
 * keys per region. Returns 0, SLUICE_EINVAL (NULL argument, max_keys 0),
 * SLUICE_ETOOBIG (the size overflows, or one limit's cells are too large).
 */
SLUICE_API int sluice_shm_zone_size(const struct sluice_policy *policy, uint64_t max_keys,
				    size_t *bytes);

/* The keys per region a zone of `bytes` holds for `policy` (0 when too
 * small for one). Returns 0 or SLUICE_EINVAL. */
SLUICE_API int sluice_shm_zone_capacity(const struct sluice_policy *policy, size_t bytes,
					uint64_t *max_keys);

/*
 * Prepare [base, base + bytes) for `policy`'s engine, once, before any
 * process creates an engine on it. If the zone already holds exactly this
 * policy's layout (the same bindings in the same order, this size),
 * nothing is written and processes may keep using it meanwhile (an nginx
 * reload with an unchanged policy); otherwise no engine or limiter may
 * run on the zone during the call. If the range holds a zone of this
 * format and size, its hash secret and each region whose binding is
 * unchanged (the same limit numbers, kind and name, as a reload keeps
 * them: docs/policy.md) keep their state; a changed or new binding's
 * region starts empty. Anything
 * else (zeros, another format, another size) is formatted with a fresh
 * random secret, unless it carries this format's magic with another
 * version or size: then SLUICE_ECORRUPT and info->message say why
 * (SLUICE_SHM_INIT_RESET formats it anyway).
 * Returns 0, SLUICE_EINVAL (NULL, unaligned base, unknown flag),
 * SLUICE_EFULL (too small for one key per region; info->bytes the least
 * size), SLUICE_ECORRUPT, SLUICE_ENOMEM (no memory for the copy a kept
 * zone's state is carried over from), SLUICE_EUNSUPPORTED (getrandom
 * failed).
 */
SLUICE_API int sluice_shm_zone_init(void *base, size_t bytes, const struct sluice_policy *policy,
				    uint32_t flags, struct sluice_shm_info *info);

/*
 * An engine (sluice/engine.h: check, release, usage, stats, sweep, the same
 * decisions) whose every binding's state lives in the zone. Each process
 * makes its own over the same zone, initialized for this policy. Takes
 * ownership of policy on success, like sluice_engine_create(). opts as for
 * sluice_engine_create(), except max_keys (the zone's capacity rules;
 * nonzero: EINVAL) and state_path (EUNSUPPORTED: the zone is the state).
 * Returns 0, SLUICE_EINVAL, SLUICE_ECORRUPT (no zone, or one initialized
 * for another policy: sluice_shm_zone_init() first), SLUICE_ENOMEM,
 * SLUICE_EUNSUPPORTED. Reload opens the new policy's bindings on the
 * zone's regions: one the zone has none for fails the reload with
 * SLUICE_ECORRUPT (initialize the zone for the new policy first, with no
 * engine running: unchanged bindings keep their state).
 */
SLUICE_API int sluice_shm_engine_create(struct sluice_engine **out, struct sluice_policy *policy,
					void *base, size_t bytes,
					const struct sluice_engine_options *opts);

/* ---- a bare keyed limiter on shm ---- */

/* Bytes of a limiter zone for limits[0 .. n) (1 to SLUICE_LIMITER_MAX_LIMITS,
 * all-or-nothing per key as in process) with room for max_keys keys.
 * Returns 0, SLUICE_EINVAL (two slots limits, among others),
 * SLUICE_ETOOBIG (n above the maximum, the cells of a key too large, the
 * size overflows). */
SLUICE_API int sluice_shm_limiter_zone_size(const struct sluice_limit *limits, size_t n,
					    uint64_t max_keys, size_t *bytes);

/* sluice_shm_zone_init() for a bare limiter of limits[0 .. n): keeps the
 * state of a zone made for the same limits, else formats it. Returns as
 * sluice_shm_zone_init(). */
SLUICE_API int sluice_shm_limiter_zone_init(void *base, size_t bytes, const struct sluice_limit *limits,
					    size_t n, uint32_t flags, struct sluice_shm_info *info);

/*
 * A keyed limiter (sluice/limiter.h: admit, acquire, release, peek,
 * admit_batch, sweep, stats, maintenance) over a zone initialized by
 * sluice_shm_limiter_zone_init() for the same limits. opts: fail_mode and
 * flags as in process; max_keys, max_bytes, hash_secret, allocator hooks
 * and initial_buckets must be 0 (the zone fixes them: EINVAL). Returns 0,
 * SLUICE_EINVAL, SLUICE_ECORRUPT (no
 * zone, or one for other limits), SLUICE_ENOMEM. Thread- and process-safe as the
 * in-process limiter; destroy leaves the zone's state in place.
 */
SLUICE_API int sluice_shm_limiter_create(struct sluice_limiter **out, void *base, size_t bytes,
					 const struct sluice_limit *limits, size_t n,
					 const struct sluice_limiter_options *opts);

/* ---- mappings ---- */

/*
 * Map `path` MAP_SHARED read-write, `bytes` long (created 0600 if absent,
 * extended with posix_fallocate; an existing longer file is used up to
 * bytes), so that the state survives a restart of every process; a file
 * left by a crashed server is usable as it is. Returns 0 and *base, or
 * SLUICE_EINVAL, SLUICE_EIO (errno tells which call failed).
 */
SLUICE_API int sluice_shm_map_file(const char *path, size_t bytes, void **base);

/* An anonymous MAP_SHARED mapping of bytes (zeroed), shared with children
 * forked after it. Returns 0, SLUICE_EINVAL, SLUICE_ENOMEM. */
SLUICE_API int sluice_shm_map_anonymous(size_t bytes, void **base);

/* Unmap what sluice_shm_map_file()/sluice_shm_map_anonymous() mapped (no
 * engine or limiter of this process may still use it). Returns 0,
 * SLUICE_EINVAL, SLUICE_EIO. */
SLUICE_API int sluice_shm_unmap(void *base, size_t bytes);

#ifdef __cplusplus
}
#endif

#endif /* SLUICE_SHM_H */
