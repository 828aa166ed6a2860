/*
 * notify.h - notifications: what changed between two states of an order,
 * and how a webhook delivery is signed and retried.
 *
 * Pure code: the daemon folds an order (lib/model.h), diffs the state it
 * stored last against the new one here, and writes the resulting items to
 * ordertrack.notifications in the same transaction (emit_notifications()
 * numbers them and adds "type", "seq" and "at").
 *
 * An item is a JSON object with the members of the wire format:
 *   {"kind", "exporter", "order", "shipment", "from", "to", "event", "occurred_at"}
 * kinds: "order.status", "order.anomaly", "shipment.status", "shipment.eta".
 * For order.anomaly, from/to are the sorted anomaly words joined by ","
 * (null for none); for shipment.eta they are the eta strings (null for
 * none).  "shipment" is null for order kinds.  "event"/"occurred_at" name
 * the newly stored event the change is attributed to (see notify_diff).
 */
#ifndef OT_NOTIFY_H
#define OT_NOTIFY_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* A newly stored event of the order, to attribute a change to. */
struct notify_cause {
	const char *id;
	const char *shipment;    /* NULL for order-wide events */
	const char *occurred_at; /* as sent, offset kept */
	int64_t occurred_ms;
	const char *type; /* "shipment.departed", ...; NULL: not known, taken as shipment.* */
};

/*
 * Append to out (a JSON array) one item per change between old_state (NULL
 * for an order seen for the first time) and new_state, both model_fold()
 * results.  A shipment change is attributed to the latest (by occurred_ms,
 * then id) shipment.* cause of that shipment (only those can change a
 * shipment in lib/model.c: a document.issued naming it cannot), else the
 * latest cause of the order; an order change to the latest cause of the
 * order.  Items come in a fixed
 * order: shipments by ref (status, then eta), then order.status, then
 * order.anomaly.  Returns the number of items appended.
 */
size_t notify_diff(const json_t *old_state, const json_t *new_state, const char *exporter,
                   const char *order, const struct notify_cause *causes, size_t n_causes,
                   json_t *out);

/* HMAC-SHA256 of "<t>.<body>" with secret, as 64 lowercase hex digits. */
void notify_sign(const char *secret, long long t, const char *body, size_t len, char out[65]);

/*
 * The Ordertrack-Signature header value: "t=<t>,v1=<hex>" and one more
 * ",v1=<hex>" per extra secret (rotation).  Returns the length written.
 */
size_t notify_signature_header(const char *const *secrets, size_t n_secrets, long long t,
                               const char *body, size_t len, char *out, size_t cap);

/*
 * Milliseconds to wait before retry number attempt (1 = the first retry):
 * 1 s doubling to a cap of 5 minutes.  Deterministic, so it is testable and
 * documented; deliveries never give up.
 */
unsigned notify_backoff_ms(unsigned attempt);

/*
 * The seq of a NOTIFY payload that starts with it, as emit_notifications()
 * writes them ({"seq" : 42, "kind" : ...}), read without a JSON parser: the
 * daemon hears one per notification it stores.  -1 when the payload has
 * any other shape; the caller then parses it in full.
 */
long long notify_payload_seq(const char *payload);

#endif
