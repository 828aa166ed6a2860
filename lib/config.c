/* SPDX-License-Identifier: ISC */
/*
 * config.c - the ordertrackd settings: one schema table, parsing and checks.
 *
 * Every setting is one row of settings[] below: its path, its kind, its
 * default, its bounds, whether a reload may change it, and where it lives in
 * struct config.  Integers and strings are handled by the table alone;
 * log.level has three small handlers below, and the keys that are lists or
 * groups of their own have theirs in config_listen.c (listen, admin.listen,
 * tls), config_accounts.c (exporters, operators), config_webhooks.c and
 * config_documents.c (documents.required), which share this file's helpers
 * through config_loader.h.  Loading fills a fresh struct with the defaults,
 * walks the parsed libconfig tree once, sends each key to its row and
 * rejects any key that has no row, so a typo can never be silently
 * ignored.  What spans keys is checked after the walk, since the file may
 * give keys in any order: every exporter a webhook names must be in
 * exporters.  The first problem found ends the load; its message names the
 * file, the line and the key.
 *
 * libconfig 1.5 stores an integer written without an "L" suffix in an int and
 * silently wraps one that does not fit (4294968320 reads back as 1024).  We
 * therefore look at the literal in the source text of every integer setting
 * and reject a wrapped one, quoting what the operator wrote.  @include is
 * refused: an included file's text would escape that check.
 *
 * Nothing here logs, opens sockets or reads the clock; config_load() reads
 * one file and config_parse_string() nothing at all.
 */
#include "config.h"
#include "config_loader.h"

#include <ctype.h>
#include <errno.h>
#include <libconfig.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CONFIG_FILE_MAX (16 << 20) /* bytes; a config file is a few KiB */

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

static void level_default(struct config *cfg);
static setting_parse_fn level_parse;
static bool level_same(const struct config *a, const struct config *b);

/*
 * The schema.  Adding an integer or string setting is one row here plus its
 * field in struct config; docs/CONFIG.md and conf/ordertrackd.conf describe
 * every row and must follow it.
 */
static const struct setting settings[] = {
    SET_CUSTOM("listen", SETTING_RESTART, cfg_listen_default, cfg_listen_parse, cfg_listen_same,
               cfg_listen_release),
    SET_STRING("database.conninfo", conninfo, "dbname=ordertrack", 0, 4096, SETTING_RESTART),
    SET_INT("database.connections", db_connections, 2, 1, 16, SETTING_RESTART),
    SET_STRING("user", user, "", 0, 32, SETTING_RESTART),
    SET_CUSTOM("exporters", SETTING_RELOAD, cfg_exporters_default, cfg_exporters_parse,
               cfg_exporters_same, cfg_exporters_release),
    SET_INT("limits.max_connections", max_connections, 1024, 1, 1000000, SETTING_RELOAD),
    SET_INT("limits.max_line_bytes", max_line_bytes, 65536, 256, 16777216, SETTING_RELOAD),
    SET_INT("limits.idle_timeout_s", idle_timeout_s, 300, 0, 604800, SETTING_RELOAD),
    SET_INT("limits.window", window, 1000, 1, 100000, SETTING_RELOAD),
    SET_INT("limits.max_pending", max_pending, 100000, 1, 10000000, SETTING_RELOAD),
    SET_INT("limits.max_pending_bytes", max_pending_bytes, 67108864, 65536, 1073741824,
            SETTING_RELOAD),
    SET_INT("limits.max_connections_per_ip", max_connections_per_ip, 256, 1, 1000000,
            SETTING_RELOAD),
    SET_INT("limits.hello_timeout_s", hello_timeout_s, 10, 1, 3600, SETTING_RELOAD),
    SET_INT("limits.line_timeout_s", line_timeout_s, 30, 1, 3600, SETTING_RELOAD),
    SET_INT("limits.max_failed_hellos", max_failed_hellos, 10, 1, 100000, SETTING_RELOAD),
    SET_INT("limits.keepalive_s", keepalive_s, 60, 0, 7200, SETTING_RELOAD),
    SET_INT("limits.max_events_per_order", max_events_per_order, 10000, 1, 1000000, SETTING_RELOAD),
    SET_INT("batch.max_events", batch_max_events, 1000, 1, 10000, SETTING_RELOAD),
    SET_INT("batch.max_delay_ms", batch_max_delay_ms, 1, 0, 1000, SETTING_RELOAD),
    SET_CUSTOM("log.level", SETTING_RELOAD, level_default, level_parse, level_same, NULL),
    SET_CUSTOM("documents.required", SETTING_RELOAD, cfg_doc_rules_default, cfg_doc_rules_parse,
               cfg_doc_rules_same, cfg_doc_rules_release),
    SET_CUSTOM("operators", SETTING_RELOAD, cfg_operators_default, cfg_operators_parse,
               cfg_operators_same, cfg_operators_release),
    SET_CUSTOM("webhooks", SETTING_RELOAD, cfg_webhooks_default, cfg_webhooks_parse,
               cfg_webhooks_same, cfg_webhooks_release),
    SET_INT("alerts.interval_s", alerts_interval_s, 60, 1, 86400, SETTING_RELOAD),
    SET_INT("alerts.customs_hold_hours", alerts_customs_hold_hours, 48, 1, 8760, SETTING_RELOAD),
    SET_INT("alerts.stale_hours", alerts_stale_hours, 120, 1, 8760, SETTING_RELOAD),
    SET_CUSTOM("admin.listen", SETTING_RESTART, cfg_admin_listen_default, cfg_admin_listen_parse,
               cfg_admin_listen_same, cfg_admin_listen_release),
    SET_INT("log.stats_interval_s", stats_interval_s, 60, 0, 86400, SETTING_RELOAD),
    SET_CUSTOM("tls", SETTING_RELOAD, cfg_tls_default, cfg_tls_parse, cfg_tls_same,
               cfg_tls_release),
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
void *cfg_calloc(size_t n, size_t size)
{
	void *p = calloc(n == 0 ? 1 : n, size == 0 ? 1 : size);
	if (p == NULL)
		abort();
	return p;
}

/* Copy a string or abort. */
char *cfg_strdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = cfg_calloc(1, n);
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
	char *p = cfg_calloc(1, (size_t)n + 1);
	vsnprintf(p, (size_t)n + 1, fmt, ap);
	return p;
}

/* Format into a fresh malloc'd string. */
char *cfg_printf(const char *fmt, ...)
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
void cfg_key(char *buf, size_t cap, const char *fmt, ...)
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
bool cfg_fail_line(struct loader *ld, const config_setting_t *s, unsigned line, const char *key,
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
	loader_error(
	    ld, cfg_printf("%s%s: %s%s%s", file, where, key ? key : "", key ? ": " : "", what));
	free(what);
	return false;
}

/*
 * Record "file:line: key: message" for setting s at the line libconfig gives
 * it and return false, so that handlers can write `return cfg_fail(...)`.
 */
bool cfg_fail(struct loader *ld, const config_setting_t *s, const char *key, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *what = xvprintf(fmt, ap);
	va_end(ap);
	cfg_fail_line(ld, s, config_setting_source_line(s), key, "%s", what);
	free(what);
	return false;
}

/*
 * Copy s into buf for a message: in double quotes, with anything that is not
 * printable ASCII shown as \xNN, cut short with "..." when it does not fit.
 */
const char *cfg_quote(const char *s, char *buf, size_t cap)
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
const char *cfg_type_name(int type)
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
unsigned cfg_string_line(const struct loader *ld, const config_setting_t *e,
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
		return cfg_fail(ld, s, row->path, "must be an integer (got %s)",
		                cfg_type_name(type));

	char lit[64];
	if (type == CONFIG_TYPE_INT && config_setting_source_file(s) == NULL && ld->text != NULL &&
	    literal_find(ld->text, config_setting_source_line(s), config_setting_name(s), lit,
	                 sizeof(lit)) &&
	    literal_wrapped(lit, v))
		return cfg_fail(ld, s, row->path, "must be between %lld and %lld (got %s)",
		                row->min, row->max, lit);
	if (v < row->min || v > row->max)
		return cfg_fail(ld, s, row->path, "must be between %lld and %lld (got %lld)",
		                row->min, row->max, v);
	*field_int(ld->cfg, row) = (int)v;
	return true;
}

/* Parse a string row: type, then length bounds. */
static bool string_parse(struct loader *ld, const struct setting *row, const config_setting_t *s)
{
	int type = config_setting_type(s);
	if (type != CONFIG_TYPE_STRING)
		return cfg_fail(ld, s, row->path, "must be a string (got %s)", cfg_type_name(type));
	const char *v = config_setting_get_string(s);
	size_t n = strlen(v);
	if ((long long)n < row->min || (long long)n > row->max)
		return cfg_fail(ld, s, row->path, "must be %lld to %lld characters long (got %zu)",
		                row->min, row->max, n);
	char **field = field_str(ld->cfg, row);
	free(*field);
	*field = cfg_strdup(v);
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
	return cfg_fail(ld, s, row->path, "internal error: bad setting kind");
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
			*field_str(cfg, row) = cfg_strdup(row->def_str);
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
			cfg_key(buf, cap, "%s", rp);
			best = 1;
		}
		/* Compare with the whole path and with each group above it. */
		for (size_t n = 1; rp[n - 1] != '\0'; n++) {
			if (rp[n] != '\0' && rp[n] != '.')
				continue;
			size_t d = edit_distance(path, plen, rp, n);
			if (d < best && d < n) {
				cfg_key(buf, cap, "%.*s", (int)n, rp);
				best = d;
			}
		}
	}
	return best < 3;
}

/* Record an "unknown key" error for s, with a suggestion when one is close. */
bool cfg_unknown_key(struct loader *ld, const config_setting_t *s, const char *path,
                     const char *hint)
{
	char q[KEY_MAX + 8];
	if (hint != NULL)
		return cfg_fail(ld, s, NULL, "unknown key %s (%s)", cfg_quote(path, q, sizeof(q)),
		                hint);
	return cfg_fail(ld, s, NULL, "unknown key %s", cfg_quote(path, q, sizeof(q)));
}

/*
 * An unknown member name inside a group whose members are listed in table
 * (n rows of stride bytes, each starting with its name): refuse it, with a
 * did-you-mean when a listed name is within two edits.
 */
bool cfg_unknown_member(struct loader *ld, const config_setting_t *s, const char *sub,
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
		cfg_key(hint, sizeof(hint), "did you mean \"%s\"?", near);
		return cfg_unknown_key(ld, s, sub, hint);
	}
	return cfg_unknown_key(ld, s, sub, NULL);
}

int cfg_group_list(struct loader *ld, const config_setting_t *s, const char *path, int max,
                   const char *example)
{
	if (!config_setting_is_list(s) && !config_setting_is_array(s)) {
		cfg_fail(ld, s, path, "must be a list of groups, e.g. %s (got %s)", example,
		         cfg_type_name(config_setting_type(s)));
		return -1;
	}
	int n = config_setting_length(s);
	if (max > 0 && n > max) {
		cfg_fail(ld, s, path, "must have at most %d entries (got %d)", max, n);
		return -1;
	}
	return n;
}

const config_setting_t *cfg_group_entry(struct loader *ld, const config_setting_t *s,
                                        const char *path, int i, const char *shape, char *key,
                                        size_t cap)
{
	const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
	cfg_key(key, cap, "%s[%d]", path, i);
	if (!config_setting_is_group(e)) {
		cfg_fail(ld, e, key, "must be a group %s (got %s)", shape,
		         cfg_type_name(config_setting_type(e)));
		return NULL;
	}
	return e;
}

bool cfg_duplicate(struct loader *ld, const config_setting_t *e, const char *key,
                   const char *member, const char *what, const char *value, const char *path,
                   size_t j)
{
	char sub[KEY_MAX];
	cfg_key(sub, sizeof(sub), "%s.%s", key, member);
	const config_setting_t *m = config_setting_get_member(e, member);
	return cfg_fail(ld, m ? m : e, sub, "duplicate %s \"%s\" (already used by %s[%zu])", what,
	                value, path, j);
}

/* Walk the members of a group, sending each to its row or to a nested walk. */
/*
 * An @include'd file would escape the checks made on the text of this one
 * (32-bit literals, NUL bytes, its size) and the warnings about its
 * permissions: one file, read whole.  libconfig takes @include on any
 * line, inside a list too, so every setting is looked at.
 */
static bool include_refused(struct loader *ld, const config_setting_t *s, const char *path)
{
	if (config_setting_source_file(s) != NULL)
		return cfg_fail(ld, s, path,
		                "comes from a file pulled in by @include, which is not supported: "
		                "put the settings in %s",
		                ld->name);
	if (!config_setting_is_aggregate(s))
		return true;
	int n = config_setting_length(s);
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		const char *name = config_setting_name(e);
		char sub[KEY_MAX];
		if (name != NULL)
			cfg_key(sub, sizeof(sub), "%s%s%s", path, path[0] ? "." : "", name);
		else
			cfg_key(sub, sizeof(sub), "%s[%d]", path, i);
		if (!include_refused(ld, e, sub))
			return false;
	}
	return true;
}

static bool group_walk(struct loader *ld, const config_setting_t *group, const char *prefix)
{
	int n = config_setting_length(group);
	for (int i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(group, (unsigned)i);
		char path[KEY_MAX];
		cfg_key(path, sizeof(path), "%s%s%s", prefix, prefix[0] ? "." : "",
		        config_setting_name(s));

		const struct setting *row = setting_find(path);
		if (row != NULL) {
			if (!row_parse(ld, row, s))
				return false;
		} else if (group_known(path)) {
			if (!config_setting_is_group(s))
				return cfg_fail(ld, s, path, "must be a group { ... } (got %s)",
				                cfg_type_name(config_setting_type(s)));
			if (!group_walk(ld, s, path))
				return false;
		} else {
			char near[KEY_MAX], hint[KEY_MAX + 32];
			if (path_suggest(path, near, sizeof(near))) {
				cfg_key(hint, sizeof(hint), "did you mean \"%s\"?", near);
				return cfg_unknown_key(ld, s, path, hint);
			}
			return cfg_unknown_key(ld, s, path, NULL);
		}
	}
	return true;
}

/* Require s to be a string; its value, or NULL after recording the error. */
const char *cfg_string_of(struct loader *ld, const config_setting_t *s, const char *key)
{
	int type = config_setting_type(s);
	if (type != CONFIG_TYPE_STRING) {
		cfg_fail(ld, s, key, "must be a string (got %s)", cfg_type_name(type));
		return NULL;
	}
	return config_setting_get_string(s);
}

/*
 * Check an id (of an exporter, operator or webhook) v, the value of s dated
 * at line: 1..64 characters of A-Z a-z 0-9 . _ -
 */
bool cfg_id_check(struct loader *ld, const config_setting_t *s, unsigned line, const char *key,
                  const char *v)
{
	size_t n = strlen(v);
	if (n == 0)
		return cfg_fail_line(ld, s, line, key, "must not be empty");
	if (n > CONFIG_ID_MAX)
		return cfg_fail_line(ld, s, line, key, "must be at most %d characters (got %zu)",
		                     CONFIG_ID_MAX, n);
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)v[i];
		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-')
			continue;
		char q[96];
		if (ch >= 0x20 && ch < 0x7f)
			return cfg_fail_line(ld, s, line, key,
			                     "%s may only contain A-Z a-z 0-9 . _ - (found '%c' at "
			                     "position %zu)",
			                     cfg_quote(v, q, sizeof(q)), ch, i + 1);
		return cfg_fail_line(ld, s, line, key,
		                     "%s may only contain A-Z a-z 0-9 . _ - (found byte 0x%02x at "
		                     "position %zu)",
		                     cfg_quote(v, q, sizeof(q)), ch, i + 1);
	}
	return true;
}

/*
 * Count the code points of a UTF-8 string; -1 when it is not valid UTF-8
 * (overlong forms, surrogates and values past U+10FFFF count as invalid),
 * -2 when it holds a control character.
 */
long cfg_utf8_chars(const char *s)
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
		return cfg_fail(ld, s, row->path, "must be a string (got %s)", cfg_type_name(type));
	const char *v = config_setting_get_string(s);
	if (!log_level_parse(v, &ld->cfg->log_level)) {
		char q[64];
		return cfg_fail(ld, s, row->path,
		                "must be \"error\", \"warning\", \"info\" or \"debug\" "
		                "(got %s)",
		                cfg_quote(v, q, sizeof(q)));
	}
	return true;
}

/* log.level: equal when the levels are. */
static bool level_same(const struct config *a, const struct config *b)
{
	return a->log_level == b->log_level;
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

/*
 * The one setting name on line `line` of src (counted from 1), written
 * "name =" or "name :", outside strings and comments: what libconfig's
 * "duplicate setting name", which names none, is about.  False when the
 * line holds no such name or several (then the line alone must do).
 */
static bool line_setting_name(const char *src, int line, char *out, size_t cap)
{
	for (int n = 1; n < line && src != NULL; n++) {
		src = strchr(src, '\n');
		if (src != NULL)
			src++;
	}
	if (src == NULL)
		return false;
	int found = 0;
	const char *p = src;
	while (*p != '\0' && *p != '\n' && *p != '#' && !(p[0] == '/' && p[1] == '/')) {
		if (*p == '"') {
			for (p++; *p != '\0' && *p != '\n' && *p != '"'; p++)
				if (*p == '\\' && p[1] != '\0' && p[1] != '\n')
					p++;
			if (*p == '"')
				p++;
			continue;
		}
		bool starts = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || *p == '*';
		if (!starts || (p > src && (isalnum((unsigned char)p[-1]) || p[-1] == '_' ||
		                            p[-1] == '-' || p[-1] == '*' || p[-1] == '.'))) {
			p++;
			continue;
		}
		/* A dotted name is no libconfig name: libconfig read its first part,
		 * so naming either would mislead; such a line is left unnamed. */
		const char *b = p;
		while (isalnum((unsigned char)*p) || *p == '_' || *p == '-' || *p == '*' ||
		       *p == '.')
			p++;
		const char *e = p;
		while (*e == ' ' || *e == '\t')
			e++;
		if (*e == '=' || *e == ':') {
			if (found++ == 0)
				snprintf(out, cap, "%.*s", (int)(p - b), b);
		}
	}
	return found == 1 && strchr(out, '.') == NULL;
}

/*
 * Report a libconfig syntax error as "file:line: text"; src is the text
 * parsed, to name the key of a duplicate.
 */
static char *syntax_error(const config_t *lc, const char *name, const char *src)
{
	const char *file = config_error_file(lc);
	const char *text = config_error_text(lc);
	int line = config_error_line(lc);
	char key[KEY_MAX];
	if (text == NULL)
		text = "syntax error";
	if (line > 0 && file == NULL && strcmp(text, "duplicate setting name") == 0 &&
	    line_setting_name(src, line, key, sizeof(key)))
		return cfg_printf("%s:%d: duplicate setting name \"%s\" (a key may be given "
		                  "once in its group)",
		                  name, line, key);
	/* "database.conninfo = ...": a path, as the docs write keys, is no
	 * libconfig name; say how the file writes it. */
	key[0] = '\0';
	const char *dot;
	if (line > 0 && file == NULL && strcmp(text, "syntax error") == 0 &&
	    !line_setting_name(src, line, key, sizeof(key)) && (dot = strchr(key, '.')) != NULL &&
	    dot > key && dot[1] != '\0' && strchr(dot + 1, '.') == NULL)
		return cfg_printf("%s:%d: syntax error (\"%s\" is not how the file names a key: "
		                  "write %.*s = { %s = ...; };)",
		                  name, line, key, (int)(dot - key), key, dot + 1);
	if (line > 0)
		return cfg_printf("%s:%d: %s", file ? file : name, line, text);
	return cfg_printf("%s: %s", file ? file : name, text);
}

struct config *config_parse_string(const char *text, const char *name, char **errstr)
{
	if (errstr != NULL)
		*errstr = NULL;
	if (name == NULL)
		name = "(config)";

	struct config *cfg = cfg_calloc(1, sizeof(*cfg));
	struct loader ld = {.name = name, .text = text, .cfg = cfg, .err = NULL};
	cfg->path = cfg_strdup(name);
	defaults_apply(cfg);

	config_t lc;
	config_init(&lc);
	if (text == NULL) {
		loader_error(&ld, cfg_printf("%s: no configuration text", name));
	} else if (!config_read_string(&lc, text)) {
		loader_error(&ld, syntax_error(&lc, name, text));
	} else if (include_refused(&ld, config_root_setting(&lc), "") &&
	           group_walk(&ld, config_root_setting(&lc), "")) {
		/* What spans keys, once every key has been read. */
		cfg_webhooks_check_exporters(&ld, config_root_setting(&lc));
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
		*errstr = cfg_printf("cannot read %s: %s", path, strerror(errno));
		return NULL;
	}
	struct stat st;
	if (fstat(fileno(fp), &st) == 0 && S_ISDIR(st.st_mode)) {
		*errstr = cfg_printf("cannot read %s: %s", path, strerror(EISDIR));
		fclose(fp);
		return NULL;
	}

	size_t cap = 4096, len = 0;
	char *buf = cfg_calloc(1, cap);
	for (;;) {
		if (len + 1 == cap) {
			if (cap >= CONFIG_FILE_MAX) {
				*errstr = cfg_printf("cannot read %s: larger than %d bytes", path,
				                     CONFIG_FILE_MAX);
				goto fail;
			}
			char *nb = cfg_calloc(1, cap * 2);
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
		*errstr = cfg_printf("cannot read %s: %s", path, strerror(errno));
		goto fail;
	}
	buf[len] = '\0';
	/* libconfig would stop at a NUL and silently ignore the rest of the file. */
	const char *nul = memchr(buf, '\0', len);
	if (nul != NULL) {
		unsigned line = 1;
		for (const char *p = buf; p < nul; p++)
			line += *p == '\n';
		*errstr = cfg_printf("%s:%u: file contains a NUL byte", path, line);
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
	/* An empty file is more likely a write cut short than a wish for the
	 * defaults, which have no exporter: reloaded, it would close every
	 * exporter's connection.  A file of comments says the defaults are
	 * meant. */
	if (text != NULL && text[strspn(text, " \t\r\n")] == '\0') {
		free(text);
		text = NULL;
		err = cfg_printf("%s: the file is empty (a file of comments only, such as \"# the "
		                 "defaults\", takes every default)",
		                 path);
	}
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

/*
 * The keys of the restart-only settings (restart) or of the others whose
 * values differ between old and neu, comma-separated into out; returns
 * how many differ.
 */
static int changed_keys(const struct config *old, const struct config *neu, bool restart, char *out,
                        size_t cap)
{
	int count = 0;
	size_t used = 0;
	bool full = false;
	if (cap > 0)
		out[0] = '\0';
	for (size_t i = 0; i < N_SETTINGS; i++) {
		const struct setting *row = &settings[i];
		if (((row->flags & SETTING_RESTART) != 0) != restart || setting_same(row, old, neu))
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

int config_restart_keys(const struct config *old, const struct config *neu, char *out, size_t cap)
{
	return changed_keys(old, neu, true, out, cap);
}

int config_reload_keys(const struct config *old, const struct config *neu, char *out, size_t cap)
{
	return changed_keys(old, neu, false, out, cap);
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
	int db_connections = neu->db_connections;
	neu->db_connections = old->db_connections;
	old->db_connections = db_connections;
}

void config_keep_tls(struct config *neu, struct config *old)
{
	char *cert = neu->tls_cert, *key = neu->tls_key, *ca = neu->tls_ca;
	bool require = neu->tls_require;

	/* Swapped, as in config_keep_restart_keys. */
	neu->tls_cert = old->tls_cert;
	neu->tls_key = old->tls_key;
	neu->tls_ca = old->tls_ca;
	neu->tls_require = old->tls_require;
	old->tls_cert = cert;
	old->tls_key = key;
	old->tls_ca = ca;
	old->tls_require = require;
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
