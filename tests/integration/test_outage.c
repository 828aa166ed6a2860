/*
 * test_outage.c - the daemon across PostgreSQL outages.
 *
 * PostgreSQL is stopped for about three seconds in the middle of a stream
 * on two connections, and in a second test is down when the daemon starts;
 * in a third, one of the daemon's two ingest sessions is terminated while
 * PostgreSQL stays up; in a fourth, the first session cannot come back
 * while the second is up; in a fifth, the database's address never
 * answers; in a sixth, the server ends idle sessions.
 * The daemon must keep running, hold acks until a commit, and end with
 * every event stored exactly once.  An event whose batch was in flight when
 * the connection dropped may be acked "stored" or "duplicate"; an error is
 * never right.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "harness.h"

#define CONNS       2
#define PER_CONN    1500 /* 3,000 events in all */
#define TICK_MS     10
#define TICK_EVENTS 3   /* per connection per tick: ~300 events/s each */
#define STOP_AT     400 /* events per connection queued when the stop begins */
#define OUTAGE_MS   3000
#define SETTLE_MS   500 /* after the stop, for acks of the last commits to arrive */
#define RECOVER_MS  120000

/* The id of event i on connection k. */
static void event_id(int k, int i, char *out, size_t cap)
{
	snprintf(out, cap, "out-c%d-%04d", k, i);
}

/* Queue events [from, to) on every connection. */
static void queue_range(struct it_client **cs, int from, int to)
{
	for (int k = 0; k < CONNS; k++) {
		for (int i = from; i < to; i++) {
			char id[32];
			event_id(k, i, id, sizeof(id));
			char *ev =
			    it_event_line(id, i % 2 ? "shipment.checkpoint" : "shipment.arrived",
			                  "PO-OUT", k ? "SH-OUT-B" : "SH-OUT-A");
			it_queue(cs[k], ev);
			free(ev);
		}
	}
}

/* Acks for every event, in order, each stored or duplicate. */
static void check_acks(struct it_client **cs, int n, int *duplicates)
{
	*duplicates = 0;
	for (int k = 0; k < CONNS; k++) {
		if (cs[k]->n_lines < (size_t)(n + 1))
			it_fail("connection %d: %zu of %d events acked%s", k, cs[k]->n_lines - 1, n,
			        cs[k]->eof ? " (closed by the daemon)" : "");
		for (int i = 0; i < n; i++) {
			char id[32];
			const char *line = cs[k]->lines[1 + i];
			event_id(k, i, id, sizeof(id));
			if (strstr(line, "\"duplicate\"") != NULL) {
				it_check_ack(line, id, "duplicate");
				(*duplicates)++;
			} else {
				it_check_ack(line, id, "stored");
			}
		}
	}
}

/* Open CONNS connections and say hello on each; line 0 of each one's replies is the welcome. */
static void connect_all(struct it_daemon *d, struct it_client **cs)
{
	for (int k = 0; k < CONNS; k++) {
		cs[k] = it_connect(d);
		it_queue(cs[k], "{\"type\":\"hello\",\"exporter\":\"" IT_EXPORTER
		                "\",\"token\":\"" IT_TOKEN "\"}");
		cs[k]->want = 1;
	}
	if (!it_pump(cs, CONNS, IT_REPLY_MS))
		it_fail("no reply to hello");
	for (int k = 0; k < CONNS; k++) {
		if (strstr(cs[k]->lines[0], "\"welcome\"") == NULL)
			it_fail("hello answered with %s", cs[k]->lines[0]);
	}
}

/*
 * PostgreSQL stops (in mode) for ~3 s mid-stream, while batches are in
 * flight: every event acked, none lost, none twice.
 */
static void outage_mid_stream(const char *mode, int rounds)
{
	struct it_client *cs[CONNS];
	char db[32];
	int dups;

	snprintf(db, sizeof(db), "outage_%s_%d", mode, rounds);
	it_pg_createdb(db);
	struct it_config cfg = {.name = db, .dbname = db};
	struct it_daemon *d = it_daemon_start(&cfg, true);

	connect_all(d, cs);

	/*
	 * A paced stream, TICK_EVENTS per connection every TICK_MS, so that
	 * batches are in flight whenever PostgreSQL goes.  The stop begins once
	 * STOP_AT events per connection are queued; the cluster starts again
	 * OUTAGE_MS after the stop has finished.
	 */
	enum { BEFORE, STOPPING, SETTLING, DOWN, UP } phase = BEFORE;
	int queued = 0;
	long long t0 = it_now_ms(), t_stop = 0, t_down = 0, t_up = 0;
	size_t acked_down = 0, acked_before = 0;
	int round = 0;
	pid_t stopper = -1;
	off_t off = it_log_offset(d);
	for (int k = 0; k < CONNS; k++)
		cs[k]->want = (size_t)PER_CONN + 2; /* unreachable: pump whole ticks */
	while (queued < PER_CONN || phase != UP || round < rounds) {
		int target = (int)((it_now_ms() - t0) / TICK_MS + 1) * TICK_EVENTS;
		if (target > PER_CONN)
			target = PER_CONN;
		if (target > queued) {
			queue_range(cs, queued, target);
			queued = target;
		}
		it_pump(cs, CONNS, TICK_MS);
		size_t acked = cs[0]->n_lines + cs[1]->n_lines - 2;
		if (phase == UP && round < rounds && queued >= STOP_AT * (round + 1)) {
			phase = BEFORE; /* another outage in the same run */
		}
		if (phase == BEFORE && queued >= STOP_AT * (round + 1)) {
			acked_before = acked;
			t_stop = it_now_ms();
			stopper = it_pg_stop_begin(mode);
			phase = STOPPING;
		} else if (phase == STOPPING && it_pg_stop_done(stopper)) {
			t_down = it_now_ms();
			phase = SETTLING;
		} else if (phase == SETTLING && it_now_ms() - t_down >= SETTLE_MS) {
			/* A batch that committed just before the server went
			 * may have its acks still on the way (a slow sanitizer
			 * build): count from here. */
			acked_down = acked;
			phase = DOWN;
		} else if (phase == DOWN && it_now_ms() - t_down >= OUTAGE_MS) {
			if (!it_daemon_alive(d))
				it_fail("the daemon exited while PostgreSQL was down");
			acked_down = acked - acked_down;
			/* Nothing can be committed, so nothing may be acked. */
			if (acked_down != 0)
				it_fail("%zu events acked while PostgreSQL was down", acked_down);
			it_pg_start();
			t_up = it_now_ms();
			phase = UP;
			round++;
		}
	}
	fprintf(stderr,
	        "outage (%s): %zu acks before the stop, stop took %lld ms, down %lld ms with "
	        "%zu acks meanwhile\n",
	        mode, acked_before, t_down - t_stop, t_up - t_down, acked_down);

	/* After: every held ack. */
	for (int k = 0; k < CONNS; k++)
		cs[k]->want = 1 + PER_CONN;
	if (!it_pump(cs, CONNS, RECOVER_MS))
		it_fail("not every event was answered within %d ms of PostgreSQL's restart (%zu "
		        "and %zu replies)",
		        RECOVER_MS, cs[0]->n_lines - 1, cs[1]->n_lines - 1);
	fprintf(stderr, "outage (%s): all acked %lld ms after the restart\n", mode,
	        it_now_ms() - t_up);
	check_acks(cs, PER_CONN, &dups);
	fprintf(stderr, "outage (%s): %d acks were \"duplicate\"\n", mode, dups);

	assert_int_equal(it_db_rows(db), CONNS * PER_CONN);
	assert_int_equal(
	    it_db_long(db, "SELECT count(DISTINCT event_id) FROM ordertrack.events", NULL),
	    CONNS * PER_CONN);
	off_t lost = it_log_expect(d, off, "msg=\"database lost\"", 0);
	it_log_expect(d, lost, "msg=\"database connected\"", IT_REPLY_MS);

	/* Still an ordinary daemon afterwards. */
	char *ev = it_event_line("out-after", "order.created", "PO-OUT", NULL);
	it_send(cs[0], ev);
	it_expect_ack(cs[0], "out-after", "stored");
	free(ev);
	it_daemon_stop_clean(d);
}

/*
 * One of the daemon's two ingest sessions is terminated mid-stream
 * (pg_terminate_backend), PostgreSQL itself staying up: the batch it held
 * goes back to the queue, the other session or the reconnected one stores
 * it, and every event is answered stored or duplicate, exactly once in the
 * table.
 */
static void test_one_session_lost(void **state)
{
	struct it_client *cs[CONNS];
	const char *db = "outage_one_session";
	int dups;
	(void)state;

	it_pg_createdb(db);
	struct it_config cfg = {.name = db, .dbname = db, .db_connections = 2};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	off_t off = it_log_offset(d);
	connect_all(d, cs);

	/* Paced as in outage_mid_stream, so that batches are in flight. */
	int queued = 0;
	bool killed = false;
	long long t0 = it_now_ms();
	for (int k = 0; k < CONNS; k++)
		cs[k]->want = (size_t)PER_CONN + 2; /* unreachable: pump whole ticks */
	while (queued < PER_CONN) {
		int target = (int)((it_now_ms() - t0) / TICK_MS + 1) * TICK_EVENTS;
		if (target > PER_CONN)
			target = PER_CONN;
		if (target > queued) {
			queue_range(cs, queued, target);
			queued = target;
		}
		it_pump(cs, CONNS, TICK_MS);
		if (!killed && queued >= STOP_AT) {
			long n =
			    it_db_long(db,
			               "SELECT count(pg_terminate_backend(pid)) FROM ("
			               " SELECT pid FROM pg_stat_activity"
			               " WHERE datname = $1 AND application_name = 'ordertrackd'"
			               " ORDER BY pid LIMIT 1) s",
			               db, NULL);
			assert_int_equal(n, 1);
			killed = true;
		}
	}
	for (int k = 0; k < CONNS; k++)
		cs[k]->want = 1 + PER_CONN;
	if (!it_pump(cs, CONNS, RECOVER_MS))
		it_fail("not every event was answered after one session was lost (%zu and %zu "
		        "replies)",
		        cs[0]->n_lines - 1, cs[1]->n_lines - 1);
	check_acks(cs, PER_CONN, &dups);
	fprintf(stderr, "one session lost: %d acks were \"duplicate\"\n", dups);
	assert_int_equal(it_db_rows(db), CONNS * PER_CONN);
	assert_int_equal(
	    it_db_long(db, "SELECT count(DISTINCT event_id) FROM ordertrack.events", NULL),
	    CONNS * PER_CONN);
	off_t lost = it_log_expect(d, off, "msg=\"database lost\" link=", 0);
	it_log_expect(d, lost, "msg=\"database connected\" link=", IT_REPLY_MS);
	it_daemon_stop_clean(d);
}

/*
 * An idle session ended by the server (pg_terminate_backend, as a fast
 * shutdown does too): libpq's reason is only "server closed the connection
 * unexpectedly", so the line also says which server, how long the session
 * was up, and the FATAL the server sent first (SQLSTATE 57P01).
 */
static void test_lost_says_why(void **state)
{
	(void)state;
	const char *db = "outage_lost_why";
	it_pg_createdb(db);
	struct it_config cfg = {.name = db, .dbname = db, .db_connections = 1};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	it_log_expect(d, 0, "msg=\"database connected\" link=1", IT_REPLY_MS);
	off_t off = it_log_offset(d);
	long n = it_db_long(db,
	                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
	                    " WHERE datname = $1 AND application_name = 'ordertrackd'",
	                    db, NULL);
	assert_int_equal(n, 1);
	off_t lost = it_log_expect(d, off, "msg=\"database lost\" link=1", IT_REPLY_MS);
	FILE *f = fopen(d->log_path, "r");
	assert_non_null(f);
	char line[4096] = "";
	fseeko(f, off, SEEK_SET); /* lost is past the line */
	while (fgets(line, sizeof(line), f) != NULL && strstr(line, "database lost") == NULL)
		;
	fclose(f);
	if (strstr(line, " server=") == NULL || strstr(line, " up_s=") == NULL ||
	    strstr(line, " sqlstate=57P01 server_said=") == NULL)
		it_fail("the lost line does not say the server, the time up and its FATAL: %s",
		        line);
	it_log_expect(d, lost, "msg=\"database connected\" link=1", IT_REPLY_MS);
	it_daemon_stop_clean(d);
}

/*
 * The same with a batch in flight: a test session holds the lock of the
 * event's order, so the batch waits in the server when its session is
 * ended; the FATAL then comes as the batch's result, not as a notice, and
 * the line must still carry it.  The event is stored once the lock goes.
 */
static void test_lost_busy_says_why(void **state)
{
	(void)state;
	const char *db = "outage_lost_busy";
	it_pg_createdb(db);
	struct it_config cfg = {.name = db, .dbname = db, .db_connections = 1};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	PGconn *conn = PQconnectdb(it_conninfo(db));
	if (PQstatus(conn) != CONNECTION_OK)
		it_fail("connect: %s", PQerrorMessage(conn));
	PQclear(PQexec(conn, "BEGIN"));
	PGresult *r = PQexec(conn, "SELECT pg_advisory_xact_lock(hashtextextended('" IT_EXPORTER
	                           "' || '/' || 'PO-BUSY', 7433))");
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		it_fail("lock: %s", PQresultErrorMessage(r));
	PQclear(r);
	struct it_client *c = it_connect(d);
	it_hello(c, IT_EXPORTER, IT_TOKEN);
	off_t off = it_log_offset(d);
	char *ev = it_event_line("busy-1", "order.created", "PO-BUSY", NULL);
	it_send(c, ev);
	free(ev);
	it_log_expect(d, off, "msg=\"batch sent\" link=1 events=1", IT_REPLY_MS);
	it_sleep_ms(200); /* the batch reaches the lock */
	off = it_log_offset(d);
	long n = it_db_long(db,
	                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
	                    " WHERE datname = $1 AND application_name = 'ordertrackd'",
	                    db, NULL);
	assert_int_equal(n, 1);
	it_log_expect(d, off, "msg=\"database lost\" link=1", IT_REPLY_MS);
	FILE *f = fopen(d->log_path, "r");
	assert_non_null(f);
	char line[4096] = "";
	fseeko(f, off, SEEK_SET);
	while (fgets(line, sizeof(line), f) != NULL && strstr(line, "database lost") == NULL)
		;
	fclose(f);
	if (strstr(line, " sqlstate=57P01 server_said=") == NULL)
		it_fail("the lost line of a busy session does not give its FATAL: %s", line);
	PQclear(PQexec(conn, "COMMIT"));
	PQfinish(conn);
	it_expect_ack(c, "busy-1", "stored");
	it_close(c);
	it_daemon_stop_clean(d);
}

/* The backend pid of a link's last "database connected" line, as text. */
static void log_backend_pid(const struct it_daemon *d, unsigned link, char *out, size_t cap)
{
	char needle[64], line[4096];
	snprintf(needle, sizeof(needle), "msg=\"database connected\" link=%u ", link);
	FILE *f = fopen(d->log_path, "r");
	assert_non_null(f);
	out[0] = '\0';
	while (fgets(line, sizeof(line), f) != NULL) {
		const char *p = strstr(line, needle);
		if (p != NULL && (p = strstr(p, "backend_pid=")) != NULL)
			snprintf(out, cap, "%.*s", (int)strspn(p + 12, "0123456789"), p + 12);
	}
	fclose(f);
	if (out[0] == '\0')
		it_fail("no backend_pid for link=%u in the log", link);
}

/*
 * The first of two ingest sessions is lost and cannot come back (its role
 * has no connection left), the second stays up: a lone event, far below a
 * backlog, is stored and acked by the second session at once.
 */
static void test_first_session_down(void **state)
{
	const char *db = "outage_first_down";
	(void)state;

	it_pg_createdb(db);
	/* Not a superuser: a role's connection limit does not bind those. */
	it_db_command(NULL, "CREATE ROLE ot_first_down LOGIN", NULL);
	it_db_command(NULL, "ALTER DATABASE outage_first_down OWNER TO ot_first_down", NULL);
	/* The daemon's conninfo ends "dbname=<dbname>"; a later key wins. */
	struct it_config cfg = {.name = db,
	                        .dbname = "outage_first_down user=ot_first_down",
	                        .db_connections = 2,
	                        .batch_max_delay_ms = 5};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	off_t off = it_log_offset(d);
	/* Both ingest sessions and the auxiliary one are in; no fourth fits. */
	it_log_expect(d, 0, "msg=\"database connected\" link=2", IT_REPLY_MS);
	it_db_command(NULL, "ALTER ROLE ot_first_down CONNECTION LIMIT 2", NULL);
	char pid[16];
	log_backend_pid(d, 1, pid, sizeof(pid));
	char *killed = it_db_value(NULL, "SELECT pg_terminate_backend($1::int)::text", pid, NULL);
	assert_string_equal(killed, "true");
	free(killed);
	off = it_log_expect(d, off, "msg=\"database lost\" link=1", IT_REPLY_MS);
	it_log_expect(d, off, "msg=\"database still unavailable\" link=1", IT_REPLY_MS);

	struct it_client *c = it_connect(d);
	it_hello(c, IT_EXPORTER, IT_TOKEN);
	char *ev = it_event_line("first-down-1", "order.created", "PO-FIRST-DOWN", NULL);
	long long t0 = it_now_ms();
	it_send(c, ev);
	free(ev);
	it_expect_ack(c, "first-down-1", "stored");
	long long took = it_now_ms() - t0;
	fprintf(stderr, "first session down: acked in %lld ms\n", took);
	assert_true(took < 2000);
	assert_int_equal(it_db_rows(db), 1);
	it_daemon_stop_clean(d);
	it_db_command(NULL, "ALTER ROLE ot_first_down CONNECTION LIMIT -1", NULL);
}

/*
 * A database that is not UTF8 is refused, with the reason, and retried:
 * in SQL_ASCII a resent event with a non-ASCII character failed for ever
 * (its body compared as jsonb).  And the daemon's sessions speak UTF8
 * whatever conninfo says: with client_encoding=LATIN1 there, the server
 * took the daemon's UTF-8 bytes for Latin-1 and stored mojibake.
 */
static void test_database_encoding(void **state)
{
	(void)state;
	it_db_command(NULL,
	              "CREATE DATABASE outage_ascii TEMPLATE template0 ENCODING 'SQL_ASCII'"
	              " LC_COLLATE 'C' LC_CTYPE 'C'",
	              NULL);
	struct it_config cfg = {
	    .name = "outage_ascii", .dbname = "outage_ascii", .db_connections = 1};
	struct it_daemon *d = it_daemon_start(&cfg, false);
	it_log_expect(d, 0,
	              "msg=\"database unavailable\" link=1 reason=\"the database's encoding is"
	              " SQL_ASCII, and ordertrack needs UTF8",
	              IT_REPLY_MS);
	assert_int_equal(
	    it_db_long("outage_ascii",
	               "SELECT count(*) FROM pg_namespace WHERE nspname = 'ordertrack'", NULL),
	    0);
	it_daemon_stop_clean(d);

	const char *db = "outage_latin1_client";
	it_pg_createdb(db);
	struct it_config cfg2 = {.name = db,
	                         .dbname = "outage_latin1_client client_encoding=LATIN1"};
	d = it_daemon_start(&cfg2, true);
	struct it_client *c = it_connect(d);
	it_hello(c, IT_EXPORTER, IT_TOKEN);
	static const char line[] = "{\"type\":\"order.confirmed\",\"id\":\"enc-1\",\"occurred_at\":"
	                           "\"2026-10-05T11:40:00+02:00\",\"order\":\"PO-ENC\","
	                           "\"note\":\"\xe6\xad\xa4 caf\xc3\xa9\"}";
	it_send(c, line);
	it_expect_ack(c, "enc-1", "stored");
	it_send(c, line);
	it_expect_ack(c, "enc-1", "duplicate");
	char *note = it_db_value(db, "SELECT body->>'note' FROM ordertrack.events", NULL);
	assert_string_equal(note, "\xe6\xad\xa4 caf\xc3\xa9");
	free(note);
	it_close(c);
	it_daemon_stop_clean(d);
}

/*
 * The database's address accepts TCP connections and never answers (a
 * listening socket of the test's that nobody accepts on): each attempt
 * to connect is given up at the conninfo's connect_timeout, said in the
 * log, and made again.
 */
static void test_connect_deadline(void **state)
{
	(void)state;
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	assert_true(lfd >= 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(lfd, 64), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &len), 0);

	char dbname[128];
	snprintf(dbname, sizeof(dbname),
	         "outage_deadline host=127.0.0.1 port=%d connect_timeout=2 sslmode=disable",
	         ntohs(sa.sin_port));
	struct it_config cfg = {.name = "outage_deadline", .dbname = dbname, .db_connections = 1};
	long long t0 = it_now_ms();
	struct it_daemon *d = it_daemon_start(&cfg, false);
	off_t off =
	    it_log_expect(d, 0,
	                  "msg=\"database unavailable\" link=1 reason=\"timeout expired: not"
	                  " connected within 2 s\"",
	                  6000);
	long long took = it_now_ms() - t0;
	fprintf(stderr, "connect deadline: given up after %lld ms\n", took);
	assert_true(took >= 1500);
	it_log_expect(d, off, "msg=\"database still unavailable\" link=1 reason=\"timeout expired",
	              6000);
	it_daemon_stop_clean(d);
	close(lfd);
}

/*
 * A server that ends idle sessions (idle_session_timeout, PostgreSQL 14 and
 * later) leaves the daemon's alone: they wait for work by design, and being
 * ended every few hundred milliseconds was logged as the database lost, in
 * every session, for as long as the daemon ran.
 */
static void test_idle_session_timeout(void **state)
{
	const char *db = "outage_idle_timeout";
	(void)state;

	if (it_db_long(NULL, "SELECT current_setting('server_version_num')::int", NULL) < 140000)
		skip();
	it_pg_createdb(db);
	it_db_command(NULL, "ALTER DATABASE outage_idle_timeout SET idle_session_timeout = 200",
	              NULL);
	struct it_config cfg = {.name = db, .dbname = db, .db_connections = 2};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	off_t off = it_log_expect(d, 0, "msg=\"database connected\" link=2", IT_REPLY_MS);
	char *in_force = it_db_value(db, "SELECT current_setting('idle_session_timeout')", NULL);
	assert_string_equal(in_force, "200ms");
	free(in_force);
	it_sleep_ms(1500);
	assert_true(it_log_wait(d, off, "msg=\"database lost\"", 0) < 0);
	assert_true(it_log_wait(d, off, "msg=\"database unavailable\"", 0) < 0);
	/* The two ingest sessions and the auxiliary one, each the first. */
	assert_int_equal(
	    it_db_long(db,
	               "SELECT count(*) FROM pg_stat_activity WHERE application_name"
	               " LIKE 'ordertrackd%' AND backend_start < now() - interval '1 s'",
	               NULL),
	    3);

	struct it_client *c = it_connect(d);
	it_hello(c, IT_EXPORTER, IT_TOKEN);
	char *ev = it_event_line("idle-timeout-1", "order.created", "PO-IDLE-TIMEOUT", NULL);
	it_send(c, ev);
	free(ev);
	it_expect_ack(c, "idle-timeout-1", "stored");
	assert_int_equal(it_db_rows(db), 1);
	it_daemon_stop_clean(d);
}

/* The outage of the brief: a fast shutdown, sessions terminated cleanly. */
static void test_outage_fast(void **state)
{
	outage_mid_stream("fast", 1);
}

/* Two fast stops in one run: the daemon recovers each time. */
static void test_outage_twice(void **state)
{
	outage_mid_stream("fast", 2);
}

/* A crash-like stop: commits in flight may or may not have happened. */
static void test_outage_immediate(void **state)
{
	outage_mid_stream("immediate", 1);
}

/* The daemon starts while PostgreSQL is down, waits, and serves once it is up. */
static void test_start_while_down(void **state)
{
	char *line;

	it_pg_createdb("outage_start");
	it_pg_stop("fast");
	struct it_config cfg = {.name = "outage_start", .dbname = "outage_start"};
	struct it_daemon *d = it_daemon_start(&cfg, false);
	it_sleep_ms(1000);
	if (!it_daemon_alive(d))
		it_fail("the daemon exited because PostgreSQL was down");
	if (it_log_wait(d, 0, "msg=ready", 0) >= 0)
		it_fail("msg=ready logged while PostgreSQL is down");

	struct it_client *c = it_connect(d);
	it_hello(c, IT_EXPORTER, IT_TOKEN);
	char *ev = it_event_line("down-1", "order.created", "PO-DOWN", NULL);
	it_send(c, ev);
	/* Nothing can be committed, so nothing may be answered yet. */
	if (it_try_read_line(c, 1500, &line) == IT_READ_LINE)
		it_fail("an event was answered while PostgreSQL was down: %s", line);
	it_send(c, "{\"type\":\"ping\"}");

	off_t off = it_log_offset(d);
	it_pg_start();
	it_log_expect(d, off, "msg=\"database connected\"", 60000);
	it_log_expect(d, 0, "msg=ready", 60000);
	line = it_read_line(c, 60000);
	it_check_ack(line, "down-1", "stored");
	free(line);
	it_expect_pong(c);
	assert_int_equal(it_db_rows("outage_start"), 1);
	free(ev);
	it_daemon_stop_clean(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_outage_fast, it_test_teardown),
	    cmocka_unit_test_teardown(test_outage_twice, it_test_teardown),
	    cmocka_unit_test_teardown(test_outage_immediate, it_test_teardown),
	    cmocka_unit_test_teardown(test_start_while_down, it_test_teardown),
	    cmocka_unit_test_teardown(test_one_session_lost, it_test_teardown),
	    cmocka_unit_test_teardown(test_lost_says_why, it_test_teardown),
	    cmocka_unit_test_teardown(test_lost_busy_says_why, it_test_teardown),
	    cmocka_unit_test_teardown(test_first_session_down, it_test_teardown),
	    cmocka_unit_test_teardown(test_connect_deadline, it_test_teardown),
	    cmocka_unit_test_teardown(test_database_encoding, it_test_teardown),
	    cmocka_unit_test_teardown(test_idle_session_timeout, it_test_teardown),
	};
	it_env_init("outage");
	return it_env_fini(cmocka_run_group_tests(tests, NULL, NULL));
}
