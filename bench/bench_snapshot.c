/*
 * bench_snapshot.c - keyed-limiter snapshots (sluice/snapshot.h) at 1M keys:
 *
 *   BM_limiter_snapshot/1M       one snapshot into memory (the walk, the
 *                                copies, the checksum); counters: bytes per
 *                                key, file MB
 *   BM_limiter_snapshot_file/1M  the same written to a file beside the
 *                                working directory (temp file, fsync,
 *                                rename, directory fsync)
 *   BM_limiter_restore/1M        one restore from memory into a fresh
 *                                limiter (check pass, duplicate-key sort,
 *                                insert pass)
 *   BM_limiter_admit_during_snapshot/{0,1}
 *                                single admits on one thread over the 1M
 *                                keys, each timed alone (sluice_monotonic_ns
 *                                around it, ~20 ns of the figure), with
 *                                (1) or without (0) a second thread taking
 *                                snapshots back to back; counters p50, p99,
 *                                p999 in ns. Compare the two in one run.
 *
 * The policy is one GCRA limit (120/min, burst 120), keys "key-0000001"
 * (11 bytes), each admitted once. Fixed iterations: the figures are seconds
 * per operation.
 */
#include <pthread.h>
#include <sluice.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shim.h"

#define SEC 1000000000ull
#define NKEYS 1000000u
#define KEY_LEN 11
#define T0 (UINT64_C(1700000000) * SEC)

static struct sluice_limit policy;
static char (*keys)[KEY_LEN + 1];
static struct sluice_limiter *full; /* 1M keys, built once */

static struct sluice_limiter *make(void)
{
	struct sluice_limiter *lim = NULL;
	struct sluice_limiter_options o;

	memset(&o, 0, sizeof o);
	o.size = sizeof o;
	o.initial_buckets = 1u << 20;
	if (sluice_limiter_create(&lim, &policy, 1, &o) != SLUICE_OK)
		abort();
	return lim;
}

static void setup(void)
{
	struct sluice_decision d;

	if (full != NULL)
		return;
	memset(&policy, 0, sizeof policy);
	policy.kind = SLUICE_LIMIT_GCRA;
	if (sluice_rate_init(&policy.rate, 120, 60 * SEC, 120) != SLUICE_OK)
		abort();
	keys = malloc((size_t)NKEYS * sizeof *keys);
	if (keys == NULL)
		abort();
	for (uint32_t i = 0; i < NKEYS; i++)
		snprintf(keys[i], sizeof keys[i], "key-%07u", i);
	full = make();
	for (uint32_t i = 0; i < NKEYS; i++)
		sluice_limiter_admit(full, keys[i], KEY_LEN, 1, T0, &d);
}

static void BM_limiter_snapshot(sbench_state *st)
{
	size_t len = 0;

	setup();
	for (uint64_t n; (n = sbench_batch(st)) != 0;)
		for (uint64_t i = 0; i < n; i++) {
			void *buf;
			if (sluice_limiter_snapshot_mem(full, T0 + SEC, &buf, &len, NULL) != SLUICE_OK)
				abort();
			free(buf);
		}
	sbench_counter(st, "bytes_per_key", (double)len / NKEYS, 1);
	sbench_counter(st, "MB", (double)len / 1e6, 1);
}
SBENCH_REGISTER(BM_limiter_snapshot)
{
	sbench_arg(b, NKEYS);
	sbench_fixed_iterations(b, 5);
}

static void BM_limiter_snapshot_file(sbench_state *st)
{
	setup();
	for (uint64_t n; (n = sbench_batch(st)) != 0;)
		for (uint64_t i = 0; i < n; i++)
			if (sluice_limiter_snapshot(full, "bench_snapshot.state", T0 + SEC, NULL) !=
			    SLUICE_OK)
				abort();
	remove("bench_snapshot.state");
}
SBENCH_REGISTER(BM_limiter_snapshot_file)
{
	sbench_arg(b, NKEYS);
	sbench_fixed_iterations(b, 3);
	sbench_real_time(b);
}

static void BM_limiter_restore(sbench_state *st)
{
	void *buf;
	size_t len;

	setup();
	if (sluice_limiter_snapshot_mem(full, T0 + SEC, &buf, &len, NULL) != SLUICE_OK)
		abort();
	for (uint64_t n; (n = sbench_batch(st)) != 0;)
		for (uint64_t i = 0; i < n; i++) {
			sbench_pause(st);
			struct sluice_limiter *lim = make();
			sbench_resume(st);
			if (sluice_limiter_restore_mem(lim, buf, len, T0 + SEC, NULL) != SLUICE_OK)
				abort();
			sbench_pause(st);
			sluice_limiter_destroy(lim);
			sbench_resume(st);
		}
	free(buf);
}
SBENCH_REGISTER(BM_limiter_restore)
{
	sbench_arg(b, NKEYS);
	sbench_fixed_iterations(b, 3);
}

static _Atomic bool snap_stop;
static _Atomic uint64_t snaps_taken;

static void *snapshot_loop(void *arg)
{
	(void)arg;
	/* relaxed: a stop flag, the join orders the rest. */
	while (!atomic_load_explicit(&snap_stop, memory_order_relaxed)) { /* relaxed: why above */
		void *buf;
		size_t len;
		if (sluice_limiter_snapshot_mem(full, T0 + SEC, &buf, &len, NULL) != SLUICE_OK)
			abort();
		free(buf);
		/* relaxed: a tally read after join. */
		atomic_fetch_add_explicit(&snaps_taken, 1, memory_order_relaxed); /* relaxed: why above */
	}
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

#define SAMPLES 2000000u

static void BM_limiter_admit_during_snapshot(sbench_state *st)
{
	bool with = sbench_range(st, 0) != 0;
	uint64_t *lat = malloc(SAMPLES * sizeof *lat);
	pthread_t th;
	struct sluice_decision d;
	uint64_t taken = 0;

	setup();
	if (lat == NULL)
		abort();
	for (uint64_t n; (n = sbench_batch(st)) != 0;) {
		sbench_pause(st);
		/* relaxed: set before the thread starts (pthread_create orders it). */
		atomic_store_explicit(&snap_stop, false, memory_order_relaxed); /* relaxed: why above */
		atomic_store_explicit(&snaps_taken, 0, memory_order_relaxed); /* relaxed: as above */
		if (with && pthread_create(&th, NULL, snapshot_loop, NULL) != 0)
			abort();
		sbench_resume(st);
		for (uint64_t it = 0; it < n; it++) {
			uint32_t k = 12345;
			for (uint32_t i = 0; i < SAMPLES; i++) {
				k = k * 1664525u + 1013904223u;
				uint64_t t1 = sluice_monotonic_ns();
				sluice_limiter_admit(full, keys[k % NKEYS], KEY_LEN, 1, T0 + 2 * SEC, &d);
				lat[i] = sluice_monotonic_ns() - t1;
				sbench_keep(d.allowed);
			}
		}
		sbench_pause(st);
		/* relaxed: the join below orders everything. */
		atomic_store_explicit(&snap_stop, true, memory_order_relaxed); /* relaxed: why above */
		if (with)
			pthread_join(th, NULL);
		taken += atomic_load_explicit(&snaps_taken, memory_order_relaxed); /* relaxed: after join */
		sbench_resume(st);
	}
	qsort(lat, SAMPLES, sizeof *lat, cmp_u64);
	sbench_counter(st, "p50_ns", (double)lat[SAMPLES / 2], 1);
	sbench_counter(st, "p99_ns", (double)lat[SAMPLES / 100 * 99], 1);
	sbench_counter(st, "p999_ns", (double)lat[SAMPLES / 1000 * 999], 1);
	sbench_counter(st, "max_ns", (double)lat[SAMPLES - 1], 1);
	sbench_counter(st, "snapshots", (double)taken, 1);
	free(lat);
}
SBENCH_REGISTER(BM_limiter_admit_during_snapshot)
{
	sbench_arg(b, 0);
	sbench_arg(b, 1);
	sbench_fixed_iterations(b, 1);
	sbench_real_time(b);
}

/* ---- the engine's state file: seed 002 at 1M tokens ----
 *
 *   BM_engine_snapshot_seed002/1M  sluice_engine_snapshot() to a file of
 *                                  seed 002 after one request of each of
 *                                  1M tokens (11 bytes) in 10,000
 *                                  workspaces: 3M token keys (minute, day,
 *                                  in-flight) and 20,000 workspace keys;
 *                                  counters: keys, MB, bytes per token
 *   BM_engine_restore_seed002/1M   sluice_engine_restore() of that file
 *                                  into a fresh engine of seed 002
 */
#define NTOKENS 1000000u
#define NWS 10000u

static struct sluice_engine *seed_engine;

static struct sluice_engine *seed002_engine(void)
{
	char path[1024];
	static char text[1 << 14];
	snprintf(path, sizeof path, "%s/docs/policies/seed002.policy", SLUICE_SOURCE_DIR);
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		abort();
	size_t n = fread(text, 1, sizeof text - 1, f);
	fclose(f);
	struct sluice_policy *p;
	struct sluice_policy_error err;
	if (sluice_policy_parse(text, n, NULL, &p, &err) != SLUICE_OK)
		abort();
	struct sluice_engine *e;
	if (sluice_engine_create(&e, p, NULL) != SLUICE_OK)
		abort();
	return e;
}

static void seed_setup(void)
{
	if (seed_engine != NULL)
		return;
	seed_engine = seed002_engine();
	struct sluice_identity id[2];
	struct sluice_engine_request r;
	struct sluice_engine_decision d;
	char tok[16], ws[16];
	memset(&r, 0, sizeof r);
	r.method = "GET";
	r.method_len = 3;
	r.path = "/v1/items";
	r.path_len = 9;
	r.identities = id;
	r.identity_count = 2;
	r.tier = SLUICE_POLICY_NO_TIER;
	r.cost = 1;
	r.now_ns = T0;
	for (uint32_t i = 0; i < NTOKENS; i++) {
		snprintf(tok, sizeof tok, "tok-%07u", i);
		snprintf(ws, sizeof ws, "ws-%05u", i % NWS);
		id[0] = (struct sluice_identity){ tok, 11 };
		id[1] = (struct sluice_identity){ ws, 8 };
		if (sluice_engine_check(seed_engine, &r, &d) != SLUICE_OK || !d.d.allowed)
			abort();
		sluice_engine_release(seed_engine, &d);
	}
}

static void BM_engine_snapshot_seed002(sbench_state *st)
{
	struct sluice_snapshot_info info = { .size = sizeof info };

	seed_setup();
	for (uint64_t n; (n = sbench_batch(st)) != 0;)
		for (uint64_t i = 0; i < n; i++)
			if (sluice_engine_snapshot(seed_engine, "bench_engine.state", T0 + SEC, &info) !=
			    SLUICE_OK)
				abort();
	sbench_counter(st, "keys", (double)info.entries, 1);
	sbench_counter(st, "MB", (double)info.bytes / 1e6, 1);
	sbench_counter(st, "bytes_per_token", (double)info.bytes / NTOKENS, 1);
}
SBENCH_REGISTER(BM_engine_snapshot_seed002)
{
	sbench_arg(b, NTOKENS);
	sbench_fixed_iterations(b, 3);
	sbench_real_time(b);
}

static void BM_engine_restore_seed002(sbench_state *st)
{
	struct sluice_snapshot_info info = { .size = sizeof info };

	seed_setup();
	if (sluice_engine_snapshot(seed_engine, "bench_engine.state", T0 + SEC, &info) != SLUICE_OK)
		abort();
	for (uint64_t n; (n = sbench_batch(st)) != 0;)
		for (uint64_t i = 0; i < n; i++) {
			sbench_pause(st);
			struct sluice_engine *e = seed002_engine();
			sbench_resume(st);
			if (sluice_engine_restore(e, "bench_engine.state", T0 + 2 * SEC, &info) != SLUICE_OK)
				abort();
			sbench_pause(st);
			sluice_engine_destroy(e);
			sbench_resume(st);
		}
	sbench_counter(st, "loaded", (double)info.loaded, 1);
	remove("bench_engine.state");
}
SBENCH_REGISTER(BM_engine_restore_seed002)
{
	sbench_arg(b, NTOKENS);
	sbench_fixed_iterations(b, 3);
	sbench_real_time(b);
}
