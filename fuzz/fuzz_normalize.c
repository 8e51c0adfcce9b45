/*
 * fuzz_normalize.c - sluice_path_normalize() against a reference written
 * the obvious way: cut the query, check the escapes, split on '/', decode
 * each segment, keep a stack of segments (push an ordinary one, pop on
 * "..", nothing on "." or ""), join.
 *
 * Input: byte 0 selects the flags (bit 0: SLUICE_PATH_FOLD_CASE), the rest
 * is the path. Properties checked on every input:
 *   1. same return code and same bytes as the reference;
 *   2. the result is no longer than the path part and is a fixed point;
 *   3. too small a buffer gives SLUICE_ETRUNC with the exact size needed;
 *   4. sluice__path_normalize_bounded() (the matcher's one-pass variant)
 *      writes the same bytes;
 *   5. sluice__path_scan() finds the end of the path part, and a path it
 *      calls normal (the route matcher then takes it in place) normalizes
 *      to itself with its runs of '/' merged, so matching it in place sees
 *      the same segments.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sluice/policy.h>

#include "fuzz.h"
#include "policy/policy_internal.h"

#define CHECK(cond)                                                                             \
	do {                                                                                    \
		if (!(cond)) {                                                                  \
			fprintf(stderr, "fuzz_normalize: %s:%d: %s\n", __FILE__, __LINE__, #cond); \
			abort();                                                                \
		}                                                                               \
	} while (0)

#define MAX_IN 8192

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static bool is_unreserved(int c)
{
	return strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~", c) != NULL && c != 0;
}

/* Returns the code; out receives the text (NUL-terminated). */
static int reference(const char *in, size_t len, bool fold, char *out, size_t *out_len)
{
	static char seg[MAX_IN * 3];
	static size_t starts[MAX_IN], lens[MAX_IN];
	static char text[MAX_IN * 3];
	size_t nstack = 0, used = 0, n = 0;

	if (len == 0 || in[0] != '/')
		return SLUICE_EINVAL;
	while (n < len && in[n] != '?' && in[n] != '#')
		n++;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)in[i];
		if (c < 32 || c == 127)
			return SLUICE_ESYNTAX;
		if (c == '%' && (i + 2 >= n || hexval(in[i + 1]) < 0 || hexval(in[i + 2]) < 0))
			return SLUICE_ESYNTAX;
	}
	bool trailing = false;
	size_t i = 1;
	for (;;) {
		/* one raw segment in[i..j) */
		size_t j = i;
		while (j < n && in[j] != '/')
			j++;
		size_t sl = 0;
		for (size_t k = i; k < j; k++) {
			if (in[k] == '%') {
				int v = hexval(in[k + 1]) * 16 + hexval(in[k + 2]);
				if (is_unreserved(v)) {
					seg[sl++] = (char)v;
				} else {
					sl += (size_t)sprintf(seg + sl, "%%%02X", v);
				}
				k += 2;
			} else {
				seg[sl++] = in[k];
			}
		}
		if (fold)
			for (size_t k = 0; k < sl; k++)
				if (seg[k] >= 'A' && seg[k] <= 'Z' && !(k >= 1 && seg[k - 1] == '%') &&
				    !(k >= 2 && seg[k - 2] == '%'))
					seg[k] = (char)(seg[k] + 32);
		bool dot = sl == 1 && seg[0] == '.';
		bool dotdot = sl == 2 && seg[0] == '.' && seg[1] == '.';
		bool last = j >= n;
		if (last)
			trailing = sl == 0 || dot || dotdot;
		if (dotdot) {
			if (nstack > 0) {
				nstack--;
				used = starts[nstack];
			}
		} else if (sl > 0 && !dot) {
			starts[nstack] = used;
			lens[nstack] = sl;
			memcpy(text + used, seg, sl);
			used += sl;
			nstack++;
		}
		if (last)
			break;
		i = j + 1;
	}
	size_t o = 0;
	out[o++] = '/';
	for (size_t k = 0; k < nstack; k++) {
		memcpy(out + o, text + starts[k], lens[k]);
		o += lens[k];
		if (k + 1 < nstack)
			out[o++] = '/';
	}
	if (trailing && nstack > 0)
		out[o++] = '/';
	out[o] = '\0';
	*out_len = o;
	return SLUICE_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char want[MAX_IN * 3 + 2], got[MAX_IN + 2], again[MAX_IN + 2];

	if (size < 1 || size > MAX_IN)
		return 0;
	unsigned flags = data[0] & 1 ? SLUICE_PATH_FOLD_CASE : 0;
	const char *in = (const char *)data + 1;
	size_t len = size - 1, want_len = 0, got_len = 0;

	int want_rc = reference(in, len, flags != 0, want, &want_len);
	int rc = sluice_path_normalize(len ? in : "", len, flags, got, sizeof(got), &got_len);
	if (rc != want_rc) {
		fprintf(stderr, "fuzz_normalize: '%.*s': code %d, reference %d\n", (int)len, in, rc, want_rc);
		abort();
	}
	if (rc != SLUICE_OK)
		return 0;
	if (got_len != want_len || memcmp(got, want, got_len + 1) != 0) {
		fprintf(stderr, "fuzz_normalize: '%.*s' -> '%s', reference '%s'\n", (int)len, in, got, want);
		abort();
	}
	size_t n = 0;
	while (n < len && in[n] != '?' && in[n] != '#')
		n++;
	CHECK(got_len <= n);
	size_t again_len = 0;
	CHECK(sluice_path_normalize(got, got_len, flags, again, sizeof(again), &again_len) == SLUICE_OK);
	CHECK(again_len == got_len && memcmp(again, got, got_len) == 0);
	size_t need = 0;
	CHECK(sluice_path_normalize(in, len, flags, again, got_len, &need) == SLUICE_ETRUNC);
	CHECK(need == got_len);
	CHECK(sluice_path_normalize(in, len, flags, again, got_len + 1, &need) == SLUICE_OK);
	/* the matcher's one-pass variant writes the same bytes */
	const char *norm = NULL;
	size_t norm_len = 0;
	CHECK(sluice__path_normalize_bounded(in, n, flags, again, &norm, &norm_len) == SLUICE_OK);
	CHECK(norm_len == got_len && memcmp(norm, got, got_len) == 0);
	bool normal = false;
	CHECK(sluice__path_scan(in, len, flags, &normal) == n);
	if (normal) {
		/* the input with runs of '/' merged */
		size_t m = 0;
		for (size_t k = 0; k < n; k++)
			if (!(in[k] == '/' && m > 0 && again[m - 1] == '/'))
				again[m++] = in[k];
		CHECK(m == got_len && memcmp(again, got, m) == 0);
	}
	return 0;
}
