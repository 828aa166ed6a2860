/*
 * test_model.c - unit tests for lib/model.c, the fold.
 *
 * Events are written as protocol lines and go through request_parse()
 * first, so every event folded here is one the daemon would accept.  The
 * server clock is fixed at 2026-12-01T00:00:00Z; add() dates its events in
 * whole hours after 2026-10-01T00:00:00Z.
 *
 * Besides one test per status, anomaly and tie rule, a property test
 * generates 200 random but realistic orders from a seeded PRNG and checks
 * that 50 shuffles of each, and the set with every event sent twice, fold
 * to equal JSON.  The last tests read the demo scenario (tests/data) and the
 * examples of docs/PROTOCOL.md from OT_SOURCE_ROOT, which the build passes
 * in: every line must pass request_parse(), and the scenario's orders must
 * fold to the statuses the scenario tells.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "model.h"
#include "request.h"
#include "validate.h"

#ifndef OT_SOURCE_ROOT
#error "OT_SOURCE_ROOT must name the source tree (tests/unit/meson.build sets it)"
#endif

#define MAX_EVS 256

/* A set of parsed events; the set owns their JSON trees. */
struct evset {
	struct model_event ev[MAX_EVS];
	size_t n;
};

static const char *coffee_docs[] = {"phytosanitary", "certificate_of_origin"};
static const char *chili_docs[] = {"phytosanitary", "certificate_of_origin", "quality_certificate"};
/* documents.required as the shipped config has it: coffee 0901, capsicum 0904. */
static const struct model_doc_rule doc_rules[] = {
    {"0901", coffee_docs, 2},
    {"0904", chili_docs, 3},
};
static const struct model_rules rules = {doc_rules, 2};

/* The members of an order.created for coffee with a price, used by most tests. */
#define COFFEE                                                                                     \
	"\"buyer\":\"Tmall Global store: Kivu Hills Coffee\",\"channel\":\"Tmall Global\","        \
	"\"origin\":\"RW\",\"destination\":\"CN\",\"currency\":\"USD\",\"lines\":[{\"sku\":"       \
	"\"KHC-1\",\"product\":\"Washed Arabica\",\"hs_code\":\"090111\",\"quantity\":240,"        \
	"\"unit\":\"bag\",\"unit_price\":14.5}]"

/* The server clock of these tests: 2026-12-01T00:00:00Z. */
static int64_t now_ms(void)
{
	int64_t ms;

	assert_null(validate_rfc3339("2026-12-01T00:00:00Z", &ms, NULL));
	return ms;
}

/* Parse a line that must be accepted and add its event to the set. */
static void add_line(struct evset *s, const char *line)
{
	struct request rq;
	struct request_error err;

	assert_true(s->n < MAX_EVS);
	if (!request_parse(line, strlen(line), now_ms(), &rq, &err))
		fail_msg("refused: %s: %s\n%s", err.code, err.message, line);
	assert_int_equal(rq.kind, REQ_EVENT);
	s->ev[s->n].id = rq.u.event.id;
	s->ev[s->n].type = rq.u.event.type;
	s->ev[s->n].occurred_ms = rq.u.event.occurred_ms;
	s->ev[s->n].body = rq.root; /* the set keeps the tree */
	s->n++;
}

/* Format "2026-10-01T00:00:00Z" plus hours h, as the offset off (-5, 0, 2 or 8) shows it. */
static void time_at(char *buf, size_t cap, int h, int off)
{
	int local = h + off;

	assert_true(local >= 0 && local < 30 * 24);
	if (off == 0)
		snprintf(buf, cap, "2026-10-%02dT%02d:00:00Z", 1 + local / 24, local % 24);
	else
		snprintf(buf, cap, "2026-10-%02dT%02d:00:00%c%02d:00", 1 + local / 24, local % 24,
		         off < 0 ? '-' : '+', off < 0 ? -off : off);
}

/* Add an event of order PO-1 at hour h (UTC); shipment and extra members may be NULL. */
static void add(struct evset *s, const char *type, const char *id, int h, const char *shipment,
                const char *extra)
{
	char at[64];
	char line[2048];
	size_t n;

	time_at(at, sizeof(at), h, 0);
	n = (size_t)snprintf(line, sizeof(line),
	                     "{\"type\":\"%s\",\"id\":\"%s\",\"occurred_at\":\"%s\",\"order\":"
	                     "\"PO-1\"",
	                     type, id, at);
	if (shipment != NULL)
		n += (size_t)snprintf(line + n, sizeof(line) - n, ",\"shipment\":\"%s\"", shipment);
	if (extra != NULL)
		n += (size_t)snprintf(line + n, sizeof(line) - n, ",%s", extra);
	assert_true(n + 2 < sizeof(line));
	snprintf(line + n, sizeof(line) - n, "}");
	add_line(s, line);
}

/* Release the trees of a set. */
static void evset_clear(struct evset *s)
{
	for (size_t i = 0; i < s->n; i++)
		json_decref(s->ev[i].body);
	s->n = 0;
}

/* Fold a copy of the set, so the set keeps its order. */
static json_t *fold(const struct evset *s, const struct model_rules *r)
{
	struct model_event copy[MAX_EVS];
	json_t *res;

	memcpy(copy, s->ev, s->n * sizeof(copy[0]));
	res = model_fold(copy, s->n, r);
	assert_non_null(res);
	return res;
}

/* A string member of the result's order object, NULL for null. */
static const char *order_str(const json_t *res, const char *key)
{
	const json_t *v = json_object_get(json_object_get(res, "order"), key);

	assert_non_null(v);
	return json_string_value(v);
}

/* The shipment object with this ref; fails the test when there is none. */
static const json_t *ship_of(const json_t *res, const char *ref)
{
	size_t i;
	const json_t *s;

	json_array_foreach(json_object_get(res, "shipments"), i, s)
	{
		if (strcmp(json_string_value(json_object_get(s, "shipment_ref")), ref) == 0)
			return s;
	}
	fail_msg("no shipment %s", ref);
	return NULL;
}

/* A string member of a shipment, NULL for null. */
static const char *ship_str(const json_t *res, const char *ref, const char *key)
{
	const json_t *v = json_object_get(ship_of(res, ref), key);

	assert_non_null(v);
	return json_string_value(v);
}

/* Compare two optional strings, with a readable failure. */
static void expect_str(const char *got, const char *want, const char *what)
{
	if (got == NULL && want == NULL)
		return;
	if (got == NULL || want == NULL || strcmp(got, want) != 0)
		fail_msg("%s: got %s, wanted %s", what, got ? got : "null", want ? want : "null");
}

/* The order's status must be want. */
static void expect_order_status(const json_t *res, const char *want)
{
	expect_str(order_str(res, "status"), want, "order status");
}

/* The shipment's status, milestone, hold and exception must be these. */
static void expect_ship(const json_t *res, const char *ref, const char *status,
                        const char *milestone, const char *hold, const char *exception)
{
	expect_str(ship_str(res, ref, "status"), status, "status");
	expect_str(ship_str(res, ref, "milestone"), milestone, "milestone");
	expect_str(ship_str(res, ref, "hold"), hold, "hold");
	expect_str(ship_str(res, ref, "exception"), exception, "exception");
}

/* The anomalies, joined with commas, must be want ("" for none). */
static void expect_anomalies(const json_t *res, const char *want)
{
	char got[256] = "";
	size_t i;
	const json_t *a;

	json_array_foreach(json_object_get(json_object_get(res, "order"), "anomalies"), i, a)
	{
		if (i > 0)
			strcat(got, ",");
		strcat(got, json_string_value(a));
	}
	expect_str(got, want, "anomalies");
}

/* Fold the set, check the order status, and drop the result. */
static void check_status(const struct evset *s, const char *want)
{
	json_t *res = fold(s, &rules);
	expect_order_status(res, want);
	json_decref(res);
}

/* Milestone ranks follow the protocol's order; other types rank 0. */
static void test_rank(void **state)
{
	static const char *const order[] = {
	    "shipment.booked",           "shipment.picked_up", "shipment.export_cleared",
	    "shipment.departed",         "shipment.arrived",   "shipment.import_cleared",
	    "shipment.out_for_delivery", "shipment.delivered",
	};
	(void)state;

	for (int i = 0; i < 8; i++)
		assert_int_equal(model_milestone_rank(order[i]), i + 1);
	assert_int_equal(model_milestone_rank("shipment.checkpoint"), 0);
	assert_int_equal(model_milestone_rank("shipment.customs_hold"), 0);
	assert_int_equal(model_milestone_rank("order.created"), 0);
	assert_int_equal(model_milestone_rank("shipment."), 0);
	assert_int_equal(model_milestone_rank(""), 0);
	assert_int_equal(model_milestone_rank(NULL), 0);
}

/* No events: a pending order with nothing known, in the documented shape. */
static void test_empty(void **state)
{
	json_t *res = model_fold(NULL, 0, NULL);
	json_t *want;
	json_error_t je;
	(void)state;

	want =
	    json_loads("{\"order\":{\"status\":\"pending\",\"buyer\":null,\"channel\":null,"
	               "\"origin\":null,\"destination\":null,\"incoterm\":null,\"currency\":null,"
	               "\"expected_delivery\":null,\"anomalies\":[],\"created_at\":null,"
	               "\"updated_at\":null},\"shipments\":[],\"lines\":[],\"documents\":[]}",
	               0, &je);
	assert_non_null(want);
	assert_true(json_equal(res, want));
	json_decref(want);
	json_decref(res);
}

/* The whole result of a small order, member for member. */
static void test_shape(void **state)
{
	struct evset s = {.n = 0};
	json_t *res, *want;
	json_error_t je;
	(void)state;

	add(&s, "order.created", "o1", 0, NULL,
	    COFFEE ",\"incoterm\":\"DDP\",\"expected_delivery\":\"2026-10-24\"");
	add(&s, "shipment.booked", "s1", 2, "A",
	    "\"mode\":\"air\",\"carrier\":\"RwandAir Cargo\",\"tracking\":\"459-1\","
	    "\"eta\":\"2026-10-09T18:00:00+08:00\"");
	add(&s, "document.issued", "d1", 3, NULL,
	    "\"document\":\"phytosanitary\",\"number\":\"NAEB-1\"");
	add(&s, "shipment.departed", "s2", 5, "A", "\"location\":{\"code\":\"RWKGL\"}");
	res = fold(&s, &rules);
	want = json_loads(
	    "{\"order\":{\"status\":\"in_transit\",\"buyer\":\"Tmall Global store: Kivu Hills "
	    "Coffee\",\"channel\":\"Tmall Global\",\"origin\":\"RW\",\"destination\":\"CN\","
	    "\"incoterm\":\"DDP\",\"currency\":\"USD\",\"expected_delivery\":\"2026-10-24\","
	    "\"anomalies\":[\"missing_documents\"],\"created_at\":\"2026-10-01T00:00:00Z\","
	    "\"updated_at\":\"2026-10-01T05:00:00Z\"},"
	    "\"shipments\":[{\"shipment_ref\":\"A\",\"status\":\"departed\",\"milestone\":"
	    "\"departed\",\"hold\":null,\"exception\":null,\"mode\":\"air\",\"carrier\":\"RwandAir "
	    "Cargo\",\"tracking\":\"459-1\",\"consignee\":null,\"eta\":"
	    "\"2026-10-09T18:00:00+08:00\",\"last_event_at\":\"2026-10-01T05:00:00Z\","
	    "\"last_location\":\"RWKGL\"}],"
	    "\"lines\":[{\"sku\":\"KHC-1\",\"product\":\"Washed Arabica\",\"hs_code\":\"090111\","
	    "\"quantity\":240,\"unit\":\"bag\",\"unit_price\":14.5,\"currency\":\"USD\"}],"
	    "\"documents\":[{\"shipment_ref\":null,\"document\":\"phytosanitary\",\"number\":"
	    "\"NAEB-1\",\"issued_at\":\"2026-10-01T03:00:00Z\"}]}",
	    0, &je);
	if (want == NULL)
		fail_msg("bad expected JSON: %s", je.text);
	if (!json_equal(res, want)) {
		char *got = json_dumps(res, JSON_SORT_KEYS);
		fail_msg("got %s", got);
	}
	json_decref(want);
	json_decref(res);
	evset_clear(&s);
}

/* Every order status, each from the smallest set of events that gives it. */
static void test_order_statuses(void **state)
{
	struct evset s = {.n = 0};
	(void)state;

	/* Shipment events before order.created: pending. */
	add(&s, "shipment.booked", "s1", 1, "A", "\"mode\":\"sea\"");
	check_status(&s, "pending");
	add(&s, "order.confirmed", "o2", 2, NULL, NULL);
	check_status(&s, "pending");
	evset_clear(&s);

	add(&s, "order.created", "o1", 0, NULL, COFFEE);
	check_status(&s, "created");
	add(&s, "order.confirmed", "o2", 1, NULL, NULL);
	check_status(&s, "confirmed");
	/* A document alone makes no shipment, even when it names one. */
	add(&s, "document.issued", "d1", 2, "A", "\"document\":\"packing_list\"");
	check_status(&s, "confirmed");
	add(&s, "shipment.booked", "s1", 3, "A", "\"mode\":\"sea\"");
	check_status(&s, "booked");
	/* Any shipment event makes a shipment, even without booking. */
	add(&s, "shipment.checkpoint", "s2", 4, "B", "\"location\":{\"name\":\"Kayonza\"}");
	check_status(&s, "booked");
	add(&s, "shipment.export_cleared", "s3", 5, "A", NULL);
	check_status(&s, "booked");
	add(&s, "shipment.departed", "s4", 6, "A", NULL);
	check_status(&s, "in_transit");
	add(&s, "shipment.delivered", "s5", 7, "A", NULL);
	check_status(&s, "partially_delivered");
	add(&s, "shipment.delivered", "s6", 8, "B", NULL);
	check_status(&s, "delivered");
	evset_clear(&s);

	/* Cancelled before any departure, with or without shipments. */
	add(&s, "order.created", "o1", 0, NULL, COFFEE);
	add(&s, "order.confirmed", "o2", 1, NULL, NULL);
	add(&s, "order.cancelled", "o3", 2, NULL, "\"reason\":\"buyer withdrew\"");
	check_status(&s, "cancelled");
	add(&s, "shipment.booked", "s1", 3, "A", "\"mode\":\"air\"");
	add(&s, "shipment.export_cleared", "s2", 4, "A", NULL);
	check_status(&s, "cancelled");
	json_t *res = fold(&s, &rules);
	expect_anomalies(res, "");
	json_decref(res);
	evset_clear(&s);
}

/* A cancellation when a shipment has departed (before or after it) follows the shipments. */
static void test_cancelled_after_departure(void **state)
{
	struct evset s = {.n = 0};
	json_t *res;
	(void)state;

	add(&s, "order.created", "o1", 0, NULL, COFFEE);
	add(&s, "document.issued", "d1", 1, NULL, "\"document\":\"phytosanitary\"");
	add(&s, "document.issued", "d2", 1, NULL, "\"document\":\"certificate_of_origin\"");
	add(&s, "shipment.departed", "s1", 2, "A", NULL);
	add(&s, "order.cancelled", "o3", 3, NULL, NULL);
	res = fold(&s, &rules);
	expect_order_status(res, "in_transit");
	expect_anomalies(res, "cancelled_after_departure");
	json_decref(res);

	/* A departure implied by a later milestone counts the same. */
	evset_clear(&s);
	add(&s, "order.created", "o1", 0, NULL, COFFEE);
	add(&s, "order.cancelled", "o3", 1, NULL, NULL);
	add(&s, "shipment.delivered", "s1", 2, "A", NULL);
	res = fold(&s, NULL);
	expect_order_status(res, "delivered");
	expect_anomalies(res, "cancelled_after_departure");
	json_decref(res);
	evset_clear(&s);
}

/*
 * Only a retraction lowers a milestone; the statuses that are not
 * milestones follow their rules either way, as PROTOCOL.md section 6 says.
 */
static void test_status_back(void **state)
{
	struct evset s = {.n = 0};
	json_t *res;
	(void)state;

	add(&s, "order.created", "o1", 0, NULL, COFFEE);
	add(&s, "shipment.booked", "s1", 1, "A", "\"mode\":\"air\"");
	add(&s, "shipment.import_cleared", "s2", 5, "A", NULL);
	res = fold(&s, NULL);
	expect_ship(res, "A", "import_cleared", "import_cleared", NULL, NULL);
	json_decref(res);
	/* Earlier milestones, late or after it, leave the milestone alone. */
	add(&s, "shipment.departed", "s3", 3, "A", NULL);
	add(&s, "shipment.picked_up", "s4", 6, "A", NULL);
	res = fold(&s, NULL);
	expect_ship(res, "A", "import_cleared", "import_cleared", NULL, NULL);
	json_decref(res);
	/* A late import hold with no release after it: held again. */
	add(&s, "shipment.customs_hold", "s5", 4, "A", "\"stage\":\"import\"");
	res = fold(&s, NULL);
	expect_ship(res, "A", "customs_hold", "import_cleared", "import", NULL);
	json_decref(res);

	/* A delivered order with a new shipment is partially delivered. */
	add(&s, "shipment.delivered", "s6", 7, "A", NULL);
	check_status(&s, "delivered");
	add(&s, "shipment.booked", "s7", 8, "B", "\"mode\":\"sea\"");
	check_status(&s, "partially_delivered");
	evset_clear(&s);
}

/* A document naming a shipment is no event of it: last_event_at stays (alert.stale). */
static void test_document_not_shipment_event(void **state)
{
	struct evset s = {.n = 0};
	json_t *res;
	(void)state;

	add(&s, "shipment.booked", "b1", 0, "A", "\"mode\":\"sea\"");
	add(&s, "shipment.departed", "b2", 2, "A", NULL);
	add(&s, "document.issued", "d1", 9, "A",
	    "\"document\":\"bill_of_lading\",\"location\":{\"code\":\"KEMBA\"}");
	res = fold(&s, NULL);
	expect_str(ship_str(res, "A", "last_event_at"), "2026-10-01T02:00:00Z", "last_event_at");
	expect_str(ship_str(res, "A", "last_location"), NULL, "last_location");
	expect_str(order_str(res, "updated_at"), "2026-10-01T09:00:00Z", "order updated_at");
	json_decref(res);
	evset_clear(&s);
}

/* Every shipment status: none, each milestone, customs_hold, exception, delivered. */
static void test_shipment_statuses(void **state)
{
	static const char *const names[] = {"booked",           "picked_up", "export_cleared",
	                                    "departed",         "arrived",   "import_cleared",
	                                    "out_for_delivery", "delivered"};
	struct evset s = {.n = 0};
	json_t *res;
	char type[64], id[16];
	(void)state;

	add(&s, "shipment.checkpoint", "c1", 0, "A", "\"location\":{\"code\":\"RWKGL\"}");
	res = fold(&s, &rules);
	expect_ship(res, "A", "none", "none", NULL, NULL);
	json_decref(res);

	/* Each milestone in turn, highest last, checkpoints between them change nothing. */
	for (int i = 0; i < 8; i++) {
		snprintf(type, sizeof(type), "shipment.%s", names[i]);
		snprintf(id, sizeof(id), "m%d", i);
		add(&s, type, id, 10 + 2 * i, "A", i == 0 ? "\"mode\":\"road\"" : NULL);
		snprintf(id, sizeof(id), "c%d", i + 2);
		add(&s, "shipment.checkpoint", id, 11 + 2 * i, "A",
		    "\"location\":{\"name\":\"x\"}");
		res = fold(&s, &rules);
		expect_ship(res, "A", names[i], names[i], NULL, NULL);
		json_decref(res);
	}
	evset_clear(&s);

	/* Gaps are fine: arrived alone implies everything before it. */
	add(&s, "shipment.arrived", "m1", 5, "A", NULL);
	add(&s, "shipment.picked_up", "m2", 6, "A", NULL); /* late report of an earlier step */
	res = fold(&s, &rules);
	expect_ship(res, "A", "arrived", "arrived", NULL, NULL);
	json_decref(res);
	evset_clear(&s);

	/* Holds: per stage, the latest customs event decides. */
	add(&s, "shipment.departed", "m1", 0, "A", NULL);
	add(&s, "shipment.customs_hold", "h1", 1, "A", "\"stage\":\"import\"");
	res = fold(&s, &rules);
	expect_ship(res, "A", "customs_hold", "departed", "import", NULL);
	json_decref(res);
	add(&s, "shipment.customs_released", "h2", 2, "A", "\"stage\":\"export\"");
	res = fold(&s, &rules);
	expect_ship(res, "A", "customs_hold", "departed", "import", NULL);
	json_decref(res);
	add(&s, "shipment.customs_released", "h3", 3, "A", "\"stage\":\"import\"");
	res = fold(&s, &rules);
	expect_ship(res, "A", "departed", "departed", NULL, NULL);
	json_decref(res);
	/* Both stages held: the latest hold is shown, and the other once it is released. */
	add(&s, "shipment.customs_hold", "h4", 4, "A", "\"stage\":\"import\"");
	add(&s, "shipment.customs_hold", "h5", 5, "A", "\"stage\":\"export\"");
	res = fold(&s, &rules);
	expect_ship(res, "A", "customs_hold", "departed", "export", NULL);
	json_decref(res);
	add(&s, "shipment.customs_released", "h6", 6, "A", "\"stage\":\"export\"");
	res = fold(&s, &rules);
	expect_ship(res, "A", "customs_hold", "departed", "import", NULL);
	json_decref(res);

	/* The other way round: the later import hold is shown. */
	add(&s, "shipment.customs_hold", "h7", 6, "B", "\"stage\":\"export\"");
	add(&s, "shipment.customs_hold", "h8", 7, "B", "\"stage\":\"import\"");
	res = fold(&s, &rules);
	expect_ship(res, "B", "customs_hold", "none", "import", NULL);
	json_decref(res);

	/* An exception outranks a hold; resolving it shows the hold again. */
	add(&s, "shipment.exception", "x1", 7, "A", "\"reason\":\"damaged\"");
	res = fold(&s, &rules);
	expect_ship(res, "A", "exception", "departed", "import", "damaged");
	json_decref(res);
	add(&s, "shipment.exception", "x2", 8, "A", "\"reason\":\"delayed\"");
	res = fold(&s, &rules);
	expect_ship(res, "A", "exception", "departed", "import", "delayed");
	json_decref(res);
	/* One exception_resolved closes every exception before it. */
	add(&s, "shipment.exception_resolved", "x3", 9, "A", NULL);
	res = fold(&s, &rules);
	expect_ship(res, "A", "customs_hold", "departed", "import", NULL);
	json_decref(res);
	add(&s, "shipment.exception", "x4", 10, "A", "\"reason\":\"refused\"");
	/* Delivered outranks everything. */
	add(&s, "shipment.delivered", "m9", 11, "A", NULL);
	res = fold(&s, &rules);
	expect_ship(res, "A", "delivered", "delivered", "import", "refused");
	json_decref(res);
	evset_clear(&s);
}

/* eta, booking details, last event and last location follow the latest events. */
static void test_shipment_fields(void **state)
{
	struct evset s = {.n = 0};
	json_t *res;
	(void)state;

	add(&s, "shipment.booked", "b1", 0, "A",
	    "\"mode\":\"sea\",\"carrier\":\"Maersk\",\"tracking\":\"MSKU1\",\"consignee\":\"Hema "
	    "Pudong\",\"eta\":\"2026-11-10T08:00:00+08:00\"");
	add(&s, "shipment.checkpoint", "c1", 3, "A",
	    "\"location\":{\"code\":\"KEMBA\",\"name\":\"Mombasa\"}");
	add(&s, "shipment.eta_changed", "e1", 4, "A", "\"eta\":\"2026-11-24T08:00:00+08:00\"");
	/* An eta change reported late, dated before the other: it is not the latest. */
	add(&s, "shipment.eta_changed", "e0", 2, "A", "\"eta\":\"2026-11-12T08:00:00+08:00\"");
	add(&s, "shipment.checkpoint", "c2", 5, "A", "\"location\":{\"name\":\"Indian Ocean\"}");
	add(&s, "shipment.exception", "x1", 6, "A", "\"reason\":\"delayed\"");
	res = fold(&s, &rules);
	expect_str(ship_str(res, "A", "eta"), "2026-11-24T08:00:00+08:00", "eta");
	expect_str(ship_str(res, "A", "mode"), "sea", "mode");
	expect_str(ship_str(res, "A", "carrier"), "Maersk", "carrier");
	expect_str(ship_str(res, "A", "tracking"), "MSKU1", "tracking");
	expect_str(ship_str(res, "A", "consignee"), "Hema Pudong", "consignee");
	expect_str(ship_str(res, "A", "last_event_at"), "2026-10-01T06:00:00Z", "last_event_at");
	/* The exception has no location: the name of the checkpoint before it. */
	expect_str(ship_str(res, "A", "last_location"), "Indian Ocean", "last_location");
	json_decref(res);

	/* A later booking replaces the details, and its eta counts as the latest. */
	add(&s, "shipment.booked", "b2", 7, "A",
	    "\"mode\":\"multimodal\",\"eta\":\"2026-12-01T08:00:00+08:00\","
	    "\"location\":{\"code\":\"KEMBA\",\"name\":\"Mombasa\"}");
	res = fold(&s, &rules);
	expect_str(ship_str(res, "A", "mode"), "multimodal", "mode");
	expect_str(ship_str(res, "A", "carrier"), NULL, "carrier");
	expect_str(ship_str(res, "A", "consignee"), NULL, "consignee");
	expect_str(ship_str(res, "A", "eta"), "2026-12-01T08:00:00+08:00", "eta");
	/* The code wins over the name. */
	expect_str(ship_str(res, "A", "last_location"), "KEMBA", "last_location");
	json_decref(res);

	/* A booking without an eta leaves the latest eta alone. */
	add(&s, "shipment.booked", "b3", 8, "A", "\"mode\":\"rail\"");
	res = fold(&s, &rules);
	expect_str(ship_str(res, "A", "eta"), "2026-12-01T08:00:00+08:00", "eta");
	expect_str(ship_str(res, "A", "mode"), "rail", "mode");
	json_decref(res);
	evset_clear(&s);

	/* Never a location: null; never booked: nulls. */
	add(&s, "shipment.departed", "d1", 1, "B", NULL);
	res = fold(&s, &rules);
	expect_str(ship_str(res, "B", "last_location"), NULL, "last_location");
	expect_str(ship_str(res, "B", "mode"), NULL, "mode");
	expect_str(ship_str(res, "B", "eta"), NULL, "eta");
	json_decref(res);
	evset_clear(&s);
}

/* Order fields come from the latest order.created, created_at from the earliest. */
static void test_order_fields(void **state)
{
	struct evset s = {.n = 0};
	json_t *res;
	(void)state;

	add(&s, "order.created", "o1", 0, NULL, COFFEE);
	add(&s, "order.created", "o2", 5, NULL,
	    "\"buyer\":\"Hema Fresh\",\"origin\":\"RW\",\"destination\":\"HK\",\"lines\":["
	    "{\"sku\":\"A\",\"product\":\"Chili\",\"hs_code\":\"090421\",\"quantity\":1,"
	    "\"unit\":\"kg\"},{\"sku\":\"B\",\"product\":\"Coffee\",\"hs_code\":\"090111\","
	    "\"quantity\":2.5,\"unit\":\"t\"}]");
	add(&s, "shipment.checkpoint", "c1", 7, "Z", "\"location\":{\"code\":\"CNSHA\"}");
	res = fold(&s, &rules);
	expect_str(order_str(res, "buyer"), "Hema Fresh", "buyer");
	expect_str(order_str(res, "channel"), NULL, "channel");
	expect_str(order_str(res, "destination"), "HK", "destination");
	expect_str(order_str(res, "currency"), NULL, "currency");
	expect_str(order_str(res, "created_at"), "2026-10-01T00:00:00Z", "created_at");
	expect_str(order_str(res, "updated_at"), "2026-10-01T07:00:00Z", "updated_at");
	const json_t *lines = json_object_get(res, "lines");
	assert_int_equal(json_array_size(lines), 2);
	expect_str(json_string_value(json_object_get(json_array_get(lines, 1), "sku")), "B", "sku");
	assert_true(json_is_null(json_object_get(json_array_get(lines, 1), "unit_price")));
	assert_true(json_is_null(json_object_get(json_array_get(lines, 1), "currency")));
	assert_true(json_number_value(json_object_get(json_array_get(lines, 1), "quantity")) ==
	            2.5);
	json_decref(res);
	evset_clear(&s);

	/* Lines carry the order's currency. */
	add(&s, "order.created", "o1", 0, NULL, COFFEE);
	res = fold(&s, &rules);
	lines = json_object_get(res, "lines");
	expect_str(json_string_value(json_object_get(json_array_get(lines, 0), "currency")), "USD",
	           "currency");
	json_decref(res);
	evset_clear(&s);
}

/* Documents are listed sorted by (shipment_ref, null first; document; time). */
static void test_documents(void **state)
{
	struct evset s = {.n = 0};
	json_t *res;
	char *got;
	(void)state;

	add(&s, "document.issued", "d5", 5, "B", "\"document\":\"phytosanitary\"");
	add(&s, "document.issued", "d4", 4, "A", "\"document\":\"phytosanitary\"");
	add(&s, "document.issued", "d3", 3, NULL,
	    "\"document\":\"phytosanitary\",\"number\":\"NAEB-2\"");
	add(&s, "document.issued", "d2", 2, NULL,
	    "\"document\":\"phytosanitary\",\"number\":\"NAEB-1\"");
	add(&s, "document.issued", "d1", 1, NULL, "\"document\":\"certificate_of_origin\"");
	res = fold(&s, &rules);
	got = json_dumps(json_object_get(res, "documents"), JSON_COMPACT | JSON_SORT_KEYS);
	assert_string_equal(
	    got, "[{\"document\":\"certificate_of_origin\",\"issued_at\":\"2026-10-01T01:00:00Z\","
	         "\"number\":null,\"shipment_ref\":null},"
	         "{\"document\":\"phytosanitary\",\"issued_at\":\"2026-10-01T02:00:00Z\","
	         "\"number\":\"NAEB-1\",\"shipment_ref\":null},"
	         "{\"document\":\"phytosanitary\",\"issued_at\":\"2026-10-01T03:00:00Z\","
	         "\"number\":\"NAEB-2\",\"shipment_ref\":null},"
	         "{\"document\":\"phytosanitary\",\"issued_at\":\"2026-10-01T04:00:00Z\","
	         "\"number\":null,\"shipment_ref\":\"A\"},"
	         "{\"document\":\"phytosanitary\",\"issued_at\":\"2026-10-01T05:00:00Z\","
	         "\"number\":null,\"shipment_ref\":\"B\"}]");
	free(got);
	/* Documents alone make no shipment. */
	assert_int_equal(json_array_size(json_object_get(res, "shipments")), 0);
	json_decref(res);
	evset_clear(&s);
}

/* missing_documents: what the rules require must be issued by the departure. */
static void test_missing_documents(void **state)
{
	struct evset s = {.n = 0};
	json_t *res;
	(void)state;

	/* Capsicum needs three documents; the order-wide ones count for every shipment. */
	add(&s, "order.created", "o1", 0, NULL,
	    "\"buyer\":\"Hema Fresh\",\"origin\":\"RW\",\"destination\":\"CN\",\"lines\":["
	    "{\"sku\":\"A\",\"product\":\"Dried chili\",\"hs_code\":\"09042100\",\"quantity\":1,"
	    "\"unit\":\"kg\"}]");
	add(&s, "document.issued", "d1", 1, NULL, "\"document\":\"certificate_of_origin\"");
	add(&s, "document.issued", "d2", 1, NULL, "\"document\":\"quality_certificate\"");
	add(&s, "document.issued", "d3", 2, "SH1", "\"document\":\"phytosanitary\"");
	add(&s, "shipment.departed", "m1", 3, "SH1", NULL);
	res = fold(&s, &rules);
	expect_anomalies(res, "");
	json_decref(res);
	/* Without rules nothing is required. */
	res = fold(&s, NULL);
	expect_anomalies(res, "");
	json_decref(res);

	/* SH2 departs; SH1's phytosanitary certificate does not cover it. */
	add(&s, "shipment.departed", "m2", 4, "SH2", NULL);
	res = fold(&s, &rules);
	expect_anomalies(res, "missing_documents");
	json_decref(res);
	/* Issued after the departure is still too late. */
	add(&s, "document.issued", "d4", 5, "SH2", "\"document\":\"phytosanitary\"");
	res = fold(&s, &rules);
	expect_anomalies(res, "missing_documents");
	json_decref(res);
	/* At the very instant of the departure is in time. */
	add(&s, "document.issued", "d5", 4, "SH2", "\"document\":\"phytosanitary\"");
	res = fold(&s, &rules);
	expect_anomalies(res, "");
	json_decref(res);
	/* Retracting a document brings the anomaly back. */
	add(&s, "event.retracted", "r1", 6, NULL, "\"retracts\":\"d2\"");
	res = fold(&s, &rules);
	expect_anomalies(res, "missing_documents");
	json_decref(res);
	evset_clear(&s);

	/* A departure implied by a later milestone uses the earliest such milestone. */
	add(&s, "order.created", "o1", 0, NULL, COFFEE);
	add(&s, "document.issued", "d1", 1, NULL, "\"document\":\"phytosanitary\"");
	add(&s, "shipment.arrived", "m1", 3, "A", NULL);
	add(&s, "shipment.import_cleared", "m2", 2, "A", NULL); /* dated earlier */
	add(&s, "document.issued", "d2", 3, NULL, "\"document\":\"certificate_of_origin\"");
	res = fold(&s, &rules);
	expect_anomalies(res, "missing_documents");
	json_decref(res);
	add(&s, "document.issued", "d3", 2, NULL, "\"document\":\"certificate_of_origin\"");
	res = fold(&s, &rules);
	expect_anomalies(res, "");
	json_decref(res);
	/* A shipment that has not departed needs nothing yet. */
	add(&s, "shipment.export_cleared", "m3", 9, "B", NULL);
	res = fold(&s, &rules);
	expect_anomalies(res, "");
	json_decref(res);
	evset_clear(&s);

	/* Both anomalies at once, sorted. */
	add(&s, "order.created", "o1", 0, NULL, COFFEE);
	add(&s, "shipment.departed", "m1", 1, "A", NULL);
	add(&s, "order.cancelled", "o2", 2, NULL, NULL);
	res = fold(&s, &rules);
	expect_anomalies(res, "cancelled_after_departure,missing_documents");
	json_decref(res);
	evset_clear(&s);
}

/* A retraction takes its target out, whatever their times and arrival order. */
static void test_retraction(void **state)
{
	struct evset s = {.n = 0};
	json_t *res;
	(void)state;

	add(&s, "order.created", "o1", 0, NULL, COFFEE);
	add(&s, "shipment.departed", "m1", 2, "A", NULL);

	/* After its target. */
	add(&s, "shipment.delivered", "m2", 3, "A", NULL);
	add(&s, "event.retracted", "r1", 4, NULL, "\"retracts\":\"m2\"");
	res = fold(&s, &rules);
	expect_ship(res, "A", "departed", "departed", NULL, NULL);
	expect_order_status(res, "in_transit");
	/* An effective retraction is an event of the order. */
	expect_str(order_str(res, "updated_at"), "2026-10-01T04:00:00Z", "updated_at");
	json_decref(res);
	evset_clear(&s);

	/* Dated before its target and arriving first: it waits for the target. */
	add(&s, "event.retracted", "r1", 1, NULL, "\"retracts\":\"m2\"");
	add(&s, "order.created", "o1", 0, NULL, COFFEE);
	add(&s, "shipment.departed", "m1", 2, "A", NULL);
	res = fold(&s, &rules);
	/* Without its target it counts for nothing, not even for updated_at. */
	expect_str(order_str(res, "updated_at"), "2026-10-01T02:00:00Z", "updated_at");
	json_decref(res);
	add(&s, "shipment.delivered", "m2", 3, "A", NULL);
	res = fold(&s, &rules);
	expect_ship(res, "A", "departed", "departed", NULL, NULL);
	expect_str(order_str(res, "updated_at"), "2026-10-01T02:00:00Z", "updated_at");
	json_decref(res);

	/* A retraction of the retraction counts for nothing: m2 stays out. */
	add(&s, "event.retracted", "r2", 5, NULL, "\"retracts\":\"r1\"");
	res = fold(&s, &rules);
	expect_ship(res, "A", "departed", "departed", NULL, NULL);
	expect_str(order_str(res, "updated_at"), "2026-10-01T02:00:00Z", "updated_at");
	json_decref(res);
	evset_clear(&s);

	/* Retracting the only order.created makes the order pending again. */
	add(&s, "order.created", "o1", 0, NULL, COFFEE);
	add(&s, "event.retracted", "r1", 1, NULL, "\"retracts\":\"o1\"");
	res = fold(&s, &rules);
	expect_order_status(res, "pending");
	expect_str(order_str(res, "created_at"), NULL, "created_at");
	expect_str(order_str(res, "buyer"), NULL, "buyer");
	json_decref(res);
	/* A corrected order.created takes its place. */
	add(&s, "order.created", "o2", 2, NULL, COFFEE);
	res = fold(&s, &rules);
	expect_order_status(res, "created");
	expect_str(order_str(res, "created_at"), "2026-10-01T02:00:00Z", "created_at");
	json_decref(res);
	evset_clear(&s);

	/* Retracting a hold, an exception, a cancellation puts the status back. */
	add(&s, "order.created", "o1", 0, NULL, COFFEE);
	add(&s, "shipment.booked", "b1", 1, "A", "\"mode\":\"air\"");
	add(&s, "shipment.customs_hold", "h1", 2, "A", "\"stage\":\"export\"");
	add(&s, "shipment.exception", "x1", 3, "A", "\"reason\":\"lost\"");
	add(&s, "order.cancelled", "c1", 4, NULL, NULL);
	res = fold(&s, &rules);
	expect_order_status(res, "cancelled");
	expect_ship(res, "A", "exception", "booked", "export", "lost");
	json_decref(res);
	add(&s, "event.retracted", "r1", 5, NULL, "\"retracts\":\"x1\"");
	add(&s, "event.retracted", "r2", 5, NULL, "\"retracts\":\"h1\"");
	add(&s, "event.retracted", "r3", 5, NULL, "\"retracts\":\"c1\"");
	res = fold(&s, &rules);
	expect_order_status(res, "booked");
	expect_ship(res, "A", "booked", "booked", NULL, NULL);
	json_decref(res);
	/* Retracting the whole story gives back the fold of what is left. */
	add(&s, "shipment.departed", "m1", 6, "A", NULL);
	add(&s, "event.retracted", "r4", 7, NULL, "\"retracts\":\"m1\"");
	res = fold(&s, &rules);
	expect_ship(res, "A", "booked", "booked", NULL, NULL);
	json_decref(res);
	evset_clear(&s);
}

/* Equal instants are ordered by id, bytewise, whatever offset they were written with. */
static void test_ties(void **state)
{
	struct evset s = {.n = 0};
	json_t *res;
	(void)state;

	/* Same instant, two spellings: "h-b" sorts after "h-a", so the release wins. */
	add_line(&s, "{\"type\":\"shipment.customs_hold\",\"id\":\"h-a\",\"occurred_at\":"
	             "\"2026-10-01T10:00:00+02:00\",\"order\":\"PO-1\",\"shipment\":\"A\","
	             "\"stage\":\"import\"}");
	add_line(&s, "{\"type\":\"shipment.customs_released\",\"id\":\"h-b\",\"occurred_at\":"
	             "\"2026-10-01T08:00:00Z\",\"order\":\"PO-1\",\"shipment\":\"A\","
	             "\"stage\":\"import\"}");
	res = fold(&s, &rules);
	expect_ship(res, "A", "none", "none", NULL, NULL);
	expect_str(ship_str(res, "A", "last_event_at"), "2026-10-01T08:00:00Z", "last_event_at");
	json_decref(res);
	evset_clear(&s);

	/* The same two with the ids swapped: the hold is the latest. */
	add_line(&s, "{\"type\":\"shipment.customs_hold\",\"id\":\"h-b\",\"occurred_at\":"
	             "\"2026-10-01T10:00:00+02:00\",\"order\":\"PO-1\",\"shipment\":\"A\","
	             "\"stage\":\"import\"}");
	add_line(&s, "{\"type\":\"shipment.customs_released\",\"id\":\"h-a\",\"occurred_at\":"
	             "\"2026-10-01T08:00:00Z\",\"order\":\"PO-1\",\"shipment\":\"A\","
	             "\"stage\":\"import\"}");
	res = fold(&s, &rules);
	expect_ship(res, "A", "customs_hold", "none", "import", NULL);
	expect_str(ship_str(res, "A", "last_event_at"), "2026-10-01T10:00:00+02:00",
	           "last_event_at");
	json_decref(res);
	evset_clear(&s);

	/* Bytewise: "X" (0x58) sorts before "a" (0x61), so "a1" is the latest. */
	add(&s, "shipment.exception", "a1", 3, "A", "\"reason\":\"damaged\"");
	add(&s, "shipment.exception", "X1", 3, "A", "\"reason\":\"lost\"");
	add(&s, "shipment.eta_changed", "e-2", 4, "A", "\"eta\":\"2026-10-20T00:00:00Z\"");
	add(&s, "shipment.eta_changed", "e-10", 4, "A", "\"eta\":\"2026-10-21T00:00:00Z\"");
	res = fold(&s, &rules);
	expect_ship(res, "A", "exception", "none", NULL, "damaged");
	/* "e-2" > "e-10" bytewise, so the 20th is the latest eta. */
	expect_str(ship_str(res, "A", "eta"), "2026-10-20T00:00:00Z", "eta");
	json_decref(res);
	evset_clear(&s);

	/* Two order.created at the same instant: the larger id gives the fields. */
	add(&s, "order.created", "o-b", 0, NULL,
	    "\"buyer\":\"B\",\"origin\":\"RW\",\"destination\":\"CN\",\"lines\":[{\"sku\":\"s\","
	    "\"product\":\"p\",\"hs_code\":\"090111\",\"quantity\":1,\"unit\":\"kg\"}]");
	add(&s, "order.created", "o-a", 0, NULL,
	    "\"buyer\":\"A\",\"origin\":\"RW\",\"destination\":\"CN\",\"lines\":[{\"sku\":\"s\","
	    "\"product\":\"p\",\"hs_code\":\"090111\",\"quantity\":1,\"unit\":\"kg\"}]");
	res = fold(&s, &rules);
	expect_str(order_str(res, "buyer"), "B", "buyer");
	json_decref(res);
	evset_clear(&s);
}

/* An event received twice counts once; a conflicting copy never depends on arrival. */
static void test_duplicates(void **state)
{
	struct evset s = {.n = 0};
	json_t *once, *twice;
	(void)state;

	add(&s, "order.created", "o1", 0, NULL, COFFEE);
	add(&s, "shipment.departed", "m1", 2, "A", NULL);
	add(&s, "event.retracted", "r1", 3, NULL, "\"retracts\":\"m1\"");
	once = fold(&s, &rules);
	add(&s, "shipment.departed", "m1", 2, "A", NULL);
	add(&s, "event.retracted", "r1", 3, NULL, "\"retracts\":\"m1\"");
	twice = fold(&s, &rules);
	assert_true(json_equal(once, twice));
	json_decref(once);
	json_decref(twice);
	evset_clear(&s);

	/* Two different events under one id (the daemon refuses that as a conflict). */
	add(&s, "shipment.departed", "m1", 2, "A", NULL);
	add(&s, "shipment.delivered", "m1", 2, "A", NULL);
	once = fold(&s, &rules);
	struct model_event t = s.ev[0];
	s.ev[0] = s.ev[1];
	s.ev[1] = t;
	twice = fold(&s, &rules);
	assert_true(json_equal(once, twice));
	/* Same instant: the type sorts first, so shipment.delivered is kept. */
	expect_ship(once, "A", "delivered", "delivered", NULL, NULL);
	json_decref(once);
	json_decref(twice);
	evset_clear(&s);

	/* Different instants: the earlier copy is kept, whichever came first. */
	add(&s, "shipment.delivered", "m1", 5, "A", NULL);
	add(&s, "shipment.departed", "m1", 2, "A", NULL);
	once = fold(&s, &rules);
	expect_ship(once, "A", "departed", "departed", NULL, NULL);
	json_decref(once);
	evset_clear(&s);
}

/* Events the validator would refuse are ignored rather than trusted. */
static void test_lenient(void **state)
{
	struct model_event evs[4];
	json_t *bodies[4];
	json_t *res;
	(void)state;

	bodies[0] = json_pack("{s:s, s:s, s:s}", "type", "shipment.departed", "id", "m1",
	                      "occurred_at", "2026-10-01T00:00:00Z"); /* no shipment */
	bodies[1] =
	    json_pack("{s:s, s:s, s:s, s:s, s:s}", "type", "shipment.customs_hold", "id", "h1",
	              "occurred_at", "2026-10-01T00:00:00Z", "shipment", "A", "stage", "transit");
	bodies[2] = json_pack("{s:s, s:s, s:s, s:s}", "type", "shipment.teleported", "id", "t1",
	                      "occurred_at", "2026-10-01T00:00:00Z", "shipment", "B");
	bodies[3] = json_pack("{s:s, s:s}", "type", "order.confirmed", "id", "c1"); /* no time */
	for (int i = 0; i < 4; i++) {
		evs[i].id = json_string_value(json_object_get(bodies[i], "id"));
		evs[i].type = json_string_value(json_object_get(bodies[i], "type"));
		evs[i].occurred_ms = 0;
		evs[i].body = bodies[i];
	}
	evs[2].id = NULL; /* no id at all */
	res = model_fold(evs, 4, &rules);
	expect_order_status(res, "pending");
	assert_int_equal(json_array_size(json_object_get(res, "shipments")), 0);
	expect_str(order_str(res, "updated_at"), NULL, "updated_at");
	json_decref(res);
	for (int i = 0; i < 4; i++)
		json_decref(bodies[i]);
}

/*
 * Members of the wrong kind read as absent: a line that is not an object
 * gives no line, and a location with neither code nor name does not hide
 * the last one that had one.
 */
static void test_lenient_members(void **state)
{
	struct model_event evs[3];
	json_t *bodies[3];
	json_t *res;
	(void)state;

	bodies[0] = json_pack("{s:s, s:s, s:s, s:s, s:[i, {s:s, s:s}]}", "type", "order.created",
	                      "id", "c1", "occurred_at", "2026-10-01T00:00:00Z", "buyer", "B",
	                      "lines", 7, "sku", "s1", "hs_code", "090111");
	bodies[1] = json_pack("{s:s, s:s, s:s, s:s, s:{s:s}}", "type", "shipment.checkpoint", "id",
	                      "k1", "occurred_at", "2026-10-01T01:00:00Z", "shipment", "A",
	                      "location", "code", "KEMBA");
	bodies[2] = json_pack("{s:s, s:s, s:s, s:s, s:{s:i}}", "type", "shipment.arrived", "id",
	                      "a1", "occurred_at", "2026-10-01T02:00:00Z", "shipment", "A",
	                      "location", "code", 5);
	for (int i = 0; i < 3; i++) {
		evs[i].id = json_string_value(json_object_get(bodies[i], "id"));
		evs[i].type = json_string_value(json_object_get(bodies[i], "type"));
		assert_null(
		    validate_rfc3339(json_string_value(json_object_get(bodies[i], "occurred_at")),
		                     &evs[i].occurred_ms, NULL));
		evs[i].body = bodies[i];
	}
	res = model_fold(evs, 3, &rules);
	assert_int_equal(json_array_size(json_object_get(res, "lines")), 1);
	expect_ship(res, "A", "arrived", "arrived", NULL, NULL);
	expect_str(ship_str(res, "A", "last_location"), "KEMBA", "last_location");
	json_decref(res);
	for (int i = 0; i < 3; i++)
		json_decref(bodies[i]);
}

/* Shipments come out sorted by ref, however many and in whatever order they appear. */
static void test_shipments_sorted(void **state)
{
	struct evset s = {.n = 0};
	char id[32], ref[32];
	json_t *res;
	size_t i;
	const json_t *sh;
	(void)state;

	add(&s, "order.created", "o1", 0, NULL, COFFEE);
	for (int k = 9; k >= 1; k--) {
		snprintf(id, sizeof(id), "b%d", k);
		snprintf(ref, sizeof(ref), "S%d", k);
		add(&s, "shipment.booked", id, 10 - k, ref, "\"mode\":\"sea\"");
	}
	res = fold(&s, &rules);
	assert_int_equal(json_array_size(json_object_get(res, "shipments")), 9);
	json_array_foreach(json_object_get(res, "shipments"), i, sh)
	{
		snprintf(ref, sizeof(ref), "S%zu", i + 1);
		expect_str(json_string_value(json_object_get(sh, "shipment_ref")), ref,
		           "shipment_ref");
	}
	expect_order_status(res, "booked");
	json_decref(res);
	evset_clear(&s);
}

/* A small deterministic PRNG (splitmix64), so failures reproduce. */
static uint64_t rng_next(uint64_t *st)
{
	uint64_t z = (*st += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

/* A number in 0..n-1. */
static int rnd(uint64_t *st, int n)
{
	return (int)(rng_next(st) % (uint64_t)n);
}

/* State of one generated order: the set, the clock, the next id. */
struct gen {
	uint64_t *rng;
	struct evset *s;
	int hour; /* UTC hours after 2026-10-01, starting at 24 so offsets stay in October */
	int next_id;
	char ids[MAX_EVS][16];
};

/* Add a generated event: the clock moves 0-2 hours (0 makes ties), any offset spells it. */
static void gen_add(struct gen *g, const char *type, const char *shipment, const char *extra)
{
	static const int offsets[] = {0, 2, 8, -5};
	char at[64];
	char line[1024];
	char *id = g->ids[g->s->n];
	size_t n;

	g->hour += rnd(g->rng, 3);
	time_at(at, sizeof(at), g->hour, offsets[rnd(g->rng, 4)]);
	snprintf(id, sizeof(g->ids[0]), "ev-%03d", g->next_id++);
	n = (size_t)snprintf(line, sizeof(line),
	                     "{\"type\":\"%s\",\"id\":\"%s\",\"occurred_at\":\"%s\",\"order\":"
	                     "\"PO-9\"",
	                     type, id, at);
	if (shipment != NULL)
		n += (size_t)snprintf(line + n, sizeof(line) - n, ",\"shipment\":\"%s\"", shipment);
	if (extra != NULL)
		n += (size_t)snprintf(line + n, sizeof(line) - n, ",%s", extra);
	snprintf(line + n, sizeof(line) - n, "}");
	add_line(g->s, line);
}

/* A random realistic story of one shipment. */
static void gen_shipment(struct gen *g, const char *ref)
{
	static const char *const steps[] = {
	    "shipment.picked_up", "shipment.export_cleared", "shipment.departed",
	    "shipment.arrived",   "shipment.import_cleared", "shipment.out_for_delivery",
	    "shipment.delivered",
	};
	static const char *const docs[] = {"phytosanitary", "certificate_of_origin",
	                                   "quality_certificate", "bill_of_lading"};
	static const char *const reasons[] = {"damaged", "lost", "refused", "delayed", "other"};
	static const char *const modes[] = {"air", "sea", "road", "rail", "multimodal"};
	char extra[256];
	int last = rnd(g->rng, 8); /* how far the shipment got */

	snprintf(extra, sizeof(extra), "\"mode\":\"%s\",\"eta\":\"2026-11-%02dT08:00:00+08:00\"",
	         modes[rnd(g->rng, 5)], 1 + rnd(g->rng, 28));
	gen_add(g, "shipment.booked", ref, extra);
	for (int i = 0; i < last; i++) {
		if (rnd(g->rng, 10) < 7) /* gaps: some milestones are never reported */
			gen_add(g, steps[i], ref,
			        rnd(g->rng, 2) ? "\"location\":{\"code\":\"KEMBA\"}" : NULL);
		switch (rnd(g->rng, 8)) {
		case 0:
			gen_add(g, "shipment.checkpoint", ref,
			        rnd(g->rng, 2)
			            ? "\"location\":{\"name\":\"Malaba\"}"
			            : "\"location\":{\"code\":\"CNSHA\",\"name\":\"Shanghai\"}");
			break;
		case 1:
			snprintf(extra, sizeof(extra), "\"stage\":\"%s\"",
			         rnd(g->rng, 2) ? "export" : "import");
			gen_add(g, "shipment.customs_hold", ref, extra);
			if (rnd(g->rng, 10) < 6)
				gen_add(g, "shipment.customs_released", ref, extra);
			break;
		case 2:
			snprintf(extra, sizeof(extra), "\"reason\":\"%s\"",
			         reasons[rnd(g->rng, 5)]);
			gen_add(g, "shipment.exception", ref, extra);
			if (rnd(g->rng, 2))
				gen_add(g, "shipment.exception_resolved", ref, NULL);
			break;
		case 3:
			snprintf(extra, sizeof(extra), "\"eta\":\"2026-11-%02dT%02d:00:00Z\"",
			         1 + rnd(g->rng, 28), rnd(g->rng, 24));
			gen_add(g, "shipment.eta_changed", ref, extra);
			break;
		case 4:
			snprintf(extra, sizeof(extra), "\"document\":\"%s\"", docs[rnd(g->rng, 4)]);
			gen_add(g, "document.issued", rnd(g->rng, 2) ? ref : NULL, extra);
			break;
		default:
			break;
		}
	}
}

/* Generate one random order of 5 to 30 events into g's set. */
static void gen_order(struct gen *g)
{
	static const char *const refs[] = {"SH-1", "SH-2", "SH-3"};
	char extra[128];
	int ships = 1 + rnd(g->rng, 3);

	if (rnd(g->rng, 20) != 0)
		gen_add(g, "order.created", NULL,
		        rnd(g->rng, 2)
		            ? COFFEE
		            : "\"buyer\":\"Hema Fresh\",\"origin\":\"RW\",\"destination\":"
		              "\"CN\",\"lines\":[{\"sku\":\"C\",\"product\":\"Dried chili\","
		              "\"hs_code\":\"090421\",\"quantity\":300,\"unit\":\"carton\"}]");
	if (rnd(g->rng, 10) < 7)
		gen_add(g, "order.confirmed", NULL, NULL);
	if (rnd(g->rng, 2))
		gen_add(g, "document.issued", NULL, "\"document\":\"certificate_of_origin\"");
	for (int i = 0; i < ships; i++)
		gen_shipment(g, refs[i]);
	if (rnd(g->rng, 10) == 0)
		gen_add(g, "order.cancelled", NULL, NULL);
	/* Retractions: of a random event (maybe a retraction), or of an id never sent. */
	for (int k = rnd(g->rng, 3); k > 0 && g->s->n > 0; k--) {
		if (rnd(g->rng, 8) == 0)
			snprintf(extra, sizeof(extra), "\"retracts\":\"never-sent\"");
		else
			snprintf(extra, sizeof(extra), "\"retracts\":\"%s\"",
			         g->ids[rnd(g->rng, (int)g->s->n)]);
		gen_add(g, "event.retracted", NULL, extra);
	}
	/* Keep 5 to 30 events: drop random ones, or add position reports. */
	while (g->s->n > 30) {
		size_t victim = (size_t)rnd(g->rng, (int)g->s->n);
		json_decref(g->s->ev[victim].body);
		g->s->ev[victim] = g->s->ev[g->s->n - 1];
		memcpy(g->ids[victim], g->ids[g->s->n - 1], sizeof(g->ids[0]));
		g->s->n--;
	}
	while (g->s->n < 5)
		gen_add(g, "shipment.checkpoint", refs[0], "\"location\":{\"code\":\"RWKGL\"}");
}

/* Fold, and fail with both results when they differ from want. */
static void expect_same_fold(const json_t *want, struct model_event *evs, size_t n, int order,
                             int shuffle)
{
	json_t *got = model_fold(evs, n, &rules);

	if (!json_equal(want, got)) {
		char *a = json_dumps(want, JSON_SORT_KEYS);
		char *b = json_dumps(got, JSON_SORT_KEYS);
		fail_msg("order %d, shuffle %d: the fold depends on arrival order\n%s\n%s", order,
		         shuffle, a, b);
	}
	json_decref(got);
}

/* 200 random orders: 50 shuffles each, and the set sent twice, all fold alike. */
static void test_property_order_independent(void **state)
{
	uint64_t rng = UINT64_C(20261001);
	static struct evset s;
	static struct gen g;
	static const char *const seen[] = {
	    "pending", "created",    "confirmed",           "cancelled",
	    "booked",  "in_transit", "partially_delivered", "delivered"};
	int seen_count[8] = {0};
	int with_anomaly = 0;
	(void)state;

	for (int order = 0; order < 200; order++) {
		struct model_event evs[2 * MAX_EVS];
		json_t *want;

		memset(&g, 0, sizeof(g));
		s.n = 0;
		g.rng = &rng;
		g.s = &s;
		g.hour = 24;
		gen_order(&g);
		assert_true(s.n >= 5 && s.n <= 30);
		want = fold(&s, &rules);
		for (int k = 0; k < 8; k++)
			seen_count[k] += strcmp(order_str(want, "status"), seen[k]) == 0;
		with_anomaly += json_array_size(json_object_get(json_object_get(want, "order"),
		                                                "anomalies")) > 0;

		for (int sh = 0; sh < 50; sh++) {
			memcpy(evs, s.ev, s.n * sizeof(evs[0]));
			/* Fisher-Yates. */
			for (size_t i = s.n - 1; i > 0; i--) {
				size_t j = (size_t)rnd(&rng, (int)i + 1);
				struct model_event t = evs[i];
				evs[i] = evs[j];
				evs[j] = t;
			}
			expect_same_fold(want, evs, s.n, order, sh);
		}
		/* Every event twice, in reverse order. */
		for (size_t i = 0; i < s.n; i++) {
			evs[i] = s.ev[s.n - 1 - i];
			evs[s.n + i] = s.ev[i];
		}
		expect_same_fold(want, evs, 2 * s.n, order, -1);
		json_decref(want);
		evset_clear(&s);
	}
	/* The generator must reach the interesting cases, or the property says little. */
	for (int k = 0; k < 8; k++)
		if (seen_count[k] == 0 && strcmp(seen[k], "confirmed") != 0 &&
		    strcmp(seen[k], "created") != 0)
			fail_msg("no generated order ended %s", seen[k]);
	assert_true(with_anomaly > 10);
}

/* Order events as the walk reads them: by instant, then id. */
static int walk_order(const void *pa, const void *pb)
{
	const struct model_event *a = pa, *b = pb;

	if (a->occurred_ms != b->occurred_ms)
		return a->occurred_ms < b->occurred_ms ? -1 : 1;
	return strcmp(a->id, b->id);
}

/* The walk as the database gives it back: written out and read again. */
static json_t *round_trip(json_t *walk)
{
	char *text = json_dumps(walk, JSON_COMPACT);
	json_t *back = json_loads(text, 0, NULL);

	assert_non_null(back);
	free(text);
	json_decref(walk);
	return back;
}

/*
 * What model_fold_from() returns for the whole fold want, its new events
 * evs[k..n): the lines null unless the latest order.created is new (a new
 * reference).
 */
static json_t *resumed_view(const json_t *want, const struct model_event *evs, size_t k, size_t n)
{
	json_t *v = json_deep_copy(want);
	const struct model_event *latest = NULL;

	for (size_t i = 0; i < n; i++)
		if (strcmp(evs[i].type, "order.created") == 0)
			latest = &evs[i];
	if (latest != NULL && latest < evs + k)
		json_object_set_new(v, "lines", json_null());
	return v;
}

/* Fail with both values when two results differ. */
static void expect_json_equal(const json_t *want, const json_t *got, const char *what, int order,
                              size_t k)
{
	if (!json_equal(want, got)) {
		char *a = json_dumps(want, JSON_SORT_KEYS);
		char *b = json_dumps(got, JSON_SORT_KEYS);
		fail_msg("order %d, split after %zu: %s differs\n%s\n%s", order, k, what, a, b);
	}
}

/* True when events [from, to) of evs hold a retraction. */
static bool has_retraction(const struct model_event *evs, size_t from, size_t to)
{
	for (size_t i = from; i < to; i++)
		if (strcmp(evs[i].type, "event.retracted") == 0)
			return true;
	return false;
}

/*
 * The 200 random orders of the property above, their events in walk
 * order, split after every event: the walk saved after the first part
 * and resumed with the rest (the rest shuffled) gives what the whole fold
 * gives, and the same walk; an order with a retraction is never resumed.
 * Then resumed one event at a time from the first, as interleaved traffic
 * does; and a resume with an event from before the split is refused.
 */
static void test_property_resume(void **state)
{
	uint64_t rng = UINT64_C(20261001);
	static struct evset s;
	static struct gen g;
	int resumed = 0, refused = 0;
	(void)state;

	for (int order = 0; order < 200; order++) {
		struct model_event evs[MAX_EVS], part[MAX_EVS];
		json_t *want, *want_walk, *walk, *got, *next;

		memset(&g, 0, sizeof(g));
		s.n = 0;
		g.rng = &rng;
		g.s = &s;
		g.hour = 24;
		gen_order(&g);
		memcpy(evs, s.ev, s.n * sizeof(evs[0]));
		qsort(evs, s.n, sizeof(evs[0]), walk_order);
		memcpy(part, evs, s.n * sizeof(evs[0]));
		want = model_fold_save(part, s.n, &rules, &want_walk);
		assert_true((want_walk == NULL) == has_retraction(evs, 0, s.n));

		for (size_t k = 1; k < s.n; k++) {
			memcpy(part, evs, k * sizeof(evs[0]));
			json_t *st = model_fold_save(part, k, &rules, &walk);
			if (has_retraction(evs, 0, k)) {
				assert_null(walk);
				json_decref(st);
				continue;
			}
			assert_non_null(walk);
			walk = round_trip(walk);
			st = round_trip(st);
			memcpy(part, evs + k, (s.n - k) * sizeof(evs[0]));
			for (size_t i = s.n - k - 1; i > 0; i--) {
				size_t j = (size_t)rnd(&rng, (int)i + 1);
				struct model_event t = part[i];
				part[i] = part[j];
				part[j] = t;
			}
			got = model_fold_from(st, walk, part, s.n - k, &rules, &next);
			if (has_retraction(evs, k, s.n)) {
				assert_null(got);
				assert_null(next);
				refused++;
			} else {
				json_t *view = resumed_view(want, evs, k, s.n);
				assert_non_null(got);
				expect_json_equal(view, got, "the read model", order, k);
				json_decref(view);
				expect_json_equal(want_walk, next, "the walk", order, k);
				resumed++;
			}
			json_decref(got);
			json_decref(next);
			/* An event already walked, or one from before the split. */
			part[0] = evs[k - 1 - (size_t)rnd(&rng, (int)k)];
			got = model_fold_from(st, walk, part, 1, &rules, &next);
			assert_null(got);
			assert_null(next);
			json_decref(walk);
			json_decref(st);
		}

		/* One event at a time. */
		if (want_walk != NULL) {
			memcpy(part, evs, sizeof(evs[0]));
			got = model_fold_save(part, 1, &rules, &walk);
			for (size_t k = 1; k < s.n; k++) {
				json_t *st = round_trip(got);
				walk = round_trip(walk);
				part[0] = evs[k];
				got = model_fold_from(st, walk, part, 1, &rules, &next);
				assert_non_null(got);
				json_decref(walk);
				json_decref(st);
				walk = next;
			}
			json_t *view = resumed_view(want, evs, s.n - 1, s.n);
			expect_json_equal(view, got, "the read model, an event at a time", order,
			                  0);
			json_decref(view);
			expect_json_equal(want_walk, walk, "the walk, an event at a time", order,
			                  0);
			json_decref(got);
			json_decref(walk);
		}
		json_decref(want);
		json_decref(want_walk);
		evset_clear(&s);
	}
	/* Both paths must be taken often, or the property says little. */
	assert_true(resumed > 500);
	assert_true(refused > 500);
}

/* Set path's last member (a "/"-separated path of object keys and array indexes) to v. */
static void set_at(json_t *root, const char *path, json_t *v)
{
	char buf[128], *save = NULL, *key, *next;
	json_t *at = root;

	snprintf(buf, sizeof(buf), "%s", path);
	key = strtok_r(buf, "/", &save);
	while ((next = strtok_r(NULL, "/", &save)) != NULL) {
		at = json_is_array(at) ? json_array_get(at, (size_t)atoi(key))
		                       : json_object_get(at, key);
		assert_non_null(at);
		key = next;
	}
	if (json_is_array(at))
		assert_int_equal(json_array_set_new(at, (size_t)atoi(key), v), 0);
	else
		assert_int_equal(json_object_set_new(at, key, v), 0);
}

/* A state or a walk model_fold_from() cannot read is refused, whatever is wrong with it. */
static void test_resume_refuses_bad_walks(void **state)
{
	static const struct {
		bool in_walk;
		const char *path, *value;
	} bad[] = {
	    {true, "v", "2"},
	    {true, "n", "0"},
	    {true, "last", "[0]"},
	    {true, "ships", "[]"},
	    {true, "ships/SH-1", "[null, null]"},
	    {true, "ships/SH-1/1", "[1, 2]"},
	    {true, "ships/SH-1/0", "\"soon\""},
	    {true, "ships/SH-2", "[null, null, null]"},
	    {true, "docs", "{}"},
	    {true, "docs/0", "[\"d\", 1]"},
	    {true, "hs", "null"},
	    {false, "shipments", "{}"},
	    {false, "shipments/0/milestone", "\"sailing\""},
	    {false, "shipments/0/eta", "7"},
	    {false, "order/status", "null"},
	};
	struct evset s = {.n = 0};
	struct model_event evs[4];
	json_t *walk, *next, *st;
	(void)state;

	add(&s, "order.created", "a", 24, NULL, COFFEE);
	add(&s, "shipment.booked", "b", 25, "SH-1", "\"mode\":\"air\"");
	add(&s, "document.issued", "c", 26, NULL, "\"document\":\"phytosanitary\"");
	add(&s, "shipment.departed", "d", 27, "SH-1", NULL);
	memcpy(evs, s.ev, sizeof(evs));
	st = model_fold_save(evs, 3, &rules, &walk);
	assert_non_null(walk);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		json_t *w = json_deep_copy(walk), *t = json_deep_copy(st);
		set_at(bad[i].in_walk ? w : t, bad[i].path,
		       json_loads(bad[i].value, JSON_DECODE_ANY, NULL));
		next = (json_t *)1;
		evs[0] = s.ev[3];
		json_t *res = model_fold_from(t, w, evs, 1, &rules, &next);
		if (res != NULL)
			fail_msg("case %zu (%s = %s) was not refused", i, bad[i].path,
			         bad[i].value);
		assert_null(next);
		json_decref(w);
		json_decref(t);
	}
	/* The same event with the walk as saved. */
	evs[0] = s.ev[3];
	json_t *res = model_fold_from(st, walk, evs, 1, &rules, &next);
	assert_non_null(res);
	assert_string_equal(order_str(res, "status"), "in_transit");
	assert_int_equal(json_integer_value(json_object_get(next, "n")), 4);
	json_decref(res);
	json_decref(next);
	json_decref(walk);
	json_decref(st);
	evset_clear(&s);
}

/* Read a whole text file under the source tree; caller frees. */
static char *slurp(const char *rel)
{
	char path[1024];
	FILE *fp;
	char *buf;
	long len;

	snprintf(path, sizeof(path), "%s/%s", OT_SOURCE_ROOT, rel);
	fp = fopen(path, "rb");
	if (fp == NULL)
		fail_msg("cannot open %s", path);
	assert_int_equal(fseek(fp, 0, SEEK_END), 0);
	len = ftell(fp);
	assert_true(len >= 0);
	rewind(fp);
	buf = malloc((size_t)len + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)len, fp), (size_t)len);
	buf[len] = '\0';
	fclose(fp);
	return buf;
}

/* Parse every line of a scenario file into per-order sets; returns how many orders. */
static size_t load_scenario(const char *rel, struct evset *sets, const char **names,
                            size_t max_orders)
{
	char *text = slurp(rel);
	size_t n_orders = 0, lineno = 0;
	char *save = NULL;

	for (char *line = strtok_r(text, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		struct evset one = {.n = 0};
		const char *order;
		size_t k;

		lineno++;
		add_line(&one, line);
		order = json_string_value(json_object_get(one.ev[0].body, "order"));
		/* Ids are unique per exporter, so within the file. */
		for (k = 0; k < n_orders; k++)
			for (size_t i = 0; i < sets[k].n; i++)
				if (strcmp(sets[k].ev[i].id, one.ev[0].id) == 0)
					fail_msg("%s:%zu: id %s used twice", rel, lineno,
					         one.ev[0].id);
		for (k = 0; k < n_orders; k++)
			if (strcmp(names[k], order) == 0)
				break;
		if (k == n_orders) {
			assert_true(n_orders < max_orders);
			names[n_orders++] = order;
		}
		sets[k].ev[sets[k].n++] = one.ev[0];
	}
	free(text);
	return n_orders;
}

/* The set of the order named order. */
static struct evset *set_of(struct evset *sets, const char **names, size_t n, const char *order)
{
	for (size_t k = 0; k < n; k++)
		if (strcmp(names[k], order) == 0)
			return &sets[k];
	fail_msg("scenario has no order %s", order);
	return NULL;
}

/* The coffee cooperative: one order delivered after an import hold, one in transit. */
static void test_scenario_kivu_coffee(void **state)
{
	static struct evset sets[4];
	const char *names[4];
	size_t n;
	json_t *res;
	(void)state;

	n = load_scenario("tests/data/scenario-kivu-coffee.jsonl", sets, names, 4);
	assert_int_equal(n, 2);

	res = fold(set_of(sets, names, n, "KVH-2026-0142"), &rules);
	expect_order_status(res, "delivered");
	expect_anomalies(res, "");
	expect_str(order_str(res, "channel"), "Tmall Global", "channel");
	expect_ship(res, "KVH-0142-A", "delivered", "delivered", NULL, NULL);
	expect_str(ship_str(res, "KVH-0142-A", "last_location"), "CNHGH", "last_location");
	expect_str(ship_str(res, "KVH-0142-A", "mode"), "air", "mode");
	assert_int_equal(json_array_size(json_object_get(res, "documents")), 5);
	json_decref(res);

	res = fold(set_of(sets, names, n, "KVH-2026-0157"), &rules);
	expect_order_status(res, "in_transit");
	expect_anomalies(res, "");
	expect_ship(res, "KVH-0157-A", "departed", "departed", NULL, NULL);
	expect_str(ship_str(res, "KVH-0157-A", "eta"), "2026-11-08T12:00:00+08:00", "eta");
	expect_str(ship_str(res, "KVH-0157-A", "last_location"), "AEDXB", "last_location");
	expect_str(ship_str(res, "KVH-0157-A", "last_event_at"), "2026-11-03T11:00:00+04:00",
	           "last_event_at");
	json_decref(res);
	for (size_t k = 0; k < n; k++)
		evset_clear(&sets[k]);
}

/* The chili exporter: four store groups, a hold, a delay, a late certificate, a correction. */
static void test_scenario_akagera_chili(void **state)
{
	static struct evset sets[4];
	const char *names[4];
	size_t n;
	json_t *res;
	(void)state;

	n = load_scenario("tests/data/scenario-akagera-chili.jsonl", sets, names, 4);
	assert_int_equal(n, 1);
	res = fold(set_of(sets, names, n, "AKC-HEMA-2026-031"), &rules);
	expect_order_status(res, "partially_delivered");
	expect_anomalies(res, "missing_documents");
	expect_str(order_str(res, "buyer"), "Hema Fresh", "buyer");
	expect_str(order_str(res, "updated_at"), "2026-11-12T16:00:00+08:00", "updated_at");
	/* Still held at import customs in Shanghai. */
	expect_ship(res, "AKC-031-SH1", "customs_hold", "arrived", "import", NULL);
	expect_str(ship_str(res, "AKC-031-SH1", "last_location"), "CNSHA", "last_location");
	/* Its arrival was retracted (sent for the wrong shipment): still delayed in Mombasa. */
	expect_ship(res, "AKC-031-SH2", "exception", "departed", NULL, "delayed");
	expect_str(ship_str(res, "AKC-031-SH2", "eta"), "2026-11-24T08:00:00+08:00", "eta");
	expect_str(ship_str(res, "AKC-031-SH2", "last_location"), "KEMBA", "last_location");
	/* Departed before its phytosanitary certificate: the anomaly above. */
	expect_ship(res, "AKC-031-SH3", "import_cleared", "import_cleared", NULL, NULL);
	expect_ship(res, "AKC-031-SH4", "delivered", "delivered", NULL, NULL);
	expect_str(ship_str(res, "AKC-031-SH4", "consignee"),
	           "Hema Fresh Shanghai, Xuhui store group", "consignee");
	json_decref(res);

	/* Without SH3's story the documents were all in time. */
	struct evset *s = set_of(sets, names, n, "AKC-HEMA-2026-031");
	struct evset rest = {.n = 0};
	for (size_t i = 0; i < s->n; i++) {
		const char *ship = json_string_value(json_object_get(s->ev[i].body, "shipment"));
		if (ship == NULL || strcmp(ship, "AKC-031-SH3") != 0)
			rest.ev[rest.n++] = s->ev[i];
	}
	res = fold(&rest, &rules);
	expect_anomalies(res, "");
	json_decref(res);
	evset_clear(s);
}

/* Every event example in docs/PROTOCOL.md passes the validator, and every type has one. */
static void test_protocol_examples(void **state)
{
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
	bool seen[sizeof(types) / sizeof(types[0])] = {false};
	char *text = slurp("docs/PROTOCOL.md");
	bool in_fence = false;
	int checked = 0;
	char *save = NULL;
	(void)state;

	for (char *line = strtok_r(text, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "```", 3) == 0) {
			in_fence = !in_fence && strcmp(line, "```jsonl") == 0;
			continue;
		}
		if (!in_fence)
			continue;
		json_t *j = json_loads(line, 0, NULL);
		const char *type = json_string_value(json_object_get(j, "type"));
		if (type != NULL &&
		    (strncmp(type, "order.", 6) == 0 || strncmp(type, "shipment.", 9) == 0 ||
		     strncmp(type, "document.", 9) == 0 || strncmp(type, "event.", 6) == 0)) {
			struct request rq;
			struct request_error err;
			if (!request_parse(line, strlen(line), now_ms(), &rq, &err))
				fail_msg("PROTOCOL.md example refused: %s: %s\n%s", err.code,
				         err.message, line);
			for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
				seen[i] = seen[i] || strcmp(types[i], type) == 0;
			request_clear(&rq);
			checked++;
		}
		json_decref(j);
	}
	free(text);
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (!seen[i])
			fail_msg("PROTOCOL.md has no ```jsonl example of %s", types[i]);
	assert_true(checked >= 19);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_rank),
	    cmocka_unit_test(test_empty),
	    cmocka_unit_test(test_shape),
	    cmocka_unit_test(test_order_statuses),
	    cmocka_unit_test(test_cancelled_after_departure),
	    cmocka_unit_test(test_status_back),
	    cmocka_unit_test(test_document_not_shipment_event),
	    cmocka_unit_test(test_shipment_statuses),
	    cmocka_unit_test(test_shipment_fields),
	    cmocka_unit_test(test_order_fields),
	    cmocka_unit_test(test_documents),
	    cmocka_unit_test(test_missing_documents),
	    cmocka_unit_test(test_retraction),
	    cmocka_unit_test(test_ties),
	    cmocka_unit_test(test_duplicates),
	    cmocka_unit_test(test_lenient_members),
	    cmocka_unit_test(test_shipments_sorted),
	    cmocka_unit_test(test_lenient),
	    cmocka_unit_test(test_property_order_independent),
	    cmocka_unit_test(test_property_resume),
	    cmocka_unit_test(test_resume_refuses_bad_walks),
	    cmocka_unit_test(test_scenario_kivu_coffee),
	    cmocka_unit_test(test_scenario_akagera_chili),
	    cmocka_unit_test(test_protocol_examples),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
