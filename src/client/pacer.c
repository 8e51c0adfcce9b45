/*
 * The pacer: what the last responses said, kept per host or per server
 * bucket, so that the next request waits as long as needed and no longer.
 *
 * State. An entry holds up to SLUICE_CLIENT_MAX_POLICIES dimensions (the
 * response's policies that carry a remaining count, or its one
 * limit/remaining/reset triple), each with: the budget left, counted down
 * locally by every request let through; the reset instant on the caller's
 * monotonic clock (now + the response's delay, so clock skew between
 * client and server never enters); the instant it may be used again (the
 * reset plus upward jitter drawn once per response from the caller's RNG);
 * the window length when known; and the spacing deadline of the last
 * request when the budget runs low. The entry also holds a block (a
 * Retry-After or a backoff after a refusal: every thread waits) and the
 * number of requests in flight.
 *
 * Why the budget is never overrun. Let R be what a response says is left
 * and F the requests still in flight when it is learnt. The server has
 * counted at most the requests answered so far; the F in flight may or
 * may not be counted, so the pacer assumes they are not and keeps R - F.
 * The count rises only at a reset; every response can only lower it:
 *   1. with no count known, a response sets it to R - F and its reset;
 *   2. with a count known, a response lowers it to min(count, R - F)
 *      (answers arrive out of order: a late one with a larger, stale R
 *      changes nothing) and can only delay the reset (the later of the
 *      two: a reset is estimated as the answer's arrival plus the delay it
 *      gives, never earlier than the server's own);
 *   3. a response whose reset has passed counted a window that has ended:
 *      it is ignored; a response to a request sent before the last local
 *      reset may describe the window before, so its reset is not taken
 *      (its count may still only lower);
 *   4. when the reset (plus its jitter) passes locally, the count is the
 *      limit less the requests in flight (they may land in the new
 *      window) and less the answers that arrived after a lower bound of
 *      the server's reset (the least of sent + delay over the window's
 *      answers: such a request may have been counted in the new window
 *      and be answered already); the next reset is a window later when
 *      the window is known, else unknown until a response sent after this
 *      reset brings one; with no known limit the dimension is unknown;
 *   5. an exhausted dimension with no known reset waits poll_ns while
 *      answers are in flight; with none, it lets one probe through (or the
 *      state could never change), but not before the latest reset that an
 *      answer gave and rule 3 did not take: each request in flight at the
 *      last reset was counted either in an older window, which does not
 *      matter, or in the one now running, which then ends by its answer's
 *      reset. (A request that never gets an answer leaves this unknown.)
 * Each is conservative given the one before, so at no time does the sum
 * of requests let through exceed what the server last allowed. The cost
 * is efficiency: R - F counts twice a request the server had already seen
 * when its neighbour's answer left.
 *
 * Concurrency: a mutex per pacer, held for the whole of each call; calls
 * are short (a linear scan of the entries and a few dimensions), allocate
 * nothing and never block inside. This is not a server hot path; a lock
 * makes the argument above hold for any interleaving of threads.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "client/client_internal.h"

#define DIM_NAME_MAX 24 /* longer names compare by their first 23 bytes */
#define PACER_ENTRIES_MAX 4096

enum { FREE = 0, KEY = 1, BUCKET = 2 };

struct dim {
	char name[DIM_NAME_MAX];
	bool used, tokens, has_limit, has_remaining;
	uint32_t late;        /* answers that may have landed past the reset (rule 4) */
	uint64_t limit, remaining;
	uint64_t reset_at_ns; /* 0: unknown */
	uint64_t open_at_ns;  /* reset plus jitter; 0: unknown */
	uint64_t window_ns;   /* 0: unknown */
	uint64_t next_ns;     /* spacing: the earliest next request */
	uint64_t reset_seen_ns; /* when the last local reset happened (rule 3) */
	uint64_t reset_lb_ns;   /* no later than the server's reset; 0: unknown */
	uint64_t probe_after_ns; /* the latest reset of the answers not taken (rule 5) */
};

struct entry {
	uint8_t kind;
	uint8_t key_len;
	uint8_t alias_len;
	char key[SLUICE_PACER_KEY_MAX];
	char alias[SLUICE_CLIENT_BUCKET_MAX];
	uint32_t inflight;
	uint64_t blocked_until_ns;
	uint64_t last_used_ns;
	struct dim dims[SLUICE_CLIENT_MAX_POLICIES];
};

/* docs/http.md gives the table's cost per entry */
_Static_assert(sizeof(struct entry) <= 1088, "a pacer entry stays about 1 KiB");

struct sluice_pacer {
	pthread_mutex_t lock;
	struct sluice_pacer_opts opts;
	uint32_t nentries;
	struct entry entries[];
};

void sluice_pacer_opts_default(struct sluice_pacer_opts *opts)
{
	if (opts == NULL)
		return;
	memset(opts, 0, sizeof(*opts));
	opts->size = sizeof(*opts);
	opts->max_entries = 256;
	opts->low_permille = 200;
	opts->jitter_permille = 100;
	opts->poll_ns = 10 * SLUICE__NS_PER_MS;
	sluice_backoff_opts_default(&opts->backoff);
}

int sluice_pacer_create(const struct sluice_pacer_opts *opts, struct sluice_pacer **out)
{
	if (out == NULL)
		return SLUICE_EINVAL;
	*out = NULL;
	if (opts == NULL || opts->size < sizeof(*opts) || opts->max_entries == 0 ||
	    opts->max_entries > PACER_ENTRIES_MAX || opts->low_permille > 1000 ||
	    opts->jitter_permille > 1000 || opts->poll_ns == 0 ||
	    !sluice__backoff_opts_valid(&opts->backoff))
		return SLUICE_EINVAL;
	struct sluice_pacer *p =
		calloc(1, sizeof(*p) + (size_t)opts->max_entries * sizeof(struct entry));
	if (p == NULL)
		return SLUICE_ENOMEM;
	if (pthread_mutex_init(&p->lock, NULL) != 0) {
		free(p);
		return SLUICE_ENOMEM;
	}
	p->opts = *opts;
	p->nentries = opts->max_entries;
	*out = p;
	return 0;
}

void sluice_pacer_destroy(struct sluice_pacer *pacer)
{
	if (pacer == NULL)
		return;
	pthread_mutex_destroy(&pacer->lock);
	free(pacer);
}

/* ---- entries ------------------------------------------------------------------ */

static struct entry *find(struct sluice_pacer *p, uint8_t kind, const char *key, size_t len)
{
	for (uint32_t i = 0; i < p->nentries; i++) {
		struct entry *e = &p->entries[i];
		if (e->kind == kind && e->key_len == len && memcmp(e->key, key, len) == 0)
			return e;
	}
	return NULL;
}

/* Nothing pending: no request in flight, no block, no future reset. */
static bool idle(const struct entry *e, uint64_t now)
{
	if (e->inflight > 0 || e->blocked_until_ns > now)
		return false;
	for (int k = 0; k < SLUICE_CLIENT_MAX_POLICIES; k++)
		if (e->dims[k].used && e->dims[k].open_at_ns > now)
			return false;
	return true;
}

/* The entry for (kind, key): found, or a free one, or the least recently
 * used idle one reused; NULL when all are busy. */
static struct entry *get(struct sluice_pacer *p, uint8_t kind, const char *key, size_t len,
			 uint64_t now)
{
	struct entry *e = find(p, kind, key, len), *victim = NULL;

	if (e != NULL)
		return e;
	for (uint32_t i = 0; i < p->nentries; i++) {
		struct entry *c = &p->entries[i];
		if (c->kind == FREE) {
			victim = c;
			break;
		}
		if (idle(c, now) && (victim == NULL || c->last_used_ns < victim->last_used_ns))
			victim = c;
	}
	if (victim == NULL)
		return NULL;
	memset(victim, 0, sizeof(*victim));
	victim->kind = kind;
	victim->key_len = (uint8_t)len;
	memcpy(victim->key, key, len);
	victim->last_used_ns = now;
	return victim;
}

/* Where a key's state lives: its bucket's entry when it has one. */
static struct entry *state_of(struct sluice_pacer *p, struct entry *e)
{
	if (e->alias_len > 0) {
		struct entry *b = find(p, BUCKET, e->alias, e->alias_len);
		if (b != NULL)
			return b;
	}
	return e;
}

/* ---- dimensions ------------------------------------------------------------------ */

static bool low(const struct sluice_pacer *p, const struct dim *d)
{
	return !d->has_limit ||
	       (sluice__u128)d->remaining * 1000 <= (sluice__u128)d->limit * p->opts.low_permille;
}

/* Rule 4: the reset has passed locally. */
static void refresh(struct dim *d, uint64_t now, uint32_t inflight)
{
	if (!d->has_remaining || d->open_at_ns == 0 || now < d->open_at_ns)
		return;
	if (d->has_limit) {
		uint64_t busy = d->tokens ? 0 : sluice__add_sat(inflight, d->late);
		d->remaining = d->limit > busy ? d->limit - busy : 0;
	} else {
		d->has_remaining = false;
	}
	if (d->window_ns > 0) {
		/* the next window's reset, keeping this response's jitter */
		uint64_t jitter = d->open_at_ns - d->reset_at_ns, past = now - d->reset_at_ns;
		uint64_t step = sluice__mul_sat(past / d->window_ns + 1, d->window_ns);
		d->reset_at_ns = sluice__add_sat(d->reset_at_ns, step);
		d->open_at_ns = sluice__add_sat(d->reset_at_ns, jitter);
		d->reset_lb_ns = sluice__add_sat(d->reset_lb_ns, step);
	} else {
		d->reset_at_ns = d->open_at_ns = d->reset_lb_ns = 0;
	}
	d->next_ns = 0;
	d->late = 0;
	d->probe_after_ns = 0;
	d->reset_seen_ns = now;
}

static struct dim *dim_for(struct entry *s, const char *name)
{
	struct dim *spare = NULL;

	for (int k = 0; k < SLUICE_CLIENT_MAX_POLICIES; k++) {
		struct dim *d = &s->dims[k];
		if (d->used && strncmp(d->name, name, DIM_NAME_MAX - 1) == 0)
			return d;
		if (!d->used && spare == NULL)
			spare = d;
	}
	if (spare != NULL) {
		memset(spare, 0, sizeof(*spare));
		spare->used = true;
		strncpy(spare->name, name, DIM_NAME_MAX - 1);
	}
	return spare;
}

struct learnt {
	const char *name, *unit;
	bool has_limit, has_reset;
	uint64_t limit, remaining, reset_ns, window_ns;
};

/* Rules 1-3 for one dimension of one response to a request sent at sent. */
static void learn_dim(struct sluice_pacer *p, struct entry *s, const struct learnt *l, uint64_t sent,
		      uint64_t now, struct sluice_rng *rng)
{
	struct dim *d = dim_for(s, l->name);

	if (d == NULL)
		return;
	refresh(d, now, s->inflight);
	d->tokens = l->unit[0] != '\0' && strcmp(l->unit, "requests") != 0;
	if (l->has_limit) {
		d->has_limit = true;
		d->limit = l->limit;
	}
	if (l->window_ns > 0)
		d->window_ns = l->window_ns;
	/* rule 4: an answer arriving after the reset's lower bound may come
	 * from a request the server counted in the next window, yet it is no
	 * longer in flight when that window opens here */
	if (d->open_at_ns != 0 && d->reset_lb_ns != 0 && now >= d->reset_lb_ns && d->late < UINT32_MAX)
		d->late++;
	if (l->has_reset && l->reset_ns == 0)
		return; /* rule 3: the window it counted has ended */
	uint64_t busy = d->tokens ? 0 : s->inflight;
	uint64_t left = l->remaining > busy ? l->remaining - busy : 0;
	d->remaining = d->has_remaining ? SLUICE_MIN(d->remaining, left) : left; /* rules 1, 2 */
	d->has_remaining = true;
	uint64_t reset_ns = l->has_reset ? l->reset_ns : l->window_ns; /* a window bounds the reset */
	if (reset_ns == 0)
		return;
	if (sent < d->reset_seen_ns) {
		/* rule 3: this reset may be the window's before, too early to
		 * refill at; but if its request was counted in the window now
		 * running, that window ends by then: no probe before it (rule 5) */
		d->probe_after_ns = SLUICE_MAX(d->probe_after_ns, sluice__add_sat(now, reset_ns));
		return;
	}
	uint64_t reset_at = sluice__add_sat(now, reset_ns);
	uint64_t jitter = rng != NULL ? sluice__rng_upto(rng, sluice__permille_of(reset_ns, p->opts.jitter_permille)) : 0;
	uint64_t open_at = sluice__add_sat(reset_at, jitter);
	/* the server answered between sent and now: its reset is no earlier
	 * than sent + reset_ns; the least such bound is one for the window */
	uint64_t lb = sluice__add_sat(sent, reset_ns);
	if (d->open_at_ns == 0) { /* rule 1 */
		d->reset_at_ns = reset_at;
		d->open_at_ns = open_at;
		d->reset_lb_ns = lb;
		d->next_ns = 0;
	} else { /* rule 2: only later */
		d->reset_at_ns = SLUICE_MAX(d->reset_at_ns, reset_at);
		d->open_at_ns = SLUICE_MAX(d->open_at_ns, open_at);
		d->reset_lb_ns = d->reset_lb_ns != 0 ? SLUICE_MIN(d->reset_lb_ns, lb) : lb;
	}
}

static void learn(struct sluice_pacer *p, struct entry *s, const struct sluice_client_limits *l,
		  uint64_t sent, uint64_t now, struct sluice_rng *rng)
{
	bool any = false;

	for (uint32_t i = 0; i < l->npolicies && i < SLUICE_CLIENT_MAX_POLICIES; i++) {
		const struct sluice_client_policy *c = &l->policies[i];
		if (!c->has_remaining)
			continue;
		struct learnt one = {c->name, c->unit, c->has_quota, c->has_reset, c->quota,
				     c->remaining, c->reset_ns,
				     c->has_window ? sluice__mul_sat(c->window_s, SLUICE_NS_PER_SEC) : 0};
		learn_dim(p, s, &one, sent, now, rng);
		any = true;
	}
	if (!any && l->has_remaining) {
		struct learnt one = {"", "", l->has_limit, l->has_reset, l->limit, l->remaining,
				     l->reset_ns, 0};
		learn_dim(p, s, &one, sent, now, rng);
	}
}

/* ---- the calls --------------------------------------------------------------------- */

static bool key_ok(const char *key, size_t len)
{
	return key != NULL && len > 0 && len <= SLUICE_PACER_KEY_MAX;
}

int sluice_pacer_acquire(struct sluice_pacer *p, const char *key, size_t key_len, uint64_t cost_units,
			 uint64_t now, uint64_t *wait_ns)
{
	if (p == NULL || wait_ns == NULL)
		return SLUICE_EINVAL;
	if (!key_ok(key, key_len))
		return SLUICE_EKEY;
	pthread_mutex_lock(&p->lock);
	struct entry *e = get(p, KEY, key, key_len, now);
	if (e == NULL) { /* every entry busy: no state for this key */
		pthread_mutex_unlock(&p->lock);
		*wait_ns = 0;
		return 0;
	}
	e->last_used_ns = now;
	struct entry *s = state_of(p, e);
	s->last_used_ns = now;
	uint64_t wait = s->blocked_until_ns > now ? s->blocked_until_ns - now : 0;
	for (int k = 0; k < SLUICE_CLIENT_MAX_POLICIES; k++) {
		struct dim *d = &s->dims[k];
		if (!d->used)
			continue;
		refresh(d, now, s->inflight);
		uint64_t c = d->tokens ? cost_units : 1, w = 0;
		if (c == 0 || !d->has_remaining)
			continue;
		if (d->remaining < c) {
			if (d->open_at_ns > now)
				w = d->open_at_ns - now;
			else if (s->inflight > 0)
				w = p->opts.poll_ns; /* rule 5: answers are on their way */
			else if (d->probe_after_ns > now)
				w = d->probe_after_ns - now; /* rule 5: the probe after the latest reset heard */
		} else if (d->open_at_ns > now && d->next_ns > now && low(p, d)) {
			w = d->next_ns - now;
		}
		wait = SLUICE_MAX(wait, w);
	}
	if (wait == 0) {
		for (int k = 0; k < SLUICE_CLIENT_MAX_POLICIES; k++) {
			struct dim *d = &s->dims[k];
			uint64_t c = d->tokens ? cost_units : 1;
			if (!d->used || !d->has_remaining || c == 0)
				continue;
			uint64_t before = d->remaining;
			d->remaining -= SLUICE_MIN(c, before);
			/* slow down before the wall: the rest spread evenly
			 * until the reset, the last landing on it */
			if (before > 0 && d->open_at_ns > now && low(p, d))
				d->next_ns = now + (d->open_at_ns - now) / (before / c > 0 ? before / c : 1);
		}
		s->inflight++;
	}
	pthread_mutex_unlock(&p->lock);
	*wait_ns = wait;
	return 0;
}

/* A refusal that should hold back every request of the entry. */
static bool refusal(int status, const struct sluice_backoff_plan *plan)
{
	return status == 429 || (status >= 400 && status < 500 && status != 408) ||
	       plan->why == SLUICE_BACKOFF_WHY_RETRY_AFTER;
}

int sluice_pacer_update(struct sluice_pacer *p, const char *key, size_t key_len,
			const struct sluice_backoff_request *req, uint64_t sent_ns, uint64_t now,
			struct sluice_rng *rng, struct sluice_backoff_plan *plan)
{
	if (p == NULL || req == NULL || rng == NULL || plan == NULL)
		return SLUICE_EINVAL;
	if (!key_ok(key, key_len))
		return SLUICE_EKEY;
	int rc = sluice_backoff_plan(&p->opts.backoff, req, rng, plan);
	if (rc != 0)
		return rc;
	const struct sluice_client_limits *l = req->limits;
	pthread_mutex_lock(&p->lock);
	struct entry *e = get(p, KEY, key, key_len, now);
	if (e == NULL) {
		pthread_mutex_unlock(&p->lock);
		return SLUICE_EFULL;
	}
	e->last_used_ns = now;
	struct entry *s = state_of(p, e);
	if (s->inflight > 0)
		s->inflight--;
	if (l != NULL && l->bucket_len > 0 && l->bucket_len <= SLUICE_PACER_KEY_MAX &&
	    (e->alias_len != l->bucket_len || memcmp(e->alias, l->bucket, l->bucket_len) != 0 || s == e)) {
		struct entry *b = get(p, BUCKET, l->bucket, l->bucket_len, now);
		if (b != NULL && b != s) {
			b->inflight += s == e ? e->inflight : 0; /* the key's requests now count there */
			if (s == e)
				e->inflight = 0;
			e->alias_len = (uint8_t)SLUICE_MIN(l->bucket_len, sizeof(e->alias));
			memcpy(e->alias, l->bucket, e->alias_len);
			s = b;
		}
	}
	s->last_used_ns = now;
	if (l != NULL)
		learn(p, s, l, sent_ns, now, rng);
	uint64_t block = 0;
	if (plan->verdict == SLUICE_BACKOFF_RETRY && refusal(req->status, plan))
		block = plan->delay_ns;
	else if (req->status >= 400 && l != NULL && l->has_retry_after)
		block = l->retry_after_ns;
	if (block > 0)
		s->blocked_until_ns = SLUICE_MAX(s->blocked_until_ns, sluice__add_sat(now, block));
	pthread_mutex_unlock(&p->lock);
	return 0;
}

int sluice_pacer_cancel(struct sluice_pacer *p, const char *key, size_t key_len)
{
	if (p == NULL)
		return SLUICE_EINVAL;
	if (!key_ok(key, key_len))
		return SLUICE_EKEY;
	pthread_mutex_lock(&p->lock);
	struct entry *e = find(p, KEY, key, key_len);
	if (e != NULL) {
		struct entry *s = state_of(p, e);
		if (s->inflight > 0)
			s->inflight--;
	}
	pthread_mutex_unlock(&p->lock);
	return e != NULL ? 0 : SLUICE_ENOTFOUND;
}
