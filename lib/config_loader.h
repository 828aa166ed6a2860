/* SPDX-License-Identifier: ISC */
/*
 * config_loader.h - what the configuration loader shares between its files.
 *
 * config.c holds the schema table, the walk over the parsed file and the
 * public API; the settings that are lists or groups of their own have their
 * handlers in config_listen.c (listen, admin.listen, tls),
 * config_accounts.c (exporters, operators), config_webhooks.c (webhooks)
 * and config_documents.c (documents.required).  This header gives those
 * files the state of one load, the schema row and the helpers that word
 * every message the same way.  Private to lib/: nothing else includes it.
 */
#ifndef OT_CONFIG_LOADER_H
#define OT_CONFIG_LOADER_H

#include <libconfig.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"

#define KEY_MAX 256 /* a key path in messages, e.g. "exporters[3].id" */

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

/* Allocate, copy or format, aborting when out of memory. */
void *cfg_calloc(size_t n, size_t size);
char *cfg_strdup(const char *s);
char *cfg_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Format a key path for messages, e.g. "exporters[3].id", into buf; a key
 * longer than buf is cut short, which only ever shortens a message.
 */
void cfg_key(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/*
 * Record "file:line: key: message" for setting s as the load's error (the
 * first one wins) and return false, so that handlers can `return
 * cfg_fail(...)`.  cfg_fail dates it at the line libconfig gives s,
 * cfg_fail_line at the given one; a NULL key leaves out "key: ".
 */
bool cfg_fail(struct loader *ld, const config_setting_t *s, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
bool cfg_fail_line(struct loader *ld, const config_setting_t *s, unsigned line, const char *key,
                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* An "unknown key" error for s, with hint (a did-you-mean) when not NULL. */
bool cfg_unknown_key(struct loader *ld, const config_setting_t *s, const char *path,
                     const char *hint);

/*
 * An unknown member name inside a group whose members are listed in table
 * (n rows of stride bytes, each starting with its name): refuse it, with a
 * did-you-mean when a listed name is within two edits.
 */
bool cfg_unknown_member(struct loader *ld, const config_setting_t *s, const char *sub,
                        const char *name, const void *table, size_t n, size_t stride);

/*
 * s in double quotes for a message, in buf, with anything that is not
 * printable ASCII shown as \xNN, cut short with "..." when it does not fit.
 */
const char *cfg_quote(const char *s, char *buf, size_t cap);

/* An English name, with its article, for a libconfig type ("a string"). */
const char *cfg_type_name(int type);

/* The line that holds string element e of list, for messages about it. */
unsigned cfg_string_line(const struct loader *ld, const config_setting_t *e,
                         const config_setting_t *list);

/*
 * A list-valued setting whose entries are groups (exporters, webhooks, ...):
 * s, the value of path, must be a list or array of at most max entries (0:
 * any number).  example is such a list as written, for the message.  Its
 * length, or -1 with the error recorded.
 */
int cfg_group_list(struct loader *ld, const config_setting_t *s, const char *path, int max,
                   const char *example);

/*
 * Entry i of such a list, which must be a group (shape is one as written,
 * for the message), with its name "path[i]" in key; NULL with the error
 * recorded.
 */
const config_setting_t *cfg_group_entry(struct loader *ld, const config_setting_t *s,
                                        const char *path, int i, const char *shape, char *key,
                                        size_t cap);

/*
 * Refuse entry e, named key, whose member repeats the value of entry j of
 * path: "duplicate <what> "<value>" (already used by path[j])", dated at
 * the member; returns false.
 */
bool cfg_duplicate(struct loader *ld, const config_setting_t *e, const char *key,
                   const char *member, const char *what, const char *value, const char *path,
                   size_t j);

/* Require s to be a string; its value, or NULL after recording the error. */
const char *cfg_string_of(struct loader *ld, const config_setting_t *s, const char *key);

/* Check an id (exporter, operator, webhook): 1..64 of A-Z a-z 0-9 . _ - */
bool cfg_id_check(struct loader *ld, const config_setting_t *s, unsigned line, const char *key,
                  const char *v);

/* Code points of UTF-8 text; -1 when invalid, -2 when it holds a control character. */
long cfg_utf8_chars(const char *s);

/* True when a host name (not an address in brackets) looks usable. */
bool cfg_host_ok(const char *host, size_t len);

/*
 * The handlers of the list-valued rows, named in the schema table: fill in
 * the default, parse the file's value, compare two configs, free.
 */
void cfg_listen_default(struct config *cfg);
setting_parse_fn cfg_listen_parse;
bool cfg_listen_same(const struct config *a, const struct config *b);
void cfg_listen_release(struct config *cfg);

void cfg_admin_listen_default(struct config *cfg);
setting_parse_fn cfg_admin_listen_parse;
bool cfg_admin_listen_same(const struct config *a, const struct config *b);
void cfg_admin_listen_release(struct config *cfg);

void cfg_tls_default(struct config *cfg);
setting_parse_fn cfg_tls_parse;
bool cfg_tls_same(const struct config *a, const struct config *b);
void cfg_tls_release(struct config *cfg);

void cfg_exporters_default(struct config *cfg);
setting_parse_fn cfg_exporters_parse;
bool cfg_exporters_same(const struct config *a, const struct config *b);
void cfg_exporters_release(struct config *cfg);

void cfg_operators_default(struct config *cfg);
setting_parse_fn cfg_operators_parse;
bool cfg_operators_same(const struct config *a, const struct config *b);
void cfg_operators_release(struct config *cfg);

void cfg_webhooks_default(struct config *cfg);
setting_parse_fn cfg_webhooks_parse;
bool cfg_webhooks_same(const struct config *a, const struct config *b);
void cfg_webhooks_release(struct config *cfg);

/*
 * webhooks[i].exporters: every id must be a configured exporter.  Checked
 * once the whole file has been read, since exporters may come after webhooks.
 */
bool cfg_webhooks_check_exporters(struct loader *ld, const config_setting_t *root);

void cfg_doc_rules_default(struct config *cfg);
setting_parse_fn cfg_doc_rules_parse;
bool cfg_doc_rules_same(const struct config *a, const struct config *b);
void cfg_doc_rules_release(struct config *cfg);

#endif
