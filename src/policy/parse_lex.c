/*
 * parse_lex.c - the words of a policy line and the lexical items in them.
 *
 * The format is line oriented (grammar in docs/policy.md). A line is cut
 * into words (runs of bytes other than space, tab and '"'), quoted strings
 * and a '#' comment, at most MAX_WORDS of them; each word keeps its column,
 * so that every error can name the column of the first byte the parser could
 * not accept and what it expected there (sluice__parse_fail).
 *
 * The lexical items are read from one word each: names, counts, durations,
 * rates (count/period, '@utc' for calendar windows), quoted strings with \"
 * \\ \xHH escapes, UTC times. Every number is parsed with an explicit
 * overflow check against its ceiling in policy.h, and no function looks past
 * the word or line it was given: arbitrary bytes get an error, never a crash
 * (fuzz/fuzz_policy.c).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "policy/parse_internal.h"

int sluice__parse_fail(struct parser *p, int code, uint32_t col, const char *fmt, ...)
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
const char *sluice__parse_show(const struct word *w, char buf[32])
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

bool sluice__parse_word_is(const struct word *w, const char *lit)
{
	size_t n = strlen(lit);
	return !w->quoted && w->len == n && memcmp(w->s, lit, n) == 0;
}

/* The next word, or an error saying `what` was expected. */
int sluice__parse_next_word(struct parser *p, const char *what, const struct word **out)
{
	if (p->pos >= p->nw)
		return sluice__parse_fail(p, SLUICE_ESYNTAX, p->end_col, "expected %s at end of line", what);
	*out = &p->w[p->pos++];
	return SLUICE_OK;
}

int sluice__parse_expect_end(struct parser *p)
{
	char buf[32];

	if (p->pos < p->nw)
		return sluice__parse_fail(p, SLUICE_ESYNTAX, p->w[p->pos].col, "unexpected '%s': expected end of line",
					  sluice__parse_show(&p->w[p->pos], buf));
	return SLUICE_OK;
}

/*
 * Cut one line (line[0..len), no newline) into words. Returns 0 or an
 * error. A '#' outside a string starts a comment.
 */
int sluice__parse_tokenize(struct parser *p, const char *line, uint32_t len)
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
			return sluice__parse_fail(p, SLUICE_ESYNTAX, i + 1, "too many words on one line (at most %d)",
						  MAX_WORDS);
		struct word *w = &p->w[p->nw];
		w->col = i + 1;
		if (c == '"') {
			uint32_t j = i + 1;
			while (j < len && line[j] != '"') {
				if ((unsigned char)line[j] < 0x20 || line[j] == 0x7f)
					return sluice__parse_fail(p, SLUICE_ESYNTAX, j + 1,
								  "control byte 0x%02x in a string (write \\x%02x)",
								  (unsigned char)line[j], (unsigned char)line[j]);
				j += (line[j] == '\\' && j + 1 < len) ? 2 : 1;
			}
			if (j >= len)
				return sluice__parse_fail(p, SLUICE_ESYNTAX, i + 1,
							  "unterminated string: expected '\"'");
			w->s = line + i + 1;
			w->len = j - i - 1;
			w->quoted = true;
			i = j + 1;
			if (i < len && line[i] != ' ' && line[i] != '\t' && line[i] != '#')
				return sluice__parse_fail(p, SLUICE_ESYNTAX, i + 1,
							  "expected a space after the closing '\"'");
		} else {
			uint32_t j = i;
			while (j < len && line[j] != ' ' && line[j] != '\t' && line[j] != '#' &&
			       line[j] != '"') {
				unsigned char d = (unsigned char)line[j];
				if (d < 0x20 || d >= 0x7f)
					return sluice__parse_fail(
						p, SLUICE_ESYNTAX, j + 1,
						"unexpected byte 0x%02x (only printable ASCII outside strings and comments)",
						d);
				j++;
			}
			if (j < len && line[j] == '"')
				return sluice__parse_fail(
					p, SLUICE_ESYNTAX, j + 1,
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
			return sluice__parse_fail(p, SLUICE_ESYNTAX, i + 1, "control byte 0x%02x in a comment", c);
	}
	return SLUICE_OK;
}

/* name = letter-or-'_' { letter | digit | '_' | '-' }, at most 31 bytes. */
int sluice__parse_check_name(struct parser *p, const char *s, uint32_t len, uint32_t col, const char *what)
{
	if (len == 0 || !(is_alpha(s[0]) || s[0] == '_'))
		return sluice__parse_fail(p, SLUICE_ESYNTAX, col, "expected %s (a name: a letter or '_' first)", what);
	for (uint32_t i = 1; i < len; i++)
		if (!(is_alpha(s[i]) || is_digit(s[i]) || s[i] == '_' || s[i] == '-'))
			return sluice__parse_fail(p, SLUICE_ESYNTAX, col + i,
						  "unexpected '%c' in %s: expected a letter, digit, '_' or '-'", s[i],
						  what);
	if (len > SLUICE_POLICY_MAX_NAME)
		return sluice__parse_fail(p, SLUICE_ETOOBIG, col, "%s longer than %d bytes", what,
					  SLUICE_POLICY_MAX_NAME);
	return SLUICE_OK;
}

int sluice__parse_name_word(struct parser *p, const struct word *w, const char *what, char out[NAME_CAP])
{
	if (w->quoted)
		return sluice__parse_fail(p, SLUICE_ESYNTAX, w->col, "expected %s, not a string", what);
	int rc = sluice__parse_check_name(p, w->s, w->len, w->col, what);
	if (rc != SLUICE_OK)
		return rc;
	memcpy(out, w->s, w->len);
	out[w->len] = '\0';
	return SLUICE_OK;
}

int sluice__parse_find_name(char (*names)[NAME_CAP], uint32_t n, const char *s, uint32_t len)
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
int sluice__parse_uint(struct parser *p, const char *s, uint32_t len, uint32_t col, uint64_t max,
			      const char *what, uint64_t *out, uint32_t *used)
{
	uint64_t v = 0;
	uint32_t i = 0;

	if (len == 0 || !is_digit(s[0]))
		return sluice__parse_fail(p, SLUICE_ESYNTAX, col, "expected %s (digits)", what);
	while (i < len) {
		if (s[i] == '_' && i + 1 < len && is_digit(s[i + 1]) && i > 0) {
			i++;
			continue;
		}
		if (!is_digit(s[i]))
			break;
		unsigned d = (unsigned)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10 || v * 10 + d > max)
			return sluice__parse_fail(p, SLUICE_ERANGE, col, "%s out of range (at most %llu)", what,
						  (unsigned long long)max);
		v = v * 10 + d;
		i++;
	}
	*out = v;
	*used = i;
	return SLUICE_OK;
}

/* A whole word that is a count in [1, SLUICE_POLICY_MAX_COUNT]. */
int sluice__parse_count_word(struct parser *p, const struct word *w, const char *what, uint64_t *out)
{
	uint32_t used;
	int rc;

	if (w->quoted)
		return sluice__parse_fail(p, SLUICE_ESYNTAX, w->col, "expected %s, not a string", what);
	rc = sluice__parse_uint(p, w->s, w->len, w->col, SLUICE_POLICY_MAX_COUNT, what, out, &used);
	if (rc != SLUICE_OK)
		return rc;
	if (used != w->len)
		return sluice__parse_fail(p, SLUICE_ESYNTAX, w->col + used, "unexpected '%c' in %s: expected digits",
					  w->s[used], what);
	if (*out == 0)
		return sluice__parse_fail(p, SLUICE_EINVAL, w->col, "%s must be at least 1", what);
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
	int rc = sluice__parse_uint(p, s, len, col, UINT64_MAX, what, &v, &used);

	if (rc != SLUICE_OK)
		return rc;
	const char *u = s + used;
	uint32_t ulen = len - used;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strlen(units[i].name) == ulen && memcmp(units[i].name, u, ulen) == 0) {
			if (v > SLUICE_POLICY_MAX_PERIOD_NS / units[i].ns)
				return sluice__parse_fail(p, SLUICE_ERANGE, col,
							  "%s out of range (at most 2^62 ns, about 146 years)", what);
			*out = v * units[i].ns;
			return SLUICE_OK;
		}
	}
	return sluice__parse_fail(p, SLUICE_ESYNTAX, col + used, "expected a unit after %s: ns, us, ms, s, m, h or d",
				  what);
}

int sluice__parse_duration_word(struct parser *p, const struct word *w, const char *what, uint64_t *out)
{
	if (w->quoted)
		return sluice__parse_fail(p, SLUICE_ESYNTAX, w->col, "expected %s, not a string", what);
	return parse_duration(p, w->s, w->len, w->col, what, out);
}

/*
 * count "/" duration [ "@utc" ]. *utc receives whether the suffix was there
 * (NULL: the suffix is refused).
 */
int sluice__parse_rate_word(struct parser *p, const struct word *w, uint64_t *count, uint64_t *period_ns,
				   bool *utc)
{
	uint32_t used;
	int rc;
	uint32_t len = w->len;

	if (w->quoted)
		return sluice__parse_fail(p, SLUICE_ESYNTAX, w->col, "expected a rate like 120/1m, not a string");
	rc = sluice__parse_uint(p, w->s, len, w->col, SLUICE_POLICY_MAX_COUNT, "the count", count, &used);
	if (rc != SLUICE_OK)
		return rc;
	if (used == len || w->s[used] != '/')
		return sluice__parse_fail(p, SLUICE_ESYNTAX, w->col + used,
					  "expected '/' and a period after the count (e.g. 120/1m)");
	if (*count == 0)
		return sluice__parse_fail(p, SLUICE_EINVAL, w->col, "the count must be at least 1");
	if (utc != NULL)
		*utc = false;
	if (len - used - 1 >= 4 && memcmp(w->s + len - 4, "@utc", 4) == 0) {
		if (utc == NULL)
			return sluice__parse_fail(p, SLUICE_EINVAL, w->col + len - 4,
						  "'@utc' only follows a calendar window: write 'quota N/P@utc'");
		*utc = true;
		len -= 4;
	}
	uint32_t pcol = w->col + used + 1;
	rc = parse_duration(p, w->s + used + 1, len - used - 1, pcol, "the period", period_ns);
	if (rc != SLUICE_OK)
		return rc;
	if (*period_ns == 0)
		return sluice__parse_fail(p, SLUICE_EINVAL, pcol, "the period must be longer than 0");
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

void sluice__parse_decode_string(const char *s, uint32_t len, char *out)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < len;) {
		if (s[i] != '\\') {
			out[n++] = s[i++];
		} else if (s[i + 1] == 'x') {
			out[n++] = (char)(hex_digit(s[i + 2]) * 16 + hex_digit(s[i + 3]));
			i += 4;
		} else {
			out[n++] = s[i + 1];
			i += 2;
		}
	}
}

/*
 * Decode a quoted string: escapes \" \\ \xHH. `printable`: only bytes
 * 0x20..0x7e may result. Writes at most cap bytes; longer is ETOOBIG.
 */
int sluice__parse_string_word(struct parser *p, const struct word *w, const char *what, bool printable,
				     uint8_t *out, uint32_t cap, uint32_t *out_len)
{
	uint32_t n = 0;

	if (!w->quoted)
		return sluice__parse_fail(p, SLUICE_ESYNTAX, w->col, "expected %s as a quoted string", what);
	for (uint32_t i = 0; i < w->len;) {
		uint32_t col = w->col + 1 + i;
		unsigned char c = (unsigned char)w->s[i];
		if (c == '\\') {
			if (i + 1 >= w->len)
				return sluice__parse_fail(p, SLUICE_ESYNTAX, col, "expected an escape after '\\'");
			char e = w->s[i + 1];
			if (e == '"' || e == '\\') {
				c = (unsigned char)e;
				i += 2;
			} else if (e == 'x') {
				int hi = i + 2 < w->len ? hex_digit(w->s[i + 2]) : -1;
				int lo = i + 3 < w->len ? hex_digit(w->s[i + 3]) : -1;
				if (hi < 0 || lo < 0)
					return sluice__parse_fail(p, SLUICE_ESYNTAX, col,
								  "expected two hex digits after '\\x'");
				c = (unsigned char)(hi * 16 + lo);
				i += 4;
			} else {
				return sluice__parse_fail(p, SLUICE_ESYNTAX, col,
							  "unknown escape '\\%c': expected \\\", \\\\ or \\xHH",
							  (e >= 0x20 && e < 0x7f) ? e : '?');
			}
		} else {
			i++;
		}
		if (printable && (c < 0x20 || c >= 0x7f))
			return sluice__parse_fail(p, SLUICE_EINVAL, col, "%s must be printable ASCII", what);
		if (n == cap)
			return sluice__parse_fail(p, SLUICE_ETOOBIG, w->col, "%s longer than %u bytes", what, cap);
		out[n++] = c;
	}
	if (n == 0)
		return sluice__parse_fail(p, SLUICE_EINVAL, w->col, "%s must not be empty", what);
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
int sluice__parse_time_word(struct parser *p, const struct word *w, uint64_t *out)
{
	static const unsigned mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	const char *s = w->s;
	unsigned y, mo, d, h, mi, se;
	uint64_t frac = 0;

	if (w->quoted || w->len < 20 || !fixed_digits(s, 4, &y) || s[4] != '-' ||
	    !fixed_digits(s + 5, 2, &mo) || s[7] != '-' || !fixed_digits(s + 8, 2, &d) ||
	    s[10] != 'T' || !fixed_digits(s + 11, 2, &h) || s[13] != ':' ||
	    !fixed_digits(s + 14, 2, &mi) || s[16] != ':' || !fixed_digits(s + 17, 2, &se))
		return sluice__parse_fail(p, SLUICE_ESYNTAX, w->col,
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
			return sluice__parse_fail(p, SLUICE_ESYNTAX, w->col + i, "expected 1 to 9 digits after '.'");
		for (; digits < 9; digits++)
			frac *= 10;
	}
	if (i + 1 != w->len || s[i] != 'Z')
		return sluice__parse_fail(p, SLUICE_ESYNTAX, w->col + i, "expected 'Z' to end the time (UTC)");
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	if (y < 1970 || y > 2500 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] ||
	    (mo == 2 && d == 29 && !leap) || h > 23 || mi > 59 || se > 59)
		return sluice__parse_fail(p, SLUICE_ERANGE, w->col, "no such time (years 1970 to 2500; seconds 0..59)");
	int64_t days = days_from_civil(y, mo, d);
	uint64_t secs = (uint64_t)days * 86400 + h * 3600u + mi * 60u + se;
	*out = secs * SLUICE_NS_PER_SEC + frac;
	return SLUICE_OK;
}
