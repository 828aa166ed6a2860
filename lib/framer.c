/*
 * framer.c - JSON Lines framing; see framer.h for the contract.
 *
 * The common case, a whole line inside the chunk the socket gave us, costs a
 * memchr and no copy.  Only a line split across reads is copied into the
 * framer's buffer, which is allocated once at max_line bytes the first time
 * it is needed and reused for the life of the connection.
 */
#include "framer.h"

#include <stdlib.h>
#include <string.h>

/* Allocate a buffer or abort: running out of memory is not a code path. */
static void *xmalloc(size_t n)
{
	void *p = malloc(n);
	if (p == NULL)
		abort();
	return p;
}

void framer_init(struct framer *f, size_t max_line)
{
	memset(f, 0, sizeof(*f));
	f->max_line = max_line;
}

void framer_fini(struct framer *f)
{
	free(f->buf);
	f->buf = NULL;
	f->len = 0;
}

/* Is a carry of len bytes, ending in last, too long for max_line?  One
 * byte over is held only when it is a CR a newline may end. */
static bool carry_too_long(size_t len, char last, size_t max_line)
{
	return len > max_line + 1 || (len == max_line + 1 && last != '\r');
}

bool framer_set_max(struct framer *f, size_t max_line)
{
	if (max_line == f->max_line)
		return false;
	bool dropped = f->len > 0 && carry_too_long(f->len, f->buf[f->len - 1], max_line);
	if (dropped) {
		f->len = 0;
		f->skipping = true;
	}
	/* The buffer is sized to the limit (max_line + 1: framer_scan may
	 * carry one byte over it, a CR awaiting its LF); rebuilt at the new
	 * size, with what is left of the line. */
	char *nb = NULL;
	if (f->len > 0) {
		nb = xmalloc(max_line + 1);
		memcpy(nb, f->buf, f->len);
	}
	free(f->buf);
	f->buf = nb;
	f->max_line = max_line;
	return dropped;
}

bool framer_partial(const struct framer *f)
{
	return f->len > 0 || f->skipping;
}

/* Strip one trailing CR so "\r\n" ends a line like "\n". */
static size_t strip_cr(const char *p, size_t n)
{
	return (n > 0 && p[n - 1] == '\r') ? n - 1 : n;
}

/* Finish a line that started in an earlier chunk and ends at nl. */
static size_t finish_carried(struct framer *f, const char *chunk, size_t upto,
                             enum framer_status *st, struct frame *fr)
{
	size_t total = f->len + upto;
	size_t body = total;

	/* A CR just before the newline may sit in the chunk or the carry. */
	if (upto > 0)
		body = f->len + strip_cr(chunk, upto);
	else if (f->len > 0 && f->buf[f->len - 1] == '\r')
		body = f->len - 1;
	if (body > f->max_line) {
		f->len = 0;
		*st = FRAMER_TOO_LONG;
		return upto + 1;
	}
	if (body > f->len)
		memcpy(f->buf + f->len, chunk, body - f->len);
	fr->data = f->buf;
	fr->len = body;
	f->len = 0; /* the buffer stays valid until the next call */
	*st = FRAMER_LINE;
	return upto + 1;
}

size_t framer_scan(struct framer *f, const char *chunk, size_t len, enum framer_status *st,
                   struct frame *fr)
{
	const char *nl = memchr(chunk, '\n', len);

	if (f->skipping) {
		if (nl == NULL) {
			*st = FRAMER_MORE;
			return len;
		}
		f->skipping = false;
		/* Skipped tail done; continue with what follows the newline. */
		size_t used = (size_t)(nl - chunk) + 1;
		size_t more = framer_scan(f, chunk + used, len - used, st, fr);
		return used + more;
	}

	if (nl == NULL) {
		/* No end in sight: carry the bytes, unless that breaks the limit.
		 * One extra byte is allowed only if it is a CR, which a following
		 * chunk's newline may turn into a terminator: any other byte
		 * there makes the line too long now, not when more comes. */
		if (len > 0 && carry_too_long(f->len + len, chunk[len - 1], f->max_line)) {
			f->len = 0;
			f->skipping = true;
			*st = FRAMER_TOO_LONG;
			return len;
		}
		if (f->buf == NULL)
			f->buf = xmalloc(f->max_line + 1);
		memcpy(f->buf + f->len, chunk, len);
		f->len += len;
		*st = FRAMER_MORE;
		return len;
	}

	size_t upto = (size_t)(nl - chunk);
	if (f->len > 0)
		return finish_carried(f, chunk, upto, st, fr);

	size_t body = strip_cr(chunk, upto);
	if (body > f->max_line) {
		*st = FRAMER_TOO_LONG;
		return upto + 1;
	}
	fr->data = chunk;
	fr->len = body;
	*st = FRAMER_LINE;
	return upto + 1;
}
