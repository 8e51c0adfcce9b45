/*
 * redis_lease.c - the backend's local lease (docs/redis.md, "Local lease"):
 * a hot GCRA-only request shape takes L units in one call and answers later
 * requests of the shape from them without a round trip.
 */
#include "redis/redis_internal.h"

#ifdef SLUICE_WITH_REDIS

#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

/* ---- the local lease ---- */

/*
 * A hot request shape (the same keys and limits, seen lease_hot_hits times
 * within one lease_ttl_ns by this handle) takes a lease: the request is sent
 * with cost = the lease's units L (all-or-nothing with every limit and scope,
 * as any request), the caller gets its cost c, and the other L - c units are
 * kept here; later requests of the shape are answered from them without a
 * round trip while they last and the lease is younger than lease_ttl_ns.
 * Unused units are dropped, never returned to the server. The fleet-wide
 * bound and the meaning of a leased answer's fields: docs/redis.md,
 * "Local lease".
 *
 * Which requests lease (sluice__redis_lease_eligible()): admissions (cost > 0, mode
 * admit) whose limits are all GCRA and whose keys are on one hash slot.
 * The bound is derived for GCRA's F alone: a window or slots limit would
 * need its own (a calendar window spent by a lease stays spent until the
 * window turns), and a slot cannot be held for a caller that has not
 * asked yet. A cross-slot request's groups are reserved and may be
 * cancelled, and a cancel cannot give back units a lease handed out. So
 * every other request (window and slot kinds, cross-slot groups,
 * acquires, peeks) neither counts towards heat, nor is answered from a
 * lease, nor takes one: it is a round trip (or a deny-cache hit), exactly
 * as without a lease. Its keys may be those of a leased shape: the
 * server's state already holds the lease's units, so its answer stays
 * exact.
 */

bool sluice__redis_lease_eligible(const struct sluice_redis *r, const struct prepared *p)
{
	return r->lease != NULL && p->req->cost > 0 && p->mode == MODE_ADMIT && p->all_gcra &&
	       !p->cross && p->handles == NULL && p->each == NULL;
}

/* The shape of a request: its keys and limits in order (the deny-cache
 * tags hash each (key, limit index, interval, depth); their sequence
 * names the request's keys and limits). A 64-bit hash, as for the deny
 * cache: two shapes share a lease only on a hash collision. */
static uint64_t lease_sig(const struct prepared *p)
{
	uint64_t h = XXH3_64bits_withSeed(p->tag, p->nlimits * sizeof p->tag[0], p->req->nscopes);
	return h != 0 ? h : 1;
}

/* Count a request (cost > 0) towards its shape's heat, and answer it from
 * the shape's lease if that holds enough units and is live at t (lease
 * clock = the deny cache's). True with *out filled on a leased answer. */
bool sluice__redis_lease_answer(struct sluice_redis *r, struct prepared *p, uint64_t t,
				struct sluice_decision *out)
{
	uint64_t cost = p->req->cost;
	uint64_t sig = lease_sig(p);
	struct lease *l = &r->lease[sig & r->lease_mask];

	p->lease_sig = sig;
	if (l->sig != sig) {
		/* Never during a take: sluice__redis_admit_prepared() matches every request
		 * of a call to its entry before it marks any take. */
		r->st.lease_wasted += l->left;
		memset(l, 0, sizeof *l);
		l->sig = sig;
		l->heat_start_ns = t;
	}
	if (t < l->heat_start_ns || t - l->heat_start_ns >= r->lease_ttl_ns) {
		l->heat_start_ns = t;
		l->hits = 0;
	}
	if (l->hits < UINT32_MAX)
		l->hits++;
	if (l->left > 0 && t >= l->start_ns && t - l->start_ns >= r->lease_ttl_ns) {
		r->st.lease_wasted += l->left; /* expired */
		l->left = 0;
	}
	/* t < start: the caller's clock went back before the lease; answering
	 * then would break the bound (an admission before its consumption). */
	if (l->left < cost || t < l->start_ns)
		return false;
	l->left -= cost;
	out->allowed = true;
	out->degraded = false;
	out->reason = SLUICE_REASON_NONE;
	out->reserved_ = 0;
	out->limit_index = l->gov_index;
	out->limit = l->gov_limit;
	out->remaining = l->left; /* only what we hold: the server's share is unknown */
	out->reset_ns = l->gov_tat_ns > t ? l->gov_tat_ns - t : 0;
	out->retry_after_ns = 0;
	r->st.leased++;
	return true;
}

/* If p's shape is hot and has no take in this call, turn p into a lease
 * take: req points to a copy with cost = the lease's units, capped by the
 * smallest burst of its limits (a lease that some limit could never grant
 * would deny every time); no take if that is not more than p's own cost. */
void sluice__redis_lease_mark_take(struct sluice_redis *r, struct prepared *p)
{
	struct lease *l = &r->lease[p->lease_sig & r->lease_mask];
	uint64_t units = r->lease_units;

	if (l->sig != p->lease_sig || l->taking || l->hits < r->lease_hot_hits)
		return;
	for (size_t j = 0; j < p->nlimits; j++)
		if (p->limit[j]->rate.burst < units)
			units = p->limit[j]->rate.burst;
	if (units <= p->req->cost)
		return;
	l->taking = true;
	p->lease = l;
	p->orig = p->req;
	p->take = *p->req;
	p->take.cost = units;
	p->req = &p->take;
}

/*
 * After the exchange: turn each take's answer (a decision for L units) into
 * the answer for the caller's cost c, and install the lease. Allowed: the
 * lease holds L - c units from t (the time before the take was sent), and
 * the answer's remaining counts them (exact at the server's moment: its
 * remaining after L, plus what we hold). Denied at limit j with debt d: if
 * c would be denied at j too (d > tau - c*T; the limits before j admitted
 * L >= c, so j is also c's first denier), that is c's exact answer;
 * otherwise c might fit where L did not, and the request is sent again
 * with cost c (returns true). Degraded answers stay as they are.
 */
bool sluice__redis_lease_finish(struct sluice_redis *r, struct prepared *ps, size_t n, uint64_t t,
				struct sluice_decision *out)
{
	bool resend = false;

	for (size_t i = 0; i < n; i++) {
		struct prepared *p = &ps[i];
		struct lease *l = p->lease;
		if (l == NULL)
			continue;
		uint64_t units = p->take.cost, cost = p->orig->cost;
		p->req = p->orig;
		p->lease = NULL;
		l->taking = false;
		struct sluice_decision *d = &out[i];
		if (!p->done || d->degraded)
			continue;
		if (d->allowed) {
			r->st.lease_grants++;
			r->st.lease_wasted += l->left; /* superseded */
			l->left = units - cost;
			l->start_ns = t;
			l->gov_index = d->limit_index;
			l->gov_limit = d->limit;
			l->gov_tat_ns = sluice__add_sat(t, d->reset_ns);
			d->remaining += units - cost;
			continue;
		}
		/* The denier's flat index in the caller's terms (sluice__redis_decode());
		 * with one slot and GCRA only that is its place j in p too,
		 * but look it up rather than rely on it. */
		uint32_t index = d->limit_index;
		size_t j = 0;
		while (j < p->nlimits && p->base[p->scope[j]] + p->index[j] != index)
			j++;
		const struct sluice_rate *rate = j < p->nlimits ? &p->limit[j]->rate : NULL;
		if (rate != NULL && d->reason == SLUICE_REASON_RATE &&
		    d->reset_ns > rate->tolerance_ns - cost * rate->interval_ns) {
			sluice__redis_decide_limit(d, rate, ST_RATE, d->reset_ns, cost);
			d->limit_index = index;
			continue;
		}
		r->st.denied--; /* counted by sluice__redis_count(); the resend counts again */
		p->done = false;
		resend = true;
	}
	return resend;
}

#endif /* SLUICE_WITH_REDIS */
