/*
 * fuzz_client.c - response parsing and HTTP-dates (include/sluice/client.h).
 *
 * Input byte 0 picks the mode:
 *   even: the rest is a header block, "name: value" lines split on '\n',
 *         parsed by sluice_client_parse() at a fixed now; invariants on the
 *         result (source is one of the families seen, policy table bounds,
 *         NUL-terminated names), then the backoff planner and pacing on it;
 *         the plain-number fields are compared with a reference model
 *         written from client.h's rules: X-RateLimit-Limit/-Remaining
 *         (either spelling, X-RateLimit-* first) and Retry-After
 *         delay-seconds, where their lines (joined with ", ") trimmed of
 *         SP/HTAB are 1*DIGIT (Remaining also 1*DIGIT "." 1*DIGIT), read
 *         saturating; anything else is not a number. (fuzz_http checks the
 *         structured families against the renderer.)
 *   odd:  the rest is a Retry-After value: sluice_client_retry_after() must
 *         not crash, and sluice_http_date_parse() is compared with a
 *         reference built on glibc's strptime() + timegm() for IMF-fixdate
 *         and asctime: whatever sluice accepts in those forms the
 *         reference accepts with the same time, and any date the reference
 *         reads and re-formats to exactly the input, sluice accepts.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sluice/client.h>

#include "fuzz.h"

#define NOW_NS (1795392000ull * SLUICE_NS_PER_SEC) /* 2026-11-23T00:00:00Z */

static void check(bool ok)
{
	if (!ok)
		__builtin_trap();
}

/* ---- reference model of the plain-number fields ---------------------------- */

static bool ref_name_is(const struct sluice_http_field *f, const char *name)
{
	size_t n = strlen(name);
	if (f->name_len != n)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = f->name[i];
		if (c >= 'A' && c <= 'Z')
			c = (char)(c + ('a' - 'A'));
		if (c != name[i])
			return false;
	}
	return true;
}

/* The field's lines joined with ", "; false when absent or over FIELD_MAX. */
static bool ref_value(const struct sluice_http_field *f, size_t n, const char *name, char *buf,
		      size_t *len)
{
	bool any = false;
	*len = 0;
	for (size_t i = 0; i < n; i++) {
		if (!ref_name_is(&f[i], name))
			continue;
		size_t add = f[i].value_len + (any ? 2 : 0);
		if (*len + add > SLUICE_CLIENT_FIELD_MAX)
			return false;
		if (any) {
			memcpy(buf + *len, ", ", 2);
			*len += 2;
		}
		memcpy(buf + *len, f[i].value, f[i].value_len);
		*len += f[i].value_len;
		any = true;
	}
	return any;
}

/* 1*DIGIT (with frac: optionally "." 1*DIGIT) after trimming SP/HTAB,
 * the integer part saturating at UINT64_MAX. */
static bool ref_number(const char *s, size_t len, bool frac, uint64_t *v)
{
	size_t i = 0, dot = len;
	while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
		len--;
	while (i < len && (s[i] == ' ' || s[i] == '\t'))
		i++;
	if (frac) {
		const char *d = memchr(s + i, '.', len - i);
		if (d != NULL) {
			dot = (size_t)(d - s);
			if (dot + 1 == len)
				return false;
			for (size_t k = dot + 1; k < len; k++)
				if (s[k] < '0' || s[k] > '9')
					return false;
		}
	}
	size_t end = dot < len ? dot : len;
	if (i == end)
		return false;
	unsigned __int128 x = 0;
	for (size_t k = i; k < end; k++) {
		if (s[k] < '0' || s[k] > '9')
			return false;
		x = x * 10 + (unsigned)(s[k] - '0');
		if (x > UINT64_MAX)
			x = (unsigned __int128)UINT64_MAX + 1;
	}
	*v = x > UINT64_MAX ? UINT64_MAX : (uint64_t)x;
	return true;
}

static void check_plain_numbers(const struct sluice_http_field *f, size_t n,
				const struct sluice_client_limits *l)
{
	static char buf[SLUICE_CLIENT_FIELD_MAX];
	static const char *const lim[2] = {"x-ratelimit-limit", "x-rate-limit-limit"};
	static const char *const rem[2] = {"x-ratelimit-remaining", "x-rate-limit-remaining"};
	size_t len;
	uint64_t v;
	bool has_limit = false, has_rem = false, limit_field = false;
	uint64_t limit = 0, remaining = 0;

	for (int k = 0; k < 2; k++) {
		/* The first limit field present decides: the parser reads a
		 * policy List there ("100, 100;window=60") that the model does
		 * not, and does not fall back to the alias then. */
		if (!limit_field && ref_value(f, n, lim[k], buf, &len)) {
			limit_field = true;
			if (ref_number(buf, len, false, &v)) {
				has_limit = true;
				limit = v;
			}
		}
		if (!has_rem && ref_value(f, n, rem[k], buf, &len) && ref_number(buf, len, true, &v)) {
			has_rem = true;
			remaining = v;
		}
	}
	if (has_limit || has_rem)
		check((l->seen & SLUICE_CLIENT_X) != 0);
	if (l->source == SLUICE_CLIENT_X) {
		/* a limit the model reads must be read the same; the parser
		 * also reads forms the model does not (a policy List, the
		 * X-Rate-Limit alias) */
		check(!has_limit || (l->has_limit && l->limit == limit));
		check(l->has_remaining == has_rem && (!has_rem || l->remaining == remaining));
	}

	/* Retry-After delay-seconds; an HTTP-date is the dates mode's business */
	if (ref_value(f, n, "retry-after", buf, &len) && memchr(buf, '.', len) == NULL &&
	    ref_number(buf, len, false, &v)) {
		uint64_t ns = v > UINT64_MAX / SLUICE_NS_PER_SEC ? UINT64_MAX : v * SLUICE_NS_PER_SEC;
		check(l->has_retry_after && l->retry_after_ns == ns);
	}
}

static void headers(const char *s, size_t len)
{
	struct sluice_http_field f[32];
	size_t n = 0, i = 0;

	while (i < len && n < 32) {
		size_t end = i;
		while (end < len && s[end] != '\n')
			end++;
		size_t colon = i;
		while (colon < end && s[colon] != ':')
			colon++;
		f[n].name = s + i;
		f[n].name_len = colon - i;
		size_t v = colon < end ? colon + 1 : end;
		while (v < end && s[v] == ' ')
			v++;
		f[n].value = s + v;
		f[n].value_len = end - v;
		n++;
		i = end + 1;
	}

	struct sluice_client_limits l;
	check(sluice_client_parse(f, n, NOW_NS, &l) == 0);
	check(l.source == 0 || ((l.source & (l.source - 1)) == 0 && (l.source & l.seen) != 0));
	check(l.npolicies <= SLUICE_CLIENT_MAX_POLICIES);
	for (uint32_t k = 0; k < l.npolicies; k++) {
		check(memchr(l.policies[k].name, '\0', sizeof(l.policies[k].name)) != NULL);
		check(memchr(l.policies[k].unit, '\0', sizeof(l.policies[k].unit)) != NULL);
		check(l.policies[k].pk_len <= SLUICE_CLIENT_PK_MAX);
	}
	check(l.has_retry_after == ((l.seen & SLUICE_CLIENT_RETRY_AFTER) != 0));
	/* the vendor tables, buckets, the anchor and the governing dimension */
	check(l.bucket_len < SLUICE_CLIENT_BUCKET_MAX && l.bucket[l.bucket_len] == '\0' &&
	      strlen(l.bucket) == l.bucket_len);
	check(l.governing == UINT32_MAX || l.governing < l.npolicies);
	check((l.source != SLUICE_CLIENT_VENDOR && l.source != SLUICE_CLIENT_CALLER) || l.governing < l.npolicies);
	check(l.reset_past == (l.has_reset && l.reset_ns == 0));
	check(!l.clock_anchored || l.has_date);
	check(l.has_date == ((l.seen & SLUICE_CLIENT_DATE) != 0));
	check((l.ignored & ~(SLUICE_CLIENT_DRAFT08 | SLUICE_CLIENT_DRAFT06 | SLUICE_CLIENT_X |
			     SLUICE_CLIENT_RETRY_AFTER | SLUICE_CLIENT_VENDOR | SLUICE_CLIENT_DATE)) == 0);
	/* the same block with the built-in vendor table off: the IETF and X
	 * families read the same */
	struct sluice_client_limits off;
	struct sluice_client_parse_opts po = {.size = sizeof(po), .flags = SLUICE_CLIENT_NO_VENDOR_TABLES};
	check(sluice_client_parse_ex(f, n, NOW_NS, &po, &off) == 0);
	check((off.seen & SLUICE_CLIENT_VENDOR) == 0 && (off.seen | SLUICE_CLIENT_VENDOR) == (l.seen | SLUICE_CLIENT_VENDOR));
	if (l.source != SLUICE_CLIENT_VENDOR)
		check(off.source == l.source && off.remaining == l.remaining && off.reset_ns == l.reset_ns);
	check_plain_numbers(f, n, &l);

	struct sluice_backoff_opts o;
	struct sluice_backoff_request r = {.status = 429, .idempotent = false, .attempt = 1, .limits = &l};
	struct sluice_backoff_plan p;
	struct sluice_rng rng = {len};
	sluice_backoff_opts_default(&o);
	check(sluice_backoff_plan(&o, &r, &rng, &p) == 0);
	check(p.verdict == SLUICE_BACKOFF_RETRY || p.why == SLUICE_BACKOFF_WHY_TOO_LONG);
	(void)sluice_backoff_pace(&l, 200);
}

/* glibc reference for one format; true if it parsed the whole string. */
static bool ref_parse(const char *z, const char *fmt, time_t *t)
{
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	const char *end = strptime(z, fmt, &tm);
	if (end == NULL || *end != '\0')
		return false;
	*t = timegm(&tm);
	return true;
}

static void dates(const char *s, size_t len)
{
	uint64_t delay;
	int64_t t;
	(void)sluice_client_retry_after(s, len, NOW_NS, &delay);

	if (len > 64 || memchr(s, '\0', len) != NULL)
		return;
	char z[65];
	memcpy(z, s, len);
	z[len] = '\0';

	static const char *const fmts[2] = {"%a, %d %b %Y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"};
	bool imf = len > 4 && z[3] == ',';
	bool asc = len > 4 && z[3] == ' ';
	if (!imf && !asc)
		return;
	const char *fmt = fmts[imf ? 0 : 1];
	time_t rt;
	bool ours = sluice_http_date_parse(s, len, NOW_NS, &t) == 0;
	bool ref = ref_parse(z, fmt, &rt);
	if (ours) {
		check(ref);
		check((int64_t)rt == t);
	}
	if (ref && imf) {
		/* the reference is lenient: only its canonical inputs must pass
		 * (strftime writes years below 1000 with fewer than 4 digits) */
		struct tm g;
		char back[80];
		if (gmtime_r(&rt, &g) != NULL && g.tm_year + 1900 >= 1000 && g.tm_year + 1900 <= 9999 &&
		    strftime(back, sizeof(back), "%a, %d %b %Y %H:%M:%S GMT", &g) > 0 &&
		    strcmp(back, z) == 0) {
			check(ours);
			check((int64_t)rt == t);
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const char *s = (const char *)data + 1;
	if (data[0] % 2 == 0)
		headers(s, size - 1);
	else
		dates(s, size - 1);
	return 0;
}
