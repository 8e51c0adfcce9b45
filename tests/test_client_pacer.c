/*
 * test_client_pacer.c - struct sluice_pacer (include/sluice/client.h): the
 * budget counted down between responses, in-flight requests, windows,
 * dimensions, blocks, buckets, the bounded table, fake time by hand.
 */
#include "client_test_util.h"

#define KEY "api.example.com"
#define T0 (1000 * SEC)

static struct sluice_pacer *make(uint32_t entries, uint32_t low_permille)
{
	struct sluice_pacer_opts o;
	struct sluice_pacer *p;
	sluice_pacer_opts_default(&o);
	o.max_entries = entries;
	o.low_permille = low_permille;
	o.jitter_permille = 0;
	cr_assert_eq(sluice_pacer_create(&o, &p), 0);
	return p;
}

static uint64_t acquire(struct sluice_pacer *p, const char *key, uint64_t cost, uint64_t now)
{
	uint64_t w = 12345;
	cr_assert_eq(sluice_pacer_acquire(p, key, strlen(key), cost, now, &w), 0);
	return w;
}

/* A response with the X triple (limit, remaining, reset seconds). */
static struct sluice_backoff_plan respond(struct sluice_pacer *p, const char *key, int status, uint64_t limit,
					  uint64_t remaining, uint64_t reset_s, uint64_t now)
{
	struct sluice_client_limits l;
	memset(&l, 0, sizeof(l));
	l.has_limit = limit > 0;
	l.limit = limit;
	l.has_remaining = l.has_reset = true;
	l.remaining = remaining;
	l.reset_ns = reset_s * SEC;
	struct sluice_backoff_request r = {.status = status, .idempotent = true, .attempt = 1, .limits = &l};
	struct sluice_rng rng = {7};
	struct sluice_backoff_plan plan;
	cr_assert_eq(sluice_pacer_update(p, key, strlen(key), &r, now, now, &rng, &plan), 0);
	return plan;
}

Test(pacer, create_validates_and_destroy_null)
{
	struct sluice_pacer_opts o;
	struct sluice_pacer *p = (struct sluice_pacer *)1;
	sluice_pacer_destroy(NULL);
	cr_assert_eq(sluice_pacer_create(NULL, &p), SLUICE_EINVAL);
	cr_assert_null(p);
	sluice_pacer_opts_default(&o);
	cr_assert_eq(sluice_pacer_create(&o, NULL), SLUICE_EINVAL);
	struct sluice_pacer_opts bad = o;
	bad.max_entries = 0;
	cr_assert_eq(sluice_pacer_create(&bad, &p), SLUICE_EINVAL);
	bad = o;
	bad.size = 8;
	cr_assert_eq(sluice_pacer_create(&bad, &p), SLUICE_EINVAL);
	bad = o;
	bad.low_permille = 1001;
	cr_assert_eq(sluice_pacer_create(&bad, &p), SLUICE_EINVAL);
	bad = o;
	bad.backoff.max_attempts = 0;
	cr_assert_eq(sluice_pacer_create(&bad, &p), SLUICE_EINVAL);
	cr_assert_eq(sluice_pacer_create(&o, &p), 0);
	uint64_t w;
	cr_assert_eq(sluice_pacer_acquire(p, "", 0, 0, T0, &w), SLUICE_EKEY);
	char big[SLUICE_PACER_KEY_MAX + 1];
	memset(big, 'k', sizeof(big));
	cr_assert_eq(sluice_pacer_acquire(p, big, sizeof(big), 0, T0, &w), SLUICE_EKEY);
	cr_assert_eq(sluice_pacer_acquire(p, big, sizeof(big) - 1, 0, T0, &w), 0);
	cr_assert_eq(sluice_pacer_acquire(NULL, "k", 1, 0, T0, &w), SLUICE_EINVAL);
	sluice_pacer_destroy(p);
}

Test(pacer, unknown_key_goes_and_budget_counts_down_to_the_reset)
{
	struct sluice_pacer *p = make(8, 0);
	cr_assert_eq(acquire(p, KEY, 0, T0), 0);
	respond(p, KEY, 200, 10, 3, 10, T0);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(acquire(p, KEY, 0, T0 + 1 * SEC), 0);
	/* the fourth waits exactly until the reset: 10 s after the response */
	cr_assert_eq(acquire(p, KEY, 0, T0 + 1 * SEC), 9 * SEC);
	cr_assert_eq(acquire(p, KEY, 0, T0 + 9 * SEC), 1 * SEC);
	/* at the reset the budget is the limit less the 3 in flight */
	for (int i = 0; i < 7; i++)
		cr_assert_eq(acquire(p, KEY, 0, T0 + 10 * SEC), 0, "request %d", i);
	cr_assert_gt(acquire(p, KEY, 0, T0 + 10 * SEC), 0);
	sluice_pacer_destroy(p);
}

Test(pacer, in_flight_requests_are_subtracted_and_late_answers_cannot_raise)
{
	struct sluice_pacer *p = make(8, 0);
	cr_assert_eq(acquire(p, KEY, 0, T0), 0);
	respond(p, KEY, 200, 10, 5, 10, T0);
	for (int i = 0; i < 5; i++)
		cr_assert_eq(acquire(p, KEY, 0, T0), 0);
	cr_assert_gt(acquire(p, KEY, 0, T0), 0);
	/* the first of the five comes back: the server counted it, the other
	 * four may not be counted yet: 4 - 4 = 0 left */
	respond(p, KEY, 200, 10, 4, 10, T0 + 1 * MS);
	cr_assert_gt(acquire(p, KEY, 0, T0 + 2 * MS), 0);
	/* a stale answer (larger remaining, same window) changes nothing */
	respond(p, KEY, 200, 10, 9, 10, T0 + 3 * MS);
	cr_assert_gt(acquire(p, KEY, 0, T0 + 4 * MS), 0);
	/* the rest answered, 2 left: within one window the count only falls
	 * (answers may arrive out of order), so nothing goes until the reset */
	respond(p, KEY, 200, 10, 2, 10, T0 + 5 * MS);
	respond(p, KEY, 200, 10, 2, 10, T0 + 5 * MS);
	respond(p, KEY, 200, 10, 2, 10, T0 + 5 * MS);
	cr_assert_eq(acquire(p, KEY, 0, T0 + 6 * MS), 10 * SEC - 1 * MS); /* the latest reset: T0 + 5 ms + 10 s */
	sluice_pacer_destroy(p);
}

Test(pacer, answers_only_lower_the_count_and_delay_the_reset)
{
	struct sluice_pacer *p = make(8, 0);
	cr_assert_eq(acquire(p, KEY, 0, T0), 0);
	respond(p, KEY, 200, 10, 0, 5, T0);
	cr_assert_eq(acquire(p, KEY, 0, T0), 5 * SEC);
	/* a larger count with a later reset (a delayed answer, or a reset
	 * that grows as a bucket drains): the count stays, the reset moves */
	respond(p, KEY, 200, 10, 4, 65, T0);
	cr_assert_eq(acquire(p, KEY, 0, T0), 65 * SEC);
	/* an earlier reset never brings the wait forward */
	respond(p, KEY, 200, 10, 9, 2, T0);
	cr_assert_eq(acquire(p, KEY, 0, T0), 65 * SEC);
	/* at the reset: the limit */
	for (int i = 0; i < 10; i++)
		cr_assert_eq(acquire(p, KEY, 0, T0 + 65 * SEC), 0);
	cr_assert_gt(acquire(p, KEY, 0, T0 + 65 * SEC), 0);
	sluice_pacer_destroy(p);
}

/* An answer to a request sent before the reset may describe the window
 * before: its count can only lower, its reset is not taken. */
Test(pacer, answers_to_requests_sent_before_a_reset_do_not_move_it)
{
	struct sluice_pacer *p = make(8, 0);
	struct sluice_client_limits l;
	struct sluice_rng rng = {1};
	struct sluice_backoff_plan plan;
	cr_assert_eq(acquire(p, KEY, 0, T0), 0);
	respond(p, KEY, 200, 3, 1, 10, T0);
	cr_assert_eq(acquire(p, KEY, 0, T0 + 1 * SEC), 0); /* sent at T0 + 1 s */
	/* the reset passes: 3 less the 1 in flight */
	cr_assert_eq(acquire(p, KEY, 0, T0 + 10 * SEC), 0);
	/* the old request's answer arrives, its reset 1 s away in its window */
	memset(&l, 0, sizeof(l));
	l.has_limit = l.has_remaining = l.has_reset = true;
	l.limit = 3;
	l.remaining = 2;
	l.reset_ns = 1 * SEC;
	struct sluice_backoff_request r = {.status = 200, .idempotent = true, .attempt = 1, .limits = &l};
	cr_assert_eq(sluice_pacer_update(p, KEY, strlen(KEY), &r, T0 + 1 * SEC, T0 + 10 * SEC, &rng, &plan), 0);
	cr_assert_eq(acquire(p, KEY, 0, T0 + 10 * SEC), 0); /* min(1, 2 - 1) = 1 left: this one */
	/* exhausted, reset unknown, one in flight: wait for answers, not for
	 * the stale reset at T0 + 11 s */
	cr_assert_eq(acquire(p, KEY, 0, T0 + 11 * SEC + 1), 10 * MS);
	sluice_pacer_destroy(p);
}

/* A request let through near the end of a window, counted by the server
 * in the next one and answered before the reset passes here, is not in
 * flight when the new window opens: it still counts there. */
Test(pacer, answers_after_the_reset_bound_count_in_the_next_window)
{
	struct sluice_pacer *p = make(8, 0);
	cr_assert_eq(acquire(p, KEY, 0, T0), 0);
	respond(p, KEY, 200, 3, 2, 10, T0); /* reset at T0 + 10 s, no earlier */
	cr_assert_eq(acquire(p, KEY, 0, T0 + 9 * SEC), 0);
	/* answered at T0 + 10 s: the server may have seen it after its reset */
	struct sluice_client_limits l;
	memset(&l, 0, sizeof(l));
	l.has_limit = l.has_remaining = l.has_reset = true;
	l.limit = 3;
	l.remaining = 2;
	l.reset_ns = 10 * SEC;
	struct sluice_backoff_request r = {.status = 200, .idempotent = true, .attempt = 1, .limits = &l};
	struct sluice_rng rng = {1};
	struct sluice_backoff_plan plan;
	cr_assert_eq(sluice_pacer_update(p, KEY, strlen(KEY), &r, T0 + 9 * SEC, T0 + 10 * SEC, &rng, &plan), 0);
	/* the reset passes at T0 + 10 s (+0 jitter): 3 less that one */
	cr_assert_eq(acquire(p, KEY, 0, T0 + 10 * SEC + 1), 0);
	cr_assert_eq(acquire(p, KEY, 0, T0 + 10 * SEC + 1), 0);
	cr_assert_gt(acquire(p, KEY, 0, T0 + 10 * SEC + 1), 0);
	sluice_pacer_destroy(p);
}

/* Found by fuzz_pacer: the answer of a request in flight at a reset is not
 * taken (it may describe the window before), but if it was counted in the
 * window now running, that window ends by its reset: no probe before. */
Test(pacer, no_probe_before_the_latest_reset_heard)
{
	struct sluice_pacer *p = make(8, 0);
	struct sluice_client_limits l;
	struct sluice_rng rng = {1};
	struct sluice_backoff_plan plan;
	cr_assert_eq(acquire(p, KEY, 0, T0), 0); /* A */
	cr_assert_eq(acquire(p, KEY, 0, T0), 0); /* B */
	respond(p, KEY, 200, 1, 0, 1, T0);     /* B: none left, reset in 1 s */
	/* the reset passes with A in flight: 1 - 1 = 0, reset unknown */
	cr_assert_eq(acquire(p, KEY, 0, T0 + 2 * SEC), 10 * MS);
	/* A's answer: counted at T0 + 4 s, in a window ending 1 s later */
	memset(&l, 0, sizeof(l));
	l.has_limit = l.has_remaining = l.has_reset = true;
	l.limit = 1;
	l.reset_ns = 1 * SEC;
	struct sluice_backoff_request r = {.status = 200, .idempotent = true, .attempt = 1, .limits = &l};
	cr_assert_eq(sluice_pacer_update(p, KEY, strlen(KEY), &r, T0, T0 + 4 * SEC, &rng, &plan), 0);
	cr_assert_eq(acquire(p, KEY, 0, T0 + 4 * SEC), 1 * SEC);
	cr_assert_eq(acquire(p, KEY, 0, T0 + 5 * SEC), 0); /* the probe */
	cr_assert_eq(acquire(p, KEY, 0, T0 + 5 * SEC), 10 * MS);
	sluice_pacer_destroy(p);
}

Test(pacer, most_restrictive_dimension_wins_with_token_costs)
{
	struct sluice_pacer *p = make(8, 0);
	static const char *const lines[] = {
		"x-ratelimit-limit-requests: 60",   "x-ratelimit-remaining-requests: 10",
		"x-ratelimit-reset-requests: 1s",   "x-ratelimit-limit-tokens: 1000",
		"x-ratelimit-remaining-tokens: 100", "x-ratelimit-reset-tokens: 6m0s", NULL};
	struct sluice_client_limits l = parse_lines(lines, 0);
	struct sluice_backoff_request r = {.status = 200, .idempotent = true, .attempt = 1, .limits = &l};
	struct sluice_rng rng = {1};
	struct sluice_backoff_plan plan;
	cr_assert_eq(acquire(p, KEY, 60, T0), 0);
	cr_assert_eq(sluice_pacer_update(p, KEY, strlen(KEY), &r, T0, T0, &rng, &plan), 0);
	cr_assert_eq(plan.verdict, SLUICE_BACKOFF_DONE);
	cr_assert_eq(acquire(p, KEY, 60, T0), 0);          /* 100 tokens: 60 fit */
	cr_assert_eq(acquire(p, KEY, 60, T0), 360 * SEC);  /* 40 left: wait for the tokens */
	cr_assert_eq(acquire(p, KEY, 40, T0), 0);          /* a cheaper one fits */
	cr_assert_eq(acquire(p, KEY, 0, T0), 0);           /* cost 0: requests only */
	sluice_pacer_destroy(p);
}

Test(pacer, retry_after_blocks_every_thread_and_rules_apply)
{
	struct sluice_pacer *p = make(8, 0);
	struct sluice_client_limits l;
	memset(&l, 0, sizeof(l));
	l.has_retry_after = true;
	l.retry_after_ns = 5 * SEC;
	struct sluice_backoff_request r = {.status = 429, .idempotent = false, .attempt = 1, .limits = &l};
	struct sluice_rng rng = {1};
	struct sluice_backoff_plan plan;
	cr_assert_eq(acquire(p, KEY, 0, T0), 0);
	cr_assert_eq(sluice_pacer_update(p, KEY, strlen(KEY), &r, T0, T0, &rng, &plan), 0);
	cr_assert_eq(plan.verdict, SLUICE_BACKOFF_RETRY);
	cr_assert_geq(plan.delay_ns, 5 * SEC);
	cr_assert_eq(acquire(p, KEY, 0, T0 + 1 * SEC), plan.delay_ns - 1 * SEC);
	cr_assert_eq(acquire(p, KEY, 0, T0 + plan.delay_ns), 0);
	/* never an automatic retry of a create after a 5xx; attempts capped */
	r.status = 500;
	r.limits = NULL;
	cr_assert_eq(sluice_pacer_update(p, KEY, strlen(KEY), &r, T0, T0, &rng, &plan), 0);
	cr_assert_eq(plan.why, SLUICE_BACKOFF_WHY_UNSAFE);
	r.idempotent = true;
	r.attempt = 5;
	cr_assert_eq(sluice_pacer_update(p, KEY, strlen(KEY), &r, T0, T0, &rng, &plan), 0);
	cr_assert_eq(plan.why, SLUICE_BACKOFF_WHY_ATTEMPTS);
	r.attempt = 0;
	cr_assert_eq(sluice_pacer_update(p, KEY, strlen(KEY), &r, T0, T0, &rng, &plan), SLUICE_EINVAL);
	sluice_pacer_destroy(p);
}

Test(pacer, keys_naming_one_bucket_share_it)
{
	struct sluice_pacer *p = make(8, 0);
	struct sluice_client_limits l = parse_lines(
		(const char *const[]){"X-RateLimit-Limit: 5", "X-RateLimit-Remaining: 2",
				      "X-RateLimit-Reset-After: 10", "X-RateLimit-Bucket: abcd1234", NULL}, 0);
	struct sluice_backoff_request r = {.status = 200, .idempotent = true, .attempt = 1, .limits = &l};
	struct sluice_rng rng = {1};
	struct sluice_backoff_plan plan;
	const char *a = "POST /channels/1/messages", *b = "PATCH /channels/1/messages";
	cr_assert_eq(acquire(p, a, 0, T0), 0);
	cr_assert_eq(sluice_pacer_update(p, a, strlen(a), &r, T0, T0, &rng, &plan), 0);
	cr_assert_eq(acquire(p, b, 0, T0), 0);
	cr_assert_eq(sluice_pacer_update(p, b, strlen(b), &r, T0, T0, &rng, &plan), 0);
	/* both keys now draw on the bucket's 2 */
	cr_assert_eq(acquire(p, a, 0, T0), 0);
	cr_assert_eq(acquire(p, b, 0, T0), 0);
	cr_assert_eq(acquire(p, a, 0, T0), 10 * SEC);
	cr_assert_eq(acquire(p, b, 0, T0), 10 * SEC);
	cr_assert_eq(sluice_pacer_cancel(p, a, strlen(a)), 0);
	cr_assert_eq(sluice_pacer_cancel(p, "nobody", 6), SLUICE_ENOTFOUND);
	sluice_pacer_destroy(p);
}

Test(pacer, full_table_reuses_idle_entries_else_keeps_no_state)
{
	struct sluice_pacer *p = make(1, 0);
	struct sluice_backoff_plan plan;
	cr_assert_eq(acquire(p, "a", 0, T0), 0);
	respond(p, "a", 200, 10, 0, 10, T0); /* "a" waits: busy */
	cr_assert_eq(acquire(p, "b", 0, T0), 0); /* no room: no state, goes */
	struct sluice_backoff_request r = {.status = 200, .idempotent = true, .attempt = 1, .limits = NULL};
	struct sluice_rng rng = {1};
	cr_assert_eq(sluice_pacer_update(p, "b", 1, &r, T0, T0, &rng, &plan), SLUICE_EFULL);
	cr_assert_eq(plan.verdict, SLUICE_BACKOFF_DONE);
	cr_assert_eq(acquire(p, "a", 0, T0), 10 * SEC); /* "a" kept */
	/* after its reset "a" is idle and its entry is reused */
	cr_assert_eq(acquire(p, "b", 0, T0 + 11 * SEC), 0);
	cr_assert_eq(sluice_pacer_update(p, "b", 1, &r, T0 + 11 * SEC, T0 + 11 * SEC, &rng, &plan), 0);
	sluice_pacer_destroy(p);
}

Test(pacer, exhausted_without_reset_sends_one_probe)
{
	struct sluice_pacer_opts o;
	struct sluice_pacer *p;
	sluice_pacer_opts_default(&o);
	cr_assert_eq(sluice_pacer_create(&o, &p), 0);
	struct sluice_client_limits l;
	memset(&l, 0, sizeof(l));
	l.has_remaining = true; /* remaining 0, nothing else known */
	struct sluice_backoff_request r = {.status = 200, .idempotent = true, .attempt = 1, .limits = &l};
	struct sluice_rng rng = {1};
	struct sluice_backoff_plan plan;
	cr_assert_eq(acquire(p, KEY, 0, T0), 0);
	cr_assert_eq(sluice_pacer_update(p, KEY, strlen(KEY), &r, T0, T0, &rng, &plan), 0);
	cr_assert_eq(acquire(p, KEY, 0, T0), 0);            /* the probe */
	cr_assert_eq(acquire(p, KEY, 0, T0), o.poll_ns);    /* its answer is awaited */
	sluice_pacer_destroy(p);
}

Test(pacer, slows_down_before_the_wall)
{
	struct sluice_pacer *p = make(8, 200);
	cr_assert_eq(acquire(p, KEY, 0, T0), 0);
	respond(p, KEY, 200, 100, 50, 10, T0);
	cr_assert_eq(acquire(p, KEY, 0, T0), 0); /* 50% left: no spacing */
	cr_assert_eq(acquire(p, KEY, 0, T0), 0);
	respond(p, KEY, 200, 100, 11, 10, T0); /* 11 less 1 in flight */
	respond(p, KEY, 200, 100, 11, 10, T0); /* all answered: 10 left of 100, 10 s */
	cr_assert_eq(acquire(p, KEY, 0, T0), 0);
	cr_assert_eq(acquire(p, KEY, 0, T0), 1 * SEC); /* 10 s spread over 10 requests */
	cr_assert_eq(acquire(p, KEY, 0, T0 + 1 * SEC), 0);
	sluice_pacer_destroy(p);
}

Test(pacer, time_going_backwards_never_underflows)
{
	struct sluice_pacer *p = make(8, 0);
	cr_assert_eq(acquire(p, KEY, 0, T0), 0);
	respond(p, KEY, 429, 10, 0, 10, T0);
	uint64_t w = acquire(p, KEY, 0, T0 - 5 * SEC);
	cr_assert_geq(w, 10 * SEC);
	cr_assert_leq(w, 20 * SEC);
	cr_assert_eq(acquire(p, KEY, 0, 0), T0 + 10 * SEC + (w - 15 * SEC));
	sluice_pacer_destroy(p);
}
