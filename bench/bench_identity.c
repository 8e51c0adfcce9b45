/*
 * bench_identity.c - sluice_identity_extract() (include/sluice/identity.h):
 * a request's identities read as its policy declares them.
 *
 *   BM_identity_scan_baseline    the floor: find the Authorization and
 *                                X-Workspace fields of the request by a
 *                                case-insensitive scan (what the server's
 *                                fixed defaults did), no policy
 *   BM_identity_extract_defaults seed 002's scopes with their default sources
 *                                (Authorization Bearer, X-Workspace)
 *   BM_identity_extract_sources  five scopes: authorization, a cookie among
 *                                five, a query parameter with escapes,
 *                                forwarded-for through two trusted hops,
 *                                and a workspace from a map of 4096 tokens
 *
 * The request has 8 header fields (the identity fields among browser-like
 * ones); 16 tokens in turn. One thread.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sluice.h>

#include "shim.h"

#define TOKENS 16

static struct sluice_policy *defaults, *sources;
static char tok[TOKENS][24], auth[TOKENS][40];
static struct sluice_header_view headers[TOKENS][8];
static const unsigned char secret[SLUICE_IDENTITY_SECRET_MIN] = {1};

static struct sluice_policy *load(const char *text, const char *dir)
{
	struct sluice_policy *p = NULL;
	struct sluice_policy_options o = {.size = sizeof o, .base_dir = dir};
	return sluice_policy_parse(text, strlen(text), &o, &p, NULL) == SLUICE_OK ? p : NULL;
}

static int setup(void)
{
	static int rc = 1;
	if (rc != 1)
		return rc;
	char dir[] = "/tmp/sluice_bench_identity_XXXXXX", path[64];
	if (mkdtemp(dir) == NULL)
		return rc = -1;
	snprintf(path, sizeof path, "%s/tokens.map", dir);
	FILE *f = fopen(path, "w");
	if (f == NULL)
		return rc = -1;
	for (int i = 0; i < 4096; i++)
		fprintf(f, "tok_%010d ws_%d\n", i, i % 256);
	fclose(f);
	defaults = load("policy \"d\"\nscope token\nscope workspace\nlimit l per token sliding 5/1m\n", dir);
	sources = load("policy \"s\"\ntrusted-proxies 10.0.0.0/8\n"
		       "scope token from authorization Bearer\n"
		       "scope session from cookie sid\n"
		       "scope key from query api_key\n"
		       "scope ip from forwarded-for\n"
		       "scope workspace from map \"tokens.map\" key token\n"
		       "limit l per token sliding 5/1m\n",
		       dir);
	unlink(path);
	rmdir(dir);
	if (defaults == NULL || sources == NULL)
		return rc = -1;
	for (int t = 0; t < TOKENS; t++) {
		snprintf(tok[t], sizeof tok[t], "tok_%010d", t * 97);
		snprintf(auth[t], sizeof auth[t], "Bearer %.23s", tok[t]);
		static const char *const names[8] = {"Host", "User-Agent", "Accept", "Accept-Encoding",
						     "Authorization", "Cookie", "X-Forwarded-For", "X-Workspace"};
		const char *values[8] = {"api.example.com", "curl/8.5.0", "*/*", "gzip, br", auth[t],
					 "theme=dark; lang=en; sid=\"s-42\"; a=1; b=2", "198.51.100.7, 10.0.0.9",
					 "ws_7"};
		for (int h = 0; h < 8; h++)
			headers[t][h] = (struct sluice_header_view){names[h], strlen(names[h]), values[h],
								    strlen(values[h])};
	}
	return rc = 0;
}

static void run(sbench_state *st, const struct sluice_policy *p)
{
	if (setup() != 0) {
		sbench_error(st, "setup failed");
		return;
	}
	static const char target[] = "/v1/items?page=2&api_key=k%2Dabc+1&sort=asc";
	const struct sluice_identity_options o = {.size = sizeof o, .secret = secret, .secret_len = sizeof secret};
	struct sluice_identity_set set;
	uint32_t t = 0;
	for (uint64_t n; (n = sbench_batch(st)) != 0;)
		for (uint64_t i = 0; i < n; i++) {
			const struct sluice_request_view r = {target, sizeof target - 1, headers[t], 8, "10.1.2.3", 8};
			t = (t + 1) % TOKENS;
			sbench_keep(sluice_identity_extract(p, &r, &o, &set));
			sbench_keep(set.ids[0].bytes);
		}
	sbench_items(st, (int64_t)sbench_iterations(st));
}

static bool ieq(const char *a, const char *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((a[i] | 0x20) != (b[i] | 0x20))
			return false;
	return true;
}

static void BM_identity_scan_baseline(sbench_state *st)
{
	if (setup() != 0) {
		sbench_error(st, "setup failed");
		return;
	}
	uint32_t t = 0;
	for (uint64_t n; (n = sbench_batch(st)) != 0;)
		for (uint64_t i = 0; i < n; i++) {
			const struct sluice_header_view *h = headers[t];
			t = (t + 1) % TOKENS;
			const char *a = NULL, *w = NULL;
			for (int k = 0; k < 8; k++) {
				if (h[k].name_len == 13 && ieq(h[k].name, "Authorization", 13))
					a = h[k].value + 7;
				else if (h[k].name_len == 11 && ieq(h[k].name, "X-Workspace", 11))
					w = h[k].value;
			}
			sbench_keep(a);
			sbench_keep(w);
		}
	sbench_items(st, (int64_t)sbench_iterations(st));
}

static void BM_identity_extract_defaults(sbench_state *st)
{
	run(st, defaults);
}

static void BM_identity_extract_sources(sbench_state *st)
{
	run(st, sources);
}

SBENCH_REGISTER(BM_identity_scan_baseline) { (void)b; }
SBENCH_REGISTER(BM_identity_extract_defaults) { sbench_baseline(b, "BM_identity_scan_baseline"); }
SBENCH_REGISTER(BM_identity_extract_sources) { sbench_baseline(b, "BM_identity_scan_baseline"); }
