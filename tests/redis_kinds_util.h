/*
 * redis_kinds_util.h - helpers of the Redis kinds and cluster tests
 * (test_redis_kinds.c, test_redis_cluster.c): limit constructors, options,
 * a deterministic random walk, decision comparison, and the reference
 * model (one keyed limiter per scope). Header-only; include after
 * redis_server.h.
 */
#ifndef SLUICE_TESTS_REDIS_KINDS_UTIL_H
#define SLUICE_TESTS_REDIS_KINDS_UTIL_H

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#endif

#define SEC 1000000000ull
#define MS 1000000ull
#define MIN (60 * SEC)
#define UNIX_NOW (1700000000ull * SEC + 123456789)


/* ---- helpers ---- */

static struct sluice_limit gcra(uint64_t limit, uint64_t period_ns, uint64_t burst)
{
	struct sluice_limit l;

	memset(&l, 0, sizeof l);
	l.kind = SLUICE_LIMIT_GCRA;
	cr_assert_eq(sluice_rate_init(&l.rate, limit, period_ns, burst), SLUICE_OK);
	return l;
}

static struct sluice_limit counter(uint64_t limit, uint64_t window_ns)
{
	struct sluice_limit l;

	memset(&l, 0, sizeof l);
	l.kind = SLUICE_LIMIT_SLIDING_COUNTER;
	cr_assert_eq(sluice_window_counter_config_init(&l.counter, limit, window_ns), SLUICE_OK);
	return l;
}

static struct sluice_limit calendar(uint64_t limit, uint64_t window_ns)
{
	struct sluice_limit l;

	memset(&l, 0, sizeof l);
	l.kind = SLUICE_LIMIT_CALENDAR;
	cr_assert_eq(sluice_calendar_config_init(&l.calendar, limit, window_ns), SLUICE_OK);
	return l;
}

static struct sluice_limit slog(uint64_t limit, uint64_t window_ns)
{
	struct sluice_limit l;

	memset(&l, 0, sizeof l);
	l.kind = SLUICE_LIMIT_SLIDING_LOG;
	cr_assert_eq(sluice_window_log_config_init(&l.log, limit, window_ns), SLUICE_OK);
	return l;
}

static struct sluice_limit slots(uint64_t n, uint64_t lease_ns)
{
	struct sluice_limit l;

	memset(&l, 0, sizeof l);
	l.kind = SLUICE_LIMIT_SLOTS;
	cr_assert_eq(sluice_slots_config_init(&l.slots, n, lease_ns, 0), SLUICE_OK);
	return l;
}

static struct sluice_redis_options ropts(int port, uint32_t flags)
{
	struct sluice_redis_options o;

	memset(&o, 0, sizeof o);
	o.size = sizeof o;
	o.port = (uint32_t)port;
	o.flags = flags;
	o.timeout_ns = 500 * MS;
	if (flags & SLUICE_REDIS_CALLER_CLOCK)
		o.expiry_grace_ns = 600 * SEC; /* fake clocks stand still */
	return o;
}

static struct sluice_redis *connect_to(const struct sluice_redis_options *o)
{
	struct sluice_redis *r = NULL;
	cr_assert_eq(sluice_redis_create(&r, o), SLUICE_OK);
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

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	uint64_t x = rng_state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rng_state = x;
	return x * 0x2545f4914f6cdd1dull;
}

static void assert_same(const struct sluice_decision *a, const struct sluice_decision *b, int step)
{
	cr_assert_eq(a->allowed, b->allowed, "step %d: allowed %d vs %d", step, a->allowed, b->allowed);
	cr_assert_eq(a->degraded, b->degraded, "step %d: degraded", step);
	cr_assert_eq(a->reason, b->reason, "step %d: reason %u vs %u", step, a->reason, b->reason);
	cr_assert_eq(a->limit_index, b->limit_index, "step %d: limit_index %u vs %u", step,
		     a->limit_index, b->limit_index);
	cr_assert_eq(a->limit, b->limit, "step %d: limit", step);
	cr_assert_eq(a->remaining, b->remaining, "step %d: remaining %llu vs %llu", step,
		     (unsigned long long)a->remaining, (unsigned long long)b->remaining);
	cr_assert_eq(a->reset_ns, b->reset_ns, "step %d: reset %llu vs %llu", step,
		     (unsigned long long)a->reset_ns, (unsigned long long)b->reset_ns);
	cr_assert_eq(a->retry_after_ns, b->retry_after_ns, "step %d: retry %llu vs %llu", step,
		     (unsigned long long)a->retry_after_ns, (unsigned long long)b->retry_after_ns);
}

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
