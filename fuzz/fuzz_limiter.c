/*
 * fuzz_limiter.c - random operation sequences on the keyed limiter,
 * differential against a single-threaded reference map.
 *
 * The reference keeps one plain GCRA cell per key and limit forever and
 * applies the all-or-nothing rule directly (check every limit, then take from
 * all). The limiter under test must give identical decisions although it
 * inserts, sweeps (reclaims idle entries) and re-creates entries along the
 * way: this pins the table, the reclaim and the all-or-nothing logic, and
 * batch admit against one-at-a-time. Requests use clocks up to LAG ns stale;
 * sweeps run at the clock minus LAG, the documented contract.
 *
 * One limiter per policy (one and two limits) lives for the whole run
 * (created in LLVMFuzzerInitialize; rcu_barrier at teardown costs 10 ms) and
 * is emptied at the end of every input by a sweep far in the future.
 *
 * Input: byte 0 picks the policy; then operations of a few bytes each:
 *   0 admit  key cost dt      1 batch  n (key cost)*n dt
 *   2 sweep  budget dt        3 peek   key dt
 */
#include <sluice.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

#define NKEYS 16
#define LAG 300
#define MAXBATCH 8

static struct sluice_limit limits[2];
static struct sluice_limiter *lims[2]; /* [0]: one limit, [1]: two limits */

struct ref_entry {
	bool used;
	size_t len;
	unsigned char key[8];
	struct sluice_gcra cell[2];
};

static struct ref_entry ref[NKEYS];
static uint64_t ref_admitted, ref_denied;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	struct sluice_limiter_options o;

	memset(&o, 0, sizeof o);
	o.size = sizeof o;
	o.hash_secret = "fuzz";
	o.hash_secret_len = 4;
	o.initial_buckets = 4; /* small: exercises the table's resizes */
	memset(limits, 0, sizeof limits);
	limits[0].kind = limits[1].kind = SLUICE_LIMIT_GCRA;
	if (sluice_rate_init(&limits[0].rate, 3, 100, 3) != SLUICE_OK ||
	    sluice_rate_init(&limits[1].rate, 5, 1000, 4) != SLUICE_OK ||
	    sluice_limiter_create(&lims[0], limits, 1, &o) != SLUICE_OK ||
	    sluice_limiter_create(&lims[1], limits, 2, &o) != SLUICE_OK)
		abort();
	return 0;
}

/* Key `id`: id % 6 bytes of value id (so ids 0, 6, 12 are all the empty
 * key, and keys of different lengths share prefixes). */
static size_t key_of(unsigned id, unsigned char *buf)
{
	size_t len = id % 6;
	memset(buf, (int)id, len);
	return len;
}

static struct ref_entry *ref_find(const unsigned char *key, size_t len)
{
	struct ref_entry *free_slot = NULL;
	for (int i = 0; i < NKEYS; i++) {
		if (ref[i].used && ref[i].len == len && memcmp(ref[i].key, key, len) == 0)
			return &ref[i];
		if (!ref[i].used && free_slot == NULL)
			free_slot = &ref[i];
	}
	if (free_slot == NULL)
		abort(); /* NKEYS ids can never need more */
	free_slot->used = true;
	free_slot->len = len;
	memcpy(free_slot->key, key, len);
	sluice_gcra_init(&free_slot->cell[0]);
	sluice_gcra_init(&free_slot->cell[1]);
	return free_slot;
}

static void govern(struct sluice_decision *d, uint32_t n, struct sluice_decision *out)
{
	uint32_t best = 0;
	for (uint32_t i = 1; i < n; i++)
		if (d[i].remaining < d[best].remaining ||
		    (d[i].remaining == d[best].remaining && d[i].reset_ns < d[best].reset_ns))
			best = i;
	*out = d[best];
	out->limit_index = best;
}

/* The reference: check every limit on a copy, then take from all. */
static void ref_admit(uint32_t k, const unsigned char *key, size_t len, uint64_t cost, uint64_t now,
		      struct sluice_decision *out)
{
	struct ref_entry *e = ref_find(key, len);
	struct sluice_decision d[2];

	for (uint32_t i = 0; i < k; i++) {
		struct sluice_gcra copy = e->cell[i];
		if (!sluice_gcra_admit(&copy, &limits[i].rate, now, cost, &d[i])) {
			*out = d[i];
			out->limit_index = i;
			if (cost == 0)
				out->allowed = true;
			else
				ref_denied++;
			return;
		}
	}
	if (cost != 0) {
		for (uint32_t i = 0; i < k; i++)
			if (!sluice_gcra_admit(&e->cell[i], &limits[i].rate, now, cost, &d[i]))
				abort(); /* checked above */
		ref_admitted++;
	}
	govern(d, k, out);
	out->allowed = true;
}

static void same(const struct sluice_decision *got, const struct sluice_decision *want)
{
	if (got->allowed != want->allowed || got->degraded || got->reason != want->reason ||
	    got->limit_index != want->limit_index || got->limit != want->limit ||
	    got->remaining != want->remaining || got->reset_ns != want->reset_ns ||
	    got->retry_after_ns != want->retry_after_ns) {
		fprintf(stderr,
			"mismatch: allowed %d/%d reason %d/%d index %u/%u remaining %llu/%llu "
			"reset %llu/%llu retry %llu/%llu\n",
			got->allowed, want->allowed, got->reason, want->reason, got->limit_index,
			want->limit_index, (unsigned long long)got->remaining,
			(unsigned long long)want->remaining, (unsigned long long)got->reset_ns,
			(unsigned long long)want->reset_ns, (unsigned long long)got->retry_after_ns,
			(unsigned long long)want->retry_after_ns);
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_input in = { data, size };
	uint32_t k = 1 + (fuzz_u8(&in) & 1);
	struct sluice_limiter *lim = lims[k - 1];
	struct sluice_limiter_stats before = { .size = sizeof before }, after = { .size = sizeof after };
	uint64_t clock = 1000000;
	unsigned char keys[MAXBATCH][8];
	struct sluice_limiter_request req[MAXBATCH];
	struct sluice_decision got[MAXBATCH], want;

	memset(ref, 0, sizeof ref);
	ref_admitted = ref_denied = 0;
	if (sluice_limiter_stats(lim, &before) != SLUICE_OK)
		abort();

	while (in.size > 0) {
		uint8_t op = fuzz_u8(&in) % 4;
		if (op == 0 || op == 3) {
			unsigned id = fuzz_u8(&in) % NKEYS;
			uint64_t cost = op == 3 ? 0 : fuzz_u8(&in) % 6;
			uint64_t now = clock - fuzz_u8(&in) % LAG;
			size_t len = key_of(id, keys[0]);
			int rc = op == 3 ? sluice_limiter_peek(lim, keys[0], len, now, &got[0])
					 : sluice_limiter_admit(lim, keys[0], len, cost, now, &got[0]);
			if (rc != SLUICE_OK)
				abort();
			ref_admit(k, keys[0], len, cost, now, &want);
			same(&got[0], &want);
		} else if (op == 1) {
			size_t n = fuzz_u8(&in) % (MAXBATCH + 1);
			for (size_t j = 0; j < n; j++) {
				req[j].key = keys[j];
				req[j].key_len = key_of(fuzz_u8(&in) % NKEYS, keys[j]);
				req[j].cost = fuzz_u8(&in) % 6;
			}
			uint64_t now = clock - fuzz_u8(&in) % LAG;
			if (sluice_limiter_admit_batch(lim, req, n, now, got) != SLUICE_OK)
				abort();
			for (size_t j = 0; j < n; j++) {
				ref_admit(k, req[j].key, req[j].key_len, req[j].cost, now, &want);
				same(&got[j], &want);
			}
		} else {
			size_t budget = fuzz_u8(&in) % 8, reclaimed;
			if (sluice_limiter_sweep(lim, clock - LAG, budget, &reclaimed) != SLUICE_OK ||
			    reclaimed > budget)
				abort();
		}
		clock += fuzz_u8(&in) * 3u;
	}

	/* The counters saw exactly the reference's admissions. */
	if (sluice_limiter_stats(lim, &after) != SLUICE_OK ||
	    after.admitted - before.admitted != ref_admitted ||
	    after.denied - before.denied != ref_denied || after.degraded != before.degraded)
		abort();
	/* Empty the limiter: far in the future every entry is idle. */
	size_t reclaimed;
	if (sluice_limiter_sweep(lim, UINT64_MAX - 2, SIZE_MAX, &reclaimed) != SLUICE_OK ||
	    sluice_limiter_stats(lim, &after) != SLUICE_OK || after.live_keys != 0)
		abort();
	return 0;
}
