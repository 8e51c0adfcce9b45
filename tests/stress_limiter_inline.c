/*
 * stress_limiter_inline.c - the keyed limiter's inline slots under
 * concurrency (src/limiter/table.c, "Moving in"), with conservation checked
 * exactly in both directions. A plain executable (runs under TSan).
 *
 * A round: a one-GCRA limiter (the policy whose short keys move into the
 * index's slots) with a tiny first array (initial_buckets 4), K tracked keys
 * (half of at most 16 bytes, half longer; key 0 is the empty key) and a rate
 * so slow (1 unit per 2^40 ns, burst B) that nothing refills at a window's
 * fixed time. During each window:
 *   - THREADS workers admit random tracked keys at cost 1 (one in four
 *     requests through admit_batch, four keys at a time; half the picks go
 *     to HOT keys, so admissions race on the keys being moved), on past
 *     the exhaustion of every key, until the inserter below has added
 *     FRESH_PER_WINDOW keys in the window;
 *   - a sweeper calls sluice_limiter_sweep() at the window's time in a loop:
 *     it moves in keys whose insertion found the lock taken, and from the
 *     second window on first reclaims the keys that the window's refill
 *     made idle while workers re-admit them (each re-admission an insertion
 *     that moves its key in while other workers admit it);
 *   - an inserter admits fresh keys, so the array resizes again and again
 *     (each resize moves every inline key once more: settle_forwarded());
 *   - a peeker peeks random tracked keys, or asks the engine's dry run
 *     (sluice__limiter_check()) about one unit: a key's remaining never
 *     rises within a window and never exceeds B minus its admissions
 *     counted so far.
 * At the end of the window every tracked key has admitted exactly B (more:
 * a lost update, e.g. a move that dropped an admission; fewer: units
 * consumed without an admission) and its next admit is denied. Windows are
 * B * 2^40 ns apart, so each starts with every key full.
 *
 * After each round (threads joined, rcu_barrier()): moves happened
 * (stats.bytes below the bytes of every live key allocated apart, from
 * sluice__limiter_foreach()), the array grew from 4 buckets past
 * MIN_INSERTED keys, and after a final single-threaded sweep stats.bytes is
 * exactly the long keys' entries (the move accounting did not drift).
 *
 * Duration: rounds run until SLUICE_STRESS_MS (default 1000) have passed,
 * at least ROUNDS_MIN (one per hash mask: full hashes, and 8-bit tags).
 */
#include <pthread.h>
#include <sluice.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <urcu.h>

#include "limiter/limiter_internal.h"

#define THREADS 3
#define K 256
#define HOT 8
#define B 16
#define WINDOWS 8
#define FRESH_PER_WINDOW 300
#define MIN_INSERTED (WINDOWS * FRESH_PER_WINDOW)
#define ROUNDS_MIN 2
#define LG_INTERVAL 40
#define WINDOW_NS ((uint64_t)B << LG_INTERVAL)
#define WINDOW_DEADLINE_MS 20000

static struct sluice_limit rate;
static struct sluice_limiter *lim;
static char keys[K][48];
static size_t key_lens[K];

static _Atomic uint64_t window_now;  /* the current window's fixed time */
static _Atomic uint64_t window_index;
static _Atomic int64_t units_left;   /* tracked units not yet admitted */
static _Atomic uint64_t admitted[K]; /* this window's admissions per key */
static _Atomic bool window_over;     /* workers and peeker stop */
static _Atomic bool round_over;      /* sweeper and inserter stop */
static _Atomic bool timed_out;
static _Atomic uint64_t fresh_inserted, sweeps, peeks, batch_reqs;
static _Atomic uint64_t errors; /* API errors and peeker violations */
static struct timespec window_start;

static inline uint64_t xorshift(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static long ms_since(const struct timespec *t0)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

static void fail(const char *what, unsigned k)
{
	/* relaxed: a count read after the joins. */
	if (atomic_fetch_add_explicit(&errors, 1, memory_order_relaxed) < 10)
		fprintf(stderr, "stress_limiter_inline: %s (key %u)\n", what, k);
}

static unsigned pick(uint64_t *x)
{
	uint64_t r = xorshift(x);
	return (r & 1) ? (unsigned)((r >> 1) % HOT) : (unsigned)((r >> 1) % K);
}

static void count_admission(unsigned k)
{
	/* relaxed: counters summed after the joins; units_left only ends
	 * the loops. */
	atomic_fetch_add_explicit(&admitted[k], 1, memory_order_relaxed);
	atomic_fetch_sub_explicit(&units_left, 1, memory_order_relaxed);
}

static void *worker_main(void *p)
{
	uint64_t x = 0x9e3779b97f4a7c15ull * ((uint64_t)(uintptr_t)p + 1);
	/* relaxed: the window's time was set before this thread started. */
	const uint64_t now = atomic_load_explicit(&window_now, memory_order_relaxed);
	struct sluice_decision d[4];

	for (uint64_t n = 0;; n++) {
		/* relaxed: a flag that only ends the loop. */
		if (atomic_load_explicit(&window_over, memory_order_relaxed))
			break;
		if (n % 4 == 3) {
			struct sluice_limiter_request req[4];
			unsigned ks[4];
			for (int i = 0; i < 4; i++) {
				ks[i] = pick(&x);
				req[i] = (struct sluice_limiter_request){ keys[ks[i]], key_lens[ks[i]], 1 };
			}
			if (sluice_limiter_admit_batch(lim, req, 4, now, d) != SLUICE_OK) {
				fail("admit_batch failed", ks[0]);
				continue;
			}
			/* relaxed: a count. */
			atomic_fetch_add_explicit(&batch_reqs, 4, memory_order_relaxed);
			for (int i = 0; i < 4; i++) {
				if (d[i].degraded)
					fail("degraded", ks[i]);
				else if (d[i].allowed)
					count_admission(ks[i]);
			}
			continue;
		}
		unsigned k = pick(&x);
		if (sluice_limiter_admit(lim, keys[k], key_lens[k], 1, now, &d[0]) != SLUICE_OK || d[0].degraded) {
			fail("admit failed or degraded", k);
			continue;
		}
		if (d[0].allowed)
			count_admission(k);
	}
	return NULL;
}

/* Peeks: remaining never rises within a window (no refill at a fixed
 * time), and never exceeds B minus the admissions already counted (each
 * counted after its admit returned, so before this peek). */
static void *peeker_main(void *p)
{
	static uint64_t seen[K];
	uint64_t x = 0x2545f4914f6cdd1dull;
	/* relaxed: set before this thread started. */
	const uint64_t now = atomic_load_explicit(&window_now, memory_order_relaxed);
	struct sluice_decision d;

	(void)p;
	for (unsigned k = 0; k < K; k++)
		seen[k] = B;
	if (sluice__limiter_thread_enter(lim) != SLUICE_OK)
		fail("thread_enter failed", 0);
	/* relaxed: a flag. */
	while (!atomic_load_explicit(&window_over, memory_order_relaxed)) {
		unsigned k = pick(&x);
		/* relaxed: admissions counted so far by returned admits. */
		uint64_t a = atomic_load_explicit(&admitted[k], memory_order_relaxed);
		if (xorshift(&x) & 1) {
			/* The engine's dry run of one unit: it would admit iff a
			 * unit is left (its decision's remaining is not compared:
			 * for an unknown key it is the fresh bucket's). */
			rcu_read_lock();
			bool would = sluice__limiter_check(lim, keys[k], key_lens[k], 1, now, &d, NULL);
			rcu_read_unlock();
			if (would != d.allowed)
				fail("check: verdict and decision disagree", k);
			if (would && seen[k] == 0)
				fail("check: a unit back within a window", k);
			if (would && a >= B)
				fail("check: would admit beyond B", k);
			if (!would)
				seen[k] = 0;
			/* relaxed: a count. */
			atomic_fetch_add_explicit(&peeks, 1, memory_order_relaxed);
			continue;
		}
		if (sluice_limiter_peek(lim, keys[k], key_lens[k], now, &d) != SLUICE_OK) {
			fail("peek failed", k);
			continue;
		}
		if (d.remaining > seen[k])
			fail("peek: remaining rose within a window", k);
		if (d.remaining + a > B)
			fail("peek: remaining above B minus admissions", k);
		seen[k] = d.remaining;
		/* relaxed: a count. */
		atomic_fetch_add_explicit(&peeks, 1, memory_order_relaxed);
	}
	return NULL;
}

static void *sweeper_main(void *p)
{
	(void)p;
	/* relaxed: a flag. */
	while (!atomic_load_explicit(&round_over, memory_order_relaxed)) {
		/* relaxed: the window's time; a sweep at a window's time only
		 * reclaims keys idle then, which every later request sees full. */
		uint64_t now = atomic_load_explicit(&window_now, memory_order_relaxed);
		if (sluice_limiter_sweep(lim, now, 256, NULL) != SLUICE_OK)
			fail("sweep failed", 0);
		/* relaxed: a count. */
		atomic_fetch_add_explicit(&sweeps, 1, memory_order_relaxed);
	}
	return NULL;
}

static size_t fresh_key(char *buf, uint64_t i)
{
	return (size_t)snprintf(buf, 48, i % 3 == 0 ? "fresh-%llu-with-a-longer-name" : "f%llu",
				(unsigned long long)i);
}

static void *inserter_main(void *p)
{
	struct sluice_decision d;
	char k[48];

	(void)p;
	/* relaxed: a flag. */
	while (!atomic_load_explicit(&round_over, memory_order_relaxed)) {
		/* relaxed: a count only this thread writes. */
		uint64_t i = atomic_load_explicit(&fresh_inserted, memory_order_relaxed);
		/* relaxed: a quota per window: inserts (resizes) in every one. */
		uint64_t quota = (atomic_load_explicit(&window_index, memory_order_relaxed) + 1) * FRESH_PER_WINDOW;
		if (i >= quota) {
			struct timespec ts = { 0, 1000000 };
			nanosleep(&ts, NULL);
			continue;
		}
		/* relaxed: the window's time. */
		uint64_t now = atomic_load_explicit(&window_now, memory_order_relaxed);
		size_t len = fresh_key(k, i);
		if (sluice_limiter_admit(lim, k, len, 1, now, &d) != SLUICE_OK || d.degraded || !d.allowed)
			fail("fresh key not admitted", (unsigned)i);
		/* relaxed: as above. */
		atomic_store_explicit(&fresh_inserted, i + 1, memory_order_relaxed);
	}
	return NULL;
}

static uint64_t live_apart_bytes, live_long_bytes, live_short_keys;

static void on_entry(void *user, const void *key, size_t key_len, const struct sluice_decision *d)
{
	(void)user;
	(void)key;
	(void)d;
	/* header, GCRA word, key; a short key's entry also has a 24-byte
	 * retire head */
	live_apart_bytes += (key_len <= 16 ? 40 : 16) + key_len;
	if (key_len <= 16)
		live_short_keys++;
	else
		live_long_bytes += 16 + key_len;
}

static struct sluice_limiter_stats stats(void)
{
	struct sluice_limiter_stats s;
	memset(&s, 0, sizeof s);
	s.size = sizeof s;
	sluice_limiter_stats(lim, &s);
	return s;
}

/* The bytes every live key would take allocated apart (all: true) or
 * those of keys above 16 bytes (all: false), by walking the table. */
static uint64_t walk_bytes(uint64_t now, bool all, uint64_t *short_keys)
{
	live_apart_bytes = live_long_bytes = live_short_keys = 0;
	if (sluice__limiter_thread_enter(lim) != SLUICE_OK)
		return 0;
	rcu_read_lock();
	sluice__limiter_foreach(lim, now, on_entry, NULL);
	rcu_read_unlock();
	if (short_keys != NULL)
		*short_keys = live_short_keys;
	return all ? live_apart_bytes : live_long_bytes;
}

/* One round; returns the number of failed checks. */
static int round_run(int round, uint64_t mask)
{
	struct sluice_limiter_options o;
	int bad = 0;

	memset(&o, 0, sizeof o);
	o.size = sizeof o;
	o.initial_buckets = 4;
	o.hash_secret = "stress-inline";
	o.hash_secret_len = 13;
	if (sluice_limiter_create(&lim, &rate, 1, &o) != SLUICE_OK)
		return 1;
	sluice__limiter_set_hash_mask(lim, mask);
	/* relaxed: the threads start after these stores (pthread_create). */
	atomic_store_explicit(&fresh_inserted, 0, memory_order_relaxed);
	atomic_store_explicit(&round_over, false, memory_order_relaxed);
	atomic_store_explicit(&window_now, UINT64_C(1) << 50, memory_order_relaxed);
	atomic_store_explicit(&window_index, 0, memory_order_relaxed);

	pthread_t sw, ins;
	pthread_create(&sw, NULL, sweeper_main, NULL);
	pthread_create(&ins, NULL, inserter_main, NULL);
	for (int w = 0; w < WINDOWS; w++) {
		uint64_t now = (UINT64_C(1) << 50) + (uint64_t)w * WINDOW_NS;
		/* relaxed: workers start after these (pthread_create); the
		 * sweeper and inserter pick the new time up when they will. */
		atomic_store_explicit(&window_now, now, memory_order_relaxed);
		atomic_store_explicit(&window_index, (uint64_t)w, memory_order_relaxed);
		for (unsigned k = 0; k < K; k++)
			atomic_store_explicit(&admitted[k], 0, memory_order_relaxed);
		atomic_store_explicit(&units_left, (int64_t)K * B, memory_order_relaxed);
		atomic_store_explicit(&window_over, false, memory_order_relaxed);
		clock_gettime(CLOCK_MONOTONIC, &window_start);
		pthread_t th[THREADS], pk;
		for (uintptr_t i = 0; i < THREADS; i++)
			pthread_create(&th[i], NULL, worker_main, (void *)i);
		pthread_create(&pk, NULL, peeker_main, NULL);
		/* The window lasts until every unit is admitted and the inserter
		 * has resized the array on through FRESH_PER_WINDOW more keys;
		 * workers admit on (denied) meanwhile. relaxed: polled counts;
		 * the joins below order the threads' work. */
		while ((atomic_load_explicit(&units_left, memory_order_relaxed) > 0 ||
			atomic_load_explicit(&fresh_inserted, memory_order_relaxed) <
				(uint64_t)(w + 1) * FRESH_PER_WINDOW) &&
		       !atomic_load_explicit(&timed_out, memory_order_relaxed)) {
			struct timespec ts = { 0, 1000000 };
			nanosleep(&ts, NULL);
			if (ms_since(&window_start) > WINDOW_DEADLINE_MS)
				atomic_store_explicit(&timed_out, true, memory_order_relaxed);
		}
		atomic_store_explicit(&window_over, true, memory_order_relaxed);
		for (int i = 0; i < THREADS; i++)
			pthread_join(th[i], NULL);
		pthread_join(pk, NULL);

		int wrong = 0;
		for (unsigned k = 0; k < K; k++) {
			struct sluice_decision d;
			/* relaxed: after the joins. */
			uint64_t a = atomic_load_explicit(&admitted[k], memory_order_relaxed);
			if (sluice_limiter_admit(lim, keys[k], key_lens[k], 1, now, &d) != SLUICE_OK ||
			    d.degraded || d.allowed || a != B) {
				if (wrong++ < 5)
					fprintf(stderr,
						"round %d window %d: key %u (%zu bytes) admitted %llu of %d, "
						"next admit %s\n",
						round, w, k, key_lens[k], (unsigned long long)a, B,
						d.allowed ? "ALLOWED" : "denied");
			}
		}
		bad += wrong != 0;
	}
	/* relaxed: the joins order the threads' work. */
	atomic_store_explicit(&round_over, true, memory_order_relaxed);
	pthread_join(sw, NULL);
	pthread_join(ins, NULL);

	/* Moves happened: after the grace periods, fewer bytes are allocated
	 * than every live key would take apart. Then a final sweep moves the
	 * rest: exactly the long keys stay allocated. */
	uint64_t last = (UINT64_C(1) << 50) + (uint64_t)(WINDOWS - 1) * WINDOW_NS;
	rcu_barrier();
	uint64_t short_keys = 0;
	uint64_t apart_all = walk_bytes(last, true, &short_keys);
	struct sluice_limiter_stats s = stats();
	uint64_t live = s.live_keys, moved = apart_all - s.bytes;
	if (s.bytes >= apart_all) {
		fprintf(stderr, "round %d: no key moved in (bytes %llu, all apart %llu)\n", round,
			(unsigned long long)s.bytes, (unsigned long long)apart_all);
		bad++;
	}
	/* relaxed: the inserter was joined. */
	uint64_t fresh = atomic_load_explicit(&fresh_inserted, memory_order_relaxed);
	if (s.inserted < MIN_INSERTED) {
		fprintf(stderr, "round %d: only %llu keys inserted: too few resizes\n", round,
			(unsigned long long)s.inserted);
		bad++;
	}
	if (sluice_limiter_sweep(lim, last, SIZE_MAX, NULL) != SLUICE_OK)
		bad++;
	rcu_barrier();
	uint64_t apart_long = walk_bytes(last, false, NULL);
	s = stats();
	if (s.bytes != apart_long) {
		fprintf(stderr, "round %d: bytes %llu after a full sweep, the long keys take %llu\n", round,
			(unsigned long long)s.bytes, (unsigned long long)apart_long);
		bad++;
	}
	fprintf(stderr,
		"round %d (mask %#llx): %llu inserted (%llu fresh), %llu reclaimed, %llu live "
		"(%llu short), %llu of their %llu bytes moved in by insertions and sweeps\n",
		round, (unsigned long long)mask, (unsigned long long)s.inserted, (unsigned long long)fresh,
		(unsigned long long)s.reclaimed, (unsigned long long)live, (unsigned long long)short_keys,
		(unsigned long long)moved, (unsigned long long)apart_all);
	sluice_limiter_destroy(lim);
	lim = NULL;
	return bad;
}

int main(void)
{
	const char *ms_env = getenv("SLUICE_STRESS_MS");
	long ms = ms_env != NULL ? atol(ms_env) : 1000;
	const uint64_t masks[ROUNDS_MIN] = { UINT64_MAX, UINT64_C(0xffffffffffff00ff) };
	int passed = 0, failed = 0;
	struct timespec t0;

	memset(&rate, 0, sizeof rate);
	rate.kind = SLUICE_LIMIT_GCRA;
	if (sluice_rate_init(&rate.rate, 1, UINT64_C(1) << LG_INTERVAL, B) != SLUICE_OK) {
		printf("0 passed, 1 failed (setup)\n");
		return 1;
	}
	for (unsigned k = 0; k < K; k++) {
		if (k == 0)
			key_lens[k] = 0;
		else if (k % 2)
			key_lens[k] = (size_t)snprintf(keys[k], sizeof keys[k], "t%u", k);
		else
			key_lens[k] = (size_t)snprintf(keys[k], sizeof keys[k], "tracked-key-%u-of-the-stress", k);
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int round = 0; round < ROUNDS_MIN || ms_since(&t0) < ms; round++) {
		int bad = round_run(round, masks[round % ROUNDS_MIN]);
		/* relaxed: every thread was joined. */
		uint64_t errs = atomic_exchange_explicit(&errors, 0, memory_order_relaxed);
		bool late = atomic_exchange_explicit(&timed_out, false, memory_order_relaxed);
		if (errs != 0 || late) {
			fprintf(stderr, "round %d: %llu errors%s\n", round, (unsigned long long)errs,
				late ? ", a window ran past its deadline" : "");
			bad++;
		}
		bad == 0 ? passed++ : failed++;
	}
	fprintf(stderr, "stress_limiter_inline: %llu sweeps, %llu peeks, %llu batch requests\n",
		/* relaxed: after the joins. */
		(unsigned long long)atomic_load_explicit(&sweeps, memory_order_relaxed),
		(unsigned long long)atomic_load_explicit(&peeks, memory_order_relaxed),
		(unsigned long long)atomic_load_explicit(&batch_reqs, memory_order_relaxed));
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
