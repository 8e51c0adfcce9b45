/*
 * test_client_time.c - RFC 3339 timestamps, Go durations and fractional
 * Retry-After (include/sluice/client.h): the edges (zero, the largest
 * values, overflow, dates before 1970 and the year 9999).
 */
#include "client_test_util.h"

static int64_t ts(const char *s, uint32_t *frac)
{
	int64_t t;
	uint32_t f;
	int rc = sluice_client_rfc3339_parse(s, strlen(s), &t, &f);
	if (frac != NULL)
		*frac = f;
	return rc == 0 ? t : INT64_MIN;
}

Test(rfc3339, forms)
{
	uint32_t f;
	cr_assert_eq(ts("2026-11-23T00:00:00Z", &f), 1795392000);
	cr_assert_eq(f, 0);
	cr_assert_eq(ts("2026-11-23t00:00:00z", NULL), 1795392000);
	cr_assert_eq(ts("2026-11-23 00:00:00Z", NULL), 1795392000);
	cr_assert_eq(ts("2026-11-23T00:00Z", NULL), 1795392000); /* ISO 8601, no seconds */
	cr_assert_eq(ts("2026-11-23T05:30:00+05:30", NULL), 1795392000);
	cr_assert_eq(ts("2026-11-22T16:00:00-0800", NULL), 1795392000);
	cr_assert_eq(ts("2026-11-23T00:00:00.5Z", &f), 1795392000);
	cr_assert_eq(f, 500000000);
	cr_assert_eq(ts("2026-11-23T00:00:00.1234567891Z", &f), 1795392000);
	cr_assert_eq(f, 123456789); /* an instant: digits past ns dropped */
}

Test(rfc3339, edges_before_1970_and_after_9999)
{
	cr_assert_eq(ts("1970-01-01T00:00:00Z", NULL), 0);
	cr_assert_eq(ts("1969-12-31T23:59:59Z", NULL), -1);
	cr_assert_eq(ts("0000-01-01T00:00:00Z", NULL), -62167219200);
	cr_assert_eq(ts("9999-12-31T23:59:59Z", NULL), 253402300799);
	cr_assert_eq(ts("9999-12-31T23:59:59-23:59", NULL), 253402300799 + 86340);
	cr_assert_eq(ts("2016-12-31T23:59:60Z", NULL), 1483228800); /* leap second */
	cr_assert_eq(ts("2000-02-29T00:00:00Z", NULL), 951782400);
	/* as a reset: before 1970 is past, after 9999 beyond any clock */
	struct sluice_client_limits l = parse_lines(
		(const char *const[]){"X-RateLimit-Reset: 1969-12-31T23:59:59Z", "X-RateLimit-Remaining: 0", NULL},
		1795392000ull * SEC);
	cr_assert(l.has_reset && l.reset_past);
	l = parse_lines((const char *const[]){"X-RateLimit-Reset: 9999-12-31T23:59:59Z", NULL}, 0);
	cr_assert_eq(l.reset_ns, UINT64_MAX); /* saturates: 253402300799 s is past 2^64 ns */
}

Test(rfc3339, strictness)
{
	static const char *const bad[] = {
		"10000-01-01T00:00:00Z", "2026-13-01T00:00:00Z", "2026-00-01T00:00:00Z",
		"2026-02-29T00:00:00Z",  "1900-02-29T00:00:00Z", "2026-11-23T24:00:00Z",
		"2026-11-23T23:60:00Z",  "2026-11-23T23:59:61Z", "2026-11-23T00:00:00",
		"2026-11-23T00:00:00+24:00", "2026-11-23T00:00:00+05:60", "2026-11-23T00:00:00.Z",
		"2026-11-23X00:00:00Z",  "2026-11-23T0:00:00Z",  "26-11-23T00:00:00Z",
		"2026-11-23T00:00:00Z ", " 2026-11-23T00:00:00Z", "2026-11-23", "",
		"2026-11-23T00:00:00+5", "2026-1-23T00:00:00Z",  "+2026-11-23T00:00:00Z",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(ts(bad[i], NULL), INT64_MIN, "accepted \"%s\"", bad[i]);
	int64_t t;
	uint32_t f;
	cr_assert_eq(sluice_client_rfc3339_parse(NULL, 0, &t, &f), SLUICE_EINVAL);
	cr_assert_eq(sluice_client_rfc3339_parse("x", 1, NULL, &f), SLUICE_EINVAL);
}

static uint64_t dur(const char *s)
{
	uint64_t ns;
	return sluice_client_duration_parse(s, strlen(s), &ns) == 0 ? ns : 12345;
}

Test(duration, go_forms)
{
	cr_assert_eq(dur("0"), 0);
	cr_assert_eq(dur("0s"), 0);
	cr_assert_eq(dur("1s"), SEC);
	cr_assert_eq(dur("6m0s"), 360 * SEC);
	cr_assert_eq(dur("20ms"), 20 * MS);
	cr_assert_eq(dur("1h2m3.5s"), 3723 * SEC + 500 * MS);
	cr_assert_eq(dur("1.5h"), 5400 * SEC);
	cr_assert_eq(dur(".5s"), 500 * MS);
	cr_assert_eq(dur("1.s"), SEC);
	cr_assert_eq(dur("500us"), 500000);
	cr_assert_eq(dur("500\xc2\xb5s"), 500000);
	cr_assert_eq(dur("500\xce\xbcs"), 500000);
	cr_assert_eq(dur("7ns"), 7);
	cr_assert_eq(dur("1m1m"), 120 * SEC); /* Go sums repeated units */
	cr_assert_eq(dur("1.0000000001s"), SEC + 1); /* rounded up to the ns */
	cr_assert_eq(dur("0.1ns"), 1);
}

Test(duration, huge_saturates_and_bad_forms_fail)
{
	cr_assert_eq(dur("5124095h"), 5124095ull * 3600 * SEC);
	cr_assert_eq(dur("5124096h"), UINT64_MAX);
	cr_assert_eq(dur("99999999999999999999999h"), UINT64_MAX);
	cr_assert_eq(dur("5124095h34m33.709551614s"), UINT64_MAX - 1);
	cr_assert_eq(dur("5124095h34m33.709551614s2ns"), UINT64_MAX);
	static const char *const bad[] = {"", "s", "1", "10", "-1s", "+1s", "1 s", "1S", "1sec", ".s",
					  "1d", "1..5s", "1s ", " 1s", "1e3s", "\xc2\xb5", "1\xc2s"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(dur(bad[i]), 12345, "accepted \"%s\"", bad[i]);
	uint64_t ns;
	cr_assert_eq(sluice_client_duration_parse(NULL, 1, &ns), SLUICE_EINVAL);
	cr_assert_eq(sluice_client_duration_parse("1s", 2, NULL), SLUICE_EINVAL);
}

static int ra(const char *v, uint64_t now, uint64_t *d)
{
	return sluice_client_retry_after(v, strlen(v), now, d);
}

Test(retry_after, fractions_round_up)
{
	uint64_t d;
	cr_assert_eq(ra("2.0", 0, &d), 0);
	cr_assert_eq(d, 2 * SEC);
	cr_assert_eq(ra("2.5", 0, &d), 0);
	cr_assert_eq(d, 3 * SEC);
	cr_assert_eq(ra("0.001", 0, &d), 0);
	cr_assert_eq(d, 1 * SEC);
	cr_assert_eq(ra("0.0000000000001", 0, &d), 0);
	cr_assert_eq(d, 1 * SEC);
	cr_assert_eq(ra("0.0", 0, &d), 0);
	cr_assert_eq(d, 0);
	cr_assert_eq(ra("18446744073.5", 0, &d), 0);
	cr_assert_eq(d, SLUICE_NEVER);
}

Test(retry_after, lists_take_the_longest)
{
	uint64_t d;
	cr_assert_eq(ra("30, 30", 0, &d), 0);
	cr_assert_eq(d, 30 * SEC);
	cr_assert_eq(ra("30, 15", 0, &d), 0);
	cr_assert_eq(d, 30 * SEC);
	cr_assert_eq(ra("15,30", 0, &d), 0);
	cr_assert_eq(d, 30 * SEC);
	cr_assert_eq(ra("Sun, 06 Nov 1994 08:49:47 GMT, 3", 784111777ull * SEC, &d), 0);
	cr_assert_eq(d, 10 * SEC);
	cr_assert_eq(ra("3, Sun, 06 Nov 1994 08:49:47 GMT", 784111777ull * SEC, &d), 0);
	cr_assert_eq(d, 10 * SEC);
	cr_assert_eq(ra("3,, 4", 0, &d), SLUICE_ESYNTAX);
	cr_assert_eq(ra("Sun, 06 Nov 1994", 0, &d), SLUICE_ESYNTAX);
}

/* A response's Date earlier than the caller's clock by more than the
 * slack anchors Retry-After dates too; time going backwards (a Date after
 * now) anchors as well, and never underflows. */
Test(retry_after, date_anchor_and_time_backwards)
{
	static const char *const lines[] = {"Date: Sun, 06 Nov 1994 08:49:37 GMT",
					    "Retry-After: Sun, 06 Nov 1994 08:49:47 GMT", NULL};
	struct sluice_client_limits l = parse_lines(lines, 784111777ull * SEC + 3600 * SEC);
	cr_assert(l.clock_anchored);
	cr_assert_eq(l.retry_after_ns, 10 * SEC);
	l = parse_lines(lines, 784111777ull * SEC - 3600 * SEC);
	cr_assert(l.clock_anchored);
	cr_assert_eq(l.retry_after_ns, 10 * SEC);
	l = parse_lines(lines, 784111777ull * SEC + SLUICE_CLIENT_DATE_SLACK_NS);
	cr_assert_not(l.clock_anchored);
	cr_assert_eq(l.retry_after_ns, 8 * SEC);
	l = parse_lines(lines, 0);
	cr_assert(l.clock_anchored);
	cr_assert_eq(l.retry_after_ns, 10 * SEC);
}
