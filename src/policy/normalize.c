/*
 * normalize.c - the normal form of a request path, on which routes match.
 *
 * Definition (sluice/policy.h and docs/policy.md, "Path normalization"): cut
 * at the first '?' or '#'; refuse malformed escapes and control bytes;
 * decode the escapes of unreserved characters and upper-case the hex digits
 * of the others (RFC 3986 6.2.2.1 and 6.2.2.2); treat runs of '/' as one;
 * remove "." and ".." segments (RFC 3986 5.2.4) with ".." at the root
 * staying there; optionally lower ASCII letters. Decoding comes before the
 * dot segments, as RFC 3986 6.2.2 orders the steps, so "%2e%2e" is "..".
 * Merging slashes comes before the dot segments as in nginx
 * (merge_slashes), so "/a//../b" is "/b", and an empty segment never counts
 * as one that ".." removes. "%2F" is not a separator: only a literal '/'
 * splits segments.
 *
 * Algorithm. The result is "/" followed by the kept segments joined by
 * '/', plus a final '/' when the input's last segment was empty, "." or
 * ".." and some segment was kept. Which segments are kept is decided right
 * to left with one counter: walking the segments from the last, a ".."
 * adds one to the number of segments still to drop, a "." is skipped, an
 * empty segment (from "//") is skipped, and any other segment is dropped if
 * the counter is positive (decrementing it) and kept otherwise. This is the
 * same set RFC 5.2.4's left-to-right stack keeps: a segment survives iff,
 * to its right, the ".." segments never outnumber the kept-or-dropped
 * ordinary segments that follow it, which is exactly what the counter
 * measures; a ".." with nothing left of it to drop pops at the root, so the
 * counter simply stays positive at the start and is ignored.
 *
 * Walking right to left needs O(1) memory, so the function never needs a
 * buffer of its own: pass 1 validates left to right, pass 2 measures the
 * result right to left (so SLUICE_ETRUNC can say the size needed), pass 3
 * writes it right to left into the caller's buffer, each kept segment
 * decoded into place. The result is never longer than the input path:
 * decoding shrinks, upper-casing keeps the length, and at most one '/' is
 * written per segment, each of which was preceded by at least one '/'.
 *
 * fuzz/fuzz_normalize.c checks it against a left-to-right reference (split
 * on '/', decode, a stack of segments).
 */
#include <string.h>

#include "policy/policy_internal.h"
#include "common/util_internal.h"

static inline int hex_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20; /* A-F -> a-f */
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static inline bool unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
	       c == '.' || c == '_' || c == '~';
}

static inline unsigned char fold(unsigned char c, unsigned flags)
{
	return (flags & SLUICE_PATH_FOLD_CASE) && c >= 'A' && c <= 'Z' ? (unsigned char)(c | 0x20) : c;
}

/* End of the path part: the first '?' or '#', else len. */
static size_t path_end(const char *in, size_t len)
{
	size_t i = 0;
	while (i < len && in[i] != '?' && in[i] != '#')
		i++;
	return i;
}

/* Pass 1: every escape well formed, no control byte. */
static int validate(const unsigned char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (s[i] < 0x20 || s[i] == 0x7F)
			return SLUICE_ESYNTAX;
		if (s[i] == '%') {
			if (n - i < 3 || hex_value(s[i + 1]) < 0 || hex_value(s[i + 2]) < 0)
				return SLUICE_ESYNTAX;
			i += 2;
		}
	}
	return SLUICE_OK;
}

/* Write the normal form of a validated segment s[0..n) to dst (when not
 * NULL); return its length. */
static size_t segment_write(const unsigned char *s, size_t n, unsigned flags, char *dst)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t w = 0;

	if (!(flags & SLUICE_PATH_FOLD_CASE) && memchr(s, '%', n) == NULL) { /* the common segment */
		if (dst != NULL)
			memcpy(dst, s, n);
		return n;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = s[i];
		if (c != '%') {
			if (dst != NULL)
				dst[w] = (char)fold(c, flags);
			w++;
			continue;
		}
		unsigned char v = (unsigned char)(hex_value(s[i + 1]) << 4 | hex_value(s[i + 2]));
		i += 2;
		if (unreserved(v)) {
			if (dst != NULL)
				dst[w] = (char)fold(v, flags);
			w++;
		} else {
			if (dst != NULL) {
				dst[w] = '%';
				dst[w + 1] = hex[v >> 4];
				dst[w + 2] = hex[v & 15];
			}
			w += 3;
		}
	}
	return w;
}

/* 1 for ".", 2 for "..", else 0 (escapes of '.' count as '.'). */
static int dot_segment(const unsigned char *s, size_t n)
{
	int dots = 0;

	for (size_t i = 0; i < n; i++) {
		if (s[i] == '.') {
			dots++;
		} else if (s[i] == '%' && s[i + 1] == '2' && (s[i + 2] == 'e' || s[i + 2] == 'E')) {
			dots++;
			i += 2;
		} else {
			return 0;
		}
		if (dots > 2)
			return 0;
	}
	return dots;
}

/*
 * Passes 2 and 3: walk the segments of s[0..n) right to left, keep them by
 * the counter rule above, and either measure (dst NULL) or write the result
 * ending at dst + total (total >= the result's length). Returns the length.
 */
static size_t emit(const unsigned char *s, size_t n, unsigned flags, char *dst, size_t total)
{
	size_t end = n, pos = total, drop = 0, kept = 0;
	bool trailing = false, last = true;

	while (end > 0) {
		size_t start = end;
		while (start > 0 && s[start - 1] != '/')
			start--;
		/* segment s[start..end); s[start - 1] == '/' (the path starts with '/') */
		size_t len = end - start;
		int dots = len == 0 ? 0 : dot_segment(s + start, len);
		if (last && (len == 0 || dots > 0))
			trailing = true;
		last = false;
		if (len == 0 || dots == 1) {
			/* skipped */
		} else if (dots == 2) {
			drop++;
		} else if (drop > 0) {
			drop--;
		} else {
			size_t w = segment_write(s + start, len, flags, NULL);
			if (kept == 0 && trailing) {
				if (dst != NULL)
					dst[pos - 1] = '/';
				pos--;
			}
			pos -= w;
			if (dst != NULL)
				segment_write(s + start, len, flags, dst + pos);
			pos--;
			if (dst != NULL)
				dst[pos] = '/';
			kept++;
		}
		end = start - 1; /* past the '/' */
		if (start == 0)
			break;
	}
	if (kept == 0) {
		if (dst != NULL)
			dst[total - 1] = '/';
		return 1;
	}
	return total - pos;
}

int sluice_path_normalize(const char *in, size_t len, unsigned flags, char *out, size_t cap, size_t *out_len)
{
	if (out_len != NULL)
		*out_len = 0;
	if (in == NULL || (out == NULL && cap > 0) || len == 0 || in[0] != '/' ||
	    (flags & ~SLUICE_PATH_FOLD_CASE) != 0)
		return SLUICE_EINVAL;
	const unsigned char *s = (const unsigned char *)in;
	size_t n = path_end(in, len);
	int rc = validate(s, n);
	if (rc != SLUICE_OK)
		return rc;
	/* measure: pos counts down from an arbitrary origin (n, the bound) */
	size_t need = emit(s, n, flags, NULL, n);
	if (out_len != NULL)
		*out_len = need;
	if (cap <= need)
		return SLUICE_ETRUNC;
	emit(s, n, flags, out, need);
	out[need] = '\0';
	return SLUICE_OK;
}

int sluice__path_normalize_bounded(const char *path, size_t n, unsigned flags, char *buf, const char **out,
				   size_t *out_len)
{
	const unsigned char *s = (const unsigned char *)path;
	int rc = validate(s, n);
	if (rc != SLUICE_OK)
		return rc;
	/* the result is at most n bytes: write it to end at buf + n, no measuring pass */
	size_t len = emit(s, n, flags, buf, n);
	*out = buf + n - len;
	*out_len = len;
	return SLUICE_OK;
}

/* What the in-place scan stops at: 1 for '?', '#', '%', '.' and control
 * bytes (always), 2 for upper-case letters (when folding). */
static const uint8_t scan_class[256] = {
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
	0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
	2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

size_t sluice__path_scan(const char *path, size_t len, unsigned flags, bool *normal)
{
	/* Sufficient condition for "already normal, as far as matching goes":
	 * no '%', no control byte, no segment starting with '.', and no upper
	 * case letter when folding. Runs of '/' are harmless: the matcher skips
	 * empty segments, which is what merging them would give. One table
	 * lookup a byte; the same pass finds the end of the path part. */
	const unsigned char *s = (const unsigned char *)path;
	unsigned mask = (flags & SLUICE_PATH_FOLD_CASE) ? 3u : 1u;

	*normal = true;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = s[i];
		if ((scan_class[c] & mask) == 0)
			continue;
		if (c == '?' || c == '#')
			return i;
		if (c == '.' && s[i - 1] != '/') /* path[0] is '/': s[i - 1] exists */
			continue;
		*normal = false;
		return i + path_end(path + i, len - i);
	}
	return len;
}
