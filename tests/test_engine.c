/*
 * test_engine.c - the policy engine (include/sluice/engine.h): each seed
 * policy end to end with its documented numbers, all-or-nothing across
 * scopes, concurrency slots, soft warnings, tiers, overrides and their
 * expiry, hot reload keeping state, usage and top-N, errors.
 */
#include "engine_test_util.h"

/* ------------------------------------------------------------------------
 * Seed 002: per token and per workspace
 * ------------------------------------------------------------------------ */

static char *seed002_with(const char *from, const char *to);

/* The seed's minute limit is a sliding window (its page's words); this test
 * checks the engine's GCRA path through it, on a bucket of the same numbers. */
Test(engine_seed002, token_minute_120_then_rate_with_the_minute_limit_governing)
{
	struct sluice_policy *p = load_text(seed002_with("sliding 120/1m", "rate 120/1m"));
	int lim = sluice_policy_limit_index(p, "token_minute");
	struct sluice_engine *e = engine_of(p);
	struct req q;
	req_init(&q, "GET", "/v1/items", "tok_a", "ws_1", DAY0 + 3600 * SEC);

	for (int i = 0; i < 120; i++) {
		struct sluice_engine_decision d = run(e, &q);
		cr_assert(d.d.allowed, "request %d", i);
		cr_assert_eq(d.applied, 0x1f);
	}
	struct sluice_engine_decision d = run(e, &q);
	cr_assert_not(d.d.allowed);
	cr_assert_eq(d.d.reason, SLUICE_REASON_RATE);
	cr_assert_eq(d.d.limit_index, (uint32_t)lim);
	cr_assert_str_eq(d.limit_name, "token_minute");
	cr_assert_eq(d.scope, 0);
	cr_assert_eq(d.d.limit, 120);
	cr_assert_eq(d.d.remaining, 0);
	cr_assert_eq(d.d.retry_after_ns, MIN_NS / 120, "one token every 0.5 s");
	cr_assert_eq(d.slot_count, 0);
	/* Half a second later one more passes. */
	q.r.now_ns += MIN_NS / 120;
	cr_assert(run(e, &q).d.allowed);
	sluice_engine_destroy(e);
}

Test(engine_seed002, token_refusal_consumes_nothing_from_the_workspace)
{
	struct sluice_engine *e = engine_of(load_file("seed002.policy"));
	struct req q;
	req_init(&q, "GET", "/v1/items", "tok_a", "ws_1", DAY0 + 3600 * SEC);

	for (int i = 0; i < 120; i++)
		cr_assert(run(e, &q).d.allowed);
	for (int i = 0; i < 10; i++)
		cr_assert_not(run(e, &q).d.allowed);
	cr_assert_eq(used_of(e, NULL, &q, "ws_minute"), 120);
	cr_assert_eq(used_of(e, NULL, &q, "ws_day"), 120);
	cr_assert_eq(used_of(e, NULL, &q, "token_day"), 120);
	cr_assert_eq(used_of(e, NULL, &q, "token_inflight"), 0);
	sluice_engine_destroy(e);
}

Test(engine_seed002, workspace_300_per_minute_across_three_tokens)
{
	struct sluice_engine *e = engine_of(load_file("seed002.policy"));
	const char *tokens[3] = { "tok_a", "tok_b", "tok_c" };
	struct req q[3];
	uint64_t now = DAY0 + 7200 * SEC;

	for (int t = 0; t < 3; t++)
		req_init(&q[t], "POST", "/v1/things", tokens[t], "ws_1", now);
	for (int i = 0; i < 100; i++)
		for (int t = 0; t < 3; t++)
			cr_assert(run(e, &q[t]).d.allowed, "token %d request %d", t, i);
	/* 301st in the workspace: refused by the workspace minute limit... */
	struct sluice_engine_decision d = run(e, &q[0]);
	cr_assert_not(d.d.allowed);
	cr_assert_str_eq(d.limit_name, "ws_minute");
	cr_assert_eq(d.scope, 1);
	cr_assert_eq(d.d.reason, SLUICE_REASON_RATE);
	cr_assert_eq(d.d.limit, 300);
	/* ...and it consumed nothing from the token's limits. */
	cr_assert_eq(used_of(e, NULL, &q[0], "token_minute"), 100);
	cr_assert_eq(used_of(e, NULL, &q[0], "token_day"), 100);
	cr_assert_eq(used_of(e, NULL, &q[0], "token_inflight"), 0);
	/* Another workspace is untouched. */
	struct req other;
	req_init(&other, "POST", "/v1/things", "tok_a", "ws_2", now);
	d = run(e, &other);
	cr_assert(d.d.allowed);
	sluice_engine_destroy(e);
}

Test(engine_seed002, daily_50000_resets_at_midnight_utc_with_warning_past_80_percent)
{
	struct sluice_engine *e = engine_of(load_file("seed002.policy"));
	struct req q;
	req_init(&q, "GET", "/v1/items", "tok_a", "ws_1", DAY0);
	uint64_t admitted = 0;
	bool warned_early = false;

	/* 120 per minute (the minute limit) for 417 minutes: 50000 by then. */
	for (uint64_t m = 0; admitted < 50000; m++) {
		q.r.now_ns = DAY0 + m * MIN_NS;
		for (int i = 0; i < 120 && admitted < 50000; i++) {
			struct sluice_engine_decision d = run(e, &q);
			cr_assert(d.d.allowed, "minute %llu request %d", (unsigned long long)m, i);
			admitted++;
			if (admitted <= 40000 && d.warn)
				warned_early = true;
			if (admitted == 40001) {
				cr_assert(d.warn, "past 80%% of the day");
				cr_assert_eq(d.warn_limit, 1, "token_day");
			}
		}
	}
	cr_assert_not(warned_early, "no warning at or below 80%%");
	/* The minute limit still has room, the day is spent: quota. */
	struct sluice_engine_decision d = run(e, &q);
	cr_assert_not(d.d.allowed);
	cr_assert_eq(d.d.reason, SLUICE_REASON_QUOTA);
	cr_assert_str_eq(d.limit_name, "token_day");
	cr_assert_eq(d.d.limit, 50000);
	uint64_t to_midnight = DAY0 + 86400 * SEC - q.r.now_ns;
	cr_assert_eq(d.d.reset_ns, to_midnight);
	cr_assert_eq(d.d.retry_after_ns, to_midnight);
	/* One nanosecond before midnight: still refused; at 00:00 UTC: fresh. */
	q.r.now_ns = DAY0 + 86400 * SEC - 1;
	cr_assert_not(run(e, &q).d.allowed);
	q.r.now_ns = DAY0 + 86400 * SEC;
	d = run(e, &q);
	cr_assert(d.d.allowed);
	cr_assert_not(d.warn);
	cr_assert_eq(used_of(e, NULL, &q, "token_day"), 1);
	sluice_engine_destroy(e);
}

Test(engine_seed002, twenty_first_in_flight_gets_concurrency_and_consumes_nothing)
{
	struct sluice_engine *e = engine_of(load_file("seed002.policy"));
	struct req q;
	req_init(&q, "GET", "/v1/items", "tok_a", "ws_1", DAY0 + 10 * SEC);
	struct sluice_engine_decision held[20];

	for (int i = 0; i < 20; i++) {
		cr_assert_eq(sluice_engine_check(e, &q.r, &held[i]), SLUICE_OK);
		cr_assert(held[i].d.allowed);
		cr_assert_eq(held[i].slot_count, 1);
	}
	struct sluice_engine_decision d;
	cr_assert_eq(sluice_engine_check(e, &q.r, &d), SLUICE_OK);
	cr_assert_not(d.d.allowed);
	cr_assert_eq(d.d.reason, SLUICE_REASON_CONCURRENCY);
	cr_assert_str_eq(d.limit_name, "token_inflight");
	cr_assert_eq(d.d.retry_after_ns, SEC, "retryAfterSec: 1");
	cr_assert_eq(d.slot_count, 0);
	cr_assert_eq(used_of(e, NULL, &q, "token_minute"), 20, "the refusal consumed nothing");
	cr_assert_eq(used_of(e, NULL, &q, "ws_minute"), 20);
	cr_assert_eq(used_of(e, NULL, &q, "token_inflight"), 20);
	/* Another token of the same workspace has its own 20. */
	struct req other;
	req_init(&other, "GET", "/v1/items", "tok_b", "ws_1", DAY0 + 10 * SEC);
	cr_assert(run(e, &other).d.allowed);
	/* One completes: the next one fits. Double release is detected. */
	struct sluice_engine_decision copy = held[0];
	cr_assert_eq(sluice_engine_release(e, &held[0]), SLUICE_OK);
	cr_assert_eq(held[0].slot_count, 0);
	cr_assert_eq(sluice_engine_release(e, &copy), SLUICE_EDOUBLE);
	cr_assert_eq(sluice_engine_check(e, &q.r, &d), SLUICE_OK);
	cr_assert(d.d.allowed);
	cr_assert_eq(sluice_engine_release(e, &d), SLUICE_OK);
	for (int i = 1; i < 20; i++)
		cr_assert_eq(sluice_engine_release(e, &held[i]), SLUICE_OK);
	cr_assert_eq(used_of(e, NULL, &q, "token_inflight"), 0);
	sluice_engine_destroy(e);
}

Test(engine_seed002, missing_workspace_keys_the_workspace_limits_by_the_token)
{
	struct sluice_engine *e = engine_of(load_file("seed002.policy"));
	struct req q;
	/* "scope workspace fallback token": every limit applies; the
	 * workspace limits are kept per token, apart from any workspace. */
	req_init(&q, "GET", "/v1/items", "tok_a", NULL, DAY0);
	struct sluice_engine_decision d = run(e, &q);
	cr_assert(d.d.allowed);
	cr_assert_eq(d.applied, 0x1f, "every limit of the seed");
	/* No token ("scope token required"): refused, nothing applied. */
	req_init(&q, "GET", "/v1/items", NULL, NULL, DAY0);
	d = run(e, &q);
	cr_assert_not(d.d.allowed);
	cr_assert_eq(d.d.reason, SLUICE_REASON_IDENTITY);
	cr_assert_not(d.governed);
	cr_assert_eq(d.scope, 0);
	cr_assert_eq(d.d.limit_index, UINT32_MAX);
	cr_assert_eq(d.applied, 0);
	cr_assert_eq(sluice_engine_identity_refusals(e), 1);
	sluice_engine_destroy(e);
}

Test(engine_seed002, usage_page_minute_and_day)
{
	struct sluice_engine *e = engine_of(load_file("seed002.policy"));
	struct req q;
	req_init(&q, "GET", "/v1/items", "tok_a", "ws_1", DAY0 + 30 * SEC);
	for (int i = 0; i < 10; i++)
		cr_assert(run(e, &q).d.allowed);
	struct sluice_engine_usage u[8];
	size_t n = 0;
	cr_assert_eq(sluice_engine_usage(e, &q.r, u, 8, &n), SLUICE_OK);
	cr_assert_eq(n, 5);
	const char *names[5] = { "token_minute", "token_day", "ws_minute", "ws_day", "token_inflight" };
	uint64_t counts[5] = { 120, 50000, 300, 200000, 20 };
	for (size_t i = 0; i < 5; i++) {
		cr_assert_str_eq(u[i].name, names[i]);
		cr_assert_eq(u[i].limit, i);
		cr_assert_eq(u[i].count, counts[i]);
		cr_assert_eq(u[i].used, i == 4 ? 0 : 10, "%s", names[i]);
		cr_assert_not(u[i].warn);
	}
	cr_assert_eq(u[1].reset_ns, 86400 * SEC - 30 * SEC, "day resets at 00:00 UTC");
	cr_assert_eq(u[1].period_ns, 86400 * SEC);
	/* Truncation reports the full count. */
	cr_assert_eq(sluice_engine_usage(e, &q.r, u, 2, &n), SLUICE_ETRUNC);
	cr_assert_eq(n, 5);
	/* An unknown key reads as unused and is not inserted. */
	struct req fresh;
	req_init(&fresh, "GET", "/v1/items", "tok_new", "ws_new", DAY0);
	cr_assert_eq(sluice_engine_usage(e, &fresh.r, u, 8, &n), SLUICE_OK);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(u[i].used, 0);
	size_t got = 0;
	struct sluice_engine_top top[4];
	cr_assert_eq(sluice_engine_top(e, 0, SLUICE_POLICY_NO_TIER, DAY0 + 30 * SEC, top, 4, &got), SLUICE_OK);
	cr_assert_eq(got, 1, "only tok_a is tracked");
	sluice_engine_destroy(e);
}

Test(engine_seed002, top_n_busiest_tokens_in_order)
{
	struct sluice_engine *e = engine_of(load_file("seed002.policy"));
	char name[8][8];
	for (int t = 0; t < 8; t++) {
		snprintf(name[t], sizeof name[t], "tok_%d", t);
		struct req q;
		req_init(&q, "GET", "/v1/items", name[t], "ws_1", DAY0 + 5 * SEC);
		for (int i = 0; i < 3 * t + 1; i++)
			cr_assert(run(e, &q).d.allowed);
	}
	struct sluice_engine_top top[3];
	size_t got = 0;
	cr_assert_eq(sluice_engine_top(e, 0, SLUICE_POLICY_NO_TIER, DAY0 + 5 * SEC, top, 3, &got),
		     SLUICE_OK);
	cr_assert_eq(got, 3);
	for (int k = 0; k < 3; k++) {
		int t = 7 - k;
		cr_assert_eq(top[k].used, (uint64_t)(3 * t + 1));
		cr_assert_eq(top[k].count, 120);
		cr_assert_eq(top[k].key_len, 2 + 5);
		cr_assert_eq(top[k].key[0], 5);
		cr_assert_eq(memcmp(top[k].key + 2, name[t], 5), 0);
	}
	/* The workspace limit: one key with all 92 requests. */
	cr_assert_eq(sluice_engine_top(e, 2, SLUICE_POLICY_NO_TIER, DAY0 + 5 * SEC, top, 3, &got),
		     SLUICE_OK);
	cr_assert_eq(got, 1);
	cr_assert_eq(top[0].used, 92);
	cr_assert_eq(sluice_engine_top(e, 9, SLUICE_POLICY_NO_TIER, DAY0, top, 3, &got), SLUICE_EINVAL);
	cr_assert_eq(sluice_engine_top(e, 0, 7, DAY0, top, 3, &got), SLUICE_EINVAL);
	cr_assert_eq(sluice_engine_top(e, 0, SLUICE_POLICY_NO_TIER, DAY0, top, 0, &got), SLUICE_OK);
	cr_assert_eq(got, 0);
	sluice_engine_destroy(e);
}

/* ------------------------------------------------------------------------
 * Seed 004: per API key and endpoint, sliding windows, the default
 * ------------------------------------------------------------------------ */

Test(engine_seed004, per_route_limits_and_the_default_in_sliding_windows)
{
	struct sluice_engine *e = engine_of(load_file("seed004.policy"));
	uint64_t t0 = DAY0 + 100 * SEC;
	struct req camp, users, other, other2;
	req_init(&camp, "GET", "/v1/campaigns/42", "key_1", NULL, t0);
	req_init(&users, "GET", "/v1/users", "key_1", NULL, t0);
	req_init(&other, "GET", "/v1/whatever", "key_1", NULL, t0);
	req_init(&other2, "DELETE", "/v1/campaigns/42", "key_1", NULL, t0);

	for (int i = 0; i < 120; i++)
		cr_assert(run(e, &camp).d.allowed, "campaign %d", i);
	struct sluice_engine_decision d = run(e, &camp);
	cr_assert_not(d.d.allowed);
	cr_assert_str_eq(d.limit_name, "campaign");
	cr_assert_eq(d.d.limit, 120);
	cr_assert_eq(d.d.reason, SLUICE_REASON_RATE);
	cr_assert_eq(d.d.retry_after_ns, 60 * SEC, "the oldest leaves the window in 60 s");
	/* Other endpoints have their own budgets. */
	for (int i = 0; i < 60; i++)
		cr_assert(run(e, &users).d.allowed);
	cr_assert_str_eq(run(e, &users).limit_name, "users");
	/* Any other route shares the default 60 per 60 s. */
	for (int i = 0; i < 30; i++) {
		cr_assert(run(e, &other).d.allowed);
		cr_assert(run(e, &other2).d.allowed);
	}
	d = run(e, &other);
	cr_assert_not(d.d.allowed);
	cr_assert_str_eq(d.limit_name, "default");
	cr_assert_eq(d.d.limit, 60);
	/* Sliding: 59.999 s later still full; at 60 s the window has moved. */
	other.r.now_ns = t0 + 60 * SEC - 1;
	cr_assert_not(run(e, &other).d.allowed);
	other.r.now_ns = t0 + 60 * SEC;
	cr_assert(run(e, &other).d.allowed);
	sluice_engine_destroy(e);
}

Test(engine_seed004, sliding_window_is_not_a_fixed_window)
{
	struct sluice_engine *e = engine_of(load_file("seed004.policy"));
	uint64_t t0 = DAY0 + 10 * SEC;
	struct req q;
	req_init(&q, "GET", "/v1/teams/me", "key_1", NULL, t0);
	for (int i = 0; i < 30; i++)
		cr_assert(run(e, &q).d.allowed);
	q.r.now_ns = t0 + 30 * SEC;
	for (int i = 0; i < 30; i++)
		cr_assert(run(e, &q).d.allowed);
	cr_assert_not(run(e, &q).d.allowed);
	/* At t0 + 60 s only the first 30 have left. */
	q.r.now_ns = t0 + 60 * SEC;
	for (int i = 0; i < 30; i++)
		cr_assert(run(e, &q).d.allowed, "%d", i);
	struct sluice_engine_decision d = run(e, &q);
	cr_assert_not(d.d.allowed);
	cr_assert_eq(d.d.retry_after_ns, 30 * SEC);
	sluice_engine_destroy(e);
}

/* ------------------------------------------------------------------------
 * Seed 003: tiers, per organization and class, override
 * ------------------------------------------------------------------------ */

static int count_admitted(struct sluice_engine *e, struct req *q, int max)
{
	int n = 0;
	while (n < max && run(e, q).d.allowed)
		n++;
	return n;
}

Test(engine_seed003, tiers_multiply_the_per_class_budgets)
{
	struct sluice_policy *p = load_file("seed003.policy");
	int m = sluice_policy_tier_index(p, "M"), xl = sluice_policy_tier_index(p, "XL");
	int s = sluice_policy_tier_index(p, "S");
	struct sluice_engine *e = engine_of(p);
	uint64_t now = DAY0 + 50 * SEC;
	struct req q;

	req_init(&q, "GET", "/audience/list", "org_m", NULL, now);
	q.r.tier = m;
	cr_assert_eq(count_admitted(e, &q, 5000), 600, "plan M: the published 600/min");
	struct sluice_engine_decision d = run(e, &q);
	cr_assert_str_eq(d.limit_name, "interactive");
	cr_assert_eq(d.d.limit, 600);
	/* Hot endpoints have their own budget per organization+class. */
	req_init(&q, "POST", "/audience/scroll", "org_m", NULL, now);
	q.r.tier = m;
	cr_assert_eq(count_admitted(e, &q, 5000), 300);
	req_init(&q, "POST", "/event/search", "org_m", NULL, now);
	q.r.tier = m;
	cr_assert_eq(count_admitted(e, &q, 5000), 300, "search is a separate class");
	req_init(&q, "GET", "/audience/list", "org_xl", NULL, now);
	q.r.tier = xl;
	cr_assert_eq(count_admitted(e, &q, 5000), 3000);
	req_init(&q, "GET", "/audience/list", "org_s", NULL, now);
	q.r.tier = s;
	cr_assert_eq(count_admitted(e, &q, 5000), 300);
	/* No tier: the base numbers, a limiter of its own. */
	req_init(&q, "GET", "/audience/list", "org_m", NULL, now);
	cr_assert_eq(count_admitted(e, &q, 5000), 300);
	/* Top-N per tier. */
	struct sluice_engine_top top[2];
	size_t got;
	cr_assert_eq(sluice_engine_top(e, 0, m, now, top, 2, &got), SLUICE_OK);
	cr_assert_eq(got, 1);
	cr_assert_eq(top[0].used, 600);
	cr_assert_eq(top[0].count, 600);
	sluice_engine_destroy(e);
}

Test(engine_seed003, backfill_override_raises_the_ceiling_until_it_expires)
{
	struct sluice_engine *e = engine_of(load_file("seed003.policy"));
	uint64_t before = DAY0; /* 2026-11-23: the override (until 2027) is in force */
	struct req q;
	req_init(&q, "GET", "/audience/list", "org_backfill_example", NULL, before);
	cr_assert_eq(count_admitted(e, &q, 5000), 3000);
	struct sluice_engine_usage u[2];
	size_t n;
	cr_assert_eq(sluice_engine_usage(e, &q.r, u, 2, &n), SLUICE_OK);
	cr_assert(u[0].overridden);
	cr_assert_eq(u[0].count, 3000);
	sluice_engine_destroy(e);
}

static const char expiring[] = "policy \"exp\"\n"
			       "scope org\n"
			       "limit base per org rate 5/1m\n"
			       "override base org \"big\" 10 until 2026-11-23T00:10:00Z\n";

Test(engine_overrides, expiry_returns_the_key_to_its_untouched_base_state)
{
	struct sluice_engine *e = engine_of(load_text(expiring));
	uint64_t expiry = DAY0 + 600 * SEC;
	struct req q;

	/* While the override is in force the base limiter is not consulted. */
	req_init(&q, "GET", "/x", "big", NULL, expiry - 1);
	cr_assert_eq(count_admitted(e, &q, 100), 10, "the override's count");
	struct sluice_engine_decision d = run(e, &q);
	cr_assert_eq(d.d.limit, 10);
	/* At the expiry instant the override no longer applies: the key is
	 * evaluated by the base limiter, whose state the override did not
	 * touch (fresh here), and the override's usage is not carried over. */
	q.r.now_ns = expiry;
	cr_assert_eq(count_admitted(e, &q, 100), 5);
	d = run(e, &q);
	cr_assert_eq(d.d.limit, 5);
	cr_assert_str_eq(d.limit_name, "base");
	/* Other keys never saw the override. */
	req_init(&q, "GET", "/x", "small", NULL, expiry - 1);
	cr_assert_eq(count_admitted(e, &q, 100), 5);
	sluice_engine_destroy(e);
}

/* ------------------------------------------------------------------------
 * Seed 000: per IP
 * ------------------------------------------------------------------------ */

Test(engine_seed000, auth_40_per_15_minutes_per_ip_and_signup_20_per_hour)
{
	struct sluice_engine *e = engine_of(load_file("seed000.policy"));
	uint64_t t0 = DAY0 + 1000 * SEC;
	struct req q;
	req_init(&q, "POST", "/auth/login", "10.0.0.1", NULL, t0);
	cr_assert_eq(count_admitted(e, &q, 1000), 40);
	struct sluice_engine_decision d = run(e, &q);
	cr_assert_str_eq(d.limit_name, "auth");
	cr_assert_eq(d.d.reason, SLUICE_REASON_RATE);
	cr_assert_eq(d.d.retry_after_ns, 15 * MIN_NS);
	/* General endpoints of the same IP are separate. */
	struct req g;
	req_init(&g, "GET", "/v2/things", "10.0.0.1", NULL, t0);
	cr_assert_eq(count_admitted(e, &g, 1000), 100);
	cr_assert_str_eq(run(e, &g).limit_name, "general");
	/* Signup: 20 per hour (and it counts against auth too). */
	struct req s;
	req_init(&s, "POST", "/auth/signup", "10.0.0.2", NULL, t0);
	cr_assert_eq(count_admitted(e, &s, 1000), 20);
	d = run(e, &s);
	cr_assert_str_eq(d.limit_name, "signup");
	req_init(&q, "POST", "/auth/login", "10.0.0.2", NULL, t0);
	cr_assert_eq(count_admitted(e, &q, 1000), 20, "40 auth minus the 20 signups");
	sluice_engine_destroy(e);
}

/* ------------------------------------------------------------------------
 * Hot reload
 * ------------------------------------------------------------------------ */

static char *seed002_with(const char *from, const char *to)
{
	char path[512];
	snprintf(path, sizeof path, "%s/docs/policies/seed002.policy", SLUICE_SOURCE_DIR);
	FILE *f = fopen(path, "rb");
	cr_assert_not_null(f);
	static char buf[1 << 14], out[1 << 14];
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *at = from != NULL ? strstr(buf, from) : NULL;
	if (at == NULL) {
		memcpy(out, buf, n + 1);
		return out;
	}
	size_t pre = (size_t)(at - buf);
	snprintf(out, sizeof out, "%.*s%s%s", (int)pre, buf, to, at + strlen(from));
	return out;
}

Test(engine_reload, unchanged_limits_keep_state_changed_ones_start_fresh)
{
	struct sluice_engine *e = engine_of(load_file("seed002.policy"));
	struct req q;
	req_init(&q, "GET", "/v1/items", "tok_a", "ws_1", DAY0 + 60 * SEC);
	for (int i = 0; i < 100; i++)
		cr_assert(run(e, &q).d.allowed);
	struct sluice_engine_decision held;
	cr_assert_eq(sluice_engine_check(e, &q.r, &held), SLUICE_OK);
	cr_assert(held.d.allowed);
	cr_assert_eq(sluice_engine_generation(e), 1);

	/* The workspace minute limit changes; everything else is the same. */
	struct sluice_policy *p2 = load_text(seed002_with("sliding 300/1m", "sliding 400/1m"));
	cr_assert_eq(sluice_engine_reload(e, p2), SLUICE_OK);
	cr_assert_eq(sluice_engine_generation(e), 2);
	cr_assert_eq(used_of(e, NULL, &q, "token_minute"), 101, "kept");
	cr_assert_eq(used_of(e, NULL, &q, "token_day"), 101, "kept");
	cr_assert_eq(used_of(e, NULL, &q, "ws_day"), 101, "kept");
	cr_assert_eq(used_of(e, NULL, &q, "token_inflight"), 1, "kept, slot still held");
	cr_assert_eq(used_of(e, NULL, &q, "ws_minute"), 0, "changed: starts fresh");
	/* The held slot of the kept concurrency limit releases normally. */
	cr_assert_eq(sluice_engine_release(e, &held), SLUICE_OK);
	cr_assert_eq(count_admitted(e, &q, 1000), 19, "120 - 101");
	struct sluice_engine_decision d = run(e, &q);
	cr_assert_str_eq(d.limit_name, "token_minute");
	cr_assert_eq(d.generation, 2);

	/* Now change the concurrency limit while a slot is held: the slot
	 * belongs to the dropped limiter and releases as stale. */
	q.r.now_ns += 3600 * SEC;
	cr_assert_eq(sluice_engine_check(e, &q.r, &held), SLUICE_OK);
	cr_assert(held.d.allowed);
	struct sluice_policy *p3 = load_text(seed002_with("concurrency 20", "concurrency 30"));
	cr_assert_eq(sluice_engine_reload(e, p3), SLUICE_OK);
	cr_assert_eq(sluice_engine_release(e, &held), SLUICE_ESTALE);
	cr_assert_eq(used_of(e, NULL, &q, "token_inflight"), 0);
	cr_assert_eq(used_of(e, NULL, &q, "ws_minute"), 0, "changed back to 300: fresh again");
	sluice_engine_destroy(e);
}

Test(engine_reload, different_scopes_are_refused_and_the_caller_keeps_the_policy)
{
	struct sluice_engine *e = engine_of(load_file("seed002.policy"));
	struct sluice_policy *p = load_file("seed000.policy");
	cr_assert_eq(sluice_engine_reload(e, p), SLUICE_EINVAL);
	cr_assert_eq(sluice_engine_generation(e), 1);
	sluice_policy_destroy(p);
	cr_assert_eq(sluice_engine_reload(e, NULL), SLUICE_EINVAL);
	cr_assert_eq(sluice_engine_reload(NULL, NULL), SLUICE_EINVAL);
	sluice_engine_destroy(e);
}

/* ------------------------------------------------------------------------
 * Edges and errors
 * ------------------------------------------------------------------------ */

Test(engine_errors, bad_arguments_and_identities)
{
	struct sluice_policy *p = load_file("seed002.policy");
	struct sluice_engine *e = NULL;
	struct sluice_engine_options o;
	memset(&o, 0, sizeof o);
	cr_assert_eq(sluice_engine_create(NULL, p, NULL), SLUICE_EINVAL);
	cr_assert_eq(sluice_engine_create(&e, NULL, NULL), SLUICE_EINVAL);
	cr_assert_eq(sluice_engine_create(&e, p, &o), SLUICE_EINVAL, "size 0");
	o.size = sizeof o;
	o.flags = 0x80;
	cr_assert_eq(sluice_engine_create(&e, p, &o), SLUICE_EINVAL);
	cr_assert_null(e);
	e = engine_of(p);

	struct req q;
	struct sluice_engine_decision d;
	req_init(&q, "GET", "/v1/items", "tok_a", "ws_1", DAY0);
	cr_assert_eq(sluice_engine_check(NULL, &q.r, &d), SLUICE_EINVAL);
	cr_assert_eq(sluice_engine_check(e, NULL, &d), SLUICE_EINVAL);
	cr_assert_eq(sluice_engine_check(e, &q.r, NULL), SLUICE_EINVAL);
	q.r.tier = 0;
	cr_assert_eq(sluice_engine_check(e, &q.r, &d), SLUICE_EINVAL, "seed 002 has no tiers");
	q.r.tier = -2;
	cr_assert_eq(sluice_engine_check(e, &q.r, &d), SLUICE_EINVAL);
	q.r.tier = SLUICE_POLICY_NO_TIER;
	q.r.path = "relative";
	q.r.path_len = 8;
	cr_assert_eq(sluice_engine_check(e, &q.r, &d), SLUICE_EINVAL);
	q.r.path = "/v1/items";
	q.r.path_len = 9;
	q.r.method_len = 0;
	cr_assert_eq(sluice_engine_check(e, &q.r, &d), SLUICE_EINVAL);
	q.r.method_len = 3;
	static char big[SLUICE_ENGINE_MAX_IDENTITY + 1];
	memset(big, 'x', sizeof big);
	q.id[1].bytes = big;
	q.id[1].len = sizeof big;
	cr_assert_eq(sluice_engine_check(e, &q.r, &d), SLUICE_EKEY);
	/* Nothing was consumed by the refused call. */
	q.id[1].len = SLUICE_ENGINE_MAX_IDENTITY;
	cr_assert(run(e, &q).d.allowed, "the longest identity is fine");
	cr_assert_eq(used_of(e, NULL, &q, "token_minute"), 1);
	q.id[1].len = 0; /* the empty identity is a key */
	cr_assert(run(e, &q).d.allowed);
	cr_assert_eq(used_of(e, NULL, &q, "token_minute"), 2);
	cr_assert_eq(sluice_engine_release(e, NULL), SLUICE_EINVAL);
	sluice_engine_destroy(NULL);
	sluice_engine_destroy(e);
}

Test(engine_errors, cost_zero_peeks_and_cost_above_the_limit_is_never)
{
	struct sluice_engine *e = engine_of(load_file("seed002.policy"));
	struct req q;
	req_init(&q, "GET", "/v1/items", "tok_a", "ws_1", DAY0);
	q.r.cost = 0;
	struct sluice_engine_decision d;
	cr_assert_eq(sluice_engine_check(e, &q.r, &d), SLUICE_OK);
	cr_assert(d.d.allowed);
	cr_assert_eq(d.slot_count, 0);
	cr_assert_eq(d.d.remaining, 20, "least remaining: the 20 slots");
	q.r.cost = 1;
	cr_assert_eq(used_of(e, NULL, &q, "token_minute"), 0);
	q.r.cost = 121;
	d = run(e, &q);
	cr_assert_not(d.d.allowed);
	cr_assert_eq(d.d.retry_after_ns, SLUICE_NEVER);
	q.r.cost = 1;
	cr_assert_eq(used_of(e, NULL, &q, "token_minute"), 0);
	cr_assert_eq(used_of(e, NULL, &q, "token_inflight"), 0, "the slot was given back");
	sluice_engine_destroy(e);
}

static const char closed[] = "policy \"c\"\n"
			     "fail closed\n"
			     "scope ip\n"
			     "limit l per ip rate 10/1s\n";

Test(engine_errors, fail_closed_when_no_key_can_be_tracked)
{
	struct sluice_engine *e = NULL;
	struct sluice_engine_options o;
	memset(&o, 0, sizeof o);
	o.size = sizeof o;
	o.max_keys = 1;
	cr_assert_eq(sluice_engine_create(&e, load_text(closed), &o), SLUICE_OK);
	struct req a, b;
	req_init(&a, "GET", "/", "1.1.1.1", NULL, DAY0);
	req_init(&b, "GET", "/", "2.2.2.2", NULL, DAY0);
	cr_assert(run(e, &a).d.allowed);
	struct sluice_engine_decision d = run(e, &b);
	cr_assert_not(d.d.allowed);
	cr_assert(d.d.degraded);
	cr_assert_eq(d.d.reason, SLUICE_REASON_CAPACITY);
	/* Sweeping the idle key makes room. */
	cr_assert_eq(sluice_engine_sweep(e, DAY0 + 10 * SEC, 100), SLUICE_OK);
	sluice_engine_destroy(e);
}

Test(engine_sweep, idle_keys_are_reclaimed_and_come_back_identical)
{
	struct sluice_engine *e = engine_of(load_file("seed002.policy"));
	struct req q;
	req_init(&q, "GET", "/v1/items", "tok_a", "ws_1", DAY0 + 10 * SEC);
	cr_assert(run(e, &q).d.allowed);
	/* The next day everything is full again: reclaimable. */
	cr_assert_eq(sluice_engine_sweep(e, DAY0 + 86400 * SEC + 120 * SEC, 1000), SLUICE_OK);
	struct sluice_engine_top top[1];
	size_t got;
	cr_assert_eq(sluice_engine_top(e, 1, SLUICE_POLICY_NO_TIER, DAY0 + 86400 * SEC, top, 1, &got),
		     SLUICE_OK);
	cr_assert_eq(got, 0);
	q.r.now_ns = DAY0 + 86400 * SEC + 200 * SEC;
	struct sluice_engine_decision d = run(e, &q);
	cr_assert(d.d.allowed);
	cr_assert_eq(used_of(e, NULL, &q, "token_day"), 1);
	sluice_engine_destroy(e);
}

Test(engine_errors, more_concurrency_limits_than_a_decision_reports)
{
	static const char text[] = "policy \"many\"\n"
				   "scope ip\n"
				   "limit c1 per ip concurrency 1\n"
				   "limit c2 per ip concurrency 2\n"
				   "limit c3 per ip concurrency 3\n"
				   "limit c4 per ip concurrency 4\n"
				   "limit c5 per ip concurrency 5\n";
	struct sluice_policy *p = load_text(text);
	struct sluice_engine *e = NULL;
	cr_assert_eq(sluice_engine_create(&e, p, NULL), SLUICE_ETOOBIG);
	cr_assert_null(e);
	sluice_policy_destroy(p);
}

Test(engine_time, clock_going_backwards_never_over_admits)
{
	struct sluice_engine *e = engine_of(load_file("seed002.policy"));
	struct req q;
	uint64_t t = DAY0 + 86400 * SEC + 5 * SEC; /* day 2, 00:00:05 */
	req_init(&q, "GET", "/v1/items", "tok_a", "ws_1", t);
	cr_assert_eq(count_admitted(e, &q, 1000), 120);
	/* A step back of a minute: the bucket does not refill backwards. */
	q.r.now_ns = t - 60 * SEC;
	cr_assert_not(run(e, &q).d.allowed);
	/* Back across midnight: the day quota counts it in the cell's day. */
	q.r.now_ns = t + 120 * SEC;
	cr_assert(run(e, &q).d.allowed);
	q.r.now_ns = DAY0 + 86400 * SEC - SEC; /* day 1, 23:59:59 */
	struct sluice_engine_decision d = run(e, &q);
	cr_assert_not(d.d.allowed, "the minute bucket is still ahead in time");
	q.r.now_ns = t + 120 * SEC;
	cr_assert_eq(used_of(e, NULL, &q, "token_day"), 121);
	sluice_engine_destroy(e);
}

Test(engine_reload, an_unchanged_override_keeps_its_state_a_changed_one_starts_fresh)
{
	struct sluice_engine *e = engine_of(load_text(expiring));
	struct req q;
	req_init(&q, "GET", "/x", "big", NULL, DAY0 + 60 * SEC);
	cr_assert_eq(count_admitted(e, &q, 4), 4);
	cr_assert_eq(sluice_engine_reload(e, load_text(expiring)), SLUICE_OK);
	cr_assert_eq(count_admitted(e, &q, 100), 6, "10 - 4: kept");
	static const char changed[] = "policy \"exp\"\n"
				      "scope org\n"
				      "limit base per org rate 5/1m\n"
				      "override base org \"big\" 12 until 2026-11-23T00:10:00Z\n";
	cr_assert_eq(sluice_engine_reload(e, load_text(changed)), SLUICE_OK);
	cr_assert_eq(count_admitted(e, &q, 100), 12, "changed count: fresh");
	sluice_engine_destroy(e);
}

Test(engine_sweep, maintenance_threads_sweep_on_unix_time)
{
	struct sluice_engine *e = NULL;
	struct sluice_engine_options o;
	memset(&o, 0, sizeof o);
	o.size = sizeof o;
	o.sweep_interval_ns = 1000 * 1000; /* 1 ms */
	cr_assert_eq(sluice_engine_create(&e, load_file("seed002.policy"), &o), SLUICE_OK);
	struct req q;
	/* Ten days ago: idle by now in every limit. */
	req_init(&q, "GET", "/v1/items", "tok_a", "ws_1", sluice_realtime_ns() - 10 * 86400 * SEC);
	cr_assert(run(e, &q).d.allowed);
	struct sluice_engine_top top[1];
	size_t got = 1;
	for (int i = 0; i < 2000 && got != 0; i++) {
		cr_assert_eq(sluice_engine_top(e, 0, SLUICE_POLICY_NO_TIER, q.r.now_ns, top, 1, &got), SLUICE_OK);
		if (got != 0) {
			struct timespec ts = { 0, 1000 * 1000 };
			nanosleep(&ts, NULL);
		}
	}
	cr_assert_eq(got, 0, "the maintenance threads reclaimed the idle key");
	sluice_engine_destroy(e);
}

Test(engine_errors, limits_the_cells_cannot_express)
{
	struct sluice_policy *p = load_text("policy \"big\"\nscope ip\nlimit s per ip sliding 2000000/1m\n");
	struct sluice_engine *e = NULL;
	cr_assert_eq(sluice_engine_create(&e, p, NULL), SLUICE_ETOOBIG);
	cr_assert_null(e);
	sluice_policy_destroy(p);
	/* Above the log's ceiling, below the counter's: the counter serves. */
	e = engine_of(load_text("policy \"c\"\nscope ip\nlimit s per ip sliding 5000/1m\n"));
	struct req q;
	req_init(&q, "GET", "/", "1.2.3.4", NULL, DAY0);
	q.r.cost = 5000;
	cr_assert(run(e, &q).d.allowed);
	q.r.cost = 1;
	cr_assert_not(run(e, &q).d.allowed);
	sluice_engine_destroy(e);
}

Test(engine_seed001, the_same_table_as_seed000)
{
	struct sluice_engine *e = engine_of(load_file("seed001.policy"));
	struct req q;
	req_init(&q, "POST", "/auth/login", "10.0.0.9", NULL, DAY0);
	cr_assert_eq(count_admitted(e, &q, 1000), 40);
	cr_assert_str_eq(run(e, &q).limit_name, "auth");
	sluice_engine_destroy(e);
}
