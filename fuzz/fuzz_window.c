/*
 * fuzz_window.c - the three window cells against their naive reference
 * models (tests/window_model.h), operation by operation; abort on the first
 * difference in any decision field, cancel result or is_idle answer.
 *
 * Input: kind (1 byte: log, counter, calendar), limit (2 bytes), window
 * length (1 byte selecting tiny/short/long/huge, then 8 bytes), start time
 * (8 bytes), then ops of 1 + 4 + 1 bytes: op code, time step, cost. Times
 * stay within 2^22 windows of the start time (the packed cells read 2^23
 * windows apart as "backwards", by design) and saturate at the end of the
 * clock.
 */
#include <stdio.h>
#include <stdlib.h>

#include "../tests/window_model.h"
#include "fuzz.h"

#define MAX_OPS 512

/* Times stay in [lo, hi]: at most 2^22 windows apart, so the packed cells'
 * window indices never alias (2^23 apart reads as "backwards", by design:
 * docs/windows.md), whatever the order of admissions and long denials. */
struct clock_range {
	uint64_t lo, hi;
};

static uint64_t step_time(struct fuzz_input *in, uint64_t t, const struct clock_range *r, uint64_t w)
{
	uint8_t how = fuzz_u8(in);
	uint64_t step = fuzz_u64(in, 4);
	uint64_t d = w == UINT64_MAX ? step : step % (w + 1);

	switch (how % 4) {
	case 0: /* forward, up to ~4 billion ns */
		t = t > UINT64_MAX - step ? UINT64_MAX : t + step;
		break;
	case 1: /* backwards */
		t = t > step ? t - step : 0;
		break;
	case 2: /* small step within a window */
		t = t > UINT64_MAX - d ? UINT64_MAX : t + d;
		break;
	default: /* backwards within a window */
		t = t > d ? t - d : 0;
	}
	return t < r->lo ? r->lo : t > r->hi ? r->hi : t;
}

static void check(bool ok)
{
	if (!ok)
		abort();
}

/* Compare an admission with the model's; on a difference print both. */
static void check_admit(const char *kind, uint64_t t, uint64_t cost, bool ra, bool rb,
			const struct sluice_decision *a, const struct sluice_decision *b)
{
	if (ra == rb && model_same(a, b))
		return;
	fprintf(stderr,
		"%s t=%llu cost=%llu\n cell:  %d reason=%d rem=%llu reset=%llu retry=%llu\n"
		" model: %d reason=%d rem=%llu reset=%llu retry=%llu\n",
		kind, (unsigned long long)t, (unsigned long long)cost, ra, a->reason,
		(unsigned long long)a->remaining, (unsigned long long)a->reset_ns,
		(unsigned long long)a->retry_after_ns, rb, b->reason,
		(unsigned long long)b->remaining, (unsigned long long)b->reset_ns,
		(unsigned long long)b->retry_after_ns);
	abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_input in = { data, size };
	uint8_t kind = fuzz_u8(&in) % 3;
	uint64_t limit = fuzz_u64(&in, 2) % 64 + 1;
	uint8_t wsel = fuzz_u8(&in);
	uint64_t wraw = fuzz_u64(&in, 8);
	uint64_t w = wsel % 4 == 0 ? wraw % 4 + 1 : wsel % 4 == 1 ? wraw % 10000 + 1
		     : wsel % 4 == 2 ? wraw % (400ull * SLUICE_DAY_NS) + 1 : (wraw | 1);
	uint64_t t = fuzz_u64(&in, 8);
	model_u128 span = (model_u128)w << 22;
	struct clock_range range = { t, span > UINT64_MAX - t ? UINT64_MAX : t + (uint64_t)span };

	if (kind == 0) {
		struct sluice_window_log_config cfg;
		struct log_model m;
		struct sluice_window_log_receipt rc = { 0, 0, 0 };
		struct log_model_receipt mrc = { 0, 0 };
		check(sluice_window_log_config_init(&cfg, limit, w) == SLUICE_OK);
		struct sluice_window_log *cell = malloc(sluice_window_log_size(&cfg));
		check(cell != NULL);
		sluice_window_log_init(cell, &cfg);
		log_model_init(&m, limit, w);
		for (int i = 0; i < MAX_OPS && in.size > 0; i++) {
			uint8_t op = fuzz_u8(&in);
			t = step_time(&in, t, &range, w);
			uint64_t cost = fuzz_u8(&in) % (limit + 3);
			struct sluice_decision a, b;
			if (op % 8 == 0)
				check(sluice_window_log_cancel(cell, &rc) == log_model_cancel(&m, &mrc));
			else if (op % 8 == 1)
				check(sluice_window_log_is_idle(cell, &cfg, t) == log_model_idle(&m, t));
			else
			{
				bool ra = sluice_window_log_admit_receipt(cell, &cfg, t, cost, &a, &rc);
				bool rb = log_model_admit(&m, t, cost, &b, &mrc);
				check_admit("log", t, cost, ra, rb, &a, &b);
			}
		}
		log_model_free(&m);
		free(cell);
	} else if (kind == 1) {
		struct sluice_window_counter_config cfg;
		struct sluice_window_counter cell;
		struct counter_model m;
		struct sluice_window_counter_receipt rc = { 0, 0 };
		struct counter_model_receipt mrc = { 0 };
		check(sluice_window_counter_config_init(&cfg, limit, w) == SLUICE_OK);
		sluice_window_counter_init(&cell);
		counter_model_init(&m, limit, w);
		for (int i = 0; i < MAX_OPS && in.size > 0; i++) {
			uint8_t op = fuzz_u8(&in);
			t = step_time(&in, t, &range, w);
			uint64_t cost = fuzz_u8(&in) % (limit + 3);
			struct sluice_decision a, b;
			if (op % 8 == 0)
				check(sluice_window_counter_cancel(&cell, &rc) == counter_model_cancel(&m, &mrc));
			else if (op % 8 == 1)
				check(sluice_window_counter_is_idle(&cell, &cfg, t) == counter_model_idle(&m, t));
			else
			{
				bool ra = sluice_window_counter_admit_receipt(&cell, &cfg, t, cost, &a, &rc);
				bool rb = counter_model_admit(&m, t, cost, &b, &mrc);
				check_admit("counter", t, cost, ra, rb, &a, &b);
			}
		}
	} else {
		struct sluice_calendar_config cfg;
		struct sluice_calendar cell;
		struct calendar_model m;
		struct sluice_calendar_receipt rc = { 0, 0 };
		struct calendar_model_receipt mrc = { 0 };
		check(sluice_calendar_config_init(&cfg, limit, w) == SLUICE_OK);
		sluice_calendar_init(&cell);
		calendar_model_init(&m, limit, w);
		for (int i = 0; i < MAX_OPS && in.size > 0; i++) {
			uint8_t op = fuzz_u8(&in);
			t = step_time(&in, t, &range, w);
			uint64_t cost = fuzz_u8(&in) % (limit + 3);
			struct sluice_decision a, b;
			if (op % 8 == 0)
				check(sluice_calendar_cancel(&cell, &rc) == calendar_model_cancel(&m, &mrc));
			else if (op % 8 == 1)
				check(sluice_calendar_is_idle(&cell, &cfg, t) == calendar_model_idle(&m, t));
			else
			{
				bool ra = sluice_calendar_admit_receipt(&cell, &cfg, t, cost, &a, &rc);
				bool rb = calendar_model_admit(&m, t, cost, &b, &mrc);
				check_admit("calendar", t, cost, ra, rb, &a, &b);
			}
		}
	}
	return 0;
}
