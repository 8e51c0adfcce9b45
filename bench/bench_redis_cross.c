/*
 * bench_redis_cross.c - a request whose two scopes hash to different slots
 * on different nodes of a Redis Cluster (the cross-slot protocol,
 * docs/redis.md, "Scopes on different slots") against the same request
 * with a shared hash tag (one slot: one script call, one round trip), on
 * the same three-node loopback cluster, in the same run:
 *
 *   BM_redis_cross_slot_admit        "{ws:i}" + "{ip:j}" on two nodes, both
 *                                    admit: reserve on each node (2 round
 *                                    trips), nothing to cancel
 *   BM_redis_cross_slot_tagged_admit baseline: "{ws:i}" + "{ws:i}:ip", one slot
 *   BM_redis_cross_slot_cancel       the same pair, the second group (the
 *                                    higher slot) denies: reserve, denied
 *                                    reserve, cancel of the first (3)
 *   BM_redis_cross_slot_tagged_denied baseline: the same denial on one slot (1)
 *
 * Limits far above the offered rate (1 M/s) admit every time; the denying
 * scope has 1 per hour, spent before the timed loop. 256 key pairs in
 * rotation, each pair's keys on different nodes with the workspace's slot
 * the lower (visited first). Server time; no deny cache (it would answer
 * the denied group locally). Figures are per decision (wall time);
 * rt_per_decision counts round trips. Needs redis-server: run with
 * SLUICE_BENCH_REDIS=1 (the cluster is started on free loopback ports for
 * the run, killed at exit); otherwise these report an error and the rest
 * of the suite runs as usual. Not in `.ci/bench`'s default run (its filter
 * leaves out BM_redis*).
 */
#include <sluice.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_server.h"
#include "shim.h"

#define SEC 1000000000ull
#define NPAIRS 256

#ifdef SLUICE_WITH_REDIS

/* Pair i: ws[i] and ip[i] on different nodes, slot(ws) < slot(ip); and
 * tagged[i] = ws[i] + ":ip" (ws[i]'s slot). */
static char ws[NPAIRS][24], ip[NPAIRS][24], tagged[NPAIRS][32];
static bool pairs_ready;

static const char *pairs_make(void)
{
	if (pairs_ready)
		return NULL;
	char key[48];
	int w = 0, j = 0;
	for (int i = 0; i < NPAIRS; i++) {
		/* A workspace on node 0 or 1: node 2 holds the highest slots,
		 * so no key of another node lies above its slot. */
		long sw;
		do {
			if (w > 100 * NPAIRS)
				return "no workspace key off the last node";
			snprintf(ws[i], sizeof ws[i], "{ws:%d}", w);
			snprintf(key, sizeof key, "sluice:{ws:%d}", w++);
			sw = sbench_redis_cluster_keyslot(key);
			if (sw < 0)
				return "CLUSTER KEYSLOT failed";
		} while (sbench_redis_cluster_node((uint32_t)sw) == 2);
		snprintf(tagged[i], sizeof tagged[i], "{ws:%d}:ip", w - 1);
		for (long si = -1; si <= sw || sbench_redis_cluster_node((uint32_t)si) ==
							  sbench_redis_cluster_node((uint32_t)sw);) {
			if (j > 100 * NPAIRS)
				return "no key on another node above the workspace's slot";
			snprintf(ip[i], sizeof ip[i], "{ip:%d}", j);
			snprintf(key, sizeof key, "sluice:{ip:%d}", j++);
			si = sbench_redis_cluster_keyslot(key);
			if (si < 0)
				return "CLUSTER KEYSLOT failed";
		}
	}
	pairs_ready = true;
	return NULL;
}

static struct sluice_redis *open_cluster(sbench_state *st)
{
	struct sluice_redis *r = sbench_redis_cluster_open(st);
	if (r == NULL)
		return NULL;
	const char *why = pairs_make();
	if (why != NULL) {
		sbench_error(st, why);
		sluice_redis_destroy(r);
		return NULL;
	}
	return r;
}

/* One benchmark body: pair i's request of two scopes, cross-slot or
 * tagged, with the second scope's limit `second`. */
static void run(sbench_state *st, bool cross, const struct sluice_limit *second)
{
	struct sluice_redis *r = open_cluster(st);
	if (r == NULL)
		return;
	struct sluice_limit first = sbench_gcra(1000000, SEC, 1000000);
	struct sluice_decision d;
	bool want = second->rate.limit > 1;
	/* Spend the denying limit before the timed loop. */
	for (int i = 0; !want && i < NPAIRS; i++) {
		const char *k = cross ? ip[i] : tagged[i];
		sluice_redis_admit(r, k, strlen(k), second, 1, 1, 0, &d);
	}
	uint64_t t0 = sbench_redis_trips(r), i = 0, wrong = 0;
	for (uint64_t n; (n = sbench_batch(st)) != 0;) {
		for (uint64_t q = 0; q < n; q++, i++) {
			size_t p = (size_t)(i % NPAIRS);
			const char *k = cross ? ip[p] : tagged[p];
			struct sluice_redis_scope sc[2] = { { ws[p], strlen(ws[p]), &first, 1 },
							    { k, strlen(k), second, 1 } };
			sluice_redis_admit_scopes(r, sc, 2, 1, 0, &d);
			wrong += d.allowed != want;
		}
	}
	if (wrong != 0)
		sbench_error(st, "a decision other than the one this benchmark measures");
	sbench_redis_finish(st, r, t0, i);
}

static void BM_redis_cross_slot_admit(sbench_state *st)
{
	struct sluice_limit second = sbench_gcra(1000000, SEC, 1000000);
	run(st, true, &second);
}
SBENCH_REGISTER(BM_redis_cross_slot_admit)
{
	sbench_real_time(b);
	sbench_baseline(b, "BM_redis_cross_slot_tagged_admit");
}

static void BM_redis_cross_slot_tagged_admit(sbench_state *st)
{
	struct sluice_limit second = sbench_gcra(1000000, SEC, 1000000);
	run(st, false, &second);
}
SBENCH_REGISTER(BM_redis_cross_slot_tagged_admit)
{
	sbench_real_time(b);
}

static void BM_redis_cross_slot_cancel(sbench_state *st)
{
	struct sluice_limit second = sbench_gcra(1, 3600 * SEC, 1);
	run(st, true, &second);
}
SBENCH_REGISTER(BM_redis_cross_slot_cancel)
{
	sbench_real_time(b);
	sbench_baseline(b, "BM_redis_cross_slot_tagged_denied");
}

static void BM_redis_cross_slot_tagged_denied(sbench_state *st)
{
	struct sluice_limit second = sbench_gcra(1, 3600 * SEC, 1);
	run(st, false, &second);
}
SBENCH_REGISTER(BM_redis_cross_slot_tagged_denied)
{
	sbench_real_time(b);
}

#else /* !SLUICE_WITH_REDIS */

static void BM_redis_cross_slot_admit(sbench_state *st)
{
	sbench_error(st, "sluice was built without the Redis backend (SLUICE_WITH_REDIS=OFF)");
}
SBENCH_REGISTER(BM_redis_cross_slot_admit)
{
	(void)b;
}

#endif
