/*
 * template.c - response templates (sluice/template.h): compile once,
 * render per request.
 *
 * Compiling turns the text into its literal bytes (braces unescaped) and a
 * list of (offset, placeholder) pairs in increasing offset order, all inside
 * the caller's fixed-size struct. Every error is found here, with the byte
 * offset of its cause, so rendering cannot fail except for want of room.
 *
 * Rendering walks the list: literal bytes up to the next offset, then the
 * value. Output goes through a writer that copies what fits and counts
 * everything, so one pass gives both the text and the size needed, and
 * nothing is ever written past cap. Numbers use the http layer's rules:
 * durations round up (a client that waits what it is told never arrives
 * early), the Retry-After forms share sluice__http_wait_units() with the
 * Retry-After header, and every number is clamped to the RFC 9651 Integer
 * range.
 *
 * JSON escaping of string values decodes UTF-8 by RFC 3629's table of
 * well-formed sequences (the only lead/continuation ranges it admits), so
 * overlong forms, surrogates and code points above U+10FFFF are refused
 * byte by byte and replaced with \ufffd: the output is always valid JSON
 * string content whatever bytes the value holds.
 */
#include <sluice/template.h>
#include <sluice/http.h>
#include <sluice/sf.h>

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/util_internal.h"
#include "http/http_internal.h"

#define NS_PER_MS 1000000ull

enum field {
	F_LIMIT,
	F_REMAINING,
	F_RESET_S,
	F_RESET_MS,
	F_RESET_UNIX,
	F_RESET_UNIX_MS,
	F_RETRY_AFTER_S,
	F_RETRY_AFTER_MS,
	F_RETRY_AFTER_UNIX,
	F_LIMIT_NAME,
	F_SCOPE,
	F_POLICY,
	F_REASON,
	F_STATUS,
	F_COUNT
};

static const char *const field_names[F_COUNT] = {
	"limit",	 "remaining",	   "reset_s",	 "reset_ms", "reset_unix",
	"reset_unix_ms", "retry_after_s",  "retry_after_ms", "retry_after_unix",
	"limit_name",	 "scope",	   "policy",	 "reason",   "status",
};

static const char *const reason_words[] = {"none", "rate", "quota", "concurrency", "capacity", "never"};

/* ------------------------------------------------------------------------
 * Compile
 * ------------------------------------------------------------------------ */

static bool name_byte(char c)
{
	return (c >= 'a' && c <= 'z') || c == '_';
}

__attribute__((format(printf, 4, 5))) static int fail(struct sluice_template_error *err, int code, size_t offset,
						       const char *fmt, ...)
{
	if (err != NULL) {
		va_list ap;
		err->code = code;
		err->offset = offset;
		va_start(ap, fmt);
		vsnprintf(err->message, sizeof(err->message), fmt, ap);
		va_end(ap);
	}
	return code;
}

int sluice_template_compile(const char *text, size_t len, unsigned flags, struct sluice_template *out,
			    struct sluice_template_error *err)
{
	if ((text == NULL && len > 0) || out == NULL || (flags & ~(unsigned)SLUICE_TEMPLATE_JSON) != 0)
		return fail(err, SLUICE_EINVAL, 0, "NULL text or template, or unknown flags");
	if (len > SLUICE_TEMPLATE_MAX_TEXT)
		return fail(err, SLUICE_ETOOBIG, SLUICE_TEMPLATE_MAX_TEXT, "template longer than %d bytes",
			    SLUICE_TEMPLATE_MAX_TEXT);
	out->flags_ = flags;
	out->text_len_ = 0;
	out->nfields_ = 0;
	size_t w = 0;
	for (size_t i = 0; i < len;) {
		char c = text[i];
		if (c == '}') {
			if (i + 1 < len && text[i + 1] == '}') {
				out->text_[w++] = '}';
				i += 2;
				continue;
			}
			return fail(err, SLUICE_ESYNTAX, i, "unmatched '}': write '}}' for a literal brace");
		}
		if (c != '{') {
			out->text_[w++] = c;
			i++;
			continue;
		}
		if (i + 1 < len && text[i + 1] == '{') {
			out->text_[w++] = '{';
			i += 2;
			continue;
		}
		size_t j = i + 1;
		while (j < len && name_byte(text[j]))
			j++;
		if (j == len)
			return fail(err, SLUICE_ESYNTAX, i, "unterminated '{': write '{{' for a literal brace");
		if (text[j] != '}' || j == i + 1)
			return fail(err, SLUICE_ESYNTAX, i,
				    "expected a placeholder name (a-z, '_') and '}' after '{'; '{{' for a brace");
		size_t n = j - i - 1;
		int id = -1;
		for (int f = 0; f < F_COUNT; f++)
			if (strlen(field_names[f]) == n && memcmp(field_names[f], text + i + 1, n) == 0)
				id = f;
		if (id < 0)
			return fail(err, SLUICE_ENOTFOUND, i, "unknown placeholder '{%.*s}'",
				    (int)SLUICE_MIN(n, (size_t)40), text + i + 1);
		if (out->nfields_ == SLUICE_TEMPLATE_MAX_FIELDS)
			return fail(err, SLUICE_ETOOBIG, i, "more than %d placeholders", SLUICE_TEMPLATE_MAX_FIELDS);
		out->fields_[out->nfields_].at = (uint16_t)w;
		out->fields_[out->nfields_].id = (uint8_t)id;
		out->fields_[out->nfields_].reserved_ = 0;
		out->nfields_++;
		i = j + 1;
	}
	out->text_len_ = (uint16_t)w;
	return SLUICE_OK;
}

/* ------------------------------------------------------------------------
 * Render
 * ------------------------------------------------------------------------ */

struct writer {
	char *buf;
	size_t cap;
	size_t len; /* bytes produced so far, written or not */
};

static inline void put(struct writer *o, const char *s, size_t n)
{
	if (o->len < o->cap) {
		size_t k = SLUICE_MIN(n, o->cap - o->len);
		memcpy(o->buf + o->len, s, k);
	}
	o->len += n;
}

static void put_uint(struct writer *o, uint64_t v)
{
	char tmp[20];
	size_t n = 0;

	v = SLUICE_MIN(v, (uint64_t)SLUICE_SF_INTEGER_MAX);
	do {
		tmp[sizeof(tmp) - 1 - n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	put(o, tmp + sizeof(tmp) - n, n);
}

/* Length of the well-formed UTF-8 sequence at s[0..n), or 0 (RFC 3629). */
static size_t utf8_sequence(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	size_t need;
	unsigned char lo = 0x80, hi = 0xBF; /* range of the second byte */

	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF) {
		need = 2;
	} else if (c >= 0xE0 && c <= 0xEF) {
		need = 3;
		if (c == 0xE0)
			lo = 0xA0; /* no overlong */
		else if (c == 0xED)
			hi = 0x9F; /* no surrogate */
	} else if (c >= 0xF0 && c <= 0xF4) {
		need = 4;
		if (c == 0xF0)
			lo = 0x90; /* no overlong */
		else if (c == 0xF4)
			hi = 0x8F; /* nothing above U+10FFFF */
	} else {
		return 0;
	}
	if (n < need || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t k = 2; k < need; k++)
		if (s[k] < 0x80 || s[k] > 0xBF)
			return 0;
	return need;
}

static void put_json_string(struct writer *o, const char *str, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *s = (const unsigned char *)str;
	size_t run = 0; /* start of the bytes copied as they are */

	for (size_t i = 0; i < n;) {
		unsigned char c = s[i];
		if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
			i++;
			continue;
		}
		size_t k = c >= 0x80 ? utf8_sequence(s + i, n - i) : 0;
		if (k > 0) {
			i += k;
			continue;
		}
		put(o, str + run, i - run);
		if (c == '"' || c == '\\') {
			char e[2] = {'\\', (char)c};
			put(o, e, 2);
		} else if (c < 0x20) {
			char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
			put(o, e, 6);
		} else {
			put(o, "\\ufffd", 6);
		}
		run = ++i;
	}
	put(o, str + run, n - run);
}

static uint64_t ceil_div(uint64_t a, uint64_t b)
{
	return a / b + (a % b != 0);
}

static void put_field(struct writer *o, unsigned id, const struct sluice_template_values *v, bool json)
{
	const struct sluice_decision *d = &v->decision;
	const char *s = NULL;
	size_t n = 0;

	switch (id) {
	case F_LIMIT:
		put_uint(o, d->limit);
		return;
	case F_REMAINING:
		put_uint(o, d->remaining);
		return;
	case F_RESET_S:
		put_uint(o, ceil_div(d->reset_ns, SLUICE_NS_PER_SEC));
		return;
	case F_RESET_MS:
		put_uint(o, ceil_div(d->reset_ns, NS_PER_MS));
		return;
	case F_RESET_UNIX:
		put_uint(o, ceil_div(sluice__add_sat(v->now_unix_ns, d->reset_ns), SLUICE_NS_PER_SEC));
		return;
	case F_RESET_UNIX_MS:
		put_uint(o, ceil_div(sluice__add_sat(v->now_unix_ns, d->reset_ns), NS_PER_MS));
		return;
	case F_RETRY_AFTER_S:
		put_uint(o, sluice_http_retry_after_s(d));
		return;
	case F_RETRY_AFTER_MS:
		put_uint(o, d->allowed ? 0 : sluice__http_wait_units(d->retry_after_ns, NS_PER_MS));
		return;
	case F_RETRY_AFTER_UNIX:
		put_uint(o, d->allowed ? 0
				       : d->retry_after_ns == SLUICE_NEVER
					 ? (uint64_t)SLUICE_SF_INTEGER_MAX
					 : ceil_div(sluice__add_sat(v->now_unix_ns, d->retry_after_ns),
						    SLUICE_NS_PER_SEC));
		return;
	case F_STATUS:
		put_uint(o, v->status);
		return;
	case F_LIMIT_NAME:
		s = v->limit_name;
		n = v->limit_name_len;
		break;
	case F_SCOPE:
		s = v->scope;
		n = v->scope_len;
		break;
	case F_POLICY:
		s = v->policy;
		n = v->policy_len;
		break;
	default: /* F_REASON */
		s = v->reason;
		n = v->reason_len;
		if (s == NULL) {
			s = d->reason < sizeof(reason_words) / sizeof(reason_words[0]) ? reason_words[d->reason] : "";
			n = strlen(s);
		}
		break;
	}
	if (s == NULL)
		return;
	if (json)
		put_json_string(o, s, n);
	else
		put(o, s, n);
}

int sluice_template_render(const struct sluice_template *tpl, const struct sluice_template_values *values,
			   char *buf, size_t cap, size_t *size)
{
	if (size != NULL)
		*size = 0;
	if (tpl == NULL || values == NULL || (buf == NULL && cap > 0))
		return SLUICE_EINVAL;
	struct writer o = {buf, cap, 0};
	bool json = (tpl->flags_ & SLUICE_TEMPLATE_JSON) != 0;
	size_t at = 0;
	for (unsigned k = 0; k < tpl->nfields_; k++) {
		const struct sluice_template_field_ *f = &tpl->fields_[k];
		put(&o, tpl->text_ + at, f->at - at);
		at = f->at;
		put_field(&o, f->id, values, json);
	}
	put(&o, tpl->text_ + at, tpl->text_len_ - at);
	put(&o, "", 1); /* the NUL */
	if (size != NULL)
		*size = o.len;
	return o.len <= cap ? SLUICE_OK : SLUICE_ETRUNC;
}
