/*
 * ngx_http_sluice_store.c - the store seam of ngx_http_sluice_module: the
 * zone's shared memory, prepared once in the master, and the engine each
 * worker decides on (docs/nginx.md, "The store").
 *
 * The zone's head (ngx_http_sluice_shared_t) holds the key of the hash that
 * replaces over-long identities; it is drawn when the zone is first created
 * and kept by every later configuration that reuses the zone (a reload), so
 * a long token keys the same state in every worker and after a reload.
 *
 * The engine: each worker runs an in-process engine (sluice_engine_create)
 * over its own copy of the policy, so the limits are exact per worker
 * process: with worker_processes 1 they are the policy's numbers; with N
 * workers a key may be admitted up to N times its count (each worker
 * counts alone). A file-backed zone (state=) restores the worker's engine
 * from the file at start and writes it at exit and every second.
 */
#include "ngx_http_sluice.h"

#include <sluice/common.h>
#include <sluice/snapshot.h>

#include <sys/random.h>

ngx_int_t ngx_http_sluice_store_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
	ngx_http_sluice_zone_t *z = shm_zone->data;
	ngx_http_sluice_zone_t *old = data;

	if (old != NULL) {
		/* A reload reusing the zone (same name and size): keep what it
		 * holds. */
		z->shared = old->shared;
		return NGX_OK;
	}
	/* nginx keeps a slab pool at the head of every shared zone (its
	 * mutex is unlocked by the master when a worker dies): ours comes from
	 * it. */
	ngx_slab_pool_t *shpool = (ngx_slab_pool_t *)shm_zone->shm.addr;
	if (shm_zone->shm.exists) { /* Windows only: attached, already made */
		z->shared = shpool->data;
		return NGX_OK;
	}
	z->shared = ngx_slab_alloc(shpool, sizeof *z->shared);
	if (z->shared == NULL)
		return NGX_ERROR;
	shpool->data = z->shared;
	if (getrandom(z->shared->secret, sizeof z->shared->secret, 0) != (ssize_t)sizeof z->shared->secret) {
		ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, ngx_errno,
			      "sluice_zone \"%V\": getrandom failed", &shm_zone->shm.name);
		return NGX_ERROR;
	}
	return NGX_OK;
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
	ngx_core_conf_t *ccf = (ngx_core_conf_t *)ngx_get_conf(cycle->conf_ctx, ngx_core_module);
	ngx_log_t *log = cycle->log;
	struct sluice_policy *policy;
	struct sluice_snapshot_info info;
	struct sluice_policy_error err;
	int rc;

	rc = sluice_policy_parse((const char *)z->policy_text.data, z->policy_text.len, NULL, &policy, &err);
	if (rc != SLUICE_OK) { /* the master parsed the same bytes: memory */
		ngx_log_error(NGX_LOG_EMERG, log, 0, "sluice_zone \"%V\": %s", &z->name, err.message);
		return NGX_ERROR;
	}
	ngx_memzero(&info, sizeof info);
	info.size = sizeof info;
	const struct sluice_engine_options opts = {
		.size = sizeof opts,
		/* Reclaim keys whose limits are full again, once a second. */
		.sweep_interval_ns = SLUICE_NS_PER_SEC,
		.state_path = z->state_path.len ? (const char *)z->state_path.data : NULL,
		.snapshot_interval_ns = z->state_path.len ? SLUICE_NS_PER_SEC : 0,
		.flags = z->state_path.len
				 ? SLUICE_ENGINE_STATE_FRESH_ON_ERROR | SLUICE_ENGINE_STATE_SAVE_AT_DESTROY
				 : 0,
		.restore_info = &info,
	};
	rc = sluice_engine_create(&z->engine, policy, &opts);
	if (rc != SLUICE_OK) {
		ngx_log_error(NGX_LOG_EMERG, log, 0, "sluice_zone \"%V\": engine: %s %s", &z->name,
			      sluice_strerror(rc), info.message);
		sluice_policy_destroy(policy);
		return NGX_ERROR;
	}
	if (info.message[0] != '\0')
		ngx_log_error(NGX_LOG_WARN, log, 0, "sluice_zone \"%V\": state file: %s", &z->name, info.message);
	if (ccf->worker_processes > 1)
		ngx_log_error(NGX_LOG_WARN, log, 0,
			      "sluice_zone \"%V\": each of the %i worker processes counts alone "
			      "(this build keeps the state in each worker)",
			      &z->name, ccf->worker_processes);
	z->spec = sluice_policy_spec(policy);
	return ngx_http_sluice_compile_answers(z, log);
}

void ngx_http_sluice_store_close(ngx_http_sluice_zone_t *z, ngx_log_t *log)
{
	(void)log;
	sluice_engine_destroy(z->engine); /* writes the state file when file-backed */
	z->engine = NULL;
	ngx_free(z->answers);
	z->answers = NULL;
}
