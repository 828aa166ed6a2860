/*
 * test_request.c - unit tests for lib/request.c.
 *
 * Each line is copied into a heap buffer of exactly its length (no NUL after
 * it), as the framer hands lines over, so a parser that read past `len`
 * would be caught under AddressSanitizer.  The server clock is fixed at
 * 2026-03-01T06:00:00Z.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "request.h"

#define NOW    INT64_C(1772344800000) /* 2026-03-01T06:00:00Z */
#define DAY_MS INT64_C(86400000)

/* Parse n bytes of s from an exact-size copy. */
static bool parse_n(const char *s, size_t n, int64_t now, struct request *rq,
                    struct request_error *err)
{
	char *copy = malloc(n > 0 ? n : 1);
	bool ok;

	assert_non_null(copy);
	memcpy(copy, s, n);
	ok = request_parse(copy, n, now, rq, err);
	/* The request must not point into the line: it may be gone by now. */
	memset(copy, '#', n);
	free(copy);
	return ok;
}

/* Parse a NUL-terminated line at the fixed clock. */
static bool parse(const char *s, struct request *rq, struct request_error *err)
{
	return parse_n(s, strlen(s), NOW, rq, err);
}

/* The line must fail with code and exactly this message. */
static void expect_error(const char *line, const char *code, const char *message)
{
	struct request rq;
	struct request_error err;

	if (parse(line, &rq, &err))
		fail_msg("accepted: %s", line);
	assert_null(rq.root);
	assert_string_equal(err.code, code);
	assert_string_equal(err.message, message);
}

/* The line must fail as malformed JSON with a jansson message carrying its position. */
static void expect_malformed_n(const char *line, size_t n, const char *want_prefix)
{
	struct request rq;
	struct request_error err;

	if (parse_n(line, n, NOW, &rq, &err))
		fail_msg("accepted malformed line");
	assert_null(rq.root);
	assert_string_equal(err.code, ERR_MALFORMED_JSON);
	if (strncmp(err.message, want_prefix, strlen(want_prefix)) != 0)
		fail_msg("message \"%s\" does not start with \"%s\"", err.message, want_prefix);
	/* The message is printable ASCII whatever bytes the line held. */
	for (const char *p = err.message; *p != '\0'; p++)
		assert_true(*p >= 0x20 && *p < 0x7f);
	assert_false(err.has_id);
}

/* Shorthand for expect_malformed_n on a NUL-terminated line. */
static void expect_malformed(const char *line, const char *want_prefix)
{
	expect_malformed_n(line, strlen(line), want_prefix);
}

/* A hello with exporter and token is accepted and points into the tree. */
static void test_hello_ok(void **state)
{
	struct request rq;
	struct request_error err;
	(void)state;

	assert_true(parse("{\"type\":\"hello\",\"exporter\":\"kivu-coffee\",\"token\":\"t0k\"}",
	                  &rq, &err));
	assert_int_equal(rq.kind, REQ_HELLO);
	assert_non_null(rq.root);
	assert_string_equal(rq.u.hello.exporter, "kivu-coffee");
	assert_string_equal(rq.u.hello.token, "t0k");
	assert_ptr_equal(rq.u.hello.exporter,
	                 json_string_value(json_object_get(rq.root, "exporter")));
	request_clear(&rq);
	assert_null(rq.root);
	request_clear(&rq); /* clearing twice is harmless */
}

/* Hello field errors name the field; the token never shows in a message. */
static void test_hello_errors(void **state)
{
	char line[1024];
	char exporter[256];
	char token[300];
	struct request rq;
	struct request_error err;
	(void)state;

	expect_error("{\"type\":\"hello\",\"exporter\":\"kivu\"}", ERR_INVALID_REQUEST,
	             "field \"token\": required");
	expect_error("{\"type\":\"hello\",\"token\":\"t\"}", ERR_INVALID_REQUEST,
	             "field \"exporter\": required");
	expect_error("{\"type\":\"hello\",\"exporter\":\"kivu\",\"token\":42}", ERR_INVALID_REQUEST,
	             "field \"token\": must be a string");
	expect_error("{\"type\":\"hello\",\"exporter\":null,\"token\":\"t\"}", ERR_INVALID_REQUEST,
	             "field \"exporter\": must be a string");
	expect_error("{\"type\":\"hello\",\"exporter\":\"\",\"token\":\"t\"}", ERR_INVALID_REQUEST,
	             "field \"exporter\": must be 1-64 characters");
	expect_error("{\"type\":\"hello\",\"exporter\":\"kivu\",\"token\":\"\"}",
	             ERR_INVALID_REQUEST, "field \"token\": must be 1-256 characters");
	expect_error("{\"type\":\"hello\",\"exporter\":\"kivu\",\"token\":\"t\",\"x\":1}",
	             ERR_INVALID_REQUEST, "unknown field \"x\"");

	/* Exporter: 64 characters pass, 65 do not; characters, not bytes. */
	memset(exporter, 'e', 64);
	exporter[64] = '\0';
	snprintf(line, sizeof(line), "{\"type\":\"hello\",\"exporter\":\"%s\",\"token\":\"t\"}",
	         exporter);
	assert_true(parse(line, &rq, &err));
	request_clear(&rq);
	snprintf(line, sizeof(line), "{\"type\":\"hello\",\"exporter\":\"%se\",\"token\":\"t\"}",
	         exporter);
	expect_error(line, ERR_INVALID_REQUEST, "field \"exporter\": must be 1-64 characters");
	exporter[0] = '\0';
	for (int i = 0; i < 64; i++)
		strcat(exporter, "咖");
	snprintf(line, sizeof(line), "{\"type\":\"hello\",\"exporter\":\"%s\",\"token\":\"t\"}",
	         exporter);
	assert_true(parse(line, &rq, &err));
	request_clear(&rq);

	/* Token: 256 characters pass, 257 do not, and it is not quoted back. */
	memset(token, 'S', 256);
	token[256] = '\0';
	snprintf(line, sizeof(line), "{\"type\":\"hello\",\"exporter\":\"k\",\"token\":\"%s\"}",
	         token);
	assert_true(parse(line, &rq, &err));
	assert_int_equal(strlen(rq.u.hello.token), 256);
	request_clear(&rq);
	snprintf(line, sizeof(line), "{\"type\":\"hello\",\"exporter\":\"k\",\"token\":\"%sS\"}",
	         token);
	assert_false(parse(line, &rq, &err));
	assert_string_equal(err.message, "field \"token\": must be 1-256 characters");
	assert_null(strstr(err.message, "SSSS"));
}

/* A ping is just its type. */
static void test_ping(void **state)
{
	struct request rq;
	struct request_error err;
	(void)state;

	assert_true(parse("  {\"type\" : \"ping\"}  ", &rq, &err));
	assert_int_equal(rq.kind, REQ_PING);
	request_clear(&rq);
	expect_error("{\"type\":\"ping\",\"seq\":1}", ERR_INVALID_REQUEST, "unknown field \"seq\"");
}

/* Anything jansson refuses is malformed_json with its position. */
static void test_malformed_json(void **state)
{
	(void)state;

	expect_malformed("", "invalid JSON at position 0: ");
	expect_malformed("   \t ", "invalid JSON at position ");
	expect_malformed("{", "invalid JSON at position ");
	expect_malformed("{\"type\":\"ping\"", "invalid JSON at position ");
	expect_malformed("{\"type\":'ping'}", "invalid JSON at position ");
	expect_malformed("{\"type\":\"ping\",}", "invalid JSON at position ");
	expect_malformed("{\"a\":1,\"a\":2}",
	                 "invalid JSON at position 10: duplicate object key near '\"a\"'");
	expect_malformed("{\"type\":\"ping\",\"type\":\"ping\"}", "invalid JSON at position ");
	expect_malformed("{\"a\":1e400}", "invalid JSON at position 10: real number overflow");
	expect_malformed("{\"a\":-1e400}", "invalid JSON at position ");
	expect_malformed("{\"a\":99999999999999999999}", "invalid JSON at position ");
	expect_malformed("{\"a\":\"\\u0000\"}", "invalid JSON at position ");
	expect_malformed("{\"type\":\"ping\"} x", "invalid JSON at position 17: ");
	expect_malformed("{\"type\":\"ping\"}{\"type\":\"ping\"}", "invalid JSON at position ");
	expect_malformed("{\"a\": 咖啡}", "invalid JSON at position ");
	expect_malformed("{\"a\":\"\\ud800\"}", "invalid JSON at position "); /* lone surrogate */
	/* Invalid UTF-8: a stray byte, an overlong encoding, a cut sequence, a surrogate. */
	expect_malformed("{\"a\":\"\xff\"}", "invalid JSON at position 6: unable to decode byte");
	expect_malformed("{\"a\":\"\xc0\xaf\"}", "invalid JSON at position ");
	expect_malformed("{\"a\":\"\xe5\x92\"}", "invalid JSON at position ");
	expect_malformed("{\"a\":\"\xed\xa0\x80\"}", "invalid JSON at position ");
	expect_malformed("{\"\xff\":1}", "invalid JSON at position ");
	/* A NUL byte in the line, inside a string and outside. */
	expect_malformed_n("{\"a\":\"x\0y\"}", 11, "invalid JSON at position ");
	expect_malformed_n("{\"type\":\"ping\"}\0", 16, "invalid JSON at position ");
}

/* 10,000 levels of nesting hit jansson's depth limit instead of the stack. */
static void test_deep_nesting(void **state)
{
	const size_t depth = 10000;
	char *line = malloc(2 * depth + 32);
	size_t n = 0;
	(void)state;

	assert_non_null(line);
	for (size_t i = 0; i < depth; i++)
		line[n++] = '[';
	for (size_t i = 0; i < depth; i++)
		line[n++] = ']';
	expect_malformed_n(line, n, "invalid JSON at position ");

	free(line);

	/* Objects: {"a":{"a":...1...}} */
	line = malloc(6 * depth + 32);
	assert_non_null(line);
	n = 0;
	for (size_t i = 0; i < depth; i++) {
		memcpy(line + n, "{\"a\":", 5);
		n += 5;
	}
	line[n++] = '1';
	for (size_t i = 0; i < depth; i++)
		line[n++] = '}';
	expect_malformed_n(line, n, "invalid JSON at position ");
	free(line);
}

/* Valid JSON that is not an object. */
static void test_not_an_object(void **state)
{
	const char *lines[] = {"[]", "[{\"type\":\"ping\"}]", "\"ping\"", "42", "null", "true"};
	(void)state;

	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
		expect_error(lines[i], ERR_MALFORMED_JSON, "a line must be one JSON object");
}

/* A missing or non-string type is invalid_request. */
static void test_type_field(void **state)
{
	(void)state;

	expect_error("{}", ERR_INVALID_REQUEST, "field \"type\": required, a string");
	expect_error("{\"exporter\":\"k\",\"token\":\"t\"}", ERR_INVALID_REQUEST,
	             "field \"type\": required, a string");
	expect_error("{\"type\":42}", ERR_INVALID_REQUEST, "field \"type\": required, a string");
	expect_error("{\"type\":null}", ERR_INVALID_REQUEST, "field \"type\": required, a string");
	expect_error("{\"type\":[\"ping\"]}", ERR_INVALID_REQUEST,
	             "field \"type\": required, a string");
}

/* Types outside the table are unknown_type, quoted back in short. */
static void test_unknown_type(void **state)
{
	char line[600];
	char longtype[400];
	struct request rq;
	struct request_error err;
	(void)state;

	expect_error("{\"type\":\"shipment.teleported\",\"id\":\"e1\"}", ERR_UNKNOWN_TYPE,
	             "unknown type \"shipment.teleported\"");
	expect_error("{\"type\":\"foo\"}", ERR_UNKNOWN_TYPE, "unknown type \"foo\"");
	expect_error("{\"type\":\"\"}", ERR_UNKNOWN_TYPE, "unknown type \"\"");
	expect_error("{\"type\":\"Order.Created\"}", ERR_UNKNOWN_TYPE,
	             "unknown type \"Order.Created\"");
	expect_error("{\"type\":\"order.created \"}", ERR_UNKNOWN_TYPE,
	             "unknown type \"order.created \"");
	expect_error("{\"type\":\"order.\"}", ERR_UNKNOWN_TYPE, "unknown type \"order.\"");
	expect_error("{\"type\":\"HELLO\"}", ERR_UNKNOWN_TYPE, "unknown type \"HELLO\"");

	/* A long type is cut at a character boundary and marked. */
	longtype[0] = '\0';
	for (int i = 0; i < 100; i++)
		strcat(longtype, "咖");
	snprintf(line, sizeof(line), "{\"type\":\"%s\"}", longtype);
	assert_false(parse(line, &rq, &err));
	assert_string_equal(err.code, ERR_UNKNOWN_TYPE);
	/* 64 bytes hold 21 whole three-byte characters. */
	char want[200] = "unknown type \"";
	for (int i = 0; i < 21; i++)
		strcat(want, "咖");
	strcat(want, "...\"");
	assert_string_equal(err.message, want);
}

/* Build an event line of the given type; NULL parts are left out. */
static void event_line(char *out, size_t cap, const char *type, const char *id,
                       const char *occurred_at, const char *order, const char *shipment)
{
	size_t n = (size_t)snprintf(out, cap, "{\"type\":\"%s\"", type);
	if (id != NULL)
		n += (size_t)snprintf(out + n, cap - n, ",\"id\":%s", id);
	if (occurred_at != NULL)
		n += (size_t)snprintf(out + n, cap - n, ",\"occurred_at\":%s", occurred_at);
	if (order != NULL)
		n += (size_t)snprintf(out + n, cap - n, ",\"order\":%s", order);
	if (shipment != NULL)
		n += (size_t)snprintf(out + n, cap - n, ",\"shipment\":%s", shipment);
	snprintf(out + n, cap - n, "}");
}

/* Every known type parses; fields point into the tree; shipment is NULL when absent. */
static void test_event_ok(void **state)
{
	static const char *types[] = {
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
	char line[512];
	struct request rq;
	struct request_error err;
	(void)state;

	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		event_line(line, sizeof(line), types[i], "\"evt-1\"",
		           "\"2026-03-01T08:00:00+02:00\"", "\"PO-2026/17\"", "\"SHP.9\"");
		if (!parse(line, &rq, &err))
			fail_msg("%s refused: %s %s", types[i], err.code, err.message);
		assert_int_equal(rq.kind, REQ_EVENT);
		assert_string_equal(rq.u.event.type, types[i]);
		assert_string_equal(rq.u.event.id, "evt-1");
		assert_string_equal(rq.u.event.order, "PO-2026/17");
		assert_string_equal(rq.u.event.shipment, "SHP.9");
		assert_string_equal(rq.u.event.occurred_at, "2026-03-01T08:00:00+02:00");
		assert_int_equal(rq.u.event.occurred_ms, INT64_C(1772344800000));
		assert_int_equal(rq.u.event.offset_min, 120);
		assert_ptr_equal(rq.u.event.order,
		                 json_string_value(json_object_get(rq.root, "order")));
		request_clear(&rq);

		/* Without a shipment: fine except for shipment.* types. */
		event_line(line, sizeof(line), types[i], "\"evt-1\"", "\"2026-03-01T08:00:00Z\"",
		           "\"PO-1\"", NULL);
		bool is_ship = strncmp(types[i], "shipment.", 9) == 0;
		bool ok = parse(line, &rq, &err);
		assert_int_equal(ok, !is_ship);
		if (ok) {
			assert_null(rq.u.event.shipment);
			request_clear(&rq);
		} else {
			assert_string_equal(err.code, ERR_INVALID_EVENT);
			assert_string_equal(err.message, "field \"shipment\": required");
			assert_true(err.has_id);
			assert_string_equal(err.id, "evt-1");
		}
	}

	/* Fields this version does not know yet are allowed on events. */
	assert_true(parse("{\"type\":\"document.issued\",\"id\":\"d-1\",\"order\":\"PO-1\","
	                  "\"occurred_at\":\"2026-02-27T10:15:30.250-05:30\","
	                  "\"doc\":{\"kind\":\"phyto\",\"pages\":[1,2]},\"note\":\"辣椒\"}",
	                  &rq, &err));
	assert_int_equal(rq.u.event.offset_min, -330);
	/* 2026-02-27T15:45:30.250Z = 2026-03-01T06:00Z - 1 day - 14 h 14 min 29.75 s. */
	assert_int_equal(rq.u.event.occurred_ms,
	                 NOW - DAY_MS - (14 * 3600 + 14 * 60 + 29) * 1000 - 750);
	request_clear(&rq);
}

/* Parse an event line that must fail with invalid_event and this message. */
static void expect_event_error(const char *type, const char *id, const char *at, const char *order,
                               const char *shipment, const char *message)
{
	char line[1024];
	event_line(line, sizeof(line), type, id, at, order, shipment);
	expect_error(line, ERR_INVALID_EVENT, message);
}

/* Each envelope field is required and checked, and the message names it. */
static void test_envelope_errors(void **state)
{
	const char *at = "\"2026-03-01T08:00:00+02:00\"";
	const char *rfc =
	    "must be RFC 3339 with an explicit offset, e.g. 2026-03-01T08:00:00+02:00";
	char msg[256];
	char longid[200];
	(void)state;

	/* id */
	expect_event_error("order.created", NULL, at, "\"PO-1\"", NULL, "field \"id\": required");
	expect_event_error("order.created", "7", at, "\"PO-1\"", NULL,
	                   "field \"id\": must be a string");
	expect_event_error("order.created", "\"\"", at, "\"PO-1\"", NULL,
	                   "field \"id\": must be 1-128 characters of A-Za-z0-9._:-");
	expect_event_error("order.created", "\"a b\"", at, "\"PO-1\"", NULL,
	                   "field \"id\": must be 1-128 characters of A-Za-z0-9._:-");
	memset(longid, 'i', 130); /* quote + 129 characters */
	longid[0] = '"';
	longid[130] = '"';
	longid[131] = '\0';
	expect_event_error("order.created", longid, at, "\"PO-1\"", NULL,
	                   "field \"id\": must be 1-128 characters of A-Za-z0-9._:-");

	/* occurred_at */
	expect_event_error("order.created", "\"e1\"", NULL, "\"PO-1\"", NULL,
	                   "field \"occurred_at\": required");
	expect_event_error("order.created", "\"e1\"", "1772344800000", "\"PO-1\"", NULL,
	                   "field \"occurred_at\": must be a string");
	snprintf(msg, sizeof(msg), "field \"occurred_at\": %s", rfc);
	expect_event_error("order.created", "\"e1\"", "\"2026-03-01T08:00:00\"", "\"PO-1\"", NULL,
	                   msg);
	expect_event_error("order.created", "\"e1\"", "\"2026-03-01 08:00:00Z\"", "\"PO-1\"", NULL,
	                   msg);
	expect_event_error(
	    "order.created", "\"e1\"", "\"2026-02-29T08:00:00Z\"", "\"PO-1\"", NULL,
	    "field \"occurred_at\": no such date (month 01-12, day within the month)");

	/* order */
	expect_event_error("order.created", "\"e1\"", at, NULL, NULL, "field \"order\": required");
	expect_event_error("order.created", "\"e1\"", at, "{}", NULL,
	                   "field \"order\": must be a string");
	expect_event_error("order.created", "\"e1\"", at, "\"PO:1\"", NULL,
	                   "field \"order\": must be 1-64 characters of A-Za-z0-9._/-");
	expect_event_error("shipment.departed", "\"e1\"", at, "\"\"", "\"S1\"",
	                   "field \"order\": must be 1-64 characters of A-Za-z0-9._/-");

	/* shipment: checked when present on any type, required on shipment.* */
	expect_event_error("order.created", "\"e1\"", at, "\"PO-1\"", "\"S 1\"",
	                   "field \"shipment\": must be 1-64 characters of A-Za-z0-9._/-");
	expect_event_error("order.created", "\"e1\"", at, "\"PO-1\"", "null",
	                   "field \"shipment\": must be a string");
	expect_event_error("shipment.delivered", "\"e1\"", at, "\"PO-1\"", NULL,
	                   "field \"shipment\": required");
	expect_event_error("shipment.delivered", "\"e1\"", at, "\"PO-1\"", "\"\"",
	                   "field \"shipment\": must be 1-64 characters of A-Za-z0-9._/-");
}

/* occurred_at may lead the server clock by 24 h but not more; the past is fine. */
static void test_future_limit(void **state)
{
	char line[256];
	struct request rq;
	struct request_error err;
	(void)state;

	/* NOW + 24 h exactly: 2026-03-02T06:00:00Z. */
	event_line(line, sizeof(line), "order.created", "\"e1\"", "\"2026-03-02T06:00:00Z\"",
	           "\"PO-1\"", NULL);
	assert_true(parse(line, &rq, &err));
	assert_int_equal(rq.u.event.occurred_ms, NOW + DAY_MS);
	request_clear(&rq);
	/* The same instant written with another offset. */
	event_line(line, sizeof(line), "order.created", "\"e1\"", "\"2026-03-02T14:00:00+08:00\"",
	           "\"PO-1\"", NULL);
	assert_true(parse(line, &rq, &err));
	request_clear(&rq);
	/* One millisecond more is refused, and the id is still echoed. */
	event_line(line, sizeof(line), "order.created", "\"e1\"", "\"2026-03-02T06:00:00.001Z\"",
	           "\"PO-1\"", NULL);
	assert_false(parse(line, &rq, &err));
	assert_string_equal(err.code, ERR_INVALID_EVENT);
	assert_string_equal(err.message,
	                    "field \"occurred_at\": is more than 24 h ahead of the server clock");
	assert_true(err.has_id);
	assert_string_equal(err.id, "e1");
	/* A year ahead, and ahead only through the offset. */
	event_line(line, sizeof(line), "order.created", "\"e1\"", "\"2027-03-01T06:00:00Z\"",
	           "\"PO-1\"", NULL);
	assert_false(parse(line, &rq, &err));
	event_line(line, sizeof(line), "order.created", "\"e1\"", "\"2026-03-02T06:00:00-00:01\"",
	           "\"PO-1\"", NULL);
	assert_false(parse(line, &rq, &err));
	/* Far in the past is accepted. */
	event_line(line, sizeof(line), "order.created", "\"e1\"", "\"1999-12-31T23:59:59Z\"",
	           "\"PO-1\"", NULL);
	assert_true(parse(line, &rq, &err));
	request_clear(&rq);
	/* The clock is an input: with now far in the future the same line passes. */
	event_line(line, sizeof(line), "order.created", "\"e1\"", "\"2027-03-01T06:00:00Z\"",
	           "\"PO-1\"", NULL);
	assert_true(parse_n(line, strlen(line), NOW + 400 * DAY_MS, &rq, &err));
	request_clear(&rq);
	/* Extreme clocks do not overflow the comparison. */
	assert_false(parse_n(line, strlen(line), INT64_MIN, &rq, &err));
	assert_true(parse_n(line, strlen(line), INT64_MAX, &rq, &err));
	request_clear(&rq);
}

/* has_id is set exactly when the line carries a valid string id. */
static void test_has_id(void **state)
{
	struct request rq;
	struct request_error err;
	(void)state;

	/* Valid id, later field bad. */
	assert_false(parse("{\"type\":\"order.created\",\"id\":\"ord:42\",\"order\":\"PO 1\","
	                   "\"occurred_at\":\"2026-03-01T08:00:00+02:00\"}",
	                   &rq, &err));
	assert_string_equal(err.message,
	                    "field \"order\": must be 1-64 characters of A-Za-z0-9._/-");
	assert_true(err.has_id);
	assert_string_equal(err.id, "ord:42");

	/* Valid id on an unknown type is echoed too. */
	assert_false(parse("{\"type\":\"shipment.teleported\",\"id\":\"x-1\"}", &rq, &err));
	assert_true(err.has_id);
	assert_string_equal(err.id, "x-1");

	/* A 128-character id is copied whole. */
	char line[400];
	char id[129];
	memset(id, 'q', 128);
	id[128] = '\0';
	snprintf(line, sizeof(line), "{\"type\":\"order.created\",\"id\":\"%s\"}", id);
	assert_false(parse(line, &rq, &err));
	assert_true(err.has_id);
	assert_string_equal(err.id, id);

	/* Invalid ids are never copied. */
	const char *bad[] = {
	    "{\"type\":\"order.created\",\"id\":\"bad id\"}",
	    "{\"type\":\"order.created\",\"id\":\"\"}",
	    "{\"type\":\"order.created\",\"id\":17}",
	    "{\"type\":\"order.created\",\"id\":\"\\\"}{\"}",
	    "{\"type\":\"order.created\"}",
	    "{\"id\":\"ok-id\",\"type\":\"order.created\",\"id\":\"dup\"}",
	    "{\"id\":\"ok-id\" x",
	    "[\"id\",\"ok-id\"]",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&err, 0x55, sizeof(err));
		assert_false(parse(bad[i], &rq, &err));
		assert_false(err.has_id);
		assert_string_equal(err.id, "");
	}
	snprintf(line, sizeof(line), "{\"type\":\"order.created\",\"id\":\"%sq\"}", id);
	assert_false(parse(line, &rq, &err));
	assert_false(err.has_id);

	/* On success err says nothing. */
	memset(&err, 0x55, sizeof(err));
	assert_true(parse("{\"type\":\"ping\"}", &rq, &err));
	assert_false(err.has_id);
	request_clear(&rq);
}

/* Return the canonical form of a line that must parse; caller frees. */
static char *canonical_of(const char *line, size_t *len)
{
	struct request rq;
	struct request_error err;

	if (!parse(line, &rq, &err))
		fail_msg("refused: %s", err.message);
	char *c = request_event_canonical(&rq, len);
	assert_non_null(c);
	request_clear(&rq);
	return c;
}

/* Key order, white space and escape spelling do not change the canonical form; values do. */
static void test_canonical(void **state)
{
	size_t la, lb, lc;
	(void)state;

	char *a = canonical_of("{\"type\":\"order.created\",\"id\":\"e1\",\"order\":\"PO-1\","
	                       "\"occurred_at\":\"2026-03-01T08:00:00+02:00\","
	                       "\"buyer\":{\"name\":\"Y\\u00fcnnan Spice\",\"city\":\"昆明\"}}",
	                       &la);
	char *b = canonical_of(
	    " {\r\n\t\"occurred_at\" : \"2026-03-01T08:00:00+02:00\" ,\n"
	    "  \"buyer\" : { \"city\" : \"\\u6606\\u660e\", \"name\" : \"Yünnan Spice\" },"
	    "\"order\":\"PO-1\", \"id\":\"e1\",  \"type\":\"order.created\" }  ",
	    &lb);
	assert_int_equal(la, lb);
	assert_string_equal(a, b);
	assert_int_equal(strlen(a), la);
	assert_string_equal(a, "{\"buyer\":{\"city\":\"昆明\",\"name\":\"Yünnan Spice\"},"
	                       "\"id\":\"e1\",\"occurred_at\":\"2026-03-01T08:00:00+02:00\","
	                       "\"order\":\"PO-1\",\"type\":\"order.created\"}");

	/* One value differs, deep inside: different form. */
	char *c = canonical_of("{\"type\":\"order.created\",\"id\":\"e1\",\"order\":\"PO-1\","
	                       "\"occurred_at\":\"2026-03-01T08:00:00+02:00\","
	                       "\"buyer\":{\"name\":\"Yunnan Spice\",\"city\":\"昆明\"}}",
	                       &lc);
	assert_string_not_equal(a, c);
	/* The same instant with another offset is a different event text. */
	char *d = canonical_of("{\"type\":\"order.created\",\"id\":\"e1\",\"order\":\"PO-1\","
	                       "\"occurred_at\":\"2026-03-01T06:00:00Z\","
	                       "\"buyer\":{\"name\":\"Yünnan Spice\",\"city\":\"昆明\"}}",
	                       NULL);
	assert_string_not_equal(a, d);
	free(a);
	free(b);
	free(c);
	free(d);

	/* No tree, no form. */
	struct request empty;
	memset(&empty, 0, sizeof(empty));
	assert_null(request_event_canonical(&empty, &la));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_hello_ok),     cmocka_unit_test(test_hello_errors),
	    cmocka_unit_test(test_ping),         cmocka_unit_test(test_malformed_json),
	    cmocka_unit_test(test_deep_nesting), cmocka_unit_test(test_not_an_object),
	    cmocka_unit_test(test_type_field),   cmocka_unit_test(test_unknown_type),
	    cmocka_unit_test(test_event_ok),     cmocka_unit_test(test_envelope_errors),
	    cmocka_unit_test(test_future_limit), cmocka_unit_test(test_has_id),
	    cmocka_unit_test(test_canonical),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
