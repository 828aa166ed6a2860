/*
 * test_faults.c - faults from outside the daemon: poison events that pass
 * our validation but fail inside PostgreSQL, clients that vanish
 * mid-stream, a database that keeps failing with a transient error, and
 * an event whose write takes the session down (each time, or once before
 * or during its batch's COMMIT), a failed batch's transaction that must
 * not be left open, and a server that refuses every batch for a while (a
 * privilege revoked, a lock held past lock_timeout, read-only).
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "harness.h"

#define POISON_N      40
#define VANISH_CONNS  20
#define VANISH_EVENTS 300
#define STATE_EVENTS  20

/*
 * A sequence test_tries and a BEFORE INSERT trigger on ordertrack.events
 * in db: each write of an event whose id is LIKE pattern takes the next
 * value of test_tries (the try's number, in "try") and then runs action,
 * PL/pgSQL statements that may RAISE or end the session.
 */
static void add_event_trigger(const char *db, const char *pattern, const char *action)
{
	char sql[2048];
	snprintf(sql, sizeof(sql),
	         "CREATE SEQUENCE test_tries;"
	         "CREATE FUNCTION test_trigger() RETURNS trigger LANGUAGE plpgsql AS $$"
	         " DECLARE try bigint;"
	         " BEGIN"
	         "  IF NEW.event_id LIKE '%s' THEN"
	         "   try := nextval('test_tries');"
	         "   %s"
	         "  END IF;"
	         "  RETURN NEW;"
	         " END $$;"
	         "CREATE TRIGGER test_trigger BEFORE INSERT ON ordertrack.events"
	         " FOR EACH ROW EXECUTE FUNCTION test_trigger();",
	         pattern, action);
	it_db_script(db, sql);
}

/*
 * Every other event of a batch fails inside PostgreSQL (a CHECK added by
 * the test rejects their ids): the good ones are committed and acked, the
 * bad ones get an error naming the database's reason, none is retried
 * forever.
 */
static void test_poison_events(void **state)
{
	(void)state;
	it_pg_createdb("poison");
	struct it_config cfg = {.name = "poison", .dbname = "poison", .batch_max_delay_ms = 50};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	it_db_command("poison",
	              "ALTER TABLE ordertrack.events ADD CONSTRAINT test_poison"
	              " CHECK (event_id NOT LIKE 'poison-bad-%')",
	              NULL);
	struct it_client *c = it_connect(d);
	it_hello(c, IT_EXPORTER, IT_TOKEN);
	for (int i = 0; i < POISON_N; i++) {
		char id[48];
		snprintf(id, sizeof(id), "poison-%s-%03d", i % 2 ? "bad" : "good", i);
		char *ev = it_event_line(id, "shipment.checkpoint", "PO-POISON", "SH-1");
		it_queue(c, ev);
		free(ev);
	}
	c->want = POISON_N;
	assert_true(it_pump(&c, 1, 60000));
	assert_int_equal(c->n_lines, POISON_N);
	for (int i = 0; i < POISON_N; i++) {
		char id[48];
		snprintf(id, sizeof(id), "poison-%s-%03d", i % 2 ? "bad" : "good", i);
		if (i % 2 == 0) {
			it_check_ack(c->lines[i], id, "stored");
		} else {
			json_t *err = it_check_error(c->lines[i], id, "invalid_event");
			assert_non_null(strstr(it_json_str(err, "message"), "test_poison"));
			json_decref(err);
		}
	}
	assert_int_equal(it_db_long("poison", "SELECT count(*) FROM ordertrack.events", NULL),
	                 POISON_N / 2);
	/* The daemon is not stuck retrying: a new event goes straight through. */
	it_send_event(c, "poison-after", "shipment.checkpoint", "PO-POISON", "SH-1");
	it_expect_ack(c, "poison-after", "stored");
	it_daemon_stop_clean(d);
}

/* Lines of the daemon's log holding needle (and also and, unless NULL). */
static int count_log_lines(const struct it_daemon *d, const char *needle, const char *and)
{
	FILE *f = fopen(d->log_path, "r");
	assert_non_null(f);
	char line[4096];
	int n = 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strstr(line, needle) != NULL && (and == NULL || strstr(line, and) != NULL))
			n++;
	}
	fclose(f);
	return n;
}

/* Lines of the daemon's log holding needle. */
static int log_count(const struct it_daemon *d, const char *needle)
{
	return count_log_lines(d, needle, NULL);
}

/*
 * The server ends sessions left idle in a transaction for a second
 * (idle_in_transaction_session_timeout, set for the daemon's database).
 * One event fails inside PostgreSQL and no other follows: the failed
 * batch's aborted transaction is ended at once, not left to the next
 * batch, so the server never ends the session ("database lost").
 */
static void test_failed_batch_not_left_open(void **state)
{
	(void)state;
	it_pg_createdb("idletx");
	it_db_command(NULL, "ALTER DATABASE idletx SET idle_in_transaction_session_timeout = '1s'",
	              NULL);
	struct it_config cfg = {.name = "idletx", .dbname = "idletx", .log_level = "info"};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	it_db_command("idletx",
	              "ALTER TABLE ordertrack.events ADD CONSTRAINT test_poison"
	              " CHECK (event_id NOT LIKE 'idle-bad-%')",
	              NULL);
	struct it_client *c = it_connect(d);
	it_hello(c, IT_EXPORTER, IT_TOKEN);
	char *ev = it_event_line("idle-bad-1", "order.created", "PO-IDLE", NULL);
	it_send(c, ev);
	free(ev);
	json_decref(it_expect_error(c, "idle-bad-1", "invalid_event"));
	/* Well past the timeout, with nothing else to send. */
	it_sleep_ms(2500);
	assert_int_equal(log_count(d, "msg=\"database lost\""), 0);
	assert_int_equal(it_db_long("idletx",
	                            "SELECT count(*) FROM pg_stat_activity WHERE datname = 'idletx'"
	                            " AND application_name = 'ordertrackd' AND state <> 'idle'",
	                            NULL),
	                 0);
	ev = it_event_line("idle-good-1", "order.created", "PO-IDLE", NULL);
	it_send(c, ev);
	free(ev);
	it_expect_ack(c, "idle-good-1", "stored");
	assert_int_equal(log_count(d, "msg=\"database lost\""), 0);
	it_daemon_stop_clean(d);
	it_db_command(NULL, "ALTER DATABASE idletx RESET idle_in_transaction_session_timeout",
	              NULL);
}

/*
 * The database fails every try of one event with a transient SQLSTATE
 * (53100, disk_full, raised by a trigger the test adds; a sequence, which
 * no rollback undoes, counts the tries): the batch is tried again after
 * growing pauses, not at once; the log says so in one warning; after the
 * last try the event is answered internal_error, and the next event is
 * stored at once.
 */
static void test_transient_failure(void **state)
{
	(void)state;
	it_pg_createdb("transient");
	struct it_config cfg = {.name = "transient", .dbname = "transient", .log_level = "info"};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	add_event_trigger("transient", "full-%",
	                  "RAISE EXCEPTION 'could not extend file: No space left on device'"
	                  " USING ERRCODE = 'disk_full';");
	struct it_client *c = it_connect(d);
	it_hello(c, IT_EXPORTER, IT_TOKEN);
	char *ev = it_event_line("full-1", "order.created", "PO-FULL", NULL);
	long long t0 = it_now_ms();
	it_send(c, ev);
	free(ev);
	/* Spaced tries: after 2 s, a handful, not thousands. */
	it_sleep_ms(2000);
	long tries = it_db_long("transient", "SELECT last_value FROM test_tries", NULL);
	fprintf(stderr, "transient failure: %ld tries in the first 2 s\n", tries);
	assert_true(tries >= 3 && tries <= 8);
	/* The pauses alone add up to about 11.3 s; a slow (sanitizer) build
	 * gets room beyond IT_REPLY_MS. */
	char *line = it_read_line(c, 60000);
	json_t *err = it_check_error(line, "full-1", "internal_error");
	json_decref(err);
	free(line);
	long long took = it_now_ms() - t0;
	tries = it_db_long("transient", "SELECT last_value FROM test_tries", NULL);
	fprintf(stderr, "transient failure: internal_error after %ld tries, %lld ms\n", tries,
	        took);
	assert_int_equal(tries, 8);
	assert_true(took >= 5000);
	/* One warning for the episode, naming the SQLSTATE and the reason. */
	assert_int_equal(log_count(d, "msg=\"database failing\""), 1);
	/* Either session may have met it first. */
	assert_int_equal(count_log_lines(d, "msg=\"database failing\" link=",
	                                 " sqlstate=53100 reason=\"could not extend file"),
	                 1);
	/* The daemon is not paused any longer than the failures last. */
	ev = it_event_line("fine-1", "order.created", "PO-FINE", NULL);
	t0 = it_now_ms();
	it_send(c, ev);
	free(ev);
	it_expect_ack(c, "fine-1", "stored");
	assert_true(it_now_ms() - t0 < 3000);
	it_log_expect(d, 0, "msg=\"database failing no more\"", 0);
	assert_int_equal(it_db_rows("transient"), 1);
	it_daemon_stop_clean(d);
}

/*
 * A deadlock or a serialization failure (SQLSTATE class 40) is the
 * server's "try again": a trigger fails the first write of an event with
 * 40001, and the daemon sends the batch again at once, with one info
 * line ("batch retried" with the SQLSTATE) and no "database failing"
 * warning; the event is stored once and acked stored.
 */
static void test_serialization_failure_retried(void **state)
{
	(void)state;
	it_pg_createdb("retried");
	struct it_config cfg = {.name = "retried", .dbname = "retried", .log_level = "info"};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	add_event_trigger("retried", "retry-%",
	                  "IF try = 1 THEN"
	                  " RAISE EXCEPTION 'could not serialize access due to concurrent update'"
	                  " USING ERRCODE = 'serialization_failure'; END IF;");
	struct it_client *c = it_connect(d);
	it_hello(c, IT_EXPORTER, IT_TOKEN);
	char *ev = it_event_line("retry-1", "order.created", "PO-RETRY", NULL);
	long long t0 = it_now_ms();
	it_send(c, ev);
	free(ev);
	it_expect_ack(c, "retry-1", "stored");
	long long took = it_now_ms() - t0;
	assert_true(took < 3000); /* at once, not after a backoff */
	assert_int_equal(it_db_long("retried", "SELECT last_value FROM test_tries", NULL), 2);
	assert_int_equal(it_db_rows("retried"), 1);
	assert_int_equal(count_log_lines(d, "msg=\"batch retried\" link=",
	                                 " sqlstate=40001 reason=\"could not serialize access"),
	                 1);
	assert_int_equal(log_count(d, "msg=\"database failing\""), 0);
	it_daemon_stop_clean(d);
}

/*
 * An event whose write fails with an error that is neither about its data
 * nor transient (a trigger raising P0001, a bug in a function, say): it is
 * tried five times in all, alone or beside others, each failure logged;
 * then it is answered internal_error, and the events sent beside it are
 * stored.
 */
static void test_event_fails_repeatedly(void **state)
{
	(void)state;
	it_pg_createdb("stuck");
	struct it_config cfg = {
	    .name = "stuck", .dbname = "stuck", .log_level = "info", .batch_max_delay_ms = 50};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	add_event_trigger("stuck", "stuck-%",
	                  "RAISE EXCEPTION 'the test refuses %', NEW.event_id;");
	struct it_client *c = it_connect(d);
	it_hello(c, IT_EXPORTER, IT_TOKEN);
	static const char *const ids[] = {"beside-1", "stuck-1", "beside-2"};
	for (size_t i = 0; i < 3; i++) {
		char *ev = it_event_line(ids[i], "shipment.checkpoint", "PO-STUCK", "SH-STUCK");
		it_queue(c, ev);
		free(ev);
	}
	c->want = 3;
	assert_true(it_pump(&c, 1, 60000));
	it_check_ack(c->lines[0], "beside-1", "stored");
	json_decref(it_check_error(c->lines[1], "stuck-1", "internal_error"));
	it_check_ack(c->lines[2], "beside-2", "stored");
	assert_int_equal(it_db_long("stuck", "SELECT last_value FROM test_tries", NULL), 5);
	assert_int_equal(it_db_rows("stuck"), 2);
	/* Every try is one line: the error naming the event when it went
	 * alone, "isolating" when it went with others. */
	int named = count_log_lines(
	    d, "msg=\"batch failed\" link=", " sqlstate=P0001 reason=\"the test refuses stuck-1\"");
	int isolating = count_log_lines(d, "msg=\"batch failed, isolating\" link=",
	                                " sqlstate=P0001 reason=\"the test refuses stuck-1\"");
	assert_true(named >= 1);
	assert_int_equal(named + isolating, 5);
	it_daemon_stop_clean(d);
}

/*
 * One event takes the daemon's session down each time it is written (a
 * trigger the test adds terminates its own backend; a sequence counts the
 * tries): the daemon sends it 5 times, then answers internal_error with a
 * log line naming the reason, instead of sending it forever.  The next
 * event is stored.
 */
static void test_session_killer(void **state)
{
	(void)state;
	it_pg_createdb("killer");
	/* max_pending 1: while kill-1 waits, a second client is paused. */
	struct it_config cfg = {
	    .name = "killer", .dbname = "killer", .log_level = "info", .max_pending = 1};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	add_event_trigger("killer", "kill-%",
	                  "PERFORM pg_terminate_backend(pg_backend_pid()); PERFORM pg_sleep(5);");
	struct it_client *c = it_connect(d);
	it_hello(c, IT_EXPORTER, IT_TOKEN);
	struct it_client *paused = it_connect(d);
	it_hello(paused, IT_EXPORTER, IT_TOKEN);
	char *ev = it_event_line("kill-1", "order.created", "PO-KILL", NULL);
	it_send(c, ev);
	free(ev);
	it_log_expect(d, 0, "msg=\"database lost\"", IT_REPLY_MS);
	ev = it_event_line("behind-1", "order.created", "PO-BEHIND", NULL);
	it_send(paused, ev);
	free(ev);
	json_t *err = it_expect_error(c, "kill-1", "internal_error");
	assert_non_null(strstr(it_json_str(err, "message"), "session was lost"));
	json_decref(err);
	assert_int_equal(it_db_long("killer", "SELECT last_value FROM test_tries", NULL), 5);
	assert_int_equal(log_count(d, "msg=\"events failed\""), 1);
	assert_int_equal(log_count(d, "reason=\"FATAL:  terminating connection due to administrator"
	                              " command\" events=1 attempts=5"),
	                 1);
	/* The failed event's answer freed max_pending: the paused client
	 * reads again, with nothing else committing to wake it. */
	it_expect_ack(paused, "behind-1", "stored");
	ev = it_event_line("fine-1", "order.created", "PO-FINE", NULL);
	it_send(c, ev);
	free(ev);
	it_expect_ack(c, "fine-1", "stored");
	assert_int_equal(it_db_rows("killer"), 2);
	it_daemon_stop_clean(d);
}

/*
 * An exporter resends an event stored long ago, in the same batch as a
 * new event whose write takes the session down once (a trigger the test
 * adds terminates its own backend the first time): the session is lost
 * before COMMIT was sent, so the batch rolled back and nothing of it can
 * be this daemon's commit.  The resend is answered "duplicate", not
 * "stored" as an event in doubt would be, and the new event "stored".
 */
static void test_lost_before_commit(void **state)
{
	(void)state;
	it_pg_createdb("lostearly");
	/* A long delay: the two lines sent together go in one batch. */
	struct it_config cfg = {.name = "lostearly",
	                        .dbname = "lostearly",
	                        .log_level = "info",
	                        .batch_max_delay_ms = 200};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	add_event_trigger("lostearly", "early-kill-%",
	                  "IF try = 1 THEN PERFORM pg_terminate_backend(pg_backend_pid());"
	                  " PERFORM pg_sleep(5); END IF;");
	struct it_client *c = it_connect(d);
	it_hello(c, IT_EXPORTER, IT_TOKEN);
	char *old = it_event_line("early-old-1", "order.created", "PO-EARLY", NULL);
	it_send(c, old);
	it_expect_ack(c, "early-old-1", "stored");
	off_t off = it_log_offset(d);
	char *kill = it_event_line("early-kill-1", "shipment.booked", "PO-EARLY", "SH-1");
	it_send(c, old);
	it_send(c, kill);
	free(old);
	free(kill);
	it_log_expect(d, off, "msg=\"database lost\"", IT_REPLY_MS);
	it_expect_ack(c, "early-old-1", "duplicate");
	it_expect_ack(c, "early-kill-1", "stored");
	/* One lost session, and the retry was the second try. */
	assert_int_equal(it_db_long("lostearly", "SELECT last_value FROM test_tries", NULL), 2);
	assert_int_equal(log_count(d, "msg=\"database lost\""), 1);
	assert_int_equal(it_db_rows("lostearly"), 2);
	it_daemon_stop_clean(d);
}

/*
 * As test_lost_before_commit, but the session is lost during COMMIT (a
 * deferred constraint trigger the test adds terminates its own backend the
 * first time it runs, which is at COMMIT): the batch's events are in
 * doubt, yet the resend was found stored by that batch's INSERT, before
 * COMMIT went out, so no commit of this daemon can have stored it.  It is
 * answered "duplicate", the new event "stored".
 */
static void test_lost_at_commit(void **state)
{
	(void)state;
	it_pg_createdb("lostcommit");
	struct it_config cfg = {.name = "lostcommit",
	                        .dbname = "lostcommit",
	                        .log_level = "info",
	                        .batch_max_delay_ms = 200};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	it_db_script("lostcommit",
	             "CREATE SEQUENCE test_tries;"
	             "CREATE FUNCTION test_killer() RETURNS trigger LANGUAGE plpgsql AS $$"
	             " BEGIN"
	             "  IF NEW.event_id LIKE 'commit-kill-%' THEN"
	             "   IF nextval('test_tries') = 1 THEN"
	             "    PERFORM pg_terminate_backend(pg_backend_pid());"
	             "    PERFORM pg_sleep(5);"
	             "   END IF;"
	             "  END IF;"
	             "  RETURN NULL;"
	             " END $$;"
	             "CREATE CONSTRAINT TRIGGER test_killer AFTER INSERT ON ordertrack.events"
	             " DEFERRABLE INITIALLY DEFERRED"
	             " FOR EACH ROW EXECUTE FUNCTION test_killer();");
	struct it_client *c = it_connect(d);
	it_hello(c, IT_EXPORTER, IT_TOKEN);
	char *old = it_event_line("commit-old-1", "order.created", "PO-COMMIT", NULL);
	it_send(c, old);
	it_expect_ack(c, "commit-old-1", "stored");
	off_t off = it_log_offset(d);
	char *kill = it_event_line("commit-kill-1", "shipment.booked", "PO-COMMIT", "SH-1");
	it_send(c, old);
	it_send(c, kill);
	free(old);
	free(kill);
	it_log_expect(d, off, "msg=\"database lost\"", IT_REPLY_MS);
	it_expect_ack(c, "commit-old-1", "duplicate");
	it_expect_ack(c, "commit-kill-1", "stored");
	assert_int_equal(it_db_long("lostcommit", "SELECT last_value FROM test_tries", NULL), 2);
	assert_int_equal(log_count(d, "msg=\"database lost\""), 1);
	assert_int_equal(it_db_rows("lostcommit"), 2);
	it_daemon_stop_clean(d);
}

/*
 * Send STATE_EVENTS new events tagged tag; while the server refuses every
 * batch, none may be answered: the events wait for it.
 */
static void send_held(struct it_client *c, const char *tag)
{
	char *line;
	for (int i = 0; i < STATE_EVENTS; i++) {
		char id[48], order[48];
		snprintf(id, sizeof(id), "state-%s-%02d", tag, i);
		snprintf(order, sizeof(order), "PO-STATE-%s-%02d", tag, i);
		char *ev = it_event_line(id, "order.created", order, NULL);
		it_send(c, ev);
		free(ev);
	}
	if (it_try_read_line(c, 1500, &line) == IT_READ_LINE)
		it_fail("%s: answered while the server refused every batch: %s", tag, line);
}

/* The server works again: every event of send_held is stored, and said so in the log. */
static off_t expect_stored(struct it_daemon *d, off_t off, struct it_client *c, const char *tag,
                           const char *sqlstate)
{
	for (int i = 0; i < STATE_EVENTS; i++) {
		char id[48];
		snprintf(id, sizeof(id), "state-%s-%02d", tag, i);
		it_expect_ack(c, id, "stored");
	}
	/* Whichever session met the refusal first says so. */
	char needle[48];
	snprintf(needle, sizeof(needle), " sqlstate=%s ", sqlstate);
	off = it_log_expect(d, off, "msg=\"database failing\" link=", 0);
	assert_int_equal(count_log_lines(d, "msg=\"database failing\" link=", needle), 1);
	return it_log_expect(d, off, "msg=\"database failing no more\"", IT_REPLY_MS);
}

/*
 * The server refuses every batch for a state of its own that ends without
 * the daemon: INSERT on the events revoked (42501), a lock on the
 * notification counter held past lock_timeout (55P03), the server made
 * read-only (25006).  Each is a failure that may pass, as a full disk is:
 * the events wait (neither internal_error nor a try per event at once),
 * one warning per episode and no line per batch, and every event is
 * stored once the state ends.
 */
static void test_server_refuses(void **state)
{
	const char *db = "refuses";
	(void)state;

	it_pg_createdb(db);
	/* Not a superuser: a REVOKE does not bind those. */
	it_db_command(NULL, "CREATE ROLE ot_refused LOGIN", NULL);
	it_db_command(NULL, "ALTER DATABASE refuses OWNER TO ot_refused", NULL);
	it_db_command(NULL, "ALTER DATABASE refuses SET lock_timeout = '100ms'", NULL);
	struct it_config cfg = {
	    .name = db, .dbname = "refuses user=ot_refused", .log_level = "info"};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	struct it_client *c = it_connect(d);
	it_hello(c, IT_EXPORTER, IT_TOKEN);
	off_t off = it_log_offset(d);

	it_db_command(db, "REVOKE INSERT ON ordertrack.events FROM ot_refused", NULL);
	send_held(c, "revoked");
	it_db_command(db, "GRANT INSERT ON ordertrack.events TO ot_refused", NULL);
	off = expect_stored(d, off, c, "revoked", "42501");

	PGconn *holder = PQconnectdb(it_conninfo(db));
	assert_int_equal(PQstatus(holder), CONNECTION_OK);
	PQclear(PQexec(holder, "SET lock_timeout = 0"));
	PQclear(PQexec(holder, "BEGIN"));
	PGresult *r = PQexec(holder, "SELECT 1 FROM ordertrack.notification_counter FOR UPDATE");
	assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
	PQclear(r);
	send_held(c, "locked");
	PQclear(PQexec(holder, "COMMIT"));
	PQfinish(holder);
	off = expect_stored(d, off, c, "locked", "55P03");

	it_db_command(NULL, "ALTER SYSTEM SET default_transaction_read_only = on", NULL);
	free(it_db_value(NULL, "SELECT pg_reload_conf()::text", NULL));
	it_sleep_ms(300); /* the server's sessions take the reload */
	send_held(c, "readonly");
	it_db_command(NULL, "ALTER SYSTEM RESET default_transaction_read_only", NULL);
	free(it_db_value(NULL, "SELECT pg_reload_conf()::text", NULL));
	expect_stored(d, off, c, "readonly", "25006");

	/* One warning per episode; no line per failed batch or event. */
	assert_int_equal(log_count(d, "msg=\"database failing\""), 3);
	assert_int_equal(log_count(d, "msg=\"batch failed"), 0);
	assert_int_equal(log_count(d, "msg=\"events failed\""), 0);
	assert_int_equal(it_db_rows(db), 3 * STATE_EVENTS);
	it_daemon_stop_clean(d);
}

/* Close a client's socket with a reset (SO_LINGER 0), as a killed process would. */
static void vanish(struct it_client *c)
{
	struct linger lg = {1, 0};
	setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(c->fd);
	c->fd = -1;
	c->eof = true;
}

/*
 * 20 connections stream events; half of them vanish mid-stream (reset or
 * plain close).  The others get every ack, the daemon ends up with no
 * connection open, and (in the sanitizer build) exits without a leak.
 */
static void test_clients_vanish(void **state)
{
	(void)state;
	it_pg_createdb("vanish");
	struct it_config cfg = {.name = "vanish", .dbname = "vanish", .log_level = "info"};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	struct it_client *c[VANISH_CONNS];
	for (int k = 0; k < VANISH_CONNS; k++) {
		c[k] = it_connect(d);
		it_hello(c[k], IT_EXPORTER, IT_TOKEN);
		for (int i = 0; i < VANISH_EVENTS; i++) {
			char id[48], order[32];
			snprintf(id, sizeof(id), "vanish-%02d-%04d", k, i);
			snprintf(order, sizeof(order), "PO-VANISH-%02d", k);
			char *ev = it_event_line(id, "shipment.checkpoint", order, "SH-1");
			it_queue(c[k], ev);
			free(ev);
		}
		c[k]->want = VANISH_EVENTS;
	}
	/* Let the stream start, then drop the odd ones in the middle of it. */
	it_pump(c, VANISH_CONNS, 30);
	for (int k = 1; k < VANISH_CONNS; k += 2) {
		if (k % 4 == 1)
			vanish(c[k]);
		else
			shutdown(c[k]->fd, SHUT_RDWR);
	}
	struct it_client *alive[VANISH_CONNS / 2];
	for (int k = 0; k < VANISH_CONNS; k += 2)
		alive[k / 2] = c[k];
	assert_true(it_pump(alive, VANISH_CONNS / 2, 60000));
	for (int k = 0; k < VANISH_CONNS; k += 2) {
		assert_int_equal(c[k]->n_lines, VANISH_EVENTS);
		for (int i = 0; i < VANISH_EVENTS; i++) {
			char id[48];
			snprintf(id, sizeof(id), "vanish-%02d-%04d", k, i);
			it_check_ack(c[k]->lines[i], id, "stored");
		}
	}
	for (int k = 0; k < VANISH_CONNS; k++)
		it_close(c[k]);
	/*
	 * Every connection the daemon opened, it closed, while it was still
	 * running: the shutdown below logs "connection closed" for any it had
	 * left open, so the closes are counted before it.
	 */
	long long deadline = it_now_ms() + 30000;
	while (count_log_lines(d, "msg=\"connection closed\"", NULL) < VANISH_CONNS &&
	       it_now_ms() < deadline)
		it_sleep_ms(50);
	assert_int_equal(count_log_lines(d, "msg=\"connection opened\"", NULL), VANISH_CONNS);
	assert_int_equal(count_log_lines(d, "msg=\"connection closed\"", NULL), VANISH_CONNS);
	it_daemon_stop_clean(d);
	/* None left for the shutdown to close. */
	assert_int_equal(count_log_lines(d, "msg=\"connection closed\"", NULL), VANISH_CONNS);
	assert_int_equal(count_log_lines(d, "msg=\"connection closed\"", "reason=shutdown"), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_poison_events, it_test_teardown),
	    cmocka_unit_test_teardown(test_clients_vanish, it_test_teardown),
	    cmocka_unit_test_teardown(test_transient_failure, it_test_teardown),
	    cmocka_unit_test_teardown(test_serialization_failure_retried, it_test_teardown),
	    cmocka_unit_test_teardown(test_event_fails_repeatedly, it_test_teardown),
	    cmocka_unit_test_teardown(test_session_killer, it_test_teardown),
	    cmocka_unit_test_teardown(test_lost_before_commit, it_test_teardown),
	    cmocka_unit_test_teardown(test_lost_at_commit, it_test_teardown),
	    cmocka_unit_test_teardown(test_failed_batch_not_left_open, it_test_teardown),
	    /* Last: it makes the whole cluster read-only for a while. */
	    cmocka_unit_test_teardown(test_server_refuses, it_test_teardown),
	};
	it_env_init("faults");
	return it_env_fini(cmocka_run_group_tests(tests, NULL, NULL));
}
