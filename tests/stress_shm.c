/*
 * stress_shm.c - the shm limiter (sluice/shm.h) under several processes
 * forked over one MAP_SHARED anonymous zone, with exact checks, and under
 * SIGKILL at random instants. A plain executable; prints "N passed, N
 * failed".
 *
 * 1. Bound, per kind (calendar, GCRA, and both on one key): PROCS
 *    processes admit random keys
 *    at one fixed time (so nothing refills) while another sweeps; each
 *    admitted unit is counted in a shared array. Per key, the admitted
 *    units never exceed the limit, and the store's own count (a peek's
 *    remaining) equals exactly the units admitted: nothing was consumed
 *    that no admitted request took, and no entry was lost to a sweep.
 * 2. Insertion race: every process admits the same sequence of new keys
 *    (limit 1 each, in a zone for twice as many), so they race to insert
 *    each one: exactly one admission per key and no degraded answer, and
 *    the zone holds exactly one entry per key (live slots and the
 *    insertion count), no claim left.
 * A worker that fails says why on stderr; the parent reports each worker
 * that exited non-zero or was killed.
 * 3. Slots: processes acquire and release; the holders of a key, counted
 *    in shared memory around each hold, never exceed its slots.
 * 4. Crash: workers admit random keys of a bounded set, and ever-new keys
 *    in a second, small zone (insertions and in-place reclaims most of
 *    the work there), while the parent kills one with SIGKILL every few
 *    hundred microseconds and starts another.
 *    Afterwards every key's consumption is within its limit and at least
 *    what the survivors' records say, at most that plus one request per
 *    kill (the kill may land between an admission and its record); after
 *    SLUICE_SHM_CLAIM_TIMEOUT_NS every slot of both zones is FREE or LIVE
 *    once swept (the claims of workers killed mid-insert, counted before,
 *    are taken back), a sweep at a later time reclaims every key, and
 *    both zones admit a fresh set of keys without degrading.
 */
#include <sluice.h>

#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shm/zone_internal.h"

#define SEC 1000000000ull
#define PROCS 4
#define KEYS 64
#define T0 (UINT64_C(1795392000) * SEC + 3600 * SEC)

static int failures;

#define CHECK(c, ...)                                                  \
	do {                                                           \
		if (!(c)) {                                            \
			fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
			fprintf(stderr, __VA_ARGS__);                  \
			fprintf(stderr, "\n");                         \
			failures++;                                    \
		}                                                      \
	} while (0)

static uint64_t rng(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void *shared(size_t bytes)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		perror("mmap");
		exit(2);
	}
	return p;
}

static size_t nlim = 1; /* limits per policy of the zone() and open_lim() calls */

static void *zone(const struct sluice_limit *l, uint64_t keys, size_t *bytes)
{
	void *base;
	struct sluice_shm_info info = { .size = sizeof info };
	if (sluice_shm_limiter_zone_size(l, nlim, keys, bytes) != SLUICE_OK ||
	    sluice_shm_map_anonymous(*bytes, &base) != SLUICE_OK ||
	    sluice_shm_limiter_zone_init(base, *bytes, l, nlim, 0, &info) != SLUICE_OK) {
		fprintf(stderr, "zone: %s\n", info.message);
		exit(2);
	}
	return base;
}

static struct sluice_limiter *open_lim(void *base, size_t bytes, const struct sluice_limit *l)
{
	struct sluice_limiter *lim;
	if (sluice_shm_limiter_create(&lim, base, bytes, l, nlim, NULL) != SLUICE_OK)
		exit(3);
	return lim;
}

static size_t key_of(uint64_t k, char *buf)
{
	/* Every fourth key longer than the inline size (a digest). */
	if (k % 4 == 3)
		return (size_t)snprintf(buf, 96, "token-%llu-padded-well-beyond-the-inline-key-size",
					(unsigned long long)k);
	return (size_t)snprintf(buf, 96, "k%llu", (unsigned long long)k);
}

/* A forked worker's failure: says why, then exits with code (wait_all()
 * reports the code). */
static void child_fail(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "FAIL worker %d: ", (int)getpid());
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	_exit(code);
}

static void wait_all(pid_t *pids, int n, const char *what)
{
	for (int i = 0; i < n; i++) {
		int st;
		waitpid(pids[i], &st, 0);
		if (WIFSIGNALED(st))
			CHECK(0, "%s: worker %d killed by signal %d", what, (int)pids[i], WTERMSIG(st));
		else
			CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: worker %d exited with status %d", what,
			      (int)pids[i], WEXITSTATUS(st));
	}
}

/* ---- 1. exact bound ---- */

/* l[0 .. nlim): limit is the governing one's count (at a fixed time, the
 * smallest capacity). */
static void bound(const struct sluice_limit *l, uint64_t limit, const char *what)
{
	size_t bytes;
	void *base = zone(l, KEYS * 2, &bytes);
	_Atomic uint64_t *admitted = shared(KEYS * sizeof *admitted);
	_Atomic int *stop = shared(sizeof *stop);
	pid_t pids[PROCS + 1];

	for (int p = 0; p <= PROCS; p++) {
		if ((pids[p] = fork()) != 0)
			continue;
		struct sluice_limiter *lim = open_lim(base, bytes, l);
		uint64_t s = (uint64_t)p * 7919 + 1;
		if (p == PROCS) { /* the sweeper: nothing is idle at T0 */
			while (!atomic_load(stop))
				sluice_limiter_sweep(lim, T0, 64, NULL);
			_exit(0);
		}
		for (int i = 0; i < 20000; i++) {
			uint64_t r = rng(&s), k = r % KEYS, cost = 1 + (r >> 32) % 2;
			char key[96];
			struct sluice_decision d;
			int rc = sluice_limiter_admit(lim, key, key_of(k, key), cost, T0, &d);
			if (rc != SLUICE_OK || d.degraded)
				child_fail(4, "%s: key %llu: admit returned %d, degraded %d", what, (unsigned long long)k,
					   rc, d.degraded);
			if (d.allowed)
				atomic_fetch_add(&admitted[k], cost);
		}
		_exit(0);
	}
	wait_all(pids, PROCS, what);
	atomic_store(stop, 1);
	wait_all(pids + PROCS, 1, what);
	struct sluice_limiter *lim = open_lim(base, bytes, l);
	for (uint64_t k = 0; k < KEYS; k++) {
		char key[96];
		struct sluice_decision d;
		sluice_limiter_peek(lim, key, key_of(k, key), T0, &d);
		uint64_t a = atomic_load(&admitted[k]);
		CHECK(a <= limit, "%s: key %llu admitted %llu > %llu", what, (unsigned long long)k,
		      (unsigned long long)a, (unsigned long long)limit);
		CHECK(d.remaining == limit - a, "%s: key %llu store used %llu, admitted %llu", what,
		      (unsigned long long)k, (unsigned long long)(limit - d.remaining), (unsigned long long)a);
	}
	sluice_limiter_destroy(lim);
	munmap(admitted, KEYS * sizeof *admitted);
	munmap(stop, sizeof *stop);
	sluice_shm_unmap(base, bytes);
}

/* ---- 2. insertion race ---- */

/* RKEYS keys in a zone for twice as many: a zone filled to its capacity
 * answers about one key in 10^6 degraded (both windows full of other
 * keys: docs/shm.md, "Capacity"), which for 20,000 keys is a fill in 20;
 * at half the capacity no window fills, so every answer here is a
 * decision on the key's one entry, and a degraded answer is a failure. */
#define RKEYS 20000

struct race {
	_Atomic int go;
	_Atomic uint32_t admitted[RKEYS];
	_Atomic uint32_t degraded[RKEYS];
};

static void insert_race(void)
{
	struct sluice_limit l = { .kind = SLUICE_LIMIT_CALENDAR };
	sluice_calendar_config_init(&l.calendar, 1, 86400 * SEC);
	size_t bytes;
	void *base = zone(&l, 2 * RKEYS, &bytes);
	struct race *g = shared(sizeof *g);
	pid_t pids[PROCS];

	for (int p = 0; p < PROCS; p++) {
		if ((pids[p] = fork()) != 0)
			continue;
		struct sluice_limiter *lim = open_lim(base, bytes, &l);
		atomic_fetch_add(&g->go, 1);
		while (atomic_load(&g->go) < PROCS)
			;
		for (uint64_t k = 0; k < RKEYS; k++) {
			char key[96];
			struct sluice_decision d;
			int rc = sluice_limiter_admit(lim, key, key_of(k, key), 1, T0, &d);
			if (rc != SLUICE_OK)
				child_fail(4, "insert race: key %llu: admit returned %d", (unsigned long long)k, rc);
			if (d.degraded) /* no entry was used: counted apart, checked below */
				atomic_fetch_add(&g->degraded[k], 1);
			else if (d.allowed)
				atomic_fetch_add(&g->admitted[k], 1);
		}
		_exit(0);
	}
	wait_all(pids, PROCS, "insert race");
	uint64_t none = 0, more = 0, degraded = 0, first = UINT64_MAX;
	for (uint64_t k = 0; k < RKEYS; k++) {
		none += atomic_load(&g->admitted[k]) == 0;
		more += atomic_load(&g->admitted[k]) > 1;
		degraded += atomic_load(&g->degraded[k]);
		if (first == UINT64_MAX && atomic_load(&g->degraded[k]) != 0)
			first = k;
	}
	CHECK(degraded == 0, "insert race: %llu degraded answers, the first for key %llu", (unsigned long long)degraded,
	      (unsigned long long)first);
	CHECK(none == 0 && more == 0, "insert race: %llu keys never admitted, %llu more than once",
	      (unsigned long long)none, (unsigned long long)more);
	/* Exactly one entry per key: none lost, none doubled, no claim left. */
	struct sluice_limiter *lim = open_lim(base, bytes, &l);
	struct sluice_limiter_stats st = { .size = sizeof st };
	uint64_t fl, cl, lv;
	CHECK(sluice_limiter_stats(lim, &st) == SLUICE_OK, "insert race: stats");
	sluice__shm_census(lim, &fl, &cl, &lv);
	CHECK(lv == RKEYS && cl == 0 && st.inserted == RKEYS,
	      "insert race: %llu live slots, %llu claimed, %llu insertions for %u keys", (unsigned long long)lv,
	      (unsigned long long)cl, (unsigned long long)st.inserted, RKEYS);
	sluice_limiter_destroy(lim);
	munmap(g, sizeof *g);
	sluice_shm_unmap(base, bytes);
}

/* ---- 3. slots ---- */

static void slots(void)
{
	struct sluice_limit l = { .kind = SLUICE_LIMIT_SLOTS };
	sluice_slots_config_init(&l.slots, 3, 0, 0);
	size_t bytes;
	void *base = zone(&l, KEYS * 2, &bytes);
	_Atomic int64_t *held = shared(2 * KEYS * sizeof *held); /* [k]: now, [KEYS + k]: most */
	pid_t pids[PROCS];

	for (int p = 0; p < PROCS; p++) {
		if ((pids[p] = fork()) != 0)
			continue;
		struct sluice_limiter *lim = open_lim(base, bytes, &l);
		uint64_t s = (uint64_t)p * 104729 + 3;
		for (int i = 0; i < 20000; i++) {
			uint64_t k = rng(&s) % 8;
			char key[96];
			size_t len = key_of(k, key);
			struct sluice_decision d;
			sluice_slot_handle h;
			int rc = sluice_limiter_acquire(lim, key, len, 1, T0, &d, &h);
			if (rc != SLUICE_OK)
				child_fail(4, "slots: key %llu: acquire returned %d", (unsigned long long)k, rc);
			if (!d.allowed)
				continue;
			int64_t n = atomic_fetch_add(&held[k], 1) + 1;
			int64_t m = atomic_load(&held[KEYS + k]);
			while (n > m && !atomic_compare_exchange_weak(&held[KEYS + k], &m, n))
				;
			atomic_fetch_sub(&held[k], 1);
			rc = sluice_limiter_release(lim, key, len, h);
			if (rc != SLUICE_OK)
				child_fail(5, "slots: key %llu: release returned %d", (unsigned long long)k, rc);
		}
		_exit(0);
	}
	wait_all(pids, PROCS, "slots");
	for (int k = 0; k < 8; k++)
		CHECK(atomic_load(&held[KEYS + k]) <= 3, "slots: key %d had %lld holders", k,
		      (long long)atomic_load(&held[KEYS + k]));
	munmap(held, 2 * KEYS * sizeof *held);
	sluice_shm_unmap(base, bytes);
}

/* ---- 4. crash ---- */

#define CKEYS 3000
#define CLIMIT 5

/* The churn zone: every admission a new key, on the real clock, in a zone
 * of CHURN keys, so that insertions (and reclaims of idle keys in place
 * when a window is full) are most of the work and kills land inside them. */
#define CHURN 512
static void *churn_base;
static size_t churn_bytes;
static struct sluice_limit churn_limit;

static void crash_worker(void *base, size_t bytes, const struct sluice_limit *l, _Atomic uint64_t *recorded,
			 uint64_t seed)
{
	struct sluice_limiter *lim = open_lim(base, bytes, l);
	struct sluice_limiter *churn = open_lim(churn_base, churn_bytes, &churn_limit);
	uint64_t s = seed, n = 0;
	for (;;) {
		uint64_t r = rng(&s), k = r % CKEYS;
		char key[96];
		struct sluice_decision d;
		if (r % 2 == 0) {
			int len = snprintf(key, sizeof key, "churn-%llu-%llu", (unsigned long long)seed,
					   (unsigned long long)n++);
			sluice_limiter_admit(churn, key, (size_t)len, 1, sluice_monotonic_ns(), &d);
			continue;
		}
		if ((r >> 40) % 64 == 0) {
			sluice_limiter_sweep(lim, T0, 256, NULL);
			continue;
		}
		int rc = sluice_limiter_admit(lim, key, key_of(k, key), 1, T0, &d);
		if (rc != SLUICE_OK)
			child_fail(4, "crash: key %llu: admit returned %d", (unsigned long long)k, rc);
		if (d.allowed)
			atomic_fetch_add(&recorded[k], 1);
	}
}

static void crash(void)
{
	struct sluice_limit l = { .kind = SLUICE_LIMIT_CALENDAR };
	sluice_calendar_config_init(&l.calendar, CLIMIT, 86400 * SEC);
	size_t bytes;
	void *base = zone(&l, CKEYS * 2, &bytes);
	_Atomic uint64_t *recorded = shared(CKEYS * sizeof *recorded);
	/* GCRA 1000/s, burst 1: a key is idle 1 ms after its admission. */
	churn_limit = (struct sluice_limit){ .kind = SLUICE_LIMIT_GCRA };
	sluice_rate_init(&churn_limit.rate, 1000, SEC, 1);
	churn_base = zone(&churn_limit, CHURN, &churn_bytes);
	pid_t pids[PROCS];
	uint64_t s = 12345, kills = 0;

	for (int p = 0; p < PROCS; p++)
		if ((pids[p] = fork()) == 0)
			crash_worker(base, bytes, &l, recorded, (uint64_t)p + 99);
	for (int round = 0; round < 300; round++) {
		struct timespec ts = { 0, (long)(50000 + rng(&s) % 500000) };
		nanosleep(&ts, NULL);
		int p = (int)(rng(&s) % PROCS);
		kill(pids[p], SIGKILL);
		waitpid(pids[p], NULL, 0);
		kills++;
		if ((pids[p] = fork()) == 0)
			crash_worker(base, bytes, &l, recorded, rng(&s) | 1);
	}
	for (int p = 0; p < PROCS; p++) {
		kill(pids[p], SIGKILL);
		waitpid(pids[p], NULL, 0);
		kills++;
	}
	struct sluice_limiter *lim = open_lim(base, bytes, &l);
	uint64_t lost = 0, fl, cl, lv;
	for (uint64_t k = 0; k < CKEYS; k++) {
		char key[96];
		struct sluice_decision d;
		sluice_limiter_peek(lim, key, key_of(k, key), T0, &d);
		uint64_t used = CLIMIT - d.remaining, rec = atomic_load(&recorded[k]);
		CHECK(rec <= used, "crash: key %llu recorded %llu > used %llu", (unsigned long long)k,
		      (unsigned long long)rec, (unsigned long long)used);
		lost += used - rec;
	}
	CHECK(lost <= kills, "crash: %llu units consumed without a record, %llu kills", (unsigned long long)lost,
	      (unsigned long long)kills);
	/* Claims the kills left behind (workers killed mid-insert). */
	struct sluice_limiter *churn = open_lim(churn_base, churn_bytes, &churn_limit);
	sluice__shm_census(churn, &fl, &cl, &lv);
	uint64_t left = cl;
	sluice__shm_census(lim, &fl, &cl, &lv);
	left += cl;
	/* No claim outlives the timeout: a sweep takes every one back. */
	struct timespec ts = { (time_t)(SLUICE_SHM_CLAIM_TIMEOUT_NS / SEC), 100000000 };
	nanosleep(&ts, NULL);
	size_t n;
	sluice_limiter_sweep(lim, T0, (size_t)-1, &n);
	sluice__shm_census(lim, &fl, &cl, &lv);
	CHECK(cl == 0, "crash: %llu claims left after the timeout and a sweep", (unsigned long long)cl);
	sluice_limiter_sweep(churn, sluice_monotonic_ns(), (size_t)-1, &n);
	sluice__shm_census(churn, &fl, &cl, &lv);
	CHECK(cl == 0 && lv == 0, "crash: churn zone %llu claimed, %llu live after the timeout and a sweep",
	      (unsigned long long)cl, (unsigned long long)lv);
	for (uint64_t k = 0; k < CHURN; k++) {
		char key[32];
		struct sluice_decision d;
		int len = snprintf(key, sizeof key, "after-%llu", (unsigned long long)k);
		sluice_limiter_admit(churn, key, (size_t)len, 1, sluice_monotonic_ns(), &d);
		CHECK(d.allowed && !d.degraded, "crash: churn zone refuses new key %llu", (unsigned long long)k);
	}
	sluice_limiter_destroy(churn);
	sluice_shm_unmap(churn_base, churn_bytes);
	/* The next day every key is idle: all reclaimed. */
	sluice_limiter_sweep(lim, T0 + 2 * 86400 * SEC, (size_t)-1, &n);
	sluice__shm_census(lim, &fl, &cl, &lv);
	CHECK(lv == 0 && cl == 0, "crash: %llu live, %llu claimed after the day's sweep", (unsigned long long)lv,
	      (unsigned long long)cl);
	for (uint64_t k = 0; k < CKEYS; k++) {
		char key[96];
		struct sluice_decision d;
		size_t len = key_of(k + CKEYS, key);
		sluice_limiter_admit(lim, key, len, 1, T0 + 3 * 86400 * SEC, &d);
		CHECK(d.allowed && !d.degraded, "crash: new key %llu not admitted after recovery",
		      (unsigned long long)k);
	}
	printf("crash: %llu kills, %llu units consumed without a record, %llu claims left by the dead\n",
	       (unsigned long long)kills, (unsigned long long)lost, (unsigned long long)left);
	sluice_limiter_destroy(lim);
	munmap(recorded, CKEYS * sizeof *recorded);
	sluice_shm_unmap(base, bytes);
}

/* ---- 5. the sliding log: exact bound and crash ---- */

/* LKEYS keys, a log of LLIMIT per LWIN ticks; the time is a shared tick
 * counter (one per operation), so windows keep moving and admissions (the
 * log's critical sections) stay most of the work while workers are
 * killed. Every admission is recorded (key, time); the check is the log's
 * invariant on the times passed in: at most LLIMIT admitted in any
 * (x - LWIN, x]. A kill between an admission and its record hides one. */
#define LKEYS 16
#define LLIMIT 8
#define LWIN 2000
#define LRECS (1u << 21)

struct lrec {
	uint64_t key, t;
};

struct llog {
	_Atomic uint64_t clock, nrec;
	uint64_t cap; /* records to take: workers stop there */
	_Atomic uint64_t stalls; /* admissions that waited for a dead writer's claim */
	_Atomic uint64_t ops[PROCS]; /* per worker slot: kills land in admissions, not in startup */
	struct lrec rec[LRECS];
};

static void log_worker(void *base, size_t bytes, const struct sluice_limit *l, struct llog *g, int slot,
		       uint64_t seed)
{
	struct sluice_limiter *lim = open_lim(base, bytes, l);
	uint64_t s = seed;
	for (;;) {
		uint64_t r = rng(&s), k = r % LKEYS;
		/* Sometimes a little behind the clock: time going backwards. */
		uint64_t t = T0 + atomic_fetch_add(&g->clock, 1) - (r >> 32) % 4;
		char key[96];
		struct sluice_decision d;
		uint64_t a = sluice_monotonic_ns();
		int rc = sluice_limiter_admit(lim, key, key_of(k, key), 1, t, &d);
		if (rc != SLUICE_OK || d.degraded)
			child_fail(4, "sliding log: key %llu: admit returned %d, degraded %d", (unsigned long long)k, rc,
				   d.degraded);
		if (sluice_monotonic_ns() - a > SLUICE_SHM_CLAIM_TIMEOUT_NS / 2)
			atomic_fetch_add(&g->stalls, 1);
		atomic_fetch_add(&g->ops[slot], 1);
		if (!d.allowed)
			continue;
		uint64_t i = atomic_fetch_add(&g->nrec, 1);
		if (i >= g->cap)
			_exit(0);
		g->rec[i] = (struct lrec){ k + 1, t }; /* 0: not written (killed) */
	}
}

static int by_key_time(const void *a, const void *b)
{
	const struct lrec *x = a, *y = b;
	if (x->key != y->key)
		return x->key < y->key ? -1 : 1;
	return x->t < y->t ? -1 : x->t > y->t;
}

/* kill_rounds 0: the bound under PROCS live processes. */
static void log_run(uint64_t kill_rounds, const char *what)
{
	struct sluice_limit l = { .kind = SLUICE_LIMIT_SLIDING_LOG };
	sluice_window_log_config_init(&l.log, LLIMIT, LWIN);
	size_t bytes;
	void *base = zone(&l, LKEYS * 2, &bytes);
	struct llog *g = shared(sizeof *g);
	g->cap = kill_rounds != 0 ? LRECS : LRECS / 8; /* the killed run stops first */
	pid_t pids[PROCS];
	uint64_t s = 777, kills = 0;

	for (int p = 0; p < PROCS; p++)
		if ((pids[p] = fork()) == 0)
			log_worker(base, bytes, &l, g, p, (uint64_t)p + 5);
	if (kill_rounds == 0) {
		wait_all(pids, PROCS, what);
	} else {
		for (uint64_t round = 0; round < kill_rounds; round++) {
			int p = (int)(rng(&s) % PROCS);
			struct timespec ts = { 0, (long)(20000 + rng(&s) % 200000) };
			do
				nanosleep(&ts, NULL);
			while (atomic_load(&g->ops[p]) < 200);
			kill(pids[p], SIGKILL);
			waitpid(pids[p], NULL, 0);
			kills++;
			atomic_store(&g->ops[p], 0);
			if ((pids[p] = fork()) == 0)
				log_worker(base, bytes, &l, g, p, rng(&s) | 1);
		}
		for (int p = 0; p < PROCS; p++) {
			kill(pids[p], SIGKILL);
			waitpid(pids[p], NULL, 0);
			kills++;
		}
	}
	/* Every key admits again, at once or once the claim a dead writer
	 * left is SLUICE_SHM_CLAIM_TIMEOUT_NS old; count the keys that
	 * waited (a claim left by a kill). */
	struct sluice_limiter *lim = open_lim(base, bytes, &l);
	uint64_t end = T0 + atomic_load(&g->clock) + 2 * LWIN, stuck = 0, t0 = sluice_monotonic_ns();
	for (uint64_t k = 0; k < LKEYS; k++) {
		char key[96];
		struct sluice_decision d;
		uint64_t a = sluice_monotonic_ns();
		sluice_limiter_admit(lim, key, key_of(k, key), 1, end, &d);
		stuck += sluice_monotonic_ns() - a > SLUICE_SHM_CLAIM_TIMEOUT_NS / 10;
		CHECK(d.allowed && !d.degraded, "%s: key %llu refused after the kills", what, (unsigned long long)k);
	}
	uint64_t waited = sluice_monotonic_ns() - t0;
	CHECK(waited < SLUICE_SHM_CLAIM_TIMEOUT_NS + SEC / 2, "%s: recovery took %llu ms", what,
	      (unsigned long long)(waited / 1000000));
	/* The bound, per key, over the recorded admissions. */
	uint64_t n = atomic_load(&g->nrec), worst = 0, holes = 0;
	if (n > g->cap)
		n = g->cap;
	qsort(g->rec, n, sizeof g->rec[0], by_key_time);
	for (uint64_t i = 0, j = 0; i < n; i++) {
		if (g->rec[i].key == 0) {
			holes++;
			j = i + 1;
			continue;
		}
		while (g->rec[j].key != g->rec[i].key || g->rec[i].t - g->rec[j].t >= LWIN)
			j++;
		if (i - j + 1 > worst)
			worst = i - j + 1;
	}
	CHECK(worst <= LLIMIT, "%s: %llu admitted in one window of a log of %u", what, (unsigned long long)worst,
	      LLIMIT);
	CHECK(n > 1000, "%s: only %llu admissions", what, (unsigned long long)n);
	printf("%s: %llu admissions, at most %llu in a window (limit %u), %llu kills, %llu admissions "
	       "waited for a dead writer's claim, %llu keys locked by the dead at the end (recovered in %llu ms)\n",
	       what, (unsigned long long)(n - holes), (unsigned long long)worst, LLIMIT, (unsigned long long)kills,
	       (unsigned long long)atomic_load(&g->stalls), (unsigned long long)stuck, (unsigned long long)(waited / 1000000));
	sluice_limiter_destroy(lim);
	munmap(g, sizeof *g);
	sluice_shm_unmap(base, bytes);
}

int main(void)
{
	int passed = 0, failed = 0, before;
	struct sluice_limit cal = { .kind = SLUICE_LIMIT_CALENDAR }, g = { .kind = SLUICE_LIMIT_GCRA };
	sluice_calendar_config_init(&cal.calendar, 100, 86400 * SEC);
	sluice_rate_init(&g.rate, 10, SEC, 50);

	before = failures;
	bound(&cal, 100, "calendar");
	failures == before ? passed++ : failed++;
	before = failures;
	bound(&g, 50, "gcra");
	failures == before ? passed++ : failed++;
	/* Two limits per key, all-or-nothing: a quota of 30 under a bucket of
	 * 50 (the quota governs and refuses; the bucket keeps exactly what
	 * was admitted, or its peek would show less), then the reverse. */
	struct sluice_limit two[2] = { g, cal };
	sluice_calendar_config_init(&two[1].calendar, 30, 86400 * SEC);
	nlim = 2;
	before = failures;
	bound(two, 30, "bucket 50 + quota 30");
	sluice_calendar_config_init(&two[1].calendar, 80, 86400 * SEC);
	bound(two, 50, "bucket 50 + quota 80");
	failures == before ? passed++ : failed++;
	nlim = 1;
	before = failures;
	insert_race();
	failures == before ? passed++ : failed++;
	before = failures;
	slots();
	failures == before ? passed++ : failed++;
	before = failures;
	crash();
	failures == before ? passed++ : failed++;
	before = failures;
	log_run(0, "sliding log bound");
	failures == before ? passed++ : failed++;
	before = failures;
	log_run(300, "sliding log crash");
	failures == before ? passed++ : failed++;
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
