/* textbuf.c - a growing text buffer; see textbuf.h. */
#include "textbuf.h"

#include <stdlib.h>
#include <string.h>

char *textbuf_reserve(struct textbuf *b, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		/* Doubling keeps the number of reallocations logarithmic. */
		b->cap = (b->cap + n + 1) * 2;
		b->p = realloc(b->p, b->cap);
		if (b->p == NULL)
			abort();
	}
	return b->p + b->len;
}

void textbuf_str(struct textbuf *b, const char *s)
{
	textbuf_add(b, s, strlen(s));
}

void textbuf_reset(struct textbuf *b)
{
	b->len = 0;
	if (b->p != NULL)
		b->p[0] = '\0';
}

void textbuf_free(struct textbuf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}
