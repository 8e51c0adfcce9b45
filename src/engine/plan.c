/*
 * plan.c - the engine's planner: one request -> the limits that apply to
 * it, the binding in force for each and the length of each limit's key.
 * One planner for every executor (in process, Redis), so that the class,
 * the applicable limits and the numbers in force cannot differ between
 * them.
 *
 * A limit applies to a request when it applies to the route's class
 * (sluice_policy_class_limits) and the request carries an identity for
 * every scope of the limit. Its binding is an override in force for one of
 * the limit's scopes' identities at now_ns (the first scope that has one),
 * else the tier's numbers when the limit is tiered and the request names a
 * tier, else the base numbers. Its key is each scope's identity as a 2-byte
 * little-endian length and its bytes, in scope order, then the class name
 * for a per-class limit: a key is never empty (a limit has a scope or is
 * per class), and its length is computed here so that an over-long key is
 * an error before any executor consumes anything.
 *
 * Identity rules. Each scope's rule (sluice_policy_scope_rule) says what a
 * request without an identity for it gets; the planner applies it here, so
 * that every executor and every embedder gets the same answer. Resolving
 * scope s: while the scope at hand has no identity and its rule is
 * "fallback f", move to f (the load refused cycles, so this ends within
 * SLUICE_POLICY_MAX_SCOPES - 1 steps). The chain ends at a scope with an
 * identity, which stands in for s (via[s]), or at one without, whose rule
 * decides: "optional", the limits keyed by s do not apply; "required", a
 * check whose class has a limit keyed by s is refused with
 * SLUICE_REASON_IDENTITY before anything is consumed. A stand-in identity
 * is keyed apart from every identity of s itself: its length prefix's high
 * byte is 0x80 | via << 1 | len >> 8, while a scope's own identity (at most
 * SLUICE_ENGINE_MAX_IDENTITY = 256 bytes) has a high byte of 0 or 1; so a
 * token equal to an IP string never shares state with that IP's fallback
 * budget, and two different stand-in scopes never share one either.
 * Overrides name identities of the scope itself, so a stand-in finds none.
 */
#include <string.h>

#include "common/util_internal.h"
#include "engine/engine_internal.h"

#define KEY_MAX SLUICE__ENGINE_KEY_MAX

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

int sluice__plan_validate(const struct sluice_policy_spec *spec, const struct sluice_engine_request *req,
			  bool need_route)
{
	if (req->identity_count > 0 && req->identities == NULL)
		return SLUICE_EINVAL;
	if (req->tier < SLUICE_POLICY_NO_TIER || (req->tier >= 0 && (uint32_t)req->tier >= spec->tier_count))
		return SLUICE_EINVAL;
	if (need_route && (req->method == NULL || req->path == NULL))
		return SLUICE_EINVAL;
	for (uint32_t s = 0; s < req->identity_count; s++)
		if (req->identities[s].len > SLUICE_ENGINE_MAX_IDENTITY)
			return SLUICE_EKEY;
	return SLUICE_OK;
}

_Static_assert(SLUICE_ENGINE_MAX_IDENTITY <= 0x1ff && SLUICE_POLICY_MAX_SCOPES <= 64,
	       "a key's length prefix holds len >> 8 in bit 0 and the stand-in scope in bits 1..6");

/* Resolve every scope's identity (see "Identity rules"); returns the mask
 * of scopes whose chain ends at a required scope without identity. */
static uint32_t resolve_identities(const struct sluice_policy_spec *spec, const struct sluice_engine_request *req,
				   struct sluice__plan *p)
{
	uint32_t refuse = 0;

	for (uint32_t s = 0; s < spec->scope_count; s++) {
		uint32_t at = s;
		while (!sluice__plan_has_identity(req, at) &&
		       spec->scope_rules[at].rule == SLUICE_POLICY_IDENTITY_FALLBACK)
			at = spec->scope_rules[at].fallback;
		if (sluice__plan_has_identity(req, at)) {
			p->ids[s] = req->identities[at];
			p->via[s] = (uint8_t)at;
		} else {
			p->ids[s].bytes = NULL;
			p->ids[s].len = 0;
			p->via[s] = (uint8_t)s;
			if (spec->scope_rules[at].rule == SLUICE_POLICY_IDENTITY_REQUIRED)
				refuse |= UINT32_C(1) << s;
		}
	}
	return refuse;
}

/* The limits that a request's own identities keep from applying ("unless
 * <scope>": the limit is for callers without that identity). A stand-in
 * (fallback) identity is not the scope's own: it does not count. */
static uint32_t unless_skipped(const struct sluice_policy_spec *spec, const struct sluice_engine_request *req)
{
	uint32_t present = 0, skipped = 0;

	for (uint32_t s = 0; s < spec->scope_count; s++)
		if (sluice__plan_has_identity(req, s))
			present |= UINT32_C(1) << s;
	for (uint32_t i = 0; i < spec->limit_count; i++)
		if ((spec->unless_limits & (UINT32_C(1) << i)) && (spec->limits[i].unless_mask & present))
			skipped |= UINT32_C(1) << i;
	return skipped;
}

/* The key length of a limit for a request: 0 when a scope has no identity
 * (the limit does not apply), SIZE_MAX when too long. */
static size_t key_length(const struct sluice__plan *p, uint32_t scope_mask, bool per_class, uint32_t class_id)
{
	const struct sluice_policy_spec *spec = p->spec;
	size_t n = 0;

	for (uint32_t s = 0; s < spec->scope_count; s++) {
		if (!(scope_mask & (UINT32_C(1) << s)))
			continue;
		if (p->ids[s].bytes == NULL)
			return 0;
		n += 2 + p->ids[s].len;
	}
	if (per_class)
		n += strlen(spec->classes[class_id]);
	return n == 0 || n > KEY_MAX ? SIZE_MAX : n;
}

size_t sluice__plan_key(const struct sluice__plan *p, uint32_t j, unsigned char *key)
{
	const struct sluice_policy_limit *pl = &p->spec->limits[p->item[j].limit];
	size_t n = 0;

	for (uint32_t s = 0; s < p->spec->scope_count; s++) {
		if (!(pl->scope_mask & (UINT32_C(1) << s)))
			continue;
		size_t len = p->ids[s].len;
		unsigned stand_in = p->via[s] == s ? 0 : 0x80u | (unsigned)p->via[s] << 1;
		key[n++] = (unsigned char)(len & 0xff);
		key[n++] = (unsigned char)(stand_in | len >> 8);
		memcpy(key + n, p->ids[s].bytes, len);
		n += len;
	}
	if (pl->per_class) {
		const char *name = p->spec->classes[p->class_id];
		size_t len = strlen(name);
		memcpy(key + n, name, len);
		n += len;
	}
	return n;
}

/* The binding in force for limit i: an override, else the tier's, else the
 * base. */
static struct sluice__binding *binding_for(const struct sluice__state *st, uint32_t i,
					   const struct sluice__plan *p, bool *overridden)
{
	const struct sluice_policy_limit *pl = &st->spec->limits[i];
	const struct sluice_engine_request *req = p->req;

	*overridden = false;
	if (st->spec->override_count != 0) {
		for (uint32_t s = 0; s < st->spec->scope_count; s++) {
			if (!(pl->scope_mask & (UINT32_C(1) << s)) || p->ids[s].bytes == NULL || p->via[s] != s)
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

int sluice__plan_build(const struct sluice__state *st, const struct sluice_engine_request *req,
		       enum sluice__plan_mode mode, struct sluice__plan *p)
{
	const struct sluice_policy_spec *spec = st->spec;
	bool check = mode == SLUICE__PLAN_CHECK;

	p->policy = st->policy;
	p->spec = spec;
	p->req = req;
	p->n = 0;
	p->applied = 0;
	p->refused_scope = -1;
	int rc = sluice__plan_validate(spec, req, check);
	if (rc != SLUICE_OK)
		return rc;
	int cls;
	if (check || req->path != NULL) {
		if (req->method == NULL)
			return SLUICE_EINVAL;
		cls = sluice_policy_match(st->policy, req->method, req->method_len, req->path, req->path_len);
		if (cls < 0)
			return cls;
	} else {
		cls = SLUICE_POLICY_DEFAULT_CLASS;
	}
	p->class_id = (uint32_t)cls;
	uint32_t mask = check ? sluice_policy_class_limits(st->policy, (uint32_t)cls) : UINT32_MAX;
	uint32_t refuse = resolve_identities(spec, req, p);
	if (spec->unless_limits != 0)
		mask &= ~unless_skipped(spec, req);
	if (check && refuse != 0) {
		uint32_t needed = 0;
		/* A dry-run limit never refuses, so it never makes an identity
		 * required: without the identity it is skipped. */
		for (uint32_t i = 0; i < spec->limit_count; i++)
			if ((mask & ~spec->dry_run_mask) & (UINT32_C(1) << i))
				needed |= spec->limits[i].scope_mask;
		if ((needed & refuse) != 0) {
			p->refused_scope = (int32_t)__builtin_ctz(needed & refuse);
			return SLUICE_OK;
		}
	}
	for (uint32_t k = 0; k < spec->limit_count; k++) {
		uint32_t i = check ? st->order[k] : k;
		if (!(mask & (UINT32_C(1) << i)))
			continue;
		const struct sluice_policy_limit *pl = &spec->limits[i];
		size_t klen = key_length(p, pl->scope_mask, pl->per_class, (uint32_t)cls);
		if (klen == SIZE_MAX)
			return SLUICE_EKEY;
		if (klen == 0)
			continue; /* a scope without identity */
		struct sluice__plan_item *it = &p->item[p->n++];
		it->limit = i;
		it->key_len = (uint16_t)klen;
		it->b = binding_for(st, i, p, &it->overridden);
		p->applied |= UINT32_C(1) << i;
	}
	return SLUICE_OK;
}

bool sluice__engine_over_warn(const struct sluice_policy_limit *pl, const struct sluice_decision *d)
{
	if (pl->warn_percent == 0 || d->limit == 0)
		return false;
	uint64_t used = d->remaining < d->limit ? d->limit - d->remaining : 0;
	/* used / limit > warn / 100, without overflow (counts < 2^40). */
	return (sluice__u128)used * 100 > (sluice__u128)d->limit * pl->warn_percent;
}

void sluice__engine_name_copy(char *dst, const char *src)
{
	size_t len = strlen(src);
	if (len > SLUICE_POLICY_MAX_NAME)
		len = SLUICE_POLICY_MAX_NAME;
	memcpy(dst, src, len);
	dst[len] = '\0';
}
