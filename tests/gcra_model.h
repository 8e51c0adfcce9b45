/*
 * gcra_model.h - the reference token bucket for the GCRA cell's tests and
 * fuzz target, in exact integer arithmetic (no GCRA, no rounding).
 *
 * A bucket of capacity B refilled at limit units per period_ns holds a
 * rational number of tokens; we keep x = tokens * period_ns, an integer:
 * refilling dt ns adds dt * limit, taking c tokens removes c * period_ns, and
 * the bucket is capped at B * period_ns. Every quantity is below 2^128 for a
 * rate sluice_rate_init() accepts (B * period <= B * interval * limit <=
 * 2^62 * limit < 2^126; dt * limit < 2^128).
 *
 * The model's clock `t` only moves forward. How it is driven is the caller's
 * choice: the tests commit the model only when the cell admits ("shadow"
 * model), which for non-decreasing times and exact rates is the same bucket
 * as one driven by its own verdicts, since they agree at every step.
 */
#ifndef SLUICE_GCRA_MODEL_H
#define SLUICE_GCRA_MODEL_H

#include <stdbool.h>
#include <stdint.h>

__extension__ typedef unsigned __int128 gcra_model_u128;

struct gcra_model {
	uint64_t limit, period_ns, burst;
	gcra_model_u128 cap; /* burst * period_ns */
	gcra_model_u128 x;   /* tokens * period_ns at time t */
	uint64_t t;
};

struct gcra_model_verdict {
	bool allowed;
	bool never;              /* cost > burst */
	gcra_model_u128 x_after; /* tokens * period after the decision */
	uint64_t remaining;      /* floor(tokens after) */
	gcra_model_u128 reset_ns;       /* ceil(time to full) */
	gcra_model_u128 retry_after_ns; /* ceil(wait until cost tokens), 0 if allowed */
};

static inline void gcra_model_init(struct gcra_model *m, uint64_t limit, uint64_t period_ns,
				   uint64_t burst)
{
	m->limit = limit;
	m->period_ns = period_ns;
	m->burst = burst;
	m->cap = (gcra_model_u128)burst * period_ns;
	m->x = m->cap;
	m->t = 0;
}

static inline gcra_model_u128 gcra_model_ceil_div(gcra_model_u128 a, gcra_model_u128 b)
{
	return a / b + (a % b != 0);
}

/* tokens * period at time max(t, m->t), without committing. */
static inline gcra_model_u128 gcra_model_x_at(const struct gcra_model *m, uint64_t t)
{
	if (t <= m->t)
		return m->x;
	gcra_model_u128 add = (gcra_model_u128)(t - m->t) * m->limit;
	return add >= m->cap - m->x ? m->cap : m->x + add;
}

/* The verdict of the exact bucket for `cost` at time max(t, m->t). */
static inline struct gcra_model_verdict gcra_model_decide(const struct gcra_model *m, uint64_t t,
							  uint64_t cost)
{
	struct gcra_model_verdict v;
	gcra_model_u128 x = gcra_model_x_at(m, t);

	v.never = cost > m->burst;
	gcra_model_u128 need = v.never ? 0 : (gcra_model_u128)cost * m->period_ns;
	v.allowed = !v.never && x >= need;
	v.x_after = v.allowed ? x - need : x;
	v.remaining = (uint64_t)(v.x_after / m->period_ns);
	v.reset_ns = gcra_model_ceil_div(m->cap - v.x_after, m->limit);
	v.retry_after_ns = v.allowed || v.never ? 0 : gcra_model_ceil_div(need - x, m->limit);
	return v;
}

/* Take `cost` tokens at time max(t, m->t) (the caller checked they exist). */
static inline void gcra_model_commit(struct gcra_model *m, uint64_t t, uint64_t cost)
{
	m->x = gcra_model_x_at(m, t) - (gcra_model_u128)cost * m->period_ns;
	if (t > m->t)
		m->t = t;
}

/* The earliest time >= max(t, m->t) at which `cost` (<= burst) tokens exist. */
static inline gcra_model_u128 gcra_model_ready_at(const struct gcra_model *m, uint64_t t,
						  uint64_t cost)
{
	uint64_t t0 = t > m->t ? t : m->t;
	gcra_model_u128 x = gcra_model_x_at(m, t0);
	gcra_model_u128 need = (gcra_model_u128)cost * m->period_ns;
	return x >= need ? t0 : (gcra_model_u128)t0 + gcra_model_ceil_div(need - x, m->limit);
}

#endif /* SLUICE_GCRA_MODEL_H */
