/* SPDX-License-Identifier: ISC */
/*
 * fuzz_lines.c - libFuzzer target: a connection's byte stream through the
 * framer, every line through the request parser, the accepted events
 * through the fold.
 *
 * Input layout: a 4-byte header, then the stream.
 *
 *   byte 0     the line limit: (b & 7) picks from max_lines[] below, so most
 *              inputs run with the daemon's default and some with tiny
 *              limits that make the over-long paths busy
 *   bytes 1-3  three chunk sizes, used in turn: (b & 63) bytes, or all
 *              that is left when that is 0 ('@' is 0x40: "@@@@" means the
 *              default limit and the whole stream as one chunk)
 *
 * Seeds in tests/fuzz/corpus/lines/ start with such a header.  Each chunk
 * is copied into its own exact-size heap block and freed once the framer
 * is done with it, as a socket read would be, so a framer that kept a
 * pointer into an old chunk is caught by ASan.
 *
 * Besides the checks of fuzz_check.c, the framer's output is compared with
 * a plain reference: split the whole stream at each "\n", drop one "\r"
 * before it, and a line longer than the limit is one "too long"; a
 * trailing piece without a newline is one "too long" when it exceeds the
 * limit by more than one byte, or by one that is not a CR (the framer may
 * hold one CR more), else nothing.  The two must agree whatever the chunk sizes were.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "framer.h"
#include "fuzz_check.h"

#define HEADER 4

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Line limits byte 0 chooses from; 65536 is the daemon's default. */
static const size_t max_lines[8] = {65536, 65536, 65536, 65536, 1024, 256, 17, 1};

/* One framer result as the reference predicts it: a line or "too long". */
struct expect {
	const uint8_t *data; /* NULL for too long */
	size_t len;
};

/* Fill out with the reference framing of s[0..n); returns how many results. */
static size_t reference_frames(const uint8_t *s, size_t n, size_t max_line, struct expect *out)
{
	size_t k = 0, start = 0;

	for (size_t i = 0; i < n; i++) {
		if (s[i] != '\n')
			continue;
		size_t body = i - start;
		if (body > 0 && s[i - 1] == '\r')
			body--;
		out[k].data = body > max_line ? NULL : s + start;
		out[k].len = body;
		k++;
		start = i + 1;
	}
	/* One byte over is held only when it may be a CR's: a CR. */
	if (n - start > max_line + 1 || (n - start == max_line + 1 && s[n - 1] != '\r')) {
		out[k].data = NULL;
		out[k].len = 0;
		k++;
	}
	return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct framer fr;
	struct fuzz_fold fold;
	struct expect *want;
	size_t n_want, got = 0, off = HEADER, turn = 0;

	if (size < HEADER)
		return 0;
	const uint8_t *stream = data + HEADER;
	size_t n = size - HEADER;
	size_t max_line = max_lines[data[0] & 7];

	/* At most one result per byte, plus the trailing piece. */
	want = calloc(n + 1, sizeof(*want));
	if (want == NULL)
		abort();
	n_want = reference_frames(stream, n, max_line, want);

	framer_init(&fr, max_line);
	fuzz_fold_init(&fold);
	while (off < size) {
		size_t step = data[1 + turn % 3] & 63;
		turn++;
		if (step == 0 || step > size - off)
			step = size - off;
		char *chunk = malloc(step);
		if (chunk == NULL)
			abort();
		memcpy(chunk, data + off, step);
		off += step;

		size_t used = 0;
		while (used < step) {
			enum framer_status st;
			struct frame f;
			size_t took = framer_scan(&fr, chunk + used, step - used, &st, &f);
			FUZZ_ASSERT(took > 0 && took <= step - used, "framer took %zu of %zu", took,
			            step - used);
			used += took;
			if (st == FRAMER_MORE)
				continue;
			FUZZ_ASSERT(got < n_want, "framer gave result %zu, the reference has %zu",
			            got, n_want);
			const struct expect *e = &want[got++];
			if (st == FRAMER_TOO_LONG) {
				FUZZ_ASSERT(e->data == NULL,
				            "result %zu: framer says too long, "
				            "the reference a line of %zu bytes",
				            got - 1, e->len);
				continue;
			}
			FUZZ_ASSERT(st == FRAMER_LINE, "framer status %d", (int)st);
			FUZZ_ASSERT(e->data != NULL,
			            "result %zu: framer gave a line of %zu bytes, "
			            "the reference says too long",
			            got - 1, f.len);
			FUZZ_ASSERT(f.len == e->len &&
			                (f.len == 0 || memcmp(f.data, e->data, f.len) == 0),
			            "result %zu: framer line of %zu bytes, the reference %zu",
			            got - 1, f.len, e->len);
			fuzz_line(f.data, f.len, &fold);
		}
		free(chunk);
	}
	FUZZ_ASSERT(got == n_want, "framer gave %zu results, the reference %zu", got, n_want);
	FUZZ_ASSERT(framer_partial(&fr) == (n > 0 && stream[n - 1] != '\n'),
	            "framer_partial wrong at the end of the stream");
	framer_fini(&fr);
	free(want);
	fuzz_fold_run(&fold);
	return 0;
}
