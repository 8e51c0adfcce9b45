/*
 * key_internal.h - the keyed limiter's key comparison, inline. Not installed;
 * not part of the API.
 *
 * A lookup compares a key only where a slot word's 15-bit hash tag matches
 * (store_internal.h), so on the hot path the compare runs about once per
 * admission and almost always on equal keys. memcmp() there
 * was a call through the PLT plus glibc's length dispatch (11% of a 1k-hot-key
 * profile); keys of 8 to 32 bytes (IPv4/IPv6 text, UUIDs, most API tokens)
 * are compared here with two or four overlapping 8-byte loads, shorter ones
 * with 4-byte or single-byte loads, all inside [0, len) of both keys (no
 * over-read: sanitizers and page ends stay happy). Longer keys use memcmp().
 */
#ifndef SLUICE_KEY_INTERNAL_H
#define SLUICE_KEY_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Longest key compared inline; longer ones go to memcmp(). */
#define SLUICE__KEY_INLINE_MAX 32

static inline uint64_t sluice__key_load64(const unsigned char *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof v);
	return v;
}

static inline uint32_t sluice__key_load32(const unsigned char *p)
{
	uint32_t v;
	memcpy(&v, p, sizeof v);
	return v;
}

/* a[0 .. len) == b[0 .. len) for len <= 16; either may be unaligned. For
 * 8 <= len the words at 0 and len - 8 cover every byte; for 4 <= len < 8,
 * the words at 0 and len - 4; for 1 <= len < 4, bytes 0, len / 2 and
 * len - 1. The admit fast path's (its keys are at most 16 bytes). */
static inline bool sluice__key_equal16(const unsigned char *a, const unsigned char *b, size_t len)
{
	if (len >= 8)
		return ((sluice__key_load64(a) ^ sluice__key_load64(b)) |
			(sluice__key_load64(a + len - 8) ^ sluice__key_load64(b + len - 8))) == 0;
	if (len >= 4)
		return ((sluice__key_load32(a) ^ sluice__key_load32(b)) |
			(sluice__key_load32(a + len - 4) ^ sluice__key_load32(b + len - 4))) == 0;
	if (len == 0)
		return true;
	return a[0] == b[0] && a[len / 2] == b[len / 2] && a[len - 1] == b[len - 1];
}

/* a[0 .. len) == b[0 .. len); either may be unaligned. For 16 < len <= 32
 * the words at 0, 8, len - 16 and len - 8 cover every byte; shorter keys as
 * sluice__key_equal16(); longer ones by memcmp(). */
static inline bool sluice__key_equal(const unsigned char *a, const unsigned char *b, size_t len)
{
	if (len > 16) {
		if (len > SLUICE__KEY_INLINE_MAX)
			return memcmp(a, b, len) == 0;
		return ((sluice__key_load64(a) ^ sluice__key_load64(b)) |
			(sluice__key_load64(a + len - 8) ^ sluice__key_load64(b + len - 8)) |
			(sluice__key_load64(a + 8) ^ sluice__key_load64(b + 8)) |
			(sluice__key_load64(a + len - 16) ^ sluice__key_load64(b + len - 16))) == 0;
	}
	return sluice__key_equal16(a, b, len);
}

#endif /* SLUICE_KEY_INTERNAL_H */
