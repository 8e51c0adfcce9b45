/*
 * fuzz_gcra.c - the GCRA cell against the exact token bucket
 * (tests/gcra_model.h), decision by decision; abort() on any mismatch.
 *
 * Input layout (fuzz/fuzz.h reader; missing bytes read as zero):
 *   flags       bit 0: times may go backwards; bit 1: the time base counts
 *               down from UINT64_MAX
 *   limit, period_ns, burst, base: each a length byte (0..8, mod 9) and that
 *               many big-endian bytes
 *   then requests, each: an op byte and a cost byte (>= 0xF0: a var-length
 *   cost follows; else cost = byte % 8)
 *     op & 3    0: advance by a var-length step; 1: go to the exact instant
 *               the model has `cost` tokens, +-1 ns ((op >> 2) % 3 - 1);
 *               2: back by a var-length step (if allowed) 3: same instant
 *     op & 16   admit with a receipt
 *     op & 32   then cancel the last receipt
 *
 * Checks: sluice_rate_init accepts exactly the representable rates; for an
 * exact rate at a time not older than the model's, every field equals the
 * model's; otherwise the cell admits only what the exact bucket allows and
 * never reports more tokens; retry_after is exact for the cell; "never" only
 * for cost > burst or the horizon; a cancel applies iff no admission landed
 * since its receipt and restores the state exactly.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sluice.h>

#include "../tests/gcra_model.h"
#include "fuzz.h"

#define CHECK(cond)                                                                    \
	do {                                                                           \
		if (!(cond)) {                                                         \
			fprintf(stderr, "fuzz_gcra: check failed: %s (line %d)\n", #cond, \
				__LINE__);                                             \
			abort();                                                       \
		}                                                                      \
	} while (0)

static uint64_t fuzz_var(struct fuzz_input *in)
{
	unsigned len = fuzz_u8(in) % 9;
	return fuzz_u64(in, len);
}

static void check_init(uint64_t limit, uint64_t period, uint64_t burst, int rc)
{
	if (limit == 0 || period == 0 || burst == 0) {
		CHECK(rc == SLUICE_EINVAL);
		return;
	}
	gcra_model_u128 interval = period / limit + (period % limit != 0);
	bool fits = interval * burst <= ((gcra_model_u128)1 << 62);
	CHECK(rc == (fits ? SLUICE_OK : SLUICE_ERANGE));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_input in = {data, size};
	uint8_t flags = fuzz_u8(&in);
	bool backwards = flags & 1;
	uint64_t limit = fuzz_var(&in);
	uint64_t period = fuzz_var(&in);
	uint64_t burst = fuzz_var(&in);
	uint64_t base = fuzz_var(&in);
	if (flags & 2)
		base = UINT64_MAX - base;

	struct sluice_rate rate;
	int rc = sluice_rate_init(&rate, limit, period, burst);
	check_init(limit, period, burst, rc);
	if (rc != SLUICE_OK)
		return 0;
	CHECK(rate.exact == (period % limit == 0));

	struct sluice_gcra cell;
	struct gcra_model m, saved_m;
	struct sluice_gcra_receipt receipt = {0, 0};
	bool receipt_live = false;
	uint64_t t = base;

	sluice_gcra_init(&cell);
	gcra_model_init(&m, limit, period, burst);
	memset(&saved_m, 0, sizeof(saved_m));

	for (int n = 0; n < 4096 && in.size > 0; n++) {
		uint8_t op = fuzz_u8(&in);
		uint8_t cb = fuzz_u8(&in);
		uint64_t cost = cb >= 0xF0 ? fuzz_var(&in) : (uint64_t)(cb % 8);

		switch (op & 3) {
		case 0: {
			uint64_t step = fuzz_var(&in);
			t = step > UINT64_MAX - t ? UINT64_MAX : t + step;
			break;
		}
		case 1:
			if (cost >= 1 && cost <= burst) {
				gcra_model_u128 want = gcra_model_ready_at(&m, t, cost);
				int jitter = (op >> 2) % 3 - 1;
				if (jitter < 0 && want > 0)
					want--;
				else if (jitter > 0)
					want++;
				if (want > t)
					t = want > UINT64_MAX ? UINT64_MAX : (uint64_t)want;
			}
			break;
		case 2:
			if (backwards) {
				uint64_t step = fuzz_var(&in);
				t = step > t ? 0 : t - step;
			}
			break;
		default:
			break;
		}

		struct sluice_decision d;
		struct sluice_gcra_receipt rcpt;
		bool use_receipt = op & 16;
		/* relaxed: single-threaded observation of the private word */
		uint64_t w_before = atomic_load_explicit(&cell.tat_ns, memory_order_relaxed);
		struct gcra_model before_m = m;
		bool ok = use_receipt ? sluice_gcra_admit_receipt(&cell, &rate, t, cost, &d, &rcpt)
				      : sluice_gcra_admit(&cell, &rate, t, cost, &d);
		/* relaxed: as above */
		uint64_t w_after = atomic_load_explicit(&cell.tat_ns, memory_order_relaxed);
		struct gcra_model_verdict v = gcra_model_decide(&m, t, cost);
		bool fresh = t >= m.t;

		CHECK(ok == d.allowed);
		CHECK(d.limit == limit);
		CHECK(!d.degraded && d.limit_index == 0);
		if (!ok || cost == 0)
			CHECK(w_after == w_before); /* denials and peeks write nothing */
		if (ok) {
			CHECK(d.retry_after_ns == 0 && d.reason == SLUICE_REASON_NONE);
		}
		if (cost == 0)
			CHECK(ok);

		if (!ok && d.reason == SLUICE_REASON_NEVER && cost <= burst) {
			/* the horizon: the new state would pass UINT64_MAX - 2 (the
			 * top two words are the keyed limiter's tombstones) */
			gcra_model_u128 end = (gcra_model_u128)t + d.reset_ns +
					      (gcra_model_u128)cost * rate.interval_ns;
			CHECK(end > UINT64_MAX - 2);
			CHECK(d.retry_after_ns == SLUICE_NEVER);
		} else if (v.never) {
			CHECK(!ok && d.reason == SLUICE_REASON_NEVER &&
			      d.retry_after_ns == SLUICE_NEVER);
		} else if (rate.exact && fresh) {
			CHECK(ok == v.allowed);
			CHECK(d.remaining == v.remaining);
			CHECK(d.reset_ns == v.reset_ns);
			CHECK(d.retry_after_ns == v.retry_after_ns);
		} else {
			CHECK(!ok || v.allowed); /* never over-admit */
			if (fresh) {
				if (!ok)
					v = gcra_model_decide(&m, t, 0);
				CHECK(d.remaining <= v.remaining);
				CHECK(d.reset_ns >= v.reset_ns);
			}
		}
		if (!ok && d.reason == SLUICE_REASON_RATE) {
			CHECK(d.retry_after_ns >= 1);
			struct sluice_gcra probe;
			sluice_gcra_init(&probe);
			/* relaxed: single-threaded copy */
			atomic_store_explicit(&probe.tat_ns, w_before, memory_order_relaxed);
			uint64_t at = t + d.retry_after_ns;
			CHECK(at > t);
			CHECK(!sluice_gcra_admit(&probe, &rate, at - 1, cost, NULL));
			CHECK(sluice_gcra_admit(&probe, &rate, at, cost, NULL));
		}
		if (ok && cost > 0) {
			saved_m = before_m;
			gcra_model_commit(&m, t, cost);
			if (use_receipt) {
				receipt = rcpt;
				receipt_live = true;
			} else {
				receipt_live = false;
			}
		}
		if ((op & 32) && receipt.before != receipt.after) {
			bool got = sluice_gcra_cancel(&cell, &receipt);
			CHECK(got == receipt_live);
			if (got) {
				m = saved_m;
				/* relaxed: as above */
				CHECK(atomic_load_explicit(&cell.tat_ns, memory_order_relaxed) ==
				      receipt.before);
			}
			receipt.before = receipt.after = 0;
			receipt_live = false;
		}
	}
	return 0;
}
