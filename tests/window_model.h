/*
 * window_model.h - naive reference models of the window cells and of the
 * concurrency slots, for the Criterion tests, the stress tests and the fuzz
 * targets (fuzz/ includes it as "../tests/window_model.h").
 *
 * Each model keeps the obvious state (every recorded unit time; counts per
 * window with full 64-bit indices; a table of issued handles) and computes
 * every field of the decision the slow way (scans, binary search over time),
 * so that the cells' packed words, ring arithmetic and closed-form waits
 * are checked against something written differently.
 */
#ifndef SLUICE_TESTS_WINDOW_MODEL_H
#define SLUICE_TESTS_WINDOW_MODEL_H

#include <sluice.h>

#include <stdlib.h>
#include <string.h>

__extension__ typedef unsigned __int128 model_u128;

static inline uint64_t model_clamp(model_u128 v)
{
	return v > UINT64_MAX ? UINT64_MAX : (uint64_t)v;
}

/* Wait from t until absolute time `at`: "never" past the end of the clock. */
static inline uint64_t model_wait(model_u128 at, uint64_t t)
{
	return at > UINT64_MAX ? SLUICE_NEVER : (uint64_t)(at - t);
}

static inline void model_decision(struct sluice_decision *d, bool allowed, uint8_t reason,
				  uint64_t limit, uint64_t remaining, uint64_t reset_ns,
				  uint64_t retry_ns)
{
	memset(d, 0, sizeof(*d));
	d->allowed = allowed;
	d->reason = reason;
	d->limit = limit;
	d->remaining = remaining;
	d->reset_ns = reset_ns;
	d->retry_after_ns = retry_ns;
}

static inline bool model_same(const struct sluice_decision *a, const struct sluice_decision *b)
{
	return a->allowed == b->allowed && a->reason == b->reason && a->limit == b->limit &&
	       a->remaining == b->remaining && a->reset_ns == b->reset_ns &&
	       a->retry_after_ns == b->retry_after_ns && !a->degraded && !b->degraded;
}

/* ---------------------------------------------------------------- log -- */

struct log_model {
	uint64_t limit, window_ns;
	uint64_t *at; /* every recorded unit, in admission order */
	size_t n, cap;
	uint64_t ops; /* writes so far, for cancel */
};

static inline void log_model_init(struct log_model *m, uint64_t limit, uint64_t window_ns)
{
	memset(m, 0, sizeof(*m));
	m->limit = limit;
	m->window_ns = window_ns;
}

static inline void log_model_free(struct log_model *m)
{
	free(m->at);
}

/* Is a unit recorded at r inside the window (t - W, t]? (r > t: yes.) */
static inline bool log_model_live(const struct log_model *m, uint64_t r, uint64_t t)
{
	return (model_u128)r + m->window_ns > t;
}

static inline uint64_t log_model_wait(const struct log_model *m, uint64_t r, uint64_t t)
{
	return model_wait((model_u128)r + m->window_ns, t);
}

struct log_model_receipt {
	uint64_t ops, cost;
};

static inline bool log_model_admit(struct log_model *m, uint64_t t, uint64_t cost,
				   struct sluice_decision *d, struct log_model_receipt *rc)
{
	uint64_t live = 0, first = 0, newest = 0;
	bool seen = false;

	for (size_t i = 0; i < m->n; i++) {
		if (log_model_live(m, m->at[i], t)) {
			if (!seen)
				first = i;
			seen = true;
			live++;
		}
		if (newest < m->at[i])
			newest = m->at[i];
	}
	uint64_t reset = live > 0 ? log_model_wait(m, newest, t) : 0;
	uint64_t rem = live >= m->limit ? 0 : m->limit - live;
	if (rc)
		rc->ops = rc->cost = 0;
	if (cost > m->limit) {
		model_decision(d, false, SLUICE_REASON_NEVER, m->limit, rem, reset, SLUICE_NEVER);
		return false;
	}
	if (cost == 0) {
		model_decision(d, true, SLUICE_REASON_NONE, m->limit, rem, reset, 0);
		return true;
	}
	if (live + cost > m->limit) {
		/* The (live + cost - limit)-th oldest live unit must leave. */
		uint64_t k = live + cost - m->limit, seen_live = 0, r = 0;
		for (size_t i = first; i < m->n; i++)
			if (log_model_live(m, m->at[i], t) && ++seen_live == k) {
				r = m->at[i];
				break;
			}
		model_decision(d, false, SLUICE_REASON_RATE, m->limit, rem, reset,
			       log_model_wait(m, r, t));
		return false;
	}
	uint64_t r = m->n > 0 && newest > t ? newest : t;
	if (m->n + cost > m->cap) {
		m->cap = (m->n + cost) * 2;
		m->at = realloc(m->at, m->cap * sizeof(*m->at));
		if (m->at == NULL)
			abort();
	}
	for (uint64_t i = 0; i < cost; i++)
		m->at[m->n++] = r;
	m->ops++;
	if (rc) {
		rc->ops = m->ops;
		rc->cost = cost;
	}
	model_decision(d, true, SLUICE_REASON_NONE, m->limit, rem - cost, log_model_wait(m, r, t), 0);
	return true;
}

static inline bool log_model_cancel(struct log_model *m, const struct log_model_receipt *rc)
{
	if (rc->cost == 0 || rc->ops != m->ops)
		return false;
	m->n -= rc->cost;
	m->ops++;
	return true;
}

static inline bool log_model_idle(const struct log_model *m, uint64_t t)
{
	for (size_t i = 0; i < m->n; i++)
		if (log_model_live(m, m->at[i], t))
			return false;
	return true;
}

/* ------------------------------------------------------------ counter -- */

struct counter_model {
	uint64_t limit, window_ns;
	bool used;
	uint64_t window; /* latest window with admissions (full index) */
	uint64_t count_in[2]; /* [0]: units in `window`, [1]: in window - 1 */
};

static inline void counter_model_init(struct counter_model *m, uint64_t limit, uint64_t window_ns)
{
	memset(m, 0, sizeof(*m));
	m->limit = limit;
	m->window_ns = window_ns;
}

/* Counts of window j and j - 1 as the model knows them. */
static inline void counter_model_counts(const struct counter_model *m, uint64_t j, uint64_t *prev,
					uint64_t *cur)
{
	*prev = *cur = 0;
	if (!m->used)
		return;
	if (j == m->window) {
		*cur = m->count_in[0];
		*prev = m->count_in[1];
	} else if (j == m->window + 1) {
		*prev = m->count_in[0];
	}
}

/* cur + cost + prev * (W - e) / W <= L, in exact rationals. */
static inline bool counter_model_fits(const struct counter_model *m, uint64_t prev, uint64_t cur,
				      uint64_t e, uint64_t cost)
{
	model_u128 lhs = ((model_u128)cur + cost) * m->window_ns + (model_u128)prev * (m->window_ns - e);
	return lhs <= (model_u128)m->limit * m->window_ns;
}

struct counter_model_receipt {
	bool valid;
	struct counter_model before, after;
};

static inline bool counter_model_admit(struct counter_model *m, uint64_t t, uint64_t cost,
				       struct sluice_decision *d, struct counter_model_receipt *rc)
{
	uint64_t w = m->window_ns, k = t / w, e = t % w, eff = k, prev, cur;

	if (m->used && k < m->window) { /* backwards: the cell's window, at e = 0 */
		eff = m->window;
		e = 0;
	}
	counter_model_counts(m, eff, &prev, &cur);
	bool ok = cost == 0 || (cost <= m->limit && counter_model_fits(m, prev, cur, e, cost));
	uint64_t cur_after = cur + (ok ? cost : 0);
	model_u128 room = (model_u128)m->limit * w;
	model_u128 used = (model_u128)cur_after * w + (model_u128)prev * (w - e);
	uint64_t rem = used >= room ? 0 : (uint64_t)((room - used) / w);
	model_u128 start = (model_u128)eff * w; /* of the effective window */
	uint64_t reset = cur_after > 0 ? model_wait(start + 2 * (model_u128)w, t)
			 : prev > 0    ? model_wait(start + w, t)
				       : 0;
	if (rc)
		rc->valid = false;
	if (cost > m->limit) {
		model_decision(d, false, SLUICE_REASON_NEVER, m->limit, rem, reset, SLUICE_NEVER);
		return false;
	}
	if (!ok) {
		/* Earliest time at which it fits: binary search over elapsed in
		 * this window (from e), then the next, then the one after. */
		model_u128 when = 0;
		for (uint64_t step = 0; step < 3; step++) {
			uint64_t p = step == 0 ? prev : step == 1 ? cur : 0;
			uint64_t c = step == 0 ? cur : 0;
			uint64_t lo = step == 0 ? e : 0, hi = w;
			while (lo < hi) {
				uint64_t mid = lo + (hi - lo) / 2;
				if (counter_model_fits(m, p, c, mid, cost))
					hi = mid;
				else
					lo = mid + 1;
			}
			if (lo < w) {
				when = start + (model_u128)step * w + lo;
				break;
			}
		}
		model_decision(d, false, SLUICE_REASON_RATE, m->limit, rem, reset, model_wait(when, t));
		return false;
	}
	if (cost > 0) {
		if (rc) {
			rc->valid = true;
			rc->before = *m;
		}
		if (!m->used || eff != m->window) {
			m->count_in[1] = prev;
			m->count_in[0] = cur;
			m->window = eff;
			m->used = true;
		}
		m->count_in[0] += cost;
		if (rc)
			rc->after = *m;
	}
	model_decision(d, true, SLUICE_REASON_NONE, m->limit, rem, reset, 0);
	return true;
}

static inline bool counter_model_cancel(struct counter_model *m, const struct counter_model_receipt *rc)
{
	if (!rc->valid || memcmp(m, &rc->after, sizeof(*m)) != 0)
		return false;
	*m = rc->before;
	return true;
}

static inline bool counter_model_idle(const struct counter_model *m, uint64_t t)
{
	uint64_t k = t / m->window_ns, prev, cur;
	if (m->used && k < m->window)
		k = m->window;
	counter_model_counts(m, k, &prev, &cur);
	return prev == 0 && cur == 0;
}

/* ----------------------------------------------------------- calendar -- */

struct calendar_model {
	uint64_t limit, window_ns;
	bool used;
	uint64_t window, count;
};

static inline void calendar_model_init(struct calendar_model *m, uint64_t limit, uint64_t window_ns)
{
	memset(m, 0, sizeof(*m));
	m->limit = limit;
	m->window_ns = window_ns;
}

struct calendar_model_receipt {
	bool valid;
	struct calendar_model before, after;
};

static inline bool calendar_model_admit(struct calendar_model *m, uint64_t t, uint64_t cost,
					struct sluice_decision *d, struct calendar_model_receipt *rc)
{
	uint64_t k = t / m->window_ns, eff = k, count = 0;

	if (m->used && k <= m->window) {
		eff = m->window;
		count = m->count;
	}
	uint64_t reset = model_wait(((model_u128)eff + 1) * m->window_ns, t);
	uint64_t rem = count >= m->limit ? 0 : m->limit - count;
	if (rc)
		rc->valid = false;
	if (cost > m->limit) {
		model_decision(d, false, SLUICE_REASON_NEVER, m->limit, rem, reset, SLUICE_NEVER);
		return false;
	}
	if (count + cost > m->limit) {
		model_decision(d, false, SLUICE_REASON_QUOTA, m->limit, rem, reset, reset);
		return false;
	}
	if (cost > 0) {
		if (rc) {
			rc->valid = true;
			rc->before = *m;
		}
		m->used = true;
		m->window = eff;
		m->count = count + cost;
		if (rc)
			rc->after = *m;
	}
	model_decision(d, true, SLUICE_REASON_NONE, m->limit, rem - cost, reset, 0);
	return true;
}

static inline bool calendar_model_cancel(struct calendar_model *m,
					 const struct calendar_model_receipt *rc)
{
	if (!rc->valid || memcmp(m, &rc->after, sizeof(*m)) != 0)
		return false;
	*m = rc->before;
	return true;
}

static inline bool calendar_model_idle(const struct calendar_model *m, uint64_t t)
{
	return !(m->used && t / m->window_ns <= m->window && m->count > 0);
}

/* -------------------------------------------------------------- slots -- */

enum { SLOT_MODEL_LIVE = 1, SLOT_MODEL_RELEASED = 2, SLOT_MODEL_REAPED = 3 };

struct slot_model_handle {
	sluice_slot_handle handle;
	uint64_t deadline_ns;
	int status;
};

struct slots_model {
	uint64_t slots, ttl_ns, retry_ns;
	struct slot_model_handle *h; /* every handle issued */
	size_t n, cap;
	sluice_slot_handle last_reaped[SLUICE_SLOTS_MAX];
	uint64_t live;
};

static inline void slots_model_init(struct slots_model *m, const struct sluice_slots_config *cfg)
{
	memset(m, 0, sizeof(*m));
	m->slots = cfg->slots;
	m->ttl_ns = cfg->lease_ttl_ns;
	m->retry_ns = cfg->retry_after_ns;
}

static inline void slots_model_free(struct slots_model *m)
{
	free(m->h);
}

static inline uint64_t slots_model_index(sluice_slot_handle h)
{
	return h & (SLUICE_SLOTS_MAX - 1); /* white box: the low 12 bits */
}

static inline struct slot_model_handle *slots_model_find(struct slots_model *m, sluice_slot_handle h)
{
	for (size_t i = m->n; i-- > 0;)
		if (m->h[i].handle == h)
			return &m->h[i];
	return NULL;
}

static inline bool slots_model_expired(const struct slots_model *m, const struct slot_model_handle *h,
				       uint64_t t)
{
	return m->ttl_ns != 0 && h->status == SLOT_MODEL_LIVE && t >= h->deadline_ns;
}

/*
 * Check one acquire of the cell against the model: `got` is what the cell
 * returned (allowed, handle, decision). Returns false on a mismatch. The
 * cell chooses the slot; the model checks the choice is legal (a slot not
 * held by a live handle, or the slot of an expired lease when full) and
 * that the decision fields are right.
 */
static inline bool slots_model_acquire(struct slots_model *m, uint64_t t, bool allowed,
				       sluice_slot_handle handle, const struct sluice_decision *d)
{
	struct sluice_decision want;
	bool can = m->live < m->slots;
	bool any_expired = false;

	for (size_t i = 0; i < m->n && !can; i++)
		any_expired |= slots_model_expired(m, &m->h[i], t);
	if (!can && !any_expired) {
		model_decision(&want, false, SLUICE_REASON_CONCURRENCY, m->slots, 0, m->retry_ns,
			       m->retry_ns);
		return !allowed && handle == SLUICE_SLOT_NONE && model_same(d, &want);
	}
	if (!allowed || handle == SLUICE_SLOT_NONE || slots_model_find(m, handle) != NULL)
		return false;
	uint64_t index = slots_model_index(handle);
	bool took = false;
	for (size_t i = 0; i < m->n; i++) {
		struct slot_model_handle *h = &m->h[i];
		if (h->status != SLOT_MODEL_LIVE || slots_model_index(h->handle) != index)
			continue;
		if (can || !slots_model_expired(m, h, t))
			return false; /* the cell handed out a held slot */
		h->status = SLOT_MODEL_REAPED;
		m->last_reaped[index] = h->handle;
		took = true;
	}
	if (!can && !took)
		return false; /* full, yet no lease was taken over */
	if (!took)
		m->live++;
	if (m->n == m->cap) {
		m->cap = m->cap ? 2 * m->cap : 64;
		m->h = realloc(m->h, m->cap * sizeof(*m->h));
		if (m->h == NULL)
			abort();
	}
	m->h[m->n++] = (struct slot_model_handle){
		handle, m->ttl_ns == 0 ? UINT64_MAX : (uint64_t)model_clamp((model_u128)t + m->ttl_ns),
		SLOT_MODEL_LIVE
	};
	model_decision(&want, true, SLUICE_REASON_NONE, m->slots, m->slots - m->live, 0, 0);
	return model_same(d, &want);
}

/* The code sluice_slots_release() must return for `handle`, applied. */
static inline int slots_model_release(struct slots_model *m, sluice_slot_handle handle)
{
	struct slot_model_handle *h = slots_model_find(m, handle);

	if (h == NULL)
		return SLUICE_ESTALE; /* never issued by this cell */
	if (h->status == SLOT_MODEL_LIVE) {
		h->status = SLOT_MODEL_RELEASED;
		m->live--;
		return SLUICE_OK;
	}
	if (m->last_reaped[slots_model_index(handle)] == handle)
		return SLUICE_ESTALE;
	return SLUICE_EDOUBLE;
}

static inline unsigned slots_model_reap(struct slots_model *m, uint64_t t)
{
	unsigned n = 0;

	for (size_t i = 0; i < m->n; i++) {
		struct slot_model_handle *h = &m->h[i];
		if (slots_model_expired(m, h, t)) {
			h->status = SLOT_MODEL_REAPED;
			m->last_reaped[slots_model_index(h->handle)] = h->handle;
			m->live--;
			n++;
		}
	}
	return n;
}

#endif /* SLUICE_TESTS_WINDOW_MODEL_H */
