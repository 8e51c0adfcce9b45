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
 * The sum of the five singles plus the route is what the engine costs if
 * composition were free; docs/benchmarks.md compares.
 *
 * 4096 tokens in 256 workspaces, uniform, pre-inserted; now advances 10 ms
 * per request (computed, not read), so limits rarely bind (about 0.2 requests
 * per token and minute, 2.3 per workspace). One thread.
 */
#include <sluice.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static struct sluice_policy *load_seed002(sbench_state *st)
{
	char path[512];
	static char buf[1 << 14];
	snprintf(path, sizeof path, "%s/docs/policies/seed002.policy", SLUICE_SOURCE_DIR);
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		sbench_error(st, "cannot open seed002.policy");
		return NULL;
	}
	size_t len = fread(buf, 1, sizeof buf, f);
	fclose(f);
	struct sluice_policy *p = NULL;
	if (sluice_policy_parse(buf, len, NULL, &p, NULL) != SLUICE_OK)
		sbench_error(st, "seed002.policy does not parse");
	return p;
}

static void BM_engine_check_seed002(sbench_state *st)
{
	make_stream();
	struct sluice_policy *p = load_seed002(st);
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
SBENCH_REGISTER(BM_engine_check_seed002) { (void)b; }

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
