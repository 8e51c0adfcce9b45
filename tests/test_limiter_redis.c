/*
 * test_limiter_redis.c - the keyed limiter created on Redis
 * (sluice_redis_limiter_create(); sluice/redis.h, "Limiter on Redis")
 * against real redis-server processes that each test starts on 127.0.0.1 at
 * a free port: the same decisions as the in-process limiter for the same
 * sequences (caller clock), pipelined batches, fail modes through the
 * limiter, threads sharing one limiter with the exact bound of a limit, and
 * option validation.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <sluice.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "redis/redis_backend_internal.h"

#include "redis_server.h"
#include "redis_test_util.h"

/* ---- helpers ---- */

static struct sluice_limiter *limiter_on(const struct sluice_limit *l, size_t n,
					 const struct sluice_limiter_options *o)
{
	struct sluice_limiter *lim = NULL;
	/* NULL options: the in-process limiter to compare with. */
	cr_assert_eq(o == NULL ? sluice_limiter_create(&lim, l, n, NULL) : redis_limiter_create(&lim, l, n, o),
		     SLUICE_OK);
	cr_assert_not_null(lim);
	return lim;
}

static struct sluice_redis_stats backend_stats(struct sluice_limiter *lim)
{
	struct sluice_redis_stats s;

	memset(&s, 0, sizeof s);
	s.size = sizeof s;
	cr_assert_eq(sluice__limiter_redis_stats(lim, &s), SLUICE_OK);
	return s;
}

static struct sluice_limiter_stats lstats(struct sluice_limiter *lim)
{
	struct sluice_limiter_stats s;

	memset(&s, 0, sizeof s);
	s.size = sizeof s;
	cr_assert_eq(sluice_limiter_stats(lim, &s), SLUICE_OK);
	return s;
}

/* ---- options ---- */

Test(limiter_redis, create_validates_options)
{
	int port = free_port(); /* nothing listens: connections are refused at once */
	struct sluice_redis_options ro = ropts(port, SLUICE_REDIS_CALLER_CLOCK);
	struct sluice_limit l = gcra(10, SEC, 10);
	struct sluice_limiter *lim = (struct sluice_limiter *)&lim;
	struct sluice_limiter_options o;

	/* Options of the local table mean nothing on Redis: refused. */
	o = limiter_opts(&ro, 0);
	o.max_keys = 1;
	cr_expect_eq(redis_limiter_create(&lim, &l, 1, &o), SLUICE_EINVAL);
	cr_expect_null(lim, "*out cleared on failure");
	o = limiter_opts(&ro, 0);
	o.max_bytes = 1 << 20;
	cr_expect_eq(redis_limiter_create(&lim, &l, 1, &o), SLUICE_EINVAL);
	o = limiter_opts(&ro, 0);
	o.hash_secret = "s";
	o.hash_secret_len = 1;
	cr_expect_eq(redis_limiter_create(&lim, &l, 1, &o), SLUICE_EINVAL);
	o = limiter_opts(&ro, 0);
	o.initial_buckets = 64;
	cr_expect_eq(redis_limiter_create(&lim, &l, 1, &o), SLUICE_EINVAL);
	o = limiter_opts(&ro, 0);
	t_redis.reserved_ = 1;
	cr_expect_eq(redis_limiter_create(&lim, &l, 1, &o), SLUICE_EINVAL);
	o = limiter_opts(&ro, 0);
	o.fail_mode = 2;
	cr_expect_eq(redis_limiter_create(&lim, &l, 1, &o), SLUICE_EINVAL);
	o = limiter_opts(&ro, 0);
	o.flags = 0x80;
	cr_expect_eq(redis_limiter_create(&lim, &l, 1, &o), SLUICE_EINVAL);
	/* One fail mode: the limiter's. The backend's must stay 0. */
	struct sluice_redis_options closed = ro;
	closed.fail_mode = SLUICE_FAIL_CLOSED;
	o = limiter_opts(&closed, 0);
	cr_expect_eq(redis_limiter_create(&lim, &l, 1, &o), SLUICE_EINVAL);
	/* Connections: 1 .. SLUICE_REDIS_MAX_CONNECTIONS, none without redis. */
	o = limiter_opts(&ro, SLUICE_REDIS_MAX_CONNECTIONS + 1);
	cr_expect_eq(redis_limiter_create(&lim, &l, 1, &o), SLUICE_EINVAL);
	o = limiter_opts(NULL, 2);
	cr_expect_eq(redis_limiter_create(&lim, &l, 1, &o), SLUICE_EINVAL);
	/* Bad Redis options are the backend's EINVAL. */
	struct sluice_redis_options bad = ro;
	bad.port = 70000;
	o = limiter_opts(&bad, 0);
	cr_expect_eq(redis_limiter_create(&lim, &l, 1, &o), SLUICE_EINVAL);
	bad = ro;
	bad.size = sizeof bad - 1;
	o = limiter_opts(&bad, 0);
	cr_expect_eq(redis_limiter_create(&lim, &l, 1, &o), SLUICE_EINVAL);
	/* Policies: the same checks as in process... */
	o = limiter_opts(&ro, 0);
	cr_expect_eq(redis_limiter_create(&lim, NULL, 1, &o), SLUICE_EINVAL);
	cr_expect_eq(redis_limiter_create(&lim, &l, 0, &o), SLUICE_EINVAL);
	cr_expect_eq(redis_limiter_create(NULL, &l, 1, &o), SLUICE_EINVAL);
	struct sluice_limit many[SLUICE_LIMITER_MAX_LIMITS + 1];
	for (size_t i = 0; i < SLUICE_LIMITER_MAX_LIMITS + 1; i++)
		many[i] = l;
	cr_expect_eq(redis_limiter_create(&lim, many, SLUICE_LIMITER_MAX_LIMITS + 1, &o), SLUICE_ETOOBIG);
	struct sluice_limit zeroed;
	memset(&zeroed, 0, sizeof zeroed);
	cr_expect_eq(redis_limiter_create(&lim, &zeroed, 1, &o), SLUICE_EINVAL);
	/* ...and the backend's: a bucket deeper than it computes exactly. */
	struct sluice_limit deep = gcra(1, SLUICE_REDIS_MAX_TOLERANCE_NS, 2);
	cr_expect_eq(redis_limiter_create(&lim, &deep, 1, &o), SLUICE_ERANGE);
	/* One slots limit at most, as in process. */
	struct sluice_limit slots;
	memset(&slots, 0, sizeof slots);
	slots.kind = SLUICE_LIMIT_SLOTS;
	cr_assert_eq(sluice_slots_config_init(&slots.slots, 4, 0, 0), SLUICE_OK);
	struct sluice_limit pol[3] = { l, slots, slots };
	cr_expect_eq(redis_limiter_create(&lim, pol, 3, &o), SLUICE_EINVAL);
	lim = limiter_on(pol, 2, &o);
	sluice_limiter_destroy(lim);

	/* A server that is down is not an error of create (fail mode later),
	 * with the most connections too. */
	lim = limiter_on(&l, 1, &o);
	sluice_limiter_destroy(lim);
	o = limiter_opts(&ro, SLUICE_REDIS_MAX_CONNECTIONS);
	lim = limiter_on(&l, 1, &o);
	struct sluice_decision d;
	cr_expect_eq(sluice_limiter_admit(lim, "k", 1, 1, 0, &d), SLUICE_OK);
	cr_expect(d.degraded && d.allowed, "fail open by default");
	sluice_limiter_destroy(lim);
	o = limiter_opts(&ro, 0);
	sluice_limiter_destroy(NULL);

	/* A limiter that is not on Redis has no backend counters. */
	struct sluice_limiter_options v1;
	memset(&v1, 0, sizeof v1);
	v1.size = sizeof v1;
	v1.max_keys = 10;
	cr_assert_eq(sluice_limiter_create(&lim, &l, 1, &v1), SLUICE_OK);
	struct sluice_redis_stats rs;
	memset(&rs, 0, sizeof rs);
	rs.size = sizeof rs;
	cr_expect_eq(sluice__limiter_redis_stats(lim, &rs), SLUICE_EINVAL, "not on Redis");
	sluice_limiter_destroy(lim);
	/* Sizes of the Redis options other than this version's. */
	o = limiter_opts(&ro, 0);
	t_redis.size = sizeof t_redis - 1;
	cr_expect_eq(redis_limiter_create(&lim, &l, 1, &o), SLUICE_EINVAL);
	o = limiter_opts(&ro, 0);
	t_redis.tag_scope = "ip";
	cr_expect_eq(redis_limiter_create(&lim, &l, 1, &o), SLUICE_EINVAL, "a tag scope is the engine's");
	o = limiter_opts(&ro, 0);
	cr_expect_eq(sluice_redis_limiter_create(&lim, &l, 1, &o, NULL), SLUICE_EINVAL);
}

/* A kind is accepted on Redis exactly when the backend evaluates it: the
 * limiter asks the backend, so this holds before and after new kinds land. */
Test(limiter_redis, kinds_follow_the_backend)
{
	int port = free_port();
	struct sluice_redis_options ro = ropts(port, SLUICE_REDIS_CALLER_CLOCK);
	struct sluice_limiter_options o = limiter_opts(&ro, 1);
	struct sluice_redis *r = NULL;
	cr_assert_eq(sluice_redis_create(&r, &ro), SLUICE_OK);

	struct sluice_limit kinds[3];
	memset(kinds, 0, sizeof kinds);
	kinds[0].kind = SLUICE_LIMIT_SLIDING_COUNTER;
	cr_assert_eq(sluice_window_counter_config_init(&kinds[0].counter, 10, SEC), SLUICE_OK);
	kinds[1].kind = SLUICE_LIMIT_SLIDING_LOG;
	cr_assert_eq(sluice_window_log_config_init(&kinds[1].log, 10, SEC), SLUICE_OK);
	kinds[2].kind = SLUICE_LIMIT_CALENDAR;
	cr_assert_eq(sluice_calendar_config_init(&kinds[2].calendar, 10, 3600 * SEC), SLUICE_OK);
	for (int k = 0; k < 3; k++) {
		struct sluice_decision d;
		int backend = sluice_redis_admit(r, "x", 1, &kinds[k], 1, 0, 0, &d);
		struct sluice_limiter *lim = NULL;
		int rc = redis_limiter_create(&lim, &kinds[k], 1, &o);
		cr_expect_eq(rc, backend == SLUICE_EINVAL ? SLUICE_EUNSUPPORTED : SLUICE_OK,
			     "kind %u: backend %d, limiter %d", kinds[k].kind, backend, rc);
		sluice_limiter_destroy(lim);
	}
	sluice_redis_destroy(r);
}

/* ---- same decisions as in process ---- */

Test(limiter_redis, differential_against_the_in_process_limiter)
{
	struct redis_harness_server srv = server_start();
	struct sluice_redis_options ro = ropts(srv.port, SLUICE_REDIS_CALLER_CLOCK);
	struct sluice_limiter_options o = limiter_opts(&ro, 2);
	struct sluice_limit pol[2] = { gcra(5, SEC, 5), gcra(20, MIN, 10) };
	struct sluice_limiter *mem = limiter_on(pol, 2, NULL);
	struct sluice_limiter *red = limiter_on(pol, 2, &o);
	char keys[8][16];
	uint64_t now = 1700000000ull * SEC;
	int step = 0;

	for (int k = 0; k < 8; k++)
		snprintf(keys[k], sizeof keys[k], "user:%d", k);
	snprintf(keys[7], sizeof keys[7], "%s", ""); /* the empty key is a key */
	for (int it = 0; it < 500; it++) {
		const char *key = keys[rnd() % 8];
		size_t klen = strlen(key);
		uint64_t cost = rnd() % 4;
		struct sluice_decision a, b;
		switch (rnd() % 10) {
		case 0: /* time going backwards: denies more, never less */
			now -= rnd() % (500 * MS);
			/* fall through */
		default:
			cr_assert_eq(sluice_limiter_admit(mem, key, klen, cost, now, &a), SLUICE_OK);
			cr_assert_eq(sluice_limiter_admit(red, key, klen, cost, now, &b), SLUICE_OK);
			assert_same(&a, &b, step++);
			break;
		case 1:
			cr_assert_eq(sluice_limiter_peek(mem, key, klen, now, &a), SLUICE_OK);
			cr_assert_eq(sluice_limiter_peek(red, key, klen, now, &b), SLUICE_OK);
			assert_same(&a, &b, step++);
			cr_assert(b.allowed);
			break;
		case 2: {
			sluice_slot_handle ha = 1, hb = 1;
			cr_assert_eq(sluice_limiter_acquire(mem, key, klen, cost, now, &a, &ha), SLUICE_OK);
			cr_assert_eq(sluice_limiter_acquire(red, key, klen, cost, now, &b, &hb), SLUICE_OK);
			assert_same(&a, &b, step++);
			cr_assert_eq(hb, SLUICE_SLOT_NONE);
			cr_assert_eq(ha, hb);
			break;
		}
		case 3: { /* a batch: the same key may come twice */
			struct sluice_limiter_request rq[24];
			struct sluice_decision da[24], db[24];
			size_t n = rnd() % 24;
			for (size_t j = 0; j < n; j++) {
				const char *kj = keys[rnd() % 8];
				rq[j] = (struct sluice_limiter_request){ kj, strlen(kj), rnd() % 3 };
			}
			cr_assert_eq(sluice_limiter_admit_batch(mem, rq, n, now, da), SLUICE_OK);
			cr_assert_eq(sluice_limiter_admit_batch(red, rq, n, now, db), SLUICE_OK);
			for (size_t j = 0; j < n; j++)
				assert_same(&da[j], &db[j], step++);
			break;
		}
		}
		now += rnd() % (300 * MS);
	}
	struct sluice_limiter_stats sa = lstats(mem), sb = lstats(red);
	cr_expect_eq(sa.admitted, sb.admitted);
	cr_expect_eq(sa.denied, sb.denied);
	cr_expect_eq(sb.degraded, 0);
	cr_expect_gt(sb.admitted, 100);
	cr_expect_gt(sb.denied, 100);
	cr_expect_eq(sb.inserted, 0, "keys live on Redis");
	cr_expect_eq(sb.live_keys, 0);
	cr_expect_eq(sb.bytes, 0);
	struct sluice_redis_stats rs = backend_stats(red);
	cr_expect_eq(rs.degraded, 0);
	cr_expect_eq(rs.connects, 2, "one connection per pool slot, made at create");
	sluice_limiter_destroy(red);
	sluice_limiter_destroy(mem);
	server_stop(&srv);
}

Test(limiter_redis, batch_is_pipelined_and_validated_first)
{
	struct redis_harness_server srv = server_start();
	struct sluice_redis_options ro = ropts(srv.port, SLUICE_REDIS_CALLER_CLOCK);
	struct sluice_limiter_options o = limiter_opts(&ro, 1);
	struct sluice_limit l = gcra(100, SEC, 100);
	struct sluice_limiter *mem = limiter_on(&l, 1, NULL);
	struct sluice_limiter *red = limiter_on(&l, 1, &o);
	enum { N = 300 };
	static struct sluice_limiter_request rq[N];
	static struct sluice_decision da[N], db[N];
	static char keys[N][8];
	uint64_t now = 5 * SEC;

	for (int i = 0; i < N; i++) {
		snprintf(keys[i], sizeof keys[i], "b%d", i % 7);
		rq[i] = (struct sluice_limiter_request){ keys[i], strlen(keys[i]), 1 + (uint64_t)(i % 3) };
	}
	uint64_t rt0 = backend_stats(red).round_trips;
	cr_assert_eq(sluice_limiter_admit_batch(mem, rq, N, now, da), SLUICE_OK);
	cr_assert_eq(sluice_limiter_admit_batch(red, rq, N, now, db), SLUICE_OK);
	for (int i = 0; i < N; i++)
		assert_same(&da[i], &db[i], i);
	cr_expect_eq(backend_stats(red).round_trips - rt0, 3, "128 requests per round trip: 300 in 3");

	/* One bad key anywhere: nothing is sent, nothing consumed. */
	rq[N - 1].key = NULL;
	cr_expect_eq(sluice_limiter_admit_batch(red, rq, N, now, db), SLUICE_EKEY);
	rq[N - 1].key = keys[N - 1];
	rq[N - 1].key_len = SLUICE_LIMITER_MAX_KEY + 1;
	cr_expect_eq(sluice_limiter_admit_batch(red, rq, N, now, db), SLUICE_EKEY);
	cr_expect_eq(backend_stats(red).round_trips - rt0, 3);
	cr_expect_eq(sluice_limiter_admit_batch(red, rq, 0, now, NULL), SLUICE_OK, "n == 0: no-op");
	cr_expect_eq(sluice_limiter_admit_batch(red, NULL, 1, now, db), SLUICE_EINVAL);
	cr_expect_eq(sluice_limiter_admit_batch(NULL, rq, 1, now, db), SLUICE_EINVAL);
	/* The state is as the first batch left it. */
	struct sluice_decision a, b;
	cr_assert_eq(sluice_limiter_peek(mem, "b0", 2, now, &a), SLUICE_OK);
	cr_assert_eq(sluice_limiter_peek(red, "b0", 2, now, &b), SLUICE_OK);
	assert_same(&a, &b, 0);
	sluice_limiter_destroy(red);
	sluice_limiter_destroy(mem);
	server_stop(&srv);
}

/* With the deny cache on, a request of a batch is judged after the batch's
 * earlier admissions of its key, as when the calls are made one by one:
 * GCRA 1/s burst 10, admit 5, then a batch of costs 5 and 6: the 6 is
 * denied with remaining 0, retry after 6 s, reset 10 s (not from the state
 * before the batch: remaining 5, retry after 1 s). A request whose key an
 * earlier request of the batch only denied may still be denied locally. */
Test(limiter_redis, batch_with_deny_cache_sees_its_own_earlier_admissions)
{
	struct redis_harness_server srv = server_start();
	struct sluice_redis_options ro = ropts(srv.port, SLUICE_REDIS_CALLER_CLOCK);
	ro.deny_cache_slots = 64;
	struct sluice_limiter_options o = limiter_opts(&ro, 1);
	struct sluice_limit l = gcra(1, SEC, 10);
	struct sluice_limiter *mem = limiter_on(&l, 1, NULL);
	struct sluice_limiter *red = limiter_on(&l, 1, &o);
	struct sluice_limiter_request rq[2] = { { "k", 1, 5 }, { "k", 1, 6 } };
	struct sluice_decision a, b, da[2], db[2];
	uint64_t now = 100 * SEC;

	cr_assert_eq(sluice_limiter_admit(mem, "k", 1, 5, now, &a), SLUICE_OK);
	cr_assert_eq(sluice_limiter_admit(red, "k", 1, 5, now, &b), SLUICE_OK);
	assert_same(&a, &b, 0);
	cr_assert_eq(sluice_limiter_admit_batch(mem, rq, 2, now, da), SLUICE_OK);
	cr_assert_eq(sluice_limiter_admit_batch(red, rq, 2, now, db), SLUICE_OK);
	cr_expect(db[0].allowed);
	cr_expect_not(db[1].allowed);
	cr_expect_eq(db[1].remaining, 0);
	cr_expect_eq(db[1].retry_after_ns, 6 * SEC);
	cr_expect_eq(db[1].reset_ns, 10 * SEC);
	assert_same(&da[0], &db[0], 1);
	assert_same(&da[1], &db[1], 2);

	/* The bucket is empty now: a batch of two denials is answered by the
	 * cache alone (the first request's denial writes nothing). */
	struct sluice_redis_stats s0 = backend_stats(red);
	rq[0].cost = 6;
	cr_assert_eq(sluice_limiter_admit_batch(mem, rq, 2, now, da), SLUICE_OK);
	cr_assert_eq(sluice_limiter_admit_batch(red, rq, 2, now, db), SLUICE_OK);
	assert_same(&da[0], &db[0], 3);
	assert_same(&da[1], &db[1], 4);
	struct sluice_redis_stats s1 = backend_stats(red);
	cr_expect_eq(s1.round_trips - s0.round_trips, 0);
	cr_expect_eq(s1.cache_hits - s0.cache_hits, 2);
	sluice_limiter_destroy(red);
	sluice_limiter_destroy(mem);
	server_stop(&srv);
}

Test(limiter_redis, single_calls_validate_like_the_limiter)
{
	struct redis_harness_server srv = server_start();
	struct sluice_redis_options ro = ropts(srv.port, 0);
	struct sluice_limiter_options o = limiter_opts(&ro, 1);
	struct sluice_limit l = gcra(10, SEC, 10);
	struct sluice_limiter *red = limiter_on(&l, 1, &o);
	struct sluice_decision d;
	sluice_slot_handle h = 7;
	static char big[SLUICE_LIMITER_MAX_KEY + 1];

	cr_expect_eq(sluice_limiter_admit(red, NULL, 0, 1, 0, &d), SLUICE_EKEY);
	cr_expect_eq(sluice_limiter_admit(red, big, sizeof big, 1, 0, &d), SLUICE_EKEY);
	cr_expect_eq(sluice_limiter_admit(red, big, sizeof big - 1, 1, 0, &d), SLUICE_OK,
		     "SLUICE_LIMITER_MAX_KEY bytes is a valid key");
	cr_expect_eq(sluice_limiter_admit(red, "k", 1, 1, 0, NULL), SLUICE_EINVAL);
	cr_expect_eq(sluice_limiter_admit(NULL, "k", 1, 1, 0, &d), SLUICE_EINVAL);
	cr_expect_eq(sluice_limiter_acquire(red, "k", 1, 1, 0, &d, NULL), SLUICE_EINVAL);
	cr_expect_eq(sluice_limiter_acquire(red, "k", 1, 1, 0, &d, &h), SLUICE_OK);
	cr_expect(d.allowed && !d.degraded, "server clock: now_ns is ignored");
	cr_expect_eq(h, SLUICE_SLOT_NONE);
	cr_expect_eq(sluice_limiter_release(red, "k", 1, h), SLUICE_EINVAL, "no slots in the policy");
	cr_expect_eq(sluice_limiter_release(NULL, "k", 1, h), SLUICE_EINVAL);
	/* cost > burst: never, as in process. */
	cr_expect_eq(sluice_limiter_admit(red, "k", 1, 11, 0, &d), SLUICE_OK);
	cr_expect(!d.allowed);
	cr_expect_eq(d.retry_after_ns, SLUICE_NEVER);
	/* Maintenance: nothing to do, the state machine is kept. */
	size_t reclaimed = 99;
	cr_expect_eq(sluice_limiter_sweep(red, 0, 100, &reclaimed), SLUICE_OK);
	cr_expect_eq(reclaimed, 0);
	cr_expect_eq(sluice_limiter_maintenance_start(red, MS, 10, NULL, NULL), SLUICE_OK);
	cr_expect_eq(sluice_limiter_maintenance_start(red, MS, 10, NULL, NULL), SLUICE_ESTATE);
	cr_expect_eq(sluice_limiter_maintenance_stop(red), SLUICE_OK);
	cr_expect_eq(sluice_limiter_maintenance_stop(red), SLUICE_ESTATE);
	cr_expect_eq(sluice_limiter_maintenance_start(red, 0, 10, NULL, NULL), SLUICE_EINVAL);
	struct sluice_limiter_stats s;
	s.size = sizeof s - 1;
	cr_expect_eq(sluice_limiter_stats(red, &s), SLUICE_EINVAL);
	s = lstats(red);
	cr_expect_eq(s.admitted, 2);
	cr_expect_eq(s.denied, 1);
	/* Redis holds the key, with a TTL (it expires by itself). */
	cr_expect_eq(side_int(srv.port, "EXISTS", "sluice:k"), 1);
	cr_expect_gt(side_int(srv.port, "PTTL", "sluice:k"), 0);
	sluice_limiter_destroy(red);
	server_stop(&srv);
}

/* ---- failures reach the caller through the limiter ---- */

static void server_killed(uint32_t fail_mode)
{
	struct redis_harness_server srv = server_start();
	struct sluice_redis_options ro = ropts(srv.port, SLUICE_REDIS_CALLER_CLOCK);
	ro.backoff_min_ns = 200 * MS;
	ro.backoff_max_ns = 400 * MS;
	struct sluice_limiter_options o = limiter_opts(&ro, 1);
	o.fail_mode = fail_mode;
	struct sluice_limit pol[2] = { gcra(100, SEC, 100), gcra(7, MIN, 7) };
	struct sluice_limiter *red = limiter_on(pol, 2, &o);
	struct sluice_decision d;

	cr_assert_eq(sluice_limiter_admit(red, "k", 1, 1, SEC, &d), SLUICE_OK);
	cr_expect(d.allowed && !d.degraded);
	server_stop(&srv);
	for (int i = 0; i < 3; i++) {
		uint64_t t0 = sluice_monotonic_ns();
		cr_assert_eq(sluice_limiter_admit(red, "k", 1, 1, SEC, &d), SLUICE_OK);
		uint64_t took = sluice_monotonic_ns() - t0;
		cr_expect(d.degraded, "call %d", i);
		cr_expect_lt(took, ro.timeout_ns + 100 * MS, "call %d took %llu ns", i,
			     (unsigned long long)took);
		cr_expect_eq(d.allowed, fail_mode == SLUICE_FAIL_OPEN);
		cr_expect_eq(d.reason, fail_mode == SLUICE_FAIL_OPEN ? SLUICE_REASON_NONE
								      : SLUICE_REASON_CAPACITY);
		cr_expect_eq(d.limit, 100, "the first limit's quota, as in process");
		cr_expect_eq(d.retry_after_ns, 0);
	}
	/* A peek answers allowed whatever the mode; batches degrade too. */
	cr_assert_eq(sluice_limiter_peek(red, "k", 1, SEC, &d), SLUICE_OK);
	cr_expect(d.allowed && d.degraded);
	struct sluice_limiter_request rq[2] = { { "a", 1, 1 }, { "b", 1, 0 } };
	struct sluice_decision db[2];
	cr_assert_eq(sluice_limiter_admit_batch(red, rq, 2, SEC, db), SLUICE_OK);
	cr_expect(db[0].degraded && db[1].degraded);
	cr_expect_eq(db[0].allowed, fail_mode == SLUICE_FAIL_OPEN);
	cr_expect(db[1].allowed, "a peek in a batch");
	struct sluice_limiter_stats s = lstats(red);
	cr_expect_eq(s.degraded, 4, "three admits and one batch admit; peeks are not counted");
	cr_expect_eq(s.admitted, 1);
	cr_expect_eq(s.denied, 0);
	sluice_limiter_destroy(red);
}

Test(limiter_redis, server_killed_fail_open)
{
	server_killed(SLUICE_FAIL_OPEN);
}

Test(limiter_redis, server_killed_fail_closed)
{
	server_killed(SLUICE_FAIL_CLOSED);
}

/* ---- threads sharing one limiter ---- */

struct worker {
	struct sluice_limiter *lim;
	int calls;
	uint64_t admitted;
	uint64_t denied;
	int errors;
};

static void *work(void *arg)
{
	struct worker *w = arg;
	for (int i = 0; i < w->calls; i++) {
		struct sluice_decision d;
		int rc;
		if (i % 5 == 4) {
			struct sluice_limiter_request rq[3] = { { "hot", 3, 1 }, { "hot", 3, 1 }, { "hot", 3, 0 } };
			struct sluice_decision db[3];
			rc = sluice_limiter_admit_batch(w->lim, rq, 3, 0, db);
			for (int j = 0; j < 2 && rc == SLUICE_OK; j++) {
				w->admitted += db[j].allowed && !db[j].degraded;
				w->denied += !db[j].allowed;
			}
		} else {
			rc = sluice_limiter_admit(w->lim, "hot", 3, 1, 0, &d);
			if (rc == SLUICE_OK) {
				w->admitted += d.allowed && !d.degraded;
				w->denied += !d.allowed;
			}
		}
		w->errors += rc != SLUICE_OK;
	}
	return NULL;
}

Test(limiter_redis, threads_share_one_limiter_and_the_bound_is_exact)
{
	struct redis_harness_server srv = server_start();
	/* The server's clock: 200 per hour refills one unit per 18 s, and
	 * the test takes well under a second, so exactly 200 are admitted. */
	struct sluice_redis_options ro = ropts(srv.port, 0);
	struct sluice_limiter_options o = limiter_opts(&ro, 2);
	struct sluice_limit l = gcra(200, 3600 * SEC, 200);
	struct sluice_limiter *red = limiter_on(&l, 1, &o);
	enum { THREADS = 4 };
	struct worker w[THREADS];
	pthread_t t[THREADS];

	uint64_t t0 = sluice_monotonic_ns();
	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){ red, 100, 0, 0, 0 };
		cr_assert_eq(pthread_create(&t[i], NULL, work, &w[i]), 0);
	}
	uint64_t admitted = 0, denied = 0;
	for (int i = 0; i < THREADS; i++) {
		pthread_join(t[i], NULL);
		cr_expect_eq(w[i].errors, 0);
		admitted += w[i].admitted;
		denied += w[i].denied;
	}
	uint64_t took = sluice_monotonic_ns() - t0;
	cr_assert_lt(took, 18 * SEC, "the bound below assumes no refill");
	cr_expect_eq(admitted, 200, "admitted %llu", (unsigned long long)admitted);
	cr_expect_eq(admitted + denied, THREADS * (80 + 20 * 2));
	struct sluice_limiter_stats s = lstats(red);
	cr_expect_eq(s.admitted, admitted);
	cr_expect_eq(s.denied, denied);
	cr_expect_eq(s.degraded, 0);
	struct sluice_decision d;
	cr_assert_eq(sluice_limiter_peek(red, "hot", 3, 0, &d), SLUICE_OK);
	cr_expect_eq(d.remaining, 0);
	sluice_limiter_destroy(red);
	server_stop(&srv);
}

/* ---- a frozen server and a busy pool: bounded waits ---- */

/* One admit on the frozen pool's limiter: fail closed answers denied,
 * degraded, by capacity, naming the limit. */
static int frozen_call(void *ctx, bool *as_expected)
{
	struct sluice_decision d;
	int rc = sluice_limiter_admit(ctx, "k", 1, 1, SEC, &d);
	*as_expected = rc == SLUICE_OK && d.degraded && !d.allowed && d.reason == SLUICE_REASON_CAPACITY &&
		       d.limit == 100;
	return rc;
}

Test(limiter_redis, busy_pool_answers_by_the_fail_mode_within_twice_the_timeout)
{
	struct redis_harness_server srv = server_start();
	struct sluice_redis_options ro = ropts(srv.port, SLUICE_REDIS_CALLER_CLOCK);
	ro.timeout_ns = 500 * MS; /* margins below: see the bound */
	/* Reconnect at every call: each call then blocks its full timeout
	 * on the frozen server (TCP still accepts), the worst case for the
	 * threads queued behind it on the one connection. */
	ro.backoff_min_ns = 1;
	ro.backoff_max_ns = 1;
	struct sluice_limiter_options o = limiter_opts(&ro, 1);
	o.fail_mode = SLUICE_FAIL_CLOSED;
	struct sluice_limit l = gcra(100, SEC, 100);
	struct sluice_limiter *red = limiter_on(&l, 1, &o);
	struct sluice_decision d;
	cr_assert_eq(sluice_limiter_admit(red, "k", 1, 1, SEC, &d), SLUICE_OK);
	cr_assert(d.allowed && !d.degraded);

	kill(srv.pid, SIGSTOP);
	uint64_t worst;
	int degraded;
	frozen_run(frozen_call, red, &worst, &degraded);
	/* Bounded: one timeout waiting for the connection, one for the
	 * call: 1 s. Without the bound a thread queues behind the others'
	 * calls on the one connection: up to 11 calls of 0.5 s. 2 s leaves a
	 * second for a loaded CI machine. */
	cr_expect_lt(worst, 2 * ro.timeout_ns + SEC, "worst call %llu ms",
		     (unsigned long long)(worst / MS));
	cr_expect_eq(degraded, FROZEN_THREADS * FROZEN_CALLS, "every answer by the fail mode (closed)");
	struct sluice_limiter_stats s = lstats(red);
	cr_expect_eq(s.degraded, FROZEN_THREADS * FROZEN_CALLS);
	cr_expect_eq(s.admitted, 1);
	sluice_limiter_destroy(red);
	server_stop(&srv);
}

/* ---- concurrency slots: acquire and release as in process ---- */

Test(limiter_redis, slots_differential_acquire_and_release)
{
	struct redis_harness_server srv = server_start();
	struct sluice_redis_options ro = ropts(srv.port, SLUICE_REDIS_CALLER_CLOCK);
	struct sluice_limiter_options o = limiter_opts(&ro, 2);
	struct sluice_limit pol[2];
	pol[0] = gcra(50, SEC, 20);
	memset(&pol[1], 0, sizeof pol[1]);
	pol[1].kind = SLUICE_LIMIT_SLOTS;
	cr_assert_eq(sluice_slots_config_init(&pol[1].slots, 3, 0, SEC), SLUICE_OK);
	struct sluice_limiter *mem = limiter_on(pol, 2, NULL);
	struct sluice_limiter *red = limiter_on(pol, 2, &o);
	enum { KEYS = 3, HELD = 64 };
	sluice_slot_handle ha[KEYS][HELD], hb[KEYS][HELD];
	int nheld[KEYS] = { 0 };
	bool seen[KEYS] = { false };
	sluice_slot_handle any_a = SLUICE_SLOT_NONE, any_b = SLUICE_SLOT_NONE;
	const char *keys[KEYS] = { "s0", "s1", "s2" };
	uint64_t now = 1700000000ull * SEC;
	int step = 0, admitted = 0, concurrency = 0, released = 0;

	for (int it = 0; it < 500; it++) {
		int k = (int)(rnd() % KEYS);
		struct sluice_decision a, b;
		int ra, rb;
		switch (rnd() % 6) {
		case 0:
		case 1:
		case 2: {
			sluice_slot_handle x, y;
			uint64_t cost = rnd() % 3;
			cr_assert_eq(sluice_limiter_acquire(mem, keys[k], 2, cost, now, &a, &x), SLUICE_OK);
			cr_assert_eq(sluice_limiter_acquire(red, keys[k], 2, cost, now, &b, &y), SLUICE_OK);
			assert_same(&a, &b, step++);
			cr_assert_eq(x == SLUICE_SLOT_NONE, y == SLUICE_SLOT_NONE, "step %d: handle", step);
			admitted += b.allowed && cost > 0;
			seen[k] = seen[k] || (b.allowed && cost > 0);
			concurrency += b.reason == SLUICE_REASON_CONCURRENCY;
			if (y != SLUICE_SLOT_NONE) {
				any_a = x;
				any_b = y;
			}
			if (x != SLUICE_SLOT_NONE && nheld[k] < HELD) {
				ha[k][nheld[k]] = x;
				hb[k][nheld[k]++] = y;
			}
			break;
		}
		case 3: /* complete a request */
			if (nheld[k] == 0)
				break;
			{
				int j = (int)(rnd() % (uint64_t)nheld[k]);
				ra = sluice_limiter_release(mem, keys[k], 2, ha[k][j]);
				rb = sluice_limiter_release(red, keys[k], 2, hb[k][j]);
				cr_assert_eq(ra, SLUICE_OK);
				cr_assert_eq(rb, ra, "step %d: release %d vs %d", step, ra, rb);
				/* Twice: already released, on both. */
				ra = sluice_limiter_release(mem, keys[k], 2, ha[k][j]);
				rb = sluice_limiter_release(red, keys[k], 2, hb[k][j]);
				cr_assert_eq(ra, SLUICE_EDOUBLE);
				cr_assert_eq(rb, ra, "step %d: double release %d vs %d", step, ra, rb);
				ha[k][j] = ha[k][nheld[k] - 1];
				hb[k][j] = hb[k][--nheld[k]];
				released++;
			}
			break;
		case 4:
			cr_assert_eq(sluice_limiter_peek(mem, keys[k], 2, now, &a), SLUICE_OK);
			cr_assert_eq(sluice_limiter_peek(red, keys[k], 2, now, &b), SLUICE_OK);
			assert_same(&a, &b, step++);
			break;
		default: /* admit refuses slot policies; NONE is no handle */
			cr_assert_eq(sluice_limiter_admit(red, keys[k], 2, 1, now, &b), SLUICE_EINVAL);
			/* ENOTFOUND on a key never acquired, else ESTALE. */
			ra = sluice_limiter_release(mem, keys[k], 2, SLUICE_SLOT_NONE);
			rb = sluice_limiter_release(red, keys[k], 2, SLUICE_SLOT_NONE);
			cr_assert_eq(rb, ra, "step %d: release(NONE) %d vs %d", step, ra, rb);
			cr_assert_eq(ra, seen[k] ? SLUICE_ESTALE : SLUICE_ENOTFOUND, "step %d", step);
			break;
		}
		now += rnd() % (50 * MS);
	}
	cr_expect_gt(admitted, 50);
	cr_expect_gt(concurrency, 10, "the slots governed some denials");
	cr_expect_gt(released, 30);
	/* A key never seen has no slot to give back. */
	cr_assert_neq(any_b, SLUICE_SLOT_NONE);
	cr_expect_eq(sluice_limiter_release(red, "zz", 2, any_b), SLUICE_ENOTFOUND);
	cr_expect_eq(sluice_limiter_release(mem, "zz", 2, any_a), SLUICE_ENOTFOUND);
	struct sluice_limiter_request rq = { "s0", 2, 1 };
	struct sluice_decision db;
	cr_expect_eq(sluice_limiter_admit_batch(red, &rq, 1, now, &db), SLUICE_EINVAL);
	sluice_limiter_destroy(red);
	sluice_limiter_destroy(mem);
	server_stop(&srv);
}
