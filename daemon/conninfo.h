/*
 * conninfo.h - check database.conninfo the way libpq will read it.
 */
#ifndef OT_CONNINFO_H
#define OT_CONNINFO_H

#include <stdbool.h>

/*
 * True when libpq can parse conninfo, which the daemon and ordertrackctl
 * pass as the dbname of PQconnect*Params with expand_dbname.  Otherwise
 * false with libpq's reason (no trailing newline) in *errstr, malloc'd.
 */
bool conninfo_check(const char *conninfo, char **errstr);

#endif
