/*
 * exec_redis.c - the engine's Redis executor: a plan decided in one script
 * call on a Redis server shared by a fleet (sluice/redis.h, "Engine on
 * Redis"; docs/redis.md, "Limiter and engine on Redis"). The engine (its
 * planner, snapshot, reload, governing rule) is the in-process engine's;
 * this file only maps bindings to Redis keys and plans to backend calls.
 *
 * Execution. Each applicable limit becomes one scope of ONE script call
 * (sluice__redis_admit_each(): sluice_redis_admit_scopes(), or
 * sluice_redis_acquire_scopes() when it takes a slot), with one limit per
 * scope, in the plan's evaluation order: the backend decides all of them
 * all-or-nothing, atomically on the server, in one round trip, names the
 * first denier, and on an admission reports every limit's decision, from
 * which the engine picks the governing one by its rule, as in process. The
 * in-process executor needs receipts and cancels to get all-or-nothing
 * across limiters; the script's atomicity gives it exactly (a refused
 * request consumes nothing, ever).
 *
 * Why one limit per scope: the backend names a limit's field by its index in
 * its scope, so a scope's limits must not depend on the request; the set of
 * applicable limits does (class, missing identities), so each limit gets a
 * key of its own. The key carries everything that makes a binding "the
 * same" across a reload (docs/redis.md, "Key naming"): scopes with their
 * identities, class for per-class limits, name, tier or override, kind and
 * numbers. An unchanged binding maps to the same keys after a reload and
 * keeps its state; a changed one maps to new keys and starts full.
 *
 * Validation once. A binding's limit is checked by the backend when the
 * binding is opened (create, reload: a read-only peek of each new binding,
 * pipelined), so a kind or range the backend refuses fails create, not a
 * request.
 *
 * After a refusal the other limits' state (the caller's limit_decisions)
 * is read by pipelined read-only peeks: one more round trip.
 *
 * Slots. The engine's slot records a binding and a handle, not the key, so
 * this executor keeps the key of every slot it hands out (`struct held`,
 * found by a record id stored in the slot): release needs only the
 * decision. A released record stays HELD_KEEP_NS of request time (so a
 * second release is sent and answered EDOUBLE, as in process) and is then
 * dropped; an unreleased one stays until released, or until a sweep finds
 * its lease passed (as in process, a sweep reaps expired leases).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util_internal.h"
#include "engine/executor_internal.h"
#include "redis/redis_backend_internal.h"

#define KEY_MAX SLUICE_LIMITER_MAX_KEY
/* Key segment of a binding: ":L=<name>:T=<tier>:N=<k>,<count>,<period>,
 * <burst>,<lease>,<retry>" or with ":O=<scope>@<expires>" instead of the
 * tier: names <= 31 bytes, six decimals <= 20 bytes each. */
#define SEG_MAX 224
/* Backend requests per probe batch. */
#define PROBE_CHUNK 64
/* Records of held slots: buckets, and how long a released one is kept. */
#define HELD_BUCKETS 256
#define HELD_KEEP_NS (60 * SLUICE_NS_PER_SEC)

/* A binding's Redis side: its key segment. */
struct rbind {
	uint32_t seg_len;
	char seg[SEG_MAX];
};

/* The key of a slot handed out. */
struct held {
	struct held *next;
	uint64_t id;         /* the slot's `entry` */
	uint64_t binding_id;
	uint64_t handle;
	uint64_t stamp_ns;   /* request time of the acquire, then of the release */
	uint64_t expires_ns; /* lease end; UINT64_MAX: no lease */
	bool released;
	uint16_t key_len;
	unsigned char key[];
};

struct exec_redis {
	struct sluice__rpool *pool;
	int32_t tag_scope; /* scope id of the hash tag, -1: each limit's first scope */
	pthread_mutex_t held_lock;
	uint64_t held_next;
	struct held *held[HELD_BUCKETS];
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

/* "<scope name>=<escaped identity>" */
static bool put_scope(unsigned char *key, size_t *len, const struct sluice_policy_spec *spec,
		      const struct sluice_engine_request *req, uint32_t s)
{
	const char *name = spec->scopes[s];
	return put_raw(key, len, name, strlen(name)) && put_raw(key, len, "=", 1) &&
	       put_escaped(key, len, req->identities[s].bytes, req->identities[s].len);
}

/*
 * The Redis key (after the backend's key_prefix) of plan item j:
 *   "{" tag "}" (":" scope "=" identity)* [":C=" class] segment
 * tag: the tag scope's "<scope>=<identity>" when the engine has one, else
 * the limit's first scope's, else (a limit keyed by class only) "C=<class>".
 * Returns the length; SIZE_MAX: too long (SLUICE_EKEY); SIZE_MAX - 1: the
 * engine's tag scope has no identity in a request this limit applies to
 * (SLUICE_EINVAL).
 */
static size_t build_key(const struct exec_redis *x, const struct sluice__plan *p, uint32_t j,
			unsigned char *key)
{
	const struct sluice_policy_spec *spec = p->spec;
	const struct sluice_engine_request *req = p->req;
	const struct sluice__binding *b = p->item[j].b;
	const struct rbind *rb = b->exec;
	size_t n = 0;
	int first = b->scope_mask == 0 ? -1 : __builtin_ctz(b->scope_mask);

	bool ok = put_raw(key, &n, "{", 1);
	if (x->tag_scope >= 0) {
		if (!sluice__plan_has_identity(req, (uint32_t)x->tag_scope))
			return SIZE_MAX - 1;
		ok = ok && put_scope(key, &n, spec, req, (uint32_t)x->tag_scope);
	} else if (first >= 0) {
		ok = ok && put_scope(key, &n, spec, req, (uint32_t)first);
	} else {
		const char *c = spec->classes[p->class_id];
		ok = ok && put_raw(key, &n, "C=", 2) && put_raw(key, &n, c, strlen(c));
	}
	ok = ok && put_raw(key, &n, "}", 1);
	for (uint32_t s = 0; s < spec->scope_count && ok; s++)
		if (b->scope_mask & (UINT32_C(1) << s))
			ok = put_raw(key, &n, ":", 1) && put_scope(key, &n, spec, req, s);
	if (b->per_class) {
		const char *c = spec->classes[p->class_id];
		ok = ok && put_raw(key, &n, ":C=", 3) && put_raw(key, &n, c, strlen(c));
	}
	ok = ok && put_raw(key, &n, rb->seg, rb->seg_len);
	return ok ? n : SIZE_MAX;
}

static int key_error(size_t klen)
{
	return klen == SIZE_MAX ? SLUICE_EKEY : SLUICE_EINVAL;
}

/* ---- bindings ---- */

static int redis_open(void *ex, const struct sluice_policy_spec *spec, struct sluice__binding *b)
{
	(void)ex;
	struct rbind *rb = calloc(1, sizeof *rb);
	if (rb == NULL)
		return SLUICE_ENOMEM;
	char who[96];
	if (b->is_override)
		snprintf(who, sizeof who, ":O=%s@%llu", spec->scopes[b->oscope],
			 (unsigned long long)b->oexpires_ns);
	else if (b->tier[0] != '\0')
		snprintf(who, sizeof who, ":T=%s", b->tier);
	else
		who[0] = '\0';
	int len = snprintf(rb->seg, sizeof rb->seg, ":L=%s%s:N=%u,%llu,%llu,%llu,%llu,%llu", b->name, who,
			   (unsigned)b->policy_kind, (unsigned long long)b->count,
			   (unsigned long long)b->period_ns, (unsigned long long)b->burst,
			   (unsigned long long)b->lease_ns, (unsigned long long)b->retry_after_ns);
	if (len < 0 || (size_t)len >= sizeof rb->seg) {
		free(rb);
		return SLUICE_ETOOBIG; /* cannot happen within the policy's ceilings */
	}
	rb->seg_len = (uint32_t)len;
	b->exec = rb;
	return SLUICE_OK;
}

static void redis_close(void *ex, struct sluice__binding *const *b, size_t n)
{
	(void)ex;
	for (size_t k = 0; k < n; k++)
		free(b[k]->exec);
}

/* Ask the backend whether it evaluates every new binding's limit: read-only
 * peeks of one key, pipelined; validation happens before anything is sent,
 * so the answer holds whether the server is up or not. Once per binding:
 * requests do not validate limits again. */
static int redis_prepare(void *ex, const struct sluice_policy *policy, struct sluice__binding *const *fresh,
			 size_t n)
{
	struct exec_redis *x = ex;
	const struct sluice_policy_spec *spec = sluice_policy_spec(policy);
	struct sluice_redis_scope sc[PROBE_CHUNK];
	struct sluice_redis_request rq[PROBE_CHUNK];
	struct sluice_decision d[PROBE_CHUNK];
	int rc = SLUICE_OK;

	if (spec->dry_run_mask != 0)
		return SLUICE_EUNSUPPORTED; /* a reload to dry-run limits (docs/redis.md) */
	for (uint32_t c = 0; c < spec->class_count; c++)
		if (__builtin_popcount(sluice_policy_class_limits(policy, c)) > SLUICE_REDIS_MAX_SCOPES)
			return SLUICE_ETOOBIG; /* one request: one scope per limit */
	for (size_t base = 0; base < n && rc == SLUICE_OK; base += PROBE_CHUNK) {
		size_t g = SLUICE_MIN(n - base, (size_t)PROBE_CHUNK);
		for (size_t j = 0; j < g; j++) {
			sc[j] = (struct sluice_redis_scope){ "{}", 2, &fresh[base + j]->spec, 1 };
			rq[j] = (struct sluice_redis_request){ &sc[j], 1, 0 };
		}
		struct sluice_redis *r;
		uint32_t c = sluice__rpool_get_wait(x->pool, &r);
		rc = sluice_redis_admit_batch(r, rq, g, 0, d);
		sluice__rpool_put(x->pool, c);
	}
	if (rc == SLUICE_EINVAL)
		return SLUICE_EUNSUPPORTED; /* a kind the backend does not evaluate */
	if (rc == SLUICE_ERANGE)
		return SLUICE_ETOOBIG; /* deeper than SLUICE_REDIS_MAX_TOLERANCE_NS */
	return rc;
}

/* ---- held slots ---- */

static void held_drop_bucket_locked(struct exec_redis *x, uint32_t bucket, uint64_t binding_id,
				    uint64_t now_ns, bool sweep)
{
	struct held **pp = &x->held[bucket];
	while (*pp != NULL) {
		struct held *h = *pp;
		bool drop = h->released ? now_ns - h->stamp_ns > HELD_KEEP_NS && now_ns > h->stamp_ns
					: sweep && h->binding_id == binding_id && now_ns >= h->expires_ns;
		if (drop) {
			*pp = h->next;
			free(h);
		} else {
			pp = &h->next;
		}
	}
}

/* Record the key of a slot; returns its id (0: not recorded, out of
 * memory: the slot then releases as ESTALE and frees at its lease). */
static uint64_t held_add(struct exec_redis *x, const struct sluice__binding *b, uint64_t handle,
			 const unsigned char *key, size_t key_len, uint64_t now_ns)
{
	struct held *h = malloc(sizeof *h + key_len);
	if (h == NULL)
		return 0;
	h->binding_id = b->id;
	h->handle = handle;
	h->stamp_ns = now_ns;
	h->expires_ns = b->lease_ns != 0 ? sluice__add_sat(now_ns, b->lease_ns) : UINT64_MAX;
	h->released = false;
	h->key_len = (uint16_t)key_len;
	memcpy(h->key, key, key_len);
	pthread_mutex_lock(&x->held_lock);
	h->id = ++x->held_next;
	uint32_t bucket = (uint32_t)(h->id % HELD_BUCKETS);
	held_drop_bucket_locked(x, bucket, 0, now_ns, false);
	h->next = x->held[bucket];
	x->held[bucket] = h;
	pthread_mutex_unlock(&x->held_lock);
	return h->id;
}

/* ---- execution ---- */

static int redis_execute(void *ex, const struct sluice__plan *p, uint64_t cost, uint64_t now_ns,
			 struct sluice__exec_result *r)
{
	struct exec_redis *x = ex;
	const struct sluice_policy_spec *spec = p->spec;
	unsigned char keys[SLUICE_REDIS_MAX_SCOPES][KEY_MAX];
	size_t klen[SLUICE_REDIS_MAX_SCOPES];
	struct sluice_redis_scope scopes[SLUICE_REDIS_MAX_SCOPES];
	struct sluice_decision d, each[SLUICE_REDIS_MAX_SCOPES];
	sluice_slot_handle handles[SLUICE_REDIS_MAX_SCOPES];
	uint32_t n = p->n;
	bool has_slots = false;
	int rc = SLUICE_OK;

	r->denied = UINT32_MAX;
	r->governing = UINT32_MAX;
	r->decided = 0;
	/* At most SLUICE_REDIS_MAX_SCOPES limits per class (prepare). */
	for (uint32_t j = 0; j < n; j++) {
		klen[j] = build_key(x, p, j, keys[j]);
		if (klen[j] >= SIZE_MAX - 1)
			return key_error(klen[j]);
		scopes[j] = (struct sluice_redis_scope){ keys[j], klen[j], &p->item[j].b->spec, 1 };
		has_slots = has_slots || p->item[j].b->policy_kind == SLUICE_POLICY_KIND_CONCURRENCY;
		r->slot_handle[j] = SLUICE_SLOT_NONE;
		r->slot_entry[j] = 0;
		r->slot_hash[j] = 0;
		handles[j] = SLUICE_SLOT_NONE;
	}
	struct sluice_redis *conn;
	uint32_t c = sluice__rpool_get(x->pool, &conn);
	if (c == SLUICE__RPOOL_BUSY) {
		/* No connection free within the timeout: the fail mode. */
		sluice__redis_fail_answer(SLUICE_FAIL_OPEN, cost, scopes[0].limits, &d);
	} else {
		/* One script call decides every limit and reports each one's
		 * decision; the engine picks the governing one by its rule. */
		rc = sluice__redis_admit_each(conn, scopes, n, cost, now_ns, &d, each,
					      has_slots && cost > 0 ? handles : NULL);
		sluice__rpool_put(x->pool, c);
	}
	if (rc == SLUICE_EINVAL) {
		/* Everything else was validated by the planner or at open: the
		 * keys lie on different Redis Cluster slots. Nothing was sent. */
		rc = SLUICE_EUNSUPPORTED;
	}
	if (rc != SLUICE_OK)
		return rc;

	if (d.degraded) {
		if (spec->fail == SLUICE_FAIL_CLOSED && cost > 0) {
			/* As in process: the first limit evaluated answers by
			 * the fail mode and governs. */
			r->d[0] = d;
			sluice__redis_fail_mode(SLUICE_FAIL_CLOSED, cost, &r->d[0]);
			r->denied = 0;
		} else {
			/* Fail open: no limit could be evaluated, none governs. */
			for (uint32_t j = 0; j < n; j++) {
				memset(&r->d[j], 0, sizeof r->d[j]);
				r->d[j].allowed = true;
				r->d[j].degraded = true;
				r->d[j].limit = d.limit;
			}
		}
		r->decided = n >= 32 ? UINT32_MAX : (UINT32_C(1) << n) - 1;
		return SLUICE_OK;
	}
	uint32_t gov = d.limit_index < n ? d.limit_index : 0;
	if (!d.allowed) {
		r->d[gov] = d;
		r->denied = gov;
		r->decided = UINT32_C(1) << gov;
		return SLUICE_OK;
	}
	for (uint32_t j = 0; j < n; j++) {
		if (each[j].limit_index == UINT32_MAX)
			continue;
		r->d[j] = each[j];
		r->decided |= UINT32_C(1) << j;
	}
	if (!(r->decided & (UINT32_C(1) << gov)) || r->decided != (n >= 32 ? UINT32_MAX : (UINT32_C(1) << n) - 1)) {
		/* Not every limit reported (an answer from the deny cache or
		 * a lease cannot be: the backend's governing limit stands). */
		r->d[gov] = d;
		r->decided |= UINT32_C(1) << gov;
		r->governing = gov;
	}
	for (uint32_t j = 0; j < n && cost > 0; j++) {
		if (handles[j] == SLUICE_SLOT_NONE)
			continue;
		r->slot_handle[j] = handles[j];
		r->slot_entry[j] = held_add(x, p->item[j].b, handles[j], keys[j], klen[j], now_ns);
	}
	return SLUICE_OK;
}

static int redis_peek(void *ex, const struct sluice__plan *p, uint64_t now_ns, struct sluice_decision *d)
{
	struct exec_redis *x = ex;
	unsigned char keys[SLUICE_POLICY_MAX_LIMITS][KEY_MAX];
	struct sluice_redis_scope scopes[SLUICE_POLICY_MAX_LIMITS];
	struct sluice_redis_request rq[SLUICE_POLICY_MAX_LIMITS];

	for (uint32_t j = 0; j < p->n; j++) {
		size_t klen = build_key(x, p, j, keys[j]);
		if (klen >= SIZE_MAX - 1)
			return key_error(klen);
		scopes[j] = (struct sluice_redis_scope){ keys[j], klen, &p->item[j].b->spec, 1 };
		rq[j] = (struct sluice_redis_request){ &scopes[j], 1, 0 };
	}
	struct sluice_redis *conn;
	uint32_t c = sluice__rpool_get(x->pool, &conn);
	if (c == SLUICE__RPOOL_BUSY)
		return SLUICE_EBACKEND; /* no connection free within the timeout */
	int rc = sluice_redis_admit_batch(conn, rq, p->n, now_ns, d);
	sluice__rpool_put(x->pool, c);
	if (rc != SLUICE_OK)
		return rc;
	for (uint32_t j = 0; j < p->n; j++) {
		if (d[j].degraded)
			return SLUICE_EBACKEND;
		d[j].allowed = true;
	}
	return SLUICE_OK;
}

static int redis_release(void *ex, struct sluice__binding *b, const struct sluice__slot_ref *s)
{
	struct exec_redis *x = ex;
	unsigned char key[KEY_MAX];
	size_t key_len = 0;
	bool found = false;

	pthread_mutex_lock(&x->held_lock);
	for (struct held *h = x->held[s->entry % HELD_BUCKETS]; h != NULL; h = h->next) {
		if (h->id == s->entry && h->binding_id == b->id) {
			found = true;
			key_len = h->key_len;
			memcpy(key, h->key, key_len);
			break;
		}
	}
	pthread_mutex_unlock(&x->held_lock);
	if (!found)
		return SLUICE_ESTALE; /* forgotten: its lease passed, swept */
	struct sluice_redis_scope sc = { key, key_len, &b->spec, 1 };
	struct sluice_redis *conn;
	uint32_t c = sluice__rpool_get(x->pool, &conn);
	if (c == SLUICE__RPOOL_BUSY)
		return SLUICE_EBACKEND; /* the slot stays taken: retry, or its lease expires */
	int rc = sluice_redis_release(conn, &sc, s->handle);
	sluice__rpool_put(x->pool, c);
	if (rc == SLUICE_OK) {
		pthread_mutex_lock(&x->held_lock);
		for (struct held *h = x->held[s->entry % HELD_BUCKETS]; h != NULL; h = h->next)
			if (h->id == s->entry)
				h->released = true;
		pthread_mutex_unlock(&x->held_lock);
	}
	return rc;
}

/* Redis expires idle keys itself; a sweep forgets the keys of slots of b
 * whose lease has passed (and released slots kept long enough). */
static int redis_sweep(void *ex, struct sluice__binding *b, uint64_t now_ns, size_t budget)
{
	struct exec_redis *x = ex;
	(void)budget;
	pthread_mutex_lock(&x->held_lock);
	for (uint32_t k = 0; k < HELD_BUCKETS; k++)
		held_drop_bucket_locked(x, k, b->id, now_ns, true);
	pthread_mutex_unlock(&x->held_lock);
	return SLUICE_OK;
}

static void redis_destroy(void *ex)
{
	struct exec_redis *x = ex;
	if (x == NULL)
		return;
	for (uint32_t k = 0; k < HELD_BUCKETS; k++)
		while (x->held[k] != NULL) {
			struct held *h = x->held[k];
			x->held[k] = h->next;
			free(h);
		}
	sluice__rpool_destroy(x->pool);
	pthread_mutex_destroy(&x->held_lock);
	free(x);
}

const struct sluice__executor_ops sluice__exec_redis_ops = {
	.blocking = true,
	.open = redis_open,
	.close = redis_close,
	.prepare = redis_prepare,
	.execute = redis_execute,
	.peek = redis_peek,
	.release = redis_release,
	.sweep = redis_sweep,
	.foreach = NULL,
	.destroy = redis_destroy,
};

/* ---- create ---- */

int sluice_redis_engine_create(struct sluice_engine **out, struct sluice_policy *policy,
			       const struct sluice_engine_options *eopts,
			       const struct sluice_redis_limiter_options *ropts)
{
	if (out == NULL)
		return SLUICE_EINVAL;
	*out = NULL;
	if (policy == NULL || ropts == NULL || ropts->size != sizeof *ropts || ropts->redis == NULL ||
	    ropts->reserved_ != 0 || ropts->connections > SLUICE_REDIS_MAX_CONNECTIONS)
		return SLUICE_EINVAL;
	if (eopts != NULL && (eopts->size != sizeof *eopts || eopts->max_keys != 0))
		return SLUICE_EINVAL; /* max_keys bounds a local table */
	if (sluice_policy_spec(policy)->dry_run_mask != 0)
		return SLUICE_EUNSUPPORTED; /* dry-run limits: in process only (docs/redis.md) */
	const struct sluice_redis_options *ro = ropts->redis;
	if (ro->size < sizeof *ro || ro->fail_mode != 0)
		return SLUICE_EINVAL;
	/* A brace in the prefix would become the key's hash tag. */
	if (ro->key_prefix != NULL && strpbrk(ro->key_prefix, "{}") != NULL)
		return SLUICE_EINVAL;
	int32_t tag = -1;
	if (ropts->tag_scope != NULL) {
		tag = sluice_policy_scope_index(policy, ropts->tag_scope);
		if (tag < 0)
			return SLUICE_EINVAL;
	}
	struct exec_redis *x = calloc(1, sizeof *x);
	if (x == NULL)
		return SLUICE_ENOMEM;
	x->tag_scope = tag;
	if (pthread_mutex_init(&x->held_lock, NULL) != 0) {
		free(x);
		return SLUICE_ENOMEM;
	}
	int rc = sluice__rpool_create(&x->pool, ro, ropts->connections != 0 ? ropts->connections : 4);
	if (rc == SLUICE_OK)
		rc = sluice__engine_create_exec(out, policy, eopts, &sluice__exec_redis_ops, x);
	if (rc != SLUICE_OK)
		redis_destroy(x);
	return rc;
}

int sluice__engine_redis_stats(struct sluice_engine *eng, struct sluice_redis_stats *out)
{
	struct exec_redis *x = sluice__engine_exec(eng, &sluice__exec_redis_ops);
	if (x == NULL || out == NULL)
		return SLUICE_EINVAL;
	return sluice__rpool_backend_stats(x->pool, out);
}
