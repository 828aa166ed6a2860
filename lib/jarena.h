/*
 * jarena.h - jansson's memory cut from blocks and given back a block at a
 * time.
 *
 * An event's tree is parsed when its line arrives and dropped when its
 * batch commits, by then long out of the caches: json_decref() walks it
 * node by node, a cache miss each (about 6 % of the daemon's CPU at full
 * speed).  And the fold builds and drops a tree of every changed order.
 * While a mark is open, every allocation jansson makes is cut from the
 * current block; releasing the mark later drops them all at once, without
 * touching them.  A block is reused when no mark holds it.
 *
 * jarena_install() must run before jansson allocates anything, since
 * blocks and the heap are told apart by a word before each allocation.
 * Marks do not nest.  Nothing allocated under a mark may be kept past its
 * release, and a tree allocated under a mark must not be changed once the
 * mark is closed (a heap node hung on it would never be freed).
 */
#ifndef OT_JARENA_H
#define OT_JARENA_H

#include <stddef.h>

struct jblock;

/* The blocks one open-to-release span used, first to last. */
struct jarena_mark {
	struct jblock *first, *last;
};

/* Route jansson's allocations through this module; once, first. */
void jarena_install(void);
/* Has jarena_install() run? */
int jarena_installed(void);
/* From now until jarena_close(), jansson's allocations go to blocks. */
void jarena_open(struct jarena_mark *m);
void jarena_close(struct jarena_mark *m);
/* Everything allocated under m is gone; m may be opened again. */
void jarena_release(struct jarena_mark *m);
/* Free the spare blocks (at exit, for leak checkers). */
void jarena_shutdown(void);
/* Bytes held in blocks now, spare ones included. */
size_t jarena_bytes(void);
/* Free text jansson returned (json_dumps()) with jansson's own free. */
void json_text_free(char *s);

#endif
