/*
 * test_notify.c - notifications through the real daemon: the subscribe
 * feed, LISTEN ordertrack, webhooks and alerts.
 *
 * The reference is always the table: ordertrack.notifications is written
 * in the transaction of the change, so whatever a subscriber, a LISTEN
 * client or a webhook receiver gets must be exactly the rows the test can
 * read back, in seq order, without gap or duplicate (webhooks: at least
 * once, so a repeat is allowed right after a failed attempt, nothing else).
 *
 * The webhook receiver is a small evhttp server run by this process, in a
 * thread with an event_base of its own: the thread alone touches that base
 * once it runs, so libevent needs no locking; the test thread reads what it
 * recorded under a mutex.  Alerts are switched off (a one-day interval) in
 * every test but the alerts tests, since the scenarios' shipments are old
 * enough to raise them and extra rows would upset the counts; some alerts
 * tests call ordertrack.evaluate_alerts() themselves instead.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <cmocka.h>

#include "harness.h"

#define KIVU        "kivu-coffee"
#define KIVU_TOKEN  "demo-kivu-token"
#define CHILI       "akagera-chili"
#define CHILI_TOKEN "demo-chili-token"
#define TEA         "lake-kivu-tea"
#define TEA_TOKEN   "tea-83d1f0-token"
#define HONEY       "virunga-honey"
#define HONEY_TOKEN "honey-5be7a2-token"
#define OPS         "ops"
#define OPS_TOKEN   "ops-4f19c2-token"
#define KIVU_FILE   "tests/data/scenario-kivu-coffee.jsonl"
#define CHILI_FILE  "tests/data/scenario-akagera-chili.jsonl"

#define NOTE_MS       15000 /* wait for one notification line */
#define QUIET_MS      500   /* "nothing more comes" */
#define LOAD_CONNS    4
#define LOAD_EVENTS   500  /* per connection */
#define SLOW_EVENTS   5000 /* per connection, for the slow subscriber */
#define HOOK_SECRET   "whsec-test-0123456789"
#define HOOK_FAILURES 3 /* retried after 1 s, 2 s, 4 s */

static const char documents_required[] =
    "documents = { required = (\n"
    "\t{ hs_prefix = \"0901\"; documents = [ \"phytosanitary\", \"certificate_of_origin\" ]; },\n"
    "\t{ hs_prefix = \"0904\"; documents = [ \"phytosanitary\", \"certificate_of_origin\",\n"
    "\t                                    \"quality_certificate\" ]; }\n"
    "); };\n";

/* Alerts that never tick during a test. */
static const char alerts_off[] = "alerts = { interval_s = 86400; };\n";

/* Notification bodies read from the table, in seq order. */
struct rows {
	json_t **v;
	size_t n;
};

/* ------------------------------------------------------------------ */
/* Config, events, the table                                           */
/* ------------------------------------------------------------------ */

/*
 * The config of every test: four exporters (the two demo ones first), the
 * operator, the documents rules, and alerts and webhooks as given (NULL:
 * alerts off, no webhooks).  The extra text lives in buf.
 */
static struct it_config notify_config(const char *name, const char *db, const char *alerts,
                                      const char *webhooks, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s%s%s", documents_required, alerts != NULL ? alerts : alerts_off,
	         webhooks != NULL ? webhooks : "");
	struct it_config cfg = {
	    .name = name,
	    .dbname = db,
	    .no_default_exporters = true,
	    .extra = {{KIVU, "Kivu Hills Coffee Cooperative", KIVU_TOKEN},
	              {CHILI, "Akagera Chili Exporters", CHILI_TOKEN},
	              {TEA, "Lake Kivu Tea", TEA_TOKEN},
	              {HONEY, "Virunga Honey", HONEY_TOKEN}},
	    .n_extra = 4,
	    .operators = {{OPS, "Operations desk", OPS_TOKEN}},
	    .n_operators = 1,
	    .extra_text = buf,
	};
	return cfg;
}

/* A new database and a daemon on it with notify_config(). */
static struct it_daemon *notify_daemon(const char *db, const char *alerts, const char *webhooks)
{
	char extra[2048];
	it_pg_createdb(db);
	struct it_config cfg = notify_config(db, db, alerts, webhooks, extra, sizeof(extra));
	/* it_daemon_start keeps a copy of cfg; extra_text is only read now. */
	struct it_daemon *d = it_daemon_start(&cfg, true);
	d->cfg.extra_text = NULL;
	return d;
}

/* The id of an event line. */
static void line_id(const char *line, char *out, size_t cap)
{
	json_t *o = json_loads(line, 0, NULL);
	const char *id = it_json_str(o, "id");
	if (id == NULL)
		it_fail("event line without an id: %.200s", line);
	snprintf(out, cap, "%s", id);
	json_decref(o);
}

/*
 * Send a scenario file on a new connection, pipelined (few batches, few
 * notifications) or one event at a time (a notification per change);
 * every ack must be result.
 */
static size_t send_file(struct it_daemon *d, const char *rel, const char *exporter,
                        const char *token, bool one_by_one, const char *result)
{
	char *text = it_source_file(rel);
	struct it_client *c = it_connect(d);
	it_hello(c, exporter, token);
	if (!one_by_one)
		it_send_raw(c, text, strlen(text));
	size_t n = 0;
	char *save = NULL;
	for (char *l = strtok_r(text, "\n", &save); l != NULL; l = strtok_r(NULL, "\n", &save)) {
		char id[160];
		line_id(l, id, sizeof(id));
		if (one_by_one)
			it_send(c, l);
		char *reply = it_read_line(c, 30000);
		it_check_ack(reply, id, result);
		free(reply);
		n++;
	}
	free(text);
	it_close(c);
	return n;
}

/* Both demo scenarios, stored: coffee one event at a time, chili pipelined. */
static void send_scenarios(struct it_daemon *d)
{
	send_file(d, KIVU_FILE, KIVU, KIVU_TOKEN, true, "stored");
	send_file(d, CHILI_FILE, CHILI, CHILI_TOKEN, false, "stored");
}

/* it_event_line with another occurred_at. */
static char *event_at(const char *id, const char *type, const char *order, const char *ship,
                      const char *when)
{
	return it_event_line_at(id, type, order, ship, when);
}

/* Send one event and require its ack. */
static void send_event(struct it_client *c, const char *line, const char *result)
{
	char id[160];
	line_id(line, id, sizeof(id));
	it_send(c, line);
	it_expect_ack(c, id, result);
}

/* Send an it_event_line event and require its ack. */
static void send_simple(struct it_client *c, const char *id, const char *type, const char *order,
                        const char *ship, const char *result)
{
	char *line = it_event_line(id, type, order, ship);
	send_event(c, line, result);
	free(line);
}

/*
 * The notification bodies that match where (SQL over the notifications
 * table, with up to two text parameters), in seq order.
 */
static void table_rows(const char *db, const char *where, const char *p1, const char *p2,
                       struct rows *out)
{
	char sql[1024];
	snprintf(sql, sizeof(sql),
	         "SELECT coalesce(string_agg(body::text, E'\\n' ORDER BY seq), '')"
	         " FROM ordertrack.notifications WHERE %s",
	         where);
	char *text = it_db_value(db, sql, p1, p2, NULL);
	memset(out, 0, sizeof(*out));
	size_t cap = 0;
	char *save = NULL;
	for (char *l = strtok_r(text, "\n", &save); l != NULL; l = strtok_r(NULL, "\n", &save)) {
		if (out->n == cap) {
			cap = cap ? 2 * cap : 64;
			out->v = realloc(out->v, cap * sizeof(*out->v));
			if (out->v == NULL)
				abort();
		}
		json_error_t err;
		out->v[out->n] = json_loads(l, 0, &err);
		if (out->v[out->n] == NULL)
			it_fail("a stored body is not JSON (%s): %.200s", err.text, l);
		out->n++;
	}
	free(text);
}

/* Release table_rows' result. */
static void rows_free(struct rows *r)
{
	for (size_t i = 0; i < r->n; i++)
		json_decref(r->v[i]);
	free(r->v);
	memset(r, 0, sizeof(*r));
}

/* The seq member of a notification. */
static long long seq_of(const json_t *o)
{
	return (long long)json_integer_value(json_object_get(o, "seq"));
}

/* The newest seq in the table, 0 when empty. */
static long long max_seq(const char *db)
{
	return it_db_long(db, "SELECT coalesce(max(seq), 0) FROM ordertrack.notifications", NULL);
}

/* Notifications in the table. */
static long note_count(const char *db, const char *where)
{
	char sql[512];
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM ordertrack.notifications WHERE %s", where);
	return it_db_long(db, sql, NULL);
}

/* seq runs 1..count(*) with no hole (the counter row makes it so). */
static void expect_seq_contiguous(const char *db)
{
	long n = note_count(db, "true");
	long long hi = max_seq(db);
	long lo =
	    it_db_long(db, "SELECT coalesce(min(seq), 1) FROM ordertrack.notifications", NULL);
	if (hi != n || lo != 1)
		it_fail("notification seqs are not 1..%ld without gaps: min %ld, max %lld", n, lo,
		        hi);
}

/* ------------------------------------------------------------------ */
/* The subscriber's side                                               */
/* ------------------------------------------------------------------ */

/* Read one line; it must be a notification (returned parsed). */
static json_t *read_note(struct it_client *c, int ms)
{
	char *line = it_read_line(c, ms);
	json_t *o = json_loads(line, 0, NULL);
	const char *type = it_json_str(o, "type");
	if (o == NULL || type == NULL || strcmp(type, "notification") != 0 ||
	    !json_is_integer(json_object_get(o, "seq")))
		it_fail("expected a notification line, got: %.300s", line);
	free(line);
	return o;
}

/* Send a subscribe line and require {"type":"subscribed","after":after}. */
static void subscribe(struct it_client *c, const char *line, long long after)
{
	it_send(c, line);
	json_t *o = it_read_json(c, IT_REPLY_MS);
	const char *type = it_json_str(o, "type");
	json_t *a = json_object_get(o, "after");
	if (type == NULL || strcmp(type, "subscribed") != 0 || !json_is_integer(a) ||
	    json_integer_value(a) != after || json_object_size(o) != 2) {
		char *t = json_dumps(o, JSON_COMPACT);
		it_fail("to %s expected {\"type\":\"subscribed\",\"after\":%lld}, got %s", line,
		        after, t);
	}
	json_decref(o);
}

/* Subscribe with only "after". */
static void subscribe_after(struct it_client *c, long long after)
{
	char line[96];
	snprintf(line, sizeof(line), "{\"type\":\"subscribe\",\"after\":%lld}", after);
	subscribe(c, line, after);
}

/* A new connection of exporter that said hello and subscribed after seq after. */
static struct it_client *subscriber(struct it_daemon *d, const char *exporter, const char *token,
                                    long long after)
{
	struct it_client *c = it_connect(d);
	it_hello(c, exporter, token);
	subscribe_after(c, after);
	return c;
}

/* Fail if anything arrives within ms. */
static void expect_quiet(struct it_client *c, int ms, const char *what)
{
	char *line;
	switch (it_try_read_line(c, ms, &line)) {
	case IT_READ_TIMEOUT:
		return;
	case IT_READ_EOF:
		it_fail("%s: the daemon closed the connection", what);
	case IT_READ_LINE:
		break;
	}
	it_fail("%s: expected nothing more, got: %.300s", what, line);
}

/* Fail unless a is b (both notification bodies), naming position i. */
static void expect_same_note(const json_t *got, const json_t *want, size_t i, const char *what)
{
	if (json_equal(got, want))
		return;
	char *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS);
	char *w = json_dumps(want, JSON_COMPACT | JSON_SORT_KEYS);
	it_fail("%s: notification %zu differs from the table:\n  got   %.400s\n  table %.400s",
	        what, i, g, w);
}

/*
 * Read want->n - from notifications: strictly increasing seq and each
 * equal to the table's row, from the from-th on.
 */
static void expect_stream(struct it_client *c, const struct rows *want, size_t from,
                          const char *what)
{
	long long last = -1;
	for (size_t i = from; i < want->n; i++) {
		json_t *o = read_note(c, NOTE_MS);
		if (seq_of(o) <= last)
			it_fail("%s: seq %lld after %lld", what, seq_of(o), last);
		last = seq_of(o);
		expect_same_note(o, want->v[i], i, what);
		json_decref(o);
	}
}

/* ------------------------------------------------------------------ */
/* Subscribe: the stream is the table                                  */
/* ------------------------------------------------------------------ */

/*
 * A subscriber connected before the scenarios (live) and one connected
 * after them (backlog) both get exactly their exporter's rows, in seq
 * order; neither sees the other exporter's.
 */
static void test_subscribe_scenario(void **state)
{
	(void)state;
	const char *db = "notify_scenario";
	struct it_daemon *d = notify_daemon(db, NULL, NULL);
	struct it_client *live = subscriber(d, KIVU, KIVU_TOKEN, 0);
	expect_quiet(live, 200, "subscriber before any event");

	send_scenarios(d);
	struct rows kivu, chili;
	table_rows(db, "exporter = $1", KIVU, NULL, &kivu);
	table_rows(db, "exporter = $1", CHILI, NULL, &chili);
	if (kivu.n < 20 || chili.n < 4)
		it_fail("the scenarios made only %zu and %zu notifications", kivu.n, chili.n);
	assert_int_equal(kivu.n + chili.n, note_count(db, "true"));
	expect_seq_contiguous(db);

	expect_stream(live, &kivu, 0, "live kivu-coffee subscriber");
	expect_quiet(live, QUIET_MS, "live kivu-coffee subscriber after its rows");

	struct it_client *back = subscriber(d, CHILI, CHILI_TOKEN, 0);
	expect_stream(back, &chili, 0, "backlog akagera-chili subscriber");
	expect_quiet(back, QUIET_MS, "backlog akagera-chili subscriber after its rows");

	/* One subscription per connection. */
	it_send(back, "{\"type\":\"subscribe\",\"after\":0}");
	json_decref(it_expect_error(back, NULL, "invalid_request"));
	it_send(back, "{\"type\":\"ping\"}");
	it_expect_pong(back);

	rows_free(&kivu);
	rows_free(&chili);
	it_daemon_stop_clean(d);
}

/*
 * A subscriber that arrives while the daemon waits to apply the migrations
 * of a new database (another session holds their lock) is served once the
 * schema is in place, and the feed never asks for a page of a table that
 * is not there yet.
 */
static void test_subscribe_before_schema(void **state)
{
	(void)state;
	const char *db = "notify_before_schema";
	char extra[2048];
	it_pg_createdb(db);
	PGconn *hold = PQconnectdb(it_conninfo(db));
	PGresult *r = PQexec(hold, "SELECT pg_advisory_lock(7433001)"); /* daemon/lane.c */
	assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
	PQclear(r);
	struct it_config cfg = notify_config(db, db, NULL, NULL, extra, sizeof(extra));
	struct it_daemon *d = it_daemon_start(&cfg, false);
	d->cfg.extra_text = NULL;
	/* The sessions reach the server; the ingest ones wait for the lock. */
	it_log_expect(d, 0, "to=migrating", 10000);
	it_sleep_ms(300);
	struct it_client *live = subscriber(d, KIVU, KIVU_TOKEN, 0);
	expect_quiet(live, 500, "subscriber before the schema");
	assert_true(it_log_wait(d, 0, "msg=ready", 0) < 0);
	PQfinish(hold);
	it_log_expect(d, 0, "msg=ready", 10000);

	struct it_client *k = it_connect(d);
	it_hello(k, KIVU, KIVU_TOKEN);
	send_simple(k, "bs-01", "order.created", "KVH-2026-0950", NULL, "stored");
	json_t *o = read_note(live, NOTE_MS);
	assert_string_equal(it_json_str(o, "order"), "KVH-2026-0950");
	json_decref(o);
	it_daemon_stop_clean(d);
	assert_true(it_log_wait(d, 0, "msg=\"query failed\"", 0) < 0);
}

/* Resuming after the k-th seq gives exactly the rest; after the last, nothing. */
static void test_subscribe_resume(void **state)
{
	(void)state;
	const char *db = "notify_resume";
	struct it_daemon *d = notify_daemon(db, NULL, NULL);
	send_scenarios(d);
	struct rows kivu;
	table_rows(db, "exporter = $1", KIVU, NULL, &kivu);
	assert_true(kivu.n >= 4);

	size_t ks[] = {1, kivu.n / 2, kivu.n - 1};
	for (size_t j = 0; j < sizeof(ks) / sizeof(ks[0]); j++) {
		size_t k = ks[j];
		struct it_client *c = subscriber(d, KIVU, KIVU_TOKEN, seq_of(kivu.v[k - 1]));
		char what[64];
		snprintf(what, sizeof(what), "resumed after notification %zu", k);
		expect_stream(c, &kivu, k, what);
		expect_quiet(c, QUIET_MS, what);
		it_close(c);
	}
	struct it_client *c = subscriber(d, KIVU, KIVU_TOKEN, seq_of(kivu.v[kivu.n - 1]));
	expect_quiet(c, QUIET_MS, "resumed after the last one");
	rows_free(&kivu);
	it_daemon_stop_clean(d);
}

/* Read the next line; it must be the feed_gap error whose message holds want. */
static void expect_feed_ahead(struct it_client *c, const char *want)
{
	char *line = it_read_line(c, IT_REPLY_MS);
	json_t *err = it_check_error(line, NULL, "feed_gap");
	if (strstr(it_json_str(err, "message"), want) == NULL)
		it_fail("feed_gap message without \"%s\": %s", want, line);
	json_decref(err);
	free(line);
}

/*
 * A cursor past every seq the database has given out: the database was
 * restored from an older backup (here: its newest five notifications
 * deleted and the counter set back), and the seqs it gives out next were
 * other notifications before.  A subscriber resuming there, and one
 * subscribed there when the sessions come back, get feed_gap instead of
 * a feed that silently skips the new ones; subscribed again within the
 * counter, they get them.
 */
static void test_subscribe_ahead(void **state)
{
	(void)state;
	const char *db = "notify_ahead";
	struct it_daemon *d = notify_daemon(db, NULL, NULL);
	send_scenarios(d);
	long long top = max_seq(db);
	assert_true(top > 10);

	/* A cursor from nowhere: the database never gave out top + 5. */
	struct it_client *c = it_connect(d);
	it_hello_operator(c, OPS, OPS_TOKEN);
	subscribe_after(c, top + 5);
	char want[160];
	snprintf(want, sizeof(want), "after %lld is past the last notification", top + 5);
	expect_feed_ahead(c, want);
	it_log_expect(d, 0, "msg=\"feed cursor ahead\" conn=", IT_REPLY_MS);
	/* The connection stays and may subscribe within it. */
	subscribe_after(c, top - 1);
	json_decref(read_note(c, NOTE_MS));
	it_close(c);

	/* Subscribed at the top, fed one more (so the check made as it
	 * subscribed is over: it comes before the page on the auxiliary
	 * session), caught up; then "restored". */
	struct it_client *ev = it_connect(d);
	it_hello(ev, KIVU, KIVU_TOKEN);
	struct it_client *live = it_connect(d);
	it_hello_operator(live, OPS, OPS_TOKEN);
	subscribe_after(live, top);
	send_simple(ev, "before-restore", "order.created", "PO-BEFORE-RESTORE", NULL, "stored");
	json_t *first = read_note(live, NOTE_MS);
	assert_int_equal(json_integer_value(json_object_get(first, "seq")), top + 1);
	json_decref(first);
	char sql[200];
	snprintf(sql, sizeof(sql),
	         "DELETE FROM ordertrack.notifications WHERE seq > %lld;"
	         " UPDATE ordertrack.notification_counter SET last_seq = %lld;",
	         top - 5, top - 5);
	it_db_script(db, sql);
	/* The sessions come back (as after a restore) with events waiting:
	 * the counter is judged before they commit past the cursor. */
	off_t off = it_log_offset(d);
	it_db_command(
	    db,
	    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
	    " WHERE datname = current_database() AND application_name LIKE 'ordertrackd%'",
	    NULL);
	enum { WAITING = 12 };
	for (int i = 0; i < WAITING; i++) {
		char id[32], order[32];
		snprintf(id, sizeof(id), "restored-%d", i);
		snprintf(order, sizeof(order), "PO-RESTORED-%d", i);
		it_send_event(ev, id, "order.created", order, NULL);
	}
	for (int i = 0; i < WAITING; i++) {
		char id[32];
		snprintf(id, sizeof(id), "restored-%d", i);
		it_expect_ack(ev, id, "stored");
	}
	assert_true(max_seq(db) > top);
	snprintf(want, sizeof(want),
	         "after %lld is past the last notification the database has"
	         " given out (%lld)",
	         top + 1, top - 5);
	expect_feed_ahead(live, want);
	it_log_expect(d, off, "msg=\"feed cursor ahead\"", IT_REPLY_MS);
	it_close(live);

	/* Resumed now within the counter: the notifications that took the
	 * seqs again, from top - 4. */
	c = subscriber(d, KIVU, KIVU_TOKEN, top - 5);
	json_t *n = read_note(c, NOTE_MS);
	assert_int_equal(json_integer_value(json_object_get(n, "seq")), top - 4);
	json_decref(n);
	it_close(c);

	/* Told in order: an exporter's subscribe behind its own event waiting
	 * for its commit (the counter row held) gets the ack, "subscribed",
	 * then feed_gap, though the counter's answer came first. */
	long long now = max_seq(db);
	PGconn *hold = PQconnectdb(it_conninfo(db));
	PGresult *r =
	    PQexec(hold, "BEGIN; SELECT 1 FROM ordertrack.notification_counter FOR UPDATE");
	assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
	PQclear(r);
	it_send_event(ev, "ahead-held", "order.created", "PO-AHEAD-HELD", NULL);
	char sub_line[96];
	snprintf(sub_line, sizeof(sub_line), "{\"type\":\"subscribe\",\"after\":%lld}", now + 5);
	it_send(ev, sub_line);
	it_sleep_ms(500); /* the counter's answer, the event still waiting */
	r = PQexec(hold, "COMMIT");
	PQclear(r);
	PQfinish(hold);
	it_expect_ack(ev, "ahead-held", "stored");
	json_t *o = it_read_json(ev, IT_REPLY_MS);
	const char *type = it_json_str(o, "type");
	if (type == NULL || strcmp(type, "subscribed") != 0)
		it_fail("expected \"subscribed\" right after the ack");
	json_decref(o);
	snprintf(want, sizeof(want), "after %lld is past", now + 5);
	expect_feed_ahead(ev, want);
	it_close(ev);
	it_daemon_stop_clean(d);
}

/*
 * A subscriber keeps its feed across a PostgreSQL restart.  What this
 * daemon commits it hands to its subscribers itself; what another daemon
 * on the same database commits reaches them through the auxiliary
 * connection: its LISTEN, then a read of the new rows.  After the restart
 * that connection must have reconnected and listened again: the
 * notification of an event another daemon stores then reaches a subscriber
 * that subscribed before the restart, next in seq after the last one it had.
 */
static void test_subscriber_across_outage(void **state)
{
	(void)state;
	const char *db = "notify_outage";
	struct it_daemon *d = notify_daemon(db, NULL, NULL);
	struct it_client *sub = subscriber(d, KIVU, KIVU_TOKEN, 0);
	struct it_client *c = it_connect(d);
	it_hello(c, KIVU, KIVU_TOKEN);
	send_simple(c, "outage-01", "order.created", "OUTAGE-1", NULL, "stored");
	json_t *before = read_note(sub, NOTE_MS);

	off_t off = it_log_offset(d);
	it_pg_stop("fast");
	it_log_expect(d, off, "msg=\"database unavailable\" conn=aux", IT_REPLY_MS);
	it_pg_start();
	/* Said only when the aux connection was down before. */
	it_log_expect(d, off, "msg=\"database connected\" conn=aux", 30000);

	char extra[2048];
	struct it_config cfg =
	    notify_config("notify_outage_other", db, NULL, NULL, extra, sizeof(extra));
	struct it_daemon *other = it_daemon_start(&cfg, true);
	other->cfg.extra_text = NULL;
	struct it_client *oc = it_connect(other);
	it_hello(oc, KIVU, KIVU_TOKEN);
	send_simple(oc, "outage-02", "order.created", "OUTAGE-2", NULL, "stored");

	json_t *after = read_note(sub, NOTE_MS);
	const char *order = it_json_str(after, "order");
	if (seq_of(after) != seq_of(before) + 1 || order == NULL ||
	    strcmp(order, "OUTAGE-2") != 0) {
		char *t = json_dumps(after, JSON_COMPACT);
		it_fail("after the restart expected OUTAGE-2's notification at seq %lld, got %s",
		        seq_of(before) + 1, t);
	}
	expect_quiet(sub, QUIET_MS, "after the restart");
	json_decref(before);
	json_decref(after);
	it_daemon_stop_clean(other);
	it_daemon_stop_clean(d);
}

/* Event i of load connection k: 100 orders of 5 events each. */
static char *load_event(int k, int i, char *id, size_t cap)
{
	static const char *const types[] = {"order.created", "order.confirmed", "shipment.booked",
	                                    "shipment.departed", "shipment.delivered"};
	char order[32], ship[40];
	snprintf(id, cap, "g%d-%04d", k, i);
	snprintf(order, sizeof(order), "G%d-%03d", k, i / 5);
	snprintf(ship, sizeof(ship), "G%d-%03d-S", k, i / 5);
	const char *type = types[i % 5];
	return it_event_line(id, type, order, strncmp(type, "shipment.", 9) == 0 ? ship : NULL);
}

/*
 * An operator subscribed while four connections (four exporters) ingest
 * 500 events each gets every row of the table exactly once, in seq order.
 */
static void test_subscribe_under_load(void **state)
{
	(void)state;
	const char *db = "notify_load";
	static const struct {
		const char *id, *token;
	} who[LOAD_CONNS] = {
	    {KIVU, KIVU_TOKEN}, {CHILI, CHILI_TOKEN}, {TEA, TEA_TOKEN}, {HONEY, HONEY_TOKEN}};
	struct it_daemon *d = notify_daemon(db, NULL, NULL);
	struct it_client *op = it_connect(d);
	it_hello_operator(op, OPS, OPS_TOKEN);
	subscribe_after(op, 0);

	struct it_client *all[LOAD_CONNS + 1];
	all[0] = op;
	op->want = 0; /* read along, but do not wait for it yet */
	for (int k = 0; k < LOAD_CONNS; k++) {
		struct it_client *c = it_connect(d);
		char hello[256];
		snprintf(hello, sizeof(hello),
		         "{\"type\":\"hello\",\"exporter\":\"%s\",\"token\":\"%s\"}", who[k].id,
		         who[k].token);
		it_queue(c, hello);
		for (int i = 0; i < LOAD_EVENTS; i++) {
			char id[32];
			char *ev = load_event(k, i, id, sizeof(id));
			it_queue(c, ev);
			free(ev);
		}
		c->want = 1 + LOAD_EVENTS;
		all[k + 1] = c;
	}
	long long t0 = it_now_ms();
	if (!it_pump(all, LOAD_CONNS + 1, 120000))
		it_fail("the load connections did not get all their acks within 120 s");
	for (int k = 0; k < LOAD_CONNS; k++) {
		struct it_client *c = all[k + 1];
		if (strstr(c->lines[0], "\"welcome\"") == NULL)
			it_fail("load connection %d: hello answered with %s", k, c->lines[0]);
		for (int i = 0; i < LOAD_EVENTS; i++) {
			char id[32];
			snprintf(id, sizeof(id), "g%d-%04d", k, i);
			it_check_ack(c->lines[1 + i], id, "stored");
		}
	}
	fprintf(stderr, "notify: %d x %d events acked in %lld ms\n", LOAD_CONNS, LOAD_EVENTS,
	        it_now_ms() - t0);

	struct rows table;
	table_rows(db, "true", NULL, NULL, &table);
	expect_seq_contiguous(db);
	/* At least an order.status and a shipment.status for each of the orders. */
	if (table.n < (size_t)(LOAD_CONNS * LOAD_EVENTS / 5 * 2))
		it_fail("only %zu notifications for %d orders", table.n,
		        LOAD_CONNS * LOAD_EVENTS / 5);
	op->want = table.n;
	if (!it_pump(&op, 1, 60000))
		it_fail("the operator got %zu of %zu notifications", op->n_lines, table.n);
	long long last = 0;
	for (size_t i = 0; i < op->n_lines; i++) {
		json_t *o = json_loads(op->lines[i], 0, NULL);
		if (o == NULL || strcmp(it_json_str(o, "type") ? it_json_str(o, "type") : "",
		                        "notification") != 0)
			it_fail("operator line %zu is not a notification: %.200s", i, op->lines[i]);
		if (seq_of(o) <= last)
			it_fail("operator stream: seq %lld after %lld (line %zu)", seq_of(o), last,
			        i);
		last = seq_of(o);
		expect_same_note(o, table.v[i], i, "operator under load");
		json_decref(o);
	}
	expect_quiet(op, QUIET_MS, "operator after the whole table");
	rows_free(&table);
	it_daemon_stop_clean(d);
}

/*
 * A subscriber that stops reading while four connections store 20,000
 * orders (a notification each, some 6 MB of lines, far past the 256 KiB
 * at which the daemon pauses it and the socket buffers behind) is not
 * dropped: the daemon keeps acking the producers and answering another
 * client meanwhile, and once the subscriber reads again it gets every row
 * of the table exactly once, in seq order.
 */
static void test_slow_subscriber(void **state)
{
	(void)state;
	const char *db = "notify_slow";
	static const struct {
		const char *id, *token;
	} who[LOAD_CONNS] = {
	    {KIVU, KIVU_TOKEN}, {CHILI, CHILI_TOKEN}, {TEA, TEA_TOKEN}, {HONEY, HONEY_TOKEN}};
	struct it_daemon *d = notify_daemon(db, NULL, NULL);
	struct it_client *op = it_connect(d);
	it_hello_operator(op, OPS, OPS_TOKEN);
	subscribe_after(op, 0);

	/* The operator reads nothing from here on until every ack is in. */
	struct it_client *all[LOAD_CONNS];
	for (int k = 0; k < LOAD_CONNS; k++) {
		struct it_client *c = it_connect(d);
		char hello[256];
		snprintf(hello, sizeof(hello),
		         "{\"type\":\"hello\",\"exporter\":\"%s\",\"token\":\"%s\"}", who[k].id,
		         who[k].token);
		it_queue(c, hello);
		for (int i = 0; i < SLOW_EVENTS; i++) {
			char id[80], order[64];
			/* Long refs make long lines: the buffers fill sooner. */
			snprintf(id, sizeof(id), "slow-%d-%05d-event-with-a-rather-long-id", k, i);
			snprintf(order, sizeof(order), "SLOW-%d-%05d-ORDER-WITH-A-RATHER-LONG-REF",
			         k, i);
			char *ev = it_event_line(id, "order.created", order, NULL);
			it_queue(c, ev);
			free(ev);
		}
		c->want = 1 + SLOW_EVENTS;
		all[k] = c;
	}
	if (!it_pump(all, LOAD_CONNS, 180000))
		it_fail("the producers did not get all their acks within 180 s");
	for (int k = 0; k < LOAD_CONNS; k++) {
		struct it_client *c = all[k];
		if (strstr(c->lines[0], "\"welcome\"") == NULL)
			it_fail("producer %d: hello answered with %s", k, c->lines[0]);
		for (int i = 0; i < SLOW_EVENTS; i++) {
			char id[80];
			snprintf(id, sizeof(id), "slow-%d-%05d-event-with-a-rather-long-id", k, i);
			it_check_ack(c->lines[1 + i], id, "stored");
		}
	}

	/* Everything is stored and the subscriber is still stalled: others are served. */
	struct it_client *other = it_connect(d);
	it_hello(other, KIVU, KIVU_TOKEN);
	it_send(other, "{\"type\":\"ping\"}");
	it_expect_pong(other);
	send_simple(other, "slow-other-1", "order.created", "SLOW-OTHER-1", NULL, "stored");

	struct rows table;
	table_rows(db, "true", NULL, NULL, &table);
	expect_seq_contiguous(db);
	size_t bytes = 0;
	for (size_t i = 0; i < table.n; i++) {
		char *t = json_dumps(table.v[i], JSON_COMPACT);
		bytes += strlen(t) + 1;
		free(t);
	}
	/* Over loopback the kernel took about 2.8 MB before the daemon first
	 * paused (Linux defaults); twice that makes sure it does. */
	if (table.n < (size_t)(LOAD_CONNS * SLOW_EVENTS) || bytes < 5 * 1024 * 1024)
		it_fail("only %zu notifications (%zu bytes): not enough to fill the buffers",
		        table.n, bytes);

	/* Now it reads: the whole table, once, in order, nothing in between. */
	op->want = table.n;
	long long t0 = it_now_ms();
	bool all_read = it_pump(&op, 1, 180000);
	fprintf(stderr, "notify: slow subscriber read %zu notifications (%zu bytes) in %lld ms\n",
	        op->n_lines, bytes, it_now_ms() - t0);
	/* What came is checked first: a gap says more than a short count. */
	long long last = 0;
	for (size_t i = 0; i < op->n_lines; i++) {
		json_t *o = json_loads(op->lines[i], 0, NULL);
		const char *type = o != NULL ? it_json_str(o, "type") : NULL;
		if (type == NULL || strcmp(type, "notification") != 0 || i >= table.n)
			it_fail("slow subscriber line %zu is not a notification of the table: "
			        "%.200s",
			        i, op->lines[i]);
		if (seq_of(o) != last + 1)
			it_fail("slow subscriber: seq %lld after %lld (line %zu)", seq_of(o), last,
			        i);
		last = seq_of(o);
		expect_same_note(o, table.v[i], i, "slow subscriber");
		json_decref(o);
	}
	if (!all_read)
		it_fail("the slow subscriber got %zu of %zu notifications", op->n_lines, table.n);
	expect_quiet(op, QUIET_MS, "slow subscriber after the whole table");
	it_send(op, "{\"type\":\"ping\"}");
	it_expect_pong(op);
	rows_free(&table);
	it_daemon_stop_clean(d);
}

/* A test connection that holds ordertrack.notifications locked against readers. */
static PGconn *lock_notifications(const char *db)
{
	PGconn *pg = PQconnectdb(it_conninfo(db));
	PGresult *r =
	    PQexec(pg, "BEGIN; LOCK TABLE ordertrack.notifications IN ACCESS EXCLUSIVE MODE");
	bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	PQclear(r);
	if (!ok) {
		char msg[256];
		snprintf(msg, sizeof(msg), "%s", PQerrorMessage(pg));
		PQfinish(pg);
		it_fail("locking the notifications table: %s", msg);
	}
	return pg;
}

/* End a test session that holds a lock (a transaction is open on it). */
static void release_hold(PGconn *pg)
{
	PQclear(PQexec(pg, "ROLLBACK"));
	PQfinish(pg);
}

/*
 * Call fn (pg_cancel_backend or pg_terminate_backend) on the daemon's
 * auxiliary session; there must be exactly one.
 */
static void signal_aux(const char *db, const char *fn)
{
	char sql[256];
	snprintf(sql, sizeof(sql),
	         "SELECT count(%s(pid)) FROM pg_stat_activity"
	         " WHERE datname = $1 AND application_name = 'ordertrackd-aux'",
	         fn);
	assert_int_equal(it_db_long(db, sql, db, NULL), 1);
}

/* Wait until some query waits for the lock of lock_notifications(). */
static void wait_lock_waiter(const char *db)
{
	long long deadline = it_now_ms() + IT_REPLY_MS;
	while (it_db_long(db,
	                  "SELECT count(*) FROM pg_locks WHERE NOT granted"
	                  " AND relation = 'ordertrack.notifications'::regclass",
	                  NULL) == 0) {
		if (it_now_ms() > deadline)
			it_fail("no query waited for the notifications table within %d ms",
			        IT_REPLY_MS);
		it_sleep_ms(20);
	}
}

/*
 * A subscriber that joins while the page of another one is being read
 * gets its own rows from its cursor on: here an operator far ahead (after
 * the last seq but two) has its page read held back by a lock, a second
 * operator subscribes from 0 meanwhile, and once the page comes it must
 * not take those two rows as if they followed its cursor; it gets every
 * seq from 1, once each, and the first one still gets its two.
 */
static void test_subscribe_during_page(void **state)
{
	(void)state;
	const char *db = "notify_join";
	struct it_daemon *d = notify_daemon(db, NULL, NULL);
	send_scenarios(d);
	struct rows table;
	table_rows(db, "true", NULL, NULL, &table);
	expect_seq_contiguous(db);
	assert_true(table.n >= 10);

	PGconn *lock = lock_notifications(db);
	struct it_client *ahead = it_connect(d);
	it_hello_operator(ahead, OPS, OPS_TOKEN);
	subscribe_after(ahead, (long long)table.n - 2);
	wait_lock_waiter(db); /* the page after n - 2 is on its way */
	struct it_client *from0 = it_connect(d);
	it_hello_operator(from0, OPS, OPS_TOKEN);
	subscribe_after(from0, 0);
	release_hold(lock);

	expect_stream(from0, &table, 0, "operator subscribed from 0 during a page");
	expect_quiet(from0, QUIET_MS, "operator subscribed from 0, after the table");
	expect_stream(ahead, &table, table.n - 2, "operator subscribed ahead");
	expect_quiet(ahead, QUIET_MS, "operator subscribed ahead, after its two");

	/* And both go on live. */
	struct it_client *c = it_connect(d);
	it_hello(c, KIVU, KIVU_TOKEN);
	send_simple(c, "join-01", "order.created", "JOIN-1", NULL, "stored");
	rows_free(&table);
	table_rows(db, "true", NULL, NULL, &table);
	expect_stream(from0, &table, table.n - 1, "operator subscribed from 0, live");
	expect_stream(ahead, &table, table.n - 1, "operator subscribed ahead, live");
	rows_free(&table);
	it_daemon_stop_clean(d);
}

/*
 * The page query a subscriber waits for fails with the auxiliary session
 * up (it waits for a lock a test session holds, and is cancelled, as a
 * lock or statement timeout would end it).  No notification follows, so
 * nothing else wakes the feed: it reads again on its own a second later,
 * and the subscriber gets the whole table.
 */
static void test_subscribe_page_failed(void **state)
{
	(void)state;
	const char *db = "notify_page_failed";
	struct it_daemon *d = notify_daemon(db, NULL, NULL);
	send_scenarios(d);
	struct rows table;
	table_rows(db, "true", NULL, NULL, &table);
	assert_true(table.n >= 10);

	PGconn *lock = lock_notifications(db);
	struct it_client *sub = it_connect(d);
	it_hello_operator(sub, OPS, OPS_TOKEN);
	subscribe_after(sub, 0);
	wait_lock_waiter(db);
	off_t off = it_log_offset(d);
	signal_aux(db, "pg_cancel_backend");
	it_log_expect(d, off, "msg=\"feed query failed\" attempt=1 retry_ms=1000 subscribers=1",
	              IT_REPLY_MS);
	release_hold(lock);

	expect_stream(sub, &table, 0, "operator whose first page failed");
	it_log_expect(d, off, "msg=\"feed query failing no more\" failures=1", IT_REPLY_MS);
	expect_quiet(sub, QUIET_MS, "operator whose first page failed, after the table");
	assert_true(it_log_wait(d, off, "msg=\"database lost\" conn=aux", 0) < 0);
	rows_free(&table);
	it_daemon_stop_clean(d);
}

#define BACKLOG     300000
#define BACKLOG_STR "300000"

/*
 * A subscriber catching up on a long backlog that never pauses (its filter
 * drops all but the backlog's last row) must not hold up one that is live:
 * a notification committed meanwhile reaches the live subscriber while the
 * other is still far from the end; both get what they asked for.  Nor
 * those in between: one resuming a third of the way in gets the row just
 * after its cursor long before one five sixths in has caught up (the pages
 * for those below the largest cursor go to each in turn; they all went to
 * the smallest).
 */
static void test_backlog_does_not_hold_up_live(void **state)
{
	(void)state;
	const char *db = "notify_backlog_fair";
	struct it_daemon *d = notify_daemon(db, NULL, NULL);
	it_db_script(db, "INSERT INTO ordertrack.notifications"
	                 " (seq, kind, exporter, order_ref, body)"
	                 " SELECT g, 'order.status', 'kivu-coffee',"
	                 " CASE WHEN g = " BACKLOG_STR " THEN 'BACKLOG-LAST'"
	                 " WHEN g = 100001 THEN 'BACKLOG-MID' WHEN g = 299999 THEN 'BACKLOG-UP'"
	                 " ELSE 'BACKLOG' END,"
	                 " jsonb_build_object('type', 'notification', 'seq', g)"
	                 " FROM generate_series(1, " BACKLOG_STR ") g;"
	                 "UPDATE ordertrack.notification_counter SET last_seq = " BACKLOG_STR ";");

	struct it_client *live = it_connect(d);
	it_hello_operator(live, OPS, OPS_TOKEN);
	subscribe_after(live, BACKLOG);
	struct it_client *behind = it_connect(d);
	it_hello_operator(behind, OPS, OPS_TOKEN);
	subscribe(behind, "{\"type\":\"subscribe\",\"after\":0,\"orders\":[\"BACKLOG-LAST\"]}", 0);
	struct it_client *upper = it_connect(d);
	it_hello_operator(upper, OPS, OPS_TOKEN);
	subscribe(upper, "{\"type\":\"subscribe\",\"after\":250000,\"orders\":[\"BACKLOG-UP\"]}",
	          250000);
	struct it_client *middle = it_connect(d);
	it_hello_operator(middle, OPS, OPS_TOKEN);
	subscribe(middle, "{\"type\":\"subscribe\",\"after\":100000,\"orders\":[\"BACKLOG-MID\"]}",
	          100000);

	struct it_client *c = it_connect(d);
	it_hello(c, KIVU, KIVU_TOKEN);
	send_simple(c, "fair-01", "order.created", "FAIR-1", NULL, "stored");
	json_t *n = it_read_json(live, 10000);
	assert_int_equal(seq_of(n), BACKLOG + 1);
	json_decref(n);
	long long t0 = it_now_ms();
	expect_quiet(behind, 20, "the subscriber still catching up");

	n = it_read_json(middle, 60000);
	assert_int_equal(seq_of(n), 100001);
	json_decref(n);
	fprintf(stderr, "notify: the row a third in came %lld ms after the live notification\n",
	        it_now_ms() - t0);
	expect_quiet(upper, 0,
	             "the subscriber five sixths in, when the one a third in got its row");
	n = it_read_json(upper, 60000);
	assert_int_equal(seq_of(n), 299999);
	json_decref(n);
	n = it_read_json(behind, 60000);
	assert_int_equal(seq_of(n), BACKLOG);
	json_decref(n);
	fprintf(stderr, "notify: the backlog's end came %lld ms after the live notification\n",
	        it_now_ms() - t0);
	expect_quiet(behind, QUIET_MS, "the caught-up subscriber whose filter drops the rest");
	it_daemon_stop_clean(d);
}

/* ------------------------------------------------------------------ */
/* What must not notify                                                */
/* ------------------------------------------------------------------ */

/*
 * A batch that fails in the database rolls back with its notifications:
 * the daemon isolates the failing event (invalid_event), stores the others,
 * and the table has each change once, with no seq gap.
 */
static void test_rolled_back_batch(void **state)
{
	(void)state;
	const char *db = "notify_rollback";
	char extra[2048];
	it_pg_createdb(db);
	struct it_config cfg = notify_config(db, db, NULL, NULL, extra, sizeof(extra));
	cfg.batch_max_delay_ms = 50; /* the lines below go in one batch */
	struct it_daemon *d = it_daemon_start(&cfg, true);
	it_db_command(db,
	              "ALTER TABLE ordertrack.documents ADD CONSTRAINT t_fail"
	              " CHECK (number <> 'FAIL-ME')",
	              NULL);

	static const char *const ids[] = {"f-01", "f-02", "f-03", "f-04", "f-05", "f-06"};
	char *lines[6];
	lines[0] = it_event_line("f-01", "order.created", "F-1", NULL);
	lines[1] = it_event_line("f-02", "shipment.booked", "F-1", "F1-A");
	lines[2] = strdup("{\"type\":\"document.issued\",\"id\":\"f-03\","
	                  "\"occurred_at\":\"" IT_OCCURRED_AT "\",\"order\":\"F-1\","
	                  "\"document\":\"phytosanitary\",\"number\":\"FAIL-ME\"}");
	lines[3] = it_event_line("f-04", "shipment.departed", "F-1", "F1-A");
	lines[4] = it_event_line("f-05", "order.created", "F-2", NULL);
	lines[5] = it_event_line("f-06", "order.confirmed", "F-2", NULL);
	char *buf = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&buf, &len);
	if (mem == NULL || lines[2] == NULL)
		abort();
	for (int i = 0; i < 6; i++)
		fprintf(mem, "%s\n", lines[i]);
	fclose(mem);

	off_t log_at = it_log_offset(d);
	struct it_client *c = it_connect(d);
	it_hello(c, KIVU, KIVU_TOKEN);
	it_send_raw(c, buf, len);
	free(buf);
	for (int i = 0; i < 6; i++) {
		if (i == 2) {
			json_t *e = it_expect_error(c, "f-03", "invalid_event");
			json_decref(e);
		} else {
			it_expect_ack(c, ids[i], "stored");
		}
	}
	/* The failure hit the whole batch (the fold's rows), not one INSERT. */
	if (it_log_wait(d, log_at, "batch failed, isolating", 1000) < 0)
		it_fail("no \"batch failed, isolating\" in the log: the six events did not fail "
		        "as one batch, so this test proved nothing");

	assert_int_equal(
	    it_db_long(db, "SELECT count(*) FROM ordertrack.events WHERE event_id = 'f-03'", NULL),
	    0);
	assert_int_equal(note_count(db, "event_id = 'f-03'"), 0);
	/* Each change once: no row survives from the rolled-back attempt. */
	assert_int_equal(
	    note_count(db, "true"),
	    it_db_long(db,
	               "SELECT count(DISTINCT (kind, order_ref, coalesce(shipment_ref, ''),"
	               " coalesce(from_status, ''), coalesce(to_status, '')))"
	               " FROM ordertrack.notifications",
	               NULL));
	/* created, then booked, then in_transit for F-1; created, confirmed for F-2. */
	assert_int_equal(note_count(db, "kind = 'order.status' AND order_ref = 'F-1'"), 3);
	assert_int_equal(note_count(db, "kind = 'order.status' AND order_ref = 'F-2'"), 2);
	assert_int_equal(note_count(db, "kind = 'shipment.status' AND order_ref = 'F-1'"), 2);
	expect_seq_contiguous(db);

	/* Fixed in the database, the same event (same id) goes in. */
	long long before = max_seq(db);
	it_db_command(db, "ALTER TABLE ordertrack.documents DROP CONSTRAINT t_fail", NULL);
	send_event(c, lines[2], "stored");
	assert_int_equal(it_db_long(db,
	                            "SELECT count(*) FROM ordertrack.documents"
	                            " WHERE order_ref = 'F-1' AND number = 'FAIL-ME'",
	                            NULL),
	                 1);
	assert_true(max_seq(db) >= before);
	expect_seq_contiguous(db);
	for (int i = 0; i < 6; i++)
		free(lines[i]);
	it_daemon_stop_clean(d);
}

/* Duplicates, and late events that change no status, add no notification. */
static void test_no_change_no_notification(void **state)
{
	(void)state;
	const char *db = "notify_nochange";
	struct it_daemon *d = notify_daemon(db, NULL, NULL);
	send_scenarios(d);
	long before = note_count(db, "true");
	struct it_client *sub = subscriber(d, KIVU, KIVU_TOKEN, max_seq(db));

	/* The whole coffee scenario again: all duplicates. */
	send_file(d, KIVU_FILE, KIVU, KIVU_TOKEN, false, "duplicate");
	assert_int_equal(note_count(db, "true"), before);

	/* Late events of a delivered shipment, placed before later ones. */
	struct it_client *c = it_connect(d);
	it_hello(c, KIVU, KIVU_TOKEN);
	char *late[] = {
	    event_at("kvh-0142-late1", "shipment.picked_up", "KVH-2026-0142", "KVH-0142-A",
	             "2026-10-12T06:00:00+02:00"),
	    event_at("kvh-0142-late2", "shipment.checkpoint", "KVH-2026-0142", "KVH-0142-A",
	             "2026-10-13T05:00:00+02:00"),
	    event_at("kvh-0142-late3", "order.confirmed", "KVH-2026-0142", NULL,
	             "2026-10-05T12:00:00+02:00"),
	    event_at("kvh-0157-late1", "shipment.export_cleared", "KVH-2026-0157", "KVH-0157-A",
	             "2026-11-02T15:00:00+02:00"),
	};
	for (size_t i = 0; i < sizeof(late) / sizeof(late[0]); i++) {
		send_event(c, late[i], "stored");
		free(late[i]);
	}
	assert_int_equal(note_count(db, "true"), before);
	/* ...and sent again, duplicates too. */
	send_file(d, CHILI_FILE, CHILI, CHILI_TOKEN, true, "duplicate");
	assert_int_equal(note_count(db, "true"), before);
	expect_quiet(sub, QUIET_MS, "subscriber during duplicates and late events");
	it_daemon_stop_clean(d);
}

/*
 * A shipment event retracted in the batch that brought it is no cause: the
 * exception, the arrival after it and the arrival's retraction come in one
 * batch, the shipment goes booked -> exception, and the notification
 * names the exception, not the later, retracted arrival.
 */
static void test_retracted_event_not_cited(void **state)
{
	(void)state;
	const char *db = "notify_retracted_cause";
	char extra[2048];
	it_pg_createdb(db);
	struct it_config cfg = notify_config(db, db, NULL, NULL, extra, sizeof(extra));
	cfg.batch_max_delay_ms = 200; /* the lines sent together go in one batch */
	struct it_daemon *d = it_daemon_start(&cfg, true);
	d->cfg.extra_text = NULL;
	struct it_client *c = it_connect(d);
	it_hello(c, KIVU, KIVU_TOKEN);
	char *first[] = {
	    event_at("rc-created", "order.created", "RC-1", NULL, "2026-10-01T08:00:00Z"),
	    event_at("rc-booked", "shipment.booked", "RC-1", "RC-S1", "2026-10-01T10:00:00Z"),
	};
	for (size_t i = 0; i < 2; i++) {
		send_event(c, first[i], "stored");
		free(first[i]);
	}
	char *batch[] = {
	    event_at("rc-exception", "shipment.exception", "RC-1", "RC-S1", "2026-10-02T10:00:00Z"),
	    event_at("rc-a-target", "shipment.arrived", "RC-1", "RC-S1", "2026-10-03T10:00:00Z"),
	    event_at("rc-a", "event.retracted", "RC-1", NULL, "2026-10-04T10:00:00Z"),
	};
	char all[4096] = "";
	for (size_t i = 0; i < 3; i++) {
		strncat(all, batch[i], sizeof(all) - strlen(all) - 2);
		strcat(all, "\n");
		free(batch[i]);
	}
	it_send_raw(c, all, strlen(all));
	it_expect_ack(c, "rc-exception", "stored");
	it_expect_ack(c, "rc-a-target", "stored");
	it_expect_ack(c, "rc-a", "stored");
	/* The three went together (one transaction), or the test shows nothing. */
	assert_int_equal(it_db_long(db,
	                            "SELECT count(DISTINCT xmin::text) FROM ordertrack.events"
	                            " WHERE event_id IN ('rc-exception', 'rc-a-target', 'rc-a')",
	                            NULL),
	                 1);
	char *cause = it_db_value(db,
	                          "SELECT event_id FROM ordertrack.notifications"
	                          " WHERE kind = 'shipment.status' AND order_ref = 'RC-1'"
	                          " AND from_status = 'booked'",
	                          NULL);
	if (cause == NULL || strcmp(cause, "rc-exception") != 0)
		it_fail("booked -> exception is attributed to %s, not rc-exception",
		        cause ? cause : "nothing");
	free(cause);
	it_daemon_stop_clean(d);
}

/* ------------------------------------------------------------------ */
/* LISTEN ordertrack                                                   */
/* ------------------------------------------------------------------ */

/* A NOTIFY with {"seq","kind","exporter","order"} reaches a LISTEN client. */
static void test_listen_notify(void **state)
{
	(void)state;
	const char *db = "notify_listen";
	struct it_daemon *d = notify_daemon(db, NULL, NULL);
	PGconn *pg = PQconnectdb(it_conninfo(db));
	if (PQstatus(pg) != CONNECTION_OK) {
		char msg[256];
		snprintf(msg, sizeof(msg), "%s", PQerrorMessage(pg));
		PQfinish(pg);
		it_fail("connect: %s", msg);
	}
	PGresult *r = PQexec(pg, "LISTEN ordertrack");
	bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	PQclear(r);
	if (!ok) {
		PQfinish(pg);
		it_fail("LISTEN ordertrack failed");
	}

	struct it_client *c = it_connect(d);
	it_hello(c, KIVU, KIVU_TOKEN);
	send_simple(c, "ls-01", "order.created", "LISTEN-1", NULL, "stored");

	PGnotify *n = NULL;
	long long deadline = it_now_ms() + NOTE_MS;
	while (n == NULL) {
		if (!PQconsumeInput(pg))
			break;
		n = PQnotifies(pg);
		if (n != NULL)
			break;
		long long left = deadline - it_now_ms();
		if (left <= 0)
			break;
		struct pollfd p = {.fd = PQsocket(pg), .events = POLLIN};
		if (poll(&p, 1, (int)left) < 0 && errno != EINTR)
			break;
	}
	if (n == NULL) {
		PQfinish(pg);
		it_fail("no NOTIFY on channel ordertrack within %d ms of the ack", NOTE_MS);
	}
	char channel[64], payload[512];
	snprintf(channel, sizeof(channel), "%s", n->relname);
	snprintf(payload, sizeof(payload), "%s", n->extra);
	PQfreemem(n);
	PQfinish(pg);

	if (strcmp(channel, "ordertrack") != 0)
		it_fail("NOTIFY on channel %s", channel);
	json_t *o = json_loads(payload, 0, NULL);
	if (o == NULL || json_object_size(o) != 4 || !json_is_integer(json_object_get(o, "seq")))
		it_fail("payload is not {\"seq\",\"kind\",\"exporter\",\"order\"}: %s", payload);
	char seq[32];
	snprintf(seq, sizeof(seq), "%lld", seq_of(o));
	char *row = it_db_value(db,
	                        "SELECT json_build_object('seq', seq, 'kind', kind, 'exporter',"
	                        " exporter, 'order', order_ref)::text"
	                        " FROM ordertrack.notifications WHERE seq = $1::bigint",
	                        seq, NULL);
	json_t *want = json_loads(row, 0, NULL);
	if (!json_equal(o, want))
		it_fail("payload %s does not match the table row %s", payload, row);
	if (strcmp(it_json_str(o, "kind"), "order.status") != 0 ||
	    strcmp(it_json_str(o, "exporter"), KIVU) != 0 ||
	    strcmp(it_json_str(o, "order"), "LISTEN-1") != 0)
		it_fail("unexpected payload %s", payload);
	free(row);
	json_decref(want);
	json_decref(o);
	it_daemon_stop_clean(d);
}

/* ------------------------------------------------------------------ */
/* Filters and permissions                                             */
/* ------------------------------------------------------------------ */

/* Subscribe with line (its after is 0) and require exactly the rows of where. */
static void expect_filtered(struct it_daemon *d, const char *db, bool op, const char *exporter,
                            const char *token, const char *line, const char *where, const char *p1,
                            const char *p2)
{
	struct rows want;
	table_rows(db, where, p1, p2, &want);
	struct it_client *c = it_connect(d);
	if (op)
		it_hello_operator(c, exporter, token);
	else
		it_hello(c, exporter, token);
	subscribe(c, line, 0);
	expect_stream(c, &want, 0, line);
	expect_quiet(c, QUIET_MS, line);
	it_close(c);
	rows_free(&want);
}

/*
 * kinds and orders filters; an exporter sees only its own; exporters in an
 * exporter's subscribe and events from an operator are forbidden; a
 * negative after is invalid; an after beyond the newest seq waits.
 */
static void test_filters(void **state)
{
	(void)state;
	const char *db = "notify_filters";
	struct it_daemon *d = notify_daemon(db, NULL, NULL);
	send_scenarios(d);

	expect_filtered(d, db, false, KIVU, KIVU_TOKEN,
	                "{\"type\":\"subscribe\",\"after\":0,\"kinds\":[\"shipment.status\"]}",
	                "exporter = $1 AND kind = 'shipment.status'", KIVU, NULL);
	expect_filtered(d, db, false, KIVU, KIVU_TOKEN,
	                "{\"type\":\"subscribe\",\"after\":0,\"orders\":[\"KVH-2026-0157\"]}",
	                "exporter = $1 AND order_ref = 'KVH-2026-0157'", KIVU, NULL);
	expect_filtered(d, db, false, CHILI, CHILI_TOKEN,
	                "{\"type\":\"subscribe\",\"after\":0,\"kinds\":[\"order.anomaly\","
	                "\"shipment.eta\"],\"orders\":[\"AKC-HEMA-2026-031\",\"NOPE-1\"]}",
	                "exporter = $1 AND kind IN ('order.anomaly', 'shipment.eta')", CHILI, NULL);
	/* Another exporter's order, by name: nothing. */
	expect_filtered(d, db, false, KIVU, KIVU_TOKEN,
	                "{\"type\":\"subscribe\",\"after\":0,\"orders\":[\"AKC-HEMA-2026-031\"]}",
	                "false", NULL, NULL);
	/* An operator narrows with exporters, or matches an order at any exporter. */
	expect_filtered(d, db, true, OPS, OPS_TOKEN,
	                "{\"type\":\"subscribe\",\"after\":0,\"exporters\":[\"akagera-chili\"]}",
	                "exporter = $1", CHILI, NULL);
	expect_filtered(d, db, true, OPS, OPS_TOKEN,
	                "{\"type\":\"subscribe\",\"after\":0,\"orders\":[\"KVH-2026-0142\","
	                "\"AKC-HEMA-2026-031\"],\"kinds\":[\"order.status\"]}",
	                "kind = 'order.status'"
	                " AND order_ref IN ('KVH-2026-0142', 'AKC-HEMA-2026-031')",
	                NULL, NULL);

	/* exporters from an exporter: forbidden; the connection stays usable. */
	struct it_client *c = it_connect(d);
	it_hello(c, KIVU, KIVU_TOKEN);
	it_send(c, "{\"type\":\"subscribe\",\"after\":0,\"exporters\":[\"kivu-coffee\"]}");
	json_decref(it_expect_error(c, NULL, "forbidden"));
	it_send(c, "{\"type\":\"subscribe\",\"after\":-1}");
	json_t *e = it_expect_error(c, NULL, "invalid_request");
	if (strstr(it_json_str(e, "message"), "\"after\"") == NULL)
		it_fail("the refusal of after -1 should name \"after\": %s",
		        it_json_str(e, "message"));
	json_decref(e);
	it_send(c, "{\"type\":\"ping\"}");
	it_expect_pong(c);
	it_close(c);

	/* An event from an operator: forbidden, with its id, nothing stored. */
	long rows = it_db_rows(db);
	struct it_client *op = it_connect(d);
	it_hello_operator(op, OPS, OPS_TOKEN);
	char *ev = it_event_line("op-01", "order.created", "OPS-1", NULL);
	it_send(op, ev);
	free(ev);
	json_decref(it_expect_error(op, "op-01", "forbidden"));
	assert_int_equal(it_db_rows(db), rows);

	/*
	 * after beyond the last seq given out: subscribed, then feed_gap (a
	 * cursor no notification of this database can have).  Within it, the
	 * rows above it.  Each order.created below makes one notification.
	 */
	long long top = max_seq(db);
	subscribe_after(op, top + 2);
	char ahead[64];
	snprintf(ahead, sizeof(ahead), "after %lld is past the last notification", top + 2);
	expect_feed_ahead(op, ahead);
	struct it_client *k = it_connect(d);
	it_hello(k, KIVU, KIVU_TOKEN);
	for (int i = 1; i <= 4; i++) {
		char id[32], order[32];
		snprintf(id, sizeof(id), "new-%d", i);
		snprintf(order, sizeof(order), "NEW-%d", i);
		send_simple(k, id, "order.created", order, NULL, "stored");
	}
	assert_int_equal(max_seq(db), top + 4);
	subscribe_after(op, top + 2);
	struct rows want;
	char after[32];
	snprintf(after, sizeof(after), "%lld", top + 2);
	table_rows(db, "seq > $1::bigint", after, NULL, &want);
	assert_int_equal(want.n, 2);
	expect_stream(op, &want, 0, "operator subscribed within the seqs given out");
	expect_quiet(op, QUIET_MS, "operator after the new ones");
	rows_free(&want);
	it_daemon_stop_clean(d);
}

/* ------------------------------------------------------------------ */
/* Webhooks: a receiver of our own                                     */
/* ------------------------------------------------------------------ */

/* One request the receiver got, and what it answered. */
struct hook_req {
	bool post;
	char *uri;
	char *content_type; /* NULL when missing */
	char *delivery;     /* Ordertrack-Delivery */
	char *signature;    /* Ordertrack-Signature */
	char *host;         /* Host */
	char *body;
	int status;
	bool big_body;    /* answered with a 1 MiB body, past what the daemon reads */
	bool big_headers; /* answered with 32 KiB of headers, past what it takes */
};

/* Did the daemon see this answer as a failed delivery? */
static bool hook_req_failed(const struct hook_req *r)
{
	return r->status >= 300 || r->big_headers;
}

/*
 * The receiver.  Its thread owns base and http while it runs; the test
 * thread only sets the failure knobs and reads reqs, under mu.  Strings in
 * reqs are never freed before rcv_stop(), so a snapshot may share them.
 */
static struct {
	struct event_base *base;
	struct evhttp *http;
	struct event *tick;
	pthread_t thread;
	bool running;
	int port;
	atomic_bool stop;
	pthread_mutex_t mu;
	struct hook_req *reqs;
	size_t n, cap;
	int fail_next; /* answer 500 to this many more requests */
	bool fail_all; /* answer 500 to every request */
	int delay_ms;  /* answer each request this late (its thread sleeps) */
	int fail_code; /* what a failed request gets: 500 unless set */
	int big_next;  /* answer this many more with a 1 MiB body */
	int huge_next; /* then this many more 200s with 32 KiB of headers */
} rcv = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* strdup that keeps NULL. */
static char *dup_or_null(const char *s)
{
	if (s == NULL)
		return NULL;
	char *p = strdup(s);
	if (p == NULL)
		abort();
	return p;
}

/* Receiver thread: record the request, answer 500 or 204. */
static void rcv_request_cb(struct evhttp_request *req, void *arg)
{
	(void)arg;
	struct evkeyvalq *in = evhttp_request_get_input_headers(req);
	struct evbuffer *buf = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(buf);
	struct hook_req r = {
	    .post = evhttp_request_get_command(req) == EVHTTP_REQ_POST,
	    .uri = dup_or_null(evhttp_request_get_uri(req)),
	    .content_type = dup_or_null(evhttp_find_header(in, "Content-Type")),
	    .delivery = dup_or_null(evhttp_find_header(in, "Ordertrack-Delivery")),
	    .signature = dup_or_null(evhttp_find_header(in, "Ordertrack-Signature")),
	    .host = dup_or_null(evhttp_find_header(in, "Host")),
	    .body = malloc(len + 1),
	};
	if (r.body == NULL)
		abort();
	evbuffer_copyout(buf, r.body, len);
	r.body[len] = '\0';

	pthread_mutex_lock(&rcv.mu);
	r.status = 204;
	int failed = rcv.fail_code != 0 ? rcv.fail_code : 500;
	if (rcv.fail_all) {
		r.status = failed;
	} else if (rcv.fail_next > 0) {
		rcv.fail_next--;
		r.status = failed;
	}
	if (rcv.big_next > 0) {
		rcv.big_next--;
		r.big_body = true;
		if (r.status == 204)
			r.status = 200;
	} else if (rcv.huge_next > 0) {
		rcv.huge_next--;
		r.big_headers = true;
	}
	if (rcv.n == rcv.cap) {
		rcv.cap = rcv.cap ? 2 * rcv.cap : 64;
		rcv.reqs = realloc(rcv.reqs, rcv.cap * sizeof(*rcv.reqs));
		if (rcv.reqs == NULL)
			abort();
	}
	rcv.reqs[rcv.n++] = r;
	int delay_ms = rcv.delay_ms;
	pthread_mutex_unlock(&rcv.mu);
	if (delay_ms > 0)
		it_sleep_ms(delay_ms);
	if (r.status >= 300 && r.status < 400)
		evhttp_add_header(evhttp_request_get_output_headers(req), "Location",
		                  "http://127.0.0.1:9/moved");
	if (r.big_headers) {
		static char v[32 * 1024];
		memset(v, 'h', sizeof(v) - 1);
		evhttp_add_header(evhttp_request_get_output_headers(req), "X-Padding", v);
	}
	if (r.big_body) {
		struct evbuffer *big = evbuffer_new();
		static const char kb[1024] = {'x'};
		for (int i = 0; big != NULL && i < 1024; i++)
			evbuffer_add(big, kb, sizeof(kb));
		evhttp_send_reply(req, r.status, r.status < 300 ? "OK" : "Not Delivered", big);
		evbuffer_free(big);
		return;
	}
	evhttp_send_reply(req, r.status, r.status == 204 ? "No Content" : "Not Delivered", NULL);
}

/* Receiver thread: leave the loop once asked to. */
static void rcv_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (atomic_load(&rcv.stop))
		event_base_loopbreak(rcv.base);
}

/* Receiver thread body. */
static void *rcv_main(void *arg)
{
	(void)arg;
	event_base_dispatch(rcv.base);
	return NULL;
}

/*
 * Listen on addr (127.0.0.1 or ::1) at a free port and start the thread;
 * the first fail_next requests get 500.
 */
static void rcv_start_at(const char *addr, int fail_next)
{
	struct sockaddr_storage sa;
	socklen_t salen = sizeof(sa);

	rcv.base = event_base_new();
	rcv.http = rcv.base ? evhttp_new(rcv.base) : NULL;
	if (rcv.http == NULL)
		it_fail("cannot make the webhook receiver");
	struct evhttp_bound_socket *bs = evhttp_bind_socket_with_handle(rcv.http, addr, 0);
	if (bs == NULL ||
	    getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&sa, &salen) != 0)
		it_fail("webhook receiver: cannot listen on %s: %s", addr, strerror(errno));
	rcv.port = ntohs(sa.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&sa)->sin6_port
	                                          : ((struct sockaddr_in *)&sa)->sin_port);
	evhttp_set_gencb(rcv.http, rcv_request_cb, NULL);
	rcv.tick = event_new(rcv.base, -1, EV_PERSIST, rcv_tick_cb, NULL);
	struct timeval tv = {0, 20000};
	if (rcv.tick == NULL || event_add(rcv.tick, &tv) != 0)
		it_fail("webhook receiver: cannot add its timer");
	rcv.fail_next = fail_next;
	rcv.fail_all = false;
	rcv.delay_ms = 0;
	rcv.fail_code = 0;
	rcv.big_next = 0;
	rcv.huge_next = 0;
	atomic_store(&rcv.stop, false);
	if (pthread_create(&rcv.thread, NULL, rcv_main, NULL) != 0)
		it_fail("webhook receiver: pthread_create failed");
	rcv.running = true;
}

/* rcv_start_at() on 127.0.0.1. */
static void rcv_start(int fail_next)
{
	rcv_start_at("127.0.0.1", fail_next);
}

/* Stop the thread and free everything (also after a failed test). */
static void rcv_stop(void)
{
	if (rcv.running) {
		atomic_store(&rcv.stop, true);
		pthread_join(rcv.thread, NULL);
		rcv.running = false;
	}
	if (rcv.tick != NULL)
		event_free(rcv.tick);
	if (rcv.http != NULL)
		evhttp_free(rcv.http);
	if (rcv.base != NULL)
		event_base_free(rcv.base);
	rcv.tick = NULL;
	rcv.http = NULL;
	rcv.base = NULL;
	for (size_t i = 0; i < rcv.n; i++) {
		free(rcv.reqs[i].uri);
		free(rcv.reqs[i].content_type);
		free(rcv.reqs[i].delivery);
		free(rcv.reqs[i].signature);
		free(rcv.reqs[i].host);
		free(rcv.reqs[i].body);
	}
	free(rcv.reqs);
	rcv.reqs = NULL;
	rcv.n = rcv.cap = 0;
}

/* Answer 500 to everything from now on, or stop doing so. */
static void rcv_fail_all(bool on)
{
	pthread_mutex_lock(&rcv.mu);
	rcv.fail_all = on;
	pthread_mutex_unlock(&rcv.mu);
}

/* A copy of the requests so far (the strings are shared); free() it. */
static size_t rcv_snapshot(struct hook_req **out)
{
	pthread_mutex_lock(&rcv.mu);
	size_t n = rcv.n;
	*out = calloc(n + 1, sizeof(**out));
	if (*out == NULL)
		abort();
	if (n > 0)
		memcpy(*out, rcv.reqs, n * sizeof(**out));
	pthread_mutex_unlock(&rcv.mu);
	return n;
}

/* Fail unless the request carries one valid v1 signature with HOOK_SECRET and a recent t. */
static void expect_signed(const struct hook_req *r, size_t i)
{
	const char *s = r->signature;
	if (s == NULL || strncmp(s, "t=", 2) != 0)
		it_fail("request %zu: Ordertrack-Signature missing or not t=...: %s", i,
		        s ? s : "(none)");
	char *end;
	long long t = strtoll(s + 2, &end, 10);
	if (end == s + 2 || strncmp(end, ",v1=", 4) != 0 || strlen(end + 4) != 64)
		it_fail("request %zu: Ordertrack-Signature is not t=<n>,v1=<64 hex>: %s", i, s);
	long long now = (long long)time(NULL);
	if (t < now - 300 || t > now + 5)
		it_fail("request %zu: signature time %lld is not recent (now %lld)", i, t, now);

	char *msg;
	int mlen = asprintf(&msg, "%lld.%s", t, r->body);
	if (mlen < 0)
		abort();
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	if (HMAC(EVP_sha256(), HOOK_SECRET, (int)strlen(HOOK_SECRET), (const unsigned char *)msg,
	         (size_t)mlen, md, &mdlen) == NULL ||
	    mdlen != 32) {
		free(msg);
		it_fail("HMAC failed");
	}
	free(msg);
	char hex[65];
	for (unsigned int k = 0; k < mdlen; k++)
		snprintf(hex + 2 * k, 3, "%02x", md[k]);
	if (strcmp(hex, end + 4) != 0)
		it_fail("request %zu: v1=%s, but HMAC-SHA256 of \"<t>.<body>\" is %s", i, end + 4,
		        hex);
}

/*
 * Check every request so far against want (the rows the webhook should
 * get, in seq order): POST /hook, JSON, Ordertrack-Delivery equal to the
 * body's seq, a valid signature, the body equal to the table's; each row
 * in turn, a repeat only right after a failed attempt.  Returns how many
 * rows have been acknowledged with a 2xx; *failures counts the 500s.
 */
static size_t check_deliveries(const struct rows *want, size_t *failures)
{
	struct hook_req *reqs;
	size_t n = rcv_snapshot(&reqs);
	size_t next = 0;
	*failures = 0;
	for (size_t i = 0; i < n; i++) {
		const struct hook_req *r = &reqs[i];
		if (!r->post || r->uri == NULL || strcmp(r->uri, "/hook") != 0)
			it_fail("request %zu is not POST /hook (uri %s)", i, r->uri ? r->uri : "?");
		if (r->content_type == NULL || strcmp(r->content_type, "application/json") != 0)
			it_fail("request %zu: Content-Type %s", i,
			        r->content_type ? r->content_type : "(none)");
		json_t *b = json_loads(r->body, 0, NULL);
		if (b == NULL || !json_is_integer(json_object_get(b, "seq")))
			it_fail("request %zu: the body is not a notification: %.200s", i, r->body);
		long long seq = seq_of(b);
		if (r->delivery == NULL || strtoll(r->delivery, NULL, 10) != seq)
			it_fail("request %zu: Ordertrack-Delivery %s, body seq %lld", i,
			        r->delivery ? r->delivery : "(none)", seq);
		expect_signed(r, i);
		json_t *prev_b = i > 0 ? json_loads(reqs[i - 1].body, 0, NULL) : NULL;
		long long prev_seq = prev_b != NULL ? seq_of(prev_b) : -1;
		json_decref(prev_b);
		if (i > 0 && seq == prev_seq) {
			if (!hook_req_failed(&reqs[i - 1]))
				it_fail("request %zu: seq %lld delivered again after a 2xx", i,
				        seq);
		} else {
			if (i > 0 && hook_req_failed(&reqs[i - 1]))
				it_fail(
				    "request %zu: seq %lld sent after seq %lld failed (skipped it)",
				    i, seq, prev_seq);
			if (next >= want->n)
				it_fail("request %zu: seq %lld, but the table has no more rows for "
				        "this "
				        "webhook",
				        i, seq);
			if (seq != seq_of(want->v[next]))
				it_fail("request %zu: seq %lld, expected %lld (row %zu of the "
				        "webhook's)",
				        i, seq, seq_of(want->v[next]), next);
			next++;
		}
		expect_same_note(b, want->v[next - 1], next - 1, "webhook body");
		json_decref(b);
		if (hook_req_failed(r))
			(*failures)++;
	}
	size_t done = next;
	if (n > 0 && hook_req_failed(&reqs[n - 1]))
		done--;
	free(reqs);
	return done;
}

/* Webhook "erp" to the test receiver, with more members ("" or e.g. kinds), as config text. */
static void erp_hook(char *out, size_t cap, const char *more)
{
	snprintf(out, cap,
	         "webhooks = ( { id = \"erp\"; url = \"http://127.0.0.1:%d/hook\";"
	         " secret = \"" HOOK_SECRET "\"; %s } );\n",
	         rcv.port, more);
}

/* Wait until every row of want is acknowledged, checking as it goes; returns the failures. */
static size_t wait_delivered(const struct rows *want, int ms)
{
	long long deadline = it_now_ms() + ms;
	size_t failures, done;
	while ((done = check_deliveries(want, &failures)) < want->n) {
		if (it_now_ms() > deadline)
			it_fail("webhook: %zu of %zu notifications acknowledged within %d ms "
			        "(%zu failed attempts)",
			        done, want->n, ms, failures);
		it_sleep_ms(50);
	}
	return failures;
}

/*
 * The webhook "erp" has delivered each of all's rows once, in order, and
 * nothing more: its cursor reaches the last row within ms, then a quiet
 * moment passes (check_deliveries fails on a row delivered again after its
 * 2xx, out of order, or past the table).
 */
static void expect_each_delivered_once(const char *db, const struct rows *all, int ms)
{
	it_webhook_wait_cursor(db, "erp", seq_of(all->v[all->n - 1]), ms);
	it_sleep_ms(QUIET_MS);
	size_t failures;
	assert_int_equal(check_deliveries(all, &failures), all->n);
	assert_int_equal(failures, 0);
}

/*
 * A webhook for kivu-coffee whose endpoint fails the first attempts: every
 * kivu notification arrives in seq order after the retries, signed, and
 * nothing of akagera-chili.  Stopped while failing and started again (the
 * endpoint now named localhost), the daemon resumes at the cursor: nothing
 * is skipped.
 */
static void test_webhook(void **state)
{
	(void)state;
	const char *db = "notify_hook";
	char hooks[512], extra[2048];
	rcv_start(HOOK_FAILURES);
	erp_hook(hooks, sizeof(hooks), "exporters = [ \"" KIVU "\" ];");
	it_pg_createdb(db);
	struct it_config cfg = notify_config("notify_hook", db, NULL, hooks, extra, sizeof(extra));
	struct it_daemon *d = it_daemon_start(&cfg, true);
	send_scenarios(d);

	struct rows kivu;
	table_rows(db, "exporter = $1", KIVU, NULL, &kivu);
	assert_true(kivu.n > 0);
	long long t0 = it_now_ms();
	size_t failures = wait_delivered(&kivu, 60000);
	fprintf(stderr, "notify: %zu webhook deliveries after %zu failures in %lld ms\n", kivu.n,
	        failures, it_now_ms() - t0);
	assert_int_equal(failures, HOOK_FAILURES);
	it_log_expect(d, 0, "msg=\"webhook delivery failed\"", 1000);
	it_webhook_wait_cursor(db, "erp", seq_of(kivu.v[kivu.n - 1]), 10000);
	long long cursor = seq_of(kivu.v[kivu.n - 1]);

	/* Now the endpoint is down; two new notifications wait behind it. */
	rcv_fail_all(true);
	struct hook_req *snap;
	size_t before = rcv_snapshot(&snap);
	free(snap);
	struct it_client *k = it_connect(d);
	it_hello(k, KIVU, KIVU_TOKEN);
	send_simple(k, "hk-01", "order.created", "KVH-2026-0900", NULL, "stored");
	send_simple(k, "hk-02", "order.confirmed", "KVH-2026-0900", NULL, "stored");
	long long deadline = it_now_ms() + 10000;
	while (rcv_snapshot(&snap) == before) {
		free(snap);
		if (it_now_ms() > deadline)
			it_fail("webhook: no attempt at the new notifications within 10 s");
		it_sleep_ms(20);
	}
	free(snap);
	it_daemon_stop_clean(d);
	/* The database was new: the webhook waited for the schema before it
	 * read its cursor, so no query of it failed on a missing table. */
	assert_true(it_log_wait(d, 0, "msg=\"query failed\"", 0) < 0);
	assert_int_equal(it_db_long(db,
	                            "SELECT last_seq FROM ordertrack.webhook_cursors"
	                            " WHERE webhook = 'erp'",
	                            NULL),
	                 cursor);

	/* Up again, with the same database: it resumes at the cursor.  The
	 * endpoint is named by host name now, which the daemon resolves. */
	rcv_fail_all(false);
	snprintf(hooks, sizeof(hooks),
	         "webhooks = ( { id = \"erp\"; url = \"http://localhost:%d/hook\";"
	         " secret = \"" HOOK_SECRET "\"; exporters = [ \"" KIVU "\" ]; } );\n",
	         rcv.port);
	struct it_config cfg2 =
	    notify_config("notify_hook_restarted", db, NULL, hooks, extra, sizeof(extra));
	d = it_daemon_start(&cfg2, true);
	k = it_connect(d);
	it_hello(k, KIVU, KIVU_TOKEN);
	send_simple(k, "hk-03", "order.created", "KVH-2026-0901", NULL, "stored");
	rows_free(&kivu);
	table_rows(db, "exporter = $1", KIVU, NULL, &kivu);
	wait_delivered(&kivu, 30000);
	it_webhook_wait_cursor(db, "erp", seq_of(kivu.v[kivu.n - 1]), 10000);
	/* The rows that are not kivu-coffee's never went out (check_deliveries saw to it). */
	assert_true(note_count(db, "exporter <> 'kivu-coffee'") > 0);
	rows_free(&kivu);
	it_daemon_stop_clean(d);
	rcv_stop();
}

/*
 * A webhook with kinds = [shipment.status, order.anomaly] gets exactly the
 * rows of those kinds, in seq order, and none of the others; rows of other
 * kinds between them do not hold its cursor back.  After the last of them,
 * more rows of other kinds and then one of its kinds: it gets that one
 * alone, and its cursor is that row's seq.
 */
static void test_webhook_kinds(void **state)
{
	(void)state;
	const char *db = "notify_hook_kinds";
	static const char where[] = "kind = ANY ($1::text[])";
	static const char kinds[] = "{shipment.status,order.anomaly}";
	char hooks[512];
	rcv_start(0);
	erp_hook(hooks, sizeof(hooks), "kinds = [ \"shipment.status\", \"order.anomaly\" ];");
	struct it_daemon *d = notify_daemon(db, NULL, hooks);
	send_scenarios(d);

	struct rows want;
	table_rows(db, where, kinds, NULL, &want);
	long others = note_count(db, "kind NOT IN ('shipment.status', 'order.anomaly')");
	if (want.n < 5 || others < 5)
		it_fail("the scenarios made %zu rows of the webhook's kinds and %ld of others",
		        want.n, others);
	wait_delivered(&want, 60000);
	it_webhook_wait_cursor(db, "erp", seq_of(want.v[want.n - 1]), 10000);

	/* Rows of other kinds only (order.status; an ETA), then a shipment.status. */
	struct it_client *c = it_connect(d);
	it_hello(c, KIVU, KIVU_TOKEN);
	long long before = max_seq(db);
	send_simple(c, "hkk-01", "order.created", "KVH-2026-0950", NULL, "stored");
	send_simple(c, "hkk-02", "order.confirmed", "KVH-2026-0950", NULL, "stored");
	long long skipped = max_seq(db);
	if (skipped - before < 2 ||
	    note_count(db, "seq > (SELECT max(seq) - 2 FROM ordertrack.notifications)"
	                   " AND kind = 'order.status'") != 2)
		it_fail("hkk-01 and hkk-02 did not make two order.status rows");
	send_simple(c, "hkk-03", "shipment.booked", "KVH-2026-0950", "KVH-0950-A", "stored");
	it_close(c);
	rows_free(&want);
	table_rows(db, where, kinds, NULL, &want);
	if (seq_of(want.v[want.n - 1]) <= skipped)
		it_fail("hkk-03 made no shipment.status row after seq %lld", skipped);
	wait_delivered(&want, 30000);
	it_webhook_wait_cursor(db, "erp", seq_of(want.v[want.n - 1]), 10000);
	/* Nothing more comes: check_deliveries fails on any request past want. */
	it_sleep_ms(QUIET_MS);
	size_t failures;
	assert_int_equal(check_deliveries(&want, &failures), want.n);
	assert_int_equal(failures, 0);
	rows_free(&want);
	it_daemon_stop_clean(d);
	rcv_stop();
}

/*
 * A webhook whose kinds rarely match (here: never) reads each notification
 * about once, not every notification since its cursor at every batch.  The
 * table holds 100,000 notifications of other kinds first (written here, as
 * a busy day would leave them; large enough that PostgreSQL reads it by
 * its index), then 150 batches of one notification each; the rows
 * PostgreSQL counts as read from the table must stay near 100,000 (one
 * pass), where reading from the cursor at each batch reads 15 million.
 */
static void test_webhook_rare_kind_reads_once(void **state)
{
	(void)state;
	enum { BATCHES = 150, EARLIER = 100000 };
	const char *db = "notify_hook_rare";
	char hooks[512];
	rcv_start(0);
	snprintf(hooks, sizeof(hooks),
	         "webhooks = ( { id = \"rare\"; url = \"http://127.0.0.1:%d/hook\";"
	         " secret = \"" HOOK_SECRET "\"; kinds = [ \"alert.overdue\" ]; } );\n",
	         rcv.port);
	struct it_daemon *d = notify_daemon(db, NULL, hooks);
	it_db_script(db, "INSERT INTO ordertrack.notifications"
	                 " (seq, kind, exporter, order_ref, to_status, body)"
	                 " SELECT i, 'order.status', 'kivu-coffee', 'KVE-' || i, 'created',"
	                 " jsonb_build_object('type', 'notification', 'seq', i)"
	                 " FROM generate_series(1, 100000) i;"
	                 "UPDATE ordertrack.notification_counter SET last_seq = 100000;"
	                 "ANALYZE ordertrack.notifications;"
	                 "SELECT pg_stat_reset();");
	struct it_client *c = it_connect(d);
	it_hello(c, KIVU, KIVU_TOKEN);
	for (int i = 0; i < BATCHES; i++) {
		char id[32], order[32];
		snprintf(id, sizeof(id), "rare-%03d", i);
		snprintf(order, sizeof(order), "KVR-2026-%03d", i);
		send_simple(c, id, "order.created", order, NULL, "stored");
	}
	it_close(c);
	it_sleep_ms(QUIET_MS);
	it_daemon_stop_clean(d);
	/* The daemon's sessions report their counts as they end. */
	for (int i = 0; i < 100 && it_db_long(db,
	                                      "SELECT count(*) FROM pg_stat_activity WHERE"
	                                      " application_name LIKE 'ordertrackd%'",
	                                      NULL) > 0;
	     i++)
		it_sleep_ms(50);
	long read = it_db_long(db,
	                       "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)"
	                       " FROM pg_stat_user_tables"
	                       " WHERE relid = 'ordertrack.notifications'::regclass",
	                       NULL);
	printf("%d batches over %d notifications: %ld rows read from the table\n", BATCHES, EARLIER,
	       read);
	assert_true(max_seq(db) >= EARLIER + BATCHES);
	if (read > 3L * EARLIER)
		it_fail("%ld rows read by %d batches", read, BATCHES);
	pthread_mutex_lock(&rcv.mu);
	size_t posted = rcv.n;
	pthread_mutex_unlock(&rcv.mu);
	assert_int_equal(posted, 0);
	rcv_stop();
}

/* A connection of the test to db, or fail. */
static PGconn *db_connect(const char *db)
{
	PGconn *pg = PQconnectdb(it_conninfo(db));
	if (PQstatus(pg) != CONNECTION_OK) {
		char msg[256];
		snprintf(msg, sizeof(msg), "%s", PQerrorMessage(pg));
		PQfinish(pg);
		it_fail("connect: %s", msg);
	}
	return pg;
}

/* Run sql on pg; fail unless it succeeds. */
static void db_exec(PGconn *pg, const char *sql)
{
	PGresult *r = PQexec(pg, sql);
	ExecStatusType st = PQresultStatus(r);
	PQclear(r);
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
		it_fail("%s: %s", sql, PQerrorMessage(pg));
}

/*
 * Store a notification for order as another daemon on the database does:
 * emit_notifications(), which also says NOTIFY ordertrack.
 */
static void emit_elsewhere(PGconn *pg, const char *order)
{
	char sql[1024];
	snprintf(sql, sizeof(sql),
	         "SELECT ordertrack.emit_notifications('[{\"kind\": \"order.status\","
	         " \"exporter\": \"" KIVU "\", \"order\": \"%s\", \"shipment\": null,"
	         " \"from\": null, \"to\": \"created\", \"event\": \"%s-ev\","
	         " \"occurred_at\": \"" IT_OCCURRED_AT "\"}]'::jsonb)",
	         order, order);
	db_exec(pg, sql);
}

/*
 * A webhook hears of what it did not see committed: a notification
 * another daemon stores reaches the endpoint through its NOTIFY alone, and
 * one stored while this daemon's auxiliary connection was down (so its
 * NOTIFY went to nobody) once that connection is back.  No event is
 * ingested here, so no local commit wakes the webhook.
 */
static void test_webhook_woken_from_outside(void **state)
{
	(void)state;
	const char *db = "notify_hook_remote";
	char hooks[512], extra[2048];
	rcv_start(0);
	erp_hook(hooks, sizeof(hooks), "");
	it_pg_createdb(db);
	struct it_config cfg = notify_config(db, db, NULL, hooks, extra, sizeof(extra));
	struct it_daemon *d = it_daemon_start(&cfg, true);
	it_log_expect(d, 0, "msg=\"webhook ready\"", IT_REPLY_MS);
	it_sleep_ms(500); /* it has looked, found nothing, and is idle */
	PGconn *pg = db_connect(db);

	emit_elsewhere(pg, "REMOTE-1");
	struct rows all;
	table_rows(db, "true", NULL, NULL, &all);
	assert_int_equal(all.n, 1);
	wait_delivered(&all, 10000);
	rows_free(&all);

	/* The auxiliary connection goes, and cannot come back for a while. */
	off_t off = it_log_offset(d);
	char sql[256];
	snprintf(sql, sizeof(sql), "ALTER DATABASE %s ALLOW_CONNECTIONS false", db);
	it_db_command("postgres", sql, NULL);
	db_exec(pg, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
	            " WHERE datname = current_database() AND application_name = 'ordertrackd-aux'");
	it_log_expect(d, off, "msg=\"database unavailable\" conn=aux", IT_REPLY_MS);
	emit_elsewhere(pg, "REMOTE-2");
	snprintf(sql, sizeof(sql), "ALTER DATABASE %s ALLOW_CONNECTIONS true", db);
	it_db_command("postgres", sql, NULL);
	PQfinish(pg);
	it_log_expect(d, off, "msg=\"database connected\" conn=aux", 30000);
	table_rows(db, "true", NULL, NULL, &all);
	assert_int_equal(all.n, 2);
	wait_delivered(&all, 10000);
	rows_free(&all);
	it_daemon_stop_clean(d);
	rcv_stop();
}

/*
 * Two daemons on one database, both configured with the same webhook
 * (one cursor row): one delivers and the other stands by, so every
 * notification, whichever daemon stored it, reaches the endpoint once and
 * in seq order.  When the delivering daemon stops, the other takes over
 * from the cursor.
 */
static void test_webhook_two_daemons(void **state)
{
	(void)state;
	const char *db = "notify_hook_two";
	char hooks[512], extra_a[2048], extra_b[2048];
	rcv_start(0);
	erp_hook(hooks, sizeof(hooks), "");
	it_pg_createdb(db);
	struct it_config cfg_a =
	    notify_config("notify_hook_two_a", db, NULL, hooks, extra_a, sizeof(extra_a));
	struct it_daemon *a = it_daemon_start(&cfg_a, true);
	a->cfg.extra_text = NULL;
	it_log_expect(a, 0, "msg=\"webhook ready\"", IT_REPLY_MS);
	struct it_config cfg_b =
	    notify_config("notify_hook_two_b", db, NULL, hooks, extra_b, sizeof(extra_b));
	struct it_daemon *b = it_daemon_start(&cfg_b, true);
	b->cfg.extra_text = NULL;

	/* Orders stored by both daemons, in turn. */
	struct it_client *ca = it_connect(a), *cb = it_connect(b);
	it_hello(ca, KIVU, KIVU_TOKEN);
	it_hello(cb, KIVU, KIVU_TOKEN);
	for (int i = 0; i < 20; i++) {
		char id[32], order[32];
		snprintf(id, sizeof(id), "two-%02d", i);
		snprintf(order, sizeof(order), "TWO-%02d", i);
		send_simple(i % 2 ? cb : ca, id, "order.created", order, NULL, "stored");
	}
	struct rows all;
	table_rows(db, "true", NULL, NULL, &all);
	assert_int_equal(all.n, 20);
	/* check_deliveries fails on a second delivery of a row, or one out of order. */
	wait_delivered(&all, 30000);
	expect_each_delivered_once(db, &all, 10000);
	it_log_expect(b, 0, "msg=\"webhook standby\"", IT_REPLY_MS);
	rows_free(&all);

	/* The delivering daemon stops: the other one takes over from the cursor. */
	it_close(ca);
	it_daemon_stop_clean(a);
	send_simple(cb, "two-20", "order.created", "TWO-20", NULL, "stored");
	send_simple(cb, "two-21", "order.created", "TWO-21", NULL, "stored");
	table_rows(db, "true", NULL, NULL, &all);
	assert_int_equal(all.n, 22);
	wait_delivered(&all, 30000);
	it_webhook_wait_cursor(db, "erp", seq_of(all.v[all.n - 1]), 10000);
	it_log_expect(b, 0, "msg=\"webhook ready\"", IT_REPLY_MS);
	rows_free(&all);
	it_close(cb);
	it_daemon_stop_clean(b);
	rcv_stop();
}

/*
 * A schema newer than the daemon (a later release migrated the database):
 * the daemon refuses it, and its webhooks must not run on it either, or an
 * old binary would write cursors and POST notifications on tables whose
 * meaning it does not know, next to the newer daemon that owns them.
 * Nothing is delivered and no cursor row is made while the schema is
 * refused; once it is the daemon's own again, every row goes out.
 */
static void test_webhook_newer_schema(void **state)
{
	(void)state;
	const char *db = "notify_hook_newer";
	char hooks[512], extra[2048];

	/* A database with notifications, left by a daemon without webhooks. */
	struct it_daemon *d = notify_daemon(db, NULL, NULL);
	struct it_client *c = it_connect(d);
	it_hello(c, KIVU, KIVU_TOKEN);
	send_simple(c, "newer-01", "order.created", "NEWER-1", NULL, "stored");
	it_close(c);
	it_daemon_stop_clean(d);
	it_db_command(db,
	              "INSERT INTO ordertrack.schema_migrations (version, name)"
	              " VALUES (9999, 'from_a_later_release')",
	              NULL);

	rcv_start(0);
	erp_hook(hooks, sizeof(hooks), "");
	struct it_config cfg =
	    notify_config("notify_hook_newer_b", db, NULL, hooks, extra, sizeof(extra));
	d = it_daemon_start(&cfg, false);
	d->cfg.extra_text = NULL;
	off_t off = it_log_expect(
	    d, 0, "reason=\"database schema version 9999 is newer than this daemon's", 20000);
	/* The auxiliary session is up meanwhile: time for a lock, a cursor and a POST. */
	it_sleep_ms(1500);
	struct hook_req *snap;
	size_t posted = rcv_snapshot(&snap);
	free(snap);
	if (posted != 0)
		it_fail("%zu webhook requests sent on a schema the daemon refused", posted);
	assert_int_equal(it_db_long(db, "SELECT count(*) FROM ordertrack.webhook_cursors", NULL),
	                 0);
	if (it_log_wait(d, 0, "msg=ready", 0) >= 0)
		it_fail("msg=ready logged on a schema the daemon refused");

	/* Back to the daemon's own version: ready, and the webhook delivers. */
	it_db_command(db, "DELETE FROM ordertrack.schema_migrations WHERE version = 9999", NULL);
	it_log_expect(d, off, "msg=ready", 30000);
	struct rows all;
	table_rows(db, "true", NULL, NULL, &all);
	assert_true(all.n > 0);
	wait_delivered(&all, 30000);
	rows_free(&all);
	it_daemon_stop_clean(d);
	rcv_stop();
}

/* Hold the webhook's cursor row from a test session until it ends. */
static PGconn *hold_cursor_row(const char *db)
{
	PGconn *pg = PQconnectdb(it_conninfo(db));
	PGresult *r = PQexec(pg, "BEGIN; SELECT 1 FROM ordertrack.webhook_cursors"
	                         " WHERE webhook = 'erp' FOR UPDATE");
	bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
	PQclear(r);
	if (!ok)
		it_fail("locking the cursor row: %s", PQerrorMessage(pg));
	return pg;
}

/* Wait until the daemon's auxiliary session waits for a lock. */
static void wait_aux_waits(const char *db)
{
	long long deadline = it_now_ms() + IT_REPLY_MS;
	while (it_db_long(db,
	                  "SELECT count(*) FROM pg_stat_activity WHERE datname = $1"
	                  " AND application_name = 'ordertrackd-aux' AND wait_event_type = 'Lock'",
	                  db, NULL) == 0) {
		if (it_now_ms() > deadline)
			it_fail("the cursor write did not wait for the row within %d ms",
			        IT_REPLY_MS);
		it_sleep_ms(20);
	}
}

/*
 * A daemon on db with webhooks hooks, to which kivu-coffee has sent one
 * event (id, order.created of order); *all holds the notifications it
 * made, for wait_delivered().
 */
static struct it_daemon *hook_daemon_one(const char *db, const char *hooks, const char *id,
                                         const char *order, struct rows *all)
{
	struct it_daemon *d = notify_daemon(db, NULL, hooks);
	struct it_client *c = it_connect(d);
	it_hello(c, KIVU, KIVU_TOKEN);
	send_simple(c, id, "order.created", order, NULL, "stored");
	table_rows(db, "true", NULL, NULL, all);
	assert_true(all->n > 0);
	return d;
}

/*
 * An endpoint that answers a redirect: the daemon does not follow it (the
 * signed body would go to a host nobody configured), says why in the
 * failure's log line, and delivers once the endpoint answers 2xx.
 */
static void test_webhook_redirect(void **state)
{
	(void)state;
	const char *db = "notify_hook_redirect";
	char hooks[512];
	rcv_start(2);
	pthread_mutex_lock(&rcv.mu);
	rcv.fail_code = 301;
	pthread_mutex_unlock(&rcv.mu);
	erp_hook(hooks, sizeof(hooks), "");
	struct rows all;
	struct it_daemon *d = hook_daemon_one(db, hooks, "redir-01", "REDIR-1", &all);
	assert_int_equal(wait_delivered(&all, 30000), 2);
	it_log_expect(d, 0, "status=301 reason=\"redirect not followed: fix the url\" attempt=1",
	              0);
	struct hook_req *snap;
	size_t n = rcv_snapshot(&snap);
	for (size_t i = 0; i < n; i++)
		if (strcmp(snap[i].uri, "/hook") != 0)
			it_fail("a request went to %s, not /hook", snap[i].uri);
	free(snap);
	rows_free(&all);
	it_daemon_stop_clean(d);
	rcv_stop();
}

/*
 * An endpoint's answers the daemon reads only so far (16 KiB of headers,
 * 64 KiB of body) instead of keeping whatever comes: a 500 with a 1 MiB
 * body fails on its status; a 200 with 32 KiB of headers fails, the line
 * saying so; the next, plain answer delivers.  A 200
 * with a 1 MiB body delivers at once: the status was read before the
 * body.  An endpoint that is gone gets its own reason.
 */
static void test_webhook_answer_too_large(void **state)
{
	(void)state;
	const char *db = "notify_hook_big";
	char hooks[512];
	rcv_start(1);
	pthread_mutex_lock(&rcv.mu);
	rcv.big_next = 1;
	rcv.huge_next = 1;
	pthread_mutex_unlock(&rcv.mu);
	erp_hook(hooks, sizeof(hooks), "");
	struct rows all;
	struct it_daemon *d = hook_daemon_one(db, hooks, "big-01", "BIG-1", &all);
	assert_int_equal(wait_delivered(&all, 30000), 2);
	it_log_expect(d, 0,
	              "msg=\"webhook delivery failed\" webhook=erp seq=1 status=500 attempt=1", 0);
	it_log_expect(d, 0,
	              "seq=1 status=0 reason=\"headers not understood or too large\" attempt=2", 0);
	it_log_expect(d, 0, "msg=\"webhook failing no more\" webhook=erp seq=1 failures=2",
	              IT_REPLY_MS);
	long long first = seq_of(all.v[all.n - 1]);
	rows_free(&all);

	off_t off = it_log_offset(d);
	pthread_mutex_lock(&rcv.mu);
	rcv.big_next = 1;
	pthread_mutex_unlock(&rcv.mu);
	struct it_client *c = it_connect(d);
	it_hello(c, KIVU, KIVU_TOKEN);
	send_simple(c, "big-02", "order.created", "BIG-2", NULL, "stored");
	table_rows(db, "true", NULL, NULL, &all);
	assert_int_equal(wait_delivered(&all, 30000), 2);
	it_webhook_wait_cursor(db, "erp", seq_of(all.v[all.n - 1]), 10000);
	assert_true(seq_of(all.v[all.n - 1]) > first);
	if (it_log_wait(d, off, "msg=\"webhook delivery failed\"", 0) >= 0)
		it_fail("a 200 with a 1 MiB body was taken for a failure");
	rows_free(&all);

	/* The endpoint gone: the line says the daemon could not connect. */
	rcv_stop();
	off = it_log_offset(d);
	send_simple(c, "big-03", "order.created", "BIG-3", NULL, "stored");
	it_log_expect(d, off, "status=0 reason=\"could not connect\" attempt=1", IT_REPLY_MS);
	it_daemon_stop_clean(d);
}

/*
 * An endpoint at an IPv6 address: the url's [::1] is connected to, and
 * the Host header carries it in brackets, as HTTP wants.
 */
static void test_webhook_ipv6(void **state)
{
	(void)state;
	const char *db = "notify_hook_ipv6";
	char hooks[512], host[64];
	rcv_start_at("::1", 0);
	snprintf(hooks, sizeof(hooks),
	         "webhooks = ( { id = \"erp\"; url = \"http://[::1]:%d/hook\";"
	         " secret = \"" HOOK_SECRET "\"; } );\n",
	         rcv.port);
	struct rows all;
	struct it_daemon *d = hook_daemon_one(db, hooks, "v6-01", "V6-1", &all);
	assert_int_equal(wait_delivered(&all, 30000), 0);
	it_log_expect(d, 0, "msg=\"webhook delivered\" webhook=erp seq=1 status=204", IT_REPLY_MS);
	snprintf(host, sizeof(host), "[::1]:%d", rcv.port);
	struct hook_req *snap;
	size_t n = rcv_snapshot(&snap);
	assert_true(n >= all.n);
	for (size_t i = 0; i < n; i++)
		if (snap[i].host == NULL || strcmp(snap[i].host, host) != 0)
			it_fail("Host: %s, not %s", snap[i].host ? snap[i].host : "(none)", host);
	free(snap);
	rows_free(&all);
	it_daemon_stop_clean(d);
	rcv_stop();
}

/*
 * A daemon on db with webhook "erp", its endpoint up: event id1 (order
 * order) is delivered and its cursor written; then a test session (*hold)
 * holds the cursor row and event id2 commits, so the deliverer's cursor
 * write after the endpoint's 2xx for it waits on the row.  *c is the
 * exporter's connection.
 */
static struct it_daemon *hook_save_waiting(const char *db, const char *id1, const char *id2,
                                           const char *order, struct it_client **c, PGconn **hold)
{
	char hooks[512];
	rcv_start(0);
	erp_hook(hooks, sizeof(hooks), "");
	struct it_daemon *d = notify_daemon(db, NULL, hooks);
	*c = it_connect(d);
	it_hello(*c, KIVU, KIVU_TOKEN);
	send_simple(*c, id1, "order.created", order, NULL, "stored");
	struct rows first;
	table_rows(db, "true", NULL, NULL, &first);
	wait_delivered(&first, 30000);
	it_webhook_wait_cursor(db, "erp", seq_of(first.v[first.n - 1]), 10000);
	rows_free(&first);

	*hold = hold_cursor_row(db);
	send_simple(*c, id2, "order.confirmed", order, NULL, "stored");
	wait_aux_waits(db);
	return d;
}

/*
 * The auxiliary session is lost while it writes a webhook's cursor after
 * a 2xx (a test session holds the row, so the UPDATE waits, and the
 * backend is terminated meanwhile).  The daemon runs on and knows the
 * endpoint took that notification: it writes the cursor on the new
 * session instead of delivering the notification a second time.
 */
static void test_webhook_save_lost(void **state)
{
	(void)state;
	const char *db = "notify_hook_save_lost";
	struct it_client *c;
	PGconn *pg;
	struct it_daemon *d = hook_save_waiting(db, "save-01", "save-02", "SAVE-1", &c, &pg);
	struct rows all;
	off_t off = it_log_offset(d);
	signal_aux(db, "pg_terminate_backend");
	it_log_expect(d, off, "msg=\"database lost\" conn=aux", IT_REPLY_MS);
	release_hold(pg);
	/* The session's end is one warning, not also an error for its query. */
	assert_true(it_log_wait(d, off, "level=error msg=\"query failed\"", 0) < 0);
	it_log_expect(d, 0, "msg=\"database connected\" conn=aux backend_pid=", 0);

	table_rows(db, "true", NULL, NULL, &all);
	expect_each_delivered_once(db, &all, 30000);
	rows_free(&all);
	it_daemon_stop_clean(d);
	rcv_stop();
}

/*
 * A webhook's cursor write whose statement completes but whose commit
 * fails.  The UPDATE's result comes back before the Sync that commits it;
 * the backend terminated between the two (seen under pg_terminate_backend
 * in test_sessions_terminated) rolls it back after a result that said it
 * worked.  A deferred constraint trigger that refuses the cursor past the
 * first event's notifications makes that commit fail every time: the
 * deliverer must see the failure (one "webhook query failed", no POST
 * past the notification the endpoint took), and once the trigger is gone
 * write that cursor without delivering the notification again.
 */
static void test_webhook_save_fails_at_commit(void **state)
{
	(void)state;
	const char *db = "notify_hook_commit_failed";
	char hooks[512];
	rcv_start(0);
	erp_hook(hooks, sizeof(hooks), "");
	struct it_daemon *d = notify_daemon(db, NULL, hooks);
	struct it_client *c = it_connect(d);
	it_hello(c, KIVU, KIVU_TOKEN);
	send_simple(c, "cf-01", "order.created", "COMMIT-1", NULL, "stored");
	long long first = max_seq(db);
	it_webhook_wait_cursor(db, "erp", first, 10000);

	char refuse[512];
	snprintf(refuse, sizeof(refuse),
	         "CREATE FUNCTION public.refuse_cursor() RETURNS trigger LANGUAGE plpgsql AS"
	         " $$BEGIN IF NEW.last_seq > %lld THEN RAISE EXCEPTION 'cursor refused';"
	         " END IF; RETURN NEW; END$$",
	         first);
	it_db_command(db, refuse, NULL);
	it_db_command(db,
	              "CREATE CONSTRAINT TRIGGER refuse_cursor AFTER UPDATE"
	              " ON ordertrack.webhook_cursors DEFERRABLE INITIALLY DEFERRED"
	              " FOR EACH ROW EXECUTE FUNCTION public.refuse_cursor()",
	              NULL);
	off_t off = it_log_offset(d);
	send_simple(c, "cf-02", "order.created", "COMMIT-2", NULL, "stored");
	send_simple(c, "cf-03", "order.created", "COMMIT-3", NULL, "stored");
	it_log_expect(d, off, "msg=\"webhook query failed\" webhook=erp attempt=1", IT_REPLY_MS);
	it_sleep_ms(QUIET_MS);
	struct hook_req *snap;
	size_t n = rcv_snapshot(&snap);
	for (size_t i = 0; i < n; i++) {
		json_t *b = json_loads(snap[i].body, 0, NULL);
		if (b == NULL || seq_of(b) > first + 1)
			it_fail("request %zu: seq %lld POSTed while the cursor of seq %lld could "
			        "not be written",
			        i, b ? seq_of(b) : -1, first + 1);
		json_decref(b);
	}
	free(snap);
	assert_true(n >= 2);

	it_db_command(db, "DROP TRIGGER refuse_cursor ON ordertrack.webhook_cursors", NULL);
	struct rows all;
	table_rows(db, "true", NULL, NULL, &all);
	expect_each_delivered_once(db, &all, 30000);
	rows_free(&all);
	it_close(c);
	it_daemon_stop_clean(d);
	rcv_stop();
}

/*
 * A webhook's cursor write fails with the auxiliary session up (a test
 * session holds the row, and the waiting UPDATE is cancelled, as a lock or
 * statement timeout would end it).  No notification follows, so nothing
 * else wakes the deliverer: it tries again on its own, a second later,
 * and writes the cursor of the notification its endpoint took, without
 * delivering it a second time.
 */
static void test_webhook_query_failed(void **state)
{
	(void)state;
	const char *db = "notify_hook_query_failed";
	struct it_client *c;
	PGconn *pg;
	struct it_daemon *d = hook_save_waiting(db, "qf-01", "qf-02", "QF-1", &c, &pg);
	off_t off = it_log_offset(d);
	signal_aux(db, "pg_cancel_backend");
	it_log_expect(d, off, "msg=\"webhook query failed\" webhook=erp attempt=1 retry_ms=1000",
	              IT_REPLY_MS);
	release_hold(pg);

	struct rows all;
	table_rows(db, "true", NULL, NULL, &all);
	expect_each_delivered_once(db, &all, 10000);
	it_log_expect(d, off, "msg=\"webhook query failing no more\" webhook=erp failures=1", 0);
	/* The session was never lost. */
	assert_true(it_log_wait(d, off, "msg=\"database lost\" conn=aux", 0) < 0);
	rows_free(&all);
	it_close(c);
	it_daemon_stop_clean(d);
	rcv_stop();
}

/*
 * The auxiliary session is lost while a webhook waits to retry a failed
 * POST: the webhook's lock went with the session, so the retry first
 * takes the lock again on the new session and reads the cursor, then
 * delivers, each notification once.
 */
static void test_webhook_retry_after_session_lost(void **state)
{
	(void)state;
	const char *db = "notify_hook_retry_lost";
	char hooks[512];
	rcv_start(1); /* the first POST fails: retried after 1 s */
	erp_hook(hooks, sizeof(hooks), "");
	struct it_daemon *d = notify_daemon(db, NULL, hooks);
	off_t off = it_log_offset(d);
	struct it_client *c = it_connect(d);
	it_hello(c, KIVU, KIVU_TOKEN);
	send_simple(c, "lost-01", "order.created", "LOST-1", NULL, "stored");
	it_log_expect(d, off, "msg=\"webhook delivery failed\" webhook=erp seq=1", IT_REPLY_MS);
	signal_aux(db, "pg_terminate_backend");
	off = it_log_expect(d, off, "msg=\"database lost\" conn=aux", IT_REPLY_MS);

	struct rows all;
	table_rows(db, "true", NULL, NULL, &all);
	assert_int_equal(wait_delivered(&all, 15000), 1);
	/* The lock taken and the cursor read again on the new session
	 * before the POST went out again. */
	off = it_log_expect(d, off, "msg=\"webhook ready\" webhook=erp cursor=0", IT_REPLY_MS);
	it_log_expect(d, off, "msg=\"webhook delivered\" webhook=erp seq=1", 0);
	rows_free(&all);
	it_close(c);
	it_daemon_stop_clean(d);
	rcv_stop();
}

/*
 * A webhook's first read of its cursor fails with the auxiliary session
 * up (a test session holds the cursor table, and the waiting query is
 * cancelled).  Notifications stored before the daemon started are all
 * there is, so nothing else wakes the deliverer: it reads its cursor again
 * on its own and delivers them all, in order.
 */
static void test_webhook_cursor_read_failed(void **state)
{
	(void)state;
	const char *db = "notify_hook_read_failed";
	struct it_daemon *d = notify_daemon(db, NULL, NULL);
	struct it_client *c = it_connect(d);
	it_hello(c, KIVU, KIVU_TOKEN);
	send_simple(c, "read-01", "order.created", "READ-1", NULL, "stored");
	it_daemon_stop_clean(d);
	struct rows all;
	table_rows(db, "true", NULL, NULL, &all);
	assert_true(all.n > 0);

	PGconn *hold = PQconnectdb(it_conninfo(db));
	PGresult *r =
	    PQexec(hold, "BEGIN; LOCK TABLE ordertrack.webhook_cursors IN ACCESS EXCLUSIVE MODE");
	assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
	PQclear(r);
	char hooks[512], extra[2048];
	rcv_start(0);
	erp_hook(hooks, sizeof(hooks), "");
	struct it_config cfg = notify_config(db, db, NULL, hooks, extra, sizeof(extra));
	d = it_daemon_start(&cfg, true);
	d->cfg.extra_text = NULL;
	wait_aux_waits(db);
	off_t off = it_log_offset(d);
	signal_aux(db, "pg_cancel_backend");
	it_log_expect(d, off, "msg=\"webhook query failed\" webhook=erp attempt=1", IT_REPLY_MS);
	release_hold(hold);

	assert_int_equal(wait_delivered(&all, 10000), 0);
	it_webhook_wait_cursor(db, "erp", seq_of(all.v[all.n - 1]), 10000);
	rows_free(&all);
	it_daemon_stop_clean(d);
	rcv_stop();
}

/*
 * A webhook's fetch queued behind another query of the auxiliary session
 * (the alert check, waiting for the advisory lock a test session holds)
 * when the session is lost is sent on the new session, which holds no
 * webhook lock: the webhook takes its lock and reads its cursor again
 * before it POSTs (another daemon may deliver meanwhile), and delivers
 * the notification once.
 */
static void test_webhook_fetch_across_reconnect(void **state)
{
	(void)state;
	const char *db = "notify_hook_requeued";
	char hooks[512];
	rcv_start(0);
	erp_hook(hooks, sizeof(hooks), "");
	struct rows all;
	struct it_daemon *d = notify_daemon(
	    db, "alerts = { interval_s = 1; customs_hold_hours = 1; stale_hours = 1000; };\n",
	    hooks);
	struct it_client *c = it_connect(d);
	it_hello(c, KIVU, KIVU_TOKEN);
	send_simple(c, "rq-01", "order.created", "RQ-1", NULL, "stored");
	table_rows(db, "true", NULL, NULL, &all);
	assert_int_equal(wait_delivered(&all, 10000), 0);
	long long first = seq_of(all.v[all.n - 1]) + 1;
	it_webhook_wait_cursor(db, "erp", first - 1, 10000);
	rows_free(&all);

	PGconn *hold = PQconnectdb(it_conninfo(db));
	PGresult *r = PQexec(hold, "SELECT pg_advisory_lock(7433002)");
	assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
	PQclear(r);
	wait_aux_waits(db); /* the alert check is in flight */
	off_t off = it_log_offset(d);
	/* Committed, it wakes the webhook: its fetch waits in the queue. */
	send_simple(c, "rq-02", "order.created", "RQ-2", NULL, "stored");
	signal_aux(db, "pg_terminate_backend");
	PQfinish(hold);
	off = it_log_expect(d, off, "msg=\"database lost\" conn=aux", IT_REPLY_MS);

	table_rows(db, "true", NULL, NULL, &all);
	assert_int_equal(wait_delivered(&all, 15000), 0);
	char delivered[96];
	snprintf(delivered, sizeof(delivered), "msg=\"webhook delivered\" webhook=erp seq=%lld",
	         first);
	off_t ready = it_log_expect(d, off, "msg=\"webhook ready\" webhook=erp", IT_REPLY_MS);
	off_t sent = it_log_expect(d, off, delivered, IT_REPLY_MS);
	if (sent < ready)
		it_fail("seq %lld was delivered before the webhook took its lock again", first);
	rows_free(&all);
	it_daemon_stop_clean(d);
	rcv_stop();
}

/*
 * The database is dropped (WITH (FORCE), which ends the daemon's sessions)
 * while a webhook's cursor write waits, and made again, empty.  The daemon
 * holds the events it reads meanwhile, migrates the new database when it
 * appears and stores them there.  The new database numbers its own
 * notifications from 1: the webhook delivers them all, though it had
 * delivered seqs 1 and 2 of the old one and not seen seq 2's cursor written.
 */
static void test_webhook_database_replaced(void **state)
{
	(void)state;
	const char *db = "notify_replaced";
	struct it_client *c;
	PGconn *pg;
	struct it_daemon *d = hook_save_waiting(db, "repl-01", "repl-02", "REPL-1", &c, &pg);
	struct hook_req *snap;
	size_t n_old = rcv_snapshot(&snap);
	free(snap);
	off_t off = it_log_offset(d);
	it_db_command("postgres", "DROP DATABASE notify_replaced WITH (FORCE)", NULL);
	PQfinish(pg);
	it_log_expect(d, off, "does not exist", 30000);

	/* An event while there is no database: held, not answered. */
	char *line = it_event_line("repl-03", "order.created", "REPL-3", NULL);
	it_send(c, line);
	free(line);
	char *reply = NULL;
	if (it_try_read_line(c, 500, &reply) == IT_READ_LINE)
		it_fail("an event was answered while the database did not exist: %s", reply);
	it_pg_createdb(db);
	reply = it_read_line(c, 30000);
	it_check_ack(reply, "repl-03", "stored");
	free(reply);
	send_simple(c, "repl-04", "order.confirmed", "REPL-3", NULL, "stored");

	struct rows neu;
	table_rows(db, "true", NULL, NULL, &neu);
	assert_true(neu.n >= 2);
	assert_int_equal(seq_of(neu.v[0]), 1);
	it_webhook_wait_cursor(db, "erp", seq_of(neu.v[neu.n - 1]), 30000);
	it_sleep_ms(QUIET_MS);
	/* After the old database's requests: each new row once, in order. */
	size_t n = rcv_snapshot(&snap);
	size_t next = 0;
	for (size_t i = n_old; i < n; i++) {
		json_t *b = json_loads(snap[i].body, 0, NULL);
		if (b == NULL)
			it_fail("request %zu: the body is not JSON", i);
		if (snap[i].status >= 300 || next >= neu.n)
			it_fail("request %zu: seq %lld not expected (status %d, %zu of %zu rows)",
			        i, seq_of(b), snap[i].status, next, neu.n);
		expect_same_note(b, neu.v[next], next, "webhook after the database was replaced");
		next++;
		json_decref(b);
	}
	free(snap);
	if (next != neu.n)
		it_fail("the webhook got %zu of the new database's %zu notifications", next, neu.n);
	rows_free(&neu);
	it_daemon_stop_clean(d);
	rcv_stop();
}

static void reload(struct it_daemon *d);

/* The rows of the table that break a status chain, or repeat a change. */
static long chain_breaks(const char *db)
{
	return it_db_long(db,
	                  "SELECT count(*) FROM (SELECT from_status, to_status, event_id, seq,"
	                  " lag(to_status) OVER w AS prev_to, lag(event_id) OVER w AS prev_event"
	                  " FROM ordertrack.notifications"
	                  " WHERE kind IN ('order.status', 'shipment.status')"
	                  " WINDOW w AS (PARTITION BY kind, exporter, order_ref, shipment_ref"
	                  " ORDER BY seq)) t"
	                  " WHERE prev_to IS NOT NULL AND (from_status IS DISTINCT FROM prev_to"
	                  " OR event_id IS NOT DISTINCT FROM prev_event)",
	                  NULL);
}

/*
 * pg_terminate_backend of the daemon's sessions at random moments under
 * load: an ingest session (two of them) or the auxiliary one (the feed's
 * LISTEN and reads, the webhook's lock, cursor and fetches, the alert
 * check), every 100 ms while four exporters stream 500 events each, with
 * an operator subscribed and a webhook for every notification.  Afterwards
 * every event is acked stored or duplicate and stored once, the seqs run
 * 1..n, each order's and shipment's status changes form one chain (none
 * repeated, none missing), the subscriber got exactly the table in seq
 * order, and the webhook got each row once, in seq order.
 */
static void test_sessions_terminated(void **state)
{
	(void)state;
	const char *db = "notify_kill";
	static const struct {
		const char *id, *token;
	} who[LOAD_CONNS] = {
	    {KIVU, KIVU_TOKEN}, {CHILI, CHILI_TOKEN}, {TEA, TEA_TOKEN}, {HONEY, HONEY_TOKEN}};
	char hooks[512], extra[2048];
	unsigned seed = (unsigned)time(NULL);
	const char *env_seed = getenv("OT_KILL_SEED");
	if (env_seed != NULL)
		seed = (unsigned)strtoul(env_seed, NULL, 10);
	srand(seed);
	fprintf(stderr, "notify: terminating sessions with seed %u (OT_KILL_SEED)\n", seed);

	rcv_start(0);
	erp_hook(hooks, sizeof(hooks), "");
	it_pg_createdb(db);
	struct it_config cfg = notify_config(
	    db, db, "alerts = { interval_s = 1; customs_hold_hours = 1; stale_hours = 1; };\n",
	    hooks, extra, sizeof(extra));
	cfg.db_connections = 2;
	struct it_daemon *d = it_daemon_start(&cfg, true);
	d->cfg.extra_text = NULL;

	struct it_client *all[LOAD_CONNS + 1];
	struct it_client *op = it_connect(d);
	it_hello_operator(op, OPS, OPS_TOKEN);
	subscribe_after(op, 0);
	op->want = 0;
	all[0] = op;
	for (int k = 0; k < LOAD_CONNS; k++) {
		struct it_client *c = it_connect(d);
		char hello[256];
		snprintf(hello, sizeof(hello),
		         "{\"type\":\"hello\",\"exporter\":\"%s\",\"token\":\"%s\"}", who[k].id,
		         who[k].token);
		it_queue(c, hello);
		c->want = 2 + LOAD_EVENTS; /* unreachable: pump whole ticks */
		all[k + 1] = c;
	}

	/* An event per connection every 10 ms; a session terminated every 100 ms. */
	int queued = 0, kills[2] = {0, 0};
	long long t0 = it_now_ms(), next_kill = t0 + 100;
	while (queued < LOAD_EVENTS) {
		int target = (int)((it_now_ms() - t0) / 10 + 1);
		if (target > LOAD_EVENTS)
			target = LOAD_EVENTS;
		for (; queued < target; queued++) {
			for (int k = 0; k < LOAD_CONNS; k++) {
				char id[32];
				char *ev = load_event(k, queued, id, sizeof(id));
				it_queue(all[k + 1], ev);
				free(ev);
			}
		}
		it_pump(all, LOAD_CONNS + 1, 10);
		if (it_now_ms() >= next_kill) {
			int aux = rand() % 2;
			kills[aux] += (int)it_db_long(
			    db,
			    "SELECT count(pg_terminate_backend(pid)) FROM (SELECT pid"
			    " FROM pg_stat_activity WHERE datname = $1 AND application_name = $2"
			    " ORDER BY random() LIMIT 1) s",
			    db, aux ? "ordertrackd-aux" : "ordertrackd", NULL);
			next_kill = it_now_ms() + 100;
		}
	}
	fprintf(stderr, "notify: %d ingest and %d auxiliary sessions terminated\n", kills[0],
	        kills[1]);
	for (int k = 0; k < LOAD_CONNS; k++)
		all[k + 1]->want = 1 + LOAD_EVENTS;
	if (!it_pump(all + 1, LOAD_CONNS, 120000))
		it_fail("not every event was answered within 120 s of the last termination");
	int dups = 0;
	for (int k = 0; k < LOAD_CONNS; k++) {
		struct it_client *c = all[k + 1];
		if (strstr(c->lines[0], "\"welcome\"") == NULL)
			it_fail("load connection %d: hello answered with %s", k, c->lines[0]);
		for (int i = 0; i < LOAD_EVENTS; i++) {
			char id[32];
			snprintf(id, sizeof(id), "g%d-%04d", k, i);
			if (strstr(c->lines[1 + i], "\"duplicate\"") != NULL) {
				it_check_ack(c->lines[1 + i], id, "duplicate");
				dups++;
			} else {
				it_check_ack(c->lines[1 + i], id, "stored");
			}
		}
	}
	fprintf(stderr, "notify: every event acked, %d of them duplicate\n", dups);
	assert_int_equal(it_db_rows(db), LOAD_CONNS * LOAD_EVENTS);

	/* No more alerts, so that the table stays as it is read. */
	char extra2[2048];
	struct it_config quiet = notify_config(db, db, NULL, hooks, extra2, sizeof(extra2));
	quiet.db_connections = 2;
	it_daemon_rewrite(d, &quiet);
	d->cfg.extra_text = NULL;
	reload(d);
	it_sleep_ms(1500); /* an alert check still running */

	expect_seq_contiguous(db);
	long breaks = chain_breaks(db);
	if (breaks != 0)
		it_fail("%ld notifications break their order's or shipment's status chain", breaks);
	struct rows table;
	table_rows(db, "true", NULL, NULL, &table);
	op->want = table.n;
	if (!it_pump(&op, 1, 60000))
		it_fail("the operator got %zu of %zu notifications", op->n_lines, table.n);
	for (size_t i = 0; i < op->n_lines; i++) {
		json_t *o = json_loads(op->lines[i], 0, NULL);
		if (o == NULL)
			it_fail("operator line %zu is not JSON: %.200s", i, op->lines[i]);
		expect_same_note(o, table.v[i], i, "operator across terminated sessions");
		json_decref(o);
	}
	expect_quiet(op, QUIET_MS, "operator after the whole table");
	wait_delivered(&table, 60000);
	it_webhook_wait_cursor(db, "erp", seq_of(table.v[table.n - 1]), 10000);
	rows_free(&table);
	it_daemon_stop_clean(d);
	rcv_stop();
}

/*
 * A reload while a POST is on the wire lets it finish: its 2xx moves the
 * cursor and the notification is not delivered again, also when the
 * reload changes the webhook (a second secret) and when it changes
 * nothing.  The endpoint answers each POST a second late, so the reloads
 * come while one waits for its answer.
 */
static void test_webhook_reload_in_flight(void **state)
{
	(void)state;
	const char *db = "notify_hook_reload";
	char hooks[512];
	rcv_start(0);
	pthread_mutex_lock(&rcv.mu);
	rcv.delay_ms = 1000;
	pthread_mutex_unlock(&rcv.mu);
	erp_hook(hooks, sizeof(hooks), "");
	struct it_daemon *d = notify_daemon(db, NULL, hooks);
	struct it_client *c = it_connect(d);
	it_hello(c, KIVU, KIVU_TOKEN);
	send_simple(c, "rl-01", "order.created", "RELOAD-1", NULL, "stored");
	send_simple(c, "rl-02", "order.created", "RELOAD-2", NULL, "stored");
	send_simple(c, "rl-03", "order.created", "RELOAD-3", NULL, "stored");
	struct rows all;
	table_rows(db, "true", NULL, NULL, &all);
	assert_int_equal(all.n, 3);

	for (size_t i = 1; i <= 2; i++) {
		/* Wait until POST number i is on the wire, then reload. */
		struct hook_req *snap;
		long long deadline = it_now_ms() + 10000;
		while (rcv_snapshot(&snap) < i) {
			free(snap);
			if (it_now_ms() > deadline)
				it_fail("webhook: no POST %zu within 10 s", i);
			it_sleep_ms(20);
		}
		free(snap);
		if (i == 2) {
			/* The same webhook with a second secret: a change. */
			char text[4096];
			snprintf(text, sizeof(text),
			         "%s%s"
			         "webhooks = ( { id = \"erp\"; url = \"http://localhost:%d/hook\";"
			         " secret = \"" HOOK_SECRET "\"; } );\n",
			         documents_required, alerts_off, rcv.port);
			d->cfg.extra_text = text;
			it_daemon_rewrite(d, &d->cfg);
			d->cfg.extra_text = NULL;
		}
		reload(d);
	}
	/* check_deliveries fails on a row delivered again after its 2xx. */
	wait_delivered(&all, 30000);
	expect_each_delivered_once(db, &all, 10000);
	rows_free(&all);
	it_close(c);
	it_daemon_stop_clean(d);
	rcv_stop();
}

/* The kind of request i's body, or "?" (not JSON). */
static const char *req_kind(const struct hook_req *r, char *out, size_t cap)
{
	json_t *b = json_loads(r->body, 0, NULL);
	snprintf(out, cap, "%s", b ? json_string_value(json_object_get(b, "kind")) : "?");
	json_decref(b);
	return out;
}

/*
 * A reload that changes a webhook waiting to retry a failed POST: the new
 * settings apply at once, not when the old backoff ends.  The endpoint
 * fails an order.status notification three times (the next try 4 s
 * later); it is then fixed and the webhook reloaded with a filter for
 * shipment.status only.  The shipment's notification that follows goes
 * out within 2 s, and the order.status one is never POSTed again.
 */
static void test_webhook_reload_while_retrying(void **state)
{
	(void)state;
	const char *db = "notify_hook_reload_retry";
	char hooks[512];
	rcv_start(1000);
	erp_hook(hooks, sizeof(hooks), "");
	struct it_daemon *d = notify_daemon(db, NULL, hooks);
	struct it_client *c = it_connect(d);
	it_hello(c, KIVU, KIVU_TOKEN);
	off_t off = it_log_offset(d);
	send_simple(c, "rr-01", "order.created", "RETRY-1", NULL, "stored");
	it_log_expect(d, off, "msg=\"webhook delivery failed\" webhook=erp seq=1 status=500",
	              IT_REPLY_MS);
	it_log_expect(d, off, "attempt=3 retry_ms=4000", 10000);

	pthread_mutex_lock(&rcv.mu);
	rcv.fail_next = 0;
	pthread_mutex_unlock(&rcv.mu);
	struct hook_req *snap;
	size_t before = rcv_snapshot(&snap);
	free(snap);
	char text[4096];
	snprintf(text, sizeof(text),
	         "%s%s"
	         "webhooks = ( { id = \"erp\"; url = \"http://127.0.0.1:%d/hook\";"
	         " secret = \"" HOOK_SECRET "\"; kinds = [ \"shipment.status\" ]; } );\n",
	         documents_required, alerts_off, rcv.port);
	d->cfg.extra_text = text;
	it_daemon_rewrite(d, &d->cfg);
	d->cfg.extra_text = NULL;
	reload(d);
	long long reloaded = it_now_ms();
	send_simple(c, "rr-02", "shipment.booked", "RETRY-1", "RETRY-1-S", "stored");

	/* Past the old retry's time: only the shipment's notification came. */
	bool shipped = false;
	while (it_now_ms() < reloaded + 5000) {
		size_t n = rcv_snapshot(&snap);
		for (size_t i = before; i < n; i++) {
			char kind[64];
			if (strcmp(req_kind(&snap[i], kind, sizeof(kind)), "shipment.status") != 0)
				it_fail(
				    "request %zu after the reload: a %s notification (status %d)",
				    i, kind, snap[i].status);
			if (snap[i].status >= 200 && snap[i].status < 300)
				shipped = true;
		}
		free(snap);
		if (!shipped && it_now_ms() > reloaded + 2000)
			it_fail("the shipment's notification was not delivered within 2 s of the "
			        "reload");
		it_sleep_ms(50);
	}
	assert_true(shipped);
	it_close(c);
	it_daemon_stop_clean(d);
	rcv_stop();
}

/*
 * SIGTERM while a POST waits for its answer: the daemon finishes it and
 * writes the cursor before it exits, so the restarted daemon does not
 * deliver that notification again.
 */
static void test_webhook_stop_in_flight(void **state)
{
	(void)state;
	const char *db = "notify_hook_stop";
	char hooks[512], extra[2048];
	rcv_start(0);
	pthread_mutex_lock(&rcv.mu);
	rcv.delay_ms = 1000;
	pthread_mutex_unlock(&rcv.mu);
	erp_hook(hooks, sizeof(hooks), "");
	struct it_daemon *d = notify_daemon(db, NULL, hooks);
	struct it_client *c = it_connect(d);
	it_hello(c, KIVU, KIVU_TOKEN);
	send_simple(c, "st-01", "order.created", "STOP-1", NULL, "stored");
	it_close(c);
	struct rows all;
	table_rows(db, "true", NULL, NULL, &all);
	assert_int_equal(all.n, 1);
	struct hook_req *snap;
	long long deadline = it_now_ms() + 10000;
	while (rcv_snapshot(&snap) < 1) {
		free(snap);
		if (it_now_ms() > deadline)
			it_fail("webhook: no POST within 10 s");
		it_sleep_ms(20);
	}
	free(snap);
	it_daemon_stop_clean(d);
	/* Its 2xx came while the daemon drained, and the cursor was written. */
	assert_int_equal(it_db_long(db,
	                            "SELECT last_seq FROM ordertrack.webhook_cursors"
	                            " WHERE webhook = 'erp'",
	                            NULL),
	                 seq_of(all.v[0]));

	struct it_config cfg =
	    notify_config("notify_hook_stop_again", db, NULL, hooks, extra, sizeof(extra));
	d = it_daemon_start(&cfg, true);
	d->cfg.extra_text = NULL;
	it_log_expect(d, 0, "msg=\"webhook ready\"", IT_REPLY_MS);
	it_sleep_ms(QUIET_MS);
	size_t failures;
	assert_int_equal(check_deliveries(&all, &failures), all.n);
	assert_int_equal(failures, 0);
	rows_free(&all);
	it_daemon_stop_clean(d);
	rcv_stop();
}

/* The daemon's resident set in kB, from /proc. */
static long daemon_rss_kb(const struct it_daemon *d)
{
	char path[64], line[256];
	long kb = -1;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)d->pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		it_fail("cannot read %s", path);
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

#define CHURN_HOOKS  100  /* webhooks in the config, the most it allows */
#define CHURN_CYCLES 40   /* reloads that drop them all, then bring them back */
#define CHURN_MAX_KB 8192 /* kept deliverers would add about 16 MB */

/*
 * Reloads that remove webhooks and add them again, as an operator editing
 * the list does, leave memory where it was: a stopped deliverer is freed
 * once its last database answer has come, not kept until exit.  Each of
 * these webhooks holds some 4 kB (a long url and two long secrets), so
 * deliverers kept would grow the daemon by about 16 MB here.
 */
static void test_webhook_reload_churn(void **state)
{
	(void)state;
	const char *db = "notify_hook_churn";
	char path[1900], secret[1000];
	memset(path, 'p', sizeof(path) - 1);
	path[sizeof(path) - 1] = '\0';
	memset(secret, 's', sizeof(secret) - 1);
	secret[sizeof(secret) - 1] = '\0';
	size_t cap = sizeof(documents_required) + sizeof(alerts_off) + 64 +
	             CHURN_HOOKS * (sizeof(path) + 2 * sizeof(secret) + 256);
	char *with = malloc(cap), *without = malloc(cap);
	if (with == NULL || without == NULL)
		it_fail("out of memory");
	size_t n =
	    (size_t)snprintf(with, cap, "%s%swebhooks = (\n", documents_required, alerts_off);
	for (int i = 0; i < CHURN_HOOKS; i++)
		n += (size_t)snprintf(with + n, cap - n,
		                      "%s{ id = \"churn-%d\"; url = \"http://127.0.0.1:9/%s\";"
		                      " secrets = [ \"a%s\", \"b%s\" ]; }\n",
		                      i ? "," : "", i, path, secret, secret);
	snprintf(with + n, cap - n, ");\n");
	snprintf(without, cap, "%s%swebhooks = ();\n", documents_required, alerts_off);

	it_asan_quarantine_off();
	struct it_daemon *d = notify_daemon(db, NULL, NULL);
	it_asan_quarantine_restore();
	long base = 0;
	for (int i = 0; i < CHURN_CYCLES + 5; i++) {
		if (i == 5)
			base = daemon_rss_kb(d); /* after the allocator has warmed up */
		d->cfg.extra_text = with;
		it_daemon_rewrite(d, &d->cfg);
		reload(d);
		d->cfg.extra_text = without;
		it_daemon_rewrite(d, &d->cfg);
		reload(d);
	}
	d->cfg.extra_text = NULL;
	it_sleep_ms(QUIET_MS); /* the last answers to the stopped deliverers */
	long grown = daemon_rss_kb(d) - base;
	if (grown > CHURN_MAX_KB)
		it_fail("%d reloads that dropped %d webhooks grew the daemon by %ld kB",
		        CHURN_CYCLES, CHURN_HOOKS, grown);
	free(with);
	free(without);
	it_daemon_stop_clean(d);
}

/* ------------------------------------------------------------------ */
/* Alerts                                                              */
/* ------------------------------------------------------------------ */

/* Read n alert notifications; each must be for AL-1/AL-A with from -> to. */
static void expect_alerts(struct it_client *sub, const char *from, const char *to, bool *dwell,
                          bool *stale)
{
	*dwell = *stale = false;
	for (int i = 0; i < 2; i++) {
		json_t *o = read_note(sub, NOTE_MS);
		const char *kind = it_json_str(o, "kind");
		const char *f = it_json_str(o, "from");
		const char *t = it_json_str(o, "to");
		bool from_ok = from == NULL ? json_is_null(json_object_get(o, "from"))
		                            : f != NULL && strcmp(f, from) == 0;
		char *text = json_dumps(o, JSON_COMPACT);
		if (kind == NULL || !from_ok || t == NULL || strcmp(t, to) != 0 ||
		    strcmp(it_json_str(o, "exporter"), KIVU) != 0 ||
		    strcmp(it_json_str(o, "order"), "AL-1") != 0 ||
		    it_json_str(o, "shipment") == NULL ||
		    strcmp(it_json_str(o, "shipment"), "AL-A") != 0 ||
		    !json_is_null(json_object_get(o, "event")) ||
		    !json_is_null(json_object_get(o, "occurred_at")))
			it_fail("expected an alert %s -> %s for AL-1/AL-A, got %s",
			        from ? from : "null", to, text);
		if (strcmp(kind, "alert.customs_dwell") == 0 && !*dwell)
			*dwell = true;
		else if (strcmp(kind, "alert.stale") == 0 && !*stale)
			*stale = true;
		else
			it_fail("unexpected (or repeated) alert: %s", text);
		free(text);
		json_decref(o);
	}
}

/*
 * A customs hold two hours old raises alert.customs_dwell (and, nothing
 * having been heard for over an hour, alert.stale) once; a restart does
 * not raise them again; the release clears both, once.
 */
static void test_alerts(void **state)
{
	(void)state;
	const char *db = "notify_alerts";
	static const char alerts[] =
	    "alerts = { interval_s = 1; customs_hold_hours = 1; stale_hours = 1; };\n";
	static const char sub_line[] =
	    "{\"type\":\"subscribe\",\"after\":%lld,\"kinds\":[\"alert.customs_dwell\","
	    "\"alert.stale\",\"alert.overdue\"]}";
	char extra[2048], line[256], t3[40], t2[40], now[40];
	bool dwell, stale;
	it_pg_createdb(db);
	struct it_config cfg =
	    notify_config("notify_alerts", db, alerts, NULL, extra, sizeof(extra));
	struct it_daemon *d = it_daemon_start(&cfg, true);
	struct it_client *sub = it_connect(d);
	it_hello(sub, KIVU, KIVU_TOKEN);
	snprintf(line, sizeof(line), sub_line, 0LL);
	subscribe(sub, line, 0);

	it_utc_time(t3, sizeof(t3), -3 * 3600);
	it_utc_time(t2, sizeof(t2), -2 * 3600);
	struct it_client *c = it_connect(d);
	it_hello(c, KIVU, KIVU_TOKEN);
	char *evs[] = {
	    event_at("al-01", "order.created", "AL-1", NULL, t3),
	    event_at("al-02", "shipment.booked", "AL-1", "AL-A", t3),
	    event_at("al-03", "shipment.customs_hold", "AL-1", "AL-A", t2),
	};
	for (size_t i = 0; i < 3; i++) {
		send_event(c, evs[i], "stored");
		free(evs[i]);
	}
	expect_alerts(sub, NULL, "raised", &dwell, &stale);
	it_sleep_ms(3000);
	assert_int_equal(note_count(db, "kind LIKE 'alert.%'"), 2);
	expect_quiet(sub, 100, "alerts once raised");
	assert_int_equal(
	    it_db_long(db, "SELECT count(*) FROM ordertrack.alerts WHERE cleared_at IS NULL", NULL),
	    2);

	/* A restart does not raise them again. */
	it_daemon_stop_clean(d);
	struct it_config cfg2 =
	    notify_config("notify_alerts_restarted", db, alerts, NULL, extra, sizeof(extra));
	d = it_daemon_start(&cfg2, true);
	it_sleep_ms(3500);
	assert_int_equal(note_count(db, "kind LIKE 'alert.%'"), 2);

	/* Released now: both conditions end, each cleared once. */
	long long top = max_seq(db);
	sub = it_connect(d);
	it_hello(sub, KIVU, KIVU_TOKEN);
	snprintf(line, sizeof(line), sub_line, top);
	subscribe(sub, line, top);
	c = it_connect(d);
	it_hello(c, KIVU, KIVU_TOKEN);
	it_utc_time(now, sizeof(now), 0);
	char *rel = event_at("al-04", "shipment.customs_released", "AL-1", "AL-A", now);
	send_event(c, rel, "stored");
	free(rel);
	expect_alerts(sub, "raised", "cleared", &dwell, &stale);
	it_sleep_ms(3000);
	assert_int_equal(note_count(db, "kind LIKE 'alert.%'"), 4);
	expect_quiet(sub, 100, "alerts once cleared");
	assert_int_equal(
	    it_db_long(db, "SELECT count(*) FROM ordertrack.alerts WHERE cleared_at IS NULL", NULL),
	    0);
	assert_int_equal(it_db_long(db, "SELECT count(*) FROM ordertrack.alerts", NULL), 2);
	expect_seq_contiguous(db);
	it_daemon_stop_clean(d);
}

/* The wall-clock time now + offset_s in UTC with fraction frac (".0004", or ""). */
static void utc_at(char *out, size_t cap, long offset_s, const char *frac)
{
	char t[40];
	it_utc_time(t, sizeof(t), offset_s);
	t[strlen(t) - 1] = '\0'; /* the 'Z' */
	snprintf(out, cap, "%s%sZ", t, frac);
}

/* Store an event of KIVU at when, with the member key = value when key is not NULL. */
static void send_when(struct it_client *c, const char *id, const char *type, const char *order,
                      const char *ship, const char *when, const char *key, const char *value)
{
	char *line = event_at(id, type, order, ship, when);
	if (key != NULL) {
		json_t *o = json_loads(line, JSON_PRESERVE_ORDER, NULL);
		free(line);
		json_object_set_new(o, key, json_string(value));
		line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
		json_decref(o);
		if (line == NULL)
			abort();
	}
	send_event(c, line, "stored");
	free(line);
}

/* Store an event of KIVU offset_s from now (negative: in the past). */
static void send_ago(struct it_client *c, const char *id, const char *type, const char *order,
                     const char *ship, long offset_s, const char *key, const char *value)
{
	char when[48];
	utc_at(when, sizeof(when), offset_s, "");
	send_when(c, id, type, order, ship, when, key, value);
}

/* Open alerts of kind for KIVU's order. */
static long open_alerts(const char *db, const char *order, const char *kind)
{
	return it_db_long(db,
	                  "SELECT count(*) FROM ordertrack.alerts WHERE exporter = '" KIVU "'"
	                  " AND order_ref = $1 AND kind = $2 AND cleared_at IS NULL",
	                  order, kind, NULL);
}

/* Require held_since() of KIVU's order/ship, either stage, to be want (to the second). */
static void expect_held_since(const char *db, const char *order, const char *ship, long offset_s)
{
	char want[40];
	it_utc_time(want, sizeof(want), offset_s);
	char *got = it_db_value(db,
	                        "SELECT to_char(ordertrack.held_since('" KIVU "', $1, $2)"
	                        " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
	                        order, ship, NULL);
	/*
	 * The event was timed when it was sent, before now: on a loaded
	 * machine the clock may have ticked a few seconds since, never back.
	 */
	bool ok = false;
	for (long k = 0; got != NULL && k <= 10 && !ok; k++) {
		char earlier[40];
		it_utc_time(earlier, sizeof(earlier), offset_s - k);
		ok = strcmp(got, earlier) == 0;
	}
	if (!ok)
		it_fail("%s/%s: held since %s, wanted %s or up to 10 s before", order, ship,
		        got ? got : "null", want);
	free(got);
}

/* Read one alert.overdue notification for OD-1/OD-A, from -> to, equal to the table's row. */
static void expect_overdue(struct it_client *sub, const char *db, const char *from, const char *to)
{
	json_t *o = read_note(sub, NOTE_MS);
	const char *f = it_json_str(o, "from");
	const char *t = it_json_str(o, "to");
	const char *kind = it_json_str(o, "kind");
	const char *ship = it_json_str(o, "shipment");
	bool from_ok = from == NULL ? json_is_null(json_object_get(o, "from"))
	                            : f != NULL && strcmp(f, from) == 0;
	if (kind == NULL || strcmp(kind, "alert.overdue") != 0 || !from_ok || t == NULL ||
	    strcmp(t, to) != 0 || ship == NULL || strcmp(ship, "OD-A") != 0 ||
	    !json_is_null(json_object_get(o, "event")) ||
	    !json_is_null(json_object_get(o, "occurred_at"))) {
		char *text = json_dumps(o, JSON_COMPACT);
		it_fail("expected alert.overdue %s -> %s for OD-1/OD-A, got %s",
		        from ? from : "null", to, text);
	}
	char seq[32];
	snprintf(seq, sizeof(seq), "%lld", seq_of(o));
	struct rows row;
	table_rows(db, "seq = $1::bigint", seq, NULL, &row);
	assert_int_equal(row.n, 1);
	expect_same_note(o, row.v[0], 0, "alert.overdue");
	rows_free(&row);
	json_decref(o);
}

/*
 * A shipment whose ETA has passed and that is not delivered raises one
 * alert.overdue at a check, and the next check raises no other; once it
 * is delivered, the check after clears it, once.  A shipment due later
 * and one delivered after its ETA raise nothing.  evaluate_alerts() is
 * called directly, with customs and stale thresholds no shipment reaches.
 */
static void test_alert_overdue(void **state)
{
	(void)state;
	const char *db = "notify_overdue";
	static const char evaluate[] =
	    "SELECT count(*) FROM ordertrack.evaluate_alerts(1000, 1000)";
	char past[40], later[40], line[160];
	struct it_daemon *d = notify_daemon(db, NULL, NULL);
	struct it_client *c = it_connect(d);
	it_hello(c, KIVU, KIVU_TOKEN);
	it_utc_time(past, sizeof(past), -3600);
	it_utc_time(later, sizeof(later), 24 * 3600);
	send_ago(c, "od1-1", "order.created", "OD-1", NULL, -6 * 3600, NULL, NULL);
	send_ago(c, "od1-2", "shipment.booked", "OD-1", "OD-A", -5 * 3600, "eta", past);
	send_ago(c, "od2-1", "order.created", "OD-2", NULL, -6 * 3600, NULL, NULL);
	send_ago(c, "od2-2", "shipment.booked", "OD-2", "OD-B", -5 * 3600, "eta", later);
	send_ago(c, "od3-1", "order.created", "OD-3", NULL, -6 * 3600, NULL, NULL);
	send_ago(c, "od3-2", "shipment.booked", "OD-3", "OD-C", -5 * 3600, "eta", past);
	send_ago(c, "od3-3", "shipment.delivered", "OD-3", "OD-C", -1800, NULL, NULL);

	long long top = max_seq(db);
	struct it_client *sub = it_connect(d);
	it_hello(sub, KIVU, KIVU_TOKEN);
	snprintf(line, sizeof(line),
	         "{\"type\":\"subscribe\",\"after\":%lld,\"kinds\":[\"alert.overdue\"]}", top);
	subscribe(sub, line, top);

	assert_int_equal(it_db_long(db, evaluate, NULL), 1);
	expect_overdue(sub, db, NULL, "raised");
	assert_int_equal(open_alerts(db, "OD-1", "alert.overdue"), 1);
	assert_int_equal(it_db_long(db, evaluate, NULL), 0);
	expect_quiet(sub, QUIET_MS, "overdue once raised");

	send_ago(c, "od1-3", "shipment.delivered", "OD-1", "OD-A", 0, NULL, NULL);
	it_close(c);
	assert_int_equal(it_db_long(db, evaluate, NULL), 1);
	expect_overdue(sub, db, "raised", "cleared");
	assert_int_equal(open_alerts(db, "OD-1", "alert.overdue"), 0);
	assert_int_equal(it_db_long(db, evaluate, NULL), 0);
	expect_quiet(sub, QUIET_MS, "overdue once cleared");
	assert_int_equal(note_count(db, "kind LIKE 'alert.%'"), 2);
	assert_int_equal(
	    it_db_long(db, "SELECT count(*) FROM ordertrack.alerts WHERE order_ref <> 'OD-1'",
	               NULL),
	    0);
	it_daemon_stop_clean(d);
}

/*
 * The customs dwell counts from the start of the hold episode, as the fold
 * decides the hold: the first customs_hold of the stage after its last
 * customs_released, retracted events counting for nothing, in the fold's
 * order (instant to the millisecond, then id); held at both stages, from
 * the older hold.  ordertrackctl's "held since" is the same function.  evaluate_alerts() is called
 * directly with a 2-hour threshold; the daemon's own timer is off.
 */
static void test_alert_episodes(void **state)
{
	(void)state;
	const char *db = "notify_episodes";
	struct it_daemon *d = notify_daemon(db, NULL, NULL);
	struct it_client *c = it_connect(d);
	it_hello(c, KIVU, KIVU_TOKEN);
	const char *hold = "shipment.customs_hold", *rel = "shipment.customs_released";

	/* EP-1: a second hold (a new reason) in the same episode does not restart it. */
	send_ago(c, "ep1-1", "order.created", "EP-1", NULL, -6 * 3600, NULL, NULL);
	send_ago(c, "ep1-2", hold, "EP-1", "EP-A", -3 * 3600, "reason", "inspection");
	send_ago(c, "ep1-3", hold, "EP-1", "EP-A", -600, "reason", "duty unpaid");
	/* EP-2: a retracted release does not end the episode. */
	send_ago(c, "ep2-1", "order.created", "EP-2", NULL, -6 * 3600, NULL, NULL);
	send_ago(c, "ep2-2", hold, "EP-2", "EP-B", -3 * 3600, NULL, NULL);
	send_ago(c, "ep2-3", rel, "EP-2", "EP-B", -150 * 60, NULL, NULL);
	send_ago(c, "ep2-4", hold, "EP-2", "EP-B", -3600, NULL, NULL);
	send_ago(c, "ep2-5", "event.retracted", "EP-2", NULL, 0, "retracts", "ep2-3");
	/* EP-3: after a release, a new episode starts. */
	send_ago(c, "ep3-1", "order.created", "EP-3", NULL, -6 * 3600, NULL, NULL);
	send_ago(c, "ep3-2", hold, "EP-3", "EP-C", -5 * 3600, NULL, NULL);
	send_ago(c, "ep3-3", rel, "EP-3", "EP-C", -4 * 3600, NULL, NULL);
	send_ago(c, "ep3-4", hold, "EP-3", "EP-C", -3600, NULL, NULL);
	/* EP-4: a retracted hold does not start one. */
	send_ago(c, "ep4-1", "order.created", "EP-4", NULL, -6 * 3600, NULL, NULL);
	send_ago(c, "ep4-2", hold, "EP-4", "EP-D", -3 * 3600, NULL, NULL);
	send_ago(c, "ep4-3", hold, "EP-4", "EP-D", -3600, NULL, NULL);
	send_ago(c, "ep4-4", "event.retracted", "EP-4", NULL, 0, "retracts", "ep4-2");
	/* EP-5: a release and a hold in the same millisecond: the fold reads
	 * them by id (release ep5-2a, then hold ep5-2b), not by the microsecond. */
	char hold_at[48], rel_at[48];
	utc_at(hold_at, sizeof(hold_at), -3 * 3600, ".0001");
	utc_at(rel_at, sizeof(rel_at), -3 * 3600, ".0004");
	send_ago(c, "ep5-1", "order.created", "EP-5", NULL, -6 * 3600, NULL, NULL);
	send_when(c, "ep5-2a", rel, "EP-5", "EP-E", rel_at, NULL, NULL);
	send_when(c, "ep5-2b", hold, "EP-5", "EP-E", hold_at, NULL, NULL);
	/* EP-6: held at export, never released, then at import: held since
	 * the export hold, though hold names the import stage. */
	send_ago(c, "ep6-1", "order.created", "EP-6", NULL, -6 * 3600, NULL, NULL);
	send_ago(c, "ep6-2", hold, "EP-6", "EP-F", -3 * 3600, NULL, NULL);
	send_ago(c, "ep6-3", hold, "EP-6", "EP-F", -600, "stage", "import");
	assert_int_equal(it_db_long(db,
	                            "SELECT count(*) FROM ordertrack.shipments"
	                            " WHERE hold = 'export' AND order_ref LIKE 'EP-%'",
	                            NULL),
	                 5);
	assert_int_equal(it_db_long(db,
	                            "SELECT count(*) FROM ordertrack.shipments"
	                            " WHERE hold = 'import' AND order_ref = 'EP-6'",
	                            NULL),
	                 1);

	it_db_long(db, "SELECT count(*) FROM ordertrack.evaluate_alerts(2, 1000)", NULL);
	assert_int_equal(open_alerts(db, "EP-1", "alert.customs_dwell"), 1);
	assert_int_equal(open_alerts(db, "EP-2", "alert.customs_dwell"), 1);
	assert_int_equal(open_alerts(db, "EP-3", "alert.customs_dwell"), 0);
	assert_int_equal(open_alerts(db, "EP-4", "alert.customs_dwell"), 0);
	assert_int_equal(open_alerts(db, "EP-5", "alert.customs_dwell"), 1);
	assert_int_equal(open_alerts(db, "EP-6", "alert.customs_dwell"), 1);
	expect_held_since(db, "EP-1", "EP-A", -3 * 3600);
	expect_held_since(db, "EP-2", "EP-B", -3 * 3600);
	expect_held_since(db, "EP-3", "EP-C", -3600);
	expect_held_since(db, "EP-4", "EP-D", -3600);
	expect_held_since(db, "EP-5", "EP-E", -3 * 3600);

	expect_held_since(db, "EP-6", "EP-F", -3 * 3600);

	/* The next check keeps them: no clear-and-raise within the episode,
	 * nor once EP-6's newer hold is released and its older one stays. */
	assert_int_equal(
	    it_db_long(db, "SELECT count(*) FROM ordertrack.evaluate_alerts(2, 1000)", NULL), 0);
	send_ago(c, "ep6-4", "shipment.customs_released", "EP-6", "EP-F", -60, "stage", "import");
	it_close(c);
	assert_int_equal(
	    it_db_long(db, "SELECT count(*) FROM ordertrack.evaluate_alerts(2, 1000)", NULL), 0);
	assert_int_equal(open_alerts(db, "EP-6", "alert.customs_dwell"), 1);
	assert_int_equal(note_count(db, "kind = 'alert.customs_dwell'"), 4);
	it_daemon_stop_clean(d);
}

/*
 * Shipments of a cancelled order get no more events, so their alerts end
 * with the cancellation: each open one is cleared once at the next check,
 * and none is raised for them again.
 */
static void test_alerts_cancelled(void **state)
{
	(void)state;
	const char *db = "notify_cancelled";
	struct it_daemon *d = notify_daemon(db, NULL, NULL);
	struct it_client *c = it_connect(d);
	it_hello(c, KIVU, KIVU_TOKEN);
	char eta[40];
	it_utc_time(eta, sizeof(eta), -3600);
	const char *orders[] = {"CX-1", "CX-2"};
	for (int i = 0; i < 2; i++) {
		char id[32], ship[32];
		snprintf(ship, sizeof(ship), "%s-A", orders[i]);
		snprintf(id, sizeof(id), "cx%d-1", i + 1);
		send_ago(c, id, "order.created", orders[i], NULL, -6 * 3600, NULL, NULL);
		snprintf(id, sizeof(id), "cx%d-2", i + 1);
		send_ago(c, id, "shipment.eta_changed", orders[i], ship, -4 * 3600, "eta", eta);
		snprintf(id, sizeof(id), "cx%d-3", i + 1);
		send_ago(c, id, "shipment.customs_hold", orders[i], ship, -3 * 3600, NULL, NULL);
	}
	/* CX-2 is cancelled before any check, CX-1 after its alerts are raised. */
	send_ago(c, "cx2-4", "order.cancelled", "CX-2", NULL, -1800, NULL, NULL);
	it_db_long(db, "SELECT count(*) FROM ordertrack.evaluate_alerts(2, 2)", NULL);
	assert_int_equal(note_count(db, "kind LIKE 'alert.%' AND to_status = 'raised'"
	                                " AND order_ref = 'CX-1'"),
	                 3);
	assert_int_equal(note_count(db, "kind LIKE 'alert.%' AND order_ref = 'CX-2'"), 0);

	send_ago(c, "cx1-4", "order.cancelled", "CX-1", NULL, -1800, NULL, NULL);
	it_close(c);
	char *status =
	    it_db_value(db, "SELECT status FROM ordertrack.orders WHERE order_ref = 'CX-1'", NULL);
	assert_string_equal(status, "cancelled");
	free(status);
	assert_int_equal(
	    it_db_long(db, "SELECT count(*) FROM ordertrack.evaluate_alerts(2, 2)", NULL), 3);
	assert_int_equal(note_count(db, "kind LIKE 'alert.%' AND from_status = 'raised'"
	                                " AND to_status = 'cleared' AND order_ref = 'CX-1'"),
	                 3);
	assert_int_equal(
	    it_db_long(db, "SELECT count(*) FROM ordertrack.alerts WHERE cleared_at IS NULL", NULL),
	    0);
	assert_int_equal(
	    it_db_long(db, "SELECT count(*) FROM ordertrack.evaluate_alerts(2, 2)", NULL), 0);
	assert_int_equal(note_count(db, "kind LIKE 'alert.%'"), 6);
	it_daemon_stop_clean(d);
}

/* Send sql on pg without waiting for the answer; fail when it cannot be sent. */
static void db_send(PGconn *pg, const char *sql)
{
	if (!PQsendQuery(pg, sql))
		it_fail("%s: %s", sql, PQerrorMessage(pg));
}

/* Collect the answers of db_send(); fail unless all succeeded. */
static void db_finish(PGconn *pg, const char *what)
{
	PGresult *r;
	while ((r = PQgetResult(pg)) != NULL) {
		ExecStatusType st = PQresultStatus(r);
		PQclear(r);
		if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
			it_fail("%s: %s", what, PQerrorMessage(pg));
	}
}

/*
 * `at` is read when the seq is taken, not when the transaction began: a
 * transaction that began first but got the counter row second (it waited
 * for the first one's commit) gets the higher seq and a later `at`.
 * created_at is the same instant.
 */
static void test_at_follows_seq(void **state)
{
	(void)state;
	const char *db = "notify_at";
	struct it_daemon *d = notify_daemon(db, NULL, NULL);
	PGconn *early = db_connect(db), *first = db_connect(db);
	db_exec(early, "BEGIN");
	db_exec(early, "SELECT now()"); /* its snapshot, and now(), are taken here */
	it_sleep_ms(50);
	db_exec(first, "BEGIN");
	emit_elsewhere(first, "AT-FIRST");
	db_send(early, "SELECT ordertrack.emit_notifications('[{\"kind\": \"order.status\","
	               " \"exporter\": \"" KIVU "\", \"order\": \"AT-EARLY\", \"shipment\": null,"
	               " \"from\": null, \"to\": \"created\", \"event\": \"at-early-ev\","
	               " \"occurred_at\": \"" IT_OCCURRED_AT "\"}]'::jsonb)");
	long long deadline = it_now_ms() + IT_REPLY_MS;
	while (it_db_long(db,
	                  "SELECT count(*) FROM pg_locks WHERE NOT granted"
	                  " AND relation = 'ordertrack.notification_counter'::regclass",
	                  NULL) == 0 &&
	       it_db_long(db,
	                  "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
	                  " AND datname = current_database()",
	                  NULL) == 0) {
		if (it_now_ms() > deadline)
			it_fail("the second emitter never waited for the counter row");
		it_sleep_ms(20);
	}
	it_sleep_ms(50);
	db_exec(first, "COMMIT");
	db_finish(early, "emit after the wait");
	db_exec(early, "COMMIT");
	PQfinish(early);
	PQfinish(first);

	assert_int_equal(
	    it_db_long(db, "SELECT seq FROM ordertrack.notifications WHERE order_ref = 'AT-FIRST'",
	               NULL),
	    1);
	assert_int_equal(
	    it_db_long(db, "SELECT seq FROM ordertrack.notifications WHERE order_ref = 'AT-EARLY'",
	               NULL),
	    2);
	/* at grows with seq, and created_at is at. */
	assert_int_equal(
	    it_db_long(db,
	               "SELECT count(*) FROM ordertrack.notifications a"
	               " JOIN ordertrack.notifications b ON b.seq = a.seq + 1"
	               " WHERE (b.body->>'at')::timestamptz > (a.body->>'at')::timestamptz",
	               NULL),
	    1);
	assert_int_equal(it_db_long(db,
	                            "SELECT count(*) FROM ordertrack.notifications"
	                            " WHERE (body->>'at')::timestamptz = created_at",
	                            NULL),
	                 2);
	it_daemon_stop_clean(d);
}

/* SIGHUP the daemon and wait until it says it reloaded. */
static void reload(struct it_daemon *d)
{
	off_t off = it_log_offset(d);
	kill(d->pid, SIGHUP);
	it_log_expect(d, off, "msg=\"config reloaded\"", IT_REPLY_MS);
}

/* Store order (created 6 hours ago) with shipment ship held at customs for 2 hours. */
static void send_held(struct it_client *c, const char *order, const char *ship)
{
	char id[64];
	snprintf(id, sizeof(id), "%s-created", order);
	send_ago(c, id, "order.created", order, NULL, -6 * 3600, NULL, NULL);
	snprintf(id, sizeof(id), "%s-hold", order);
	send_ago(c, id, "shipment.customs_hold", order, ship, -2 * 3600, NULL, NULL);
}

/*
 * A reload that changes alerts.interval_s applies it; one that leaves it
 * alone does not start the wait over, so reloads more frequent than the
 * interval do not keep alerts from being evaluated.
 */
static void test_alerts_reload(void **state)
{
	(void)state;
	const char *db = "notify_alerts_reload";
	static const char alerts[] =
	    "alerts = { interval_s = 2; customs_hold_hours = 1; stale_hours = 1000; };\n";
	char extra[2048];
	struct it_daemon *d = notify_daemon(db, NULL, NULL);
	struct it_client *c = it_connect(d);
	it_hello(c, KIVU, KIVU_TOKEN);

	/* From a one-day interval to 2 s: the alert comes within seconds. */
	send_held(c, "RL-1", "RL-A");
	struct it_config cfg = notify_config(db, db, alerts, NULL, extra, sizeof(extra));
	it_daemon_rewrite(d, &cfg);
	reload(d);
	long long deadline = it_now_ms() + 10000;
	while (open_alerts(db, "RL-1", "alert.customs_dwell") == 0) {
		if (it_now_ms() > deadline)
			it_fail("no alert within 10 s of a reload to interval_s = 2");
		it_sleep_ms(100);
	}

	/* Reloads every half second, the interval unchanged: checks go on. */
	send_held(c, "RL-2", "RL-B");
	for (int i = 0; i < 12; i++) {
		reload(d);
		it_sleep_ms(500);
	}
	assert_int_equal(open_alerts(db, "RL-2", "alert.customs_dwell"), 1);
	it_close(c);
	it_daemon_stop_clean(d);
}

/* Teardown of every test: the receiver too, when a failed test left it running. */
static int notify_teardown(void **state)
{
	rcv_stop();
	return it_test_teardown(state);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_subscribe_scenario, notify_teardown),
	    cmocka_unit_test_teardown(test_subscribe_resume, notify_teardown),
	    cmocka_unit_test_teardown(test_subscribe_ahead, notify_teardown),
	    cmocka_unit_test_teardown(test_subscribe_before_schema, notify_teardown),
	    cmocka_unit_test_teardown(test_subscriber_across_outage, notify_teardown),
	    cmocka_unit_test_teardown(test_subscribe_under_load, notify_teardown),
	    cmocka_unit_test_teardown(test_slow_subscriber, notify_teardown),
	    cmocka_unit_test_teardown(test_subscribe_during_page, notify_teardown),
	    cmocka_unit_test_teardown(test_subscribe_page_failed, notify_teardown),
	    cmocka_unit_test_teardown(test_backlog_does_not_hold_up_live, notify_teardown),
	    cmocka_unit_test_teardown(test_rolled_back_batch, notify_teardown),
	    cmocka_unit_test_teardown(test_no_change_no_notification, notify_teardown),
	    cmocka_unit_test_teardown(test_retracted_event_not_cited, notify_teardown),
	    cmocka_unit_test_teardown(test_listen_notify, notify_teardown),
	    cmocka_unit_test_teardown(test_filters, notify_teardown),
	    cmocka_unit_test_teardown(test_webhook, notify_teardown),
	    cmocka_unit_test_teardown(test_webhook_kinds, notify_teardown),
	    cmocka_unit_test_teardown(test_webhook_redirect, notify_teardown),
	    cmocka_unit_test_teardown(test_webhook_answer_too_large, notify_teardown),
	    cmocka_unit_test_teardown(test_webhook_fetch_across_reconnect, notify_teardown),
	    cmocka_unit_test_teardown(test_webhook_ipv6, notify_teardown),
	    cmocka_unit_test_teardown(test_webhook_rare_kind_reads_once, notify_teardown),
	    cmocka_unit_test_teardown(test_webhook_woken_from_outside, notify_teardown),
	    cmocka_unit_test_teardown(test_webhook_two_daemons, notify_teardown),
	    cmocka_unit_test_teardown(test_webhook_newer_schema, notify_teardown),
	    cmocka_unit_test_teardown(test_webhook_save_lost, notify_teardown),
	    cmocka_unit_test_teardown(test_webhook_query_failed, notify_teardown),
	    cmocka_unit_test_teardown(test_webhook_cursor_read_failed, notify_teardown),
	    cmocka_unit_test_teardown(test_webhook_retry_after_session_lost, notify_teardown),
	    cmocka_unit_test_teardown(test_webhook_database_replaced, notify_teardown),
	    cmocka_unit_test_teardown(test_webhook_save_fails_at_commit, notify_teardown),
	    cmocka_unit_test_teardown(test_sessions_terminated, notify_teardown),
	    cmocka_unit_test_teardown(test_webhook_reload_in_flight, notify_teardown),
	    cmocka_unit_test_teardown(test_webhook_reload_while_retrying, notify_teardown),
	    cmocka_unit_test_teardown(test_webhook_stop_in_flight, notify_teardown),
	    cmocka_unit_test_teardown(test_webhook_reload_churn, notify_teardown),
	    cmocka_unit_test_teardown(test_alerts, notify_teardown),
	    cmocka_unit_test_teardown(test_alert_episodes, notify_teardown),
	    cmocka_unit_test_teardown(test_alert_overdue, notify_teardown),
	    cmocka_unit_test_teardown(test_alerts_cancelled, notify_teardown),
	    cmocka_unit_test_teardown(test_at_follows_seq, notify_teardown),
	    cmocka_unit_test_teardown(test_alerts_reload, notify_teardown),
	};
	it_env_init("notify");
	return it_env_fini(cmocka_run_group_tests(tests, NULL, NULL));
}
