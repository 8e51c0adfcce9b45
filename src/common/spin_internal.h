/*
 * spin_internal.h - the back-off used by sluice's few waiting loops (the
 * sliding-window log's writer lock). Not installed; not part of the API.
 */
#ifndef SLUICE_SPIN_INTERNAL_H
#define SLUICE_SPIN_INTERNAL_H

#include <sched.h>

/* One step of a spin-wait: a CPU pause for the first 64 steps, then
 * sched_yield() per step. Reaching the yield means the thread we wait for was
 * preempted inside a critical section of a few dozen instructions; yielding
 * lets it run (on 2 cores with more runnable threads than cores, pure
 * spinning would burn whole time slices). */
static inline void sluice__spin(unsigned *steps)
{
	if (*steps < 64) {
		(*steps)++;
#if defined(__x86_64__) || defined(__i386__)
		__builtin_ia32_pause();
#elif defined(__aarch64__)
		__asm__ volatile("yield" ::: "memory");
#endif
	} else {
		sched_yield();
	}
}

#endif /* SLUICE_SPIN_INTERNAL_H */
