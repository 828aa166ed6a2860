/* SPDX-License-Identifier: ISC */
/*
 * fuzz_config.c - libFuzzer target: configuration text through
 * config_parse_string(), the loader the daemon runs at start-up and on
 * SIGHUP.
 *
 * The input is the text (cut at its first NUL, as a C string is).  Each
 * input is loaded twice and both loads must agree: the same error message,
 * or two configs that config_restart_keys() finds equal.  An accepted
 * config is then checked against what the schema promises: limits inside
 * their bounds (lib/config.c's table), every exporter and operator found by
 * its own id, the fold's rules taken over whole, webhook URLs taken apart
 * into a port and a path.
 *
 * Inputs that say "@include" are skipped: libconfig would read the file
 * they name from the disk, which makes a run depend on the machine and is
 * a feature of the operator's own file, not an input an attacker controls.
 */
#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fuzz_check.h"

#define NAME "fuzz.conf"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* True when text holds "@include" in any letter case. */
static bool says_include(const char *text)
{
	static const char word[] = "@include";
	for (const char *p = strchr(text, '@'); p != NULL; p = strchr(p + 1, '@')) {
		size_t i = 0;
		while (word[i] != '\0' && tolower((unsigned char)p[i]) == word[i])
			i++;
		if (word[i] == '\0')
			return true;
	}
	return false;
}

/* An id list (exporters or operators): each entry is found by its own id. */
static void check_ids(const struct config *c, const struct config_exporter *list, size_t n,
                      bool operators)
{
	for (size_t i = 0; i < n; i++) {
		const struct config_exporter *e = &list[i];
		FUZZ_ASSERT(e->id != NULL && e->name != NULL, "entry %zu without id or name", i);
		size_t len = strlen(e->id);
		FUZZ_ASSERT(len >= 1 && len <= CONFIG_ID_MAX, "id \"%s\"", e->id);
		const struct config_exporter *found =
		    operators ? config_find_operator(c, e->id) : config_find_exporter(c, e->id);
		FUZZ_ASSERT(found == e, "\"%s\" is not found as itself (ids must be unique)",
		            e->id);
	}
}

/* What an accepted config promises. */
static void check_config(const struct config *c)
{
	struct model_rules rules;
	enum log_level lv;

	FUZZ_ASSERT(strcmp(c->path, NAME) == 0, "path \"%s\"", c->path);
	FUZZ_ASSERT(c->n_listen >= 1 && c->listen != NULL, "%zu listen addresses", c->n_listen);
	for (size_t i = 0; i < c->n_listen; i++)
		FUZZ_ASSERT(c->listen[i] != NULL && c->listen[i][0] != '\0', "listen[%zu]", i);
	FUZZ_ASSERT(c->conninfo != NULL, "no conninfo");
	FUZZ_ASSERT(c->max_connections >= 1 && c->max_connections <= 1000000, "max_connections %d",
	            c->max_connections);
	FUZZ_ASSERT(c->max_line_bytes >= 256 && c->max_line_bytes <= 16777216, "max_line_bytes %d",
	            c->max_line_bytes);
	FUZZ_ASSERT(c->idle_timeout_s >= 0 && c->idle_timeout_s <= 604800, "idle_timeout_s %d",
	            c->idle_timeout_s);
	FUZZ_ASSERT(c->window >= 1 && c->window <= 100000, "window %d", c->window);
	FUZZ_ASSERT(c->max_pending >= 1 && c->max_pending <= 10000000, "max_pending %d",
	            c->max_pending);
	FUZZ_ASSERT(c->batch_max_events >= 1 && c->batch_max_events <= 10000, "batch.max_events %d",
	            c->batch_max_events);
	FUZZ_ASSERT(c->batch_max_delay_ms >= 0 && c->batch_max_delay_ms <= 1000,
	            "batch.max_delay_ms %d", c->batch_max_delay_ms);
	FUZZ_ASSERT(log_level_parse(log_level_name(c->log_level), &lv) && lv == c->log_level,
	            "log level %d", (int)c->log_level);

	check_ids(c, c->exporters, c->n_exporters, false);
	check_ids(c, c->operators, c->n_operators, true);

	config_model_rules(c, &rules);
	FUZZ_ASSERT(rules.n_doc_rules == c->n_doc_rules, "%zu rules of %zu", rules.n_doc_rules,
	            c->n_doc_rules);
	for (size_t i = 0; i < c->n_doc_rules; i++) {
		const struct model_doc_rule *r = &rules.doc_rules[i];
		FUZZ_ASSERT(r->hs_prefix != NULL && r->n_documents >= 1, "documents rule %zu", i);
		for (size_t k = 0; k < r->n_documents; k++)
			FUZZ_ASSERT(r->documents[k] != NULL, "rule %zu document %zu", i, k);
	}

	for (size_t i = 0; i < c->n_webhooks; i++) {
		const struct config_webhook *w = &c->webhooks[i];
		FUZZ_ASSERT(w->id && w->url && w->host && w->path, "webhook %zu incomplete", i);
		FUZZ_ASSERT(w->port >= 1 && w->port <= 65535, "webhook %s port %d", w->id, w->port);
		FUZZ_ASSERT(w->path[0] == '/', "webhook %s path \"%s\"", w->id, w->path);
		FUZZ_ASSERT(w->n_secrets >= 1 && w->n_secrets <= 2, "webhook %s: %zu secrets",
		            w->id, w->n_secrets);
		for (size_t k = 0; k < w->n_exporters; k++)
			FUZZ_ASSERT(config_find_exporter(c, w->exporters[k]) != NULL,
			            "webhook %s names unknown exporter \"%s\"", w->id,
			            w->exporters[k]);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	char *err1 = NULL, *err2 = NULL;

	if (text == NULL)
		abort();
	memcpy(text, data, size);
	text[size] = '\0';
	if (says_include(text)) {
		free(text);
		return 0;
	}

	struct config *a = config_parse_string(text, NAME, &err1);
	struct config *b = config_parse_string(text, NAME, &err2);
	FUZZ_ASSERT((a == NULL) == (b == NULL), "two loads of one text disagree");
	if (a == NULL) {
		FUZZ_ASSERT(err1 != NULL && err1[0] != '\0', "refused without a message");
		FUZZ_ASSERT(err2 != NULL && strcmp(err1, err2) == 0,
		            "two loads give different errors:\n  %s\n  %s", err1, err2 ? err2 : "");
		free(err1);
		free(err2);
		free(text);
		return 0;
	}
	FUZZ_ASSERT(err1 == NULL && err2 == NULL, "accepted with an error message");
	check_config(a);

	char keys[512];
	int nk = config_restart_keys(a, b, keys, sizeof(keys));
	FUZZ_ASSERT(nk == 0, "two loads of one text differ in %d restart keys: %s", nk, keys);
	config_keep_restart_keys(b, a);
	check_config(b);
	config_free(a);
	config_free(b);
	free(text);
	return 0;
}
