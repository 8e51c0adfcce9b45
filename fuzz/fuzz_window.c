/*
 * fuzz_window.c - the three window cells against their naive reference
 * models (tests/window_model.h), operation by operation; abort on the first
 * difference in any decision field, cancel result or is_idle answer.
 *
 * Input: kind (1 byte: log, counter, calendar), limit (2 bytes), window
 * length (1 byte selecting tiny/short/long/huge, then 8 bytes), start time
 * (8 bytes), then ops of 1 + 4 + 1 bytes: op code, time step, cost. Time
 * steps are bounded so that window indices stay within 2^22 of the latest
 * (the packed cells read 2^23 windows apart as "backwards", by design), and
 * saturate at the end of the clock.
 */
#include <stdlib.h>

#include "../tests/window_model.h"
#include "fuzz.h"

#define MAX_OPS 512

static uint64_t step_time(struct fuzz_input *in, uint64_t t, uint64_t *latest, uint64_t w)
{
	uint8_t how = fuzz_u8(in);
	uint64_t step = fuzz_u64(in, 4);
	model_u128 span = (model_u128)w << 20; /* at most 2^20 windows */
	uint64_t d = span > UINT64_MAX ? step : (uint64_t)((model_u128)step % (span + 1));

	switch (how % 4) {
	case 0: /* forward */
		t = t > UINT64_MAX - d ? UINT64_MAX : t + d;
		break;
	case 1: /* backwards, bounded from the latest */
		t = t > d ? t - d : 0;
		if ((model_u128)t + span < *latest)
			t = (uint64_t)(*latest - span);
		break;
	case 2: /* small step within a window */
		d = w == UINT64_MAX ? step : step % (w + 1);
		t = t > UINT64_MAX - d ? UINT64_MAX : t + d;
		break;
	default:
		t = *latest;
	}
	if (t > *latest)
		*latest = t;
	return t;
}

static void check(bool ok)
{
	if (!ok)
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
	uint64_t t = fuzz_u64(&in, 8), latest = t;

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
			t = step_time(&in, t, &latest, w);
			uint64_t cost = fuzz_u8(&in) % (limit + 3);
			struct sluice_decision a, b;
			if (op % 8 == 0)
				check(sluice_window_log_cancel(cell, &rc) == log_model_cancel(&m, &mrc));
			else if (op % 8 == 1)
				check(sluice_window_log_is_idle(cell, &cfg, t) == log_model_idle(&m, t));
			else
				check(sluice_window_log_admit_receipt(cell, &cfg, t, cost, &a, &rc) ==
					      log_model_admit(&m, t, cost, &b, &mrc) &&
				      model_same(&a, &b));
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
			t = step_time(&in, t, &latest, w);
			uint64_t cost = fuzz_u8(&in) % (limit + 3);
			struct sluice_decision a, b;
			if (op % 8 == 0)
				check(sluice_window_counter_cancel(&cell, &rc) == counter_model_cancel(&m, &mrc));
			else if (op % 8 == 1)
				check(sluice_window_counter_is_idle(&cell, &cfg, t) == counter_model_idle(&m, t));
			else
				check(sluice_window_counter_admit_receipt(&cell, &cfg, t, cost, &a, &rc) ==
					      counter_model_admit(&m, t, cost, &b, &mrc) &&
				      model_same(&a, &b));
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
			t = step_time(&in, t, &latest, w);
			uint64_t cost = fuzz_u8(&in) % (limit + 3);
			struct sluice_decision a, b;
			if (op % 8 == 0)
				check(sluice_calendar_cancel(&cell, &rc) == calendar_model_cancel(&m, &mrc));
			else if (op % 8 == 1)
				check(sluice_calendar_is_idle(&cell, &cfg, t) == calendar_model_idle(&m, t));
			else
				check(sluice_calendar_admit_receipt(&cell, &cfg, t, cost, &a, &rc) ==
					      calendar_model_admit(&m, t, cost, &b, &mrc) &&
				      model_same(&a, &b));
		}
	}
	return 0;
}
