/*
 * policy_parse.c - the policy text format: tokenizer, parser, validation and
 * compilation into the immutable struct sluice_policy.
 *
 * The format is line oriented (grammar in docs/policy.md). Each line is cut
 * into words (runs of bytes other than space, tab and '"'), quoted strings
 * and a '#' comment; the first word names the directive, and each directive
 * is parsed by a small recursive-descent function that reports the column of
 * the first word it cannot accept and what it expected there.
 *
 * Memory: the parser fills a scratch builder: one allocation whose arrays
 * are sized before parsing by bounds the text proves (lines, '/' bytes) and
 * capped by the ceilings in policy.h, so nothing can make it grow; and, once
 * the whole text is valid, it computes the exact size of the final
 * policy, allocates it in one piece and copies everything into it. The
 * route trie is built in the builder with sibling lists and then flattened
 * breadth first so that the children of every node are contiguous and
 * sorted, which is what the matcher's binary search needs.
 *
 * Robustness: every loop is bounded by the input length or a ceiling; every
 * number is parsed with an explicit overflow check; the tokenizer never looks
 * past text + len. Arbitrary bytes get an error, never a crash (fuzzed by
 * fuzz/fuzz_policy.c).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sluice/gcra.h>

#include "policy/policy_internal.h"
#include "common/util_internal.h"

#define MAX_WORDS 24
#define NAME_CAP (SLUICE_POLICY_MAX_NAME + 1)
#define MAX_NODES (SLUICE_POLICY_MAX_ROUTES * SLUICE_POLICY_MAX_SEGMENTS + 1)
#define NS_PER_DAY (86400ull * SLUICE_NS_PER_SEC)
#define DEFAULT_RETRY_AFTER_NS SLUICE_NS_PER_SEC

/* ------------------------------------------------------------------------
 * The builder
 * ------------------------------------------------------------------------ */

struct blimit {
	struct sluice_policy_limit l;
	char name[NAME_CAP];
};

/* Method and pattern point into the text, which outlives the parse. */
struct broute {
	const char *method;
	const char *pattern;
	uint32_t method_len;
	uint32_t pattern_len;
	uint32_t method_id;
	uint32_t class_id;
	uint32_t line;
	uint32_t col; /* of the pattern */
};

struct btier {
	char name[NAME_CAP];
	uint32_t milli;
	uint32_t line;
};

struct boverride {
	struct sluice_policy_override o;
	uint8_t key[SLUICE_POLICY_MAX_KEY];
};

struct bnode {
	uint32_t first_child;  /* literal children, a sibling list */
	uint32_t next_sibling;
	uint32_t param_child;
	const char *seg; /* into the policy text */
	uint32_t seg_len;
	uint32_t term_head; /* bterm lists */
	uint32_t wild_head;
	uint32_t final_index;
};

struct bterm {
	uint32_t next;
	uint32_t method_id;
	uint32_t class_id;
	uint32_t line;
};

struct builder {
	char title[SLUICE_POLICY_MAX_TITLE + 1];
	uint32_t families; /* enum sluice_http_families bits */
	uint8_t body, fail;
	bool seen_policy, seen_headers, seen_body, seen_fail;
	bool fold_case, seen_routes;
	uint32_t nscopes, nlimits, nclasses, nroutes, ntiers, noverrides;
	uint32_t nmethods, nnodes, nterms;
	char scopes[SLUICE_POLICY_MAX_SCOPES][NAME_CAP];
	char classes[SLUICE_POLICY_MAX_CLASSES][NAME_CAP];
	char methods[SLUICE_POLICY_MAX_METHODS][SLUICE_POLICY_MAX_METHOD_LEN + 1];
	struct blimit limits[SLUICE_POLICY_MAX_LIMITS];
	struct btier tiers[SLUICE_POLICY_MAX_TIERS];
	/*
	 * Sized per input, in the same allocation, by bounds the text itself
	 * proves (see scratch_caps): a route or an override takes a line of
	 * its own, a trie node a '/' of its own. Capped by the ceilings.
	 */
	uint32_t cap_routes, cap_overrides, cap_nodes;
	struct broute *routes;       /* [cap_routes] */
	struct bterm *terms;         /* [cap_routes]: one per route */
	struct boverride *overrides; /* [cap_overrides] */
	struct bnode *nodes;         /* [cap_nodes] */
	uint32_t *order;             /* [cap_overrides + cap_nodes]: sort and BFS scratch */
};

/* ------------------------------------------------------------------------
 * Tokens and errors
 * ------------------------------------------------------------------------ */

struct word {
	const char *s; /* for a quoted string: the bytes between the quotes */
	uint32_t len;
	uint32_t col;
	bool quoted;
};

struct parser {
	struct builder *b;
	struct sluice_policy_error *err;
	uint32_t line;
	uint32_t end_col; /* column just past the last word of the line */
	struct word w[MAX_WORDS];
	uint32_t nw;
	uint32_t pos; /* next word */
};

__attribute__((format(printf, 4, 5))) static int fail_at(struct parser *p, int code, uint32_t col,
							  const char *fmt, ...)
{
	if (p->err != NULL) {
		va_list ap;

		p->err->code = code;
		p->err->line = (int)p->line;
		p->err->column = (int)col;
		va_start(ap, fmt);
		vsnprintf(p->err->message, sizeof(p->err->message), fmt, ap);
		va_end(ap);
	}
	return code;
}

/* Quote a word for a message: at most 24 bytes, non-printables as '?'. */
static const char *show(const struct word *w, char buf[32])
{
	uint32_t n = w->len > 24 ? 24 : w->len;
	uint32_t i;

	for (i = 0; i < n; i++)
		buf[i] = (w->s[i] >= 0x20 && w->s[i] < 0x7f) ? w->s[i] : '?';
	if (n < w->len) {
		buf[i++] = '.';
		buf[i++] = '.';
		buf[i++] = '.';
	}
	buf[i] = '\0';
	return buf;
}

static bool word_is(const struct word *w, const char *lit)
{
	size_t n = strlen(lit);
	return !w->quoted && w->len == n && memcmp(w->s, lit, n) == 0;
}

/* The next word, or an error saying `what` was expected. */
static int next_word(struct parser *p, const char *what, const struct word **out)
{
	if (p->pos >= p->nw)
		return fail_at(p, SLUICE_ESYNTAX, p->end_col, "expected %s at end of line", what);
	*out = &p->w[p->pos++];
	return SLUICE_OK;
}

static int expect_end(struct parser *p)
{
	char buf[32];

	if (p->pos < p->nw)
		return fail_at(p, SLUICE_ESYNTAX, p->w[p->pos].col, "unexpected '%s': expected end of line",
			       show(&p->w[p->pos], buf));
	return SLUICE_OK;
}

/*
 * Cut one line (line[0..len), no newline) into words. Returns 0 or an
 * error. A '#' outside a string starts a comment.
 */
static int tokenize(struct parser *p, const char *line, uint32_t len)
{
	uint32_t i = 0;

	p->nw = 0;
	p->pos = 0;
	p->end_col = 1;
	while (i < len) {
		unsigned char c = (unsigned char)line[i];

		if (c == ' ' || c == '\t') {
			i++;
			continue;
		}
		if (c == '#')
			break;
		if (p->nw == MAX_WORDS)
			return fail_at(p, SLUICE_ESYNTAX, i + 1, "too many words on one line (at most %d)",
				       MAX_WORDS);
		struct word *w = &p->w[p->nw];
		w->col = i + 1;
		if (c == '"') {
			uint32_t j = i + 1;
			while (j < len && line[j] != '"') {
				if ((unsigned char)line[j] < 0x20 || line[j] == 0x7f)
					return fail_at(p, SLUICE_ESYNTAX, j + 1,
						       "control byte 0x%02x in a string (write \\x%02x)",
						       (unsigned char)line[j], (unsigned char)line[j]);
				j += (line[j] == '\\' && j + 1 < len) ? 2 : 1;
			}
			if (j >= len)
				return fail_at(p, SLUICE_ESYNTAX, i + 1, "unterminated string: expected '\"'");
			w->s = line + i + 1;
			w->len = j - i - 1;
			w->quoted = true;
			i = j + 1;
			if (i < len && line[i] != ' ' && line[i] != '\t' && line[i] != '#')
				return fail_at(p, SLUICE_ESYNTAX, i + 1,
					       "expected a space after the closing '\"'");
		} else {
			uint32_t j = i;
			while (j < len && line[j] != ' ' && line[j] != '\t' && line[j] != '#' &&
			       line[j] != '"') {
				unsigned char d = (unsigned char)line[j];
				if (d < 0x20 || d >= 0x7f)
					return fail_at(p, SLUICE_ESYNTAX, j + 1,
						       "unexpected byte 0x%02x (only printable ASCII outside strings and comments)",
						       d);
				j++;
			}
			if (j < len && line[j] == '"')
				return fail_at(p, SLUICE_ESYNTAX, j + 1,
					       "unexpected '\"' inside a word: expected a space before the string");
			w->s = line + i;
			w->len = j - i;
			w->quoted = false;
			i = j;
		}
		p->nw++;
		p->end_col = i + 1;
	}
	/* comments may hold anything but control bytes (tab aside) */
	for (; i < len; i++) {
		unsigned char c = (unsigned char)line[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return fail_at(p, SLUICE_ESYNTAX, i + 1, "control byte 0x%02x in a comment", c);
	}
	return SLUICE_OK;
}

/* ------------------------------------------------------------------------
 * Lexical items
 * ------------------------------------------------------------------------ */

static bool is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* name = letter-or-'_' { letter | digit | '_' | '-' }, at most 31 bytes. */
static int check_name(struct parser *p, const char *s, uint32_t len, uint32_t col, const char *what)
{
	if (len == 0 || !(is_alpha(s[0]) || s[0] == '_'))
		return fail_at(p, SLUICE_ESYNTAX, col, "expected %s (a name: a letter or '_' first)", what);
	for (uint32_t i = 1; i < len; i++)
		if (!(is_alpha(s[i]) || is_digit(s[i]) || s[i] == '_' || s[i] == '-'))
			return fail_at(p, SLUICE_ESYNTAX, col + i,
				       "unexpected '%c' in %s: expected a letter, digit, '_' or '-'", s[i],
				       what);
	if (len > SLUICE_POLICY_MAX_NAME)
		return fail_at(p, SLUICE_ETOOBIG, col, "%s longer than %d bytes", what,
			       SLUICE_POLICY_MAX_NAME);
	return SLUICE_OK;
}

static int name_word(struct parser *p, const struct word *w, const char *what, char out[NAME_CAP])
{
	if (w->quoted)
		return fail_at(p, SLUICE_ESYNTAX, w->col, "expected %s, not a string", what);
	int rc = check_name(p, w->s, w->len, w->col, what);
	if (rc != SLUICE_OK)
		return rc;
	memcpy(out, w->s, w->len);
	out[w->len] = '\0';
	return SLUICE_OK;
}

static int find_name(char (*names)[NAME_CAP], uint32_t n, const char *s, uint32_t len)
{
	for (uint32_t i = 0; i < n; i++)
		if (strlen(names[i]) == len && memcmp(names[i], s, len) == 0)
			return (int)i;
	return -1;
}

/*
 * digits { ['_'] digit }: an unsigned integer <= max. `_` may separate
 * digits (50_000). Returns the number of bytes consumed in *used.
 */
static int parse_uint(struct parser *p, const char *s, uint32_t len, uint32_t col, uint64_t max,
		      const char *what, uint64_t *out, uint32_t *used)
{
	uint64_t v = 0;
	uint32_t i = 0;

	if (len == 0 || !is_digit(s[0]))
		return fail_at(p, SLUICE_ESYNTAX, col, "expected %s (digits)", what);
	while (i < len) {
		if (s[i] == '_' && i + 1 < len && is_digit(s[i + 1]) && i > 0) {
			i++;
			continue;
		}
		if (!is_digit(s[i]))
			break;
		unsigned d = (unsigned)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10 || v * 10 + d > max)
			return fail_at(p, SLUICE_ERANGE, col, "%s out of range (at most %llu)", what,
				       (unsigned long long)max);
		v = v * 10 + d;
		i++;
	}
	*out = v;
	*used = i;
	return SLUICE_OK;
}

/* A whole word that is a count in [1, SLUICE_POLICY_MAX_COUNT]. */
static int count_word(struct parser *p, const struct word *w, const char *what, uint64_t *out)
{
	uint32_t used;
	int rc;

	if (w->quoted)
		return fail_at(p, SLUICE_ESYNTAX, w->col, "expected %s, not a string", what);
	rc = parse_uint(p, w->s, w->len, w->col, SLUICE_POLICY_MAX_COUNT, what, out, &used);
	if (rc != SLUICE_OK)
		return rc;
	if (used != w->len)
		return fail_at(p, SLUICE_ESYNTAX, w->col + used, "unexpected '%c' in %s: expected digits",
			       w->s[used], what);
	if (*out == 0)
		return fail_at(p, SLUICE_EINVAL, w->col, "%s must be at least 1", what);
	return SLUICE_OK;
}

static const struct {
	const char *name;
	uint64_t ns;
} units[] = {
	{"ns", 1}, {"us", 1000}, {"ms", 1000000}, {"s", SLUICE_NS_PER_SEC},
	{"m", 60 * SLUICE_NS_PER_SEC}, {"h", 3600 * SLUICE_NS_PER_SEC}, {"d", NS_PER_DAY},
};

/* duration = digits unit, unit one of ns us ms s m h d; <= 2^62 ns. */
static int parse_duration(struct parser *p, const char *s, uint32_t len, uint32_t col,
			  const char *what, uint64_t *out)
{
	uint64_t v;
	uint32_t used;
	int rc = parse_uint(p, s, len, col, UINT64_MAX, what, &v, &used);

	if (rc != SLUICE_OK)
		return rc;
	const char *u = s + used;
	uint32_t ulen = len - used;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strlen(units[i].name) == ulen && memcmp(units[i].name, u, ulen) == 0) {
			if (v > SLUICE_POLICY_MAX_PERIOD_NS / units[i].ns)
				return fail_at(p, SLUICE_ERANGE, col,
					       "%s out of range (at most 2^62 ns, about 146 years)", what);
			*out = v * units[i].ns;
			return SLUICE_OK;
		}
	}
	return fail_at(p, SLUICE_ESYNTAX, col + used, "expected a unit after %s: ns, us, ms, s, m, h or d",
		       what);
}

static int duration_word(struct parser *p, const struct word *w, const char *what, uint64_t *out)
{
	if (w->quoted)
		return fail_at(p, SLUICE_ESYNTAX, w->col, "expected %s, not a string", what);
	return parse_duration(p, w->s, w->len, w->col, what, out);
}

/*
 * count "/" duration [ "@utc" ]. *utc receives whether the suffix was there
 * (NULL: the suffix is refused).
 */
static int rate_word(struct parser *p, const struct word *w, uint64_t *count, uint64_t *period_ns,
		     bool *utc)
{
	uint32_t used;
	int rc;
	uint32_t len = w->len;

	if (w->quoted)
		return fail_at(p, SLUICE_ESYNTAX, w->col, "expected a rate like 120/1m, not a string");
	rc = parse_uint(p, w->s, len, w->col, SLUICE_POLICY_MAX_COUNT, "the count", count, &used);
	if (rc != SLUICE_OK)
		return rc;
	if (used == len || w->s[used] != '/')
		return fail_at(p, SLUICE_ESYNTAX, w->col + used, "expected '/' and a period after the count (e.g. 120/1m)");
	if (*count == 0)
		return fail_at(p, SLUICE_EINVAL, w->col, "the count must be at least 1");
	if (utc != NULL)
		*utc = false;
	if (len - used - 1 >= 4 && memcmp(w->s + len - 4, "@utc", 4) == 0) {
		if (utc == NULL)
			return fail_at(p, SLUICE_EINVAL, w->col + len - 4,
				       "'@utc' only follows a calendar window: write 'quota N/P@utc'");
		*utc = true;
		len -= 4;
	}
	uint32_t pcol = w->col + used + 1;
	rc = parse_duration(p, w->s + used + 1, len - used - 1, pcol, "the period", period_ns);
	if (rc != SLUICE_OK)
		return rc;
	if (*period_ns == 0)
		return fail_at(p, SLUICE_EINVAL, pcol, "the period must be longer than 0");
	return SLUICE_OK;
}

static int hex_digit(char c)
{
	if (is_digit(c))
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Decode a quoted string: escapes \" \\ \xHH. `printable`: only bytes
 * 0x20..0x7e may result. Writes at most cap bytes; longer is ETOOBIG.
 */
static int string_word(struct parser *p, const struct word *w, const char *what, bool printable,
		       uint8_t *out, uint32_t cap, uint32_t *out_len)
{
	uint32_t n = 0;

	if (!w->quoted)
		return fail_at(p, SLUICE_ESYNTAX, w->col, "expected %s as a quoted string", what);
	for (uint32_t i = 0; i < w->len;) {
		uint32_t col = w->col + 1 + i;
		unsigned char c = (unsigned char)w->s[i];
		if (c == '\\') {
			if (i + 1 >= w->len)
				return fail_at(p, SLUICE_ESYNTAX, col, "expected an escape after '\\'");
			char e = w->s[i + 1];
			if (e == '"' || e == '\\') {
				c = (unsigned char)e;
				i += 2;
			} else if (e == 'x') {
				int hi = i + 2 < w->len ? hex_digit(w->s[i + 2]) : -1;
				int lo = i + 3 < w->len ? hex_digit(w->s[i + 3]) : -1;
				if (hi < 0 || lo < 0)
					return fail_at(p, SLUICE_ESYNTAX, col,
						       "expected two hex digits after '\\x'");
				c = (unsigned char)(hi * 16 + lo);
				i += 4;
			} else {
				return fail_at(p, SLUICE_ESYNTAX, col,
					       "unknown escape '\\%c': expected \\\", \\\\ or \\xHH",
					       (e >= 0x20 && e < 0x7f) ? e : '?');
			}
		} else {
			i++;
		}
		if (printable && (c < 0x20 || c >= 0x7f))
			return fail_at(p, SLUICE_EINVAL, col, "%s must be printable ASCII", what);
		if (n == cap)
			return fail_at(p, SLUICE_ETOOBIG, w->col, "%s longer than %u bytes", what, cap);
		out[n++] = c;
	}
	if (n == 0)
		return fail_at(p, SLUICE_EINVAL, w->col, "%s must not be empty", what);
	*out_len = n;
	return SLUICE_OK;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; H. Hinnant's
 * days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static bool fixed_digits(const char *s, uint32_t n, unsigned *out)
{
	unsigned v = 0;
	for (uint32_t i = 0; i < n; i++) {
		if (!is_digit(s[i]))
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	*out = v;
	return true;
}

/* YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z, years 1970..2500, as Unix ns. */
static int time_word(struct parser *p, const struct word *w, uint64_t *out)
{
	static const unsigned mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	const char *s = w->s;
	unsigned y, mo, d, h, mi, se;
	uint64_t frac = 0;

	if (w->quoted || w->len < 20 || !fixed_digits(s, 4, &y) || s[4] != '-' ||
	    !fixed_digits(s + 5, 2, &mo) || s[7] != '-' || !fixed_digits(s + 8, 2, &d) ||
	    s[10] != 'T' || !fixed_digits(s + 11, 2, &h) || s[13] != ':' ||
	    !fixed_digits(s + 14, 2, &mi) || s[16] != ':' || !fixed_digits(s + 17, 2, &se))
		return fail_at(p, SLUICE_ESYNTAX, w->col,
			       "expected a UTC time like 2026-12-01T00:00:00Z");
	uint32_t i = 19;
	if (s[i] == '.') {
		uint32_t digits = 0;
		i++;
		while (i < w->len && is_digit(s[i]) && digits < 9) {
			frac = frac * 10 + (uint64_t)(s[i] - '0');
			digits++;
			i++;
		}
		if (digits == 0)
			return fail_at(p, SLUICE_ESYNTAX, w->col + i, "expected 1 to 9 digits after '.'");
		for (; digits < 9; digits++)
			frac *= 10;
	}
	if (i + 1 != w->len || s[i] != 'Z')
		return fail_at(p, SLUICE_ESYNTAX, w->col + i, "expected 'Z' to end the time (UTC)");
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	if (y < 1970 || y > 2500 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] ||
	    (mo == 2 && d == 29 && !leap) || h > 23 || mi > 59 || se > 59)
		return fail_at(p, SLUICE_ERANGE, w->col, "no such time (years 1970 to 2500; seconds 0..59)");
	int64_t days = days_from_civil(y, mo, d);
	uint64_t secs = (uint64_t)days * 86400 + h * 3600u + mi * 60u + se;
	*out = secs * SLUICE_NS_PER_SEC + frac;
	return SLUICE_OK;
}

/* ------------------------------------------------------------------------
 * Directives
 * ------------------------------------------------------------------------ */

static int d_policy(struct parser *p)
{
	struct builder *b = p->b;
	const struct word *w = NULL;
	uint32_t n = 0;
	int rc;

	if (b->seen_policy)
		return fail_at(p, SLUICE_EINVAL, p->w[0].col, "second 'policy' directive");
	if ((rc = next_word(p, "the policy name (a quoted string)", &w)) != SLUICE_OK)
		return rc;
	rc = string_word(p, w, "the policy name", true, (uint8_t *)b->title, SLUICE_POLICY_MAX_TITLE, &n);
	if (rc != SLUICE_OK)
		return rc;
	b->title[n] = '\0';
	b->seen_policy = true;
	return expect_end(p);
}

static int d_headers(struct parser *p)
{
	/* The keywords and the HTTP layer's bits they stand for: an IETF family,
	 * or X-RateLimit-* in the encoding of its reset. */
	static const char *const families[] = {"none", "draft-6", "draft-7", "draft-11", "x-ratelimit"};
	static const uint32_t family_bits[] = {0, SLUICE_HTTP_DRAFT06, SLUICE_HTTP_DRAFT07,
					       SLUICE_HTTP_DRAFT11, SLUICE_HTTP_X_DELTA};
	static const char *const resets[] = {"delta", "unix-s", "unix-ms"};
	static const uint32_t x_reset_bits[] = {SLUICE_HTTP_X_DELTA, SLUICE_HTTP_X_UNIX_S,
						SLUICE_HTTP_X_UNIX_MS};
	struct builder *b = p->b;
	const struct word *w = NULL;
	char buf[32];
	int rc;
	bool seen_reset = false, seen_retry = false, retry_after = true;
	uint32_t reset_col = 0;
	int reset = 0;

	if (b->seen_headers)
		return fail_at(p, SLUICE_EINVAL, p->w[0].col, "second 'headers' directive");
	if ((rc = next_word(p, "a header family", &w)) != SLUICE_OK)
		return rc;
	int fam = -1;
	for (int i = 0; i < 5; i++)
		if (word_is(w, families[i]))
			fam = i;
	if (fam < 0)
		return fail_at(p, SLUICE_ESYNTAX, w->col,
			       "unknown header family '%s': expected none, draft-6, draft-7, draft-11 or x-ratelimit",
			       show(w, buf));
	while (p->pos < p->nw) {
		w = &p->w[p->pos++];
		if (!w->quoted && w->len > 6 && memcmp(w->s, "reset=", 6) == 0) {
			if (seen_reset)
				return fail_at(p, SLUICE_EINVAL, w->col, "duplicate 'reset='");
			int r = -1;
			for (int i = 0; i < 3; i++)
				if (strlen(resets[i]) == w->len - 6 && memcmp(w->s + 6, resets[i], w->len - 6) == 0)
					r = i;
			if (r < 0)
				return fail_at(p, SLUICE_ESYNTAX, w->col + 6,
					       "expected delta, unix-s or unix-ms after 'reset='");
			reset = r;
			seen_reset = true;
			reset_col = w->col;
		} else if (!w->quoted && w->len > 12 && memcmp(w->s, "retry-after=", 12) == 0) {
			if (seen_retry)
				return fail_at(p, SLUICE_EINVAL, w->col, "duplicate 'retry-after='");
			if (w->len == 15 && memcmp(w->s + 12, "yes", 3) == 0)
				retry_after = true;
			else if (w->len == 14 && memcmp(w->s + 12, "no", 2) == 0)
				retry_after = false;
			else
				return fail_at(p, SLUICE_ESYNTAX, w->col + 12,
					       "expected yes or no after 'retry-after='");
			seen_retry = true;
		} else {
			return fail_at(p, SLUICE_ESYNTAX, w->col,
				       "unexpected '%s': expected reset=... or retry-after=...", show(w, buf));
		}
	}
	if (reset != 0 && family_bits[fam] != SLUICE_HTTP_X_DELTA)
		return fail_at(p, SLUICE_EINVAL, reset_col,
			       "the IETF drafts define reset as delta seconds: only x-ratelimit takes unix-s or unix-ms");
	b->families = family_bits[fam] == SLUICE_HTTP_X_DELTA ? x_reset_bits[reset] : family_bits[fam];
	if (retry_after)
		b->families |= SLUICE_HTTP_RETRY_AFTER;
	b->seen_headers = true;
	return SLUICE_OK;
}

static int d_body(struct parser *p)
{
	static const char *const bodies[] = {"", "json-data-error", "json-error", "empty"}; /* by value */
	struct builder *b = p->b;
	const struct word *w = NULL;
	char buf[32];
	int rc;

	if (b->seen_body)
		return fail_at(p, SLUICE_EINVAL, p->w[0].col, "second 'body' directive");
	if ((rc = next_word(p, "a body style", &w)) != SLUICE_OK)
		return rc;
	int s = -1;
	for (int i = SLUICE_HTTP_BODY_JSON_DATA_ERROR; i <= SLUICE_HTTP_BODY_EMPTY; i++)
		if (word_is(w, bodies[i]))
			s = i;
	if (s < 0)
		return fail_at(p, SLUICE_ESYNTAX, w->col,
			       "unknown body style '%s': expected json-data-error, json-error or empty", show(w, buf));
	b->body = (uint8_t)s;
	b->seen_body = true;
	return expect_end(p);
}

static int d_fail(struct parser *p)
{
	struct builder *b = p->b;
	const struct word *w = NULL;
	char buf[32];
	int rc;

	if (b->seen_fail)
		return fail_at(p, SLUICE_EINVAL, p->w[0].col, "second 'fail' directive");
	if ((rc = next_word(p, "open or closed", &w)) != SLUICE_OK)
		return rc;
	if (word_is(w, "open"))
		b->fail = SLUICE_FAIL_OPEN;
	else if (word_is(w, "closed"))
		b->fail = SLUICE_FAIL_CLOSED;
	else
		return fail_at(p, SLUICE_ESYNTAX, w->col, "unexpected '%s': expected open or closed",
			       show(w, buf));
	b->seen_fail = true;
	return expect_end(p);
}

static int d_scope(struct parser *p)
{
	struct builder *b = p->b;
	const struct word *w = NULL;
	char name[NAME_CAP];
	int rc;

	if ((rc = next_word(p, "a scope name", &w)) != SLUICE_OK)
		return rc;
	if ((rc = name_word(p, w, "a scope name", name)) != SLUICE_OK)
		return rc;
	if (strcmp(name, "class") == 0)
		return fail_at(p, SLUICE_EINVAL, w->col,
			       "'class' is reserved (it names the endpoint class in 'per')");
	if (find_name(b->scopes, b->nscopes, w->s, w->len) >= 0)
		return fail_at(p, SLUICE_EINVAL, w->col, "scope '%s' already declared", name);
	if (b->nscopes == SLUICE_POLICY_MAX_SCOPES)
		return fail_at(p, SLUICE_ETOOBIG, w->col, "more than %d scopes", SLUICE_POLICY_MAX_SCOPES);
	memcpy(b->scopes[b->nscopes++], name, NAME_CAP);
	return expect_end(p);
}

static int d_tier(struct parser *p)
{
	struct builder *b = p->b;
	const struct word *w = NULL;
	char name[NAME_CAP];
	uint64_t whole, frac = 0;
	uint32_t used;
	int rc;

	if ((rc = next_word(p, "a tier name", &w)) != SLUICE_OK)
		return rc;
	if ((rc = name_word(p, w, "a tier name", name)) != SLUICE_OK)
		return rc;
	for (uint32_t i = 0; i < b->ntiers; i++)
		if (strcmp(b->tiers[i].name, name) == 0)
			return fail_at(p, SLUICE_EINVAL, w->col, "tier '%s' already declared", name);
	if (b->ntiers == SLUICE_POLICY_MAX_TIERS)
		return fail_at(p, SLUICE_ETOOBIG, w->col, "more than %d tiers", SLUICE_POLICY_MAX_TIERS);
	if ((rc = next_word(p, "a multiplier like x2 or x1.5", &w)) != SLUICE_OK)
		return rc;
	if (w->quoted || w->len < 2 || w->s[0] != 'x')
		return fail_at(p, SLUICE_ESYNTAX, w->col, "expected a multiplier like x2 or x1.5");
	rc = parse_uint(p, w->s + 1, w->len - 1, w->col + 1, SLUICE_POLICY_MAX_MULTIPLIER / 1000,
			"the multiplier", &whole, &used);
	if (rc != SLUICE_OK)
		return rc;
	uint32_t i = 1 + used;
	if (i < w->len && w->s[i] == '.') {
		uint32_t digits = 0;
		i++;
		while (i < w->len && is_digit(w->s[i]) && digits < 3) {
			frac = frac * 10 + (uint64_t)(w->s[i] - '0');
			digits++;
			i++;
		}
		if (digits == 0)
			return fail_at(p, SLUICE_ESYNTAX, w->col + i, "expected 1 to 3 digits after '.'");
		for (; digits < 3; digits++)
			frac *= 10;
	}
	if (i != w->len)
		return fail_at(p, SLUICE_ESYNTAX, w->col + i,
			       "unexpected '%c' in the multiplier: at most 3 decimals", w->s[i]);
	uint64_t milli = whole * 1000 + frac;
	if (milli == 0 || milli > SLUICE_POLICY_MAX_MULTIPLIER)
		return fail_at(p, SLUICE_ERANGE, w->col, "the multiplier must be in x0.001 .. x1000");
	struct btier *t = &b->tiers[b->ntiers++];
	memcpy(t->name, name, NAME_CAP);
	t->milli = (uint32_t)milli;
	t->line = p->line;
	return expect_end(p);
}

/* Intern a route method; SLUICE_POLICY_ANY_METHOD for "*". */
static int method_word(struct parser *p, const struct word *w, struct broute *r)
{
	struct builder *b = p->b;

	if (w->quoted)
		return fail_at(p, SLUICE_ESYNTAX, w->col, "expected a method (GET, POST, ... or *)");
	if (w->len == 1 && w->s[0] == '*') {
		r->method_id = SLUICE_POLICY_ANY_METHOD;
		r->method = w->s;
		r->method_len = 1;
		return SLUICE_OK;
	}
	if (w->len > SLUICE_POLICY_MAX_METHOD_LEN)
		return fail_at(p, SLUICE_ETOOBIG, w->col, "method longer than %d bytes",
			       SLUICE_POLICY_MAX_METHOD_LEN);
	for (uint32_t i = 0; i < w->len; i++) {
		char c = w->s[i];
		if (!((c >= 'A' && c <= 'Z') || (i > 0 && (is_digit(c) || c == '-' || c == '_'))))
			return fail_at(p, SLUICE_ESYNTAX, w->col + i,
				       "expected a method in upper case (GET, POST, ... or *)");
	}
	r->method = w->s;
	r->method_len = w->len;
	for (uint32_t i = 0; i < b->nmethods; i++) {
		if (strlen(b->methods[i]) == w->len && memcmp(b->methods[i], w->s, w->len) == 0) {
			r->method_id = i;
			return SLUICE_OK;
		}
	}
	if (b->nmethods == SLUICE_POLICY_MAX_METHODS)
		return fail_at(p, SLUICE_ETOOBIG, w->col, "more than %d distinct methods",
			       SLUICE_POLICY_MAX_METHODS);
	memcpy(b->methods[b->nmethods], w->s, w->len);
	b->methods[b->nmethods][w->len] = '\0';
	r->method_id = b->nmethods++;
	return SLUICE_OK;
}

/*
 * Validate a pattern: "/" alone, or { "/" segment } where a segment is a
 * literal (visible ASCII except ':' first, '*', '?', '#'), ":" name, or a
 * final "*". Inserts it into the trie with its term.
 */
static int pattern_word(struct parser *p, const struct word *w, struct broute *r)
{
	struct builder *b = p->b;
	uint32_t node = 0, nseg = 0;
	bool wild = false;

	if (w->quoted || w->len == 0 || w->s[0] != '/')
		return fail_at(p, SLUICE_ESYNTAX, w->col, "expected a path pattern starting with '/'");
	if (w->len > SLUICE_POLICY_MAX_PATTERN)
		return fail_at(p, SLUICE_ETOOBIG, w->col, "path pattern longer than %d bytes",
			       SLUICE_POLICY_MAX_PATTERN);
	r->pattern = w->s;
	r->pattern_len = w->len;
	r->col = w->col;
	const char *s = w->s;
	uint32_t i = 1;
	if (w->len == 1)
		goto insert; /* the root */
	while (i <= w->len) {
		uint32_t start = i;
		while (i < w->len && s[i] != '/')
			i++;
		uint32_t seg_len = i - start;
		uint32_t col = w->col + start;
		if (seg_len == 0)
			return fail_at(p, SLUICE_ESYNTAX, col,
				       i == w->len ? "trailing '/' (paths match with or without it): remove it"
						   : "empty segment '//' in a path pattern");
		if (wild)
			return fail_at(p, SLUICE_ESYNTAX, col - 1, "'*' must be the last segment");
		if (++nseg > SLUICE_POLICY_MAX_SEGMENTS)
			return fail_at(p, SLUICE_ETOOBIG, col, "more than %d segments in a path pattern",
				       SLUICE_POLICY_MAX_SEGMENTS);
		for (uint32_t k = start; k < i; k++)
			if (s[k] == '?' || s[k] == '#' || (s[k] == '*' && seg_len != 1) ||
			    (s[k] == ':' && k != start))
				return fail_at(p, SLUICE_ESYNTAX, w->col + k,
					       "unexpected '%c' in a path segment", s[k]);
		if (seg_len == 1 && s[start] == '*') {
			wild = true;
		} else if (s[start] == ':') {
			int rc = check_name(p, s + start + 1, seg_len - 1, col + 1, "a parameter name");
			if (rc != SLUICE_OK)
				return rc;
			if (b->nodes[node].param_child == SLUICE__NODE_NONE) {
				if (b->nnodes == b->cap_nodes) /* unreachable: one '/' per node */
					return fail_at(p, SLUICE_ETOOBIG, col, "too many path segments");
				uint32_t n = b->nnodes++;
				memset(&b->nodes[n], 0, sizeof(b->nodes[n]));
				b->nodes[n].first_child = b->nodes[n].next_sibling = SLUICE__NODE_NONE;
				b->nodes[n].param_child = SLUICE__NODE_NONE;
				b->nodes[n].term_head = b->nodes[n].wild_head = SLUICE__NODE_NONE;
				b->nodes[node].param_child = n;
			}
			node = b->nodes[node].param_child;
		} else {
			uint32_t c = b->nodes[node].first_child;
			while (c != SLUICE__NODE_NONE &&
			       !(b->nodes[c].seg_len == seg_len && memcmp(b->nodes[c].seg, s + start, seg_len) == 0))
				c = b->nodes[c].next_sibling;
			if (c == SLUICE__NODE_NONE) {
				if (b->nnodes == b->cap_nodes) /* unreachable: one '/' per node */
					return fail_at(p, SLUICE_ETOOBIG, col, "too many path segments");
				c = b->nnodes++;
				memset(&b->nodes[c], 0, sizeof(b->nodes[c]));
				b->nodes[c].first_child = SLUICE__NODE_NONE;
				b->nodes[c].param_child = SLUICE__NODE_NONE;
				b->nodes[c].term_head = b->nodes[c].wild_head = SLUICE__NODE_NONE;
				b->nodes[c].seg = s + start;
				b->nodes[c].seg_len = seg_len;
				b->nodes[c].next_sibling = b->nodes[node].first_child;
				b->nodes[node].first_child = c;
			}
			node = c;
		}
		i++; /* past the '/' (or the end) */
	}
insert:;
	uint32_t *head = wild ? &b->nodes[node].wild_head : &b->nodes[node].term_head;
	for (uint32_t t = *head; t != SLUICE__NODE_NONE; t = b->terms[t].next)
		if (b->terms[t].method_id == r->method_id)
			return fail_at(p, SLUICE_EINVAL, w->col,
				       "duplicate route: %.*s %.*s already maps to a class on line %u",
				       (int)r->method_len, r->method, (int)r->pattern_len, r->pattern, b->terms[t].line);
	uint32_t t = b->nterms++;
	b->terms[t].next = *head;
	b->terms[t].method_id = r->method_id;
	b->terms[t].class_id = r->class_id;
	b->terms[t].line = p->line;
	*head = t;
	return SLUICE_OK;
}

/* "routes" ("case-insensitive" | "case-sensitive"): how paths compare. */
static int d_routes(struct parser *p)
{
	struct builder *b = p->b;
	const struct word *w = NULL;
	char buf[32];
	int rc;

	if (b->seen_routes)
		return fail_at(p, SLUICE_EINVAL, p->w[0].col, "second 'routes' directive");
	if ((rc = next_word(p, "case-insensitive or case-sensitive", &w)) != SLUICE_OK)
		return rc;
	if (word_is(w, "case-insensitive"))
		b->fold_case = true;
	else if (word_is(w, "case-sensitive"))
		b->fold_case = false;
	else
		return fail_at(p, SLUICE_ESYNTAX, w->col,
			       "unexpected '%s': expected case-insensitive or case-sensitive", show(w, buf));
	b->seen_routes = true;
	return expect_end(p);
}

/*
 * A literal pattern segment must be in the normal form request paths are
 * matched in (normalize.c), or no request could ever match it: no "." or
 * "..", escapes only of reserved bytes and with upper-case hex, and no upper
 * case letter when routes are case-insensitive.
 */
static int check_literal(struct parser *p, const char *seg, uint32_t len, uint32_t col)
{
	char in[SLUICE_POLICY_MAX_PATTERN + 1], out[SLUICE_POLICY_MAX_PATTERN + 2];
	size_t n = 0;

	in[0] = '/';
	memcpy(in + 1, seg, len);
	int rc = sluice_path_normalize(in, len + 1, p->b->fold_case ? SLUICE_PATH_FOLD_CASE : 0, out,
				       sizeof(out), &n);
	if (rc != SLUICE_OK)
		return fail_at(p, SLUICE_ESYNTAX, col,
			       "malformed percent-escape in path segment '%.*s': expected '%%' and two hex digits",
			       (int)len, seg);
	if (n == 1)
		return fail_at(p, SLUICE_ESYNTAX, col,
			       "'%.*s' segment in a path pattern: request paths are matched with dot segments removed",
			       (int)len, seg);
	if (n != len + 1 || memcmp(in, out, n) != 0)
		return fail_at(p, SLUICE_ESYNTAX, col,
			       "path segment '%.*s' can never match: request paths are normalized, write '%.*s'%s",
			       (int)len, seg, (int)(n - 1), out + 1,
			       p->b->fold_case ? " (routes are case-insensitive)" : "");
	return SLUICE_OK;
}

/* Every literal segment of every route pattern (once the whole text is read,
 * since "routes case-insensitive" may come after the routes). */
static int check_patterns(struct parser *p)
{
	struct builder *b = p->b;

	for (uint32_t r = 0; r < b->nroutes; r++) {
		const struct broute *br = &b->routes[r];
		p->line = br->line;
		for (uint32_t i = 1; i < br->pattern_len;) {
			uint32_t start = i;
			while (i < br->pattern_len && br->pattern[i] != '/')
				i++;
			const char *seg = br->pattern + start;
			uint32_t len = i - start;
			if (seg[0] != ':' && !(len == 1 && seg[0] == '*')) {
				int rc = check_literal(p, seg, len, br->col + start);
				if (rc != SLUICE_OK)
					return rc;
			}
			i++;
		}
	}
	return SLUICE_OK;
}

static int d_class(struct parser *p)
{
	struct builder *b = p->b;
	const struct word *w = NULL;
	char name[NAME_CAP];
	int rc;

	if ((rc = next_word(p, "a class name", &w)) != SLUICE_OK)
		return rc;
	if ((rc = name_word(p, w, "a class name", name)) != SLUICE_OK)
		return rc;
	int id = find_name(b->classes, b->nclasses, w->s, w->len);
	uint32_t name_col = w->col;
	if (p->pos == p->nw) {
		if (id > 0)
			return fail_at(p, SLUICE_EINVAL, name_col, "class '%s' already declared", name);
	}
	if (id < 0) {
		if (b->nclasses == SLUICE_POLICY_MAX_CLASSES)
			return fail_at(p, SLUICE_ETOOBIG, name_col, "more than %d classes (default included)",
				       SLUICE_POLICY_MAX_CLASSES);
		id = (int)b->nclasses++;
		memcpy(b->classes[id], name, NAME_CAP);
	}
	if (p->pos == p->nw)
		return SLUICE_OK;
	if ((rc = next_word(p, "'match'", &w)) != SLUICE_OK)
		return rc;
	if (!word_is(w, "match")) {
		char buf[32];
		return fail_at(p, SLUICE_ESYNTAX, w->col, "unexpected '%s': expected 'match' or end of line",
			       show(w, buf));
	}
	if (b->nroutes == SLUICE_POLICY_MAX_ROUTES || b->nroutes == b->cap_routes)
		return fail_at(p, SLUICE_ETOOBIG, w->col, "more than %d routes", SLUICE_POLICY_MAX_ROUTES);
	struct broute *r = &b->routes[b->nroutes];
	r->class_id = (uint32_t)id;
	r->line = p->line;
	if ((rc = next_word(p, "a method (GET, POST, ... or *)", &w)) != SLUICE_OK)
		return rc;
	if ((rc = method_word(p, w, r)) != SLUICE_OK)
		return rc;
	if ((rc = next_word(p, "a path pattern", &w)) != SLUICE_OK)
		return rc;
	if ((rc = expect_end(p)) != SLUICE_OK)
		return rc;
	if ((rc = pattern_word(p, w, r)) != SLUICE_OK)
		return rc;
	b->nroutes++;
	return SLUICE_OK;
}

/* "per" scope { "+" scope } where "class" names the endpoint class. */
static int per_word(struct parser *p, const struct word *w, struct sluice_policy_limit *l)
{
	struct builder *b = p->b;
	uint32_t i = 0;

	if (w->quoted)
		return fail_at(p, SLUICE_ESYNTAX, w->col, "expected scopes like ip or token+class");
	for (;;) {
		uint32_t start = i;
		while (i < w->len && w->s[i] != '+')
			i++;
		const char *s = w->s + start;
		uint32_t len = i - start, col = w->col + start;
		int rc = check_name(p, s, len, col, "a scope name");
		if (rc != SLUICE_OK)
			return rc;
		if (len == 5 && memcmp(s, "class", 5) == 0) {
			if (l->per_class)
				return fail_at(p, SLUICE_EINVAL, col, "'class' twice in 'per'");
			l->per_class = true;
		} else {
			int id = find_name(b->scopes, b->nscopes, s, len);
			if (id < 0)
				return fail_at(p, SLUICE_ENOTFOUND, col,
					       "unknown scope '%.*s': declare it with 'scope' first", (int)len, s);
			if (l->scope_mask & (1u << id))
				return fail_at(p, SLUICE_EINVAL, col, "scope '%.*s' twice in 'per'", (int)len, s);
			l->scope_mask |= 1u << id;
		}
		if (i == w->len)
			return SLUICE_OK;
		i++; /* '+' */
	}
}

/* "on" class { "," class } */
static int on_word(struct parser *p, const struct word *w, struct sluice_policy_limit *l)
{
	struct builder *b = p->b;
	uint32_t i = 0;

	if (w->quoted)
		return fail_at(p, SLUICE_ESYNTAX, w->col, "expected class names like auth,signup");
	for (;;) {
		uint32_t start = i;
		while (i < w->len && w->s[i] != ',')
			i++;
		const char *s = w->s + start;
		uint32_t len = i - start, col = w->col + start;
		int rc = check_name(p, s, len, col, "a class name");
		if (rc != SLUICE_OK)
			return rc;
		int id = find_name(b->classes, b->nclasses, s, len);
		if (id < 0)
			return fail_at(p, SLUICE_ENOTFOUND, col,
				       "unknown class '%.*s': declare it with 'class' first", (int)len, s);
		if (l->class_mask & (UINT64_C(1) << id))
			return fail_at(p, SLUICE_EINVAL, col, "class '%.*s' twice in 'on'", (int)len, s);
		l->class_mask |= UINT64_C(1) << id;
		if (i == w->len)
			return SLUICE_OK;
		i++;
	}
}

static int d_limit(struct parser *p)
{
	struct builder *b = p->b;
	const struct word *w = NULL;
	char buf[32];
	int rc;

	if ((rc = next_word(p, "a limit name", &w)) != SLUICE_OK)
		return rc;
	if (b->nlimits == SLUICE_POLICY_MAX_LIMITS)
		return fail_at(p, SLUICE_ETOOBIG, w->col, "more than %d limits", SLUICE_POLICY_MAX_LIMITS);
	struct blimit *bl = &b->limits[b->nlimits];
	struct sluice_policy_limit *l = &bl->l;
	memset(bl, 0, sizeof(*bl));
	if ((rc = name_word(p, w, "a limit name", bl->name)) != SLUICE_OK)
		return rc;
	for (uint32_t i = 0; i < b->nlimits; i++)
		if (strcmp(b->limits[i].name, bl->name) == 0)
			return fail_at(p, SLUICE_EINVAL, w->col, "limit '%s' already declared on line %u",
				       bl->name, b->limits[i].l.line);
	l->line = p->line;

	if ((rc = next_word(p, "'per'", &w)) != SLUICE_OK)
		return rc;
	if (!word_is(w, "per"))
		return fail_at(p, SLUICE_ESYNTAX, w->col, "unexpected '%s': expected 'per'", show(w, buf));
	if ((rc = next_word(p, "scopes after 'per' (e.g. ip or token+class)", &w)) != SLUICE_OK)
		return rc;
	if ((rc = per_word(p, w, l)) != SLUICE_OK)
		return rc;

	if ((rc = next_word(p, "'on' or a limit kind (rate, sliding, quota, concurrency)", &w)) != SLUICE_OK)
		return rc;
	if (word_is(w, "on")) {
		if ((rc = next_word(p, "class names after 'on'", &w)) != SLUICE_OK)
			return rc;
		if ((rc = on_word(p, w, l)) != SLUICE_OK)
			return rc;
		if ((rc = next_word(p, "a limit kind (rate, sliding, quota, concurrency)", &w)) != SLUICE_OK)
			return rc;
	} else {
		l->all_classes = true;
	}

	const struct word *kw = w;
	if (word_is(kw, "rate") || word_is(kw, "sliding") || word_is(kw, "quota")) {
		bool utc = false;
		bool is_quota = word_is(kw, "quota");
		if ((rc = next_word(p, is_quota ? "a quota like 50000/1d@utc" : "a rate like 120/1m", &w)) != SLUICE_OK)
			return rc;
		rc = rate_word(p, w, &l->count, &l->period_ns, is_quota ? &utc : NULL);
		if (rc != SLUICE_OK)
			return rc;
		if (is_quota) {
			if (!utc)
				return fail_at(p, SLUICE_ESYNTAX, w->col + w->len,
					       "expected '@utc' after the period of a quota (windows align to UTC)");
			if (l->period_ns < SLUICE_NS_PER_SEC || NS_PER_DAY % l->period_ns != 0)
				return fail_at(p, SLUICE_EINVAL, w->col,
					       "a calendar period must divide one day and be at least 1s (e.g. 1m, 1h, 1d)");
			l->kind = SLUICE_POLICY_KIND_CALENDAR;
			l->reason = SLUICE_REASON_QUOTA;
		} else {
			l->kind = word_is(kw, "rate") ? SLUICE_POLICY_KIND_GCRA : SLUICE_POLICY_KIND_SLIDING;
			l->reason = SLUICE_REASON_RATE;
		}
	} else if (word_is(kw, "concurrency")) {
		if ((rc = next_word(p, "the number of requests in flight", &w)) != SLUICE_OK)
			return rc;
		if ((rc = count_word(p, w, "the number in flight", &l->count)) != SLUICE_OK)
			return rc;
		l->kind = SLUICE_POLICY_KIND_CONCURRENCY;
		l->reason = SLUICE_REASON_CONCURRENCY;
		l->retry_after_ns = DEFAULT_RETRY_AFTER_NS;
	} else {
		return fail_at(p, SLUICE_ESYNTAX, kw->col,
			       "unexpected '%s': expected a limit kind (rate, sliding, quota, concurrency)",
			       show(kw, buf));
	}
	l->burst = l->count;

	bool seen_burst = false, seen_retry = false, seen_lease = false, seen_warn = false;
	while (p->pos < p->nw) {
		w = &p->w[p->pos++];
		const struct word *opt = w;
		if (word_is(opt, "burst")) {
			if (l->kind != SLUICE_POLICY_KIND_GCRA)
				return fail_at(p, SLUICE_EINVAL, opt->col, "'burst' applies to 'rate' limits only");
			if (seen_burst)
				return fail_at(p, SLUICE_EINVAL, opt->col, "duplicate 'burst'");
			seen_burst = true;
			if ((rc = next_word(p, "the burst (a count)", &w)) != SLUICE_OK)
				return rc;
			if ((rc = count_word(p, w, "the burst", &l->burst)) != SLUICE_OK)
				return rc;
		} else if (word_is(opt, "retry-after") || word_is(opt, "lease")) {
			bool retry = word_is(opt, "retry-after");
			if (l->kind != SLUICE_POLICY_KIND_CONCURRENCY)
				return fail_at(p, SLUICE_EINVAL, opt->col,
					       "'%s' applies to 'concurrency' limits only", retry ? "retry-after" : "lease");
			if (retry ? seen_retry : seen_lease)
				return fail_at(p, SLUICE_EINVAL, opt->col, "duplicate '%s'",
					       retry ? "retry-after" : "lease");
			if ((rc = next_word(p, "a duration like 1s", &w)) != SLUICE_OK)
				return rc;
			uint64_t *dst = retry ? &l->retry_after_ns : &l->lease_ns;
			if ((rc = duration_word(p, w, retry ? "the retry-after" : "the lease", dst)) != SLUICE_OK)
				return rc;
			if (retry && *dst == 0)
				return fail_at(p, SLUICE_EINVAL, w->col, "the retry-after must be longer than 0");
			if (retry)
				seen_retry = true;
			else
				seen_lease = true;
		} else if (word_is(opt, "warn")) {
			uint64_t pct;
			uint32_t used;
			if (seen_warn)
				return fail_at(p, SLUICE_EINVAL, opt->col, "duplicate 'warn'");
			seen_warn = true;
			if ((rc = next_word(p, "a percentage like 80%", &w)) != SLUICE_OK)
				return rc;
			if (w->quoted)
				return fail_at(p, SLUICE_ESYNTAX, w->col, "expected a percentage like 80%%");
			rc = parse_uint(p, w->s, w->len, w->col, 100, "the warning threshold", &pct, &used);
			if (rc != SLUICE_OK)
				return rc;
			if (used + 1 != w->len || w->s[used] != '%')
				return fail_at(p, SLUICE_ESYNTAX, w->col + used, "expected '%%' after the percentage");
			if (pct == 0)
				return fail_at(p, SLUICE_EINVAL, w->col, "the warning threshold must be 1%% to 100%%");
			l->warn_percent = (uint8_t)pct;
		} else if (word_is(opt, "tiered")) {
			if (l->tiered)
				return fail_at(p, SLUICE_EINVAL, opt->col, "duplicate 'tiered'");
			l->tiered = true;
		} else {
			return fail_at(p, SLUICE_ESYNTAX, opt->col,
				       "unexpected '%s': expected an option (burst, retry-after, lease, warn, tiered) or end of line",
				       show(opt, buf));
		}
	}
	if (l->kind == SLUICE_POLICY_KIND_GCRA) {
		struct sluice_rate rate;
		if (sluice_rate_init(&rate, l->count, l->period_ns, l->burst) != SLUICE_OK)
			return fail_at(p, SLUICE_ERANGE, kw->col,
				       "bucket too deep: burst * period / count must stay below 2^62 ns");
	}
	b->nlimits++;
	return SLUICE_OK;
}

static int d_override(struct parser *p)
{
	struct builder *b = p->b;
	const struct word *w = NULL;
	char name[NAME_CAP];
	int rc;

	if ((rc = next_word(p, "a limit name", &w)) != SLUICE_OK)
		return rc;
	if (b->noverrides == SLUICE_POLICY_MAX_OVERRIDES || b->noverrides == b->cap_overrides)
		return fail_at(p, SLUICE_ETOOBIG, w->col, "more than %d overrides",
			       SLUICE_POLICY_MAX_OVERRIDES);
	struct boverride *bo = &b->overrides[b->noverrides];
	struct sluice_policy_override *o = &bo->o;
	memset(bo, 0, sizeof(*bo));
	o->line = p->line;
	if ((rc = name_word(p, w, "a limit name", name)) != SLUICE_OK)
		return rc;
	int li = -1;
	for (uint32_t i = 0; i < b->nlimits; i++)
		if (strcmp(b->limits[i].name, name) == 0)
			li = (int)i;
	if (li < 0)
		return fail_at(p, SLUICE_ENOTFOUND, w->col, "unknown limit '%s': declare it with 'limit' first",
			       name);
	const struct sluice_policy_limit *l = &b->limits[li].l;
	o->limit = (uint32_t)li;

	if ((rc = next_word(p, "a scope name", &w)) != SLUICE_OK)
		return rc;
	if ((rc = name_word(p, w, "a scope name", name)) != SLUICE_OK)
		return rc;
	int si = find_name(b->scopes, b->nscopes, w->s, w->len);
	if (si < 0)
		return fail_at(p, SLUICE_ENOTFOUND, w->col, "unknown scope '%s'", name);
	if (!(l->scope_mask & (1u << si)))
		return fail_at(p, SLUICE_EINVAL, w->col, "limit '%s' is not kept per '%s'",
			       b->limits[li].name, name);
	o->scope = (uint32_t)si;

	if ((rc = next_word(p, "the key (a quoted string)", &w)) != SLUICE_OK)
		return rc;
	if ((rc = string_word(p, w, "the key", false, bo->key, SLUICE_POLICY_MAX_KEY, &o->key_len)) != SLUICE_OK)
		return rc;
	for (uint32_t i = 0; i < b->noverrides; i++) {
		const struct boverride *x = &b->overrides[i];
		if (x->o.limit == o->limit && x->o.scope == o->scope && x->o.key_len == o->key_len &&
		    memcmp(x->key, bo->key, o->key_len) == 0)
			return fail_at(p, SLUICE_EINVAL, w->col, "duplicate override (line %u)", x->o.line);
	}

	if ((rc = next_word(p, "the new count", &w)) != SLUICE_OK)
		return rc;
	if ((rc = count_word(p, w, "the new count", &o->count)) != SLUICE_OK)
		return rc;
	o->burst = o->count;
	if ((rc = next_word(p, "'until' or 'burst'", &w)) != SLUICE_OK)
		return rc;
	if (word_is(w, "burst")) {
		if (l->kind != SLUICE_POLICY_KIND_GCRA)
			return fail_at(p, SLUICE_EINVAL, w->col, "'burst' applies to 'rate' limits only");
		if ((rc = next_word(p, "the burst (a count)", &w)) != SLUICE_OK)
			return rc;
		if ((rc = count_word(p, w, "the burst", &o->burst)) != SLUICE_OK)
			return rc;
		if ((rc = next_word(p, "'until'", &w)) != SLUICE_OK)
			return rc;
	}
	if (!word_is(w, "until")) {
		char buf[32];
		return fail_at(p, SLUICE_ESYNTAX, w->col, "unexpected '%s': expected 'until'", show(w, buf));
	}
	if ((rc = next_word(p, "a UTC time like 2026-12-01T00:00:00Z", &w)) != SLUICE_OK)
		return rc;
	if ((rc = time_word(p, w, &o->expires_at_ns)) != SLUICE_OK)
		return rc;
	if (l->kind == SLUICE_POLICY_KIND_GCRA) {
		struct sluice_rate rate;
		if (sluice_rate_init(&rate, o->count, l->period_ns, o->burst) != SLUICE_OK)
			return fail_at(p, SLUICE_ERANGE, p->w[4].col,
				       "bucket too deep: burst * period / count must stay below 2^62 ns");
	}
	b->noverrides++;
	return expect_end(p);
}

static int directive(struct parser *p)
{
	const struct word *w = &p->w[p->pos++];
	char buf[32];

	if (!p->b->seen_policy && !word_is(w, "policy"))
		return fail_at(p, SLUICE_ESYNTAX, w->col,
			       "expected 'policy \"name\"' as the first directive");
	if (word_is(w, "policy"))
		return d_policy(p);
	if (word_is(w, "headers"))
		return d_headers(p);
	if (word_is(w, "body"))
		return d_body(p);
	if (word_is(w, "fail"))
		return d_fail(p);
	if (word_is(w, "scope"))
		return d_scope(p);
	if (word_is(w, "class"))
		return d_class(p);
	if (word_is(w, "routes"))
		return d_routes(p);
	if (word_is(w, "tier"))
		return d_tier(p);
	if (word_is(w, "limit"))
		return d_limit(p);
	if (word_is(w, "override"))
		return d_override(p);
	return fail_at(p, SLUICE_ESYNTAX, w->col,
		       "unknown directive '%s': expected policy, headers, body, fail, scope, class, routes, tier, limit or override",
		       show(w, buf));
}

/* Checks that need the whole text: tiers apply to limits declared anywhere. */
static int finish(struct parser *p)
{
	struct builder *b = p->b;

	if (!b->seen_policy)
		return fail_at(p, SLUICE_ESYNTAX, 1, "expected 'policy \"name\"' as the first directive");
	if (b->nlimits == 0)
		return fail_at(p, SLUICE_EINVAL, 1, "a policy needs at least one 'limit'");
	int rc = check_patterns(p);
	if (rc != SLUICE_OK)
		return rc;
	for (uint32_t i = 0; i < b->nlimits; i++) {
		const struct sluice_policy_limit *l = &b->limits[i].l;
		if (!l->tiered)
			continue;
		for (uint32_t t = 0; t < b->ntiers; t++) {
			uint64_t c = (uint64_t)(((sluice__u128)l->count * b->tiers[t].milli) / 1000);
			uint64_t bu = (uint64_t)(((sluice__u128)l->burst * b->tiers[t].milli) / 1000);
			struct sluice_rate rate;
			p->line = l->line;
			if (c == 0 || bu == 0)
				return fail_at(p, SLUICE_ERANGE, 1,
					       "limit '%s' times tier '%s' (line %u) rounds down to 0",
					       b->limits[i].name, b->tiers[t].name, b->tiers[t].line);
			if (c > SLUICE_POLICY_MAX_COUNT || bu > SLUICE_POLICY_MAX_COUNT ||
			    (l->kind == SLUICE_POLICY_KIND_GCRA && sluice_rate_init(&rate, c, l->period_ns, bu) != SLUICE_OK))
				return fail_at(p, SLUICE_ERANGE, 1,
					       "limit '%s' times tier '%s' (line %u) is out of range",
					       b->limits[i].name, b->tiers[t].name, b->tiers[t].line);
		}
	}
	return SLUICE_OK;
}

/* ------------------------------------------------------------------------
 * Compilation into the final policy
 * ------------------------------------------------------------------------ */

/* Literal children order: by length, then bytes (what the matcher searches). */
static int seg_cmp(const struct bnode *a, const struct bnode *b)
{
	if (a->seg_len != b->seg_len)
		return a->seg_len < b->seg_len ? -1 : 1;
	return memcmp(a->seg, b->seg, a->seg_len);
}

/* A bump allocator over the final block; sizes computed by a dry run. */
struct carve {
	char *base;
	size_t used;
};

static void *take(struct carve *c, size_t size, size_t align)
{
	c->used = (c->used + align - 1) & ~(align - 1);
	void *ptr = c->base == NULL ? NULL : c->base + c->used;
	c->used += size;
	return ptr;
}

static const char *take_str(struct carve *c, const char *s, size_t len)
{
	char *d = take(c, len + 1, 1);
	if (d != NULL) {
		memcpy(d, s, len);
		d[len] = '\0';
	}
	return d;
}

static int term_cmp_method(uint32_t a, uint32_t b)
{
	/* exact methods first (by id), "*" last */
	return a < b ? -1 : a > b;
}

/*
 * Lay the policy out in c (dry run when c->base is NULL: only sizes). The
 * layout is a pure function of the builder, so both runs agree.
 */
static void layout(struct builder *b, struct carve *c, struct sluice_policy **out, uint32_t *order)
{
	struct sluice_policy *pol = take(c, sizeof(*pol), _Alignof(struct sluice_policy));
	const char **scopes = take(c, sizeof(char *) * b->nscopes, _Alignof(char *));
	struct sluice_policy_limit *limits =
		take(c, sizeof(*limits) * b->nlimits, _Alignof(struct sluice_policy_limit));
	const char **classes = take(c, sizeof(char *) * b->nclasses, _Alignof(char *));
	struct sluice_policy_route *routes =
		take(c, sizeof(*routes) * b->nroutes, _Alignof(struct sluice_policy_route));
	struct sluice_policy_tier *tiers = take(c, sizeof(*tiers) * b->ntiers, _Alignof(struct sluice_policy_tier));
	struct sluice_policy_override *ovr =
		take(c, sizeof(*ovr) * b->noverrides, _Alignof(struct sluice_policy_override));
	uint32_t *ovr_order = take(c, sizeof(uint32_t) * b->noverrides, _Alignof(uint32_t));
	struct sluice__route_node *nodes =
		take(c, sizeof(*nodes) * b->nnodes, _Alignof(struct sluice__route_node));
	struct sluice__route_term *terms =
		take(c, sizeof(*terms) * b->nterms, _Alignof(struct sluice__route_term));
	const char **methods = take(c, sizeof(char *) * b->nmethods, _Alignof(char *));
	uint8_t *method_lens = take(c, b->nmethods, 1);

	const char *title = take_str(c, b->title, strlen(b->title));
	for (uint32_t i = 0; i < b->nscopes; i++) {
		const char *s = take_str(c, b->scopes[i], strlen(b->scopes[i]));
		if (scopes != NULL)
			scopes[i] = s;
	}
	for (uint32_t i = 0; i < b->nclasses; i++) {
		const char *s = take_str(c, b->classes[i], strlen(b->classes[i]));
		if (classes != NULL)
			classes[i] = s;
	}
	for (uint32_t i = 0; i < b->nlimits; i++) {
		const char *s = take_str(c, b->limits[i].name, strlen(b->limits[i].name));
		if (limits != NULL) {
			limits[i] = b->limits[i].l;
			limits[i].name = s;
		}
	}
	for (uint32_t i = 0; i < b->nroutes; i++) {
		const char *m = take_str(c, b->routes[i].method, b->routes[i].method_len);
		const char *pat = take_str(c, b->routes[i].pattern, b->routes[i].pattern_len);
		if (routes != NULL) {
			routes[i].method = m;
			routes[i].pattern = pat;
			routes[i].class_id = b->routes[i].class_id;
			routes[i].line = b->routes[i].line;
		}
	}
	for (uint32_t i = 0; i < b->ntiers; i++) {
		const char *s = take_str(c, b->tiers[i].name, strlen(b->tiers[i].name));
		if (tiers != NULL) {
			tiers[i].name = s;
			tiers[i].multiplier_milli = b->tiers[i].milli;
		}
	}
	for (uint32_t i = 0; i < b->noverrides; i++) {
		uint8_t *k = take(c, b->overrides[i].o.key_len, 1);
		if (ovr != NULL) {
			memcpy(k, b->overrides[i].key, b->overrides[i].o.key_len);
			ovr[i] = b->overrides[i].o;
			ovr[i].key = k;
			ovr_order[i] = order[i];
		}
	}
	for (uint32_t i = 0; i < b->nmethods; i++) {
		const char *s = take_str(c, b->methods[i], strlen(b->methods[i]));
		if (methods != NULL) {
			methods[i] = s;
			method_lens[i] = (uint8_t)strlen(s);
		}
	}
	/* Literal segment texts, in final node order (filled below). */
	char *segs = take(c, 0, 1);
	size_t seg_bytes = 0;
	for (uint32_t i = 0; i < b->nnodes; i++)
		seg_bytes += b->nodes[i].seg_len;
	take(c, seg_bytes, 1);

	if (pol == NULL) {
		*out = NULL;
		return;
	}

	/*
	 * Flatten the trie breadth first. queue[] holds builder node ids in
	 * final order; for each dequeued node its literal children (sorted) and
	 * then its param child receive the next final indices.
	 */
	uint32_t *queue = order + b->noverrides; /* scratch after the override order */
	uint32_t head = 0, tail = 0, next_term = 0;
	size_t seg_used = 0;
	queue[tail++] = 0;
	b->nodes[0].final_index = 0;
	while (head < tail) {
		uint32_t u = queue[head++];
		struct bnode *bn = &b->nodes[u];
		struct sluice__route_node *n = &nodes[bn->final_index];
		if (bn->seg_len > 0) {
			memcpy(segs + seg_used, bn->seg, bn->seg_len);
			n->seg = segs + seg_used;
			seg_used += bn->seg_len;
		} else {
			n->seg = NULL;
		}
		n->seg_len = bn->seg_len;
		/* literal children: insertion sort into the queue */
		n->lit_first = tail;
		n->lit_count = 0;
		for (uint32_t ch = bn->first_child; ch != SLUICE__NODE_NONE; ch = b->nodes[ch].next_sibling) {
			uint32_t k = tail + n->lit_count;
			while (k > tail && seg_cmp(&b->nodes[queue[k - 1]], &b->nodes[ch]) > 0) {
				queue[k] = queue[k - 1];
				k--;
			}
			queue[k] = ch;
			n->lit_count++;
		}
		for (uint32_t k = 0; k < n->lit_count; k++)
			b->nodes[queue[tail + k]].final_index = tail + k;
		tail += n->lit_count;
		if (bn->param_child != SLUICE__NODE_NONE) {
			n->param_child = tail;
			b->nodes[bn->param_child].final_index = tail;
			queue[tail++] = bn->param_child;
		} else {
			n->param_child = SLUICE__NODE_NONE;
		}
		/* terms, exact methods by id then "*" */
		for (int wild = 0; wild < 2; wild++) {
			uint32_t first = next_term, count = 0;
			for (uint32_t t = wild ? bn->wild_head : bn->term_head; t != SLUICE__NODE_NONE;
			     t = b->terms[t].next) {
				uint32_t k = first + count;
				struct sluice__route_term nt = {b->terms[t].method_id, b->terms[t].class_id};
				while (k > first && term_cmp_method(terms[k - 1].method_id, nt.method_id) > 0) {
					terms[k] = terms[k - 1];
					k--;
				}
				terms[k] = nt;
				count++;
			}
			next_term += count;
			if (wild) {
				n->wild_first = first;
				n->wild_count = count;
			} else {
				n->term_first = first;
				n->term_count = count;
			}
		}
	}

	pol->spec.name = title;
	pol->spec.families = b->families;
	pol->spec.body = b->body;
	pol->spec.fail = b->fail;
	pol->spec.route_fold_case = b->fold_case;
	pol->spec.scope_count = b->nscopes;
	pol->spec.limit_count = b->nlimits;
	pol->spec.class_count = b->nclasses;
	pol->spec.route_count = b->nroutes;
	pol->spec.tier_count = b->ntiers;
	pol->spec.override_count = b->noverrides;
	pol->spec.scopes = scopes;
	pol->spec.limits = limits;
	pol->spec.classes = classes;
	pol->spec.routes = routes;
	pol->spec.tiers = tiers;
	pol->spec.overrides = ovr;
	pol->nodes = nodes;
	pol->terms = terms;
	pol->node_count = b->nnodes;
	pol->term_count = b->nterms;
	pol->method_count = b->nmethods;
	pol->methods = methods;
	pol->method_lens = method_lens;
	pol->override_order = ovr_order;
	for (uint32_t k = 0; k < b->nclasses; k++)
		for (uint32_t i = 0; i < b->nlimits; i++)
			if (b->limits[i].l.all_classes || (b->limits[i].l.class_mask >> k) & 1)
				pol->class_limits[k] |= 1u << i;
	*out = pol;
}

static int override_cmp(const struct boverride *a, const struct boverride *b)
{
	if (a->o.limit != b->o.limit)
		return a->o.limit < b->o.limit ? -1 : 1;
	if (a->o.scope != b->o.scope)
		return a->o.scope < b->o.scope ? -1 : 1;
	uint32_t n = SLUICE_MIN(a->o.key_len, b->o.key_len);
	int c = memcmp(a->key, b->key, n);
	if (c != 0)
		return c;
	return a->o.key_len < b->o.key_len ? -1 : a->o.key_len > b->o.key_len;
}

static void *default_alloc(void *ctx, size_t size)
{
	(void)ctx;
	return malloc(size);
}

static void default_free(void *ctx, void *ptr)
{
	(void)ctx;
	free(ptr);
}

static size_t align_up(size_t n)
{
	return (n + 15) & ~(size_t)15;
}

/* Bytes of a builder with these capacities (all arrays in one block). */
static size_t scratch_bytes(uint32_t routes, uint32_t overrides, uint32_t nodes)
{
	return align_up(sizeof(struct builder)) + align_up(routes * sizeof(struct broute)) +
	       align_up(routes * sizeof(struct bterm)) + align_up(overrides * sizeof(struct boverride)) +
	       align_up(nodes * sizeof(struct bnode)) + (size_t)(overrides + nodes) * sizeof(uint32_t);
}

/*
 * Capacities the text can need: every route and override is a line of its
 * own, every trie node but the root is a path segment, which starts after a
 * '/' of its own. So small policies get a small scratch block; no input
 * gets more than the ceilings allow (about 300 KB).
 */
static void scratch_caps(const char *text, size_t len, uint32_t *routes, uint32_t *overrides, uint32_t *nodes)
{
	size_t lines = 1, slashes = 0;
	for (size_t i = 0; i < len; i++) {
		lines += text[i] == '\n';
		slashes += text[i] == '/';
	}
	*routes = (uint32_t)SLUICE_MIN(lines, (size_t)SLUICE_POLICY_MAX_ROUTES);
	*overrides = (uint32_t)SLUICE_MIN(lines, (size_t)SLUICE_POLICY_MAX_OVERRIDES);
	*nodes = (uint32_t)SLUICE_MIN(slashes + 1, (size_t)MAX_NODES);
}

static int run(struct parser *p, const char *text, size_t len)
{
	size_t i = 0;
	int rc;

	p->line = 0;
	while (i < len) {
		size_t start = i;
		while (i < len && text[i] != '\n')
			i++;
		size_t end = i;
		if (i < len)
			i++; /* the '\n' */
		p->line++;
		if (end > start && text[end - 1] == '\r')
			end--;
		for (size_t k = start; k < end; k++)
			if (text[k] == '\r' || text[k] == '\0')
				return fail_at(p, SLUICE_ESYNTAX, (uint32_t)(k - start + 1),
					       text[k] ? "stray carriage return (lines end with \\n or \\r\\n)"
						       : "NUL byte in the text");
		if ((rc = tokenize(p, text + start, (uint32_t)(end - start))) != SLUICE_OK)
			return rc;
		if (p->nw == 0)
			continue;
		if ((rc = directive(p)) != SLUICE_OK)
			return rc;
	}
	p->line = p->line == 0 ? 1 : p->line;
	return finish(p);
}

int sluice_policy_parse(const char *text, size_t len, const struct sluice_policy_options *options,
			struct sluice_policy **out, struct sluice_policy_error *err)
{
	struct parser p;
	void *(*alloc_fn)(void *, size_t) = default_alloc;
	void (*free_fn)(void *, void *) = default_free;
	void *ctx = NULL;
	size_t max_bytes = 0;

	memset(&p, 0, sizeof(p));
	p.err = err;
	if (err != NULL)
		memset(err, 0, sizeof(*err));
	if (out != NULL)
		*out = NULL;
	if (text == NULL || out == NULL)
		return fail_at(&p, SLUICE_EINVAL, 0, "NULL text or output pointer");
	if (options != NULL) {
		if (options->size < sizeof(size_t) || options->size > sizeof(*options))
			return fail_at(&p, SLUICE_EINVAL, 0, "options->size must be sizeof(struct sluice_policy_options)");
		/* fields beyond options->size keep their defaults */
		struct sluice_policy_options o;
		memset(&o, 0, sizeof(o));
		memcpy(&o, options, SLUICE_MIN(options->size, sizeof(o)));
		if ((o.alloc == NULL) != (o.free == NULL))
			return fail_at(&p, SLUICE_EINVAL, 0, "set both alloc and free, or neither");
		if (o.alloc != NULL) {
			alloc_fn = o.alloc;
			free_fn = o.free;
			ctx = o.alloc_ctx;
		}
		max_bytes = o.max_bytes;
	}
	if (len > SLUICE_POLICY_MAX_INPUT)
		return fail_at(&p, SLUICE_ETOOBIG, 0, "policy text longer than %u bytes",
			       SLUICE_POLICY_MAX_INPUT);

	uint32_t cap_routes, cap_overrides, cap_nodes;
	scratch_caps(text, len, &cap_routes, &cap_overrides, &cap_nodes);
	size_t scratch = scratch_bytes(cap_routes, cap_overrides, cap_nodes);
	char *block = alloc_fn(ctx, scratch);
	if (block == NULL)
		return fail_at(&p, SLUICE_ENOMEM, 0, "out of memory (scratch builder, %zu bytes)", scratch);
	struct builder *b = (struct builder *)block;
	/* only the counters and the root need clearing; arrays fill as they grow */
	memset(b, 0, offsetof(struct builder, scopes));
	b->cap_routes = cap_routes;
	b->cap_overrides = cap_overrides;
	b->cap_nodes = cap_nodes;
	size_t off = align_up(sizeof(struct builder));
	b->routes = (struct broute *)(block + off);
	off += align_up(cap_routes * sizeof(struct broute));
	b->terms = (struct bterm *)(block + off);
	off += align_up(cap_routes * sizeof(struct bterm));
	b->overrides = (struct boverride *)(block + off);
	off += align_up(cap_overrides * sizeof(struct boverride));
	b->nodes = (struct bnode *)(block + off);
	off += align_up(cap_nodes * sizeof(struct bnode));
	b->order = (uint32_t *)(block + off);
	b->families = SLUICE_HTTP_RETRY_AFTER;
	b->body = SLUICE_HTTP_BODY_EMPTY;
	b->nclasses = 1;
	strcpy(b->classes[0], "default");
	b->nnodes = 1;
	memset(&b->nodes[0], 0, sizeof(b->nodes[0]));
	b->nodes[0].first_child = b->nodes[0].next_sibling = b->nodes[0].param_child = SLUICE__NODE_NONE;
	b->nodes[0].term_head = b->nodes[0].wild_head = SLUICE__NODE_NONE;
	p.b = b;

	int rc = run(&p, text, len);
	if (rc != SLUICE_OK) {
		free_fn(ctx, block);
		return rc;
	}

	/* override lookup order (insertion sort: at most 256 entries) */
	for (uint32_t i = 0; i < b->noverrides; i++) {
		uint32_t k = i;
		while (k > 0 && override_cmp(&b->overrides[b->order[k - 1]], &b->overrides[i]) > 0) {
			b->order[k] = b->order[k - 1];
			k--;
		}
		b->order[k] = i;
	}

	struct carve c = {NULL, 0};
	struct sluice_policy *pol;
	layout(b, &c, &pol, b->order);
	size_t bytes = c.used;
	/* The errors below have no position in the text (policy.h): the
	 * parser's line counter has run to the end of the input by now. */
	p.line = 0;
	if (max_bytes != 0 && bytes > max_bytes) {
		free_fn(ctx, block);
		return fail_at(&p, SLUICE_ETOOBIG, 0, "policy needs %zu bytes, more than max_bytes (%zu)", bytes,
			       max_bytes);
	}
	c.base = alloc_fn(ctx, bytes);
	if (c.base == NULL) {
		free_fn(ctx, block);
		return fail_at(&p, SLUICE_ENOMEM, 0, "out of memory (policy, %zu bytes)", bytes);
	}
	memset(c.base, 0, bytes);
	c.used = 0;
	layout(b, &c, &pol, b->order);
	pol->free_fn = free_fn;
	pol->alloc_ctx = ctx;
	pol->bytes = bytes;
	free_fn(ctx, block);
	*out = pol;
	return SLUICE_OK;
}
