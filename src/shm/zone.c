/*
 * zone.c - shared-memory zones: their size, their one-time initialization
 * (keep a compatible zone's state, format anything else), the checks a
 * process makes before using one, and the mappings (docs/shm.md,
 * "Layout", "Zone life").
 *
 * A zone that already holds exactly what init would lay out (same format,
 * size, secret kept, the same regions in the same order) is left as it is:
 * nothing is written, so processes may go on using it (an nginx reload
 * whose policy did not change, while the old workers drain). Any other
 * initialization runs with no process using the zone (the creator's
 * contract: nginx's master before fork(), the first opener of a file). It
 * clears the magic first and writes it last, so a creator that dies half-way
 * leaves a zone without magic, which the next init formats and no process
 * opens. Keeping state: when the range holds a zone of this format, kind
 * and size, its secret is kept and each new region whose identity (the
 * binding: engine_shm.c) matches an old one gets the old region's live
 * entries, moved by rehashing the stored keys (long keys are stored as
 * digests, whose hash is part of the digest), so the layout may change
 * (regions added or removed, capacity per region) without losing an
 * unchanged limit's state. Entries that no longer fit their window are
 * dropped (they restart full: the zone was resized smaller).
 */
#include <sluice/shm.h>

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "shm/zone_internal.h"

static uint64_t header_bytes(uint32_t nregions)
{
	return shm_line(sizeof(struct shm_header) + (uint64_t)nregions * sizeof(struct shm_region));
}

/* Lay out s with `keys` keys per region into regs (may be NULL: size
 * only). Returns the total bytes, 0 on overflow or a bad limit. */
static uint64_t layout(const struct shm_spec *s, uint64_t keys, struct shm_region *regs)
{
	if (keys == 0 || keys > (UINT64_C(1) << 40))
		return 0;
	uint64_t off = header_bytes(s->nregions), nslots = shm_slots_for(keys);
	for (uint32_t i = 0; i < s->nregions; i++) {
		struct shm_cells c;
		const struct sluice_limit *limits = &s->spec[(size_t)i * s->per_region];
		if (sluice__shm_cells(limits, s->per_region, &c) != SLUICE_OK)
			return 0;
		uint32_t body = c.body_bytes;
		if (regs != NULL) {
			struct shm_region *r = &regs[i];
			memset(r, 0, sizeof *r);
			r->identity = s->identity[i];
			r->nlimits = s->per_region;
			memcpy(r->spec, limits, sizeof *limits * s->per_region);
			r->nslots = nslots;
			r->body_bytes = body;
			r->ncells = c.ncells;
			r->states_off = off;
			r->bodies_off = off + shm_line(nslots * 8);
			r->stats_off = r->bodies_off + shm_line(nslots * body);
		}
		off += shm_region_bytes(nslots, body);
	}
	return off;
}

uint64_t sluice__shm_zone_bytes(const struct shm_spec *s, uint64_t keys)
{
	return layout(s, keys, NULL);
}

uint64_t sluice__shm_zone_keys(const struct shm_spec *s, uint64_t bytes)
{
	uint64_t lo = 0, hi = UINT64_C(1) << 40;
	/* The largest keys with layout(keys) <= bytes: layout grows with keys. */
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo + 1) / 2;
		uint64_t need = layout(s, mid, NULL);
		if (need != 0 && need <= bytes)
			lo = mid;
		else
			hi = mid - 1;
	}
	return lo;
}

static int fail(struct sluice_shm_info *info, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int fail(struct sluice_shm_info *info, int rc, const char *fmt, ...)
{
	if (info != NULL) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(info->message, sizeof info->message, fmt, ap);
		va_end(ap);
	}
	return rc;
}

/* Why the zone at h is not usable as a zone of `bytes` and `kind`
 * ("" if it is). */
static int check_header(const struct shm_header *h, size_t bytes, uint32_t kind, char *msg, size_t cap)
{
	if (memcmp(h->magic, SHM_MAGIC, 8) != 0) {
		snprintf(msg, cap, "no sluice zone here (no magic): initialize it first");
		return SLUICE_ECORRUPT;
	}
	if (h->version != SLUICE_SHM_FORMAT_VERSION) {
		snprintf(msg, cap, "zone format version %u, this build reads %u", h->version,
			 SLUICE_SHM_FORMAT_VERSION);
		return SLUICE_ECORRUPT;
	}
	if (h->zone_bytes != bytes) {
		snprintf(msg, cap, "zone made for %llu bytes, mapped with %zu", (unsigned long long)h->zone_bytes,
			 bytes);
		return SLUICE_ECORRUPT;
	}
	if (h->kind != kind || h->nregions > (bytes - sizeof *h) / sizeof(struct shm_region) ||
	    h->header_bytes != header_bytes(h->nregions)) {
		snprintf(msg, cap, "zone of another kind (%s)", h->kind == SHM_KIND_ENGINE ? "engine" : "limiter");
		return SLUICE_ECORRUPT;
	}
	/* Every region as init lays it out, inside the zone: a damaged file
	 * is refused, never followed out of the mapping. */
	const struct shm_region *regs = (const struct shm_region *)(h + 1);
	uint64_t end = h->header_bytes;
	for (uint32_t i = 0; i < h->nregions; i++) {
		const struct shm_region *r = &regs[i];
		struct shm_cells c;
		uint32_t body = 0;
		if (r->nlimits == 0 || r->nlimits > SLUICE_LIMITER_MAX_LIMITS ||
		    sluice__shm_cells(r->spec, r->nlimits, &c) != SLUICE_OK || r->ncells != c.ncells ||
		    r->body_bytes != (body = c.body_bytes) || r->nslots < SHM_WINDOW || r->nslots > (UINT64_C(1) << 41) || r->states_off != end ||
		    r->bodies_off != end + shm_line(r->nslots * 8) ||
		    r->stats_off != r->bodies_off + shm_line(r->nslots * body) ||
		    (end += shm_region_bytes(r->nslots, body)) > bytes) {
			snprintf(msg, cap, "zone region %u damaged (layout outside the zone or not of its limit)", i);
			return SLUICE_ECORRUPT;
		}
	}
	msg[0] = '\0';
	return SLUICE_OK;
}

int sluice__shm_zone_open(void *base, size_t bytes, uint32_t kind, const struct shm_header **hdr, char *msg)
{
	if (base == NULL || ((uintptr_t)base & (SLUICE_SHM_ALIGN - 1)) != 0 || bytes < sizeof(struct shm_header)) {
		snprintf(msg, 160, "zone base NULL, unaligned or too small");
		return SLUICE_EINVAL;
	}
	const struct shm_header *h = base;
	int rc = check_header(h, bytes, kind, msg, 160);
	if (rc == SLUICE_OK)
		*hdr = h;
	return rc;
}

struct shm_region *sluice__shm_region_find(void *base, uint64_t identity)
{
	struct shm_header *h = base;
	struct shm_region *regs = (struct shm_region *)(h + 1);

	for (uint32_t i = 0; i < h->nregions; i++)
		if (regs[i].identity == identity)
			return &regs[i];
	return NULL;
}

/* The zone at h (a valid header) is exactly what init would lay out for s
 * with `keys` keys per region: the same regions in the same order. */
static bool same_layout(const struct shm_header *h, const struct shm_spec *s, uint64_t keys)
{
	if (h->nregions != s->nregions || h->capacity != keys)
		return false;
	struct shm_region *want = malloc(sizeof *want * (s->nregions + 1));
	if (want == NULL)
		return false;
	layout(s, keys, want);
	const struct shm_region *regs = (const struct shm_region *)(h + 1);
	bool same = true;
	for (uint32_t i = 0; i < s->nregions && same; i++) {
		const struct shm_region *r = &regs[i], *w = &want[i];
		same = r->identity == w->identity && r->nlimits == w->nlimits &&
		       memcmp(r->spec, w->spec, sizeof w->spec) == 0 && r->states_off == w->states_off &&
		       r->bodies_off == w->bodies_off && r->stats_off == w->stats_off && r->nslots == w->nslots &&
		       r->body_bytes == w->body_bytes && r->ncells == w->ncells;
	}
	free(want);
	return same;
}

int sluice__shm_zone_init(void *base, size_t bytes, const struct shm_spec *s, uint32_t flags,
			  struct sluice_shm_info *info)
{
	if (info != NULL) {
		if (info->size != sizeof *info)
			return SLUICE_EINVAL;
		memset(info, 0, sizeof *info);
		info->size = sizeof *info;
	}
	if (base == NULL || ((uintptr_t)base & (SLUICE_SHM_ALIGN - 1)) != 0 || (flags & ~SLUICE_SHM_INIT_RESET) != 0)
		return fail(info, SLUICE_EINVAL, "zone base NULL or unaligned, or an unknown flag");
	uint64_t keys = sluice__shm_zone_keys(s, bytes);
	if (keys == 0) {
		if (info != NULL)
			info->bytes = sluice__shm_zone_bytes(s, 1);
		return fail(info, SLUICE_EFULL, "zone of %zu bytes holds no key per region (%llu needed for one)", bytes,
			    (unsigned long long)sluice__shm_zone_bytes(s, 1));
	}
	struct shm_header *h = base;
	unsigned char *old = NULL;
	if (!(flags & SLUICE_SHM_INIT_RESET) && memcmp(h->magic, SHM_MAGIC, 8) == 0) {
		char msg[160];
		int rc = check_header(h, bytes, s->kind, msg, sizeof msg);
		if (rc != SLUICE_OK && (h->version != SLUICE_SHM_FORMAT_VERSION || h->zone_bytes != bytes))
			return fail(info, rc, "%s (SLUICE_SHM_INIT_RESET formats it anyway)", msg);
		if (rc == SLUICE_OK && same_layout(h, s, keys)) {
			/* The zone is already this one: nothing to write, so
			 * processes still using it (an nginx reload's old
			 * workers) go on undisturbed. */
			if (info != NULL) {
				info->regions = info->kept = s->nregions;
				info->capacity = keys;
				info->bytes = layout(s, keys, NULL);
			}
			return SLUICE_OK;
		}
		if (rc == SLUICE_OK) {
			/* A compatible zone: keep a copy to carry regions over. */
			old = malloc(bytes);
			if (old == NULL)
				return fail(info, SLUICE_ENOMEM, "no memory to carry the zone's state over");
			memcpy(old, base, bytes);
		}
	}
	struct shm_region *regs = (struct shm_region *)(h + 1);
	uint64_t total = layout(s, keys, NULL);
	unsigned char secret[SHM_SECRET_BYTES];
	if (old != NULL) {
		memcpy(secret, ((const struct shm_header *)old)->secret, sizeof secret);
	} else {
		size_t got = 0;
		while (got < sizeof secret) {
			ssize_t n = getrandom(secret + got, sizeof secret - got, 0);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return fail(info, SLUICE_EUNSUPPORTED, "getrandom failed for the hash secret");
			got += (size_t)n;
		}
	}
	memset(h->magic, 0, sizeof h->magic); /* not a zone until fully written */
	memset((unsigned char *)base + sizeof h->magic, 0, total - sizeof h->magic);
	h->version = SLUICE_SHM_FORMAT_VERSION;
	h->kind = s->kind;
	h->zone_bytes = bytes;
	h->nregions = s->nregions;
	h->header_bytes = (uint32_t)header_bytes(s->nregions);
	h->capacity = keys;
	memcpy(h->secret, secret, sizeof secret);
	layout(s, keys, regs);
	uint32_t kept = 0;
	if (old != NULL) {
		const struct shm_header *oh = (const struct shm_header *)old;
		const struct shm_region *oregs = (const struct shm_region *)(oh + 1);
		for (uint32_t i = 0; i < s->nregions; i++)
			for (uint32_t j = 0; j < oh->nregions; j++)
				if (oregs[j].identity == regs[i].identity && oregs[j].nlimits == regs[i].nlimits &&
				    memcmp(oregs[j].spec, regs[i].spec, sizeof regs[i].spec) == 0) {
					sluice__shm_region_rehash(base, &regs[i], secret, old, &oregs[j]);
					kept++;
					break;
				}
		free(old);
	}
	/* release: the zone is written before its magic; any process that
	 * maps it later synchronizes through its own mapping's creation
	 * (fork(), or open/mmap after our return). */
	atomic_thread_fence(memory_order_release); /* release: why above */
	memcpy(h->magic, SHM_MAGIC, 8);
	if (info != NULL) {
		info->regions = s->nregions;
		info->kept = kept;
		info->reset = s->nregions - kept;
		info->formatted = old == NULL;
		info->capacity = keys;
		info->bytes = total;
	}
	return SLUICE_OK;
}

/* ---- a bare limiter ---- */

uint64_t sluice__shm_limit_identity(const struct sluice_limit *limits, size_t n)
{
	return XXH3_64bits_withSeed(limits, sizeof *limits * n, UINT64_C(0x5348)); /* "SH" */
}

static int limiter_spec(const struct sluice_limit *limits, size_t n, struct shm_spec *s, uint64_t *id)
{
	struct shm_cells c;
	if (limits == NULL || n == 0)
		return SLUICE_EINVAL;
	if (n > SLUICE_LIMITER_MAX_LIMITS)
		return SLUICE_ETOOBIG;
	int rc = sluice__shm_cells(limits, (uint32_t)n, &c);
	if (rc != SLUICE_OK)
		return rc;
	*id = sluice__shm_limit_identity(limits, n);
	s->kind = SHM_KIND_LIMITER;
	s->nregions = 1;
	s->per_region = (uint32_t)n;
	s->identity = id;
	s->spec = limits;
	return SLUICE_OK;
}

int sluice_shm_limiter_zone_size(const struct sluice_limit *limits, size_t n, uint64_t max_keys, size_t *bytes)
{
	struct shm_spec s;
	uint64_t id;
	if (bytes == NULL || max_keys == 0)
		return SLUICE_EINVAL;
	int rc = limiter_spec(limits, n, &s, &id);
	if (rc != SLUICE_OK)
		return rc;
	uint64_t b = sluice__shm_zone_bytes(&s, max_keys);
	if (b == 0 || b > SIZE_MAX)
		return SLUICE_ETOOBIG;
	*bytes = (size_t)b;
	return SLUICE_OK;
}

int sluice_shm_limiter_zone_init(void *base, size_t bytes, const struct sluice_limit *limits, size_t n,
				 uint32_t flags, struct sluice_shm_info *info)
{
	struct shm_spec s;
	uint64_t id;
	int rc = limiter_spec(limits, n, &s, &id);
	if (rc != SLUICE_OK)
		return fail(info, rc, "limits: 1 to %d valid limits whose cells fit a zone's entry",
			    SLUICE_LIMITER_MAX_LIMITS);
	return sluice__shm_zone_init(base, bytes, &s, flags, info);
}

int sluice_shm_limiter_create(struct sluice_limiter **out, void *base, size_t bytes,
			      const struct sluice_limit *limits, size_t n, const struct sluice_limiter_options *opts)
{
	struct shm_spec s;
	uint64_t id;
	const struct shm_header *h;
	char msg[160];

	if (out == NULL)
		return SLUICE_EINVAL;
	*out = NULL;
	int rc = limiter_spec(limits, n, &s, &id);
	if (rc != SLUICE_OK)
		return rc;
	uint32_t fail_mode = SLUICE_FAIL_OPEN;
	if (opts != NULL) {
		if (opts->size != sizeof *opts || opts->max_keys != 0 || opts->max_bytes != 0 ||
		    opts->hash_secret != NULL || opts->hash_secret_len != 0 || opts->malloc_fn != NULL ||
		    opts->free_fn != NULL || opts->initial_buckets != 0 ||
		    (opts->flags & ~SLUICE_LIMITER_CALLER_REGISTERS_RCU) != 0 ||
		    (opts->fail_mode != SLUICE_FAIL_OPEN && opts->fail_mode != SLUICE_FAIL_CLOSED))
			return SLUICE_EINVAL;
		fail_mode = opts->fail_mode;
	}
	rc = sluice__shm_zone_open(base, bytes, SHM_KIND_LIMITER, &h, msg);
	if (rc != SLUICE_OK)
		return rc;
	struct shm_region *r = sluice__shm_region_find(base, id);
	if (r == NULL)
		return SLUICE_ECORRUPT; /* a zone made for other limits */
	return sluice__shm_limiter_open(out, base, r, fail_mode);
}

/* ---- mappings ---- */

int sluice_shm_map_file(const char *path, size_t bytes, void **base)
{
	if (path == NULL || base == NULL || bytes == 0)
		return SLUICE_EINVAL;
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return SLUICE_EIO;
	struct stat st;
	if (fstat(fd, &st) != 0)
		goto fail;
	if ((uint64_t)st.st_size < bytes) {
		int e = posix_fallocate(fd, 0, (off_t)bytes);
		if (e == EOPNOTSUPP || e == EINVAL) {
			if (ftruncate(fd, (off_t)bytes) != 0)
				goto fail;
		} else if (e != 0) {
			errno = e;
			goto fail;
		}
	}
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		goto fail;
	close(fd);
	*base = p;
	return SLUICE_OK;
fail:;
	int e = errno;
	close(fd);
	errno = e;
	return SLUICE_EIO;
}

int sluice_shm_map_anonymous(size_t bytes, void **base)
{
	if (base == NULL || bytes == 0)
		return SLUICE_EINVAL;
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return SLUICE_ENOMEM;
	*base = p;
	return SLUICE_OK;
}

int sluice_shm_unmap(void *base, size_t bytes)
{
	if (base == NULL || bytes == 0)
		return SLUICE_EINVAL;
	return munmap(base, bytes) == 0 ? SLUICE_OK : SLUICE_EIO;
}
