/* SPDX-License-Identifier: ISC */
/*
 * metrics.c - counters and histograms, rendered for Prometheus, the log and
 * systemd.
 *
 * The daemon is one thread, so the counters are plain integers updated by
 * one-line hooks where things happen: conn.c (connections, lines), the
 * store (batches, event results, reconnects, notifications) and main.c
 * (reloads).
 * Gauges that the daemon already knows (connections open, events pending,
 * subscribers, the database state) are read from their owners when a
 * scrape asks, never copied.
 *
 * Labels come from fixed tables (event types, results, error codes,
 * notification kinds), so a scrape has the same series from the first
 * second on and a client can never grow them.  A value outside a table is
 * counted under "other".
 *
 * ordertrack_alerts_active is the one figure that comes from the database:
 * the open episodes in ordertrack.alerts, counted by a small query on the
 * auxiliary connection every ALERTS_REFRESH_S seconds while the database
 * is up.  It therefore covers every daemon writing to the same database,
 * and while the database is down it keeps the last value it read.
 *
 * Every log.stats_interval_s seconds (0: never) a "stats" line gives the
 * totals and the rates since the previous line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "aux.h"
#include "log.h"
#include "metrics.h"
#include "ot_build.h"

#define ALERTS_REFRESH_S 10

/* Event types of protocol v1 (lib/request.c), for the type label. */
static const char *const event_types[] = {
    "order.created",           "order.confirmed",
    "order.cancelled",         "shipment.booked",
    "shipment.picked_up",      "shipment.export_cleared",
    "shipment.departed",       "shipment.arrived",
    "shipment.import_cleared", "shipment.out_for_delivery",
    "shipment.delivered",      "shipment.checkpoint",
    "shipment.customs_hold",   "shipment.customs_released",
    "shipment.exception",      "shipment.exception_resolved",
    "shipment.eta_changed",    "document.issued",
    "event.retracted",         "other",
};
#define N_TYPES (sizeof(event_types) / sizeof(event_types[0]))

/* The result label, indexed by enum store_result. */
static const char *const results[] = {
    [STORE_STORED] = "stored",     [STORE_DUPLICATE] = "duplicate", [STORE_CONFLICT] = "conflict",
    [STORE_REJECTED] = "rejected", [STORE_FAILED] = "failed",
};
#define N_RESULTS (sizeof(results) / sizeof(results[0]))

/* Error codes a line can be answered with (lib/request.h), for the code label. */
static const char *const error_codes[] = {
    "malformed_json",       "line_too_long",  "invalid_event", "unknown_type",
    "invalid_request",      "conflict",       "auth_required", "auth_failed",
    "too_many_connections", "internal_error", "forbidden",     "other",
};
#define N_CODES (sizeof(error_codes) / sizeof(error_codes[0]))

/* Notification kinds (docs/NOTIFICATIONS.md), for the kind label. */
static const char *const kinds[] = {
    "order.status",        "order.anomaly", "shipment.status", "shipment.eta",
    "alert.customs_dwell", "alert.overdue", "alert.stale",     "other",
};
#define N_KINDS          (sizeof(kinds) / sizeof(kinds[0]))
#define N_ALERT_KINDS    3 /* kinds[4..6] */
#define FIRST_ALERT_KIND 4

/* Bucket bounds; the +Inf bucket is implicit. */
static const double batch_bounds[] = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000};
static const double commit_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                       0.1,    0.25,  0.5,    1,     2.5,  5,     10};
#define MAX_BUCKETS 16

/* A Prometheus histogram: per-bucket counts (not cumulative) and the sum. */
struct histogram {
	const double *bounds;
	size_t n_bounds;
	uint64_t buckets[MAX_BUCKETS]; /* [n_bounds] is +Inf */
	uint64_t count;
	double sum;
};

static struct {
	double start_time; /* Unix seconds */

	uint64_t conns_total, conns_rejected;
	uint64_t events_in, events_out;
	uint64_t events[N_TYPES][N_RESULTS];
	uint64_t lines_rejected[N_CODES];
	uint64_t notifications[N_KINDS];
	uint64_t batches_sent, batches_committed;
	uint64_t reconnects;
	uint64_t reloads_ok, reloads_failed;
	struct histogram batch_events;
	struct histogram commit_seconds;

	/* Open alerts by kind, from the last query that answered. */
	long long alerts_open[N_ALERT_KINDS];
	bool alerts_known;
	bool alerts_in_flight;
	struct event *ev_alerts;

	/* The stats line and the STATUS line: totals at their previous run. */
	struct event *ev_stats;
	int stats_interval_s;
	uint64_t stats_in, stats_out;
	double stats_at;
	uint64_t status_in;
	double status_at;
} m;

static const char alerts_sql[] = "SELECT kind, count(*) FROM ordertrack.alerts"
                                 " WHERE cleared_at IS NULL GROUP BY kind";

/* Seconds on the monotonic clock. */
static double mono_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The index of s in a table of n names whose last entry is "other". */
static size_t table_index(const char *const *table, size_t n, const char *s)
{
	for (size_t i = 0; s != NULL && i + 1 < n; i++)
		if (strcmp(table[i], s) == 0)
			return i;
	return n - 1;
}

/* Count one observation. */
static void histogram_observe(struct histogram *h, double v)
{
	size_t i = 0;
	while (i < h->n_bounds && v > h->bounds[i])
		i++;
	h->buckets[i]++;
	h->count++;
	h->sum += v;
}

void metrics_init(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	m.start_time = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
	m.batch_events.bounds = batch_bounds;
	m.batch_events.n_bounds = sizeof(batch_bounds) / sizeof(batch_bounds[0]);
	m.commit_seconds.bounds = commit_bounds;
	m.commit_seconds.n_bounds = sizeof(commit_bounds) / sizeof(commit_bounds[0]);
	m.stats_at = m.status_at = mono_now();
}

/* --- hooks --- */

void metrics_conn_opened(void)
{
	m.conns_total++;
}

void metrics_conn_rejected(void)
{
	m.conns_rejected++;
}

void metrics_event_received(void)
{
	m.events_in++;
}

void metrics_line_rejected(const char *code)
{
	m.lines_rejected[table_index(error_codes, N_CODES, code)]++;
}

void metrics_batch_sent(unsigned events)
{
	m.batches_sent++;
	histogram_observe(&m.batch_events, (double)events);
}

void metrics_batch_committed(const struct timespec *sent_at)
{
	struct timespec now;
	m.batches_committed++;
	clock_gettime(CLOCK_MONOTONIC, &now);
	double s =
	    (double)(now.tv_sec - sent_at->tv_sec) + (double)(now.tv_nsec - sent_at->tv_nsec) / 1e9;
	histogram_observe(&m.commit_seconds, s);
}

void metrics_event_result(const char *type, enum store_result r)
{
	if ((size_t)r >= N_RESULTS)
		return;
	m.events[table_index(event_types, N_TYPES, type)][r]++;
	m.events_out++;
}

void metrics_db_connected(bool again)
{
	if (again)
		m.reconnects++;
}

void metrics_notifications(const PGresult *r)
{
	int n = r != NULL ? PQntuples(r) : 0;
	for (int i = 0; i < n; i++)
		m.notifications[table_index(kinds, N_KINDS, PQgetvalue(r, i, 1))]++;
}

void metrics_reload(bool ok)
{
	if (ok)
		m.reloads_ok++;
	else
		m.reloads_failed++;
}

/* --- timers --- */

/* The open-alerts query answered (r is NULL when it could not run). */
static void alerts_result_cb(void *arg, const PGresult *r)
{
	(void)arg;
	m.alerts_in_flight = false;
	if (r == NULL || PQresultStatus(r) != PGRES_TUPLES_OK)
		return;
	memset(m.alerts_open, 0, sizeof(m.alerts_open));
	for (int i = 0; i < PQntuples(r); i++) {
		size_t k = table_index(kinds, N_KINDS, PQgetvalue(r, i, 0));
		if (k >= FIRST_ALERT_KIND && k < FIRST_ALERT_KIND + N_ALERT_KINDS)
			m.alerts_open[k - FIRST_ALERT_KIND] =
			    strtoll(PQgetvalue(r, i, 1), NULL, 10);
	}
	m.alerts_known = true;
}

/* Timer: count the open alerts, once the schema is there and nothing is running. */
static void alerts_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (m.alerts_in_flight || server.aux == NULL || !aux_up(server.aux) ||
	    !store_db_up(server.store))
		return;
	m.alerts_in_flight = true;
	aux_query(server.aux, alerts_sql, 0, NULL, alerts_result_cb, NULL);
}

/* The word for the database state in logs and STATUS. */
static const char *db_word(void)
{
	return store_db_up(server.store) ? "up" : "down";
}

/* Timer: one stats line with the totals and the rates since the last one. */
static void stats_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	double now = mono_now(), dt = now - m.stats_at;
	if (dt <= 0)
		dt = 1;
	uint64_t stored = 0, dup = 0;
	for (size_t t = 0; t < N_TYPES; t++) {
		stored += m.events[t][STORE_STORED];
		dup += m.events[t][STORE_DUPLICATE];
	}
	log_info("stats",
	         "events_in=%llu events_out=%llu in_per_s=%.1f out_per_s=%.1f stored=%llu "
	         "duplicate=%llu errors=%llu connections=%u subscribers=%u pending=%u "
	         "database=%s reconnects=%llu notifications=%llu webhook_failures=%llu",
	         (unsigned long long)m.events_in, (unsigned long long)m.events_out,
	         (double)(m.events_in - m.stats_in) / dt, (double)(m.events_out - m.stats_out) / dt,
	         (unsigned long long)stored, (unsigned long long)dup,
	         (unsigned long long)(m.events_out - stored - dup), server.n_conns,
	         server.n_subscribers, store_pending(server.store), db_word(),
	         (unsigned long long)m.reconnects, (unsigned long long)server.notifications_total,
	         (unsigned long long)server.webhook_failures);
	m.stats_in = m.events_in;
	m.stats_out = m.events_out;
	m.stats_at = now;
}

void metrics_apply_config(void)
{
	int every = server.cfg->stats_interval_s;
	if (every == m.stats_interval_s && (every == 0 || m.ev_stats != NULL))
		return;
	if (m.ev_stats != NULL)
		event_free(m.ev_stats);
	m.ev_stats = NULL;
	m.stats_interval_s = every;
	if (every == 0)
		return;
	m.ev_stats = event_new(server.base, -1, EV_PERSIST, stats_tick_cb, NULL);
	if (m.ev_stats == NULL)
		abort();
	struct timeval tv = {every, 0};
	event_add(m.ev_stats, &tv);
}

void metrics_start(void)
{
	m.ev_alerts = event_new(server.base, -1, EV_PERSIST, alerts_tick_cb, NULL);
	if (m.ev_alerts == NULL)
		abort();
	struct timeval tv = {ALERTS_REFRESH_S, 0};
	event_add(m.ev_alerts, &tv);
	m.stats_interval_s = -1; /* arm it whatever the value */
	metrics_apply_config();
}

void metrics_stop(void)
{
	if (m.ev_alerts != NULL)
		event_free(m.ev_alerts);
	if (m.ev_stats != NULL)
		event_free(m.ev_stats);
	m.ev_alerts = m.ev_stats = NULL;
}

/* --- readers --- */

uint64_t metrics_events_in(void)
{
	return m.events_in;
}

uint64_t metrics_events_out(void)
{
	return m.events_out;
}

void metrics_status_line(char *buf, size_t cap)
{
	double now = mono_now(), dt = now - m.status_at;
	double rate = dt > 0 ? (double)(m.events_in - m.status_in) / dt : 0;
	snprintf(buf, cap, "%.1f events/s, %u connections, %u pending, database %s", rate,
	         server.n_conns, store_pending(server.store), db_word());
	m.status_in = m.events_in;
	m.status_at = now;
}

/* The HELP and TYPE lines of one metric. */
static void family(struct evbuffer *out, const char *name, const char *type, const char *help)
{
	evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One sample without labels. */
static void sample(struct evbuffer *out, const char *name, unsigned long long v)
{
	evbuffer_add_printf(out, "%s %llu\n", name, v);
}

/* A histogram's buckets (cumulative), sum and count. */
static void histogram_render(struct evbuffer *out, const char *name, const struct histogram *h)
{
	uint64_t cum = 0;
	for (size_t i = 0; i < h->n_bounds; i++) {
		cum += h->buckets[i];
		evbuffer_add_printf(out, "%s_bucket{le=\"%g\"} %llu\n", name, h->bounds[i],
		                    (unsigned long long)cum);
	}
	cum += h->buckets[h->n_bounds];
	evbuffer_add_printf(out, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
	evbuffer_add_printf(out, "%s_sum %.9g\n", name, h->sum);
	evbuffer_add_printf(out, "%s_count %llu\n", name, (unsigned long long)h->count);
}

void metrics_render(struct evbuffer *out)
{
	family(out, "ordertrack_build_info", "gauge", "Always 1; the version is a label.");
	evbuffer_add_printf(out, "ordertrack_build_info{version=\"%s\"} 1\n", OT_VERSION);
	family(out, "ordertrack_start_time_seconds", "gauge",
	       "When the daemon started, in Unix seconds.");
	evbuffer_add_printf(out, "ordertrack_start_time_seconds %.3f\n", m.start_time);

	family(out, "ordertrack_events_total", "counter",
	       "Events answered by the store, by event type and result.");
	for (size_t t = 0; t < N_TYPES; t++)
		for (size_t r = 0; r < N_RESULTS; r++)
			evbuffer_add_printf(
			    out, "ordertrack_events_total{type=\"%s\",result=\"%s\"} %llu\n",
			    event_types[t], results[r], (unsigned long long)m.events[t][r]);
	family(out, "ordertrack_events_received_total", "counter",
	       "Event lines that passed validation and were queued for the database.");
	sample(out, "ordertrack_events_received_total", m.events_in);
	family(out, "ordertrack_lines_rejected_total", "counter",
	       "Lines answered with an error before reaching the database, by error code.");
	for (size_t c = 0; c < N_CODES; c++)
		evbuffer_add_printf(out, "ordertrack_lines_rejected_total{code=\"%s\"} %llu\n",
		                    error_codes[c], (unsigned long long)m.lines_rejected[c]);

	family(out, "ordertrack_connections_open", "gauge",
	       "Client connections open now, authenticated or not.");
	sample(out, "ordertrack_connections_open", server.n_conns);
	family(out, "ordertrack_connections_total", "counter",
	       "Client connections accepted, including those refused for the limit.");
	sample(out, "ordertrack_connections_total", m.conns_total);
	family(out, "ordertrack_connections_rejected_total", "counter",
	       "Client connections refused: a connection limit, or too many failed hellos.");
	sample(out, "ordertrack_connections_rejected_total", m.conns_rejected);
	family(out, "ordertrack_subscribers", "gauge",
	       "Connections subscribed to the notification feed.");
	sample(out, "ordertrack_subscribers", server.n_subscribers);

	family(out, "ordertrack_batches_total", "counter",
	       "Batches (transactions) sent to PostgreSQL, including ones sent again.");
	sample(out, "ordertrack_batches_total", m.batches_sent);
	family(out, "ordertrack_batches_committed_total", "counter", "Batches that committed.");
	sample(out, "ordertrack_batches_committed_total", m.batches_committed);
	family(out, "ordertrack_batch_events", "histogram", "Events per batch sent.");
	histogram_render(out, "ordertrack_batch_events", &m.batch_events);
	family(out, "ordertrack_commit_seconds", "histogram",
	       "Seconds from sending a batch to its COMMIT's answer.");
	histogram_render(out, "ordertrack_commit_seconds", &m.commit_seconds);
	family(out, "ordertrack_pending_events", "gauge",
	       "Events read and not yet answered: queued or in a batch.");
	sample(out, "ordertrack_pending_events", store_pending(server.store));
	family(out, "ordertrack_pending_bytes", "gauge",
	       "Bytes of the lines of the pending events (limits.max_pending_bytes).");
	sample(out, "ordertrack_pending_bytes", server.pending_bytes);

	family(out, "ordertrack_database_up", "gauge",
	       "1 when an ingest session with PostgreSQL is ready, else 0.");
	sample(out, "ordertrack_database_up", store_db_up(server.store) ? 1 : 0);
	family(out, "ordertrack_database_aux_up", "gauge",
	       "1 when the auxiliary session (feed, webhooks, alerts) is connected, else 0.");
	sample(out, "ordertrack_database_aux_up", server.aux != NULL && aux_up(server.aux) ? 1 : 0);
	family(out, "ordertrack_database_reconnects_total", "counter",
	       "Times an ingest session became ready again after an outage.");
	sample(out, "ordertrack_database_reconnects_total", m.reconnects);

	family(out, "ordertrack_notifications_total", "counter",
	       "Notifications committed by this daemon (ingest batches, alerts), by kind.");
	for (size_t k = 0; k < N_KINDS; k++)
		evbuffer_add_printf(out, "ordertrack_notifications_total{kind=\"%s\"} %llu\n",
		                    kinds[k], (unsigned long long)m.notifications[k]);
	family(out, "ordertrack_notification_last_seq", "gauge",
	       "The newest notification seq this daemon committed or heard of.");
	evbuffer_add_printf(out, "ordertrack_notification_last_seq %lld\n", server.last_seq);
	family(out, "ordertrack_webhook_deliveries_total", "counter",
	       "Webhook POSTs answered with a 2xx status.");
	sample(out, "ordertrack_webhook_deliveries_total", server.webhook_deliveries);
	family(out, "ordertrack_webhook_failures_total", "counter",
	       "Webhook POSTs that failed (an error status, no answer, no connection).");
	sample(out, "ordertrack_webhook_failures_total", server.webhook_failures);
	family(out, "ordertrack_alerts_active", "gauge",
	       "Open alert episodes in ordertrack.alerts (all daemons of the database), by kind, "
	       "as of the last query (every 10 s while the database is up).");
	if (m.alerts_known)
		for (size_t k = 0; k < N_ALERT_KINDS; k++)
			evbuffer_add_printf(out, "ordertrack_alerts_active{kind=\"%s\"} %lld\n",
			                    kinds[FIRST_ALERT_KIND + k], m.alerts_open[k]);

	family(out, "ordertrack_config_reloads_total", "counter",
	       "SIGHUP reloads, by result: applied, or refused because the file was bad.");
	evbuffer_add_printf(out, "ordertrack_config_reloads_total{result=\"applied\"} %llu\n",
	                    (unsigned long long)m.reloads_ok);
	evbuffer_add_printf(out, "ordertrack_config_reloads_total{result=\"refused\"} %llu\n",
	                    (unsigned long long)m.reloads_failed);
}
