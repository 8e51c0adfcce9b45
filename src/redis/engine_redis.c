/*
 * engine_redis.c - the policy engine on Redis: sluice_engine_* calls of an
 * engine created with options.redis (docs/redis.md, "Limiter and engine on
 * Redis").
 *
 * Evaluation. The request is matched and its applicable limits found exactly
 * as in engine.c (route -> class -> class limits whose scopes all have an
 * identity; tier and override pick the numbers in force). Each applicable
 * limit becomes one scope of ONE sluice_redis_admit_scopes() call, with one
 * limit per scope, in evaluation order: the backend decides all of them
 * all-or-nothing, atomically on the server, in one round trip, and names the
 * first denier (else the least remaining, ties to the shorter reset, then
 * the lower tie rank: each scope is ranked by its policy index with
 * sluice__redis_set_tie_rank(), since evaluation order puts concurrency
 * limits first), which is engine.c's governing rule; the flat limit index of
 * its answer maps back to the policy's limit. The in-process engine needs
 * receipts and cancels to get all-or-nothing across limiters; the script's
 * atomicity gives it exactly (a refused request consumes nothing, ever).
 *
 * Why one limit per scope: the backend names a limit's field by its index in
 * its scope, so a scope's limits must not depend on the request; the set of
 * applicable limits does (class, missing identities), so each limit gets a
 * key of its own. The key carries everything that makes in-process state
 * "the same limiter" across a reload (docs/redis.md, "Key naming"): scopes
 * with their identities, class for per-class limits, name, tier or override,
 * kind and numbers. An unchanged limit maps to the same keys after a reload
 * and keeps its state; a changed one maps to new keys and starts full.
 *
 * Soft warnings need every applicable limit's remaining after the decision;
 * the admission answers only for the governing one, so when a limit of the
 * request has "warn", a read-only peek per limit follows the admission in
 * the same pipelined batch (still one round trip).
 *
 * State. An immutable `struct rstate` (policy, per limit and tier the
 * backend limit and key segment, overrides) is published under `lock` with
 * a reference count: a request takes a reference for its duration (the
 * mutex is held for two counter updates, never across I/O), a reload swaps
 * the pointer and the last reference frees the old state and its policy. So
 * reload never waits for a request in flight, and a request in flight
 * finishes on the policy it started with.
 */
#include "redis/redis_backend_internal.h"
#include "redis/redis_rank_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util_internal.h"

#define KEY_MAX SLUICE_LIMITER_MAX_KEY
/* Key segment of a binding: ":L=<name>:T=<tier>:N=<k>,<count>,<period>,
 * <burst>,<lease>,<retry>" or with ":O=<scope>@<expires>" instead of the
 * tier: names <= 31 bytes, six decimals <= 20 bytes each. */
#define SEG_MAX 224
/* Backend requests per probe batch. */
#define PROBE_CHUNK 64

/* One (limit, tier) or one override: the backend limit and its key segment. */
struct rbind {
	struct sluice_limit spec;
	uint64_t id;      /* FNV-1a of seg: the same for an unchanged limit across reloads */
	uint32_t seg_len; /* 0: no such binding (a tier of an untiered limit) */
	char seg[SEG_MAX];
};

struct rstate {
	uint32_t refs; /* under sluice__rengine.lock */
	uint64_t generation;
	struct sluice_policy *policy;
	const struct sluice_policy_spec *spec;
	uint32_t order[SLUICE_POLICY_MAX_LIMITS]; /* engine.c's evaluation order */
	struct rbind *base;      /* [limit_count] */
	struct rbind *tiers;     /* [limit_count * tier_count] */
	struct rbind *overrides; /* [override_count] */
};

struct sluice__rengine {
	pthread_mutex_t lock;        /* cur and every state's refs */
	pthread_mutex_t reload_lock; /* one reload at a time */
	struct rstate *cur;
	struct sluice__rpool *pool;
	int32_t tag_scope; /* scope id of the hash tag, -1: each limit's first scope */
};

/* ---- keys ---- */

/* Append s[0..n) to key (at *len), %XX-escaping every byte that is not
 * printable ASCII or is one of the key's syntax characters: '%', '{', '}'
 * (the hash tag), ':' and '=' (segments). False when it does not fit. */
static bool put_escaped(unsigned char *key, size_t *len, const void *s, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p = s;
	size_t l = *len;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = p[i];
		bool plain = c > 0x20 && c < 0x7f && c != '%' && c != '{' && c != '}' && c != ':' &&
			     c != '=';
		if (l + (plain ? 1 : 3) > KEY_MAX)
			return false;
		if (plain) {
			key[l++] = c;
		} else {
			key[l++] = '%';
			key[l++] = (unsigned char)hex[c >> 4];
			key[l++] = (unsigned char)hex[c & 15];
		}
	}
	*len = l;
	return true;
}

static bool put_raw(unsigned char *key, size_t *len, const void *s, size_t n)
{
	if (*len + n > KEY_MAX)
		return false;
	memcpy(key + *len, s, n);
	*len += n;
	return true;
}

static bool has_identity(const struct sluice_engine_request *req, uint32_t scope)
{
	return scope < req->identity_count && req->identities[scope].bytes != NULL;
}

/* "<scope name>=<escaped identity>" */
static bool put_scope(unsigned char *key, size_t *len, const struct sluice_policy_spec *spec,
		      const struct sluice_engine_request *req, uint32_t s)
{
	const char *name = spec->scopes[s];
	return put_raw(key, len, name, strlen(name)) && put_raw(key, len, "=", 1) &&
	       put_escaped(key, len, req->identities[s].bytes, req->identities[s].len);
}

/*
 * The Redis key (after the backend's key_prefix) of limit i bound to `b`
 * for this request:
 *   "{" tag "}" (":" scope "=" identity)* [":C=" class] segment
 * tag: the tag scope's "<scope>=<identity>" when the engine has one, else
 * the limit's first scope's, else (a limit keyed by class only) "C=<class>".
 * Returns the length; 0: the limit does not apply (a scope without
 * identity); SIZE_MAX: too long (SLUICE_EKEY); SIZE_MAX - 1: the engine's
 * tag scope has no identity in a request this limit applies to
 * (SLUICE_EINVAL).
 */
static size_t build_key(const struct sluice__rengine *re, const struct rstate *st, uint32_t i,
			uint32_t cls, const struct rbind *b, const struct sluice_engine_request *req,
			unsigned char *key)
{
	const struct sluice_policy_spec *spec = st->spec;
	const struct sluice_policy_limit *pl = &spec->limits[i];
	size_t n = 0;
	int first = -1;

	for (uint32_t s = 0; s < spec->scope_count; s++) {
		if (!(pl->scope_mask & (UINT32_C(1) << s)))
			continue;
		if (!has_identity(req, s))
			return 0;
		if (first < 0)
			first = (int)s;
	}
	bool ok = put_raw(key, &n, "{", 1);
	if (re->tag_scope >= 0) {
		if (!has_identity(req, (uint32_t)re->tag_scope))
			return SIZE_MAX - 1;
		ok = ok && put_scope(key, &n, spec, req, (uint32_t)re->tag_scope);
	} else if (first >= 0) {
		ok = ok && put_scope(key, &n, spec, req, (uint32_t)first);
	} else {
		const char *c = spec->classes[cls];
		ok = ok && put_raw(key, &n, "C=", 2) && put_raw(key, &n, c, strlen(c));
	}
	ok = ok && put_raw(key, &n, "}", 1);
	for (uint32_t s = 0; s < spec->scope_count && ok; s++)
		if (pl->scope_mask & (UINT32_C(1) << s))
			ok = put_raw(key, &n, ":", 1) && put_scope(key, &n, spec, req, s);
	if (pl->per_class) {
		const char *c = spec->classes[cls];
		ok = ok && put_raw(key, &n, ":C=", 3) && put_raw(key, &n, c, strlen(c));
	}
	ok = ok && put_raw(key, &n, b->seg, b->seg_len);
	return ok ? n : SIZE_MAX;
}

/* ---- states ---- */

static void state_free(struct rstate *st, bool free_policy)
{
	if (st == NULL)
		return;
	if (free_policy)
		sluice_policy_destroy(st->policy);
	free(st->base);
	free(st->tiers);
	free(st->overrides);
	free(st);
}

static int bind_init(struct rbind *b, const struct sluice_policy_spec *spec,
		     const struct sluice_policy_limit *pl, uint64_t count, uint64_t burst,
		     const char *tier, const struct sluice_policy_override *ov)
{
	int rc = sluice__engine_limit_spec(pl, count, burst, &b->spec);
	if (rc != SLUICE_OK)
		return rc;
	char who[96];
	if (ov != NULL)
		snprintf(who, sizeof who, ":O=%s@%llu", spec->scopes[ov->scope],
			 (unsigned long long)ov->expires_at_ns);
	else if (tier[0] != '\0')
		snprintf(who, sizeof who, ":T=%s", tier);
	else
		who[0] = '\0';
	int len = snprintf(b->seg, sizeof b->seg, ":L=%s%s:N=%u,%llu,%llu,%llu,%llu,%llu", pl->name, who,
			   (unsigned)pl->kind, (unsigned long long)count, (unsigned long long)pl->period_ns,
			   (unsigned long long)burst, (unsigned long long)pl->lease_ns,
			   (unsigned long long)pl->retry_after_ns);
	if (len < 0 || (size_t)len >= sizeof b->seg)
		return SLUICE_ETOOBIG; /* cannot happen within the policy's ceilings */
	b->seg_len = (uint32_t)len;
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a 64 */
	for (int k = 0; k < len; k++)
		h = (h ^ (unsigned char)b->seg[k]) * 0x100000001b3ull;
	b->id = h;
	return SLUICE_OK;
}

/* Ask the backend whether it evaluates every binding's limit: read-only
 * peeks of one key, pipelined; validation happens before anything is sent,
 * so the answer holds whether the server is up or not. */
static int probe(struct sluice__rengine *re, struct rbind **list, size_t n)
{
	struct sluice_redis_scope sc[PROBE_CHUNK];
	struct sluice_redis_request rq[PROBE_CHUNK];
	struct sluice_decision d[PROBE_CHUNK];
	int rc = SLUICE_OK;

	for (size_t base = 0; base < n && rc == SLUICE_OK; base += PROBE_CHUNK) {
		size_t g = SLUICE_MIN(n - base, (size_t)PROBE_CHUNK);
		for (size_t j = 0; j < g; j++) {
			sc[j] = (struct sluice_redis_scope){ "{}", 2, &list[base + j]->spec, 1 };
			rq[j] = (struct sluice_redis_request){ &sc[j], 1, 0 };
		}
		struct sluice_redis *r;
		uint32_t c = sluice__rpool_get_wait(re->pool, &r);
		rc = sluice_redis_admit_batch(r, rq, g, 0, d);
		sluice__rpool_put(re->pool, c);
	}
	if (rc == SLUICE_EINVAL)
		return SLUICE_EUNSUPPORTED; /* a kind the backend does not evaluate */
	if (rc == SLUICE_ERANGE)
		return SLUICE_ETOOBIG; /* deeper than SLUICE_REDIS_MAX_TOLERANCE_NS */
	return rc;
}

static int state_build(struct sluice__rengine *re, struct sluice_policy *policy, struct rstate **out)
{
	const struct sluice_policy_spec *spec = sluice_policy_spec(policy);
	int rc = SLUICE_OK;

	uint32_t nconc = 0;
	for (uint32_t i = 0; i < spec->limit_count; i++)
		nconc += spec->limits[i].kind == SLUICE_POLICY_KIND_CONCURRENCY;
	if (nconc > SLUICE_ENGINE_MAX_SLOTS)
		return SLUICE_ETOOBIG; /* as in process: a decision reports every slot */
	for (uint32_t c = 0; c < spec->class_count; c++)
		if (__builtin_popcount(sluice_policy_class_limits(policy, c)) > SLUICE_REDIS_MAX_SCOPES)
			return SLUICE_ETOOBIG; /* one request: one scope per limit */
	struct rstate *st = calloc(1, sizeof *st);
	if (st == NULL)
		return SLUICE_ENOMEM;
	st->policy = policy;
	st->spec = spec;
	/* engine.c's order: concurrency limits first, then the others. */
	uint32_t no = 0;
	for (uint32_t pass = 0; pass < 2; pass++)
		for (uint32_t i = 0; i < spec->limit_count; i++)
			if ((spec->limits[i].kind == SLUICE_POLICY_KIND_CONCURRENCY) == (pass == 0))
				st->order[no++] = i;
	size_t ntiers = (size_t)spec->limit_count * spec->tier_count;
	size_t nall = spec->limit_count + ntiers + spec->override_count;
	st->base = calloc(spec->limit_count, sizeof *st->base);
	st->tiers = ntiers != 0 ? calloc(ntiers, sizeof *st->tiers) : NULL;
	st->overrides = spec->override_count != 0 ? calloc(spec->override_count, sizeof *st->overrides)
						  : NULL;
	struct rbind **list = calloc(nall, sizeof *list);
	size_t nlist = 0;
	if (st->base == NULL || (ntiers != 0 && st->tiers == NULL) ||
	    (spec->override_count != 0 && st->overrides == NULL) || list == NULL) {
		rc = SLUICE_ENOMEM;
		goto fail;
	}
	for (uint32_t i = 0; i < spec->limit_count && rc == SLUICE_OK; i++) {
		const struct sluice_policy_limit *pl = &spec->limits[i];
		for (int t = -1; t < (int)spec->tier_count && rc == SLUICE_OK; t++) {
			if (t >= 0 && !pl->tiered)
				break;
			uint64_t count, burst;
			rc = sluice_policy_limit_numbers(policy, i, t, &count, &burst);
			struct rbind *b = t < 0 ? &st->base[i] : &st->tiers[(size_t)i * spec->tier_count + (size_t)t];
			if (rc == SLUICE_OK)
				rc = bind_init(b, spec, pl, count, burst, t < 0 ? "" : spec->tiers[t].name, NULL);
			list[nlist++] = b;
		}
	}
	for (uint32_t j = 0; j < spec->override_count && rc == SLUICE_OK; j++) {
		const struct sluice_policy_override *ov = &spec->overrides[j];
		const struct sluice_policy_limit *pl = &spec->limits[ov->limit];
		uint64_t burst = pl->kind == SLUICE_POLICY_KIND_GCRA ? ov->burst : ov->count;
		rc = bind_init(&st->overrides[j], spec, pl, ov->count, burst != 0 ? burst : ov->count, "", ov);
		list[nlist++] = &st->overrides[j];
	}
	if (rc == SLUICE_OK)
		rc = probe(re, list, nlist);
	free(list);
	if (rc != SLUICE_OK)
		goto fail;
	*out = st;
	return SLUICE_OK;
fail:
	state_free(st, false);
	return rc;
}

static struct rstate *state_get(struct sluice__rengine *re)
{
	pthread_mutex_lock(&re->lock);
	struct rstate *st = re->cur;
	st->refs++;
	pthread_mutex_unlock(&re->lock);
	return st;
}

static void state_put(struct sluice__rengine *re, struct rstate *st)
{
	pthread_mutex_lock(&re->lock);
	bool last = --st->refs == 0;
	pthread_mutex_unlock(&re->lock);
	if (last)
		state_free(st, true);
}

/* ---- create / destroy / reload ---- */

int sluice__rengine_create(struct sluice__rengine **out, struct sluice_policy *policy,
			   const struct sluice_engine_options *o)
{
	*out = NULL;
	const struct sluice_redis_options *ro = o->redis;
	if (o->max_keys != 0 || o->reserved_ != 0 || o->reserved2_ != 0 ||
	    (o->flags & ~SLUICE_ENGINE_CALLER_REGISTERS_RCU) != 0 ||
	    o->redis_connections > SLUICE_LIMITER_MAX_CONNECTIONS)
		return SLUICE_EINVAL;
	if (ro->size < sizeof *ro || ro->fail_mode != 0)
		return SLUICE_EINVAL;
	/* A brace in the prefix would become the key's hash tag. */
	if (ro->key_prefix != NULL && strpbrk(ro->key_prefix, "{}") != NULL)
		return SLUICE_EINVAL;
	int32_t tag = -1;
	if (o->redis_tag_scope != NULL) {
		tag = sluice_policy_scope_index(policy, o->redis_tag_scope);
		if (tag < 0)
			return SLUICE_EINVAL;
	}
	struct sluice__rengine *re = calloc(1, sizeof *re);
	if (re == NULL)
		return SLUICE_ENOMEM;
	re->tag_scope = tag;
	if (pthread_mutex_init(&re->lock, NULL) != 0) {
		free(re);
		return SLUICE_ENOMEM;
	}
	if (pthread_mutex_init(&re->reload_lock, NULL) != 0) {
		pthread_mutex_destroy(&re->lock);
		free(re);
		return SLUICE_ENOMEM;
	}
	int rc = sluice__rpool_create(&re->pool, ro, o->redis_connections != 0 ? o->redis_connections : 4);
	struct rstate *st = NULL;
	if (rc == SLUICE_OK)
		rc = state_build(re, policy, &st);
	if (rc != SLUICE_OK) {
		sluice__rpool_destroy(re->pool);
		pthread_mutex_destroy(&re->reload_lock);
		pthread_mutex_destroy(&re->lock);
		free(re);
		return rc;
	}
	st->generation = 1;
	st->refs = 1; /* the engine's */
	re->cur = st;
	*out = re;
	return SLUICE_OK;
}

void sluice__rengine_destroy(struct sluice__rengine *re)
{
	if (re == NULL)
		return;
	state_free(re->cur, true); /* no request may be in flight (contract) */
	sluice__rpool_destroy(re->pool);
	pthread_mutex_destroy(&re->reload_lock);
	pthread_mutex_destroy(&re->lock);
	free(re);
}

int sluice__rengine_reload(struct sluice__rengine *re, struct sluice_policy *policy)
{
	pthread_mutex_lock(&re->reload_lock);
	/* Only reloads (serialized by reload_lock) replace cur. */
	struct rstate *old = re->cur;
	const struct sluice_policy_spec *ns = sluice_policy_spec(policy);
	int rc = SLUICE_OK;
	if (ns->scope_count != old->spec->scope_count)
		rc = SLUICE_EINVAL;
	for (uint32_t s = 0; s < ns->scope_count && rc == SLUICE_OK; s++)
		if (strcmp(ns->scopes[s], old->spec->scopes[s]) != 0)
			rc = SLUICE_EINVAL;
	struct rstate *st = NULL;
	if (rc == SLUICE_OK)
		rc = state_build(re, policy, &st);
	if (rc != SLUICE_OK) {
		pthread_mutex_unlock(&re->reload_lock);
		return rc;
	}
	st->generation = old->generation + 1;
	st->refs = 1;
	pthread_mutex_lock(&re->lock);
	re->cur = st;
	pthread_mutex_unlock(&re->lock);
	state_put(re, old); /* the engine's reference: freed now or by the last request */
	pthread_mutex_unlock(&re->reload_lock);
	return SLUICE_OK;
}

uint64_t sluice__rengine_generation(struct sluice__rengine *re)
{
	pthread_mutex_lock(&re->lock);
	uint64_t g = re->cur->generation;
	pthread_mutex_unlock(&re->lock);
	return g;
}

/* ---- per request ---- */

static int validate(const struct rstate *st, const struct sluice_engine_request *req, bool need_route)
{
	if (req->identity_count > 0 && req->identities == NULL)
		return SLUICE_EINVAL;
	if (req->tier < SLUICE_POLICY_NO_TIER ||
	    (req->tier >= 0 && (uint32_t)req->tier >= st->spec->tier_count))
		return SLUICE_EINVAL;
	if (need_route && (req->method == NULL || req->path == NULL))
		return SLUICE_EINVAL;
	for (uint32_t s = 0; s < req->identity_count; s++)
		if (req->identities[s].len > SLUICE_ENGINE_MAX_IDENTITY)
			return SLUICE_EKEY;
	return SLUICE_OK;
}

/* The binding in force for limit i (engine.c's binding_for()). */
static const struct rbind *binding_for(const struct rstate *st, uint32_t i,
				       const struct sluice_engine_request *req, bool *overridden)
{
	const struct sluice_policy_spec *spec = st->spec;
	const struct sluice_policy_limit *pl = &spec->limits[i];

	*overridden = false;
	if (spec->override_count != 0) {
		for (uint32_t s = 0; s < spec->scope_count; s++) {
			if (!(pl->scope_mask & (UINT32_C(1) << s)) || !has_identity(req, s))
				continue;
			int j = sluice_policy_override_find(st->policy, i, s, req->identities[s].bytes,
							    req->identities[s].len, req->now_ns);
			if (j >= 0) {
				*overridden = true;
				return &st->overrides[j];
			}
		}
	}
	if (req->tier >= 0 && pl->tiered)
		return &st->tiers[(size_t)i * spec->tier_count + (size_t)req->tier];
	return &st->base[i];
}


static int key_error(size_t klen)
{
	return klen == SIZE_MAX ? SLUICE_EKEY : SLUICE_EINVAL;
}

int sluice__rengine_check(struct sluice__rengine *re, const struct sluice_engine_request *req,
			  struct sluice_engine_decision *out)
{
	unsigned char keys[SLUICE_REDIS_MAX_SCOPES][KEY_MAX];
	struct sluice_redis_scope scopes[SLUICE_REDIS_MAX_SCOPES];
	struct sluice_redis_request rq[1 + SLUICE_REDIS_MAX_SCOPES];
	struct sluice_decision d[1 + SLUICE_REDIS_MAX_SCOPES];
	uint32_t applied[SLUICE_REDIS_MAX_SCOPES];
	uint32_t n = 0;
	bool want_warn = false;

	memset(out, 0, offsetof(struct sluice_engine_decision, limit_name) + 1);
	out->scope = -1;
	out->warn_limit = UINT32_MAX;

	struct rstate *st = state_get(re);
	const struct sluice_policy_spec *spec = st->spec;
	int rc = validate(st, req, true);
	if (rc != SLUICE_OK)
		goto done;
	int cls = sluice_policy_match(st->policy, req->method, req->method_len, req->path, req->path_len);
	if (cls < 0) {
		rc = cls;
		goto done;
	}
	out->class_id = (uint32_t)cls;
	out->generation = st->generation;
	uint32_t mask = sluice_policy_class_limits(st->policy, (uint32_t)cls);

	/* engine.c's evaluation order (concurrency first), so that the
	 * backend's first denier is engine.c's. At most
	 * SLUICE_REDIS_MAX_SCOPES limits per class (checked at create). */
	bool has_slots = false;
	const struct rbind *bound[SLUICE_REDIS_MAX_SCOPES];
	for (uint32_t k = 0; k < spec->limit_count; k++) {
		uint32_t i = st->order[k];
		if (!(mask & (UINT32_C(1) << i)))
			continue;
		bool overridden;
		const struct rbind *b = binding_for(st, i, req, &overridden);
		size_t klen = build_key(re, st, i, (uint32_t)cls, b, req, keys[n]);
		if (klen == 0) {
			mask &= ~(UINT32_C(1) << i); /* a scope without identity */
			continue;
		}
		if (klen >= SIZE_MAX - 1) {
			rc = key_error(klen);
			goto done;
		}
		scopes[n] = (struct sluice_redis_scope){ keys[n], klen, &b->spec, 1 };
		want_warn = want_warn || spec->limits[i].warn_percent != 0;
		has_slots = has_slots || spec->limits[i].kind == SLUICE_POLICY_KIND_CONCURRENCY;
		bound[n] = b;
		applied[n++] = i;
	}
	out->applied = mask;
	if (n == 0) {
		out->d.allowed = true;
		out->d.limit_index = UINT32_MAX;
		out->d.remaining = UINT64_MAX;
		goto done;
	}

	sluice_slot_handle handles[SLUICE_REDIS_MAX_SCOPES];
	for (uint32_t j = 0; j < n; j++)
		handles[j] = SLUICE_SLOT_NONE;
	/* Slots are taken by acquire, which the backend does not pipeline:
	 * with a slot and a warn limit the peeks are a second round trip. */
	bool acquire = has_slots && req->cost > 0;
	size_t nrq = 1;
	uint32_t peeked[SLUICE_REDIS_MAX_SCOPES]; /* rq[1 + m] peeks scope peeked[m] */
	rq[0] = (struct sluice_redis_request){ scopes, n, req->cost };
	for (uint32_t j = 0; j < n && want_warn; j++)
		if (spec->limits[applied[j]].warn_percent != 0) {
			peeked[nrq - 1] = j;
			rq[nrq++] = (struct sluice_redis_request){ &scopes[j], 1, 0 };
		}
	struct sluice_redis *r;
	uint32_t c = sluice__rpool_get(re->pool, &r);
	if (c == SLUICE__RPOOL_BUSY) {
		/* No connection free within the timeout: the fail mode. */
		sluice__redis_fail_answer(SLUICE_FAIL_OPEN, req->cost, &scopes[0].limits[0], &d[0]);
	} else {
		/* Scopes go in evaluation order (the first denier), but a full
		 * tie between admitted limits goes to the lower policy index,
		 * as engine.c: rank each scope by its limit's index. */
		sluice__redis_set_tie_rank(r, applied, n);
		if (acquire) {
			rc = sluice_redis_acquire_scopes(r, scopes, n, req->cost, req->now_ns, &d[0],
							 handles);
			if (rc == SLUICE_OK && want_warn && d[0].allowed && !d[0].degraded)
				rc = sluice_redis_admit_batch(r, rq + 1, nrq - 1, req->now_ns, d + 1);
		} else {
			rc = nrq == 1 ? sluice_redis_admit_scopes(r, scopes, n, req->cost, req->now_ns, &d[0])
				      : sluice_redis_admit_batch(r, rq, nrq, req->now_ns, d);
		}
		sluice__redis_set_tie_rank(r, NULL, 0);
		sluice__rpool_put(re->pool, c);
	}
	if (rc == SLUICE_EINVAL) {
		/* Everything else was validated here or at create: the keys
		 * lie on different Redis Cluster slots. Nothing was sent. */
		rc = SLUICE_EUNSUPPORTED;
	}
	if (rc != SLUICE_OK)
		goto done;

	if (d[0].degraded) {
		out->d.degraded = true;
		if (spec->fail == SLUICE_FAIL_CLOSED && req->cost > 0) {
			/* engine.c: the first limit evaluated answers by the
			 * fail mode and governs. */
			struct sluice_decision closed = d[0];
			sluice__redis_fail_mode(SLUICE_FAIL_CLOSED, req->cost, &closed);
			closed.limit_index = 0;
			sluice__engine_fill_governing(st->spec, applied[0], &closed, out);
		} else {
			/* Fail open: no limit could be evaluated, none governs. */
			out->d.allowed = true;
			out->d.limit_index = UINT32_MAX;
			out->d.remaining = UINT64_MAX;
		}
		goto done;
	}
	uint32_t gov = d[0].limit_index < n ? d[0].limit_index : 0;
	sluice__engine_fill_governing(st->spec, applied[gov], &d[0], out);
	if (!d[0].allowed)
		goto done;
	out->d.allowed = true;
	out->d.reason = SLUICE_REASON_NONE;
	out->d.retry_after_ns = 0;
	/* The first warn limit in evaluation order, as engine.c. */
	for (size_t m = 0; m + 1 < nrq; m++) {
		uint32_t j = peeked[m];
		const struct sluice_policy_limit *pl = &spec->limits[applied[j]];
		if (!d[1 + m].degraded && sluice__engine_over_warn(pl, &d[1 + m])) {
			out->warn = true;
			out->warn_limit = applied[j];
			break;
		}
	}
	for (uint32_t j = 0; j < n && req->cost > 0; j++) {
		if (handles[j] == SLUICE_SLOT_NONE || out->slot_count >= SLUICE_ENGINE_MAX_SLOTS)
			continue;
		struct sluice_engine_slot *sl = &out->slots[out->slot_count++];
		sl->limiter_id = bound[j]->id;
		sl->handle = handles[j];
		sl->limit = applied[j];
	}
done:
	state_put(re, st);
	return rc;
}

/* The binding of the current state whose id is `id`, or NULL. */
static const struct rbind *bind_by_id(const struct rstate *st, uint64_t id, uint32_t *limit)
{
	const struct sluice_policy_spec *spec = st->spec;

	for (uint32_t i = 0; i < spec->limit_count; i++) {
		*limit = i;
		if (st->base[i].seg_len != 0 && st->base[i].id == id)
			return &st->base[i];
		for (uint32_t t = 0; t < spec->tier_count; t++) {
			const struct rbind *b = &st->tiers[(size_t)i * spec->tier_count + t];
			if (b->seg_len != 0 && b->id == id)
				return b;
		}
	}
	for (uint32_t j = 0; j < spec->override_count; j++) {
		*limit = spec->overrides[j].limit;
		if (st->overrides[j].id == id)
			return &st->overrides[j];
	}
	return NULL;
}

int sluice__rengine_release(struct sluice__rengine *re, const struct sluice_engine_request *req,
			    struct sluice_engine_decision *decision)
{
	unsigned char key[KEY_MAX];
	struct rstate *st = state_get(re);
	const struct sluice_policy_spec *spec = st->spec;
	int rc = SLUICE_OK;
	/* engine.c's release: the class of the check when the policy is the
	 * same, else the request's route matched again. */
	int cls = sluice__engine_release_class(st->policy, spec->class_count, st->generation, req,
					       decision);
	for (uint32_t k = 0; k < decision->slot_count; k++) {
		const struct sluice_engine_slot *s = &decision->slots[k];
		uint32_t i;
		const struct rbind *b = bind_by_id(st, s->limiter_id, &i);
		int r;
		if (b == NULL) {
			r = SLUICE_ESTALE; /* its limit changed or was removed */
		} else {
			size_t klen = build_key(re, st, i, (uint32_t)cls, b, req, key);
			if (klen == 0 || klen >= SIZE_MAX - 1) {
				r = SLUICE_ESTALE;
			} else {
				struct sluice_redis_scope sc = { key, klen, &b->spec, 1 };
				struct sluice_redis *conn;
				uint32_t c = sluice__rpool_get(re->pool, &conn);
				if (c == SLUICE__RPOOL_BUSY) {
					r = SLUICE_EBACKEND;
				} else {
					r = sluice_redis_release(conn, &sc, s->handle);
					sluice__rpool_put(re->pool, c);
				}
			}
			if (r == SLUICE_ENOTFOUND)
				r = SLUICE_ESTALE;
		}
		if (r != SLUICE_OK && (rc == SLUICE_OK || r == SLUICE_EDOUBLE))
			rc = r;
	}
	state_put(re, st);
	decision->slot_count = 0;
	return rc;
}

int sluice__rengine_usage(struct sluice__rengine *re, const struct sluice_engine_request *req,
			  struct sluice_engine_usage *out, size_t cap, size_t *count)
{
	unsigned char keys[SLUICE_POLICY_MAX_LIMITS][KEY_MAX];
	struct sluice_redis_scope scopes[SLUICE_POLICY_MAX_LIMITS];
	struct sluice_redis_request rq[SLUICE_POLICY_MAX_LIMITS];
	struct sluice_decision d[SLUICE_POLICY_MAX_LIMITS];
	uint32_t which[SLUICE_POLICY_MAX_LIMITS];
	bool overridden[SLUICE_POLICY_MAX_LIMITS];
	size_t n = 0, nrq = 0;

	struct rstate *st = state_get(re);
	const struct sluice_policy_spec *spec = st->spec;
	int rc = validate(st, req, false);
	if (rc != SLUICE_OK)
		goto done;
	int cls = sluice__engine_usage_class(st->policy, req);
	if (cls < 0) {
		rc = cls;
		goto done;
	}
	for (uint32_t i = 0; i < spec->limit_count; i++) {
		bool ov;
		const struct rbind *b = binding_for(st, i, req, &ov);
		unsigned char *k = keys[nrq];
		size_t klen = build_key(re, st, i, (uint32_t)cls, b, req, k);
		if (klen == 0)
			continue;
		if (klen >= SIZE_MAX - 1) {
			rc = key_error(klen);
			goto done;
		}
		if (n < cap) {
			overridden[nrq] = ov;
			scopes[nrq] = (struct sluice_redis_scope){ k, klen, &b->spec, 1 };
			rq[nrq] = (struct sluice_redis_request){ &scopes[nrq], 1, 0 };
			which[nrq++] = i;
		}
		n++;
	}
	if (nrq > 0) {
		struct sluice_redis *r;
		uint32_t c = sluice__rpool_get(re->pool, &r);
		if (c == SLUICE__RPOOL_BUSY) {
			rc = SLUICE_EBACKEND; /* no connection free within the timeout */
			goto done;
		}
		rc = sluice_redis_admit_batch(r, rq, nrq, req->now_ns, d);
		sluice__rpool_put(re->pool, c);
		if (rc != SLUICE_OK)
			goto done;
	}
	for (size_t j = 0; j < nrq; j++) {
		if (d[j].degraded) {
			rc = SLUICE_EBACKEND;
			goto done;
		}
		const struct sluice_policy_limit *pl = &spec->limits[which[j]];
		struct sluice_engine_usage *u = &out[j];
		memset(u, 0, sizeof *u);
		u->limit = which[j];
		u->kind = pl->kind;
		u->reason = pl->reason;
		u->overridden = overridden[j];
		u->period_ns = pl->period_ns;
		u->count = d[j].limit;
		u->remaining = d[j].remaining;
		u->used = d[j].remaining < d[j].limit ? d[j].limit - d[j].remaining : 0;
		u->reset_ns = d[j].reset_ns;
		u->warn = sluice__engine_over_warn(pl, &d[j]);
		sluice__engine_name_copy(u->name, pl->name);
	}
	*count = n;
	if (n > cap)
		rc = SLUICE_ETRUNC;
done:
	state_put(re, st);
	return rc;
}

int sluice__rengine_backend_stats(struct sluice__rengine *re, struct sluice_redis_stats *out)
{
	return sluice__rpool_backend_stats(re->pool, out);
}
