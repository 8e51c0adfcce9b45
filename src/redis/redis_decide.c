/*
 * redis_decide.c - decisions of the Redis backend: a script's answer decoded
 * into the caller's decision, by rebuilding each limit's cell from the
 * state the script reported and running the cell's own code on that private
 * copy (so the decision is the keyed limiter's by construction); the
 * degraded answer of the fail mode; the backend's decision counters.
 *
 * Decoding is pure: sluice__redis_decode() writes only the decision (and an
 * acquire's slot handles) and returns what the answer taught about the deny
 * cache's limits in a struct sluice__redis_learnt; the caller writes the
 * cache (sluice__redis_cache_learn()).
 */
#include "redis/redis_internal.h"

#ifdef SLUICE_WITH_REDIS

#include <stdatomic.h>
#include <string.h>

/* ---- decisions ---- */

/* gcra.c's fill() for a limit whose debt after the decision is `debt`. */
static void fill(struct sluice_decision *out, const struct sluice_rate *rate, bool allowed,
		 uint64_t debt, uint64_t retry_after_ns, uint8_t reason)
{
	out->allowed = allowed;
	out->degraded = false;
	out->reason = reason;
	out->reserved_ = 0;
	out->limit_index = 0;
	out->limit = rate->limit;
	out->remaining = debt >= rate->tolerance_ns ? 0 : (rate->tolerance_ns - debt) / rate->interval_ns;
	out->reset_ns = debt;
	out->retry_after_ns = retry_after_ns;
}

/* The decision of one limit given its debt before the request, as gcra.c's
 * admit()/check would make it (status from the script or the cache). */
void sluice__redis_decide_limit(struct sluice_decision *out, const struct sluice_rate *rate, int status,
				uint64_t debt, uint64_t cost)
{
	if (status == ST_NEVER) {
		fill(out, rate, false, debt, SLUICE_NEVER, SLUICE_REASON_NEVER);
	} else if (status == ST_RATE) {
		uint64_t slack = rate->tolerance_ns - cost * rate->interval_ns;
		fill(out, rate, false, debt, debt - slack, SLUICE_REASON_RATE);
	} else {
		fill(out, rate, true, debt + cost * rate->interval_ns, 0, SLUICE_REASON_NONE);
	}
}

/* The `limit` a fresh limit of any kind reports. */
static uint64_t limit_value(const struct sluice_limit *l)
{
	switch (l->kind) {
	case SLUICE_LIMIT_GCRA:
		return l->rate.limit;
	case SLUICE_LIMIT_SLIDING_LOG:
		return l->log.limit;
	case SLUICE_LIMIT_SLIDING_COUNTER:
		return l->counter.limit;
	case SLUICE_LIMIT_CALENDAR:
		return l->calendar.limit;
	default:
		return l->slots.slots;
	}
}

void sluice__redis_fill_degraded(struct sluice_redis *r, const struct prepared *p,
				 struct sluice_decision *out)
{
	bool open = r->fail_mode == SLUICE_FAIL_OPEN;

	memset(out, 0, sizeof *out);
	out->allowed = open || p->req->cost == 0;
	out->degraded = true;
	out->reason = out->allowed ? SLUICE_REASON_NONE : SLUICE_REASON_CAPACITY;
	out->limit = limit_value(&p->req->scopes[0].limits[0]);
	r->st.degraded++;
}

void sluice__redis_count(struct sluice_redis *r, const struct prepared *p, const struct sluice_decision *d)
{
	if (p->req->cost == 0)
		return; /* peeks are not admissions */
	if (d->allowed)
		r->st.admitted++;
	else
		r->st.denied++;
}

/* ---- replies ---- */

bool sluice__redis_reply_is_error(const redisReply *rep, const char *prefix)
{
	size_t n = strlen(prefix);
	return rep->type == REDIS_REPLY_ERROR && rep->len >= n && memcmp(rep->str, prefix, n) == 0;
}

bool sluice__redis_int_elem(const redisReply *rep, size_t i, long long lo, long long hi, long long *v)
{
	if (i >= rep->elements || rep->element[i]->type != REDIS_REPLY_INTEGER)
		return false;
	*v = rep->element[i]->integer;
	return *v >= lo && *v <= hi;
}

/* The debt pair (s, ns) at elements i, i+1 as ns; false if malformed. */
static bool debt_elem(const redisReply *rep, size_t i, uint64_t *debt)
{
	long long s, ns;
	if (!sluice__redis_int_elem(rep, i, 0, (long long)(UINT64_MAX / SLUICE_NS_PER_SEC), &s) ||
	    !sluice__redis_int_elem(rep, i + 1, 0, (long long)SLUICE_NS_PER_SEC - 1, &ns))
		return false;
	sluice__u128 d = (sluice__u128)(uint64_t)s * SLUICE_NS_PER_SEC + (uint64_t)ns;
	if (d > UINT64_MAX)
		return false;
	*debt = (uint64_t)d;
	return true;
}

/* GCRA: the answer shows F >= tat_ns for tag. */
static void learn_tat(struct sluice__redis_learnt *learnt, uint64_t tag, uint64_t tat_ns)
{
	learnt->fact[learnt->n++] = (struct sluice__redis_fact){ .tag = tag, .until_ns = tat_ns };
}

/* One limit's decision from its state as the script reported it (4
 * integers at rep->element[e]), computed by the cell's own code on a
 * private copy of that state, so that it is exactly the keyed limiter's.
 * what: 'd' the dry-run denial, 'a' the admission, 'p' the peek (*ok: the
 * limiter's dry run passes). False if the state is malformed or does not
 * give the verdict the script gave. */
static bool decide_state(const struct sluice_redis *r, const struct prepared *p, size_t j,
			 const redisReply *rep, size_t e, int status, uint64_t now, uint64_t t, char what,
			 struct sluice_decision *d, bool *ok, struct sluice__redis_learnt *learnt)
{
	const struct sluice_limit *l = p->limit[j];
	uint64_t cost = what == 'p' ? 0 : p->req->cost;
	long long x0, x1, x2, x3;

	*ok = true;
	switch (l->kind) {
	case SLUICE_LIMIT_GCRA: {
		const struct sluice_rate *rate = &l->rate;
		uint64_t debt;
		if (!debt_elem(rep, e, &debt))
			return false;
		if (what == 'p') {
			fill(d, rate, true, debt, 0, SLUICE_REASON_NONE);
			return true;
		}
		bool fits = cost <= rate->burst && debt <= rate->tolerance_ns - cost * rate->interval_ns;
		if (what == 'd') {
			/* RATE only for cost <= burst (else the script says
			 * NEVER): retry_after = debt - slack needs slack >= 0
			 * (fuzz/corpus/redis/regress_rate_cost_above_burst). */
			if (status == ST_RATE && (fits || cost > rate->burst))
				return false;
			sluice__redis_decide_limit(d, rate, status, debt, cost);
			if (status == ST_RATE)
				learn_tat(learnt, p->tag[j], sluice__add_sat(t, debt));
			return true;
		}
		if (!fits)
			return false;
		sluice__redis_decide_limit(d, rate, ST_OK, debt, cost);
		/* A reservation may be cancelled (F lowered again): only final
		 * admissions are lower bounds of F. */
		if (p->mode != MODE_RESERVE)
			learn_tat(learnt, p->tag[j], sluice__add_sat(t, d->reset_ns));
		return true;
	}
	case SLUICE_LIMIT_SLIDING_COUNTER: {
		if (!sluice__redis_int_elem(rep, e, -1, 0xffffff, &x0) ||
		    !sluice__redis_int_elem(rep, e + 1, 0, 0xfffff, &x1) ||
		    !sluice__redis_int_elem(rep, e + 2, x0 < 0 ? 0 : 1, x0 < 0 ? 0 : 0xfffff, &x2))
			return false;
		struct sluice_window_counter c;
		uint64_t word = x0 < 0 ? 0 : (uint64_t)x0 << 40 | (uint64_t)x1 << 20 | (uint64_t)x2;
		/* relaxed: a private copy of the server's state, never shared. */
		atomic_store_explicit(&c.word, word, memory_order_relaxed); /* relaxed: why above */
		bool got = sluice_window_counter_admit(&c, &l->counter, now, cost, d);
		return what == 'd' ? !got : got;
	}
	case SLUICE_LIMIT_CALENDAR: {
		if (!sluice__redis_int_elem(rep, e, -1, 0xffffffffLL, &x0) ||
		    !sluice__redis_int_elem(rep, e + 1, x0 < 0 ? 0 : 1, x0 < 0 ? 0 : 0xffffffffLL, &x1))
			return false;
		struct sluice_calendar c;
		uint64_t word = x0 < 0 ? 0 : (uint64_t)x0 << 32 | (uint64_t)x1;
		/* relaxed: a private copy of the server's state, never shared. */
		atomic_store_explicit(&c.word, word, memory_order_relaxed); /* relaxed: why above */
		bool got = sluice_calendar_admit(&c, &l->calendar, now, cost, d);
		if (got != (what != 'd'))
			return false;
		/* The state the server holds after this call: the word as read
		 * (a denial writes nothing) or as the admission wrote it. Not
		 * a reservation's (a cancel may lower it again), not a peek's. */
		if (what == 'd' || (what == 'a' && p->mode != MODE_RESERVE)) {
			/* relaxed: the private copy above. */
			uint64_t after = atomic_load_explicit(&c.word, memory_order_relaxed); /* relaxed: why above */
			learnt->fact[learnt->n++] = (struct sluice__redis_fact){
				.tag = p->tag[j],
				.word = after,
				.until_ns = sluice__add_sat(t, d->reset_ns),
				.offset_ns = now - t,
				.calendar = true,
			};
		}
		return true;
	}
	case SLUICE_LIMIT_SLIDING_LOG: {
		/* Rebuild the log: admitting its m <= limit times one unit each,
		 * in order, records exactly them (each sees fewer than limit
		 * live units); only the last `limit` units of a log decide. */
		const struct sluice_window_log_config *cfg = &l->log;
		if (e >= rep->elements || rep->element[e]->type != REDIS_REPLY_STRING)
			return false;
		const char *q = rep->element[e]->str, *end = q + rep->element[e]->len;
		uint64_t m = 0, prev = 0;
		sluice_window_log_init(r->log_cell, cfg);
		while (q < end) {
			uint64_t v = 0;
			size_t digits = 0;
			for (; q < end && *q >= '0' && *q <= '9'; q++, digits++) {
				if (v > (UINT64_MAX - 9) / 10)
					return false;
				v = v * 10 + (uint64_t)(*q - '0');
			}
			if (digits == 0 || v < prev || ++m > cfg->limit ||
			    !sluice_window_log_admit(r->log_cell, cfg, v, 1, NULL))
				return false;
			prev = v;
			if (q < end && *q++ != ' ')
				return false;
		}
		bool got = sluice_window_log_admit(r->log_cell, cfg, now, cost, d);
		return what == 'd' ? !got : got;
	}
	default: {
		const struct sluice_slots_config *cfg = &l->slots;
		if (!sluice__redis_int_elem(rep, e, 0, (long long)cfg->slots, &x0))
			return false;
		uint64_t n = (uint64_t)x0;
		bool allowed = what == 'a' || (what == 'p' && n < cfg->slots);
		if (what == 'a') {
			if (!sluice__redis_int_elem(rep, e + 1, 1, (1LL << 28) - 1, &x1) ||
			    !sluice__redis_int_elem(rep, e + 2, 0, (long long)cfg->slots - 1, &x2) ||
			    !sluice__redis_int_elem(rep, e + 3, 0, (1LL << 24) - 1, &x3))
				return false;
			if (n < cfg->slots)
				n++; /* a free slot taken; n == N: an expired lease taken over */
			if (p->handles != NULL)
				p->handles[p->caller_scope[p->scope[j]]] =
					(uint64_t)x3 << 40 | (uint64_t)x1 << 12 | (uint64_t)x2;
		}
		/* slots.c's fill(). */
		*d = (struct sluice_decision){
			.allowed = allowed,
			.reason = allowed ? SLUICE_REASON_NONE : SLUICE_REASON_CONCURRENCY,
			.limit = cfg->slots,
			.remaining = n >= cfg->slots ? 0 : cfg->slots - n,
			.reset_ns = allowed ? 0 : cfg->retry_after_ns,
			.retry_after_ns = allowed ? 0 : cfg->retry_after_ns,
		};
		/* A peek is an allowed decision whatever the slots hold
		 * (limit_kind.c's slots_check()): reason NONE, no retry-after,
		 * reset_ns the hint when full. */
		if (what == 'p') {
			d->allowed = true;
			d->reason = SLUICE_REASON_NONE;
			d->retry_after_ns = 0;
			return true;
		}
		/* The limiter's dry run lets a full cell with leases pass (its
		 * acquire may take over an expired lease). */
		*ok = allowed || cfg->lease_ttl_ns != 0;
		return true;
	}
	}
}

/* Turn a script answer into the decision, and into what it taught the deny
 * cache (*learnt, complete only when true is returned). False if malformed.
 * t is the request's time in the cache's clock (for the learnt F). */
bool sluice__redis_decode(const struct sluice_redis *r, const struct prepared *p, const redisReply *rep,
			  uint64_t t, uint64_t now_ns, struct sluice_decision *out,
			  struct sluice__redis_learnt *learnt)
{
	long long status, index, now_s, now_sub;
	bool ok;

	learnt->n = 0;

	if (rep->type != REDIS_REPLY_ARRAY || !sluice__redis_int_elem(rep, 0, ST_OK, ST_NEVER, &status) ||
	    !sluice__redis_int_elem(rep, 2, 0, (long long)(UINT64_MAX / SLUICE_NS_PER_SEC), &now_s) ||
	    !sluice__redis_int_elem(rep, 3, 0, (long long)SLUICE_NS_PER_SEC - 1, &now_sub))
		return false;
	sluice__u128 server_now = (sluice__u128)(uint64_t)now_s * SLUICE_NS_PER_SEC + (uint64_t)now_sub;
	if (server_now > UINT64_MAX)
		return false;
	uint64_t now = (r->flags & SLUICE_REDIS_CALLER_CLOCK) ? now_ns : (uint64_t)server_now;
	if (status != ST_OK) {
		if (rep->elements != 8 || p->mode == MODE_PEEK ||
		    !sluice__redis_int_elem(rep, 1, 0, (long long)p->nlimits - 1, &index) ||
		    (status == ST_NEVER && p->limit[index]->kind != SLUICE_LIMIT_GCRA) ||
		    !decide_state(r, p, (size_t)index, rep, 4, (int)status, now, t, 'd', out, &ok, learnt))
			return false;
		out->limit_index = p->base[p->scope[index]] + p->index[index];
		return true;
	}
	size_t main = 4 + 4 * p->nlimits;
	if (rep->elements < main || !sluice__redis_int_elem(rep, 1, -1, -1, &index) ||
	    (p->mode == MODE_RESERVE ? (rep->elements - main) % 4 != 0 : rep->elements != main))
		return false;
	struct sluice_decision d[SLUICE_REDIS_MAX_LIMITS];
	char what = p->mode == MODE_PEEK ? 'p' : 'a';
	/* An admission or a peek: every limit answers (no kind denies a peek,
	 * and the script admitted), and the governing rule picks. */
	for (size_t j = 0; j < p->nlimits; j++)
		if (!decide_state(r, p, j, rep, 4 + 4 * j, ST_OK, now, t, what, &d[j], &ok, learnt) || !ok)
			return false;
	sluice__redis_govern(p, d, p->nlimits, out);
	if (p->each != NULL)
		for (size_t j = 0; j < p->nlimits; j++) {
			uint32_t flat = (uint32_t)(p->base[p->scope[j]] + p->index[j]);
			p->each[flat] = d[j];
			p->each[flat].limit_index = flat;
			p->each[flat].allowed = true;
		}
	size_t best = out->limit_index;
	out->limit_index = p->base[p->scope[best]] + p->index[best];
	out->allowed = true;
	return true;
}

#endif /* SLUICE_WITH_REDIS */
