/*
 * alerts.c - the timer that raises and clears alerts for stuck shipments.
 *
 * Every alerts.interval_s the auxiliary connection runs
 * ordertrack.evaluate_alerts() (sql/003_notifications.sql, replaced by
 * sql/009_alerts_episodes.sql and sql/011_alerts_open_shipments.sql), which keeps
 * the episodes in ordertrack.alerts, so an alert fires once per episode
 * and a restart does not fire it again.  The notifications it emits are
 * logged at warning level and fed like any other.  A check whose session
 * breaks before its answer may still have committed: feed.c then reads
 * its alerts from the table, so that none goes without its line, and the
 * next check waits until that is settled.
 */
#include <stdio.h>
#include <stdlib.h>

#include "alerts.h"
#include "aux.h"
#include "fault.h"
#include "feed.h"
#include "log.h"
#include "metrics.h"

static struct event *alerts_timer;
static int alerts_interval_s; /* what alerts_timer was added with */
static bool alerts_in_flight;
static long long alerts_floor; /* the last seq given out before it went */

/* The floor first: a check whose answer is lost is then read above it. */
static const char floor_sql[] = "SELECT last_seq FROM ordertrack.notification_counter";

static const char evaluate_sql[] =
    "SELECT seq, kind, exporter, order_ref, shipment_ref, from_status, to_status, event_id"
    " FROM ordertrack.evaluate_alerts($1::integer, $2::integer)";

/* A lost check is settled: the next may go. */
static void alerts_settled(void)
{
	alerts_in_flight = false;
}

/* The evaluation finished (r is NULL when the connection failed). */
static void alerts_done_cb(void *arg, const PGresult *r)
{
	(void)arg;
	if (r == NULL) {
		/* Its session went with it: that backend may still commit it. */
		feed_alerts_in_doubt(aux_lost_pid(server.aux), alerts_floor, alerts_settled);
		return;
	}
	alerts_in_flight = false;
	if (PQresultStatus(r) == PGRES_TUPLES_OK) {
		metrics_notifications(r);
		feed_report(r);
	}
}

/* The floor came back: evaluate. */
static void alerts_floor_cb(void *arg, const PGresult *r)
{
	(void)arg;
	if (r == NULL || PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
		alerts_in_flight = false; /* the next tick tries again */
		return;
	}
	alerts_floor = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	char hold[16], stale[16];
	snprintf(hold, sizeof(hold), "%d", server.cfg->alerts_customs_hold_hours);
	snprintf(stale, sizeof(stale), "%d", server.cfg->alerts_stale_hours);
	const char *params[2] = {hold, stale};
	aux_query(server.aux, evaluate_sql, 2, params, alerts_done_cb, NULL);
	if (fault_check("break_alerts_session"))
		aux_break(server.aux); /* the check on its way, as a network failure would */
}

/* Timer: evaluate now, unless the last run is still going. */
static void alerts_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	/* Only with the schema in place, which the store sees to. */
	if (alerts_in_flight || !store_db_up(server.store) || !aux_up(server.aux))
		return;
	alerts_in_flight = true;
	aux_query(server.aux, floor_sql, 0, NULL, alerts_floor_cb, NULL);
}

void alerts_start(void)
{
	if (alerts_timer == NULL)
		alerts_timer = event_new(server.base, -1, EV_PERSIST, alerts_tick_cb, NULL);
	if (alerts_timer == NULL)
		abort();
	alerts_interval_s = server.cfg->alerts_interval_s;
	struct timeval tv = {alerts_interval_s, 0};
	event_add(alerts_timer, &tv); /* re-adding applies a new interval */
}

void alerts_apply_config(void)
{
	/* Re-adding the timer starts its wait over, so doing it on every
	 * reload would keep alerts from ever being evaluated while reloads
	 * come more often than the interval.  The thresholds are read at each
	 * tick and need nothing here. */
	if (alerts_timer != NULL && alerts_interval_s == server.cfg->alerts_interval_s)
		return;
	alerts_start();
}

void alerts_stop(void)
{
	if (alerts_timer != NULL)
		event_free(alerts_timer);
	alerts_timer = NULL;
}
