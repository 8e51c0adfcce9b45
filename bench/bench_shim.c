/*
 * bench_shim.c - the residual cost of the shim itself: an empty C loop run
 * through sbench_batch(). Every other figure includes this much overhead.
 */
#include "shim.h"

static void BM_shim_empty_loop(sbench_state *st)
{
	for (uint64_t n; (n = sbench_batch(st)) != 0;)
		for (uint64_t i = 0; i < n; i++)
			sbench_keep(i);
}
SBENCH_REGISTER(BM_shim_empty_loop)
{
	(void)b;
}
