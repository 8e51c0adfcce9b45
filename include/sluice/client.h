/*
 * sluice/client.h - the client side of HTTP rate limiting: parse the
 * rate-limit fields of a response into one plain struct, parse Retry-After,
 * HTTP-dates, RFC 3339 timestamps and duration strings, plan retries
 * (backoff with jitter), pace requests when the quota runs low, keep that
 * state across responses (struct sluice_pacer), and pick polling intervals.
 *
 * Header families understood (docs/http.md has the formats and examples):
 *   - drafts 08-11: RateLimit and RateLimit-Policy as RFC 9651 Lists of
 *     String-named items ("default";r=50;t=30 / "default";q=100;w=60);
 *   - draft 07: RateLimit as a Dictionary (limit=100, remaining=50, reset=5);
 *   - drafts 04-06: RateLimit-Limit, -Remaining, -Reset (Items) and
 *     RateLimit-Policy as a List of Integers (100;w=60);
 *   - the de-facto X-RateLimit-Limit/-Remaining/-Reset (also X-Rate-Limit-*),
 *     with -Reset-After (relative seconds), -Bucket and -Resource (a bucket
 *     id), a policy list under -Limit ("100, 100;window=60") and resets as
 *     numbers, HTTP-dates or RFC 3339 timestamps;
 *   - vendor tables: per-dimension fields such as
 *     x-ratelimit-remaining-tokens (Go-duration resets), *-ratelimit-
 *     requests-reset (RFC 3339), X-RateLimit-Requests-* and
 *     "used/limit" call counters; callers add their own tables
 *     (struct sluice_client_rule) without patching the library;
 *   - Retry-After (delay-seconds, fractional seconds rounded up, or an
 *     HTTP-date; repeated values resolve to the longest wait);
 *   - Date, the server's clock, which anchors absolute resets when the
 *     caller's clock disagrees with it.
 *
 * Tolerance: a malformed field is ignored as a whole, as the drafts require
 * ("Malformed RateLimit header fields MUST be ignored"), and its family bit
 * is set in .ignored; the others still count. Field names match
 * case-insensitively; repeated field lines are combined with ", " before
 * parsing (RFC 9110 5.3, RFC 9651 4.2).
 *
 * Threads and ordering: the parsers, the planner and the pacing helpers
 * are pure and reentrant (no global or static mutable state, no
 * allocation; a parse uses under 14 KiB of stack); struct sluice_rng is the
 * caller's and must not be shared between threads without a lock. A
 * struct sluice_pacer may be used by any number of threads at once: each
 * call holds the pacer's mutex for its whole duration, so calls are
 * linearizable and an update that returned before an acquire started is
 * seen by that acquire.
 */
#ifndef SLUICE_CLIENT_H
#define SLUICE_CLIENT_H

#include "common.h"
#include "http.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SLUICE_CLIENT_MAX_POLICIES 8
#define SLUICE_CLIENT_NAME_MAX 64   /* bytes kept of a policy name, NUL included */
#define SLUICE_CLIENT_UNIT_MAX 32   /* bytes kept of a quota unit, NUL included */
#define SLUICE_CLIENT_PK_MAX 32     /* bytes kept of a partition key */
#define SLUICE_CLIENT_BUCKET_MAX 64 /* bytes kept of a bucket id, NUL included */
/* Largest combined field value parsed; a longer one is ignored. */
#define SLUICE_CLIENT_FIELD_MAX 4096
/* Largest number of RFC 9651 nodes a structured field may need; a field
 * needing more (over ~20 policies with all their parameters) is ignored. */
#define SLUICE_CLIENT_SF_NODES_MAX 128
/* How far the caller's clock may run ahead of a response's Date (whole
 * seconds, truncated) before Date becomes the anchor of absolute times. */
#define SLUICE_CLIENT_DATE_SLACK_NS (2 * SLUICE_NS_PER_SEC)

/* Header families, as bits of sluice_client_limits.seen, .source and .ignored. */
enum sluice_client_family {
	SLUICE_CLIENT_DRAFT08 = 1u << 0,     /* drafts 08-11 Lists */
	SLUICE_CLIENT_DRAFT07 = 1u << 1,     /* draft 07 Dictionary */
	SLUICE_CLIENT_DRAFT06 = 1u << 2,     /* drafts 04-06 separate fields */
	SLUICE_CLIENT_X = 1u << 3,           /* X-RateLimit-* / X-Rate-Limit-* */
	SLUICE_CLIENT_RETRY_AFTER = 1u << 4, /* Retry-After */
	SLUICE_CLIENT_VENDOR = 1u << 5,      /* a built-in vendor table (docs/http.md) */
	SLUICE_CLIENT_CALLER = 1u << 6,      /* a rule of the caller's table */
	SLUICE_CLIENT_DATE = 1u << 7,        /* Date */
};

/* One quota policy or dimension: from RateLimit-Policy (quota, window,
 * unit) and/or the RateLimit item of the same name and partition key
 * (remaining, reset); or one dimension of a vendor or caller table
 * ("requests", "tokens", ...). Policies of drafts 04-07 (100;w=60) have an
 * empty name. */
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
	uint32_t seen;    /* enum sluice_client_family bits of well-formed fields */
	uint32_t source;  /* the one family that filled limit/remaining/reset, or 0 */
	uint32_t ignored; /* family bits of fields present but malformed (ignored) */
	bool has_limit;
	bool has_remaining;
	bool has_reset;
	bool has_retry_after;
	bool has_date;           /* date_unix_s: the Date field */
	bool clock_anchored;     /* absolute times were measured from Date */
	bool reset_past;         /* the governing reset is now or already past: no
				  * wait to honour (sluice_backoff_plan() backs off) */
	bool policies_truncated; /* more than SLUICE_CLIENT_MAX_POLICIES */
	uint64_t limit;
	uint64_t remaining;
	uint64_t reset_ns;       /* delay from now until the reset, saturating */
	uint64_t retry_after_ns; /* delay from now, saturating (SLUICE_NEVER) */
	int64_t date_unix_s;
	uint32_t governing; /* index in policies of the dimension behind limit/
			     * remaining/reset, or UINT32_MAX */
	uint32_t bucket_len;
	char bucket[SLUICE_CLIENT_BUCKET_MAX]; /* server's bucket id, NUL-terminated */
	uint32_t npolicies;
	struct sluice_client_policy policies[SLUICE_CLIENT_MAX_POLICIES];
};

/* ---- caller-provided header tables ------------------------------------------ */

/* What a field says. */
enum sluice_client_role {
	SLUICE_CLIENT_ROLE_LIMIT = 1,       /* the quota */
	SLUICE_CLIENT_ROLE_REMAINING = 2,   /* what is left */
	SLUICE_CLIENT_ROLE_USED = 3,        /* what is used (remaining = limit - used) */
	SLUICE_CLIENT_ROLE_RESET = 4,       /* when the quota resets (any time format) */
	SLUICE_CLIENT_ROLE_RESET_AFTER = 5, /* the same, relative; wins over RESET */
	SLUICE_CLIENT_ROLE_WINDOW = 6,      /* the window's length */
	SLUICE_CLIENT_ROLE_RETRY_AFTER = 7, /* a wait, as Retry-After */
	SLUICE_CLIENT_ROLE_BUCKET = 8,      /* the server's bucket id (1-63 bytes of
					     * visible ASCII or SP) */
};

/* How its value is written. */
enum sluice_client_format {
	SLUICE_CLIENT_FMT_COUNT = 1,        /* 1*DIGIT [ "." 1*DIGIT ], fraction dropped */
	SLUICE_CLIENT_FMT_USED_OF_LIMIT = 2,/* "32/40": used and limit (role USED) */
	SLUICE_CLIENT_FMT_SECONDS = 3,      /* delta seconds, fraction rounded up to 1 ns */
	SLUICE_CLIENT_FMT_MILLISECONDS = 4, /* delta milliseconds */
	SLUICE_CLIENT_FMT_UNIX_S = 5,       /* Unix seconds, fraction allowed */
	SLUICE_CLIENT_FMT_UNIX_MS = 6,      /* Unix milliseconds */
	SLUICE_CLIENT_FMT_RFC3339 = 7,      /* sluice_client_rfc3339_parse() */
	SLUICE_CLIENT_FMT_DURATION = 8,     /* Go duration: sluice_client_duration_parse() */
	SLUICE_CLIENT_FMT_HTTP_DATE = 9,    /* sluice_http_date_parse() */
	SLUICE_CLIENT_FMT_AUTO = 10,        /* number by the size rule of
					     * sluice_client_reset_delay(), HTTP-date,
					     * RFC 3339 or duration, first that parses */
	SLUICE_CLIENT_FMT_TEXT = 11,        /* opaque text (role BUCKET) */
};

/* One field: its name (matched case-insensitively), the dimension it
 * belongs to (the policy name it fills; "" is allowed), the dimension's
 * unit ("" or NULL: requests; anything else, e.g. "tokens", is counted
 * with the caller's cost in the pacer), its role and format. */
struct sluice_client_rule {
	const char *name;
	const char *dimension;
	const char *unit;
	uint8_t role;   /* enum sluice_client_role */
	uint8_t format; /* enum sluice_client_format */
};

/* Flags of struct sluice_client_parse_opts. */
#define SLUICE_CLIENT_NO_VENDOR_TABLES 1u /* only the caller's rules and the IETF/X families */
#define SLUICE_CLIENT_NO_DATE_ANCHOR 2u   /* absolute times against now_unix_ns only */

struct sluice_client_parse_opts {
	size_t size;                           /* sizeof(struct sluice_client_parse_opts) */
	const struct sluice_client_rule *rules; /* the caller's table, consulted first */
	size_t nrules;
	uint32_t flags;
};

/*
 * Parse the response fields[0..n) into *out (fully overwritten).
 *
 * Classification, first match wins for limit/remaining/reset:
 *   0. the caller's rules (opts->rules), if any field matched one;
 *   1. RateLimit as a List whose items are all Strings: drafts 08-11. The
 *      governing item is the one with the least r (ties: the longest t);
 *      limit is its policy's q when RateLimit-Policy names it (same name
 *      and pk; else the one policy of that name; else the same name and
 *      no pk).
 *   2. else RateLimit as a Dictionary with limit and reset: draft 07.
 *   3. else (lenient) RateLimit as a List of Token-named items (the drafts'
 *      old appendix examples): as 1.
 *   4. RateLimit-Limit/-Remaining/-Reset: drafts 04-06 (Reset also as Unix
 *      seconds, by the size rule).
 *   5. the built-in vendor tables (docs/http.md); several dimensions give
 *      the most restrictive one: an exhausted one with the longest reset,
 *      else the least share of its limit left.
 *   6. X-RateLimit-* (X-Rate-Limit-*): plain numbers; Reset may also be an
 *      HTTP-date or RFC 3339; Reset-After (seconds, fraction allowed) wins
 *      over Reset; Remaining may have a fraction ("599.0"), which is dropped.
 *   Retry-After is parsed independently (sluice_client_retry_after()) and,
 *   when present, wins over every reset in sluice_backoff_plan().
 *
 * Reset numbers other than t and the explicit formats of a rule are
 * classified by size, the rule of sluice_client_reset_delay().
 * now_unix_ns is the caller's Unix time (CLOCK_REALTIME) in ns. When the
 * response has a valid Date and now_unix_ns is not within
 * [Date, Date + SLUICE_CLIENT_DATE_SLACK_NS], absolute times are measured
 * from Date instead (clock_anchored), unless opts has
 * SLUICE_CLIENT_NO_DATE_ANCHOR.
 *
 * Returns 0 (even if nothing was recognised: out->seen == 0) or
 * SLUICE_EINVAL (out NULL, fields NULL with n > 0, opts->size too small, a
 * rule with a NULL name or an unknown role or format).
 */
SLUICE_API int sluice_client_parse_ex(const struct sluice_http_field *fields, size_t n,
				      uint64_t now_unix_ns, const struct sluice_client_parse_opts *opts,
				      struct sluice_client_limits *out);

/* sluice_client_parse_ex() with opts NULL: every built-in family. */
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
 * Retry-After (RFC 9110 10.2.3): delay-seconds (1*DIGIT), a fractional
 * number of seconds (1*DIGIT "." 1*DIGIT, rounded up to whole seconds: a
 * client must not come back early), or an HTTP-date, optionally surrounded
 * by SP/HTAB. A combined value of several (a field repeated by stacked
 * proxies, "30, 30") is accepted when every member is valid and gives the
 * longest wait. Writes the delay from now_unix_ns to *delay_ns: seconds
 * saturate at SLUICE_NEVER; a past date gives 0. Returns 0, SLUICE_ESYNTAX
 * (anything else, e.g. "-1", "+1", "1e3", "30,", an empty value) or
 * SLUICE_EINVAL (NULL arguments).
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

/*
 * An RFC 3339 date-time, with the ISO 8601 spellings servers use:
 * YYYY-MM-DD ("T" / "t" / SP) hh:mm [":" ss [ "." 1*DIGIT ]] ("Z" / "z" /
 * ("+" / "-") hh [":"] mm). Years 0000-9999; fields range-checked (second
 * 60 is a leap second, read as the next second; offsets up to 23:59).
 * Writes Unix seconds (negative before 1970) and the fraction in ns
 * (digits beyond 9 are dropped). Returns 0, SLUICE_ESYNTAX, SLUICE_EINVAL.
 */
SLUICE_API int sluice_client_rfc3339_parse(const char *s, size_t len, int64_t *unix_s,
					   uint32_t *frac_ns);

/*
 * A duration as Go's time.Duration.String() writes it and
 * time.ParseDuration() reads it: one or more 1*DIGIT [ "." *DIGIT ] unit
 * (also "." 1*DIGIT unit), units ns, us, µs (U+00B5 or U+03BC), ms, s, m,
 * h, e.g. "6m0s", "20ms", "1h2m3.5s"; or a lone "0". No sign. Fractions are
 * rounded up to whole ns; the sum saturates at UINT64_MAX. Returns 0,
 * SLUICE_ESYNTAX, SLUICE_EINVAL.
 */
SLUICE_API int sluice_client_duration_parse(const char *s, size_t len, uint64_t *ns);

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

/* Defaults: 5 attempts, +-25% jitter, 1 s doubling to a 60 s cap, server
 * waits honoured up to 6 h (a common client library's default cap). */
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
 *   - 1xx-3xx: DONE.
 *   - A rate-limit answer: 429, or another 4xx whose fields carry
 *     Retry-After or remaining 0 with a reset (some APIs answer their
 *     limits with 403). It is retryable for any method (the request was refused,
 *     not processed). Other 4xx but 408: STOP (not retryable).
 *   - 408, 5xx and status 0 only when req->idempotent (retrying a create
 *     after a 5xx may duplicate it).
 *   - STOP once req->attempt >= max_attempts.
 *   - Retry-After, when present, sets the wait (RateLimit draft section 7:
 *     it takes precedence). Else, on a rate-limit answer or a 503 with
 *     remaining == 0 and a reset in the future, the reset sets it. These
 *     server-dictated waits are jittered upwards only, by [0, jitter] of
 *     the wait, so the client never comes back earlier than told; one
 *     longer than max_wait_ns gives STOP.
 *   - Else (a reset already past included: no tight loop) exponential:
 *     base_ns * 2^(attempt-1), capped at cap_ns, then jittered by +-jitter
 *     and capped again.
 * Returns 0; SLUICE_EINVAL (NULL pointer, opts->size too small, invalid
 * options, attempt 0).
 */
SLUICE_API int sluice_backoff_plan(const struct sluice_backoff_opts *opts,
				   const struct sluice_backoff_request *req, struct sluice_rng *rng,
				   struct sluice_backoff_plan *plan);

/*
 * Pre-emptive pacing: the delay before the next request so that the
 * remaining quota lasts until the reset ("slow down preemptively
 * when it's low"). Retry-After, if present, is returned as is. Else, with
 * remaining and reset known: remaining == 0 gives the reset; remaining
 * above low_permille/1000 of a known limit gives 0 (no pacing while the
 * quota is ample); otherwise reset_ns / remaining (the remaining requests
 * spread evenly, the last one landing at the reset). Unknown values give 0.
 * Pure; limits NULL gives 0.
 */
SLUICE_API uint64_t sluice_backoff_pace(const struct sluice_client_limits *limits,
					uint32_t low_permille);

/* ---- the pacer: state across responses ------------------------------------ */

/*
 * A pacer keeps, per host (the caller's key) or per server bucket, what
 * the last responses said: every dimension's remaining budget, counted
 * down locally by each request let through, its reset on the caller's
 * monotonic clock, and a block until a Retry-After or backoff ends.
 * docs/http.md ("The pacer") has the rules and the argument.
 *
 * Memory is bounded: max_entries entries of fixed size, allocated at
 * create. An entry is a key (host) or a bucket id the server sent; a key
 * whose responses named a bucket shares that bucket's state. When every
 * entry is taken, a new key reuses the least recently used entry that
 * holds no pending wait and no request in flight; if there is none,
 * sluice_pacer_acquire() answers without keeping state for that key
 * (wait 0, nothing counted) and sluice_pacer_update() returns SLUICE_EFULL
 * after filling the plan (the retry decision never depends on the table).
 *
 * Threads: one mutex per pacer, held for the whole of each call (no
 * callback runs under it). Calls are linearizable in the order they take
 * the mutex; the local budget never lets more requests through than the
 * lowest count a response of the current window allowed, less the
 * requests in flight when it was learnt.
 */
struct sluice_pacer;

struct sluice_pacer_opts {
	size_t size;              /* sizeof(struct sluice_pacer_opts) */
	uint32_t max_entries;     /* keys and buckets together: 1..4096 (a
				   * linear scan per call: hosts, not users) */
	uint32_t low_permille;    /* spread the rest once at most this share of a
				   * known limit is left (0..1000; 1000: always) */
	uint32_t jitter_permille; /* upward jitter on each reset learnt, 0..1000
				   * (Retry-After and backoff waits take
				   * backoff.jitter_permille) */
	uint64_t poll_ns;         /* wait of an exhausted dimension with no known
				   * reset while answers are in flight (> 0) */
	struct sluice_backoff_opts backoff; /* retry rules (attempts, 5xx, caps) */
};

/* Defaults: 256 entries, spread from 20% left, +10% jitter, 10 ms poll,
 * and sluice_backoff_opts_default(). */
SLUICE_API void sluice_pacer_opts_default(struct sluice_pacer_opts *opts);

/* Returns 0 with *out set; SLUICE_EINVAL (NULL, bad options), SLUICE_ENOMEM. */
SLUICE_API int sluice_pacer_create(const struct sluice_pacer_opts *opts, struct sluice_pacer **out);

/* Frees the pacer; NULL is a no-op. No other call may be running. */
SLUICE_API void sluice_pacer_destroy(struct sluice_pacer *pacer);

/* Largest key, in bytes. */
#define SLUICE_PACER_KEY_MAX 120

/*
 * May a request to key go now? cost_units is the request's expected cost
 * in the units of non-request dimensions (tokens); request dimensions
 * count 1. now_ns: the caller's monotonic clock.
 * On 0 with *wait_ns == 0: go; the request is counted (each dimension's
 * budget and the in-flight count), and the caller must report its outcome
 * with sluice_pacer_update() for the same key (or sluice_pacer_cancel()).
 * On 0 with *wait_ns > 0: nothing counted; ask again after *wait_ns (the
 * longest of: the entry's block, each exhausted dimension's reset plus its
 * jitter, each low dimension's spacing).
 * Returns SLUICE_EINVAL (NULL pointer) or SLUICE_EKEY (empty key or longer
 * than SLUICE_PACER_KEY_MAX).
 */
SLUICE_API int sluice_pacer_acquire(struct sluice_pacer *pacer, const char *key, size_t key_len,
				    uint64_t cost_units, uint64_t now_ns, uint64_t *wait_ns);

/*
 * The response to a request let through by sluice_pacer_acquire() for key
 * at sent_ns (that call's now_ns): req->limits (parsed fields, or NULL when
 * there was no response), status, idempotent and attempt as for
 * sluice_backoff_plan(), whose decision is written to *plan. The entry
 * learns the fields: each dimension's budget can only fall to what the
 * response says less the requests still in flight (it rises only when a
 * reset passes); its reset becomes now_ns + reset plus upward jitter drawn
 * from rng, or later, never earlier, and is not taken from a response to a
 * request sent before the last reset; a rate-limit answer blocks the entry
 * until the plan's delay has passed (every thread waits, not only the one
 * that was refused). A bucket id in the fields moves the key's state to
 * that bucket.
 * Returns 0, SLUICE_EINVAL (NULL pointer, attempt 0), SLUICE_EKEY, or
 * SLUICE_EFULL (see above; *plan is still valid).
 */
SLUICE_API int sluice_pacer_update(struct sluice_pacer *pacer, const char *key, size_t key_len,
				   const struct sluice_backoff_request *req, uint64_t sent_ns,
				   uint64_t now_ns, struct sluice_rng *rng,
				   struct sluice_backoff_plan *plan);

/* A request let through that was never sent: its in-flight count is
 * returned (its budget stays spent: the server may have seen it).
 * Returns 0, SLUICE_EINVAL, SLUICE_EKEY or SLUICE_ENOTFOUND (no entry). */
SLUICE_API int sluice_pacer_cancel(struct sluice_pacer *pacer, const char *key, size_t key_len);

/*
 * Polling cadence. The interval starts at initial_ns, is multiplied by
 * growth_permille/1000 after every poll and kept within [initial_ns,
 * max_ns]; once the operation has been pending for slow_after_ns (if
 * non-zero) it is at least slow_ns. Fill one per kind of operation, e.g.
 * {30 s, 120 s, 1500, 0, 0}: 30, 45, 67.5, 101.25, 120 s ...
 */
struct sluice_poll_cadence {
	uint64_t initial_ns;
	uint64_t max_ns;
	uint32_t growth_permille;
	uint64_t slow_after_ns;
	uint64_t slow_ns;
};

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
