/*
 * bench_redis_kinds.c - the window and slot kinds on the Redis backend
 * against GCRA-only requests on the same server, in the same run (one
 * decision per call, one key of 1000, server time):
 *
 *   BM_redis_kinds_gcra2            baseline: 10/s + 600/min, both GCRA
 *   BM_redis_kinds_counter_calendar 600/min sliding counter + 10000/day calendar
 *   BM_redis_kinds_mixed4           GCRA + counter + calendar + 10/s sliding log
 *   BM_redis_kinds_log100           one 100/min sliding log (the log's O(limit) field)
 *   BM_redis_kinds_acquire_release  GCRA + 64 slots with a lease: acquire, then
 *                                   release (two round trips per decision)
 *   BM_redis_kinds_calendar_denied  a spent 1/day calendar, every request
 *                                   denied, no deny cache (one round trip)
 *   BM_redis_kinds_calendar_denied_cached  the same with the deny cache on
 *                                   (docs/redis.md, "Deny cache": denied
 *                                   locally; baseline: the one above)
 *
 * Figures are per decision (wall time); rt_per_decision counts round
 * trips. Needs redis-server: run with SLUICE_BENCH_REDIS=1 (started on a
 * free loopback port for the run, killed at exit); otherwise these report
 * an error and the rest of the suite runs as usual.
 */
#include <sluice.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_server.h"
#include "shim.h"

#define SEC 1000000000ull
#define NKEYS 1000

#ifdef SLUICE_WITH_REDIS


#include <hiredis/hiredis.h>


static struct sluice_limit kind_limit(uint32_t kind, uint64_t limit, uint64_t window_ns)
{
	struct sluice_limit l;
	memset(&l, 0, sizeof l);
	l.kind = kind;
	if (kind == SLUICE_LIMIT_SLIDING_COUNTER)
		sluice_window_counter_config_init(&l.counter, limit, window_ns);
	else if (kind == SLUICE_LIMIT_CALENDAR)
		sluice_calendar_config_init(&l.calendar, limit, window_ns);
	else if (kind == SLUICE_LIMIT_SLIDING_LOG)
		sluice_window_log_config_init(&l.log, limit, window_ns);
	else
		sluice_slots_config_init(&l.slots, limit, window_ns, 0);
	return l;
}

static char keys[NKEYS][16];

/* The run's server, a handle on it, and the keys named. */
static struct sluice_redis *open_backend(sbench_state *st)
{
	for (int i = 0; i < NKEYS; i++)
		snprintf(keys[i], sizeof keys[i], "k%05d", i);
	return sbench_redis_open(st);
}

static void run_admit(sbench_state *st, const struct sluice_limit *l, size_t n_limits)
{
	struct sluice_redis *r = open_backend(st);
	if (r == NULL)
		return;
	uint64_t t0 = sbench_redis_trips(r), i = 0;
	for (uint64_t n; (n = sbench_batch(st)) != 0;) {
		for (uint64_t j = 0; j < n; j++, i++) {
			struct sluice_decision d;
			const char *k = keys[i % NKEYS];
			if (sluice_redis_admit(r, k, strlen(k), l, n_limits, 1, 0, &d) != SLUICE_OK) {
				sbench_error(st, "sluice_redis_admit failed");
				break;
			}
			sbench_keep(d.allowed);
		}
	}
	sbench_redis_finish(st, r, t0, i);
}

static void BM_redis_kinds_gcra2(sbench_state *st)
{
	struct sluice_limit l[2] = { sbench_gcra(10, SEC, 10), sbench_gcra(600, 60 * SEC, 600) };
	run_admit(st, l, 2);
}
SBENCH_REGISTER(BM_redis_kinds_gcra2)
{
	sbench_real_time(b);
}

static void BM_redis_kinds_counter_calendar(sbench_state *st)
{
	struct sluice_limit l[2] = { kind_limit(SLUICE_LIMIT_SLIDING_COUNTER, 600, SLUICE_MINUTE_NS),
				     kind_limit(SLUICE_LIMIT_CALENDAR, 10000, SLUICE_DAY_NS) };
	run_admit(st, l, 2);
}
SBENCH_REGISTER(BM_redis_kinds_counter_calendar)
{
	sbench_real_time(b);
	sbench_baseline(b, "BM_redis_kinds_gcra2");
}

static void BM_redis_kinds_mixed4(sbench_state *st)
{
	struct sluice_limit l[4] = { sbench_gcra(10, SEC, 10),
				     kind_limit(SLUICE_LIMIT_SLIDING_COUNTER, 600, SLUICE_MINUTE_NS),
				     kind_limit(SLUICE_LIMIT_CALENDAR, 10000, SLUICE_DAY_NS),
				     kind_limit(SLUICE_LIMIT_SLIDING_LOG, 10, SEC) };
	run_admit(st, l, 4);
}
SBENCH_REGISTER(BM_redis_kinds_mixed4)
{
	sbench_real_time(b);
	sbench_baseline(b, "BM_redis_kinds_gcra2");
}

static void BM_redis_kinds_log100(sbench_state *st)
{
	struct sluice_limit l = kind_limit(SLUICE_LIMIT_SLIDING_LOG, 100, SLUICE_MINUTE_NS);
	run_admit(st, &l, 1);
}
SBENCH_REGISTER(BM_redis_kinds_log100)
{
	sbench_real_time(b);
	sbench_baseline(b, "BM_redis_kinds_gcra2");
}

static void BM_redis_kinds_acquire_release(sbench_state *st)
{
	struct sluice_redis *r = open_backend(st);
	if (r == NULL)
		return;
	struct sluice_limit l[2] = { sbench_gcra(1000, SEC, 1000), kind_limit(SLUICE_LIMIT_SLOTS, 64, 30 * SEC) };
	uint64_t t0 = sbench_redis_trips(r), i = 0;
	for (uint64_t n; (n = sbench_batch(st)) != 0;) {
		for (uint64_t j = 0; j < n; j++, i++) {
			struct sluice_decision d;
			sluice_slot_handle h;
			const char *k = keys[i % NKEYS];
			struct sluice_redis_scope sc = { k, strlen(k), l, 2 };
			if (sluice_redis_acquire_scopes(r, &sc, 1, 1, 0, &d, &h) != SLUICE_OK ||
			    (d.allowed && sluice_redis_release(r, &sc, h) != SLUICE_OK)) {
				sbench_error(st, "acquire/release failed");
				break;
			}
			sbench_keep(d.allowed);
		}
	}
	sbench_redis_finish(st, r, t0, i);
}
SBENCH_REGISTER(BM_redis_kinds_acquire_release)
{
	sbench_real_time(b);
	sbench_baseline(b, "BM_redis_kinds_gcra2");
}

/* Every request on a 1/day calendar limit spent before the timed loop,
 * so every decision is a denial; with `cache`, a deny cache that holds
 * every key (it learns each key's state in the untimed warm-up). */
static void run_calendar_denied(sbench_state *st, bool cache)
{
	static char ckeys[NKEYS][16];
	int port = 0;
	const char *why = sbench_redis_server(&port);
	if (why != NULL) {
		sbench_error(st, why);
		return;
	}
	struct sluice_redis_options o;
	memset(&o, 0, sizeof o);
	o.size = sizeof o;
	o.port = (uint32_t)port;
	o.timeout_ns = SLUICE_NS_PER_SEC;
	/* 1000 keys in 32768 two-way sets: a third key in a set (which would
	 * evict, and cost round trips) is unlikely; rt_per_decision shows it. */
	o.deny_cache_slots = cache ? 65536 : 0;
	struct sluice_redis *r = NULL;
	if (sluice_redis_create(&r, &o) != SLUICE_OK || r == NULL) {
		sbench_error(st, "sluice_redis_create failed");
		return;
	}
	struct sluice_limit l = kind_limit(SLUICE_LIMIT_CALENDAR, 1, SLUICE_DAY_NS);
	struct sluice_decision d;
	for (int i = 0; i < NKEYS; i++) {
		snprintf(ckeys[i], sizeof ckeys[i], "d%05d", i);
		for (int q = 0; q < 2; q++) /* spend it (or find it spent), then a denial */
			sluice_redis_admit(r, ckeys[i], strlen(ckeys[i]), &l, 1, 1, 0, &d);
	}
	uint64_t t0 = sbench_redis_trips(r), i = 0, admitted = 0;
	for (uint64_t n; (n = sbench_batch(st)) != 0;) {
		for (uint64_t j = 0; j < n; j++, i++) {
			const char *k = ckeys[i % NKEYS];
			if (sluice_redis_admit(r, k, strlen(k), &l, 1, 1, 0, &d) != SLUICE_OK) {
				sbench_error(st, "sluice_redis_admit failed");
				break;
			}
			admitted += d.allowed;
		}
	}
	if (admitted != 0)
		sbench_error(st, "an admission: the window turned (UTC midnight) during the run");
	sbench_redis_finish(st, r, t0, i);
}

static void BM_redis_kinds_calendar_denied(sbench_state *st)
{
	run_calendar_denied(st, false);
}
SBENCH_REGISTER(BM_redis_kinds_calendar_denied)
{
	sbench_real_time(b);
}

static void BM_redis_kinds_calendar_denied_cached(sbench_state *st)
{
	run_calendar_denied(st, true);
}
SBENCH_REGISTER(BM_redis_kinds_calendar_denied_cached)
{
	sbench_real_time(b);
	sbench_baseline(b, "BM_redis_kinds_calendar_denied");
}

#else /* !SLUICE_WITH_REDIS */

static void BM_redis_kinds_gcra2(sbench_state *st)
{
	sbench_error(st, "sluice was built without the Redis backend (SLUICE_WITH_REDIS=OFF)");
}
SBENCH_REGISTER(BM_redis_kinds_gcra2)
{
	(void)b;
}

#endif
