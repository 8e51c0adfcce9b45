/*
 * sluice/http.h - rate-limit response headers and 429 bodies, rendered from
 * decisions into a caller-provided buffer (the server side of HTTP).
 *
 * Input is plain data: for each limit that applies to a request, its name,
 * the struct sluice_decision it returned and its quota and window. Output is
 * text: the rate-limit header families public APIs use (docs/http.md has the
 * exact formats and where each comes from):
 *
 *   SLUICE_HTTP_DRAFT11   RateLimit-Policy: "name";q=100;w=60, ...
 *                         RateLimit: "name";r=50;t=30, ...
 *                         (draft-ietf-httpapi-ratelimit-headers-08..11)
 *   SLUICE_HTTP_DRAFT07   RateLimit-Policy: 100;w=60
 *                         RateLimit: limit=100, remaining=50, reset=5
 *   SLUICE_HTTP_DRAFT06   RateLimit-Limit / -Remaining / -Reset (delta s)
 *                         RateLimit-Policy: 100;w=60 (drafts 04-06)
 *   SLUICE_HTTP_X_DELTA   X-RateLimit-Limit / -Remaining / -Reset, Reset
 *   SLUICE_HTTP_X_UNIX_S  as delta seconds, Unix seconds or Unix
 *   SLUICE_HTTP_X_UNIX_MS milliseconds
 *   SLUICE_HTTP_RETRY_AFTER  Retry-After: <seconds> on a denial
 *   SLUICE_HTTP_CUSTOM    limit / remaining / reset / used / resource under
 *                         names the caller chooses (sluice_http_render_custom)
 *
 * Rounding: every duration is rendered in whole seconds rounded up (a client
 * that waits the rendered time never comes back early); Unix times are
 * rounded up likewise. Every integer is clamped to the RFC 9651 Integer
 * range (at most 999,999,999,999,999); a Retry-After of SLUICE_NEVER
 * renders as that maximum.
 *
 * Several limits: the draft-11 fields list every limit, in the order given.
 * The single-limit families (draft-06/07, X-RateLimit) describe the
 * governing limit: a denying one if any (the longest wait), else the one
 * with the least remaining (ties: the longest reset), as draft-06 requires
 * ("the time window with the lower RateLimit-Remaining"). RateLimit-Policy
 * of draft-06/07 lists every limit that has a window.
 *
 * Degraded decisions: if any decision has degraded set (the limiter could
 * not evaluate and applied its fail mode), no rate-limit field is rendered,
 * only Retry-After on a denial (an API that fails open "may allow the request
 * without setting X-RateLimit-* headers").
 *
 * No allocation.
 *
 * Memory ordering: every function here is pure: it reads only its arguments
 * and writes only the caller's buffers, so it may be called from any thread
 * at any time and orders no memory. The caller keeps its inputs unchanged
 * for the duration of a call.
 */
#ifndef SLUICE_HTTP_H
#define SLUICE_HTTP_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A header field as name/value byte ranges (not necessarily NUL-terminated).
 * Used for output here and for input by sluice/client.h. */
struct sluice_http_field {
	const char *name;
	size_t name_len;
	const char *value;
	size_t value_len;
};

/* One limit's state for rendering. */
struct sluice_http_limit {
	/* Policy name (draft-11 only; required there), NUL-terminated, bytes
	 * 0x20-0x7E; rendered as an SF String (quotes and backslashes escaped). */
	const char *name;
	/* The decision of this limit (or the policy's decision, for one limit). */
	struct sluice_decision decision;
	/* Quota units per window: q of draft-11, the Limit of the other
	 * families. 0: use decision.limit. */
	uint64_t quota;
	/* Window in ns (w, rounded up to whole seconds, at least 1). 0: unknown;
	 * w is omitted and the draft-06/07 policy list skips this limit. */
	uint64_t window_ns;
	/* draft-11 qu (NUL-terminated, bytes 0x20-0x7E); NULL: omitted, which
	 * means "requests". */
	const char *quota_unit;
	/* draft-11 pk (any bytes, base64-rendered); NULL or length 0: omitted. */
	const uint8_t *partition_key;
	size_t partition_key_len;
	/* The custom family's resource field (NUL-terminated, bytes
	 * 0x20-0x7E); NULL: the name. Appended (docs/build.md, "ABI"). */
	const char *resource;
};

/*
 * Header families to render, as bits. A policy's "headers" directive names
 * one of them (struct sluice_policy_spec.families holds these bits). The
 * client side has its own bits (enum sluice_client_family in
 * sluice/client.h) for a different question, which families a response was
 * seen to carry: there drafts 08-11 are one family and every X-RateLimit
 * spelling and reset encoding another, because a parser takes whatever
 * variant it is sent while a renderer must choose exactly one.
 */
enum sluice_http_families {
	SLUICE_HTTP_DRAFT11 = 1u << 0,
	SLUICE_HTTP_DRAFT07 = 1u << 1,
	SLUICE_HTTP_DRAFT06 = 1u << 2,
	SLUICE_HTTP_X_DELTA = 1u << 3,
	SLUICE_HTTP_X_UNIX_S = 1u << 4,
	SLUICE_HTTP_X_UNIX_MS = 1u << 5,
	SLUICE_HTTP_RETRY_AFTER = 1u << 6,
	/* Fields named by the caller (struct sluice_http_custom); rendered
	 * only by sluice_http_render_custom(). */
	SLUICE_HTTP_CUSTOM = 1u << 7,
};

/*
 * Render the header fields of `families` (an OR of enum
 * sluice_http_families: at most one of DRAFT11/DRAFT07/DRAFT06, since they
 * share field names, and at most one X_* encoding) for `n` limits as
 * HTTP/1.1 header lines, "Name: value\r\n" each, NUL-terminated, in this
 * order: Retry-After, then the IETF family, then X-RateLimit-*.
 *
 * now_unix_ns: Unix time (CLOCK_REALTIME) in ns; used only by the X_UNIX_*
 * encodings, which add it to the governing decision's reset_ns.
 *
 * *size (may be NULL) receives the bytes needed including the NUL, whether
 * or not they fit; the text length is *size - 1. Nothing is written past
 * cap; on SLUICE_ETRUNC buf holds a prefix (not NUL-terminated).
 *
 * Returns 0; SLUICE_EINVAL (n == 0, limits NULL, unknown or conflicting
 * family bits, a draft-11 limit with no name, a name or unit with a byte
 * outside 0x20-0x7E); SLUICE_ETRUNC (cap too small; *size says how much is
 * needed). Renders nothing, successfully, when there is nothing to say
 * (allowed and degraded).
 */
SLUICE_API int sluice_http_render_headers(unsigned families, const struct sluice_http_limit *limits,
					  size_t n, uint64_t now_unix_ns, char *buf, size_t cap,
					  size_t *size);

/*
 * The same fields as name/value pairs, for servers that add headers one by
 * one (libmicrohttpd, nginx modules). Names point to static strings; values
 * are written NUL-terminated into buf. fields[0..*nfields) are filled;
 * *nfields receives the count needed (at most 8) even when max_fields is too
 * small. Returns as sluice_http_render_headers(); SLUICE_ETRUNC when either
 * buf or fields is too small, and then no pointer in fields may be used.
 */
SLUICE_API int sluice_http_render_fields(unsigned families, const struct sluice_http_limit *limits,
					 size_t n, uint64_t now_unix_ns, char *buf, size_t cap,
					 size_t *size, struct sluice_http_field *fields,
					 size_t max_fields, size_t *nfields);

/* How the custom family writes its reset field. */
enum sluice_http_reset_form {
	SLUICE_HTTP_RESET_DELTA = 0,  /* seconds until the reset, rounded up */
	SLUICE_HTTP_RESET_UNIX_S = 1, /* Unix time of the reset, s, rounded up */
	SLUICE_HTTP_RESET_UNIX_MS = 2 /* Unix time of the reset, ms, rounded up */
};

/*
 * The custom family: header names of the provider's choice, each an HTTP
 * token (RFC 9110 5.6.2: ALPHA DIGIT and !#$%&'*+-.^_`|~), NUL-terminated;
 * NULL leaves that field out, so any subset can be rendered. Values
 * describe the governing limit (as the X-RateLimit family):
 *   limit      the quota (q; decision.limit when 0)
 *   remaining  decision.remaining
 *   reset      per reset_form
 *   used       limit - remaining (0 when remaining exceeds limit)
 *   resource   the limit's resource label, else its name (bytes 0x20-0x7E,
 *              rendered as they are)
 */
struct sluice_http_custom {
	const char *limit;
	const char *remaining;
	const char *reset;
	const char *used;
	const char *resource;
	uint8_t reset_form; /* enum sluice_http_reset_form */
};

/* Is name[0..len) an HTTP token (1 or more tchar bytes)? Pure. */
SLUICE_API bool sluice_http_is_token(const char *name, size_t len);

/*
 * sluice_http_render_fields() (fields not NULL) or
 * sluice_http_render_headers() (fields NULL: header lines; max_fields and
 * nfields ignored) with the custom family added: `families` may include
 * SLUICE_HTTP_CUSTOM, which renders custom's fields after every other
 * family (custom must then be non-NULL; it is ignored without the bit).
 * Retry-After, degraded decisions and rounding as above; *nfields at most
 * 13. SLUICE_EINVAL also for a custom name that is not a token, an unknown
 * reset_form, or a resource with a byte outside 0x20-0x7E; SLUICE_ETRUNC
 * when buf (or fields) is too small: nothing is cut silently. No
 * allocation.
 */
SLUICE_API int sluice_http_render_custom(unsigned families, const struct sluice_http_custom *custom,
					 const struct sluice_http_limit *limits, size_t n,
					 uint64_t now_unix_ns, char *buf, size_t cap, size_t *size,
					 struct sluice_http_field *fields, size_t max_fields,
					 size_t *nfields);

/* Retry-After value of a denial: retry_after_ns in whole seconds rounded up,
 * at least 1 (a denial never says "retry now"), clamped to
 * 999,999,999,999,999 (SLUICE_NEVER included). 0 for an allowed decision.
 * Pure; thread-safe. */
SLUICE_API uint64_t sluice_http_retry_after_s(const struct sluice_decision *d);

/* 429 body styles, named after their JSON shape. A policy's "body" directive
 * selects one (struct sluice_policy_spec.body holds these values). */
enum sluice_http_body_style {
	/* {"data":null,"error":{"code":"RATE_LIMITED","message":"Too many requests"}} */
	SLUICE_HTTP_BODY_JSON_DATA_ERROR = 1,
	/* {"error":{"code":"rate_limited","message":"Too many requests.
	 * Retry after N seconds.","retryAfterSec":N}}, or for a concurrency
	 * denial {"error":{"code":"concurrent_limit","retryAfterSec":N}};
	 * N = sluice_http_retry_after_s(). */
	SLUICE_HTTP_BODY_JSON_ERROR = 2,
	/* No body at all. */
	SLUICE_HTTP_BODY_EMPTY = 3,
};

/*
 * Render the 429 body for a denial into buf (NUL-terminated; *size as in
 * sluice_http_render_headers(); an empty body is "" with *size 1).
 * Returns 0; SLUICE_EINVAL (d NULL, d->allowed, unknown style);
 * SLUICE_ETRUNC.
 */
SLUICE_API int sluice_http_render_body(enum sluice_http_body_style style,
				       const struct sluice_decision *d, char *buf, size_t cap,
				       size_t *size);

/* The Content-Type of a body style: "application/json", or NULL for
 * SLUICE_HTTP_BODY_EMPTY and unknown styles. */
SLUICE_API const char *sluice_http_body_content_type(enum sluice_http_body_style style);

#ifdef __cplusplus
}
#endif

#endif /* SLUICE_HTTP_H */
