/*
 * stress_engine.c - the policy engine under concurrency: no limit of any
 * scope over-admits, with a sweeper and hot reloads running. A plain
 * executable (runs under TSan).
 *
 * Policy: seed 002's shape with smaller daily quotas so that every limit
 * binds: per token 120/min, 400/day, 4 in flight; per workspace 300/min,
 * 1000/day. Six tokens in two workspaces (three each: 360 > 300 per minute,
 * 1200 > 1000 per day). Time advances in phases 60 s apart (a full minute
 * refill between phases), eight phases per UTC day. In a phase every
 * request uses the phase's time, so the exact bounds are:
 *
 *     per token and phase      admitted <= 120      (GCRA burst at one instant)
 *     per workspace and phase  admitted <= 300
 *     per token and day        admitted <= 400      (calendar)
 *     per workspace and day    admitted <= 1000
 *     per token, at any time   in flight <= 4       (slots)
 *
 * Workers hold up to 3 admitted requests before releasing them. A reloader
 * alternates between the policy and the same policy plus an extra limit, so
 * the five limits are kept across every reload (their state must survive:
 * a reload that dropped state would let a phase over-admit). A sweeper
 * sweeps all the time and takes top-N snapshots and usage reads of the
 * live tables (bounded by the numbers, busiest first).
 * Duration: SLUICE_STRESS_MS (default 1000).
 */
#include <pthread.h>
#include <sluice.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Reads of the tallies after every thread was joined: pthread_join orders
 * the threads' writes before them, so relaxed suffices. */
#define LOAD(p) atomic_load_explicit((p), memory_order_relaxed) /* relaxed: why above */

#define SEC 1000000000ull
#define DAY0 (UINT64_C(1795392000) * SEC)
#define TOKENS 6
#define WS 2
#define THREADS 4
#define PER_PHASE 220
#define PHASES_PER_DAY 8
#define MAX_PHASES 4096
#define HOLD 3

static const char text_a[] = "policy \"stress\"\n"
			     "scope token\n"
			     "scope workspace\n"
			     "limit token_minute per token rate 120/1m\n"
			     "limit token_day per token quota 400/1d@utc warn 80%\n"
			     "limit ws_minute per workspace rate 300/1m\n"
			     "limit ws_day per workspace quota 1000/1d@utc\n"
			     "limit token_inflight per token concurrency 4 retry-after 1s\n";
static const char text_b[] = "policy \"stress\"\n"
			     "scope token\n"
			     "scope workspace\n"
			     "limit token_minute per token rate 120/1m\n"
			     "limit token_day per token quota 400/1d@utc warn 80%\n"
			     "limit ws_minute per workspace rate 300/1m\n"
			     "limit ws_day per workspace quota 1000/1d@utc\n"
			     "limit token_inflight per token concurrency 4 retry-after 1s\n"
			     "limit extra per token rate 1000000/1s\n";

static struct sluice_engine *eng;
static _Atomic uint64_t phase;
static _Atomic bool stop;
static pthread_barrier_t barrier;

static _Atomic uint32_t tok_phase[MAX_PHASES][TOKENS];
static _Atomic uint32_t ws_phase[MAX_PHASES][WS];
static _Atomic int inflight[TOKENS];
static _Atomic int inflight_max[TOKENS];
static _Atomic uint64_t reasons[6];
static _Atomic uint64_t reloads, sweeps, release_errors, bad_top;

static uint64_t phase_time(uint64_t p)
{
	return DAY0 + (p / PHASES_PER_DAY) * 86400 * SEC + (p % PHASES_PER_DAY) * 60 * SEC;
}

static struct sluice_policy *load(const char *text)
{
	struct sluice_policy *p = NULL;
	if (sluice_policy_parse(text, strlen(text), NULL, &p, NULL) != SLUICE_OK)
		return NULL;
	return p;
}

struct held {
	struct sluice_identity id[2];
	struct sluice_engine_request r;
	struct sluice_engine_decision d;
	int token;
};

static void request_of(struct held *h, int token, const char (*names)[8], uint64_t now)
{
	memset(h, 0, sizeof *h);
	h->token = token;
	h->id[0].bytes = names[token];
	h->id[0].len = strlen(names[token]);
	h->id[1].bytes = names[TOKENS + token % WS];
	h->id[1].len = strlen(names[TOKENS + token % WS]);
	h->r.method = "GET";
	h->r.method_len = 3;
	h->r.path = "/v1/items";
	h->r.path_len = 9;
	h->r.identities = h->id;
	h->r.identity_count = 2;
	h->r.tier = SLUICE_POLICY_NO_TIER;
	h->r.cost = 1;
	h->r.now_ns = now;
}

static void release(struct held *h)
{
	/* relaxed: a counter checked against the bound; the slot itself is
	 * ordered by the engine. Decrement before release: the counter never
	 * exceeds the slots actually held. */
	atomic_fetch_sub_explicit(&inflight[h->token], 1, memory_order_relaxed); /* relaxed: why above */
	if (sluice_engine_release(eng, &h->d) != SLUICE_OK)
		atomic_fetch_add_explicit(&release_errors, 1, memory_order_relaxed); /* relaxed: counter */
}

static void *worker_main(void *arg)
{
	uint64_t x = 0x9e3779b97f4a7c15ull * (uint64_t)(uintptr_t)arg + 1;
	static const char names[TOKENS + WS][8] = { "tok_0", "tok_1", "tok_2", "tok_3",
						    "tok_4", "tok_5", "ws_0",  "ws_1" };
	struct held hold[HOLD];
	int nheld = 0;

	for (;;) {
		/* relaxed: the barrier orders the phase's store before us. */
		uint64_t p = atomic_load_explicit(&phase, memory_order_relaxed); /* relaxed: why above */
		bool last = atomic_load_explicit(&stop, memory_order_relaxed); /* relaxed: same */
		if (last)
			break;
		uint64_t now = phase_time(p);
		for (int i = 0; i < PER_PHASE; i++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			int token = (int)(x % TOKENS);
			if (nheld == HOLD || (nheld > 0 && (x >> 32) % 2 == 0))
				release(&hold[--nheld]);
			struct held *h = &hold[nheld];
			request_of(h, token, names, now);
			if (sluice_engine_check(eng, &h->r, &h->d) != SLUICE_OK) {
				atomic_fetch_add_explicit(&release_errors, 1, memory_order_relaxed); /* relaxed: counter */
				continue;
			}
			atomic_fetch_add_explicit(&reasons[h->d.d.reason], 1, memory_order_relaxed); /* relaxed: counter */
			if (!h->d.d.allowed)
				continue;
			atomic_fetch_add_explicit(&tok_phase[p][token], 1, memory_order_relaxed); /* relaxed: counter */
			atomic_fetch_add_explicit(&ws_phase[p][token % WS], 1, memory_order_relaxed); /* relaxed: counter */
			int n = atomic_fetch_add_explicit(&inflight[token], 1, memory_order_relaxed) + 1; /* relaxed: counter */
			int m = atomic_load_explicit(&inflight_max[token], memory_order_relaxed); /* relaxed: a max */
			while (n > m && !atomic_compare_exchange_weak_explicit(&inflight_max[token], &m, n, /* relaxed: a max */
									       memory_order_relaxed,
									       memory_order_relaxed))
				;
			nheld++;
		}
		while (nheld > 0)
			release(&hold[--nheld]);
		if (pthread_barrier_wait(&barrier) == PTHREAD_BARRIER_SERIAL_THREAD) {
			const char *ms = getenv("SLUICE_STRESS_MS");
			static struct timespec start;
			static bool started;
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			if (!started) {
				start = ts;
				started = true;
			}
			long el = (ts.tv_sec - start.tv_sec) * 1000 + (ts.tv_nsec - start.tv_nsec) / 1000000;
			long want = ms != NULL ? atol(ms) : 1000;
			/* On a loaded machine run on (up to 30 times longer)
			 * until every kind of refusal and 3 phases happened:
			 * the checks in main() need them. */
			bool exercised = p + 1 >= 3 && LOAD(&reasons[SLUICE_REASON_RATE]) != 0 &&
					 LOAD(&reasons[SLUICE_REASON_QUOTA]) != 0 &&
					 LOAD(&reasons[SLUICE_REASON_CONCURRENCY]) != 0;
			if ((el >= want && exercised) || el >= 30 * want || p + 1 >= MAX_PHASES)
				atomic_store_explicit(&stop, true, memory_order_relaxed); /* relaxed: barrier orders it */
			else
				atomic_store_explicit(&phase, p + 1, memory_order_relaxed); /* relaxed: barrier orders it */
		}
		pthread_barrier_wait(&barrier);
	}
	return NULL;
}

static void *reloader_main(void *arg)
{
	(void)arg;
	int n = 0;
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) { /* relaxed: a flag polled */
		struct sluice_policy *p = load(n++ % 2 ? text_a : text_b);
		if (p == NULL || sluice_engine_reload(eng, p) != SLUICE_OK) {
			sluice_policy_destroy(p);
			atomic_fetch_add_explicit(&release_errors, 1, memory_order_relaxed); /* relaxed: counter */
			break;
		}
		atomic_fetch_add_explicit(&reloads, 1, memory_order_relaxed); /* relaxed: counter */
		struct timespec ts = { 0, 2 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	return NULL;
}

static void *sweeper_main(void *arg)
{
	(void)arg;
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) { /* relaxed: a flag polled */
		uint64_t p = atomic_load_explicit(&phase, memory_order_relaxed); /* relaxed: a hint */
		/* Sweep at the phase's time: no request of this or a later
		 * phase is older. */
		sluice_engine_sweep(eng, phase_time(p), 64);
		atomic_fetch_add_explicit(&sweeps, 1, memory_order_relaxed); /* relaxed: counter */
		/* Introspection while traffic flows: top-N and usage must stay
		 * within the limits' numbers. */
		struct sluice_engine_top top[3];
		size_t n = 0;
		for (uint32_t l = 0; l < 5; l++) {
			if (sluice_engine_top(eng, l, SLUICE_POLICY_NO_TIER, phase_time(p), top, 3, &n) != SLUICE_OK ||
			    n > 3)
				atomic_fetch_add_explicit(&release_errors, 1, memory_order_relaxed); /* relaxed: counter */
			for (size_t i = 0; i < n; i++)
				if (top[i].used > top[i].count || (i > 0 && top[i].used > top[i - 1].used))
					atomic_fetch_add_explicit(&bad_top, 1, memory_order_relaxed); /* relaxed: counter */
		}
		struct sluice_identity id[2] = { { "tok_0", 5 }, { "ws_0", 4 } };
		struct sluice_engine_request r;
		memset(&r, 0, sizeof r);
		r.identities = id;
		r.identity_count = 2;
		r.tier = SLUICE_POLICY_NO_TIER;
		r.now_ns = phase_time(p);
		struct sluice_engine_usage u[8];
		if (sluice_engine_usage(eng, &r, u, 8, &n) != SLUICE_OK || n < 5)
			atomic_fetch_add_explicit(&release_errors, 1, memory_order_relaxed); /* relaxed: counter */
		for (size_t i = 0; i < n && i < 8; i++)
			if (u[i].used > u[i].count)
				atomic_fetch_add_explicit(&bad_top, 1, memory_order_relaxed); /* relaxed: counter */
		struct timespec ts = { 0, 500 * 1000 };
		nanosleep(&ts, NULL);
	}
	return NULL;
}

int main(void)
{
	int passed = 0, failed = 0;
	struct sluice_policy *p = load(text_a);

	if (p == NULL || sluice_engine_create(&eng, p, NULL) != SLUICE_OK) {
		printf("0 passed, 1 failed (setup)\n");
		return 1;
	}
	pthread_barrier_init(&barrier, NULL, THREADS);
	pthread_t w[THREADS], rl, sw;
	for (int i = 0; i < THREADS; i++)
		pthread_create(&w[i], NULL, worker_main, (void *)(uintptr_t)(i + 1));
	pthread_create(&rl, NULL, reloader_main, NULL);
	pthread_create(&sw, NULL, sweeper_main, NULL);
	for (int i = 0; i < THREADS; i++)
		pthread_join(w[i], NULL);
	pthread_join(rl, NULL);
	pthread_join(sw, NULL);

	uint64_t phases = LOAD(&phase) + 1;
	int bad = 0;
	for (uint64_t ph = 0; ph < phases; ph++) {
		for (int t = 0; t < TOKENS; t++)
			if (LOAD(&tok_phase[ph][t]) > 120) {
				printf("FAIL: token %d phase %llu admitted %u > 120\n", t,
				       (unsigned long long)ph, LOAD(&tok_phase[ph][t]));
				bad++;
			}
		for (int s = 0; s < WS; s++)
			if (LOAD(&ws_phase[ph][s]) > 300) {
				printf("FAIL: workspace %d phase %llu admitted %u > 300\n", s,
				       (unsigned long long)ph, LOAD(&ws_phase[ph][s]));
				bad++;
			}
	}
	bad ? failed++ : passed++;
	bad = 0;
	for (uint64_t day = 0; day * PHASES_PER_DAY < phases; day++) {
		uint32_t tok[TOKENS] = { 0 }, ws[WS] = { 0 };
		for (uint64_t ph = day * PHASES_PER_DAY; ph < phases && ph < (day + 1) * PHASES_PER_DAY; ph++) {
			for (int t = 0; t < TOKENS; t++)
				tok[t] += LOAD(&tok_phase[ph][t]);
			for (int s = 0; s < WS; s++)
				ws[s] += LOAD(&ws_phase[ph][s]);
		}
		for (int t = 0; t < TOKENS; t++)
			if (tok[t] > 400) {
				printf("FAIL: token %d day %llu admitted %u > 400\n", t, (unsigned long long)day, tok[t]);
				bad++;
			}
		for (int s = 0; s < WS; s++)
			if (ws[s] > 1000) {
				printf("FAIL: workspace %d day %llu admitted %u > 1000\n", s, (unsigned long long)day, ws[s]);
				bad++;
			}
	}
	bad ? failed++ : passed++;
	bad = 0;
	for (int t = 0; t < TOKENS; t++)
		if (LOAD(&inflight_max[t]) > 4 || LOAD(&inflight[t]) != 0) {
			printf("FAIL: token %d in flight max %d, left %d\n", t, LOAD(&inflight_max[t]),
			       LOAD(&inflight[t]));
			bad++;
		}
	bad ? failed++ : passed++;
	if (LOAD(&bad_top) != 0) {
		printf("FAIL: %llu top-N/usage records out of bounds or order\n",
		       (unsigned long long)LOAD(&bad_top));
		failed++;
	} else {
		passed++;
	}
	/* Every slot came back: each token's concurrency usage is 0. */
	if (LOAD(&release_errors) != 0) {
		printf("FAIL: %llu release/check/reload errors\n",
		       (unsigned long long)LOAD(&release_errors));
		failed++;
	} else {
		passed++;
	}
	printf("phases %llu, reloads %llu, sweeps %llu; admitted %llu, rate %llu, quota %llu, "
	       "concurrency %llu\n",
	       (unsigned long long)phases, (unsigned long long)LOAD(&reloads),
	       (unsigned long long)LOAD(&sweeps), (unsigned long long)LOAD(&reasons[0]),
	       (unsigned long long)LOAD(&reasons[SLUICE_REASON_RATE]),
	       (unsigned long long)LOAD(&reasons[SLUICE_REASON_QUOTA]),
	       (unsigned long long)LOAD(&reasons[SLUICE_REASON_CONCURRENCY]));
	/* The test is only meaningful if every kind of refusal happened. */
	if (LOAD(&reasons[SLUICE_REASON_RATE]) == 0 || LOAD(&reasons[SLUICE_REASON_QUOTA]) == 0 ||
	    LOAD(&reasons[SLUICE_REASON_CONCURRENCY]) == 0 || phases < 3) {
		printf("FAIL: not every limit was exercised\n");
		failed++;
	} else {
		passed++;
	}
	sluice_engine_destroy(eng);
	pthread_barrier_destroy(&barrier);
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
