/*
 * fuzz/fuzz_identity.c - sluice_identity_extract() against a plain
 * reference, on hostile Authorization, Cookie, query and X-Forwarded-For
 * input. The input is up to eight fields separated by NUL bytes: two
 * Authorization values, two Cookie values, the request target, two
 * X-Forwarded-For values and the peer address. The reference reads each
 * source the simple way (copy, split, trim, decode, compare) and must
 * agree on every identity, on absence, and on ambiguity; a value the
 * reference finds longer than SLUICE_IDENTITY_MAX must come back as a
 * 32-digit hash.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>

#include <sluice/identity.h>

#include "fuzz.h"

static const char policy_text[] = "policy \"f\"\n"
				  "trusted-proxies 10.0.0.0/8 ::1\n"
				  "scope token from authorization Bearer optional\n"
				  "scope basic from authorization basic optional\n"
				  "scope sid from cookie sid optional\n"
				  "scope q from query k optional\n"
				  "scope ip from forwarded-for\n"
				  "limit l per ip sliding 5/1m\n";

enum { F_AUTH1, F_AUTH2, F_COOKIE1, F_COOKIE2, F_TARGET, F_XFF1, F_XFF2, F_PEER, F_COUNT };

struct text {
	char s[4096];
	size_t n;
	bool set;
};

/* The reference's answer for one scope: nothing, a value, or ambiguous. */
struct ref {
	bool has, ambiguous;
	struct text v;
};

static bool ows(char c)
{
	return c == ' ' || c == '\t';
}

static void ref_trim(const char *p, size_t n, struct text *out)
{
	while (n > 0 && ows(*p))
		p++, n--;
	while (n > 0 && ows(p[n - 1]))
		n--;
	memcpy(out->s, p, n);
	out->n = n;
}

static void ref_offer(struct ref *r, const struct text *v)
{
	if (v->n == 0)
		return;
	if (!r->has) {
		r->has = true;
		r->v = *v;
	} else if (r->v.n != v->n || memcmp(r->v.s, v->s, v->n) != 0) {
		r->ambiguous = true;
	}
}

static void ref_auth(const struct text *h, const char *scheme, struct ref *r)
{
	struct text t;
	ref_trim(h->s, h->n, &t);
	size_t k = strlen(scheme);
	if (t.n <= k || strncasecmp(t.s, scheme, k) != 0 || !ows(t.s[k]))
		return;
	struct text v;
	ref_trim(t.s + k, t.n - k, &v);
	ref_offer(r, &v);
}

static void ref_cookie(const struct text *h, struct ref *r)
{
	size_t start = 0;
	for (size_t i = 0; i <= h->n; i++) {
		if (i < h->n && h->s[i] != ';')
			continue;
		const char *pair = h->s + start;
		size_t n = i - start;
		start = i + 1;
		const char *eq = memchr(pair, '=', n);
		if (eq == NULL)
			continue;
		struct text name, v;
		ref_trim(pair, (size_t)(eq - pair), &name);
		ref_trim(eq + 1, n - (size_t)(eq - pair) - 1, &v);
		if (v.n >= 2 && v.s[0] == '"' && v.s[v.n - 1] == '"') {
			/* the quotes removed, then trimmed again, as documented */
			struct text q;
			ref_trim(v.s + 1, v.n - 2, &q);
			v = q;
		}
		if (name.n == 3 && memcmp(name.s, "sid", 3) == 0)
			ref_offer(r, &v);
	}
}

static int hex(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static void decode(const char *p, size_t n, struct text *out)
{
	out->n = 0;
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '+')
			out->s[out->n++] = ' ';
		else if (p[i] == '%' && i + 2 < n && hex(p[i + 1]) >= 0 && hex(p[i + 2]) >= 0) {
			out->s[out->n++] = (char)(hex(p[i + 1]) * 16 + hex(p[i + 2]));
			i += 2;
		} else
			out->s[out->n++] = p[i];
	}
}

static void ref_query(const struct text *target, struct ref *r)
{
	const char *q = memchr(target->s, '?', target->n);
	if (q == NULL)
		return;
	size_t end = target->n;
	const char *frag = memchr(q, '#', (size_t)(target->s + target->n - q));
	if (frag != NULL)
		end = (size_t)(frag - target->s);
	size_t start = (size_t)(q - target->s) + 1;
	for (size_t i = start; i <= end; i++) {
		if (i < end && target->s[i] != '&')
			continue;
		const char *pair = target->s + start;
		size_t n = i - start;
		start = i + 1;
		const char *eq = memchr(pair, '=', n);
		if (eq == NULL)
			continue;
		struct text name, raw, v;
		decode(pair, (size_t)(eq - pair), &name);
		if (name.n != 1 || name.s[0] != 'k')
			continue;
		ref_trim(eq + 1, n - (size_t)(eq - pair) - 1, &raw);
		decode(raw.s, raw.n, &v);
		if (raw.n > 0)
			ref_offer(r, &v);
	}
}

static bool ref_trusted(const char *s, size_t n)
{
	char z[64];
	unsigned char a[16];
	if (n == 0 || n >= sizeof z)
		return false;
	memcpy(z, s, n);
	z[n] = '\0';
	if (inet_pton(AF_INET, z, a) == 1)
		return a[0] == 10;
	if (inet_pton(AF_INET6, z, a) != 1)
		return false;
	static const unsigned char loop[16] = {[15] = 1}, mapped[12] = {[10] = 0xff, [11] = 0xff};
	return memcmp(a, loop, 16) == 0 || (memcmp(a, mapped, 12) == 0 && a[12] == 10);
}

/* Trimmed [p, p + n) in place: the bounds of the entry. */
struct span {
	const char *p;
	size_t n;
};

static struct span trimmed(const char *p, size_t n)
{
	while (n > 0 && ows(*p))
		p++, n--;
	while (n > 0 && ows(p[n - 1]))
		n--;
	return (struct span){p, n};
}

static void offer_span(struct ref *r, struct span s)
{
	struct text t;
	memcpy(t.s, s.p, s.n);
	t.n = s.n;
	ref_offer(r, &t);
}

static void ref_xff(const struct text *xff, const struct text *peer, struct ref *r)
{
	if (!peer->set || !ref_trusted(peer->s, peer->n)) {
		if (peer->set)
			offer_span(r, trimmed(peer->s, peer->n));
		return;
	}
	static struct span list[2 * 4097];
	size_t n = 0;
	for (int f = 0; f < 2; f++) {
		if (!xff[f].set)
			continue;
		size_t start = 0;
		for (size_t i = 0; i <= xff[f].n; i++) {
			if (i < xff[f].n && xff[f].s[i] != ',')
				continue;
			list[n] = trimmed(xff[f].s + start, i - start);
			start = i + 1;
			if (list[n].n > 0)
				n++;
		}
	}
	for (size_t i = n; i-- > 0;)
		if (!ref_trusted(list[i].p, list[i].n)) {
			offer_span(r, list[i]);
			return;
		}
	offer_span(r, n > 0 ? list[0] : trimmed(peer->s, peer->n));
}

static void agree(const char *what, const struct ref *r, const struct sluice_identity *id)
{
	if (!r->has) {
		if (id->bytes != NULL) {
			fprintf(stderr, "fuzz_identity: %s: reference none, extract %zu bytes\n", what, id->len);
			abort();
		}
		return;
	}
	bool ok = id->bytes != NULL &&
		  (r->v.n > SLUICE_IDENTITY_MAX ? id->len == 32
						: id->len == r->v.n && memcmp(id->bytes, r->v.s, r->v.n) == 0);
	if (!ok) {
		fprintf(stderr, "fuzz_identity: %s: reference '%.*s' (%zu), extract %zu bytes\n", what, (int)r->v.n,
			r->v.s, r->v.n, id->bytes ? id->len : 0);
		abort();
	}
}

static struct sluice_policy *policy;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct text f[F_COUNT];
	if (policy == NULL && sluice_policy_parse(policy_text, strlen(policy_text), NULL, &policy, NULL) != SLUICE_OK)
		abort();
	for (int i = 0; i < F_COUNT; i++)
		f[i].set = false, f[i].n = 0;
	for (int i = 0; i < F_COUNT && size > 0; i++) {
		const uint8_t *nul = memchr(data, 0, size);
		size_t n = nul != NULL ? (size_t)(nul - data) : size;
		if (n > sizeof f[i].s)
			n = sizeof f[i].s;
		memcpy(f[i].s, data, n);
		f[i].n = n;
		f[i].set = true;
		if (nul == NULL)
			break;
		size -= (size_t)(nul - data) + 1;
		data = nul + 1;
	}
	struct sluice_header_view h[6];
	size_t nh = 0;
	static const char *const names[F_COUNT] = {"Authorization", "authorization", "Cookie", "COOKIE", NULL,
						   "X-Forwarded-For", "x-forwarded-for", NULL};
	for (int i = 0; i < F_COUNT; i++)
		if (names[i] != NULL && f[i].set)
			h[nh++] = (struct sluice_header_view){names[i], strlen(names[i]), f[i].s, f[i].n};
	struct sluice_request_view req = {
		.target = f[F_TARGET].set ? f[F_TARGET].s : NULL,
		.target_len = f[F_TARGET].n,
		.headers = h,
		.header_count = nh,
		.peer = f[F_PEER].set ? f[F_PEER].s : NULL,
		.peer_len = f[F_PEER].n,
	};
	static const unsigned char secret[SLUICE_IDENTITY_SECRET_MIN] = {42};
	struct sluice_identity_options o = {.size = sizeof o, .secret = secret, .secret_len = sizeof secret};
	static struct sluice_identity_set set;
	int rc = sluice_identity_extract(policy, &req, &o, &set);

	struct ref r[5];
	memset(r, 0, sizeof r);
	for (int i = F_AUTH1; i <= F_AUTH2; i++)
		if (f[i].set) {
			ref_auth(&f[i], "Bearer", &r[0]);
			ref_auth(&f[i], "basic", &r[1]);
		}
	for (int i = F_COOKIE1; i <= F_COOKIE2; i++)
		if (f[i].set)
			ref_cookie(&f[i], &r[2]);
	if (f[F_TARGET].set)
		ref_query(&f[F_TARGET], &r[3]);
	ref_xff(&f[F_XFF1], &f[F_PEER], &r[4]);

	bool ambiguous = false;
	for (int s = 0; s < 5; s++)
		ambiguous |= r[s].ambiguous;
	if ((rc == SLUICE_ESYNTAX) != ambiguous || (rc != SLUICE_OK && rc != SLUICE_ESYNTAX)) {
		fprintf(stderr, "fuzz_identity: extract %d, reference ambiguous %d\n", rc, ambiguous);
		abort();
	}
	if (rc != SLUICE_OK)
		return 0;
	static const char *const what[5] = {"token", "basic", "sid", "q", "ip"};
	for (int s = 0; s < 5; s++)
		agree(what[s], &r[s], &set.ids[s]);
	return 0;
}
