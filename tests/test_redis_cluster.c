/*
 * test_redis_cluster.c - requests whose scopes hash to different slots of
 * a Redis Cluster (three nodes on loopback ports): the reserve/cancel
 * protocol of src/redis/redis_cross.c (docs/redis.md, "Scopes on different slots"),
 * against one keyed limiter per scope; exact cancels read back through
 * side connections; concurrent clients never over-admit.
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <sluice.h>
#include <stdatomic.h>
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
#include "redis_kinds_util.h"

/* ---- Redis Cluster: requests across slots ---- */

/* Keys "{k<i>}" on three different nodes, in ascending slot order. */
static void keys_on_three_nodes(const struct redis_harness_server n[3], char keys[3][16], long long slot[3])
{
	bool have[3] = { false, false, false };
	for (int i = 0; i < 100; i++) {
		char k[16], full[32];
		snprintf(k, sizeof k, "{k%d}", i);
		snprintf(full, sizeof full, "sluice:%s", k);
		long long s = keyslot(n[0].port, full);
		int o = owner_of(s);
		if (!have[o]) {
			have[o] = true;
			memcpy(keys[o], k, sizeof k);
			slot[o] = s;
		}
	}
	cr_assert(have[0] && have[1] && have[2]);
}

/* Field -> value of a key on a node, as one string (pairs sorted), for
 * comparing states. */
static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void state_of(int port, const char *key, char *buf, size_t cap)
{
	redisReply *rep = side(port, "HGETALL", key);
	cr_assert_eq(rep->type, REDIS_REPLY_ARRAY);
	char pair[16][256];
	char *sorted[16];
	size_t np = rep->elements / 2, n = 0;
	cr_assert_leq(np, 16);
	for (size_t i = 0; i < np; i++) {
		snprintf(pair[i], sizeof pair[i], "%s=%s", rep->element[2 * i]->str, rep->element[2 * i + 1]->str);
		sorted[i] = pair[i];
	}
	qsort(sorted, np, sizeof sorted[0], cmp_str);
	buf[0] = '\0';
	for (size_t i = 0; i < np; i++)
		n += (size_t)snprintf(buf + n, cap - n, "%s;", sorted[i]);
	freeReplyObject(rep);
}

/* Another client's acquire, after a delay, on its own connection. */
struct side_acquire {
	int port;
	const struct sluice_redis_scope *scope;
	uint64_t now_ns, delay_ns;
	bool acquired;
};

static void *side_acquire_run(void *arg)
{
	struct side_acquire *s = arg;
	struct sluice_redis_options o = ropts(s->port, SLUICE_REDIS_CALLER_CLOCK | SLUICE_REDIS_CLUSTER);
	struct sluice_redis *r = NULL;
	struct timespec ts = { 0, (long)s->delay_ns };
	if (sluice_redis_create(&r, &o) != SLUICE_OK)
		return NULL;
	nanosleep(&ts, NULL);
	struct sluice_decision d;
	sluice_slot_handle h[1];
	s->acquired = sluice_redis_acquire_scopes(r, s->scope, 1, 1, s->now_ns, &d, h) == SLUICE_OK &&
		      d.allowed && !d.degraded;
	sluice_redis_destroy(r);
	return NULL;
}

Test(redis_cluster, cluster_cross_slot_reserve_and_cancel, .fini = cluster_cleanup, .timeout = 30)
{
	struct redis_harness_server n[3];
	cluster_start(n);
	char keys[3][16];
	long long slot[3];
	keys_on_three_nodes(n, keys, slot);
	struct sluice_redis_options o = ropts(n[0].port, SLUICE_REDIS_CALLER_CLOCK | SLUICE_REDIS_CLUSTER);
	o.fail_mode = SLUICE_FAIL_CLOSED;
	o.timeout_ns = 300 * MS;
	struct sluice_redis *r = connect_to(&o);
	struct sluice_limit big[3] = { counter(50, MIN), gcra(100, SEC, 100), slots(4, 0) };
	struct sluice_limit small[1] = { gcra(1, SEC, 1) };
	/* Caller order: small (node 1) first, big (node 0) second; the
	 * protocol visits node 0's slot first. */
	struct sluice_redis_scope sc[2] = { { keys[1], strlen(keys[1]), small, 1 },
					    { keys[0], strlen(keys[0]), big, 3 } };
	char k0[32], k1[32];
	snprintf(k0, sizeof k0, "sluice:%s", keys[0]);
	snprintf(k1, sizeof k1, "sluice:%s", keys[1]);
	uint64_t now = UNIX_NOW;
	struct sluice_decision d;
	sluice_slot_handle h[2];

	/* Warm up: connect to both nodes (a connection loads the script). */
	cr_assert_eq(sluice_redis_admit_scopes(r, sc, 1, 0, now, &d), SLUICE_OK);
	cr_assert_eq(sluice_redis_admit_scopes(r, &sc[1], 1, 0, now, &d), SLUICE_OK);
	struct sluice_redis_stats s0 = rstats(r);
	cr_assert_eq(sluice_redis_acquire_scopes(r, sc, 2, 1, now, &d, h), SLUICE_OK);
	cr_expect(d.allowed && !d.degraded);
	cr_expect_eq(d.limit_index, 0, "small: 0 remaining governs");
	cr_expect_eq(h[0], SLUICE_SLOT_NONE);
	cr_expect_neq(h[1], SLUICE_SLOT_NONE);
	struct sluice_redis_stats s1 = rstats(r);
	cr_expect_eq(s1.round_trips - s0.round_trips, 2, "one round trip per slot group");
	cr_expect_eq(s1.admitted - s0.admitted, 1);
	cr_expect_eq(side_int(n[0].port, "EXISTS", k0), 1, "consumed on node 0");
	cr_expect_eq(side_int(n[1].port, "EXISTS", k1), 1, "and on node 1");
	char before[1024], after[1024];
	state_of(n[0].port, k0, before, sizeof before);

	/* small denies: big's reservation on node 0 is cancelled, exactly. */
	cr_assert_eq(sluice_redis_acquire_scopes(r, sc, 2, 1, now, &d, h), SLUICE_OK);
	cr_expect(!d.allowed && !d.degraded);
	cr_expect_eq(d.limit_index, 0);
	cr_expect_eq(d.reason, SLUICE_REASON_RATE);
	cr_expect_eq(d.retry_after_ns, SEC);
	cr_expect_eq(h[0], SLUICE_SLOT_NONE);
	cr_expect_eq(h[1], SLUICE_SLOT_NONE);
	struct sluice_redis_stats s2 = rstats(r);
	cr_expect_eq(s2.round_trips - s1.round_trips, 3, "two reserves and one cancel");
	cr_expect_eq(s2.denied - s1.denied, 1);
	state_of(n[0].port, k0, after, sizeof after);
	cr_expect_str_eq(after, before, "node 0's fields exactly as before the denied request: %s vs %s",
			 after, before);
	struct sluice_decision peek;
	cr_assert_eq(sluice_redis_admit_scopes(r, &sc[1], 1, 0, now, &peek), SLUICE_OK);
	cr_expect_eq(peek.remaining, 3, "big: one slot of 4 taken, by the admitted request only");

	/* Node 1 frozen: the second group times out; fail closed cancels the
	 * first group's reservation. */
	now += 2 * SEC;
	state_of(n[0].port, k0, before, sizeof before);
	kill(n[1].pid, SIGSTOP);
	cr_assert_eq(sluice_redis_acquire_scopes(r, sc, 2, 1, now, &d, h), SLUICE_OK);
	kill(n[1].pid, SIGCONT);
	cr_expect(!d.allowed && d.degraded);
	cr_expect_eq(h[1], SLUICE_SLOT_NONE);
	state_of(n[0].port, k0, after, sizeof after);
	cr_expect_str_eq(after, before, "the reservation on node 0 was cancelled");

	/* Again, but another client takes a slot of big's key while node 1
	 * is frozen: the cancel cannot restore the field, so it releases the
	 * slot the request took (exact, as in process); the other limits keep
	 * the request's consumption (conservative). */
	struct sluice_decision pk;
	cr_assert_eq(sluice_redis_admit_scopes(r, &sc[1], 1, 0, now, &pk), SLUICE_OK);
	cr_expect_eq(pk.remaining, 3, "big: the first request's slot is held");
	struct side_acquire sa = { n[0].port, &sc[1], now, 100 * MS, false };
	pthread_t th;
	kill(n[1].pid, SIGSTOP);
	cr_assert_eq(pthread_create(&th, NULL, side_acquire_run, &sa), 0);
	cr_assert_eq(sluice_redis_acquire_scopes(r, sc, 2, 1, now, &d, h), SLUICE_OK);
	pthread_join(th, NULL);
	kill(n[1].pid, SIGCONT);
	cr_expect(!d.allowed && d.degraded);
	cr_expect(sa.acquired, "the other client's acquire (while we waited on node 1)");
	cr_assert_eq(sluice_redis_acquire_scopes(r, &sc[1], 1, 0, now, &pk, h), SLUICE_OK);
	cr_expect_eq(pk.remaining, 2, "two slots held: the first request's and the other client's");

	/* The deny cache learns nothing from a reservation that is cancelled:
	 * after a cross-slot denial, scope A alone is admitted by the server,
	 * not denied locally on the cancelled reservation's F. */
	struct sluice_redis_options oc = o;
	oc.key_prefix = "dc:";
	oc.deny_cache_slots = 64;
	struct sluice_redis *rc = connect_to(&oc);
	struct sluice_limit one = gcra(1, SEC, 1);
	struct sluice_redis_scope ab[2] = { { keys[0], strlen(keys[0]), &one, 1 },
					    { keys[1], strlen(keys[1]), &one, 1 } };
	now += 10 * SEC;
	cr_assert_eq(sluice_redis_admit_scopes(rc, &ab[1], 1, 1, now, &d), SLUICE_OK);
	cr_expect(d.allowed, "B now empty");
	cr_assert_eq(sluice_redis_admit_scopes(rc, ab, 2, 1, now, &d), SLUICE_OK);
	cr_expect(!d.allowed && !d.degraded, "B denies; A's reservation is cancelled");
	uint64_t hits = rstats(rc).cache_hits;
	cr_assert_eq(sluice_redis_admit_scopes(rc, ab, 1, 1, now, &d), SLUICE_OK);
	cr_expect(d.allowed && !d.degraded, "A is full again on the server");
	cr_expect_eq(rstats(rc).cache_hits, hits);
	sluice_redis_destroy(rc);

	sluice_redis_destroy(r);
	for (int i = 0; i < 3; i++)
		server_stop(&n[i]);
}

struct cross_worker {
	int port;
	char (*keys)[16];
	const struct sluice_limit *l;
	uint64_t until_ns;
	_Atomic bool *dry; /* key 1 ran dry (a request on it alone was denied) */
	int mode; /* 0: scopes 0+1; 1: scopes 1+2; 2: scope 1 alone */
	int admitted[3];
	int errors;
};

static void *cross_worker_run(void *arg)
{
	struct cross_worker *w = arg;
	struct sluice_redis_options o = ropts(w->port, SLUICE_REDIS_CLUSTER);
	o.key_prefix = "race:"; /* apart from the differential's keys */
	struct sluice_redis *r = NULL;
	if (sluice_redis_create(&r, &o) != SLUICE_OK)
		return NULL;
	int ids[3][2] = { { 0, 1 }, { 1, 2 }, { 1, -1 } };
	/* Run for the test's time, and on (at most 10 s) until key 1 is dry. */
	uint64_t cap = w->until_ns + 10 * SEC;
	for (uint64_t t; (t = sluice_monotonic_ns()) < cap;) {
		/* relaxed: a stop flag; nothing else is published through it. */
		if (t >= w->until_ns && atomic_load_explicit(w->dry, memory_order_relaxed)) /* relaxed: why above */
			break;
		struct sluice_redis_scope sc[2];
		size_t n = 0;
		for (int q = 0; q < 2; q++) {
			int id = ids[w->mode][q];
			if (id >= 0)
				sc[n++] = (struct sluice_redis_scope){ w->keys[id], strlen(w->keys[id]), w->l, 1 };
		}
		struct sluice_decision d;
		if (sluice_redis_admit_scopes(r, sc, n, 1, 0, &d) != SLUICE_OK || d.degraded) {
			w->errors++;
			continue;
		}
		if (!d.allowed && w->mode == 2)
			atomic_store_explicit(w->dry, true, memory_order_relaxed); /* relaxed: a stop flag */
		if (d.allowed)
			for (int q = 0; q < 2; q++)
				if (ids[w->mode][q] >= 0)
					w->admitted[ids[w->mode][q]]++;
	}
	sluice_redis_destroy(r);
	return NULL;
}

/* Three clients race cross-slot and single-slot requests over three keys
 * on three nodes, each key a bucket of 30 that does not refill during the
 * run (1 per hour): no key ever admits more than 30. */
static void concurrent_clients(struct redis_harness_server n[3], char keys[3][16])
{
	struct sluice_limit l = gcra(30, 3600 * SEC, 30);
	struct cross_worker w[3];
	pthread_t th[3];
	uint64_t until = sluice_monotonic_ns() + stress_ns(500);
	_Atomic bool dry = false;

	for (int i = 0; i < 3; i++) {
		w[i] = (struct cross_worker){ n[0].port, keys, &l, until, &dry, i, { 0, 0, 0 }, 0 };
		cr_assert_eq(pthread_create(&th[i], NULL, cross_worker_run, &w[i]), 0);
	}
	int admitted[3] = { 0, 0, 0 }, errors = 0;
	for (int i = 0; i < 3; i++) {
		pthread_join(th[i], NULL);
		errors += w[i].errors;
		for (int k = 0; k < 3; k++)
			admitted[k] += w[i].admitted[k];
	}
	cr_expect_eq(errors, 0);
	for (int k = 0; k < 3; k++)
		cr_expect_leq(admitted[k], 30, "key %d admitted %d of 30", k, admitted[k]);
	cr_expect_gt(admitted[1], 0);
	/* The key every request uses runs dry (by admissions, and by
	 * reservations whose cancel met a concurrent write: conservative). */
	struct sluice_redis_options o = ropts(n[0].port, SLUICE_REDIS_CLUSTER);
	o.key_prefix = "race:";
	struct sluice_redis *r = connect_to(&o);
	struct sluice_decision d;
	cr_assert_eq(sluice_redis_admit(r, keys[1], strlen(keys[1]), &l, 1, 0, 0, &d), SLUICE_OK);
	cr_expect_eq(d.remaining, 0);
	sluice_redis_destroy(r);
}

/* A sequence of requests over three scopes on three nodes, against one
 * keyed limiter per scope visited in slot order; then several clients
 * racing on the same nodes. */
Test(redis_cluster, cluster_cross_slot_differential, .fini = cluster_cleanup, .timeout = 30)
{
	struct redis_harness_server n[3];
	cluster_start(n);
	char keys[3][16];
	long long slot[3];
	keys_on_three_nodes(n, keys, slot);
	struct sluice_redis_options o = ropts(n[0].port, SLUICE_REDIS_CALLER_CLOCK | SLUICE_REDIS_CLUSTER);
	struct sluice_redis *r = connect_to(&o);
	struct sluice_limit p0[2] = { gcra(8, SEC, 4), calendar(40, MIN) };
	struct sluice_limit p1[1] = { counter(5, SEC) };
	struct sluice_limit p2[2] = { counter(12, 3 * SEC), gcra(3, SEC, 3) };
	const struct sluice_limit *pol[3] = { p0, p1, p2 };
	size_t npol[3] = { 2, 1, 2 };
	struct sluice_limiter *lim[3];
	for (int i = 0; i < 3; i++)
		cr_assert_eq(sluice_limiter_create(&lim[i], pol[i], npol[i], NULL), SLUICE_OK);
	uint64_t now = UNIX_NOW;
	int denied = 0, allowed = 0, cross = 0;

	for (int step = 0; step < 300; step++) {
		int perm[3] = { 0, 1, 2 };
		for (int i = 2; i > 0; i--) {
			int j = (int)(rnd() % (uint64_t)(i + 1)), t = perm[i];
			perm[i] = perm[j];
			perm[j] = t;
		}
		size_t ns = 1 + rnd() % 3;
		struct sluice_redis_scope sc[3];
		struct sluice_limiter *ml[3];
		const char *mk[3];
		size_t order[3];
		uint32_t base[3], flat = 0;
		for (size_t s = 0; s < ns; s++) {
			int id = perm[s];
			sc[s] = (struct sluice_redis_scope){ keys[id], strlen(keys[id]), pol[id], npol[id] };
			ml[s] = lim[id];
			mk[s] = keys[id];
			base[s] = flat;
			flat += (uint32_t)npol[id];
			size_t q = s; /* visiting order: by slot (keys[] ascend) */
			for (; q > 0 && perm[order[q - 1]] > id; q--)
				order[q] = order[q - 1];
			order[q] = s;
		}
		uint64_t cost = rnd() % 3;
		struct sluice_decision a, b;
		if (step % 4 == 3) {
			/* In a pipelined batch, between two single-slot requests
			 * on scope 2's key: decided in its place in the order. */
			struct sluice_redis_scope one = { keys[2], strlen(keys[2]), p2, 2 };
			struct sluice_redis_request reqs[3] = { { &one, 1, 1 }, { sc, ns, cost }, { &one, 1, 1 } };
			struct sluice_decision want[3], got[3];
			struct sluice_limiter *l2 = lim[2];
			const char *k2 = keys[2];
			size_t o0 = 0;
			uint32_t b0 = 0;
			model_admit(&l2, &k2, &o0, &b0, 1, 1, now, &want[0]);
			model_admit(ml, mk, order, base, ns, cost, now, &a);
			model_admit(&l2, &k2, &o0, &b0, 1, 1, now, &want[2]);
			cr_assert_eq(sluice_redis_admit_batch(r, reqs, 3, now, got), SLUICE_OK);
			assert_same(&want[0], &got[0], 1000 + step);
			assert_same(&want[2], &got[2], 2000 + step);
			b = got[1];
		} else {
			model_admit(ml, mk, order, base, ns, cost, now, &a);
			cr_assert_eq(sluice_redis_admit_scopes(r, sc, ns, cost, now, &b), SLUICE_OK);
		}
		assert_same(&a, &b, step);
		if (cost > 0 && ns > 1) {
			cross++;
			denied += !a.allowed;
			allowed += a.allowed;
		}
		now = step_time(now, 150 * MS, 3 * SEC);
	}
	cr_expect_gt(cross, 100);
	/* Same cluster, several clients at once. */
	concurrent_clients(n, keys);
	cr_expect_gt(denied, 20, "cross-slot denials (%d)", denied);
	cr_expect_gt(allowed, 20, "cross-slot admissions (%d)", allowed);
	cr_expect_eq(rstats(r).degraded, 0);
	sluice_redis_destroy(r);
	for (int i = 0; i < 3; i++) {
		sluice_limiter_destroy(lim[i]);
		server_stop(&n[i]);
	}
}

