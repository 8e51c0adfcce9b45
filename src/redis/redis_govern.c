/*
 * redis_govern.c - the backend's governing rule among admitted limits: the
 * one rule (common/govern_internal.h), ranked by the order the limits are
 * decided in (within a scope its first GCRA limit first, as the keyed
 * limiter's cells), so a full tie goes to the first, as in process.
 */
#include "redis/redis_internal.h"

#ifdef SLUICE_WITH_REDIS

#include "common/govern_internal.h"

void sluice__redis_govern(const struct prepared *p, const struct sluice_decision *d, size_t n,
			  struct sluice_decision *out)
{
	size_t best = 0;

	(void)p;
	for (size_t i = 1; i < n; i++)
		if (sluice__decision_governs(&d[i], (uint32_t)i, &d[best], (uint32_t)best))
			best = i;
	*out = d[best];
	out->limit_index = (uint32_t)best;
}

bool sluice__redis_governs_over(const struct sluice_decision *a, const struct sluice_decision *b)
{
	return sluice__decision_governs(a, 1, b, 0);
}

#endif /* SLUICE_WITH_REDIS */
