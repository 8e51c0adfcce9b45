// The public API seen from C++: every header compiles, links and runs.
#include <sluice.h>

#include <cstdio>

int main()
{
	sluice_rate rate;
	if (sluice_rate_init(&rate, 10, 1000000000ull, 10) != SLUICE_OK)
		return 1;
	sluice_gcra cell;
	sluice_gcra_init(&cell);
	sluice_decision d;
	int admitted = 0;
	for (int i = 0; i < 20; i++)
		admitted += sluice_gcra_admit(&cell, &rate, 1000, 1, &d) ? 1 : 0;
	bool ok = admitted == 10 && !d.allowed && d.retry_after_ns == 100000000ull;
	std::printf("%d passed, %d failed\n", ok ? 1 : 0, ok ? 0 : 1);
	return ok ? 0 : 1;
}
