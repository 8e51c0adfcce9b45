/*
 * test_limiter_cancel.c - a refused request consumes nothing, under
 * interleavings played deterministically through the limiter's commit hook
 * (sluice__limiter_set_commit_hook(), limiter_internal.h): request A
 * reserves its first limit, request B lands on every limit, A's later limit
 * refuses, A cancels. Each counting kind's cancel is exact whatever landed
 * since, so the first limit must then hold B's unit and nothing of A's
 * (docs/limiter.md, "Refused requests"). The same for the engine's
 * reserve/cancel on one-limit limiters, and GCRA's documented loss.
 */
#include <criterion/criterion.h>
#include <sluice.h>
#include <string.h>

#include <urcu.h> /* rcu_read_lock for the engine's internal API */

#include "limiter/limiter_internal.h"
#include "limit_util.h"

#define DAY (86400 * SEC)
#define T0 (1000 * DAY) /* the start of a day, a minute, a second */
#define ROOM 6u         /* units of the first limit */

static struct sluice_limiter *make(const struct sluice_limit *l, size_t n)
{
	struct sluice_limiter *lim = NULL;
	cr_assert_eq(sluice_limiter_create(&lim, l, n, NULL), SLUICE_OK);
	return lim;
}

static bool is_slots(const struct sluice_limit *l)
{
	return l->kind == SLUICE_LIMIT_SLOTS;
}

/* One request of one unit: acquire for a slots policy, admit otherwise. */
static bool request(struct sluice_limiter *lim, bool slots, uint64_t now, struct sluice_decision *d)
{
	sluice_slot_handle h;
	if (slots)
		cr_assert_eq(sluice_limiter_acquire(lim, "k", 1, 1, now, d, &h), SLUICE_OK);
	else
		cr_assert_eq(sluice_limiter_admit(lim, "k", 1, 1, now, d), SLUICE_OK);
	return d->allowed;
}

/* B: lands in the middle of A's commit. */
static struct sluice_limiter *hook_lim;
static bool hook_slots, hook_armed, hook_b_allowed;
static uint32_t hook_first;
static uint64_t hook_now;

static void land_b(void *user, uint32_t limit_index)
{
	(void)user;
	if (!hook_armed || limit_index != hook_first)
		return;
	hook_armed = false; /* B's own commits call us too */
	struct sluice_decision d;
	hook_b_allowed = request(hook_lim, hook_slots, hook_now, &d);
}

/* Units the first limit (index `first`) still admits: one request per
 * `step` (after which the tight limit has room again), until the first
 * limit is the one that refuses. */
static uint64_t units_left(struct sluice_limiter *lim, bool slots, uint32_t first, uint64_t now,
			   uint64_t step)
{
	for (uint64_t n = 0; n < 4 * ROOM; n++) {
		struct sluice_decision d;
		if (!request(lim, slots, now + (n + 1) * step, &d)) {
			cr_assert_eq(d.limit_index, first, "refused by the first limit");
			return n;
		}
	}
	cr_assert_fail("the first limit never refused");
	return 0;
}

/* `first` (ROOM units) is committed before the tight GCRA limit (1 a
 * second, burst 1, cell 0, committed last). */
static void refused_by_a_later_limit_takes_nothing(struct sluice_limit first, bool first_at_0)
{
	struct sluice_limit tight = gcra(1, SEC, 1);
	struct sluice_limit l[2];
	uint32_t fi = first_at_0 ? 0 : 1;
	l[fi] = first;
	l[1 - fi] = tight;
	struct sluice_limiter *lim = make(l, 2);
	struct sluice_decision d;

	hook_lim = lim;
	hook_slots = is_slots(&first);
	hook_first = fi;
	hook_now = T0;
	hook_armed = true;
	hook_b_allowed = false;
	sluice__limiter_set_commit_hook(land_b, NULL);
	/* A passes its dry run (both limits have room), commits `first`, then
	 * B takes a unit of both, then A's GCRA commit refuses: A cancels. */
	cr_assert_not(request(lim, hook_slots, T0, &d), "A refused by the later limit");
	sluice__limiter_set_commit_hook(NULL, NULL);
	cr_assert_not(hook_armed, "B landed inside A's commit");
	cr_assert(hook_b_allowed, "B admitted");
	cr_assert_eq(d.limit_index, 1 - fi, "the GCRA limit refused");
	cr_assert_eq(units_left(lim, hook_slots, fi, T0, SEC), ROOM - 1,
		     "the first limit holds B's unit and nothing of A's");
	sluice_limiter_destroy(lim);
}

Test(limiter_cancel, counter_then_refusing_gcra_keeps_nothing)
{
	refused_by_a_later_limit_takes_nothing(counter(ROOM, MIN), true);
	refused_by_a_later_limit_takes_nothing(counter(ROOM, MIN), false);
}

Test(limiter_cancel, calendar_then_refusing_gcra_keeps_nothing)
{
	refused_by_a_later_limit_takes_nothing(calendar(ROOM, DAY), true);
	refused_by_a_later_limit_takes_nothing(calendar(ROOM, DAY), false);
}

Test(limiter_cancel, sliding_log_then_refusing_gcra_keeps_nothing)
{
	refused_by_a_later_limit_takes_nothing(slog(ROOM, MIN), true);
	refused_by_a_later_limit_takes_nothing(slog(ROOM, MIN), false);
}

Test(limiter_cancel, slots_then_refusing_gcra_keeps_nothing)
{
	refused_by_a_later_limit_takes_nothing(slots_retry(ROOM, 0, SEC), true);
}

/* Without GCRA: a one-word calendar of 1 a minute is cell 0 (committed
 * last); the sliding log and the counter before it are cancelled exactly. */
Test(limiter_cancel, window_cell_0_refusal_cancels_the_others_exactly)
{
	struct sluice_limit l[3] = { slog(ROOM, DAY), calendar(1, MIN), counter(ROOM, DAY) };
	struct sluice_limiter *lim = make(l, 3);
	struct sluice_decision d;

	hook_lim = lim;
	hook_slots = false;
	hook_first = 0; /* after the log's commit (the counter's comes next) */
	hook_now = T0;
	hook_armed = true;
	hook_b_allowed = false;
	sluice__limiter_set_commit_hook(land_b, NULL);
	cr_assert_not(request(lim, false, T0, &d));
	sluice__limiter_set_commit_hook(NULL, NULL);
	cr_assert_not(hook_armed);
	cr_assert(hook_b_allowed);
	cr_assert_eq(d.limit_index, 1, "the calendar refused");
	/* One request a minute: the log and the counter (both ROOM a day)
	 * admit ROOM - 1 more (the log, first in the caller's order, reports
	 * the refusal). */
	cr_assert_eq(units_left(lim, false, 0, T0, MIN), ROOM - 1);
	sluice_limiter_destroy(lim);
}

/* ---- the engine's reserve/cancel on one-limit limiters ---- */

/* A reserves, B lands, A cancels: a counting kind gives back exactly A's
 * unit. */
static void reserve_land_cancel(struct sluice_limit l, uint64_t expect_left)
{
	struct sluice_limiter *lim = make(&l, 1);
	struct sluice__limiter_hold a;
	struct sluice_decision d;
	bool slots = is_slots(&l);

	cr_assert_eq(sluice__limiter_thread_enter(lim), SLUICE_OK);
	rcu_read_lock();
	cr_assert_eq(sluice__limiter_reserve(lim, "k", 1, NULL, 1, T0, &d, &a), 0);
	cr_assert(d.allowed);
	cr_assert(request(lim, slots, T0, &d), "B");
	sluice__limiter_cancel(lim, &a);
	rcu_read_unlock();
	cr_assert_eq(sluice_limiter_peek(lim, "k", 1, T0, &d), SLUICE_OK);
	cr_assert_eq(d.remaining, expect_left);
	sluice_limiter_destroy(lim);
}

Test(limiter_cancel, engine_cancel_is_exact_for_every_counting_kind)
{
	reserve_land_cancel(counter(ROOM, MIN), ROOM - 1);
	reserve_land_cancel(calendar(ROOM, DAY), ROOM - 1);
	reserve_land_cancel(slog(ROOM, MIN), ROOM - 1);
	reserve_land_cancel(slots_retry(ROOM, 0, SEC), ROOM - 1);
}

/* GCRA: a refill a full bucket wasted cannot be returned, so its cancel
 * pops only while nothing landed since; otherwise A's unit stays (never
 * more taken than that; never over-admits). Hence the engine reserves such
 * limiters last (sluice__limiter_cancel_is_exact()). */
Test(limiter_cancel, gcra_cancel_after_another_landing_keeps_the_unit)
{
	reserve_land_cancel(gcra(ROOM, MIN, ROOM), ROOM - 2);
}

Test(limiter_cancel, cancel_is_exact_tells_the_engine_which_to_reserve_last)
{
	struct sluice_limit one[5] = { counter(ROOM, MIN), calendar(ROOM, DAY), slog(ROOM, MIN),
				       slots_retry(ROOM, 0, SEC), gcra(ROOM, MIN, ROOM) };
	for (int i = 0; i < 5; i++) {
		struct sluice_limiter *lim = make(&one[i], 1);
		cr_assert_eq(sluice__limiter_cancel_is_exact(lim), i < 4, "kind %d", i);
		sluice_limiter_destroy(lim);
	}
	struct sluice_limit two[2] = { slog(ROOM, MIN), slots_retry(ROOM, 0, SEC) };
	struct sluice_limiter *lim = make(two, 2);
	cr_assert(sluice__limiter_cancel_is_exact(lim), "COMMIT word + exact cells");
	sluice_limiter_destroy(lim);
	struct sluice_limit cal2[2] = { calendar(ROOM, DAY), counter(ROOM, MIN) };
	lim = make(cal2, 2);
	cr_assert_not(sluice__limiter_cancel_is_exact(lim), "a limit in cell 0 keeps its units");
	sluice_limiter_destroy(lim);
}

Test(limiter_cancel, check_is_a_dry_run_that_writes_nothing)
{
	struct sluice_limit l[2] = { calendar(2, DAY), gcra(10, SEC, 10) };
	struct sluice_limiter *lim = make(l, 2);
	struct sluice_decision d;

	cr_assert_eq(sluice__limiter_thread_enter(lim), SLUICE_OK);
	rcu_read_lock();
	cr_assert(sluice__limiter_check(lim, "k", 1, 2, T0, &d, NULL), "unknown key: full");
	cr_assert_not(sluice__limiter_check(lim, "k", 1, 3, T0, &d, NULL), "more than the quota");
	cr_assert_eq(d.limit_index, 0);
	rcu_read_unlock();
	cr_assert(request(lim, false, T0, &d));
	rcu_read_lock();
	cr_assert(sluice__limiter_check(lim, "k", 1, 1, T0, &d, NULL));
	cr_assert_eq(d.remaining, 0, "after it, the calendar's last unit");
	cr_assert_not(sluice__limiter_check(lim, "k", 1, 2, T0, &d, NULL));
	cr_assert_eq(d.limit_index, 0);
	cr_assert_eq(d.reason, SLUICE_REASON_QUOTA);
	rcu_read_unlock();
	cr_assert(request(lim, false, T0, &d), "the checks took nothing");
	cr_assert_not(request(lim, false, T0, &d));
	sluice_limiter_destroy(lim);
}

/* Two GCRA limits: the deeper bucket is cell 0 (committed last), the
 * shallower one, the likelier to refuse, is committed first, so that a
 * refusal under contention comes before anything was reserved (the
 * contended benchmark: docs/benchmarks.md). */
static uint32_t first_committed = UINT32_MAX;

static void note_first(void *user, uint32_t limit_index)
{
	(void)user;
	if (first_committed == UINT32_MAX)
		first_committed = limit_index;
}

Test(limiter_cancel, gcra_pair_commits_the_shallower_bucket_first)
{
	struct sluice_limit l[3] = { gcra(1000, DAY, 1000), calendar(ROOM, DAY), gcra(1, SEC, 1) };
	struct sluice_limiter *lim = make(l, 3);
	struct sluice_decision d;

	sluice__limiter_set_commit_hook(note_first, NULL);
	cr_assert(request(lim, false, T0, &d));
	sluice__limiter_set_commit_hook(NULL, NULL);
	cr_assert_eq(first_committed, 1, "the calendar (exact cancel) first");
	/* The per-second limit refuses the next request (in its dry run). */
	cr_assert_not(request(lim, false, T0, &d));
	cr_assert_eq(d.limit_index, 2);
	sluice_limiter_destroy(lim);

	struct sluice_limit g[2] = { gcra(1000, DAY, 1000), gcra(1, SEC, 1) };
	lim = make(g, 2);
	first_committed = UINT32_MAX;
	sluice__limiter_set_commit_hook(note_first, NULL);
	cr_assert(request(lim, false, T0, &d));
	sluice__limiter_set_commit_hook(NULL, NULL);
	cr_assert_eq(first_committed, 1, "the shallow bucket before the deep one (cell 0)");
	sluice_limiter_destroy(lim);
}
