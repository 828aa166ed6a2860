/*
 * feed.h - subscribers of the notification feed; see feed.c.
 */
#ifndef OT_FEED_H
#define OT_FEED_H

#include "aux.h"
#include "request.h"
#include "server.h"

struct sub;

/* Start feeding: LISTEN on the auxiliary connection. */
void feed_init(struct aux *aux);
/* Free what feed_init() made (at shutdown, the subscribers gone). */
void feed_stop(void);
/*
 * A subscribe request from c; exporter limits it to that exporter's
 * notifications (NULL for an operator).  The caller has already answered
 * "subscribed".
 */
struct sub *feed_subscribe(struct conn *c, const struct request *rq, const char *exporter);
/* The connection is going away. */
void feed_unsubscribe(struct sub *sb);
/* An ingest session is (back) up with the schema in place: look. */
void feed_db_ready(void);
/*
 * A read of ordertrack.notification_counter is going out (returns its
 * number): the subscribers' cursors as they are now are judged against
 * its answer, last, by feed_check_end.  A cursor past it gets feed_gap
 * (the database was restored from an older backup).  authoritative: read
 * by an ingest session before its first batch, so last is also the
 * ceiling for this daemon's idea of the newest seq.
 */
unsigned feed_check_begin(void);
void feed_check_end(unsigned check, long long last, bool authoritative);
/* Something may be new, or a subscriber became ready: look. */
void feed_wake(void);
/*
 * Committed notifications (rows of seq, kind, exporter, order_ref,
 * shipment_ref, from_status, to_status, event_id): one log line each, at
 * warning for alerts, then wake the feed and the webhooks.
 */
void feed_report(const PGresult *r);
/*
 * A batch whose session was lost after its COMMIT went out: it may have
 * committed, and its resend then finds nothing left to announce.  r holds
 * its notifications (rows as feed_report's), or is NULL when they never
 * came back; xid is its transaction, seq_floor a seq below all of its
 * own.  Takes r.  pg_xact_status() on the auxiliary session tells, and a
 * committed batch's notifications (r's, or read from the table by their
 * xmin) are reported (feed_report) and counted then; when it cannot be
 * told, one warning says where to look.
 */
void feed_report_in_doubt(PGresult *r, const char *xid, long long seq_floor);
/*
 * An alert check (ordertrack.evaluate_alerts) whose session was lost
 * before its answer came: it may have committed.  Once the session's
 * backend (backend_pid) is gone, the alerts after seq_floor are read and
 * reported as feed_report_in_doubt's are; done is called when that is
 * settled (at once when backend_pid is 0: the check never went out).
 */
void feed_alerts_in_doubt(int backend_pid, long long seq_floor, void (*done)(void));

#endif
