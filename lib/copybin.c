/* copybin.c - COPY binary format rows; see copybin.h. */
#include "copybin.h"

#include <stdlib.h>
#include <string.h>

/* From the Unix epoch to PostgreSQL's, 2000-01-01: 10,957 days. */
#define PG_EPOCH_UNIX_US (INT64_C(10957) * 86400 * 1000000)

static void put_be(struct textbuf *b, uint64_t v, int bytes)
{
	char out[8];
	for (int i = 0; i < bytes; i++)
		out[i] = (char)(v >> (8 * (bytes - 1 - i)));
	textbuf_add(b, out, (size_t)bytes);
}

void copybin_header(struct textbuf *b)
{
	/* "PGCOPY\n\377\r\n\0", then flags 0 (no OIDs) and no extension:
	 * 19 bytes, without the literal's own terminating NUL. */
	static const char head[] = "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0";
	textbuf_add(b, head, sizeof(head) - 1);
}

void copybin_row(struct textbuf *b, uint16_t nfields)
{
	put_be(b, nfields, 2);
}

void copybin_bytes(struct textbuf *b, const char *v, size_t len)
{
	if (v == NULL) {
		put_be(b, UINT32_MAX, 4); /* -1 */
		return;
	}
	/* A field's length is a signed 32-bit count; the daemon's lines are
	 * limited far below that (limits.max_line_bytes). */
	if (len > INT32_MAX)
		abort();
	put_be(b, len, 4);
	textbuf_add(b, v, len);
}

void copybin_str(struct textbuf *b, const char *v)
{
	copybin_bytes(b, v, v == NULL ? 0 : strlen(v));
}

void copybin_timestamptz(struct textbuf *b, int64_t unix_us)
{
	put_be(b, 8, 4);
	put_be(b, (uint64_t)(unix_us - PG_EPOCH_UNIX_US), 8);
}

void copybin_trailer(struct textbuf *b)
{
	put_be(b, UINT16_MAX, 2); /* a field count of -1 */
}
