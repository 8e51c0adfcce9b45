/*
 * fuzz_pacer.c - struct sluice_pacer against a simulated server, the
 * order of events chosen by the input.
 *
 * The server counts requests in fixed windows of WINDOW ticks and refuses
 * past its limit (1..8, from byte 0); every answer carries the limit, what
 * is left and the reset as a delay: either from the server's own clock
 * when it counted the request (a delta reset, byte 1 even), or from the
 * client's clock when the answer is read (an absolute reset turned into a
 * delay at parse time, byte 1 odd). The rest of the input is a list of
 * events: let the clock run (up to 2 windows), ask the pacer (a request
 * let through goes in flight), have the server count an in-flight request
 * (any of them: requests overtake each other), hand a counted request's
 * answer to the pacer (any of them, any time later), or cancel one.
 *
 * The property: once the pacer has learnt a count (its first answer whose
 * window has not ended), the server never refuses a request the pacer let
 * through. The requests let through before that are blind: their
 * refusals are allowed.
 */
#include <stdlib.h>
#include <string.h>

#include <sluice/client.h>

#include "fuzz.h"

#ifdef FUZZ_TRACE
#include <stdio.h>
#define TRACE(...) fprintf(stderr, __VA_ARGS__)
#else
#define TRACE(...) ((void)0)
#endif

#define WINDOW 1000u
#define SLOTS 16

static void check(bool ok)
{
	if (!ok)
		__builtin_trap();
}

struct req {
	int state; /* 0 free, 1 in flight, 2 counted, answer pending */
	bool blind;
	uint64_t granted;
	int status;
	struct sluice_client_limits l;
	uint64_t served_at, window_end;
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_input in = {data, size};
	uint64_t limit = fuzz_u8(&in) % 8 + 1;
	bool absolute = fuzz_u8(&in) & 1;
	struct sluice_pacer_opts o;
	struct sluice_pacer *p;
	struct sluice_rng rng = {size};
	struct req reqs[SLOTS];
	uint64_t now = 10 * WINDOW, window = UINT64_MAX, count = 0;
	bool learnt = false;

	sluice_pacer_opts_default(&o);
	o.jitter_permille = fuzz_u8(&in) % 200;
	o.low_permille = fuzz_u8(&in) % 1001;
	o.poll_ns = 1 + fuzz_u8(&in);
	if (sluice_pacer_create(&o, &p) != 0)
		return 0;
	memset(reqs, 0, sizeof(reqs));
	while (in.size > 0) {
		uint8_t op = fuzz_u8(&in), arg = fuzz_u8(&in);
		struct req *r = &reqs[arg % SLOTS];
		switch (op % 5) {
		case 0: /* time passes */
			now += (uint64_t)arg * 2 * WINDOW / 255;
			TRACE("t=%llu\n", (unsigned long long)now);
			break;
		case 1: { /* ask */
			uint64_t wait;
			check(sluice_pacer_acquire(p, "k", 1, 0, now, &wait) == 0);
			TRACE("t=%llu acquire wait=%llu\n", (unsigned long long)now, (unsigned long long)wait);
			if (wait != 0)
				break;
			for (r = reqs; r < reqs + SLOTS && r->state != 0; r++)
				;
			if (r == reqs + SLOTS) { /* no room to track it: never sent */
				check(sluice_pacer_cancel(p, "k", 1) == 0);
				break;
			}
			r->state = 1;
			r->blind = !learnt;
			r->granted = now;
			TRACE("  -> slot %d%s\n", (int)(r - reqs), r->blind ? " blind" : "");
			break;
		}
		case 2: /* the server counts it */
			if (r->state != 1)
				break;
			if (now / WINDOW != window) {
				window = now / WINDOW;
				count = 0;
			}
			if (count < limit) {
				count++;
				r->status = 200;
			} else {
				r->status = 429;
				check(r->blind); /* the property */
			}
			TRACE("t=%llu serve slot %d: %d, window %llu count %llu\n", (unsigned long long)now,
			      (int)(r - reqs), r->status, (unsigned long long)window, (unsigned long long)count);
			memset(&r->l, 0, sizeof(r->l));
			r->l.has_limit = r->l.has_remaining = r->l.has_reset = true;
			r->l.limit = limit;
			r->l.remaining = limit - count;
			r->served_at = now;
			r->window_end = (window + 1) * WINDOW;
			r->state = 2;
			break;
		case 3: { /* its answer is read */
			if (r->state != 2)
				break;
			uint64_t from = absolute ? now : r->served_at;
			r->l.reset_ns = r->window_end > from ? r->window_end - from : 0;
			TRACE("t=%llu answer slot %d: %d remaining %llu reset %llu (sent %llu)\n", (unsigned long long)now,
			      (int)(r - reqs), r->status, (unsigned long long)r->l.remaining,
			      (unsigned long long)r->l.reset_ns, (unsigned long long)r->granted);
			struct sluice_backoff_request q = {.status = r->status, .idempotent = true, .attempt = 1,
							   .limits = &r->l};
			struct sluice_backoff_plan plan;
			check(sluice_pacer_update(p, "k", 1, &q, r->granted, now, &rng, &plan) == 0);
			learnt |= r->l.reset_ns > 0; /* an ended window's answer teaches nothing */
			r->state = 0;
			break;
		}
		default: /* never sent after all */
			if (r->state != 1)
				break;
			check(sluice_pacer_cancel(p, "k", 1) == 0);
			TRACE("t=%llu cancel slot %d\n", (unsigned long long)now, (int)(r - reqs));
			r->state = 0;
			break;
		}
	}
	sluice_pacer_destroy(p);
	return 0;
}
