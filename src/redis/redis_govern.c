/*
 * redis_govern.c - the backend's governing rule among admitted limits (least
 * remaining, then the shorter reset, as limiter.c's govern()) and the tie
 * rank the engine on Redis sets to break a full tie between scopes as
 * engine.c does (redis_rank_internal.h). Kept apart so that the tie rank
 * can go as one piece.
 */
#include "redis/redis_internal.h"

#ifdef SLUICE_WITH_REDIS

/* The tie rank of caller scope s (0 for all when no rank is set). */
static uint32_t tie_rank(const struct sluice_redis *r, size_t s)
{
	return r->tie_ranked && s < SLUICE_REDIS_MAX_SCOPES ? r->tie_rank[s] : 0;
}

/* Least remaining, then the shorter reset (limiter.c's govern()), then the
 * lower tie rank of the scope (sluice__redis_set_tie_rank(); engine.c's
 * lower policy index), then the first. */
void sluice__redis_govern(const struct sluice_redis *r, const struct prepared *p,
			  const struct sluice_decision *d, size_t n, struct sluice_decision *out)
{
	size_t best = 0;

	for (size_t i = 1; i < n; i++)
		if (d[i].remaining < d[best].remaining ||
		    (d[i].remaining == d[best].remaining &&
		     (d[i].reset_ns < d[best].reset_ns ||
		      (d[i].reset_ns == d[best].reset_ns &&
		       tie_rank(r, p->caller_scope[p->scope[i]]) <
			       tie_rank(r, p->caller_scope[p->scope[best]])))))
			best = i;
	*out = d[best];
	out->limit_index = (uint32_t)best;
}

/* The caller scope of a flat limit index of `whole`. */
static size_t scope_of(const struct prepared *whole, uint32_t flat)
{
	size_t s = 0;
	while (s + 1 < whole->req->nscopes && whole->base[s + 1] <= flat)
		s++;
	return s;
}

/* The better of two governing decisions (sluice__redis_govern(): least remaining, then
 * the shorter reset, then the lower tie rank, ties to the first). */
bool sluice__redis_governs_over(const struct sluice_redis *r, const struct prepared *whole,
				const struct sluice_decision *a, const struct sluice_decision *b)
{
	return a->remaining < b->remaining ||
	       (a->remaining == b->remaining &&
		(a->reset_ns < b->reset_ns ||
		 (a->reset_ns == b->reset_ns && tie_rank(r, scope_of(whole, a->limit_index)) <
							tie_rank(r, scope_of(whole, b->limit_index)))));
}

void sluice__redis_set_tie_rank(struct sluice_redis *r, const uint32_t *rank, size_t n)
{
	if (r == NULL)
		return;
	r->tie_ranked = rank != NULL;
	for (size_t s = 0; s < SLUICE_REDIS_MAX_SCOPES; s++)
		r->tie_rank[s] = rank != NULL && s < n ? rank[s] : UINT32_MAX;
}

#endif /* SLUICE_WITH_REDIS */
