/*
 * Retry planning, pacing and polling cadence (client side).
 *
 * The rules are the seeds' (000 and 004), made precise:
 *   - the server's word first: Retry-After, else a reset with nothing
 *     remaining; these waits get upward-only jitter, because coming back
 *     before the server said would only earn another 429;
 *   - otherwise exponential backoff 1 s, 2 s, 4 s ... to a cap, with
 *     symmetric jitter (+-25% by default) so that clients that failed
 *     together do not come back together;
 *   - a bounded number of attempts; never an automatic retry of a
 *     non-idempotent request after a 5xx or a lost connection, where the
 *     first attempt may have taken effect; a refusal for rate (429, or a
 *     403 that carries Retry-After or an exhausted budget with its reset)
 *     is always safe to retry (the request was refused, not processed);
 *   - a reset already past is not a wait of 0, which would retry at once
 *     into the same refusal, but exponential backoff.
 *
 * Randomness comes from a caller-owned splitmix64 state: deterministic in
 * tests, no global state, no locking.
 */
#include "client/client_internal.h"

uint64_t sluice_rng_next(struct sluice_rng *rng)
{
	uint64_t z = (rng->state += UINT64_C(0x9e3779b97f4a7c15));
	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

/* Uniform in [0, n] (n + 1 values) by multiply-high; n < 2^64 - 1. */
uint64_t sluice__rng_upto(struct sluice_rng *rng, uint64_t n)
{
	return (uint64_t)(((sluice__u128)sluice_rng_next(rng) * ((sluice__u128)n + 1)) >> 64);
}

void sluice_backoff_opts_default(struct sluice_backoff_opts *opts)
{
	if (opts == NULL)
		return;
	opts->size = sizeof(*opts);
	opts->max_attempts = 5;
	opts->jitter_permille = 250;
	opts->base_ns = SLUICE_NS_PER_SEC;
	opts->cap_ns = 60 * SLUICE_NS_PER_SEC;
	opts->max_wait_ns = 21600 * SLUICE_NS_PER_SEC;
}

bool sluice__backoff_opts_valid(const struct sluice_backoff_opts *o)
{
	return o->size >= sizeof(*o) && o->max_attempts >= 1 && o->max_attempts <= 16 &&
	       o->jitter_permille <= 1000 && o->base_ns > 0 && o->cap_ns >= o->base_ns;
}

int sluice_backoff_plan(const struct sluice_backoff_opts *opts,
			const struct sluice_backoff_request *req, struct sluice_rng *rng,
			struct sluice_backoff_plan *plan)
{
	if (opts == NULL || req == NULL || rng == NULL || plan == NULL || !sluice__backoff_opts_valid(opts) ||
	    req->attempt == 0)
		return SLUICE_EINVAL;
	plan->verdict = SLUICE_BACKOFF_STOP;
	plan->delay_ns = 0;

	int st = req->status;
	if (st >= 100 && st < 400) {
		plan->verdict = SLUICE_BACKOFF_DONE;
		plan->why = SLUICE_BACKOFF_WHY_NONE;
		return 0;
	}
	const struct sluice_client_limits *l = req->limits;
	bool exhausted = l != NULL && l->has_remaining && l->remaining == 0 && l->has_reset;
	/* a refusal for rate: 429, or any 4xx that says so in its fields
	 * (403 with remaining 0 and a reset, or with Retry-After) */
	bool rate_limited = st == 429 || (st >= 400 && st < 500 && st != 408 && l != NULL &&
					  (l->has_retry_after || exhausted));
	if (!rate_limited && st != 408 && st < 500 && st != 0) {
		plan->why = SLUICE_BACKOFF_WHY_NOT_RETRYABLE;
		return 0;
	}
	if (!rate_limited && !req->idempotent) {
		plan->why = SLUICE_BACKOFF_WHY_UNSAFE;
		return 0;
	}
	if (req->attempt >= opts->max_attempts) {
		plan->why = SLUICE_BACKOFF_WHY_ATTEMPTS;
		return 0;
	}

	uint64_t wait = 0;
	uint8_t why = SLUICE_BACKOFF_WHY_EXPONENTIAL;
	if (l != NULL && l->has_retry_after) {
		wait = l->retry_after_ns;
		why = SLUICE_BACKOFF_WHY_RETRY_AFTER;
	} else if ((rate_limited || st == 503) && exhausted && l->reset_ns > 0) {
		/* a reset now or already past is no wait: backing off
		 * exponentially keeps a stale reset from becoming a tight loop */
		wait = l->reset_ns;
		why = SLUICE_BACKOFF_WHY_RESET;
	}
	if (why != SLUICE_BACKOFF_WHY_EXPONENTIAL) {
		if (wait > opts->max_wait_ns) {
			plan->why = SLUICE_BACKOFF_WHY_TOO_LONG;
			return 0;
		}
		wait = sluice__add_sat(wait, sluice__rng_upto(rng, sluice__permille_of(wait, opts->jitter_permille)));
	} else {
		uint32_t shift = req->attempt - 1; /* <= 15 */
		wait = SLUICE_MIN(sluice__mul_sat(opts->base_ns, UINT64_C(1) << shift), opts->cap_ns);
		uint64_t span = sluice__permille_of(wait, opts->jitter_permille);
		/* wait - span + [0, 2 span]; span <= wait, so no underflow */
		uint64_t lo = wait - span;
		wait = sluice__add_sat(lo, sluice__rng_upto(rng, SLUICE_MIN(sluice__mul_sat(span, 2),
									 UINT64_MAX - 1)));
		wait = SLUICE_MIN(wait, opts->cap_ns);
	}
	plan->verdict = SLUICE_BACKOFF_RETRY;
	plan->why = why;
	plan->delay_ns = wait;
	return 0;
}

uint64_t sluice_backoff_pace(const struct sluice_client_limits *limits, uint32_t low_permille)
{
	if (limits == NULL)
		return 0;
	if (limits->has_retry_after)
		return limits->retry_after_ns;
	if (!limits->has_remaining || !limits->has_reset)
		return 0;
	if (limits->remaining == 0)
		return limits->reset_ns;
	if (limits->has_limit &&
	    (sluice__u128)limits->remaining * 1000 > (sluice__u128)limits->limit * low_permille)
		return 0;
	return limits->reset_ns / limits->remaining;
}

uint64_t sluice_poll_next_ns(const struct sluice_poll_cadence *c, uint64_t prev_ns,
			     uint64_t pending_ns)
{
	if (c == NULL)
		return 0;
	uint64_t d = c->initial_ns;
	if (prev_ns != 0) {
		sluice__u128 grown = (sluice__u128)prev_ns * c->growth_permille / 1000;
		d = grown > UINT64_MAX ? UINT64_MAX : (uint64_t)grown;
		d = SLUICE_MAX(SLUICE_MIN(d, c->max_ns), c->initial_ns);
	}
	if (c->slow_after_ns != 0 && pending_ns >= c->slow_after_ns)
		d = SLUICE_MAX(d, c->slow_ns);
	return d;
}
