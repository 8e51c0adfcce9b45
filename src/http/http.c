/*
 * Rendering rate-limit header fields and 429 bodies (server side).
 *
 * Everything goes through one sluice_sf_writer over the caller's buffer, so
 * truncation is detected once, at the end, and the writer's running length
 * is the size needed. Field values are Structured Fields where the format
 * says so (draft-06 and later): names are SF Strings, numbers SF Integers
 * clamped to the RFC 9651 range, pk a padded Byte Sequence. X-RateLimit-*
 * and Retry-After are plain decimal numbers.
 *
 * Durations become whole seconds rounded up: a client that waits exactly
 * the rendered time must not arrive before the limiter would admit it.
 */
#include <sluice/http.h>
#include <sluice/sf.h>

#include <string.h>

#include "common/util_internal.h"
#include "http/http_internal.h"

#define NS_PER_MS 1000000ull

static uint64_t ceil_div(uint64_t a, uint64_t b)
{
	return a / b + (a % b != 0);
}

uint64_t sluice__http_wait_units(uint64_t wait_ns, uint64_t unit_ns)
{
	if (wait_ns == SLUICE_NEVER)
		return (uint64_t)SLUICE_SF_INTEGER_MAX; /* "never": the largest wait */
	uint64_t u = ceil_div(wait_ns, unit_ns);
	if (u == 0)
		u = 1;
	return SLUICE_MIN(u, (uint64_t)SLUICE_SF_INTEGER_MAX);
}

uint64_t sluice_http_retry_after_s(const struct sluice_decision *d)
{
	if (d == NULL || d->allowed)
		return 0;
	return sluice__http_wait_units(d->retry_after_ns, SLUICE_NS_PER_SEC);
}

static uint64_t quota_of(const struct sluice_http_limit *l)
{
	return l->quota != 0 ? l->quota : l->decision.limit;
}

static uint64_t window_s(const struct sluice_http_limit *l)
{
	return SLUICE_MAX(ceil_div(l->window_ns, SLUICE_NS_PER_SEC), 1);
}

/* Index of the governing limit: a denying one with the longest wait, else
 * the least remaining, ties to the longest reset, then the first. */
static size_t governing(const struct sluice_http_limit *limits, size_t n)
{
	size_t g = 0;

	for (size_t i = 1; i < n; i++) {
		const struct sluice_decision *a = &limits[i].decision, *b = &limits[g].decision;
		bool better;
		if (a->allowed != b->allowed)
			better = !a->allowed;
		else if (!a->allowed && a->retry_after_ns != b->retry_after_ns)
			better = a->retry_after_ns > b->retry_after_ns;
		else if (a->remaining != b->remaining)
			better = a->remaining < b->remaining;
		else
			better = a->reset_ns > b->reset_ns;
		if (better)
			g = i;
	}
	return g;
}

/* Output as header lines or as name/value pairs. */
struct emitter {
	struct sluice_sf_writer w;
	struct sluice_http_field *fields; /* NULL: header lines */
	size_t max_fields;
	size_t nfields;
	size_t value_start;
};

static void field_begin(struct emitter *e, const char *name)
{
	e->value_start = e->w.len;
	if (e->fields == NULL) {
		sluice_sf_write_raw(&e->w, name, strlen(name));
		sluice_sf_write_raw(&e->w, ": ", 2);
		return;
	}
	if (e->nfields < e->max_fields) {
		e->fields[e->nfields].name = name;
		e->fields[e->nfields].name_len = strlen(name);
	}
}

static void field_end(struct emitter *e)
{
	if (e->fields == NULL) {
		sluice_sf_write_raw(&e->w, "\r\n", 2);
	} else {
		if (e->nfields < e->max_fields) {
			e->fields[e->nfields].value = e->w.buf + e->value_start;
			e->fields[e->nfields].value_len = e->w.len - e->value_start;
		}
		sluice_sf_write_raw(&e->w, "", 1); /* the value's NUL */
	}
	e->nfields++;
}

static void write_cstring(struct sluice_sf_writer *w, const char *s)
{
	sluice_sf_write_string(w, s, strlen(s));
}

static void field_uint(struct emitter *e, const char *name, uint64_t v)
{
	field_begin(e, name);
	sluice_sf_write_uint_clamped(&e->w, v);
	field_end(e);
}

static void render_draft11(struct emitter *e, const struct sluice_http_limit *limits, size_t n)
{
	field_begin(e, "RateLimit-Policy");
	for (size_t i = 0; i < n; i++) {
		const struct sluice_http_limit *l = &limits[i];
		if (i > 0)
			sluice_sf_write_raw(&e->w, ", ", 2);
		write_cstring(&e->w, l->name);
		sluice_sf_write_raw(&e->w, ";q=", 3);
		sluice_sf_write_uint_clamped(&e->w, quota_of(l));
		if (l->quota_unit != NULL) {
			sluice_sf_write_raw(&e->w, ";qu=", 4);
			write_cstring(&e->w, l->quota_unit);
		}
		if (l->window_ns != 0) {
			sluice_sf_write_raw(&e->w, ";w=", 3);
			sluice_sf_write_uint_clamped(&e->w, window_s(l));
		}
		if (l->partition_key != NULL && l->partition_key_len > 0) {
			sluice_sf_write_raw(&e->w, ";pk=", 4);
			sluice_sf_write_binary(&e->w, l->partition_key, l->partition_key_len);
		}
	}
	field_end(e);
	field_begin(e, "RateLimit");
	for (size_t i = 0; i < n; i++) {
		const struct sluice_http_limit *l = &limits[i];
		if (i > 0)
			sluice_sf_write_raw(&e->w, ", ", 2);
		write_cstring(&e->w, l->name);
		sluice_sf_write_raw(&e->w, ";r=", 3);
		sluice_sf_write_uint_clamped(&e->w, l->decision.remaining);
		sluice_sf_write_raw(&e->w, ";t=", 3);
		sluice_sf_write_uint_clamped(&e->w, ceil_div(l->decision.reset_ns, SLUICE_NS_PER_SEC));
		if (l->partition_key != NULL && l->partition_key_len > 0) {
			sluice_sf_write_raw(&e->w, ";pk=", 4);
			sluice_sf_write_binary(&e->w, l->partition_key, l->partition_key_len);
		}
	}
	field_end(e);
}

/* draft-04..07 RateLimit-Policy: "100;w=60, 1000;w=86400". */
static void render_legacy_policy(struct emitter *e, const struct sluice_http_limit *limits, size_t n)
{
	bool any = false;

	for (size_t i = 0; i < n; i++)
		any = any || limits[i].window_ns != 0;
	if (!any)
		return;
	field_begin(e, "RateLimit-Policy");
	any = false;
	for (size_t i = 0; i < n; i++) {
		if (limits[i].window_ns == 0)
			continue;
		if (any)
			sluice_sf_write_raw(&e->w, ", ", 2);
		any = true;
		sluice_sf_write_uint_clamped(&e->w, quota_of(&limits[i]));
		sluice_sf_write_raw(&e->w, ";w=", 3);
		sluice_sf_write_uint_clamped(&e->w, window_s(&limits[i]));
	}
	field_end(e);
}

bool sluice_http_is_token(const char *name, size_t len)
{
	static const char extra[] = "!#$%&'*+-.^_`|~";

	if (name == NULL || len == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = name[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			  (c != '\0' && memchr(extra, c, sizeof extra - 1) != NULL);
		if (!ok)
			return false;
	}
	return true;
}

static bool printable(const char *s)
{
	for (; *s != '\0'; s++)
		if (*s < 0x20 || *s > 0x7e)
			return false;
	return true;
}

/* The custom family's names are tokens (NULL: not rendered). */
static bool valid_custom(const struct sluice_http_custom *c)
{
	const char *const names[] = {c->limit, c->remaining, c->reset, c->used, c->resource};

	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if (names[i] != NULL && !sluice_http_is_token(names[i], strlen(names[i])))
			return false;
	return c->reset_form <= SLUICE_HTTP_RESET_UNIX_MS;
}

static bool valid_families(unsigned f, const struct sluice_http_custom *custom)
{
	unsigned ietf = f & (SLUICE_HTTP_DRAFT11 | SLUICE_HTTP_DRAFT07 | SLUICE_HTTP_DRAFT06);
	unsigned x = f & (SLUICE_HTTP_X_DELTA | SLUICE_HTTP_X_UNIX_S | SLUICE_HTTP_X_UNIX_MS);
	unsigned own = f & SLUICE_HTTP_CUSTOM;

	if ((f & ~(ietf | x | own | SLUICE_HTTP_RETRY_AFTER)) != 0)
		return false;
	if (own != 0 && (custom == NULL || !valid_custom(custom)))
		return false;
	return (ietf & (ietf - 1)) == 0 && (x & (x - 1)) == 0;
}

/* The reset of decision d: delta seconds or a Unix time. */
static uint64_t reset_value(unsigned form, const struct sluice_decision *d, uint64_t now_unix_ns)
{
	uint64_t at = sluice__add_sat(now_unix_ns, d->reset_ns);

	switch (form) {
	case SLUICE_HTTP_RESET_UNIX_S:
		return ceil_div(at, SLUICE_NS_PER_SEC);
	case SLUICE_HTTP_RESET_UNIX_MS:
		return ceil_div(at, NS_PER_MS);
	default:
		return ceil_div(d->reset_ns, SLUICE_NS_PER_SEC);
	}
}

/* The custom family for the governing limit g. */
static void render_custom(struct emitter *e, const struct sluice_http_custom *c, const struct sluice_http_limit *g,
			  uint64_t now_unix_ns)
{
	uint64_t quota = quota_of(g), left = g->decision.remaining;

	if (c->limit != NULL)
		field_uint(e, c->limit, quota);
	if (c->remaining != NULL)
		field_uint(e, c->remaining, left);
	if (c->reset != NULL)
		field_uint(e, c->reset, reset_value(c->reset_form, &g->decision, now_unix_ns));
	if (c->used != NULL)
		field_uint(e, c->used, left < quota ? quota - left : 0);
	const char *res = g->resource != NULL ? g->resource : g->name;
	if (c->resource != NULL && res != NULL) {
		field_begin(e, c->resource);
		sluice_sf_write_raw(&e->w, res, strlen(res));
		field_end(e);
	}
}

static int render(unsigned families, const struct sluice_http_custom *custom, const struct sluice_http_limit *limits,
		  size_t n, uint64_t now_unix_ns, struct emitter *e, size_t *size)
{
	bool degraded = false, denied = false;
	uint64_t wait_ns = 0;

	if (limits == NULL || n == 0 || !valid_families(families, custom)) {
		if (size != NULL)
			*size = 0;
		return SLUICE_EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		degraded = degraded || limits[i].decision.degraded;
		if (!limits[i].decision.allowed) {
			denied = true;
			wait_ns = SLUICE_MAX(wait_ns, limits[i].decision.retry_after_ns);
		}
		if (((families & SLUICE_HTTP_DRAFT11) && limits[i].name == NULL) ||
		    ((families & SLUICE_HTTP_CUSTOM) && limits[i].resource != NULL && !printable(limits[i].resource))) {
			if (size != NULL)
				*size = 0;
			return SLUICE_EINVAL;
		}
	}

	if (denied && (families & SLUICE_HTTP_RETRY_AFTER)) {
		struct sluice_decision d = {.allowed = false, .retry_after_ns = wait_ns};
		field_uint(e, "Retry-After", sluice_http_retry_after_s(&d));
	}
	if (!degraded) {
		const struct sluice_http_limit *g = &limits[governing(limits, n)];
		uint64_t reset_s = ceil_div(g->decision.reset_ns, SLUICE_NS_PER_SEC);

		if (families & SLUICE_HTTP_DRAFT11) {
			render_draft11(e, limits, n);
		} else if (families & SLUICE_HTTP_DRAFT07) {
			render_legacy_policy(e, limits, n);
			field_begin(e, "RateLimit");
			sluice_sf_write_raw(&e->w, "limit=", 6);
			sluice_sf_write_uint_clamped(&e->w, quota_of(g));
			sluice_sf_write_raw(&e->w, ", remaining=", 12);
			sluice_sf_write_uint_clamped(&e->w, g->decision.remaining);
			sluice_sf_write_raw(&e->w, ", reset=", 8);
			sluice_sf_write_uint_clamped(&e->w, reset_s);
			field_end(e);
		} else if (families & SLUICE_HTTP_DRAFT06) {
			field_uint(e, "RateLimit-Limit", quota_of(g));
			field_uint(e, "RateLimit-Remaining", g->decision.remaining);
			field_uint(e, "RateLimit-Reset", reset_s);
			render_legacy_policy(e, limits, n);
		}
		if (families & (SLUICE_HTTP_X_DELTA | SLUICE_HTTP_X_UNIX_S | SLUICE_HTTP_X_UNIX_MS)) {
			unsigned form = (families & SLUICE_HTTP_X_DELTA)    ? SLUICE_HTTP_RESET_DELTA
					: (families & SLUICE_HTTP_X_UNIX_S) ? SLUICE_HTTP_RESET_UNIX_S
									    : SLUICE_HTTP_RESET_UNIX_MS;
			uint64_t reset = reset_value(form, &g->decision, now_unix_ns);
			field_uint(e, "X-RateLimit-Limit", quota_of(g));
			field_uint(e, "X-RateLimit-Remaining", g->decision.remaining);
			field_uint(e, "X-RateLimit-Reset", reset);
		}
		if (families & SLUICE_HTTP_CUSTOM)
			render_custom(e, custom, g, now_unix_ns);
	}
	int rc = sluice_sf_writer_finish(&e->w, size);
	if (rc == 0 && e->fields != NULL && e->nfields > e->max_fields)
		rc = SLUICE_ETRUNC;
	return rc;
}

int sluice_http_render_headers(unsigned families, const struct sluice_http_limit *limits, size_t n,
			       uint64_t now_unix_ns, char *buf, size_t cap, size_t *size)
{
	struct emitter e = {.fields = NULL};

	sluice_sf_writer_init(&e.w, buf, cap);
	return render(families, NULL, limits, n, now_unix_ns, &e, size);
}

/* Name/value pairs (fields may be NULL: a count only). */
static int render_pairs(unsigned families, const struct sluice_http_custom *custom,
			const struct sluice_http_limit *limits, size_t n, uint64_t now_unix_ns, char *buf, size_t cap,
			size_t *size, struct sluice_http_field *fields, size_t max_fields, size_t *nfields)
{
	/* a placeholder array keeps "fields mode" when the caller passes none */
	struct sluice_http_field none[1];
	struct emitter e = {.fields = fields != NULL ? fields : none,
			    .max_fields = fields != NULL ? max_fields : 0};

	sluice_sf_writer_init(&e.w, buf, cap);
	int rc = render(families, custom, limits, n, now_unix_ns, &e, size);
	if (nfields != NULL)
		*nfields = e.nfields;
	/* the writer's finish NUL lands after the last value's own NUL: the
	 * needed size counts it, harmlessly */
	return rc;
}

int sluice_http_render_fields(unsigned families, const struct sluice_http_limit *limits, size_t n,
			      uint64_t now_unix_ns, char *buf, size_t cap, size_t *size,
			      struct sluice_http_field *fields, size_t max_fields, size_t *nfields)
{
	return render_pairs(families, NULL, limits, n, now_unix_ns, buf, cap, size, fields, max_fields, nfields);
}

int sluice_http_render_custom(unsigned families, const struct sluice_http_custom *custom,
			      const struct sluice_http_limit *limits, size_t n, uint64_t now_unix_ns, char *buf,
			      size_t cap, size_t *size, struct sluice_http_field *fields, size_t max_fields,
			      size_t *nfields)
{
	if (fields != NULL)
		return render_pairs(families, custom, limits, n, now_unix_ns, buf, cap, size, fields, max_fields,
				    nfields);
	struct emitter e = {.fields = NULL};

	sluice_sf_writer_init(&e.w, buf, cap);
	return render(families, custom, limits, n, now_unix_ns, &e, size);
}

int sluice_http_render_body(enum sluice_http_body_style style, const struct sluice_decision *d,
			    char *buf, size_t cap, size_t *size)
{
	struct sluice_sf_writer w;

	if (size != NULL)
		*size = 0;
	if (d == NULL || d->allowed)
		return SLUICE_EINVAL;
	sluice_sf_writer_init(&w, buf, cap);
	switch (style) {
	case SLUICE_HTTP_BODY_JSON_DATA_ERROR: {
		static const char body[] =
			"{\"data\":null,\"error\":{\"code\":\"RATE_LIMITED\",\"message\":\"Too many requests\"}}";
		sluice_sf_write_raw(&w, body, sizeof(body) - 1);
		break;
	}
	case SLUICE_HTTP_BODY_JSON_ERROR: {
		uint64_t s = sluice_http_retry_after_s(d);
		if (d->reason == SLUICE_REASON_CONCURRENCY) {
			static const char head[] = "{\"error\":{\"code\":\"concurrent_limit\",\"retryAfterSec\":";
			sluice_sf_write_raw(&w, head, sizeof(head) - 1);
		} else {
			static const char head[] =
				"{\"error\":{\"code\":\"rate_limited\",\"message\":\"Too many requests. Retry after ";
			static const char mid[] = " seconds.\",\"retryAfterSec\":";
			sluice_sf_write_raw(&w, head, sizeof(head) - 1);
			sluice_sf_write_uint_clamped(&w, s);
			sluice_sf_write_raw(&w, mid, sizeof(mid) - 1);
		}
		sluice_sf_write_uint_clamped(&w, s);
		sluice_sf_write_raw(&w, "}}", 2);
		break;
	}
	case SLUICE_HTTP_BODY_EMPTY:
		break;
	default:
		return SLUICE_EINVAL;
	}
	return sluice_sf_writer_finish(&w, size);
}

const char *sluice_http_body_content_type(enum sluice_http_body_style style)
{
	switch (style) {
	case SLUICE_HTTP_BODY_JSON_DATA_ERROR:
	case SLUICE_HTTP_BODY_JSON_ERROR:
		return "application/json";
	default:
		return NULL;
	}
}
