/*
 * test_policy_route.c - the route matcher (sluice_policy_match): precedence,
 * normalisation of the request path, methods, long and bad input, and a
 * differential check against the reference linear matcher.
 */
#include "policy_test_util.h"
#include "route_naive.h"

#define HEAD "policy \"r\"\nscope ip\n"
#define TAIL "limit l per ip rate 1/1s\n"

Test(policy_route, literal_beats_param_beats_wildcard)
{
	struct sluice_policy *p = load_text(HEAD "class lit match GET /a/b\n"
						 "class par match GET /a/:x\n"
						 "class wild match GET /a/*\n" TAIL);
	cr_assert_str_eq(class_of(p, "GET", "/a/b"), "lit");
	cr_assert_str_eq(class_of(p, "GET", "/a/c"), "par");
	cr_assert_str_eq(class_of(p, "GET", "/a/c/d"), "wild");
	cr_assert_str_eq(class_of(p, "GET", "/a/b/d"), "wild");
	cr_assert_str_eq(class_of(p, "GET", "/a"), "default"); /* '*' needs a segment */
	sluice_policy_destroy(p);
}

Test(policy_route, the_first_differing_segment_decides)
{
	/* /a/b/ * is more specific than /a/:x/c: at segment 2, literal b beats :x */
	struct sluice_policy *p = load_text(HEAD "class pc match GET /a/:x/c\n"
						 "class bw match GET /a/b/*\n" TAIL);
	cr_assert_str_eq(class_of(p, "GET", "/a/b/c"), "bw");
	cr_assert_str_eq(class_of(p, "GET", "/a/z/c"), "pc");
	sluice_policy_destroy(p);
}

Test(policy_route, backtracks_out_of_a_dead_literal_branch)
{
	struct sluice_policy *p = load_text(HEAD "class deep match GET /a/b/c\n"
						 "class par match GET /a/:x/d\n"
						 "class root match GET /*\n" TAIL);
	cr_assert_str_eq(class_of(p, "GET", "/a/b/d"), "par");
	cr_assert_str_eq(class_of(p, "GET", "/a/b/c"), "deep");
	cr_assert_str_eq(class_of(p, "GET", "/a/b/e"), "root");
	cr_assert_str_eq(class_of(p, "GET", "/zzz"), "root");
	cr_assert_str_eq(class_of(p, "GET", "/"), "default");
	sluice_policy_destroy(p);
}

Test(policy_route, exact_method_beats_any_method_and_path_beats_method)
{
	struct sluice_policy *p = load_text(HEAD "class post match POST /auth/login\n"
						 "class any match * /auth/login\n"
						 "class authpost match POST /auth/*\n" TAIL);
	cr_assert_str_eq(class_of(p, "POST", "/auth/login"), "post");
	cr_assert_str_eq(class_of(p, "GET", "/auth/login"), "any");
	cr_assert_str_eq(class_of(p, "POST", "/auth/logout"), "authpost");
	cr_assert_str_eq(class_of(p, "GET", "/auth/logout"), "default");
	sluice_policy_destroy(p);
}

Test(policy_route, method_mismatch_falls_back_to_a_less_specific_rule)
{
	struct sluice_policy *p = load_text(HEAD "class put match PUT /v1/users/:id\n"
						 "class anyv1 match * /v1/*\n" TAIL);
	cr_assert_str_eq(class_of(p, "PUT", "/v1/users/7"), "put");
	cr_assert_str_eq(class_of(p, "GET", "/v1/users/7"), "anyv1");
	sluice_policy_destroy(p);
}

Test(policy_route, methods_are_case_insensitive)
{
	struct sluice_policy *p = load_text(HEAD "class g match GET /x\nclass d match DELETE /x\n" TAIL);
	cr_assert_str_eq(class_of(p, "get", "/x"), "g");
	cr_assert_str_eq(class_of(p, "GeT", "/x"), "g");
	cr_assert_str_eq(class_of(p, "delete", "/x"), "d");
	cr_assert_str_eq(class_of(p, "GETS", "/x"), "default");
	cr_assert_str_eq(class_of(p, "GE", "/x"), "default");
	cr_assert_str_eq(class_of(p, "PATCH", "/x"), "default");
	cr_assert_eq(sluice_policy_match(p, "GETX", 3, "/x", 2), 1); /* only method_len bytes count */
	sluice_policy_destroy(p);
}

Test(policy_route, trailing_and_repeated_slashes_query_and_fragment)
{
	struct sluice_policy *p = load_text(HEAD "class users match GET /v1/users\n"
						 "class user match GET /v1/users/:id\n"
						 "class root match GET /\n" TAIL);
	static const char *const users[] = {"/v1/users", "/v1/users/", "/v1//users", "//v1/users//",
					    "/v1/users?limit=100", "/v1/users/?a=/b/c", "/v1/users#frag",
					    "/v1/users?x#y"};
	for (size_t i = 0; i < sizeof(users) / sizeof(users[0]); i++)
		cr_assert_str_eq(class_of(p, "GET", users[i]), "users", "%s", users[i]);
	cr_assert_str_eq(class_of(p, "GET", "/v1/users/42?x=1"), "user");
	cr_assert_str_eq(class_of(p, "GET", "/v1/users/42/"), "user");
	cr_assert_str_eq(class_of(p, "GET", "/"), "root");
	cr_assert_str_eq(class_of(p, "GET", "//"), "root");
	cr_assert_str_eq(class_of(p, "GET", "/?/v1/users"), "root");
	/* paths are case-sensitive; only the query is cut */
	cr_assert_str_eq(class_of(p, "GET", "/V1/users"), "default");
	cr_assert_str_eq(class_of(p, "GET", "/v1/users/42/x"), "default");
	/* path_len bounds the path: no NUL needed, bytes after it are ignored */
	cr_assert_eq(sluice_policy_match(p, "GET", 3, "/v1/usersXYZ", 9), 1);
	sluice_policy_destroy(p);
}

Test(policy_route, literal_children_are_searched_exactly)
{
	/* many siblings of mixed lengths: the binary search must find each one */
	char text[8192];
	size_t n = (size_t)snprintf(text, sizeof(text), HEAD);
	for (int i = 0; i < 60; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n, "class c%d match GET /s/%.*s%d\n", i, i % 7, "xxxxxxx", i);
	snprintf(text + n, sizeof(text) - n, TAIL);
	struct sluice_policy *p = load_text(text);
	for (int i = 0; i < 60; i++) {
		char path[64], want[16];
		snprintf(path, sizeof(path), "/s/%.*s%d", i % 7, "xxxxxxx", i);
		snprintf(want, sizeof(want), "c%d", i);
		cr_assert_str_eq(class_of(p, "GET", path), want, "%s", path);
	}
	cr_assert_str_eq(class_of(p, "GET", "/s/x"), "default");
	cr_assert_str_eq(class_of(p, "GET", "/s/xxxxxxx60"), "default");
	sluice_policy_destroy(p);
}

Test(policy_route, very_long_paths)
{
	struct sluice_policy *p = load_text(HEAD "class deep match GET /a/:x/*\n"
						 "class exact match GET /a/b\n" TAIL);
	/* up to SLUICE_POLICY_MAX_PATH bytes before the '?' a path matches;
	 * beyond, it is refused (a server answers 414), query or not */
	size_t len = SLUICE_POLICY_MAX_PATH;
	char *path = malloc(len + 1 + (1 << 20));
	for (size_t i = 0; i < len; i += 2) {
		path[i] = '/';
		path[i + 1] = 'a';
	}
	/* 2^11 segments: /a/a/a/... */
	cr_assert_eq(sluice_policy_match(p, "GET", 3, path, len), 1);
	/* the same, needing normalization: /a/./a/./ ... */
	for (size_t i = 0; i + 4 <= len; i += 4)
		memcpy(path + i, "/a/.", 4);
	cr_assert_eq(sluice_policy_match(p, "GET", 3, path, len), 1);
	/* one segment of MAX_PATH - 1 bytes */
	memset(path + 1, 'b', len - 1);
	cr_assert_eq(sluice_policy_match(p, "GET", 3, path, len), 0);
	/* a long path of slashes */
	memset(path, '/', len);
	cr_assert_eq(sluice_policy_match(p, "GET", 3, path, len), 0);
	/* one byte more */
	path[len] = 'a';
	cr_assert_eq(sluice_policy_match(p, "GET", 3, path, len + 1), SLUICE_ETOOBIG);
	/* a 1 MiB query string after a short path is cut first */
	memcpy(path, "/a/b?", 5);
	memset(path + 5, 'q', (1 << 20) - 5);
	cr_assert_eq(sluice_policy_match(p, "GET", 3, path, 1 << 20), 2);
	free(path);
	sluice_policy_destroy(p);
}

Test(policy_route, bad_input)
{
	struct sluice_policy *p = load_text(HEAD "class a match GET /a\n" TAIL);
	cr_assert_eq(sluice_policy_match(NULL, "GET", 3, "/a", 2), SLUICE_EINVAL);
	cr_assert_eq(sluice_policy_match(p, NULL, 3, "/a", 2), SLUICE_EINVAL);
	cr_assert_eq(sluice_policy_match(p, "GET", 0, "/a", 2), SLUICE_EINVAL);
	cr_assert_eq(sluice_policy_match(p, "GET", 3, NULL, 2), SLUICE_EINVAL);
	cr_assert_eq(sluice_policy_match(p, "GET", 3, "/a", 0), SLUICE_EINVAL);
	cr_assert_eq(sluice_policy_match(p, "GET", 3, "a", 1), SLUICE_EINVAL);
	cr_assert_eq(sluice_policy_match(p, "GET", 3, "*", 1), SLUICE_EINVAL);
	cr_assert_eq(sluice_policy_match(p, "GET", 3, "http://h/a", 10), SLUICE_EINVAL);
	/* odd method bytes are just bytes; so are bytes >= 0x80 in a path, but a
	 * control byte or a malformed escape in the path is a bad request */
	cr_assert_eq(sluice_policy_match(p, "G\0T", 3, "/a", 2), 0);
	cr_assert_eq(sluice_policy_match(p, "GET", 3, "/a\0b", 4), SLUICE_ESYNTAX);
	cr_assert_eq(sluice_policy_match(p, "GET", 3, "/a\x7f", 3), SLUICE_ESYNTAX);
	cr_assert_eq(sluice_policy_match(p, "GET", 3, "/a%4", 4), SLUICE_ESYNTAX);
	cr_assert_eq(sluice_policy_match(p, "GET", 3, "/a%zz", 5), SLUICE_ESYNTAX);
	cr_assert_eq(sluice_policy_match(p, "GET", 3, "/a?\0%zz", 6), 1); /* the query is not looked at */
	cr_assert_eq(sluice_policy_match(p, "\xff", 1, "/\xff\x80", 3), 0);
	sluice_policy_destroy(p);
}

Test(policy_route, no_routes_means_default)
{
	struct sluice_policy *p = load_text(HEAD TAIL);
	cr_assert_eq(match(p, "GET", "/anything/at/all"), 0);
	cr_assert_eq(match(p, "GET", "/"), 0);
	sluice_policy_destroy(p);
}

Test(policy_route, a_rule_may_route_to_default_explicitly)
{
	struct sluice_policy *p = load_text(HEAD "class admin match * /admin/*\n"
						 "class default match GET /admin/health\n" TAIL);
	cr_assert_str_eq(class_of(p, "GET", "/admin/health"), "default");
	cr_assert_str_eq(class_of(p, "POST", "/admin/health"), "admin");
	sluice_policy_destroy(p);
}

/* xorshift64*, deterministic */
static uint64_t rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ull;
}

Test(policy_route, agrees_with_the_reference_matcher)
{
	static const char *const segs[] = {"a", "b", "ab", ":p", ":q", "*"};
	static const char *const methods[] = {"GET", "POST", "*"};
	static const char *const req_segs[] = {"a", "b", "ab", "c", "", "A"};
	static const char *const req_methods[] = {"GET", "post", "PUT"};
	static struct naive_table table;
	uint64_t seed = 0x9e3779b97f4a7c15ull;

	for (int round = 0; round < 200; round++) {
		char text[16384];
		size_t n = (size_t)snprintf(text, sizeof(text), HEAD);
		int nroutes = 1 + (int)(rnd(&seed) % 40);
		for (int r = 0; r < nroutes; r++) {
			char pat[128] = "";
			size_t pl = 0;
			int depth = (int)(rnd(&seed) % 5);
			for (int d = 0; d < depth; d++) {
				const char *s = segs[rnd(&seed) % (d == depth - 1 ? 6 : 5)];
				pl += (size_t)snprintf(pat + pl, sizeof(pat) - pl, "/%s", s);
			}
			if (depth == 0)
				strcpy(pat, "/");
			n += (size_t)snprintf(text + n, sizeof(text) - n, "class c%d match %s %s\n", r,
					      methods[rnd(&seed) % 3], pat);
		}
		snprintf(text + n, sizeof(text) - n, TAIL);
		struct sluice_policy *p = NULL;
		struct sluice_policy_error e;
		if (sluice_policy_parse(text, strlen(text), NULL, &p, &e) != SLUICE_OK) {
			cr_assert_not_null(strstr(e.message, "duplicate route"), "%s", e.message);
			continue; /* a random table may repeat a rule */
		}
		naive_build(sluice_policy_spec(p), &table);
		for (int q = 0; q < 200; q++) {
			char path[64] = "";
			size_t pl = 0;
			int depth = (int)(rnd(&seed) % 6);
			for (int d = 0; d < depth; d++)
				pl += (size_t)snprintf(path + pl, sizeof(path) - pl, "/%s", req_segs[rnd(&seed) % 6]);
			if (pl == 0)
				path[pl++] = '/';
			if (rnd(&seed) % 4 == 0)
				pl += (size_t)snprintf(path + pl, sizeof(path) - pl, "/?q=/a");
			const char *m = req_methods[rnd(&seed) % 3];
			int got = sluice_policy_match(p, m, strlen(m), path, pl);
			int want = naive_match(&table, m, strlen(m), path, pl);
			cr_assert_eq(got, want, "%s %s: trie %d, reference %d\n%s", m, path, got, want, text);
		}
		sluice_policy_destroy(p);
	}
}
