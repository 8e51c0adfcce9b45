/*
 * client_test_util.h - building header blocks for the client tests.
 */
#ifndef SLUICE_CLIENT_TEST_UTIL_H
#define SLUICE_CLIENT_TEST_UTIL_H

#include <criterion/criterion.h>
#include <sluice.h>
#include <string.h>

#define SEC 1000000000ull
#define MS 1000000ull

struct hdrs {
	struct sluice_http_field f[24];
	size_t n;
};

static inline void add(struct hdrs *h, const char *name, const char *value)
{
	h->f[h->n].name = name;
	h->f[h->n].name_len = strlen(name);
	h->f[h->n].value = value;
	h->f[h->n].value_len = strlen(value);
	h->n++;
}

/* "Name: value" lines, NULL-terminated, parsed at now. */
static inline struct sluice_client_limits parse_lines(const char *const *lines, uint64_t now)
{
	static char names[24][64];
	struct hdrs h = {.n = 0};
	struct sluice_client_limits l;
	for (size_t i = 0; lines[i] != NULL; i++) {
		const char *colon = strchr(lines[i], ':');
		size_t nl = (size_t)(colon - lines[i]);
		memcpy(names[i], lines[i], nl);
		names[i][nl] = '\0';
		const char *v = colon + 1;
		while (*v == ' ')
			v++;
		add(&h, names[i], v);
	}
	cr_assert_eq(sluice_client_parse(h.f, h.n, now, &l), 0);
	return l;
}

/* The policy named name, or NULL. */
static inline const struct sluice_client_policy *policy_named(const struct sluice_client_limits *l,
							      const char *name)
{
	for (uint32_t i = 0; i < l->npolicies; i++)
		if (strcmp(l->policies[i].name, name) == 0)
			return &l->policies[i];
	return NULL;
}

/* The planner's decision for a response, without jitter. */
static inline struct sluice_backoff_plan plan_for(int status, bool idempotent,
						  const struct sluice_client_limits *l)
{
	struct sluice_backoff_opts o;
	struct sluice_rng rng = {1};
	struct sluice_backoff_request r = {.status = status, .idempotent = idempotent, .attempt = 1, .limits = l};
	struct sluice_backoff_plan p;
	sluice_backoff_opts_default(&o);
	o.jitter_permille = 0;
	cr_assert_eq(sluice_backoff_plan(&o, &r, &rng, &p), 0);
	return p;
}

#endif /* SLUICE_CLIENT_TEST_UTIL_H */
