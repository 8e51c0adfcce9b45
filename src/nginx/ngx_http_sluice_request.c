/*
 * ngx_http_sluice_request.c - one request through ngx_http_sluice_module
 * (docs/nginx.md): the decision in the access phase, the refusal's answer,
 * the rate-limit header fields added by a header filter, and the release
 * of concurrency slots when the request ends.
 *
 * Once per request. The decision lives in the data of a pool cleanup of
 * the main request; an internal redirect (try_files, error_page, a named
 * location) clears module contexts but not the pool, so the access handler
 * finds the decision again there and does not count the request twice.
 * Subrequests are not limited (their main request was).
 *
 * Release. A request admitted with concurrency slots holds them until it
 * ends: the log phase releases them, and the pool cleanup does for the
 * requests that never reach the log phase's handlers in their location
 * (ngx_http_free_request runs the cleanup for every request, a client abort
 * or an upstream error included). sluice_engine_release() sets the
 * decision's slot count to 0, so the second of the two is a no-op.
 *
 * Which limit the header fields describe follows the policy ("headers ...
 * describe=", docs/policy.md), as the example server does (docs/server.md):
 * describe=governing: on a refusal the refusing limit; on an admission the
 * governing limit when it is rate-like, else (a concurrency limit governs)
 * every applied rate-like limit, of which the single-limit families show
 * the one with the least remaining; draft-11 lists every applied limit.
 * describe=<limit>|tightest: that limit as it stands after the check, with
 * the refusal's verdict and Retry-After on a refusal. The fields are
 * rendered once, in the access phase, and added by the header filter, so
 * they survive proxy_pass and go out on the module's own refusals alike.
 * In dry run ("sluice ZONE dry_run") no field is added: the client is not
 * limited. The policy's own dry-run limits are the engine's: they never
 * refuse nor govern, and when one would have refused an admitted request,
 * the policy's "dry-run header" names it.
 */
#include "ngx_http_sluice.h"

#include <sluice/common.h>

#include <stdio.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

static ngx_http_output_header_filter_pt ngx_http_next_header_filter;

static void ngx_http_sluice_cleanup(void *data)
{
	ngx_http_sluice_ctx_t *ctx = data;

	if (ctx->decision.slot_count > 0 && ctx->zone->engine != NULL)
		/* ESTALE (a reload changed the limit, the lease expired) and
		 * EDOUBLE cannot be acted upon: the slot is gone either way. */
		(void)sluice_engine_release(ctx->zone->engine, &ctx->decision);
	ctx->decision.slot_count = 0;
}

ngx_http_sluice_ctx_t *ngx_http_sluice_get_ctx(ngx_http_request_t *r)
{
	ngx_http_sluice_ctx_t *ctx = ngx_http_get_module_ctx(r->main, ngx_http_sluice_module);
	if (ctx != NULL)
		return ctx;
	for (ngx_pool_cleanup_t *cln = r->main->pool->cleanup; cln != NULL; cln = cln->next) {
		if (cln->handler == ngx_http_sluice_cleanup) {
			ctx = cln->data;
			ngx_http_set_ctx(r->main, ctx, ngx_http_sluice_module);
			return ctx;
		}
	}
	return NULL;
}

/* ------------------------------------------------------------------------
 * The header fields.
 */
static void ngx_http_sluice_add_limit(const struct sluice_policy_spec *spec, uint32_t i,
				      const struct sluice_decision *dec, struct sluice_http_limit *out,
				      ngx_uint_t *n)
{
	struct sluice_http_limit *h = &out[(*n)++];

	ngx_memzero(h, sizeof *h);
	h->name = spec->limits[i].name;
	h->decision = *dec;
	h->quota = dec->limit;                 /* the count in force */
	h->window_ns = spec->limits[i].period_ns; /* 0 for concurrency: no window */
	h->resource = spec->limits[i].resource;   /* NULL: the custom family shows the name */
}

static int ngx_http_sluice_is_rate_like(uint8_t kind, ngx_flag_t with_calendar)
{
	return kind == SLUICE_POLICY_KIND_GCRA || kind == SLUICE_POLICY_KIND_SLIDING ||
	       (with_calendar && kind == SLUICE_POLICY_KIND_CALENDAR);
}

/* The limit describe= picks among the applied ones, or -1: the governing rule. */
static int ngx_http_sluice_described(const struct sluice_policy_spec *spec,
				     const struct sluice_decision *per, uint32_t applied)
{
	if (spec->describe == SLUICE_POLICY_DESCRIBE_GOVERNING)
		return -1;
	if (spec->describe != SLUICE_POLICY_DESCRIBE_TIGHTEST)
		return (applied & (UINT32_C(1) << spec->describe)) ? (int)spec->describe : -1;
	int best = -1;
	for (uint32_t i = 0; i < spec->limit_count; i++)
		if ((applied & (UINT32_C(1) << i)) && ngx_http_sluice_is_rate_like(spec->limits[i].kind, 0) &&
		    (best < 0 || per[i].remaining < per[best].remaining))
			best = (int)i;
	return best;
}

/* The limits the header fields describe (see the file's comment). */
static ngx_uint_t ngx_http_sluice_limits(const struct sluice_policy_spec *spec,
					 const struct sluice_engine_decision *ed,
					 const struct sluice_decision *per, struct sluice_http_limit *out)
{
	ngx_uint_t n = 0;
	uint32_t gov = ed->d.limit_index;
	int shown = ngx_http_sluice_described(spec, per, ed->applied);

	if (shown >= 0) {
		struct sluice_decision dec = per[shown];
		if (!ed->d.allowed) {
			dec.allowed = false;
			dec.reason = ed->d.reason;
			dec.retry_after_ns = ed->d.retry_after_ns;
		}
		ngx_http_sluice_add_limit(spec, (uint32_t)shown, &dec, out, &n);
	} else if (ed->d.allowed &&
		   (spec->limits[gov].kind == SLUICE_POLICY_KIND_CONCURRENCY ||
		    ((spec->families & SLUICE_HTTP_DRAFT11) && (ed->applied & ~(UINT32_C(1) << gov))))) {
		for (uint32_t i = 0; i < spec->limit_count; i++) {
			if (!(ed->applied & (UINT32_C(1) << i)) ||
			    !ngx_http_sluice_is_rate_like(spec->limits[i].kind, 1))
				continue;
			struct sluice_decision dec = {
				.allowed = true,
				.limit_index = i,
				.limit = per[i].limit,
				.remaining = per[i].remaining,
				.reset_ns = per[i].reset_ns,
			};
			ngx_http_sluice_add_limit(spec, i, &dec, out, &n);
		}
	} else {
		ngx_http_sluice_add_limit(spec, gov, &ed->d, out, &n);
	}
	if (ed->d.degraded && n > 0)
		out[0].decision.degraded = true; /* no rate-limit fields (sluice/http.h) */
	return n;
}

/* The policy's "dry-run header NAME: limit, limit" when dry-run limits
 * would have refused an admitted request, after the rate-limit fields in
 * ctx->field_bytes[used..]. */
static void ngx_http_sluice_dry_run_field(ngx_http_sluice_ctx_t *ctx, size_t used)
{
	const struct sluice_policy_spec *spec = ctx->zone->spec;
	uint32_t mask = ctx->decision.dry_run_refused;
	u_char *p = (u_char *)ctx->field_bytes + used, *start = p;
	u_char *end = (u_char *)ctx->field_bytes + sizeof ctx->field_bytes;

	if (spec->dry_run_header == NULL || mask == 0 || !ctx->decision.d.allowed ||
	    ctx->nfields == NGX_HTTP_SLUICE_FIELDS)
		return;
	for (uint32_t i = 0; i < spec->limit_count; i++) {
		if (!((mask >> i) & 1))
			continue;
		size_t len = ngx_strlen(spec->limits[i].name);
		if ((size_t)(end - p) < len + 2)
			return; /* no room: no field rather than a cut list */
		if (p != start)
			p = ngx_cpymem(p, ", ", 2);
		p = ngx_cpymem(p, spec->limits[i].name, len);
	}
	struct sluice_http_field *f = &ctx->fields[ctx->nfields++];
	f->name = spec->dry_run_header;
	f->name_len = ngx_strlen(spec->dry_run_header);
	f->value = (const char *)start;
	f->value_len = (size_t)(p - start);
}

static void ngx_http_sluice_render_fields(ngx_http_request_t *r, ngx_http_sluice_ctx_t *ctx,
					  const struct sluice_decision *per)
{
	const struct sluice_policy_spec *spec = ctx->zone->spec;
	struct sluice_http_limit limits[SLUICE_POLICY_MAX_LIMITS];
	size_t size = 0, nfields = 0;

	ngx_uint_t n = ctx->decision.governed ? ngx_http_sluice_limits(spec, &ctx->decision, per, limits) : 0;
	int rc = n == 0 ? SLUICE_OK
			: sluice_http_render_custom(spec->families, &spec->custom, limits, n, ctx->now_ns,
						    ctx->field_bytes, sizeof ctx->field_bytes, &size,
						    ctx->fields, NGX_HTTP_SLUICE_FIELDS, &nfields);
	if (rc != SLUICE_OK) {
		ngx_log_error(NGX_LOG_ERR, r->connection->log, 0, "sluice: header fields: %s",
			      sluice_strerror(rc));
		nfields = 0;
		size = 0;
	}
	ctx->nfields = nfields;
	ngx_http_sluice_dry_run_field(ctx, size);
}

static ngx_int_t ngx_http_sluice_header_filter(ngx_http_request_t *r)
{
	ngx_http_sluice_ctx_t *ctx;

	if (r != r->main || (ctx = ngx_http_sluice_get_ctx(r)) == NULL || ctx->dry_run)
		return ngx_http_next_header_filter(r);
	for (ngx_uint_t i = 0; i < ctx->nfields; i++) {
		ngx_table_elt_t *h = ngx_list_push(&r->headers_out.headers);
		if (h == NULL)
			return NGX_ERROR;
		h->hash = 1;
		h->key.data = (u_char *)ctx->fields[i].name;
		h->key.len = ctx->fields[i].name_len;
		h->value.data = (u_char *)ctx->fields[i].value;
		h->value.len = ctx->fields[i].value_len;
		h->lowcase_key = NULL;
	}
	ctx->nfields = 0; /* once, should the header filter run again */
	return ngx_http_next_header_filter(r);
}

ngx_int_t ngx_http_sluice_filter_init(ngx_conf_t *cf)
{
	(void)cf;
	ngx_http_next_header_filter = ngx_http_top_header_filter;
	ngx_http_top_header_filter = ngx_http_sluice_header_filter;
	return NGX_OK;
}

/* ------------------------------------------------------------------------
 * The refusal's answer: the policy's answer for the refusal's reason
 * ("answer rate|quota|concurrency|capacity status ... type ... body ..."),
 * its template rendered with the governing decision; else 429 and the
 * policy's body style.
 */
static ngx_int_t ngx_http_sluice_refuse(ngx_http_request_t *r, ngx_http_sluice_ctx_t *ctx)
{
	static const uint8_t by_reason[] = {
		[SLUICE_REASON_NONE] = SLUICE_POLICY_ANSWER_RATE,
		[SLUICE_REASON_RATE] = SLUICE_POLICY_ANSWER_RATE,
		[SLUICE_REASON_QUOTA] = SLUICE_POLICY_ANSWER_QUOTA,
		[SLUICE_REASON_CONCURRENCY] = SLUICE_POLICY_ANSWER_CONCURRENCY,
		[SLUICE_REASON_CAPACITY] = SLUICE_POLICY_ANSWER_CAPACITY,
		[SLUICE_REASON_NEVER] = SLUICE_POLICY_ANSWER_RATE,
#ifdef SLUICE_IDENTITY_MAX /* sluice/identity.h: a required identity missing */
		[SLUICE_REASON_IDENTITY] = SLUICE_POLICY_ANSWER_IDENTITY,
#endif
	};
	ngx_http_sluice_zone_t *z = ctx->zone;
	const struct sluice_policy_spec *spec = z->spec;
	const struct sluice_decision *d = &ctx->decision.d;
	uint8_t k = d->reason < sizeof by_reason ? by_reason[d->reason] : SLUICE_POLICY_ANSWER_RATE;
	const struct sluice_policy_answer *a = &spec->answers[k];
	const char *type;
	size_t cap = 512, size = 0;
	u_char *body = NULL;
	int rc = SLUICE_ETRUNC;

	if (ngx_http_discard_request_body(r) != NGX_OK)
		return NGX_HTTP_INTERNAL_SERVER_ERROR;
	if (a->status != 0) {
		/* The refusing limit and its first scope; a refusal of the
		 * request itself names no limit, and its scope is the engine's. */
		const struct sluice_policy_limit *l =
			d->limit_index < spec->limit_count ? &spec->limits[d->limit_index] : NULL;
		const char *scope = NULL;
		for (uint32_t s = 0; l != NULL && s < spec->scope_count && scope == NULL; s++)
			if (l->scope_mask & (UINT32_C(1) << s))
				scope = spec->scopes[s];
		if (l == NULL && ctx->decision.scope >= 0 && (uint32_t)ctx->decision.scope < spec->scope_count)
			scope = spec->scopes[ctx->decision.scope];
		const char *limit_name = l != NULL ? l->name : "";
		struct sluice_template_values tv = {
			.decision = *d,
			.now_unix_ns = ctx->now_ns,
			.status = a->status,
			.limit_name = limit_name,
			.limit_name_len = ngx_strlen(limit_name),
			.scope = scope,
			.scope_len = scope ? ngx_strlen(scope) : 0,
			.policy = spec->name,
			.policy_len = ngx_strlen(spec->name),
		};
		for (int tries = 0; rc == SLUICE_ETRUNC && tries < 2; tries++, cap = size) {
			if ((body = ngx_pnalloc(r->pool, cap)) == NULL)
				return NGX_HTTP_INTERNAL_SERVER_ERROR;
			rc = a->body_len ? sluice_template_render(&z->answers[k], &tv, (char *)body, cap, &size)
					 : (size = 1, SLUICE_OK);
		}
		r->headers_out.status = a->status;
		type = a->content_type;
	} else {
		for (int tries = 0; rc == SLUICE_ETRUNC && tries < 2; tries++, cap = size) {
			if ((body = ngx_pnalloc(r->pool, cap)) == NULL)
				return NGX_HTTP_INTERNAL_SERVER_ERROR;
			rc = sluice_http_render_body(spec->body, d, (char *)body, cap, &size);
		}
		r->headers_out.status = NGX_HTTP_TOO_MANY_REQUESTS;
		type = sluice_http_body_content_type(spec->body);
	}
	if (rc != SLUICE_OK)
		return NGX_HTTP_INTERNAL_SERVER_ERROR;
	size_t len = size - 1; /* without the NUL */

	r->headers_out.content_length_n = (off_t)len;
	if (type != NULL && type[0] != '\0') {
		r->headers_out.content_type.data = (u_char *)type;
		r->headers_out.content_type.len = ngx_strlen(type);
		r->headers_out.content_type_len = r->headers_out.content_type.len;
	}
	if (len == 0)
		r->header_only = 1;
	ngx_int_t nrc = ngx_http_send_header(r);
	if (nrc == NGX_ERROR || nrc > NGX_OK || r->header_only)
		return nrc;
	ngx_buf_t *b = ngx_calloc_buf(r->pool);
	if (b == NULL)
		return NGX_ERROR;
	b->pos = body;
	b->last = body + len;
	b->memory = 1;
	b->last_buf = 1;
	b->last_in_chain = 1;
	ngx_chain_t out = { .buf = b, .next = NULL };
	return ngx_http_output_filter(r, &out);
}

/* ------------------------------------------------------------------------
 * The decision.
 */

#ifdef SLUICE_IDENTITY_MAX
/* sluice_identity_extract() over the request as nginx parsed it: the target
 * as sent, every header field in order, the peer's address as text. */
static int ngx_http_sluice_extract(ngx_http_request_t *r, ngx_http_sluice_zone_t *z,
				   struct sluice_identity_set *set)
{
	ngx_uint_t n = 0;
	for (ngx_list_part_t *part = &r->headers_in.headers.part; part != NULL; part = part->next)
		n += part->nelts;
	struct sluice_header_view *hv = ngx_palloc(r->pool, (n ? n : 1) * sizeof *hv);
	if (hv == NULL)
		return SLUICE_ENOMEM;
	n = 0;
	for (ngx_list_part_t *part = &r->headers_in.headers.part; part != NULL; part = part->next) {
		ngx_table_elt_t *h = part->elts;
		for (ngx_uint_t i = 0; i < part->nelts; i++)
			hv[n++] = (struct sluice_header_view){ (const char *)h[i].key.data, h[i].key.len,
							       (const char *)h[i].value.data, h[i].value.len };
	}
	const struct sluice_request_view view = {
		.target = (const char *)r->unparsed_uri.data,
		.target_len = r->unparsed_uri.len,
		.headers = hv,
		.header_count = n,
		.peer = (const char *)r->connection->addr_text.data,
		.peer_len = r->connection->addr_text.len,
	};
	const struct sluice_identity_options o = {
		.size = sizeof o,
		.secret = z->shared->secret,
		.secret_len = sizeof z->shared->secret,
	};
	return sluice_identity_extract(z->policy, &view, &o, set);
}
#endif

/* A check that failed: the target is the client's fault when the route
 * matcher refuses it (not origin-form, a bad escape: 400; too long: 414);
 * anything else is the server's (503). Nothing was consumed. */
static ngx_int_t ngx_http_sluice_error_status(int rc)
{
	switch (rc) {
	case SLUICE_EINVAL:
	case SLUICE_ESYNTAX:
		return NGX_HTTP_BAD_REQUEST;
	case SLUICE_ETOOBIG:
		return NGX_HTTP_REQUEST_URI_TOO_LARGE;
	default:
		return NGX_HTTP_SERVICE_UNAVAILABLE;
	}
}

ngx_int_t ngx_http_sluice_access_handler(ngx_http_request_t *r)
{
	ngx_http_sluice_loc_conf_t *slcf = ngx_http_get_module_loc_conf(r, ngx_http_sluice_module);
	ngx_http_sluice_zone_t *z = slcf->zone;
	struct sluice_identity ids[SLUICE_POLICY_MAX_SCOPES];
	char hashed[SLUICE_POLICY_MAX_SCOPES][33];
	struct sluice_decision per[SLUICE_POLICY_MAX_LIMITS];
	struct sluice_engine_request er;
	ngx_http_sluice_ctx_t *ctx;
	ngx_pool_cleanup_t *cln;

	if (z == NULL || z->engine == NULL || r != r->main || ngx_http_sluice_get_ctx(r) != NULL)
		return NGX_DECLINED;

	cln = ngx_pool_cleanup_add(r->pool, sizeof *ctx);
	if (cln == NULL)
		return NGX_HTTP_INTERNAL_SERVER_ERROR;
	ctx = cln->data;
	ctx->zone = z;
	ctx->decision.slot_count = 0;
	ctx->refused = 0;
	ctx->error = 1; /* until the check fills the decision */
	ctx->nfields = 0;
	ctx->dry_run = slcf->dry_run ? 1 : 0;
	cln->handler = ngx_http_sluice_cleanup;
	ngx_http_set_ctx(r, ctx, ngx_http_sluice_module);

	const struct sluice_policy_spec *spec = z->spec;
	int32_t tier = SLUICE_POLICY_NO_TIER;
#ifdef SLUICE_IDENTITY_MAX
	/* The scopes no sluice_identity names, and the tier, as the policy
	 * declares them ("scope NAME from SOURCE", "tier from map"). */
	struct sluice_identity_set *set = ngx_palloc(r->pool, sizeof *set);
	if (set == NULL)
		return NGX_HTTP_INTERNAL_SERVER_ERROR;
	int xrc = ngx_http_sluice_extract(r, z, set);
	if (xrc != SLUICE_OK) {
		/* An ambiguous identity (given twice, differently): the
		 * application behind might read either one. */
		ngx_log_error(NGX_LOG_INFO, r->connection->log, 0, "sluice: identities: %s", sluice_strerror(xrc));
		return ctx->dry_run ? NGX_DECLINED : NGX_HTTP_BAD_REQUEST;
	}
	tier = set->tier;
#endif
	for (uint32_t s = 0; s < spec->scope_count; s++) {
		ngx_str_t v = ngx_null_string;
#ifdef SLUICE_IDENTITY_MAX
		if (slcf->by_scope[s] == NULL) {
			ids[s] = set->ids[s];
			continue;
		}
#endif
		if (slcf->by_scope[s] != NULL && ngx_http_complex_value(r, slcf->by_scope[s], &v) != NGX_OK)
			return NGX_HTTP_INTERNAL_SERVER_ERROR;
		if (v.len > SLUICE_ENGINE_MAX_IDENTITY) {
			/* A long token (a JWT) keys its state by a keyed hash of it. */
			XXH128_hash_t x = XXH3_128bits_withSecret(v.data, v.len, z->shared->secret,
								 sizeof z->shared->secret);
			snprintf(hashed[s], sizeof hashed[s], "%016llx%016llx", (unsigned long long)x.high64,
				 (unsigned long long)x.low64);
			v.data = (u_char *)hashed[s];
			v.len = 32;
		}
		/* An empty value is no identity: the scope is absent (the
		 * policy's rule for a missing identity applies). */
		ids[s].bytes = v.len > 0 ? v.data : NULL;
		ids[s].len = v.len;
	}

	ngx_memzero(&er, sizeof er);
	er.method = (const char *)r->method_name.data;
	er.method_len = r->method_name.len;
	er.path = (const char *)r->unparsed_uri.data; /* as sent; the engine cuts the query */
	er.path_len = r->unparsed_uri.len;
	er.identities = ids;
	er.identity_count = spec->scope_count;
	er.tier = tier;
	if (slcf->tier != NULL) {
		er.tier = SLUICE_POLICY_NO_TIER;
		/* The tier by name: an empty or unknown name is no tier (the
		 * base numbers). */
		ngx_str_t t;
		if (ngx_http_complex_value(r, slcf->tier, &t) != NGX_OK)
			return NGX_HTTP_INTERNAL_SERVER_ERROR;
		for (uint32_t i = 0; i < spec->tier_count; i++)
			if (ngx_strlen(spec->tiers[i].name) == t.len &&
			    ngx_strncmp(spec->tiers[i].name, t.data, t.len) == 0)
				er.tier = (int32_t)i;
	}
	er.cost = 1;
	er.now_ns = ctx->now_ns = sluice_realtime_ns();
	er.limit_decisions = per;
	er.limit_decisions_cap = SLUICE_POLICY_MAX_LIMITS;

	int rc = sluice_engine_check(z->engine, &er, &ctx->decision);
	if (rc != SLUICE_OK) {
		ctx->decision.slot_count = 0;
		ngx_log_error(NGX_LOG_INFO, r->connection->log, 0, "sluice: check failed: %s",
			      sluice_strerror(rc));
		return ctx->dry_run ? NGX_DECLINED : ngx_http_sluice_error_status(rc);
	}
	ctx->error = 0;
	ngx_http_sluice_render_fields(r, ctx, per); /* none when no limit applies */
	if (ctx->decision.d.allowed)
		return NGX_DECLINED;
	/* Refused: by a limit (governed), or before any limit when the engine
	 * refuses the request itself (no limit_index then). */

	ctx->refused = 1;
	ngx_log_error(NGX_LOG_INFO, r->connection->log, 0, "sluice: refused by limit \"%s\" of zone \"%V\"%s",
		      ctx->decision.governed ? ctx->decision.limit_name : "-", &z->name,
		      ctx->dry_run ? ", dry run" : "");
	if (ctx->dry_run)
		return NGX_DECLINED;
	/* Answer here and end the phases, as the access phase's checker does
	 * for a status code (ngx_http_core_access_phase). */
	ngx_http_finalize_request(r, ngx_http_sluice_refuse(r, ctx));
	return NGX_DONE;
}

ngx_int_t ngx_http_sluice_log_handler(ngx_http_request_t *r)
{
	ngx_http_sluice_ctx_t *ctx = ngx_http_sluice_get_ctx(r);
	if (ctx != NULL)
		ngx_http_sluice_cleanup(ctx);
	return NGX_OK;
}
