/*
 * textbuf.h - a growing, NUL-terminated text buffer, reused from batch to
 * batch so that building a batch's parameters allocates only when a batch
 * is larger than every one before it.
 */
#ifndef OT_TEXTBUF_H
#define OT_TEXTBUF_H

#include <stddef.h>

struct textbuf {
	char *p; /* NULL until the first append */
	size_t len, cap;
};

/* Append n bytes (aborts when out of memory: not a code path). */
void textbuf_add(struct textbuf *b, const char *s, size_t n);
/* Append a NUL-terminated string. */
void textbuf_str(struct textbuf *b, const char *s);
/* Make room for n more bytes and their NUL; returns where they go. */
char *textbuf_reserve(struct textbuf *b, size_t n);
/* Empty it, keeping the memory. */
void textbuf_reset(struct textbuf *b);
void textbuf_free(struct textbuf *b);

#endif
