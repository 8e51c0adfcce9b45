/*
 * window_internal.h - what the keyed limiter needs from the one-word window
 * cells (sliding counter, calendar) beyond the public API: the raw word, two
 * reserved tombstone values so that such a cell can serve as an entry's
 * commit cell (cell 0, docs/limiter.md, "Reclaim"), a dry run on a word, and
 * the exact, commutative cancel. Not installed; not part of the API.
 *
 * Tombstones. A counter word keeps cur in its low 20 bits, a calendar word
 * its count in its low 32; both counts are at most the limit. With a limit
 * of at most SLUICE__*_CELL0_MAX_LIMIT (the field's maximum minus 2) no
 * stored word has all-ones or all-ones-but-bit-0 there, so the two values
 * SLUICE__WORD_TOMB (UINT64_MAX) and SLUICE__WORD_TOMB_UNLINKED are never a
 * state, as for the GCRA word (gcra_internal.h). For such configs the
 * sluice__* admits below deny (cost > 0) on a tombstone word and the exact
 * cancel leaves it alone; for larger limits these words are ordinary states
 * and are treated as such (the limiter then never uses the cell as cell 0).
 *
 * Exact cancel. An admission of c units adds c to the count of one window,
 * k_a, the index in the receipt's `after` word (for the counter: cur of
 * k_a). Undoing it is subtracting c from that window's count, which commutes
 * with every other admission and cancel: sluice__*_cancel_exact() does so
 * with a CAS loop whatever landed since. If the word has moved on, the units
 * are owed only where they still weigh: the counter's next window keeps them
 * as prev (decremented there), and a later window (or, for the calendar, any
 * other window) no longer counts them at all, so nothing is owed. Why this
 * never over-admits: the count of window k_a is, at every moment, the sum
 * of the costs of the admissions in k_a not yet cancelled (induction over
 * the word's modification order: an admission adds its cost, a cancel
 * subtracts its own, a move to a later window carries cur into prev (the
 * counter) or drops it; cancels of dropped windows do nothing). So each count
 * is exactly what a cell that never saw the cancelled admissions would hold,
 * the count never goes below what the remaining admissions imply (each
 * cancel subtracts at most what its own admission added, which is still
 * part of the sum), and every admission decided on a count at least that
 * large: each remaining admission passed the test against a state that held
 * at least the remaining admissions before it. (Caveat, the same alias as
 * the cells' own: a cancel more than 2^23 counter windows / 2^31 calendar
 * windows after its admission, in the callers' time, could meet an aliased
 * index; the limiter cancels within one read-side section.)
 */
#ifndef SLUICE_WINDOW_INTERNAL_H
#define SLUICE_WINDOW_INTERNAL_H

#include <sluice/window.h>

#include <stdatomic.h>

#define SLUICE__WORD_TOMB UINT64_MAX
#define SLUICE__WORD_TOMB_UNLINKED (UINT64_MAX - 1)

/* Limits whose words never reach the tombstones (above). */
#define SLUICE__WINDOW_COUNTER_CELL0_MAX_LIMIT (SLUICE_WINDOW_COUNTER_MAX_LIMIT - 2u)
#define SLUICE__CALENDAR_CELL0_MAX_LIMIT (SLUICE_CALENDAR_MAX_LIMIT - 2u)

static inline bool sluice__word_is_tomb(uint64_t word)
{
	return word >= SLUICE__WORD_TOMB_UNLINKED;
}

/* The raw word of a one-word cell. relaxed: callers that need ordering add
 * their own fences (src/limiter/sweep.c, entry_idle()). */
static inline uint64_t sluice__word_load(const void *word)
{
	return atomic_load_explicit((_Atomic uint64_t *)(uintptr_t)word, memory_order_relaxed); /* relaxed: why above */
}

/* CAS the word from `observed` (a live, idle value) to SLUICE__WORD_TOMB.
 * relaxed on success and failure: the sweeper orders its reads with an
 * acquire fence after loading `observed`; the CAS only has to be atomic (it
 * fails if any write landed since; no ABA: src/limiter/sweep.c, "Reclaim"). */
static inline bool sluice__word_tomb(void *word, uint64_t observed)
{
	return atomic_compare_exchange_strong_explicit((_Atomic uint64_t *)word, &observed, /* relaxed: why above */
						       SLUICE__WORD_TOMB, memory_order_relaxed,
						       memory_order_relaxed);
}

/* release: the limiter's unlink that returned 0 before this store happens-
 * before the sweeper's acquire load that sees it (sluice__word_is_unlinked),
 * so the grace period it starts next covers every reader of the entry. */
static inline void sluice__word_mark_unlinked(void *word)
{
	atomic_store_explicit((_Atomic uint64_t *)word, SLUICE__WORD_TOMB_UNLINKED, memory_order_release); /* release: why above */
}

/* acquire: pairs with the release store in sluice__word_mark_unlinked(). */
static inline bool sluice__word_is_unlinked(const void *word)
{
	return atomic_load_explicit((_Atomic uint64_t *)(uintptr_t)word, memory_order_acquire) == /* acquire: why above */
	       SLUICE__WORD_TOMB_UNLINKED;
}

/* The admits of the public API, tombstone-aware as above; receipt and out
 * may be NULL (the receipt is filled only on admission). */
bool sluice__window_counter_admit(struct sluice_window_counter *cell,
				  const struct sluice_window_counter_config *cfg, uint64_t now_ns,
				  uint64_t cost, struct sluice_decision *out,
				  struct sluice_window_counter_receipt *receipt);
bool sluice__calendar_admit(struct sluice_calendar *cell, const struct sluice_calendar_config *cfg,
			    uint64_t now_ns, uint64_t cost, struct sluice_decision *out,
			    struct sluice_calendar_receipt *receipt);

/* The decision the admit above would take on a cell holding `word`, nothing
 * written (it runs on a private copy, so both can never disagree). */
bool sluice__window_counter_check_word(uint64_t word, const struct sluice_window_counter_config *cfg,
				       uint64_t now_ns, uint64_t cost, struct sluice_decision *out);
bool sluice__calendar_check_word(uint64_t word, const struct sluice_calendar_config *cfg,
				 uint64_t now_ns, uint64_t cost, struct sluice_decision *out);

/* Undo the admission of `receipt` exactly, whatever landed since (above).
 * false only for a receipt of no admission. Cancel a receipt at most once. */
bool sluice__window_counter_cancel_exact(struct sluice_window_counter *cell,
					 const struct sluice_window_counter_config *cfg,
					 const struct sluice_window_counter_receipt *receipt);
bool sluice__calendar_cancel_exact(struct sluice_calendar *cell, const struct sluice_calendar_config *cfg,
				   const struct sluice_calendar_receipt *receipt);

/*
 * The sliding log's exact cancel. Its receipt keeps the time its units were
 * recorded at and their number. Recorded times are sorted, and units at
 * the same time are interchangeable, so removing c units recorded at at_ns
 * (the newest such, found under the writers' lock) from the last L + c
 * positions and moving the newer ones down by c leaves exactly the log of
 * the remaining admissions (window_log.c). Units recorded after ours keep
 * their times: one that a stale clock recorded at our time (max(t, newest))
 * stays there, which only makes it look younger (conservative).
 */
struct sluice__window_log_receipt {
	uint64_t seq_after; /* the seq our write published (pop if still there) */
	uint64_t at_ns;     /* the time our units were recorded at */
	uint64_t cost;      /* 0: no admission */
};

bool sluice__window_log_admit(struct sluice_window_log *cell, const struct sluice_window_log_config *cfg,
			      uint64_t now_ns, uint64_t cost, struct sluice_decision *out,
			      struct sluice__window_log_receipt *receipt);
bool sluice__window_log_cancel_exact(struct sluice_window_log *cell,
				     const struct sluice_window_log_config *cfg,
				     const struct sluice__window_log_receipt *receipt);

/*
 * Shared use (the shared-memory store, src/shm/, docs/shm.md): the log in
 * memory that processes share, where a process may die at any instruction.
 * A writer that dies inside the critical section leaves only an odd seq:
 * an admission stores into slots of positions >= pos (outside every
 * window) and then publishes pos with one release store, so the state is
 * the one before or after it. What it must not leave is the lock. So
 * shared writers first take `claim`, a word beside the cell holding 0 or
 * the CLOCK_MONOTONIC time its holder took it at (| 1); a writer that
 * finds it stale_ns old takes it over with one CAS from the value it
 * judged, and then sluice__window_log_break() finishes the dead writer's
 * unlock. The caller's assumption: a live process never holds the claim
 * stale_ns or longer (the critical section is the decision and c <= L
 * stores). Denials and peeks stay lock-free reads, as in process. The
 * exact cancel's rewrite of live slots is not used here: a writer dying
 * half-way through it would leave an unsorted ring; the shared cancel pops
 * the units only if nothing landed since (else they stay counted until
 * they leave the window: conservative). The in-process functions above
 * never look at a claim and never break a lock.
 */
bool sluice__window_log_admit_shared(struct sluice_window_log *cell, _Atomic uint64_t *claim,
				     uint64_t stale_ns, const struct sluice_window_log_config *cfg,
				     uint64_t now_ns, uint64_t cost, struct sluice_decision *out,
				     struct sluice__window_log_receipt *receipt);
/* Pop the receipt's units if nothing was written since; false otherwise. */
bool sluice__window_log_cancel_shared(struct sluice_window_log *cell, _Atomic uint64_t *claim,
				      uint64_t stale_ns, const struct sluice__window_log_receipt *receipt);
/* For the holder of a claim taken over: unlock for the dead writer, CAS
 * from the odd seq it left (observed_seq) to the next even value. false
 * if observed_seq is even or seq moved on. */
bool sluice__window_log_break(struct sluice_window_log *cell, uint64_t observed_seq);

/*
 * Snapshots of a sliding log (the keyed limiter's, docs/limiter.md,
 * "Snapshots"). save copies the times of the units still in the window at
 * now_ns, oldest first, into times[0 .. limit) and returns their number: one
 * state the cell held (a validated lock-free read, as a denial's). load
 * installs such times into a fresh cell not yet published: 0, or
 * SLUICE_ECORRUPT when there are more than `limit` or they are not sorted.
 * Units gone at now_ns stay gone at every later time, so a log restored at a
 * time >= now_ns decides as the saved one would have.
 */
size_t sluice__window_log_save(const struct sluice_window_log *cell,
			       const struct sluice_window_log_config *cfg, uint64_t now_ns,
			       uint64_t *times);
int sluice__window_log_load(struct sluice_window_log *cell, const struct sluice_window_log_config *cfg,
			    const uint64_t *times, size_t n);

#endif /* SLUICE_WINDOW_INTERNAL_H */
