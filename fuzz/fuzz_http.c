/*
 * fuzz_http.c - rendering (include/sluice/http.h) against parsing
 * (include/sluice/client.h): the server side's output is the client side's
 * input, so each is the other's reference.
 *
 * Input: a family byte, a limit count (1..4), now, then per limit its
 * decision, quota, window, name, unit and partition key, all from the bytes
 * (fuzz_u64 reads zero once the input runs out). Properties checked:
 *   1. rendering never crashes; it returns 0, or SLUICE_EINVAL exactly when
 *      the families conflict or a draft-11 name/unit has a byte outside
 *      0x20-0x7E (or a draft-11 name is missing);
 *   2. sluice_http_render_fields() gives the same text, field for field, as
 *      sluice_http_render_headers(); with a buffer one byte short both say
 *      SLUICE_ETRUNC and the same size needed, and write a prefix of it;
 *   3. round trip: the rendered lines, parsed by sluice_client_parse() at the
 *      same now, give the values a reference model predicts from the limits
 *      (the rendering rules of http.h: governing limit, seconds rounded up,
 *      clamping to the RFC 9651 Integer range; the reading rules of client.h:
 *      the size classification of reset values, the governing RateLimit
 *      item, policies joined by name and pk);
 *   3b. the 429 body of the first limit's decision, in every style: EINVAL
 *      for an admission or an unknown style, else exactly the documented
 *      JSON with retryAfterSec (and the message's N) the reference's
 *      Retry-After seconds, and ETRUNC with the same size one byte short;
 *   4. with a realistic clock (now in 2001..2286) and a reset under 31
 *      years, every rendered reset reads back no earlier than the limiter's
 *      and at most one rendering unit (1 s, or 1 ms for X_UNIX_MS) later, and
 *      Retry-After never reads back shorter than the longest denial's wait.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sluice/client.h>
#include <sluice/http.h>

#include "fuzz.h"

#define CHECK(cond)                                                                          \
	do {                                                                                 \
		if (!(cond)) {                                                               \
			fprintf(stderr, "fuzz_http: %s:%d: %s\n", __FILE__, __LINE__, #cond); \
			abort();                                                             \
		}                                                                            \
	} while (0)

#define MAX_LIMITS 4
#define SF_MAX UINT64_C(999999999999999)
#define NS_PER_MS UINT64_C(1000000)
#define BUF_CAP 4096

static const unsigned ietf_bits[4] = {0, SLUICE_HTTP_DRAFT11, SLUICE_HTTP_DRAFT07, SLUICE_HTTP_DRAFT06};
static const unsigned x_bits[4] = {0, SLUICE_HTTP_X_DELTA, SLUICE_HTTP_X_UNIX_S, SLUICE_HTTP_X_UNIX_MS};

struct text {
	char s[40];
	size_t len;
};

struct gen {
	struct sluice_http_limit limits[MAX_LIMITS];
	struct text names[MAX_LIMITS], units[MAX_LIMITS];
	uint8_t pks[MAX_LIMITS][24];
	bool bad_text; /* a draft-11 name or unit outside 0x20-0x7E, or no name */
};

/* ---- reference arithmetic (written from the headers' prose) ------------------ */

static uint64_t ceil_div(uint64_t a, uint64_t b)
{
	return a / b + (a % b != 0);
}

static uint64_t clamp_sf(uint64_t v)
{
	return v > SF_MAX ? SF_MAX : v;
}

static uint64_t mul_sat(uint64_t a, uint64_t b)
{
	return b != 0 && a > UINT64_MAX / b ? UINT64_MAX : a * b;
}

static uint64_t add_sat(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* client.h: a reset number is Unix ms from 10^12, Unix s from 10^9, else delta s */
static uint64_t read_reset(uint64_t v, uint64_t now)
{
	uint64_t at;
	if (v >= UINT64_C(1000000000000))
		at = mul_sat(v, NS_PER_MS);
	else if (v >= UINT64_C(1000000000))
		at = mul_sat(v, SLUICE_NS_PER_SEC);
	else
		return mul_sat(v, SLUICE_NS_PER_SEC);
	return at > now ? at - now : 0;
}

static uint64_t window_s(const struct sluice_http_limit *l)
{
	uint64_t s = ceil_div(l->window_ns, SLUICE_NS_PER_SEC);
	return clamp_sf(s == 0 ? 1 : s);
}

/* http.h: at most one IETF family, at most one X encoding, no unknown bit */
static bool valid_families(unsigned f)
{
	unsigned ietf = f & (SLUICE_HTTP_DRAFT11 | SLUICE_HTTP_DRAFT07 | SLUICE_HTTP_DRAFT06);
	unsigned x = f & (SLUICE_HTTP_X_DELTA | SLUICE_HTTP_X_UNIX_S | SLUICE_HTTP_X_UNIX_MS);
	return (f & ~(ietf | x | SLUICE_HTTP_RETRY_AFTER)) == 0 && __builtin_popcount(ietf) <= 1 &&
	       __builtin_popcount(x) <= 1;
}

/* Retry-After seconds of one decision: rounded up, at least 1, clamped. */
static uint64_t ref_retry_after_s(uint64_t wait_ns)
{
	uint64_t s = wait_ns == SLUICE_NEVER ? SF_MAX : clamp_sf(ceil_div(wait_ns, SLUICE_NS_PER_SEC));
	return s == 0 ? 1 : s;
}

static uint64_t quota_of(const struct sluice_http_limit *l)
{
	return l->quota != 0 ? l->quota : l->decision.limit;
}

/* http.h: a denying limit with the longest wait, else the least remaining,
 * ties to the longest reset, then the first */
static size_t governing(const struct sluice_http_limit *l, size_t n)
{
	size_t g = 0;
	for (size_t i = 1; i < n; i++) {
		const struct sluice_decision *a = &l[i].decision, *b = &l[g].decision;
		if (a->allowed != b->allowed) {
			if (!a->allowed)
				g = i;
		} else if (!a->allowed && a->retry_after_ns != b->retry_after_ns) {
			if (a->retry_after_ns > b->retry_after_ns)
				g = i;
		} else if (a->remaining != b->remaining) {
			if (a->remaining < b->remaining)
				g = i;
		} else if (a->reset_ns > b->reset_ns) {
			g = i;
		}
	}
	return g;
}

/* ---- input -------------------------------------------------------------------- */

static uint64_t number(struct fuzz_input *in)
{
	/* 0..8 bytes: small values as often as huge ones */
	return fuzz_u64(in, fuzz_u8(in) % 9);
}

static void text(struct fuzz_input *in, struct text *t, bool printable)
{
	t->len = fuzz_u8(in) % 12;
	for (size_t i = 0; i < t->len; i++) {
		uint8_t c = fuzz_u8(in);
		t->s[i] = (char)(printable ? 0x20 + c % 95 : c);
		if (t->s[i] == '\0')
			t->s[i] = '\x01';
	}
	t->s[t->len] = '\0';
}

static bool is_printable(const struct text *t)
{
	for (size_t i = 0; i < t->len; i++)
		if ((unsigned char)t->s[i] < 0x20 || (unsigned char)t->s[i] > 0x7e)
			return false;
	return true;
}

static void generate(struct fuzz_input *in, struct gen *g, size_t n, bool draft11)
{
	memset(g, 0, sizeof(*g));
	for (size_t i = 0; i < n; i++) {
		struct sluice_http_limit *l = &g->limits[i];
		uint8_t flags = fuzz_u8(in);
		l->decision.allowed = (flags & 1) != 0;
		l->decision.degraded = (flags & 0xe) == 0xe; /* 1 in 8 */
		l->decision.limit = number(in);
		l->decision.remaining = number(in);
		l->decision.reset_ns = number(in);
		l->decision.retry_after_ns = l->decision.allowed ? 0 : number(in);
		l->quota = (flags & 0x10) ? number(in) : 0;
		l->window_ns = (flags & 0x20) ? number(in) : 0;
		/* distinct names: the index first, so policies never merge */
		text(in, &g->names[i], (flags & 0x40) == 0);
		memmove(g->names[i].s + 1, g->names[i].s, g->names[i].len + 1);
		g->names[i].s[0] = (char)('0' + i);
		g->names[i].len++;
		l->name = g->names[i].s;
		uint8_t more = fuzz_u8(in);
		if (more & 1) {
			text(in, &g->units[i], (more & 2) == 0);
			l->quota_unit = g->units[i].s;
			if (draft11 && !is_printable(&g->units[i]))
				g->bad_text = true;
		}
		if (more & 4) {
			l->partition_key_len = 1 + fuzz_u8(in) % sizeof(g->pks[i]);
			for (size_t k = 0; k < l->partition_key_len; k++)
				g->pks[i][k] = fuzz_u8(in);
			l->partition_key = g->pks[i];
		}
		if ((more & 8) && (more & 0x30) == 0x30)
			l->name = NULL; /* draft-11 refuses it; the others ignore names */
		if (draft11 && (l->name == NULL || !is_printable(&g->names[i])))
			g->bad_text = true;
	}
}

/* ---- the two renderings --------------------------------------------------------- */

struct lines {
	struct sluice_http_field f[16];
	size_t n;
};

/* Split "Name: value\r\n" lines, checking their shape. */
static void split(const char *s, size_t len, struct lines *out)
{
	size_t i = 0;
	out->n = 0;
	while (i < len) {
		const char *eol = memchr(s + i, '\r', len - i);
		CHECK(eol != NULL && (size_t)(eol - s) + 1 < len && eol[1] == '\n');
		const char *colon = memchr(s + i, ':', (size_t)(eol - (s + i)));
		CHECK(colon != NULL && colon[1] == ' ');
		CHECK(out->n < 16);
		struct sluice_http_field *f = &out->f[out->n++];
		f->name = s + i;
		f->name_len = (size_t)(colon - (s + i));
		f->value = colon + 2;
		f->value_len = (size_t)(eol - (colon + 2));
		for (size_t k = 0; k < f->value_len; k++)
			CHECK(f->value[k] >= 0x20 && f->value[k] <= 0x7e);
		i = (size_t)(eol - s) + 2;
	}
}

static void check_fields_mode(unsigned fam, const struct gen *g, size_t n, uint64_t now,
			      const char *text, size_t size, const struct lines *ln)
{
	static char buf[BUF_CAP];
	struct sluice_http_field f[8];
	size_t fsize = 0, nf = 0;

	int rc = sluice_http_render_fields(fam, g->limits, n, now, buf, sizeof(buf), &fsize, f, 8, &nf);
	CHECK(rc == 0);
	CHECK(nf == ln->n);
	for (size_t i = 0; i < nf; i++) {
		CHECK(f[i].name_len == ln->f[i].name_len && memcmp(f[i].name, ln->f[i].name, f[i].name_len) == 0);
		CHECK(f[i].value_len == ln->f[i].value_len &&
		      memcmp(f[i].value, ln->f[i].value, f[i].value_len) == 0);
		CHECK(f[i].value[f[i].value_len] == '\0');
	}
	/* too few field slots: ETRUNC, the count still reported */
	if (nf > 0) {
		size_t nf2 = 0;
		CHECK(sluice_http_render_fields(fam, g->limits, n, now, buf, sizeof(buf), NULL, f, nf - 1,
						&nf2) == SLUICE_ETRUNC);
		CHECK(nf2 == nf);
	}
	/* one byte short: ETRUNC, same size, a prefix written */
	if (size > 1) {
		static char small[BUF_CAP];
		size_t size2 = 0;
		CHECK(sluice_http_render_headers(fam, g->limits, n, now, small, size - 1, &size2) ==
		      SLUICE_ETRUNC);
		CHECK(size2 == size && memcmp(small, text, size - 1) == 0);
	}
}

/* ---- the round trip ------------------------------------------------------------- */

static void check_reset_bounds(uint64_t got_ns, uint64_t reset_ns, uint64_t unit_ns)
{
	CHECK(got_ns >= reset_ns);
	CHECK(got_ns - reset_ns < unit_ns);
}

static void round_trip(unsigned fam, const struct gen *g, size_t n, uint64_t now, const struct lines *ln)
{
	struct sluice_client_limits cl;
	bool degraded = false, denied = false;
	uint64_t wait_ns = 0;
	/* realistic: 2001 <= now < 2286 and every reset < 31 years */
	bool realistic = now >= UINT64_C(1000000000) * SLUICE_NS_PER_SEC &&
			 now < UINT64_C(9999999999) * SLUICE_NS_PER_SEC;

	for (size_t i = 0; i < n; i++) {
		const struct sluice_decision *d = &g->limits[i].decision;
		degraded = degraded || d->degraded;
		if (!d->allowed) {
			denied = true;
			wait_ns = d->retry_after_ns > wait_ns ? d->retry_after_ns : wait_ns;
		}
		realistic = realistic && d->reset_ns < UINT64_C(999999999) * SLUICE_NS_PER_SEC;
	}

	CHECK(sluice_client_parse(ln->f, ln->n, now, &cl) == 0);

	/* Retry-After: the longest wait, whole seconds rounded up, at least 1 */
	if (denied && (fam & SLUICE_HTTP_RETRY_AFTER)) {
		CHECK(cl.has_retry_after && cl.retry_after_ns == mul_sat(ref_retry_after_s(wait_ns), SLUICE_NS_PER_SEC));
		CHECK(cl.retry_after_ns >= wait_ns); /* never earlier than told */
	} else {
		CHECK(!cl.has_retry_after);
	}

	unsigned ietf = fam & (SLUICE_HTTP_DRAFT11 | SLUICE_HTTP_DRAFT07 | SLUICE_HTTP_DRAFT06);
	unsigned x = fam & (SLUICE_HTTP_X_DELTA | SLUICE_HTTP_X_UNIX_S | SLUICE_HTTP_X_UNIX_MS);
	if (degraded || (ietf == 0 && x == 0)) {
		CHECK((cl.seen & ~(uint32_t)SLUICE_CLIENT_RETRY_AFTER) == 0 && cl.source == 0);
		CHECK(cl.npolicies == 0);
		return;
	}

	const struct sluice_http_limit *gl = &g->limits[governing(g->limits, n)];
	uint64_t reset_s = clamp_sf(ceil_div(gl->decision.reset_ns, SLUICE_NS_PER_SEC));
	size_t windowed = 0;
	for (size_t i = 0; i < n; i++)
		windowed += g->limits[i].window_ns != 0;

	if (ietf == SLUICE_HTTP_DRAFT11) {
		CHECK(cl.source == SLUICE_CLIENT_DRAFT08);
		CHECK((cl.seen & (SLUICE_CLIENT_DRAFT07 | SLUICE_CLIENT_DRAFT06)) == 0);
		CHECK(cl.npolicies == n && !cl.policies_truncated);
		/* the governing RateLimit item: least r, ties the longest t, then the first */
		size_t best = 0;
		for (size_t i = 0; i < n; i++) {
			const struct sluice_http_limit *l = &g->limits[i];
			const struct sluice_client_policy *p = &cl.policies[i];
			uint64_t r = clamp_sf(l->decision.remaining);
			uint64_t t = clamp_sf(ceil_div(l->decision.reset_ns, SLUICE_NS_PER_SEC));
			size_t pk_len = l->partition_key != NULL ? l->partition_key_len : 0;
			CHECK(strcmp(p->name, l->name) == 0 && !p->name_truncated);
			CHECK(p->pk_len == pk_len && !p->pk_truncated &&
			      (pk_len == 0 || memcmp(p->pk, l->partition_key, pk_len) == 0));
			CHECK(p->has_quota && p->quota == clamp_sf(quota_of(l)));
			CHECK(p->has_window == (l->window_ns != 0));
			if (l->window_ns != 0)
				CHECK(p->window_s == window_s(l));
			CHECK(strcmp(p->unit, l->quota_unit != NULL ? l->quota_unit : "") == 0);
			CHECK(p->has_remaining && p->remaining == r);
			CHECK(p->has_reset && p->reset_ns == mul_sat(t, SLUICE_NS_PER_SEC));
			uint64_t br = clamp_sf(g->limits[best].decision.remaining);
			uint64_t bt = clamp_sf(ceil_div(g->limits[best].decision.reset_ns, SLUICE_NS_PER_SEC));
			if (r < br || (r == br && t > bt))
				best = i;
			if (realistic)
				check_reset_bounds(p->reset_ns, l->decision.reset_ns, SLUICE_NS_PER_SEC);
		}
		const struct sluice_http_limit *b = &g->limits[best];
		CHECK(cl.has_limit && cl.limit == clamp_sf(quota_of(b)));
		CHECK(cl.has_remaining && cl.remaining == clamp_sf(b->decision.remaining));
		CHECK(cl.has_reset && cl.reset_ns == cl.policies[best].reset_ns);
	} else if (ietf != 0) {
		/* draft-06/07: one governing triple; unnamed policies for the
		 * windowed limits (a List of Integers: the draft 04-06 shape) */
		uint32_t fam_bit = ietf == SLUICE_HTTP_DRAFT07 ? SLUICE_CLIENT_DRAFT07 : SLUICE_CLIENT_DRAFT06;
		CHECK(cl.source == fam_bit);
		CHECK((cl.seen & SLUICE_CLIENT_DRAFT08) == 0);
		CHECK(((cl.seen & SLUICE_CLIENT_DRAFT06) != 0) == (windowed > 0 || fam_bit == SLUICE_CLIENT_DRAFT06));
		CHECK(cl.has_limit && cl.limit == clamp_sf(quota_of(gl)));
		CHECK(cl.has_remaining && cl.remaining == clamp_sf(gl->decision.remaining));
		CHECK(cl.has_reset && cl.reset_ns == read_reset(reset_s, now));
		if (realistic)
			check_reset_bounds(cl.reset_ns, gl->decision.reset_ns, SLUICE_NS_PER_SEC);
		CHECK(cl.npolicies == windowed);
		for (size_t i = 0, k = 0; i < n; i++) {
			const struct sluice_http_limit *l = &g->limits[i];
			if (l->window_ns == 0)
				continue;
			const struct sluice_client_policy *p = &cl.policies[k++];
			CHECK(p->name[0] == '\0' && p->pk_len == 0 && p->unit[0] == '\0');
			CHECK(p->has_quota && p->quota == clamp_sf(quota_of(l)));
			CHECK(p->has_window && p->window_s == window_s(l));
			CHECK(!p->has_remaining && !p->has_reset);
		}
	}

	if (x != 0) {
		CHECK((cl.seen & SLUICE_CLIENT_X) != 0);
		if (ietf == 0) {
			uint64_t at = add_sat(now, gl->decision.reset_ns), unit = SLUICE_NS_PER_SEC, v;
			if (x == SLUICE_HTTP_X_DELTA) {
				v = reset_s;
			} else if (x == SLUICE_HTTP_X_UNIX_S) {
				v = clamp_sf(ceil_div(at, SLUICE_NS_PER_SEC));
			} else {
				v = clamp_sf(ceil_div(at, NS_PER_MS));
				unit = NS_PER_MS;
			}
			CHECK(cl.source == SLUICE_CLIENT_X);
			CHECK(cl.has_limit && cl.limit == clamp_sf(quota_of(gl)));
			CHECK(cl.has_remaining && cl.remaining == clamp_sf(gl->decision.remaining));
			CHECK(cl.has_reset && cl.reset_ns == read_reset(v, now));
			if (realistic)
				check_reset_bounds(cl.reset_ns, gl->decision.reset_ns, unit);
		}
	} else {
		CHECK((cl.seen & SLUICE_CLIENT_X) == 0);
	}
}

static void check_body(const struct sluice_decision *d, uint8_t style_byte)
{
	static char body[512], want[512];
	int style = style_byte % 5; /* 0 and 4: unknown */
	size_t size = 0;
	int rc = sluice_http_render_body((enum sluice_http_body_style)style, d, body, sizeof(body), &size);

	if (d->allowed || style == 0 || style == 4) {
		CHECK(rc == SLUICE_EINVAL && size == 0);
		return;
	}
	unsigned long long n = (unsigned long long)ref_retry_after_s(d->retry_after_ns);
	if (style == SLUICE_HTTP_BODY_JSON_DATA_ERROR)
		snprintf(want, sizeof(want), "{\"data\":null,\"error\":{\"code\":\"RATE_LIMITED\","
			 "\"message\":\"Too many requests\"}}");
	else if (style == SLUICE_HTTP_BODY_EMPTY)
		want[0] = '\0';
	else if (d->reason == SLUICE_REASON_CONCURRENCY)
		snprintf(want, sizeof(want), "{\"error\":{\"code\":\"concurrent_limit\",\"retryAfterSec\":%llu}}", n);
	else
		snprintf(want, sizeof(want), "{\"error\":{\"code\":\"rate_limited\",\"message\":\"Too many "
			 "requests. Retry after %llu seconds.\",\"retryAfterSec\":%llu}}", n, n);
	CHECK(rc == 0 && size == strlen(want) + 1 && strcmp(body, want) == 0);
	CHECK((sluice_http_body_content_type((enum sluice_http_body_style)style) == NULL) ==
	      (style == SLUICE_HTTP_BODY_EMPTY));
	if (size > 1) {
		size_t size2 = 0;
		CHECK(sluice_http_render_body((enum sluice_http_body_style)style, d, body, size - 1, &size2) ==
		      SLUICE_ETRUNC && size2 == size);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_input in = {data, size};
	static struct gen g;
	static char text_buf[BUF_CAP];
	uint8_t fb = fuzz_u8(&in);
	unsigned fam = ietf_bits[fb & 3] | x_bits[(fb >> 2) & 3] | ((fb & 0x10) ? SLUICE_HTTP_RETRY_AFTER : 0);

	if (fb & 0x20) /* another IETF or X bit (maybe a second one), or an unknown one */
		fam |= 1u << ((fb >> 6) != 0 ? (fb >> 6) + 1 : 7);
	bool conflicting = !valid_families(fam);
	size_t n = 1 + fuzz_u8(&in) % MAX_LIMITS;
	uint8_t style = fuzz_u8(&in);
	uint8_t nb = fuzz_u8(&in);
	/* now: 2026-11-23 plus up to 255 s, or any 64-bit value */
	uint64_t now = nb < 0xf0 ? UINT64_C(1795392000) * SLUICE_NS_PER_SEC + nb * SLUICE_NS_PER_SEC
				 : fuzz_u64(&in, 8);
	generate(&in, &g, n, (fam & SLUICE_HTTP_DRAFT11) != 0);

	g.limits[0].decision.reason = (uint8_t)(style / 5 % 6);
	check_body(&g.limits[0].decision, style);

	size_t need = 0;
	int rc = sluice_http_render_headers(fam, g.limits, n, now, text_buf, sizeof(text_buf), &need);
	if (conflicting || g.bad_text) {
		bool degraded = false;
		for (size_t i = 0; i < n; i++)
			degraded = degraded || g.limits[i].decision.degraded;
		/* a bad name or unit is only seen when draft-11 is rendered */
		CHECK(rc == SLUICE_EINVAL || (!conflicting && degraded && rc == 0));
		if (rc == SLUICE_EINVAL)
			return 0;
	}
	CHECK(rc == 0);
	CHECK(need >= 1 && need <= sizeof(text_buf) && text_buf[need - 1] == '\0' && strlen(text_buf) == need - 1);

	struct lines ln;
	split(text_buf, need - 1, &ln);
	check_fields_mode(fam, &g, n, now, text_buf, need, &ln);
	round_trip(fam, &g, n, now, &ln);
	return 0;
}
