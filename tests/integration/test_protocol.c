/*
 * test_protocol.c - protocol v1 as a client sees it, against the real daemon
 * and a real database: authentication, ping, stored/duplicate/conflict acks
 * with the rows they leave, every error code, CRLF, split writes, a
 * half-close after an unfinished line, the order of replies to a
 * pipelined mix, and notifications to a subscriber whose events wait.
 *
 * Every test starts its own daemon on the shared "ordertrack" database and
 * uses event ids with its own prefix, so the row checks of one test cannot
 * see another's events.
 */
#include <glob.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "harness.h"

/* Start a daemon with the default config, ready to store events. */
static struct it_daemon *start(const char *name)
{
	struct it_config cfg = {.name = name};
	return it_daemon_start(&cfg, true);
}

/* A connected client that has said hello as IT_EXPORTER. */
static struct it_client *session(struct it_daemon *d)
{
	struct it_client *c = it_connect(d);
	it_hello(c, IT_EXPORTER, IT_TOKEN);
	return c;
}

/* Rows stored for one exporter and event id. */
static long rows_for(const char *exporter, const char *id)
{
	return it_db_long(IT_DB,
	                  "SELECT count(*) FROM ordertrack.events"
	                  " WHERE exporter = $1 AND event_id = $2",
	                  exporter, id, NULL);
}

/* One column of the row of (IT_EXPORTER, id) as text; NULL for SQL NULL. */
static char *column_of(const char *id, const char *expr)
{
	char sql[512];
	snprintf(sql, sizeof(sql),
	         "SELECT (%s)::text FROM ordertrack.events WHERE exporter = $1 AND event_id = $2",
	         expr);
	return it_db_value(IT_DB, sql, IT_EXPORTER, id, NULL);
}

/* Require that the row's column reads want (NULL: SQL NULL). */
static void expect_column(const char *id, const char *expr, const char *want)
{
	char *got = column_of(id, expr);
	if (want == NULL && got != NULL)
		it_fail("event %s: %s should be NULL, is '%s'", id, expr, got);
	if (want != NULL && (got == NULL || strcmp(got, want) != 0))
		it_fail("event %s: %s should be '%s', is '%s'", id, expr, want, got ? got : "NULL");
	free(got);
}

/* An RFC 3339 UTC time hours from now. */
static void utc_from_now(int hours, char *out, size_t cap)
{
	time_t t = time(NULL) + (time_t)hours * 3600;
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* A string of n copies of ch (malloc'd). */
static char *repeat(char ch, size_t n)
{
	char *s = malloc(n + 1);
	assert_non_null(s);
	memset(s, ch, n);
	s[n] = '\0';
	return s;
}

/* Hello with the right exporter and token gets a welcome; so does the second exporter. */
static void test_hello_ok(void **state)
{
	struct it_daemon *d = start("hello_ok");
	struct it_client *a = it_connect(d);
	struct it_client *b = it_connect(d);
	it_hello(a, IT_EXPORTER, IT_TOKEN);
	it_hello(b, IT_EXPORTER2, IT_TOKEN2);
	it_send(a, "{\"type\":\"ping\"}");
	it_expect_pong(a);
	it_daemon_stop_clean(d);
}

/* A wrong token is refused with auth_failed and the connection closed. */
static void test_wrong_token(void **state)
{
	struct it_daemon *d = start("wrong_token");
	struct it_client *c = it_connect(d);
	it_send(c, "{\"type\":\"hello\",\"exporter\":\"" IT_EXPORTER "\",\"token\":\"" IT_TOKEN2
	           "\"}");
	json_decref(it_expect_error(c, NULL, "auth_failed"));
	it_expect_eof(c, IT_REPLY_MS);

	/*
	 * An empty token is a wrong token too.  Refusing it as a malformed hello
	 * (invalid_request) is fair; "say hello first" (auth_required) is not,
	 * since the client did say hello.
	 */
	c = it_connect(d);
	it_send(c, "{\"type\":\"hello\",\"exporter\":\"" IT_EXPORTER "\",\"token\":\"\"}");
	json_t *e = it_read_json(c, IT_REPLY_MS);
	const char *code = it_json_str(e, "code");
	if (code == NULL ||
	    (strcmp(code, "auth_failed") != 0 && strcmp(code, "invalid_request") != 0))
		it_fail(
		    "hello with an empty token: expected auth_failed or invalid_request, got %s",
		    code ? code : "(no code)");
	json_decref(e);
	it_expect_eof(c, IT_REPLY_MS);
	it_daemon_stop_clean(d);
}

/*
 * An event from an operator is answered forbidden, with its id, whether or
 * not it is a valid event (PROTOCOL.md, section 7.1); nothing is stored.
 */
static void test_operator_event_forbidden(void **state)
{
	(void)state;
	it_pg_createdb("op_event");
	struct it_config cfg = {.name = "op_event", .dbname = "op_event"};
	cfg.operators[0] = (struct it_exporter){"ops", "Operations desk", "ops-token-1"};
	cfg.n_operators = 1;
	struct it_daemon *d = it_daemon_start(&cfg, true);
	struct it_client *c = it_connect(d);
	it_hello_operator(c, "ops", "ops-token-1");
	char *ev = it_event_line("op-valid", "order.cancelled", "OPS-1", NULL);
	it_send(c, ev);
	free(ev);
	json_decref(it_expect_error(c, "op-valid", "forbidden"));
	/* An order.created without its lines and buyer: still forbidden. */
	it_send(c,
	        "{\"type\":\"order.created\",\"id\":\"op-broken\",\"occurred_at\":\"" IT_OCCURRED_AT
	        "\",\"order\":\"OPS-2\"}");
	json_t *err = it_expect_error(c, "op-broken", "forbidden");
	assert_string_equal(it_json_str(err, "message"), "operators may only subscribe");
	json_decref(err);
	it_send(c, "{\"type\":\"ping\"}");
	it_expect_pong(c);
	assert_int_equal(it_db_rows("op_event"), 0);
	it_close(c);
	it_daemon_stop_clean(d);
}

/*
 * A reload closes the open connections of an operator removed from the
 * config, and of one whose token was replaced, as it does for exporters
 * (SECURITY.md, "Rotating a token"); an operator left as it was keeps
 * its subscription.
 */
static void test_operator_removed_on_reload(void **state)
{
	(void)state;
	it_pg_createdb("op_reload");
	struct it_config cfg = {.name = "op_reload", .dbname = "op_reload"};
	cfg.operators[0] = (struct it_exporter){"ops-a", "Desk A", "ops-a-token-1"};
	cfg.operators[1] = (struct it_exporter){"ops-b", "Desk B", "ops-b-token-1"};
	cfg.operators[2] = (struct it_exporter){"ops-c", "Desk C", "ops-c-token-1"};
	cfg.n_operators = 3;
	struct it_daemon *d = it_daemon_start(&cfg, true);
	struct it_client *c[3];
	const char *const ids[] = {"ops-a", "ops-b", "ops-c"};
	const char *const tokens[] = {"ops-a-token-1", "ops-b-token-1", "ops-c-token-1"};
	for (int i = 0; i < 3; i++) {
		c[i] = it_connect(d);
		it_hello_operator(c[i], ids[i], tokens[i]);
		it_send(c[i], "{\"type\":\"subscribe\",\"after\":0}");
		char *line = it_read_line(c[i], IT_REPLY_MS);
		assert_non_null(strstr(line, "\"subscribed\""));
		free(line);
	}

	/* ops-a removed, ops-b re-keyed, ops-c as it was. */
	cfg.operators[0] = (struct it_exporter){"ops-b", "Desk B", "ops-b-token-2"};
	cfg.operators[1] = (struct it_exporter){"ops-c", "Desk C", "ops-c-token-1"};
	cfg.n_operators = 2;
	it_daemon_rewrite(d, &cfg);
	off_t off = it_log_offset(d);
	kill(d->pid, SIGHUP);
	it_log_expect(d, off, "msg=\"config reloaded\"", IT_REPLY_MS);
	it_expect_eof(c[0], IT_REPLY_MS);
	it_log_expect(d, off, "operator=ops-a reason=\"operator removed from config\"",
	              IT_REPLY_MS);
	it_expect_eof(c[1], IT_REPLY_MS);
	it_log_expect(d, off, "operator=ops-b reason=\"token changed in config\"", IT_REPLY_MS);
	it_send(c[2], "{\"type\":\"ping\"}");
	it_expect_pong(c[2]);
	for (int i = 0; i < 3; i++)
		it_close(c[i]);
	it_daemon_stop_clean(d);
}

/* An exporter missing from the config is refused like a wrong token. */
static void test_unknown_exporter(void **state)
{
	struct it_daemon *d = start("unknown_exporter");
	struct it_client *c = it_connect(d);
	it_send(c, "{\"type\":\"hello\",\"exporter\":\"lake-tea\",\"token\":\"" IT_TOKEN "\"}");
	json_decref(it_expect_error(c, NULL, "auth_failed"));
	it_expect_eof(c, IT_REPLY_MS);
	it_daemon_stop_clean(d);
}

/* Anything before hello gets auth_required and the connection closed. */
static void test_line_before_hello(void **state)
{
	struct it_daemon *d = start("before_hello");
	struct it_client *c = it_connect(d);
	it_send(c, "{\"type\":\"ping\"}");
	json_decref(it_expect_error(c, NULL, "auth_required"));
	it_expect_eof(c, IT_REPLY_MS);

	char *ev = it_event_line("pre-hello-1", "order.created", "PO-PRE-1", NULL);
	c = it_connect(d);
	it_send(c, ev);
	json_decref(it_expect_error(c, it_id_any, "auth_required"));
	it_expect_eof(c, IT_REPLY_MS);
	free(ev);
	assert_int_equal(rows_for(IT_EXPORTER, "pre-hello-1"), 0);
	it_daemon_stop_clean(d);
}

/* Ping gets pong, several times over. */
static void test_ping_pong(void **state)
{
	struct it_daemon *d = start("ping");
	struct it_client *c = session(d);
	for (int i = 0; i < 3; i++) {
		it_send(c, "{\"type\":\"ping\"}");
		it_expect_pong(c);
	}
	it_send(c, "{ \"type\" : \"ping\" }");
	it_expect_pong(c);
	it_daemon_stop_clean(d);
}

/*
 * A second hello on a welcomed connection, whatever it names (the same
 * exporter, another exporter with its own token, a wrong token, a broken
 * hello): invalid_request with a null id, the connection stays open and
 * its events still belong to the first exporter.
 */
static void test_second_hello(void **state)
{
	struct it_daemon *d = start("second_hello");
	struct it_client *c = session(d);
	off_t off = it_log_offset(d);
	const char *again[] = {
	    "{\"type\":\"hello\",\"exporter\":\"" IT_EXPORTER "\",\"token\":\"" IT_TOKEN "\"}",
	    "{\"type\":\"hello\",\"exporter\":\"" IT_EXPORTER2 "\",\"token\":\"" IT_TOKEN2 "\"}",
	    "{\"type\":\"hello\",\"exporter\":\"" IT_EXPORTER "\",\"token\":\"not-the-token\"}",
	    "{\"type\":\"hello\",\"exporter\":\"" IT_EXPORTER2 "\"}",
	};
	for (size_t i = 0; i < sizeof(again) / sizeof(again[0]); i++) {
		it_send(c, again[i]);
		json_t *err = it_expect_error(c, NULL, "invalid_request");
		assert_true(json_is_null(json_object_get(err, "id")));
		json_decref(err);
		it_send(c, "{\"type\":\"ping\"}");
		it_expect_pong(c);
	}
	char *ev = it_event_line("p-rehello-1", "order.created", "PO-REHELLO", NULL);
	it_send(c, ev);
	free(ev);
	it_expect_ack(c, "p-rehello-1", "stored");
	assert_int_equal(rows_for(IT_EXPORTER, "p-rehello-1"), 1);
	assert_int_equal(rows_for(IT_EXPORTER2, "p-rehello-1"), 0);
	/* Not a failed hello: the wrong token is not held against the address. */
	assert_true(it_log_wait(d, off, "msg=\"hello refused\"", 0) < 0);
	it_daemon_stop_clean(d);
}

/* A stored event acks "stored" and leaves one row with the right columns. */
static void test_event_stored(void **state)
{
	const char *line =
	    "{\"type\":\"shipment.booked\",\"id\":\"p-stored-1\","
	    "\"occurred_at\":\"2026-11-20T09:15:30.250+02:00\","
	    "\"order\":\"PO-2026/0042\",\"shipment\":\"SH-KV-77.1\","
	    "\"mode\":\"sea\",\"carrier\":\"Maersk\",\"tracking\":\"MSKU1234565\","
	    "\"consignee\":\"Hangzhou Roasters Ltd\","
	    "\"eta\":\"2026-12-18T06:00:00+08:00\","
	    "\"location\":{\"code\":\"KEMBA\",\"name\":\"Mombasa\"},"
	    "\"note\":\"two boxes, \\\"keep dry\\\", caf\\u00e9 \u00e0 c\u00f4t\u00e9\","
	    "\"ext\":{\"containers\":[\"MSKU1234565\"],\"weight_kg\":18250.5,"
	    "\"hazmat\":false,\"remark\":null}}";
	struct it_daemon *d = start("stored");
	struct it_client *c = session(d);
	it_send(c, line);
	it_expect_ack(c, "p-stored-1", "stored");

	assert_int_equal(rows_for(IT_EXPORTER, "p-stored-1"), 1);
	expect_column("p-stored-1", "type", "shipment.booked");
	expect_column("p-stored-1", "order_ref", "PO-2026/0042");
	expect_column("p-stored-1", "shipment_ref", "SH-KV-77.1");
	expect_column("p-stored-1", "occurred_at = '2026-11-20T07:15:30.25Z'::timestamptz", "true");
	expect_column("p-stored-1", "received_at BETWEEN now() - interval '5 minutes' AND now()",
	              "true");
	expect_column("p-stored-1", "body", line);
	char *body = column_of("p-stored-1", "body");
	char *eq = it_db_value(IT_DB,
	                       "SELECT (body::jsonb = $3::jsonb)::text FROM ordertrack.events"
	                       " WHERE exporter = $1 AND event_id = $2",
	                       IT_EXPORTER, "p-stored-1", line, NULL);
	if (strcmp(eq, "true") != 0)
		it_fail("stored body differs from the event sent:\n  sent:   %s\n  stored: %s",
		        line, body);
	free(eq);
	free(body);

	/* An order event has no shipment; the column is NULL. */
	char *ev = it_event_line("p-stored-2", "order.created", "PO-2026/0043", NULL);
	it_send(c, ev);
	it_expect_ack(c, "p-stored-2", "stored");
	expect_column("p-stored-2", "shipment_ref", NULL);
	expect_column("p-stored-2", "exporter", IT_EXPORTER);
	free(ev);
	it_daemon_stop_clean(d);
}

/* Decimal numbers are stored as sent: 7.9 stays 7.9, not its nearest double. */
static void test_body_numbers_exact(void **state)
{
	const char *line = "{\"type\":\"order.confirmed\",\"id\":\"p-num-1\","
	                   "\"occurred_at\":\"2026-11-21T10:00:00Z\",\"order\":\"PO-NUM\","
	                   "\"ext\":{\"unit_price\":7.9,\"fx_rate\":0.1,\"moisture\":0.115,"
	                   "\"tare_kg\":1e-7,\"bags\":240,\"total\":1896.0}}";
	struct it_daemon *d = start("numbers");
	struct it_client *c = session(d);
	it_send(c, line);
	it_expect_ack(c, "p-num-1", "stored");
	char *eq = it_db_value(IT_DB,
	                       "SELECT (body::jsonb = $3::jsonb)::text FROM ordertrack.events"
	                       " WHERE exporter = $1 AND event_id = $2",
	                       IT_EXPORTER, "p-num-1", line, NULL);
	if (strcmp(eq, "true") != 0) {
		char *ext = column_of("p-num-1", "body->'ext'");
		it_fail(
		    "numbers changed on the way to the database:\n  sent:   %s\n  stored ext: %s",
		    line, ext);
	}
	free(eq);
	/* Sending it again is still a duplicate, not a conflict. */
	it_send(c, line);
	it_expect_ack(c, "p-num-1", "duplicate");
	it_daemon_stop_clean(d);
}

/*
 * The body is kept byte for byte as sent (key order, spacing, escapes),
 * whether the batch was written by COPY (a new event) or by the INSERT (a
 * retraction always is), and a reformatted resend, which is a duplicate,
 * does not replace it.
 */
static void test_body_kept_as_sent(void **state)
{
	const char *event = "{ \"order\" : \"PO-ASIS\", \"type\":\"order.confirmed\","
	                    "\"id\":\"p-asis-1\",\"occurred_at\":\"2026-11-21T10:00:00Z\","
	                    "\"ext\":{\"z\":1, \"a\":\"caf\\u00e9\", \"n\":1.50}}";
	const char *again = "{\"ext\":{\"a\":\"caf\u00e9\",\"n\":1.50,\"z\":1},"
	                    "\"id\":\"p-asis-1\",\"occurred_at\":\"2026-11-21T10:00:00Z\","
	                    "\"order\":\"PO-ASIS\",\"type\":\"order.confirmed\"}";
	const char *retraction = "{\"type\":\"event.retracted\",  \"id\":\"p-asis-2\","
	                         "\"occurred_at\":\"2026-11-21T11:00:00Z\",\"order\":\"PO-ASIS\","
	                         "\"retracts\":\"p-asis-1\",\"reason\" : \"sent twice\"}";
	struct it_daemon *d = start("as_sent");
	struct it_client *c = session(d);
	it_send(c, event);
	it_expect_ack(c, "p-asis-1", "stored");
	expect_column("p-asis-1", "body", event);
	it_send(c, again);
	it_expect_ack(c, "p-asis-1", "duplicate");
	expect_column("p-asis-1", "body", event);
	it_send(c, retraction);
	it_expect_ack(c, "p-asis-2", "stored");
	expect_column("p-asis-2", "body", retraction);
	it_daemon_stop_clean(d);
}

/* The same event again, however formatted, is a duplicate; ids are per exporter. */
static void test_duplicate(void **state)
{
	struct it_daemon *d = start("duplicate");
	struct it_client *c = session(d);
	it_send(c, "{\"type\":\"order.confirmed\",\"id\":\"p-dup-1\","
	           "\"occurred_at\":\"2026-11-21T10:00:00Z\",\"order\":\"PO-D1\","
	           "\"ext\":{\"incoterm\":\"FOB\",\"port\":\"Mombasa\"}}");
	it_expect_ack(c, "p-dup-1", "stored");
	it_send(c, "{ \"ext\" : { \"port\" : \"Mombasa\" , \"incoterm\" : \"FOB\" } ,"
	           "  \"order\":\"PO-D1\",   \"occurred_at\" : \"2026-11-21T10:00:00Z\","
	           "\"id\":\"p-dup-1\", \"type\":\"order.confirmed\" }");
	it_expect_ack(c, "p-dup-1", "duplicate");
	assert_int_equal(rows_for(IT_EXPORTER, "p-dup-1"), 1);

	/* From a fresh connection too: the check is in the database, not the session. */
	struct it_client *c2 = session(d);
	it_send(c2, "{\"type\":\"order.confirmed\",\"id\":\"p-dup-1\","
	            "\"occurred_at\":\"2026-11-21T10:00:00Z\",\"order\":\"PO-D1\","
	            "\"ext\":{\"incoterm\":\"FOB\",\"port\":\"Mombasa\"}}");
	it_expect_ack(c2, "p-dup-1", "duplicate");

	/* Another exporter may use the same id: a different event. */
	struct it_client *o = it_connect(d);
	it_hello(o, IT_EXPORTER2, IT_TOKEN2);
	it_send(o, "{\"type\":\"order.confirmed\",\"id\":\"p-dup-1\","
	           "\"occurred_at\":\"2026-11-21T10:00:00Z\",\"order\":\"PO-D1\","
	           "\"ext\":{\"incoterm\":\"FOB\",\"port\":\"Mombasa\"}}");
	it_expect_ack(o, "p-dup-1", "stored");
	assert_int_equal(rows_for(IT_EXPORTER, "p-dup-1"), 1);
	assert_int_equal(rows_for(IT_EXPORTER2, "p-dup-1"), 1);
	it_daemon_stop_clean(d);
}

/* The same id with different content is a conflict and the row is untouched. */
static void test_conflict(void **state)
{
	struct it_daemon *d = start("conflict");
	struct it_client *c = session(d);
	char *ev = it_event_line("p-conf-1", "order.created", "PO-C1", NULL);
	it_send(c, ev);
	it_expect_ack(c, "p-conf-1", "stored");
	char *other = it_event_line("p-conf-1", "order.created", "PO-C2", NULL);
	it_send(c, other);
	json_decref(it_expect_error(c, "p-conf-1", "conflict"));
	/* A different type only, or one more optional field, is a different content too. */
	char *cancelled = it_event_line("p-conf-1", "order.cancelled", "PO-C1", NULL);
	it_send(c, cancelled);
	json_decref(it_expect_error(c, "p-conf-1", "conflict"));
	char *noted = it_event_line("p-conf-1", "order.created", "PO-C1", NULL);
	size_t nl = strlen(noted);
	noted[nl - 1] = '\0'; /* drop the closing brace, add a note */
	it_sendf(c, "%s,\"note\":\"changed\"}", noted);
	json_decref(it_expect_error(c, "p-conf-1", "conflict"));
	free(noted);
	assert_int_equal(rows_for(IT_EXPORTER, "p-conf-1"), 1);
	expect_column("p-conf-1", "order_ref", "PO-C1");
	expect_column("p-conf-1", "type", "order.created");

	/* The connection carries on. */
	it_send(c, ev);
	it_expect_ack(c, "p-conf-1", "duplicate");
	free(ev);
	free(other);
	free(cancelled);
	it_daemon_stop_clean(d);
}

/* Broken JSON and empty lines are malformed_json; the connection stays usable. */
static void test_malformed_json(void **state)
{
	static const char *const bad[] = {
	    "{\"type\":\"ping\"",
	    "",
	    "not json at all",
	    "{\"type\":\"ping\"}}",
	    "{'type':'ping'}",
	    "{\"type\":\"ping\",\"type\":\"ping\"}",
	    "42",
	    "[{\"type\":\"ping\"}]",
	    "\"ping\"",
	};
	struct it_daemon *d = start("malformed");
	struct it_client *c = session(d);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		it_send(c, bad[i]);
		json_decref(it_expect_error(c, NULL, "malformed_json"));
	}
	it_send(c, "{\"type\":\"ping\"}");
	it_expect_pong(c);
	it_daemon_stop_clean(d);
}

/* One invalid event: the line, the id the error should carry, the field to name. */
struct bad_event {
	const char *line;
	const char *id; /* NULL: JSON null; it_id_any: either */
	const char *field;
};

/* invalid_event names the field at fault for id, occurred_at, order and shipment. */
static void test_invalid_event(void **state)
{
	char future[64], line_future[256];
	char *long_id = repeat('a', 129), *long_ref = repeat('r', 65);
	char line_long_id[512], line_long_order[512], line_long_ship[512];

	utc_from_now(48, future, sizeof(future));
	snprintf(line_future, sizeof(line_future),
	         "{\"type\":\"order.confirmed\",\"id\":\"p-inv-future\",\"occurred_at\":\"%s\","
	         "\"order\":\"PO-1\"}",
	         future);
	snprintf(line_long_id, sizeof(line_long_id),
	         "{\"type\":\"order.confirmed\",\"id\":\"%s\",\"occurred_at\":\"" IT_OCCURRED_AT
	         "\",\"order\":\"PO-1\"}",
	         long_id);
	snprintf(line_long_order, sizeof(line_long_order),
	         "{\"type\":\"order.confirmed\",\"id\":\"p-inv-lorder\",\"occurred_at\":"
	         "\"" IT_OCCURRED_AT "\",\"order\":\"%s\"}",
	         long_ref);
	snprintf(line_long_ship, sizeof(line_long_ship),
	         "{\"type\":\"shipment.departed\",\"id\":\"p-inv-lship\",\"occurred_at\":"
	         "\"" IT_OCCURRED_AT "\",\"order\":\"PO-1\",\"shipment\":\"%s\"}",
	         long_ref);
#define EV(fields)   "{\"type\":\"order.confirmed\"," fields "}"
#define SHIP(fields) "{\"type\":\"shipment.departed\"," fields "}"
#define AT           "\"occurred_at\":\"" IT_OCCURRED_AT "\""
	const struct bad_event cases[] = {
	    {EV(AT ",\"order\":\"PO-1\""), NULL, "id"},
	    {EV("\"id\":\"\"," AT ",\"order\":\"PO-1\""), it_id_any, "id"},
	    {EV("\"id\":\"bad id\"," AT ",\"order\":\"PO-1\""), it_id_any, "id"},
	    {EV("\"id\":\"bad#id\"," AT ",\"order\":\"PO-1\""), it_id_any, "id"},
	    {EV("\"id\":17," AT ",\"order\":\"PO-1\""), it_id_any, "id"},
	    {line_long_id, it_id_any, "id"},
	    {EV("\"id\":\"p-inv-noat\",\"order\":\"PO-1\""), "p-inv-noat", "occurred_at"},
	    {EV("\"id\":\"p-inv-nooff\",\"occurred_at\":\"2026-11-20T09:15:30\","
	        "\"order\":\"PO-1\""),
	     "p-inv-nooff", "occurred_at"},
	    {EV("\"id\":\"p-inv-word\",\"occurred_at\":\"yesterday\",\"order\":\"PO-1\""),
	     "p-inv-word", "occurred_at"},
	    {EV("\"id\":\"p-inv-feb30\",\"occurred_at\":\"2026-02-30T10:00:00Z\","
	        "\"order\":\"PO-1\""),
	     "p-inv-feb30", "occurred_at"},
	    {EV("\"id\":\"p-inv-num\",\"occurred_at\":1763630130,\"order\":\"PO-1\""), "p-inv-num",
	     "occurred_at"},
	    {line_future, "p-inv-future", "occurred_at"},
	    {EV("\"id\":\"p-inv-noorder\"," AT), "p-inv-noorder", "order"},
	    {EV("\"id\":\"p-inv-eorder\"," AT ",\"order\":\"\""), "p-inv-eorder", "order"},
	    {EV("\"id\":\"p-inv-horder\"," AT ",\"order\":\"PO#1\""), "p-inv-horder", "order"},
	    {EV("\"id\":\"p-inv-norder\"," AT ",\"order\":42"), "p-inv-norder", "order"},
	    {line_long_order, "p-inv-lorder", "order"},
	    {SHIP("\"id\":\"p-inv-noship\"," AT ",\"order\":\"PO-1\""), "p-inv-noship", "shipment"},
	    {SHIP("\"id\":\"p-inv-sship\"," AT ",\"order\":\"PO-1\",\"shipment\":\"SH 1\""),
	     "p-inv-sship", "shipment"},
	    {SHIP("\"id\":\"p-inv-eship\"," AT ",\"order\":\"PO-1\",\"shipment\":\"\""),
	     "p-inv-eship", "shipment"},
	    {line_long_ship, "p-inv-lship", "shipment"},
	    {EV("\"id\":\"p-inv-oship\"," AT ",\"order\":\"PO-1\",\"shipment\":\"SH-1\""),
	     "p-inv-oship", "shipment"},
	    {EV("\"id\":\"p-inv-typo\",\"ocurred_at\":\"" IT_OCCURRED_AT "\",\"order\":\"PO-1\""),
	     "p-inv-typo", "ocurred_at"},
	};
#undef EV
#undef SHIP
#undef AT
	struct it_daemon *d = start("invalid_event");
	struct it_client *c = session(d);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		it_send(c, cases[i].line);
		json_t *e = it_expect_error(c, cases[i].id, "invalid_event");
		const char *msg = it_json_str(e, "message");
		if (!it_has_word(msg, cases[i].field))
			it_fail("invalid_event for %s should name the field '%s'; message: %s",
			        cases[i].line, cases[i].field, msg);
		json_decref(e);
	}
	assert_int_equal(it_db_long(IT_DB,
	                            "SELECT count(*) FROM ordertrack.events"
	                            " WHERE event_id LIKE 'p-inv-%'",
	                            NULL),
	                 0);
	it_send(c, "{\"type\":\"ping\"}");
	it_expect_pong(c);
	free(long_id);
	free(long_ref);
	it_daemon_stop_clean(d);
}

/* Values exactly at the limits are accepted: 128-char id, 64-char refs, +23 h. */
static void test_field_limits_accepted(void **state)
{
	char *id = repeat('I', 128), *order = repeat('O', 64), *ship = repeat('S', 64);
	char soon[64];
	struct it_daemon *d = start("limits_ok");
	struct it_client *c = session(d);

	id[0] = 'p';
	memcpy(id + 1, "-lim.A_b:c-", 11);
	char *ev = it_event_line(id, "shipment.picked_up", order, ship);
	it_send(c, ev);
	it_expect_ack(c, id, "stored");
	assert_int_equal(rows_for(IT_EXPORTER, id), 1);
	free(ev);

	utc_from_now(23, soon, sizeof(soon));
	it_sendf(c,
	         "{\"type\":\"shipment.arrived\",\"id\":\"p-lim-soon\",\"occurred_at\":\"%s\","
	         "\"order\":\"a.b_c/d-e\",\"shipment\":\"x\"}",
	         soon);
	it_expect_ack(c, "p-lim-soon", "stored");
	/* Every type of protocol v1 is accepted. */
	static const char *const types[] = {
	    "order.created",           "order.confirmed",
	    "order.cancelled",         "shipment.booked",
	    "shipment.picked_up",      "shipment.export_cleared",
	    "shipment.departed",       "shipment.arrived",
	    "shipment.import_cleared", "shipment.out_for_delivery",
	    "shipment.delivered",      "shipment.checkpoint",
	    "shipment.customs_hold",   "shipment.customs_released",
	    "shipment.exception",      "shipment.exception_resolved",
	    "shipment.eta_changed",    "document.issued",
	    "event.retracted",
	};
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		char tid[64];
		snprintf(tid, sizeof(tid), "p-lim-type-%zu", i);
		bool with_ship = strncmp(types[i], "shipment.", 9) == 0 ||
		                 strcmp(types[i], "document.issued") == 0;
		ev = it_event_line(tid, types[i], "PO-T", with_ship ? "SH-T" : NULL);
		it_send(c, ev);
		it_expect_ack(c, tid, "stored");
		free(ev);
	}
	free(id);
	free(order);
	free(ship);
	it_daemon_stop_clean(d);
}

/* A type outside protocol v1 is unknown_type, carrying the id. */
static void test_unknown_type(void **state)
{
	struct it_daemon *d = start("unknown_type");
	struct it_client *c = session(d);
	char *ev = it_event_line("p-unk-1", "order.teleported", "PO-U1", NULL);
	it_send(c, ev);
	json_decref(it_expect_error(c, "p-unk-1", "unknown_type"));
	free(ev);
	ev = it_event_line("p-unk-2", "shipment.Delivered", "PO-U1", "SH-1");
	it_send(c, ev);
	json_decref(it_expect_error(c, "p-unk-2", "unknown_type"));
	free(ev);
	assert_int_equal(rows_for(IT_EXPORTER, "p-unk-1") + rows_for(IT_EXPORTER, "p-unk-2"), 0);
	it_send(c, "{\"type\":\"ping\"}");
	it_expect_pong(c);
	it_daemon_stop_clean(d);
}

/* Requests of the wrong shape: no type, ping with extra fields. */
static void test_invalid_request(void **state)
{
	struct it_daemon *d = start("invalid_request");
	struct it_client *c = session(d);
	it_send(c, "{\"order\":\"PO-1\",\"occurred_at\":\"" IT_OCCURRED_AT "\"}");
	json_decref(it_expect_error(c, NULL, "invalid_request"));
	it_send(c, "{\"type\":\"ping\",\"extra\":true}");
	json_decref(it_expect_error(c, NULL, "invalid_request"));
	it_send(c, "{}");
	json_decref(it_expect_error(c, NULL, "invalid_request"));
	it_send(c, "{\"type\":\"ping\"}");
	it_expect_pong(c);
	it_daemon_stop_clean(d);
}

/* An event line padded with spaces to exactly len bytes (malloc'd). */
static char *padded_event(const char *id, size_t len)
{
	char *ev = it_event_line(id, "order.created", "PO-LONG", NULL);
	size_t n = strlen(ev);
	assert_true(n + 1 < len);
	char *line = malloc(len + 1);
	assert_non_null(line);
	line[0] = '{';
	memset(line + 1, ' ', len - n);
	memcpy(line + 1 + (len - n), ev + 1, n - 1);
	line[len] = '\0';
	assert_int_equal(strlen(line), len);
	free(ev);
	return line;
}

/* A line over max_line_bytes is line_too_long; the next line works; the limit is inclusive. */
static void test_line_too_long(void **state)
{
	struct it_config cfg = {.name = "line_too_long", .max_line_bytes = 1024};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	struct it_client *c = session(d);

	char *over = padded_event("p-long-over", 1025);
	it_send(c, over);
	json_decref(it_expect_error(c, NULL, "line_too_long"));
	char *ev = it_event_line("p-long-after", "order.created", "PO-LONG", NULL);
	it_send(c, ev);
	it_expect_ack(c, "p-long-after", "stored");

	char *exact = padded_event("p-long-exact", 1024);
	it_send(c, exact);
	it_expect_ack(c, "p-long-exact", "stored");

	/* A megabyte without a newline costs nothing and is one error. */
	char *huge = repeat('x', 1 << 20);
	it_send(c, huge);
	json_decref(it_expect_error(c, NULL, "line_too_long"));
	it_send(c, "{\"type\":\"ping\"}");
	it_expect_pong(c);
	assert_int_equal(rows_for(IT_EXPORTER, "p-long-over"), 0);
	free(over);
	free(ev);
	free(exact);
	free(huge);
	it_daemon_stop_clean(d);
}

/* The connection beyond max_connections gets too_many_connections and is closed. */
static void test_too_many_connections(void **state)
{
	struct it_config cfg = {.name = "too_many", .max_connections = 2};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	struct it_client *a = session(d);
	struct it_client *b = session(d);

	struct it_client *x = it_connect(d);
	json_decref(it_expect_error(x, NULL, "too_many_connections"));
	it_expect_eof(x, IT_REPLY_MS);
	it_close(x);

	/* The two admitted ones still work. */
	it_send(b, "{\"type\":\"ping\"}");
	it_expect_pong(b);

	/* Once one leaves, a new connection is admitted (the close may take a moment). */
	it_close(a);
	long long deadline = it_now_ms() + 5000;
	for (;;) {
		char *line;
		struct it_client *n = it_connect(d);
		it_send(n, "{\"type\":\"hello\",\"exporter\":\"" IT_EXPORTER
		           "\",\"token\":\"" IT_TOKEN "\"}");
		if (it_try_read_line(n, IT_REPLY_MS, &line) != IT_READ_LINE)
			it_fail("no reply to hello on a connection after one was freed");
		if (strstr(line, "\"welcome\"") != NULL) {
			free(line);
			break;
		}
		if (strstr(line, "too_many_connections") == NULL || it_now_ms() > deadline)
			it_fail("after closing one of 2 connections, a new one got: %s", line);
		free(line);
		it_close(n);
		it_sleep_ms(50);
	}
	it_send(b, "{\"type\":\"ping\"}");
	it_expect_pong(b);
	it_daemon_stop_clean(d);
}

/* CRLF line endings work for hello, ping and events, and no \r gets stored. */
static void test_crlf(void **state)
{
	struct it_daemon *d = start("crlf");
	struct it_client *c = it_connect(d);
	const char *hello =
	    "{\"type\":\"hello\",\"exporter\":\"" IT_EXPORTER "\",\"token\":\"" IT_TOKEN "\"}\r\n";
	it_send_raw(c, hello, strlen(hello));
	json_t *w = it_read_json(c, IT_REPLY_MS);
	assert_string_equal(it_json_str(w, "type"), "welcome");
	json_decref(w);
	it_send_raw(c, "{\"type\":\"ping\"}\r\n", 17);
	it_expect_pong(c);
	char *ev = it_event_line("p-crlf-1", "shipment.arrived", "PO-CRLF", "SH-CRLF");
	char line[512];
	snprintf(line, sizeof(line), "%s\r\n", ev);
	it_send_raw(c, line, strlen(line));
	it_expect_ack(c, "p-crlf-1", "stored");
	expect_column("p-crlf-1", "shipment_ref", "SH-CRLF");
	char *eq = it_db_value(IT_DB,
	                       "SELECT (body::jsonb = $3::jsonb)::text FROM ordertrack.events"
	                       " WHERE exporter = $1 AND event_id = $2",
	                       IT_EXPORTER, "p-crlf-1", ev, NULL);
	assert_string_equal(eq, "true");
	free(eq);
	/* The same event with \n only is the same event. */
	it_send(c, ev);
	it_expect_ack(c, "p-crlf-1", "duplicate");
	free(ev);
	it_daemon_stop_clean(d);
}

/* An event written one byte at a time is framed like any other. */
static void test_split_writes(void **state)
{
	struct it_daemon *d = start("split");
	struct it_client *c = session(d);
	char *ev = it_event_line("p-split-1", "document.issued", "PO-SPLIT", NULL);
	size_t n = strlen(ev);
	for (size_t i = 0; i < n; i++) {
		it_send_raw(c, ev + i, 1);
		if (i % 16 == 0)
			it_sleep_ms(2);
	}
	it_send_raw(c, "\n", 1);
	it_expect_ack(c, "p-split-1", "stored");
	free(ev);
	it_daemon_stop_clean(d);
}

/*
 * Half-close after a last line without its newline: the complete lines
 * before it are answered in order, the unfinished one (a whole event but
 * for the "\n") gets no reply and is not stored, and the daemon closes.
 */
static void test_half_close_partial_line(void **state)
{
	struct it_daemon *d = start("half_partial");
	struct it_client *c = session(d);
	off_t off = it_log_offset(d);
	char *done = it_event_line("p-half-1", "order.created", "PO-HALF", NULL);
	char *cut = it_event_line("p-half-2", "order.confirmed", "PO-HALF", NULL);
	char *all;
	int len = asprintf(&all, "{\"type\":\"ping\"}\n%s\n{\"type\":\"ping\"}\n%s", done, cut);
	assert_true(len > 0);
	it_send_raw(c, all, (size_t)len);
	assert_int_equal(shutdown(c->fd, SHUT_WR), 0);
	it_expect_pong(c);
	it_expect_ack(c, "p-half-1", "stored");
	it_expect_pong(c);
	it_expect_eof(c, IT_REPLY_MS);
	it_log_expect(d, off, "reason=\"peer closed\"", IT_REPLY_MS);
	assert_int_equal(rows_for(IT_EXPORTER, "p-half-1"), 1);
	assert_int_equal(rows_for(IT_EXPORTER, "p-half-2"), 0);
	free(all);
	free(cut);
	free(done);
	it_daemon_stop_clean(d);
}

/*
 * An event PostgreSQL refuses (here a CHECK the test adds for one id) gets
 * invalid_event whose message has the form PROTOCOL.md documents for it:
 * "refused by the database: " and PostgreSQL's reason, naming no field.
 */
static void test_refused_by_database(void **state)
{
	it_db_command(IT_DB,
	              "ALTER TABLE ordertrack.events ADD CONSTRAINT test_dbref"
	              " CHECK (event_id <> 'p-dbref-bad')",
	              NULL);
	struct it_daemon *d = start("dbref");
	struct it_client *c = session(d);
	char *ev = it_event_line("p-dbref-bad", "order.created", "PO-DBREF", NULL);
	it_send(c, ev);
	free(ev);
	json_t *err = it_expect_error(c, "p-dbref-bad", "invalid_event");
	const char *msg = it_json_str(err, "message");
	static const char prefix[] = "refused by the database: ";
	assert_non_null(msg);
	assert_int_equal(strncmp(msg, prefix, sizeof(prefix) - 1), 0);
	assert_non_null(strstr(msg, "test_dbref"));
	json_decref(err);
	it_db_command(IT_DB, "ALTER TABLE ordertrack.events DROP CONSTRAINT test_dbref", NULL);
	/* Section 4 says what the message looks like (lines rewrapped as one). */
	char *doc = it_source_file("docs/PROTOCOL.md");
	for (char *p = doc; *p != '\0'; p++) {
		if (*p == '\n')
			*p = ' ';
	}
	if (strstr(doc, "`refused by the database: ") == NULL)
		it_fail("PROTOCOL.md does not document the message \"%s...\"", prefix);
	free(doc);
	it_daemon_stop_clean(d);
}

/* One write of good and bad lines: one reply per line, in the order sent. */
static void test_pipelined_mix(void **state)
{
	char *ev1 = it_event_line("p-mix-1", "order.created", "PO-MIX", NULL);
	char *ev3 = it_event_line("p-mix-3", "order.created", "PO MIX", NULL);
	char *ev4 = it_event_line("p-mix-4", "order.shipped", "PO-MIX", NULL);
	char *ev5 = it_event_line("p-mix-5", "shipment.booked", "PO-MIX", "SH-MIX");
	char *ev7 = it_event_line("p-mix-7", "shipment.delivered", "PO-MIX", "SH-MIX");
	char *all;
	int n =
	    asprintf(&all, "%s\n{\"type\":\n{\"type\":\"ping\"}\n%s\n%s\n%s\n{\"order\":1}\n%s\n",
	             ev1, ev3, ev4, ev5, ev7);
	assert_true(n > 0);

	struct it_daemon *d = start("mix");
	struct it_client *c = session(d);
	it_send_raw(c, all, (size_t)n);
	it_expect_ack(c, "p-mix-1", "stored");
	json_decref(it_expect_error(c, NULL, "malformed_json"));
	it_expect_pong(c);
	json_decref(it_expect_error(c, "p-mix-3", "invalid_event"));
	json_decref(it_expect_error(c, "p-mix-4", "unknown_type"));
	it_expect_ack(c, "p-mix-5", "stored");
	json_decref(it_expect_error(c, NULL, "invalid_request"));
	it_expect_ack(c, "p-mix-7", "stored");
	assert_int_equal(it_db_long(IT_DB,
	                            "SELECT count(*) FROM ordertrack.events"
	                            " WHERE event_id LIKE 'p-mix-%'",
	                            NULL),
	                 3);
	free(all);
	free(ev1);
	free(ev3);
	free(ev4);
	free(ev5);
	free(ev7);
	it_daemon_stop_clean(d);
}

/* A duplicate and a conflict inside one pipeline, before the first is committed. */
static void test_pipelined_duplicate_conflict(void **state)
{
	char *a = it_event_line("p-pdc-a", "order.created", "PO-A", NULL);
	char *b1 = it_event_line("p-pdc-b", "order.created", "PO-B1", NULL);
	char *b2 = it_event_line("p-pdc-b", "order.created", "PO-B2", NULL);
	char *all;
	int n = asprintf(&all, "%s\n%s\n%s\n%s\n%s\n", a, a, b1, b2, b1);
	assert_true(n > 0);

	struct it_daemon *d = start("pipe_dup");
	struct it_client *c = session(d);
	it_send_raw(c, all, (size_t)n);
	it_expect_ack(c, "p-pdc-a", "stored");
	it_expect_ack(c, "p-pdc-a", "duplicate");
	it_expect_ack(c, "p-pdc-b", "stored");
	json_decref(it_expect_error(c, "p-pdc-b", "conflict"));
	it_expect_ack(c, "p-pdc-b", "duplicate");
	assert_int_equal(rows_for(IT_EXPORTER, "p-pdc-a"), 1);
	assert_int_equal(rows_for(IT_EXPORTER, "p-pdc-b"), 1);
	expect_column("p-pdc-b", "order_ref", "PO-B1");
	free(all);
	free(a);
	free(b1);
	free(b2);
	it_daemon_stop_clean(d);
}

/* The lines of a file (malloc'd array of malloc'd strings); fails the test if unreadable. */
static char **read_lines(const char *path, size_t *n)
{
	FILE *f = fopen(path, "r");
	char **lines = NULL, *buf = NULL;
	size_t cap = 0, bufcap = 0;
	ssize_t len;

	if (f == NULL)
		it_fail("open %s", path);
	*n = 0;
	while ((len = getline(&buf, &bufcap, f)) > 0) {
		while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
			buf[--len] = '\0';
		if (len == 0)
			continue;
		if (*n == cap) {
			cap = cap ? 2 * cap : 64;
			lines = realloc(lines, cap * sizeof(*lines));
			assert_non_null(lines);
		}
		lines[(*n)++] = strdup(buf);
	}
	free(buf);
	fclose(f);
	return lines;
}

/*
 * The demo scenarios of tests/data, replayed as their exporters would send
 * them: every event stored with its body intact, and a second replay all
 * duplicates.
 */
static void test_scenario_replay(void **state)
{
	const char *root = getenv("OT_SOURCE_ROOT");
	char pattern[PATH_MAX];
	glob_t g;

	if (root == NULL)
		it_fail("OT_SOURCE_ROOT is not set");
	snprintf(pattern, sizeof(pattern), "%s/tests/data/scenario-*.jsonl", root);
	if (glob(pattern, 0, NULL, &g) != 0 || g.gl_pathc == 0)
		it_fail("no scenario files match %s", pattern);

	/* The exporter of scenario-<exporter>.jsonl; those not configured already get a token. */
	char exporters[IT_MAX_EXTRA + 2][64], tokens[IT_MAX_EXTRA + 2][96];
	struct it_config cfg = {.name = "scenarios"};
	size_t nfiles = g.gl_pathc < IT_MAX_EXTRA ? g.gl_pathc : IT_MAX_EXTRA;
	for (size_t i = 0; i < nfiles; i++) {
		const char *base = strrchr(g.gl_pathv[i], '/') + 1 + strlen("scenario-");
		snprintf(exporters[i], sizeof(exporters[i]), "%.*s",
		         (int)(strlen(base) - strlen(".jsonl")), base);
		if (strcmp(exporters[i], IT_EXPORTER) == 0) {
			snprintf(tokens[i], sizeof(tokens[i]), "%s", IT_TOKEN);
		} else if (strcmp(exporters[i], IT_EXPORTER2) == 0) {
			snprintf(tokens[i], sizeof(tokens[i]), "%s", IT_TOKEN2);
		} else {
			snprintf(tokens[i], sizeof(tokens[i]), "%s-scenario-token", exporters[i]);
			cfg.extra[cfg.n_extra++] =
			    (struct it_exporter){exporters[i], exporters[i], tokens[i]};
		}
	}
	struct it_daemon *d = it_daemon_start(&cfg, true);

	for (size_t i = 0; i < nfiles; i++) {
		size_t n;
		char **lines = read_lines(g.gl_pathv[i], &n);
		struct it_client *c = it_connect(d);
		it_hello(c, exporters[i], tokens[i]);
		for (int round = 0; round < 2; round++) {
			for (size_t k = 0; k < n; k++)
				it_send(c, lines[k]);
			for (size_t k = 0; k < n; k++) {
				json_t *ev = json_loads(lines[k], 0, NULL);
				const char *id = it_json_str(ev, "id");
				if (id == NULL)
					it_fail("%s line %zu has no id", g.gl_pathv[i], k + 1);
				char *reply = it_read_line(c, IT_REPLY_MS);
				it_check_ack(reply, id, round == 0 ? "stored" : "duplicate");
				free(reply);
				char *eq = it_db_value(
				    IT_DB,
				    "SELECT (body::jsonb = $3::jsonb)::text FROM ordertrack.events"
				    " WHERE exporter = $1 AND event_id = $2",
				    exporters[i], id, lines[k], NULL);
				if (strcmp(eq, "true") != 0) {
					char *body =
					    it_db_value(IT_DB,
					                "SELECT body::text FROM ordertrack.events"
					                " WHERE exporter = $1 AND event_id = $2",
					                exporters[i], id, NULL);
					it_fail(
					    "%s line %zu: the stored body differs from the line:\n"
					    "  sent:   %s\n  stored: %s",
					    g.gl_pathv[i], k + 1, lines[k], body);
				}
				free(eq);
				json_decref(ev);
			}
		}
		for (size_t k = 0; k < n; k++)
			free(lines[k]);
		free(lines);
		it_close(c);
	}
	globfree(&g);
	it_daemon_stop_clean(d);
}

/* Run one statement on a test session; fail the test when it fails. */
static void pg_ok(PGconn *conn, const char *sql)
{
	PGresult *r = PQexec(conn, sql);
	ExecStatusType t = PQresultStatus(r);
	if (t != PGRES_COMMAND_OK && t != PGRES_TUPLES_OK)
		it_fail("%s: %s", sql, PQresultErrorMessage(r));
	PQclear(r);
}

/*
 * A test session holding, in an open transaction, the advisory lock the
 * daemon takes for IT_EXPORTER's order: a batch with an event of that
 * order waits until the session commits.
 */
static PGconn *lock_order(const char *order)
{
	PGconn *conn = PQconnectdb(it_conninfo(IT_DB));
	if (PQstatus(conn) != CONNECTION_OK)
		it_fail("connect: %s", PQerrorMessage(conn));
	pg_ok(conn, "BEGIN");
	const char *params[2] = {IT_EXPORTER, order};
	PGresult *r = PQexecParams(conn,
	                           "SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2,"
	                           " 7433))",
	                           2, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		it_fail("advisory lock: %s", PQresultErrorMessage(r));
	PQclear(r);
	return conn;
}

/* Wait until some session of the daemon waits for an advisory lock. */
static void wait_lock_waiter(void)
{
	long long deadline = it_now_ms() + 10000;
	while (it_db_long(IT_DB,
	                  "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
	                  " AND NOT granted",
	                  NULL) == 0) {
		if (it_now_ms() > deadline)
			it_fail("no session of the daemon came to wait for the order's lock");
		it_sleep_ms(20);
	}
}

/* Read the next line of c and require a notification of order with to. */
static void expect_notification(struct it_client *c, const char *order, const char *to,
                                int timeout_ms)
{
	char *line = NULL;
	if (it_try_read_line(c, timeout_ms, &line) != IT_READ_LINE)
		it_fail("no notification of %s within %d ms", order, timeout_ms);
	json_t *j = json_loads(line, 0, NULL);
	if (j == NULL || strcmp(it_json_str(j, "type"), "notification") != 0 ||
	    strcmp(it_json_str(j, "order"), order) != 0 || strcmp(it_json_str(j, "to"), to) != 0)
		it_fail("expected a notification of %s to %s, got %s", order, to, line);
	json_decref(j);
	free(line);
}

/*
 * A subscribed exporter that keeps events in flight on its connection (a
 * stream never waits for its acks to run out) still gets its
 * notifications as they are stored, between the replies.  Only the
 * "subscribed" reply itself orders them: queued behind an event that has
 * not committed, it comes after that event's ack, and the notifications
 * after it.  A session of the test holds an order's lock to keep the
 * subscriber's own event uncommitted while another connection stores the
 * events the subscription watches (batch.max_events 2: the second
 * database session takes them while the first waits).
 */
static void test_subscriber_fed_while_events_pending(void **state)
{
	(void)state;
	struct it_config cfg = {.name = "sub_inflight", .db_connections = 2, .batch_max_events = 2};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	struct it_client *s = session(d), *p = session(d);

	/* The subscribe waits behind an event that cannot commit: nothing
	 * may come before its "subscribed", not even a notification. */
	PGconn *lock = lock_order("PO-SUBP-LOCK");
	char *ev = it_event_line("subp-lock-1", "order.created", "PO-SUBP-LOCK", NULL);
	it_send(s, ev);
	free(ev);
	it_send(s, "{\"type\":\"subscribe\",\"after\":0,\"orders\":[\"PO-SUBP-1\",\"PO-SUBP-2\"]}");
	wait_lock_waiter();
	ev = it_event_line("subp-1", "order.created", "PO-SUBP-1", NULL);
	it_send(p, ev);
	free(ev);
	it_expect_ack(p, "subp-1", "stored");
	char *line = NULL;
	if (it_try_read_line(s, 500, &line) != IT_READ_TIMEOUT)
		it_fail("a line came before the locked event's ack: %s", line ? line : "(eof)");
	pg_ok(lock, "COMMIT");
	PQfinish(lock);
	it_expect_ack(s, "subp-lock-1", "stored");
	json_t *j = it_read_json(s, IT_REPLY_MS);
	if (strcmp(it_json_str(j, "type"), "subscribed") != 0)
		it_fail("expected subscribed after the ack");
	json_decref(j);
	expect_notification(s, "PO-SUBP-1", "created", IT_REPLY_MS);

	/* Subscribed now, with an event of its own in flight: a notification
	 * stored meanwhile comes at once, not after that event's ack. */
	lock = lock_order("PO-SUBP-LOCK");
	ev = it_event_line("subp-lock-2", "order.confirmed", "PO-SUBP-LOCK", NULL);
	it_send(s, ev);
	free(ev);
	wait_lock_waiter();
	ev = it_event_line("subp-2", "order.created", "PO-SUBP-2", NULL);
	it_send(p, ev);
	free(ev);
	it_expect_ack(p, "subp-2", "stored");
	expect_notification(s, "PO-SUBP-2", "created", 5000);
	pg_ok(lock, "COMMIT");
	PQfinish(lock);
	it_expect_ack(s, "subp-lock-2", "stored");
	it_send(s, "{\"type\":\"ping\"}");
	it_expect_pong(s);
	it_close(s);
	it_close(p);
	it_daemon_stop_clean(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_hello_ok, it_test_teardown),
	    cmocka_unit_test_teardown(test_wrong_token, it_test_teardown),
	    cmocka_unit_test_teardown(test_unknown_exporter, it_test_teardown),
	    cmocka_unit_test_teardown(test_operator_removed_on_reload, it_test_teardown),
	    cmocka_unit_test_teardown(test_operator_event_forbidden, it_test_teardown),
	    cmocka_unit_test_teardown(test_line_before_hello, it_test_teardown),
	    cmocka_unit_test_teardown(test_ping_pong, it_test_teardown),
	    cmocka_unit_test_teardown(test_second_hello, it_test_teardown),
	    cmocka_unit_test_teardown(test_event_stored, it_test_teardown),
	    cmocka_unit_test_teardown(test_body_numbers_exact, it_test_teardown),
	    cmocka_unit_test_teardown(test_body_kept_as_sent, it_test_teardown),
	    cmocka_unit_test_teardown(test_duplicate, it_test_teardown),
	    cmocka_unit_test_teardown(test_conflict, it_test_teardown),
	    cmocka_unit_test_teardown(test_malformed_json, it_test_teardown),
	    cmocka_unit_test_teardown(test_invalid_event, it_test_teardown),
	    cmocka_unit_test_teardown(test_field_limits_accepted, it_test_teardown),
	    cmocka_unit_test_teardown(test_unknown_type, it_test_teardown),
	    cmocka_unit_test_teardown(test_invalid_request, it_test_teardown),
	    cmocka_unit_test_teardown(test_line_too_long, it_test_teardown),
	    cmocka_unit_test_teardown(test_too_many_connections, it_test_teardown),
	    cmocka_unit_test_teardown(test_crlf, it_test_teardown),
	    cmocka_unit_test_teardown(test_split_writes, it_test_teardown),
	    cmocka_unit_test_teardown(test_half_close_partial_line, it_test_teardown),
	    cmocka_unit_test_teardown(test_pipelined_mix, it_test_teardown),
	    cmocka_unit_test_teardown(test_refused_by_database, it_test_teardown),
	    cmocka_unit_test_teardown(test_pipelined_duplicate_conflict, it_test_teardown),
	    cmocka_unit_test_teardown(test_scenario_replay, it_test_teardown),
	    cmocka_unit_test_teardown(test_subscriber_fed_while_events_pending, it_test_teardown),
	};
	it_env_init("protocol");
	return it_env_fini(cmocka_run_group_tests(tests, NULL, NULL));
}
