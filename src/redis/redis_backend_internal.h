/*
 * redis_backend_internal.h - the connection pool (redis_pool.c) shared by
 * the limiter on Redis (limiter_redis.c: a store behind the limiter's
 * operations table) and the engine's Redis executor (exec_redis.c), and
 * their hooks for tests. Not installed; nothing below the redis layer
 * includes it. Only the public sluice_redis_* API is used underneath, plus
 * sluice__redis_admit_each() below.
 */
#ifndef SLUICE_REDIS_BACKEND_INTERNAL_H
#define SLUICE_REDIS_BACKEND_INTERNAL_H

#include <sluice/engine.h>
#include <sluice/limiter.h>
#include <sluice/redis.h>

/* ---- the pool (redis_pool.c) ---- */

struct sluice__rpool;

/* n handles (1 .. SLUICE_REDIS_MAX_CONNECTIONS) made from `ro`, whose
 * fail_mode must be 0 (SLUICE_FAIL_OPEN): callers apply their own fail mode
 * to degraded answers. Errors as sluice_redis_create(), SLUICE_ENOMEM. */
int sluice__rpool_create(struct sluice__rpool **out, const struct sluice_redis_options *ro,
			 uint32_t n);
void sluice__rpool_destroy(struct sluice__rpool *p);

/* Lock a connection for the calling thread: its home connection if idle,
 * else any idle one, else wait for its home, at most the backend's
 * timeout_ns. Returns its index (the handle is *r until
 * sluice__rpool_put(p, index)), or SLUICE__RPOOL_BUSY when the wait ran out:
 * nothing is taken, the caller answers by its fail mode without I/O
 * (and counts it: sluice__rpool_count_busy). */
#define SLUICE__RPOOL_BUSY UINT32_MAX
uint32_t sluice__rpool_get(struct sluice__rpool *p, struct sluice_redis **r);
/* The same without a bound on the wait (create, reload: not a request). */
uint32_t sluice__rpool_get_wait(struct sluice__rpool *p, struct sluice_redis **r);
void sluice__rpool_put(struct sluice__rpool *p, uint32_t index);

/* Count decisions as the in-process limiter does (peeks are not counted):
 * by the connection's owner (index from get, before put). */
void sluice__rpool_count(struct sluice__rpool *p, uint32_t index, uint64_t cost,
			 const struct sluice_decision *d);
/* Count n decisions (cost > 0) answered by the fail mode because no
 * connection was free in time (any thread, no lock). */
void sluice__rpool_count_busy(struct sluice__rpool *p, uint64_t n);
/* Sum of the decision counters (relaxed reads; exact when quiescent). */
void sluice__rpool_counts(const struct sluice__rpool *p, uint64_t *admitted, uint64_t *denied,
			  uint64_t *degraded);
/* Sum of the backend's counters over the handles (each read while owning it). */
int sluice__rpool_backend_stats(struct sluice__rpool *p, struct sluice_redis_stats *out);

/* Apply `fail_mode` to an answer of a fail-open handle: a degraded denial
 * is what a fail-closed handle would have answered (peeks stay allowed). */
void sluice__redis_fail_mode(uint32_t fail_mode, uint64_t cost, struct sluice_decision *d);
/* The answer of `fail_mode` without asking the backend (no connection
 * free in time), as the backend's own fail-mode answer: degraded, allowed
 * unless fail closed with cost > 0, `limit`'s quota. */
void sluice__redis_fail_answer(uint32_t fail_mode, uint64_t cost, const struct sluice_limit *limit,
			       struct sluice_decision *d);

/*
 * sluice_redis_admit_scopes() (handles NULL) or sluice_redis_acquire_scopes()
 * for limits the caller validated once before (by a read-only call of the
 * public API: the limiter's store at create, the engine's executor when it
 * opens a binding): they are NOT validated again (kind, numbers, ranges).
 * each (NULL: not wanted) also receives every limit's decision of an
 * admission: each[k] for the flat limit index k (scope 0's limits first), as
 * the script decided it, atomically with the admission; entries it could not
 * know (a denial, a degraded answer) keep limit_index UINT32_MAX. A request
 * asking for them never takes a local lease. each holds every limit of the
 * request.
 */
int sluice__redis_admit_each(struct sluice_redis *r, const struct sluice_redis_scope *scopes, size_t nscopes,
			     uint64_t cost, uint64_t now_ns, struct sluice_decision *out,
			     struct sluice_decision *each, sluice_slot_handle *handles);

/* ---- the limiter and the engine on Redis ---- */

/* For tests: the backend's counters of a limiter made by
 * sluice_redis_limiter_create() (round trips, reconnects...), summed over
 * its connections. SLUICE_EINVAL for a NULL argument or another limiter. */
int sluice__limiter_redis_stats(struct sluice_limiter *lim, struct sluice_redis_stats *out);

/* For tests: the same for an engine made by sluice_redis_engine_create(). */
int sluice__engine_redis_stats(struct sluice_engine *eng, struct sluice_redis_stats *out);

#endif /* SLUICE_REDIS_BACKEND_INTERNAL_H */
