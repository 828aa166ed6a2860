/*
 * aux.h - a second PostgreSQL connection for everything besides ingest:
 * reading the notification feed, LISTEN, webhook cursors, alerts.
 *
 * Queries run one at a time in the order they were asked for; each gets
 * its callback with the result, or with NULL when the connection failed
 * before it answered (the caller decides whether to ask again).  The
 * connection reconnects by itself with a capped backoff and re-issues its
 * LISTEN.  Like the store, it never blocks the loop.
 */
#ifndef OT_AUX_H
#define OT_AUX_H

#include <event2/event.h>
#include <libpq-fe.h>
#include <stdbool.h>

struct aux;

/* The result, or NULL when the query could not run; the callee must not PQclear it. */
typedef void aux_result_fn(void *arg, const PGresult *r);
/* A NOTIFY arrived on the listened channel. */
typedef void aux_notify_fn(void *arg, const char *payload);
/* The connection came up (after start or after an outage). */
typedef void aux_up_fn(void *arg);

struct aux *aux_new(struct event_base *base, const char *conninfo);
void aux_free(struct aux *a);
/* LISTEN on channel once connected, and again after every reconnect. */
void aux_listen(struct aux *a, const char *channel, aux_notify_fn *fn, aux_up_fn *up, void *arg);
/* Queue a query with text parameters (copied). */
void aux_query(struct aux *a, const char *sql, int nparams, const char *const *params,
               aux_result_fn *fn, void *arg);
bool aux_up(const struct aux *a);
/*
 * The backend of the session lost last (0: none, or it was not up): the
 * query whose callback got NULL went there, and may still be running.
 */
int aux_lost_pid(const struct aux *a);
/*
 * Shut the session's socket, a query in flight, as a network failure would
 * (a test's fault point): the server still runs what it has read, and the
 * session is lost as any other.
 */
void aux_break(struct aux *a);

#endif
