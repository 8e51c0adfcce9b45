/*
 * fuzz_engine.c - request sequences on the policy engine, differential
 * against a single-threaded reference evaluation.
 *
 * The reference keeps, per (limit, tier or override, key), one standalone
 * cell of the kind the engine uses (GCRA, sliding log or counter, calendar;
 * an in-flight count for concurrency) in a plain array that never reclaims,
 * and evaluates each request directly: route -> class -> applicable limits
 * (concurrency first, then policy order), a dry run of every limit on a copy
 * of its cell, and only if all pass, the real admission of every cell. The
 * engine must give the same verdict, governing limit, reason, remaining,
 * retry-after and soft warning, although it inserts, sweeps, reloads (the
 * same text, so every limit is kept with its state) and cancels receipts
 * along the way. Time only moves forward (sweeps run at the current time).
 * Policies with slot leases are skipped (fuzz_slots covers lease expiry).
 *
 * Input: byte 0 < 0xf0 picks one of the built-in policies; otherwise the
 * policy text follows up to a NUL byte (inputs that do not parse, or that
 * the engine refuses, end there). Then operations of 4 bytes:
 *   op: 0-9 check, 10-11 release a held request, 12 sweep, 13 reload,
 *       14-15 advance time; arg1: identities and route; arg2: time step or
 *       tier; arg3: cost.
 */
#include <sluice.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

#define DAY0 (UINT64_C(1795392000) * SLUICE_NS_PER_SEC)
#define MAXREF 256
#define MAXHELD 16

static const char *const builtin[] = {
	"policy \"f0\"\n"
	"scope token optional\n"
	"scope workspace optional\n"
	"limit tm per token rate 5/10s\n"
	"limit td per token quota 12/1m@utc warn 50%\n"
	"limit wm per workspace rate 8/10s burst 4\n"
	"limit wd per workspace quota 20/1m@utc warn 80%\n"
	"limit tc per token concurrency 2\n",

	"policy \"f1\"\n"
	"scope api_key optional\n"
	"scope ip optional\n"
	"class a match GET /a\n"
	"class b match GET /b/:id\n"
	"limit la per api_key on a sliding 3/5s\n"
	"limit lb per api_key on b sliding 4/5s\n"
	"limit ld per api_key on default sliding 5/5s\n"
	"limit big per ip sliding 5000/10s\n"
	"limit both per api_key+ip on a,b concurrency 1\n",

	"policy \"f2\"\n"
	"scope org optional\n"
	"class hot match * /hot\n"
	"tier S x1\n"
	"tier M x2\n"
	"limit i per org+class on default rate 3/5s tiered\n"
	"limit h per org+class on hot rate 2/5s tiered warn 50%\n"
	"limit q per org quota 30/1m@utc\n"
	"override i org \"id1\" 7 until 2026-11-23T00:00:30Z\n",
};

static const char *const ids[6] = { "id0", "id1", "id2", "id3", "", NULL };
static const char *const routes[4][2] = { { "GET", "/a" }, { "GET", "/b/7" }, { "POST", "/hot" },
					  { "GET", "/other" } };

struct ref_cell {
	char key[96];
	size_t klen;
	struct sluice_limit spec;
	union {
		struct sluice_gcra gcra;
		struct sluice_window_counter counter;
		struct sluice_calendar calendar;
	} c;
	struct sluice_window_log *log;
	size_t log_size;
	uint64_t inflight;
};

static struct ref_cell ref[MAXREF];
static size_t nref;

struct held {
	struct sluice_identity id[2];
	struct sluice_engine_request r;
	struct sluice_engine_decision d;
	struct ref_cell *cells[SLUICE_ENGINE_MAX_SLOTS];
	uint32_t ncells;
};

static struct held held[MAXHELD];
static size_t nheld;

static void fail(const char *what, uint64_t a, uint64_t b)
{
	fprintf(stderr, "fuzz_engine: %s: engine %llu, reference %llu\n", what, (unsigned long long)a,
		(unsigned long long)b);
	abort();
}

static int spec_of(const struct sluice_policy_limit *pl, uint64_t count, uint64_t burst,
		   struct sluice_limit *out)
{
	memset(out, 0, sizeof *out);
	switch (pl->kind) {
	case SLUICE_POLICY_KIND_GCRA:
		out->kind = SLUICE_LIMIT_GCRA;
		return sluice_rate_init(&out->rate, count, pl->period_ns, burst);
	case SLUICE_POLICY_KIND_SLIDING:
		if (count <= SLUICE_WINDOW_LOG_MAX_LIMIT) {
			out->kind = SLUICE_LIMIT_SLIDING_LOG;
			return sluice_window_log_config_init(&out->log, count, pl->period_ns);
		}
		out->kind = SLUICE_LIMIT_SLIDING_COUNTER;
		return sluice_window_counter_config_init(&out->counter, count, pl->period_ns);
	case SLUICE_POLICY_KIND_CALENDAR:
		out->kind = SLUICE_LIMIT_CALENDAR;
		return sluice_calendar_config_init(&out->calendar, count, pl->period_ns);
	default:
		out->kind = SLUICE_LIMIT_SLOTS;
		return sluice_slots_config_init(&out->slots, count, pl->lease_ns, pl->retry_after_ns);
	}
}

static struct ref_cell *ref_cell(const char *key, size_t klen, const struct sluice_limit *spec)
{
	for (size_t i = 0; i < nref; i++)
		if (ref[i].klen == klen && memcmp(ref[i].key, key, klen) == 0)
			return &ref[i];
	if (nref == MAXREF)
		abort(); /* bounded by the identities x limits x variants */
	struct ref_cell *c = &ref[nref++];
	memset(c, 0, sizeof *c);
	memcpy(c->key, key, klen);
	c->klen = klen;
	c->spec = *spec;
	switch (spec->kind) {
	case SLUICE_LIMIT_GCRA:
		sluice_gcra_init(&c->c.gcra);
		break;
	case SLUICE_LIMIT_SLIDING_COUNTER:
		sluice_window_counter_init(&c->c.counter);
		break;
	case SLUICE_LIMIT_CALENDAR:
		sluice_calendar_init(&c->c.calendar);
		break;
	case SLUICE_LIMIT_SLIDING_LOG:
		c->log_size = sluice_window_log_size(&spec->log);
		c->log = malloc(c->log_size);
		if (c->log == NULL)
			abort();
		sluice_window_log_init(c->log, &spec->log);
		break;
	default:
		break;
	}
	return c;
}

/* Admit on the cell (commit) or on a copy (dry run). */
static bool ref_admit(struct ref_cell *c, uint64_t now, uint64_t cost, bool commit,
		      struct sluice_decision *d)
{
	const struct sluice_limit *s = &c->spec;
	memset(d, 0, sizeof *d);
	switch (s->kind) {
	case SLUICE_LIMIT_GCRA: {
		struct sluice_gcra copy = c->c.gcra;
		return sluice_gcra_admit(commit ? &c->c.gcra : &copy, &s->rate, now, cost, d);
	}
	case SLUICE_LIMIT_SLIDING_COUNTER: {
		struct sluice_window_counter copy = c->c.counter;
		return sluice_window_counter_admit(commit ? &c->c.counter : &copy, &s->counter, now, cost, d);
	}
	case SLUICE_LIMIT_CALENDAR: {
		struct sluice_calendar copy = c->c.calendar;
		return sluice_calendar_admit(commit ? &c->c.calendar : &copy, &s->calendar, now, cost, d);
	}
	case SLUICE_LIMIT_SLIDING_LOG: {
		if (commit)
			return sluice_window_log_admit(c->log, &s->log, now, cost, d);
		struct sluice_window_log *copy = malloc(c->log_size);
		if (copy == NULL)
			abort();
		memcpy(copy, c->log, c->log_size);
		bool ok = sluice_window_log_admit(copy, &s->log, now, cost, d);
		free(copy);
		return ok;
	}
	default: {
		bool ok = cost == 0 || c->inflight < s->slots.slots;
		d->allowed = ok;
		d->limit = s->slots.slots;
		if (!ok) {
			d->reason = SLUICE_REASON_CONCURRENCY;
			d->retry_after_ns = s->slots.retry_after_ns;
		}
		if (cost == 0 && c->inflight >= s->slots.slots)
			d->reset_ns = s->slots.retry_after_ns; /* a peek of a full cell: the hint */
		if (ok && commit && cost > 0)
			c->inflight++;
		d->remaining = s->slots.slots - c->inflight - (ok && !commit && cost > 0);
		return ok;
	}
	}
}

static bool over_warn(const struct sluice_policy_limit *pl, const struct sluice_decision *d)
{
	if (pl->warn_percent == 0 || d->limit == 0)
		return false;
	uint64_t used = d->remaining < d->limit ? d->limit - d->remaining : 0;
	return (unsigned __int128)used * 100 > (unsigned __int128)d->limit * pl->warn_percent;
}

/* The reference decision of one request; cells of applied concurrency
 * limits go to h (when admitted). Returns false when the engine refuses the
 * request with an error (then the reference must not count it either). */
static void ref_check(const struct sluice_policy *p, const struct sluice_engine_request *r,
		      struct sluice_engine_decision *out, struct held *h)
{
	const struct sluice_policy_spec *spec = sluice_policy_spec(p);
	int cls = sluice_policy_match(p, r->method, r->method_len, r->path, r->path_len);
	uint32_t mask = sluice_policy_class_limits(p, (uint32_t)cls);
	uint32_t order[SLUICE_POLICY_MAX_LIMITS], n = 0, ndone = 0, done[SLUICE_POLICY_MAX_LIMITS];
	struct ref_cell *cells[SLUICE_POLICY_MAX_LIMITS];
	struct sluice_decision d[SLUICE_POLICY_MAX_LIMITS];

	for (int pass = 0; pass < 2; pass++)
		for (uint32_t i = 0; i < spec->limit_count; i++)
			if ((spec->limits[i].kind == SLUICE_POLICY_KIND_CONCURRENCY) == (pass == 0))
				order[n++] = i;
	memset(out, 0, sizeof *out);
	out->d.allowed = true;
	out->d.limit_index = UINT32_MAX;
	out->d.remaining = UINT64_MAX;
	out->warn_limit = UINT32_MAX;
	h->ncells = 0;
	/* Identity rules, the plain way: follow each scope's fallbacks to an
	 * identity (or to a scope without one, whose rule decides). */
	const struct sluice_identity *id[SLUICE_POLICY_MAX_SCOPES];
	uint32_t via[SLUICE_POLICY_MAX_SCOPES], needed = 0, refuse = 0;
	for (uint32_t s = 0; s < spec->scope_count; s++) {
		uint32_t at = s;
		for (int step = 0; step < 8; step++) {
			if (at < r->identity_count && r->identities[at].bytes != NULL)
				break;
			if (spec->scope_rules[at].rule != SLUICE_POLICY_IDENTITY_FALLBACK)
				break;
			at = spec->scope_rules[at].fallback;
		}
		bool has = at < r->identity_count && r->identities[at].bytes != NULL;
		id[s] = has ? &r->identities[at] : NULL;
		via[s] = at;
		if (!has && spec->scope_rules[at].rule == SLUICE_POLICY_IDENTITY_REQUIRED)
			refuse |= UINT32_C(1) << s;
	}
	for (uint32_t i = 0; i < spec->limit_count; i++)
		if ((mask & ~spec->dry_run_mask) >> i & 1) /* a dry-run limit requires nothing */
			needed |= spec->limits[i].scope_mask;
	if (needed & refuse) {
		out->d.allowed = false;
		out->d.reason = SLUICE_REASON_IDENTITY;
		out->d.remaining = 0;
		out->scope = (int32_t)__builtin_ctz(needed & refuse);
		return;
	}
	for (uint32_t i = 0; i < spec->limit_count; i++) {
		bool present = mask >> i & 1;
		for (uint32_t s = 0; s < spec->scope_count; s++)
			if (spec->limits[i].scope_mask >> s & 1 && id[s] == NULL)
				present = false;
		if (present)
			out->applied |= UINT32_C(1) << i;
	}
	for (uint32_t k = 0; k < n; k++) {
		uint32_t i = order[k];
		const struct sluice_policy_limit *pl = &spec->limits[i];
		if (!(mask >> i & 1))
			continue;
		char key[96];
		size_t klen = (size_t)snprintf(key, sizeof key, "%u|", i);
		bool present = true;
		int ov = -1;
		for (uint32_t s = 0; s < spec->scope_count; s++) {
			if (!(pl->scope_mask >> s & 1))
				continue;
			if (id[s] == NULL) {
				present = false;
				break;
			}
			klen += (size_t)snprintf(key + klen, sizeof key - klen, "%u@%u:%.*s|", s, via[s],
						 (int)id[s]->len, (const char *)id[s]->bytes);
			int j = via[s] != s ? -1
					    : sluice_policy_override_find(p, i, s, id[s]->bytes, id[s]->len,
									  r->now_ns);
			if (j >= 0 && ov < 0)
				ov = j;
		}
		if (!present)
			continue;
		if (pl->per_class)
			klen += (size_t)snprintf(key + klen, sizeof key - klen, "c%s|", spec->classes[cls]);
		uint64_t count, burst;
		if (ov >= 0) {
			count = spec->overrides[ov].count;
			burst = pl->kind == SLUICE_POLICY_KIND_GCRA && spec->overrides[ov].burst != 0
					? spec->overrides[ov].burst
					: count;
			klen += (size_t)snprintf(key + klen, sizeof key - klen, "o%d", ov);
		} else {
			int tier = pl->tiered ? r->tier : SLUICE_POLICY_NO_TIER;
			sluice_policy_limit_numbers(p, i, tier, &count, &burst);
			klen += (size_t)snprintf(key + klen, sizeof key - klen, "t%d", tier);
		}
		struct sluice_limit ls;
		if (spec_of(pl, count, burst, &ls) != SLUICE_OK)
			abort();
		cells[ndone] = ref_cell(key, klen, &ls);
		if (!ref_admit(cells[ndone], r->now_ns, r->cost, false, &d[ndone])) {
			out->d = d[ndone];
			out->d.limit_index = i;
			out->governed = true;
			return;
		}
		done[ndone++] = i;
	}
	uint32_t best = UINT32_MAX;
	for (uint32_t j = 0; j < ndone; j++) {
		ref_admit(cells[j], r->now_ns, r->cost, true, &d[j]);
		if (best == UINT32_MAX || d[j].remaining < d[best].remaining ||
		    (d[j].remaining == d[best].remaining &&
		     (d[j].reset_ns < d[best].reset_ns ||
		      (d[j].reset_ns == d[best].reset_ns && done[j] < done[best]))))
			best = j;
		if (!out->warn && over_warn(&spec->limits[done[j]], &d[j])) {
			out->warn = true;
			out->warn_limit = done[j];
		}
		if (spec->limits[done[j]].kind == SLUICE_POLICY_KIND_CONCURRENCY && r->cost > 0)
			h->cells[h->ncells++] = cells[j];
	}
	if (best != UINT32_MAX) {
		out->d = d[best];
		out->d.limit_index = done[best];
		out->governed = true;
	}
}

static void print(const char *who, const struct sluice_engine_decision *x)
{
	fprintf(stderr, "%s: allowed %d limit %u reason %u limit %llu remaining %llu reset %llu retry %llu\n",
		who, x->d.allowed, x->d.limit_index, x->d.reason, (unsigned long long)x->d.limit,
		(unsigned long long)x->d.remaining, (unsigned long long)x->d.reset_ns,
		(unsigned long long)x->d.retry_after_ns);
}

#define MISMATCH(what, a, b)                                                            \
	do {                                                                            \
		print("engine", e);                                                     \
		print("reference", r);                                                  \
		fail(what, a, b);                                                       \
	} while (0)

static void compare(const struct sluice_engine_decision *e, const struct sluice_engine_decision *r,
		    const struct sluice_policy *p)
{
	if (e->d.allowed != r->d.allowed)
		MISMATCH("allowed", e->d.allowed, r->d.allowed);
	if (e->applied != r->applied)
		MISMATCH("applied", e->applied, r->applied);
	if (e->governed != r->governed)
		MISMATCH("governed", e->governed, r->governed);
	if (e->d.limit_index != r->d.limit_index)
		MISMATCH("limit_index", e->d.limit_index, r->d.limit_index);
	if (e->d.allowed && (e->warn != r->warn || e->warn_limit != r->warn_limit))
		MISMATCH("warn", e->warn_limit, r->warn_limit);
	if (!e->governed)
		return;
	bool slots = sluice_policy_spec(p)->limits[e->d.limit_index].kind == SLUICE_POLICY_KIND_CONCURRENCY;
	if (e->d.limit != r->d.limit)
		MISMATCH("limit", e->d.limit, r->d.limit);
	if (!e->d.allowed) {
		if (e->d.reason != r->d.reason)
			MISMATCH("reason", e->d.reason, r->d.reason);
		if (e->d.retry_after_ns != r->d.retry_after_ns)
			MISMATCH("retry_after_ns", e->d.retry_after_ns, r->d.retry_after_ns);
	}
	if (!slots || e->d.allowed) {
		if (e->d.remaining != r->d.remaining)
			MISMATCH("remaining", e->d.remaining, r->d.remaining);
		if (!slots && e->d.reset_ns != r->d.reset_ns)
			MISMATCH("reset_ns", e->d.reset_ns, r->d.reset_ns);
	}
}

#undef MISMATCH

static struct sluice_policy *parse(const char *text, size_t len)
{
	struct sluice_policy *p = NULL;
	if (sluice_policy_parse(text, len, NULL, &p, NULL) != SLUICE_OK)
		return NULL;
	return p;
}

static void reset_ref(void)
{
	for (size_t i = 0; i < nref; i++)
		free(ref[i].log);
	nref = 0;
	nheld = 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_input in = { data, size };
	const char *text;
	size_t text_len;

	if (size == 0)
		return 0;
	uint8_t sel = fuzz_u8(&in);
	if (sel < 0xf0) {
		text = builtin[sel % (sizeof builtin / sizeof builtin[0])];
		text_len = strlen(text);
	} else {
		const uint8_t *nul = memchr(in.data, 0, in.size);
		if (nul == NULL)
			return 0;
		text = (const char *)in.data;
		text_len = (size_t)(nul - in.data);
		in.size -= text_len + 1;
		in.data = nul + 1;
	}
	struct sluice_policy *p = parse(text, text_len), *view = NULL;
	struct sluice_engine *eng = NULL;
	if (p == NULL)
		return 0;
	view = parse(text, text_len); /* the reference's copy: the engine owns p */
	if (view == NULL || sluice_engine_create(&eng, p, NULL) != SLUICE_OK) {
		sluice_policy_destroy(p);
		sluice_policy_destroy(view);
		return 0;
	}
	const struct sluice_policy_spec *spec = sluice_policy_spec(view);
	for (uint32_t i = 0; i < spec->limit_count; i++)
		if (spec->limits[i].lease_ns != 0) {
			/* Lease expiry is fuzzed by fuzz_slots; the reference here
			 * has no leases. */
			sluice_engine_destroy(eng);
			sluice_policy_destroy(view);
			return 0;
		}
	uint64_t now = DAY0;
	int tier = SLUICE_POLICY_NO_TIER;

	while (in.size > 0) {
		uint8_t op = fuzz_u8(&in) % 16, a1 = fuzz_u8(&in), a2 = fuzz_u8(&in), a3 = fuzz_u8(&in);
		if (op < 10) {
			struct held h;
			memset(&h, 0, sizeof h);
			for (int s = 0; s < 2; s++) {
				const char *v = ids[(a1 >> (3 * s)) % 6];
				h.id[s].bytes = v;
				h.id[s].len = v != NULL ? strlen(v) : 0;
			}
			const char *const *route = routes[(a1 >> 6) % 4];
			h.r.method = route[0];
			h.r.method_len = strlen(route[0]);
			h.r.path = route[1];
			h.r.path_len = strlen(route[1]);
			h.r.identities = h.id;
			h.r.identity_count = 2;
			h.r.tier = tier;
			h.r.cost = a3 % 4;
			h.r.now_ns = now;
			struct sluice_engine_decision want;
			struct held hr;
			int rc = sluice_engine_check(eng, &h.r, &h.d);
			if (rc != SLUICE_OK)
				fail("check error", (uint64_t)-rc, 0);
			ref_check(view, &h.r, &want, &hr);
			compare(&h.d, &want, view);
			if (h.d.slot_count != hr.ncells || (h.d.slot_count > 0 && !h.d.d.allowed))
				fail("slot_count", h.d.slot_count, hr.ncells);
			if (h.d.slot_count > 0) {
				memcpy(h.cells, hr.cells, sizeof h.cells);
				h.ncells = hr.ncells;
				if (nheld == MAXHELD) {
					/* Release the oldest to make room. */
					struct held *o = &held[0];
					int rc2 = sluice_engine_release(eng, &o->d);
					if (rc2 != SLUICE_OK)
						fail("release of the oldest", (uint64_t)-rc2, 0);
					for (uint32_t c = 0; c < o->ncells; c++)
						o->cells[c]->inflight--;
					memmove(held, held + 1, (MAXHELD - 1) * sizeof held[0]);
					nheld--;
					for (size_t k = 0; k < nheld; k++)
						held[k].r.identities = held[k].id;
				}
				held[nheld] = h;
				held[nheld].r.identities = held[nheld].id;
				nheld++;
			}
		} else if (op < 12) {
			if (nheld > 0) {
				size_t j = a1 % nheld;
				struct held *o = &held[j];
				int rc = sluice_engine_release(eng, &o->d);
				if (rc != SLUICE_OK)
					fail("release", (uint64_t)-rc, 0);
				if (sluice_engine_release(eng, &o->d) != SLUICE_OK || o->d.slot_count != 0)
					fail("second release of a zeroed decision", 1, 0);
				for (uint32_t c = 0; c < o->ncells; c++)
					o->cells[c]->inflight--;
				held[j] = held[--nheld];
				held[j].r.identities = held[j].id;
			}
		} else if (op == 12) {
			if (sluice_engine_sweep(eng, now, a1) != SLUICE_OK)
				fail("sweep", 1, 0);
		} else if (op == 13) {
			struct sluice_policy *q = parse(text, text_len);
			if (q == NULL || sluice_engine_reload(eng, q) != SLUICE_OK)
				fail("reload of the same text", 1, 0);
		} else {
			now += (uint64_t)a2 * 50 * 1000 * 1000; /* up to 12.75 s */
			tier = spec->tier_count == 0 ? SLUICE_POLICY_NO_TIER
						     : (int)(a3 % (spec->tier_count + 1)) - 1;
		}
	}
	sluice_engine_destroy(eng);
	sluice_policy_destroy(view);
	reset_ref();
	return 0;
}
