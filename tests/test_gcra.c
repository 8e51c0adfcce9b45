/*
 * test_gcra.c - behaviour of the GCRA cell (include/sluice/gcra.h).
 */
#include <criterion/criterion.h>
#include <sluice.h>

#define SEC 1000000000ull

Test(gcra, starts_full_and_denies_past_burst)
{
	struct sluice_rate rate;
	struct sluice_gcra cell;
	struct sluice_decision d;

	cr_assert_eq(sluice_rate_init(&rate, 10, SEC, 10), SLUICE_OK);
	sluice_gcra_init(&cell);
	for (int i = 0; i < 10; i++) {
		cr_assert(sluice_gcra_admit(&cell, &rate, 5 * SEC, 1, &d));
		cr_assert_eq(d.remaining, 9u - (unsigned)i);
	}
	cr_assert_not(sluice_gcra_admit(&cell, &rate, 5 * SEC, 1, &d));
	cr_assert_eq(d.retry_after_ns, SEC / 10);
	cr_assert_eq(d.reset_ns, SEC);
	cr_assert_eq(d.limit, 10u);
}
