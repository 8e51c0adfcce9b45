/*
 * sluice.h - the umbrella header of sluice, a lock-free rate-limiting core.
 *
 * Layers, bottom up (each header documents its own contracts):
 *   sluice/common.h   error codes, struct sluice_decision, clocks
 *   sluice/gcra.h     GCRA cell: exact lock-free token bucket in 8 bytes
 *   sluice/window.h   sliding-window log (exact), sliding-window counter,
 *                     calendar windows aligned to UTC
 *   sluice/slots.h    concurrency slots: semaphore with handles and leases
 *
 * Every public header compiles as C11 and as C++.
 */
#ifndef SLUICE_H
#define SLUICE_H

#include "sluice/common.h"
#include "sluice/gcra.h"
#include "sluice/window.h"
#include "sluice/slots.h"

#endif /* SLUICE_H */
