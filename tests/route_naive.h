/*
 * route_naive.h - a reference route matcher, written independently
 * of the trie in policy.c: every rule is kept as a list of segments, the
 * rules are sorted once by specificity, and a request is compared with each
 * rule in turn, segment by segment (a strcmp-like compare), until one fits.
 *
 * Used by the tests and the fuzz target (differential check against
 * sluice_policy_match) and by bench/bench_policy.c as the baseline. Not part
 * of the library: header-only, built into those programs.
 */
#ifndef SLUICE_TEST_ROUTE_NAIVE_H
#define SLUICE_TEST_ROUTE_NAIVE_H

#include <string.h>

#include <sluice/policy.h>

enum { NAIVE_LITERAL = 0, NAIVE_PARAM = 1, NAIVE_WILD = 2 };

struct naive_route {
	const char *method; /* "*" = any */
	size_t method_len;
	uint32_t class_id;
	uint32_t nseg;
	const char *seg[SLUICE_POLICY_MAX_SEGMENTS];
	uint32_t seg_len[SLUICE_POLICY_MAX_SEGMENTS];
	uint8_t kind[SLUICE_POLICY_MAX_SEGMENTS];
};

struct naive_table {
	uint32_t n;
	bool fold_case; /* spec->route_fold_case */
	struct naive_route r[SLUICE_POLICY_MAX_ROUTES];
};

/* Specificity: segment kinds compared left to right (a pattern that has
 * ended sorts first; two patterns that fit one path never differ there),
 * then an exact method before "*". */
static inline int naive_cmp(const struct naive_route *a, const struct naive_route *b)
{
	for (uint32_t i = 0;; i++) {
		int ka = i < a->nseg ? a->kind[i] : -1;
		int kb = i < b->nseg ? b->kind[i] : -1;
		if (ka != kb)
			return ka < kb ? -1 : 1;
		if (ka == -1)
			break;
	}
	int ma = a->method[0] == '*', mb = b->method[0] == '*';
	return ma - mb;
}

static inline void naive_build(const struct sluice_policy_spec *spec, struct naive_table *t)
{
	t->n = 0;
	t->fold_case = spec->route_fold_case;
	for (uint32_t i = 0; i < spec->route_count; i++) {
		struct naive_route r;
		const char *p = spec->routes[i].pattern;
		memset(&r, 0, sizeof(r));
		r.method = spec->routes[i].method;
		r.method_len = strlen(r.method);
		r.class_id = spec->routes[i].class_id;
		while (*p == '/' && p[1] != '\0') {
			const char *s = ++p;
			while (*p != '\0' && *p != '/')
				p++;
			r.seg[r.nseg] = s;
			r.seg_len[r.nseg] = (uint32_t)(p - s);
			r.kind[r.nseg] = *s == ':' ? NAIVE_PARAM : (*s == '*' && p - s == 1) ? NAIVE_WILD : NAIVE_LITERAL;
			r.nseg++;
		}
		/* stable insertion by specificity */
		uint32_t k = t->n++;
		while (k > 0 && naive_cmp(&t->r[k - 1], &r) > 0) {
			t->r[k] = t->r[k - 1];
			k--;
		}
		t->r[k] = r;
	}
}

static inline int naive_upper(int c)
{
	return c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c;
}

/* Next non-empty segment of [*pos, end): its start and length; 0 if none. */
static inline int naive_next(const char **pos, const char *end, const char **seg, size_t *len)
{
	const char *p = *pos;
	while (p < end && *p == '/')
		p++;
	if (p == end)
		return 0;
	const char *s = p;
	while (p < end && *p != '/')
		p++;
	*seg = s;
	*len = (size_t)(p - s);
	*pos = p;
	return 1;
}

static inline int naive_fits(const struct naive_route *r, const char *method, size_t mlen, const char *path,
			     const char *end)
{
	if (r->method[0] != '*') {
		if (r->method_len != mlen)
			return 0;
		for (size_t i = 0; i < mlen; i++)
			if (naive_upper((unsigned char)method[i]) != r->method[i])
				return 0;
	}
	const char *pos = path, *seg;
	size_t len;
	for (uint32_t i = 0; i < r->nseg; i++) {
		if (!naive_next(&pos, end, &seg, &len))
			return 0;
		if (r->kind[i] == NAIVE_WILD)
			return 1;
		if (r->kind[i] == NAIVE_LITERAL && (len != r->seg_len[i] || strncmp(seg, r->seg[i], len) != 0))
			return 0;
	}
	return !naive_next(&pos, end, &seg, &len);
}

/* Same contract as sluice_policy_match() for valid input. The path is
 * normalized with the library's sluice_path_normalize() (always, where the
 * trie skips it for paths already normal); the normalizer has its own
 * reference in fuzz/fuzz_normalize.c. */
static inline int naive_match(const struct naive_table *t, const char *method, size_t mlen, const char *path,
			      size_t plen)
{
	static _Thread_local char norm[SLUICE_POLICY_MAX_PATH + 1];
	size_t nlen = 0;

	if (method == NULL || path == NULL || mlen == 0 || plen == 0 || path[0] != '/')
		return SLUICE_EINVAL;
	const char *end = path;
	while (end < path + plen && *end != '?' && *end != '#')
		end++;
	if ((size_t)(end - path) > SLUICE_POLICY_MAX_PATH)
		return SLUICE_ETOOBIG;
	int rc = sluice_path_normalize(path, (size_t)(end - path), t->fold_case ? SLUICE_PATH_FOLD_CASE : 0, norm,
				       sizeof(norm), &nlen);
	if (rc != SLUICE_OK)
		return rc;
	for (uint32_t i = 0; i < t->n; i++)
		if (naive_fits(&t->r[i], method, mlen, norm, norm + nlen))
			return (int)t->r[i].class_id;
	return (int)SLUICE_POLICY_DEFAULT_CLASS;
}

#endif /* SLUICE_TEST_ROUTE_NAIVE_H */
