/*
 * Header tables (client side): the built-in vendor families and the
 * caller's own, read by one engine.
 *
 * A table maps a field name to a dimension (the policy it fills, e.g.
 * "requests" or "tokens"), a role (limit, remaining, used, reset, ...) and
 * a format (count, seconds, Unix ms, RFC 3339, Go duration, ...). The
 * engine walks the response once; each field that a rule names is parsed
 * in the rule's format and stored in its dimension, or, if malformed,
 * ignored and reported in .ignored. After the walk, a dimension with a
 * used count and a limit but no remaining gets remaining = limit - used,
 * and a reset given as a relative delay wins over one given as an instant
 * (immune to clock skew).
 *
 * Adding a vendor is adding rows: nothing here knows a vendor by name.
 * Each built-in row cites where its format is published (docs/http.md has
 * the examples that the tests replay).
 */
#include <string.h>

#include "client/client_internal.h"

/* The rows, once: expanded into the table and into its name lengths. */
#define VENDOR_ROWS(ROW) \
	/* Per-dimension X fields with Go-duration resets ("1s", "6m0s", \
	 * "20ms"): platform.openai.com/docs/guides/rate-limits */ \
	ROW("x-ratelimit-limit-requests", "requests", "", LIMIT, COUNT) \
	ROW("x-ratelimit-remaining-requests", "requests", "", REMAINING, COUNT) \
	ROW("x-ratelimit-reset-requests", "requests", "", RESET_AFTER, DURATION) \
	ROW("x-ratelimit-limit-tokens", "tokens", "tokens", LIMIT, COUNT) \
	ROW("x-ratelimit-remaining-tokens", "tokens", "tokens", REMAINING, COUNT) \
	ROW("x-ratelimit-reset-tokens", "tokens", "tokens", RESET_AFTER, DURATION) \
	/* RFC 3339 resets per dimension: docs.anthropic.com/en/api/rate-limits */ \
	ROW("anthropic-ratelimit-requests-limit", "requests", "", LIMIT, COUNT) \
	ROW("anthropic-ratelimit-requests-remaining", "requests", "", REMAINING, COUNT) \
	ROW("anthropic-ratelimit-requests-reset", "requests", "", RESET, RFC3339) \
	ROW("anthropic-ratelimit-tokens-limit", "tokens", "tokens", LIMIT, COUNT) \
	ROW("anthropic-ratelimit-tokens-remaining", "tokens", "tokens", REMAINING, COUNT) \
	ROW("anthropic-ratelimit-tokens-reset", "tokens", "tokens", RESET, RFC3339) \
	ROW("anthropic-ratelimit-input-tokens-limit", "input-tokens", "tokens", LIMIT, COUNT) \
	ROW("anthropic-ratelimit-input-tokens-remaining", "input-tokens", "tokens", REMAINING, COUNT) \
	ROW("anthropic-ratelimit-input-tokens-reset", "input-tokens", "tokens", RESET, RFC3339) \
	ROW("anthropic-ratelimit-output-tokens-limit", "output-tokens", "tokens", LIMIT, COUNT) \
	ROW("anthropic-ratelimit-output-tokens-remaining", "output-tokens", "tokens", REMAINING, COUNT) \
	ROW("anthropic-ratelimit-output-tokens-reset", "output-tokens", "tokens", RESET, RFC3339) \
	/* X-RateLimit-Requests-*: Unix ms (linear.app/developers/rate-limiting) \
	 * or delta seconds (RapidAPI); the size rule tells them apart */ \
	ROW("x-ratelimit-requests-limit", "requests", "", LIMIT, COUNT) \
	ROW("x-ratelimit-requests-remaining", "requests", "", REMAINING, COUNT) \
	ROW("x-ratelimit-requests-reset", "requests", "", RESET, AUTO) \
	ROW("x-ratelimit-complexity-limit", "complexity", "complexity", LIMIT, COUNT) \
	ROW("x-ratelimit-complexity-remaining", "complexity", "complexity", REMAINING, COUNT) \
	ROW("x-ratelimit-complexity-reset", "complexity", "complexity", RESET, AUTO) \
	/* A rolling interval, a per-second and a daily budget without resets: \
	 * developers.hubspot.com/docs/api/usage-details */ \
	ROW("x-hubspot-ratelimit-max", "interval", "", LIMIT, COUNT) \
	ROW("x-hubspot-ratelimit-remaining", "interval", "", REMAINING, COUNT) \
	ROW("x-hubspot-ratelimit-interval-milliseconds", "interval", "", WINDOW, MILLISECONDS) \
	ROW("x-hubspot-ratelimit-secondly", "secondly", "", LIMIT, COUNT) \
	ROW("x-hubspot-ratelimit-secondly-remaining", "secondly", "", REMAINING, COUNT) \
	ROW("x-hubspot-ratelimit-daily", "daily", "", LIMIT, COUNT) \
	ROW("x-hubspot-ratelimit-daily-remaining", "daily", "", REMAINING, COUNT) \
	/* "used/limit" of a leaky bucket: \
	 * shopify.dev/docs/api/admin-rest/usage/rate-limits */ \
	ROW("x-shopify-shop-api-call-limit", "api-calls", "", USED, USED_OF_LIMIT)

#define TABLE_ROW(name, dim, unit, role, fmt) \
	{name, dim, unit, SLUICE_CLIENT_ROLE_##role, SLUICE_CLIENT_FMT_##fmt},
#define LENGTH_ROW(name, dim, unit, role, fmt) sizeof(name) - 1,

const struct sluice_client_rule sluice__client_vendor_rules[] = {VENDOR_ROWS(TABLE_ROW)};
const uint8_t sluice__client_vendor_name_len[] = {VENDOR_ROWS(LENGTH_ROW)};

const size_t sluice__client_vendor_nrules =
	sizeof(sluice__client_vendor_rules) / sizeof(sluice__client_vendor_rules[0]);

static char lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* ASCII case-insensitive equality of a field name and a rule name (NUL-
 * terminated). Every field meets every row, so a mismatch must be cheap:
 * the first byte settles most of them, and no strlen is taken. */
static bool rule_matches(const struct sluice_http_field *f, const char *name)
{
	if (f->name == NULL || f->name_len == 0 || lower(f->name[0]) != lower(name[0]))
		return false;
	for (size_t i = 1; i < f->name_len; i++) {
		if (name[i] == '\0' || lower(f->name[i]) != lower(name[i]))
			return false;
	}
	return name[f->name_len] == '\0';
}

/* "used/limit", both counts. */
static bool used_of_limit(const char *s, size_t len, uint64_t *used, uint64_t *limit)
{
	const char *slash = memchr(s, '/', len);
	uint32_t frac;

	if (slash == NULL)
		return false;
	size_t a = (size_t)(slash - s);
	return sluice__client_number(s, a, false, used, &frac) &&
	       sluice__client_number(slash + 1, len - a - 1, false, limit, &frac);
}

/* Per dimension, what the walk learnt beyond the policy itself. */
struct scratch {
	bool has_used, reset_relative;
	uint64_t used;
};

/* One field under one rule; false when the value is malformed. */
static bool apply_one(const struct sluice_client_rule *r, const char *v, size_t len, uint64_t now_ns,
		      uint64_t now_unix_ns, struct sluice_client_limits *out, struct scratch *scr)
{
	uint64_t x, y, d;
	uint32_t frac;
	bool absolute;

	if (r->role == SLUICE_CLIENT_ROLE_BUCKET)
		return sluice__client_set_bucket(out, v, len);
	sluice__client_trim(&v, &len);
	if (r->role == SLUICE_CLIENT_ROLE_RETRY_AFTER) {
		if (!sluice__client_time_value(v, len, r->format, now_ns, now_unix_ns, &d, &absolute))
			return false;
		out->has_retry_after = true;
		out->retry_after_ns = SLUICE_MAX(out->retry_after_ns, d);
		out->seen |= SLUICE_CLIENT_RETRY_AFTER;
		return true;
	}
	struct sluice_client_policy *p =
		sluice__client_dimension(out, r->dimension != NULL ? r->dimension : "", r->unit);
	if (p == NULL)
		return true; /* well-formed; the table is full (policies_truncated) */
	struct scratch *s = &scr[p - out->policies];
	switch (r->role) {
	case SLUICE_CLIENT_ROLE_LIMIT:
	case SLUICE_CLIENT_ROLE_REMAINING:
	case SLUICE_CLIENT_ROLE_USED:
		if (r->format == SLUICE_CLIENT_FMT_USED_OF_LIMIT) {
			if (!used_of_limit(v, len, &x, &y))
				return false;
			p->has_quota = true;
			p->quota = y;
		} else if (r->format != SLUICE_CLIENT_FMT_COUNT ||
			   !sluice__client_number(v, len, true, &x, &frac)) {
			return false;
		}
		if (r->role == SLUICE_CLIENT_ROLE_LIMIT) {
			p->has_quota = true;
			p->quota = x;
		} else if (r->role == SLUICE_CLIENT_ROLE_REMAINING) {
			p->has_remaining = true;
			p->remaining = x;
		} else {
			s->has_used = true;
			s->used = x;
		}
		return true;
	case SLUICE_CLIENT_ROLE_RESET:
	case SLUICE_CLIENT_ROLE_RESET_AFTER:
		if (!sluice__client_time_value(v, len, r->format, now_ns, now_unix_ns, &d, &absolute))
			return false;
		if (s->reset_relative && absolute)
			return true; /* a relative reset already won */
		p->has_reset = true;
		p->reset_ns = d;
		s->reset_relative = !absolute;
		return true;
	case SLUICE_CLIENT_ROLE_WINDOW:
		if (!sluice__client_time_value(v, len, r->format, now_ns, now_unix_ns, &d, &absolute) ||
		    absolute || d == 0)
			return false;
		p->has_window = true;
		p->window_s = d / SLUICE_NS_PER_SEC + (d % SLUICE_NS_PER_SEC != 0);
		return true;
	default:
		return false;
	}
}

uint32_t sluice__client_apply_rules(const struct sluice_http_field *fields, size_t n,
				    const struct sluice_client_rule *rules, const uint8_t *name_len,
				    size_t nrules, uint32_t family, uint64_t now_ns, uint64_t now_unix_ns,
				    struct sluice_client_limits *out, uint32_t *first_dim,
				    uint32_t *ignored)
{
	struct scratch scr[SLUICE_CLIENT_MAX_POLICIES];
	bool matched = false;

	uint64_t first_bytes[4] = {0, 0, 0, 0}; /* the rows' first name bytes, lowercased */

	memset(scr, 0, sizeof(scr));
	*first_dim = out->npolicies;
	for (size_t k = 0; k < nrules; k++) {
		unsigned char c = (unsigned char)lower(rules[k].name[0]);
		first_bytes[c >> 6] |= UINT64_C(1) << (c & 63);
	}
	for (size_t i = 0; i < n; i++) {
		const struct sluice_http_field *f = &fields[i];
		if ((f->value == NULL && f->value_len > 0) || f->name == NULL || f->name_len == 0)
			continue;
		unsigned char c = (unsigned char)lower(f->name[0]);
		if (!(first_bytes[c >> 6] & (UINT64_C(1) << (c & 63))))
			continue; /* no row starts so: most fields stop here */
		for (size_t k = 0; k < nrules; k++) {
			if ((name_len != NULL && name_len[k] != f->name_len) || !rule_matches(f, rules[k].name))
				continue;
			if (apply_one(&rules[k], f->value_len > 0 ? f->value : "", f->value_len, now_ns,
				      now_unix_ns, out, scr))
				matched = true;
			else
				*ignored |= family;
			break; /* the first rule naming a field is its rule */
		}
	}
	for (uint32_t i = *first_dim; i < out->npolicies; i++) {
		struct sluice_client_policy *p = &out->policies[i];
		if (scr[i].has_used && !p->has_remaining && p->has_quota) {
			p->has_remaining = true;
			p->remaining = p->quota > scr[i].used ? p->quota - scr[i].used : 0;
		}
	}
	return matched ? family : 0;
}
