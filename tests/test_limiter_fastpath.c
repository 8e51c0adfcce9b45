/*
 * test_limiter_fastpath.c - the cases sluice_limiter_admit()'s fast path
 * (src/limiter/decide.c: one GCRA limit, a key of at most 16 bytes live in
 * its home group, a registered thread, cost > 0) leaves to the general
 * path: a key found beyond its home group, a key longer than 16 bytes, a
 * new key, a reclaimed key, an unregistered thread, a peek, two limits and
 * bad arguments. Each decides field by field as a standalone GCRA cell and
 * is counted exactly once in the statistics.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sluice.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "limiter/limiter_internal.h"
#include "limit_util.h"

static struct sluice_limiter *make(const struct sluice_limit *l, size_t n)
{
	struct sluice_limiter *lim = NULL;

	cr_assert_eq(sluice_limiter_create(&lim, l, n, NULL), SLUICE_OK);
	return lim;
}

static struct sluice_limiter_stats stats_of(struct sluice_limiter *lim)
{
	struct sluice_limiter_stats s;

	memset(&s, 0, sizeof s);
	s.size = sizeof s;
	cr_assert_eq(sluice_limiter_stats(lim, &s), SLUICE_OK);
	return s;
}

static void assert_same_decision(const struct sluice_decision *got,
				 const struct sluice_decision *want, int step)
{
	cr_assert_eq(got->allowed, want->allowed, "step %d", step);
	cr_assert_eq(got->reason, want->reason, "step %d", step);
	cr_assert_eq(got->limit, want->limit, "step %d", step);
	cr_assert_eq(got->remaining, want->remaining, "step %d", step);
	cr_assert_eq(got->reset_ns, want->reset_ns, "step %d", step);
	cr_assert_eq(got->retry_after_ns, want->retry_after_ns, "step %d", step);
	cr_assert_eq(got->limit_index, 0, "step %d", step);
	cr_assert_not(got->degraded, "step %d", step);
}

#define NKEYS 40

/* Key i: `len` bytes, distinct for every i (its last two bytes). */
static size_t key_of(char *buf, int i, size_t len)
{
	memset(buf, 'k', len);
	if (len >= 1)
		buf[len - 1] = (char)('A' + i % 64);
	if (len >= 2)
		buf[len - 2] = (char)('A' + i / 64);
	return len;
}

/* Rounds over NKEYS keys of `len` bytes (key i every round, times rising
 * faster than the rate refills: both admissions and denials), each against its own standalone cell; returns the
 * admissions and denials seen. */
static void run_against_cells(struct sluice_limiter *lim, const struct sluice_limit *l, size_t len,
			      uint64_t *admitted, uint64_t *denied)
{
	struct sluice_gcra cell[NKEYS];
	struct sluice_decision got, want;
	char key[64];
	uint64_t now = 5 * SEC;

	for (int i = 0; i < NKEYS; i++)
		sluice_gcra_init(&cell[i]);
	for (int step = 0; step < 20 * NKEYS; step++) {
		int i = len == 0 ? 0 : step % NKEYS; /* the empty key: one key */
		uint64_t cost = 1 + (uint64_t)(step % 3 == 0);
		key_of(key, i, len);
		now += SEC / 1000;
		cr_assert_eq(sluice_limiter_admit(lim, key, len, cost, now, &got), SLUICE_OK);
		bool ok = sluice_gcra_admit(&cell[i], &l->rate, now, cost, &want);
		cr_assert_eq(got.allowed, ok, "step %d", step);
		assert_same_decision(&got, &want, step);
		*(ok ? admitted : denied) += 1;
	}
}

/* One hash for every key (mask 0): the first eight fill the home group, the
 * others live beyond it, where the fast path's home-group probe ends
 * without them (and every key shares the tag, so the probe compares keys);
 * all decide as their cells, and the statistics count each once. */
Test(limiter_fastpath, keys_beyond_their_home_group_decide_as_standalone_cells)
{
	struct sluice_limit l = gcra(5, SEC, 3);
	struct sluice_limiter *lim = NULL;
	uint64_t admitted = 0, denied = 0;

	cr_assert_eq(sluice_limiter_create(&lim, &l, 1, NULL), SLUICE_OK);
	sluice__limiter_set_hash_mask(lim, 0);
	run_against_cells(lim, &l, 8, &admitted, &denied);
	struct sluice_limiter_stats s = stats_of(lim);
	cr_assert_gt(denied, 0);
	cr_assert_eq(s.admitted, admitted);
	cr_assert_eq(s.denied, denied);
	cr_assert_eq(s.inserted, NKEYS);
	sluice_limiter_destroy(lim);
}

/* Keys of every length 0..40 (the fast path takes at most 16 bytes; the
 * hash of longer ones is XXH3's out-of-line dispatch). */
Test(limiter_fastpath, keys_of_every_length_decide_as_standalone_cells)
{
	struct sluice_limit l = gcra(5, SEC, 3);

	for (size_t len = 0; len <= 40; len++) {
		struct sluice_limiter *lim = make(&l, 1);
		uint64_t admitted = 0, denied = 0;
		run_against_cells(lim, &l, len, &admitted, &denied);
		struct sluice_limiter_stats s = stats_of(lim);
		cr_assert_gt(denied, 0, "len %zu", len);
		cr_assert_eq(s.admitted, admitted, "len %zu", len);
		cr_assert_eq(s.denied, denied, "len %zu", len);
		/* len 0: one key for all i; len 1: 40 distinct last bytes. */
		cr_assert_eq(s.inserted, len == 0 ? 1 : NKEYS, "len %zu", len);
		sluice_limiter_destroy(lim);
	}
}

/* A key the sweep reclaimed: the next request finds a tombstone or no entry
 * and starts a fresh one, with the whole burst. */
Test(limiter_fastpath, a_reclaimed_key_starts_fresh)
{
	struct sluice_limit l = gcra(2, SEC, 2);
	struct sluice_limiter *lim = make(&l, 1);
	struct sluice_decision d;
	size_t reclaimed = 0;

	for (int i = 0; i < 3; i++)
		cr_assert_eq(sluice_limiter_admit(lim, "idle", 4, 1, SEC, &d), SLUICE_OK);
	cr_assert_not(d.allowed);
	cr_assert_eq(sluice_limiter_sweep(lim, 100 * SEC, 1000, &reclaimed), SLUICE_OK);
	cr_assert_eq(reclaimed, 1);
	cr_assert_eq(sluice_limiter_admit(lim, "idle", 4, 1, 100 * SEC, &d), SLUICE_OK);
	cr_assert(d.allowed);
	cr_assert_eq(d.remaining, 1);
	struct sluice_limiter_stats s = stats_of(lim);
	cr_assert_eq(s.inserted, 2);
	cr_assert_eq(s.admitted, 3);
	cr_assert_eq(s.denied, 1);
	sluice_limiter_destroy(lim);
}

struct fresh_thread {
	struct sluice_limiter *lim;
	int rc;
	struct sluice_decision d;
};

static void *fresh_thread_main(void *arg)
{
	struct fresh_thread *t = arg;

	t->rc = sluice_limiter_admit(t->lim, "shared", 6, 1, 2 * SEC, &t->d);
	return NULL;
}

/* A thread's first admit (no stripe, not registered with urcu): the
 * general path registers it and decides on the key the main thread made. */
Test(limiter_fastpath, an_unregistered_threads_first_admit_decides)
{
	struct sluice_limit l = gcra(2, SEC, 2);
	struct sluice_limiter *lim = make(&l, 1);
	struct sluice_decision d;
	struct fresh_thread t = { .lim = lim, .rc = -1 };
	pthread_t th;

	cr_assert_eq(sluice_limiter_admit(lim, "shared", 6, 1, 2 * SEC, &d), SLUICE_OK);
	cr_assert_eq(d.remaining, 1);
	cr_assert_eq(pthread_create(&th, NULL, fresh_thread_main, &t), 0);
	cr_assert_eq(pthread_join(th, NULL), 0);
	cr_assert_eq(t.rc, SLUICE_OK);
	cr_assert(t.d.allowed);
	cr_assert_eq(t.d.remaining, 0);
	struct sluice_limiter_stats s = stats_of(lim);
	cr_assert_eq(s.admitted, 2);
	cr_assert_eq(s.inserted, 1);
	sluice_limiter_destroy(lim);
}

/* A peek (cost 0) is answered and allowed but not counted; a request on an
 * existing key after it is. */
Test(limiter_fastpath, a_peek_is_not_counted)
{
	struct sluice_limit l = gcra(1, SEC, 1);
	struct sluice_limiter *lim = make(&l, 1);
	struct sluice_decision d;

	cr_assert_eq(sluice_limiter_admit(lim, "p", 1, 1, SEC, &d), SLUICE_OK);
	cr_assert_eq(sluice_limiter_admit(lim, "p", 1, 0, SEC, &d), SLUICE_OK);
	cr_assert(d.allowed);
	cr_assert_eq(d.remaining, 0);
	cr_assert_eq(sluice_limiter_admit(lim, "p", 1, 1, SEC, &d), SLUICE_OK);
	cr_assert_not(d.allowed);
	struct sluice_limiter_stats s = stats_of(lim);
	cr_assert_eq(s.admitted, 1);
	cr_assert_eq(s.denied, 1);
	sluice_limiter_destroy(lim);
}

/* Two limits (never the fast path): the tighter one governs a denial. */
Test(limiter_fastpath, two_limits_decide_together)
{
	struct sluice_limit l[2] = { gcra(10, SEC, 10), gcra(2, SEC, 2) };
	struct sluice_limiter *lim = make(l, 2);
	struct sluice_decision d;

	for (int i = 0; i < 2; i++) {
		cr_assert_eq(sluice_limiter_admit(lim, "two", 3, 1, SEC, &d), SLUICE_OK);
		cr_assert(d.allowed);
	}
	cr_assert_eq(sluice_limiter_admit(lim, "two", 3, 1, SEC, &d), SLUICE_OK);
	cr_assert_not(d.allowed);
	cr_assert_eq(d.limit_index, 1);
	struct sluice_limiter_stats s = stats_of(lim);
	cr_assert_eq(s.admitted, 2);
	cr_assert_eq(s.denied, 1);
	sluice_limiter_destroy(lim);
}

/* Every argument the fast path does not take is refused as before, and
 * nothing refused is counted. */
Test(limiter_fastpath, bad_arguments_are_refused)
{
	struct sluice_limit l = gcra(1, SEC, 1);
	struct sluice_limiter *lim = make(&l, 1);
	struct sluice_decision d;
	static char big[SLUICE_LIMITER_MAX_KEY + 1];

	cr_assert_eq(sluice_limiter_admit(NULL, "k", 1, 1, SEC, &d), SLUICE_EINVAL);
	cr_assert_eq(sluice_limiter_admit(lim, "k", 1, 1, SEC, NULL), SLUICE_EINVAL);
	cr_assert_eq(sluice_limiter_admit(lim, NULL, 1, 1, SEC, &d), SLUICE_EKEY);
	cr_assert_eq(sluice_limiter_admit(lim, NULL, 0, 1, SEC, &d), SLUICE_EKEY);
	cr_assert_eq(sluice_limiter_admit(lim, big, sizeof big, 1, SEC, &d), SLUICE_EKEY);
	cr_assert_eq(sluice_limiter_admit(lim, big, sizeof big - 1, 1, SEC, &d), SLUICE_OK);
	cr_assert(d.allowed);
	struct sluice_limiter_stats s = stats_of(lim);
	cr_assert_eq(s.admitted, 1);
	cr_assert_eq(s.denied, 0);
	cr_assert_eq(s.inserted, 1);
	sluice_limiter_destroy(lim);
}
