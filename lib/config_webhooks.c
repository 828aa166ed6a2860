/* SPDX-License-Identifier: ISC */
/*
 * config_webhooks.c - webhooks: where notifications are POSTed, how they
 * are signed, and which exporters and kinds each endpoint wants.
 *
 * A url is kept as written and also taken apart into scheme, host, port and
 * path, so that the daemon never parses it again.  Which exporters an entry
 * names is checked against exporters only after the whole file is read
 * (cfg_webhooks_check_exporters), since the file may list them later.
 */
#include "config_loader.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#define WEBHOOKS_MAX          100  /* entries in webhooks */
#define WEBHOOK_URL_MAX       2048 /* characters in a webhook url */
#define WEBHOOK_SECRET_MIN    16   /* characters in a webhook secret, at least */
#define WEBHOOK_SECRET_MAX    1024 /* characters in a webhook secret, at most */
#define WEBHOOK_EXPORTERS_MAX 1000 /* entries in webhooks[i].exporters */

/* The notification kinds that webhooks[i].kinds may name (see docs/PROTOCOL.md). */
static const char *const notification_kinds[] = {
    "order.status",        "order.anomaly", "shipment.status", "shipment.eta",
    "alert.customs_dwell", "alert.overdue", "alert.stale",
};

#define N_NOTIFICATION_KINDS (sizeof(notification_kinds) / sizeof(notification_kinds[0]))

/* webhooks: none unless configured. */
void cfg_webhooks_default(struct config *cfg)
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
void cfg_webhooks_release(struct config *cfg)
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
		return cfg_fail(ld, s, key, "must be a list, e.g. %s (got %s)", rule->example,
		                cfg_type_name(config_setting_type(s)));
	int len = config_setting_length(s);
	if (len == 0)
		return cfg_fail(ld, s, key, "%s", rule->empty);
	if ((size_t)len > rule->max)
		return cfg_fail(ld, s, key, "must have at most %zu entries (got %d)", rule->max,
		                len);
	strings_free(*out, *n);
	*n = 0;
	*out = cfg_calloc((size_t)len, sizeof(**out));
	for (int i = 0; i < len; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		char sub[KEY_MAX];
		cfg_key(sub, sizeof(sub), "%s[%d]", key, i);
		const char *v = cfg_string_of(ld, e, sub);
		if (v == NULL)
			return false;
		unsigned line = cfg_string_line(ld, e, s);
		if (!rule->check(ld, e, line, sub, v))
			return false;
		for (size_t j = 0; j < *n; j++) {
			if (strcmp((*out)[j], v) != 0)
				continue;
			char q[96];
			if (rule->secret)
				return cfg_fail_line(ld, e, line, sub, "is the same as %s[%zu]",
				                     key, j);
			return cfg_fail_line(ld, e, line, sub, "%s is listed twice",
			                     cfg_quote(v, q, sizeof(q)));
		}
		/* Count it first so that config_free releases it on a later error. */
		(*out)[(*n)++] = cfg_strdup(v);
	}
	return true;
}

/* An exporter id in webhooks[i].exporters; that it is configured is checked at the end. */
static bool item_exporter(struct loader *ld, const config_setting_t *s, unsigned line,
                          const char *key, const char *v)
{
	return cfg_id_check(ld, s, line, key, v);
}

/* A notification kind in webhooks[i].kinds. */
static bool item_kind(struct loader *ld, const config_setting_t *s, unsigned line, const char *key,
                      const char *v)
{
	for (size_t k = 0; k < N_NOTIFICATION_KINDS; k++)
		if (strcmp(notification_kinds[k], v) == 0)
			return true;
	char q[96];
	return cfg_fail_line(
	    ld, s, line, key,
	    "must be one of order.status, order.anomaly, shipment.status, "
	    "shipment.eta, alert.customs_dwell, alert.overdue, alert.stale (got %s)",
	    cfg_quote(v, q, sizeof(q)));
}

/* A signing secret: 16..1024 characters of UTF-8 text; never quoted back. */
static bool item_secret(struct loader *ld, const config_setting_t *s, unsigned line,
                        const char *key, const char *v)
{
	long n = cfg_utf8_chars(v);
	if (n == -1)
		return cfg_fail_line(ld, s, line, key, "must be valid UTF-8");
	if (n == -2)
		return cfg_fail_line(ld, s, line, key, "must not contain control characters");
	if (n < WEBHOOK_SECRET_MIN)
		return cfg_fail_line(
		    ld, s, line, key,
		    "must be at least %d characters (got %ld; make one with: openssl "
		    "rand -hex 32)",
		    WEBHOOK_SECRET_MIN, n);
	if (n > WEBHOOK_SECRET_MAX)
		return cfg_fail_line(ld, s, line, key, "must be at most %d characters (got %ld)",
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
	const char *v = cfg_string_of(ld, s, key);
	if (v == NULL || !cfg_id_check(ld, s, config_setting_source_line(s), key, v))
		return false;
	w->id = cfg_strdup(v);
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
	cfg_key(buf, sizeof(buf), "%.*s", (int)(len < 15 ? len : 15), p);
	if (len == 0 || len > 5)
		return cfg_fail(ld, s, key, "port must be between 1 and 65535 (got %s)",
		                cfg_quote(buf, q, sizeof(q)));
	for (size_t i = 0; i < len; i++) {
		if (p[i] < '0' || p[i] > '9')
			return cfg_fail(ld, s, key, "port must be a number (got %s)",
			                cfg_quote(buf, q, sizeof(q)));
		num = num * 10 + (p[i] - '0');
	}
	if (num < 1 || num > 65535)
		return cfg_fail(ld, s, key, "port must be between 1 and 65535 (got %s)",
		                cfg_quote(buf, q, sizeof(q)));
	*port = (int)num;
	return true;
}

/*
 * A url quoted for a message, with any user and password (refused, see
 * webhook_url) shown as "***": the message goes to the log and the
 * terminal, and must not copy a secret out of the file.
 */
static const char *url_quote(const char *v, char *q, size_t cap)
{
	char shown[WEBHOOK_URL_MAX + 8];
	const char *sep = strstr(v, "://");
	const char *auth = sep != NULL ? sep + 3 : v;
	size_t alen = strcspn(auth, "/?#");
	const char *at = NULL;
	for (const char *p = auth; p < auth + alen; p++)
		if (*p == '@')
			at = p;
	if (at == NULL)
		return cfg_quote(v, q, cap);
	snprintf(shown, sizeof(shown), "%.*s***%s", (int)(auth - v), v, at);
	return cfg_quote(shown, q, cap);
}

/*
 * webhooks[i].url: "http://" or "https://", a host (a name, an IPv4
 * address or an IPv6 address in brackets), an optional port and an optional
 * path with query; printable ASCII only, no user or password, no fragment.
 */
static bool webhook_url(struct loader *ld, const config_setting_t *s, const char *key,
                        struct config_webhook *w)
{
	const char *v = cfg_string_of(ld, s, key);
	if (v == NULL)
		return false;
	char q[96];
	size_t n = strlen(v);
	if (n > WEBHOOK_URL_MAX)
		return cfg_fail(ld, s, key, "must be at most %d characters (got %zu)",
		                WEBHOOK_URL_MAX, n);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)v[i] <= 0x20 || (unsigned char)v[i] >= 0x7f)
			return cfg_fail(ld, s, key,
			                "%s may only hold printable ASCII without spaces "
			                "(percent-encode the rest)",
			                url_quote(v, q, sizeof(q)));
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
		return cfg_fail(ld, s, key, "%s must start with http:// or https://",
		                url_quote(v, q, sizeof(q)));
	}

	/* The authority runs to the first "/", "?" or "#". */
	size_t alen = strcspn(rest, "/?#");
	const char *host = rest, *port = NULL;
	size_t hlen;
	if (memchr(rest, '@', alen) != NULL)
		return cfg_fail(
		    ld, s, key,
		    "%s must not hold a user or password (the secret signs each request)",
		    url_quote(v, q, sizeof(q)));
	if (alen == 0)
		return cfg_fail(ld, s, key, "%s has no host", url_quote(v, q, sizeof(q)));
	if (rest[0] == '[') {
		const char *rb = memchr(rest, ']', alen);
		char buf[INET6_ADDRSTRLEN + 1];
		struct in6_addr a6;
		if (rb == NULL)
			return cfg_fail(ld, s, key, "%s has no closing ']'",
			                url_quote(v, q, sizeof(q)));
		host = rest + 1;
		hlen = (size_t)(rb - host);
		if (hlen == 0 || hlen >= sizeof(buf))
			return cfg_fail(ld, s, key, "%s is not an IPv6 address in brackets",
			                url_quote(v, q, sizeof(q)));
		memcpy(buf, host, hlen);
		buf[hlen] = '\0';
		if (inet_pton(AF_INET6, buf, &a6) != 1)
			return cfg_fail(ld, s, key, "%s is not an IPv6 address in brackets",
			                url_quote(v, q, sizeof(q)));
		if (rb + 1 < rest + alen) {
			if (rb[1] != ':')
				return cfg_fail(ld, s, key,
				                "%s has something after ']' that is not a port",
				                url_quote(v, q, sizeof(q)));
			port = rb + 2;
		}
	} else {
		const char *colon = memchr(rest, ':', alen);
		hlen = colon != NULL ? (size_t)(colon - rest) : alen;
		if (colon != NULL && memchr(colon + 1, ':', alen - hlen - 1) != NULL)
			return cfg_fail(
			    ld, s, key,
			    "%s: an IPv6 address needs brackets, e.g. \"http://[::1]:8080/\"",
			    url_quote(v, q, sizeof(q)));
		if (hlen == 0)
			return cfg_fail(ld, s, key, "%s has no host", url_quote(v, q, sizeof(q)));
		if (!cfg_host_ok(host, hlen))
			return cfg_fail(ld, s, key, "%s does not have a valid host name or address",
			                url_quote(v, q, sizeof(q)));
		if (colon != NULL)
			port = colon + 1;
	}
	if (port != NULL && !url_port(ld, s, key, port, (size_t)(rest + alen - port), &w->port))
		return false;

	const char *path = rest + alen;
	if (strchr(path, '#') != NULL)
		return cfg_fail(ld, s, key, "%s must not have a fragment (#...)",
		                url_quote(v, q, sizeof(q)));
	w->url = cfg_strdup(v);
	w->host = cfg_printf("%.*s", (int)hlen, host);
	w->path = cfg_printf("%s%s", path[0] == '/' ? "" : "/", path);
	return true;
}

/* webhooks[i].secret: one signing secret; not together with secrets. */
static bool webhook_secret(struct loader *ld, const config_setting_t *s, const char *key,
                           struct config_webhook *w)
{
	if (w->n_secrets > 0)
		return cfg_fail(ld, s, key, "give either secret or secrets, not both");
	const char *v = cfg_string_of(ld, s, key);
	if (v == NULL || !item_secret(ld, s, config_setting_source_line(s), key, v))
		return false;
	w->secrets = cfg_calloc(1, sizeof(*w->secrets));
	w->secrets[0] = cfg_strdup(v);
	w->n_secrets = 1;
	return true;
}

/* webhooks[i].secrets: 1 or 2 secrets, the new one first; not together with secret. */
static bool webhook_secrets(struct loader *ld, const config_setting_t *s, const char *key,
                            struct config_webhook *w)
{
	if (w->n_secrets > 0)
		return cfg_fail(ld, s, key, "give either secret or secrets, not both");
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
		cfg_key(sub, sizeof(sub), "%s.%s", key, name);
		size_t k = 0;
		while (k < N_WEBHOOK_KEYS && strcmp(webhook_keys[k].name, name) != 0)
			k++;
		if (k < N_WEBHOOK_KEYS) {
			if (!webhook_keys[k].parse(ld, s, sub, w))
				return false;
			seen[k] = true;
			continue;
		}
		return cfg_unknown_member(ld, s, sub, name, webhook_keys, N_WEBHOOK_KEYS,
		                          sizeof(webhook_keys[0]));
	}
	for (size_t k = 0; k < N_WEBHOOK_KEYS; k++) {
		if (seen[k] || !webhook_keys[k].required)
			continue;
		char sub[KEY_MAX];
		cfg_key(sub, sizeof(sub), "%s.%s", key, webhook_keys[k].name);
		return cfg_fail(ld, e, sub,
		                "missing (every webhook needs id, url and secret or secrets)");
	}
	if (w->n_secrets == 0) {
		char sub[KEY_MAX];
		cfg_key(sub, sizeof(sub), "%s.secret", key);
		return cfg_fail(ld, e, sub, "missing (every webhook needs secret or secrets)");
	}
	return true;
}

/* webhooks: a list of { id; url; secret or secrets; exporters; kinds; } with unique ids. */
bool cfg_webhooks_parse(struct loader *ld, const struct setting *row, const config_setting_t *s)
{
	struct config *cfg = ld->cfg;
	int n = cfg_group_list(ld, s, row->path, WEBHOOKS_MAX,
	                       "( { id = \"...\"; url = \"https://...\"; secret = \"...\"; } )");
	if (n < 0)
		return false;
	cfg_webhooks_release(cfg);
	cfg->webhooks = cfg_calloc((size_t)n, sizeof(*cfg->webhooks));
	for (int i = 0; i < n; i++) {
		char key[KEY_MAX];
		const config_setting_t *e = cfg_group_entry(
		    ld, s, row->path, i, "{ id = \"...\"; url = \"...\"; secret = \"...\"; }", key,
		    sizeof(key));
		if (e == NULL)
			return false;
		/* Count the entry first so that config_free releases what it holds. */
		struct config_webhook *w = &cfg->webhooks[cfg->n_webhooks++];
		if (!webhook_parse(ld, e, key, w))
			return false;
		for (size_t j = 0; j + 1 < cfg->n_webhooks; j++)
			if (strcmp(cfg->webhooks[j].id, w->id) == 0)
				return cfg_duplicate(ld, e, key, "id", "webhook id", w->id,
				                     row->path, j);
	}
	return true;
}

/*
 * webhooks[i].exporters: every id must be a configured exporter.  Run once
 * the whole file has been read, since exporters may come after webhooks.
 */
bool cfg_webhooks_check_exporters(struct loader *ld, const config_setting_t *root)
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
			cfg_key(key, sizeof(key), "webhooks[%zu].exporters[%zu]", i, j);
			return cfg_fail_line(ld, item, cfg_string_line(ld, item, list), key,
			                     "unknown exporter %s (not in exporters)",
			                     cfg_quote(w->exporters[j], q, sizeof(q)));
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
bool cfg_webhooks_same(const struct config *a, const struct config *b)
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
