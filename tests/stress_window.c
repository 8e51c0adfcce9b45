/*
 * stress_window.c - threads on one window cell with a shared fake clock,
 * checking each kind's invariant exactly after the run (also under TSan):
 *
 *   log:      no window (x - W, x] of passed times holds more than L units;
 *   counter:  per aligned window (the one each admission was counted in,
 *             read back from reset_ns) at most L units, and in any window
 *             (x - W, x] of effective times at most L + floor(p * e / W);
 *   calendar: per window the admission was counted in, at most L units.
 *
 * Threads read the clock, sometimes use a stale value (time going
 * backwards), admit with costs 0..3, and cancel some admissions through
 * their receipts (a successful cancel removes the record). Duration per
 * kind: SLUICE_STRESS_MS (default 1000) / 3. Prints "N passed, N failed".
 */
#include <sluice.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define THREADS 4
#define MAX_RECORDS (1u << 18)

enum kind { LOG, COUNTER, CALENDAR };

struct record {
	uint64_t t;      /* the time passed in, or the effective time */
	uint64_t window; /* aligned window the units were counted in */
	uint64_t cost;
};

struct shared {
	enum kind kind;
	uint64_t limit, window_ns;
	struct sluice_window_log_config log_cfg;
	struct sluice_window_counter_config counter_cfg;
	struct sluice_calendar_config calendar_cfg;
	struct sluice_window_log *log;
	struct sluice_window_counter counter;
	struct sluice_calendar calendar;
	_Atomic uint64_t clock;
	atomic_bool stop;
};

struct worker {
	struct shared *sh;
	uint64_t seed;
	struct record *rec;
	size_t n;
	uint64_t admitted, denied, cancelled;
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

static void *work(void *arg)
{
	struct worker *w = arg;
	struct shared *sh = w->sh;
	uint64_t rng = w->seed;

	/* relaxed: a stop flag; nothing is published through it. */
	while (!atomic_load_explicit(&sh->stop, memory_order_relaxed) && w->n < MAX_RECORDS) {
		/* relaxed: the fake clock is a plain counter. */
		uint64_t t = atomic_fetch_add_explicit(&sh->clock, rng_next(&rng) % 3, memory_order_relaxed);
		if (rng_next(&rng) % 8 == 0) /* a stale clock */
			t -= t < sh->window_ns ? t : rng_next(&rng) % sh->window_ns;
		uint64_t cost = rng_next(&rng) % 4;
		bool cancel = rng_next(&rng) % 10 == 0;
		struct sluice_decision d;
		bool ok, undone = false;

		switch (sh->kind) {
		case LOG: {
			struct sluice_window_log_receipt r;
			ok = sluice_window_log_admit_receipt(sh->log, &sh->log_cfg, t, cost, &d, &r);
			if (ok && cancel)
				undone = sluice_window_log_cancel(sh->log, &r);
			break;
		}
		case COUNTER: {
			struct sluice_window_counter_receipt r;
			ok = sluice_window_counter_admit_receipt(&sh->counter, &sh->counter_cfg, t, cost,
								 &d, &r);
			if (ok && cancel)
				undone = sluice_window_counter_cancel(&sh->counter, &r);
			break;
		}
		default: {
			struct sluice_calendar_receipt r;
			ok = sluice_calendar_admit_receipt(&sh->calendar, &sh->calendar_cfg, t, cost, &d,
							   &r);
			if (ok && cancel)
				undone = sluice_calendar_cancel(&sh->calendar, &r);
			break;
		}
		}
		if (!ok) {
			w->denied++;
			continue;
		}
		if (cost == 0)
			continue;
		if (undone) {
			w->cancelled++;
			continue;
		}
		w->admitted += cost;
		struct record *r = &w->rec[w->n++];
		r->cost = cost;
		r->t = t;
		if (sh->kind == COUNTER) {
			/* reset = start + 2W - t after an admission (cur > 0) */
			uint64_t start = t + d.reset_ns - 2 * sh->window_ns;
			r->window = start / sh->window_ns;
			r->t = t > start ? t : start; /* effective time */
		} else if (sh->kind == CALENDAR) {
			r->window = (t + d.reset_ns) / sh->window_ns - 1;
		}
	}
	return NULL;
}

static int by_time(const void *a, const void *b)
{
	const struct record *x = a, *y = b;
	return x->t < y->t ? -1 : x->t > y->t;
}

static int by_window(const void *a, const void *b)
{
	const struct record *x = a, *y = b;
	return x->window < y->window ? -1 : x->window > y->window;
}

static int run(enum kind kind, uint64_t limit, uint64_t window_ns, uint64_t ms)
{
	static const char *names[] = { "log", "counter", "calendar" };
	struct shared *sh = calloc(1, sizeof(*sh));
	struct worker w[THREADS];
	pthread_t th[THREADS];
	int failed = 0;

	sh->kind = kind;
	sh->limit = limit;
	sh->window_ns = window_ns;
	if (sluice_window_log_config_init(&sh->log_cfg, limit, window_ns) != 0 ||
	    sluice_window_counter_config_init(&sh->counter_cfg, limit, window_ns) != 0 ||
	    sluice_calendar_config_init(&sh->calendar_cfg, limit, window_ns) != 0)
		return 1;
	sh->log = aligned_alloc(64, (sluice_window_log_size(&sh->log_cfg) + 63) & ~(size_t)63);
	sluice_window_log_init(sh->log, &sh->log_cfg);
	sluice_window_counter_init(&sh->counter);
	sluice_calendar_init(&sh->calendar);
	atomic_init(&sh->clock, 1000000);
	atomic_init(&sh->stop, false);

	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){ .sh = sh, .seed = (uint64_t)i * 1000003 + kind };
		w[i].rec = malloc(MAX_RECORDS * sizeof(struct record));
		pthread_create(&th[i], NULL, work, &w[i]);
	}
	uint64_t end = now_ms() + ms;
	while (now_ms() < end) {
		struct timespec nap = { 0, 5 * 1000000 };
		nanosleep(&nap, NULL);
	}
	/* relaxed: the join below orders everything. */
	atomic_store_explicit(&sh->stop, true, memory_order_relaxed);
	size_t n = 0;
	uint64_t admitted = 0, denied = 0, cancelled = 0;
	for (int i = 0; i < THREADS; i++) {
		pthread_join(th[i], NULL);
		n += w[i].n;
		admitted += w[i].admitted;
		denied += w[i].denied;
		cancelled += w[i].cancelled;
	}
	struct record *all = malloc((n + 1) * sizeof(*all));
	size_t k = 0;
	for (int i = 0; i < THREADS; i++) {
		memcpy(all + k, w[i].rec, w[i].n * sizeof(*all));
		k += w[i].n;
		free(w[i].rec);
	}

	uint64_t worst = 0;
	if (kind == LOG || kind == COUNTER) {
		/* Sliding windows (x - W, x] ending at each record. */
		qsort(all, n, sizeof(*all), by_time);
		/* Counter: effective times sort by window too, so each aligned
		 * window is a run; p = units of the run of the window before. */
		uint64_t run_window = UINT64_MAX, run_total = 0, prev_window = UINT64_MAX,
			 prev_total = 0;
		size_t run_end = 0;
		uint64_t sum = 0;
		size_t lo = 0;
		for (size_t i = 0; i < n; i++) {
			sum += all[i].cost;
			while (all[lo].t + window_ns <= all[i].t)
				sum -= all[lo++].cost;
			/* include every record at the same time as x */
			uint64_t s = sum;
			for (size_t j = i + 1; j < n && all[j].t == all[i].t; j++)
				s += all[j].cost;
			uint64_t bound = limit;
			if (kind == COUNTER) {
				if (i >= run_end) {
					prev_window = run_window;
					prev_total = run_total;
					run_window = all[i].window;
					run_total = 0;
					for (run_end = i; run_end < n && all[run_end].window == run_window;
					     run_end++)
						run_total += all[run_end].cost;
				}
				uint64_t p = prev_window + 1 == run_window ? prev_total : 0;
				bound = limit + p * (all[i].t % window_ns) / window_ns;
			}
			if (s > worst)
				worst = s;
			if (s > bound) {
				if (failed++ < 5)
					fprintf(stderr, "%s: %llu units in (%llu - W, %llu], bound %llu\n",
						names[kind], (unsigned long long)s,
						(unsigned long long)all[i].t, (unsigned long long)all[i].t,
						(unsigned long long)bound);
			}
		}
	}
	if (kind == COUNTER || kind == CALENDAR) {
		qsort(all, n, sizeof(*all), by_window);
		for (size_t i = 0; i < n;) {
			uint64_t sum = 0;
			size_t j = i;
			for (; j < n && all[j].window == all[i].window; j++)
				sum += all[j].cost;
			if (kind == CALENDAR && sum > worst)
				worst = sum;
			if (sum > limit && failed++ < 5)
				fprintf(stderr, "%s: %llu units in aligned window %llu\n", names[kind],
					(unsigned long long)sum, (unsigned long long)all[i].window);
			i = j;
		}
	}
	printf("%s: L=%llu W=%llu: %llu units admitted, %llu denials, %llu cancels, most in one window %llu\n",
	       names[kind], (unsigned long long)limit, (unsigned long long)window_ns,
	       (unsigned long long)admitted, (unsigned long long)denied, (unsigned long long)cancelled,
	       (unsigned long long)worst);
	if (admitted == 0 || denied == 0 || cancelled == 0) {
		fprintf(stderr, "%s: the run exercised too little\n", names[kind]);
		failed++;
	}
	if (kind != COUNTER && worst != limit) {
		fprintf(stderr, "%s: never reached the limit (%llu)\n", names[kind], (unsigned long long)worst);
		failed++;
	}
	free(all);
	free(sh->log);
	free(sh);
	return failed != 0;
}

int main(void)
{
	const char *env = getenv("SLUICE_STRESS_MS");
	uint64_t ms = env != NULL ? strtoull(env, NULL, 10) : 1000;
	int passed = 0, failed = 0;

	if (ms < 30)
		ms = 30;
	int r[] = {
		run(LOG, 16, 400, ms / 3),
		run(COUNTER, 16, 400, ms / 3),
		run(CALENDAR, 16, 400, ms / 3),
	};
	for (size_t i = 0; i < sizeof(r) / sizeof(r[0]); i++)
		r[i] ? failed++ : passed++;
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
