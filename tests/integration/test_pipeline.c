/*
 * test_pipeline.c - volume through the real daemon: 10,000 events pipelined
 * on one connection, 100 connections sending at once, and the same orders
 * from many connections through one database session and through several.
 *
 * A batch of new events goes in by COPY; test_copy_meets_concurrent_insert
 * has another session store the same ids while that COPY runs.
 *
 * Each test uses a database of its own, so "exactly N rows" means what it
 * says.  Replies are read while sending (it_send_raw and it_pump drain the
 * socket) so that a daemon that stops reading while its replies are unread,
 * as back-pressure should, cannot deadlock the test; the protocol's view is
 * still "send everything, then collect the acks".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "harness.h"

#define ONE_N       10000
#define MANY_CONNS  100
#define MANY_EVENTS 50
#define READ_ALL_MS 120000

/* Event i of a stream: ids and refs vary, types alternate. */
static char *stream_event(const char *prefix, int i, char *id, size_t idcap)
{
	char order[32], ship[32];
	snprintf(id, idcap, "%s-%05d", prefix, i);
	snprintf(order, sizeof(order), "PO-%04d", i / 10);
	snprintf(ship, sizeof(ship), "SH-%04d.%d", i / 10, i % 3);
	if (i % 4 == 0)
		return it_event_line(id, "order.created", order, NULL);
	return it_event_line(id, i % 4 == 1 ? "shipment.checkpoint" : "shipment.departed", order,
	                     ship);
}

/* 10,000 events in one go on one connection: 10,000 acks, in order, 10,000 rows. */
static void test_ten_thousand_pipelined(void **state)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&buf, &len);
	assert_non_null(mem);
	for (int i = 0; i < ONE_N; i++) {
		char id[64];
		char *ev = stream_event("one", i, id, sizeof(id));
		fprintf(mem, "%s\n", ev);
		free(ev);
	}
	fclose(mem);

	it_pg_createdb("pipe_one");
	struct it_config cfg = {.name = "pipe_one", .dbname = "pipe_one"};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	struct it_client *c = it_connect(d);
	it_hello(c, IT_EXPORTER, IT_TOKEN);

	long long t0 = it_now_ms();
	it_send_raw(c, buf, len);
	long long t_sent = it_now_ms();
	for (int i = 0; i < ONE_N; i++) {
		char id[64];
		snprintf(id, sizeof(id), "one-%05d", i);
		char *line = it_read_line(c, READ_ALL_MS);
		it_check_ack(line, id, "stored");
		free(line);
	}
	long long t_acked = it_now_ms();
	fprintf(stderr, "pipeline: %d events sent in %lld ms, all acked after %lld ms\n", ONE_N,
	        t_sent - t0, t_acked - t0);

	assert_int_equal(it_db_rows("pipe_one"), ONE_N);
	assert_int_equal(it_db_long("pipe_one",
	                            "SELECT count(DISTINCT event_id) FROM ordertrack.events"
	                            " WHERE exporter = $1 AND event_id LIKE 'one-%'",
	                            IT_EXPORTER, NULL),
	                 ONE_N);
	/* One spot check of content: the last event's body is what was sent. */
	char id[64];
	char *last = stream_event("one", ONE_N - 1, id, sizeof(id));
	char *eq = it_db_value("pipe_one",
	                       "SELECT (body::jsonb = $2::jsonb)::text FROM ordertrack.events"
	                       " WHERE event_id = $1",
	                       id, last, NULL);
	assert_string_equal(eq, "true");
	free(eq);
	free(last);

	/* Nothing more came: exactly one reply per line. */
	char *extra;
	if (it_try_read_line(c, 300, &extra) == IT_READ_LINE)
		it_fail("a reply beyond the %d expected: %s", ONE_N, extra);
	free(buf);
	it_daemon_stop_clean(d);
}

/* 100 connections, each hello and 50 events, all sending at once. */
static void test_hundred_connections(void **state)
{
	struct it_client *cs[MANY_CONNS];

	it_pg_createdb("pipe_many");
	struct it_config cfg = {
	    .name = "pipe_many", .dbname = "pipe_many", .max_connections = 2 * MANY_CONNS};
	struct it_daemon *d = it_daemon_start(&cfg, true);

	/* Connect all first so that every session is open while events flow. */
	for (int k = 0; k < MANY_CONNS; k++)
		cs[k] = it_connect(d);
	for (int k = 0; k < MANY_CONNS; k++) {
		const char *hello = k % 2 ? "{\"type\":\"hello\",\"exporter\":\"" IT_EXPORTER2
		                            "\",\"token\":\"" IT_TOKEN2 "\"}"
		                          : "{\"type\":\"hello\",\"exporter\":\"" IT_EXPORTER
		                            "\",\"token\":\"" IT_TOKEN "\"}";
		it_queue(cs[k], hello);
		cs[k]->want = 1;
	}
	if (!it_pump(cs, MANY_CONNS, 30000))
		it_fail("not every connection got a reply to hello within 30 s");
	for (int k = 0; k < MANY_CONNS; k++) {
		if (strstr(cs[k]->lines[0], "\"welcome\"") == NULL)
			it_fail("connection %d: hello answered with %s", k, cs[k]->lines[0]);
	}

	/* Interleave: round i queues event i on every connection. */
	for (int i = 0; i < MANY_EVENTS; i++) {
		for (int k = 0; k < MANY_CONNS; k++) {
			char id[64], prefix[16];
			snprintf(prefix, sizeof(prefix), "c%03d", k);
			char *ev = stream_event(prefix, i, id, sizeof(id));
			it_queue(cs[k], ev);
			free(ev);
		}
	}
	for (int k = 0; k < MANY_CONNS; k++)
		cs[k]->want = 1 + MANY_EVENTS;
	long long t0 = it_now_ms();
	bool all = it_pump(cs, MANY_CONNS, READ_ALL_MS);
	fprintf(stderr, "pipeline: %d connections x %d events in %lld ms\n", MANY_CONNS,
	        MANY_EVENTS, it_now_ms() - t0);
	for (int k = 0; k < MANY_CONNS; k++) {
		if (cs[k]->n_lines < (size_t)(1 + MANY_EVENTS))
			it_fail("connection %d: %zu of %d acks within %d ms%s", k,
			        cs[k]->n_lines - 1, MANY_EVENTS, READ_ALL_MS,
			        cs[k]->eof ? " (closed by the daemon)" : "");
		for (int i = 0; i < MANY_EVENTS; i++) {
			char id[64];
			snprintf(id, sizeof(id), "c%03d-%05d", k, i);
			it_check_ack(cs[k]->lines[1 + i], id, "stored");
		}
	}
	assert_true(all);
	assert_int_equal(it_db_rows("pipe_many"), MANY_CONNS * MANY_EVENTS);
	assert_int_equal(it_db_long("pipe_many",
	                            "SELECT count(DISTINCT (exporter, event_id))"
	                            " FROM ordertrack.events",
	                            NULL),
	                 MANY_CONNS * MANY_EVENTS);
	it_daemon_stop_clean(d);
}

#define LANE_CONNS  4
#define LANE_ORDERS 30

/*
 * Send every connection's share of the lanes workload and collect the acks:
 * connection k books, departs and lands shipment S-<o>-<k> of each of the
 * orders, and connection 0 also creates them, all interleaved, so that
 * every batch holds events of orders another batch may hold too.
 */
static void lanes_send(struct it_daemon *d)
{
	struct it_client *cs[LANE_CONNS];
	static const char *const steps[] = {"shipment.booked", "shipment.departed",
	                                    "shipment.arrived"};
	int per_conn[LANE_CONNS] = {0};

	for (int k = 0; k < LANE_CONNS; k++) {
		cs[k] = it_connect(d);
		it_hello(cs[k], IT_EXPORTER, IT_TOKEN);
	}
	for (int step = 0; step < 4; step++) {
		for (int o = 0; o < LANE_ORDERS; o++) {
			for (int k = 0; k < LANE_CONNS; k++) {
				char id[64], order[32], ship[32];
				snprintf(order, sizeof(order), "LN-%03d", o);
				snprintf(ship, sizeof(ship), "S-%03d-%d", o, k);
				char *ev;
				if (step == 0) {
					if (k != 0)
						continue;
					snprintf(id, sizeof(id), "ln-%03d-created", o);
					ev = it_event_line(id, "order.created", order, NULL);
				} else {
					snprintf(id, sizeof(id), "ln-%03d-%d-%d", o, k, step);
					ev = it_event_line(id, steps[step - 1], order, ship);
				}
				it_queue(cs[k], ev);
				free(ev);
				per_conn[k]++;
			}
		}
	}
	for (int k = 0; k < LANE_CONNS; k++)
		cs[k]->want = (size_t)per_conn[k];
	if (!it_pump(cs, LANE_CONNS, READ_ALL_MS))
		it_fail("not every event of the lanes workload was answered");
	for (int k = 0; k < LANE_CONNS; k++) {
		for (size_t i = 0; i < cs[k]->n_lines; i++) {
			if (strstr(cs[k]->lines[i], "\"stored\"") == NULL)
				it_fail("connection %d, reply %zu: %s", k, i, cs[k]->lines[i]);
		}
		it_close(cs[k]);
	}
}

/* The orders and shipments of a database as one text, for comparing runs. */
static char *lanes_digest(const char *db)
{
	return it_db_value(db,
	                   "SELECT (SELECT string_agg(order_ref || ':' || status, ','"
	                   "   ORDER BY order_ref) FROM ordertrack.orders) || '|' ||"
	                   " (SELECT string_agg(shipment_ref || ':' || status || ':' || milestone,"
	                   "   ',' ORDER BY shipment_ref) FROM ordertrack.shipments)",
	                   NULL);
}

/*
 * Whole-table scans of the ingest tables in db, once the daemon's sessions
 * have ended (a session reports its scans when it ends).  Building an
 * index counts as one, so compare with the count after the migrations.
 */
static long table_scans(const char *db)
{
	long long deadline = it_now_ms() + 10000;
	while (it_db_long(db,
	                  "SELECT count(*) FROM pg_stat_activity"
	                  " WHERE datname = current_database() AND pid <> pg_backend_pid()",
	                  NULL) > 0) {
		if (it_now_ms() > deadline)
			it_fail("the daemon's database sessions did not end");
		it_sleep_ms(50);
	}
	it_sleep_ms(200);
	return it_db_long(db,
	                  "SELECT coalesce(sum(seq_scan), 0) FROM pg_stat_user_tables"
	                  " WHERE schemaname = 'ordertrack' AND relname IN"
	                  " ('events', 'orders', 'shipments', 'order_lines', 'documents')",
	                  NULL);
}

/*
 * Several database sessions ("lanes", database.connections) fold batches
 * side by side.  Four connections send events of the same 30 orders at
 * once; with two and with three sessions the read model must come out
 * exactly as with one, every shipment must have landed, and no statement
 * may have scanned a whole table.  The last session, which takes batches
 * only while a backlog waits, must have taken some.  (How many
 * notifications there are depends on how events fall into batches.)
 */
static void test_lanes_same_as_one(void **state)
{
	static const int lanes[] = {1, 2, 3};
	char *digest[3] = {NULL, NULL, NULL};
	(void)state;

	for (int i = 0; i < 3; i++) {
		char db[32];
		snprintf(db, sizeof(db), "pipe_lanes%d", lanes[i]);
		it_pg_createdb(db);
		struct it_config cfg = {
		    .name = db, .dbname = db, .db_connections = lanes[i], .batch_max_events = 16};
		struct it_daemon *d = it_daemon_start(&cfg, true); /* migrates */
		it_daemon_stop_clean(d);
		long scans = table_scans(db);
		d = it_daemon_start(&cfg, true);
		char link[48];
		snprintf(link, sizeof(link), "link=%d", lanes[i]);
		it_log_expect(d, 0, link, IT_START_MS);
		lanes_send(d);
		/* Lanes past the first are for a backlog, and this is one. */
		if (lanes[i] > 1) {
			snprintf(link, sizeof(link), "msg=\"batch sent\" link=%d", lanes[i]);
			it_log_expect(d, 0, link, IT_START_MS);
		}
		it_daemon_stop_clean(d);
		/* The batches' plans are made once, while the tables are empty:
		 * they must look rows up by key, never scan a table whole. */
		assert_int_equal(table_scans(db), scans);
		assert_int_equal(it_db_rows(db), LANE_ORDERS * (1 + 3 * LANE_CONNS));
		assert_int_equal(it_db_long(db,
		                            "SELECT count(*) FROM ordertrack.shipments"
		                            " WHERE status = 'arrived'",
		                            NULL),
		                 LANE_ORDERS * LANE_CONNS);
		digest[i] = lanes_digest(db);
	}
	assert_string_equal(digest[1], digest[0]);
	assert_string_equal(digest[2], digest[0]);
	for (int i = 0; i < 3; i++)
		free(digest[i]);
}

/*
 * Migration 008: keys compare byte by byte whatever the database's locale.
 * On a database whose default collation is linguistic (C.UTF-8, which every
 * Debian has), every text column of an index in the ordertrack schema must
 * be in "C", and the batches must still find rows by key: a query whose
 * comparison took the database's collation could not use those indexes.
 */
static void test_keys_in_c_collation(void **state)
{
	const char *db = "pipe_collate";
	(void)state;

	it_db_command("ordertrack",
	              "CREATE DATABASE pipe_collate TEMPLATE template0"
	              " LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8'",
	              NULL);
	char *coll = it_db_value(
	    db, "SELECT datcollate FROM pg_database WHERE datname = current_database()", NULL);
	assert_string_equal(coll, "C.UTF-8");
	free(coll);

	struct it_config cfg = {
	    .name = db, .dbname = db, .db_connections = 2, .batch_max_events = 16};
	struct it_daemon *d = it_daemon_start(&cfg, true); /* migrates */
	it_daemon_stop_clean(d);
	long scans = table_scans(db);
	d = it_daemon_start(&cfg, true);
	lanes_send(d);
	it_daemon_stop_clean(d);
	assert_int_equal(table_scans(db), scans);
	assert_int_equal(it_db_rows(db), LANE_ORDERS * (1 + 3 * LANE_CONNS));

	static const char indexed_text[] =
	    "FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid"
	    " JOIN pg_namespace n ON n.oid = t.relnamespace"
	    " JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = ANY (i.indkey)"
	    " WHERE n.nspname = 'ordertrack' AND a.atttypid = 'text'::regtype";
	char sql[512];
	snprintf(sql, sizeof(sql), "SELECT count(*) %s", indexed_text);
	long keys = it_db_long(db, sql, NULL);
	assert_true(keys >= 10); /* ids of the events, the read model, the feed */
	snprintf(sql, sizeof(sql),
	         "SELECT count(*) %s AND a.attcollation = (SELECT oid FROM pg_collation"
	         " WHERE collname = 'C')",
	         indexed_text);
	assert_int_equal(it_db_long(db, sql, NULL), keys);
}

/*
 * Tight limits: window 8 per connection, 16 pending in all, batches of 3.
 * Four connections pipeline 500 events each with a ping every 50: the
 * daemon must pause and resume reading without losing or reordering.
 */
static void test_small_window(void **state)
{
	enum { CONNS = 4, N = 500, PING_EVERY = 50 };
	struct it_client *cs[CONNS];

	it_pg_createdb("pipe_window");
	struct it_config cfg = {.name = "pipe_window",
	                        .dbname = "pipe_window",
	                        .window = 8,
	                        .max_pending = 16,
	                        .batch_max_events = 3,
	                        .batch_max_delay_ms = 2};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	for (int k = 0; k < CONNS; k++) {
		cs[k] = it_connect(d);
		it_queue(cs[k], "{\"type\":\"hello\",\"exporter\":\"" IT_EXPORTER
		                "\",\"token\":\"" IT_TOKEN "\"}");
		for (int i = 0; i < N; i++) {
			char id[64], prefix[16];
			snprintf(prefix, sizeof(prefix), "w%d", k);
			char *ev = stream_event(prefix, i, id, sizeof(id));
			it_queue(cs[k], ev);
			free(ev);
			if (i % PING_EVERY == PING_EVERY - 1)
				it_queue(cs[k], "{\"type\":\"ping\"}");
		}
		cs[k]->want = 1 + N + N / PING_EVERY;
	}
	long long t0 = it_now_ms();
	if (!it_pump(cs, CONNS, READ_ALL_MS))
		it_fail("not every line answered within %d ms (%zu %zu %zu %zu replies)",
		        READ_ALL_MS, cs[0]->n_lines, cs[1]->n_lines, cs[2]->n_lines,
		        cs[3]->n_lines);
	fprintf(stderr, "pipeline: window 8, %d x %d events in %lld ms\n", CONNS, N,
	        it_now_ms() - t0);
	for (int k = 0; k < CONNS; k++) {
		size_t at = 1;
		if (strstr(cs[k]->lines[0], "\"welcome\"") == NULL)
			it_fail("connection %d: hello answered with %s", k, cs[k]->lines[0]);
		for (int i = 0; i < N; i++) {
			char id[64];
			snprintf(id, sizeof(id), "w%d-%05d", k, i);
			it_check_ack(cs[k]->lines[at++], id, "stored");
			if (i % PING_EVERY == PING_EVERY - 1 &&
			    strcmp(cs[k]->lines[at++], "{\"type\":\"pong\"}") != 0)
				it_fail("connection %d: expected a pong after event %d, got %s", k,
				        i, cs[k]->lines[at - 1]);
		}
	}
	assert_int_equal(it_db_rows("pipe_window"), CONNS * N);
	it_daemon_stop_clean(d);
}

/* Run sql on conn, failing the test unless it succeeds. */
static void pg_ok(PGconn *conn, const char *sql)
{
	PGresult *r = PQexec(conn, sql);
	ExecStatusType t = PQresultStatus(r);
	if (t != PGRES_COMMAND_OK && t != PGRES_TUPLES_OK)
		it_fail("%s: %s", sql, PQresultErrorMessage(r));
	PQclear(r);
}

/* A session of the test on database db, inside a transaction. */
static PGconn *session_begin(const char *db)
{
	PGconn *conn = PQconnectdb(it_conninfo(db));
	if (PQstatus(conn) != CONNECTION_OK)
		it_fail("connect: %s", PQerrorMessage(conn));
	pg_ok(conn, "BEGIN");
	return conn;
}

/*
 * A session that has inserted rows into ordertrack.events and holds them
 * uncommitted: values is the VALUES list, where $1 is body (an event
 * line) and $2 is IT_OCCURRED_AT.
 */
static PGconn *hold_uncommitted(const char *db, const char *values, const char *body)
{
	PGconn *conn = session_begin(db);
	const char *params[2] = {body, IT_OCCURRED_AT};
	char *sql = NULL;
	if (asprintf(&sql,
	             "INSERT INTO ordertrack.events (exporter, event_id, type, order_ref,"
	             " occurred_at, body) VALUES %s",
	             values) < 0)
		abort();
	PGresult *r = PQexecParams(conn, sql, 2, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		it_fail("insert: %s", PQresultErrorMessage(r));
	PQclear(r);
	free(sql);
	return conn;
}

/* Wait until a statement of the daemon that starts with prefix waits for a lock. */
static void wait_for_lock(const char *db, const char *prefix, const char *what)
{
	char *sql = NULL;
	if (asprintf(&sql,
	             "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
	             " AND starts_with(query, '%s')",
	             prefix) < 0)
		abort();
	long long deadline = it_now_ms() + 10000;
	while (it_db_long(db, sql, NULL) == 0) {
		if (it_now_ms() > deadline)
			it_fail("the daemon's %s never waited for the uncommitted rows", what);
		it_sleep_ms(20);
	}
	free(sql);
}

/*
 * A second database session takes a batch only while a backlog waits (half
 * of batch.max_events or more); below that it would only split batches.  A
 * session of the test holds the advisory lock of order PO-GATE-A, so the
 * batch with its event waits on the first lane.  One event of another
 * order must then wait too; seven more make a backlog, and the second lane
 * must store those eight while the first still waits.
 */
static void test_second_lane_waits_for_backlog(void **state)
{
	(void)state;
	it_pg_createdb("pipe_gate");
	struct it_config cfg = {.name = "pipe_gate",
	                        .dbname = "pipe_gate",
	                        .db_connections = 2,
	                        .batch_max_events = 16};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	PGconn *conn = session_begin("pipe_gate");
	pg_ok(conn, "SELECT pg_advisory_xact_lock(hashtextextended('" IT_EXPORTER
	            "' || '/' || 'PO-GATE-A', 7433))");

	struct it_client *a = it_connect(d), *b = it_connect(d);
	it_hello(a, IT_EXPORTER, IT_TOKEN);
	it_hello(b, IT_EXPORTER, IT_TOKEN);
	char *ev = it_event_line("gate-a", "order.created", "PO-GATE-A", NULL);
	it_send(a, ev);
	free(ev);
	it_log_expect(d, 0, "msg=\"batch sent\" link=1 events=1", 5000);

	ev = it_event_line("gate-b0", "order.created", "PO-GATE-B0", NULL);
	it_send(b, ev);
	free(ev);
	char *line = NULL;
	if (it_try_read_line(b, 500, &line) != IT_READ_TIMEOUT)
		it_fail("an event was answered while the only lane for it was busy: %s",
		        line != NULL ? line : "(eof)");
	for (int i = 1; i <= 8; i++) {
		char id[32], order[32];
		snprintf(id, sizeof(id), "gate-b%d", i);
		snprintf(order, sizeof(order), "PO-GATE-B%d", i);
		ev = it_event_line(id, "order.created", order, NULL);
		it_send(b, ev);
		free(ev);
	}
	/* gate-b7 makes eight waiting, the backlog: the second lane must
	 * store those at least while the first still waits.  gate-b8 may come
	 * in after that batch left; then it waits for the first lane. */
	for (int i = 0; i <= 7; i++) {
		char id[32];
		snprintf(id, sizeof(id), "gate-b%d", i);
		it_expect_ack(b, id, "stored");
	}
	it_log_expect(d, 0, "msg=\"batch sent\" link=2", 1000);
	if (it_try_read_line(a, 0, &line) != IT_READ_TIMEOUT)
		it_fail("the event of the locked order was answered: %s",
		        line != NULL ? line : "(eof)");

	pg_ok(conn, "COMMIT");
	PQfinish(conn);
	it_expect_ack(a, "gate-a", "stored");
	it_expect_ack(b, "gate-b8", "stored");
	it_close(a);
	it_close(b);
	assert_int_equal(it_db_rows("pipe_gate"), 10);
	it_daemon_stop_clean(d);
}

/*
 * A batch of new events goes in by COPY, which cannot skip an id another
 * transaction stores meanwhile.  A session of the test inserts two of the
 * batch's ids (one with the same body, one with another) and holds them
 * uncommitted; the daemon's COPY must wait on them.  When the session
 * commits, the COPY fails with a unique violation; the daemon must try the
 * batch again and answer exactly as if the rows had been there all along:
 * duplicate, conflict, and stored for the third event.
 */
static void test_copy_meets_concurrent_insert(void **state)
{
	(void)state;
	it_pg_createdb("pipe_race");
	struct it_config cfg = {.name = "pipe_race",
	                        .dbname = "pipe_race",
	                        .db_connections = 1,
	                        .batch_max_delay_ms = 20,
	                        .log_level = "info"};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	char *same = it_event_line("race-same", "order.created", "PO-RACE", NULL);
	char *other = it_event_line("race-other", "shipment.booked", "PO-RACE", "SH-RACE");
	char *fresh = it_event_line("race-fresh", "shipment.checkpoint", "PO-RACE", "SH-RACE");

	PGconn *conn =
	    hold_uncommitted("pipe_race",
	                     "('" IT_EXPORTER "', 'race-same', 'order.created', 'PO-RACE',"
	                     " $2, $1::jsonb),"
	                     " ('" IT_EXPORTER "', 'race-other', 'order.created',"
	                     " 'PO-RACE', $2, '{\"not\": \"the same\"}')",
	                     same);

	struct it_client *c = it_connect(d);
	it_hello(c, IT_EXPORTER, IT_TOKEN);
	char *lines = NULL;
	if (asprintf(&lines, "%s\n%s\n%s\n", same, other, fresh) < 0)
		abort();
	it_send_raw(c, lines, strlen(lines));
	free(lines);

	/* The daemon's COPY waits for the session's rows. */
	wait_for_lock("pipe_race", "COPY ordertrack.events", "COPY");
	pg_ok(conn, "COMMIT");
	PQfinish(conn);

	it_expect_ack(c, "race-same", "duplicate");
	json_decref(it_expect_error(c, "race-other", "conflict"));
	it_expect_ack(c, "race-fresh", "stored");
	it_log_expect(d, 0, "sqlstate=23505", 5000);
	assert_int_equal(it_db_rows("pipe_race"), 3);
	it_daemon_stop_clean(d);
	free(same);
	free(other);
	free(fresh);
}

/*
 * The INSERT (here because the batch holds a retraction) meets an id that
 * another transaction stores meanwhile: ON CONFLICT waits for it and then
 * skips the row, but the statement's snapshot cannot show the stored row,
 * so the event gets no verdict.  The daemon must answer the rest of the
 * batch and ask about that event again in a batch of its own: duplicate,
 * as the other transaction stored the same event.
 */
static void test_insert_meets_concurrent_insert(void **state)
{
	(void)state;
	it_pg_createdb("pipe_race_ins");
	struct it_config cfg = {.name = "pipe_race_ins",
	                        .dbname = "pipe_race_ins",
	                        .db_connections = 1,
	                        .batch_max_delay_ms = 20};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	char *same = it_event_line("race-ins-same", "order.created", "PO-RACE-INS", NULL);
	char *retraction = it_event_line("race-ins-retr", "event.retracted", "PO-RACE-INS", NULL);

	PGconn *conn = hold_uncommitted("pipe_race_ins",
	                                "('" IT_EXPORTER "', 'race-ins-same', 'order.created',"
	                                " 'PO-RACE-INS', $2, $1::jsonb)",
	                                same);

	struct it_client *c = it_connect(d);
	it_hello(c, IT_EXPORTER, IT_TOKEN);
	char *lines = NULL;
	if (asprintf(&lines, "%s\n%s\n", same, retraction) < 0)
		abort();
	it_send_raw(c, lines, strlen(lines));
	free(lines);

	wait_for_lock("pipe_race_ins", "WITH input AS", "INSERT");
	off_t at = it_log_offset(d);
	pg_ok(conn, "COMMIT");
	PQfinish(conn);

	/* Answers come in the order the lines were sent. */
	it_expect_ack(c, "race-ins-same", "duplicate");
	it_expect_ack(c, "race-ins-retr", "stored");
	/* The first event was asked about again, alone. */
	it_log_expect(d, at, "msg=\"batch sent\" link=1 events=1 ", 5000);
	assert_int_equal(it_db_rows("pipe_race_ins"), 2);
	it_daemon_stop_clean(d);
	free(same);
	free(retraction);
}

/*
 * Events of 1.5 MB (a memo in "ext"), with escapes of every kind in their
 * strings, in one batch: the COPY data is written in pieces, and each
 * stored body must be the event sent, to the byte's meaning (compared as
 * jsonb).
 */
static void test_large_events(void **state)
{
	enum { N = 3, NOTE = 1500000 };
	(void)state;
	it_pg_createdb("pipe_large");
	struct it_config cfg = {.name = "pipe_large",
	                        .dbname = "pipe_large",
	                        .max_line_bytes = 4 << 20,
	                        /* Long enough for the three to be read and parsed
	                         * before the first batch goes, even under ASan on a
	                         * busy machine (50 ms was not, once). */
	                        .batch_max_delay_ms = 1000,
	                        .log_level = "info"};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	struct it_client *c = it_connect(d);
	it_hello(c, IT_EXPORTER, IT_TOKEN);
	/* A string of backslashes, quotes, tabs and newlines (escaped in JSON),
	 * a \u escape and plain text, repeated. */
	static const char piece[] = "tab\\there \\\\ back \\\" quote \\n line \\u00e9 caf\\u00e9 ";
	char *note = malloc(NOTE + 1);
	size_t len = 0, plen = strlen(piece);
	while (len + plen <= NOTE) {
		memcpy(note + len, piece, plen);
		len += plen;
	}
	note[len] = '\0';
	char *lines[N];
	for (int i = 0; i < N; i++) {
		char id[32];
		snprintf(id, sizeof(id), "large-%d", i);
		char *ev = it_event_line(id, "shipment.checkpoint", "PO-LARGE", "SH-LARGE");
		ev[strlen(ev) - 1] = '\0'; /* drop the closing brace, add the memo */
		if (asprintf(&lines[i], "%s,\"ext\":{\"memo\":\"%s\"}}", ev, note) < 0)
			abort();
		free(ev);
	}
	char *all = NULL;
	if (asprintf(&all, "%s\n%s\n%s\n", lines[0], lines[1], lines[2]) < 0)
		abort();
	it_send_raw(c, all, strlen(all));
	free(all);
	for (int i = 0; i < N; i++) {
		char id[32];
		snprintf(id, sizeof(id), "large-%d", i);
		it_expect_ack(c, id, "stored");
	}
	PGconn *conn = PQconnectdb(it_conninfo("pipe_large"));
	if (PQstatus(conn) != CONNECTION_OK)
		it_fail("connect: %s", PQerrorMessage(conn));
	for (int i = 0; i < N; i++) {
		char id[32];
		snprintf(id, sizeof(id), "large-%d", i);
		const char *params[2] = {id, lines[i]};
		PGresult *r =
		    PQexecParams(conn,
		                 "SELECT body::jsonb = $2::jsonb, length(body->'ext'->>'memo')"
		                 " FROM ordertrack.events WHERE event_id = $1",
		                 2, NULL, params, NULL, NULL, 0);
		if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
			it_fail("%s: %s", id, PQresultErrorMessage(r));
		if (strcmp(PQgetvalue(r, 0, 0), "t") != 0)
			it_fail("%s: the stored body is not the event sent", id);
		assert_true(atol(PQgetvalue(r, 0, 1)) > NOTE / 2);
		PQclear(r);
		free(lines[i]);
	}
	PQfinish(conn);
	/* They went in one COPY, not one by one. */
	assert_true(it_db_long("pipe_large",
	                       "SELECT count(DISTINCT xmin::text) FROM ordertrack.events",
	                       NULL) < N);
	free(note);
	it_daemon_stop_clean(d);
}

/*
 * COPY takes occurred_at as microseconds the daemon computed: each must be
 * what PostgreSQL's own parse of the text gives, for fractions of every
 * length (ties rounded to even, a carry into the next second and year),
 * offsets either side, and dates far back.
 */
static void test_occurred_at_as_stored(void **state)
{
	static const char *const times[] = {
	    "2026-11-20T09:15:30Z",           "2026-11-20T09:15:30.5+02:00",
	    "2026-11-20T09:15:30.25-05:30",   "2026-11-20T09:15:30.123+14:00",
	    "2026-11-20T09:15:30.123456Z",    "2026-11-20T09:15:30.1234564Z",
	    "2026-11-20T09:15:30.1234565Z",   "2026-11-20T09:15:30.1234575Z",
	    "2026-11-20T09:15:30.0000005Z",   "2026-11-20T09:15:30.0000015Z",
	    "2026-11-20T09:15:30.000000500Z", "2026-11-20T09:15:30.123456789-15:59",
	    "2025-12-31T23:59:59.9999996Z",   "2025-12-31t23:59:59.999999999z",
	    "2000-01-01T00:00:00Z",           "1999-12-31T23:59:59.999999Z",
	    "1969-12-31T23:59:59.5Z",         "1900-03-01T00:00:00.000001+15:59",
	    "0001-01-01T00:00:00+15:59",
	};
	enum { N = sizeof(times) / sizeof(times[0]) };
	(void)state;
	it_pg_createdb("pipe_time");
	struct it_config cfg = {
	    .name = "pipe_time", .dbname = "pipe_time", .batch_max_delay_ms = 50};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	struct it_client *c = it_connect(d);
	it_hello(c, IT_EXPORTER, IT_TOKEN);
	char *all = NULL;
	size_t all_len = 0;
	FILE *f = open_memstream(&all, &all_len);
	for (int i = 0; i < N; i++) {
		char id[32];
		snprintf(id, sizeof(id), "time-%02d", i);
		char *ev = it_event_line(id, "shipment.checkpoint", "PO-TIME", "SH-TIME");
		char *at = strstr(ev, IT_OCCURRED_AT);
		assert_non_null(at);
		fprintf(f, "%.*s%s%s\n", (int)(at - ev), ev, times[i], at + strlen(IT_OCCURRED_AT));
		free(ev);
	}
	fclose(f);
	it_send_raw(c, all, all_len);
	free(all);
	for (int i = 0; i < N; i++) {
		char id[32];
		snprintf(id, sizeof(id), "time-%02d", i);
		it_expect_ack(c, id, "stored");
	}
	assert_int_equal(it_db_rows("pipe_time"), N);
	long wrong =
	    it_db_long("pipe_time",
	               "SELECT count(*) FROM ordertrack.events"
	               " WHERE occurred_at IS DISTINCT FROM (body->>'occurred_at')::timestamptz",
	               NULL);
	if (wrong != 0) {
		/* Name them, to see which rounding went astray. */
		PGconn *conn = PQconnectdb(it_conninfo("pipe_time"));
		PGresult *r =
		    PQexec(conn, "SELECT body->>'occurred_at', occurred_at,"
		                 " (body->>'occurred_at')::timestamptz FROM ordertrack.events"
		                 " WHERE occurred_at <> (body->>'occurred_at')::timestamptz");
		for (int i = 0; i < PQntuples(r); i++)
			print_error("%s stored as %s, not %s\n", PQgetvalue(r, i, 0),
			            PQgetvalue(r, i, 1), PQgetvalue(r, i, 2));
		PQclear(r);
		PQfinish(conn);
	}
	assert_int_equal(wrong, 0);
	it_daemon_stop_clean(d);
}

/* How many complete log lines of d hold needle. */
static int log_count(struct it_daemon *d, const char *needle)
{
	int n = 0;
	for (off_t at = 0; (at = it_log_wait(d, at, needle, 1)) >= 0;)
		n++;
	return n;
}

/* Send one event of order and expect result, as a batch of its own. */
static void send_one(struct it_client *c, const char *id, const char *order, const char *result)
{
	char *ev = it_event_line(id, "shipment.checkpoint", order, "SH-1");
	it_send(c, ev);
	free(ev);
	if (strcmp(result, "conflict") == 0)
		json_decref(it_expect_error(c, id, result));
	else
		it_expect_ack(c, id, result);
}

/*
 * An id reused under another order is a conflict that only COPY can find
 * (LOAD reads the batch's own orders): the COPY fails and the batch goes
 * again by the INSERT.  An exporter doing that again and again must not
 * make every batch be written twice: after one refusal the next batches
 * take the INSERT for a while (32), then COPY again.
 */
static void test_ids_reused_across_orders(void **state)
{
	static const char needle[] = "msg=\"batch retried by INSERT\"";
	(void)state;
	it_pg_createdb("pipe_reuse");
	struct it_config cfg = {
	    .name = "pipe_reuse", .dbname = "pipe_reuse", .db_connections = 1, .log_level = "info"};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	struct it_client *c = it_connect(d);
	it_hello(c, IT_EXPORTER, IT_TOKEN);
	send_one(c, "reuse-0", "PO-REUSE-A", "stored");
	for (int k = 0; k < 5; k++) {
		char order[32];
		snprintf(order, sizeof(order), "PO-REUSE-B%d", k);
		send_one(c, "reuse-0", order, "conflict");
	}
	assert_int_equal(log_count(d, needle), 1);
	/* 40 batches later COPY is back, and meets the reused id again. */
	for (int k = 0; k < 40; k++) {
		char id[32];
		snprintf(id, sizeof(id), "reuse-new-%d", k);
		send_one(c, id, "PO-REUSE-C", "stored");
	}
	send_one(c, "reuse-0", "PO-REUSE-D", "conflict");
	assert_int_equal(log_count(d, needle), 2);
	assert_int_equal(it_db_rows("pipe_reuse"), 41);
	it_daemon_stop_clean(d);
}

/*
 * Events of one order commit in the order they were sent, also when one
 * of them has to wait for a later batch because of its id.  Three lines in
 * one write, one session: a retraction "k" of order P (refused: its target
 * is another order's event), then "k" again for order O (a second k may
 * not go in the same statement: it waits for the next batch), then "m" of
 * order O.  "m" must wait behind "k" of its order, not commit a batch
 * ahead of it.
 */
static void test_order_waits_behind_passed_id(void **state)
{
	(void)state;
	const char *db = "pipe_passed";
	it_pg_createdb(db);
	struct it_config cfg = {.name = "pipe_passed", .dbname = db, .db_connections = 1};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	struct it_client *c = it_connect(d);
	it_hello(c, IT_EXPORTER, IT_TOKEN);
	send_one(c, "pp-target", "PO-PASS-Q", "stored");

	char *k_o = it_event_line("pp-k", "order.created", "PO-PASS-O", NULL);
	char *m_o = it_event_line("pp-m", "order.confirmed", "PO-PASS-O", NULL);
	char *three;
	if (asprintf(&three,
	             "{\"type\":\"event.retracted\",\"id\":\"pp-k\","
	             "\"occurred_at\":\"2026-11-21T10:00:00Z\",\"order\":\"PO-PASS-P\","
	             "\"retracts\":\"pp-target\",\"reason\":\"sent by mistake\"}\n%s\n%s",
	             k_o, m_o) < 0)
		abort();
	it_send(c, three);
	free(three);
	free(k_o);
	free(m_o);
	json_decref(it_expect_error(c, "pp-k", "invalid_event"));
	it_expect_ack(c, "pp-k", "stored");
	it_expect_ack(c, "pp-m", "stored");
	/* Transaction ids grow with each batch: k's may not be the later one. */
	long later = it_db_long(db,
	                        "SELECT count(*) FROM ordertrack.events k, ordertrack.events m"
	                        " WHERE k.event_id = 'pp-k' AND m.event_id = 'pp-m'"
	                        " AND k.xmin::text::bigint > m.xmin::text::bigint",
	                        NULL);
	if (later != 0)
		it_fail("pp-m of order PO-PASS-O committed in a batch before pp-k, sent before it");
	it_daemon_stop_clean(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_ten_thousand_pipelined, it_test_teardown),
	    cmocka_unit_test_teardown(test_hundred_connections, it_test_teardown),
	    cmocka_unit_test_teardown(test_small_window, it_test_teardown),
	    cmocka_unit_test_teardown(test_lanes_same_as_one, it_test_teardown),
	    cmocka_unit_test_teardown(test_keys_in_c_collation, it_test_teardown),
	    cmocka_unit_test_teardown(test_second_lane_waits_for_backlog, it_test_teardown),
	    cmocka_unit_test_teardown(test_copy_meets_concurrent_insert, it_test_teardown),
	    cmocka_unit_test_teardown(test_insert_meets_concurrent_insert, it_test_teardown),
	    cmocka_unit_test_teardown(test_large_events, it_test_teardown),
	    cmocka_unit_test_teardown(test_occurred_at_as_stored, it_test_teardown),
	    cmocka_unit_test_teardown(test_ids_reused_across_orders, it_test_teardown),
	    cmocka_unit_test_teardown(test_order_waits_behind_passed_id, it_test_teardown),
	};
	it_env_init("pipeline");
	return it_env_fini(cmocka_run_group_tests(tests, NULL, NULL));
}
