/*
 * test_policy_answers.c - the policy's refusal answers ("answer <reason>
 * status <code> type \"...\" body \"<template>\"") and which limit the
 * headers describe ("headers ... describe="): what a load keeps, what it
 * refuses with line:column, and the printer's round trip.
 */
#include "policy_test_util.h"

#include <sluice/template.h>

#define HEAD "policy \"t\"\nscope token\n"
#define LIMITS                                                                                                 \
	"limit minute per token sliding 120/1m\nlimit day per token quota 5/1d@utc\n"                          \
	"limit inflight per token concurrency 20\n"

static void expect_error(const char *text, int code, int line, int column, const char *needle)
{
	struct sluice_policy_error e = load_error(text);
	cr_expect_eq(e.code, code, "code %d (%s) for:\n%s", e.code, e.message, text);
	cr_expect_eq(e.line, line, "line %d (%s)", e.line, e.message);
	cr_expect_eq(e.column, column, "column %d (%s)", e.column, e.message);
	cr_expect_not_null(strstr(e.message, needle), "message '%s' lacks '%s'", e.message, needle);
}

/* The policy's answer for reason k rendered with decision d. */
static const char *render(const struct sluice_policy *p, int k, const struct sluice_decision *d)
{
	static char out[4096];
	const struct sluice_policy_answer *a = &sluice_policy_spec(p)->answers[k];
	struct sluice_template t;
	cr_assert_eq(sluice_template_compile(a->body, a->body_len,
					     a->json_escape ? SLUICE_TEMPLATE_JSON : SLUICE_TEMPLATE_PLAIN, &t, NULL),
		     0);
	struct sluice_template_values v = {.decision = *d, .status = a->status, .limit_name = "minute",
					   .limit_name_len = 6};
	cr_assert_eq(sluice_template_render(&t, &v, out, sizeof out, NULL), 0);
	return out;
}

Test(policy_answers, each_reason_keeps_its_status_type_and_body)
{
	struct sluice_policy *p = load_text(
		HEAD LIMITS
		"answer rate status 429 type \"application/json\" body \"{{\\\"code\\\":\\\"rate\\\",\\\"in\\\":{retry_after_s}}}\"\n"
		"answer quota status 403 type \"text/plain\" body \"quota {limit_name}\"\n"
		"answer concurrency status 429 body \"{{\\\"code\\\":\\\"concurrent_limit\\\",\\\"retryAfterSec\\\":1}}\"\n"
		"answer capacity status 503 type \"application/problem+json\" body \"\"\n");
	const struct sluice_policy_spec *s = sluice_policy_spec(p);
	const struct sluice_policy_answer *a = s->answers;
	cr_assert_eq(a[SLUICE_POLICY_ANSWER_RATE].status, 429);
	cr_assert_str_eq(a[SLUICE_POLICY_ANSWER_RATE].content_type, "application/json");
	cr_assert(a[SLUICE_POLICY_ANSWER_RATE].json_escape);
	cr_assert_eq(a[SLUICE_POLICY_ANSWER_QUOTA].status, 403);
	cr_assert_str_eq(a[SLUICE_POLICY_ANSWER_QUOTA].content_type, "text/plain");
	cr_assert(!a[SLUICE_POLICY_ANSWER_QUOTA].json_escape);
	cr_assert_eq(a[SLUICE_POLICY_ANSWER_QUOTA].line, 7);
	/* type defaults to application/json */
	cr_assert_str_eq(a[SLUICE_POLICY_ANSWER_CONCURRENCY].content_type, "application/json");
	cr_assert_eq(a[SLUICE_POLICY_ANSWER_CAPACITY].status, 503);
	cr_assert(a[SLUICE_POLICY_ANSWER_CAPACITY].json_escape); /* a +json type */
	cr_assert_eq(a[SLUICE_POLICY_ANSWER_CAPACITY].body_len, 0);
	struct sluice_decision d = {.allowed = false, .retry_after_ns = 32 * SEC};
	cr_assert_str_eq(render(p, SLUICE_POLICY_ANSWER_RATE, &d), "{\"code\":\"rate\",\"in\":32}");
	cr_assert_str_eq(render(p, SLUICE_POLICY_ANSWER_QUOTA, &d), "quota minute");
	cr_assert_str_eq(render(p, SLUICE_POLICY_ANSWER_CONCURRENCY, &d),
			 "{\"code\":\"concurrent_limit\",\"retryAfterSec\":1}");
	sluice_policy_destroy(p);
}

Test(policy_answers, reasons_share_one_line_and_default_to_none)
{
	struct sluice_policy *p = load_text(HEAD LIMITS "answer rate,quota status 429 body \"x\"\n");
	const struct sluice_policy_answer *a = sluice_policy_spec(p)->answers;
	cr_assert_eq(a[SLUICE_POLICY_ANSWER_RATE].status, 429);
	cr_assert_eq(a[SLUICE_POLICY_ANSWER_QUOTA].status, 429);
	cr_assert_eq(a[SLUICE_POLICY_ANSWER_CONCURRENCY].status, 0); /* the body style answers */
	cr_assert_eq(a[SLUICE_POLICY_ANSWER_CAPACITY].status, 0);
	sluice_policy_destroy(p);
}

Test(policy_answers, bad_placeholder_is_refused_at_its_line_and_column)
{
	/* "answer rate status 429 body \"" is 29 bytes: the body's text starts
	 * at column 30; {nope} at its byte 3. */
	expect_error(HEAD LIMITS "answer rate status 429 body \"ab {nope}\"\n", SLUICE_ENOTFOUND, 6, 33, "nope");
	/* an escape before the placeholder counts its source bytes (\x41 is 4) */
	expect_error(HEAD LIMITS "answer rate status 429 body \"\\x41{bad}\"\n", SLUICE_ENOTFOUND, 6, 34, "bad");
	expect_error(HEAD LIMITS "answer rate status 429 body \"{limit\"\n", SLUICE_ESYNTAX, 6, 30, "");
	expect_error(HEAD LIMITS "answer rate status 429 body \"a } b\"\n", SLUICE_ESYNTAX, 6, 32, "");
}

Test(policy_answers, too_large_a_body_is_refused)
{
	size_t n = SLUICE_TEMPLATE_MAX_TEXT + 1;
	char *text = malloc(n + 256);
	int k = snprintf(text, 256, HEAD LIMITS "answer rate status 429 body \"");
	memset(text + k, 'a', n);
	strcpy(text + k + n, "\"\n");
	expect_error(text, SLUICE_ETOOBIG, 6, 29, "longer than 4096"); /* the opening quote */
	/* exactly the limit loads */
	strcpy(text + k + n - 1, "\"\n");
	struct sluice_policy *p = load_text(text);
	cr_assert_eq(sluice_policy_spec(p)->answers[0].body_len, SLUICE_TEMPLATE_MAX_TEXT);
	sluice_policy_destroy(p);
	free(text);
}

Test(policy_answers, malformed_answers_are_refused)
{
	expect_error(HEAD LIMITS "answer teapot status 418 body \"x\"\n", SLUICE_ESYNTAX, 6, 8, "unknown refusal");
	expect_error(HEAD LIMITS "answer rate,rate status 429 body \"x\"\n", SLUICE_EINVAL, 6, 13, "twice");
	expect_error(HEAD LIMITS "answer rate status 429 body \"x\"\nanswer quota,rate status 429 body \"y\"\n",
		     SLUICE_EINVAL, 7, 14, "second answer");
	expect_error(HEAD LIMITS "answer rate status 99 body \"x\"\n", SLUICE_ERANGE, 6, 20, "100..599");
	expect_error(HEAD LIMITS "answer rate body \"x\"\n", SLUICE_ESYNTAX, 6, 21, "needs 'status");
	expect_error(HEAD LIMITS "answer rate status 429\n", SLUICE_ESYNTAX, 6, 23, "needs 'status");
	expect_error(HEAD LIMITS "answer rate status 429 status 429 body \"x\"\n", SLUICE_ESYNTAX, 6, 24, "each once");
	expect_error(HEAD LIMITS "answer rate status 429 type \"a\\x01\" body \"x\"\n", SLUICE_EINVAL, 6, 31,
		     "printable");
}

Test(policy_answers, describe_picks_governing_tightest_or_a_limit)
{
	struct sluice_policy *p = load_text(HEAD LIMITS "headers x-ratelimit\n");
	cr_assert_eq(sluice_policy_spec(p)->describe, SLUICE_POLICY_DESCRIBE_GOVERNING);
	sluice_policy_destroy(p);
	p = load_text(HEAD LIMITS "headers x-ratelimit describe=tightest\n");
	cr_assert_eq(sluice_policy_spec(p)->describe, SLUICE_POLICY_DESCRIBE_TIGHTEST);
	sluice_policy_destroy(p);
	/* a limit declared after the headers line */
	p = load_text("policy \"t\"\nheaders x-ratelimit describe=day\nscope token\n" LIMITS);
	cr_assert_eq(sluice_policy_spec(p)->describe, 1);
	sluice_policy_destroy(p);
}

Test(policy_answers, describe_of_an_unknown_limit_is_refused_at_load)
{
	expect_error("policy \"t\"\nheaders x-ratelimit describe=hourly\nscope token\n" LIMITS, SLUICE_ENOTFOUND, 2,
		     30, "names no limit");
	expect_error(HEAD LIMITS "headers x-ratelimit describe=inflight\n", SLUICE_EINVAL, 6, 30, "concurrency");
	expect_error(HEAD LIMITS "headers x-ratelimit describe=day describe=day\n", SLUICE_EINVAL, 6, 34,
		     "duplicate");
}

Test(policy_answers, print_round_trips_answers_and_describe)
{
	struct sluice_policy *p = load_text(
		HEAD LIMITS "headers x-ratelimit describe=minute\n"
			    "answer rate,quota status 429 body \"{{\\\"a\\\\\\\\b\\\":{limit}}} \\xc3\\xa9\"\n"
			    "answer capacity status 503 type \"text/plain\" body \"\"\n");
	char text[8192], text2[8192];
	size_t len;
	cr_assert_eq(sluice_policy_print(p, text, sizeof text, &len), 0);
	struct sluice_policy *q = load_text(text);
	cr_assert(sluice_policy_equal(p, q), "not equal after print:\n%s", text);
	cr_assert_eq(sluice_policy_print(q, text2, sizeof text2, NULL), 0);
	cr_assert_str_eq(text, text2);
	sluice_policy_destroy(q);
	/* a different body is a different policy */
	q = load_text(HEAD LIMITS "headers x-ratelimit describe=minute\n"
				  "answer rate,quota status 429 body \"other\"\n"
				  "answer capacity status 503 type \"text/plain\" body \"\"\n");
	cr_assert(!sluice_policy_equal(p, q));
	sluice_policy_destroy(q);
	sluice_policy_destroy(p);
}

Test(policy_answers, seed002_answers_and_describes_the_token_minute)
{
	struct sluice_policy *p = load_file("seed002.policy");
	const struct sluice_policy_spec *s = sluice_policy_spec(p);
	cr_assert_str_eq(s->limits[s->describe].name, "token_minute");
	struct sluice_decision d = {.allowed = false, .retry_after_ns = 32 * SEC};
	cr_assert_str_eq(render(p, SLUICE_POLICY_ANSWER_RATE, &d),
			 "{\"error\":{\"code\":\"rate_limited\",\"message\":\"Too many requests. Retry after 32 "
			 "seconds.\",\"retryAfterSec\":32}}");
	d.retry_after_ns = SEC;
	cr_assert_str_eq(render(p, SLUICE_POLICY_ANSWER_CONCURRENCY, &d),
			 "{\"error\":{\"code\":\"concurrent_limit\",\"retryAfterSec\":1}}");
	sluice_policy_destroy(p);
}
