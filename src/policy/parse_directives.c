/*
 * parse_directives.c - the grammar of the directives: policy, body, answer, fail, scope, tier,
 * limit and override (class and routes are in parse_routes.c, headers and
 * dry-run in parse_headers.c), and the dispatch on a line's first word.
 *
 * Each directive is a small recursive-descent function over the words of its
 * line (p->w, p->pos): it takes words in order, reports the column of the
 * first word it cannot accept and what it expected there, and ends with
 * sluice__parse_expect_end(). It fills the builder, whose fixed arrays are
 * bounded by the ceilings in policy.h, checked before every append, so a
 * directive never grows anything. Checks that need the whole text (tiers
 * against limits declared later) wait for finish() in policy_parse.c.
 */
#include <string.h>

#include <sluice/gcra.h>

#include "policy/parse_internal.h"

static int d_policy(struct parser *p)
{
	struct builder *b = p->b;
	const struct word *w = NULL;
	uint32_t n = 0;
	int rc;

	if (b->seen_policy)
		return sluice__parse_fail(p, SLUICE_EINVAL, p->w[0].col, "second 'policy' directive");
	if ((rc = sluice__parse_next_word(p, "the policy name (a quoted string)", &w)) != SLUICE_OK)
		return rc;
	rc = sluice__parse_string_word(p, w, "the policy name", true, (uint8_t *)b->title, SLUICE_POLICY_MAX_TITLE, &n);
	if (rc != SLUICE_OK)
		return rc;
	b->title[n] = '\0';
	b->seen_policy = true;
	return sluice__parse_expect_end(p);
}

static int d_body(struct parser *p)
{
	static const char *const bodies[] = {"", "json-data-error", "json-error", "empty"}; /* by value */
	struct builder *b = p->b;
	const struct word *w = NULL;
	char buf[32];
	int rc;

	if (b->seen_body)
		return sluice__parse_fail(p, SLUICE_EINVAL, p->w[0].col, "second 'body' directive");
	if ((rc = sluice__parse_next_word(p, "a body style", &w)) != SLUICE_OK)
		return rc;
	int s = -1;
	for (int i = SLUICE_HTTP_BODY_JSON_DATA_ERROR; i <= SLUICE_HTTP_BODY_EMPTY; i++)
		if (sluice__parse_word_is(w, bodies[i]))
			s = i;
	if (s < 0)
		return sluice__parse_fail(p, SLUICE_ESYNTAX, w->col,
					  "unknown body style '%s': expected json-data-error, json-error or empty",
					  sluice__parse_show(w, buf));
	b->body = (uint8_t)s;
	b->seen_body = true;
	return sluice__parse_expect_end(p);
}

/* The column of byte `offset` of a quoted word's decoded text (escapes
 * \" \\ \xHH as sluice__parse_string_word() decodes them). */
static uint32_t decoded_col(const struct word *w, size_t offset)
{
	uint32_t i = 0;
	for (size_t n = 0; n < offset && i < w->len; n++)
		i += w->s[i] != '\\' ? 1 : w->s[i + 1] == 'x' ? 4 : 2;
	return w->col + 1 + i;
}

/* Whether a content type is JSON: application/json or any "+json" type. */
static bool type_is_json(const char *t, uint32_t n)
{
	for (uint32_t i = 0; i + 4 <= n; i++)
		if ((t[i] | 0x20) == 'j' && (t[i + 1] | 0x20) == 's' && (t[i + 2] | 0x20) == 'o' &&
		    (t[i + 3] | 0x20) == 'n')
			return true;
	return false;
}

/*
 * answer <reason>[,<reason>...] status <code> [type "<content type>"] body "<template>"
 * The body is compiled here (sluice/template.h) so that a bad placeholder
 * is reported at its own line and column.
 */
static int d_answer(struct parser *p)
{
	static const char *const reasons[] = {"rate", "quota", "concurrency", "capacity", "identity"};
	struct builder *b = p->b;
	const struct word *w = NULL, *body = NULL;
	struct banswer a = {.type = "application/json"};
	char text[SLUICE_TEMPLATE_MAX_TEXT];
	uint32_t mask = 0;
	char buf[32];
	int rc;

	a.type_len = (uint32_t)strlen(a.type);
	a.line = p->line;
	if ((rc = sluice__parse_next_word(p, "a refusal reason", &w)) != SLUICE_OK)
		return rc;
	for (uint32_t i = 0, start = 0; i <= w->len; i++) {
		if (i < w->len && w->s[i] != ',')
			continue;
		const struct word r = {w->s + start, i - start, w->col + start, w->quoted};
		int k = -1;
		for (int j = 0; j < SLUICE_POLICY_ANSWER_COUNT; j++)
			if (sluice__parse_word_is(&r, reasons[j]))
				k = j;
		if (k < 0)
			return sluice__parse_fail(
				p, SLUICE_ESYNTAX, r.col,
				"unknown refusal reason '%s': expected rate, quota, concurrency, capacity or identity",
				sluice__parse_show(&r, buf));
		if (mask & (1u << k))
			return sluice__parse_fail(p, SLUICE_EINVAL, r.col, "reason '%s' twice", reasons[k]);
		if (b->answers[k].status != 0)
			return sluice__parse_fail(p, SLUICE_EINVAL, r.col, "second answer for '%s' (line %u)",
						  reasons[k], b->answers[k].line);
		mask |= 1u << k;
		start = i + 1;
	}
	bool seen_status = false, seen_type = false;
	while (p->pos < p->nw) {
		const struct word *kw = &p->w[p->pos++];
		uint64_t v;
		if (sluice__parse_word_is(kw, "status") && !seen_status) {
			if ((rc = sluice__parse_next_word(p, "a status code", &w)) != SLUICE_OK)
				return rc;
			if ((rc = sluice__parse_count_word(p, w, "a status code", &v)) != SLUICE_OK)
				return rc;
			if (v < 100 || v > 599)
				return sluice__parse_fail(p, SLUICE_ERANGE, w->col, "a status code is 100..599");
			a.status = (uint32_t)v;
			seen_status = true;
		} else if (sluice__parse_word_is(kw, "type") && !seen_type) {
			if ((rc = sluice__parse_next_word(p, "a content type", &w)) != SLUICE_OK)
				return rc;
			if ((rc = sluice__parse_string_word(p, w, "a content type", true, (uint8_t *)a.type,
							    SLUICE_POLICY_MAX_CONTENT_TYPE, &a.type_len)) !=
			    SLUICE_OK)
				return rc;
			a.type[a.type_len] = '\0';
			seen_type = true;
		} else if (sluice__parse_word_is(kw, "body") && body == NULL) {
			if ((rc = sluice__parse_next_word(p, "a body template", &body)) != SLUICE_OK)
				return rc;
			if (body->quoted && body->len == 0)
				a.body_len = 0; /* body "": no body */
			else if ((rc = sluice__parse_string_word(p, body, "a body template", false,
								 (uint8_t *)text, SLUICE_TEMPLATE_MAX_TEXT,
								 &a.body_len)) != SLUICE_OK)
				return rc;
			a.body_src = body->s;
			a.body_src_len = body->len;
		} else {
			return sluice__parse_fail(p, SLUICE_ESYNTAX, kw->col,
						  "unexpected '%s': expected status, type or body (each once)",
						  sluice__parse_show(kw, buf));
		}
	}
	if (!seen_status || body == NULL)
		return sluice__parse_fail(p, SLUICE_ESYNTAX, p->end_col,
					  "an answer needs 'status <code>' and 'body \"<template>\"'");
	a.json = type_is_json(a.type, a.type_len);
	struct sluice_template tpl;
	struct sluice_template_error terr;
	rc = sluice_template_compile(text, a.body_len, a.json ? SLUICE_TEMPLATE_JSON : SLUICE_TEMPLATE_PLAIN, &tpl,
				     &terr);
	if (rc != SLUICE_OK)
		return sluice__parse_fail(p, rc, decoded_col(body, terr.offset), "body template: %s", terr.message);
	for (int k = 0; k < SLUICE_POLICY_ANSWER_COUNT; k++)
		if (mask & (1u << k))
			b->answers[k] = a;
	return SLUICE_OK;
}

static int d_fail(struct parser *p)
{
	struct builder *b = p->b;
	const struct word *w = NULL;
	char buf[32];
	int rc;

	if (b->seen_fail)
		return sluice__parse_fail(p, SLUICE_EINVAL, p->w[0].col, "second 'fail' directive");
	if ((rc = sluice__parse_next_word(p, "open or closed", &w)) != SLUICE_OK)
		return rc;
	if (sluice__parse_word_is(w, "open"))
		b->fail = SLUICE_FAIL_OPEN;
	else if (sluice__parse_word_is(w, "closed"))
		b->fail = SLUICE_FAIL_CLOSED;
	else
		return sluice__parse_fail(p, SLUICE_ESYNTAX, w->col, "unexpected '%s': expected open or closed",
					  sluice__parse_show(w, buf));
	b->seen_fail = true;
	return sluice__parse_expect_end(p);
}

static int d_tier(struct parser *p)
{
	struct builder *b = p->b;
	const struct word *w = NULL;
	char name[NAME_CAP];
	uint64_t whole, frac = 0;
	uint32_t used;
	int rc;

	if ((rc = sluice__parse_next_word(p, "a tier name", &w)) != SLUICE_OK)
		return rc;
	if ((rc = sluice__parse_name_word(p, w, "a tier name", name)) != SLUICE_OK)
		return rc;
	for (uint32_t i = 0; i < b->ntiers; i++)
		if (strcmp(b->tiers[i].name, name) == 0)
			return sluice__parse_fail(p, SLUICE_EINVAL, w->col, "tier '%s' already declared", name);
	if (b->ntiers == SLUICE_POLICY_MAX_TIERS)
		return sluice__parse_fail(p, SLUICE_ETOOBIG, w->col, "more than %d tiers", SLUICE_POLICY_MAX_TIERS);
	if ((rc = sluice__parse_next_word(p, "a multiplier like x2 or x1.5", &w)) != SLUICE_OK)
		return rc;
	if (w->quoted || w->len < 2 || w->s[0] != 'x')
		return sluice__parse_fail(p, SLUICE_ESYNTAX, w->col, "expected a multiplier like x2 or x1.5");
	rc = sluice__parse_uint(p, w->s + 1, w->len - 1, w->col + 1, SLUICE_POLICY_MAX_MULTIPLIER / 1000,
				"the multiplier", &whole, &used);
	if (rc != SLUICE_OK)
		return rc;
	uint32_t i = 1 + used;
	if (i < w->len && w->s[i] == '.') {
		uint32_t digits = 0;
		i++;
		while (i < w->len && is_digit(w->s[i]) && digits < 3) {
			frac = frac * 10 + (uint64_t)(w->s[i] - '0');
			digits++;
			i++;
		}
		if (digits == 0)
			return sluice__parse_fail(p, SLUICE_ESYNTAX, w->col + i, "expected 1 to 3 digits after '.'");
		for (; digits < 3; digits++)
			frac *= 10;
	}
	if (i != w->len)
		return sluice__parse_fail(p, SLUICE_ESYNTAX, w->col + i,
					  "unexpected '%c' in the multiplier: at most 3 decimals", w->s[i]);
	uint64_t milli = whole * 1000 + frac;
	if (milli == 0 || milli > SLUICE_POLICY_MAX_MULTIPLIER)
		return sluice__parse_fail(p, SLUICE_ERANGE, w->col, "the multiplier must be in x0.001 .. x1000");
	struct btier *t = &b->tiers[b->ntiers++];
	memcpy(t->name, name, NAME_CAP);
	t->milli = (uint32_t)milli;
	t->line = p->line;
	return sluice__parse_expect_end(p);
}

/* A "+"-joined scope list, after "per" (where "class" names the endpoint
 * class) or after "unless" (the scopes whose own identity, when a request
 * carries it, keeps the limit from applying: none of the limit's own
 * scopes, or the limit would never apply). Sets l->scope_mask/per_class or
 * l->unless_mask. */
static int scope_list(struct parser *p, const struct word *w, bool unless, struct sluice_policy_limit *l)
{
	const char *what = unless ? "unless" : "per";
	uint32_t *mask = unless ? &l->unless_mask : &l->scope_mask;
	uint32_t i = 0;

	if (w->quoted)
		return sluice__parse_fail(p, SLUICE_ESYNTAX, w->col,
					  unless ? "expected scopes like token or token+key"
						 : "expected scopes like ip or token+class");
	for (;;) {
		uint32_t start = i;
		while (i < w->len && w->s[i] != '+')
			i++;
		const char *s = w->s + start;
		uint32_t len = i - start, col = w->col + start;
		int rc = sluice__parse_check_name(p, s, len, col, "a scope name");
		if (rc != SLUICE_OK)
			return rc;
		int id = -1;
		if (!unless && len == 5 && memcmp(s, "class", 5) == 0) {
			if (l->per_class)
				return sluice__parse_fail(p, SLUICE_EINVAL, col, "'class' twice in 'per'");
			l->per_class = true;
		} else if ((id = sluice__parse_find_name(p->b->scopes, p->b->nscopes, s, len)) < 0) {
			return sluice__parse_fail(p, SLUICE_ENOTFOUND, col,
						  "unknown scope '%.*s': declare it with 'scope' first", (int)len, s);
		} else if (unless && (l->scope_mask & (1u << id))) {
			return sluice__parse_fail(p, SLUICE_EINVAL, col,
						  "scope '%.*s' keys this limit: 'unless %.*s' would never let it apply",
						  (int)len, s, (int)len, s);
		} else if (*mask & (1u << id)) {
			return sluice__parse_fail(p, SLUICE_EINVAL, col, "scope '%.*s' twice in '%s'", (int)len, s,
						  what);
		} else {
			*mask |= 1u << id;
		}
		if (i == w->len)
			return SLUICE_OK;
		i++; /* '+' */
	}
}

/* "on" class { "," class } */
static int on_word(struct parser *p, const struct word *w, struct sluice_policy_limit *l)
{
	struct builder *b = p->b;
	uint32_t i = 0;

	if (w->quoted)
		return sluice__parse_fail(p, SLUICE_ESYNTAX, w->col, "expected class names like auth,signup");
	for (;;) {
		uint32_t start = i;
		while (i < w->len && w->s[i] != ',')
			i++;
		const char *s = w->s + start;
		uint32_t len = i - start, col = w->col + start;
		int rc = sluice__parse_check_name(p, s, len, col, "a class name");
		if (rc != SLUICE_OK)
			return rc;
		int id = sluice__parse_find_name(b->classes, b->nclasses, s, len);
		if (id < 0)
			return sluice__parse_fail(p, SLUICE_ENOTFOUND, col,
						  "unknown class '%.*s': declare it with 'class' first", (int)len, s);
		if (l->class_mask & (UINT64_C(1) << id))
			return sluice__parse_fail(p, SLUICE_EINVAL, col, "class '%.*s' twice in 'on'", (int)len, s);
		l->class_mask |= UINT64_C(1) << id;
		if (i == w->len)
			return SLUICE_OK;
		i++;
	}
}

static int d_limit(struct parser *p)
{
	struct builder *b = p->b;
	const struct word *w = NULL;
	char buf[32];
	int rc;

	if ((rc = sluice__parse_next_word(p, "a limit name", &w)) != SLUICE_OK)
		return rc;
	if (b->nlimits == SLUICE_POLICY_MAX_LIMITS)
		return sluice__parse_fail(p, SLUICE_ETOOBIG, w->col, "more than %d limits", SLUICE_POLICY_MAX_LIMITS);
	struct blimit *bl = &b->limits[b->nlimits];
	struct sluice_policy_limit *l = &bl->l;
	memset(bl, 0, sizeof(*bl));
	if ((rc = sluice__parse_name_word(p, w, "a limit name", bl->name)) != SLUICE_OK)
		return rc;
	for (uint32_t i = 0; i < b->nlimits; i++)
		if (strcmp(b->limits[i].name, bl->name) == 0)
			return sluice__parse_fail(p, SLUICE_EINVAL, w->col, "limit '%s' already declared on line %u",
						  bl->name, b->limits[i].l.line);
	l->line = p->line;

	if ((rc = sluice__parse_next_word(p, "'per'", &w)) != SLUICE_OK)
		return rc;
	if (!sluice__parse_word_is(w, "per"))
		return sluice__parse_fail(p, SLUICE_ESYNTAX, w->col, "unexpected '%s': expected 'per'",
					  sluice__parse_show(w, buf));
	if ((rc = sluice__parse_next_word(p, "scopes after 'per' (e.g. ip or token+class)", &w)) != SLUICE_OK)
		return rc;
	if ((rc = scope_list(p, w, false, l)) != SLUICE_OK)
		return rc;

	if ((rc = sluice__parse_next_word(p, "'on' or a limit kind (rate, sliding, quota, concurrency)", &w)) !=
	    SLUICE_OK)
		return rc;
	if (sluice__parse_word_is(w, "on")) {
		if ((rc = sluice__parse_next_word(p, "class names after 'on'", &w)) != SLUICE_OK)
			return rc;
		if ((rc = on_word(p, w, l)) != SLUICE_OK)
			return rc;
		if ((rc = sluice__parse_next_word(p, "a limit kind (rate, sliding, quota, concurrency)", &w)) !=
		    SLUICE_OK)
			return rc;
	} else {
		l->all_classes = true;
	}

	const struct word *kw = w;
	if (sluice__parse_word_is(kw, "rate") || sluice__parse_word_is(kw, "sliding") ||
	    sluice__parse_word_is(kw, "quota")) {
		bool utc = false;
		bool is_quota = sluice__parse_word_is(kw, "quota");
		if ((rc = sluice__parse_next_word(p, is_quota ? "a quota like 50000/1d@utc" : "a rate like 120/1m",
						  &w)) != SLUICE_OK)
			return rc;
		rc = sluice__parse_rate_word(p, w, &l->count, &l->period_ns, is_quota ? &utc : NULL);
		if (rc != SLUICE_OK)
			return rc;
		if (is_quota) {
			if (!utc)
				return sluice__parse_fail(
					p, SLUICE_ESYNTAX, w->col + w->len,
					"expected '@utc' after the period of a quota (windows align to UTC)");
			if (l->period_ns < SLUICE_NS_PER_SEC || NS_PER_DAY % l->period_ns != 0)
				return sluice__parse_fail(
					p, SLUICE_EINVAL, w->col,
					"a calendar period must divide one day and be at least 1s (e.g. 1m, 1h, 1d)");
			l->kind = SLUICE_POLICY_KIND_CALENDAR;
			l->reason = SLUICE_REASON_QUOTA;
		} else {
			l->kind = sluice__parse_word_is(kw, "rate") ? SLUICE_POLICY_KIND_GCRA
								    : SLUICE_POLICY_KIND_SLIDING;
			l->reason = SLUICE_REASON_RATE;
		}
	} else if (sluice__parse_word_is(kw, "concurrency")) {
		if ((rc = sluice__parse_next_word(p, "the number of requests in flight", &w)) != SLUICE_OK)
			return rc;
		if ((rc = sluice__parse_count_word(p, w, "the number in flight", &l->count)) != SLUICE_OK)
			return rc;
		l->kind = SLUICE_POLICY_KIND_CONCURRENCY;
		l->reason = SLUICE_REASON_CONCURRENCY;
		l->retry_after_ns = DEFAULT_RETRY_AFTER_NS;
	} else {
		return sluice__parse_fail(p, SLUICE_ESYNTAX, kw->col,
					  "unexpected '%s': expected a limit kind (rate, sliding, quota, concurrency)",
					  sluice__parse_show(kw, buf));
	}
	l->burst = l->count;

	bool seen_burst = false, seen_retry = false, seen_lease = false, seen_warn = false;
	while (p->pos < p->nw) {
		w = &p->w[p->pos++];
		const struct word *opt = w;
		if (sluice__parse_word_is(opt, "burst")) {
			if (l->kind != SLUICE_POLICY_KIND_GCRA)
				return sluice__parse_fail(p, SLUICE_EINVAL, opt->col,
							  "'burst' applies to 'rate' limits only");
			if (seen_burst)
				return sluice__parse_fail(p, SLUICE_EINVAL, opt->col, "duplicate 'burst'");
			seen_burst = true;
			if ((rc = sluice__parse_next_word(p, "the burst (a count)", &w)) != SLUICE_OK)
				return rc;
			if ((rc = sluice__parse_count_word(p, w, "the burst", &l->burst)) != SLUICE_OK)
				return rc;
		} else if (sluice__parse_word_is(opt, "retry-after") || sluice__parse_word_is(opt, "lease")) {
			bool retry = sluice__parse_word_is(opt, "retry-after");
			if (l->kind != SLUICE_POLICY_KIND_CONCURRENCY)
				return sluice__parse_fail(p, SLUICE_EINVAL, opt->col,
							  "'%s' applies to 'concurrency' limits only",
							  retry ? "retry-after" : "lease");
			if (retry ? seen_retry : seen_lease)
				return sluice__parse_fail(p, SLUICE_EINVAL, opt->col, "duplicate '%s'",
							  retry ? "retry-after" : "lease");
			if ((rc = sluice__parse_next_word(p, "a duration like 1s", &w)) != SLUICE_OK)
				return rc;
			uint64_t *dst = retry ? &l->retry_after_ns : &l->lease_ns;
			if ((rc = sluice__parse_duration_word(p, w, retry ? "the retry-after" : "the lease", dst)) !=
			    SLUICE_OK)
				return rc;
			if (retry && *dst == 0)
				return sluice__parse_fail(p, SLUICE_EINVAL, w->col,
							  "the retry-after must be longer than 0");
			if (retry)
				seen_retry = true;
			else
				seen_lease = true;
		} else if (sluice__parse_word_is(opt, "warn")) {
			uint64_t pct;
			uint32_t used;
			if (seen_warn)
				return sluice__parse_fail(p, SLUICE_EINVAL, opt->col, "duplicate 'warn'");
			seen_warn = true;
			if ((rc = sluice__parse_next_word(p, "a percentage like 80%", &w)) != SLUICE_OK)
				return rc;
			if (w->quoted)
				return sluice__parse_fail(p, SLUICE_ESYNTAX, w->col, "expected a percentage like 80%%");
			rc = sluice__parse_uint(p, w->s, w->len, w->col, 100, "the warning threshold", &pct, &used);
			if (rc != SLUICE_OK)
				return rc;
			if (used + 1 != w->len || w->s[used] != '%')
				return sluice__parse_fail(p, SLUICE_ESYNTAX, w->col + used,
							  "expected '%%' after the percentage");
			if (pct == 0)
				return sluice__parse_fail(p, SLUICE_EINVAL, w->col,
							  "the warning threshold must be 1%% to 100%%");
			l->warn_percent = (uint8_t)pct;
		} else if (sluice__parse_word_is(opt, "tiered")) {
			if (l->tiered)
				return sluice__parse_fail(p, SLUICE_EINVAL, opt->col, "duplicate 'tiered'");
			l->tiered = true;
		} else if (sluice__parse_word_is(opt, "dry-run")) {
			if (l->dry_run)
				return sluice__parse_fail(p, SLUICE_EINVAL, opt->col, "duplicate 'dry-run'");
			l->dry_run = true;
		} else if (sluice__parse_word_is(opt, "unless")) {
			if (l->unless_mask != 0)
				return sluice__parse_fail(p, SLUICE_EINVAL, opt->col, "duplicate 'unless'");
			if ((rc = sluice__parse_next_word(p, "scopes after 'unless' (e.g. token)", &w)) != SLUICE_OK)
				return rc;
			if ((rc = scope_list(p, w, true, l)) != SLUICE_OK)
				return rc;
		} else if (sluice__parse_word_is(opt, "resource")) {
			uint32_t n = 0;
			if (bl->resource[0] != '\0')
				return sluice__parse_fail(p, SLUICE_EINVAL, opt->col, "duplicate 'resource'");
			if ((rc = sluice__parse_next_word(p, "a resource label (a quoted string)", &w)) != SLUICE_OK)
				return rc;
			if ((rc = sluice__parse_string_word(p, w, "the resource label", true, (uint8_t *)bl->resource,
							    SLUICE_POLICY_MAX_NAME, &n)) != SLUICE_OK)
				return rc;
			if (n == 0)
				return sluice__parse_fail(p, SLUICE_EINVAL, w->col, "an empty resource label");
			bl->resource[n] = '\0';
		} else {
			return sluice__parse_fail(
				p, SLUICE_ESYNTAX, opt->col,
				"unexpected '%s': expected an option (burst, retry-after, lease, warn, tiered, dry-run, resource, unless) or end of line",
				sluice__parse_show(opt, buf));
		}
	}
	if (l->kind == SLUICE_POLICY_KIND_GCRA) {
		struct sluice_rate rate;
		if (sluice_rate_init(&rate, l->count, l->period_ns, l->burst) != SLUICE_OK)
			return sluice__parse_fail(p, SLUICE_ERANGE, kw->col,
						  "bucket too deep: burst * period / count must stay below 2^62 ns");
	}
	b->nlimits++;
	return SLUICE_OK;
}

static int d_override(struct parser *p)
{
	struct builder *b = p->b;
	const struct word *w = NULL;
	char name[NAME_CAP];
	int rc;

	if ((rc = sluice__parse_next_word(p, "a limit name", &w)) != SLUICE_OK)
		return rc;
	if (b->noverrides == SLUICE_POLICY_MAX_OVERRIDES || b->noverrides == b->cap_overrides)
		return sluice__parse_fail(p, SLUICE_ETOOBIG, w->col, "more than %d overrides",
					  SLUICE_POLICY_MAX_OVERRIDES);
	struct boverride *bo = &b->overrides[b->noverrides];
	struct sluice_policy_override *o = &bo->o;
	memset(bo, 0, sizeof(*bo));
	o->line = p->line;
	if ((rc = sluice__parse_name_word(p, w, "a limit name", name)) != SLUICE_OK)
		return rc;
	int li = -1;
	for (uint32_t i = 0; i < b->nlimits; i++)
		if (strcmp(b->limits[i].name, name) == 0)
			li = (int)i;
	if (li < 0)
		return sluice__parse_fail(p, SLUICE_ENOTFOUND, w->col,
					  "unknown limit '%s': declare it with 'limit' first", name);
	const struct sluice_policy_limit *l = &b->limits[li].l;
	o->limit = (uint32_t)li;

	if ((rc = sluice__parse_next_word(p, "a scope name", &w)) != SLUICE_OK)
		return rc;
	if ((rc = sluice__parse_name_word(p, w, "a scope name", name)) != SLUICE_OK)
		return rc;
	int si = sluice__parse_find_name(b->scopes, b->nscopes, w->s, w->len);
	if (si < 0)
		return sluice__parse_fail(p, SLUICE_ENOTFOUND, w->col, "unknown scope '%s'", name);
	if (!(l->scope_mask & (1u << si)))
		return sluice__parse_fail(p, SLUICE_EINVAL, w->col, "limit '%s' is not kept per '%s'",
					  b->limits[li].name, name);
	o->scope = (uint32_t)si;

	if ((rc = sluice__parse_next_word(p, "the key (a quoted string)", &w)) != SLUICE_OK)
		return rc;
	if ((rc = sluice__parse_string_word(p, w, "the key", false, bo->key, SLUICE_POLICY_MAX_KEY, &o->key_len)) !=
	    SLUICE_OK)
		return rc;
	for (uint32_t i = 0; i < b->noverrides; i++) {
		const struct boverride *x = &b->overrides[i];
		if (x->o.limit == o->limit && x->o.scope == o->scope && x->o.key_len == o->key_len &&
		    memcmp(x->key, bo->key, o->key_len) == 0)
			return sluice__parse_fail(p, SLUICE_EINVAL, w->col, "duplicate override (line %u)", x->o.line);
	}

	if ((rc = sluice__parse_next_word(p, "the new count", &w)) != SLUICE_OK)
		return rc;
	if ((rc = sluice__parse_count_word(p, w, "the new count", &o->count)) != SLUICE_OK)
		return rc;
	o->burst = o->count;
	if ((rc = sluice__parse_next_word(p, "'until' or 'burst'", &w)) != SLUICE_OK)
		return rc;
	if (sluice__parse_word_is(w, "burst")) {
		if (l->kind != SLUICE_POLICY_KIND_GCRA)
			return sluice__parse_fail(p, SLUICE_EINVAL, w->col, "'burst' applies to 'rate' limits only");
		if ((rc = sluice__parse_next_word(p, "the burst (a count)", &w)) != SLUICE_OK)
			return rc;
		if ((rc = sluice__parse_count_word(p, w, "the burst", &o->burst)) != SLUICE_OK)
			return rc;
		if ((rc = sluice__parse_next_word(p, "'until'", &w)) != SLUICE_OK)
			return rc;
	}
	if (!sluice__parse_word_is(w, "until")) {
		char buf[32];
		return sluice__parse_fail(p, SLUICE_ESYNTAX, w->col, "unexpected '%s': expected 'until'",
					  sluice__parse_show(w, buf));
	}
	if ((rc = sluice__parse_next_word(p, "a UTC time like 2026-12-01T00:00:00Z", &w)) != SLUICE_OK)
		return rc;
	if ((rc = sluice__parse_time_word(p, w, &o->expires_at_ns)) != SLUICE_OK)
		return rc;
	if (l->kind == SLUICE_POLICY_KIND_GCRA) {
		struct sluice_rate rate;
		if (sluice_rate_init(&rate, o->count, l->period_ns, o->burst) != SLUICE_OK)
			return sluice__parse_fail(p, SLUICE_ERANGE, p->w[4].col,
						  "bucket too deep: burst * period / count must stay below 2^62 ns");
	}
	b->noverrides++;
	return sluice__parse_expect_end(p);
}

int sluice__parse_directive(struct parser *p)
{
	const struct word *w = &p->w[p->pos++];
	char buf[32];

	if (!p->b->seen_policy && !sluice__parse_word_is(w, "policy"))
		return sluice__parse_fail(p, SLUICE_ESYNTAX, w->col,
					  "expected 'policy \"name\"' as the first directive");
	if (sluice__parse_word_is(w, "policy"))
		return d_policy(p);
	if (sluice__parse_word_is(w, "headers"))
		return sluice__parse_d_headers(p);
	if (sluice__parse_word_is(w, "dry-run"))
		return sluice__parse_d_dry_run(p);
	if (sluice__parse_word_is(w, "body"))
		return d_body(p);
	if (sluice__parse_word_is(w, "answer"))
		return d_answer(p);
	if (sluice__parse_word_is(w, "fail"))
		return d_fail(p);
	if (sluice__parse_word_is(w, "scope"))
		return sluice__parse_d_scope(p);
	if (sluice__parse_word_is(w, "trusted-proxies"))
		return sluice__parse_d_trusted_proxies(p);
	if (sluice__parse_word_is(w, "class"))
		return sluice__parse_d_class(p);
	if (sluice__parse_word_is(w, "routes"))
		return sluice__parse_d_routes(p);
	if (sluice__parse_word_is(w, "tier") && p->nw >= 3 && sluice__parse_word_is(&p->w[1], "from") &&
	    sluice__parse_word_is(&p->w[2], "map"))
		return sluice__parse_d_tier_map(p);
	if (sluice__parse_word_is(w, "tier"))
		return d_tier(p);
	if (sluice__parse_word_is(w, "limit"))
		return d_limit(p);
	if (sluice__parse_word_is(w, "override"))
		return d_override(p);
	return sluice__parse_fail(
		p, SLUICE_ESYNTAX, w->col,
		"unknown directive '%s': expected policy, headers, dry-run, body, answer, fail, scope, trusted-proxies, class, routes, tier, limit or override",
		sluice__parse_show(w, buf));
}
