/*
 * identity.c - sluice_identity_extract(): a request's identities, read the
 * way its policy declares them (sluice/identity.h; docs/policy.md
 * "Identities").
 *
 * Why no request can re-spell its way out of a limit here:
 *   1. Every source is read from every place it can appear: all the
 *      Authorization, named and Cookie fields (HTTP/2 splits Cookie into
 *      several fields; a proxy may repeat a field), every pair of the
 *      query. Two different values for one identity are refused as
 *      ambiguous (SLUICE_ESYNTAX) rather than one of them picked, since
 *      the application behind may pick the other. Equal repeats are one.
 *   2. Names compare the way the application compares them: field names
 *      and authorization schemes ASCII case-insensitively; cookie names
 *      exactly (RFC 6265); query names after percent-decoding, so
 *      "api%5Fkey" is api_key. Values are trimmed of spaces and tabs
 *      (RFC 9110 OWS), cookie values of their double quotes, query values
 *      percent-decoded ('+' as a space); an invalid escape ("%zz") stays
 *      as written, as most decoders leave it.
 *   3. An empty value is no identity: the scope's rule decides (the
 *      default, "required", refuses), so omitting a value and sending an
 *      empty one get the same answer.
 *   4. X-Forwarded-For is believed only from a trusted proxy, and then
 *      only as far as the chain of trusted proxies goes: walking the
 *      entries from the right, the first one that is not a trusted proxy
 *      is the client (the entry the last trusted hop appended, which the
 *      client cannot forge); entries to its left are the client's to
 *      write and are never read.
 *   5. A value longer than SLUICE_IDENTITY_MAX is replaced by its keyed
 *      128-bit hash (the caller's secret), computed over the decoded value
 *      in chunks, so no buffer is needed for it and equal values always
 *      hash alike.
 *   6. A scope from a map is the map's value for its key scope's identity
 *      as extracted (after trimming, decoding, hashing), so the spellings
 *      above that give one identity give one derived identity too.
 * No allocation, no lock, no syscall (inet_pton parses text only).
 */
#include <arpa/inet.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <sluice/identity.h>

#include "policy/policy_internal.h"

_Static_assert(SLUICE_IDENTITY_SECRET_MIN == XXH3_SECRET_SIZE_MIN, "the hash's least secret");

static bool ieq(const char *a, const char *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
		if (x >= 'A' && x <= 'Z')
			x = (unsigned char)(x + 32);
		if (y >= 'A' && y <= 'Z')
			y = (unsigned char)(y + 32);
		if (x != y)
			return false;
	}
	return true;
}

static bool is_ows(char c)
{
	return c == ' ' || c == '\t';
}

static void trim(const char **p, size_t *n)
{
	while (*n > 0 && is_ows(**p))
		(*p)++, (*n)--;
	while (*n > 0 && is_ows((*p)[*n - 1]))
		(*n)--;
}

/* ---- what one scope found: at most one distinct value ---- */

struct found {
	const char *p; /* NULL: nothing yet */
	size_t n;
	bool decode;   /* p[0..n) is a raw query value, to be percent-decoded */
	bool ambiguous;
};

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decode one byte of a query value at s[*i], advancing *i. */
static unsigned char qbyte(const char *s, size_t n, size_t *i)
{
	char c = s[*i];
	if (c == '+') {
		(*i)++;
		return ' ';
	}
	if (c == '%' && *i + 2 < n) {
		int hi = hexval(s[*i + 1]), lo = hexval(s[*i + 2]);
		if (hi >= 0 && lo >= 0) {
			*i += 3;
			return (unsigned char)(hi << 4 | lo);
		}
	}
	(*i)++;
	return (unsigned char)c;
}

/* Do two found values mean the same identity? */
static bool same_value(const struct found *a, const char *p, size_t n, bool decode)
{
	if (!a->decode && !decode)
		return a->n == n && memcmp(a->p, p, n) == 0;
	size_t i = 0, j = 0;
	while (i < a->n && j < n) {
		unsigned char x = a->decode ? qbyte(a->p, a->n, &i) : (unsigned char)a->p[i++];
		unsigned char y = decode ? qbyte(p, n, &j) : (unsigned char)p[j++];
		if (x != y)
			return false;
	}
	return i == a->n && j == n;
}

static void offer(struct found *f, const char *p, size_t n, bool decode)
{
	trim(&p, &n);
	if (n == 0)
		return; /* empty: no identity */
	if (f->p == NULL) {
		f->p = p;
		f->n = n;
		f->decode = decode;
	} else if (!same_value(f, p, n, decode)) {
		f->ambiguous = true;
	}
}

/* ---- the sources ---- */

static void from_authorization(const struct sluice_policy_scope_rule *r, const struct sluice_request_view *req,
			       struct found *f)
{
	for (size_t h = 0; h < req->header_count; h++) {
		const struct sluice_header_view *hv = &req->headers[h];
		if (hv->name_len != 13 || !ieq(hv->name, "Authorization", 13))
			continue;
		const char *v = hv->value;
		size_t n = hv->value_len;
		trim(&v, &n);
		if (n <= r->name_len || !ieq(v, r->name, r->name_len) || !is_ows(v[r->name_len]))
			continue; /* another scheme */
		offer(f, v + r->name_len, n - r->name_len, false);
	}
}

static void from_header(const struct sluice_policy_scope_rule *r, const struct sluice_request_view *req,
			struct found *f)
{
	for (size_t h = 0; h < req->header_count; h++) {
		const struct sluice_header_view *hv = &req->headers[h];
		if (hv->name_len == r->name_len && ieq(hv->name, r->name, r->name_len))
			offer(f, hv->value, hv->value_len, false);
	}
}

/* Cookie: name=value pairs separated by ';' (RFC 6265 4.2.1; lenient about
 * spaces). A pair without '=' is skipped. */
static void from_cookie(const struct sluice_policy_scope_rule *r, const struct sluice_request_view *req,
			struct found *f)
{
	for (size_t h = 0; h < req->header_count; h++) {
		const struct sluice_header_view *hv = &req->headers[h];
		if (hv->name_len != 6 || !ieq(hv->name, "Cookie", 6))
			continue;
		const char *s = hv->value, *end = s + hv->value_len;
		while (s < end) {
			const char *semi = memchr(s, ';', (size_t)(end - s));
			const char *stop = semi != NULL ? semi : end;
			const char *eq = memchr(s, '=', (size_t)(stop - s));
			if (eq != NULL) {
				const char *name = s;
				size_t nlen = (size_t)(eq - s);
				trim(&name, &nlen);
				const char *v = eq + 1;
				size_t vlen = (size_t)(stop - v);
				trim(&v, &vlen);
				if (vlen >= 2 && v[0] == '"' && v[vlen - 1] == '"')
					v++, vlen -= 2;
				if (nlen == r->name_len && memcmp(name, r->name, nlen) == 0)
					offer(f, v, vlen, false);
			}
			s = stop + 1;
		}
	}
}

/* Does the raw (encoded) name s[0..n) decode to want[0..wn)? */
static bool qname_is(const char *s, size_t n, const char *want, size_t wn)
{
	size_t i = 0, k = 0;
	while (i < n) {
		if (k == wn || qbyte(s, n, &i) != (unsigned char)want[k])
			return false;
		k++;
	}
	return k == wn;
}

static void from_query(const struct sluice_policy_scope_rule *r, const struct sluice_request_view *req,
		       struct found *f)
{
	const char *q = req->target != NULL ? memchr(req->target, '?', req->target_len) : NULL;
	if (q == NULL)
		return;
	const char *end = req->target + req->target_len;
	const char *hash = memchr(q, '#', (size_t)(end - q));
	if (hash != NULL)
		end = hash;
	const char *s = q + 1;
	while (s < end) {
		const char *amp = memchr(s, '&', (size_t)(end - s));
		const char *stop = amp != NULL ? amp : end;
		const char *eq = memchr(s, '=', (size_t)(stop - s));
		if (eq != NULL && qname_is(s, (size_t)(eq - s), r->name, r->name_len))
			offer(f, eq + 1, (size_t)(stop - eq - 1), true);
		s = stop + 1;
	}
}

/* ---- addresses ---- */

/* Parse text as an address: family 4 or 6 (an IPv4-mapped IPv6 address
 * is family 4), 0 for anything else. */
static int parse_addr(const char *s, size_t n, uint8_t addr[16])
{
	char text[INET6_ADDRSTRLEN + 1];
	if (n == 0 || n >= sizeof text)
		return 0;
	memcpy(text, s, n);
	text[n] = '\0';
	if (inet_pton(AF_INET, text, addr) == 1)
		return 4;
	if (inet_pton(AF_INET6, text, addr) != 1)
		return 0;
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	if (memcmp(addr, mapped, 12) == 0) {
		memmove(addr, addr + 12, 4);
		return 4;
	}
	return 6;
}

static bool in_block(const struct sluice_policy_cidr *c, int family, const uint8_t *addr)
{
	if (c->family != family)
		return false;
	uint32_t full = c->prefix / 8, rest = c->prefix % 8;
	if (memcmp(c->addr, addr, full) != 0)
		return false;
	if (rest == 0)
		return true;
	uint8_t mask = (uint8_t)(0xff00u >> rest);
	return (c->addr[full] & mask) == (addr[full] & mask);
}

bool sluice_identity_cidr_match(const struct sluice_policy_cidr *blocks, size_t n, const char *addr, size_t len)
{
	uint8_t a[16];
	int family = addr != NULL ? parse_addr(addr, len, a) : 0;
	if (family == 0 || (blocks == NULL && n > 0))
		return false;
	for (size_t i = 0; i < n; i++)
		if (in_block(&blocks[i], family, a))
			return true;
	return false;
}

int sluice_identity_cidr_parse(const char *s, size_t len, struct sluice_policy_cidr *out, size_t *where)
{
	size_t n = 0, at = 0;
	int rc = SLUICE_OK;

	if (s == NULL || out == NULL)
		return SLUICE_EINVAL;
	memset(out, 0, sizeof *out);
	while (n < len && s[n] != '/')
		n++;
	int family = parse_addr(s, n, out->addr);
	/* An IPv4-mapped block is written as IPv6 and stays one. */
	if (family == 4 && memchr(s, ':', n) != NULL) {
		family = 0;
	}
	if (family == 0) {
		char text[INET6_ADDRSTRLEN + 1];
		if (n > 0 && n < sizeof text) {
			memcpy(text, s, n);
			text[n] = '\0';
			if (inet_pton(AF_INET6, text, out->addr) == 1)
				family = 6;
		}
	}
	if (family == 0) {
		rc = SLUICE_ESYNTAX;
		goto out;
	}
	out->family = (uint8_t)family;
	unsigned bits = family == 4 ? 32 : 128, prefix = bits;
	if (n < len) {
		at = n + 1;
		if (at == len || len - at > 3) {
			rc = SLUICE_ESYNTAX;
			goto out;
		}
		prefix = 0;
		for (size_t i = at; i < len; i++) {
			if (s[i] < '0' || s[i] > '9') {
				at = i;
				rc = SLUICE_ESYNTAX;
				goto out;
			}
			prefix = prefix * 10 + (unsigned)(s[i] - '0');
		}
		if (prefix > bits) {
			rc = SLUICE_ERANGE;
			goto out;
		}
	}
	out->prefix = (uint8_t)prefix;
	at = 0;
	for (unsigned i = prefix; i < bits; i++)
		if (out->addr[i / 8] & (0x80u >> (i % 8)))
			rc = SLUICE_EINVAL;
out:
	if (where != NULL)
		*where = at;
	return rc;
}

struct trust {
	const struct sluice_policy_cidr *policy;
	size_t npolicy;
	const struct sluice_policy_cidr *extra;
	size_t nextra;
};

/* Is s[0..n) a trusted proxy's address? (parsed once for both lists) */
static bool trusted(const struct trust *t, const char *s, size_t n)
{
	uint8_t a[16];
	int family = parse_addr(s, n, a);
	if (family == 0)
		return false;
	for (size_t i = 0; i < t->npolicy; i++)
		if (in_block(&t->policy[i], family, a))
			return true;
	for (size_t i = 0; i < t->nextra; i++)
		if (in_block(&t->extra[i], family, a))
			return true;
	return false;
}

/* The entry of the X-Forwarded-For list that names the client (see 4. in
 * the file comment). The fields are one list, in order. */
static void from_forwarded_for(const struct trust *t, const struct sluice_request_view *req, struct found *f)
{
	if (req->peer == NULL || !trusted(t, req->peer, req->peer_len)) {
		offer(f, req->peer, req->peer_len, false);
		return;
	}
	const char *last = NULL; /* the leftmost entry seen so far (walking right to left) */
	size_t last_n = 0;
	for (size_t h = req->header_count; h-- > 0;) {
		const struct sluice_header_view *hv = &req->headers[h];
		if (hv->name_len != 15 || !ieq(hv->name, "X-Forwarded-For", 15))
			continue;
		const char *begin = hv->value, *end = hv->value + hv->value_len;
		while (end > begin) {
			const char *comma = end;
			while (comma > begin && comma[-1] != ',')
				comma--;
			const char *e = comma;
			size_t n = (size_t)(end - comma);
			trim(&e, &n);
			end = comma > begin ? comma - 1 : begin;
			if (n == 0)
				continue;
			if (!trusted(t, e, n)) {
				offer(f, e, n, false);
				return;
			}
			last = e;
			last_n = n;
		}
	}
	if (last != NULL)
		offer(f, last, last_n, false); /* every hop trusted: the first one */
	else
		offer(f, req->peer, req->peer_len, false);
}

/* ---- the result ---- */

/* Copy (or decode, or hash) a found value into the set. */
static void settle(const struct found *f, const void *secret, size_t secret_len, unsigned char *buf,
		   struct sluice_identity *id)
{
	if (f->p == NULL) {
		id->bytes = NULL;
		id->len = 0;
		return;
	}
	size_t len = f->n;
	if (f->decode) {
		len = 0;
		for (size_t i = 0; i < f->n; len++)
			(void)qbyte(f->p, f->n, &i);
	}
	if (len > SLUICE_IDENTITY_MAX) {
		XXH3_state_t st;
		unsigned char chunk[256];
		(void)XXH3_128bits_reset_withSecret(&st, secret, secret_len);
		if (!f->decode) {
			(void)XXH3_128bits_update(&st, f->p, f->n);
		} else {
			size_t k = 0;
			for (size_t i = 0; i < f->n;) {
				chunk[k++] = qbyte(f->p, f->n, &i);
				if (k == sizeof chunk || i == f->n) {
					(void)XXH3_128bits_update(&st, chunk, k);
					k = 0;
				}
			}
		}
		XXH128_hash_t x = XXH3_128bits_digest(&st);
		static const char hex[] = "0123456789abcdef";
		for (int i = 0; i < 16; i++) {
			uint64_t w = i < 8 ? x.high64 : x.low64;
			unsigned byte = (unsigned)(w >> (8 * (7 - i % 8))) & 0xff;
			buf[2 * i] = (unsigned char)hex[byte >> 4];
			buf[2 * i + 1] = (unsigned char)hex[byte & 15];
		}
		id->bytes = buf;
		id->len = 32;
		return;
	}
	if (!f->decode) {
		id->bytes = f->p;
		id->len = len;
		return;
	}
	size_t k = 0;
	for (size_t i = 0; i < f->n;)
		buf[k++] = qbyte(f->p, f->n, &i);
	id->bytes = buf;
	id->len = k;
}

int sluice_identity_extract(const struct sluice_policy *policy, const struct sluice_request_view *req,
			    const struct sluice_identity_options *options, struct sluice_identity_set *out)
{
	if (policy == NULL || req == NULL || out == NULL || options == NULL ||
	    options->size != sizeof *options || options->secret == NULL ||
	    options->secret_len < SLUICE_IDENTITY_SECRET_MIN || (options->proxies == NULL && options->proxy_count > 0) ||
	    (req->headers == NULL && req->header_count > 0) || (req->target == NULL && req->target_len > 0) ||
	    (req->peer == NULL && req->peer_len > 0))
		return SLUICE_EINVAL;
	const struct sluice_policy_spec *spec = &policy->spec;
	const struct trust t = {spec->proxies, spec->proxy_count, options->proxies, options->proxy_count};
	struct found found[SLUICE_POLICY_MAX_SCOPES];

	for (uint32_t s = 0; s < spec->scope_count; s++) {
		const struct sluice_policy_scope_rule *r = &spec->scope_rules[s];
		struct found *f = &found[s];
		memset(f, 0, sizeof *f);
		uint8_t source = r->source;
		if (source == SLUICE_POLICY_SOURCE_PEER && !r->source_declared && options->forwarded_for_ip)
			source = SLUICE_POLICY_SOURCE_FORWARDED_FOR;
		switch (source) {
		case SLUICE_POLICY_SOURCE_AUTHORIZATION:
			from_authorization(r, req, f);
			break;
		case SLUICE_POLICY_SOURCE_HEADER:
			from_header(r, req, f);
			break;
		case SLUICE_POLICY_SOURCE_COOKIE:
			from_cookie(r, req, f);
			break;
		case SLUICE_POLICY_SOURCE_QUERY:
			from_query(r, req, f);
			break;
		case SLUICE_POLICY_SOURCE_PEER:
			if (req->peer != NULL)
				offer(f, req->peer, req->peer_len, false);
			break;
		case SLUICE_POLICY_SOURCE_FORWARDED_FOR:
			from_forwarded_for(&t, req, f);
			break;
		default:
			break;
		}
		if (f->ambiguous)
			return SLUICE_ESYNTAX;
	}
	/* In declaration order: a map's key scope is declared before it. */
	for (uint32_t s = 0; s < spec->scope_count; s++) {
		const struct sluice_policy_scope_rule *r = &spec->scope_rules[s];
		if (r->source != SLUICE_POLICY_SOURCE_MAP) {
			settle(&found[s], options->secret, options->secret_len, out->buf[s], &out->ids[s]);
			continue;
		}
		const struct sluice_identity *k = &out->ids[r->map_key];
		const struct sluice__map_entry *e =
			k->bytes != NULL ? sluice__map_lookup(&policy->maps[r->map], k->bytes, k->len) : NULL;
		out->ids[s].bytes = e != NULL ? e->value : NULL;
		out->ids[s].len = e != NULL ? e->value_len : 0;
	}
	out->tier = SLUICE_POLICY_NO_TIER;
	if (spec->tier_map != UINT32_MAX) {
		const struct sluice_identity *k = &out->ids[spec->maps[spec->tier_map].key_scope];
		const struct sluice__map_entry *e =
			k->bytes != NULL ? sluice__map_lookup(&policy->maps[spec->tier_map], k->bytes, k->len) : NULL;
		if (e != NULL)
			out->tier = (int32_t)e->aux;
	}
	return SLUICE_OK;
}
