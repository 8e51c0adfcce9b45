/*
 * engine.c - the policy engine: a loaded policy bound to keyed limiters.
 *
 * State. The engine publishes one immutable `struct state`: the policy and,
 * per policy limit, the limiter of its base numbers and one per tier (for a
 * tiered limit), plus one limiter per override. Limiters are reference
 * counted records (`struct binding`) so that a reload can carry the
 * unchanged ones over into the next state. Readers (check, release, usage,
 * top) load the state pointer inside an urcu-memb read-side section; reload
 * swaps it with an atomic exchange and frees what the old state alone held
 * after synchronize_rcu(), so no reader ever sees a freed limiter or policy.
 * The pointer is a C11 atomic (acquire load / acq_rel exchange: the same
 * contract as rcu_dereference / rcu_xchg_pointer, and visible to TSan, which
 * liburcu's volatile accesses are not).
 *
 * All-or-nothing across limiters (docs/policy.md, "Engine"). A request is
 * admitted by each applicable limiter in turn with a receipt
 * (sluice__limiter_reserve): concurrency slots first (their cancel is always
 * exact: a semaphore's operations commute), then the other limits in policy
 * order. The first refusal cancels every receipt already taken, in reverse
 * order. Each reserve is a real, atomic admission of its own cell, so at any
 * instant every cell holds at most its limit: nothing can over-admit,
 * whatever the interleaving. A cancel restores a cell only if nothing
 * landed on it since (else the units stay consumed: conservative), so a
 * refused request evaluated alone consumes nothing; under contention its
 * transient reservation may refuse a concurrent request that would have
 * fit, and rarely stay consumed. The receipts live on the stack and are
 * valid because the whole evaluation is one read-side section: entries
 * cannot be freed under it.
 */
#include <sluice/engine.h>
#include <sluice/limiter.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <urcu.h>

#include "limiter/limiter_internal.h"
#include "redis/redis_backend_internal.h"
#include "common/util_internal.h"

#if defined(__SANITIZE_THREAD__)
#define ENGINE_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define ENGINE_TSAN 1
#endif
#endif
#ifdef ENGINE_TSAN
#include <sanitizer/tsan_interface.h>
#define TSAN_RELEASE(p) __tsan_release((void *)(p))
#define TSAN_ACQUIRE(p) __tsan_acquire((void *)(p))
#else
#define TSAN_RELEASE(p) ((void)0)
#define TSAN_ACQUIRE(p) ((void)0)
#endif

/* One keyed limiter bound to one (limit, tier) or one override. Shared by
 * consecutive states when a reload keeps it; refs is only touched under the
 * engine's reload lock. */
struct binding {
	struct sluice_limiter *lim;
	uint64_t id;
	uint32_t refs;
	/* What makes it "the same limiter" across a reload. */
	char name[SLUICE_POLICY_MAX_NAME + 1];
	char tier[SLUICE_POLICY_MAX_NAME + 1]; /* "" for the base numbers */
	struct sluice_limit spec;
	uint32_t scope_mask;
	bool per_class;
	bool is_override;
	/* Overrides: which key of which scope, until when. */
	uint32_t oscope;
	uint32_t okey_len;
	uint64_t oexpires_ns;
	uint8_t okey[SLUICE_POLICY_MAX_KEY];
};

struct state_limit {
	struct binding *base;
	struct binding *tier[SLUICE_POLICY_MAX_TIERS]; /* NULL: not tiered */
};

struct state {
	struct sluice_policy *policy;
	const struct sluice_policy_spec *spec;
	uint64_t generation;
	uint32_t order[SLUICE_POLICY_MAX_LIMITS]; /* evaluation order */
	struct state_limit limits[SLUICE_POLICY_MAX_LIMITS];
	struct binding **overrides; /* spec->override_count */
};

struct sluice_engine {
	/* Non-NULL: created with options.redis; every public function hands
	 * over to engine_redis.c and nothing below is used. */
	struct sluice__rengine *redis;
	_Atomic(struct state *) state;
	pthread_mutex_t lock; /* reload, sweep, destroy */
	uint64_t next_id;
	uint64_t max_keys;
	uint64_t sweep_interval_ns;
	uint32_t flags;
#ifdef ENGINE_TSAN
	char tsan_gp;
#endif
};

/* ---- the class of a request (shared with engine_redis.c) ---- */

int sluice__engine_usage_class(const struct sluice_policy *policy,
			       const struct sluice_engine_request *req)
{
	if (req->path == NULL)
		return SLUICE_POLICY_DEFAULT_CLASS;
	if (req->method == NULL)
		return SLUICE_EINVAL;
	return sluice_policy_match(policy, req->method, req->method_len, req->path, req->path_len);
}

int sluice__engine_release_class(const struct sluice_policy *policy, uint32_t class_count,
				 uint64_t generation, const struct sluice_engine_request *req,
				 const struct sluice_engine_decision *decision)
{
	/* Same policy as the check: its class stands (no second match). */
	if (decision->generation == generation && decision->class_id < class_count)
		return (int)decision->class_id;
	if (req->method == NULL || req->path == NULL)
		return SLUICE_POLICY_DEFAULT_CLASS;
	int cls = sluice_policy_match(policy, req->method, req->method_len, req->path, req->path_len);
	return cls < 0 ? (int)SLUICE_POLICY_DEFAULT_CLASS : cls;
}

/* ---- limits of a policy as limiter specs ---- */

/* Also used by engine_redis.c (redis_backend_internal.h). */
int sluice__engine_limit_spec(const struct sluice_policy_limit *pl, uint64_t count, uint64_t burst,
			      struct sluice_limit *out)
{
	int rc;

	memset(out, 0, sizeof *out);
	switch (pl->kind) {
	case SLUICE_POLICY_KIND_GCRA:
		out->kind = SLUICE_LIMIT_GCRA;
		rc = sluice_rate_init(&out->rate, count, pl->period_ns, burst);
		break;
	case SLUICE_POLICY_KIND_SLIDING:
		/* Exact log up to its ceiling; the O(1) counter beyond. */
		if (count <= SLUICE_WINDOW_LOG_MAX_LIMIT) {
			out->kind = SLUICE_LIMIT_SLIDING_LOG;
			rc = sluice_window_log_config_init(&out->log, count, pl->period_ns);
		} else {
			out->kind = SLUICE_LIMIT_SLIDING_COUNTER;
			rc = sluice_window_counter_config_init(&out->counter, count, pl->period_ns);
		}
		break;
	case SLUICE_POLICY_KIND_CALENDAR:
		out->kind = SLUICE_LIMIT_CALENDAR;
		rc = sluice_calendar_config_init(&out->calendar, count, pl->period_ns);
		break;
	case SLUICE_POLICY_KIND_CONCURRENCY:
		out->kind = SLUICE_LIMIT_SLOTS;
		rc = sluice_slots_config_init(&out->slots, count, pl->lease_ns, pl->retry_after_ns);
		break;
	default:
		return SLUICE_EINVAL;
	}
	return rc == SLUICE_ERANGE ? SLUICE_ETOOBIG : rc;
}

/* Bindings whose last reference is gone, destroyed together with one
 * rcu_barrier for all their limiters (sluice__limiter_destroy_many). When
 * the arrays could not be allocated (lims NULL), each is destroyed at once. */
struct graveyard {
	struct sluice_limiter **lims;
	struct binding **bindings;
	size_t n;
};

static void binding_put(struct graveyard *g, struct binding *b)
{
	if (b == NULL || --b->refs != 0)
		return;
	if (g->lims == NULL) {
		sluice_limiter_destroy(b->lim);
		free(b);
		return;
	}
	g->lims[g->n] = b->lim;
	g->bindings[g->n++] = b;
}

/* The maintenance threads' clock: Unix time (the engine's clock), lagging
 * so that requests whose clock reading is up to that stale are not older
 * than a sweep. */
static uint64_t realtime_lagged(void *user)
{
	(void)user;
	uint64_t now = sluice_realtime_ns();
	return now > SLUICE_LIMITER_SWEEP_LAG_NS ? now - SLUICE_LIMITER_SWEEP_LAG_NS : 0;
}

static int binding_new(struct sluice_engine *eng, const struct sluice_policy_spec *spec,
		       const struct sluice_policy_limit *pl, const char *tier,
		       const struct sluice_limit *ls, bool is_override, struct binding **out)
{
	struct binding *b = calloc(1, sizeof *b);
	if (b == NULL)
		return SLUICE_ENOMEM;
	struct sluice_limiter_options o;
	memset(&o, 0, sizeof o);
	o.size = sizeof o;
	o.max_keys = is_override ? 0 : eng->max_keys;
	o.fail_mode = spec->fail == SLUICE_FAIL_CLOSED ? SLUICE_FAIL_CLOSED : SLUICE_FAIL_OPEN;
	o.flags = (eng->flags & SLUICE_ENGINE_CALLER_REGISTERS_RCU) ? SLUICE_LIMITER_CALLER_REGISTERS_RCU
								     : 0;
	if (is_override)
		o.initial_buckets = 16;
	int rc = sluice_limiter_create(&b->lim, ls, 1, &o);
	if (rc != SLUICE_OK) {
		free(b);
		return rc;
	}
	if (eng->sweep_interval_ns != 0) {
		rc = sluice_limiter_maintenance_start(b->lim, eng->sweep_interval_ns, 4096,
						      realtime_lagged, NULL);
		if (rc != SLUICE_OK) {
			sluice_limiter_destroy(b->lim);
			free(b);
			return rc;
		}
	}
	b->id = ++eng->next_id;
	b->refs = 1;
	snprintf(b->name, sizeof b->name, "%s", pl->name);
	snprintf(b->tier, sizeof b->tier, "%s", tier);
	b->spec = *ls;
	b->scope_mask = pl->scope_mask;
	b->per_class = pl->per_class;
	b->is_override = is_override;
	*out = b;
	return SLUICE_OK;
}

/* A binding of `old` that the new (limit, tier) may keep, or NULL. */
static struct binding *find_kept(const struct state *old, const struct sluice_policy_limit *pl,
				 const char *tier, const struct sluice_limit *ls)
{
	if (old == NULL)
		return NULL;
	for (uint32_t i = 0; i < old->spec->limit_count; i++) {
		const struct state_limit *sl = &old->limits[i];
		for (uint32_t t = 0; t <= old->spec->tier_count; t++) {
			struct binding *b = t == 0 ? sl->base : sl->tier[t - 1];
			if (b != NULL && strcmp(b->name, pl->name) == 0 && strcmp(b->tier, tier) == 0 &&
			    b->scope_mask == pl->scope_mask && b->per_class == pl->per_class &&
			    memcmp(&b->spec, ls, sizeof *ls) == 0)
				return b;
		}
	}
	return NULL;
}

/* An override binding of `old` equal to `ov` (same limit, scope, key,
 * numbers and expiry), or NULL. */
static struct binding *find_kept_override(const struct state *old, const struct sluice_policy_limit *pl,
					  const struct sluice_policy_override *ov,
					  const struct sluice_limit *ls)
{
	if (old == NULL)
		return NULL;
	for (uint32_t j = 0; j < old->spec->override_count; j++) {
		struct binding *b = old->overrides[j];
		if (strcmp(b->name, pl->name) == 0 && b->scope_mask == pl->scope_mask &&
		    b->per_class == pl->per_class && b->oscope == ov->scope &&
		    b->okey_len == ov->key_len && b->oexpires_ns == ov->expires_at_ns &&
		    memcmp(b->okey, ov->key, ov->key_len) == 0 && memcmp(&b->spec, ls, sizeof *ls) == 0)
			return b;
	}
	return NULL;
}

static void state_free(struct state *st, bool free_policy)
{
	if (st == NULL)
		return;
	const struct sluice_policy_spec *spec = st->spec;
	size_t cap = (size_t)spec->limit_count * (spec->tier_count + 1) + spec->override_count + 1;
	struct graveyard g = { calloc(cap, sizeof *g.lims), calloc(cap, sizeof *g.bindings), 0 };
	if (g.lims == NULL || g.bindings == NULL) {
		free(g.lims);
		free(g.bindings);
		g.lims = NULL;
		g.bindings = NULL;
	}
	for (uint32_t i = 0; i < spec->limit_count; i++) {
		binding_put(&g, st->limits[i].base);
		for (uint32_t t = 0; t < spec->tier_count; t++)
			binding_put(&g, st->limits[i].tier[t]);
	}
	if (st->overrides != NULL)
		for (uint32_t i = 0; i < spec->override_count; i++)
			binding_put(&g, st->overrides[i]);
	if (g.lims != NULL) {
		sluice__limiter_destroy_many(g.lims, g.n);
		for (size_t i = 0; i < g.n; i++)
			free(g.bindings[i]);
	}
	free(g.lims);
	free(g.bindings);
	free(st->overrides);
	if (free_policy)
		sluice_policy_destroy(st->policy);
	free(st);
}

/* Build a state for `policy`, keeping what `old` (may be NULL) can lend. */
static int state_build(struct sluice_engine *eng, struct sluice_policy *policy,
		       const struct state *old, struct state **out)
{
	const struct sluice_policy_spec *spec = sluice_policy_spec(policy);
	int rc = SLUICE_OK;
	uint32_t nconc = 0;

	for (uint32_t i = 0; i < spec->limit_count; i++)
		nconc += spec->limits[i].kind == SLUICE_POLICY_KIND_CONCURRENCY;
	if (nconc > SLUICE_ENGINE_MAX_SLOTS)
		return SLUICE_ETOOBIG; /* a decision could not report every slot */
	struct state *st = calloc(1, sizeof *st);
	if (st == NULL)
		return SLUICE_ENOMEM;
	st->policy = policy;
	st->spec = spec;
	if (spec->override_count != 0) {
		st->overrides = calloc(spec->override_count, sizeof *st->overrides);
		if (st->overrides == NULL) {
			free(st);
			return SLUICE_ENOMEM;
		}
	}
	/* Evaluation order: concurrency limits first (exact cancel), then the
	 * others in policy order. */
	uint32_t n = 0;
	for (uint32_t pass = 0; pass < 2; pass++)
		for (uint32_t i = 0; i < spec->limit_count; i++)
			if ((spec->limits[i].kind == SLUICE_POLICY_KIND_CONCURRENCY) == (pass == 0))
				st->order[n++] = i;

	for (uint32_t i = 0; i < spec->limit_count && rc == SLUICE_OK; i++) {
		const struct sluice_policy_limit *pl = &spec->limits[i];
		for (int t = -1; t < (int)spec->tier_count && rc == SLUICE_OK; t++) {
			if (t >= 0 && !pl->tiered)
				break;
			uint64_t count, burst;
			struct sluice_limit ls;
			rc = sluice_policy_limit_numbers(policy, i, t, &count, &burst);
			if (rc == SLUICE_OK)
				rc = sluice__engine_limit_spec(pl, count, burst, &ls);
			if (rc != SLUICE_OK)
				break;
			const char *tname = t < 0 ? "" : spec->tiers[t].name;
			struct binding *b = find_kept(old, pl, tname, &ls);
			if (b != NULL)
				b->refs++;
			else
				rc = binding_new(eng, spec, pl, tname, &ls, false, &b);
			if (rc != SLUICE_OK)
				break;
			if (t < 0)
				st->limits[i].base = b;
			else
				st->limits[i].tier[t] = b;
		}
	}
	for (uint32_t j = 0; j < spec->override_count && rc == SLUICE_OK; j++) {
		const struct sluice_policy_override *ov = &spec->overrides[j];
		const struct sluice_policy_limit *pl = &spec->limits[ov->limit];
		struct sluice_limit ls;
		uint64_t burst = pl->kind == SLUICE_POLICY_KIND_GCRA ? ov->burst : ov->count;
		rc = sluice__engine_limit_spec(pl, ov->count, burst != 0 ? burst : ov->count, &ls);
		if (rc != SLUICE_OK)
			break;
		struct binding *b = find_kept_override(old, pl, ov, &ls);
		if (b != NULL) {
			b->refs++;
		} else {
			rc = binding_new(eng, spec, pl, "", &ls, true, &b);
			if (rc != SLUICE_OK)
				break;
			b->oscope = ov->scope;
			b->okey_len = ov->key_len;
			b->oexpires_ns = ov->expires_at_ns;
			memcpy(b->okey, ov->key, ov->key_len);
		}
		st->overrides[j] = b;
	}
	if (rc != SLUICE_OK) {
		state_free(st, false);
		return rc;
	}
	*out = st;
	return SLUICE_OK;
}

/* ---- create / destroy ---- */

/* Version 1 of the options: everything before the Redis fields. */
#define ENGINE_OPTIONS_V1_SIZE offsetof(struct sluice_engine_options, redis)

/* An engine that only carries its Redis backend (engine_redis.c). */
static int create_on_redis(struct sluice_engine **out, struct sluice_policy *policy,
			   const struct sluice_engine_options *o)
{
	struct sluice_engine *eng = calloc(1, sizeof *eng);
	if (eng == NULL)
		return SLUICE_ENOMEM;
	int rc = sluice__rengine_create(&eng->redis, policy, o);
	if (rc != SLUICE_OK) {
		free(eng);
		return rc;
	}
	*out = eng;
	return SLUICE_OK;
}

int sluice_engine_create(struct sluice_engine **out, struct sluice_policy *policy,
			 const struct sluice_engine_options *opts)
{
	struct sluice_engine_options o;

	if (out == NULL)
		return SLUICE_EINVAL;
	*out = NULL;
	if (policy == NULL)
		return SLUICE_EINVAL;
	memset(&o, 0, sizeof o);
	if (opts != NULL) {
		if (opts->size != sizeof o && opts->size != ENGINE_OPTIONS_V1_SIZE)
			return SLUICE_EINVAL;
		memcpy(&o, opts, opts->size);
	}
	if (o.redis != NULL)
		return create_on_redis(out, policy, &o);
	if ((o.flags & ~SLUICE_ENGINE_CALLER_REGISTERS_RCU) != 0 || o.reserved_ != 0 ||
	    o.redis_connections != 0 || o.reserved2_ != 0 || o.redis_tag_scope != NULL)
		return SLUICE_EINVAL;
	int rc = sluice__rcu_thread_enter(o.flags & SLUICE_ENGINE_CALLER_REGISTERS_RCU);
	if (rc != SLUICE_OK)
		return rc;
	struct sluice_engine *eng = calloc(1, sizeof *eng);
	if (eng == NULL)
		return SLUICE_ENOMEM;
	if (pthread_mutex_init(&eng->lock, NULL) != 0) {
		free(eng);
		return SLUICE_ENOMEM;
	}
	eng->flags = o.flags;
	eng->max_keys = o.max_keys;
	eng->sweep_interval_ns = o.sweep_interval_ns;
	struct state *st;
	rc = state_build(eng, policy, NULL, &st);
	if (rc != SLUICE_OK) {
		pthread_mutex_destroy(&eng->lock);
		free(eng);
		return rc;
	}
	st->generation = 1;
	/* Not shared yet; whoever receives *out is ordered by the caller's own
	 * synchronisation. */
	atomic_init(&eng->state, st); /* relaxed (initialisation): why above */
	*out = eng;
	return SLUICE_OK;
}

void sluice_engine_destroy(struct sluice_engine *eng)
{
	if (eng == NULL)
		return;
	if (eng->redis != NULL) {
		sluice__rengine_destroy(eng->redis);
		free(eng);
		return;
	}
	(void)sluice__rcu_thread_enter(eng->flags & SLUICE_ENGINE_CALLER_REGISTERS_RCU);
	/* relaxed: no concurrent user by contract. */
	state_free(atomic_load_explicit(&eng->state, memory_order_relaxed), true); /* relaxed: why above */
	pthread_mutex_destroy(&eng->lock);
	free(eng);
}

uint64_t sluice_engine_generation(const struct sluice_engine *eng)
{
	if (eng == NULL)
		return 0;
	if (eng->redis != NULL)
		return sluice__rengine_generation(eng->redis);
	/* The state may be freed right after we read its generation, so read
	 * it inside a read-side section. */
	if (sluice__rcu_thread_enter(eng->flags & SLUICE_ENGINE_CALLER_REGISTERS_RCU) != SLUICE_OK)
		return 0;
	rcu_read_lock();
	/* acquire: pairs with the acq_rel exchange in reload (publication of
	 * the state's fields). */
	struct state *st = atomic_load_explicit(&((struct sluice_engine *)(uintptr_t)eng)->state, /* acquire: why above */
						memory_order_acquire);
	uint64_t g = st->generation;
	rcu_read_unlock();
	return g;
}

/* ---- per-request helpers ---- */

static inline int enter(struct sluice_engine *eng)
{
	return sluice__rcu_thread_enter(eng->flags & SLUICE_ENGINE_CALLER_REGISTERS_RCU);
}

static inline struct state *read_lock(struct sluice_engine *eng)
{
	rcu_read_lock();
	/* acquire: pairs with the acq_rel exchange in sluice_engine_reload():
	 * the state and everything it points to were written before. */
	struct state *st = atomic_load_explicit(&eng->state, memory_order_acquire); /* acquire: why above */
	TSAN_ACQUIRE(st);
	return st;
}

static inline void read_unlock(struct sluice_engine *eng)
{
#ifdef ENGINE_TSAN
	/* Our reads happen-before the frees after the next grace period. */
	TSAN_RELEASE(&eng->tsan_gp);
#else
	(void)eng;
#endif
	rcu_read_unlock();
}

/* Largest key: the limiter's. */
#define KEY_MAX SLUICE_LIMITER_MAX_KEY

static inline bool has_identity(const struct sluice_engine_request *req, uint32_t scope)
{
	return scope < req->identity_count && req->identities[scope].bytes != NULL;
}

/* The limiter key of a limit for a request: each scope's identity as a
 * 2-byte little-endian length and its bytes, in scope order, then the class
 * name for a per-class limit. Returns the length, 0 when a scope has no
 * identity (the limit does not apply), or SIZE_MAX when it is too long. */
static size_t build_key(const struct sluice_policy_spec *spec, uint32_t scope_mask, bool per_class,
			uint32_t class_id, const struct sluice_engine_request *req,
			unsigned char *key)
{
	size_t n = 0;

	for (uint32_t s = 0; s < spec->scope_count; s++) {
		if (!(scope_mask & (UINT32_C(1) << s)))
			continue;
		if (!has_identity(req, s))
			return 0;
		size_t len = req->identities[s].len;
		if (n + 2 + len > KEY_MAX)
			return SIZE_MAX;
		key[n++] = (unsigned char)(len & 0xff);
		key[n++] = (unsigned char)(len >> 8);
		memcpy(key + n, req->identities[s].bytes, len);
		n += len;
	}
	if (per_class) {
		const char *name = spec->classes[class_id];
		size_t len = strlen(name);
		if (n + len > KEY_MAX)
			return SIZE_MAX;
		memcpy(key + n, name, len);
		n += len;
	}
	return n == 0 ? SIZE_MAX : n;
}

/* The binding that holds limit i's state for this request: an override in
 * force, else the tier's, else the base. *overridden tells which. */
static struct binding *binding_for(const struct state *st, uint32_t i,
				   const struct sluice_engine_request *req, bool *overridden)
{
	const struct sluice_policy_limit *pl = &st->spec->limits[i];

	*overridden = false;
	if (st->spec->override_count != 0) {
		for (uint32_t s = 0; s < st->spec->scope_count; s++) {
			if (!(pl->scope_mask & (UINT32_C(1) << s)) || !has_identity(req, s))
				continue;
			int j = sluice_policy_override_find(st->policy, i, s, req->identities[s].bytes,
							    req->identities[s].len, req->now_ns);
			if (j >= 0) {
				*overridden = true;
				return st->overrides[j];
			}
		}
	}
	if (req->tier >= 0 && st->limits[i].tier[req->tier] != NULL)
		return st->limits[i].tier[req->tier];
	return st->limits[i].base;
}

static int validate(const struct state *st, const struct sluice_engine_request *req, bool need_route)
{
	if (req->identity_count > 0 && req->identities == NULL)
		return SLUICE_EINVAL;
	if (req->tier < SLUICE_POLICY_NO_TIER || (req->tier >= 0 && (uint32_t)req->tier >= st->spec->tier_count))
		return SLUICE_EINVAL;
	if (need_route && (req->method == NULL || req->path == NULL))
		return SLUICE_EINVAL;
	for (uint32_t s = 0; s < req->identity_count; s++)
		if (req->identities[s].len > SLUICE_ENGINE_MAX_IDENTITY)
			return SLUICE_EKEY;
	return SLUICE_OK;
}

static int first_scope(uint32_t mask)
{
	return mask == 0 ? -1 : __builtin_ctz(mask);
}

void sluice__engine_name_copy(char *dst, const char *src)
{
	size_t len = strlen(src);
	if (len > SLUICE_POLICY_MAX_NAME)
		len = SLUICE_POLICY_MAX_NAME;
	memcpy(dst, src, len);
	dst[len] = '\0';
}

bool sluice__engine_over_warn(const struct sluice_policy_limit *pl, const struct sluice_decision *d)
{
	if (pl->warn_percent == 0 || d->limit == 0)
		return false;
	uint64_t used = d->remaining < d->limit ? d->limit - d->remaining : 0;
	/* used / limit > warn / 100, without overflow (counts < 2^40). */
	return (unsigned __int128)used * 100 > (unsigned __int128)d->limit * pl->warn_percent;
}

void sluice__engine_fill_governing(const struct sluice_policy_spec *spec, uint32_t i,
				   const struct sluice_decision *d, struct sluice_engine_decision *out)
{
	const struct sluice_policy_limit *pl = &spec->limits[i];
	bool degraded = out->d.degraded;

	out->d = *d;
	out->d.degraded = out->d.degraded || degraded;
	out->d.limit_index = i;
	out->governed = true;
	out->scope = first_scope(pl->scope_mask);
	sluice__engine_name_copy(out->limit_name, pl->name);
}

/* ---- check ---- */

int sluice_engine_check(struct sluice_engine *eng, const struct sluice_engine_request *req,
			struct sluice_engine_decision *out)
{
	if (eng == NULL || req == NULL || out == NULL)
		return SLUICE_EINVAL;
	if (eng->redis != NULL)
		return sluice__rengine_check(eng->redis, req, out);
	int rc = enter(eng);
	if (rc != SLUICE_OK)
		return rc;

	struct sluice__limiter_hold holds[SLUICE_POLICY_MAX_LIMITS];
	struct sluice_decision d[SLUICE_POLICY_MAX_LIMITS];
	struct binding *used[SLUICE_POLICY_MAX_LIMITS];
	uint32_t done[SLUICE_POLICY_MAX_LIMITS];
	unsigned char key[KEY_MAX], scratch[1024];
	uint16_t key_off[SLUICE_POLICY_MAX_LIMITS], key_len[SLUICE_POLICY_MAX_LIMITS];
	uint32_t ndone = 0;

	memset(out, 0, offsetof(struct sluice_engine_decision, limit_name) + 1);
	out->scope = -1;
	out->warn_limit = UINT32_MAX;

	struct state *st = read_lock(eng);
	const struct sluice_policy_spec *spec = st->spec;
	rc = validate(st, req, true);
	if (rc != SLUICE_OK)
		goto unlock;
	int cls = sluice_policy_match(st->policy, req->method, req->method_len, req->path, req->path_len);
	if (cls < 0) {
		rc = cls;
		goto unlock;
	}
	out->class_id = (uint32_t)cls;
	out->generation = st->generation;
	uint32_t mask = sluice_policy_class_limits(st->policy, (uint32_t)cls);

	/* Keys first: an over-long identity is an error before anything is
	 * consumed. They are kept in `scratch` when they fit (the usual case:
	 * a few short identities), else rebuilt below. */
	size_t used_scratch = 0;
	for (uint32_t n = 0; n < spec->limit_count; n++) {
		uint32_t i = st->order[n];
		if (!(mask & (UINT32_C(1) << i)))
			continue;
		const struct sluice_policy_limit *pl = &spec->limits[i];
		size_t klen = build_key(spec, pl->scope_mask, pl->per_class, (uint32_t)cls, req, key);
		if (klen == SIZE_MAX) {
			rc = SLUICE_EKEY;
			goto unlock;
		}
		if (klen == 0) {
			mask &= ~(UINT32_C(1) << i); /* a scope without identity */
			continue;
		}
		key_len[i] = (uint16_t)klen;
		if (used_scratch + klen <= sizeof scratch) {
			memcpy(scratch + used_scratch, key, klen);
			key_off[i] = (uint16_t)used_scratch;
			used_scratch += klen;
		} else {
			key_off[i] = UINT16_MAX;
		}
	}
	out->applied = mask;

	bool denied = false;
	for (uint32_t n = 0; n < spec->limit_count && !denied; n++) {
		uint32_t i = st->order[n];
		if (!(mask & (UINT32_C(1) << i)))
			continue;
		const struct sluice_policy_limit *pl = &spec->limits[i];
		const unsigned char *k = scratch + key_off[i];
		size_t klen = key_len[i];
		if (key_off[i] == UINT16_MAX) {
			build_key(spec, pl->scope_mask, pl->per_class, (uint32_t)cls, req, key);
			k = key;
		}
		bool overridden;
		struct binding *b = binding_for(st, i, req, &overridden);
		struct sluice_decision di;
		int degraded = sluice__limiter_reserve(b->lim, k, klen, req->cost, req->now_ns, &di,
						       &holds[ndone]);
		if (degraded)
			out->d.degraded = true;
		if (!di.allowed) {
			/* Refused: undo every reservation taken, newest first. */
			for (uint32_t j = ndone; j-- > 0;)
				sluice__limiter_cancel(used[j]->lim, &holds[j]);
			ndone = 0;
			sluice__engine_fill_governing(st->spec, i, &di, out);
			denied = true;
			break;
		}
		if (degraded)
			continue; /* fail open: this limit could not be evaluated */
		d[ndone] = di;
		used[ndone] = b;
		done[ndone++] = i;
	}
	if (!denied) {
		out->d.allowed = true;
		/* Governing: least remaining, then the shorter reset, then
		 * the lower index. */
		uint32_t best = UINT32_MAX;
		for (uint32_t j = 0; j < ndone; j++) {
			if (best == UINT32_MAX || d[j].remaining < d[best].remaining ||
			    (d[j].remaining == d[best].remaining &&
			     (d[j].reset_ns < d[best].reset_ns ||
			      (d[j].reset_ns == d[best].reset_ns && done[j] < done[best]))))
				best = j;
			if (!out->warn && sluice__engine_over_warn(&spec->limits[done[j]], &d[j])) {
				out->warn = true;
				out->warn_limit = done[j];
			}
			if (req->cost > 0 && holds[j].handle != SLUICE_SLOT_NONE &&
			    out->slot_count < SLUICE_ENGINE_MAX_SLOTS) {
				struct sluice_engine_slot *s = &out->slots[out->slot_count++];
				s->limiter_id = used[j]->id;
				s->handle = holds[j].handle;
				s->limit = done[j];
			}
		}
		if (best != UINT32_MAX) {
			sluice__engine_fill_governing(st->spec, done[best], &d[best], out);
			out->d.allowed = true;
			out->d.reason = SLUICE_REASON_NONE;
			out->d.retry_after_ns = 0;
		} else {
			out->d.limit_index = UINT32_MAX;
			out->d.remaining = UINT64_MAX;
		}
	}
unlock:
	read_unlock(eng);
	return rc;
}

/* ---- release ---- */

static struct binding *binding_by_id(const struct state *st, uint64_t id)
{
	for (uint32_t i = 0; i < st->spec->limit_count; i++) {
		const struct state_limit *sl = &st->limits[i];
		if (sl->base != NULL && sl->base->id == id)
			return sl->base;
		for (uint32_t t = 0; t < st->spec->tier_count; t++)
			if (sl->tier[t] != NULL && sl->tier[t]->id == id)
				return sl->tier[t];
	}
	for (uint32_t j = 0; j < st->spec->override_count; j++)
		if (st->overrides[j]->id == id)
			return st->overrides[j];
	return NULL;
}

int sluice_engine_release(struct sluice_engine *eng, const struct sluice_engine_request *req,
			  struct sluice_engine_decision *decision)
{
	if (eng == NULL || req == NULL || decision == NULL ||
	    decision->slot_count > SLUICE_ENGINE_MAX_SLOTS)
		return SLUICE_EINVAL;
	if (eng->redis != NULL)
		return sluice__rengine_release(eng->redis, req, decision);
	int rc = enter(eng);
	if (rc != SLUICE_OK)
		return rc;
	unsigned char key[KEY_MAX];
	struct state *st = read_lock(eng);
	const struct sluice_policy_spec *spec = st->spec;
	int cls = sluice__engine_release_class(st->policy, spec->class_count, st->generation, req,
					       decision);
	for (uint32_t k = 0; k < decision->slot_count; k++) {
		const struct sluice_engine_slot *s = &decision->slots[k];
		struct binding *b = binding_by_id(st, s->limiter_id);
		int r;
		if (b == NULL) {
			r = SLUICE_ESTALE; /* its limit changed or was removed */
		} else {
			size_t klen = build_key(spec, b->scope_mask, b->per_class, (uint32_t)cls, req, key);
			if (klen == 0 || klen == SIZE_MAX)
				r = SLUICE_ESTALE;
			else
				r = sluice_limiter_release(b->lim, key, klen, s->handle);
			if (r == SLUICE_ENOTFOUND)
				r = SLUICE_ESTALE;
		}
		if (r != SLUICE_OK && (rc == SLUICE_OK || r == SLUICE_EDOUBLE))
			rc = r;
	}
	read_unlock(eng);
	decision->slot_count = 0;
	return rc;
}

/* ---- reload ---- */

int sluice_engine_reload(struct sluice_engine *eng, struct sluice_policy *policy)
{
	if (eng == NULL || policy == NULL)
		return SLUICE_EINVAL;
	if (eng->redis != NULL)
		return sluice__rengine_reload(eng->redis, policy);
	int rc = enter(eng);
	if (rc != SLUICE_OK)
		return rc;
	pthread_mutex_lock(&eng->lock);
	/* relaxed: only reloads (serialized by the lock) store the pointer. */
	struct state *old = atomic_load_explicit(&eng->state, memory_order_relaxed); /* relaxed: why above */
	const struct sluice_policy_spec *ns = sluice_policy_spec(policy);
	if (ns->scope_count != old->spec->scope_count) {
		rc = SLUICE_EINVAL;
	} else {
		for (uint32_t s = 0; s < ns->scope_count; s++)
			if (strcmp(ns->scopes[s], old->spec->scopes[s]) != 0)
				rc = SLUICE_EINVAL;
	}
	struct state *st = NULL;
	if (rc == SLUICE_OK)
		rc = state_build(eng, policy, old, &st);
	if (rc != SLUICE_OK) {
		pthread_mutex_unlock(&eng->lock);
		return rc;
	}
	st->generation = old->generation + 1;
	TSAN_RELEASE(st);
	/* acq_rel: release publishes the new state's fields to readers'
	 * acquire loads (rcu_xchg_pointer's contract); acquire is not needed
	 * for `old` (we own it under the lock) but costs nothing here. */
	atomic_exchange_explicit(&eng->state, st, memory_order_acq_rel); /* acq_rel: why above */
	/* Wait for every reader that may still use `old`. */
	synchronize_rcu();
#ifdef ENGINE_TSAN
	TSAN_ACQUIRE(&eng->tsan_gp);
#endif
	state_free(old, true);
	pthread_mutex_unlock(&eng->lock);
	return SLUICE_OK;
}

int sluice_engine_sweep(struct sluice_engine *eng, uint64_t now_ns, size_t budget_entries)
{
	if (eng == NULL)
		return SLUICE_EINVAL;
	if (eng->redis != NULL)
		return SLUICE_OK; /* Redis expires idle keys itself */
	int rc = enter(eng);
	if (rc != SLUICE_OK)
		return rc;
	pthread_mutex_lock(&eng->lock);
	/* relaxed: the lock excludes reloads, the only writers. */
	struct state *st = atomic_load_explicit(&eng->state, memory_order_relaxed); /* relaxed: why above */
	for (uint32_t i = 0; i < st->spec->limit_count; i++) {
		struct state_limit *sl = &st->limits[i];
		for (uint32_t t = 0; t <= st->spec->tier_count; t++) {
			struct binding *b = t == 0 ? sl->base : sl->tier[t - 1];
			if (b == NULL)
				continue;
			int r = sluice_limiter_sweep(b->lim, now_ns, budget_entries, NULL);
			if (r != SLUICE_OK && rc == SLUICE_OK)
				rc = r;
		}
	}
	for (uint32_t j = 0; j < st->spec->override_count; j++) {
		int r = sluice_limiter_sweep(st->overrides[j]->lim, now_ns, budget_entries, NULL);
		if (r != SLUICE_OK && rc == SLUICE_OK)
			rc = r;
	}
	pthread_mutex_unlock(&eng->lock);
	return rc;
}

/* ---- usage ---- */

int sluice_engine_usage(struct sluice_engine *eng, const struct sluice_engine_request *req,
			struct sluice_engine_usage *out, size_t cap, size_t *count)
{
	if (eng == NULL || req == NULL || count == NULL || (cap > 0 && out == NULL))
		return SLUICE_EINVAL;
	*count = 0;
	if (eng->redis != NULL)
		return sluice__rengine_usage(eng->redis, req, out, cap, count);
	int rc = enter(eng);
	if (rc != SLUICE_OK)
		return rc;
	unsigned char key[KEY_MAX];
	size_t n = 0;
	struct state *st = read_lock(eng);
	const struct sluice_policy_spec *spec = st->spec;
	rc = validate(st, req, false);
	if (rc != SLUICE_OK)
		goto unlock;
	int cls = sluice__engine_usage_class(st->policy, req);
	if (cls < 0) {
		rc = cls;
		goto unlock;
	}
	for (uint32_t i = 0; i < spec->limit_count; i++) {
		const struct sluice_policy_limit *pl = &spec->limits[i];
		size_t klen = build_key(spec, pl->scope_mask, pl->per_class, (uint32_t)cls, req, key);
		if (klen == SIZE_MAX) {
			rc = SLUICE_EKEY;
			goto unlock;
		}
		if (klen == 0)
			continue;
		if (n < cap) {
			bool overridden;
			struct binding *b = binding_for(st, i, req, &overridden);
			struct sluice_decision d;
			struct sluice__limiter_hold hold;
			sluice__limiter_reserve(b->lim, key, klen, 0, req->now_ns, &d, &hold);
			struct sluice_engine_usage *u = &out[n];
			memset(u, 0, sizeof *u);
			u->limit = i;
			u->kind = pl->kind;
			u->reason = pl->reason;
			u->overridden = overridden;
			u->period_ns = pl->period_ns;
			u->count = d.limit;
			u->remaining = d.remaining;
			u->used = d.remaining < d.limit ? d.limit - d.remaining : 0;
			u->reset_ns = d.reset_ns;
			u->warn = sluice__engine_over_warn(pl, &d);
			sluice__engine_name_copy(u->name, pl->name);
		}
		n++;
	}
	*count = n;
	if (n > cap)
		rc = SLUICE_ETRUNC;
unlock:
	read_unlock(eng);
	return rc;
}

/* ---- top-N ---- */

struct top_ctx {
	struct sluice_engine_top *heap; /* min-heap on (used, then key desc) */
	size_t cap;
	size_t n;
};

/* a "less busy" than b: lower usage, or equal usage and a larger key. */
static int top_cmp(const struct sluice_engine_top *a, const struct sluice_engine_top *b)
{
	if (a->used != b->used)
		return a->used < b->used ? -1 : 1;
	size_t la = SLUICE_MIN((size_t)a->key_len, (size_t)SLUICE_ENGINE_TOP_KEY);
	size_t lb = SLUICE_MIN((size_t)b->key_len, (size_t)SLUICE_ENGINE_TOP_KEY);
	int c = memcmp(a->key, b->key, SLUICE_MIN(la, lb));
	if (c == 0)
		c = la < lb ? -1 : la > lb ? 1 : 0;
	return -c;
}

static void sift_down(struct sluice_engine_top *h, size_t n, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < n && top_cmp(&h[l], &h[m]) < 0)
			m = l;
		if (r < n && top_cmp(&h[r], &h[m]) < 0)
			m = r;
		if (m == i)
			return;
		struct sluice_engine_top t = h[i];
		h[i] = h[m];
		h[m] = t;
		i = m;
	}
}

static void sift_up(struct sluice_engine_top *h, size_t i)
{
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (top_cmp(&h[i], &h[p]) >= 0)
			return;
		struct sluice_engine_top t = h[i];
		h[i] = h[p];
		h[p] = t;
		i = p;
	}
}

static void top_visit(void *user, const void *key, size_t key_len, const struct sluice_decision *d)
{
	struct top_ctx *c = user;
	struct sluice_engine_top rec;

	rec.count = d->limit;
	rec.remaining = d->remaining;
	rec.used = d->remaining < d->limit ? d->limit - d->remaining : 0;
	if (rec.used == 0)
		return; /* idle keys are not "busy" */
	rec.key_len = (uint32_t)key_len;
	memset(rec.key, 0, sizeof rec.key);
	memcpy(rec.key, key, SLUICE_MIN(key_len, (size_t)SLUICE_ENGINE_TOP_KEY));
	if (c->n < c->cap) {
		c->heap[c->n] = rec;
		sift_up(c->heap, c->n++);
	} else if (top_cmp(&rec, &c->heap[0]) > 0) {
		c->heap[0] = rec;
		sift_down(c->heap, c->n, 0);
	}
}

int sluice_engine_top(struct sluice_engine *eng, uint32_t limit, int32_t tier, uint64_t now_ns,
		      struct sluice_engine_top *out, size_t n, size_t *count)
{
	if (eng == NULL || count == NULL || (n > 0 && out == NULL))
		return SLUICE_EINVAL;
	*count = 0;
	if (eng->redis != NULL)
		return SLUICE_EUNSUPPORTED; /* no table to walk: keys live on Redis */
	int rc = enter(eng);
	if (rc != SLUICE_OK)
		return rc;
	struct state *st = read_lock(eng);
	if (limit >= st->spec->limit_count || tier < SLUICE_POLICY_NO_TIER ||
	    (tier >= 0 && (uint32_t)tier >= st->spec->tier_count)) {
		rc = SLUICE_EINVAL;
		goto unlock;
	}
	struct binding *b = st->limits[limit].base;
	if (tier >= 0 && st->limits[limit].tier[tier] != NULL)
		b = st->limits[limit].tier[tier];
	struct top_ctx c = { out, n, 0 };
	if (n > 0)
		sluice__limiter_foreach(b->lim, now_ns, top_visit, &c);
	/* Heap sort: repeatedly move the least busy to the end. */
	for (size_t m = c.n; m > 1; m--) {
		struct sluice_engine_top t = out[0];
		out[0] = out[m - 1];
		out[m - 1] = t;
		sift_down(out, m - 1, 0);
	}
	*count = c.n;
unlock:
	read_unlock(eng);
	return rc;
}

int sluice__engine_redis_stats(struct sluice_engine *eng, struct sluice_redis_stats *out)
{
	if (eng == NULL || eng->redis == NULL)
		return SLUICE_EINVAL;
	return sluice__rengine_backend_stats(eng->redis, out);
}
