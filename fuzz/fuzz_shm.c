/*
 * fuzz_shm.c - the shm keyed store (sluice/shm.h) against a simple model:
 * one cell per key (the public cell API), a set of the keys present.
 * Operation by operation: every decision equals the model cell's, nothing
 * degrades while the keys fit, the region's LIVE slots are exactly the
 * keys present, CLAIMED slots never linger, and a full sweep reclaims
 * exactly the keys whose model cell is idle (those then start fresh in the
 * model too, as sluice_limiter_sweep() documents for earlier clocks).
 *
 * Input: kind (1 byte: GCRA or calendar), limit (1 byte), then ops of
 * 1 + 1 + 2 bytes: op (admit, peek, sweep), key index, signed time step
 * (in ms; an admit's cost is the op byte's high bits). Keys: 32 at most (the
 * region's 32 slots: one probe window of all of them), every fourth one
 * longer than SLUICE_SHM_KEY_INLINE (stored as a digest).
 */
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include <sluice.h>

#include "fuzz.h"
#include "shm/zone_internal.h"

#define NKEYS 32
#define MS 1000000ull

static void check(bool ok)
{
	if (!ok)
		abort();
}

static size_t key_of(unsigned k, char *buf)
{
	if (k % 4 == 3)
		return (size_t)snprintf(buf, 96, "fuzz-key-%u-long-enough-to-be-stored-as-a-digest", k);
	return (size_t)snprintf(buf, 96, "f%u", k);
}

static bool same(const struct sluice_decision *a, const struct sluice_decision *b)
{
	return a->allowed == b->allowed && a->degraded == b->degraded && a->reason == b->reason &&
	       a->limit == b->limit && a->remaining == b->remaining && a->reset_ns == b->reset_ns &&
	       a->retry_after_ns == b->retry_after_ns;
}

union cell {
	struct sluice_gcra g;
	struct sluice_calendar c;
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static void *base;
	static size_t bytes;
	struct fuzz_input in = { data, size };
	struct sluice_limit l;
	bool cal = fuzz_u8(&in) & 1;
	uint64_t n = fuzz_u8(&in) % 16 + 1;

	memset(&l, 0, sizeof l);
	if (cal) {
		l.kind = SLUICE_LIMIT_CALENDAR;
		check(sluice_calendar_config_init(&l.calendar, n, 1000 * MS) == SLUICE_OK);
	} else {
		l.kind = SLUICE_LIMIT_GCRA;
		check(sluice_rate_init(&l.rate, n, 1000 * MS, n) == SLUICE_OK);
	}
	size_t need;
	check(sluice_shm_limiter_zone_size(&l, 1, 16, &need) == SLUICE_OK);
	if (base == NULL) {
		bytes = need;
		check(sluice_shm_map_anonymous(bytes, &base) == SLUICE_OK);
	}
	check(need == bytes);
	struct sluice_shm_info info = { .size = sizeof info };
	check(sluice_shm_limiter_zone_init(base, bytes, &l, 1, SLUICE_SHM_INIT_RESET, &info) == SLUICE_OK);
	struct sluice_limiter *lim;
	check(sluice_shm_limiter_create(&lim, base, bytes, &l, 1, NULL) == SLUICE_OK);

	union cell model[NKEYS];
	bool present[NKEYS] = { false };
	for (unsigned k = 0; k < NKEYS; k++) {
		if (cal)
			sluice_calendar_init(&model[k].c);
		else
			sluice_gcra_init(&model[k].g);
	}
	uint64_t t = UINT64_C(1795392000) * 1000 * MS;

	while (in.size > 0) {
		uint8_t op = fuzz_u8(&in);
		unsigned k = fuzz_u8(&in) % NKEYS;
		int16_t step = (int16_t)fuzz_u64(&in, 2);
		t += (uint64_t)(int64_t)step * MS;
		char key[96];
		size_t len = key_of(k, key);
		struct sluice_decision a, b;
		switch (op % 3) {
		case 0: { /* admit */
			uint64_t cost = (op >> 2) % 4 + 1;
			check(sluice_limiter_admit(lim, key, len, cost, t, &a) == SLUICE_OK);
			if (cal)
				sluice_calendar_admit(&model[k].c, &l.calendar, t, cost, &b);
			else
				sluice_gcra_admit(&model[k].g, &l.rate, t, cost, &b);
			check(!a.degraded && a.limit_index == 0 && same(&a, &b));
			present[k] = true;
			break;
		}
		case 1: /* peek */
			check(sluice_limiter_peek(lim, key, len, t, &a) == SLUICE_OK);
			if (cal)
				sluice_calendar_admit(&model[k].c, &l.calendar, t, 0, &b);
			else
				sluice_gcra_admit(&model[k].g, &l.rate, t, 0, &b);
			b.allowed = true;
			check(same(&a, &b));
			break;
		default: { /* a full sweep */
			size_t got, idle = 0;
			for (unsigned j = 0; j < NKEYS; j++) {
				if (!present[j])
					continue;
				bool is_idle = cal ? sluice_calendar_is_idle(&model[j].c, &l.calendar, t)
						   : sluice_gcra_is_idle(&model[j].g, &l.rate, t);
				if (!is_idle)
					continue;
				idle++;
				present[j] = false;
				if (cal)
					sluice_calendar_init(&model[j].c);
				else
					sluice_gcra_init(&model[j].g);
			}
			check(sluice_limiter_sweep(lim, t, (size_t)-1, &got) == SLUICE_OK);
			check(got == idle);
			break;
		}
		}
		uint64_t fr, cl, lv, np = 0;
		for (unsigned j = 0; j < NKEYS; j++)
			np += present[j];
		check(sluice__shm_census(lim, &fr, &cl, &lv) == SLUICE_OK);
		check(cl == 0 && lv == np);
	}
	sluice_limiter_destroy(lim);
	return 0;
}
