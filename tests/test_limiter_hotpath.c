/*
 * test_limiter_hotpath.c - the keyed limiter's tuned hot path
 * (docs/limiter.md, "Hot path"): the inline key compare
 * (src/limiter/key_internal.h) and the single-pass one-limit GCRA admission
 * (decide_gcra1 in src/limiter/decide.c), each against a reference:
 * memcmp() for the compare, a standalone GCRA cell for the decisions.
 */
#include <criterion/criterion.h>
#include <sluice.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include <urcu.h>

#include "limiter/key_internal.h"
#include "limiter/limiter_internal.h"
#include "limit_util.h"


#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED_MEMORY 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define SANITIZED_MEMORY 1
#endif
#endif

static struct sluice_limiter *make(const struct sluice_limit *l, size_t n)
{
	struct sluice_limiter *lim = NULL;

	cr_assert_eq(sluice_limiter_create(&lim, l, n, NULL), SLUICE_OK);
	return lim;
}

static uint64_t rng(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
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

/* ---- the inline key compare ---- */

/* Every length 0..80 (inline up to 32, memcmp beyond), both keys at every
 * alignment 0..7, equal keys, and a difference at every position (low and
 * high bit): the answer is memcmp()'s. */
Test(limiter_hotpath, key_equal_agrees_with_memcmp_at_every_length_position_alignment)
{
	unsigned char a_buf[96], b_buf[96];

	for (size_t len = 0; len <= 80; len++) {
		for (size_t oa = 0; oa < 8; oa++) {
			size_t ob = (oa * 3 + len) % 8;
			unsigned char *a = a_buf + oa, *b = b_buf + ob;
			for (size_t i = 0; i < len; i++)
				a[i] = b[i] = (unsigned char)(i * 37 + len);
			cr_assert(sluice__key_equal(a, b, len), "len %zu equal", len);
			for (size_t i = 0; i < len; i++) {
				for (int bit = 0; bit < 8; bit += 7) {
					b[i] ^= (unsigned char)(1u << bit);
					cr_assert_eq(sluice__key_equal(a, b, len), memcmp(a, b, len) == 0);
					cr_assert_not(sluice__key_equal(a, b, len),
						      "len %zu, byte %zu, bit %d", len, i, bit);
					b[i] ^= (unsigned char)(1u << bit);
				}
			}
		}
	}
}

/* Random keys over a 2-letter alphabet: many equal pairs and many that differ
 * in a single byte anywhere. */
Test(limiter_hotpath, key_equal_agrees_with_memcmp_on_random_keys)
{
	unsigned char a[40], b[40];
	uint64_t x = 0x9e3779b97f4a7c15ull;
	int equal = 0;

	for (int n = 0; n < 200000; n++) {
		size_t len = (size_t)(rng(&x) % 41);
		uint64_t bits = rng(&x), bits2 = rng(&x);
		for (size_t i = 0; i < len; i++) {
			a[i] = (unsigned char)('a' + ((bits >> (i % 64)) & 1));
			b[i] = a[i];
		}
		if (len > 0 && (bits2 & 1))
			b[(bits2 >> 1) % len] ^= 1;
		bool want = memcmp(a, b, len) == 0;
		cr_assert_eq(sluice__key_equal(a, b, len), want, "len %zu", len);
		equal += want;
	}
	cr_assert_gt(equal, 1000);
}

/* Through the table, at the lengths where the compare changes method: the
 * same key finds its entry again (the compare says equal on the real entry
 * layout), and keys differing in their first or last byte are other entries.
 * (Distinct keys reach the compare only on a 64-bit hash collision, so the
 * unequal answers are pinned by the two tests above.) */
Test(limiter_hotpath, keys_differing_in_one_byte_are_distinct_entries)
{
	struct sluice_limit l = gcra(1, SEC, 1);
	struct sluice_limiter *lim = make(&l, 1);
	static const size_t lens[] = { 1, 2, 3, 4, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 64, 1024 };
	static unsigned char key[1024];
	struct sluice_decision d;
	uint64_t n = 0;

	for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
		size_t len = lens[li];
		for (int where = 0; where < 2; where++) {
			memset(key, 'k', len);
			key[where == 0 ? 0 : len - 1] = (unsigned char)('0' + where + 2 * (int)li);
			cr_assert_eq(sluice_limiter_admit(lim, key, len, 1, SEC, &d), SLUICE_OK);
			cr_assert(d.allowed, "len %zu: a new key", len);
			n++;
			cr_assert_eq(sluice_limiter_admit(lim, key, len, 1, SEC, &d), SLUICE_OK);
			cr_assert_not(d.allowed, "len %zu: the same key again", len);
		}
	}
	struct sluice_limiter_stats s;
	memset(&s, 0, sizeof s);
	s.size = sizeof s;
	cr_assert_eq(sluice_limiter_stats(lim, &s), SLUICE_OK);
	/* len 1: both keys change byte 0, to '0' and '1': still distinct. */
	cr_assert_eq(s.inserted, n);
	sluice_limiter_destroy(lim);
}

/* ---- the one-limit GCRA path ---- */

/* 20000 random requests on a few keys: costs 0 (peek), 1, 2, burst and
 * burst + 1 (never), times that mostly advance but also jump back (stale
 * clocks) and sit at 0; every field equals a standalone cell's decision. */
Test(limiter_hotpath, one_limit_decides_as_a_standalone_cell_field_by_field)
{
	struct sluice_limit l = gcra(7, 3 * SEC, 5); /* inexact: interval rounds up */
	struct sluice_limiter *lim = make(&l, 1);
	struct sluice_gcra cell[4];
	struct sluice_decision got, want;
	uint64_t x = 12345, t = 10 * SEC;
	static const uint64_t costs[] = { 0, 1, 1, 1, 2, 5, 6 };

	for (int i = 0; i < 4; i++)
		sluice_gcra_init(&cell[i]);
	for (int step = 0; step < 20000; step++) {
		uint64_t r = rng(&x);
		int k = (int)(r % 4);
		uint64_t cost = costs[(r >> 8) % 7];
		uint64_t now = t;
		switch ((r >> 16) % 8) {
		case 0:
			now = t > SEC ? t - (r >> 24) % SEC : 0; /* stale */
			break;
		case 1:
			now = 0;
			break;
		default:
			t += (r >> 24) % (SEC / 2);
			now = t;
		}
		char key[2] = { 'a', (char)('0' + k) };
		cr_assert_eq(sluice_limiter_admit(lim, key, 2, cost, now, &got), SLUICE_OK);
		bool ok = sluice_gcra_admit(&cell[k], &l.rate, now, cost, &want);
		cr_assert_eq(got.allowed, ok, "step %d", step);
		assert_same_decision(&got, &want, step);
	}
	sluice_limiter_destroy(lim);
}

/* The end of the clock: a request whose new state would pass the horizon is
 * denied "never" (not mistaken for a dead entry: the call returns), one that
 * lands exactly on it is admitted, and the key keeps working afterwards as a
 * standalone cell does. */
Test(limiter_hotpath, one_limit_at_the_horizon)
{
	struct sluice_limit l = gcra(1, SEC, 2);
	struct sluice_limiter *lim = make(&l, 1);
	struct sluice_gcra cell;
	struct sluice_decision got, want;
	const uint64_t need = l.rate.interval_ns;
	const uint64_t times[] = { UINT64_MAX, UINT64_MAX - 1, UINT64_MAX - 2,
				   UINT64_MAX - 2 - need + 1, UINT64_MAX - 2 - need,
				   UINT64_MAX - 2 - need, SEC, 0 };

	sluice_gcra_init(&cell);
	for (int i = 0; i < (int)(sizeof times / sizeof times[0]); i++) {
		cr_assert_eq(sluice_limiter_admit(lim, "h", 1, 1, times[i], &got), SLUICE_OK);
		bool ok = sluice_gcra_admit(&cell, &l.rate, times[i], 1, &want);
		cr_assert_eq(got.allowed, ok, "step %d", i);
		assert_same_decision(&got, &want, i);
	}
	/* A fresh key at the very end of the clock: never. */
	cr_assert_eq(sluice_limiter_admit(lim, "h2", 2, 1, UINT64_MAX, &got), SLUICE_OK);
	cr_assert_not(got.allowed);
	cr_assert_eq(got.reason, SLUICE_REASON_NEVER);
	cr_assert_eq(got.retry_after_ns, SLUICE_NEVER);
	sluice_limiter_destroy(lim);
}

/* The engine's reserve/cancel on a one-limit policy: an admission with a
 * receipt is undone exactly; after another admission landed on top, the
 * cancel leaves the consumption (conservative); a denial holds nothing. */
Test(limiter_hotpath, one_limit_reserve_then_cancel)
{
	struct sluice_limit l = gcra(10, SEC, 5);
	struct sluice_limiter *lim = make(&l, 1);
	struct sluice__limiter_hold hold;
	struct sluice_decision d, before;

	cr_assert_eq(sluice_limiter_admit(lim, "r", 1, 2, SEC, &d), SLUICE_OK);
	cr_assert_eq(sluice_limiter_peek(lim, "r", 1, SEC, &before), SLUICE_OK);
	cr_assert_eq(before.remaining, 3);

	cr_assert_eq(sluice__limiter_thread_enter(lim), SLUICE_OK);
	rcu_read_lock();
	cr_assert_eq(sluice__limiter_reserve(lim, "r", 1, NULL, 2, SEC, &d, &hold), 0);
	cr_assert(d.allowed);
	cr_assert_not_null(hold.entry);
	cr_assert_eq(hold.handle, SLUICE_SLOT_NONE);
	cr_assert_eq(d.remaining, 1);
	sluice__limiter_cancel(lim, &hold);
	rcu_read_unlock();
	cr_assert_eq(sluice_limiter_peek(lim, "r", 1, SEC, &d), SLUICE_OK);
	cr_assert_eq(d.remaining, before.remaining);
	cr_assert_eq(d.reset_ns, before.reset_ns);

	rcu_read_lock();
	cr_assert_eq(sluice__limiter_reserve(lim, "r", 1, NULL, 1, SEC, &d, &hold), 0);
	cr_assert(d.allowed);
	rcu_read_unlock();
	cr_assert_eq(sluice_limiter_admit(lim, "r", 1, 1, SEC, &d), SLUICE_OK);
	cr_assert_eq(d.remaining, 1);
	rcu_read_lock();
	sluice__limiter_cancel(lim, &hold); /* another admission is on top */
	cr_assert_eq(sluice__limiter_reserve(lim, "r", 1, NULL, 2, SEC, &d, &hold), 0);
	cr_assert_not(d.allowed);
	cr_assert_null(hold.entry);
	rcu_read_unlock();
	cr_assert_eq(sluice_limiter_peek(lim, "r", 1, SEC, &d), SLUICE_OK);
	cr_assert_eq(d.remaining, 1);
	sluice_limiter_destroy(lim);
}

/* ---- the table's bucket allocator ---- */

/* A budget of 2^28 keys makes the table reserve 2^28 * 16 bytes (4 GiB) of
 * address space for liburcu's mmap bucket allocator, which aborts the
 * process if that reservation fails. Under an address-space limit below that, create
 * must notice first and fall back to the order allocator: the limiter
 * works, nothing crashes. (Criterion runs each test in its own process, so
 * the limit dies with it.) */
/* initial_buckets is taken as given, and liburcu cannot fail gracefully when
 * the bucket array cannot be had: it asserts (order allocator) or aborts
 * (mmap allocator). Create aborted on initial_buckets = 2^40 (and, without
 * the address-space cap, grew until the OOM killer stepped in). Now: above
 * 2^32 is SLUICE_ETOOBIG, an array that cannot be mapped SLUICE_ENOMEM. */
Test(limiter_hotpath, create_refuses_a_table_it_cannot_allocate)
{
#ifdef SANITIZED_MEMORY
	cr_skip_test("sanitizers map their shadow memory beyond any small RLIMIT_AS");
#else
	struct rlimit rl;
	cr_assert_eq(getrlimit(RLIMIT_AS, &rl), 0);
	const rlim_t cap = (rlim_t)3 << 30; /* 3 GiB: below 2^28 buckets (4 GiB) */
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < cap)
		cr_skip_test("hard RLIMIT_AS already below 3 GiB");
	rl.rlim_cur = cap;
	cr_assert_eq(setrlimit(RLIMIT_AS, &rl), 0);

	struct sluice_limit l = gcra(10, SEC, 2);
	const uint64_t sizes[] = { UINT64_C(1) << 63, UINT64_C(1) << 40, (UINT64_C(1) << 32) * 2 };
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		for (int budget = 0; budget < 2; budget++) {
			struct sluice_limiter_options o = { .size = sizeof o, .initial_buckets = sizes[i],
							    .max_keys = budget ? sizes[i] : 0 };
			struct sluice_limiter *lim = (struct sluice_limiter *)&o;
			cr_assert_eq(sluice_limiter_create(&lim, &l, 1, &o), SLUICE_ETOOBIG,
				     "2^%d buckets", __builtin_ctzll(sizes[i]));
			cr_assert_null(lim);
		}
	}
	/* 2^28 buckets (4 GiB of bucket nodes): cannot be mapped under the cap,
	 * with either of liburcu's allocators. */
	for (int budget = 0; budget < 2; budget++) {
		struct sluice_limiter_options o = { .size = sizeof o,
						    .initial_buckets = UINT64_C(1) << 28,
						    .max_keys = budget ? UINT64_C(1) << 28 : 0 };
		struct sluice_limiter *lim = (struct sluice_limiter *)&o;
		cr_assert_eq(sluice_limiter_create(&lim, &l, 1, &o), SLUICE_ENOMEM, "budget %d",
			     budget);
		cr_assert_null(lim);
	}
	/* A size that fits still works. */
	struct sluice_limiter_options o = { .size = sizeof o, .initial_buckets = UINT64_C(1) << 16 };
	struct sluice_limiter *lim = NULL;
	cr_assert_eq(sluice_limiter_create(&lim, &l, 1, &o), SLUICE_OK);
	struct sluice_decision d;
	cr_assert_eq(sluice_limiter_admit(lim, "k", 1, 1, SEC, &d), SLUICE_OK);
	cr_assert(d.allowed);
	sluice_limiter_destroy(lim);
#endif
}

Test(limiter_hotpath, create_falls_back_under_a_small_address_space_limit)
{
#ifdef SANITIZED_MEMORY
	cr_skip_test("sanitizers map their shadow memory beyond any small RLIMIT_AS");
#else
	struct rlimit rl;
	cr_assert_eq(getrlimit(RLIMIT_AS, &rl), 0);
	const rlim_t cap = (rlim_t)3 << 30; /* 3 GiB: below one 4 GiB reservation */
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < cap)
		cr_skip_test("hard RLIMIT_AS already below 3 GiB");
	rl.rlim_cur = cap;
	cr_assert_eq(setrlimit(RLIMIT_AS, &rl), 0);

	struct sluice_limit l = gcra(10, SEC, 2);
	struct sluice_limiter_options o = { .size = sizeof o, .max_keys = UINT64_C(1) << 28 };
	struct sluice_limiter *lim = NULL;
	cr_assert_eq(sluice_limiter_create(&lim, &l, 1, &o), SLUICE_OK);
	struct sluice_decision d;
	char key[16];
	for (int i = 0; i < 5000; i++) {
		int len = snprintf(key, sizeof key, "k%d", i);
		cr_assert_eq(sluice_limiter_admit(lim, key, (size_t)len, 1, SEC, &d), SLUICE_OK);
		cr_assert(d.allowed);
	}
	cr_assert_eq(sluice_limiter_admit(lim, "k7", 2, 2, SEC, &d), SLUICE_OK);
	cr_assert_not(d.allowed, "the key's state survived: 1 of 2 left");
	sluice_limiter_destroy(lim);
#endif
}
