/* SPDX-License-Identifier: ISC */
/*
 * fuzz_request.c - libFuzzer target: one protocol line, as it is, through
 * the request parser.
 *
 * The whole input is the line (no header, no framing), so every mutation
 * lands in the JSON and in the rules of hello, ping, subscribe and the
 * events.  Its seeds (tests/fuzz/corpus/request/) are mostly hello and
 * subscribe lines; the checks are those of fuzz_check.c, the same as for
 * fuzz_lines, and an accepted event is folded on its own.
 */
#include <stdint.h>

#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_fold fold;

	fuzz_fold_init(&fold);
	fuzz_line((const char *)data, size, &fold);
	fuzz_fold_run(&fold);
	return 0;
}
