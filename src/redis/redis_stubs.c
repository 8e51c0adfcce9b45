/*
 * redis_stubs.c - the Redis backend in a build without hiredis
 * (SLUICE_WITH_REDIS off): every public function fails with
 * SLUICE_EUNSUPPORTED, so programs link and learn at run time.
 */
#include <sluice/redis.h>

#include "redis/redis_backend_internal.h"


#ifndef SLUICE_WITH_REDIS

int sluice_redis_create(struct sluice_redis **out, const struct sluice_redis_options *opts)
{
	(void)opts;
	if (out != NULL)
		*out = NULL;
	return SLUICE_EUNSUPPORTED;
}

void sluice_redis_destroy(struct sluice_redis *r)
{
	(void)r;
}

int sluice_redis_admit_scopes(struct sluice_redis *r, const struct sluice_redis_scope *scopes,
			      size_t nscopes, uint64_t cost, uint64_t now_ns, struct sluice_decision *out)
{
	(void)r, (void)scopes, (void)nscopes, (void)cost, (void)now_ns, (void)out;
	return SLUICE_EUNSUPPORTED;
}

int sluice_redis_admit(struct sluice_redis *r, const void *key, size_t key_len,
		       const struct sluice_limit *limits, size_t nlimits, uint64_t cost, uint64_t now_ns,
		       struct sluice_decision *out)
{
	(void)r, (void)key, (void)key_len, (void)limits, (void)nlimits, (void)cost, (void)now_ns,
		(void)out;
	return SLUICE_EUNSUPPORTED;
}

int sluice_redis_admit_batch(struct sluice_redis *r, const struct sluice_redis_request *reqs,
			     size_t n, uint64_t now_ns, struct sluice_decision *out)
{
	(void)r, (void)reqs, (void)n, (void)now_ns, (void)out;
	return SLUICE_EUNSUPPORTED;
}

int sluice_redis_acquire_scopes(struct sluice_redis *r, const struct sluice_redis_scope *scopes,
				size_t nscopes, uint64_t cost, uint64_t now_ns, struct sluice_decision *out,
				sluice_slot_handle *handles)
{
	(void)r, (void)scopes, (void)nscopes, (void)cost, (void)now_ns, (void)out, (void)handles;
	return SLUICE_EUNSUPPORTED;
}

int sluice_redis_release(struct sluice_redis *r, const struct sluice_redis_scope *scope,
			 sluice_slot_handle handle)
{
	(void)r, (void)scope, (void)handle;
	return SLUICE_EUNSUPPORTED;
}

int sluice_redis_stats(const struct sluice_redis *r, struct sluice_redis_stats *out)
{
	(void)r, (void)out;
	return SLUICE_EUNSUPPORTED;
}

int sluice__redis_admit_each(struct sluice_redis *r, const struct sluice_redis_scope *scopes, size_t nscopes,
			     uint64_t cost, uint64_t now_ns, struct sluice_decision *out,
			     struct sluice_decision *each, sluice_slot_handle *handles)
{
	(void)r, (void)scopes, (void)nscopes, (void)cost, (void)now_ns, (void)out, (void)each, (void)handles;
	return SLUICE_EUNSUPPORTED;
}

#endif /* !SLUICE_WITH_REDIS */
