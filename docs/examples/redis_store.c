/*
 * redis_store.c - the Redis store (include/sluice/redis.h): the keyed
 * limiter's decisions made on a Redis server, so that one limit holds
 * across a fleet of processes.
 *
 * Usage: example_redis_store PORT (a redis-server on 127.0.0.1:PORT;
 * run_redis.sh starts one). Each call is one Lua script invocation that
 * decides every limit of the key all-or-nothing, atomically on the server,
 * on the server's clock. Two handles stand for two processes of a fleet:
 * what one consumes, the other sees. A handle is one connection and is not
 * thread-safe: use one per thread. Exits 77 (skipped) when the library was
 * built without hiredis.
 */
#include <sluice.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

int main(int argc, char **argv)
{
	struct sluice_redis_options opts;
	struct sluice_redis *a = NULL, *b = NULL;
	struct sluice_limit limit = {.kind = SLUICE_LIMIT_GCRA};
	struct sluice_decision d;
	const char *key = "user:42";

	memset(&opts, 0, sizeof opts);
	opts.size = sizeof opts;
	opts.host = "127.0.0.1";
	opts.port = argc > 1 ? (uint32_t)atoi(argv[1]) : 6379;
	opts.fail_mode = SLUICE_FAIL_CLOSED; /* server unreachable: deny, degraded */
	opts.key_prefix = "example:";
	int rc = sluice_redis_create(&a, &opts);
	if (rc == SLUICE_EUNSUPPORTED) {
		printf("redis_store: libsluice built without hiredis; skipped\n");
		return 77;
	}
	CHECK_RC(rc);
	CHECK_RC(sluice_redis_create(&b, &opts));
	if (a == NULL || b == NULL)
		return check_exit("redis_store");

	/* 5 per minute, bursts of 5: one token every 12 s. */
	CHECK_RC(sluice_rate_init(&limit.rate, 5, 60 * SLUICE_NS_PER_SEC, 5));

	/* Process A spends 3 tokens, process B the other 2; then both are
	 * refused: the state lives on the server. now_ns is ignored (the
	 * server's TIME is the fleet's one clock). */
	for (int i = 0; i < 5; i++) {
		struct sluice_redis *r = i < 3 ? a : b;
		CHECK_RC(sluice_redis_admit(r, key, strlen(key), &limit, 1, 1, 0, &d));
		printf("%s: %s, remaining %llu\n", i < 3 ? "A" : "B",
		       d.allowed ? "allowed" : "denied", (unsigned long long)d.remaining);
		CHECK(d.allowed && !d.degraded && d.remaining == (uint64_t)(4 - i));
	}
	CHECK_RC(sluice_redis_admit(a, key, strlen(key), &limit, 1, 1, 0, &d));
	printf("A: %s, retry after %.1f s\n", d.allowed ? "allowed" : "denied",
	       (double)d.retry_after_ns / SLUICE_NS_PER_SEC);
	CHECK(!d.allowed && !d.degraded && d.reason == SLUICE_REASON_RATE);
	CHECK(d.retry_after_ns > 11 * SLUICE_NS_PER_SEC && d.retry_after_ns <= 12 * SLUICE_NS_PER_SEC);

	/* A peek (cost 0) reads without consuming or creating a key. */
	CHECK_RC(sluice_redis_admit(b, key, strlen(key), &limit, 1, 0, 0, &d));
	CHECK(d.allowed && d.remaining == 0);
	/* Another key is independent. */
	CHECK_RC(sluice_redis_admit(b, "user:43", 7, &limit, 1, 1, 0, &d));
	CHECK(d.allowed && d.remaining == 4);

	/* Counters, versioned like every options struct. */
	struct sluice_redis_stats st = {.size = sizeof st};
	CHECK_RC(sluice_redis_stats(a, &st));
	printf("A: admitted %llu, denied %llu, degraded %llu, round trips %llu\n",
	       (unsigned long long)st.admitted, (unsigned long long)st.denied,
	       (unsigned long long)st.degraded, (unsigned long long)st.round_trips);
	CHECK(st.admitted == 3 && st.denied == 1 && st.degraded == 0 && st.round_trips >= 4);

	sluice_redis_destroy(b);
	sluice_redis_destroy(a); /* keys on the server are left to expire */
	return check_exit("redis_store");
}
