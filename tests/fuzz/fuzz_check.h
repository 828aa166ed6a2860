/* SPDX-License-Identifier: ISC */
/*
 * fuzz_check.h - what the fuzz targets check about each line they parse.
 *
 * The fuzz targets (tests/fuzz/fuzz_*.c) hand every protocol line to
 * fuzz_line(), which parses it the way the daemon does and then checks
 * the promises of lib/request.h and docs/PROTOCOL.md that hold whatever
 * the input was: an error has a known code, a short valid UTF-8 message
 * and a well-formed id or none, and turns into a reply line that is valid
 * JSON; an accepted request has the members its kind promises; an
 * accepted event's canonical form parses back to an equal event with the
 * same canonical form.  Accepted events can be kept in a struct fuzz_fold
 * and folded as one order by fuzz_fold_run(), which checks that the read
 * model does not depend on the order the events came in, and that folding
 * on from the walk saved after the first half of them (model_fold_from)
 * gives the same.
 *
 * A broken promise aborts the process with a message on stderr, which
 * libFuzzer records as a crash (the input is saved as crash-<sha1>).
 * Nothing here reads a clock: "now" is fixed at FUZZ_NOW_MS.
 */
#ifndef OT_FUZZ_CHECK_H
#define OT_FUZZ_CHECK_H

#include <stddef.h>
#include <stdint.h>

#include "request.h"

#define FUZZ_NOW_MS   INT64_C(1796083200000) /* 2026-12-01T00:00:00Z */
#define FUZZ_FOLD_MAX 64                     /* events kept for one fold */

/* Abort with a message when cond is false; libFuzzer keeps the input. */
#define FUZZ_ASSERT(cond, ...)                                                                     \
	do {                                                                                       \
		if (!(cond))                                                                       \
			fuzz_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);                         \
	} while (0)

/* Events accepted so far, folded together as one order. */
struct fuzz_fold {
	struct request rq[FUZZ_FOLD_MAX]; /* each owns its JSON tree */
	size_t n;
};

/* Print where and what failed, then abort. */
void fuzz_fail(const char *file, int line, const char *cond, const char *fmt, ...)
    __attribute__((format(printf, 4, 5), noreturn));

/*
 * Parse line[0..len) from an exact-size copy and check the result.  An
 * accepted event goes into fold when one is given, it has room and no kept
 * event has the same id; everything else is released at once.
 */
void fuzz_line(const char *line, size_t len, struct fuzz_fold *fold);

/* Start an empty fold. */
void fuzz_fold_init(struct fuzz_fold *fold);

/*
 * Fold the kept events in the order they came and in reverse, require the
 * same read model both ways, and release them.
 */
void fuzz_fold_run(struct fuzz_fold *fold);

/* True when s[0..len) is UTF-8 without overlong forms or surrogates. */
int fuzz_utf8_valid(const char *s, size_t len);

#endif
