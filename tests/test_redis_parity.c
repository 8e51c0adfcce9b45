/*
 * test_redis_parity.c - the limiter and the engine on Redis decide exactly as
 * in process where the two used to differ (docs/redis.md, "Limiter and
 * engine on Redis"), against real redis-server processes (caller clock):
 *  - the governing limit on an exact tie (equal remaining and reset), built
 *    deliberately for several kinds, limiter and engine; the engine's ties
 *    between a concurrency limit (evaluated first) and an earlier-declared
 *    limit go to the lower policy index as engine.c's;
 *  - every release error: unknown key, SLUICE_SLOT_NONE, a malformed handle,
 *    another key's handle, a double release, a lease taken over, an expired
 *    lease not taken over, a policy without slots, a bad key.
 * Each case runs the same calls on an in-process and a Redis-backed object
 * and compares every answer.
 */
#include <criterion/criterion.h>
#include <sluice.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_test_util.h"
#include "redis_server.h"
#include "redis_test_util.h"

/* ---- helpers ---- */

/* An in-process and a Redis-backed limiter of the same policy. */
struct pair {
	struct sluice_limiter *mem, *red;
};

static struct pair pair_of(const struct sluice_limit *l, size_t n, int port)
{
	struct sluice_redis_options ro = ropts(port, SLUICE_REDIS_CALLER_CLOCK);
	struct sluice_limiter_options o = limiter_opts(&ro, 1);
	struct pair p = { NULL, NULL };

	cr_assert_eq(sluice_limiter_create(&p.mem, l, n, NULL), SLUICE_OK);
	cr_assert_eq(redis_limiter_create(&p.red, l, n, &o), SLUICE_OK);
	return p;
}

static void pair_destroy(struct pair *p)
{
	sluice_limiter_destroy(p->red);
	sluice_limiter_destroy(p->mem);
}

/* Peek `key` on both; the decisions must agree. Returns the in-process one. */
static struct sluice_decision peek2(struct pair *p, const char *key, uint64_t now)
{
	struct sluice_decision a, b;
	cr_assert_eq(sluice_limiter_peek(p->mem, key, strlen(key), now, &a), SLUICE_OK);
	cr_assert_eq(sluice_limiter_peek(p->red, key, strlen(key), now, &b), SLUICE_OK);
	assert_same_at(&a, &b, key);
	return a;
}

/* Acquire on both; handles returned through ha/hb. */
static struct sluice_decision acquire2(struct pair *p, const char *key, uint64_t cost, uint64_t now,
				       sluice_slot_handle *ha, sluice_slot_handle *hb)
{
	struct sluice_decision a, b;
	cr_assert_eq(sluice_limiter_acquire(p->mem, key, strlen(key), cost, now, &a, ha), SLUICE_OK);
	cr_assert_eq(sluice_limiter_acquire(p->red, key, strlen(key), cost, now, &b, hb), SLUICE_OK);
	assert_same_at(&a, &b, key);
	cr_assert_eq(*ha == SLUICE_SLOT_NONE, *hb == SLUICE_SLOT_NONE, "%s: handle", key);
	return a;
}

/* Release on both: the same answer; returns it. */
static int release2(struct pair *p, const char *key, sluice_slot_handle ha, sluice_slot_handle hb)
{
	int ra = sluice_limiter_release(p->mem, key, strlen(key), ha);
	int rb = sluice_limiter_release(p->red, key, strlen(key), hb);
	cr_assert_eq(ra, rb, "release %s: in process %d (%s), Redis %d (%s)", key, ra,
		     sluice_strerror(ra), rb, sluice_strerror(rb));
	return ra;
}

/* ---- ties: the limiter ---- */

/* A fresh key reads every limit full: remaining = limit, reset 0, for GCRA,
 * both sliding kinds and slots. With equal limits every such peek is an
 * exact tie, which goes to the first cell: the first GCRA limit, then the
 * others in the caller's order. */
Test(redis_parity, limiter_ties_on_full_limits_go_to_the_first_cell)
{
	struct redis_harness_server srv = server_start();
	uint64_t now = 1700000000ull * SEC;
	struct {
		struct sluice_limit l[4];
		size_t n;
		uint32_t expect; /* the limit a full tie names */
	} cases[] = {
		{ { slots_retry(3, 0, SEC), gcra(3, SEC, 3) }, 2, 1 },
		{ { gcra(3, SEC, 3), slots_retry(3, 0, SEC) }, 2, 0 },
		{ { counter(3, SEC), slots_retry(3, 0, SEC) }, 2, 0 },
		{ { slots_retry(3, 0, SEC), counter(3, SEC) }, 2, 0 },
		{ { slog(3, SEC), counter(3, SEC), gcra(3, SEC, 3), slots_retry(3, 0, SEC) }, 4, 2 },
		{ { slots_retry(3, 0, SEC), slog(3, SEC), counter(3, SEC) }, 3, 0 },
	};
	for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
		struct pair p = pair_of(cases[c].l, cases[c].n, srv.port);
		char key[16];
		snprintf(key, sizeof key, "tie%zu", c);
		/* A key never seen. */
		struct sluice_decision d = peek2(&p, key, now);
		cr_assert_eq(d.remaining, 3);
		cr_assert_eq(d.reset_ns, 0);
		cr_assert_eq(d.limit_index, cases[c].expect, "case %zu: %u", c, d.limit_index);
		/* A key that exists, every limit full again. */
		sluice_slot_handle ha, hb;
		d = acquire2(&p, key, 1, now, &ha, &hb);
		cr_assert(d.allowed);
		cr_assert_eq(release2(&p, key, ha, hb), SLUICE_OK);
		d = peek2(&p, key, now + 3 * SEC);
		cr_assert_eq(d.remaining, 3, "case %zu", c);
		cr_assert_eq(d.reset_ns, 0, "case %zu", c);
		cr_assert_eq(d.limit_index, cases[c].expect, "case %zu: %u", c, d.limit_index);
		/* A cost-0 acquire is a peek too. */
		d = acquire2(&p, key, 0, now + 3 * SEC, &ha, &hb);
		cr_assert_eq(d.limit_index, cases[c].expect, "case %zu", c);
		pair_destroy(&p);
	}
	server_stop(&srv);
}

/* Equal limits of one kind tie on every decision, reset > 0 included (the
 * calendar on its window end). Random steps, both backends, every decision
 * compared; the tie goes to the first of them, never the second. */
Test(redis_parity, limiter_ties_between_equal_limits_on_every_step)
{
	struct redis_harness_server srv = server_start();
	struct {
		struct sluice_limit l[3];
		size_t n;
		uint32_t never; /* the second of the equal limits */
	} cases[] = {
		{ { gcra(5, SEC, 5), gcra(5, SEC, 5) }, 2, 1 },
		{ { counter(5, SEC), gcra(5, SEC, 5), gcra(5, SEC, 5) }, 3, 2 },
		{ { calendar(5, SEC), calendar(5, SEC), slots_retry(9, 0, SEC) }, 3, 1 },
		{ { slots_retry(9, 0, SEC), counter(5, SEC), counter(5, SEC) }, 3, 2 },
		{ { slog(5, SEC), slog(5, SEC) }, 2, 1 },
	};
	uint64_t x = 0x9e3779b97f4a7c15ull;
	for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
		struct pair p = pair_of(cases[c].l, cases[c].n, srv.port);
		uint64_t now = 1700000000ull * SEC;
		int admitted = 0;
		char key[16]; /* one key per case: the server is shared */
		snprintf(key, sizeof key, "k%zu", c);
		for (int step = 0; step < 60; step++) {
			x ^= x >> 12, x ^= x << 25, x ^= x >> 27;
			uint64_t r = x * 0x2545f4914f6cdd1dull;
			sluice_slot_handle ha, hb;
			struct sluice_decision d = acquire2(&p, key, r % 3, now, &ha, &hb);
			if (d.allowed) {
				/* The equal limits always tie: the second never
				 * governs. */
				cr_assert_neq(d.limit_index, cases[c].never, "case %zu step %d", c, step);
				admitted++;
			}
			if (ha != SLUICE_SLOT_NONE)
				cr_assert_eq(release2(&p, key, ha, hb), SLUICE_OK);
			now += (r >> 8) % (300 * MS);
		}
		cr_expect_gt(admitted, 10, "case %zu", c);
		pair_destroy(&p);
	}
	server_stop(&srv);
}

/* ---- ties: the engine ---- */

static struct sluice_engine *engine_pair(const char *text, int port, struct sluice_engine **red)
{
	struct sluice_redis_options ro = ropts(port, SLUICE_REDIS_CALLER_CLOCK);
	struct sluice_engine_options o = engine_opts(&ro, 1, NULL);
	struct sluice_policy *pr = load_text(text);
	*red = NULL;
	cr_assert_eq(redis_engine_create(red, pr, &o), SLUICE_OK);
	return engine_of(load_text(text));
}

/* The in-process usage of limit i for q: remaining and reset. */
static void usage_of(struct sluice_engine *e, struct req *q, uint32_t i, uint64_t *remaining,
		     uint64_t *reset_ns)
{
	struct sluice_engine_usage u[SLUICE_POLICY_MAX_LIMITS];
	size_t n = 0;
	cr_assert_eq(sluice_engine_usage(e, &q->r, u, SLUICE_POLICY_MAX_LIMITS, &n), SLUICE_OK);
	for (size_t k = 0; k < n; k++)
		if (u[k].limit == i) {
			*remaining = u[k].remaining;
			*reset_ns = u[k].reset_ns;
			return;
		}
	cr_assert_fail("no usage for limit %u", i);
}

#define HEAD "policy \"tie\"\nfail open\nscope ip\n"

/*
 * engine.c evaluates concurrency limits first but breaks a full tie between
 * admitted limits by the lower policy index; the backend used to name the
 * concurrency limit (the first scope). Policies whose concurrency limit
 * (declared last) ties with an earlier limit: cost-0 checks and checks
 * while every limit is full again; random steps with held slots, releases
 * and time, every decision compared, and the ties counted from the
 * in-process usage (each must have gone to the earlier limit).
 */
Test(redis_parity, engine_ties_go_to_the_lower_policy_index)
{
	struct redis_harness_server srv = server_start();
	static const char *const policies[] = {
		HEAD "limit r per ip rate 3/1s\nlimit c per ip concurrency 3\n",
		HEAD "limit s per ip sliding 3/1s\nlimit c per ip concurrency 3 lease 30s\n",
		HEAD "limit r per ip rate 3/1s\nlimit s per ip sliding 3/1s\nlimit c per ip concurrency 3\n",
		/* Control: the concurrency limit declared first wins its ties
		 * on both. */
		HEAD "limit c per ip concurrency 3\nlimit r per ip rate 3/1s\n",
	};
	uint64_t x = 0x2545f4914f6cdd1dull;
	for (size_t c = 0; c < sizeof policies / sizeof policies[0]; c++) {
		struct sluice_engine *red;
		struct sluice_engine *mem = engine_pair(policies[c], srv.port, &red);
		uint32_t conc = c == 3 ? 0 : c == 2 ? 2 : 1;
		enum { HELD = 8 };
		struct sluice_engine_decision ha[HELD], hb[HELD];
		int nheld = 0, ties = 0;
		uint64_t now = DAY0 + 123 * MS;
		/* Deliberate: a fresh key (every limit full, reset 0), then the
		 * same key full again after a second. */
		for (int k = 0; k < 2; k++) {
			char ip[8];
			snprintf(ip, sizeof ip, "f%zu", c);
			struct req q;
			req_init(&q, "GET", "/", ip, NULL, now + (uint64_t)k * 2 * SEC);
			q.r.cost = (uint64_t)k;
			struct sluice_engine_decision a, b;
			cr_assert_eq(sluice_engine_check(mem, &q.r, &a), SLUICE_OK);
			cr_assert_eq(sluice_engine_check(red, &q.r, &b), SLUICE_OK);
			same_decision(&a, &b, -1 - k);
			cr_assert(a.d.allowed);
			if (k == 0) {
				cr_assert_eq(a.d.remaining, 3);
				cr_assert_eq(a.d.reset_ns, 0);
				cr_assert_eq(a.d.limit_index, 0, "policy %zu", c);
			} else {
				cr_assert_eq(sluice_engine_release(mem, &a), SLUICE_OK);
				cr_assert_eq(sluice_engine_release(red, &b), SLUICE_OK);
				q.r.now_ns += 2 * SEC;
				q.r.cost = 0;
				cr_assert_eq(sluice_engine_check(mem, &q.r, &a), SLUICE_OK);
				cr_assert_eq(sluice_engine_check(red, &q.r, &b), SLUICE_OK);
				same_decision(&a, &b, -3);
				cr_assert_eq(a.d.limit_index, 0, "policy %zu", c);
			}
		}
		for (int step = 0; step < 200; step++) {
			x ^= x >> 12, x ^= x << 25, x ^= x >> 27;
			uint64_t r = x * 0x2545f4914f6cdd1dull;
			struct req q;
			/* Identities of this policy only: the server is shared. */
			char ip1[8], ip2[8];
			snprintf(ip1, sizeof ip1, "a%zu", c);
			snprintf(ip2, sizeof ip2, "b%zu", c);
			req_init(&q, "GET", "/", r % 4 == 0 ? ip2 : ip1, NULL, now);
			if (r % 7 == 0 && nheld > 0) {
				/* Complete a request (held ones are ip1's). */
				req_init(&q, "GET", "/", ip1, NULL, now);
				nheld--;
				int ra = sluice_engine_release(mem, &ha[nheld]);
				int rb = sluice_engine_release(red, &hb[nheld]);
				cr_assert_eq(ra, rb, "step %d: release %d vs %d", step, ra, rb);
				continue;
			}
			q.r.cost = (r >> 8) % 3 == 0 ? 0 : 1;
			struct sluice_engine_decision a, b;
			cr_assert_eq(sluice_engine_check(mem, &q.r, &a), SLUICE_OK);
			cr_assert_eq(sluice_engine_check(red, &q.r, &b), SLUICE_OK);
			same_decision(&a, &b, (int)c * 1000 + step);
			if (a.d.allowed && a.d.limit_index != conc) {
				uint64_t rem, reset;
				usage_of(mem, &q, conc, &rem, &reset);
				ties += rem == a.d.remaining && reset == a.d.reset_ns;
			}
			if (a.d.allowed && a.slot_count > 0) {
				if (nheld < HELD && q.id[0].bytes == ip1) {
					ha[nheld] = a;
					hb[nheld++] = b;
				} else {
					cr_assert_eq(sluice_engine_release(mem, &a), SLUICE_OK);
					cr_assert_eq(sluice_engine_release(red, &b), SLUICE_OK);
				}
			}
			now += (r >> 16) % (800 * MS);
		}
		if (c < 3)
			cr_expect_gt(ties, 3, "policy %zu: only %d ties", c, ties);
		else
			cr_expect_eq(ties, 0, "policy %zu", c);
		sluice_engine_destroy(red);
		sluice_engine_destroy(mem);
	}
	server_stop(&srv);
}

/* ---- release errors: the limiter ---- */

/* Every release error of sluice_limiter_release()'s contract, the same on
 * both: EINVAL without slots, EKEY, ENOTFOUND for a key with no entry
 * whatever the handle (SLUICE_SLOT_NONE, malformed, another key's), ESTALE
 * on a key that exists for the same handles, EDOUBLE, ESTALE for a lease
 * taken over, OK for an expired lease nobody took. */
Test(redis_parity, limiter_release_errors_match)
{
	struct redis_harness_server srv = server_start();
	uint64_t now = 1700000000ull * SEC;
	struct sluice_limit plain[1] = { gcra(5, SEC, 5) };
	struct pair np = pair_of(plain, 1, srv.port);
	cr_assert_eq(release2(&np, "x", 1, 1), SLUICE_EINVAL);
	pair_destroy(&np);

	struct sluice_limit pol[2] = { gcra(50, SEC, 50), slots_retry(2, 10 * SEC, SEC) };
	struct pair p = pair_of(pol, 2, srv.port);
	sluice_slot_handle ha, hb, oa, ob;
	/* A bad key. */
	int ra = sluice_limiter_release(p.mem, NULL, 1, 1ull << 12);
	int rb = sluice_limiter_release(p.red, NULL, 1, 1ull << 12);
	cr_assert_eq(ra, SLUICE_EKEY);
	cr_assert_eq(rb, ra);
	char big[SLUICE_LIMITER_MAX_KEY + 1];
	memset(big, 'b', sizeof big);
	ra = sluice_limiter_release(p.mem, big, sizeof big, 1ull << 12);
	rb = sluice_limiter_release(p.red, big, sizeof big, 1ull << 12);
	cr_assert_eq(ra, SLUICE_EKEY);
	cr_assert_eq(rb, ra);
	/* Unknown key: ENOTFOUND whatever the handle. */
	cr_assert_eq(release2(&p, "u", SLUICE_SLOT_NONE, SLUICE_SLOT_NONE), SLUICE_ENOTFOUND);
	cr_assert_eq(release2(&p, "u", 1ull << 12 | 7, 1ull << 12 | 7), SLUICE_ENOTFOUND); /* index >= N */
	cr_assert_eq(release2(&p, "u", 5, 5), SLUICE_ENOTFOUND); /* gen 0 */
	cr_assert(acquire2(&p, "other", 1, now, &oa, &ob).allowed);
	cr_assert_eq(release2(&p, "u", oa, ob), SLUICE_ENOTFOUND); /* another key's */
	cr_assert_eq(release2(&p, "u", UINT64_MAX, UINT64_MAX), SLUICE_ENOTFOUND);
	/* A key that exists: the same handles are ESTALE. */
	cr_assert(acquire2(&p, "k", 1, now, &ha, &hb).allowed);
	cr_assert_eq(release2(&p, "k", SLUICE_SLOT_NONE, SLUICE_SLOT_NONE), SLUICE_ESTALE);
	cr_assert_eq(release2(&p, "k", 1ull << 12 | 7, 1ull << 12 | 7), SLUICE_ESTALE);
	cr_assert_eq(release2(&p, "k", 5, 5), SLUICE_ESTALE);
	cr_assert_eq(release2(&p, "k", oa, ob), SLUICE_ESTALE);
	cr_assert_eq(release2(&p, "k", UINT64_MAX, UINT64_MAX), SLUICE_ESTALE);
	/* Nothing above changed the state. */
	struct sluice_decision d = peek2(&p, "k", now);
	cr_assert_eq(d.remaining, 1);
	cr_assert_eq(d.limit_index, 1);
	/* Release, then twice more. */
	cr_assert_eq(release2(&p, "k", ha, hb), SLUICE_OK);
	cr_assert_eq(release2(&p, "k", ha, hb), SLUICE_EDOUBLE);
	cr_assert_eq(release2(&p, "k", ha, hb), SLUICE_EDOUBLE);
	cr_assert_eq(release2(&p, "other", oa, ob), SLUICE_OK);
	/* Leases: both slots taken, both expire; a third acquire takes one
	 * over; its old holder is ESTALE (and stays so), the other expired
	 * holder releases normally. */
	sluice_slot_handle a1, b1, a2, b2, a3, b3;
	cr_assert(acquire2(&p, "l", 1, now, &a1, &b1).allowed);
	cr_assert(acquire2(&p, "l", 1, now + SEC, &a2, &b2).allowed);
	d = acquire2(&p, "l", 1, now + 5 * SEC, &a3, &b3);
	cr_assert_not(d.allowed, "no lease expired yet");
	d = acquire2(&p, "l", 1, now + 10 * SEC, &a3, &b3);
	cr_assert(d.allowed, "the first lease is taken over");
	cr_assert_eq(release2(&p, "l", a1, b1), SLUICE_ESTALE);
	cr_assert_eq(release2(&p, "l", a1, b1), SLUICE_ESTALE);
	d = peek2(&p, "l", now + 20 * SEC);
	cr_assert_eq(d.remaining, 0);
	cr_assert_eq(release2(&p, "l", a2, b2), SLUICE_OK, "expired, not taken over");
	cr_assert_eq(release2(&p, "l", a3, b3), SLUICE_OK);
	cr_assert_eq(release2(&p, "l", a2, b2), SLUICE_EDOUBLE);
	d = peek2(&p, "l", now + 20 * SEC);
	cr_assert_eq(d.remaining, 2);
	pair_destroy(&p);
	server_stop(&srv);
}

/* ---- release errors: the engine ---- */

static int erelease2(struct sluice_engine *mem, struct sluice_engine *red,
		     const struct sluice_engine_decision *a, const struct sluice_engine_decision *b)
{
	struct sluice_engine_decision ca = *a, cb = *b; /* release zeroes slot_count */
	int ra = sluice_engine_release(mem, &ca);
	int rb = sluice_engine_release(red, &cb);
	cr_assert_eq(ra, rb, "engine release: in process %d (%s), Redis %d (%s)", ra, sluice_strerror(ra),
		     rb, sluice_strerror(rb));
	cr_assert_eq(ca.slot_count, 0);
	cr_assert_eq(cb.slot_count, 0);
	return ra;
}

static void echeck2(struct sluice_engine *mem, struct sluice_engine *red, struct req *q,
		    struct sluice_engine_decision *a, struct sluice_engine_decision *b, int step)
{
	cr_assert_eq(sluice_engine_check(mem, &q->r, a), SLUICE_OK);
	cr_assert_eq(sluice_engine_check(red, &q->r, b), SLUICE_OK);
	same_decision(a, b, step);
}

/* sluice_engine_release()'s contract on both: another identity's slot, a
 * SLUICE_SLOT_NONE handle, a double release, a lease
 * taken over by an admitted request and by a request that a later limit
 * refused (engine.c took the slot over and gave it back: the take-over
 * stays, so its old holder is ESTALE and the slot is free), an expired
 * lease nobody took. */
Test(redis_parity, engine_release_errors_match)
{
	struct redis_harness_server srv = server_start();
	struct sluice_engine *red;
	struct sluice_engine *mem = engine_pair(HEAD "limit c per ip concurrency 1 lease 2s\n"
						     "limit r per ip rate 2/1h\n",
						srv.port, &red);
	uint64_t now = DAY0;
	struct req q, other;
	struct sluice_engine_decision a, b, a2, b2, x, y;
	req_init(&q, "GET", "/", "ip1", NULL, now);
	req_init(&other, "GET", "/", "ip9", NULL, now);
	echeck2(mem, red, &q, &a, &b, 0);
	cr_assert(a.d.allowed);
	cr_assert_eq(a.slot_count, 1);
	/* Another identity's slot releases its own (the decision carries
	 * it; the request is not taken again). */
	echeck2(mem, red, &other, &x, &y, 1);
	cr_assert(x.d.allowed);
	cr_assert_eq(erelease2(mem, red, &x, &y), SLUICE_OK);
	/* SLUICE_SLOT_NONE in place of the handle. */
	struct sluice_engine_decision na = a, nb = b;
	na.slots[0].handle = SLUICE_SLOT_NONE;
	nb.slots[0].handle = SLUICE_SLOT_NONE;
	cr_assert_eq(erelease2(mem, red, &na, &nb), SLUICE_ESTALE);
	/* A decision without slots releases nothing. */
	na.slot_count = nb.slot_count = 0;
	cr_assert_eq(erelease2(mem, red, &na, &nb), SLUICE_OK);
	/* Release, then again. */
	cr_assert_eq(erelease2(mem, red, &a, &b), SLUICE_OK);
	cr_assert_eq(erelease2(mem, red, &a, &b), SLUICE_EDOUBLE);

	/* A lease taken over by an admitted request. */
	struct req q2;
	req_init(&q2, "GET", "/", "ip2", NULL, now);
	echeck2(mem, red, &q2, &a, &b, 2);
	cr_assert(a.d.allowed);
	q2.r.now_ns = now + 3 * SEC;
	echeck2(mem, red, &q2, &a2, &b2, 3);
	cr_assert(a2.d.allowed, "the expired lease is taken over");
	cr_assert_eq(erelease2(mem, red, &a, &b), SLUICE_ESTALE);
	/* The new holder's lease expires too; a request now takes the slot
	 * over but the rate limit (2 per hour, both used) refuses it. */
	q2.r.now_ns = now + 6 * SEC;
	echeck2(mem, red, &q2, &x, &y, 4);
	cr_assert_not(x.d.allowed);
	cr_assert_str_eq(x.limit_name, "r");
	/* The refused request's take-over stayed: the holder is ESTALE and
	 * the slot is free. */
	cr_assert_eq(erelease2(mem, red, &a2, &b2), SLUICE_ESTALE);
	q2.r.cost = 0;
	echeck2(mem, red, &q2, &x, &y, 5);
	uint64_t rem, reset;
	usage_of(mem, &q2, 0, &rem, &reset);
	cr_assert_eq(rem, 1, "the slot is free");
	usage_of(red, &q2, 0, &rem, &reset);
	cr_assert_eq(rem, 1, "the slot is free on Redis too");

	/* An expired lease nobody took releases normally. */
	struct req q3;
	req_init(&q3, "GET", "/", "ip3", NULL, now);
	echeck2(mem, red, &q3, &a, &b, 6);
	cr_assert(a.d.allowed);
	q3.r.now_ns = now + 60 * SEC;
	cr_assert_eq(erelease2(mem, red, &a, &b), SLUICE_OK);
	sluice_engine_destroy(red);
	sluice_engine_destroy(mem);
	server_stop(&srv);
}

/* ---- the engine on a three-node cluster: scopes on different slots ---- */

/*
 * The cross-slot protocol visits slot groups in ascending slot order. With
 * the concurrency limit's key on the lower slot, its group is visited first,
 * so without the rank its ties (and a peek stopping at it when full) would
 * name it; engine.c names the rate limit (policy index 0). Also a lease
 * taken over in the first group and a denial in the second: the cancel
 * frees the slot with the take-over kept, as in process.
 */
Test(redis_parity, engine_on_a_cluster_across_slots, .fini = cluster_cleanup)
{
	struct redis_harness_server n[3];
	cluster_start(n);

	/* An identity b whose concurrency key lies on a lower slot than the
	 * rate key of identity "a1". */
	long long sa = keyslot(n[0].port, "sluice:{a=a1}");
	char b[8] = "";
	for (int i = 0; i < 1000 && b[0] == '\0'; i++) {
		char c[8], key[32];
		snprintf(c, sizeof c, "b%d", i);
		snprintf(key, sizeof key, "sluice:{b=%s}", c);
		if (keyslot(n[0].port, key) < sa)
			memcpy(b, c, sizeof c);
	}
	cr_assert_neq(b[0], '\0');

	static const char text[] = "policy \"x\"\nfail open\nscope a\nscope b\n"
				   "limit r per a rate 2/1h\n"
				   "limit c per b concurrency 2 lease 2s\n";
	struct sluice_redis_options ro = ropts(n[0].port, SLUICE_REDIS_CALLER_CLOCK);
	ro.flags |= SLUICE_REDIS_CLUSTER;
	struct sluice_engine_options o = engine_opts(&ro, 1, NULL);
	struct sluice_engine *red = NULL;
	cr_assert_eq(redis_engine_create(&red, load_text(text), &o), SLUICE_OK);
	struct sluice_engine *mem = engine_of(load_text(text));
	struct sluice_engine_decision a, bb, a1, b1, a2, b2, x, y;
	struct req q;
	req_init(&q, "GET", "/", "a1", b, DAY0);

	/* A fresh key: both read 2 remaining, reset 0; the rate limit. */
	q.r.cost = 0;
	echeck2(mem, red, &q, &a, &bb, 0);
	cr_assert_eq(a.d.limit_index, 0);
	cr_assert_eq(a.d.remaining, 2);
	/* Two slots taken (the rate limit's 2 units too). */
	q.r.cost = 1;
	echeck2(mem, red, &q, &a1, &b1, 1);
	echeck2(mem, red, &q, &a2, &b2, 2);
	cr_assert(a2.d.allowed);
	/* A peek with the concurrency limit full (reset: its 1 s hint) and the
	 * rate limit exhausted (reset: its hour): both 0 remaining, the
	 * concurrency limit's reset is shorter; compared on both. */
	q.r.cost = 0;
	echeck2(mem, red, &q, &x, &y, 3);
	cr_assert_eq(x.d.remaining, 0);
	/* Both leases expire; a request takes one over in the concurrency
	 * group (visited first), the rate limit refuses it in the second: the
	 * take-over stays, its old holder is ESTALE, the slot is free. */
	q.r.cost = 1;
	q.r.now_ns = DAY0 + 3 * SEC;
	echeck2(mem, red, &q, &x, &y, 4);
	cr_assert_not(x.d.allowed);
	cr_assert_str_eq(x.limit_name, "r");
	int stale = erelease2(mem, red, &a1, &b1);
	int other = erelease2(mem, red, &a2, &b2);
	cr_assert_eq((stale == SLUICE_ESTALE) + (other == SLUICE_ESTALE), 1, "one holder was taken over");
	cr_assert(stale == SLUICE_OK || other == SLUICE_OK);
	q.r.cost = 0;
	echeck2(mem, red, &q, &x, &y, 5);
	uint64_t rem, reset;
	usage_of(red, &q, 1, &rem, &reset);
	cr_assert_eq(rem, 2, "both slots free on Redis");
	usage_of(mem, &q, 1, &rem, &reset);
	cr_assert_eq(rem, 2, "both slots free in process");
	sluice_engine_destroy(red);
	sluice_engine_destroy(mem);
	for (int i = 0; i < 3; i++)
		server_stop(&n[i]);
}
