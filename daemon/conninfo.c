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
 * bad sslmode) are known only by connecting.  libpq's reason may quote
 * the string; a password in it is shown as "***", since the reason goes
 * to the terminal and the log.
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

/* Replace every copy of secret[0..n) in the malloc'd *text with "***". */
static void redact(char **text, const char *secret, size_t n)
{
	static const char mask[] = "***";
	if (n == 0)
		return;
	char *out = malloc(strlen(*text) * sizeof(mask) + 1); /* a 1-byte secret becomes 3 */
	if (out == NULL)
		abort();
	size_t o = 0;
	for (const char *p = *text; *p != '\0';) {
		if (strncmp(p, secret, n) == 0) {
			memcpy(out + o, mask, sizeof(mask) - 1);
			o += sizeof(mask) - 1;
			p += n;
		} else {
			out[o++] = *p++;
		}
	}
	out[o] = '\0';
	free(*text);
	*text = out;
}

static const char spaces[] = " \t\n\r\f\v";

/* The end of a quoted keyword value whose opening quote is at v: its closing quote. */
static const char *quoted_end(const char *v)
{
	for (v++; *v != '\0' && *v != '\''; v++)
		if (*v == '\\' && v[1] != '\0')
			v++;
	return v;
}

/*
 * Take an unquoted password= value starting at v out of msg, word by word,
 * up to the next word holding an "=" (the next keyword): "password=se
 * cret dbname=x" meant "se cret", and libpq's reason ("missing "=" after
 * "cret"") quotes the word it choked on.
 */
static void redact_words(char **msg, const char *v)
{
	for (;;) {
		v += strspn(v, spaces);
		size_t n = strcspn(v, spaces);
		if (n == 0 || memchr(v, '=', n) != NULL)
			return;
		redact(msg, v, n);
		v += n;
	}
}

/*
 * libpq quotes pieces of a string it cannot parse, a URI whole: take out
 * of msg the passwords the string holds (user:password@ of a URI, a
 * password= parameter or keyword), read as roughly as they are written.
 */
static void redact_passwords(const char *conninfo, char **msg)
{
	const char *uri = NULL;
	if (strncmp(conninfo, "postgresql://", 13) == 0)
		uri = conninfo + 10;
	else if (strncmp(conninfo, "postgres://", 11) == 0)
		uri = conninfo + 8;
	if (uri != NULL) {
		const char *user = uri + 3;
		size_t n = strcspn(user, "@/");
		const char *colon = memchr(user, ':', n);
		if (user[n] == '@' && colon != NULL)
			redact(msg, colon + 1, (size_t)(user + n - colon - 1));
	}
	for (const char *p = strstr(conninfo, "password"); p != NULL;
	     p = strstr(p + 1, "password")) {
		const char *v = p + 8;
		v += strspn(v, spaces);
		if (*v != '=')
			continue;
		v++;
		v += strspn(v, spaces);
		if (uri != NULL)
			redact(msg, v, strcspn(v, "&"));
		else if (*v == '\'')
			redact(msg, v + 1, (size_t)(quoted_end(v) - v - 1));
		else
			redact_words(msg, v);
	}
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
	redact_passwords(conninfo, errstr);
	return false;
}

bool conninfo_has_password(const char *conninfo)
{
	if (!conninfo_is_string(conninfo))
		return false;
	PQconninfoOption *opts = PQconninfoParse(conninfo, NULL);
	bool found = false;
	for (PQconninfoOption *o = opts; o != NULL && o->keyword != NULL; o++)
		if ((strcmp(o->keyword, "password") == 0 ||
		     strcmp(o->keyword, "sslpassword") == 0) &&
		    o->val != NULL && o->val[0] != '\0')
			found = true;
	PQconninfoFree(opts);
	return found;
}
