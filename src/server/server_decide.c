/*
 * server_decide.c - the decision step of the example server: a request's
 * route and identities -> one decision over every limit of the policy.
 *
 * This file is the one place that knows how limits are enforced; the event
 * loop only calls server_decide() and server_decider_release(). It is built
 * from what libsluice offers today (docs/server.md, "Enforcement"):
 *
 *   - Rate-like limits (GCRA "rate", "sliding", "quota ...@utc") become GCRA
 *     rates of count per period with a bucket of `burst` (= count unless the
 *     policy says otherwise). The limits that share a key (same scopes, same
 *     "+class", same class list) go into one keyed limiter
 *     (sluice_limiter), which is all-or-nothing across them.
 *   - Across those groups a request is first peeked in every group (cost 0,
 *     nothing consumed); a group with no whole unit left denies it at once
 *     and nothing is consumed anywhere. Otherwise the groups admit in turn;
 *     only if a group's state changed between its peek and its admit (a
 *     racing request, a refill boundary) can an earlier group have consumed
 *     a unit for a request that is then denied. Never over-admits.
 *   - Concurrency limits: a lock-free table of in-flight counters per limit,
 *     keyed by a 40-bit keyed hash of the identity; a slot is taken after the
 *     rate groups admitted and given back when the response has been written.
 *
 * Identities (docs/server.md, "Identities"): scope "token" from
 * "Authorization: Bearer <t>", scope "ip" from the peer address (or the
 * rightmost X-Forwarded-For entry with --trust-forwarded-for), any other
 * scope "foo_bar" from header "X-Foo-Bar". A limit whose scopes the request
 * does not all carry is not applied to it.
 */
#include "server.h"

#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#define MAX_KEY 1024
/* Identities longer than this are keyed by their 128-bit keyed hash, so a
 * key of 8 scopes always fits the limiter's key. */
#define MAX_RAW_IDENTITY 96

struct group {
	uint32_t first_limit; /* a member's policy index: decides applicability */
	uint32_t scope_mask;
	bool per_class;
	uint32_t nlimits;
	uint32_t policy_limit[SLUICE_LIMITER_MAX_LIMITS]; /* limiter index -> policy index */
	struct sluice_limiter *lim;
};

/*
 * In-flight counters of one concurrency limit. Each word packs a 40-bit tag
 * (keyed hash of the key, never 0) and a 24-bit count. A word is claimed
 * once (0 -> tag) and keeps its tag forever, so a key has at most one word:
 * a thread that finds no word with its tag claims the first empty word of
 * its probe sequence, and every word before it was tagged (and stays so).
 * Full table: the policy's fail mode, decision degraded.
 */
#define SLOT_TABLE_BITS 18
#define SLOT_TABLE_SIZE (1u << SLOT_TABLE_BITS)
#define SLOT_PROBES 64
#define SLOT_COUNT_BITS 24
#define SLOT_COUNT_MASK ((UINT64_C(1) << SLOT_COUNT_BITS) - 1)

struct slots {
	uint32_t policy_limit;
	uint32_t scope_mask;
	bool per_class;
	uint64_t count;
	uint64_t retry_after_ns;
	_Atomic uint64_t *words;
};

struct server_decider {
	const struct sluice_policy *policy;
	const struct sluice_policy_spec *spec;
	struct server_decider_options opts;
	uint64_t frozen_mono_ns;
	int64_t unix_minus_mono_ns;
	int scope_token; /* index of the scope so named, or -1 */
	int scope_ip;
	char scope_header[SLUICE_POLICY_MAX_SCOPES][SLUICE_POLICY_MAX_NAME + 3];
	uint32_t ngroups;
	struct group groups[SLUICE_POLICY_MAX_LIMITS];
	uint32_t nslots;
	struct slots slots[SLUICE_POLICY_MAX_LIMITS];
	unsigned char secret[XXH3_SECRET_SIZE_MIN];
};

static bool limit_is_rate_like(const struct sluice_policy_limit *l)
{
	return l->kind != SLUICE_POLICY_KIND_CONCURRENCY;
}

static bool same_key_and_classes(const struct sluice_policy_limit *a,
				 const struct sluice_policy_limit *b)
{
	return a->scope_mask == b->scope_mask && a->per_class == b->per_class &&
	       a->all_classes == b->all_classes && (a->all_classes || a->class_mask == b->class_mask);
}

static uint64_t unit_hash64(const struct server_decider *d, const void *p, size_t n)
{
	return XXH3_64bits_withSecret(p, n, d->secret, sizeof d->secret);
}

int server_decider_create(struct server_decider **out, const struct sluice_policy *policy,
			  const struct server_decider_options *opts, const char **why)
{
	struct server_decider *d = calloc(1, sizeof *d);
	int rc;

	*why = "out of memory";
	if (d == NULL)
		return SLUICE_ENOMEM;
	d->policy = policy;
	d->spec = sluice_policy_spec(policy);
	d->opts = *opts;
	d->frozen_mono_ns = sluice_monotonic_ns();
	d->unix_minus_mono_ns = (int64_t)(sluice_realtime_ns() - d->frozen_mono_ns);
	/* The hash secret keys the concurrency tags (an attacker choosing
	 * tokens cannot aim at a victim's counter). */
	for (size_t i = 0; i < sizeof d->secret; i += 8) {
		uint64_t r = sluice_realtime_ns() ^ ((uint64_t)rand() << 32) ^ (uint64_t)(uintptr_t)d;
		r = XXH64(&r, sizeof r, i);
		memcpy(d->secret + i, &r, sizeof d->secret - i < 8 ? sizeof d->secret - i : 8);
	}

	d->scope_token = sluice_policy_scope_index(policy, "token");
	d->scope_ip = sluice_policy_scope_index(policy, "ip");
	for (uint32_t s = 0; s < d->spec->scope_count; s++) {
		/* "foo_bar" -> "X-Foo-Bar" (header names compare case-insensitively). */
		char *h = d->scope_header[s];
		const char *name = d->spec->scopes[s];
		size_t k = 0;
		h[k++] = 'X';
		h[k++] = '-';
		for (size_t i = 0; name[i] != '\0' && k < sizeof d->scope_header[s] - 1; i++)
			h[k++] = name[i] == '_' ? '-' : name[i];
		h[k] = '\0';
	}

	const struct sluice_limiter_options lopts = {
		.size = sizeof lopts,
		.max_keys = opts->max_keys,
		.fail_mode = d->spec->fail == SLUICE_POLICY_FAIL_CLOSED ? SLUICE_FAIL_CLOSED
									 : SLUICE_FAIL_OPEN,
	};
	bool grouped[SLUICE_POLICY_MAX_LIMITS] = { false };
	for (uint32_t i = 0; i < d->spec->limit_count; i++) {
		const struct sluice_policy_limit *l = &d->spec->limits[i];
		if (!limit_is_rate_like(l)) {
			struct slots *s = &d->slots[d->nslots++];
			s->policy_limit = i;
			s->scope_mask = l->scope_mask;
			s->per_class = l->per_class;
			s->count = l->count > SLOT_COUNT_MASK ? SLOT_COUNT_MASK : l->count;
			s->retry_after_ns = l->retry_after_ns ? l->retry_after_ns : SLUICE_NS_PER_SEC;
			s->words = calloc(SLOT_TABLE_SIZE, sizeof *s->words);
			if (s->words == NULL) {
				server_decider_destroy(d);
				return SLUICE_ENOMEM;
			}
			continue;
		}
		if (grouped[i])
			continue;
		struct group *g = &d->groups[d->ngroups++];
		struct sluice_limit limits[SLUICE_LIMITER_MAX_LIMITS];
		g->first_limit = i;
		g->scope_mask = l->scope_mask;
		g->per_class = l->per_class;
		for (uint32_t j = i; j < d->spec->limit_count && g->nlimits < SLUICE_LIMITER_MAX_LIMITS;
		     j++) {
			const struct sluice_policy_limit *m = &d->spec->limits[j];
			if (grouped[j] || !limit_is_rate_like(m) || !same_key_and_classes(l, m))
				continue;
			grouped[j] = true;
			memset(&limits[g->nlimits], 0, sizeof limits[0]);
			limits[g->nlimits].kind = SLUICE_LIMIT_GCRA;
			/* Tiers and overrides are not applied (no tier identity in a
			 * request yet): the base numbers. */
			rc = sluice_rate_init(&limits[g->nlimits].rate, m->count, m->period_ns, m->burst);
			if (rc != SLUICE_OK) {
				*why = "a limit's numbers are out of the GCRA range";
				server_decider_destroy(d);
				return rc;
			}
			g->policy_limit[g->nlimits++] = j;
		}
		rc = sluice_limiter_create(&g->lim, limits, g->nlimits, &lopts);
		if (rc != SLUICE_OK) {
			*why = "sluice_limiter_create failed";
			server_decider_destroy(d);
			return rc;
		}
		/* Reclaim keys whose limits are full again, a bounded batch a second. */
		rc = sluice_limiter_maintenance_start(g->lim, SLUICE_NS_PER_SEC, 4096, NULL, NULL);
		if (rc != SLUICE_OK) {
			*why = "cannot start the limiter's maintenance thread";
			server_decider_destroy(d);
			return rc;
		}
	}
	*why = NULL;
	*out = d;
	return SLUICE_OK;
}

void server_decider_destroy(struct server_decider *d)
{
	if (d == NULL)
		return;
	for (uint32_t i = 0; i < d->ngroups; i++) {
		if (d->groups[i].lim != NULL) {
			(void)sluice_limiter_maintenance_stop(d->groups[i].lim);
			sluice_limiter_destroy(d->groups[i].lim);
		}
	}
	for (uint32_t i = 0; i < d->nslots; i++)
		free(d->slots[i].words);
	free(d);
}

void server_decider_stats(const struct server_decider *d, struct sluice_limiter_stats *out)
{
	memset(out, 0, sizeof *out);
	out->size = sizeof *out;
	for (uint32_t i = 0; i < d->ngroups; i++) {
		struct sluice_limiter_stats s = { .size = sizeof s };
		if (sluice_limiter_stats(d->groups[i].lim, &s) != SLUICE_OK)
			continue;
		out->admitted += s.admitted;
		out->denied += s.denied;
		out->degraded += s.degraded;
		out->inserted += s.inserted;
		out->reclaimed += s.reclaimed;
		out->live_keys += s.live_keys;
		out->bytes += s.bytes;
	}
}

/* ------------------------------------------------------------------------
 * Identities.
 */
struct identity {
	const char *p;
	size_t len;
};

static bool ascii_ieq(const char *a, const char *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
		if (x >= 'A' && x <= 'Z')
			x = (unsigned char)(x + 32);
		if (y >= 'A' && y <= 'Z')
			y = (unsigned char)(y + 32);
		if (x != y)
			return false;
	}
	return true;
}

static void trim(const char **p, size_t *n)
{
	while (*n > 0 && (**p == ' ' || **p == '\t'))
		(*p)++, (*n)--;
	while (*n > 0 && ((*p)[*n - 1] == ' ' || (*p)[*n - 1] == '\t'))
		(*n)--;
}

static void extract_identities(const struct server_decider *d, const struct server_request *req,
			       struct identity *ids)
{
	for (uint32_t s = 0; s < d->spec->scope_count; s++) {
		const struct server_header *h;
		ids[s].p = NULL;
		ids[s].len = 0;
		if ((int)s == d->scope_token) {
			/* Authorization: Bearer <token> (scheme case-insensitive). */
			h = server_request_header(req, "Authorization");
			if (h == NULL || h->value_len <= 7 || !ascii_ieq(h->value, "Bearer ", 7))
				continue;
			ids[s].p = h->value + 7;
			ids[s].len = h->value_len - 7;
		} else if ((int)s == d->scope_ip) {
			h = d->opts.trust_forwarded_for ? server_request_header(req, "X-Forwarded-For")
							: NULL;
			if (h != NULL) {
				/* The rightmost entry: the one our trusted proxy added. */
				const char *comma = memrchr(h->value, ',', h->value_len);
				ids[s].p = comma ? comma + 1 : h->value;
				ids[s].len = h->value_len - (size_t)(ids[s].p - h->value);
			} else {
				ids[s].p = req->peer_ip;
				ids[s].len = req->peer_ip_len;
			}
		} else {
			h = server_request_header(req, d->scope_header[s]);
			if (h == NULL)
				continue;
			ids[s].p = h->value;
			ids[s].len = h->value_len;
		}
		trim(&ids[s].p, &ids[s].len);
		if (ids[s].len == 0)
			ids[s].p = NULL; /* an empty identity is no identity */
	}
}

/* The key of a (scopes, class) pair: for each scope in the mask, in index
 * order, a length byte and the identity (or 0xFF and its 128-bit keyed hash
 * when longer than MAX_RAW_IDENTITY); then the class id when per_class.
 * Returns the length, or 0 when the request lacks one of the identities. */
static size_t build_key(const struct server_decider *d, const struct identity *ids,
			uint32_t scope_mask, bool per_class, uint32_t class_id, unsigned char *key)
{
	size_t n = 0;

	for (uint32_t s = 0; s < d->spec->scope_count; s++) {
		if (!(scope_mask & (1u << s)))
			continue;
		if (ids[s].p == NULL)
			return 0;
		if (ids[s].len <= MAX_RAW_IDENTITY) {
			key[n++] = (unsigned char)ids[s].len;
			memcpy(key + n, ids[s].p, ids[s].len);
			n += ids[s].len;
		} else {
			XXH128_hash_t h = XXH3_128bits_withSecret(ids[s].p, ids[s].len, d->secret,
								  sizeof d->secret);
			key[n++] = 0xFF;
			memcpy(key + n, &h, sizeof h);
			n += sizeof h;
		}
	}
	if (per_class) {
		memcpy(key + n, &class_id, sizeof class_id);
		n += sizeof class_id;
	}
	return n == 0 ? 1 : n; /* no scope at all: the one global key "" + pad */
}
_Static_assert(SLUICE_POLICY_MAX_SCOPES * (1 + MAX_RAW_IDENTITY) + 4 <= SLUICE_LIMITER_MAX_KEY,
	       "a key of every scope fits the limiter");

/* ------------------------------------------------------------------------
 * Concurrency slots.
 */
static bool slot_take(struct slots *s, uint64_t hash, uint32_t *word_out, bool *tracked)
{
	uint64_t tag = (hash >> SLOT_COUNT_BITS) << SLOT_COUNT_BITS;
	uint32_t idx = (uint32_t)hash & (SLOT_TABLE_SIZE - 1);

	if (tag == 0)
		tag = UINT64_C(1) << SLOT_COUNT_BITS;
	*tracked = true;
	for (uint32_t probe = 0; probe < SLOT_PROBES; probe++, idx = (idx + 1) & (SLOT_TABLE_SIZE - 1)) {
		_Atomic uint64_t *w = &s->words[idx];
		/* relaxed: the word is the whole state (tag + count); nothing else is
		 * published through it, so no ordering with other memory is needed. */
		uint64_t cur = atomic_load_explicit(w, memory_order_relaxed); /* relaxed: see above */
		for (;;) {
			if (cur == 0) {
				/* relaxed on both paths: as above; a failed claim reloads cur
				 * and rechecks it (another key may have taken the word). */
				if (atomic_compare_exchange_weak_explicit(w, &cur, tag | 1, memory_order_relaxed, memory_order_relaxed)) { /* relaxed/relaxed: see above */
					*word_out = idx;
					return true;
				}
				continue;
			}
			if ((cur & ~SLOT_COUNT_MASK) != tag)
				break; /* another key's word: next probe */
			if ((cur & SLOT_COUNT_MASK) >= s->count)
				return false; /* every slot of this key is taken */
			/* relaxed on both paths: a counter; the CAS itself keeps it exact. */
			if (atomic_compare_exchange_weak_explicit(w, &cur, cur + 1, memory_order_relaxed, memory_order_relaxed)) { /* relaxed/relaxed: see above */
				*word_out = idx;
				return true;
			}
		}
	}
	*tracked = false; /* table region full: the fail mode decides */
	return false;
}

static void slot_give(struct slots *s, uint32_t idx)
{
	/* relaxed: a counter; the count never underflows because only a holder
	 * (who incremented it) decrements, once. */
	atomic_fetch_sub_explicit(&s->words[idx], 1, memory_order_relaxed); /* relaxed: a counter */
}

void server_decider_release(struct server_decider *d, const uint32_t *slots, uint32_t *nslots)
{
	for (uint32_t i = 0; i < *nslots; i++)
		slot_give(&d->slots[slots[i] >> SLOT_TABLE_BITS], slots[i] & (SLOT_TABLE_SIZE - 1));
	*nslots = 0;
}

/* ------------------------------------------------------------------------
 * The decision.
 */
static void add_render_limit(struct server_decider *d, struct server_verdict *v,
			     const struct sluice_decision *dec)
{
	const struct sluice_policy_limit *l = &d->spec->limits[dec->limit_index];
	struct sluice_http_limit *h = &v->limits[v->nlimits++];

	memset(h, 0, sizeof *h);
	h->name = l->name;
	h->decision = *dec;
	h->quota = l->count;
	h->window_ns = l->period_ns;
}

/* Of the rendered limits: a denying one, else the least remaining (ties: the
 * longer reset), as the single-limit header families describe. */
static void pick_governing(struct server_verdict *v)
{
	const struct sluice_decision *best = NULL;

	for (size_t i = 0; i < v->nlimits; i++) {
		const struct sluice_decision *c = &v->limits[i].decision;
		if (best == NULL || (!c->allowed && best->allowed) ||
		    (c->allowed == best->allowed &&
		     (c->remaining < best->remaining ||
		      (c->remaining == best->remaining && c->reset_ns > best->reset_ns))))
			best = c;
	}
	if (best != NULL)
		v->decision = *best;
}

static unsigned families_of(const struct sluice_policy_spec *spec)
{
	unsigned f = spec->retry_after ? SLUICE_HTTP_RETRY_AFTER : 0;

	switch (spec->headers) {
	case SLUICE_HEADERS_DRAFT6: return f | SLUICE_HTTP_DRAFT06;
	case SLUICE_HEADERS_DRAFT7: return f | SLUICE_HTTP_DRAFT07;
	case SLUICE_HEADERS_DRAFT11: return f | SLUICE_HTTP_DRAFT11;
	case SLUICE_HEADERS_XRATELIMIT:
		if (spec->reset == SLUICE_RESET_UNIX_S)
			return f | SLUICE_HTTP_X_UNIX_S;
		if (spec->reset == SLUICE_RESET_UNIX_MS)
			return f | SLUICE_HTTP_X_UNIX_MS;
		return f | SLUICE_HTTP_X_DELTA;
	default: return f;
	}
}

static void deny(struct server_verdict *v, const struct sluice_decision *dec)
{
	v->status = 429;
	v->decision = *dec;
}

void server_decide(struct server_decider *d, const struct server_request *req,
		   struct server_verdict *v)
{
	struct identity ids[SLUICE_POLICY_MAX_SCOPES];
	unsigned char keys[SLUICE_POLICY_MAX_LIMITS][MAX_KEY];
	size_t key_len[SLUICE_POLICY_MAX_LIMITS];
	struct sluice_decision peek[SLUICE_POLICY_MAX_LIMITS];
	bool active[SLUICE_POLICY_MAX_LIMITS] = { false };
	uint64_t mono = d->opts.frozen_clock ? d->frozen_mono_ns : sluice_monotonic_ns();

	memset(v, 0, sizeof *v);
	v->status = 200;
	v->families = families_of(d->spec);
	v->body_style = d->spec->body;
	v->now_unix_ns = (uint64_t)((int64_t)mono + d->unix_minus_mono_ns);
	v->decision.allowed = true;

	int cls = sluice_policy_match(d->policy, req->method, req->method_len, req->path,
				      req->path_len);
	if (cls < 0) {
		v->status = 400;
		return;
	}
	v->class_id = (uint32_t)cls;
	uint32_t applicable = sluice_policy_class_limits(d->policy, v->class_id);
	extract_identities(d, req, ids);

	/* 1. Peek every applicable group: a group out of units denies the
	 * request before anything is consumed. */
	for (uint32_t g = 0; g < d->ngroups; g++) {
		struct group *gr = &d->groups[g];
		if (!(applicable & (1u << gr->first_limit)))
			continue;
		key_len[g] = build_key(d, ids, gr->scope_mask, gr->per_class, v->class_id, keys[g]);
		if (key_len[g] == 0)
			continue; /* the request lacks this group's identity */
		if (sluice_limiter_peek(gr->lim, keys[g], key_len[g], mono, &peek[g]) != SLUICE_OK)
			continue;
		active[g] = true;
		v->limited = true;
		if (peek[g].remaining == 0)
			goto admit_in_order; /* the admit below gives the denial its numbers */
	}

admit_in_order:
	/* 2. Admit group by group (the peeked-empty one first, if any: it is
	 * the likely denial and then nothing else is touched). */
	for (uint32_t pass = 0; pass < 2; pass++) {
		for (uint32_t g = 0; g < d->ngroups; g++) {
			struct group *gr = &d->groups[g];
			struct sluice_decision dec;
			if (!(applicable & (1u << gr->first_limit)))
				continue;
			if (!active[g]) {
				/* Not peeked yet (the peek loop stopped early) or no identity. */
				if (pass == 1)
					continue;
				key_len[g] = build_key(d, ids, gr->scope_mask, gr->per_class, v->class_id,
						       keys[g]);
				if (key_len[g] == 0)
					continue;
				active[g] = true;
				v->limited = true;
				peek[g].remaining = 1; /* admit it in pass 1 */
			}
			bool empty = peek[g].remaining == 0;
			if ((pass == 0) != empty)
				continue;
			if (sluice_limiter_admit(gr->lim, keys[g], key_len[g], 1, mono, &dec) != SLUICE_OK) {
				active[g] = false;
				continue;
			}
			dec.limit_index = gr->policy_limit[dec.limit_index];
			if (!dec.allowed) {
				v->nlimits = 0;
				add_render_limit(d, v, &dec);
				deny(v, &dec);
				v->decision.degraded = dec.degraded;
				return;
			}
			add_render_limit(d, v, &dec);
		}
	}

	/* 3. Concurrency slots, held until the response is written. */
	for (uint32_t c = 0; c < d->nslots; c++) {
		struct slots *s = &d->slots[c];
		unsigned char key[MAX_KEY];
		uint32_t word;
		bool tracked;
		if (!(applicable & (1u << s->policy_limit)))
			continue;
		size_t n = build_key(d, ids, s->scope_mask, s->per_class, v->class_id, key);
		if (n == 0)
			continue;
		v->limited = true;
		if (slot_take(s, unit_hash64(d, key, n), &word, &tracked)) {
			v->slots[v->nslots++] = (c << SLOT_TABLE_BITS) | word;
			continue;
		}
		struct sluice_decision dec = {
			.allowed = false,
			.limit_index = s->policy_limit,
			.limit = s->count,
			.remaining = 0,
			.reset_ns = s->retry_after_ns,
			.retry_after_ns = s->retry_after_ns,
			.reason = SLUICE_REASON_CONCURRENCY,
		};
		if (!tracked) {
			dec.degraded = true;
			if (d->spec->fail == SLUICE_POLICY_FAIL_OPEN)
				continue; /* admitted unmetered, as the limiter's fail-open */
			dec.reason = SLUICE_REASON_CAPACITY;
		}
		server_decider_release(d, v->slots, &v->nslots);
		v->nlimits = 0;
		add_render_limit(d, v, &dec);
		deny(v, &dec);
		return;
	}
	pick_governing(v);
}
