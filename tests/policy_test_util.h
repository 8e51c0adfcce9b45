/*
 * policy_test_util.h - helpers shared by the policy test suites.
 */
#ifndef SLUICE_POLICY_TEST_UTIL_H
#define SLUICE_POLICY_TEST_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <sluice.h>

#define SEC 1000000000ull

/* Parse a NUL-terminated text; fails the test with the parser's message. */
static inline struct sluice_policy *load_text(const char *text)
{
	struct sluice_policy *p = NULL;
	struct sluice_policy_error e;
	int rc = sluice_policy_parse(text, strlen(text), NULL, &p, &e);
	cr_assert_eq(rc, SLUICE_OK, "parse failed: %d:%d: %s", e.line, e.column, e.message);
	return p;
}

/* Parse a text expected to fail; returns the error. */
static inline struct sluice_policy_error load_error(const char *text)
{
	struct sluice_policy *p = (struct sluice_policy *)&p;
	struct sluice_policy_error e;
	int rc = sluice_policy_parse(text, strlen(text), NULL, &p, &e);
	cr_assert_neq(rc, SLUICE_OK, "parse of an invalid text succeeded:\n%s", text);
	cr_assert_eq(rc, e.code);
	cr_assert_null(p);
	return e;
}

static inline struct sluice_policy *load_file(const char *name)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/docs/policies/%s", SLUICE_SOURCE_DIR, name);
	FILE *f = fopen(path, "rb");
	cr_assert_not_null(f, "cannot open %s", path);
	static char buf[1 << 16];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	struct sluice_policy *p = NULL;
	struct sluice_policy_error e;
	int rc = sluice_policy_parse(buf, n, NULL, &p, &e);
	cr_assert_eq(rc, SLUICE_OK, "%s:%d:%d: %s", name, e.line, e.column, e.message);
	return p;
}

static inline int match(const struct sluice_policy *p, const char *method, const char *path)
{
	return sluice_policy_match(p, method, strlen(method), path, strlen(path));
}

static inline const char *class_of(const struct sluice_policy *p, const char *method, const char *path)
{
	int c = match(p, method, path);
	cr_assert_geq(c, 0, "%s %s: error %d", method, path, c);
	return sluice_policy_spec(p)->classes[c];
}

#endif /* SLUICE_POLICY_TEST_UTIL_H */
