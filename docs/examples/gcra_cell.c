/*
 * gcra_cell.c - one GCRA cell (include/sluice/gcra.h): a token bucket of
 * 120 requests per minute with bursts of 10, driven by an explicit clock.
 *
 * A cell is 8 bytes of caller-owned memory: no allocation, no key, no
 * table. Any number of threads may admit on the same cell. Every call
 * takes the time (now_ns) from the caller, so this program is deterministic:
 * it prints each decision and checks it against the token-bucket arithmetic
 * (one token every 500 ms, 10 at most). Exits 0 when every check holds.
 */
#include <sluice.h>
#include <stdio.h>

#include "check.h"

#define MS 1000000ull

static void show(const char *what, bool allowed, const struct sluice_decision *d)
{
	printf("%-28s %s remaining=%llu reset=%llu ms retry_after=%llu ms\n", what,
	       allowed ? "allowed" : "denied ", (unsigned long long)d->remaining,
	       (unsigned long long)(d->reset_ns / MS),
	       (unsigned long long)(d->retry_after_ns / MS));
}

int main(void)
{
	struct sluice_rate rate; /* the limit: shared, read-only once made */
	struct sluice_gcra cell; /* the state of one key: 8 bytes */
	struct sluice_decision d;
	bool ok;

	/* 120 per 60 s: the emission interval is exactly 500 ms, so every
	 * decision below is exact (period_ns is a multiple of limit). */
	int rc = sluice_rate_init(&rate, 120, 60 * SLUICE_NS_PER_SEC, 10);
	if (rc != SLUICE_OK) {
		fprintf(stderr, "sluice_rate_init: %s\n", sluice_strerror(rc));
		return 1;
	}
	sluice_gcra_init(&cell); /* a full bucket (so is zero-filled memory) */

	uint64_t t0 = 1000 * SLUICE_NS_PER_SEC; /* any clock; here "1000 s" */

	/* A burst: the 10 tokens go at once, the 11th request waits 500 ms. */
	int admitted = 0;
	for (int i = 0; i < 11; i++)
		admitted += sluice_gcra_admit(&cell, &rate, t0, 1, &d);
	show("11 requests at t0", admitted == 10, &d);
	CHECK(admitted == 10);
	CHECK(!d.allowed && d.reason == SLUICE_REASON_RATE);
	CHECK(d.retry_after_ns == 500 * MS); /* the exact wait */
	CHECK(d.reset_ns == 5000 * MS);      /* 10 tokens owed, 500 ms each */

	/* A peek (cost 0) reads without consuming. */
	ok = sluice_gcra_admit(&cell, &rate, t0 + 250 * MS, 0, &d);
	show("peek at t0+250ms", ok, &d);
	CHECK(ok && d.remaining == 0);

	/* 1 ns early is still too early; at the instant it passes. */
	ok = sluice_gcra_admit(&cell, &rate, t0 + 500 * MS - 1, 1, &d);
	show("request at t0+500ms-1ns", ok, &d);
	CHECK(!ok && d.retry_after_ns == 1);
	ok = sluice_gcra_admit(&cell, &rate, t0 + 500 * MS, 1, &d);
	show("request at t0+500ms", ok, &d);
	CHECK(ok && d.remaining == 0);

	/* A cost above the burst can never pass. */
	ok = sluice_gcra_admit(&cell, &rate, t0 + 500 * MS, 11, &d);
	show("cost 11 (> burst)", ok, &d);
	CHECK(!ok && d.reason == SLUICE_REASON_NEVER && d.retry_after_ns == SLUICE_NEVER);

	/* Full again 5 s after the last admission: the cell carries no
	 * information then, and a keyed table could forget it. */
	CHECK(!sluice_gcra_is_idle(&cell, &rate, t0 + 5499 * MS));
	CHECK(sluice_gcra_is_idle(&cell, &rate, t0 + 5500 * MS));
	printf("full again at t0+5500ms: %s\n",
	       sluice_gcra_is_idle(&cell, &rate, t0 + 5500 * MS) ? "yes" : "no");

	return check_exit("gcra_cell");
}
