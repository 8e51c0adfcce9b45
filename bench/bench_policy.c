/*
 * bench_policy.c - route matching: the precompiled trie of
 * sluice_policy_match() against the reference linear scan
 * (tests/route_naive.h: rules sorted by specificity, compared one by
 * one with a strcmp-like segment compare), on seed 004's endpoint table,
 * seed 000's routes and a synthetic table of 256 rules.
 *
 * Each iteration matches one request from a fixed mix (every listed route
 * with concrete ids, plus unlisted routes that fall to the default), cycled
 * in order, so both matchers see the same requests.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sluice/policy.h>

#include "route_naive.h"
#include "shim.h"

struct request {
	const char *method;
	const char *path;
	size_t method_len, path_len;
};

struct fixture {
	struct sluice_policy *policy;
	struct naive_table table;
	struct request req[64];
	uint32_t nreq;
};

static struct fixture seed004, seed000, seed000n, large;

static const char *const seed004_requests[][2] = {
	{"GET", "/v1/analytics"},
	{"GET", "/v1/analytics/daily"},
	{"GET", "/v1/analytics/by-user"},
	{"POST", "/v1/leads/add_to_campaign"},
	{"GET", "/v1/campaigns"},
	{"GET", "/v1/campaigns/cmp_8f2a91"},
	{"GET", "/v1/campaigns/cmp_8f2a91/statistics"},
	{"GET", "/v1/users"},
	{"GET", "/v1/users/usr_1234"},
	{"GET", "/v1/teams/me"},
	{"GET", "/v1/teams/tm_42"},            /* default */
	{"DELETE", "/v1/campaigns/cmp_8f2a91"}, /* default */
	{"GET", "/v1/leads?page=2"},            /* default */
	{"GET", "/v1/campaigns/cmp_8f2a91/statistics?from=2026-01-01"},
	{"POST", "/v1/webhooks"},               /* default */
	{"GET", "/v1/users/usr_1234/"},
};

static const char *const seed000_requests[][2] = {
	{"POST", "/auth/login"},
	{"POST", "/auth/signup"},
	{"POST", "/auth/password-reset"},
	{"POST", "/auth/token/refresh"},
	{"GET", "/campaigns/c_77/media-buy-status"},
	{"GET", "/discovery/d_5/discover-products"},
	{"GET", "/storefront/readiness"},
	{"POST", "/measurement-data/sync"},
};

/* The same requests spelled so that each needs normalizing before it
 * matches (dot segments, escapes of unreserved bytes), but one. */
static const char *const seed000_normalized_requests[][2] = {
	{"POST", "/auth/./login"},
	{"POST", "/auth/x/../signup"},
	{"POST", "/auth/%70assword-reset"},
	{"POST", "/auth/token/./refresh"},
	{"GET", "/campaigns/c_77/media-buy-status/."},
	{"GET", "/discovery/d_5/%64iscover-products"},
	{"GET", "/storefront/%2E/readiness"},
	{"POST", "/measurement-data/sync"},
};

static int load(struct fixture *f, const char *text, size_t len)
{
	struct sluice_policy_error e;
	if (sluice_policy_parse(text, len, NULL, &f->policy, &e) != SLUICE_OK) {
		fprintf(stderr, "bench_policy: %d:%d: %s\n", e.line, e.column, e.message);
		return -1;
	}
	naive_build(sluice_policy_spec(f->policy), &f->table);
	return 0;
}

static int load_file(struct fixture *f, const char *name)
{
	char path[512];
	static char buf[1 << 16];
	snprintf(path, sizeof(path), "%s/docs/policies/%s", SLUICE_SOURCE_DIR, name);
	FILE *file = fopen(path, "rb");
	if (file == NULL)
		return -1;
	size_t n = fread(buf, 1, sizeof(buf), file);
	fclose(file);
	return load(f, buf, n);
}

static void add_requests(struct fixture *f, const char *const (*r)[2], size_t n)
{
	for (size_t i = 0; i < n && f->nreq < 64; i++) {
		struct request *q = &f->req[f->nreq++];
		q->method = r[i][0];
		q->path = r[i][1];
		q->method_len = strlen(q->method);
		q->path_len = strlen(q->path);
	}
}

/* 256 rules: {GET,POST} /api/v<k>/res<r>[/:id]/<sub> for 16 resources (one
 * class each) x 8 shapes x 2 methods. */
static int load_large(struct fixture *f)
{
	static char text[1 << 16];
	static char paths[64][96];
	static const char *const subs[] = {"", "/items", "/events", "/stats", "/owners", "/tags", "/audit", "/export"};
	size_t n = (size_t)snprintf(text, sizeof(text), "policy \"large\"\nscope key\n");
	for (int r = 0; r < 16; r++)
		for (int s = 0; s < 16; s++)
			n += (size_t)snprintf(text + n, sizeof(text) - n, "class r%d match %s /api/v%d/res%d%s%s\n",
					      r, s & 1 ? "POST" : "GET", r % 3 + 1, r,
					      s / 2 < 4 ? "/:id" : "", subs[s / 2]);
	n += (size_t)snprintf(text + n, sizeof(text) - n, "limit l per key rate 1/1s\n");
	if (load(f, text, n) != 0)
		return -1;
	for (int i = 0; i < 64; i++) {
		int r = (i * 7) % 16, s = (i * 5) % 16;
		snprintf(paths[i], sizeof(paths[i]), "/api/v%d/res%d%s%s", r % 3 + 1, r, s / 2 < 4 ? "/x123" : "",
			 subs[s / 2]);
		struct request *q = &f->req[f->nreq++];
		q->method = (i % 3 == 0) ? "POST" : "GET";
		q->path = paths[i];
		q->method_len = strlen(q->method);
		q->path_len = strlen(q->path);
	}
	return 0;
}

static int setup(void)
{
	static int done, rc;
	if (done)
		return rc;
	done = 1;
	if (load_file(&seed004, "seed004.policy") != 0 || load_file(&seed000, "seed000.policy") != 0 ||
	    load_file(&seed000n, "seed000.policy") != 0 ||
	    load_large(&large) != 0)
		return rc = -1;
	add_requests(&seed004, seed004_requests, sizeof(seed004_requests) / sizeof(seed004_requests[0]));
	add_requests(&seed000, seed000_requests, sizeof(seed000_requests) / sizeof(seed000_requests[0]));
	add_requests(&seed000n, seed000_normalized_requests,
		     sizeof(seed000_normalized_requests) / sizeof(seed000_normalized_requests[0]));
	/* each spelling lands where its plain form does */
	for (uint32_t i = 0; i < seed000.nreq; i++) {
		const struct request *a = &seed000.req[i], *b = &seed000n.req[i];
		if (sluice_policy_match(seed000.policy, a->method, a->method_len, a->path, a->path_len) !=
		    sluice_policy_match(seed000n.policy, b->method, b->method_len, b->path, b->path_len))
			return rc = -1;
	}
	return rc = 0;
}

static void run_trie(sbench_state *st, struct fixture *f)
{
	if (setup() != 0) {
		sbench_error(st, "cannot load the policies");
		return;
	}
	uint32_t k = 0;
	for (uint64_t n; (n = sbench_batch(st)) != 0;)
		for (uint64_t i = 0; i < n; i++) {
			const struct request *q = &f->req[k];
			k = k + 1 == f->nreq ? 0 : k + 1;
			sbench_keep(sluice_policy_match(f->policy, q->method, q->method_len, q->path, q->path_len));
		}
	sbench_items(st, (int64_t)sbench_iterations(st));
}

static void run_naive(sbench_state *st, struct fixture *f)
{
	if (setup() != 0) {
		sbench_error(st, "cannot load the policies");
		return;
	}
	uint32_t k = 0;
	for (uint64_t n; (n = sbench_batch(st)) != 0;)
		for (uint64_t i = 0; i < n; i++) {
			const struct request *q = &f->req[k];
			k = k + 1 == f->nreq ? 0 : k + 1;
			sbench_keep(naive_match(&f->table, q->method, q->method_len, q->path, q->path_len));
		}
	sbench_items(st, (int64_t)sbench_iterations(st));
}

static void BM_policy_match_seed004_naive(sbench_state *st) { run_naive(st, &seed004); }
static void BM_policy_match_seed004_trie(sbench_state *st) { run_trie(st, &seed004); }
static void BM_policy_match_seed000_naive(sbench_state *st) { run_naive(st, &seed000); }
static void BM_policy_match_seed000_trie(sbench_state *st) { run_trie(st, &seed000); }
static void BM_policy_match_seed000_normalized(sbench_state *st) { run_trie(st, &seed000n); }
static void BM_policy_match_256rules_naive(sbench_state *st) { run_naive(st, &large); }
static void BM_policy_match_256rules_trie(sbench_state *st) { run_trie(st, &large); }

SBENCH_REGISTER(BM_policy_match_seed004_naive) { (void)b; }
SBENCH_REGISTER(BM_policy_match_seed004_trie) { sbench_baseline(b, "BM_policy_match_seed004_naive"); }
SBENCH_REGISTER(BM_policy_match_seed000_naive) { (void)b; }
SBENCH_REGISTER(BM_policy_match_seed000_trie) { sbench_baseline(b, "BM_policy_match_seed000_naive"); }
SBENCH_REGISTER(BM_policy_match_seed000_normalized) { sbench_baseline(b, "BM_policy_match_seed000_trie"); }
SBENCH_REGISTER(BM_policy_match_256rules_naive) { (void)b; }
SBENCH_REGISTER(BM_policy_match_256rules_trie) { sbench_baseline(b, "BM_policy_match_256rules_naive"); }

/* Loading: parse, validate and compile seed 004 (not a hot path; for scale). */
static void BM_policy_parse_seed004(sbench_state *st)
{
	char path[512];
	static char buf[1 << 16];
	snprintf(path, sizeof(path), "%s/docs/policies/seed004.policy", SLUICE_SOURCE_DIR);
	FILE *file = fopen(path, "rb");
	if (file == NULL) {
		sbench_error(st, "cannot open seed004.policy");
		return;
	}
	size_t len = fread(buf, 1, sizeof(buf), file);
	fclose(file);
	for (uint64_t n; (n = sbench_batch(st)) != 0;)
		for (uint64_t i = 0; i < n; i++) {
			struct sluice_policy *p = NULL;
			sbench_keep(sluice_policy_parse(buf, len, NULL, &p, NULL));
			sluice_policy_destroy(p);
		}
}
SBENCH_REGISTER(BM_policy_parse_seed004) { (void)b; }
