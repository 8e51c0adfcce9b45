/*
 * client_parse.c - the client side of HTTP (include/sluice/client.h): parse
 * the rate-limit fields of a response into one plain struct, then plan the
 * retry.
 *
 * sluice_client_parse() understands every family a server may send
 * (RateLimit drafts 04-11, X-RateLimit-*, Retry-After) and tells apart the
 * three meanings of a reset value (delta seconds, Unix seconds, Unix ms) by
 * size. sluice_backoff_plan() then says whether to retry and when: a
 * server-dictated wait is honoured and only ever lengthened by the jitter;
 * otherwise exponential backoff. No allocation; the random state is the
 * caller's, so the plan is reproducible.
 */
#include <sluice.h>
#include <stdio.h>
#include <string.h>

#include "check.h"

#define SEC SLUICE_NS_PER_SEC

/* A field from two C strings. */
#define FIELD(n, v) {(n), sizeof(n) - 1, (v), sizeof(v) - 1}

static void plan(const char *what, int status, bool idempotent, uint32_t attempt,
		 const struct sluice_client_limits *limits, struct sluice_rng *rng,
		 struct sluice_backoff_plan *p)
{
	struct sluice_backoff_opts opts; /* 5 attempts, +-25% jitter, 1 s .. 60 s */
	struct sluice_backoff_request req = {status, idempotent, attempt, limits};

	sluice_backoff_opts_default(&opts);
	CHECK_RC(sluice_backoff_plan(&opts, &req, rng, p));
	printf("%-40s -> %s after %.3f s (why %u)\n", what,
	       p->verdict == SLUICE_BACKOFF_RETRY ? "retry" :
	       p->verdict == SLUICE_BACKOFF_STOP  ? "stop" : "done",
	       (double)p->delay_ns / SEC, p->why);
}

int main(void)
{
	uint64_t now = 1700000000 * SEC; /* the client's Unix time */
	struct sluice_rng rng = {42};    /* any seed */
	struct sluice_client_limits lim;
	struct sluice_backoff_plan p;

	/* A 429 with draft-11 fields: two policies, the governing one is the
	 * item with the least remaining. Retry-After wins over every reset. */
	const struct sluice_http_field denied[] = {
		FIELD("RateLimit-Policy", "\"burst\";q=100;w=60, \"daily\";q=1000;w=86400"),
		FIELD("RateLimit", "\"burst\";r=0;t=30, \"daily\";r=999;t=86001"),
		FIELD("retry-after", "30"), /* names match case-insensitively */
	};
	CHECK_RC(sluice_client_parse(denied, 3, now, &lim));
	printf("429: limit %llu, remaining %llu, reset in %llu s, retry after %llu s, %u policies\n",
	       (unsigned long long)lim.limit, (unsigned long long)lim.remaining,
	       (unsigned long long)(lim.reset_ns / SEC),
	       (unsigned long long)(lim.retry_after_ns / SEC), lim.npolicies);
	CHECK(lim.source == SLUICE_CLIENT_DRAFT08 && lim.npolicies == 2);
	CHECK(lim.has_limit && lim.limit == 100 && lim.remaining == 0);
	CHECK(lim.reset_ns == 30 * SEC && lim.retry_after_ns == 30 * SEC);
	CHECK(strcmp(lim.policies[1].name, "daily") == 0 && lim.policies[1].window_s == 86400);

	/* A 429 is retryable even for a POST (the request was not processed);
	 * the wait is Retry-After, lengthened by at most 25 %. */
	plan("POST, 429, Retry-After: 30", 429, false, 1, &lim, &rng, &p);
	CHECK(p.verdict == SLUICE_BACKOFF_RETRY && p.why == SLUICE_BACKOFF_WHY_RETRY_AFTER);
	CHECK(p.delay_ns >= 30 * SEC && p.delay_ns <= 30 * SEC + 30 * SEC / 4);

	/* X-RateLimit-Reset as Unix seconds (it is >= 10^9): 20 s from now.
	 * With remaining 0 and no Retry-After, the plan waits for the reset. */
	const struct sluice_http_field x[] = {
		FIELD("X-RateLimit-Limit", "60"),
		FIELD("X-RateLimit-Remaining", "0"),
		FIELD("X-RateLimit-Reset", "1700000020"),
	};
	CHECK_RC(sluice_client_parse(x, 3, now, &lim));
	CHECK(lim.source == SLUICE_CLIENT_X && lim.limit == 60 && lim.reset_ns == 20 * SEC);
	CHECK(!lim.has_retry_after);
	plan("GET, 429, X-RateLimit-Reset (Unix s)", 429, true, 1, &lim, &rng, &p);
	CHECK(p.verdict == SLUICE_BACKOFF_RETRY && p.why == SLUICE_BACKOFF_WHY_RESET);
	CHECK(p.delay_ns >= 20 * SEC && p.delay_ns <= 25 * SEC);

	/* No rate-limit fields: a 503 is retried with exponential backoff
	 * only when the request is idempotent; a create is not repeated. */
	plan("GET, 503, attempt 3", 503, true, 3, NULL, &rng, &p);
	CHECK(p.verdict == SLUICE_BACKOFF_RETRY && p.why == SLUICE_BACKOFF_WHY_EXPONENTIAL);
	CHECK(p.delay_ns >= 3 * SEC && p.delay_ns <= 5 * SEC); /* 4 s +-25 % */
	plan("POST, 503", 503, false, 1, NULL, &rng, &p);
	CHECK(p.verdict == SLUICE_BACKOFF_STOP && p.why == SLUICE_BACKOFF_WHY_UNSAFE);
	plan("GET, 503, attempt 5 of 5", 503, true, 5, NULL, &rng, &p);
	CHECK(p.verdict == SLUICE_BACKOFF_STOP && p.why == SLUICE_BACKOFF_WHY_ATTEMPTS);

	return check_exit("client_parse");
}
