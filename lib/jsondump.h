/*
 * jsondump.h - a jansson tree as compact JSON text, appended to a textbuf.
 *
 * The daemon sends every batch's folded states and notifications to
 * PostgreSQL as JSON; json_dumps() spent about 46 instructions a byte on
 * that and returned a fresh allocation each time.  This writes the same
 * bytes as json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY |
 * JSON_REAL_PRECISION(15)) (the unit tests compare the two), copying runs
 * of plain string bytes at once, into a buffer reused from batch to batch.
 * Reals print with 15 significant digits, as the exporter wrote them (7.9,
 * not 7.9000000000000004).
 */
#ifndef OT_JSONDUMP_H
#define OT_JSONDUMP_H

#include <jansson.h>

#include "textbuf.h"

void jsondump(struct textbuf *b, const json_t *v);

#endif
