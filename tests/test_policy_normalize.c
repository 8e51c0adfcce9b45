/*
 * test_policy_normalize.c - the normal form of request paths
 * (sluice_path_normalize) and route matching on it: the spellings that
 * must not bypass an endpoint class, RFC 3986's dot-segment examples, every
 * byte and every escape, sizes, and the patterns a policy may contain.
 */
#include "policy_test_util.h"

/* Normalize a NUL-terminated path; returns the code, *out the text. */
static int norm(const char *in, unsigned flags, char *out, size_t cap)
{
	size_t len = 0;
	int rc = sluice_path_normalize(in, strlen(in), flags, out, cap, &len);
	if (rc == SLUICE_OK)
		cr_assert_eq(strlen(out), len, "%s: length %zu, text '%s'", in, len, out);
	return rc;
}

static void expect(const char *in, unsigned flags, const char *want)
{
	char out[512];
	int rc = norm(in, flags, out, sizeof(out));
	cr_assert_eq(rc, SLUICE_OK, "%s: error %d", in, rc);
	cr_assert_str_eq(out, want, "%s -> '%s', want '%s'", in, out, want);
	/* normal forms are fixed points */
	char again[512];
	cr_assert_eq(norm(out, flags, again, sizeof(again)), SLUICE_OK);
	cr_assert_str_eq(again, out, "not idempotent: %s -> %s -> %s", in, out, again);
}

/* seed 004 with "routes case-insensitive" added, so every spelling below
 * must land in the analytics class. */
static struct sluice_policy *seed004(bool fold)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/docs/policies/seed004.policy", SLUICE_SOURCE_DIR);
	FILE *f = fopen(path, "rb");
	cr_assert_not_null(f, "cannot open %s", path);
	static char buf[1 << 16];
	size_t n = fread(buf, 1, sizeof(buf) - 64, f);
	fclose(f);
	if (fold)
		n += (size_t)snprintf(buf + n, 64, "\nroutes case-insensitive\n");
	buf[n] = '\0';
	return load_text(buf);
}

Test(path_normalize, bypass_spellings_land_in_their_class)
{
	static const char *const spellings[] = {
		"/v1/analytics",      "/V1/Analytics",   "/v1/./analytics",  "/v1/x/../analytics",
		"/v1//analytics",     "/v1/%61nalytics", "/v1/%61NALYTICS",  "//v1///analytics//",
		"/v1/analytics/.",    "/v1/%2e/analytics", "/v1/a/b/%2E%2e/../analytics?x=/v1/other",
		"/%76%31/analytics",  "/../v1/analytics", "/v1/analytics#frag",
	};
	struct sluice_policy *p = seed004(true);
	for (size_t i = 0; i < sizeof(spellings) / sizeof(spellings[0]); i++)
		cr_assert_str_eq(class_of(p, "GET", spellings[i]), "analytics", "%s", spellings[i]);
	/* sub-routes likewise */
	cr_assert_str_eq(class_of(p, "GET", "/v1/Analytics/./Daily"), "analytics_daily");
	cr_assert_str_eq(class_of(p, "GET", "/v1/analytics/x/../by%2Duser"), "analytics_by_user");
	/* an encoded slash is not a separator: this is one segment */
	cr_assert_str_eq(class_of(p, "GET", "/v1%2Fanalytics"), "default");
	sluice_policy_destroy(p);

	/* without the keyword case matters, everything else is normalized */
	p = seed004(false);
	cr_assert_not(sluice_policy_spec(p)->route_fold_case);
	cr_assert_str_eq(class_of(p, "GET", "/V1/Analytics"), "default");
	cr_assert_str_eq(class_of(p, "GET", "/v1/%61nalytics"), "analytics");
	cr_assert_str_eq(class_of(p, "GET", "/v1/x/../analytics"), "analytics");
	sluice_policy_destroy(p);
}

Test(path_normalize, rfc3986_5_4_dot_segment_examples)
{
	/* RFC 3986 5.4.1 and 5.4.2 against base path /b/c/d;p: the merged
	 * path (5.2.3) and the path of the RFC's result */
	static const char *const cases[][2] = {
		{"/b/c/g", "/b/c/g"},         {"/b/c/./g", "/b/c/g"},       {"/b/c/g/", "/b/c/g/"},
		{"/b/c/;x", "/b/c/;x"},       {"/b/c/g;x", "/b/c/g;x"},     {"/b/c/.", "/b/c/"},
		{"/b/c/./", "/b/c/"},         {"/b/c/..", "/b/"},           {"/b/c/../", "/b/"},
		{"/b/c/../g", "/b/g"},        {"/b/c/../..", "/"},          {"/b/c/../../", "/"},
		{"/b/c/../../g", "/g"},       {"/b/c/../../../g", "/g"},    {"/b/c/../../../../g", "/g"},
		{"/./g", "/g"},               {"/../g", "/g"},              {"/b/c/g.", "/b/c/g."},
		{"/b/c/.g", "/b/c/.g"},       {"/b/c/g..", "/b/c/g.."},     {"/b/c/..g", "/b/c/..g"},
		{"/b/c/./../g", "/b/g"},      {"/b/c/./g/.", "/b/c/g/"},    {"/b/c/g/./h", "/b/c/g/h"},
		{"/b/c/g/../h", "/b/c/h"},    {"/b/c/g;x=1/./y", "/b/c/g;x=1/y"},
		{"/b/c/g;x=1/../y", "/b/c/y"},
		/* 5.2.4's own walk-through */
		{"/a/b/c/./../../g", "/a/g"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		expect(cases[i][0], 0, cases[i][1]);
}

Test(path_normalize, edge_cases)
{
	char out[64];
	size_t len = 99;
	cr_assert_eq(sluice_path_normalize("", 0, 0, out, sizeof(out), &len), SLUICE_EINVAL);
	cr_assert_eq(len, 0);
	cr_assert_eq(sluice_path_normalize(NULL, 1, 0, out, sizeof(out), &len), SLUICE_EINVAL);
	cr_assert_eq(sluice_path_normalize("/a", 2, 0, NULL, 4, &len), SLUICE_EINVAL);
	cr_assert_eq(sluice_path_normalize("a/b", 3, 0, out, sizeof(out), &len), SLUICE_EINVAL);
	cr_assert_eq(sluice_path_normalize("?/a", 3, 0, out, sizeof(out), &len), SLUICE_EINVAL);
	cr_assert_eq(sluice_path_normalize("/a", 2, 2, out, sizeof(out), &len), SLUICE_EINVAL);
	expect("/", 0, "/");
	expect("//", 0, "/");
	expect("/.", 0, "/");
	expect("/..", 0, "/");
	expect("/./..", 0, "/");
	expect("/../../..", 0, "/");
	expect("/...", 0, "/...");
	expect("/..../", 0, "/..../");
	expect("/a/..", 0, "/");
	expect("/a/../", 0, "/");
	expect("/a/b/..", 0, "/a/");
	expect("/a//../b", 0, "/b"); /* slashes merge before dot segments */
	expect("/a/.//", 0, "/a/");
	expect("/a?b/../c", 0, "/a");
	expect("/a#b", 0, "/a");
	expect("/?", 0, "/");
	expect("/a%3F/b", 0, "/a%3F/b"); /* an encoded '?' is not a query */
	expect("/%2e%2E/%2E/a", 0, "/a");
	expect("/.%2e/a/%2e.", 0, "/");
	expect("/%2e%2e%2e", 0, "/...");
	expect("/%7e%7Euser", 0, "/~~user");
	expect("/a%2fb/..", 0, "/");     /* "a%2Fb" is one segment */
	expect("/a%2fb", 0, "/a%2Fb");
	expect("/caf\xc3\xa9", 0, "/caf\xc3\xa9"); /* raw UTF-8 kept */
	expect("/caf%c3%a9", 0, "/caf%C3%A9");
	expect("/a b", 0, "/a b");
	expect("/ABC/%41%62%43/%4a", SLUICE_PATH_FOLD_CASE, "/abc/abc/j");
	expect("/A%2fB", SLUICE_PATH_FOLD_CASE, "/a%2Fb"); /* hex digits stay upper case */
	cr_assert_eq(norm("/a%", 0, out, sizeof(out)), SLUICE_ESYNTAX);
	cr_assert_eq(norm("/a%4", 0, out, sizeof(out)), SLUICE_ESYNTAX);
	cr_assert_eq(norm("/a%4?x", 0, out, sizeof(out)), SLUICE_ESYNTAX);
	cr_assert_eq(norm("/a%zz", 0, out, sizeof(out)), SLUICE_ESYNTAX);
	cr_assert_eq(norm("/a%g0", 0, out, sizeof(out)), SLUICE_ESYNTAX);
	cr_assert_eq(norm("/a/../%", 0, out, sizeof(out)), SLUICE_ESYNTAX);
	cr_assert_eq(norm("/a?%zz\x01", 0, out, sizeof(out)), SLUICE_OK); /* query not looked at */
	cr_assert_eq(sluice_path_normalize("/a\0b", 4, 0, out, sizeof(out), &len), SLUICE_ESYNTAX);
}

Test(path_normalize, every_byte_value)
{
	for (int b = 0; b < 256; b++) {
		char in[4] = {'/', 'x', (char)b, 'y'};
		char out[16];
		size_t len = 0;
		int rc = sluice_path_normalize(in, 4, 0, out, sizeof(out), &len);
		if (b < 0x20 || b == 0x7F || b == '%') {
			cr_assert_eq(rc, SLUICE_ESYNTAX, "byte %#x", b);
			continue;
		}
		cr_assert_eq(rc, SLUICE_OK, "byte %#x", b);
		if (b == '?' || b == '#')
			cr_assert_str_eq(out, "/x");
		else if (b == '/')
			cr_assert_str_eq(out, "/x/y");
		else
			cr_assert(len == 4 && out[0] == '/' && out[1] == 'x' && (unsigned char)out[2] == b &&
				  out[3] == 'y', "byte %#x -> %s", b, out);
		/* folded: only A-Z change */
		rc = sluice_path_normalize(in, 4, SLUICE_PATH_FOLD_CASE, out, sizeof(out), &len);
		cr_assert_eq(rc, SLUICE_OK);
		if (b >= 'A' && b <= 'Z')
			cr_assert_eq(out[2], b + 32);
		else if (b != '?' && b != '#' && b != '/')
			cr_assert_eq((unsigned char)out[2], b);
	}
}

Test(path_normalize, every_escape)
{
	static const char hex_lower[] = "0123456789abcdef", hex_upper[] = "0123456789ABCDEF";
	for (int v = 0; v < 256; v++) {
		bool unreserved = (v >= 'A' && v <= 'Z') || (v >= 'a' && v <= 'z') || (v >= '0' && v <= '9') ||
				  v == '-' || v == '.' || v == '_' || v == '~';
		for (int lower = 0; lower < 2; lower++) {
			const char *hx = lower ? hex_lower : hex_upper;
			char in[8] = {'/', 'q', '%', hx[v >> 4], hx[v & 15], 'z', 0};
			char out[16];
			cr_assert_eq(norm(in, 0, out, sizeof(out)), SLUICE_OK, "%s", in);
			if (unreserved) {
				char want[8] = {'/', 'q', (char)v, 'z', 0};
				cr_assert_str_eq(out, want, "%s", in);
			} else {
				char want[8] = {'/', 'q', '%', hex_upper[v >> 4], hex_upper[v & 15], 'z', 0};
				cr_assert_str_eq(out, want, "%s", in);
			}
		}
	}
}

Test(path_normalize, sizes_exact_fit_and_one_short)
{
	char out[16];
	size_t len = 0;
	/* "/a/./b/../c" -> "/a/c": 4 bytes and a NUL */
	cr_assert_eq(sluice_path_normalize("/a/./b/../c", 11, 0, out, 5, &len), SLUICE_OK);
	cr_assert_str_eq(out, "/a/c");
	cr_assert_eq(len, 4);
	len = 0;
	cr_assert_eq(sluice_path_normalize("/a/./b/../c", 11, 0, out, 4, &len), SLUICE_ETRUNC);
	cr_assert_eq(len, 4);
	cr_assert_eq(sluice_path_normalize("/a/./b/../c", 11, 0, NULL, 0, &len), SLUICE_ETRUNC);
	cr_assert_eq(len, 4);
	cr_assert_eq(sluice_path_normalize("/", 1, 0, out, 1, &len), SLUICE_ETRUNC);
	cr_assert_eq(len, 1);
	cr_assert_eq(sluice_path_normalize("/", 1, 0, out, 2, NULL), SLUICE_OK);
}

Test(path_normalize, long_paths)
{
	size_t n = 1 << 16;
	char *in = malloc(n), *out = malloc(n + 1);
	cr_assert(in != NULL && out != NULL);
	/* /a/b/a/b/... then more "/.." than segments: back to the root */
	for (size_t i = 0; i < n / 4; i += 2) {
		in[i] = '/';
		in[i + 1] = (char)('a' + (i / 2) % 2);
	}
	for (size_t i = n / 4; i < n; i += 4)
		memcpy(in + i, "/../", 4);
	size_t len = 0;
	cr_assert_eq(sluice_path_normalize(in, n, 0, out, n + 1, &len), SLUICE_OK);
	cr_assert_eq(len, 1);
	cr_assert_str_eq(out, "/");
	/* one segment the whole length, decoded to a third */
	in[0] = '/';
	for (size_t i = 1; i + 3 <= n; i += 3)
		memcpy(in + i, "%41", 3);
	size_t m = 1 + (n - 1) / 3 * 3;
	cr_assert_eq(sluice_path_normalize(in, m, 0, out, n + 1, &len), SLUICE_OK);
	cr_assert_eq(len, 1 + (m - 1) / 3);
	cr_assert_eq(out[len - 1], 'A');
	free(in);
	free(out);
}

Test(path_normalize, patterns_must_be_in_normal_form)
{
	struct sluice_policy_error e;
	e = load_error("policy \"p\"\nscope ip\nclass a match GET /v1/./x\nlimit l per ip rate 1/1s\n");
	cr_assert_eq(e.code, SLUICE_ESYNTAX);
	cr_assert_eq(e.line, 3);
	cr_assert_eq(e.column, 23, "%d: %s", e.column, e.message);
	e = load_error("policy \"p\"\nscope ip\nclass a match GET /v1/%61x\nlimit l per ip rate 1/1s\n");
	cr_assert_eq(e.code, SLUICE_ESYNTAX);
	cr_assert_eq(e.column, 23);
	cr_assert_not_null(strstr(e.message, "write 'ax'"), "%s", e.message);
	e = load_error("policy \"p\"\nscope ip\nclass a match GET /v1/a%2fb\nlimit l per ip rate 1/1s\n");
	cr_assert_not_null(strstr(e.message, "a%2Fb"), "%s", e.message);
	e = load_error("policy \"p\"\nscope ip\nclass a match GET /v1/a%zz\nlimit l per ip rate 1/1s\n");
	cr_assert_eq(e.code, SLUICE_ESYNTAX);
	/* upper case only when routes are case-insensitive, wherever that is said */
	e = load_error("policy \"p\"\nscope ip\nclass a match GET /v1/Users\nlimit l per ip rate 1/1s\n"
		       "routes case-insensitive\n");
	cr_assert_eq(e.line, 3);
	cr_assert_eq(e.column, 23);
	cr_assert_not_null(strstr(e.message, "write 'users'"), "%s", e.message);
	e = load_error("policy \"p\"\nroutes loud\nscope ip\nlimit l per ip rate 1/1s\n");
	cr_assert_eq(e.code, SLUICE_ESYNTAX);
	e = load_error("policy \"p\"\nroutes case-sensitive\nroutes case-sensitive\nscope ip\nlimit l per ip rate 1/1s\n");
	cr_assert_eq(e.code, SLUICE_EINVAL);
	struct sluice_policy *p = load_text("policy \"p\"\nscope ip\nclass a match GET /v1/Users/a%2Fb/:id\n"
					    "limit l per ip rate 1/1s\n");
	cr_assert_str_eq(class_of(p, "GET", "/v1/Users/a%2fb/7"), "a");
	cr_assert_str_eq(class_of(p, "GET", "/v1/users/a%2fb/7"), "default");
	sluice_policy_destroy(p);
}

Test(path_normalize, case_insensitive_prints_and_compares)
{
	const char *text = "policy \"p\"\nroutes case-insensitive\nscope ip\nclass a match GET /v1/users\n"
			   "limit l per ip rate 1/1s\n";
	struct sluice_policy *p = load_text(text);
	cr_assert(sluice_policy_spec(p)->route_fold_case);
	char buf[1024];
	cr_assert_eq(sluice_policy_print(p, buf, sizeof(buf), NULL), SLUICE_OK);
	cr_assert_not_null(strstr(buf, "\nroutes case-insensitive\n"), "%s", buf);
	struct sluice_policy *q = load_text(buf);
	cr_assert(sluice_policy_equal(p, q));
	struct sluice_policy *r = load_text("policy \"p\"\nscope ip\nclass a match GET /v1/users\n"
					    "limit l per ip rate 1/1s\n");
	cr_assert_not(sluice_policy_equal(p, r));
	cr_assert_str_eq(class_of(p, "GET", "/V1/USERS"), "a");
	cr_assert_str_eq(class_of(r, "GET", "/V1/USERS"), "default");
	sluice_policy_destroy(p);
	sluice_policy_destroy(q);
	sluice_policy_destroy(r);
}

Test(path_normalize, paths_that_normalize_to_the_root)
{
	struct sluice_policy *p = load_text("policy \"p\"\nscope ip\nclass root match GET /\n"
					    "class a match GET /a\nlimit l per ip rate 1/1s\n");
	static const char *const roots[] = {"/", "/.", "/..", "/a/..", "/a/b/../..", "/%2e%2e", "//./", "/a/%2E%2E/"};
	for (size_t i = 0; i < sizeof(roots) / sizeof(roots[0]); i++)
		cr_assert_str_eq(class_of(p, "GET", roots[i]), "root", "%s", roots[i]);
	cr_assert_str_eq(class_of(p, "GET", "/b/../a"), "a");
	sluice_policy_destroy(p);
}
