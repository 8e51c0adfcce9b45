/*
 * stress_engine_dry_run.c - dry-run limits under concurrency: THREADS
 * threads send N requests each for one IP through an enforced limit that
 * admits them all and two dry-run limits (a sliding log of BOUND and
 * 2 concurrency slots held for a moment). Conservation laws checked
 * exactly once the threads are done:
 *   - every request was admitted (a dry-run refusal never refuses);
 *   - the sliding dry-run limit consumed exactly BOUND (its own bound,
 *     never more) and the requests it refused, counted by each decision's
 *     dry_run_refused bit, equal both THREADS * N - BOUND and its
 *     sluice_engine_limit_stats() dry_run_refused;
 *   - the concurrency dry-run limit never held more than 2 slots, every
 *     slot was released, and its refusals match its counter;
 *   - the enforced limit consumed THREADS * N.
 * A plain executable (runs under TSan).
 */
#include <pthread.h>
#include <sluice.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#define SEC 1000000000ull
#define DAY0 (UINT64_C(1795392000) * SEC)
#define THREADS 4
#define N 5000
#define BOUND 1000

static const char text[] = "policy \"s\"\nscope ip\n"
			   "limit enforced per ip rate 1_000_000/1h\n"
			   "limit shadow per ip sliding 1000/1h dry-run\n"
			   "limit conc per ip concurrency 2 dry-run\n";

struct shared {
	struct sluice_engine *eng;
	_Atomic uint64_t admitted, shadow_refused, conc_refused, held_now, held_max, errors;
};

static void request_init(struct sluice_engine_request *r, struct sluice_identity *id)
{
	memset(r, 0, sizeof *r);
	id->bytes = "10.0.0.1";
	id->len = 8;
	r->method = "GET";
	r->method_len = 3;
	r->path = "/";
	r->path_len = 1;
	r->identities = id;
	r->identity_count = 1;
	r->tier = SLUICE_POLICY_NO_TIER;
	r->cost = 1;
	r->now_ns = DAY0 + SEC;
}

static void *worker(void *arg)
{
	struct shared *s = arg;
	struct sluice_engine_request r;
	struct sluice_identity id;

	request_init(&r, &id);
	for (int i = 0; i < N; i++) {
		struct sluice_engine_decision d;
		if (sluice_engine_check(s->eng, &r, &d) != SLUICE_OK) {
			atomic_fetch_add_explicit(&s->errors, 1, memory_order_relaxed); /* relaxed: a count */
			continue;
		}
		if (d.d.allowed)
			atomic_fetch_add_explicit(&s->admitted, 1, memory_order_relaxed); /* relaxed: a count */
		if (d.dry_run_refused & 0x2u)
			atomic_fetch_add_explicit(&s->shadow_refused, 1, memory_order_relaxed); /* relaxed: a count */
		if (d.dry_run_refused & 0x4u)
			atomic_fetch_add_explicit(&s->conc_refused, 1, memory_order_relaxed); /* relaxed: a count */
		if (d.slot_count > 0) {
			/* relaxed: a gauge of slots this test holds; the engine's
			 * own bound is what is checked */
			uint64_t now = atomic_fetch_add_explicit(&s->held_now, 1, memory_order_relaxed) + 1; /* relaxed: why above */
			uint64_t max = atomic_load_explicit(&s->held_max, memory_order_relaxed); /* relaxed: why above */
			while (now > max && !atomic_compare_exchange_weak_explicit(&s->held_max, &max, now,
										   memory_order_relaxed,
										   memory_order_relaxed)) /* relaxed/relaxed: a maximum */
				;
			atomic_fetch_sub_explicit(&s->held_now, 1, memory_order_relaxed); /* relaxed: why above */
			if (sluice_engine_release(s->eng, &d) != SLUICE_OK)
				atomic_fetch_add_explicit(&s->errors, 1, memory_order_relaxed); /* relaxed: a count */
		}
	}
	return NULL;
}

static int check(int *passed, int *failed, int ok, const char *what, unsigned long long got,
		 unsigned long long want)
{
	if (ok) {
		(*passed)++;
	} else {
		(*failed)++;
		printf("FAIL %s: %llu, expected %llu\n", what, got, want);
	}
	return ok;
}

int main(void)
{
	struct shared s;
	struct sluice_policy *p = NULL;
	pthread_t t[THREADS];
	int passed = 0, failed = 0;

	memset(&s, 0, sizeof s);
	if (sluice_policy_parse(text, sizeof text - 1, NULL, &p, NULL) != SLUICE_OK ||
	    sluice_engine_create(&s.eng, p, NULL) != SLUICE_OK) {
		printf("0 passed, 1 failed\n");
		return 1;
	}
	for (int i = 0; i < THREADS; i++)
		pthread_create(&t[i], NULL, worker, &s);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);

	uint64_t total = (uint64_t)THREADS * N;
	struct sluice_engine_usage u[3];
	size_t nu = 0;
	struct sluice_engine_request r;
	struct sluice_identity id;
	request_init(&r, &id);
	int rc = sluice_engine_usage(s.eng, &r, u, 3, &nu);
	struct sluice_engine_limit_stats st[3];
	for (uint32_t i = 0; i < 3; i++) {
		st[i].size = sizeof st[i];
		rc |= sluice_engine_limit_stats(s.eng, i, &st[i]);
	}
	check(&passed, &failed, rc == 0 && nu == 3, "usage/stats calls", (unsigned long long)nu, 3);
	check(&passed, &failed, s.errors == 0, "errors", s.errors, 0);
	check(&passed, &failed, s.admitted == total, "admitted", s.admitted, total);
	check(&passed, &failed, u[0].used == total, "enforced used", u[0].used, total);
	check(&passed, &failed, u[1].used == BOUND, "shadow used", u[1].used, BOUND);
	check(&passed, &failed, s.shadow_refused == total - BOUND, "shadow refusals", s.shadow_refused,
	      total - BOUND);
	check(&passed, &failed, st[1].dry_run_refused == s.shadow_refused, "shadow counter", st[1].dry_run_refused,
	      s.shadow_refused);
	check(&passed, &failed, st[2].dry_run_refused == s.conc_refused, "conc counter", st[2].dry_run_refused,
	      s.conc_refused);
	check(&passed, &failed, u[2].used == 0, "slots left held", u[2].used, 0);
	check(&passed, &failed, st[0].dry_run_refused == 0, "enforced counter", st[0].dry_run_refused, 0);
	printf("conc refusals %llu, most slots seen held %llu (bound 2)\n", (unsigned long long)s.conc_refused,
	       (unsigned long long)s.held_max);
	check(&passed, &failed, s.held_max <= 2, "slots held at once", s.held_max, 2);
	sluice_engine_destroy(s.eng);
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
