/*
 * model.h - the status of an order and its shipments, as a pure function of
 * the order's accepted events.
 *
 * model_fold() takes every stored event of one order (of one exporter), in
 * any order, and returns the read model of that order as a JSON object.
 * The events are sorted by (occurred_at instant, id) first, so the result
 * depends only on the set of events, never on the order they arrived in.
 * Retracted events count for nothing.  The daemon stores the result in the
 * read-model tables; the tests compare results across permutations.
 *
 * The result's members are named after the columns of the read-model tables
 * (sql/002_read_model.sql), so the daemon can hand it to PostgreSQL as it
 * is:
 *
 *   { "order":     { "status", "buyer", "channel", "origin", "destination",
 *                    "incoterm", "currency", "expected_delivery",
 *                    "anomalies": [sorted words], "created_at", "updated_at" },
 *     "shipments": [ { "shipment_ref", "status", "milestone", "hold",
 *                      "exception", "mode", "carrier", "tracking",
 *                      "consignee", "eta", "last_event_at", "last_location" } ],
 *     "lines":     [ { "sku", "product", "hs_code", "quantity", "unit",
 *                      "unit_price", "currency" } ],
 *     "documents": [ { "shipment_ref", "document", "number", "issued_at" } ] }
 *
 * Timestamps are the RFC 3339 strings as the exporter sent them (offset
 * kept); absent values are JSON null.  Arrays are sorted (shipments by ref,
 * lines in their order in order.created, documents by (shipment_ref,
 * document, issued_at)) so equal states are equal JSON.
 */
#ifndef OT_MODEL_H
#define OT_MODEL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* One stored event of the order, as the fold reads it. */
struct model_event {
	const char *id;
	const char *type;
	int64_t occurred_ms; /* the instant, UTC milliseconds */
	json_t *body;        /* the event object as stored; borrowed */
};

/* documents.required: goods whose HS code starts with hs_prefix need these. */
struct model_doc_rule {
	const char *hs_prefix;
	const char **documents;
	size_t n_documents;
};

struct model_rules {
	const struct model_doc_rule *doc_rules;
	size_t n_doc_rules;
};

/*
 * Fold the events of one order into its read model (a new reference the
 * caller must json_decref).  evs is reordered in place.  Never fails on
 * well-formed events; events the validator would have refused are ignored.
 */
json_t *model_fold(struct model_event *evs, size_t n, const struct model_rules *rules);

/*
 * Folding on from a saved walk.  The fold reads an order's events oldest
 * first and needs little of the past to go on: what the read model shows,
 * plus the confirmed and cancelled flags, the HS codes of the latest
 * order.created's lines, each shipment's departure and its customs
 * stages' latest hold or release, the documents issued, and the number
 * and the last (instant, id) of the events read.  model_fold_save() is
 * model_fold() that also returns that rest as JSON in *walk (a new
 * reference; its layout is in model.c), or NULL when the order cannot be
 * gone on with: no usable event, or an event.retracted among them (a later
 * retraction can take out an event read long ago, and one naming an id
 * not yet sent waits for it).
 *
 * model_fold_from() goes on from the state and the walk a fold returned
 * with new events of the same order, and returns what model_fold() of all
 * the events would, but for "lines", which is null unless the latest
 * order.created is among the new events (the lines are then unchanged),
 * and the walk after them in *walk_out.  It refuses (returns NULL,
 * *walk_out NULL) when that cannot be told: a new event that sorts before
 * the last one read, an event.retracted among them, no usable event, or a
 * state or walk it cannot read; the caller then folds all the events.  The
 * new events must have ids the walk has not read (the daemon passes only
 * events it has just stored, which the primary key makes new).  state and
 * walk are borrowed, evs is reordered in place.
 */
json_t *model_fold_save(struct model_event *evs, size_t n, const struct model_rules *rules,
                        json_t **walk);
json_t *model_fold_from(const json_t *state, const json_t *walk, struct model_event *evs, size_t n,
                        const struct model_rules *rules, json_t **walk_out);

/* The milestone rank of a shipment.* type (1 booked .. 8 delivered), else 0. */
int model_milestone_rank(const char *type);

#endif
