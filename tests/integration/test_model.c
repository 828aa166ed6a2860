/*
 * test_model.c - the event model end to end: events over TCP, the read
 * model in PostgreSQL.
 *
 * The demo scenarios (tests/data) are sent to the real daemon and the rows
 * of ordertrack.orders, shipments, order_lines and documents are checked
 * against what the scenarios' author wrote down for the pure fold
 * (tests/unit/test_model.c).  The same events sent shuffled, one at a time
 * over several connections, into a second database must give the very same
 * rows: the status is a function of the set of events, not of their
 * arrival.  Then retractions and exporter isolation over the wire, and
 * rounds of random orders whose tables and notifications must agree with a
 * fold of the events stored.
 *
 * Every test uses databases of its own, so counts mean what they say.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "model.h"
#include "validate.h"

#define KIVU        "kivu-coffee"
#define KIVU_TOKEN  "demo-kivu-token"
#define CHILI       "akagera-chili"
#define CHILI_TOKEN "demo-chili-token"
#define KIVU_FILE   "tests/data/scenario-kivu-coffee.jsonl"
#define CHILI_FILE  "tests/data/scenario-akagera-chili.jsonl"

#define SHUFFLE_SEED  0x6f7264657274726bULL /* fixed: the run is reproducible */
#define SHUFFLE_CONNS 5                     /* connections per exporter */
#define ACKS_MS       30000

/* The documents rules of the shipped config, which the scenarios are written for. */
static const char documents_required[] =
    "documents = { required = (\n"
    "\t{ hs_prefix = \"0901\"; documents = [ \"phytosanitary\", \"certificate_of_origin\" ]; },\n"
    "\t{ hs_prefix = \"0904\"; documents = [ \"phytosanitary\", \"certificate_of_origin\",\n"
    "\t                                    \"quality_certificate\" ]; }\n"
    "); };";

/* The lines of one scenario file and the exporter that sends them. */
struct scenario {
	const char *exporter;
	const char *token;
	char *text;   /* the file, split in place */
	char **lines; /* each one event */
	size_t n;
};

/* One event of a shuffled run: which exporter sends which line. */
struct sent {
	const struct scenario *sc;
	const char *line;
};

/* Read a scenario file into lines. */
static void scenario_load(struct scenario *sc, const char *rel, const char *exporter,
                          const char *token)
{
	char *save = NULL;
	size_t cap = 0;

	memset(sc, 0, sizeof(*sc));
	sc->exporter = exporter;
	sc->token = token;
	sc->text = it_source_file(rel);
	for (char *l = strtok_r(sc->text, "\n", &save); l != NULL;
	     l = strtok_r(NULL, "\n", &save)) {
		if (l[0] == '\0')
			continue;
		if (sc->n == cap) {
			cap = cap ? 2 * cap : 64;
			sc->lines = realloc(sc->lines, cap * sizeof(*sc->lines));
			if (sc->lines == NULL)
				abort();
		}
		sc->lines[sc->n++] = l;
	}
	if (sc->n == 0)
		it_fail("%s has no events", rel);
}

/* Release what scenario_load allocated. */
static void scenario_free(struct scenario *sc)
{
	free(sc->lines);
	free(sc->text);
	memset(sc, 0, sizeof(*sc));
}

/* Parse one scenario line (they are all valid JSON objects). */
static json_t *line_json(const char *line)
{
	json_t *o = json_loads(line, 0, NULL);
	if (!json_is_object(o))
		it_fail("scenario line is not a JSON object: %.200s", line);
	return o;
}

/* The "id" of one scenario line, copied into out. */
static void line_id(const char *line, char *out, size_t cap)
{
	json_t *o = line_json(line);
	const char *id = it_json_str(o, "id");
	if (id == NULL)
		it_fail("scenario line without an id: %.200s", line);
	snprintf(out, cap, "%s", id);
	json_decref(o);
}

/*
 * What the file says an order should have in order_lines and documents:
 * the lines of its latest order.created (each scenario order has one) and
 * its document.issued events, those for one shipment counted apart.
 */
static void scenario_counts(const struct scenario *sc, const char *order, long *lines, long *docs,
                            long *docs_for_shipment)
{
	*lines = *docs = *docs_for_shipment = 0;
	for (size_t i = 0; i < sc->n; i++) {
		json_t *o = line_json(sc->lines[i]);
		const char *type = it_json_str(o, "type");
		const char *ord = it_json_str(o, "order");
		if (ord != NULL && strcmp(ord, order) == 0) {
			if (strcmp(type, "order.created") == 0)
				*lines = (long)json_array_size(json_object_get(o, "lines"));
			else if (strcmp(type, "document.issued") == 0) {
				(*docs)++;
				if (json_object_get(o, "shipment") != NULL)
					(*docs_for_shipment)++;
			}
		}
		json_decref(o);
	}
}

/* A config with the two demo exporters, and the documents rules if asked. */
static struct it_config model_config(const char *name, bool documents)
{
	struct it_config cfg = {
	    .name = name,
	    .dbname = name,
	    .no_default_exporters = true,
	    .extra = {{KIVU, "Kivu Hills Coffee Cooperative", KIVU_TOKEN},
	              {CHILI, "Akagera Chili Exporters", CHILI_TOKEN}},
	    .n_extra = 2,
	    .extra_text = documents ? documents_required : NULL,
	};
	return cfg;
}

/* A new database and a daemon on it. */
static struct it_daemon *model_daemon(const char *name, bool documents)
{
	it_pg_createdb(name);
	struct it_config cfg = model_config(name, documents);
	return it_daemon_start(&cfg, true);
}

/* Send a whole scenario pipelined on one connection; every event must be "stored". */
static void send_scenario(struct it_daemon *d, const struct scenario *sc)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&buf, &len);
	if (mem == NULL)
		abort();
	for (size_t i = 0; i < sc->n; i++)
		fprintf(mem, "%s\n", sc->lines[i]);
	fclose(mem);

	struct it_client *c = it_connect(d);
	it_hello(c, sc->exporter, sc->token);
	it_send_raw(c, buf, len);
	free(buf);
	for (size_t i = 0; i < sc->n; i++) {
		char id[160];
		line_id(sc->lines[i], id, sizeof(id));
		char *line = it_read_line(c, ACKS_MS);
		it_check_ack(line, id, "stored");
		free(line);
	}
	it_close(c);
}

/* Fail unless got (malloc'd or NULL, freed here) equals want (NULL: SQL null). */
static void expect_text_at(const char *file, int line, char *got, const char *want,
                           const char *what)
{
	bool same = (got == NULL && want == NULL) ||
	            (got != NULL && want != NULL && strcmp(got, want) == 0);
	if (!same) {
		char g[512];
		snprintf(g, sizeof(g), "%s", got != NULL ? got : "(null)");
		free(got);
		it_fail_at(file, line, "%s: expected %s, got %s", what,
		           want != NULL ? want : "(null)", g);
	}
	free(got);
}
#define expect_text(got, want, what) expect_text_at(__FILE__, __LINE__, got, want, what)

/* "status|anomalies" of an order. */
static char *order_summary(const char *db, const char *exporter, const char *order)
{
	return it_db_value(db,
	                   "SELECT status || '|' || array_to_string(anomalies, ',')"
	                   " FROM ordertrack.orders WHERE exporter = $1 AND order_ref = $2",
	                   exporter, order, NULL);
}

/* "status|milestone|hold|exception|last_location" of a shipment, '-' for null. */
static char *ship_summary(const char *db, const char *exporter, const char *order, const char *ship)
{
	return it_db_value(db,
	                   "SELECT concat_ws('|', status, milestone, coalesce(hold, '-'),"
	                   " coalesce(exception, '-'), coalesce(last_location, '-'))"
	                   " FROM ordertrack.shipments"
	                   " WHERE exporter = $1 AND order_ref = $2 AND shipment_ref = $3",
	                   exporter, order, ship, NULL);
}

/* One column of a shipment as text. */
static char *ship_col(const char *db, const char *col_sql, const char *exporter, const char *order,
                      const char *ship)
{
	char sql[512];
	snprintf(sql, sizeof(sql),
	         "SELECT %s FROM ordertrack.shipments"
	         " WHERE exporter = $1 AND order_ref = $2 AND shipment_ref = $3",
	         col_sql);
	return it_db_value(db, sql, exporter, order, ship, NULL);
}

/* Rows of a table for (exporter, order), as a number. */
static long count_of(const char *db, const char *table, const char *exporter, const char *order)
{
	char sql[256];
	snprintf(sql, sizeof(sql),
	         "SELECT count(*) FROM ordertrack.%s WHERE exporter = $1 AND order_ref = $2",
	         table);
	return it_db_long(db, sql, exporter, order, NULL);
}

/* order_lines and documents of one order match the scenario file. */
static void expect_counts(const char *db, const struct scenario *sc, const char *order)
{
	long lines, docs, docs_ship;
	scenario_counts(sc, order, &lines, &docs, &docs_ship);
	if (lines == 0 || docs == 0)
		it_fail("scenario has no lines or no documents for %s", order);
	if (count_of(db, "order_lines", sc->exporter, order) != lines)
		it_fail("%s: %ld order_lines rows, the scenario has %ld lines", order,
		        count_of(db, "order_lines", sc->exporter, order), lines);
	if (count_of(db, "documents", sc->exporter, order) != docs)
		it_fail("%s: %ld documents rows, the scenario issues %ld", order,
		        count_of(db, "documents", sc->exporter, order), docs);
	long got_ship = it_db_long(db,
	                           "SELECT count(*) FROM ordertrack.documents WHERE exporter = $1"
	                           " AND order_ref = $2 AND shipment_ref IS NOT NULL",
	                           sc->exporter, order, NULL);
	if (got_ship != docs_ship)
		it_fail("%s: %ld documents for one shipment, the scenario issues %ld", order,
		        got_ship, docs_ship);
}

/* The read model of both scenarios, as tests/unit/test_model.c says it folds. */
static void expect_scenario_rows(const char *db, const struct scenario *kivu,
                                 const struct scenario *chili)
{
	assert_int_equal(it_db_rows(db), (long)(kivu->n + chili->n));
	assert_int_equal(it_db_long(db, "SELECT count(*) FROM ordertrack.orders", NULL), 3);
	assert_int_equal(it_db_long(db, "SELECT count(*) FROM ordertrack.shipments", NULL), 6);

	/* Coffee: one order delivered after an import hold, one in transit. */
	expect_text(order_summary(db, KIVU, "KVH-2026-0142"), "delivered|", "KVH-2026-0142");
	expect_text(it_db_value(db,
	                        "SELECT channel FROM ordertrack.orders"
	                        " WHERE exporter = $1 AND order_ref = $2",
	                        KIVU, "KVH-2026-0142", NULL),
	            "Tmall Global", "KVH-2026-0142 channel");
	expect_text(ship_summary(db, KIVU, "KVH-2026-0142", "KVH-0142-A"),
	            "delivered|delivered|-|-|CNHGH", "KVH-0142-A");
	expect_text(ship_col(db, "mode", KIVU, "KVH-2026-0142", "KVH-0142-A"), "air",
	            "KVH-0142-A mode");
	expect_text(order_summary(db, KIVU, "KVH-2026-0157"), "in_transit|", "KVH-2026-0157");
	expect_text(ship_summary(db, KIVU, "KVH-2026-0157", "KVH-0157-A"),
	            "departed|departed|-|-|AEDXB", "KVH-0157-A");
	expect_text(ship_col(db, "eta = '2026-11-08T12:00:00+08:00'::timestamptz", KIVU,
	                     "KVH-2026-0157", "KVH-0157-A"),
	            "t", "KVH-0157-A eta is 2026-11-08T12:00:00+08:00");
	expect_text(ship_col(db, "last_event_at = '2026-11-03T11:00:00+04:00'::timestamptz", KIVU,
	                     "KVH-2026-0157", "KVH-0157-A"),
	            "t", "KVH-0157-A last_event_at is 2026-11-03T11:00:00+04:00");

	/* Chili: four store groups, a hold, a delay, a late certificate, a correction. */
	const char *akc = "AKC-HEMA-2026-031";
	expect_text(order_summary(db, CHILI, akc), "partially_delivered|missing_documents", akc);
	expect_text(it_db_value(db,
	                        "SELECT buyer || '|' || (last_event_at ="
	                        " '2026-11-12T16:00:00+08:00'::timestamptz)::text"
	                        " FROM ordertrack.orders WHERE exporter = $1 AND order_ref = $2",
	                        CHILI, akc, NULL),
	            "Hema Fresh|true", "AKC buyer and last_event_at");
	expect_text(ship_summary(db, CHILI, akc, "AKC-031-SH1"),
	            "customs_hold|arrived|import|-|CNSHA", "AKC-031-SH1 (held in Shanghai)");
	expect_text(ship_summary(db, CHILI, akc, "AKC-031-SH2"),
	            "exception|departed|-|delayed|KEMBA",
	            "AKC-031-SH2 (delayed; its arrival retracted)");
	expect_text(ship_col(db, "eta = '2026-11-24T08:00:00+08:00'::timestamptz", CHILI, akc,
	                     "AKC-031-SH2"),
	            "t", "AKC-031-SH2 eta is 2026-11-24T08:00:00+08:00");
	expect_text(ship_summary(db, CHILI, akc, "AKC-031-SH3"),
	            "import_cleared|import_cleared|-|-|CNSHA", "AKC-031-SH3");
	expect_text(ship_summary(db, CHILI, akc, "AKC-031-SH4"),
	            "delivered|delivered|-|-|Hema Fresh distribution centre, Xuhui",
	            "AKC-031-SH4 (a location with a name only)");
	expect_text(ship_col(db, "consignee", CHILI, akc, "AKC-031-SH4"),
	            "Hema Fresh Shanghai, Xuhui store group", "AKC-031-SH4 consignee");

	/* Lines and documents, counted from the files. */
	expect_counts(db, kivu, "KVH-2026-0142");
	expect_counts(db, kivu, "KVH-2026-0157");
	expect_counts(db, chili, akc);
	/* A line's numbers as the exporter wrote them, in the order's currency. */
	expect_text(it_db_value(db,
	                        "SELECT concat_ws('|', sku, quantity, unit, unit_price, currency)"
	                        " FROM ordertrack.order_lines"
	                        " WHERE exporter = $1 AND order_ref = $2 AND line_no = 2",
	                        KIVU, "KVH-2026-0142", NULL),
	            "KHC-WA-500G|360|bag|7.9|USD", "KVH-2026-0142 line 2");
}

/* Both scenarios in order, one connection each: all stored, the rows as the author said. */
static void test_scenarios_in_order(void **state)
{
	(void)state;
	struct scenario kivu, chili;
	scenario_load(&kivu, KIVU_FILE, KIVU, KIVU_TOKEN);
	scenario_load(&chili, CHILI_FILE, CHILI, CHILI_TOKEN);

	struct it_daemon *d = model_daemon("model_in_order", true);
	send_scenario(d, &kivu);
	send_scenario(d, &chili);
	expect_scenario_rows("model_in_order", &kivu, &chili);
	it_daemon_stop_clean(d);
	scenario_free(&kivu);
	scenario_free(&chili);
}

/* A small deterministic generator (xorshift64*), for the shuffle. */
static uint64_t rng_next(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dULL;
}

/*
 * The text of a whole table, one row per line, ordered by key: what must
 * be identical between the two databases.
 */
static char *table_text(const char *db, const char *select_sql, const char *order_by)
{
	char sql[2048];
	snprintf(sql, sizeof(sql),
	         "SELECT coalesce(string_agg(t::text, E'\\n' ORDER BY %s), '') FROM (%s) t",
	         order_by, select_sql);
	return it_db_value(db, sql, NULL);
}

/* Fail at the first line where the two texts differ. */
static void expect_same_text(const char *what, const char *a, const char *b)
{
	if (strcmp(a, b) == 0)
		return;
	size_t i = 0, line_start = 0;
	for (; a[i] != '\0' && a[i] == b[i]; i++)
		if (a[i] == '\n')
			line_start = i + 1;
	it_fail("%s differ between the runs; from: in order: %.300s ||| shuffled: %.300s", what,
	        a + line_start, b + line_start);
}

/*
 * The same events shuffled (fixed seed), one at a time over several
 * connections, into a fresh database: orders and shipments (every column
 * but updated_at), lines and documents are the same as in order.
 */
static void test_scenarios_shuffled(void **state)
{
	(void)state;
	struct scenario kivu, chili;
	scenario_load(&kivu, KIVU_FILE, KIVU, KIVU_TOKEN);
	scenario_load(&chili, CHILI_FILE, CHILI, CHILI_TOKEN);

	/* Run 1, in order, for reference. */
	struct it_daemon *d1 = model_daemon("model_ref", true);
	send_scenario(d1, &kivu);
	send_scenario(d1, &chili);
	expect_scenario_rows("model_ref", &kivu, &chili);
	it_daemon_stop_clean(d1);

	/* Run 2: every event of both files in one shuffled list. */
	size_t n = kivu.n + chili.n;
	struct sent *evs = calloc(n, sizeof(*evs));
	if (evs == NULL)
		abort();
	for (size_t i = 0; i < kivu.n; i++)
		evs[i] = (struct sent){&kivu, kivu.lines[i]};
	for (size_t i = 0; i < chili.n; i++)
		evs[kivu.n + i] = (struct sent){&chili, chili.lines[i]};
	uint64_t seed = SHUFFLE_SEED;
	for (size_t i = n - 1; i > 0; i--) {
		size_t j = (size_t)(rng_next(&seed) % (i + 1));
		struct sent t = evs[i];
		evs[i] = evs[j];
		evs[j] = t;
	}
	/* The shuffle must really reorder within an order, or the test proves little. */
	size_t moved = 0;
	for (size_t i = 0; i < n; i++)
		moved += evs[i].line != (i < kivu.n ? kivu.lines[i] : chili.lines[i - kivu.n]);
	assert_true(moved > n / 2);

	struct it_daemon *d2 = model_daemon("model_shuffled", true);
	struct it_client *conns[2][SHUFFLE_CONNS];
	size_t next[2] = {0, 0};
	for (int k = 0; k < SHUFFLE_CONNS; k++) {
		conns[0][k] = it_connect(d2);
		it_hello(conns[0][k], KIVU, KIVU_TOKEN);
		conns[1][k] = it_connect(d2);
		it_hello(conns[1][k], CHILI, CHILI_TOKEN);
	}
	for (size_t i = 0; i < n; i++) {
		int e = evs[i].sc == &kivu ? 0 : 1;
		struct it_client *c = conns[e][next[e]++ % SHUFFLE_CONNS];
		char id[160];
		line_id(evs[i].line, id, sizeof(id));
		it_send(c, evs[i].line);
		it_expect_ack(c, id, "stored");
	}
	free(evs);
	expect_scenario_rows("model_shuffled", &kivu, &chili);

	static const struct {
		const char *what;
		const char *select_sql;
		const char *order_by;
	} tables[] = {
	    {"orders",
	     "SELECT exporter, order_ref, status, buyer, channel, origin, destination, incoterm,"
	     " currency, expected_delivery, anomalies, created_at, last_event_at, state"
	     " FROM ordertrack.orders",
	     "t.exporter COLLATE \"C\", t.order_ref COLLATE \"C\""},
	    {"shipments",
	     "SELECT exporter, order_ref, shipment_ref, status, milestone, hold, exception, mode,"
	     " carrier, tracking, consignee, eta, last_event_at, last_location"
	     " FROM ordertrack.shipments",
	     "t.exporter COLLATE \"C\", t.order_ref COLLATE \"C\", t.shipment_ref COLLATE \"C\""},
	    {"order_lines", "SELECT * FROM ordertrack.order_lines",
	     "t.exporter COLLATE \"C\", t.order_ref COLLATE \"C\", t.line_no"},
	    {"documents", "SELECT * FROM ordertrack.documents", "t::text COLLATE \"C\""},
	};
	for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
		char *a = table_text("model_ref", tables[i].select_sql, tables[i].order_by);
		char *b = table_text("model_shuffled", tables[i].select_sql, tables[i].order_by);
		if (a == NULL || b == NULL || a[0] == '\0')
			it_fail("%s: empty in the reference run", tables[i].what);
		expect_same_text(tables[i].what, a, b);
		free(a);
		free(b);
	}
	it_daemon_stop_clean(d2);
	scenario_free(&kivu);
	scenario_free(&chili);
}

/* An event.retracted line (occurred_at after it_event_line's events). */
static char *retract_line(const char *id, const char *order, const char *target)
{
	char *s;
	if (asprintf(&s,
	             "{\"type\":\"event.retracted\",\"id\":\"%s\","
	             "\"occurred_at\":\"2026-11-21T10:00:00Z\",\"order\":\"%s\","
	             "\"retracts\":\"%s\",\"reason\":\"sent by mistake\"}",
	             id, order, target) < 0)
		abort();
	return s;
}

/* Send an event built by it_event_line and require the ack. */
static void send_ok(struct it_client *c, const char *id, const char *type, const char *order,
                    const char *ship, const char *result)
{
	char *line = it_event_line(id, type, order, ship);
	it_send(c, line);
	free(line);
	it_expect_ack(c, id, result);
}

/* Send a retraction and require the ack. */
static void retract_ok(struct it_client *c, const char *id, const char *order, const char *target)
{
	char *line = retract_line(id, order, target);
	it_send(c, line);
	free(line);
	it_expect_ack(c, id, "stored");
}

/* Send a retraction the daemon must refuse: invalid_event naming "retracts". */
static void retract_refused(struct it_client *c, const char *id, const char *order,
                            const char *target)
{
	char *line = retract_line(id, order, target);
	it_send(c, line);
	free(line);
	json_t *e = it_expect_error(c, id, "invalid_event");
	const char *msg = it_json_str(e, "message");
	if (msg == NULL || strstr(msg, "\"retracts\"") == NULL)
		it_fail("refusal of %s should name field \"retracts\": %s", id,
		        msg ? msg : "(none)");
	json_decref(e);
}

/* Is (exporter, id) in the event log? */
static long stored(const char *db, const char *exporter, const char *id)
{
	return it_db_long(db,
	                  "SELECT count(*) FROM ordertrack.events"
	                  " WHERE exporter = $1 AND event_id = $2",
	                  exporter, id, NULL);
}

/*
 * Retractions over the wire: the status goes back; one that comes before
 * its target waits for it; one naming a stored retraction, or an event of
 * another order, is refused; a retraction of a retraction that got in
 * first (its target came later) counts for nothing; a stored retraction
 * sent again is a duplicate, whatever came after it; the refusals hold
 * when the target comes in the same batch.
 */
static void test_retractions(void **state)
{
	(void)state;
	const char *db = "model_retract";
	struct it_daemon *d = model_daemon(db, false);
	struct it_client *c = it_connect(d);
	it_hello(c, KIVU, KIVU_TOKEN);

	send_ok(c, "rt-01", "order.created", "R-1", NULL, "stored");
	send_ok(c, "rt-02", "shipment.booked", "R-1", "R1-A", "stored");
	send_ok(c, "rt-03", "shipment.departed", "R-1", "R1-A", "stored");
	expect_text(order_summary(db, KIVU, "R-1"), "in_transit|", "R-1 after the departure");
	expect_text(ship_summary(db, KIVU, "R-1", "R1-A"), "departed|departed|-|-|-",
	            "R1-A after the departure");

	/* Retracted: back to booked. */
	retract_ok(c, "rt-04", "R-1", "rt-03");
	expect_text(order_summary(db, KIVU, "R-1"), "booked|", "R-1 after retracting rt-03");
	expect_text(ship_summary(db, KIVU, "R-1", "R1-A"), "booked|booked|-|-|-",
	            "R1-A after retracting rt-03");

	/* A retraction of a stored retraction is refused and not stored. */
	retract_refused(c, "rt-05", "R-1", "rt-04");
	assert_int_equal(stored(db, KIVU, "rt-05"), 0);
	expect_text(order_summary(db, KIVU, "R-1"), "booked|", "R-1 after the refused rt-05");

	/* Naming an event of another order is refused, both ways. */
	send_ok(c, "rt2-01", "order.created", "R-2", NULL, "stored");
	retract_refused(c, "rt-06", "R-1", "rt2-01");
	retract_refused(c, "rt2-02", "R-2", "rt-02");
	assert_int_equal(stored(db, KIVU, "rt-06"), 0);
	assert_int_equal(stored(db, KIVU, "rt2-02"), 0);
	expect_text(order_summary(db, KIVU, "R-2"), "created|", "R-2");
	expect_text(ship_summary(db, KIVU, "R-1", "R1-A"), "booked|booked|-|-|-",
	            "R1-A after the refused rt2-02");

	/* Before its target: stored, no effect; the target then counts for nothing. */
	retract_ok(c, "rt-07", "R-1", "rt-08");
	expect_text(ship_summary(db, KIVU, "R-1", "R1-A"), "booked|booked|-|-|-",
	            "R1-A with a retraction waiting for its target");
	send_ok(c, "rt-08", "shipment.arrived", "R-1", "R1-A", "stored");
	assert_int_equal(stored(db, KIVU, "rt-08"), 1);
	expect_text(ship_summary(db, KIVU, "R-1", "R1-A"), "booked|booked|-|-|-",
	            "R1-A after its arrival came, already retracted");
	expect_text(order_summary(db, KIVU, "R-1"), "booked|", "R-1 after rt-08");

	/*
	 * rt-09 retracts rt-10 before it exists; rt-10 turns out to be a
	 * retraction (of R1-B's departure).  rt-09 counts for nothing, rt-10
	 * takes effect.
	 */
	send_ok(c, "rt-11", "shipment.booked", "R-1", "R1-B", "stored");
	send_ok(c, "rt-12", "shipment.departed", "R-1", "R1-B", "stored");
	expect_text(order_summary(db, KIVU, "R-1"), "in_transit|", "R-1 with R1-B departed");
	retract_ok(c, "rt-09", "R-1", "rt-10");
	retract_ok(c, "rt-10", "R-1", "rt-12");
	expect_text(ship_summary(db, KIVU, "R-1", "R1-B"), "booked|booked|-|-|-",
	            "R1-B: rt-10 retracts its departure; rt-09 counts for nothing");
	expect_text(order_summary(db, KIVU, "R-1"), "booked|", "R-1 at the end");

	/*
	 * A refused id may be reused (nothing was stored under it).  Retracting
	 * R1-A's booking leaves it no event that counts: the shipment is gone.
	 */
	retract_ok(c, "rt-05", "R-1", "rt-02");
	assert_int_equal(it_db_long(db,
	                            "SELECT count(*) FROM ordertrack.shipments"
	                            " WHERE exporter = $1 AND order_ref = 'R-1'",
	                            KIVU, NULL),
	                 1);
	expect_text(ship_summary(db, KIVU, "R-1", "R1-B"), "booked|booked|-|-|-", "R1-B");
	expect_text(order_summary(db, KIVU, "R-1"), "booked|", "R-1 with R1-A gone");
	/* Sending a stored retraction again is a duplicate. */
	char *again = retract_line("rt-04", "R-1", "rt-03");
	it_send(c, again);
	free(again);
	it_expect_ack(c, "rt-04", "duplicate");

	/*
	 * rt-13 is stored before its target, which then comes under another
	 * order: sending rt-13 again is a duplicate still (it is stored), and
	 * other content under its id a conflict, not a refusal.
	 */
	retract_ok(c, "rt-13", "R-1", "rt-14");
	send_ok(c, "rt-14", "order.created", "R-3", NULL, "stored");
	again = retract_line("rt-13", "R-1", "rt-14");
	it_send(c, again);
	free(again);
	it_expect_ack(c, "rt-13", "duplicate");
	again = retract_line("rt-13", "R-1", "rt-01");
	it_send(c, again);
	free(again);
	json_t *e = it_expect_error(c, "rt-13", "conflict");
	json_decref(e);
	assert_int_equal(stored(db, KIVU, "rt-13"), 1);

	/*
	 * The same rules when the target comes in the same batch: a
	 * retraction of a retraction, and one from another order, are
	 * refused there too (both were stored, counting for nothing).
	 */
	char *line = it_event_line("rb-01", "shipment.booked", "R-5", "R5-A");
	char *r2 = retract_line("rb-02", "R-5", "rb-01");
	char *r3 = retract_line("rb-03", "R-5", "rb-02");
	char *r4 = retract_line("rb-04", "R-6", "rb-01");
	char together[2048];
	snprintf(together, sizeof(together), "%s\n%s\n%s\n%s\n", line, r2, r3, r4);
	free(line);
	free(r2);
	free(r3);
	free(r4);
	it_send_raw(c, together, strlen(together));
	it_expect_ack(c, "rb-01", "stored");
	it_expect_ack(c, "rb-02", "stored");
	const char *refused[] = {"rb-03", "rb-04"};
	for (size_t i = 0; i < 2; i++) {
		e = it_expect_error(c, refused[i], "invalid_event");
		const char *msg = it_json_str(e, "message");
		if (msg == NULL || strstr(msg, "\"retracts\"") == NULL)
			it_fail("refusal of %s should name field \"retracts\": %s", refused[i],
			        msg ? msg : "(none)");
		json_decref(e);
		assert_int_equal(stored(db, KIVU, refused[i]), 0);
	}
	/* One batch, or this shows nothing. */
	assert_int_equal(it_db_long(db,
	                            "SELECT count(DISTINCT xmin::text) FROM ordertrack.events"
	                            " WHERE event_id IN ('rb-01', 'rb-02')",
	                            NULL),
	                 1);
	/* Only what the batch will store counts as its target: a resend of
	 * a stored event under another order (a conflict) is not the
	 * target the retraction beside it names; the stored one is. */
	send_ok(c, "rc-01", "shipment.booked", "R-7", "R7-A", "stored");
	line = it_event_line("rc-01", "shipment.booked", "R-8", "R8-A");
	r2 = retract_line("rc-02", "R-7", "rc-01");
	snprintf(together, sizeof(together), "%s\n%s\n", line, r2);
	free(line);
	free(r2);
	it_send_raw(c, together, strlen(together));
	json_decref(it_expect_error(c, "rc-01", "conflict"));
	it_expect_ack(c, "rc-02", "stored");
	it_daemon_stop_clean(d);
}

/*
 * Times finer than a millisecond order an order's events the same way in
 * every fold.  The model sorts by the millisecond as sent (".1236" is
 * millisecond 123, ".1240" is 124), the id breaking ties.  A later fold
 * reads both back from the database; had it rounded the first to 124,
 * the ids ("z-" after "a-") would make the departure the latest event,
 * and the shipment's last location would move back to Kigali.
 */
static void test_sub_millisecond_times(void **state)
{
	static const char both[] =
	    "{\"type\":\"shipment.departed\",\"id\":\"z-dep\",\"occurred_at\":"
	    "\"2026-11-20T09:15:30.1236Z\",\"order\":\"SM-1\",\"shipment\":\"SM-1A\","
	    "\"location\":{\"name\":\"Kigali\"}}\n"
	    "{\"type\":\"shipment.arrived\",\"id\":\"a-arr\",\"occurred_at\":"
	    "\"2026-11-20T09:15:30.1240Z\",\"order\":\"SM-1\",\"shipment\":\"SM-1A\","
	    "\"location\":{\"name\":\"Shanghai\"}}\n";
	(void)state;
	const char *db = "model_submilli";
	struct it_daemon *d = model_daemon(db, false);
	struct it_client *c = it_connect(d);
	it_hello(c, KIVU, KIVU_TOKEN);
	it_send_raw(c, both, strlen(both));
	it_expect_ack(c, "z-dep", "stored");
	it_expect_ack(c, "a-arr", "stored");
	expect_text(ship_summary(db, KIVU, "SM-1", "SM-1A"), "arrived|arrived|-|-|Shanghai",
	            "SM-1A after its departure and arrival");
	/* Any later event of the order folds both again, from the database. */
	send_ok(c, "sm-conf", "order.confirmed", "SM-1", NULL, "stored");
	expect_text(ship_summary(db, KIVU, "SM-1", "SM-1A"), "arrived|arrived|-|-|Shanghai",
	            "SM-1A folded again from the stored events");
	it_daemon_stop_clean(d);
}

/*
 * Two exporters, the same order ref and the same event ids: separate rows.
 * A retraction naming the other exporter's event id finds nothing in its
 * own namespace: stored, no effect anywhere.
 */
static void test_exporter_isolation(void **state)
{
	(void)state;
	const char *db = "model_isolation";
	struct it_daemon *d = model_daemon(db, false);
	struct it_client *k = it_connect(d);
	struct it_client *a = it_connect(d);
	it_hello(k, KIVU, KIVU_TOKEN);
	it_hello(a, CHILI, CHILI_TOKEN);

	send_ok(k, "iso-01", "order.created", "SHARED-1", NULL, "stored");
	send_ok(a, "iso-01", "order.created", "SHARED-1", NULL, "stored");
	send_ok(k, "iso-02", "shipment.booked", "SHARED-1", "SX", "stored");
	send_ok(k, "iso-03", "shipment.departed", "SHARED-1", "SX", "stored");
	send_ok(a, "iso-02", "order.confirmed", "SHARED-1", NULL, "stored");

	assert_int_equal(it_db_long(db,
	                            "SELECT count(*) FROM ordertrack.orders"
	                            " WHERE order_ref = 'SHARED-1'",
	                            NULL),
	                 2);
	expect_text(order_summary(db, KIVU, "SHARED-1"), "in_transit|", "kivu's SHARED-1");
	expect_text(order_summary(db, CHILI, "SHARED-1"), "confirmed|", "akagera's SHARED-1");
	assert_int_equal(count_of(db, "shipments", KIVU, "SHARED-1"), 1);
	assert_int_equal(count_of(db, "shipments", CHILI, "SHARED-1"), 0);
	assert_int_equal(count_of(db, "order_lines", KIVU, "SHARED-1"), 1);
	assert_int_equal(count_of(db, "order_lines", CHILI, "SHARED-1"), 1);

	/* akagera "retracts" kivu's departure: its own iso-03 does not exist. */
	retract_ok(a, "iso-04", "SHARED-1", "iso-03");
	expect_text(order_summary(db, KIVU, "SHARED-1"), "in_transit|",
	            "kivu's SHARED-1 after akagera's retraction");
	expect_text(ship_summary(db, KIVU, "SHARED-1", "SX"), "departed|departed|-|-|-",
	            "kivu's SX after akagera's retraction");
	expect_text(order_summary(db, CHILI, "SHARED-1"), "confirmed|",
	            "akagera's SHARED-1 after its retraction");
	expect_text(it_db_value(db,
	                        "SELECT string_agg(exporter, ',' ORDER BY exporter)"
	                        " FROM ordertrack.events WHERE event_id = 'iso-04'",
	                        NULL),
	            CHILI, "who stored iso-04");
	/* The same id with other content is a conflict only within one exporter. */
	send_ok(a, "iso-03", "order.confirmed", "SHARED-1", NULL, "stored");
	expect_text(ship_summary(db, KIVU, "SHARED-1", "SX"), "departed|departed|-|-|-",
	            "kivu's SX once akagera has an iso-03 of its own");
	/* Now akagera's iso-04 has a target: its own iso-03, a confirmation. */
	expect_text(order_summary(db, CHILI, "SHARED-1"), "confirmed|",
	            "akagera's SHARED-1 (iso-02 still confirms it)");
	it_daemon_stop_clean(d);
}

/*
 * The read model's time columns are instants; the folded state keeps the
 * text as sent.  orders.last_event_at is the latest event that counts: a
 * retraction that takes nothing out and a retracted event leave it alone,
 * an effective retraction sets it.  A leap second is refused.
 */
static void test_times_and_last_event(void **state)
{
	static const char departed_late[] =
	    "{\"type\":\"shipment.departed\",\"id\":\"tl-04\",\"occurred_at\":"
	    "\"2026-11-22T08:00:00+08:00\",\"order\":\"TL-1\",\"shipment\":\"TL-1A\"}";
	static const char leap[] = "{\"type\":\"order.confirmed\",\"id\":\"tl-06\",\"occurred_at\":"
	                           "\"2016-12-31T23:59:60Z\",\"order\":\"TL-1\"}";
	static const char last_sql[] =
	    "SELECT last_event_at = $3::timestamptz FROM ordertrack.orders"
	    " WHERE exporter = $1 AND order_ref = $2";
	(void)state;
	const char *db = "model_times";
	struct it_daemon *d = model_daemon(db, false);
	struct it_client *c = it_connect(d);
	it_hello(c, KIVU, KIVU_TOKEN);

	send_ok(c, "tl-01", "order.created", "TL-1", NULL, "stored");
	send_ok(c, "tl-02", "shipment.booked", "TL-1", "TL-1A", "stored");
	expect_text(it_db_value(db,
	                        "SELECT (created_at = $3::timestamptz)::text || '|' ||"
	                        " (state->'order'->>'created_at')"
	                        " FROM ordertrack.orders WHERE exporter = $1 AND order_ref = $2",
	                        KIVU, "TL-1", IT_OCCURRED_AT, NULL),
	            "true|" IT_OCCURRED_AT, "TL-1 created_at: the instant; the state: as sent");

	/* A retraction of an id never sent counts for nothing, so not here either. */
	retract_ok(c, "tl-03", "TL-1", "never-sent");
	expect_text(it_db_value(db, last_sql, KIVU, "TL-1", IT_OCCURRED_AT, NULL), "t",
	            "TL-1 last_event_at after a retraction that takes nothing out");

	/* A later event counts until it is retracted; the retraction then counts. */
	it_send(c, departed_late);
	it_expect_ack(c, "tl-04", "stored");
	expect_text(it_db_value(db, last_sql, KIVU, "TL-1", "2026-11-22T08:00:00+08:00", NULL), "t",
	            "TL-1 last_event_at after the departure");
	retract_ok(c, "tl-05", "TL-1", "tl-04");
	expect_text(it_db_value(db, last_sql, KIVU, "TL-1", "2026-11-21T10:00:00Z", NULL), "t",
	            "TL-1 last_event_at: the retraction, not the retracted departure");

	/* RFC 3339 allows a leap second; the protocol does not. */
	it_send(c, leap);
	json_t *e = it_expect_error(c, "tl-06", "invalid_event");
	const char *msg = it_json_str(e, "message");
	if (msg == NULL || strstr(msg, "\"occurred_at\"") == NULL)
		it_fail("a leap second should be refused naming occurred_at: %s",
		        msg ? msg : "(none)");
	json_decref(e);
	it_daemon_stop_clean(d);
}

/*
 * Random orders end to end.  Made-up stories of several orders (corrected
 * order.created, documents for the order or a shipment, holds, exceptions,
 * eta changes, cancellations, retractions of any event of any order or of
 * ids never sent, times with every offset and fractions that tie to the
 * millisecond) are sent shuffled, in bursts over three connections, some
 * twice.  Then, per order, the read-model tables must hold what a fold of
 * the stored events gives, ordertrack.held_since() the start of each held
 * shipment's episode by the fold's rule, and the notifications of each
 * value must chain from null to the value the fold gives, one per change.
 */

#define PROP_ORDERS 6
#define PROP_MAX    400

/* splitmix64, so a failing seed reproduces. */
static uint64_t prop_next(uint64_t *st)
{
	uint64_t z = (*st += UINT64_C(0x9e3779b97f4a7c15));
	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

/* A number in 0..n-1. */
static int prop_rnd(uint64_t *st, int n)
{
	return (int)(prop_next(st) % (uint64_t)n);
}

/* The lines of one round, with each event's id and order. */
struct prop {
	uint64_t rng;
	char *lines[PROP_MAX];
	char ids[PROP_MAX][24];
	char orders[PROP_MAX][16];
	size_t n;
	int next_id;
};

/* An occurred_at near hour h, with a random offset and fraction (ties included). */
static void prop_time(struct prop *p, int h, char *out, size_t cap)
{
	static const int offs[] = {0, 120, 480, -300, 840, -720};
	int off = offs[prop_rnd(&p->rng, 6)];
	int local_min = h * 60 + off + 24 * 60; /* from 2026-10-01T00:00 local */
	static const char *const fr[] = {"", ".250", ".2501", ".2509", ".9", ".0000005"};
	const char *f = fr[prop_rnd(&p->rng, 6)];
	char o[24];
	if (off == 0)
		snprintf(o, sizeof(o), "Z");
	else
		snprintf(o, sizeof(o), "%c%02d:%02d", off < 0 ? '-' : '+', abs(off) / 60,
		         abs(off) % 60);
	snprintf(out, cap, "2026-10-%02dT%02d:%02d:00%s%s", 1 + local_min / 1440,
	         (local_min / 60) % 24, local_min % 60, f, o);
}

/* Add an event of order at about hour h; shipment and extra members may be NULL. */
static void prop_add(struct prop *p, const char *order, int h, const char *type,
                     const char *shipment, const char *extra)
{
	char at[64];
	char *line;
	prop_time(p, h, at, sizeof(at));
	snprintf(p->ids[p->n], sizeof(p->ids[0]), "p-%03d", p->next_id++);
	snprintf(p->orders[p->n], sizeof(p->orders[0]), "%s", order);
	if (asprintf(
	        &line,
	        "{\"type\":\"%s\",\"id\":\"%s\",\"occurred_at\":\"%s\",\"order\":\"%s\"%s%s%s%s%s}",
	        type, p->ids[p->n], at, order, shipment ? ",\"shipment\":\"" : "",
	        shipment ? shipment : "", shipment ? "\"" : "", extra ? "," : "",
	        extra ? extra : "") < 0)
		abort();
	p->lines[p->n++] = line;
}

/* One order's random story: one or two order.created, documents, one or two shipments. */
static void prop_order(struct prop *p, const char *order)
{
	static const char *const steps[] = {"shipment.picked_up",      "shipment.export_cleared",
	                                    "shipment.departed",       "shipment.arrived",
	                                    "shipment.import_cleared", "shipment.out_for_delivery",
	                                    "shipment.delivered"};
	static const char *const docs[] = {"phytosanitary", "certificate_of_origin",
	                                   "quality_certificate"};
	static const char *const reasons[] = {"damaged", "lost", "delayed"};
	char extra[256];
	int h = prop_rnd(&p->rng, 5);
	for (int k = 1 + prop_rnd(&p->rng, 2); k > 0; k--) {
		snprintf(extra, sizeof(extra),
		         "\"buyer\":\"B%d\",\"origin\":\"RW\",\"destination\":\"CN\",\"currency\":"
		         "\"USD\","
		         "\"lines\":[{\"sku\":\"a\",\"product\":\"p\",\"hs_code\":\"%s\","
		         "\"quantity\":%d,"
		         "\"unit\":\"kg\",\"unit_price\":0.1}%s]",
		         k, prop_rnd(&p->rng, 2) ? "090111" : "090421", 1 + prop_rnd(&p->rng, 9),
		         k == 2 ? ",{\"sku\":\"b\",\"product\":\"q\",\"hs_code\":\"090421\","
		                  "\"quantity\":2,\"unit\":\"bag\"}"
		                : "");
		prop_add(p, order, h + prop_rnd(&p->rng, 3), "order.created", NULL, extra);
	}
	if (prop_rnd(&p->rng, 2))
		prop_add(p, order, h + 1, "order.confirmed", NULL, NULL);
	for (int d = prop_rnd(&p->rng, 3); d > 0; d--) {
		snprintf(extra, sizeof(extra), "\"document\":\"%s\"", docs[prop_rnd(&p->rng, 3)]);
		prop_add(p, order, h + prop_rnd(&p->rng, 8), "document.issued",
		         prop_rnd(&p->rng, 2) ? "S1" : NULL, extra);
	}
	for (int s = 1 + prop_rnd(&p->rng, 2); s > 0; s--) {
		const char *ref = s == 1 ? "S1" : "S2";
		int t = h + 2;
		snprintf(extra, sizeof(extra),
		         "\"mode\":\"sea\",\"eta\":\"2026-11-%02dT08:00:00+08:00\"",
		         1 + prop_rnd(&p->rng, 20));
		prop_add(p, order, t, "shipment.booked", ref, extra);
		int last = prop_rnd(&p->rng, 8);
		for (int i = 0; i < last; i++) {
			t += prop_rnd(&p->rng, 3);
			if (prop_rnd(&p->rng, 3))
				prop_add(p, order, t, steps[i], ref,
				         prop_rnd(&p->rng, 2) ? "\"location\":{\"code\":\"KEMBA\"}"
				                              : "\"location\":{\"name\":\"Port\"}");
			switch (prop_rnd(&p->rng, 6)) {
			case 0:
				snprintf(extra, sizeof(extra), "\"stage\":\"%s\"",
				         prop_rnd(&p->rng, 2) ? "export" : "import");
				prop_add(p, order, t + prop_rnd(&p->rng, 2),
				         "shipment.customs_hold", ref, extra);
				if (prop_rnd(&p->rng, 2))
					prop_add(p, order, t + prop_rnd(&p->rng, 3),
					         "shipment.customs_released", ref, extra);
				break;
			case 1:
				snprintf(extra, sizeof(extra), "\"reason\":\"%s\"",
				         reasons[prop_rnd(&p->rng, 3)]);
				prop_add(p, order, t, "shipment.exception", ref, extra);
				if (prop_rnd(&p->rng, 2))
					prop_add(p, order, t + prop_rnd(&p->rng, 3),
					         "shipment.exception_resolved", ref, NULL);
				break;
			case 2:
				snprintf(extra, sizeof(extra),
				         "\"eta\":\"2026-11-%02dT%02d:00:00Z\"",
				         1 + prop_rnd(&p->rng, 28), prop_rnd(&p->rng, 24));
				prop_add(p, order, t, "shipment.eta_changed", ref, extra);
				break;
			default:
				break;
			}
		}
	}
	if (prop_rnd(&p->rng, 4) == 0)
		prop_add(p, order, h + prop_rnd(&p->rng, 10), "order.cancelled", NULL, NULL);
}

/* Retractions of random events of any order (so some are refused), or of ids never sent. */
static void prop_retractions(struct prop *p, int n)
{
	char extra[128];
	for (int k = 0; k < n; k++) {
		size_t victim = (size_t)prop_rnd(&p->rng, (int)p->n);
		const char *order =
		    p->orders[prop_rnd(&p->rng, 5) ? victim : (size_t)prop_rnd(&p->rng, (int)p->n)];
		char order_copy[16];
		snprintf(order_copy, sizeof(order_copy), "%s", order);
		if (prop_rnd(&p->rng, 10) == 0)
			snprintf(extra, sizeof(extra), "\"retracts\":\"never-%d\"", k);
		else
			snprintf(extra, sizeof(extra), "\"retracts\":\"%s\"", p->ids[victim]);
		prop_add(p, order_copy, 30 + prop_rnd(&p->rng, 10), "event.retracted", NULL, extra);
	}
}

/* The JSON of one SQL value (the query returns json text). */
static json_t *prop_sql_json(const char *db, const char *sql, const char *a, const char *b)
{
	char *text = it_db_value(db, sql, a, b, NULL);
	json_t *v = text ? json_loads(text, 0, NULL) : json_array();
	if (v == NULL)
		it_fail("not JSON: %s", text);
	free(text);
	return v;
}

/* The microsecond instant of an RFC 3339 time, INT64_MIN for NULL. */
static int64_t prop_us(const char *t)
{
	struct rfc3339_instant in;
	if (t == NULL)
		return INT64_MIN;
	if (validate_rfc3339_instant(t, &in) != NULL)
		it_fail("bad time %s", t);
	return in.us;
}

/* Fail unless a table's text equals the fold's (NULL for null). */
static void prop_check_str(const char *what, const char *order, const char *got, const char *want)
{
	if ((got == NULL) != (want == NULL) || (got && strcmp(got, want) != 0))
		it_fail("%s %s: table has %s, fold has %s", order, what, got ? got : "null",
		        want ? want : "null");
}

/* A table's timestamptz (as microseconds text) against the fold's string. */
static void prop_check_time(const char *what, const char *order, const json_t *got_us,
                            const char *want)
{
	int64_t w = prop_us(want);
	bool gnull = json_is_null(got_us) || got_us == NULL;
	if (gnull != (want == NULL) || (!gnull && (int64_t)json_integer_value(got_us) != w))
		it_fail("%s %s: table %lld, fold %s", order, what,
		        gnull ? -1LL : (long long)json_integer_value(got_us), want ? want : "null");
}

static const char *prop_docs_0901[] = {"phytosanitary", "certificate_of_origin"};
static const char *prop_docs_0904[] = {"phytosanitary", "certificate_of_origin",
                                       "quality_certificate"};

/* Is event id retracted by an event.retracted of evj (one order's events)? */
static bool prop_retracted(const json_t *evj, const char *id)
{
	size_t i;
	const json_t *e;
	json_array_foreach(evj, i, e)
	{
		const json_t *b = json_object_get(e, "body");
		if (strcmp(it_json_str(e, "type"), "event.retracted") == 0 &&
		    strcmp(it_json_str(b, "retracts"), id) == 0)
			return true;
	}
	return false;
}

/*
 * When the hold of shipment ref at stage began, by the fold's rule: the
 * first hold after the last release, in (millisecond, id) order; NULL when
 * no hold follows the last release.
 */
static const char *prop_held_since(const json_t *evj, const char *ref, const char *stage)
{
	const char *best_rel_id = NULL, *first = NULL, *first_id = NULL;
	int64_t best_rel = 0, first_ms = 0;
	size_t i;
	const json_t *e;
	/* The last release. */
	json_array_foreach(evj, i, e)
	{
		const json_t *b = json_object_get(e, "body");
		const char *id = it_json_str(e, "id");
		if (strcmp(it_json_str(e, "type"), "shipment.customs_released") != 0 ||
		    strcmp(it_json_str(b, "shipment"), ref) != 0 ||
		    strcmp(it_json_str(b, "stage"), stage) != 0 || prop_retracted(evj, id))
			continue;
		struct rfc3339_instant in;
		validate_rfc3339_instant(it_json_str(b, "occurred_at"), &in);
		int64_t ms = in.ms;
		if (best_rel_id == NULL || ms > best_rel ||
		    (ms == best_rel && strcmp(id, best_rel_id) > 0)) {
			best_rel = ms;
			best_rel_id = id;
		}
	}
	json_array_foreach(evj, i, e)
	{
		const json_t *b = json_object_get(e, "body");
		const char *id = it_json_str(e, "id");
		if (strcmp(it_json_str(e, "type"), "shipment.customs_hold") != 0 ||
		    strcmp(it_json_str(b, "shipment"), ref) != 0 ||
		    strcmp(it_json_str(b, "stage"), stage) != 0 || prop_retracted(evj, id))
			continue;
		struct rfc3339_instant in;
		validate_rfc3339_instant(it_json_str(b, "occurred_at"), &in);
		if (best_rel_id != NULL &&
		    (in.ms < best_rel || (in.ms == best_rel && strcmp(id, best_rel_id) < 0)))
			continue;
		if (first == NULL || in.ms < first_ms ||
		    (in.ms == first_ms && strcmp(id, first_id) < 0)) {
			first = it_json_str(b, "occurred_at");
			first_ms = in.ms;
			first_id = id;
		}
	}
	return first;
}

/*
 * The walk saved with the order (migration 013) is the one a fold of all
 * its stored events saves (fold), none with a retraction or when the order
 * is delivered or cancelled; true when there is one.
 */
static bool prop_check_walk(const char *db, const char *order, const json_t *fold,
                            const json_t *want)
{
	const char *status =
	    json_string_value(json_object_get(json_object_get(fold, "order"), "status"));
	if (status != NULL &&
	    (strcmp(status, "delivered") == 0 || strcmp(status, "cancelled") == 0))
		want = NULL;
	char *text = it_db_value(db,
	                         "SELECT walk::text FROM ordertrack.orders"
	                         " WHERE exporter = $1 AND order_ref = $2",
	                         KIVU, order, NULL);
	json_t *got = text ? json_loads(text, 0, NULL) : NULL;
	if ((got == NULL) != (want == NULL) || (got != NULL && !json_equal(got, want))) {
		char *w = want ? json_dumps(want, JSON_SORT_KEYS) : NULL;
		it_fail("%s: walk %s, a fold of its events saves %s", order, text ? text : "null",
		        w ? w : "null");
	}
	free(text);
	json_decref(got);
	return want != NULL;
}

/*
 * Check one order: tables = fold of the stored events; notifications chain
 * to the fold; the walk is the fold's.  True when the order has a walk.
 */
static bool prop_check_order(const char *db, const char *order)
{
	static const struct model_doc_rule rule_list[] = {
	    {"0901", prop_docs_0901, 2},
	    {"0904", prop_docs_0904, 3},
	};
	static const struct model_rules rules = {rule_list, 2};
	json_t *evj =
	    prop_sql_json(db,
	                  "SELECT coalesce(json_agg(json_build_object('id', event_id, 'type',"
	                  " type, 'body', body)), '[]') FROM ordertrack.events"
	                  " WHERE exporter = $1 AND order_ref = $2",
	                  KIVU, order);
	size_t n = json_array_size(evj);
	if (n == 0) {
		json_decref(evj);
		return false;
	}
	struct model_event *evs = calloc(n, sizeof(*evs));
	for (size_t i = 0; i < n; i++) {
		json_t *e = json_array_get(evj, i);
		evs[i].id = json_string_value(json_object_get(e, "id"));
		evs[i].type = json_string_value(json_object_get(e, "type"));
		evs[i].body = json_object_get(e, "body");
		struct rfc3339_instant in;
		validate_rfc3339_instant(
		    json_string_value(json_object_get(evs[i].body, "occurred_at")), &in);
		evs[i].occurred_ms = in.ms;
	}
	json_t *want_walk;
	json_t *f = model_fold_save(evs, n, &rules, &want_walk);
	free(evs);
	bool walked = prop_check_walk(db, order, f, want_walk);
	json_decref(want_walk);

	/* orders row */
	json_t *o =
	    prop_sql_json(db,
	                  "SELECT json_build_object('status', status, 'buyer', buyer,"
	                  " 'currency', currency, 'anomalies', array_to_string(anomalies, ','),"
	                  " 'created_us', (extract(epoch FROM created_at) * 1000000)::bigint,"
	                  " 'last_us', (extract(epoch FROM last_event_at) * 1000000)::bigint,"
	                  " 'state', state)"
	                  " FROM ordertrack.orders WHERE exporter = $1 AND order_ref = $2",
	                  KIVU, order);
	const json_t *fo = json_object_get(f, "order");
	prop_check_str("status", order, it_json_str(o, "status"), it_json_str(fo, "status"));
	prop_check_str("buyer", order, it_json_str(o, "buyer"), it_json_str(fo, "buyer"));
	prop_check_str("currency", order, it_json_str(o, "currency"), it_json_str(fo, "currency"));
	char an[256] = "";
	size_t i;
	json_t *w;
	json_array_foreach(json_object_get(fo, "anomalies"), i, w)
	{
		if (i > 0)
			strcat(an, ",");
		strcat(an, json_string_value(w));
	}
	prop_check_str("anomalies", order, it_json_str(o, "anomalies"), an);
	prop_check_time("created_at", order, json_object_get(o, "created_us"),
	                it_json_str(fo, "created_at"));
	prop_check_time("last_event_at", order, json_object_get(o, "last_us"),
	                it_json_str(fo, "updated_at"));
	json_t *st = json_object_get(o, "state");
	if (!json_equal(json_object_get(st, "order"), (json_t *)fo) ||
	    !json_equal(json_object_get(st, "shipments"), json_object_get(f, "shipments"))) {
		char *a = json_dumps(st, JSON_SORT_KEYS), *b = json_dumps(f, JSON_SORT_KEYS);
		it_fail("%s: stored state differs from the fold\n%s\n%s", order, a, b);
	}

	/* shipments */
	json_t *sh =
	    prop_sql_json(db,
	                  "SELECT coalesce(json_agg(json_build_object('ref', shipment_ref,"
	                  " 'status', status, 'milestone', milestone, 'hold', hold,"
	                  " 'exception', exception, 'mode', mode, 'loc', last_location,"
	                  " 'eta_us', (extract(epoch FROM eta) * 1000000)::bigint,"
	                  " 'last_us', (extract(epoch FROM last_event_at) * 1000000)::bigint)"
	                  " ORDER BY shipment_ref), '[]')"
	                  " FROM ordertrack.shipments WHERE exporter = $1 AND order_ref = $2",
	                  KIVU, order);
	const json_t *fs = json_object_get(f, "shipments");
	if (json_array_size(sh) != json_array_size(fs))
		it_fail("%s: %zu shipment rows, fold has %zu", order, json_array_size(sh),
		        json_array_size(fs));
	for (i = 0; i < json_array_size(fs); i++) {
		const json_t *a = json_array_get(sh, i), *b = json_array_get(fs, i);
		prop_check_str("shipment_ref", order, it_json_str(a, "ref"),
		               it_json_str(b, "shipment_ref"));
		prop_check_str("ship status", order, it_json_str(a, "status"),
		               it_json_str(b, "status"));
		prop_check_str("milestone", order, it_json_str(a, "milestone"),
		               it_json_str(b, "milestone"));
		prop_check_str("hold", order, it_json_str(a, "hold"), it_json_str(b, "hold"));
		prop_check_str("exception", order, it_json_str(a, "exception"),
		               it_json_str(b, "exception"));
		prop_check_str("mode", order, it_json_str(a, "mode"), it_json_str(b, "mode"));
		prop_check_str("last_location", order, it_json_str(a, "loc"),
		               it_json_str(b, "last_location"));
		prop_check_time("eta", order, json_object_get(a, "eta_us"), it_json_str(b, "eta"));
		prop_check_time("ship last_event_at", order, json_object_get(a, "last_us"),
		                it_json_str(b, "last_event_at"));
		const char *hold = it_json_str(b, "hold");
		if (hold != NULL) {
			char *us = it_db_value(
			    db,
			    "SELECT (extract(epoch FROM ordertrack.held_since($1, $2, $3,"
			    " $4)) * 1000000)::bigint",
			    KIVU, order, it_json_str(b, "shipment_ref"), hold, NULL);
			const char *want =
			    prop_held_since(evj, it_json_str(b, "shipment_ref"), hold);
			json_t *got = us ? json_integer(strtoll(us, NULL, 10)) : json_null();
			prop_check_time("held_since", order, got, want);
			json_decref(got);
			free(us);
		}
	}

	/* lines and documents */
	json_t *ln = prop_sql_json(
	    db,
	    "SELECT coalesce(json_agg(json_build_object('sku', sku, 'q', quantity::text,"
	    " 'p', unit_price::text, 'c', currency) ORDER BY line_no), '[]')"
	    " FROM ordertrack.order_lines WHERE exporter = $1 AND order_ref = $2",
	    KIVU, order);
	const json_t *fl = json_object_get(f, "lines");
	if (json_array_size(ln) != json_array_size(fl))
		it_fail("%s: %zu line rows, fold has %zu", order, json_array_size(ln),
		        json_array_size(fl));
	for (i = 0; i < json_array_size(fl); i++) {
		prop_check_str("line sku", order, it_json_str(json_array_get(ln, i), "sku"),
		               it_json_str(json_array_get(fl, i), "sku"));
		prop_check_str("line currency", order, it_json_str(json_array_get(ln, i), "c"),
		               it_json_str(json_array_get(fl, i), "currency"));
	}
	json_t *dc = prop_sql_json(
	    db,
	    "SELECT coalesce(json_agg(json_build_object('s', shipment_ref, 'd', document,"
	    " 'us', (extract(epoch FROM issued_at) * 1000000)::bigint)"
	    " ORDER BY shipment_ref NULLS FIRST, document, issued_at), '[]')"
	    " FROM ordertrack.documents WHERE exporter = $1 AND order_ref = $2",
	    KIVU, order);
	const json_t *fd = json_object_get(f, "documents");
	if (json_array_size(dc) != json_array_size(fd))
		it_fail("%s: %zu document rows, fold has %zu", order, json_array_size(dc),
		        json_array_size(fd));
	for (i = 0; i < json_array_size(fd); i++) {
		prop_check_str("doc", order, it_json_str(json_array_get(dc, i), "d"),
		               it_json_str(json_array_get(fd, i), "document"));
		prop_check_str("doc shipment", order, it_json_str(json_array_get(dc, i), "s"),
		               it_json_str(json_array_get(fd, i), "shipment_ref"));
	}

	/* notifications: each value's chain starts at null and ends at the fold's value */
	json_t *nt =
	    prop_sql_json(db,
	                  "SELECT coalesce(json_agg(body ORDER BY seq), '[]')"
	                  " FROM ordertrack.notifications WHERE exporter = $1 AND order_ref = $2",
	                  KIVU, order);
	struct {
		const char *kind, *ship, *want;
	} keys[8];
	size_t nk = 0;
	keys[nk].kind = "order.status";
	keys[nk].ship = NULL;
	keys[nk++].want = it_json_str(fo, "status");
	keys[nk].kind = "order.anomaly";
	keys[nk].ship = NULL;
	keys[nk++].want = an[0] ? an : NULL;
	static const char *const refs[] = {"S1", "S2"};
	for (int r = 0; r < 2; r++) {
		const json_t *s = NULL, *x;
		json_array_foreach(fs, i, x)
		{
			if (strcmp(it_json_str(x, "shipment_ref"), refs[r]) == 0)
				s = x;
		}
		keys[nk].kind = "shipment.status";
		keys[nk].ship = refs[r];
		keys[nk++].want = s ? it_json_str(s, "status") : NULL;
		keys[nk].kind = "shipment.eta";
		keys[nk].ship = refs[r];
		keys[nk++].want = s ? it_json_str(s, "eta") : NULL;
	}
	for (size_t k = 0; k < nk; k++) {
		const char *cur = NULL;
		json_array_foreach(nt, i, w)
		{
			const char *sh2 = it_json_str(w, "shipment");
			if (strcmp(it_json_str(w, "kind"), keys[k].kind) != 0)
				continue;
			if ((sh2 == NULL) != (keys[k].ship == NULL) ||
			    (sh2 && strcmp(sh2, keys[k].ship)))
				continue;
			const char *from = it_json_str(w, "from"), *to = it_json_str(w, "to");
			if ((from == NULL) != (cur == NULL) || (from && strcmp(from, cur) != 0))
				it_fail("%s %s %s: notification seq %lld from %s, was %s", order,
				        keys[k].kind, keys[k].ship ? keys[k].ship : "",
				        (long long)json_integer_value(json_object_get(w, "seq")),
				        from ? from : "null", cur ? cur : "null");
			if ((to == NULL) == (from == NULL) && (to == NULL || strcmp(to, from) == 0))
				it_fail("%s %s: a notification of no change", order, keys[k].kind);
			cur = to;
		}
		if ((cur == NULL) != (keys[k].want == NULL) ||
		    (cur && strcmp(cur, keys[k].want) != 0))
			it_fail("%s %s %s: notifications end at %s, fold says %s", order,
			        keys[k].kind, keys[k].ship ? keys[k].ship : "", cur ? cur : "null",
			        keys[k].want ? keys[k].want : "null");
	}
	json_decref(nt);
	json_decref(dc);
	json_decref(ln);
	json_decref(sh);
	json_decref(o);
	json_decref(f);
	json_decref(evj);
	return walked;
}

/*
 * A walk the fold cannot read (its shipments taken out by hand) does not
 * store a wrong read model: the batch goes again with the order folded
 * from its events, the event is stored once, and the walk is written anew.
 */
static void test_walk_refused(void **state)
{
	(void)state;
	const char *db = "model_walk";
	struct it_daemon *d = model_daemon(db, false);
	struct it_client *c = it_connect(d);
	it_hello(c, KIVU, KIVU_TOKEN);

	/* One event a batch; the same instant, so each sorts after the last by its id. */
	send_ok(c, "wr-1", "order.created", "W-1", NULL, "stored");
	send_ok(c, "wr-2", "shipment.booked", "W-1", "SH-1", "stored");
	assert_int_equal(it_db_long(db,
	                            "SELECT (walk->>'n')::int FROM ordertrack.orders"
	                            " WHERE order_ref = 'W-1'",
	                            NULL),
	                 2);
	assert_true(it_log_wait(d, 0, "walk refused", 0) < 0);

	it_db_command(db,
	              "UPDATE ordertrack.orders SET walk = jsonb_set(walk, '{ships}', '{}')"
	              " WHERE order_ref = 'W-1'",
	              NULL);
	off_t at = it_log_offset(d);
	send_ok(c, "wr-3", "shipment.departed", "W-1", "SH-1", "stored");
	it_log_expect(d, at, "msg=\"walk refused\" exporter=kivu-coffee order=W-1", 5000);
	it_log_expect(d, at, "reason=\"the fold refused a saved walk\"", 5000);
	assert_int_equal(stored(db, KIVU, "wr-3"), 1);
	char *status = it_db_value(db,
	                           "SELECT o.status || '/' || s.status FROM ordertrack.orders o"
	                           " JOIN ordertrack.shipments s USING (exporter, order_ref)"
	                           " WHERE order_ref = 'W-1'",
	                           NULL);
	assert_string_equal(status, "in_transit/departed");
	free(status);
	assert_int_equal(it_db_long(db,
	                            "SELECT (walk->>'n')::int FROM ordertrack.orders"
	                            " WHERE walk->'ships' ? 'SH-1' AND order_ref = 'W-1'",
	                            NULL),
	                 3);
	it_close(c);
	it_daemon_stop_clean(d);
}

/* Rounds of random orders (OT_PROP_SEED, OT_PROP_ROUNDS to explore more). */
static void test_random_orders(void **state)
{
	(void)state;
	const char *db = "model_random";
	struct it_daemon *d = model_daemon(db, true);
	enum { CONNS = 3 };
	struct it_client *c[CONNS];
	for (int k = 0; k < CONNS; k++) {
		c[k] = it_connect(d);
		it_hello(c[k], KIVU, KIVU_TOKEN);
	}
	const char *seed_env = getenv("OT_PROP_SEED");
	int walked = 0;
	int rounds = getenv("OT_PROP_ROUNDS") ? atoi(getenv("OT_PROP_ROUNDS")) : 4;
	for (int round = 0; round < rounds; round++) {
		static struct prop p;
		memset(&p, 0, sizeof(p));
		p.next_id = round * 1000;
		p.rng =
		    (seed_env ? strtoull(seed_env, NULL, 0) : 20261129) + (uint64_t)round * 7919;
		char orders[PROP_ORDERS][16];
		for (int o = 0; o < PROP_ORDERS; o++) {
			snprintf(orders[o], sizeof(orders[o]), "R%d-O%d", round, o);
			prop_order(&p, orders[o]);
		}
		prop_retractions(&p, 1 + prop_rnd(&p.rng, 8));
		/* shuffle */
		for (size_t i = p.n; i > 1; i--) {
			size_t j = (size_t)prop_rnd(&p.rng, (int)i);
			char *t = p.lines[i - 1];
			p.lines[i - 1] = p.lines[j];
			p.lines[j] = t;
		}
		size_t i = 0;
		int pending[CONNS] = {0};
		while (i < p.n) {
			int k = prop_rnd(&p.rng, CONNS);
			size_t chunk = 1 + (size_t)prop_rnd(&p.rng, 12);
			for (size_t j = 0; j < chunk && i < p.n; j++, i++) {
				it_send(c[k], p.lines[i]);
				pending[k]++;
				if (prop_rnd(&p.rng, 20) == 0) { /* a resend */
					it_send(c[k], p.lines[i]);
					pending[k]++;
				}
			}
			if (prop_rnd(&p.rng, 3) == 0 || i == p.n) {
				for (int m = 0; m < CONNS; m++) {
					for (; pending[m] > 0; pending[m]--) {
						json_t *r = it_read_json(c[m], 20000);
						const char *ty = it_json_str(r, "type");
						const char *code = it_json_str(r, "code");
						if (strcmp(ty, "ack") != 0 &&
						    !(code && strcmp(code, "invalid_event") == 0))
							it_fail("unexpected reply %s %s", ty,
							        code ? code : "");
						json_decref(r);
					}
				}
			}
		}
		for (int o = 0; o < PROP_ORDERS; o++)
			walked += prop_check_order(db, orders[o]);
		for (size_t j = 0; j < p.n; j++)
			free(p.lines[j]);
	}
	for (int k = 0; k < CONNS; k++)
		it_close(c[k]);
	/* Orders without a retraction keep a walk: both paths were taken. */
	assert_true(walked > 0);
	it_daemon_stop_clean(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_random_orders, it_test_teardown),
	    cmocka_unit_test_teardown(test_scenarios_in_order, it_test_teardown),
	    cmocka_unit_test_teardown(test_scenarios_shuffled, it_test_teardown),
	    cmocka_unit_test_teardown(test_retractions, it_test_teardown),
	    cmocka_unit_test_teardown(test_walk_refused, it_test_teardown),
	    cmocka_unit_test_teardown(test_sub_millisecond_times, it_test_teardown),
	    cmocka_unit_test_teardown(test_exporter_isolation, it_test_teardown),
	    cmocka_unit_test_teardown(test_times_and_last_event, it_test_teardown),
	};
	it_env_init("model");
	return it_env_fini(cmocka_run_group_tests(tests, NULL, NULL));
}
