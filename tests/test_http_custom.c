/*
 * test_http_custom.c - the custom header family (sluice_http_render_custom,
 * include/sluice/http.h): every field under the caller's names, the three
 * reset forms, any subset, the resource label, token validation, and a
 * caller's buffer that is too small (an error with the size needed, never
 * a silent cut), and no allocation: this binary counts the calls to
 * malloc, calloc and realloc made by its own thread (it defines them over
 * glibc's __libc_* entry points; skipped under ASan).
 */
#include <criterion/criterion.h>
#include <sluice.h>
#include <stdlib.h>
#include <string.h>

/* Not under ASan, which owns malloc (its free would meet glibc's blocks). */
#if defined(__SANITIZE_ADDRESS__)
#define NO_ALLOC_COUNT 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NO_ALLOC_COUNT 1
#endif
#endif

#ifndef NO_ALLOC_COUNT
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t n);

static __thread unsigned long allocations; /* this thread's calls */

void *malloc(size_t n)
{
	allocations++;
	return __libc_malloc(n);
}

void *calloc(size_t n, size_t size)
{
	allocations++;
	return __libc_calloc(n, size);
}

void *realloc(void *p, size_t n)
{
	allocations++;
	return __libc_realloc(p, n);
}
#endif

#define SEC 1000000000ull
#define MS 1000000ull

static const struct sluice_http_custom github = {
	.limit = "x-ratelimit-limit",
	.remaining = "x-ratelimit-remaining",
	.reset = "x-ratelimit-reset",
	.used = "x-ratelimit-used",
	.resource = "x-ratelimit-resource",
	.reset_form = SLUICE_HTTP_RESET_UNIX_S,
};

static struct sluice_http_limit one(uint64_t limit, uint64_t remaining, uint64_t reset_ns)
{
	struct sluice_http_limit l = {.name = "token_hourly", .window_ns = 3600 * SEC};
	l.decision.allowed = true;
	l.decision.limit = limit;
	l.decision.remaining = remaining;
	l.decision.reset_ns = reset_ns;
	return l;
}

static const char *lines(unsigned fam, const struct sluice_http_custom *c, const struct sluice_http_limit *l,
			 size_t n, uint64_t now)
{
	static char buf[1024];
	size_t size;
	int rc = sluice_http_render_custom(fam, c, l, n, now, buf, sizeof buf, &size, NULL, 0, NULL);
	cr_assert_eq(rc, 0, "rc %d", rc);
	cr_assert_eq(size, strlen(buf) + 1);
	return buf;
}

Test(http_custom, every_field_with_unix_seconds)
{
	struct sluice_http_limit l = one(5000, 4999, 1800 * SEC + 1);
	l.resource = "core";
	cr_assert_str_eq(lines(SLUICE_HTTP_CUSTOM, &github, &l, 1, 1700000000ull * SEC),
			 "x-ratelimit-limit: 5000\r\n"
			 "x-ratelimit-remaining: 4999\r\n"
			 "x-ratelimit-reset: 1700001801\r\n"
			 "x-ratelimit-used: 1\r\n"
			 "x-ratelimit-resource: core\r\n");
}

Test(http_custom, reset_forms)
{
	struct sluice_http_limit l = one(60, 10, 90 * SEC + 500 * MS);
	struct sluice_http_custom c = {.reset = "Reset-At"};
	uint64_t now = 1000 * SEC + 250 * MS;

	c.reset_form = SLUICE_HTTP_RESET_DELTA;
	cr_assert_str_eq(lines(SLUICE_HTTP_CUSTOM, &c, &l, 1, now), "Reset-At: 91\r\n");
	c.reset_form = SLUICE_HTTP_RESET_UNIX_S;
	cr_assert_str_eq(lines(SLUICE_HTTP_CUSTOM, &c, &l, 1, now), "Reset-At: 1091\r\n");
	c.reset_form = SLUICE_HTTP_RESET_UNIX_MS;
	cr_assert_str_eq(lines(SLUICE_HTTP_CUSTOM, &c, &l, 1, now), "Reset-At: 1090750\r\n");
	c.reset_form = 3;
	char buf[64];
	cr_assert_eq(sluice_http_render_custom(SLUICE_HTTP_CUSTOM, &c, &l, 1, now, buf, sizeof buf, NULL, NULL, 0,
					       NULL),
		     SLUICE_EINVAL);
}

Test(http_custom, subset_and_resource_defaults_to_name)
{
	struct sluice_http_limit l = one(100, 100, 0);
	struct sluice_http_custom c = {.used = "X-Used", .resource = "X-Bucket"};

	/* nothing used yet: 0; no resource label: the limit's name */
	cr_assert_str_eq(lines(SLUICE_HTTP_CUSTOM, &c, &l, 1, 0), "X-Used: 0\r\nX-Bucket: token_hourly\r\n");
	struct sluice_http_custom none = {0};
	cr_assert_str_eq(lines(SLUICE_HTTP_CUSTOM, &none, &l, 1, 0), "");
	/* remaining above the limit (an override lowered it): used is 0 */
	l.decision.remaining = 150;
	cr_assert_str_eq(lines(SLUICE_HTTP_CUSTOM, &c, &l, 1, 0), "X-Used: 0\r\nX-Bucket: token_hourly\r\n");
}

Test(http_custom, governing_limit_and_retry_after_first)
{
	struct sluice_http_limit l[2] = {one(5000, 4000, 10 * SEC), one(60, 0, 30 * SEC)};
	l[1].name = "ip_hourly";
	l[1].decision.allowed = false;
	l[1].decision.retry_after_ns = 30 * SEC;
	struct sluice_http_custom c = {.remaining = "x-left", .resource = "x-res"};
	cr_assert_str_eq(lines(SLUICE_HTTP_CUSTOM | SLUICE_HTTP_RETRY_AFTER, &c, l, 2, 0),
			 "Retry-After: 30\r\nx-left: 0\r\nx-res: ip_hourly\r\n");
	/* with another family: custom fields come last */
	cr_assert_str_eq(lines(SLUICE_HTTP_CUSTOM | SLUICE_HTTP_X_DELTA, &c, l, 2, 0),
			 "X-RateLimit-Limit: 60\r\nX-RateLimit-Remaining: 0\r\nX-RateLimit-Reset: 30\r\n"
			 "x-left: 0\r\nx-res: ip_hourly\r\n");
}

Test(http_custom, degraded_renders_no_custom_field)
{
	struct sluice_http_limit l = one(100, 50, SEC);
	l.decision.degraded = true;
	cr_assert_str_eq(lines(SLUICE_HTTP_CUSTOM, &github, &l, 1, 0), "");
}

Test(http_custom, names_must_be_tokens)
{
	struct sluice_http_limit l = one(100, 50, SEC);
	const char *bad[] = {"", "x limit", "x:limit", "x\"q", "x(y)", "caf\xc3\xa9"};
	char buf[256];

	cr_assert(sluice_http_is_token("!#$%&'*+-.^_`|~09azAZ", 21));
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct sluice_http_custom c = {.limit = bad[i]};
		cr_assert(!sluice_http_is_token(bad[i], strlen(bad[i])));
		cr_assert_eq(sluice_http_render_custom(SLUICE_HTTP_CUSTOM, &c, &l, 1, 0, buf, sizeof buf, NULL, NULL,
						       0, NULL),
			     SLUICE_EINVAL, "%s", bad[i]);
	}
	/* the bit without names, and names without the bit */
	cr_assert_eq(sluice_http_render_custom(SLUICE_HTTP_CUSTOM, NULL, &l, 1, 0, buf, sizeof buf, NULL, NULL, 0,
					       NULL),
		     SLUICE_EINVAL);
	cr_assert_eq(sluice_http_render_headers(SLUICE_HTTP_CUSTOM, &l, 1, 0, buf, sizeof buf, NULL), SLUICE_EINVAL);
	struct sluice_http_custom ignored = {.limit = "bad name"};
	cr_assert_eq(sluice_http_render_custom(SLUICE_HTTP_X_DELTA, &ignored, &l, 1, 0, buf, sizeof buf, NULL, NULL,
					       0, NULL),
		     0);
	/* a resource label with a control byte */
	l.resource = "a\nb";
	cr_assert_eq(sluice_http_render_custom(SLUICE_HTTP_CUSTOM, &github, &l, 1, 0, buf, sizeof buf, NULL, NULL, 0,
					       NULL),
		     SLUICE_EINVAL);
}

Test(http_custom, too_small_buffer_is_an_error_at_every_cap)
{
	struct sluice_http_limit l = one(5000, 4999, 1800 * SEC);
	char full[512], buf[512];
	size_t need, size;

	cr_assert_eq(sluice_http_render_custom(SLUICE_HTTP_CUSTOM, &github, &l, 1, 0, full, sizeof full, &need, NULL,
					       0, NULL),
		     0);
	for (size_t cap = 0; cap < need; cap++) {
		memset(buf, 'Z', sizeof buf);
		cr_assert_eq(sluice_http_render_custom(SLUICE_HTTP_CUSTOM, &github, &l, 1, 0, buf, cap, &size, NULL, 0,
						       NULL),
			     SLUICE_ETRUNC, "cap %zu", cap);
		cr_assert_eq(size, need);
		cr_assert_eq(buf[cap], 'Z', "wrote past cap %zu", cap);
	}
}

Test(http_custom, fields_as_name_value_pairs)
{
	struct sluice_http_limit l = one(5000, 4990, 60 * SEC);
	struct sluice_http_field f[5];
	char buf[256];
	size_t size, nf;

	cr_assert_eq(sluice_http_render_custom(SLUICE_HTTP_CUSTOM, &github, &l, 1, 0, buf, sizeof buf, &size, f, 5,
					       &nf),
		     0);
	cr_assert_eq(nf, 5);
	cr_assert_str_eq(f[0].name, "x-ratelimit-limit");
	cr_assert_str_eq(f[0].value, "5000");
	cr_assert_str_eq(f[3].name, "x-ratelimit-used");
	cr_assert_str_eq(f[3].value, "10");
	cr_assert_eq(f[3].value_len, 2);
	cr_assert_str_eq(f[4].value, "token_hourly");
	cr_assert_eq(sluice_http_render_custom(SLUICE_HTTP_CUSTOM, &github, &l, 1, 0, buf, sizeof buf, &size, f, 4,
					       &nf),
		     SLUICE_ETRUNC);
	cr_assert_eq(nf, 5);
}

Test(http_custom, renders_without_allocating)
{
#ifdef NO_ALLOC_COUNT
	cr_skip_test("allocations are not counted under ASan");
#else
	struct sluice_http_limit l[2] = {one(5000, 4999, 1800 * SEC), one(60, 0, 30 * SEC)};
	struct sluice_http_field f[16];
	char buf[1024];
	size_t size, nf;

	l[1].decision.allowed = false;
	l[1].decision.retry_after_ns = 30 * SEC;
	l[1].resource = "core";
	/* the counter counts: one allocation is seen */
	unsigned long before = allocations;
	char *volatile probe = malloc(16); /* volatile: the pair is not elided */
	free(probe);
	cr_assert_eq(allocations, before + 1);
	before = allocations;
	for (int i = 0; i < 100; i++) {
		cr_assert_eq(sluice_http_render_custom(SLUICE_HTTP_CUSTOM | SLUICE_HTTP_RETRY_AFTER | SLUICE_HTTP_X_UNIX_S,
						       &github, l, 2, 1700000000ull * SEC, buf, sizeof buf, &size,
						       NULL, 0, NULL),
			     0);
		cr_assert_eq(sluice_http_render_custom(SLUICE_HTTP_CUSTOM, &github, l, 2, 0, buf, sizeof buf, &size, f,
						       16, &nf),
			     0);
		cr_assert_eq(sluice_http_render_custom(SLUICE_HTTP_CUSTOM, &github, l, 2, 0, buf, 8, &size, NULL, 0,
						       NULL),
			     SLUICE_ETRUNC);
	}
	cr_assert_eq(allocations, before, "%lu allocations while rendering", allocations - before);
#endif
}
