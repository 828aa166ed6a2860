/*
 * project.c - fold each changed order of a batch; see project.h.
 *
 * The batch's LOAD query returned the events stored before this batch of
 * the orders the batch touched, grouped by order, except those whose new
 * events all come after the last one their saved walk read (migration
 * 013).  Each order that got a new event is folded by lib/model.c: on from
 * its walk when LOAD left it out, else from LOAD's rows (parsed here) and
 * the batch's own events (parsed once already, when they were read).  The
 * results, each with its new walk, are packed into one JSON array, so the
 * whole batch's read model is written by one statement.
 * Each folded state is diffed against the one stored last, and the
 * notifications go into a second array for emit_notifications().
 */
#include <stdlib.h>
#include <string.h>

#include "jarena.h"
#include "jsondump.h"
#include "log.h"
#include "notify.h"
#include "project.h"
#include "store.h"
#include "validate.h"

/* Order slots by (exporter, order) for bsearch. */
static int slot_cmp(const void *a, const void *b)
{
	const struct slot *x = *(struct slot *const *)a;
	const struct slot *y = *(struct slot *const *)b;
	int c = strcmp(x->s_exporter, y->s_exporter);
	return c != 0 ? c : strcmp(x->s_order, y->s_order);
}

/* Compare a LOAD row's (exporter, order) with a slot's, in byte order. */
static int row_cmp(const PGresult *load, int row, const struct slot *s)
{
	int c = strcmp(PQgetvalue(load, row, 0), s->s_exporter);
	return c != 0 ? c : strcmp(PQgetvalue(load, row, 1), s->s_order);
}

/* The batch's events of one order, slots[0..ns), as the fold reads them, into evs. */
static void slot_events(struct slot *const *slots, size_t ns, struct model_event *evs)
{
	for (size_t i = 0; i < ns; i++) {
		evs[i].id = slots[i]->s_id;
		evs[i].type = slots[i]->s_type;
		evs[i].occurred_ms = slots[i]->s_occurred_ms;
		evs[i].body = slots[i]->s_root;
	}
}

/* {"exporter","order_ref","state","walk"} of one folded order; takes state and walk. */
static json_t *order_item(const struct slot *first, json_t *state, json_t *walk)
{
	return json_pack("{s:s, s:s, s:o, s:o}", "exporter", first->s_exporter, "order_ref",
	                 first->s_order, "state", state, "walk", walk ? walk : json_null());
}

/*
 * Fold one order: its stored events from before this batch, rows [from,
 * to) of load, parsed here, and the events this batch stored, slots[0..ns),
 * whose trees the request parser built already.  Returns its order_item().
 */
static json_t *fold_order(const PGresult *load, int from, int to, struct slot *const *slots,
                          size_t ns, const struct model_rules *rules)
{
	size_t n = (size_t)(to - from) + ns;
	/* One block: the events, then the bodies parsed here, kept apart
	 * because model_fold reorders evs and only these are ours to free. */
	struct model_event *evs =
	    calloc(1, n * sizeof(*evs) + (size_t)(to - from + 1) * sizeof(json_t *));
	size_t k = 0, parsed;
	if (evs == NULL)
		abort();
	json_t **owned = (json_t **)(void *)(evs + n);
	for (int row = from; row < to; row++) {
		json_error_t err;
		json_t *body = json_loads(PQgetvalue(load, row, 4), 0, &err);
		const char *why = body == NULL ? err.text : "no valid occurred_at";
		/* The instant from the text sent, truncated to the millisecond
		 * as the batch's own events are (lib/validate.c), so that every
		 * fold orders an order's events alike.  The column holds
		 * PostgreSQL's rounding to the microsecond, which can fall in
		 * the next millisecond. */
		if (body == NULL ||
		    validate_rfc3339(json_string_value(json_object_get(body, "occurred_at")),
		                     &evs[k].occurred_ms, NULL) != NULL) {
			/* Stored bodies were valid events when stored; this is a bug. */
			log_error("stored event unreadable", "event=%s reason=%s",
			          lq(PQgetvalue(load, row, 2)), lq(why));
			json_decref(body);
			continue;
		}
		evs[k].id = PQgetvalue(load, row, 2);
		evs[k].type = PQgetvalue(load, row, 3);
		evs[k].body = body;
		k++;
	}
	parsed = k;
	slot_events(slots, ns, evs + k);
	k += ns;
	for (size_t i = 0; i < parsed; i++)
		owned[i] = evs[i].body;
	json_t *walk;
	json_t *state = model_fold_save(evs, k, rules, &walk);
	for (size_t i = 0; i < parsed; i++)
		json_decref(owned[i]);
	free(evs);
	return order_item(slots[0], state, walk);
}

/*
 * Fold one order on from its stored state and saved walk (the text STATE
 * returned) with the events this batch stored, slots[0..ns).  Returns its
 * order_item(), or NULL when the fold refused the walk.
 */
static json_t *fold_order_on(const json_t *was, const char *walk_text, struct slot *const *slots,
                             size_t ns, const struct model_rules *rules)
{
	json_t *walk = json_loads(walk_text, 0, NULL);
	struct model_event *evs = calloc(ns, sizeof(*evs));
	json_t *next = NULL, *state = NULL;
	if (evs == NULL)
		abort();
	slot_events(slots, ns, evs);
	if (walk != NULL)
		state = model_fold_from(was, walk, evs, ns, rules, &next);
	json_decref(walk);
	free(evs);
	if (state == NULL) {
		log_warnx("walk refused", "exporter=%s order=%s events=%zu",
		          lq(slots[0]->s_exporter), lq(slots[0]->s_order), ns);
		return NULL;
	}
	return order_item(slots[0], state, next);
}

/* Column col of states' row, parsed, or NULL. */
static json_t *state_json(const PGresult *states, int row, int col)
{
	if (row < 0 || PQgetisnull(states, row, col))
		return NULL;
	return json_loads(PQgetvalue(states, row, col), 0, NULL);
}

/*
 * Is the order delivered or cancelled?  Such an order seldom gets another
 * event, so its walk is not kept: it would only take room in every closed
 * order's row (about 400 bytes), and the event that does come folds the
 * order from its events, as one before migration 013 did.
 */
static bool order_closed(const json_t *state)
{
	const char *status =
	    json_string_value(json_object_get(json_object_get(state, "order"), "status"));
	return status != NULL &&
	       (strcmp(status, "delivered") == 0 || strcmp(status, "cancelled") == 0);
}

/*
 * Does another of the order's new events retract this one?  A retraction
 * counts only against an event that is not a retraction itself
 * (lib/model.c).
 */
static bool retracted_here(struct slot *const *slots, size_t ns, const struct slot *s)
{
	if (strcmp(s->s_type, "event.retracted") == 0)
		return false;
	for (size_t i = 0; i < ns; i++)
		if (slots[i]->s_retracts != NULL && strcmp(slots[i]->s_retracts, s->s_id) == 0)
			return true;
	return false;
}

/*
 * The events this batch stored for one order, as causes; one that a new
 * event retracts has no id, so no change is put down to it.
 */
static void order_causes(struct slot *const *slots, size_t ns, struct notify_cause *out)
{
	bool retractions = false;
	for (size_t i = 0; i < ns && !retractions; i++)
		retractions = slots[i]->s_retracts != NULL;
	for (size_t i = 0; i < ns; i++) {
		bool gone = retractions && retracted_here(slots, ns, slots[i]);
		out[i].id = gone ? NULL : slots[i]->s_id;
		out[i].type = slots[i]->s_type;
		out[i].shipment = slots[i]->s_shipment;
		out[i].occurred_at = slots[i]->s_occurred_at;
		out[i].occurred_ms = slots[i]->s_occurred_ms;
	}
}

/* Does one of the order's new events have this type? */
static bool any_of_type(struct slot *const *slots, size_t ns, const char *type)
{
	for (size_t i = 0; i < ns; i++)
		if (strcmp(slots[i]->s_type, type) == 0)
			return true;
	return false;
}

/*
 * Fold, diff and pack one changed order; slots[0..ns) are its new events.
 * The lines come only from order.created and the documents only from
 * document.issued (lib/model.c), so other events cannot change them, short
 * of a retraction: then apply_orders may leave those rows alone and the
 * state it gets can do without them.  Likewise only a retraction can take
 * a shipment away, and an order without a row has nothing to delete.
 */
static bool project_order(const PGresult *load, int from, int to, const PGresult *states,
                          struct slot *const *slots, size_t ns, const struct model_rules *rules,
                          struct notify_cause *causes, json_t *orders, json_t *notes,
                          struct projection *out)
{
	const char *exp = slots[0]->s_exporter, *ord = slots[0]->s_order;
	int row = batch_state_row(states, exp, ord);
	bool stored = row >= 0;
	json_t *was = state_json(states, row, 2), *item;
	/* LOAD leaves out exactly the orders whose walk can go on. */
	if (from == to && stored && !PQgetisnull(states, row, 3))
		item = fold_order_on(was, PQgetvalue(states, row, 3), slots, ns, rules);
	else
		item = fold_order(load, from, to, slots, ns, rules);
	if (item == NULL) {
		for (size_t i = 0; i < ns; i++)
			slots[i]->s_fold_whole = true;
		json_decref(was);
		return false;
	}
	json_t *now = json_object_get(item, "state");
	if (order_closed(now))
		json_object_set_new(item, "walk", json_null());
	bool retracted = any_of_type(slots, ns, "event.retracted");
	bool lines = !was || retracted || any_of_type(slots, ns, "order.created");
	bool docs = !was || retracted || any_of_type(slots, ns, "document.issued");
	order_causes(slots, ns, causes);
	out->n_notes += (unsigned)notify_diff(was, now, exp, ord, causes, ns, notes);
	json_decref(was);
	/* A new order has no rows to replace; only a retraction can take a
	 * shipment away. */
	json_object_set_new(item, "new", json_boolean(!stored));
	json_object_set_new(item, "retracted", json_boolean(retracted));
	/* Beside the state, not in it: orders.state holds neither, and
	 * taking them out in SQL rebuilt every state twice (migration 012). */
	if (lines)
		json_object_set(item, "lines", json_object_get(now, "lines"));
	if (docs)
		json_object_set(item, "documents", json_object_get(now, "documents"));
	json_object_del(now, "lines");
	json_object_del(now, "documents");
	json_array_append_new(orders, item);
	out->n_orders++;
	return true;
}

bool project_build(const PGresult *load, const PGresult *states, struct slot **changed,
                   size_t n_changed, const struct model_rules *rules, struct textbuf *apply,
                   struct textbuf *notes, struct projection *out)
{
	bool ok = true;
	memset(out, 0, sizeof(*out));
	textbuf_reset(apply);
	textbuf_reset(notes);
	if (n_changed == 0)
		return true;
	/* A stable order inside each group is not needed: the fold sorts. */
	qsort(changed, n_changed, sizeof(*changed), slot_cmp);

	/* Everything jansson allocates from here on is the fold's own and
	 * goes at once at the end: see jarena.h. */
	struct jarena_mark mark;
	jarena_open(&mark);
	json_t *orders = json_array();
	json_t *note_list = json_array();
	struct notify_cause *causes = calloc(n_changed, sizeof(*causes));
	if (causes == NULL)
		abort();
	int rows = load ? PQntuples(load) : 0, row = 0;
	/* Both lists are sorted by (exporter, order) in byte order: walk
	 * them side by side, one changed order at a time. */
	for (size_t g = 0; g < n_changed;) {
		size_t end = g + 1;
		while (end < n_changed && slot_cmp(&changed[g], &changed[end]) == 0)
			end++;
		while (row < rows && row_cmp(load, row, changed[g]) < 0)
			row++;
		int from = row;
		while (row < rows && row_cmp(load, row, changed[g]) == 0)
			row++;
		/* Every order is tried, so that one retry folds all the
		 * refused ones from their events. */
		ok = project_order(load, from, row, states, &changed[g], end - g, rules, causes,
		                   orders, note_list, out) &&
		     ok;
		g = end;
	}
	free(causes);
	if (ok && out->n_orders > 0)
		jsondump(apply, orders);
	if (ok && out->n_notes > 0)
		jsondump(notes, note_list);
	jarena_close(&mark);
	if (!jarena_installed()) {
		json_decref(orders);
		json_decref(note_list);
	}
	jarena_release(&mark);
	return ok;
}
