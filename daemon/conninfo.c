/* SPDX-License-Identifier: ISC */
/*
 * conninfo.c - check database.conninfo the way libpq will read it.
 *
 * Both programs give database.conninfo to libpq as the dbname of
 * PQconnect*Params with expand_dbname (pgsock.c, ordertrackctl.c): a value
 * holding an "=", or starting with postgresql:// or postgres://, is parsed
 * as a connection string, anything else is a database name.  A connection
 * string libpq cannot parse (an unknown option such as a misspelt
 * "dbnme", a missing "=", an unterminated quote) fails every connection
 * attempt the same way, so it is a configuration error to report before
 * anything starts, not an outage to retry.  Only the syntax and the
 * option names are checked here: values (a host that does not resolve, a
 * bad sslmode) are known only by connecting.
 *
 * It lives in daemon/ because lib/ does not use libpq.
 */
#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

#include "conninfo.h"

/* libpq's own test (recognized_connection_string in fe-connect.c). */
static bool conninfo_is_string(const char *s)
{
	return strncmp(s, "postgresql://", 13) == 0 || strncmp(s, "postgres://", 11) == 0 ||
	       strchr(s, '=') != NULL;
}

bool conninfo_check(const char *conninfo, char **errstr)
{
	char *msg = NULL;
	if (!conninfo_is_string(conninfo))
		return true;
	PQconninfoOption *opts = PQconninfoParse(conninfo, &msg);
	if (opts != NULL) {
		PQconninfoFree(opts);
		return true;
	}
	const char *why = msg != NULL ? msg : "libpq cannot parse it";
	size_t n = strlen(why);
	while (n > 0 && (why[n - 1] == '\n' || why[n - 1] == ' '))
		n--;
	*errstr = malloc(n + 1);
	if (*errstr == NULL)
		abort();
	memcpy(*errstr, why, n);
	(*errstr)[n] = '\0';
	PQfreemem(msg);
	return false;
}
