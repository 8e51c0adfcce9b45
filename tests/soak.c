/*
 * soak.c - sluice_soak: every limit kind under every thread for a long time,
 * with the conservation laws checked at the end. Opt-in: built with the
 * tests but not registered with ctest (docs/reliability.md, "Soak").
 *
 *     sluice_soak [--seconds N] [--threads T] [--keys K] [--max-keys M]
 *
 * Defaults: 10 s, one thread per online CPU, 1,000,000 cold keys, a key
 * budget of 262,144.
 *
 * What runs, all at once, on the real monotonic clock (each request reads it
 * just before its admit, so clocks are stale by a preemption, as in a
 * server):
 *   - GCRA cells: CELLS shared cells of one rate (1000/s, burst 50);
 *   - calendar windows: CALS cells, CAL_LIMIT per 100 ms window;
 *   - concurrency slots: SLOT_CELLS cells of one slot each, acquire, a
 *     GCRA admission while holding, release;
 *   - the keyed limiter, two limits (50 per 100 ms burst 10; 200/s burst
 *     100), FAIL_CLOSED, a key budget, its maintenance thread sweeping every
 *     10 ms at the clock minus SLUICE_LIMITER_SWEEP_LAG_NS; HOT hot keys hit
 *     by every thread and a large cold key space hit rarely, so entries are
 *     reclaimed and re-created all the time; a tenth of the limiter requests
 *     go through sluice_limiter_admit_batch.
 * The main thread samples RSS (/proc/self/statm), the decision count and the
 * limiter's statistics every second.
 *
 * The law, per cell / per key and per limit i, over the admitted requests'
 * clock readings t:
 *
 *     admitted cost <= burst_i + floor((t_last - t_first) / interval_i)
 *
 * (the exact token-bucket bound; GCRA with stale clocks and reclaim + re-
 * create keeps it, docs/limiter.md). Exit status 0 iff it held everywhere and
 * the limiter's counters agree with the threads' own counts.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sluice.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CELLS 16
#define CALS 4
#define CAL_LIMIT 500
#define CAL_WINDOW_NS (SLUICE_NS_PER_SEC / 10)
#define SLOT_CELLS 2
#define SLOTS_PER_CELL 1 /* a mutex: two holders at once would show */
#define HOT 8
#define BATCH 8
#define MAX_THREADS 256
#define MAX_SAMPLES 100000

struct tally {
	uint64_t cost;
	uint64_t t_first;
	uint64_t t_last;
};

/* Cold keys are hit rarely by any one thread: one shared tally each, updated
 * with atomics (min/max by CAS). Relaxed everywhere: the tallies are read
 * only after every worker is joined (pthread_join orders them). */
struct shared_tally {
	_Atomic uint64_t cost;
	_Atomic uint64_t t_first;
	_Atomic uint64_t t_last;
};

struct worker {
	pthread_t th;
	uint64_t seed;
	uint64_t decisions;
	uint64_t lim_admitted; /* limiter answers allowed, not degraded */
	uint64_t lim_denied;
	uint64_t lim_degraded;
	uint64_t cell_admitted;
	uint64_t cal_admitted;
	uint64_t slot_acquired, slot_denied;
	struct tally cell[CELLS];
	struct tally cal[CALS];
	struct tally hot[HOT];
};

static struct sluice_rate cell_rate;
static struct sluice_gcra cells[CELLS];
static struct sluice_calendar_config cal_cfg;
static struct sluice_calendar cals[CALS];
static struct sluice_slots_config slot_cfg;
static struct sluice_slots *slot_cells[SLOT_CELLS];
/* Holders of each slot cell as the threads see them: incremented after a
 * successful acquire, decremented before the release, so it never exceeds
 * the true number of holders; above N means the cell let N + 1 in. */
static _Atomic uint64_t holders[SLOT_CELLS];
static _Atomic uint64_t slot_violations;
static struct sluice_limit limits[2];
static struct sluice_limiter *lim;
static struct shared_tally *cold;
static uint64_t ncold = 1000000;
static _Atomic bool stop;
static _Atomic uint64_t decisions_total;

static inline uint64_t xorshift(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static void tally_add(struct tally *t, uint64_t cost, uint64_t now)
{
	if (t->cost == 0 || now < t->t_first)
		t->t_first = now;
	if (t->cost == 0 || now > t->t_last)
		t->t_last = now;
	t->cost += cost;
}

static void shared_tally_add(struct shared_tally *t, uint64_t cost, uint64_t now)
{
	/* relaxed: read only after the workers are joined (see above) */
	uint64_t v = atomic_load_explicit(&t->t_first, memory_order_relaxed);
	while (now < v && !atomic_compare_exchange_weak_explicit(&t->t_first, &v, now, /* relaxed/relaxed: see above */
								 memory_order_relaxed, memory_order_relaxed))
		;
	v = atomic_load_explicit(&t->t_last, memory_order_relaxed); /* relaxed: see above */
	while (now > v && !atomic_compare_exchange_weak_explicit(&t->t_last, &v, now, /* relaxed/relaxed: see above */
								 memory_order_relaxed, memory_order_relaxed))
		;
	atomic_fetch_add_explicit(&t->cost, cost, memory_order_relaxed); /* relaxed: see above */
}

static size_t key_of(uint64_t k, char *buf)
{
	if (k < HOT)
		return (size_t)snprintf(buf, 32, "hot-%" PRIu64, k);
	return (size_t)snprintf(buf, 32, "cold-%" PRIu64, k - HOT);
}

static void record(struct worker *w, uint64_t k, uint64_t cost, uint64_t now,
		   const struct sluice_decision *d)
{
	if (d->degraded) {
		w->lim_degraded++;
		return;
	}
	if (!d->allowed) {
		w->lim_denied++;
		return;
	}
	w->lim_admitted++;
	if (k < HOT)
		tally_add(&w->hot[k], cost, now);
	else
		shared_tally_add(&cold[k - HOT], cost, now);
}

static uint64_t pick_key(uint64_t *seed)
{
	uint64_t r = xorshift(seed);
	/* One request in 16 on a cold key (so a cold key is usually idle, and
	 * reclaimed, between two hits), the rest on the hot ones. */
	if (r % 16 != 0)
		return (r >> 8) % HOT;
	return HOT + (r >> 8) % ncold;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct sluice_decision d;
	char keys[BATCH][32];
	struct sluice_limiter_request reqs[BATCH];
	uint64_t ks[BATCH];
	struct sluice_decision outs[BATCH];
	uint64_t local = 0, flushed = 0;

	/* relaxed: a stop flag; nothing is published through it */
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		uint64_t r = xorshift(&w->seed) % 100;
		uint64_t cost = 1 + (xorshift(&w->seed) % 16 == 0); /* mostly 1, sometimes 2 */
		if (r < 10) {
			size_t c = (size_t)(xorshift(&w->seed) % CALS);
			uint64_t now = sluice_monotonic_ns();
			if (sluice_calendar_admit(&cals[c], &cal_cfg, now, cost, NULL)) {
				tally_add(&w->cal[c], cost, now);
				w->cal_admitted++;
			}
			local++;
		} else if (r < 20) {
			size_t c = (size_t)(xorshift(&w->seed) % SLOT_CELLS);
			sluice_slot_handle h;
			uint64_t now = sluice_monotonic_ns();
			if (sluice_slots_acquire(slot_cells[c], &slot_cfg, now, NULL, &h)) {
				/* relaxed: a count checked against N; the slots'
				 * own acquire/release order the holders */
				uint64_t n = atomic_fetch_add_explicit(&holders[c], 1, memory_order_relaxed) + 1;
				if (n > SLOTS_PER_CELL)
					atomic_fetch_add_explicit(&slot_violations, 1, memory_order_relaxed); /* relaxed: a counter */
				/* some work while holding: the other threads contend */
				size_t g = (size_t)(xorshift(&w->seed) % CELLS);
				if (sluice_gcra_admit(&cells[g], &cell_rate, now, 1, NULL)) {
					tally_add(&w->cell[g], 1, now);
					w->cell_admitted++;
				}
				atomic_fetch_sub_explicit(&holders[c], 1, memory_order_relaxed); /* relaxed: as above */
				if (sluice_slots_release(slot_cells[c], &slot_cfg, h) != SLUICE_OK)
					atomic_fetch_add_explicit(&slot_violations, 1, memory_order_relaxed); /* relaxed: a counter */
				w->slot_acquired++;
			} else {
				w->slot_denied++;
			}
			local++;
		} else if (r < 45) {
			size_t c = (size_t)(xorshift(&w->seed) % CELLS);
			uint64_t now = sluice_monotonic_ns();
			if (sluice_gcra_admit(&cells[c], &cell_rate, now, cost, &d)) {
				tally_add(&w->cell[c], cost, now);
				w->cell_admitted++;
			}
			local++;
		} else if (r < 94) {
			uint64_t k = pick_key(&w->seed);
			size_t len = key_of(k, keys[0]);
			uint64_t now = sluice_monotonic_ns();
			if (sluice_limiter_admit(lim, keys[0], len, cost, now, &d) != 0) {
				fprintf(stderr, "admit failed\n");
				abort();
			}
			record(w, k, cost, now, &d);
			local++;
		} else {
			for (int i = 0; i < BATCH; i++) {
				ks[i] = pick_key(&w->seed);
				reqs[i].key = keys[i];
				reqs[i].key_len = key_of(ks[i], keys[i]);
				reqs[i].cost = cost;
			}
			uint64_t now = sluice_monotonic_ns();
			if (sluice_limiter_admit_batch(lim, reqs, BATCH, now, outs) != 0) {
				fprintf(stderr, "admit_batch failed\n");
				abort();
			}
			for (int i = 0; i < BATCH; i++)
				record(w, ks[i], cost, now, &outs[i]);
			local += BATCH;
		}
		if (local - flushed >= 1024) {
			/* relaxed: a progress counter for the sampler */
			atomic_fetch_add_explicit(&decisions_total, local - flushed, memory_order_relaxed);
			flushed = local;
		}
	}
	w->decisions = local;
	return NULL;
}

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

struct sample {
	uint64_t t_s;
	uint64_t decisions;
	uint64_t rss;
	struct sluice_limiter_stats st;
};

/* Checks the law; for the hot keys and cells (worst_slack not NULL) also
 * reports how close to the bound they ran. */
static bool check_bound(const char *what, uint64_t id, const struct tally *t,
			const struct sluice_rate *rate, uint64_t *worst_slack, uint64_t *tight)
{
	if (t->cost == 0)
		return true;
	uint64_t bound = rate->burst + (t->t_last - t->t_first) / rate->interval_ns;
	if (t->cost > bound) {
		fprintf(stderr, "VIOLATION %s %" PRIu64 ": admitted %" PRIu64 " > bound %" PRIu64 "\n",
			what, id, t->cost, bound);
		return false;
	}
	uint64_t slack = bound - t->cost;
	if (worst_slack == NULL)
		return true;
	if (slack > *worst_slack)
		*worst_slack = slack;
	if (slack <= rate->burst)
		(*tight)++;
	return true;
}

static void usage(void)
{
	fprintf(stderr, "usage: sluice_soak [--seconds N] [--threads T] [--keys K] [--max-keys M]\n");
	exit(2);
}

static uint64_t arg_u64(const char *s)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || end == s)
		usage();
	return (uint64_t)v;
}

int main(int argc, char **argv)
{
	uint64_t seconds = 10;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	uint64_t nthreads = ncpu > 0 ? (uint64_t)ncpu : 1;
	uint64_t max_keys = 262144;

	for (int i = 1; i < argc; i++) {
		if (i + 1 >= argc)
			usage();
		if (strcmp(argv[i], "--seconds") == 0)
			seconds = arg_u64(argv[++i]);
		else if (strcmp(argv[i], "--threads") == 0)
			nthreads = arg_u64(argv[++i]);
		else if (strcmp(argv[i], "--keys") == 0)
			ncold = arg_u64(argv[++i]);
		else if (strcmp(argv[i], "--max-keys") == 0)
			max_keys = arg_u64(argv[++i]);
		else
			usage();
	}
	if (seconds == 0 || nthreads == 0 || nthreads > MAX_THREADS || ncold == 0)
		usage();

	if (sluice_rate_init(&cell_rate, 1000, SLUICE_NS_PER_SEC, 50) != 0)
		return 1;
	for (int c = 0; c < CELLS; c++)
		sluice_gcra_init(&cells[c]);
	if (sluice_calendar_config_init(&cal_cfg, CAL_LIMIT, CAL_WINDOW_NS) != 0 ||
	    sluice_slots_config_init(&slot_cfg, SLOTS_PER_CELL, 0, 0) != 0)
		return 1;
	for (int c = 0; c < CALS; c++)
		sluice_calendar_init(&cals[c]);
	for (int c = 0; c < SLOT_CELLS; c++) {
		slot_cells[c] = aligned_alloc(SLUICE_CACHELINE, (sluice_slots_size(&slot_cfg) + SLUICE_CACHELINE - 1) /
								     SLUICE_CACHELINE * SLUICE_CACHELINE);
		if (slot_cells[c] == NULL)
			return 1;
		sluice_slots_init(slot_cells[c], &slot_cfg);
	}
	limits[0] = (struct sluice_limit){ .kind = SLUICE_LIMIT_GCRA };
	limits[1] = (struct sluice_limit){ .kind = SLUICE_LIMIT_GCRA };
	if (sluice_rate_init(&limits[0].rate, 50, SLUICE_NS_PER_SEC / 10, 10) != 0 ||
	    sluice_rate_init(&limits[1].rate, 200, SLUICE_NS_PER_SEC, 100) != 0)
		return 1;
	struct sluice_limiter_options o = { .size = sizeof o };
	o.max_keys = max_keys;
	o.fail_mode = SLUICE_FAIL_CLOSED;
	int rc = sluice_limiter_create(&lim, limits, 2, &o);
	if (rc != 0) {
		fprintf(stderr, "create: %s\n", sluice_strerror(rc));
		return 1;
	}
	rc = sluice_limiter_maintenance_start(lim, 10 * 1000 * 1000, 20000, NULL, NULL);
	if (rc != 0) {
		fprintf(stderr, "maintenance_start: %s\n", sluice_strerror(rc));
		return 1;
	}
	cold = calloc(ncold, sizeof *cold);
	struct worker *workers = calloc(nthreads, sizeof *workers);
	struct sample *samples = calloc(MAX_SAMPLES, sizeof *samples);
	if (cold == NULL || workers == NULL || samples == NULL)
		return 1;

	printf("sluice_soak: %" PRIu64 " s, %" PRIu64 " threads (+ maintenance), %d cells, "
	       "%d hot + %" PRIu64 " cold keys, max_keys %" PRIu64 "\n",
	       seconds, nthreads, CELLS, HOT, ncold, max_keys);
	uint64_t rss0 = rss_bytes();
	uint64_t t0 = sluice_monotonic_ns();
	for (uint64_t i = 0; i < nthreads; i++) {
		workers[i].seed = 0x9e3779b97f4a7c15ull * (i + 1);
		if (pthread_create(&workers[i].th, NULL, worker_main, &workers[i]) != 0)
			return 1;
	}

	size_t ns = 0;
	for (uint64_t s = 1; s <= seconds; s++) {
		uint64_t wake = t0 + s * SLUICE_NS_PER_SEC;
		struct timespec ts = { .tv_sec = (time_t)(wake / SLUICE_NS_PER_SEC),
				       .tv_nsec = (long)(wake % SLUICE_NS_PER_SEC) };
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
			;
		if (ns < MAX_SAMPLES) {
			struct sample *sm = &samples[ns++];
			sm->t_s = s;
			/* relaxed: a progress counter (see worker_main) */
			sm->decisions = atomic_load_explicit(&decisions_total, memory_order_relaxed);
			sm->rss = rss_bytes();
			sm->st.size = sizeof sm->st;
			sluice_limiter_stats(lim, &sm->st);
		}
	}
	atomic_store_explicit(&stop, true, memory_order_relaxed); /* relaxed: stop flag (see worker_main) */
	for (uint64_t i = 0; i < nthreads; i++)
		pthread_join(workers[i].th, NULL);
	uint64_t elapsed = sluice_monotonic_ns() - t0;
	sluice_limiter_maintenance_stop(lim);

	/* Memory over time: every sample for short runs, else about 20 rows. */
	printf("\n%6s %14s %10s %10s %12s %12s %10s\n", "t_s", "decisions", "rss_MiB", "live_keys",
	       "inserted", "reclaimed", "degraded");
	size_t step = ns <= 20 ? 1 : ns / 20;
	uint64_t rss_min = UINT64_MAX, rss_max = 0, live_max = 0;
	for (size_t i = 0; i < ns; i++) {
		const struct sample *sm = &samples[i];
		rss_min = sm->rss < rss_min ? sm->rss : rss_min;
		rss_max = sm->rss > rss_max ? sm->rss : rss_max;
		live_max = sm->st.live_keys > live_max ? sm->st.live_keys : live_max;
		if (i % step == 0 || i + 1 == ns)
			printf("%6" PRIu64 " %14" PRIu64 " %10.1f %10" PRIu64 " %12" PRIu64 " %12" PRIu64
			       " %10" PRIu64 "\n",
			       sm->t_s, sm->decisions, (double)sm->rss / 1048576.0, sm->st.live_keys,
			       sm->st.inserted, sm->st.reclaimed, sm->st.degraded);
	}

	/* Totals and the laws. */
	uint64_t decisions = 0, lim_adm = 0, lim_den = 0, lim_deg = 0, cell_adm = 0;
	bool ok = true;
	uint64_t cell_slack = 0, cell_tight = 0, cells_used = 0;
	for (int c = 0; c < CELLS; c++) {
		struct tally t = { 0 };
		for (uint64_t i = 0; i < nthreads; i++) {
			const struct tally *wt = &workers[i].cell[c];
			if (wt->cost == 0)
				continue;
			if (t.cost == 0 || wt->t_first < t.t_first)
				t.t_first = wt->t_first;
			if (t.cost == 0 || wt->t_last > t.t_last)
				t.t_last = wt->t_last;
			t.cost += wt->cost;
		}
		cells_used += t.cost != 0;
		ok &= check_bound("cell", (uint64_t)c, &t, &cell_rate, &cell_slack, &cell_tight);
	}
	/* Calendar: at most limit per window, over the windows the admissions
	 * span (a stale request counts in the cell's later window, so only the
	 * span form holds per request time). */
	uint64_t cal_adm = 0;
	bool cal_ok = true;
	for (int c = 0; c < CALS; c++) {
		struct tally t = { 0 };
		for (uint64_t i = 0; i < nthreads; i++) {
			const struct tally *wt = &workers[i].cal[c];
			if (wt->cost == 0)
				continue;
			if (t.cost == 0 || wt->t_first < t.t_first)
				t.t_first = wt->t_first;
			if (t.cost == 0 || wt->t_last > t.t_last)
				t.t_last = wt->t_last;
			t.cost += wt->cost;
		}
		uint64_t windows = t.cost ? t.t_last / CAL_WINDOW_NS - t.t_first / CAL_WINDOW_NS + 1 : 0;
		if (t.cost > CAL_LIMIT * windows) {
			fprintf(stderr, "VIOLATION calendar %d: %" PRIu64 " > %d x %" PRIu64 " windows\n", c,
				t.cost, CAL_LIMIT, windows);
			cal_ok = false;
		}
	}
	uint64_t slot_acq = 0, slot_den = 0;
	for (uint64_t i = 0; i < nthreads; i++) {
		cal_adm += workers[i].cal_admitted;
		slot_acq += workers[i].slot_acquired;
		slot_den += workers[i].slot_denied;
	}
	/* relaxed: the workers are joined */
	uint64_t slot_bad = atomic_load_explicit(&slot_violations, memory_order_relaxed);
	bool slots_idle = true;
	for (int c = 0; c < SLOT_CELLS; c++)
		slots_idle &= sluice_slots_is_idle(slot_cells[c], &slot_cfg, 0);
	ok &= cal_ok && slot_bad == 0 && slots_idle;
	uint64_t key_slack[2] = { 0, 0 }, key_tight[2] = { 0, 0 }, keys_used = 0;
	for (uint64_t k = 0; k < HOT + ncold; k++) {
		struct tally t = { 0 };
		if (k < HOT) {
			for (uint64_t i = 0; i < nthreads; i++) {
				const struct tally *wt = &workers[i].hot[k];
				if (wt->cost == 0)
					continue;
				if (t.cost == 0 || wt->t_first < t.t_first)
					t.t_first = wt->t_first;
				if (t.cost == 0 || wt->t_last > t.t_last)
					t.t_last = wt->t_last;
				t.cost += wt->cost;
			}
		} else {
			/* relaxed: the workers are joined */
			t.cost = atomic_load_explicit(&cold[k - HOT].cost, memory_order_relaxed);
			t.t_first = atomic_load_explicit(&cold[k - HOT].t_first, memory_order_relaxed); /* relaxed: joined */
			t.t_last = atomic_load_explicit(&cold[k - HOT].t_last, memory_order_relaxed); /* relaxed: joined */
		}
		keys_used += t.cost != 0;
		for (int l = 0; l < 2; l++)
			ok &= check_bound("key", k, &t, &limits[l].rate, k < HOT ? &key_slack[l] : NULL,
					  &key_tight[l]);
	}
	for (uint64_t i = 0; i < nthreads; i++) {
		decisions += workers[i].decisions;
		lim_adm += workers[i].lim_admitted;
		lim_den += workers[i].lim_denied;
		lim_deg += workers[i].lim_degraded;
		cell_adm += workers[i].cell_admitted;
	}
	struct sluice_limiter_stats st = { .size = sizeof st };
	sluice_limiter_stats(lim, &st);
	bool counters_ok = st.admitted == lim_adm && st.denied == lim_den && st.degraded == lim_deg &&
			   st.live_keys == st.inserted - st.reclaimed && st.live_keys <= max_keys;
	ok &= counters_ok;

	double secs = (double)elapsed / 1e9;
	printf("\ndecisions: %" PRIu64 " in %.1f s (%.0f/s)\n", decisions, secs, (double)decisions / secs);
	printf("cells: %" PRIu64 " admitted over %" PRIu64 " cells; bound held on all; "
	       "largest slack %" PRIu64 " units, %" PRIu64 " cells within one burst of the bound\n",
	       cell_adm, cells_used, cell_slack, cell_tight);
	printf("calendar: %" PRIu64 " admitted over %d cells (%d per %" PRIu64 " ms window); bound held: %s\n",
	       cal_adm, CALS, CAL_LIMIT, (uint64_t)(CAL_WINDOW_NS / 1000000), cal_ok ? "yes" : "NO");
	printf("slots: %" PRIu64 " acquired, %" PRIu64 " denied over %d cells of %d slot(s); holders above N: %" PRIu64
	       "; all free at the end: %s\n",
	       slot_acq, slot_den, SLOT_CELLS, SLOTS_PER_CELL, slot_bad, slots_idle ? "yes" : "NO");
	printf("limiter: admitted %" PRIu64 " denied %" PRIu64 " degraded %" PRIu64
	       " (stats: %" PRIu64 "/%" PRIu64 "/%" PRIu64 ") %s\n",
	       lim_adm, lim_den, lim_deg, st.admitted, st.denied, st.degraded,
	       counters_ok ? "agree" : "DISAGREE");
	for (int l = 0; l < 2; l++)
		printf("limit %d (%" PRIu64 " per %" PRIu64 " ms, burst %" PRIu64 "): bound held on all %" PRIu64
		       " keys used; hot keys: largest slack %" PRIu64 " units, %" PRIu64 " of %d within one burst\n",
		       l, limits[l].rate.limit, limits[l].rate.period_ns / 1000000, limits[l].rate.burst,
		       keys_used, key_slack[l], key_tight[l], HOT);
	printf("keys: inserted %" PRIu64 " reclaimed %" PRIu64 " live %" PRIu64 " (max seen %" PRIu64
	       ", budget %" PRIu64 "), bytes %" PRIu64 "\n",
	       st.inserted, st.reclaimed, st.live_keys, live_max, max_keys, st.bytes);
	printf("rss: start %.1f MiB, min %.1f, max %.1f, end %.1f MiB\n", (double)rss0 / 1048576.0,
	       (double)rss_min / 1048576.0, (double)rss_max / 1048576.0,
	       ns ? (double)samples[ns - 1].rss / 1048576.0 : 0.0);

	sluice_limiter_destroy(lim);
	for (int c = 0; c < SLOT_CELLS; c++)
		free(slot_cells[c]);
	free(samples);
	free(workers);
	free(cold);
	printf("%s\n", ok ? "soak: PASS" : "soak: FAIL");
	return ok ? 0 : 1;
}
