/*
 * sluice.h - the umbrella header of sluice, a lock-free rate-limiting core.
 *
 * Layers, bottom up (each header documents its own contracts, including what
 * memory ordering a caller may rely on):
 *   sluice/common.h   error codes, struct sluice_decision, fail modes, clocks
 *   sluice/gcra.h     GCRA cell: exact lock-free token bucket in 8 bytes
 *   sluice/window.h   sliding-window log (exact), sliding-window counter,
 *                     calendar windows aligned to UTC
 *   sluice/slots.h    concurrency slots: semaphore with handles and leases
 *   sluice/limiter.h  keyed limiter: per-key limits in an RCU hash table
 *   sluice/policy.h   policies: scopes, limits, routes, tiers, config parser
 *   sluice/engine.h   policy engine: a policy bound to keyed limiters
 *   sluice/http.h     rate-limit response headers and 429 bodies (server)
 *   sluice/sf.h       RFC 9651 structured fields: parser and serializer;
 *                     experimental, declared only where the includer defines
 *                     SLUICE_EXPERIMENTAL_API (see the header)
 *   sluice/template.h response templates: refusal bodies with placeholders
 *   sluice/client.h   parsing those headers, Retry-After, backoff (client)
 *   sluice/redis.h    the same decisions fleet-wide on Redis (hiredis)
 *   sluice/shm.h      the same decisions across processes in shared memory
 *
 * Every public header compiles as C11 and as C++.
 */
#ifndef SLUICE_H
#define SLUICE_H

#include "sluice/common.h"
#include "sluice/gcra.h"
#include "sluice/window.h"
#include "sluice/slots.h"
#include "sluice/limiter.h"
#include "sluice/snapshot.h"
#include "sluice/policy.h"
#include "sluice/engine.h"
#include "sluice/http.h"
#include "sluice/sf.h"
#include "sluice/template.h"
#include "sluice/client.h"
#include "sluice/redis.h"
#include "sluice/shm.h"

#endif /* SLUICE_H */
