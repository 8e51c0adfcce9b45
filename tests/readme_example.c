/* The C example of README.md (keep the two identical): built and run by ctest. */
#include <sluice.h>
#include <stdio.h>

int main(void)
{
	struct sluice_rate rate;  /* 10 per second, bursts of up to 5; one per limit */
	struct sluice_gcra cell;  /* per-key state: 8 bytes, caller-owned, lock-free */
	struct sluice_decision d; /* verdict, remaining, reset, retry-after */
	int rc = sluice_rate_init(&rate, 10, SLUICE_NS_PER_SEC, 5);

	if (rc != SLUICE_OK) {
		fprintf(stderr, "sluice_rate_init: %s\n", sluice_strerror(rc));
		return 1;
	}
	sluice_gcra_init(&cell); /* starts full */
	uint64_t t0 = sluice_monotonic_ns();
	int admitted = 0;
	for (int i = 0; i < 6; i++) /* six requests at once: five pass */
		admitted += sluice_gcra_admit(&cell, &rate, t0, 1, &d);
	printf("admitted %d of 6, retry after %llu ms\n", admitted,
	       (unsigned long long)(d.retry_after_ns / 1000000));
	/* 100 ms later one token has come back. */
	bool again = sluice_gcra_admit(&cell, &rate, t0 + d.retry_after_ns, 1, &d);
	return admitted == 5 && again ? 0 : 1;
}
