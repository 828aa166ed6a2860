/* SPDX-License-Identifier: ISC */
/*
 * config.c - the ordertrackd settings: one schema table, parsing and checks.
 *
 * Every setting is one row of settings[] below: its path, its kind, its
 * default, its bounds, whether a reload may change it, and where it lives in
 * struct config.  Integers and strings are handled by the table alone; the
 * list-valued keys (listen, exporters, operators, webhooks,
 * documents.required), log.level and admin.listen (a listen address that
 * may also be "") have small handlers of their own.
 * exporters and operators share one parser (the same shape and checks, ids
 * unique within each list).  documents.required is kept in the form the
 * fold reads (struct model_doc_rule), so config_model_rules() only points at
 * it.  Loading fills a fresh struct with the defaults, walks the parsed
 * libconfig tree once, sends each key to its row and rejects any key that has
 * no row, so a typo can never be silently ignored.  What spans keys is
 * checked after the walk, since the file may give keys in any order: every
 * exporter a webhook names must be in exporters.  The first problem found
 * ends the load; its message names the file, the line and the key.
 *
 * libconfig 1.5 stores an integer written without an "L" suffix in an int and
 * silently wraps one that does not fit (4294968320 reads back as 1024).  We
 * therefore look at the literal in the source text of every integer setting
 * and reject a wrapped one, quoting what the operator wrote.  Settings that
 * come from an @include'd file are not re-read and keep libconfig's value.
 *
 * Nothing here logs, opens sockets or reads the clock; config_load() reads
 * one file and config_parse_string() nothing at all.
 */
#include "config.h"
#include "validate.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libconfig.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define LISTEN_MAX            64         /* entries in listen */
#define LISTEN_HOST_MAX       253        /* characters in a host name */
#define EXPORTER_NAME_MAX     128        /* characters (code points) in an exporter name */
#define CONFIG_FILE_MAX       (16 << 20) /* bytes; a config file is a few KiB */
#define KEY_MAX               256        /* a key path in messages, e.g. "exporters[3].id" */
#define DOC_RULES_MAX         1000       /* entries in documents.required */
#define WEBHOOKS_MAX          100        /* entries in webhooks */
#define WEBHOOK_URL_MAX       2048       /* characters in a webhook url */
#define WEBHOOK_SECRET_MIN    16         /* characters in a webhook secret, at least */
#define WEBHOOK_SECRET_MAX    1024       /* characters in a webhook secret, at most */
#define WEBHOOK_EXPORTERS_MAX 1000       /* entries in webhooks[i].exporters */

/* Row flags: whether a SIGHUP reload applies a changed value. */
#define SETTING_RELOAD  0x0 /* the running daemon takes the new value */
#define SETTING_RESTART 0x1 /* only a restart applies it; a reload reports it */

/* What a table row holds and therefore which generic code handles it. */
enum setting_kind {
	KIND_INT,    /* an int field; min..max bound the value */
	KIND_STRING, /* a malloc'd char * field; min..max bound the length */
	KIND_CUSTOM, /* anything else; the row's handlers do all the work */
};

/* State of one load: where messages point and the first error found. */
struct loader {
	const char *name;   /* file name used in messages */
	const char *text;   /* the source text, to re-read integer literals */
	struct config *cfg; /* the struct being filled */
	char *err;          /* first error message, malloc'd */
};

struct setting;

/* Parse one setting into ld->cfg; false (with ld->err set) on a bad value. */
typedef bool setting_parse_fn(struct loader *ld, const struct setting *row,
                              const config_setting_t *s);

/* One row of the schema. */
struct setting {
	const char *path;       /* "limits.max_connections"; dots name groups */
	enum setting_kind kind; /* which generic code handles the row */
	unsigned flags;         /* SETTING_RELOAD or SETTING_RESTART */
	size_t offset;          /* field in struct config (int and string rows) */
	long long def;          /* default (int rows) */
	const char *def_str;    /* default (string rows) */
	long long min, max;     /* bounds: value (int rows) or length (string rows) */
	void (*set_default)(struct config *cfg);                      /* custom rows */
	setting_parse_fn *parse;                                      /* custom rows */
	bool (*same)(const struct config *a, const struct config *b); /* custom rows */
	void (*release)(struct config *cfg);                          /* custom rows, optional */
};

/*
 * The offset of a struct config field, which must have the given type: the
 * sizeof term is never evaluated and adds nothing, but a row whose field has
 * another type does not compile (subtracting unrelated pointer types).
 */
#define FIELD(f, type)                                                                             \
	(offsetof(struct config, f) + 0 * sizeof(_Generic(((struct config *)0)->f, type : 1)))

#define SET_INT(p, f, d, lo, hi, fl)                                                               \
	{                                                                                          \
		.path = (p), .kind = KIND_INT, .flags = (fl), .offset = FIELD(f, int), .def = (d), \
		.min = (lo), .max = (hi)                                                           \
	}
#define SET_STRING(p, f, d, lo, hi, fl)                                                            \
	{                                                                                          \
		.path = (p), .kind = KIND_STRING, .flags = (fl), .offset = FIELD(f, char *),       \
		.def_str = (d), .min = (lo), .max = (hi)                                           \
	}
#define SET_CUSTOM(p, fl, dflt, parsefn, samefn, rel)                                              \
	{                                                                                          \
		.path = (p), .kind = KIND_CUSTOM, .flags = (fl), .set_default = (dflt),            \
		.parse = (parsefn), .same = (samefn), .release = (rel)                             \
	}

static void listen_default(struct config *cfg);
static setting_parse_fn listen_parse;
static bool listen_same(const struct config *a, const struct config *b);
static void listen_release(struct config *cfg);
static void exporters_default(struct config *cfg);
static setting_parse_fn exporters_parse;
static bool exporters_same(const struct config *a, const struct config *b);
static void exporters_release(struct config *cfg);
static void level_default(struct config *cfg);
static setting_parse_fn level_parse;
static bool level_same(const struct config *a, const struct config *b);
static void doc_rules_default(struct config *cfg);
static setting_parse_fn doc_rules_parse;
static bool doc_rules_same(const struct config *a, const struct config *b);
static void doc_rules_release(struct config *cfg);
static void operators_default(struct config *cfg);
static setting_parse_fn operators_parse;
static bool operators_same(const struct config *a, const struct config *b);
static void operators_release(struct config *cfg);
static void webhooks_default(struct config *cfg);
static setting_parse_fn webhooks_parse;
static bool webhooks_same(const struct config *a, const struct config *b);
static void webhooks_release(struct config *cfg);
static void admin_listen_default(struct config *cfg);
static setting_parse_fn admin_listen_parse;
static const char *string_of(struct loader *ld, const config_setting_t *s, const char *key);
static bool admin_listen_same(const struct config *a, const struct config *b);
static void admin_listen_release(struct config *cfg);
static void tls_default(struct config *cfg);
static setting_parse_fn tls_parse;
static bool tls_same(const struct config *a, const struct config *b);
static void tls_release(struct config *cfg);

/*
 * The schema.  Adding an integer or string setting is one row here plus its
 * field in struct config; docs/CONFIG.md and conf/ordertrackd.conf describe
 * every row and must follow it.
 */
static const struct setting settings[] = {
    SET_CUSTOM("listen", SETTING_RESTART, listen_default, listen_parse, listen_same,
               listen_release),
    SET_STRING("database.conninfo", conninfo, "dbname=ordertrack", 0, 4096, SETTING_RESTART),
    SET_INT("database.connections", db_connections, 2, 1, 16, SETTING_RESTART),
    SET_STRING("user", user, "", 0, 32, SETTING_RESTART),
    SET_CUSTOM("exporters", SETTING_RELOAD, exporters_default, exporters_parse, exporters_same,
               exporters_release),
    SET_INT("limits.max_connections", max_connections, 1024, 1, 1000000, SETTING_RELOAD),
    SET_INT("limits.max_line_bytes", max_line_bytes, 65536, 256, 16777216, SETTING_RELOAD),
    SET_INT("limits.idle_timeout_s", idle_timeout_s, 300, 0, 604800, SETTING_RELOAD),
    SET_INT("limits.window", window, 1000, 1, 100000, SETTING_RELOAD),
    SET_INT("limits.max_pending", max_pending, 100000, 1, 10000000, SETTING_RELOAD),
    SET_INT("limits.max_connections_per_ip", max_connections_per_ip, 256, 1, 1000000,
            SETTING_RELOAD),
    SET_INT("limits.hello_timeout_s", hello_timeout_s, 10, 1, 3600, SETTING_RELOAD),
    SET_INT("limits.line_timeout_s", line_timeout_s, 30, 1, 3600, SETTING_RELOAD),
    SET_INT("limits.max_failed_hellos", max_failed_hellos, 10, 1, 100000, SETTING_RELOAD),
    SET_INT("batch.max_events", batch_max_events, 1000, 1, 10000, SETTING_RELOAD),
    SET_INT("batch.max_delay_ms", batch_max_delay_ms, 1, 0, 1000, SETTING_RELOAD),
    SET_CUSTOM("log.level", SETTING_RELOAD, level_default, level_parse, level_same, NULL),
    SET_CUSTOM("documents.required", SETTING_RELOAD, doc_rules_default, doc_rules_parse,
               doc_rules_same, doc_rules_release),
    SET_CUSTOM("operators", SETTING_RELOAD, operators_default, operators_parse, operators_same,
               operators_release),
    SET_CUSTOM("webhooks", SETTING_RELOAD, webhooks_default, webhooks_parse, webhooks_same,
               webhooks_release),
    SET_INT("alerts.interval_s", alerts_interval_s, 60, 1, 86400, SETTING_RELOAD),
    SET_INT("alerts.customs_hold_hours", alerts_customs_hold_hours, 48, 1, 8760, SETTING_RELOAD),
    SET_INT("alerts.stale_hours", alerts_stale_hours, 120, 1, 8760, SETTING_RELOAD),
    SET_CUSTOM("admin.listen", SETTING_RESTART, admin_listen_default, admin_listen_parse,
               admin_listen_same, admin_listen_release),
    SET_INT("log.stats_interval_s", stats_interval_s, 60, 0, 86400, SETTING_RELOAD),
    SET_CUSTOM("tls", SETTING_RELOAD, tls_default, tls_parse, tls_same, tls_release),
};

#define N_SETTINGS (sizeof(settings) / sizeof(settings[0]))

/* Names of the log levels, indexed by enum log_level. */
static const char *const level_names[] = {
    [LOG_LEVEL_ERROR] = "error",
    [LOG_LEVEL_WARNING] = "warning",
    [LOG_LEVEL_INFO] = "info",
    [LOG_LEVEL_DEBUG] = "debug",
};

/* Allocate or abort: running out of memory is not a code path. */
static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n == 0 ? 1 : n, size == 0 ? 1 : size);
	if (p == NULL)
		abort();
	return p;
}

/* Copy a string or abort. */
static char *xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = xcalloc(1, n);
	memcpy(p, s, n);
	return p;
}

/* Format into a fresh malloc'd string, aborting when out of memory. */
static char *xvprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));
static char *xvprintf(const char *fmt, va_list ap)
{
	va_list ap2;
	va_copy(ap2, ap);
	int n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		abort();
	char *p = xcalloc(1, (size_t)n + 1);
	vsnprintf(p, (size_t)n + 1, fmt, ap);
	return p;
}

/* Format into a fresh malloc'd string. */
static char *xprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xprintf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *p = xvprintf(fmt, ap);
	va_end(ap);
	return p;
}

/*
 * Format a key path for messages, e.g. "exporters[3].id", into buf; a key
 * longer than buf is cut short, which only ever shortens a message.
 */
static void key_format(char *buf, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void key_format(char *buf, size_t cap, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, cap, fmt, ap);
	va_end(ap);
}

/* Store a message as the load's error unless an earlier one is already there. */
static void loader_error(struct loader *ld, char *msg)
{
	if (ld->err == NULL)
		ld->err = msg;
	else
		free(msg);
}

/*
 * Record "file:line: key: message" for setting s, dated at the given line,
 * and return false; a NULL key leaves out "key: ".
 */
static bool fail_line(struct loader *ld, const config_setting_t *s, unsigned line, const char *key,
                      const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static bool fail_line(struct loader *ld, const config_setting_t *s, unsigned line, const char *key,
                      const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *what = xvprintf(fmt, ap);
	va_end(ap);

	const char *file = config_setting_source_file(s);
	if (file == NULL)
		file = ld->name;
	char where[32] = "";
	if (line > 0)
		snprintf(where, sizeof(where), ":%u", line);
	loader_error(ld,
	             xprintf("%s%s: %s%s%s", file, where, key ? key : "", key ? ": " : "", what));
	free(what);
	return false;
}

/*
 * Record "file:line: key: message" for setting s at the line libconfig gives
 * it and return false, so that handlers can write `return fail(...)`.
 */
static bool fail(struct loader *ld, const config_setting_t *s, const char *key, const char *fmt,
                 ...) __attribute__((format(printf, 4, 5)));
static bool fail(struct loader *ld, const config_setting_t *s, const char *key, const char *fmt,
                 ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *what = xvprintf(fmt, ap);
	va_end(ap);
	fail_line(ld, s, config_setting_source_line(s), key, "%s", what);
	free(what);
	return false;
}

/*
 * Copy s into buf for a message: in double quotes, with anything that is not
 * printable ASCII shown as \xNN, cut short with "..." when it does not fit.
 */
static const char *quote(const char *s, char *buf, size_t cap)
{
	size_t o = 0;
	buf[o++] = '"';
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		char piece[8];
		if (*p >= 0x20 && *p < 0x7f && *p != '"' && *p != '\\')
			snprintf(piece, sizeof(piece), "%c", *p);
		else
			snprintf(piece, sizeof(piece), "\\x%02x", *p);
		size_t n = strlen(piece);
		if (o + n + 5 > cap) {
			memcpy(buf + o, "...", 3);
			o += 3;
			break;
		}
		memcpy(buf + o, piece, n);
		o += n;
	}
	buf[o++] = '"';
	buf[o] = '\0';
	return buf;
}

/* An English name, with its article, for a libconfig type, for "got ..." messages. */
static const char *type_name(int type)
{
	switch (type) {
	case CONFIG_TYPE_GROUP:
		return "a group";
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:
		return "an integer";
	case CONFIG_TYPE_FLOAT:
		return "a float";
	case CONFIG_TYPE_STRING:
		return "a string";
	case CONFIG_TYPE_BOOL:
		return "a boolean";
	case CONFIG_TYPE_ARRAY:
		return "an array";
	case CONFIG_TYPE_LIST:
		return "a list";
	default:
		return "an unknown type";
	}
}

/* The field a table row points at, as an int. */
static int *field_int(struct config *cfg, const struct setting *row)
{
	return (int *)(void *)((char *)cfg + row->offset);
}

/* The field a table row points at, as a string. */
static char **field_str(struct config *cfg, const struct setting *row)
{
	return (char **)(void *)((char *)cfg + row->offset);
}

/* The field a table row points at, read-only, as an int. */
static int field_int_get(const struct config *cfg, const struct setting *row)
{
	return *(const int *)(const void *)((const char *)cfg + row->offset);
}

/* The field a table row points at, read-only, as a string. */
static const char *field_str_get(const struct config *cfg, const struct setting *row)
{
	return *(char *const *)(const void *)((const char *)cfg + row->offset);
}

/* True for characters libconfig allows in a setting name. */
static bool is_name_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       ch == '_' || ch == '-' || ch == '*';
}

/* Find where a line (counted from 1) of text starts and ends; false past the end. */
static bool line_span(const char *text, unsigned line, const char **start, const char **end)
{
	const char *p = text;
	if (line == 0)
		return false;
	for (unsigned l = 1; l < line; l++) {
		p = strchr(p, '\n');
		if (p == NULL)
			return false;
		p++;
	}
	const char *e = strchr(p, '\n');
	*start = p;
	*end = e ? e : p + strlen(p);
	return true;
}

/*
 * The line that holds string element e of an array or list.  libconfig dates
 * an element by the token that follows it, so the last element of a list
 * closed on a later line gets the closing bracket's line; look for "value"
 * back up to the list's own line, and keep libconfig's answer when it is not
 * found (an escape in the value, or a file pulled in by @include).
 */
static unsigned string_line(const struct loader *ld, const config_setting_t *e,
                            const config_setting_t *list)
{
	unsigned line = config_setting_source_line(e), top = config_setting_source_line(list);
	if (ld->text == NULL || config_setting_source_file(e) != NULL || top == 0 || top > line)
		return line;
	const char *v = config_setting_get_string(e);
	size_t n = strlen(v);
	for (unsigned l = line; l >= top; l--) {
		const char *p, *end;
		if (!line_span(ld->text, l, &p, &end))
			break;
		for (; p + n + 2 <= end; p++)
			if (p[0] == '"' && memcmp(p + 1, v, n) == 0 && p[n + 1] == '"')
				return l;
	}
	return line;
}

/*
 * Find "name = <integer>" (or "name: <integer>") on the given line of text
 * and copy the integer literal, sign included, into buf; false when the line
 * does not contain it.
 */
static bool literal_find(const char *text, unsigned line, const char *name, char *buf, size_t cap)
{
	const char *p, *end;
	if (!line_span(text, line, &p, &end))
		return false;
	size_t nlen = strlen(name);

	for (const char *at = p; at + nlen <= end; at++) {
		if (memcmp(at, name, nlen) != 0 || (at > p && is_name_char(at[-1])) ||
		    is_name_char(at[nlen]))
			continue;
		const char *q = at + nlen;
		while (q < end && (*q == ' ' || *q == '\t'))
			q++;
		if (q == end || (*q != '=' && *q != ':'))
			continue;
		q++;
		while (q < end && (*q == ' ' || *q == '\t'))
			q++;
		const char *start = q;
		if (q < end && (*q == '-' || *q == '+'))
			q++;
		const char *digits = q;
		if (q + 1 < end && q[0] == '0' && (q[1] == 'x' || q[1] == 'X'))
			q += 2;
		while (q < end && ((*q >= '0' && *q <= '9') || (*q >= 'a' && *q <= 'f') ||
		                   (*q >= 'A' && *q <= 'F')))
			q++;
		size_t n = (size_t)(q - start);
		if (q == digits || n + 1 > cap)
			continue;
		memcpy(buf, start, n);
		buf[n] = '\0';
		return true;
	}
	return false;
}

/*
 * True when the integer literal lit does not fit in an int and libconfig's
 * value got is what it wraps to, i.e. libconfig silently mangled it.
 */
static bool literal_wrapped(const char *lit, long long got)
{
	const char *p = lit;
	bool neg = false;
	if (*p == '-' || *p == '+')
		neg = *p++ == '-';
	unsigned base = 10;
	if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
		base = 16;
		p += 2;
	}
	unsigned long long v = 0;
	for (; *p != '\0'; p++) {
		unsigned d;
		if (*p >= '0' && *p <= '9')
			d = (unsigned)(*p - '0');
		else if (*p >= 'a' && *p <= 'f')
			d = (unsigned)(*p - 'a' + 10);
		else if (*p >= 'A' && *p <= 'F')
			d = (unsigned)(*p - 'A' + 10);
		else
			return false;
		if (d >= base)
			return false;
		if (v > (~0ULL - d) / base)
			return true; /* too big for anything; libconfig cannot hold it */
		v = v * base + d;
	}
	if (neg ? v <= 2147483648ULL : v <= 2147483647ULL)
		return false;
	unsigned long long wrapped = neg ? 0ULL - v : v;
	return (wrapped & 0xffffffffULL) == ((unsigned long long)got & 0xffffffffULL);
}

/* Parse an integer row: type, libconfig wrap-around, then bounds. */
static bool int_parse(struct loader *ld, const struct setting *row, const config_setting_t *s)
{
	long long v;
	int type = config_setting_type(s);
	if (type == CONFIG_TYPE_INT)
		v = config_setting_get_int(s);
	else if (type == CONFIG_TYPE_INT64)
		v = config_setting_get_int64(s);
	else
		return fail(ld, s, row->path, "must be an integer (got %s)", type_name(type));

	char lit[64];
	if (type == CONFIG_TYPE_INT && config_setting_source_file(s) == NULL && ld->text != NULL &&
	    literal_find(ld->text, config_setting_source_line(s), config_setting_name(s), lit,
	                 sizeof(lit)) &&
	    literal_wrapped(lit, v))
		return fail(ld, s, row->path, "must be between %lld and %lld (got %s)", row->min,
		            row->max, lit);
	if (v < row->min || v > row->max)
		return fail(ld, s, row->path, "must be between %lld and %lld (got %lld)", row->min,
		            row->max, v);
	*field_int(ld->cfg, row) = (int)v;
	return true;
}

/* Parse a string row: type, then length bounds. */
static bool string_parse(struct loader *ld, const struct setting *row, const config_setting_t *s)
{
	int type = config_setting_type(s);
	if (type != CONFIG_TYPE_STRING)
		return fail(ld, s, row->path, "must be a string (got %s)", type_name(type));
	const char *v = config_setting_get_string(s);
	size_t n = strlen(v);
	if ((long long)n < row->min || (long long)n > row->max)
		return fail(ld, s, row->path, "must be %lld to %lld characters long (got %zu)",
		            row->min, row->max, n);
	char **field = field_str(ld->cfg, row);
	free(*field);
	*field = xstrdup(v);
	return true;
}

/* Parse setting s with the handler its row's kind calls for. */
static bool row_parse(struct loader *ld, const struct setting *row, const config_setting_t *s)
{
	switch (row->kind) {
	case KIND_INT:
		return int_parse(ld, row, s);
	case KIND_STRING:
		return string_parse(ld, row, s);
	case KIND_CUSTOM:
		return row->parse(ld, row, s);
	}
	return fail(ld, s, row->path, "internal error: bad setting kind");
}

/* Give every row its default; the struct must be zeroed. */
static void defaults_apply(struct config *cfg)
{
	for (size_t i = 0; i < N_SETTINGS; i++) {
		const struct setting *row = &settings[i];
		switch (row->kind) {
		case KIND_INT:
			*field_int(cfg, row) = (int)row->def;
			break;
		case KIND_STRING:
			*field_str(cfg, row) = xstrdup(row->def_str);
			break;
		case KIND_CUSTOM:
			row->set_default(cfg);
			break;
		}
	}
}

/* The row whose path is exactly path, or NULL. */
static const struct setting *setting_find(const char *path)
{
	for (size_t i = 0; i < N_SETTINGS; i++)
		if (strcmp(settings[i].path, path) == 0)
			return &settings[i];
	return NULL;
}

/* True when path names a group that holds settings, e.g. "limits". */
static bool group_known(const char *path)
{
	size_t n = strlen(path);
	for (size_t i = 0; i < N_SETTINGS; i++)
		if (strncmp(settings[i].path, path, n) == 0 && settings[i].path[n] == '.')
			return true;
	return false;
}

/* Levenshtein distance between two short strings; SIZE_MAX when either is too long. */
static size_t edit_distance(const char *a, size_t alen, const char *b, size_t blen)
{
	enum { MAXLEN = 64 };
	size_t prev[MAXLEN + 1], cur[MAXLEN + 1];
	if (alen > MAXLEN || blen > MAXLEN)
		return (size_t)-1;
	for (size_t j = 0; j <= blen; j++)
		prev[j] = j;
	for (size_t i = 1; i <= alen; i++) {
		cur[0] = i;
		for (size_t j = 1; j <= blen; j++) {
			size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
			size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
			size_t best = del < ins ? del : ins;
			cur[j] = best < sub ? best : sub;
		}
		memcpy(prev, cur, (blen + 1) * sizeof(prev[0]));
	}
	return prev[blen];
}

/*
 * The known path closest to an unknown one, into buf: a row path or group
 * within two edits, or a row whose last part is the unknown key's last part
 * (a setting put in the wrong group); false when nothing is close.
 */
static bool path_suggest(const char *path, char *buf, size_t cap)
{
	size_t plen = strlen(path), best = 3;
	const char *last = strrchr(path, '.');
	last = last ? last + 1 : path;
	for (size_t i = 0; i < N_SETTINGS; i++) {
		const char *rp = settings[i].path;
		const char *rlast = strrchr(rp, '.');
		if (strcmp(rlast ? rlast + 1 : rp, last) == 0 && best > 1) {
			key_format(buf, cap, "%s", rp);
			best = 1;
		}
		/* Compare with the whole path and with each group above it. */
		for (size_t n = 1; rp[n - 1] != '\0'; n++) {
			if (rp[n] != '\0' && rp[n] != '.')
				continue;
			size_t d = edit_distance(path, plen, rp, n);
			if (d < best && d < n) {
				key_format(buf, cap, "%.*s", (int)n, rp);
				best = d;
			}
		}
	}
	return best < 3;
}

/* Record an "unknown key" error for s, with a suggestion when one is close. */
static bool unknown_key(struct loader *ld, const config_setting_t *s, const char *path,
                        const char *hint)
{
	char q[KEY_MAX + 8];
	if (hint != NULL)
		return fail(ld, s, NULL, "unknown key %s (%s)", quote(path, q, sizeof(q)), hint);
	return fail(ld, s, NULL, "unknown key %s", quote(path, q, sizeof(q)));
}

/*
 * An unknown member name inside a group whose members are listed in table
 * (n rows of stride bytes, each starting with its name): refuse it, with a
 * did-you-mean when a listed name is within two edits.
 */
static bool unknown_member(struct loader *ld, const config_setting_t *s, const char *sub,
                           const char *name, const void *table, size_t n, size_t stride)
{
	size_t best = 3, nlen = strlen(name);
	const char *near = NULL;
	for (size_t k = 0; k < n; k++) {
		const char *cand = *(const char *const *)((const char *)table + k * stride);
		size_t d = edit_distance(name, nlen, cand, strlen(cand));
		if (d < best && d < strlen(cand)) {
			best = d;
			near = cand;
		}
	}
	if (near != NULL) {
		char hint[64];
		key_format(hint, sizeof(hint), "did you mean \"%s\"?", near);
		return unknown_key(ld, s, sub, hint);
	}
	return unknown_key(ld, s, sub, NULL);
}

/* Walk the members of a group, sending each to its row or to a nested walk. */
static bool group_walk(struct loader *ld, const config_setting_t *group, const char *prefix)
{
	int n = config_setting_length(group);
	for (int i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(group, (unsigned)i);
		char path[KEY_MAX];
		key_format(path, sizeof(path), "%s%s%s", prefix, prefix[0] ? "." : "",
		           config_setting_name(s));

		const struct setting *row = setting_find(path);
		if (row != NULL) {
			if (!row_parse(ld, row, s))
				return false;
		} else if (group_known(path)) {
			if (!config_setting_is_group(s))
				return fail(ld, s, path, "must be a group { ... } (got %s)",
				            type_name(config_setting_type(s)));
			if (!group_walk(ld, s, path))
				return false;
		} else {
			char near[KEY_MAX], hint[KEY_MAX + 32];
			if (path_suggest(path, near, sizeof(near))) {
				key_format(hint, sizeof(hint), "did you mean \"%s\"?", near);
				return unknown_key(ld, s, path, hint);
			}
			return unknown_key(ld, s, path, NULL);
		}
	}
	return true;
}

/* listen: the default is one loopback address. */
static void listen_default(struct config *cfg)
{
	cfg->listen = xcalloc(1, sizeof(*cfg->listen));
	cfg->listen[0] = xstrdup("127.0.0.1:7433");
	cfg->n_listen = 1;
}

/* listen: free the list. */
static void listen_release(struct config *cfg)
{
	for (size_t i = 0; i < cfg->n_listen; i++)
		free(cfg->listen[i]);
	free(cfg->listen);
	cfg->listen = NULL;
	cfg->n_listen = 0;
}

/* True when a host name (not an address in brackets) looks usable. */
static bool host_ok(const char *host, size_t len)
{
	if (len == 0 || len > LISTEN_HOST_MAX)
		return false;
	bool dotted_digits = true;
	for (size_t i = 0; i < len; i++) {
		char ch = host[i];
		if (!((ch >= '0' && ch <= '9') || ch == '.'))
			dotted_digits = false;
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '.' || ch == '-' || ch == '_'))
			return false;
	}
	if (dotted_digits) {
		/* Looks like an IPv4 address, so it must be a valid one. */
		char buf[LISTEN_HOST_MAX + 1];
		struct in_addr a4;
		memcpy(buf, host, len);
		buf[len] = '\0';
		return inet_pton(AF_INET, buf, &a4) == 1;
	}
	return true;
}

/* Check one "host:port" listen entry; key names it in messages. */
static bool listen_check(struct loader *ld, const config_setting_t *s, unsigned line,
                         const char *key, const char *v)
{
	char q[96];
	const char *port;
	if (v[0] == '\0')
		return fail_line(ld, s, line, key, "must not be empty (want \"host:port\")");
	if (v[0] == '[') {
		const char *rb = strchr(v, ']');
		if (rb == NULL)
			return fail_line(ld, s, line, key, "%s has no closing ']'",
			                 quote(v, q, sizeof(q)));
		size_t len = (size_t)(rb - v - 1);
		char buf[INET6_ADDRSTRLEN + 1];
		struct in6_addr a6;
		if (len == 0 || len >= sizeof(buf))
			return fail_line(ld, s, line, key, "%s is not an IPv6 address in brackets",
			                 quote(v, q, sizeof(q)));
		memcpy(buf, v + 1, len);
		buf[len] = '\0';
		if (inet_pton(AF_INET6, buf, &a6) != 1)
			return fail_line(ld, s, line, key, "%s is not an IPv6 address in brackets",
			                 quote(v, q, sizeof(q)));
		if (rb[1] != ':')
			return fail_line(ld, s, line, key, "%s has no port (want \"[v6]:port\")",
			                 quote(v, q, sizeof(q)));
		port = rb + 2;
	} else {
		const char *colon = strrchr(v, ':');
		if (colon == NULL)
			return fail_line(ld, s, line, key, "%s has no port (want \"host:port\")",
			                 quote(v, q, sizeof(q)));
		if (memchr(v, ':', (size_t)(colon - v)) != NULL)
			return fail_line(ld, s, line, key,
			                 "%s: an IPv6 address needs brackets, e.g. \"[::1]:7433\"",
			                 quote(v, q, sizeof(q)));
		if (colon == v)
			return fail_line(ld, s, line, key,
			                 "%s has no host (use 0.0.0.0 or [::] for every address)",
			                 quote(v, q, sizeof(q)));
		if (!host_ok(v, (size_t)(colon - v)))
			return fail_line(ld, s, line, key,
			                 "%s does not start with a valid host name or address",
			                 quote(v, q, sizeof(q)));
		port = colon + 1;
	}

	if (port[0] == '\0')
		return fail_line(ld, s, line, key, "%s has no port (want \"host:port\")",
		                 quote(v, q, sizeof(q)));
	unsigned long num = 0;
	for (const char *p = port; *p != '\0'; p++) {
		if (p - port == 5)
			num = 65536; /* more than five digits, even "000007433", is out of range */
		if (*p < '0' || *p > '9')
			return fail_line(ld, s, line, key, "%s: port must be a number",
			                 quote(v, q, sizeof(q)));
		if (num <= 65535)
			num = num * 10 + (unsigned long)(*p - '0');
	}
	if (num > 65535) {
		char qp[24];
		return fail_line(ld, s, line, key, "port must be between 0 and 65535 (got %s)",
		                 quote(port, qp, sizeof(qp)));
	}
	return true;
}

/* listen: an array or list of 1..64 "host:port" strings. */
static bool listen_parse(struct loader *ld, const struct setting *row, const config_setting_t *s)
{
	struct config *cfg = ld->cfg;
	if (!config_setting_is_array(s) && !config_setting_is_list(s))
		return fail(ld, s, row->path,
		            "must be a list of \"host:port\" strings, e.g. [\"127.0.0.1:7433\"] "
		            "(got %s)",
		            type_name(config_setting_type(s)));
	int n = config_setting_length(s);
	if (n < 1 || n > LISTEN_MAX)
		return fail(ld, s, row->path, "must have 1 to %d entries (got %d)", LISTEN_MAX, n);

	listen_release(cfg);
	cfg->listen = xcalloc((size_t)n, sizeof(*cfg->listen));
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		char key[KEY_MAX];
		key_format(key, sizeof(key), "%s[%d]", row->path, i);
		if (config_setting_type(e) != CONFIG_TYPE_STRING)
			return fail(ld, e, key, "must be a \"host:port\" string (got %s)",
			            type_name(config_setting_type(e)));
		const char *v = config_setting_get_string(e);
		unsigned line = string_line(ld, e, s);
		if (!listen_check(ld, e, line, key, v))
			return false;
		/* The same address twice would fail to bind; port 0 picks a new port each time. */
		for (size_t j = 0; j < cfg->n_listen; j++) {
			const char *colon = strrchr(v, ':');
			if (strcmp(cfg->listen[j], v) == 0 && strcmp(colon, ":0") != 0)
				return fail_line(ld, e, line, key,
				                 "\"%s\" is already listed as %s[%zu]", v,
				                 row->path, j);
		}
		cfg->listen[cfg->n_listen++] = xstrdup(v);
	}
	return true;
}

/* listen: equal when the same addresses appear in the same order. */
static bool listen_same(const struct config *a, const struct config *b)
{
	if (a->n_listen != b->n_listen)
		return false;
	for (size_t i = 0; i < a->n_listen; i++)
		if (strcmp(a->listen[i], b->listen[i]) != 0)
			return false;
	return true;
}

/* admin.listen: the health and metrics endpoint on the loopback address. */
static void admin_listen_default(struct config *cfg)
{
	cfg->admin_listen = xstrdup("127.0.0.1:9433");
}

/* admin.listen: free the string. */
static void admin_listen_release(struct config *cfg)
{
	free(cfg->admin_listen);
	cfg->admin_listen = NULL;
}

/* admin.listen: one "host:port" string with the rules of listen, or "" for off. */
static bool admin_listen_parse(struct loader *ld, const struct setting *row,
                               const config_setting_t *s)
{
	const char *v = string_of(ld, s, row->path);
	if (v == NULL)
		return false;
	if (v[0] != '\0' && !listen_check(ld, s, config_setting_source_line(s), row->path, v))
		return false;
	free(ld->cfg->admin_listen);
	ld->cfg->admin_listen = xstrdup(v);
	return true;
}

/* admin.listen: equal when the strings are. */
static bool admin_listen_same(const struct config *a, const struct config *b)
{
	return strcmp(a->admin_listen, b->admin_listen) == 0;
}

/* tls: off. */
static void tls_default(struct config *cfg)
{
	cfg->tls_enabled = false;
	cfg->tls_cert = NULL;
	cfg->tls_key = NULL;
	cfg->tls_ca = NULL;
	cfg->tls_require = true;
}

/* tls: free the paths. */
static void tls_release(struct config *cfg)
{
	free(cfg->tls_cert);
	free(cfg->tls_key);
	free(cfg->tls_ca);
	tls_default(cfg);
}

/* tls.cert, tls.key, tls.ca: a non-empty path of at most PATH_MAX characters. */
static bool tls_path(struct loader *ld, const config_setting_t *s, const char *key, char **out)
{
	const char *v = string_of(ld, s, key);
	if (v == NULL)
		return false;
	size_t n = strlen(v);
	if (n == 0 || n > 4096)
		return fail(ld, s, key, "must be a file path of 1 to 4096 characters (got %zu)", n);
	free(*out);
	*out = xstrdup(v);
	return true;
}

/*
 * tls: the group { cert, key, ca, require }.  cert and key are required
 * when the group is there; the files themselves are read by the daemon
 * (daemon/tls.c), since this module opens nothing but the config.
 */
static bool tls_parse(struct loader *ld, const struct setting *row, const config_setting_t *s)
{
	struct config *cfg = ld->cfg;
	if (!config_setting_is_group(s))
		return fail(ld, s, row->path, "must be a group { ... } (got %s)",
		            type_name(config_setting_type(s)));
	tls_release(cfg);
	cfg->tls_enabled = true;
	int n = config_setting_length(s);
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		const char *name = config_setting_name(e);
		char key[KEY_MAX];
		key_format(key, sizeof(key), "tls.%s", name);
		bool ok;
		if (strcmp(name, "cert") == 0) {
			ok = tls_path(ld, e, key, &cfg->tls_cert);
		} else if (strcmp(name, "key") == 0) {
			ok = tls_path(ld, e, key, &cfg->tls_key);
		} else if (strcmp(name, "ca") == 0) {
			ok = tls_path(ld, e, key, &cfg->tls_ca);
		} else if (strcmp(name, "require") == 0) {
			int type = config_setting_type(e);
			if (type != CONFIG_TYPE_BOOL)
				return fail(ld, e, key, "must be true or false (got %s)",
				            type_name(type));
			cfg->tls_require = config_setting_get_bool(e) != 0;
			ok = true;
		} else {
			return unknown_key(ld, e, key, "tls takes cert, key, ca and require");
		}
		if (!ok)
			return false;
	}
	if (cfg->tls_cert == NULL)
		return fail(ld, s, "tls.cert", "is required when tls is set");
	if (cfg->tls_key == NULL)
		return fail(ld, s, "tls.key", "is required when tls is set");
	return true;
}

/* Equal strings, either of which may be NULL. */
static bool str_same_null(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

/* tls: equal when every key is. */
static bool tls_same(const struct config *a, const struct config *b)
{
	return a->tls_enabled == b->tls_enabled && a->tls_require == b->tls_require &&
	       str_same_null(a->tls_cert, b->tls_cert) && str_same_null(a->tls_key, b->tls_key) &&
	       str_same_null(a->tls_ca, b->tls_ca);
}

/* exporters: none unless configured. */
static void exporters_default(struct config *cfg)
{
	cfg->exporters = NULL;
	cfg->n_exporters = 0;
}

/* exporters and operators: free a list of accounts and empty it. */
static void accounts_release(struct config_exporter **list, size_t *n)
{
	for (size_t i = 0; i < *n; i++) {
		free((*list)[i].id);
		free((*list)[i].name);
	}
	free(*list);
	*list = NULL;
	*n = 0;
}

/* exporters: free the list. */
static void exporters_release(struct config *cfg)
{
	accounts_release(&cfg->exporters, &cfg->n_exporters);
}

/* An exporter field handler: check s and store it into x. */
typedef bool exporter_field_fn(struct loader *ld, const config_setting_t *s, const char *key,
                               struct config_exporter *x);

/* Require s to be a string; its value, or NULL after recording the error. */
static const char *string_of(struct loader *ld, const config_setting_t *s, const char *key)
{
	int type = config_setting_type(s);
	if (type != CONFIG_TYPE_STRING) {
		fail(ld, s, key, "must be a string (got %s)", type_name(type));
		return NULL;
	}
	return config_setting_get_string(s);
}

/*
 * Check an id (of an exporter, operator or webhook) v, the value of s dated
 * at line: 1..64 characters of A-Z a-z 0-9 . _ -
 */
static bool id_check(struct loader *ld, const config_setting_t *s, unsigned line, const char *key,
                     const char *v)
{
	size_t n = strlen(v);
	if (n == 0)
		return fail_line(ld, s, line, key, "must not be empty");
	if (n > CONFIG_ID_MAX)
		return fail_line(ld, s, line, key, "must be at most %d characters (got %zu)",
		                 CONFIG_ID_MAX, n);
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)v[i];
		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-')
			continue;
		char q[96];
		if (ch >= 0x20 && ch < 0x7f)
			return fail_line(ld, s, line, key,
			                 "%s may only contain A-Z a-z 0-9 . _ - (found '%c' at "
			                 "position %zu)",
			                 quote(v, q, sizeof(q)), ch, i + 1);
		return fail_line(ld, s, line, key,
		                 "%s may only contain A-Z a-z 0-9 . _ - (found byte 0x%02x at "
		                 "position %zu)",
		                 quote(v, q, sizeof(q)), ch, i + 1);
	}
	return true;
}

/* exporters[i].id: 1..64 characters of A-Z a-z 0-9 . _ - */
static bool exporter_id(struct loader *ld, const config_setting_t *s, const char *key,
                        struct config_exporter *x)
{
	const char *v = string_of(ld, s, key);
	if (v == NULL || !id_check(ld, s, config_setting_source_line(s), key, v))
		return false;
	x->id = xstrdup(v);
	return true;
}

/*
 * Count the code points of a UTF-8 string; -1 when it is not valid UTF-8
 * (overlong forms, surrogates and values past U+10FFFF count as invalid),
 * -2 when it holds a control character.
 */
static long utf8_chars(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	long count = 0;
	while (*p != '\0') {
		unsigned c = *p, need, cp;
		if (c < 0x80) {
			if (c < 0x20 || c == 0x7f)
				return -2;
			p++;
			count++;
			continue;
		} else if (c >= 0xc2 && c <= 0xdf) {
			need = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			need = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			need = 3;
			cp = c & 0x07;
		} else {
			return -1;
		}
		for (unsigned k = 1; k <= need; k++) {
			if ((p[k] & 0xc0) != 0x80)
				return -1;
			cp = cp << 6 | (p[k] & 0x3f);
		}
		if ((need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return -1;
		if (cp >= 0x80 && cp < 0xa0)
			return -2; /* C1 controls */
		p += need + 1;
		count++;
	}
	return count;
}

/* exporters[i].name: 1..128 characters of UTF-8 text without control characters. */
static bool exporter_name(struct loader *ld, const config_setting_t *s, const char *key,
                          struct config_exporter *x)
{
	const char *v = string_of(ld, s, key);
	if (v == NULL)
		return false;
	long n = utf8_chars(v);
	if (n == -1)
		return fail(ld, s, key, "must be valid UTF-8");
	if (n == -2)
		return fail(ld, s, key, "must not contain control characters");
	if (n == 0)
		return fail(ld, s, key, "must not be empty");
	if (n > EXPORTER_NAME_MAX)
		return fail(ld, s, key, "must be at most %d characters (got %ld)",
		            EXPORTER_NAME_MAX, n);
	x->name = xstrdup(v);
	return true;
}

/* exporters[i].token_sha256: the token's SHA-256 as 64 hex digits. */
static bool exporter_token(struct loader *ld, const config_setting_t *s, const char *key,
                           struct config_exporter *x)
{
	static const char how[] = "make it with: printf %s \"$TOKEN\" | sha256sum";
	const char *v = string_of(ld, s, key);
	if (v == NULL)
		return false;
	size_t n = strlen(v);
	if (n != 2 * AUTH_DIGEST_LEN)
		return fail(ld, s, key,
		            "must be 64 hex digits, the SHA-256 of the token (got %zu "
		            "characters; %s)",
		            n, how);
	if (!auth_parse_hex(v, x->token_sha256))
		return fail(ld, s, key,
		            "must be 64 hex digits, the SHA-256 of the token (got "
		            "a character that is not 0-9 a-f A-F; %s)",
		            how);
	return true;
}

/* The keys of one exporter entry; all are required. */
static const struct exporter_key {
	const char *name;
	exporter_field_fn *parse;
} exporter_keys[] = {
    {"id", exporter_id},
    {"name", exporter_name},
    {"token_sha256", exporter_token},
};

#define N_EXPORTER_KEYS (sizeof(exporter_keys) / sizeof(exporter_keys[0]))

/*
 * Parse one exporter (or operator: the noun says which, for messages) group
 * e, named key in messages, into x.
 */
static bool exporter_parse(struct loader *ld, const config_setting_t *e, const char *key,
                           const char *noun, struct config_exporter *x)
{
	bool seen[N_EXPORTER_KEYS] = {false};
	int n = config_setting_length(e);
	for (int i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(e, (unsigned)i);
		const char *name = config_setting_name(s);
		char sub[KEY_MAX];
		key_format(sub, sizeof(sub), "%s.%s", key, name);
		size_t k = 0;
		while (k < N_EXPORTER_KEYS && strcmp(exporter_keys[k].name, name) != 0)
			k++;
		if (k < N_EXPORTER_KEYS) {
			if (!exporter_keys[k].parse(ld, s, sub, x))
				return false;
			seen[k] = true;
			continue;
		}
		if (strcmp(name, "token") == 0)
			return unknown_key(ld, s, sub,
			                   "store the token's SHA-256 as token_sha256, never the "
			                   "token itself");
		return unknown_member(ld, s, sub, name, exporter_keys, N_EXPORTER_KEYS,
		                      sizeof(exporter_keys[0]));
	}
	for (size_t k = 0; k < N_EXPORTER_KEYS; k++) {
		if (seen[k])
			continue;
		char sub[KEY_MAX];
		key_format(sub, sizeof(sub), "%s.%s", key, exporter_keys[k].name);
		return fail(ld, e, sub, "missing (every %s needs id, name and token_sha256)", noun);
	}
	return true;
}

/*
 * exporters and operators: a list of { id; name; token_sha256; } groups
 * with ids unique in the list, into *list and *n; noun names an entry.
 */
static bool accounts_parse(struct loader *ld, const struct setting *row, const config_setting_t *s,
                           const char *noun, struct config_exporter **list, size_t *n_list)
{
	if (!config_setting_is_list(s) && !config_setting_is_array(s))
		return fail(ld, s, row->path,
		            "must be a list of groups, e.g. ( { id = \"...\"; name = \"...\"; "
		            "token_sha256 = \"...\"; } ) (got %s)",
		            type_name(config_setting_type(s)));
	int n = config_setting_length(s);
	accounts_release(list, n_list);
	*list = xcalloc((size_t)n, sizeof(**list));
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		char key[KEY_MAX];
		key_format(key, sizeof(key), "%s[%d]", row->path, i);
		if (!config_setting_is_group(e))
			return fail(ld, e, key,
			            "must be a group { id = \"...\"; name = \"...\"; "
			            "token_sha256 = \"...\"; } (got %s)",
			            type_name(config_setting_type(e)));
		/* Count the entry first so that config_free releases what it holds. */
		struct config_exporter *x = &(*list)[(*n_list)++];
		if (!exporter_parse(ld, e, key, noun, x))
			return false;
		for (size_t j = 0; j + 1 < *n_list; j++) {
			if (strcmp((*list)[j].id, x->id) != 0)
				continue;
			char idkey[KEY_MAX];
			key_format(idkey, sizeof(idkey), "%s.id", key);
			const config_setting_t *ids = config_setting_get_member(e, "id");
			return fail(ld, ids ? ids : e, idkey,
			            "duplicate %s id \"%s\" (already used by %s[%zu])", noun, x->id,
			            row->path, j);
		}
	}
	return true;
}

/* exporters: a list of { id; name; token_sha256; } groups with unique ids. */
static bool exporters_parse(struct loader *ld, const struct setting *row, const config_setting_t *s)
{
	return accounts_parse(ld, row, s, "exporter", &ld->cfg->exporters, &ld->cfg->n_exporters);
}

/* exporters and operators: equal when the same entries appear in the same order. */
static bool accounts_same(const struct config_exporter *a, size_t na,
                          const struct config_exporter *b, size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++) {
		const struct config_exporter *x = &a[i], *y = &b[i];
		if (strcmp(x->id, y->id) != 0 || strcmp(x->name, y->name) != 0 ||
		    memcmp(x->token_sha256, y->token_sha256, AUTH_DIGEST_LEN) != 0)
			return false;
	}
	return true;
}

/* exporters: equal when the same entries appear in the same order. */
static bool exporters_same(const struct config *a, const struct config *b)
{
	return accounts_same(a->exporters, a->n_exporters, b->exporters, b->n_exporters);
}

/* operators: none unless configured. */
static void operators_default(struct config *cfg)
{
	cfg->operators = NULL;
	cfg->n_operators = 0;
}

/* operators: free the list. */
static void operators_release(struct config *cfg)
{
	accounts_release(&cfg->operators, &cfg->n_operators);
}

/* operators: the same shape and checks as exporters, ids unique among operators. */
static bool operators_parse(struct loader *ld, const struct setting *row, const config_setting_t *s)
{
	return accounts_parse(ld, row, s, "operator", &ld->cfg->operators, &ld->cfg->n_operators);
}

/* operators: equal when the same entries appear in the same order. */
static bool operators_same(const struct config *a, const struct config *b)
{
	return accounts_same(a->operators, a->n_operators, b->operators, b->n_operators);
}

/* The notification kinds that webhooks[i].kinds may name (see docs/PROTOCOL.md). */
static const char *const notification_kinds[] = {
    "order.status",        "order.anomaly", "shipment.status", "shipment.eta",
    "alert.customs_dwell", "alert.overdue", "alert.stale",
};

#define N_NOTIFICATION_KINDS (sizeof(notification_kinds) / sizeof(notification_kinds[0]))

/* webhooks: none unless configured. */
static void webhooks_default(struct config *cfg)
{
	cfg->webhooks = NULL;
	cfg->n_webhooks = 0;
}

/* Free n strings of a list and the list. */
static void strings_free(char **list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(list[i]);
	free(list);
}

/* webhooks: free every entry and what it holds. */
static void webhooks_release(struct config *cfg)
{
	for (size_t i = 0; i < cfg->n_webhooks; i++) {
		struct config_webhook *w = &cfg->webhooks[i];
		free(w->id);
		free(w->url);
		free(w->host);
		free(w->path);
		strings_free(w->secrets, w->n_secrets);
		strings_free(w->exporters, w->n_exporters);
		strings_free(w->kinds, w->n_kinds);
	}
	free(cfg->webhooks);
	cfg->webhooks = NULL;
	cfg->n_webhooks = 0;
}

/* Check one item v of a string list, element s dated at line; false with the error recorded. */
typedef bool item_check_fn(struct loader *ld, const config_setting_t *s, unsigned line,
                           const char *key, const char *v);

/* What a list of strings in a webhook entry must be. */
struct string_list_rule {
	const char *example; /* shown when the value is not a list */
	const char *empty;   /* said when the list is empty */
	size_t max;          /* most entries */
	item_check_fn *check;
	bool secret; /* never quote the values back */
};

/*
 * Parse s, an array or list of 1..rule->max distinct strings that each pass
 * rule->check, into fresh copies at *out and *n.
 */
static bool strings_parse(struct loader *ld, const config_setting_t *s, const char *key,
                          const struct string_list_rule *rule, char ***out, size_t *n)
{
	if (!config_setting_is_array(s) && !config_setting_is_list(s))
		return fail(ld, s, key, "must be a list, e.g. %s (got %s)", rule->example,
		            type_name(config_setting_type(s)));
	int len = config_setting_length(s);
	if (len == 0)
		return fail(ld, s, key, "%s", rule->empty);
	if ((size_t)len > rule->max)
		return fail(ld, s, key, "must have at most %zu entries (got %d)", rule->max, len);
	strings_free(*out, *n);
	*n = 0;
	*out = xcalloc((size_t)len, sizeof(**out));
	for (int i = 0; i < len; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		char sub[KEY_MAX];
		key_format(sub, sizeof(sub), "%s[%d]", key, i);
		const char *v = string_of(ld, e, sub);
		if (v == NULL)
			return false;
		unsigned line = string_line(ld, e, s);
		if (!rule->check(ld, e, line, sub, v))
			return false;
		for (size_t j = 0; j < *n; j++) {
			if (strcmp((*out)[j], v) != 0)
				continue;
			char q[96];
			if (rule->secret)
				return fail_line(ld, e, line, sub, "is the same as %s[%zu]", key,
				                 j);
			return fail_line(ld, e, line, sub, "%s is listed twice",
			                 quote(v, q, sizeof(q)));
		}
		/* Count it first so that config_free releases it on a later error. */
		(*out)[(*n)++] = xstrdup(v);
	}
	return true;
}

/* An exporter id in webhooks[i].exporters; that it is configured is checked at the end. */
static bool item_exporter(struct loader *ld, const config_setting_t *s, unsigned line,
                          const char *key, const char *v)
{
	return id_check(ld, s, line, key, v);
}

/* A notification kind in webhooks[i].kinds. */
static bool item_kind(struct loader *ld, const config_setting_t *s, unsigned line, const char *key,
                      const char *v)
{
	for (size_t k = 0; k < N_NOTIFICATION_KINDS; k++)
		if (strcmp(notification_kinds[k], v) == 0)
			return true;
	char q[96];
	return fail_line(ld, s, line, key,
	                 "must be one of order.status, order.anomaly, shipment.status, "
	                 "shipment.eta, alert.customs_dwell, alert.overdue, alert.stale (got %s)",
	                 quote(v, q, sizeof(q)));
}

/* A signing secret: 16..1024 characters of UTF-8 text; never quoted back. */
static bool item_secret(struct loader *ld, const config_setting_t *s, unsigned line,
                        const char *key, const char *v)
{
	long n = utf8_chars(v);
	if (n == -1)
		return fail_line(ld, s, line, key, "must be valid UTF-8");
	if (n == -2)
		return fail_line(ld, s, line, key, "must not contain control characters");
	if (n < WEBHOOK_SECRET_MIN)
		return fail_line(ld, s, line, key,
		                 "must be at least %d characters (got %ld; make one with: openssl "
		                 "rand -hex 32)",
		                 WEBHOOK_SECRET_MIN, n);
	if (n > WEBHOOK_SECRET_MAX)
		return fail_line(ld, s, line, key, "must be at most %d characters (got %ld)",
		                 WEBHOOK_SECRET_MAX, n);
	return true;
}

/* The lists of a webhook entry. */
static const struct string_list_rule secrets_rule = {
    .example = "[\"new secret\", \"old secret\"]",
    .empty = "must have 1 or 2 entries (got 0)",
    .max = 2,
    .check = item_secret,
    .secret = true,
};
static const struct string_list_rule hook_exporters_rule = {
    .example = "[\"kivu-coffee\"]",
    .empty = "must name at least one exporter (leave it out for all)",
    .max = WEBHOOK_EXPORTERS_MAX,
    .check = item_exporter,
    .secret = false,
};
static const struct string_list_rule hook_kinds_rule = {
    .example = "[\"order.status\", \"shipment.status\"]",
    .empty = "must name at least one kind (leave it out for all)",
    .max = N_NOTIFICATION_KINDS,
    .check = item_kind,
    .secret = false,
};

/* A webhooks entry's field handler: check s and store it into w. */
typedef bool webhook_field_fn(struct loader *ld, const config_setting_t *s, const char *key,
                              struct config_webhook *w);

/* webhooks[i].id: like an exporter id. */
static bool webhook_id(struct loader *ld, const config_setting_t *s, const char *key,
                       struct config_webhook *w)
{
	const char *v = string_of(ld, s, key);
	if (v == NULL || !id_check(ld, s, config_setting_source_line(s), key, v))
		return false;
	w->id = xstrdup(v);
	return true;
}

/*
 * Take the port of a url apart: 1 to 5 digits, 1..65535; false with the
 * error recorded.
 */
static bool url_port(struct loader *ld, const config_setting_t *s, const char *key, const char *p,
                     size_t len, int *port)
{
	char q[24], buf[16];
	long num = 0;
	key_format(buf, sizeof(buf), "%.*s", (int)(len < 15 ? len : 15), p);
	if (len == 0 || len > 5)
		return fail(ld, s, key, "port must be between 1 and 65535 (got %s)",
		            quote(buf, q, sizeof(q)));
	for (size_t i = 0; i < len; i++) {
		if (p[i] < '0' || p[i] > '9')
			return fail(ld, s, key, "port must be a number (got %s)",
			            quote(buf, q, sizeof(q)));
		num = num * 10 + (p[i] - '0');
	}
	if (num < 1 || num > 65535)
		return fail(ld, s, key, "port must be between 1 and 65535 (got %s)",
		            quote(buf, q, sizeof(q)));
	*port = (int)num;
	return true;
}

/*
 * webhooks[i].url: "http://" or "https://", a host (a name, an IPv4
 * address or an IPv6 address in brackets), an optional port and an optional
 * path with query; printable ASCII only, no user or password, no fragment.
 */
static bool webhook_url(struct loader *ld, const config_setting_t *s, const char *key,
                        struct config_webhook *w)
{
	const char *v = string_of(ld, s, key);
	if (v == NULL)
		return false;
	char q[96];
	size_t n = strlen(v);
	if (n > WEBHOOK_URL_MAX)
		return fail(ld, s, key, "must be at most %d characters (got %zu)", WEBHOOK_URL_MAX,
		            n);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)v[i] <= 0x20 || (unsigned char)v[i] >= 0x7f)
			return fail(ld, s, key,
			            "%s may only hold printable ASCII without spaces "
			            "(percent-encode the rest)",
			            quote(v, q, sizeof(q)));
	const char *rest;
	if (strncmp(v, "http://", 7) == 0) {
		w->https = false;
		w->port = 80;
		rest = v + 7;
	} else if (strncmp(v, "https://", 8) == 0) {
		w->https = true;
		w->port = 443;
		rest = v + 8;
	} else {
		return fail(ld, s, key, "%s must start with http:// or https://",
		            quote(v, q, sizeof(q)));
	}

	/* The authority runs to the first "/", "?" or "#". */
	size_t alen = strcspn(rest, "/?#");
	const char *host = rest, *port = NULL;
	size_t hlen;
	if (memchr(rest, '@', alen) != NULL)
		return fail(ld, s, key,
		            "%s must not hold a user or password (the secret signs each request)",
		            quote(v, q, sizeof(q)));
	if (alen == 0)
		return fail(ld, s, key, "%s has no host", quote(v, q, sizeof(q)));
	if (rest[0] == '[') {
		const char *rb = memchr(rest, ']', alen);
		char buf[INET6_ADDRSTRLEN + 1];
		struct in6_addr a6;
		if (rb == NULL)
			return fail(ld, s, key, "%s has no closing ']'", quote(v, q, sizeof(q)));
		host = rest + 1;
		hlen = (size_t)(rb - host);
		if (hlen == 0 || hlen >= sizeof(buf))
			return fail(ld, s, key, "%s is not an IPv6 address in brackets",
			            quote(v, q, sizeof(q)));
		memcpy(buf, host, hlen);
		buf[hlen] = '\0';
		if (inet_pton(AF_INET6, buf, &a6) != 1)
			return fail(ld, s, key, "%s is not an IPv6 address in brackets",
			            quote(v, q, sizeof(q)));
		if (rb + 1 < rest + alen) {
			if (rb[1] != ':')
				return fail(ld, s, key,
				            "%s has something after ']' that is not a port",
				            quote(v, q, sizeof(q)));
			port = rb + 2;
		}
	} else {
		const char *colon = memchr(rest, ':', alen);
		hlen = colon != NULL ? (size_t)(colon - rest) : alen;
		if (colon != NULL && memchr(colon + 1, ':', alen - hlen - 1) != NULL)
			return fail(
			    ld, s, key,
			    "%s: an IPv6 address needs brackets, e.g. \"http://[::1]:8080/\"",
			    quote(v, q, sizeof(q)));
		if (hlen == 0)
			return fail(ld, s, key, "%s has no host", quote(v, q, sizeof(q)));
		if (!host_ok(host, hlen))
			return fail(ld, s, key, "%s does not have a valid host name or address",
			            quote(v, q, sizeof(q)));
		if (colon != NULL)
			port = colon + 1;
	}
	if (port != NULL && !url_port(ld, s, key, port, (size_t)(rest + alen - port), &w->port))
		return false;

	const char *path = rest + alen;
	if (strchr(path, '#') != NULL)
		return fail(ld, s, key, "%s must not have a fragment (#...)",
		            quote(v, q, sizeof(q)));
	w->url = xstrdup(v);
	w->host = xprintf("%.*s", (int)hlen, host);
	w->path = xprintf("%s%s", path[0] == '/' ? "" : "/", path);
	return true;
}

/* webhooks[i].secret: one signing secret; not together with secrets. */
static bool webhook_secret(struct loader *ld, const config_setting_t *s, const char *key,
                           struct config_webhook *w)
{
	if (w->n_secrets > 0)
		return fail(ld, s, key, "give either secret or secrets, not both");
	const char *v = string_of(ld, s, key);
	if (v == NULL || !item_secret(ld, s, config_setting_source_line(s), key, v))
		return false;
	w->secrets = xcalloc(1, sizeof(*w->secrets));
	w->secrets[0] = xstrdup(v);
	w->n_secrets = 1;
	return true;
}

/* webhooks[i].secrets: 1 or 2 secrets, the new one first; not together with secret. */
static bool webhook_secrets(struct loader *ld, const config_setting_t *s, const char *key,
                            struct config_webhook *w)
{
	if (w->n_secrets > 0)
		return fail(ld, s, key, "give either secret or secrets, not both");
	return strings_parse(ld, s, key, &secrets_rule, &w->secrets, &w->n_secrets);
}

/* webhooks[i].exporters: only these exporters' notifications. */
static bool webhook_exporters(struct loader *ld, const config_setting_t *s, const char *key,
                              struct config_webhook *w)
{
	return strings_parse(ld, s, key, &hook_exporters_rule, &w->exporters, &w->n_exporters);
}

/* webhooks[i].kinds: only these kinds of notification. */
static bool webhook_kinds(struct loader *ld, const config_setting_t *s, const char *key,
                          struct config_webhook *w)
{
	return strings_parse(ld, s, key, &hook_kinds_rule, &w->kinds, &w->n_kinds);
}

/* The keys of one webhooks entry; id and url are required, and secret or secrets. */
static const struct webhook_key {
	const char *name;
	webhook_field_fn *parse;
	bool required;
} webhook_keys[] = {
    {"id", webhook_id, true},
    {"url", webhook_url, true},
    {"secret", webhook_secret, false},
    {"secrets", webhook_secrets, false},
    {"exporters", webhook_exporters, false},
    {"kinds", webhook_kinds, false},
};

#define N_WEBHOOK_KEYS (sizeof(webhook_keys) / sizeof(webhook_keys[0]))

/* Parse one webhooks group e, named key in messages, into w. */
static bool webhook_parse(struct loader *ld, const config_setting_t *e, const char *key,
                          struct config_webhook *w)
{
	bool seen[N_WEBHOOK_KEYS] = {false};
	int n = config_setting_length(e);
	for (int i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(e, (unsigned)i);
		const char *name = config_setting_name(s);
		char sub[KEY_MAX];
		key_format(sub, sizeof(sub), "%s.%s", key, name);
		size_t k = 0;
		while (k < N_WEBHOOK_KEYS && strcmp(webhook_keys[k].name, name) != 0)
			k++;
		if (k < N_WEBHOOK_KEYS) {
			if (!webhook_keys[k].parse(ld, s, sub, w))
				return false;
			seen[k] = true;
			continue;
		}
		return unknown_member(ld, s, sub, name, webhook_keys, N_WEBHOOK_KEYS,
		                      sizeof(webhook_keys[0]));
	}
	for (size_t k = 0; k < N_WEBHOOK_KEYS; k++) {
		if (seen[k] || !webhook_keys[k].required)
			continue;
		char sub[KEY_MAX];
		key_format(sub, sizeof(sub), "%s.%s", key, webhook_keys[k].name);
		return fail(ld, e, sub,
		            "missing (every webhook needs id, url and secret or secrets)");
	}
	if (w->n_secrets == 0) {
		char sub[KEY_MAX];
		key_format(sub, sizeof(sub), "%s.secret", key);
		return fail(ld, e, sub, "missing (every webhook needs secret or secrets)");
	}
	return true;
}

/* webhooks: a list of { id; url; secret or secrets; exporters; kinds; } with unique ids. */
static bool webhooks_parse(struct loader *ld, const struct setting *row, const config_setting_t *s)
{
	struct config *cfg = ld->cfg;
	if (!config_setting_is_list(s) && !config_setting_is_array(s))
		return fail(
		    ld, s, row->path,
		    "must be a list of groups, e.g. ( { id = \"...\"; url = \"https://...\"; "
		    "secret = \"...\"; } ) (got %s)",
		    type_name(config_setting_type(s)));
	int n = config_setting_length(s);
	if (n > WEBHOOKS_MAX)
		return fail(ld, s, row->path, "must have at most %d entries (got %d)", WEBHOOKS_MAX,
		            n);
	webhooks_release(cfg);
	cfg->webhooks = xcalloc((size_t)n, sizeof(*cfg->webhooks));
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		char key[KEY_MAX];
		key_format(key, sizeof(key), "%s[%d]", row->path, i);
		if (!config_setting_is_group(e))
			return fail(
			    ld, e, key,
			    "must be a group { id = \"...\"; url = \"...\"; secret = \"...\"; } "
			    "(got %s)",
			    type_name(config_setting_type(e)));
		/* Count the entry first so that config_free releases what it holds. */
		struct config_webhook *w = &cfg->webhooks[cfg->n_webhooks++];
		if (!webhook_parse(ld, e, key, w))
			return false;
		for (size_t j = 0; j + 1 < cfg->n_webhooks; j++) {
			if (strcmp(cfg->webhooks[j].id, w->id) != 0)
				continue;
			char idkey[KEY_MAX];
			key_format(idkey, sizeof(idkey), "%s.id", key);
			const config_setting_t *ids = config_setting_get_member(e, "id");
			return fail(ld, ids ? ids : e, idkey,
			            "duplicate webhook id \"%s\" (already used by %s[%zu])", w->id,
			            row->path, j);
		}
	}
	return true;
}

/*
 * webhooks[i].exporters: every id must be a configured exporter.  Run once
 * the whole file has been read, since exporters may come after webhooks.
 */
static bool webhooks_check_exporters(struct loader *ld, const config_setting_t *root)
{
	const struct config *cfg = ld->cfg;
	const config_setting_t *hooks = config_setting_get_member(root, "webhooks");
	for (size_t i = 0; i < cfg->n_webhooks; i++) {
		const struct config_webhook *w = &cfg->webhooks[i];
		const config_setting_t *e = config_setting_get_elem(hooks, (unsigned)i);
		const config_setting_t *list = config_setting_get_member(e, "exporters");
		for (size_t j = 0; j < w->n_exporters; j++) {
			if (config_find_exporter(cfg, w->exporters[j]) != NULL)
				continue;
			const config_setting_t *item = config_setting_get_elem(list, (unsigned)j);
			char key[KEY_MAX], q[96];
			key_format(key, sizeof(key), "webhooks[%zu].exporters[%zu]", i, j);
			return fail_line(ld, item, string_line(ld, item, list), key,
			                 "unknown exporter %s (not in exporters)",
			                 quote(w->exporters[j], q, sizeof(q)));
		}
	}
	return true;
}

/* True when two string lists hold the same strings in the same order. */
static bool strings_same(char *const *a, size_t na, char *const *b, size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++)
		if (strcmp(a[i], b[i]) != 0)
			return false;
	return true;
}

/* webhooks: equal when the same entries appear in the same order. */
static bool webhooks_same(const struct config *a, const struct config *b)
{
	if (a->n_webhooks != b->n_webhooks)
		return false;
	for (size_t i = 0; i < a->n_webhooks; i++) {
		const struct config_webhook *x = &a->webhooks[i], *y = &b->webhooks[i];
		if (strcmp(x->id, y->id) != 0 || strcmp(x->url, y->url) != 0 ||
		    !strings_same(x->secrets, x->n_secrets, y->secrets, y->n_secrets) ||
		    !strings_same(x->exporters, x->n_exporters, y->exporters, y->n_exporters) ||
		    !strings_same(x->kinds, x->n_kinds, y->kinds, y->n_kinds))
			return false;
	}
	return true;
}

/* log.level: info by default. */
static void level_default(struct config *cfg)
{
	cfg->log_level = LOG_LEVEL_INFO;
}

/* log.level: one of the names in level_names. */
static bool level_parse(struct loader *ld, const struct setting *row, const config_setting_t *s)
{
	int type = config_setting_type(s);
	if (type != CONFIG_TYPE_STRING)
		return fail(ld, s, row->path, "must be a string (got %s)", type_name(type));
	const char *v = config_setting_get_string(s);
	if (!log_level_parse(v, &ld->cfg->log_level)) {
		char q[64];
		return fail(ld, s, row->path,
		            "must be \"error\", \"warning\", \"info\" or \"debug\" "
		            "(got %s)",
		            quote(v, q, sizeof(q)));
	}
	return true;
}

/* log.level: equal when the levels are. */
static bool level_same(const struct config *a, const struct config *b)
{
	return a->log_level == b->log_level;
}

/* documents.required: no rules by default, so no document is required. */
static void doc_rules_default(struct config *cfg)
{
	cfg->doc_rules = NULL;
	cfg->n_doc_rules = 0;
}

/* documents.required: free the rules and their strings. */
static void doc_rules_release(struct config *cfg)
{
	for (size_t i = 0; i < cfg->n_doc_rules; i++) {
		struct model_doc_rule *r = &cfg->doc_rules[i];
		/* model_doc_rule is read-only for the fold; the config allocated it. */
		free((char *)r->hs_prefix);
		for (size_t d = 0; d < r->n_documents; d++)
			free((char *)r->documents[d]);
		free(r->documents);
	}
	free(cfg->doc_rules);
	cfg->doc_rules = NULL;
	cfg->n_doc_rules = 0;
}

/* documents.required[i].hs_prefix: 2 to 10 digits. */
static bool doc_rule_prefix(struct loader *ld, const config_setting_t *s, const char *key,
                            struct model_doc_rule *r)
{
	const char *v = string_of(ld, s, key);
	if (v == NULL)
		return false;
	if (validate_hs_prefix(v) != NULL) {
		char q[64];
		return fail(ld, s, key, "%s, the start of an HS code (got %s)",
		            validate_hs_prefix(v), quote(v, q, sizeof(q)));
	}
	r->hs_prefix = xstrdup(v);
	return true;
}

/* documents.required[i].documents: a non-empty list of distinct document kinds. */
static bool doc_rule_documents(struct loader *ld, const config_setting_t *s, const char *key,
                               struct model_doc_rule *r)
{
	if (!config_setting_is_array(s) && !config_setting_is_list(s))
		return fail(ld, s, key,
		            "must be a list of document kinds, e.g. [\"phytosanitary\"] (got %s)",
		            type_name(config_setting_type(s)));
	int n = config_setting_length(s);
	if (n == 0)
		return fail(ld, s, key, "must name at least one document");
	const char **docs = xcalloc((size_t)n, sizeof(*docs));
	r->documents = docs;
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		char sub[KEY_MAX];
		key_format(sub, sizeof(sub), "%s[%d]", key, i);
		const char *v = string_of(ld, e, sub);
		if (v == NULL)
			return false;
		char q[96];
		if (validate_document(v) != NULL)
			return fail(ld, e, sub, "%s (got %s)", validate_document(v),
			            quote(v, q, sizeof(q)));
		for (size_t j = 0; j < r->n_documents; j++)
			if (strcmp(docs[j], v) == 0)
				return fail(ld, e, sub, "%s is listed twice",
				            quote(v, q, sizeof(q)));
		/* Count it first so that config_free releases it on a later error. */
		docs[r->n_documents++] = xstrdup(v);
	}
	return true;
}

/* A documents.required entry's field handler: check s and store it into r. */
typedef bool doc_rule_field_fn(struct loader *ld, const config_setting_t *s, const char *key,
                               struct model_doc_rule *r);

/* The keys of one documents.required entry; both are required. */
static const struct doc_rule_key {
	const char *name;
	doc_rule_field_fn *parse;
} doc_rule_keys[] = {
    {"hs_prefix", doc_rule_prefix},
    {"documents", doc_rule_documents},
};

#define N_DOC_RULE_KEYS (sizeof(doc_rule_keys) / sizeof(doc_rule_keys[0]))

/* Parse one documents.required group e, named key in messages, into r. */
static bool doc_rule_parse(struct loader *ld, const config_setting_t *e, const char *key,
                           struct model_doc_rule *r)
{
	bool seen[N_DOC_RULE_KEYS] = {false};
	int n = config_setting_length(e);
	for (int i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(e, (unsigned)i);
		const char *name = config_setting_name(s);
		char sub[KEY_MAX];
		key_format(sub, sizeof(sub), "%s.%s", key, name);
		size_t k = 0;
		while (k < N_DOC_RULE_KEYS && strcmp(doc_rule_keys[k].name, name) != 0)
			k++;
		if (k < N_DOC_RULE_KEYS) {
			if (!doc_rule_keys[k].parse(ld, s, sub, r))
				return false;
			seen[k] = true;
			continue;
		}
		return unknown_member(ld, s, sub, name, doc_rule_keys, N_DOC_RULE_KEYS,
		                      sizeof(doc_rule_keys[0]));
	}
	for (size_t k = 0; k < N_DOC_RULE_KEYS; k++) {
		if (seen[k])
			continue;
		char sub[KEY_MAX];
		key_format(sub, sizeof(sub), "%s.%s", key, doc_rule_keys[k].name);
		return fail(ld, e, sub, "missing (every rule needs hs_prefix and documents)");
	}
	return true;
}

/* documents.required: a list of { hs_prefix; documents; } groups with distinct prefixes. */
static bool doc_rules_parse(struct loader *ld, const struct setting *row, const config_setting_t *s)
{
	struct config *cfg = ld->cfg;
	if (!config_setting_is_list(s) && !config_setting_is_array(s))
		return fail(ld, s, row->path,
		            "must be a list of groups, e.g. ( { hs_prefix = \"0901\"; documents = "
		            "[\"phytosanitary\"]; } ) (got %s)",
		            type_name(config_setting_type(s)));
	int n = config_setting_length(s);
	if (n > DOC_RULES_MAX)
		return fail(ld, s, row->path, "must have at most %d entries (got %d)",
		            DOC_RULES_MAX, n);
	doc_rules_release(cfg);
	cfg->doc_rules = xcalloc((size_t)n, sizeof(*cfg->doc_rules));
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		char key[KEY_MAX];
		key_format(key, sizeof(key), "%s[%d]", row->path, i);
		if (!config_setting_is_group(e))
			return fail(ld, e, key,
			            "must be a group { hs_prefix = \"...\"; documents = [...]; } "
			            "(got %s)",
			            type_name(config_setting_type(e)));
		/* Count the entry first so that config_free releases what it holds. */
		struct model_doc_rule *r = &cfg->doc_rules[cfg->n_doc_rules++];
		if (!doc_rule_parse(ld, e, key, r))
			return false;
		for (size_t j = 0; j + 1 < cfg->n_doc_rules; j++) {
			if (strcmp(cfg->doc_rules[j].hs_prefix, r->hs_prefix) != 0)
				continue;
			char pkey[KEY_MAX];
			key_format(pkey, sizeof(pkey), "%s.hs_prefix", key);
			const config_setting_t *p = config_setting_get_member(e, "hs_prefix");
			return fail(ld, p ? p : e, pkey,
			            "duplicate hs_prefix \"%s\" (already used by %s[%zu])",
			            r->hs_prefix, row->path, j);
		}
	}
	return true;
}

/* documents.required: equal when the same rules appear in the same order. */
static bool doc_rules_same(const struct config *a, const struct config *b)
{
	if (a->n_doc_rules != b->n_doc_rules)
		return false;
	for (size_t i = 0; i < a->n_doc_rules; i++) {
		const struct model_doc_rule *x = &a->doc_rules[i], *y = &b->doc_rules[i];
		if (strcmp(x->hs_prefix, y->hs_prefix) != 0 || x->n_documents != y->n_documents)
			return false;
		for (size_t d = 0; d < x->n_documents; d++)
			if (strcmp(x->documents[d], y->documents[d]) != 0)
				return false;
	}
	return true;
}

/* True when both configs hold the same value for a row. */
static bool setting_same(const struct setting *row, const struct config *a, const struct config *b)
{
	switch (row->kind) {
	case KIND_INT:
		return field_int_get(a, row) == field_int_get(b, row);
	case KIND_STRING:
		return strcmp(field_str_get(a, row), field_str_get(b, row)) == 0;
	case KIND_CUSTOM:
		return row->same(a, b);
	}
	return false;
}

/* Report a libconfig syntax error as "file:line: text". */
static char *syntax_error(const config_t *lc, const char *name)
{
	const char *file = config_error_file(lc);
	const char *text = config_error_text(lc);
	int line = config_error_line(lc);
	if (text == NULL)
		text = "syntax error";
	if (line > 0)
		return xprintf("%s:%d: %s", file ? file : name, line, text);
	return xprintf("%s: %s", file ? file : name, text);
}

struct config *config_parse_string(const char *text, const char *name, char **errstr)
{
	if (errstr != NULL)
		*errstr = NULL;
	if (name == NULL)
		name = "(config)";

	struct config *cfg = xcalloc(1, sizeof(*cfg));
	struct loader ld = {.name = name, .text = text, .cfg = cfg, .err = NULL};
	cfg->path = xstrdup(name);
	defaults_apply(cfg);

	config_t lc;
	config_init(&lc);
	if (text == NULL) {
		loader_error(&ld, xprintf("%s: no configuration text", name));
	} else if (!config_read_string(&lc, text)) {
		loader_error(&ld, syntax_error(&lc, name));
	} else if (group_walk(&ld, config_root_setting(&lc), "")) {
		/* What spans keys, once every key has been read. */
		webhooks_check_exporters(&ld, config_root_setting(&lc));
	}
	config_destroy(&lc);

	if (ld.err != NULL) {
		config_free(cfg);
		if (errstr != NULL)
			*errstr = ld.err;
		else
			free(ld.err);
		return NULL;
	}
	return cfg;
}

/*
 * Read a whole file into a NUL-terminated buffer.  Reading it ourselves,
 * rather than through config_read_file(), gives honest errno reasons and the
 * text that the integer check needs.
 */
static char *file_slurp(const char *path, char **errstr)
{
	FILE *fp = fopen(path, "r");
	if (fp == NULL) {
		*errstr = xprintf("cannot read %s: %s", path, strerror(errno));
		return NULL;
	}
	struct stat st;
	if (fstat(fileno(fp), &st) == 0 && S_ISDIR(st.st_mode)) {
		*errstr = xprintf("cannot read %s: %s", path, strerror(EISDIR));
		fclose(fp);
		return NULL;
	}

	size_t cap = 4096, len = 0;
	char *buf = xcalloc(1, cap);
	for (;;) {
		if (len + 1 == cap) {
			if (cap >= CONFIG_FILE_MAX) {
				*errstr = xprintf("cannot read %s: larger than %d bytes", path,
				                  CONFIG_FILE_MAX);
				goto fail;
			}
			char *nb = xcalloc(1, cap * 2);
			memcpy(nb, buf, len);
			free(buf);
			buf = nb;
			cap *= 2;
		}
		size_t got = fread(buf + len, 1, cap - 1 - len, fp);
		len += got;
		if (got == 0)
			break;
	}
	if (ferror(fp)) {
		*errstr = xprintf("cannot read %s: %s", path, strerror(errno));
		goto fail;
	}
	buf[len] = '\0';
	/* libconfig would stop at a NUL and silently ignore the rest of the file. */
	const char *nul = memchr(buf, '\0', len);
	if (nul != NULL) {
		unsigned line = 1;
		for (const char *p = buf; p < nul; p++)
			line += *p == '\n';
		*errstr = xprintf("%s:%u: file contains a NUL byte", path, line);
		goto fail;
	}
	fclose(fp);
	return buf;
fail:
	fclose(fp);
	free(buf);
	return NULL;
}

struct config *config_load(const char *path, char **errstr)
{
	char *err = NULL;
	if (errstr != NULL)
		*errstr = NULL;
	char *text = file_slurp(path, &err);
	if (text == NULL) {
		if (errstr != NULL)
			*errstr = err;
		else
			free(err);
		return NULL;
	}
	struct config *cfg = config_parse_string(text, path, errstr);
	free(text);
	return cfg;
}

void config_free(struct config *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < N_SETTINGS; i++) {
		const struct setting *row = &settings[i];
		if (row->kind == KIND_STRING) {
			char **field = field_str(c, row);
			free(*field);
			*field = NULL;
		} else if (row->kind == KIND_CUSTOM && row->release != NULL) {
			row->release(c);
		}
	}
	free(c->path);
	free(c);
}

/* The account with this id in a list of n, or NULL. */
static const struct config_exporter *accounts_find(const struct config_exporter *list, size_t n,
                                                   const char *id)
{
	if (id == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i].id, id) == 0)
			return &list[i];
	return NULL;
}

const struct config_exporter *config_find_exporter(const struct config *c, const char *id)
{
	return c != NULL ? accounts_find(c->exporters, c->n_exporters, id) : NULL;
}

const struct config_exporter *config_find_operator(const struct config *c, const char *id)
{
	return c != NULL ? accounts_find(c->operators, c->n_operators, id) : NULL;
}

/* Point the fold's rules at the config's documents.required; none for a NULL config. */
void config_model_rules(const struct config *c, struct model_rules *out)
{
	out->doc_rules = c != NULL ? c->doc_rules : NULL;
	out->n_doc_rules = c != NULL ? c->n_doc_rules : 0;
}

int config_restart_keys(const struct config *old, const struct config *neu, char *out, size_t cap)
{
	int count = 0;
	size_t used = 0;
	bool full = false;
	if (cap > 0)
		out[0] = '\0';
	for (size_t i = 0; i < N_SETTINGS; i++) {
		const struct setting *row = &settings[i];
		if (!(row->flags & SETTING_RESTART) || setting_same(row, old, neu))
			continue;
		/* Keep the list to whole keys: one that does not fit ends it. */
		size_t need = strlen(row->path) + (count > 0);
		if (!full && cap > 0 && used + need < cap) {
			snprintf(out + used, cap - used, "%s%s", count > 0 ? "," : "", row->path);
			used += need;
		} else {
			full = true;
		}
		count++;
	}
	return count;
}

void config_keep_restart_keys(struct config *neu, struct config *old)
{
	char **listen = neu->listen;
	size_t n_listen = neu->n_listen;
	char *conninfo = neu->conninfo;
	char *admin_listen = neu->admin_listen;
	char *user = neu->user;

	/* Swap rather than copy, so each struct still owns what it frees. */
	neu->listen = old->listen;
	neu->n_listen = old->n_listen;
	neu->conninfo = old->conninfo;
	neu->admin_listen = old->admin_listen;
	old->listen = listen;
	old->n_listen = n_listen;
	old->conninfo = conninfo;
	old->admin_listen = admin_listen;
	neu->user = old->user;
	old->user = user;
}

const char *log_level_name(enum log_level l)
{
	if ((unsigned)l < sizeof(level_names) / sizeof(level_names[0]))
		return level_names[l];
	return "unknown";
}

bool log_level_parse(const char *s, enum log_level *out)
{
	if (s == NULL)
		return false;
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcmp(level_names[i], s) == 0) {
			*out = (enum log_level)i;
			return true;
		}
	}
	return false;
}
