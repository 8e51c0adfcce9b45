/*
 * parse_headers.c - the grammar of the directives that shape the response's
 * rate-limit header fields: "headers" (a family the HTTP layer knows, or
 * "custom" with the provider's own field names) and "dry-run" (every limit
 * in shadow mode, and the header that names a would-be refusal).
 *
 *   headers <family> [reset=delta|unix-s|unix-ms] [retry-after=yes|no]
 *           [describe=governing|tightest|<limit>]
 *   headers custom [limit=<name>] [remaining=<name>] [reset=<name>]
 *           [used=<name>] [resource=<name>] [reset-form=delta|unix-s|unix-ms]
 *           [retry-after=yes|no] [describe=...]
 *   dry-run [all] [header <name>]
 *
 * A header name is an HTTP token (RFC 9110 5.6.2), at most
 * SLUICE_POLICY_MAX_HEADER_NAME bytes, checked here so a bad one is
 * reported at its own column; the renderer checks again (http.c), for
 * embedders that fill struct sluice_http_custom themselves.
 */
#include <string.h>

#include "policy/parse_internal.h"

int sluice__parse_header_name(struct parser *p, const struct word *w, const char *what, char out[HEADER_NAME_CAP])
{
	if (w->len == 0)
		return sluice__parse_fail(p, SLUICE_ESYNTAX, w->col, "expected %s (a header name)", what);
	if (w->len > SLUICE_POLICY_MAX_HEADER_NAME)
		return sluice__parse_fail(p, SLUICE_ETOOBIG, w->col, "%s longer than %d bytes", what,
					  SLUICE_POLICY_MAX_HEADER_NAME);
	for (uint32_t i = 0; i < w->len; i++)
		if (!sluice_http_is_token(w->s + i, 1))
			return sluice__parse_fail(p, SLUICE_ESYNTAX, w->col + (w->quoted ? 1 : 0) + i,
						  "'%c' cannot be in %s (an HTTP token: letters, digits and "
						  "!#$%%&'*+-.^_`|~)",
						  w->s[i], what);
	memcpy(out, w->s, w->len);
	out[w->len] = '\0';
	return SLUICE_OK;
}

/* "key=" at the start of an unquoted word: the rest as a word of its own. */
static bool option(const struct word *w, const char *key, struct word *value)
{
	size_t n = strlen(key);

	if (w->quoted || w->len <= n || memcmp(w->s, key, n) != 0)
		return false;
	*value = (struct word){w->s + n, w->len - (uint32_t)n, w->col + (uint32_t)n, false};
	return true;
}

static int reset_form(struct parser *p, const struct word *v, int *out)
{
	static const char *const forms[] = {"delta", "unix-s", "unix-ms"};

	for (int i = 0; i < 3; i++)
		if (sluice__parse_word_is(v, forms[i])) {
			*out = i;
			return SLUICE_OK;
		}
	return sluice__parse_fail(p, SLUICE_ESYNTAX, v->col, "expected delta, unix-s or unix-ms");
}

static int describe_option(struct parser *p, const struct word *name)
{
	struct builder *b = p->b;
	int rc;

	if (sluice__parse_word_is(name, "governing")) {
		b->describe_kind = DESCRIBE_GOVERNING;
	} else if (sluice__parse_word_is(name, "tightest")) {
		b->describe_kind = DESCRIBE_TIGHTEST;
	} else {
		/* a limit, perhaps declared further down: finish() resolves it */
		if ((rc = sluice__parse_name_word(p, name, "a limit name", b->describe_name)) != SLUICE_OK)
			return rc;
		b->describe_kind = DESCRIBE_NAMED;
		b->describe_line = p->line;
		b->describe_col = name->col;
	}
	return SLUICE_OK;
}

int sluice__parse_d_headers(struct parser *p)
{
	/* The keywords and the HTTP layer's bits they stand for: an IETF family,
	 * X-RateLimit-* in the encoding of its reset, or the custom names. */
	static const char *const families[] = {"none", "draft-6", "draft-7", "draft-11", "x-ratelimit", "custom"};
	static const uint32_t family_bits[] = {0,
					       SLUICE_HTTP_DRAFT06,
					       SLUICE_HTTP_DRAFT07,
					       SLUICE_HTTP_DRAFT11,
					       SLUICE_HTTP_X_DELTA,
					       SLUICE_HTTP_CUSTOM};
	static const uint32_t x_reset_bits[] = {SLUICE_HTTP_X_DELTA, SLUICE_HTTP_X_UNIX_S, SLUICE_HTTP_X_UNIX_MS};
	static const char *const fields[CUSTOM_FIELDS] = {"limit=", "remaining=", "reset=", "used=", "resource="};
	struct builder *b = p->b;
	const struct word *w = NULL;
	struct word v;
	char buf[32];
	int rc;
	bool seen_reset = false, seen_form = false, seen_retry = false, seen_describe = false, retry_after = true;
	uint32_t reset_col = 0, form_col = 0, named = 0;
	int reset = 0;

	if (b->seen_headers)
		return sluice__parse_fail(p, SLUICE_EINVAL, p->w[0].col, "second 'headers' directive");
	if ((rc = sluice__parse_next_word(p, "a header family", &w)) != SLUICE_OK)
		return rc;
	int fam = -1;
	for (int i = 0; i < 6; i++)
		if (sluice__parse_word_is(w, families[i]))
			fam = i;
	if (fam < 0)
		return sluice__parse_fail(
			p, SLUICE_ESYNTAX, w->col,
			"unknown header family '%s': expected none, draft-6, draft-7, draft-11, x-ratelimit or custom",
			sluice__parse_show(w, buf));
	bool custom = family_bits[fam] == SLUICE_HTTP_CUSTOM;
	uint32_t family_col = w->col;
	while (p->pos < p->nw) {
		w = &p->w[p->pos++];
		int field = -1;
		for (int i = 0; custom && i < CUSTOM_FIELDS; i++)
			if (option(w, fields[i], &v))
				field = i;
		if (field >= 0) {
			if (named & (1u << field))
				return sluice__parse_fail(p, SLUICE_EINVAL, w->col, "duplicate '%s'", fields[field]);
			if ((rc = sluice__parse_header_name(p, &v, "a header name", b->custom[field])) != SLUICE_OK)
				return rc;
			named |= 1u << field;
		} else if (custom && option(w, "reset-form=", &v)) {
			if (seen_form)
				return sluice__parse_fail(p, SLUICE_EINVAL, w->col, "duplicate 'reset-form='");
			if ((rc = reset_form(p, &v, &reset)) != SLUICE_OK)
				return rc;
			seen_form = true;
			form_col = w->col;
		} else if (!custom && option(w, "reset=", &v)) {
			if (seen_reset)
				return sluice__parse_fail(p, SLUICE_EINVAL, w->col, "duplicate 'reset='");
			if ((rc = reset_form(p, &v, &reset)) != SLUICE_OK)
				return rc;
			seen_reset = true;
			reset_col = w->col;
		} else if (option(w, "retry-after=", &v)) {
			if (seen_retry)
				return sluice__parse_fail(p, SLUICE_EINVAL, w->col, "duplicate 'retry-after='");
			if (sluice__parse_word_is(&v, "yes"))
				retry_after = true;
			else if (sluice__parse_word_is(&v, "no"))
				retry_after = false;
			else
				return sluice__parse_fail(p, SLUICE_ESYNTAX, v.col,
							  "expected yes or no after 'retry-after='");
			seen_retry = true;
		} else if (option(w, "describe=", &v)) {
			if (seen_describe)
				return sluice__parse_fail(p, SLUICE_EINVAL, w->col, "duplicate 'describe='");
			if ((rc = describe_option(p, &v)) != SLUICE_OK)
				return rc;
			seen_describe = true;
		} else {
			return sluice__parse_fail(
				p, SLUICE_ESYNTAX, w->col, "unexpected '%s': expected %s", sluice__parse_show(w, buf),
				custom ? "limit=, remaining=, reset=, used=, resource=, reset-form=, retry-after= or "
					 "describe="
				       : "reset=..., retry-after=... or describe=...");
		}
	}
	if (custom && named == 0)
		return sluice__parse_fail(p, SLUICE_EINVAL, family_col,
					  "'headers custom' names no field: give at least one of limit=, remaining=, "
					  "reset=, used=, resource=");
	if (seen_form && !(named & (1u << CUSTOM_RESET)))
		return sluice__parse_fail(p, SLUICE_EINVAL, form_col, "'reset-form=' without 'reset=<name>'");
	if (reset != 0 && !custom && family_bits[fam] != SLUICE_HTTP_X_DELTA)
		return sluice__parse_fail(
			p, SLUICE_EINVAL, reset_col,
			"the IETF drafts define reset as delta seconds: only x-ratelimit takes unix-s or unix-ms");
	if (custom) {
		b->families = SLUICE_HTTP_CUSTOM;
		b->custom_reset_form = (uint8_t)reset;
	} else {
		b->families = family_bits[fam] == SLUICE_HTTP_X_DELTA ? x_reset_bits[reset] : family_bits[fam];
	}
	if (retry_after)
		b->families |= SLUICE_HTTP_RETRY_AFTER;
	b->seen_headers = true;
	return SLUICE_OK;
}

int sluice__parse_d_dry_run(struct parser *p)
{
	struct builder *b = p->b;
	const struct word *w = NULL;
	char buf[32];
	int rc;

	if (b->seen_dry_run)
		return sluice__parse_fail(p, SLUICE_EINVAL, p->w[0].col, "second 'dry-run' directive");
	if (p->pos == p->nw)
		return sluice__parse_fail(p, SLUICE_ESYNTAX, p->end_col,
					  "expected 'all' or 'header <name>' after 'dry-run'");
	while (p->pos < p->nw) {
		w = &p->w[p->pos++];
		if (sluice__parse_word_is(w, "all") && !b->dry_run_all) {
			b->dry_run_all = true;
		} else if (sluice__parse_word_is(w, "header") && b->dry_run_header[0] == '\0') {
			if ((rc = sluice__parse_next_word(p, "a header name", &w)) != SLUICE_OK)
				return rc;
			if ((rc = sluice__parse_header_name(p, w, "the dry-run header", b->dry_run_header)) != SLUICE_OK)
				return rc;
		} else {
			return sluice__parse_fail(p, SLUICE_ESYNTAX, w->col,
						  "unexpected '%s': expected 'all' or 'header <name>' (each once)",
						  sluice__parse_show(w, buf));
		}
	}
	b->seen_dry_run = true;
	return SLUICE_OK;
}
