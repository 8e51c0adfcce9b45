/*
 * test_redis_kinds.c - the window and slot kinds on the Redis backend, and
 * cross-slot requests on a Redis Cluster (include/sluice/redis.h), against
 * the in-process keyed limiter: the same requests at the same times must
 * give identical decisions (allowed, reason, limit_index, limit, remaining,
 * reset_ns, retry_after_ns). Real redis-server processes on loopback ports
 * (tests/redis_server.h). Cluster tests: test_redis_cluster.c.
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <sluice.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdatomic.h>

#include "redis_server.h"
#include "redis_kinds_util.h"

/* ---- window kinds: one key against the keyed limiter ---- */

/* GCRA placed last, so that the limiter's order (GCRA first) differs from
 * the caller's; counter windows short enough that their windows roll. */
static void differential_windows(uint64_t base, int steps)
{
	struct redis_harness_server srv = server_start();
	struct sluice_redis_options o = ropts(srv.port, SLUICE_REDIS_CALLER_CLOCK);
	struct sluice_redis *r = connect_to(&o);
	struct sluice_limit l[4] = { counter(6, 2 * SEC), calendar(9, 5 * SEC + 7), counter(4, 700 * MS + 3),
				     gcra(5, SEC, 4) };
	struct sluice_limiter *lim = NULL;
	cr_assert_eq(sluice_limiter_create(&lim, l, 4, NULL), SLUICE_OK);
	const char *keys[3] = { "alpha", "beta", "" };
	uint64_t now = base;
	int denied = 0, allowed = 0;

	for (int step = 0; step < steps; step++) {
		const char *k = keys[rnd() % 3];
		uint64_t cost = rnd() % 4;
		if (rnd() % 16 == 0)
			cost = 7; /* past every limit but the calendar's */
		now = step_time(now, 300 * MS, 20 * SEC);
		struct sluice_decision a, b;
		cr_assert_eq(sluice_limiter_admit(lim, k, strlen(k), cost, now, &a), SLUICE_OK);
		cr_assert_eq(sluice_redis_admit(r, k, strlen(k), l, 4, cost, now, &b), SLUICE_OK);
		assert_same(&a, &b, step);
		if (cost > 0) {
			denied += !a.allowed;
			allowed += a.allowed;
		}
	}
	cr_expect_gt(denied, steps / 10, "the sequence exercises denials (%d)", denied);
	cr_expect_gt(allowed, steps / 10, "and admissions (%d)", allowed);
	cr_expect_eq(rstats(r).degraded, 0);
	sluice_redis_destroy(r);
	sluice_limiter_destroy(lim);
	server_stop(&srv);
}

Test(redis_kinds, differential_counter_calendar_gcra_unix_time)
{
	differential_windows(UNIX_NOW, 500);
}

Test(redis_kinds, differential_counter_calendar_gcra_small_times)
{
	differential_windows(3 * SEC, 300);
}

Test(redis_kinds, differential_near_the_end_of_the_clock)
{
	/* Calendar boundaries past 2^64 - 1 read SLUICE_NEVER. */
	differential_windows(UINT64_MAX - 2 * MIN, 200);
}

/* The largest limits and windows this backend takes: the counter's exact
 * test at (2^20 - 1) * 2^52, the calendar's 2^32 - 1 count. */
Test(redis_kinds, differential_at_the_largest_limits_and_windows)
{
	struct redis_harness_server srv = server_start();
	struct sluice_redis_options o = ropts(srv.port, SLUICE_REDIS_CALLER_CLOCK);
	struct sluice_redis *r = connect_to(&o);
	struct sluice_limit l[2] = { counter(SLUICE_WINDOW_COUNTER_MAX_LIMIT, 1ull << 52),
				     calendar(SLUICE_CALENDAR_MAX_LIMIT, 1ull << 52) };
	struct sluice_limiter *lim = NULL;
	cr_assert_eq(sluice_limiter_create(&lim, l, 2, NULL), SLUICE_OK);
	uint64_t costs[] = { 1, SLUICE_WINDOW_COUNTER_MAX_LIMIT - 2, 1, 1, 0, 700000, 5, 1ull << 20, 3 };
	uint64_t now = UNIX_NOW;
	for (int i = 0; i < (int)(sizeof costs / sizeof costs[0]); i++) {
		struct sluice_decision a, b;
		cr_assert_eq(sluice_limiter_admit(lim, "x", 1, costs[i], now, &a), SLUICE_OK);
		cr_assert_eq(sluice_redis_admit(r, "x", 1, l, 2, costs[i], now, &b), SLUICE_OK);
		assert_same(&a, &b, i);
		now += (1ull << 52) / 3 + 12345; /* across windows: prev decays */
	}
	sluice_redis_destroy(r);
	sluice_limiter_destroy(lim);
	server_stop(&srv);
}

/* The sliding log, alone and with other kinds, with stale clocks. */
static void differential_log(uint64_t base, int steps)
{
	struct redis_harness_server srv = server_start();
	struct sluice_redis_options o = ropts(srv.port, SLUICE_REDIS_CALLER_CLOCK);
	struct sluice_redis *r = connect_to(&o);
	struct sluice_limit mixed[3] = { slog(5, 2 * SEC), gcra(4, SEC, 4), counter(7, 3 * SEC) };
	struct sluice_limit alone[1] = { slog(3, 700 * MS + 11) };
	struct sluice_limiter *lm = NULL, *la = NULL;
	cr_assert_eq(sluice_limiter_create(&lm, mixed, 3, NULL), SLUICE_OK);
	cr_assert_eq(sluice_limiter_create(&la, alone, 1, NULL), SLUICE_OK);
	uint64_t now = base;
	int denied = 0;

	for (int step = 0; step < steps; step++) {
		bool one = rnd() % 2 == 0;
		uint64_t cost = rnd() % 3;
		if (rnd() % 16 == 0)
			cost = 6; /* past the log's limit */
		now = step_time(now, 250 * MS, 5 * SEC);
		struct sluice_decision a, b;
		if (one) {
			cr_assert_eq(sluice_limiter_admit(la, "x", 1, cost, now, &a), SLUICE_OK);
			cr_assert_eq(sluice_redis_admit(r, "x", 1, alone, 1, cost, now, &b), SLUICE_OK);
		} else {
			cr_assert_eq(sluice_limiter_admit(lm, "y", 1, cost, now, &a), SLUICE_OK);
			cr_assert_eq(sluice_redis_admit(r, "y", 1, mixed, 3, cost, now, &b), SLUICE_OK);
		}
		assert_same(&a, &b, step);
		denied += cost > 0 && !a.allowed;
	}
	cr_expect_gt(denied, steps / 10, "denials (%d)", denied);
	cr_expect_eq(rstats(r).degraded, 0);
	sluice_redis_destroy(r);
	sluice_limiter_destroy(lm);
	sluice_limiter_destroy(la);
	server_stop(&srv);
}

Test(redis_kinds, differential_sliding_log_unix_time)
{
	differential_log(UNIX_NOW, 400);
}

Test(redis_kinds, differential_sliding_log_small_and_end_times)
{
	differential_log(SEC / 2, 150); /* times below the window: nothing has left it */
	differential_log(UINT64_MAX - MIN, 150);
}

/* A log at its ceiling on this backend, full, with the server's clock. */
Test(redis_kinds, sliding_log_at_its_redis_ceiling)
{
	struct redis_harness_server srv = server_start();
	struct sluice_redis_options o = ropts(srv.port, 0);
	struct sluice_redis *r = connect_to(&o);
	struct sluice_limit l = slog(SLUICE_REDIS_MAX_LOG_LIMIT, MIN);
	struct sluice_decision d;

	cr_assert_eq(sluice_redis_admit(r, "big", 3, &l, 1, SLUICE_REDIS_MAX_LOG_LIMIT - 1, 0, &d), SLUICE_OK);
	cr_expect(d.allowed && !d.degraded);
	cr_expect_eq(d.remaining, 1);
	cr_assert_eq(sluice_redis_admit(r, "big", 3, &l, 1, 1, 0, &d), SLUICE_OK);
	cr_expect(d.allowed);
	cr_expect_eq(d.remaining, 0);
	cr_assert_eq(sluice_redis_admit(r, "big", 3, &l, 1, 1, 0, &d), SLUICE_OK);
	cr_expect(!d.allowed && !d.degraded);
	cr_expect_eq(d.reason, SLUICE_REASON_RATE);
	cr_expect(d.retry_after_ns > 59 * SEC && d.retry_after_ns <= MIN, "retry %llu",
		  (unsigned long long)d.retry_after_ns);
	long long pttl = side_int(srv.port, "PTTL", "sluice:big");
	cr_expect(pttl > 59000 && pttl <= 60001, "until the last unit leaves the window: %lld", pttl);
	struct sluice_limit over = slog(SLUICE_REDIS_MAX_LOG_LIMIT + 1, MIN);
	cr_expect_eq(sluice_redis_admit(r, "big", 3, &over, 1, 1, 0, &d), SLUICE_ERANGE);
	sluice_redis_destroy(r);
	server_stop(&srv);
}

/* A window index that aliases: the cells keep their index mod 2^24 (counter)
 * and 2^32 (calendar); so does the script, so a cell untouched for 2^23
 * windows reads as "time went backwards" on both. */
Test(redis_kinds, differential_window_index_wraparound)
{
	struct redis_harness_server srv = server_start();
	struct sluice_redis_options o = ropts(srv.port, SLUICE_REDIS_CALLER_CLOCK);
	struct sluice_redis *r = connect_to(&o);
	struct sluice_limit l[2] = { counter(3, 1000), calendar(2, 1000) };
	struct sluice_limiter *lim = NULL;
	cr_assert_eq(sluice_limiter_create(&lim, l, 2, NULL), SLUICE_OK);
	uint64_t times[] = { 5000, 5000, 5000 + (1ull << 23) * 1000, 5000 + (1ull << 24) * 1000,
			     5000 + (1ull << 24) * 1000 + 999, 5000 + (1ull << 32) * 1000,
			     5000 + (1ull << 32) * 1000 + 1, 5000 + (1ull << 33) * 1000 };
	for (int i = 0; i < (int)(sizeof times / sizeof times[0]); i++) {
		struct sluice_decision a, b;
		cr_assert_eq(sluice_limiter_admit(lim, "w", 1, 1, times[i], &a), SLUICE_OK);
		cr_assert_eq(sluice_redis_admit(r, "w", 1, l, 2, 1, times[i], &b), SLUICE_OK);
		assert_same(&a, &b, i);
	}
	sluice_redis_destroy(r);
	sluice_limiter_destroy(lim);
	server_stop(&srv);
}

/* Several scopes of mixed kinds in one request, random subsets and orders. */
Test(redis_kinds, differential_multi_scope_mixed_kinds)
{
	struct redis_harness_server srv = server_start();
	struct sluice_redis_options o = ropts(srv.port, SLUICE_REDIS_CALLER_CLOCK);
	struct sluice_redis *r = connect_to(&o);
	struct sluice_limit ws[2] = { calendar(40, MIN), gcra(10, SEC, 10) };
	struct sluice_limit tok[2] = { counter(5, SEC), gcra(4, SEC, 3) };
	struct sluice_limit route[1] = { counter(3, 500 * MS) };
	const char *names[3] = { "ws", "ws:tok", "ws:route" };
	const struct sluice_limit *pol[3] = { ws, tok, route };
	size_t npol[3] = { 2, 2, 1 };
	struct sluice_limiter *lim[3];
	for (int i = 0; i < 3; i++)
		cr_assert_eq(sluice_limiter_create(&lim[i], pol[i], npol[i], NULL), SLUICE_OK);
	uint64_t now = UNIX_NOW;

	for (int step = 0; step < 400; step++) {
		int perm[3] = { 0, 1, 2 };
		for (int i = 2; i > 0; i--) {
			int j = (int)(rnd() % (uint64_t)(i + 1)), t = perm[i];
			perm[i] = perm[j];
			perm[j] = t;
		}
		size_t n = 1 + rnd() % 3;
		struct sluice_redis_scope sc[3];
		struct sluice_limiter *ml[3];
		const char *mk[3];
		size_t order[3];
		uint32_t base[3], flat = 0;
		for (size_t s = 0; s < n; s++) {
			int id = perm[s];
			sc[s] = (struct sluice_redis_scope){ names[id], strlen(names[id]), pol[id], npol[id] };
			ml[s] = lim[id];
			mk[s] = names[id];
			order[s] = s;
			base[s] = flat;
			flat += (uint32_t)npol[id];
		}
		uint64_t cost = rnd() % 3;
		struct sluice_decision a, b;
		model_admit(ml, mk, order, base, n, cost, now, &a);
		cr_assert_eq(sluice_redis_admit_scopes(r, sc, n, cost, now, &b), SLUICE_OK);
		assert_same(&a, &b, step);
		now = step_time(now, 150 * MS, 5 * SEC);
	}
	cr_expect_eq(rstats(r).degraded, 0);
	sluice_redis_destroy(r);
	for (int i = 0; i < 3; i++)
		sluice_limiter_destroy(lim[i]);
	server_stop(&srv);
}

Test(redis_kinds, denied_by_a_window_consumes_nothing_elsewhere)
{
	struct redis_harness_server srv = server_start();
	struct sluice_redis_options o = ropts(srv.port, SLUICE_REDIS_CALLER_CLOCK);
	struct sluice_redis *r = connect_to(&o);
	struct sluice_limit a[2] = { gcra(100, SEC, 100), counter(100, MIN) };
	struct sluice_limit b[1] = { calendar(2, SLUICE_DAY_NS) };
	struct sluice_redis_scope sc[2] = { { "a", 1, a, 2 }, { "b", 1, b, 1 } };
	struct sluice_decision d;
	uint64_t now = UNIX_NOW;

	for (int i = 0; i < 2; i++) {
		cr_assert_eq(sluice_redis_admit_scopes(r, sc, 2, 1, now, &d), SLUICE_OK);
		cr_expect(d.allowed);
	}
	redisReply *before = side(srv.port, "HGETALL", "sluice:a");
	cr_assert_eq(before->type, REDIS_REPLY_ARRAY);
	cr_assert_eq(before->elements, 4);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(sluice_redis_admit_scopes(r, sc, 2, 1, now, &d), SLUICE_OK);
		cr_expect(!d.allowed);
		cr_expect_eq(d.reason, SLUICE_REASON_QUOTA);
		cr_expect_eq(d.limit_index, 2);
		cr_expect_eq(d.retry_after_ns, SLUICE_DAY_NS - now % SLUICE_DAY_NS, "until UTC midnight");
	}
	redisReply *after = side(srv.port, "HGETALL", "sluice:a");
	cr_assert_eq(after->elements, before->elements);
	for (size_t i = 0; i < after->elements; i++)
		cr_expect_str_eq(after->element[i]->str, before->element[i]->str, "field %zu unchanged", i);
	freeReplyObject(before);
	freeReplyObject(after);
	/* The calendar's key lives until its window ends (plus the grace):
	 * at most a day and 600 s. */
	long long pttl = side_int(srv.port, "PTTL", "sluice:b");
	cr_expect(pttl > 600000 && pttl <= (long long)((SLUICE_DAY_NS + 600 * SEC) / MS) + 1, "pttl %lld", pttl);
	sluice_redis_destroy(r);
	server_stop(&srv);
}

/* With the server's clock the script splits TIME into windows itself. */
Test(redis_kinds, server_time_windows)
{
	struct redis_harness_server srv = server_start();
	struct sluice_redis_options o = ropts(srv.port, 0);
	struct sluice_redis *r = connect_to(&o);
	struct sluice_limit l[2] = { calendar(3, SLUICE_HOUR_NS), counter(5, MIN) };
	struct sluice_decision d;
	uint64_t t0 = sluice_realtime_ns();

	for (int i = 0; i < 3; i++) {
		cr_assert_eq(sluice_redis_admit(r, "s", 1, l, 2, 1, 0, &d), SLUICE_OK);
		cr_expect(d.allowed && !d.degraded);
		cr_expect_eq(d.limit_index, 0);
		cr_expect_eq(d.remaining, 2 - (uint64_t)i);
	}
	uint64_t t1 = sluice_realtime_ns();
	cr_assert_eq(sluice_redis_admit(r, "s", 1, l, 2, 1, 0, &d), SLUICE_OK);
	cr_expect(!d.allowed && !d.degraded);
	cr_expect_eq(d.reason, SLUICE_REASON_QUOTA);
	/* The end of this UTC hour, seen from the server's clock (same host). */
	uint64_t lo = SLUICE_HOUR_NS - t1 % SLUICE_HOUR_NS - 50 * MS;
	uint64_t hi = SLUICE_HOUR_NS - t0 % SLUICE_HOUR_NS + 50 * MS;
	if (t1 % SLUICE_HOUR_NS > t0 % SLUICE_HOUR_NS) /* not across an hour */
		cr_expect(d.retry_after_ns >= lo && d.retry_after_ns <= hi, "retry %llu",
			  (unsigned long long)d.retry_after_ns);
	/* A window that is not whole microseconds cannot be cut from TIME. */
	struct sluice_limit odd = counter(5, SEC + 1);
	cr_expect_eq(sluice_redis_admit(r, "s", 1, &odd, 1, 1, 0, &d), SLUICE_ERANGE);
	sluice_redis_destroy(r);
	server_stop(&srv);
}

Test(redis_kinds, validation_of_kinds)
{
	struct sluice_redis_options o = ropts(1, SLUICE_REDIS_CALLER_CLOCK); /* refused port */
	struct sluice_redis *r = connect_to(&o);
	struct sluice_decision d;

	struct sluice_limit log;
	memset(&log, 0, sizeof log);
	log.kind = SLUICE_LIMIT_SLIDING_LOG;
	cr_assert_eq(sluice_window_log_config_init(&log.log, 10, SEC), SLUICE_OK);
	struct sluice_limit badlog = log;
	badlog.log.capacity = 3; /* not what sluice_window_log_config_init() makes */
	cr_expect_eq(sluice_redis_admit(r, "k", 1, &badlog, 1, 1, 0, &d), SLUICE_EINVAL);
	struct sluice_limit big = counter(5, (1ull << 52) + 1), edge = calendar(5, 1ull << 52);
	cr_expect_eq(sluice_redis_admit(r, "k", 1, &big, 1, 1, 0, &d), SLUICE_ERANGE);
	cr_expect_eq(sluice_redis_admit(r, "k", 1, &edge, 1, 0, 0, &d), SLUICE_OK);
	struct sluice_limit bad = counter(5, SEC);
	bad.counter.div_magic++;
	cr_expect_eq(sluice_redis_admit(r, "k", 1, &bad, 1, 1, 0, &d), SLUICE_EINVAL);
	struct sluice_limit two[2] = { slots(2, 0), slots(3, 0) };
	sluice_slot_handle h[1];
	struct sluice_redis_scope sc = { "k", 1, two, 2 };
	cr_expect_eq(sluice_redis_acquire_scopes(r, &sc, 1, 1, 0, &d, h), SLUICE_EINVAL, "two slots limits");
	struct sluice_limit one = slots(2, 0);
	sc.limits = &one;
	sc.nlimits = 1;
	cr_expect_eq(sluice_redis_admit_scopes(r, &sc, 1, 1, 0, &d), SLUICE_EINVAL, "slots are acquired");
	cr_expect_eq(sluice_redis_acquire_scopes(r, &sc, 1, 1, 0, &d, NULL), SLUICE_EINVAL);
	struct sluice_limit lease = slots(2, (1ull << 52) + 1);
	sc.limits = &lease;
	cr_expect_eq(sluice_redis_acquire_scopes(r, &sc, 1, 1, 0, &d, h), SLUICE_ERANGE);
	cr_expect_eq(sluice_redis_release(r, NULL, 1), SLUICE_EINVAL);
	struct sluice_limit g = gcra(1, SEC, 1);
	sc.limits = &g;
	cr_expect_eq(sluice_redis_release(r, &sc, 1), SLUICE_EINVAL, "no slots limit");
	sc.limits = &one;
	/* A malformed handle is ESTALE only for a key that exists (as
	 * sluice_limiter_release(): ENOTFOUND first), so it asks the server
	 * too (tests/test_redis_parity.c). */
	cr_expect_eq(sluice_redis_release(r, &sc, SLUICE_SLOT_NONE), SLUICE_EBACKEND);
	cr_expect_eq(sluice_redis_release(r, &sc, 1ull << 12 | 2), SLUICE_EBACKEND, "index past N");
	cr_expect_eq(sluice_redis_release(r, &sc, 1ull << 12), SLUICE_EBACKEND, "server down");
	sluice_redis_destroy(r);
}

/* ---- slots ---- */

/* Acquire, release, double release, foreign handles, lease take-over, and
 * peeks, against sluice_limiter_acquire()/release(). */
Test(redis_kinds, differential_slots_acquire_release)
{
	struct redis_harness_server srv = server_start();
	struct sluice_redis_options o = ropts(srv.port, SLUICE_REDIS_CALLER_CLOCK);
	struct sluice_redis *r = connect_to(&o);
	struct sluice_limit p0[2] = { slots(3, 0), gcra(10, SEC, 5) };
	struct sluice_limit p1[2] = { slots(2, 2 * SEC), calendar(30, MIN) };
	const struct sluice_limit *pol[2] = { p0, p1 };
	struct sluice_limiter *lim[2];
	for (int i = 0; i < 2; i++)
		cr_assert_eq(sluice_limiter_create(&lim[i], pol[i], 2, NULL), SLUICE_OK);
	const char *keys[2] = { "a", "b" };
	struct pair {
		int key;
		sluice_slot_handle mine, theirs;
		bool released;
	} held[64];
	size_t nheld = 0;
	uint64_t now = UNIX_NOW;
	int acquired = 0, full = 0, releases = 0, doubles = 0, stale = 0;

	for (int step = 0; step < 500; step++) {
		int op = (int)(rnd() % 8);
		if (op < 4 || nheld == 0) {
			int k = (int)(rnd() % 2);
			uint64_t cost = rnd() % 3;
			struct sluice_redis_scope sc = { keys[k], 1, pol[k], 2 };
			struct sluice_decision a, b;
			sluice_slot_handle ha, hb;
			cr_assert_eq(sluice_limiter_acquire(lim[k], keys[k], 1, cost, now, &a, &ha), SLUICE_OK);
			cr_assert_eq(sluice_redis_acquire_scopes(r, &sc, 1, cost, now, &b, &hb), SLUICE_OK);
			assert_same(&a, &b, step);
			cr_assert_eq(ha != SLUICE_SLOT_NONE, hb != SLUICE_SLOT_NONE, "step %d: handles", step);
			if (ha != SLUICE_SLOT_NONE) {
				acquired++;
				if (nheld < 64)
					held[nheld++] = (struct pair){ k, ha, hb, false };
			}
			full += cost > 0 && a.reason == SLUICE_REASON_CONCURRENCY;
		} else {
			struct pair *h = &held[rnd() % nheld];
			int k = h->key;
			if (rnd() % 8 == 0)
				k = 1 - k; /* a handle of the other key */
			struct sluice_redis_scope sc = { keys[k], 1, pol[k], 2 };
			int ea = sluice_limiter_release(lim[k], keys[k], 1, h->mine);
			int eb = sluice_redis_release(r, &sc, h->theirs);
			cr_assert_eq(ea, eb, "step %d: release %d vs %d", step, ea, eb);
			releases += ea == SLUICE_OK;
			doubles += ea == SLUICE_EDOUBLE;
			stale += ea == SLUICE_ESTALE;
			if (ea == SLUICE_OK)
				h->released = true;
		}
		now = step_time(now, 200 * MS, 3 * SEC);
	}
	cr_expect_gt(acquired, 50);
	cr_expect_gt(full, 10, "slots ran full (%d)", full);
	cr_expect_gt(releases, 20);
	cr_expect_gt(doubles, 5, "double releases (%d)", doubles);
	cr_expect_gt(stale, 5, "foreign or taken-over handles (%d)", stale);
	/* An unknown key. */
	struct sluice_redis_scope none = { "zz", 2, p0, 2 };
	cr_expect_eq(sluice_redis_release(r, &none, held[0].theirs), SLUICE_ENOTFOUND);
	cr_expect_eq(sluice_limiter_release(lim[0], "zz", 2, held[0].mine), SLUICE_ENOTFOUND);
	cr_expect_eq(rstats(r).degraded, 0);
	sluice_redis_destroy(r);
	for (int i = 0; i < 2; i++)
		sluice_limiter_destroy(lim[i]);
	server_stop(&srv);
}

/* A lease held past its TTL is taken over by an acquirer that finds the
 * limit full; its old handle is then stale, as in process. */
Test(redis_kinds, expired_lease_is_taken_over_like_the_limiter)
{
	struct redis_harness_server srv = server_start();
	struct sluice_redis_options o = ropts(srv.port, SLUICE_REDIS_CALLER_CLOCK);
	struct sluice_redis *r = connect_to(&o);
	struct sluice_limit l[2] = { gcra(100, SEC, 100), slots(1, SEC) };
	struct sluice_limiter *lim = NULL;
	cr_assert_eq(sluice_limiter_create(&lim, l, 2, NULL), SLUICE_OK);
	struct sluice_redis_scope sc = { "L", 1, l, 2 };
	uint64_t t[4] = { UNIX_NOW, UNIX_NOW + SEC / 2, UNIX_NOW + SEC, UNIX_NOW + SEC + 1 };
	sluice_slot_handle ha[4], hb[4];

	for (int i = 0; i < 4; i++) {
		struct sluice_decision a, b;
		cr_assert_eq(sluice_limiter_acquire(lim, "L", 1, 1, t[i], &a, &ha[i]), SLUICE_OK);
		cr_assert_eq(sluice_redis_acquire_scopes(r, &sc, 1, 1, t[i], &b, &hb[i]), SLUICE_OK);
		assert_same(&a, &b, i);
	}
	cr_expect_neq(hb[0], SLUICE_SLOT_NONE);
	cr_expect_eq(hb[1], SLUICE_SLOT_NONE, "held, lease not over");
	cr_expect_neq(hb[2], SLUICE_SLOT_NONE, "lease over: taken over");
	cr_expect_eq(hb[3], SLUICE_SLOT_NONE);
	cr_expect_eq(sluice_limiter_release(lim, "L", 1, ha[0]), SLUICE_ESTALE);
	cr_expect_eq(sluice_redis_release(r, &sc, hb[0]), SLUICE_ESTALE, "its lease was taken over");
	cr_expect_eq(sluice_redis_release(r, &sc, hb[2]), SLUICE_OK);
	cr_expect_eq(sluice_redis_release(r, &sc, hb[2]), SLUICE_EDOUBLE);
	long long pttl = side_int(srv.port, "PTTL", "sluice:L");
	cr_expect(pttl > 0 && pttl <= 602000, "a key with leases expires: %lld", pttl);
	sluice_redis_destroy(r);
	sluice_limiter_destroy(lim);
	server_stop(&srv);
}

/* Slots in two scopes of one request: one handle each, all-or-nothing. */
Test(redis_kinds, slots_in_several_scopes_all_or_nothing)
{
	struct redis_harness_server srv = server_start();
	struct sluice_redis_options o = ropts(srv.port, SLUICE_REDIS_CALLER_CLOCK);
	struct sluice_redis *r = connect_to(&o);
	struct sluice_limit ws[1] = { slots(1, 0) };
	struct sluice_limit tok[2] = { gcra(100, SEC, 100), slots(5, 0) };
	struct sluice_limit plain[1] = { gcra(100, SEC, 100) };
	struct sluice_redis_scope sc[3] = { { "tok", 3, tok, 2 }, { "plain", 5, plain, 1 }, { "ws", 2, ws, 1 } };
	struct sluice_decision d;
	sluice_slot_handle h[3], h2[3];
	uint64_t now = UNIX_NOW;

	cr_assert_eq(sluice_redis_acquire_scopes(r, sc, 3, 1, now, &d, h), SLUICE_OK);
	cr_expect(d.allowed);
	cr_expect_neq(h[0], SLUICE_SLOT_NONE);
	cr_expect_eq(h[1], SLUICE_SLOT_NONE, "no slots in this scope");
	cr_expect_neq(h[2], SLUICE_SLOT_NONE);
	cr_expect_eq(d.limit_index, 3, "ws's single slot, now 0 remaining, governs");
	cr_expect_eq(d.remaining, 0);
	/* ws is full: denied, and tok's slot is not taken. */
	cr_assert_eq(sluice_redis_acquire_scopes(r, sc, 3, 1, now, &d, h2), SLUICE_OK);
	cr_expect(!d.allowed);
	cr_expect_eq(d.reason, SLUICE_REASON_CONCURRENCY);
	cr_expect_eq(d.limit_index, 3);
	cr_expect_eq(d.retry_after_ns, SLUICE_SLOTS_DEFAULT_RETRY_NS);
	for (int s = 0; s < 3; s++)
		cr_expect_eq(h2[s], SLUICE_SLOT_NONE);
	cr_assert_eq(sluice_redis_admit_scopes(r, sc, 2, 0, now, &d), SLUICE_OK);
	cr_expect_eq(d.limit_index, 1, "peek: tok's slots 4 of 5 free, gcra 98 remaining");
	cr_expect_eq(d.remaining, 4);
	/* Peek of the full ws: an allowed decision (reason NONE, no
	 * retry-after: common.h) with nothing remaining and the hint as
	 * reset, as the limiter's peek reads. */
	cr_assert_eq(sluice_redis_admit_scopes(r, &sc[2], 1, 0, now, &d), SLUICE_OK);
	cr_expect(d.allowed);
	cr_expect_eq(d.reason, SLUICE_REASON_NONE);
	cr_expect_eq(d.retry_after_ns, 0);
	cr_expect_eq(d.reset_ns, SLUICE_SLOTS_DEFAULT_RETRY_NS);
	cr_expect_eq(d.remaining, 0);
	/* Without a lease the key holding a slot does not expire. */
	cr_expect_eq(side_int(srv.port, "PTTL", "sluice:ws"), -1);
	cr_expect_eq(sluice_redis_release(r, &sc[2], h[2]), SLUICE_OK);
	cr_expect_eq(sluice_redis_release(r, &sc[2], h[2]), SLUICE_EDOUBLE);
	cr_expect_eq(sluice_redis_release(r, &sc[2], h[0]), SLUICE_ESTALE, "tok's handle");
	long long pttl = side_int(srv.port, "PTTL", "sluice:ws");
	cr_expect(pttl > 0 && pttl <= 601000, "released: expires (grace 600 s): %lld", pttl);
	cr_expect_eq(side_int(srv.port, "PTTL", "sluice:tok"), -1, "tok still holds a slot");
	cr_expect_eq(sluice_redis_release(r, &sc[0], h[0]), SLUICE_OK);
	pttl = side_int(srv.port, "PTTL", "sluice:tok");
	cr_expect(pttl > 0 && pttl <= 601000, "pttl %lld", pttl);
	cr_assert_eq(sluice_redis_acquire_scopes(r, sc, 3, 1, now, &d, h2), SLUICE_OK);
	cr_expect(d.allowed);
	sluice_redis_destroy(r);
	server_stop(&srv);
}

/* ---- several clients at once: conservation laws ---- */

struct slot_worker {
	int port;
	const struct sluice_limit *limits;
	uint64_t until_ns;
	_Atomic int *holders;
	_Atomic int *max_holders;
	int acquired, denied, errors;
};

static void *slot_worker_run(void *arg)
{
	struct slot_worker *w = arg;
	struct sluice_redis_options o = ropts(w->port, 0);
	struct sluice_redis *r = NULL;
	if (sluice_redis_create(&r, &o) != SLUICE_OK)
		return NULL;
	struct sluice_redis_scope sc = { "hot", 3, w->limits, 2 };
	while (sluice_monotonic_ns() < w->until_ns) {
		struct sluice_decision d;
		sluice_slot_handle h;
		if (sluice_redis_acquire_scopes(r, &sc, 1, 1, 0, &d, &h) != SLUICE_OK || d.degraded) {
			w->errors++;
			continue;
		}
		if (!d.allowed) {
			w->denied++;
			continue;
		}
		w->acquired++;
		/* relaxed: the count is only compared with its own maximum; the
		 * slot's release/acquire order comes from Redis, and a holder
		 * decrements before it releases, so the count is an upper bound
		 * of the slots really held. */
		int now = atomic_fetch_add_explicit(w->holders, 1, memory_order_relaxed) + 1; /* relaxed: why above */
		int seen = atomic_load_explicit(w->max_holders, memory_order_relaxed); /* relaxed: a maximum */
		while (now > seen &&
		       !atomic_compare_exchange_weak_explicit(w->max_holders, &seen, now, /* relaxed: a maximum */
							      memory_order_relaxed, memory_order_relaxed))
			;
		usleep(500); /* hold it a while: the others meet a full limit */
		atomic_fetch_sub_explicit(w->holders, 1, memory_order_relaxed); /* relaxed: as above */
		if (sluice_redis_release(r, &sc, h) != SLUICE_OK)
			w->errors++;
	}
	sluice_redis_destroy(r);
	return NULL;
}

/* Four clients, each with its own connection, take and give back slots of
 * one key: never more holders than slots, every release accepted. */
Test(redis_kinds, concurrent_clients_never_exceed_the_slots, .timeout = 30)
{
	struct redis_harness_server srv = server_start();
	struct sluice_limit l[2] = { slots(2, 0), gcra(1000000, SEC, 1000000) };
	_Atomic int holders = 0, max_holders = 0;
	struct slot_worker w[4];
	pthread_t th[4];
	uint64_t until = sluice_monotonic_ns() + stress_ns(500);

	for (int i = 0; i < 4; i++) {
		w[i] = (struct slot_worker){ srv.port, l, until, &holders, &max_holders, 0, 0, 0 };
		cr_assert_eq(pthread_create(&th[i], NULL, slot_worker_run, &w[i]), 0);
	}
	int acquired = 0, denied = 0, errors = 0;
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		acquired += w[i].acquired;
		denied += w[i].denied;
		errors += w[i].errors;
	}
	cr_expect_eq(errors, 0);
	cr_expect_gt(acquired, 50, "acquired %d", acquired);
	cr_expect_gt(denied, 0, "the slots ran full (%d denials)", denied);
	cr_expect_leq(atomic_load(&max_holders), 2, "at most 2 holders at once");
	/* Every slot given back: the key may now expire. */
	redisReply *rep = side(srv.port, "HGETALL", "sluice:hot");
	cr_assert_eq(rep->type, REDIS_REPLY_ARRAY);
	for (size_t i = 0; i + 1 < rep->elements; i += 2)
		if (rep->element[i]->str[0] == 's')
			cr_expect(strncmp(strchr(rep->element[i + 1]->str, ',') + 1, "0;", 2) == 0,
				  "in_use 0: %s", rep->element[i + 1]->str);
	freeReplyObject(rep);
	server_stop(&srv);
}


/* ---- the deny cache on calendar limits (docs/redis.md, "Deny cache") ---- */

/*
 * The same random requests (GCRA + calendar policies, several keys, costs
 * 0 to 4 and above the calendar's limit, steps back in time, windows that
 * turn) through a handle with the deny cache, one without it (another key
 * prefix on the same server) and the in-process keyed limiter: every
 * decision identical, field for field, and the cache answers a good share
 * of the denials without a round trip. One client per key, so the cached
 * state is the server's exactly; `base` picks Unix time or small times.
 */
static void differential_calendar_cache(uint64_t base, int steps)
{
	struct redis_harness_server srv = server_start();
	struct sluice_redis_options oc = ropts(srv.port, SLUICE_REDIS_CALLER_CLOCK);
	oc.deny_cache_slots = 64;
	oc.key_prefix = "c:";
	struct sluice_redis_options on = ropts(srv.port, SLUICE_REDIS_CALLER_CLOCK);
	on.key_prefix = "n:";
	struct sluice_redis *rc = connect_to(&oc), *rn = connect_to(&on);
	/* Policy 0: a calendar alone; 1: GCRA then a calendar (the GCRA's
	 * denials and the calendar's alternate); 2: two calendars. */
	struct sluice_limit p0[1] = { calendar(6, 3 * SEC + 7) };
	struct sluice_limit p1[2] = { calendar(9, 5 * SEC), gcra(4, SEC, 3) };
	struct sluice_limit p2[2] = { calendar(20, 60 * SEC), calendar(4, 700 * MS + 3) };
	const struct sluice_limit *pol[3] = { p0, p1, p2 };
	size_t npol[3] = { 1, 2, 2 };
	struct sluice_limiter *lim[3];
	for (int i = 0; i < 3; i++)
		cr_assert_eq(sluice_limiter_create(&lim[i], pol[i], npol[i], NULL), SLUICE_OK);
	const char *keys[3] = { "alpha", "beta", "" };
	uint64_t now = base;
	int denied = 0;

	for (int step = 0; step < steps; step++) {
		/* A key keeps its policy (a changed limit is another field:
		 * deny_cache_calendar_server_time), so policy p has key p. */
		int p = (int)(rnd() % 3), k = p;
		uint64_t cost = rnd() % 5;
		if (rnd() % 20 == 0)
			cost = 10; /* past every limit of policy 0 and 1: NEVER */
		now = step_time(now, 200 * MS, 8 * SEC);
		struct sluice_decision a, b, c;
		cr_assert_eq(sluice_limiter_admit(lim[p], keys[k], strlen(keys[k]), cost, now, &a), SLUICE_OK);
		cr_assert_eq(sluice_redis_admit(rc, keys[k], strlen(keys[k]), pol[p], npol[p], cost, now, &b),
			     SLUICE_OK);
		cr_assert_eq(sluice_redis_admit(rn, keys[k], strlen(keys[k]), pol[p], npol[p], cost, now, &c),
			     SLUICE_OK);
		assert_same(&a, &c, step);
		assert_same(&a, &b, step);
		denied += cost > 0 && !a.allowed;
	}
	struct sluice_redis_stats sc = rstats(rc), sn = rstats(rn);
	cr_expect_gt(denied, steps / 5, "the sequence exercises denials (%d)", denied);
	cr_expect_gt(sc.cache_hits, (uint64_t)denied / 4, "the cache answered %llu of %d denials",
		     (unsigned long long)sc.cache_hits, denied);
	cr_expect_eq(sn.cache_hits, 0);
	cr_expect_eq(sc.round_trips + sc.cache_hits, sn.round_trips, "one round trip saved per hit");
	cr_expect_eq(sc.denied, sn.denied);
	cr_expect_eq(sc.admitted, sn.admitted);
	cr_expect_eq(sc.degraded + sn.degraded, 0);
	for (int i = 0; i < 3; i++)
		sluice_limiter_destroy(lim[i]);
	sluice_redis_destroy(rc);
	sluice_redis_destroy(rn);
	server_stop(&srv);
}

Test(redis_kinds, deny_cache_calendar_differential_unix_time)
{
	differential_calendar_cache(UNIX_NOW, 600);
}

Test(redis_kinds, deny_cache_calendar_differential_small_times)
{
	differential_calendar_cache(3 * SEC, 600);
}

/*
 * Server time: three admissions fill an hourly calendar window; the fourth
 * request is denied by the server, the next ten by the cache alone (no
 * round trip), with the reason and a retry-after that ends at the same
 * hour boundary (the cache's estimate of the server's time is never early,
 * so its retry is never longer than the server's). A policy with a sliding
 * counter beside the calendar is never cached; a changed calendar limit
 * (another field, as after a reload) is not answered from the old entry.
 */
Test(redis_kinds, deny_cache_calendar_server_time)
{
	struct redis_harness_server srv = server_start();
	struct sluice_redis_options o = ropts(srv.port, 0);
	o.deny_cache_slots = 16;
	struct sluice_redis *r = connect_to(&o);
	struct sluice_limit l = calendar(3, SLUICE_HOUR_NS);
	struct sluice_decision d, server;
	uint64_t t0 = sluice_realtime_ns();

	for (int i = 0; i < 3; i++) {
		cr_assert_eq(sluice_redis_admit(r, "h", 1, &l, 1, 1, 0, &d), SLUICE_OK);
		cr_assert(d.allowed && !d.degraded);
	}
	cr_assert_eq(sluice_redis_admit(r, "h", 1, &l, 1, 1, 0, &server), SLUICE_OK);
	cr_assert(!server.allowed && !server.degraded && server.reason == SLUICE_REASON_QUOTA);
	struct sluice_redis_stats s0 = rstats(r);
	uint64_t prev = server.retry_after_ns;
	for (int i = 0; i < 10; i++) {
		usleep(2000);
		cr_assert_eq(sluice_redis_admit(r, "h", 1, &l, 1, 1 + (uint64_t)i % 2, 0, &d), SLUICE_OK);
		cr_expect(!d.allowed && !d.degraded);
		cr_expect_eq(d.reason, SLUICE_REASON_QUOTA);
		cr_expect_eq(d.limit, 3);
		cr_expect_eq(d.remaining, 0);
		cr_expect_eq(d.reset_ns, d.retry_after_ns);
		cr_expect_leq(d.retry_after_ns, prev, "the retry shrinks as time passes");
		prev = d.retry_after_ns;
	}
	struct sluice_redis_stats s = rstats(r);
	cr_expect_eq(s.round_trips, s0.round_trips, "ten local denials");
	cr_expect_eq(s.cache_hits - s0.cache_hits, 10);
	cr_expect_eq(s.denied - s0.denied, 10);
	uint64_t t1 = sluice_realtime_ns();
	if (t1 % SLUICE_HOUR_NS > t0 % SLUICE_HOUR_NS) /* not across an hour */
		cr_expect_geq(prev + (t1 - t0) + 50 * MS, SLUICE_HOUR_NS - t0 % SLUICE_HOUR_NS,
			      "retry %llu: the end of this UTC hour", (unsigned long long)prev);

	/* A sliding counter beside it: not cached, every request a round trip. */
	struct sluice_limit mixed[2] = { calendar(3, SLUICE_HOUR_NS), counter(100, MIN) };
	for (int i = 0; i < 5; i++)
		cr_assert_eq(sluice_redis_admit(r, "m", 1, mixed, 2, 1, 0, &d), SLUICE_OK);
	cr_expect(!d.allowed && d.reason == SLUICE_REASON_QUOTA);
	struct sluice_redis_stats s2 = rstats(r);
	cr_expect_eq(s2.cache_hits, s.cache_hits);
	cr_expect_eq(s2.round_trips - s.round_trips, 5);

	/* The limit raised to 5 on the same key: another field, and the
	 * entry of the old limit does not answer for it. */
	struct sluice_limit raised = calendar(5, SLUICE_HOUR_NS);
	cr_assert_eq(sluice_redis_admit(r, "h", 1, &raised, 1, 1, 0, &d), SLUICE_OK);
	cr_expect(d.allowed && !d.degraded);
	cr_expect_eq(rstats(r).cache_hits, s2.cache_hits);
	sluice_redis_destroy(r);
	server_stop(&srv);
}

/*
 * Caller clock: a window filled at its start is denied locally up to its
 * last nanosecond, and from its end on the server is asked again (and
 * admits). Another client's admissions in the same window only raise the
 * server's count: the cache never admits, so it cannot over-admit; and a
 * state it did not see (the other client filled a window we last saw with
 * room) is learnt by a round trip.
 */
Test(redis_kinds, deny_cache_calendar_window_boundaries)
{
	struct redis_harness_server srv = server_start();
	struct sluice_redis_options o = ropts(srv.port, SLUICE_REDIS_CALLER_CLOCK);
	o.deny_cache_slots = 16;
	struct sluice_redis *r = connect_to(&o);
	struct sluice_redis_options o2 = ropts(srv.port, SLUICE_REDIS_CALLER_CLOCK);
	struct sluice_redis *other = connect_to(&o2);
	struct sluice_limit l = calendar(2, 10 * SEC);
	struct sluice_decision d;
	uint64_t w = 1700000000ull * SEC; /* a multiple of 10 s: a window's start */

	for (int i = 0; i < 2; i++) {
		cr_assert_eq(sluice_redis_admit(r, "b", 1, &l, 1, 1, w + (uint64_t)i, &d), SLUICE_OK);
		cr_assert(d.allowed);
	}
	struct sluice_redis_stats s0 = rstats(r);
	uint64_t at[3] = { w + 5, w + 5 * SEC, w + 10 * SEC - 1 };
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(sluice_redis_admit(r, "b", 1, &l, 1, 1, at[i], &d), SLUICE_OK);
		cr_expect(!d.allowed && d.reason == SLUICE_REASON_QUOTA);
		cr_expect_eq(d.retry_after_ns, w + 10 * SEC - at[i]);
	}
	cr_expect_eq(rstats(r).round_trips, s0.round_trips, "three local denials");
	cr_expect_eq(rstats(r).cache_hits - s0.cache_hits, 3);
	/* The next window: a round trip, admitted. */
	cr_assert_eq(sluice_redis_admit(r, "b", 1, &l, 1, 1, w + 10 * SEC, &d), SLUICE_OK);
	cr_expect(d.allowed);
	cr_expect_eq(d.remaining, 1);
	cr_expect_eq(rstats(r).round_trips, s0.round_trips + 1);
	/* Another client spends the rest of this window: our entry says 1 left,
	 * so we ask the server, which denies, and we learn the count. */
	cr_assert_eq(sluice_redis_admit(other, "b", 1, &l, 1, 1, w + 11 * SEC, &d), SLUICE_OK);
	cr_expect(d.allowed);
	cr_assert_eq(sluice_redis_admit(r, "b", 1, &l, 1, 1, w + 12 * SEC, &d), SLUICE_OK);
	cr_expect(!d.allowed, "the server's count, not ours");
	cr_expect_eq(rstats(r).round_trips, s0.round_trips + 2);
	cr_assert_eq(sluice_redis_admit(r, "b", 1, &l, 1, 1, w + 13 * SEC, &d), SLUICE_OK);
	cr_expect(!d.allowed);
	cr_expect_eq(rstats(r).round_trips, s0.round_trips + 2, "now known: local");
	/* Time going back into the previous window: the cell judges it in its
	 * own (later) window, as the server does; still a local denial. */
	cr_assert_eq(sluice_redis_admit(r, "b", 1, &l, 1, 1, w + 3 * SEC, &d), SLUICE_OK);
	cr_expect(!d.allowed);
	cr_expect_eq(d.retry_after_ns, 17 * SEC, "to the end of the cell's window");
	cr_expect_eq(rstats(r).round_trips, s0.round_trips + 2);
	sluice_redis_destroy(other);
	sluice_redis_destroy(r);
	server_stop(&srv);
}
