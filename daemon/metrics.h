/*
 * metrics.h - the daemon's counters and histograms, for GET /metrics, the
 * periodic stats line of the log and the systemd STATUS; see metrics.c.
 *
 * The hooks are one-line calls from the modules where things happen
 * (conn.c, store.c and its lane.c and batch.c, main.c); the readers render what they hold.
 */
#ifndef OT_METRICS_H
#define OT_METRICS_H

#include <event2/buffer.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "server.h"

/* Note the start time; call once, before anything is counted. */
void metrics_init(void);
/* Start the timers: the stats line and the open-alerts query. */
void metrics_start(void);
/* The config was reloaded: re-arm the stats line with its interval. */
void metrics_apply_config(void);
void metrics_stop(void);

/* --- hooks --- */

/* conn.c: a connection was accepted (counted whether it is kept or not). */
void metrics_conn_opened(void);
/* conn.c: a connection was refused (a connection limit, or too many failed hellos). */
void metrics_conn_rejected(void);
/* conn.c: an event line passed validation and went to the store. */
void metrics_event_received(void);
/* conn.c: a line was answered with an error (code is an ERR_* word). */
void metrics_line_rejected(const char *code);
/* batch.c: a batch of this many events was sent to PostgreSQL. */
void metrics_batch_sent(unsigned events);
/* store.c: a batch committed; sent_at (CLOCK_MONOTONIC) is when it was sent. */
void metrics_batch_committed(const struct timespec *sent_at);
/* store.c: the store answered one event of this type. */
void metrics_event_result(const char *type, enum store_result r);
/* lane.c: a database session is ready; again is true after an outage. */
void metrics_db_connected(bool again);
/* store.c: notifications committed by a batch (rows of seq, kind, ...). */
void metrics_notifications(const PGresult *r);
/* main.c: a SIGHUP reload was applied (ok) or refused. */
void metrics_reload(bool ok);

/* --- readers --- */

/* Events read from clients and events answered by the store, since start. */
uint64_t metrics_events_in(void);
uint64_t metrics_events_out(void);
/*
 * One line for systemd's STATUS=: the event rate since the previous call,
 * connections, pending events and the database state.
 */
void metrics_status_line(char *buf, size_t cap);
/* Append the Prometheus text exposition (format 0.0.4) of everything to out. */
void metrics_render(struct evbuffer *out);

#endif
