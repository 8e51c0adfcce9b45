/*
 * bench_engine.c - the policy engine (include/sluice/engine.h) on seed 002.
 *
 *   BM_engine_check_seed002      one full policy check per request (route
 *                                match + 5 limits across two scopes: token
 *                                minute/day/in-flight, workspace minute/day)
 *                                and the release of its slot
 *   BM_engine_single/L           baseline: limit L of the same policy alone,
 *                                in its own keyed limiter, with the same key
 *                                bytes and request stream (L = 0..4 in policy
 *                                order; 4, the slots, is acquire + release)
 *   BM_engine_route_seed002      the route match alone
 *   BM_engine_check_seed002_icount  a fixed loop of 2^16 checks (+ releases)
 *                                of seed 002 for instruction counts:
 *                                valgrind --tool=callgrind
 *                                --toggle-collect='engine_icount_loop*'
 *   BM_engine_check_seed002_dry_run, BM_engine_check_seed002_dry_run_icount
 *                                the same with a sixth limit in dry-run
 *                                (per token, sliding 60/1m: rarely binds),
 *                                decided after the five, alone
 *   BM_engine_contended/G        threads on one token, a daily quota listed
 *                                before a refusing per-second limit: quota
 *                                units taken by refused requests ("lost")
 * The sum of the five singles plus the route is what the engine costs if
 * composition were free; docs/benchmarks.md compares.
 *
 * 4096 tokens in 256 workspaces, uniform, pre-inserted; now advances 10 ms
 * per request (computed, not read), so limits rarely bind (about 0.2 requests
 * per token and minute, 2.3 per workspace). One thread.
 */
#include <sluice.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shim.h"

#define TOKENS 4096
#define WORKSPACES 256
#define STREAM (1u << 16)
#define SEC 1000000000ull
#define DAY0 (UINT64_C(1795392000) * SEC)
#define STEP_NS (10 * 1000 * 1000)

static char tok[TOKENS][16], ws[WORKSPACES][16];
static uint32_t stream[STREAM];
static struct sluice_policy *policy_view;

static void make_stream(void)
{
	static int done;
	if (done)
		return;
	done = 1;
	uint64_t x = 0x9e3779b97f4a7c15ull;
	for (int i = 0; i < TOKENS; i++)
		snprintf(tok[i], sizeof tok[i], "tok_%010d", i);
	for (int i = 0; i < WORKSPACES; i++)
		snprintf(ws[i], sizeof ws[i], "ws_%011d", i);
	for (uint32_t i = 0; i < STREAM; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		stream[i] = (uint32_t)(x % TOKENS);
	}
}

/* A shadow limit appended to seed 002 by the _dry_run variants. */
static const char dry_run_limit[] = "\nlimit shadow per token sliding 60/1m dry-run\n";

/* Seed 002, with `extra` appended (NULL: none). */
static struct sluice_policy *load_seed002_plus(sbench_state *st, const char *extra)
{
	char path[512];
	static char buf[1 << 14];
	snprintf(path, sizeof path, "%s/docs/policies/seed002.policy", SLUICE_SOURCE_DIR);
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		sbench_error(st, "cannot open seed002.policy");
		return NULL;
	}
	size_t len = fread(buf, 1, sizeof buf - 256, f);
	fclose(f);
	if (extra != NULL) {
		memcpy(buf + len, extra, strlen(extra));
		len += strlen(extra);
	}
	struct sluice_policy *p = NULL;
	if (sluice_policy_parse(buf, len, NULL, &p, NULL) != SLUICE_OK)
		sbench_error(st, "seed002.policy does not parse");
	return p;
}

static struct sluice_policy *load_seed002(sbench_state *st)
{
	return load_seed002_plus(st, NULL);
}

static void check_seed002(sbench_state *st, const char *extra)
{
	make_stream();
	struct sluice_policy *p = load_seed002_plus(st, extra);
	struct sluice_engine *eng = NULL;
	if (p == NULL || sluice_engine_create(&eng, p, NULL) != SLUICE_OK) {
		sbench_error(st, "engine");
		return;
	}
	struct sluice_identity id[2];
	struct sluice_engine_request r;
	struct sluice_engine_decision d;
	memset(&r, 0, sizeof r);
	r.method = "GET";
	r.method_len = 3;
	r.path = "/v1/items/123";
	r.path_len = strlen(r.path);
	r.identities = id;
	r.identity_count = 2;
	r.tier = SLUICE_POLICY_NO_TIER;
	r.cost = 1;
	uint64_t now = DAY0, admitted = 0;
	/* Insert every key first (outside the timed loop). */
	for (int t = 0; t < TOKENS; t++) {
		id[0].bytes = tok[t];
		id[0].len = 14;
		id[1].bytes = ws[t % WORKSPACES];
		id[1].len = 14;
		r.now_ns = now;
		sluice_engine_check(eng, &r, &d);
		sluice_engine_release(eng, &d);
	}
	/* The maintenance a server runs (the sweep also moves new short keys
	 * into their inline slots, docs/limiter.md): the steady state. */
	sluice_engine_sweep(eng, now, SIZE_MAX);
	uint32_t j = 0;
	for (uint64_t n; (n = sbench_batch(st)) != 0;)
		for (uint64_t i = 0; i < n; i++) {
			uint32_t t = stream[j++ & (STREAM - 1)];
			id[0].bytes = tok[t];
			id[1].bytes = ws[t % WORKSPACES];
			now += STEP_NS;
			r.now_ns = now;
			sluice_engine_check(eng, &r, &d);
			admitted += d.d.allowed;
			if (d.slot_count)
				sluice_engine_release(eng, &d);
		}
	sbench_counter(st, "admitted", (double)admitted / (double)sbench_iterations(st), 1);
	sluice_engine_destroy(eng);
}

static void BM_engine_check_seed002(sbench_state *st)
{
	check_seed002(st, NULL);
}
SBENCH_REGISTER(BM_engine_check_seed002) { (void)b; }

static void BM_engine_check_seed002_dry_run(sbench_state *st)
{
	check_seed002(st, dry_run_limit);
}
SBENCH_REGISTER(BM_engine_check_seed002_dry_run) { (void)b; }

/* The loop callgrind counts (--toggle-collect='engine_icount_loop*'):
 * everything in it is fixed (the stream, the clock steps), so its count is
 * the same in every run; Collected / 2^16 = instructions per request. */
#define ICOUNT_REQUESTS (1u << 16)
__attribute__((noinline)) static uint64_t engine_icount_loop(struct sluice_engine *eng,
							    struct sluice_engine_request *r,
							    struct sluice_identity *id, uint64_t now)
{
	struct sluice_engine_decision d;
	uint64_t admitted = 0;
	for (uint32_t j = 0; j < ICOUNT_REQUESTS; j++) {
		uint32_t t = stream[j & (STREAM - 1)];
		id[0].bytes = tok[t];
		id[1].bytes = ws[t % WORKSPACES];
		r->now_ns = now + (uint64_t)j * STEP_NS;
		sluice_engine_check(eng, r, &d);
		admitted += d.d.allowed;
		if (d.slot_count)
			sluice_engine_release(eng, &d);
	}
	return admitted;
}

static void check_seed002_icount(sbench_state *st, const char *extra)
{
	make_stream();
	struct sluice_policy *p = load_seed002_plus(st, extra);
	struct sluice_engine *eng = NULL;
	if (p == NULL || sluice_engine_create(&eng, p, NULL) != SLUICE_OK) {
		sbench_error(st, "engine");
		return;
	}
	struct sluice_identity id[2] = { { tok[0], 14 }, { ws[0], 14 } };
	struct sluice_engine_request r;
	struct sluice_engine_decision d;
	memset(&r, 0, sizeof r);
	r.method = "GET";
	r.method_len = 3;
	r.path = "/v1/items/123";
	r.path_len = strlen(r.path);
	r.identities = id;
	r.identity_count = 2;
	r.tier = SLUICE_POLICY_NO_TIER;
	r.cost = 1;
	for (int t = 0; t < TOKENS; t++) { /* every key inserted first */
		id[0].bytes = tok[t];
		id[1].bytes = ws[t % WORKSPACES];
		r.now_ns = DAY0;
		sluice_engine_check(eng, &r, &d);
		if (d.slot_count)
			sluice_engine_release(eng, &d);
	}
	sluice_engine_sweep(eng, DAY0, SIZE_MAX); /* as check_seed002() */
	uint64_t admitted = 0;
	for (uint64_t n; (n = sbench_batch(st)) != 0;)
		for (uint64_t i = 0; i < n; i += ICOUNT_REQUESTS)
			admitted += engine_icount_loop(eng, &r, id, DAY0 + SEC);
	sbench_counter(st, "admitted", (double)admitted, 0);
	sluice_engine_destroy(eng);
}

static void BM_engine_check_seed002_icount(sbench_state *st)
{
	check_seed002_icount(st, NULL);
}
SBENCH_REGISTER(BM_engine_check_seed002_icount)
{
	sbench_fixed_iterations(b, ICOUNT_REQUESTS);
}

static void BM_engine_check_seed002_dry_run_icount(sbench_state *st)
{
	check_seed002_icount(st, dry_run_limit);
}
SBENCH_REGISTER(BM_engine_check_seed002_dry_run_icount)
{
	sbench_fixed_iterations(b, ICOUNT_REQUESTS);
}

/* The limiter spec of limit L of seed 002 (as the engine builds it). */
static int single_spec(int l, struct sluice_limit *out)
{
	memset(out, 0, sizeof *out);
	switch (l) {
	case 0:
		out->kind = SLUICE_LIMIT_GCRA;
		return sluice_rate_init(&out->rate, 120, 60 * SEC, 120);
	case 1:
		out->kind = SLUICE_LIMIT_CALENDAR;
		return sluice_calendar_config_init(&out->calendar, 50000, 86400 * SEC);
	case 2:
		out->kind = SLUICE_LIMIT_GCRA;
		return sluice_rate_init(&out->rate, 300, 60 * SEC, 300);
	case 3:
		out->kind = SLUICE_LIMIT_CALENDAR;
		return sluice_calendar_config_init(&out->calendar, 200000, 86400 * SEC);
	default:
		out->kind = SLUICE_LIMIT_SLOTS;
		return sluice_slots_config_init(&out->slots, 20, 0, SEC);
	}
}

static void BM_engine_single(sbench_state *st)
{
	make_stream();
	int l = (int)sbench_range(st, 0);
	struct sluice_limit spec;
	struct sluice_limiter *lim = NULL;
	if (single_spec(l, &spec) != SLUICE_OK || sluice_limiter_create(&lim, &spec, 1, NULL) != SLUICE_OK) {
		sbench_error(st, "limiter");
		return;
	}
	bool by_ws = l == 2 || l == 3;
	/* The engine's key bytes: 2-byte length, identity. */
	static unsigned char keys[TOKENS][16];
	for (int t = 0; t < TOKENS; t++) {
		const char *v = by_ws ? ws[t % WORKSPACES] : tok[t];
		keys[t][0] = 14;
		keys[t][1] = 0;
		memcpy(keys[t] + 2, v, 14);
	}
	struct sluice_decision d;
	sluice_slot_handle h;
	uint64_t now = DAY0, admitted = 0;
	for (int t = 0; t < TOKENS; t++)
		if (l == 4) {
			sluice_limiter_acquire(lim, keys[t], 16, 1, now, &d, &h);
			sluice_limiter_release(lim, keys[t], 16, h);
		} else {
			sluice_limiter_admit(lim, keys[t], 16, 1, now, &d);
		}
	uint32_t j = 0;
	for (uint64_t n; (n = sbench_batch(st)) != 0;)
		for (uint64_t i = 0; i < n; i++) {
			uint32_t t = stream[j++ & (STREAM - 1)];
			now += STEP_NS;
			if (l == 4) {
				sluice_limiter_acquire(lim, keys[t], 16, 1, now, &d, &h);
				if (d.allowed)
					sluice_limiter_release(lim, keys[t], 16, h);
			} else {
				sluice_limiter_admit(lim, keys[t], 16, 1, now, &d);
			}
			admitted += d.allowed;
		}
	sbench_counter(st, "admitted", (double)admitted / (double)sbench_iterations(st), 1);
	sluice_limiter_destroy(lim);
}
SBENCH_REGISTER(BM_engine_single)
{
	for (int l = 0; l < 5; l++)
		sbench_arg(b, l);
}

static void BM_engine_route_seed002(sbench_state *st)
{
	if (policy_view == NULL)
		policy_view = load_seed002(st);
	if (policy_view == NULL)
		return;
	for (uint64_t n; (n = sbench_batch(st)) != 0;)
		for (uint64_t i = 0; i < n; i++)
			sbench_keep(sluice_policy_match(policy_view, "GET", 3, "/v1/items/123", 13));
}
SBENCH_REGISTER(BM_engine_route_seed002) { (void)b; }

/* ---- a refused request consumes nothing, across limiters ----
 *
 * BM_engine_contended/G (threads 1..N): the policy lists a daily quota of
 * 100000 BEFORE a per-second limit of 100000/1s with a burst of 10, which
 * refuses most calls when threads hammer one token at the monotonic clock
 * (2^20 checks each). G = 0: the quota is a calendar day (exact cancel);
 * G = 1: a GCRA of 100000 per 1000 days with a burst of 100000 (two GCRA
 * limits: the read-only pass and the order decide). Afterwards the quota
 * left is measured with checks at later times; "lost" = quota - left -
 * admitted, the quota units that refused requests took. */

#define CONTENDED_QUOTA 100000u
static _Atomic uint64_t contended_admitted;

static uint64_t contended_now(uint64_t base)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return base + (uint64_t)ts.tv_sec * SEC + (uint64_t)ts.tv_nsec;
}

static void BM_engine_contended(sbench_state *st)
{
	static struct sluice_engine *eng;
	static uint64_t base;
	static const char *const text[2] = {
		"policy \"contended\"\nscope token\n"
		"limit day per token quota 100000/1d@utc\n"
		"limit second per token rate 100000/1s burst 10\n",
		"policy \"contended\"\nscope token\n"
		"limit day per token rate 100000/1000d burst 100000\n"
		"limit second per token rate 100000/1s burst 10\n",
	};
	struct sluice_identity id = { "hot", 3 };
	struct sluice_engine_request r;
	struct sluice_engine_decision d;

	memset(&r, 0, sizeof r);
	r.method = "GET";
	r.method_len = 3;
	r.path = "/";
	r.path_len = 1;
	r.identities = &id;
	r.identity_count = 1;
	r.tier = SLUICE_POLICY_NO_TIER;
	r.cost = 1;
	if (sbench_thread_index(st) == 0) {
		const char *t = text[sbench_range(st, 0) != 0];
		struct sluice_policy *p = NULL;
		if (sluice_policy_parse(t, strlen(t), NULL, &p, NULL) != SLUICE_OK ||
		    sluice_engine_create(&eng, p, NULL) != SLUICE_OK)
			abort();
		/* An hour into a UTC day: the run and the probes stay in it. */
		base = DAY0 + 3600 * SEC - contended_now(0);
		/* relaxed: a counter, read by thread 0 after the closing barrier. */
		atomic_store_explicit(&contended_admitted, 0, memory_order_relaxed); /* relaxed: why above */
	}
	uint64_t admitted = 0;
	for (uint64_t n; (n = sbench_batch(st)) != 0;) {
		uint64_t got = 0;
		for (uint64_t i = 0; i < n; i++) {
			r.now_ns = contended_now(base);
			sluice_engine_check(eng, &r, &d);
			got += d.d.allowed;
		}
		admitted += got;
		/* relaxed: a counter; the barrier of the sbench_batch() call that
		 * ends the loop orders it before thread 0 reads it below. */
		atomic_fetch_add_explicit(&contended_admitted, got, memory_order_relaxed); /* relaxed: why above */
	}
	sbench_items(st, (int64_t)sbench_iterations(st));
	sbench_counter(st, "admitted", (double)admitted, 0);
	if (sbench_thread_index(st) != 0)
		return; /* the loop's end was a barrier: thread 0 measures alone */
	/* The quota left: checks of 10 units (the per-second burst) 200 us
	 * apart (it is full again), then of 1, until the quota refuses. */
	uint64_t t = contended_now(base), left = 0;
	for (uint64_t c = 10; c >= 1; c = c == 10 ? 1 : 0)
		for (;;) {
			t += 200000;
			r.now_ns = t;
			r.cost = c;
			if (!(sluice_engine_check(eng, &r, &d) == SLUICE_OK && d.d.allowed))
				break;
			left += c;
		}
	/* relaxed: see above. */
	uint64_t all = atomic_load_explicit(&contended_admitted, memory_order_relaxed); /* relaxed: why above */
	sbench_counter(st, "lost", (double)(CONTENDED_QUOTA - left - all), 0);
	sluice_engine_destroy(eng);
}
SBENCH_REGISTER(BM_engine_contended)
{
	sbench_arg(b, 0);
	sbench_arg(b, 1);
	sbench_thread_range(b, 1, sbench_max_threads(2));
	sbench_fixed_iterations(b, 1 << 20);
	sbench_real_time(b);
}
