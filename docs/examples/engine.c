/*
 * engine.c - the policy engine (include/sluice/engine.h): load a policy
 * from text, check requests against every limit of every scope that
 * applies to them, all-or-nothing, and read the decision.
 *
 * The policy: each token may make 5 requests a minute, of which 2 writes
 * (POST under /v1/); each workspace 8 a minute across its tokens. A request
 * carries a route and one identity per scope (a missing identity means the
 * limits keyed by that scope do not apply). The decision names the limit
 * that governed it, which is what a server reports in its headers.
 */
#include <sluice.h>
#include <stdio.h>
#include <string.h>

#include "check.h"

static const char policy_text[] =
	"policy \"example\"\n"
	"scope token\n"
	"scope workspace optional\n"
	"class writes match POST /v1/*\n"
	"limit token_minute  per token              rate 5/1m\n"
	"limit token_writes  per token  on writes   rate 2/1m\n"
	"limit ws_minute     per workspace          rate 8/1m\n";

static struct sluice_engine *eng;
static uint64_t now_ns;

/* Check one request; print and return its decision. */
static struct sluice_engine_decision check(const char *method, const char *token,
					   const char *workspace)
{
	struct sluice_identity ids[2] = {
		{token, token ? strlen(token) : 0},             /* scope 0: token */
		{workspace, workspace ? strlen(workspace) : 0}, /* scope 1: workspace */
	};
	struct sluice_engine_request req = {
		.method = method, .method_len = strlen(method),
		.path = "/v1/items", .path_len = strlen("/v1/items"),
		.identities = ids, .identity_count = 2,
		.tier = SLUICE_POLICY_NO_TIER, .cost = 1, .now_ns = now_ns,
	};
	struct sluice_engine_decision out;

	memset(&out, 0, sizeof out);
	CHECK_RC(sluice_engine_check(eng, &req, &out));
	printf("%-4s %s/%-5s %s  governed by %-12s remaining %llu, retry after %llu s\n",
	       method, token, workspace ? workspace : "-", out.d.allowed ? "allowed" : "denied ",
	       out.limit_name, (unsigned long long)out.d.remaining,
	       (unsigned long long)((out.d.retry_after_ns + SLUICE_NS_PER_SEC - 1) /
				    SLUICE_NS_PER_SEC));
	return out;
}

int main(void)
{
	struct sluice_policy *policy = NULL;
	struct sluice_policy_error err;
	struct sluice_engine_decision d;

	int rc = sluice_policy_parse(policy_text, strlen(policy_text), NULL, &policy, &err);
	if (rc != SLUICE_OK) {
		fprintf(stderr, "policy line %d column %d: %s\n", err.line, err.column, err.message);
		return 1;
	}
	CHECK(sluice_policy_scope_index(policy, "workspace") == 1); /* identities[1] */
	rc = sluice_engine_create(&eng, policy, NULL); /* the engine owns the policy now */
	if (rc != SLUICE_OK) {
		fprintf(stderr, "sluice_engine_create: %s\n", sluice_strerror(rc));
		sluice_policy_destroy(policy);
		return 1;
	}
	now_ns = 1700000000 * SLUICE_NS_PER_SEC; /* Unix time */

	/* Two writes pass; the third is refused by the write limit, and the
	 * refusal consumes nothing from the other limits. */
	CHECK(check("POST", "tok_a", "acme").d.allowed);
	CHECK(check("POST", "tok_a", "acme").d.allowed);
	d = check("POST", "tok_a", "acme");
	CHECK(!d.d.allowed && strcmp(d.limit_name, "token_writes") == 0);
	/* Reads still pass until the token's 5 per minute are spent. */
	for (int i = 0; i < 3; i++)
		CHECK(check("GET", "tok_a", "acme").d.allowed);
	d = check("GET", "tok_a", "acme");
	CHECK(!d.d.allowed && strcmp(d.limit_name, "token_minute") == 0);
	CHECK(d.d.reason == SLUICE_REASON_RATE && d.d.retry_after_ns > 0);

	/* A second token spends the rest of the workspace's 8; a third is then
	 * refused by the workspace limit though its own bucket is full. */
	for (int i = 0; i < 3; i++)
		CHECK(check("GET", "tok_b", "acme").d.allowed);
	d = check("GET", "tok_c", "acme");
	CHECK(!d.d.allowed && strcmp(d.limit_name, "ws_minute") == 0);
	CHECK(d.scope == 1);
	/* Without a workspace identity only the token's limits apply. */
	CHECK(check("GET", "tok_c", NULL).d.allowed);

	/* A minute later the buckets have refilled. */
	now_ns += 60 * SLUICE_NS_PER_SEC;
	CHECK(check("POST", "tok_a", "acme").d.allowed);

	sluice_engine_destroy(eng); /* also destroys the policy */
	return check_exit("engine");
}
