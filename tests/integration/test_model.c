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
 * arrival.  Then retractions and exporter isolation over the wire.
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
 * sent again is a duplicate, whatever came after it.
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

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_scenarios_in_order, it_test_teardown),
	    cmocka_unit_test_teardown(test_scenarios_shuffled, it_test_teardown),
	    cmocka_unit_test_teardown(test_retractions, it_test_teardown),
	    cmocka_unit_test_teardown(test_sub_millisecond_times, it_test_teardown),
	    cmocka_unit_test_teardown(test_exporter_isolation, it_test_teardown),
	    cmocka_unit_test_teardown(test_times_and_last_event, it_test_teardown),
	};
	it_env_init("model");
	return it_env_fini(cmocka_run_group_tests(tests, NULL, NULL));
}
