/*
 * test_client.c - response parsing, Retry-After and HTTP-dates, the reset
 * classification rule, the backoff planner, pacing and polling cadence
 * (include/sluice/client.h).
 */
#include <criterion/criterion.h>
#include <sluice.h>
#include <stdio.h>
#include <stdlib.h>

#define SEC 1000000000ull
#define MS 1000000ull

/* 2019-06-03T11:00:00Z, urllib3's test clock */
#define URLLIB3_NOW (1559559600ull * SEC)
/* 2026-11-23T00:00:00Z */
#define NOW_2026 (1795392000ull * SEC)

struct hdrs {
	struct sluice_http_field f[8];
	size_t n;
};

static void add(struct hdrs *h, const char *name, const char *value)
{
	h->f[h->n].name = name;
	h->f[h->n].name_len = strlen(name);
	h->f[h->n].value = value;
	h->f[h->n].value_len = strlen(value);
	h->n++;
}

static struct sluice_client_limits parse1(const char *name, const char *value, uint64_t now)
{
	struct hdrs h = {.n = 0};
	struct sluice_client_limits l;
	add(&h, name, value);
	cr_assert_eq(sluice_client_parse(h.f, h.n, now, &l), 0);
	return l;
}

/* ---- the notes' RateLimit vector set (http-headers.md section 5) ---------- */

Test(client, draft11_basic_item)
{
	struct sluice_client_limits l = parse1("RateLimit", "\"default\";r=50;t=30", 0);
	cr_assert_eq(l.seen, SLUICE_CLIENT_DRAFT08);
	cr_assert_eq(l.source, SLUICE_CLIENT_DRAFT08);
	cr_assert(l.has_remaining && l.has_reset && !l.has_limit);
	cr_assert_eq(l.remaining, 50);
	cr_assert_eq(l.reset_ns, 30 * SEC);
	cr_assert_eq(l.npolicies, 1);
	cr_assert_str_eq(l.policies[0].name, "default");
}

Test(client, repeated_lines_are_combined)
{
	struct hdrs h = {.n = 0};
	struct sluice_client_limits l;
	add(&h, "RateLimit", "\"a\";r=1;t=2");
	add(&h, "content-type", "text/plain");
	add(&h, "ratelimit", "\"b\";r=3");
	cr_assert_eq(sluice_client_parse(h.f, h.n, 0, &l), 0);
	cr_assert_eq(l.npolicies, 2);
	cr_assert_str_eq(l.policies[1].name, "b");
	cr_assert(l.policies[1].has_remaining && !l.policies[1].has_reset);
	cr_assert_eq(l.remaining, 1); /* the governing item: least r */
	cr_assert_eq(l.reset_ns, 2 * SEC);
}

Test(client, unknown_params_are_comments)
{
	struct sluice_client_limits l = parse1("RateLimit", "\"d\";r=5;t=10;acme-x=?1;acme-y=@1659578233", 0);
	cr_assert_eq(l.source, SLUICE_CLIENT_DRAFT08);
	cr_assert_eq(l.remaining, 5);
	/* q on RateLimit (the draft's "sliding" example) is a comment too */
	l = parse1("RateLimit", "\"sliding\";q=12;r=6;t=1", 0);
	cr_assert_eq(l.remaining, 6);
}

Test(client, malformed_ratelimit_is_ignored)
{
	static const char *const bad[] = {
		"\"d\";t=10",                  /* no r */
		"\"d\";r=-1",                  /* negative */
		"\"d\";r=1.5",                 /* Decimal */
		"\"d\";R=5",                   /* uppercase key: SF error */
		"\"d\";r=1234567890123456",    /* 16 digits */
		"\"d\";r=5,",                  /* trailing comma */
		"\"d\" ;r=1",                  /* SP before ; */
		"\"d\";r=5;t=\"x\"",           /* t not an Integer */
		"\"d\";r=5;pk=\"x\"",          /* pk not a Byte Sequence */
		"\"a\";r=1, \"b\";t=1",        /* one bad item spoils the field */
		"\"a\";r=1, b;r=2",            /* String and Token names mixed */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct sluice_client_limits l = parse1("RateLimit", bad[i], 0);
		cr_assert_eq(l.seen, 0, "%s", bad[i]);
		cr_assert_eq(l.npolicies, 0, "%s", bad[i]);
	}
}

Test(client, last_parameter_wins_and_sp_after_semicolon)
{
	struct sluice_client_limits l = parse1("RateLimit", "\"d\";r=1;r=7", 0);
	cr_assert_eq(l.remaining, 7);
	l = parse1("RateLimit", "\"d\"; r=1", 0);
	cr_assert_eq(l.remaining, 1);
}

Test(client, draft07_dictionary)
{
	struct sluice_client_limits l = parse1("RateLimit", "limit=100, remaining=50, reset=5", 0);
	cr_assert_eq(l.seen, SLUICE_CLIENT_DRAFT07);
	cr_assert_eq(l.source, SLUICE_CLIENT_DRAFT07);
	cr_assert(l.has_limit && l.has_remaining && l.has_reset);
	cr_assert_eq(l.limit, 100);
	cr_assert_eq(l.remaining, 50);
	cr_assert_eq(l.reset_ns, 5 * SEC);
	/* remaining optional; limit and reset required; params ignored */
	l = parse1("RateLimit", "limit=100;x=1, reset=5", 0);
	cr_assert(l.has_limit && !l.has_remaining);
	cr_assert_eq(parse1("RateLimit", "limit=100, remaining=5", 0).seen, 0);
	cr_assert_eq(parse1("RateLimit", "limit=100, reset=-5", 0).seen, 0);
	cr_assert_eq(parse1("RateLimit", "limit=100, reset=5.0", 0).seen, 0);
}

Test(client, token_names_read_as_a_list_unless_draft07_keys)
{
	/* valid both as a List and as a Dictionary */
	struct sluice_client_limits l = parse1("RateLimit", "default;r=50;t=30", 0);
	cr_assert_eq(l.source, SLUICE_CLIENT_DRAFT08);
	cr_assert_eq(l.remaining, 50);
	cr_assert_str_eq(l.policies[0].name, "default");
	/* draft-07 key names with non-Integer values: not draft 07, so a List */
	l = parse1("RateLimit", "limit;r=1, reset;r=2", 0);
	cr_assert_eq(l.source, SLUICE_CLIENT_DRAFT08);
	cr_assert_str_eq(l.policies[1].name, "reset");
}

Test(client, policy_fields_draft11)
{
	struct sluice_client_limits l;
	l = parse1("RateLimit-Policy", "\"p\";q=100;w=0", 0);
	cr_assert_eq(l.seen, 0); /* w must be >= 1 since draft 09 */
	l = parse1("RateLimit-Policy", "\"p\";q=10;pk=:cHsdsRa894==:", 0);
	cr_assert_eq(l.seen, SLUICE_CLIENT_DRAFT08);
	cr_assert_eq(l.policies[0].pk_len, 7);
	l = parse1("RateLimit-Policy", "\"p\";q=10;pk=:cHsdsRa894:", 0);
	cr_assert_eq(l.policies[0].pk_len, 7);
	cr_assert_eq(parse1("RateLimit-Policy", "\"p\";q=10;pk=:_-Ah:", 0).seen, 0);
	l = parse1("RateLimit-Policy", "\"p\";q=10;qu=\"content-bytes\";w=60", 0);
	cr_assert_str_eq(l.policies[0].unit, "content-bytes");
	cr_assert_eq(l.policies[0].window_s, 60);
	cr_assert_eq(l.policies[0].quota, 10);
	cr_assert_eq(parse1("RateLimit-Policy", "\"p\";w=60", 0).seen, 0); /* no q */
	/* no RateLimit: policies known, no source */
	cr_assert_eq(l.source, 0);
}

Test(client, policy_joins_items_and_gives_limit)
{
	struct hdrs h = {.n = 0};
	struct sluice_client_limits l;
	add(&h, "RateLimit-Policy", "\"hour\";q=1000;w=3600, \"day\";q=5000;w=86400");
	add(&h, "RateLimit", "\"day\";r=100;t=36000");
	cr_assert_eq(sluice_client_parse(h.f, h.n, 0, &l), 0);
	cr_assert_eq(l.npolicies, 2);
	cr_assert(l.policies[1].has_remaining && !l.policies[0].has_remaining);
	cr_assert(l.has_limit);
	cr_assert_eq(l.limit, 5000);
	cr_assert_eq(l.remaining, 100);
	cr_assert_eq(l.reset_ns, 36000 * SEC);
}

/* t beyond 2^64 ns (about 584 years) saturates reset_ns, but the
 * governing item is still the one with the longest t in seconds. */
Test(client, governing_tie_on_saturated_reset)
{
	struct hdrs h = {.n = 0};
	struct sluice_client_limits l;
	add(&h, "RateLimit-Policy", "\"a\";q=1, \"b\";q=2, \"c\";q=3");
	add(&h, "RateLimit", "\"a\";r=0;t=20000000000, \"b\";r=0;t=999999999999999, \"c\";r=0;t=30000000000");
	cr_assert_eq(sluice_client_parse(h.f, h.n, 0, &l), 0);
	cr_assert(l.has_limit && l.has_reset);
	cr_assert_eq(l.limit, 2);
	cr_assert_eq(l.reset_ns, UINT64_MAX);
	cr_assert_eq(l.policies[0].reset_ns, UINT64_MAX);
}

Test(client, partition_keys_separate_policies)
{
	struct hdrs h = {.n = 0};
	struct sluice_client_limits l;
	add(&h, "RateLimit-Policy", "\"peruser\";q=100;w=60;pk=:cHsdsRa894==:");
	add(&h, "RateLimit", "\"peruser\";r=3;pk=:cHsdsRa894==:, \"peruser\";r=9;pk=:QXBwLTk5OQ==:");
	cr_assert_eq(sluice_client_parse(h.f, h.n, 0, &l), 0);
	cr_assert_eq(l.npolicies, 2);
	cr_assert_eq(l.policies[0].remaining, 3);
	cr_assert_eq(l.policies[0].quota, 100);
	cr_assert_eq(l.policies[1].remaining, 9);
	cr_assert_not(l.policies[1].has_quota);
	cr_assert_eq(l.limit, 100);
	/* a policy without pk serves every partition of its name */
	h.n = 0;
	add(&h, "RateLimit-Policy", "\"peruser\";q=100;w=60");
	add(&h, "RateLimit", "\"peruser\";r=3;pk=:cHsdsRa894==:");
	cr_assert_eq(sluice_client_parse(h.f, h.n, 0, &l), 0);
	cr_assert_eq(l.npolicies, 2);
	cr_assert(l.has_limit);
	cr_assert_eq(l.limit, 100);
}

Test(client, too_many_policies_are_counted_not_overflowed)
{
	char v[512] = "";
	for (int i = 0; i < 12; i++) {
		char one[32];
		snprintf(one, sizeof(one), "%s\"p%d\";r=%d", i ? ", " : "", i, 20 - i);
		strcat(v, one);
	}
	struct sluice_client_limits l = parse1("RateLimit", v, 0);
	cr_assert_eq(l.npolicies, SLUICE_CLIENT_MAX_POLICIES);
	cr_assert(l.policies_truncated);
	cr_assert_eq(l.remaining, 9); /* the governing item is found even if not stored */
}

Test(client, long_names_truncate)
{
	char v[256];
	snprintf(v, sizeof(v), "\"%0100d\";r=1", 0);
	struct sluice_client_limits l = parse1("RateLimit", v, 0);
	cr_assert(l.policies[0].name_truncated);
	cr_assert_eq(strlen(l.policies[0].name), SLUICE_CLIENT_NAME_MAX - 1);
}

/* ---- drafts 04-06 and the seeds ----------------------------------------------- */

Test(client, seed000_draft06_on_429)
{
	struct hdrs h = {.n = 0};
	struct sluice_client_limits l;
	add(&h, "Retry-After", "60");
	add(&h, "RateLimit-Limit", "100");
	add(&h, "RateLimit-Remaining", "0");
	add(&h, "RateLimit-Reset", "60");
	cr_assert_eq(sluice_client_parse(h.f, h.n, NOW_2026, &l), 0);
	cr_assert_eq(l.seen, SLUICE_CLIENT_DRAFT06 | SLUICE_CLIENT_RETRY_AFTER);
	cr_assert_eq(l.source, SLUICE_CLIENT_DRAFT06);
	cr_assert_eq(l.limit, 100);
	cr_assert_eq(l.remaining, 0);
	cr_assert_eq(l.reset_ns, 60 * SEC);
	cr_assert_eq(l.retry_after_ns, 60 * SEC);
}

Test(client, draft06_policy_and_old_limit_list)
{
	struct hdrs h = {.n = 0};
	struct sluice_client_limits l;
	add(&h, "RateLimit-Policy", "100;w=60, 1000;w=86400;comment=\"x\"");
	add(&h, "RateLimit-Limit", "10, 10;w=1, 50;w=60"); /* drafts 00-03 */
	add(&h, "RateLimit-Reset", "7;ignored=1");
	cr_assert_eq(sluice_client_parse(h.f, h.n, 0, &l), 0);
	cr_assert_eq(l.npolicies, 2);
	cr_assert_str_eq(l.policies[0].name, "");
	cr_assert_eq(l.policies[1].quota, 1000);
	cr_assert_eq(l.policies[1].window_s, 86400);
	cr_assert_eq(l.limit, 10);
	cr_assert_not(l.has_remaining);
	cr_assert_eq(l.reset_ns, 7 * SEC);
	cr_assert_eq(parse1("RateLimit-Policy", "100", 0).seen, 0); /* w REQUIRED */
	cr_assert_eq(parse1("RateLimit-Remaining", "-1", 0).seen, 0);
	cr_assert_eq(parse1("RateLimit-Remaining", "1, 2", 0).seen, 0);
}

Test(client, gitlab_reset_epoch_seconds)
{
	/* GitLab sends Unix seconds under the draft's delta-seconds name */
	struct sluice_client_limits l = parse1("RateLimit-Reset", "1795392030", NOW_2026);
	cr_assert_eq(l.reset_ns, 30 * SEC);
}

Test(client, seed002_x_delta)
{
	struct hdrs h = {.n = 0};
	struct sluice_client_limits l;
	add(&h, "X-RateLimit-Limit", "120");
	add(&h, "X-RateLimit-Remaining", "117");
	add(&h, "X-RateLimit-Reset", "42");
	cr_assert_eq(sluice_client_parse(h.f, h.n, NOW_2026, &l), 0);
	cr_assert_eq(l.seen, SLUICE_CLIENT_X);
	cr_assert_eq(l.limit, 120);
	cr_assert_eq(l.remaining, 117);
	cr_assert_eq(l.reset_ns, 42 * SEC);
}

Test(client, seed003_x_unix_seconds)
{
	struct hdrs h = {.n = 0};
	struct sluice_client_limits l;
	add(&h, "x-ratelimit-limit", "600");
	add(&h, "x-ratelimit-remaining", "587");
	add(&h, "x-ratelimit-reset", "1893452400");
	cr_assert_eq(sluice_client_parse(h.f, h.n, 1893452400ull * SEC - 90 * SEC - 1, &l), 0);
	cr_assert_eq(l.reset_ns, 90 * SEC + 1);
	cr_assert_eq(l.remaining, 587);
}

Test(client, seed004_x_unix_milliseconds)
{
	struct sluice_client_limits l = parse1("X-RateLimit-Reset", "1700000017124", 1700000000000ull * MS);
	cr_assert_eq(l.reset_ns, 17124 * MS);
}

Test(client, x_variants_fractions_and_dates)
{
	struct sluice_client_limits l;
	l = parse1("X-Rate-Limit-Remaining", " 5 ", 0);
	cr_assert(l.has_remaining);
	cr_assert_eq(l.remaining, 5);
	l = parse1("X-RateLimit-Remaining", "599.0", 0); /* Reddit */
	cr_assert_eq(l.remaining, 599);
	l = parse1("X-RateLimit-Reset", "1470173023.123", 1470173000ull * SEC); /* Discord */
	cr_assert_eq(l.reset_ns, 23 * SEC + 123 * MS);
	l = parse1("X-RateLimit-Reset", "Sun, 06 Nov 1994 08:49:37 GMT", 784111777ull * SEC - 5 * SEC);
	cr_assert_eq(l.reset_ns, 5 * SEC); /* Vimeo */
	cr_assert_eq(parse1("X-RateLimit-Reset", "-5", 0).seen, 0);
	cr_assert_eq(parse1("X-RateLimit-Limit", "1e3", 0).seen, 0);
	cr_assert_eq(parse1("X-RateLimit-Limit", "", 0).seen, 0);
}

Test(client, classification_order)
{
	struct hdrs h = {.n = 0};
	struct sluice_client_limits l;
	add(&h, "X-RateLimit-Remaining", "1");
	add(&h, "RateLimit-Remaining", "2");
	add(&h, "RateLimit", "limit=10, remaining=3, reset=4");
	cr_assert_eq(sluice_client_parse(h.f, h.n, 0, &l), 0);
	cr_assert_eq(l.seen, SLUICE_CLIENT_DRAFT07 | SLUICE_CLIENT_DRAFT06 | SLUICE_CLIENT_X);
	cr_assert_eq(l.source, SLUICE_CLIENT_DRAFT07);
	cr_assert_eq(l.remaining, 3);
	h.f[2].value = "\"p\";r=9";
	h.f[2].value_len = strlen(h.f[2].value);
	cr_assert_eq(sluice_client_parse(h.f, h.n, 0, &l), 0);
	cr_assert_eq(l.source, SLUICE_CLIENT_DRAFT08);
	cr_assert_eq(l.remaining, 9);
	h.f[2].value = "garbage(";
	h.f[2].value_len = strlen(h.f[2].value);
	cr_assert_eq(sluice_client_parse(h.f, h.n, 0, &l), 0);
	cr_assert_eq(l.source, SLUICE_CLIENT_DRAFT06);
	cr_assert_eq(l.remaining, 2);
	cr_assert_eq(sluice_client_parse(h.f, 1, 0, &l), 0);
	cr_assert_eq(l.source, SLUICE_CLIENT_X);
	cr_assert_eq(sluice_client_parse(NULL, 0, 0, &l), 0);
	cr_assert_eq(l.seen, 0);
	cr_assert_eq(sluice_client_parse(NULL, 1, 0, &l), SLUICE_EINVAL);
	cr_assert_eq(sluice_client_parse(h.f, 1, 0, NULL), SLUICE_EINVAL);
}

Test(client, oversized_field_is_ignored)
{
	static char v[SLUICE_CLIENT_FIELD_MAX + 16];
	memset(v, ' ', sizeof(v) - 1);
	memcpy(v, "\"d\";r=5", 7);
	cr_assert_eq(parse1("RateLimit", v, 0).seen, 0);
	v[SLUICE_CLIENT_FIELD_MAX] = '\0';
	cr_assert_eq(parse1("RateLimit", v, 0).seen, SLUICE_CLIENT_DRAFT08);
}

/* ---- reset classification --------------------------------------------------- */

Test(client, reset_rule_boundaries)
{
	uint64_t now = NOW_2026;
	/* below 10^9: delta seconds */
	cr_assert_eq(sluice_client_reset_delay(0, 0, now), 0);
	cr_assert_eq(sluice_client_reset_delay(999999999, 0, now), 999999999 * SEC);
	/* 10^9 (2001-09-09): Unix seconds, in the past */
	cr_assert_eq(sluice_client_reset_delay(1000000000, 0, now), 0);
	cr_assert_eq(sluice_client_reset_delay(1795392060, 0, now), 60 * SEC);
	/* just below 10^12: still Unix seconds (year 33658); in ns that is past
	 * 2^64, so the delay saturates */
	cr_assert_eq(sluice_client_reset_delay(999999999999ull, 0, now), UINT64_MAX - now);
	cr_assert_eq(sluice_client_reset_delay(18000000000ull, 0, now), 18000000000ull * SEC - now);
	/* 10^12: Unix milliseconds (2001-09-09 again) */
	cr_assert_eq(sluice_client_reset_delay(1000000000000ull, 0, now), 0);
	cr_assert_eq(sluice_client_reset_delay(1795392000500ull, 0, now), 500 * MS);
	/* far-future ms and absurd values saturate, never wrap */
	cr_assert_eq(sluice_client_reset_delay(UINT64_MAX, 0, 0), UINT64_MAX);
	cr_assert_eq(sluice_client_reset_delay(999999999, 999999999, 0), 999999999 * SEC + 999999999);
	/* time going backwards: a "now" before 1970 cannot happen (unsigned);
	 * now = 0 makes every epoch a future */
	cr_assert_eq(sluice_client_reset_delay(1000000000, 0, 0), 1000000000 * SEC);
}

/* ---- Retry-After and HTTP-date ---------------------------------------------------- */

static int ra(const char *v, uint64_t now, uint64_t *d)
{
	return sluice_client_retry_after(v, strlen(v), now, d);
}

Test(client, retry_after_delay_seconds_urllib3_cases)
{
	uint64_t d;
	cr_assert_eq(ra("0", 0, &d), 0);
	cr_assert_eq(d, 0);
	cr_assert_eq(ra("1000", 0, &d), 0);
	cr_assert_eq(d, 1000 * SEC);
	cr_assert_eq(ra("\t42 ", 0, &d), 0);
	cr_assert_eq(d, 42 * SEC);
	static const char *const bad[] = {"-1", "+1", "1.", ".5", "\xc2\xb2", "", " ", "30,", ", 30", "1 2", "0x10", "1e3",
					  /* cache-tests' delta-seconds probes */
					  "abc", "-7200", "7200;foo=bar", "30, x"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(ra(bad[i], 0, &d), SLUICE_ESYNTAX, "%s", bad[i]);
	/* saturation, not wrap-around (go-retryablehttp's bug) */
	cr_assert_eq(ra("2147483648", 0, &d), 0);
	cr_assert_eq(d, 2147483648ull * SEC);
	cr_assert_eq(ra("10000000000", 0, &d), 0);
	cr_assert_eq(d, 10000000000ull * SEC);
	cr_assert_eq(ra("18446744074", 0, &d), 0);
	cr_assert_eq(d, SLUICE_NEVER);
	cr_assert_eq(ra("99999999999999999999999999", 0, &d), 0);
	cr_assert_eq(d, SLUICE_NEVER);
	cr_assert_eq(sluice_client_retry_after(NULL, 1, 0, &d), SLUICE_EINVAL);
	cr_assert_eq(sluice_client_retry_after("1", 1, 0, NULL), SLUICE_EINVAL);
}

Test(client, retry_after_dates_urllib3_cases)
{
	uint64_t d;
	cr_assert_eq(ra("Mon, 03 Jun 2019 11:30:12 GMT", URLLIB3_NOW, &d), 0);
	cr_assert_eq(d, 1812 * SEC);
	cr_assert_eq(ra("Monday, 03-Jun-19 11:30:12 GMT", URLLIB3_NOW, &d), 0);
	cr_assert_eq(d, 1812 * SEC);
	cr_assert_eq(ra("Mon Jun  3 11:30:12 2019", URLLIB3_NOW, &d), 0);
	cr_assert_eq(d, 1812 * SEC);
	/* a past date: retry now */
	cr_assert_eq(ra("Mon, 03 Jun 2019 10:30:12 GMT", URLLIB3_NOW, &d), 0);
	cr_assert_eq(d, 0);
}

static int64_t date(const char *s, uint64_t now)
{
	int64_t t;
	int rc = sluice_http_date_parse(s, strlen(s), now, &t);
	return rc == 0 ? t : INT64_MIN;
}

Test(client, http_date_three_forms_rfc_examples)
{
	cr_assert_eq(date("Sun, 06 Nov 1994 08:49:37 GMT", NOW_2026), 784111777);
	cr_assert_eq(date("Sunday, 06-Nov-94 08:49:37 GMT", NOW_2026), 784111777);
	cr_assert_eq(date("Sun Nov  6 08:49:37 1994", NOW_2026), 784111777);
	cr_assert_eq(date("Sun Nov 06 08:49:37 1994", NOW_2026), 784111777); /* 2DIGIT allowed */
	/* curl lib517: the leap second reads as the next second */
	cr_assert_eq(date("Wed, 31 Dec 2008 23:59:60 GMT", NOW_2026), 1230768000);
	cr_assert_eq(date("Thu, 01 Jan 1970 00:00:00 GMT", NOW_2026), 0);
	cr_assert_eq(date("Fri, 31 Dec 1999 23:59:59 GMT", NOW_2026), 946684799);
	cr_assert_eq(date("Wed, 29 Feb 2000 00:00:00 GMT", NOW_2026), 951782400);
	cr_assert_eq(date("Thu, 01 Jan 1900 00:00:00 GMT", NOW_2026), -2208988800);
	cr_assert_eq(date("Fri, 31 Dec 9999 23:59:59 GMT", NOW_2026), 253402300799);
}

Test(client, http_date_strictness)
{
	static const char *const bad[] = {
		"Sun Nov 06 1994 08:49:37 GMT",   /* JavaScript toString (ky) */
		"Sun, 32 Dec 2030 25:99:99 GMT",  /* out of range (ky) */
		"Sun, 06 Nov 1994 24:00:00 GMT",
		"Sun, 06 Nov 1994 08:60:00 GMT",
		"Sun, 06 Nov 1994 08:49:61 GMT",
		"Sun, 06 Nov 1994 08:49:37 gmt",  /* case-sensitive */
		"sun, 06 Nov 1994 08:49:37 GMT",
		"Sun, 06 nov 1994 08:49:37 GMT",
		"Sun, 06 Nov 1994 08:49:37 UTC",
		"Sun, 06 Nov 1994 08:49:37 +0000",
		"Sun, 6 Nov 1994 08:49:37 GMT",   /* 1-digit day */
		"Sun,  06 Nov 1994 08:49:37 GMT", /* extra space */
		"Sun 06 Nov 1994 08:49:37 GMT",   /* missing comma */
		"Sun, 06 Nov 94 08:49:37 GMT",
		"Sun, 06 Nov 1994 08:49:37 GMT ",
		"Sun, 06 Nov 1994 8:49:37 GMT",
		"Sun, 00 Nov 1994 08:49:37 GMT",
		"Sat, 29 Feb 1900 00:00:00 GMT",  /* 1900 is not a leap year */
		"Sun, 31 Apr 1994 00:00:00 GMT",
		"Sunday, 06-Nov-1994 08:49:37 GMT",
		"Sunday, 06 Nov 94 08:49:37 GMT",
		"Sun, 06-Nov-94 08:49:37 GMT",    /* short day name in RFC 850 form */
		"Sun Nov 6 08:49:37 1994",        /* asctime needs 2 columns for the day */
		"Sun Nov  6 08:49:37 1994 GMT",
		"Sun Nov  6 08:49:37 94",
		"Funday, 06-Nov-94 08:49:37 GMT",
		"Thu, 18 AUG 2050 00:00:00 GMT", "THU, 18 Aug 2050 00:00:00 GMT",
		"Thu, 18 Aug 2050 00:00:00 gMT", "Thu, 18-Aug-2050 00:00:00 GMT",
		"Thu, 18 Aug 50 00:00:00 GMT", "Thu,  18 Aug 2050 00:00:00 GMT",
		"Thu, 18 Aug 2050 0:00:00 GMT", "18-Aug-2050",
		"", "GMT", "02.01.18",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(date(bad[i], NOW_2026), INT64_MIN, "accepted \"%s\"", bad[i]);
	int64_t t;
	cr_assert_eq(sluice_http_date_parse(NULL, 0, 0, &t), SLUICE_EINVAL);
	cr_assert_eq(sluice_http_date_parse("x", 1, 0, NULL), SLUICE_EINVAL);
}

Test(client, rfc850_two_digit_year_rule)
{
	/* now = 2026-11-23T00:00:00Z. 49 years ahead stays in the future, 51
	 * years ahead is the past century (ky's cases); the boundary is the
	 * same calendar moment 50 years on. */
	cr_assert_eq(date("Thursday, 23-Nov-75 00:00:00 GMT", NOW_2026),
		     date("Sat, 23 Nov 2075 00:00:00 GMT", NOW_2026));
	cr_assert_eq(date("Monday, 23-Nov-77 00:00:00 GMT", NOW_2026),
		     date("Wed, 23 Nov 1977 00:00:00 GMT", NOW_2026));
	cr_assert_eq(date("Monday, 23-Nov-76 00:00:00 GMT", NOW_2026),
		     date("Mon, 23 Nov 2076 00:00:00 GMT", NOW_2026));
	cr_assert_eq(date("Monday, 23-Nov-76 00:00:01 GMT", NOW_2026),
		     date("Tue, 23 Nov 1976 00:00:01 GMT", NOW_2026));
	cr_assert_eq(date("Monday, 24-Nov-76 00:00:00 GMT", NOW_2026),
		     date("Wed, 24 Nov 1976 00:00:00 GMT", NOW_2026));
	cr_assert_eq(date("Monday, 01-Jan-26 00:00:00 GMT", NOW_2026),
		     date("Thu, 01 Jan 2026 00:00:00 GMT", NOW_2026));
	/* now = 1994: "94" is 1994, "43" is 2043, "45" is 1945 */
	cr_assert_eq(date("Sunday, 06-Nov-94 08:49:37 GMT", 784111777ull * SEC), 784111777);
	cr_assert_eq(date("Friday, 06-Nov-43 08:49:37 GMT", 784111777ull * SEC),
		     date("Fri, 06 Nov 2043 08:49:37 GMT", 0));
	cr_assert_eq(date("Tuesday, 06-Nov-45 08:49:37 GMT", 784111777ull * SEC),
		     date("Tue, 06 Nov 1945 08:49:37 GMT", 0));
}

Test(client, retry_after_leap_second_and_asctime_utc)
{
	uint64_t d;
	uint64_t now = 1230767990ull * SEC; /* 2008-12-31T23:59:50Z */
	cr_assert_eq(ra("Wed, 31 Dec 2008 23:59:60 GMT", now, &d), 0);
	cr_assert_eq(d, 10 * SEC);
	cr_assert_eq(ra("Wed, 31 Dec 2008 23:59:59 GMT", now, &d), 0);
	cr_assert_eq(d, 9 * SEC);
	/* asctime is UTC whatever the process time zone */
	setenv("TZ", "Pacific/Kiritimati", 1);
	cr_assert_eq(ra("Wed Dec 31 23:59:59 2008", now, &d), 0);
	cr_assert_eq(d, 9 * SEC);
}

Test(client, retry_after_in_response_and_repeated)
{
	struct hdrs h = {.n = 0};
	struct sluice_client_limits l;
	add(&h, "Retry-After", "15");
	add(&h, "Retry-After", "30");
	cr_assert_eq(sluice_client_parse(h.f, h.n, 0, &l), 0);
	cr_assert(l.has_retry_after); /* differing repeats: the longest wait */
	cr_assert_eq(l.retry_after_ns, 30 * SEC);
	l = parse1("retry-after", "Sun, 06 Nov 1994 08:49:47 GMT", 784111777ull * SEC);
	cr_assert(l.has_retry_after);
	cr_assert_eq(l.retry_after_ns, 10 * SEC);
	cr_assert_eq(l.seen, SLUICE_CLIENT_RETRY_AFTER);
}

/* ---- backoff planner ------------------------------------------------------------ */

static struct sluice_backoff_plan plan(const struct sluice_backoff_opts *o, int status, bool idem,
				       uint32_t attempt, const struct sluice_client_limits *l,
				       struct sluice_rng *rng)
{
	struct sluice_backoff_request r = {.status = status, .idempotent = idem, .attempt = attempt, .limits = l};
	struct sluice_backoff_plan p;
	cr_assert_eq(sluice_backoff_plan(o, &r, rng, &p), 0);
	return p;
}

Test(backoff, exponential_without_jitter)
{
	struct sluice_backoff_opts o;
	struct sluice_rng rng = {1};
	sluice_backoff_opts_default(&o);
	o.jitter_permille = 0;
	o.max_attempts = 16;
	o.cap_ns = 20 * SEC;
	uint64_t want[] = {1, 2, 4, 8, 16, 20, 20};
	for (uint32_t a = 1; a <= 7; a++) {
		struct sluice_backoff_plan p = plan(&o, 503, true, a, NULL, &rng);
		cr_assert_eq(p.verdict, SLUICE_BACKOFF_RETRY);
		cr_assert_eq(p.why, SLUICE_BACKOFF_WHY_EXPONENTIAL);
		cr_assert_eq(p.delay_ns, want[a - 1] * SEC, "attempt %u", a);
	}
}

Test(backoff, jitter_within_25_percent_and_deterministic)
{
	struct sluice_backoff_opts o;
	sluice_backoff_opts_default(&o);
	uint64_t lo = UINT64_MAX, hi = 0;
	for (uint64_t seed = 0; seed < 2000; seed++) {
		struct sluice_rng rng = {seed}, again = {seed};
		struct sluice_backoff_plan p = plan(&o, 500, true, 3, NULL, &rng);
		cr_assert_eq(p.delay_ns, plan(&o, 500, true, 3, NULL, &again).delay_ns);
		cr_assert_geq(p.delay_ns, 3 * SEC);
		cr_assert_leq(p.delay_ns, 5 * SEC);
		lo = p.delay_ns < lo ? p.delay_ns : lo;
		hi = p.delay_ns > hi ? p.delay_ns : hi;
	}
	/* the whole +-25% band is used */
	cr_assert_lt(lo, 3 * SEC + 50 * MS);
	cr_assert_gt(hi, 5 * SEC - 50 * MS);
}

Test(backoff, retry_after_wins_with_upward_jitter)
{
	struct sluice_backoff_opts o;
	struct sluice_client_limits l;
	memset(&l, 0, sizeof(l));
	sluice_backoff_opts_default(&o);
	l.has_retry_after = true;
	l.retry_after_ns = 32 * SEC;
	l.has_remaining = true;
	l.has_reset = true;
	l.reset_ns = 5 * SEC;
	for (uint64_t seed = 0; seed < 500; seed++) {
		struct sluice_rng rng = {seed};
		struct sluice_backoff_plan p = plan(&o, 429, false, 1, &l, &rng);
		cr_assert_eq(p.verdict, SLUICE_BACKOFF_RETRY);
		cr_assert_eq(p.why, SLUICE_BACKOFF_WHY_RETRY_AFTER);
		cr_assert_geq(p.delay_ns, 32 * SEC);
		cr_assert_leq(p.delay_ns, 40 * SEC);
	}
	/* without Retry-After, remaining 0: the reset */
	l.has_retry_after = false;
	struct sluice_rng rng = {7};
	o.jitter_permille = 0;
	struct sluice_backoff_plan p = plan(&o, 429, true, 2, &l, &rng);
	cr_assert_eq(p.why, SLUICE_BACKOFF_WHY_RESET);
	cr_assert_eq(p.delay_ns, 5 * SEC);
	/* a Retry-After of 0 means now */
	l.has_retry_after = true;
	l.retry_after_ns = 0;
	p = plan(&o, 429, true, 2, &l, &rng);
	cr_assert_eq(p.delay_ns, 0);
}

Test(backoff, stop_rules)
{
	struct sluice_backoff_opts o;
	struct sluice_rng rng = {3};
	struct sluice_client_limits l;
	memset(&l, 0, sizeof(l));
	sluice_backoff_opts_default(&o);
	o.max_attempts = 3;
	cr_assert_eq(plan(&o, 200, false, 1, NULL, &rng).verdict, SLUICE_BACKOFF_DONE);
	cr_assert_eq(plan(&o, 304, false, 1, NULL, &rng).verdict, SLUICE_BACKOFF_DONE);
	struct sluice_backoff_plan p = plan(&o, 404, true, 1, NULL, &rng);
	cr_assert_eq(p.verdict, SLUICE_BACKOFF_STOP);
	cr_assert_eq(p.why, SLUICE_BACKOFF_WHY_NOT_RETRYABLE);
	/* seed 000: a POST after a 5xx may have created the resource */
	p = plan(&o, 500, false, 1, NULL, &rng);
	cr_assert_eq(p.why, SLUICE_BACKOFF_WHY_UNSAFE);
	cr_assert_eq(plan(&o, 0, false, 1, NULL, &rng).why, SLUICE_BACKOFF_WHY_UNSAFE);
	cr_assert_eq(plan(&o, 503, true, 1, NULL, &rng).verdict, SLUICE_BACKOFF_RETRY);
	cr_assert_eq(plan(&o, 0, true, 1, NULL, &rng).verdict, SLUICE_BACKOFF_RETRY);
	cr_assert_eq(plan(&o, 408, true, 1, NULL, &rng).verdict, SLUICE_BACKOFF_RETRY);
	/* a 429 is retryable for any method */
	cr_assert_eq(plan(&o, 429, false, 1, NULL, &rng).verdict, SLUICE_BACKOFF_RETRY);
	cr_assert_eq(plan(&o, 429, false, 2, NULL, &rng).verdict, SLUICE_BACKOFF_RETRY);
	p = plan(&o, 429, false, 3, NULL, &rng);
	cr_assert_eq(p.verdict, SLUICE_BACKOFF_STOP);
	cr_assert_eq(p.why, SLUICE_BACKOFF_WHY_ATTEMPTS);
	/* Retry-After: 1000000 (the draft's DoS example) exceeds 6 h */
	l.has_retry_after = true;
	l.retry_after_ns = 1000000 * SEC;
	p = plan(&o, 429, true, 1, &l, &rng);
	cr_assert_eq(p.why, SLUICE_BACKOFF_WHY_TOO_LONG);
	l.retry_after_ns = SLUICE_NEVER;
	cr_assert_eq(plan(&o, 503, true, 1, &l, &rng).why, SLUICE_BACKOFF_WHY_TOO_LONG);
}

Test(backoff, invalid_options)
{
	struct sluice_backoff_opts o;
	struct sluice_rng rng = {0};
	struct sluice_backoff_request r = {.status = 429, .attempt = 1};
	struct sluice_backoff_plan p;
	sluice_backoff_opts_default(&o);
	cr_assert_eq(sluice_backoff_plan(NULL, &r, &rng, &p), SLUICE_EINVAL);
	cr_assert_eq(sluice_backoff_plan(&o, NULL, &rng, &p), SLUICE_EINVAL);
	cr_assert_eq(sluice_backoff_plan(&o, &r, NULL, &p), SLUICE_EINVAL);
	cr_assert_eq(sluice_backoff_plan(&o, &r, &rng, NULL), SLUICE_EINVAL);
	r.attempt = 0;
	cr_assert_eq(sluice_backoff_plan(&o, &r, &rng, &p), SLUICE_EINVAL);
	r.attempt = 1;
	struct sluice_backoff_opts bad = o;
	bad.size = 8;
	cr_assert_eq(sluice_backoff_plan(&bad, &r, &rng, &p), SLUICE_EINVAL);
	bad = o;
	bad.max_attempts = 0;
	cr_assert_eq(sluice_backoff_plan(&bad, &r, &rng, &p), SLUICE_EINVAL);
	bad.max_attempts = 17;
	cr_assert_eq(sluice_backoff_plan(&bad, &r, &rng, &p), SLUICE_EINVAL);
	bad = o;
	bad.jitter_permille = 1001;
	cr_assert_eq(sluice_backoff_plan(&bad, &r, &rng, &p), SLUICE_EINVAL);
	bad = o;
	bad.cap_ns = bad.base_ns - 1;
	cr_assert_eq(sluice_backoff_plan(&bad, &r, &rng, &p), SLUICE_EINVAL);
	bad.base_ns = 0;
	cr_assert_eq(sluice_backoff_plan(&bad, &r, &rng, &p), SLUICE_EINVAL);
}

Test(backoff, huge_base_saturates)
{
	struct sluice_backoff_opts o;
	struct sluice_rng rng = {11};
	sluice_backoff_opts_default(&o);
	o.max_attempts = 16;
	o.base_ns = UINT64_MAX / 2;
	o.cap_ns = UINT64_MAX;
	o.jitter_permille = 1000;
	for (uint32_t a = 1; a < 16; a++)
		cr_assert_eq(plan(&o, 503, true, a, NULL, &rng).verdict, SLUICE_BACKOFF_RETRY);
}

Test(backoff, pacing_spreads_remaining_quota)
{
	struct sluice_client_limits l;
	memset(&l, 0, sizeof(l));
	cr_assert_eq(sluice_backoff_pace(NULL, 200), 0);
	cr_assert_eq(sluice_backoff_pace(&l, 200), 0);
	l.has_limit = l.has_remaining = l.has_reset = true;
	l.limit = 100;
	l.reset_ns = 30 * SEC;
	l.remaining = 50;
	cr_assert_eq(sluice_backoff_pace(&l, 200), 0); /* ample: 50% left */
	l.remaining = 21;
	cr_assert_eq(sluice_backoff_pace(&l, 200), 0);
	l.remaining = 20; /* at the 20% mark: spread */
	cr_assert_eq(sluice_backoff_pace(&l, 200), 1500 * MS);
	l.remaining = 1;
	cr_assert_eq(sluice_backoff_pace(&l, 200), 30 * SEC);
	l.remaining = 0;
	cr_assert_eq(sluice_backoff_pace(&l, 200), 30 * SEC);
	l.has_limit = false;
	l.remaining = 60;
	cr_assert_eq(sluice_backoff_pace(&l, 200), 500 * MS);
	l.has_retry_after = true;
	l.retry_after_ns = 7 * SEC;
	cr_assert_eq(sluice_backoff_pace(&l, 200), 7 * SEC);
}

Test(backoff, pacing_from_parsed_headers)
{
	struct hdrs h = {.n = 0};
	struct sluice_client_limits l;
	add(&h, "RateLimit-Policy", "\"default\";q=100;w=60");
	add(&h, "RateLimit", "\"default\";r=10;t=30");
	cr_assert_eq(sluice_client_parse(h.f, h.n, 0, &l), 0);
	cr_assert_eq(sluice_backoff_pace(&l, 200), 3 * SEC);
}

/* Seed 000's cadences, as a caller fills them. */
#define MEDIA_BUY_STATUS {30 * SEC, 120 * SEC, 1500, 0, 0}
#define DISCOVERY {5 * SEC, 10 * SEC, 1250, 60 * SEC, 15 * SEC}
#define READINESS {60 * SEC, 60 * SEC, 1000, 0, 0}

Test(poll, seed000_media_buy_status)
{
	struct sluice_poll_cadence c = MEDIA_BUY_STATUS;
	uint64_t want_ms[] = {30000, 45000, 67500, 101250, 120000, 120000};
	uint64_t d = 0, pending = 0;
	for (size_t i = 0; i < 6; i++) {
		d = sluice_poll_next_ns(&c, d, pending);
		cr_assert_eq(d, want_ms[i] * MS, "poll %zu", i);
		pending += d;
	}
}

Test(poll, seed000_discovery_backs_off_after_a_minute)
{
	struct sluice_poll_cadence c = DISCOVERY;
	uint64_t d = 0, pending = 0;
	for (int i = 0; i < 20; i++) {
		d = sluice_poll_next_ns(&c, d, pending);
		if (pending < 60 * SEC) {
			cr_assert_geq(d, 5 * SEC);
			cr_assert_leq(d, 10 * SEC);
		} else {
			cr_assert_eq(d, 15 * SEC);
		}
		pending += d;
	}
	cr_assert_eq(sluice_poll_next_ns(&c, 0, 0), 5 * SEC);
	cr_assert_eq(sluice_poll_next_ns(&c, 5 * SEC, 0), 6250 * MS);
	cr_assert_eq(sluice_poll_next_ns(&c, 0, 60 * SEC), 15 * SEC);
	cr_assert_eq(sluice_poll_next_ns(NULL, 0, 0), 0);
	struct sluice_poll_cadence r = READINESS;
	cr_assert_eq(sluice_poll_next_ns(&r, 60 * SEC, 1000 * SEC), 60 * SEC);
	struct sluice_poll_cadence huge = {1, UINT64_MAX, 1500, 0, 0};
	cr_assert_eq(sluice_poll_next_ns(&huge, UINT64_MAX, 0), UINT64_MAX);
}
