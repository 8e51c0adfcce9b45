/*
 * test_policy.c - the policy model and config format (include/sluice/policy.h):
 * the five seed policies with their documented numbers, tiers, overrides, the
 * canonical printer, allocation hooks. The parser's errors are in
 * test_policy_errors.c.
 */
#include "policy_test_util.h"

/* The header family of a spec (with its reset encoding), Retry-After aside. */
#define FAMILY(s) ((s)->families & ~(uint32_t)SLUICE_HTTP_RETRY_AFTER)

static const struct sluice_policy_limit *limit_named(const struct sluice_policy *p, const char *name)
{
	int i = sluice_policy_limit_index(p, name);
	cr_assert_geq(i, 0, "no limit %s", name);
	return &sluice_policy_spec(p)->limits[i];
}

static bool applies(const struct sluice_policy *p, const struct sluice_policy_limit *l, const char *class)
{
	int c = sluice_policy_class_index(p, class);
	cr_assert_geq(c, 0, "no class %s", class);
	bool by_mask = l->all_classes || (l->class_mask >> c) & 1;
	int li = sluice_policy_limit_index(p, l->name);
	cr_assert_eq(by_mask, (sluice_policy_class_limits(p, (uint32_t)c) >> li) & 1, "class_limits disagrees");
	return by_mask;
}

static uint32_t scope_bit(const struct sluice_policy *p, const char *scope)
{
	int s = sluice_policy_scope_index(p, scope);
	cr_assert_geq(s, 0, "no scope %s", scope);
	return 1u << s;
}

static void assert_limit(const struct sluice_policy_limit *l, uint8_t kind, uint64_t count, uint64_t period_ns)
{
	cr_assert_eq(l->kind, kind, "%s: kind %u", l->name, l->kind);
	cr_assert_eq(l->count, count, "%s: count %llu", l->name, (unsigned long long)l->count);
	cr_assert_eq(l->period_ns, period_ns, "%s: period %llu", l->name, (unsigned long long)l->period_ns);
}

/* ------------------------------------------------------------------------
 * The seeds
 * ------------------------------------------------------------------------ */

static void check_seed000_numbers(struct sluice_policy *p)
{
	const struct sluice_policy_spec *s = sluice_policy_spec(p);

	cr_assert_eq(FAMILY(s), SLUICE_HTTP_DRAFT06);
	cr_assert(s->families & SLUICE_HTTP_RETRY_AFTER);
	cr_assert_eq(s->body, SLUICE_HTTP_BODY_JSON_DATA_ERROR);
	cr_assert_eq(s->scope_count, 1);
	cr_assert_str_eq(s->scopes[0], "ip");
	cr_assert_eq(s->limit_count, 4);

	const struct sluice_policy_limit *general = limit_named(p, "general");
	assert_limit(general, SLUICE_POLICY_KIND_SLIDING, 100, 60 * SEC);
	cr_assert_eq(general->reason, SLUICE_REASON_RATE);
	cr_assert_eq(general->scope_mask, scope_bit(p, "ip"));
	cr_assert(applies(p, general, "default"));
	cr_assert_not(applies(p, general, "auth"));

	const struct sluice_policy_limit *auth = limit_named(p, "auth");
	assert_limit(auth, SLUICE_POLICY_KIND_SLIDING, 40, 15 * 60 * SEC);
	cr_assert_eq(auth->scope_mask, scope_bit(p, "ip"));
	cr_assert(applies(p, auth, "auth") && applies(p, auth, "signup") && applies(p, auth, "password_reset"));
	cr_assert_not(applies(p, auth, "default"));

	const struct sluice_policy_limit *signup = limit_named(p, "signup");
	assert_limit(signup, SLUICE_POLICY_KIND_SLIDING, 20, 3600 * SEC);
	cr_assert(applies(p, signup, "signup") && !applies(p, signup, "auth"));

	const struct sluice_policy_limit *reset = limit_named(p, "password_reset");
	assert_limit(reset, SLUICE_POLICY_KIND_SLIDING, 12, 3600 * SEC);
	cr_assert(applies(p, reset, "password_reset") && !applies(p, reset, "signup"));

	/* every /auth/ route is an auth endpoint; the rest is general */
	cr_assert_str_eq(class_of(p, "POST", "/auth/login"), "auth");
	cr_assert_str_eq(class_of(p, "GET", "/auth/session/refresh"), "auth");
	cr_assert_str_eq(class_of(p, "POST", "/auth/signup"), "signup");
	cr_assert_str_eq(class_of(p, "GET", "/auth/signup"), "auth");
	cr_assert_str_eq(class_of(p, "POST", "/auth/password-reset"), "password_reset");
	cr_assert_str_eq(class_of(p, "GET", "/campaigns/42/media-buy-status"), "default");
	cr_assert_str_eq(class_of(p, "GET", "/auth"), "default");
}

Test(policy_seeds, seed000_per_ip_general_auth_signup_reset)
{
	struct sluice_policy *p = load_file("seed000.policy");
	cr_assert_str_eq(sluice_policy_spec(p)->name, "seed000");
	check_seed000_numbers(p);
	sluice_policy_destroy(p);
}

Test(policy_seeds, seed001_states_the_same_table_as_seed000)
{
	struct sluice_policy *p = load_file("seed001.policy");
	struct sluice_policy *q = load_file("seed000.policy");
	cr_assert_str_eq(sluice_policy_spec(p)->name, "seed001");
	check_seed000_numbers(p);
	cr_assert_not(sluice_policy_equal(p, q)); /* the names differ */
	sluice_policy_destroy(p);
	sluice_policy_destroy(q);
}

Test(policy_seeds, seed002_token_and_workspace_limits)
{
	struct sluice_policy *p = load_file("seed002.policy");
	const struct sluice_policy_spec *s = sluice_policy_spec(p);
	uint32_t token = scope_bit(p, "token"), ws = scope_bit(p, "workspace");

	cr_assert_eq(FAMILY(s), SLUICE_HTTP_X_DELTA);
	cr_assert(s->families & SLUICE_HTTP_RETRY_AFTER);
	cr_assert_eq(s->body, SLUICE_HTTP_BODY_JSON_ERROR);
	cr_assert_eq(s->limit_count, 5);
	cr_assert_eq(s->route_count, 0);

	/* "Calls remaining in the current 60-second window": windows, not buckets. */
	const struct sluice_policy_limit *l = limit_named(p, "token_minute");
	assert_limit(l, SLUICE_POLICY_KIND_SLIDING, 120, 60 * SEC);
	cr_assert_eq(l->burst, 120);
	cr_assert_eq(l->scope_mask, token);
	cr_assert_eq(l->reason, SLUICE_REASON_RATE);
	cr_assert_eq(l->warn_percent, 0);

	l = limit_named(p, "token_day");
	assert_limit(l, SLUICE_POLICY_KIND_CALENDAR, 50000, 86400 * SEC);
	cr_assert_eq(l->scope_mask, token);
	cr_assert_eq(l->reason, SLUICE_REASON_QUOTA);
	cr_assert_eq(l->warn_percent, 80);

	l = limit_named(p, "ws_minute");
	assert_limit(l, SLUICE_POLICY_KIND_SLIDING, 300, 60 * SEC);
	cr_assert_eq(l->scope_mask, ws);

	l = limit_named(p, "ws_day");
	assert_limit(l, SLUICE_POLICY_KIND_CALENDAR, 200000, 86400 * SEC);
	cr_assert_eq(l->scope_mask, ws);
	cr_assert_eq(l->warn_percent, 80);

	l = limit_named(p, "token_inflight");
	assert_limit(l, SLUICE_POLICY_KIND_CONCURRENCY, 20, 0);
	cr_assert_eq(l->scope_mask, token);
	cr_assert_eq(l->reason, SLUICE_REASON_CONCURRENCY);
	cr_assert_eq(l->retry_after_ns, SEC);
	cr_assert_eq(l->lease_ns, 0);

	for (uint32_t i = 0; i < s->limit_count; i++) {
		cr_assert(s->limits[i].all_classes);
		cr_assert_not(s->limits[i].per_class);
		cr_assert_not(s->limits[i].tiered);
	}
	cr_assert_eq(match(p, "GET", "/v1/content"), 0);
	sluice_policy_destroy(p);
}

Test(policy_seeds, seed003_org_and_class_with_tiers)
{
	struct sluice_policy *p = load_file("seed003.policy");
	const struct sluice_policy_spec *s = sluice_policy_spec(p);
	uint64_t count, burst;

	cr_assert_eq(FAMILY(s), SLUICE_HTTP_X_UNIX_S);
	cr_assert_not(s->families & SLUICE_HTTP_RETRY_AFTER);
	cr_assert_eq(s->body, SLUICE_HTTP_BODY_EMPTY);

	static const char *const tiers[] = {"S", "M", "L", "XL"};
	static const uint32_t milli[] = {1000, 2000, 4000, 10000};
	cr_assert_eq(s->tier_count, 4);
	for (int t = 0; t < 4; t++) {
		cr_assert_eq(sluice_policy_tier_index(p, tiers[t]), t);
		cr_assert_eq(s->tiers[t].multiplier_milli, milli[t]);
	}

	const struct sluice_policy_limit *inter = limit_named(p, "interactive");
	const struct sluice_policy_limit *hot = limit_named(p, "hot");
	uint32_t li = (uint32_t)sluice_policy_limit_index(p, "interactive");
	uint32_t lh = (uint32_t)sluice_policy_limit_index(p, "hot");
	for (int k = 0; k < 2; k++) {
		const struct sluice_policy_limit *l = k ? hot : inter;
		cr_assert_eq(l->scope_mask, scope_bit(p, "organization"));
		cr_assert(l->per_class, "per organization AND endpoint class");
		cr_assert(l->tiered);
		cr_assert_eq(l->period_ns, 60 * SEC);
	}
	cr_assert(applies(p, inter, "default") && applies(p, inter, "specs") && !applies(p, inter, "scroll"));
	cr_assert(applies(p, hot, "scroll") && applies(p, hot, "search") && applies(p, hot, "aggregations"));
	cr_assert_not(applies(p, hot, "default"));

	/* the published example: X-RateLimit-Limit 600 (plan M, ordinary class) */
	cr_assert_eq(sluice_policy_limit_numbers(p, li, sluice_policy_tier_index(p, "M"), &count, &burst), 0);
	cr_assert_eq(count, 600);
	cr_assert_eq(burst, 600);
	static const uint64_t inter_by_tier[] = {300, 600, 1200, 3000};
	static const uint64_t hot_by_tier[] = {150, 300, 600, 1500};
	for (int t = 0; t < 4; t++) {
		cr_assert_eq(sluice_policy_limit_numbers(p, li, t, &count, NULL), 0);
		cr_assert_eq(count, inter_by_tier[t]);
		cr_assert_eq(sluice_policy_limit_numbers(p, lh, t, &count, NULL), 0);
		cr_assert_eq(count, hot_by_tier[t]);
	}
	cr_assert_eq(sluice_policy_limit_numbers(p, li, SLUICE_POLICY_NO_TIER, &count, NULL), 0);
	cr_assert_eq(count, 300);

	cr_assert_str_eq(class_of(p, "POST", "/audience/scroll"), "scroll");
	cr_assert_str_eq(class_of(p, "GET", "/event/scroll"), "scroll");
	cr_assert_str_eq(class_of(p, "GET", "/specs/attributes"), "specs");
	cr_assert_str_eq(class_of(p, "GET", "/projects/7/dashboards"), "default");

	/* the backfill override, in force until 2027-01-01T00:00:00Z */
	const uint64_t expiry = 1798761600ull * SEC;
	int o = sluice_policy_override_find(p, li, 0, "org_backfill_example", 20, expiry - 1);
	cr_assert_geq(o, 0);
	cr_assert_eq(s->overrides[o].count, 3000);
	cr_assert_eq(s->overrides[o].expires_at_ns, expiry);
	cr_assert_eq(sluice_policy_override_find(p, li, 0, "org_backfill_example", 20, expiry), SLUICE_ENOTFOUND);
	cr_assert_eq(sluice_policy_override_find(p, lh, 0, "org_backfill_example", 20, 0), SLUICE_ENOTFOUND);
	cr_assert_eq(sluice_policy_override_find(p, li, 0, "org_other", 9, 0), SLUICE_ENOTFOUND);
	sluice_policy_destroy(p);
}

static const struct {
	const char *method, *path, *cls;
	uint64_t count;
} seed004_table[] = {
	{"GET", "/v1/analytics", "analytics", 30},
	{"GET", "/v1/analytics/daily", "analytics_daily", 30},
	{"GET", "/v1/analytics/by-user", "analytics_by_user", 30},
	{"POST", "/v1/leads/add_to_campaign", "leads_add_to_campaign", 20},
	{"GET", "/v1/campaigns", "campaigns", 60},
	{"GET", "/v1/campaigns/cmp_123", "campaign", 120},
	{"GET", "/v1/campaigns/cmp_123/statistics", "campaign_statistics", 30},
	{"GET", "/v1/users", "users", 60},
	{"GET", "/v1/users/u_9", "user", 60},
	{"GET", "/v1/teams/me", "teams_me", 60},
};

/* The limits that apply to a class: exactly one in seed 004. */
static const struct sluice_policy_limit *only_limit(const struct sluice_policy *p, int cls)
{
	const struct sluice_policy_spec *s = sluice_policy_spec(p);
	const struct sluice_policy_limit *found = NULL;
	for (uint32_t i = 0; i < s->limit_count; i++) {
		if ((sluice_policy_class_limits(p, (uint32_t)cls) >> i) & 1) {
			cr_assert_null(found, "two limits on class %s", s->classes[cls]);
			found = &s->limits[i];
		}
	}
	cr_assert_not_null(found);
	return found;
}

Test(policy_seeds, seed004_endpoint_table_and_default)
{
	struct sluice_policy *p = load_file("seed004.policy");
	const struct sluice_policy_spec *s = sluice_policy_spec(p);

	cr_assert_eq(FAMILY(s), SLUICE_HTTP_X_UNIX_MS);
	cr_assert(s->families & SLUICE_HTTP_RETRY_AFTER);
	cr_assert_eq(s->fail, SLUICE_FAIL_OPEN);
	cr_assert_eq(s->route_count, 10);
	cr_assert_eq(s->limit_count, 11);
	for (size_t i = 0; i < sizeof(seed004_table) / sizeof(seed004_table[0]); i++) {
		int c = match(p, seed004_table[i].method, seed004_table[i].path);
		cr_assert_geq(c, 0);
		cr_assert_str_eq(s->classes[c], seed004_table[i].cls, "%s %s", seed004_table[i].method,
				 seed004_table[i].path);
		const struct sluice_policy_limit *l = only_limit(p, c);
		assert_limit(l, SLUICE_POLICY_KIND_SLIDING, seed004_table[i].count, 60 * SEC);
		cr_assert_eq(l->scope_mask, scope_bit(p, "api_key"));
	}
	/* unlisted routes: 60 per 60 s per API key */
	static const char *const other[][2] = {
		{"GET", "/v1/teams/t_1"}, {"DELETE", "/v1/campaigns/cmp_1"}, {"POST", "/v1/analytics"},
		{"GET", "/v1/leads/add_to_campaign"}, {"GET", "/v1/campaigns/c/statistics/x"}, {"GET", "/v2/users"},
	};
	for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
		int c = match(p, other[i][0], other[i][1]);
		cr_assert_eq(c, (int)SLUICE_POLICY_DEFAULT_CLASS, "%s %s", other[i][0], other[i][1]);
		const struct sluice_policy_limit *l = only_limit(p, c);
		cr_assert_str_eq(l->name, "default");
		assert_limit(l, SLUICE_POLICY_KIND_SLIDING, 60, 60 * SEC);
	}
	sluice_policy_destroy(p);
}

Test(policy_seeds, every_seed_round_trips_through_the_printer)
{
	static const char *const files[] = {"seed000.policy", "seed001.policy", "seed002.policy",
					    "seed003.policy", "seed004.policy"};
	for (int i = 0; i < 5; i++) {
		struct sluice_policy *p = load_file(files[i]);
		static char text[1 << 16];
		size_t len;
		cr_assert_eq(sluice_policy_print(p, text, sizeof(text), &len), 0);
		cr_assert_eq(strlen(text), len);
		struct sluice_policy *q = load_text(text);
		cr_assert(sluice_policy_equal(p, q), "%s", files[i]);
		static char text2[1 << 16];
		cr_assert_eq(sluice_policy_print(q, text2, sizeof(text2), NULL), 0);
		cr_assert_str_eq(text, text2);
		sluice_policy_destroy(q);
		sluice_policy_destroy(p);
	}
}

/* ------------------------------------------------------------------------
 * The format
 * ------------------------------------------------------------------------ */

#define HEAD "policy \"t\"\nscope ip\n"

Test(policy_format, durations_in_every_unit)
{
	struct sluice_policy *p = load_text(HEAD "limit a per ip sliding 1/7ns\n"
						 "limit b per ip sliding 1/7us\n"
						 "limit c per ip sliding 1/7ms\n"
						 "limit d per ip sliding 1/7s\n"
						 "limit e per ip sliding 1/7m\n"
						 "limit f per ip sliding 1/7h\n"
						 "limit g per ip sliding 1/7d\n");
	static const uint64_t want[] = {7, 7000, 7000000, 7 * SEC, 420 * SEC, 25200 * SEC, 604800 * SEC};
	for (int i = 0; i < 7; i++)
		cr_assert_eq(sluice_policy_spec(p)->limits[i].period_ns, want[i]);
	sluice_policy_destroy(p);
}

Test(policy_format, comments_blank_lines_tabs_crlf_and_separators)
{
	struct sluice_policy *p = load_text("# leading comment\n\n  \t\r\npolicy \"a b # not a comment\" # c\r\n"
					    "scope\tip#c\nlimit x per ip quota 1_000_000/1h@utc # 1e6\n");
	cr_assert_str_eq(sluice_policy_spec(p)->name, "a b # not a comment");
	cr_assert_eq(sluice_policy_spec(p)->limits[0].count, 1000000);
	sluice_policy_destroy(p);
}

Test(policy_format, defaults)
{
	struct sluice_policy *p = load_text(HEAD "limit x per ip rate 10/1s\nlimit c per ip concurrency 5\n");
	const struct sluice_policy_spec *s = sluice_policy_spec(p);
	cr_assert_eq(FAMILY(s), 0); /* headers none */
	cr_assert(s->families & SLUICE_HTTP_RETRY_AFTER);
	cr_assert_eq(s->body, SLUICE_HTTP_BODY_EMPTY);
	cr_assert_eq(s->fail, SLUICE_FAIL_OPEN);
	cr_assert_eq(s->class_count, 1);
	cr_assert_str_eq(s->classes[0], "default");
	cr_assert_eq(s->limits[0].burst, 10);
	cr_assert_eq(s->limits[1].retry_after_ns, SEC);
	sluice_policy_destroy(p);
}

Test(policy_format, options_of_each_kind)
{
	struct sluice_policy *p = load_text(HEAD "scope key\n"
						 "limit g per key+ip+class rate 10/1s burst 25 warn 90% tiered\n"
						 "limit c per class concurrency 5 lease 30s retry-after 250ms\n");
	const struct sluice_policy_limit *g = &sluice_policy_spec(p)->limits[0];
	const struct sluice_policy_limit *c = &sluice_policy_spec(p)->limits[1];
	cr_assert_eq(g->burst, 25);
	cr_assert_eq(g->warn_percent, 90);
	cr_assert(g->tiered && g->per_class);
	cr_assert_eq(g->scope_mask, 3u);
	cr_assert_eq(c->scope_mask, 0u);
	cr_assert(c->per_class);
	cr_assert_eq(c->lease_ns, 30 * SEC);
	cr_assert_eq(c->retry_after_ns, 250000000ull);
	sluice_policy_destroy(p);
}

Test(policy_format, tier_multipliers_with_decimals)
{
	struct sluice_policy *p = load_text(HEAD "tier a x1.5\ntier b x0.001\ntier c x1000\ntier d x2.25\n"
						 "limit l per ip rate 1000/1s burst 2000 tiered\n");
	const struct sluice_policy_spec *s = sluice_policy_spec(p);
	cr_assert_eq(s->tiers[0].multiplier_milli, 1500);
	cr_assert_eq(s->tiers[1].multiplier_milli, 1);
	cr_assert_eq(s->tiers[2].multiplier_milli, 1000000);
	cr_assert_eq(s->tiers[3].multiplier_milli, 2250);
	uint64_t c, b;
	cr_assert_eq(sluice_policy_limit_numbers(p, 0, 0, &c, &b), 0);
	cr_assert(c == 1500 && b == 3000);
	cr_assert_eq(sluice_policy_limit_numbers(p, 0, 1, &c, &b), 0);
	cr_assert(c == 1 && b == 2);
	cr_assert_eq(sluice_policy_limit_numbers(p, 0, 3, &c, &b), 0);
	cr_assert(c == 2250 && b == 4500);
	cr_assert_eq(sluice_policy_limit_numbers(p, 0, 4, &c, &b), SLUICE_EINVAL);
	cr_assert_eq(sluice_policy_limit_numbers(p, 1, 0, &c, &b), SLUICE_EINVAL);
	cr_assert_eq(sluice_policy_limit_numbers(p, 0, -2, &c, &b), SLUICE_EINVAL);
	cr_assert_eq(sluice_policy_limit_numbers(NULL, 0, 0, &c, &b), SLUICE_EINVAL);
	sluice_policy_destroy(p);
}

Test(policy_format, untiered_limits_ignore_the_tier)
{
	struct sluice_policy *p = load_text(HEAD "tier big x10\nlimit l per ip rate 7/1s\n");
	uint64_t c;
	cr_assert_eq(sluice_policy_limit_numbers(p, 0, 0, &c, NULL), 0);
	cr_assert_eq(c, 7);
	sluice_policy_destroy(p);
}

Test(policy_format, overrides_lookup_and_expiry)
{
	struct sluice_policy *p = load_text(HEAD "scope org\n"
						 "limit a per org rate 10/1s\nlimit b per ip+org rate 10/1s\n"
						 "override b org \"zz\" 50 until 1970-01-01T00:00:10Z\n"
						 "override a org \"k\\x00\\\"\" 20 burst 40 until 2000-02-29T12:00:00.5Z\n"
						 "override b ip \"10.0.0.1\" 30 until 2500-12-31T23:59:59Z\n"
						 "override b org \"z\" 60 until 2100-01-01T00:00:00Z\n");
	const struct sluice_policy_spec *s = sluice_policy_spec(p);
	int o = sluice_policy_override_find(p, 0, 1, "k\0\"", 3, 0);
	cr_assert_eq(o, 1);
	cr_assert(s->overrides[o].count == 20 && s->overrides[o].burst == 40);
	cr_assert_eq(s->overrides[o].expires_at_ns, 951825600ull * SEC + SEC / 2);
	cr_assert_eq(sluice_policy_override_find(p, 0, 1, "k", 1, 0), SLUICE_ENOTFOUND);
	cr_assert_eq(sluice_policy_override_find(p, 1, 1, "zz", 2, 10 * SEC - 1), 0);
	cr_assert_eq(sluice_policy_override_find(p, 1, 1, "zz", 2, 10 * SEC), SLUICE_ENOTFOUND);
	cr_assert_eq(sluice_policy_override_find(p, 1, 1, "z", 1, 0), 3);
	cr_assert_eq(sluice_policy_override_find(p, 1, 0, "10.0.0.1", 8, UINT64_MAX - 1), SLUICE_ENOTFOUND);
	cr_assert_eq(sluice_policy_override_find(p, 1, 0, "10.0.0.1", 8, 0), 2);
	cr_assert_eq(s->overrides[2].expires_at_ns, 16756761599ull * SEC);
	cr_assert_eq(sluice_policy_override_find(p, 1, 0, NULL, 0, 0), SLUICE_ENOTFOUND);
	cr_assert_eq(sluice_policy_override_find(p, 1, 0, NULL, 1, 0), SLUICE_EINVAL);
	cr_assert_eq(sluice_policy_override_find(p, 2, 0, "x", 1, 0), SLUICE_EINVAL);
	cr_assert_eq(sluice_policy_override_find(p, 0, 2, "x", 1, 0), SLUICE_EINVAL);
	cr_assert_eq(sluice_policy_override_find(NULL, 0, 0, "x", 1, 0), SLUICE_EINVAL);
	sluice_policy_destroy(p);
}

Test(policy_format, index_lookups)
{
	struct sluice_policy *p = load_file("seed003.policy");
	cr_assert_eq(sluice_policy_scope_index(p, "organization"), 0);
	cr_assert_eq(sluice_policy_scope_index(p, "ip"), SLUICE_ENOTFOUND);
	cr_assert_eq(sluice_policy_class_index(p, "default"), 0);
	cr_assert_eq(sluice_policy_class_index(p, "scroll"), 1);
	cr_assert_eq(sluice_policy_limit_index(p, "hot"), 1);
	cr_assert_eq(sluice_policy_tier_index(p, "XL"), 3);
	cr_assert_eq(sluice_policy_tier_index(p, "xl"), SLUICE_ENOTFOUND);
	cr_assert_eq(sluice_policy_class_limits(p, 0), 1u);      /* interactive */
	cr_assert_eq(sluice_policy_class_limits(p, 1), 2u);      /* scroll: hot */
	cr_assert_eq(sluice_policy_class_limits(p, 4), 1u);      /* specs: interactive */
	cr_assert_eq(sluice_policy_class_limits(p, 5), 0u);      /* no such class */
	cr_assert_eq(sluice_policy_class_limits(NULL, 0), 0u);
	cr_assert_eq(sluice_policy_scope_index(p, NULL), SLUICE_EINVAL);
	cr_assert_eq(sluice_policy_limit_index(NULL, "hot"), SLUICE_EINVAL);
	cr_assert_null(sluice_policy_spec(NULL));
	sluice_policy_destroy(p);
	sluice_policy_destroy(NULL);
}

/* ------------------------------------------------------------------------
 * Allocation
 * ------------------------------------------------------------------------ */

struct counting_alloc {
	int calls;
	int fail_at; /* 1-based call that fails; 0: none */
	long live;
	size_t last_size;
};

static void *count_alloc(void *ctx, size_t size)
{
	struct counting_alloc *a = ctx;
	if (++a->calls == a->fail_at)
		return NULL;
	a->live++;
	a->last_size = size;
	return malloc(size);
}

static void count_free(void *ctx, void *ptr)
{
	struct counting_alloc *a = ctx;
	a->live--;
	free(ptr);
}

Test(policy_alloc, failure_at_every_site_leaks_nothing)
{
	const char *t = HEAD "class a match GET /a/:b\nlimit a per ip rate 1/1s\n";
	for (int site = 1; site <= 3; site++) {
		struct counting_alloc a = {0, site, 0, 0};
		struct sluice_policy_options o = {sizeof(o), count_alloc, count_free, &a, 0, NULL};
		struct sluice_policy *p = NULL;
		struct sluice_policy_error e;
		int rc = sluice_policy_parse(t, strlen(t), &o, &p, &e);
		if (site <= 2) {
			cr_assert_eq(rc, SLUICE_ENOMEM, "site %d", site);
			cr_assert_null(p);
			cr_assert_not_null(strstr(e.message, "out of memory"));
		} else {
			cr_assert_eq(rc, SLUICE_OK); /* a load makes exactly two allocations */
			cr_assert_eq(a.calls, 2);
			cr_assert_eq(a.live, 1, "only the policy outlives the load");
			cr_assert_eq(match(p, "GET", "/a/x"), 1);
			sluice_policy_destroy(p);
		}
		cr_assert_eq(a.live, 0, "site %d", site);
	}
}

Test(policy_alloc, max_bytes_bounds_the_policy)
{
	struct counting_alloc a = {0, 0, 0, 0};
	struct sluice_policy_options o = {sizeof(o), count_alloc, count_free, &a, 0, NULL};
	struct sluice_policy *p = NULL;
	struct sluice_policy_error e;
	const char *t = HEAD "limit a per ip rate 1/1s\n";
	cr_assert_eq(sluice_policy_parse(t, strlen(t), &o, &p, &e), SLUICE_OK);
	size_t need = a.last_size;
	sluice_policy_destroy(p);
	o.max_bytes = need;
	cr_assert_eq(sluice_policy_parse(t, strlen(t), &o, &p, &e), SLUICE_OK);
	sluice_policy_destroy(p);
	o.max_bytes = need - 1;
	cr_assert_eq(sluice_policy_parse(t, strlen(t), &o, &p, &e), SLUICE_ETOOBIG);
	cr_assert_null(p);
	cr_assert_eq(a.live, 0);
}

/* ------------------------------------------------------------------------
 * Printer and equality
 * ------------------------------------------------------------------------ */

Test(policy_print, truncation_and_length)
{
	struct sluice_policy *p = load_file("seed002.policy");
	size_t len = 0;
	cr_assert_eq(sluice_policy_print(p, NULL, 0, &len), SLUICE_ETRUNC);
	cr_assert_gt(len, 100);
	char *full = malloc(len + 1);
	cr_assert_eq(sluice_policy_print(p, full, len + 1, NULL), SLUICE_OK);
	char small[16];
	size_t len2 = 0;
	cr_assert_eq(sluice_policy_print(p, small, sizeof(small), &len2), SLUICE_ETRUNC);
	cr_assert_eq(len2, len);
	cr_assert_eq(strlen(small), sizeof(small) - 1);
	cr_assert_eq(strncmp(small, full, sizeof(small) - 1), 0);
	cr_assert_eq(sluice_policy_print(p, full, len, NULL), SLUICE_ETRUNC); /* no room for the NUL */
	cr_assert_eq(sluice_policy_print(NULL, full, len, NULL), SLUICE_EINVAL);
	cr_assert_eq(sluice_policy_print(p, NULL, 5, NULL), SLUICE_EINVAL);
	free(full);
	sluice_policy_destroy(p);
}

Test(policy_print, canonical_form_of_every_construct)
{
	struct sluice_policy *p = load_text(
		"policy \"q\\\"\\\\ \\x41\"\nscope ip\nscope key\nheaders x-ratelimit reset=unix-ms retry-after=no\n"
		"body json-error\nfail closed\nclass r match * /\nclass s match DELETE /a/:b/*\ntier t x0.5\n"
		"limit l per key+ip+class on s,default rate 7000/3000ms burst 9000 warn 100% tiered\n"
		"limit c per key concurrency 3 retry-after 1500ms lease 90s\n"
		"limit w per ip sliding 5/90m\nlimit d per ip quota 10/1d@utc\n"
		"override l key \"\\xff\\x01z\" 99 burst 300 until 2030-12-31T23:59:59.000000001Z\n");
	const char *want = "policy \"q\\\"\\\\ A\"\n"
			   "headers x-ratelimit reset=unix-ms retry-after=no\n"
			   "body json-error\n"
			   "fail closed\n"
			   "scope ip\n"
			   "scope key\n"
			   "class r\n"
			   "class s\n"
			   "class r match * /\n"
			   "class s match DELETE /a/:b/*\n"
			   "tier t x0.5\n"
			   "limit l per ip+key+class on default,s rate 7000/3s burst 9000 warn 100% tiered\n"
			   "limit c per key concurrency 3 retry-after 1500ms lease 90s\n"
			   "limit w per ip sliding 5/90m\n"
			   "limit d per ip quota 10/1d@utc\n"
			   "override l key \"\\xff\\x01z\" 99 burst 300 until 2030-12-31T23:59:59.000000001Z\n";
	char text[2048];
	cr_assert_eq(sluice_policy_print(p, text, sizeof(text), NULL), 0);
	cr_assert_str_eq(text, want);
	struct sluice_policy *q = load_text(text);
	cr_assert(sluice_policy_equal(p, q));
	sluice_policy_destroy(q);
	sluice_policy_destroy(p);
}

Test(policy_print, equality_notices_each_difference)
{
	static const char *const variants[] = {
		HEAD "limit a per ip rate 10/1s\n",
		HEAD "limit a per ip rate 11/1s\n",
		HEAD "limit a per ip rate 10/2s\n",
		HEAD "limit a per ip rate 10/1s burst 11\n",
		HEAD "limit a per ip sliding 10/1s\n",
		HEAD "limit a per ip rate 10/1s warn 50%\n",
		HEAD "limit a per ip rate 10/1s tiered\n",
		HEAD "limit a per ip+class rate 10/1s\n",
		HEAD "limit a per ip on default rate 10/1s\n",
		HEAD "limit b per ip rate 10/1s\n",
		HEAD "headers draft-7\nlimit a per ip rate 10/1s\n",
		HEAD "body json-data-error\nlimit a per ip rate 10/1s\n",
		HEAD "fail closed\nlimit a per ip rate 10/1s\n",
		HEAD "class x match GET /x\nlimit a per ip rate 10/1s\n",
		HEAD "class x match * /x\nlimit a per ip rate 10/1s\n",
		HEAD "tier t x2\nlimit a per ip rate 10/1s\n",
		HEAD "scope k\nlimit a per ip rate 10/1s\n",
		HEAD "limit a per ip rate 10/1s\noverride a ip \"x\" 5 until 2030-01-01T00:00:00Z\n",
		HEAD "limit a per ip rate 10/1s\noverride a ip \"x\" 5 until 2030-01-01T00:00:01Z\n",
		"policy \"u\"\nscope ip\nlimit a per ip rate 10/1s\n",
	};
	enum { N = sizeof(variants) / sizeof(variants[0]) };
	struct sluice_policy *p[N];
	for (int i = 0; i < N; i++)
		p[i] = load_text(variants[i]);
	for (int i = 0; i < N; i++)
		for (int j = 0; j < N; j++)
			cr_assert_eq(sluice_policy_equal(p[i], p[j]), i == j, "%d vs %d", i, j);
	/* the same policy written differently */
	struct sluice_policy *q = load_text("policy \"t\"   # x\n\nscope  ip\nlimit a per ip rate 10/1000ms burst 10\n");
	cr_assert(sluice_policy_equal(p[0], q));
	cr_assert(sluice_policy_equal(NULL, NULL));
	cr_assert_not(sluice_policy_equal(p[0], NULL));
	sluice_policy_destroy(q);
	for (int i = 0; i < N; i++)
		sluice_policy_destroy(p[i]);
}

static size_t first_alloc_size(const char *text, size_t len, int *rc)
{
	struct counting_alloc a = {0, 2, 0, 0}; /* fail the policy block: only the scratch is made */
	struct sluice_policy_options o = {sizeof(o), count_alloc, count_free, &a, 0, NULL};
	struct sluice_policy *p = NULL;
	*rc = sluice_policy_parse(text, len, &o, &p, NULL);
	cr_assert_eq(a.live, 0);
	return a.last_size;
}

Test(policy_alloc, scratch_is_sized_by_the_text)
{
	int rc;
	/* exactly as many lines and '/' as the routes and trie nodes need */
	const char *tight = "policy \"t\"\nscope ip\nclass a match GET /a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p\n"
			    "limit l per ip concurrency 1";
	size_t small = first_alloc_size(tight, strlen(tight), &rc);
	cr_assert_eq(rc, SLUICE_ENOMEM); /* the parse itself went through */
	struct sluice_policy *p = load_text(tight);
	cr_assert_eq(match(p, "GET", "/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p"), 1);
	sluice_policy_destroy(p);
	cr_assert_lt(small, 16 * 1024, "scratch for a 4-line policy: %zu bytes", small);

	/* the largest scratch: every ceiling reached */
	size_t cap = 1 << 20, n = 0;
	char *text = malloc(cap);
	for (int i = 0; i < 300; i++)
		n += (size_t)snprintf(text + n, cap - n, "# /a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q\n");
	n += (size_t)snprintf(text + n, cap - n, "x");
	size_t big = first_alloc_size(text, n, &rc);
	cr_assert_eq(rc, SLUICE_ESYNTAX);
	cr_assert_lt(big, 400 * 1024, "largest scratch: %zu bytes", big);
	cr_assert_gt(big, small);
	free(text);
}
