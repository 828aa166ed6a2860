/*
 * test_notify.c - unit tests for lib/notify.c: diffs, signatures, backoff.
 *
 * Most diff tests fold real events: each is written as a protocol line,
 * accepted by request_parse() and folded by model_fold(), and the events
 * added since the last fold are the causes, as the daemon passes them.
 * Events are dated in whole hours after 2026-10-01T00:00:00Z; the server
 * clock is fixed at 2026-12-01T00:00:00Z.  The attribution and ordering
 * tests write their states by hand instead, to pin one rule each.
 *
 * The signature vectors were computed outside this code with openssl
 * dgst (the commands are next to them), so the test does not check the
 * implementation against itself.
 */
#include <limits.h>
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
#include "notify.h"
#include "request.h"
#include "validate.h"

#define MAX_EVS  64
#define EXPORTER "kivu-hills"
#define ORDER    "PO-1"

/* A set of accepted events, each also as a cause; the set owns their JSON trees. */
struct evset {
	struct model_event ev[MAX_EVS];
	struct notify_cause cause[MAX_EVS];
	size_t n;
};

static const char *coffee_docs[] = {"phytosanitary", "certificate_of_origin"};
/* documents.required for coffee (HS 0901), as the shipped config has it. */
static const struct model_doc_rule doc_rules[] = {{"0901", coffee_docs, 2}};
static const struct model_rules rules = {doc_rules, 1};

/* The members of an order.created for one line of coffee. */
#define COFFEE                                                                                     \
	"\"buyer\":\"Tmall Global store: Kivu Hills Coffee\",\"channel\":\"Tmall Global\","        \
	"\"origin\":\"RW\",\"destination\":\"CN\",\"currency\":\"USD\",\"lines\":[{\"sku\":"       \
	"\"KHC-1\",\"product\":\"Washed Arabica\",\"hs_code\":\"090111\",\"quantity\":240,"        \
	"\"unit\":\"bag\",\"unit_price\":14.5}]"

/* The members every diff item has, and no others. */
static const char *const item_members[] = {"kind",  "from",  "to",       "exporter",
                                           "order", "event", "shipment", "occurred_at"};

/* The server clock of these tests: 2026-12-01T00:00:00Z. */
static int64_t now_ms(void)
{
	int64_t ms;

	assert_null(validate_rfc3339("2026-12-01T00:00:00Z", &ms, NULL));
	return ms;
}

/* Add an event of order PO-1 at hour h (UTC); shipment and extra members may be NULL. */
static void add(struct evset *s, const char *type, const char *id, int h, const char *shipment,
                const char *extra)
{
	char line[2048];
	struct request rq;
	struct request_error err;
	int n;

	assert_true(s->n < MAX_EVS);
	assert_true(h >= 0 && h < 24 * 30);
	n = snprintf(line, sizeof(line),
	             "{\"type\":\"%s\",\"id\":\"%s\",\"occurred_at\":\"2026-10-%02dT%02d:00:00Z\","
	             "\"order\":\"" ORDER "\"%s%s%s%s%s}",
	             type, id, 1 + h / 24, h % 24, shipment ? ",\"shipment\":\"" : "",
	             shipment ? shipment : "", shipment ? "\"" : "", extra ? "," : "",
	             extra ? extra : "");
	assert_true(n > 0 && (size_t)n < sizeof(line));
	if (!request_parse(line, (size_t)n, now_ms(), &rq, &err))
		fail_msg("refused: %s: %s\n%s", err.code, err.message, line);
	assert_int_equal(rq.kind, REQ_EVENT);
	s->ev[s->n].id = rq.u.event.id;
	s->ev[s->n].type = rq.u.event.type;
	s->ev[s->n].occurred_ms = rq.u.event.occurred_ms;
	s->ev[s->n].body = rq.root; /* the set keeps the tree and the strings in it */
	s->cause[s->n].id = rq.u.event.id;
	s->cause[s->n].shipment = rq.u.event.shipment;
	s->cause[s->n].occurred_at = rq.u.event.occurred_at;
	s->cause[s->n].occurred_ms = rq.u.event.occurred_ms;
	s->cause[s->n].type = rq.u.event.type;
	s->n++;
}

/* Release the trees of a set. */
static void evset_clear(struct evset *s)
{
	for (size_t i = 0; i < s->n; i++)
		json_decref(s->ev[i].body);
	s->n = 0;
}

/* Fold a copy of the set (the fold reorders its input), with rules r. */
static json_t *fold(const struct evset *s, const struct model_rules *r)
{
	struct model_event copy[MAX_EVS];
	json_t *res;

	memcpy(copy, s->ev, s->n * sizeof(copy[0]));
	res = model_fold(copy, s->n, r);
	assert_non_null(res);
	return res;
}

/* Diff was against now with the events of s from index first on as causes; a new array. */
static json_t *diff_since(const json_t *was, const json_t *now, const struct evset *s, size_t first)
{
	json_t *out = json_array();
	size_t n;

	assert_true(first <= s->n);
	n = notify_diff(was, now, EXPORTER, ORDER, &s->cause[first], s->n - first, out);
	assert_int_equal(n, json_array_size(out));
	return out;
}

/* Parse JSON the test wrote, failing with the parser's message. */
static json_t *load(const char *text)
{
	json_error_t je;
	json_t *v = json_loads(text, 0, &je);

	if (v == NULL)
		fail_msg("bad JSON in test: %s: %s", je.text, text);
	return v;
}

/* Compare two optional strings, with a readable failure. */
static void expect_str(const char *got, const char *want, const char *what, size_t i)
{
	if (got == NULL && want == NULL)
		return;
	if (got == NULL || want == NULL || strcmp(got, want) != 0)
		fail_msg("item %zu %s: got %s, wanted %s", i, what, got ? got : "null",
		         want ? want : "null");
}

/* A member of an item as an optional string; it must be a string or null. */
static const char *item_str(const json_t *item, const char *key)
{
	const json_t *v = json_object_get(item, key);

	if (v == NULL)
		fail_msg("item has no member %s", key);
	if (!json_is_null(v) && !json_is_string(v))
		fail_msg("item member %s is neither a string nor null", key);
	return json_string_value(v);
}

/* Item i of items must be exactly this (exporter and order are the tests' own). */
static void expect_item(const json_t *items, size_t i, const char *kind, const char *shipment,
                        const char *from, const char *to, const char *event,
                        const char *occurred_at)
{
	const json_t *item = json_array_get(items, i);

	if (item == NULL) {
		char *dump = json_dumps(items, JSON_COMPACT);
		fail_msg("no item %zu in %s", i, dump);
	}
	assert_int_equal(json_object_size(item), 8);
	expect_str(item_str(item, "kind"), kind, "kind", i);
	expect_str(item_str(item, "exporter"), EXPORTER, "exporter", i);
	expect_str(item_str(item, "order"), ORDER, "order", i);
	expect_str(item_str(item, "shipment"), shipment, "shipment", i);
	expect_str(item_str(item, "from"), from, "from", i);
	expect_str(item_str(item, "to"), to, "to", i);
	expect_str(item_str(item, "event"), event, "event", i);
	expect_str(item_str(item, "occurred_at"), occurred_at, "occurred_at", i);
}

/* items must hold exactly n items, with a readable failure. */
static void expect_count(const json_t *items, size_t n)
{
	if (json_array_size(items) != n) {
		char *dump = json_dumps(items, JSON_COMPACT);
		fail_msg("wanted %zu items, got %zu: %s", n, json_array_size(items), dump);
	}
}

/* An order seen for the first time: its status from null, and nothing else. */
static void test_new_order(void **state)
{
	struct evset s = {.n = 0};
	json_t *now, *items;
	(void)state;

	add(&s, "order.created", "o1", 0, NULL, COFFEE);
	now = fold(&s, &rules);
	items = diff_since(NULL, now, &s, 0);
	expect_count(items, 1);
	expect_item(items, 0, "order.status", NULL, NULL, "created", "o1", "2026-10-01T00:00:00Z");
	json_decref(items);
	json_decref(now);

	/* Shipment events before order.created: the shipment and a pending order. */
	evset_clear(&s);
	add(&s, "shipment.booked", "b1", 3, "A", "\"mode\":\"air\"");
	now = fold(&s, &rules);
	items = diff_since(NULL, now, &s, 0);
	expect_count(items, 2);
	expect_item(items, 0, "shipment.status", "A", NULL, "booked", "b1", "2026-10-01T03:00:00Z");
	expect_item(items, 1, "order.status", NULL, NULL, "pending", "b1", "2026-10-01T03:00:00Z");
	json_decref(items);
	json_decref(now);
	evset_clear(&s);
}

/* created -> confirmed is one order.status item, attributed to the confirmation. */
static void test_order_confirmed(void **state)
{
	struct evset s = {.n = 0};
	json_t *was, *now, *items;
	size_t mark;
	(void)state;

	add(&s, "order.created", "o1", 0, NULL, COFFEE);
	was = fold(&s, &rules);
	mark = s.n;
	add(&s, "order.confirmed", "o2", 1, NULL, NULL);
	now = fold(&s, &rules);
	items = diff_since(was, now, &s, mark);
	expect_count(items, 1);
	expect_item(items, 0, "order.status", NULL, "created", "confirmed", "o2",
	            "2026-10-01T01:00:00Z");
	json_decref(items);
	json_decref(was);
	json_decref(now);
	evset_clear(&s);
}

/* A new shipment comes from null; booked -> departed moves the order too. */
static void test_shipment_departed(void **state)
{
	struct evset s = {.n = 0};
	json_t *was, *now, *items;
	size_t mark;
	(void)state;

	add(&s, "order.created", "o1", 0, NULL, COFFEE);
	add(&s, "order.confirmed", "o2", 1, NULL, NULL);
	was = fold(&s, NULL);
	mark = s.n;
	add(&s, "shipment.booked", "b1", 2, "A", "\"mode\":\"sea\",\"carrier\":\"Maersk\"");
	now = fold(&s, NULL);
	items = diff_since(was, now, &s, mark);
	expect_count(items, 2);
	expect_item(items, 0, "shipment.status", "A", NULL, "booked", "b1", "2026-10-01T02:00:00Z");
	expect_item(items, 1, "order.status", NULL, "confirmed", "booked", "b1",
	            "2026-10-01T02:00:00Z");
	json_decref(items);
	json_decref(was);

	was = now;
	mark = s.n;
	add(&s, "shipment.departed", "d1", 5, "A", "\"location\":{\"code\":\"RWKGL\"}");
	now = fold(&s, NULL);
	items = diff_since(was, now, &s, mark);
	expect_count(items, 2);
	expect_item(items, 0, "shipment.status", "A", "booked", "departed", "d1",
	            "2026-10-01T05:00:00Z");
	expect_item(items, 1, "order.status", NULL, "booked", "in_transit", "d1",
	            "2026-10-01T05:00:00Z");
	json_decref(items);
	json_decref(was);
	json_decref(now);
	evset_clear(&s);
}

/* Of two shipments only the one that changed gets an item. */
static void test_two_shipments(void **state)
{
	struct evset s = {.n = 0};
	json_t *was, *now, *items;
	size_t mark;
	(void)state;

	add(&s, "order.created", "o1", 0, NULL, COFFEE);
	add(&s, "shipment.booked", "b1", 1, "A", "\"mode\":\"air\"");
	add(&s, "shipment.booked", "b2", 1, "B", "\"mode\":\"sea\"");
	was = fold(&s, NULL);
	mark = s.n;
	add(&s, "shipment.picked_up", "p2", 4, "B", NULL);
	now = fold(&s, NULL);
	items = diff_since(was, now, &s, mark);
	expect_count(items, 1);
	expect_item(items, 0, "shipment.status", "B", "booked", "picked_up", "p2",
	            "2026-10-01T04:00:00Z");
	json_decref(items);
	json_decref(was);

	/* B departs: B's status and the order's, still nothing about A. */
	was = now;
	mark = s.n;
	add(&s, "shipment.departed", "d2", 6, "B", NULL);
	now = fold(&s, NULL);
	items = diff_since(was, now, &s, mark);
	expect_count(items, 2);
	expect_item(items, 0, "shipment.status", "B", "picked_up", "departed", "d2",
	            "2026-10-01T06:00:00Z");
	expect_item(items, 1, "order.status", NULL, "booked", "in_transit", "d2",
	            "2026-10-01T06:00:00Z");
	json_decref(items);
	json_decref(was);
	json_decref(now);
	evset_clear(&s);
}

/* eta: set from null, changed, unchanged, and rewritten with another offset. */
static void test_eta(void **state)
{
	struct evset s = {.n = 0};
	json_t *was, *now, *items;
	size_t mark;
	(void)state;

	add(&s, "order.created", "o1", 0, NULL, COFFEE);
	add(&s, "shipment.booked", "b1", 1, "A", "\"mode\":\"sea\"");
	was = fold(&s, NULL);

	/* Set: from null. */
	mark = s.n;
	add(&s, "shipment.eta_changed", "e1", 2, "A", "\"eta\":\"2026-11-10T08:00:00+08:00\"");
	now = fold(&s, NULL);
	items = diff_since(was, now, &s, mark);
	expect_count(items, 1);
	expect_item(items, 0, "shipment.eta", "A", NULL, "2026-11-10T08:00:00+08:00", "e1",
	            "2026-10-01T02:00:00Z");
	json_decref(items);
	json_decref(was);

	/* Changed. */
	was = now;
	mark = s.n;
	add(&s, "shipment.eta_changed", "e2", 3, "A", "\"eta\":\"2026-11-24T08:00:00+08:00\"");
	now = fold(&s, NULL);
	items = diff_since(was, now, &s, mark);
	expect_count(items, 1);
	expect_item(items, 0, "shipment.eta", "A", "2026-11-10T08:00:00+08:00",
	            "2026-11-24T08:00:00+08:00", "e2", "2026-10-01T03:00:00Z");
	json_decref(items);
	json_decref(was);

	/* Unchanged: the same eta sent again under a new id. */
	was = now;
	mark = s.n;
	add(&s, "shipment.eta_changed", "e3", 4, "A", "\"eta\":\"2026-11-24T08:00:00+08:00\"");
	now = fold(&s, NULL);
	items = diff_since(was, now, &s, mark);
	expect_count(items, 0);
	json_decref(items);
	json_decref(was);

	/* The same instant in UTC is another string: it counts as a change. */
	was = now;
	mark = s.n;
	add(&s, "shipment.eta_changed", "e4", 5, "A", "\"eta\":\"2026-11-24T00:00:00Z\"");
	now = fold(&s, NULL);
	items = diff_since(was, now, &s, mark);
	expect_count(items, 1);
	expect_item(items, 0, "shipment.eta", "A", "2026-11-24T08:00:00+08:00",
	            "2026-11-24T00:00:00Z", "e4", "2026-10-01T05:00:00Z");
	json_decref(items);
	json_decref(was);

	/* A booking with an eta gives both items of the new shipment, status first. */
	was = now;
	mark = s.n;
	add(&s, "shipment.booked", "b2", 6, "B",
	    "\"mode\":\"air\",\"eta\":\"2026-10-09T18:00:00+08:00\"");
	now = fold(&s, NULL);
	items = diff_since(was, now, &s, mark);
	expect_count(items, 2);
	expect_item(items, 0, "shipment.status", "B", NULL, "booked", "b2", "2026-10-01T06:00:00Z");
	expect_item(items, 1, "shipment.eta", "B", NULL, "2026-10-09T18:00:00+08:00", "b2",
	            "2026-10-01T06:00:00Z");
	json_decref(items);
	json_decref(was);
	json_decref(now);
	evset_clear(&s);
}

/* Anomalies added one by one, then all removed by a retraction. */
static void test_anomalies(void **state)
{
	struct evset s = {.n = 0};
	json_t *was, *now, *items;
	size_t mark;
	(void)state;

	add(&s, "order.created", "o1", 0, NULL, COFFEE);
	add(&s, "shipment.booked", "b1", 1, "A", "\"mode\":\"air\"");
	was = fold(&s, &rules);

	/* Departing without the documents coffee needs. */
	mark = s.n;
	add(&s, "shipment.departed", "d1", 3, "A", NULL);
	now = fold(&s, &rules);
	items = diff_since(was, now, &s, mark);
	expect_count(items, 3);
	expect_item(items, 0, "shipment.status", "A", "booked", "departed", "d1",
	            "2026-10-01T03:00:00Z");
	expect_item(items, 1, "order.status", NULL, "booked", "in_transit", "d1",
	            "2026-10-01T03:00:00Z");
	expect_item(items, 2, "order.anomaly", NULL, NULL, "missing_documents", "d1",
	            "2026-10-01T03:00:00Z");
	json_decref(items);
	json_decref(was);

	/* A cancellation after departure adds a word; the status stays. */
	was = now;
	mark = s.n;
	add(&s, "order.cancelled", "c1", 4, NULL, "\"reason\":\"buyer withdrew\"");
	now = fold(&s, &rules);
	items = diff_since(was, now, &s, mark);
	expect_count(items, 1);
	expect_item(items, 0, "order.anomaly", NULL, "missing_documents",
	            "cancelled_after_departure,missing_documents", "c1", "2026-10-01T04:00:00Z");
	json_decref(items);
	json_decref(was);

	/* Retracting the departure removes both words and the order is cancelled. */
	was = now;
	mark = s.n;
	add(&s, "event.retracted", "r1", 5, NULL, "\"retracts\":\"d1\"");
	now = fold(&s, &rules);
	items = diff_since(was, now, &s, mark);
	expect_count(items, 3);
	expect_item(items, 0, "shipment.status", "A", "departed", "booked", "r1",
	            "2026-10-01T05:00:00Z");
	expect_item(items, 1, "order.status", NULL, "in_transit", "cancelled", "r1",
	            "2026-10-01T05:00:00Z");
	expect_item(items, 2, "order.anomaly", NULL, "cancelled_after_departure,missing_documents",
	            NULL, "r1", "2026-10-01T05:00:00Z");
	json_decref(items);
	json_decref(was);
	json_decref(now);
	evset_clear(&s);
}

/* A shipment whose only event is retracted disappears: its status and eta go to null. */
static void test_shipment_disappears(void **state)
{
	struct evset s = {.n = 0};
	json_t *was, *now, *items;
	size_t mark;
	(void)state;

	add(&s, "order.created", "o1", 0, NULL, COFFEE);
	add(&s, "order.confirmed", "o2", 1, NULL, NULL);
	add(&s, "shipment.booked", "b1", 2, "A",
	    "\"mode\":\"sea\",\"eta\":\"2026-11-10T08:00:00+08:00\"");
	was = fold(&s, NULL);
	mark = s.n;
	add(&s, "event.retracted", "r1", 3, NULL, "\"retracts\":\"b1\"");
	now = fold(&s, NULL);
	assert_int_equal(json_array_size(json_object_get(now, "shipments")), 0);
	items = diff_since(was, now, &s, mark);
	expect_count(items, 3);
	expect_item(items, 0, "shipment.status", "A", "booked", NULL, "r1", "2026-10-01T03:00:00Z");
	expect_item(items, 1, "shipment.eta", "A", "2026-11-10T08:00:00+08:00", NULL, "r1",
	            "2026-10-01T03:00:00Z");
	expect_item(items, 2, "order.status", NULL, "booked", "confirmed", "r1",
	            "2026-10-01T03:00:00Z");
	json_decref(items);
	json_decref(was);
	json_decref(now);
	evset_clear(&s);
}

/* Equal states and duplicate events give no item, even with causes. */
static void test_nothing_changed(void **state)
{
	struct evset s = {.n = 0};
	json_t *was, *now, *items;
	size_t mark;
	(void)state;

	add(&s, "order.created", "o1", 0, NULL, COFFEE);
	add(&s, "shipment.booked", "b1", 1, "A",
	    "\"mode\":\"sea\",\"eta\":\"2026-11-10T08:00:00+08:00\"");
	add(&s, "shipment.departed", "d1", 2, "A", NULL);
	was = fold(&s, &rules);

	/* The very same state object on both sides. */
	items = diff_since(was, was, &s, 0);
	expect_count(items, 0);
	json_decref(items);

	/* Every event sent again: the fold drops the repeated ids. */
	mark = s.n;
	add(&s, "order.created", "o1", 0, NULL, COFFEE);
	add(&s, "shipment.booked", "b1", 1, "A",
	    "\"mode\":\"sea\",\"eta\":\"2026-11-10T08:00:00+08:00\"");
	add(&s, "shipment.departed", "d1", 2, "A", NULL);
	now = fold(&s, &rules);
	items = diff_since(was, now, &s, mark);
	expect_count(items, 0);
	json_decref(items);
	json_decref(now);

	/* Equal but separate trees, the way the daemon reads the stored state back. */
	{
		char *text = json_dumps(was, JSON_COMPACT);
		json_t *back = load(text);

		free(text);
		items = diff_since(back, was, &s, 0);
		expect_count(items, 0);
		json_decref(items);
		json_decref(back);
	}
	json_decref(was);
	evset_clear(&s);
}

/* Late events that the fold ranks below what is there change nothing: no item. */
static void test_late_events(void **state)
{
	struct evset s = {.n = 0};
	json_t *was, *now, *items;
	size_t mark;
	(void)state;

	add(&s, "order.created", "o1", 0, NULL, COFFEE);
	add(&s, "order.confirmed", "o2", 1, NULL, NULL);
	add(&s, "shipment.booked", "b1", 2, "A",
	    "\"mode\":\"sea\",\"eta\":\"2026-11-10T08:00:00+08:00\"");
	add(&s, "shipment.eta_changed", "e2", 9, "A", "\"eta\":\"2026-11-24T08:00:00+08:00\"");
	add(&s, "shipment.departed", "d1", 6, "A", NULL);
	add(&s, "shipment.arrived", "a1", 20, "A", NULL);
	was = fold(&s, NULL);

	mark = s.n;
	/* An earlier milestone reported late: arrived implies it already. */
	add(&s, "shipment.picked_up", "p1", 3, "A", NULL);
	/* An eta change dated before the latest one. */
	add(&s, "shipment.eta_changed", "e1", 4, "A", "\"eta\":\"2026-11-12T08:00:00+08:00\"");
	/* A checkpoint: it moves last_location, which is not notified. */
	add(&s, "shipment.checkpoint", "k1", 7, "A", "\"location\":{\"code\":\"KEMBA\"}");
	/* The confirmation sent again under another id. */
	add(&s, "order.confirmed", "o3", 5, NULL, NULL);
	now = fold(&s, NULL);
	assert_false(json_equal(was, now)); /* the read model did change ... */
	items = diff_since(was, now, &s, mark);
	expect_count(items, 0); /* ... but nothing a subscriber is told about */
	json_decref(items);
	json_decref(was);
	json_decref(now);
	evset_clear(&s);
}

/*
 * A document.issued for a shipment, later in the same batch than its
 * departure, changes nothing of the shipment: the departure is the cause.
 * The order's own change goes to the latest event of the order, the document.
 */
static void test_shipment_cause_not_document(void **state)
{
	struct evset s = {.n = 0};
	json_t *was, *now, *items;
	size_t mark;
	(void)state;

	add(&s, "order.created", "o1", 0, NULL, COFFEE);
	add(&s, "shipment.booked", "b1", 2, "S", "\"mode\":\"air\"");
	was = fold(&s, NULL);
	mark = s.n;
	add(&s, "shipment.departed", "d1", 10, "S", NULL);
	add(&s, "document.issued", "doc1", 11, "S", "\"document\":\"phytosanitary\"");
	now = fold(&s, NULL);
	items = diff_since(was, now, &s, mark);
	expect_count(items, 2);
	expect_item(items, 0, "shipment.status", "S", "booked", "departed", "d1",
	            "2026-10-01T10:00:00Z");
	expect_item(items, 1, "order.status", NULL, "booked", "in_transit", "doc1",
	            "2026-10-01T11:00:00Z");
	json_decref(items);
	json_decref(was);
	json_decref(now);
	evset_clear(&s);
}

/* Shipment changes go to that shipment's latest cause, ties broken by the greater id. */
static void test_attribution_shipment(void **state)
{
	json_t *was = load("{\"order\":{\"status\":\"booked\",\"anomalies\":[]},\"shipments\":["
	                   "{\"shipment_ref\":\"A\",\"status\":\"booked\",\"eta\":null},"
	                   "{\"shipment_ref\":\"B\",\"status\":\"booked\",\"eta\":null},"
	                   "{\"shipment_ref\":\"C\",\"status\":\"booked\",\"eta\":null}]}");
	json_t *now = load("{\"order\":{\"status\":\"in_transit\",\"anomalies\":[]},\"shipments\":["
	                   "{\"shipment_ref\":\"A\",\"status\":\"departed\",\"eta\":null},"
	                   "{\"shipment_ref\":\"B\",\"status\":\"departed\",\"eta\":null},"
	                   "{\"shipment_ref\":\"C\",\"status\":\"departed\",\"eta\":null}]}");
	/* A: a later and an earlier event; B: two at the same instant; C: none. */
	const struct notify_cause causes[] = {
	    {"a-2", "A", "2026-10-01T13:00:00+08:00", 5 * 3600000, "shipment.departed"},
	    {"a-9", "A", "2026-10-01T03:00:00Z", 3 * 3600000, "shipment.departed"},
	    {"b-x", "B", "2026-10-01T06:00:00Z", 6 * 3600000, "shipment.departed"},
	    {"b-y", "B", "2026-10-01T06:00:00Z", 6 * 3600000, "shipment.departed"},
	    {"o-1", NULL, "2026-10-01T04:00:00Z", 4 * 3600000, "order.confirmed"},
	};
	json_t *items = json_array();
	(void)state;

	assert_int_equal(notify_diff(was, now, EXPORTER, ORDER, causes, 5, items), 4);
	/* occurred_at is passed on as sent, offset kept. */
	expect_item(items, 0, "shipment.status", "A", "booked", "departed", "a-2",
	            "2026-10-01T13:00:00+08:00");
	expect_item(items, 1, "shipment.status", "B", "booked", "departed", "b-y",
	            "2026-10-01T06:00:00Z");
	/* C has no cause of its own: the order's latest, which is B's tie winner. */
	expect_item(items, 2, "shipment.status", "C", "booked", "departed", "b-y",
	            "2026-10-01T06:00:00Z");
	expect_item(items, 3, "order.status", NULL, "booked", "in_transit", "b-y",
	            "2026-10-01T06:00:00Z");
	json_decref(items);

	/* The tie is broken by id whatever the order of the causes. */
	{
		const struct notify_cause swapped[] = {causes[3], causes[2]};

		items = json_array();
		assert_int_equal(notify_diff(was, now, EXPORTER, ORDER, swapped, 2, items), 4);
		expect_item(items, 1, "shipment.status", "B", "booked", "departed", "b-y",
		            "2026-10-01T06:00:00Z");
		expect_item(items, 0, "shipment.status", "A", "booked", "departed", "b-y",
		            "2026-10-01T06:00:00Z");
		json_decref(items);
	}
	json_decref(was);
	json_decref(now);
}

/* Order changes go to the order's latest cause, of any shipment; no cause gives nulls. */
static void test_attribution_order(void **state)
{
	json_t *was = load("{\"order\":{\"status\":\"booked\",\"anomalies\":[]},\"shipments\":[]}");
	json_t *now = load("{\"order\":{\"status\":\"cancelled\",\"anomalies\":[\"x\"]},"
	                   "\"shipments\":[]}");
	const struct notify_cause causes[] = {
	    {"o-5", NULL, "2026-10-01T05:00:00Z", 5 * 3600000, "order.confirmed"},
	    {"s-7", "A", "2026-10-01T07:00:00Z", 7 * 3600000, "shipment.departed"},
	    {"o-6", NULL, "2026-10-01T06:00:00Z", 6 * 3600000, "order.confirmed"},
	};
	json_t *items = json_array();
	(void)state;

	assert_int_equal(notify_diff(was, now, EXPORTER, ORDER, causes, 3, items), 2);
	expect_item(items, 0, "order.status", NULL, "booked", "cancelled", "s-7",
	            "2026-10-01T07:00:00Z");
	expect_item(items, 1, "order.anomaly", NULL, NULL, "x", "s-7", "2026-10-01T07:00:00Z");
	json_decref(items);

	/* No causes at all, as an empty array or as NULL: event and occurred_at are null. */
	items = json_array();
	assert_int_equal(notify_diff(was, now, EXPORTER, ORDER, causes, 0, items), 2);
	expect_item(items, 0, "order.status", NULL, "booked", "cancelled", NULL, NULL);
	expect_item(items, 1, "order.anomaly", NULL, NULL, "x", NULL, NULL);
	json_decref(items);
	items = json_array();
	assert_int_equal(notify_diff(was, now, EXPORTER, ORDER, NULL, 3, items), 2);
	expect_item(items, 0, "order.status", NULL, "booked", "cancelled", NULL, NULL);
	json_decref(items);

	/* A cause without an id cannot be cited: the next latest is. */
	{
		const struct notify_cause partial[] = {
		    {NULL, NULL, "2026-10-01T09:00:00Z", 9 * 3600000, "order.confirmed"},
		    {"o-5", NULL, "2026-10-01T05:00:00Z", 5 * 3600000, "order.confirmed"},
		};

		items = json_array();
		assert_int_equal(notify_diff(was, now, EXPORTER, ORDER, partial, 2, items), 2);
		expect_item(items, 0, "order.status", NULL, "booked", "cancelled", "o-5",
		            "2026-10-01T05:00:00Z");
		json_decref(items);
	}
	json_decref(was);
	json_decref(now);
}

/* Items come shipments by ref (status, then eta), then order.status, then order.anomaly. */
static void test_item_order(void **state)
{
	/* The new state lists its shipments out of order on purpose. */
	json_t *was = load("{\"order\":{\"status\":\"booked\",\"anomalies\":[]},\"shipments\":["
	                   "{\"shipment_ref\":\"SH-A\",\"status\":\"booked\",\"eta\":null},"
	                   "{\"shipment_ref\":\"SH-C\",\"status\":\"booked\",\"eta\":\"e1\"}]}");
	json_t *now =
	    load("{\"order\":{\"status\":\"in_transit\",\"anomalies\":[\"missing_documents\"]},"
	         "\"shipments\":["
	         "{\"shipment_ref\":\"SH-C\",\"status\":\"departed\",\"eta\":\"e1\"},"
	         "{\"shipment_ref\":\"SH-B\",\"status\":\"booked\",\"eta\":\"e2\"},"
	         "{\"shipment_ref\":\"SH-A\",\"status\":\"picked_up\",\"eta\":\"e3\"}]}");
	json_t *items = json_array();
	(void)state;

	/* Appended after what out holds already. */
	json_array_append_new(items, json_string("earlier"));
	assert_int_equal(notify_diff(was, now, EXPORTER, ORDER, NULL, 0, items), 7);
	expect_count(items, 8);
	expect_str(json_string_value(json_array_get(items, 0)), "earlier", "first", 0);
	expect_item(items, 1, "shipment.status", "SH-A", "booked", "picked_up", NULL, NULL);
	expect_item(items, 2, "shipment.eta", "SH-A", NULL, "e3", NULL, NULL);
	expect_item(items, 3, "shipment.status", "SH-B", NULL, "booked", NULL, NULL);
	expect_item(items, 4, "shipment.eta", "SH-B", NULL, "e2", NULL, NULL);
	expect_item(items, 5, "shipment.status", "SH-C", "booked", "departed", NULL, NULL);
	expect_item(items, 6, "order.status", NULL, "booked", "in_transit", NULL, NULL);
	expect_item(items, 7, "order.anomaly", NULL, NULL, "missing_documents", NULL, NULL);
	json_decref(items);
	json_decref(was);
	json_decref(now);
}

/* Every item has exactly the eight wire members; shipment is null only for order kinds. */
static void test_item_members(void **state)
{
	struct evset s = {.n = 0};
	json_t *now, *items;
	const json_t *item;
	size_t i;
	(void)state;

	add(&s, "order.created", "o1", 0, NULL, COFFEE);
	add(&s, "shipment.booked", "b1", 1, "A",
	    "\"mode\":\"air\",\"eta\":\"2026-10-09T18:00:00+08:00\"");
	add(&s, "shipment.departed", "d1", 2, "A", NULL);
	now = fold(&s, &rules);
	items = diff_since(NULL, now, &s, 0);
	/* shipment.status, shipment.eta, order.status, order.anomaly: one of each kind. */
	expect_count(items, 4);
	json_array_foreach(items, i, item)
	{
		const char *key;
		const json_t *v;
		const char *kind = item_str(item, "kind");

		assert_int_equal(json_object_size(item), 8);
		json_object_foreach((json_t *)item, key, v)
		{
			bool known = false;

			for (size_t k = 0; k < 8; k++)
				known = known || strcmp(key, item_members[k]) == 0;
			if (!known)
				fail_msg("item %zu has an extra member %s", i, key);
			assert_true(json_is_string(v) || json_is_null(v));
		}
		assert_non_null(kind);
		if (strncmp(kind, "order.", 6) == 0)
			assert_true(json_is_null(json_object_get(item, "shipment")));
		else
			assert_true(json_is_string(json_object_get(item, "shipment")));
	}
	expect_item(items, 0, "shipment.status", "A", NULL, "departed", "d1",
	            "2026-10-01T02:00:00Z");
	expect_item(items, 1, "shipment.eta", "A", NULL, "2026-10-09T18:00:00+08:00", "d1",
	            "2026-10-01T02:00:00Z");
	expect_item(items, 2, "order.status", NULL, NULL, "in_transit", "d1",
	            "2026-10-01T02:00:00Z");
	expect_item(items, 3, "order.anomaly", NULL, NULL, "missing_documents", "d1",
	            "2026-10-01T02:00:00Z");
	json_decref(items);
	json_decref(now);
	evset_clear(&s);
}

/* Anomalies compare as a set: order in the array does not matter; words are sorted. */
static void test_anomaly_set(void **state)
{
	json_t *a =
	    load("{\"order\":{\"status\":\"in_transit\",\"anomalies\":"
	         "[\"missing_documents\",\"cancelled_after_departure\"]},\"shipments\":[]}");
	json_t *b =
	    load("{\"order\":{\"status\":\"in_transit\",\"anomalies\":"
	         "[\"cancelled_after_departure\",\"missing_documents\"]},\"shipments\":[]}");
	json_t *c =
	    load("{\"order\":{\"status\":\"in_transit\",\"anomalies\":[\"missing_documents\"]},"
	         "\"shipments\":[]}");
	json_t *items = json_array();
	(void)state;

	assert_int_equal(notify_diff(a, b, EXPORTER, ORDER, NULL, 0, items), 0);
	assert_int_equal(notify_diff(c, a, EXPORTER, ORDER, NULL, 0, items), 1);
	expect_item(items, 0, "order.anomaly", NULL, "missing_documents",
	            "cancelled_after_departure,missing_documents", NULL, NULL);
	json_decref(items);
	json_decref(a);
	json_decref(b);
	json_decref(c);
}

/*
 * States that model_fold() never makes are read leniently: a shipment
 * without a string ref and an anomaly that is not a string are skipped,
 * and a state that repeats a ref is read by its first entry.
 */
static void test_malformed_states(void **state)
{
	json_t *a =
	    load("{\"order\":{\"status\":\"booked\",\"anomalies\":[7,\"missing_documents\"]},"
	         "\"shipments\":[{\"status\":\"departed\"},{\"shipment_ref\":5,\"status\":"
	         "\"departed\"},{\"shipment_ref\":\"A\",\"status\":\"booked\"}]}");
	json_t *b = load("{\"order\":{\"status\":\"booked\",\"anomalies\":[\"missing_documents\"]},"
	                 "\"shipments\":[{\"shipment_ref\":\"A\",\"status\":\"booked\"}]}");
	json_t *twice =
	    load("{\"order\":{\"status\":\"booked\",\"anomalies\":[\"missing_documents\"]},"
	         "\"shipments\":[{\"shipment_ref\":\"A\",\"status\":\"booked\"},{\"shipment_ref\":"
	         "\"A\",\"status\":\"departed\"}]}");
	json_t *items = json_array();
	(void)state;

	assert_int_equal(notify_diff(a, b, EXPORTER, ORDER, NULL, 0, items), 0);
	assert_int_equal(notify_diff(b, a, EXPORTER, ORDER, NULL, 0, items), 0);
	assert_int_equal(notify_diff(b, twice, EXPORTER, ORDER, NULL, 0, items), 0);
	assert_int_equal(notify_diff(twice, b, EXPORTER, ORDER, NULL, 0, items), 0);
	expect_count(items, 0);
	json_decref(items);
	json_decref(a);
	json_decref(b);
	json_decref(twice);
}

/* A cause whose type is not known (NULL) may have moved the shipment it names. */
static void test_cause_without_type(void **state)
{
	json_t *was = load("{\"order\":{\"status\":\"booked\",\"anomalies\":[]},"
	                   "\"shipments\":[{\"shipment_ref\":\"S\",\"status\":\"booked\"}]}");
	json_t *now = load("{\"order\":{\"status\":\"in_transit\",\"anomalies\":[]},"
	                   "\"shipments\":[{\"shipment_ref\":\"S\",\"status\":\"departed\"}]}");
	const struct notify_cause causes[] = {
	    {"d1", "S", "2026-10-01T10:00:00Z", 10, NULL},
	    {"x1", NULL, "2026-10-01T11:00:00Z", 11, "order.confirmed"},
	};
	json_t *items = json_array();
	(void)state;

	assert_int_equal(notify_diff(was, now, EXPORTER, ORDER, causes, 2, items), 2);
	expect_item(items, 0, "shipment.status", "S", "booked", "departed", "d1",
	            "2026-10-01T10:00:00Z");
	expect_item(items, 1, "order.status", NULL, "booked", "in_transit", "x1",
	            "2026-10-01T11:00:00Z");
	json_decref(items);
	json_decref(was);
	json_decref(now);
}

/* out must be an array; anything else gets nothing. */
static void test_out_not_array(void **state)
{
	json_t *now =
	    load("{\"order\":{\"status\":\"created\",\"anomalies\":[]},\"shipments\":[]}");
	json_t *obj = json_object();
	(void)state;

	assert_int_equal(notify_diff(NULL, now, EXPORTER, ORDER, NULL, 0, obj), 0);
	assert_int_equal(json_object_size(obj), 0);
	assert_int_equal(notify_diff(NULL, now, EXPORTER, ORDER, NULL, 0, NULL), 0);
	json_decref(obj);
	json_decref(now);
}

/* HMAC-SHA256 against vectors computed with openssl dgst. */
static void test_sign_vector(void **state)
{
	char out[65];
	(void)state;

	/* printf '%s' '1700000000.{"a":1}' | openssl dgst -sha256 -hmac secret */
	notify_sign("secret", 1700000000LL, "{\"a\":1}", 7, out);
	assert_string_equal(out,
	                    "49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686");
	/* Only len bytes of body are signed. */
	notify_sign("secret", 1700000000LL, "{\"a\":1}\n{\"b\":2}", 7, out);
	assert_string_equal(out,
	                    "49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686");
	/* printf '%s' '1767225600.x' | openssl dgst -sha256 -hmac whsec-test-0123456789
	 * (a one-byte body) */
	notify_sign("whsec-test-0123456789", 1767225600LL, "x", 1, out);
	assert_string_equal(out,
	                    "4b01a21857fc393c6eae727fa1f6c84440dec424e327aebf6a6437f2b51872bf");
	/* printf '%s' '1700000000.{"a":1}' | openssl dgst -sha256 -hmac old-secret */
	notify_sign("old-secret", 1700000000LL, "{\"a\":1}", 7, out);
	assert_string_equal(out,
	                    "e29ca811af373f1279f2b539116c71422ef13c442c1d2e1ce1f372109610a6b0");
	/* printf '%s' '-5.' | openssl dgst -sha256 -hmac secret  (negative t, empty body) */
	notify_sign("secret", -5LL, "", 0, out);
	assert_string_equal(out,
	                    "bf32312523b2119a526c0873999ccd2c5aa864b919b9840e149249a69cb62831");
	/* printf '%s' '0.' | openssl dgst -sha256 -hmac k  (NULL body with len 0) */
	notify_sign("k", 0LL, NULL, 0, out);
	assert_string_equal(out,
	                    "6b4a4b8b3c40f1e8f53a3d36682e5f99f7ad2ac1df1c93dfe336f329167641e7");
	/* printf '%s' '1700000000.{"a":1}' | openssl dgst -sha256 -hmac ''  (empty key) */
	notify_sign("", 1700000000LL, "{\"a\":1}", 7, out);
	assert_string_equal(out,
	                    "948a8d0246d330f02787f96de7c4dcbc70dc8ddf91d6e6147820a754e78dc36c");
	/* The worked example of docs/NOTIFICATIONS.md, checked there with
	 * printf '%s' "1764300000.$BODY" | openssl dgst -sha256 -hmac 'whsec-kivu-demo-0001' */
	{
		static const char body[] =
		    "{\"at\": \"2026-11-28T03:20:00.000000Z\", \"to\": \"customs_hold\", \"seq\": "
		    "42, "
		    "\"from\": \"arrived\", \"kind\": \"shipment.status\", \"type\": "
		    "\"notification\", "
		    "\"event\": \"kvh-0142-09\", \"order\": \"KVH-2026-0142\", \"exporter\": "
		    "\"kivu-coffee\", \"shipment\": \"KVH-0142-AIR1\", \"occurred_at\": "
		    "\"2026-10-09T16:40:00+08:00\"}";

		notify_sign("whsec-kivu-demo-0001", 1764300000LL, body, sizeof(body) - 1, out);
		assert_string_equal(
		    out, "40fb97217bacc6610b78dae2de29e01985024c5c36f03709d1f23dc68e40192d");
	}
	/* No secret: no signature. */
	notify_sign(NULL, 1700000000LL, "{\"a\":1}", 7, out);
	assert_string_equal(out, "");
}

/* The header: t, one v1 per secret in the order given; nothing when it cannot be whole. */
static void test_signature_header(void **state)
{
	static const char *const secrets[] = {"secret", "old-secret"};
	static const char want2[] =
	    "t=1700000000,v1=49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686"
	    ",v1=e29ca811af373f1279f2b539116c71422ef13c442c1d2e1ce1f372109610a6b0";
	static const char want1[] =
	    "t=1700000000,v1=49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686";
	char out[256];
	char exact[sizeof(want2)];
	(void)state;

	assert_int_equal(
	    notify_signature_header(secrets, 2, 1700000000LL, "{\"a\":1}", 7, out, sizeof(out)),
	    strlen(want2));
	assert_string_equal(out, want2);
	assert_int_equal(
	    notify_signature_header(secrets, 1, 1700000000LL, "{\"a\":1}", 7, out, sizeof(out)),
	    strlen(want1));
	assert_string_equal(out, want1);

	/* Exactly enough room, then one byte less: the whole header or nothing. */
	assert_int_equal(
	    notify_signature_header(secrets, 2, 1700000000LL, "{\"a\":1}", 7, exact, sizeof(exact)),
	    strlen(want2));
	assert_string_equal(exact, want2);
	assert_int_equal(notify_signature_header(secrets, 2, 1700000000LL, "{\"a\":1}", 7, exact,
	                                         sizeof(exact) - 1),
	                 0);
	assert_string_equal(exact, "");
	assert_int_equal(notify_signature_header(secrets, 2, 1700000000LL, "{\"a\":1}", 7, out, 0),
	                 0);

	/* No secret, or a NULL one: nothing to sign with. */
	assert_int_equal(
	    notify_signature_header(secrets, 0, 1700000000LL, "{\"a\":1}", 7, out, sizeof(out)), 0);
	assert_string_equal(out, "");
	{
		const char *const holey[] = {"secret", NULL};

		assert_int_equal(notify_signature_header(holey, 2, 1700000000LL, "{\"a\":1}", 7,
		                                         out, sizeof(out)),
		                 0);
		assert_string_equal(out, "");
	}
}

/* 1 s doubling to a 5 minute cap; 0 for attempt 0; no overflow for huge attempts. */
static void test_backoff(void **state)
{
	static const unsigned want[] = {0,     1000,   2000,   4000,   8000,   16000, 32000,
	                                64000, 128000, 256000, 300000, 300000, 300000};
	unsigned prev = 0;
	(void)state;

	for (unsigned a = 0; a < sizeof(want) / sizeof(want[0]); a++)
		assert_int_equal(notify_backoff_ms(a), want[a]);
	assert_int_equal(notify_backoff_ms(31), 300000);
	assert_int_equal(notify_backoff_ms(32), 300000);
	assert_int_equal(notify_backoff_ms(33), 300000);
	assert_int_equal(notify_backoff_ms(64), 300000);
	assert_int_equal(notify_backoff_ms(1000000), 300000);
	assert_int_equal(notify_backoff_ms(UINT_MAX - 1), 300000);
	assert_int_equal(notify_backoff_ms(UINT_MAX), 300000);
	/* Never shrinking, never past the cap. */
	for (unsigned a = 0; a < 200; a++) {
		unsigned ms = notify_backoff_ms(a);

		assert_true(ms >= prev);
		assert_true(ms <= 300000);
		prev = ms;
	}
}

/* The seq of NOTIFY payloads in the shape emit_notifications() writes, and -1 for any other. */
static void test_payload_seq(void **state)
{
	(void)state;
	assert_int_equal(notify_payload_seq("{\"seq\" : 42, \"kind\" : \"order.status\"}"), 42);
	assert_int_equal(notify_payload_seq("{\"seq\":7}"), 7);
	assert_int_equal(notify_payload_seq(" {\n\"seq\" :\t0 }"), 0);
	assert_int_equal(notify_payload_seq("{\"seq\" : 999999999999999999, \"x\" : 1}"),
	                 999999999999999999LL);
	/* Any other shape: the caller parses it in full. */
	assert_int_equal(notify_payload_seq("{\"kind\" : \"x\", \"seq\" : 42}"), -1);
	assert_int_equal(notify_payload_seq("{\"seq\" : -1}"), -1);
	assert_int_equal(notify_payload_seq("{\"seq\" : 4.5}"), -1);
	assert_int_equal(notify_payload_seq("{\"seq\" : \"42\"}"), -1);
	assert_int_equal(notify_payload_seq("{\"seq\" : 42"), -1);
	assert_int_equal(notify_payload_seq("{\"seq\" : }"), -1);
	assert_int_equal(notify_payload_seq("{\"seq\" : 1234567890123456789}"), -1);
	assert_int_equal(notify_payload_seq("{\"sequence\" : 1}"), -1);
	assert_int_equal(notify_payload_seq("[42]"), -1);
	assert_int_equal(notify_payload_seq(""), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_new_order),
	    cmocka_unit_test(test_order_confirmed),
	    cmocka_unit_test(test_shipment_departed),
	    cmocka_unit_test(test_two_shipments),
	    cmocka_unit_test(test_eta),
	    cmocka_unit_test(test_anomalies),
	    cmocka_unit_test(test_shipment_disappears),
	    cmocka_unit_test(test_nothing_changed),
	    cmocka_unit_test(test_late_events),
	    cmocka_unit_test(test_shipment_cause_not_document),
	    cmocka_unit_test(test_attribution_shipment),
	    cmocka_unit_test(test_attribution_order),
	    cmocka_unit_test(test_item_order),
	    cmocka_unit_test(test_item_members),
	    cmocka_unit_test(test_anomaly_set),
	    cmocka_unit_test(test_malformed_states),
	    cmocka_unit_test(test_cause_without_type),
	    cmocka_unit_test(test_out_not_array),
	    cmocka_unit_test(test_sign_vector),
	    cmocka_unit_test(test_signature_header),
	    cmocka_unit_test(test_backoff),
	    cmocka_unit_test(test_payload_seq),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
