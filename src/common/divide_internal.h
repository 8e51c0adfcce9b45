/*
 * divide_internal.h - division of any 64-bit value by a divisor fixed at
 * configuration time, by multiplication (Granlund and Montgomery, "Division
 * by invariant integers using multiplication", 1994, fig. 4.1): with
 * l = ceil(log2 d) and m = floor(2^64 * (2^l - d) / d) + 1,
 *
 *     t = mulhi(m, n);  q = (t + ((n - t) >> min(l, 1))) >> max(l - 1, 0)
 *
 * equals floor(n / d) for every 1 <= d < 2^64 and 0 <= n < 2^64. The
 * window cells divide the time by the window length on every call; a
 * hardware 64-bit divide costs 20-90 cycles, this a multiply and a few
 * shifts. Not installed; not part of the API.
 */
#ifndef SLUICE_DIVIDE_INTERNAL_H
#define SLUICE_DIVIDE_INTERNAL_H

#include <stdint.h>

#include "common/util_internal.h"

static inline void sluice__divider_init(uint64_t d, uint64_t *magic, uint8_t *shift1, uint8_t *shift2)
{
	uint32_t l = 0;

	while (l < 64 && (UINT64_C(1) << l) < d)
		l++;
	sluice__u128 pow = (sluice__u128)1 << l; /* 2^l, up to 2^64 */
	*magic = (uint64_t)((((sluice__u128)1 << 64) * (pow - d)) / d) + 1;
	*shift1 = l > 0;
	*shift2 = (uint8_t)(l > 0 ? l - 1 : 0);
}

static inline uint64_t sluice__divide(uint64_t n, uint64_t magic, uint8_t shift1, uint8_t shift2)
{
	uint64_t t = (uint64_t)(((sluice__u128)magic * n) >> 64);
	return (t + ((n - t) >> shift1)) >> shift2;
}

#endif /* SLUICE_DIVIDE_INTERNAL_H */
