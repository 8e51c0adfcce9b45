/*
 * govern_internal.h - the governing-limit rule: which of several per-limit
 * decisions answers for a request. One rule, used by the keyed limiter (the
 * limits of one key), the policy engine (the limits of one request, on every
 * executor) and nothing else re-implements it. Not installed.
 *
 * The rule, in order:
 *   1. a denial governs over any admission; between two denials the one
 *      with the lower rank (callers stop at the first denier in evaluation
 *      order, so they never compare two);
 *   2. among admissions, the least remaining;
 *   3. then the shorter reset_ns;
 *   4. then the lower rank.
 * The rank is the order each caller documents for full ties: the keyed
 * limiter ranks its cells (its first GCRA limit, then the others in the
 * caller's order), the engine ranks limits by policy index. Every backend
 * of the same object uses the same ranks (the Redis script evaluates a
 * scope's limits in the limiter's cell order, and the engine's Redis
 * executor ranks each scope by its policy index), so a policy gives the
 * same governing limit on every backend.
 */
#ifndef SLUICE_GOVERN_INTERNAL_H
#define SLUICE_GOVERN_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <sluice/common.h>

/* Does decision a (of the limit ranked a_rank) govern over b (b_rank)?
 * Strict: false when a and b are the same limit. */
static inline bool sluice__decision_governs(const struct sluice_decision *a, uint32_t a_rank,
					    const struct sluice_decision *b, uint32_t b_rank)
{
	if (a->allowed != b->allowed)
		return !a->allowed;
	if (a->allowed) {
		if (a->remaining != b->remaining)
			return a->remaining < b->remaining;
		if (a->reset_ns != b->reset_ns)
			return a->reset_ns < b->reset_ns;
	}
	return a_rank < b_rank;
}

#endif /* SLUICE_GOVERN_INTERNAL_H */
