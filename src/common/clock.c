/*
 * clock.c - the convenience clock readers. clock_gettime() on these clocks
 * is served by the vDSO on Linux x86-64 and arm64: no syscall.
 */
#include <sluice/common.h>

#include <time.h>

static uint64_t read_clock(clockid_t id)
{
	struct timespec ts;

	if (clock_gettime(id, &ts) != 0)
		return 0;
	return (uint64_t)ts.tv_sec * SLUICE_NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

uint64_t sluice_monotonic_ns(void)
{
	return read_clock(CLOCK_MONOTONIC);
}

uint64_t sluice_realtime_ns(void)
{
	return read_clock(CLOCK_REALTIME);
}
