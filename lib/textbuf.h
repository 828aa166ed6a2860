/*
 * textbuf.h - a growing, NUL-terminated text buffer, reused from batch to
 * batch so that building a batch's parameters allocates only when a batch
 * is larger than every one before it.
 */
#ifndef OT_TEXTBUF_H
#define OT_TEXTBUF_H

#include <stddef.h>
#include <string.h>

struct textbuf {
	char *p; /* NULL until the first append */
	size_t len, cap;
};

/* Make room for n more bytes and their NUL; returns where they go. */
char *textbuf_reserve(struct textbuf *b, size_t n);

/*
 * Append n bytes (aborts when out of memory: not a code path).  Inline:
 * JSON is written a token at a time, so the common case (it fits) must
 * cost no call.
 */
static inline void textbuf_add(struct textbuf *b, const char *s, size_t n)
{
	char *at = b->len + n + 1 <= b->cap ? b->p + b->len : textbuf_reserve(b, n);
	memcpy(at, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

/* Append a NUL-terminated string. */
void textbuf_str(struct textbuf *b, const char *s);
/* Empty it, keeping the memory. */
void textbuf_reset(struct textbuf *b);
void textbuf_free(struct textbuf *b);

#endif
