/*
 * policy_print.c - the canonical text of a loaded policy.
 *
 * One directive per line in a fixed order (policy, headers, body, answer, fail,
 * scopes, classes, routes, tiers, limits, overrides), every default spelled
 * out where it is part of the response style, options only where they differ
 * from their defaults, durations in the largest unit that divides them.
 * Parsing this text yields an equal policy (the round-trip property,
 * checked by fuzz/fuzz_policy.c and tests/test_policy.c).
 */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "policy/policy_internal.h"

struct out {
	char *buf;
	size_t cap;
	size_t len; /* full length, even past cap */
};

static void put(struct out *o, const char *s, size_t n)
{
	if (o->len < o->cap) {
		size_t room = o->cap - o->len;
		memcpy(o->buf + o->len, s, n < room ? n : room);
	}
	o->len += n;
}

static void puts_(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

__attribute__((format(printf, 2, 3))) static void putf(struct out *o, const char *fmt, ...)
{
	char tmp[96];
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n > 0)
		put(o, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

static void put_string(struct out *o, const uint8_t *s, size_t n);

static void put_cidr(struct out *o, const struct sluice_policy_cidr *c)
{
	char text[INET6_ADDRSTRLEN];

	if (inet_ntop(c->family == 4 ? AF_INET : AF_INET6, c->addr, text, sizeof text) != NULL)
		putf(o, " %s/%u", text, c->prefix);
}

/* "scope NAME [from SOURCE] [RULE]": the source and the rule only where
 * the text declared them (a default source is resolved at load). */
static void put_scope(struct out *o, const struct sluice_policy_spec *s, uint32_t i)
{
	static const char *const sources[] = {
		[SLUICE_POLICY_SOURCE_AUTHORIZATION] = "authorization", [SLUICE_POLICY_SOURCE_HEADER] = "header",
		[SLUICE_POLICY_SOURCE_COOKIE] = "cookie", [SLUICE_POLICY_SOURCE_QUERY] = "query",
		[SLUICE_POLICY_SOURCE_PEER] = "peer", [SLUICE_POLICY_SOURCE_FORWARDED_FOR] = "forwarded-for",
	};
	const struct sluice_policy_scope_rule *r = &s->scope_rules[i];

	putf(o, "scope %s", s->scopes[i]);
	if (r->source_declared && r->source == SLUICE_POLICY_SOURCE_MAP) {
		puts_(o, " from map ");
		put_string(o, (const uint8_t *)s->maps[r->map].path, strlen(s->maps[r->map].path));
		putf(o, " key %s", s->scopes[r->map_key]);
	} else if (r->source_declared) {
		putf(o, " from %s", sources[r->source]);
		if (r->name_len > 0) {
			put(o, " ", 1);
			put(o, r->name, r->name_len);
		}
	}
	if (r->rule_declared) {
		if (r->rule == SLUICE_POLICY_IDENTITY_REQUIRED)
			puts_(o, " required");
		else if (r->rule == SLUICE_POLICY_IDENTITY_OPTIONAL)
			puts_(o, " optional");
		else
			putf(o, " fallback %s", s->scopes[r->fallback]);
	}
	put(o, "\n", 1);
}

static void put_string(struct out *o, const uint8_t *s, size_t n)
{
	put(o, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		uint8_t c = s[i];
		if (c == '"' || c == '\\') {
			char e[2] = {'\\', (char)c};
			put(o, e, 2);
		} else if (c >= 0x20 && c < 0x7f) {
			char ch = (char)c;
			put(o, &ch, 1);
		} else {
			putf(o, "\\x%02x", c);
		}
	}
	put(o, "\"", 1);
}

static void put_duration(struct out *o, uint64_t ns)
{
	static const struct {
		const char *name;
		uint64_t ns;
	} units[] = {
		{"d", 86400 * SLUICE_NS_PER_SEC}, {"h", 3600 * SLUICE_NS_PER_SEC}, {"m", 60 * SLUICE_NS_PER_SEC},
		{"s", SLUICE_NS_PER_SEC},         {"ms", 1000000},                 {"us", 1000},
	};
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (ns != 0 && ns % units[i].ns == 0) {
			putf(o, "%llu%s", (unsigned long long)(ns / units[i].ns), units[i].name);
			return;
		}
	}
	putf(o, "%lluns", (unsigned long long)ns);
}

/* Unix ns -> YYYY-MM-DDTHH:MM:SS[.fffffffff]Z (H. Hinnant's civil_from_days). */
static void put_time(struct out *o, uint64_t ns)
{
	uint64_t secs = ns / SLUICE_NS_PER_SEC, frac = ns % SLUICE_NS_PER_SEC;
	int64_t z = (int64_t)(secs / 86400) + 719468;
	uint64_t sod = secs % 86400;
	int64_t era = z / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t y = (int64_t)yoe + era * 400;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;
	unsigned d = doy - (153 * mp + 2) / 5 + 1;
	unsigned m = mp < 10 ? mp + 3 : mp - 9;
	y += m <= 2;
	putf(o, "%04lld-%02u-%02uT%02u:%02u:%02u", (long long)y, m, d, (unsigned)(sod / 3600),
	     (unsigned)(sod / 60 % 60), (unsigned)(sod % 60));
	if (frac != 0) {
		char digits[16];
		snprintf(digits, sizeof(digits), ".%09llu", (unsigned long long)frac);
		size_t n = strlen(digits);
		while (digits[n - 1] == '0')
			n--;
		put(o, digits, n);
	}
	put(o, "Z", 1);
}

static void put_limit(struct out *o, const struct sluice_policy_spec *s, const struct sluice_policy_limit *l)
{
	static const char *const kinds[] = {"", "rate", "sliding", "quota", "concurrency"};
	bool first = true;

	putf(o, "limit %s per ", l->name);
	for (uint32_t i = 0; i < s->scope_count; i++) {
		if (l->scope_mask & (1u << i)) {
			if (!first)
				put(o, "+", 1);
			puts_(o, s->scopes[i]);
			first = false;
		}
	}
	if (l->per_class)
		puts_(o, first ? "class" : "+class");
	if (!l->all_classes) {
		first = true;
		puts_(o, " on ");
		for (uint32_t c = 0; c < s->class_count; c++) {
			if (l->class_mask & (UINT64_C(1) << c)) {
				if (!first)
					put(o, ",", 1);
				puts_(o, s->classes[c]);
				first = false;
			}
		}
	}
	putf(o, " %s ", l->kind <= SLUICE_POLICY_KIND_CONCURRENCY ? kinds[l->kind] : "?");
	if (l->kind == SLUICE_POLICY_KIND_CONCURRENCY) {
		putf(o, "%llu retry-after ", (unsigned long long)l->count);
		put_duration(o, l->retry_after_ns);
		if (l->lease_ns != 0) {
			puts_(o, " lease ");
			put_duration(o, l->lease_ns);
		}
	} else {
		putf(o, "%llu/", (unsigned long long)l->count);
		put_duration(o, l->period_ns);
		if (l->kind == SLUICE_POLICY_KIND_CALENDAR)
			puts_(o, "@utc");
		if (l->kind == SLUICE_POLICY_KIND_GCRA && l->burst != l->count)
			putf(o, " burst %llu", (unsigned long long)l->burst);
	}
	if (l->warn_percent != 0)
		putf(o, " warn %u%%", l->warn_percent);
	if (l->tiered)
		puts_(o, " tiered");
	if (l->dry_run)
		puts_(o, " dry-run");
	if (l->unless_mask != 0) {
		first = true;
		puts_(o, " unless ");
		for (uint32_t i = 0; i < s->scope_count; i++) {
			if (l->unless_mask & (1u << i)) {
				if (!first)
					put(o, "+", 1);
				puts_(o, s->scopes[i]);
				first = false;
			}
		}
	}
	if (l->resource != NULL) {
		puts_(o, " resource ");
		put_string(o, (const uint8_t *)l->resource, strlen(l->resource));
	}
	put(o, "\n", 1);
}

int sluice_policy_print(const struct sluice_policy *policy, char *buf, size_t cap, size_t *len_out)
{
	static const char *const bodies[] = {"?", "json-data-error", "json-error", "empty"}; /* by value */

	if (policy == NULL || (buf == NULL && cap > 0))
		return SLUICE_EINVAL;
	const struct sluice_policy_spec *s = &policy->spec;
	struct out o = {buf, cap, 0};

	puts_(&o, "policy ");
	put_string(&o, (const uint8_t *)s->name, strlen(s->name));
	const char *family = "none", *reset = "delta";
	switch (s->families & ~(uint32_t)SLUICE_HTTP_RETRY_AFTER) {
	case SLUICE_HTTP_DRAFT06: family = "draft-6"; break;
	case SLUICE_HTTP_DRAFT07: family = "draft-7"; break;
	case SLUICE_HTTP_DRAFT11: family = "draft-11"; break;
	case SLUICE_HTTP_X_DELTA: family = "x-ratelimit"; break;
	case SLUICE_HTTP_X_UNIX_S: family = "x-ratelimit", reset = "unix-s"; break;
	case SLUICE_HTTP_X_UNIX_MS: family = "x-ratelimit", reset = "unix-ms"; break;
	default: break; /* 0: none (the parser makes no other value) */
	}
	if (s->families & SLUICE_HTTP_CUSTOM) {
		static const char *const forms[] = {"delta", "unix-s", "unix-ms"};
		const char *const names[] = {s->custom.limit, s->custom.remaining, s->custom.reset, s->custom.used,
					     s->custom.resource};
		static const char *const keys[] = {"limit", "remaining", "reset", "used", "resource"};
		puts_(&o, "\nheaders custom");
		for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
			if (names[i] != NULL)
				putf(&o, " %s=%s", keys[i], names[i]);
		if (s->custom.reset != NULL)
			putf(&o, " reset-form=%s", forms[s->custom.reset_form <= 2 ? s->custom.reset_form : 0]);
		putf(&o, " retry-after=%s", s->families & SLUICE_HTTP_RETRY_AFTER ? "yes" : "no");
	} else {
		putf(&o, "\nheaders %s reset=%s retry-after=%s", family, reset,
		     s->families & SLUICE_HTTP_RETRY_AFTER ? "yes" : "no");
	}
	if (s->describe == SLUICE_POLICY_DESCRIBE_TIGHTEST)
		puts_(&o, " describe=tightest");
	else if (s->describe != SLUICE_POLICY_DESCRIBE_GOVERNING)
		putf(&o, " describe=%s", s->limits[s->describe].name);
	if (s->dry_run_header != NULL)
		putf(&o, "\ndry-run header %s", s->dry_run_header);
	putf(&o, "\nbody %s\n", bodies[s->body]);
	for (uint32_t i = 0; i < SLUICE_POLICY_ANSWER_COUNT; i++) {
		static const char *const reasons[] = {"rate", "quota", "concurrency", "capacity", "identity"};
		const struct sluice_policy_answer *a = &s->answers[i];
		if (a->status == 0 || (i == SLUICE_POLICY_ANSWER_IDENTITY && a->line == 0))
			continue; /* none, or the default identity answer */
		putf(&o, "answer %s status %u type ", reasons[i], a->status);
		put_string(&o, (const uint8_t *)a->content_type, strlen(a->content_type));
		puts_(&o, " body ");
		put_string(&o, (const uint8_t *)a->body, a->body_len);
		put(&o, "\n", 1);
	}
	putf(&o, "fail %s\n", s->fail == SLUICE_FAIL_OPEN ? "open" : "closed");
	if (s->route_fold_case)
		puts_(&o, "routes case-insensitive\n");
	if (s->proxy_count > 0) {
		puts_(&o, "trusted-proxies");
		for (uint32_t i = 0; i < s->proxy_count; i++)
			put_cidr(&o, &s->proxies[i]);
		put(&o, "\n", 1);
	}
	for (uint32_t i = 0; i < s->scope_count; i++)
		put_scope(&o, s, i);
	if (s->tier_map != UINT32_MAX) {
		const struct sluice_policy_map *m = &s->maps[s->tier_map];
		puts_(&o, "tier from map ");
		put_string(&o, (const uint8_t *)m->path, strlen(m->path));
		putf(&o, " key %s\n", s->scopes[m->key_scope]);
	}
	for (uint32_t i = 1; i < s->class_count; i++)
		putf(&o, "class %s\n", s->classes[i]);
	for (uint32_t i = 0; i < s->route_count; i++) {
		const struct sluice_policy_route *r = &s->routes[i];
		putf(&o, "class %s match %s ", s->classes[r->class_id], r->method);
		puts_(&o, r->pattern);
		put(&o, "\n", 1);
	}
	for (uint32_t i = 0; i < s->tier_count; i++) {
		uint32_t m = s->tiers[i].multiplier_milli;
		putf(&o, "tier %s x%u", s->tiers[i].name, m / 1000);
		if (m % 1000 != 0) {
			char frac[8];
			snprintf(frac, sizeof(frac), ".%03u", m % 1000);
			size_t n = strlen(frac);
			while (frac[n - 1] == '0')
				n--;
			put(&o, frac, n);
		}
		put(&o, "\n", 1);
	}
	for (uint32_t i = 0; i < s->limit_count; i++)
		put_limit(&o, s, &s->limits[i]);
	for (uint32_t i = 0; i < s->override_count; i++) {
		const struct sluice_policy_override *ov = &s->overrides[i];
		putf(&o, "override %s %s ", s->limits[ov->limit].name, s->scopes[ov->scope]);
		put_string(&o, ov->key, ov->key_len);
		putf(&o, " %llu", (unsigned long long)ov->count);
		if (ov->burst != ov->count)
			putf(&o, " burst %llu", (unsigned long long)ov->burst);
		puts_(&o, " until ");
		put_time(&o, ov->expires_at_ns);
		put(&o, "\n", 1);
	}

	if (len_out != NULL)
		*len_out = o.len;
	if (cap == 0)
		return o.len == 0 ? SLUICE_OK : SLUICE_ETRUNC;
	if (o.len >= cap) {
		buf[cap - 1] = '\0';
		return SLUICE_ETRUNC;
	}
	buf[o.len] = '\0';
	return SLUICE_OK;
}
