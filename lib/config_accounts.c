/* SPDX-License-Identifier: ISC */
/*
 * config_accounts.c - exporters and operators: the accounts that may say
 * hello, each an id, a name and the SHA-256 of its token.
 *
 * Both lists have the same shape and checks and share one parser; ids are
 * unique within each list.  A token is kept only as its digest.
 */
#include "config_loader.h"

#include <stdlib.h>
#include <string.h>

#define EXPORTER_NAME_MAX 128 /* characters (code points) in an exporter name */

/* One entry of exporters or operators as written, for messages. */
#define ACCOUNT_SHAPE "{ id = \"...\"; name = \"...\"; token_sha256 = \"...\"; }"

/* exporters: none unless configured. */
void cfg_exporters_default(struct config *cfg)
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
void cfg_exporters_release(struct config *cfg)
{
	accounts_release(&cfg->exporters, &cfg->n_exporters);
}

/* An exporter field handler: check s and store it into x. */
typedef bool exporter_field_fn(struct loader *ld, const config_setting_t *s, const char *key,
                               struct config_exporter *x);

/* exporters[i].id: 1..64 characters of A-Z a-z 0-9 . _ - */
static bool exporter_id(struct loader *ld, const config_setting_t *s, const char *key,
                        struct config_exporter *x)
{
	const char *v = cfg_string_of(ld, s, key);
	if (v == NULL || !cfg_id_check(ld, s, config_setting_source_line(s), key, v))
		return false;
	x->id = cfg_strdup(v);
	return true;
}

/* exporters[i].name: 1..128 characters of UTF-8 text without control characters. */
static bool exporter_name(struct loader *ld, const config_setting_t *s, const char *key,
                          struct config_exporter *x)
{
	const char *v = cfg_string_of(ld, s, key);
	if (v == NULL)
		return false;
	long n = cfg_utf8_chars(v);
	if (n == -1)
		return cfg_fail(ld, s, key, "must be valid UTF-8");
	if (n == -2)
		return cfg_fail(ld, s, key, "must not contain control characters");
	if (n == 0)
		return cfg_fail(ld, s, key, "must not be empty");
	if (n > EXPORTER_NAME_MAX)
		return cfg_fail(ld, s, key, "must be at most %d characters (got %ld)",
		                EXPORTER_NAME_MAX, n);
	x->name = cfg_strdup(v);
	return true;
}

/* exporters[i].token_sha256: the token's SHA-256 as 64 hex digits. */
static bool exporter_token(struct loader *ld, const config_setting_t *s, const char *key,
                           struct config_exporter *x)
{
	static const char how[] = "make it with: printf %s \"$TOKEN\" | sha256sum";
	const char *v = cfg_string_of(ld, s, key);
	if (v == NULL)
		return false;
	size_t n = strlen(v);
	if (n != 2 * AUTH_DIGEST_LEN)
		return cfg_fail(ld, s, key,
		                "must be 64 hex digits, the SHA-256 of the token (got %zu "
		                "characters; %s)",
		                n, how);
	if (!auth_parse_hex(v, x->token_sha256))
		return cfg_fail(ld, s, key,
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
		cfg_key(sub, sizeof(sub), "%s.%s", key, name);
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
			return cfg_unknown_key(
			    ld, s, sub,
			    "store the token's SHA-256 as token_sha256, never the "
			    "token itself");
		return cfg_unknown_member(ld, s, sub, name, exporter_keys, N_EXPORTER_KEYS,
		                          sizeof(exporter_keys[0]));
	}
	for (size_t k = 0; k < N_EXPORTER_KEYS; k++) {
		if (seen[k])
			continue;
		char sub[KEY_MAX];
		cfg_key(sub, sizeof(sub), "%s.%s", key, exporter_keys[k].name);
		return cfg_fail(ld, e, sub, "missing (every %s needs id, name and token_sha256)",
		                noun);
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
	int n = cfg_group_list(ld, s, row->path, 0, "( " ACCOUNT_SHAPE " )");
	if (n < 0)
		return false;
	accounts_release(list, n_list);
	*list = cfg_calloc((size_t)n, sizeof(**list));
	for (int i = 0; i < n; i++) {
		char key[KEY_MAX];
		const config_setting_t *e =
		    cfg_group_entry(ld, s, row->path, i, ACCOUNT_SHAPE, key, sizeof(key));
		if (e == NULL)
			return false;
		/* Count the entry first so that config_free releases what it holds. */
		struct config_exporter *x = &(*list)[(*n_list)++];
		if (!exporter_parse(ld, e, key, noun, x))
			return false;
		for (size_t j = 0; j + 1 < *n_list; j++) {
			if (strcmp((*list)[j].id, x->id) == 0) {
				char what[32];
				cfg_key(what, sizeof(what), "%s id", noun);
				return cfg_duplicate(ld, e, key, "id", what, x->id, row->path, j);
			}
		}
	}
	return true;
}

/* exporters: a list of { id; name; token_sha256; } groups with unique ids. */
bool cfg_exporters_parse(struct loader *ld, const struct setting *row, const config_setting_t *s)
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
bool cfg_exporters_same(const struct config *a, const struct config *b)
{
	return accounts_same(a->exporters, a->n_exporters, b->exporters, b->n_exporters);
}

/* operators: none unless configured. */
void cfg_operators_default(struct config *cfg)
{
	cfg->operators = NULL;
	cfg->n_operators = 0;
}

/* operators: free the list. */
void cfg_operators_release(struct config *cfg)
{
	accounts_release(&cfg->operators, &cfg->n_operators);
}

/* operators: the same shape and checks as exporters, ids unique among operators. */
bool cfg_operators_parse(struct loader *ld, const struct setting *row, const config_setting_t *s)
{
	return accounts_parse(ld, row, s, "operator", &ld->cfg->operators, &ld->cfg->n_operators);
}

/* operators: equal when the same entries appear in the same order. */
bool cfg_operators_same(const struct config *a, const struct config *b)
{
	return accounts_same(a->operators, a->n_operators, b->operators, b->n_operators);
}
