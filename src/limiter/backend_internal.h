/*
 * backend_internal.h - how another store plugs in under the keyed
 * limiter's public API (docs/limiter.md, "Stores"). Not installed.
 *
 * A limiter is either the in-process store (limiter.c and the files beside
 * it: its own table, no operations table, so its hot path stays a direct
 * call) or a backend made
 * by a layer above (Redis: src/redis/limiter_redis.c; shared memory:
 * src/shm/store.c) that hands the limiter
 * an operations table and its state. The limiter validates the arguments
 * every store shares (NULL limiter or decision, key length, batch shape)
 * and forwards the call; it knows nothing of the store.
 */
#ifndef SLUICE_LIMITER_BACKEND_INTERNAL_H
#define SLUICE_LIMITER_BACKEND_INTERNAL_H

#include <sluice/limiter.h>

#include "limiter/limiter_internal.h"

struct sluice__limiter_ops {
	int (*admit)(void *be, const void *key, size_t key_len, uint64_t cost, uint64_t now_ns,
		     struct sluice_decision *out);
	int (*acquire)(void *be, const void *key, size_t key_len, uint64_t cost, uint64_t now_ns,
		       struct sluice_decision *out, sluice_slot_handle *handle);
	int (*release)(void *be, const void *key, size_t key_len, sluice_slot_handle handle);
	int (*admit_batch)(void *be, const struct sluice_limiter_request *reqs, size_t n,
			   uint64_t now_ns, struct sluice_decision *out);
	/* NULL: the store expires idle state itself (sweep answers 0 with
	 * nothing reclaimed; maintenance starts no thread). */
	int (*sweep)(void *be, uint64_t now_ns, size_t budget_entries, size_t *reclaimed);
	int (*stats)(const void *be, struct sluice_limiter_stats *out);
	void (*destroy)(void *be);

	/* The policy engine's entry points (limiter_internal.h), for a store
	 * the in-process executor runs on (src/engine/exec_local.c); NULL on
	 * a store it does not (Redis has its own executor). Same contracts
	 * as the sluice__limiter_* functions they serve; hold->entry and
	 * hold->hash are the store's own tokens, handed back to cancel and
	 * release_entry unchanged; a hint is not used (hint->entry NULL). */
	int (*reserve)(void *be, const void *key, size_t key_len, uint64_t cost, uint64_t now_ns,
		       struct sluice_decision *out, struct sluice__limiter_hold *hold);
	void (*cancel)(void *be, const struct sluice__limiter_hold *hold);
	bool (*check)(void *be, const void *key, size_t key_len, uint64_t cost, uint64_t now_ns,
		      struct sluice_decision *out);
	int (*release_entry)(void *be, uint64_t hash, const void *entry, sluice_slot_handle handle);
	bool (*cancel_is_exact)(const void *be);
	void (*foreach)(void *be, uint64_t now_ns,
			void (*fn)(void *user, const void *key, size_t key_len,
				   const struct sluice_decision *d),
			void *user);
};

/* A limiter over `backend` (owned by the limiter from now on: destroyed by
 * ops->destroy, also when this fails). Returns 0 or SLUICE_ENOMEM. */
int sluice__limiter_create_backend(struct sluice_limiter **out, const struct sluice__limiter_ops *ops,
				   void *backend);

/* The backend of a limiter made with `ops`, or NULL (another store). */
void *sluice__limiter_backend(struct sluice_limiter *lim, const struct sluice__limiter_ops *ops);

#endif /* SLUICE_LIMITER_BACKEND_INTERNAL_H */
