/*
 * server_decide.c - the decision step of the example server: a request's
 * route and identities -> one decision over every limit of the policy, by
 * the policy engine (sluice/engine.h), and the response's rate-limit fields.
 *
 * This file is the one place that knows how limits are enforced; the event
 * loop only calls server_decide() and, once a response that holds
 * concurrency slots has been written, server_decider_release().
 *
 * Identities (docs/server.md, "Identities"): scope "token" from
 * "Authorization: Bearer <t>", scope "ip" from the peer address (or the
 * rightmost X-Forwarded-For entry with --trust-forwarded-for), any other
 * scope "foo_bar" from header "X-Foo-Bar". A missing or empty value is no
 * identity: the limits keyed by that scope do not apply to the request (the
 * engine's rule). A value longer than the engine's SLUICE_ENGINE_MAX_IDENTITY
 * is replaced by its 128-bit keyed hash (32 hex digits), so long bearer
 * tokens (JWTs) work.
 *
 * Which limits the headers describe is the policy's choice ("headers ...
 * describe=", docs/policy.md). describe=governing (the default): a
 * refusal, the refusing limit (the engine's governing one); an admission,
 * the rate-like limits (GCRA, sliding, calendar): the engine's governing
 * limit when it is one, else (the governing limit is a concurrency limit,
 * whose "remaining" is slots, not quota) every applied rate-like limit's
 * decision, of which the renderer shows the one with the least remaining;
 * the draft-11 family, which lists every limit, always takes them all.
 * describe=<limit> and describe=tightest: that limit (or the applied rate
 * or sliding limit with the least remaining) on every answer, admitted or
 * refused, as it stands after the check; on a refusal it carries the
 * refusal's Retry-After. When the named limit did not apply to the request
 * (its scope's identity is missing), the governing rule above. Every
 * limit's decision comes from the one check
 * (sluice_engine_request.limit_decisions): no second call reads what the
 * check computed.
 *
 * Dry run: the engine decides dry-run limits after the enforced ones and
 * never lets one govern, so the headers describe the request as admitted
 * by the enforced limits; when a dry-run limit would have refused, the
 * policy's "dry-run header" names it (server_dry_run_header()).
 *
 * Refusal answers: the policy's answer for the refusal's reason ("answer
 * rate|quota|concurrency|capacity status ... type ... body ...") when it
 * declares one, its body template compiled once here and rendered per
 * refusal with the governing decision (no allocation); else 429 and the
 * policy's body style.
 */
#include "server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

struct server_decider {
	struct sluice_engine *engine;
	const struct sluice_policy_spec *spec; /* of the policy the engine owns */
	struct server_decider_options opts;
	uint64_t frozen_unix_ns;
	int scope_token; /* index of the scope so named, or -1 */
	int scope_ip;
	char scope_header[SLUICE_POLICY_MAX_SCOPES][SLUICE_POLICY_MAX_NAME + 3];
	struct sluice_template answers[SLUICE_POLICY_ANSWER_COUNT]; /* compiled spec->answers */
	unsigned char secret[XXH3_SECRET_SIZE_MIN];
};

int server_decider_create(struct server_decider **out, struct sluice_policy *policy,
			  const struct server_decider_options *opts, const char **why)
{
	struct server_decider *d = calloc(1, sizeof *d);
	int rc;

	*why = "out of memory";
	if (d == NULL)
		return SLUICE_ENOMEM;
	d->spec = sluice_policy_spec(policy);
	d->opts = *opts;
	d->frozen_unix_ns = sluice_realtime_ns();
	/* Keys the hash of over-long identities: a client cannot choose a
	 * token that collides with another's. */
	if (getrandom(d->secret, sizeof d->secret, 0) != (ssize_t)sizeof d->secret) {
		*why = "getrandom failed";
		free(d);
		return SLUICE_EINVAL;
	}
	for (int i = 0; i < SLUICE_POLICY_ANSWER_COUNT; i++) {
		const struct sluice_policy_answer *a = &d->spec->answers[i];
		/* The load compiled every body once: this cannot fail. */
		if (a->status != 0 &&
		    sluice_template_compile(a->body, a->body_len,
					    a->json_escape ? SLUICE_TEMPLATE_JSON : SLUICE_TEMPLATE_PLAIN,
					    &d->answers[i], NULL) != SLUICE_OK) {
			*why = "an answer's body template does not compile";
			free(d);
			return SLUICE_EINVAL;
		}
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
	const struct sluice_engine_options eopts = {
		.size = sizeof eopts,
		.max_keys = opts->max_keys,
		/* Reclaim keys whose limits are full again, once a second. Not
		 * with a frozen clock: the sweeper reads the real clock, which
		 * runs ahead of the requests' frozen one, so it would reclaim
		 * entries that are full only at its own later time, forgetting
		 * what the requests consumed (a sweep must never be later than
		 * a request, docs/limiter.md); and under a frozen clock no
		 * entry ever becomes full again anyway. */
		.sweep_interval_ns = opts->frozen_clock ? 0 : SLUICE_NS_PER_SEC,
		.state_path = opts->state_file,
		.snapshot_interval_ns = opts->state_file != NULL ? opts->state_interval_ns : 0,
		.flags = opts->state_fresh_on_error ? SLUICE_ENGINE_STATE_FRESH_ON_ERROR : 0,
		.restore_info = opts->restore_info,
	};
	rc = sluice_engine_create(&d->engine, policy, &eopts);
	if (rc != SLUICE_OK) {
		*why = opts->state_file != NULL && opts->restore_info != NULL && opts->restore_info->message[0]
			       ? opts->restore_info->message
			       : "sluice_engine_create failed";
		free(d);
		return rc;
	}
	*why = NULL;
	*out = d;
	return SLUICE_OK;
}

void server_decider_destroy(struct server_decider *d)
{
	if (d == NULL)
		return;
	sluice_engine_destroy(d->engine);
	free(d);
}

int server_decider_save(struct server_decider *d, struct sluice_snapshot_info *info)
{
	return sluice_engine_snapshot(d->engine, NULL, sluice_realtime_ns(), info);
}

const char *server_decider_policy_name(const struct server_decider *d)
{
	return d->spec->name;
}

struct sluice_engine *server_decider_engine(const struct server_decider *d)
{
	return d->engine;
}

const struct sluice_policy_spec *server_decider_spec(const struct server_decider *d)
{
	return d->spec;
}

/* ------------------------------------------------------------------------
 * Identities.
 */
static void extract_identities(const struct server_decider *d, const struct server_request *req,
			       struct server_verdict *v)
{
	for (uint32_t s = 0; s < d->spec->scope_count; s++) {
		const struct server_header *h;
		const char *p = NULL;
		size_t n = 0;
		if ((int)s == d->scope_token) {
			/* Authorization: Bearer <token> (scheme case-insensitive). */
			h = server_request_header(req, "Authorization");
			if (h != NULL && h->value_len > 7 && server_ascii_ieq(h->value, "Bearer ", 7)) {
				p = h->value + 7;
				n = h->value_len - 7;
			}
		} else if ((int)s == d->scope_ip) {
			h = d->opts.trust_forwarded_for ? server_request_header(req, "X-Forwarded-For")
							: NULL;
			if (h != NULL) {
				/* The rightmost entry: the one our trusted proxy added. */
				const char *comma = memrchr(h->value, ',', h->value_len);
				p = comma ? comma + 1 : h->value;
				n = h->value_len - (size_t)(p - h->value);
			} else {
				p = req->peer_ip;
				n = req->peer_ip_len;
			}
		} else if ((h = server_request_header(req, d->scope_header[s])) != NULL) {
			p = h->value;
			n = h->value_len;
		}
		while (n > 0 && (*p == ' ' || *p == '\t'))
			p++, n--;
		while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
			n--;
		if (n > SLUICE_ENGINE_MAX_IDENTITY) {
			XXH128_hash_t x = XXH3_128bits_withSecret(p, n, d->secret, sizeof d->secret);
			snprintf(v->hashed[s], sizeof v->hashed[s], "%016llx%016llx",
				 (unsigned long long)x.high64, (unsigned long long)x.low64);
			p = v->hashed[s];
			n = 32;
		}
		/* An empty value is no identity (bytes NULL: the scope is absent). */
		v->ids[s].bytes = n > 0 ? p : NULL;
		v->ids[s].len = n;
	}
}

static void engine_request(const struct server_decider *d, const struct server_request *req,
			   const struct server_verdict *v, struct sluice_engine_request *er)
{
	memset(er, 0, sizeof *er);
	er->method = req->method;
	er->method_len = req->method_len;
	er->path = req->path;
	er->path_len = req->path_len;
	er->identities = v->ids;
	er->identity_count = d->spec->scope_count;
	er->tier = SLUICE_POLICY_NO_TIER;
	er->cost = 1;
	er->now_ns = v->now_unix_ns;
}

/* ------------------------------------------------------------------------
 * The decision.
 */
static void add_limit(struct server_verdict *v, const struct sluice_policy_limit *l,
		      const struct sluice_decision *dec)
{
	struct sluice_http_limit *h = &v->limits[v->nlimits++];

	memset(h, 0, sizeof *h);
	h->name = l->name;
	h->decision = *dec;
	h->quota = dec->limit;     /* the count in force */
	h->window_ns = l->period_ns; /* 0 for concurrency: no window rendered */
	h->resource = l->resource;   /* NULL: the custom family shows the name */
}

/* Every applied rate-like limit's state after the check, from its own
 * decision. */
static void add_applied(struct server_decider *d, const struct sluice_decision *per,
			struct server_verdict *v)
{
	for (uint32_t i = 0; i < d->spec->limit_count; i++) {
		const struct sluice_policy_limit *l = &d->spec->limits[i];
		if (l->kind == SLUICE_POLICY_KIND_CONCURRENCY || !(v->engine.applied & (UINT32_C(1) << i)))
			continue;
		struct sluice_decision dec = {
			.allowed = true,
			.limit_index = i,
			.limit = per[i].limit,
			.remaining = per[i].remaining,
			.reset_ns = per[i].reset_ns,
		};
		add_limit(v, l, &dec);
	}
}

/* The limit the policy's describe= picks among those applied, or -1 (the
 * governing rule). */
static int described_limit(const struct server_decider *d, const struct sluice_decision *per,
			   uint32_t applied)
{
	uint32_t want = d->spec->describe;
	if (want == SLUICE_POLICY_DESCRIBE_GOVERNING)
		return -1;
	if (want != SLUICE_POLICY_DESCRIBE_TIGHTEST)
		return (applied & (UINT32_C(1) << want)) ? (int)want : -1;
	int best = -1;
	for (uint32_t i = 0; i < d->spec->limit_count; i++) {
		uint8_t kind = d->spec->limits[i].kind;
		if ((kind != SLUICE_POLICY_KIND_GCRA && kind != SLUICE_POLICY_KIND_SLIDING) ||
		    !(applied & (UINT32_C(1) << i)))
			continue;
		if (best < 0 || per[i].remaining < per[best].remaining)
			best = (int)i;
	}
	return best;
}

/* The refusal's answer: the policy's for its reason, rendered into v. */
static void render_answer(const struct server_decider *d, struct server_verdict *v)
{
	static const uint8_t by_reason[] = {
		[SLUICE_REASON_RATE] = SLUICE_POLICY_ANSWER_RATE,
		[SLUICE_REASON_QUOTA] = SLUICE_POLICY_ANSWER_QUOTA,
		[SLUICE_REASON_CONCURRENCY] = SLUICE_POLICY_ANSWER_CONCURRENCY,
		[SLUICE_REASON_CAPACITY] = SLUICE_POLICY_ANSWER_CAPACITY,
		[SLUICE_REASON_NEVER] = SLUICE_POLICY_ANSWER_RATE,
	};
	uint8_t reason = v->decision.reason < sizeof by_reason ? v->decision.reason : SLUICE_REASON_RATE;
	int k = reason == SLUICE_REASON_NONE ? SLUICE_POLICY_ANSWER_RATE : by_reason[reason];
	const struct sluice_policy_answer *a = &d->spec->answers[k];

	v->status = 429;
	if (a->status == 0)
		return; /* the body style */
	const struct sluice_policy_limit *l = &d->spec->limits[v->decision.limit_index];
	const char *scope = NULL;
	for (uint32_t s = 0; s < d->spec->scope_count && scope == NULL; s++)
		if (l->scope_mask & (UINT32_C(1) << s))
			scope = d->spec->scopes[s];
	struct sluice_template_values tv = {
		.decision = v->decision,
		.now_unix_ns = v->now_unix_ns,
		.status = a->status,
		.limit_name = l->name,
		.limit_name_len = strlen(l->name),
		.scope = scope,
		.scope_len = scope ? strlen(scope) : 0,
		.policy = d->spec->name,
		.policy_len = strlen(d->spec->name),
	};
	size_t size;
	v->status = (int)a->status;
	v->answered = true;
	v->content_type = a->content_type;
	v->body_len = 0;
	if (a->body_len > 0 &&
	    sluice_template_render(&d->answers[k], &tv, v->body, sizeof v->body, &size) == SLUICE_OK)
		v->body_len = size - 1; /* longer than SERVER_MAX_ANSWER_BODY: no body */
}

/* The answer to a check that failed (docs/server.md, "Requests and error
 * answers"). */
static int target_status(int rc)
{
	switch (rc) {
	case SLUICE_EINVAL:
	case SLUICE_ESYNTAX:
		return 400;
	case SLUICE_ETOOBIG:
		return 414;
	default:
		return 503;
	}
}

void server_decide(struct server_decider *d, const struct server_request *req,
		   struct server_verdict *v)
{
	struct sluice_engine_request er;

	v->status = 200;
	v->refused = false;
	v->answered = false;
	v->content_type = NULL;
	v->body_len = 0;
	v->limited = false;
	v->nlimits = 0;
	v->families = d->spec->families;
	v->custom = &d->spec->custom;
	v->body_style = d->spec->body;
	v->now_unix_ns = d->opts.frozen_clock ? d->frozen_unix_ns : sluice_realtime_ns();
	memset(&v->decision, 0, sizeof v->decision);
	v->decision.allowed = true;
	v->engine.slot_count = 0;

	struct sluice_decision per[SLUICE_POLICY_MAX_LIMITS];
	extract_identities(d, req, v);
	engine_request(d, req, v, &er);
	er.limit_decisions = per;
	er.limit_decisions_cap = SLUICE_POLICY_MAX_LIMITS;
	int rc = sluice_engine_check(d->engine, &er, &v->engine);
	if (rc != SLUICE_OK) {
		/* Nothing was consumed. The target is the client's fault when
		 * the matcher refuses it: EINVAL (not origin-form), ESYNTAX (a
		 * malformed percent-escape or a control byte: the normalizer
		 * cannot say which route it names) -> 400; ETOOBIG (longer than
		 * SLUICE_POLICY_MAX_PATH before its '?') -> 414. Anything else
		 * (ETHREAD) is the server's fault: 503. */
		v->engine.slot_count = 0;
		v->status = target_status(rc);
		return;
	}
	if (!v->engine.governed)
		return; /* no limit applies to this request */
	v->limited = true;
	v->decision = v->engine.d;
	const struct sluice_policy_limit *gov = &d->spec->limits[v->engine.d.limit_index];
	int shown = described_limit(d, per, v->engine.applied);
	if (!v->engine.d.allowed) {
		v->refused = true;
		render_answer(d, v);
		if (shown < 0) {
			add_limit(v, gov, &v->engine.d);
			return;
		}
		/* The described limit as it stands (not consumed: all or nothing),
		 * with the refusal's verdict and wait for Retry-After. */
		struct sluice_decision dec = per[shown];
		dec.allowed = false;
		dec.reason = v->engine.d.reason;
		dec.retry_after_ns = v->engine.d.retry_after_ns;
		add_limit(v, &d->spec->limits[shown], &dec);
		return;
	}
	if (shown >= 0) {
		add_limit(v, &d->spec->limits[shown], &per[shown]);
		if (v->engine.d.degraded)
			v->limits[0].decision.degraded = true;
		return;
	}
	bool others = (v->engine.applied & ~(UINT32_C(1) << v->engine.d.limit_index)) != 0;
	if (gov->kind == SLUICE_POLICY_KIND_CONCURRENCY || ((v->families & SLUICE_HTTP_DRAFT11) && others))
		add_applied(d, per, v);
	else
		add_limit(v, gov, &v->engine.d);
	if (v->engine.d.degraded && v->nlimits > 0)
		v->limits[0].decision.degraded = true; /* no rate-limit fields (http.h) */
}

size_t server_dry_run_header(const struct server_decider *d, const struct server_verdict *v, char *buf,
			     size_t cap)
{
	const char *name = d->spec->dry_run_header;
	uint32_t mask = v->engine.dry_run_refused;
	size_t len = 0;

	if (name == NULL || mask == 0 || v->status != 200)
		return 0;
	int n = snprintf(buf, cap, "%s: ", name);
	if (n < 0 || (size_t)n >= cap)
		return 0;
	len = (size_t)n;
	for (uint32_t i = 0; i < d->spec->limit_count; i++) {
		if (!((mask >> i) & 1))
			continue;
		n = snprintf(buf + len, cap - len, "%s%s", (mask & ((UINT32_C(1) << i) - 1)) ? ", " : "",
			     d->spec->limits[i].name);
		if (n < 0 || (size_t)n >= cap - len)
			return 0;
		len += (size_t)n;
	}
	if (cap - len < 3)
		return 0;
	memcpy(buf + len, "\r\n", 3);
	return len + 2;
}

void server_decider_release(struct server_decider *d, const struct server_request *req,
			    struct server_verdict *v)
{
	(void)req; /* the decision's slots carry what release needs */
	if (v->engine.slot_count == 0)
		return;
	/* ESTALE (a reload changed the limit, or the key was reclaimed) and
	 * EDOUBLE cannot be acted upon here: the slot is gone either way. */
	(void)sluice_engine_release(d->engine, &v->engine);
	v->engine.slot_count = 0;
}
