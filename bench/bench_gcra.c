/*
 * bench_gcra.c - the GCRA cell against its baselines, in one binary so that
 * the ratios come from one run:
 *
 *   BM_gcra_admit               uncontended, explicit now, decision filled
 *   BM_gcra_admit_now           the same through sluice_gcra_admit_now()
 *                               (one CLOCK_MONOTONIC vDSO read per call)
 *   BM_gcra_admit_contended     one cell, 1..4 threads, real time, items
 *   BM_baseline_cas_loop        load + compare-exchange loop adding 1 to one
 *                               uint64: the hardware floor of any lock-free
 *                               update of one word (uncontended and 1..4)
 *   BM_baseline_mutex_bucket    the same token bucket (same arithmetic, same
 *                               decision fields) under a pthread mutex
 *
 * The measured path is the admitted one: the rate is 1 unit per ns with a
 * bucket of 2^62 units, and `now` is fixed, so each admission adds 1 ns of
 * debt and the bucket cannot run dry within 2^62 iterations. Every call
 * therefore does the full work: load, decide, CAS (or lock, decide, store,
 * unlock) and fill the decision struct.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include <sluice.h>

#include "shim.h"
#include "common/util_internal.h"

#define BENCH_NOW (UINT64_C(1) << 40) /* any fixed time */

static struct sluice_rate bench_rate(void)
{
	struct sluice_rate r;
	if (sluice_rate_init(&r, SLUICE_NS_PER_SEC, SLUICE_NS_PER_SEC, UINT64_C(1) << 62) != 0)
		abort();
	return r;
}

/* ------------------------------------------------------------------------ */

static void BM_gcra_admit(sbench_state *st)
{
	struct sluice_rate rate = bench_rate();
	struct sluice_gcra cell;
	struct sluice_decision d;
	uint64_t now = BENCH_NOW, admitted = 0;

	sluice_gcra_init(&cell);
	for (uint64_t n; (n = sbench_batch(st)) != 0;)
		for (uint64_t i = 0; i < n; i++) {
			admitted += sluice_gcra_admit(&cell, &rate, now, 1, &d);
			sbench_keep(d.remaining);
		}
	if (admitted != sbench_iterations(st))
		sbench_error(st, "a request was denied: not the admitted path");
}
SBENCH_REGISTER(BM_gcra_admit)
{
	sbench_baseline(b, "BM_baseline_cas_loop");
}

static void BM_gcra_admit_now(sbench_state *st)
{
	struct sluice_rate rate = bench_rate();
	struct sluice_gcra cell;
	struct sluice_decision d;
	uint64_t admitted = 0;

	sluice_gcra_init(&cell);
	for (uint64_t n; (n = sbench_batch(st)) != 0;)
		for (uint64_t i = 0; i < n; i++) {
			admitted += sluice_gcra_admit_now(&cell, &rate, 1, &d);
			sbench_keep(d.remaining);
		}
	if (admitted != sbench_iterations(st))
		sbench_error(st, "a request was denied: not the admitted path");
}
SBENCH_REGISTER(BM_gcra_admit_now)
{
	sbench_baseline(b, "BM_gcra_admit");
}

/* One shared cell on its own cache line. */
static struct {
	struct sluice_gcra cell;
	struct sluice_rate rate;
} shared_gcra __attribute__((aligned(SLUICE_CACHELINE)));

static void BM_gcra_admit_contended(sbench_state *st)
{
	struct sluice_decision d;
	uint64_t admitted = 0;

	if (sbench_thread_index(st) == 0) {
		shared_gcra.rate = bench_rate();
		sluice_gcra_init(&shared_gcra.cell);
	}
	for (uint64_t n; (n = sbench_batch(st)) != 0;)
		for (uint64_t i = 0; i < n; i++) {
			admitted += sluice_gcra_admit(&shared_gcra.cell, &shared_gcra.rate,
						      BENCH_NOW, 1, &d);
			sbench_keep(d.remaining);
		}
	if (admitted != sbench_iterations(st))
		sbench_error(st, "a request was denied: not the admitted path");
	sbench_items(st, (int64_t)sbench_iterations(st));
}
SBENCH_REGISTER(BM_gcra_admit_contended)
{
	sbench_thread_range(b, 1, sbench_max_threads(4));
	sbench_real_time(b);
	sbench_baseline(b, "BM_baseline_mutex_bucket_contended");
}

/* ------------------------------------------------------------------------ */
/* Baseline: a bare compare-exchange loop on one word                        */
/* ------------------------------------------------------------------------ */

static inline void cas_increment(_Atomic uint64_t *word)
{
	/* relaxed: the floor of a lock-free update of one word, with the same
	 * orders as the GCRA cell's CAS loop */
	uint64_t v = atomic_load_explicit(word, memory_order_relaxed);
	/* relaxed on success and failure: as above; failure reloads v */
	while (!atomic_compare_exchange_weak_explicit(word, &v, v + 1, memory_order_relaxed,
						      memory_order_relaxed))
		;
}

static void BM_baseline_cas_loop(sbench_state *st)
{
	_Atomic uint64_t word = 0;

	for (uint64_t n; (n = sbench_batch(st)) != 0;)
		for (uint64_t i = 0; i < n; i++)
			cas_increment(&word);
	/* relaxed: read back by the only thread */
	sbench_keep(atomic_load_explicit(&word, memory_order_relaxed));
}
SBENCH_REGISTER(BM_baseline_cas_loop)
{
	(void)b;
}

static _Atomic uint64_t shared_word __attribute__((aligned(SLUICE_CACHELINE)));

static void BM_baseline_cas_loop_contended(sbench_state *st)
{
	for (uint64_t n; (n = sbench_batch(st)) != 0;)
		for (uint64_t i = 0; i < n; i++)
			cas_increment(&shared_word);
	sbench_items(st, (int64_t)sbench_iterations(st));
}
SBENCH_REGISTER(BM_baseline_cas_loop_contended)
{
	sbench_thread_range(b, 1, sbench_max_threads(4));
	sbench_real_time(b);
}

/* ------------------------------------------------------------------------ */
/* Baseline: the same token bucket under a pthread mutex                     */
/* ------------------------------------------------------------------------ */

struct mutex_bucket {
	pthread_mutex_t mu;
	uint64_t tat_ns;
};

/* The GCRA decision of src/cells/gcra.c, verbatim arithmetic (including the
 * multiply-shift for `remaining`), with a mutex instead of a CAS. noinline:
 * like the library call it is compared with, it is a call, and its decision
 * stores cannot be dropped as dead. */
__attribute__((noinline)) static bool
mutex_bucket_admit(struct mutex_bucket *mb, const struct sluice_rate *rate, uint64_t now_ns,
		   uint64_t cost, struct sluice_decision *out)
{
	uint64_t need = cost * rate->interval_ns;
	bool ok;
	uint64_t debt;

	pthread_mutex_lock(&mb->mu);
	uint64_t base = mb->tat_ns > now_ns ? mb->tat_ns : now_ns;
	debt = base - now_ns;
	ok = cost <= rate->burst && debt <= rate->tolerance_ns - need &&
	     base <= UINT64_MAX - need;
	if (ok) {
		mb->tat_ns = base + need;
		debt += need;
	}
	pthread_mutex_unlock(&mb->mu);

	out->allowed = ok;
	out->degraded = false;
	out->reason = ok ? SLUICE_REASON_NONE : SLUICE_REASON_RATE;
	out->limit_index = 0;
	out->limit = rate->limit;
	out->remaining = debt >= rate->tolerance_ns
				 ? 0
				 : (uint64_t)(((sluice__u128)(rate->tolerance_ns - debt) *
					       rate->div_magic) >>
					      rate->div_shift);
	out->reset_ns = debt;
	out->retry_after_ns = ok ? 0 : debt - (rate->tolerance_ns - need);
	return ok;
}

static void *noop_thread(void *arg)
{
	return arg;
}

/*
 * glibc (2.36) skips the atomic instructions of pthread_mutex_lock/unlock
 * while the process has never had a second thread: a filtered run of the
 * uncontended baseline would then time a mutex without its atomics (about
 * 4 ns here instead of 15). Any program that needs a thread-safe limiter has
 * threads, so make the process multi-threaded first (the flag stays set).
 */
static void make_process_multithreaded(void)
{
	pthread_t th;
	if (pthread_create(&th, NULL, noop_thread, NULL) == 0)
		pthread_join(th, NULL);
}

static void BM_baseline_mutex_bucket(sbench_state *st)
{
	make_process_multithreaded();
	struct sluice_rate rate = bench_rate();
	struct mutex_bucket mb = {PTHREAD_MUTEX_INITIALIZER, 0};
	struct sluice_decision d;
	uint64_t admitted = 0;

	for (uint64_t n; (n = sbench_batch(st)) != 0;)
		for (uint64_t i = 0; i < n; i++) {
			admitted += mutex_bucket_admit(&mb, &rate, BENCH_NOW, 1, &d);
			sbench_keep(d.remaining);
		}
	if (admitted != sbench_iterations(st))
		sbench_error(st, "a request was denied: not the admitted path");
}
SBENCH_REGISTER(BM_baseline_mutex_bucket)
{
	(void)b;
}

static struct {
	struct mutex_bucket mb;
	struct sluice_rate rate;
} shared_mutex __attribute__((aligned(SLUICE_CACHELINE))) = {.mb = {PTHREAD_MUTEX_INITIALIZER, 0}};

static void BM_baseline_mutex_bucket_contended(sbench_state *st)
{
	struct sluice_decision d;
	uint64_t admitted = 0;

	if (sbench_thread_index(st) == 0) {
		shared_mutex.rate = bench_rate();
		shared_mutex.mb.tat_ns = 0;
	}
	for (uint64_t n; (n = sbench_batch(st)) != 0;)
		for (uint64_t i = 0; i < n; i++) {
			admitted += mutex_bucket_admit(&shared_mutex.mb, &shared_mutex.rate,
						       BENCH_NOW, 1, &d);
			sbench_keep(d.remaining);
		}
	if (admitted != sbench_iterations(st))
		sbench_error(st, "a request was denied: not the admitted path");
	sbench_items(st, (int64_t)sbench_iterations(st));
}
SBENCH_REGISTER(BM_baseline_mutex_bucket_contended)
{
	sbench_thread_range(b, 1, sbench_max_threads(4));
	sbench_real_time(b);
}
