/*
 * Times and numbers in rate-limit fields (client side): HTTP-dates (RFC
 * 9110), RFC 3339 timestamps, Go duration strings, plain and fractional
 * numbers, Retry-After, and the one function that turns a field value of a
 * given format into a delay.
 *
 * Every parser is a strict left-to-right scan with range checks; none calls
 * libc's time functions (so TZ and locale cannot matter) and none
 * allocates. Calendar arithmetic is H. Hinnant's days_from_civil, exact
 * for every proleptic Gregorian date. Rounding is always upwards when a
 * value becomes a wait: a client that waits the rounded value is never
 * early.
 */
#include <string.h>

#include "client/client_internal.h"

/* ---- numbers ------------------------------------------------------------------ */

void sluice__client_trim(const char **s, size_t *len)
{
	while (*len > 0 && (**s == ' ' || **s == '\t')) {
		++*s;
		--*len;
	}
	while (*len > 0 && ((*s)[*len - 1] == ' ' || (*s)[*len - 1] == '\t'))
		--*len;
}

bool sluice__client_number(const char *s, size_t len, bool allow_frac, uint64_t *v, uint32_t *frac_ns)
{
	size_t i = 0;
	uint64_t x = 0;
	uint32_t f = 0, scale = 100000000;
	bool more = false;

	while (i < len && s[i] >= '0' && s[i] <= '9') {
		uint64_t d = (uint64_t)(s[i] - '0');
		x = x > (UINT64_MAX - d) / 10 ? UINT64_MAX : x * 10 + d;
		i++;
	}
	if (i == 0)
		return false;
	if (i < len && allow_frac && s[i] == '.') {
		size_t start = ++i;
		while (i < len && s[i] >= '0' && s[i] <= '9') {
			if (scale > 0)
				f += (uint32_t)(s[i] - '0') * scale;
			else if (s[i] != '0')
				more = true;
			scale /= 10;
			i++;
		}
		if (i == start)
			return false;
	}
	if (i != len)
		return false;
	*v = x;
	*frac_ns = f + (more ? 1u : 0u); /* at most 10^9: the caller adds it */
	return true;
}

uint64_t sluice__client_until(int64_t unix_s, uint32_t frac_ns, uint64_t now_ns)
{
	if (unix_s < 0)
		return 0;
	uint64_t at_ns = sluice__add_sat(sluice__mul_sat((uint64_t)unix_s, SLUICE_NS_PER_SEC), frac_ns);
	return at_ns > now_ns ? at_ns - now_ns : 0;
}

uint64_t sluice_client_reset_delay(uint64_t v, uint32_t frac_ns, uint64_t now_unix_ns)
{
	uint64_t at_ns;

	if (v >= UINT64_C(1000000000000)) {
		at_ns = sluice__add_sat(sluice__mul_sat(v, SLUICE__NS_PER_MS), (frac_ns + 999u) / 1000u);
	} else if (v >= UINT64_C(1000000000)) {
		at_ns = sluice__add_sat(sluice__mul_sat(v, SLUICE_NS_PER_SEC), frac_ns);
	} else {
		return sluice__add_sat(sluice__mul_sat(v, SLUICE_NS_PER_SEC), frac_ns);
	}
	return at_ns > now_unix_ns ? at_ns - now_unix_ns : 0;
}

/* ---- HTTP-date ---------------------------------------------------------------- */

static const char *const day_short[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
static const char *const day_long[] = {"Monday", "Tuesday", "Wednesday", "Thursday",
				       "Friday", "Saturday", "Sunday"};
static const char *const month_name[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
					 "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

struct cursor {
	const char *s;
	size_t len;
	size_t i;
};

static bool lit(struct cursor *c, const char *t)
{
	size_t n = strlen(t);
	if (c->len - c->i < n || memcmp(c->s + c->i, t, n) != 0)
		return false;
	c->i += n;
	return true;
}

static bool digits(struct cursor *c, size_t n, int *out)
{
	int v = 0;
	if (c->len - c->i < n)
		return false;
	for (size_t k = 0; k < n; k++) {
		char ch = c->s[c->i + k];
		if (ch < '0' || ch > '9')
			return false;
		v = v * 10 + (ch - '0');
	}
	c->i += n;
	*out = v;
	return true;
}

static bool month(struct cursor *c, int *m)
{
	for (int k = 0; k < 12; k++) {
		if (lit(c, month_name[k])) {
			*m = k + 1;
			return true;
		}
	}
	return false;
}

static bool time_of_day(struct cursor *c, int *h, int *mi, int *s)
{
	return digits(c, 2, h) && lit(c, ":") && digits(c, 2, mi) && lit(c, ":") && digits(c, 2, s) &&
	       *h <= 23 && *mi <= 59 && *s <= 60;
}

static bool is_leap(int64_t y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int month_days(int64_t y, int m)
{
	static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
 * days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;
	*d = (int)(doy - (153 * mp + 2) / 5 + 1);
	*m = (int)(mp < 10 ? mp + 3 : mp - 9);
	*y = yoe + era * 400 + (*m <= 2);
}

/* RFC 9110: a two-digit year "that appears to be more than 50 years in the
 * future" is the most recent past year with those digits. */
static int64_t rfc850_year(int yy, int mo, int d, int h, int mi, int s, uint64_t now_unix_ns)
{
	int64_t now_s = (int64_t)(now_unix_ns / SLUICE_NS_PER_SEC);
	int64_t ny;
	int nm, nd;
	civil_from_days(now_s / 86400, &ny, &nm, &nd);
	int64_t tod = now_s % 86400;
	/* candidates around now, largest first; take the first not more than
	 * 50 years ahead (compared as calendar tuples) */
	int64_t base = ny - ny % 100 + yy + 100;
	for (int k = 0; k < 3; k++, base -= 100) {
		int64_t lim = ny + 50;
		bool later = base > lim ||
			     (base == lim && (mo > nm || (mo == nm && (d > nd || (d == nd &&
				h * 3600 + mi * 60 + s > tod)))));
		if (!later)
			return base;
	}
	return base;
}

int sluice_http_date_parse(const char *s, size_t len, uint64_t now_unix_ns, int64_t *unix_s)
{
	struct cursor c = {s, len, 0};
	int day = 0, mo = 0, h = 0, mi = 0, sec = 0, y4 = 0;
	int64_t year;
	size_t k;

	if (s == NULL || unix_s == NULL)
		return SLUICE_EINVAL;
	for (k = 0; k < 7; k++) {
		if (lit(&c, day_long[k]))
			break;
	}
	if (k < 7) { /* rfc850-date */
		int yy;
		if (!(lit(&c, ", ") && digits(&c, 2, &day) && lit(&c, "-") && month(&c, &mo) &&
		      lit(&c, "-") && digits(&c, 2, &yy) && lit(&c, " ") && time_of_day(&c, &h, &mi, &sec) &&
		      lit(&c, " GMT")))
			return SLUICE_ESYNTAX;
		year = rfc850_year(yy, mo, day, h, mi, sec, now_unix_ns);
	} else {
		for (k = 0; k < 7; k++) {
			if (lit(&c, day_short[k]))
				break;
		}
		if (k == 7)
			return SLUICE_ESYNTAX;
		if (lit(&c, ", ")) { /* IMF-fixdate */
			if (!(digits(&c, 2, &day) && lit(&c, " ") && month(&c, &mo) && lit(&c, " ") &&
			      digits(&c, 4, &y4) && lit(&c, " ") && time_of_day(&c, &h, &mi, &sec) &&
			      lit(&c, " GMT")))
				return SLUICE_ESYNTAX;
		} else { /* asctime-date: month SP ( 2DIGIT / ( SP 1DIGIT ) ) */
			if (!(lit(&c, " ") && month(&c, &mo) && lit(&c, " ")))
				return SLUICE_ESYNTAX;
			if (!(lit(&c, " ") ? digits(&c, 1, &day) : digits(&c, 2, &day)))
				return SLUICE_ESYNTAX;
			if (!(lit(&c, " ") && time_of_day(&c, &h, &mi, &sec) && lit(&c, " ") &&
			      digits(&c, 4, &y4)))
				return SLUICE_ESYNTAX;
		}
		year = y4;
	}
	if (c.i != len || day < 1 || day > month_days(year, mo))
		return SLUICE_ESYNTAX;
	*unix_s = days_from_civil(year, mo, day) * 86400 + h * 3600 + mi * 60 + sec;
	return 0;
}

/* ---- RFC 3339 ------------------------------------------------------------------ */

int sluice_client_rfc3339_parse(const char *s, size_t len, int64_t *unix_s, uint32_t *frac_ns)
{
	struct cursor c = {s, len, 0};
	int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0, oh = 0, om = 0;
	uint32_t frac = 0;
	int sign = 0;

	if (s == NULL || unix_s == NULL || frac_ns == NULL)
		return SLUICE_EINVAL;
	if (!(digits(&c, 4, &y) && lit(&c, "-") && digits(&c, 2, &mo) && lit(&c, "-") &&
	      digits(&c, 2, &d)))
		return SLUICE_ESYNTAX;
	if (c.i >= len || (s[c.i] != 'T' && s[c.i] != 't' && s[c.i] != ' '))
		return SLUICE_ESYNTAX;
	c.i++;
	if (!(digits(&c, 2, &h) && lit(&c, ":") && digits(&c, 2, &mi)))
		return SLUICE_ESYNTAX;
	if (lit(&c, ":")) { /* seconds are optional in ISO 8601 ("2024-05-07T14:30Z") */
		if (!digits(&c, 2, &sec))
			return SLUICE_ESYNTAX;
		if (lit(&c, ".")) {
			size_t start = c.i;
			uint32_t scale = 100000000;
			bool more = false;
			while (c.i < len && s[c.i] >= '0' && s[c.i] <= '9') {
				if (scale > 0)
					frac += (uint32_t)(s[c.i] - '0') * scale;
				else if (s[c.i] != '0')
					more = true;
				scale /= 10;
				c.i++;
			}
			if (c.i == start)
				return SLUICE_ESYNTAX;
			(void)more; /* an instant: digits past ns are dropped */
		}
	}
	if (c.i < len && (s[c.i] == 'Z' || s[c.i] == 'z')) {
		c.i++;
	} else if (c.i < len && (s[c.i] == '+' || s[c.i] == '-')) {
		sign = s[c.i] == '+' ? 1 : -1;
		c.i++;
		if (!digits(&c, 2, &oh))
			return SLUICE_ESYNTAX;
		(void)lit(&c, ":");
		if (!digits(&c, 2, &om) || oh > 23 || om > 59)
			return SLUICE_ESYNTAX;
	} else {
		return SLUICE_ESYNTAX;
	}
	if (c.i != len || mo < 1 || mo > 12 || d < 1 || d > month_days(y, mo) || h > 23 || mi > 59 ||
	    sec > 60)
		return SLUICE_ESYNTAX;
	*unix_s = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - sign * (oh * 3600 + om * 60);
	*frac_ns = frac;
	return 0;
}

/* ---- Go durations ---------------------------------------------------------------- */

static const struct {
	const char *name;
	uint8_t len;
	uint64_t ns;
} duration_units[] = {
	/* longest spellings first: "ms" before "m" */
	{"ns", 2, 1},
	{"us", 2, 1000},
	{"\xc2\xb5s", 3, 1000}, /* U+00B5 micro sign */
	{"\xce\xbcs", 3, 1000}, /* U+03BC Greek small mu */
	{"ms", 2, 1000000},
	{"s", 1, SLUICE_NS_PER_SEC},
	{"m", 1, 60 * SLUICE_NS_PER_SEC},
	{"h", 1, 3600 * SLUICE_NS_PER_SEC},
};

int sluice_client_duration_parse(const char *s, size_t len, uint64_t *ns)
{
	size_t i = 0;
	uint64_t total = 0;

	if ((s == NULL && len > 0) || ns == NULL)
		return SLUICE_EINVAL;
	if (len == 1 && s[0] == '0') {
		*ns = 0;
		return 0;
	}
	if (len == 0)
		return SLUICE_ESYNTAX;
	while (i < len) {
		uint64_t whole = 0, frac = 0, scale = 1; /* frac / scale, scale <= 10^19 */
		bool pre = false, post = false, more = false;
		while (i < len && s[i] >= '0' && s[i] <= '9') {
			uint64_t dgt = (uint64_t)(s[i] - '0');
			whole = whole > (UINT64_MAX - dgt) / 10 ? UINT64_MAX : whole * 10 + dgt;
			pre = true;
			i++;
		}
		if (i < len && s[i] == '.') {
			i++;
			while (i < len && s[i] >= '0' && s[i] <= '9') {
				if (scale <= UINT64_MAX / 10 / 10) {
					frac = frac * 10 + (uint64_t)(s[i] - '0');
					scale *= 10;
				} else if (s[i] != '0') {
					more = true;
				}
				post = true;
				i++;
			}
		}
		if (!pre && !post)
			return SLUICE_ESYNTAX;
		size_t u = 0, nunits = sizeof(duration_units) / sizeof(duration_units[0]);
		for (; u < nunits; u++) {
			size_t ul = duration_units[u].len;
			if (len - i >= ul && memcmp(s + i, duration_units[u].name, ul) == 0)
				break;
		}
		if (u == nunits)
			return SLUICE_ESYNTAX;
		i += duration_units[u].len;
		uint64_t unit = duration_units[u].ns;
		sluice__u128 f = (sluice__u128)frac * unit;
		uint64_t part = (uint64_t)(f / scale) + ((f % scale) != 0 || more ? 1u : 0u);
		total = sluice__add_sat(total, sluice__add_sat(sluice__mul_sat(whole, unit), part));
	}
	*ns = total;
	return 0;
}

/* ---- field values as times ------------------------------------------------------- */

bool sluice__client_time_value(const char *s, size_t len, uint8_t format, uint64_t now_ns,
			       uint64_t now_unix_ns, uint64_t *delay_ns, bool *absolute)
{
	uint64_t v, d;
	uint32_t frac;
	int64_t at;

	sluice__client_trim(&s, &len);
	*absolute = false;
	switch (format) {
	case SLUICE_CLIENT_FMT_SECONDS:
	case SLUICE_CLIENT_FMT_MILLISECONDS:
		if (!sluice__client_number(s, len, true, &v, &frac))
			return false;
		if (format == SLUICE_CLIENT_FMT_SECONDS)
			*delay_ns = sluice__add_sat(sluice__mul_sat(v, SLUICE_NS_PER_SEC), frac);
		else
			*delay_ns = sluice__add_sat(sluice__mul_sat(v, SLUICE__NS_PER_MS), (frac + 999u) / 1000u);
		return true;
	case SLUICE_CLIENT_FMT_UNIX_S:
	case SLUICE_CLIENT_FMT_UNIX_MS:
		if (!sluice__client_number(s, len, true, &v, &frac))
			return false;
		*absolute = true;
		if (format == SLUICE_CLIENT_FMT_UNIX_S) {
			d = sluice__add_sat(sluice__mul_sat(v, SLUICE_NS_PER_SEC), frac);
		} else {
			d = sluice__add_sat(sluice__mul_sat(v, SLUICE__NS_PER_MS), (frac + 999u) / 1000u);
		}
		*delay_ns = d > now_ns ? d - now_ns : 0;
		return true;
	case SLUICE_CLIENT_FMT_RFC3339:
		if (sluice_client_rfc3339_parse(s, len, &at, &frac) != 0)
			return false;
		*absolute = true;
		*delay_ns = sluice__client_until(at, frac, now_ns);
		return true;
	case SLUICE_CLIENT_FMT_DURATION:
		return sluice_client_duration_parse(s, len, delay_ns) == 0;
	case SLUICE_CLIENT_FMT_HTTP_DATE:
		if (sluice_http_date_parse(s, len, now_unix_ns, &at) != 0)
			return false;
		*absolute = true;
		*delay_ns = sluice__client_until(at, 0, now_ns);
		return true;
	case SLUICE_CLIENT_FMT_AUTO:
		if (sluice__client_number(s, len, true, &v, &frac)) {
			*absolute = v >= UINT64_C(1000000000);
			*delay_ns = sluice_client_reset_delay(v, frac, now_ns);
			return true;
		}
		return sluice__client_time_value(s, len, SLUICE_CLIENT_FMT_HTTP_DATE, now_ns, now_unix_ns,
						 delay_ns, absolute) ||
		       sluice__client_time_value(s, len, SLUICE_CLIENT_FMT_RFC3339, now_ns, now_unix_ns,
						 delay_ns, absolute) ||
		       sluice__client_time_value(s, len, SLUICE_CLIENT_FMT_DURATION, now_ns, now_unix_ns,
						 delay_ns, absolute);
	default:
		return false;
	}
}

/* ---- Retry-After ------------------------------------------------------------------- */

/* One member: delay-seconds, fractional seconds (rounded up to whole
 * seconds) or an HTTP-date. */
static bool retry_after_one(const char *s, size_t len, uint64_t now_unix_ns, uint64_t *delay_ns)
{
	uint64_t v;
	uint32_t frac;
	int64_t at;

	sluice__client_trim(&s, &len);
	if (len == 0)
		return false;
	if (sluice__client_number(s, len, true, &v, &frac)) {
		if (frac > 0)
			v = sluice__add_sat(v, 1);
		*delay_ns = sluice__mul_sat(v, SLUICE_NS_PER_SEC);
		return true;
	}
	if (sluice_http_date_parse(s, len, now_unix_ns, &at) != 0)
		return false;
	*delay_ns = sluice__client_until(at, 0, now_unix_ns);
	return true;
}

int sluice_client_retry_after(const char *value, size_t len, uint64_t now_unix_ns, uint64_t *delay_ns)
{
	uint64_t best = 0;
	size_t i = 0;

	if ((value == NULL && len > 0) || delay_ns == NULL)
		return SLUICE_EINVAL;
	if (len == 0)
		return SLUICE_ESYNTAX;
	/* Members are separated by commas, but an HTTP-date has one of its
	 * own ("Sun, 06 Nov ..."): try the piece up to the next comma, then
	 * up to the one after. */
	while (i <= len) {
		const char *c1 = memchr(value + i, ',', len - i);
		size_t e1 = c1 != NULL ? (size_t)(c1 - value) : len;
		uint64_t d;
		if (retry_after_one(value + i, e1 - i, now_unix_ns, &d)) {
			i = e1 + 1;
		} else {
			const char *c2 = e1 < len ? memchr(value + e1 + 1, ',', len - e1 - 1) : NULL;
			size_t e2 = c2 != NULL ? (size_t)(c2 - value) : len;
			if (e1 == len || !retry_after_one(value + i, e2 - i, now_unix_ns, &d))
				return SLUICE_ESYNTAX;
			i = e2 + 1;
		}
		best = SLUICE_MAX(best, d);
	}
	*delay_ns = best;
	return 0;
}
