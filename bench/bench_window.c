/*
 * bench_window.c - admit of each window kind and acquire+release of slots,
 * uncontended (one cell per thread) and contended (threads 1..2 on one
 * shared cell), with the GCRA cell's admit as the baseline of each, all in
 * one binary so the ratios come from one run.
 *
 * Arrivals: `now` advances 1 us per admit against a limit of 1000 per 1 ms,
 * i.e. exactly the configured rate, so decisions mix admissions and
 * denials as in a loaded limiter. `now` is computed in the loop (an add),
 * never read from a clock.
 */
#include <sluice.h>

#include <stdlib.h>

#include "shim.h"

#define LIMIT 1000
#define WINDOW_NS 1000000ull
#define STEP_NS 1000ull

static struct sluice_rate rate;
static struct sluice_window_log_config log_cfg;
static struct sluice_window_counter_config counter_cfg;
static struct sluice_calendar_config calendar_cfg;
static struct sluice_slots_config slots_cfg;

/* Shared cells for the contended runs, each on its own cache lines. */
static _Alignas(SLUICE_CACHELINE) struct sluice_gcra shared_gcra;
static _Alignas(SLUICE_CACHELINE) struct sluice_window_counter shared_counter;
static _Alignas(SLUICE_CACHELINE) struct sluice_calendar shared_calendar;
static struct sluice_window_log *shared_log;
static struct sluice_slots *shared_slots;

static void configs(void)
{
	sluice_rate_init(&rate, LIMIT, WINDOW_NS, LIMIT);
	sluice_window_log_config_init(&log_cfg, LIMIT, WINDOW_NS);
	sluice_window_counter_config_init(&counter_cfg, LIMIT, WINDOW_NS);
	sluice_calendar_config_init(&calendar_cfg, LIMIT, WINDOW_NS);
	sluice_slots_config_init(&slots_cfg, 64, 0, 0);
}

static void *cell_alloc(size_t size)
{
	return aligned_alloc(SLUICE_CACHELINE, (size + SLUICE_CACHELINE - 1) / SLUICE_CACHELINE *
						       SLUICE_CACHELINE);
}

/* The body shared by every admit benchmark. The cell is chosen after the
 * first sbench_batch() (a barrier), once thread 0 has set up the shared one:
 * `select` picks the shared cell when contended, else a private one. */
#define ADMIT_BODY(type, cell, select, admit_call)                              \
	do {                                                                    \
		uint64_t now = 1000 * WINDOW_NS, admitted = 0;                  \
		type *cell = NULL;                                              \
		for (uint64_t n; (n = sbench_batch(st)) != 0;) {                \
			if (cell == NULL)                                       \
				cell = (select);                                \
			for (uint64_t i = 0; i < n; i++) {                      \
				now += STEP_NS;                                 \
				admitted += admit_call;                         \
			}                                                       \
		}                                                               \
		sbench_keep(admitted);                                          \
		sbench_items(st, (int64_t)sbench_iterations(st));               \
	} while (0)

static void BM_window_gcra_admit(sbench_state *st)
{
	struct sluice_gcra own;
	bool contended = sbench_range(st, 0) != 0;
	if (sbench_thread_index(st) == 0) {
		configs();
		sluice_gcra_init(&shared_gcra);
	}
	sluice_gcra_init(&own);
	ADMIT_BODY(struct sluice_gcra, cell, contended ? &shared_gcra : &own,
		   sluice_gcra_admit(cell, &rate, now, 1, NULL));
}
SBENCH_REGISTER(BM_window_gcra_admit)
{
	sbench_arg(b, 0);
	sbench_arg(b, 1);
	sbench_thread_range(b, 1, 2);
}

static void BM_window_log_admit(sbench_state *st)
{
	bool contended = sbench_range(st, 0) != 0;
	if (sbench_thread_index(st) == 0) {
		configs();
		free(shared_log);
		shared_log = cell_alloc(sluice_window_log_size(&log_cfg));
		sluice_window_log_init(shared_log, &log_cfg);
	}
	struct sluice_window_log *own = cell_alloc(sluice_window_log_size(&log_cfg));
	sluice_window_log_init(own, &log_cfg);
	ADMIT_BODY(struct sluice_window_log, cell, contended ? shared_log : own,
		   sluice_window_log_admit(cell, &log_cfg, now, 1, NULL));
	free(own);
}
SBENCH_REGISTER(BM_window_log_admit)
{
	sbench_arg(b, 0);
	sbench_arg(b, 1);
	sbench_thread_range(b, 1, 2);
	sbench_baseline(b, "BM_window_gcra_admit");
}

static void BM_window_counter_admit(sbench_state *st)
{
	struct sluice_window_counter own;
	bool contended = sbench_range(st, 0) != 0;
	if (sbench_thread_index(st) == 0) {
		configs();
		sluice_window_counter_init(&shared_counter);
	}
	sluice_window_counter_init(&own);
	ADMIT_BODY(struct sluice_window_counter, cell, contended ? &shared_counter : &own,
		   sluice_window_counter_admit(cell, &counter_cfg, now, 1, NULL));
}
SBENCH_REGISTER(BM_window_counter_admit)
{
	sbench_arg(b, 0);
	sbench_arg(b, 1);
	sbench_thread_range(b, 1, 2);
	sbench_baseline(b, "BM_window_gcra_admit");
}

static void BM_window_calendar_admit(sbench_state *st)
{
	struct sluice_calendar own;
	bool contended = sbench_range(st, 0) != 0;
	if (sbench_thread_index(st) == 0) {
		configs();
		sluice_calendar_init(&shared_calendar);
	}
	sluice_calendar_init(&own);
	ADMIT_BODY(struct sluice_calendar, cell, contended ? &shared_calendar : &own,
		   sluice_calendar_admit(cell, &calendar_cfg, now, 1, NULL));
}
SBENCH_REGISTER(BM_window_calendar_admit)
{
	sbench_arg(b, 0);
	sbench_arg(b, 1);
	sbench_thread_range(b, 1, 2);
	sbench_baseline(b, "BM_window_gcra_admit");
}

/* One acquire and one release per iteration (64 slots: never full). */
static void BM_window_slots_acquire_release(sbench_state *st)
{
	bool contended = sbench_range(st, 0) != 0;
	if (sbench_thread_index(st) == 0) {
		configs();
		free(shared_slots);
		shared_slots = cell_alloc(sluice_slots_size(&slots_cfg));
		sluice_slots_init(shared_slots, &slots_cfg);
	}
	struct sluice_slots *own = cell_alloc(sluice_slots_size(&slots_cfg));
	sluice_slots_init(own, &slots_cfg);
	struct sluice_slots *cell = NULL;
	uint64_t now = 1000, failures = 0;
	for (uint64_t n; (n = sbench_batch(st)) != 0;) {
		if (cell == NULL) /* after the first batch: a barrier */
			cell = contended ? shared_slots : own;
		for (uint64_t i = 0; i < n; i++) {
			sluice_slot_handle h;
			now += STEP_NS;
			if (sluice_slots_acquire(cell, &slots_cfg, now, NULL, &h))
				failures += sluice_slots_release(cell, &slots_cfg, h) != SLUICE_OK;
			else
				failures++;
		}
	}
	if (failures != 0)
		sbench_error(st, "acquire or release failed");
	sbench_items(st, (int64_t)sbench_iterations(st));
	free(own);
}
SBENCH_REGISTER(BM_window_slots_acquire_release)
{
	sbench_arg(b, 0);
	sbench_arg(b, 1);
	sbench_thread_range(b, 1, 2);
	sbench_baseline(b, "BM_window_gcra_admit");
}
