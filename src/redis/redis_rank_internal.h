/*
 * redis_rank_internal.h - how the engine on Redis (engine_redis.c) makes
 * the backend break a full tie of the governing rule as engine.c does.
 * Not installed.
 */
#ifndef SLUICE_REDIS_RANK_INTERNAL_H
#define SLUICE_REDIS_RANK_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <sluice/redis.h>

/*
 * Among admitted limits the backend names the least remaining, then the
 * shorter reset, then (by default) the first in the caller's order. With a
 * rank set, a full tie (equal remaining and reset) between limits of
 * different scopes goes to the scope of lower rank[s] first (scope s of
 * every request the handle decides; scopes at or past n rank last), then to
 * the first as before. Denials are unaffected (the first denier decides).
 * The engine ranks each scope (one limit each) by its policy index, since
 * it must pass the scopes in evaluation order (concurrency first) for the
 * first denier but engine.c breaks ties by the lower policy index.
 * rank NULL restores the default. Stays in force until changed: set it
 * around each call on a shared handle. Not thread-safe (as the handle).
 * No effect in a build without hiredis.
 */
void sluice__redis_set_tie_rank(struct sluice_redis *r, const uint32_t *rank, size_t n);

#endif
