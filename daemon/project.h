/*
 * project.h - turn the events of the orders a batch touched into the read
 * model rows that ordertrack.apply_orders() writes.
 */
#ifndef OT_PROJECT_H
#define OT_PROJECT_H

#include <libpq-fe.h>
#include <stdbool.h>
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
 * (none for an order LOAD left to its saved walk) and states the read
 * model state stored last for those that have one, with its walk, both
 * ordered by (exporter, order_ref) in byte order; load's columns are
 * exporter, order_ref, event_id, type, body and states' exporter,
 * order_ref, state, walk.  changed[] holds the slots of the events this
 * batch stored (it is sorted here); only their orders are folded and
 * diffed: from the saved walk when load has no row of the order and the
 * order has a walk, else from load's rows plus those slots' parsed trees.
 * apply receives the JSON array for apply_orders() and notes the one for
 * emit_notifications() (each emptied first); out says how many items each
 * holds.  Returns false when the fold refused an order's walk: the slots
 * of that order are marked s_fold_whole, for the batch to go again with
 * LOAD told to return that order's events, and apply and notes are not
 * to be sent.
 */
bool project_build(const PGresult *load, const PGresult *states, struct slot **changed,
                   size_t n_changed, const struct model_rules *rules, struct textbuf *apply,
                   struct textbuf *notes, struct projection *out);

#endif
