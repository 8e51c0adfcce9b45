/*
 * util_internal.h - small helpers shared by sluice's translation units.
 * Not installed; not part of the API.
 */
#ifndef SLUICE_UTIL_INTERNAL_H
#define SLUICE_UTIL_INTERNAL_H

#include <stdint.h>

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

#endif /* SLUICE_UTIL_INTERNAL_H */
