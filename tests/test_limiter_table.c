/*
 * test_limiter_table.c - the keyed limiter's index (src/limiter/table.c):
 * tag and home-group collisions, DELETED slots, resizes (growth, shrink,
 * an allocator that refuses the new array), lookups by address after a
 * resize, and admit_batch against one admit at a time, operation by
 * operation. Collisions are forced with the test hook
 * sluice__limiter_set_hash_mask() (limiter_internal.h).
 */
#include <criterion/criterion.h>
#include <sluice.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <urcu.h>

#include "limiter/limiter_internal.h"
#include "limit_util.h"

static struct sluice_limiter_options opts(uint64_t initial)
{
	struct sluice_limiter_options o;

	memset(&o, 0, sizeof o);
	o.size = sizeof o;
	o.hash_secret = "table";
	o.hash_secret_len = 5;
	o.initial_buckets = initial;
	return o;
}

static struct sluice_limiter *make(const struct sluice_limit *l, const struct sluice_limiter_options *o,
				   uint64_t mask)
{
	struct sluice_limiter *lim = NULL;

	cr_assert_eq(sluice_limiter_create(&lim, l, 1, o), SLUICE_OK);
	sluice__limiter_set_hash_mask(lim, mask);
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

static size_t key_of(char *buf, unsigned i)
{
	return (size_t)snprintf(buf, 32, "key-%u", i);
}

/* Admit key i once at `now`; returns allowed. */
static bool admit_i(struct sluice_limiter *lim, unsigned i, uint64_t cost, uint64_t now,
		    struct sluice_decision *d)
{
	char k[32];
	size_t len = key_of(k, i);
	cr_assert_eq(sluice_limiter_admit(lim, k, len, cost, now, d), SLUICE_OK);
	return d->allowed;
}

static uint64_t remaining_of(struct sluice_limiter *lim, unsigned i, uint64_t now)
{
	struct sluice_decision d;
	char k[32];
	size_t len = key_of(k, i);
	cr_assert_eq(sluice_limiter_peek(lim, k, len, now, &d), SLUICE_OK);
	return d.remaining;
}

/* Every key hashes alike (mask 0: one tag, one home group): each lookup
 * compares keys past every tag match, probes run over many groups, and
 * the index still tells the keys apart and grows past its first array. */
Test(limiter_table, colliding_hashes_keep_keys_apart)
{
	struct sluice_limit l = gcra(1, SEC, 8); /* no refill within the test */
	struct sluice_limiter_options o = opts(16);
	struct sluice_limiter *lim = make(&l, &o, 0);
	struct sluice_decision d;
	const unsigned n = 300;

	for (unsigned i = 0; i < n; i++)
		for (unsigned c = 0; c <= i % 8; c++)
			cr_assert(admit_i(lim, i, 1, SEC, &d), "key %u, admit %u", i, c);
	for (unsigned i = 0; i < n; i++)
		cr_assert_eq(remaining_of(lim, i, SEC), 8 - 1 - i % 8, "key %u", i);
	struct sluice_limiter_stats s = stats_of(lim);
	cr_assert_eq(s.inserted, n);
	cr_assert_eq(s.live_keys, n);
	sluice_limiter_destroy(lim);
}

/* Keys that share the tag but not the home group, and keys that share the
 * home group but not the tag (the two halves of the slot word's filter). */
Test(limiter_table, tag_and_group_collisions_alone)
{
	struct sluice_limit l = gcra(1, SEC, 4);
	const uint64_t masks[] = { UINT64_C(0x7fff), ~UINT64_C(0xffff) };
	struct sluice_decision d;

	for (size_t m = 0; m < 2; m++) {
		struct sluice_limiter_options o = opts(64);
		struct sluice_limiter *lim = make(&l, &o, masks[m]);
		for (unsigned i = 0; i < 200; i++)
			cr_assert(admit_i(lim, i, 1 + i % 3, SEC, &d));
		for (unsigned i = 0; i < 200; i++)
			cr_assert_eq(remaining_of(lim, i, SEC), 4 - 1 - i % 3, "mask %zu key %u", m, i);
		sluice_limiter_destroy(lim);
	}
}

/* A reclaimed key's slot turns DELETED, which a probe walks past: keys
 * inserted after it along the same probe stay found with their state, and
 * the reclaimed key comes back as a fresh entry. */
Test(limiter_table, lookups_walk_past_reclaimed_slots)
{
	struct sluice_limit l = gcra(1, SEC, 4);
	struct sluice_limiter_options o = opts(64);
	struct sluice_limiter *lim = make(&l, &o, 0);
	struct sluice_decision d;
	size_t got;

	/* Key 0 first in the probe, idle by t = 10 s; keys 1..9 after it,
	 * busy until much later. */
	cr_assert(admit_i(lim, 0, 1, SEC, &d));
	for (unsigned i = 1; i < 10; i++)
		cr_assert(admit_i(lim, i, 4, 9 * SEC, &d));
	cr_assert_eq(sluice_limiter_sweep(lim, 10 * SEC, 100, &got), SLUICE_OK);
	cr_assert_eq(got, 1, "only key 0 is idle");
	for (unsigned i = 1; i < 10; i++)
		cr_assert_eq(remaining_of(lim, i, 10 * SEC), 1, "key %u kept its state", i);
	cr_assert(admit_i(lim, 0, 4, 10 * SEC, &d), "key 0: a fresh, full entry");
	struct sluice_limiter_stats s = stats_of(lim);
	cr_assert_eq(s.inserted, 11);
	cr_assert_eq(s.live_keys, 10);
	sluice_limiter_destroy(lim);
}

/* Growth from a one-group array to 100k keys, then everything reclaimed and
 * a second generation of keys inserted: every key keeps its own state
 * across the resizes (which also rebuild away DELETED slots). */
Test(limiter_table, resizes_keep_every_entry)
{
	struct sluice_limit l = gcra(1, SEC, 3);
	struct sluice_limiter_options o = opts(4);
	struct sluice_limiter *lim = make(&l, &o, UINT64_MAX);
	struct sluice_decision d;
	const unsigned n = 100000;
	size_t got;

	for (unsigned i = 0; i < n; i++)
		cr_assert(admit_i(lim, i, 1 + i % 3, SEC, &d));
	for (unsigned i = 0; i < n; i++)
		cr_assert_eq(remaining_of(lim, i, SEC), 3 - 1 - i % 3, "key %u", i);
	cr_assert_eq(sluice_limiter_sweep(lim, 100 * SEC, 2 * n, &got), SLUICE_OK);
	cr_assert_eq(got, n);
	for (unsigned i = n; i < 2 * n; i++)
		cr_assert(admit_i(lim, i, 2, 100 * SEC, &d));
	for (unsigned i = n; i < 2 * n; i++)
		cr_assert_eq(remaining_of(lim, i, 100 * SEC), 1, "key %u", i);
	cr_assert_eq(stats_of(lim).live_keys, n);
	sluice_limiter_destroy(lim);
}

/* ---- an allocator that refuses the index's next array ---- */

static _Atomic size_t refuse_above; /* 0: refuse nothing */
static _Atomic unsigned refused;

static void *picky_malloc(void *user, size_t size)
{
	(void)user;
	size_t cap = atomic_load(&refuse_above);
	if (cap != 0 && size > cap) {
		atomic_fetch_add(&refused, 1);
		return NULL;
	}
	return malloc(size);
}

static void picky_free(void *user, void *p, size_t size)
{
	(void)user;
	(void)size;
	free(p);
}

/* The array is full and its replacement cannot be allocated: new keys get
 * the fail mode's answer (degraded), keys already in keep their exact
 * state, and once memory comes back the resize happens and new keys go in. */
Test(limiter_table, full_array_and_refused_resize_degrade_new_keys_only)
{
	struct sluice_limit l = gcra(1, SEC, 4);
	struct sluice_limiter_options o = opts(16);
	struct sluice_decision d;

	o.malloc_fn = picky_malloc;
	o.free_fn = picky_free;
	o.fail_mode = SLUICE_FAIL_CLOSED;
	struct sluice_limiter *lim = make(&l, &o, UINT64_MAX);
	atomic_store(&refuse_above, 1024); /* entries pass, arrays do not */
	unsigned in = 0;
	for (; in < 1000; in++) {
		bool ok = admit_i(lim, in, 1, SEC, &d);
		if (d.degraded)
			break;
		cr_assert(ok, "key %u", in);
	}
	cr_assert(in > 0 && in < 1000, "the first array filled (%u keys)", in);
	cr_assert_gt(atomic_load(&refused), 0);
	cr_assert_not(d.allowed, "fail closed");
	cr_assert_eq(d.reason, SLUICE_REASON_CAPACITY);
	for (unsigned i = 0; i < in; i++) {
		cr_assert(admit_i(lim, i, 1, SEC, &d), "key %u still decided", i);
		cr_assert_not(d.degraded);
		cr_assert_eq(d.remaining, 2);
	}
	struct sluice_limiter_stats s = stats_of(lim);
	cr_assert_eq(s.live_keys, in);
	cr_assert_eq(s.degraded, 1);

	atomic_store(&refuse_above, 0);
	for (unsigned i = in; i < 1000; i++) {
		cr_assert(admit_i(lim, i, 1, SEC, &d), "key %u", i);
		cr_assert_not(d.degraded);
	}
	for (unsigned i = 0; i < 1000; i++)
		cr_assert_eq(remaining_of(lim, i, SEC), i < in ? 2 : 3, "key %u", i);
	sluice_limiter_destroy(lim);
}

/* The engine's release finds a slot's entry by address under the key's
 * hash; a resize moves the slot word, not the entry. */
Test(limiter_table, release_by_address_after_a_resize)
{
	struct sluice_limit l = slots(2, 0);
	struct sluice_limiter_options o = opts(16);
	struct sluice_limiter *lim = make(&l, &o, UINT64_C(0xffffffffff));
	struct sluice__limiter_hold hold;
	struct sluice_decision d;

	cr_assert_eq(sluice__limiter_thread_enter(lim), SLUICE_OK);
	rcu_read_lock();
	cr_assert_eq(sluice__limiter_reserve(lim, "held", 4, NULL, 1, SEC, &d, &hold), 0);
	rcu_read_unlock();
	cr_assert(d.allowed);
	for (unsigned i = 0; i < 5000; i++) {
		char k[32];
		size_t len = key_of(k, i);
		sluice_slot_handle h;
		cr_assert_eq(sluice_limiter_acquire(lim, k, len, 1, SEC, &d, &h), SLUICE_OK);
		cr_assert(d.allowed);
	}
	cr_assert_eq(sluice__limiter_release_entry(lim, hold.hash, hold.entry, hold.handle), SLUICE_OK);
	cr_assert_eq(sluice__limiter_release_entry(lim, hold.hash, hold.entry, hold.handle),
		     SLUICE_EDOUBLE, "released once");
	cr_assert_eq(sluice__limiter_release_entry(lim, hold.hash ^ 1, &hold, hold.handle),
		     SLUICE_ENOTFOUND, "an address never linked is not found");
	sluice_limiter_destroy(lim);
}

/* ---- admit_batch against admit, operation by operation ---- */

static void same_decision(const struct sluice_decision *a, const struct sluice_decision *b,
			  unsigned op)
{
	cr_assert_eq(a->allowed, b->allowed, "op %u", op);
	cr_assert_eq(a->degraded, b->degraded, "op %u", op);
	cr_assert_eq(a->reason, b->reason, "op %u", op);
	cr_assert_eq(a->limit, b->limit, "op %u", op);
	cr_assert_eq(a->remaining, b->remaining, "op %u", op);
	cr_assert_eq(a->retry_after_ns, b->retry_after_ns, "op %u", op);
	cr_assert_eq(a->reset_ns, b->reset_ns, "op %u", op);
	cr_assert_eq(a->limit_index, b->limit_index, "op %u", op);
}

static void batch_equals_one_at_a_time(uint64_t mask, uint64_t max_keys)
{
	struct sluice_limit l = gcra(10, SEC, 5);
	struct sluice_limiter_options o = opts(16);
	o.max_keys = max_keys;
	struct sluice_limiter *a = make(&l, &o, mask), *b = make(&l, &o, mask);
	enum { MAXB = 40, KEYS = 700 };
	static char names[MAXB][32];
	struct sluice_limiter_request req[MAXB];
	struct sluice_decision da[MAXB], db;
	uint64_t x = 88172645463325252ull, now = SEC;
	unsigned op = 0;

	for (unsigned round = 0; round < 600; round++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		size_t n = 1 + x % MAXB;
		for (size_t j = 0; j < n; j++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			/* repeats within a batch, new keys, peeks, big costs */
			req[j].key_len = key_of(names[j], (unsigned)(x % KEYS));
			req[j].key = names[j];
			req[j].cost = (x >> 20) % 4;
		}
		cr_assert_eq(sluice_limiter_admit_batch(a, req, n, now, da), SLUICE_OK);
		for (size_t j = 0; j < n; j++, op++) {
			cr_assert_eq(sluice_limiter_admit(b, req[j].key, req[j].key_len, req[j].cost,
							  now, &db),
				     SLUICE_OK);
			same_decision(&da[j], &db, op);
		}
		if (round % 50 == 49) { /* reclaim in both, the same way */
			size_t ga, gb;
			now += 2 * SEC;
			cr_assert_eq(sluice_limiter_sweep(a, now, 1000, &ga), SLUICE_OK);
			cr_assert_eq(sluice_limiter_sweep(b, now, 1000, &gb), SLUICE_OK);
			cr_assert_eq(ga, gb, "round %u", round);
			/* The budget is given back when the entries are freed,
			 * after a grace period: let both limiters' frees run. */
			rcu_barrier();
		}
		now += 7 * MS;
	}
	struct sluice_limiter_stats sa = stats_of(a), sb = stats_of(b);
	cr_assert_eq(sa.admitted, sb.admitted);
	cr_assert_eq(sa.denied, sb.denied);
	cr_assert_eq(sa.degraded, sb.degraded);
	cr_assert_eq(sa.inserted, sb.inserted);
	cr_assert_eq(sa.live_keys, sb.live_keys);
	sluice_limiter_destroy(a);
	sluice_limiter_destroy(b);
}

Test(limiter_table, batch_equals_one_at_a_time)
{
	batch_equals_one_at_a_time(UINT64_MAX, 0);
}

Test(limiter_table, batch_equals_one_at_a_time_on_colliding_hashes)
{
	batch_equals_one_at_a_time(UINT64_C(0x3ffff), 0);
}

Test(limiter_table, batch_equals_one_at_a_time_at_the_key_budget)
{
	batch_equals_one_at_a_time(UINT64_MAX, 300);
}
