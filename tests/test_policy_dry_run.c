/*
 * test_policy_dry_run.c - the policy text of dry-run limits ("limit ...
 * dry-run", "dry-run all", "dry-run header <name>"), resource labels and
 * "headers custom": what each puts in struct sluice_policy_spec, the
 * canonical text parsing back equal, and every mistake at its line and
 * column.
 */
#include "policy_test_util.h"

#define HEAD "policy \"t\"\nscope ip\nscope token\n"

static void expect_error(const char *text, int code, int line, int column, const char *needle)
{
	struct sluice_policy_error e = load_error(text);
	cr_expect_eq(e.code, code, "code %d (%s) for:\n%s", e.code, e.message, text);
	cr_expect_eq(e.line, line, "line %d (%s)", e.line, e.message);
	cr_expect_eq(e.column, column, "column %d (%s)", e.column, e.message);
	cr_expect_not_null(strstr(e.message, needle), "message '%s' lacks '%s'", e.message, needle);
}

/* Load, print, load the print: equal. */
static struct sluice_policy *load_round_trip(const char *text)
{
	struct sluice_policy *p = load_text(text);
	char buf[4096];
	size_t len = 0;

	cr_assert_eq(sluice_policy_print(p, buf, sizeof buf, &len), SLUICE_OK);
	struct sluice_policy *q = load_text(buf);
	cr_assert(sluice_policy_equal(p, q), "printed form differs:\n%s", buf);
	sluice_policy_destroy(q);
	return p;
}

Test(policy_dry_run, limit_option_sets_the_mask)
{
	struct sluice_policy *p = load_round_trip(HEAD "limit a per ip rate 10/1s\n"
						       "limit b per token sliding 5/1m dry-run warn 80%\n"
						       "limit c per ip concurrency 2 dry-run\n");
	const struct sluice_policy_spec *s = sluice_policy_spec(p);
	cr_assert_eq(s->dry_run_mask, 0x6u);
	cr_assert(!s->limits[0].dry_run);
	cr_assert(s->limits[1].dry_run);
	cr_assert_eq(s->limits[1].warn_percent, 80);
	cr_assert_null(s->dry_run_header);
	sluice_policy_destroy(p);
}

Test(policy_dry_run, directive_all_and_header)
{
	struct sluice_policy *p = load_round_trip(HEAD "dry-run all header X-RateLimit-Dry-Run\n"
						       "limit a per ip rate 10/1s\nlimit b per token rate 1/1s\n");
	const struct sluice_policy_spec *s = sluice_policy_spec(p);
	cr_assert_eq(s->dry_run_mask, 0x3u);
	cr_assert_str_eq(s->dry_run_header, "X-RateLimit-Dry-Run");
	sluice_policy_destroy(p);
	p = load_round_trip(HEAD "dry-run header \"Shadow-Refused\"\nlimit a per ip rate 10/1s dry-run\n");
	cr_assert_str_eq(sluice_policy_spec(p)->dry_run_header, "Shadow-Refused");
	cr_assert_eq(sluice_policy_spec(p)->dry_run_mask, 1u);
	sluice_policy_destroy(p);
	/* the flag is part of equality */
	struct sluice_policy *x = load_text(HEAD "limit a per ip rate 10/1s\n");
	struct sluice_policy *y = load_text(HEAD "limit a per ip rate 10/1s dry-run\n");
	cr_assert(!sluice_policy_equal(x, y));
	sluice_policy_destroy(x);
	sluice_policy_destroy(y);
}

Test(policy_dry_run, custom_headers_every_field)
{
	struct sluice_policy *p = load_round_trip(
		HEAD "headers custom limit=x-ratelimit-limit remaining=x-ratelimit-remaining "
		     "reset=x-ratelimit-reset reset-form=unix-s used=x-ratelimit-used resource=x-ratelimit-resource\n"
		     "limit core per token quota 5000/1h@utc resource \"core\"\nlimit b per ip rate 1/1s\n");
	const struct sluice_policy_spec *s = sluice_policy_spec(p);
	cr_assert_eq(s->families, SLUICE_HTTP_CUSTOM | SLUICE_HTTP_RETRY_AFTER);
	cr_assert_str_eq(s->custom.limit, "x-ratelimit-limit");
	cr_assert_str_eq(s->custom.remaining, "x-ratelimit-remaining");
	cr_assert_str_eq(s->custom.reset, "x-ratelimit-reset");
	cr_assert_str_eq(s->custom.used, "x-ratelimit-used");
	cr_assert_str_eq(s->custom.resource, "x-ratelimit-resource");
	cr_assert_eq(s->custom.reset_form, SLUICE_HTTP_RESET_UNIX_S);
	cr_assert_str_eq(s->limits[0].resource, "core");
	cr_assert_null(s->limits[1].resource);
	sluice_policy_destroy(p);
}

Test(policy_dry_run, custom_headers_subset)
{
	struct sluice_policy *p =
		load_round_trip(HEAD "headers custom remaining=Left retry-after=no describe=a\nlimit a per ip rate 1/1s\n");
	const struct sluice_policy_spec *s = sluice_policy_spec(p);
	cr_assert_eq(s->families, SLUICE_HTTP_CUSTOM);
	cr_assert_null(s->custom.limit);
	cr_assert_str_eq(s->custom.remaining, "Left");
	cr_assert_null(s->custom.reset);
	cr_assert_eq(s->describe, 0);
	sluice_policy_destroy(p);
	/* another family leaves every custom name NULL */
	p = load_text(HEAD "headers x-ratelimit reset=unix-ms\nlimit a per ip rate 1/1s\n");
	cr_assert_null(sluice_policy_spec(p)->custom.limit);
	cr_assert_null(sluice_policy_spec(p)->custom.resource);
	sluice_policy_destroy(p);
}

Test(policy_dry_run, errors_at_line_and_column)
{
	const char *l = "limit a per ip rate 1/1s\n";
	char text[512];

	expect_error(HEAD "limit a per ip rate 1/1s dry-run dry-run\n", SLUICE_EINVAL, 4, 34, "duplicate 'dry-run'");
	expect_error(HEAD "limit a per ip rate 1/1s resource core\n", SLUICE_ESYNTAX, 4, 35, "quoted string");
	expect_error(HEAD "limit a per ip rate 1/1s resource \"\"\n", SLUICE_EINVAL, 4, 35, "empty");
	expect_error(HEAD "limit a per ip rate 1/1s resource \"a\" resource \"b\"\n", SLUICE_EINVAL, 4, 39,
		     "duplicate 'resource'");
	expect_error(HEAD "limit a per ip rate 1/1s shadow\n", SLUICE_ESYNTAX, 4, 26, "dry-run");
	expect_error(HEAD "dry-run\n", SLUICE_ESYNTAX, 4, 8, "'all' or 'header");
	expect_error(HEAD "dry-run all all\n", SLUICE_ESYNTAX, 4, 13, "each once");
	expect_error(HEAD "dry-run header\n", SLUICE_ESYNTAX, 4, 15, "a header name");
	expect_error(HEAD "dry-run header X:Y\n", SLUICE_ESYNTAX, 4, 17, "':' cannot be");
	expect_error(HEAD "dry-run header \"a b\"\n", SLUICE_ESYNTAX, 4, 18, "' ' cannot be");
	expect_error(HEAD "dry-run all\ndry-run header X\n", SLUICE_EINVAL, 5, 1, "second 'dry-run'");
	snprintf(text, sizeof text, HEAD "dry-run header %.*s\n%s", 64,
		 "a123456789a123456789a123456789a123456789a123456789a123456789abcd", l);
	expect_error(text, SLUICE_ETOOBIG, 4, 16, "longer than 63");
	expect_error(HEAD "headers custom\n", SLUICE_EINVAL, 4, 9, "names no field");
	expect_error(HEAD "headers custom limit=\n", SLUICE_ESYNTAX, 4, 16, "unexpected 'limit='");
	expect_error(HEAD "headers custom limit=a(b)\n", SLUICE_ESYNTAX, 4, 23, "'(' cannot be");
	expect_error(HEAD "headers custom used=a used=b\n", SLUICE_EINVAL, 4, 23, "duplicate 'used='");
	expect_error(HEAD "headers custom limit=a reset-form=unix-s\n", SLUICE_EINVAL, 4, 24, "without 'reset=");
	expect_error(HEAD "headers custom reset=r reset-form=unix\n", SLUICE_ESYNTAX, 4, 35, "unix-s");
	expect_error(HEAD "headers custom limit=a reset=unix-s reset=b\n", SLUICE_EINVAL, 4, 37, "duplicate 'reset='");
	expect_error(HEAD "headers custom limit=a bogus=1\n", SLUICE_ESYNTAX, 4, 24, "reset-form=");
	expect_error(HEAD "headers x-ratelimit reset-form=unix-s\n", SLUICE_ESYNTAX, 4, 21, "reset=...");
	expect_error(HEAD "headers draft-6 limit=x\n", SLUICE_ESYNTAX, 4, 17, "unexpected 'limit=x'");
	expect_error(HEAD "headers bespoke\n", SLUICE_ESYNTAX, 4, 9, "custom");
}
