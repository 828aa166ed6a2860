/*
 * config.h - the ordertrackd configuration: schema, loading, checks.
 *
 * One table in config.c describes every setting (path, type, default,
 * bounds, whether a reload may change it).  Loading parses the libconfig
 * text into a fresh struct config and checks all of it; a caller swaps the
 * new struct in only when loading succeeded, so a broken file never replaces
 * a working one.  Errors name the file, the line and the key.
 *
 * This module reads no file itself when given text (config_parse_string),
 * which is how the unit tests drive it.
 */
#ifndef OT_CONFIG_H
#define OT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "model.h"

#define CONFIG_ID_MAX 64 /* exporter ids: 1..64 chars of [A-Za-z0-9._-] */

enum log_level {
	LOG_LEVEL_ERROR,
	LOG_LEVEL_WARNING,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG,
};

struct config_exporter {
	char *id;
	char *name;
	uint8_t token_sha256[AUTH_DIGEST_LEN];
};

/*
 * One webhooks entry: where notifications are POSTed and how they are
 * signed.  url is kept as written and also taken apart: host is a name or
 * an address (an IPv6 address without its brackets), port is the one given
 * or 80/443 by scheme, path starts with "/" and keeps any "?query".
 */
struct config_webhook {
	char *id;
	char *url;
	bool https;
	char *host;
	int port;
	char *path;
	char **secrets; /* 1 or 2; the first signs first (rotation: ["new", "old"]) */
	size_t n_secrets;
	char **exporters;   /* only these exporters' notifications */
	size_t n_exporters; /* 0 = all */
	char **kinds;       /* only these notification kinds */
	size_t n_kinds;     /* 0 = all */
};

struct config {
	char *path; /* the file it came from, for messages */

	char **listen; /* "host:port" strings, host may be [v6] */
	size_t n_listen;

	char *conninfo; /* database.conninfo */
	char *user;     /* user: become this user after binding, when root ("": stay) */

	struct config_exporter *exporters;
	size_t n_exporters;

	int max_connections;        /* limits.max_connections */
	int max_line_bytes;         /* limits.max_line_bytes */
	int idle_timeout_s;         /* limits.idle_timeout_s, 0 = never */
	int window;                 /* limits.window: unacked events per connection */
	int max_pending;            /* limits.max_pending: unacked events, all connections */
	int max_pending_bytes;      /* limits.max_pending_bytes: their lines' bytes, likewise */
	int max_connections_per_ip; /* limits.max_connections_per_ip */
	int hello_timeout_s;        /* limits.hello_timeout_s: time to say hello */
	int line_timeout_s;         /* limits.line_timeout_s: time to finish a started line */
	int max_failed_hellos;      /* limits.max_failed_hellos: per peer address and minute */
	int keepalive_s;            /* limits.keepalive_s: TCP keepalive idle time, 0 = off */
	int max_events_per_order;   /* limits.max_events_per_order: stored events of one order */

	int batch_max_events;   /* batch.max_events */
	int batch_max_delay_ms; /* batch.max_delay_ms */
	int db_connections;     /* database.connections */

	enum log_level log_level; /* log.level */

	/* documents.required; the config owns the rules and their strings. */
	struct model_doc_rule *doc_rules;
	size_t n_doc_rules;

	/* operators: who may subscribe to every exporter's notifications. */
	struct config_exporter *operators;
	size_t n_operators;

	/* webhooks: where notifications are delivered by HTTP POST. */
	struct config_webhook *webhooks;
	size_t n_webhooks;

	int alerts_interval_s;         /* alerts.interval_s: how often alerts are evaluated */
	int alerts_customs_hold_hours; /* alerts.customs_hold_hours: customs dwell alert */
	int alerts_stale_hours;        /* alerts.stale_hours: no news of a shipment */

	char *admin_listen; /* admin.listen: "host:port" of /healthz, /readyz, /metrics; "" = off */
	int stats_interval_s; /* log.stats_interval_s: seconds between stats lines, 0 = never */

	/* tls: the event port's TLS; off unless the group is present. */
	bool tls_enabled; /* the tls group is present */
	char *tls_cert;   /* tls.cert: PEM certificate (chain) file */
	char *tls_key;    /* tls.key: PEM private key file */
	char *tls_ca;     /* tls.ca: PEM CA file for client certificates; NULL = none */
	bool tls_require; /* tls.require: TLS only (true) or TLS and plain text */
};

/* Load and check a file. NULL on error with *errstr set (free() it). */
struct config *config_load(const char *path, char **errstr);
/* Same from text; name is used in messages in place of a path. */
struct config *config_parse_string(const char *text, const char *name, char **errstr);
void config_free(struct config *c);

/* The exporter with this id, or NULL. */
const struct config_exporter *config_find_exporter(const struct config *c, const char *id);
/* The operator with this id, or NULL. */
const struct config_exporter *config_find_operator(const struct config *c, const char *id);

/*
 * The fold's rules (documents.required) of a config: *out points into c and
 * stays valid while c lives, so refresh it whenever the config is swapped.
 */
void config_model_rules(const struct config *c, struct model_rules *out);

/*
 * Describe the differences between two configs that a reload cannot apply
 * (listen addresses, database, the admin endpoint): writes a comma-separated list of keys into
 * out and returns how many there are.
 */
int config_restart_keys(const struct config *old, const struct config *neu, char *out, size_t cap);

/*
 * The same for the settings a reload applies (exporters, limits, webhooks,
 * log.level, ...): what a reload from old to neu changes, for its log line.
 */
int config_reload_keys(const struct config *old, const struct config *neu, char *out, size_t cap);

/*
 * After a reload: give neu the running values of the restart-only keys from
 * old (and old the new ones), so the running config describes what runs.
 */
void config_keep_restart_keys(struct config *neu, struct config *old);
/* The same for the tls group's keys (swapped too, so call it after comparing):
 * a reload whose certificates failed keeps running the old ones. */
void config_keep_tls(struct config *neu, struct config *old);

const char *log_level_name(enum log_level l);
bool log_level_parse(const char *s, enum log_level *out);

#endif
