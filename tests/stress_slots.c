/*
 * stress_slots.c - threads on one slots cell (also under TSan), checking:
 *
 *   - never more than N holders in flight, counted with an independent
 *     atomic between a successful acquire and the release (no leases);
 *   - with leases (a shared fake clock, some holders "crash" and never
 *     release, a reaper thread): no slot is reused while held unless the
 *     holder's lease had run out, checked through per-slot bookkeeping the
 *     test keeps itself (newest use by generation, last use released); a
 *     holder whose slot was reused cannot release it, and a release fails
 *     only for a lease that has run out;
 *   - double releases and another cell's handles are rejected, and after
 *     the run (and a final reap) the cell is idle: no capacity was lost or
 *     invented.
 *
 * Duration per phase: SLUICE_STRESS_MS (default 1000) / 2. Prints
 * "N passed, N failed".
 */
#include <sluice.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define THREADS 4
#define SLOTS 3
#define TTL 2000

struct shared {
	struct sluice_slots_config cfg;
	struct sluice_slots *cell, *other;
	sluice_slot_handle foreign;
	bool leases;
	_Atomic uint64_t clock;
	_Atomic uint64_t occupant[SLOTS]; /* newest use seen: gen << 40 | time */
	_Atomic uint64_t released[SLOTS]; /* gen of the last use released */
	atomic_int in_flight, max_in_flight;
	atomic_int errors;
	atomic_bool stop;
	_Atomic uint64_t acquired, denied, taken_over, crashed;
};

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

#define FAIL(sh, ...)                                                    \
	do {                                                             \
		if (atomic_fetch_add(&(sh)->errors, 1) < 5)              \
			fprintf(stderr, __VA_ARGS__);                    \
	} while (0)

static void *work(void *arg)
{
	struct shared *sh = ((void **)arg)[0];
	uint64_t rng = (uint64_t)(uintptr_t)((void **)arg)[1];

	while (!atomic_load_explicit(&sh->stop, memory_order_relaxed)) {
		/* seq_cst below: the test's own bookkeeping, kept simple. */
		uint64_t t = atomic_fetch_add(&sh->clock, 1 + rng_next(&rng) % 4);
		sluice_slot_handle h;
		if (!sluice_slots_acquire(sh->cell, &sh->cfg, t, NULL, &h)) {
			atomic_fetch_add(&sh->denied, 1);
			continue;
		}
		atomic_fetch_add(&sh->acquired, 1);
		uint64_t index = h & (SLUICE_SLOTS_MAX - 1);
		if (index >= SLOTS) {
			FAIL(sh, "slot index %llu out of range\n", (unsigned long long)index);
			continue;
		}
		/* occupant[i] = (gen << 40 | acquire time) of the newest use of
		 * slot i the test has seen; raised monotonically by gen (white
		 * box: handle bits 12-39), so late bookkeeping of an older use never
		 * hides a newer one. Replacing the immediate predecessor that did
		 * not release (released[i] != its gen) is a reclaim: its lease must
		 * have run out by now. */
		uint64_t gen = (h >> 12) & ((UINT64_C(1) << 28) - 1);
		uint64_t mine = gen << 40 | t;
		uint64_t cur = atomic_load(&sh->occupant[index]);
		while (cur >> 40 < gen && !atomic_compare_exchange_weak(&sh->occupant[index], &cur, mine))
			;
		if (cur >> 40 < gen && cur != 0 && cur >> 40 == gen - 1 &&
		    atomic_load(&sh->released[index]) != gen - 1) {
			uint64_t held_since = cur & ((UINT64_C(1) << 40) - 1);
			if (!sh->leases)
				FAIL(sh, "slot %llu reused while held\n", (unsigned long long)index);
			else if (atomic_load(&sh->clock) < held_since + TTL)
				FAIL(sh, "slot %llu taken at %llu from a lease of %llu\n",
				     (unsigned long long)index, (unsigned long long)t,
				     (unsigned long long)held_since);
			else
				atomic_fetch_add(&sh->taken_over, 1);
		}
		int n = atomic_fetch_add(&sh->in_flight, 1) + 1;
		int seen = atomic_load(&sh->max_in_flight);
		while (n > seen && !atomic_compare_exchange_weak(&sh->max_in_flight, &seen, n))
			;
		if (!sh->leases && n > SLOTS)
			FAIL(sh, "%d in flight\n", n);
		for (uint64_t spin = rng_next(&rng) % 64; spin > 0; spin--)
			atomic_signal_fence(memory_order_seq_cst); /* hold the slot a little */
		if (rng_next(&rng) % 64 == 0)
			sched_yield();
		atomic_fetch_sub(&sh->in_flight, 1);

		if (sh->leases && rng_next(&rng) % 16 == 0) {
			atomic_fetch_add(&sh->crashed, 1); /* never released */
			continue;
		}
		/* released[i]: raised monotonically, so that the late release of
		 * a long-reclaimed use cannot hide a recent one. */
		uint64_t last = atomic_load(&sh->released[index]);
		while (last < gen && !atomic_compare_exchange_weak(&sh->released[index], &last, gen))
			;
		/* A newer use of our slot exists only if ours ended (reclaimed).
		 * Read before releasing: after it, the slot may rightly be reused. */
		bool superseded = atomic_load(&sh->occupant[index]) >> 40 > gen;
		int rc = sluice_slots_release(sh->cell, &sh->cfg, h);
		/* A release may fail only for a lease that has run out (then with
		 * ESTALE, or EDOUBLE once the slot was reclaimed again since:
		 * slots.h). */
		if (rc != SLUICE_OK &&
		    (!sh->leases || atomic_load(&sh->clock) < t + TTL ||
		     (rc != SLUICE_ESTALE && rc != SLUICE_EDOUBLE)))
			FAIL(sh, "release at %llu of a lease of %llu: %s\n",
			     (unsigned long long)atomic_load(&sh->clock), (unsigned long long)t,
			     sluice_strerror(rc));
		if (superseded && rc == SLUICE_OK)
			FAIL(sh, "released a slot that was taken over\n");
		if (rng_next(&rng) % 8 == 0) {
			rc = sluice_slots_release(sh->cell, &sh->cfg, h);
			if (rc != SLUICE_EDOUBLE && rc != SLUICE_ESTALE)
				FAIL(sh, "second release: %s\n", sluice_strerror(rc));
		}
		if (rng_next(&rng) % 8 == 0 &&
		    sluice_slots_release(sh->cell, &sh->cfg, sh->foreign) != SLUICE_ESTALE)
			FAIL(sh, "foreign handle accepted\n");
	}
	return NULL;
}

static void *reaper(void *arg)
{
	struct shared *sh = arg;
	while (!atomic_load_explicit(&sh->stop, memory_order_relaxed)) {
		sluice_slots_reap(sh->cell, &sh->cfg, atomic_load(&sh->clock));
		struct timespec nap = { 0, 100000 };
		nanosleep(&nap, NULL);
	}
	return NULL;
}

static int run(bool leases, uint64_t ms)
{
	struct shared *sh = calloc(1, sizeof(*sh));
	pthread_t th[THREADS + 1];
	void *args[THREADS][2];

	sh->leases = leases;
	if (sluice_slots_config_init(&sh->cfg, SLOTS, leases ? TTL : 0, 0) != 0)
		return 1;
	sh->cell = aligned_alloc(64, 64 + sluice_slots_size(&sh->cfg) / 64 * 64);
	sh->other = aligned_alloc(64, 64 + sluice_slots_size(&sh->cfg) / 64 * 64);
	sluice_slots_init(sh->cell, &sh->cfg);
	sluice_slots_init(sh->other, &sh->cfg);
	if (!sluice_slots_acquire(sh->other, &sh->cfg, 0, NULL, &sh->foreign))
		return 1;
	atomic_init(&sh->clock, 1);
	for (int i = 0; i < THREADS; i++) {
		args[i][0] = sh;
		args[i][1] = (void *)(uintptr_t)(i * 7919 + 1);
		pthread_create(&th[i], NULL, work, args[i]);
	}
	if (leases)
		pthread_create(&th[THREADS], NULL, reaper, sh);
	uint64_t end = now_ms() + ms;
	while (now_ms() < end) {
		struct timespec nap = { 0, 5 * 1000000 };
		nanosleep(&nap, NULL);
	}
	atomic_store(&sh->stop, true);
	for (int i = 0; i < THREADS + leases; i++)
		pthread_join(th[i], NULL);

	/* Crashed holders' leases run out: after a reap past every deadline the
	 * cell must be idle again. */
	if (leases)
		sluice_slots_reap(sh->cell, &sh->cfg, atomic_load(&sh->clock) + TTL);
	if (!sluice_slots_is_idle(sh->cell, &sh->cfg, 0))
		FAIL(sh, "cell not idle after the run\n");
	struct sluice_decision d;
	sluice_slots_peek(sh->cell, &sh->cfg, 0, &d);
	if (d.remaining != SLOTS)
		FAIL(sh, "%llu slots free at the end\n", (unsigned long long)d.remaining);

	printf("%s: %llu acquired, %llu denied, %llu crashed, %llu taken over, max in flight %d\n",
	       leases ? "leases" : "plain", (unsigned long long)atomic_load(&sh->acquired),
	       (unsigned long long)atomic_load(&sh->denied), (unsigned long long)atomic_load(&sh->crashed),
	       (unsigned long long)atomic_load(&sh->taken_over), atomic_load(&sh->max_in_flight));
	if (atomic_load(&sh->acquired) == 0 || atomic_load(&sh->denied) == 0)
		FAIL(sh, "the run exercised too little\n");
	if (atomic_load(&sh->max_in_flight) < 2)
		FAIL(sh, "holders never overlapped\n");
	if (leases && atomic_load(&sh->taken_over) == 0)
		FAIL(sh, "no lease was ever taken over\n");
	int failed = atomic_load(&sh->errors) != 0;
	free(sh->cell);
	free(sh->other);
	free(sh);
	return failed;
}

int main(void)
{
	const char *env = getenv("SLUICE_STRESS_MS");
	uint64_t ms = env != NULL ? strtoull(env, NULL, 10) : 1000;
	int passed = 0, failed = 0;

	if (ms < 20)
		ms = 20;
	run(false, ms / 2) ? failed++ : passed++;
	run(true, ms / 2) ? failed++ : passed++;
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
