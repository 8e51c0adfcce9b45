/*
 * test_slots.c - behaviour of concurrency slots (include/sluice/slots.h):
 * the 21st request of a 20-slot cell, handles (double release, another
 * cell's handle), leases (take-over by a full acquirer, explicit reap, the
 * release of a reclaimed slot), cancel, is_idle, the bounded wait, config
 * errors, and a naive model compared operation by operation.
 */
#include <criterion/criterion.h>
#include <sluice.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "window_model.h"

#define SEC 1000000000ull
#define MS 1000000ull

static struct sluice_slots *slots_new(const struct sluice_slots_config *cfg)
{
	size_t size = (sluice_slots_size(cfg) + 63) & ~(size_t)63;
	struct sluice_slots *cell = aligned_alloc(64, size);
	cr_assert_not_null(cell);
	memset(cell, 0x5a, size); /* init must not rely on zeroed memory */
	sluice_slots_init(cell, cfg);
	return cell;
}

Test(slots, config_errors_and_size)
{
	struct sluice_slots_config cfg = { 3, 3, 3 };

	cr_assert_eq(sluice_slots_config_init(NULL, 1, 0, 0), SLUICE_EINVAL);
	cr_assert_eq(sluice_slots_config_init(&cfg, 0, 0, 0), SLUICE_EINVAL);
	cr_assert_eq(sluice_slots_config_init(&cfg, SLUICE_SLOTS_MAX + 1, 0, 0), SLUICE_ETOOBIG);
	cr_assert_eq(cfg.slots, 3u);
	cr_assert_eq(sluice_slots_size(NULL), 0u);
	cr_assert_eq(sluice_slots_config_init(&cfg, 20, 0, 0), SLUICE_OK);
	cr_assert_eq(cfg.retry_after_ns, SLUICE_SLOTS_DEFAULT_RETRY_NS, "0 selects the 1 s default");
	cr_assert_eq(sluice_slots_size(&cfg), 16u + 20u * 16u);
	cr_assert_eq(sluice_slots_config_init(&cfg, SLUICE_SLOTS_MAX, 5, 250 * MS), SLUICE_OK);
	cr_assert_eq(cfg.retry_after_ns, 250 * MS);
	cr_assert_eq(sluice_slots_size(&cfg), 16u + 4096u * 16u);
}

Test(slots, twenty_first_request_gets_concurrency_and_a_one_second_hint)
{
	struct sluice_slots_config cfg;
	struct sluice_decision d;
	sluice_slot_handle h[21];

	cr_assert_eq(sluice_slots_config_init(&cfg, 20, 0, 0), SLUICE_OK);
	struct sluice_slots *cell = slots_new(&cfg);
	for (int i = 0; i < 20; i++) {
		cr_assert(sluice_slots_acquire(cell, &cfg, 1000, &d, &h[i]));
		cr_assert_neq(h[i], SLUICE_SLOT_NONE);
		cr_assert_eq(d.remaining, 19u - (unsigned)i);
		cr_assert_eq(d.limit, 20u);
		cr_assert_eq(d.retry_after_ns, 0u);
		for (int j = 0; j < i; j++)
			cr_assert_neq(h[i], h[j], "handles are distinct");
	}
	cr_assert_not(sluice_slots_acquire(cell, &cfg, 1000, &d, &h[20]));
	cr_assert_eq(h[20], SLUICE_SLOT_NONE);
	cr_assert_eq(d.reason, SLUICE_REASON_CONCURRENCY);
	cr_assert_eq(d.retry_after_ns, SEC);
	cr_assert_eq(d.remaining, 0u);
	cr_assert_not(d.allowed);

	cr_assert_eq(sluice_slots_release(cell, &cfg, h[7]), SLUICE_OK);
	cr_assert(sluice_slots_acquire(cell, &cfg, 1000, &d, &h[20]));
	cr_assert_eq(d.remaining, 0u);
	for (int i = 0; i < 21; i++)
		if (i != 7)
			cr_assert_eq(sluice_slots_release(cell, &cfg, h[i]), SLUICE_OK);
	cr_assert(sluice_slots_is_idle(cell, &cfg, 1000));
	free(cell);
}

Test(slots, custom_retry_hint)
{
	struct sluice_slots_config cfg;
	struct sluice_decision d;
	sluice_slot_handle h;

	cr_assert_eq(sluice_slots_config_init(&cfg, 1, 0, 250 * MS), SLUICE_OK);
	struct sluice_slots *cell = slots_new(&cfg);
	cr_assert(sluice_slots_acquire(cell, &cfg, 0, &d, &h));
	cr_assert_not(sluice_slots_acquire(cell, &cfg, 0, &d, &h));
	cr_assert_eq(d.retry_after_ns, 250 * MS);
	free(cell);
}

Test(slots, double_release_and_foreign_handles_leave_the_count_alone)
{
	struct sluice_slots_config cfg;
	struct sluice_decision d;
	sluice_slot_handle a, b, other;

	cr_assert_eq(sluice_slots_config_init(&cfg, 2, 0, 0), SLUICE_OK);
	struct sluice_slots *cell = slots_new(&cfg);
	struct sluice_slots *cell2 = slots_new(&cfg);
	cr_assert(sluice_slots_acquire(cell, &cfg, 0, &d, &a));
	cr_assert(sluice_slots_acquire(cell2, &cfg, 0, &d, &other));
	cr_assert_eq(sluice_slots_release(cell, &cfg, a), SLUICE_OK);
	cr_assert_eq(sluice_slots_release(cell, &cfg, a), SLUICE_EDOUBLE);
	cr_assert(sluice_slots_acquire(cell, &cfg, 0, &d, &a));
	cr_assert(sluice_slots_acquire(cell, &cfg, 0, &d, &b));
	cr_assert_eq(sluice_slots_release(cell, &cfg, other), SLUICE_ESTALE, "another cell's handle");
	cr_assert_eq(sluice_slots_release(cell, &cfg, SLUICE_SLOT_NONE), SLUICE_ESTALE);
	cr_assert_eq(sluice_slots_release(cell, &cfg, a ^ 0xfff), SLUICE_ESTALE, "index out of range");
	cr_assert_not(sluice_slots_acquire(cell, &cfg, 0, &d, &other), "still full: nothing freed");
	/* A stale handle whose slot was reused: still a double release. */
	cr_assert_eq(sluice_slots_release(cell, &cfg, a), SLUICE_OK);
	sluice_slot_handle c;
	cr_assert(sluice_slots_acquire(cell, &cfg, 0, &d, &c));
	cr_assert_eq(sluice_slots_release(cell, &cfg, a), SLUICE_EDOUBLE);
	cr_assert(sluice_slots_peek(cell, &cfg, 0, &d) == false);
	cr_assert_eq(sluice_slots_release(cell, &cfg, b), SLUICE_OK);
	cr_assert_eq(sluice_slots_release(cell, &cfg, c), SLUICE_OK);
	cr_assert(sluice_slots_is_idle(cell, &cfg, 0));
	/* Re-initialising a cell voids its old handles. */
	cr_assert(sluice_slots_acquire(cell, &cfg, 0, &d, &a));
	sluice_slots_init(cell, &cfg);
	cr_assert_eq(sluice_slots_release(cell, &cfg, a), SLUICE_ESTALE);
	cr_assert(sluice_slots_is_idle(cell, &cfg, 0));
	free(cell);
	free(cell2);
}

Test(slots, expired_lease_is_taken_over_by_a_full_acquirer)
{
	struct sluice_slots_config cfg;
	struct sluice_decision d;
	sluice_slot_handle a, b, c;

	cr_assert_eq(sluice_slots_config_init(&cfg, 2, 10 * SEC, 0), SLUICE_OK);
	struct sluice_slots *cell = slots_new(&cfg);
	cr_assert(sluice_slots_acquire(cell, &cfg, 100 * SEC, &d, &a));
	cr_assert(sluice_slots_acquire(cell, &cfg, 105 * SEC, &d, &b));
	cr_assert_not(sluice_slots_acquire(cell, &cfg, 110 * SEC - 1, &d, &c));
	/* Time going backwards never expires anything. */
	cr_assert_not(sluice_slots_acquire(cell, &cfg, 0, &d, &c));
	cr_assert(sluice_slots_acquire(cell, &cfg, 110 * SEC, &d, &c), "a's lease has run out");
	cr_assert_eq(d.remaining, 0u);
	cr_assert_eq(c & 0xfff, a & 0xfff, "a's slot");
	cr_assert_eq(sluice_slots_release(cell, &cfg, a), SLUICE_ESTALE, "a was reclaimed");
	cr_assert_eq(sluice_slots_release(cell, &cfg, a), SLUICE_ESTALE);
	cr_assert_not(sluice_slots_acquire(cell, &cfg, 110 * SEC, &d, &a), "count not corrupted");
	cr_assert_eq(sluice_slots_release(cell, &cfg, b), SLUICE_OK, "expired but not reclaimed");
	cr_assert_eq(sluice_slots_release(cell, &cfg, c), SLUICE_OK);
	cr_assert(sluice_slots_is_idle(cell, &cfg, 0));
	free(cell);
}

Test(slots, reap_reclaims_expired_leases)
{
	struct sluice_slots_config cfg;
	struct sluice_decision d;
	sluice_slot_handle h[4];

	cr_assert_eq(sluice_slots_config_init(&cfg, 4, 100, 0), SLUICE_OK);
	struct sluice_slots *cell = slots_new(&cfg);
	for (int i = 0; i < 4; i++)
		cr_assert(sluice_slots_acquire(cell, &cfg, 1000 + 10 * (uint64_t)i, &d, &h[i]));
	cr_assert_eq(sluice_slots_reap(cell, &cfg, 1099), 0u);
	cr_assert_eq(sluice_slots_release(cell, &cfg, h[1]), SLUICE_OK);
	cr_assert_eq(sluice_slots_reap(cell, &cfg, 1120), 2u, "h0 and h2; h1 was released");
	cr_assert(sluice_slots_peek(cell, &cfg, 1120, &d));
	cr_assert_eq(d.remaining, 3u);
	cr_assert_eq(sluice_slots_reap(cell, &cfg, 1120), 0u);
	cr_assert_eq(sluice_slots_release(cell, &cfg, h[0]), SLUICE_ESTALE);
	cr_assert_eq(sluice_slots_release(cell, &cfg, h[2]), SLUICE_ESTALE);
	cr_assert_eq(sluice_slots_release(cell, &cfg, h[1]), SLUICE_EDOUBLE);
	cr_assert_eq(sluice_slots_release(cell, &cfg, h[3]), SLUICE_OK);
	cr_assert(sluice_slots_is_idle(cell, &cfg, 0));

	/* No TTL: nothing ever expires. */
	cr_assert_eq(sluice_slots_config_init(&cfg, 4, 0, 0), SLUICE_OK);
	sluice_slots_init(cell, &cfg);
	cr_assert(sluice_slots_acquire(cell, &cfg, 0, &d, &h[0]));
	cr_assert_eq(sluice_slots_reap(cell, &cfg, UINT64_MAX), 0u);
	free(cell);
}

Test(slots, lease_deadline_saturates_at_the_end_of_the_clock)
{
	struct sluice_slots_config cfg;
	struct sluice_decision d;
	sluice_slot_handle a, b;

	cr_assert_eq(sluice_slots_config_init(&cfg, 1, 10, 0), SLUICE_OK);
	struct sluice_slots *cell = slots_new(&cfg);
	cr_assert(sluice_slots_acquire(cell, &cfg, UINT64_MAX - 5, &d, &a));
	cr_assert_not(sluice_slots_acquire(cell, &cfg, UINT64_MAX - 1, &d, &b));
	cr_assert(sluice_slots_acquire(cell, &cfg, UINT64_MAX, &d, &b));
	free(cell);
}

Test(slots, peek_and_null_handle_are_read_only)
{
	struct sluice_slots_config cfg;
	struct sluice_decision d;
	sluice_slot_handle a;

	cr_assert_eq(sluice_slots_config_init(&cfg, 1, 0, 0), SLUICE_OK);
	struct sluice_slots *cell = slots_new(&cfg);
	for (int i = 0; i < 3; i++) {
		cr_assert(sluice_slots_acquire(cell, &cfg, 0, &d, NULL));
		cr_assert_eq(d.remaining, 1u);
		cr_assert(sluice_slots_peek(cell, &cfg, 0, &d));
		cr_assert_eq(d.reason, SLUICE_REASON_NONE);
	}
	cr_assert(sluice_slots_acquire(cell, &cfg, 0, NULL, &a));
	cr_assert_not(sluice_slots_peek(cell, &cfg, 0, &d));
	cr_assert_eq(d.reason, SLUICE_REASON_CONCURRENCY);
	cr_assert_not(sluice_slots_is_idle(cell, &cfg, 0));
	free(cell);
}

Test(slots, cancel_undoes_an_acquire)
{
	struct sluice_slots_config cfg;
	struct sluice_decision d;
	sluice_slot_handle a, b;

	cr_assert_eq(sluice_slots_config_init(&cfg, 1, 0, 0), SLUICE_OK);
	struct sluice_slots *cell = slots_new(&cfg);
	cr_assert(sluice_slots_acquire(cell, &cfg, 0, &d, &a));
	cr_assert(sluice_slots_cancel(cell, &cfg, a));
	cr_assert_not(sluice_slots_cancel(cell, &cfg, a));
	cr_assert(sluice_slots_is_idle(cell, &cfg, 0));
	cr_assert(sluice_slots_acquire(cell, &cfg, 0, &d, &b));
	cr_assert_not(sluice_slots_cancel(cell, &cfg, SLUICE_SLOT_NONE));
	free(cell);
}

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * SEC + (uint64_t)ts.tv_nsec;
}

Test(slots, acquire_wait_times_out_at_the_deadline)
{
	struct sluice_slots_config cfg;
	struct sluice_decision d;
	sluice_slot_handle a, b = 12345;

	cr_assert_eq(sluice_slots_config_init(&cfg, 1, 0, 0), SLUICE_OK);
	struct sluice_slots *cell = slots_new(&cfg);
	cr_assert_eq(sluice_slots_acquire_wait(cell, &cfg, 0, &d, &a), SLUICE_OK, "free: no wait");
	cr_assert_eq(sluice_slots_acquire_wait(cell, &cfg, 0, &d, &b), SLUICE_ETIMEDOUT);
	cr_assert_eq(b, SLUICE_SLOT_NONE);
	cr_assert_eq(d.reason, SLUICE_REASON_CONCURRENCY);
	uint64_t start = mono_ns();
	cr_assert_eq(sluice_slots_acquire_wait(cell, &cfg, start + 5 * MS, &d, &b), SLUICE_ETIMEDOUT);
	uint64_t took = mono_ns() - start;
	cr_assert_geq(took, 5 * MS);
	cr_assert_lt(took, 500 * MS);
	cr_assert_eq(sluice_slots_acquire_wait(NULL, &cfg, 0, &d, &b), SLUICE_EINVAL);
	cr_assert_eq(sluice_slots_acquire_wait(cell, &cfg, 0, &d, NULL), SLUICE_EINVAL);
	free(cell);
}

struct releaser {
	struct sluice_slots *cell;
	const struct sluice_slots_config *cfg;
	sluice_slot_handle handle;
	int rc;
};

static void *release_later(void *arg)
{
	struct releaser *r = arg;
	struct timespec ts = { 0, 3 * (long)MS };
	nanosleep(&ts, NULL);
	r->rc = sluice_slots_release(r->cell, r->cfg, r->handle);
	return NULL;
}

Test(slots, acquire_wait_gets_a_slot_released_meanwhile)
{
	struct sluice_slots_config cfg;
	struct sluice_decision d;
	sluice_slot_handle b;
	pthread_t thread;

	cr_assert_eq(sluice_slots_config_init(&cfg, 1, 0, 0), SLUICE_OK);
	struct sluice_slots *cell = slots_new(&cfg);
	struct releaser r = { cell, &cfg, 0, -100 };
	cr_assert(sluice_slots_acquire(cell, &cfg, sluice_monotonic_ns(), &d, &r.handle));
	cr_assert_eq(pthread_create(&thread, NULL, release_later, &r), 0);
	cr_assert_eq(sluice_slots_acquire_wait(cell, &cfg, sluice_monotonic_ns() + 5 * SEC, &d, &b),
		     SLUICE_OK);
	pthread_join(thread, NULL);
	cr_assert_eq(r.rc, SLUICE_OK);
	cr_assert(d.allowed);
	cr_assert_eq(sluice_slots_release(cell, &cfg, b), SLUICE_OK);
	free(cell);
}

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void slots_against_model(uint64_t seed)
{
	uint64_t rng = seed;
	struct sluice_slots_config cfg;
	uint64_t n = 1 + rng_next(&rng) % 6, ttl = rng_next(&rng) % 3 == 0 ? 0 : 1 + rng_next(&rng) % 50;
	cr_assert_eq(sluice_slots_config_init(&cfg, n, ttl, rng_next(&rng) % 2 * 777), SLUICE_OK);
	struct sluice_slots *cell = slots_new(&cfg);
	struct sluice_slots *other = slots_new(&cfg);
	struct slots_model *m = malloc(sizeof(*m));
	cr_assert_not_null(m);
	slots_model_init(m, &cfg);
	sluice_slot_handle foreign;
	struct sluice_decision d;
	cr_assert(sluice_slots_acquire(other, &cfg, 0, &d, &foreign));
	uint64_t t = 1000;

	for (uint64_t step = 0; step < 300; step++) {
		uint64_t op = rng_next(&rng) % 10;
		t = rng_next(&rng) % 8 == 0 ? t - rng_next(&rng) % 20 : t + rng_next(&rng) % 10;
		if (op < 4) {
			sluice_slot_handle h;
			bool ok = sluice_slots_acquire(cell, &cfg, t, &d, &h);
			cr_assert(slots_model_acquire(m, t, ok, h, &d),
				  "seed %llu step %llu: acquire ok=%d rem=%llu",
				  (unsigned long long)seed, (unsigned long long)step, ok,
				  (unsigned long long)d.remaining);
		} else if (op < 8 && m->n > 0) {
			sluice_slot_handle h = m->h[rng_next(&rng) % m->n].handle;
			int want = slots_model_release(m, h);
			cr_assert_eq(sluice_slots_release(cell, &cfg, h), want,
				     "seed %llu step %llu: release", (unsigned long long)seed,
				     (unsigned long long)step);
		} else if (op == 8) {
			cr_assert_eq(sluice_slots_reap(cell, &cfg, t), slots_model_reap(m, t));
		} else {
			cr_assert_eq(sluice_slots_release(cell, &cfg, foreign), SLUICE_ESTALE);
			cr_assert_eq(sluice_slots_is_idle(cell, &cfg, t), m->live == 0);
			cr_assert_eq(sluice_slots_peek(cell, &cfg, t, &d), m->live < m->slots);
			cr_assert_eq(d.remaining, m->slots - m->live);
		}
	}
	slots_model_free(m);
	free(m);
	free(cell);
	free(other);
}

Test(slots, matches_the_reference_model_on_random_sequences)
{
	for (uint64_t seed = 1; seed <= 300; seed++)
		slots_against_model(seed);
}

/* Threads acquire and release (throwing in double releases); an
 * independent counter checks that never more than N are in flight. The TSan
 * variant with leases is tests/stress_slots.c. */
struct hammer {
	struct sluice_slots *cell;
	const struct sluice_slots_config *cfg;
	atomic_int *in_flight;
	atomic_int *max_seen;
	atomic_int *errors;
};

static void *hammer_run(void *arg)
{
	struct hammer *h = arg;
	for (int i = 0; i < 20000; i++) {
		sluice_slot_handle handle;
		if (!sluice_slots_acquire(h->cell, h->cfg, 0, NULL, &handle))
			continue;
		int now = atomic_fetch_add(h->in_flight, 1) + 1;
		int seen = atomic_load(h->max_seen);
		while (now > seen && !atomic_compare_exchange_weak(h->max_seen, &seen, now))
			;
		atomic_fetch_sub(h->in_flight, 1);
		if (sluice_slots_release(h->cell, h->cfg, handle) != SLUICE_OK)
			atomic_fetch_add(h->errors, 1);
		if (i % 7 == 0 && sluice_slots_release(h->cell, h->cfg, handle) != SLUICE_EDOUBLE)
			atomic_fetch_add(h->errors, 1);
	}
	return NULL;
}

Test(slots, never_more_than_n_in_flight_across_threads)
{
	struct sluice_slots_config cfg;
	atomic_int in_flight = 0, max_seen = 0, errors = 0;
	pthread_t threads[4];

	cr_assert_eq(sluice_slots_config_init(&cfg, 3, 0, 0), SLUICE_OK);
	struct sluice_slots *cell = slots_new(&cfg);
	struct hammer h = { cell, &cfg, &in_flight, &max_seen, &errors };
	for (int i = 0; i < 4; i++)
		cr_assert_eq(pthread_create(&threads[i], NULL, hammer_run, &h), 0);
	for (int i = 0; i < 4; i++)
		pthread_join(threads[i], NULL);
	cr_assert_leq(atomic_load(&max_seen), 3);
	cr_assert_eq(atomic_load(&errors), 0);
	cr_assert(sluice_slots_is_idle(cell, &cfg, 0));
	free(cell);
}
