/*
 * feed.c - the notification feed over TCP: subscribe, backlog, then live.
 *
 * Every subscriber is fed from ordertrack.notifications, never from memory:
 * a subscriber has a cursor (the last seq it has been given or skipped by
 * its filters) and the feed reads the rows after the smallest cursor, one
 * page at a time, on the auxiliary connection.  Because seq grows in
 * commit order (sql/003_notifications.sql), rows past a cursor can only be
 * added, never appear below it, so the switch from backlog to live needs no
 * special case and can neither skip nor repeat a notification.
 *
 * The feed is woken when this daemon commits notifications, when another
 * daemon's NOTIFY arrives on LISTEN ordertrack, when a subscriber joins,
 * and when a paused subscriber's socket drains; and, after a page query
 * failed with the session up, by a timer on the webhooks' backoff (on a
 * quiet database nothing else might come for hours).  A subscriber whose peer
 * reads slowly is paused (its socket buffer stays bounded) and fed again
 * from the table once it has drained: nothing is dropped.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "aux.h"
#include "feed.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "webhook.h"

#define FEED_PAGE     500
#define FEED_PAGE_STR "500"

/*
 * A lost batch that may have committed (feed_report_in_doubt), or a lost
 * alert check (feed_alerts_in_doubt): the first is known by its
 * transaction's id, the second, whose id never came back, by its
 * session's backend.
 */
struct doubt {
	LIST_ENTRY(doubt) d_entry;
	PGresult *d_rows;      /* EMIT's rows, or NULL: they never came back */
	char d_xid[24];        /* a batch's transaction */
	int d_pid;             /* an alert check's backend (no xid) */
	void (*d_done)(void);  /* called once it is settled, or NULL */
	long long d_floor;     /* its notifications' seqs are greater */
	struct event *d_timer; /* the next look at its status */
	unsigned d_tries;
};

#define DOUBT_TRIES 30 /* looks at its status, a second apart */

static void doubt_free(struct doubt *dt);
static void doubt_unknown(struct doubt *dt, const char *why);

struct sub {
	LIST_ENTRY(sub) sb_entry;
	struct conn *sb_conn;
	long long sb_cursor;
	char *sb_exporter; /* an exporter sees only its own; NULL: operator */
	char **sb_kinds;   /* filters, NULL-terminated, or NULL for all */
	char **sb_orders;
	char **sb_exporters; /* operators only */
	/* The cursor as a counter read went out (feed_check_begin): judged
	 * against its answer, if no later read took its place. */
	unsigned sb_check;
	long long sb_check_cursor;
	long long sb_ahead; /* >= 0: past the database's last seq, to be told */
};

static struct {
	struct aux *aux;
	LIST_HEAD(, sub) subs;
	bool in_flight;            /* a page query is running */
	bool again;                /* woken while it ran: look again after */
	long long page_after;      /* the page being read holds the rows after this seq */
	bool schema;               /* an ingest session has accepted the schema */
	struct event *retry;       /* after a page query failed, the session up */
	unsigned failed;           /* page queries failed in a row */
	bool turn;                 /* this page for the subscribers ahead (feed_fetch) */
	unsigned rr;               /* counts the pages for those below them, to take turns */
	LIST_HEAD(, doubt) doubts; /* their checks not answered yet */
	unsigned checks;           /* counter reads sent (feed_check_begin) */
} feed;

static const char page_sql[] =
    "SELECT seq, exporter, kind, order_ref, body::text FROM ordertrack.notifications"
    " WHERE seq > $1 ORDER BY seq LIMIT " FEED_PAGE_STR;

static void feed_fetch(void);
static void feed_check_counter(void);

/* Copy a JSON array of strings into a NULL-terminated array, or NULL. */
static char **strings_copy(const json_t *arr)
{
	if (arr == NULL)
		return NULL;
	size_t n = json_array_size(arr);
	char **out = calloc(n + 1, sizeof(char *));
	if (out == NULL)
		abort();
	for (size_t i = 0; i < n; i++) {
		out[i] = strdup(json_string_value(json_array_get(arr, i)));
		if (out[i] == NULL)
			abort();
	}
	return out;
}

/* Free what strings_copy made. */
static void strings_free(char **v)
{
	for (size_t i = 0; v != NULL && v[i] != NULL; i++)
		free(v[i]);
	free(v);
}

/* Is s in the filter (a NULL filter lets everything through)? */
static bool filter_has(char **filter, const char *s)
{
	if (filter == NULL)
		return true;
	for (size_t i = 0; filter[i] != NULL; i++)
		if (strcmp(filter[i], s) == 0)
			return true;
	return false;
}

/* Does this row go to this subscriber? */
static bool sub_wants(const struct sub *sb, const char *exporter, const char *kind,
                      const char *order)
{
	if (sb->sb_exporter != NULL && strcmp(sb->sb_exporter, exporter) != 0)
		return false;
	return filter_has(sb->sb_exporters, exporter) && filter_has(sb->sb_kinds, kind) &&
	       filter_has(sb->sb_orders, order);
}

/*
 * Give one page of rows to every subscriber that is ready for them.  The
 * page holds the rows after feed.page_after only: a subscriber whose cursor
 * is below that (one that joined, or drained, while the page was read)
 * would jump over the rows in between, so it waits for the next page,
 * which is read from its cursor.
 */
static void feed_deliver(const PGresult *r)
{
	int rows = PQntuples(r);
	struct sub *sb, *next;
	for (sb = LIST_FIRST(&feed.subs); sb != NULL; sb = next) {
		next = LIST_NEXT(sb, sb_entry);
		if (sb->sb_ahead >= 0)
			continue; /* to be told it is ahead, not fed */
		if (sb->sb_cursor < feed.page_after) {
			if (conn_feed_ready(sb->sb_conn))
				feed.again = true;
			continue;
		}
		for (int i = 0; i < rows; i++) {
			long long seq = strtoll(PQgetvalue(r, i, 0), NULL, 10);
			if (seq <= sb->sb_cursor)
				continue;
			if (!conn_feed_ready(sb->sb_conn))
				break; /* paused; continues from its cursor later */
			if (seq > sb->sb_cursor + 1 && sb->sb_cursor > 0) {
				/* Seqs have no holes (003): these rows were deleted.
				 * After 0 asks for what is stored, from the oldest. */
				conn_feed_gap(sb->sb_conn, sb->sb_cursor, seq);
				feed_unsubscribe(sb);
				break;
			}
			if (sub_wants(sb, PQgetvalue(r, i, 1), PQgetvalue(r, i, 2),
			              PQgetvalue(r, i, 3)))
				conn_feed_write(sb->sb_conn, PQgetvalue(r, i, 4),
				                (size_t)PQgetlength(r, i, 4));
			sb->sb_cursor = seq;
		}
	}
	if (rows > 0) {
		long long last = strtoll(PQgetvalue(r, rows - 1, 0), NULL, 10);
		if (last > server.last_seq)
			server.last_seq = last;
	}
}

/* Read a page again, after a failed one. */
static void feed_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	feed_fetch();
}

/*
 * The page query failed with the session up (a lost session wakes the
 * feed when it is back): read again later, not at once.
 */
static void feed_page_failed(void)
{
	unsigned ms = notify_backoff_ms(++feed.failed);
	log_warnx("feed query failed", "attempt=%u retry_ms=%u subscribers=%u", feed.failed, ms,
	          server.n_subscribers);
	feed.again = false;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	evtimer_add(feed.retry, &tv);
}

/* A page arrived (or the query failed: r is NULL when the session was lost). */
static void feed_page_cb(void *arg, const PGresult *r)
{
	(void)arg;
	feed.in_flight = false;
	if (r != NULL && PQresultStatus(r) != PGRES_TUPLES_OK) {
		feed_page_failed();
		return;
	}
	if (r != NULL) {
		if (feed.failed > 0)
			log_info("feed query failing no more", "failures=%u", feed.failed);
		feed.failed = 0;
		feed_deliver(r);
		if (PQntuples(r) == FEED_PAGE)
			feed.again = true; /* more where that came from */
	}
	if (feed.again) {
		feed.again = false;
		feed_fetch();
	}
}

/*
 * Read the next page for the ready subscribers.  Every other page is read
 * after the largest cursor that is behind the newest seq (those nearly
 * caught up, live ones when something new came); the others go in turn to
 * each cursor below it, in the order of the subscribers' list.  One subscriber catching up on a
 * long backlog (after 0, say, with a filter that drops most rows, so that
 * it never pauses) would otherwise have every page read at its cursor, and
 * those ahead of it would wait until it caught up too.
 */
static void feed_fetch(void)
{
	long long after = -1, ahead = -1;
	unsigned below = 0;
	struct sub *sb;

	/* On a new database the tables come with the migrations: until an
	 * ingest session has applied them, a page query would only fail.
	 * feed_db_ready() looks again then. */
	if (feed.aux == NULL || !feed.schema)
		return;
	if (feed.in_flight) {
		feed.again = true;
		return;
	}
	/* After a failed page, only the timer reads: a wake per commit would
	 * send (and log) the failing query at the rate of the batches. */
	if (evtimer_pending(feed.retry, NULL))
		return;
	LIST_FOREACH(sb, &feed.subs, sb_entry)
	{
		if (!conn_feed_ready(sb->sb_conn) || sb->sb_ahead >= 0)
			continue;
		if (after < 0 || sb->sb_cursor < after)
			after = sb->sb_cursor;
		if (sb->sb_cursor < server.last_seq && sb->sb_cursor > ahead)
			ahead = sb->sb_cursor;
	}
	if (after < 0)
		return; /* nobody is ready */
	LIST_FOREACH(sb, &feed.subs, sb_entry)
	{
		if (conn_feed_ready(sb->sb_conn) && sb->sb_cursor < ahead)
			below++;
	}
	feed.turn = !feed.turn;
	if (feed.turn && ahead > after) {
		after = ahead;
	} else if (below > 1) {
		/* Those below take turns, in list order. */
		unsigned k = feed.rr++ % below;
		LIST_FOREACH(sb, &feed.subs, sb_entry)
		{
			if (conn_feed_ready(sb->sb_conn) && sb->sb_cursor < ahead && k-- == 0) {
				after = sb->sb_cursor;
				break;
			}
		}
	}
	char buf[32];
	snprintf(buf, sizeof(buf), "%lld", after);
	const char *params[1] = {buf};
	feed.in_flight = true;
	feed.page_after = after;
	aux_query(feed.aux, page_sql, 1, params, feed_page_cb, NULL);
}

/* NOTIFY ordertrack from any daemon: there is something new to read. */
static void feed_notify_cb(void *arg, const char *payload)
{
	(void)arg;
	long long seq = notify_payload_seq(payload);
	if (seq < 0) { /* not written by emit_notifications(): parse it all */
		json_t *j = json_loads(payload, 0, NULL);
		seq = j ? json_integer_value(json_object_get(j, "seq")) : 0;
		json_decref(j);
	}
	if (seq > server.last_seq)
		server.last_seq = seq;
	feed_wake();
	/* Another daemon's commit wakes no webhook of this one otherwise.
	 * This daemon's own commits woke them already: one NOTIFY per
	 * notification must not cost a webhook a second fetch each. */
	if (seq > server.last_local_seq)
		webhooks_wake();
}

/*
 * The auxiliary connection is (back) up: catch up on what was missed.
 * Webhooks too: one whose query the outage failed went idle, the NOTIFYs
 * sent while nobody listened are lost, and the webhook locks went with
 * the old session.
 */
static void feed_up_cb(void *arg)
{
	(void)arg;
	evtimer_del(feed.retry); /* a failed page's, on the old session */
	feed_wake();
	webhooks_aux_up();
}

void feed_init(struct aux *aux)
{
	LIST_INIT(&feed.subs);
	LIST_INIT(&feed.doubts);
	feed.aux = aux;
	feed.retry = evtimer_new(server.base, feed_retry_cb, NULL);
	if (feed.retry == NULL)
		abort();
	aux_listen(aux, "ordertrack", feed_notify_cb, feed_up_cb, NULL);
}

void feed_stop(void)
{
	struct doubt *dt;
	while ((dt = LIST_FIRST(&feed.doubts)) != NULL)
		doubt_unknown(dt, "the daemon stopped before it could tell");
	if (feed.retry != NULL)
		event_free(feed.retry);
	feed.retry = NULL;
}

struct sub *feed_subscribe(struct conn *c, const struct request *rq, const char *exporter)
{
	struct sub *sb = calloc(1, sizeof(*sb));
	if (sb == NULL)
		abort();
	sb->sb_conn = c;
	sb->sb_cursor = rq->u.subscribe.after;
	if (exporter != NULL && (sb->sb_exporter = strdup(exporter)) == NULL)
		abort();
	sb->sb_kinds = strings_copy(rq->u.subscribe.kinds);
	sb->sb_orders = strings_copy(rq->u.subscribe.orders);
	sb->sb_exporters = strings_copy(rq->u.subscribe.exporters);
	sb->sb_ahead = -1;
	LIST_INSERT_HEAD(&feed.subs, sb, sb_entry);
	server.n_subscribers++;
	if (sb->sb_cursor > 0)
		feed_check_counter();
	feed_wake();
	return sb;
}

void feed_unsubscribe(struct sub *sb)
{
	LIST_REMOVE(sb, sb_entry);
	server.n_subscribers--;
	free(sb->sb_exporter);
	strings_free(sb->sb_kinds);
	strings_free(sb->sb_orders);
	strings_free(sb->sb_exporters);
	free(sb);
}

/*
 * A subscriber whose cursor is past every seq the database has given out
 * gave it (the feed moves a cursor only to rows it read): the database is
 * older than that cursor, restored from a backup.  The feed_gap goes out
 * once "subscribed" and the replies before it have (conn_feed_ready).
 */
static void feed_tell_ahead(struct sub *sb)
{
	conn_feed_ahead(sb->sb_conn, sb->sb_check_cursor, sb->sb_ahead);
	feed_unsubscribe(sb);
}

/* Tell the subscribers found ahead that may be told now. */
static void feed_settle_ahead(void)
{
	struct sub *sb, *next;
	for (sb = LIST_FIRST(&feed.subs); sb != NULL; sb = next) {
		next = LIST_NEXT(sb, sb_entry);
		if (sb->sb_ahead >= 0 && conn_feed_ready(sb->sb_conn))
			feed_tell_ahead(sb);
	}
}

unsigned feed_check_begin(void)
{
	unsigned check = ++feed.checks;
	struct sub *sb;
	LIST_FOREACH(sb, &feed.subs, sb_entry)
	{
		sb->sb_check = check;
		sb->sb_check_cursor = sb->sb_cursor;
	}
	return check;
}

/*
 * Only cursors as they were when the read went out are judged: those came
 * from rows read, and answered, before it, or from the subscriber, who
 * had them from notifications committed before it.  One moved since by a
 * page may hold seqs committed after the read, and is not judged.
 */
void feed_check_end(unsigned check, long long last, bool authoritative)
{
	/* Until this daemon sees a seq, a batch lost at its commit would
	 * look for its notifications above 0: a scan of the whole table.
	 * Read by an ingest session before its first batch, the counter is
	 * also the ceiling: a database restored from an older backup has
	 * given out fewer seqs than this daemon saw. */
	if (last > server.last_seq || (authoritative && last < server.last_seq))
		server.last_seq = last;
	if (authoritative && last < server.last_local_seq)
		server.last_local_seq = last;
	struct sub *sb;
	LIST_FOREACH(sb, &feed.subs, sb_entry)
	{
		if (sb->sb_check == check && sb->sb_ahead < 0 && sb->sb_check_cursor > last)
			sb->sb_ahead = last;
	}
	feed_settle_ahead();
}

/* The counter came back on the auxiliary session (arg: the check). */
static void feed_counter_cb(void *arg, const PGresult *r)
{
	unsigned check = (unsigned)(uintptr_t)arg;
	if (r == NULL) {
		feed_check_counter(); /* the session was lost: on the next one */
		return;
	}
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
		return;
	feed_check_end(check, strtoll(PQgetvalue(r, 0, 0), NULL, 10), false);
}

/* Read the counter on the auxiliary session (once the schema is there). */
static void feed_check_counter(void)
{
	if (feed.aux == NULL || !feed.schema)
		return;
	unsigned check = feed_check_begin();
	aux_query(feed.aux, "SELECT last_seq FROM ordertrack.notification_counter", 0, NULL,
	          feed_counter_cb, (void *)(uintptr_t)check);
}

void feed_db_ready(void)
{
	/* A subscriber of before the schema, with a cursor, is judged now
	 * (an ingest session reads the counter itself as it connects). */
	bool first = !feed.schema;
	feed.schema = true;
	if (first) {
		struct sub *sb;
		LIST_FOREACH(sb, &feed.subs, sb_entry)
		{
			if (sb->sb_cursor > 0) {
				feed_check_counter();
				break;
			}
		}
	}
	feed_wake();
}

void feed_wake(void)
{
	struct sub *sb;
	feed_settle_ahead();
	LIST_FOREACH(sb, &feed.subs, sb_entry)
	{
		/* Behind the newest known seq, or not sure (a NOTIFY may be
		 * lost across a reconnect): look. */
		if (conn_feed_ready(sb->sb_conn)) {
			feed_fetch();
			return;
		}
	}
}

void feed_report(const PGresult *r)
{
	int n = r ? PQntuples(r) : 0;
	for (int i = 0; i < n; i++) {
		const char *kind = PQgetvalue(r, i, 1);
		bool alert = strncmp(kind, "alert.", 6) == 0;
		log_record(alert ? LOG_LEVEL_WARNING : LOG_LEVEL_INFO, "status",
		           "kind=%s exporter=%s order=%s shipment=%s from=%s to=%s event=%s seq=%s",
		           kind, lq(PQgetvalue(r, i, 2)), lq(PQgetvalue(r, i, 3)),
		           PQgetisnull(r, i, 4) ? "-" : lq(PQgetvalue(r, i, 4)),
		           PQgetisnull(r, i, 5) ? "-" : lq(PQgetvalue(r, i, 5)),
		           PQgetisnull(r, i, 6) ? "-" : lq(PQgetvalue(r, i, 6)),
		           PQgetisnull(r, i, 7) ? "-" : lq(PQgetvalue(r, i, 7)),
		           PQgetvalue(r, i, 0));
		server.notifications_total++;
	}
	if (n > 0)
		server_notifications_committed(strtoll(PQgetvalue(r, n - 1, 0), NULL, 10));
}

/*
 * Did the lost batch's transaction commit?  Asked by its id (batch.c's
 * LOCK returns it): a session that broke with its COMMIT on the way may
 * still be committing, and then the answer is "in progress", asked again
 * a second later.
 */
static const char doubt_status_sql[] = "SELECT pg_xact_status($1::xid8)";

/*
 * An alert check's id is not known before its answer, so its session's
 * backend is looked at instead: while it runs a query the check may still
 * commit; once it is gone, or idle (its answer sent into a connection
 * that is no more, waiting to read from it), the check is over one way or
 * the other and its rows, if any, are in the table.  (A pid taken again
 * since by another session would only make the wait longer.)
 */
static const char alerts_status_sql[] =
    "SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1::integer"
    " AND pid <> pg_backend_pid() AND state IS DISTINCT FROM 'idle')"
    " THEN 'in progress' ELSE 'committed' END";

/* Its notifications, when EMIT's rows never came back: by their xmin. */
static const char doubt_rows_sql[] =
    "SELECT seq, kind, exporter, order_ref, shipment_ref, from_status, to_status, event_id,"
    " created_at FROM ordertrack.notifications"
    " WHERE seq > $1::bigint AND xmin = $2::xid8::xid ORDER BY seq";

/*
 * An alert check's: the alerts above the counter as it was read just
 * before the check went out.  This daemon's next check waits until the
 * look is settled (alerts.c), so none of them is another check's of this
 * daemon; a second daemon on the same database may have raised some in
 * the meantime, whose lines would then be logged by both.
 */
static const char alerts_rows_sql[] =
    "SELECT seq, kind, exporter, order_ref, shipment_ref, from_status, to_status, event_id,"
    " created_at FROM ordertrack.notifications"
    " WHERE seq > $1::bigint AND kind LIKE 'alert.%' ORDER BY seq";

static void doubt_look(struct doubt *dt);

/* What was lost, for the log lines. */
static const char *doubt_what(const struct doubt *dt)
{
	return dt->d_pid != 0 ? "an alert check's session was lost before its answer"
	                      : "a batch's session was lost at its commit";
}

/* Forget a lost batch. */
static void doubt_free(struct doubt *dt)
{
	LIST_REMOVE(dt, d_entry);
	if (dt->d_done != NULL)
		dt->d_done();
	PQclear(dt->d_rows);
	if (dt->d_timer != NULL)
		event_free(dt->d_timer);
	free(dt);
}

/* It cannot be told: one warning says where to look. */
static void doubt_unknown(struct doubt *dt, const char *why)
{
	char reason[320];
	snprintf(reason, sizeof(reason),
	         "%s, and %s: its notifications may be in ordertrack.notifications without a"
	         " status line",
	         doubt_what(dt), why);
	int n = dt->d_rows != NULL ? PQntuples(dt->d_rows) : 0;
	if (n > 0)
		log_warnx("notifications in doubt", "first_seq=%s last_seq=%s xid=%s reason=%s",
		          PQgetvalue(dt->d_rows, 0, 0), PQgetvalue(dt->d_rows, n - 1, 0), dt->d_xid,
		          lq(reason));
	else if (dt->d_pid != 0)
		log_warnx("notifications in doubt",
		          "after_seq=%lld kinds=alert.* backend_pid=%d reason=%s", dt->d_floor,
		          dt->d_pid, lq(reason));
	else
		log_warnx("notifications in doubt", "after_seq=%lld xid=%s reason=%s", dt->d_floor,
		          dt->d_xid, lq(reason));
	doubt_free(dt);
}

static const char doubt_check_failed[] = "the look at it failed";

/*
 * The look's session was lost too (a restart often ends more than one):
 * look again on the next one, a second later, as one of the tries.
 */
static void doubt_again(struct doubt *dt)
{
	if (++dt->d_tries >= DOUBT_TRIES) {
		doubt_unknown(dt, dt->d_pid != 0
		                      ? "its backend was still running it 30 s later"
		                      : "its transaction was still in progress 30 s later");
		return;
	}
	struct timeval tv = {1, 0};
	evtimer_add(dt->d_timer, &tv);
}

/* The batch (or check) committed with these notifications: their status lines, late. */
static void doubt_committed(struct doubt *dt, const PGresult *rows)
{
	int n = PQntuples(rows);
	const char *msg =
	    dt->d_pid != 0 ? "lost alert check had committed" : "lost batch had committed";
	if (n == 0) {
		if (dt->d_pid != 0)
			log_debug("lost alert check is over", "backend_pid=%d notifications=0",
			          dt->d_pid);
		else
			log_debug(msg, "xid=%s notifications=0", dt->d_xid);
		return;
	}
	if (dt->d_pid != 0)
		log_info(msg, "first_seq=%s last_seq=%s notifications=%d backend_pid=%d",
		         PQgetvalue(rows, 0, 0), PQgetvalue(rows, n - 1, 0), n, dt->d_pid);
	else
		log_info(msg, "first_seq=%s last_seq=%s notifications=%d xid=%s",
		         PQgetvalue(rows, 0, 0), PQgetvalue(rows, n - 1, 0), n, dt->d_xid);
	metrics_notifications(rows);
	feed_report(rows);
}

/* The notifications of a committed batch whose EMIT rows were lost. */
static void feed_doubt_rows_cb(void *arg, const PGresult *r)
{
	struct doubt *dt = arg;
	if (r == NULL) {
		doubt_again(dt);
		return;
	}
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		doubt_unknown(dt, doubt_check_failed);
		return;
	}
	doubt_committed(dt, r);
	doubt_free(dt);
}

/* Read the notifications of a batch (or check) known to be over. */
static void doubt_read_rows(struct doubt *dt)
{
	char floor[32];
	snprintf(floor, sizeof(floor), "%lld", dt->d_floor);
	if (dt->d_pid != 0) {
		const char *params[1] = {floor};
		aux_query(feed.aux, alerts_rows_sql, 1, params, feed_doubt_rows_cb, dt);
		return;
	}
	const char *params[2] = {floor, dt->d_xid};
	aux_query(feed.aux, doubt_rows_sql, 2, params, feed_doubt_rows_cb, dt);
}

/* The transaction's status came back. */
static void feed_doubt_status_cb(void *arg, const PGresult *r)
{
	struct doubt *dt = arg;
	if (r == NULL) {
		doubt_again(dt);
		return;
	}
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1 || PQgetisnull(r, 0, 0)) {
		/* NULL: an id too old for the server to remember. */
		doubt_unknown(dt, doubt_check_failed);
		return;
	}
	const char *status = PQgetvalue(r, 0, 0);
	if (strcmp(status, "committed") == 0) {
		if (dt->d_rows != NULL) {
			doubt_committed(dt, dt->d_rows);
			doubt_free(dt);
			return;
		}
		doubt_read_rows(dt);
		return;
	}
	if (strcmp(status, "aborted") == 0) {
		log_debug("lost batch had rolled back", "xid=%s", dt->d_xid);
		doubt_free(dt);
		return;
	}
	doubt_again(dt);
}

static void doubt_look(struct doubt *dt)
{
	if (dt->d_pid != 0) {
		char pid[16];
		snprintf(pid, sizeof(pid), "%d", dt->d_pid);
		const char *params[1] = {pid};
		aux_query(feed.aux, alerts_status_sql, 1, params, feed_doubt_status_cb, dt);
		return;
	}
	const char *params[1] = {dt->d_xid};
	aux_query(feed.aux, doubt_status_sql, 1, params, feed_doubt_status_cb, dt);
}

static void doubt_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	doubt_look(arg);
}

/* A new doubt, looked at at once. */
static struct doubt *doubt_new(long long seq_floor)
{
	struct doubt *dt = calloc(1, sizeof(*dt));
	if (dt == NULL)
		abort();
	dt->d_floor = seq_floor;
	dt->d_timer = evtimer_new(server.base, doubt_timer_cb, dt);
	if (dt->d_timer == NULL)
		abort();
	LIST_INSERT_HEAD(&feed.doubts, dt, d_entry);
	return dt;
}

void feed_report_in_doubt(PGresult *r, const char *xid, long long seq_floor)
{
	if (xid == NULL || xid[0] == '\0') {
		/* COMMIT never goes out before LOCK's result is in: not reached. */
		PQclear(r);
		return;
	}
	struct doubt *dt = doubt_new(seq_floor);
	dt->d_rows = r; /* NULL when EMIT's rows never came back */
	snprintf(dt->d_xid, sizeof(dt->d_xid), "%s", xid);
	doubt_look(dt);
}

void feed_alerts_in_doubt(int backend_pid, long long seq_floor, void (*done)(void))
{
	if (backend_pid == 0) {
		/* Never sent: nothing can have committed. */
		done();
		return;
	}
	struct doubt *dt = doubt_new(seq_floor);
	dt->d_pid = backend_pid;
	dt->d_done = done;
	doubt_look(dt);
}
