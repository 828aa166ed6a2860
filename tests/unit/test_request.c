/*
 * test_request.c - unit tests for lib/request.c.
 *
 * Each line is copied into a heap buffer of exactly its length (no NUL after
 * it), as the framer hands lines over, so a parser that read past `len`
 * would be caught under AddressSanitizer.  The server clock is fixed at
 * 2026-03-01T06:00:00Z.  Event lines are checked in their minimal and full forms, and
 * every validation rule through a table of one-member changes to a full form,
 * each with the exact message it must produce.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "jsonw.h"
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
	assert_null(rq.u.hello.operator);
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
	             "field \"exporter\": required (or \"operator\")");
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

/* err.hello tells a broken hello from other lines, so the daemon can answer it as one. */
static void test_hello_flag(void **state)
{
	struct request rq;
	struct request_error err;
	(void)state;

	assert_false(parse("{\"type\":\"hello\",\"exporter\":\"kivu\",\"token\":\"\"}", &rq, &err));
	assert_string_equal(err.code, ERR_INVALID_REQUEST);
	assert_true(err.hello);
	assert_false(parse("{\"type\":\"hello\",\"exporter\":\"kivu\",\"tokn\":\"t\"}", &rq, &err));
	assert_string_equal(err.message, "unknown field \"tokn\"");
	assert_true(err.hello);
	/* Not a hello: the flag stays down. */
	const char *others[] = {"{\"type\":\"ping\",\"x\":1}",
	                        "{\"type\":\"Hello\"}",
	                        "{}",
	                        "{\"type\":\"hello\"",
	                        "[\"hello\"]",
	                        "{\"type\":\"order.confirmed\",\"id\":\"e1\"}",
	                        "{\"type\":\"subscribe\",\"after\":-1}"};
	for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
		memset(&err, 0x55, sizeof(err));
		assert_false(parse(others[i], &rq, &err));
		assert_false(err.hello);
	}
	/* On success the flag is down too. */
	memset(&err, 0x55, sizeof(err));
	assert_true(parse("{\"type\":\"hello\",\"exporter\":\"kivu\",\"token\":\"t\"}", &rq, &err));
	assert_false(err.hello);
	request_clear(&rq);
}

/* An operator's hello: operator set, exporter NULL, same rules for the id. */
static void test_hello_operator(void **state)
{
	char line[512];
	char id[300];
	struct request rq;
	struct request_error err;
	(void)state;

	assert_true(parse("{\"type\":\"hello\",\"operator\":\"ops\",\"token\":\"demo-ops-token\"}",
	                  &rq, &err));
	assert_int_equal(rq.kind, REQ_HELLO);
	assert_null(rq.u.hello.exporter);
	assert_string_equal(rq.u.hello.operator, "ops");
	assert_string_equal(rq.u.hello.token, "demo-ops-token");
	assert_ptr_equal(rq.u.hello.operator,
	                 json_string_value(json_object_get(rq.root, "operator")));
	request_clear(&rq);

	/* Exactly one of exporter and operator. */
	expect_error(
	    "{\"type\":\"hello\",\"exporter\":\"kivu\",\"operator\":\"ops\",\"token\":\"t\"}",
	    ERR_INVALID_REQUEST, "field \"operator\": not allowed together with \"exporter\"");
	expect_error("{\"type\":\"hello\",\"token\":\"t\"}", ERR_INVALID_REQUEST,
	             "field \"exporter\": required (or \"operator\")");
	/* Who comes before the token, so a bare hello asks for who first. */
	expect_error("{\"type\":\"hello\"}", ERR_INVALID_REQUEST,
	             "field \"exporter\": required (or \"operator\")");
	expect_error("{\"type\":\"hello\",\"operator\":\"ops\"}", ERR_INVALID_REQUEST,
	             "field \"token\": required");
	/* The pair is looked at before either id's own checks (section 7.1). */
	expect_error("{\"type\":\"hello\",\"exporter\":\"k\",\"operator\":\"\",\"token\":\"t\"}",
	             ERR_INVALID_REQUEST,
	             "field \"operator\": not allowed together with \"exporter\"");
	expect_error("{\"type\":\"hello\",\"exporter\":\"\",\"operator\":\"ops\",\"token\":\"t\"}",
	             ERR_INVALID_REQUEST,
	             "field \"operator\": not allowed together with \"exporter\"");
	expect_error("{\"type\":\"hello\",\"operator\":7,\"exporter\":\"kivu\",\"token\":\"t\"}",
	             ERR_INVALID_REQUEST,
	             "field \"operator\": not allowed together with \"exporter\"");
	expect_error("{\"type\":\"hello\",\"operator\":\"\",\"token\":\"t\"}", ERR_INVALID_REQUEST,
	             "field \"operator\": must be 1-64 characters");
	expect_error("{\"type\":\"hello\",\"operator\":null,\"token\":\"t\"}", ERR_INVALID_REQUEST,
	             "field \"operator\": must be a string");
	expect_error("{\"type\":\"hello\",\"operator\":\"ops\",\"token\":\"t\",\"role\":\"x\"}",
	             ERR_INVALID_REQUEST, "unknown field \"role\"");

	/* 64 characters pass, 65 do not, as for exporters. */
	memset(id, 'o', 64);
	id[64] = '\0';
	snprintf(line, sizeof(line), "{\"type\":\"hello\",\"operator\":\"%s\",\"token\":\"t\"}",
	         id);
	assert_true(parse(line, &rq, &err));
	request_clear(&rq);
	snprintf(line, sizeof(line), "{\"type\":\"hello\",\"operator\":\"%so\",\"token\":\"t\"}",
	         id);
	expect_error(line, ERR_INVALID_REQUEST, "field \"operator\": must be 1-64 characters");

	/* A broken operator hello is still a hello for the daemon. */
	assert_false(
	    parse("{\"type\":\"hello\",\"operator\":\"ops\",\"exporter\":\"k\",\"token\":\"t\"}",
	          &rq, &err));
	assert_true(err.hello);
}

/* A subscribe with only "after", and one with every filter. */
static void test_subscribe_ok(void **state)
{
	struct request rq;
	struct request_error err;
	(void)state;

	memset(&rq, 0x55, sizeof(rq));
	assert_true(parse("{\"type\":\"subscribe\",\"after\":0}", &rq, &err));
	assert_int_equal(rq.kind, REQ_SUBSCRIBE);
	assert_int_equal(rq.u.subscribe.after, 0);
	assert_null(rq.u.subscribe.kinds);
	assert_null(rq.u.subscribe.orders);
	assert_null(rq.u.subscribe.exporters);
	request_clear(&rq);

	/* Member order does not matter; after may be far past anything stored. */
	assert_true(parse("{\"after\":9007199254740993,\"type\":\"subscribe\"}", &rq, &err));
	assert_true(rq.u.subscribe.after == 9007199254740993LL);
	request_clear(&rq);
	assert_true(parse("{\"type\":\"subscribe\",\"after\":9223372036854775807}", &rq, &err));
	assert_true(rq.u.subscribe.after == 9223372036854775807LL);
	request_clear(&rq);
	/* -0 is the integer 0. */
	assert_true(parse("{\"type\":\"subscribe\",\"after\":-0}", &rq, &err));
	assert_int_equal(rq.u.subscribe.after, 0);
	request_clear(&rq);

	assert_true(parse("{\"type\":\"subscribe\",\"after\":42,"
	                  "\"kinds\":[\"order.status\",\"order.anomaly\",\"shipment.status\","
	                  "\"shipment.eta\",\"alert.customs_dwell\",\"alert.overdue\","
	                  "\"alert.stale\"],"
	                  "\"orders\":[\"KVH-2026-0142\",\"AKC-HEMA-2026-031\"],"
	                  "\"exporters\":[\"kivu-coffee\",\"akagera_chili.2\"]}",
	                  &rq, &err));
	assert_int_equal(rq.kind, REQ_SUBSCRIBE);
	assert_int_equal(rq.u.subscribe.after, 42);
	assert_non_null(rq.u.subscribe.kinds);
	assert_int_equal(json_array_size(rq.u.subscribe.kinds), 7);
	assert_string_equal(json_string_value(json_array_get(rq.u.subscribe.kinds, 6)),
	                    "alert.stale");
	assert_int_equal(json_array_size(rq.u.subscribe.orders), 2);
	assert_string_equal(json_string_value(json_array_get(rq.u.subscribe.orders, 1)),
	                    "AKC-HEMA-2026-031");
	assert_int_equal(json_array_size(rq.u.subscribe.exporters), 2);
	assert_string_equal(json_string_value(json_array_get(rq.u.subscribe.exporters, 0)),
	                    "kivu-coffee");
	/* The filters are borrowed from the tree. */
	assert_ptr_equal(rq.u.subscribe.orders, json_object_get(rq.root, "orders"));
	request_clear(&rq);
	assert_null(rq.root);
}

/* Fill buf with a subscribe whose member name holds n copies of item. */
static void subscribe_list(char *buf, size_t cap, const char *name, const char *item, size_t n)
{
	size_t used =
	    (size_t)snprintf(buf, cap, "{\"type\":\"subscribe\",\"after\":1,\"%s\":[", name);

	for (size_t i = 0; i < n; i++) {
		assert_true(used + strlen(item) + 4 < cap);
		used +=
		    (size_t)snprintf(buf + used, cap - used, "%s\"%s\"", i > 0 ? "," : "", item);
	}
	snprintf(buf + used, cap - used, "]}");
}

/* Every invalid subscribe names its field. */
static void test_subscribe_errors(void **state)
{
	static const char kind_reason[] =
	    "must be one of order.status, order.anomaly, shipment.status, shipment.eta, "
	    "alert.customs_dwell, alert.overdue, alert.stale";
	static char line[80 * 1024];
	char want[512];
	struct request rq;
	struct request_error err;
	(void)state;

	/* after: required, an integer, 0 or more. */
	expect_error("{\"type\":\"subscribe\"}", ERR_INVALID_REQUEST, "field \"after\": required");
	expect_error("{\"type\":\"subscribe\",\"kinds\":[\"order.status\"]}", ERR_INVALID_REQUEST,
	             "field \"after\": required");
	expect_error("{\"type\":\"subscribe\",\"after\":-1}", ERR_INVALID_REQUEST,
	             "field \"after\": must be an integer >= 0");
	expect_error("{\"type\":\"subscribe\",\"after\":-9223372036854775808}", ERR_INVALID_REQUEST,
	             "field \"after\": must be an integer >= 0");
	expect_error("{\"type\":\"subscribe\",\"after\":1.5}", ERR_INVALID_REQUEST,
	             "field \"after\": must be an integer >= 0");
	expect_error("{\"type\":\"subscribe\",\"after\":1.0}", ERR_INVALID_REQUEST,
	             "field \"after\": must be an integer >= 0");
	expect_error("{\"type\":\"subscribe\",\"after\":1e3}", ERR_INVALID_REQUEST,
	             "field \"after\": must be an integer >= 0");
	expect_error("{\"type\":\"subscribe\",\"after\":\"5\"}", ERR_INVALID_REQUEST,
	             "field \"after\": must be an integer >= 0");
	expect_error("{\"type\":\"subscribe\",\"after\":null}", ERR_INVALID_REQUEST,
	             "field \"after\": must be an integer >= 0");
	expect_error("{\"type\":\"subscribe\",\"after\":true}", ERR_INVALID_REQUEST,
	             "field \"after\": must be an integer >= 0");
	/* Beyond what jansson holds is malformed JSON, as for any number. */
	expect_malformed("{\"type\":\"subscribe\",\"after\":9223372036854775808}",
	                 "invalid JSON at position");

	/* Unknown members come first, whatever else is wrong. */
	expect_error("{\"type\":\"subscribe\",\"after\":-1,\"kind\":[\"order.status\"]}",
	             ERR_INVALID_REQUEST, "unknown field \"kind\"");
	expect_error("{\"type\":\"subscribe\",\"after\":0,\"token\":\"t\"}", ERR_INVALID_REQUEST,
	             "unknown field \"token\"");

	/* kinds */
	expect_error("{\"type\":\"subscribe\",\"after\":0,\"kinds\":[]}", ERR_INVALID_REQUEST,
	             "field \"kinds\": must have 1-16 items");
	expect_error("{\"type\":\"subscribe\",\"after\":0,\"kinds\":\"order.status\"}",
	             ERR_INVALID_REQUEST, "field \"kinds\": must be an array");
	expect_error("{\"type\":\"subscribe\",\"after\":0,\"kinds\":null}", ERR_INVALID_REQUEST,
	             "field \"kinds\": must be an array");
	snprintf(want, sizeof(want), "field \"kinds[1]\": %s", kind_reason);
	expect_error(
	    "{\"type\":\"subscribe\",\"after\":0,\"kinds\":[\"order.status\",\"order.created\"]}",
	    ERR_INVALID_REQUEST, want);
	snprintf(want, sizeof(want), "field \"kinds[0]\": %s", kind_reason);
	expect_error("{\"type\":\"subscribe\",\"after\":0,\"kinds\":[\"alert\"]}",
	             ERR_INVALID_REQUEST, want);
	expect_error("{\"type\":\"subscribe\",\"after\":0,\"kinds\":[7]}", ERR_INVALID_REQUEST,
	             want);
	expect_error("{\"type\":\"subscribe\",\"after\":0,\"kinds\":[\"Order.Status\"]}",
	             ERR_INVALID_REQUEST, want);
	subscribe_list(line, sizeof(line), "kinds", "alert.stale", 16);
	assert_true(parse(line, &rq, &err));
	request_clear(&rq);
	subscribe_list(line, sizeof(line), "kinds", "alert.stale", 17);
	expect_error(line, ERR_INVALID_REQUEST, "field \"kinds\": must have 1-16 items");

	/* orders */
	expect_error("{\"type\":\"subscribe\",\"after\":0,\"orders\":[]}", ERR_INVALID_REQUEST,
	             "field \"orders\": must have 1-1000 items");
	expect_error("{\"type\":\"subscribe\",\"after\":0,\"orders\":{\"KVH\":1}}",
	             ERR_INVALID_REQUEST, "field \"orders\": must be an array");
	expect_error("{\"type\":\"subscribe\",\"after\":0,\"orders\":[\"KVH-1\",42]}",
	             ERR_INVALID_REQUEST, "field \"orders[1]\": must be a string");
	expect_error("{\"type\":\"subscribe\",\"after\":0,\"orders\":[\"KVH 1\"]}",
	             ERR_INVALID_REQUEST,
	             "field \"orders[0]\": must be 1-64 characters of A-Za-z0-9._/-");
	expect_error("{\"type\":\"subscribe\",\"after\":0,\"orders\":[\"\"]}", ERR_INVALID_REQUEST,
	             "field \"orders[0]\": must be 1-64 characters of A-Za-z0-9._/-");
	subscribe_list(line, sizeof(line), "orders", "KVH-2026-0142", 1000);
	assert_true(parse(line, &rq, &err));
	assert_int_equal(json_array_size(rq.u.subscribe.orders), 1000);
	request_clear(&rq);
	subscribe_list(line, sizeof(line), "orders", "KVH-2026-0142", 1001);
	expect_error(line, ERR_INVALID_REQUEST, "field \"orders\": must have 1-1000 items");

	/* exporters */
	expect_error("{\"type\":\"subscribe\",\"after\":0,\"exporters\":[]}", ERR_INVALID_REQUEST,
	             "field \"exporters\": must have 1-1000 items");
	expect_error("{\"type\":\"subscribe\",\"after\":0,\"exporters\":\"kivu-coffee\"}",
	             ERR_INVALID_REQUEST, "field \"exporters\": must be an array");
	expect_error("{\"type\":\"subscribe\",\"after\":0,\"exporters\":[\"kivu-coffee\",null]}",
	             ERR_INVALID_REQUEST, "field \"exporters[1]\": must be a string");
	expect_error("{\"type\":\"subscribe\",\"after\":0,\"exporters\":[\"kivu/coffee\"]}",
	             ERR_INVALID_REQUEST,
	             "field \"exporters[0]\": must be 1-64 characters of A-Z a-z 0-9 . _ -");
	expect_error("{\"type\":\"subscribe\",\"after\":0,\"exporters\":[\"\"]}",
	             ERR_INVALID_REQUEST,
	             "field \"exporters[0]\": must be 1-64 characters of A-Z a-z 0-9 . _ -");
	expect_error("{\"type\":\"subscribe\",\"after\":0,\"exporters\":[\"\xe5\x92\x96\"]}",
	             ERR_INVALID_REQUEST,
	             "field \"exporters[0]\": must be 1-64 characters of A-Z a-z 0-9 . _ -");
	subscribe_list(line, sizeof(line), "exporters",
	               "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee", 1000);
	assert_true(parse(line, &rq, &err));
	request_clear(&rq);
	subscribe_list(line, sizeof(line), "exporters",
	               "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee", 1);
	expect_error(line, ERR_INVALID_REQUEST,
	             "field \"exporters[0]\": must be 1-64 characters of A-Z a-z 0-9 . _ -");
	subscribe_list(line, sizeof(line), "exporters", "kivu-coffee", 1001);
	expect_error(line, ERR_INVALID_REQUEST, "field \"exporters\": must have 1-1000 items");

	/* The first problem in table order wins: after, kinds, orders, exporters. */
	expect_error(
	    "{\"type\":\"subscribe\",\"exporters\":[],\"orders\":[],\"kinds\":[],\"after\":-1}",
	    ERR_INVALID_REQUEST, "field \"after\": must be an integer >= 0");
	expect_error(
	    "{\"type\":\"subscribe\",\"exporters\":[],\"orders\":[],\"kinds\":[],\"after\":1}",
	    ERR_INVALID_REQUEST, "field \"kinds\": must have 1-16 items");
	expect_error("{\"type\":\"subscribe\",\"exporters\":[],\"orders\":[]}", ERR_INVALID_REQUEST,
	             "field \"after\": required");

	/* A bad subscribe is not a hello. */
	assert_false(parse("{\"type\":\"subscribe\",\"after\":-1,\"id\":\"e1\"}", &rq, &err));
	assert_false(err.hello);
	assert_string_equal(err.message, "unknown field \"id\"");
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
	/* Said as the protocol says it: no name of a jansson flag a client cannot set. */
	expect_malformed("{\"a\":\"\\u0000\"}",
	                 "invalid JSON at position 13: \\u0000 is not allowed near ");
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
	/* DEL (0x7f) quoted back by jansson is not printable either. */
	expect_malformed("{\"a\":\x7f}", "invalid JSON at position 6: invalid token near '?'");
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

/* The envelope shared by the example lines below, at the fixed clock. */
#define ENV(type, id)                                                                              \
	"{\"type\":\"" type "\",\"id\":\"" id                                                      \
	"\",\"occurred_at\":\"2026-03-01T08:00:00+02:00\",\"order\":\"PO-2026/17\""

/* One event type in its minimal and its full form. */
struct type_case {
	const char *type;
	const char *minimal;
	const char *full;
	const char *shipment; /* what the full form names, or NULL */
};

/* Every type of protocol v1, minimal (required fields only) and full (every field). */
static const struct type_case type_cases[] = {
    {"order.created",
     ENV("order.created", "o-1") ",\"buyer\":\"Tmall Global store: Kivu Hills Coffee\","
                                 "\"origin\":\"RW\",\"destination\":\"CN\",\"lines\":[{\"sku\":"
                                 "\"KVH-250\",\"product\":\"Washed Arabica\",\"hs_code\":"
                                 "\"090111\",\"quantity\":1,\"unit\":\"bag\"}]}",
     ENV("order.created", "o-1") ",\"buyer\":\"Hema Fresh\",\"channel\":\"Tmall Global\","
                                 "\"origin\":\"RW\",\"destination\":\"CN\",\"incoterm\":\"CIF\","
                                 "\"currency\":\"USD\",\"expected_delivery\":\"2026-03-28\","
                                 "\"lines\":[{\"sku\":\"AK-CH-10\",\"product\":\"Dried chili\","
                                 "\"hs_code\":\"090421\",\"quantity\":1200.5,\"unit\":\"kg\","
                                 "\"unit_price\":4.2},{\"sku\":\"AK-CH-P\",\"product\":\"Chili "
                                 "powder 辣椒粉\",\"hs_code\":\"09042200\",\"quantity\":40,"
                                 "\"unit\":\"carton\",\"unit_price\":0},{\"sku\":\"KVH-1\","
                                 "\"product\":\"Coffee\",\"hs_code\":\"0901110000\",\"quantity\":"
                                 "0.25,\"unit\":\"t\"}],\"location\":{\"code\":\"RWKGL\","
                                 "\"name\":\"Kigali\"},\"note\":\"first order\",\"ext\":{\"erp\":"
                                 "{\"so\":[1,2]}}}",
     NULL},
    {"order.confirmed", ENV("order.confirmed", "o-2") "}",
     ENV("order.confirmed", "o-2") ",\"note\":\"confirmed by phone\",\"ext\":{}}", NULL},
    {"order.cancelled", ENV("order.cancelled", "o-3") "}",
     ENV("order.cancelled", "o-3") ",\"reason\":\"buyer withdrew\",\"note\":\"n\"}", NULL},
    {"shipment.booked", ENV("shipment.booked", "s-1") ",\"shipment\":\"S1\",\"mode\":\"air\"}",
     ENV("shipment.booked", "s-1") ",\"shipment\":\"S1\",\"mode\":\"multimodal\",\"carrier\":"
                                   "\"RwandAir Cargo\",\"tracking\":\"459-12345675\","
                                   "\"consignee\":\"Hema Fresh Shanghai Jing'an\",\"eta\":"
                                   "\"2026-03-20T10:00:00+08:00\",\"location\":{\"code\":"
                                   "\"RWKGL\"}}",
     "S1"},
    {"shipment.picked_up", ENV("shipment.picked_up", "s-2") ",\"shipment\":\"S1\"}",
     ENV("shipment.picked_up", "s-2") ",\"shipment\":\"S1\",\"location\":{\"name\":\"Musanze "
                                      "washing station\"},\"note\":\"12 bags\"}",
     "S1"},
    {"shipment.export_cleared", ENV("shipment.export_cleared", "s-3") ",\"shipment\":\"S1\"}",
     ENV("shipment.export_cleared", "s-3") ",\"shipment\":\"S1\",\"location\":{\"code\":"
                                           "\"RWKGL\"},\"ext\":{\"declaration\":\"C 1234\"}}",
     "S1"},
    {"shipment.departed", ENV("shipment.departed", "s-4") ",\"shipment\":\"S1\"}",
     ENV("shipment.departed", "s-4") ",\"shipment\":\"S1\",\"location\":{\"code\":\"RWKGL\"}}",
     "S1"},
    {"shipment.arrived", ENV("shipment.arrived", "s-5") ",\"shipment\":\"S1\"}",
     ENV("shipment.arrived", "s-5") ",\"shipment\":\"S1\",\"location\":{\"code\":\"CNHGH\"}}",
     "S1"},
    {"shipment.import_cleared", ENV("shipment.import_cleared", "s-6") ",\"shipment\":\"S1\"}",
     ENV("shipment.import_cleared", "s-6") ",\"shipment\":\"S1\",\"location\":{\"code\":"
                                           "\"CNHGH\"}}",
     "S1"},
    {"shipment.out_for_delivery", ENV("shipment.out_for_delivery", "s-7") ",\"shipment\":\"S1\"}",
     ENV("shipment.out_for_delivery", "s-7") ",\"shipment\":\"S1\",\"location\":{\"name\":"
                                             "\"Hangzhou\"}}",
     "S1"},
    {"shipment.delivered", ENV("shipment.delivered", "s-8") ",\"shipment\":\"S1\"}",
     ENV("shipment.delivered", "s-8") ",\"shipment\":\"S1\",\"received_by\":\"王丽\","
                                      "\"location\":{\"code\":\"CNHGH\",\"name\":\"Hangzhou\"}}",
     "S1"},
    {"shipment.checkpoint",
     ENV("shipment.checkpoint", "s-9") ",\"shipment\":\"S1\",\"location\":{\"code\":\"KEMBA\"}}",
     ENV("shipment.checkpoint", "s-9") ",\"shipment\":\"S1\",\"location\":{\"code\":\"KEMBA\","
                                       "\"name\":\"Mombasa\"},\"note\":\"at the port\"}",
     "S1"},
    {"shipment.customs_hold",
     ENV("shipment.customs_hold", "s-10") ",\"shipment\":\"S1\",\"stage\":\"import\"}",
     ENV("shipment.customs_hold", "s-10") ",\"shipment\":\"S1\",\"stage\":\"export\","
                                          "\"reason\":\"inspection\",\"location\":{\"code\":"
                                          "\"RWKGL\"}}",
     "S1"},
    {"shipment.customs_released",
     ENV("shipment.customs_released", "s-11") ",\"shipment\":\"S1\",\"stage\":\"import\"}",
     ENV("shipment.customs_released", "s-11") ",\"shipment\":\"S1\",\"stage\":\"export\","
                                              "\"note\":\"released\"}",
     "S1"},
    {"shipment.exception",
     ENV("shipment.exception", "s-12") ",\"shipment\":\"S1\",\"reason\":\"delayed\"}",
     ENV("shipment.exception", "s-12") ",\"shipment\":\"S1\",\"reason\":\"damaged\","
                                       "\"note\":\"two bags torn\",\"location\":{\"code\":"
                                       "\"CNSHA\"}}",
     "S1"},
    {"shipment.exception_resolved",
     ENV("shipment.exception_resolved", "s-13") ",\"shipment\":\"S1\"}",
     ENV("shipment.exception_resolved", "s-13") ",\"shipment\":\"S1\",\"note\":\"rebagged\"}",
     "S1"},
    {"shipment.eta_changed",
     ENV("shipment.eta_changed", "s-14") ",\"shipment\":\"S1\",\"eta\":\"2026-03-22T00:00:00Z\"}",
     ENV("shipment.eta_changed", "s-14") ",\"shipment\":\"S1\",\"eta\":\"2026-03-22T09:30:00+"
                                         "08:00\",\"note\":\"port congestion\"}",
     "S1"},
    {"document.issued", ENV("document.issued", "d-1") ",\"document\":\"phytosanitary\"}",
     ENV("document.issued", "d-1") ",\"shipment\":\"S1\",\"document\":\"bill_of_lading\","
                                   "\"number\":\"MSCU1234567\",\"location\":{\"code\":"
                                   "\"KEMBA\"}}",
     "S1"},
    {"event.retracted", ENV("event.retracted", "r-1") ",\"retracts\":\"s-4\"}",
     ENV("event.retracted", "r-1") ",\"retracts\":\"s-4\",\"reason\":\"wrong shipment\"}", NULL},
};

#define N_TYPE_CASES (sizeof(type_cases) / sizeof(type_cases[0]))

/* Parse a line that must be accepted as an event of type; caller clears rq. */
static void expect_event(const char *line, const char *type, struct request *rq)
{
	struct request_error err;

	if (!parse(line, rq, &err))
		fail_msg("%s refused: %s: %s\n%s", type, err.code, err.message, line);
	assert_int_equal(rq->kind, REQ_EVENT);
	assert_string_equal(rq->u.event.type, type);
	assert_string_equal(rq->u.event.order, "PO-2026/17");
	assert_string_equal(rq->u.event.occurred_at, "2026-03-01T08:00:00+02:00");
	assert_int_equal(rq->u.event.occurred_ms, NOW);
	assert_int_equal(rq->u.event.occurred_us, NOW * 1000);
	assert_int_equal(rq->u.event.offset_min, 120);
	assert_ptr_equal(rq->u.event.order, json_string_value(json_object_get(rq->root, "order")));
}

/* Every type parses in its minimal and full form; the envelope fields point into the tree. */
static void test_event_types_ok(void **state)
{
	struct request rq;
	(void)state;

	for (size_t i = 0; i < N_TYPE_CASES; i++) {
		const struct type_case *tc = &type_cases[i];
		bool is_ship = strncmp(tc->type, "shipment.", 9) == 0;
		bool is_retract = strcmp(tc->type, "event.retracted") == 0;

		expect_event(tc->minimal, tc->type, &rq);
		if (is_ship)
			assert_string_equal(rq.u.event.shipment, "S1");
		else
			assert_null(rq.u.event.shipment);
		if (is_retract)
			assert_string_equal(rq.u.event.retracts, "s-4");
		else
			assert_null(rq.u.event.retracts);
		request_clear(&rq);

		expect_event(tc->full, tc->type, &rq);
		if (tc->shipment != NULL)
			assert_string_equal(rq.u.event.shipment, tc->shipment);
		else
			assert_null(rq.u.event.shipment);
		if (is_retract)
			assert_string_equal(rq.u.event.retracts, "s-4");
		request_clear(&rq);
	}
}

/*
 * Set the member at path ("a", "a.b", "lines[2].hs_code") of root to the
 * JSON text value, or delete it when value is NULL.  A value "#N" stands
 * for a string of N three-byte characters, to test limits in characters.
 */
static void json_patch(json_t *root, const char *path, const char *value)
{
	char buf[128];
	char *seg, *next;
	json_t *cur = root;
	json_t *v = NULL;

	if (value != NULL && value[0] == '#') {
		size_t n = (size_t)atoi(value + 1);
		char *s = malloc(3 * n + 1);
		assert_non_null(s);
		for (size_t i = 0; i < n; i++)
			memcpy(s + 3 * i, "咖", 3);
		s[3 * n] = '\0';
		v = json_string(s);
		free(s);
	} else if (value != NULL) {
		json_error_t je;
		v = json_loads(value, JSON_DECODE_ANY, &je);
		if (v == NULL)
			fail_msg("bad test value %s: %s", value, je.text);
	}
	snprintf(buf, sizeof(buf), "%s", path);
	for (seg = buf; seg != NULL; seg = next) {
		char *br = strchr(seg, '[');
		next = strchr(seg, '.');
		if (next != NULL)
			*next++ = '\0';
		size_t idx = 0;
		bool indexed = br != NULL;
		if (indexed) {
			*br = '\0';
			idx = (size_t)atoi(br + 1);
		}
		json_t *child = json_object_get(cur, seg);
		if (indexed) {
			assert_non_null(child);
			if (next == NULL) {
				if (v == NULL)
					json_array_remove(child, idx);
				else
					json_array_set_new(child, idx, v);
				return;
			}
			child = json_array_get(child, idx);
		}
		if (next == NULL) {
			if (v == NULL)
				json_object_del(cur, seg);
			else
				json_object_set_new(cur, seg, v);
			return;
		}
		if (child == NULL) {
			/* Create the object the path goes through. */
			child = json_object();
			json_object_set_new(cur, seg, child);
		}
		cur = child;
	}
}

/* The full form of a type, from the table. */
static const char *full_of(const char *type)
{
	for (size_t i = 0; i < N_TYPE_CASES; i++)
		if (strcmp(type_cases[i].type, type) == 0)
			return type_cases[i].full;
	fail_msg("no type case for %s", type);
	return NULL;
}

/* The full form of type with one member changed, as a compact line; caller frees. */
static char *patched_line(const char *type, const char *path, const char *value)
{
	json_error_t je;
	json_t *root = json_loads(full_of(type), 0, &je);
	char *line;

	if (root == NULL)
		fail_msg("bad full form of %s: %s", type, je.text);
	json_patch(root, path, value);
	line = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	assert_non_null(line);
	return line;
}

/* One validation rule: change a full form, expect this message (invalid_event). */
struct reject_case {
	const char *type;
	const char *path;
	const char *value; /* JSON text, "#N" for N characters, NULL to delete */
	const char *message;
};

#define HS_REASON   "must be a string of 6, 8 or 10 digits"
#define LOC_REASON  "must be a UN/LOCODE: a country code and 3 of A-Z or 2-9, e.g. RWKGL"
#define TIME_REASON "must be RFC 3339 with an explicit offset, e.g. 2026-03-01T08:00:00+02:00"
#define DOC_REASON                                                                                 \
	"must be one of phytosanitary, certificate_of_origin, export_declaration, "                \
	"commercial_invoice, packing_list, bill_of_lading, air_waybill, quality_certificate"

/* Every rule of the protocol, refused with the field named. */
static const struct reject_case reject_cases[] = {
    /* Envelope fields on any type. */
    {"order.confirmed", "ocurred_at", "\"2026-03-01T08:00:00Z\"", "unknown field \"ocurred_at\""},
    {"order.confirmed", "occurred_at", NULL, "field \"occurred_at\": required"},
    {"order.confirmed", "Order", "\"x\"", "unknown field \"Order\""},
    {"order.confirmed", "exporter", "\"kivu-coffee\"", "unknown field \"exporter\""},
    {"order.confirmed", "shipment", "\"S1\"",
     "field \"shipment\": not allowed on order.confirmed (only on shipment.* and "
     "document.issued)"},
    {"order.created", "shipment", "\"S1\"",
     "field \"shipment\": not allowed on order.created (only on shipment.* and "
     "document.issued)"},
    {"event.retracted", "shipment", "\"S1\"",
     "field \"shipment\": not allowed on event.retracted (only on shipment.* and "
     "document.issued)"},
    {"shipment.departed", "shipment", NULL, "field \"shipment\": required"},
    {"shipment.departed", "shipment", "\"S 1\"",
     "field \"shipment\": must be 1-64 characters of A-Za-z0-9._/-"},
    {"document.issued", "shipment", "7", "field \"shipment\": must be a string"},
    {"shipment.departed", "location", "\"RWKGL\"", "field \"location\": must be an object"},
    {"shipment.departed", "location", "{}", "field \"location\": must have \"code\" or \"name\""},
    {"shipment.departed", "location.code", "\"rwkgl\"", "field \"location.code\": " LOC_REASON},
    {"shipment.departed", "location.code", "\"RWKG1\"", "field \"location.code\": " LOC_REASON},
    {"shipment.departed", "location.code", "\"RWKGLX\"", "field \"location.code\": " LOC_REASON},
    {"shipment.departed", "location.code", "\"QQKGL\"", "field \"location.code\": " LOC_REASON},
    {"shipment.departed", "location.code", "5", "field \"location.code\": must be a string"},
    {"shipment.departed", "location.name", "\"\"",
     "field \"location.name\": must be 1-128 characters"},
    {"shipment.departed", "location.name", "#129",
     "field \"location.name\": must be 1-128 characters"},
    {"shipment.departed", "location.lat", "-1.95", "unknown field \"location.lat\""},
    {"order.confirmed", "note", "\"\"", "field \"note\": must be 1-1024 characters"},
    {"order.confirmed", "note", "#1025", "field \"note\": must be 1-1024 characters"},
    {"order.confirmed", "note", "[\"a\"]", "field \"note\": must be a string"},
    {"order.confirmed", "ext", "\"x\"", "field \"ext\": must be an object"},
    {"order.confirmed", "ext", "null", "field \"ext\": must be an object"},
    /* order.created */
    {"order.created", "buyer", NULL, "field \"buyer\": required"},
    {"order.created", "buyer", "\"\"", "field \"buyer\": must be 1-128 characters"},
    {"order.created", "buyer", "#129", "field \"buyer\": must be 1-128 characters"},
    {"order.created", "buyer", "{\"name\":\"x\"}", "field \"buyer\": must be a string"},
    {"order.created", "channel", "#129", "field \"channel\": must be 1-128 characters"},
    {"order.created", "origin", NULL, "field \"origin\": required"},
    {"order.created", "origin", "\"rw\"",
     "field \"origin\": must be an ISO 3166-1 alpha-2 country code (two capital letters), "
     "e.g. RW"},
    {"order.created", "origin", "\"RWA\"",
     "field \"origin\": must be an ISO 3166-1 alpha-2 country code (two capital letters), "
     "e.g. RW"},
    {"order.created", "origin", "\"XK\"",
     "field \"origin\": is not an assigned ISO 3166-1 alpha-2 country code"},
    {"order.created", "destination", NULL, "field \"destination\": required"},
    {"order.created", "destination", "\"UK\"",
     "field \"destination\": is not an assigned ISO 3166-1 alpha-2 country code"},
    {"order.created", "destination", "\"RW\"",
     "field \"destination\": must differ from \"origin\" (orders are cross-border)"},
    {"order.created", "incoterm", "\"DAT\"",
     "field \"incoterm\": must be an Incoterm: EXW, FCA, CPT, CIP, DAP, DPU, DDP, FAS, FOB, "
     "CFR or CIF"},
    {"order.created", "incoterm", "\"fob\"",
     "field \"incoterm\": must be an Incoterm: EXW, FCA, CPT, CIP, DAP, DPU, DDP, FAS, FOB, "
     "CFR or CIF"},
    {"order.created", "incoterm", "1",
     "field \"incoterm\": must be an Incoterm: EXW, FCA, CPT, CIP, DAP, DPU, DDP, FAS, FOB, "
     "CFR or CIF"},
    {"order.created", "currency", "\"RMB\"",
     "field \"currency\": is not an ISO 4217 currency code"},
    {"order.created", "currency", "\"usd\"",
     "field \"currency\": must be an ISO 4217 currency code (three capital letters), e.g. USD"},
    {"order.created", "currency", NULL,
     "field \"currency\": required when a line has a unit_price"},
    {"order.created", "expected_delivery", "\"2026-02-29\"",
     "field \"expected_delivery\": no such date (month 01-12, day within the month)"},
    {"order.created", "expected_delivery", "\"2026-03-28T00:00:00Z\"",
     "field \"expected_delivery\": must be a date YYYY-MM-DD, e.g. 2026-11-20"},
    {"order.created", "lines", NULL, "field \"lines\": required"},
    {"order.created", "lines", "[]", "field \"lines\": must have 1-1000 items"},
    {"order.created", "lines", "{}", "field \"lines\": must be an array"},
    {"order.created", "lines[1]", "\"KVH-250\"", "field \"lines[1]\": must be an object"},
    {"order.created", "lines[0].colour", "\"red\"", "unknown field \"lines[0].colour\""},
    {"order.created", "lines[0].sku", NULL, "field \"lines[0].sku\": required"},
    {"order.created", "lines[0].sku", "#65", "field \"lines[0].sku\": must be 1-64 characters"},
    {"order.created", "lines[1].product", "\"\"",
     "field \"lines[1].product\": must be 1-256 characters"},
    {"order.created", "lines[1].product", "#257",
     "field \"lines[1].product\": must be 1-256 characters"},
    {"order.created", "lines[2].hs_code", NULL, "field \"lines[2].hs_code\": required"},
    {"order.created", "lines[2].hs_code", "90111", "field \"lines[2].hs_code\": " HS_REASON},
    {"order.created", "lines[2].hs_code", "\"09011\"", "field \"lines[2].hs_code\": " HS_REASON},
    {"order.created", "lines[2].hs_code", "\"0901110\"", "field \"lines[2].hs_code\": " HS_REASON},
    {"order.created", "lines[2].hs_code", "\"0901.11\"", "field \"lines[2].hs_code\": " HS_REASON},
    {"order.created", "lines[2].hs_code", "\"090111000000\"",
     "field \"lines[2].hs_code\": " HS_REASON},
    {"order.created", "lines[0].quantity", NULL, "field \"lines[0].quantity\": required"},
    {"order.created", "lines[0].quantity", "0",
     "field \"lines[0].quantity\": must be a number greater than 0"},
    {"order.created", "lines[0].quantity", "-2.5",
     "field \"lines[0].quantity\": must be a number greater than 0"},
    {"order.created", "lines[0].quantity", "\"12\"",
     "field \"lines[0].quantity\": must be a number greater than 0"},
    {"order.created", "lines[0].unit", NULL, "field \"lines[0].unit\": required"},
    {"order.created", "lines[0].unit", "\"KG\"",
     "field \"lines[0].unit\": must be one of kg, g, t, l, bag, box, carton, pallet, unit"},
    {"order.created", "lines[0].unit", "\"kgs\"",
     "field \"lines[0].unit\": must be one of kg, g, t, l, bag, box, carton, pallet, unit"},
    {"order.created", "lines[0].unit_price", "-0.01",
     "field \"lines[0].unit_price\": must be a number, 0 or more"},
    {"order.created", "lines[0].unit_price", "\"4.20\"",
     "field \"lines[0].unit_price\": must be a number, 0 or more"},
    /* order.cancelled */
    {"order.cancelled", "reason", "#257", "field \"reason\": must be 1-256 characters"},
    {"order.cancelled", "reason", "true", "field \"reason\": must be a string"},
    /* shipment.booked */
    {"shipment.booked", "mode", NULL, "field \"mode\": required"},
    {"shipment.booked", "mode", "\"ship\"",
     "field \"mode\": must be one of air, sea, road, rail, multimodal"},
    {"shipment.booked", "carrier", "#129", "field \"carrier\": must be 1-128 characters"},
    {"shipment.booked", "tracking", "#65", "field \"tracking\": must be 1-64 characters"},
    {"shipment.booked", "consignee", "#129", "field \"consignee\": must be 1-128 characters"},
    {"shipment.booked", "eta", "\"2026-03-20\"", "field \"eta\": " TIME_REASON},
    {"shipment.booked", "eta", "1774000000", "field \"eta\": " TIME_REASON},
    {"shipment.booked", "eta", "\"2026-03-32T00:00:00Z\"",
     "field \"eta\": no such date (month 01-12, day within the month)"},
    {"shipment.booked", "received_by", "\"x\"", "unknown field \"received_by\""},
    /* milestones and the rest of shipment.* */
    {"shipment.departed", "mode", "\"air\"", "unknown field \"mode\""},
    {"shipment.delivered", "received_by", "\"\"",
     "field \"received_by\": must be 1-128 characters"},
    {"shipment.checkpoint", "location", NULL, "field \"location\": required"},
    {"shipment.checkpoint", "location", "{\"name\":\"\"}",
     "field \"location.name\": must be 1-128 characters"},
    {"shipment.checkpoint", "location", "{}", "field \"location\": must have \"code\" or \"name\""},
    {"shipment.customs_hold", "stage", NULL, "field \"stage\": required"},
    {"shipment.customs_hold", "stage", "\"transit\"", "field \"stage\": must be export or import"},
    {"shipment.customs_hold", "reason", "#257", "field \"reason\": must be 1-256 characters"},
    {"shipment.customs_released", "stage", NULL, "field \"stage\": required"},
    {"shipment.customs_released", "stage", "\"Import\"",
     "field \"stage\": must be export or import"},
    {"shipment.customs_released", "reason", "\"x\"", "unknown field \"reason\""},
    {"shipment.exception", "reason", NULL, "field \"reason\": required"},
    {"shipment.exception", "reason", "\"broken\"",
     "field \"reason\": must be one of damaged, lost, refused, delayed, other"},
    {"shipment.exception_resolved", "reason", "\"damaged\"", "unknown field \"reason\""},
    {"shipment.eta_changed", "eta", NULL, "field \"eta\": required"},
    {"shipment.eta_changed", "eta", "\"next week\"", "field \"eta\": " TIME_REASON},
    /* document.issued */
    {"document.issued", "document", NULL, "field \"document\": required"},
    {"document.issued", "document", "\"invoice\"", "field \"document\": " DOC_REASON},
    {"document.issued", "number", "#65", "field \"number\": must be 1-64 characters"},
    /* event.retracted */
    {"event.retracted", "retracts", NULL, "field \"retracts\": required"},
    {"event.retracted", "retracts", "\"s 4\"",
     "field \"retracts\": must be 1-128 characters of A-Za-z0-9._:-"},
    {"event.retracted", "retracts", "\"r-1\"",
     "field \"retracts\": must not be the event's own id"},
    {"event.retracted", "reason", "#257", "field \"reason\": must be 1-256 characters"},
};

/* Every rule refuses its bad value with invalid_event and a message naming the field. */
static void test_event_rejects(void **state)
{
	(void)state;

	for (size_t i = 0; i < sizeof(reject_cases) / sizeof(reject_cases[0]); i++) {
		const struct reject_case *rc = &reject_cases[i];
		char *line = patched_line(rc->type, rc->path, rc->value);
		struct request rq;
		struct request_error err;

		if (parse(line, &rq, &err))
			fail_msg("case %zu accepted: %s", i, line);
		if (strcmp(err.code, ERR_INVALID_EVENT) != 0 ||
		    strcmp(err.message, rc->message) != 0)
			fail_msg("case %zu (%s %s): got %s: %s\nwanted: %s", i, rc->type, rc->path,
			         err.code, err.message, rc->message);
		/* The id is still echoed, so the reply names the event. */
		assert_true(err.has_id);
		assert_null(rq.root);
		free(line);
	}
}

/* Values at the edge of each rule are accepted. */
static const struct reject_case accept_cases[] = {
    {"order.created", "buyer", "#128", NULL},
    {"order.created", "channel", "#128", NULL},
    {"order.created", "lines[0].sku", "#64", NULL},
    {"order.created", "lines[0].product", "#256", NULL},
    {"order.created", "lines[0].quantity", "0.001", NULL},
    {"order.created", "lines[0].quantity", "1e6", NULL},
    {"order.created", "lines[0].unit_price", "0.0", NULL},
    {"order.created", "lines[0].unit", "\"pallet\"", NULL},
    /* Every unit of PROTOCOL.md 5.2, the list's first and last too. */
    {"order.created", "lines[0].unit", "\"kg\"", NULL},
    {"order.created", "lines[0].unit", "\"g\"", NULL},
    {"order.created", "lines[0].unit", "\"t\"", NULL},
    {"order.created", "lines[0].unit", "\"l\"", NULL},
    {"order.created", "lines[0].unit", "\"bag\"", NULL},
    {"order.created", "lines[0].unit", "\"box\"", NULL},
    {"order.created", "lines[0].unit", "\"carton\"", NULL},
    {"order.created", "lines[0].unit", "\"unit\"", NULL},
    {"order.created", "lines[2].hs_code", "\"09011100\"", NULL},
    {"order.created", "lines[2].unit_price", "7", NULL},
    {"order.created", "origin", "\"KE\"", NULL},
    {"order.created", "destination", "\"HK\"", NULL},
    {"order.created", "currency", "\"CNY\"", NULL},
    {"order.created", "currency", "\"RWF\"", NULL},
    {"order.created", "incoterm", "\"EXW\"", NULL},
    {"order.created", "expected_delivery", "\"2028-02-29\"", NULL},
    {"order.created", "ext", "{\"anything\":[null,true,1.5,{\"deep\":{}}]}", NULL},
    {"order.confirmed", "note", "#1024", NULL},
    {"order.confirmed", "location", "{\"name\":\"Kigali office\"}", NULL},
    {"order.confirmed", "location", "{\"code\":\"XZ2AB\"}", NULL},
    {"shipment.booked", "tracking", "#64", NULL},
    {"shipment.booked", "eta", "\"2030-01-01T00:00:00Z\"", NULL}, /* an eta may be far ahead */
    {"shipment.checkpoint", "location", "{\"code\":\"CNSHA\"}", NULL},
    {"shipment.customs_hold", "reason", "#256", NULL},
    {"document.issued", "shipment", NULL, NULL}, /* a document for the whole order */
    {"document.issued", "document", "\"quality_certificate\"", NULL},
    {"document.issued", "number", "#64", NULL},
    {"event.retracted", "retracts", "\"o-1:part.2_x\"", NULL},
};

/* Edge values pass. */
static void test_event_accepts(void **state)
{
	(void)state;

	for (size_t i = 0; i < sizeof(accept_cases) / sizeof(accept_cases[0]); i++) {
		const struct reject_case *ac = &accept_cases[i];
		char *line = patched_line(ac->type, ac->path, ac->value);
		struct request rq;
		struct request_error err;

		if (!parse(line, &rq, &err))
			fail_msg("case %zu refused: %s: %s\n%s", i, err.code, err.message, line);
		request_clear(&rq);
		free(line);
	}
}

/* With no currency, a price-less order passes; lines are bounded at 1000 items. */
static void test_lines_bounds(void **state)
{
	json_error_t je;
	json_t *root = json_loads(full_of("order.created"), 0, &je);
	json_t *lines, *line;
	char *text;
	struct request rq;
	struct request_error err;
	(void)state;

	assert_non_null(root);
	lines = json_object_get(root, "lines");
	json_object_del(root, "currency");
	json_object_del(json_array_get(lines, 0), "unit_price");
	json_object_del(json_array_get(lines, 1), "unit_price");
	text = json_dumps(root, JSON_COMPACT);
	assert_true(parse(text, &rq, &err));
	request_clear(&rq);
	free(text);

	/* The third line is the one with the message's index. */
	json_object_set_new(root, "currency", json_string("USD"));
	line = json_array_get(lines, 2);
	json_object_set_new(line, "unit_price", json_real(-1));
	text = json_dumps(root, JSON_COMPACT);
	expect_error(text, ERR_INVALID_EVENT,
	             "field \"lines[2].unit_price\": must be a number, 0 or more");
	free(text);
	json_object_set_new(line, "unit_price", json_real(1));

	while (json_array_size(lines) < 1000)
		json_array_append(lines, line);
	text = json_dumps(root, JSON_COMPACT);
	assert_true(parse(text, &rq, &err));
	request_clear(&rq);
	free(text);
	/* The error names the last line's index, 999, when that is the bad one. */
	json_array_set_new(lines, 999, json_string("x"));
	text = json_dumps(root, JSON_COMPACT);
	expect_error(text, ERR_INVALID_EVENT, "field \"lines[999]\": must be an object");
	free(text);
	json_array_append(lines, line);
	text = json_dumps(root, JSON_COMPACT);
	expect_error(text, ERR_INVALID_EVENT, "field \"lines\": must have 1-1000 items");
	free(text);
	json_decref(root);
}

/* A line that must parse. */
static void expect_ok(const char *line)
{
	struct request rq;
	struct request_error err;

	if (!parse(line, &rq, &err))
		fail_msg("refused: %s: %s\n%s", err.code, err.message, line);
	request_clear(&rq);
}

/*
 * Numbers jansson takes but a double or PostgreSQL's numeric cannot hold
 * are malformed_json, at the position just past the number, as jansson
 * gives it; the bounds were read from PostgreSQL 15 ('1e-16383'::jsonb is
 * taken, '1e-16384' and '0e-20000' are not).
 */
static void test_number_range(void **state)
{
	char *line;
	size_t n;
	(void)state;

	/* Too small for a double: it would read back as 0. */
	expect_error(ENV("order.confirmed", "e1") ",\"ext\":{\"x\":1e-20000}}", ERR_MALFORMED_JSON,
	             "invalid JSON at position 118: real number exponent out of range");
	expect_error(ENV("order.confirmed", "e1") ",\"ext\":{\"x\":1e-400}}", ERR_MALFORMED_JSON,
	             "invalid JSON at position 116: real number underflow");
	expect_error(ENV("order.confirmed", "e1") ",\"ext\":{\"x\":[-0.00000012e-301]}}",
	             ERR_MALFORMED_JSON, "invalid JSON at position 127: real number underflow");
	expect_error("{\"a\":4e-324}", ERR_MALFORMED_JSON,
	             "invalid JSON at position 11: real number underflow");
	expect_error("{\"a\":1E-308}", ERR_MALFORMED_JSON,
	             "invalid JSON at position 11: real number underflow");
	expect_error("{\"type\":\"order.created\",\"lines\":[{\"unit_price\":1e-20000}]}",
	             ERR_MALFORMED_JSON,
	             "invalid JSON at position 55: real number exponent out of range");
	/* PostgreSQL's numeric: zero too, and at most 16383 decimal places. */
	expect_error("{\"a\":0e-20000}", ERR_MALFORMED_JSON,
	             "invalid JSON at position 13: real number exponent out of range");
	expect_error("{\"a\":0.0e99999999999999999999}", ERR_MALFORMED_JSON,
	             "invalid JSON at position 29: real number exponent out of range");
	expect_error("{\"a\":0e-16384}", ERR_MALFORMED_JSON,
	             "invalid JSON at position 13: real number exponent out of range");
	expect_error("{\"a\":1.5e-16383}", ERR_MALFORMED_JSON,
	             "invalid JSON at position 15: real number has more than 16383 decimal places");
	/* 1. and 16384 zeros is 1.0 to a double, too many places to PostgreSQL; 16383 fit. */
	line = malloc(16384 + 256);
	assert_non_null(line);
	n = (size_t)sprintf(line, "%s", ENV("order.confirmed", "e1") ",\"ext\":{\"a\":1.");
	assert_int_equal(n, 112);
	memset(line + n, '0', 16384);
	strcpy(line + n + 16384, "}}");
	expect_error(line, ERR_MALFORMED_JSON,
	             "invalid JSON at position 16496: real number has more than 16383 decimal "
	             "places");
	strcpy(line + n + 16383, "}}");
	expect_ok(line);
	free(line);

	/* What both hold is taken, and numbers inside strings are text. */
	expect_ok(ENV("order.confirmed", "e1") ",\"ext\":{\"a\":1e-307,\"b\":-1.5e-306,"
	                                       "\"c\":1.7e308,\"d\":0e-16383,\"e\":0.0,\"f\":-0,"
	                                       "\"g\":0e16383,\"h\":123.456e-300,\"i\":10E+2,"
	                                       "\"j\":0.001e-304,\"k\":9223372036854775807}}");
	expect_ok(ENV("order.confirmed", "e1") ",\"note\":\"1e-20000 \\\"1e-20000\\\\\","
	                                       "\"ext\":{\"1e-400\":\"\\\\\\\"0e-99999\"}}");
}

/*
 * The error reply to line, written as the daemon writes it (conn.c
 * format_error: a 512-byte buffer, type, id, code, message), must come
 * out whole and carry exactly message.
 */
static void expect_whole_reply(const char *line, const char *code, const char *message)
{
	char buf[512];
	struct jsonw w;
	struct request rq;
	struct request_error err;
	json_t *reply;

	if (parse(line, &rq, &err))
		fail_msg("accepted: %s", line);
	assert_string_equal(err.code, code);
	assert_string_equal(err.message, message);
	jsonw_init(&w, buf, sizeof(buf));
	jsonw_open(&w);
	jsonw_str(&w, "type", "error");
	jsonw_str(&w, "id", err.has_id ? err.id : NULL);
	jsonw_str(&w, "code", "too_many_connections"); /* the longest code */
	jsonw_str(&w, "message", err.message);
	jsonw_close(&w);
	assert_false(w.truncated);
	reply = json_loads(buf, 0, NULL);
	assert_non_null(reply);
	assert_string_equal(json_string_value(json_object_get(reply, "message")), message);
	json_decref(reply);
}

/*
 * Quoted line text is bounded by what it takes escaped in the reply, so
 * a message quoting control characters beside the longest id is whole:
 * 64 \u0001 once came to 384 bytes and cut the reply before the closing
 * quote.
 */
static void test_message_fits_reply(void **state)
{
	char id[129], ctl[64 * 6 + 1], line[1024], want[256];
	(void)state;

	memset(id, 'i', 128);
	id[128] = '\0';
	for (size_t i = 0; i < 64; i++)
		memcpy(ctl + 6 * i, "\\u0001", 6);
	ctl[64 * 6] = '\0';
	/* 10 of them take 60 bytes escaped; an 11th would pass 64. */
	snprintf(want, sizeof(want), "unknown field \"%s...\"",
	         "\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01");
	snprintf(line, sizeof(line),
	         "{\"type\":\"order.confirmed\",\"id\":\"%s\",\"occurred_at\":"
	         "\"2026-03-01T08:00:00Z\",\"order\":\"PO-1\",\"%s\":1}",
	         id, ctl);
	expect_whole_reply(line, ERR_INVALID_EVENT, want);
	/* Nested, with a path in front. */
	snprintf(want, sizeof(want), "unknown field \"location.%s...\"",
	         "\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01");
	snprintf(
	    line, sizeof(line),
	    "{\"type\":\"order.confirmed\",\"id\":\"%s\",\"occurred_at\":"
	    "\"2026-03-01T08:00:00Z\",\"order\":\"PO-1\",\"location\":{\"name\":\"x\",\"%s\":1}}",
	    id, ctl);
	expect_whole_reply(line, ERR_INVALID_EVENT, want);
	/* Quotes and backslashes take two bytes each: 32 of them fit. */
	snprintf(line, sizeof(line), "{\"type\":\"%s\",\"id\":\"%s\"}",
	         "\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\""
	         "\\\"\\\""
	         "\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"",
	         id);
	expect_whole_reply(
	    line, ERR_UNKNOWN_TYPE,
	    "unknown type \"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"...\"");
	/* Plain text is cut at 64 bytes as before. */
	memset(ctl, 'k', 70);
	ctl[70] = '\0';
	snprintf(line, sizeof(line), "{\"type\":\"%s\"}", ctl);
	snprintf(want, sizeof(want), "unknown type \"%.64s...\"", ctl);
	expect_whole_reply(line, ERR_UNKNOWN_TYPE, want);
}

/* With several problems, the first in the fixed order is the one reported. */
static void test_check_order(void **state)
{
	(void)state;

	/* Unknown members before missing ones: the typo is named. */
	expect_error("{\"type\":\"order.confirmed\",\"id\":\"e1\",\"ocurred_at\":"
	             "\"2026-03-01T08:00:00Z\",\"order\":\"PO-1\"}",
	             ERR_INVALID_EVENT, "unknown field \"ocurred_at\"");
	/* Envelope before type fields. */
	expect_error("{\"type\":\"order.created\",\"id\":\"e1\",\"occurred_at\":"
	             "\"2026-03-01T08:00:00Z\",\"order\":\"PO 1\"}",
	             ERR_INVALID_EVENT,
	             "field \"order\": must be 1-64 characters of A-Za-z0-9._/-");
	/* Type fields in table order: buyer before origin before lines. */
	expect_error("{\"type\":\"order.created\",\"id\":\"e1\",\"occurred_at\":"
	             "\"2026-03-01T08:00:00Z\",\"order\":\"PO-1\"}",
	             ERR_INVALID_EVENT, "field \"buyer\": required");
	expect_error("{\"type\":\"order.created\",\"id\":\"e1\",\"occurred_at\":"
	             "\"2026-03-01T08:00:00Z\",\"order\":\"PO-1\",\"buyer\":\"B\"}",
	             ERR_INVALID_EVENT, "field \"origin\": required");
	/* A shipment where none is allowed: unknown members and the envelope come first. */
	expect_error("{\"type\":\"order.confirmed\",\"id\":\"e1\",\"ocurred_at\":"
	             "\"2026-03-01T08:00:00Z\",\"order\":\"PO-1\",\"shipment\":\"S1\"}",
	             ERR_INVALID_EVENT, "unknown field \"ocurred_at\"");
	expect_error("{\"type\":\"order.cancelled\",\"id\":\"e1\",\"occurred_at\":"
	             "\"2026-03-01T08:00:00Z\",\"order\":\"PO 1\",\"shipment\":\"S1\"}",
	             ERR_INVALID_EVENT,
	             "field \"order\": must be 1-64 characters of A-Za-z0-9._/-");
	expect_error("{\"type\":\"event.retracted\",\"id\":\"e1\",\"occurred_at\":"
	             "\"2026-03-01T08:00:00Z\",\"order\":\"PO-1\",\"shipment\":\"S1\"}",
	             ERR_INVALID_EVENT,
	             "field \"shipment\": not allowed on event.retracted (only on shipment.* and "
	             "document.issued)");
	/* Shipment after the envelope, before the type's own fields. */
	expect_error("{\"type\":\"shipment.booked\",\"id\":\"e1\",\"occurred_at\":"
	             "\"2026-03-01T08:00:00Z\",\"order\":\"PO-1\"}",
	             ERR_INVALID_EVENT, "field \"shipment\": required");
	/* A long unknown key is cut, with its path. */
	expect_error(
	    "{\"type\":\"order.confirmed\",\"id\":\"e1\",\"occurred_at\":"
	    "\"2026-03-01T08:00:00Z\",\"order\":\"PO-1\",\"location\":{\"code\":\"RWKGL\","
	    "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\":1}}",
	    ERR_INVALID_EVENT,
	    "unknown field \"location.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaa...\"");
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
	expect_event_error("order.confirmed", NULL, at, "\"PO-1\"", NULL, "field \"id\": required");
	expect_event_error("order.confirmed", "7", at, "\"PO-1\"", NULL,
	                   "field \"id\": must be a string");
	expect_event_error("order.confirmed", "\"\"", at, "\"PO-1\"", NULL,
	                   "field \"id\": must be 1-128 characters of A-Za-z0-9._:-");
	expect_event_error("order.confirmed", "\"a b\"", at, "\"PO-1\"", NULL,
	                   "field \"id\": must be 1-128 characters of A-Za-z0-9._:-");
	memset(longid, 'i', 130); /* quote + 129 characters */
	longid[0] = '"';
	longid[130] = '"';
	longid[131] = '\0';
	expect_event_error("order.confirmed", longid, at, "\"PO-1\"", NULL,
	                   "field \"id\": must be 1-128 characters of A-Za-z0-9._:-");

	/* occurred_at */
	expect_event_error("order.confirmed", "\"e1\"", NULL, "\"PO-1\"", NULL,
	                   "field \"occurred_at\": required");
	expect_event_error("order.confirmed", "\"e1\"", "1772344800000", "\"PO-1\"", NULL,
	                   "field \"occurred_at\": must be a string");
	snprintf(msg, sizeof(msg), "field \"occurred_at\": %s", rfc);
	expect_event_error("order.confirmed", "\"e1\"", "\"2026-03-01T08:00:00\"", "\"PO-1\"", NULL,
	                   msg);
	expect_event_error("order.confirmed", "\"e1\"", "\"2026-03-01 08:00:00Z\"", "\"PO-1\"",
	                   NULL, msg);
	expect_event_error(
	    "order.confirmed", "\"e1\"", "\"2026-02-29T08:00:00Z\"", "\"PO-1\"", NULL,
	    "field \"occurred_at\": no such date (month 01-12, day within the month)");
	/* PostgreSQL's limit, told to the sender rather than met in a batch. */
	expect_event_error("order.confirmed", "\"e1\"", "\"2026-03-01T08:00:00+16:00\"", "\"PO-1\"",
	                   NULL, "field \"occurred_at\": offset must be within -15:59..+15:59");

	/* order */
	expect_event_error("order.confirmed", "\"e1\"", at, NULL, NULL,
	                   "field \"order\": required");
	expect_event_error("order.confirmed", "\"e1\"", at, "{}", NULL,
	                   "field \"order\": must be a string");
	expect_event_error("order.confirmed", "\"e1\"", at, "\"PO:1\"", NULL,
	                   "field \"order\": must be 1-64 characters of A-Za-z0-9._/-");
	expect_event_error("shipment.departed", "\"e1\"", at, "\"\"", "\"S1\"",
	                   "field \"order\": must be 1-64 characters of A-Za-z0-9._/-");

	/* shipment: required on shipment.*, checked on document.issued, refused elsewhere */
	expect_event_error("document.issued", "\"e1\"", at, "\"PO-1\"", "\"S 1\"",
	                   "field \"shipment\": must be 1-64 characters of A-Za-z0-9._/-");
	expect_event_error("shipment.arrived", "\"e1\"", at, "\"PO-1\"", "null",
	                   "field \"shipment\": must be a string");
	expect_event_error("shipment.delivered", "\"e1\"", at, "\"PO-1\"", NULL,
	                   "field \"shipment\": required");
	expect_event_error("shipment.delivered", "\"e1\"", at, "\"PO-1\"", "\"\"",
	                   "field \"shipment\": must be 1-64 characters of A-Za-z0-9._/-");
	expect_event_error("order.cancelled", "\"e1\"", at, "\"PO-1\"", "\"S1\"",
	                   "field \"shipment\": not allowed on order.cancelled (only on shipment.* "
	                   "and document.issued)");
}

/* Every shipment.* type needs its shipment; the others take or refuse it as documented. */
static void test_shipment_policy(void **state)
{
	char line[512];
	struct request rq;
	struct request_error err;
	(void)state;

	for (size_t i = 0; i < N_TYPE_CASES; i++) {
		const char *type = type_cases[i].type;
		json_error_t je;
		json_t *root = json_loads(type_cases[i].minimal, 0, &je);
		bool is_ship = strncmp(type, "shipment.", 9) == 0;
		bool optional = strcmp(type, "document.issued") == 0;
		char *text;

		assert_non_null(root);
		json_object_set_new(root, "shipment", json_string("SHP.9"));
		text = json_dumps(root, JSON_COMPACT);
		bool ok = parse(text, &rq, &err);
		assert_int_equal(ok, is_ship || optional);
		if (ok) {
			assert_string_equal(rq.u.event.shipment, "SHP.9");
			request_clear(&rq);
		} else {
			snprintf(line, sizeof(line),
			         "field \"shipment\": not allowed on %s (only on shipment.* and "
			         "document.issued)",
			         type);
			assert_string_equal(err.message, line);
		}
		free(text);
		json_object_del(root, "shipment");
		text = json_dumps(root, JSON_COMPACT);
		ok = parse(text, &rq, &err);
		assert_int_equal(ok, !is_ship);
		if (ok)
			request_clear(&rq);
		else
			assert_string_equal(err.message, "field \"shipment\": required");
		free(text);
		json_decref(root);
	}
}

/* occurred_at may lead the server clock by 24 h but not more; the past is fine. */
static void test_future_limit(void **state)
{
	char line[256];
	struct request rq;
	struct request_error err;
	(void)state;

	/* NOW + 24 h exactly: 2026-03-02T06:00:00Z. */
	event_line(line, sizeof(line), "order.confirmed", "\"e1\"", "\"2026-03-02T06:00:00Z\"",
	           "\"PO-1\"", NULL);
	assert_true(parse(line, &rq, &err));
	assert_int_equal(rq.u.event.occurred_ms, NOW + DAY_MS);
	request_clear(&rq);
	/* The same instant written with another offset. */
	event_line(line, sizeof(line), "order.confirmed", "\"e1\"", "\"2026-03-02T14:00:00+08:00\"",
	           "\"PO-1\"", NULL);
	assert_true(parse(line, &rq, &err));
	request_clear(&rq);
	/* One millisecond more is refused, and the id is still echoed. */
	event_line(line, sizeof(line), "order.confirmed", "\"e1\"", "\"2026-03-02T06:00:00.001Z\"",
	           "\"PO-1\"", NULL);
	assert_false(parse(line, &rq, &err));
	assert_string_equal(err.code, ERR_INVALID_EVENT);
	assert_string_equal(err.message,
	                    "field \"occurred_at\": is more than 24 h ahead of the server clock");
	assert_true(err.has_id);
	assert_string_equal(err.id, "e1");
	/* A year ahead, and ahead only through the offset. */
	event_line(line, sizeof(line), "order.confirmed", "\"e1\"", "\"2027-03-01T06:00:00Z\"",
	           "\"PO-1\"", NULL);
	assert_false(parse(line, &rq, &err));
	event_line(line, sizeof(line), "order.confirmed", "\"e1\"", "\"2026-03-02T06:00:00-00:01\"",
	           "\"PO-1\"", NULL);
	assert_false(parse(line, &rq, &err));
	/* Far in the past is accepted. */
	event_line(line, sizeof(line), "order.confirmed", "\"e1\"", "\"1999-12-31T23:59:59Z\"",
	           "\"PO-1\"", NULL);
	assert_true(parse(line, &rq, &err));
	request_clear(&rq);
	/* The clock is an input: with now far in the future the same line passes. */
	event_line(line, sizeof(line), "order.confirmed", "\"e1\"", "\"2027-03-01T06:00:00Z\"",
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

/* Key order, white space and escape spelling do not change the canonical form; values do.
 */
static void test_canonical(void **state)
{
	size_t la, lb, lc;
	(void)state;

	char *a = canonical_of("{\"type\":\"order.confirmed\",\"id\":\"e1\",\"order\":\"PO-1\","
	                       "\"occurred_at\":\"2026-03-01T08:00:00+02:00\","
	                       "\"ext\":{\"name\":\"Y\\u00fcnnan Spice\",\"city\":\"昆明\"}}",
	                       &la);
	char *b = canonical_of(
	    " {\r\n\t\"occurred_at\" : \"2026-03-01T08:00:00+02:00\" ,\n"
	    "  \"ext\" : { \"city\" : \"\\u6606\\u660e\", \"name\" : \"Yünnan Spice\" },"
	    "\"order\":\"PO-1\", \"id\":\"e1\",  \"type\":\"order.confirmed\" }  ",
	    &lb);
	assert_int_equal(la, lb);
	assert_string_equal(a, b);
	assert_int_equal(strlen(a), la);
	assert_string_equal(a, "{\"ext\":{\"city\":\"昆明\",\"name\":\"Yünnan Spice\"},"
	                       "\"id\":\"e1\",\"occurred_at\":\"2026-03-01T08:00:00+02:00\","
	                       "\"order\":\"PO-1\",\"type\":\"order.confirmed\"}");

	/* One value differs, deep inside: different form. */
	char *c = canonical_of("{\"type\":\"order.confirmed\",\"id\":\"e1\",\"order\":\"PO-1\","
	                       "\"occurred_at\":\"2026-03-01T08:00:00+02:00\","
	                       "\"ext\":{\"name\":\"Yunnan Spice\",\"city\":\"昆明\"}}",
	                       &lc);
	assert_string_not_equal(a, c);
	/* The same instant with another offset is a different event text. */
	char *d = canonical_of("{\"type\":\"order.confirmed\",\"id\":\"e1\",\"order\":\"PO-1\","
	                       "\"occurred_at\":\"2026-03-01T06:00:00Z\","
	                       "\"ext\":{\"name\":\"Yünnan Spice\",\"city\":\"昆明\"}}",
	                       NULL);
	assert_string_not_equal(a, d);
	free(a);
	free(b);
	free(c);
	free(d);

	/* Reals keep their shortest exact text; integers and reals stay apart. */
	char *e = canonical_of(
	    "{\"type\":\"order.confirmed\",\"id\":\"e1\",\"order\":\"PO-1\","
	    "\"occurred_at\":\"2026-03-01T08:00:00Z\",\"ext\":{\"p\":7.9,\"q\":0.1,\"r\":0.115,"
	    "\"t\":1e-7,\"n\":1896.0,\"i\":240,\"z\":-0.0,\"x\":0.30000000000000004,"
	    "\"m\":1.7976931348623157e308,\"s\":1e-307,\"k\":1E+3,\"w\":[2.50,{\"b\":1,\"a\":0.5}]}"
	    "}",
	    &la);
	assert_string_equal(e, "{\"ext\":{\"i\":240,\"k\":1e3,\"m\":1.7976931348623157e308,"
	                       "\"n\":1896.0,\"p\":7.9,\"q\":0.1,\"r\":0.115,\"s\":1e-307,"
	                       "\"t\":1e-7,\"w\":[2.5,{\"a\":0.5,\"b\":1}],"
	                       "\"x\":0.30000000000000004,\"z\":-0.0},\"id\":\"e1\","
	                       "\"occurred_at\":\"2026-03-01T08:00:00Z\",\"order\":\"PO-1\","
	                       "\"type\":\"order.confirmed\"}");
	assert_int_equal(strlen(e), la);
	/* It reads back as the same values. */
	json_t *back = json_loads(e, 0, NULL);
	struct request rq;
	struct request_error err;
	assert_true(parse(e, &rq, &err));
	assert_true(json_equal(back, rq.root));
	request_clear(&rq);
	json_decref(back);
	free(e);

	/* No tree, no form. */
	struct request empty;
	memset(&empty, 0, sizeof(empty));
	assert_null(request_event_canonical(&empty, &la));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_hello_ok),
	    cmocka_unit_test(test_hello_errors),
	    cmocka_unit_test(test_hello_flag),
	    cmocka_unit_test(test_hello_operator),
	    cmocka_unit_test(test_subscribe_ok),
	    cmocka_unit_test(test_subscribe_errors),
	    cmocka_unit_test(test_ping),
	    cmocka_unit_test(test_malformed_json),
	    cmocka_unit_test(test_number_range),
	    cmocka_unit_test(test_deep_nesting),
	    cmocka_unit_test(test_not_an_object),
	    cmocka_unit_test(test_type_field),
	    cmocka_unit_test(test_unknown_type),
	    cmocka_unit_test(test_event_types_ok),
	    cmocka_unit_test(test_event_rejects),
	    cmocka_unit_test(test_event_accepts),
	    cmocka_unit_test(test_lines_bounds),
	    cmocka_unit_test(test_check_order),
	    cmocka_unit_test(test_message_fits_reply),
	    cmocka_unit_test(test_envelope_errors),
	    cmocka_unit_test(test_shipment_policy),
	    cmocka_unit_test(test_future_limit),
	    cmocka_unit_test(test_has_id),
	    cmocka_unit_test(test_canonical),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
