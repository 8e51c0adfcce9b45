/*
 * match_driver.c - instruction counts of sluice_policy_match() under
 * callgrind, which are stable on a loaded machine where wall times are not.
 * Not built by CMake; docs/benchmarks.md ("Policy: route matching") has the
 * commands. Loads docs/policies/seed000.policy and matches argv[2]'s request
 * set (plain or normalized: the two sets of bench/bench_policy.c) 100,000
 * times; callgrind's count for sluice_policy_match (inclusive) divided by
 * the calls is the cost per match.
 */
#include <stdio.h>
#include <string.h>

#include <sluice/policy.h>

static const char *const plain[][2] = {
	{"POST", "/auth/login"},
	{"POST", "/auth/signup"},
	{"POST", "/auth/password-reset"},
	{"POST", "/auth/token/refresh"},
	{"GET", "/campaigns/c_77/media-buy-status"},
	{"GET", "/discovery/d_5/discover-products"},
	{"GET", "/storefront/readiness"},
	{"POST", "/measurement-data/sync"},
};

static const char *const normalized[][2] = {
	{"POST", "/auth/./login"},
	{"POST", "/auth/x/../signup"},
	{"POST", "/auth/%70assword-reset"},
	{"POST", "/auth/token/./refresh"},
	{"GET", "/campaigns/c_77/media-buy-status/."},
	{"GET", "/discovery/d_5/%64iscover-products"},
	{"GET", "/storefront/%2E/readiness"},
	{"POST", "/measurement-data/sync"},
};

int main(int argc, char **argv)
{
	static char text[1 << 16];
	if (argc < 3)
		return 2;
	FILE *f = fopen(argv[1], "rb");
	if (f == NULL)
		return 2;
	size_t n = fread(text, 1, sizeof(text), f);
	fclose(f);
	struct sluice_policy *p = NULL;
	if (sluice_policy_parse(text, n, NULL, &p, NULL) != SLUICE_OK)
		return 1;
	const char *const(*set)[2] = strcmp(argv[2], "normalized") == 0 ? normalized : plain;
	long sum = 0;
	for (int r = 0; r < 100000; r++)
		for (int i = 0; i < 8; i++)
			sum += sluice_policy_match(p, set[i][0], strlen(set[i][0]), set[i][1], strlen(set[i][1]));
	printf("%ld\n", sum);
	sluice_policy_destroy(p);
	return 0;
}
