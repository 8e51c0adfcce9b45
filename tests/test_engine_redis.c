/*
 * test_engine_redis.c - the policy engine created on Redis
 * (sluice_redis_engine_create(); sluice/redis.h, "Engine on Redis") against
 * real redis-server processes started per test: the same decisions as the
 * in-process engine (caller clock) across scopes, tiers, overrides,
 * per-class limits, warnings and a reload; seed 002 on Redis with its
 * scopes all-or-nothing in one round trip; the key naming scheme and the
 * hash tag on a three-node cluster; fail modes; option validation.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <sluice.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <hiredis/hiredis.h>

#include "redis/redis_backend_internal.h"

#define MS 1000000ull

#include "engine_test_util.h"
#include "redis_server.h"
#define REDIS_TEST_RNG_SEED 0x2545f4914f6cdd1dull
#include "redis_test_util.h"

/* ---- helpers ---- */

static struct sluice_engine *engine_on(const char *text, const struct sluice_engine_options *o)
{
	struct sluice_policy *p = load_text(text);
	struct sluice_engine *e = NULL;
	int rc = redis_engine_create(&e, p, o);
	cr_assert_eq(rc, SLUICE_OK, "create: %d", rc);
	return e;
}

static int try_engine(const char *text, const struct sluice_engine_options *o, struct sluice_engine **e)
{
	struct sluice_policy *p = load_text(text);
	*e = NULL;
	int rc = redis_engine_create(e, p, o);
	if (rc != SLUICE_OK)
		sluice_policy_destroy(p);
	return rc;
}

static struct sluice_redis_stats estats(struct sluice_engine *e)
{
	struct sluice_redis_stats s;

	memset(&s, 0, sizeof s);
	s.size = sizeof s;
	cr_assert_eq(sluice__engine_redis_stats(e, &s), SLUICE_OK);
	return s;
}

static void same_usage(struct sluice_engine *a, struct sluice_engine *b, const struct sluice_engine_request *r,
		       int step)
{
	struct sluice_engine_usage ua[SLUICE_POLICY_MAX_LIMITS], ub[SLUICE_POLICY_MAX_LIMITS];
	size_t na = 0, nb = 0;
	cr_assert_eq(sluice_engine_usage(a, r, ua, SLUICE_POLICY_MAX_LIMITS, &na), SLUICE_OK);
	cr_assert_eq(sluice_engine_usage(b, r, ub, SLUICE_POLICY_MAX_LIMITS, &nb), SLUICE_OK);
	cr_assert_eq(na, nb, "step %d: usage count", step);
	for (size_t i = 0; i < na; i++) {
		cr_assert_eq(ua[i].limit, ub[i].limit, "step %d", step);
		cr_assert_eq(ua[i].count, ub[i].count, "step %d: %s count", step, ua[i].name);
		cr_assert_eq(ua[i].used, ub[i].used, "step %d: %s used %llu vs %llu", step, ua[i].name,
			     (unsigned long long)ua[i].used, (unsigned long long)ub[i].used);
		cr_assert_eq(ua[i].remaining, ub[i].remaining, "step %d", step);
		cr_assert_eq(ua[i].reset_ns, ub[i].reset_ns, "step %d", step);
		cr_assert_eq(ua[i].warn, ub[i].warn, "step %d", step);
		cr_assert_eq(ua[i].overridden, ub[i].overridden, "step %d", step);
		cr_assert_str_eq(ua[i].name, ub[i].name);
	}
}

/* Remaining units of limit `name` for the request's key (via usage). */
static uint64_t remaining_of(struct sluice_engine *e, struct req *q, const char *name)
{
	struct sluice_engine_usage u[SLUICE_POLICY_MAX_LIMITS];
	size_t n = 0;
	cr_assert_eq(sluice_engine_usage(e, &q->r, u, SLUICE_POLICY_MAX_LIMITS, &n), SLUICE_OK);
	for (size_t i = 0; i < n; i++)
		if (strcmp(u[i].name, name) == 0)
			return u[i].remaining;
	cr_assert_fail("no usage for %s", name);
	return 0;
}

/* ---- the same decisions as in process ---- */

static const char policy_a[] =
	"policy \"rd\"\n"
	"fail open\n"
	"scope workspace\n"
	"scope token\n"
	"class search match GET /v1/search\n"
	"class write match POST /v1/*\n"
	"tier pro x2\n"
	"limit ws_minute per workspace rate 30/1m warn 50%\n"
	"limit tok_sec per token rate 5/1s burst 3 tiered\n"
	"limit tok_class per token+class on search,write rate 4/10s\n"
	"limit pair per workspace+token rate 8/1m warn 80%\n"
	"override ws_minute workspace \"big\" 60 until 2027-01-01T00:00:00Z\n";

/* ws_minute and tok_class unchanged; tok_sec's numbers changed (fresh
 * state); pair removed; a new limit. */
static const char policy_b[] =
	"policy \"rd2\"\n"
	"fail open\n"
	"scope workspace\n"
	"scope token\n"
	"class search match GET /v1/search\n"
	"class write match POST /v1/*\n"
	"tier pro x2\n"
	"limit ws_minute per workspace rate 30/1m warn 50%\n"
	"limit tok_sec per token rate 6/1s burst 3 tiered\n"
	"limit tok_class per token+class on search,write rate 4/10s\n"
	"limit tok_hour per token rate 100/1h warn 10%\n"
	"override ws_minute workspace \"big\" 60 until 2027-01-01T00:00:00Z\n";

static void random_request(struct req *q, uint64_t now)
{
	static const char *ws[] = { "w1", "w2", "big", NULL };
	static const char *tok[] = { "t1", "t2", "t3", NULL };
	static const char *routes[][2] = { { "GET", "/v1/search" }, { "POST", "/v1/items" }, { "GET", "/x" } };
	const char *(*r)[2] = &routes[rnd() % 3];
	req_init(q, (*r)[0], (*r)[1], ws[rnd() % 4], tok[rnd() % 4], now);
	q->r.tier = rnd() % 3 == 0 ? 0 : SLUICE_POLICY_NO_TIER;
	q->r.cost = rnd() % 5 == 0 ? 0 : 1 + rnd() % 2;
}

Test(engine_redis, differential_against_the_in_process_engine_with_a_reload)
{
	struct redis_harness_server srv = server_start();
	struct sluice_redis_options ro = ropts(srv.port, SLUICE_REDIS_CALLER_CLOCK);
	struct sluice_engine_options o = engine_opts(&ro, 2, NULL);
	struct sluice_engine *mem = engine_of(load_text(policy_a));
	struct sluice_engine *red = engine_on(policy_a, &o);
	uint64_t now = DAY0;
	int step = 0, allowed = 0, denied = 0, warned = 0;

	for (int it = 0; it < 700; it++) {
		if (it == 350) {
			struct req q;
			req_init(&q, "GET", "/v1/search", "w1", "t1", now);
			same_usage(mem, red, &q.r, step);
			uint64_t ws_used = used_of(red, NULL, &q, "ws_minute");
			cr_assert_eq(sluice_engine_reload(mem, load_text(policy_b)), SLUICE_OK);
			cr_assert_eq(sluice_engine_reload(red, load_text(policy_b)), SLUICE_OK);
			cr_expect_eq(sluice_engine_generation(red), 2);
			/* Unchanged: same state; changed or new: fresh. */
			cr_expect_eq(used_of(red, NULL, &q, "ws_minute"), ws_used);
			cr_expect_eq(remaining_of(red, &q, "tok_sec"), 3, "changed: full (burst 3)");
			cr_expect_eq(used_of(red, NULL, &q, "tok_hour"), 0, "new: full");
			same_usage(mem, red, &q.r, step);
		}
		struct req q;
		random_request(&q, now);
		struct sluice_engine_decision a, b;
		cr_assert_eq(sluice_engine_check(mem, &q.r, &a), SLUICE_OK);
		cr_assert_eq(sluice_engine_check(red, &q.r, &b), SLUICE_OK);
		same_decision(&a, &b, step++);
		allowed += b.d.allowed && b.governed;
		denied += !b.d.allowed;
		warned += b.warn;
		if (it % 25 == 0)
			same_usage(mem, red, &q.r, step);
		now += rnd() % 5 == 0 ? rnd() % (2 * SEC) : rnd() % (100 * MS);
		if (rnd() % 20 == 0)
			now -= rnd() % SEC; /* time going backwards */
	}
	cr_expect_gt(allowed, 100);
	cr_expect_gt(denied, 50);
	cr_expect_gt(warned, 10);
	struct sluice_redis_stats s = estats(red);
	cr_expect_eq(s.degraded, 0);
	cr_expect_eq(s.server_errors, 0);
	sluice_engine_destroy(red);
	sluice_engine_destroy(mem);
	server_stop(&srv);
}

/* ---- seed 002 on Redis ---- */

static char seed002[8192];

/* seed002.policy without the lines containing any of `drop` (NULL-ended),
 * its minute windows turned into token buckets of the same numbers: the
 * seed's page asks for sliding windows, these tests check the GCRA path
 * and its key names. */
static const char *seed002_without(const char *const *drop)
{
	char path[512];
	snprintf(path, sizeof path, "%s/docs/policies/seed002.policy", SLUICE_SOURCE_DIR);
	FILE *f = fopen(path, "r");
	cr_assert_not_null(f);
	char line[512];
	size_t n = 0;
	seed002[0] = '\0';
	while (fgets(line, sizeof line, f) != NULL) {
		bool keep = true;
		for (const char *const *d = drop; *d != NULL && keep; d++)
			keep = strstr(line, *d) == NULL;
		size_t l = strlen(line);
		char *kind = strstr(line, "sliding ");
		if (kind != NULL)
			memcpy(kind, "rate    ", 8);
		if (keep && n + l < sizeof seed002) {
			memcpy(seed002 + n, line, l + 1);
			n += l;
		}
	}
	fclose(f);
	return seed002;
}

Test(engine_redis, seed002_scopes_are_all_or_nothing_in_one_round_trip)
{
	struct redis_harness_server srv = server_start();
	struct sluice_redis_options ro = ropts(srv.port, SLUICE_REDIS_CALLER_CLOCK);
	struct sluice_engine_options o = engine_opts(&ro, 2, NULL);
	struct sluice_engine *red = NULL;

	/* The whole seed: rates, daily quotas (calendar), warnings and the
	 * in-flight slots. */
	static const char *const none[] = { NULL };
	const char *text = seed002_without(none);
	red = engine_on(text, &o);
	struct sluice_engine *mem = engine_of(load_text(text));

	/* Scope ids: token 0, workspace 1. 300/min per workspace, 120/min
	 * per token: three tokens of one workspace fill it at one instant. */
	uint64_t now = DAY0 + 3600 * SEC;
	uint64_t rt0 = estats(red).round_trips;
	int checks = 0;
	char tok[8][8];
	for (int t = 0; t < 8; t++)
		snprintf(tok[t], sizeof tok[t], "tok%d", t);
	for (int t = 0; t < 3; t++) {
		for (int i = 0; i < 100; i++) {
			struct req q;
			req_init(&q, "GET", "/v1/things", tok[t], "ws1", now);
			struct sluice_engine_decision a, b;
			cr_assert_eq(sluice_engine_check(mem, &q.r, &a), SLUICE_OK);
			cr_assert_eq(sluice_engine_check(red, &q.r, &b), SLUICE_OK);
			checks++;
			same_decision(&a, &b, t * 100 + i);
			cr_assert(b.d.allowed);
			cr_assert_eq(b.slot_count, 1, "the token's in-flight slot");
			/* The request completes: its slot goes back. */
			cr_assert_eq(sluice_engine_release(mem, &a), SLUICE_OK);
			cr_assert_eq(sluice_engine_release(red, &b), SLUICE_OK);
			cr_assert_eq(b.slot_count, 0);
			cr_assert_eq(sluice_engine_release(red, &b), SLUICE_OK, "nothing left");
		}
	}
	/* A check that takes a slot and carries a warn limit: one round trip
	 * (the acquire reports every limit's decision, the warn limit's too);
	 * the release: one more. */
	cr_expect_eq(estats(red).round_trips - rt0, 2 * (uint64_t)checks);
	/* The workspace is full: a fresh token of it is refused by ws_minute
	 * and its own limits consume nothing (all-or-nothing). */
	struct req q;
	req_init(&q, "GET", "/v1/things", tok[3], "ws1", now);
	struct sluice_engine_decision a, b;
	cr_assert_eq(sluice_engine_check(mem, &q.r, &a), SLUICE_OK);
	cr_assert_eq(sluice_engine_check(red, &q.r, &b), SLUICE_OK);
	same_decision(&a, &b, 300);
	cr_expect(!b.d.allowed);
	cr_expect_str_eq(b.limit_name, "ws_minute");
	cr_expect_eq(b.scope, 1, "the workspace scope governs");
	cr_expect_eq(b.d.retry_after_ns, 200 * MS, "one unit of 300/min");
	cr_expect_eq(used_of(red, NULL, &q, "token_minute"), 0, "nothing consumed for the token");
	same_usage(mem, red, &q.r, 301);
	/* The same token in another workspace is admitted: its state is its
	 * own, and another workspace's state is untouched. */
	req_init(&q, "GET", "/v1/things", tok[3], "ws2", now);
	cr_assert_eq(sluice_engine_check(mem, &q.r, &a), SLUICE_OK);
	cr_assert_eq(sluice_engine_check(red, &q.r, &b), SLUICE_OK);
	same_decision(&a, &b, 302);
	cr_expect(b.d.allowed);
	/* A request without a workspace is checked against its token only. */
	req_init(&q, "GET", "/v1/things", tok[0], NULL, now);
	cr_assert_eq(sluice_engine_check(mem, &q.r, &a), SLUICE_OK);
	cr_assert_eq(sluice_engine_check(red, &q.r, &b), SLUICE_OK);
	same_decision(&a, &b, 303);
	/* In flight: the 21st concurrent request of a token is refused by
	 * token_inflight (slots first in evaluation order), retry in 1 s. */
	struct sluice_engine_decision held_a[20], held_b[20];
	for (int i = 0; i < 21; i++) {
		req_init(&q, "GET", "/v1/things", tok[5], "ws3", now);
		struct sluice_engine_decision *pa = i < 20 ? &held_a[i] : &a, *pb = i < 20 ? &held_b[i] : &b;
		cr_assert_eq(sluice_engine_check(mem, &q.r, pa), SLUICE_OK);
		cr_assert_eq(sluice_engine_check(red, &q.r, pb), SLUICE_OK);
		same_decision(pa, pb, 400 + i);
	}
	cr_expect(!b.d.allowed);
	cr_expect_eq(b.d.reason, SLUICE_REASON_CONCURRENCY);
	cr_expect_str_eq(b.limit_name, "token_inflight");
	cr_expect_eq(b.d.retry_after_ns, SEC);
	cr_assert_eq(sluice_engine_release(red, &held_b[7]), SLUICE_OK);
	cr_assert_eq(sluice_engine_release(mem, &held_a[7]), SLUICE_OK);
	cr_assert_eq(sluice_engine_check(mem, &q.r, &a), SLUICE_OK);
	cr_assert_eq(sluice_engine_check(red, &q.r, &b), SLUICE_OK);
	same_decision(&a, &b, 421);
	cr_expect(b.d.allowed, "a slot came back");
	/* A reload that changes the in-flight limit drops its slots: their
	 * release is ESTALE, as in process. */
	static const char *const no_inflight[] = { "token_inflight", NULL };
	char changed[8192];
	snprintf(changed, sizeof changed, "%slimit token_inflight per token concurrency 30 retry-after 1s\n",
		 seed002_without(no_inflight));
	cr_assert_eq(sluice_engine_reload(red, load_text(changed)), SLUICE_OK);
	cr_assert_eq(sluice_engine_reload(mem, load_text(changed)), SLUICE_OK);
	cr_expect_eq(sluice_engine_release(red, &held_b[0]), SLUICE_ESTALE);
	cr_expect_eq(sluice_engine_release(mem, &held_a[0]), SLUICE_ESTALE);
	sluice_engine_destroy(red);
	sluice_engine_destroy(mem);

	/* Without slots: one round trip per check, warn peeks included. */
	static const char *const no_slots[] = { "concurrency", NULL };
	text = seed002_without(no_slots);
	red = engine_on(text, &o);
	rt0 = estats(red).round_trips;
	for (int i = 0; i < 10; i++) {
		req_init(&q, "GET", "/v1/things", tok[6], "ws4", now);
		cr_assert_eq(sluice_engine_check(red, &q.r, &b), SLUICE_OK);
		cr_assert(b.d.allowed && b.slot_count == 0);
	}
	cr_expect_eq(estats(red).round_trips - rt0, 10, "one round trip per check");
	sluice_engine_destroy(red);
	server_stop(&srv);
}

/* ---- keys ---- */

Test(engine_redis, key_naming_scheme)
{
	struct redis_harness_server srv = server_start();
	struct sluice_redis_options ro = ropts(srv.port, SLUICE_REDIS_CALLER_CLOCK);
	struct sluice_engine_options o = engine_opts(&ro, 2, NULL);
	struct sluice_engine *red = engine_on(policy_a, &o);
	struct sluice_engine_decision d;
	struct req q;

	/* Identities are %XX-escaped outside printable ASCII and for the
	 * key's own syntax characters. */
	req_init(&q, "GET", "/v1/search", "w 1{x}", "t:1", DAY0);
	q.r.tier = 0;
	cr_assert_eq(sluice_engine_check(red, &q.r, &d), SLUICE_OK);
	cr_expect(d.d.allowed && !d.d.degraded);
	static const char *const keys[] = {
		"sluice:{workspace=w%201%7Bx%7D}:workspace=w%201%7Bx%7D:L=ws_minute:N=1,30,60000000000,30,0,0",
		"sluice:{token=t%3A1}:token=t%3A1:L=tok_sec:T=pro:N=1,10,1000000000,6,0,0",
		"sluice:{token=t%3A1}:token=t%3A1:C=search:L=tok_class:N=1,4,10000000000,4,0,0",
		"sluice:{workspace=w%201%7Bx%7D}:workspace=w%201%7Bx%7D:token=t%3A1:L=pair:N=1,8,60000000000,8,0,0",
	};
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
		cr_expect_eq(side_int(srv.port, "EXISTS", keys[i]), 1, "%s", keys[i]);
	cr_expect_eq(side_int(srv.port, "DBSIZE", NULL), 4);
	/* An override has keys of its own. */
	req_init(&q, "GET", "/x", "big", NULL, DAY0);
	cr_assert_eq(sluice_engine_check(red, &q.r, &d), SLUICE_OK);
	cr_expect_eq(side_int(srv.port, "EXISTS",
			      "sluice:{workspace=big}:workspace=big:L=ws_minute:O=workspace@1798761600000000000:"
			      "N=1,60,60000000000,60,0,0"),
		     1);
	/* With a tag scope every key of the request carries its identity. */
	sluice_engine_destroy(red);
	o = engine_opts(&ro, 2, "workspace");
	red = engine_on(policy_a, &o);
	req_init(&q, "GET", "/x", "w9", "t9", DAY0);
	cr_assert_eq(sluice_engine_check(red, &q.r, &d), SLUICE_OK);
	cr_expect_eq(side_int(srv.port, "EXISTS", "sluice:{workspace=w9}:token=t9:L=tok_sec:N=1,5,1000000000,3,0,0"),
		     1);
	/* ...so a request without it, to which a limit not keyed by it
	 * applies, cannot be placed. */
	req_init(&q, "GET", "/x", NULL, "t9", DAY0);
	cr_expect_eq(sluice_engine_check(red, &q.r, &d), SLUICE_EINVAL);
	/* Keys longer than SLUICE_LIMITER_MAX_KEY once escaped: EKEY. */
	static char bin[SLUICE_ENGINE_MAX_IDENTITY];
	memset(bin, 0xff, sizeof bin);
	req_init(&q, "GET", "/x", "w", "t", DAY0);
	q.id[0].bytes = bin;
	q.id[0].len = sizeof bin;
	q.id[1].bytes = bin;
	q.id[1].len = sizeof bin;
	cr_expect_eq(sluice_engine_check(red, &q.r, &d), SLUICE_EKEY);
	q.id[1].len = sizeof bin + 1;
	cr_expect_eq(sluice_engine_check(red, &q.r, &d), SLUICE_EKEY, "identity too long, as in process");
	sluice_engine_destroy(red);
	server_stop(&srv);
}

/* ---- failures ---- */

static void server_killed(bool closed)
{
	struct redis_harness_server srv = server_start();
	struct sluice_redis_options ro = ropts(srv.port, SLUICE_REDIS_CALLER_CLOCK);
	ro.backoff_min_ns = 200 * MS;
	struct sluice_engine_options o = engine_opts(&ro, 2, NULL);
	char text[2048];
	snprintf(text, sizeof text, "policy \"rd\"\nfail %s\n%s", closed ? "closed" : "open",
		 strstr(policy_a, "scope workspace"));
	struct sluice_engine *red = engine_on(text, &o);
	struct sluice_engine_decision d;
	struct req q;
	req_init(&q, "GET", "/v1/search", "w1", "t1", DAY0);
	cr_assert_eq(sluice_engine_check(red, &q.r, &d), SLUICE_OK);
	cr_expect(d.d.allowed && !d.d.degraded);
	server_stop(&srv);
	for (int i = 0; i < 3; i++) {
		uint64_t t0 = sluice_monotonic_ns();
		cr_assert_eq(sluice_engine_check(red, &q.r, &d), SLUICE_OK);
		cr_expect_lt(sluice_monotonic_ns() - t0, ro.timeout_ns + 100 * MS);
		cr_expect(d.d.degraded);
		cr_expect_eq(d.d.allowed, !closed);
		if (closed) {
			cr_expect_eq(d.d.reason, SLUICE_REASON_CAPACITY);
			cr_expect(d.governed);
			cr_expect_str_eq(d.limit_name, "ws_minute", "the first applicable limit");
			cr_expect_eq(d.d.limit, 30);
		} else {
			cr_expect_eq(d.d.reason, SLUICE_REASON_NONE);
			cr_expect(!d.governed);
			cr_expect_eq(d.d.limit_index, UINT32_MAX);
		}
		cr_expect(!d.warn);
	}
	/* Peeks stay allowed; usage cannot be read. */
	q.r.cost = 0;
	cr_assert_eq(sluice_engine_check(red, &q.r, &d), SLUICE_OK);
	cr_expect(d.d.allowed && d.d.degraded);
	struct sluice_engine_usage u[8];
	size_t n;
	cr_expect_eq(sluice_engine_usage(red, &q.r, u, 8, &n), SLUICE_EBACKEND);
	sluice_engine_destroy(red);
}

Test(engine_redis, server_killed_fail_open)
{
	server_killed(false);
}

Test(engine_redis, server_killed_fail_closed)
{
	server_killed(true);
}

/* ---- options and unsupported calls ---- */

Test(engine_redis, create_validates_options_and_unsupported_calls_say_so)
{
	int port = free_port(); /* nothing listens */
	struct sluice_redis_options ro = ropts(port, SLUICE_REDIS_CALLER_CLOCK);
	struct sluice_engine_options o;
	struct sluice_engine *e;

	o = engine_opts(&ro, 2, NULL);
	o.max_keys = 5;
	cr_expect_eq(try_engine(policy_a, &o, &e), SLUICE_EINVAL, "max_keys bounds a local table");
	o = engine_opts(&ro, 2, NULL);
	t_redis.reserved_ = 1;
	cr_expect_eq(try_engine(policy_a, &o, &e), SLUICE_EINVAL);
	o = engine_opts(&ro, 2, NULL);
	t_redis.connections = SLUICE_REDIS_MAX_CONNECTIONS + 1;
	cr_expect_eq(try_engine(policy_a, &o, &e), SLUICE_EINVAL);
	o = engine_opts(&ro, 2, "tenant");
	cr_expect_eq(try_engine(policy_a, &o, &e), SLUICE_EINVAL, "unknown tag scope");
	struct sluice_redis_options bad = ro;
	bad.fail_mode = SLUICE_FAIL_CLOSED;
	o = engine_opts(&bad, 2, NULL);
	cr_expect_eq(try_engine(policy_a, &o, &e), SLUICE_EINVAL, "the policy's fail mode applies");
	bad = ro;
	bad.key_prefix = "app{1}:";
	o = engine_opts(&bad, 2, NULL);
	cr_expect_eq(try_engine(policy_a, &o, &e), SLUICE_EINVAL, "a brace in the prefix");
	/* Redis options without the backend's. */
	o = engine_opts(NULL, 2, NULL);
	cr_expect_eq(try_engine(policy_a, &o, &e), SLUICE_EINVAL, "connections without redis");
	o = engine_opts(NULL, 0, "workspace");
	cr_expect_eq(try_engine(policy_a, &o, &e), SLUICE_EINVAL);
	/* As in process: at most SLUICE_ENGINE_MAX_SLOTS concurrency limits. */
	o = engine_opts(&ro, 2, NULL);
	char conc5[1024] = "policy \"c\"\nscope t\n";
	for (int i = 0; i <= SLUICE_ENGINE_MAX_SLOTS; i++) {
		char l[64];
		snprintf(l, sizeof l, "limit c%d per t concurrency %d\n", i, i + 1);
		strcat(conc5, l);
	}
	cr_expect_eq(try_engine(conc5, &o, &e), SLUICE_ETOOBIG);
	/* More limits on one class than scopes in one backend request. */
	char many[2048] = "policy \"m\"\nscope t\n";
	for (int i = 0; i <= SLUICE_REDIS_MAX_SCOPES; i++) {
		char l[64];
		snprintf(l, sizeof l, "limit l%d per t rate %d/1m\n", i, i + 1);
		strcat(many, l);
	}
	cr_expect_eq(try_engine(many, &o, &e), SLUICE_ETOOBIG);
	/* A bucket deeper than the backend computes exactly. */
	cr_expect_eq(try_engine("policy \"y\"\nscope t\nlimit y per t rate 2/60d\n", &o, &e), SLUICE_ETOOBIG);

	/* An engine in process has no backend counters. */
	struct sluice_engine_options v1;
	memset(&v1, 0, sizeof v1);
	v1.size = sizeof v1;
	cr_assert_eq(sluice_engine_create(&e, load_text(policy_a), &v1), SLUICE_OK);
	struct sluice_redis_stats rs = { .size = sizeof rs };
	cr_expect_eq(sluice__engine_redis_stats(e, &rs), SLUICE_EINVAL);
	sluice_engine_destroy(e);

	/* A server down is not an error of create. */
	o = engine_opts(&ro, 2, NULL);
	cr_assert_eq(try_engine(policy_a, &o, &e), SLUICE_OK);
	struct sluice_engine_top top[4];
	size_t n = 9;
	cr_expect_eq(sluice_engine_top(e, 0, SLUICE_POLICY_NO_TIER, DAY0, top, 4, &n), SLUICE_EUNSUPPORTED);
	cr_expect_eq(n, 0);
	cr_expect_eq(sluice_engine_sweep(e, DAY0, 100), SLUICE_OK);
	struct req q;
	req_init(&q, "GET", "/v1/search", "w1", "t1", DAY0);
	struct sluice_engine_decision d;
	memset(&d, 0, sizeof d);
	cr_expect_eq(sluice_engine_release(e, &d), SLUICE_OK, "nothing held");
	d.slot_count = 1;
	cr_expect_eq(sluice_engine_release(e, &d), SLUICE_ESTALE, "not a slot of ours");
	cr_expect_eq(d.slot_count, 0);
	/* Argument errors as in process, nothing sent. */
	cr_expect_eq(sluice_engine_check(e, NULL, &d), SLUICE_EINVAL);
	q.r.tier = 5;
	cr_expect_eq(sluice_engine_check(e, &q.r, &d), SLUICE_EINVAL);
	q.r.tier = SLUICE_POLICY_NO_TIER;
	q.r.path = "relative";
	q.r.path_len = 8;
	cr_expect_eq(sluice_engine_check(e, &q.r, &d), SLUICE_EINVAL);
	/* usage with no room sends nothing and counts the keyable limits. */
	size_t cnt = 99;
	req_init(&q, "GET", "/v1/search", "w1", "t1", DAY0);
	cr_expect_eq(sluice_engine_usage(e, &q.r, NULL, 0, &cnt), SLUICE_ETRUNC);
	cr_expect_eq(cnt, 4, "ws_minute, tok_sec, tok_class, pair");
	/* A reload the backend cannot run is refused; the engine goes on
	 * (an exact sliding log longer than the backend keeps). */
	struct sluice_policy *log = load_text("policy \"l\"\nscope workspace\nscope token\n"
					      "limit lg per token sliding 2000/1m\n");
	cr_expect_eq(sluice_engine_reload(e, log), SLUICE_ETOOBIG);
	sluice_policy_destroy(log);
	/* Dry-run limits are in process only: a reload to one is refused,
	 * and so is an engine created on one. */
	static const char dry_text[] = "policy \"d\"\nscope workspace\nscope token\n"
				       "limit a per token rate 5/1s dry-run\n";
	struct sluice_policy *dry = load_text(dry_text);
	cr_expect_eq(sluice_engine_reload(e, dry), SLUICE_EUNSUPPORTED);
	sluice_policy_destroy(dry);
	struct sluice_engine *dry_engine = NULL;
	cr_expect_eq(try_engine(dry_text, NULL, &dry_engine), SLUICE_EUNSUPPORTED);
	cr_expect_null(dry_engine);
	/* A reload that changes the scopes is refused; the engine goes on. */
	struct sluice_policy *other = load_text("policy \"o\"\nscope other\nlimit a per other rate 1/1s\n");
	cr_expect_eq(sluice_engine_reload(e, other), SLUICE_EINVAL);
	sluice_policy_destroy(other); /* refused: still the caller's */
	cr_expect_eq(sluice_engine_generation(e), 1);
	sluice_engine_destroy(e);
}

/* ---- Redis Cluster: the hash tag keeps a request on one slot ---- */

Test(engine_redis, cluster_tag_scope_keeps_a_request_on_one_slot, .fini = cluster_cleanup)
{
	struct redis_harness_server n[3];
	cluster_start(n);

	static const char *const rates_only[] = { "concurrency", "quota", NULL };
	const char *text = seed002_without(rates_only);
	struct sluice_redis_options ro = ropts(n[0].port, SLUICE_REDIS_CALLER_CLOCK | SLUICE_REDIS_CLUSTER);
	/* Token "tok1" and workspace "ws1" tag to different slots. */
	long long ts = keyslot(n[0].port, "sluice:{token=tok1}"), ws = keyslot(n[0].port, "sluice:{workspace=ws1}");
	cr_assert_neq(ts, ws);

	/* Each limit tagged by its own scope: the request spans two slots.
	 * A backend without the cross-slot protocol refuses it before
	 * sending (nothing consumed); one with it decides it. */
	struct sluice_engine_options o = engine_opts(&ro, 2, NULL);
	struct sluice_engine *own = engine_on(text, &o);
	struct sluice_engine_decision d;
	struct req q;
	req_init(&q, "GET", "/v1/x", "tok1", "ws1", DAY0);
	int rc = sluice_engine_check(own, &q.r, &d);
	cr_assert(rc == SLUICE_EUNSUPPORTED || rc == SLUICE_OK, "check: %d", rc);
	if (rc == SLUICE_EUNSUPPORTED)
		cr_expect_eq(used_of(own, NULL, &q, "ws_minute"), 0, "nothing consumed");
	else
		cr_expect(d.d.allowed && !d.d.degraded && d.d.remaining == 119);
	req_init(&q, "GET", "/v1/x", "tok1", NULL, DAY0);
	cr_assert_eq(sluice_engine_check(own, &q.r, &d), SLUICE_OK, "one scope, one slot");
	cr_expect(d.d.allowed && !d.d.degraded);

	/* The workspace as the tag: every key of the request on its slot. */
	o = engine_opts(&ro, 2, "workspace");
	struct sluice_engine *tagged = engine_on(text, &o);
	struct sluice_engine *mem = engine_of(load_text(text));
	for (int i = 0; i < 130; i++) {
		struct sluice_engine_decision a;
		req_init(&q, "GET", "/v1/x", "tok1", "ws1", DAY0);
		cr_assert_eq(sluice_engine_check(mem, &q.r, &a), SLUICE_OK);
		cr_assert_eq(sluice_engine_check(tagged, &q.r, &d), SLUICE_OK);
		same_decision(&a, &d, i);
	}
	cr_expect(!d.d.allowed);
	cr_expect_str_eq(d.limit_name, "token_minute");
	int owner = owner_of(ws);
	cr_expect_eq(side_int(n[owner].port, "EXISTS",
			      "sluice:{workspace=ws1}:token=tok1:L=token_minute:N=1,120,60000000000,120,0,0"),
		     1);
	cr_expect_eq(estats(tagged).degraded, 0);
	sluice_engine_destroy(mem);
	sluice_engine_destroy(tagged);
	sluice_engine_destroy(own);
	for (int i = 0; i < 3; i++)
		server_stop(&n[i]);
}

/* ---- a frozen server and a busy pool: bounded waits ---- */

/* One check of the frozen pool's engine: fail open answers allowed,
 * degraded, nothing governing. */
static int frozen_call(void *ctx, bool *as_expected)
{
	struct req q;
	struct sluice_engine_decision d;
	req_init(&q, "GET", "/v1/search", "w1", "t1", DAY0);
	int rc = sluice_engine_check(ctx, &q.r, &d);
	*as_expected = rc == SLUICE_OK && d.d.degraded && d.d.allowed && !d.governed;
	return rc;
}

Test(engine_redis, busy_pool_answers_by_the_fail_mode_within_twice_the_timeout)
{
	struct redis_harness_server srv = server_start();
	struct sluice_redis_options ro = ropts(srv.port, SLUICE_REDIS_CALLER_CLOCK);
	ro.timeout_ns = 500 * MS; /* margins below: see the bound */
	ro.backoff_min_ns = 1; /* every call reconnects and blocks its timeout */
	ro.backoff_max_ns = 1;
	struct sluice_engine_options o = engine_opts(&ro, 2, NULL);
	t_redis.connections = 1;
	struct sluice_engine *red = engine_on(policy_a, &o);
	kill(srv.pid, SIGSTOP);
	uint64_t worst;
	int degraded;
	frozen_run(frozen_call, red, &worst, &degraded);
	/* A check waits at most one timeout for the connection, then sends
	 * at most two calls (e.g. an acquire, then its warnings' peeks), each
	 * bounded by the timeout: 1.5 s. Without the bound a thread queues
	 * behind the others' calls on the one connection: up to 11 calls of
	 * 0.5 s. 2.5 s leaves a second for a loaded CI machine (1.2 s seen
	 * at a 200 ms timeout). */
	cr_expect_lt(worst, 3 * ro.timeout_ns + SEC, "worst check %llu ms",
		     (unsigned long long)(worst / MS));
	cr_expect_eq(degraded, FROZEN_THREADS * FROZEN_CALLS,
		     "fail open: allowed, degraded, nothing governs");
	sluice_engine_destroy(red);
	server_stop(&srv);
}

/* Every applied limit's decision of one check, in process and on Redis:
 * equal after admissions (the script reports each, atomically with the
 * admission, in one round trip), and after a refusal (the refusal, and the
 * others read after it). */
Test(engine_redis, per_limit_decisions_match_in_process)
{
	struct redis_harness_server srv = server_start();
	struct sluice_redis_options ro = ropts(srv.port, SLUICE_REDIS_CALLER_CLOCK);
	struct sluice_engine_options o = engine_opts(&ro, 1, NULL);
	struct sluice_engine *red = engine_on(policy_a, &o);
	struct sluice_engine *mem = engine_of(load_text(policy_a));
	struct sluice_decision pa[SLUICE_POLICY_MAX_LIMITS], pb[SLUICE_POLICY_MAX_LIMITS];
	struct sluice_engine_decision a, b;
	struct req q;
	uint64_t rt0 = estats(red).round_trips;
	int checks = 0;

	req_init(&q, "GET", "/v1/search", "w1", "t1", DAY0);
	q.r.limit_decisions_cap = SLUICE_POLICY_MAX_LIMITS;
	for (int i = 0; i < 6; i++) {
		q.r.limit_decisions = pa;
		cr_assert_eq(sluice_engine_check(mem, &q.r, &a), SLUICE_OK);
		q.r.limit_decisions = pb;
		cr_assert_eq(sluice_engine_check(red, &q.r, &b), SLUICE_OK);
		checks += a.d.allowed;
		same_decision(&a, &b, i);
		cr_assert_eq(a.applied, b.applied);
		for (uint32_t l = 0; l < SLUICE_POLICY_MAX_LIMITS; l++) {
			if (!(a.applied & (UINT32_C(1) << l)))
				continue;
			char what[32];
			snprintf(what, sizeof what, "step %d limit %u", i, l);
			assert_same_at(&pa[l], &pb[l], what);
		}
	}
	cr_assert_eq(checks, 3, "tok_sec: a burst of 3");
	cr_expect_eq(estats(red).round_trips - rt0, (uint64_t)checks + 3 * 2,
		     "one per admission; a refusal reads the others in one more");
	sluice_engine_destroy(mem);
	sluice_engine_destroy(red);
	server_stop(&srv);
}

Test(engine_redis, state_file_is_unsupported_redis_keeps_the_state)
{
	struct redis_harness_server srv = server_start();
	struct sluice_redis_options ro = ropts(srv.port, SLUICE_REDIS_CALLER_CLOCK);
	struct sluice_engine_options o = engine_opts(&ro, 2, NULL);
	struct sluice_engine *e;
	o.state_path = "/tmp/sluice_never_written";
	cr_assert_eq(try_engine(policy_a, &o, &e), SLUICE_EUNSUPPORTED);
	o = engine_opts(&ro, 2, NULL);
	e = engine_on(policy_a, &o);
	cr_assert_eq(sluice_engine_snapshot(e, "/tmp/sluice_never_written", DAY0, NULL), SLUICE_EUNSUPPORTED);
	cr_assert_eq(sluice_engine_restore(e, "/tmp/sluice_never_written", DAY0, NULL), SLUICE_EUNSUPPORTED);
	sluice_engine_destroy(e);
	server_stop(&srv);
}
