/*
 * limit_kind.c - the table of operations of each limit kind
 * (limit_kind_internal.h): thin wrappers over gcra.c, window_log.c,
 * window_counter.c, calendar.c and slots.c, plus the internal COMMIT kind.
 *
 * The COMMIT kind is the commit cell of an entry whose policy has no GCRA
 * limit and no counter or calendar limit that may be cell 0 (commit_ok):
 * one 8-byte generation word. An admission bumps it (CAS w -> w + 1,
 * refused on a tombstone) after its release fence, exactly where a GCRA cell
 * 0 would be committed; the word only grows between tombstones (2^64 bumps
 * never wrap in practice), so the sweeper's CAS has no ABA; it is always
 * "idle" by itself and never denies a live entry. It carries no limit.
 *
 * The counter and calendar ops use the limiter's own entry points of the
 * cells (window_internal.h): tombstone-aware admits, a dry run on a word,
 * and the exact, commutative cancel.
 *
 * Dry runs: the counter and calendar judge a copy of the word (as GCRA);
 * the sliding log's cost-0 admit is read-only and reports the exact
 * remaining units, and it admits cost c iff remaining >= c; a denial writes
 * nothing, so the denied dry run is the real admit's denial.
 */
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "cells/gcra_internal.h"
#include "cells/window_internal.h"
#include "limiter/limit_kind_internal.h"

_Static_assert(sizeof(struct sluice_gcra_receipt) <= sizeof(struct sluice__receipt),
	       "a GCRA receipt fits in the generic one");
_Static_assert(sizeof(struct sluice_rate) <= sizeof(((struct sluice_limit *)0)->params_),
	       "GCRA parameters fit in the parameter block");
_Static_assert(sizeof(struct sluice_limit) == 136, "struct sluice_limit is ABI");

static size_t gcra_cell_size(const struct sluice_limit *limit)
{
	(void)limit;
	return sizeof(struct sluice_gcra);
}

static void gcra_init(void *cell, const struct sluice_limit *limit)
{
	(void)limit;
	sluice_gcra_init(cell);
}

static void gcra_fresh(const struct sluice_limit *limit, uint64_t now_ns, struct sluice_decision *out)
{
	sluice__gcra_check_word(0, &limit->rate, now_ns, 0, out);
}

static bool gcra_check(const void *cell, const struct sluice_limit *limit, uint64_t now_ns,
		       uint64_t cost, struct sluice_decision *out)
{
	return sluice__gcra_check_word(sluice__gcra_word(cell), &limit->rate, now_ns, cost, out);
}

static bool gcra_check_word(uint64_t word, const struct sluice_limit *limit, uint64_t now_ns,
			    uint64_t cost, struct sluice_decision *out)
{
	return sluice__gcra_check_word(word, &limit->rate, now_ns, cost, out);
}

static bool gcra_admit(void *cell, const struct sluice_limit *limit, uint64_t now_ns, uint64_t cost,
		       struct sluice_decision *out, struct sluice__receipt *receipt)
{
	if (receipt == NULL)
		return sluice_gcra_admit(cell, &limit->rate, now_ns, cost, out);
	struct sluice_gcra_receipt r;
	bool ok = sluice_gcra_admit_receipt(cell, &limit->rate, now_ns, cost, out, &r);
	receipt->w[0] = r.before;
	receipt->w[1] = r.after;
	return ok;
}

static bool gcra_cancel(void *cell, const struct sluice_limit *limit,
			const struct sluice__receipt *receipt)
{
	(void)limit;
	struct sluice_gcra_receipt r = { .before = receipt->w[0], .after = receipt->w[1] };
	return sluice_gcra_cancel(cell, &r);
}

static bool gcra_word_is_idle(uint64_t word, const struct sluice_limit *limit, uint64_t now_ns)
{
	(void)limit;
	return word <= now_ns && !sluice__gcra_is_tomb(word);
}

static bool gcra_is_idle(const void *cell, const struct sluice_limit *limit, uint64_t now_ns)
{
	return gcra_word_is_idle(sluice__gcra_word(cell), limit, now_ns);
}

static uint64_t gcra_word(const void *cell)
{
	return sluice__gcra_word(cell);
}

static bool gcra_tomb(void *cell, uint64_t observed)
{
	return sluice__gcra_tomb(cell, observed);
}

static void gcra_mark_unlinked(void *cell)
{
	struct sluice_gcra *c = cell;
	/* release: the sluice__limiter_unlink() that returned 0 before this
	 * store (the unlink) happens-before the sweeper's acquire load that sees
	 * it, so the grace period the sweeper starts next covers every reader
	 * that could still reach the node. */
	atomic_store_explicit(&c->tat_ns, SLUICE__GCRA_TOMB_UNLINKED, memory_order_release); /* release: why above */
}

static bool gcra_is_unlinked(const void *cell)
{
	struct sluice_gcra *c = (struct sluice_gcra *)cell;
	/* acquire: pairs with the release store in gcra_mark_unlinked(). */
	return atomic_load_explicit(&c->tat_ns, memory_order_acquire) == SLUICE__GCRA_TOMB_UNLINKED; /* acquire: why above */
}

static bool any_commit_ok(const struct sluice_limit *limit)
{
	(void)limit;
	return true;
}

/* ---- snapshots of the one-word kinds (GCRA, counter, calendar) ---- */

static size_t word_save(const void *cell, const struct sluice_limit *limit, uint64_t now_ns,
			uint64_t *words)
{
	(void)limit;
	(void)now_ns;
	words[0] = sluice__word_load(cell); /* relaxed: one word, read once */
	return 1;
}

/* Install a saved word. A word the kind reserves as a tombstone is no state
 * (for a counter or calendar limit only when it may be cell 0: for larger
 * limits those values are ordinary states, window_internal.h). */
static int word_load(void *cell, const struct sluice_limit *limit, const uint64_t *words, size_t n,
		     uint64_t taken_ns, uint64_t now_ns)
{
	const struct sluice__limit_ops *op = sluice__limit_ops_of(limit->kind);

	(void)taken_ns;
	(void)now_ns;
	if (n != 1 || (op->commit_ok(limit) && op->is_tomb(words[0])))
		return SLUICE_ECORRUPT;
	/* relaxed: the cell is not published yet (the index's insert CAS
	 * orders it, as for init). */
	atomic_store_explicit((_Atomic uint64_t *)cell, words[0], memory_order_relaxed); /* relaxed: why above */
	return SLUICE_OK;
}

static const struct sluice__limit_ops gcra_ops = {
	.cell_size = gcra_cell_size,
	.init = gcra_init,
	.fresh = gcra_fresh,
	.check = gcra_check,
	.admit = gcra_admit,
	.cancel = gcra_cancel,
	.is_idle = gcra_is_idle,
	.cancel_exact = false,
	.commit_ok = any_commit_ok,
	.word = gcra_word,
	.is_tomb = sluice__gcra_is_tomb,
	.word_is_idle = gcra_word_is_idle,
	.check_word = gcra_check_word,
	.tomb = gcra_tomb,
	.mark_unlinked = gcra_mark_unlinked,
	.is_unlinked = gcra_is_unlinked,
	.save = word_save,
	.load = word_load,
};

/* ---- COMMIT: the generation word of entries without a GCRA limit ---- */

#define COMMIT_TOMB UINT64_MAX
#define COMMIT_TOMB_UNLINKED (UINT64_MAX - 1)

struct commit_cell {
	_Atomic uint64_t gen;
};

static size_t commit_cell_size(const struct sluice_limit *limit)
{
	(void)limit;
	return sizeof(struct commit_cell);
}

static void commit_init(void *cell, const struct sluice_limit *limit)
{
	(void)limit;
	/* relaxed: before publication (the index's insert CAS orders it). */
	atomic_init(&((struct commit_cell *)cell)->gen, 0);
}

static void commit_fresh(const struct sluice_limit *limit, uint64_t now_ns, struct sluice_decision *out)
{
	(void)limit;
	(void)now_ns;
	memset(out, 0, sizeof *out);
	out->allowed = true;
	out->remaining = UINT64_MAX;
}

static bool commit_is_tomb(uint64_t word)
{
	return word >= COMMIT_TOMB_UNLINKED;
}

static bool commit_check_word(uint64_t word, const struct sluice_limit *limit, uint64_t now_ns,
			      uint64_t cost, struct sluice_decision *out)
{
	(void)cost;
	commit_fresh(limit, now_ns, out);
	if (commit_is_tomb(word)) {
		out->allowed = false;
		return false;
	}
	return true;
}

static bool commit_check(const void *cell, const struct sluice_limit *limit, uint64_t now_ns,
			 uint64_t cost, struct sluice_decision *out)
{
	/* relaxed: a dry run; the commit's CAS decides. */
	uint64_t w = atomic_load_explicit(&((struct commit_cell *)(uintptr_t)cell)->gen, memory_order_relaxed); /* relaxed: why above */
	return commit_check_word(w, limit, now_ns, cost, out);
}

static bool commit_admit(void *cell, const struct sluice_limit *limit, uint64_t now_ns, uint64_t cost,
			 struct sluice_decision *out, struct sluice__receipt *receipt)
{
	struct commit_cell *c = cell;
	(void)cost;
	/* relaxed: the CAS below decides. */
	uint64_t w = atomic_load_explicit(&c->gen, memory_order_relaxed); /* relaxed: why above */

	commit_fresh(limit, now_ns, out);
	if (receipt != NULL)
		memset(receipt, 0, sizeof *receipt);
	for (;;) {
		if (commit_is_tomb(w)) {
			out->allowed = false;
			return false;
		}
		/* relaxed on success and failure: the admitter's release fence
		 * before this RMW orders its other cells (sweep.c, "Reclaim");
		 * the RMW only needs to be atomic so that it either precedes the
		 * sweeper's tomb CAS (which then fails) or follows it (and sees
		 * the tombstone). */
		if (atomic_compare_exchange_weak_explicit(&c->gen, &w, w + 1, memory_order_relaxed, /* relaxed: why above */
							  memory_order_relaxed))
			return true;
	}
}

static bool commit_cancel(void *cell, const struct sluice_limit *limit,
			  const struct sluice__receipt *receipt)
{
	/* The commit cell is committed last and never cancelled; a bump carries
	 * no consumption anyway. */
	(void)cell;
	(void)limit;
	(void)receipt;
	return true;
}

static bool commit_word_is_idle(uint64_t word, const struct sluice_limit *limit, uint64_t now_ns)
{
	(void)limit;
	(void)now_ns;
	return !commit_is_tomb(word);
}

static bool commit_is_idle(const void *cell, const struct sluice_limit *limit, uint64_t now_ns)
{
	/* relaxed: a snapshot; the sweeper's protocol orders it. */
	uint64_t w = atomic_load_explicit(&((struct commit_cell *)(uintptr_t)cell)->gen, memory_order_relaxed); /* relaxed: why above */
	return commit_word_is_idle(w, limit, now_ns);
}

static uint64_t commit_word(const void *cell)
{
	/* relaxed: callers add their own fences (sweep.c, entry_idle). */
	return atomic_load_explicit(&((struct commit_cell *)(uintptr_t)cell)->gen, memory_order_relaxed); /* relaxed: why above */
}

static bool commit_tomb(void *cell, uint64_t observed)
{
	/* relaxed on success and failure: as sluice__gcra_tomb(): the sweeper
	 * orders its reads with an acquire fence after loading `observed`; the
	 * CAS fails if any admission bumped the word since. */
	return atomic_compare_exchange_strong_explicit(&((struct commit_cell *)cell)->gen, &observed, /* relaxed: why above */
						       COMMIT_TOMB, memory_order_relaxed,
						       memory_order_relaxed);
}

static void commit_mark_unlinked(void *cell)
{
	/* release: as gcra_mark_unlinked(): the del that unlinked the node
	 * happens-before the sweeper's acquire load that sees this store. */
	atomic_store_explicit(&((struct commit_cell *)cell)->gen, COMMIT_TOMB_UNLINKED, memory_order_release); /* release: why above */
}

static bool commit_is_unlinked(const void *cell)
{
	/* acquire: pairs with the release store in commit_mark_unlinked(). */
	return atomic_load_explicit(&((struct commit_cell *)(uintptr_t)cell)->gen, memory_order_acquire) == /* acquire: why above */
	       COMMIT_TOMB_UNLINKED;
}

static const struct sluice__limit_ops commit_ops = {
	.cell_size = commit_cell_size,
	.init = commit_init,
	.fresh = commit_fresh,
	.check = commit_check,
	.admit = commit_admit,
	.cancel = commit_cancel,
	.is_idle = commit_is_idle,
	.cancel_exact = true,
	.commit_ok = any_commit_ok,
	.word = commit_word,
	.is_tomb = commit_is_tomb,
	.word_is_idle = commit_word_is_idle,
	.check_word = commit_check_word,
	.tomb = commit_tomb,
	.mark_unlinked = commit_mark_unlinked,
	.is_unlinked = commit_is_unlinked,
};

/* ---- window kinds: shared dry run ---- */

/* The dry run of the sliding log from its read-only peek (cost 0) and, for
 * a denial, its real admit, which writes nothing when it denies. If the
 * state changed in between so that the admit passes, it is cancelled (an
 * exact cancel: nothing stays). */
bool sluice__window_check(const void *cell, const struct sluice_limit *limit, uint64_t now_ns,
			  uint64_t cost, struct sluice_decision *out, sluice__admit_fn admit,
			  sluice__cancel_fn cancel)
{
	void *c = (void *)(uintptr_t)cell;

	admit(c, limit, now_ns, 0, out, NULL);
	if (cost <= out->remaining) {
		out->remaining -= cost;
		return true;
	}
	struct sluice__receipt r;
	if (admit(c, limit, now_ns, cost, out, &r)) {
		cancel(c, limit, &r);
		/* Report the denial the peek saw. */
		admit(c, limit, now_ns, 0, out, NULL);
		out->allowed = false;
		out->reason = SLUICE_REASON_RATE;
		out->retry_after_ns = out->reset_ns;
	}
	return false;
}

/* ---- SLIDING_LOG ---- */

static size_t log_cell_size(const struct sluice_limit *limit)
{
	return sluice_window_log_size(&limit->log);
}

static void log_init(void *cell, const struct sluice_limit *limit)
{
	sluice_window_log_init(cell, &limit->log);
}

static void log_fresh(const struct sluice_limit *limit, uint64_t now_ns, struct sluice_decision *out)
{
	(void)now_ns;
	memset(out, 0, sizeof *out);
	out->allowed = true;
	out->limit = limit->log.limit;
	out->remaining = limit->log.limit;
}

static bool log_admit(void *cell, const struct sluice_limit *limit, uint64_t now_ns, uint64_t cost,
		      struct sluice_decision *out, struct sluice__receipt *receipt)
{
	if (receipt == NULL)
		return sluice__window_log_admit(cell, &limit->log, now_ns, cost, out, NULL);
	struct sluice__window_log_receipt r;
	bool ok = sluice__window_log_admit(cell, &limit->log, now_ns, cost, out, &r);
	receipt->w[0] = r.seq_after;
	receipt->w[1] = r.at_ns;
	receipt->w[2] = r.cost;
	return ok;
}

static bool log_cancel(void *cell, const struct sluice_limit *limit,
		       const struct sluice__receipt *receipt)
{
	struct sluice__window_log_receipt r = { .seq_after = receipt->w[0],
						.at_ns = receipt->w[1],
						.cost = receipt->w[2] };
	return sluice__window_log_cancel_exact(cell, &limit->log, &r);
}

static bool log_check(const void *cell, const struct sluice_limit *limit, uint64_t now_ns,
		      uint64_t cost, struct sluice_decision *out)
{
	return sluice__window_check(cell, limit, now_ns, cost, out, log_admit, log_cancel);
}

static bool log_is_idle(const void *cell, const struct sluice_limit *limit, uint64_t now_ns)
{
	return sluice_window_log_is_idle(cell, &limit->log, now_ns);
}

static size_t log_save(const void *cell, const struct sluice_limit *limit, uint64_t now_ns,
		       uint64_t *words)
{
	words[0] = sluice__window_log_save(cell, &limit->log, now_ns, words + 1);
	return 1 + (size_t)words[0];
}

static int log_load(void *cell, const struct sluice_limit *limit, const uint64_t *words, size_t n,
		    uint64_t taken_ns, uint64_t now_ns)
{
	(void)taken_ns;
	(void)now_ns;
	if (n < 1 || words[0] != n - 1)
		return SLUICE_ECORRUPT;
	return sluice__window_log_load(cell, &limit->log, words + 1, n - 1);
}

static const struct sluice__limit_ops log_ops = {
	.cell_size = log_cell_size,
	.init = log_init,
	.fresh = log_fresh,
	.check = log_check,
	.admit = log_admit,
	.cancel = log_cancel,
	.is_idle = log_is_idle,
	.cancel_exact = true,
	.save = log_save,
	.load = log_load,
};

/* ---- SLIDING_COUNTER ---- */

static size_t counter_cell_size(const struct sluice_limit *limit)
{
	(void)limit;
	return sizeof(struct sluice_window_counter);
}

static void counter_init(void *cell, const struct sluice_limit *limit)
{
	(void)limit;
	sluice_window_counter_init(cell);
}

static void counter_fresh(const struct sluice_limit *limit, uint64_t now_ns,
			  struct sluice_decision *out)
{
	struct sluice_window_counter c;

	sluice_window_counter_init(&c);
	sluice_window_counter_admit(&c, &limit->counter, now_ns, 0, out);
}

static bool counter_admit(void *cell, const struct sluice_limit *limit, uint64_t now_ns,
			  uint64_t cost, struct sluice_decision *out, struct sluice__receipt *receipt)
{
	if (receipt == NULL)
		return sluice__window_counter_admit(cell, &limit->counter, now_ns, cost, out, NULL);
	struct sluice_window_counter_receipt r = { 0, 0 };
	bool ok = sluice__window_counter_admit(cell, &limit->counter, now_ns, cost, out, &r);
	receipt->w[0] = r.before;
	receipt->w[1] = r.after;
	return ok;
}

static bool counter_cancel(void *cell, const struct sluice_limit *limit,
			   const struct sluice__receipt *receipt)
{
	struct sluice_window_counter_receipt r = { .before = receipt->w[0], .after = receipt->w[1] };
	return sluice__window_counter_cancel_exact(cell, &limit->counter, &r);
}

static bool counter_check_word(uint64_t word, const struct sluice_limit *limit, uint64_t now_ns,
			       uint64_t cost, struct sluice_decision *out)
{
	return sluice__window_counter_check_word(word, &limit->counter, now_ns, cost, out);
}

static bool counter_check(const void *cell, const struct sluice_limit *limit, uint64_t now_ns,
			  uint64_t cost, struct sluice_decision *out)
{
	return counter_check_word(sluice__word_load(cell), limit, now_ns, cost, out);
}

static bool counter_is_idle(const void *cell, const struct sluice_limit *limit, uint64_t now_ns)
{
	return sluice_window_counter_is_idle(cell, &limit->counter, now_ns);
}

static bool counter_word_is_idle(uint64_t word, const struct sluice_limit *limit, uint64_t now_ns)
{
	struct sluice_window_counter copy;

	if (sluice__word_is_tomb(word))
		return false;
	/* relaxed: a private object, never shared. */
	atomic_init(&copy.word, word);
	return sluice_window_counter_is_idle(&copy, &limit->counter, now_ns);
}

/* A counter word may be cell 0 if its limit keeps the tombstones out of
 * reach and its 24-bit window index takes at least a day of the callers'
 * time to wrap (sweep.c, "Reclaim": no ABA for the sweeper's CAS). */
static bool counter_commit_ok(const struct sluice_limit *limit)
{
	return limit->counter.limit <= SLUICE__WINDOW_COUNTER_CELL0_MAX_LIMIT &&
	       limit->counter.window_ns >=
		       (SLUICE__COMMIT_WRAP_MIN_NS >> SLUICE_WINDOW_COUNTER_INDEX_BITS) + 1;
}

static const struct sluice__limit_ops counter_ops = {
	.cell_size = counter_cell_size,
	.init = counter_init,
	.fresh = counter_fresh,
	.check = counter_check,
	.admit = counter_admit,
	.cancel = counter_cancel,
	.is_idle = counter_is_idle,
	.cancel_exact = true,
	.commit_ok = counter_commit_ok,
	.word = sluice__word_load,
	.is_tomb = sluice__word_is_tomb,
	.word_is_idle = counter_word_is_idle,
	.check_word = counter_check_word,
	.tomb = sluice__word_tomb,
	.mark_unlinked = sluice__word_mark_unlinked,
	.is_unlinked = sluice__word_is_unlinked,
	.save = word_save,
	.load = word_load,
};

/* ---- CALENDAR ---- */

static size_t calendar_cell_size(const struct sluice_limit *limit)
{
	(void)limit;
	return sizeof(struct sluice_calendar);
}

static void calendar_init(void *cell, const struct sluice_limit *limit)
{
	(void)limit;
	sluice_calendar_init(cell);
}

static void calendar_fresh(const struct sluice_limit *limit, uint64_t now_ns,
			   struct sluice_decision *out)
{
	struct sluice_calendar c;

	sluice_calendar_init(&c);
	sluice_calendar_admit(&c, &limit->calendar, now_ns, 0, out);
}

static bool calendar_admit(void *cell, const struct sluice_limit *limit, uint64_t now_ns,
			   uint64_t cost, struct sluice_decision *out, struct sluice__receipt *receipt)
{
	if (receipt == NULL)
		return sluice__calendar_admit(cell, &limit->calendar, now_ns, cost, out, NULL);
	struct sluice_calendar_receipt r = { 0, 0 };
	bool ok = sluice__calendar_admit(cell, &limit->calendar, now_ns, cost, out, &r);
	receipt->w[0] = r.before;
	receipt->w[1] = r.after;
	return ok;
}

static bool calendar_cancel(void *cell, const struct sluice_limit *limit,
			    const struct sluice__receipt *receipt)
{
	struct sluice_calendar_receipt r = { .before = receipt->w[0], .after = receipt->w[1] };
	return sluice__calendar_cancel_exact(cell, &limit->calendar, &r);
}

static bool calendar_check_word(uint64_t word, const struct sluice_limit *limit, uint64_t now_ns,
				uint64_t cost, struct sluice_decision *out)
{
	return sluice__calendar_check_word(word, &limit->calendar, now_ns, cost, out);
}

static bool calendar_check(const void *cell, const struct sluice_limit *limit, uint64_t now_ns,
			   uint64_t cost, struct sluice_decision *out)
{
	return calendar_check_word(sluice__word_load(cell), limit, now_ns, cost, out);
}

static bool calendar_is_idle(const void *cell, const struct sluice_limit *limit, uint64_t now_ns)
{
	return sluice_calendar_is_idle(cell, &limit->calendar, now_ns);
}

static bool calendar_word_is_idle(uint64_t word, const struct sluice_limit *limit, uint64_t now_ns)
{
	struct sluice_calendar copy;

	if (sluice__word_is_tomb(word))
		return false;
	/* relaxed: a private object, never shared. */
	atomic_init(&copy.word, word);
	return sluice_calendar_is_idle(&copy, &limit->calendar, now_ns);
}

/* As counter_commit_ok(), with the calendar's 32-bit window index. */
static bool calendar_commit_ok(const struct sluice_limit *limit)
{
	return limit->calendar.limit <= SLUICE__CALENDAR_CELL0_MAX_LIMIT &&
	       limit->calendar.window_ns >= (SLUICE__COMMIT_WRAP_MIN_NS >> 32) + 1;
}

static const struct sluice__limit_ops calendar_ops = {
	.cell_size = calendar_cell_size,
	.init = calendar_init,
	.fresh = calendar_fresh,
	.check = calendar_check,
	.admit = calendar_admit,
	.cancel = calendar_cancel,
	.is_idle = calendar_is_idle,
	.cancel_exact = true,
	.commit_ok = calendar_commit_ok,
	.word = sluice__word_load,
	.is_tomb = sluice__word_is_tomb,
	.word_is_idle = calendar_word_is_idle,
	.check_word = calendar_check_word,
	.tomb = sluice__word_tomb,
	.mark_unlinked = sluice__word_mark_unlinked,
	.is_unlinked = sluice__word_is_unlinked,
	.save = word_save,
	.load = word_load,
};

/* ---- SLOTS: one slot per admitted request, whatever its cost ---- */

static size_t slots_cell_size(const struct sluice_limit *limit)
{
	return sluice_slots_size(&limit->slots);
}

static void slots_init(void *cell, const struct sluice_limit *limit)
{
	sluice_slots_init(cell, &limit->slots);
}

static void slots_fresh(const struct sluice_limit *limit, uint64_t now_ns,
			struct sluice_decision *out)
{
	(void)now_ns;
	memset(out, 0, sizeof *out);
	out->allowed = true;
	out->limit = limit->slots.slots;
	out->remaining = limit->slots.slots;
}

static bool slots_check(const void *cell, const struct sluice_limit *limit, uint64_t now_ns,
			uint64_t cost, struct sluice_decision *out)
{
	bool ok = sluice_slots_peek(cell, &limit->slots, now_ns, out);
	/* cost 0 is the limiter's peek: an allowed decision like every other
	 * kind's peek (reason NONE, retry-after 0), with the free slots in
	 * remaining even when none is left (reset_ns stays the cell's: the hint
	 * when full, so that a full cell does not read "full again now"). */
	if (cost == 0) {
		out->allowed = true;
		out->reason = SLUICE_REASON_NONE;
		out->retry_after_ns = 0;
		return true;
	}
	/* A full cell whose leases may have expired: let the acquire decide
	 * (it reclaims expired leases; a dry run cannot). */
	if (!ok && limit->slots.lease_ttl_ns != 0)
		ok = true;
	if (ok && cost > 0 && out->remaining > 0)
		out->remaining--;
	out->allowed = ok;
	return ok;
}

static bool slots_admit(void *cell, const struct sluice_limit *limit, uint64_t now_ns, uint64_t cost,
			struct sluice_decision *out, struct sluice__receipt *receipt)
{
	sluice_slot_handle h = SLUICE_SLOT_NONE;

	if (cost == 0)
		return sluice_slots_peek(cell, &limit->slots, now_ns, out);
	bool ok = sluice_slots_acquire(cell, &limit->slots, now_ns, out, &h);
	if (receipt != NULL) {
		memset(receipt, 0, sizeof *receipt);
		receipt->w[0] = h;
	} else if (ok) {
		/* No receipt: nobody could release it; give it back. The
		 * limiter never does this (acquire always takes receipts). */
		sluice_slots_cancel(cell, &limit->slots, h);
	}
	return ok;
}

static bool slots_cancel(void *cell, const struct sluice_limit *limit,
			 const struct sluice__receipt *receipt)
{
	return sluice_slots_cancel(cell, &limit->slots, receipt->w[0]);
}

static bool slots_is_idle(const void *cell, const struct sluice_limit *limit, uint64_t now_ns)
{
	return sluice_slots_is_idle(cell, &limit->slots, now_ns);
}

/* A slots limit is saved as the number of slots held. The holders were
 * requests of the process that saved it, and their handles carry the old
 * cell's tag, so nobody can release them into the new cell: with a lease,
 * each comes back held until taken_ns + lease_ttl_ns (no earlier than its
 * real lease end, which was acquire time + TTL <= taken_ns + TTL: never
 * more concurrency than before) and is then reclaimed like any expired
 * lease; without a lease it would be held for ever, so it comes back free. */
static size_t slots_save(const void *cell, const struct sluice_limit *limit, uint64_t now_ns,
			 uint64_t *words)
{
	struct sluice_decision d;

	sluice_slots_peek(cell, &limit->slots, now_ns, &d);
	words[0] = limit->slots.slots - d.remaining;
	return 1;
}

static int slots_load(void *cell, const struct sluice_limit *limit, const uint64_t *words, size_t n,
		      uint64_t taken_ns, uint64_t now_ns)
{
	const struct sluice_slots_config *cfg = &limit->slots;

	if (n != 1 || words[0] > cfg->slots)
		return SLUICE_ECORRUPT;
	if (cfg->lease_ttl_ns == 0 || taken_ns > UINT64_MAX - cfg->lease_ttl_ns ||
	    taken_ns + cfg->lease_ttl_ns <= now_ns)
		return SLUICE_OK; /* no lease, or every lease already expired */
	for (uint64_t i = 0; i < words[0]; i++) {
		sluice_slot_handle h;
		/* Acquired "at" taken_ns: its deadline is taken_ns + TTL. */
		(void)sluice_slots_acquire(cell, cfg, taken_ns, NULL, &h);
	}
	return SLUICE_OK;
}

static const struct sluice__limit_ops slots_ops = {
	.cell_size = slots_cell_size,
	.init = slots_init,
	.fresh = slots_fresh,
	.check = slots_check,
	.admit = slots_admit,
	.cancel = slots_cancel,
	.is_idle = slots_is_idle,
	.cancel_exact = true,
	.save = slots_save,
	.load = slots_load,
};

const struct sluice__limit_ops *sluice__limit_ops_of(uint32_t kind)
{
	switch (kind) {
	case SLUICE_LIMIT_GCRA:
		return &gcra_ops;
	case SLUICE_LIMIT_SLIDING_LOG:
		return &log_ops;
	case SLUICE_LIMIT_SLIDING_COUNTER:
		return &counter_ops;
	case SLUICE_LIMIT_CALENDAR:
		return &calendar_ops;
	case SLUICE_LIMIT_SLOTS:
		return &slots_ops;
	case SLUICE__LIMIT_COMMIT:
		return &commit_ops;
	default:
		return NULL;
	}
}

size_t sluice__limit_saved_max(const struct sluice_limit *limit)
{
	return limit->kind == SLUICE_LIMIT_SLIDING_LOG ? 1 + (size_t)limit->log.limit : 1;
}

/* The rest of the parameter block after `used` bytes is zero. */
static int tail_zero(const struct sluice_limit *limit, size_t used)
{
	static const unsigned char zero[sizeof(limit->params_)];

	return memcmp((const unsigned char *)limit->params_ + used, zero,
		      sizeof(limit->params_) - used) == 0
		       ? SLUICE_OK
		       : SLUICE_EINVAL;
}

int sluice__limit_validate(const struct sluice_limit *limit)
{
	if (limit->reserved_ != 0)
		return SLUICE_EINVAL;
	switch (limit->kind) {
	case SLUICE_LIMIT_GCRA: {
		const struct sluice_rate *r = &limit->rate;
		struct sluice_rate fresh;
		if (sluice_rate_init(&fresh, r->limit, r->period_ns, r->burst) != SLUICE_OK)
			return SLUICE_EINVAL;
		if (fresh.interval_ns != r->interval_ns || fresh.tolerance_ns != r->tolerance_ns ||
		    fresh.div_magic != r->div_magic || fresh.div_shift != r->div_shift ||
		    fresh.exact != r->exact)
			return SLUICE_EINVAL;
		/* The rest of the parameter block is reserved for other kinds. */
		return tail_zero(limit, sizeof(struct sluice_rate));
	}
	case SLUICE_LIMIT_SLIDING_LOG: {
		struct sluice_window_log_config c;
		if (sluice_window_log_config_init(&c, limit->log.limit, limit->log.window_ns) != SLUICE_OK ||
		    memcmp(&c, &limit->log, sizeof c) != 0)
			return SLUICE_EINVAL;
		return tail_zero(limit, sizeof c);
	}
	case SLUICE_LIMIT_SLIDING_COUNTER: {
		struct sluice_window_counter_config c;
		memset(&c, 0, sizeof c);
		if (sluice_window_counter_config_init(&c, limit->counter.limit,
						      limit->counter.window_ns) != SLUICE_OK ||
		    c.div_magic != limit->counter.div_magic ||
		    c.div_shift1 != limit->counter.div_shift1 ||
		    c.div_shift2 != limit->counter.div_shift2)
			return SLUICE_EINVAL;
		/* The parameter block after the struct; its own padding is not a
		 * parameter (config_init does not write it; a copy carries the
		 * source's bytes). */
		return tail_zero(limit, sizeof c);
	}
	case SLUICE_LIMIT_CALENDAR: {
		struct sluice_calendar_config c;
		memset(&c, 0, sizeof c);
		if (sluice_calendar_config_init(&c, limit->calendar.limit, limit->calendar.window_ns) !=
			    SLUICE_OK ||
		    c.div_magic != limit->calendar.div_magic ||
		    c.div_shift1 != limit->calendar.div_shift1 ||
		    c.div_shift2 != limit->calendar.div_shift2)
			return SLUICE_EINVAL;
		return tail_zero(limit, sizeof c); /* as for the counter */
	}
	case SLUICE_LIMIT_SLOTS: {
		struct sluice_slots_config c;
		if (sluice_slots_config_init(&c, limit->slots.slots, limit->slots.lease_ttl_ns,
					     limit->slots.retry_after_ns) != SLUICE_OK ||
		    memcmp(&c, &limit->slots, sizeof c) != 0)
			return SLUICE_EINVAL;
		return tail_zero(limit, sizeof c);
	}
	default:
		return SLUICE_EINVAL;
	}
}
