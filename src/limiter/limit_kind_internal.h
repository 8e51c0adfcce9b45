/*
 * limit_kind_internal.h - what the keyed limiter needs from each kind of
 * limit, as a small table of operations. The limiter (decide.c, sweep.c)
 * knows cells only through this table, so the window and slot kinds plug in by adding an
 * entry here and a case in sluice__limit_ops_of(). Not installed.
 *
 * A kind that may serve as the "commit cell" (cell 0 of an entry, the one
 * committed last and tombstoned by the reclaimer) provides commit_ok, word,
 * is_tomb, word_is_idle, check_word, tomb, mark_unlinked and is_unlinked;
 * its word must never take the same value twice between tombstones while
 * only admissions write it (no ABA for the sweeper's CAS: sweep.c,
 * "Reclaim"), and two of its values must be reserved as tombstones. GCRA
 * (a TAT only grows) always qualifies; the sliding counter and the
 * calendar (one word each, advancing in (window index, count)) qualify
 * when their limit leaves the tombstones unreachable and their index takes
 * at least SLUICE__COMMIT_WRAP_MIN_NS to wrap (commit_ok). The sliding log
 * and slots have no single word. The limiter puts the first GCRA limit at
 * internal index 0, else the first qualifying window, else prepends the
 * internal COMMIT kind, an 8-byte generation word bumped by every
 * admission (docs/limiter.md, "Kinds").
 */
#ifndef SLUICE_LIMIT_KIND_INTERNAL_H
#define SLUICE_LIMIT_KIND_INTERNAL_H

#include <sluice/limiter.h>

/* A window word may be cell 0 only if its window index takes at least this
 * long (in the callers' time) to wrap: one day (sweep.c, "Reclaim"). */
#define SLUICE__COMMIT_WRAP_MIN_NS (UINT64_C(86400) * 1000000000u)

/* The internal kind of the commit word (never in a user's policy). */
#define SLUICE__LIMIT_COMMIT 0x7fffffffu

/* Enough to undo one admission of any kind (slots: w[0] is the handle). */
struct sluice__receipt {
	uint64_t w[3];
};

struct sluice__limit_ops {
	/* Bytes of a cell for this limit: a multiple of 8 (cells are 8-byte
	 * aligned). */
	size_t (*cell_size)(const struct sluice_limit *limit);
	/* A full cell, before publication. */
	void (*init)(void *cell, const struct sluice_limit *limit);
	/* The cost-0 decision of a fresh (full) cell: a peek of an unknown key. */
	void (*fresh)(const struct sluice_limit *limit, uint64_t now_ns, struct sluice_decision *out);
	/* Dry run on the cell's current state: the decision admit would take,
	 * nothing written. */
	bool (*check)(const void *cell, const struct sluice_limit *limit, uint64_t now_ns,
		      uint64_t cost, struct sluice_decision *out);
	/* Admit and take a receipt (receipt may be NULL, except for slots). */
	bool (*admit)(void *cell, const struct sluice_limit *limit, uint64_t now_ns,
		      uint64_t cost, struct sluice_decision *out, struct sluice__receipt *receipt);
	/* Undo an admission (cancel_exact below says how exactly); true if
	 * nothing of it is left. */
	bool (*cancel)(void *cell, const struct sluice_limit *limit,
		       const struct sluice__receipt *receipt);
	/* The cell is full at now_ns (carries no information). */
	bool (*is_idle)(const void *cell, const struct sluice_limit *limit, uint64_t now_ns);
	/* cancel() undoes its admission exactly whatever landed since (the
	 * counting kinds: their operations commute); false: only while nothing
	 * landed since (GCRA, sliding log), else the consumption stays. */
	bool cancel_exact;
	/* This limit may serve as cell 0 (NULL: never). */
	bool (*commit_ok)(const struct sluice_limit *limit);

	/* Commit-cell operations. */
	uint64_t (*word)(const void *cell);                 /* relaxed load */
	bool (*is_tomb)(uint64_t word);
	bool (*word_is_idle)(uint64_t word, const struct sluice_limit *limit, uint64_t now_ns);
	bool (*check_word)(uint64_t word, const struct sluice_limit *limit, uint64_t now_ns,
			   uint64_t cost, struct sluice_decision *out);
	bool (*tomb)(void *cell, uint64_t observed);        /* CAS observed -> tomb */
	void (*mark_unlinked)(void *cell);                  /* release store */
	bool (*is_unlinked)(const void *cell);              /* acquire load */

	/* Snapshots (snapshot.c; docs/limiter.md, "Snapshots"). save: copy
	 * the cell's state into words[0 .. sluice__limit_saved_max(limit)),
	 * return how many were written (the one-word kinds: the word, relaxed;
	 * a commit cell's word is saved by the limiter from the word it
	 * judged). load: install words[0 .. n) into a fresh cell not yet
	 * published (init already run); taken_ns is the snapshot's time, now_ns
	 * the restore's (>= taken_ns). Returns 0, or SLUICE_ECORRUPT when the
	 * words are no state of this limit (nothing else is checked here: the
	 * file's checksum and structure were). */
	size_t (*save)(const void *cell, const struct sluice_limit *limit, uint64_t now_ns,
		       uint64_t *words);
	int (*load)(void *cell, const struct sluice_limit *limit, const uint64_t *words, size_t n,
		    uint64_t taken_ns, uint64_t now_ns);
};

/* The sliding log's dry run from its read-only peek (cost 0) and, for a
 * denial, its admit, cancelled if it passes (limit_kind.c); the
 * shared-memory store (src/shm/log.c) runs it with its own admit/cancel. */
typedef bool (*sluice__admit_fn)(void *cell, const struct sluice_limit *limit, uint64_t now_ns,
				 uint64_t cost, struct sluice_decision *out, struct sluice__receipt *receipt);
typedef bool (*sluice__cancel_fn)(void *cell, const struct sluice_limit *limit,
				  const struct sluice__receipt *receipt);
bool sluice__window_check(const void *cell, const struct sluice_limit *limit, uint64_t now_ns,
			  uint64_t cost, struct sluice_decision *out, sluice__admit_fn admit,
			  sluice__cancel_fn cancel);

/* Most words save() writes for this limit: 1 + limit for a sliding log (the
 * count, then the times of the units in the window), 1 for the others. */
size_t sluice__limit_saved_max(const struct sluice_limit *limit);

/* The operations of limit->kind, or NULL for an unknown kind. */
const struct sluice__limit_ops *sluice__limit_ops_of(uint32_t kind);

/* Validate one limit spec of a known kind: 0 or SLUICE_EINVAL. */
int sluice__limit_validate(const struct sluice_limit *limit);

#endif /* SLUICE_LIMIT_KIND_INTERNAL_H */
