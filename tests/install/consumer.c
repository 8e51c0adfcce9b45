/*
 * consumer.c - a program built against an installed sluice, by CMake
 * (find_package(sluice), CMakeLists.txt here) and by pkg-config (.ci/run):
 * proves the installed headers, libraries, CMake package and .pc file work.
 */
#include <sluice.h>
#include <stdio.h>
#include <string.h>

/* The installed sluice/sf.h is fenced: without SLUICE_EXPERIMENTAL_API it
 * declares nothing. */
#ifdef SLUICE_SF_NODES_MAX
#error "sluice/sf.h declared its experimental API without SLUICE_EXPERIMENTAL_API"
#endif

int main(void)
{
	struct sluice_rate rate;
	struct sluice_gcra cell;
	struct sluice_decision d;
	int failed = 0;

	failed += sluice_rate_init(&rate, 0, SLUICE_NS_PER_SEC, 1) != SLUICE_EINVAL;
	failed += strcmp(sluice_strerror(SLUICE_EINVAL), "invalid argument") != 0;
	failed += sluice_rate_init(&rate, 2, SLUICE_NS_PER_SEC, 2) != SLUICE_OK;
	sluice_gcra_init(&cell);
	failed += !sluice_gcra_admit(&cell, &rate, 1000, 2, &d) || d.remaining != 0;
	failed += sluice_gcra_admit(&cell, &rate, 1000, 1, &d) || d.retry_after_ns != SLUICE_NS_PER_SEC / 2;
	printf("sluice %d.%d.%d consumer: %d passed, %d failed\n", SLUICE_VERSION_MAJOR,
	       SLUICE_VERSION_MINOR, SLUICE_VERSION_PATCH, failed ? 0 : 1, failed ? 1 : 0);
	return failed ? 1 : 0;
}
