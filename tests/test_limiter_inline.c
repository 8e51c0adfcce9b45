/*
 * test_limiter_inline.c - the keyed limiter's inline slots (the one-GCRA
 * policy; src/limiter/table.c, "Moving in"; docs/limiter.md, "Inline
 * slots"): a key of at most 16 bytes is inserted allocated apart and moved
 * with its cell into the index's own slot by its insertion, or, when
 * another mover holds the lock (sluice__limiter_hold_moves() here), by the
 * next sweep or resize.
 *
 * Every test keeps, beside the limiter, a standalone struct sluice_gcra per
 * key fed the same requests (the model), and compares each decision field
 * by field: a move, a resize or a reclaim must not change what a key
 * answers. That a move happened is read from stats.bytes (an inline key
 * allocates nothing once the moved-from entry is freed, after a grace
 * period: rcu_barrier()). Keys 17 bytes and longer stay apart and are
 * checked alongside.
 */
#include <criterion/criterion.h>
#include <sluice.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <urcu.h> /* rcu_read_lock for the engine's internal API, rcu_barrier */

#include "limiter/limiter_internal.h"
#include "limit_util.h"

#define INLINE_MAX 16 /* longest key kept inline (store_internal.h) */

/* Key lengths: inline (<= 16) and apart (> 16). */
static const size_t LENS[] = { 0, 1, 15, 16, 17, 40, SLUICE_LIMITER_MAX_KEY };
#define NLENS (sizeof LENS / sizeof LENS[0])

/* A tracked key and its model cell. */
struct tkey {
	unsigned char k[SLUICE_LIMITER_MAX_KEY];
	size_t len;
	struct sluice_gcra model;
};

static struct sluice_limit rate; /* every test's one limit */

/* Bytes of an allocated entry of a one-GCRA limiter: a header word, the
 * GCRA word and the key, after a 24-byte retire head for a short key
 * (test_limiter_kinds.c pins the same layout). */
static uint64_t entry_bytes(size_t len)
{
	return (len <= INLINE_MAX ? 40 : 16) + len;
}

/* Key i of length len: distinct for distinct (i, len) with i < 2^24. */
static void tkey_init(struct tkey *t, unsigned i, size_t len)
{
	for (size_t j = 0; j < len; j++)
		t->k[j] = (unsigned char)(0x5a ^ (j * 37));
	for (size_t j = 0; j < len && j < 3; j++)
		t->k[j] = (unsigned char)(i >> (8 * j));
	t->len = len;
	sluice_gcra_init(&t->model);
}

static struct sluice_limiter_options opts(void)
{
	struct sluice_limiter_options o;

	memset(&o, 0, sizeof o);
	o.size = sizeof o;
	o.hash_secret = "inline";
	o.hash_secret_len = 6;
	return o;
}

/* A limiter of `rate` (10 per second, burst 10: 100 ms per unit). */
static struct sluice_limiter *make_opts(const struct sluice_limiter_options *o)
{
	struct sluice_limiter *lim = NULL;

	rate = gcra(10, SEC, 10);
	cr_assert_eq(sluice_limiter_create(&lim, &rate, 1, o), SLUICE_OK);
	return lim;
}

static struct sluice_limiter *make(void)
{
	struct sluice_limiter_options o = opts();
	return make_opts(&o);
}

static struct sluice_limiter_stats stats_of(struct sluice_limiter *lim)
{
	struct sluice_limiter_stats s;

	memset(&s, 0, sizeof s);
	s.size = sizeof s;
	cr_assert_eq(sluice_limiter_stats(lim, &s), SLUICE_OK);
	return s;
}

static void same_decision(const struct sluice_decision *got, const struct sluice_decision *want,
			  const struct tkey *t, uint64_t now, const char *what)
{
	cr_assert_eq(got->allowed, want->allowed, "%s: key len %zu at %llu: allowed %d, model %d", what,
		     t->len, (unsigned long long)now, got->allowed, want->allowed);
	cr_assert_not(got->degraded, "%s: key len %zu degraded", what, t->len);
	cr_assert_eq(got->reason, want->reason, "%s: key len %zu at %llu: reason %u, model %u", what,
		     t->len, (unsigned long long)now, got->reason, want->reason);
	cr_assert_eq(got->limit_index, 0);
	cr_assert_eq(got->limit, want->limit);
	cr_assert_eq(got->remaining, want->remaining, "%s: key len %zu at %llu: remaining %llu, model %llu",
		     what, t->len, (unsigned long long)now, (unsigned long long)got->remaining,
		     (unsigned long long)want->remaining);
	cr_assert_eq(got->reset_ns, want->reset_ns, "%s: key len %zu at %llu: reset %llu, model %llu",
		     what, t->len, (unsigned long long)now, (unsigned long long)got->reset_ns,
		     (unsigned long long)want->reset_ns);
	cr_assert_eq(got->retry_after_ns, want->retry_after_ns,
		     "%s: key len %zu at %llu: retry %llu, model %llu", what, t->len,
		     (unsigned long long)now, (unsigned long long)got->retry_after_ns,
		     (unsigned long long)want->retry_after_ns);
}

/* Admit cost for t at now on the limiter and on the model; the decisions
 * must agree. Returns allowed. */
static bool same(struct sluice_limiter *lim, struct tkey *t, uint64_t cost, uint64_t now)
{
	struct sluice_decision got, want;

	cr_assert_eq(sluice_limiter_admit(lim, t->k, t->len, cost, now, &got), SLUICE_OK);
	sluice_gcra_admit(&t->model, &rate.rate, now, cost, &want);
	same_decision(&got, &want, t, now, "admit");
	return got.allowed;
}

/* sluice_limiter_peek() against the model's cost-0 admit. */
static void same_peek(struct sluice_limiter *lim, struct tkey *t, uint64_t now)
{
	struct sluice_decision got, want;

	cr_assert_eq(sluice_limiter_peek(lim, t->k, t->len, now, &got), SLUICE_OK);
	sluice_gcra_admit(&t->model, &rate.rate, now, 0, &want);
	same_decision(&got, &want, t, now, "peek");
}

/* A run of requests that leaves t's bucket part-used, different per seed,
 * ending at `end`. */
static void use_some(struct sluice_limiter *lim, struct tkey *t, unsigned seed, uint64_t end)
{
	same(lim, t, 1 + seed % 4, end - 300 * MS);
	same(lim, t, 2, end - 150 * MS);
	same(lim, t, 1 + seed % 3, end);
}

/* Sweep everything at now and wait for the moved-from entries' frees. */
static void sweep_all(struct sluice_limiter *lim, uint64_t now, size_t want_reclaimed)
{
	size_t got = 99;
	cr_assert_eq(sluice_limiter_sweep(lim, now, SIZE_MAX, &got), SLUICE_OK);
	cr_assert_eq(got, want_reclaimed);
	rcu_barrier();
}

/* ---- exactness across a move ---- */

/* For each key length: requests before the sweep (the short key moved by
 * its insertion, or, held, kept apart until the sweep moves it), then
 * requests after it (refill, denial, a partial refill, cost above the
 * burst): every decision equals the model's. */
Test(limiter_inline, state_unchanged_by_move_every_key_length)
{
	for (size_t n = 0; n < 2 * NLENS; n++) {
		struct sluice_limiter *lim = make();
		struct tkey *t = malloc(sizeof *t);
		bool held = n >= NLENS;
		cr_assert_not_null(t);
		tkey_init(t, (unsigned)n, LENS[n % NLENS]);
		uint64_t now = 10 * SEC;
		if (held)
			sluice__limiter_hold_moves(lim, true);
		cr_assert(same(lim, t, 3, now));
		sluice__limiter_hold_moves(lim, false);
		if (!held) {
			rcu_barrier();
			cr_assert_eq(stats_of(lim).bytes, t->len <= INLINE_MAX ? 0 : entry_bytes(t->len),
				     "len %zu: moved in by its insertion iff <= 16 bytes", t->len);
		}
		sluice__limiter_hold_moves(lim, true);
		cr_assert(same(lim, t, 4, now + 50 * MS));
		sluice__limiter_hold_moves(lim, false);
		if (held)
			cr_assert_eq(stats_of(lim).bytes, entry_bytes(t->len), "len %zu: held apart", t->len);
		sweep_all(lim, now + 60 * MS, 0);
		uint64_t want_bytes = t->len <= INLINE_MAX ? 0 : entry_bytes(t->len);
		cr_assert_eq(stats_of(lim).bytes, want_bytes, "len %zu: moved in iff <= 16 bytes", t->len);
		same_peek(lim, t, now + 60 * MS);
		cr_assert(same(lim, t, 3, now + 70 * MS));
		cr_assert_not(same(lim, t, 2, now + 80 * MS));
		cr_assert(same(lim, t, 1, now + 250 * MS));
		cr_assert_not(same(lim, t, 11, now + 300 * MS), "above the burst");
		same(lim, t, 10, now + 5 * SEC);
		same_peek(lim, t, now + 5 * SEC);
		sluice_limiter_destroy(lim);
		free(t);
	}
}

/* Moves repeat harmlessly: a moved key is not moved again (its word is
 * INLINE), and sweeping it over and over while it is in use never changes
 * its decisions. */
Test(limiter_inline, repeated_sweeps_between_requests)
{
	struct sluice_limiter *lim = make();
	struct tkey t[NLENS];
	uint64_t now = SEC;

	for (size_t n = 0; n < NLENS; n++)
		tkey_init(&t[n], (unsigned)n, LENS[n]);
	for (int round = 0; round < 40; round++) {
		for (size_t n = 0; n < NLENS; n++)
			same(lim, &t[n], 1 + (uint64_t)(round + n) % 3, now + n * MS);
		sweep_all(lim, now + NLENS * MS, 0);
		now += 70 * MS;
	}
	struct sluice_limiter_stats s = stats_of(lim);
	cr_assert_eq(s.live_keys, NLENS);
	cr_assert_eq(s.inserted, NLENS);
	sluice_limiter_destroy(lim);
}

/* ---- statistics and the budget ---- */

/* A move changes no counter but bytes: the short keys' allocations are
 * freed (after a grace period), the long ones' stay - without a sweep when
 * their insertion moved them, by the sweep for keys inserted while another
 * mover held the lock. */
Test(limiter_inline, stats_bytes_drop_for_short_keys_only)
{
	struct sluice_limiter *lim = make();
	struct tkey t[NLENS], u[NLENS];
	uint64_t now = SEC, all = 0, apart = 0;

	for (size_t n = 1; n < NLENS; n++) { /* the empty key is t[0] */
		tkey_init(&u[n], (unsigned)n + 100, LENS[n]);
		same(lim, &u[n], 1, now);
		if (LENS[n] > INLINE_MAX)
			apart += entry_bytes(LENS[n]);
	}
	rcu_barrier();
	cr_assert_eq(stats_of(lim).bytes, apart, "moved in by their insertions");
	all = apart;
	sluice__limiter_hold_moves(lim, true);
	for (size_t n = 0; n < NLENS; n++) {
		tkey_init(&t[n], (unsigned)n, LENS[n]);
		same(lim, &t[n], 2, now);
		all += entry_bytes(LENS[n]);
		if (LENS[n] > INLINE_MAX)
			apart += entry_bytes(LENS[n]);
	}
	sluice__limiter_hold_moves(lim, false);
	rcu_barrier();
	struct sluice_limiter_stats before = stats_of(lim);
	cr_assert_eq(before.bytes, all);
	size_t got = 99;
	cr_assert_eq(sluice_limiter_sweep(lim, now, SIZE_MAX, &got), SLUICE_OK);
	cr_assert_eq(got, 0);
	cr_assert_eq(stats_of(lim).bytes, all, "moved-from entries are freed after a grace period");
	rcu_barrier();
	struct sluice_limiter_stats after = stats_of(lim);
	cr_assert_eq(after.bytes, apart);
	cr_assert_eq(after.live_keys, before.live_keys);
	cr_assert_eq(after.inserted, before.inserted);
	cr_assert_eq(after.reclaimed, before.reclaimed);
	cr_assert_eq(after.admitted, before.admitted);
	cr_assert_eq(after.denied, before.denied);
	cr_assert_eq(after.degraded, 0);
	sluice_limiter_destroy(lim);
}

/* max_keys counts keys, wherever they live: a moved key still takes its
 * place, so the key beyond the budget is still answered by the fail mode. */
Test(limiter_inline, max_keys_counts_moved_keys)
{
	struct sluice_limiter_options o = opts();
	o.max_keys = 3;
	o.fail_mode = SLUICE_FAIL_CLOSED;
	struct sluice_limiter *lim = make_opts(&o);
	struct tkey t[4];
	struct sluice_decision d;

	for (unsigned i = 0; i < 4; i++)
		tkey_init(&t[i], i, 8);
	for (unsigned i = 0; i < 3; i++)
		same(lim, &t[i], 1, SEC);
	sweep_all(lim, SEC, 0);
	cr_assert_eq(stats_of(lim).bytes, 0, "all three moved in");
	cr_assert_eq(sluice_limiter_admit(lim, t[3].k, t[3].len, 1, SEC, &d), SLUICE_OK);
	cr_assert(d.degraded, "a fourth key is beyond max_keys");
	cr_assert_not(d.allowed);
	cr_assert_eq(stats_of(lim).live_keys, 3);
	for (unsigned i = 0; i < 3; i++)
		same(lim, &t[i], 1, SEC + MS);
	sluice_limiter_destroy(lim);
}

/* max_bytes charges an allocated entry plus 64 bytes of inline slots per
 * key; a move gives the entry's bytes back, so more keys fit afterwards. */
Test(limiter_inline, max_bytes_freed_by_move_fits_more_keys)
{
	const uint64_t per_new = entry_bytes(8) + 64; /* 112: a new 8-byte key */
	struct sluice_limiter_options o = opts();
	/* three new keys fit, not four; once moved, 3 * 64 + one new key, not
	 * two; then 4 * 64 + one new key, not two. */
	o.max_bytes = 3 * 64 + 2 * per_new - 1;
	o.fail_mode = SLUICE_FAIL_CLOSED;
	struct sluice_limiter *lim = make_opts(&o);
	struct tkey t[6];
	struct sluice_decision d;

	for (unsigned i = 0; i < 6; i++)
		tkey_init(&t[i], i, 8);
	sluice__limiter_hold_moves(lim, true); /* every new key stays apart */
	for (unsigned i = 0; i < 3; i++)
		same(lim, &t[i], 1, SEC);
	cr_assert_eq(sluice_limiter_admit(lim, t[3].k, t[3].len, 1, SEC, &d), SLUICE_OK);
	cr_assert(d.degraded, "four allocated keys exceed max_bytes");
	sluice__limiter_hold_moves(lim, false);
	/* Moved: 3 * 64 charged, room for one more new key (112), not two. */
	sweep_all(lim, SEC, 0);
	sluice__limiter_hold_moves(lim, true);
	cr_assert(same(lim, &t[3], 1, SEC));
	cr_assert_eq(sluice_limiter_admit(lim, t[4].k, t[4].len, 1, SEC, &d), SLUICE_OK);
	cr_assert(d.degraded);
	sluice__limiter_hold_moves(lim, false);
	/* Moved: 4 * 64 + 112 fits. */
	sweep_all(lim, SEC, 0);
	sluice__limiter_hold_moves(lim, true);
	cr_assert(same(lim, &t[4], 1, SEC));
	cr_assert_eq(sluice_limiter_admit(lim, t[5].k, t[5].len, 1, SEC, &d), SLUICE_OK);
	cr_assert(d.degraded);
	sluice__limiter_hold_moves(lim, false);
	struct sluice_limiter_stats s = stats_of(lim);
	cr_assert_eq(s.live_keys, 5);
	cr_assert_eq(s.degraded, 3);
	for (unsigned i = 0; i < 5; i++)
		same(lim, &t[i], 1, SEC + MS);
	sluice_limiter_destroy(lim);
}

/* ---- reclaim of inline keys ---- */

/* An idle inline key is reclaimed by a later sweep (counted, live_keys
 * drops, its budget is back at once without a grace period), and comes
 * back as a fresh key. */
Test(limiter_inline, idle_inline_keys_reclaimed_and_start_fresh)
{
	struct sluice_limiter_options o = opts();
	o.max_keys = 4;
	o.fail_mode = SLUICE_FAIL_CLOSED;
	struct sluice_limiter *lim = make_opts(&o);
	struct tkey t[4], extra;
	struct sluice_decision d;

	for (unsigned i = 0; i < 4; i++) {
		tkey_init(&t[i], i, i * 5); /* 0, 5, 10, 15 bytes */
		same(lim, &t[i], 5, SEC);
	}
	sweep_all(lim, SEC, 0);
	cr_assert_eq(stats_of(lim).bytes, 0);
	/* Keys 0 and 1 refill by 2 s; keys 2 and 3 are used again. */
	same(lim, &t[2], 2, 1900 * MS);
	same(lim, &t[3], 2, 1900 * MS);
	size_t got = 0;
	cr_assert_eq(sluice_limiter_sweep(lim, 2 * SEC, SIZE_MAX, &got), SLUICE_OK);
	cr_assert_eq(got, 2);
	struct sluice_limiter_stats s = stats_of(lim);
	cr_assert_eq(s.reclaimed, 2);
	cr_assert_eq(s.live_keys, 2);
	cr_assert_eq(s.bytes, 0);
	/* No rcu_barrier(): an inline slot's budget is back at once. */
	tkey_init(&extra, 99, 7);
	cr_assert(same(lim, &extra, 1, 2 * SEC));
	cr_assert(stats_of(lim).live_keys == 3);
	/* Reclaimed keys start fresh: a full bucket (the model refilled too). */
	sluice_gcra_init(&t[0].model);
	cr_assert(same(lim, &t[0], 10, 2 * SEC));
	cr_assert_eq(sluice_limiter_admit(lim, t[1].k, t[1].len, 1, 2 * SEC, &d), SLUICE_OK);
	cr_assert(d.degraded, "max_keys: t0, t2, t3, extra");
	same(lim, &t[2], 1, 2 * SEC);
	same(lim, &t[3], 1, 2 * SEC);
	sluice_limiter_destroy(lim);
}

/* A key reclaimed from its slot and inserted again is moved in again, to
 * another slot (the old one is DELETED), with its new state. */
Test(limiter_inline, reclaimed_key_moves_in_again)
{
	struct sluice_limiter *lim = make();
	struct tkey t;

	tkey_init(&t, 1, 16);
	uint64_t now = SEC;
	for (int round = 0; round < 20; round++) {
		cr_assert(same(lim, &t, 4, now));
		sweep_all(lim, now, 0);
		cr_assert_eq(stats_of(lim).bytes, 0);
		same_peek(lim, &t, now + MS);
		now += 2 * SEC; /* idle */
		sweep_all(lim, now, 1);
		sluice_gcra_init(&t.model);
	}
	struct sluice_limiter_stats s = stats_of(lim);
	cr_assert_eq(s.reclaimed, 20);
	cr_assert_eq(s.inserted, 20);
	cr_assert_eq(s.live_keys, 0);
	sluice_limiter_destroy(lim);
}

/* ---- resizes ---- */

#define EARLY 24
#define MANY 3000

/* Insert keys "fill-i" for i in [from, to) at now, one unit each. */
static void fill(struct sluice_limiter *lim, unsigned from, unsigned to, uint64_t now)
{
	struct sluice_decision d;
	char k[32];

	for (unsigned i = from; i < to; i++) {
		size_t len = (size_t)snprintf(k, sizeof k, "fill-%u%s", i, i % 5 == 0 ? "-and-a-long-tail" : "");
		cr_assert_eq(sluice_limiter_admit(lim, k, len, 1, now, &d), SLUICE_OK);
		cr_assert(d.allowed && !d.degraded);
	}
}

/* Early keys moved into the slots of a tiny first array keep their exact
 * state through many resizes (each copies an inline slot as a forwarded
 * pointer and moves it in again: settle_forwarded()), with sweeps between
 * them; nothing of theirs is allocated again. */
static void resize_keeps_state(uint64_t mask)
{
	struct sluice_limiter_options o = opts();
	o.initial_buckets = 4;
	struct sluice_limiter *lim = make_opts(&o);
	struct tkey *t = calloc(EARLY, sizeof *t);
	uint64_t now = 10 * SEC, apart = 0;

	cr_assert_not_null(t);
	sluice__limiter_set_hash_mask(lim, mask);
	for (unsigned i = 0; i < EARLY; i++) {
		/* One empty key; every other length several times. */
		tkey_init(&t[i], i, i < NLENS ? LENS[i] : LENS[1 + i % (NLENS - 1)]);
		use_some(lim, &t[i], i, now);
		if (t[i].len > INLINE_MAX)
			apart += entry_bytes(t[i].len);
	}
	sweep_all(lim, now, 0);
	cr_assert_eq(stats_of(lim).bytes, apart);
	unsigned n = 0;
	for (unsigned step = 1; step <= 6; step++) {
		unsigned to = MANY / 6 * step;
		fill(lim, n, to, now);
		n = to;
		for (unsigned i = 0; i < EARLY; i++)
			same_peek(lim, &t[i], now);
		if (step % 2 == 0)
			sweep_all(lim, now, 0);
	}
	rcu_barrier(); /* the old arrays are freed */
	fill(lim, n, n + 200, now); /* reuse their memory */
	sweep_all(lim, now, 0);
	struct sluice_limiter_stats s = stats_of(lim);
	cr_assert_eq(s.live_keys, EARLY + MANY + 200);
	uint64_t fill_apart = 0;
	for (unsigned i = 0; i < MANY + 200; i += 5) {
		char k[40];
		fill_apart += entry_bytes((size_t)snprintf(k, sizeof k, "fill-%u-and-a-long-tail", i));
	}
	cr_assert_eq(s.bytes, apart + fill_apart, "only keys above 16 bytes stay allocated");
	for (unsigned i = 0; i < EARLY; i++) {
		same_peek(lim, &t[i], now + MS);
		same(lim, &t[i], 1, now + MS);
		same(lim, &t[i], 3, now + 200 * MS);
		same_peek(lim, &t[i], now + 3 * SEC);
	}
	sluice_limiter_destroy(lim);
	free(t);
}

Test(limiter_inline, resize_keeps_moved_state)
{
	resize_keeps_state(UINT64_MAX);
}

/* Every key's hash alike (one tag, one home line, one first slot): every
 * lookup compares keys past inline and pointer tag matches alike. */
Test(limiter_inline, colliding_hashes_resize_keeps_moved_state, .timeout = 60)
{
	resize_keeps_state(0);
}

/* Two home lines and 8 tags: probes cross lines of mixed slots. */
Test(limiter_inline, narrow_hashes_resize_keeps_moved_state)
{
	resize_keeps_state(UINT64_C(0x10007));
}

/* Colliding keys reclaimed and moved in again, between resizes: DELETED
 * inline slots in the middle of probes neither hide nor duplicate keys. */
Test(limiter_inline, colliding_reclaims_between_moves)
{
	struct sluice_limiter_options o = opts();
	o.initial_buckets = 4;
	struct sluice_limiter *lim = make_opts(&o);
	struct tkey t[12];
	uint64_t now = SEC, reclaimed = 0;

	sluice__limiter_set_hash_mask(lim, 0);
	for (unsigned i = 0; i < 12; i++)
		tkey_init(&t[i], i, i % 2 ? 4 : 20);
	for (unsigned round = 0; round < 6; round++) {
		/* Even rounds use every key, odd rounds the first half only:
		 * the rest (and the last round's fill keys) are idle and go. */
		for (unsigned i = 0; i < 12; i++)
			if (round % 2 == 0 || i < 6)
				same(lim, &t[i], 1 + i % 3, now);
		size_t got = 0;
		cr_assert_eq(sluice_limiter_sweep(lim, now, SIZE_MAX, &got), SLUICE_OK);
		unsigned want = round == 0 ? 0 : 40 + (round % 2 == 1 ? 6 : 0);
		cr_assert_eq(got, want, "round %u: reclaimed %zu, want %u", round, got, want);
		reclaimed += got;
		for (unsigned i = 0; i < 12; i++)
			same_peek(lim, &t[i], now);
		fill(lim, round * 40, round * 40 + 40, now);
		for (unsigned i = 0; i < 12; i++)
			same_peek(lim, &t[i], now);
		now += 2 * SEC;
		for (unsigned i = 0; i < 12; i++)
			sluice_gcra_init(&t[i].model); /* two seconds refill every key */
	}
	rcu_barrier();
	struct sluice_limiter_stats s = stats_of(lim);
	cr_assert_eq(s.reclaimed, reclaimed);
	cr_assert_eq(s.live_keys, s.inserted - reclaimed);
	cr_assert_eq(s.live_keys, 6 + 40, "the last round reclaimed keys 6..11");
	sluice_limiter_destroy(lim);
}

/* ---- readers of moved keys ---- */

/* admit_batch answers moved keys (repeated in the batch, beside long and
 * unknown keys) exactly as one admit at a time would. */
Test(limiter_inline, admit_batch_sees_moved_keys)
{
	struct sluice_limiter *lim = make();
	struct tkey t[NLENS];
	struct sluice_limiter_request req[3 * NLENS];
	struct sluice_decision out[3 * NLENS];
	uint64_t now = SEC;

	for (size_t n = 0; n < NLENS; n++) {
		tkey_init(&t[n], (unsigned)n, LENS[n]);
		if (n % 3 != 2)
			use_some(lim, &t[n], (unsigned)n, now);
	}
	sweep_all(lim, now, 0);
	for (size_t r = 0; r < 3 * NLENS; r++) {
		struct tkey *k = &t[r % NLENS];
		req[r] = (struct sluice_limiter_request){ k->k, k->len, 1 + r % 4 };
	}
	cr_assert_eq(sluice_limiter_admit_batch(lim, req, 3 * NLENS, now + MS, out), SLUICE_OK);
	for (size_t r = 0; r < 3 * NLENS; r++) {
		struct sluice_decision want;
		struct tkey *k = &t[r % NLENS];
		sluice_gcra_admit(&k->model, &rate.rate, now + MS, req[r].cost, &want);
		same_decision(&out[r], &want, k, now + MS, "batch");
	}
	for (size_t n = 0; n < NLENS; n++)
		same_peek(lim, &t[n], now + 2 * MS);
	sluice_limiter_destroy(lim);
}

/* One batch interleaving moved keys with new ones from a 4-bucket array:
 * the new keys resize the array in the middle of the batch, so a moved
 * key's slot that the batch found before deciding is the old array's,
 * frozen and moved on by the resize; the decision follows the key there. */
Test(limiter_inline, admit_batch_across_resizes_follows_moved_keys)
{
	enum { MOVED = 8, REQS = 512 };
	struct sluice_limiter_options o = opts();
	o.initial_buckets = 4;
	struct sluice_limiter *lim = make_opts(&o);
	struct tkey t[MOVED];
	static char fresh[REQS][16];
	struct sluice_limiter_request req[REQS];
	struct sluice_decision out[REQS];
	uint64_t now = SEC;

	for (unsigned i = 0; i < MOVED; i++) {
		tkey_init(&t[i], i, 1 + i * 2); /* 1 .. 15 bytes */
		same(lim, &t[i], 1, now);
	}
	sweep_all(lim, now, 0);
	cr_assert_eq(stats_of(lim).bytes, 0);
	for (unsigned r = 0; r < REQS; r++) {
		if (r % 2 == 0) {
			struct tkey *k = &t[(r / 2) % MOVED];
			req[r] = (struct sluice_limiter_request){ k->k, k->len, 1 };
		} else {
			size_t len = (size_t)snprintf(fresh[r], sizeof fresh[r], "new-%u", r);
			req[r] = (struct sluice_limiter_request){ fresh[r], len, 1 };
		}
	}
	cr_assert_eq(sluice_limiter_admit_batch(lim, req, REQS, now, out), SLUICE_OK);
	for (unsigned r = 0; r < REQS; r++) {
		if (r % 2 == 1) {
			cr_assert(out[r].allowed && !out[r].degraded);
			continue;
		}
		struct sluice_decision want;
		struct tkey *k = &t[(r / 2) % MOVED];
		sluice_gcra_admit(&k->model, &rate.rate, now, 1, &want);
		same_decision(&out[r], &want, k, now, "batch across resizes");
	}
	cr_assert_eq(stats_of(lim).live_keys, MOVED + REQS / 2);
	rcu_barrier();
	for (unsigned i = 0; i < MOVED; i++)
		same_peek(lim, &t[i], now);
	sluice_limiter_destroy(lim);
}

/* sluice_limiter_acquire() on a policy without slots is an admit with no
 * handle: on moved keys too. */
Test(limiter_inline, acquire_sees_moved_keys)
{
	struct sluice_limiter *lim = make();
	struct tkey t[NLENS];
	uint64_t now = SEC;

	for (size_t n = 0; n < NLENS; n++) {
		tkey_init(&t[n], (unsigned)n, LENS[n]);
		use_some(lim, &t[n], (unsigned)n, now);
	}
	sweep_all(lim, now, 0);
	for (size_t n = 0; n < NLENS; n++)
		for (uint64_t cost = 1; cost <= 4; cost++) {
			struct sluice_decision got, want;
			sluice_slot_handle h = 0;
			cr_assert_eq(sluice_limiter_acquire(lim, t[n].k, t[n].len, cost, now + MS, &got, &h),
				     SLUICE_OK);
			cr_assert_eq(h, SLUICE_SLOT_NONE);
			sluice_gcra_admit(&t[n].model, &rate.rate, now + MS, cost, &want);
			same_decision(&got, &want, &t[n], now + MS, "acquire");
		}
	sluice_limiter_destroy(lim);
}

struct seen {
	struct tkey *t;
	size_t n;
	unsigned count[NLENS];
	uint64_t now;
};

static void on_entry(void *user, const void *key, size_t key_len, const struct sluice_decision *d)
{
	struct seen *s = user;
	for (size_t i = 0; i < s->n; i++) {
		struct tkey *t = &s->t[i];
		if (t->len != key_len || memcmp(t->k, key, key_len) != 0)
			continue;
		struct sluice_decision want;
		sluice_gcra_admit(&t->model, &rate.rate, s->now, 0, &want);
		same_decision(d, &want, t, s->now, "foreach");
		s->count[i]++;
		return;
	}
	cr_assert_fail("foreach: a key nobody inserted (len %zu)", key_len);
}

/* The engine's walk of every entry sees each moved key once, with its
 * peek decision. */
Test(limiter_inline, foreach_sees_moved_keys_once)
{
	struct sluice_limiter *lim = make();
	struct tkey t[NLENS];
	uint64_t now = SEC;

	for (size_t n = 0; n < NLENS; n++) {
		tkey_init(&t[n], (unsigned)n, LENS[n]);
		use_some(lim, &t[n], (unsigned)n, now);
	}
	sweep_all(lim, now, 0);
	struct seen s = { .t = t, .n = NLENS, .now = now + MS };
	cr_assert_eq(sluice__limiter_thread_enter(lim), SLUICE_OK);
	rcu_read_lock();
	sluice__limiter_foreach(lim, now + MS, on_entry, &s);
	rcu_read_unlock();
	for (size_t n = 0; n < NLENS; n++)
		cr_assert_eq(s.count[n], 1, "key len %zu seen %u times", LENS[n], s.count[n]);
	sluice_limiter_destroy(lim);
}

/* A snapshot saves moved keys' states, and a restore brings them back
 * (moved in again by the restore, as by an insertion) exactly. */
Test(limiter_inline, snapshot_round_trip_of_moved_keys)
{
	struct sluice_limiter *lim = make();
	struct tkey t[NLENS];
	uint64_t now = SEC;
	void *buf = NULL;
	size_t len = 0;

	for (size_t n = 0; n < NLENS; n++) {
		tkey_init(&t[n], (unsigned)n, LENS[n]);
		use_some(lim, &t[n], (unsigned)n, now);
	}
	sweep_all(lim, now, 0);
	struct sluice_snapshot_info info;
	memset(&info, 0, sizeof info);
	info.size = sizeof info;
	cr_assert_eq(sluice_limiter_snapshot_mem(lim, now, &buf, &len, &info), SLUICE_OK);
	cr_assert_eq(info.entries, NLENS);
	sluice_limiter_destroy(lim);

	lim = make();
	cr_assert_eq(sluice_limiter_restore_mem(lim, buf, len, now, NULL), SLUICE_OK);
	free(buf);
	cr_assert_eq(stats_of(lim).live_keys, NLENS);
	for (size_t n = 0; n < NLENS; n++)
		same_peek(lim, &t[n], now);
	sweep_all(lim, now, 0);
	uint64_t apart = 0;
	for (size_t n = 0; n < NLENS; n++)
		apart += LENS[n] > INLINE_MAX ? entry_bytes(LENS[n]) : 0;
	cr_assert_eq(stats_of(lim).bytes, apart);
	for (size_t n = 0; n < NLENS; n++) {
		same(lim, &t[n], 2, now + MS);
		same_peek(lim, &t[n], now + 400 * MS);
	}
	sluice_limiter_destroy(lim);
}

/* ---- the engine's internal API on moved keys ---- */

/* The dry run, the reserve that follows it with its hint, and the cancel
 * of that reserve (nothing landed since: exact) on a moved key. */
Test(limiter_inline, check_reserve_cancel_on_moved_key)
{
	struct sluice_limiter *lim = make();
	struct tkey t;
	struct sluice_decision d, want;
	struct sluice__limiter_hint hint;
	struct sluice__limiter_hold hold;
	uint64_t now = SEC;

	tkey_init(&t, 3, 12);
	use_some(lim, &t, 5, now);
	sweep_all(lim, now, 0);
	cr_assert_eq(stats_of(lim).bytes, 0);
	cr_assert_eq(sluice__limiter_thread_enter(lim), SLUICE_OK);
	rcu_read_lock();
	struct sluice_gcra dry = t.model;
	bool ok = sluice__limiter_check(lim, t.k, t.len, 3, now + MS, &d, &hint);
	sluice_gcra_admit(&dry, &rate.rate, now + MS, 3, &want);
	cr_assert_eq(ok, want.allowed);
	same_decision(&d, &want, &t, now + MS, "check");
	cr_assert_not_null(hint.entry, "a moved key is found");
	struct sluice_gcra before = t.model;
	cr_assert_eq(sluice__limiter_reserve(lim, t.k, t.len, &hint, 3, now + MS, &d, &hold), 0);
	sluice_gcra_admit(&t.model, &rate.rate, now + MS, 3, &want);
	same_decision(&d, &want, &t, now + MS, "reserve");
	cr_assert(d.allowed);
	sluice__limiter_cancel(lim, &hold);
	rcu_read_unlock();
	t.model = before; /* nothing landed since: the cancel is exact */
	same_peek(lim, &t, now + MS);
	same(lim, &t, 4, now + 2 * MS);
	sluice_limiter_destroy(lim);
}

/* A hint taken before a move names the moved-from entry, now frozen: the
 * reserve that carries it finishes the move (nothing left to do), looks
 * the key up again and decides on the moved state - no unit lost or
 * granted twice. */
Test(limiter_inline, reserve_with_hint_from_before_the_move)
{
	struct sluice_limiter *lim = make();
	struct tkey t;
	struct sluice_decision d, want;
	struct sluice__limiter_hint hint;
	struct sluice__limiter_hold hold;
	uint64_t now = SEC;

	tkey_init(&t, 4, 16);
	sluice__limiter_hold_moves(lim, true); /* the sweep moves it */
	use_some(lim, &t, 1, now);
	sluice__limiter_hold_moves(lim, false);
	cr_assert_eq(sluice__limiter_thread_enter(lim), SLUICE_OK);
	rcu_read_lock();
	cr_assert(sluice__limiter_check(lim, t.k, t.len, 2, now, &d, &hint));
	size_t got = 9;
	cr_assert_eq(sluice_limiter_sweep(lim, now, SIZE_MAX, &got), SLUICE_OK);
	cr_assert_eq(got, 0);
	cr_assert_eq(sluice__limiter_reserve(lim, t.k, t.len, &hint, 2, now, &d, &hold), 0);
	sluice_gcra_admit(&t.model, &rate.rate, now, 2, &want);
	same_decision(&d, &want, &t, now, "reserve with a stale hint");
	/* Again on the stale hint until denied: each counts once. */
	while (d.allowed) {
		cr_assert_eq(sluice__limiter_reserve(lim, t.k, t.len, &hint, 1, now, &d, &hold), 0);
		sluice_gcra_admit(&t.model, &rate.rate, now, 1, &want);
		same_decision(&d, &want, &t, now, "reserve with a stale hint");
	}
	rcu_read_unlock();
	rcu_barrier();
	struct sluice_limiter_stats s = stats_of(lim);
	cr_assert_eq(s.bytes, 0);
	cr_assert_eq(s.live_keys, 1);
	same_peek(lim, &t, now);
	same(lim, &t, 1, now + 100 * MS);
	sluice_limiter_destroy(lim);
}

/* A hold taken on the allocated entry, cancelled after the sweep moved the
 * key: the cancel's CAS meets the frozen word and fails, so that
 * admission's consumption stays (documented inexact; never over-admits). */
Test(limiter_inline, cancel_after_move_keeps_consumption)
{
	struct sluice_limiter *lim = make();
	struct tkey t;
	struct sluice_decision d, want;
	struct sluice__limiter_hold hold;
	uint64_t now = SEC;

	tkey_init(&t, 5, 2);
	sluice__limiter_hold_moves(lim, true); /* the sweep moves it */
	same(lim, &t, 1, now);
	sluice__limiter_hold_moves(lim, false);
	cr_assert_eq(sluice__limiter_thread_enter(lim), SLUICE_OK);
	rcu_read_lock();
	cr_assert_eq(sluice__limiter_reserve(lim, t.k, t.len, NULL, 4, now, &d, &hold), 0);
	sluice_gcra_admit(&t.model, &rate.rate, now, 4, &want);
	same_decision(&d, &want, &t, now, "reserve");
	size_t got = 9;
	cr_assert_eq(sluice_limiter_sweep(lim, now, SIZE_MAX, &got), SLUICE_OK);
	sluice__limiter_cancel(lim, &hold);
	rcu_read_unlock();
	rcu_barrier();
	cr_assert_eq(stats_of(lim).bytes, 0, "moved");
	same_peek(lim, &t, now);
	cr_assert(same(lim, &t, 5, now));
	cr_assert_not(same(lim, &t, 1, now), "the cancelled 4 units stay spent");
	sluice_limiter_destroy(lim);
}

/* ---- time ---- */

/* Requests from the past on moved keys (a stale clock) are judged as the
 * model judges them: never more admitted. */
Test(limiter_inline, time_going_backwards_on_moved_keys)
{
	struct sluice_limiter *lim = make();
	struct tkey t[NLENS];
	uint64_t now = 100 * SEC;

	for (size_t n = 0; n < NLENS; n++) {
		tkey_init(&t[n], (unsigned)n, LENS[n]);
		use_some(lim, &t[n], (unsigned)n, now);
	}
	sweep_all(lim, now, 0);
	for (size_t n = 0; n < NLENS; n++) {
		same(lim, &t[n], 1, now - 500 * MS);
		same_peek(lim, &t[n], now - 2 * SEC);
		same(lim, &t[n], 2, now - 10 * SEC);
		same(lim, &t[n], 1, 0);
		same(lim, &t[n], 1, now + 100 * MS);
	}
	/* A sweep in the past finds nothing idle and changes nothing. */
	sweep_all(lim, now - 50 * SEC, 0);
	for (size_t n = 0; n < NLENS; n++)
		same_peek(lim, &t[n], now);
	sluice_limiter_destroy(lim);
}

/* Near the end of the clock: keys inserted, moved and used within a few
 * seconds of UINT64_MAX decide as the model does (the horizon denial
 * included), and a sweep there reclaims nothing that is not idle. */
Test(limiter_inline, now_near_uint64_max_on_moved_keys)
{
	struct sluice_limiter *lim = make();
	struct tkey t[NLENS];
	const uint64_t end = UINT64_MAX;

	for (size_t n = 0; n < NLENS; n++) {
		tkey_init(&t[n], (unsigned)n, LENS[n]);
		same(lim, &t[n], 2, end - 5 * SEC);
		same(lim, &t[n], 3, end - 4 * SEC);
	}
	sweep_all(lim, end - 4 * SEC, 0);
	uint64_t apart = 0;
	for (size_t n = 0; n < NLENS; n++)
		apart += LENS[n] > INLINE_MAX ? entry_bytes(LENS[n]) : 0;
	cr_assert_eq(stats_of(lim).bytes, apart);
	for (size_t n = 0; n < NLENS; n++) {
		same_peek(lim, &t[n], end - 4 * SEC);
		same(lim, &t[n], 4, end - 3 * SEC);
		same(lim, &t[n], 10, end - 2 * SEC);
		same(lim, &t[n], 1, end - 1);
		same(lim, &t[n], 1, end);
		same_peek(lim, &t[n], end);
	}
	/* Whatever a sweep at the end reclaims was full: it still reads so. */
	size_t got = 0;
	cr_assert_eq(sluice_limiter_sweep(lim, end, SIZE_MAX, &got), SLUICE_OK);
	for (size_t n = 0; n < NLENS; n++)
		same_peek(lim, &t[n], end);
	sluice_limiter_destroy(lim);
}
