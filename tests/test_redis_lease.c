/*
 * test_redis_lease.c - the Redis backend's local lease (docs/redis.md,
 * "Local lease") against real redis-server processes the tests start:
 * round trips drop on a hot key, leased answers and take answers carry the
 * documented fields, leases expire, a denial for the lease's units is
 * turned into the exact answer for the request's cost, and several handles
 * hammering one key never admit more than the documented bound in any
 * window. With the lease off (or never hot) decisions are exactly those of
 * the keyed limiter.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sluice.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "redis_server.h"
#define REDIS_TEST_RNG_SEED 0x243f6a8885a308d3ull
#include "redis_test_util.h"

/* ---- helpers ---- */

/* Caller clock (the tests replay exact times) with a long expiry grace
 * (the fake clocks stand still against real time). */
static struct sluice_redis_options lopts(int port, uint32_t lease_units, uint32_t hot_hits,
					 uint64_t ttl_ns)
{
	struct sluice_redis_options o;

	memset(&o, 0, sizeof o);
	o.size = sizeof o;
	o.port = (uint32_t)port;
	o.flags = SLUICE_REDIS_CALLER_CLOCK;
	o.timeout_ns = 500 * MS;
	o.expiry_grace_ns = 600 * SEC;
	o.lease_units = lease_units;
	o.lease_hot_hits = hot_hits;
	o.lease_ttl_ns = ttl_ns;
	return o;
}

/* The server's state of one key through a handle without a lease: a peek. */
static struct sluice_decision peek(struct sluice_redis *plain, const char *key,
				   const struct sluice_limit *l, size_t nl, uint64_t now)
{
	struct sluice_decision d;
	cr_assert_eq(sluice_redis_admit(plain, key, strlen(key), l, nl, 0, now, &d), SLUICE_OK);
	cr_assert(!d.degraded);
	return d;
}

/* ---- options and versions ---- */

Test(redis_lease, options_are_validated_and_versioned)
{
	struct sluice_redis *r = (struct sluice_redis *)1;
	struct sluice_redis_options o = lopts(1, 8, 0, 0);

	o.lease_slots = 3;
	cr_expect_eq(sluice_redis_create(&r, &o), SLUICE_EINVAL, "slots not a power of two");
	cr_expect_null(r);
	o = lopts(1, 8, 0, SLUICE_REDIS_MAX_TOLERANCE_NS + 1);
	cr_expect_eq(sluice_redis_create(&r, &o), SLUICE_EINVAL, "ttl too long");
	o = lopts(1, 8, 0, 0);
	o.lease_reserved_ = 1;
	cr_expect_eq(sluice_redis_create(&r, &o), SLUICE_EINVAL, "reserved field");
	o = lopts(1, 8, 0, 0);
	o.size = SLUICE_REDIS_OPTIONS_V1_SIZE + 1;
	cr_expect_eq(sluice_redis_create(&r, &o), SLUICE_EINVAL, "no such version");
	o = lopts(1, 8, 0, SLUICE_REDIS_MAX_TOLERANCE_NS);
	o.lease_slots = 1;
	cr_assert_eq(sluice_redis_create(&r, &o), SLUICE_OK, "the largest ttl, one slot");
	sluice_redis_destroy(r);

	/* Version 1 of the options, as a caller built then laid it out. */
	struct v1_options {
		size_t size;
		const char *host;
		uint32_t port, fail_mode, flags, deny_cache_slots;
		uint64_t timeout_ns, backoff_min_ns, backoff_max_ns;
		const char *key_prefix;
		uint64_t expiry_grace_ns;
	};
	cr_expect_eq(sizeof(struct v1_options), SLUICE_REDIS_OPTIONS_V1_SIZE);
	cr_expect_eq(SLUICE_REDIS_STATS_V1_SIZE, sizeof(size_t) + 15 * sizeof(uint64_t));

	/* Stats: version 1 gets the fields before the lease's; sizes between
	 * the versions are refused. */
	o = lopts(1, 8, 0, 0);
	r = connect_to(&o);
	struct sluice_redis_stats s;
	memset(&s, 0xab, sizeof s);
	s.size = SLUICE_REDIS_STATS_V1_SIZE;
	cr_assert_eq(sluice_redis_stats(r, &s), SLUICE_OK);
	cr_expect_eq(s.size, SLUICE_REDIS_STATS_V1_SIZE);
	cr_expect_eq(s.leased, 0xababababababababull, "a v1 struct ends before leased");
	s.size = SLUICE_REDIS_STATS_V1_SIZE + 8;
	cr_expect_eq(sluice_redis_stats(r, &s), SLUICE_EINVAL);
	/* Version 2 ends before tryagain (version 3). */
	cr_expect_eq(SLUICE_REDIS_STATS_V2_SIZE, sizeof(size_t) + 19 * sizeof(uint64_t));
	memset(&s, 0xab, sizeof s);
	s.size = SLUICE_REDIS_STATS_V2_SIZE;
	cr_assert_eq(sluice_redis_stats(r, &s), SLUICE_OK);
	cr_expect_eq(s.size, SLUICE_REDIS_STATS_V2_SIZE);
	cr_expect_eq(s.ask, 0, "a v2 struct gets ask");
	cr_expect_eq(s.tryagain, 0xababababababababull, "a v2 struct ends before tryagain");
	s.size = SLUICE_REDIS_STATS_V2_SIZE + 4;
	cr_expect_eq(sluice_redis_stats(r, &s), SLUICE_EINVAL);
	s.size = sizeof s;
	cr_assert_eq(sluice_redis_stats(r, &s), SLUICE_OK);
	cr_expect_eq(s.size, sizeof s);
	cr_expect_eq(s.tryagain, 0);
	sluice_redis_destroy(r);
}

Test(redis_lease, version1_options_take_no_lease)
{
	struct redis_harness_server srv = server_start();
	/* A v1 caller's struct ends at expiry_grace_ns: exactly that many
	 * bytes on the heap, so that ASan catches a read past them. */
	struct sluice_redis_options o = lopts(srv.port, 8, 1, 0);
	o.size = SLUICE_REDIS_OPTIONS_V1_SIZE;
	struct sluice_redis_options *v1 = malloc(SLUICE_REDIS_OPTIONS_V1_SIZE);
	cr_assert_not_null(v1);
	memcpy(v1, &o, SLUICE_REDIS_OPTIONS_V1_SIZE);
	struct sluice_redis *r = connect_to(v1);
	free(v1);
	struct sluice_limit l = gcra(100, SEC, 100);
	struct sluice_decision d;

	uint64_t trips = rstats(r).round_trips;
	for (int i = 0; i < 20; i++) {
		cr_assert_eq(sluice_redis_admit(r, "k", 1, &l, 1, 1, SEC, &d), SLUICE_OK);
		cr_expect(d.allowed);
	}
	struct sluice_redis_stats s = rstats(r);
	cr_expect_eq(s.round_trips, trips + 20);
	cr_expect_eq(s.leased, 0);
	sluice_redis_destroy(r);
	server_stop(&srv);
}

/* ---- round trips drop; the fields of take and leased answers ---- */

Test(redis_lease, hot_key_round_trips_drop)
{
	struct redis_harness_server srv = server_start();
	/* L = 8; hot after 8 requests within 100 ms (the default). */
	struct sluice_redis_options o = lopts(srv.port, 8, 0, 0);
	struct sluice_redis *r = connect_to(&o);
	struct sluice_redis_options op = lopts(srv.port, 0, 0, 0);
	struct sluice_redis *plain = connect_to(&op);
	struct sluice_limit l = gcra(1000, SEC, 1000); /* T = 1 ms, tau = 1 s */
	struct sluice_limiter *lim = NULL;
	cr_assert_eq(sluice_limiter_create(&lim, &l, 1, NULL), SLUICE_OK);
	const uint64_t now = 100 * SEC;
	uint64_t trips0 = rstats(r).round_trips;
	struct sluice_decision d, want;

	/* Seven requests: not hot yet, one round trip each, exactly the
	 * keyed limiter's decisions. */
	for (int i = 0; i < 7; i++) {
		cr_assert_eq(sluice_redis_admit(r, "hot", 3, &l, 1, 1, now, &d), SLUICE_OK);
		sluice_limiter_admit(lim, "hot", 3, 1, now, &want);
		assert_same(&want, &d, i);
	}
	cr_expect_eq(rstats(r).round_trips, trips0 + 7);
	/* The eighth takes a lease of 8: the server consumes 8, the caller
	 * gets 1, and remaining counts the 7 held (exact: the in-process
	 * limiter after 8 single admissions says the same). */
	cr_assert_eq(sluice_redis_admit(r, "hot", 3, &l, 1, 1, now, &d), SLUICE_OK);
	sluice_limiter_admit(lim, "hot", 3, 1, now, &want);
	cr_expect(d.allowed && !d.degraded);
	cr_expect_eq(d.remaining, want.remaining, "take: server's 985 + 7 held");
	cr_expect_eq(d.remaining, 992);
	cr_expect_eq(d.reset_ns, 15 * MS, "the server's debt after the 15 units it holds");
	cr_expect_eq(rstats(r).lease_grants, 1);
	cr_expect_eq(peek(plain, "hot", &l, 1, now).remaining, 985, "the server consumed all 8");
	/* Seven leased answers: no round trip; remaining counts down what is
	 * held; reset is the server's debt as last seen (exact here: nobody
	 * else consumes). */
	uint64_t trips = rstats(r).round_trips;
	for (int i = 0; i < 7; i++) {
		cr_assert_eq(sluice_redis_admit(r, "hot", 3, &l, 1, 1, now, &d), SLUICE_OK);
		cr_expect(d.allowed && !d.degraded);
		cr_expect_eq(d.reason, SLUICE_REASON_NONE);
		cr_expect_eq(d.limit_index, 0);
		cr_expect_eq(d.limit, 1000);
		cr_expect_eq(d.remaining, (uint64_t)(6 - i));
		cr_expect_eq(d.reset_ns, peek(plain, "hot", &l, 1, now).reset_ns);
		cr_expect_eq(d.retry_after_ns, 0);
	}
	cr_expect_eq(rstats(r).round_trips, trips, "the leased answers sent nothing");
	/* 85 more: a take every 8 requests. */
	for (int i = 0; i < 85; i++) {
		cr_assert_eq(sluice_redis_admit(r, "hot", 3, &l, 1, 1, now, &d), SLUICE_OK);
		cr_expect(d.allowed);
	}
	struct sluice_redis_stats s = rstats(r);
	/* 100 requests: 7 plain + 93 in groups of 8 (one take, 7 leased). */
	cr_expect_eq(s.round_trips, trips0 + 7 + 12, "%llu", (unsigned long long)s.round_trips);
	cr_expect_eq(s.lease_grants, 12);
	cr_expect_eq(s.leased, 93 - 12);
	cr_expect_eq(s.admitted, 100);
	cr_expect_eq(s.lease_wasted, 0);
	/* 100 admitted; the server holds 7 + 12 * 8 = 103: 3 are still held. */
	cr_expect_eq(peek(plain, "hot", &l, 1, now).remaining, 1000 - 103);
	sluice_limiter_destroy(lim);
	sluice_redis_destroy(plain);
	sluice_redis_destroy(r);
	server_stop(&srv);
}

/* ---- lifetime, stale clocks ---- */

Test(redis_lease, lease_expires_and_a_stale_clock_does_not_use_it)
{
	struct redis_harness_server srv = server_start();
	const uint64_t ttl = 50 * MS;
	struct sluice_redis_options o = lopts(srv.port, 8, 2, ttl);
	struct sluice_redis *r = connect_to(&o);
	struct sluice_limit l = gcra(100, SEC, 100);
	struct sluice_decision d;
	const uint64_t t0 = 10 * SEC;

	cr_assert_eq(sluice_redis_admit(r, "k", 1, &l, 1, 1, t0, &d), SLUICE_OK); /* hit 1 */
	cr_assert_eq(sluice_redis_admit(r, "k", 1, &l, 1, 1, t0, &d), SLUICE_OK); /* hit 2: take */
	cr_expect(d.allowed);
	struct sluice_redis_stats s = rstats(r);
	cr_expect_eq(s.lease_grants, 1);
	uint64_t trips = s.round_trips;
	/* Live until t0 + ttl (exclusive). */
	cr_assert_eq(sluice_redis_admit(r, "k", 1, &l, 1, 1, t0 + ttl - 1, &d), SLUICE_OK);
	cr_expect(d.allowed);
	cr_expect_eq(d.remaining, 6);
	cr_expect_eq(rstats(r).round_trips, trips);
	/* The caller's clock before the lease's start: not from the lease (an
	 * admission earlier than the consumption that paid for it would break
	 * the bound); one plain round trip (one hit in a new heat window). */
	cr_assert_eq(sluice_redis_admit(r, "k", 1, &l, 1, 1, t0 - MS, &d), SLUICE_OK);
	cr_expect(d.allowed);
	s = rstats(r);
	cr_expect_eq(s.round_trips, trips + 1);
	cr_expect_eq(s.leased, 1);
	cr_expect_eq(s.lease_grants, 1, "not hot in its new heat window");
	/* Back inside the lifetime: the lease answers again. */
	cr_assert_eq(sluice_redis_admit(r, "k", 1, &l, 1, 1, t0 + 10 * MS, &d), SLUICE_OK);
	cr_expect(d.allowed);
	cr_expect_eq(d.remaining, 5);
	cr_expect_eq(rstats(r).leased, 2);
	/* At t0 + ttl the lease is dead: its 5 units are dropped. */
	cr_assert_eq(sluice_redis_admit(r, "k", 1, &l, 1, 1, t0 + ttl, &d), SLUICE_OK);
	cr_expect(d.allowed);
	s = rstats(r);
	cr_expect_eq(s.lease_wasted, 5);
	cr_expect_eq(s.leased, 2);
	cr_expect_eq(s.round_trips, trips + 2);
	sluice_redis_destroy(r);
	server_stop(&srv);
}

/* ---- a denial for the lease's units ---- */

Test(redis_lease, denial_for_the_lease_is_turned_into_the_exact_answer_for_the_cost)
{
	struct redis_harness_server srv = server_start();
	struct sluice_redis_options o = lopts(srv.port, 8, 1, 0);
	struct sluice_redis *r = connect_to(&o);
	struct sluice_redis_options op = lopts(srv.port, 0, 0, 0);
	struct sluice_redis *other = connect_to(&op);
	struct sluice_limit l = gcra(10, SEC, 10); /* T = 100 ms, tau = 1 s */
	struct sluice_limiter *lim = NULL;
	cr_assert_eq(sluice_limiter_create(&lim, &l, 1, NULL), SLUICE_OK);
	struct sluice_decision d, want;
	const uint64_t t = 50 * SEC;

	/* 3 units left: a lease of 8 does not fit, the request's 1 does. */
	cr_assert_eq(sluice_redis_admit(other, "k", 1, &l, 1, 7, t, &d), SLUICE_OK);
	sluice_limiter_admit(lim, "k", 1, 7, t, &want);
	uint64_t trips = rstats(r).round_trips;
	cr_assert_eq(sluice_redis_admit(r, "k", 1, &l, 1, 1, t, &d), SLUICE_OK);
	sluice_limiter_admit(lim, "k", 1, 1, t, &want);
	assert_same(&want, &d, 0);
	struct sluice_redis_stats s = rstats(r);
	cr_expect_eq(s.round_trips, trips + 2, "the take, then the request's own cost");
	cr_expect_eq(s.lease_grants, 0);
	cr_expect_eq(s.admitted, 1);
	cr_expect_eq(s.denied, 0, "the take's denial is not an answer");
	/* Empty: the take's denial is also the request's, computed for its
	 * cost (retry after one interval, not after eight). */
	cr_assert_eq(sluice_redis_admit(other, "k", 1, &l, 1, 2, t, &d), SLUICE_OK);
	sluice_limiter_admit(lim, "k", 1, 2, t, &want);
	cr_assert_eq(sluice_redis_admit(r, "k", 1, &l, 1, 1, t, &d), SLUICE_OK);
	sluice_limiter_admit(lim, "k", 1, 1, t, &want);
	assert_same(&want, &d, 1);
	cr_expect_eq(d.retry_after_ns, 100 * MS);
	s = rstats(r);
	cr_expect_eq(s.round_trips, trips + 3, "one round trip");
	cr_expect_eq(s.denied, 1);
	cr_expect_eq(peek(other, "k", &l, 1, t).remaining, 0);
	sluice_limiter_destroy(lim);
	sluice_redis_destroy(other);
	sluice_redis_destroy(r);
	server_stop(&srv);
}

Test(redis_lease, lease_is_capped_by_the_smallest_burst_and_never_for_big_costs)
{
	struct redis_harness_server srv = server_start();
	struct sluice_redis_options o = lopts(srv.port, 8, 1, 0);
	struct sluice_redis *r = connect_to(&o);
	struct sluice_redis *plain = connect_to(&(struct sluice_redis_options){
		.size = sizeof(struct sluice_redis_options), .port = (uint32_t)srv.port,
		.flags = SLUICE_REDIS_CALLER_CLOCK, .timeout_ns = 500 * MS, .expiry_grace_ns = 600 * SEC });
	struct sluice_limit l[2] = { gcra(100, SEC, 100), gcra(4, SEC, 4) };
	struct sluice_decision d;
	const uint64_t t = 20 * SEC;

	/* The lease takes 4 (limit 1's burst), not 8. */
	cr_assert_eq(sluice_redis_admit(r, "k", 1, l, 2, 1, t, &d), SLUICE_OK);
	cr_expect(d.allowed);
	cr_expect_eq(d.limit_index, 1);
	cr_expect_eq(d.remaining, 3, "the server's 0 + the 3 held");
	cr_expect_eq(peek(plain, "k", l, 2, t).remaining, 0);
	cr_expect_eq(rstats(r).lease_grants, 1);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(sluice_redis_admit(r, "k", 1, l, 2, 1, t, &d), SLUICE_OK);
		cr_expect(d.allowed);
		cr_expect_eq(d.limit_index, 1);
		cr_expect_eq(d.limit, 4);
	}
	cr_expect_eq(rstats(r).leased, 3);
	/* A cost of at least the lease's units is sent as it is. */
	struct sluice_limit big = gcra(100, SEC, 100);
	uint64_t before = rstats(r).lease_grants;
	cr_assert_eq(sluice_redis_admit(r, "b", 1, &big, 1, 8, t, &d), SLUICE_OK);
	cr_expect(d.allowed);
	cr_expect_eq(d.remaining, 92);
	cr_expect_eq(rstats(r).lease_grants, before);
	/* A peek never takes nor spends a lease. */
	cr_assert_eq(sluice_redis_admit(r, "b", 1, &big, 1, 0, t, &d), SLUICE_OK);
	cr_expect_eq(d.remaining, 92);
	cr_expect_eq(rstats(r).lease_grants, before);
	sluice_redis_destroy(plain);
	sluice_redis_destroy(r);
	server_stop(&srv);
}

/* ---- scopes and batches ---- */

Test(redis_lease, multi_scope_lease_consumes_every_scope_and_shapes_are_distinct)
{
	struct redis_harness_server srv = server_start();
	struct sluice_redis_options o = lopts(srv.port, 8, 1, 0);
	struct sluice_redis *r = connect_to(&o);
	struct sluice_redis_options op = lopts(srv.port, 0, 0, 0);
	struct sluice_redis *plain = connect_to(&op);
	struct sluice_limit ws = gcra(100, SEC, 100), tok = gcra(50, SEC, 50);
	struct sluice_redis_scope sc[2] = { { "{w}", 3, &ws, 1 }, { "{w}:t", 5, &tok, 1 } };
	struct sluice_redis_scope rev[2] = { sc[1], sc[0] };
	struct sluice_decision d;
	const uint64_t t = 30 * SEC;

	cr_assert_eq(sluice_redis_admit_scopes(r, sc, 2, 1, t, &d), SLUICE_OK);
	cr_expect(d.allowed);
	cr_expect_eq(d.limit_index, 1, "least remaining: the token");
	cr_expect_eq(d.remaining, 42 + 7);
	cr_expect_eq(peek(plain, "{w}", &ws, 1, t).remaining, 92);
	cr_expect_eq(peek(plain, "{w}:t", &tok, 1, t).remaining, 42);
	uint64_t trips = rstats(r).round_trips;
	for (int i = 0; i < 7; i++) {
		cr_assert_eq(sluice_redis_admit_scopes(r, sc, 2, 1, t, &d), SLUICE_OK);
		cr_expect(d.allowed);
		cr_expect_eq(d.limit_index, 1);
		cr_expect_eq(d.limit, 50);
	}
	cr_expect_eq(rstats(r).round_trips, trips);
	/* The scopes in the other order, or one of them alone, are other
	 * shapes: their own round trips (and their own leases). */
	cr_assert_eq(sluice_redis_admit_scopes(r, rev, 2, 1, t, &d), SLUICE_OK);
	cr_expect(d.allowed);
	cr_expect_eq(d.limit_index, 0, "the token is first now");
	cr_assert_eq(sluice_redis_admit(r, "{w}", 3, &ws, 1, 1, t, &d), SLUICE_OK);
	cr_expect(d.allowed);
	cr_expect_eq(rstats(r).round_trips, trips + 2);
	cr_expect_eq(rstats(r).lease_grants, 3);
	/* The server holds 3 leases on {w} (24) and 2 on the token (16). */
	cr_expect_eq(peek(plain, "{w}", &ws, 1, t).remaining, 100 - 24);
	cr_expect_eq(peek(plain, "{w}:t", &tok, 1, t).remaining, 50 - 16);
	sluice_redis_destroy(plain);
	sluice_redis_destroy(r);
	server_stop(&srv);
}

Test(redis_lease, batch_requests_are_answered_from_the_lease)
{
	struct redis_harness_server srv = server_start();
	struct sluice_redis_options o = lopts(srv.port, 8, 1, 0);
	struct sluice_redis *r = connect_to(&o);
	struct sluice_limit l = gcra(1000, SEC, 1000);
	struct sluice_redis_scope sc = { "k", 1, &l, 1 };
	struct sluice_redis_request reqs[16];
	struct sluice_decision out[16], d;
	const uint64_t t = 40 * SEC;

	for (int i = 0; i < 16; i++)
		reqs[i] = (struct sluice_redis_request){ &sc, 1, 1 };
	cr_assert_eq(sluice_redis_admit(r, "k", 1, &l, 1, 1, t, &d), SLUICE_OK); /* take: 7 held */
	uint64_t trips = rstats(r).round_trips;
	cr_assert_eq(sluice_redis_admit_batch(r, reqs, 7, t, out), SLUICE_OK);
	for (int i = 0; i < 7; i++) {
		cr_expect(out[i].allowed);
		cr_expect_eq(out[i].remaining, (uint64_t)(6 - i));
	}
	cr_expect_eq(rstats(r).round_trips, trips, "seven leased answers, nothing sent");
	/* 16 more: the lease is empty; the first takes a new one, the other
	 * 15 go out as they are, all in one pipeline. */
	cr_assert_eq(sluice_redis_admit_batch(r, reqs, 16, t, out), SLUICE_OK);
	for (int i = 0; i < 16; i++)
		cr_expect(out[i].allowed && !out[i].degraded);
	struct sluice_redis_stats s = rstats(r);
	cr_expect_eq(s.round_trips, trips + 1);
	cr_expect_eq(s.lease_grants, 2);
	cr_expect_eq(s.leased, 7);
	/* 1 + 7 + 16 admitted; the server holds 8 + 8 + 15. */
	cr_expect_eq(out[15].remaining, 1000 - 31, "the last one's server remaining");
	sluice_redis_destroy(r);
	server_stop(&srv);
}

/* ---- which requests lease (docs/redis.md, "Which requests lease") ---- */

/*
 * Shapes with a window limit are as hot as can be (hot after 2 hits) and
 * never lease: every request is one round trip and every decision is the
 * keyed limiter's, up to and past the denials. They do not even touch the
 * lease table: with one entry, a GCRA-only shape's lease survives them.
 */
Test(redis_lease, window_kinds_never_lease_and_stay_exact)
{
	struct redis_harness_server srv = server_start();
	struct sluice_redis_options o = lopts(srv.port, 8, 2, 120 * SEC);
	o.lease_slots = 1;
	struct sluice_redis *r = connect_to(&o);
	struct sluice_limit wa[3] = { gcra(1000, SEC, 1000), counter(30, 60 * SEC), calendar(1000, 86400 * SEC) };
	struct sluice_limit wb[2] = { gcra(1000, SEC, 1000), slog(25, SEC) };
	struct sluice_limit g = gcra(1000, SEC, 1000);
	struct sluice_limiter *la = NULL, *lb = NULL;
	cr_assert_eq(sluice_limiter_create(&la, wa, 3, NULL), SLUICE_OK);
	cr_assert_eq(sluice_limiter_create(&lb, wb, 2, NULL), SLUICE_OK);
	uint64_t now = 1700000000ull * SEC;
	struct sluice_decision d, want;

	/* The GCRA-only shape takes its lease (hit 2) and holds 7. */
	for (int i = 0; i < 2; i++)
		cr_assert_eq(sluice_redis_admit(r, "g", 1, &g, 1, 1, now, &d), SLUICE_OK);
	cr_assert_eq(rstats(r).lease_grants, 1);
	struct sluice_redis_stats s0 = rstats(r);
	int denied = 0;
	for (int i = 0; i < 40; i++) {
		uint64_t cost = 1 + (uint64_t)i % 2;
		now += 10 * MS;
		cr_assert_eq(sluice_redis_admit(r, "wa", 2, wa, 3, cost, now, &d), SLUICE_OK);
		sluice_limiter_admit(la, "wa", 2, cost, now, &want);
		assert_same(&want, &d, 2 * i);
		denied += !d.allowed;
		cr_assert_eq(sluice_redis_admit(r, "wb", 2, wb, 2, cost, now, &d), SLUICE_OK);
		sluice_limiter_admit(lb, "wb", 2, cost, now, &want);
		assert_same(&want, &d, 2 * i + 1);
		denied += !d.allowed;
	}
	cr_expect_gt(denied, 10, "the run reaches the window limits");
	/* A batch of the window shape: one pipeline, nothing leased. */
	struct sluice_redis_scope sc = { "wa", 2, wa, 3 };
	struct sluice_redis_request reqs[4];
	struct sluice_decision outs[4];
	for (int i = 0; i < 4; i++)
		reqs[i] = (struct sluice_redis_request){ &sc, 1, 1 };
	now += 30 * SEC;
	cr_assert_eq(sluice_redis_admit_batch(r, reqs, 4, now, outs), SLUICE_OK);
	for (int i = 0; i < 4; i++) {
		sluice_limiter_admit(la, "wa", 2, 1, now, &want);
		assert_same(&want, &outs[i], 100 + i);
	}
	struct sluice_redis_stats s = rstats(r);
	cr_expect_eq(s.round_trips - s0.round_trips, 81, "one per request, one for the batch");
	cr_expect_eq(s.lease_grants, s0.lease_grants);
	cr_expect_eq(s.leased, s0.leased);
	cr_expect_eq(s.lease_wasted, 0, "the window shapes never claimed the only entry");
	/* The GCRA-only shape still answers from its lease (its 120 s life). */
	cr_assert_eq(sluice_redis_admit(r, "g", 1, &g, 1, 1, now, &d), SLUICE_OK);
	cr_expect(d.allowed && !d.degraded);
	cr_expect_eq(d.remaining, 6);
	cr_expect_eq(rstats(r).leased, s0.leased + 1);
	cr_expect_eq(rstats(r).round_trips, s.round_trips);
	sluice_limiter_destroy(la);
	sluice_limiter_destroy(lb);
	sluice_redis_destroy(r);
	server_stop(&srv);
}

/*
 * Acquires (GCRA-only or with slots) and peeks neither lease nor count
 * towards heat: after 20 acquires and 10 peeks of a shape, its next
 * admissions need the full lease_hot_hits (5) before the take.
 */
Test(redis_lease, acquires_and_peeks_never_lease)
{
	struct redis_harness_server srv = server_start();
	struct sluice_redis_options o = lopts(srv.port, 4, 5, 10 * SEC);
	struct sluice_redis *r = connect_to(&o);
	struct sluice_limit g = gcra(1000, SEC, 1000);
	struct sluice_limit gs[2] = { gcra(1000, SEC, 1000), slots(3, 0) };
	struct sluice_limiter *lim = NULL;
	cr_assert_eq(sluice_limiter_create(&lim, &g, 1, NULL), SLUICE_OK);
	const uint64_t now = 100 * SEC;
	struct sluice_redis_scope sc = { "k", 1, &g, 1 };
	struct sluice_redis_scope ss = { "s", 1, gs, 2 };
	struct sluice_decision d, want;
	sluice_slot_handle h[1], held[3];
	struct sluice_redis_stats s0 = rstats(r);

	for (int i = 0; i < 20; i++) {
		cr_assert_eq(sluice_redis_acquire_scopes(r, &sc, 1, 1, now, &d, h), SLUICE_OK);
		sluice_limiter_admit(lim, "k", 1, 1, now, &want);
		assert_same(&want, &d, i);
		cr_expect_eq(h[0], SLUICE_SLOT_NONE, "no slots limit: no handle");
	}
	for (int i = 0; i < 10; i++) {
		cr_assert_eq(sluice_redis_admit(r, "k", 1, &g, 1, 0, now, &d), SLUICE_OK);
		cr_expect_eq(d.remaining, 980, "peeks consume nothing");
	}
	/* Slots: 3 acquires, a denial, a release, an acquire; all round trips. */
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(sluice_redis_acquire_scopes(r, &ss, 1, 1, now, &d, &held[i]), SLUICE_OK);
		cr_expect(d.allowed && held[i] != SLUICE_SLOT_NONE);
	}
	cr_assert_eq(sluice_redis_acquire_scopes(r, &ss, 1, 1, now, &d, h), SLUICE_OK);
	cr_expect(!d.allowed && d.reason == SLUICE_REASON_CONCURRENCY);
	cr_expect_eq(sluice_redis_release(r, &ss, held[0]), SLUICE_OK);
	cr_assert_eq(sluice_redis_acquire_scopes(r, &ss, 1, 1, now, &d, h), SLUICE_OK);
	cr_expect(d.allowed && h[0] != SLUICE_SLOT_NONE);
	struct sluice_redis_stats s = rstats(r);
	cr_expect_eq(s.round_trips - s0.round_trips, 20 + 10 + 3 + 1 + 1 + 1);
	cr_expect_eq(s.lease_grants + s.leased, 0);
	/* Four admissions of "k": still not hot (acquires and peeks did not
	 * count); the fifth takes 4. */
	for (int i = 0; i < 5; i++) {
		cr_assert_eq(sluice_redis_admit(r, "k", 1, &g, 1, 1, now, &d), SLUICE_OK);
		cr_expect(d.allowed);
		cr_expect_eq(rstats(r).lease_grants, i == 4 ? 1 : 0, "admission %d", i);
	}
	sluice_limiter_destroy(lim);
	sluice_redis_destroy(r);
	server_stop(&srv);
}

Test(redis_lease, colliding_shapes_evict_each_other_and_the_waste_is_counted)
{
	struct redis_harness_server srv = server_start();
	struct sluice_redis_options o = lopts(srv.port, 8, 1, 0);
	o.lease_slots = 1; /* every shape in one entry */
	struct sluice_redis *r = connect_to(&o);
	struct sluice_redis_options op = lopts(srv.port, 0, 0, 0);
	struct sluice_redis *plain = connect_to(&op);
	struct sluice_limit l = gcra(1000, SEC, 1000);
	struct sluice_decision d;
	const uint64_t t = 60 * SEC;

	cr_assert_eq(sluice_redis_admit(r, "a", 1, &l, 1, 1, t, &d), SLUICE_OK); /* a: 7 held */
	cr_assert_eq(sluice_redis_admit(r, "b", 1, &l, 1, 1, t, &d), SLUICE_OK); /* evicts a */
	cr_assert_eq(sluice_redis_admit(r, "a", 1, &l, 1, 1, t, &d), SLUICE_OK); /* evicts b */
	struct sluice_redis_stats s = rstats(r);
	cr_expect_eq(s.lease_grants, 3);
	cr_expect_eq(s.leased, 0);
	cr_expect_eq(s.lease_wasted, 14);
	cr_expect_eq(peek(plain, "a", &l, 1, t).remaining, 1000 - 16);
	/* One batch: seven a's spend a's lease; the eighth a finds it empty,
	 * but b, later in the batch, claims the entry (every request is
	 * matched to its entry before any take is chosen), so the eighth a
	 * goes out as it is and b takes. */
	struct sluice_redis_scope sa = { "a", 1, &l, 1 }, sb = { "b", 1, &l, 1 };
	struct sluice_redis_request reqs[9];
	struct sluice_decision out[9];
	for (int i = 0; i < 8; i++)
		reqs[i] = (struct sluice_redis_request){ &sa, 1, 1 };
	reqs[8] = (struct sluice_redis_request){ &sb, 1, 1 };
	uint64_t trips = s.round_trips;
	cr_assert_eq(sluice_redis_admit_batch(r, reqs, 9, t, out), SLUICE_OK);
	for (int i = 0; i < 9; i++)
		cr_expect(out[i].allowed && !out[i].degraded);
	s = rstats(r);
	cr_expect_eq(s.round_trips, trips + 1);
	cr_expect_eq(s.leased, 7);
	cr_expect_eq(s.lease_grants, 4);
	cr_expect_eq(s.lease_wasted, 14, "a's lease was empty when b took the entry");
	cr_expect_eq(out[8].remaining, 1000 - 16 + 7, "b's take: the server's 984 + 7 held");
	cr_expect_eq(peek(plain, "a", &l, 1, t).remaining, 1000 - 17);
	cr_expect_eq(peek(plain, "b", &l, 1, t).remaining, 1000 - 16);
	sluice_redis_destroy(plain);
	sluice_redis_destroy(r);
	server_stop(&srv);
}

/* ---- never hot: today's decisions ---- */

Test(redis_lease, never_hot_is_exactly_the_keyed_limiter)
{
	struct redis_harness_server srv = server_start();
	struct sluice_redis_options o = lopts(srv.port, 8, UINT32_MAX, 0);
	struct sluice_redis *r = connect_to(&o);
	struct sluice_limit l[2] = { gcra(5, SEC, 5), gcra(20, 60 * SEC, 8) };
	struct sluice_limiter *lim = NULL;
	cr_assert_eq(sluice_limiter_create(&lim, l, 2, NULL), SLUICE_OK);
	const char *keys[2] = { "a", "b" };
	uint64_t now = 1700000000ull * SEC;

	for (int step = 0; step < 300; step++) {
		const char *k = keys[rnd() % 2];
		uint64_t cost = rnd() % 4;
		uint64_t r1 = rnd() % 8;
		if (r1 < 6)
			now += rnd() % (300 * MS);
		else if (r1 == 6)
			now -= rnd() % SEC;
		struct sluice_decision a, b;
		cr_assert_eq(sluice_limiter_admit(lim, k, 1, cost, now, &a), SLUICE_OK);
		cr_assert_eq(sluice_redis_admit(r, k, 1, l, 2, cost, now, &b), SLUICE_OK);
		assert_same(&a, &b, step);
	}
	struct sluice_redis_stats s = rstats(r);
	cr_expect_eq(s.round_trips, 301);
	cr_expect_eq(s.leased + s.lease_grants, 0);
	sluice_limiter_destroy(lim);
	sluice_redis_destroy(r);
	server_stop(&srv);
}

/* ---- the fleet bound ---- */

/*
 * The documented bound (docs/redis.md, "Local lease"), for one limit of
 * interval T and depth tau = burst * T, H handles each holding at most one
 * lease of L units for the shape (so at most L - 1 units after its take
 * answer), leases living ttl: the admissions at times in any window
 * [t, t + W] number at most
 *     floor((W + ttl + tau) / T)                (consumption stretched by ttl)
 * and at most
 *     floor((W + tau) / T) + H * (L - 1)        (plus what was held at t).
 * times[] (sorted) are the admissions' times; returns the largest count in
 * a window of length W and checks both bounds.
 */
static uint64_t check_windows(const uint64_t *times, size_t n, uint64_t w, uint64_t t_ns,
			      uint64_t tau_ns, uint64_t ttl_ns, uint64_t h, uint64_t l)
{
	uint64_t best = 0;
	for (size_t lo = 0, hi = 0; lo < n; lo++) {
		while (hi < n && times[hi] - times[lo] <= w)
			hi++;
		if (hi - lo > best)
			best = hi - lo;
	}
	uint64_t stretched = (w + ttl_ns + tau_ns) / t_ns;
	uint64_t held = (w + tau_ns) / t_ns + h * (l - 1);
	cr_expect_leq(best, stretched, "window %llu ns: %llu admissions > stretched bound %llu",
		      (unsigned long long)w, (unsigned long long)best, (unsigned long long)stretched);
	cr_expect_leq(best, held, "window %llu ns: %llu admissions > held bound %llu",
		      (unsigned long long)w, (unsigned long long)best, (unsigned long long)held);
	return best;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

Test(redis_lease, fleet_of_handles_stays_within_the_bound)
{
	/* Four handles (two with a deny cache) on one hot key, in the caller's
	 * clock (exact and repeatable): bursts at ~10x the key's rate with
	 * short pauses that let it refill, and a favourite handle that changes
	 * every ~20 ms, so that the others sit on leased units while the
	 * bucket refills: the case the stretched bound is about. */
	enum { H = 4, L = 8, STEPS = 6000 };
	const uint64_t ttl = 50 * MS;
	struct redis_harness_server srv = server_start();
	struct sluice_redis *r[H];
	for (int i = 0; i < H; i++) {
		struct sluice_redis_options o = lopts(srv.port, L, 2, ttl);
		o.deny_cache_slots = i % 2 ? 64 : 0;
		r[i] = connect_to(&o);
	}
	const uint64_t T = MS, tau = 10 * MS;
	struct sluice_limit lim = gcra(1000, SEC, 10);
	static uint64_t times[STEPS];
	size_t n = 0;
	uint64_t now = 1700000000ull * SEC, leased = 0, denied = 0, fav_until = 0;
	int fav = 0;

	for (int step = 0; step < STEPS; step++) {
		now += rnd() % 40 == 0 ? rnd() % (20 * MS) : rnd() % (200 * 1000);
		if (now >= fav_until) {
			fav = (int)(rnd() % H);
			fav_until = now + 20 * MS;
		}
		int who = rnd() % 4 != 0 ? fav : (int)(rnd() % H);
		struct sluice_decision d;
		cr_assert_eq(sluice_redis_admit(r[who], "hot", 3, &lim, 1, 1, now, &d), SLUICE_OK);
		cr_assert(!d.degraded);
		if (d.allowed)
			times[n++] = now;
		else
			denied++;
	}
	for (int i = 0; i < H; i++)
		leased += rstats(r[i]).leased;
	cr_expect_gt(leased, 200, "leases were used (%llu)", (unsigned long long)leased);
	cr_expect_gt(denied, STEPS / 2, "the key was over its rate");
	const uint64_t ws[] = { 0, MS, 5 * MS, 10 * MS, 20 * MS, 50 * MS, 100 * MS, SEC };
	uint64_t over_gcra = 0;
	for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) {
		uint64_t best = check_windows(times, n, ws[i], T, tau, ttl, H, L);
		uint64_t gcra_bound = (ws[i] + tau) / T;
		if (best > gcra_bound)
			over_gcra += best - gcra_bound;
		cr_log_info("window %llu ms: %llu admitted, GCRA %llu, stretched %llu, held %llu",
			    (unsigned long long)(ws[i] / MS), (unsigned long long)best,
			    (unsigned long long)gcra_bound,
			    (unsigned long long)((ws[i] + ttl + tau) / T),
			    (unsigned long long)(gcra_bound + H * (L - 1)));
	}
	cr_log_info("%zu admitted, %llu denied, %llu leased", n, (unsigned long long)denied,
		    (unsigned long long)leased);
	/* The stretch is real: some window holds more than a round trip per
	 * request would ever admit (so the bound checks are not vacuous). */
	cr_expect_gt(over_gcra, 0, "no window exceeded the plain GCRA bound");
	for (int i = 0; i < H; i++)
		sluice_redis_destroy(r[i]);
	server_stop(&srv);
}

/* Threads, each with its own handle, against one key on the shared
 * monotonic clock (a caller clock all of them read). */
struct hammer {
	int port;
	uint64_t end_ns;
	uint64_t *times;
	size_t cap, n;
	uint64_t degraded, leased, denied;
};

static const uint64_t hammer_ttl = 20 * MS;

static void *hammer_run(void *arg)
{
	struct hammer *h = arg;
	struct sluice_redis_options o;
	memset(&o, 0, sizeof o);
	o.size = sizeof o;
	o.port = (uint32_t)h->port;
	o.flags = SLUICE_REDIS_CALLER_CLOCK;
	/* Generous: a call that outlives it is answered degraded, which
	 * fails the test. At 1 s one run at load 7.5, with the cluster
	 * suites beside it, saw a degraded answer (likely such a timeout;
	 * not reproduced in 8 runs). */
	o.timeout_ns = 5 * SEC;
	o.expiry_grace_ns = 600 * SEC;
	o.lease_units = 8;
	o.lease_ttl_ns = hammer_ttl;
	struct sluice_redis *r = NULL;
	if (sluice_redis_create(&r, &o) != SLUICE_OK)
		return NULL;
	struct sluice_limit l;
	memset(&l, 0, sizeof l);
	l.kind = SLUICE_LIMIT_GCRA;
	sluice_rate_init(&l.rate, 20000, SEC, 100); /* T = 50 us, tau = 5 ms */
	for (;;) {
		uint64_t now = sluice_monotonic_ns();
		if (now >= h->end_ns || h->n == h->cap)
			break;
		struct sluice_decision d;
		if (sluice_redis_admit(r, "hot", 3, &l, 1, 1, now, &d) != SLUICE_OK || d.degraded)
			h->degraded++;
		else if (d.allowed)
			h->times[h->n++] = now;
		else
			h->denied++;
	}
	struct sluice_redis_stats s;
	memset(&s, 0, sizeof s);
	s.size = sizeof s;
	sluice_redis_stats(r, &s);
	h->leased = s.leased;
	sluice_redis_destroy(r);
	return NULL;
}

Test(redis_lease, threads_hammering_one_key_stay_within_the_bound)
{
	/* SLUICE_LEASE_STRESS_MS: longer local runs (default 1 s). */
	enum { H = 4 };
	const char *env = getenv("SLUICE_LEASE_STRESS_MS");
	uint64_t ms = env != NULL ? strtoull(env, NULL, 10) : 1000;
	struct redis_harness_server srv = server_start();
	struct hammer hs[H];
	pthread_t th[H];
	uint64_t end = sluice_monotonic_ns() + ms * MS;
	for (int i = 0; i < H; i++) {
		hs[i] = (struct hammer){ .port = srv.port, .end_ns = end, .cap = 1u << 20 };
		hs[i].times = malloc(hs[i].cap * sizeof *hs[i].times);
		cr_assert_not_null(hs[i].times);
		cr_assert_eq(pthread_create(&th[i], NULL, hammer_run, &hs[i]), 0);
	}
	size_t n = 0;
	uint64_t leased = 0, denied = 0;
	for (int i = 0; i < H; i++) {
		pthread_join(th[i], NULL);
		cr_expect_eq(hs[i].degraded, 0);
		cr_expect_lt(hs[i].n, hs[i].cap);
		n += hs[i].n;
		leased += hs[i].leased;
		denied += hs[i].denied;
	}
	cr_log_info("%zu admitted, %llu denied, %llu leased", n, (unsigned long long)denied,
		    (unsigned long long)leased);
	cr_expect_gt(leased, 0, "leases were used");
	uint64_t *all = malloc((n + 1) * sizeof *all);
	cr_assert_not_null(all);
	for (int i = 0, k = 0; i < H; i++)
		for (size_t j = 0; j < hs[i].n; j++)
			all[k++] = hs[i].times[j];
	qsort(all, n, sizeof *all, cmp_u64);
	cr_expect_gt(n, 50, "admissions happened");
	const uint64_t ws[] = { 0, MS, 10 * MS, 20 * MS, 100 * MS, 500 * MS, ms * MS };
	for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++)
		check_windows(all, n, ws[i], 50 * 1000, 5 * MS, hammer_ttl, H, 8);
	free(all);
	for (int i = 0; i < H; i++)
		free(hs[i].times);
	server_stop(&srv);
}
