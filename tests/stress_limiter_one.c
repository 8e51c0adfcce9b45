/*
 * stress_limiter_one.c - stress_limiter.c on a one-limit policy (its first
 * limit: 1 per 32 units, burst 4). Its admissions take the single-pass path
 * (decide_gcra1, inlined into each caller; docs/limiter.md "Hot path") and
 * meet the sweeper's tombstones there (a denial on a tombstone word, then
 * help unlink and retry); stress_limiter.c's two limits take the dry run and
 * commit path instead. Same threads, sweeper, stale clocks and exact bound
 * per key. A plain executable (runs under TSan).
 */
#define STRESS_NLIMITS 1
#include "stress_limiter.c"
