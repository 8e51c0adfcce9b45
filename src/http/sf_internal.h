/*
 * sf_internal.h - what the Structured Field Values parser (sf_parse.c) and
 * serializer (sf_serialize.c) share: RFC 9651's character classes, base64
 * and percent-hex digits, and incremental UTF-8 validation. Not installed.
 */
#ifndef SLUICE_HTTP_SF_INTERNAL_H
#define SLUICE_HTTP_SF_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <sluice/sf.h>

static inline bool is_digit(int c)
{
	return c >= '0' && c <= '9';
}

static inline bool is_lcalpha(int c)
{
	return c >= 'a' && c <= 'z';
}

static inline bool is_alpha(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static inline bool is_tchar(int c)
{
	if (is_alpha(c) || is_digit(c))
		return true;
	return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static inline bool is_key_char(int c)
{
	return is_lcalpha(c) || is_digit(c) || c == '_' || c == '-' || c == '.' || c == '*';
}

static inline int b64_value(int c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

static inline int hex_value(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Incremental UTF-8 validation (RFC 3629: no overlongs, no surrogates, no
 * code point above U+10FFFF). */
struct utf8_state {
	uint32_t need; /* continuation bytes still expected */
	uint32_t lo;   /* allowed range of the next continuation byte */
	uint32_t hi;
};

static inline bool utf8_feed(struct utf8_state *s, unsigned b)
{
	if (s->need > 0) {
		if (b < s->lo || b > s->hi)
			return false;
		s->lo = 0x80;
		s->hi = 0xbf;
		s->need--;
		return true;
	}
	s->lo = 0x80;
	s->hi = 0xbf;
	if (b < 0x80)
		return true;
	if (b >= 0xc2 && b <= 0xdf) {
		s->need = 1;
	} else if (b >= 0xe0 && b <= 0xef) {
		s->need = 2;
		if (b == 0xe0)
			s->lo = 0xa0;
		if (b == 0xed)
			s->hi = 0x9f;
	} else if (b >= 0xf0 && b <= 0xf4) {
		s->need = 3;
		if (b == 0xf0)
			s->lo = 0x90;
		if (b == 0xf4)
			s->hi = 0x8f;
	} else {
		return false;
	}
	return true;
}

/* Decode the base64 quantum of up to 4 sextets at s (n = 2, 3 or 4 data
 * characters) into out; returns the byte count (n - 1). Pad bits ignored. */
static inline size_t b64_quantum(const char *s, size_t n, uint8_t out[3])
{
	uint32_t v = 0;

	for (size_t i = 0; i < 4; i++)
		v = (v << 6) | (uint32_t)(i < n ? b64_value((unsigned char)s[i]) : 0);
	out[0] = (uint8_t)(v >> 16);
	out[1] = (uint8_t)(v >> 8);
	out[2] = (uint8_t)v;
	return n - 1;
}

static inline size_t b64_data_len(const struct sluice_sf_node *node)
{
	size_t n = node->str_len;
	while (n > 0 && node->str[n - 1] == '=')
		n--;
	return n;
}

#endif /* SLUICE_HTTP_SF_INTERNAL_H */
