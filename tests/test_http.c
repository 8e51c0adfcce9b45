/*
 * test_http.c - server-side rendering (include/sluice/http.h): each seed's
 * example output pinned byte for byte, the draft-11 list with several
 * policies, rounding, clamping, degraded decisions and truncation.
 */
#include <criterion/criterion.h>
#include <sluice.h>

#define SEC 1000000000ull
#define MS 1000000ull

static struct sluice_decision deny(uint64_t limit, uint64_t reset_ns, uint64_t retry_ns)
{
	struct sluice_decision d = {.allowed = false, .reason = SLUICE_REASON_RATE, .limit = limit,
				    .remaining = 0, .reset_ns = reset_ns, .retry_after_ns = retry_ns};
	return d;
}

static struct sluice_decision allow(uint64_t limit, uint64_t remaining, uint64_t reset_ns)
{
	struct sluice_decision d = {.allowed = true, .limit = limit, .remaining = remaining,
				    .reset_ns = reset_ns};
	return d;
}

static const char *render(unsigned fam, const struct sluice_http_limit *l, size_t n, uint64_t now)
{
	static char buf[1024];
	size_t size;
	int rc = sluice_http_render_headers(fam, l, n, now, buf, sizeof(buf), &size);
	cr_assert_eq(rc, 0, "rc %d", rc);
	cr_assert_eq(size, strlen(buf) + 1);
	return buf;
}

Test(http, seed000_draft06_separate_fields_on_429)
{
	/* seed 000: 100 per minute, exhausted, window resets in 60 s */
	struct sluice_http_limit l = {.decision = deny(100, 60 * SEC, 60 * SEC)};
	cr_assert_str_eq(render(SLUICE_HTTP_DRAFT06 | SLUICE_HTTP_RETRY_AFTER, &l, 1, 0),
			 "Retry-After: 60\r\n"
			 "RateLimit-Limit: 100\r\n"
			 "RateLimit-Remaining: 0\r\n"
			 "RateLimit-Reset: 60\r\n");
	/* with the window known, the draft-06 policy field follows */
	l.window_ns = 60 * SEC;
	cr_assert_str_eq(render(SLUICE_HTTP_DRAFT06 | SLUICE_HTTP_RETRY_AFTER, &l, 1, 0),
			 "Retry-After: 60\r\n"
			 "RateLimit-Limit: 100\r\n"
			 "RateLimit-Remaining: 0\r\n"
			 "RateLimit-Reset: 60\r\n"
			 "RateLimit-Policy: 100;w=60\r\n");
}

Test(http, seed000_envelope_body)
{
	struct sluice_decision d = deny(100, 60 * SEC, 60 * SEC);
	char buf[256];
	size_t size;
	cr_assert_eq(sluice_http_render_body(SLUICE_HTTP_BODY_JSON_DATA_ERROR, &d, buf, sizeof(buf), &size), 0);
	cr_assert_str_eq(buf, "{\"data\":null,\"error\":{\"code\":\"RATE_LIMITED\",\"message\":\"Too many requests\"}}");
	cr_assert_eq(size, strlen(buf) + 1);
	cr_assert_str_eq(sluice_http_body_content_type(SLUICE_HTTP_BODY_JSON_DATA_ERROR), "application/json");
}

Test(http, seed002_retry_after_and_bodies)
{
	struct sluice_decision d = deny(120, 32 * SEC, 31 * SEC + 1);
	struct sluice_http_limit l = {.decision = d};
	char buf[256];

	cr_assert_str_eq(render(SLUICE_HTTP_RETRY_AFTER, &l, 1, 0), "Retry-After: 32\r\n");
	cr_assert_eq(sluice_http_render_body(SLUICE_HTTP_BODY_JSON_ERROR, &d, buf, sizeof(buf), NULL), 0);
	cr_assert_str_eq(buf, "{\"error\":{\"code\":\"rate_limited\",\"message\":\"Too many requests. Retry "
			      "after 32 seconds.\",\"retryAfterSec\":32}}");
	d.reason = SLUICE_REASON_CONCURRENCY;
	d.retry_after_ns = 0; /* a slot frees at an unknown time: never "0" */
	cr_assert_eq(sluice_http_render_body(SLUICE_HTTP_BODY_JSON_ERROR, &d, buf, sizeof(buf), NULL), 0);
	cr_assert_str_eq(buf, "{\"error\":{\"code\":\"concurrent_limit\",\"retryAfterSec\":1}}");
}

Test(http, seed002_x_ratelimit_delta_on_every_response)
{
	/* per-minute 120 and per-day 50,000: the header shows the closer one */
	struct sluice_http_limit l[2] = {
		{.decision = allow(120, 117, 41 * SEC + 300 * MS), .window_ns = 60 * SEC},
		{.decision = allow(50000, 49000, 3600 * SEC), .window_ns = 86400 * SEC},
	};
	cr_assert_str_eq(render(SLUICE_HTTP_X_DELTA | SLUICE_HTTP_RETRY_AFTER, l, 2, 0),
			 "X-RateLimit-Limit: 120\r\n"
			 "X-RateLimit-Remaining: 117\r\n"
			 "X-RateLimit-Reset: 42\r\n");
}

Test(http, seed003_x_ratelimit_unix_seconds_and_empty_body)
{
	/* X-RateLimit-Reset 1893452400 (2030-01-01T00:00:00Z) */
	uint64_t now = 1893452400ull * SEC - 42 * SEC - 500 * MS;
	struct sluice_http_limit l = {.decision = allow(600, 587, 42 * SEC + 500 * MS)};
	cr_assert_str_eq(render(SLUICE_HTTP_X_UNIX_S, &l, 1, now),
			 "X-RateLimit-Limit: 600\r\n"
			 "X-RateLimit-Remaining: 587\r\n"
			 "X-RateLimit-Reset: 1893452400\r\n");
	struct sluice_decision d = deny(600, SEC, SEC);
	char buf[8];
	size_t size;
	cr_assert_eq(sluice_http_render_body(SLUICE_HTTP_BODY_EMPTY, &d, buf, sizeof(buf), &size), 0);
	cr_assert_str_eq(buf, "");
	cr_assert_eq(size, 1);
	cr_assert_null(sluice_http_body_content_type(SLUICE_HTTP_BODY_EMPTY));
}

Test(http, seed004_x_ratelimit_unix_ms_and_degraded)
{
	uint64_t now = 1700000000123ull * MS + 1; /* reset rounds up to the next ms */
	struct sluice_http_limit l = {.decision = deny(60, 17 * SEC, 2 * SEC)};
	cr_assert_str_eq(render(SLUICE_HTTP_X_UNIX_MS | SLUICE_HTTP_RETRY_AFTER, &l, 1, now),
			 "Retry-After: 2\r\n"
			 "X-RateLimit-Limit: 60\r\n"
			 "X-RateLimit-Remaining: 0\r\n"
			 "X-RateLimit-Reset: 1700000017124\r\n");
	/* operational note: backend unavailable -> allowed without X-RateLimit-* */
	l.decision = allow(60, 0, 0);
	l.decision.degraded = true;
	cr_assert_str_eq(render(SLUICE_HTTP_X_UNIX_MS | SLUICE_HTTP_RETRY_AFTER, &l, 1, now), "");
	/* fail-closed degraded denial: only Retry-After, never 0 */
	l.decision.allowed = false;
	cr_assert_str_eq(render(SLUICE_HTTP_X_UNIX_MS | SLUICE_HTTP_RETRY_AFTER, &l, 1, now),
			 "Retry-After: 1\r\n");
}

Test(http, draft11_several_policies_and_escaping)
{
	static const uint8_t pk[] = {0x73, 0x70, 0x3a, 0x6b, 0x65, 0x79};
	struct sluice_http_limit l[3] = {
		{.name = "burst", .decision = allow(100, 50, 30 * SEC), .window_ns = 60 * SEC},
		{.name = "daily", .decision = allow(1000, 999, 86000 * SEC + 1), .quota = 1000,
		 .window_ns = 86400 * SEC},
		{.name = "we\"ird\\", .decision = allow(65535, 10, 0), .window_ns = 10 * SEC,
		 .quota_unit = "content-bytes", .partition_key = pk, .partition_key_len = sizeof(pk)},
	};
	cr_assert_str_eq(render(SLUICE_HTTP_DRAFT11, l, 1, 0),
			 "RateLimit-Policy: \"burst\";q=100;w=60\r\n"
			 "RateLimit: \"burst\";r=50;t=30\r\n");
	cr_assert_str_eq(render(SLUICE_HTTP_DRAFT11, l, 3, 0),
			 "RateLimit-Policy: \"burst\";q=100;w=60, \"daily\";q=1000;w=86400, "
			 "\"we\\\"ird\\\\\";q=65535;qu=\"content-bytes\";w=10;pk=:c3A6a2V5:\r\n"
			 "RateLimit: \"burst\";r=50;t=30, \"daily\";r=999;t=86001, "
			 "\"we\\\"ird\\\\\";r=10;t=0;pk=:c3A6a2V5:\r\n");
}

Test(http, draft11_b3_example_429)
{
	/* draft-11 appendix B.3 */
	struct sluice_http_limit l = {.name = "dynamic", .decision = deny(100, 40 * SEC, 20 * SEC),
				      .window_ns = 60 * SEC};
	l.decision.remaining = 15;
	cr_assert_str_eq(render(SLUICE_HTTP_DRAFT11 | SLUICE_HTTP_RETRY_AFTER, &l, 1, 0),
			 "Retry-After: 20\r\n"
			 "RateLimit-Policy: \"dynamic\";q=100;w=60\r\n"
			 "RateLimit: \"dynamic\";r=15;t=40\r\n");
}

Test(http, draft07_dictionary)
{
	struct sluice_http_limit l[2] = {
		{.decision = allow(100, 50, 4 * SEC + 1), .window_ns = 60 * SEC},
		{.decision = allow(1000, 900, 100 * SEC), .window_ns = 3600 * SEC},
	};
	cr_assert_str_eq(render(SLUICE_HTTP_DRAFT07, l, 2, 0),
			 "RateLimit-Policy: 100;w=60, 1000;w=3600\r\n"
			 "RateLimit: limit=100, remaining=50, reset=5\r\n");
}

Test(http, governing_limit_prefers_denial_then_least_remaining)
{
	struct sluice_http_limit l[3] = {
		{.decision = allow(10, 3, 5 * SEC)},
		{.decision = deny(50, 70 * SEC, 9 * SEC)},
		{.decision = deny(500, 900 * SEC, 30 * SEC)},
	};
	cr_assert_str_eq(render(SLUICE_HTTP_DRAFT06 | SLUICE_HTTP_RETRY_AFTER, l, 3, 0),
			 "Retry-After: 30\r\n"
			 "RateLimit-Limit: 500\r\n"
			 "RateLimit-Remaining: 0\r\n"
			 "RateLimit-Reset: 900\r\n");
	l[1].decision = allow(50, 3, 9 * SEC);
	l[2].decision = allow(500, 7, 9 * SEC);
	cr_assert_str_eq(render(SLUICE_HTTP_DRAFT06, l, 3, 0),
			 "RateLimit-Limit: 50\r\n"
			 "RateLimit-Remaining: 3\r\n"
			 "RateLimit-Reset: 9\r\n");
}

Test(http, retry_after_rounding_and_clamping)
{
	struct sluice_decision d = deny(1, 0, 0);
	cr_assert_eq(sluice_http_retry_after_s(&d), 1);
	d.retry_after_ns = 1;
	cr_assert_eq(sluice_http_retry_after_s(&d), 1);
	d.retry_after_ns = SEC;
	cr_assert_eq(sluice_http_retry_after_s(&d), 1);
	d.retry_after_ns = SEC + 1;
	cr_assert_eq(sluice_http_retry_after_s(&d), 2);
	d.retry_after_ns = SLUICE_NEVER;
	cr_assert_eq(sluice_http_retry_after_s(&d), 999999999999999ull);
	d.allowed = true;
	cr_assert_eq(sluice_http_retry_after_s(&d), 0);
	cr_assert_eq(sluice_http_retry_after_s(NULL), 0);
}

Test(http, integers_clamped_to_sf_range)
{
	struct sluice_http_limit l = {.name = "n", .decision = deny(UINT64_MAX, SLUICE_NEVER, SLUICE_NEVER),
				      .window_ns = UINT64_MAX};
	l.decision.remaining = UINT64_MAX;
	cr_assert_str_eq(render(SLUICE_HTTP_DRAFT11 | SLUICE_HTTP_RETRY_AFTER, &l, 1, 0),
			 "Retry-After: 999999999999999\r\n"
			 "RateLimit-Policy: \"n\";q=999999999999999;w=18446744074\r\n"
			 "RateLimit: \"n\";r=999999999999999;t=18446744074\r\n");
	/* Unix ms of a reset past the end of time saturates, then clamps */
	cr_assert_str_eq(render(SLUICE_HTTP_X_UNIX_MS, &l, 1, UINT64_MAX - 5),
			 "X-RateLimit-Limit: 999999999999999\r\n"
			 "X-RateLimit-Remaining: 999999999999999\r\n"
			 "X-RateLimit-Reset: 18446744073710\r\n");
}

Test(http, truncation_reports_needed_size_at_every_cap)
{
	struct sluice_http_limit l = {.name = "default", .decision = deny(100, 30 * SEC, 30 * SEC),
				      .window_ns = 60 * SEC};
	char full[256], buf[256];
	size_t need, size;
	unsigned fam = SLUICE_HTTP_DRAFT11 | SLUICE_HTTP_RETRY_AFTER | SLUICE_HTTP_X_DELTA;

	cr_assert_eq(sluice_http_render_headers(fam, &l, 1, 0, full, sizeof(full), &need), 0);
	for (size_t cap = 0; cap < need; cap++) {
		memset(buf, 'Z', sizeof(buf));
		cr_assert_eq(sluice_http_render_headers(fam, &l, 1, 0, cap ? buf : NULL, cap, &size),
			     SLUICE_ETRUNC, "cap %zu", cap);
		cr_assert_eq(size, need);
		cr_assert_eq(memcmp(buf, full, cap), 0);
		cr_assert_eq(buf[cap], 'Z', "wrote past cap %zu", cap);
	}
	cr_assert_eq(sluice_http_render_headers(fam, &l, 1, 0, buf, need, &size), 0);
	cr_assert_str_eq(buf, full);
	char body[16];
	cr_assert_eq(sluice_http_render_body(SLUICE_HTTP_BODY_JSON_ERROR, &l.decision, body, sizeof(body), &size),
		     SLUICE_ETRUNC);
	cr_assert_eq(size, strlen("{\"error\":{\"code\":\"rate_limited\",\"message\":\"Too many requests. "
				  "Retry after 30 seconds.\",\"retryAfterSec\":30}}") + 1);
}

Test(http, invalid_arguments)
{
	struct sluice_http_limit l = {.decision = allow(1, 1, 0)};
	char buf[64];
	size_t size;

	cr_assert_eq(sluice_http_render_headers(SLUICE_HTTP_DRAFT11, &l, 1, 0, buf, 64, &size), SLUICE_EINVAL);
	cr_assert_eq(sluice_http_render_headers(SLUICE_HTTP_DRAFT06 | SLUICE_HTTP_DRAFT07, &l, 1, 0, buf, 64, &size),
		     SLUICE_EINVAL);
	cr_assert_eq(sluice_http_render_headers(SLUICE_HTTP_X_DELTA | SLUICE_HTTP_X_UNIX_S, &l, 1, 0, buf, 64, &size),
		     SLUICE_EINVAL);
	cr_assert_eq(sluice_http_render_headers(1u << 20, &l, 1, 0, buf, 64, &size), SLUICE_EINVAL);
	cr_assert_eq(sluice_http_render_headers(SLUICE_HTTP_X_DELTA, NULL, 1, 0, buf, 64, &size), SLUICE_EINVAL);
	cr_assert_eq(sluice_http_render_headers(SLUICE_HTTP_X_DELTA, &l, 0, 0, buf, 64, &size), SLUICE_EINVAL);
	l.name = "bad\nname";
	cr_assert_eq(sluice_http_render_headers(SLUICE_HTTP_DRAFT11, &l, 1, 0, buf, 64, &size), SLUICE_EINVAL);
	cr_assert_eq(sluice_http_render_body(SLUICE_HTTP_BODY_JSON_DATA_ERROR, &l.decision, buf, 64, &size), SLUICE_EINVAL);
	l.decision.allowed = false;
	cr_assert_eq(sluice_http_render_body((enum sluice_http_body_style)9, &l.decision, buf, 64, &size),
		     SLUICE_EINVAL);
	cr_assert_eq(sluice_http_render_body(SLUICE_HTTP_BODY_JSON_DATA_ERROR, NULL, buf, 64, &size), SLUICE_EINVAL);
}

Test(http, fields_as_name_value_pairs)
{
	struct sluice_http_limit l = {.name = "default", .decision = deny(100, 30 * SEC, 20 * SEC),
				      .window_ns = 60 * SEC};
	struct sluice_http_field f[3];
	char buf[256];
	size_t size, nf;
	unsigned fam = SLUICE_HTTP_DRAFT11 | SLUICE_HTTP_RETRY_AFTER;

	cr_assert_eq(sluice_http_render_fields(fam, &l, 1, 0, buf, sizeof(buf), &size, f, 3, &nf), 0);
	cr_assert_eq(nf, 3);
	cr_assert_str_eq(f[0].name, "Retry-After");
	cr_assert_str_eq(f[0].value, "20");
	cr_assert_eq(f[0].value_len, 2);
	cr_assert_str_eq(f[1].name, "RateLimit-Policy");
	cr_assert_str_eq(f[1].value, "\"default\";q=100;w=60");
	cr_assert_str_eq(f[2].name, "RateLimit");
	cr_assert_str_eq(f[2].value, "\"default\";r=0;t=30");
	cr_assert_eq(sluice_http_render_fields(fam, &l, 1, 0, buf, sizeof(buf), &size, f, 2, &nf), SLUICE_ETRUNC);
	cr_assert_eq(nf, 3);
	cr_assert_eq(sluice_http_render_fields(fam, &l, 1, 0, buf, 10, &size, f, 3, &nf), SLUICE_ETRUNC);
}
