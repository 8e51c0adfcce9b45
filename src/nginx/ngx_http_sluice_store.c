/*
 * ngx_http_sluice_store.c - the store of ngx_http_sluice_module: one
 * sluice shared-memory zone per sluice_zone (sluice/shm.h, docs/shm.md),
 * prepared by the master before it forks the workers, and the engine each
 * worker decides on over it (docs/nginx.md, "The store").
 *
 * Why this is exact across workers: every worker's engine
 * (sluice_shm_engine_create) keeps every binding's per-key state in the
 * same mapping, which the workers inherit from the master by fork(); each
 * admission is one atomic operation on the key's cell in that mapping, as
 * in process, so N workers admit what one would.
 *
 * The mapping: anonymous MAP_SHARED memory (sluice_shm_map_anonymous), or
 * with state=FILE the file itself (sluice_shm_map_file), so that a restart
 * of nginx finds every limit's state in it. nginx's own shared zone of the
 * same name is small: it carries the key of the hash of over-long
 * identities, and its init callback is the moment (in the master, after
 * the configuration is read, before the workers are forked, with the
 * previous configuration's zone at hand on a reload) the mapping is made.
 *
 * Reload. sluice_shm_zone_init() rewrites a zone in place, so it must not
 * run on a mapping the old workers still use. A reload whose policy text,
 * size and state file are unchanged keeps the mapping as it is (the new
 * workers share it with the old ones: nothing is lost, held slots
 * included). A reload that changed any of them prepares a new mapping:
 * a copy of the old one (so that sluice_shm_zone_init keeps the state of
 * every binding the change left as it was), initialized for the new policy;
 * with state=, a new file FILE.new renamed over FILE once ready. The master
 * unmaps the old mapping when the old configuration goes (a count of the
 * configurations that use a mapping: a reload that fails keeps the old
 * one); the old workers keep theirs until they exit.
 * What the old workers admit between the copy and their exit is not in the
 * new mapping, and a slot they hold is copied as held: it comes back when
 * its lease expires (docs/nginx.md).
 *
 * What the zone cannot hold is refused when the configuration is read
 * (ngx_http_sluice_store_check, nginx -t included): a policy whose limits
 * shared memory does not support, or a size below one key per limit
 * binding. There is no per-worker engine to fall back on: a limit is exact
 * across the workers or the configuration fails.
 */
#include "ngx_http_sluice.h"

#include <sluice/common.h>
#include <sluice/shm.h>

#include <stdio.h>
#include <sys/random.h>

/* nginx's shared zone of a sluice_zone: its slab pool (nginx keeps one at
 * the head of every shared zone and unlocks its mutex when a worker dies)
 * and our head. */
#define NGX_HTTP_SLUICE_NGX_ZONE (8 * ngx_pagesize)

size_t ngx_http_sluice_store_ngx_zone_size(void)
{
	return NGX_HTTP_SLUICE_NGX_ZONE;
}

static ngx_int_t ngx_http_sluice_same_zone(const ngx_http_sluice_zone_t *a, const ngx_http_sluice_zone_t *b)
{
	return a->size == b->size && a->policy_text.len == b->policy_text.len &&
	       ngx_memcmp(a->policy_text.data, b->policy_text.data, a->policy_text.len) == 0 &&
	       a->state_path.len == b->state_path.len &&
	       ngx_memcmp(a->state_path.data, b->state_path.data, a->state_path.len) == 0;
}

/* Map z's sluice zone: FILE.new when replacing a file a running
 * configuration uses, else FILE, or anonymous memory. */
static int ngx_http_sluice_map(ngx_http_sluice_zone_t *z, ngx_int_t replacing, char *path, size_t cap)
{
	path[0] = '\0';
	if (z->state_path.len == 0)
		return sluice_shm_map_anonymous(z->size, &z->base);
	if ((size_t)snprintf(path, cap, "%s%s", z->state_path.data, replacing ? ".new" : "") >= cap)
		return SLUICE_EINVAL;
	if (replacing)
		(void)unlink(path); /* a leftover of an interrupted reload */
	return sluice_shm_map_file(path, z->size, &z->base);
}

/* Called when the configuration is read (nginx -t included): refuse a
 * policy the zone cannot hold, and a size below one key per limit binding
 * (per limit, tier in force and override), naming the least size. */
char *ngx_http_sluice_store_check(ngx_conf_t *cf, const ngx_http_sluice_zone_t *z)
{
	size_t need;
	uint64_t keys = 0;

	int rc = sluice_shm_zone_size(z->policy, 1, &need);
	if (rc != SLUICE_OK) {
		ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
				   "sluice_zone \"%V\": policy %V cannot live in the shared zone: %s", &z->name,
				   &z->policy_path, sluice_strerror(rc));
		return NGX_CONF_ERROR;
	}
	if (sluice_shm_zone_capacity(z->policy, z->size, &keys) != SLUICE_OK || keys == 0) {
		ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
				   "sluice_zone \"%V\": size=%uz is too small for policy %V: at least %uz "
				   "bytes (one key per limit binding)",
				   &z->name, z->size, &z->policy_path, need);
		return NGX_CONF_ERROR;
	}
	return NGX_CONF_OK;
}

ngx_int_t ngx_http_sluice_store_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
	ngx_http_sluice_zone_t *z = shm_zone->data;
	ngx_http_sluice_zone_t *old = data;
	ngx_log_t *log = shm_zone->shm.log;
	ngx_slab_pool_t *shpool = (ngx_slab_pool_t *)shm_zone->shm.addr;
	char path[NGX_MAX_PATH + 8];
	struct sluice_shm_info info;
	int rc;

	if (old != NULL) {
		z->shared = old->shared;
		if (ngx_http_sluice_same_zone(z, old) && old->map != NULL) {
			/* Shared with the old workers as it is. */
			z->map = old->map;
			z->map->refs++;
			z->base = z->map->base;
			return NGX_OK;
		}
	} else if (shm_zone->shm.exists) { /* Windows only */
		z->shared = shpool->data;
	} else {
		z->shared = ngx_slab_alloc(shpool, sizeof *z->shared);
		if (z->shared == NULL)
			return NGX_ERROR;
		shpool->data = z->shared;
		if (getrandom(z->shared->secret, sizeof z->shared->secret, 0) !=
		    (ssize_t)sizeof z->shared->secret) {
			ngx_log_error(NGX_LOG_EMERG, log, ngx_errno, "sluice_zone \"%V\": getrandom failed",
				      &z->name);
			return NGX_ERROR;
		}
	}
	if (ngx_test_config)
		return NGX_OK; /* nginx -t: no mapping, no file touched */
	/* A replacement of a file the old workers use goes to FILE.new. */
	ngx_int_t replacing = old != NULL && old->base != NULL && z->state_path.len > 0 &&
			      old->state_path.len == z->state_path.len &&
			      ngx_memcmp(old->state_path.data, z->state_path.data, z->state_path.len) == 0;
	rc = ngx_http_sluice_map(z, replacing, path, sizeof path);
	if (rc != SLUICE_OK) {
		ngx_log_error(NGX_LOG_EMERG, log, ngx_errno, "sluice_zone \"%V\": mapping %s of %uz bytes: %s",
			      &z->name, path[0] ? path : "(anonymous)", z->size, sluice_strerror(rc));
		return NGX_ERROR;
	}
	if (old != NULL && old->base != NULL && old->size == z->size)
		ngx_memcpy(z->base, old->base, z->size); /* carry the kept limits over */
	ngx_memzero(&info, sizeof info);
	info.size = sizeof info;
	rc = sluice_shm_zone_init(z->base, z->size, z->policy, 0, &info);
	if (rc != SLUICE_OK) {
		ngx_log_error(NGX_LOG_EMERG, log, 0, "sluice_zone \"%V\": %s: %s", &z->name, sluice_strerror(rc),
			      info.message);
		(void)sluice_shm_unmap(z->base, z->size);
		z->base = NULL;
		return NGX_ERROR;
	}
	if (replacing && rename(path, (const char *)z->state_path.data) != 0) {
		ngx_log_error(NGX_LOG_EMERG, log, ngx_errno, "sluice_zone \"%V\": rename %s to %V failed",
			      &z->name, path, &z->state_path);
		(void)sluice_shm_unmap(z->base, z->size);
		z->base = NULL;
		return NGX_ERROR;
	}
	ngx_log_error(NGX_LOG_NOTICE, log, 0,
		      "sluice_zone \"%V\": %uD limit regions of %uL keys (%uD kept, %uD fresh)%s%V", &z->name,
		      info.regions, info.capacity, info.kept, info.reset, z->state_path.len ? " in " : "",
		      &z->state_path);
	z->map = ngx_alloc(sizeof *z->map, log);
	if (z->map == NULL) {
		(void)sluice_shm_unmap(z->base, z->size);
		z->base = NULL;
		return NGX_ERROR;
	}
	z->map->base = z->base;
	z->map->size = z->size;
	z->map->refs = 1;
	return NGX_OK;
}

/* A configuration's zone goes (its cycle's pool is destroyed: in the
 * master, the old configuration after a reload, or the new one after a
 * reload that failed): its reference to the mapping goes with it. The
 * master unmaps a mapping no configuration uses any more; the old workers
 * keep their own copy of the mapping until they exit. */
void ngx_http_sluice_store_cleanup(void *data)
{
	ngx_http_sluice_zone_t *z = data;

	if (z->map != NULL && --z->map->refs == 0) {
		(void)sluice_shm_unmap(z->map->base, z->map->size);
		ngx_free(z->map);
	}
	z->map = NULL;
}

/* The answers' body templates, compiled once per worker. */
static ngx_int_t ngx_http_sluice_compile_answers(ngx_http_sluice_zone_t *z, ngx_log_t *log)
{
	z->answers = ngx_calloc(sizeof(struct sluice_template) * SLUICE_POLICY_ANSWER_COUNT, log);
	if (z->answers == NULL)
		return NGX_ERROR;
	for (int i = 0; i < SLUICE_POLICY_ANSWER_COUNT; i++) {
		const struct sluice_policy_answer *a = &z->spec->answers[i];
		/* The policy's load compiled every body once: this cannot fail. */
		if (a->status != 0 &&
		    sluice_template_compile(a->body, a->body_len,
					    a->json_escape ? SLUICE_TEMPLATE_JSON : SLUICE_TEMPLATE_PLAIN,
					    &z->answers[i], NULL) != SLUICE_OK) {
			ngx_log_error(NGX_LOG_EMERG, log, 0, "sluice_zone \"%V\": an answer does not compile",
				      &z->name);
			return NGX_ERROR;
		}
	}
	return NGX_OK;
}

ngx_int_t ngx_http_sluice_store_open(ngx_http_sluice_zone_t *z, ngx_cycle_t *cycle)
{
	ngx_log_t *log = cycle->log;
	struct sluice_policy *policy;
	struct sluice_policy_error err;
	int rc;

	if (z->base == NULL) {
		ngx_log_error(NGX_LOG_EMERG, log, 0, "sluice_zone \"%V\": no shared zone", &z->name);
		return NGX_ERROR;
	}
	rc = ngx_http_sluice_parse_policy(z, &policy, &err);
	if (rc != SLUICE_OK) { /* the master parsed the same bytes: memory */
		ngx_log_error(NGX_LOG_EMERG, log, 0, "sluice_zone \"%V\": %s", &z->name, err.message);
		return NGX_ERROR;
	}
	const struct sluice_engine_options opts = {
		.size = sizeof opts,
		/* Reclaim keys whose limits are full again, once a second (any
		 * process may sweep the zone). */
		.sweep_interval_ns = SLUICE_NS_PER_SEC,
	};
	rc = sluice_shm_engine_create(&z->engine, policy, z->base, z->size, &opts);
	if (rc != SLUICE_OK) {
		ngx_log_error(NGX_LOG_EMERG, log, 0, "sluice_zone \"%V\": engine: %s", &z->name, sluice_strerror(rc));
		sluice_policy_destroy(policy);
		return NGX_ERROR;
	}
	z->spec = sluice_policy_spec(policy);
	return ngx_http_sluice_compile_answers(z, log);
}

void ngx_http_sluice_store_close(ngx_http_sluice_zone_t *z, ngx_log_t *log)
{
	(void)log;
	/* The state stays in the mapping. */
	sluice_engine_destroy(z->engine);
	z->engine = NULL;
	ngx_free(z->answers);
	z->answers = NULL;
}
