/* SPDX-License-Identifier: ISC */
/*
 * filemodes.h - warn when files holding secrets are readable by others.
 */
#ifndef OT_FILEMODES_H
#define OT_FILEMODES_H

#include "config.h"

/*
 * Log a warning (never refuse) for the config file when it holds secrets
 * (a database password, webhook secrets) and for tls.key, when others, or
 * a group the daemon's user is not in, may read them.  Run at start-up, by
 * -t and after a reload.
 */
void filemodes_check(const struct config *cfg);

#endif
