/*
 * fuzz_client_time.c - the time parsers of the client side, each against
 * a simple reference written here from its specification
 * (include/sluice/client.h):
 *
 *   byte 0 % 3 == 0: sluice_client_duration_parse() against a Go-style
 *     reference: the input is split into (number, unit) pairs, a number
 *     being [0-9]* ( "." [0-9]* )? with a digit somewhere and a unit the
 *     longest run of anything else, which must be one of ns us µs μs ms s
 *     m h; "0" alone is zero. The value is computed exactly in 128 bits as
 *     digits * unit / 10^fraction_digits, rounded up per pair, summed and
 *     saturated; compared whenever it fits the reference's arithmetic.
 *   byte 0 % 3 == 1: sluice_client_rfc3339_parse() against a reference
 *     that reads the fixed columns and counts days with the year-by-year
 *     leap rule instead of days_from_civil: same acceptance, same seconds,
 *     same fraction.
 *   byte 0 % 3 == 2: sluice_client_retry_after() on a list: accepted iff
 *     every comma-separated number member is a valid delay (no dates in
 *     this mode), and the result is the largest, rounded up.
 * Every accepted value must also be stable: parsing never reads past len
 * (the input is copied to an exact-size heap buffer).
 */
#include <stdlib.h>
#include <string.h>

#include <sluice/client.h>

#include "fuzz.h"

static void check(bool ok)
{
	if (!ok)
		__builtin_trap();
}

typedef unsigned __int128 u128;

/* ---- durations ------------------------------------------------------------- */

static bool ref_unit(const char *u, size_t n, uint64_t *ns)
{
	static const struct {
		const char *name;
		uint64_t ns;
	} units[] = {{"ns", 1},           {"us", 1000},          {"\xc2\xb5s", 1000},
		     {"\xce\xbcs", 1000}, {"ms", 1000000},       {"s", 1000000000ull},
		     {"m", 60000000000ull}, {"h", 3600000000000ull}};
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strlen(units[i].name) == n && memcmp(units[i].name, u, n) == 0) {
			*ns = units[i].ns;
			return true;
		}
	}
	return false;
}

/* accepted?; *exact false when the value is beyond the reference */
static bool ref_duration(const char *s, size_t len, uint64_t *out, bool *exact)
{
	size_t i = 0;
	u128 total = 0;
	*exact = true;
	if (len == 1 && s[0] == '0') {
		*out = 0;
		return true;
	}
	if (len == 0)
		return false;
	while (i < len) {
		size_t a = i;
		while (i < len && s[i] >= '0' && s[i] <= '9')
			i++;
		size_t int_digits = i - a, frac_digits = 0;
		size_t fs = i;
		if (i < len && s[i] == '.') {
			i++;
			fs = i;
			while (i < len && s[i] >= '0' && s[i] <= '9')
				i++;
			frac_digits = i - fs;
		}
		if (int_digits + frac_digits == 0)
			return false;
		size_t u = i;
		while (i < len && s[i] != '.' && !(s[i] >= '0' && s[i] <= '9'))
			i++;
		uint64_t unit;
		if (!ref_unit(s + u, i - u, &unit))
			return false;
		if (int_digits > 20 || frac_digits > 18) {
			*exact = false;
			continue;
		}
		u128 num = 0, den = 1;
		for (size_t k = a; k < a + int_digits; k++)
			num = num * 10 + (unsigned)(s[k] - '0');
		for (size_t k = fs; k < fs + frac_digits; k++) {
			num = num * 10 + (unsigned)(s[k] - '0');
			den *= 10;
		}
		/* num < 10^38 / 2: the product may not fit; skip those */
		if (num > (u128)1 << 80) {
			*exact = false;
			continue;
		}
		u128 whole = (num / den) * unit;
		u128 part = ((num % den) * unit + den - 1) / den;
		total += whole + part;
		if (total > UINT64_MAX)
			total = (u128)UINT64_MAX + 1;
	}
	*out = total > UINT64_MAX ? UINT64_MAX : (uint64_t)total;
	return true;
}

static void durations(const char *s, size_t len)
{
	uint64_t ours = 0, ref = 0;
	bool exact;
	bool ok = sluice_client_duration_parse(s, len, &ours) == 0;
	bool rok = ref_duration(s, len, &ref, &exact);
	check(ok == rok);
	if (ok && exact)
		check(ours == ref);
}

/* ---- RFC 3339 ----------------------------------------------------------------- */

static bool num(const char *s, size_t n, int *v)
{
	*v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		*v = *v * 10 + (s[i] - '0');
	}
	return true;
}

static bool leap(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int64_t ref_days(int y, int m, int d)
{
	static const int before[] = {0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334};
	int64_t days = 0;
	for (int k = 1970; k < y; k++)
		days += leap(k) ? 366 : 365;
	for (int k = y; k < 1970; k++)
		days -= leap(k) ? 366 : 365;
	return days + before[m - 1] + (m > 2 && leap(y)) + d - 1;
}

static bool ref_rfc3339(const char *s, size_t len, int64_t *t, uint32_t *frac)
{
	int y, mo, d, h, mi, sec = 0, oh = 0, om = 0, sign = 0;
	size_t i = 16;
	static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	*frac = 0;
	if (len < 17 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
	    s[13] != ':' || !num(s, 4, &y) || !num(s + 5, 2, &mo) || !num(s + 8, 2, &d) ||
	    !num(s + 11, 2, &h) || !num(s + 14, 2, &mi))
		return false;
	if (s[i] == ':') {
		if (len < i + 3 || !num(s + i + 1, 2, &sec))
			return false;
		i += 3;
		if (i < len && s[i] == '.') {
			size_t k = ++i;
			uint32_t scale = 100000000;
			while (i < len && s[i] >= '0' && s[i] <= '9') {
				*frac += (uint32_t)(s[i] - '0') * scale;
				scale /= 10;
				i++;
			}
			if (i == k)
				return false;
		}
	}
	if (i < len && (s[i] == 'Z' || s[i] == 'z')) {
		i++;
	} else if (i < len && (s[i] == '+' || s[i] == '-')) {
		sign = s[i] == '+' ? 1 : -1;
		if (len == i + 6 && s[i + 3] == ':' && num(s + i + 1, 2, &oh) && num(s + i + 4, 2, &om))
			i += 6;
		else if (len == i + 5 && num(s + i + 1, 2, &oh) && num(s + i + 3, 2, &om))
			i += 5;
		else
			return false;
	} else {
		return false;
	}
	if (i != len || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] + (mo == 2 && leap(y)) || h > 23 ||
	    mi > 59 || sec > 60 || oh > 23 || om > 59)
		return false;
	*t = ref_days(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - sign * (oh * 3600 + om * 60);
	return true;
}

static void timestamps(const char *s, size_t len)
{
	int64_t t = 0, rt = 0;
	uint32_t f = 0, rf = 0;
	bool ok = sluice_client_rfc3339_parse(s, len, &t, &f) == 0;
	bool rok = ref_rfc3339(s, len, &rt, &rf);
	check(ok == rok);
	if (ok)
		check(t == rt && f == rf);
}

/* ---- Retry-After lists of numbers ------------------------------------------------ */

static void retry_after_lists(const char *s, size_t len)
{
	uint64_t ours = 0, best = 0;
	bool ok = sluice_client_retry_after(s, len, 0, &ours) == 0;
	bool rok = len > 0;
	size_t i = 0;
	for (size_t k = 0; k < len; k++) /* dates (all have letters): fuzz_client's business */
		if ((s[k] | 0x20) >= 'a' && (s[k] | 0x20) <= 'z')
			return;
	while (rok && i <= len) {
		size_t e = i;
		while (e < len && s[e] != ',')
			e++;
		size_t a = i, b = e;
		while (a < b && (s[a] == ' ' || s[a] == '\t'))
			a++;
		while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\t'))
			b--;
		size_t dot = a, k;
		u128 v = 0;
		bool any_frac = false;
		for (k = a; k < b && s[k] >= '0' && s[k] <= '9'; k++)
			v = v * 10 + (unsigned)(s[k] - '0') > UINT64_MAX ? (u128)UINT64_MAX + 1 : v * 10 + (unsigned)(s[k] - '0');
		dot = k;
		if (dot == a)
			rok = false;
		if (rok && dot < b) {
			if (s[dot] != '.' || dot + 1 == b)
				rok = false;
			for (k = dot + 1; rok && k < b; k++) {
				if (s[k] < '0' || s[k] > '9')
					rok = false;
				else if (s[k] != '0')
					any_frac = true;
			}
		}
		if (rok) {
			u128 sec = v + (any_frac ? 1 : 0);
			u128 ns = sec * 1000000000u;
			uint64_t d = ns > UINT64_MAX ? UINT64_MAX : (uint64_t)ns;
			best = d > best ? d : best;
		}
		i = e + 1;
	}
	check(ok == rok);
	if (ok)
		check(ours == best);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 256)
		return 0;
	char *s = malloc(size - 1 > 0 ? size - 1 : 1); /* exact size: ASan sees overreads */
	if (s == NULL)
		return 0;
	memcpy(s, data + 1, size - 1);
	switch (data[0] % 3) {
	case 0:
		durations(s, size - 1);
		break;
	case 1:
		timestamps(s, size - 1);
		break;
	default:
		retry_after_lists(s, size - 1);
		break;
	}
	free(s);
	return 0;
}
