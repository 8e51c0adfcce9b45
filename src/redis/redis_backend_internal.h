/*
 * redis_backend_internal.h - the limiter and the engine on Redis
 * (limiter_redis.c, engine_redis.c) and the connection pool they share
 * (redis_pool.c). Not installed. limiter.c and engine.c dispatch to these
 * from the top of their public functions when created with options.redis.
 * Only the public sluice_redis_* API is used underneath, plus the engine's
 * tie rank (redis_rank_internal.h).
 */
#ifndef SLUICE_REDIS_BACKEND_INTERNAL_H
#define SLUICE_REDIS_BACKEND_INTERNAL_H

#include <sluice/engine.h>
#include <sluice/limiter.h>
#include <sluice/redis.h>

/* ---- the pool (redis_pool.c) ---- */

struct sluice__rpool;

/* n handles (1 .. SLUICE_LIMITER_MAX_CONNECTIONS) made from `ro`, whose
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

/* ---- the limiter on Redis (limiter_redis.c) ---- */

struct sluice__rlimiter;

int sluice__rlimiter_create(struct sluice__rlimiter **out, const struct sluice_limit *limits,
			    size_t nlimits, const struct sluice_limiter_options *o);
void sluice__rlimiter_destroy(struct sluice__rlimiter *rl);
int sluice__rlimiter_admit(struct sluice__rlimiter *rl, const void *key, size_t key_len,
			   uint64_t cost, uint64_t now_ns, struct sluice_decision *out);
int sluice__rlimiter_acquire(struct sluice__rlimiter *rl, const void *key, size_t key_len,
			     uint64_t cost, uint64_t now_ns, struct sluice_decision *out,
			     sluice_slot_handle *handle);
int sluice__rlimiter_release(struct sluice__rlimiter *rl, const void *key, size_t key_len,
			     sluice_slot_handle handle);
int sluice__rlimiter_admit_batch(struct sluice__rlimiter *rl, const struct sluice_limiter_request *reqs,
				 size_t n, uint64_t now_ns, struct sluice_decision *out);
int sluice__rlimiter_stats(const struct sluice__rlimiter *rl, struct sluice_limiter_stats *out);
int sluice__rlimiter_backend_stats(struct sluice__rlimiter *rl, struct sluice_redis_stats *out);

/* For tests: the backend's counters of a Redis-backed limiter (round trips,
 * reconnects...), summed over its connections. SLUICE_EINVAL for a NULL
 * argument or an in-process limiter. */
int sluice__limiter_redis_stats(struct sluice_limiter *lim, struct sluice_redis_stats *out);

/* ---- the engine on Redis (engine_redis.c) ---- */

/* engine.c: the limit spec of policy limit `pl` with the numbers in force
 * (count, burst after tier or override); one mapping for both engines. */
int sluice__engine_limit_spec(const struct sluice_policy_limit *pl, uint64_t count, uint64_t burst,
			      struct sluice_limit *out);

/* engine.c: the class a usage request is counted in: the default class
 * without a path, else the route's; SLUICE_EINVAL for a path without a
 * method, or the matcher's error. One rule for both engines. */
int sluice__engine_usage_class(const struct sluice_policy *policy,
			       const struct sluice_engine_request *req);

/* engine.c: the class a release gives its slots back in: the check's when
 * the policy is the one of the check (same generation, class in range),
 * else the request's route matched again (the default class if that
 * fails). Never an error. */
int sluice__engine_release_class(const struct sluice_policy *policy, uint32_t class_count,
				 uint64_t generation, const struct sluice_engine_request *req,
				 const struct sluice_engine_decision *decision);

/* engine.c: one way for both engines to fill a decision from policy limit
 * i (governing limit, scope, name), to tell whether a decision is past the
 * limit's warn threshold, and to copy a limit name (truncated). */
void sluice__engine_fill_governing(const struct sluice_policy_spec *spec, uint32_t i,
				   const struct sluice_decision *d, struct sluice_engine_decision *out);
bool sluice__engine_over_warn(const struct sluice_policy_limit *pl, const struct sluice_decision *d);
void sluice__engine_name_copy(char *dst, const char *src);

struct sluice__rengine;

int sluice__rengine_create(struct sluice__rengine **out, struct sluice_policy *policy,
			   const struct sluice_engine_options *o);
void sluice__rengine_destroy(struct sluice__rengine *re);
int sluice__rengine_check(struct sluice__rengine *re, const struct sluice_engine_request *req,
			  struct sluice_engine_decision *out);
int sluice__rengine_release(struct sluice__rengine *re, const struct sluice_engine_request *req,
			    struct sluice_engine_decision *decision);
int sluice__rengine_reload(struct sluice__rengine *re, struct sluice_policy *policy);
uint64_t sluice__rengine_generation(struct sluice__rengine *re);
int sluice__rengine_usage(struct sluice__rengine *re, const struct sluice_engine_request *req,
			  struct sluice_engine_usage *out, size_t cap, size_t *count);

int sluice__rengine_backend_stats(struct sluice__rengine *re, struct sluice_redis_stats *out);

/* For tests: the backend's counters of a Redis-backed engine. */
int sluice__engine_redis_stats(struct sluice_engine *eng, struct sluice_redis_stats *out);

#endif /* SLUICE_REDIS_BACKEND_INTERNAL_H */
