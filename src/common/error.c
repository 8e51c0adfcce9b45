/*
 * error.c - sluice_strerror(), generated from the one list in common.h.
 */
#include <sluice/common.h>

const char *sluice_strerror(int code)
{
	switch (code) {
#define SLUICE_ERROR_CASE_(name, value, msg) \
	case value:                          \
		return msg;
		SLUICE_ERRORS(SLUICE_ERROR_CASE_)
#undef SLUICE_ERROR_CASE_
	default:
		return "unknown error";
	}
}
