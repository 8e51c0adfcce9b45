/*
 * test_shm_engine.c - the policy engine on a shared-memory zone
 * (sluice_shm_engine_create()): the same decisions as the in-process
 * engine on traces of the seed-002 policy (shipped, and with its sliding
 * logs as buckets), state shared by processes,
 * zone re-init across a policy change (unchanged limits kept, changed ones
 * fresh), and the refusals.
 */
#include "engine_test_util.h"

#define MS 1000000ull

#include <sys/wait.h>
#include <unistd.h>

/* seed002.policy with its two sliding minute windows (exact logs) as token
 * buckets of the same numbers; the daily quotas, the concurrency limit,
 * warnings and answers as shipped. */
static struct sluice_policy *seed002_buckets(void)
{
	char path[512];
	snprintf(path, sizeof path, "%s/docs/policies/seed002.policy", SLUICE_SOURCE_DIR);
	FILE *f = fopen(path, "rb");
	cr_assert_not_null(f);
	static char buf[1 << 16], out[1 << 16];
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* Replace every "sliding " in limit lines by "rate    " (same width). */
	strcpy(out, buf);
	for (char *p = out; (p = strstr(p, "sliding ")) != NULL; p += 8)
		if (p > out && p[-1] == ' ')
			memcpy(p, "rate    ", 8);
	return load_text(out);
}

static void *engine_zone(const struct sluice_policy *p, uint64_t keys, size_t *bytes)
{
	void *base;
	struct sluice_shm_info info = { .size = sizeof info };
	cr_assert_eq(sluice_shm_zone_size(p, keys, bytes), SLUICE_OK);
	cr_assert_eq(sluice_shm_map_anonymous(*bytes, &base), SLUICE_OK);
	cr_assert_eq(sluice_shm_zone_init(base, *bytes, p, 0, &info), SLUICE_OK, "%s", info.message);
	cr_assert_eq(info.regions, sluice_policy_spec(p)->limit_count);
	cr_assert_eq(info.formatted, 1);
	return base;
}

static struct sluice_engine *shm_engine(struct sluice_policy *p, void *base, size_t bytes)
{
	struct sluice_engine *e;
	cr_assert_eq(sluice_shm_engine_create(&e, p, base, bytes, NULL), SLUICE_OK);
	return e;
}

static uint64_t rng_next(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* The same trace (random tokens and workspaces, costs 1-2, time mostly
 * forward across midnight UTC and sometimes backwards, slots held a while)
 * through an in-process engine of pm and a shm engine of ps (the same
 * policy): every decision equal. */
static void parity(struct sluice_policy *pm, struct sluice_policy *ps, unsigned ntok, uint64_t step_ns)
{
	size_t bytes;
	void *base = engine_zone(ps, 1000, &bytes);
	struct sluice_engine *mem = engine_of(pm), *shm = shm_engine(ps, base, bytes);
	struct sluice_engine_decision held_m[32], held_s[32];
	unsigned nheld = 0;
	uint64_t now = DAY0 + 23 * 3600 * SEC, s = 42;
	char tok[16], ws[16];

	for (int step = 0; step < 30000; step++) {
		uint64_t r = rng_next(&s);
		snprintf(tok, sizeof tok, "tok%u", (unsigned)(r % ntok));
		snprintf(ws, sizeof ws, "ws%u", (unsigned)((r >> 8) % 3));
		if ((r >> 16) % 32 == 0)
			now -= (r >> 24) % (2 * SEC); /* backwards */
		else
			now += (r >> 24) % step_ns; /* crosses midnight UTC */
		struct req q;
		req_init(&q, "GET", "/v1/items", tok, ws, now);
		q.r.cost = 1 + (r >> 40) % 2;
		struct sluice_engine_decision a, b;
		cr_assert_eq(sluice_engine_check(mem, &q.r, &a), SLUICE_OK);
		cr_assert_eq(sluice_engine_check(shm, &q.r, &b), SLUICE_OK);
		cr_assert_eq(a.d.allowed, b.d.allowed, "step %d", step);
		cr_assert_eq(a.d.reason, b.d.reason, "step %d", step);
		cr_assert_eq(a.d.degraded, b.d.degraded, "step %d", step);
		cr_assert_eq(a.d.limit_index, b.d.limit_index, "step %d", step);
		cr_assert_eq(a.d.limit, b.d.limit, "step %d", step);
		cr_assert_eq(a.d.remaining, b.d.remaining, "step %d: %llu vs %llu", step,
			     (unsigned long long)a.d.remaining, (unsigned long long)b.d.remaining);
		cr_assert_eq(a.d.reset_ns, b.d.reset_ns, "step %d", step);
		cr_assert_eq(a.d.retry_after_ns, b.d.retry_after_ns, "step %d", step);
		cr_assert_eq(a.warn, b.warn, "step %d", step);
		cr_assert_eq(a.slot_count, b.slot_count, "step %d", step);
		cr_assert_str_eq(a.limit_name, b.limit_name, "step %d", step);
		/* Hold some slots a while; release the oldest. */
		if (a.d.allowed && a.slot_count > 0) {
			if (nheld == 32 || (r >> 48) % 2 == 0) {
				cr_assert_eq(sluice_engine_release(mem, &a), SLUICE_OK);
				cr_assert_eq(sluice_engine_release(shm, &b), SLUICE_OK);
			} else {
				held_m[nheld] = a;
				held_s[nheld++] = b;
			}
		}
		if (nheld > 0 && (r >> 56) % 4 == 0) {
			nheld--;
			cr_assert_eq(sluice_engine_release(mem, &held_m[nheld]), sluice_engine_release(shm, &held_s[nheld]),
				     "step %d", step);
		}
	}
	sluice_engine_destroy(mem);
	sluice_engine_destroy(shm);
	sluice_shm_unmap(base, bytes);
}

Test(shm_engine, seed002_same_decisions_as_in_process)
{
	parity(seed002_buckets(), seed002_buckets(), 12, 200 * MS);
}

/* The shipped seed002, its minute windows exact sliding logs in the zone. */
Test(shm_engine, seed002_sliding_logs_same_decisions_as_in_process)
{
	parity(load_file("seed002.policy"), load_file("seed002.policy"), 12, 200 * MS);
}

/* Small numbers of every kind a zone holds, so that every limit refuses
 * in turn and refusals cancel what the others reserved. */
static const char small[] = "policy \"small\"\nscope token\nscope workspace\n"
			    "limit conc per token concurrency 2\n"
			    "limit day per token quota 40/1d@utc\n"
			    "limit burst per token rate 4/1s burst 3\n"
			    "limit ws per workspace rate 20/1s\n"
			    "limit wsmin per workspace sliding 5000/1m\n";

Test(shm_engine, every_kind_same_decisions_as_in_process)
{
	parity(load_text(small), load_text(small), 6, 300 * MS);
}

Test(shm_engine, processes_share_the_limits)
{
	struct sluice_policy *p = seed002_buckets();
	size_t bytes;
	void *base = engine_zone(p, 100, &bytes);
	pid_t pid = fork();
	if (pid == 0) {
		/* The child spends the token's minute bucket (120). */
		struct sluice_engine *e;
		if (sluice_shm_engine_create(&e, seed002_buckets(), base, bytes, NULL) != SLUICE_OK)
			_exit(2);
		for (int i = 0; i < 120; i++) {
			struct req q;
			struct sluice_engine_decision d;
			req_init(&q, "GET", "/v1/items", "shared-token", "ws", DAY0 + SEC);
			if (sluice_engine_check(e, &q.r, &d) != SLUICE_OK || !d.d.allowed)
				_exit(3);
			sluice_engine_release(e, &d);
		}
		_exit(0);
	}
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	struct sluice_engine *e = shm_engine(p, base, bytes);
	struct req q;
	req_init(&q, "GET", "/v1/items", "shared-token", "ws", DAY0 + SEC);
	struct sluice_engine_decision d = run(e, &q);
	cr_assert(!d.d.allowed, "the child's admissions count here");
	cr_assert_str_eq(d.limit_name, "token_minute");
	sluice_engine_destroy(e);
	sluice_shm_unmap(base, bytes);
}

Test(shm_engine, reinit_for_a_changed_policy_keeps_unchanged_limits)
{
	const char *v1 = "policy \"p\"\nscope token\n"
			 "limit minute per token rate 2/1m\n"
			 "limit day per token quota 3/1d@utc\n";
	const char *v2 = "policy \"p\"\nscope token\n"
			 "limit minute per token rate 5/1m\n"
			 "limit day per token quota 3/1d@utc\n";
	struct sluice_policy *p1 = load_text(v1), *p2 = load_text(v2);
	size_t bytes;
	void *base;
	struct sluice_shm_info info = { .size = sizeof info };
	cr_assert_eq(sluice_shm_zone_size(p1, 100, &bytes), SLUICE_OK);
	cr_assert_eq(sluice_shm_map_anonymous(bytes, &base), SLUICE_OK);
	cr_assert_eq(sluice_shm_zone_init(base, bytes, p1, 0, &info), SLUICE_OK);
	struct sluice_engine *e = shm_engine(p1, base, bytes);
	struct req q;
	req_init(&q, "GET", "/", "t", NULL, DAY0 + SEC);
	cr_assert(run(e, &q).d.allowed);
	cr_assert(run(e, &q).d.allowed);
	cr_assert(!run(e, &q).d.allowed, "minute bucket empty");
	sluice_engine_destroy(e);
	/* An engine of v2 on v1's zone: its changed limit has no region. */
	cr_assert_eq(sluice_shm_engine_create(&e, p2, base, bytes, NULL), SLUICE_ECORRUPT);
	cr_assert_eq(sluice_shm_zone_init(base, bytes, p2, 0, &info), SLUICE_OK);
	cr_assert_eq(info.kept, 1);
	cr_assert_eq(info.reset, 1);
	e = shm_engine(p2, base, bytes);
	struct sluice_engine_decision d = run(e, &q);
	cr_assert(d.d.allowed, "a fresh minute bucket of 5");
	d = run(e, &q);
	cr_assert(!d.d.allowed, "the kept day quota (3) is spent");
	cr_assert_str_eq(d.limit_name, "day");
	sluice_engine_destroy(e);
	sluice_shm_unmap(base, bytes);
}

Test(shm_engine, reload_stats_and_top)
{
	const char *v1 = "policy \"p\"\nscope token\n"
			 "limit minute per token rate 2/1m\n";
	const char *v2 = "policy \"p\"\nscope token\n"
			 "limit minute per token rate 9/1m\n";
	struct sluice_policy *p1 = load_text(v1);
	size_t bytes;
	void *base = engine_zone(p1, 100, &bytes);
	struct sluice_engine *e = shm_engine(p1, base, bytes), *other = shm_engine(load_text(v1), base, bytes);
	struct req q;
	req_init(&q, "GET", "/", "t1", NULL, DAY0 + SEC);
	cr_assert(run(e, &q).d.allowed);
	req_init(&q, "GET", "/", "t2", NULL, DAY0 + SEC);
	cr_assert(run(other, &q).d.allowed);
	cr_assert(run(other, &q).d.allowed);
	cr_assert(!run(other, &q).d.allowed);
	/* Counters and keys are the zone's: one engine sees every process's. */
	struct sluice_engine_limit_stats ls = { .size = sizeof ls };
	cr_assert_eq(sluice_engine_limit_stats(e, 0, &ls), SLUICE_OK);
	cr_assert_eq(ls.admitted, 3);
	cr_assert_eq(ls.denied, 1);
	cr_assert_eq(ls.live_keys, 2);
	struct sluice_engine_top top[4];
	size_t n = 0;
	cr_assert_eq(sluice_engine_top(e, 0, -1, DAY0 + SEC, top, 4, &n), SLUICE_OK);
	cr_assert_eq(n, 2);
	/* A reload to the same policy keeps the region; to a changed limit,
	 * whose region the zone lacks, fails and keeps the old policy. */
	cr_assert_eq(sluice_engine_reload(e, load_text(v1)), SLUICE_OK);
	struct sluice_policy *p2 = load_text(v2);
	cr_assert_eq(sluice_engine_reload(e, p2), SLUICE_ECORRUPT);
	sluice_policy_destroy(p2);
	req_init(&q, "GET", "/", "t1", NULL, DAY0 + SEC);
	cr_assert(run(e, &q).d.allowed);
	cr_assert(!run(e, &q).d.allowed, "the state survived both reloads");
	sluice_engine_destroy(e);
	sluice_engine_destroy(other);
	sluice_shm_unmap(base, bytes);
}

Test(shm_engine, size_and_capacity_agree)
{
	struct sluice_policy *p = seed002_buckets();
	for (uint64_t keys = 1; keys < 5000000; keys = keys * 7 + 3) {
		size_t bytes;
		uint64_t cap;
		cr_assert_eq(sluice_shm_zone_size(p, keys, &bytes), SLUICE_OK);
		cr_assert_eq(sluice_shm_zone_capacity(p, bytes, &cap), SLUICE_OK);
		cr_assert_geq(cap, keys, "a zone sized for %llu keys holds %llu", (unsigned long long)keys,
			      (unsigned long long)cap);
		size_t again;
		cr_assert_eq(sluice_shm_zone_size(p, cap, &again), SLUICE_OK);
		cr_assert_leq(again, bytes, "the capacity of %zu bytes fits in them", bytes);
	}
	/* 64 MiB, as an nginx zone gives: four one-word limits at 84 B a key
	 * and the 20 slots at 588 (1.5 x (48 + 8 + 16 + 20 x 16)): ~78k keys. */
	uint64_t cap;
	cr_assert_eq(sluice_shm_zone_capacity(p, 64u << 20, &cap), SLUICE_OK);
	cr_assert_gt(cap, 70000);
	cr_assert_lt(cap, 90000);
	cr_assert_eq(sluice_shm_zone_capacity(p, 100, &cap), SLUICE_OK);
	cr_assert_eq(cap, 0);
	size_t bytes;
	cr_assert_eq(sluice_shm_zone_size(p, 0, &bytes), SLUICE_EINVAL);
	cr_assert_eq(sluice_shm_zone_size(NULL, 1, &bytes), SLUICE_EINVAL);
	sluice_policy_destroy(p);
}

Test(shm_engine, refusals)
{
	struct sluice_policy *p = seed002_buckets();
	size_t bytes;
	void *base = engine_zone(p, 10, &bytes);
	struct sluice_engine *e;
	struct sluice_engine_options o = { .size = sizeof o, .max_keys = 10 };
	cr_assert_eq(sluice_shm_engine_create(&e, p, base, bytes, &o), SLUICE_EINVAL);
	o.max_keys = 0;
	o.state_path = "/tmp/x";
	cr_assert_eq(sluice_shm_engine_create(&e, p, base, bytes, &o), SLUICE_EUNSUPPORTED);
	cr_assert_eq(sluice_shm_engine_create(&e, p, base, bytes - 64, NULL), SLUICE_ECORRUPT);
	cr_assert_eq(sluice_shm_engine_create(&e, p, NULL, bytes, NULL), SLUICE_EINVAL);
	sluice_policy_destroy(p);
	sluice_shm_unmap(base, bytes);
}
