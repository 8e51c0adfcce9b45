/*
 * test_window.c - behaviour of the window cells (include/sluice/window.h):
 * sliding-window log, sliding-window counter, calendar windows. Each kind is
 * compared operation by operation with a naive model (window_model.h) on
 * random sequences, and pinned on edges: time going backwards, windows of
 * 1 ns and of a year, the end of the clock, cost 0, cost > limit,
 * receipts/cancel, is_idle and config errors.
 */
#include <criterion/criterion.h>
#include <sluice.h>

#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>

#include "window_model.h"

#define SEC 1000000000ull
#define YEAR_NS (365ull * SLUICE_DAY_NS)

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t rng_below(uint64_t *s, uint64_t n)
{
	return n == 0 ? 0 : rng_next(s) % n;
}

static struct sluice_window_log *log_new(const struct sluice_window_log_config *cfg)
{
	size_t size = (sluice_window_log_size(cfg) + 63) & ~(size_t)63;
	struct sluice_window_log *cell = aligned_alloc(64, size);
	cr_assert_not_null(cell);
	memset(cell, 0xa5, size); /* init must not rely on zeroed memory */
	sluice_window_log_init(cell, cfg);
	return cell;
}

static void assert_same(const struct sluice_decision *got, const struct sluice_decision *want,
			const char *what, uint64_t step, uint64_t t, uint64_t cost)
{
	cr_assert(model_same(got, want),
		  "%s step %llu (t=%llu cost=%llu): got allowed=%d reason=%d rem=%llu reset=%llu retry=%llu; "
		  "want allowed=%d reason=%d rem=%llu reset=%llu retry=%llu",
		  what, (unsigned long long)step, (unsigned long long)t, (unsigned long long)cost,
		  got->allowed, got->reason,
		  (unsigned long long)got->remaining, (unsigned long long)got->reset_ns,
		  (unsigned long long)got->retry_after_ns, want->allowed, want->reason,
		  (unsigned long long)want->remaining, (unsigned long long)want->reset_ns,
		  (unsigned long long)want->retry_after_ns);
}

/* A random walk of times: mostly forward, sometimes backwards, sometimes a
 * jump of several windows; bounded so window indices stay within 2^22 of
 * the latest (the packed cells read 2^23 windows apart as "backwards"). */
static uint64_t next_time(uint64_t *rng, uint64_t *latest, uint64_t t, uint64_t w)
{
	uint64_t r = rng_below(rng, 100), span = w < 8 ? 8 : w;
	if (r < 60)
		t += rng_below(rng, span / 4 + 1);
	else if (r < 75)
		t += rng_below(rng, 3 * span);
	else if (r < 90)
		{ uint64_t back = rng_below(rng, span); t -= back < t ? back : t; }
	else
		t = *latest;
	if (t > *latest)
		*latest = t;
	return t;
}

/* ===================================================== sliding log == */

Test(window_log, config_errors_and_size)
{
	struct sluice_window_log_config cfg = { 7, 7, 7 };

	cr_assert_eq(sluice_window_log_config_init(NULL, 1, 1), SLUICE_EINVAL);
	cr_assert_eq(sluice_window_log_config_init(&cfg, 0, SEC), SLUICE_EINVAL);
	cr_assert_eq(sluice_window_log_config_init(&cfg, 5, 0), SLUICE_EINVAL);
	cr_assert_eq(sluice_window_log_config_init(&cfg, SLUICE_WINDOW_LOG_MAX_LIMIT + 1, SEC),
		     SLUICE_ETOOBIG);
	cr_assert_eq(sluice_window_log_config_init(&cfg, UINT64_MAX, SEC), SLUICE_ETOOBIG);
	cr_assert_eq(cfg.limit, 7u, "failed init leaves the config unchanged");
	cr_assert_eq(sluice_window_log_size(NULL), 0u);

	cr_assert_eq(sluice_window_log_config_init(&cfg, 60, 60 * SEC), SLUICE_OK);
	cr_assert_eq(cfg.capacity, 128u);
	cr_assert_eq(sluice_window_log_size(&cfg), 16u + 128u * 8u);
	cr_assert_eq(sluice_window_log_config_init(&cfg, 1, 1), SLUICE_OK);
	cr_assert_eq(cfg.capacity, 2u);
	cr_assert_eq(sluice_window_log_config_init(&cfg, SLUICE_WINDOW_LOG_MAX_LIMIT, SEC), SLUICE_OK);
	cr_assert_eq(sluice_window_log_size(&cfg), 16u + 8192u * 8u);
}

Test(window_log, sixty_per_minute_slides_unit_by_unit)
{
	struct sluice_window_log_config cfg;
	struct sluice_decision d;

	cr_assert_eq(sluice_window_log_config_init(&cfg, 60, 60 * SEC), SLUICE_OK);
	struct sluice_window_log *cell = log_new(&cfg);
	uint64_t t0 = 1000 * SEC;
	for (uint64_t i = 0; i < 60; i++) {
		cr_assert(sluice_window_log_admit(cell, &cfg, t0 + i * SEC, 1, &d));
		cr_assert_eq(d.remaining, 59 - i);
		cr_assert_eq(d.reset_ns, 60 * SEC);
	}
	cr_assert_not(sluice_window_log_admit(cell, &cfg, t0 + 59 * SEC + 1, 1, &d));
	cr_assert_eq(d.reason, SLUICE_REASON_RATE);
	cr_assert_eq(d.remaining, 0u);
	cr_assert_eq(d.retry_after_ns, SEC - 1, "the first unit leaves at t0 + 60 s");
	cr_assert_eq(d.limit, 60u);
	/* Exactly at t0 + 60 s the first unit has left (window (t - W, t]). */
	cr_assert(sluice_window_log_admit(cell, &cfg, t0 + 60 * SEC, 1, &d));
	cr_assert_eq(d.remaining, 0u);
	cr_assert_not(sluice_window_log_admit(cell, &cfg, t0 + 60 * SEC, 1, &d));
	cr_assert_eq(d.retry_after_ns, SEC);
	/* Two units need the two oldest to leave. */
	cr_assert_not(sluice_window_log_admit(cell, &cfg, t0 + 61 * SEC - 1, 2, &d));
	cr_assert_eq(d.retry_after_ns, SEC + 1);
	free(cell);
}

Test(window_log, cost_zero_peeks_and_cost_over_limit_never)
{
	struct sluice_window_log_config cfg;
	struct sluice_decision d;

	cr_assert_eq(sluice_window_log_config_init(&cfg, 3, SEC), SLUICE_OK);
	struct sluice_window_log *cell = log_new(&cfg);
	cr_assert(sluice_window_log_admit(cell, &cfg, 5 * SEC, 2, &d));
	for (int i = 0; i < 5; i++) {
		cr_assert(sluice_window_log_admit(cell, &cfg, 5 * SEC, 0, &d));
		cr_assert_eq(d.remaining, 1u);
		cr_assert_eq(d.retry_after_ns, 0u);
	}
	cr_assert_not(sluice_window_log_admit(cell, &cfg, 5 * SEC, 4, &d));
	cr_assert_eq(d.retry_after_ns, SLUICE_NEVER);
	cr_assert_eq(d.reason, SLUICE_REASON_NEVER);
	cr_assert_eq(d.remaining, 1u);
	cr_assert(sluice_window_log_admit(cell, &cfg, 5 * SEC, 1, NULL), "NULL out is allowed");
	cr_assert_not(sluice_window_log_admit(cell, &cfg, 5 * SEC, 1, NULL));
	/* A full cell still peeks allowed (cost 0 always passes). */
	cr_assert(sluice_window_log_admit(cell, &cfg, 5 * SEC, 0, &d));
	cr_assert_eq(d.remaining, 0u);
	free(cell);
}

Test(window_log, time_going_backwards_never_over_admits)
{
	struct sluice_window_log_config cfg;
	struct sluice_decision d;

	cr_assert_eq(sluice_window_log_config_init(&cfg, 2, 10 * SEC), SLUICE_OK);
	struct sluice_window_log *cell = log_new(&cfg);
	cr_assert(sluice_window_log_admit(cell, &cfg, 100 * SEC, 1, &d));
	/* A stale thread at 95 s: recorded at 100 s, not 95 s. */
	cr_assert(sluice_window_log_admit(cell, &cfg, 95 * SEC, 1, &d));
	cr_assert_eq(d.reset_ns, 15 * SEC);
	cr_assert_not(sluice_window_log_admit(cell, &cfg, 105 * SEC, 1, &d));
	cr_assert_eq(d.retry_after_ns, 5 * SEC);
	/* Far in the past: the cell is still full for it. */
	cr_assert_not(sluice_window_log_admit(cell, &cfg, 0, 1, &d));
	cr_assert_eq(d.retry_after_ns, 110 * SEC);
	cr_assert(sluice_window_log_admit(cell, &cfg, 110 * SEC, 2, &d));
	free(cell);
}

Test(window_log, one_ns_window_and_year_window_at_the_end_of_the_clock)
{
	struct sluice_window_log_config cfg;
	struct sluice_decision d;

	cr_assert_eq(sluice_window_log_config_init(&cfg, 2, 1), SLUICE_OK);
	struct sluice_window_log *cell = log_new(&cfg);
	cr_assert(sluice_window_log_admit(cell, &cfg, 7, 2, &d));
	cr_assert_eq(d.reset_ns, 1u);
	cr_assert_not(sluice_window_log_admit(cell, &cfg, 7, 1, &d));
	cr_assert_eq(d.retry_after_ns, 1u);
	cr_assert(sluice_window_log_admit(cell, &cfg, 8, 2, &d));
	free(cell);

	cr_assert_eq(sluice_window_log_config_init(&cfg, 3, YEAR_NS), SLUICE_OK);
	cell = log_new(&cfg);
	uint64_t t = UINT64_MAX - 5;
	cr_assert(sluice_window_log_admit(cell, &cfg, t, 3, &d));
	cr_assert_eq(d.reset_ns, UINT64_MAX, "saturates past the end of the clock");
	cr_assert_not(sluice_window_log_admit(cell, &cfg, UINT64_MAX, 1, &d));
	cr_assert_eq(d.retry_after_ns, UINT64_MAX);
	cr_assert(sluice_window_log_admit(cell, &cfg, 0, 0, &d));
	cr_assert_eq(d.remaining, 0u, "a time before the units sees them in its window");
	free(cell);

	cr_assert_eq(sluice_window_log_config_init(&cfg, 3, YEAR_NS), SLUICE_OK);
	cell = log_new(&cfg);
	cr_assert(sluice_window_log_admit(cell, &cfg, 0, 3, &d));
	cr_assert_not(sluice_window_log_admit(cell, &cfg, YEAR_NS - 1, 1, &d));
	cr_assert_eq(d.retry_after_ns, 1u);
	cr_assert(sluice_window_log_admit(cell, &cfg, YEAR_NS, 3, &d));
	free(cell);
}

Test(window_log, receipts_cancel_exactly_and_only_the_latest_write)
{
	struct sluice_window_log_config cfg;
	struct sluice_window_log_receipt r1, r2;
	struct sluice_decision d;

	cr_assert_eq(sluice_window_log_config_init(&cfg, 4, 10 * SEC), SLUICE_OK);
	struct sluice_window_log *cell = log_new(&cfg);
	/* Fill the ring past a lap so cancel must not resurrect old slots. */
	for (uint64_t i = 0; i < 9; i++)
		cr_assert(sluice_window_log_admit(cell, &cfg, i * 10 * SEC, 4, &d));
	uint64_t t = 100 * SEC;
	cr_assert(sluice_window_log_admit_receipt(cell, &cfg, t, 3, &d, &r1));
	cr_assert(sluice_window_log_cancel(cell, &r1));
	cr_assert_not(sluice_window_log_cancel(cell, &r1), "a receipt cancels once");
	cr_assert(sluice_window_log_admit(cell, &cfg, t, 0, &d));
	cr_assert_eq(d.remaining, 4u);
	cr_assert_eq(d.reset_ns, 0u);

	cr_assert(sluice_window_log_admit_receipt(cell, &cfg, t, 2, &d, &r1));
	cr_assert(sluice_window_log_admit_receipt(cell, &cfg, t + 1, 1, &d, &r2));
	cr_assert_not(sluice_window_log_cancel(cell, &r1), "another write landed since");
	cr_assert(sluice_window_log_cancel(cell, &r2));
	cr_assert(sluice_window_log_admit(cell, &cfg, t, 0, &d));
	cr_assert_eq(d.remaining, 2u);

	/* Denied admissions and NULL receipts give nothing to cancel. */
	cr_assert_not(sluice_window_log_admit_receipt(cell, &cfg, t, 3, &d, &r1));
	cr_assert_not(sluice_window_log_cancel(cell, &r1));
	cr_assert_not(sluice_window_log_cancel(cell, NULL));
	cr_assert(sluice_window_log_admit_receipt(cell, &cfg, t, 0, &d, &r1));
	cr_assert_not(sluice_window_log_cancel(cell, &r1), "a peek has no receipt");
	free(cell);
}

Test(window_log, is_idle_iff_nothing_in_the_window)
{
	struct sluice_window_log_config cfg;

	cr_assert_eq(sluice_window_log_config_init(&cfg, 4, 10), SLUICE_OK);
	struct sluice_window_log *cell = log_new(&cfg);
	cr_assert(sluice_window_log_is_idle(cell, &cfg, 0));
	cr_assert(sluice_window_log_admit(cell, &cfg, 100, 1, NULL));
	cr_assert_not(sluice_window_log_is_idle(cell, &cfg, 100));
	cr_assert_not(sluice_window_log_is_idle(cell, &cfg, 109));
	cr_assert_not(sluice_window_log_is_idle(cell, &cfg, 50), "a unit ahead of now is live");
	cr_assert(sluice_window_log_is_idle(cell, &cfg, 110));
	free(cell);
}

/* How the keyed limiter embeds a log: as the last member of a key entry,
 * sized at run time from the config. */
struct key_entry {
	uint64_t key;
	struct sluice_gcra other_limit;
	struct sluice_window_log log; /* must stay last: the ring follows */
};

Test(window_log, embeds_inline_at_the_end_of_a_key_entry)
{
	struct sluice_window_log_config cfg;
	struct sluice_decision d;

	cr_assert_eq(sluice_window_log_config_init(&cfg, 60, 60 * SEC), SLUICE_OK);
	size_t size = offsetof(struct key_entry, log) + sluice_window_log_size(&cfg);
	struct key_entry *e = malloc(size);
	cr_assert_not_null(e);
	memset(e, 0xff, size);
	e->key = 42;
	sluice_gcra_init(&e->other_limit);
	sluice_window_log_init(&e->log, &cfg);
	for (int i = 0; i < 60; i++)
		cr_assert(sluice_window_log_admit(&e->log, &cfg, SEC, 1, &d));
	cr_assert_not(sluice_window_log_admit(&e->log, &cfg, SEC, 1, &d));
	cr_assert_eq(e->key, 42u, "the ring stays inside its bytes");
	cr_assert(sluice_window_log_is_idle(&e->log, &cfg, 61 * SEC));
	free(e);
}

static void log_against_model(uint64_t seed)
{
	uint64_t rng = seed;
	uint64_t limit = 1 + rng_below(&rng, 12);
	uint64_t w = rng_below(&rng, 4) == 0 ? 1 + rng_below(&rng, 3) : 1 + rng_below(&rng, 1000);
	struct sluice_window_log_config cfg;
	struct log_model m;
	struct sluice_window_log_receipt rc = { 0, 0, 0 };
	struct log_model_receipt mrc = { 0, 0 };
	uint64_t t = rng_below(&rng, 1000), latest = t;

	cr_assert_eq(sluice_window_log_config_init(&cfg, limit, w), SLUICE_OK);
	struct sluice_window_log *cell = log_new(&cfg);
	log_model_init(&m, limit, w);
	for (uint64_t step = 0; step < 400; step++) {
		struct sluice_decision got, want;
		t = next_time(&rng, &latest, t, w);
		uint64_t op = rng_below(&rng, 10);
		if (op == 0) {
			bool a = sluice_window_log_cancel(cell, &rc);
			bool b = log_model_cancel(&m, &mrc);
			cr_assert_eq(a, b, "seed %llu step %llu: cancel", (unsigned long long)seed,
				     (unsigned long long)step);
		} else if (op == 1) {
			cr_assert_eq(sluice_window_log_is_idle(cell, &cfg, t), log_model_idle(&m, t));
		} else {
			uint64_t cost = rng_below(&rng, 8) == 0 ? rng_below(&rng, limit + 3)
								: rng_below(&rng, 3);
			bool a = sluice_window_log_admit_receipt(cell, &cfg, t, cost, &got, &rc);
			bool b = log_model_admit(&m, t, cost, &want, &mrc);
			assert_same(&got, &want, "log", step, t, cost);
			cr_assert_eq(a, b);
		}
	}
	log_model_free(&m);
	free(cell);
}

Test(window_log, matches_the_reference_model_on_random_sequences)
{
	for (uint64_t seed = 1; seed <= 300; seed++)
		log_against_model(seed);
}

/* ================================================== sliding counter == */

Test(window_counter, config_errors)
{
	struct sluice_window_counter_config cfg = { .limit = 9, .window_ns = 9 };

	cr_assert_eq(sluice_window_counter_config_init(NULL, 1, 1), SLUICE_EINVAL);
	cr_assert_eq(sluice_window_counter_config_init(&cfg, 0, 1), SLUICE_EINVAL);
	cr_assert_eq(sluice_window_counter_config_init(&cfg, 1, 0), SLUICE_EINVAL);
	cr_assert_eq(sluice_window_counter_config_init(&cfg, SLUICE_WINDOW_COUNTER_MAX_LIMIT + 1, 1),
		     SLUICE_ETOOBIG);
	cr_assert_eq(cfg.limit, 9u);
	cr_assert_eq(sluice_window_counter_config_init(&cfg, SLUICE_WINDOW_COUNTER_MAX_LIMIT, UINT64_MAX),
		     SLUICE_OK);
}

Test(window_counter, weighted_estimate_decays_over_the_window)
{
	struct sluice_window_counter_config cfg;
	struct sluice_window_counter cell;
	struct sluice_decision d;

	cr_assert_eq(sluice_window_counter_config_init(&cfg, 10, 100), SLUICE_OK);
	sluice_window_counter_init(&cell);
	cr_assert(sluice_window_counter_admit(&cell, &cfg, 1000, 10, &d));
	cr_assert_eq(d.remaining, 0u);
	cr_assert_eq(d.reset_ns, 200u, "cur decays over the next window");
	cr_assert_not(sluice_window_counter_admit(&cell, &cfg, 1099, 1, &d));
	/* Next window: prev = 10 at weight (100 - e) / 100; 1 unit fits once
	 * 10 * (100 - e) <= 900, i.e. e >= 10. */
	cr_assert_eq(d.retry_after_ns, 11u);
	cr_assert_not(sluice_window_counter_admit(&cell, &cfg, 1109, 1, &d));
	cr_assert_eq(d.retry_after_ns, 1u);
	cr_assert(sluice_window_counter_admit(&cell, &cfg, 1110, 1, &d));
	cr_assert_eq(d.remaining, 0u);
	cr_assert(sluice_window_counter_admit(&cell, &cfg, 1150, 0, &d));
	cr_assert_eq(d.remaining, 4u, "10 - 1 - 10 * 50 / 100");
	cr_assert(sluice_window_counter_admit(&cell, &cfg, 1150, 4, &d));
	/* A stale peek judged at e = 0 sees prev at full weight: the estimate
	 * 9 + 5 is over L, yet cost 0 is allowed, with nothing remaining. */
	cr_assert(sluice_window_counter_admit(&cell, &cfg, 1200, 5, &d));
	cr_assert(sluice_window_counter_admit(&cell, &cfg, 1300, 5, &d));
	cr_assert(sluice_window_counter_admit(&cell, &cfg, 1390, 4, &d));
	cr_assert(sluice_window_counter_admit(&cell, &cfg, 1250, 0, &d));
	cr_assert_eq(d.remaining, 0u);
	cr_assert_eq(d.retry_after_ns, 0u);
	cr_assert_not(sluice_window_counter_admit(&cell, &cfg, 1250, 1, &d));
	/* Two windows on, everything is forgotten. */
	cr_assert(sluice_window_counter_admit(&cell, &cfg, 1500, 10, &d));
}

Test(window_counter, cost_zero_cost_over_limit_one_ns_and_year_windows)
{
	struct sluice_window_counter_config cfg;
	struct sluice_window_counter cell;
	struct sluice_decision d;

	cr_assert_eq(sluice_window_counter_config_init(&cfg, 2, 1), SLUICE_OK);
	sluice_window_counter_init(&cell);
	cr_assert(sluice_window_counter_admit(&cell, &cfg, 5, 2, &d));
	cr_assert_not(sluice_window_counter_admit(&cell, &cfg, 5, 1, &d));
	cr_assert_eq(d.retry_after_ns, 2u, "W = 1: e is always 0, prev weighs fully");
	cr_assert_not(sluice_window_counter_admit(&cell, &cfg, 6, 1, &d));
	cr_assert(sluice_window_counter_admit(&cell, &cfg, 7, 2, &d));
	cr_assert_not(sluice_window_counter_admit(&cell, &cfg, 7, 3, &d));
	cr_assert_eq(d.retry_after_ns, SLUICE_NEVER);
	cr_assert_eq(d.reason, SLUICE_REASON_NEVER);
	uint64_t before = atomic_load(&cell.word);
	cr_assert(sluice_window_counter_admit(&cell, &cfg, 7, 0, &d));
	cr_assert_eq(atomic_load(&cell.word), before, "a peek writes nothing");

	cr_assert_eq(sluice_window_counter_config_init(&cfg, 1000, YEAR_NS), SLUICE_OK);
	sluice_window_counter_init(&cell);
	uint64_t t = UINT64_MAX - 3;
	cr_assert(sluice_window_counter_admit(&cell, &cfg, t, 1000, &d));
	cr_assert_eq(d.reset_ns, UINT64_MAX);
	cr_assert_not(sluice_window_counter_admit(&cell, &cfg, UINT64_MAX, 1, &d));
	cr_assert_eq(d.retry_after_ns, UINT64_MAX);
}

Test(window_counter, fresh_cell_is_fresh_at_any_window_index)
{
	struct sluice_window_counter_config cfg;
	struct sluice_window_counter cell;
	struct sluice_decision d;

	/* With W = 1 ns, Unix time has window indices far past 2^23: a fresh
	 * cell must not read as "ahead of the clock". */
	cr_assert_eq(sluice_window_counter_config_init(&cfg, 3, 1), SLUICE_OK);
	sluice_window_counter_init(&cell);
	uint64_t t = (UINT64_C(1) << 23) + 12345;
	cr_assert(sluice_window_counter_admit(&cell, &cfg, t, 3, &d));
	cr_assert_eq(d.reset_ns, 2u);
	cr_assert(sluice_window_counter_admit(&cell, &cfg, t + 2, 3, &d));
}

Test(window_counter, time_going_backwards_counts_in_the_cells_window)
{
	struct sluice_window_counter_config cfg;
	struct sluice_window_counter cell;
	struct sluice_decision d;

	cr_assert_eq(sluice_window_counter_config_init(&cfg, 4, 100), SLUICE_OK);
	sluice_window_counter_init(&cell);
	cr_assert(sluice_window_counter_admit(&cell, &cfg, 1050, 3, &d));
	/* A stale request in window 9 is judged in window 10 at e = 0. */
	cr_assert(sluice_window_counter_admit(&cell, &cfg, 990, 1, &d));
	cr_assert_eq(d.reset_ns, 210u);
	cr_assert_not(sluice_window_counter_admit(&cell, &cfg, 0, 1, &d));
	cr_assert_not(sluice_window_counter_admit(&cell, &cfg, 1099, 1, &d));
}

Test(window_counter, receipts_and_is_idle)
{
	struct sluice_window_counter_config cfg;
	struct sluice_window_counter cell;
	struct sluice_window_counter_receipt r1, r2;
	struct sluice_decision d;

	cr_assert_eq(sluice_window_counter_config_init(&cfg, 5, 100), SLUICE_OK);
	sluice_window_counter_init(&cell);
	cr_assert(sluice_window_counter_is_idle(&cell, &cfg, 12345));
	cr_assert(sluice_window_counter_admit_receipt(&cell, &cfg, 150, 2, &d, &r1));
	cr_assert_not(sluice_window_counter_is_idle(&cell, &cfg, 150));
	cr_assert_not(sluice_window_counter_is_idle(&cell, &cfg, 299), "prev still weighs");
	cr_assert(sluice_window_counter_is_idle(&cell, &cfg, 300));
	cr_assert(sluice_window_counter_cancel(&cell, &r1));
	cr_assert(sluice_window_counter_is_idle(&cell, &cfg, 150));
	cr_assert_not(sluice_window_counter_cancel(&cell, &r1));
	cr_assert(sluice_window_counter_admit_receipt(&cell, &cfg, 150, 2, &d, &r1));
	cr_assert(sluice_window_counter_admit_receipt(&cell, &cfg, 160, 1, &d, &r2));
	cr_assert_not(sluice_window_counter_cancel(&cell, &r1));
	cr_assert(sluice_window_counter_cancel(&cell, &r2));
	cr_assert(sluice_window_counter_admit(&cell, &cfg, 150, 0, &d));
	cr_assert_eq(d.remaining, 3u);
	cr_assert_not(sluice_window_counter_admit_receipt(&cell, &cfg, 150, 9, &d, &r1));
	cr_assert_not(sluice_window_counter_cancel(&cell, &r1));
	cr_assert_not(sluice_window_counter_cancel(&cell, NULL));
}

static void counter_against_model(uint64_t seed)
{
	uint64_t rng = seed;
	uint64_t limit = 1 + rng_below(&rng, 12);
	uint64_t w = rng_below(&rng, 4) == 0 ? 1 + rng_below(&rng, 3) : 1 + rng_below(&rng, 1000);
	struct sluice_window_counter_config cfg;
	struct sluice_window_counter cell;
	struct sluice_window_counter_receipt rc = { 0, 0 };
	struct counter_model m;
	struct counter_model_receipt mrc = { 0 };
	uint64_t t = rng_below(&rng, 1000), latest = t;

	cr_assert_eq(sluice_window_counter_config_init(&cfg, limit, w), SLUICE_OK);
	sluice_window_counter_init(&cell);
	counter_model_init(&m, limit, w);
	for (uint64_t step = 0; step < 400; step++) {
		struct sluice_decision got, want;
		t = next_time(&rng, &latest, t, w);
		uint64_t op = rng_below(&rng, 10);
		if (op == 0) {
			cr_assert_eq(sluice_window_counter_cancel(&cell, &rc), counter_model_cancel(&m, &mrc));
		} else if (op == 1) {
			cr_assert_eq(sluice_window_counter_is_idle(&cell, &cfg, t),
				     counter_model_idle(&m, t));
		} else {
			uint64_t cost = rng_below(&rng, 8) == 0 ? rng_below(&rng, limit + 3)
								: rng_below(&rng, 3);
			bool a = sluice_window_counter_admit_receipt(&cell, &cfg, t, cost, &got, &rc);
			bool b = counter_model_admit(&m, t, cost, &want, &mrc);
			assert_same(&got, &want, "counter", step, t, cost);
			cr_assert_eq(a, b);
		}
	}
}

Test(window_counter, matches_the_reference_model_on_random_sequences)
{
	for (uint64_t seed = 1; seed <= 300; seed++)
		counter_against_model(seed);
}

/*
 * The documented bound, against the exact log run on the same arrivals:
 * in every window (t - W, t] ending at an admission, the counter admitted at
 * most limit + floor(p * e / W) units (p: its admissions in the previous
 * aligned window, e = t % W), hence < 2 * limit, and at most limit per
 * aligned window; the exact log never more than limit.
 */
Test(window_counter, stays_within_its_error_bound_of_the_exact_log)
{
	uint64_t worst_excess = 0, total_counter = 0, total_log = 0;

	for (uint64_t seed = 1; seed <= 100; seed++) {
		uint64_t rng = seed * 7919;
		uint64_t limit = 1 + rng_below(&rng, 20), w = 10 + rng_below(&rng, 1000);
		struct sluice_window_counter_config ccfg;
		struct sluice_window_counter cell;
		struct sluice_window_log_config lcfg;
		cr_assert_eq(sluice_window_counter_config_init(&ccfg, limit, w), SLUICE_OK);
		cr_assert_eq(sluice_window_log_config_init(&lcfg, limit, w), SLUICE_OK);
		sluice_window_counter_init(&cell);
		struct sluice_window_log *log = log_new(&lcfg);
		uint64_t at[2000], n = 0, t = w * 5;

		for (int arrival = 0; arrival < 2000; arrival++) {
			/* Bursty arrivals: pack some windows' ends. */
			uint64_t e = t % w;
			t += rng_below(&rng, 4) == 0 ? 0 : (e > w * 3 / 4 ? 1 : 1 + rng_below(&rng, w / 4));
			if (sluice_window_log_admit(log, &lcfg, t, 1, NULL))
				total_log++;
			if (!sluice_window_counter_admit(&cell, &ccfg, t, 1, NULL))
				continue;
			total_counter++;
			at[n++] = t;
			uint64_t k = t / w, in_window = 0, prev = 0, this_window = 0;
			for (uint64_t i = n; i-- > 0 && at[i] + 2 * w > t;) {
				in_window += at[i] + w > t;
				prev += at[i] / w + 1 == k;
				this_window += at[i] / w == k;
			}
			uint64_t bound = limit + prev * (t % w) / w;
			cr_assert_leq(in_window, bound, "seed %llu: %llu units in a window, bound %llu",
				      (unsigned long long)seed, (unsigned long long)in_window,
				      (unsigned long long)bound);
			cr_assert_lt(in_window, 2 * limit);
			cr_assert_leq(this_window, limit);
			if (in_window > limit && in_window - limit > worst_excess)
				worst_excess = in_window - limit;
		}
		free(log);
	}
	/* The sequences do reach past the exact limit (the bound is not idle)... */
	cr_assert_gt(worst_excess, 0u);
	/* ...and over whole runs the two admit comparable totals. */
	cr_assert_gt(total_counter, total_log / 2);
	cr_assert_lt(total_counter, total_log * 2);
}

/* =========================================================== calendar == */

Test(calendar, config_errors)
{
	struct sluice_calendar_config cfg = { .limit = 3, .window_ns = 3 };

	cr_assert_eq(sluice_calendar_config_init(NULL, 1, 1), SLUICE_EINVAL);
	cr_assert_eq(sluice_calendar_config_init(&cfg, 0, 1), SLUICE_EINVAL);
	cr_assert_eq(sluice_calendar_config_init(&cfg, 1, 0), SLUICE_EINVAL);
	cr_assert_eq(sluice_calendar_config_init(&cfg, (uint64_t)UINT32_MAX + 1, 1), SLUICE_ETOOBIG);
	cr_assert_eq(cfg.limit, 3u);
	cr_assert_eq(sluice_calendar_config_init(&cfg, UINT32_MAX, UINT64_MAX), SLUICE_OK);
}

Test(calendar, daily_quota_resets_at_utc_midnight)
{
	struct sluice_calendar_config cfg;
	struct sluice_calendar cell;
	struct sluice_decision d;
	const uint64_t midnight = 1795478400ull * SEC; /* 2026-11-24T00:00:00Z */

	cr_assert_eq(midnight % SLUICE_DAY_NS, 0u);
	cr_assert_eq(sluice_calendar_config_init(&cfg, 3, SLUICE_DAY_NS), SLUICE_OK);
	sluice_calendar_init(&cell);
	cr_assert(sluice_calendar_admit(&cell, &cfg, midnight - SLUICE_DAY_NS, 1, &d));
	cr_assert_eq(d.reset_ns, SLUICE_DAY_NS, "admitted exactly at the previous midnight");
	cr_assert(sluice_calendar_admit(&cell, &cfg, midnight - SLUICE_HOUR_NS, 2, &d));
	cr_assert_eq(d.remaining, 0u);
	cr_assert_eq(d.reset_ns, SLUICE_HOUR_NS);
	/* 23:59:59.999999999 */
	cr_assert_not(sluice_calendar_admit(&cell, &cfg, midnight - 1, 1, &d));
	cr_assert_eq(d.reason, SLUICE_REASON_QUOTA);
	cr_assert_eq(d.retry_after_ns, 1u);
	cr_assert_eq(d.reset_ns, 1u);
	/* 00:00:00.000000000 */
	cr_assert(sluice_calendar_admit(&cell, &cfg, midnight, 1, &d));
	cr_assert_eq(d.remaining, 2u);
	cr_assert_eq(d.reset_ns, SLUICE_DAY_NS);
	cr_assert(sluice_calendar_admit(&cell, &cfg, midnight + SLUICE_DAY_NS - 1, 2, &d));
	cr_assert_eq(d.reset_ns, 1u);
}

Test(calendar, minute_and_hour_edges)
{
	struct sluice_calendar_config cfg;
	struct sluice_calendar cell;
	struct sluice_decision d;
	const uint64_t t0 = 1795478400ull * SEC + 17 * SLUICE_HOUR_NS; /* 17:00:00Z */

	cr_assert_eq(sluice_calendar_config_init(&cfg, 1, SLUICE_MINUTE_NS), SLUICE_OK);
	sluice_calendar_init(&cell);
	cr_assert(sluice_calendar_admit(&cell, &cfg, t0 + 59 * SEC, 1, &d));
	cr_assert_eq(d.reset_ns, SEC);
	cr_assert_not(sluice_calendar_admit(&cell, &cfg, t0 + SLUICE_MINUTE_NS - 1, 1, &d));
	cr_assert(sluice_calendar_admit(&cell, &cfg, t0 + SLUICE_MINUTE_NS, 1, &d));
	cr_assert_eq(d.reset_ns, SLUICE_MINUTE_NS);

	cr_assert_eq(sluice_calendar_config_init(&cfg, 1000, SLUICE_HOUR_NS), SLUICE_OK);
	sluice_calendar_init(&cell);
	cr_assert(sluice_calendar_admit(&cell, &cfg, t0 + 30 * SLUICE_MINUTE_NS, 1000, &d));
	cr_assert_eq(d.reset_ns, 30 * SLUICE_MINUTE_NS);
	cr_assert_not(sluice_calendar_admit(&cell, &cfg, t0 + SLUICE_HOUR_NS - 1, 1, &d));
	cr_assert(sluice_calendar_admit(&cell, &cfg, t0 + SLUICE_HOUR_NS, 1000, &d));
}

Test(calendar, one_ns_year_and_end_of_clock_windows)
{
	struct sluice_calendar_config cfg;
	struct sluice_calendar cell;
	struct sluice_decision d;

	cr_assert_eq(sluice_calendar_config_init(&cfg, 2, 1), SLUICE_OK);
	sluice_calendar_init(&cell);
	uint64_t t = 1795478400ull * SEC + 3; /* window index far past 2^31 */
	cr_assert(sluice_calendar_admit(&cell, &cfg, t, 2, &d));
	cr_assert_eq(d.reset_ns, 1u);
	cr_assert_not(sluice_calendar_admit(&cell, &cfg, t, 1, &d));
	cr_assert_eq(d.retry_after_ns, 1u);
	cr_assert(sluice_calendar_admit(&cell, &cfg, t + 1, 2, &d));

	cr_assert_eq(sluice_calendar_config_init(&cfg, 5, YEAR_NS), SLUICE_OK);
	sluice_calendar_init(&cell);
	cr_assert(sluice_calendar_admit(&cell, &cfg, YEAR_NS - 1, 5, &d));
	cr_assert_eq(d.reset_ns, 1u);
	cr_assert(sluice_calendar_admit(&cell, &cfg, YEAR_NS, 5, &d));
	cr_assert_eq(d.reset_ns, YEAR_NS);
	/* The last window of the clock never ends. */
	sluice_calendar_init(&cell);
	cr_assert(sluice_calendar_admit(&cell, &cfg, UINT64_MAX - 10, 5, &d));
	cr_assert_eq(d.reset_ns, SLUICE_NEVER, "this window's end is past the clock's");
	cr_assert_not(sluice_calendar_admit(&cell, &cfg, UINT64_MAX, 1, &d));
	cr_assert_eq(d.retry_after_ns, SLUICE_NEVER);
	/* A window as long as the clock. */
	cr_assert_eq(sluice_calendar_config_init(&cfg, 1, UINT64_MAX), SLUICE_OK);
	sluice_calendar_init(&cell);
	cr_assert(sluice_calendar_admit(&cell, &cfg, 0, 1, &d));
	cr_assert_eq(d.reset_ns, UINT64_MAX);
}

Test(calendar, cost_zero_cost_over_limit_and_backwards_time)
{
	struct sluice_calendar_config cfg;
	struct sluice_calendar cell;
	struct sluice_decision d;

	cr_assert_eq(sluice_calendar_config_init(&cfg, 3, 100), SLUICE_OK);
	sluice_calendar_init(&cell);
	cr_assert(sluice_calendar_admit(&cell, &cfg, 250, 2, &d));
	uint64_t before = atomic_load(&cell.word);
	cr_assert(sluice_calendar_admit(&cell, &cfg, 250, 0, &d));
	cr_assert_eq(d.remaining, 1u);
	cr_assert_eq(atomic_load(&cell.word), before);
	cr_assert_not(sluice_calendar_admit(&cell, &cfg, 250, 4, &d));
	cr_assert_eq(d.retry_after_ns, SLUICE_NEVER);
	cr_assert_eq(d.reason, SLUICE_REASON_NEVER);
	/* Window 1 from a stale clock: counted in window 2, so window 2 never
	 * holds more than 3. */
	cr_assert(sluice_calendar_admit(&cell, &cfg, 150, 1, &d));
	cr_assert_eq(d.reset_ns, 150u);
	cr_assert_not(sluice_calendar_admit(&cell, &cfg, 199, 1, &d));
	cr_assert_not(sluice_calendar_admit(&cell, &cfg, 299, 1, &d));
	cr_assert(sluice_calendar_admit(&cell, &cfg, 300, 3, &d));
}

Test(calendar, receipts_and_is_idle)
{
	struct sluice_calendar_config cfg;
	struct sluice_calendar cell;
	struct sluice_calendar_receipt r1, r2;
	struct sluice_decision d;

	cr_assert_eq(sluice_calendar_config_init(&cfg, 5, 100), SLUICE_OK);
	sluice_calendar_init(&cell);
	cr_assert(sluice_calendar_is_idle(&cell, &cfg, 5));
	cr_assert(sluice_calendar_admit_receipt(&cell, &cfg, 150, 2, &d, &r1));
	cr_assert_not(sluice_calendar_is_idle(&cell, &cfg, 199));
	cr_assert_not(sluice_calendar_is_idle(&cell, &cfg, 50), "behind the cell's window");
	cr_assert(sluice_calendar_is_idle(&cell, &cfg, 200));
	cr_assert(sluice_calendar_admit_receipt(&cell, &cfg, 160, 1, &d, &r2));
	cr_assert_not(sluice_calendar_cancel(&cell, &r1));
	cr_assert(sluice_calendar_cancel(&cell, &r2));
	cr_assert(sluice_calendar_cancel(&cell, &r1));
	cr_assert(sluice_calendar_is_idle(&cell, &cfg, 150));
	cr_assert_not(sluice_calendar_cancel(&cell, &r1));
	cr_assert_not(sluice_calendar_cancel(&cell, NULL));
}

static void calendar_against_model(uint64_t seed)
{
	uint64_t rng = seed;
	uint64_t limit = 1 + rng_below(&rng, 12);
	uint64_t w = rng_below(&rng, 4) == 0 ? 1 + rng_below(&rng, 3) : 1 + rng_below(&rng, 1000);
	struct sluice_calendar_config cfg;
	struct sluice_calendar cell;
	struct sluice_calendar_receipt rc = { 0, 0 };
	struct calendar_model m;
	struct calendar_model_receipt mrc = { 0 };
	uint64_t t = rng_below(&rng, 1000), latest = t;

	cr_assert_eq(sluice_calendar_config_init(&cfg, limit, w), SLUICE_OK);
	sluice_calendar_init(&cell);
	calendar_model_init(&m, limit, w);
	for (uint64_t step = 0; step < 400; step++) {
		struct sluice_decision got, want;
		t = next_time(&rng, &latest, t, w);
		uint64_t op = rng_below(&rng, 10);
		if (op == 0) {
			cr_assert_eq(sluice_calendar_cancel(&cell, &rc), calendar_model_cancel(&m, &mrc));
		} else if (op == 1) {
			cr_assert_eq(sluice_calendar_is_idle(&cell, &cfg, t), calendar_model_idle(&m, t));
		} else {
			uint64_t cost = rng_below(&rng, 8) == 0 ? rng_below(&rng, limit + 3)
								: rng_below(&rng, 3);
			bool a = sluice_calendar_admit_receipt(&cell, &cfg, t, cost, &got, &rc);
			bool b = calendar_model_admit(&m, t, cost, &want, &mrc);
			assert_same(&got, &want, "calendar", step, t, cost);
			cr_assert_eq(a, b);
		}
	}
}

Test(calendar, matches_the_reference_model_on_random_sequences)
{
	for (uint64_t seed = 1; seed <= 300; seed++)
		calendar_against_model(seed);
}

Test(calendar, admit_now_uses_unix_time)
{
	struct sluice_calendar_config cfg;
	struct sluice_calendar cell;
	struct sluice_decision d;

	cr_assert_eq(sluice_calendar_config_init(&cfg, 1, SLUICE_DAY_NS), SLUICE_OK);
	sluice_calendar_init(&cell);
	uint64_t before = sluice_realtime_ns();
	cr_assert(sluice_calendar_admit_now(&cell, &cfg, 1, &d));
	uint64_t after = sluice_realtime_ns();
	/* reset = time to the next UTC midnight as seen between the reads. */
	uint64_t next_midnight = (before / SLUICE_DAY_NS + 1) * SLUICE_DAY_NS;
	cr_assert_leq(d.reset_ns, next_midnight - before);
	if (after < next_midnight)
		cr_assert_geq(d.reset_ns, next_midnight - after);
}
