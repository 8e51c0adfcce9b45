/*
 * bench_shm.c - the keyed limiter on a shared-memory zone (sluice/shm.h),
 * one process, beside the in-process limiter in the same run.
 *
 *   BM_shm_admit/K/0        admit on K pre-inserted 16-byte keys, uniform,
 *                           the policy of BM_limiter_admit (its baseline:
 *                           run both, --benchmark_filter='BM_(limiter|shm)_admit/')
 *                           in a zone made for K keys (full: at capacity)
 *   BM_shm_insert           admits of never-seen keys (insertions; the zone
 *                           is formatted again between runs)
 *   BM_shm_bytes_per_key    zone bytes per key of capacity, 16-byte keys,
 *                           one GCRA limit (counter bytes_per_key)
 *   BM_shm_admit_icount/K   a fixed loop of 2^20 admits on K keys, for
 *                           instruction counts beside
 *                           BM_limiter_admit_icount: valgrind
 *                           --tool=callgrind --toggle-collect=shm_icount_loop
 *                           (the zone's secret is random: the probe
 *                           positions, not the path, vary between runs)
 *
 * Keys and streams are generated outside the timed loops, as in
 * bench_limiter.c (the same key format and request-stream generator).
 */
#include <sluice.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shim.h"

#define KEY_LEN 16
#define STREAM_LEN (1u << 22)
#define STREAM_MASK (STREAM_LEN - 1)
#define MAX_KEYS (1u << 20)
#define SEC 1000000000ull

static unsigned char *keys;

static void make_keys(void)
{
	if (keys != NULL)
		return;
	keys = malloc((size_t)MAX_KEYS * KEY_LEN + 1);
	for (uint32_t i = 0; i < MAX_KEYS; i++)
		snprintf((char *)keys + (size_t)i * KEY_LEN, KEY_LEN + 1, "k%015u", i);
}

static inline const unsigned char *key_at(uint32_t i)
{
	return keys + (size_t)i * KEY_LEN;
}

static uint64_t xorshift(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

/* bench_limiter.c's uniform stream for nkeys (same seed, same indices). */
static uint32_t *make_stream(uint32_t nkeys)
{
	uint32_t *s = malloc(sizeof *s * STREAM_LEN);
	uint64_t x = 0x2545f4914f6cdd1dull + (uint64_t)nkeys;
	for (uint32_t i = 0; i < STREAM_LEN; i++)
		s[i] = (uint32_t)(xorshift(&x) % nkeys);
	return s;
}

static struct sluice_limit policy(void)
{
	struct sluice_limit l;
	memset(&l, 0, sizeof l);
	l.kind = SLUICE_LIMIT_GCRA;
	sluice_rate_init(&l.rate, 1000000, SEC, 1000);
	return l;
}

/* A zone made for nkeys keys, mapped, initialized, and its limiter. */
struct zone {
	void *base;
	size_t bytes;
	struct sluice_limiter *lim;
};

static int zone_open(struct zone *z, uint64_t nkeys)
{
	struct sluice_limit l = policy();
	struct sluice_shm_info info = { .size = sizeof info };
	if (sluice_shm_limiter_zone_size(&l, 1, nkeys, &z->bytes) != SLUICE_OK ||
	    sluice_shm_map_anonymous(z->bytes, &z->base) != SLUICE_OK ||
	    sluice_shm_limiter_zone_init(z->base, z->bytes, &l, 1, 0, &info) != SLUICE_OK ||
	    sluice_shm_limiter_create(&z->lim, z->base, z->bytes, &l, 1, NULL) != SLUICE_OK)
		return -1;
	return 0;
}

static void zone_close(struct zone *z)
{
	sluice_limiter_destroy(z->lim);
	sluice_shm_unmap(z->base, z->bytes);
}

static void BM_shm_admit(sbench_state *st)
{
	uint32_t nkeys = (uint32_t)sbench_range(st, 0);
	struct zone z;
	struct sluice_decision d;

	make_keys();
	uint32_t *s = make_stream(nkeys);
	if (zone_open(&z, nkeys) != 0) {
		sbench_error(st, "zone");
		free(s);
		return;
	}
	for (uint32_t i = 0; i < nkeys; i++)
		sluice_limiter_admit(z.lim, key_at(i), KEY_LEN, 1, SEC, &d);
	uint64_t pos = 0, now = 2 * SEC;
	for (uint64_t n; (n = sbench_batch(st)) != 0;)
		for (uint64_t i = 0; i < n; i++, pos++) {
			uint32_t k = s[pos & STREAM_MASK];
			sluice_limiter_admit(z.lim, key_at(k), KEY_LEN, 1, now + pos * 10, &d);
			sbench_keep(d.allowed);
		}
	sbench_items(st, (int64_t)sbench_iterations(st));
	struct sluice_limiter_stats ls = { .size = sizeof ls };
	sluice_limiter_stats(z.lim, &ls);
	sbench_counter(st, "degraded", (double)ls.degraded, 0);
	zone_close(&z);
	free(s);
}
SBENCH_REGISTER(BM_shm_admit)
{
	sbench_args2(b, 1000, 0);
	sbench_args2(b, MAX_KEYS, 0);
	sbench_threads(b, 1); /* one process; named as BM_limiter_admit's */
	sbench_real_time(b);
	sbench_baseline(b, "BM_limiter_admit");
}

static void BM_shm_insert(sbench_state *st)
{
	struct zone z;
	struct sluice_decision d;
	uint32_t next = 0;

	make_keys();
	if (zone_open(&z, MAX_KEYS) != 0) {
		sbench_error(st, "zone");
		return;
	}
	struct sluice_limit l = policy();
	for (uint64_t n; (n = sbench_batch(st)) != 0;)
		for (uint64_t i = 0; i < n; i++) {
			if (next == MAX_KEYS / 2) { /* half full: start over */
				sbench_pause(st);
				sluice_shm_limiter_zone_init(z.base, z.bytes, &l, 1, SLUICE_SHM_INIT_RESET, NULL);
				next = 0;
				sbench_resume(st);
			}
			sluice_limiter_admit(z.lim, key_at(next), KEY_LEN, 1, SEC, &d);
			next++;
			sbench_keep(d.allowed);
		}
	sbench_items(st, (int64_t)sbench_iterations(st));
	zone_close(&z);
}
SBENCH_REGISTER(BM_shm_insert)
{
	sbench_real_time(b);
}

static void BM_shm_bytes_per_key(sbench_state *st)
{
	struct sluice_limit l = policy();
	size_t bytes = 0;

	for (uint64_t n; (n = sbench_batch(st)) != 0;)
		for (uint64_t i = 0; i < n; i++) {
			sluice_shm_limiter_zone_size(&l, 1, MAX_KEYS, &bytes);
			sbench_keep(bytes);
		}
	sbench_counter(st, "bytes_per_key", (double)bytes / MAX_KEYS, 0);
}
SBENCH_REGISTER(BM_shm_bytes_per_key)
{
	sbench_fixed_iterations(b, 1);
}

#define ICOUNT_ITERS (1u << 20)

/* The measured loop, out of line for callgrind (--toggle-collect). */
__attribute__((noinline)) static uint64_t shm_icount_loop(struct sluice_limiter *lim, const uint32_t *s,
							  uint64_t n)
{
	struct sluice_decision d;
	uint64_t allowed = 0;

	for (uint64_t pos = 0; pos < n; pos++) {
		sluice_limiter_admit(lim, key_at(s[pos & STREAM_MASK]), KEY_LEN, 1, 2 * SEC + pos * 10, &d);
		allowed += d.allowed;
	}
	return allowed;
}

static void BM_shm_admit_icount(sbench_state *st)
{
	uint32_t nkeys = (uint32_t)sbench_range(st, 0);
	struct zone z;
	struct sluice_decision d;

	make_keys();
	uint32_t *s = make_stream(nkeys);
	if (zone_open(&z, nkeys) != 0) {
		sbench_error(st, "zone");
		free(s);
		return;
	}
	for (uint32_t i = 0; i < nkeys; i++)
		sluice_limiter_admit(z.lim, key_at(i), KEY_LEN, 1, SEC, &d);
	for (uint64_t n; (n = sbench_batch(st)) != 0;)
		for (uint64_t i = 0; i < n; i++)
			sbench_keep(shm_icount_loop(z.lim, s, ICOUNT_ITERS));
	sbench_items(st, (int64_t)(sbench_iterations(st) * ICOUNT_ITERS));
	zone_close(&z);
	free(s);
}
SBENCH_REGISTER(BM_shm_admit_icount)
{
	sbench_arg(b, 1000);
	sbench_fixed_iterations(b, 1);
}
