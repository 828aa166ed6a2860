/*
 * copybin.h - rows in the binary format of PostgreSQL's COPY FROM STDIN.
 *
 * The daemon writes a batch's events this way rather than as text: the
 * server then reads each field by its length instead of scanning every
 * byte for escapes, and takes occurred_at as a number instead of parsing
 * its text, which cost it about a quarter of COPY's CPU
 * (docs/PERFORMANCE.md).  The format: a header, then per row a field
 * count and each field as a 32-bit length (-1 for NULL) and its bytes,
 * then a trailer; integers are big-endian.  text and json fields are their
 * UTF-8 bytes as they are; a timestamptz is microseconds since
 * 2000-01-01 00:00:00 UTC as a 64-bit integer.
 */
#ifndef OT_COPYBIN_H
#define OT_COPYBIN_H

#include <stddef.h>
#include <stdint.h>

#include "textbuf.h"

/* The signature, flags and header extension every COPY's data starts with. */
void copybin_header(struct textbuf *b);
/* Start a row of nfields fields. */
void copybin_row(struct textbuf *b, uint16_t nfields);
/* A text or json field: the len bytes at v; v NULL is SQL NULL. */
void copybin_bytes(struct textbuf *b, const char *v, size_t len);
/* A NUL-terminated string, or NULL. */
void copybin_str(struct textbuf *b, const char *v);
/* A timestamptz field from Unix epoch microseconds. */
void copybin_timestamptz(struct textbuf *b, int64_t unix_us);
/* The end of the data, before PQputCopyEnd. */
void copybin_trailer(struct textbuf *b);

#endif
