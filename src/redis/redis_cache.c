/*
 * redis_cache.c - the backend's local deny cache (docs/redis.md, "Deny
 * cache"): requests whose limits are all GCRA or calendar are denied
 * locally while a state learnt from an earlier reply provably still denies.
 * GCRA: the server's F only grows, so a lower bound of F that denies now
 * denies on the server too. Calendar: within the window seen the server's
 * count only grows, so a count that denies at a calendar time never early
 * denies on the server too. Two-way set associative, written only from
 * decoded answers (sluice__redis_cache_learn()).
 */
#include "redis/redis_internal.h"

#ifdef SLUICE_WITH_REDIS

#include <stdatomic.h>

uint64_t sluice__redis_cache_now(const struct sluice_redis *r, uint64_t now_ns)
{
	return (r->flags & SLUICE_REDIS_CALLER_CLOCK) ? now_ns : sluice_monotonic_ns();
}

/* The deny cache is two-way set associative: a tag lives in either slot of
 * the even/odd pair its low bits pick (one slot when the cache has one), so
 * two limits of one request never evict each other (direct-mapped, they did
 * in 1 of 64 handles of a 64-slot cache, and the cache then never answered
 * for that key). */
static struct deny_slot *cache_set(struct sluice_redis *r, uint64_t tag)
{
	return &r->cache[tag & r->cache_mask & ~(uint64_t)1];
}

static struct deny_slot *cache_find(struct sluice_redis *r, uint64_t tag)
{
	struct deny_slot *s = cache_set(r, tag);
	if (s[0].tag == tag)
		return &s[0];
	return r->cache_mask != 0 && s[1].tag == tag ? &s[1] : NULL;
}

/* The slot for tag: its own, else an empty one of its pair, else the one
 * useful for the shorter time (the earlier until_ns), evicted. */
static struct deny_slot *cache_slot(struct sluice_redis *r, uint64_t tag)
{
	struct deny_slot *s = cache_find(r, tag);
	if (s == NULL) {
		struct deny_slot *set = cache_set(r, tag);
		s = &set[0];
		if (r->cache_mask != 0 && set[0].tag != 0 &&
		    (set[1].tag == 0 || set[1].until_ns < set[0].until_ns))
			s = &set[1];
	}
	return s;
}

/* GCRA: record that F >= tat_ns for tag (both are lower bounds of the
 * server's F, so the larger one is kept). */
static void cache_note(struct sluice_redis *r, uint64_t tag, uint64_t tat_ns)
{
	struct deny_slot *s = cache_find(r, tag);
	if (s != NULL && s->until_ns >= tat_ns)
		return;
	s = cache_slot(r, tag);
	*s = (struct deny_slot){ .tag = tag, .until_ns = tat_ns };
}

/* Calendar: record the cell's word as the server held it after this
 * call, whose window ends at until_ns (cache clock); calendar time =
 * cache time + offset_ns. The latest reply is the latest state (a handle's
 * calls run one after another), so it replaces the entry. */
static void cache_note_calendar(struct sluice_redis *r, uint64_t tag, uint64_t word, uint64_t until_ns,
				uint64_t offset_ns)
{
	struct deny_slot *s = cache_slot(r, tag);
	*s = (struct deny_slot){ .tag = tag, .until_ns = until_ns, .word = word, .offset_ns = offset_ns };
}

void sluice__redis_cache_learn(struct sluice_redis *r, const struct sluice__redis_learnt *learnt)
{
	if (r->cache == NULL)
		return;
	for (size_t i = 0; i < learnt->n; i++) {
		const struct sluice__redis_fact *f = &learnt->fact[i];
		if (f->calendar)
			cache_note_calendar(r, f->tag, f->word, f->until_ns, f->offset_ns);
		else
			cache_note(r, f->tag, f->until_ns);
	}
}

/* Try to deny p locally at time t. True with *out filled on a hit: some
 * limit j denies on its cached state, and every limit before j has a cached
 * state that admits (so j is the first denier the server would find on the
 * same state). GCRA: the cached F. Calendar: the cached word, judged by the
 * cell itself at calendar time t + offset_ns while t is before the end of
 * its window (within it the server's count only grows). */
bool sluice__redis_cache_try_deny(struct sluice_redis *r, const struct prepared *p, uint64_t t,
				  uint64_t batch, struct sluice_decision *out)
{
	uint64_t cost = p->req->cost;

	if (!p->all_cacheable)
		return false; /* sliding and slot kinds: not cached (docs/redis.md) */
	for (size_t j = 0; j < p->nlimits; j++) {
		const struct deny_slot *s = cache_find(r, p->tag[j]);
		if (s == NULL || s->held_batch == batch)
			return false; /* unknown, or changed by the batch before p */
		if (p->limit[j]->kind == SLUICE_LIMIT_CALENDAR) {
			const struct sluice_calendar_config *cfg = &p->limit[j]->calendar;
			/* cost > limit: NEVER, the server's answer. A window
			 * that has ended holds nothing we know. */
			if (cost > cfg->limit || t >= s->until_ns)
				return false;
			struct sluice_calendar c;
			/* relaxed: a private copy of the cached state, never shared. */
			atomic_store_explicit(&c.word, s->word, memory_order_relaxed); /* relaxed: why above */
			if (sluice_calendar_admit(&c, cfg, t + s->offset_ns, cost, out))
				continue; /* admits on its cached state */
			if (out->reason != SLUICE_REASON_QUOTA || out->reset_ns == SLUICE_NEVER)
				return false; /* the end of the clock: the server's */
			out->limit_index = p->base[p->scope[j]] + p->index[j];
			r->st.cache_hits++;
			return true;
		}
		const struct sluice_rate *rate = &p->limit[j]->rate;
		if (cost > rate->burst)
			return false;
		uint64_t debt = s->until_ns > t ? s->until_ns - t : 0;
		uint64_t slack = rate->tolerance_ns - cost * rate->interval_ns;
		if (debt > slack) {
			/* The server's horizon rule could answer NEVER for an F
			 * near 2^64; leave that rare case to the server. */
			if (s->until_ns > UINT64_MAX - 2 - rate->tolerance_ns)
				return false;
			sluice__redis_decide_limit(out, rate, ST_RATE, debt, cost);
			out->limit_index = p->base[p->scope[j]] + p->index[j];
			r->st.cache_hits++;
			return true;
		}
	}
	return false;
}

/*
 * A batch (one sluice__redis_admit_prepared() call) is judged as its
 * requests one by one: every request the cache does not deny is sent, and
 * the server runs the pipeline in order, so a later request of the batch
 * on one of its limits meets the state that request left, which the cache
 * has not seen yet. Such a request must not be denied from the entry as
 * it was before the batch (its remaining, reset and retry-after would miss
 * the admission; GCRA 1/s burst 10 after 5 admitted: a batch of 5 then 6
 * must deny the 6 with retry-after 6 s, not 1 s). So the entries of a sent
 * request are held for the rest of the batch (held_batch) and a held entry
 * answers nothing; it is written again from the replies. A request the
 * cache denies writes nothing on the server and holds nothing: a later
 * request of the batch may still be denied locally. Peeks write nothing
 * either and hold nothing.
 */
void sluice__redis_cache_hold(struct sluice_redis *r, const struct prepared *p, uint64_t batch)
{
	for (size_t j = 0; j < p->nlimits; j++) {
		struct deny_slot *s = cache_find(r, p->tag[j]);
		if (s != NULL)
			s->held_batch = batch;
	}
}

#endif /* SLUICE_WITH_REDIS */
