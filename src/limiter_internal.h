/*
 * limiter_internal.h - hooks into the keyed limiter for tests and fuzzing.
 * Not installed; not part of the API.
 */
#ifndef SLUICE_LIMITER_INTERNAL_H
#define SLUICE_LIMITER_INTERNAL_H

#include <sluice/limiter.h>

/* The keyed hash the table uses for `key`. */
uint64_t sluice__limiter_hash(const struct sluice_limiter *lim, const void *key, size_t key_len);

/* The number of buckets the table was created with. */
unsigned long sluice__limiter_initial_buckets(const struct sluice_limiter *lim);

#endif /* SLUICE_LIMITER_INTERNAL_H */
