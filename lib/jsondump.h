/*
 * jsondump.h - a jansson tree as compact JSON text, appended to a textbuf.
 *
 * The daemon sends every batch's folded states and notifications to
 * PostgreSQL as JSON; json_dumps() spent about 46 instructions a byte on
 * that and returned a fresh allocation each time.  This writes the same
 * bytes as json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY |
 * JSON_REAL_PRECISION(p)) (the unit tests compare the two), copying runs
 * of plain string bytes at once, into a buffer reused from batch to batch.
 * p is the fewest of 15, 16 and 17 significant digits that read back as
 * the same double: 7.9 as the exporter wrote it, not 7.9000000000000004,
 * and 1.0000000000000002 whole, not cut to 1.0.
 */
#ifndef OT_JSONDUMP_H
#define OT_JSONDUMP_H

#include <jansson.h>

#include "textbuf.h"

void jsondump(struct textbuf *b, const json_t *v);

#endif
