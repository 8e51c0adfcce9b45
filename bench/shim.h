/*
 * bench/shim.h - Google Benchmark as a C API.
 *
 * Benchmark bodies are C functions beside the code they measure; one C++
 * file (shim.cc) wraps Google Benchmark's registration, timing loop, thread
 * counts and counters. To keep nanosecond figures honest there is no
 * cross-language call per iteration: sbench_batch() hands the C loop the
 * whole iteration count of a run at once, so the timed region is a plain C
 * loop. BM_shim_empty_loop (bench_shim.c) shows the residual cost.
 *
 *     static void BM_thing(sbench_state *st)
 *     {
 *             setup();                  // thread 0 only, for shared state
 *             for (uint64_t n; (n = sbench_batch(st)) != 0;)
 *                     for (uint64_t i = 0; i < n; i++)
 *                             sbench_keep(work(i));
 *             sbench_items(st, sbench_iterations(st));
 *     }
 *     SBENCH_REGISTER(BM_thing) { sbench_threads(b, 2); }
 *
 * Threads: every thread runs the body; the first sbench_batch() call is a
 * barrier, so state set up by thread 0 before it is visible to all threads
 * after it, and the loop's end is a barrier too, so thread 0 may tear down
 * after its loop.
 */
#ifndef SLUICE_BENCH_SHIM_H
#define SLUICE_BENCH_SHIM_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sbench_state sbench_state; /* a benchmark::State */
typedef struct sbench sbench;             /* a registered benchmark */
typedef void (*sbench_fn)(sbench_state *st);

/* Registration (call from SBENCH_REGISTER bodies; they run before main). */
sbench *sbench_register(const char *name, sbench_fn fn);
void sbench_arg(sbench *b, int64_t arg);
void sbench_args2(sbench *b, int64_t arg0, int64_t arg1);
void sbench_threads(sbench *b, int threads);
/* Thread counts lo, 2*lo, ... up to hi (hi included). */
void sbench_thread_range(sbench *b, int lo, int hi);
void sbench_real_time(sbench *b);
void sbench_fixed_iterations(sbench *b, int64_t iterations);
/* Largest thread count for scaling sweeps: $SLUICE_BENCH_MAX_THREADS, else
 * `fallback` (the default run stays short on a 2-core machine). */
int sbench_max_threads(int fallback);
/* Name the family this benchmark is compared with in the summary: the
 * instance with the same argument/thread suffix if it exists, else the
 * family's first instance. */
void sbench_baseline(sbench *b, const char *baseline_family);

/* Inside a body. */
uint64_t sbench_batch(sbench_state *st); /* iterations to run now; 0: done */
int64_t sbench_range(sbench_state *st, int index);
int sbench_thread_index(sbench_state *st);
int sbench_thread_count(sbench_state *st);
uint64_t sbench_iterations(sbench_state *st);
void sbench_pause(sbench_state *st);
void sbench_resume(sbench_state *st);
/* Items processed by this thread (summed over threads; reported per second). */
void sbench_items(sbench_state *st, int64_t items);
/* A user counter; flags: 0 plain (summed over threads), 1 averaged over
 * threads, 2 per second (rate). */
void sbench_counter(sbench_state *st, const char *name, double value, int flags);
void sbench_label(sbench_state *st, const char *label);
void sbench_error(sbench_state *st, const char *message);

/* Keep a value alive without emitting code for it. */
#define sbench_keep(value) __asm__ volatile("" : : "r"(value) : "memory")
#define sbench_clobber() __asm__ volatile("" : : : "memory")

#define SBENCH_REGISTER(fn)                                                   \
	static void sbench_configure_##fn(sbench *b);                         \
	__attribute__((constructor)) static void sbench_ctor_##fn(void)       \
	{                                                                     \
		sbench_configure_##fn(sbench_register(#fn, fn));              \
	}                                                                     \
	static void sbench_configure_##fn(sbench *b)

#ifdef __cplusplus
}
#endif

#endif /* SLUICE_BENCH_SHIM_H */
