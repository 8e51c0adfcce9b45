/*
 * fuzz_slots.c - concurrency slots against the naive model
 * (tests/window_model.h), operation by operation; abort on the first
 * difference (acquire verdict, the legality of the chosen slot, decision
 * fields, release codes, reap counts, is_idle, peek).
 *
 * Input: slots (1 byte), TTL (2 bytes, 0: none), retry hint (2 bytes), then
 * ops of 1 + 2 + 1 bytes: op code, time step (signed), argument (which
 * issued handle to release).
 */
#include <stdlib.h>

#include "../tests/window_model.h"
#include "fuzz.h"

static void check(bool ok)
{
	if (!ok)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_input in = { data, size };
	struct sluice_slots_config cfg;
	static struct slots_model m; /* 32 KiB of last_reaped: keep it off the stack */
	uint64_t n = fuzz_u8(&in) % 8 + 1, ttl = fuzz_u64(&in, 2), hint = fuzz_u64(&in, 2);

	check(sluice_slots_config_init(&cfg, n, ttl, hint) == SLUICE_OK);
	struct sluice_slots *cell = malloc(sluice_slots_size(&cfg));
	struct sluice_slots *other = malloc(sluice_slots_size(&cfg));
	check(cell != NULL && other != NULL);
	sluice_slots_init(cell, &cfg);
	sluice_slots_init(other, &cfg);
	slots_model_init(&m, &cfg);
	sluice_slot_handle foreign;
	struct sluice_decision d;
	check(sluice_slots_acquire(other, &cfg, 0, &d, &foreign));
	uint64_t t = 1u << 20;

	for (int i = 0; i < 1024 && in.size > 0; i++) {
		uint8_t op = fuzz_u8(&in);
		int64_t step = (int16_t)fuzz_u64(&in, 2);
		uint8_t arg = fuzz_u8(&in);
		t = step < 0 && (uint64_t)-step > t ? 0 : t + (uint64_t)step;
		switch (op % 6) {
		case 0:
		case 1: {
			sluice_slot_handle h;
			bool ok = sluice_slots_acquire(cell, &cfg, t, &d, &h);
			check(slots_model_acquire(&m, t, ok, h, &d));
			break;
		}
		case 2:
		case 3:
			if (m.n > 0) {
				sluice_slot_handle h = m.h[arg % m.n].handle;
				int want = slots_model_release(&m, h);
				check(sluice_slots_release(cell, &cfg, h) == want);
			}
			break;
		case 4:
			check(sluice_slots_reap(cell, &cfg, t) == slots_model_reap(&m, t));
			break;
		default:
			check(sluice_slots_release(cell, &cfg, foreign) == SLUICE_ESTALE);
			check(sluice_slots_is_idle(cell, &cfg, t) == (m.live == 0));
			check(sluice_slots_peek(cell, &cfg, t, &d) == (m.live < m.slots));
			check(d.remaining == m.slots - m.live);
		}
	}
	slots_model_free(&m);
	free(cell);
	free(other);
	return 0;
}
