/*
 * test_shm_limiter.c - the keyed limiter on a shared-memory zone
 * (sluice/shm.h): the same decisions as the in-process limiter on random
 * traces, capacity and fail modes, sweeps, zone init (keep, reset,
 * refuse), file-backed zones.
 */
#include <criterion/criterion.h>
#include <sluice.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "limit_util.h"
#include "shm/store_internal.h"
#include "shm/zone_internal.h"

/* A zone for limits l[0 .. n) with room for keys keys, initialized. */
static void *zone_forn(const struct sluice_limit *l, size_t n, uint64_t keys, size_t *bytes)
{
	void *base;
	struct sluice_shm_info info = { .size = sizeof info };
	cr_assert_eq(sluice_shm_limiter_zone_size(l, n, keys, bytes), SLUICE_OK);
	cr_assert_eq(sluice_shm_map_anonymous(*bytes, &base), SLUICE_OK);
	cr_assert_eq(sluice_shm_limiter_zone_init(base, *bytes, l, n, 0, &info), SLUICE_OK, "%s", info.message);
	cr_assert_eq(info.formatted, 1);
	cr_assert_geq(info.capacity, keys);
	return base;
}

static void *zone_for(const struct sluice_limit *l, uint64_t keys, size_t *bytes)
{
	return zone_forn(l, 1, keys, bytes);
}

static struct sluice_limiter *shm_limn(void *base, size_t bytes, const struct sluice_limit *l, size_t n,
				       uint32_t fail_mode)
{
	struct sluice_limiter *lim;
	struct sluice_limiter_options o = { .size = sizeof o, .fail_mode = fail_mode };
	cr_assert_eq(sluice_shm_limiter_create(&lim, base, bytes, l, n, &o), SLUICE_OK);
	return lim;
}

static struct sluice_limiter *shm_lim(void *base, size_t bytes, const struct sluice_limit *l, uint32_t fail_mode)
{
	return shm_limn(base, bytes, l, 1, fail_mode);
}

static void assert_same(const struct sluice_decision *a, const struct sluice_decision *b, int step)
{
	cr_assert_eq(a->allowed, b->allowed, "step %d: allowed %d vs %d", step, a->allowed, b->allowed);
	cr_assert_eq(a->degraded, b->degraded, "step %d: degraded", step);
	cr_assert_eq(a->reason, b->reason, "step %d: reason %u vs %u", step, a->reason, b->reason);
	cr_assert_eq(a->limit_index, b->limit_index, "step %d: limit_index", step);
	cr_assert_eq(a->limit, b->limit, "step %d: limit", step);
	cr_assert_eq(a->remaining, b->remaining, "step %d: remaining %llu vs %llu", step,
		     (unsigned long long)a->remaining, (unsigned long long)b->remaining);
	cr_assert_eq(a->reset_ns, b->reset_ns, "step %d: reset_ns", step);
	cr_assert_eq(a->retry_after_ns, b->retry_after_ns, "step %d: retry_after_ns", step);
}

static uint64_t rng_next(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Key k of a trace: short ones and, for k % 4 == 3, one longer than the
 * inline size (stored as its digest). */
static size_t key_of(unsigned k, char *buf)
{
	if (k % 4 == 3)
		return (size_t)snprintf(buf, 128, "a-rather-long-api-token-that-exceeds-the-inline-size-%u", k);
	return (size_t)snprintf(buf, 128, "k%u", k);
}

/* The same random trace (admits and peeks, random keys and costs, time
 * mostly forward and sometimes backwards, sweeps) through an in-process
 * and a shm limiter of limit l: every decision equal. */
static void differentialn(const struct sluice_limit *l, size_t n, uint64_t step_ns, uint64_t seed)
{
	size_t bytes;
	void *base = zone_forn(l, n, 256, &bytes);
	struct sluice_limiter *shm = shm_limn(base, bytes, l, n, SLUICE_FAIL_OPEN), *mem;
	cr_assert_eq(sluice_limiter_create(&mem, l, n, NULL), SLUICE_OK);
	bool slots = false;
	for (size_t j = 0; j < n; j++)
		slots |= l[j].kind == SLUICE_LIMIT_SLOTS;
	sluice_slot_handle hm[64], hs[64];
	unsigned hk[64], nh = 0;
	uint64_t now = UINT64_C(1795392000) * SEC, s = seed;

	for (int step = 0; step < 20000; step++) {
		uint64_t r = rng_next(&s);
		unsigned k = (unsigned)(r % 40);
		char key[128];
		size_t klen = key_of(k, key);
		uint64_t cost = (r >> 8) % 4; /* 0: a peek */
		struct sluice_decision a, b;
		if ((r >> 16) % 16 == 0)
			now -= (r >> 20) % (3 * step_ns); /* backwards */
		else
			now += (r >> 20) % (2 * step_ns);
		if ((r >> 24) % 500 == 0) {
			size_t ra, rb;
			cr_assert_eq(sluice_limiter_sweep(mem, now, 1 << 20, &ra), SLUICE_OK);
			cr_assert_eq(sluice_limiter_sweep(shm, now, 1 << 20, &rb), SLUICE_OK);
		}
		if (slots) {
			if ((r >> 32) % 3 == 0 && nh > 0) {
				unsigned j = (unsigned)((r >> 40) % nh);
				char rk[128];
				size_t rlen = key_of(hk[j], rk);
				int ea = sluice_limiter_release(mem, rk, rlen, hm[j]);
				int eb = sluice_limiter_release(shm, rk, rlen, hs[j]);
				cr_assert_eq(ea, eb, "step %d: release %d vs %d", step, ea, eb);
				hm[j] = hm[--nh];
				hs[j] = hs[nh];
				hk[j] = hk[nh];
				continue;
			}
			sluice_slot_handle x, y;
			cr_assert_eq(sluice_limiter_acquire(mem, key, klen, cost, now, &a, &x), SLUICE_OK);
			cr_assert_eq(sluice_limiter_acquire(shm, key, klen, cost, now, &b, &y), SLUICE_OK);
			assert_same(&a, &b, step);
			cr_assert_eq(x == SLUICE_SLOT_NONE, y == SLUICE_SLOT_NONE, "step %d: handle", step);
			if (x != SLUICE_SLOT_NONE && nh < 64) {
				hm[nh] = x;
				hs[nh] = y;
				hk[nh++] = k;
			}
			continue;
		}
		cr_assert_eq(sluice_limiter_admit(mem, key, klen, cost, now, &a), SLUICE_OK);
		cr_assert_eq(sluice_limiter_admit(shm, key, klen, cost, now, &b), SLUICE_OK);
		assert_same(&a, &b, step);
	}
	struct sluice_limiter_stats sa = { .size = sizeof sa }, sb = { .size = sizeof sb };
	cr_assert_eq(sluice_limiter_stats(mem, &sa), SLUICE_OK);
	cr_assert_eq(sluice_limiter_stats(shm, &sb), SLUICE_OK);
	cr_assert_eq(sa.admitted, sb.admitted);
	cr_assert_eq(sa.denied, sb.denied);
	cr_assert_eq(sb.degraded, 0);
	sluice_limiter_destroy(mem);
	sluice_limiter_destroy(shm);
	sluice_shm_unmap(base, bytes);
}

static void differential(struct sluice_limit l, uint64_t step_ns, uint64_t seed)
{
	differentialn(&l, 1, step_ns, seed);
}

Test(shm_differential, gcra)
{
	differential(gcra(10, SEC, 5), 30 * MS, 1);
}

Test(shm_differential, sliding_counter)
{
	differential(counter(20, SEC), 20 * MS, 2);
}

Test(shm_differential, calendar)
{
	differential(calendar(15, 2 * SEC), 40 * MS, 3);
}

Test(shm_differential, slots)
{
	differential(slots(3, 0), 10 * MS, 4);
}

Test(shm_differential, slots_with_lease)
{
	differential(slots(2, 500 * MS), 50 * MS, 5);
}

Test(shm_differential, sliding_log)
{
	differential(slog(10, SEC), 30 * MS, 11);
}

Test(shm_differential, sliding_log_of_one)
{
	differential(slog(1, 100 * MS), 20 * MS, 12);
}

/* A log with a bucket (cell 0) and a counter: the log is cancelled when a
 * later cell refuses. */
Test(shm_differential, log_bucket_and_counter)
{
	struct sluice_limit l[3] = { slog(12, SEC), gcra(20, SEC, 6), counter(15, 2 * SEC) };
	differentialn(l, 3, 25 * MS, 13);
}

/* Two logs, no bucket: a COMMIT word at cell 0 (seed 002's shape). */
Test(shm_differential, two_logs)
{
	struct sluice_limit l[2] = { slog(8, SEC), slog(20, 4 * SEC) };
	differentialn(l, 2, 40 * MS, 14);
}

/* The largest log fits one entry; two of them do not. */
Test(shm_limiter, sliding_log_sizes)
{
	struct sluice_limit l[2] = { slog(SLUICE_WINDOW_LOG_MAX_LIMIT, SEC), slog(SLUICE_WINDOW_LOG_MAX_LIMIT, SEC) };
	size_t bytes;
	cr_assert_eq(sluice_shm_limiter_zone_size(l, 1, 100, &bytes), SLUICE_OK);
	cr_assert_eq(sluice_shm_limiter_zone_size(l, 2, 100, &bytes), SLUICE_ETOOBIG);
}

/* Several limits per key, all-or-nothing, in the in-process order. */
Test(shm_differential, gcra_and_calendar)
{
	struct sluice_limit l[2] = { gcra(10, SEC, 5), calendar(40, 4 * SEC) };
	differentialn(l, 2, 30 * MS, 6);
}

Test(shm_differential, two_buckets_and_a_counter)
{
	struct sluice_limit l[3] = { gcra(20, SEC, 4), counter(30, 2 * SEC), gcra(5, SEC, 8) };
	differentialn(l, 3, 20 * MS, 7);
}

Test(shm_differential, windows_and_slots)
{
	struct sluice_limit l[3] = { counter(12, SEC), slots(2, 300 * MS), calendar(25, 3 * SEC) };
	differentialn(l, 3, 25 * MS, 8);
}

Test(shm_limiter, limit_sets_refused)
{
	struct sluice_limit l[2] = { gcra(10, SEC, 10), calendar(100, 86400 * SEC) };
	struct sluice_limit two_slots[2] = { slots(2, 0), slots(3, 0) };
	size_t bytes;
	cr_assert_eq(sluice_shm_limiter_zone_size(l, 2, 100, &bytes), SLUICE_OK);
	cr_assert_eq(sluice_shm_limiter_zone_size(two_slots, 2, 100, &bytes), SLUICE_EINVAL);
	cr_assert_eq(sluice_shm_limiter_zone_size(l, 0, 100, &bytes), SLUICE_EINVAL);
	cr_assert_eq(sluice_shm_limiter_zone_size(l, 1, 0, &bytes), SLUICE_EINVAL);
	struct sluice_limit many[SLUICE_LIMITER_MAX_LIMITS + 1];
	for (size_t j = 0; j <= SLUICE_LIMITER_MAX_LIMITS; j++)
		many[j] = gcra(10 + j, SEC, 10);
	cr_assert_eq(sluice_shm_limiter_zone_size(many, SLUICE_LIMITER_MAX_LIMITS + 1, 100, &bytes), SLUICE_ETOOBIG);
	/* A zone of limits {a, b} is not a zone of {a}. */
	void *base = zone_forn(l, 2, 10, &bytes);
	struct sluice_limiter *lim;
	cr_assert_eq(sluice_shm_limiter_create(&lim, base, bytes, l, 1, NULL), SLUICE_ECORRUPT);
	sluice_shm_unmap(base, bytes);
}

/* Fill a zone beyond its capacity: the fail mode answers, degraded. */
static void fill(uint32_t fail_mode)
{
	struct sluice_limit l = gcra(1, SEC, 1);
	size_t bytes;
	void *base = zone_for(&l, 64, &bytes);
	struct sluice_limiter *lim = shm_lim(base, bytes, &l, fail_mode);
	unsigned degraded = 0, n;
	struct sluice_decision d;
	for (n = 0; n < 1000; n++) {
		char key[32];
		int len = snprintf(key, sizeof key, "key-%u", n);
		cr_assert_eq(sluice_limiter_admit(lim, key, (size_t)len, 1, SEC, &d), SLUICE_OK);
		if (d.degraded) {
			degraded++;
			cr_assert_eq(d.allowed, fail_mode == SLUICE_FAIL_OPEN);
			cr_assert_eq(d.reason, fail_mode == SLUICE_FAIL_OPEN ? SLUICE_REASON_NONE : SLUICE_REASON_CAPACITY);
		} else {
			cr_assert(d.allowed);
		}
	}
	struct sluice_limiter_stats st = { .size = sizeof st };
	cr_assert_eq(sluice_limiter_stats(lim, &st), SLUICE_OK);
	/* Every slot of the region may hold a key; none beyond. */
	cr_assert_geq(st.live_keys, 64);
	cr_assert_eq(st.live_keys + degraded, 1000);
	cr_assert_eq(st.degraded, degraded);
	/* Idle later: a new key reclaims an idle one of its window in place. */
	cr_assert_eq(sluice_limiter_admit(lim, "fresh", 5, 1, 10 * SEC, &d), SLUICE_OK);
	cr_assert(d.allowed && !d.degraded);
	sluice_limiter_destroy(lim);
	sluice_shm_unmap(base, bytes);
}

Test(shm_limiter, full_fail_open)
{
	fill(SLUICE_FAIL_OPEN);
}

Test(shm_limiter, full_fail_closed)
{
	fill(SLUICE_FAIL_CLOSED);
}

/* A window full but for one slot claimed for the key (a rival inserting
 * it; here one that died holding the claim) is not full for the key: its
 * insertion waits for the claim, takes it back once it is
 * SLUICE_SHM_CLAIM_TIMEOUT_NS old, and inserts the key there. A window
 * full with no such claim answers by the fail mode at once. */
Test(shm_limiter, full_window_waits_for_a_claim_of_the_key)
{
	struct sluice_limit l = gcra(1, SEC, 1);
	size_t bytes;
	void *base = zone_for(&l, 40, &bytes); /* 60 slots: one window of them all */
	struct sluice_limiter *lim = shm_lim(base, bytes, &l, SLUICE_FAIL_CLOSED);
	struct shm_header *h = base;
	struct shm_store s;
	sluice__shm_store_init(&s, base, (struct shm_region *)(h + 1), h->secret);
	cr_assert_eq(s.window, s.nslots);
	struct sluice_decision d;
	for (unsigned n = 0; n + 1 < s.nslots; n++) {
		char key[16];
		int len = snprintf(key, sizeof key, "key-%u", n);
		cr_assert_eq(sluice_limiter_admit(lim, key, (size_t)len, 1, SEC, &d), SLUICE_OK);
		cr_assert(d.allowed && !d.degraded, "key %u", n);
	}
	/* The last FREE slot, claimed for "rival" just now. */
	struct krepr k;
	uint64_t hash = sluice__shm_key_repr(h->secret, "rival", 5, &k), x = 0, w;
	while (st_of(w = atomic_load(&s.states[x])) != ST_FREE)
		x++;
	atomic_store(&s.states[x], make_word(ST_CLAIMED, tag_of_hash(hash), gen_of(w) + 1, claim_now()));
	uint64_t t = sluice_monotonic_ns();
	cr_assert_eq(sluice_limiter_admit(lim, "rival", 5, 1, SEC, &d), SLUICE_OK);
	t = sluice_monotonic_ns() - t;
	cr_assert(d.allowed && !d.degraded, "allowed %d degraded %d", d.allowed, d.degraded);
	cr_assert_geq(t, SLUICE_SHM_CLAIM_TIMEOUT_NS / 2, "waited %llu ns for the claim", (unsigned long long)t);
	uint64_t fl, cl, lv;
	cr_assert_eq(sluice__shm_census(lim, &fl, &cl, &lv), SLUICE_OK);
	cr_assert(fl == 0 && cl == 0 && lv == s.nslots, "free %llu claimed %llu live %llu", (unsigned long long)fl,
		  (unsigned long long)cl, (unsigned long long)lv);
	/* The entry is the key's: its one unit is taken. */
	cr_assert_eq(sluice_limiter_admit(lim, "rival", 5, 1, SEC, &d), SLUICE_OK);
	cr_assert(!d.allowed && !d.degraded);
	/* Full, no claim: refused by the fail mode without waiting. */
	t = sluice_monotonic_ns();
	cr_assert_eq(sluice_limiter_admit(lim, "another", 7, 1, SEC, &d), SLUICE_OK);
	t = sluice_monotonic_ns() - t;
	cr_assert(!d.allowed && d.degraded && d.reason == SLUICE_REASON_CAPACITY);
	cr_assert_lt(t, SLUICE_SHM_CLAIM_TIMEOUT_NS / 2);
	sluice_limiter_destroy(lim);
	sluice_shm_unmap(base, bytes);
}

Test(shm_limiter, sweep_reclaims_idle_keys)
{
	struct sluice_limit l = gcra(10, SEC, 10);
	size_t bytes, got;
	void *base = zone_for(&l, 100, &bytes);
	struct sluice_limiter *lim = shm_lim(base, bytes, &l, SLUICE_FAIL_OPEN);
	struct sluice_decision d;
	for (unsigned i = 0; i < 50; i++) {
		char key[16];
		int len = snprintf(key, sizeof key, "%u", i);
		cr_assert_eq(sluice_limiter_admit(lim, key, (size_t)len, 1, SEC, &d), SLUICE_OK);
	}
	cr_assert_eq(sluice_limiter_sweep(lim, SEC, 1 << 20, &got), SLUICE_OK);
	cr_assert_eq(got, 0, "nothing is idle yet");
	cr_assert_eq(sluice_limiter_sweep(lim, 3 * SEC, 1 << 20, &got), SLUICE_OK);
	cr_assert_eq(got, 50);
	struct sluice_limiter_stats st = { .size = sizeof st };
	cr_assert_eq(sluice_limiter_stats(lim, &st), SLUICE_OK);
	cr_assert_eq(st.live_keys, 0);
	cr_assert_eq(st.reclaimed, 50);
	/* A reclaimed key starts full again. */
	cr_assert_eq(sluice_limiter_admit(lim, "7", 1, 10, 3 * SEC, &d), SLUICE_OK);
	cr_assert(d.allowed);
	sluice_limiter_destroy(lim);
	sluice_shm_unmap(base, bytes);
}

Test(shm_limiter, time_backwards_never_over_admits)
{
	struct sluice_limit l = calendar(3, 60 * SEC);
	size_t bytes;
	void *base = zone_for(&l, 10, &bytes);
	struct sluice_limiter *lim = shm_lim(base, bytes, &l, SLUICE_FAIL_OPEN);
	struct sluice_decision d;
	unsigned admitted = 0;
	for (uint64_t t = 100 * SEC; t > 61 * SEC; t -= SEC) {
		cr_assert_eq(sluice_limiter_admit(lim, "k", 1, 1, t, &d), SLUICE_OK);
		admitted += d.allowed;
	}
	cr_assert_leq(admitted, 3 * 2, "at most the limit per window touched");
	sluice_limiter_destroy(lim);
	sluice_shm_unmap(base, bytes);
}

/* ---- zone init ---- */

Test(shm_zone, reinit_keeps_state_of_the_same_limit)
{
	struct sluice_limit l = calendar(2, 86400 * SEC);
	size_t bytes;
	void *base = zone_for(&l, 100, &bytes);
	struct sluice_limiter *lim = shm_lim(base, bytes, &l, SLUICE_FAIL_OPEN);
	struct sluice_decision d;
	cr_assert_eq(sluice_limiter_admit(lim, "tok", 3, 2, SEC, &d), SLUICE_OK);
	cr_assert(d.allowed);
	sluice_limiter_destroy(lim);
	struct sluice_shm_info info = { .size = sizeof info };
	cr_assert_eq(sluice_shm_limiter_zone_init(base, bytes, &l, 1, 0, &info), SLUICE_OK);
	cr_assert_eq(info.formatted, 0);
	cr_assert_eq(info.kept, 1);
	lim = shm_lim(base, bytes, &l, SLUICE_FAIL_OPEN);
	cr_assert_eq(sluice_limiter_admit(lim, "tok", 3, 1, 2 * SEC, &d), SLUICE_OK);
	cr_assert(!d.allowed, "the day's quota was spent before the re-init");
	sluice_limiter_destroy(lim);
	/* SLUICE_SHM_INIT_RESET drops it. */
	cr_assert_eq(sluice_shm_limiter_zone_init(base, bytes, &l, 1, SLUICE_SHM_INIT_RESET, &info), SLUICE_OK);
	cr_assert_eq(info.formatted, 1);
	lim = shm_lim(base, bytes, &l, SLUICE_FAIL_OPEN);
	cr_assert_eq(sluice_limiter_admit(lim, "tok", 3, 1, 2 * SEC, &d), SLUICE_OK);
	cr_assert(d.allowed);
	sluice_limiter_destroy(lim);
	sluice_shm_unmap(base, bytes);
}

Test(shm_zone, reinit_of_the_same_layout_writes_nothing)
{
	struct sluice_limit l = gcra(3, 60 * SEC, 3);
	size_t bytes;
	void *base = zone_for(&l, 100, &bytes);
	struct sluice_limiter *lim = shm_lim(base, bytes, &l, SLUICE_FAIL_OPEN);
	struct sluice_decision d;
	cr_assert_eq(sluice_limiter_admit(lim, "k", 1, 2, SEC, &d), SLUICE_OK);
	unsigned char *before = malloc(bytes);
	memcpy(before, base, bytes);
	/* A process keeps its limiter open across the re-init. */
	struct sluice_shm_info info = { .size = sizeof info };
	cr_assert_eq(sluice_shm_limiter_zone_init(base, bytes, &l, 1, 0, &info), SLUICE_OK);
	cr_assert_eq(info.kept, 1);
	cr_assert_eq(info.formatted, 0);
	cr_assert(memcmp(before, base, bytes) == 0, "not a byte written");
	cr_assert_eq(sluice_limiter_admit(lim, "k", 1, 1, SEC, &d), SLUICE_OK);
	cr_assert(d.allowed);
	cr_assert_eq(sluice_limiter_admit(lim, "k", 1, 1, SEC, &d), SLUICE_OK);
	cr_assert(!d.allowed, "the state before the re-init still counts");
	free(before);
	sluice_limiter_destroy(lim);
	sluice_shm_unmap(base, bytes);
}

Test(shm_zone, other_limits_refused_then_fresh)
{
	struct sluice_limit l = gcra(5, SEC, 5), other = gcra(6, SEC, 6);
	size_t bytes;
	void *base = zone_for(&l, 100, &bytes);
	struct sluice_limiter *lim;
	cr_assert_eq(sluice_shm_limiter_create(&lim, base, bytes, &other, 1, NULL), SLUICE_ECORRUPT);
	struct sluice_shm_info info = { .size = sizeof info };
	cr_assert_eq(sluice_shm_limiter_zone_init(base, bytes, &other, 1, 0, &info), SLUICE_OK);
	cr_assert_eq(info.kept, 0);
	cr_assert_eq(info.reset, 1);
	cr_assert_eq(sluice_shm_limiter_create(&lim, base, bytes, &other, 1, NULL), SLUICE_OK);
	sluice_limiter_destroy(lim);
	sluice_shm_unmap(base, bytes);
}

Test(shm_zone, incompatible_header_refused_with_a_message)
{
	struct sluice_limit l = gcra(5, SEC, 5);
	size_t bytes;
	void *base = zone_for(&l, 100, &bytes);
	struct sluice_shm_info info = { .size = sizeof info };
	/* The version field follows the 8-byte magic. */
	uint32_t v = SLUICE_SHM_FORMAT_VERSION + 1;
	memcpy((char *)base + 8, &v, sizeof v);
	cr_assert_eq(sluice_shm_limiter_zone_init(base, bytes, &l, 1, 0, &info), SLUICE_ECORRUPT);
	cr_assert(strstr(info.message, "version") != NULL, "%s", info.message);
	struct sluice_limiter *lim;
	cr_assert_eq(sluice_shm_limiter_create(&lim, base, bytes, &l, 1, NULL), SLUICE_ECORRUPT);
	/* Another size than the zone was made for. */
	v = SLUICE_SHM_FORMAT_VERSION;
	memcpy((char *)base + 8, &v, sizeof v);
	cr_assert_eq(sluice_shm_limiter_zone_init(base, bytes - 64, &l, 1, 0, &info), SLUICE_ECORRUPT);
	cr_assert(strstr(info.message, "bytes") != NULL, "%s", info.message);
	cr_assert_eq(sluice_shm_limiter_zone_init(base, bytes - 64, &l, 1, SLUICE_SHM_INIT_RESET, &info), SLUICE_OK);
	sluice_shm_unmap(base, bytes);
}

Test(shm_zone, damaged_region_refused)
{
	struct sluice_limit l = gcra(5, SEC, 5);
	size_t bytes;
	void *base = zone_for(&l, 100, &bytes);
	struct sluice_limiter *lim;
	/* The first region descriptor follows the header: break its slot
	 * count so that its bodies would lie beyond the mapping. */
	cr_assert_eq(sluice_shm_limiter_create(&lim, base, bytes, &l, 1, NULL), SLUICE_OK);
	sluice_limiter_destroy(lim);
	struct shm_region *r = (struct shm_region *)((struct shm_header *)base + 1);
	r->nslots *= 1000;
	cr_assert_eq(sluice_shm_limiter_create(&lim, base, bytes, &l, 1, NULL), SLUICE_ECORRUPT);
	/* Init formats a zone it cannot read. */
	struct sluice_shm_info info = { .size = sizeof info };
	cr_assert_eq(sluice_shm_limiter_zone_init(base, bytes, &l, 1, 0, &info), SLUICE_OK);
	cr_assert_eq(info.formatted, 1);
	cr_assert_eq(sluice_shm_limiter_create(&lim, base, bytes, &l, 1, NULL), SLUICE_OK);
	sluice_limiter_destroy(lim);
	sluice_shm_unmap(base, bytes);
}

Test(shm_zone, too_small_and_bad_arguments)
{
	struct sluice_limit l = gcra(5, SEC, 5);
	size_t one;
	cr_assert_eq(sluice_shm_limiter_zone_size(&l, 1, 1, &one), SLUICE_OK);
	void *base;
	cr_assert_eq(sluice_shm_map_anonymous(one, &base), SLUICE_OK);
	struct sluice_shm_info info = { .size = sizeof info };
	cr_assert_eq(sluice_shm_limiter_zone_init(base, one - 1, &l, 1, 0, &info), SLUICE_EFULL);
	cr_assert_eq(info.bytes, one);
	cr_assert_eq(sluice_shm_limiter_zone_init((char *)base + 8, one - 64, &l, 1, 0, &info), SLUICE_EINVAL);
	cr_assert_eq(sluice_shm_limiter_zone_init(base, one, &l, 1, 0x80, &info), SLUICE_EINVAL);
	struct sluice_limiter *lim;
	cr_assert_eq(sluice_shm_limiter_create(&lim, base, one, &l, 1, NULL), SLUICE_ECORRUPT, "not initialized");
	cr_assert_eq(sluice_shm_limiter_zone_init(base, one, &l, 1, 0, &info), SLUICE_OK);
	struct sluice_limiter_options o = { .size = sizeof o, .max_keys = 5 };
	cr_assert_eq(sluice_shm_limiter_create(&lim, base, one, &l, 1, &o), SLUICE_EINVAL);
	sluice_shm_unmap(base, one);
}

/* ---- file-backed ---- */

Test(shm_file, daily_quota_survives_unmap_and_remap)
{
	char path[] = "/tmp/sluice_shm_test_XXXXXX";
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	close(fd);
	unlink(path); /* sluice_shm_map_file creates it */
	struct sluice_limit l = calendar(3, 86400 * SEC);
	size_t bytes;
	cr_assert_eq(sluice_shm_limiter_zone_size(&l, 1, 1000, &bytes), SLUICE_OK);
	uint64_t day = UINT64_C(1795392000) * SEC;
	struct sluice_decision d;
	for (int round = 0; round < 2; round++) {
		void *base;
		struct sluice_shm_info info = { .size = sizeof info };
		cr_assert_eq(sluice_shm_map_file(path, bytes, &base), SLUICE_OK);
		cr_assert_eq(sluice_shm_limiter_zone_init(base, bytes, &l, 1, 0, &info), SLUICE_OK, "%s", info.message);
		cr_assert_eq(info.formatted, round == 0);
		struct sluice_limiter *lim = shm_lim(base, bytes, &l, SLUICE_FAIL_OPEN);
		cr_assert_eq(sluice_limiter_admit(lim, "user-42", 7, round == 0 ? 3 : 1, day + SEC, &d), SLUICE_OK);
		cr_assert_eq(d.allowed, round == 0, "round %d: the quota is handed out once", round);
		sluice_limiter_destroy(lim);
		cr_assert_eq(sluice_shm_unmap(base, bytes), SLUICE_OK);
	}
	/* A file of another format version is refused with a clear error. */
	void *base;
	cr_assert_eq(sluice_shm_map_file(path, bytes, &base), SLUICE_OK);
	uint32_t v = 99;
	memcpy((char *)base + 8, &v, sizeof v);
	struct sluice_shm_info info = { .size = sizeof info };
	cr_assert_eq(sluice_shm_limiter_zone_init(base, bytes, &l, 1, 0, &info), SLUICE_ECORRUPT);
	cr_assert(strstr(info.message, "version 99") != NULL, "%s", info.message);
	cr_assert_eq(sluice_shm_unmap(base, bytes), SLUICE_OK);
	unlink(path);
	cr_assert_eq(sluice_shm_map_file("/nonexistent-dir/zone", bytes, &base), SLUICE_EIO);
}
