/*
 * project.h - turn the events of the orders a batch touched into the read
 * model rows that ordertrack.apply_orders() writes.
 */
#ifndef OT_PROJECT_H
#define OT_PROJECT_H

#include <libpq-fe.h>
#include <stddef.h>

#include "model.h"
#include "server.h"
#include "textbuf.h"

/* What part two of a batch writes: how many of each. */
struct projection {
	unsigned n_orders; /* orders folded, in the apply buffer */
	unsigned n_notes;  /* notifications, in the notes buffer */
};

/*
 * load holds the events of the touched orders stored before this batch
 * and states the read model state stored last for those that have one,
 * both ordered by (exporter, order_ref) in byte order; load's columns are
 * exporter, order_ref, event_id, type, occurred_ms, body and states'
 * exporter, order_ref, state.  changed[] holds the slots of the events this
 * batch stored (it is sorted here); only their orders are folded, from
 * load's rows plus those slots' parsed trees, and diffed.  apply receives
 * the JSON array for apply_orders() and notes the one for
 * emit_notifications() (each emptied first); out says how many items each
 * holds.
 */
void project_build(const PGresult *load, const PGresult *states, struct slot **changed,
                   size_t n_changed, const struct model_rules *rules, struct textbuf *apply,
                   struct textbuf *notes, struct projection *out);

#endif
