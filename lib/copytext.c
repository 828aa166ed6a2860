/* copytext.c - COPY text format fields; see copytext.h. */
#include "copytext.h"

#include <string.h>

/* The bytes COPY's text format gives a meaning: 1 where an escape is due. */
static const unsigned char special[256] = {['\\'] = 1, ['\t'] = 1, ['\n'] = 1, ['\r'] = 1};

void copytext_field(struct textbuf *b, const char *v, size_t len)
{
	if (v == NULL) {
		textbuf_add(b, "\\N", 2);
		return;
	}
	/* Runs of plain bytes go in with one copy each: an event's body is
	 * hundreds of bytes with few or no backslashes. */
	const char *run = v, *end = v + len;
	for (const char *p = v; p < end; p++) {
		unsigned char c = (unsigned char)*p;
		if (!special[c])
			continue;
		char esc[2] = {'\\', c == '\t' ? 't' : c == '\n' ? 'n' : c == '\r' ? 'r' : '\\'};
		textbuf_add(b, run, (size_t)(p - run));
		textbuf_add(b, esc, 2);
		run = p + 1;
	}
	textbuf_add(b, run, (size_t)(end - run));
}

void copytext_str(struct textbuf *b, const char *v)
{
	copytext_field(b, v, v == NULL ? 0 : strlen(v));
}
