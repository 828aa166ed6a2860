/*
 * jsonw.h - write small JSON reply lines into a caller's buffer.
 *
 * Replies are built on the hot path (one per event), so they are written by
 * hand into a fixed buffer instead of through a jansson tree: no allocation.
 * Output that would not fit is cut at a character boundary and still closed
 * properly, so a reply is always valid JSON.
 */
#ifndef OT_JSONW_H
#define OT_JSONW_H

#include <stdbool.h>
#include <stddef.h>

struct jsonw {
	char *buf;
	size_t cap;
	size_t len;
	bool first;     /* no member written yet in the current object */
	bool truncated; /* something did not fit */
};

void jsonw_init(struct jsonw *w, char *buf, size_t cap);
void jsonw_open(struct jsonw *w);
/* String member; a NULL value writes null. */
void jsonw_str(struct jsonw *w, const char *key, const char *val);
void jsonw_strn(struct jsonw *w, const char *key, const char *val, size_t len);
void jsonw_int(struct jsonw *w, const char *key, long long val);
void jsonw_null(struct jsonw *w, const char *key);
/* Raw JSON value (already valid JSON) as a member. */
void jsonw_raw(struct jsonw *w, const char *key, const char *json, size_t len);
/* Close the object and append '\n'; returns the line length. */
size_t jsonw_close(struct jsonw *w);

/* Escape s into out (cap bytes incl. NUL) as the inside of a JSON string. */
size_t json_escape(char *out, size_t cap, const char *s, size_t len);

/*
 * How many bytes of s, cut on a UTF-8 character, escape to at most max
 * bytes as json_escape() and jsonw_str() write them; for bounding text
 * quoted inside a reply by what it will take there.
 */
size_t json_escape_fit(const char *s, size_t len, size_t max);

#endif
