/*
 * test_policy_map.c - static maps loaded with a policy ("scope NAME from
 * map \"FILE\" key SCOPE", "tier from map \"FILE\" key SCOPE"): the file
 * format (comments, CRLF, duplicates refused, bad lines with file:line:column),
 * a missing file, lookup, derived scopes and tiers through
 * sluice_identity_extract(), the round trip, sluice_policy_load_file().
 */
#include "policy_test_util.h"

#include <sluice/identity.h>
#include <stdlib.h>
#include <unistd.h>

static char dir[64];

static void make_dir(void)
{
	strcpy(dir, "/tmp/sluice_map_XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void write_file(const char *name, const char *text)
{
	char path[128];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
}

static int load(const char *text, struct sluice_policy **p, struct sluice_policy_error *e)
{
	struct sluice_policy_options o = {.size = sizeof o, .base_dir = dir};
	return sluice_policy_parse(text, strlen(text), &o, p, e);
}

static struct sluice_policy *load_ok(const char *text)
{
	struct sluice_policy *p = NULL;
	struct sluice_policy_error e;
	int rc = load(text, &p, &e);
	cr_assert_eq(rc, SLUICE_OK, "%d:%d: %s", e.line, e.column, e.message);
	return p;
}

static void expect_map_error(const char *map, int code, const char *needle)
{
	write_file("bad.map", map);
	struct sluice_policy *p = NULL;
	struct sluice_policy_error e;
	int rc = load("policy \"m\"\ntier gold x2\nscope token\nscope ws from map \"bad.map\" key token\n"
		      "limit l per ws sliding 5/1m\n",
		      &p, &e);
	cr_expect_eq(rc, code, "code %d (%s)", rc, e.message);
	cr_expect_eq(e.line, 4, "the policy line naming the file");
	cr_expect_eq(e.column, 19, "the column of the file name");
	cr_expect_not_null(strstr(e.message, needle), "message '%s' lacks '%s'", e.message, needle);
	cr_expect_null(p);
}

static const char policy_text[] = "policy \"m\"\n"
				  "tier free x1\n"
				  "scope token\n"
				  "scope workspace from map \"tokens.map\" key token optional\n"
				  "tier from map \"plans.map\" key token\n"
				  "tier pro x10\n"
				  "limit ws per workspace sliding 5/1m tiered\n";

static void write_maps(void)
{
	make_dir();
	write_file("tokens.map", "# token -> workspace\n"
				 "tok_a ws_1\n"
				 "\n"
				 "tok_b\tws_1   # same workspace\r\n"
				 "  tok_c ws_2\n"
				 "tok_long" /* no newline at the end */ " ws_3");
	write_file("plans.map", "tok_a pro\ntok_c free\n");
}

Test(policy_map, loads_comments_crlf_and_looks_up)
{
	write_maps();
	struct sluice_policy *p = load_ok(policy_text);
	const struct sluice_policy_spec *s = sluice_policy_spec(p);
	cr_assert_eq(s->map_count, 2);
	cr_expect_eq(s->maps[0].entry_count, 4);
	cr_expect_str_eq(s->maps[0].path, "tokens.map");
	cr_expect_eq(s->tier_map, 1);
	const char *v;
	size_t n;
	cr_expect_eq(sluice_policy_map_find(p, 0, "tok_b", 5, &v, &n), SLUICE_OK);
	cr_expect_str_eq(v, "ws_1");
	cr_expect_eq(n, 4);
	cr_expect_eq(sluice_policy_map_find(p, 0, "tok_long", 8, &v, &n), SLUICE_OK);
	cr_expect_str_eq(v, "ws_3");
	cr_expect_eq(sluice_policy_map_find(p, 0, "tok_", 4, &v, &n), SLUICE_ENOTFOUND);
	cr_expect_eq(sluice_policy_map_find(p, 0, "", 0, &v, &n), SLUICE_ENOTFOUND);
	cr_expect_eq(sluice_policy_map_find(p, 2, "tok_a", 5, &v, &n), SLUICE_EINVAL);
	/* The canonical text loads again into an equal policy. */
	char text[4096];
	cr_assert_eq(sluice_policy_print(p, text, sizeof text, NULL), SLUICE_OK);
	cr_expect_not_null(strstr(text, "scope workspace from map \"tokens.map\" key token optional\n"), "%s", text);
	cr_expect_not_null(strstr(text, "tier from map \"plans.map\" key token\n"), "%s", text);
	struct sluice_policy *q = load_ok(text);
	cr_expect(sluice_policy_equal(p, q));
	sluice_policy_destroy(q);
	/* A changed map is a changed policy. */
	write_file("tokens.map", "tok_a ws_9\ntok_b ws_1\ntok_c ws_2\ntok_long ws_3\n");
	q = load_ok(policy_text);
	cr_expect_not(sluice_policy_equal(p, q));
	sluice_policy_destroy(q);
	sluice_policy_destroy(p);
}

static const unsigned char secret[SLUICE_IDENTITY_SECRET_MIN] = {7};

static void extract(const struct sluice_policy *p, const char *auth, struct sluice_identity_set *set)
{
	struct sluice_header_view h = {"Authorization", 13, auth, auth ? strlen(auth) : 0};
	struct sluice_request_view r = {.target = "/", .target_len = 1, .headers = &h, .header_count = auth != NULL};
	struct sluice_identity_options o = {.size = sizeof o, .secret = secret, .secret_len = sizeof secret};
	cr_assert_eq(sluice_identity_extract(p, &r, &o, set), SLUICE_OK);
}

Test(policy_map, derives_a_scope_and_the_tier)
{
	write_maps();
	struct sluice_policy *p = load_ok(policy_text);
	struct sluice_identity_set set;
	extract(p, "Bearer tok_a", &set);
	cr_expect_eq(set.ids[1].len, 4);
	cr_expect_eq(memcmp(set.ids[1].bytes, "ws_1", 4), 0);
	cr_expect_eq(set.tier, sluice_policy_tier_index(p, "pro"), "a tier declared after the map line");
	extract(p, "Bearer tok_c", &set);
	cr_expect_eq(memcmp(set.ids[1].bytes, "ws_2", 4), 0);
	cr_expect_eq(set.tier, sluice_policy_tier_index(p, "free"));
	extract(p, "Bearer tok_b", &set);
	cr_expect_eq(set.tier, SLUICE_POLICY_NO_TIER, "not in the tier map");
	extract(p, "Bearer nobody", &set);
	cr_expect_null(set.ids[1].bytes, "absent from the map: no identity");
	extract(p, NULL, &set);
	cr_expect_null(set.ids[0].bytes);
	cr_expect_null(set.ids[1].bytes, "no key identity: no derived identity");
	sluice_policy_destroy(p);
}

Test(policy_map, bad_files_are_refused_with_file_line_and_column)
{
	make_dir();
	expect_map_error("a 1\nb\n", SLUICE_ESYNTAX, "bad.map:2:2: expected a value after the key");
	expect_map_error("a 1\n  b 2 3\n", SLUICE_ESYNTAX, "bad.map:2:7: a third word");
	expect_map_error("a 1\n# c\nb 2\na 3\n", SLUICE_EINVAL, "bad.map:4:1: key 'a' already given on line 1");
	expect_map_error("a\x01 1\n", SLUICE_ESYNTAX, "bad.map:1:2: control byte 0x01");
	char longline[600];
	memset(longline, 'k', 300);
	strcpy(longline + 300, " v\n");
	expect_map_error(longline, SLUICE_ETOOBIG, "bad.map:1:1: a word longer than 256 bytes");
	struct sluice_policy *p = NULL;
	struct sluice_policy_error e;
	cr_expect_eq(load("policy \"m\"\nscope token\nscope ws from map \"none.map\" key token\n"
			  "limit l per ws sliding 5/1m\n",
			  &p, &e),
		     SLUICE_EIO);
	cr_expect_eq(e.line, 3);
	cr_expect_not_null(strstr(e.message, "map \"none.map\": cannot open"), "%s", e.message);
	write_file("plans.map", "tok_a platinum\n");
	cr_expect_eq(load("policy \"m\"\ntier gold x2\nscope token\ntier from map \"plans.map\" key token\n"
			  "limit l per token sliding 5/1m\n",
			  &p, &e),
		     SLUICE_ENOTFOUND);
	cr_expect_not_null(strstr(e.message, "plans.map:1:7: 'platinum' names no tier"), "%s", e.message);
}

Test(policy_map, declaration_errors)
{
	make_dir();
	struct sluice_policy *p = NULL;
	struct sluice_policy_error e;
	cr_expect_eq(load("policy \"m\"\nscope ws from map \"x.map\" key token\nscope token\n", &p, &e),
		     SLUICE_ENOTFOUND);
	cr_expect_eq(e.line, 2);
	cr_expect_eq(e.column, 31);
	cr_expect_eq(load("policy \"m\"\nscope token\nscope ws from map x.map key token\n", &p, &e), SLUICE_ESYNTAX);
	cr_expect_eq(e.column, 19);
	cr_expect_eq(load("policy \"m\"\nscope token\nscope ws from map \"x.map\" token\n", &p, &e), SLUICE_ESYNTAX);
	cr_expect_eq(e.column, 27);
	cr_expect_not_null(strstr(e.message, "'key'"));
	write_file("p.map", "a b\n");
	cr_expect_eq(load("policy \"m\"\nscope token\ntier from map \"p.map\" key token\n"
			  "tier from map \"p.map\" key token\n",
			  &p, &e),
		     SLUICE_EINVAL);
	cr_expect_eq(e.line, 4);
	cr_expect_not_null(strstr(e.message, "second 'tier from map' (line 3)"), "%s", e.message);
}

Test(policy_map, load_file_reads_maps_beside_the_policy)
{
	write_maps();
	write_file("p.policy", policy_text);
	char path[128];
	snprintf(path, sizeof path, "%s/p.policy", dir);
	struct sluice_policy *p = NULL;
	struct sluice_policy_error e;
	cr_assert_eq(sluice_policy_load_file(path, NULL, &p, &e), SLUICE_OK, "%s", e.message);
	cr_expect_eq(sluice_policy_spec(p)->maps[0].entry_count, 4);
	sluice_policy_destroy(p);
	snprintf(path, sizeof path, "%s/absent.policy", dir);
	cr_expect_eq(sluice_policy_load_file(path, NULL, &p, &e), SLUICE_EIO);
	cr_expect_null(p);
}
