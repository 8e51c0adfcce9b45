/*
 * redis_test_util.h - the helpers every Redis test file shares: limit
 * constructors (limit_util.h), the backend's options and stats, a deterministic random
 * walk, and the comparison of two decisions field by field (every field of
 * struct sluice_decision, and of struct sluice_engine_decision, so a backend
 * that differs from its in-process reference in any of them fails). Header-only (static functions) for
 * Criterion test files; include after <criterion/criterion.h> and
 * <sluice.h>. Functions a file does not use are marked unused.
 * A file that wants its own random sequence defines REDIS_TEST_RNG_SEED
 * before including this header.
 */
#ifndef SLUICE_TESTS_REDIS_TEST_UTIL_H
#define SLUICE_TESTS_REDIS_TEST_UTIL_H

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#endif

#include "limit_util.h"

/* ---- the backend ---- */

static struct sluice_redis_options ropts(int port, uint32_t flags)
{
	struct sluice_redis_options o;

	memset(&o, 0, sizeof o);
	o.size = sizeof o;
	o.port = (uint32_t)port;
	o.flags = flags;
	o.timeout_ns = 2 * SEC; /* a loaded CI machine: no degraded answer by accident */
	/* The tests' caller clocks are fake and stand still against real
	 * time: keys must not expire meanwhile (docs/redis.md, "Key expiry"). */
	if (flags & SLUICE_REDIS_CALLER_CLOCK)
		o.expiry_grace_ns = 600 * SEC;
	return o;
}

static struct sluice_redis *connect_to(const struct sluice_redis_options *o)
{
	struct sluice_redis *r = NULL;
	cr_assert_eq(sluice_redis_create(&r, o), SLUICE_OK);
	cr_assert_not_null(r);
	return r;
}

static struct sluice_redis_stats rstats(struct sluice_redis *r)
{
	struct sluice_redis_stats s;

	memset(&s, 0, sizeof s);
	s.size = sizeof s;
	cr_assert_eq(sluice_redis_stats(r, &s), SLUICE_OK);
	return s;
}

/* The Redis options of the next limiter or engine made on Redis: set by
 * limiter_opts()/engine_opts(), adjusted by a test before its create call. */
static struct sluice_redis_limiter_options t_redis;

/* A limiter on Redis with `conns` connections (the backend's options `ro`
 * must outlive the create call, redis_limiter_create()). */
static struct sluice_limiter_options limiter_opts(const struct sluice_redis_options *ro, uint32_t conns)
{
	struct sluice_limiter_options o;

	memset(&t_redis, 0, sizeof t_redis);
	t_redis.size = sizeof t_redis;
	t_redis.redis = ro;
	t_redis.connections = conns;
	memset(&o, 0, sizeof o);
	o.size = sizeof o;
	return o;
}

static inline int redis_limiter_create(struct sluice_limiter **out, const struct sluice_limit *l, size_t n,
				       const struct sluice_limiter_options *o)
{
	return sluice_redis_limiter_create(out, l, n, o, &t_redis);
}

/* An engine on Redis with `conns` connections, every key hash-tagged by
 * scope `tag` (NULL: each limit by its own scope), redis_engine_create(). */
static struct sluice_engine_options engine_opts(const struct sluice_redis_options *ro, uint32_t conns,
						const char *tag)
{
	struct sluice_engine_options o;

	memset(&t_redis, 0, sizeof t_redis);
	t_redis.size = sizeof t_redis;
	t_redis.redis = ro;
	t_redis.connections = conns;
	t_redis.tag_scope = tag;
	memset(&o, 0, sizeof o);
	o.size = sizeof o;
	return o;
}

static inline int redis_engine_create(struct sluice_engine **out, struct sluice_policy *p,
				      const struct sluice_engine_options *o)
{
	return sluice_redis_engine_create(out, p, o, &t_redis);
}

/* ---- a deterministic random walk (xorshift64*) ---- */

#ifndef REDIS_TEST_RNG_SEED
#define REDIS_TEST_RNG_SEED 0x9e3779b97f4a7c15ull
#endif

static uint64_t rng_state = REDIS_TEST_RNG_SEED;

static uint64_t rnd(void)
{
	uint64_t x = rng_state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rng_state = x;
	return x * 0x2545f4914f6cdd1dull;
}

/* ---- decisions ---- */

/* Every field of two decisions equal; `what` names the step in a failure. */
static void assert_same_at(const struct sluice_decision *a, const struct sluice_decision *b, const char *what)
{
	cr_assert_eq(a->allowed, b->allowed, "%s: allowed %d vs %d", what, a->allowed, b->allowed);
	cr_assert_eq(a->degraded, b->degraded, "%s: degraded %d vs %d", what, a->degraded, b->degraded);
	cr_assert_eq(a->reason, b->reason, "%s: reason %u vs %u", what, a->reason, b->reason);
	cr_assert_eq(a->limit_index, b->limit_index, "%s: limit_index %u vs %u", what, a->limit_index,
		     b->limit_index);
	cr_assert_eq(a->limit, b->limit, "%s: limit", what);
	cr_assert_eq(a->remaining, b->remaining, "%s: remaining %llu vs %llu", what,
		     (unsigned long long)a->remaining, (unsigned long long)b->remaining);
	cr_assert_eq(a->reset_ns, b->reset_ns, "%s: reset %llu vs %llu", what,
		     (unsigned long long)a->reset_ns, (unsigned long long)b->reset_ns);
	cr_assert_eq(a->retry_after_ns, b->retry_after_ns, "%s: retry %llu vs %llu", what,
		     (unsigned long long)a->retry_after_ns, (unsigned long long)b->retry_after_ns);
}

static void assert_same(const struct sluice_decision *a, const struct sluice_decision *b, int step)
{
	char what[32];

	snprintf(what, sizeof what, "step %d", step);
	assert_same_at(a, b, what);
}

/* Two engine decisions: the decision and everything the engine adds. */
static void same_decision(const struct sluice_engine_decision *a, const struct sluice_engine_decision *b,
			  int step)
{
	char what[32];

	snprintf(what, sizeof what, "step %d", step);
	assert_same_at(&a->d, &b->d, what);
	cr_assert_eq(a->governed, b->governed, "step %d: governed", step);
	cr_assert_eq(a->warn, b->warn, "step %d: warn %d vs %d", step, a->warn, b->warn);
	cr_assert_eq(a->warn_limit, b->warn_limit, "step %d: warn_limit", step);
	cr_assert_eq(a->scope, b->scope, "step %d: scope", step);
	cr_assert_eq(a->class_id, b->class_id, "step %d: class", step);
	cr_assert_eq(a->applied, b->applied, "step %d: applied %x vs %x", step, a->applied, b->applied);
	cr_assert_eq(a->slot_count, b->slot_count, "step %d: slots", step);
	cr_assert_eq(a->generation, b->generation, "step %d: generation", step);
	cr_assert_str_eq(a->limit_name, b->limit_name, "step %d: %s vs %s", step, a->limit_name,
			 b->limit_name);
}

/* ---- a frozen server and a busy pool: bounded waits ----
 *
 * FROZEN_THREADS threads each make FROZEN_CALLS calls of `call` on `ctx`
 * (one object shared by all, its server stopped with SIGSTOP), timing each.
 * `call` returns the call's SLUICE_* code and sets *as_expected when the
 * answer is the one the fail mode prescribes. Every call must return
 * SLUICE_OK; the slowest call and the number of expected answers come
 * back. */

#define FROZEN_THREADS 4
#define FROZEN_CALLS 3

struct frozen_worker {
	pthread_t th;
	int (*call)(void *ctx, bool *as_expected);
	void *ctx;
	uint64_t worst_ns;
	int expected, errors;
};

static void *frozen_work(void *arg)
{
	struct frozen_worker *w = arg;
	for (int i = 0; i < FROZEN_CALLS; i++) {
		bool as_expected = false;
		uint64_t t0 = sluice_monotonic_ns();
		int rc = w->call(w->ctx, &as_expected);
		uint64_t took = sluice_monotonic_ns() - t0;
		if (took > w->worst_ns)
			w->worst_ns = took;
		w->errors += rc != SLUICE_OK;
		w->expected += rc == SLUICE_OK && as_expected;
	}
	return NULL;
}

static void frozen_run(int (*call)(void *ctx, bool *as_expected), void *ctx, uint64_t *worst_ns,
		       int *expected)
{
	struct frozen_worker w[FROZEN_THREADS];
	for (int i = 0; i < FROZEN_THREADS; i++) {
		w[i] = (struct frozen_worker){ .call = call, .ctx = ctx };
		cr_assert_eq(pthread_create(&w[i].th, NULL, frozen_work, &w[i]), 0);
	}
	*worst_ns = 0;
	*expected = 0;
	for (int i = 0; i < FROZEN_THREADS; i++) {
		pthread_join(w[i].th, NULL);
		cr_expect_eq(w[i].errors, 0);
		*expected += w[i].expected;
		*worst_ns = w[i].worst_ns > *worst_ns ? w[i].worst_ns : *worst_ns;
	}
}

#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#endif /* SLUICE_TESTS_REDIS_TEST_UTIL_H */
