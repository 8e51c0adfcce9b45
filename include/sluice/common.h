/*
 * sluice/common.h - types shared by every sluice primitive: error codes, the
 * decision a limit returns, the fail mode, time and layout constants.
 *
 * Conventions used throughout the API:
 *   - Functions that can fail return int: 0 (SLUICE_OK) or a negative
 *     SLUICE_E* code. sluice_strerror() names every code. Codes are stable
 *     once published; new ones are only appended.
 *   - An admission verdict is not an error: a cell's admit returns bool and
 *     fills a struct sluice_decision; keyed and policy calls return 0 or
 *     SLUICE_E* and put the verdict in the decision they fill.
 *   - Every time is a uint64_t count of nanoseconds passed in by the caller.
 *     Which clock is the caller's choice, as long as one limit always sees
 *     the same one; calendar windows and override expiries are defined on
 *     Unix time (CLOCK_REALTIME), everything else only needs a clock that
 *     does not run backwards often. Durations are nanoseconds too.
 *
 * Memory ordering: nothing in this header has shared state. A struct
 * sluice_decision is plain data owned by whoever passed it in; the functions
 * below are thread-safe and order no memory.
 */
#ifndef SLUICE_COMMON_H
#define SLUICE_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The version of these headers; the shared library's SONAME is
 * libsluice.so.<MAJOR> (the major changes with the ABI: docs/build.md). */
#define SLUICE_VERSION_MAJOR 2
#define SLUICE_VERSION_MINOR 0
#define SLUICE_VERSION_PATCH 0

/* Exported symbols. The library is built with -fvisibility=hidden. */
#if defined(__GNUC__) || defined(__clang__)
#define SLUICE_API __attribute__((visibility("default")))
#else
#define SLUICE_API
#endif

/*
 * Cache line used to separate hot words written by different threads.
 * 64 bytes on x86-64 and most Arm cores; define it to 128 where adjacent-line
 * prefetch pairs lines (e.g. Intel since Sandy Bridge under heavy contention,
 * Apple and Neoverse V-series parts).
 */
#ifndef SLUICE_CACHELINE
#define SLUICE_CACHELINE 64
#endif

/*
 * Atomic members of caller-owned cells. In C they are C11 _Atomic objects.
 * The header also compiles as C++ (where _Atomic is not a keyword before
 * C++23): there the member is a plain integer of the same size and alignment,
 * and C++ callers must only pass the cell to sluice functions, never touch it.
 */
#ifdef __cplusplus
#define SLUICE_ATOMIC(T) T
#else
#define SLUICE_ATOMIC(T) _Atomic T
#endif

/* "Never": retry_after_ns of a request that cannot ever be admitted (for
 * example cost > burst), and the largest representable time. */
#define SLUICE_NEVER UINT64_MAX

#define SLUICE_NS_PER_SEC 1000000000ull

/*
 * Error codes. X(name, value, message). Append only: values are ABI.
 * SLUICE_EFULL is returned only by a snapshot restore that does not fit the
 * limiter's key budget (elsewhere a budget that is exhausted yields a
 * degraded decision, a cell with no free slot a denial).
 */
#define SLUICE_ERRORS(X)                                                            \
	X(SLUICE_OK, 0, "success")                                                   \
	X(SLUICE_EINVAL, -1, "invalid argument")                                     \
	X(SLUICE_ERANGE, -2, "value outside the representable range")                \
	X(SLUICE_ENOMEM, -3, "out of memory")                                        \
	X(SLUICE_EFULL, -4, "capacity exhausted")                                    \
	X(SLUICE_EKEY, -5, "key missing, empty where forbidden, or too long")        \
	X(SLUICE_ETRUNC, -6, "output buffer too small; output truncated")            \
	X(SLUICE_ESYNTAX, -7, "syntax error in input")                               \
	X(SLUICE_ENOTFOUND, -8, "not found")                                         \
	X(SLUICE_EDOUBLE, -9, "handle already released")                             \
	X(SLUICE_ESTALE, -10, "handle does not belong here or has expired")          \
	X(SLUICE_ETIMEDOUT, -11, "deadline passed")                                  \
	X(SLUICE_EBACKEND, -12, "backend unavailable")                               \
	X(SLUICE_EPROTO, -13, "protocol error from backend")                         \
	X(SLUICE_ETOOBIG, -14, "configuration exceeds a documented ceiling")         \
	X(SLUICE_ESTATE, -15, "operation not valid in the current state")            \
	X(SLUICE_EUNSUPPORTED, -16, "not supported by this build or backend")        \
	X(SLUICE_ETHREAD, -17, "thread registration failed")                          \
	X(SLUICE_ECORRUPT, -18, "stored state corrupt, truncated or of another format") \
	X(SLUICE_EIO, -19, "file system call failed (errno tells which)")

enum sluice_error {
#define SLUICE_ERROR_ENUM_(name, value, msg) name = value,
	SLUICE_ERRORS(SLUICE_ERROR_ENUM_)
#undef SLUICE_ERROR_ENUM_
};

/* Static text for a SLUICE_E* code (or "unknown error" for any other int).
 * Thread-safe; never returns NULL. */
SLUICE_API const char *sluice_strerror(int code);

/* Why a decision denied (or, for an admitted request, SLUICE_REASON_NONE). */
enum sluice_reason {
	SLUICE_REASON_NONE = 0,        /* admitted */
	SLUICE_REASON_RATE = 1,        /* a rate limit (GCRA, sliding window) */
	SLUICE_REASON_QUOTA = 2,       /* a calendar quota (per day, per hour) */
	SLUICE_REASON_CONCURRENCY = 3, /* no free concurrency slot */
	SLUICE_REASON_CAPACITY = 4,    /* could not evaluate (key budget, memory,
					* backend down) and failed closed */
	SLUICE_REASON_NEVER = 5,       /* cost exceeds what the limit can ever admit,
					* or the clock's horizon is reached */
	SLUICE_REASON_IDENTITY = 6,    /* a limit that applies is keyed by a scope
					* the policy makes "required" and the request
					* carries no identity for it */
};

/*
 * What a limiter or an engine does when it cannot evaluate a request (key
 * budget exhausted, allocation failure, backend down): the decision it then
 * returns has degraded set. One enum for the keyed limiter's options, the
 * Redis backend's and a policy's "fail open|closed".
 */
enum sluice_fail_mode {
	SLUICE_FAIL_OPEN = 0,   /* admit: allowed = true, reason NONE */
	SLUICE_FAIL_CLOSED = 1, /* deny: allowed = false, reason CAPACITY */
};

/*
 * The answer of every limit kind, single cell or whole policy.
 *
 *   allowed         the verdict.
 *   degraded        the limiter could not evaluate the limits (table full,
 *                   allocation failure, backend down) and applied its
 *                   configured fail mode. A server should omit rate-limit
 *                   headers for such an answer.
 *   reason          enum sluice_reason.
 *   limit_index     index, in the caller's list of limits (the keyed
 *                   limiter's array, the policy's limits), of the limit that
 *                   governed the answer: the one that denied, else the one
 *                   with the least remaining. 0 for a single cell; UINT32_MAX
 *                   when no limit applied to an engine request.
 *   limit           the governing limit's quota (units per window or
 *                   period; slots for a concurrency limit).
 *   remaining       whole units available right after this decision.
 *   reset_ns        nanoseconds until the governing limit is back to full
 *                   (calendar windows: until the next boundary;
 *                   concurrency slots: 0, or the retry hint on denial).
 *   retry_after_ns  0 when allowed; else the wait after which this same
 *                   request would be admitted if nothing else happened, or
 *                   SLUICE_NEVER.
 */
struct sluice_decision {
	bool allowed;
	bool degraded;
	uint8_t reason;
	uint8_t reserved_;
	uint32_t limit_index;
	uint64_t limit;
	uint64_t remaining;
	uint64_t reset_ns;
	uint64_t retry_after_ns;
};

/* Nanoseconds of CLOCK_MONOTONIC (clock_gettime, served by the vDSO on Linux
 * x86-64 and arm64: no syscall); 0 if the clock cannot be read. For the
 * convenience *_now calls; the explicit-time calls are the core of the API. */
SLUICE_API uint64_t sluice_monotonic_ns(void);

/* Nanoseconds of CLOCK_REALTIME (Unix time), for calendar windows; 0 if the
 * clock cannot be read. */
SLUICE_API uint64_t sluice_realtime_ns(void);

#ifdef __cplusplus
}
#endif

#endif /* SLUICE_COMMON_H */
