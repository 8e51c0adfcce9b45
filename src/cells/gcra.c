/*
 * GCRA: the Generic Cell Rate Algorithm as an exact token bucket.
 *
 * A token bucket of capacity B tokens refilled at one token per T ns is fully
 * described by one number, the theoretical arrival time F ("TAT"): the time
 * at which the bucket will be full again. At time t the bucket holds
 *
 *     tokens(t) = B - (max(F, t) - t) / T                        (rational)
 *
 * so with tau = B * T (the bucket depth in ns) and debt = max(F, t) - t,
 * taking c tokens is possible iff tokens(t) >= c, that is iff
 *
 *     debt + c * T <= tau                                         (integers)
 *
 * and it moves F to max(F, t) + c * T. Both sides are integers when T is, so
 * the test is exact: no rounding anywhere when period % limit == 0. A fresh
 * cell has F = 0, i.e. full at any t >= 0.
 *
 * When period % limit != 0 we use T = ceil(period / limit). Refill is then no
 * faster than the exact bucket's while capacity is the same, so by induction
 * over the requests the cell admits, it never holds more tokens than an exact
 * bucket that took the same requests: every admission is one the exact bucket
 * allows at that point (docs/design.md, "Rounding").
 *
 * Overflow: sluice_rate_init() bounds tau <= 2^62. Every admitted state has
 * F <= t + tau; c <= B so c * T <= tau; debt is compared as
 * debt > tau - c*T, which never overflows. The only sum that can pass 2^64
 * is the new state max(F, t) + c*T, when max(F, t) is within c*T <= tau of
 * SLUICE__GCRA_TAT_MAX (UINT64_MAX - 2): such a request is denied with retry_after = SLUICE_NEVER
 * (docs/design.md, "Horizon").
 *
 * Stale clocks: every admission at time t' leaves F >= t'. A request at an
 * older t < t' therefore sees debt F - t > F - t': it is judged as at t' with
 * (t' - t) ns more debt, and an admission moves F exactly as at t'. So it
 * denies more, never less. (If no admission has landed since t, the cell has
 * no record of later times and t is simply the request's time.) For any run
 * of admissions the bound sum(cost) <= burst + (t_last - t_first) / T holds
 * whatever the order of their times (docs/design.md).
 *
 * Concurrency: the word F is the whole state and publishes nothing else, so
 * every access is relaxed: atomicity of the CAS and the single modification
 * order of one object are all the algorithm needs. F is non-decreasing in
 * that order except for sluice_gcra_cancel(), which restores a value only
 * while the word still holds the value its own admit wrote.
 */
#include <sluice/gcra.h>

#include <stdatomic.h>

#include "cells/gcra_internal.h"
#include "common/util_internal.h"

/* The admission itself - the CAS loop above, the decision it fills and the
 * division by the reciprocal below (sluice__gcra_div_interval()) - is
 * sluice__gcra_admit() in gcra_internal.h, inline so that the keyed
 * limiter's one-limit path compiles it into its own code; the public admits
 * below call it. */

/*
 * floor(n / T) for 0 <= n <= 2^62 by multiplication (Granlund and Montgomery,
 * "Division by invariant integers using multiplication", thm. 4.2, N = 62).
 * A 64-bit divide costs 20-90 cycles on current x86 and Arm cores; this costs
 * one multiply.
 *
 * T = 2^l: the quotient is a shift (m = 1, shift l). Otherwise, with
 * l = ceil(log2 T) (so 2^(l-1) < T < 2^l) and m = floor(2^(62+l) / T) + 1,
 * m*T = 2^(62+l) + e with 0 < e <= T < 2^l, so for n = qT + r
 *     n*m / 2^(62+l) = q + (r + n*e / 2^(62+l)) / T,  and  n*e < 2^(62+l)
 * for every n <= 2^62, hence r + n*e/2^(62+l) < T and the floor is q; m < 2^63
 * fits in 64 bits. n = 2^62 is reachable (tolerance_ns may equal 2^62), which
 * is why powers of two take the shift: for T = 1 the multiply would give
 * 2^62 + 1 there.
 */
static void divider_init(struct sluice_rate *rate)
{
	uint64_t t = rate->interval_ns;
	uint32_t l = 0;

	while (l < 64 && (UINT64_C(1) << l) < t)
		l++;
	if ((t & (t - 1)) == 0) {
		rate->div_magic = 1;
		rate->div_shift = l;
		return;
	}
	sluice__u128 num = (sluice__u128)1 << (62 + l);
	rate->div_magic = (uint64_t)(num / t) + 1;
	rate->div_shift = 62 + l;
}

int sluice_rate_init(struct sluice_rate *rate, uint64_t limit, uint64_t period_ns, uint64_t burst)
{
	if (rate == NULL || limit == 0 || period_ns == 0 || burst == 0)
		return SLUICE_EINVAL;

	uint64_t interval = period_ns / limit + (period_ns % limit != 0);
	if (interval > SLUICE_GCRA_MAX_TOLERANCE_NS / burst)
		return SLUICE_ERANGE;

	rate->limit = limit;
	rate->period_ns = period_ns;
	rate->burst = burst;
	rate->interval_ns = interval;
	rate->tolerance_ns = interval * burst;
	rate->exact = period_ns % limit == 0;
	divider_init(rate);
	return SLUICE_OK;
}

void sluice_gcra_init(struct sluice_gcra *cell)
{
	/* relaxed: initialisation precedes publication of the cell; whatever
	 * publishes it (thread start, RCU insert) orders this store. */
	atomic_store_explicit(&cell->tat_ns, 0, memory_order_relaxed); /* relaxed: see above */
}

bool sluice_gcra_admit(struct sluice_gcra *cell, const struct sluice_rate *rate, uint64_t now_ns,
		       uint64_t cost, struct sluice_decision *out)
{
	return sluice__gcra_admit(cell, rate, now_ns, cost, out, NULL);
}

bool sluice_gcra_admit_now(struct sluice_gcra *cell, const struct sluice_rate *rate, uint64_t cost,
			   struct sluice_decision *out)
{
	return sluice__gcra_admit(cell, rate, sluice_monotonic_ns(), cost, out, NULL);
}

bool sluice_gcra_admit_receipt(struct sluice_gcra *cell, const struct sluice_rate *rate,
			       uint64_t now_ns, uint64_t cost, struct sluice_decision *out,
			       struct sluice_gcra_receipt *receipt)
{
	if (receipt != NULL)
		receipt->before = receipt->after = 0;
	return sluice__gcra_admit(cell, rate, now_ns, cost, out, receipt);
}

bool sluice_gcra_cancel(struct sluice_gcra *cell, const struct sluice_gcra_receipt *receipt)
{
	if (receipt == NULL || receipt->before == receipt->after)
		return false;
	uint64_t expected = receipt->after;
	/* relaxed: as for admit, only this word's atomicity matters; success
	 * means no other operation landed after ours, so restoring `before` is
	 * exactly the state without our admission. */
	return atomic_compare_exchange_strong_explicit(&cell->tat_ns, &expected, receipt->before, /* relaxed/relaxed: see above */
						       memory_order_relaxed, memory_order_relaxed);
}

bool sluice_gcra_is_idle(const struct sluice_gcra *cell, const struct sluice_rate *rate,
			 uint64_t now_ns)
{
	(void)rate;
	/* relaxed: a snapshot of one word; callers that reclaim on it re-check
	 * under their own protocol (see src/limiter/sweep.c). */
	uint64_t tat = atomic_load_explicit(&((struct sluice_gcra *)cell)->tat_ns, /* relaxed: see above */
					    memory_order_relaxed);
	return tat <= now_ns;
}
