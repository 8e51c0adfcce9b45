/*
 * sluice/template.h - response templates: the body (or any text) of a
 * refusal, written by the API's owner with placeholders for the decision's
 * values, compiled once and rendered per request with no allocation.
 *
 * Syntax (docs/http.md, "Response templates"): text with placeholders
 * "{name}", name one of
 *
 *   {limit}             the governing limit's quota (decision.limit)
 *   {remaining}         decision.remaining
 *   {reset_s}           decision.reset_ns in seconds, rounded up
 *   {reset_ms}          decision.reset_ns in milliseconds, rounded up
 *   {reset_unix}        now_unix_ns + reset_ns as Unix seconds, rounded up
 *   {reset_unix_ms}     the same in Unix milliseconds, rounded up
 *   {retry_after_s}     the Retry-After seconds: sluice_http_retry_after_s()
 *   {retry_after_ms}    the same rule in milliseconds (at least 1 on a denial)
 *   {retry_after_unix}  now_unix_ns + retry_after_ns as Unix seconds, rounded up
 *   {limit_name}        values.limit_name
 *   {scope}             values.scope
 *   {policy}            values.policy
 *   {reason}            values.reason, or the decision's reason as a word:
 *                       none, rate, quota, concurrency, capacity, never
 *   {status}            values.status (the HTTP status code)
 *
 * and "{{" and "}}" for a literal brace. Numbers are decimal, clamped to
 * 999,999,999,999,999 (the RFC 9651 Integer range, also exact in JSON's
 * doubles); a wait of SLUICE_NEVER renders as that maximum. Retry-After
 * forms are 0 for an allowed decision.
 *
 * Escaping: with SLUICE_TEMPLATE_JSON the string placeholders are escaped
 * for the inside of a JSON string (RFC 8259): '"' and '\' get a backslash,
 * bytes 0x00-0x1F become \u00XX, and every byte that does not begin a
 * well-formed UTF-8 sequence (RFC 3629: no overlong form, no surrogate,
 * nothing above U+10FFFF) becomes \ufffd; the template's own text is
 * copied as written (its author writes the JSON around the placeholders).
 * With SLUICE_TEMPLATE_PLAIN every value is copied as it is.
 *
 * Limits: at most SLUICE_TEMPLATE_MAX_TEXT bytes of template text and
 * SLUICE_TEMPLATE_MAX_FIELDS placeholders; a compiled template is a
 * fixed-size, caller-owned struct (no allocation, no pointer into the
 * source text), immutable once compiled: any number of threads may render
 * it at once.
 */
#ifndef SLUICE_TEMPLATE_H
#define SLUICE_TEMPLATE_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SLUICE_TEMPLATE_MAX_TEXT 4096 /* bytes of template text */
#define SLUICE_TEMPLATE_MAX_FIELDS 64 /* placeholders in one template */

enum sluice_template_flags {
	SLUICE_TEMPLATE_PLAIN = 0, /* values copied as they are */
	SLUICE_TEMPLATE_JSON = 1,  /* string values escaped for a JSON string */
};

/* A placeholder's position in the compiled text (private). */
struct sluice_template_field_ {
	uint16_t at; /* offset in text_ where the value goes */
	uint8_t id;
	uint8_t reserved_;
};

/* A compiled template. Fields are private: compile, then render. */
struct sluice_template {
	uint32_t flags_;
	uint16_t text_len_;
	uint16_t nfields_;
	struct sluice_template_field_ fields_[SLUICE_TEMPLATE_MAX_FIELDS];
	char text_[SLUICE_TEMPLATE_MAX_TEXT]; /* the literal text, braces unescaped */
};

/* Why a compile failed: code (as returned), offset (0-based byte offset in
 * the text of the offending '{' or '}', or of the first byte past the limit)
 * and a NUL-terminated message. A config parser turns offset into a line
 * and a column. */
struct sluice_template_error {
	int code;
	size_t offset;
	char message[96];
};

/*
 * Compile text[0..len) (not NUL-terminated; any bytes) with `flags` (one
 * of enum sluice_template_flags) into *out. Returns 0, or, with *err filled
 * when err is not NULL and *out left unusable:
 *   SLUICE_EINVAL    NULL text with len > 0, NULL out, unknown flags
 *   SLUICE_ESYNTAX   a '{' with no '}' before the end, a '}' not part of
 *                    "}}" or of a placeholder, a name outside [a-z_]
 *   SLUICE_ENOTFOUND a well-formed "{name}" that names no placeholder
 *   SLUICE_ETOOBIG   more than SLUICE_TEMPLATE_MAX_TEXT bytes of text or
 *                    more than SLUICE_TEMPLATE_MAX_FIELDS placeholders
 * Thread-safe (no shared state); never reads past text[len - 1].
 */
SLUICE_API int sluice_template_compile(const char *text, size_t len, unsigned flags,
				       struct sluice_template *out, struct sluice_template_error *err);

/* The values a template is rendered with. Strings are (pointer, length);
 * NULL renders as empty. */
struct sluice_template_values {
	struct sluice_decision decision;
	uint64_t now_unix_ns; /* Unix time (CLOCK_REALTIME) for the *_unix forms */
	unsigned status;      /* {status}: the HTTP status code */
	const char *limit_name;
	size_t limit_name_len;
	const char *scope;
	size_t scope_len;
	const char *policy;
	size_t policy_len;
	const char *reason; /* NULL: the word for decision.reason */
	size_t reason_len;
};

/*
 * Render a compiled template into buf, NUL-terminated. *size (may be NULL)
 * receives the bytes needed including the NUL, whether or not they fit.
 * Nothing is written past cap; on SLUICE_ETRUNC buf holds a prefix (not
 * NUL-terminated). Returns 0, SLUICE_EINVAL (NULL tpl or values, NULL buf
 * with cap > 0), SLUICE_ETRUNC (cap < *size). No allocation, no lock;
 * thread-safe (tpl is only read).
 */
SLUICE_API int sluice_template_render(const struct sluice_template *tpl,
				      const struct sluice_template_values *values, char *buf, size_t cap,
				      size_t *size);

#ifdef __cplusplus
}
#endif

#endif /* SLUICE_TEMPLATE_H */
