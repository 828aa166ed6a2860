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

/*
 * load holds every event of the touched orders, ordered by (exporter,
 * order_ref), with columns exporter, order_ref, event_id, type,
 * occurred_ms, body.  Only the orders of the slots in changed[] (events
 * this batch stored) are folded.  Returns the JSON array for
 * apply_orders() as a malloc'd string, or NULL when no order changed.
 */
char *project_build(const PGresult *load, struct slot **changed, size_t n_changed,
                    const struct model_rules *rules, unsigned *n_orders);

#endif
