/*
 * fuzz_policy.c - the policy parser on arbitrary bytes.
 *
 * Properties checked on every input:
 *   1. sluice_policy_parse() never crashes; a failure leaves *out NULL and
 *      reports its code, a position inside the text and a NUL-terminated
 *      message.
 *   2. Round trip: a policy that loads prints to canonical text that loads
 *      again into an equal policy (sluice_policy_equal) and prints to the
 *      same bytes.
 *   3. The trie matcher agrees with the reference linear matcher
 *      (tests/route_naive.h) on paths built from every rule's
 *      pattern and on paths cut from the input itself.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sluice/policy.h>

#include "fuzz.h"
#include "route_naive.h"

#define CHECK(cond)                                                                     \
	do {                                                                            \
		if (!(cond)) {                                                          \
			fprintf(stderr, "fuzz_policy: %s:%d: %s\n", __FILE__, __LINE__, #cond); \
			abort();                                                        \
		}                                                                       \
	} while (0)

static struct naive_table table;

static void check_path(const struct sluice_policy *p, const char *m, size_t mlen, const char *path, size_t plen)
{
	int a = sluice_policy_match(p, m, mlen, path, plen);
	int b = naive_match(&table, m, mlen, path, plen);
	if (a != b) {
		fprintf(stderr, "fuzz_policy: %.*s %.*s: trie %d, naive %d\n", (int)mlen, m, (int)plen, path, a, b);
		abort();
	}
}

/* Instantiate a pattern: ":x" -> "v", "*" -> "a/b". */
static size_t instantiate(const char *pattern, char *out, size_t cap)
{
	size_t n = 0;
	for (const char *s = pattern; *s != '\0' && n + 4 < cap; s++) {
		if (*s == ':') {
			while (s[1] != '\0' && s[1] != '/')
				s++;
			out[n++] = 'v';
		} else if (*s == '*') {
			memcpy(out + n, "a/b", 3);
			n += 3;
		} else {
			out[n++] = *s;
		}
	}
	return n;
}

static void check_matcher(const struct sluice_policy *p, const uint8_t *data, size_t size)
{
	static const char *const methods[] = {"GET", "post", "PUT", "DELETE", "X"};
	const struct sluice_policy_spec *s = sluice_policy_spec(p);
	char path[2 * SLUICE_POLICY_MAX_PATTERN + 8];

	naive_build(s, &table);
	for (uint32_t i = 0; i < s->route_count; i++) {
		size_t n = instantiate(s->routes[i].pattern, path, sizeof(path));
		for (size_t k = 0; k < sizeof(methods) / sizeof(methods[0]); k++)
			check_path(p, methods[k], strlen(methods[k]), path, n);
		check_path(p, s->routes[i].method, strlen(s->routes[i].method), path, n);
		/* a trailing slash and a query string change nothing */
		if (n + 3 < sizeof(path)) {
			memcpy(path + n, "/?q", 3);
			check_path(p, s->routes[i].method, strlen(s->routes[i].method), path, n + 3);
		}
	}
	/* slices of the input that start with '/' */
	for (size_t i = 0; i < size && i < 4096; i++)
		if (data[i] == '/') {
			size_t end = i;
			while (end < size && data[end] != ' ' && data[end] != '\n')
				end++;
			check_path(p, "GET", 3, (const char *)data + i, end - i);
		}
}

/* An error's position is in the text: line 1..lines+1 (or 0 for the
 * whole text), column 1..(that line's length + 1) (0: the whole line). */
static void check_position(const uint8_t *data, size_t size, const struct sluice_policy_error *err)
{
	size_t line = 1, start = 0;
	if (err->line == 0)
		return;
	for (size_t i = 0; i < size && line < (size_t)err->line; i++)
		if (data[i] == '\n') {
			line++;
			start = i + 1;
		}
	if (line != (size_t)err->line) {
		fprintf(stderr, "fuzz_policy: error on line %d of %zu: %s\n", err->line, line, err->message);
		abort();
	}
	size_t end = start;
	while (end < size && data[end] != '\n')
		end++;
	if ((size_t)err->column > end - start + 1) {
		fprintf(stderr, "fuzz_policy: error at %d:%d past the line's %zu bytes: %s\n", err->line,
			err->column, end - start, err->message);
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sluice_policy *p = (struct sluice_policy *)1, *q = NULL;
	struct sluice_policy_error err;

	int rc = sluice_policy_parse((const char *)data, size, NULL, &p, &err);
	if (rc != SLUICE_OK) {
		CHECK(p == NULL);
		CHECK(err.code == rc);
		CHECK(memchr(err.message, '\0', sizeof(err.message)) != NULL);
		CHECK(err.message[0] != '\0');
		CHECK(err.line >= 0 && err.column >= 0);
		check_position(data, size, &err);
		return 0;
	}

	size_t len = 0;
	CHECK(sluice_policy_print(p, NULL, 0, &len) == SLUICE_ETRUNC);
	char *text = malloc(len + 1), *text2 = malloc(len + 1);
	CHECK(text != NULL && text2 != NULL);
	size_t len2 = 0;
	CHECK(sluice_policy_print(p, text, len + 1, &len2) == SLUICE_OK && len2 == len);
	rc = sluice_policy_parse(text, len, NULL, &q, &err);
	if (rc != SLUICE_OK) {
		fprintf(stderr, "canonical text does not load: %d:%d: %s\n%s", err.line, err.column, err.message, text);
		abort();
	}
	CHECK(sluice_policy_equal(p, q));
	CHECK(sluice_policy_print(q, text2, len + 1, &len2) == SLUICE_OK && len2 == len);
	CHECK(memcmp(text, text2, len) == 0);
	check_matcher(p, data, size);
	free(text);
	free(text2);
	sluice_policy_destroy(q);
	sluice_policy_destroy(p);
	return 0;
}
