/*
 * logtext.h - values for key=value log lines.
 *
 * A value a client chose (a member name, an id, a reason quoting them)
 * must not be able to forge a log line or hide one: no line break, no
 * quote that ends the value early, no terminal control, and nothing a
 * viewer would lay out differently from the bytes (a Unicode line
 * separator, a right-to-left override).  Pure: no I/O, no allocation.
 */
#ifndef OT_LOGTEXT_H
#define OT_LOGTEXT_H

#include <stddef.h>

/*
 * Write s[0..len) into out (cap bytes, at least 16) as a log value: as it
 * is when it is one word of printable ASCII without '"', '=' or '\',
 * else in double quotes with '"', '\' and '\n' escaped by a backslash,
 * other ASCII controls as \xNN, bytes that are not UTF-8 as \xNN, and the
 * C1 controls, U+2028, U+2029 and the bidirectional controls as \uNNNN;
 * other UTF-8 is kept.  A value too long for out is cut at a character
 * and still closed with its quote.  Returns the length written (out is
 * NUL-terminated).
 */
size_t logtext_quote(char *out, size_t cap, const char *s, size_t len);

#endif
