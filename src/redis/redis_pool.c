/*
 * redis_pool.c - a pool of Redis backend handles shared by the threads of a
 * Redis-backed limiter or engine (docs/redis.md, "Limiter and engine on
 * Redis").
 *
 * A struct sluice_redis is one connection and is not thread-safe, so a
 * thread owns a handle exclusively for the duration of a call: the pool's
 * mutex guards every handle's `busy` flag and is held only to take or give
 * back a handle (a few instructions), never across I/O. This is the network
 * path (a call blocks for a round trip, bounded by the backend's timeout),
 * not the lock-free one: a short critical section costs nothing next to a
 * round trip, and exclusive ownership keeps the handle's deny cache and
 * buffers consistent.
 *
 * Picking a connection. Each thread draws a ticket once (a relaxed counter)
 * and its home connection is ticket mod n, so threads spread round robin
 * and a thread keeps meeting the same deny cache. When its home is busy the
 * thread takes the next idle one; when all are busy it waits on the pool's
 * condition variable (CLOCK_MONOTONIC) for any to come back, at most the
 * backend's timeout_ns. A thread that gets none in time answers by the
 * fail mode without I/O, so no call blocks longer than twice timeout_ns
 * (the wait, then its own call), however many threads share the pool. A
 * connection is never idle while a thread waits.
 *
 * Counters. Decisions are counted per connection by its owner (one writer
 * at a time: ownership passes through the pool mutex), in atomics so that
 * stats can sum them without taking anything: relaxed stores and loads (the
 * values are statistics; no other memory is published through them).
 */
#include "redis/redis_backend_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "limiter/limit_kind_internal.h"
#include "common/util_internal.h"

struct conn {
	_Alignas(SLUICE_CACHELINE) struct sluice_redis *r;
	bool busy; /* owned by a thread; under sluice__rpool.lock */
	_Atomic uint64_t admitted;
	_Atomic uint64_t denied;
	_Atomic uint64_t degraded;
};
_Static_assert(sizeof(struct conn) % SLUICE_CACHELINE == 0,
	       "each connection's counters on lines of their own");

struct sluice__rpool {
	pthread_mutex_t lock; /* every conn's busy flag */
	pthread_cond_t freed; /* a connection came back (CLOCK_MONOTONIC) */
	uint32_t n;
	uint32_t waiting;   /* threads in freed's wait; under lock */
	uint64_t wait_ns;   /* longest wait for a connection: the timeout */
	struct conn *conns; /* aligned_alloc'ed, n entries */
	/* Answers by the fail mode because no connection was free in time;
	 * any thread may add (no lock held). */
	_Alignas(SLUICE_CACHELINE) _Atomic uint64_t busy;
};

/* Tickets: thread t's home connection is ticket(t) mod n. 0: none drawn. */
static _Atomic uint32_t next_ticket;
static _Thread_local uint32_t my_ticket;

int sluice__rpool_create(struct sluice__rpool **out, const struct sluice_redis_options *ro,
			 uint32_t n)
{
	*out = NULL;
	if (ro == NULL || n == 0 || n > SLUICE_REDIS_MAX_CONNECTIONS)
		return SLUICE_EINVAL;
	if (ro->size < sizeof(struct sluice_redis_options) || ro->fail_mode != SLUICE_FAIL_OPEN)
		return SLUICE_EINVAL;
	struct sluice__rpool *p = aligned_alloc(SLUICE_CACHELINE, sizeof *p);
	if (p == NULL)
		return SLUICE_ENOMEM;
	memset(p, 0, sizeof *p);
	p->conns = aligned_alloc(SLUICE_CACHELINE, n * sizeof *p->conns);
	if (p->conns == NULL) {
		free(p);
		return SLUICE_ENOMEM;
	}
	memset(p->conns, 0, n * sizeof *p->conns);
	/* The backend's default when 0 (sluice/redis.h). */
	p->wait_ns = ro->timeout_ns != 0 ? ro->timeout_ns : 50 * UINT64_C(1000000);
	pthread_condattr_t ca;
	if (pthread_mutex_init(&p->lock, NULL) != 0) {
		free(p->conns);
		free(p);
		return SLUICE_ENOMEM;
	}
	if (pthread_condattr_init(&ca) != 0) {
		pthread_mutex_destroy(&p->lock);
		free(p->conns);
		free(p);
		return SLUICE_ENOMEM;
	}
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	int cr = pthread_cond_init(&p->freed, &ca);
	pthread_condattr_destroy(&ca);
	if (cr != 0) {
		pthread_mutex_destroy(&p->lock);
		free(p->conns);
		free(p);
		return SLUICE_ENOMEM;
	}
	int rc = SLUICE_OK;
	for (uint32_t i = 0; i < n && rc == SLUICE_OK; i++) {
		p->n = i + 1;
		rc = sluice_redis_create(&p->conns[i].r, ro);
	}
	if (rc != SLUICE_OK) {
		sluice__rpool_destroy(p);
		return rc;
	}
	*out = p;
	return SLUICE_OK;
}

void sluice__rpool_destroy(struct sluice__rpool *p)
{
	if (p == NULL)
		return;
	for (uint32_t i = 0; i < p->n; i++)
		sluice_redis_destroy(p->conns[i].r);
	pthread_cond_destroy(&p->freed);
	pthread_mutex_destroy(&p->lock);
	free(p->conns);
	free(p);
}

/* Under p->lock: the home connection if idle, else the next idle one;
 * SLUICE__RPOOL_BUSY when all are taken. */
static uint32_t take_idle(struct sluice__rpool *p, uint32_t home)
{
	for (uint32_t k = 0; k < p->n; k++) {
		uint32_t i = (home + k) % p->n;
		if (!p->conns[i].busy) {
			p->conns[i].busy = true;
			return i;
		}
	}
	return SLUICE__RPOOL_BUSY;
}

/* Take a connection, waiting at most wait_ns (UINT64_MAX: no bound). */
static uint32_t get(struct sluice__rpool *p, struct sluice_redis **r, uint64_t wait_ns)
{
	if (SLUICE_UNLIKELY(my_ticket == 0)) {
		/* relaxed: only spreads threads; no memory is published. */
		uint32_t t = atomic_fetch_add_explicit(&next_ticket, 1, memory_order_relaxed); /* relaxed: why above */
		my_ticket = t + 1 != 0 ? t + 1 : 1;
	}
	uint32_t home = my_ticket % p->n;
	struct timespec deadline;
	bool have_deadline = false;

	pthread_mutex_lock(&p->lock);
	uint32_t i;
	while ((i = take_idle(p, home)) == SLUICE__RPOOL_BUSY) {
		int w;
		p->waiting++;
		if (wait_ns == UINT64_MAX) {
			w = pthread_cond_wait(&p->freed, &p->lock);
		} else {
			if (!have_deadline) {
				clock_gettime(CLOCK_MONOTONIC, &deadline);
				uint64_t at = (uint64_t)deadline.tv_nsec + wait_ns % SLUICE_NS_PER_SEC;
				deadline.tv_sec += (time_t)(wait_ns / SLUICE_NS_PER_SEC + at / SLUICE_NS_PER_SEC);
				deadline.tv_nsec = (long)(at % SLUICE_NS_PER_SEC);
				have_deadline = true;
			}
			w = pthread_cond_timedwait(&p->freed, &p->lock, &deadline);
		}
		p->waiting--;
		if (w == ETIMEDOUT) {
			i = take_idle(p, home); /* one last look */
			break;
		}
	}
	pthread_mutex_unlock(&p->lock);
	if (i != SLUICE__RPOOL_BUSY)
		*r = p->conns[i].r;
	return i;
}

uint32_t sluice__rpool_get(struct sluice__rpool *p, struct sluice_redis **r)
{
	return get(p, r, p->wait_ns);
}

uint32_t sluice__rpool_get_wait(struct sluice__rpool *p, struct sluice_redis **r)
{
	return get(p, r, UINT64_MAX);
}

void sluice__rpool_put(struct sluice__rpool *p, uint32_t index)
{
	pthread_mutex_lock(&p->lock);
	p->conns[index].busy = false;
	/* Broadcast: a waiter may want this connection in particular
	 * (get_index) or any (get); each re-checks. Waiters are at most the
	 * threads beyond n, and only while every connection is busy. */
	if (p->waiting != 0)
		pthread_cond_broadcast(&p->freed);
	pthread_mutex_unlock(&p->lock);
}

static void bump(_Atomic uint64_t *c)
{
	/* relaxed: the connection's owner is the only writer (ownership
	 * passes through the pool mutex); a statistic, read relaxed by
	 * sluice__rpool_counts(). */
	uint64_t v = atomic_load_explicit(c, memory_order_relaxed); /* relaxed: why above */
	atomic_store_explicit(c, v + 1, memory_order_relaxed);      /* relaxed: why above */
}

void sluice__rpool_count(struct sluice__rpool *p, uint32_t index, uint64_t cost,
			 const struct sluice_decision *d)
{
	struct conn *c = &p->conns[index];

	if (cost == 0)
		return; /* peeks are not admissions (src/limiter/decide.c's count()) */
	bump(d->degraded ? &c->degraded : d->allowed ? &c->admitted : &c->denied);
}

void sluice__rpool_count_busy(struct sluice__rpool *p, uint64_t n)
{
	/* relaxed: a statistic, summed by sluice__rpool_counts(); any thread
	 * may add (no connection lock is held). */
	atomic_fetch_add_explicit(&p->busy, n, memory_order_relaxed); /* relaxed: why above */
}

void sluice__rpool_counts(const struct sluice__rpool *p, uint64_t *admitted, uint64_t *denied,
			  uint64_t *degraded)
{
	/* relaxed: statistics (see bump() and sluice__rpool_count_busy()). */
	uint64_t a = 0, dn = 0, dg = atomic_load_explicit(&p->busy, memory_order_relaxed); /* relaxed: why above */

	for (uint32_t i = 0; i < p->n; i++) {
		struct conn *c = &p->conns[i];
		/* relaxed: statistics (see bump()). */
		a += atomic_load_explicit(&c->admitted, memory_order_relaxed);  /* relaxed: why above */
		dn += atomic_load_explicit(&c->denied, memory_order_relaxed);   /* relaxed: why above */
		dg += atomic_load_explicit(&c->degraded, memory_order_relaxed); /* relaxed: why above */
	}
	*admitted = a;
	*denied = dn;
	*degraded = dg;
}

/* Take connection i itself, waiting as long as it is busy. */
static uint32_t get_index(struct sluice__rpool *p, uint32_t i, struct sluice_redis **r)
{
	pthread_mutex_lock(&p->lock);
	while (p->conns[i].busy) {
		p->waiting++;
		pthread_cond_wait(&p->freed, &p->lock);
		p->waiting--;
	}
	p->conns[i].busy = true;
	pthread_mutex_unlock(&p->lock);
	*r = p->conns[i].r;
	return i;
}

int sluice__rpool_backend_stats(struct sluice__rpool *p, struct sluice_redis_stats *out)
{
	/* Every counter is a uint64_t after `size`: sum them field by field,
	 * so counters appended to the struct later are summed too. */
	enum { FIRST = offsetof(struct sluice_redis_stats, admitted) };
	size_t nfields = (sizeof *out - FIRST) / sizeof(uint64_t);
	uint64_t sum[sizeof *out / sizeof(uint64_t)];

	_Static_assert((sizeof(struct sluice_redis_stats) - offsetof(struct sluice_redis_stats, admitted)) %
				       sizeof(uint64_t) ==
			       0,
		       "stats are uint64_t counters after size");
	if (out == NULL || out->size < sizeof *out)
		return SLUICE_EINVAL;
	memset(sum, 0, sizeof sum);
	for (uint32_t i = 0; i < p->n; i++) {
		struct sluice_redis_stats s;
		memset(&s, 0, sizeof s);
		s.size = sizeof s;
		/* Own the connection: waits out a call in flight on it. */
		struct sluice_redis *r;
		uint32_t c = get_index(p, i, &r);
		int rc = sluice_redis_stats(r, &s);
		sluice__rpool_put(p, c);
		if (rc != SLUICE_OK)
			return rc;
		for (size_t f = 0; f < nfields; f++) {
			uint64_t v;
			memcpy(&v, (const unsigned char *)&s + FIRST + f * sizeof v, sizeof v);
			sum[f] += v;
		}
	}
	for (size_t f = 0; f < nfields; f++)
		memcpy((unsigned char *)out + FIRST + f * sizeof(uint64_t), &sum[f], sizeof(uint64_t));
	return SLUICE_OK;
}

void sluice__redis_fail_mode(uint32_t fail_mode, uint64_t cost, struct sluice_decision *d)
{
	if (!d->degraded || fail_mode != SLUICE_FAIL_CLOSED || cost == 0)
		return;
	/* What redis.c's fill_degraded() answers in fail-closed mode (and
	 * the limiter's for a key it cannot track, decide.c): denied, reason CAPACITY,
	 * the first limit's quota, nothing else known. */
	d->allowed = false;
	d->reason = SLUICE_REASON_CAPACITY;
	d->retry_after_ns = 0;
}

void sluice__redis_fail_answer(uint32_t fail_mode, uint64_t cost, const struct sluice_limit *limit,
			       struct sluice_decision *d)
{
	struct sluice_decision fresh;
	const struct sluice__limit_ops *ops = sluice__limit_ops_of(limit->kind);

	memset(d, 0, sizeof *d);
	d->degraded = true;
	d->allowed = true;
	if (ops != NULL) {
		ops->fresh(limit, 0, &fresh);
		d->limit = fresh.limit;
	}
	sluice__redis_fail_mode(fail_mode, cost, d);
}
