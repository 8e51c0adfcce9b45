/*
 * test_redis.c - the Redis backend (include/sluice/redis.h) against real
 * redis-server processes that each test starts on 127.0.0.1 at a free port
 * (and kills at the end). redis-server missing is a failure, not a skip:
 * `.ci/deps test` installs it.
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

#include "redis_server.h"
#include "redis_test_util.h"

/* ---- helpers ---- */

/*
 * The reference for multi-scope requests: plain GCRA cells composed the way
 * the keyed limiter composes limits (dry run on copies in order, first
 * denier governs; else commit all, least remaining governs).
 */
struct model {
	struct sluice_gcra cell[4][SLUICE_REDIS_MAX_LIMITS];
};

static void model_admit(struct model *m, const struct sluice_redis_scope *sc, const int *scope_id,
			size_t nscopes, uint64_t cost, uint64_t now, struct sluice_decision *out)
{
	struct sluice_decision d[SLUICE_REDIS_MAX_LIMITS];
	struct sluice_gcra copy[SLUICE_REDIS_MAX_LIMITS];
	size_t flat = 0;

	for (size_t s = 0; s < nscopes; s++) {
		for (size_t i = 0; i < sc[s].nlimits; i++, flat++) {
			copy[flat] = m->cell[scope_id[s]][i];
			if (!sluice_gcra_admit(&copy[flat], &sc[s].limits[i].rate, now, cost, &d[flat])) {
				*out = d[flat];
				out->limit_index = (uint32_t)flat;
				return;
			}
		}
	}
	flat = 0;
	for (size_t s = 0; s < nscopes; s++)
		for (size_t i = 0; i < sc[s].nlimits; i++, flat++)
			m->cell[scope_id[s]][i] = copy[flat];
	size_t best = 0;
	for (size_t j = 1; j < flat; j++)
		if (d[j].remaining < d[best].remaining ||
		    (d[j].remaining == d[best].remaining && d[j].reset_ns < d[best].reset_ns))
			best = j;
	*out = d[best];
	out->limit_index = (uint32_t)best;
}

/* ---- validation ---- */

Test(redis, create_validates_options)
{
	struct sluice_redis *r = (struct sluice_redis *)1;
	struct sluice_redis_options o = ropts(1, 0);

	cr_expect_eq(sluice_redis_create(NULL, &o), SLUICE_EINVAL);
	o.size = sizeof o - 1;
	cr_expect_eq(sluice_redis_create(&r, &o), SLUICE_EINVAL);
	cr_expect_null(r);
	o = ropts(1, 0);
	o.flags = 0x80;
	cr_expect_eq(sluice_redis_create(&r, &o), SLUICE_EINVAL);
	o = ropts(1, 0);
	o.fail_mode = 2;
	cr_expect_eq(sluice_redis_create(&r, &o), SLUICE_EINVAL);
	o = ropts(1, 0);
	o.port = 65536;
	cr_expect_eq(sluice_redis_create(&r, &o), SLUICE_EINVAL);
	o = ropts(1, 0);
	o.deny_cache_slots = 3;
	cr_expect_eq(sluice_redis_create(&r, &o), SLUICE_EINVAL);
	o = ropts(1, 0);
	o.backoff_min_ns = 2 * SEC;
	o.backoff_max_ns = SEC;
	cr_expect_eq(sluice_redis_create(&r, &o), SLUICE_EINVAL);
	o = ropts(1, 0);
	o.expiry_grace_ns = SLUICE_REDIS_MAX_TOLERANCE_NS / 2 + 1;
	cr_expect_eq(sluice_redis_create(&r, &o), SLUICE_EINVAL);
	sluice_redis_destroy(NULL);
}

Test(redis, admit_validates_arguments_before_sending)
{
	/* Port 1 on loopback: refused. Validation errors come first anyway. */
	struct sluice_redis_options o = ropts(1, SLUICE_REDIS_CALLER_CLOCK);
	struct sluice_redis *r = connect_to(&o);
	struct sluice_limit l = gcra(10, SEC, 10);
	struct sluice_decision d;

	cr_expect_eq(sluice_redis_admit(NULL, "k", 1, &l, 1, 1, 0, &d), SLUICE_EINVAL);
	cr_expect_eq(sluice_redis_admit(r, "k", 1, &l, 1, 1, 0, NULL), SLUICE_EINVAL);
	cr_expect_eq(sluice_redis_admit(r, NULL, 0, &l, 1, 1, 0, &d), SLUICE_EKEY);
	char big[SLUICE_LIMITER_MAX_KEY + 1] = { 0 };
	cr_expect_eq(sluice_redis_admit(r, big, sizeof big, &l, 1, 1, 0, &d), SLUICE_EKEY);
	cr_expect_eq(sluice_redis_admit(r, "k", 1, NULL, 1, 1, 0, &d), SLUICE_EINVAL);
	cr_expect_eq(sluice_redis_admit(r, "k", 1, &l, 0, 1, 0, &d), SLUICE_EINVAL);
	struct sluice_limit bad = l;
	bad.rate.interval_ns++;
	cr_expect_eq(sluice_redis_admit(r, "k", 1, &bad, 1, 1, 0, &d), SLUICE_EINVAL);
	bad = l;
	bad.kind = 7;
	cr_expect_eq(sluice_redis_admit(r, "k", 1, &bad, 1, 1, 0, &d), SLUICE_EINVAL);
	/* Bucket depth past 2^52 ns: outside the script's exact domain. */
	struct sluice_limit deep = gcra(1, (1ull << 52) + 1, 1);
	cr_expect_eq(sluice_redis_admit(r, "k", 1, &deep, 1, 1, 0, &d), SLUICE_ERANGE);
	struct sluice_limit edge = gcra(1, 1ull << 52, 1);
	cr_expect_eq(sluice_redis_admit(r, "k", 1, &edge, 1, 1, 0, &d), SLUICE_OK);
	struct sluice_limit many[SLUICE_REDIS_MAX_LIMITS + 1];
	for (size_t i = 0; i < SLUICE_REDIS_MAX_LIMITS + 1; i++)
		many[i] = l;
	cr_expect_eq(sluice_redis_admit(r, "k", 1, many, SLUICE_REDIS_MAX_LIMITS + 1, 1, 0, &d),
		     SLUICE_ETOOBIG);
	struct sluice_redis_scope sc[SLUICE_REDIS_MAX_SCOPES + 1];
	char keys[SLUICE_REDIS_MAX_SCOPES + 1][2];
	for (size_t i = 0; i < SLUICE_REDIS_MAX_SCOPES + 1; i++) {
		keys[i][0] = (char)('a' + i);
		sc[i] = (struct sluice_redis_scope){ keys[i], 1, &l, 1 };
	}
	cr_expect_eq(sluice_redis_admit_scopes(r, sc, SLUICE_REDIS_MAX_SCOPES + 1, 1, 0, &d),
		     SLUICE_ETOOBIG);
	cr_expect_eq(sluice_redis_admit_scopes(r, sc, 0, 1, 0, &d), SLUICE_EINVAL);
	sc[1].key = "a";
	cr_expect_eq(sluice_redis_admit_scopes(r, sc, 2, 1, 0, &d), SLUICE_EINVAL, "duplicate key");
	struct sluice_redis_request req = { sc, 1, 1 };
	struct sluice_redis_request reqs[2] = { req, { sc, 2, 1 } };
	struct sluice_decision ds[2];
	struct sluice_redis_stats before = rstats(r);
	cr_expect_eq(sluice_redis_admit_batch(r, reqs, 2, 0, ds), SLUICE_EINVAL);
	cr_expect_eq(rstats(r).round_trips, before.round_trips, "nothing sent on a batch error");
	cr_expect_eq(sluice_redis_admit_batch(r, NULL, 0, 0, NULL), SLUICE_OK);
	cr_expect_eq(sluice_redis_admit_batch(r, NULL, 1, 0, ds), SLUICE_EINVAL);
	struct sluice_redis_stats s;
	s.size = sizeof s - 1;
	cr_expect_eq(sluice_redis_stats(r, &s), SLUICE_EINVAL);
	cr_expect_eq(sluice_redis_stats(NULL, &s), SLUICE_EINVAL);
	sluice_redis_destroy(r);
}

/* ---- same decisions as in process ---- */

/* One key, three limits, against the keyed limiter: random costs (0 = peek,
 * past burst = never), random time steps including backwards ones, times
 * around 1.7e18 (Unix ns) and near 2^64. */
static void differential_limiter(uint64_t base, int steps)
{
	struct redis_harness_server srv = server_start();
	struct sluice_redis_options o = ropts(srv.port, SLUICE_REDIS_CALLER_CLOCK);
	struct sluice_redis *r = connect_to(&o);
	struct sluice_limit l[3] = { gcra(5, SEC, 5), gcra(20, MIN, 8), gcra(3, 7 * SEC + 3, 2) };
	struct sluice_limiter *lim = NULL;
	cr_assert_eq(sluice_limiter_create(&lim, l, 3, NULL), SLUICE_OK);
	const char *keys[3] = { "alpha", "beta", "" };
	uint64_t now = base;

	for (int step = 0; step < steps; step++) {
		const char *k = keys[rnd() % 3];
		uint64_t cost = rnd() % 4;
		if (rnd() % 16 == 0)
			cost = 9; /* past every burst */
		uint64_t r1 = rnd() % 8;
		if (r1 < 5)
			now += rnd() % (400 * MS);
		else if (r1 == 5)
			now -= rnd() % (2 * SEC); /* a stale clock */
		else if (r1 == 6)
			now += rnd() % (30 * SEC);
		struct sluice_decision a, b;
		cr_assert_eq(sluice_limiter_admit(lim, k, strlen(k), cost, now, &a), SLUICE_OK);
		cr_assert_eq(sluice_redis_admit(r, k, strlen(k), l, 3, cost, now, &b), SLUICE_OK);
		assert_same(&a, &b, step);
	}
	struct sluice_redis_stats s = rstats(r);
	cr_expect_eq(s.degraded, 0);
	cr_expect_eq(s.round_trips, (uint64_t)steps + 1, "one round trip per call, plus SCRIPT LOAD");
	sluice_redis_destroy(r);
	sluice_limiter_destroy(lim);
	server_stop(&srv);
}

Test(redis, differential_against_keyed_limiter_unix_time)
{
	differential_limiter(1700000000ull * SEC + 123456789, 600);
}

Test(redis, differential_against_keyed_limiter_small_times)
{
	differential_limiter(5 * SEC, 300);
}

Test(redis, differential_near_the_end_of_the_clock)
{
	/* 10 minutes before 2^64 ns: the (s, ns) split, the horizon rule. */
	differential_limiter(UINT64_MAX - 10 * MIN, 300);
}

Test(redis, horizon_denies_never_like_the_cell)
{
	struct redis_harness_server srv = server_start();
	struct sluice_redis_options o = ropts(srv.port, SLUICE_REDIS_CALLER_CLOCK);
	struct sluice_redis *r = connect_to(&o);
	struct sluice_limit l = gcra(1, SEC, 4);
	struct sluice_gcra cell;
	struct sluice_decision a, b;

	sluice_gcra_init(&cell);
	for (int i = 0; i < 6; i++) {
		uint64_t now = UINT64_MAX - 3 * SEC;
		bool ok = sluice_gcra_admit(&cell, &l.rate, now, 1, &a);
		cr_assert_eq(sluice_redis_admit(r, "h", 1, &l, 1, 1, now, &b), SLUICE_OK);
		cr_assert_eq(ok, b.allowed);
		assert_same(&a, &b, i);
	}
	cr_expect_eq(b.reason, SLUICE_REASON_NEVER, "past the horizon: never");
	sluice_redis_destroy(r);
	server_stop(&srv);
}

/* Several scopes per request (an engine's "workspace + token + route"),
 * random subsets, against the composed cells; then the same through batches. */
static void differential_scopes(bool batched, bool cache)
{
	struct redis_harness_server srv = server_start();
	struct sluice_redis_options o = ropts(srv.port, SLUICE_REDIS_CALLER_CLOCK);
	o.deny_cache_slots = cache ? 1024 : 0;
	struct sluice_redis *r = connect_to(&o);
	struct sluice_limit ws[2] = { gcra(10, SEC, 10), gcra(300, MIN, 300) };
	struct sluice_limit tok[1] = { gcra(4, SEC, 2) };
	struct sluice_limit route[3] = { gcra(2, SEC, 2), gcra(50, MIN, 6), gcra(1, 3 * SEC, 1) };
	const char *names[4] = { "{ws1}", "{ws1}:tok", "{ws1}:route", "{ws1}:tok2" };
	const struct sluice_limit *pol[4] = { ws, tok, route, tok };
	size_t npol[4] = { 2, 1, 3, 1 };
	struct model m;
	memset(&m, 0, sizeof m);
	uint64_t now = 1700000000ull * SEC;
	int step = 0;

	for (int round = 0; round < 60; round++) {
		enum { N = 8 };
		struct sluice_redis_scope sc[N][4];
		int ids[N][4];
		struct sluice_redis_request reqs[N];
		struct sluice_decision want[N], got[N];
		size_t n = batched ? 1 + rnd() % N : 1;
		for (size_t q = 0; q < n; q++) {
			size_t k = 0;
			int order[4] = { 0, 1, 2, 3 };
			for (int i = 3; i > 0; i--) {
				int j = (int)(rnd() % (uint64_t)(i + 1)), t = order[i];
				order[i] = order[j];
				order[j] = t;
			}
			size_t want_scopes = 1 + rnd() % 4;
			for (size_t i = 0; i < want_scopes; i++) {
				int id = order[i];
				sc[q][k] = (struct sluice_redis_scope){ names[id], strlen(names[id]), pol[id],
									 npol[id] };
				ids[q][k++] = id;
			}
			uint64_t cost = rnd() % 3;
			reqs[q] = (struct sluice_redis_request){ sc[q], k, cost };
			model_admit(&m, sc[q], ids[q], k, cost, now, &want[q]);
		}
		if (batched) {
			cr_assert_eq(sluice_redis_admit_batch(r, reqs, n, now, got), SLUICE_OK);
		} else {
			cr_assert_eq(sluice_redis_admit_scopes(r, reqs[0].scopes, reqs[0].nscopes,
							       reqs[0].cost, now, got),
				     SLUICE_OK);
		}
		/* One handle writes every key: the cache's states are the
		 * server's, so its local denials are the server's field for
		 * field, within a batch too. */
		for (size_t q = 0; q < n; q++, step++)
			assert_same(&want[q], &got[q], step);
		now += rnd() % 3 == 0 ? rnd() % (2 * SEC) : rnd() % (50 * MS);
	}
	cr_expect_eq(rstats(r).degraded, 0);
	sluice_redis_destroy(r);
	server_stop(&srv);
}

Test(redis, differential_multi_scope_all_or_nothing)
{
	differential_scopes(false, false);
}

Test(redis, differential_multi_scope_pipelined_batches)
{
	differential_scopes(true, false);
}

Test(redis, differential_with_deny_cache_same_decisions)
{
	differential_scopes(true, true);
}

Test(redis, denied_request_consumes_nothing_in_any_scope)
{
	struct redis_harness_server srv = server_start();
	struct sluice_redis_options o = ropts(srv.port, SLUICE_REDIS_CALLER_CLOCK);
	struct sluice_redis *r = connect_to(&o);
	struct sluice_limit big = gcra(100, SEC, 100), small = gcra(1, SEC, 1);
	struct sluice_redis_scope sc[2] = { { "a", 1, &big, 1 }, { "b", 1, &small, 1 } };
	struct sluice_decision d;
	uint64_t now = 10 * SEC;

	cr_assert_eq(sluice_redis_admit_scopes(r, sc, 2, 1, now, &d), SLUICE_OK);
	cr_expect(d.allowed);
	cr_expect_eq(d.limit_index, 1, "least remaining governs");
	for (int i = 0; i < 5; i++) {
		cr_assert_eq(sluice_redis_admit_scopes(r, sc, 2, 1, now, &d), SLUICE_OK);
		cr_expect(!d.allowed);
		cr_expect_eq(d.limit_index, 1);
		cr_expect_eq(d.retry_after_ns, SEC);
	}
	cr_assert_eq(sluice_redis_admit(r, "a", 1, &big, 1, 0, now, &d), SLUICE_OK);
	cr_expect_eq(d.remaining, 99, "the denials took nothing from scope a");
	long long pttl = side_int(srv.port, "PTTL", "sluice:a");
	cr_expect(pttl > 599000 && pttl <= 600010, "debt 10 ms + grace 600 s: %lld", pttl);
	sluice_redis_destroy(r);
	server_stop(&srv);
}

/* ---- server time, expiry ---- */

Test(redis, server_time_and_key_expiry)
{
	struct redis_harness_server srv = server_start();
	struct sluice_redis_options o = ropts(srv.port, 0);
	o.key_prefix = "t:";
	struct sluice_redis *r = connect_to(&o);
	/* Limit 0 leaves 300 ms of debt, limit 1 only 10 ms. */
	struct sluice_limit l[2] = { gcra(1, 300 * MS, 1), gcra(10, 100 * MS, 10) };
	struct sluice_decision d;

	/* A peek creates nothing. */
	cr_assert_eq(sluice_redis_admit(r, "k", 1, l, 2, 0, 0, &d), SLUICE_OK);
	cr_expect(d.allowed);
	cr_expect_eq(d.remaining, 1);
	cr_expect_eq(side_int(srv.port, "EXISTS", "t:k"), 0);
	cr_assert_eq(sluice_redis_admit(r, "k", 1, l, 2, 1, 12345 /* ignored */, &d), SLUICE_OK);
	cr_expect(d.allowed);
	cr_expect_eq(d.reset_ns, 300 * MS, "server time: the debt right after the admission");
	cr_assert_eq(sluice_redis_admit(r, "k", 1, l, 2, 1, 0, &d), SLUICE_OK);
	cr_expect(!d.allowed);
	cr_expect_eq(d.reason, SLUICE_REASON_RATE);
	cr_expect_eq(d.limit_index, 0);
	cr_expect(d.retry_after_ns > 0 && d.retry_after_ns <= 300 * MS);
	/* The key lives until every limit is full again: the largest debt
	 * (limit 0's 300 ms, not limit 1's 10 ms), in whole ms. */
	long long pttl = side_int(srv.port, "PTTL", "t:k");
	cr_expect(pttl > 150 && pttl <= 300, "pttl %lld", pttl);
	usleep(350 * 1000);
	cr_expect_eq(side_int(srv.port, "EXISTS", "t:k"), 0, "expired once full");
	cr_assert_eq(sluice_redis_admit(r, "k", 1, l, 2, 1, 0, &d), SLUICE_OK);
	cr_expect(d.allowed);
	sluice_redis_destroy(r);
	server_stop(&srv);
}

/* ---- failures ---- */

static void killed_mid_run(uint32_t fail_mode)
{
	struct redis_harness_server srv = server_start();
	struct sluice_redis_options o = ropts(srv.port, SLUICE_REDIS_CALLER_CLOCK);
	o.fail_mode = fail_mode;
	o.backoff_min_ns = 200 * MS;
	o.backoff_max_ns = 400 * MS;
	struct sluice_redis *r = connect_to(&o);
	struct sluice_limit l = gcra(100, SEC, 100);
	struct sluice_decision d;

	cr_assert_eq(sluice_redis_admit(r, "k", 1, &l, 1, 1, SEC, &d), SLUICE_OK);
	cr_expect(d.allowed && !d.degraded);
	server_stop(&srv);
	for (int i = 0; i < 3; i++) {
		uint64_t t0 = sluice_monotonic_ns();
		cr_assert_eq(sluice_redis_admit(r, "k", 1, &l, 1, 1, SEC, &d), SLUICE_OK);
		uint64_t took = sluice_monotonic_ns() - t0;
		cr_expect(d.degraded, "call %d", i);
		cr_expect_lt(took, o.timeout_ns + 100 * MS, "call %d took %llu ns", i,
			     (unsigned long long)took);
		if (fail_mode == SLUICE_FAIL_OPEN) {
			cr_expect(d.allowed);
			cr_expect_eq(d.reason, SLUICE_REASON_NONE);
		} else {
			cr_expect(!d.allowed);
			cr_expect_eq(d.reason, SLUICE_REASON_CAPACITY);
		}
		cr_expect_eq(d.limit, 100);
	}
	struct sluice_redis_stats s = rstats(r);
	cr_expect_eq(s.degraded, 3);
	cr_expect_eq(s.admitted, 1);
	cr_expect_eq(s.io_errors, 1, "the lost connection");
	cr_expect_geq(s.connect_failures, 1, "one immediate reconnect attempt at least");
	cr_expect_geq(s.backoff_skips, 1, "calls inside the backoff do not touch the network");
	sluice_redis_destroy(r);
}

Test(redis, server_killed_fail_open)
{
	killed_mid_run(SLUICE_FAIL_OPEN);
}

Test(redis, server_killed_fail_closed)
{
	killed_mid_run(SLUICE_FAIL_CLOSED);
}

Test(redis, restart_reconnects_by_itself_and_reloads_the_script)
{
	struct redis_harness_server srv = server_start();
	struct sluice_redis_options o = ropts(srv.port, SLUICE_REDIS_CALLER_CLOCK);
	o.backoff_min_ns = 5 * MS;
	o.backoff_max_ns = 20 * MS;
	struct sluice_redis *r = connect_to(&o);
	struct sluice_limit l = gcra(100, SEC, 100);
	struct sluice_decision d;

	cr_assert_eq(sluice_redis_admit(r, "k", 1, &l, 1, 1, SEC, &d), SLUICE_OK);
	cr_expect(!d.degraded);
	/* Restart while the connection is idle: the next call finds its
	 * connection dead and reconnects at once (new server: empty script
	 * cache, so the script is loaded again). */
	int port = srv.port;
	server_stop(&srv);
	srv = server_start_args(port, 0);
	cr_assert_eq(sluice_redis_admit(r, "k", 1, &l, 1, 1, SEC, &d), SLUICE_OK);
	cr_expect(d.allowed && !d.degraded);
	cr_expect_eq(d.remaining, 99, "a restarted server lost the state (--save '')");
	struct sluice_redis_stats s = rstats(r);
	cr_expect_eq(s.connects, 2);
	cr_expect_eq(s.script_loads, 2);
	cr_expect_eq(s.degraded, 0);

	/* Down for a while: degraded answers, backoff, then back by itself. */
	server_stop(&srv);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(sluice_redis_admit(r, "k", 1, &l, 1, 1, SEC, &d), SLUICE_OK);
		cr_expect(d.degraded);
	}
	srv = server_start_args(port, 0);
	usleep(30 * 1000); /* past backoff_max */
	cr_assert_eq(sluice_redis_admit(r, "k", 1, &l, 1, 1, SEC, &d), SLUICE_OK);
	cr_expect(d.allowed && !d.degraded);
	cr_expect_eq(rstats(r).connects, 3);
	sluice_redis_destroy(r);
	server_stop(&srv);
}

Test(redis, noscript_reloads_and_retries)
{
	struct redis_harness_server srv = server_start();
	struct sluice_redis_options o = ropts(srv.port, SLUICE_REDIS_CALLER_CLOCK);
	struct sluice_redis *r = connect_to(&o);
	struct sluice_limit l = gcra(10, SEC, 10);
	struct sluice_decision d;

	cr_assert_eq(sluice_redis_admit(r, "k", 1, &l, 1, 1, SEC, &d), SLUICE_OK);
	freeReplyObject(side(srv.port, "SCRIPT FLUSH", NULL));
	cr_assert_eq(sluice_redis_admit(r, "k", 1, &l, 1, 1, SEC, &d), SLUICE_OK);
	cr_expect(d.allowed && !d.degraded);
	cr_expect_eq(d.remaining, 8);
	struct sluice_redis_stats s = rstats(r);
	cr_expect_eq(s.noscript, 1);
	cr_expect_eq(s.script_loads, 2);
	cr_expect_eq(s.connects, 1, "same connection");
	sluice_redis_destroy(r);
	server_stop(&srv);
}

Test(redis, refused_port_is_fast_and_backs_off)
{
	int port = free_port(); /* nothing listens there */
	struct sluice_redis_options o = ropts(port, SLUICE_REDIS_CALLER_CLOCK);
	o.fail_mode = SLUICE_FAIL_CLOSED;
	o.backoff_min_ns = 200 * MS; /* long enough for a loaded machine */
	o.backoff_max_ns = 400 * MS;
	struct sluice_redis *r = connect_to(&o);
	struct sluice_limit l = gcra(10, SEC, 10);
	struct sluice_decision d;

	cr_expect_eq(rstats(r).connect_failures, 1, "create tried once");
	for (int i = 0; i < 20; i++) {
		cr_assert_eq(sluice_redis_admit(r, "k", 1, &l, 1, 1, SEC, &d), SLUICE_OK);
		cr_expect(!d.allowed && d.degraded);
		cr_expect_eq(d.reason, SLUICE_REASON_CAPACITY);
	}
	struct sluice_redis_stats s = rstats(r);
	cr_expect_eq(s.connect_failures, 1, "within the backoff nothing is tried");
	cr_expect_eq(s.backoff_skips, 20);
	usleep(210 * 1000);
	cr_assert_eq(sluice_redis_admit(r, "k", 1, &l, 1, 1, SEC, &d), SLUICE_OK);
	cr_expect_eq(rstats(r).connect_failures, 2, "tried again after the backoff");
	sluice_redis_destroy(r);
}

Test(redis, frozen_server_call_returns_within_the_timeout)
{
	struct redis_harness_server srv = server_start();
	struct sluice_redis_options o = ropts(srv.port, SLUICE_REDIS_CALLER_CLOCK);
	o.timeout_ns = 40 * MS;
	struct sluice_redis *r = connect_to(&o);
	struct sluice_limit l = gcra(10, SEC, 10);
	struct sluice_decision d;

	cr_assert_eq(sluice_redis_admit(r, "k", 1, &l, 1, 1, SEC, &d), SLUICE_OK);
	cr_expect(!d.degraded);
	kill(srv.pid, SIGSTOP); /* accepts TCP (kernel), never answers */
	for (int i = 0; i < 3; i++) {
		uint64_t t0 = sluice_monotonic_ns();
		cr_assert_eq(sluice_redis_admit(r, "k", 1, &l, 1, 1, SEC, &d), SLUICE_OK);
		uint64_t took = sluice_monotonic_ns() - t0;
		cr_expect(d.allowed && d.degraded);
		/* Slack for a loaded 2-core machine; without the bound the call
		 * would block for as long as the server stays frozen. */
		cr_expect_lt(took, o.timeout_ns + 200 * MS, "call %d took %llu ms", i,
			     (unsigned long long)(took / MS));
	}
	cr_expect_geq(rstats(r).timeouts, 1);
	/* A batch is bounded by the same timeout in all. */
	struct sluice_redis_scope sc = { "k", 1, &l, 1 };
	struct sluice_redis_request reqs[16];
	struct sluice_decision ds[16];
	for (int i = 0; i < 16; i++)
		reqs[i] = (struct sluice_redis_request){ &sc, 1, 1 };
	usleep(20 * 1000); /* past the backoff */
	uint64_t t0 = sluice_monotonic_ns();
	cr_assert_eq(sluice_redis_admit_batch(r, reqs, 16, SEC, ds), SLUICE_OK);
	cr_expect_lt(sluice_monotonic_ns() - t0, o.timeout_ns + 200 * MS);
	for (int i = 0; i < 16; i++)
		cr_expect(ds[i].degraded);
	kill(srv.pid, SIGCONT);
	sluice_redis_destroy(r);
	server_stop(&srv);
}

Test(redis, readonly_replica_applies_the_fail_mode)
{
	struct redis_harness_server master = server_start();
	struct redis_harness_server replica = server_start_args(0, master.port);
	struct sluice_redis_options o = ropts(replica.port, SLUICE_REDIS_CALLER_CLOCK);
	o.fail_mode = SLUICE_FAIL_CLOSED;
	struct sluice_redis *r = connect_to(&o);
	struct sluice_limit l = gcra(10, SEC, 10);
	struct sluice_decision d;

	cr_assert_eq(sluice_redis_admit(r, "k", 1, &l, 1, 1, SEC, &d), SLUICE_OK);
	cr_expect(!d.allowed && d.degraded);
	cr_expect_eq(d.reason, SLUICE_REASON_CAPACITY);
	/* A peek writes nothing: a replica can answer it. */
	cr_assert_eq(sluice_redis_admit(r, "k", 1, &l, 1, 0, SEC, &d), SLUICE_OK);
	cr_expect(d.allowed && !d.degraded);
	struct sluice_redis_stats s = rstats(r);
	cr_expect_eq(s.readonly, 1);
	cr_expect_eq(s.degraded, 1);
	cr_expect_eq(s.connects, 1, "the connection stays");
	sluice_redis_destroy(r);
	server_stop(&replica);
	server_stop(&master);
}

/* ---- fewer round trips ---- */

Test(redis, deny_cache_answers_without_a_round_trip)
{
	struct redis_harness_server srv = server_start();
	struct sluice_redis_options o = ropts(srv.port, SLUICE_REDIS_CALLER_CLOCK);
	o.deny_cache_slots = 64;
	struct sluice_redis *r = connect_to(&o);
	struct sluice_redis_options o2 = ropts(srv.port, SLUICE_REDIS_CALLER_CLOCK);
	struct sluice_redis *plain = connect_to(&o2);
	struct sluice_limit l[2] = { gcra(100, SEC, 100), gcra(2, SEC, 2) };
	struct sluice_limit l_other[2] = { gcra(100, SEC, 100), gcra(2, SEC, 2) };
	struct sluice_limiter *lim = NULL;
	cr_assert_eq(sluice_limiter_create(&lim, l, 2, NULL), SLUICE_OK);
	struct sluice_decision a, b;
	uint64_t now = 100 * SEC;

	for (int i = 0; i < 2; i++) {
		cr_assert_eq(sluice_redis_admit(r, "k", 1, l, 2, 1, now, &b), SLUICE_OK);
		cr_expect(b.allowed);
		sluice_limiter_admit(lim, "k", 1, 1, now, &a);
	}
	uint64_t trips = rstats(r).round_trips;
	/* Our own admissions told us the bucket is empty until now + 500 ms. */
	for (int i = 0; i < 10; i++) {
		now += 40 * MS;
		cr_assert_eq(sluice_redis_admit(r, "k", 1, l, 2, 1, now, &b), SLUICE_OK);
		sluice_limiter_admit(lim, "k", 1, 1, now, &a);
		assert_same(&a, &b, i);
		cr_expect(!b.allowed);
	}
	struct sluice_redis_stats s = rstats(r);
	cr_expect_eq(s.round_trips, trips, "ten local denials, no round trip");
	cr_expect_eq(s.cache_hits, 10);
	cr_expect_eq(s.denied, 10);
	/* Another client consumes: we only learn it on our next round trip;
	 * the local F is a lower bound, never a false denial. */
	now += 100 * MS; /* 500 ms since: one token back */
	cr_assert_eq(sluice_redis_admit(plain, "k", 1, l_other, 2, 1, now, &b), SLUICE_OK);
	cr_expect(b.allowed);
	cr_assert_eq(sluice_redis_admit(r, "k", 1, l, 2, 1, now, &b), SLUICE_OK);
	cr_expect(!b.allowed, "server says no");
	cr_expect_eq(rstats(r).round_trips, trips + 1, "the cache did not know: a round trip");
	cr_expect_eq(b.retry_after_ns, 500 * MS);
	/* Peeks always go to the server. */
	cr_assert_eq(sluice_redis_admit(r, "k", 1, l, 2, 0, now, &b), SLUICE_OK);
	cr_expect_eq(rstats(r).round_trips, trips + 2);
	/* Once time passes the retry, a round trip admits again. */
	now += 500 * MS;
	cr_assert_eq(sluice_redis_admit(r, "k", 1, l, 2, 1, now, &b), SLUICE_OK);
	cr_expect(b.allowed);
	sluice_limiter_destroy(lim);
	sluice_redis_destroy(plain);
	sluice_redis_destroy(r);
	server_stop(&srv);
}

Test(redis, batch_is_one_round_trip_and_in_order)
{
	struct redis_harness_server srv = server_start();
	struct sluice_redis_options o = ropts(srv.port, SLUICE_REDIS_CALLER_CLOCK);
	struct sluice_redis *r = connect_to(&o);
	struct sluice_limit l = gcra(5, SEC, 5);
	struct sluice_limiter *lim = NULL;
	cr_assert_eq(sluice_limiter_create(&lim, &l, 1, NULL), SLUICE_OK);
	enum { N = 64 };
	struct sluice_redis_scope sc[4];
	const char *keys[4] = { "a", "b", "c", "d" };
	for (int i = 0; i < 4; i++)
		sc[i] = (struct sluice_redis_scope){ keys[i], 1, &l, 1 };
	struct sluice_redis_request reqs[N];
	struct sluice_limiter_request lreqs[N];
	struct sluice_decision got[N], want[N];
	for (int i = 0; i < N; i++) {
		int k = (int)(rnd() % 4);
		uint64_t cost = rnd() % 3;
		reqs[i] = (struct sluice_redis_request){ &sc[k], 1, cost };
		lreqs[i] = (struct sluice_limiter_request){ keys[k], 1, cost };
	}
	uint64_t trips = rstats(r).round_trips;
	cr_assert_eq(sluice_redis_admit_batch(r, reqs, N, 7 * SEC, got), SLUICE_OK);
	cr_assert_eq(sluice_limiter_admit_batch(lim, lreqs, N, 7 * SEC, want), SLUICE_OK);
	cr_expect_eq(rstats(r).round_trips, trips + 1);
	for (int i = 0; i < N; i++)
		assert_same(&want[i], &got[i], i);
	/* After SCRIPT FLUSH every call of the batch answers NOSCRIPT: the
	 * script is loaded and the batch resent, in order. */
	freeReplyObject(side(srv.port, "SCRIPT FLUSH", NULL));
	cr_assert_eq(sluice_redis_admit_batch(r, reqs, N, 9 * SEC, got), SLUICE_OK);
	cr_assert_eq(sluice_limiter_admit_batch(lim, lreqs, N, 9 * SEC, want), SLUICE_OK);
	for (int i = 0; i < N; i++)
		assert_same(&want[i], &got[i], i);
	struct sluice_redis_stats s = rstats(r);
	cr_expect_eq(s.noscript, N);
	cr_expect_eq(s.round_trips, trips + 4, "first batch; then the NOSCRIPT batch, SCRIPT LOAD, the resend");
	sluice_limiter_destroy(lim);
	sluice_redis_destroy(r);
	server_stop(&srv);
}

Test(redis, foreign_value_under_our_key_is_a_server_error)
{
	struct redis_harness_server srv = server_start();
	struct sluice_redis_options o = ropts(srv.port, SLUICE_REDIS_CALLER_CLOCK);
	o.fail_mode = SLUICE_FAIL_CLOSED;
	struct sluice_redis *r = connect_to(&o);
	struct sluice_limit l = gcra(10, SEC, 10);
	struct sluice_decision d;

	freeReplyObject(side_fmt(srv.port, "SET sluice:k x"));
	cr_assert_eq(sluice_redis_admit(r, "k", 1, &l, 1, 1, SEC, &d), SLUICE_OK);
	cr_expect(!d.allowed && d.degraded);
	/* A field holding garbage: the script fails, not a wrong decision. */
	freeReplyObject(side_fmt(srv.port, "HSET sluice:j 0:100000000:1000000000 notanumber"));
	cr_assert_eq(sluice_redis_admit(r, "j", 1, &l, 1, 1, SEC, &d), SLUICE_OK);
	cr_expect(!d.allowed && d.degraded);
	struct sluice_redis_stats s = rstats(r);
	cr_expect_eq(s.server_errors, 2);
	cr_expect_eq(s.degraded, 2);
	/* The connection is fine for other keys. */
	cr_assert_eq(sluice_redis_admit(r, "ok", 2, &l, 1, 1, SEC, &d), SLUICE_OK);
	cr_expect(d.allowed && !d.degraded);
	cr_expect_eq(rstats(r).connects, 1);
	sluice_redis_destroy(r);
	server_stop(&srv);
}

/* ---- Redis Cluster: three nodes on loopback ---- */

Test(redis, cluster_routes_by_slot_and_keeps_requests_on_one_slot, .fini = cluster_cleanup)
{
	struct redis_harness_server n[3];
	cluster_spawn(n);
	/* A handle seeded at node 0 before the cluster has any slots: its map
	 * points every slot at node 0, so it must learn by MOVED. */
	struct sluice_redis_options o = ropts(n[0].port, SLUICE_REDIS_CALLER_CLOCK | SLUICE_REDIS_CLUSTER);
	struct sluice_redis *early = connect_to(&o);

	cluster_form(n);

	struct sluice_limit l = gcra(3, SEC, 3);
	struct sluice_gcra cells[30];
	char keys[30][16];
	uint64_t now = 1700000000ull * SEC;
	for (int k = 0; k < 30; k++) {
		sluice_gcra_init(&cells[k]);
		snprintf(keys[k], sizeof keys[k], "{t%d}", k);
	}
	for (int step = 0; step < 300; step++) {
		int k = (int)(rnd() % 30);
		uint64_t cost = rnd() % 3;
		now += rnd() % (200 * MS);
		struct sluice_decision a, b;
		sluice_gcra_admit(&cells[k], &l.rate, now, cost, &a);
		cr_assert_eq(sluice_redis_admit(early, keys[k], strlen(keys[k]), &l, 1, cost, now, &b),
			     SLUICE_OK);
		assert_same(&a, &b, step);
	}
	struct sluice_redis_stats s = rstats(early);
	cr_expect_eq(s.degraded, 0);
	cr_expect_geq(s.moved, 1, "slots of nodes 1 and 2 learnt by MOVED");
	cr_expect_leq(s.moved, 30);
	cr_expect_eq(s.connects, 3, "one connection per node");
	long long total = 0;
	for (int i = 0; i < 3; i++) {
		long long keys_here = side_int(n[i].port, "DBSIZE", NULL);
		cr_expect_gt(keys_here, 0, "node %d holds keys", i);
		total += keys_here;
	}
	cr_expect_leq(total, 30);

	/* A handle created now reads the map with CLUSTER SLOTS: no MOVED. */
	struct sluice_redis *late = connect_to(&o);
	struct sluice_decision d;
	for (int k = 0; k < 30; k++)
		cr_assert_eq(sluice_redis_admit(late, keys[k], strlen(keys[k]), &l, 1, 0, now, &d),
			     SLUICE_OK);
	cr_expect_eq(rstats(late).moved, 0);
	cr_expect_eq(rstats(late).degraded, 0);

	/* Scopes of one request share a tag: one slot, all-or-nothing. */
	struct sluice_limit ws = gcra(100, SEC, 100), tok = gcra(1, SEC, 1);
	struct sluice_redis_scope same[2] = { { "{ws:42}", 7, &ws, 1 }, { "{ws:42}:tok:a", 13, &tok, 1 } };
	cr_assert_eq(sluice_redis_admit_scopes(late, same, 2, 1, now, &d), SLUICE_OK);
	cr_expect(d.allowed && !d.degraded);
	cr_assert_eq(sluice_redis_admit_scopes(late, same, 2, 1, now, &d), SLUICE_OK);
	cr_expect(!d.allowed && !d.degraded);
	cr_expect_eq(d.limit_index, 1);
	/* Different tags on different slots: the cross-slot protocol
	 * (tests/test_redis_kinds.c tests it in depth). */
	cr_assert_neq(keyslot(n[0].port, "sluice:{a}"), keyslot(n[0].port, "sluice:{b}"));
	struct sluice_redis_scope cross[2] = { { "{a}", 3, &ws, 1 }, { "{b}", 3, &tok, 1 } };
	cr_expect_eq(sluice_redis_admit_scopes(late, cross, 2, 1, now, &d), SLUICE_OK);
	cr_expect(d.allowed && !d.degraded);
	/* The slot we compute is Redis's: the request for {ws:42} landed on
	 * the node that owns CLUSTER KEYSLOT's answer. */
	long long slot = keyslot(n[0].port, "sluice:{ws:42}");
	int owner = slot <= 5460 ? 0 : slot <= 10922 ? 1 : 2;
	cr_expect_eq(side_int(n[owner].port, "EXISTS", "sluice:{ws:42}"), 1);

	sluice_redis_destroy(late);
	sluice_redis_destroy(early);
	for (int i = 0; i < 3; i++)
		server_stop(&n[i]); /* the fini removes the directories */
}
