/*
 * zone_internal.h - the layout of a shared-memory zone (docs/shm.md,
 * "Layout") and what its files share: zone.c formats and checks zones,
 * table.c is the table of one region, store.c its decisions and the
 * limiter made on it (store_internal.h between them), engine_shm.c maps engine
 * bindings to regions. Not installed; only src/shm/ includes it.
 *
 * Everything in a zone is found by offsets from its base, so processes may
 * map it at different addresses:
 *
 *   [header][region descriptors x nregions][region 0][region 1]...
 *   region: [state words: nslots x 8][bodies: nslots x body_bytes]
 *           [statistics: SHM_STRIPES cache lines]
 *   body:   [meta][key: 4 words][cell 0][cell 1]... (struct shm_cells)
 *
 * Every word a process reads while another may write it is accessed as an
 * _Atomic uint64_t; the rest (header, descriptors) is written by
 * sluice_shm_zone_init() before any process uses the zone.
 */
#ifndef SLUICE_SHM_ZONE_INTERNAL_H
#define SLUICE_SHM_ZONE_INTERNAL_H

#include <sluice/shm.h>

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "limiter/limit_kind_internal.h"

#define SHM_MAGIC "SLUICESH"
#define SHM_SECRET_BYTES 192 /* XXH3_SECRET_DEFAULT_SIZE */
#define SHM_KIND_ENGINE 1u
#define SHM_KIND_LIMITER 2u

/* A key lives in the SHM_WINDOW slots from its home slot on. */
#define SHM_WINDOW 32u
/* Statistics stripes per region (one cache line each). */
#define SHM_STRIPES 16u
/* Slots per key of capacity: nslots = capacity * 3 / 2 (a load of 2/3,
 * where a probe sequence of two windows overflows for about one key in 10^6
 * at full capacity: docs/shm.md, "Capacity"). */

/* The key words of a body: SLUICE_SHM_KEY_INLINE bytes. */
#define SHM_KEY_WORDS (SLUICE_SHM_KEY_INLINE / 8)
/* Cells of an entry: the limits plus, when none may be cell 0, COMMIT. */
#define SHM_NCELLS (SLUICE_LIMITER_MAX_LIMITS + 1)
/* Most bytes of an entry's cells: one-word cells and one slots cell, the
 * largest (16 + 16 per slot). */
#define SHM_CELLS_MAX (8 * SHM_NCELLS + 16 + 16 * SLUICE_SLOTS_MAX)
/* meta: key_len, | SHM_META_DIGEST when the key words hold its digest. */
#define SHM_META_DIGEST (UINT64_C(1) << 32)

struct shm_header {
	char magic[8];
	uint32_t version;
	uint32_t kind; /* SHM_KIND_* */
	uint64_t zone_bytes;
	uint32_t nregions;
	uint32_t header_bytes; /* header + descriptors, rounded to a line */
	uint64_t capacity;     /* keys per region */
	unsigned char secret[SHM_SECRET_BYTES];
};

/* One region: one limit binding's keyed store (a bare limiter's: its
 * whole policy). */
struct shm_region {
	uint64_t identity; /* the binding's identity (engine_shm.c) */
	uint32_t nlimits;
	uint32_t ncells; /* the limits, plus the COMMIT word when needed */
	struct sluice_limit spec[SLUICE_LIMITER_MAX_LIMITS]; /* caller's order */
	uint64_t states_off; /* from the zone's base */
	uint64_t bodies_off;
	uint64_t stats_off;
	uint64_t nslots;
	uint32_t body_bytes;
	uint32_t reserved_;
	_Atomic uint64_t cursor; /* the next slot a sweep visits */
};

/* An entry's cells, in the in-process limiter's order (src/limiter/
 * limiter.c, create): cell 0 the deepest GCRA limit, else the first window
 * that may be cell 0, else the COMMIT word; then the limits whose cancel
 * is exact, then the other GCRA limits, shallowest first. user_index[i]:
 * the caller's index of cell i (UINT32_MAX: COMMIT); check_order: the dry
 * run's and the governing rule's ranking (the caller's first GCRA limit,
 * then the caller's order). */
struct shm_cells {
	uint32_t ncells, ncheck, body_bytes;
	uint32_t cell_off[SHM_NCELLS]; /* within a body */
	uint32_t user_index[SHM_NCELLS];
	uint32_t check_order[SHM_NCELLS];
	struct sluice_limit limits[SHM_NCELLS];
};

enum { SHM_ST_ADMITTED, SHM_ST_DENIED, SHM_ST_DEGRADED, SHM_ST_INSERTED, SHM_ST_RECLAIMED, SHM_ST_COUNT };

struct shm_stripe {
	_Alignas(SLUICE_CACHELINE) _Atomic uint64_t c[SHM_ST_COUNT];
};

/* Round up to a cache line. */
static inline uint64_t shm_line(uint64_t n)
{
	return (n + SLUICE_CACHELINE - 1) & ~(uint64_t)(SLUICE_CACHELINE - 1);
}

/* The cells of one region's entries for limits[0 .. n). Returns 0,
 * SLUICE_EINVAL (n 0 or above the maximum, an unknown or invalid limit, two
 * slots limits), SLUICE_ETOOBIG (cells above SHM_CELLS_MAX bytes). */
int sluice__shm_cells(const struct sluice_limit *limits, uint32_t n, struct shm_cells *c);

/* Bytes of one region of nslots slots of body_bytes each. */
static inline uint64_t shm_region_bytes(uint64_t nslots, uint32_t body_bytes)
{
	return shm_line(nslots * 8) + shm_line(nslots * body_bytes) +
	       (uint64_t)SHM_STRIPES * sizeof(struct shm_stripe);
}

/* Slots for a capacity of `keys` keys (at least one window). */
static inline uint64_t shm_slots_for(uint64_t keys)
{
	uint64_t n = keys + (keys + 1) / 2; /* keys * 3/2 */
	return n < SHM_WINDOW ? SHM_WINDOW : n;
}

/* A zone's specification: what zone.c lays out for a caller. */
struct shm_spec {
	uint32_t kind;
	uint32_t nregions;
	uint32_t per_region;             /* limits per region */
	const uint64_t *identity;        /* [nregions] */
	const struct sluice_limit *spec; /* region i: [i * per_region ..) */
};

/* Bytes of a zone for `s` with `keys` keys per region (0 on overflow). */
uint64_t sluice__shm_zone_bytes(const struct shm_spec *s, uint64_t keys);
/* Keys per region that fit in `bytes` (0: not even one). */
uint64_t sluice__shm_zone_keys(const struct shm_spec *s, uint64_t bytes);
/* sluice_shm_zone_init() of spec s. */
int sluice__shm_zone_init(void *base, size_t bytes, const struct shm_spec *s, uint32_t flags,
			  struct sluice_shm_info *info);
/* The zone's header, if [base, base + bytes) holds a usable zone of `kind`
 * (SLUICE_ECORRUPT otherwise, with a message in msg[0 .. 160)). */
int sluice__shm_zone_open(void *base, size_t bytes, uint32_t kind, const struct shm_header **hdr,
			  char *msg);
/* The descriptor of the region of `identity`, or NULL. */
struct shm_region *sluice__shm_region_find(void *base, uint64_t identity);

/* A bare limiter's region identity: its limits' kinds and numbers. */
uint64_t sluice__shm_limit_identity(const struct sluice_limit *limits, size_t n);

/* A limiter (sluice/limiter.h) over region r of the zone at base.
 * fail_mode: enum sluice_fail_mode. Returns 0, SLUICE_ENOMEM, SLUICE_EINVAL. */
int sluice__shm_limiter_open(struct sluice_limiter **out, void *base, struct shm_region *r,
			     uint32_t fail_mode);

/* Move every live entry of the region at old_base/old (a copy of a zone
 * being re-laid-out) into the empty region r of base; entries that do not
 * fit are dropped. Returns the number moved. */
uint64_t sluice__shm_region_rehash(void *base, struct shm_region *r, const unsigned char *secret,
				   const void *old_base, const struct shm_region *old);

/* Tests: count the slots of a shm limiter's region by state (FREE,
 * CLAIMED, LIVE). SLUICE_EINVAL for another store. */
int sluice__shm_census(struct sluice_limiter *lim, uint64_t *free_slots, uint64_t *claimed, uint64_t *live);

#endif /* SLUICE_SHM_ZONE_INTERNAL_H */
