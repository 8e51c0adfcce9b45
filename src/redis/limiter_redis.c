/*
 * limiter_redis.c - the keyed limiter on Redis: a store behind the
 * limiter's operations table (limiter/backend_internal.h), made by
 * sluice_redis_limiter_create() (sluice/redis.h, "Limiter on Redis";
 * docs/redis.md, "Limiter and engine on Redis").
 *
 * No local table: the key's state is one Redis hash (the backend's key_prefix
 * + key) holding one field per limit, evaluated by the backend's script, so
 * every process of a fleet that shares the server shares the state. A call is
 * sluice_redis_admit() with the limiter's whole policy as one scope: the
 * backend decides every limit all-or-nothing, atomically on the server, with
 * the limiter's composition rule (src/limiter/decide.c: first denier
 * governs; else least remaining, ties to the shorter reset), so the decisions are the in-process limiter's
 * (tests/test_limiter_redis.c replays the same sequences through both).
 *
 * Handles are created fail-open; the limiter's own fail mode is applied to
 * degraded answers here (sluice__redis_fail_mode), so there is one fail mode,
 * the limiter's. Limits are passed through untouched: the code knows no
 * kind, the backend validates them (a peek at create finds a kind it does
 * not evaluate before the limiter is handed out).
 */
#include "redis/redis_backend_internal.h"

#include <stdlib.h>
#include <string.h>

#include "limiter/backend_internal.h"
#include "limiter/limit_kind_internal.h"

/* Requests per pipelined round trip of admit_batch (stack scratch). */
#define BATCH_CHUNK 128

struct sluice__rlimiter {
	struct sluice__rpool *pool;
	uint32_t fail_mode;
	uint32_t nlimits;
	bool has_slots; /* a SLUICE_LIMIT_SLOTS limit: acquire/release */
	struct sluice_limit limits[SLUICE_LIMITER_MAX_LIMITS];
};

static int check_key(const void *key, size_t key_len)
{
	return key == NULL || key_len > SLUICE_LIMITER_MAX_KEY ? SLUICE_EKEY : SLUICE_OK;
}

static void rlimiter_destroy(void *be);

static int rlimiter_create(struct sluice__rlimiter **out, const struct sluice_limit *limits,
			   size_t nlimits, const struct sluice_limiter_options *o,
			   const struct sluice_redis_limiter_options *ro)
{
	*out = NULL;
	/* Options of the local table mean nothing here: refuse them rather
	 * than let a caller believe they bound anything. */
	if (o->max_keys != 0 || o->max_bytes != 0 || o->hash_secret != NULL ||
	    o->hash_secret_len != 0 || o->malloc_fn != NULL || o->free_fn != NULL ||
	    o->alloc_user != NULL || o->initial_buckets != 0 ||
	    o->fail_mode > SLUICE_FAIL_CLOSED || (o->flags & ~SLUICE_LIMITER_CALLER_REGISTERS_RCU) != 0 ||
	    ro->connections > SLUICE_REDIS_MAX_CONNECTIONS || ro->reserved_ != 0 || ro->tag_scope != NULL)
		return SLUICE_EINVAL;
	if (ro->redis->size < sizeof(struct sluice_redis_options) || ro->redis->fail_mode != 0)
		return SLUICE_EINVAL;
	size_t nslots = 0;
	for (size_t i = 0; i < nlimits; i++) {
		if (limits[i].kind == SLUICE__LIMIT_COMMIT || sluice__limit_ops_of(limits[i].kind) == NULL ||
		    sluice__limit_validate(&limits[i]) != SLUICE_OK)
			return SLUICE_EINVAL;
		nslots += limits[i].kind == SLUICE_LIMIT_SLOTS;
	}
	if (nslots > 1)
		return SLUICE_EINVAL;

	struct sluice__rlimiter *rl = calloc(1, sizeof *rl);
	if (rl == NULL)
		return SLUICE_ENOMEM;
	rl->fail_mode = o->fail_mode;
	rl->has_slots = nslots != 0;
	rl->nlimits = (uint32_t)nlimits;
	memcpy(rl->limits, limits, nlimits * sizeof *limits);
	int rc = sluice__rpool_create(&rl->pool, ro->redis, ro->connections != 0 ? ro->connections : 4);
	if (rc != SLUICE_OK) {
		free(rl);
		return rc;
	}
	/* Does the backend evaluate these limits? A read-only peek validates
	 * them before anything is sent (an unknown kind is its EINVAL, a deep
	 * bucket its ERANGE) and, if they pass, reads one key and creates
	 * nothing. A server that is down answers by the fail mode: 0. */
	struct sluice_redis *r;
	struct sluice_decision d;
	uint32_t c = sluice__rpool_get_wait(rl->pool, &r);
	rc = sluice_redis_admit(r, "", 0, rl->limits, nlimits, 0, 0, &d);
	sluice__rpool_put(rl->pool, c);
	if (rc == SLUICE_EINVAL)
		rc = SLUICE_EUNSUPPORTED;
	if (rc != SLUICE_OK) {
		rlimiter_destroy(rl);
		return rc;
	}
	*out = rl;
	return SLUICE_OK;
}

static void rlimiter_destroy(void *be)
{
	struct sluice__rlimiter *rl = be;
	if (rl == NULL)
		return;
	sluice__rpool_destroy(rl->pool);
	free(rl);
}

static int rlimiter_admit(void *be, const void *key, size_t key_len,
			   uint64_t cost, uint64_t now_ns, struct sluice_decision *out)
{
	struct sluice__rlimiter *rl = be;
	if (out == NULL)
		return SLUICE_EINVAL;
	int rc = check_key(key, key_len);
	if (rc != SLUICE_OK)
		return rc;
	struct sluice_redis *r;
	uint32_t c = sluice__rpool_get(rl->pool, &r);
	if (c == SLUICE__RPOOL_BUSY) {
		/* No connection free within the timeout: the fail mode. */
		sluice__redis_fail_answer(rl->fail_mode, cost, &rl->limits[0], out);
		sluice__rpool_count_busy(rl->pool, cost > 0);
		return SLUICE_OK;
	}
	/* The limits were validated once, at create. */
	struct sluice_redis_scope sc = { key, key_len, rl->limits, rl->nlimits };
	rc = sluice__redis_admit_each(r, &sc, 1, cost, now_ns, out, NULL, NULL);
	if (rc == SLUICE_OK) {
		sluice__redis_fail_mode(rl->fail_mode, cost, out);
		sluice__rpool_count(rl->pool, c, cost, out);
	}
	sluice__rpool_put(rl->pool, c);
	if (rc == SLUICE_OK && cost == 0)
		out->allowed = true; /* a peek, as in process */
	return rc;
}

static int rlimiter_acquire(void *be, const void *key, size_t key_len,
			     uint64_t cost, uint64_t now_ns, struct sluice_decision *out,
			     sluice_slot_handle *handle)
{
	struct sluice__rlimiter *rl = be;
	if (out == NULL || handle == NULL)
		return SLUICE_EINVAL;
	*handle = SLUICE_SLOT_NONE;
	int rc = check_key(key, key_len);
	if (rc != SLUICE_OK)
		return rc;
	struct sluice_redis_scope sc = { key, key_len, rl->limits, rl->nlimits };
	struct sluice_redis *r;
	uint32_t c = sluice__rpool_get(rl->pool, &r);
	if (c == SLUICE__RPOOL_BUSY) {
		sluice__redis_fail_answer(rl->fail_mode, cost, &rl->limits[0], out);
		sluice__rpool_count_busy(rl->pool, cost > 0);
		return SLUICE_OK;
	}
	/* Accepted for any policy: without a slots limit the handle stays
	 * SLUICE_SLOT_NONE, as in process. */
	rc = sluice__redis_admit_each(r, &sc, 1, cost, now_ns, out, NULL, handle);
	if (rc == SLUICE_OK) {
		sluice__redis_fail_mode(rl->fail_mode, cost, out);
		sluice__rpool_count(rl->pool, c, cost, out);
	}
	sluice__rpool_put(rl->pool, c);
	if (rc == SLUICE_OK && cost == 0)
		out->allowed = true;
	return rc;
}

static int rlimiter_release(void *be, const void *key, size_t key_len,
			     sluice_slot_handle handle)
{
	struct sluice__rlimiter *rl = be;
	if (!rl->has_slots)
		return SLUICE_EINVAL; /* as in process: nothing to release */
	int rc = check_key(key, key_len);
	if (rc != SLUICE_OK)
		return rc;
	struct sluice_redis_scope sc = { key, key_len, rl->limits, rl->nlimits };
	struct sluice_redis *r;
	uint32_t c = sluice__rpool_get(rl->pool, &r);
	if (c == SLUICE__RPOOL_BUSY)
		return SLUICE_EBACKEND; /* the slot stays taken: retry, or its lease expires */
	rc = sluice_redis_release(r, &sc, handle);
	sluice__rpool_put(rl->pool, c);
	return rc;
}

static int rlimiter_admit_batch(void *be, const struct sluice_limiter_request *reqs,
				 size_t n, uint64_t now_ns, struct sluice_decision *out)
{
	struct sluice__rlimiter *rl = be;
	if (n > 0 && (reqs == NULL || out == NULL))
		return SLUICE_EINVAL;
	/* Every key first: on an error nothing is sent. */
	for (size_t i = 0; i < n; i++)
		if (check_key(reqs[i].key, reqs[i].key_len) != SLUICE_OK)
			return SLUICE_EKEY;
	struct sluice_redis_scope scopes[BATCH_CHUNK];
	struct sluice_redis_request rr[BATCH_CHUNK];
	for (size_t base = 0; base < n; base += BATCH_CHUNK) {
		size_t g = n - base < BATCH_CHUNK ? n - base : BATCH_CHUNK;
		for (size_t j = 0; j < g; j++) {
			scopes[j].key = reqs[base + j].key;
			scopes[j].key_len = reqs[base + j].key_len;
			scopes[j].limits = rl->limits;
			scopes[j].nlimits = rl->nlimits;
			rr[j].scopes = &scopes[j];
			rr[j].nscopes = 1;
			rr[j].cost = reqs[base + j].cost;
		}
		struct sluice_redis *r;
		uint32_t c = sluice__rpool_get(rl->pool, &r);
		if (c == SLUICE__RPOOL_BUSY) {
			/* No connection free within the timeout: the fail mode. */
			uint64_t counted = 0;
			for (size_t j = 0; j < g; j++) {
				sluice__redis_fail_answer(rl->fail_mode, rr[j].cost, &rl->limits[0],
							  &out[base + j]);
				counted += rr[j].cost > 0;
			}
			sluice__rpool_count_busy(rl->pool, counted);
			continue;
		}
		int rc = sluice_redis_admit_batch(r, rr, g, now_ns, out + base);
		if (rc == SLUICE_OK) {
			for (size_t j = 0; j < g; j++) {
				sluice__redis_fail_mode(rl->fail_mode, rr[j].cost, &out[base + j]);
				sluice__rpool_count(rl->pool, c, rr[j].cost, &out[base + j]);
				if (rr[j].cost == 0)
					out[base + j].allowed = true;
			}
		}
		sluice__rpool_put(rl->pool, c);
		/* Validated above, so an error here is the backend's own
		 * (ENOMEM): chunks already sent stand, as answered. */
		if (rc != SLUICE_OK)
			return rc;
	}
	return SLUICE_OK;
}

static int rlimiter_stats(const void *be, struct sluice_limiter_stats *out)
{
	const struct sluice__rlimiter *rl = be;
	if (out == NULL || out->size < sizeof *out)
		return SLUICE_EINVAL;
	sluice__rpool_counts(rl->pool, &out->admitted, &out->denied, &out->degraded);
	out->inserted = 0;
	out->reclaimed = 0;
	out->live_keys = 0;
	out->bytes = 0;
	return SLUICE_OK;
}

static const struct sluice__limiter_ops rlimiter_ops = {
	.admit = rlimiter_admit,
	.acquire = rlimiter_acquire,
	.release = rlimiter_release,
	.admit_batch = rlimiter_admit_batch,
	.sweep = NULL, /* Redis expires idle keys itself */
	.stats = rlimiter_stats,
	.destroy = rlimiter_destroy,
};

int sluice_redis_limiter_create(struct sluice_limiter **out, const struct sluice_limit *limits,
				size_t nlimits, const struct sluice_limiter_options *lopts,
				const struct sluice_redis_limiter_options *ropts)
{
	struct sluice_limiter_options o;

	if (out == NULL)
		return SLUICE_EINVAL;
	*out = NULL;
	if (limits == NULL || nlimits == 0 || ropts == NULL || ropts->size != sizeof *ropts ||
	    ropts->redis == NULL)
		return SLUICE_EINVAL;
	if (nlimits > SLUICE_LIMITER_MAX_LIMITS)
		return SLUICE_ETOOBIG;
	memset(&o, 0, sizeof o);
	if (lopts != NULL) {
		if (lopts->size != sizeof o)
			return SLUICE_EINVAL;
		o = *lopts;
	}
	struct sluice__rlimiter *rl;
	int rc = rlimiter_create(&rl, limits, nlimits, &o, ropts);
	if (rc != SLUICE_OK)
		return rc;
	return sluice__limiter_create_backend(out, &rlimiter_ops, rl);
}

int sluice__limiter_redis_stats(struct sluice_limiter *lim, struct sluice_redis_stats *out)
{
	struct sluice__rlimiter *rl = sluice__limiter_backend(lim, &rlimiter_ops);
	if (rl == NULL || out == NULL)
		return SLUICE_EINVAL;
	return sluice__rpool_backend_stats(rl->pool, out);
}
