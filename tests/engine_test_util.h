/*
 * engine_test_util.h - helpers for the policy engine suites: load a policy,
 * build requests, run one request end to end (check then release).
 */
#ifndef SLUICE_ENGINE_TEST_UTIL_H
#define SLUICE_ENGINE_TEST_UTIL_H

#include "policy_test_util.h"

#include <time.h>

/* 2026-11-23T00:00:00Z */
#define DAY0 (UINT64_C(1795392000) * SEC)
#define MIN_NS (60 * SEC)

static inline struct sluice_engine *engine_of(struct sluice_policy *p)
{
	struct sluice_engine *e = NULL;
	cr_assert_eq(sluice_engine_create(&e, p, NULL), SLUICE_OK);
	return e;
}

/* A request on method/path with up to 4 identities (NULL: absent). */
struct req {
	struct sluice_identity id[4];
	struct sluice_engine_request r;
};

static inline void req_init(struct req *q, const char *method, const char *path, const char *id0,
			    const char *id1, uint64_t now_ns)
{
	memset(q, 0, sizeof *q);
	q->id[0].bytes = id0;
	q->id[0].len = id0 != NULL ? strlen(id0) : 0;
	q->id[1].bytes = id1;
	q->id[1].len = id1 != NULL ? strlen(id1) : 0;
	q->r.method = method;
	q->r.method_len = strlen(method);
	q->r.path = path;
	q->r.path_len = strlen(path);
	q->r.identities = q->id;
	q->r.identity_count = 2;
	q->r.tier = SLUICE_POLICY_NO_TIER;
	q->r.cost = 1;
	q->r.now_ns = now_ns;
}

/* Check, then release its slots at once (a request that completes). */
static inline struct sluice_engine_decision run(struct sluice_engine *e, struct req *q)
{
	struct sluice_engine_decision d;
	cr_assert_eq(sluice_engine_check(e, &q->r, &d), SLUICE_OK);
	if (d.d.allowed && d.slot_count > 0)
		cr_assert_eq(sluice_engine_release(e, &d), SLUICE_OK);
	return d;
}

/* Used units of limit `name` for the request's key (via usage). */
static inline uint64_t used_of(struct sluice_engine *e, const struct sluice_policy_spec *spec,
			       struct req *q, const char *name)
{
	struct sluice_engine_usage u[SLUICE_POLICY_MAX_LIMITS];
	size_t n = 0;
	cr_assert_eq(sluice_engine_usage(e, &q->r, u, SLUICE_POLICY_MAX_LIMITS, &n), SLUICE_OK);
	(void)spec;
	for (size_t i = 0; i < n; i++)
		if (strcmp(u[i].name, name) == 0)
			return u[i].used;
	cr_assert_fail("no usage for %s", name);
	return 0;
}

#endif /* SLUICE_ENGINE_TEST_UTIL_H */
