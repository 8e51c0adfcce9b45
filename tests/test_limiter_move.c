/*
 * test_limiter_move.c - what callers meet in the middle of a move into an
 * inline slot (src/limiter/table.c, "Moving in"; docs/limiter.md, "Inline
 * slots"): the key's entry apart has its cell frozen (the value
 * TOMB_UNLINKED) and the slot holds the copy, not yet published. Whoever
 * meets the frozen cell must publish the copy and decide there; reading it
 * as a dead entry would unlink the key and start it fresh (a full bucket:
 * more admitted than the limit), and reading it as a state would deny
 * everything ("never").
 *
 * sluice__limiter_set_move_hook() stops every move right there,
 * deterministically, and runs the test's requests; each is compared with a
 * standalone GCRA cell fed the same requests (the model), field by field.
 * The moves stopped are a sweep's (of keys inserted while
 * sluice__limiter_hold_moves() kept their insertions from moving them) and
 * insertions' own. The last tests check what an insertion does when it
 * cannot take the lock, and the budget its move gives back.
 */
#include <pthread.h>
#include <sched.h>
#include <criterion/criterion.h>
#include <sluice.h>
#include <stdint.h>
#include <stdatomic.h>
#include <string.h>
#include <urcu.h> /* rcu_read_lock for the engine's internal API, rcu_barrier */

#include "limiter/limiter_internal.h"
#include "limit_util.h"

#define T0 (1000 * SEC)
#define NKEYS 8

static struct sluice_limit rate;
static struct sluice_gcra model[NKEYS];
static unsigned hooked; /* keys the hook ran for */

static void key_of(unsigned i, char k[16])
{
	memset(k, 'a' + (int)i, 16);
}

static unsigned index_of_key(const void *key, size_t len)
{
	cr_assert_eq(len, 16);
	return (unsigned)(((const unsigned char *)key)[0] - 'a');
}

static void same(const struct sluice_decision *d, const struct sluice_decision *m)
{
	cr_assert_eq(d->allowed, m->allowed);
	cr_assert_eq(d->reason, m->reason);
	cr_assert_eq(d->limit, m->limit);
	cr_assert_eq(d->remaining, m->remaining);
	cr_assert_eq(d->reset_ns, m->reset_ns);
	cr_assert_eq(d->retry_after_ns, m->retry_after_ns);
}

/* Admit key i with cost at now, on the limiter and on its model. */
static bool admit_both(struct sluice_limiter *lim, unsigned i, uint64_t cost, uint64_t now)
{
	char k[16];
	struct sluice_decision d, m;

	key_of(i, k);
	cr_assert_eq(sluice_limiter_admit(lim, k, sizeof k, cost, now, &d), SLUICE_OK);
	sluice_gcra_admit(&model[i], &rate.rate, now, cost, &m);
	same(&d, &m);
	return d.allowed;
}

/* 10 per day, burst 10: no refill within a test. Every key admitted three
 * times, its insertion kept from moving it; the test then sets its hook
 * and sweeps (sweep_and_finish()). */
static struct sluice_limiter *setup(void)
{
	struct sluice_limiter *lim = NULL;
	struct sluice_limiter_options o;

	memset(&o, 0, sizeof o);
	o.size = sizeof o;
	rate = gcra(10, 86400 * SEC, 10);
	cr_assert_eq(sluice_limiter_create(&lim, &rate, 1, &o), SLUICE_OK);
	sluice__limiter_hold_moves(lim, true);
	for (unsigned i = 0; i < NKEYS; i++) {
		sluice_gcra_init(&model[i]);
		for (int n = 0; n < 3; n++)
			cr_assert(admit_both(lim, i, 1, T0));
	}
	sluice__limiter_hold_moves(lim, false);
	hooked = 0;
	return lim;
}

static void sweep_and_finish(struct sluice_limiter *lim)
{
	size_t got = 99;
	cr_assert_eq(sluice_limiter_sweep(lim, T0, 1000, &got), SLUICE_OK);
	sluice__limiter_set_move_hook(NULL, NULL);
	cr_assert_eq(got, 0, "nothing idle");
	cr_assert_eq(hooked, NKEYS, "every key moved");
	rcu_barrier(); /* the entries apart are freed */
	struct sluice_limiter_stats s = { .size = sizeof s };
	cr_assert_eq(sluice_limiter_stats(lim, &s), SLUICE_OK);
	cr_assert_eq(s.bytes, 0, "every key inline");
	cr_assert_eq(s.live_keys, NKEYS);
}

/* Admissions in the middle of the move: each counts exactly once, and the
 * eleventh is refused. */
static void hook_admit(void *user, const void *key, size_t len)
{
	struct sluice_limiter *lim = user;
	unsigned i = index_of_key(key, len);

	hooked++;
	for (int n = 0; n < 7; n++)
		cr_assert(admit_both(lim, i, 1, T0), "key %u: admission %d of the 7 left", i, n);
	cr_assert_not(admit_both(lim, i, 1, T0), "key %u: the limit is spent", i);
}

Test(limiter_move, an_admission_finishes_the_move_it_meets_and_counts_once)
{
	struct sluice_limiter *lim = setup();
	sluice__limiter_set_move_hook(hook_admit, lim);
	sweep_and_finish(lim);
	for (unsigned i = 0; i < NKEYS; i++)
		cr_assert_not(admit_both(lim, i, 1, T0), "key %u after the move", i);
	struct sluice_limiter_stats s = { .size = sizeof s };
	sluice_limiter_stats(lim, &s);
	cr_assert_eq(s.admitted, NKEYS * 10);
	cr_assert_eq(s.inserted, NKEYS, "no key started over");
	sluice_limiter_destroy(lim);
}

/* A peek and the engine's dry run in the middle of the move read the key's
 * state (7 left), not a full bucket and not "never". */
static void hook_read(void *user, const void *key, size_t len)
{
	struct sluice_limiter *lim = user;
	unsigned i = index_of_key(key, len);
	struct sluice_decision d, m;

	hooked++;
	/* Even keys: the dry run meets the frozen cell first; odd: the peek. */
	if (i % 2 == 0) {
		rcu_read_lock();
		cr_assert_not(sluice__limiter_check(lim, key, len, 8, T0, &d, NULL), "8 do not fit in 7");
		cr_assert(sluice__limiter_check(lim, key, len, 7, T0, &d, NULL));
		rcu_read_unlock();
	}
	cr_assert_eq(sluice_limiter_peek(lim, key, len, T0, &d), SLUICE_OK);
	sluice_gcra_admit(&model[i], &rate.rate, T0, 0, &m);
	same(&d, &m);
	cr_assert_eq(d.remaining, 7);
	rcu_read_lock();
	cr_assert_not(sluice__limiter_check(lim, key, len, 8, T0, &d, NULL), "8 do not fit in 7");
	cr_assert(sluice__limiter_check(lim, key, len, 7, T0, &d, NULL));
	rcu_read_unlock();
}

Test(limiter_move, a_peek_and_a_dry_run_in_the_middle_read_the_state)
{
	struct sluice_limiter *lim = setup();
	sluice__limiter_set_move_hook(hook_read, lim);
	sweep_and_finish(lim);
	for (unsigned i = 0; i < NKEYS; i++)
		cr_assert(admit_both(lim, i, 7, T0), "key %u: its 7 after the move", i);
	sluice_limiter_destroy(lim);
}

/* The engine's reserve in the middle of the move decides on the slot it
 * publishes, and its cancel there (same read-side section) gives the unit
 * back. */
static void hook_reserve(void *user, const void *key, size_t len)
{
	struct sluice_limiter *lim = user;
	struct sluice__limiter_hold hold;
	struct sluice_decision d;

	hooked++;
	rcu_read_lock();
	sluice__limiter_reserve(lim, key, len, NULL, 1, T0, &d, &hold);
	cr_assert(d.allowed);
	cr_assert_eq(d.remaining, 6);
	sluice__limiter_cancel(lim, &hold);
	rcu_read_unlock();
	cr_assert_eq(sluice_limiter_peek(lim, key, len, T0, &d), SLUICE_OK);
	cr_assert_eq(d.remaining, 7, "the cancel popped the admission on the slot");
}

Test(limiter_move, a_reserve_in_the_middle_decides_on_the_slot_and_cancels_there)
{
	struct sluice_limiter *lim = setup();
	sluice__limiter_set_move_hook(hook_reserve, lim);
	sweep_and_finish(lim);
	for (unsigned i = 0; i < NKEYS; i++) {
		cr_assert(admit_both(lim, i, 7, T0));
		cr_assert_not(admit_both(lim, i, 1, T0));
	}
	sluice_limiter_destroy(lim);
}

/* A batch in the middle of the move: every request of the batch on the
 * moving key decides in order, once each. */
static void hook_batch(void *user, const void *key, size_t len)
{
	struct sluice_limiter *lim = user;
	unsigned i = index_of_key(key, len);
	struct sluice_limiter_request r[9];
	struct sluice_decision d[9], m;

	hooked++;
	for (int n = 0; n < 9; n++) {
		r[n].key = key;
		r[n].key_len = len;
		r[n].cost = 1;
	}
	cr_assert_eq(sluice_limiter_admit_batch(lim, r, 9, T0, d), SLUICE_OK);
	for (int n = 0; n < 9; n++) {
		sluice_gcra_admit(&model[i], &rate.rate, T0, 1, &m);
		same(&d[n], &m);
		cr_assert_eq(d[n].allowed, n < 7);
	}
}

Test(limiter_move, a_batch_in_the_middle_admits_exactly_what_is_left)
{
	struct sluice_limiter *lim = setup();
	sluice__limiter_set_move_hook(hook_batch, lim);
	sweep_and_finish(lim);
	for (unsigned i = 0; i < NKEYS; i++)
		cr_assert_not(admit_both(lim, i, 1, T0));
	sluice_limiter_destroy(lim);
}

/* ---- the insertion's own move ---- */

static struct sluice_limiter *fresh(uint64_t max_bytes)
{
	struct sluice_limiter *lim = NULL;
	struct sluice_limiter_options o;

	memset(&o, 0, sizeof o);
	o.size = sizeof o;
	o.max_bytes = max_bytes;
	o.fail_mode = SLUICE_FAIL_CLOSED;
	rate = gcra(10, 86400 * SEC, 10);
	cr_assert_eq(sluice_limiter_create(&lim, &rate, 1, &o), SLUICE_OK);
	for (unsigned i = 0; i < NKEYS; i++)
		sluice_gcra_init(&model[i]);
	hooked = 0;
	return lim;
}

static struct sluice_limiter_stats stats_of(struct sluice_limiter *lim)
{
	struct sluice_limiter_stats s = { .size = sizeof s };
	cr_assert_eq(sluice_limiter_stats(lim, &s), SLUICE_OK);
	return s;
}

/* In the middle of a new key's move by its own insertion (before the
 * inserting admission decides): a peek reads a full bucket, four
 * admissions count once each, and the inserting admission decides after
 * them on the slot. */
static void hook_new(void *user, const void *key, size_t len)
{
	struct sluice_limiter *lim = user;
	unsigned i = index_of_key(key, len);
	struct sluice_decision d, m;

	hooked++;
	cr_assert_eq(sluice_limiter_peek(lim, key, len, T0, &d), SLUICE_OK);
	sluice_gcra_admit(&model[i], &rate.rate, T0, 0, &m);
	same(&d, &m);
	cr_assert_eq(d.remaining, 10);
	for (int n = 0; n < 4; n++)
		cr_assert(admit_both(lim, i, 1, T0));
}

Test(limiter_move, an_insertion_moves_its_key_and_admissions_in_the_middle_count_once)
{
	struct sluice_limiter *lim = fresh(0);
	sluice__limiter_set_move_hook(hook_new, lim);
	for (unsigned i = 0; i < NKEYS; i++) {
		cr_assert(admit_both(lim, i, 2, T0), "key %u: the inserting admission", i);
		cr_assert_eq(hooked, i + 1, "key %u moved by its insertion", i);
	}
	sluice__limiter_set_move_hook(NULL, NULL);
	rcu_barrier();
	struct sluice_limiter_stats s = stats_of(lim);
	cr_assert_eq(s.bytes, 0, "every key inline without a sweep");
	cr_assert_eq(s.inserted, NKEYS);
	cr_assert_eq(s.admitted, NKEYS * 5);
	for (unsigned i = 0; i < NKEYS; i++) {
		cr_assert(admit_both(lim, i, 4, T0), "key %u: its 4 left", i);
		cr_assert_not(admit_both(lim, i, 1, T0), "key %u: spent", i);
	}
	sluice_limiter_destroy(lim);
}

/* Another thread holds resize_lock (as a resize, a sweep's moves or a
 * snapshot walk would). */
static _Atomic int holder_state; /* 0 start, 1 holding, 2 release */

static void *holder_main(void *arg)
{
	struct sluice_limiter *lim = arg;

	sluice__limiter_hold_moves(lim, true);
	/* seq_cst: a test handshake, not a hot path. */
	atomic_store_explicit(&holder_state, 1, memory_order_seq_cst); /* seq_cst: why above */
	while (atomic_load_explicit(&holder_state, memory_order_seq_cst) != 2) /* seq_cst: as above */
		sched_yield();
	sluice__limiter_hold_moves(lim, false);
	return NULL;
}

Test(limiter_move, an_insertion_that_finds_the_lock_taken_leaves_the_key_to_the_sweep)
{
	struct sluice_limiter *lim = fresh(0);
	pthread_t th;

	sluice__limiter_set_move_hook(hook_admit, lim);
	atomic_store_explicit(&holder_state, 0, memory_order_seq_cst); /* seq_cst: a test handshake */
	cr_assert_eq(pthread_create(&th, NULL, holder_main, lim), 0);
	while (atomic_load_explicit(&holder_state, memory_order_seq_cst) != 1) /* seq_cst: as above */
		sched_yield();
	for (unsigned i = 0; i < NKEYS; i++)
		for (int n = 0; n < 3; n++)
			cr_assert(admit_both(lim, i, 1, T0));
	cr_assert_eq(hooked, 0, "no insertion moved its key");
	rcu_barrier();
	cr_assert_eq(stats_of(lim).bytes, NKEYS * 56, "every key apart: 24 + 8 + 8 + 16 bytes");
	atomic_store_explicit(&holder_state, 2, memory_order_seq_cst); /* seq_cst: as above */
	cr_assert_eq(pthread_join(th, NULL), 0);
	sweep_and_finish(lim); /* the sweep moves them, admissions in the middle */
	for (unsigned i = 0; i < NKEYS; i++)
		cr_assert_not(admit_both(lim, i, 1, T0), "key %u after the move", i);
	cr_assert_eq(stats_of(lim).inserted, NKEYS);
	sluice_limiter_destroy(lim);
}

/* The move by an insertion gives the entry's bytes back after the grace
 * period, without a sweep: a new 16-byte key is charged 56 + 64, and a
 * budget of 2 * 120 - 1 fits a second one only once the first key's 56
 * bytes apart are back, not a third. */
Test(limiter_move, an_insertion_move_gives_the_bytes_back_to_the_budget)
{
	struct sluice_limiter *lim = fresh(2 * 120 - 1);
	struct sluice_decision d;
	char k[16];

	cr_assert(admit_both(lim, 0, 1, T0));
	rcu_barrier();
	cr_assert(admit_both(lim, 1, 1, T0), "64 + 120 fits");
	rcu_barrier();
	key_of(2, k);
	cr_assert_eq(sluice_limiter_admit(lim, k, sizeof k, 1, T0, &d), SLUICE_OK);
	cr_assert(d.degraded, "2 * 64 + 120 does not");
	cr_assert_not(d.allowed);
	struct sluice_limiter_stats s = stats_of(lim);
	cr_assert_eq(s.bytes, 0);
	cr_assert_eq(s.live_keys, 2);
	sluice_limiter_destroy(lim);
}
