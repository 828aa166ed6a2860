/*
 * privdrop.h - give up root after binding the listeners.
 */
#ifndef OT_PRIVDROP_H
#define OT_PRIVDROP_H

#include <stdbool.h>

/*
 * When running as root, become user (its uid, gid and supplementary
 * groups) and check that root cannot be taken back.  Not root: nothing to
 * do when user is NULL or is who we already are; an error otherwise.
 * Returns false with a reason in err (cap bytes) on failure.
 */
bool privdrop(const char *user, char *err, size_t cap);

#endif
