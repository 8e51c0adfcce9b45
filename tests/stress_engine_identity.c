/*
 * stress_engine_identity.c - the identity rules under concurrency. A plain
 * executable (runs under TSan).
 *
 * Policy: scope token falls back to scope ip, which is required; one
 * limit per token, sliding 50 per minute. Four threads send, at one
 * instant, requests of three shapes in turn: a token "t<k>" with an ip;
 * no token with ip "t<k>" (the token spelled like the ip: its fallback key
 * must stay apart); and neither (refused: the ip is required). Laws checked
 * after the join:
 *   1. sluice_engine_identity_refusals() equals the refusals the threads
 *      saw with SLUICE_REASON_IDENTITY, and every shape-3 request was one;
 *   2. per key k, admitted real-token requests <= 50 and admitted
 *      fallback requests <= 50, each on its own (so the two key spaces
 *      never share one budget: together they may reach 100);
 *   3. no request of the first two shapes is refused for its identity.
 * Duration: a fixed number of requests (SLUICE_STRESS_MS is not used).
 */
#include <pthread.h>
#include <sluice.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

/* Reads of the tallies after every thread was joined: pthread_join orders
 * the threads' writes before them, so relaxed suffices. */
#define LOAD(p) atomic_load_explicit((p), memory_order_relaxed) /* relaxed: why above */

#define T0 (UINT64_C(1795392000) * SLUICE_NS_PER_SEC)
#define THREADS 4
#define KEYS 8
#define ROUNDS 600
#define BOUND 50

static const char text[] = "policy \"stress-id\"\n"
			   "scope token fallback ip\n"
			   "scope ip required\n"
			   "limit per_token per token sliding 50/1m\n";

static struct sluice_engine *engine;
static _Atomic uint64_t admitted_real[KEYS], admitted_fallback[KEYS], refused_identity, wrong;

static void *worker(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;
	for (int i = 0; i < ROUNDS; i++) {
		unsigned k = (seed + (unsigned)i * 7u) % KEYS, shape = (unsigned)i % 3;
		char key[8];
		snprintf(key, sizeof key, "t%u", k);
		struct sluice_identity ids[2] = {{NULL, 0}, {NULL, 0}};
		if (shape == 0) {
			ids[0] = (struct sluice_identity){key, strlen(key)};
			ids[1] = (struct sluice_identity){"192.0.2.1", 9};
		} else if (shape == 1) {
			ids[1] = (struct sluice_identity){key, strlen(key)};
		}
		struct sluice_engine_request r = {.method = "GET", .method_len = 3, .path = "/", .path_len = 1,
						  .identities = ids, .identity_count = 2,
						  .tier = SLUICE_POLICY_NO_TIER, .cost = 1, .now_ns = T0};
		struct sluice_engine_decision d;
		if (sluice_engine_check(engine, &r, &d) != SLUICE_OK) {
			/* relaxed: a tally read after the join (LOAD) */
			atomic_fetch_add_explicit(&wrong, 1, memory_order_relaxed); /* relaxed: a tally */
			continue;
		}
		bool id_refusal = !d.d.allowed && d.d.reason == SLUICE_REASON_IDENTITY;
		if (id_refusal)
			atomic_fetch_add_explicit(&refused_identity, 1, memory_order_relaxed); /* relaxed: a tally */
		if (id_refusal != (shape == 2))
			atomic_fetch_add_explicit(&wrong, 1, memory_order_relaxed); /* relaxed: a tally */
		if (d.d.allowed && shape == 0)
			atomic_fetch_add_explicit(&admitted_real[k], 1, memory_order_relaxed); /* relaxed: a tally */
		if (d.d.allowed && shape == 1)
			atomic_fetch_add_explicit(&admitted_fallback[k], 1, memory_order_relaxed); /* relaxed: a tally */
	}
	return NULL;
}

int main(void)
{
	struct sluice_policy *p = NULL;
	int passed = 0, failed = 0;
	if (sluice_policy_parse(text, strlen(text), NULL, &p, NULL) != SLUICE_OK ||
	    sluice_engine_create(&engine, p, NULL) != SLUICE_OK) {
		printf("0 passed, 1 failed (setup)\n");
		return 1;
	}
	pthread_t t[THREADS];
	for (uintptr_t i = 0; i < THREADS; i++)
		pthread_create(&t[i], NULL, worker, (void *)i);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);

	uint64_t expected_refusals = (uint64_t)THREADS * (ROUNDS / 3);
	if (sluice_engine_identity_refusals(engine) == LOAD(&refused_identity) &&
	    LOAD(&refused_identity) == expected_refusals)
		passed++;
	else
		failed++, printf("FAIL: identity refusals counted %llu, seen %llu, expected %llu\n",
				 (unsigned long long)sluice_engine_identity_refusals(engine),
				 (unsigned long long)LOAD(&refused_identity), (unsigned long long)expected_refusals);
	bool bounded = true, both_used = false;
	for (int k = 0; k < KEYS; k++) {
		bounded = bounded && LOAD(&admitted_real[k]) <= BOUND && LOAD(&admitted_fallback[k]) <= BOUND;
		both_used = both_used || (LOAD(&admitted_real[k]) == BOUND && LOAD(&admitted_fallback[k]) == BOUND);
	}
	if (bounded && both_used)
		passed++;
	else
		failed++, printf("FAIL: a key over its bound, or the two key spaces shared one budget\n");
	if (LOAD(&wrong) == 0)
		passed++;
	else
		failed++, printf("FAIL: %llu answers of the wrong kind\n", (unsigned long long)LOAD(&wrong));
	sluice_engine_destroy(engine);
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
