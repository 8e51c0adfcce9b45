/*
 * check.h - the one helper the examples share: CHECK(cond) prints the
 * failed condition and counts it; CHECK_RC(call) does the same for a
 * function that returns 0 or a SLUICE_E* code, naming the code.
 * Each example ends with `return check_exit("name");`: 0 when every check
 * held, 1 otherwise (ctest runs each example and looks at its exit status).
 */
#ifndef SLUICE_EXAMPLES_CHECK_H
#define SLUICE_EXAMPLES_CHECK_H

#include <sluice.h>
#include <stdio.h>

static int check_failures;

#define CHECK(cond)                                                                    \
	do {                                                                           \
		if (!(cond)) {                                                         \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, \
				#cond);                                                \
			check_failures++;                                              \
		}                                                                      \
	} while (0)

#define CHECK_RC(call)                                                                 \
	do {                                                                           \
		int check_rc_ = (call);                                                \
		if (check_rc_ != SLUICE_OK) {                                          \
			fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call,  \
				sluice_strerror(check_rc_));                           \
			check_failures++;                                              \
		}                                                                      \
	} while (0)

static inline int check_exit(const char *name)
{
	printf("%s: %s\n", name, check_failures == 0 ? "ok" : "FAILED");
	return check_failures == 0 ? 0 : 1;
}

#endif /* SLUICE_EXAMPLES_CHECK_H */
