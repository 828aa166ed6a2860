/*
 * test_crash.c - the daemon killed with SIGKILL at its crash points
 * (built with -Dfault_points=true): before COMMIT, after COMMIT but before
 * the acks, after the acks.
 *
 * The oracle, for each point: several connections flood numbered events;
 * the daemon dies mid-stream; it is started again and the senders resend
 * every event they sent.  Then every event acked before the crash is in
 * ordertrack.events exactly once, every event is stored in the end, an
 * event acked before the crash is answered "duplicate" on the resend
 * (never stored twice), an unacked one "duplicate" exactly when it was
 * stored before the crash, and nothing is answered with an error.  Killed
 * after COMMIT, some unacked events were stored: their batch committed.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "harness.h"

#define SENDERS    4
#define PER_SENDER 2500

/* Start a daemon whose fault point is point, reached the after-th time. */
static struct it_daemon *start_with_fault(const struct it_config *cfg, const char *point,
                                          const char *after, bool wait_ready)
{
	setenv("OT_FAULT_POINT", point, 1);
	setenv("OT_FAULT_AFTER", after, 1);
	struct it_daemon *d = it_daemon_start(cfg, wait_ready);
	unsetenv("OT_FAULT_POINT");
	unsetenv("OT_FAULT_AFTER");
	return d;
}

/* The id of event i of sender k. */
static void event_id(char *out, size_t cap, const char *point, int k, int i)
{
	snprintf(out, cap, "%s-s%d-%04d", point, k, i);
}

/* The event line for (k, i): each sender works on its own order. */
static char *event_line(const char *point, int k, int i)
{
	char id[64], order[32];
	event_id(id, sizeof(id), point, k, i);
	snprintf(order, sizeof(order), "PO-CRASH-%d", k);
	return it_event_line(id, "shipment.checkpoint", order, "SH-1");
}

/* Open SENDERS connections with every event queued (hello first). */
static void flood(struct it_daemon *d, const char *point, struct it_client **c)
{
	for (int k = 0; k < SENDERS; k++) {
		c[k] = it_connect(d);
		it_hello(c[k], IT_EXPORTER, IT_TOKEN);
		for (int i = 0; i < PER_SENDER; i++) {
			char *ev = event_line(point, k, i);
			it_queue(c[k], ev);
			free(ev);
		}
		c[k]->want = PER_SENDER;
	}
}

/* Crash at point, restart, resend, and check the oracle. */
static void crash_at(const char *point, const char *after)
{
	char db[64];
	snprintf(db, sizeof(db), "crash_%s", point);
	it_pg_createdb(db);
	struct it_config cfg = {
	    .name = db, .dbname = db, .batch_max_events = 50, .log_level = "info"};

	struct it_daemon *d = start_with_fault(&cfg, point, after, true);

	struct it_client *c[SENDERS];
	flood(d, point, c);
	/* Replies until the daemon dies: the pump ends at EOF. */
	it_pump(c, SENDERS, 30000);
	int status = it_daemon_wait(d, 10000);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

	/* What was acked before the crash. */
	bool *acked = calloc(SENDERS * PER_SENDER, sizeof(bool));
	assert_non_null(acked);
	size_t n_acked = 0;
	for (int k = 0; k < SENDERS; k++) {
		for (size_t j = 0; j < c[k]->n_lines; j++) {
			char id[64];
			event_id(id, sizeof(id), point, k, (int)j);
			/* Replies come in order: line j answers event j. */
			it_check_ack(c[k]->lines[j], id, "stored");
			acked[k * PER_SENDER + j] = true;
			n_acked++;
		}
		it_close(c[k]);
	}
	print_message("%s: %zu events acked before the crash\n", point, n_acked);
	assert_true(n_acked < SENDERS * PER_SENDER);
	/* The dead daemon's backends may still be finishing a COMMIT they
	 * had read: a batch that lands after the count below would make an
	 * unacked resend a duplicate the count did not expect. */
	long long deadline = it_now_ms() + 10000;
	while (it_db_long(db,
	                  "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
	                  " AND application_name LIKE 'ordertrackd%'",
	                  NULL) > 0) {
		if (it_now_ms() > deadline)
			it_fail("the killed daemon's sessions were still there after 10 s");
		it_sleep_ms(20);
	}
	/* Every ack is a row, before anything is resent. */
	long rows = it_db_long(db, "SELECT count(*) FROM ordertrack.events", NULL);
	assert_true(rows >= (long)n_acked);
	/* Each committed batch is one transaction: the rows' xmin tell them apart. */
	long batches =
	    it_db_long(db, "SELECT count(DISTINCT xmin::text) FROM ordertrack.events", NULL);
	print_message("%s: %ld batches committed before the crash\n", point, batches);
	/*
	 * The point is reached the after-th time: killed before that batch's
	 * COMMIT was sent, at most after - 1 batches committed; killed after
	 * the after-th COMMIT answered, at least after did (another lane's
	 * COMMIT may have been in flight either way).
	 */
	if (strcmp(point, "before_commit") == 0)
		assert_true(batches <= atol(after) - 1);
	else
		assert_true(batches >= atol(after));

	/* Start again, resend everything, read every answer. */
	struct it_daemon *d2 = it_daemon_start(&cfg, true);
	flood(d2, point, c);
	assert_true(it_pump(c, SENDERS, 60000));
	long dup_unacked = 0;
	for (int k = 0; k < SENDERS; k++) {
		assert_int_equal(c[k]->n_lines, PER_SENDER);
		for (int i = 0; i < PER_SENDER; i++) {
			char id[64];
			event_id(id, sizeof(id), point, k, i);
			const char *line = c[k]->lines[i];
			if (acked[k * PER_SENDER + i]) {
				it_check_ack(line, id, "duplicate");
			} else if (strstr(line, "\"duplicate\"") != NULL) {
				it_check_ack(line, id, "duplicate");
				dup_unacked++;
			} else {
				it_check_ack(line, id, "stored");
			}
		}
		it_close(c[k]);
	}
	print_message("%s: %ld rows before the resend, %ld unacked resends duplicate\n", point,
	              rows, dup_unacked);
	/* An unacked event is a duplicate exactly when it was a row already. */
	assert_int_equal(dup_unacked, rows - (long)n_acked);
	/*
	 * Killed after COMMIT: the batch that committed was never acked, so
	 * some unacked events are rows.  (Before COMMIT there may be such
	 * events too: acks still in the daemon's buffers die with it; the
	 * batch count above tells the two points apart.)
	 */
	if (strcmp(point, "after_commit") == 0)
		assert_true(dup_unacked > 0);
	rows = it_db_long(db, "SELECT count(*) FROM ordertrack.events", NULL);
	assert_int_equal(rows, SENDERS * PER_SENDER);
	free(acked);
	it_daemon_stop_clean(d2);
}

/* Killed after the batch was sent, before COMMIT. */
static void test_crash_before_commit(void **state)
{
	(void)state;
	crash_at("before_commit", "4");
}

/* Killed after COMMIT answered, before the acks were written. */
static void test_crash_after_commit(void **state)
{
	(void)state;
	crash_at("after_commit", "4");
}

/* Killed just after the acks were written. */
static void test_crash_after_acks(void **state)
{
	(void)state;
	crash_at("after_acks", "4");
}

/*
 * Not a crash: the ingest session dropped just after a COMMIT that
 * succeeded, its answer unread (the lose_commit_answer point).  The
 * batch's event is in doubt and answered "stored" on the resend, which
 * finds its order folded already and announces nothing; the batch's
 * notification still gets its status line, once, when a read of the
 * table finds it committed.
 */
static void lost_answer(const char *db, const char *point)
{
	it_pg_createdb(db);
	struct it_config cfg = {.name = db, .dbname = db, .log_level = "info"};
	struct it_daemon *d = start_with_fault(&cfg, point, "1", true);

	struct it_client *c = it_connect(d);
	it_hello(c, IT_EXPORTER, IT_TOKEN);
	off_t off = it_log_offset(d);
	char *ev = it_event_line("doubt-1", "order.created", "PO-DOUBT", NULL);
	it_send(c, ev);
	free(ev);
	it_expect_ack(c, "doubt-1", "stored");
	it_log_expect(d, off, "msg=\"database lost\"", IT_REPLY_MS);
	it_log_expect(d, off, "msg=\"lost batch had committed\" first_seq=1 last_seq=1",
	              IT_REPLY_MS);
	const char *status = "msg=status kind=order.status exporter=" IT_EXPORTER
	                     " order=PO-DOUBT shipment=- from=- to=created event=doubt-1 seq=1";
	off_t after = it_log_expect(d, off, status, IT_REPLY_MS);
	it_sleep_ms(300);
	if (it_log_wait(d, after, "order=PO-DOUBT", 0) >= 0)
		it_fail("PO-DOUBT's notification was announced twice");
	assert_int_equal(it_db_long(db, "SELECT count(*) FROM ordertrack.notifications", NULL), 1);
	assert_int_equal(it_db_long(db, "SELECT count(*) FROM ordertrack.events", NULL), 1);
	it_close(c);
	it_daemon_stop_clean(d);
}

static void test_lost_commit_answer(void **state)
{
	(void)state;
	lost_answer("crash_lost_answer", "lose_commit_answer");
}

/*
 * The same, with the session dropped before the batch's notifications
 * came back (the lose_emit_answer point): they are read from the table
 * by the transaction's id, and get their status line all the same.
 */
static void test_lost_emit_answer(void **state)
{
	(void)state;
	lost_answer("crash_lost_emit", "lose_emit_answer");
}

/* The event line of it_event_line with its occurred_at offset_s from now. */
static char *event_ago(const char *id, const char *type, const char *order, const char *ship,
                       long offset_s)
{
	char when[40];
	it_utc_time(when, sizeof(when), offset_s);
	return it_event_line_at(id, type, order, ship, when);
}

/*
 * An alert check whose session breaks on its way (the break_alerts_session
 * point shuts the socket just after the check is sent, as a network
 * failure would): the server runs and commits it, its answer goes
 * nowhere.  Once the old backend is gone (or idle), its alert is read from
 * the table and gets its msg=status line, once; the checks after it raise
 * nothing new.  The checks start with a reload, after the events are
 * stored, so that the first one raises the alert.
 */
static void test_lost_alerts_answer(void **state)
{
	(void)state;
	const char *db = "crash_lost_alerts";
	it_pg_createdb(db);
	struct it_config cfg = {.name = db,
	                        .dbname = db,
	                        .log_level = "info",
	                        .extra_text = "alerts = { interval_s = 86400; };\n"};
	struct it_daemon *d = start_with_fault(&cfg, "break_alerts_session", "1", true);

	struct it_client *c = it_connect(d);
	it_hello(c, IT_EXPORTER, IT_TOKEN);
	char *evs[] = {
	    event_ago("alert-1", "order.created", "PO-ALERT", NULL, -3 * 3600),
	    event_ago("alert-2", "shipment.booked", "PO-ALERT", "SH-A", -3 * 3600),
	    event_ago("alert-3", "shipment.customs_hold", "PO-ALERT", "SH-A", -2 * 3600),
	};
	static const char *const ids[] = {"alert-1", "alert-2", "alert-3"};
	for (size_t i = 0; i < 3; i++) {
		it_send(c, evs[i]);
		it_expect_ack(c, ids[i], "stored");
		free(evs[i]);
	}
	off_t off = it_log_offset(d);
	cfg.extra_text =
	    "alerts = { interval_s = 1; customs_hold_hours = 1; stale_hours = 8760; };\n";
	it_daemon_rewrite(d, &cfg);
	kill(d->pid, SIGHUP);
	it_log_expect(d, off, "msg=\"config reloaded\"", IT_REPLY_MS);
	it_log_expect(d, off, "msg=\"database lost\" conn=aux", 5000);
	it_log_expect(d, off, "msg=\"lost alert check had committed\"", 5000);
	const char *status = "msg=status kind=alert.customs_dwell exporter=" IT_EXPORTER
	                     " order=PO-ALERT shipment=SH-A from=- to=raised event=-";
	off_t after = it_log_expect(d, off, status, IT_REPLY_MS);
	it_sleep_ms(2500); /* two more checks */
	if (it_log_wait(d, after, "kind=alert.", 0) >= 0)
		it_fail("the lost check's alert was announced twice");
	assert_int_equal(it_db_long(db,
	                            "SELECT count(*) FROM ordertrack.notifications"
	                            " WHERE kind = 'alert.customs_dwell'",
	                            NULL),
	                 1);
	it_close(c);
	it_daemon_stop_clean(d);
}

/*
 * A session cut off while it prepares its statements (the lose_in_prepare
 * point), after "schema ready" but before "database connected": it was
 * never up, so the line is "database unavailable" with the reason, not
 * "database lost"; the next connect works and events are stored.
 */
static void test_lost_in_prepare(void **state)
{
	(void)state;
	const char *db = "crash_lost_prepare";
	it_pg_createdb(db);
	struct it_config cfg = {.name = db, .dbname = db, .log_level = "info", .db_connections = 1};
	struct it_daemon *d = start_with_fault(&cfg, "lose_in_prepare", "1", true);
	it_log_expect(d, 0,
	              "msg=\"database unavailable\" link=1 reason=\"fault point lose_in_prepare\"",
	              IT_REPLY_MS);
	it_log_expect(d, 0, "msg=\"database connected\" link=1", IT_REPLY_MS);
	if (it_log_wait(d, 0, "msg=\"database lost\"", 0) >= 0)
		it_fail("a session cut off before it was up was logged as lost");
	struct it_client *c = it_connect(d);
	it_hello(c, IT_EXPORTER, IT_TOKEN);
	char *ev = it_event_line("prep-1", "order.created", "PO-PREP", NULL);
	it_send(c, ev);
	free(ev);
	it_expect_ack(c, "prep-1", "stored");
	it_close(c);
	it_daemon_stop_clean(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_crash_before_commit, it_test_teardown),
	    cmocka_unit_test_teardown(test_crash_after_commit, it_test_teardown),
	    cmocka_unit_test_teardown(test_crash_after_acks, it_test_teardown),
	    cmocka_unit_test_teardown(test_lost_commit_answer, it_test_teardown),
	    cmocka_unit_test_teardown(test_lost_emit_answer, it_test_teardown),
	    cmocka_unit_test_teardown(test_lost_alerts_answer, it_test_teardown),
	    cmocka_unit_test_teardown(test_lost_in_prepare, it_test_teardown),
	};
	it_env_init("crash");
	return it_env_fini(cmocka_run_group_tests(tests, NULL, NULL));
}
