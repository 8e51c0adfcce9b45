/*
 * test_policy_response.c - a policy's response style (include/sluice/policy.h,
 * struct sluice_policy_spec): the "headers", "body" and "fail" directives map
 * onto the HTTP layer's and common.h's enums, one value each, and the
 * canonical printer writes back what was parsed.
 */
#include "policy_test_util.h"

#define HEAD "policy \"t\"\nscope ip\nlimit l per ip rate 10/1s\n"

/* The spec of a policy of HEAD and `line` (its scalar fields: the policy is
 * destroyed), after checking that its canonical text parses back equal. */
static struct sluice_policy_spec spec_of_line(const char *line)
{
	char text[256];
	snprintf(text, sizeof text, HEAD "%s\n", line);
	struct sluice_policy *p = load_text(text);
	char buf[4096];
	size_t len = 0;

	cr_assert_eq(sluice_policy_print(p, buf, sizeof buf, &len), SLUICE_OK);
	struct sluice_policy *q = load_text(buf);
	cr_assert(sluice_policy_equal(p, q), "printed form differs:\n%s", buf);
	struct sluice_policy_spec spec = *sluice_policy_spec(p);
	sluice_policy_destroy(q);
	sluice_policy_destroy(p);
	return spec;
}

Test(policy_response, every_header_family_is_one_http_family_bit)
{
	static const struct {
		const char *line;
		uint32_t families;
	} cases[] = {
		{"headers none", SLUICE_HTTP_RETRY_AFTER},
		{"headers none retry-after=no", 0},
		{"headers draft-6", SLUICE_HTTP_DRAFT06 | SLUICE_HTTP_RETRY_AFTER},
		{"headers draft-7 retry-after=no", SLUICE_HTTP_DRAFT07},
		{"headers draft-11 reset=delta", SLUICE_HTTP_DRAFT11 | SLUICE_HTTP_RETRY_AFTER},
		{"headers x-ratelimit", SLUICE_HTTP_X_DELTA | SLUICE_HTTP_RETRY_AFTER},
		{"headers x-ratelimit reset=unix-s retry-after=no", SLUICE_HTTP_X_UNIX_S},
		{"headers x-ratelimit reset=unix-ms", SLUICE_HTTP_X_UNIX_MS | SLUICE_HTTP_RETRY_AFTER},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		cr_assert_eq(spec_of_line(cases[i].line).families, cases[i].families, "%s", cases[i].line);
	/* No directive: no rate-limit header, Retry-After on refusals. */
	struct sluice_policy *p = load_text(HEAD);
	cr_assert_eq(sluice_policy_spec(p)->families, SLUICE_HTTP_RETRY_AFTER);
	sluice_policy_destroy(p);
}

Test(policy_response, body_keywords_name_the_json_shape)
{
	cr_assert_eq(spec_of_line("body json-data-error").body, SLUICE_HTTP_BODY_JSON_DATA_ERROR);
	cr_assert_eq(spec_of_line("body json-error").body, SLUICE_HTTP_BODY_JSON_ERROR);
	cr_assert_eq(spec_of_line("body empty").body, SLUICE_HTTP_BODY_EMPTY);

	struct sluice_policy_error e = load_error(HEAD "body seed000\n");
	cr_assert_eq(e.code, SLUICE_ESYNTAX);
	cr_assert_not_null(strstr(e.message, "json-data-error"), "%s", e.message);
}

Test(policy_response, fail_keywords_are_the_limiters_fail_modes)
{
	cr_assert_eq(spec_of_line("fail closed").fail, SLUICE_FAIL_CLOSED);
	cr_assert_eq(spec_of_line("fail open").fail, SLUICE_FAIL_OPEN);
}
