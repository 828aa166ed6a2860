/* SPDX-License-Identifier: ISC */
/*
 * config_documents.c - documents.required: which documents must have been
 * issued before a shipment departs, per HS-code prefix of the order's lines.
 *
 * The rules are kept in the form the fold reads (struct model_doc_rule),
 * so config_model_rules() hands them to the model without a copy.
 */
#include "config_loader.h"
#include "validate.h"

#include <stdlib.h>
#include <string.h>

#define DOC_RULES_MAX 1000 /* entries in documents.required */

/* documents.required: no rules by default, so no document is required. */
void cfg_doc_rules_default(struct config *cfg)
{
	cfg->doc_rules = NULL;
	cfg->n_doc_rules = 0;
}

/* documents.required: free the rules and their strings. */
void cfg_doc_rules_release(struct config *cfg)
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
	const char *v = cfg_string_of(ld, s, key);
	if (v == NULL)
		return false;
	if (validate_hs_prefix(v) != NULL) {
		char q[64];
		return cfg_fail(ld, s, key, "%s, the start of an HS code (got %s)",
		                validate_hs_prefix(v), cfg_quote(v, q, sizeof(q)));
	}
	r->hs_prefix = cfg_strdup(v);
	return true;
}

/* documents.required[i].documents: a non-empty list of distinct document kinds. */
static bool doc_rule_documents(struct loader *ld, const config_setting_t *s, const char *key,
                               struct model_doc_rule *r)
{
	if (!config_setting_is_array(s) && !config_setting_is_list(s))
		return cfg_fail(
		    ld, s, key,
		    "must be a list of document kinds, e.g. [\"phytosanitary\"] (got %s)",
		    cfg_type_name(config_setting_type(s)));
	int n = config_setting_length(s);
	if (n == 0)
		return cfg_fail(ld, s, key, "must name at least one document");
	const char **docs = cfg_calloc((size_t)n, sizeof(*docs));
	r->documents = docs;
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		char sub[KEY_MAX];
		cfg_key(sub, sizeof(sub), "%s[%d]", key, i);
		const char *v = cfg_string_of(ld, e, sub);
		if (v == NULL)
			return false;
		char q[96];
		if (validate_document(v) != NULL)
			return cfg_fail(ld, e, sub, "%s (got %s)", validate_document(v),
			                cfg_quote(v, q, sizeof(q)));
		for (size_t j = 0; j < r->n_documents; j++)
			if (strcmp(docs[j], v) == 0)
				return cfg_fail(ld, e, sub, "%s is listed twice",
				                cfg_quote(v, q, sizeof(q)));
		/* Count it first so that config_free releases it on a later error. */
		docs[r->n_documents++] = cfg_strdup(v);
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
		cfg_key(sub, sizeof(sub), "%s.%s", key, name);
		size_t k = 0;
		while (k < N_DOC_RULE_KEYS && strcmp(doc_rule_keys[k].name, name) != 0)
			k++;
		if (k < N_DOC_RULE_KEYS) {
			if (!doc_rule_keys[k].parse(ld, s, sub, r))
				return false;
			seen[k] = true;
			continue;
		}
		return cfg_unknown_member(ld, s, sub, name, doc_rule_keys, N_DOC_RULE_KEYS,
		                          sizeof(doc_rule_keys[0]));
	}
	for (size_t k = 0; k < N_DOC_RULE_KEYS; k++) {
		if (seen[k])
			continue;
		char sub[KEY_MAX];
		cfg_key(sub, sizeof(sub), "%s.%s", key, doc_rule_keys[k].name);
		return cfg_fail(ld, e, sub, "missing (every rule needs hs_prefix and documents)");
	}
	return true;
}

/* documents.required: a list of { hs_prefix; documents; } groups with distinct prefixes. */
bool cfg_doc_rules_parse(struct loader *ld, const struct setting *row, const config_setting_t *s)
{
	struct config *cfg = ld->cfg;
	int n = cfg_group_list(ld, s, row->path, DOC_RULES_MAX,
	                       "( { hs_prefix = \"0901\"; documents = [\"phytosanitary\"]; } )");
	if (n < 0)
		return false;
	cfg_doc_rules_release(cfg);
	cfg->doc_rules = cfg_calloc((size_t)n, sizeof(*cfg->doc_rules));
	for (int i = 0; i < n; i++) {
		char key[KEY_MAX];
		const config_setting_t *e = cfg_group_entry(
		    ld, s, row->path, i, "{ hs_prefix = \"...\"; documents = [...]; }", key,
		    sizeof(key));
		if (e == NULL)
			return false;
		/* Count the entry first so that config_free releases what it holds. */
		struct model_doc_rule *r = &cfg->doc_rules[cfg->n_doc_rules++];
		if (!doc_rule_parse(ld, e, key, r))
			return false;
		for (size_t j = 0; j + 1 < cfg->n_doc_rules; j++)
			if (strcmp(cfg->doc_rules[j].hs_prefix, r->hs_prefix) == 0)
				return cfg_duplicate(ld, e, key, "hs_prefix", "hs_prefix",
				                     r->hs_prefix, row->path, j);
	}
	return true;
}

/* documents.required: equal when the same rules appear in the same order. */
bool cfg_doc_rules_same(const struct config *a, const struct config *b)
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
