/*
 * fuzz_template.c - response templates against a reference that builds the
 * same text the naive way: scan the template, look each "{name}" up by
 * strcmp, format numbers with snprintf, escape strings by decoding each
 * UTF-8 code point and checking its value (where the library checks byte
 * ranges).
 *
 * Input: one byte of flags (bit 0: JSON), the decision and values (read
 * with fuzz_u64; bit 7 of a byte turns retry_after_ns into SLUICE_NEVER),
 * three length-prefixed strings (limit name, scope, policy), then the
 * template text. Properties checked on every input:
 *   1. compile: same code as the reference and, on error, the same offset;
 *   2. render: same bytes and same size as the reference;
 *   3. a buffer one byte short gives SLUICE_ETRUNC, the same size, and the
 *      same prefix, with nothing written past cap.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sluice/template.h>

#include "fuzz.h"

#define OUT_CAP (1 << 17)
#define MAXV 999999999999999ull

struct ref {
	char *buf;
	size_t len;
};

static void ref_put(struct ref *r, const char *s, size_t n)
{
	memcpy(r->buf + r->len, s, n);
	r->len += n;
}

static void ref_uint(struct ref *r, unsigned long long v)
{
	char tmp[32];
	if (v > MAXV)
		v = MAXV;
	ref_put(r, tmp, (size_t)snprintf(tmp, sizeof(tmp), "%llu", v));
}

static unsigned long long up(unsigned long long a, unsigned long long b)
{
	unsigned long long q = a / b;
	return q * b == a ? q : q + 1;
}

static unsigned long long plus(unsigned long long a, unsigned long long b)
{
	return a + b < a ? ~0ull : a + b;
}

static void ref_json(struct ref *r, const unsigned char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		unsigned c = s[i];
		if (c == '"' || c == '\\') {
			char e[2] = {'\\', (char)c};
			ref_put(r, e, 2);
			i++;
			continue;
		}
		if (c < 0x20) {
			char e[8];
			snprintf(e, sizeof(e), "\\u%04x", c);
			ref_put(r, e, 6);
			i++;
			continue;
		}
		if (c < 0x80) {
			ref_put(r, (const char *)s + i, 1);
			i++;
			continue;
		}
		/* decode: length from the lead byte, then the code point's value */
		size_t k = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
		unsigned long cp = k == 4 ? c & 7 : k == 3 ? c & 15 : c & 31;
		bool ok = k != 0 && i + k <= n && c < 0xF8;
		for (size_t j = 1; ok && j < k; j++) {
			if ((s[i + j] & 0xC0) != 0x80)
				ok = false;
			cp = cp << 6 | (s[i + j] & 0x3F);
		}
		static const unsigned long min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
		if (ok && (cp < min_cp[k] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)))
			ok = false;
		if (ok) {
			ref_put(r, (const char *)s + i, k);
			i += k;
		} else {
			ref_put(r, "\\ufffd", 6);
			i++;
		}
	}
}

static const char *const names[] = {"limit",	  "remaining",	    "reset_s",	      "reset_ms",
				    "reset_unix",	  "reset_unix_ms", "retry_after_s", "retry_after_ms",
				    "retry_after_unix", "limit_name",	    "scope",	      "policy",
				    "reason",	  "status"};

static void ref_field(struct ref *r, int id, const struct sluice_template_values *v, bool json)
{
	const struct sluice_decision *d = &v->decision;
	static const char *const words[] = {"none", "rate", "quota", "concurrency", "capacity", "never"};
	unsigned long long wait_s = d->allowed ? 0
				    : d->retry_after_ns == ~0ull ? MAXV
				    : up(d->retry_after_ns, 1000000000ull) ? up(d->retry_after_ns, 1000000000ull)
				    : 1;
	unsigned long long wait_ms = d->allowed ? 0
				     : d->retry_after_ns == ~0ull ? MAXV
				     : up(d->retry_after_ns, 1000000ull) ? up(d->retry_after_ns, 1000000ull)
				     : 1;
	const char *s = NULL;
	size_t n = 0;
	switch (id) {
	case 0: ref_uint(r, d->limit); return;
	case 1: ref_uint(r, d->remaining); return;
	case 2: ref_uint(r, up(d->reset_ns, 1000000000ull)); return;
	case 3: ref_uint(r, up(d->reset_ns, 1000000ull)); return;
	case 4: ref_uint(r, up(plus(v->now_unix_ns, d->reset_ns), 1000000000ull)); return;
	case 5: ref_uint(r, up(plus(v->now_unix_ns, d->reset_ns), 1000000ull)); return;
	case 6: ref_uint(r, wait_s); return;
	case 7: ref_uint(r, wait_ms); return;
	case 8:
		ref_uint(r, d->allowed ? 0
			    : d->retry_after_ns == ~0ull ? MAXV
			    : up(plus(v->now_unix_ns, d->retry_after_ns), 1000000000ull));
		return;
	case 9: s = v->limit_name; n = v->limit_name_len; break;
	case 10: s = v->scope; n = v->scope_len; break;
	case 11: s = v->policy; n = v->policy_len; break;
	case 12:
		s = d->reason < 6 ? words[d->reason] : "";
		n = strlen(s);
		break;
	default: ref_uint(r, v->status); return;
	}
	if (json)
		ref_json(r, (const unsigned char *)s, n);
	else
		ref_put(r, s, n);
}

/* Compile and render at once; returns the code, *err_at the offset. */
static int reference(const char *t, size_t len, bool json, const struct sluice_template_values *v, struct ref *r,
		     size_t *err_at)
{
	int fields = 0;
	if (len > 4096) {
		*err_at = 4096;
		return SLUICE_ETOOBIG;
	}
	for (size_t i = 0; i < len; i++) {
		if (t[i] == '{' && i + 1 < len && t[i + 1] == '{') {
			ref_put(r, "{", 1);
			i++;
		} else if (t[i] == '}' && i + 1 < len && t[i + 1] == '}') {
			ref_put(r, "}", 1);
			i++;
		} else if (t[i] == '}') {
			*err_at = i;
			return SLUICE_ESYNTAX;
		} else if (t[i] == '{') {
			char name[64];
			size_t k = 0;
			size_t j = i + 1;
			while (j < len && ((t[j] >= 'a' && t[j] <= 'z') || t[j] == '_')) {
				if (k < sizeof(name) - 1)
					name[k++] = t[j];
				j++;
			}
			name[k] = '\0';
			*err_at = i;
			if (j == len)
				return SLUICE_ESYNTAX;
			if (t[j] != '}' || j == i + 1)
				return SLUICE_ESYNTAX;
			int id = -1;
			for (int f = 0; f < 14; f++)
				if (j - i - 1 < sizeof(name) - 1 && strcmp(names[f], name) == 0)
					id = f;
			if (id < 0)
				return SLUICE_ENOTFOUND;
			if (++fields > 64)
				return SLUICE_ETOOBIG;
			ref_field(r, id, v, json);
			i = j;
		} else {
			ref_put(r, t + i, 1);
		}
	}
	ref_put(r, "", 1);
	return SLUICE_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct sluice_template tpl;
	static char want[OUT_CAP], got[OUT_CAP];
	struct fuzz_input in = {data, size};
	struct sluice_template_values v;

	memset(&v, 0, sizeof(v));
	unsigned flags = fuzz_u8(&in) & 1;
	uint8_t b = fuzz_u8(&in);
	v.decision.allowed = b & 1;
	v.decision.reason = (uint8_t)((b >> 1) % 7);
	v.decision.limit = fuzz_u64(&in, 8);
	v.decision.remaining = fuzz_u64(&in, 8);
	v.decision.reset_ns = fuzz_u64(&in, 8);
	v.decision.retry_after_ns = b & 0x80 ? SLUICE_NEVER : fuzz_u64(&in, 8);
	v.now_unix_ns = fuzz_u64(&in, 8);
	v.status = (unsigned)fuzz_u64(&in, 2);
	const char **strs[3] = {&v.limit_name, &v.scope, &v.policy};
	size_t *lens[3] = {&v.limit_name_len, &v.scope_len, &v.policy_len};
	for (int k = 0; k < 3; k++) {
		size_t n = fuzz_u8(&in) % 64;
		n = n < in.size ? n : in.size;
		*strs[k] = (const char *)in.data;
		*lens[k] = n;
		in.data += n;
		in.size -= n;
	}
	const char *text = (const char *)in.data;
	size_t len = in.size;

	struct ref r = {want, 0};
	size_t want_at = 0;
	int want_rc = reference(text, len, flags != 0, &v, &r, &want_at);
	struct sluice_template_error err;
	int rc = sluice_template_compile(len ? text : "", len, flags, &tpl, &err);
	if (rc != want_rc || (rc != SLUICE_OK && err.offset != want_at)) {
		fprintf(stderr, "fuzz_template: compile %d at %zu (%s), reference %d at %zu\n", rc,
			rc ? err.offset : 0, rc ? err.message : "", want_rc, want_at);
		abort();
	}
	if (rc != SLUICE_OK)
		return 0;
	size_t need = 0;
	rc = sluice_template_render(&tpl, &v, got, sizeof(got), &need);
	if (rc != SLUICE_OK || need != r.len || memcmp(got, want, need) != 0) {
		fprintf(stderr, "fuzz_template: render %d, %zu bytes '%.*s'; reference %zu bytes '%.*s'\n", rc, need,
			(int)need, got, r.len, (int)r.len, want);
		abort();
	}
	memset(got, 0x5A, need);
	size_t need2 = 0;
	rc = sluice_template_render(&tpl, &v, got, need - 1, &need2);
	if (rc != SLUICE_ETRUNC || need2 != need || memcmp(got, want, need - 1) != 0 || got[need - 1] != 0x5A) {
		fprintf(stderr, "fuzz_template: one byte short: %d, %zu\n", rc, need2);
		abort();
	}
	return 0;
}
