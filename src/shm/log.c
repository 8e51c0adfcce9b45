/*
 * log.c - the sliding-window log in a shared-memory zone: the limit
 * operations (limit_kind_internal.h) the store uses for a
 * SLUICE_LIMIT_SLIDING_LOG cell instead of the in-process ones.
 *
 * Why a process that dies at any instruction leaves nothing locked and
 * nothing inconsistent. The log's writers serialize on a sequence lock in
 * the cell (src/cells/window_log.c). Here the cell is [claim word | log]:
 * every writer first takes the claim, a word holding 0 or the
 * CLOCK_MONOTONIC time it was taken at, and only a claim holder takes the
 * seq lock, so the seq lock is free whenever the claim is taken from 0. A
 * writer that dies leaves the claim set; the first writer to find it
 * SLUICE_SHM_CLAIM_TIMEOUT_NS old takes it over with one CAS from the value
 * it judged (so two takers cannot both win, and a holder that released in
 * between is not disturbed) and, if seq is odd, finishes the dead writer's
 * unlock (sluice__window_log_break()). What the dead writer left is a
 * state of the log: an admission writes only slots outside every window
 * and then publishes pos with one store (before it: the old state; after:
 * the new one, its units counted, as for an admission whose answer was
 * lost). Readers (denials, peeks, idle checks) never wait for either lock.
 * The cancel pops the units only if nothing was written since; otherwise
 * they stay counted until they leave the window (the in-process exact
 * cancel rewrites live slots, which a death half-way would leave
 * unsorted). So the log here never over-admits; a key whose writer died
 * waits at most the timeout for its next admission.
 *
 * The assumption, the store's (docs/shm.md, "Crash argument"): a live
 * process never holds a claim for the timeout (a claim covers one decision
 * and at most L stores, no syscall); one that did could be overtaken and
 * two writers would then share the log.
 */
#include <stdatomic.h>

#include "cells/window_internal.h"
#include "shm/store_internal.h"

/* The claim word, then the log. */
#define LOG_OFF 8u

static _Atomic uint64_t *claim_of(void *cell)
{
	return (_Atomic uint64_t *)cell;
}

static struct sluice_window_log *log_of(const void *cell)
{
	return (struct sluice_window_log *)(uintptr_t)((const unsigned char *)cell + LOG_OFF);
}

static size_t slog_cell_size(const struct sluice_limit *limit)
{
	return LOG_OFF + sluice_window_log_size(&limit->log);
}

static void slog_init(void *cell, const struct sluice_limit *limit)
{
	/* relaxed: the body is published by the slot's publish CAS. */
	atomic_store_explicit(claim_of(cell), 0, memory_order_relaxed); /* relaxed: why above */
	sluice_window_log_init(log_of(cell), &limit->log);
}

static void slog_fresh(const struct sluice_limit *limit, uint64_t now_ns, struct sluice_decision *out)
{
	sluice__limit_ops_of(SLUICE_LIMIT_SLIDING_LOG)->fresh(limit, now_ns, out);
}

static bool slog_admit(void *cell, const struct sluice_limit *limit, uint64_t now_ns, uint64_t cost,
		       struct sluice_decision *out, struct sluice__receipt *receipt)
{
	struct sluice__window_log_receipt r;
	bool ok = sluice__window_log_admit_shared(log_of(cell), claim_of(cell), SLUICE_SHM_CLAIM_TIMEOUT_NS,
						  &limit->log, now_ns, cost, out, receipt != NULL ? &r : NULL);
	if (receipt != NULL) {
		receipt->w[0] = r.seq_after;
		receipt->w[1] = r.at_ns;
		receipt->w[2] = r.cost;
	}
	return ok;
}

static bool slog_cancel(void *cell, const struct sluice_limit *limit, const struct sluice__receipt *receipt)
{
	(void)limit;
	struct sluice__window_log_receipt r = { .seq_after = receipt->w[0],
						.at_ns = receipt->w[1],
						.cost = receipt->w[2] };
	return sluice__window_log_cancel_shared(log_of(cell), claim_of(cell), SLUICE_SHM_CLAIM_TIMEOUT_NS, &r);
}

static bool slog_check(const void *cell, const struct sluice_limit *limit, uint64_t now_ns, uint64_t cost,
		       struct sluice_decision *out)
{
	return sluice__window_check(cell, limit, now_ns, cost, out, slog_admit, slog_cancel);
}

static bool slog_is_idle(const void *cell, const struct sluice_limit *limit, uint64_t now_ns)
{
	return sluice_window_log_is_idle(log_of(cell), &limit->log, now_ns);
}

static const struct sluice__limit_ops shm_log_ops = {
	.cell_size = slog_cell_size,
	.init = slog_init,
	.fresh = slog_fresh,
	.check = slog_check,
	.admit = slog_admit,
	.cancel = slog_cancel,
	.is_idle = slog_is_idle,
	.cancel_exact = false, /* pops only if nothing landed since (above) */
};

const struct sluice__limit_ops *sluice__shm_ops_of(uint32_t kind)
{
	return kind == SLUICE_LIMIT_SLIDING_LOG ? &shm_log_ops : sluice__limit_ops_of(kind);
}
