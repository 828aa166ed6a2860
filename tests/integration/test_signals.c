/*
 * test_signals.c - SIGTERM/SIGINT drain and SIGHUP reload of the real daemon.
 *
 * SIGTERM with events in flight must not lose an acked event nor leave a
 * read line unanswered; SIGHUP must apply a good config to new sessions
 * while old ones carry on, and keep the old config when the new one is
 * broken.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <grp.h>
#include <poll.h>
#include <netinet/in.h>
#include <pwd.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

#define TERM_N       2000
#define NEW_EXPORTER "lake-tea"
#define NEW_TOKEN    "lake-tea-0b9e11-token"

/* Send hello as exporter and return the reply line (for expected refusals). */
static char *try_hello(struct it_client *c, const char *exporter, const char *token)
{
	it_sendf(c, "{\"type\":\"hello\",\"exporter\":\"%s\",\"token\":\"%s\"}", exporter, token);
	return it_read_line(c, IT_REPLY_MS);
}

/* SIGTERM right after 2,000 pipelined events: every answer is an ack, every ack a row. */
static void test_sigterm_in_flight(void **state)
{
	char *buf = NULL, *ids[TERM_N];
	size_t len = 0, acked = 0;
	FILE *mem = open_memstream(&buf, &len);
	assert_non_null(mem);
	for (int i = 0; i < TERM_N; i++) {
		char id[32];
		snprintf(id, sizeof(id), "term-%04d", i);
		ids[i] = strdup(id);
		char *ev = it_event_line(id, "shipment.checkpoint", "PO-TERM", "SH-TERM");
		fprintf(mem, "%s\n", ev);
		free(ev);
	}
	fclose(mem);

	it_pg_createdb("sig_term");
	struct it_config cfg = {.name = "sigterm", .dbname = "sig_term"};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	struct it_client *c = it_connect(d);
	it_hello(c, IT_EXPORTER, IT_TOKEN);
	struct it_client *idle = it_connect(d);
	it_hello(idle, IT_EXPORTER2, IT_TOKEN2);

	it_send_raw(c, buf, len);
	off_t off = it_log_offset(d);
	if (kill(d->pid, SIGTERM) != 0)
		it_fail("kill: SIGTERM");

	/* Read to EOF: each reply is the ack of the next event, in order. */
	for (;;) {
		char *line;
		enum it_read r = it_try_read_line(c, IT_STOP_MS, &line);
		if (r == IT_READ_EOF)
			break;
		if (r == IT_READ_TIMEOUT)
			it_fail("after SIGTERM the connection was neither answered nor closed "
			        "within %d ms (%zu acks so far)",
			        IT_STOP_MS, acked);
		if (acked == TERM_N)
			it_fail("more replies than events sent: %s", line);
		it_check_ack(line, ids[acked], "stored");
		acked++;
		free(line);
	}
	it_expect_eof(idle, IT_STOP_MS);
	int st = it_daemon_wait(d, IT_STOP_MS);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		it_fail("daemon should exit 0 after SIGTERM; wait status 0x%x", st);
	fprintf(stderr, "sigterm: %zu of %d events acked before the daemon closed\n", acked,
	        TERM_N);
	it_log_expect(d, off, "msg=draining", 0);
	it_log_expect(d, off, "msg=stopped", 0);

	char *arr = it_pg_array(ids, acked);
	long present = it_db_long("sig_term",
	                          "SELECT count(*) FROM ordertrack.events"
	                          " WHERE exporter = $1 AND event_id = ANY($2::text[])",
	                          IT_EXPORTER, arr, NULL);
	if (present != (long)acked)
		it_fail("%zu events were acked but only %ld of them are in the table", acked,
		        present);
	/* Lines the daemon read were answered, so no row lacks its ack. */
	long rows = it_db_rows("sig_term");
	if (rows != (long)acked)
		it_fail("%ld rows stored but %zu acked: a line was committed without its ack", rows,
		        acked);
	free(arr);
	for (int i = 0; i < TERM_N; i++)
		free(ids[i]);
	free(buf);
}

/* SIGINT stops an idle daemon as cleanly as SIGTERM. */
static void test_sigint_idle(void **state)
{
	struct it_config cfg = {.name = "sigint"};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	struct it_client *c = it_connect(d);
	it_hello(c, IT_EXPORTER, IT_TOKEN);
	int st = it_daemon_stop(d, SIGINT, IT_STOP_MS);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		it_fail("daemon should exit 0 after SIGINT; wait status 0x%x", st);
	it_expect_eof(c, IT_REPLY_MS);
}

/*
 * SIGTERM while a peer reads none of its replies: once the drain's grace
 * is over the daemon closes it all the same (logged, freed), and exits 0.
 * The peer's receive buffer is small and it sends pings until the daemon
 * pauses it for the replies it leaves unread.
 */
static void test_sigterm_unread_replies(void **state)
{
	(void)state;
	struct it_config cfg = {.name = "sigterm_unread"};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	int fd = it_connect_small_rcvbuf(d);
	off_t off = it_log_offset(d);
	char hello[256];
	int n = snprintf(hello, sizeof(hello),
	                 "{\"type\":\"hello\",\"exporter\":\"%s\",\"token\":\"%s\"}\n", IT_EXPORTER,
	                 IT_TOKEN);
	if (send(fd, hello, (size_t)n, 0) != n)
		it_fail("send hello: %s", strerror(errno));
	static const char ping[] = "{\"type\":\"ping\"}\n";
	char pings[1024][sizeof(ping) - 1];
	for (size_t i = 0; i < 1024; i++)
		memcpy(pings[i], ping, sizeof(ping) - 1);
	long long deadline = it_now_ms() + 20000;
	while (it_log_wait(d, off, "msg=\"connection paused\"", 50) < 0) {
		if (it_now_ms() > deadline)
			it_fail("the daemon never paused a peer that reads no replies");
		/* As much as the socket takes now; the rest is not needed. */
		(void)send(fd, pings, sizeof(pings), MSG_DONTWAIT);
	}
	int st = it_daemon_stop(d, SIGTERM, IT_STOP_MS);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		it_fail("daemon should exit 0 after SIGTERM; wait status 0x%x", st);
	if (it_log_wait(d, off, "reason=shutdown lines=", 0) < 0)
		it_fail("the peer that read no replies was not closed at shutdown");
	close(fd);
}

#define LATE_N 1000

/*
 * SIGTERM while a peer is busy elsewhere for a moment: its acks are
 * written, but it takes them only a second later, within the drain's
 * grace, and it sent a last line the drain will not read.  Every stored
 * event must still reach it acked, each ack whole.  Its acks sit in the
 * daemon's socket, not in the daemon's buffer: a drain that took an
 * empty buffer for "read by the peer" closed at once, and closing a
 * socket with a line unread in it resets the connection and throws away
 * what the peer had not received yet.
 */
static void test_sigterm_peer_reads_late(void **state)
{
	(void)state;
	it_pg_createdb("sig_late");
	struct it_config cfg = {.name = "sigterm_late", .dbname = "sig_late"};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	int fd = it_late_reader_send(d, "sig_late", "late", LATE_N);
	off_t off = it_log_offset(d);
	if (kill(d->pid, SIGTERM) != 0)
		it_fail("kill: SIGTERM");
	it_log_expect(d, off, "msg=draining", IT_STOP_MS);
	static const char ping[] = "{\"type\":\"ping\"}\n";
	if (send(fd, ping, sizeof(ping) - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof(ping) - 1))
		it_fail("send ping: %s", strerror(errno));
	it_sleep_ms(1000);

	/* Now read it all: the welcome, then an ack per event, in order. */
	it_late_reader_expect(fd, "late", LATE_N);
	int st = it_daemon_wait(d, IT_STOP_MS);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		it_fail("daemon should exit 0 after SIGTERM; wait status 0x%x", st);
}

/*
 * A peer that stops sending (shutdown) with its acks unread in the
 * daemon's socket, then resets the connection.  The daemon, closing, waits
 * for those acks to be taken with reading off; the reset must end that
 * wait at once: the kernel's count of unacknowledged bytes stays where it
 * was after a reset, and a close that went by it alone held the slot, and
 * its "connection closed" line, until the write deadline (minutes).
 */
static void test_reset_while_closing(void **state)
{
	(void)state;
	it_pg_createdb("reset_closing");
	struct it_config cfg = {.name = "reset_closing", .dbname = "reset_closing"};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	int fd = it_late_reader_send(d, "reset_closing", "rst", LATE_N);
	off_t off = it_log_offset(d);
	if (shutdown(fd, SHUT_WR) != 0)
		it_fail("shutdown: %s", strerror(errno));
	it_sleep_ms(500);
	if (it_log_wait(d, off, "msg=\"connection closed\"", 0) >= 0)
		it_fail("closed before the peer took its acks or reset");
	struct linger reset = {.l_onoff = 1, .l_linger = 0};
	if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset)) != 0)
		it_fail("SO_LINGER: %s", strerror(errno));
	close(fd);
	it_log_expect(d, off, "msg=\"connection closed\"", 5000);
	it_daemon_stop_clean(d);
}

/* SIGHUP with a new exporter: it can say hello; old sessions keep working. */
static void test_sighup_add_exporter(void **state)
{
	struct it_config cfg = {.name = "sighup_add"};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	struct it_client *old = it_connect(d);
	it_hello(old, IT_EXPORTER, IT_TOKEN);

	struct it_client *early = it_connect(d);
	char *line = try_hello(early, NEW_EXPORTER, NEW_TOKEN);
	json_decref(it_check_error(line, NULL, "auth_failed"));
	free(line);

	/* An event half-sent across the reload must still arrive whole. */
	char *ev = it_event_line("hup-old-1", "order.created", "PO-HUP", NULL);
	size_t half = strlen(ev) / 2;
	it_send_raw(old, ev, half);

	cfg.extra[0] = (struct it_exporter){NEW_EXPORTER, "Lake Kivu Tea Estate", NEW_TOKEN};
	cfg.n_extra = 1;
	it_daemon_rewrite(d, &cfg);
	off_t off = it_log_offset(d);
	kill(d->pid, SIGHUP);
	/* The line names what the reload changed. */
	it_log_expect(d, off, "msg=\"config reloaded\"", IT_REPLY_MS);
	it_log_expect(d, off, " changed=exporters", 0);
	assert_true(it_log_wait(d, off, " changed=exporters,", 0) < 0);

	struct it_client *fresh = it_connect(d);
	it_hello(fresh, NEW_EXPORTER, NEW_TOKEN);
	char *ev2 = it_event_line("hup-new-1", "order.created", "PO-HUP", NULL);
	it_send(fresh, ev2);
	it_expect_ack(fresh, "hup-new-1", "stored");
	assert_int_equal(it_db_long(IT_DB,
	                            "SELECT count(*) FROM ordertrack.events"
	                            " WHERE exporter = $1 AND event_id = $2",
	                            NEW_EXPORTER, "hup-new-1", NULL),
	                 1);

	it_send_raw(old, ev + half, strlen(ev) - half);
	it_send_raw(old, "\n", 1);
	it_expect_ack(old, "hup-old-1", "stored");
	it_send(old, "{\"type\":\"ping\"}");
	it_expect_pong(old);

	/* A reload can take an exporter away: andes-cacao is refused from now on. */
	cfg.no_default_exporters = true;
	cfg.extra[1] = (struct it_exporter){IT_EXPORTER, IT_EXPORTER_NAME, IT_TOKEN};
	cfg.n_extra = 2;
	it_daemon_rewrite(d, &cfg);
	off = it_log_offset(d);
	kill(d->pid, SIGHUP);
	it_log_expect(d, off, "msg=\"config reloaded\"", IT_REPLY_MS);
	struct it_client *gone = it_connect(d);
	line = try_hello(gone, IT_EXPORTER2, IT_TOKEN2);
	json_decref(it_check_error(line, NULL, "auth_failed"));
	free(line);
	struct it_client *again = it_connect(d);
	it_hello(again, IT_EXPORTER, IT_TOKEN);
	it_send(old, "{\"type\":\"ping\"}");
	it_expect_pong(old);
	free(ev);
	free(ev2);
	it_daemon_stop_clean(d);
}

/*
 * SIGHUP can change limits: a lower max_line_bytes applies to new lines,
 * and to a line begun that is already too long for it.
 */
static void test_sighup_limits(void **state)
{
	struct it_config cfg = {.name = "sighup_limits", .max_line_bytes = 8192};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	char big[3000];
	memset(big, ' ', sizeof(big));
	memcpy(big, "{\"type\":\"ping\"", 14);
	big[sizeof(big) - 2] = '}';
	big[sizeof(big) - 1] = '\0';

	struct it_client *c = it_connect(d);
	it_hello(c, IT_EXPORTER, IT_TOKEN);
	it_send(c, big);
	it_expect_pong(c);
	/* A line begun and left there, longer than the limit to come. */
	it_send_raw(c, big, 2000);
	it_sleep_ms(100);

	cfg.max_line_bytes = 1024;
	it_daemon_rewrite(d, &cfg);
	off_t off = it_log_offset(d);
	kill(d->pid, SIGHUP);
	it_log_expect(d, off, "msg=\"config reloaded\"", IT_REPLY_MS);
	/* It is too long now: answered at once, not when (or if) it goes on;
	 * its rest up to the newline is skipped, and the connection goes on. */
	json_decref(it_expect_error(c, NULL, "line_too_long"));
	it_send(c, "more of it");
	it_send(c, "{\"type\":\"ping\"}");
	it_expect_pong(c);
	struct it_client *n = it_connect(d);
	it_hello(n, IT_EXPORTER, IT_TOKEN);
	it_send(n, big);
	json_decref(it_expect_error(n, NULL, "line_too_long"));
	it_send(n, "{\"type\":\"ping\"}");
	it_expect_pong(n);
	it_daemon_stop_clean(d);
}

/*
 * A second SIGTERM while the drain waits (PostgreSQL is down, an event is
 * pending) stops the daemon at once, with status 0 and a warning naming
 * what it left: the event gets no ack, since it was never committed.
 */
static void test_sigterm_twice(void **state)
{
	(void)state;
	it_pg_createdb("sig_twice");
	struct it_config cfg = {.name = "sigterm_twice", .dbname = "sig_twice"};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	struct it_client *c = it_connect(d);
	it_hello(c, IT_EXPORTER, IT_TOKEN);
	it_pg_stop("fast");
	off_t off = it_log_offset(d);
	it_send_event(c, "twice-1", "shipment.checkpoint", "PO-TWICE", "SH-TWICE");
	it_sleep_ms(300); /* read, and waiting for the database */
	kill(d->pid, SIGTERM);
	off = it_log_expect(d, off, "msg=draining signal=15 connections=1 pending=1", IT_REPLY_MS);
	it_sleep_ms(500);
	assert_true(it_daemon_alive(d)); /* still waiting for the database */
	kill(d->pid, SIGTERM);
	it_log_expect(d, off, "msg=\"second signal, exiting without draining\" signal=15 pending=1",
	              IT_REPLY_MS);
	long long until = it_now_ms() + IT_REPLY_MS;
	while (it_daemon_alive(d) && it_now_ms() < until)
		it_sleep_ms(20);
	if (it_daemon_alive(d))
		it_fail("the daemon still runs after a second SIGTERM");
	assert_true(WIFEXITED(d->status) && WEXITSTATUS(d->status) == 0);
	char *line;
	if (it_try_read_line(c, IT_REPLY_MS, &line) == IT_READ_LINE)
		it_fail("a reply after the second SIGTERM: %s", line);
	it_pg_start();
	assert_int_equal(it_db_long("sig_twice", "SELECT count(*) FROM ordertrack.events", NULL),
	                 0);
}

/* How many ingest sessions of the daemon's database are open. */
static long ingest_sessions(const char *db)
{
	return it_db_long(db,
	                  "SELECT count(*) FROM pg_stat_activity"
	                  " WHERE datname = $1 AND application_name = 'ordertrackd'",
	                  db, NULL);
}

/*
 * SIGHUP with a restart-only key changed (database.connections) beside a
 * reloadable one (limits.window): the first is named in "config keys need
 * a restart" and not applied (the sessions stay two), the second applied
 * and named in "config reloaded".  The next reload of the same file says
 * again what still needs the restart, and that nothing else changed.
 */
static void test_sighup_restart_keys(void **state)
{
	(void)state;
	const char *db = "sighup_restart";
	it_pg_createdb(db);
	struct it_config cfg = {.name = "sighup_restart", .dbname = db, .db_connections = 2};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	assert_int_equal(ingest_sessions(db), 2);

	cfg.db_connections = 3;
	cfg.window = 64;
	it_daemon_rewrite(d, &cfg);
	for (int round = 0; round < 2; round++) {
		off_t off = it_log_offset(d);
		kill(d->pid, SIGHUP);
		it_log_expect(d, off,
		              "msg=\"config keys need a restart\" keys=database.connections",
		              IT_REPLY_MS);
		it_log_expect(d, off, round == 0 ? "msg=\"config reloaded\" file=" : "changed=-",
		              IT_REPLY_MS);
		if (round == 0)
			it_log_expect(d, off, "changed=limits.window", IT_REPLY_MS);
	}
	it_sleep_ms(500);
	assert_int_equal(ingest_sessions(db), 2);
	struct it_client *c = it_connect(d);
	it_hello(c, IT_EXPORTER, IT_TOKEN);
	it_send(c, "{\"type\":\"ping\"}");
	it_expect_pong(c);
	it_daemon_stop_clean(d);
}

/* SIGHUP with a broken file (syntax, then a bad value) keeps the running config. */
static void test_sighup_broken_config(void **state)
{
	struct it_config cfg = {.name = "sighup_broken"};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	struct it_client *old = it_connect(d);
	it_hello(old, IT_EXPORTER, IT_TOKEN);

	/*
	 * A syntax error, then a well-formed file whose only exporter has a bad
	 * digest, then a conninfo libpq cannot parse: restart-only, but refused
	 * too, or the next restart would retry it for ever.  The reason of each
	 * must name what is wrong.
	 */
	char bad_value[2048];
	snprintf(bad_value, sizeof(bad_value),
	         "listen = [ \"127.0.0.1:0\" ];\n"
	         "database = { conninfo = \"%s\"; };\n"
	         "exporters = ( { id = \"" NEW_EXPORTER "\"; name = \"Lake\";"
	         " token_sha256 = \"not-a-digest\"; } );\n",
	         it_conninfo(NULL));
	const char *broken[] = {
	    "listen = [ \"127.0.0.1:0\" ];\nexporters = ( { id = \"kivu-coffee\"; \n",
	    bad_value,
	    "listen = [ \"127.0.0.1:0\" ];\ndatabase = { conninfo = \"dbnme=ordertrack\"; };\n",
	};
	const char *why[] = {"msg=\"config reload failed\"", "exporters[0].token_sha256",
	                     "database.conninfo: invalid connection option \\\"dbnme\\\""};
	for (size_t i = 0; i < sizeof(broken) / sizeof(broken[0]); i++) {
		it_daemon_rewrite_raw(d, broken[i]);
		off_t off = it_log_offset(d);
		kill(d->pid, SIGHUP);
		off_t end = it_log_expect(d, off, "msg=\"config reload failed\"", IT_REPLY_MS);
		if (it_log_wait(d, off, why[i], 0) != end)
			it_fail("broken config %zu: the reason does not name %s", i, why[i]);
		if (it_log_wait(d, off, "msg=\"config reloaded\"", 0) >= 0)
			it_fail("broken config %zu was reported as reloaded", i);
		if (!it_daemon_alive(d))
			it_fail("the daemon exited on a broken config");

		/* The old exporters are still accepted, the old session still serves. */
		struct it_client *n = it_connect(d);
		it_hello(n, IT_EXPORTER2, IT_TOKEN2);
		char id[32];
		snprintf(id, sizeof(id), "hup-broken-%zu", i);
		char *ev = it_event_line(id, "order.cancelled", "PO-BRK", NULL);
		it_send(old, ev);
		it_expect_ack(old, id, "stored");
		free(ev);
		it_close(n);
	}

	/* A good file afterwards reloads as usual. */
	cfg.extra[0] = (struct it_exporter){NEW_EXPORTER, "Lake Kivu Tea Estate", NEW_TOKEN};
	cfg.n_extra = 1;
	it_daemon_rewrite(d, &cfg);
	off_t off = it_log_offset(d);
	kill(d->pid, SIGHUP);
	it_log_expect(d, off, "msg=\"config reloaded\"", IT_REPLY_MS);
	struct it_client *n = it_connect(d);
	it_hello(n, NEW_EXPORTER, NEW_TOKEN);
	it_daemon_stop_clean(d);
}

/*
 * SIGHUP after a token rotation: the exporter's open session is closed
 * (it authenticated with the old token), the new token works, the old one
 * does not; an operator's subscription and other exporters stay connected.
 */
static void test_sighup_token_rotation(void **state)
{
	(void)state;
	it_pg_createdb("sig_rotate");
	struct it_config cfg = {.name = "sig_rotate", .dbname = "sig_rotate"};
	cfg.extra[0] = (struct it_exporter){NEW_EXPORTER, "Lake Kivu Tea Estate", NEW_TOKEN};
	cfg.n_extra = 1;
	cfg.operators[0] = (struct it_exporter){"ops", "Operations desk", "ops-token-0001"};
	cfg.n_operators = 1;
	struct it_daemon *d = it_daemon_start(&cfg, true);
	struct it_client *tea = it_connect(d);
	it_hello(tea, NEW_EXPORTER, NEW_TOKEN);
	struct it_client *other = it_connect(d);
	it_hello(other, IT_EXPORTER, IT_TOKEN);
	struct it_client *ops = it_connect(d);
	it_hello_operator(ops, "ops", "ops-token-0001");
	it_send(ops, "{\"type\":\"subscribe\",\"after\":0}");
	char *line = it_read_line(ops, IT_REPLY_MS);
	assert_non_null(strstr(line, "\"subscribed\""));
	free(line);

	cfg.extra[0].token = "lake-tea-rotated-token";
	it_daemon_rewrite(d, &cfg);
	off_t off = it_log_offset(d);
	kill(d->pid, SIGHUP);
	it_log_expect(d, off, "msg=\"config reloaded\"", IT_REPLY_MS);
	it_expect_eof(tea, IT_REPLY_MS);
	it_log_expect(d, off, "reason=\"token changed in config\"", IT_REPLY_MS);

	struct it_client *old = it_connect(d);
	char *reply = try_hello(old, NEW_EXPORTER, NEW_TOKEN);
	assert_non_null(strstr(reply, "auth_failed"));
	free(reply);
	struct it_client *fresh = it_connect(d);
	it_hello(fresh, NEW_EXPORTER, "lake-tea-rotated-token");

	/* The others were not touched. */
	it_send(other, "{\"type\":\"ping\"}");
	it_expect_pong(other);
	it_send(ops, "{\"type\":\"ping\"}");
	it_expect_pong(ops);
	it_daemon_stop_clean(d);
}

/*
 * A subscriber has no idle timeout (PROTOCOL.md 7.3), and a reload must not
 * give it one: with a one-second idle timeout, a subscription made before
 * a SIGHUP is still open, and fed, well past a second after it.
 */
static void test_sighup_keeps_subscriber(void **state)
{
	(void)state;
	struct it_config cfg = {.name = "sighup_subscriber", .idle_timeout_s = 1};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	struct it_client *sub = it_connect(d);
	it_hello(sub, IT_EXPORTER, IT_TOKEN);
	/* The database is the other tests' too: only what comes next. */
	long top =
	    it_db_long(NULL, "SELECT coalesce(max(seq), 0) FROM ordertrack.notifications", NULL);
	it_sendf(sub, "{\"type\":\"subscribe\",\"after\":%ld}", top);
	json_t *o = it_read_json(sub, IT_REPLY_MS);
	assert_string_equal(it_json_str(o, "type"), "subscribed");
	json_decref(o);

	off_t off = it_log_offset(d);
	kill(d->pid, SIGHUP);
	it_log_expect(d, off, "msg=\"config reloaded\"", IT_REPLY_MS);
	it_sleep_ms(2500);

	struct it_client *c = it_connect(d);
	it_hello(c, IT_EXPORTER, IT_TOKEN);
	it_send_event(c, "sighup-sub-01", "order.created", "SIGHUP-SUB-1", NULL);
	it_expect_ack(c, "sighup-sub-01", "stored");

	char *line = NULL;
	switch (it_try_read_line(sub, IT_REPLY_MS, &line)) {
	case IT_READ_EOF:
		it_fail("the subscriber was closed after the reload");
	case IT_READ_TIMEOUT:
		it_fail("no notification for the subscriber within %d ms", IT_REPLY_MS);
	case IT_READ_LINE:
		break;
	}
	o = json_loads(line, 0, NULL);
	if (o == NULL || it_json_str(o, "type") == NULL ||
	    strcmp(it_json_str(o, "type"), "notification") != 0 ||
	    it_json_str(o, "order") == NULL || strcmp(it_json_str(o, "order"), "SIGHUP-SUB-1") != 0)
		it_fail("expected the notification of SIGHUP-SUB-1, got %s", line);
	json_decref(o);
	free(line);
	it_daemon_stop_clean(d);
}

/*
 * A user that is a member of a group other than its primary one, found in
 * the group database: its name and that group's id.  False when none is.
 */
static bool user_with_extra_group(char *user, size_t cap, gid_t *gid)
{
	bool found = false;
	setgrent();
	for (struct group *g = getgrent(); g != NULL && !found; g = getgrent()) {
		for (char **m = g->gr_mem; *m != NULL && !found; m++) {
			struct passwd *pw = getpwnam(*m);
			if (pw != NULL && pw->pw_uid != 0 && pw->pw_gid != g->gr_gid) {
				snprintf(user, cap, "%s", *m);
				*gid = g->gr_gid;
				found = true;
			}
		}
	}
	endgrent();
	return found;
}

/* Is gid among the supplementary groups of process pid (/proc/<pid>/status)? */
static bool proc_has_group(pid_t pid, gid_t gid)
{
	char path[64], line[1024];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	bool has = false;
	assert_non_null(f);
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, "Groups:", 7) != 0)
			continue;
		char *save = NULL;
		for (char *t = strtok_r(line + 7, " \t\n", &save); t != NULL;
		     t = strtok_r(NULL, " \t\n", &save))
			has = has || strtoul(t, NULL, 10) == (unsigned long)gid;
	}
	fclose(f);
	return has;
}

/*
 * Started as root with `user` set, the daemon keeps that user's
 * supplementary groups (CONFIG.md, user): a config file readable only by
 * root and one of them (mode 0640) still reloads on SIGHUP once root is
 * gone.
 */
static void test_sighup_as_user_group_file(void **state)
{
	(void)state;
	char user[64];
	gid_t gid = 0;
	if (geteuid() != 0 || !user_with_extra_group(user, sizeof(user), &gid)) {
		print_message("needs root and a user with a supplementary group; skipped\n");
		skip();
	}
	char extra[128];
	snprintf(extra, sizeof(extra), "user = \"%s\";", user);
	struct it_config cfg = {.name = "sighup_user_group", .extra_text = extra};
	/* Not waiting for ready: the cluster's socket is only for its own user. */
	struct it_daemon *d = it_daemon_start(&cfg, false);
	/* Started means listening, which comes before the privileges drop. */
	it_log_expect(d, 0, "msg=\"running as\"", IT_REPLY_MS);
	if (!proc_has_group(d->pid, gid))
		it_fail("running as %s, the daemon lacks its supplementary group %u", user,
		        (unsigned)gid);

	if (chown(d->conf_path, 0, gid) != 0 || chmod(d->conf_path, 0640) != 0)
		it_fail("cannot make %s root:%u 0640", d->conf_path, (unsigned)gid);
	off_t off = it_log_offset(d);
	kill(d->pid, SIGHUP);
	it_log_expect(d, off, "msg=\"config reloaded\"", IT_REPLY_MS);
	it_daemon_stop_clean(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_sigterm_in_flight, it_test_teardown),
	    cmocka_unit_test_teardown(test_sigint_idle, it_test_teardown),
	    cmocka_unit_test_teardown(test_sigterm_unread_replies, it_test_teardown),
	    cmocka_unit_test_teardown(test_sigterm_peer_reads_late, it_test_teardown),
	    cmocka_unit_test_teardown(test_reset_while_closing, it_test_teardown),
	    cmocka_unit_test_teardown(test_sighup_add_exporter, it_test_teardown),
	    cmocka_unit_test_teardown(test_sighup_limits, it_test_teardown),
	    cmocka_unit_test_teardown(test_sighup_restart_keys, it_test_teardown),
	    cmocka_unit_test_teardown(test_sigterm_twice, it_test_teardown),
	    cmocka_unit_test_teardown(test_sighup_broken_config, it_test_teardown),
	    cmocka_unit_test_teardown(test_sighup_token_rotation, it_test_teardown),
	    cmocka_unit_test_teardown(test_sighup_keeps_subscriber, it_test_teardown),
	    cmocka_unit_test_teardown(test_sighup_as_user_group_file, it_test_teardown),
	};
	it_env_init("signals");
	return it_env_fini(cmocka_run_group_tests(tests, NULL, NULL));
}
