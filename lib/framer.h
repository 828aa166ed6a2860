/*
 * framer.h - split a byte stream into lines (JSON Lines framing).
 *
 * The framer is fed whatever the socket delivered, in chunks of any size, and
 * hands back complete lines without their terminator ("\n" or "\r\n").  A line
 * that lies wholly inside one chunk is returned in place (no copy); only a
 * line split across chunks is assembled in the framer's own buffer, which
 * never grows beyond max_line bytes.  A line longer than max_line is reported
 * once as FRAMER_TOO_LONG and the rest of it, up to its newline, is skipped
 * without being stored, so a peer sending megabytes without a newline costs
 * no memory.
 */
#ifndef OT_FRAMER_H
#define OT_FRAMER_H

#include <stdbool.h>
#include <stddef.h>

enum framer_status {
	FRAMER_MORE,     /* chunk used up, no complete line yet */
	FRAMER_LINE,     /* a line is ready in the frame */
	FRAMER_TOO_LONG, /* a line exceeded max_line; it is being skipped */
};

struct frame {
	const char *data; /* valid until the next framer call or chunk change */
	size_t len;
};

struct framer {
	char *buf;       /* partial line carried between chunks */
	size_t len;      /* bytes in buf */
	size_t max_line; /* longest line accepted, terminator excluded */
	bool skipping;   /* inside an over-long line, dropping to newline */
};

void framer_init(struct framer *f, size_t max_line);
void framer_fini(struct framer *f);
/*
 * Change the limit (config reload).  A partial line keeps its bytes, or,
 * already too long for the new limit, is dropped and skipped to its
 * newline: then true, and the caller reports it as FRAMER_TOO_LONG.
 */
bool framer_set_max(struct framer *f, size_t max_line);

/*
 * Scan chunk[0..len) and stop at the first complete line or over-long line.
 * Returns how many bytes of the chunk were consumed; the caller passes the
 * rest of the chunk in the next call.  *fr is set only for FRAMER_LINE.
 */
size_t framer_scan(struct framer *f, const char *chunk, size_t len, enum framer_status *st,
                   struct frame *fr);

/* True while a line has been started but not finished (slowloris check). */
bool framer_partial(const struct framer *f);

#endif
