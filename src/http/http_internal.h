/*
 * http_internal.h - rules shared by the renderers of the http layer
 * (http.c, template.c). Not installed.
 */
#ifndef SLUICE_HTTP_INTERNAL_H
#define SLUICE_HTTP_INTERNAL_H

#include <sluice/common.h>

/*
 * The wait a denial asks for, in units of unit_ns: wait_ns rounded up (a
 * client that waits the rendered time never arrives before the limiter
 * would admit it), at least 1 (a denial never says "retry now"), clamped to
 * 999,999,999,999,999 (SLUICE_NEVER included). The one rule behind
 * Retry-After, retryAfterSec and the template's {retry_after_s} and
 * {retry_after_ms}.
 */
uint64_t sluice__http_wait_units(uint64_t wait_ns, uint64_t unit_ns);

#endif /* SLUICE_HTTP_INTERNAL_H */
