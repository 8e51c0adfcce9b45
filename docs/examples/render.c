/*
 * render.c - the server side of HTTP (include/sluice/http.h): turn decisions
 * into rate-limit response headers and a 429 body.
 *
 * The decisions come from a GCRA cell (100 requests per minute), but any
 * struct sluice_decision will do: a keyed limiter's, the engine's, Redis's.
 * The renderer takes plain structs, allocates nothing and writes into the
 * caller's buffer; a buffer too small is SLUICE_ETRUNC with the size needed,
 * never a silent cut. Durations are whole seconds rounded up, so a client
 * that waits what it is told never comes back early.
 */
#include <sluice.h>
#include <stdio.h>
#include <string.h>

#include "check.h"

int main(void)
{
	struct sluice_rate rate;
	struct sluice_gcra cell;
	struct sluice_http_limit lim;
	char buf[512];
	size_t size;

	CHECK_RC(sluice_rate_init(&rate, 100, 60 * SLUICE_NS_PER_SEC, 100));
	sluice_gcra_init(&cell);
	uint64_t t0 = 1000 * SLUICE_NS_PER_SEC;

	/* One request: the draft-11 fields (RateLimit-Policy and RateLimit, RFC
	 * 9651 Lists naming each limit) for an allowed answer. */
	memset(&lim, 0, sizeof lim);
	lim.name = "minute";
	lim.window_ns = 60 * SLUICE_NS_PER_SEC; /* w=60; quota 0: decision.limit */
	sluice_gcra_admit(&cell, &rate, t0, 1, &lim.decision);
	CHECK_RC(sluice_http_render_headers(SLUICE_HTTP_DRAFT11, &lim, 1, 0, buf, sizeof buf,
					    &size));
	printf("-- allowed, draft-11 fields:\n%s", buf);
	CHECK(strcmp(buf, "RateLimit-Policy: \"minute\";q=100;w=60\r\n"
			  "RateLimit: \"minute\";r=99;t=1\r\n") == 0);
	CHECK(size == strlen(buf) + 1);

	/* Spend the rest of the minute's quota; the next request is denied
	 * and must wait 600 ms, rendered as Retry-After: 1. */
	for (int i = 0; i < 99; i++)
		sluice_gcra_admit(&cell, &rate, t0, 1, &lim.decision);
	CHECK(!sluice_gcra_admit(&cell, &rate, t0, 1, &lim.decision));
	CHECK(lim.decision.retry_after_ns == 600000000ull);

	/* The de-facto X-RateLimit family (Reset in seconds from now) and
	 * Retry-After, as seed 002's API sends them. */
	unsigned families = SLUICE_HTTP_X_DELTA | SLUICE_HTTP_RETRY_AFTER;
	CHECK_RC(sluice_http_render_headers(families, &lim, 1, 0, buf, sizeof buf, &size));
	printf("-- denied, X-RateLimit and Retry-After:\n%s", buf);
	CHECK(strcmp(buf, "Retry-After: 1\r\n"
			  "X-RateLimit-Limit: 100\r\n"
			  "X-RateLimit-Remaining: 0\r\n"
			  "X-RateLimit-Reset: 60\r\n") == 0);

	/* Too small a buffer: ETRUNC, and size says what is needed. */
	char tiny[8];
	CHECK(sluice_http_render_headers(families, &lim, 1, 0, tiny, sizeof tiny, &size) ==
	      SLUICE_ETRUNC);
	CHECK(size == strlen(buf) + 1);

	/* The 429 body in seed 002's style and its Content-Type. */
	enum sluice_http_body_style style = SLUICE_HTTP_BODY_JSON_ERROR;
	CHECK_RC(sluice_http_render_body(style, &lim.decision, buf, sizeof buf, &size));
	printf("-- 429 body (%s):\n%s\n", sluice_http_body_content_type(style), buf);
	CHECK(strcmp(buf, "{\"error\":{\"code\":\"rate_limited\",\"message\":\"Too many requests. "
			  "Retry after 1 seconds.\",\"retryAfterSec\":1}}") == 0);
	CHECK(strcmp(sluice_http_body_content_type(style), "application/json") == 0);
	CHECK(sluice_http_retry_after_s(&lim.decision) == 1);

	return check_exit("render");
}
