/*
 * test_window_log_shared.c - the sliding log's shared mode
 * (cells/window_internal.h, "Shared use"): a claim left by a dead writer
 * (with seq left odd, or not) is taken over once stale, and only then; a
 * live holder is waited for; the broken lock leaves a consistent log; the
 * pops-only cancel.
 */
#include <criterion/criterion.h>
#include <sluice.h>

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "cells/window_internal.h"

#define MS 1000000ull
#define SEC 1000000000ull
#define STALE (100 * MS)

struct shared_log {
	_Atomic uint64_t claim;
	struct sluice_window_log_config cfg;
	struct sluice_window_log *cell;
};

static struct shared_log *mk(uint64_t limit, uint64_t window_ns)
{
	struct shared_log *l = calloc(1, sizeof *l);
	cr_assert_eq(sluice_window_log_config_init(&l->cfg, limit, window_ns), SLUICE_OK);
	l->cell = aligned_alloc(64, (sluice_window_log_size(&l->cfg) + 63) / 64 * 64);
	sluice_window_log_init(l->cell, &l->cfg);
	return l;
}

static void rm(struct shared_log *l)
{
	free(l->cell);
	free(l);
}

static bool adm(struct shared_log *l, uint64_t t, uint64_t cost, struct sluice__window_log_receipt *r)
{
	struct sluice_decision d;
	return sluice__window_log_admit_shared(l->cell, &l->claim, STALE, &l->cfg, t, cost, &d, r);
}

/* What a writer killed inside its critical section leaves: its claim,
 * taken at `at`, and seq odd. */
static void die_inside(struct shared_log *l, uint64_t at)
{
	atomic_store(&l->claim, at | 1);
	atomic_fetch_add(&l->cell->seq, 1);
}

Test(window_log_shared, admits_and_pops_like_the_cell)
{
	struct shared_log *l = mk(3, SEC);
	struct sluice__window_log_receipt r;
	cr_assert(adm(l, 10, 2, &r));
	cr_assert_eq(atomic_load(&l->claim), 0, "the claim is released");
	cr_assert(sluice__window_log_cancel_shared(l->cell, &l->claim, STALE, &r));
	cr_assert(adm(l, 11, 3, NULL));
	cr_assert_not(adm(l, 12, 1, NULL));
	cr_assert(adm(l, 11 + SEC, 1, NULL));
	rm(l);
}

/* A cancel after another write keeps its units (conservative), never
 * rewrites the ring. */
Test(window_log_shared, cancel_after_another_write_keeps_the_units)
{
	struct shared_log *l = mk(3, SEC);
	struct sluice__window_log_receipt r;
	cr_assert(adm(l, 10, 1, &r));
	cr_assert(adm(l, 11, 1, NULL));
	cr_assert_not(sluice__window_log_cancel_shared(l->cell, &l->claim, STALE, &r));
	cr_assert(adm(l, 12, 1, NULL));
	cr_assert_not(adm(l, 13, 1, NULL), "three units stay counted");
	rm(l);
}

Test(window_log_shared, dead_writer_inside_is_taken_over_after_the_bound)
{
	struct shared_log *l = mk(2, SEC);
	cr_assert(adm(l, 10, 1, NULL));
	uint64_t t0 = sluice_monotonic_ns();
	die_inside(l, t0);
	cr_assert(adm(l, 20, 1, NULL), "the key admits again");
	uint64_t waited = sluice_monotonic_ns() - t0;
	cr_assert_geq(waited, STALE, "a claim younger than the bound is never broken (%llu ns)",
		      (unsigned long long)waited);
	cr_assert_lt(waited, STALE + 500 * MS);
	cr_assert_eq(atomic_load(&l->cell->seq) & 1, 0);
	cr_assert_eq(atomic_load(&l->claim), 0);
	/* The dead writer's unit was never published: two units, the log full. */
	cr_assert_not(adm(l, 30, 1, NULL));
	rm(l);
}

/* A dead writer that had published pos: its unit counts. */
Test(window_log_shared, dead_writer_after_publish_counts_its_units)
{
	struct shared_log *l = mk(2, SEC);
	uint64_t t0 = sluice_monotonic_ns();
	cr_assert(adm(l, 10, 1, NULL));
	atomic_store(&l->cell->seq, atomic_load(&l->cell->seq) - 1); /* before its unlock */
	atomic_store(&l->claim, (t0 - STALE) | 1);                     /* already stale */
	cr_assert(adm(l, 20, 1, NULL));
	cr_assert_not(adm(l, 30, 1, NULL), "both units count");
	rm(l);
}

/* Dead outside the seq lock (claim only): taken over, nothing to break. */
Test(window_log_shared, dead_claim_holder_outside_the_lock)
{
	struct shared_log *l = mk(2, SEC);
	atomic_store(&l->claim, (sluice_monotonic_ns() - 2 * STALE) | 1);
	uint64_t seq = atomic_load(&l->cell->seq);
	cr_assert(adm(l, 10, 1, NULL));
	cr_assert_eq(atomic_load(&l->cell->seq), seq + 2, "one lock and unlock, no break");
	rm(l);
}

/* Denials and peeks never wait for a claim. */
Test(window_log_shared, denials_do_not_wait)
{
	struct shared_log *l = mk(1, SEC);
	cr_assert(adm(l, 10, 1, NULL));
	die_inside(l, sluice_monotonic_ns());
	uint64_t t0 = sluice_monotonic_ns();
	cr_assert_not(adm(l, 20, 1, NULL));
	cr_assert(adm(l, 20, 0, NULL));
	cr_assert_lt(sluice_monotonic_ns() - t0, STALE / 2);
	rm(l);
}

struct holder {
	struct shared_log *l;
	uint64_t hold_ns;
};

static void *hold_then_release(void *arg)
{
	struct holder *h = arg;
	struct timespec ts = { 0, (long)h->hold_ns };
	nanosleep(&ts, NULL);
	atomic_store(&h->l->cell->seq, atomic_load(&h->l->cell->seq) + 1);
	atomic_store(&h->l->claim, 0);
	return NULL;
}

/* A live holder (below the bound) is waited for, not broken: the waiter
 * admits after its release, and seq advanced by the holder's unlock and
 * the waiter's write only. */
Test(window_log_shared, live_holder_is_waited_for)
{
	struct shared_log *l = mk(2, SEC);
	struct holder h = { l, STALE / 2 };
	uint64_t seq = atomic_load(&l->cell->seq);
	die_inside(l, sluice_monotonic_ns()); /* taken, not dead */
	pthread_t th;
	pthread_create(&th, NULL, hold_then_release, &h);
	uint64_t t0 = sluice_monotonic_ns();
	cr_assert(adm(l, 10, 1, NULL));
	cr_assert_geq(sluice_monotonic_ns() - t0, STALE / 2 - 5 * MS);
	pthread_join(th, NULL);
	cr_assert_eq(atomic_load(&l->cell->seq), seq + 4);
	rm(l);
}

Test(window_log_shared, break_needs_the_observed_odd_seq)
{
	struct shared_log *l = mk(2, SEC);
	cr_assert_not(sluice__window_log_break(l->cell, 0), "even: nothing to break");
	atomic_store(&l->cell->seq, 5);
	cr_assert_not(sluice__window_log_break(l->cell, 3), "seq moved on");
	cr_assert(sluice__window_log_break(l->cell, 5));
	cr_assert_eq(atomic_load(&l->cell->seq), 6);
	rm(l);
}
