/*
 * stress_flood.c - a flood of distinct keys against a key budget and a byte
 * budget (docs/reliability.md, "Key flood"). A plain executable.
 *
 * SLUICE_FLOOD_KEYS keys (default 10,000,000; 1,000,000 in sanitizer builds,
 * where each request costs ~10x) arrive from two threads, all distinct, at
 * one instant, so nothing can be reclaimed. Two runs:
 *   1. KEYS keys against max_keys = KEYS / 10, FAIL_CLOSED;
 *   2. KEYS / 5 keys against max_bytes = 8 MiB per 10M KEYS (about 15% of
 *      them fit), FAIL_OPEN.
 * Checked: the process survives; live keys never pass max_keys (exactly
 * max_keys at the end), the bytes charged never pass max_bytes; every
 * request is counted once (inserted + degraded == KEYS) and answered by the
 * fail mode once the budget is full; the tracked keys stay exact; and the
 * resident set grows by no more than the budget allows:
 *
 *     RSS growth <= tracked entries * 96 bytes + table slots * 32 bytes
 *                   + 16 MiB
 *
 * 96 bytes covers one entry of this policy allocated apart (a 48-byte
 * block for a 16-byte key: nothing is swept here, so no key is moved into
 * its slot) with malloc's header and rounding twice over; a slot is a
 * 32-byte inline slot of the one-GCRA policy's array, counted for twice the
 * live keys (the array's growth in steps of two); 16 MiB is slack for the
 * threads' stacks, liburcu and allocator arenas. Measured
 * figures are in docs/reliability.md. Under sanitizers the RSS check is
 * skipped (shadow memory and quarantine).
 */
#include <inttypes.h>
#include <pthread.h>
#include <sluice.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

#define THREADS 2
#define SEC 1000000000ull

static int failed, passed;

#define CHECK(cond, ...)                                                     \
	do {                                                                 \
		if (cond) {                                                  \
			passed++;                                            \
		} else {                                                     \
			failed++;                                            \
			fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
			fprintf(stderr, __VA_ARGS__);                        \
			fputc('\n', stderr);                                 \
		}                                                            \
	} while (0)

struct flood_arg {
	pthread_t th;
	struct sluice_limiter *lim;
	uint64_t first, last;
	uint64_t allowed, degraded;
};

static uint64_t rss_bytes(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	unsigned long size = 0, resident = 0;
	if (f == NULL)
		return 0;
	if (fscanf(f, "%lu %lu", &size, &resident) != 2)
		resident = 0;
	fclose(f);
	return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

static size_t key_of(uint64_t i, char *buf)
{
	/* "flood-" and 10 decimal digits: 16 bytes, distinct for every
	 * i < 10^10 (no snprintf: it would cost as much as the admit). */
	memcpy(buf, "flood-", 6);
	for (int d = 15; d >= 6; d--) {
		buf[d] = (char)('0' + i % 10);
		i /= 10;
	}
	return 16;
}

static void *flood_main(void *p)
{
	struct flood_arg *a = p;
	struct sluice_decision d;
	char key[32];

	for (uint64_t i = a->first; i < a->last; i++) {
		size_t len = key_of(i, key);
		if (sluice_limiter_admit(a->lim, key, len, 1, SEC, &d) != SLUICE_OK)
			abort();
		a->allowed += d.allowed;
		a->degraded += d.degraded;
	}
	return NULL;
}

static void run(uint64_t keys, uint64_t max_keys, uint64_t max_bytes, uint32_t mode)
{
	struct sluice_limit l = { .kind = SLUICE_LIMIT_GCRA };
	struct sluice_limiter_options o = { .size = sizeof o };
	struct sluice_limiter *lim;
	struct flood_arg args[THREADS];

	sluice_rate_init(&l.rate, 10, SEC, 10);
	o.max_keys = max_keys;
	o.max_bytes = max_bytes;
	o.fail_mode = mode;
	uint64_t rss0 = rss_bytes();
	uint64_t t0 = sluice_monotonic_ns();
	int rc = sluice_limiter_create(&lim, &l, 1, &o);
	CHECK(rc == SLUICE_OK, "create: %s", sluice_strerror(rc));
	if (rc != SLUICE_OK)
		return;
	for (int i = 0; i < THREADS; i++) {
		args[i] = (struct flood_arg){ .lim = lim, .first = keys * (uint64_t)i / THREADS,
					      .last = keys * (uint64_t)(i + 1) / THREADS };
		if (pthread_create(&args[i].th, NULL, flood_main, &args[i]) != 0)
			abort();
	}
	uint64_t allowed = 0, degraded = 0;
	for (int i = 0; i < THREADS; i++) {
		pthread_join(args[i].th, NULL);
		allowed += args[i].allowed;
		degraded += args[i].degraded;
	}
	uint64_t secs_ms = (sluice_monotonic_ns() - t0) / 1000000;
	uint64_t rss1 = rss_bytes();
	struct sluice_limiter_stats s = { .size = sizeof s };
	sluice_limiter_stats(lim, &s);

	printf("flood %" PRIu64 " keys, max_keys %" PRIu64 ", max_bytes %" PRIu64 ", fail %s: "
	       "%" PRIu64 " ms; inserted %" PRIu64 " degraded %" PRIu64 " live %" PRIu64
	       " bytes %" PRIu64 "; RSS %.1f -> %.1f MiB\n",
	       keys, max_keys, max_bytes, mode == SLUICE_FAIL_OPEN ? "open" : "closed", secs_ms,
	       s.inserted, s.degraded, s.live_keys, s.bytes, (double)rss0 / 1048576.0,
	       (double)rss1 / 1048576.0);

	CHECK(s.inserted + s.degraded == keys, "inserted %" PRIu64 " + degraded %" PRIu64, s.inserted,
	      s.degraded);
	CHECK(s.degraded == degraded, "degraded answers %" PRIu64 " vs counter %" PRIu64, degraded,
	      s.degraded);
	CHECK(s.admitted == s.inserted && s.denied == 0, "admitted %" PRIu64, s.admitted);
	CHECK(allowed == (mode == SLUICE_FAIL_OPEN ? keys : s.inserted), "allowed %" PRIu64, allowed);
	CHECK(s.live_keys == s.inserted && s.reclaimed == 0, "live %" PRIu64, s.live_keys);
	if (max_keys != 0)
		CHECK(s.live_keys == max_keys, "live %" PRIu64 " of max_keys %" PRIu64, s.live_keys,
		      max_keys);
	uint64_t entry = s.live_keys ? s.bytes / s.live_keys : 0;
	if (max_bytes != 0) {
		/* + the table share: 64 bytes of inline slots per key of the
		 * one-GCRA policy (docs/limiter.md, "Budget and fail modes"). */
		uint64_t charged = s.bytes + 64 * s.live_keys;
		CHECK(charged <= max_bytes, "charged %" PRIu64, charged);
		CHECK(charged + 2 * (entry + 64) > max_bytes, "the budget filled: %" PRIu64, charged);
	}
	/* The tracked keys still decide exactly. */
	struct sluice_decision d;
	char key[32];
	size_t len = key_of(0, key);
	bool tracked = sluice_limiter_peek(lim, key, len, SEC, &d) == SLUICE_OK && d.remaining == 9;
	len = key_of(keys - 1, key);
	tracked |= sluice_limiter_peek(lim, key, len, SEC, &d) == SLUICE_OK && d.remaining == 9;
	CHECK(tracked, "a flood key is tracked exactly");

	if (!SANITIZED) {
		uint64_t slots = 1;
		while (slots < s.live_keys * 2)
			slots <<= 1;
		uint64_t bound = s.live_keys * 96 + slots * 32 + (16u << 20);
		CHECK(rss1 <= rss0 + bound, "RSS grew %" PRIu64 " > bound %" PRIu64, rss1 - rss0, bound);
		printf("  RSS growth %.1f MiB, bound %.1f MiB (%" PRIu64 " B/entry charged)\n",
		       (double)(rss1 - rss0) / 1048576.0, (double)bound / 1048576.0, entry);
	}
	sluice_limiter_destroy(lim);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	uint64_t keys = SANITIZED ? 1000000 : 10000000;
	const char *env = getenv("SLUICE_FLOOD_KEYS");
	if (env != NULL && *env != '\0')
		keys = strtoull(env, NULL, 10);
	if (keys < 100)
		keys = 100;
	run(keys, keys / 10, 0, SLUICE_FAIL_CLOSED);
	/* A fifth of the keys against 1.28 MiB per 200,000 keys (8 MiB at the
	 * default): about 15% of them fit. */
	run(keys / 5, 0, keys / 5 * 128 / 20 * 1024 * 1024 / 1000000, SLUICE_FAIL_OPEN);
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
