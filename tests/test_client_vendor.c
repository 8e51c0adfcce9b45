/*
 * test_client_vendor.c - the header sets that public APIs publish, each
 * parsed and planned to the wait that the API's own documentation
 * prescribes (include/sluice/client.h, docs/http.md "Families").
 *
 * Each test names the page its example comes from. Where the page gives
 * the field names and formats but no values, the values are ours and the
 * comment says so.
 */
#include "client_test_util.h"

#include <stdio.h>
#include <stdlib.h>

#include "client/client_internal.h" /* the built-in table, for the stack test */

/* 2026-11-23T00:00:00Z: a client clock years after the examples' dates */
#define NOW_2026 (1795392000ull * SEC)

/* docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api:
 * "Date: Mon, 01 Jul 2013 17:27:06 GMT" with x-ratelimit-reset 1372700873,
 * 20 min 47 s later. A client whose clock is years off still waits 1247 s,
 * measured from the server's Date. */
static const char *const github_200[] = {
	"Date: Mon, 01 Jul 2013 17:27:06 GMT", "x-ratelimit-limit: 60", "x-ratelimit-remaining: 56",
	"x-ratelimit-used: 4", "x-ratelimit-reset: 1372700873", "x-ratelimit-resource: core", NULL};

Test(vendor, github_reset_anchored_on_date_when_the_clock_is_skewed)
{
	struct sluice_client_limits l = parse_lines(github_200, NOW_2026);
	cr_assert_eq(l.source, SLUICE_CLIENT_X);
	cr_assert(l.has_date && l.clock_anchored);
	cr_assert_eq(l.date_unix_s, 1372699626);
	cr_assert_eq(l.limit, 60);
	cr_assert_eq(l.remaining, 56);
	cr_assert_eq(l.reset_ns, 1247 * SEC);
	cr_assert_str_eq(l.bucket, "core"); /* x-ratelimit-resource names the bucket */
}

Test(vendor, github_reset_on_the_local_clock_when_it_agrees_with_date)
{
	/* half a second after the Date: the local clock is within the Date's
	 * resolution, and is the finer of the two */
	struct sluice_client_limits l = parse_lines(github_200, 1372699626ull * SEC + 500 * MS);
	cr_assert_not(l.clock_anchored);
	cr_assert_eq(l.reset_ns, 1246 * SEC + 500 * MS);
	/* the caller may switch the anchor off */
	struct hdrs h = {.n = 0};
	add(&h, "Date", "Mon, 01 Jul 2013 17:27:06 GMT");
	add(&h, "x-ratelimit-reset", "1372700873");
	struct sluice_client_parse_opts o = {.size = sizeof(o), .flags = SLUICE_CLIENT_NO_DATE_ANCHOR};
	cr_assert_eq(sluice_client_parse_ex(h.f, h.n, NOW_2026, &o, &l), 0);
	cr_assert_eq(l.reset_ns, 0);
	cr_assert(l.reset_past);
}

/* Same page: "If you exceed your primary rate limit, you will receive a 403
 * or 429 response, and the x-ratelimit-remaining header will be 0. You
 * should not retry your request until after the time specified by the
 * x-ratelimit-reset header." */
Test(vendor, github_403_primary_limit_waits_for_the_reset)
{
	static const char *const lines[] = {"Date: Mon, 01 Jul 2013 17:27:06 GMT", "x-ratelimit-limit: 60",
					    "x-ratelimit-remaining: 0", "x-ratelimit-used: 60",
					    "x-ratelimit-reset: 1372700873", NULL};
	struct sluice_client_limits l = parse_lines(lines, NOW_2026);
	struct sluice_backoff_plan p = plan_for(403, false, &l);
	cr_assert_eq(p.verdict, SLUICE_BACKOFF_RETRY);
	cr_assert_eq(p.why, SLUICE_BACKOFF_WHY_RESET);
	cr_assert_eq(p.delay_ns, 1247 * SEC);
}

/* Same page, secondary limits: "If the retry-after response header is
 * present, you should not retry your request until after that many
 * seconds has elapsed." (a 403 with retry-after: 60; the value is ours) */
Test(vendor, github_403_secondary_limit_honours_retry_after)
{
	static const char *const lines[] = {"retry-after: 60", NULL};
	struct sluice_client_limits l = parse_lines(lines, NOW_2026);
	struct sluice_backoff_plan p = plan_for(403, false, &l);
	cr_assert_eq(p.verdict, SLUICE_BACKOFF_RETRY);
	cr_assert_eq(p.why, SLUICE_BACKOFF_WHY_RETRY_AFTER);
	cr_assert_eq(p.delay_ns, 60 * SEC);
	/* a 403 without rate-limit fields is a permission error: stop */
	struct sluice_client_limits none;
	memset(&none, 0, sizeof(none));
	cr_assert_eq(plan_for(403, true, &none).why, SLUICE_BACKOFF_WHY_NOT_RETRYABLE);
	cr_assert_eq(plan_for(404, true, &l).why, SLUICE_BACKOFF_WHY_RETRY_AFTER);
}

/* docs.discord.com/developers/topics/rate-limits, "Header Format": the
 * relative X-RateLimit-Reset-After wins over the absolute Reset, so the
 * client clock does not matter; the bucket names the shared limit. */
Test(vendor, discord_reset_after_and_bucket)
{
	static const char *const lines[] = {"X-RateLimit-Limit: 5", "X-RateLimit-Remaining: 0",
					    "X-RateLimit-Reset: 1470173023", "X-RateLimit-Reset-After: 1",
					    "X-RateLimit-Bucket: abcd1234", NULL};
	struct sluice_client_limits l = parse_lines(lines, NOW_2026);
	cr_assert_eq(l.source, SLUICE_CLIENT_X);
	cr_assert_eq(l.reset_ns, 1 * SEC);
	cr_assert_str_eq(l.bucket, "abcd1234");
	cr_assert_eq(l.bucket_len, 8);
	l = parse_lines(lines, 1470173023ull * SEC - 30 * SEC);
	cr_assert_eq(l.reset_ns, 1 * SEC);
}

/* Same page, "Exceeding A Rate Limit": a 429 with Retry-After: 65 and
 * X-RateLimit-Reset-After: 64.57 (fractional seconds). */
Test(vendor, discord_429_fractional_reset_after)
{
	static const char *const lines[] = {"Retry-After: 65", "X-RateLimit-Limit: 10",
					    "X-RateLimit-Remaining: 0", "X-RateLimit-Reset: 1470173023.123",
					    "X-RateLimit-Reset-After: 64.57", "X-RateLimit-Bucket: abcd1234",
					    "X-RateLimit-Scope: user", NULL};
	struct sluice_client_limits l = parse_lines(lines, NOW_2026);
	cr_assert_eq(l.reset_ns, 64 * SEC + 570 * MS);
	cr_assert_eq(plan_for(429, false, &l).delay_ns, 65 * SEC);
}

/* shopify.dev/docs/api/admin-rest/usage/rate-limits: "X-Shopify-Shop-Api-
 * Call-Limit: 32/40" (32 of a 40-request bucket used), and on 429
 * "Retry-After: 2.0". */
Test(vendor, shopify_call_limit_and_fractional_retry_after)
{
	static const char *const lines[] = {"X-Shopify-Shop-Api-Call-Limit: 32/40", NULL};
	struct sluice_client_limits l = parse_lines(lines, NOW_2026);
	cr_assert_eq(l.source, SLUICE_CLIENT_VENDOR);
	const struct sluice_client_policy *p = policy_named(&l, "api-calls");
	cr_assert_not_null(p);
	cr_assert_eq(p->quota, 40);
	cr_assert_eq(p->remaining, 8);
	cr_assert_eq(l.limit, 40);
	cr_assert_eq(l.remaining, 8);
	static const char *const refused[] = {"X-Shopify-Shop-Api-Call-Limit: 40/40", "Retry-After: 2.0", NULL};
	l = parse_lines(refused, NOW_2026);
	cr_assert_eq(l.remaining, 0);
	cr_assert_eq(l.retry_after_ns, 2 * SEC);
	cr_assert_eq(plan_for(429, false, &l).delay_ns, 2 * SEC);
	cr_assert_eq(parse_lines((const char *const[]){"X-Shopify-Shop-Api-Call-Limit: 32/", NULL}, 0).ignored,
		     SLUICE_CLIENT_VENDOR);
}

/* platform.openai.com/docs/guides/rate-limits, "Rate limits in headers":
 * the example response, two dimensions with Go-duration resets. The
 * requests dimension has the least share left (59/60 < 149984/150000). */
Test(vendor, openai_requests_and_tokens)
{
	static const char *const lines[] = {
		"x-ratelimit-limit-requests: 60",       "x-ratelimit-limit-tokens: 150000",
		"x-ratelimit-remaining-requests: 59",   "x-ratelimit-remaining-tokens: 149984",
		"x-ratelimit-reset-requests: 1s",       "x-ratelimit-reset-tokens: 6m0s", NULL};
	struct sluice_client_limits l = parse_lines(lines, NOW_2026);
	cr_assert_eq(l.source, SLUICE_CLIENT_VENDOR);
	cr_assert_eq(l.npolicies, 2);
	const struct sluice_client_policy *rq = policy_named(&l, "requests"), *tk = policy_named(&l, "tokens");
	cr_assert(rq != NULL && tk != NULL);
	cr_assert_eq(rq->reset_ns, 1 * SEC);
	cr_assert_eq(tk->reset_ns, 360 * SEC);
	cr_assert_str_eq(tk->unit, "tokens");
	cr_assert_eq(tk->remaining, 149984);
	cr_assert_eq(l.limit, 60);
	cr_assert_eq(l.remaining, 59);
	cr_assert_eq(l.reset_ns, 1 * SEC);
}

/* The same family when the tokens run out: the exhausted dimension
 * governs, and a 429 without Retry-After waits for its reset ("20ms" as
 * the issue of this family quotes it). */
Test(vendor, openai_exhausted_tokens_govern)
{
	static const char *const lines[] = {
		"x-ratelimit-limit-requests: 60",     "x-ratelimit-remaining-requests: 12",
		"x-ratelimit-reset-requests: 20ms",   "x-ratelimit-limit-tokens: 150000",
		"x-ratelimit-remaining-tokens: 0",    "x-ratelimit-reset-tokens: 6m0s", NULL};
	struct sluice_client_limits l = parse_lines(lines, NOW_2026);
	cr_assert_str_eq(l.policies[l.governing].name, "tokens");
	cr_assert_eq(l.reset_ns, 360 * SEC);
	cr_assert_eq(policy_named(&l, "requests")->reset_ns, 20 * MS);
	struct sluice_backoff_plan p = plan_for(429, true, &l);
	cr_assert_eq(p.why, SLUICE_BACKOFF_WHY_RESET);
	cr_assert_eq(p.delay_ns, 360 * SEC);
	/* a malformed duration is ignored, and said to be */
	l = parse_lines((const char *const[]){"x-ratelimit-remaining-tokens: 5", "x-ratelimit-reset-tokens: 6m0",
					      NULL}, 0);
	cr_assert_eq(l.ignored, SLUICE_CLIENT_VENDOR);
	cr_assert_not(policy_named(&l, "tokens")->has_reset);
}

/* docs.anthropic.com/en/api/rate-limits, "Response headers": the names and
 * the RFC 3339 reset format are the page's; the values are ours. */
Test(vendor, anthropic_rfc3339_resets)
{
	static const char *const lines[] = {
		"anthropic-ratelimit-requests-limit: 50",
		"anthropic-ratelimit-requests-remaining: 0",
		"anthropic-ratelimit-requests-reset: 2025-10-25T12:00:00Z",
		"anthropic-ratelimit-input-tokens-limit: 40000",
		"anthropic-ratelimit-input-tokens-remaining: 39000",
		"anthropic-ratelimit-input-tokens-reset: 2025-10-25T11:59:31Z",
		"anthropic-ratelimit-output-tokens-limit: 8000",
		"anthropic-ratelimit-output-tokens-remaining: 8000",
		"anthropic-ratelimit-output-tokens-reset: 2025-10-25T11:59:30Z",
		"anthropic-ratelimit-tokens-limit: 48000",
		"anthropic-ratelimit-tokens-remaining: 47000",
		"anthropic-ratelimit-tokens-reset: 2025-10-25T11:59:31Z",
		"retry-after: 30", NULL};
	uint64_t now = 1761393570ull * SEC; /* 11:59:30Z */
	struct sluice_client_limits l = parse_lines(lines, now);
	cr_assert_eq(l.npolicies, 4);
	cr_assert_str_eq(l.policies[l.governing].name, "requests");
	cr_assert_eq(l.reset_ns, 30 * SEC);
	cr_assert_eq(policy_named(&l, "input-tokens")->reset_ns, 1 * SEC);
	cr_assert_eq(policy_named(&l, "output-tokens")->reset_ns, 0);
	cr_assert_eq(plan_for(429, false, &l).delay_ns, 30 * SEC);
}

/* developer.atlassian.com/cloud/jira/platform/rate-limiting: "X-RateLimit-
 * Reset ... the timestamp (in ISO 8601 format) when the rate limit will
 * reset ... in the format: yyyy-MM-ddTHH:mmZ" (no seconds), "calculated
 * as the request timestamp plus the Retry-After period". Values ours. */
Test(vendor, atlassian_iso8601_minutes)
{
	static const char *const lines[] = {"Retry-After: 60", "X-RateLimit-Limit: 100",
					    "X-RateLimit-Remaining: 0", "X-RateLimit-Reset: 2026-11-23T00:01Z",
					    NULL};
	struct sluice_client_limits l = parse_lines(lines, NOW_2026);
	cr_assert_eq(l.reset_ns, 60 * SEC);
	cr_assert_eq(l.retry_after_ns, 60 * SEC);
	l = parse_lines((const char *const[]){"X-RateLimit-Reset: 2026-11-23T01:01:30+01:00", NULL}, NOW_2026);
	cr_assert_eq(l.reset_ns, 90 * SEC);
}

/* linear.app/developers/rate-limiting: X-RateLimit-Requests-Reset in UTC
 * epoch milliseconds; RapidAPI's X-RateLimit-Requests-Reset in seconds
 * until the reset (as the issue of this family states it; we found no
 * page to cite). The size rule tells the two apart. Values ours. */
Test(vendor, linear_epoch_ms_and_rapidapi_delta)
{
	static const char *const linear[] = {"X-RateLimit-Requests-Limit: 1500",
					     "X-RateLimit-Requests-Remaining: 0",
					     "X-RateLimit-Requests-Reset: 1795392045250", NULL};
	struct sluice_client_limits l = parse_lines(linear, NOW_2026);
	cr_assert_eq(l.limit, 1500);
	cr_assert_eq(l.reset_ns, 45 * SEC + 250 * MS);
	static const char *const rapid[] = {"X-RateLimit-Requests-Limit: 500",
					    "X-RateLimit-Requests-Remaining: 499",
					    "X-RateLimit-Requests-Reset: 2570", NULL};
	l = parse_lines(rapid, NOW_2026);
	cr_assert_eq(l.remaining, 499);
	cr_assert_eq(l.reset_ns, 2570 * SEC);
}

/* developers.hubspot.com/docs/api/usage-details (and the changelog of
 * 2018-11-06): a rolling 10 s interval with no reset field, and daily and
 * per-second budgets. Values ours. */
Test(vendor, hubspot_interval_window)
{
	static const char *const lines[] = {
		"X-HubSpot-RateLimit-Daily: 250000", "X-HubSpot-RateLimit-Daily-Remaining: 249990",
		"X-HubSpot-RateLimit-Interval-Milliseconds: 10000", "X-HubSpot-RateLimit-Max: 100",
		"X-HubSpot-RateLimit-Remaining: 0", "X-HubSpot-RateLimit-Secondly: 10",
		"X-HubSpot-RateLimit-Secondly-Remaining: 9", NULL};
	struct sluice_client_limits l = parse_lines(lines, NOW_2026);
	const struct sluice_client_policy *iv = policy_named(&l, "interval");
	cr_assert(iv->has_window && !iv->has_reset);
	cr_assert_eq(iv->window_s, 10);
	cr_assert_str_eq(l.policies[l.governing].name, "interval");
	cr_assert_eq(l.remaining, 0);
	cr_assert_not(l.has_reset);
	/* no reset and no Retry-After: the planner backs off, never 0 */
	struct sluice_backoff_plan p = plan_for(429, true, &l);
	cr_assert_eq(p.why, SLUICE_BACKOFF_WHY_EXPONENTIAL);
	cr_assert_eq(p.delay_ns, 1 * SEC);
}

/* developer.whoop.com/docs/developing/rate-limiting: "X-RateLimit-Limit =
 * "100, 100;window=60, 10000;window=86400"", the first member the limit
 * closest to being hit, then each policy with its window. */
Test(vendor, policy_list_under_x_ratelimit_limit)
{
	static const char *const lines[] = {"X-RateLimit-Limit: 100, 100;window=60, 10000;window=86400",
					    "X-RateLimit-Remaining: 98", "X-RateLimit-Reset: 3", NULL};
	struct sluice_client_limits l = parse_lines(lines, NOW_2026);
	cr_assert_eq(l.source, SLUICE_CLIENT_X);
	cr_assert_eq(l.limit, 100);
	cr_assert_eq(l.remaining, 98);
	cr_assert_eq(l.reset_ns, 3 * SEC);
	cr_assert_eq(l.npolicies, 2);
	cr_assert_eq(l.policies[1].quota, 10000);
	cr_assert_eq(l.policies[1].window_s, 86400);
	cr_assert_eq(parse_lines((const char *const[]){"X-RateLimit-Limit: 100, 100", NULL}, 0).ignored,
		     SLUICE_CLIENT_X);
}

/* developers.cloudflare.com/fundamentals/api/reference/limits: "Ratelimit:
 * "default";r=50;t=30", "Ratelimit-Policy: "burst";q=100;w=60", and
 * retry-after "rounded up" on 429. */
Test(vendor, cloudflare_draft_fields)
{
	static const char *const lines[] = {"Ratelimit: \"default\";r=50;t=30",
					    "Ratelimit-Policy: \"burst\";q=100;w=60", NULL};
	struct sluice_client_limits l = parse_lines(lines, NOW_2026);
	cr_assert_eq(l.source, SLUICE_CLIENT_DRAFT08);
	cr_assert_eq(l.remaining, 50);
	cr_assert_eq(l.reset_ns, 30 * SEC);
	cr_assert_not(l.has_limit); /* "default" has no policy here */
}

/* express-rate-limit with standardHeaders: 'draft-8' (its README,
 * "standardHeaders"): pk only on RateLimit-Policy. The item must still
 * join its policy by name: one policy, with q and r. Values ours. */
Test(vendor, express_rate_limit_draft8_pk_only_on_policy)
{
	static const char *const lines[] = {
		"RateLimit-Policy: \"100-in-15min\"; q=100; w=900; pk=:ZDViMTJiNzI3YjU3:",
		"RateLimit: \"100-in-15min\"; r=0; t=840", NULL};
	struct sluice_client_limits l = parse_lines(lines, NOW_2026);
	cr_assert_eq(l.npolicies, 1);
	cr_assert(l.has_limit);
	cr_assert_eq(l.limit, 100);
	cr_assert_eq(l.remaining, 0);
	cr_assert_eq(l.policies[0].remaining, 0);
	cr_assert_eq(l.policies[0].pk_len, 12);
	cr_assert_eq(plan_for(429, false, &l).delay_ns, 840 * SEC);
}

/* Stacked proxies repeat Retry-After: identical lines are one value (the
 * joined "30, 30" used to be refused, and the client came back after 1 s). */
Test(vendor, duplicate_retry_after_lines)
{
	static const char *const same[] = {"Retry-After: 30", "Retry-After: 30", NULL};
	struct sluice_client_limits l = parse_lines(same, 0);
	cr_assert(l.has_retry_after);
	cr_assert_eq(l.retry_after_ns, 30 * SEC);
	cr_assert_eq(plan_for(429, false, &l).delay_ns, 30 * SEC);
	static const char *const dates[] = {"Retry-After: Sun, 06 Nov 1994 08:49:47 GMT",
					    "Retry-After: 5, Sun, 06 Nov 1994 08:49:57 GMT", NULL};
	l = parse_lines(dates, 784111777ull * SEC);
	cr_assert_eq(l.retry_after_ns, 20 * SEC);
	static const char *const bad[] = {"Retry-After: 30", "Retry-After: soon", NULL};
	l = parse_lines(bad, 0);
	cr_assert_not(l.has_retry_after);
	cr_assert_eq(l.ignored, SLUICE_CLIENT_RETRY_AFTER);
}

/* A caller teaches the parser one more vendor without patching sluice. */
Test(vendor, caller_table)
{
	static const struct sluice_client_rule rules[] = {
		{"Acme-Quota-Left", "calls", NULL, SLUICE_CLIENT_ROLE_REMAINING, SLUICE_CLIENT_FMT_COUNT},
		{"acme-quota-max", "calls", NULL, SLUICE_CLIENT_ROLE_LIMIT, SLUICE_CLIENT_FMT_COUNT},
		{"acme-quota-renews", "calls", NULL, SLUICE_CLIENT_ROLE_RESET, SLUICE_CLIENT_FMT_UNIX_MS},
		{"acme-cpu-left-ms", "cpu", "ms", SLUICE_CLIENT_ROLE_REMAINING, SLUICE_CLIENT_FMT_COUNT},
		{"acme-cpu-window", "cpu", "ms", SLUICE_CLIENT_ROLE_WINDOW, SLUICE_CLIENT_FMT_DURATION},
		{"acme-wait", "", NULL, SLUICE_CLIENT_ROLE_RETRY_AFTER, SLUICE_CLIENT_FMT_MILLISECONDS},
		{"acme-shard", "", NULL, SLUICE_CLIENT_ROLE_BUCKET, SLUICE_CLIENT_FMT_TEXT},
	};
	struct hdrs h = {.n = 0};
	add(&h, "acme-quota-left", "0");
	add(&h, "ACME-QUOTA-MAX", "10");
	add(&h, "acme-quota-renews", "1795392012500");
	add(&h, "acme-cpu-left-ms", "900");
	add(&h, "acme-cpu-window", "1m");
	add(&h, "acme-wait", "1500");
	add(&h, "acme-shard", " eu-3 ");
	add(&h, "X-RateLimit-Remaining", "7"); /* a built-in family: not the source */
	struct sluice_client_parse_opts o = {.size = sizeof(o), .rules = rules, .nrules = 7};
	struct sluice_client_limits l;
	cr_assert_eq(sluice_client_parse_ex(h.f, h.n, NOW_2026, &o, &l), 0);
	cr_assert_eq(l.source, SLUICE_CLIENT_CALLER);
	cr_assert(l.seen & SLUICE_CLIENT_X);
	cr_assert_str_eq(l.policies[l.governing].name, "calls");
	cr_assert_eq(l.limit, 10);
	cr_assert_eq(l.remaining, 0);
	cr_assert_eq(l.reset_ns, 12 * SEC + 500 * MS);
	cr_assert_eq(policy_named(&l, "cpu")->window_s, 60);
	cr_assert_str_eq(policy_named(&l, "cpu")->unit, "ms");
	cr_assert_eq(l.retry_after_ns, 1500 * MS);
	cr_assert_str_eq(l.bucket, "eu-3");
	/* a malformed table is refused */
	struct sluice_client_rule bad = {"x", "", NULL, 0, SLUICE_CLIENT_FMT_COUNT};
	o.rules = &bad;
	o.nrules = 1;
	cr_assert_eq(sluice_client_parse_ex(h.f, h.n, 0, &o, &l), SLUICE_EINVAL);
	bad.role = SLUICE_CLIENT_ROLE_LIMIT;
	bad.name = NULL;
	cr_assert_eq(sluice_client_parse_ex(h.f, h.n, 0, &o, &l), SLUICE_EINVAL);
	o.size = 4;
	cr_assert_eq(sluice_client_parse_ex(h.f, h.n, 0, &o, &l), SLUICE_EINVAL);
}

/* Hostile values: ignored, reported, never a wrong wait. */
Test(vendor, hostile_values_are_ignored)
{
	static const char *const lines[] = {"x-ratelimit-limit-tokens: -1", "x-ratelimit-remaining-tokens: -1",
					    "x-ratelimit-reset-tokens: 0", "Date: yesterday",
					    "X-RateLimit-Reset: 2026-02-30T00:00:00Z", NULL};
	struct sluice_client_limits l = parse_lines(lines, NOW_2026);
	cr_assert_eq(l.ignored, SLUICE_CLIENT_VENDOR | SLUICE_CLIENT_DATE | SLUICE_CLIENT_X);
	cr_assert_not(l.has_remaining);
	cr_assert_not(l.has_date);
	/* a bucket id is printable text; a control byte spoils it */
	struct hdrs h = {.n = 0};
	add(&h, "X-RateLimit-Bucket", "ab");
	h.f[0].value_len = 3; /* "ab\0" */
	cr_assert_eq(sluice_client_parse(h.f, h.n, 0, &l), 0);
	cr_assert_eq(l.bucket_len, 0);
	cr_assert_eq(l.ignored, SLUICE_CLIENT_X);
	l = parse_lines(lines, NOW_2026);
	/* Azure's placeholder "reset 0" alone is a reset that is now */
	const struct sluice_client_policy *tk = policy_named(&l, "tokens");
	cr_assert(tk != NULL && tk->has_reset && tk->reset_ns == 0 && !tk->has_remaining);
}

/* A reset already in the past must not make a tight loop. */
Test(vendor, past_reset_backs_off)
{
	static const char *const lines[] = {"X-RateLimit-Limit: 60", "X-RateLimit-Remaining: 0",
					    "X-RateLimit-Reset: 1795391990", NULL};
	struct sluice_client_limits l = parse_lines(lines, NOW_2026);
	cr_assert(l.reset_past);
	cr_assert_eq(l.reset_ns, 0);
	struct sluice_backoff_plan p = plan_for(429, true, &l);
	cr_assert_eq(p.why, SLUICE_BACKOFF_WHY_EXPONENTIAL);
	cr_assert_geq(p.delay_ns, 1 * SEC);
}

/* The parse's stack, measured by painting: a frame the size of the
 * bound is filled with a pattern, the parse runs in the same place, and
 * the bytes it changed are counted. The worst input: every built-in table
 * row, a RateLimit field of many lines combined into the 4 KiB buffer,
 * dates, durations and RFC 3339 values through the AUTO chain. */
#define STACK_PAINT (64 * 1024)

static __attribute__((noinline)) void stack_paint(void)
{
	volatile unsigned char area[STACK_PAINT];
	for (size_t i = 0; i < sizeof(area); i++)
		area[i] = 0xa5;
}

static __attribute__((noinline)) size_t stack_used(void)
{
	unsigned char area[STACK_PAINT];
	const volatile unsigned char *p = area;
	size_t i = 0;
	__asm__ volatile("" : "+r"(p)); /* the bytes are the paint, not uninitialized to the reader */
	while (i < sizeof(area) && p[i] == 0xa5)
		i++;
	return sizeof(area) - i;
}

static __attribute__((noinline)) int stack_parse(const struct sluice_http_field *f, size_t n,
						  struct sluice_client_limits *l)
{
	return sluice_client_parse(f, n, 1795392000ull * SEC, l);
}

Test(vendor, parse_stack_is_bounded)
{
	static struct sluice_http_field f[64];
	static char items[16][256];
	size_t n = 0;
	for (int i = 0; i < 16; i++) {
		snprintf(items[i], sizeof(items[i]), "\"p%d\";r=%d;t=%d;pk=:cHsdsRa894==:;x=1;y=2;z=\"%0180d\"", i,
			 i, i, 0);
		f[n++] = (struct sluice_http_field){"RateLimit", 9, items[i], strlen(items[i])};
	}
	static const char *const lines[] = {
		"Date", "Sun, 06 Nov 1994 08:49:37 GMT",
		"X-RateLimit-Reset", "Sunday, 06-Nov-94 08:49:37 GMT",
		"x-ratelimit-requests-reset", "2026-11-23T00:00:00.123456789+05:30",
		"x-ratelimit-complexity-reset", "1h2m3.5s",
		"x-ratelimit-reset-tokens", "6m0s",
		"anthropic-ratelimit-tokens-reset", "2026-11-23T00:00:00Z",
		"Retry-After", "1, 2, Sun, 06 Nov 1994 08:49:37 GMT",
		"X-RateLimit-Limit", "100, 100;window=60, 10000;window=86400",
		"RateLimit-Policy", "\"p1\";q=10;w=1, \"p2\";q=20;w=2",
	};
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i += 2)
		f[n++] = (struct sluice_http_field){lines[i], strlen(lines[i]), lines[i + 1], strlen(lines[i + 1])};
	for (size_t k = 0; k < sluice__client_vendor_nrules && n < 64; k++) {
		const char *name = sluice__client_vendor_rules[k].name;
		f[n++] = (struct sluice_http_field){name, strlen(name), "1795392045250", 13};
	}
	struct sluice_client_limits *l = malloc(sizeof(*l)); /* the result is not the parse's stack */
	stack_paint();
	int rc = stack_parse(f, n, l);
	size_t used = stack_used();
	cr_assert_eq(rc, 0);
	cr_assert(l->seen & SLUICE_CLIENT_VENDOR);
	free(l);
	cr_log_info("sluice_client_parse: %zu bytes of stack\n", used);
	printf("sluice_client_parse: %zu bytes of stack\n", used);
#if defined(__OPTIMIZE__) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
	/* the bound is for optimized builds; -O0 and sanitizers only report */
	cr_assert_lt(used, 14 * 1024, "%zu bytes", used);
#endif
}
