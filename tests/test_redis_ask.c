/*
 * test_redis_ask.c - the Redis backend on a Redis Cluster whose slot is
 * being migrated (docs/redis.md, "ASK"): three redis-server cluster nodes on
 * loopback ports, one slot moved from its owner to another node with
 * CLUSTER SETSLOT ... MIGRATING / IMPORTING and MIGRATE, the way
 * redis-cli --cluster reshard does it, while a handle keeps deciding.
 */
#include <criterion/criterion.h>
#include <sluice.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "redis_server.h"
#include "redis_test_util.h"

/* Three cluster nodes on loopback ports, slots in three ranges, met and
 * cluster_state:ok; their ids and ports (as strings). */
static void cluster_up(struct server n[3], char id[3][64], char port[3][16])
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
	struct server n[3];
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

	/* Keys of one request split between the nodes: a answers TRYAGAIN,
	 * the fail mode answers (fail open, degraded). */
	struct sluice_redis_scope split[2] = { { "{m}", 3, &l, 1 }, { "{m}:y", 5, &l, 1 } };
	s0 = rstats(r);
	cr_assert_eq(sluice_redis_admit_scopes(r, split, 2, 1, now, &got), SLUICE_OK);
	cr_expect(got.allowed && got.degraded);
	cr_expect_eq(rstats(r).server_errors, s0.server_errors + 1);

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
	struct server n[3];
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
