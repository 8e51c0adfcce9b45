/*
 * limiter.c - the keyed limiter (include/sluice/limiter.h): per-key state
 * for any number of keys, several limits per key decided all-or-nothing,
 * concurrency slots, reclaim of idle keys and statistics.
 *
 * Two limiters: `rates` holds two token buckets per key (4 per second and
 * 6 per minute; a request passes only if both admit it, and a denied one
 * consumes from neither); `inflight` holds 2 concurrency slots per key,
 * taken with acquire and given back with release. Every call is
 * thread-safe; this program uses one thread and an explicit clock.
 */
#include <sluice.h>
#include <stdio.h>
#include <string.h>

#include "check.h"

#define SEC SLUICE_NS_PER_SEC

static bool admit(struct sluice_limiter *lim, const char *key, uint64_t now_ns,
		  struct sluice_decision *d)
{
	CHECK_RC(sluice_limiter_admit(lim, key, strlen(key), 1, now_ns, d));
	printf("%-6s at %3llu s: %s (limit %u, remaining %llu)\n", key,
	       (unsigned long long)(now_ns / SEC), d->allowed ? "allowed" : "denied ",
	       d->limit_index, (unsigned long long)d->remaining);
	return d->allowed;
}

int main(void)
{
	struct sluice_limit rate_limits[2] = {{.kind = SLUICE_LIMIT_GCRA}, {.kind = SLUICE_LIMIT_GCRA}};
	struct sluice_limit slot_limit = {.kind = SLUICE_LIMIT_SLOTS};
	struct sluice_limiter *rates = NULL, *inflight = NULL;
	struct sluice_decision d;
	uint64_t t0 = 1000 * SEC;

	/* Periods that are multiples of the limit (250 ms, 10 s per token)
	 * make every decision exact. */
	CHECK_RC(sluice_rate_init(&rate_limits[0].rate, 4, SEC, 4));      /* 4/s */
	CHECK_RC(sluice_rate_init(&rate_limits[1].rate, 6, 60 * SEC, 6)); /* 6/min */
	CHECK_RC(sluice_slots_config_init(&slot_limit.slots, 2, 0, 0));   /* 2 at once */
	/* NULL options: no key budget, malloc/free, a random hash secret. */
	CHECK_RC(sluice_limiter_create(&rates, rate_limits, 2, NULL));
	CHECK_RC(sluice_limiter_create(&inflight, &slot_limit, 1, NULL));
	if (rates == NULL || inflight == NULL)
		return check_exit("limiter");

	/* alice: four at once pass, the fifth is refused by the 4/s limit
	 * (limit_index 0) and consumes nothing from the 6/min one. */
	for (int i = 0; i < 4; i++)
		CHECK(admit(rates, "alice", t0, &d));
	CHECK(!admit(rates, "alice", t0, &d) && d.limit_index == 0);
	/* A second later the 4/s bucket has refilled, but only 2 of the 6
	 * per minute are left: the minute limit governs. */
	CHECK(admit(rates, "alice", t0 + SEC, &d) && admit(rates, "alice", t0 + SEC, &d));
	CHECK(!admit(rates, "alice", t0 + SEC, &d) && d.limit_index == 1);
	CHECK(d.reason == SLUICE_REASON_RATE && d.retry_after_ns > 0);
	/* Keys are independent. */
	CHECK(admit(rates, "bob", t0 + SEC, &d) && d.remaining == 3);

	/* Slots: two holders at once, the third is refused until one leaves. */
	sluice_slot_handle h1, h2, h3;
	CHECK_RC(sluice_limiter_acquire(inflight, "alice", 5, 1, t0, &d, &h1));
	CHECK(d.allowed && h1 != SLUICE_SLOT_NONE);
	CHECK_RC(sluice_limiter_acquire(inflight, "alice", 5, 1, t0, &d, &h2));
	CHECK(d.allowed);
	CHECK_RC(sluice_limiter_acquire(inflight, "alice", 5, 1, t0, &d, &h3));
	CHECK(!d.allowed && d.reason == SLUICE_REASON_CONCURRENCY && h3 == SLUICE_SLOT_NONE);
	CHECK_RC(sluice_limiter_release(inflight, "alice", 5, h1));
	CHECK(sluice_limiter_release(inflight, "alice", 5, h1) == SLUICE_EDOUBLE);
	CHECK_RC(sluice_limiter_acquire(inflight, "alice", 5, 1, t0, &d, &h3));
	CHECK(d.allowed);
	printf("slots: 2 held, a third refused, one released, taken again\n");

	/* Reclaim: two minutes later every bucket is full again, so the
	 * entries carry no information and a sweep frees them (a key coming
	 * back later gets the same decisions as if it had been kept). A key
	 * holding a slot is never idle. */
	size_t reclaimed = 0;
	CHECK_RC(sluice_limiter_sweep(rates, t0 + 120 * SEC, 1000, &reclaimed));
	CHECK(reclaimed == 2);
	CHECK_RC(sluice_limiter_sweep(inflight, t0 + 120 * SEC, 1000, &reclaimed));
	CHECK(reclaimed == 0);

	/* Statistics: set size first (the struct is versioned). */
	struct sluice_limiter_stats st = {.size = sizeof st};
	CHECK_RC(sluice_limiter_stats(rates, &st));
	printf("stats: admitted %llu, denied %llu, inserted %llu, reclaimed %llu, live %llu\n",
	       (unsigned long long)st.admitted, (unsigned long long)st.denied,
	       (unsigned long long)st.inserted, (unsigned long long)st.reclaimed,
	       (unsigned long long)st.live_keys);
	CHECK(st.admitted == 7 && st.denied == 2);
	CHECK(st.inserted == 2 && st.reclaimed == 2 && st.live_keys == 0);

	CHECK_RC(sluice_limiter_release(inflight, "alice", 5, h2));
	CHECK_RC(sluice_limiter_release(inflight, "alice", 5, h3));
	sluice_limiter_destroy(inflight);
	sluice_limiter_destroy(rates);
	return check_exit("limiter");
}
