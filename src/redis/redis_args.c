/*
 * redis_args.c - requests of the Redis backend validated and flattened
 * (struct prepared: every limit in the order it is decided, with its
 * deny-cache tag and cluster slot), and the script's arguments built from
 * them in the handle's scratch buffer, without allocation (the argument
 * layout is limits.lua's header).
 */
#include "redis/redis_internal.h"

#ifdef SLUICE_WITH_REDIS

#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

/* ---- validation and argument building ---- */

/* Largest window (sliding counter, calendar) and slot lease on this
 * backend: as SLUICE_REDIS_MAX_TOLERANCE_NS, so that every duration in the
 * script is exact in a double. */
#define MAX_WINDOW_NS SLUICE_REDIS_MAX_TOLERANCE_NS

/* Validate one limit for this backend. */
static int check_limit(const struct sluice_redis *r, const struct sluice_limit *l)
{
	if (sluice__limit_ops_of(l->kind) == NULL || sluice__limit_validate(l) != SLUICE_OK)
		return SLUICE_EINVAL;
	switch (l->kind) {
	case SLUICE_LIMIT_SLIDING_LOG:
		return l->log.limit > SLUICE_REDIS_MAX_LOG_LIMIT || l->log.window_ns > MAX_WINDOW_NS
			       ? SLUICE_ERANGE
			       : SLUICE_OK;
	case SLUICE_LIMIT_GCRA:
		return l->rate.tolerance_ns > SLUICE_REDIS_MAX_TOLERANCE_NS ? SLUICE_ERANGE : SLUICE_OK;
	case SLUICE_LIMIT_SLIDING_COUNTER:
	case SLUICE_LIMIT_CALENDAR: {
		uint64_t w = l->kind == SLUICE_LIMIT_CALENDAR ? l->calendar.window_ns : l->counter.window_ns;
		/* With the server's clock the script divides TIME (whole us) by
		 * the window: it must be whole microseconds. */
		if (w > MAX_WINDOW_NS || (!(r->flags & SLUICE_REDIS_CALLER_CLOCK) && w % 1000 != 0))
			return SLUICE_ERANGE;
		return SLUICE_OK;
	}
	default:
		return l->slots.lease_ttl_ns > MAX_WINDOW_NS ? SLUICE_ERANGE : SLUICE_OK;
	}
}

int sluice__redis_prepare(struct sluice_redis *r, const struct sluice_redis_request *req, struct prepared *p)
{
	return sluice__redis_prepare_checked(r, req, p, true);
}

int sluice__redis_prepare_checked(struct sluice_redis *r, const struct sluice_redis_request *req,
				  struct prepared *p, bool check_limits)
{
	if (req->scopes == NULL || req->nscopes == 0)
		return SLUICE_EINVAL;
	if (req->nscopes > SLUICE_REDIS_MAX_SCOPES)
		return SLUICE_ETOOBIG;
	p->req = req;
	p->nlimits = 0;
	p->slot = 0;
	p->mode = req->cost > 0 ? MODE_ADMIT : MODE_PEEK;
	p->all_gcra = p->all_cacheable = true;
	p->has_slots = p->cross = p->done = p->sent = false;
	p->reply = NULL;
	p->handles = NULL;
	p->each = NULL;
	for (size_t s = 0; s < req->nscopes; s++) {
		const struct sluice_redis_scope *sc = &req->scopes[s];
		if (sc->key == NULL || sc->key_len > SLUICE_LIMITER_MAX_KEY)
			return SLUICE_EKEY;
		if (sc->limits == NULL || sc->nlimits == 0)
			return SLUICE_EINVAL;
		for (size_t q = 0; q < s; q++)
			if (req->scopes[q].key_len == sc->key_len &&
			    memcmp(req->scopes[q].key, sc->key, sc->key_len) == 0)
				return SLUICE_EINVAL;
		if (sc->nlimits > SLUICE_REDIS_MAX_LIMITS - p->nlimits)
			return SLUICE_ETOOBIG;
		if (r->slot_node != NULL) {
			/* Cluster: a request whose keys hash to several slots
			 * runs the cross-slot protocol (sluice__redis_admit_cross()). */
			memcpy(r->buf, r->prefix, r->prefix_len);
			memcpy(r->buf + r->prefix_len, sc->key, sc->key_len);
			uint32_t slot = sluice__redis_key_slot(r->buf, r->prefix_len + sc->key_len);
			if (s == 0)
				p->slot = slot;
			else if (slot != p->slot)
				p->cross = true;
		}
		p->base[s] = (uint32_t)p->nlimits;
		p->caller_scope[s] = (uint8_t)s;
		size_t first_gcra = sc->nlimits, nslots = 0;
		for (size_t i = 0; i < sc->nlimits; i++) {
			const struct sluice_limit *l = &sc->limits[i];
			int rc = check_limits ? check_limit(r, l) : SLUICE_OK;
			if (rc != SLUICE_OK)
				return rc;
			if (l->kind == SLUICE_LIMIT_SLIDING_LOG && r->log_cell == NULL) {
				/* Scratch for rebuilding a log from the server's
				 * state (decide_state()), the largest allowed. */
				struct sluice_window_log_config c;
				sluice_window_log_config_init(&c, SLUICE_REDIS_MAX_LOG_LIMIT, 1);
				r->log_cell = malloc(sluice_window_log_size(&c));
				if (r->log_cell == NULL)
					return SLUICE_ENOMEM;
			}
			if (l->kind == SLUICE_LIMIT_GCRA && first_gcra == sc->nlimits)
				first_gcra = i;
			nslots += l->kind == SLUICE_LIMIT_SLOTS;
			p->all_gcra &= l->kind == SLUICE_LIMIT_GCRA;
			p->all_cacheable &= l->kind == SLUICE_LIMIT_GCRA || l->kind == SLUICE_LIMIT_CALENDAR;
		}
		if (nslots > 1)
			return SLUICE_EINVAL; /* as the keyed limiter: one slots limit per policy */
		p->has_slots |= nslots > 0;
		uint64_t key_hash = XXH3_64bits_withSeed(sc->key, sc->key_len, r->cache_seed);
		/* The limiter's order: the first GCRA limit (its commit cell),
		 * then the others as given. */
		for (size_t n = 0; n < sc->nlimits; n++) {
			size_t i = first_gcra == sc->nlimits ? n : n == 0 ? first_gcra : n <= first_gcra ? n - 1 : n;
			const struct sluice_limit *l = &sc->limits[i];
			uint64_t tag = 1;
			if (l->kind == SLUICE_LIMIT_GCRA) {
				uint64_t id[3] = { i, l->rate.interval_ns, l->rate.tolerance_ns };
				tag = XXH3_64bits_withSeed(id, sizeof id, key_hash);
			} else if (l->kind == SLUICE_LIMIT_CALENDAR) {
				/* As its field "k<i>:<limit>:<W>": a changed limit is
				 * another entry. Bit 63 keeps it apart from GCRA's. */
				uint64_t id[3] = { (uint64_t)1 << 63 | i, l->calendar.limit, l->calendar.window_ns };
				tag = XXH3_64bits_withSeed(id, sizeof id, key_hash);
			}
			p->tag[p->nlimits] = tag != 0 ? tag : 1;
			p->index[p->nlimits] = (uint16_t)i;
			p->scope[p->nlimits] = (uint8_t)s;
			p->limit[p->nlimits++] = l;
		}
	}
	return SLUICE_OK;
}

/* Append "<letter><i>:<a>:<b>" (GCRA: no letter) at f; returns its length. */
size_t sluice__redis_field_name(char *f, char letter, uint64_t i, uint64_t a, uint64_t b)
{
	size_t n = 0;
	if (letter != 0)
		f[n++] = letter;
	n += sluice__u64_to_dec(f + n, i);
	f[n++] = ':';
	n += sluice__u64_to_dec(f + n, a);
	f[n++] = ':';
	n += sluice__u64_to_dec(f + n, b);
	return n;
}

/* Fill r->argv for p; returns argc. r->buf is large enough by construction
 * (create sizes it for the largest request). */
int sluice__redis_build_args(struct sluice_redis *r, const struct prepared *p, uint64_t now_ns)
{
	const struct sluice_redis_request *req = p->req;
	bool caller_clock = (r->flags & SLUICE_REDIS_CALLER_CLOCK) != 0;
	uint64_t cost = req->cost;
	char *w = r->buf;
	int argc = 0;

#define ARG(ptr, len) (r->argv[argc] = (ptr), r->argvlen[argc] = (len), argc++)
#define NUM(v) (ARG(w, sluice__u64_to_dec(w, (v))), w += NUM_MAX)
	ARG("EVALSHA", 7);
	ARG(r->sha, 40);
	NUM(req->nscopes);
	for (size_t s = 0; s < req->nscopes; s++) {
		memcpy(w, r->prefix, r->prefix_len);
		memcpy(w + r->prefix_len, req->scopes[s].key, req->scopes[s].key_len);
		ARG(w, r->prefix_len + req->scopes[s].key_len);
		w += r->prefix_len + req->scopes[s].key_len;
	}
	if (caller_clock)
		NUM(now_ns);
	else
		ARG("", 0);
	ARG(&p->mode, 1);
	ARG(r->grace, r->grace_len);
	NUM(r->slots_tag);
	size_t j = 0;
	for (size_t s = 0; s < req->nscopes; s++) {
		NUM(req->scopes[s].nlimits);
		for (; j < p->nlimits && p->scope[j] == s; j++) {
			const struct sluice_limit *l = p->limit[j];
			uint64_t i = p->index[j];
			switch (l->kind) {
			case SLUICE_LIMIT_GCRA: {
				const struct sluice_rate *rate = &l->rate;
				ARG("g", 1);
				ARG(w, sluice__redis_field_name(w, 0, i, rate->interval_ns, rate->tolerance_ns));
				w += FIELD_MAX;
				if (cost > rate->burst) {
					ARG("-1", 2);
					NUM(rate->tolerance_ns);
				} else {
					NUM(cost * rate->interval_ns);
					NUM(rate->tolerance_ns - cost * rate->interval_ns);
				}
				break;
			}
			case SLUICE_LIMIT_SLIDING_COUNTER:
			case SLUICE_LIMIT_CALENDAR: {
				bool cal = l->kind == SLUICE_LIMIT_CALENDAR;
				uint64_t lim = cal ? l->calendar.limit : l->counter.limit;
				uint64_t win = cal ? l->calendar.window_ns : l->counter.window_ns;
				ARG(cal ? "k" : "c", 1);
				ARG(w, sluice__redis_field_name(w, cal ? 'k' : 'c', i, lim, win));
				w += FIELD_MAX;
				if (caller_clock) /* window index mod the cell's index field */
					NUM(now_ns / win & (cal ? UINT64_C(0xffffffff) : UINT64_C(0xffffff)));
				else
					ARG("", 0);
				if (cost > lim)
					ARG("-1", 2);
				else
					NUM(cost);
				NUM(lim);
				NUM(win);
				if (caller_clock)
					NUM(now_ns % win);
				else
					ARG("", 0);
				break;
			}
			case SLUICE_LIMIT_SLIDING_LOG: {
				const struct sluice_window_log_config *c = &l->log;
				ARG("l", 1);
				ARG(w, sluice__redis_field_name(w, 'l', i, c->limit, c->window_ns));
				w += FIELD_MAX;
				if (cost > c->limit)
					ARG("-1", 2);
				else
					NUM(cost);
				NUM(c->limit);
				NUM(c->window_ns);
				if (!caller_clock) /* the script subtracts W from TIME */
					ARG("", 0);
				else if (now_ns < c->window_ns) /* nothing has left any window */
					ARG("-", 1);
				else
					NUM(now_ns - c->window_ns);
				break;
			}
			default: {
				const struct sluice_slots_config *c = &l->slots;
				ARG("s", 1);
				ARG(w, sluice__redis_field_name(w, 's', i, c->slots, c->lease_ttl_ns));
				w += FIELD_MAX;
				NUM(c->slots);
				NUM(c->lease_ttl_ns);
				break;
			}
			}
		}
	}
#undef NUM
#undef ARG
	return argc;
}

size_t sluice__redis_buf_size_for(size_t prefix_len)
{
	return NUM_MAX * 3 + SLUICE_REDIS_MAX_SCOPES * (prefix_len + SLUICE_LIMITER_MAX_KEY + NUM_MAX) +
	       SLUICE_REDIS_MAX_LIMITS * (FIELD_MAX + NUMS_PER_LIMIT * NUM_MAX) +
	       4 * (SLUICE_REDIS_MAX_LIMITS + SLUICE_REDIS_MAX_SCOPES) * NUM_MAX;
}

/* Argument prefix of a script call on p's keys: EVALSHA sha n keys now mode
 * grace tag. Returns argc; *w: where the scratch continues. */
int sluice__redis_head_args(struct sluice_redis *r, const struct prepared *p, uint64_t now_ns,
			    const char *mode,
			    char **w)
{
	int argc = 0;
	char *b = r->buf;

#define ARG(ptr, len) (r->argv[argc] = (ptr), r->argvlen[argc] = (len), argc++)
	ARG("EVALSHA", 7);
	ARG(r->sha, 40);
	ARG(b, sluice__u64_to_dec(b, p->req->nscopes));
	b += NUM_MAX;
	for (size_t s = 0; s < p->req->nscopes; s++) {
		memcpy(b, r->prefix, r->prefix_len);
		memcpy(b + r->prefix_len, p->req->scopes[s].key, p->req->scopes[s].key_len);
		ARG(b, r->prefix_len + p->req->scopes[s].key_len);
		b += r->prefix_len + p->req->scopes[s].key_len;
	}
	if (r->flags & SLUICE_REDIS_CALLER_CLOCK) {
		ARG(b, sluice__u64_to_dec(b, now_ns));
		b += NUM_MAX;
	} else {
		ARG("", 0);
	}
	ARG(mode, 1);
	ARG(r->grace, r->grace_len);
	ARG("0", 1);
#undef ARG
	*w = b;
	return argc;
}

#endif /* SLUICE_WITH_REDIS */
