/*
 * engine_shm.c - the policy engine over a shared-memory zone: the engine's
 * in-process executor (src/engine/exec_local.c: the same planner, the same
 * all-or-nothing reserves and cancels) with every binding's keyed limiter
 * made on a region of the zone instead of in the heap (docs/shm.md,
 * "Engine").
 *
 * A region belongs to a binding by its identity: a hash of exactly what
 * makes a reload keep a binding (src/engine/engine.c, find_kept() and
 * find_kept_override(): limit name, tier, scopes, per-class, the limit's
 * numbers, and for an override its scope, key and expiry). The zone's
 * initializer enumerates the bindings of the policy the same way the
 * engine does (one per limit and tier in force, one per override), so a
 * process's engine finds its region for every binding it opens; a binding
 * the zone has none for fails the create (or reload) with SLUICE_ECORRUPT.
 */
#include <sluice/shm.h>

#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "engine/executor_internal.h"
#include "shm/zone_internal.h"

/* The identity of a binding, from its reload-identity fields. */
static uint64_t binding_identity(const char *name, const char *tier, uint32_t scope_mask, bool per_class,
				 bool is_override, uint32_t oscope, const uint8_t *okey, uint32_t okey_len,
				 uint64_t oexpires_ns, const struct sluice_limit *spec)
{
	XXH3_state_t st;
	memset(&st, 0, sizeof st); /* reset reads the seed field before setting it */
	unsigned char flags[2] = { per_class, is_override };
	uint64_t nums[4] = { scope_mask, oscope, okey_len, oexpires_ns };

	XXH3_64bits_reset_withSeed(&st, UINT64_C(0x53484d42)); /* "SHMB" */
	XXH3_64bits_update(&st, name, strnlen(name, SLUICE_POLICY_MAX_NAME) + 1);
	XXH3_64bits_update(&st, tier, strnlen(tier, SLUICE_POLICY_MAX_NAME) + 1);
	XXH3_64bits_update(&st, flags, sizeof flags);
	XXH3_64bits_update(&st, nums, sizeof nums);
	if (okey_len != 0)
		XXH3_64bits_update(&st, okey, okey_len);
	XXH3_64bits_update(&st, spec, sizeof *spec);
	return XXH3_64bits_digest(&st);
}

/* The bindings of policy, as state_build() makes them. */
struct bindings {
	uint32_t n;
	uint64_t *identity;
	struct sluice_limit *spec;
};

static int bindings_of(const struct sluice_policy *policy, struct bindings *out)
{
	const struct sluice_policy_spec *spec = sluice_policy_spec(policy);
	size_t cap = (size_t)spec->limit_count * (spec->tier_count + 1) + spec->override_count + 1;
	int rc = SLUICE_OK;

	out->n = 0;
	out->identity = calloc(cap, sizeof *out->identity);
	out->spec = calloc(cap, sizeof *out->spec);
	if (out->identity == NULL || out->spec == NULL)
		rc = SLUICE_ENOMEM;
	for (uint32_t i = 0; i < spec->limit_count && rc == SLUICE_OK; i++) {
		const struct sluice_policy_limit *pl = &spec->limits[i];
		for (int t = -1; t < (int)spec->tier_count && rc == SLUICE_OK; t++) {
			if (t >= 0 && !pl->tiered)
				break;
			uint64_t count, burst;
			struct sluice_limit *ls = &out->spec[out->n];
			rc = sluice_policy_limit_numbers(policy, i, t, &count, &burst);
			if (rc == SLUICE_OK)
				rc = sluice__engine_limit_spec(pl, count, burst, ls);
			if (rc != SLUICE_OK)
				break;
			const char *tname = t < 0 ? "" : spec->tiers[t].name;
			out->identity[out->n++] = binding_identity(pl->name, tname, pl->scope_mask, pl->per_class, false,
								   0, NULL, 0, 0, ls);
		}
	}
	for (uint32_t j = 0; j < spec->override_count && rc == SLUICE_OK; j++) {
		const struct sluice_policy_override *ov = &spec->overrides[j];
		const struct sluice_policy_limit *pl = &spec->limits[ov->limit];
		struct sluice_limit *ls = &out->spec[out->n];
		uint64_t burst = pl->kind == SLUICE_POLICY_KIND_GCRA ? ov->burst : ov->count;
		burst = burst != 0 ? burst : ov->count;
		rc = sluice__engine_limit_spec(pl, ov->count, burst, ls);
		if (rc == SLUICE_OK)
			out->identity[out->n++] = binding_identity(pl->name, "", pl->scope_mask, pl->per_class, true,
								   ov->scope, ov->key, ov->key_len, ov->expires_at_ns, ls);
	}
	if (rc != SLUICE_OK) {
		free(out->identity);
		free(out->spec);
	}
	return rc;
}

static int engine_spec(const struct sluice_policy *policy, struct bindings *b, struct shm_spec *s)
{
	if (policy == NULL)
		return SLUICE_EINVAL;
	int rc = bindings_of(policy, b);
	if (rc != SLUICE_OK)
		return rc;
	/* Every binding's limit must be one a zone holds (cells that fit). */
	for (uint32_t i = 0; i < b->n && rc == SLUICE_OK; i++) {
		struct shm_cells c;
		rc = sluice__shm_cells(&b->spec[i], 1, &c);
	}
	if (rc != SLUICE_OK) {
		free(b->identity);
		free(b->spec);
		return rc;
	}
	s->kind = SHM_KIND_ENGINE;
	s->nregions = b->n;
	s->per_region = 1;
	s->identity = b->identity;
	s->spec = b->spec;
	return SLUICE_OK;
}

int sluice_shm_zone_size(const struct sluice_policy *policy, uint64_t max_keys, size_t *bytes)
{
	struct bindings b;
	struct shm_spec s;

	if (bytes == NULL || max_keys == 0)
		return SLUICE_EINVAL;
	int rc = engine_spec(policy, &b, &s);
	if (rc != SLUICE_OK)
		return rc;
	uint64_t n = sluice__shm_zone_bytes(&s, max_keys);
	free(b.identity);
	free(b.spec);
	if (n == 0 || n > SIZE_MAX)
		return SLUICE_ETOOBIG;
	*bytes = (size_t)n;
	return SLUICE_OK;
}

int sluice_shm_zone_capacity(const struct sluice_policy *policy, size_t bytes, uint64_t *max_keys)
{
	struct bindings b;
	struct shm_spec s;

	if (max_keys == NULL)
		return SLUICE_EINVAL;
	int rc = engine_spec(policy, &b, &s);
	if (rc != SLUICE_OK)
		return rc;
	*max_keys = sluice__shm_zone_keys(&s, bytes);
	free(b.identity);
	free(b.spec);
	return SLUICE_OK;
}

int sluice_shm_zone_init(void *base, size_t bytes, const struct sluice_policy *policy, uint32_t flags,
			 struct sluice_shm_info *info)
{
	struct bindings b;
	struct shm_spec s;

	int rc = engine_spec(policy, &b, &s);
	if (rc != SLUICE_OK)
		return rc;
	rc = sluice__shm_zone_init(base, bytes, &s, flags, info);
	free(b.identity);
	free(b.spec);
	return rc;
}

/* The factory exec_local calls per binding. */
struct zone_ref {
	void *base;
};

static int make_limiter(void *user, const struct sluice__binding *b, const struct sluice_limiter_options *o,
			struct sluice_limiter **out)
{
	struct zone_ref *z = user;
	uint64_t id = binding_identity(b->name, b->tier, b->scope_mask, b->per_class, b->is_override, b->oscope,
				       b->okey, b->okey_len, b->oexpires_ns, &b->spec);
	struct shm_region *r = sluice__shm_region_find(z->base, id);
	if (r == NULL)
		return SLUICE_ECORRUPT; /* the zone was initialized for another policy */
	return sluice__shm_limiter_open(out, z->base, r, o->fail_mode);
}

int sluice_shm_engine_create(struct sluice_engine **out, struct sluice_policy *policy, void *base, size_t bytes,
			     const struct sluice_engine_options *opts)
{
	const struct shm_header *h;
	char msg[160];

	if (out == NULL)
		return SLUICE_EINVAL;
	*out = NULL;
	if (policy == NULL || (opts != NULL && (opts->size != sizeof *opts || opts->max_keys != 0)))
		return SLUICE_EINVAL;
	if (opts != NULL && (opts->state_path != NULL || opts->snapshot_interval_ns != 0))
		return SLUICE_EUNSUPPORTED;
	int rc = sluice__shm_zone_open(base, bytes, SHM_KIND_ENGINE, &h, msg);
	if (rc != SLUICE_OK)
		return rc;
	struct zone_ref *z = malloc(sizeof *z);
	if (z == NULL)
		return SLUICE_ENOMEM;
	z->base = base;
	void *ex;
	rc = sluice__exec_local_create_with(&ex, 0, opts != NULL ? opts->flags : 0, make_limiter, z, free);
	if (rc != SLUICE_OK) {
		free(z);
		return rc;
	}
	rc = sluice__engine_create_exec(out, policy, opts, &sluice__exec_local_ops, ex);
	if (rc != SLUICE_OK)
		sluice__exec_local_ops.destroy(ex);
	return rc;
}
