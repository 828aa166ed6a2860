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

/* What part two of a batch writes. */
struct projection {
	char *apply;       /* JSON array for apply_orders(), or NULL */
	char *notes;       /* JSON array for emit_notifications(), or NULL */
	unsigned n_orders; /* orders folded */
	unsigned n_notes;  /* notifications */
};

/*
 * load holds the events of the touched orders stored before this batch
 * and states the read model state stored last for those that have one,
 * both ordered by (exporter, order_ref) in byte order; load's columns are
 * exporter, order_ref, event_id, type, occurred_ms, body and states'
 * exporter, order_ref, state.  changed[] holds the slots of the events this
 * batch stored (it is sorted here); only their orders are folded, from
 * load's rows plus those slots' parsed trees, and diffed.  Fills out; free
 * it with projection_fini().
 */
void project_build(const PGresult *load, const PGresult *states, struct slot **changed,
                   size_t n_changed, const struct model_rules *rules, struct projection *out);
void projection_fini(struct projection *p);

#endif
