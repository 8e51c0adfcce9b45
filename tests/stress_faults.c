/*
 * stress_faults.c - the keyed limiter under concurrency and faults at once
 * (docs/reliability.md). A plain executable (runs under TSan and under the
 * ARM64 qemu job).
 *
 * THREADS admitters (single and batch) on HOT hot and COLD cold keys of a
 * two-limit policy, on a shared fake clock that every request advances and
 * that jumps forward by hours now and then; each request reads the clock up
 * to STALE ns stale, and one thread in four spends stretches of requests
 * hours in the past (a wrong clock step, then its correction). The
 * allocator refuses about one call in FAIL_ONE_IN, from any thread (entry
 * inserts, sweep batches in the maintenance thread). The maintenance thread
 * sweeps at the oldest time a thread may still use (each publishes its clock
 * reading minus STALE and the longest excursion before it admits), so no
 * later request is older than a sweep. Each phase runs once per fail mode.
 *
 * Checked at the end of each phase, for every key, every limit i and every
 * window [a, b] of time:
 *
 *     cost admitted at times in [a, b] <= burst_i + floor((b - a) / interval_i)
 *
 * (GCRA keeps it whatever order the times arrive in: each admission raises
 * the cell's word by at least cost * interval and leaves it at most its
 * time plus the bucket depth; a reclaim keeps it when no later request is
 * older than the sweep. Windows matter here: with clock jumps of hours the
 * span of all of a key's requests bounds nothing.) Degraded answers follow the fail mode
 * and are never counted as admissions; the limiter's counters equal the
 * threads' own counts; after destroy, the allocator holds nothing (every
 * entry, batch and the limiter freed, failures or not).
 * Duration: SLUICE_STRESS_MS (default 1000) split over the two phases.
 */
#include <pthread.h>
#include <sluice.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HOT 8
#define COLD 3000
#define KEYS (HOT + COLD)
#define THREADS 4
#define STALE 50
#define BATCH 6
#define HOUR (3600ull * 1000000000ull)
#define EXCURSION (2 * HOUR)
#define FAIL_ONE_IN 20

static int passed, failed;

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

/* ---- a thread-safe allocator that refuses now and then ---- */

static _Atomic long live_blocks;
static _Atomic long long live_bytes;
static _Atomic long refusals;
static _Thread_local uint64_t alloc_rng;
static _Atomic uint64_t alloc_seed = 0x2545f4914f6cdd1dull;

static inline uint64_t xorshift(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static void *faulty_malloc(void *user, size_t size)
{
	(void)user;
	if (alloc_rng == 0)
		/* relaxed: only distinct seeds are needed */
		alloc_rng = atomic_fetch_add_explicit(&alloc_seed, 0x9e3779b97f4a7c15ull, memory_order_relaxed) | 1;
	if (xorshift(&alloc_rng) % FAIL_ONE_IN == 0) {
		atomic_fetch_add_explicit(&refusals, 1, memory_order_relaxed); /* relaxed: a counter read after joins */
		return NULL;
	}
	void *p = malloc(size);
	if (p != NULL) {
		/* relaxed: counters read after destroy (rcu_barrier, joins) */
		atomic_fetch_add_explicit(&live_blocks, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&live_bytes, (long long)size, memory_order_relaxed); /* relaxed: as above */
	}
	return p;
}

static void faulty_free(void *user, void *p, size_t size)
{
	(void)user;
	/* relaxed: as in faulty_malloc */
	atomic_fetch_sub_explicit(&live_blocks, 1, memory_order_relaxed);
	atomic_fetch_sub_explicit(&live_bytes, (long long)size, memory_order_relaxed); /* relaxed: as above */
	free(p);
}

/* ---- the run ---- */

static struct sluice_limit limits[2];
static struct sluice_limiter *lim;
static uint32_t fail_mode;
static _Atomic uint64_t fake_clock;
static _Atomic uint64_t floor_ns[THREADS]; /* per thread: the oldest time it may still use */
static _Atomic bool stop;

/* One admitted request. */
struct adm {
	uint64_t t;
	uint32_t key;
	uint32_t cost;
};

struct worker {
	pthread_t th;
	int id;
	uint64_t seed;
	uint64_t admitted, denied, degraded, degraded_allowed;
	struct adm *log;
	size_t nlog, caplog;
};

static struct worker workers[THREADS];

static size_t key_name(int k, char *buf)
{
	return (size_t)snprintf(buf, 16, k < HOT ? "hot-%d" : "cold-%d", k < HOT ? k : k - HOT);
}

static void record(struct worker *w, int k, uint64_t cost, uint64_t t, const struct sluice_decision *d)
{
	if (d->degraded) {
		w->degraded++;
		w->degraded_allowed += d->allowed;
		return;
	}
	if (!d->allowed) {
		w->denied++;
		return;
	}
	if (w->nlog == w->caplog) {
		w->caplog = w->caplog ? 2 * w->caplog : 65536;
		w->log = realloc(w->log, w->caplog * sizeof *w->log);
		if (w->log == NULL)
			abort();
	}
	w->log[w->nlog++] = (struct adm){ t, (uint32_t)k, (uint32_t)cost };
	w->admitted++;
}

static uint64_t read_clock(struct worker *w, int *excursion)
{
	uint64_t x = xorshift(&w->seed);
	/* relaxed: the clock is a counter; its value, not its order with
	 * other memory, is what the requests use */
	uint64_t step = x % 1000 == 0 ? HOUR : 1 + x % 7; /* sometimes jump forward */
	uint64_t t = atomic_fetch_add_explicit(&fake_clock, step, memory_order_relaxed) + step;
	/* release: this thread's requests so far happen-before a sweep that
	 * reads this floor (acquire in sweep_clock), and every later request
	 * of this thread is at or after it (its clock readings only grow). */
	atomic_store_explicit(&floor_ns[w->id], t - STALE - EXCURSION, memory_order_release);
	t -= (x >> 16) % STALE;
	if (w->id == 0) {
		if (*excursion == 0 && (x >> 32) % 500 == 0)
			*excursion = 30;
		if (*excursion > 0) {
			(*excursion)--;
			t -= EXCURSION - (x >> 40) % HOUR;
		}
	}
	return t;
}

static void *worker_main(void *p)
{
	struct worker *w = p;
	struct sluice_decision d, outs[BATCH];
	char keys[BATCH][16];
	struct sluice_limiter_request reqs[BATCH];
	int ks[BATCH];
	int excursion = 0;

	while (!atomic_load_explicit(&stop, memory_order_relaxed)) { /* relaxed: a stop flag */
		uint64_t x = xorshift(&w->seed);
		uint64_t cost = 1 + (x >> 50) % 2;
		if (w->id == THREADS - 1) {
			for (int i = 0; i < BATCH; i++) {
				x = xorshift(&w->seed);
				ks[i] = x % 4 == 0 ? (int)((x >> 8) % HOT) : HOT + (int)((x >> 8) % COLD);
				reqs[i] = (struct sluice_limiter_request){ keys[i], key_name(ks[i], keys[i]), cost };
			}
			uint64_t t = read_clock(w, &excursion);
			if (sluice_limiter_admit_batch(lim, reqs, BATCH, t, outs) != SLUICE_OK)
				abort();
			for (int i = 0; i < BATCH; i++)
				record(w, ks[i], cost, t, &outs[i]);
		} else {
			int k = x % 4 == 0 ? (int)((x >> 8) % HOT) : HOT + (int)((x >> 8) % COLD);
			size_t len = key_name(k, keys[0]);
			uint64_t t = read_clock(w, &excursion);
			if (sluice_limiter_admit(lim, keys[0], len, cost, t, &d) != SLUICE_OK)
				abort();
			record(w, k, cost, t, &d);
		}
	}
	return NULL;
}

static int adm_cmp(const void *pa, const void *pb)
{
	const struct adm *a = pa, *b = pb;
	if (a->key != b->key)
		return a->key < b->key ? -1 : 1;
	return a->t < b->t ? -1 : a->t > b->t;
}

/* The law over every window of time of every key: for admitted times
 * t_i <= t_j of one key (sorted), cost(i..j) <= burst + floor((t_j - t_i) /
 * interval), i.e. (P_j - P_{i-1}) * I - (t_j - t_i) <= burst * I with P the
 * prefix sums of cost. One pass per key and limit keeps the least
 * P_{i-1} * I - t_i seen so far. Returns the number of violations. */
static int check_windows(void)
{
	size_t n = 0;
	for (int i = 0; i < THREADS; i++)
		n += workers[i].nlog;
	struct adm *all = malloc((n ? n : 1) * sizeof *all);
	if (all == NULL)
		abort();
	size_t at = 0;
	for (int i = 0; i < THREADS; i++) {
		if (workers[i].nlog)
			memcpy(all + at, workers[i].log, workers[i].nlog * sizeof *all);
		at += workers[i].nlog;
		free(workers[i].log);
		workers[i].log = NULL;
	}
	qsort(all, n, sizeof *all, adm_cmp);
	int bad = 0;
	for (int l = 0; l < 2; l++) {
		const int64_t iv = (int64_t)limits[l].rate.interval_ns;
		const int64_t depth = (int64_t)limits[l].rate.burst * iv;
		for (size_t s = 0; s < n;) {
			size_t e = s;
			int64_t prefix = 0, least = INT64_MAX;
			while (e < n && all[e].key == all[s].key) {
				const int64_t t = (int64_t)all[e].t;
				const int64_t start = prefix * iv - t; /* P_{i-1} * I - t_i, i = e */
				least = start < least ? start : least;
				prefix += all[e].cost;
				if (prefix * iv - t - least > depth && bad++ < 5)
					fprintf(stderr, "key %u limit %d: a window ending at %llu admits %lld ns "
							"of debt over the bucket depth\n",
						all[s].key, l, (unsigned long long)all[e].t,
						(long long)(prefix * iv - t - least - depth));
				e++;
			}
			s = e;
		}
	}
	free(all);
	return bad;
}

static uint64_t sweep_clock(void *user)
{
	(void)user;
	/* The oldest time any thread may still use: no later request is older
	 * than a sweep, even across a preemption and forward jumps. */
	uint64_t t = UINT64_MAX;
	for (int i = 0; i < THREADS; i++) {
		/* acquire: pairs with the release store in read_clock */
		uint64_t f = atomic_load_explicit(&floor_ns[i], memory_order_acquire);
		t = f < t ? f : t;
	}
	return t;
}

static void phase(uint32_t mode, long ms)
{
	struct sluice_limiter_options o = { .size = sizeof o };
	o.fail_mode = mode;
	o.malloc_fn = faulty_malloc;
	o.free_fn = faulty_free;
	o.max_keys = COLD; /* the budget is hit too */
	fail_mode = mode;
	atomic_store_explicit(&fake_clock, 3 * EXCURSION, memory_order_relaxed); /* relaxed: no thread runs */
	atomic_store_explicit(&stop, false, memory_order_relaxed); /* relaxed: as above */
	for (int i = 0; i < THREADS; i++)
		atomic_store_explicit(&floor_ns[i], 0, memory_order_relaxed); /* relaxed: as above */
	int rc;
	do /* the allocator may refuse the limiter itself: retry */
		rc = sluice_limiter_create(&lim, limits, 2, &o);
	while (rc == SLUICE_ENOMEM);
	CHECK(rc == SLUICE_OK, "create: %s", sluice_strerror(rc));
	rc = sluice_limiter_maintenance_start(lim, 200000, 512, sweep_clock, NULL);
	CHECK(rc == SLUICE_OK, "maintenance_start: %s", sluice_strerror(rc));

	memset(workers, 0, sizeof workers);
	for (int i = 0; i < THREADS; i++) {
		workers[i].id = i;
		workers[i].seed = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1) + mode;
		if (pthread_create(&workers[i].th, NULL, worker_main, &workers[i]) != 0)
			abort();
	}
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };
	nanosleep(&ts, NULL);
	/* On a loaded machine the maintenance thread may not have reclaimed
	 * anything yet: run on (up to 20 s more) until faults and reclaims
	 * both happened, so that the checks below always have both to check. */
	for (int extra = 0; extra < 2000; extra++) {
		struct sluice_limiter_stats now = { .size = sizeof now };
		sluice_limiter_stats(lim, &now);
		if (now.degraded > 0 && now.reclaimed > 0)
			break;
		struct timespec tick = { 0, 10000000 };
		nanosleep(&tick, NULL);
	}
	atomic_store_explicit(&stop, true, memory_order_relaxed); /* relaxed: a stop flag */
	for (int i = 0; i < THREADS; i++)
		pthread_join(workers[i].th, NULL);
	CHECK(sluice_limiter_maintenance_stop(lim) == SLUICE_OK, "stop");

	uint64_t admitted = 0, denied = 0, degraded = 0, degraded_allowed = 0;
	for (int i = 0; i < THREADS; i++) {
		admitted += workers[i].admitted;
		denied += workers[i].denied;
		degraded += workers[i].degraded;
		degraded_allowed += workers[i].degraded_allowed;
	}
	int bad = check_windows();
	CHECK(bad == 0, "%d keys over the bound", bad);
	struct sluice_limiter_stats s = { .size = sizeof s };
	sluice_limiter_stats(lim, &s);
	CHECK(s.admitted == admitted && s.denied == denied && s.degraded == degraded,
	      "stats %llu/%llu/%llu vs threads %llu/%llu/%llu", (unsigned long long)s.admitted,
	      (unsigned long long)s.denied, (unsigned long long)s.degraded,
	      (unsigned long long)admitted, (unsigned long long)denied, (unsigned long long)degraded);
	CHECK(degraded_allowed == (mode == SLUICE_FAIL_OPEN ? degraded : 0), "fail mode %u", mode);
	CHECK(s.live_keys == s.inserted - s.reclaimed && s.live_keys <= COLD, "live %llu",
	      (unsigned long long)s.live_keys);
	CHECK(degraded > 0 && s.reclaimed > 0, "faults and reclaims happened: %llu %llu",
	      (unsigned long long)degraded, (unsigned long long)s.reclaimed);
	printf("fail %s: admitted %llu denied %llu degraded %llu inserted %llu reclaimed %llu "
	       "allocator refusals %ld\n",
	       mode == SLUICE_FAIL_OPEN ? "open" : "closed", (unsigned long long)admitted,
	       (unsigned long long)denied, (unsigned long long)degraded, (unsigned long long)s.inserted,
	       (unsigned long long)s.reclaimed,
	       atomic_load_explicit(&refusals, memory_order_relaxed)); /* relaxed: threads joined */
	sluice_limiter_destroy(lim);
	/* relaxed: destroy waited for the deferred frees (rcu_barrier) */
	long blocks = atomic_load_explicit(&live_blocks, memory_order_relaxed);
	CHECK(blocks == 0, "%ld blocks (%lld bytes) leaked", blocks,
	      atomic_load_explicit(&live_bytes, memory_order_relaxed)); /* relaxed: as above */
}

int main(void)
{
	long ms = 1000;
	const char *env = getenv("SLUICE_STRESS_MS");
	if (env != NULL && *env != '\0')
		ms = strtol(env, NULL, 10);
	if (ms < 20)
		ms = 20;
	limits[0] = (struct sluice_limit){ .kind = SLUICE_LIMIT_GCRA };
	limits[1] = (struct sluice_limit){ .kind = SLUICE_LIMIT_GCRA };
	/* In fake-clock units: 5 per 1000 (burst 5) and 40 per 100000 (burst 20). */
	if (sluice_rate_init(&limits[0].rate, 5, 1000, 5) != 0 ||
	    sluice_rate_init(&limits[1].rate, 40, 100000, 20) != 0)
		return 1;
	phase(SLUICE_FAIL_OPEN, ms / 2);
	phase(SLUICE_FAIL_CLOSED, ms / 2);
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
