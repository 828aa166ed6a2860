/* SPDX-License-Identifier: ISC */
/*
 * config_listen.c - the settings that say where the daemon listens: listen,
 * admin.listen and tls.
 *
 * A listen entry is "host:port" with host an IPv4 address, a bracketed
 * IPv6 address or a name; admin.listen is one such entry or "" (no admin
 * socket).  tls names the certificate, the key and an optional client CA;
 * only their paths are checked here, the daemon reads the files
 * (daemon/tls.c), since this module opens nothing but the config.
 */
#include "config_loader.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define LISTEN_MAX      64  /* entries in listen */
#define LISTEN_HOST_MAX 253 /* characters in a host name */

/* listen: the default is one loopback address. */
void cfg_listen_default(struct config *cfg)
{
	cfg->listen = cfg_calloc(1, sizeof(*cfg->listen));
	cfg->listen[0] = cfg_strdup("127.0.0.1:7433");
	cfg->n_listen = 1;
}

/* listen: free the list. */
void cfg_listen_release(struct config *cfg)
{
	for (size_t i = 0; i < cfg->n_listen; i++)
		free(cfg->listen[i]);
	free(cfg->listen);
	cfg->listen = NULL;
	cfg->n_listen = 0;
}

/* True when a host name (not an address in brackets) looks usable. */
bool cfg_host_ok(const char *host, size_t len)
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
		return cfg_fail_line(ld, s, line, key, "must not be empty (want \"host:port\")");
	if (v[0] == '[') {
		const char *rb = strchr(v, ']');
		if (rb == NULL)
			return cfg_fail_line(ld, s, line, key, "%s has no closing ']'",
			                     cfg_quote(v, q, sizeof(q)));
		size_t len = (size_t)(rb - v - 1);
		char buf[INET6_ADDRSTRLEN + 1];
		struct in6_addr a6;
		if (len == 0 || len >= sizeof(buf))
			return cfg_fail_line(ld, s, line, key,
			                     "%s is not an IPv6 address in brackets",
			                     cfg_quote(v, q, sizeof(q)));
		memcpy(buf, v + 1, len);
		buf[len] = '\0';
		if (inet_pton(AF_INET6, buf, &a6) != 1)
			return cfg_fail_line(ld, s, line, key,
			                     "%s is not an IPv6 address in brackets",
			                     cfg_quote(v, q, sizeof(q)));
		if (rb[1] != ':')
			return cfg_fail_line(ld, s, line, key,
			                     "%s has no port (want \"[v6]:port\")",
			                     cfg_quote(v, q, sizeof(q)));
		port = rb + 2;
	} else {
		const char *colon = strrchr(v, ':');
		if (colon == NULL)
			return cfg_fail_line(ld, s, line, key,
			                     "%s has no port (want \"host:port\")",
			                     cfg_quote(v, q, sizeof(q)));
		if (memchr(v, ':', (size_t)(colon - v)) != NULL)
			return cfg_fail_line(
			    ld, s, line, key,
			    "%s: an IPv6 address needs brackets, e.g. \"[::1]:7433\"",
			    cfg_quote(v, q, sizeof(q)));
		if (colon == v)
			return cfg_fail_line(
			    ld, s, line, key,
			    "%s has no host (use 0.0.0.0 or [::] for every address)",
			    cfg_quote(v, q, sizeof(q)));
		if (!cfg_host_ok(v, (size_t)(colon - v)))
			return cfg_fail_line(ld, s, line, key,
			                     "%s does not start with a valid host name or address",
			                     cfg_quote(v, q, sizeof(q)));
		port = colon + 1;
	}

	if (port[0] == '\0')
		return cfg_fail_line(ld, s, line, key, "%s has no port (want \"host:port\")",
		                     cfg_quote(v, q, sizeof(q)));
	unsigned long num = 0;
	for (const char *p = port; *p != '\0'; p++) {
		if (p - port == 5)
			num = 65536; /* more than five digits, even "000007433", is out of range */
		if (*p < '0' || *p > '9')
			return cfg_fail_line(ld, s, line, key, "%s: port must be a number",
			                     cfg_quote(v, q, sizeof(q)));
		if (num <= 65535)
			num = num * 10 + (unsigned long)(*p - '0');
	}
	if (num > 65535) {
		char qp[24];
		return cfg_fail_line(ld, s, line, key, "port must be between 0 and 65535 (got %s)",
		                     cfg_quote(port, qp, sizeof(qp)));
	}
	return true;
}

/* listen: an array or list of 1..64 "host:port" strings. */
bool cfg_listen_parse(struct loader *ld, const struct setting *row, const config_setting_t *s)
{
	struct config *cfg = ld->cfg;
	if (!config_setting_is_array(s) && !config_setting_is_list(s))
		return cfg_fail(
		    ld, s, row->path,
		    "must be a list of \"host:port\" strings, e.g. [\"127.0.0.1:7433\"] "
		    "(got %s)",
		    cfg_type_name(config_setting_type(s)));
	int n = config_setting_length(s);
	if (n < 1 || n > LISTEN_MAX)
		return cfg_fail(ld, s, row->path, "must have 1 to %d entries (got %d)", LISTEN_MAX,
		                n);

	cfg_listen_release(cfg);
	cfg->listen = cfg_calloc((size_t)n, sizeof(*cfg->listen));
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		char key[KEY_MAX];
		cfg_key(key, sizeof(key), "%s[%d]", row->path, i);
		if (config_setting_type(e) != CONFIG_TYPE_STRING)
			return cfg_fail(ld, e, key, "must be a \"host:port\" string (got %s)",
			                cfg_type_name(config_setting_type(e)));
		const char *v = config_setting_get_string(e);
		unsigned line = cfg_string_line(ld, e, s);
		if (!listen_check(ld, e, line, key, v))
			return false;
		/* The same address twice would fail to bind; port 0 picks a new port each time. */
		for (size_t j = 0; j < cfg->n_listen; j++) {
			const char *colon = strrchr(v, ':');
			if (strcmp(cfg->listen[j], v) == 0 && strcmp(colon, ":0") != 0)
				return cfg_fail_line(ld, e, line, key,
				                     "\"%s\" is already listed as %s[%zu]", v,
				                     row->path, j);
		}
		cfg->listen[cfg->n_listen++] = cfg_strdup(v);
	}
	return true;
}

/* listen: equal when the same addresses appear in the same order. */
bool cfg_listen_same(const struct config *a, const struct config *b)
{
	if (a->n_listen != b->n_listen)
		return false;
	for (size_t i = 0; i < a->n_listen; i++)
		if (strcmp(a->listen[i], b->listen[i]) != 0)
			return false;
	return true;
}

/* admin.listen: the health and metrics endpoint on the loopback address. */
void cfg_admin_listen_default(struct config *cfg)
{
	cfg->admin_listen = cfg_strdup("127.0.0.1:9433");
}

/* admin.listen: free the string. */
void cfg_admin_listen_release(struct config *cfg)
{
	free(cfg->admin_listen);
	cfg->admin_listen = NULL;
}

/* admin.listen: one "host:port" string with the rules of listen, or "" for off. */
bool cfg_admin_listen_parse(struct loader *ld, const struct setting *row, const config_setting_t *s)
{
	const char *v = cfg_string_of(ld, s, row->path);
	if (v == NULL)
		return false;
	if (v[0] != '\0' && !listen_check(ld, s, config_setting_source_line(s), row->path, v))
		return false;
	free(ld->cfg->admin_listen);
	ld->cfg->admin_listen = cfg_strdup(v);
	return true;
}

/* admin.listen: equal when the strings are. */
bool cfg_admin_listen_same(const struct config *a, const struct config *b)
{
	return strcmp(a->admin_listen, b->admin_listen) == 0;
}

/* tls: off. */
void cfg_tls_default(struct config *cfg)
{
	cfg->tls_enabled = false;
	cfg->tls_cert = NULL;
	cfg->tls_key = NULL;
	cfg->tls_ca = NULL;
	cfg->tls_require = true;
}

/* tls: free the paths. */
void cfg_tls_release(struct config *cfg)
{
	free(cfg->tls_cert);
	free(cfg->tls_key);
	free(cfg->tls_ca);
	cfg_tls_default(cfg);
}

/* tls.cert, tls.key, tls.ca: a non-empty path of at most PATH_MAX characters. */
static bool tls_path(struct loader *ld, const config_setting_t *s, const char *key, char **out)
{
	const char *v = cfg_string_of(ld, s, key);
	if (v == NULL)
		return false;
	size_t n = strlen(v);
	if (n == 0 || n > 4096)
		return cfg_fail(ld, s, key, "must be a file path of 1 to 4096 characters (got %zu)",
		                n);
	free(*out);
	*out = cfg_strdup(v);
	return true;
}

/*
 * tls: the group { cert, key, ca, require }.  cert and key are required
 * when the group is there; the files themselves are read by the daemon
 * (daemon/tls.c), since this module opens nothing but the config.
 */
bool cfg_tls_parse(struct loader *ld, const struct setting *row, const config_setting_t *s)
{
	struct config *cfg = ld->cfg;
	if (!config_setting_is_group(s))
		return cfg_fail(ld, s, row->path, "must be a group { ... } (got %s)",
		                cfg_type_name(config_setting_type(s)));
	cfg_tls_release(cfg);
	cfg->tls_enabled = true;
	int n = config_setting_length(s);
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		const char *name = config_setting_name(e);
		char key[KEY_MAX];
		cfg_key(key, sizeof(key), "tls.%s", name);
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
				return cfg_fail(ld, e, key, "must be true or false (got %s)",
				                cfg_type_name(type));
			cfg->tls_require = config_setting_get_bool(e) != 0;
			ok = true;
		} else {
			return cfg_unknown_key(ld, e, key, "tls takes cert, key, ca and require");
		}
		if (!ok)
			return false;
	}
	if (cfg->tls_cert == NULL)
		return cfg_fail(ld, s, "tls.cert", "is required when tls is set");
	if (cfg->tls_key == NULL)
		return cfg_fail(ld, s, "tls.key", "is required when tls is set");
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
bool cfg_tls_same(const struct config *a, const struct config *b)
{
	return a->tls_enabled == b->tls_enabled && a->tls_require == b->tls_require &&
	       str_same_null(a->tls_cert, b->tls_cert) && str_same_null(a->tls_key, b->tls_key) &&
	       str_same_null(a->tls_ca, b->tls_ca);
}
