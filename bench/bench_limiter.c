/*
 * bench_limiter.c - the keyed limiter (include/sluice/limiter.h).
 *
 *   BM_limiter_admit/K/D        admit on K pre-inserted keys, distribution D
 *                               (0 uniform, 1 Zipf 0.99, 2 each thread on its
 *                               own disjoint keys), 1..N threads
 *   BM_limiter_mutex_admit/K/D  baseline: the same policy in a chained hash
 *                               table behind one pthread mutex
 *   BM_limiter_admit_batch/K/D  admit_batch() in batches of 32 (baseline:
 *                               BM_limiter_admit, one at a time)
 *   BM_limiter_insert           admits of never-seen keys (insertions)
 *   BM_limiter_sweep            sweeping 1M idle entries (per entry)
 *   BM_limiter_bytes_per_key    RSS growth per key at 1M 16-byte keys
 *   BM_limiter_hash_xxh3/L      keyed XXH3 (the limiter's hash) on L bytes
 *   BM_limiter_hash_siphash13/L SipHash-1-3 on L bytes (the alternative)
 *   BM_limiter_admit_kind/K     one-limit policies of kind K (GCRA, counter,
 *                               calendar) on 1000 keys; _icount/K: callgrind
 *   BM_limiter_contended/Q/G    threads on one key, a refusing GCRA and a
 *                               quota Q (calendar, or GCRA): units lost
 *   BM_limiter_admit_icount/K   a fixed loop of 2^20 admits on K keys with a
 *                               fixed hash secret, for instruction counts:
 *                               valgrind --tool=callgrind
 *                               --toggle-collect=limiter_icount_loop
 *                               (docs/benchmarks.md, "Keyed limiter")
 *   BM_limiter_mutex_icount/K   the same loop on the mutex table
 *                               (--toggle-collect=mutex_icount_loop)
 *
 * Threads: 1..SLUICE_BENCH_MAX_THREADS (default 2). Keys and request
 * streams are generated outside the timed loops and cached across runs.
 */
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <sluice.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* gcc 12 -O3 warns about XXH3's long-input path (unreachable here: lengths
 * are at most 40) once it is inlined into a loop over a 64-byte buffer. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Warray-bounds"
#endif
#define XXH_INLINE_ALL
#include <xxhash.h>

#include <urcu.h> /* rcu_barrier() */

#include "shim.h"

#define KEY_LEN 16
#define STREAM_BITS 22
#define STREAM_LEN (1u << STREAM_BITS)
#define STREAM_MASK (STREAM_LEN - 1)
#define MAX_KEYS (1u << 20)
#define SEC 1000000000ull
#define WARM_LEN (1u << 20) /* untimed admits per table before any timing */

static int max_threads(void)
{
	return sbench_max_threads(2);
}

/* ---- keys and request streams (shared, built once) ---- */

static unsigned char *keys; /* MAX_KEYS keys of KEY_LEN bytes */

static inline uint64_t xorshift(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static inline void key_fill(uint32_t i, unsigned char *out)
{
	uint64_t a = (uint64_t)i * 0x9E3779B97F4A7C15ull ^ 0x6b65792d6b65792dull, b = i;
	memcpy(out, &a, 8);
	memcpy(out + 8, &b, 8);
}

static void make_keys(void)
{
	if (keys != NULL)
		return;
	/* +1: each snprintf writes 16 characters and a NUL that the next key
	 * overwrites. */
	keys = malloc((size_t)MAX_KEYS * KEY_LEN + 1);
	for (uint32_t i = 0; i < MAX_KEYS; i++)
		key_fill(i, keys + (size_t)i * KEY_LEN);
}

static inline const unsigned char *key_at(uint32_t i)
{
	return keys + (size_t)i * KEY_LEN;
}

/* Stream of key indices: [nkeys-log2][dist]. dist 2 (partitioned) reuses the
 * uniform stream and maps it into the thread's own slice. */
static uint32_t *streams[21][2];

static uint32_t *make_stream(uint32_t nkeys, int dist)
{
	int lg = 0;
	while ((1u << lg) < nkeys)
		lg++;
	if (streams[lg][dist] != NULL)
		return streams[lg][dist];
	uint32_t *s = malloc(sizeof *s * STREAM_LEN);
	uint64_t x = 0x2545f4914f6cdd1dull + (uint64_t)nkeys;
	if (dist == 0) {
		for (uint32_t i = 0; i < STREAM_LEN; i++)
			s[i] = (uint32_t)(xorshift(&x) % nkeys);
	} else {
		/* Zipf, theta 0.99 (Gray et al., "Quickly generating billion-record
		 * synthetic databases", as in YCSB), ranks scrambled over keys. */
		const double theta = 0.99;
		double zetan = 0, zeta2 = 1 + pow(0.5, theta);
		for (uint32_t i = 1; i <= nkeys; i++)
			zetan += 1.0 / pow((double)i, theta);
		double alpha = 1 / (1 - theta);
		double eta = (1 - pow(2.0 / nkeys, 1 - theta)) / (1 - zeta2 / zetan);
		for (uint32_t i = 0; i < STREAM_LEN; i++) {
			double u = (double)(xorshift(&x) >> 11) / (double)(1ull << 53);
			double uz = u * zetan;
			uint64_t rank = uz < 1 ? 0
				      : uz < zeta2 ? 1
						   : (uint64_t)(nkeys * pow(eta * u - eta + 1, alpha));
			if (rank >= nkeys)
				rank = nkeys - 1;
			s[i] = (uint32_t)((rank * 0x9e3779b1u) % nkeys);
		}
	}
	streams[lg][dist] = s;
	return s;
}

static struct sluice_limit policy(void)
{
	struct sluice_limit l;
	memset(&l, 0, sizeof l);
	l.kind = SLUICE_LIMIT_GCRA;
	/* 1M per second, burst 1000: mostly admitted, so the CAS path runs. */
	sluice_rate_init(&l.rate, 1000000, SEC, 1000);
	return l;
}

/* ---- the limiter, pre-filled, cached per key count ---- */

static struct sluice_limiter *filled[21];

static struct sluice_limiter *filled_limiter(uint32_t nkeys)
{
	int lg = 0;
	while ((1u << lg) < nkeys)
		lg++;
	if (filled[lg] != NULL)
		return filled[lg];
	struct sluice_limit l = policy();
	struct sluice_limiter *lim;
	struct sluice_decision d;
	/* Presized, with a key budget as a server sets one: the fill does
	 * not time resizes (docs/limiter.md, "Table size"). */
	struct sluice_limiter_options o = { .size = sizeof o, .max_keys = 1ull << lg,
					    .initial_buckets = 1ull << lg };
	if (sluice_limiter_create(&lim, &l, 1, &o) != SLUICE_OK)
		abort();
	for (uint32_t i = 0; i < nkeys; i++)
		sluice_limiter_admit(lim, key_at(i), KEY_LEN, 1, SEC, &d);
	/* Warm: one untimed pass over the uniform stream, so that the first
	 * timed run does not pay the page faults and TLB fills of the table's
	 * first touch (its index and entries) that later runs do not. */
	const uint32_t *s = make_stream(nkeys, 0);
	for (uint32_t i = 0; i < WARM_LEN; i++)
		sluice_limiter_admit(lim, key_at(s[i]), KEY_LEN, 1, SEC, &d);
	/* The maintenance a server runs: the sweep moves the new keys into
	 * their inline slots (docs/limiter.md, "Inline slots"). */
	sluice_limiter_sweep(lim, SEC, SIZE_MAX, NULL);
	filled[lg] = lim;
	return lim;
}

static inline uint32_t pick(const uint32_t *s, uint64_t pos, int dist, uint32_t nkeys, int tid,
			    int nthreads)
{
	uint32_t k = s[pos & STREAM_MASK];
	if (dist == 2) {
		uint32_t slice = nkeys / (uint32_t)nthreads;
		k = (uint32_t)tid * slice + k % slice;
	}
	return k;
}

static void BM_limiter_admit(sbench_state *st)
{
	uint32_t nkeys = (uint32_t)sbench_range(st, 0);
	int dist = (int)sbench_range(st, 1);
	int tid = sbench_thread_index(st), nt = sbench_thread_count(st);
	static struct sluice_limiter *lim;
	static const uint32_t *s;

	if (tid == 0) {
		make_keys();
		s = make_stream(nkeys, dist == 1);
		lim = filled_limiter(nkeys);
	}
	uint64_t pos = (uint64_t)tid << 20, now = 2 * SEC;
	struct sluice_decision d;
	for (uint64_t n; (n = sbench_batch(st)) != 0;)
		for (uint64_t i = 0; i < n; i++, pos++) {
			uint32_t k = pick(s, pos, dist, nkeys, tid, nt);
			unsigned char kb[KEY_LEN];
			key_fill(k, kb);
			sluice_limiter_admit(lim, kb, KEY_LEN, 1, now + pos * 10, &d);
			sbench_keep(d.allowed);
		}
	sbench_items(st, (int64_t)sbench_iterations(st));
}
SBENCH_REGISTER(BM_limiter_admit)
{
	sbench_args2(b, 1000, 0);
	sbench_args2(b, 1000, 2);
	sbench_args2(b, MAX_KEYS, 0);
	sbench_args2(b, MAX_KEYS, 1);
	sbench_args2(b, MAX_KEYS, 2);
	sbench_thread_range(b, 1, max_threads());
	sbench_real_time(b);
	sbench_baseline(b, "BM_limiter_mutex_admit");
}

/* ---- baseline: one mutex over a chained hash table ---- */

struct mnode {
	struct mnode *next;
	uint64_t hash;
	struct sluice_gcra cell;
	unsigned char key[KEY_LEN];
};

struct mtable {
	pthread_mutex_t mu;
	struct mnode **bucket;
	uint64_t mask;
	struct sluice_limit limit;
	unsigned char secret[XXH3_SECRET_DEFAULT_SIZE];
};

static struct mtable *mtables[21];

static bool mtable_admit(struct mtable *t, const unsigned char *key, uint64_t cost, uint64_t now,
			 struct sluice_decision *d)
{
	uint64_t h = XXH3_64bits_withSecret(key, KEY_LEN, t->secret, sizeof t->secret);
	pthread_mutex_lock(&t->mu);
	struct mnode **slot = &t->bucket[h & t->mask], *n = *slot;
	while (n != NULL && (n->hash != h || memcmp(n->key, key, KEY_LEN) != 0))
		n = n->next;
	if (n == NULL) {
		n = malloc(sizeof *n);
		n->hash = h;
		memcpy(n->key, key, KEY_LEN);
		sluice_gcra_init(&n->cell);
		n->next = *slot;
		*slot = n;
	}
	bool ok = sluice_gcra_admit(&n->cell, &t->limit.rate, now, cost, d);
	pthread_mutex_unlock(&t->mu);
	return ok;
}

static struct mtable *filled_mtable(uint32_t nkeys)
{
	int lg = 0;
	while ((1u << lg) < nkeys)
		lg++;
	if (mtables[lg] != NULL)
		return mtables[lg];
	struct mtable *t = calloc(1, sizeof *t);
	pthread_mutex_init(&t->mu, NULL);
	t->mask = (1ull << lg) - 1;
	t->bucket = calloc(t->mask + 1, sizeof *t->bucket);
	t->limit = policy();
	XXH3_generateSecret(t->secret, sizeof t->secret, "baseline", 8);
	struct sluice_decision d;
	for (uint32_t i = 0; i < nkeys; i++)
		mtable_admit(t, key_at(i), 1, SEC, &d);
	const uint32_t *s = make_stream(nkeys, 0); /* warm, as filled_limiter() */
	for (uint32_t i = 0; i < WARM_LEN; i++)
		mtable_admit(t, key_at(s[i]), 1, SEC, &d);
	mtables[lg] = t;
	return t;
}

static void BM_limiter_mutex_admit(sbench_state *st)
{
	uint32_t nkeys = (uint32_t)sbench_range(st, 0);
	int dist = (int)sbench_range(st, 1);
	int tid = sbench_thread_index(st), nt = sbench_thread_count(st);
	static struct mtable *t;
	static const uint32_t *s;

	if (tid == 0) {
		make_keys();
		s = make_stream(nkeys, dist == 1);
		t = filled_mtable(nkeys);
	}
	uint64_t pos = (uint64_t)tid << 20, now = 2 * SEC;
	struct sluice_decision d;
	for (uint64_t n; (n = sbench_batch(st)) != 0;)
		for (uint64_t i = 0; i < n; i++, pos++) {
			uint32_t k = pick(s, pos, dist, nkeys, tid, nt);
			unsigned char kb[KEY_LEN];
			key_fill(k, kb);
			mtable_admit(t, kb, 1, now + pos * 10, &d);
			sbench_keep(d.allowed);
		}
	sbench_items(st, (int64_t)sbench_iterations(st));
}
SBENCH_REGISTER(BM_limiter_mutex_admit)
{
	sbench_args2(b, 1000, 0);
	sbench_args2(b, 1000, 2);
	sbench_args2(b, MAX_KEYS, 0);
	sbench_args2(b, MAX_KEYS, 1);
	sbench_args2(b, MAX_KEYS, 2);
	sbench_thread_range(b, 1, max_threads());
	sbench_real_time(b);
}

/* ---- deterministic instruction counts ---- */

#define ICOUNT_ITERS (1u << 20)

/* The measured loop, kept out of line so that callgrind can count exactly
 * it (--toggle-collect=limiter_icount_loop): everything is fixed (keys,
 * stream, secret, times), so the count repeats to the instruction. */
__attribute__((noinline)) static uint64_t limiter_icount_loop(struct sluice_limiter *lim,
								const uint32_t *s, uint64_t n)
{
	struct sluice_decision d;
	uint64_t allowed = 0;

	for (uint64_t pos = 0; pos < n; pos++) {
		sluice_limiter_admit(lim, key_at(s[pos & STREAM_MASK]), KEY_LEN, 1,
				     2 * SEC + pos * 10, &d);
		allowed += d.allowed;
	}
	return allowed;
}

static void BM_limiter_admit_icount(sbench_state *st)
{
	uint32_t nkeys = (uint32_t)sbench_range(st, 0);
	struct sluice_limit l = policy();
	struct sluice_limiter *lim;
	struct sluice_decision d;
	int lg = 0;

	while ((1u << lg) < nkeys)
		lg++;
	make_keys();
	const uint32_t *s = make_stream(nkeys, 0);
	struct sluice_limiter_options o = { .size = sizeof o,
					    .hash_secret = "icount",
					    .hash_secret_len = 6,
					    .max_keys = 1ull << lg,
					    .initial_buckets = 1ull << lg };
	if (sluice_limiter_create(&lim, &l, 1, &o) != SLUICE_OK)
		abort();
	for (uint32_t i = 0; i < nkeys; i++)
		sluice_limiter_admit(lim, key_at(i), KEY_LEN, 1, SEC, &d);
	sluice_limiter_sweep(lim, SEC, SIZE_MAX, NULL); /* as filled_limiter() */
	uint64_t allowed = 0;
	for (uint64_t n; (n = sbench_batch(st)) != 0;)
		allowed += limiter_icount_loop(lim, s, n);
	sbench_items(st, (int64_t)sbench_iterations(st));
	sbench_counter(st, "allowed", (double)allowed, 0);
	sluice_limiter_destroy(lim);
}
SBENCH_REGISTER(BM_limiter_admit_icount)
{
	sbench_arg(b, 1000);
	sbench_arg(b, MAX_KEYS);
	sbench_fixed_iterations(b, ICOUNT_ITERS);
}

/* The baseline's instructions: the same fixed loop on the mutex chained
 * table (--toggle-collect=mutex_icount_loop). */
__attribute__((noinline)) static uint64_t mutex_icount_loop(struct mtable *t, const uint32_t *s,
							    uint64_t n)
{
	struct sluice_decision d;
	uint64_t allowed = 0;

	for (uint64_t pos = 0; pos < n; pos++) {
		mtable_admit(t, key_at(s[pos & STREAM_MASK]), 1, 2 * SEC + pos * 10, &d);
		allowed += d.allowed;
	}
	return allowed;
}

static void BM_limiter_mutex_icount(sbench_state *st)
{
	uint32_t nkeys = (uint32_t)sbench_range(st, 0);

	make_keys();
	const uint32_t *s = make_stream(nkeys, 0);
	struct mtable *t = filled_mtable(nkeys);
	uint64_t allowed = 0;
	for (uint64_t n; (n = sbench_batch(st)) != 0;)
		allowed += mutex_icount_loop(t, s, n);
	sbench_items(st, (int64_t)sbench_iterations(st));
	sbench_counter(st, "allowed", (double)allowed, 0);
}
SBENCH_REGISTER(BM_limiter_mutex_icount)
{
	sbench_arg(b, 1000);
	sbench_arg(b, MAX_KEYS);
	sbench_fixed_iterations(b, ICOUNT_ITERS);
}

/* ---- the memory floor of a 1M-key admit ----
 *
 * One dependent load at a random cache line of a buffer as large as the
 * table of 1M keys (entries and index, ~64 MB, and the keys): a pointer chase through a
 * random cyclic permutation (Sattolo's shuffle), so that every load misses
 * the caches and the TLB as an admit's loads do and none can start before
 * the previous one ends. A lookup makes two such dependent loads per admit
 * (the index group, then the entry): an admit at 1M uniform keys costs
 * about twice this figure, in the same run (docs/benchmarks.md, "Keyed
 * limiter"). */

#define FLOOR_BYTES (80u << 20)
#define FLOOR_LINE 64u

static uint64_t *floor_buf;

static void make_floor(void)
{
	if (floor_buf != NULL)
		return;
	size_t lines = FLOOR_BYTES / FLOOR_LINE, stride = FLOOR_LINE / sizeof(uint64_t);
	uint32_t *perm = malloc(lines * sizeof *perm);
	floor_buf = malloc(FLOOR_BYTES);
	if (perm == NULL || floor_buf == NULL)
		abort();
	uint64_t x = 0x2545f4914f6cdd1dull;
	for (size_t i = 0; i < lines; i++)
		perm[i] = (uint32_t)i;
	for (size_t i = lines - 1; i > 0; i--) { /* Sattolo: one cycle through all */
		size_t j = (size_t)(xorshift(&x) % i);
		uint32_t t = perm[i];
		perm[i] = perm[j];
		perm[j] = t;
	}
	for (size_t i = 0; i < lines; i++)
		floor_buf[i * stride] = (uint64_t)perm[i] * stride;
	free(perm);
}

static void BM_limiter_memory_floor(sbench_state *st)
{
	make_floor();
	uint64_t at = 0;
	for (uint64_t n; (n = sbench_batch(st)) != 0;)
		for (uint64_t i = 0; i < n; i++)
			at = floor_buf[at];
	sbench_keep(at);
	sbench_items(st, (int64_t)sbench_iterations(st));
}
SBENCH_REGISTER(BM_limiter_memory_floor)
{
	sbench_threads(b, 1);
	sbench_real_time(b);
}

/* ---- batch ---- */

#define BATCH 32

static void BM_limiter_admit_batch(sbench_state *st)
{
	uint32_t nkeys = (uint32_t)sbench_range(st, 0);
	int dist = (int)sbench_range(st, 1);
	int tid = sbench_thread_index(st), nt = sbench_thread_count(st);
	static struct sluice_limiter *lim;
	static const uint32_t *s;
	struct sluice_limiter_request req[BATCH];
	struct sluice_decision d[BATCH];

	if (tid == 0) {
		make_keys();
		s = make_stream(nkeys, dist == 1);
		lim = filled_limiter(nkeys);
	}
	uint64_t pos = (uint64_t)tid << 20, now = 2 * SEC;
	for (uint64_t n; (n = sbench_batch(st)) != 0;)
		for (uint64_t i = 0; i < n; i += BATCH) {
			size_t m = n - i < BATCH ? (size_t)(n - i) : BATCH;
			for (size_t j = 0; j < m; j++, pos++) {
				req[j].key = key_at(pick(s, pos, dist, nkeys, tid, nt));
				req[j].key_len = KEY_LEN;
				req[j].cost = 1;
			}
			sluice_limiter_admit_batch(lim, req, m, now + pos * 10, d);
			sbench_keep(d[0].allowed);
		}
	sbench_items(st, (int64_t)sbench_iterations(st));
}
SBENCH_REGISTER(BM_limiter_admit_batch)
{
	sbench_args2(b, 1000, 0);
	sbench_args2(b, MAX_KEYS, 0);
	sbench_args2(b, MAX_KEYS, 1);
	sbench_threads(b, 1);
	sbench_real_time(b);
	sbench_baseline(b, "BM_limiter_admit");
}

/* ---- insertion of new keys ---- */

static void BM_limiter_insert(sbench_state *st)
{
	int tid = sbench_thread_index(st);
	static struct sluice_limiter *lim;
	static uint64_t run;

	if (tid == 0) {
		struct sluice_limit l = policy();
		struct sluice_limiter_options o = { .size = sizeof o, .initial_buckets = MAX_KEYS };
		if (sluice_limiter_create(&lim, &l, 1, &o) != SLUICE_OK)
			abort();
		run++;
	}
	unsigned char key[KEY_LEN];
	struct sluice_decision d;
	uint64_t i = 0;
	for (uint64_t n; (n = sbench_batch(st)) != 0;)
		for (uint64_t j = 0; j < n; j++, i++) {
			uint64_t a = run, b2 = ((uint64_t)tid << 40) | i;
			memcpy(key, &a, 8);
			memcpy(key + 8, &b2, 8);
			sluice_limiter_admit(lim, key, KEY_LEN, 1, SEC, &d);
			sbench_keep(d.allowed);
		}
	sbench_items(st, (int64_t)sbench_iterations(st));
	if (tid == 0) {
		/* The end of the loop is a barrier: all threads are done. */
		sluice_limiter_destroy(lim);
		lim = NULL;
	}
}
SBENCH_REGISTER(BM_limiter_insert)
{
	sbench_fixed_iterations(b, 1 << 19);
	sbench_thread_range(b, 1, max_threads());
	sbench_real_time(b);
}

/* ---- sweep ---- */

static void BM_limiter_sweep(sbench_state *st)
{
	struct sluice_limit l = policy();
	struct sluice_limiter *lim;
	struct sluice_decision d;
	size_t total = 0;

	struct sluice_limiter_options o = { .size = sizeof o, .initial_buckets = MAX_KEYS };
	make_keys();
	if (sluice_limiter_create(&lim, &l, 1, &o) != SLUICE_OK)
		abort();
	for (uint32_t i = 0; i < MAX_KEYS; i++)
		sluice_limiter_admit(lim, key_at(i), KEY_LEN, 1, SEC, &d);
	for (uint64_t n; (n = sbench_batch(st)) != 0;) {
		size_t got;
		sluice_limiter_sweep(lim, 2 * SEC, (size_t)n, &got);
		total += got;
	}
	sbench_items(st, (int64_t)sbench_iterations(st));
	if (total != sbench_iterations(st))
		sbench_error(st, "sweep did not reclaim every entry it visited");
	sluice_limiter_destroy(lim);
}
SBENCH_REGISTER(BM_limiter_sweep)
{
	sbench_fixed_iterations(b, MAX_KEYS);
}

/* ---- memory ---- */

static double rss_bytes(void)
{
	long pages = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (f == NULL)
		return 0;
	if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
		resident = 0;
	fclose(f);
	return (double)resident * (double)sysconf(_SC_PAGESIZE);
}

static void BM_limiter_bytes_per_key(sbench_state *st)
{
	struct sluice_limit l = policy();
	struct sluice_limiter *lim;
	struct sluice_decision d;
	double before = 0, inserted = 0, after = 0;

	make_keys();
	for (uint64_t n; (n = sbench_batch(st)) != 0;) {
		for (uint64_t it = 0; it < n; it++) {
			malloc_trim(0);
			before = rss_bytes();
			struct sluice_limiter_options o = { .size = sizeof o,
							    .initial_buckets = MAX_KEYS };
			if (sluice_limiter_create(&lim, &l, 1, &o) != SLUICE_OK)
				abort();
			for (uint32_t i = 0; i < MAX_KEYS; i++)
				sluice_limiter_admit(lim, key_at(i), KEY_LEN, 1, SEC, &d);
			inserted = rss_bytes();
			/* The steady state: the maintenance sweep moves the keys
			 * into their inline slots and frees what they were
			 * allocated apart, after a grace period. */
			sluice_limiter_sweep(lim, SEC, SIZE_MAX, NULL);
			rcu_barrier();
			malloc_trim(0);
			after = rss_bytes();
			sluice_limiter_destroy(lim);
		}
	}
	double per_key = (after - before) / MAX_KEYS;
	sbench_counter(st, "B_per_key", per_key, 0);
	sbench_counter(st, "B_beyond_key", per_key - KEY_LEN, 0);
	/* Right after the insertions, before the sweep: an insertion moves its
	 * key inline and frees the entry apart after a grace period. */
	sbench_counter(st, "B_per_new_key", (inserted - before) / MAX_KEYS, 0);
	void *probe = malloc(24 + 8 + 8 + KEY_LEN); /* one short key's entry apart (retire head, header, cell, key) */
	sbench_counter(st, "entry_usable", (double)malloc_usable_size(probe), 0);
	free(probe);
}
SBENCH_REGISTER(BM_limiter_bytes_per_key)
{
	sbench_fixed_iterations(b, 1);
}

/* ---- hash choice ---- */

static inline uint64_t rotl(uint64_t x, int b)
{
	return (x << b) | (x >> (64 - b));
}

#define SIPROUND                                                                              \
	do {                                                                                  \
		v0 += v1, v1 = rotl(v1, 13), v1 ^= v0, v0 = rotl(v0, 32);                     \
		v2 += v3, v3 = rotl(v3, 16), v3 ^= v2;                                        \
		v0 += v3, v3 = rotl(v3, 21), v3 ^= v0;                                        \
		v2 += v1, v1 = rotl(v1, 17), v1 ^= v2, v2 = rotl(v2, 32);                     \
	} while (0)

/* SipHash-1-3 (one compression, three finalization rounds), 64-bit out. */
static uint64_t siphash13(const void *data, size_t len, uint64_t k0, uint64_t k1)
{
	const unsigned char *p = data;
	uint64_t v0 = 0x736f6d6570736575ull ^ k0, v1 = 0x646f72616e646f6dull ^ k1;
	uint64_t v2 = 0x6c7967656e657261ull ^ k0, v3 = 0x7465646279746573ull ^ k1;
	uint64_t b = (uint64_t)len << 56, m;
	size_t i = 0;

	for (; i + 8 <= len; i += 8) {
		memcpy(&m, p + i, 8);
		v3 ^= m;
		SIPROUND;
		v0 ^= m;
	}
	for (size_t j = 0; i + j < len; j++)
		b |= (uint64_t)p[i + j] << (8 * j);
	v3 ^= b;
	SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

static void BM_limiter_hash_xxh3(sbench_state *st)
{
	size_t len = (size_t)sbench_range(st, 0);
	unsigned char secret[XXH3_SECRET_DEFAULT_SIZE], buf[64] = { 0 };
	XXH3_generateSecret(secret, sizeof secret, "seed", 4);
	uint64_t acc = 0;
	for (uint64_t n; (n = sbench_batch(st)) != 0;)
		for (uint64_t i = 0; i < n; i++) {
			memcpy(buf, &i, 8);
			acc += XXH3_64bits_withSecret(buf, len, secret, sizeof secret);
		}
	sbench_keep(acc);
}
SBENCH_REGISTER(BM_limiter_hash_xxh3)
{
	sbench_arg(b, 8);
	sbench_arg(b, 16);
	sbench_arg(b, 40);
}

static void BM_limiter_hash_siphash13(sbench_state *st)
{
	size_t len = (size_t)sbench_range(st, 0);
	unsigned char buf[64] = { 0 };
	uint64_t acc = 0;
	for (uint64_t n; (n = sbench_batch(st)) != 0;)
		for (uint64_t i = 0; i < n; i++) {
			memcpy(buf, &i, 8);
			acc += siphash13(buf, len, 0x0706050403020100ull, 0x0f0e0d0c0b0a0908ull);
		}
	sbench_keep(acc);
}
SBENCH_REGISTER(BM_limiter_hash_siphash13)
{
	sbench_arg(b, 8);
	sbench_arg(b, 16);
	sbench_arg(b, 40);
	sbench_baseline(b, "BM_limiter_hash_xxh3");
}

/* ---- one-limit policies of each one-word kind ----
 *
 * BM_limiter_admit_kind/K: admits on 1000 pre-inserted keys (as
 * BM_limiter_admit/1000/0) of a one-limit policy of kind K: 0 GCRA, 1
 * sliding counter, 2 calendar, each admitting nearly everything (the CAS
 * path). BM_limiter_admit_kind_icount/K: the same as a fixed loop for
 * callgrind (--toggle-collect=limiter_kind_icount_loop). A counter or a
 * calendar is then one word and one CAS, like GCRA (docs/limiter.md,
 * "Kinds"). */

#define DAY_NS (86400 * SEC)

static struct sluice_limit kind_policy(int kind)
{
	struct sluice_limit l;
	memset(&l, 0, sizeof l);
	if (kind == 0)
		return policy();
	if (kind == 1) {
		l.kind = SLUICE_LIMIT_SLIDING_COUNTER;
		sluice_window_counter_config_init(&l.counter, 1000000, 60 * SEC);
	} else {
		l.kind = SLUICE_LIMIT_CALENDAR;
		sluice_calendar_config_init(&l.calendar, 1000000000, DAY_NS);
	}
	return l;
}

static struct sluice_limiter *kind_limiter(int kind, uint32_t nkeys)
{
	struct sluice_limit l = kind_policy(kind);
	struct sluice_limiter *lim;
	struct sluice_decision d;
	struct sluice_limiter_options o = { .size = sizeof o,
					    .hash_secret = "icount",
					    .hash_secret_len = 6,
					    .max_keys = 1024,
					    .initial_buckets = 1024 };
	if (sluice_limiter_create(&lim, &l, 1, &o) != SLUICE_OK)
		abort();
	for (uint32_t i = 0; i < nkeys; i++)
		sluice_limiter_admit(lim, key_at(i), KEY_LEN, 1, SEC, &d);
	return lim;
}

static void BM_limiter_admit_kind(sbench_state *st)
{
	int kind = (int)sbench_range(st, 0);
	struct sluice_decision d;

	make_keys();
	const uint32_t *s = make_stream(1000, 0);
	struct sluice_limiter *lim = kind_limiter(kind, 1000);
	uint64_t pos = 0, now = 2 * SEC;
	for (uint64_t n; (n = sbench_batch(st)) != 0;)
		for (uint64_t i = 0; i < n; i++, pos++) {
			sluice_limiter_admit(lim, key_at(s[pos & STREAM_MASK]), KEY_LEN, 1,
					     now + pos * 10, &d);
			sbench_keep(d.allowed);
		}
	sbench_items(st, (int64_t)sbench_iterations(st));
	sluice_limiter_destroy(lim);
}
SBENCH_REGISTER(BM_limiter_admit_kind)
{
	for (int k = 0; k < 3; k++)
		sbench_arg(b, k);
	sbench_baseline(b, "BM_limiter_admit");
}

__attribute__((noinline)) static uint64_t limiter_kind_icount_loop(struct sluice_limiter *lim,
								     const uint32_t *s, uint64_t n)
{
	struct sluice_decision d;
	uint64_t allowed = 0;

	for (uint64_t pos = 0; pos < n; pos++) {
		sluice_limiter_admit(lim, key_at(s[pos & STREAM_MASK]), KEY_LEN, 1,
				     2 * SEC + pos * 10, &d);
		allowed += d.allowed;
	}
	return allowed;
}

static void BM_limiter_admit_kind_icount(sbench_state *st)
{
	int kind = (int)sbench_range(st, 0);
	uint64_t allowed = 0;

	make_keys();
	const uint32_t *s = make_stream(1000, 0);
	struct sluice_limiter *lim = kind_limiter(kind, 1000);
	for (uint64_t n; (n = sbench_batch(st)) != 0;)
		allowed += limiter_kind_icount_loop(lim, s, n);
	sbench_items(st, (int64_t)sbench_iterations(st));
	sbench_counter(st, "allowed", (double)allowed, 0);
	sluice_limiter_destroy(lim);
}
SBENCH_REGISTER(BM_limiter_admit_kind_icount)
{
	for (int k = 0; k < 3; k++)
		sbench_arg(b, k);
	sbench_fixed_iterations(b, ICOUNT_ITERS);
}

/* ---- a refused request consumes nothing, under contention ----
 *
 * BM_limiter_contended/Q/G (threads 1..N): every thread makes 2^20 admits
 * on one key of the policy {GCRA 1 per us, burst 10 (the "minute" limit,
 * refusing most calls), a quota of Q}, at the monotonic clock, until well
 * past the quota (as the tracker's measurement). G = 0: the quota is a
 * calendar day; G = 1: a GCRA of Q per 1000 days, burst Q (a second GCRA
 * limit, whose cancel is not exact). After the
 * run the quota's consumption is measured with admits at later times (the
 * GCRA refilled, the day the same): counters "admitted" and "lost" (units
 * of the quota taken by requests that were refused: consumed - admitted;
 * 0 when every cancel is exact). */

static _Atomic uint64_t contended_admitted;

static void BM_limiter_contended(sbench_state *st)
{
	static struct sluice_limiter *lim;
	static uint64_t base;
	uint64_t quota = (uint64_t)sbench_range(st, 0);
	struct sluice_decision d;
	struct timespec ts;

	if (sbench_thread_index(st) == 0) {
		struct sluice_limit l[2];
		memset(l, 0, sizeof l);
		l[0].kind = SLUICE_LIMIT_GCRA;
		sluice_rate_init(&l[0].rate, 1, 1000, 10);
		if (sbench_range(st, 1) == 0) {
			l[1].kind = SLUICE_LIMIT_CALENDAR;
			sluice_calendar_config_init(&l[1].calendar, quota, DAY_NS);
		} else {
			l[1].kind = SLUICE_LIMIT_GCRA;
			sluice_rate_init(&l[1].rate, quota, 1000 * DAY_NS, quota);
		}
		if (sluice_limiter_create(&lim, l, 2, NULL) != SLUICE_OK)
			abort();
		clock_gettime(CLOCK_MONOTONIC, &ts);
		/* An hour into a day: the run and the probes below stay in it. */
		base = 1000 * DAY_NS + 3600 * SEC - ((uint64_t)ts.tv_sec * SEC + (uint64_t)ts.tv_nsec);
		/* relaxed: a counter, read by thread 0 after the closing barrier. */
		atomic_store_explicit(&contended_admitted, 0, memory_order_relaxed); /* relaxed: why above */
	}
	uint64_t admitted = 0;
	for (uint64_t n; (n = sbench_batch(st)) != 0;) {
		uint64_t got = 0;
		for (uint64_t i = 0; i < n; i++) {
			clock_gettime(CLOCK_MONOTONIC, &ts);
			uint64_t now = base + (uint64_t)ts.tv_sec * SEC + (uint64_t)ts.tv_nsec;
			sluice_limiter_admit(lim, "hot", 3, 1, now, &d);
			got += d.allowed;
		}
		admitted += got;
		/* relaxed: a counter; the barrier of the sbench_batch() call that
		 * ends the loop orders it before thread 0 reads it below. */
		atomic_fetch_add_explicit(&contended_admitted, got, memory_order_relaxed); /* relaxed: why above */
	}
	sbench_items(st, (int64_t)sbench_iterations(st));
	sbench_counter(st, "admitted", (double)admitted, 0);
	if (sbench_thread_index(st) != 0)
		return; /* the loop's end was a barrier: thread 0 measures alone */
	/* The quota left: admits of 10 units (the GCRA's burst), 20 us apart
	 * (it is full again), then of 1, until the quota refuses (a GCRA quota
	 * refills less than a unit meanwhile). */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	uint64_t t = base + (uint64_t)ts.tv_sec * SEC + (uint64_t)ts.tv_nsec, left = 0;
	for (uint64_t c = 10; c >= 1; c = c == 10 ? 1 : 0)
		for (;;) {
			t += 20000;
			if (!(sluice_limiter_admit(lim, "hot", 3, c, t, &d) == SLUICE_OK && d.allowed))
				break;
			left += c;
		}
	/* relaxed: see above. */
	uint64_t all = atomic_load_explicit(&contended_admitted, memory_order_relaxed); /* relaxed: why above */
	sbench_counter(st, "lost", (double)(quota - left - all), 0);
	sluice_limiter_destroy(lim);
}
SBENCH_REGISTER(BM_limiter_contended)
{
	sbench_args2(b, 100000, 0);
	sbench_args2(b, 100000, 1);
	sbench_thread_range(b, 1, max_threads());
	sbench_fixed_iterations(b, 1 << 20);
	sbench_real_time(b);
}
