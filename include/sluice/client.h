/*
 * sluice/client.h - the client side of HTTP rate limiting: parse the
 * rate-limit fields of a response into one plain struct, parse Retry-After
 * and HTTP-dates, plan retries (backoff with jitter), pace requests when
 * the quota runs low, and pick polling intervals.
 *
 * Header families understood (docs/http.md has the formats and examples):
 *   - drafts 08-11: RateLimit and RateLimit-Policy as RFC 9651 Lists of
 *     String-named items ("default";r=50;t=30 / "default";q=100;w=60);
 *   - draft 07: RateLimit as a Dictionary (limit=100, remaining=50, reset=5);
 *   - drafts 04-06: RateLimit-Limit, -Remaining, -Reset (Items) and
 *     RateLimit-Policy as a List of Integers (100;w=60);
 *   - the de-facto X-RateLimit-Limit/-Remaining/-Reset (also X-Rate-Limit-*);
 *   - Retry-After (delay-seconds or HTTP-date).
 *
 * Tolerance: a malformed field is ignored as a whole, as the drafts require
 * ("Malformed RateLimit header fields MUST be ignored"); the others still
 * count. Field names match case-insensitively; repeated field lines are
 * combined with ", " before parsing (RFC 9110 5.3, RFC 9651 4.2).
 *
 * No allocation; every function is reentrant (no global state; the random
 * source of the backoff planner is a caller-owned state).
 */
#ifndef SLUICE_CLIENT_H
#define SLUICE_CLIENT_H

#include "common.h"
#include "http.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SLUICE_CLIENT_MAX_POLICIES 8
#define SLUICE_CLIENT_NAME_MAX 64 /* bytes kept of a policy name, NUL included */
#define SLUICE_CLIENT_UNIT_MAX 32 /* bytes kept of a quota unit, NUL included */
#define SLUICE_CLIENT_PK_MAX 32   /* bytes kept of a partition key */
/* Largest combined field value parsed; a longer one is ignored. */
#define SLUICE_CLIENT_FIELD_MAX 4096

/* Header families, as bits of sluice_client_limits.seen and .source. */
enum sluice_client_family {
	SLUICE_CLIENT_DRAFT08 = 1u << 0,     /* drafts 08-11 Lists */
	SLUICE_CLIENT_DRAFT07 = 1u << 1,     /* draft 07 Dictionary */
	SLUICE_CLIENT_DRAFT06 = 1u << 2,     /* drafts 04-06 separate fields */
	SLUICE_CLIENT_X = 1u << 3,           /* X-RateLimit-* / X-Rate-Limit-* */
	SLUICE_CLIENT_RETRY_AFTER = 1u << 4, /* Retry-After */
};

/* One quota policy: from RateLimit-Policy (quota, window, unit) and/or the
 * RateLimit item of the same name and partition key (remaining, reset).
 * Policies of drafts 04-07 (100;w=60) have an empty name. */
struct sluice_client_policy {
	char name[SLUICE_CLIENT_NAME_MAX]; /* NUL-terminated, maybe truncated */
	char unit[SLUICE_CLIENT_UNIT_MAX]; /* qu; "" when absent ("requests") */
	uint8_t pk[SLUICE_CLIENT_PK_MAX];
	uint32_t pk_len; /* bytes in pk (the full key's length may be larger) */
	bool name_truncated;
	bool pk_truncated;
	bool has_quota;     /* quota: q, or the draft 04-07 policy integer */
	bool has_window;    /* window_s: w */
	bool has_remaining; /* remaining: r */
	bool has_reset;     /* reset_ns: t */
	uint64_t quota;
	uint64_t window_s;
	uint64_t remaining;
	uint64_t reset_ns;
};

struct sluice_client_limits {
	uint32_t seen;   /* enum sluice_client_family bits of well-formed fields */
	uint32_t source; /* the one family that filled limit/remaining/reset, or 0 */
	bool has_limit;
	bool has_remaining;
	bool has_reset;
	bool has_retry_after;
	bool policies_truncated; /* more than SLUICE_CLIENT_MAX_POLICIES */
	uint64_t limit;
	uint64_t remaining;
	uint64_t reset_ns;       /* delay from now until the reset, saturating */
	uint64_t retry_after_ns; /* delay from now, saturating (SLUICE_NEVER) */
	uint32_t npolicies;
	struct sluice_client_policy policies[SLUICE_CLIENT_MAX_POLICIES];
};

/*
 * Parse the response fields[0..n) into *out (fully overwritten).
 *
 * Classification, first match wins for limit/remaining/reset:
 *   1. RateLimit as a List whose items are all Strings: drafts 08-11. The
 *      governing item is the one with the least r (ties: the longest t);
 *      limit is its policy's q when RateLimit-Policy names it (same name
 *      and pk, else same name and no pk).
 *   2. else RateLimit as a Dictionary with limit and reset: draft 07.
 *   3. else (lenient) RateLimit as a List of Token-named items (the drafts'
 *      old appendix examples): as 1.
 *   4. RateLimit-Limit/-Remaining/-Reset: drafts 04-06 (and GitLab).
 *   5. X-RateLimit-* (X-Rate-Limit-*): plain numbers; Reset may also be an
 *      HTTP-date; Remaining may have a fraction (Reddit), which is dropped.
 *   Retry-After is parsed independently (sluice_client_retry_after()) and,
 *   when present, wins over every reset in sluice_backoff_plan().
 *
 * Reset values other than t (draft 07 reset, RateLimit-Reset, X-*-Reset)
 * are classified by size, the rule of sluice_client_reset_delay().
 * now_unix_ns is the caller's Unix time (CLOCK_REALTIME) in ns.
 *
 * Returns 0 (even if nothing was recognised: out->seen == 0) or
 * SLUICE_EINVAL (out NULL, or fields NULL with n > 0).
 */
SLUICE_API int sluice_client_parse(const struct sluice_http_field *fields, size_t n,
				   uint64_t now_unix_ns, struct sluice_client_limits *out);

/*
 * A reset value v in seconds (integer part; frac_ns its fraction in ns) as
 * a delay from now_unix_ns, telling its three meanings apart by size:
 *
 *   v >= 10^12            Unix milliseconds (10^12 ms = 2001-09-09; Unix
 *                         seconds stay below 10^12 until the year 33658)
 *   10^9 <= v < 10^12     Unix seconds (10^9 s = 2001-09-09T01:46:40Z)
 *   v < 10^9              delta seconds (under 31.7 years)
 *
 * A time in the past gives 0; results saturate at UINT64_MAX. Pure.
 */
SLUICE_API uint64_t sluice_client_reset_delay(uint64_t v, uint32_t frac_ns, uint64_t now_unix_ns);

/*
 * Retry-After (RFC 9110 10.2.3): delay-seconds (1*DIGIT; no sign, no
 * fraction) or an HTTP-date, optionally surrounded by SP/HTAB. Writes the
 * delay from now_unix_ns to *delay_ns: seconds saturate at SLUICE_NEVER; a
 * past date gives 0. Returns 0, SLUICE_ESYNTAX (anything else, e.g. "-1",
 * "+1", "1.0", "30, 15", an empty value) or SLUICE_EINVAL (NULL arguments).
 */
SLUICE_API int sluice_client_retry_after(const char *value, size_t len, uint64_t now_unix_ns,
					 uint64_t *delay_ns);

/*
 * An HTTP-date (RFC 9110 5.6.7), strictly: IMF-fixdate
 * ("Sun, 06 Nov 1994 08:49:37 GMT"), RFC 850 ("Sunday, 06-Nov-94 08:49:37
 * GMT") or asctime ("Sun Nov  6 08:49:37 1994"), case-sensitive, single
 * spaces, day and time fields range-checked (day within its month, hour
 * 00-23, minute 00-59, second 00-60 where 60 is a leap second and reads as
 * the next second). The day name must be spelled right but is not checked
 * against the date. RFC 850's two-digit year is the one that is not more
 * than 50 years after now_unix_ns (RFC 9110's rule).
 * Writes Unix seconds to *unix_s. Returns 0, SLUICE_ESYNTAX, SLUICE_EINVAL.
 */
SLUICE_API int sluice_http_date_parse(const char *s, size_t len, uint64_t now_unix_ns,
				      int64_t *unix_s);

/* ---- backoff planner ------------------------------------------------------ */

/* splitmix64: a caller-owned random state (any seed; deterministic). */
struct sluice_rng {
	uint64_t state;
};

/* Next 64 random bits; advances *rng. Not thread-safe on one state. */
SLUICE_API uint64_t sluice_rng_next(struct sluice_rng *rng);

struct sluice_backoff_opts {
	size_t size;              /* sizeof(struct sluice_backoff_opts) */
	uint32_t max_attempts;    /* attempts in all, the first included: 1..16 */
	uint32_t jitter_permille; /* jitter, 0..1000; 250 = +-25% */
	uint64_t base_ns;         /* first exponential wait (> 0) */
	uint64_t cap_ns;          /* largest exponential wait (>= base_ns) */
	uint64_t max_wait_ns;     /* longest server-dictated wait to honour */
};

/* Defaults (seeds 000 and 004): 5 attempts, +-25% jitter, 1 s doubling to
 * a 60 s cap, server waits honoured up to 6 h (urllib3's default cap). */
SLUICE_API void sluice_backoff_opts_default(struct sluice_backoff_opts *opts);

/* What happened to the last attempt. */
struct sluice_backoff_request {
	int status;       /* HTTP status; 0: no response (connection failed) */
	bool idempotent;  /* safe to repeat: GET, HEAD, PUT, DELETE, OPTIONS, or
			   * a request with an idempotency key */
	uint32_t attempt; /* attempts made so far, the last one included (>= 1) */
	const struct sluice_client_limits *limits; /* its parsed fields, or NULL */
};

enum sluice_backoff_verdict {
	SLUICE_BACKOFF_DONE = 0,  /* not an error: nothing to retry */
	SLUICE_BACKOFF_RETRY = 1, /* retry after delay_ns */
	SLUICE_BACKOFF_STOP = 2,  /* surface the error; do not retry */
};

enum sluice_backoff_why {
	SLUICE_BACKOFF_WHY_NONE = 0,
	SLUICE_BACKOFF_WHY_RETRY_AFTER = 1,   /* waiting out Retry-After */
	SLUICE_BACKOFF_WHY_RESET = 2,         /* remaining 0: waiting for the reset */
	SLUICE_BACKOFF_WHY_EXPONENTIAL = 3,   /* exponential backoff */
	SLUICE_BACKOFF_WHY_NOT_RETRYABLE = 4, /* a 4xx other than 408/429 */
	SLUICE_BACKOFF_WHY_UNSAFE = 5,        /* 5xx/no response, non-idempotent */
	SLUICE_BACKOFF_WHY_ATTEMPTS = 6,      /* max_attempts reached */
	SLUICE_BACKOFF_WHY_TOO_LONG = 7,      /* server wait beyond max_wait_ns */
};

struct sluice_backoff_plan {
	uint8_t verdict; /* enum sluice_backoff_verdict */
	uint8_t why;     /* enum sluice_backoff_why */
	uint64_t delay_ns;
};

/*
 * Decide whether and when to retry.
 *   - 1xx-3xx: DONE. 4xx other than 408 and 429: STOP (not retryable).
 *   - 429 is retryable for any method (the request was not processed);
 *     408, 5xx and status 0 only when req->idempotent (seed 000: retrying a
 *     create after a 5xx may duplicate it).
 *   - STOP once req->attempt >= max_attempts.
 *   - Retry-After, when present, sets the wait (RateLimit draft section 7:
 *     it takes precedence). Else, on 429/503 with remaining == 0 and a known
 *     reset, the reset sets it. These server-dictated waits are jittered
 *     upwards only, by [0, jitter] of the wait, so the client never comes
 *     back earlier than told; one longer than max_wait_ns gives STOP.
 *   - Else exponential: base_ns * 2^(attempt-1), capped at cap_ns, then
 *     jittered by +-jitter and capped again.
 * Returns 0; SLUICE_EINVAL (NULL pointer, opts->size too small, invalid
 * options, attempt 0).
 */
SLUICE_API int sluice_backoff_plan(const struct sluice_backoff_opts *opts,
				   const struct sluice_backoff_request *req, struct sluice_rng *rng,
				   struct sluice_backoff_plan *plan);

/*
 * Pre-emptive pacing: the delay before the next request so that the
 * remaining quota lasts until the reset (seed 000: "Slow down preemptively
 * when it's low"). Retry-After, if present, is returned as is. Else, with
 * remaining and reset known: remaining == 0 gives the reset; remaining
 * above low_permille/1000 of a known limit gives 0 (no pacing while the
 * quota is ample); otherwise reset_ns / remaining (the remaining requests
 * spread evenly, the last one landing at the reset). Unknown values give 0.
 * Pure; limits NULL gives 0.
 */
SLUICE_API uint64_t sluice_backoff_pace(const struct sluice_client_limits *limits,
					uint32_t low_permille);

/*
 * Polling cadence (seed 000's table). The interval starts at initial_ns,
 * is multiplied by growth_permille/1000 after every poll and kept within
 * [initial_ns, max_ns]; once the operation has been pending for
 * slow_after_ns (if non-zero) it is at least slow_ns.
 */
struct sluice_poll_cadence {
	uint64_t initial_ns;
	uint64_t max_ns;
	uint32_t growth_permille;
	uint64_t slow_after_ns;
	uint64_t slow_ns;
};

/* Seed 000: media-buy status, 30 s minimum growing x1.5 to 120 s. */
#define SLUICE_POLL_MEDIA_BUY_STATUS {30 * SLUICE_NS_PER_SEC, 120 * SLUICE_NS_PER_SEC, 1500, 0, 0}
/* Seed 000: discovery, every 5-10 s while pending, 15 s after one minute. */
#define SLUICE_POLL_DISCOVERY                                                                    \
	{5 * SLUICE_NS_PER_SEC, 10 * SLUICE_NS_PER_SEC, 1250, 60 * SLUICE_NS_PER_SEC,             \
	 15 * SLUICE_NS_PER_SEC}
/* Seed 000: storefront readiness, every 60 s. */
#define SLUICE_POLL_READINESS {60 * SLUICE_NS_PER_SEC, 60 * SLUICE_NS_PER_SEC, 1000, 0, 0}
/* Seed 000: campaign after execute, every 15-30 s. */
#define SLUICE_POLL_AFTER_EXECUTE {15 * SLUICE_NS_PER_SEC, 30 * SLUICE_NS_PER_SEC, 1250, 0, 0}

/*
 * The wait before the next poll. prev_ns: the previous wait (0 before the
 * first poll, which gives initial_ns); pending_ns: how long the operation
 * has been pending. Saturating arithmetic. Pure; NULL gives 0.
 */
SLUICE_API uint64_t sluice_poll_next_ns(const struct sluice_poll_cadence *cadence, uint64_t prev_ns,
					uint64_t pending_ns);

#ifdef __cplusplus
}
#endif

#endif /* SLUICE_CLIENT_H */
