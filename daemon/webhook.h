/*
 * webhook.h - POST every matching notification to each configured
 * endpoint, in seq order, at least once, resuming from a cursor kept in
 * PostgreSQL.
 */
#ifndef OT_WEBHOOK_H
#define OT_WEBHOOK_H

#include <stdbool.h>

/* (Re)create the deliverers from the running config. */
void webhooks_start(void);
void webhooks_stop(void);
/*
 * New notifications were committed (here, or by another daemon: its
 * NOTIFY), or the auxiliary connection is back: idle deliverers look again.
 */
void webhooks_wake(void);
/*
 * The auxiliary connection is (back) up, on a new session that holds no
 * webhook's lock: try for them again, then as webhooks_wake() once the
 * ingest session has found the schema (else server_db_ready() does).
 */
void webhooks_aux_up(void);
/*
 * A POST is on the wire, or the cursor after a 2xx is being written: a
 * stop now would deliver that notification again after the restart.
 * While the daemon drains no new POST starts.
 */
bool webhooks_busy(void);

#endif
