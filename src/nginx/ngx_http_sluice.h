/*
 * ngx_http_sluice.h - what the three files of ngx_http_sluice_module share
 * (docs/nginx.md): the zone (a policy bound to a store), the location's
 * configuration, the per-request state and the store seam.
 *
 *   ngx_http_sluice_module.c   directives, configuration, variables, init
 *   ngx_http_sluice_request.c  the access handler (the decision, refusal
 *                              answers), the header filter, slot release
 *   ngx_http_sluice_store.c    the store seam: the shared zone's init in the
 *                              master and the engine each worker decides on
 */
#ifndef NGX_HTTP_SLUICE_H
#define NGX_HTTP_SLUICE_H

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <sluice/engine.h>
#include <sluice/http.h>
#include <sluice/policy.h>
#include <sluice/template.h>

/* Bytes of the key the hash of an over-long identity is keyed with
 * (XXH3_SECRET_SIZE_MIN). */
#define NGX_HTTP_SLUICE_SECRET 136
/* Most header fields one answer carries: the rate-limit fields
 * (sluice_http_render_custom: at most 13) and the dry-run header. */
#define NGX_HTTP_SLUICE_FIELDS 14
/* Bytes of the rendered header values of one answer. */
#define NGX_HTTP_SLUICE_FIELD_BYTES 1024

/* Ours in nginx's shared zone of a sluice_zone (from its slab pool): what
 * every worker, and the next configuration after a reload, reads the same. */
typedef struct {
	u_char secret[NGX_HTTP_SLUICE_SECRET];
} ngx_http_sluice_shared_t;

/* A mapping of a sluice shared-memory zone in the master, and how many
 * configurations (the running one, a reload's new one) use it. */
typedef struct {
	void *base;
	size_t size;
	ngx_uint_t refs;
} ngx_http_sluice_map_t;

/* One sluice_zone: a policy bound to a store. Lives in the configuration
 * cycle's pool; the fields below "per worker" are set in each worker by
 * ngx_http_sluice_store_open(). */
typedef struct {
	ngx_str_t name;
	ngx_str_t policy_path;
	ngx_str_t policy_text;            /* the file's bytes, parsed again per worker */
	struct sluice_policy *policy;     /* parsed at load: names for the directives */
	ngx_str_t state_path;             /* "" : not file-backed */
	size_t size;                      /* of the sluice zone (the mapping) */
	void *base;                       /* the mapping, made by the master */
	ngx_http_sluice_map_t *map;       /* and its count (master) */
	ngx_shm_zone_t *shm_zone;
	ngx_http_sluice_shared_t *shared; /* set by the zone's init */
	/* per worker */
	struct sluice_engine *engine;
	const struct sluice_policy_spec *spec; /* of the engine's policy */
	struct sluice_template *answers;       /* [SLUICE_POLICY_ANSWER_COUNT], compiled */
} ngx_http_sluice_zone_t;

typedef struct {
	ngx_str_t scope;
	ngx_http_complex_value_t value;
	ngx_str_t file; /* where it was written, for messages */
	ngx_uint_t line;
} ngx_http_sluice_identity_t;

typedef struct {
	ngx_http_sluice_zone_t *zone; /* NULL: off */
	ngx_flag_t dry_run;
	ngx_array_t *identities; /* of ngx_http_sluice_identity_t; inherited whole */
	ngx_http_complex_value_t *tier; /* sluice_tier: the tier's name; NULL: none */
	/* By the zone's scope index: the identity's value, or NULL (absent). */
	ngx_http_complex_value_t *by_scope[SLUICE_POLICY_MAX_SCOPES];
} ngx_http_sluice_loc_conf_t;

typedef struct {
	ngx_array_t zones; /* of ngx_http_sluice_zone_t * */
} ngx_http_sluice_main_conf_t;

/* One request's decision. It lives in the data of a pool cleanup of the
 * request (found again after an internal redirect, which clears module
 * contexts) so that a request is decided once and its slots are released
 * however it ends. */
typedef struct {
	ngx_http_sluice_zone_t *zone;
	struct sluice_engine_decision decision;
	uint64_t now_ns;
	unsigned refused : 1;  /* the policy refused it (dry run or not) */
	unsigned dry_run : 1;
	unsigned error : 1;    /* the check failed (bad target, engine error) */
	ngx_uint_t nfields;
	struct sluice_http_field fields[NGX_HTTP_SLUICE_FIELDS];
	char field_bytes[NGX_HTTP_SLUICE_FIELD_BYTES];
} ngx_http_sluice_ctx_t;

extern ngx_module_t ngx_http_sluice_module;

/* ngx_http_sluice_module.c: the zone's policy text parsed (its map files
 * read beside it). */
int ngx_http_sluice_parse_policy(const ngx_http_sluice_zone_t *z, struct sluice_policy **out,
				 struct sluice_policy_error *err);

/* ngx_http_sluice_request.c */
ngx_int_t ngx_http_sluice_access_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_sluice_log_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_sluice_filter_init(ngx_conf_t *cf);
ngx_http_sluice_ctx_t *ngx_http_sluice_get_ctx(ngx_http_request_t *r);

/* ngx_http_sluice_store.c: the store. */
size_t ngx_http_sluice_store_ngx_zone_size(void);
char *ngx_http_sluice_store_check(ngx_conf_t *cf, const ngx_http_sluice_zone_t *zone);
void ngx_http_sluice_store_cleanup(void *data);
ngx_int_t ngx_http_sluice_store_init_zone(ngx_shm_zone_t *shm_zone, void *data);
ngx_int_t ngx_http_sluice_store_open(ngx_http_sluice_zone_t *zone, ngx_cycle_t *cycle);
void ngx_http_sluice_store_close(ngx_http_sluice_zone_t *zone, ngx_log_t *log);

#endif /* NGX_HTTP_SLUICE_H */
