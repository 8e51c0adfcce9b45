/*
 * limit_util.h - constructors of struct sluice_limit for the tests, one per
 * kind, each asserting (Criterion) that its config is accepted, and the
 * time units the tests write. Header-only; include after
 * <criterion/criterion.h> and <sluice.h>. Functions a file does not use are
 * marked unused.
 */
#ifndef SLUICE_TESTS_LIMIT_UTIL_H
#define SLUICE_TESTS_LIMIT_UTIL_H

#include <stdint.h>
#include <string.h>

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#endif

#ifndef SEC
#define SEC 1000000000ull
#endif
#ifndef MS
#define MS 1000000ull
#endif
#ifndef MIN
#define MIN (60 * SEC)
#endif

/* ---- limits ---- */

static struct sluice_limit gcra(uint64_t limit, uint64_t period_ns, uint64_t burst)
{
	struct sluice_limit l;

	memset(&l, 0, sizeof l);
	l.kind = SLUICE_LIMIT_GCRA;
	cr_assert_eq(sluice_rate_init(&l.rate, limit, period_ns, burst), SLUICE_OK);
	return l;
}

static struct sluice_limit counter(uint64_t limit, uint64_t window_ns)
{
	struct sluice_limit l;

	memset(&l, 0, sizeof l);
	l.kind = SLUICE_LIMIT_SLIDING_COUNTER;
	cr_assert_eq(sluice_window_counter_config_init(&l.counter, limit, window_ns), SLUICE_OK);
	return l;
}

static struct sluice_limit calendar(uint64_t limit, uint64_t window_ns)
{
	struct sluice_limit l;

	memset(&l, 0, sizeof l);
	l.kind = SLUICE_LIMIT_CALENDAR;
	cr_assert_eq(sluice_calendar_config_init(&l.calendar, limit, window_ns), SLUICE_OK);
	return l;
}

static struct sluice_limit slog(uint64_t limit, uint64_t window_ns)
{
	struct sluice_limit l;

	memset(&l, 0, sizeof l);
	l.kind = SLUICE_LIMIT_SLIDING_LOG;
	cr_assert_eq(sluice_window_log_config_init(&l.log, limit, window_ns), SLUICE_OK);
	return l;
}

/* N slots, leases of lease_ns (0: no expiry), denial hint retry_ns (0: the
 * default). */
static struct sluice_limit slots_retry(uint64_t n, uint64_t lease_ns, uint64_t retry_ns)
{
	struct sluice_limit l;

	memset(&l, 0, sizeof l);
	l.kind = SLUICE_LIMIT_SLOTS;
	cr_assert_eq(sluice_slots_config_init(&l.slots, n, lease_ns, retry_ns), SLUICE_OK);
	return l;
}

static struct sluice_limit slots(uint64_t n, uint64_t lease_ns)
{
	return slots_retry(n, lease_ns, 0);
}

#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#endif /* SLUICE_TESTS_LIMIT_UTIL_H */
