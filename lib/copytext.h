/*
 * copytext.h - fields in the text format of PostgreSQL's COPY FROM STDIN.
 *
 * A field is its bytes with backslash, tab, newline and carriage return
 * escaped; SQL NULL is \N.  Fields are separated by a tab and rows end
 * with a newline, which the caller writes.
 */
#ifndef OT_COPYTEXT_H
#define OT_COPYTEXT_H

#include <stddef.h>

#include "textbuf.h"

/* Append the len bytes at v as one field; v NULL appends \N. */
void copytext_field(struct textbuf *b, const char *v, size_t len);
/* Append a NUL-terminated string, or \N for NULL. */
void copytext_str(struct textbuf *b, const char *v);

#endif
