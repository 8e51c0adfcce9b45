/*
 * stress_policy.c - a loaded policy shared by threads: every thread matches
 * routes, reads tier numbers and looks up overrides at the same time, and
 * must get the answers a single thread got before they started. Plain
 * executable (runs under TSan too). Duration: argv[1] or
 * SLUICE_STRESS_MS milliseconds (default 300).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sluice.h>

#define THREADS 4

static const char text[] = "policy \"stress\"\nscope org\n"
			   "class a match GET /v1/a\nclass b match * /v1/a/:id\nclass c match POST /v1/*\n"
			   "tier S x1\ntier M x2.5\n"
			   "limit l per org+class rate 100/1m tiered\n"
			   "override l org \"acme\" 5000 until 2030-01-01T00:00:00Z\n";

static const char *const paths[][2] = {
	{"GET", "/v1/a"}, {"get", "/v1/a/7"}, {"POST", "/v1/x/y"}, {"GET", "/v2"}, {"POST", "/v1/a?x"},
};

static struct sluice_policy *policy;
static int expected[5];
static atomic_bool stop;
static atomic_int failures;

static void *worker(void *arg)
{
	uint64_t n = 0;
	(void)arg;
	/* relaxed: a flag polled to end the loop; it publishes no data */
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		for (int i = 0; i < 5; i++) {
			int c = sluice_policy_match(policy, paths[i][0], strlen(paths[i][0]), paths[i][1],
						    strlen(paths[i][1]));
			uint64_t count = 0;
			int o = sluice_policy_override_find(policy, 0, 0, "acme", 4, 0);
			if (c != expected[i] || sluice_policy_limit_numbers(policy, 0, 1, &count, NULL) != 0 ||
			    count != 250 || o != 0)
				/* relaxed: a counter read after join */
				atomic_fetch_add_explicit(&failures, 1, memory_order_relaxed);
		}
		n++;
	}
	return (void *)(uintptr_t)n;
}

int main(int argc, char **argv)
{
	long ms = 300;
	const char *env = getenv("SLUICE_STRESS_MS");
	if (argc > 1)
		ms = atol(argv[1]);
	else if (env != NULL)
		ms = atol(env);

	struct sluice_policy_error e;
	if (sluice_policy_parse(text, sizeof(text) - 1, NULL, &policy, &e) != SLUICE_OK) {
		printf("parse: %d:%d: %s\n0 passed, 1 failed\n", e.line, e.column, e.message);
		return 1;
	}
	for (int i = 0; i < 5; i++)
		expected[i] = sluice_policy_match(policy, paths[i][0], strlen(paths[i][0]), paths[i][1],
						  strlen(paths[i][1]));
	int ok = expected[0] == 1 && expected[1] == 2 && expected[2] == 3 && expected[3] == 0 && expected[4] == 3;

	pthread_t t[THREADS];
	for (int i = 0; i < THREADS; i++)
		pthread_create(&t[i], NULL, worker, NULL);
	struct timespec d = {ms / 1000, (ms % 1000) * 1000000};
	nanosleep(&d, NULL);
	/* relaxed: see worker() */
	atomic_store_explicit(&stop, true, memory_order_relaxed);
	uint64_t rounds = 0;
	for (int i = 0; i < THREADS; i++) {
		void *r;
		pthread_join(t[i], &r);
		rounds += (uint64_t)(uintptr_t)r;
	}
	/* relaxed: the joins above order every worker's increments before this */
	int failed = atomic_load_explicit(&failures, memory_order_relaxed);
	ok = ok && failed == 0 && rounds > 0;
	sluice_policy_destroy(policy);
	printf("%llu rounds, %d mismatches\n%d passed, %d failed\n", (unsigned long long)rounds, failed, ok, !ok);
	return ok ? 0 : 1;
}
