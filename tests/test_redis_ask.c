/*
 * test_redis_ask.c - the Redis backend on a Redis Cluster whose slot is
 * being migrated (docs/redis.md, "ASK"): three redis-server cluster nodes on
 * loopback ports, one slot moved from its owner to another node with
 * CLUSTER SETSLOT ... MIGRATING / IMPORTING and MIGRATE, the way
 * redis-cli --cluster reshard does it, while a handle keeps deciding.
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

#include "redis_server.h"
#include "redis_test_util.h"

/* Three cluster nodes on loopback ports, slots in three ranges, met and
 * cluster_state:ok; their ids and ports (as strings). */
static void cluster_up(struct redis_harness_server n[3], char id[3][64], char port[3][16])
{
	cluster_spawn(n);
	for (int i = 0; i < 3; i++) {
		snprintf(port[i], sizeof port[i], "%d", n[i].port);
		redisReply *rep = side(n[i].port, "CLUSTER MYID", NULL);
		cr_assert(rep->type == REDIS_REPLY_STRING && rep->len < 64);
		memcpy(id[i], rep->str, rep->len + 1);
		freeReplyObject(rep);
	}
	cluster_form(n);
}

/* All fields of a hash on one node (asked), "f=v;" sorted by field ("" if
 * none). */
static void hash_of(int port, const char *key, char *buf, size_t cap)
{
	struct timeval tv = { 1, 0 };
	redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
	cr_assert(c != NULL && c->err == 0);
	/* ASKING: the node may be importing the key's slot. */
	freeReplyObject(redisCommand(c, "ASKING"));
	redisReply *rep = redisCommand(c, "HGETALL %s", key);
	redisFree(c);
	cr_assert_not_null(rep);
	cr_assert_eq(rep->type, REDIS_REPLY_ARRAY, "HGETALL %s: %s", key,
		     rep->type == REDIS_REPLY_ERROR ? rep->str : "not an array");
	size_t n = rep->elements / 2, used = 0, order[64];
	cr_assert_leq(n, 64);
	for (size_t i = 0; i < n; i++) { /* insertion sort of the pair indexes */
		size_t q = i;
		for (; q > 0 && strcmp(rep->element[2 * order[q - 1]]->str, rep->element[2 * i]->str) > 0; q--)
			order[q] = order[q - 1];
		order[q] = i;
	}
	buf[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		used += (size_t)snprintf(buf + used, cap - used, "%s=%s;", rep->element[2 * order[i]]->str,
					 rep->element[2 * order[i] + 1]->str);
		cr_assert_lt(used, cap);
	}
	freeReplyObject(rep);
}

Test(redis_ask, migrating_slot_is_followed_by_ask_without_changing_the_map, .fini = cluster_cleanup)
{
	struct redis_harness_server n[3];
	char id[3][64], port[3][16];
	cluster_up(n, id, port);

	struct sluice_redis_options o;
	memset(&o, 0, sizeof o);
	o.size = sizeof o;
	o.port = (uint32_t)n[0].port;
	o.flags = SLUICE_REDIS_CALLER_CLOCK | SLUICE_REDIS_CLUSTER;
	o.timeout_ns = 500 * MS;
	o.expiry_grace_ns = 600 * SEC;
	struct sluice_redis *r = NULL;
	cr_assert_eq(sluice_redis_create(&r, &o), SLUICE_OK);

	/* The slot of tag {m}, its owner a and the node b it moves to. */
	long long slot = side_fmt_int(n[0].port, "CLUSTER KEYSLOT %s", "sluice:{m}");
	int a = owner_of(slot), b = (a + 1) % 3;
	char slotstr[16];
	snprintf(slotstr, sizeof slotstr, "%lld", slot);

	struct sluice_limit l = gcra(10, SEC, 10);
	struct sluice_gcra cell, cell_x;
	sluice_gcra_init(&cell);
	sluice_gcra_init(&cell_x);
	struct sluice_decision want, got;
	uint64_t now = 1700000000ull * SEC;
	int step = 0;
	/* Before the migration: {m} and {m}:y live on a. */
	for (int i = 0; i < 3; i++, step++) {
		sluice_gcra_admit(&cell, &l.rate, now, 1, &want);
		cr_assert_eq(sluice_redis_admit(r, "{m}", 3, &l, 1, 1, now, &got), SLUICE_OK);
		assert_same(&want, &got, step);
	}
	cr_assert_eq(sluice_redis_admit(r, "{m}:y", 5, &l, 1, 1, now, &got), SLUICE_OK);
	cr_expect(got.allowed && !got.degraded);

	/* Start moving the slot from a to b. While {m} is still on a, a
	 * answers it itself: no ASK. */
	side_ok(n[b].port, "CLUSTER SETSLOT %s IMPORTING %s", slotstr, id[a]);
	side_ok(n[a].port, "CLUSTER SETSLOT %s MIGRATING %s", slotstr, id[b]);
	now += 50 * MS;
	sluice_gcra_admit(&cell, &l.rate, now, 1, &want);
	cr_assert_eq(sluice_redis_admit(r, "{m}", 3, &l, 1, 1, now, &got), SLUICE_OK);
	assert_same(&want, &got, step++);
	cr_expect_eq(rstats(r).ask, 0);

	/* Move {m} (not {m}:y) to b. Now a answers ASK for it. */
	redisReply *rep = side_fmt(n[a].port, "MIGRATE 127.0.0.1 %s sluice:{m} 0 5000", port[b]);
	cr_assert(rep->type == REDIS_REPLY_STATUS, "MIGRATE: %s", rep->type == REDIS_REPLY_ERROR ? rep->str : "?");
	freeReplyObject(rep);
	cr_expect_eq(side_fmt_int(n[b].port, "CLUSTER COUNTKEYSINSLOT %s", slotstr), 1);
	struct sluice_redis_stats s0 = rstats(r);
	for (int i = 0; i < 12; i++, step++) {
		now += 30 * MS;
		sluice_gcra_admit(&cell, &l.rate, now, 1 + i % 2, &want);
		cr_assert_eq(sluice_redis_admit(r, "{m}", 3, &l, 1, 1 + i % 2, now, &got), SLUICE_OK);
		assert_same(&want, &got, step);
	}
	struct sluice_redis_stats s = rstats(r);
	cr_expect_eq(s.ask - s0.ask, 12, "every call asked: the map still points at a");
	cr_expect_eq(s.moved, s0.moved, "ASK changes no slot");
	cr_expect_eq(s.round_trips - s0.round_trips, 24, "the call to a, then ASKING + call to b");
	cr_expect_eq(s.degraded, 0);

	/* A new key of the slot: a does not have it, so b creates it. */
	now += 30 * MS;
	sluice_gcra_admit(&cell_x, &l.rate, now, 2, &want);
	cr_assert_eq(sluice_redis_admit(r, "{m}:x", 5, &l, 1, 2, now, &got), SLUICE_OK);
	assert_same(&want, &got, step++);
	cr_expect_eq(side_fmt_int(n[b].port, "CLUSTER COUNTKEYSINSLOT %s", slotstr), 2);

	/* Both keys of a request on b: asked together, all-or-nothing there. */
	struct sluice_limit one = gcra(1, SEC, 1);
	struct sluice_redis_scope both[2] = { { "{m}", 3, &l, 1 }, { "{m}:x", 5, &one, 1 } };
	now += 2 * SEC; /* {m} full again */
	sluice_gcra_admit(&cell, &l.rate, now, 1, &want);
	cr_assert_eq(sluice_redis_admit_scopes(r, both, 2, 1, now, &got), SLUICE_OK);
	cr_expect(got.allowed && !got.degraded);
	cr_assert_eq(sluice_redis_admit_scopes(r, both, 2, 1, now, &got), SLUICE_OK);
	cr_expect(!got.allowed && !got.degraded);
	cr_expect_eq(got.limit_index, 1, "the new scope's limit denies; nothing consumed");

	/* A batch during the migration: one pipeline to a, then one ASK each,
	 * decided in order. */
	struct sluice_redis_scope sc = { "{m}", 3, &l, 1 };
	struct sluice_redis_request reqs[4];
	struct sluice_decision outs[4];
	for (int i = 0; i < 4; i++)
		reqs[i] = (struct sluice_redis_request){ &sc, 1, 1 };
	now += 200 * MS;
	s0 = rstats(r);
	cr_assert_eq(sluice_redis_admit_batch(r, reqs, 4, now, outs), SLUICE_OK);
	for (int i = 0; i < 4; i++, step++) {
		sluice_gcra_admit(&cell, &l.rate, now, 1, &want);
		assert_same(&want, &outs[i], step);
	}
	s = rstats(r);
	cr_expect_eq(s.ask - s0.ask, 4);
	cr_expect_eq(s.round_trips - s0.round_trips, 5);

	/* Keys of one request split between the nodes: a answers TRYAGAIN
	 * to every try until the timeout, then the fail mode answers (fail
	 * open, degraded; tryagain_is_retried_until_the_split_ends). */
	struct sluice_redis_scope split[2] = { { "{m}", 3, &l, 1 }, { "{m}:y", 5, &l, 1 } };
	s0 = rstats(r);
	cr_assert_eq(sluice_redis_admit_scopes(r, split, 2, 1, now, &got), SLUICE_OK);
	cr_expect(got.allowed && got.degraded);
	s = rstats(r);
	cr_expect_eq(s.server_errors, s0.server_errors);
	cr_expect_gt(s.tryagain, s0.tryagain);
	cr_expect_eq(s.timeouts, s0.timeouts + 1);

	/* The migration ends: the slot is b's everywhere; a answers MOVED
	 * once, the map is re-pointed, no more ASK. */
	rep = side_fmt(n[a].port, "MIGRATE 127.0.0.1 %s sluice:{m}:y 0 5000", port[b]);
	freeReplyObject(rep);
	for (int i = 0; i < 3; i++)
		side_ok(n[i].port, "CLUSTER SETSLOT %s NODE %s", slotstr, id[b]);
	s0 = rstats(r);
	for (int i = 0; i < 3; i++, step++) {
		now += 100 * MS;
		sluice_gcra_admit(&cell, &l.rate, now, 1, &want);
		cr_assert_eq(sluice_redis_admit(r, "{m}", 3, &l, 1, 1, now, &got), SLUICE_OK);
		assert_same(&want, &got, step);
	}
	s = rstats(r);
	cr_expect_eq(s.ask, s0.ask);
	cr_expect_eq(s.moved - s0.moved, 1);
	cr_expect_eq(s.degraded, s0.degraded);

	sluice_redis_destroy(r);
	for (int i = 0; i < 3; i++)
		server_stop(&n[i]);
}

/*
 * The other modes meet ASK (docs/redis.md, "ASK and the cross-slot
 * protocol, slots and the lease"): new keys of a migrating slot live on the
 * importing node, so every call on them is asked. A cross-slot request's
 * reserve is asked and its cancel follows ASK to restore the fields there;
 * an acquire is asked and its release follows ASK; a hot GCRA shape of the
 * slot takes its lease through ASK; a hot cross-slot shape never leases.
 */
Test(redis_ask, cross_slot_and_migrating_requests_with_leases, .fini = cluster_cleanup, .timeout = 30)
{
	struct redis_harness_server n[3];
	char id[3][64], port[3][16];
	cluster_up(n, id, port);

	long long slot = side_fmt_int(n[0].port, "CLUSTER KEYSLOT %s", "sluice:{m}");
	int a = owner_of(slot), b = (a + 1) % 3;
	char slotstr[16], ztag[16] = "";
	snprintf(slotstr, sizeof slotstr, "%lld", slot);
	/* A second tag on a higher slot: its group is visited after {m}'s. */
	for (int i = 0; i < 1000 && ztag[0] == '\0'; i++) {
		char key[32];
		snprintf(key, sizeof key, "sluice:{z%d}", i);
		if (side_fmt_int(n[0].port, "CLUSTER KEYSLOT %s", key) > slot)
			snprintf(ztag, sizeof ztag, "{z%d}", i);
	}
	cr_assert_neq(ztag[0], '\0', "no tag above slot %lld", slot);
	side_ok(n[b].port, "CLUSTER SETSLOT %s IMPORTING %s", slotstr, id[a]);
	side_ok(n[a].port, "CLUSTER SETSLOT %s MIGRATING %s", slotstr, id[b]);

	struct sluice_redis_options o;
	memset(&o, 0, sizeof o);
	o.size = sizeof o;
	o.port = (uint32_t)n[0].port;
	o.flags = SLUICE_REDIS_CALLER_CLOCK | SLUICE_REDIS_CLUSTER;
	o.timeout_ns = 500 * MS;
	o.expiry_grace_ns = 600 * SEC;
	struct sluice_redis *r = NULL, *rl = NULL;
	cr_assert_eq(sluice_redis_create(&r, &o), SLUICE_OK);
	o.lease_units = 4;
	o.lease_hot_hits = 2;
	o.lease_ttl_ns = 10 * SEC;
	cr_assert_eq(sluice_redis_create(&rl, &o), SLUICE_OK);
	uint64_t now = 1700000000ull * SEC;
	struct sluice_decision want, got;

	/* 1. Reserve asked, cancel asked. {m}:c is created on b (asked). */
	struct sluice_limit ten = gcra(10, SEC, 10), one = gcra(1, SEC, 1);
	struct sluice_gcra cell;
	sluice_gcra_init(&cell);
	sluice_gcra_admit(&cell, &ten.rate, now, 1, &want);
	cr_assert_eq(sluice_redis_admit(r, "{m}:c", 5, &ten, 1, 1, now, &got), SLUICE_OK);
	assert_same(&want, &got, 0);
	char zc[32];
	snprintf(zc, sizeof zc, "%s:c", ztag);
	cr_assert_eq(sluice_redis_admit(r, zc, strlen(zc), &one, 1, 1, now, &got), SLUICE_OK);
	cr_expect(got.allowed && !got.degraded, "{z}:c now empty");
	char before[512], after[512];
	hash_of(n[b].port, "sluice:{m}:c", before, sizeof before);
	cr_assert_neq(before[0], '\0', "{m}:c lives on the importing node");
	struct sluice_redis_scope cross[2] = { { zc, strlen(zc), &one, 1 }, { "{m}:c", 5, &ten, 1 } };
	struct sluice_redis_stats s0 = rstats(r);
	cr_assert_eq(sluice_redis_admit_scopes(r, cross, 2, 1, now, &got), SLUICE_OK);
	cr_expect(!got.allowed && !got.degraded);
	cr_expect_eq(got.limit_index, 0, "{z}:c (the caller's scope 0) denies, after {m}'s group");
	struct sluice_redis_stats s = rstats(r);
	cr_expect_eq(s.ask - s0.ask, 2, "the reserve and the cancel were asked");
	cr_expect_eq(s.degraded, s0.degraded);
	cr_expect_eq(s.server_errors, s0.server_errors);
	hash_of(n[b].port, "sluice:{m}:c", after, sizeof after);
	cr_expect_str_eq(after, before, "the cancel restored {m}:c on the importing node");
	sluice_gcra_admit(&cell, &ten.rate, now, 1, &want);
	cr_assert_eq(sluice_redis_admit(r, "{m}:c", 5, &ten, 1, 1, now, &got), SLUICE_OK);
	assert_same(&want, &got, 1);

	/* 2. Acquire asked, release asked. */
	struct sluice_limit gs[2] = { gcra(100, SEC, 100), { 0 } };
	gs[1].kind = SLUICE_LIMIT_SLOTS;
	cr_assert_eq(sluice_slots_config_init(&gs[1].slots, 2, 0, 0), SLUICE_OK);
	struct sluice_redis_scope ss = { "{m}:s", 5, gs, 2 };
	sluice_slot_handle h[3];
	s0 = rstats(r);
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(sluice_redis_acquire_scopes(r, &ss, 1, 1, now, &got, &h[i]), SLUICE_OK);
		cr_expect(got.allowed && !got.degraded && h[i] != SLUICE_SLOT_NONE);
	}
	cr_assert_eq(sluice_redis_acquire_scopes(r, &ss, 1, 1, now, &got, &h[2]), SLUICE_OK);
	cr_expect(!got.allowed && !got.degraded && got.reason == SLUICE_REASON_CONCURRENCY);
	cr_expect_eq(sluice_redis_release(r, &ss, h[0]), SLUICE_OK);
	cr_expect_eq(sluice_redis_release(r, &ss, h[0]), SLUICE_EDOUBLE);
	cr_assert_eq(sluice_redis_acquire_scopes(r, &ss, 1, 1, now, &got, &h[2]), SLUICE_OK);
	cr_expect(got.allowed && !got.degraded && h[2] != SLUICE_SLOT_NONE);
	s = rstats(r);
	cr_expect_eq(s.ask - s0.ask, 6, "4 acquires and 2 releases, all asked");
	cr_expect_eq(s.degraded, s0.degraded);
	char sk[512];
	hash_of(n[b].port, "sluice:{m}:s", sk, sizeof sk);
	cr_expect_neq(sk[0], '\0', "{m}:s lives on the importing node");

	/* 3. A hot shape of the slot takes its lease through ASK. */
	struct sluice_limit big = gcra(1000, SEC, 1000);
	s0 = rstats(rl);
	for (int i = 0; i < 5; i++) {
		cr_assert_eq(sluice_redis_admit(rl, "{m}:h", 5, &big, 1, 1, now, &got), SLUICE_OK);
		cr_expect(got.allowed && !got.degraded);
	}
	s = rstats(rl);
	cr_expect_eq(s.lease_grants - s0.lease_grants, 1, "the second request took 4");
	cr_expect_eq(s.leased - s0.leased, 3);
	cr_expect_eq(s.ask - s0.ask, 2);
	/* Round trips less script loads (rl connects to nodes as it goes). */
	cr_expect_eq((s.round_trips - s.script_loads) - (s0.round_trips - s0.script_loads), 4,
		     "two requests, each asked");
	cr_assert_eq(sluice_redis_admit(r, "{m}:h", 5, &big, 1, 0, now, &got), SLUICE_OK);
	cr_expect_eq(got.remaining, 995, "the importing node holds the 1 + 4 consumed");

	/* 4. A hot cross-slot shape never leases. */
	char zd[32];
	snprintf(zd, sizeof zd, "%s:d", ztag);
	struct sluice_redis_scope hot[2] = { { "{m}:d", 5, &big, 1 }, { zd, strlen(zd), &big, 1 } };
	s0 = rstats(rl);
	for (int i = 0; i < 6; i++) {
		cr_assert_eq(sluice_redis_admit_scopes(rl, hot, 2, 1, now, &got), SLUICE_OK);
		cr_expect(got.allowed && !got.degraded);
		cr_expect_eq(got.remaining, (uint64_t)(999 - i), "request %d", i);
	}
	s = rstats(rl);
	cr_expect_eq(s.lease_grants, s0.lease_grants);
	cr_expect_eq(s.leased, s0.leased);
	cr_expect_eq((s.round_trips - s.script_loads) - (s0.round_trips - s0.script_loads), 18,
		     "per request: {m} asked (2), {z} (1)");

	/* Every key of the slot was created on the importing node. */
	cr_expect_eq(side_fmt_int(n[a].port, "CLUSTER COUNTKEYSINSLOT %s", slotstr), 0);
	cr_expect_eq(side_fmt_int(n[b].port, "CLUSTER COUNTKEYSINSLOT %s", slotstr), 4);

	sluice_redis_destroy(rl);
	sluice_redis_destroy(r);
	for (int i = 0; i < 3; i++)
		server_stop(&n[i]);
}

/* ---- TRYAGAIN (docs/redis.md, "TRYAGAIN") ----
 *
 * A multi-key call whose keys a migration has split between the two nodes
 * is refused, unrun, with TRYAGAIN by the slot's owner until the last of
 * them has moved. The backend pauses and resends within the call's
 * deadline. The tests stage the split, then a mover thread ends it on cue:
 * it watches the owner's INFO errorstats and migrates the last key once the
 * owner has answered TRYAGAIN, so the retry is exercised whatever the
 * machine's speed (no sleeps tuned to it). */

/* A tag "{t<i>}" whose slot (with the "sluice:" prefix) the node `node`
 * owns in cluster_form()'s ranges, and its slot. */
static long long tag_on(const struct redis_harness_server n[3], int node, char *tag, size_t cap)
{
	for (int i = 0; i < 10000; i++) {
		char key[48];
		snprintf(tag, cap, "{t%d}", i);
		snprintf(key, sizeof key, "sluice:%s", tag);
		long long slot = keyslot(n[0].port, key);
		if (owner_of(slot) == node)
			return slot;
	}
	cr_assert_fail("no tag on node %d", node);
	return -1;
}

/* The owner's count of TRYAGAIN errors (INFO errorstats), or -1 (cannot be
 * read). No Criterion assertion: also called from the mover thread. */
static long long tryagain_count(redisContext *c)
{
	redisReply *rep = redisCommand(c, "INFO errorstats");
	long long v = -1;
	if (rep != NULL && rep->type == REDIS_REPLY_STRING) {
		const char *p = strstr(rep->str, "errorstat_TRYAGAIN:count=");
		v = p != NULL ? atoll(p + strlen("errorstat_TRYAGAIN:count=")) : 0;
	}
	if (rep != NULL)
		freeReplyObject(rep);
	return v;
}

static long long tryagain_now(int port)
{
	struct timeval tv = { 1, 0 };
	redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
	cr_assert(c != NULL && c->err == 0);
	long long v = tryagain_count(c);
	redisFree(c);
	cr_assert_geq(v, 0);
	return v;
}

/* The mover: on the owner (port `from`), optionally wait until field
 * `watch_field` of `watch_key` differs from `watch_value` and then migrate
 * `first` to `to` (this splits a request's keys after it was reserved);
 * then wait until the owner's TRYAGAIN count exceeds `base` and migrate
 * `last` (the split ends). Polls every 1 ms, gives up after 10 s. */
struct mover {
	int from;
	const char *to;
	const char *watch_key, *watch_field, *watch_value; /* NULL: no first step */
	const char *first, *last;
	long long base;
	const char *err; /* NULL: both steps done */
};

static bool mover_migrate(redisContext *c, const char *to, const char *key)
{
	redisReply *rep = redisCommand(c, "MIGRATE 127.0.0.1 %s %s 0 5000", to, key);
	bool ok = rep != NULL && rep->type == REDIS_REPLY_STATUS;
	if (rep != NULL)
		freeReplyObject(rep);
	return ok;
}

static void *mover_run(void *arg)
{
	struct mover *m = arg;
	struct timeval tv = { 1, 0 };
	redisContext *c = redisConnectWithTimeout("127.0.0.1", m->from, tv);

	m->err = "connect";
	if (c == NULL || c->err != 0)
		goto out;
	int i = 0;
	if (m->watch_key != NULL) {
		m->err = "the reservation never came";
		for (; i < 10000; i++) {
			redisReply *rep = redisCommand(c, "HGET %s %s", m->watch_key, m->watch_field);
			bool changed = rep != NULL && rep->type == REDIS_REPLY_STRING &&
				       strcmp(rep->str, m->watch_value) != 0;
			if (rep != NULL)
				freeReplyObject(rep);
			if (changed)
				break;
			usleep(1000);
		}
		if (i == 10000)
			goto out;
		m->err = "first MIGRATE";
		if (!mover_migrate(c, m->to, m->first))
			goto out;
	}
	m->err = "no TRYAGAIN seen";
	for (i = 0; i < 10000 && tryagain_count(c) <= m->base; i++)
		usleep(1000);
	if (i == 10000)
		goto out;
	m->err = "last MIGRATE";
	if (!mover_migrate(c, m->to, m->last))
		goto out;
	m->err = NULL;
out:
	if (c != NULL)
		redisFree(c);
	return NULL;
}

/* Both limits of a two-scope request admit: the decision is the one with
 * least remaining, then shorter reset, then the first (one limit a scope). */
static struct sluice_decision two_scopes(struct sluice_gcra *c0, const struct sluice_rate *r0,
					 struct sluice_gcra *c1, const struct sluice_rate *r1, uint64_t now,
					 uint64_t cost)
{
	struct sluice_decision d0, d1;
	cr_assert(sluice_gcra_admit(c0, r0, now, cost, &d0) && sluice_gcra_admit(c1, r1, now, cost, &d1));
	d0.limit_index = 0;
	d1.limit_index = 1;
	bool second = d1.remaining < d0.remaining || (d1.remaining == d0.remaining && d1.reset_ns < d0.reset_ns);
	return second ? d1 : d0;
}

static void cluster_ids(const struct redis_harness_server n[3], char id[3][64], char port[3][16])
{
	for (int i = 0; i < 3; i++) {
		snprintf(port[i], sizeof port[i], "%d", n[i].port);
		redisReply *rep = side(n[i].port, "CLUSTER MYID", NULL);
		cr_assert(rep->type == REDIS_REPLY_STRING && rep->len < 64);
		memcpy(id[i], rep->str, rep->len + 1);
		freeReplyObject(rep);
	}
}

/*
 * A batch whose middle request's two keys are split (one moved to the
 * importing node, one still on the owner): the owner answers TRYAGAIN, the
 * backend pauses and resends until the mover has moved the second key; then
 * the request is asked to the importing node and decided there, exactly
 * once, with the in-process cells' decision. Then a split that never ends:
 * the call answers by the fail mode (open and closed) within its timeout,
 * with nothing consumed.
 */
Test(redis_ask, tryagain_is_retried_until_the_split_ends, .fini = cluster_cleanup, .timeout = 60)
{
	struct redis_harness_server n[3];
	char id[3][64], port[3][16], t[16], u[16];
	cluster_start(n);
	cluster_ids(n, id, port);
	long long slot = tag_on(n, 0, t, sizeof t);
	tag_on(n, 2, u, sizeof u);
	const int a = 0, b = 1;
	char slotstr[16];
	snprintf(slotstr, sizeof slotstr, "%lld", slot);
	char ka[32], kb[32], kc[32], rka[48], rkb[48];
	snprintf(ka, sizeof ka, "%s:a", t);
	snprintf(kb, sizeof kb, "%s:b", t);
	snprintf(kc, sizeof kc, "%s:c", t);
	snprintf(rka, sizeof rka, "sluice:%s", ka);
	snprintf(rkb, sizeof rkb, "sluice:%s", kb);

	struct sluice_redis_options o = ropts(n[0].port, SLUICE_REDIS_CALLER_CLOCK | SLUICE_REDIS_CLUSTER);
	struct sluice_redis *r = connect_to(&o);
	struct sluice_limit l10 = gcra(10, SEC, 10), l5 = gcra(5, SEC, 5);
	struct sluice_gcra ca, cb, cc, cu;
	sluice_gcra_init(&ca);
	sluice_gcra_init(&cb);
	sluice_gcra_init(&cc);
	sluice_gcra_init(&cu);
	struct sluice_decision want, got;
	uint64_t now = 1700000000ull * SEC;

	/* Three keys of the slot on its owner a, with some consumption. */
	struct { const char *key; struct sluice_limit *l; struct sluice_gcra *cell; uint64_t cost; } pre[3] = {
		{ ka, &l10, &ca, 3 }, { kb, &l5, &cb, 1 }, { kc, &l10, &cc, 2 }
	};
	for (int i = 0; i < 3; i++) {
		sluice_gcra_admit(pre[i].cell, &pre[i].l->rate, now, pre[i].cost, &want);
		cr_assert_eq(sluice_redis_admit(r, pre[i].key, strlen(pre[i].key), pre[i].l, 1, pre[i].cost, now,
						&got), SLUICE_OK);
		assert_same(&want, &got, i);
	}
	cr_assert_eq(side_fmt_int(n[a].port, "CLUSTER COUNTKEYSINSLOT %s", slotstr), 3);

	/* The migration starts and moves {t}:a only: {t}:a + {t}:b is split. */
	side_ok(n[b].port, "CLUSTER SETSLOT %s IMPORTING %s", slotstr, id[a]);
	side_ok(n[a].port, "CLUSTER SETSLOT %s MIGRATING %s", slotstr, id[b]);
	redisReply *rep = side_fmt(n[a].port, "MIGRATE 127.0.0.1 %s %s 0 5000", port[b], rka);
	cr_assert(rep->type == REDIS_REPLY_STATUS, "MIGRATE: %s", rep->type == REDIS_REPLY_ERROR ? rep->str : "?");
	freeReplyObject(rep);

	/* A batch: {u} (another node), the split request, {t}:c (still on a). */
	struct sluice_redis_scope su = { u, strlen(u), &l10, 1 }, sc = { kc, strlen(kc), &l10, 1 };
	struct sluice_redis_scope split[2] = { { ka, strlen(ka), &l10, 1 }, { kb, strlen(kb), &l5, 1 } };
	struct sluice_redis_request reqs[3] = { { &su, 1, 1 }, { split, 2, 1 }, { &sc, 1, 1 } };
	struct sluice_decision outs[3];
	struct mover m = { .from = n[a].port, .to = port[b], .last = rkb, .base = tryagain_now(n[a].port) };
	struct sluice_redis_stats s0 = rstats(r);
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, mover_run, &m), 0);
	now += 100 * MS;
	cr_assert_eq(sluice_redis_admit_batch(r, reqs, 3, now, outs), SLUICE_OK);
	pthread_join(th, NULL);
	cr_assert_null(m.err, "mover: %s", m.err);
	struct sluice_redis_stats s = rstats(r);
	sluice_gcra_admit(&cu, &l10.rate, now, 1, &want);
	assert_same(&want, &outs[0], 10);
	want = two_scopes(&ca, &l10.rate, &cb, &l5.rate, now, 1);
	assert_same(&want, &outs[1], 11);
	cr_expect_eq(outs[1].limit_index, 1, "{t}:b (2 of 5 left) governs");
	sluice_gcra_admit(&cc, &l10.rate, now, 1, &want);
	assert_same(&want, &outs[2], 12);
	cr_expect_geq(s.tryagain - s0.tryagain, 1, "the owner answered TRYAGAIN at least once");
	cr_expect_eq(s.degraded, s0.degraded);
	cr_expect_eq(s.server_errors, s0.server_errors, "TRYAGAIN is not a server error any more");
	cr_expect_eq(s.timeouts, s0.timeouts);
	cr_expect_geq(s.ask - s0.ask, 1, "the retry was asked to the importing node");

	/* Consumed exactly once: peeks of both keys continue the cells. */
	now += 10 * MS;
	sluice_gcra_admit(&ca, &l10.rate, now, 0, &want);
	cr_assert_eq(sluice_redis_admit(r, ka, strlen(ka), &l10, 1, 0, now, &got), SLUICE_OK);
	assert_same(&want, &got, 13);
	sluice_gcra_admit(&cb, &l5.rate, now, 0, &want);
	cr_assert_eq(sluice_redis_admit(r, kb, strlen(kb), &l5, 1, 0, now, &got), SLUICE_OK);
	assert_same(&want, &got, 14);

	/* A split that never ends: {t}:a (on b) with {t}:c (still on a). The
	 * call retries until its timeout, then answers by the fail mode. */
	struct sluice_redis_scope stuck[2] = { { ka, strlen(ka), &l10, 1 }, { kc, strlen(kc), &l10, 1 } };
	for (int closed = 0; closed < 2; closed++) {
		struct sluice_redis_options oq = o;
		oq.timeout_ns = 300 * MS;
		oq.fail_mode = closed ? SLUICE_FAIL_CLOSED : SLUICE_FAIL_OPEN;
		struct sluice_redis *q = connect_to(&oq);
		s0 = rstats(q);
		uint64_t t0 = sluice_monotonic_ns();
		cr_assert_eq(sluice_redis_admit_scopes(q, stuck, 2, 1, now, &got), SLUICE_OK);
		uint64_t took = sluice_monotonic_ns() - t0;
		s = rstats(q);
		cr_expect(got.degraded && got.allowed == !closed, "fail %s", closed ? "closed" : "open");
		cr_expect_eq(got.reason, closed ? SLUICE_REASON_CAPACITY : SLUICE_REASON_NONE);
		cr_expect_leq(took, oq.timeout_ns + 250 * MS, "took %llu ms", (unsigned long long)(took / MS));
		/* 1 + 2 + 4 + 8 + 8 ... ms of pauses: several tries fit. */
		cr_expect_geq(s.tryagain - s0.tryagain, 4, "tries: %llu",
			      (unsigned long long)(s.tryagain - s0.tryagain));
		cr_expect_eq(s.timeouts - s0.timeouts, 1, "ran out of its timeout");
		cr_expect_eq(s.server_errors, s0.server_errors);
		cr_expect_eq(s.degraded - s0.degraded, 1);
		sluice_redis_destroy(q);
	}
	/* Nothing consumed by the refused calls. */
	sluice_gcra_admit(&cc, &l10.rate, now, 0, &want);
	cr_assert_eq(sluice_redis_admit(r, kc, strlen(kc), &l10, 1, 0, now, &got), SLUICE_OK);
	assert_same(&want, &got, 15);
	sluice_gcra_admit(&ca, &l10.rate, now, 0, &want);
	cr_assert_eq(sluice_redis_admit(r, ka, strlen(ka), &l10, 1, 0, now, &got), SLUICE_OK);
	assert_same(&want, &got, 16);

	sluice_redis_destroy(r);
	for (int i = 0; i < 3; i++)
		server_stop(&n[i]);
}

/*
 * A cross-slot request whose first group (two keys of the migrating slot,
 * both on the owner) is reserved, whose second group's node is frozen (its
 * reserve times out: degraded), so the first group is cancelled; between
 * the reserve and the cancel the mover splits the group's keys, so the
 * cancel meets TRYAGAIN, is retried, and once the split ends restores both
 * fields on the importing node, byte for byte: a retried cancel that did
 * not run restores once, nothing is consumed twice or left behind.
 */
Test(redis_ask, tryagain_cancel_is_retried_and_restores_once, .fini = cluster_cleanup, .timeout = 60)
{
	struct redis_harness_server n[3];
	char id[3][64], port[3][16], t[16], z[16];
	cluster_start(n);
	cluster_ids(n, id, port);
	/* {t} on node 0 and {z} on node 2: {t}'s group (lower slot) first. */
	long long slot = tag_on(n, 0, t, sizeof t);
	tag_on(n, 2, z, sizeof z);
	const int a = 0, b = 1, c = 2;
	char slotstr[16];
	snprintf(slotstr, sizeof slotstr, "%lld", slot);
	char ka[32], kb[32], rka[48], rkb[48];
	snprintf(ka, sizeof ka, "%s:a", t);
	snprintf(kb, sizeof kb, "%s:b", t);
	snprintf(rka, sizeof rka, "sluice:%s", ka);
	snprintf(rkb, sizeof rkb, "sluice:%s", kb);

	struct sluice_redis_options o = ropts(n[0].port, SLUICE_REDIS_CALLER_CLOCK | SLUICE_REDIS_CLUSTER);
	o.timeout_ns = 2 * SEC; /* the frozen reserve's wait: the mover's window */
	struct sluice_redis *r = connect_to(&o);
	struct sluice_limit l10 = gcra(10, SEC, 10);
	struct sluice_decision got;
	uint64_t now = 1700000000ull * SEC;
	cr_assert_eq(sluice_redis_admit(r, ka, strlen(ka), &l10, 1, 3, now, &got), SLUICE_OK);
	cr_assert_eq(sluice_redis_admit(r, kb, strlen(kb), &l10, 1, 1, now, &got), SLUICE_OK);
	cr_assert_eq(sluice_redis_admit(r, z, strlen(z), &l10, 1, 1, now, &got), SLUICE_OK);
	cr_assert(got.allowed && !got.degraded);
	char before_a[512], before_b[512], after[512];
	hash_of(n[a].port, rka, before_a, sizeof before_a);
	hash_of(n[a].port, rkb, before_b, sizeof before_b);
	/* The field's value ("<i>:<interval>:<tau>" = F) before the reserve. */
	char field[64], value[64];
	cr_assert_eq(sscanf(before_a, "%63[^=]=%63[^;];", field, value), 2, "%s", before_a);

	side_ok(n[b].port, "CLUSTER SETSLOT %s IMPORTING %s", slotstr, id[a]);
	side_ok(n[a].port, "CLUSTER SETSLOT %s MIGRATING %s", slotstr, id[b]);
	struct mover m = { .from = n[a].port, .to = port[b], .watch_key = rka, .watch_field = field,
			   .watch_value = value, .first = rka, .last = rkb, .base = tryagain_now(n[a].port) };
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, mover_run, &m), 0);
	kill(n[c].pid, SIGSTOP);
	struct sluice_redis_scope cross[3] = { { z, strlen(z), &l10, 1 }, { ka, strlen(ka), &l10, 1 },
					       { kb, strlen(kb), &l10, 1 } };
	struct sluice_redis_stats s0 = rstats(r);
	cr_assert_eq(sluice_redis_admit_scopes(r, cross, 3, 1, now, &got), SLUICE_OK);
	kill(n[c].pid, SIGCONT);
	pthread_join(th, NULL);
	cr_assert_null(m.err, "mover: %s", m.err);
	struct sluice_redis_stats s = rstats(r);
	cr_expect(got.degraded && got.allowed, "{z}'s node was frozen: fail open");
	cr_expect_geq(s.tryagain - s0.tryagain, 1, "the cancel met TRYAGAIN");
	cr_expect_eq(s.server_errors, s0.server_errors);
	/* Both keys now on the importing node, as they were before the reserve. */
	cr_expect_eq(side_fmt_int(n[a].port, "CLUSTER COUNTKEYSINSLOT %s", slotstr), 0);
	hash_of(n[b].port, rka, after, sizeof after);
	cr_expect_str_eq(after, before_a, "the cancel restored {t}:a once");
	hash_of(n[b].port, rkb, after, sizeof after);
	cr_expect_str_eq(after, before_b, "the cancel restored {t}:b once");

	sluice_redis_destroy(r);
	for (int i = 0; i < 3; i++)
		server_stop(&n[i]);
}
