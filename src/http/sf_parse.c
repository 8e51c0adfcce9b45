/*
 * sf_parse.c - Structured Field Values (RFC 9651) without allocation: the
 * parser, and reading the nodes it wrote (member spans, parameters,
 * decoded values). The serializer is sf_serialize.c; the character classes
 * both use are in sf_internal.h.
 *
 * The parser is the RFC's section 4.2 algorithm, transcribed step for step
 * (a recursive-descent parser whose recursion depth is bounded by the grammar:
 * member -> inner list -> item -> parameter, no deeper), writing nodes into
 * the caller's array in document order. Two places need more than appending:
 *
 *   - a duplicate parameter key overwrites the earlier parameter node of the
 *     same item in place (parameters are leaves, one node each);
 *   - a duplicate dictionary key replaces the earlier member, whose subtree
 *     may have another size: the new subtree is rotated into the old one's
 *     place (three reversals, in place) and the old subtree squeezed out.
 *
 * Both are the "last value wins, first position kept" rule of the RFC's
 * ordered maps. Finding a duplicate is a linear scan (no memory to hash
 * into), so the number of dictionary members and of parameters per item is
 * capped at the RFC's required minimums (1024 and 256): the scans then cost
 * at most a few hundred comparisons per input byte, where unbounded they
 * were quadratic in the input (80 KB of dictionary took 0.4 s). Every node consumes at least one input byte (an item or
 * inner list at least one character, a parameter at least ';' and a key), so
 * `len` nodes always suffice.
 *
 * Bytes of strings, tokens, byte sequences and display strings are not
 * copied: nodes point into the input; sluice_sf_decode() produces values.
 *
 * Byte Sequences are validated strictly as base64 (alphabet A-Za-z0-9+/,
 * '=' only as trailing padding, padded length a multiple of 4, never a lone
 * sextet) but leniently as RFC 9651 asks: missing padding and non-zero pad
 * bits are accepted. The serializer writes padding and zero pad bits.
 */
#include <sluice/sf.h>

#include <string.h>

#include "common/util_internal.h"
#include "http/sf_internal.h"

struct parser {
	const char *in;
	size_t len;
	size_t pos;
	struct sluice_sf_node *nodes;
	size_t cap;
	size_t used;
	int err;
};

static int peek(const struct parser *p)
{
	return p->pos < p->len ? (unsigned char)p->in[p->pos] : -1;
}

static int fail(struct parser *p)
{
	if (p->err == 0)
		p->err = SLUICE_ESYNTAX;
	return p->err;
}

static struct sluice_sf_node *new_node(struct parser *p)
{
	if (p->used == p->cap) {
		p->err = SLUICE_ETRUNC;
		return NULL;
	}
	struct sluice_sf_node *n = &p->nodes[p->used++];
	memset(n, 0, sizeof(*n));
	return n;
}

static void skip_sp(struct parser *p)
{
	while (peek(p) == ' ')
		p->pos++;
}

static void skip_ows(struct parser *p)
{
	while (peek(p) == ' ' || peek(p) == '\t')
		p->pos++;
}

/* RFC 9651 4.2.4. Integer (at most 15 digits) or Decimal (at most 12 integer
 * and 1-3 fraction digits), the latter scaled to thousandths. */
static int parse_number(struct parser *p, struct sluice_sf_node *n)
{
	int64_t sign = 1;
	int64_t ipart = 0;
	int64_t frac = 0;
	size_t idigits = 0;
	size_t fdigits = 0;
	bool decimal = false;

	if (peek(p) == '-') {
		sign = -1;
		p->pos++;
	}
	if (!is_digit(peek(p)))
		return fail(p);
	for (;;) {
		int c = peek(p);
		if (is_digit(c)) {
			if (!decimal) {
				if (++idigits > 15)
					return fail(p);
				ipart = ipart * 10 + (c - '0');
			} else {
				if (++fdigits > 3)
					return fail(p);
				frac = frac * 10 + (c - '0');
			}
			p->pos++;
		} else if (c == '.' && !decimal) {
			if (idigits > 12)
				return fail(p);
			decimal = true;
			p->pos++;
		} else {
			break;
		}
	}
	if (!decimal) {
		n->type = SLUICE_SF_INTEGER;
		n->value = sign * ipart;
		return 0;
	}
	if (fdigits == 0)
		return fail(p); /* "1." */
	for (size_t i = fdigits; i < 3; i++)
		frac *= 10;
	n->type = SLUICE_SF_DECIMAL;
	n->value = sign * (ipart * 1000 + frac);
	return 0;
}

/* RFC 9651 4.2.5. */
static int parse_string(struct parser *p, struct sluice_sf_node *n)
{
	p->pos++; /* '"' */
	size_t start = p->pos;
	for (;;) {
		int c = peek(p);
		if (c < 0)
			return fail(p);
		if (c == '\\') {
			p->pos++;
			c = peek(p);
			if (c != '"' && c != '\\')
				return fail(p);
			p->pos++;
		} else if (c == '"') {
			break;
		} else if (c < 0x20 || c > 0x7e) {
			return fail(p);
		} else {
			p->pos++;
		}
	}
	n->type = SLUICE_SF_STRING;
	n->str = p->in + start;
	n->str_len = (uint32_t)(p->pos - start);
	p->pos++; /* closing '"' */
	return 0;
}

/* RFC 9651 4.2.6. */
static int parse_token(struct parser *p, struct sluice_sf_node *n)
{
	size_t start = p->pos;
	p->pos++; /* ALPHA or '*', checked by the caller */
	for (int c; (c = peek(p)) >= 0 && (is_tchar(c) || c == ':' || c == '/');)
		p->pos++;
	n->type = SLUICE_SF_TOKEN;
	n->str = p->in + start;
	n->str_len = (uint32_t)(p->pos - start);
	return 0;
}

/* RFC 9651 4.2.7. */
static int parse_binary(struct parser *p, struct sluice_sf_node *n)
{
	p->pos++; /* ':' */
	size_t start = p->pos;
	size_t data = 0;
	size_t pad = 0;
	for (;;) {
		int c = peek(p);
		if (c < 0)
			return fail(p);
		if (c == ':')
			break;
		if (c == '=') {
			if (++pad > 2)
				return fail(p);
		} else if (b64_value(c) < 0 || pad > 0) {
			return fail(p); /* outside the alphabet, or data after padding */
		} else {
			data++;
		}
		p->pos++;
	}
	if (data % 4 == 1 || (pad > 0 && (data + pad) % 4 != 0))
		return fail(p);
	n->type = SLUICE_SF_BINARY;
	n->str = p->in + start;
	n->str_len = (uint32_t)(p->pos - start);
	p->pos++; /* closing ':' */
	return 0;
}


/* RFC 9651 4.2.10. */
static int parse_display(struct parser *p, struct sluice_sf_node *n)
{
	struct utf8_state u = {0, 0x80, 0xbf};

	p->pos++; /* '%' */
	if (peek(p) != '"')
		return fail(p);
	p->pos++;
	size_t start = p->pos;
	for (;;) {
		int c = peek(p);
		if (c < 0x20 || c > 0x7e) /* also end of input (-1) */
			return fail(p);
		if (c == '"')
			break;
		if (c == '%') {
			if (p->pos + 2 >= p->len)
				return fail(p);
			int h = hex_value((unsigned char)p->in[p->pos + 1]);
			int l = hex_value((unsigned char)p->in[p->pos + 2]);
			if (h < 0 || l < 0)
				return fail(p);
			if (!utf8_feed(&u, (unsigned)(h * 16 + l)))
				return fail(p);
			p->pos += 3;
		} else {
			if (!utf8_feed(&u, (unsigned)c))
				return fail(p);
			p->pos++;
		}
	}
	if (u.need != 0)
		return fail(p);
	n->type = SLUICE_SF_DISPLAY;
	n->str = p->in + start;
	n->str_len = (uint32_t)(p->pos - start);
	p->pos++; /* closing '"' */
	return 0;
}

/* RFC 9651 4.2.3.1. */
static int parse_bare_item(struct parser *p, struct sluice_sf_node *n)
{
	int c = peek(p);

	if (c == '-' || is_digit(c))
		return parse_number(p, n);
	if (c == '"')
		return parse_string(p, n);
	if (is_alpha(c) || c == '*')
		return parse_token(p, n);
	if (c == ':')
		return parse_binary(p, n);
	if (c == '?') {
		p->pos++;
		c = peek(p);
		if (c != '0' && c != '1')
			return fail(p);
		p->pos++;
		n->type = SLUICE_SF_BOOLEAN;
		n->value = c == '1';
		return 0;
	}
	if (c == '@') {
		p->pos++;
		if (parse_number(p, n) != 0)
			return p->err;
		if (n->type != SLUICE_SF_INTEGER)
			return fail(p);
		n->type = SLUICE_SF_DATE;
		return 0;
	}
	if (c == '%')
		return parse_display(p, n);
	return fail(p);
}

/* RFC 9651 4.2.3.3. */
static int parse_key(struct parser *p, const char **key, uint32_t *key_len)
{
	int c = peek(p);
	if (!is_lcalpha(c) && c != '*')
		return fail(p);
	size_t start = p->pos;
	while ((c = peek(p)) >= 0 && is_key_char(c))
		p->pos++;
	*key = p->in + start;
	*key_len = (uint32_t)(p->pos - start);
	return 0;
}

static bool key_eq(const char *a, uint32_t alen, const char *b, uint32_t blen)
{
	return alen == blen && memcmp(a, b, alen) == 0;
}

/* RFC 9651 4.2.3.2: parameters of the node at index `owner`, appended after
 * everything written so far. */
static int parse_params(struct parser *p, size_t owner)
{
	size_t first = p->used;

	while (peek(p) == ';') {
		const char *key;
		uint32_t key_len;
		struct sluice_sf_node value;

		p->pos++;
		skip_sp(p);
		if (parse_key(p, &key, &key_len) != 0)
			return p->err;
		memset(&value, 0, sizeof(value));
		if (peek(p) == '=') {
			p->pos++;
			if (parse_bare_item(p, &value) != 0)
				return p->err;
		} else {
			value.type = SLUICE_SF_BOOLEAN;
			value.value = 1;
		}
		value.key = key;
		value.key_len = key_len;
		size_t i = first;
		while (i < p->used && !key_eq(p->nodes[i].key, p->nodes[i].key_len, key, key_len))
			i++;
		if (i == p->used) {
			if (p->nodes[owner].nparams == SLUICE_SF_PARAMS_MAX) {
				p->err = SLUICE_ETOOBIG;
				return p->err;
			}
			struct sluice_sf_node *n = new_node(p);
			if (n == NULL)
				return p->err;
			p->nodes[owner].nparams++;
		}
		p->nodes[i] = value;
	}
	return 0;
}

static int parse_item(struct parser *p)
{
	size_t idx = p->used;
	struct sluice_sf_node *n = new_node(p);

	if (n == NULL)
		return p->err;
	if (parse_bare_item(p, n) != 0)
		return p->err;
	return parse_params(p, idx);
}

/* RFC 9651 4.2.1.2. */
static int parse_inner_list(struct parser *p)
{
	size_t idx = p->used;
	struct sluice_sf_node *n = new_node(p);

	if (n == NULL)
		return p->err;
	n->type = SLUICE_SF_INNER_LIST;
	p->pos++; /* '(' */
	for (;;) {
		skip_sp(p);
		int c = peek(p);
		if (c == ')') {
			p->pos++;
			return parse_params(p, idx);
		}
		if (c < 0)
			return fail(p);
		if (parse_item(p) != 0)
			return p->err;
		p->nodes[idx].nitems++;
		c = peek(p);
		if (c != ' ' && c != ')')
			return fail(p);
	}
}

static int parse_item_or_inner_list(struct parser *p)
{
	return peek(p) == '(' ? parse_inner_list(p) : parse_item(p);
}

/* After a member: OWS, then end of input or ',' OWS and another member. */
static int member_separator(struct parser *p, bool *more)
{
	skip_ows(p);
	if (p->pos == p->len) {
		*more = false;
		return 0;
	}
	if (peek(p) != ',')
		return fail(p);
	p->pos++;
	skip_ows(p);
	if (p->pos == p->len)
		return fail(p); /* trailing comma */
	*more = true;
	return 0;
}

static int parse_list(struct parser *p, size_t *members)
{
	bool more = p->pos < p->len;

	while (more) {
		if (parse_item_or_inner_list(p) != 0)
			return p->err;
		++*members;
		if (member_separator(p, &more) != 0)
			return p->err;
	}
	return 0;
}

static void reverse(struct sluice_sf_node *a, size_t n)
{
	for (size_t i = 0; i < n / 2; i++) {
		struct sluice_sf_node t = a[i];
		a[i] = a[n - 1 - i];
		a[n - 1 - i] = t;
	}
}

/* RFC 9651 4.2.2. */
static int parse_dict(struct parser *p, size_t *members)
{
	bool more = p->pos < p->len;

	while (more) {
		const char *key;
		uint32_t key_len;
		size_t start = p->used;

		if (parse_key(p, &key, &key_len) != 0)
			return p->err;
		if (peek(p) == '=') {
			p->pos++;
			if (parse_item_or_inner_list(p) != 0)
				return p->err;
		} else {
			struct sluice_sf_node *n = new_node(p);
			if (n == NULL)
				return p->err;
			n->type = SLUICE_SF_BOOLEAN;
			n->value = 1;
			if (parse_params(p, start) != 0)
				return p->err;
		}
		p->nodes[start].key = key;
		p->nodes[start].key_len = key_len;

		/* Duplicate key: the new subtree [start, used) takes the place of
		 * the old one [os, oe); members between them keep their order. */
		size_t os = 0;
		bool dup = false;
		for (size_t m = 0; m < *members; m++) {
			if (key_eq(p->nodes[os].key, p->nodes[os].key_len, key, key_len)) {
				dup = true;
				break;
			}
			os += sluice_sf_member_span(&p->nodes[os]);
		}
		if (dup) {
			size_t oe = os + sluice_sf_member_span(&p->nodes[os]);
			size_t e = p->used;
			size_t new_len = e - start;
			/* rotate [os, e) right by new_len: new, old, middle */
			reverse(&p->nodes[os], e - os);
			reverse(&p->nodes[os], new_len);
			reverse(&p->nodes[os + new_len], e - os - new_len);
			memmove(&p->nodes[os + new_len], &p->nodes[os + new_len + (oe - os)],
				(start - oe) * sizeof(p->nodes[0]));
			p->used -= oe - os;
		} else {
			if (*members == SLUICE_SF_DICT_MAX) {
				p->err = SLUICE_ETOOBIG;
				return p->err;
			}
			++*members;
		}
		if (member_separator(p, &more) != 0)
			return p->err;
	}
	return 0;
}

int sluice_sf_parse(enum sluice_sf_kind kind, const char *in, size_t len,
		    struct sluice_sf_node *out, size_t cap, struct sluice_sf_result *res)
{
	struct parser p = {in, len, 0, out, cap, 0, 0};
	size_t members = 0;

	if (res == NULL || (len > 0 && in == NULL) || (cap > 0 && out == NULL))
		return SLUICE_EINVAL;
	if (kind != SLUICE_SF_KIND_ITEM && kind != SLUICE_SF_KIND_LIST && kind != SLUICE_SF_KIND_DICT)
		return SLUICE_EINVAL;
	res->nodes = 0;
	res->members = 0;
	res->error_offset = 0;
	if (len > UINT32_MAX) { /* node lengths are 32-bit */
		res->error_offset = UINT32_MAX;
		return SLUICE_ETOOBIG;
	}
	/* Input must be ASCII (RFC 9651 4.2, step 1). */
	for (size_t i = 0; i < len; i++) {
		if ((unsigned char)in[i] > 0x7e || ((unsigned char)in[i] < 0x20 && in[i] != '\t')) {
			res->error_offset = i;
			return SLUICE_ESYNTAX;
		}
	}
	skip_sp(&p);
	if (kind == SLUICE_SF_KIND_LIST) {
		parse_list(&p, &members);
	} else if (kind == SLUICE_SF_KIND_DICT) {
		parse_dict(&p, &members);
	} else {
		if (parse_item(&p) == 0)
			members = 1;
	}
	if (p.err == 0) {
		skip_sp(&p);
		if (p.pos != p.len)
			fail(&p);
	}
	if (p.err != 0) {
		res->error_offset = p.pos;
		return p.err;
	}
	res->nodes = p.used;
	res->members = members;
	return 0;
}

size_t sluice_sf_member_span(const struct sluice_sf_node *node)
{
	size_t span = 1;

	if (node == NULL)
		return 0;
	if (node->type == SLUICE_SF_INNER_LIST) {
		for (uint32_t i = 0; i < node->nitems; i++)
			span += 1 + node[span].nparams;
	}
	return span + node->nparams;
}

const struct sluice_sf_node *sluice_sf_param(const struct sluice_sf_node *node, const char *key)
{
	if (node == NULL || key == NULL)
		return NULL;
	size_t klen = strlen(key);
	const struct sluice_sf_node *params = node + sluice_sf_member_span(node) - node->nparams;
	for (uint32_t i = 0; i < node->nparams; i++) {
		if (params[i].key_len == klen && memcmp(params[i].key, key, klen) == 0)
			return &params[i];
	}
	return NULL;
}


int sluice_sf_decode(const struct sluice_sf_node *node, uint8_t *out, size_t cap, size_t *out_len)
{
	size_t k = 0;

	if (node == NULL || out_len == NULL || (cap > 0 && out == NULL))
		return SLUICE_EINVAL;
	switch (node->type) {
	case SLUICE_SF_STRING:
		for (size_t i = 0; i < node->str_len; i++) {
			char c = node->str[i];
			if (c == '\\')
				c = node->str[++i];
			if (k < cap)
				out[k] = (uint8_t)c;
			k++;
		}
		break;
	case SLUICE_SF_TOKEN:
		k = node->str_len;
		if (cap > 0)
			memcpy(out, node->str, SLUICE_MIN(k, cap));
		break;
	case SLUICE_SF_DISPLAY:
		for (size_t i = 0; i < node->str_len; i++) {
			uint8_t c = (uint8_t)node->str[i];
			if (c == '%') {
				c = (uint8_t)(hex_value((unsigned char)node->str[i + 1]) * 16 +
					      hex_value((unsigned char)node->str[i + 2]));
				i += 2;
			}
			if (k < cap)
				out[k] = c;
			k++;
		}
		break;
	case SLUICE_SF_BINARY: {
		size_t data = b64_data_len(node);
		for (size_t i = 0; i < data; i += 4) {
			uint8_t q[3];
			size_t m = b64_quantum(node->str + i, SLUICE_MIN(4, data - i), q);
			for (size_t j = 0; j < m; j++, k++) {
				if (k < cap)
					out[k] = q[j];
			}
		}
		break;
	}
	default:
		return SLUICE_EINVAL;
	}
	*out_len = k;
	return k > cap ? SLUICE_ETRUNC : 0;
}

