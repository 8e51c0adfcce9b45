/*
 * docs/examples/identity.c - a request's identities read the way its
 * policy declares them (sluice/identity.h), then checked by the engine,
 * which applies each scope's rule: what an embedder (a server, a proxy
 * module) does per request, without a line of its own HTTP parsing.
 *
 * The policy: the token comes from "Authorization: Token ..." and is
 * required; the session comes from a cookie and falls back to the client
 * address, which comes from X-Forwarded-For only through the load balancer
 * at 10.0.0.0/8.
 */
#include <string.h>

#include "check.h"

static const char policy_text[] = "policy \"example\"\n"
				  "trusted-proxies 10.0.0.0/8\n"
				  "scope token    from authorization Token required\n"
				  "scope session  from cookie sid fallback ip\n"
				  "scope ip       from forwarded-for\n"
				  "limit per_token   per token    sliding 100/1m\n"
				  "limit per_session per session  sliding 2/1m\n";

static const unsigned char secret[SLUICE_IDENTITY_SECRET_MIN] = {"a per-deployment random secret"};

/* One request through extraction and the engine. */
static struct sluice_engine_decision request(struct sluice_engine *eng, const struct sluice_policy *policy,
					     const char *auth, const char *cookie, const char *xff, const char *peer)
{
	struct sluice_header_view h[3];
	size_t n = 0;
	if (auth)
		h[n++] = (struct sluice_header_view){"Authorization", 13, auth, strlen(auth)};
	if (cookie)
		h[n++] = (struct sluice_header_view){"Cookie", 6, cookie, strlen(cookie)};
	if (xff)
		h[n++] = (struct sluice_header_view){"X-Forwarded-For", 15, xff, strlen(xff)};
	const struct sluice_request_view view = {"/v1/items", 9, h, n, peer, strlen(peer)};
	const struct sluice_identity_options o = {.size = sizeof o, .secret = secret, .secret_len = sizeof secret};
	struct sluice_identity_set ids;
	struct sluice_engine_decision d;
	memset(&d, 0, sizeof d);
	CHECK_RC(sluice_identity_extract(policy, &view, &o, &ids));
	struct sluice_engine_request r = {
		.method = "GET", .method_len = 3, .path = "/v1/items", .path_len = 9,
		.identities = ids.ids, .identity_count = sluice_policy_spec(policy)->scope_count,
		.tier = ids.tier, .cost = 1, .now_ns = sluice_realtime_ns(),
	};
	CHECK_RC(sluice_engine_check(eng, &r, &d));
	printf("%-22s %-26s %-22s -> %s%s\n", auth ? auth : "-", cookie ? cookie : "-", xff ? xff : "-",
	       d.d.allowed ? "allowed" : "refused",
	       d.d.reason == SLUICE_REASON_IDENTITY ? " (identity missing)" : "");
	return d;
}

int main(void)
{
	struct sluice_policy *policy = NULL;
	struct sluice_engine *eng = NULL;
	struct sluice_policy_error err;
	CHECK_RC(sluice_policy_parse(policy_text, strlen(policy_text), NULL, &policy, &err));
	CHECK_RC(sluice_engine_create(&eng, policy, NULL));
	if (eng == NULL)
		return check_exit("identity");

	/* No token: refused before any limit is touched. */
	CHECK(request(eng, policy, NULL, "sid=s1", NULL, "10.0.0.7").d.reason == SLUICE_REASON_IDENTITY);
	/* A session cookie: two a minute for s1. */
	CHECK(request(eng, policy, "Token t1", "sid=s1", NULL, "10.0.0.7").d.allowed);
	CHECK(request(eng, policy, "Token t1", "theme=dark; sid=\"s1\"", NULL, "10.0.0.7").d.allowed);
	CHECK(!request(eng, policy, "Token t1", "sid=s1", NULL, "10.0.0.7").d.allowed);
	/* No cookie: the session limit keyed by the client address the load
	 * balancer saw, whatever the client wrote to the left of it. */
	CHECK(request(eng, policy, "Token t2", NULL, "6.6.6.6, 198.51.100.4", "10.0.0.7").d.allowed);
	CHECK(request(eng, policy, "Token t2", NULL, "7.7.7.7, 198.51.100.4", "10.0.0.7").d.allowed);
	CHECK(!request(eng, policy, "Token t2", NULL, "198.51.100.4", "10.0.0.7").d.allowed);
	/* From a peer that is no trusted proxy, X-Forwarded-For is ignored. */
	CHECK(request(eng, policy, "Token t3", NULL, "198.51.100.4", "203.0.113.9").d.allowed);
	CHECK(sluice_engine_identity_refusals(eng) == 1);

	sluice_engine_destroy(eng);
	return check_exit("identity");
}
