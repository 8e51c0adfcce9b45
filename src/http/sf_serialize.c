/*
 * sf_serialize.c - Structured Field Values (RFC 9651) written into the
 * caller's buffer, without allocation: section 4.1's serialization of each
 * bare item type, parameters, inner lists, lists and dictionaries, and
 * sluice_sf_write_nodes(), which writes back a tree sluice_sf_parse()
 * produced (sf_parse.c).
 *
 * A writer never overruns its buffer: past the capacity it keeps counting,
 * so sluice_sf_writer_finish() reports the length a retry needs. The first
 * error (a value the RFC cannot represent: a key, token or string outside
 * its alphabet, an integer or decimal out of range) sticks and later writes
 * do nothing. Byte sequences are written with padding and zero pad bits.
 */
#include <sluice/sf.h>

#include <string.h>

#include "common/util_internal.h"
#include "http/sf_internal.h"

void sluice_sf_writer_init(struct sluice_sf_writer *w, char *buf, size_t cap)
{
	w->buf = buf;
	w->cap = buf != NULL ? cap : 0;
	w->len = 0;
	w->err = 0;
}

int sluice_sf_writer_finish(struct sluice_sf_writer *w, size_t *needed)
{
	if (needed != NULL)
		*needed = sluice__add_sat(w->len, 1);
	if (w->err != 0)
		return w->err;
	if (w->len >= w->cap)
		return SLUICE_ETRUNC;
	w->buf[w->len] = '\0';
	return 0;
}

static void put(struct sluice_sf_writer *w, char c)
{
	if (w->err != 0)
		return;
	if (w->len < w->cap)
		w->buf[w->len] = c;
	w->len++;
}

static void set_err(struct sluice_sf_writer *w, int err)
{
	if (w->err == 0)
		w->err = err;
}

void sluice_sf_write_raw(struct sluice_sf_writer *w, const char *s, size_t n)
{
	if (w->err != 0)
		return;
	if (w->len < w->cap && n > 0)
		memcpy(w->buf + w->len, s, SLUICE_MIN(n, w->cap - w->len));
	w->len += n;
}

static void write_u64(struct sluice_sf_writer *w, uint64_t v)
{
	char digits[20];
	size_t n = sluice__u64_to_dec(digits, v);

	for (size_t i = 0; i < n; i++)
		put(w, digits[i]);
}

void sluice_sf_write_integer(struct sluice_sf_writer *w, int64_t v)
{
	if (w->err != 0)
		return;
	if (v > SLUICE_SF_INTEGER_MAX || v < SLUICE_SF_INTEGER_MIN) {
		set_err(w, SLUICE_ERANGE);
		return;
	}
	if (v < 0) {
		put(w, '-');
		v = -v;
	}
	write_u64(w, (uint64_t)v);
}

void sluice_sf_write_uint_clamped(struct sluice_sf_writer *w, uint64_t v)
{
	sluice_sf_write_integer(w, v > (uint64_t)SLUICE_SF_INTEGER_MAX ? SLUICE_SF_INTEGER_MAX
								      : (int64_t)v);
}

void sluice_sf_write_decimal_milli(struct sluice_sf_writer *w, int64_t milli)
{
	if (w->err != 0)
		return;
	/* 12 integer digits: |milli| < 10^15 */
	if (milli >= INT64_C(1000000000000000) || milli <= -INT64_C(1000000000000000)) {
		set_err(w, SLUICE_ERANGE);
		return;
	}
	if (milli < 0) {
		put(w, '-');
		milli = -milli;
	}
	write_u64(w, (uint64_t)(milli / 1000));
	put(w, '.');
	int64_t f = milli % 1000;
	put(w, (char)('0' + f / 100));
	if (f % 100 != 0) {
		put(w, (char)('0' + f / 10 % 10));
		if (f % 10 != 0)
			put(w, (char)('0' + f % 10));
	}
}

void sluice_sf_write_string(struct sluice_sf_writer *w, const char *s, size_t n)
{
	if (w->err != 0)
		return;
	for (size_t i = 0; i < n; i++) {
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e) {
			set_err(w, SLUICE_EINVAL);
			return;
		}
	}
	put(w, '"');
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '"' || s[i] == '\\')
			put(w, '\\');
		put(w, s[i]);
	}
	put(w, '"');
}

void sluice_sf_write_token(struct sluice_sf_writer *w, const char *s, size_t n)
{
	if (w->err != 0)
		return;
	if (n == 0 || (!is_alpha((unsigned char)s[0]) && s[0] != '*')) {
		set_err(w, SLUICE_EINVAL);
		return;
	}
	for (size_t i = 1; i < n; i++) {
		int c = (unsigned char)s[i];
		if (!is_tchar(c) && c != ':' && c != '/') {
			set_err(w, SLUICE_EINVAL);
			return;
		}
	}
	sluice_sf_write_raw(w, s, n);
}

void sluice_sf_write_key(struct sluice_sf_writer *w, const char *s, size_t n)
{
	if (w->err != 0)
		return;
	if (n == 0 || (!is_lcalpha((unsigned char)s[0]) && s[0] != '*')) {
		set_err(w, SLUICE_EINVAL);
		return;
	}
	for (size_t i = 1; i < n; i++) {
		if (!is_key_char((unsigned char)s[i])) {
			set_err(w, SLUICE_EINVAL);
			return;
		}
	}
	sluice_sf_write_raw(w, s, n);
}

static const char b64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Encode 1-3 bytes as one padded quantum. */
static void b64_put_quantum(struct sluice_sf_writer *w, const uint8_t *q, size_t m)
{
	uint32_t v = (uint32_t)q[0] << 16;
	if (m > 1)
		v |= (uint32_t)q[1] << 8;
	if (m > 2)
		v |= q[2];
	put(w, b64_alphabet[v >> 18 & 63]);
	put(w, b64_alphabet[v >> 12 & 63]);
	put(w, m > 1 ? b64_alphabet[v >> 6 & 63] : '=');
	put(w, m > 2 ? b64_alphabet[v & 63] : '=');
}

void sluice_sf_write_binary(struct sluice_sf_writer *w, const uint8_t *p, size_t n)
{
	if (w->err != 0)
		return;
	put(w, ':');
	for (size_t i = 0; i < n; i += 3)
		b64_put_quantum(w, p + i, SLUICE_MIN(3, n - i));
	put(w, ':');
}

void sluice_sf_write_boolean(struct sluice_sf_writer *w, bool v)
{
	if (w->err != 0)
		return;
	put(w, '?');
	put(w, v ? '1' : '0');
}

void sluice_sf_write_date(struct sluice_sf_writer *w, int64_t unix_s)
{
	if (w->err != 0)
		return;
	if (unix_s > SLUICE_SF_INTEGER_MAX || unix_s < SLUICE_SF_INTEGER_MIN) {
		set_err(w, SLUICE_ERANGE);
		return;
	}
	put(w, '@');
	sluice_sf_write_integer(w, unix_s);
}

static void display_put_byte(struct sluice_sf_writer *w, uint8_t c)
{
	static const char hex[] = "0123456789abcdef";

	if (c == '%' || c == '"' || c < 0x20 || c > 0x7e) {
		put(w, '%');
		put(w, hex[c >> 4]);
		put(w, hex[c & 15]);
	} else {
		put(w, (char)c);
	}
}

void sluice_sf_write_display(struct sluice_sf_writer *w, const uint8_t *p, size_t n)
{
	struct utf8_state u = {0, 0x80, 0xbf};

	if (w->err != 0)
		return;
	for (size_t i = 0; i < n; i++) {
		if (!utf8_feed(&u, p[i])) {
			set_err(w, SLUICE_EINVAL);
			return;
		}
	}
	if (u.need != 0) {
		set_err(w, SLUICE_EINVAL);
		return;
	}
	put(w, '%');
	put(w, '"');
	for (size_t i = 0; i < n; i++)
		display_put_byte(w, p[i]);
	put(w, '"');
}

/* A parsed node's bare value, re-encoded canonically from its wire form. */
static void write_bare(struct sluice_sf_writer *w, const struct sluice_sf_node *n)
{
	switch (n->type) {
	case SLUICE_SF_INTEGER:
		sluice_sf_write_integer(w, n->value);
		break;
	case SLUICE_SF_DECIMAL:
		sluice_sf_write_decimal_milli(w, n->value);
		break;
	case SLUICE_SF_STRING:
		/* the parser admits only \" and \\ escapes: already canonical */
		put(w, '"');
		sluice_sf_write_raw(w, n->str, n->str_len);
		put(w, '"');
		break;
	case SLUICE_SF_TOKEN:
		sluice_sf_write_token(w, n->str, n->str_len);
		break;
	case SLUICE_SF_BINARY: {
		size_t data = b64_data_len(n);
		put(w, ':');
		for (size_t i = 0; i < data; i += 4) {
			uint8_t q[3];
			size_t m = b64_quantum(n->str + i, SLUICE_MIN(4, data - i), q);
			b64_put_quantum(w, q, m);
		}
		put(w, ':');
		break;
	}
	case SLUICE_SF_BOOLEAN:
		sluice_sf_write_boolean(w, n->value != 0);
		break;
	case SLUICE_SF_DATE:
		sluice_sf_write_date(w, n->value);
		break;
	case SLUICE_SF_DISPLAY:
		put(w, '%');
		put(w, '"');
		for (size_t i = 0; i < n->str_len; i++) {
			uint8_t c = (uint8_t)n->str[i];
			if (c == '%' && i + 2 < n->str_len) {
				c = (uint8_t)(hex_value((unsigned char)n->str[i + 1]) * 16 +
					      hex_value((unsigned char)n->str[i + 2]));
				i += 2;
			}
			display_put_byte(w, c);
		}
		put(w, '"');
		break;
	default:
		set_err(w, SLUICE_EINVAL);
	}
}

static void write_params(struct sluice_sf_writer *w, const struct sluice_sf_node *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		put(w, ';');
		sluice_sf_write_key(w, p[i].key, p[i].key_len);
		if (p[i].type == SLUICE_SF_BOOLEAN && p[i].value != 0)
			continue;
		put(w, '=');
		write_bare(w, &p[i]);
	}
}

/* One member (item or inner list) without its key; returns its span. */
static size_t write_member(struct sluice_sf_writer *w, const struct sluice_sf_node *n)
{
	size_t at = 1;

	if (n->type == SLUICE_SF_INNER_LIST) {
		put(w, '(');
		for (uint32_t i = 0; i < n->nitems; i++) {
			const struct sluice_sf_node *item = &n[at];
			if (i > 0)
				put(w, ' ');
			if (item->type == SLUICE_SF_INNER_LIST) {
				set_err(w, SLUICE_EINVAL);
				return at;
			}
			write_bare(w, item);
			write_params(w, item + 1, item->nparams);
			at += 1 + item->nparams;
		}
		put(w, ')');
	} else {
		write_bare(w, n);
	}
	write_params(w, n + at, n->nparams);
	return at + n->nparams;
}

void sluice_sf_write_nodes(struct sluice_sf_writer *w, enum sluice_sf_kind kind,
			   const struct sluice_sf_node *nodes, size_t members)
{
	size_t at = 0;

	if (w->err != 0)
		return;
	if (kind == SLUICE_SF_KIND_ITEM && (members != 1 || nodes[0].type == SLUICE_SF_INNER_LIST)) {
		set_err(w, SLUICE_EINVAL);
		return;
	}
	for (size_t m = 0; m < members && w->err == 0; m++) {
		const struct sluice_sf_node *n = &nodes[at];
		if (m > 0)
			sluice_sf_write_raw(w, ", ", 2);
		if (kind == SLUICE_SF_KIND_DICT) {
			sluice_sf_write_key(w, n->key, n->key_len);
			if (n->type == SLUICE_SF_BOOLEAN && n->value != 0) {
				write_params(w, n + 1, n->nparams);
				at += 1 + n->nparams;
				continue;
			}
			put(w, '=');
		}
		at += write_member(w, n);
	}
}
