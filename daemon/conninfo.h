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

/*
 * True when conninfo, as libpq reads it, holds a password (password=,
 * sslpassword=, or the user:password@ of a URI).  False when it holds
 * none or libpq cannot parse it (conninfo_check says why).
 */
bool conninfo_has_password(const char *conninfo);

#endif
