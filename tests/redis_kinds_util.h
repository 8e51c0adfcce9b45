/*
 * redis_kinds_util.h - helpers of the Redis kinds and cluster tests
 * (test_redis_kinds.c, test_redis_cluster.c): a random step of a fake
 * clock, the reference model (one keyed limiter per scope) and the stress
 * duration; the shared helpers come from redis_test_util.h. Header-only;
 * include after redis_server.h.
 */
#ifndef SLUICE_TESTS_REDIS_KINDS_UTIL_H
#define SLUICE_TESTS_REDIS_KINDS_UTIL_H

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#endif

#include "redis_test_util.h"

#define UNIX_NOW (1700000000ull * SEC + 123456789)


/* A random step of a fake clock: mostly small, sometimes a long pause or a
 * step backwards (a stale clock). */
static uint64_t step_time(uint64_t now, uint64_t small_ns, uint64_t big_ns)
{
	uint64_t r1 = rnd() % 10;
	if (r1 < 6)
		return now + rnd() % small_ns;
	if (r1 == 6)
		return now - rnd() % (2 * small_ns);
	if (r1 == 7)
		return now + rnd() % big_ns;
	return now;
}

/*
 * The reference for several scopes: one keyed limiter per scope, visited
 * in order. A scope whose limiter would deny (its peek's least remaining is
 * below the cost) governs with the denial its limiter gives (a denial
 * consumes nothing); else every scope admits, and the least remaining of
 * all governs (ties to the earlier). order[] lists the scopes in the order
 * the backend visits them; base[s] is scope s's first flat limit index.
 */
static void model_admit(struct sluice_limiter **lim, const char *const *keys, const size_t *order,
			const uint32_t *base, size_t n, uint64_t cost, uint64_t now,
			struct sluice_decision *out)
{
	struct sluice_decision d, best;

	for (size_t q = 0; q < n && cost > 0; q++) {
		size_t s = order[q];
		cr_assert_eq(sluice_limiter_peek(lim[s], keys[s], strlen(keys[s]), now, &d), SLUICE_OK);
		if (d.remaining < cost) {
			cr_assert_eq(sluice_limiter_admit(lim[s], keys[s], strlen(keys[s]), cost, now, &d),
				     SLUICE_OK);
			cr_assert(!d.allowed, "the model's peek and admit disagree");
			*out = d;
			out->limit_index += base[s];
			return;
		}
	}
	for (size_t q = 0; q < n; q++) {
		size_t s = order[q];
		cr_assert_eq(sluice_limiter_admit(lim[s], keys[s], strlen(keys[s]), cost, now, &d), SLUICE_OK);
		cr_assert(d.allowed);
		d.limit_index += base[s];
		if (q == 0 || d.remaining < best.remaining ||
		    (d.remaining == best.remaining && d.reset_ns < best.reset_ns))
			best = d;
	}
	*out = best;
}

/* Test duration of the concurrent tests; SLUICE_STRESS_MS overrides. */
static uint64_t stress_ns(uint64_t default_ms)
{
	const char *e = getenv("SLUICE_STRESS_MS");
	uint64_t ms = e != NULL ? strtoull(e, NULL, 10) : default_ms;
	return (ms == 0 ? default_ms : ms) * MS;
}

#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#endif /* SLUICE_TESTS_REDIS_KINDS_UTIL_H */
