/*
 * fuzz/fuzz.h - the libFuzzer entry points, and a byte reader that turns
 * fuzz input into integers (zero once the input is exhausted).
 */
#ifndef SLUICE_FUZZ_H
#define SLUICE_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

struct fuzz_input {
	const uint8_t *data;
	size_t size;
};

static inline uint64_t fuzz_u64(struct fuzz_input *in, unsigned bytes)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < bytes; i++) {
		v <<= 8;
		if (in->size > 0) {
			v |= *in->data++;
			in->size--;
		}
	}
	return v;
}

static inline uint8_t fuzz_u8(struct fuzz_input *in)
{
	return (uint8_t)fuzz_u64(in, 1);
}

#endif /* SLUICE_FUZZ_H */
