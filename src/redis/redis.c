/*
 * redis.c - the Redis backend: the keyed limiter's limits (every kind)
 * evaluated atomically on a Redis server by one Lua script (limits.lua;
 * docs/redis.md). This file holds the public API (create, admit, acquire,
 * release, batch, stats); this comment tells how the whole backend works.
 * The other files, one job each (docs/redis.md, "Source files"):
 *   redis_internal.h  the handle, a prepared request, cross-file functions
 *   limits.lua        the script (embedded at build time: embed_script.cmake)
 *   redis_args.c      validation, flattening, the script's arguments
 *   redis_exchange.c  pipelined rounds, NOSCRIPT, MOVED, ASK, TRYAGAIN
 *   redis_decide.c    replies decoded into decisions (pure), fail mode
 *   redis_govern.c    the governing rule
 *   redis_cache.c     the local deny cache
 *   redis_lease.c     the local lease
 *   redis_conn.c      connections, timeouts, SIGPIPE
 *   redis_cluster.c   hash slots, the slot map, redirections
 *   redis_cross.c     the cross-slot reserve/cancel protocol
 *   redis_stubs.c     the build without hiredis
 *
 * The algorithms are the cells' (gcra.c, window_counter.c, calendar.c,
 * window_log.c, slots.c) and the composition is the keyed limiter's
 * (src/limiter/decide.c): per scope, a dry run over every limit in the limiter's order
 * (its first GCRA limit, then the others) stops at the first denier and
 * writes nothing; the scope's slots limit is then taken; if nothing denies,
 * every limit is written. On Redis the script is atomic (no other command
 * runs during it), so the dry run and the writes need no receipts. One
 * write survives a denial, as in process: an earlier scope's slot taken over
 * from an expired lease is left free with the take-over recorded (deny()
 * in limits.lua),
 * which is what the in-process engine's acquire and cancel leave; a
 * cross-slot cancel likewise releases such a slot instead of restoring it.
 * Each limit's state is one field of the scope's hash (GCRA: F; counter:
 * "k_s:prev:cur"; calendar: "k_s:count"; log: the last `limit` unit times;
 * slots: tag, count and the slots' words).
 *
 * Division of labour. The script decides (it applies each cell's admission
 * test exactly) and reports every limit's state before the call; C rebuilds
 * each cell from that state in a private copy and runs the cell's own code
 * to fill the decision (remaining, reset_ns, retry_after_ns), so the
 * decision is the limiter's by construction (redis_decide.c). Decoding
 * is pure: the decoder returns what the answer taught about the deny
 * cache's limits and the exchange writes the cache.
 *
 * Exactness in Lua (doubles). Times (F, now) are up to 2^64 ns, stored as
 * decimal strings and split into (s = floor(x / 10^9), ns = x mod 10^9) by
 * string slicing: both parts are below 2^35 and exact. Durations (need,
 * slack, windows, leases, and any debt that can admit) are at most 2^52
 * (SLUICE_REDIS_MAX_TOLERANCE_NS, checked here before sending), so
 * debt = s * 10^9 + ns is exact whenever s < 4503600 (< 2^53), and a larger s
 * means debt > 2^52 >= slack: a denial, with the exact pair returned. The
 * counter's test (limit - cur - c) * W >= prev * (W - e) runs on base-2^32
 * limbs. Window indexes are kept mod 2^24 / 2^32 as in the cells. Every
 * floor division is corrected by exact multiplication.
 *
 * Cross-slot requests (cluster): redis_cross.c reserves slot group by slot
 * group with receipts and cancels in reverse order on a denial. ASK (a slot
 * being migrated) is followed once per call, for every mode (ask_one(),
 * call_script() in redis_exchange.c); TRYAGAIN (a call's keys split by the
 * migration: the script did not run) is resent after a short pause within
 * the call's deadline (rounds(), call_script(), tryagain_pause()).
 *
 * Deny cache (optional): requests whose limits are all GCRA or calendar
 * are denied locally while a state learnt from an earlier reply provably
 * still denies (GCRA: F only grows; calendar: the count only grows within
 * the window seen) (redis_cache.c; docs/redis.md, "Deny cache").
 *
 * Local lease (optional): a hot GCRA-only, one-slot request shape takes L
 * units in one call and answers later requests from them locally
 * (redis_lease.c; docs/redis.md, "Local lease").
 *
 * Connections. One hiredis blocking context per node (one node unless in
 * cluster mode, where requests go to the node of their keys' hash slot:
 * CLUSTER SLOTS, then MOVED corrections). Every blocking step
 * (connect, write, read) gets the time left until the call's deadline as its
 * socket timeout, so a call never blocks past timeout_ns. A connection that
 * fails in a call is dropped; if it had been working (say the server
 * restarted) the call reconnects at once, within its deadline; otherwise the
 * next attempt waits for an exponential backoff and calls in between answer
 * by the fail mode without touching the network. NOSCRIPT reloads the script
 * and retries once. hiredis writes with write(2), which raises SIGPIPE on a
 * reset connection: SIGPIPE is blocked in the calling thread during I/O and a
 * pending one that we caused is consumed, so the process's signal handling
 * is left as it was.
 */
#include "redis/redis_internal.h"
#include "redis/redis_backend_internal.h"

#ifdef SLUICE_WITH_REDIS

#include <stdlib.h>
#include <string.h>

/* admit_scopes and acquire_scopes. */
static int admit_one(struct sluice_redis *r, const struct sluice_redis_scope *scopes, size_t nscopes,
		     uint64_t cost, uint64_t now_ns, struct sluice_decision *out,
		     sluice_slot_handle *handles, struct sluice_decision *each, bool check_limits)
{
	if (r == NULL || out == NULL)
		return SLUICE_EINVAL;
	struct sluice_redis_request req = { scopes, nscopes, cost };
	struct prepared p;
	/* sluice__redis_admit_each()'s limits were validated once, before. */
	int rc = sluice__redis_prepare_checked(r, &req, &p, check_limits);
	if (rc != SLUICE_OK)
		return rc;
	if (p.has_slots && cost > 0 && handles == NULL)
		return SLUICE_EINVAL; /* as sluice_limiter_admit(): slot policies are acquired */
	if (handles != NULL)
		for (size_t s = 0; s < nscopes; s++)
			handles[s] = SLUICE_SLOT_NONE;
	/* Scope s creates a slots state with tag slots_tag + s (mod 2^24 - 1,
	 * never 0): a fresh tag per state, as a cell's init draws one. */
	r->slots_tag = r->next_tag;
	r->next_tag = (r->next_tag - 1 + nscopes) % 0xffffff + 1;
	/* Nothing reported yet (a denial, a degraded or a leased answer
	 * reports nothing more; each group of a cross-slot request its own). */
	for (size_t k = 0; each != NULL && k < p.nlimits; k++)
		each[k].limit_index = UINT32_MAX;
	p.each = each;
	if (p.cross)
		return sluice__redis_admit_cross(r, &p, now_ns, out, handles);
	p.handles = cost > 0 ? handles : NULL;
	return sluice__redis_admit_prepared(r, &p, 1, now_ns, out);
}

int sluice__redis_admit_each(struct sluice_redis *r, const struct sluice_redis_scope *scopes, size_t nscopes,
			     uint64_t cost, uint64_t now_ns, struct sluice_decision *out,
			     struct sluice_decision *each, sluice_slot_handle *handles)
{
	if (handles != NULL)
		for (size_t s = 0; s < nscopes && s < SLUICE_REDIS_MAX_SCOPES; s++)
			handles[s] = SLUICE_SLOT_NONE;
	return admit_one(r, scopes, nscopes, cost, now_ns, out, handles, each, false);
}

int sluice_redis_admit_scopes(struct sluice_redis *r, const struct sluice_redis_scope *scopes,
			      size_t nscopes, uint64_t cost, uint64_t now_ns, struct sluice_decision *out)
{
	return admit_one(r, scopes, nscopes, cost, now_ns, out, NULL, NULL, true);
}

int sluice_redis_acquire_scopes(struct sluice_redis *r, const struct sluice_redis_scope *scopes,
				size_t nscopes, uint64_t cost, uint64_t now_ns, struct sluice_decision *out,
				sluice_slot_handle *handles)
{
	if (handles == NULL)
		return SLUICE_EINVAL;
	for (size_t s = 0; s < nscopes && s < SLUICE_REDIS_MAX_SCOPES; s++)
		handles[s] = SLUICE_SLOT_NONE;
	return admit_one(r, scopes, nscopes, cost, now_ns, out, handles, NULL, true);
}

int sluice_redis_release(struct sluice_redis *r, const struct sluice_redis_scope *scope,
			 sluice_slot_handle handle)
{
	if (r == NULL || scope == NULL)
		return SLUICE_EINVAL;
	struct sluice_redis_request req = { scope, 1, 0 };
	struct prepared p;
	int rc = sluice__redis_prepare(r, &req, &p);
	if (rc != SLUICE_OK)
		return rc;
	size_t j = 0;
	while (j < p.nlimits && p.limit[j]->kind != SLUICE_LIMIT_SLOTS)
		j++;
	if (j == p.nlimits)
		return SLUICE_EINVAL; /* the policy has no slots */
	const struct sluice_slots_config *cfg = &p.limit[j]->slots;
	uint64_t index = handle & 0xfff, gen = handle >> 12 & 0xfffffff, tag = handle >> 40;
	if (index >= cfg->slots || gen == 0) {
		/* Malformed (SLUICE_SLOT_NONE too): ESTALE as
		 * sluice_slots_release(), but only for a key that exists, as
		 * sluice_limiter_release() looks the key up first. Tag 0 is
		 * never a state's (tags are 1 .. 2^24 - 1), so the server
		 * answers 3 (no key) or 2 (stale) and changes nothing. */
		tag = 0;
		gen = 0;
		index = 0;
	}
	char *w;
	int argc = sluice__redis_head_args(r, &p, 0, "r", &w);
#define NUM(v) (r->argv[argc] = w, r->argvlen[argc++] = sluice__u64_to_dec(w, (v)), w += NUM_MAX)
	r->argv[argc] = w;
	r->argvlen[argc++] = sluice__redis_field_name(w, 's', p.index[j], cfg->slots, cfg->lease_ttl_ns);
	w += FIELD_MAX;
	NUM(cfg->slots);
	NUM(tag);
	NUM(gen);
	NUM(index);
#undef NUM
	uint64_t deadline = sluice__add_sat(sluice_monotonic_ns(), r->timeout_ns);
	struct sluice__sigpipe_guard guard;
	sluice__redis_sigpipe_block(&guard);
	redisReply *rep = sluice__redis_call_script(r, p.slot, argc, deadline);
	sluice__redis_sigpipe_restore(&guard);
	if (rep == NULL)
		return SLUICE_EBACKEND;
	static const int codes[4] = { SLUICE_OK, SLUICE_EDOUBLE, SLUICE_ESTALE, SLUICE_ENOTFOUND };
	rc = SLUICE_EPROTO;
	if (rep->type == REDIS_REPLY_INTEGER && rep->integer >= 0 && rep->integer <= 3)
		rc = codes[rep->integer];
	else if (rep->type == REDIS_REPLY_ERROR && strstr(rep->str, "READONLY") != NULL)
		r->st.readonly++, rc = SLUICE_EBACKEND;
	else
		r->st.server_errors++;
	freeReplyObject(rep);
	return rc;
}

int sluice_redis_admit(struct sluice_redis *r, const void *key, size_t key_len,
		       const struct sluice_limit *limits, size_t nlimits, uint64_t cost, uint64_t now_ns,
		       struct sluice_decision *out)
{
	struct sluice_redis_scope scope = { key, key_len, limits, nlimits };
	return sluice_redis_admit_scopes(r, &scope, 1, cost, now_ns, out);
}

int sluice_redis_admit_batch(struct sluice_redis *r, const struct sluice_redis_request *reqs,
			     size_t n, uint64_t now_ns, struct sluice_decision *out)
{
	if (r == NULL || (n > 0 && (reqs == NULL || out == NULL)))
		return SLUICE_EINVAL;
	if (n == 0)
		return SLUICE_OK;
	if (n > r->prep_cap) {
		if (n > SIZE_MAX / sizeof *r->prep)
			return SLUICE_ENOMEM;
		struct prepared *np = realloc(r->prep, n * sizeof *np);
		if (np == NULL)
			return SLUICE_ENOMEM;
		r->prep = np;
		r->prep_cap = n;
	}
	for (size_t i = 0; i < n; i++) {
		int rc = sluice__redis_prepare(r, &reqs[i], &r->prep[i]);
		if (rc != SLUICE_OK)
			return rc;
		if (r->prep[i].has_slots && reqs[i].cost > 0)
			return SLUICE_EINVAL; /* slot policies are acquired */
	}
	/* Runs of single-slot requests are pipelined; a cross-slot request
	 * runs its protocol alone, in its place in the order. */
	for (size_t i = 0; i < n;) {
		size_t j = i;
		while (j < n && !r->prep[j].cross)
			j++;
		if (j > i)
			sluice__redis_admit_prepared(r, r->prep + i, j - i, now_ns, out + i);
		if (j < n)
			sluice__redis_admit_cross(r, &r->prep[j], now_ns, &out[j], NULL);
		i = j + 1;
	}
	return SLUICE_OK;
}

int sluice_redis_stats(const struct sluice_redis *r, struct sluice_redis_stats *out)
{
	if (r == NULL || out == NULL ||
	    (out->size != SLUICE_REDIS_STATS_V1_SIZE && out->size != SLUICE_REDIS_STATS_V2_SIZE &&
	     out->size < sizeof *out))
		return SLUICE_EINVAL;
	/* A version-1 caller's struct ends before the lease fields, a
	 * version-2 caller's before tryagain. */
	size_t n = out->size < sizeof *out ? out->size : sizeof *out;
	memcpy(out, &r->st, n);
	out->size = n;
	return SLUICE_OK;
}

static char *dup_str(const char *s)
{
	size_t n = strlen(s) + 1;
	char *d = malloc(n);
	if (d != NULL)
		memcpy(d, s, n);
	return d;
}

int sluice_redis_create(struct sluice_redis **out, const struct sluice_redis_options *opts)
{
	struct sluice_redis_options o = { .size = sizeof o };

	if (out == NULL)
		return SLUICE_EINVAL;
	*out = NULL;
	if (opts != NULL) {
		/* Version 1 (no lease fields) or the current one. */
		if (opts->size != SLUICE_REDIS_OPTIONS_V1_SIZE && opts->size < sizeof o)
			return SLUICE_EINVAL;
		memcpy(&o, opts, opts->size < sizeof o ? opts->size : sizeof o);
	}
	const char *host = o.host != NULL ? o.host : "127.0.0.1";
	if (o.fail_mode > SLUICE_FAIL_CLOSED ||
	    (o.flags & ~(SLUICE_REDIS_CALLER_CLOCK | SLUICE_REDIS_CLUSTER)) ||
	    strlen(host) == 0 || strlen(host) >= HOST_MAX ||
	    o.port > 65535 || (o.deny_cache_slots & (o.deny_cache_slots - 1)) != 0 ||
	    o.expiry_grace_ns > SLUICE_REDIS_MAX_TOLERANCE_NS / 2 ||
	    (o.lease_slots & (o.lease_slots - 1)) != 0 || o.lease_reserved_ != 0 ||
	    o.lease_ttl_ns > SLUICE_REDIS_MAX_TOLERANCE_NS)
		return SLUICE_EINVAL;
	if (o.timeout_ns == 0)
		o.timeout_ns = 50 * 1000 * 1000;
	if (o.backoff_min_ns == 0)
		o.backoff_min_ns = 10 * 1000 * 1000;
	if (o.backoff_max_ns == 0)
		o.backoff_max_ns = SLUICE_NS_PER_SEC;
	if (o.backoff_min_ns > o.backoff_max_ns)
		return SLUICE_EINVAL;

	struct sluice_redis *r = calloc(1, sizeof *r);
	if (r == NULL)
		return SLUICE_ENOMEM;
	r->prefix = dup_str(o.key_prefix != NULL ? o.key_prefix : "sluice:");
	if (r->prefix == NULL)
		goto nomem;
	if (o.flags & SLUICE_REDIS_CLUSTER) {
		/* All slots start at node 0; CLUSTER SLOTS and MOVED fill in. */
		r->slot_node = calloc(CLUSTER_SLOTS, 1);
		r->groups = calloc(SLUICE_REDIS_MAX_SCOPES, sizeof *r->groups);
		if (r->slot_node == NULL || r->groups == NULL)
			goto nomem;
	}
	r->prefix_len = strlen(r->prefix);
	r->buf_cap = sluice__redis_buf_size_for(r->prefix_len);
	r->buf = malloc(r->buf_cap);
	if (r->buf == NULL)
		goto nomem;
	if (o.deny_cache_slots != 0) {
		r->cache = calloc(o.deny_cache_slots, sizeof *r->cache);
		if (r->cache == NULL)
			goto nomem;
		r->cache_mask = o.deny_cache_slots - 1;
	}
	/* Seeds the tags of the deny cache and of the lease shapes. */
	r->cache_seed = sluice_monotonic_ns() ^ (uint64_t)(uintptr_t)r;
	if (o.lease_units != 0) {
		uint32_t slots = o.lease_slots != 0 ? o.lease_slots : 64;
		r->lease = calloc(slots, sizeof *r->lease);
		if (r->lease == NULL)
			goto nomem;
		r->lease_mask = slots - 1;
		r->lease_units = o.lease_units;
		r->lease_hot_hits = o.lease_hot_hits != 0 ? o.lease_hot_hits : o.lease_units;
		r->lease_ttl_ns = o.lease_ttl_ns != 0 ? o.lease_ttl_ns : 100 * 1000 * 1000;
	}
	memcpy(r->nodes[0].host, host, strlen(host) + 1);
	r->next_tag = (sluice_monotonic_ns() ^ (uint64_t)(uintptr_t)r) % 0xffffff + 1;
	r->slots_tag = r->next_tag;
	r->nodes[0].port = o.port != 0 ? (int)o.port : 6379;
	r->nodes[0].backoff_ns = o.backoff_min_ns;
	r->nnodes = 1;
	r->fail_mode = o.fail_mode;
	r->flags = o.flags;
	r->timeout_ns = o.timeout_ns;
	r->grace_len = sluice__u64_to_dec(r->grace, o.expiry_grace_ns);
	r->backoff_min_ns = o.backoff_min_ns;
	r->backoff_max_ns = o.backoff_max_ns;
	r->st.size = sizeof r->st;

	struct sluice__sigpipe_guard guard;
	sluice__redis_sigpipe_block(&guard);
	uint64_t deadline = sluice__add_sat(sluice_monotonic_ns(), r->timeout_ns);
	(void)sluice__redis_ensure_connected(r, &r->nodes[0], deadline);
	sluice__redis_sigpipe_restore(&guard);
	*out = r;
	return SLUICE_OK;
nomem:
	sluice_redis_destroy(r);
	return SLUICE_ENOMEM;
}

void sluice_redis_destroy(struct sluice_redis *r)
{
	if (r == NULL)
		return;
	for (uint32_t i = 0; i < r->nnodes; i++)
		sluice__redis_drop(&r->nodes[i]);
	free(r->slot_node);
	free(r->groups);
	free(r->log_cell);
	free(r->prefix);
	free(r->buf);
	free(r->cache);
	free(r->lease);
	free(r->prep);
	free(r);
}

#endif /* SLUICE_WITH_REDIS */
