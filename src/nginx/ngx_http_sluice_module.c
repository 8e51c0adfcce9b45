/*
 * ngx_http_sluice_module.c - the module's directives, configuration,
 * variables and process hooks (docs/nginx.md).
 *
 *   sluice_zone NAME policy=FILE size=SIZE [state=FILE];     http
 *   sluice NAME [dry_run] | off;                             http, server, location
 *   sluice_identity SCOPE VALUE;                             http, server, location
 *   sluice_tier VALUE;                                       http, server, location
 *
 * A zone's policy is loaded and validated here, at configuration time, so a
 * bad policy fails `nginx -t` and a reload with its file:line:column; the
 * workers parse the same bytes again for their engines (an engine owns its
 * policy). sluice_identity lines are inherited as a whole: a level that
 * names none takes its parent's.
 */
#include "ngx_http_sluice.h"

#include <sluice/common.h>

static void *ngx_http_sluice_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_sluice_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_sluice_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child);
static char *ngx_http_sluice_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static char *ngx_http_sluice(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static char *ngx_http_sluice_identity(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static ngx_int_t ngx_http_sluice_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_sluice_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_sluice_init_process(ngx_cycle_t *cycle);
static void ngx_http_sluice_exit_process(ngx_cycle_t *cycle);

static ngx_command_t ngx_http_sluice_commands[] = {
	{ ngx_string("sluice_zone"), NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE23 | NGX_CONF_TAKE4, ngx_http_sluice_zone,
	  NGX_HTTP_MAIN_CONF_OFFSET, 0, NULL },
	{ ngx_string("sluice"), NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_TAKE12,
	  ngx_http_sluice, NGX_HTTP_LOC_CONF_OFFSET, 0, NULL },
	{ ngx_string("sluice_identity"),
	  NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_TAKE2,
	  ngx_http_sluice_identity, NGX_HTTP_LOC_CONF_OFFSET, 0, NULL },
	{ ngx_string("sluice_tier"), NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_TAKE1,
	  ngx_http_set_complex_value_slot, NGX_HTTP_LOC_CONF_OFFSET,
	  offsetof(ngx_http_sluice_loc_conf_t, tier), NULL },
	ngx_null_command
};

static ngx_http_module_t ngx_http_sluice_module_ctx = {
	ngx_http_sluice_add_variables,    /* preconfiguration */
	ngx_http_sluice_init,             /* postconfiguration */
	ngx_http_sluice_create_main_conf, /* create main configuration */
	NULL,                             /* init main configuration */
	NULL,                             /* create server configuration */
	NULL,                             /* merge server configuration */
	ngx_http_sluice_create_loc_conf,  /* create location configuration */
	ngx_http_sluice_merge_loc_conf    /* merge location configuration */
};

ngx_module_t ngx_http_sluice_module = {
	NGX_MODULE_V1,
	&ngx_http_sluice_module_ctx,  /* module context */
	ngx_http_sluice_commands,     /* module directives */
	NGX_HTTP_MODULE,              /* module type */
	NULL,                         /* init master */
	NULL,                         /* init module */
	ngx_http_sluice_init_process, /* init process */
	NULL,                         /* init thread */
	NULL,                         /* exit thread */
	ngx_http_sluice_exit_process, /* exit process */
	NULL,                         /* exit master */
	NGX_MODULE_V1_PADDING
};

/* ------------------------------------------------------------------------
 * Configuration.
 */
static void *ngx_http_sluice_create_main_conf(ngx_conf_t *cf)
{
	ngx_http_sluice_main_conf_t *smcf = ngx_pcalloc(cf->pool, sizeof *smcf);
	if (smcf == NULL)
		return NULL;
	if (ngx_array_init(&smcf->zones, cf->pool, 2, sizeof(ngx_http_sluice_zone_t *)) != NGX_OK)
		return NULL;
	return smcf;
}

static void *ngx_http_sluice_create_loc_conf(ngx_conf_t *cf)
{
	ngx_http_sluice_loc_conf_t *slcf = ngx_pcalloc(cf->pool, sizeof *slcf);
	if (slcf == NULL)
		return NULL;
	slcf->zone = NGX_CONF_UNSET_PTR;
	slcf->dry_run = NGX_CONF_UNSET;
	slcf->identities = NGX_CONF_UNSET_PTR;
	slcf->tier = NGX_CONF_UNSET_PTR;
	return slcf;
}

static ngx_int_t ngx_http_sluice_scope_in_any_zone(ngx_http_sluice_main_conf_t *smcf, ngx_str_t *scope)
{
	ngx_http_sluice_zone_t **zones = smcf->zones.elts;
	for (ngx_uint_t i = 0; i < smcf->zones.nelts; i++)
		if (sluice_policy_scope_index(zones[i]->policy, (const char *)scope->data) >= 0)
			return 1;
	return 0;
}

static char *ngx_http_sluice_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
	ngx_http_sluice_loc_conf_t *prev = parent;
	ngx_http_sluice_loc_conf_t *conf = child;
	ngx_http_sluice_main_conf_t *smcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_sluice_module);

	ngx_conf_merge_ptr_value(conf->zone, prev->zone, NULL);
	ngx_conf_merge_value(conf->dry_run, prev->dry_run, 0);
	ngx_conf_merge_ptr_value(conf->identities, prev->identities, NULL);
	ngx_conf_merge_ptr_value(conf->tier, prev->tier, NULL);
	if (conf->identities != NULL) {
		ngx_http_sluice_identity_t *ids = conf->identities->elts;
		for (ngx_uint_t i = 0; i < conf->identities->nelts; i++) {
			/* A scope no zone's policy declares is a typo; one that
			 * only another zone's policy declares does not apply here. */
			if (!ngx_http_sluice_scope_in_any_zone(smcf, &ids[i].scope)) {
				ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
						   "sluice_identity \"%V\" (%V:%ui): no sluice_zone's policy "
						   "declares this scope",
						   &ids[i].scope, &ids[i].file, ids[i].line);
				return NGX_CONF_ERROR;
			}
			if (conf->zone == NULL)
				continue;
			int s = sluice_policy_scope_index(conf->zone->policy, (const char *)ids[i].scope.data);
			if (s >= 0)
				conf->by_scope[s] = &ids[i].value;
		}
	}
	return NGX_CONF_OK;
}

/* The policy file's bytes, NUL-terminated, in the configuration's pool. */
static char *ngx_http_sluice_read_policy(ngx_conf_t *cf, ngx_http_sluice_zone_t *z)
{
	ngx_file_info_t fi;
	ngx_file_t file;

	ngx_memzero(&file, sizeof file);
	file.name = z->policy_path;
	file.log = cf->log;
	file.fd = ngx_open_file(z->policy_path.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
	if (file.fd == NGX_INVALID_FILE) {
		ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno, ngx_open_file_n " \"%V\" failed",
				   &z->policy_path);
		return NGX_CONF_ERROR;
	}
	char *rv = NGX_CONF_ERROR;
	if (ngx_fd_info(file.fd, &fi) == NGX_FILE_ERROR) {
		ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno, ngx_fd_info_n " \"%V\" failed",
				   &z->policy_path);
		goto done;
	}
	size_t len = (size_t)ngx_file_size(&fi);
	if (len > SLUICE_POLICY_MAX_INPUT) {
		ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "policy \"%V\" is larger than %ui bytes",
				   &z->policy_path, (ngx_uint_t)SLUICE_POLICY_MAX_INPUT);
		goto done;
	}
	z->policy_text.data = ngx_pnalloc(cf->pool, len + 1);
	if (z->policy_text.data == NULL)
		goto done;
	ssize_t n = ngx_read_file(&file, z->policy_text.data, len, 0);
	if (n != (ssize_t)len) {
		ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "policy \"%V\": short read", &z->policy_path);
		goto done;
	}
	z->policy_text.data[len] = '\0';
	z->policy_text.len = len;
	rv = NGX_CONF_OK;
done:
	if (ngx_close_file(file.fd) == NGX_FILE_ERROR)
		ngx_log_error(NGX_LOG_ALERT, cf->log, ngx_errno, ngx_close_file_n " \"%V\" failed",
			      &z->policy_path);
	return rv;
}

int ngx_http_sluice_parse_policy(const ngx_http_sluice_zone_t *z, struct sluice_policy **out,
				 struct sluice_policy_error *err)
{
	struct sluice_policy_options opts;

	ngx_memzero(&opts, sizeof opts);
	opts.size = sizeof opts;
	/* A relative map file ("scope ... from map FILE") lies beside the policy. */
	char dir[NGX_MAX_PATH];
	size_t n = z->policy_path.len;
	while (n > 0 && z->policy_path.data[n - 1] != '/')
		n--;
	if (n > 0 && n < sizeof dir) {
		ngx_memcpy(dir, z->policy_path.data, n);
		dir[n] = '\0';
		opts.base_dir = dir;
	}
	return sluice_policy_parse((const char *)z->policy_text.data, z->policy_text.len, &opts, out, err);
}

static void ngx_http_sluice_policy_cleanup(void *data)
{
	sluice_policy_destroy(data);
}

/* sluice_zone NAME policy=FILE size=SIZE [state=FILE] */
static char *ngx_http_sluice_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
	ngx_http_sluice_main_conf_t *smcf = conf;
	ngx_str_t *value = cf->args->elts;
	ngx_http_sluice_zone_t *z, **slot;
	ssize_t size = 0;

	z = ngx_pcalloc(cf->pool, sizeof *z);
	if (z == NULL)
		return NGX_CONF_ERROR;
	z->name = value[1];
	for (ngx_uint_t i = 2; i < cf->args->nelts; i++) {
		ngx_str_t v = value[i];
		if (v.len > 7 && ngx_strncmp(v.data, "policy=", 7) == 0) {
			v.data += 7;
			v.len -= 7;
			z->policy_path = v;
			if (ngx_conf_full_name(cf->cycle, &z->policy_path, 1) != NGX_OK)
				return NGX_CONF_ERROR;
		} else if (v.len > 5 && ngx_strncmp(v.data, "size=", 5) == 0) {
			v.data += 5;
			v.len -= 5;
			size = ngx_parse_size(&v);
			if (size == NGX_ERROR || size < (ssize_t)(8 * ngx_pagesize)) {
				ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
						   "sluice_zone \"%V\": invalid size \"%V\" (at least %ui bytes)",
						   &z->name, &value[i], (ngx_uint_t)(8 * ngx_pagesize));
				return NGX_CONF_ERROR;
			}
		} else if (v.len > 6 && ngx_strncmp(v.data, "state=", 6) == 0) {
			v.data += 6;
			v.len -= 6;
			z->state_path = v;
			if (ngx_conf_full_name(cf->cycle, &z->state_path, 0) != NGX_OK)
				return NGX_CONF_ERROR;
		} else {
			ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "sluice_zone: invalid parameter \"%V\"", &v);
			return NGX_CONF_ERROR;
		}
	}
	if (z->policy_path.len == 0 || size == 0) {
		ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "sluice_zone \"%V\" needs policy= and size=",
				   &z->name);
		return NGX_CONF_ERROR;
	}
	z->size = (size_t)size;
	slot = smcf->zones.elts;
	for (ngx_uint_t i = 0; i < smcf->zones.nelts; i++) {
		if (slot[i]->name.len == z->name.len &&
		    ngx_strncmp(slot[i]->name.data, z->name.data, z->name.len) == 0) {
			ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "sluice_zone \"%V\" is already declared",
					   &z->name);
			return NGX_CONF_ERROR;
		}
	}

	if (ngx_http_sluice_read_policy(cf, z) != NGX_CONF_OK)
		return NGX_CONF_ERROR;
	struct sluice_policy_error err;
	int rc = ngx_http_sluice_parse_policy(z, &z->policy, &err);
	if (rc != SLUICE_OK) {
		ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "sluice_zone \"%V\": policy %V:%d:%d: %s",
				   &z->name, &z->policy_path, err.line, err.column, err.message);
		return NGX_CONF_ERROR;
	}
	ngx_pool_cleanup_t *cln = ngx_pool_cleanup_add(cf->pool, 0);
	if (cln == NULL) {
		sluice_policy_destroy(z->policy);
		return NGX_CONF_ERROR;
	}
	cln->handler = ngx_http_sluice_policy_cleanup;
	cln->data = z->policy;
	if (ngx_http_sluice_store_check(cf, z) != NGX_CONF_OK)
		return NGX_CONF_ERROR;
	cln = ngx_pool_cleanup_add(cf->pool, 0);
	if (cln == NULL)
		return NGX_CONF_ERROR;
	cln->handler = ngx_http_sluice_store_cleanup;
	cln->data = z;

	z->shm_zone = ngx_shared_memory_add(cf, &z->name, ngx_http_sluice_store_ngx_zone_size(),
					    &ngx_http_sluice_module);
	if (z->shm_zone == NULL)
		return NGX_CONF_ERROR;
	if (z->shm_zone->data != NULL) {
		ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "sluice_zone \"%V\": the shared zone is in use",
				   &z->name);
		return NGX_CONF_ERROR;
	}
	z->shm_zone->init = ngx_http_sluice_store_init_zone;
	z->shm_zone->data = z;

	slot = ngx_array_push(&smcf->zones);
	if (slot == NULL)
		return NGX_CONF_ERROR;
	*slot = z;
	(void)cmd;
	return NGX_CONF_OK;
}

/* sluice NAME [dry_run] | sluice off */
static char *ngx_http_sluice(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
	ngx_http_sluice_loc_conf_t *slcf = conf;
	ngx_http_sluice_main_conf_t *smcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_sluice_module);
	ngx_str_t *value = cf->args->elts;

	if (slcf->zone != NGX_CONF_UNSET_PTR)
		return "is duplicate";
	if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
		slcf->zone = NULL;
		return NGX_CONF_OK;
	}
	ngx_http_sluice_zone_t **zones = smcf->zones.elts;
	slcf->zone = NULL;
	for (ngx_uint_t i = 0; i < smcf->zones.nelts; i++)
		if (zones[i]->name.len == value[1].len &&
		    ngx_strncmp(zones[i]->name.data, value[1].data, value[1].len) == 0)
			slcf->zone = zones[i];
	if (slcf->zone == NULL) {
		ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
				   "sluice: no sluice_zone \"%V\" (declare it above, at http level)", &value[1]);
		return NGX_CONF_ERROR;
	}
	if (cf->args->nelts == 3) {
		if (ngx_strcmp(value[2].data, "dry_run") != 0) {
			ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "sluice: invalid parameter \"%V\"", &value[2]);
			return NGX_CONF_ERROR;
		}
		slcf->dry_run = 1;
	} else {
		slcf->dry_run = 0;
	}
	(void)cmd;
	return NGX_CONF_OK;
}

/* sluice_identity SCOPE VALUE */
static char *ngx_http_sluice_identity(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
	ngx_http_sluice_loc_conf_t *slcf = conf;
	ngx_str_t *value = cf->args->elts;
	ngx_http_compile_complex_value_t ccv;
	ngx_http_sluice_identity_t *id;

	if (slcf->identities == NGX_CONF_UNSET_PTR) {
		slcf->identities = ngx_array_create(cf->pool, 2, sizeof(ngx_http_sluice_identity_t));
		if (slcf->identities == NULL)
			return NGX_CONF_ERROR;
	}
	id = slcf->identities->elts;
	for (ngx_uint_t i = 0; i < slcf->identities->nelts; i++)
		if (id[i].scope.len == value[1].len &&
		    ngx_strncmp(id[i].scope.data, value[1].data, value[1].len) == 0)
			return "names this scope twice at one level";
	id = ngx_array_push(slcf->identities);
	if (id == NULL)
		return NGX_CONF_ERROR;
	ngx_memzero(id, sizeof *id);
	id->scope = value[1]; /* NUL-terminated by the configuration parser */
	id->file = cf->conf_file->file.name;
	id->line = cf->conf_file->line;
	ngx_memzero(&ccv, sizeof ccv);
	ccv.cf = cf;
	ccv.value = &value[2];
	ccv.complex_value = &id->value;
	if (ngx_http_compile_complex_value(&ccv) != NGX_OK)
		return NGX_CONF_ERROR;
	(void)cmd;
	return NGX_CONF_OK;
}

/* ------------------------------------------------------------------------
 * Variables: the governing limit of the request's decision, for access
 * logs. Not found when the request was not decided (no sluice here, or the
 * check failed) or, for the limit's figures, when no limit applied.
 */
enum {
	NGX_HTTP_SLUICE_VAR_LIMIT,
	NGX_HTTP_SLUICE_VAR_REMAINING,
	NGX_HTTP_SLUICE_VAR_RESET,
	NGX_HTTP_SLUICE_VAR_REASON,
	NGX_HTTP_SLUICE_VAR_RETRY_AFTER,
	NGX_HTTP_SLUICE_VAR_STATUS,
	NGX_HTTP_SLUICE_VAR_LIMIT_NAME,
	NGX_HTTP_SLUICE_VAR_DRY_RUN,
};

/* The policy's dry-run limits that would have refused the request,
 * comma-separated ("" : none). */
static ngx_int_t ngx_http_sluice_dry_run_names(ngx_http_request_t *r, const ngx_http_sluice_ctx_t *ctx,
					       ngx_http_variable_value_t *v)
{
	const struct sluice_policy_spec *spec = ctx->zone->spec;
	uint32_t mask = ctx->decision.dry_run_refused;
	size_t len = 0;

	for (uint32_t i = 0; i < spec->limit_count; i++)
		if ((mask >> i) & 1)
			len += ngx_strlen(spec->limits[i].name) + 1;
	v->data = ngx_pnalloc(r->pool, len + 1);
	if (v->data == NULL)
		return NGX_ERROR;
	u_char *p = v->data;
	for (uint32_t i = 0; i < spec->limit_count; i++)
		if ((mask >> i) & 1)
			p = ngx_sprintf(p, "%s%s", p == v->data ? "" : ",", spec->limits[i].name);
	v->len = (size_t)(p - v->data);
	v->valid = 1;
	v->no_cacheable = 0;
	v->not_found = 0;
	return NGX_OK;
}

static const char *ngx_http_sluice_reason_word(uint8_t reason)
{
	static const char *const words[] = { "none", "rate", "quota", "concurrency", "capacity", "never",
					      "identity" };
	return reason < sizeof words / sizeof words[0] ? words[reason] : "unknown";
}

static ngx_int_t ngx_http_sluice_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
					  uintptr_t data)
{
	ngx_http_sluice_ctx_t *ctx = ngx_http_sluice_get_ctx(r);
	const struct sluice_engine_decision *ed;
	const char *word = NULL;
	uint64_t number = 0;

	if (ctx == NULL || ctx->error) {
		v->not_found = 1;
		return NGX_OK;
	}
	ed = &ctx->decision;
	if (data == NGX_HTTP_SLUICE_VAR_DRY_RUN)
		return ngx_http_sluice_dry_run_names(r, ctx, v);
	if (!ed->governed && data != NGX_HTTP_SLUICE_VAR_STATUS && data != NGX_HTTP_SLUICE_VAR_REASON) {
		v->not_found = 1;
		return NGX_OK;
	}
	switch (data) {
	case NGX_HTTP_SLUICE_VAR_LIMIT:
		number = ed->d.limit;
		break;
	case NGX_HTTP_SLUICE_VAR_REMAINING:
		number = ed->d.remaining;
		break;
	case NGX_HTTP_SLUICE_VAR_RESET: /* whole seconds, rounded up */
		number = ed->d.reset_ns / SLUICE_NS_PER_SEC + (ed->d.reset_ns % SLUICE_NS_PER_SEC != 0);
		break;
	case NGX_HTTP_SLUICE_VAR_RETRY_AFTER:
		number = sluice_http_retry_after_s(&ed->d);
		break;
	case NGX_HTTP_SLUICE_VAR_REASON:
		word = ngx_http_sluice_reason_word(ed->d.reason);
		break;
	case NGX_HTTP_SLUICE_VAR_STATUS:
		word = !ctx->refused ? "PASSED" : ctx->dry_run ? "REJECTED_DRY_RUN" : "REJECTED";
		break;
	default: /* NGX_HTTP_SLUICE_VAR_LIMIT_NAME */
		word = ed->limit_name;
		break;
	}
	if (word != NULL) {
		v->data = (u_char *)word;
		v->len = ngx_strlen(word);
	} else {
		v->data = ngx_pnalloc(r->pool, NGX_INT64_LEN);
		if (v->data == NULL)
			return NGX_ERROR;
		v->len = ngx_sprintf(v->data, "%uL", number) - v->data;
	}
	v->valid = 1;
	v->no_cacheable = 0;
	v->not_found = 0;
	return NGX_OK;
}

static ngx_http_variable_t ngx_http_sluice_vars[] = {
	{ ngx_string("sluice_limit"), NULL, ngx_http_sluice_variable, NGX_HTTP_SLUICE_VAR_LIMIT,
	  NGX_HTTP_VAR_NOCACHEABLE, 0 },
	{ ngx_string("sluice_remaining"), NULL, ngx_http_sluice_variable, NGX_HTTP_SLUICE_VAR_REMAINING,
	  NGX_HTTP_VAR_NOCACHEABLE, 0 },
	{ ngx_string("sluice_reset"), NULL, ngx_http_sluice_variable, NGX_HTTP_SLUICE_VAR_RESET,
	  NGX_HTTP_VAR_NOCACHEABLE, 0 },
	{ ngx_string("sluice_reason"), NULL, ngx_http_sluice_variable, NGX_HTTP_SLUICE_VAR_REASON,
	  NGX_HTTP_VAR_NOCACHEABLE, 0 },
	{ ngx_string("sluice_retry_after"), NULL, ngx_http_sluice_variable,
	  NGX_HTTP_SLUICE_VAR_RETRY_AFTER, NGX_HTTP_VAR_NOCACHEABLE, 0 },
	{ ngx_string("sluice_status"), NULL, ngx_http_sluice_variable, NGX_HTTP_SLUICE_VAR_STATUS,
	  NGX_HTTP_VAR_NOCACHEABLE, 0 },
	{ ngx_string("sluice_limit_name"), NULL, ngx_http_sluice_variable, NGX_HTTP_SLUICE_VAR_LIMIT_NAME,
	  NGX_HTTP_VAR_NOCACHEABLE, 0 },
	{ ngx_string("sluice_dry_run_refused"), NULL, ngx_http_sluice_variable, NGX_HTTP_SLUICE_VAR_DRY_RUN,
	  NGX_HTTP_VAR_NOCACHEABLE, 0 },
	ngx_http_null_variable
};

static ngx_int_t ngx_http_sluice_add_variables(ngx_conf_t *cf)
{
	for (ngx_http_variable_t *v = ngx_http_sluice_vars; v->name.len; v++) {
		ngx_http_variable_t *var = ngx_http_add_variable(cf, &v->name, v->flags);
		if (var == NULL)
			return NGX_ERROR;
		var->get_handler = v->get_handler;
		var->data = v->data;
	}
	return NGX_OK;
}

/* ------------------------------------------------------------------------
 * Phases and processes.
 */
static ngx_int_t ngx_http_sluice_init(ngx_conf_t *cf)
{
	ngx_http_core_main_conf_t *cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);
	ngx_http_handler_pt *h;

	h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
	if (h == NULL)
		return NGX_ERROR;
	*h = ngx_http_sluice_access_handler;
	h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
	if (h == NULL)
		return NGX_ERROR;
	*h = ngx_http_sluice_log_handler;
	return ngx_http_sluice_filter_init(cf);
}

static ngx_int_t ngx_http_sluice_init_process(ngx_cycle_t *cycle)
{
	ngx_http_sluice_main_conf_t *smcf;

	if (ngx_process != NGX_PROCESS_WORKER && ngx_process != NGX_PROCESS_SINGLE)
		return NGX_OK;
	smcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_sluice_module);
	if (smcf == NULL)
		return NGX_OK;
	ngx_http_sluice_zone_t **zones = smcf->zones.elts;
	for (ngx_uint_t i = 0; i < smcf->zones.nelts; i++)
		if (ngx_http_sluice_store_open(zones[i], cycle) != NGX_OK)
			return NGX_ERROR;
	return NGX_OK;
}

static void ngx_http_sluice_exit_process(ngx_cycle_t *cycle)
{
	ngx_http_sluice_main_conf_t *smcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_sluice_module);
	if (smcf == NULL)
		return;
	ngx_http_sluice_zone_t **zones = smcf->zones.elts;
	for (ngx_uint_t i = 0; i < smcf->zones.nelts; i++)
		ngx_http_sluice_store_close(zones[i], cycle->log);
}
