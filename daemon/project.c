/*
 * project.c - fold each changed order of a batch; see project.h.
 *
 * The batch's LOAD query returned every event of every order the batch
 * touched, grouped by order.  Each group whose order got a new event is
 * parsed and folded by lib/model.c, and the results are packed into one
 * JSON array, so the whole batch's read model is written by one statement.
 * Each folded state is diffed against the one stored last, and the
 * notifications go into a second array for emit_notifications().
 */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "notify.h"
#include "project.h"

/* Order slots by (exporter, order) for bsearch. */
static int slot_cmp(const void *a, const void *b)
{
	const struct slot *x = *(struct slot *const *)a;
	const struct slot *y = *(struct slot *const *)b;
	int c = strcmp(x->s_exporter, y->s_exporter);
	return c != 0 ? c : strcmp(x->s_order, y->s_order);
}

/* Did this batch store an event of (exporter, order)? */
static bool order_changed(struct slot **changed, size_t n, const char *exporter,
                          const char *order)
{
	struct slot key = {.s_exporter = exporter, .s_order = order};
	struct slot *kp = &key;
	return bsearch(&kp, changed, n, sizeof(*changed), slot_cmp) != NULL;
}

/* Fold rows [from, to) of load, one order, into {"exporter","order_ref","state"}. */
static json_t *fold_order(const PGresult *load, int from, int to, const struct model_rules *rules)
{
	size_t n = (size_t)(to - from);
	struct model_event *evs = calloc(n, sizeof(*evs));
	size_t k = 0;
	if (evs == NULL)
		abort();
	for (int row = from; row < to; row++) {
		json_error_t err;
		json_t *body = json_loads(PQgetvalue(load, row, 5), 0, &err);
		if (body == NULL) {
			/* Stored bodies are our own canonical JSON; this is a bug. */
			log_error("stored event unreadable", "event=%s reason=%s",
			          lq(PQgetvalue(load, row, 2)), lq(err.text));
			continue;
		}
		evs[k].id = PQgetvalue(load, row, 2);
		evs[k].type = PQgetvalue(load, row, 3);
		evs[k].occurred_ms = strtoll(PQgetvalue(load, row, 4), NULL, 10);
		evs[k].body = body;
		k++;
	}
	json_t *state = model_fold(evs, k, rules);
	for (size_t i = 0; i < k; i++)
		json_decref(evs[i].body);
	free(evs);
	return json_pack("{s:s, s:s, s:o}", "exporter", PQgetvalue(load, from, 0), "order_ref",
	                 PQgetvalue(load, from, 1), "state", state);
}

/* The stored state of (exporter, order) in states, parsed, or NULL. */
static json_t *old_state(const PGresult *states, const char *exporter, const char *order)
{
	int lo = 0, hi = states ? PQntuples(states) : 0;
	while (lo < hi) {
		int mid = (lo + hi) / 2;
		int c = strcmp(PQgetvalue(states, mid, 0), exporter);
		if (c == 0)
			c = strcmp(PQgetvalue(states, mid, 1), order);
		if (c == 0) {
			if (PQgetisnull(states, mid, 2))
				return NULL;
			return json_loads(PQgetvalue(states, mid, 2), 0, NULL);
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* The events this batch stored for (exporter, order), as causes. */
static size_t order_causes(struct slot **changed, size_t n, const char *exporter,
                           const char *order, struct notify_cause *out)
{
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		const struct slot *s = changed[i];
		if (strcmp(s->s_exporter, exporter) != 0 || strcmp(s->s_order, order) != 0)
			continue;
		out[k].id = s->s_id;
		out[k].shipment = s->s_shipment;
		out[k].occurred_at = s->s_occurred_at;
		out[k].occurred_ms = s->s_occurred_ms;
		k++;
	}
	return k;
}

void project_build(const PGresult *load, const PGresult *states, struct slot **changed,
                   size_t n_changed, const struct model_rules *rules, struct projection *out)
{
	memset(out, 0, sizeof(*out));
	if (n_changed == 0)
		return;
	qsort(changed, n_changed, sizeof(*changed), slot_cmp);

	json_t *orders = json_array();
	json_t *notes = json_array();
	struct notify_cause *causes = calloc(n_changed, sizeof(*causes));
	if (causes == NULL)
		abort();
	int rows = PQntuples(load);
	for (int from = 0; from < rows;) {
		const char *exp = PQgetvalue(load, from, 0);
		const char *ord = PQgetvalue(load, from, 1);
		int to = from + 1;
		while (to < rows && strcmp(PQgetvalue(load, to, 0), exp) == 0 &&
		       strcmp(PQgetvalue(load, to, 1), ord) == 0)
			to++;
		if (order_changed(changed, n_changed, exp, ord)) {
			json_t *item = fold_order(load, from, to, rules);
			json_t *was = old_state(states, exp, ord);
			/* Lines and documents rarely change: tell apply_orders
			 * when it may leave those rows alone. */
			const json_t *now = json_object_get(item, "state");
			json_object_set_new(item, "lines_changed",
			                    json_boolean(!was || !json_equal(json_object_get(was, "lines"),
			                                                     json_object_get(now, "lines"))));
			json_object_set_new(item, "docs_changed",
			                    json_boolean(!was || !json_equal(json_object_get(was, "documents"),
			                                                     json_object_get(now, "documents"))));
			size_t nc = order_causes(changed, n_changed, exp, ord, causes);
			out->n_notes += (unsigned)notify_diff(was, json_object_get(item, "state"), exp,
			                                      ord, causes, nc, notes);
			json_decref(was);
			json_array_append_new(orders, item);
			out->n_orders++;
		}
		from = to;
	}
	free(causes);
	/* jansson holds numbers as doubles; 15 significant digits print
	 * them as the exporter wrote them (7.9, not 7.9000000000000004). */
	size_t flags = JSON_COMPACT | JSON_REAL_PRECISION(15);
	if (out->n_orders > 0)
		out->apply = json_dumps(orders, flags);
	if (out->n_notes > 0)
		out->notes = json_dumps(notes, flags);
	json_decref(orders);
	json_decref(notes);
}

void projection_fini(struct projection *p)
{
	free(p->apply);
	free(p->notes);
	memset(p, 0, sizeof(*p));
}
