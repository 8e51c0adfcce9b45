/*
 * bench_http.c - the HTTP surface: rendering the draft-11 pair and the
 * X-RateLimit set from a decision, and parsing a typical response header
 * set. Baselines in the same binary: a trivial snprintf() renderer of the
 * same text (no escaping, no clamping, no truncation reporting beyond
 * snprintf's), and a naive strtoull() reader of X-RateLimit-*.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SLUICE_EXPERIMENTAL_API /* BM_sf_parse_list: sf.h is fenced as experimental */
#include <sluice.h>

#include "shim.h"

#define SEC 1000000000ull
#define NOW_NS (1795392000ull * SEC)

static struct sluice_http_limit bench_limit(uint64_t i)
{
	struct sluice_http_limit l = {
		.name = "default",
		.decision = {.allowed = true, .limit = 100, .remaining = 100 - (i & 63),
			     .reset_ns = 30 * SEC + (i & 1023) * 1000000, .retry_after_ns = 0},
		.quota = 100,
		.window_ns = 60 * SEC,
	};
	return l;
}

static uint64_t ceil_s(uint64_t ns)
{
	return ns / SEC + (ns % SEC != 0);
}

static void BM_http_render_draft11(sbench_state *st)
{
	char buf[256];
	size_t size;
	for (uint64_t n; (n = sbench_batch(st)) != 0;) {
		for (uint64_t i = 0; i < n; i++) {
			struct sluice_http_limit l = bench_limit(i);
			int rc = sluice_http_render_headers(SLUICE_HTTP_DRAFT11 | SLUICE_HTTP_RETRY_AFTER,
							    &l, 1, NOW_NS, buf, sizeof(buf), &size);
			sbench_keep(rc);
			sbench_clobber();
		}
	}
	sbench_items(st, (int64_t)sbench_iterations(st));
}
SBENCH_REGISTER(BM_http_render_draft11)
{
	sbench_baseline(b, "BM_http_snprintf_draft11");
}

static void BM_http_snprintf_draft11(sbench_state *st)
{
	char buf[256];
	for (uint64_t n; (n = sbench_batch(st)) != 0;) {
		for (uint64_t i = 0; i < n; i++) {
			struct sluice_http_limit l = bench_limit(i);
			int len = snprintf(buf, sizeof(buf),
					   "RateLimit-Policy: \"%s\";q=%llu;w=%llu\r\n"
					   "RateLimit: \"%s\";r=%llu;t=%llu\r\n",
					   l.name, (unsigned long long)l.quota,
					   (unsigned long long)ceil_s(l.window_ns), l.name,
					   (unsigned long long)l.decision.remaining,
					   (unsigned long long)ceil_s(l.decision.reset_ns));
			sbench_keep(len);
			sbench_clobber();
		}
	}
	sbench_items(st, (int64_t)sbench_iterations(st));
}
SBENCH_REGISTER(BM_http_snprintf_draft11)
{
	(void)b;
}

static void BM_http_render_x(sbench_state *st)
{
	char buf[256];
	size_t size;
	for (uint64_t n; (n = sbench_batch(st)) != 0;) {
		for (uint64_t i = 0; i < n; i++) {
			struct sluice_http_limit l = bench_limit(i);
			int rc = sluice_http_render_headers(SLUICE_HTTP_X_UNIX_S | SLUICE_HTTP_RETRY_AFTER,
							    &l, 1, NOW_NS, buf, sizeof(buf), &size);
			sbench_keep(rc);
			sbench_clobber();
		}
	}
	sbench_items(st, (int64_t)sbench_iterations(st));
}
SBENCH_REGISTER(BM_http_render_x)
{
	sbench_baseline(b, "BM_http_snprintf_x");
}

static void BM_http_snprintf_x(sbench_state *st)
{
	char buf[256];
	for (uint64_t n; (n = sbench_batch(st)) != 0;) {
		for (uint64_t i = 0; i < n; i++) {
			struct sluice_http_limit l = bench_limit(i);
			int len = snprintf(buf, sizeof(buf),
					   "X-RateLimit-Limit: %llu\r\nX-RateLimit-Remaining: %llu\r\n"
					   "X-RateLimit-Reset: %llu\r\n",
					   (unsigned long long)l.quota,
					   (unsigned long long)l.decision.remaining,
					   (unsigned long long)ceil_s(NOW_NS + l.decision.reset_ns));
			sbench_keep(len);
			sbench_clobber();
		}
	}
	sbench_items(st, (int64_t)sbench_iterations(st));
}
SBENCH_REGISTER(BM_http_snprintf_x)
{
	(void)b;
}

/*
 * The seed-002 refusal body through a compiled JSON template (three
 * placeholders, one string escaped), against the fixed renderer of the same
 * body (sluice_http_render_body, SLUICE_HTTP_BODY_JSON_ERROR) and the same
 * text by one snprintf (no escaping, no clamping).
 */
static struct sluice_template bench_tpl;

static struct sluice_decision bench_denial(uint64_t i)
{
	struct sluice_decision d = {.allowed = false, .reason = SLUICE_REASON_RATE, .limit = 100, .remaining = 0,
				    .reset_ns = 30 * SEC, .retry_after_ns = 1 * SEC + (i & 1023) * 1000000};
	return d;
}

static void BM_http_template_render(sbench_state *st)
{
	static const char text[] = "{{\"error\":{{\"code\":\"rate_limited\",\"message\":\"Too many requests. Retry "
				   "after {retry_after_s} seconds.\",\"retryAfterSec\":{retry_after_s},\"limit\":\"{limit_name}\"}}}}";
	char buf[256];
	size_t size;
	if (sluice_template_compile(text, sizeof(text) - 1, SLUICE_TEMPLATE_JSON, &bench_tpl, NULL) != SLUICE_OK) {
		sbench_error(st, "template does not compile");
		return;
	}
	struct sluice_template_values v = {.limit_name = "per_token", .limit_name_len = 9, .status = 429};
	for (uint64_t n; (n = sbench_batch(st)) != 0;) {
		for (uint64_t i = 0; i < n; i++) {
			v.decision = bench_denial(i);
			int rc = sluice_template_render(&bench_tpl, &v, buf, sizeof(buf), &size);
			sbench_keep(rc);
			sbench_clobber();
		}
	}
	sbench_items(st, (int64_t)sbench_iterations(st));
}
SBENCH_REGISTER(BM_http_template_render)
{
	sbench_baseline(b, "BM_http_render_body_seed002");
}

static void BM_http_render_body_seed002(sbench_state *st)
{
	char buf[256];
	size_t size;
	for (uint64_t n; (n = sbench_batch(st)) != 0;) {
		for (uint64_t i = 0; i < n; i++) {
			struct sluice_decision d = bench_denial(i);
			int rc = sluice_http_render_body(SLUICE_HTTP_BODY_JSON_ERROR, &d, buf, sizeof(buf), &size);
			sbench_keep(rc);
			sbench_clobber();
		}
	}
	sbench_items(st, (int64_t)sbench_iterations(st));
}
SBENCH_REGISTER(BM_http_render_body_seed002)
{
	(void)b;
}

static void BM_http_snprintf_body_seed002(sbench_state *st)
{
	char buf[256];
	for (uint64_t n; (n = sbench_batch(st)) != 0;) {
		for (uint64_t i = 0; i < n; i++) {
			struct sluice_decision d = bench_denial(i);
			unsigned long long s = ceil_s(d.retry_after_ns);
			int len = snprintf(buf, sizeof(buf),
					   "{\"error\":{\"code\":\"rate_limited\",\"message\":\"Too many requests. Retry after "
					   "%llu seconds.\",\"retryAfterSec\":%llu,\"limit\":\"%s\"}}",
					   s, s, "per_token");
			sbench_keep(len);
			sbench_clobber();
		}
	}
	sbench_items(st, (int64_t)sbench_iterations(st));
}
SBENCH_REGISTER(BM_http_snprintf_body_seed002)
{
	sbench_baseline(b, "BM_http_template_render");
}

/* A typical response: general fields plus both rate-limit families. */
#define FIELD(n, v) {n, sizeof(n) - 1, v, sizeof(v) - 1}
static const struct sluice_http_field response[] = {
	FIELD("Date", "Mon, 23 Nov 2026 00:00:00 GMT"),
	FIELD("Content-Type", "application/json"),
	FIELD("Content-Length", "1234"),
	FIELD("Cache-Control", "no-store"),
	FIELD("RateLimit-Policy", "\"burst\";q=100;w=60, \"daily\";q=1000;w=86400"),
	FIELD("RateLimit", "\"burst\";r=50;t=30, \"daily\";r=999;t=86000"),
	FIELD("X-RateLimit-Limit", "100"),
	FIELD("X-RateLimit-Remaining", "50"),
	FIELD("X-RateLimit-Reset", "1795392030"),
};
#define NRESPONSE (sizeof(response) / sizeof(response[0]))

static void BM_client_parse_typical(sbench_state *st)
{
	struct sluice_client_limits l;
	for (uint64_t n; (n = sbench_batch(st)) != 0;) {
		for (uint64_t i = 0; i < n; i++) {
			sluice_client_parse(response, NRESPONSE, NOW_NS, &l);
			sbench_keep(l.remaining);
			sbench_clobber();
		}
	}
	sbench_items(st, (int64_t)sbench_iterations(st));
}
SBENCH_REGISTER(BM_client_parse_typical)
{
	sbench_baseline(b, "BM_client_naive_x");
}

/* Baseline: find the three X-RateLimit-* fields by strncasecmp and read
 * them with strtoull; no SF, no validation, no combining of lines. */
static void BM_client_naive_x(sbench_state *st)
{
	for (uint64_t n; (n = sbench_batch(st)) != 0;) {
		for (uint64_t i = 0; i < n; i++) {
			unsigned long long v[3] = {0, 0, 0};
			static const char *const names[3] = {"x-ratelimit-limit", "x-ratelimit-remaining",
							     "x-ratelimit-reset"};
			for (size_t f = 0; f < NRESPONSE; f++) {
				for (int k = 0; k < 3; k++) {
					if (response[f].name_len == strlen(names[k]) &&
					    strncasecmp(response[f].name, names[k], response[f].name_len) == 0)
						v[k] = strtoull(response[f].value, NULL, 10);
				}
			}
			sbench_keep(v[0] + v[1] + v[2]);
			sbench_clobber();
		}
	}
	sbench_items(st, (int64_t)sbench_iterations(st));
}
SBENCH_REGISTER(BM_client_naive_x)
{
	(void)b;
}

static void BM_sf_parse_list(sbench_state *st)
{
	static const char v[] = "\"burst\";q=100;w=60, \"daily\";q=1000;w=86400";
	struct sluice_sf_node nodes[16];
	struct sluice_sf_result res;
	for (uint64_t n; (n = sbench_batch(st)) != 0;) {
		for (uint64_t i = 0; i < n; i++) {
			int rc = sluice_sf_parse(SLUICE_SF_KIND_LIST, v, sizeof(v) - 1, nodes, 16, &res);
			sbench_keep(rc);
			sbench_clobber();
		}
	}
	sbench_items(st, (int64_t)sbench_iterations(st));
}
SBENCH_REGISTER(BM_sf_parse_list)
{
	(void)b;
}
