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

/* The milestone rank of a shipment.* type (1 booked .. 8 delivered), else 0. */
int model_milestone_rank(const char *type);

#endif
