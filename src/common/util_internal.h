/*
 * util_internal.h - small helpers shared by sluice's translation units.
 * Not installed; not part of the API.
 */
#ifndef SLUICE_UTIL_INTERNAL_H
#define SLUICE_UTIL_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sluice/common.h>

#define SLUICE_LIKELY(x) __builtin_expect(!!(x), 1)
#define SLUICE_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* 128-bit arithmetic for exact intermediate products. gcc and clang provide
 * it on every 64-bit target sluice supports (x86-64, arm64). */
__extension__ typedef unsigned __int128 sluice__u128;

#define SLUICE_MIN(a, b) ((a) < (b) ? (a) : (b))
#define SLUICE_MAX(a, b) ((a) > (b) ? (a) : (b))

/* a + b, saturating at UINT64_MAX. */
static inline uint64_t sluice__add_sat(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* a * b, saturating at UINT64_MAX. */
static inline uint64_t sluice__mul_sat(uint64_t a, uint64_t b)
{
	sluice__u128 p = (sluice__u128)a * b;
	return p > UINT64_MAX ? UINT64_MAX : (uint64_t)p;
}

/* Write v in decimal at dst (at most 20 bytes, no terminator); returns the
 * number of bytes written. */
static inline size_t sluice__u64_to_dec(char *dst, uint64_t v)
{
	char tmp[20];
	size_t n = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	for (size_t i = 0; i < n; i++)
		dst[i] = tmp[n - 1 - i];
	return n;
}

/* Write a whole single-cell decision (limit_index 0, not degraded): every
 * field is set, so no caller ever sees stale bytes. */
static inline void sluice__decision_set(struct sluice_decision *out, bool allowed, uint8_t reason,
					uint64_t limit, uint64_t remaining, uint64_t reset_ns,
					uint64_t retry_after_ns)
{
	*out = (struct sluice_decision){
		.allowed = allowed,
		.reason = reason,
		.limit = limit,
		.remaining = remaining,
		.reset_ns = reset_ns,
		.retry_after_ns = retry_after_ns,
	};
}

#endif /* SLUICE_UTIL_INTERNAL_H */
