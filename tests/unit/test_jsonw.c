/*
 * test_jsonw.c - unit tests for lib/jsonw.c.
 *
 * Replies written by jsonw are parsed back with jansson and compared value
 * by value.  The cut-reply tests write the same reply into every buffer size
 * from 0 up, each followed by a guard area, and check that the guard is never
 * touched, that every reply that fits at all is a valid JSON line, and that a
 * reply which lost anything says so through `truncated`.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "jsonw.h"

#define GUARD      64
#define GUARD_BYTE 0xa5

/* Parse a reply line (which must end in "}\n") into a jansson object. */
static json_t *parse_line(const char *buf, size_t len)
{
	json_error_t je;
	json_t *j;

	assert_true(len >= 3);
	assert_int_equal(buf[len - 1], '\n');
	assert_int_equal(buf[len - 2], '}');
	assert_int_equal(strlen(buf), len);
	j = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
	if (j == NULL)
		fail_msg("not JSON: %s (%.*s)", je.text, (int)len, buf);
	assert_true(json_is_object(j));
	return j;
}

/* An ack-like reply parses back to the same values. */
static void test_ack_round_trip(void **state)
{
	char buf[256];
	struct jsonw w;
	(void)state;

	jsonw_init(&w, buf, sizeof(buf));
	jsonw_open(&w);
	jsonw_str(&w, "type", "ack");
	jsonw_str(&w, "id", "evt-2026-0001");
	jsonw_int(&w, "seq", 1234567890123LL);
	jsonw_int(&w, "neg", -42);
	jsonw_null(&w, "shipment");
	jsonw_str(&w, "none", NULL);
	jsonw_raw(&w, "dup", "false", 5);
	size_t len = jsonw_close(&w);
	assert_false(w.truncated);

	json_t *j = parse_line(buf, len);
	assert_int_equal(json_object_size(j), 7);
	assert_string_equal(json_string_value(json_object_get(j, "type")), "ack");
	assert_string_equal(json_string_value(json_object_get(j, "id")), "evt-2026-0001");
	assert_int_equal(json_integer_value(json_object_get(j, "seq")), 1234567890123LL);
	assert_int_equal(json_integer_value(json_object_get(j, "neg")), -42);
	assert_true(json_is_null(json_object_get(j, "shipment")));
	assert_true(json_is_null(json_object_get(j, "none")));
	assert_true(json_is_false(json_object_get(j, "dup")));
	json_decref(j);
}

/* An error-like reply with a raw object member parses back to the same values. */
static void test_error_round_trip(void **state)
{
	char buf[512];
	struct jsonw w;
	const char *msg = "field \"occurred_at\": must be RFC 3339 with an explicit offset";
	(void)state;

	jsonw_init(&w, buf, sizeof(buf));
	jsonw_open(&w);
	jsonw_str(&w, "type", "error");
	jsonw_str(&w, "code", "invalid_event");
	jsonw_str(&w, "message", msg);
	jsonw_strn(&w, "id", "evt-7xyz", 5);
	jsonw_raw(&w, "detail", "{\"a\":[1,2]}", 11);
	size_t len = jsonw_close(&w);
	assert_false(w.truncated);

	json_t *j = parse_line(buf, len);
	assert_string_equal(json_string_value(json_object_get(j, "type")), "error");
	assert_string_equal(json_string_value(json_object_get(j, "code")), "invalid_event");
	assert_string_equal(json_string_value(json_object_get(j, "message")), msg);
	assert_string_equal(json_string_value(json_object_get(j, "id")), "evt-7");
	json_t *a = json_object_get(json_object_get(j, "detail"), "a");
	assert_int_equal(json_array_size(a), 2);
	assert_int_equal(json_integer_value(json_array_get(a, 1)), 2);
	json_decref(j);
}

/* An empty object is "{}\n". */
static void test_empty_object(void **state)
{
	char buf[8];
	struct jsonw w;
	(void)state;

	jsonw_init(&w, buf, sizeof(buf));
	jsonw_open(&w);
	assert_int_equal(jsonw_close(&w), 3);
	assert_string_equal(buf, "{}\n");
	assert_false(w.truncated);
}

/* json_escape_fit counts what json_escape writes, and never cuts a character. */
static void test_escape_fit(void **state)
{
	static const char *const texts[] = {"plain",
	                                    "a\"b\\c",
	                                    "\n\r\t\x01\x1f\x7f",
	                                    "咖啡 café",
	                                    "\x01\x01\x01😀\"",
	                                    "a\u2028b\xc2\x85"
	                                    "c\u2029"};
	char out[128];
	(void)state;

	/* For every bound, the prefix it gives escapes to at most that many bytes, and one
	 * character more would not. */
	for (size_t t = 0; t < sizeof(texts) / sizeof(texts[0]); t++) {
		const char *s = texts[t];
		size_t len = strlen(s);
		for (size_t max = 0; max < 40; max++) {
			size_t n = json_escape_fit(s, len, max);
			assert_true(json_escape(out, sizeof(out), s, n) <= max);
			json_escape(out, sizeof(out), s, len);
			if (n < len) {
				size_t next = n + 1;
				while (next < len && ((unsigned char)s[next] & 0xc0) == 0x80)
					next++;
				assert_true(json_escape(out, sizeof(out), s, next) > max);
			}
		}
	}
	assert_int_equal(json_escape_fit("\x01\x01\x01", 3, 12), 2);
	assert_int_equal(json_escape_fit("a咖", strlen("a咖"), 3), 1);
	assert_int_equal(json_escape_fit("a咖", strlen("a咖"), 4), 4);
	assert_int_equal(json_escape_fit("abc", 3, 0), 0);
	/* A sequence cut off by len does not count, whatever room is left. */
	assert_int_equal(json_escape_fit("ab\xe5\x92\x96", 4, 64), 2);
}

/* json_escape produces the exact escapes expected. */
static void test_escape_exact(void **state)
{
	char out[64];
	(void)state;

	assert_int_equal(json_escape(out, sizeof(out), "a\"b\\c", 5), 7);
	assert_string_equal(out, "a\\\"b\\\\c");
	json_escape(out, sizeof(out), "\n\r\t", 3);
	assert_string_equal(out, "\\n\\r\\t");
	json_escape(out, sizeof(out), "\x01\x1f\x7f", 3);
	assert_string_equal(out, "\\u0001\\u001f\\u007f");
	/* UTF-8 multi-byte sequences are kept as they are... */
	json_escape(out, sizeof(out), "咖啡 café", strlen("咖啡 café"));
	assert_string_equal(out, "咖啡 café");
	/* ...but the line breaks outside ASCII, which line readers split on. */
	static const char breaks[] = "a\u2028b\xc2\x85"
	                             "c\u2029d\u2027";
	json_escape(out, sizeof(out), breaks, strlen(breaks));
	assert_string_equal(out, "a\\u2028b\\u0085c\\u2029d\u2027");
	assert_int_equal(json_escape(out, 6, "\u2028", 3), 0);
	assert_int_equal(json_escape(out, 7, "\u2028", 3), 6);
	/* A NUL inside the given length is escaped, not an end. */
	json_escape(out, sizeof(out), "a\0b", 3);
	assert_string_equal(out, "a\\u0000b");
	/* Output is cut before an escape or a character that does not fit. */
	assert_int_equal(json_escape(out, 4, "ab\"", 3), 2);
	assert_string_equal(out, "ab");
	assert_int_equal(json_escape(out, 4, "a咖", strlen("a咖")), 1);
	assert_string_equal(out, "a");
	assert_int_equal(json_escape(out, 0, "abc", 3), 0);
	/* A 4-byte character goes in whole or not at all. */
	assert_int_equal(json_escape(out, 4, "\xf0\x9f\x98\x80", 4), 0);
	assert_int_equal(json_escape(out, 5, "\xf0\x9f\x98\x80", 4), 4);
	/* A sequence cut off by len is left out; nothing past len is read. */
	assert_int_equal(json_escape(out, sizeof(out), "ab\xe5\x92\x96", 4), 2);
	assert_string_equal(out, "ab");
}

/* Awkward strings survive a round trip through jsonw and jansson. */
static void test_escape_round_trip(void **state)
{
	const char *vals[] = {
	    "quote \" and backslash \\ and slash /",
	    "line\nbreak\r\ttab",
	    "ctl \x01\x02\x1b\x1f\x7f end",
	    "中文 Kinyarwanda: Ikawa nziza, 辣椒 🌶",
	    "breaks \u2028 \xc2\x85"
	    " \u2029 end",
	    "",
	};
	(void)state;

	for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
		char buf[512];
		struct jsonw w;
		jsonw_init(&w, buf, sizeof(buf));
		jsonw_open(&w);
		jsonw_str(&w, "v", vals[i]);
		size_t len = jsonw_close(&w);
		assert_false(w.truncated);
		/* The control characters and line breaks never appear raw in the line. */
		for (size_t k = 0; k + 1 < len; k++)
			assert_true((unsigned char)buf[k] >= 0x20 && buf[k] != 0x7f);
		assert_null(strstr(buf, "\u2028"));
		assert_null(strstr(buf, "\u2029"));
		assert_null(strstr(buf, "\xc2\x85"));
		json_t *j = parse_line(buf, len);
		assert_string_equal(json_string_value(json_object_get(j, "v")), vals[i]);
		json_decref(j);
	}
}

/* Write the reference reply into w. */
static void write_reply(struct jsonw *w)
{
	jsonw_open(w);
	jsonw_str(w, "type", "error");
	jsonw_str(w, "code", "invalid_event");
	jsonw_int(w, "seq", 987654321);
	jsonw_str(w, "message", "field \"id\": caf\xc3\xa9 \x01 咖啡 \\ end");
	jsonw_null(w, "order");
	jsonw_raw(w, "extra", "[true]", 6);
	jsonw_str(w, "id", "evt-1");
}

/* Every buffer size: no byte past cap, valid JSON when it fits, truncated when cut. */
static void test_cut_never_overflows(void **state)
{
	char full[512];
	struct jsonw w;
	(void)state;

	jsonw_init(&w, full, sizeof(full));
	write_reply(&w);
	size_t full_len = jsonw_close(&w);
	assert_false(w.truncated);
	json_t *want = parse_line(full, full_len);

	for (size_t cap = 0; cap <= full_len + 8; cap++) {
		unsigned char *mem = malloc(cap + GUARD);
		assert_non_null(mem);
		memset(mem, GUARD_BYTE, cap + GUARD);
		char *buf = (char *)mem;

		jsonw_init(&w, buf, cap);
		write_reply(&w);
		size_t len = jsonw_close(&w);

		for (size_t g = 0; g < GUARD; g++)
			if (mem[cap + g] != GUARD_BYTE)
				fail_msg("cap %zu: byte %zu past the end written", cap, g);
		assert_true(len == 0 || len < cap);

		if (cap > full_len) {
			assert_false(w.truncated);
			assert_int_equal(len, full_len);
			assert_memory_equal(buf, full, full_len + 1);
		} else {
			assert_true(w.truncated);
		}
		if (len > 0) {
			/* Whatever was written is a valid line, and each member kept is
			 * either whole or (for the cut string) a prefix of the original. */
			json_t *got = parse_line(buf, len);
			const char *key;
			json_t *v;
			json_object_foreach(got, key, v)
			{
				json_t *orig = json_object_get(want, key);
				assert_non_null(orig);
				if (json_is_string(v)) {
					const char *gs = json_string_value(v);
					const char *os = json_string_value(orig);
					assert_true(strncmp(gs, os, strlen(gs)) == 0);
					if (strlen(gs) < strlen(os) && !w.truncated)
						fail_msg("cap %zu: \"%s\" cut, truncated not set",
						         cap, key);
				} else {
					assert_true(json_equal(v, orig));
				}
			}
			if (!w.truncated)
				assert_true(json_equal(got, want));
			json_decref(got);
		} else {
			/* Too small for even "{}\n": nothing to send, and it says so. */
			assert_true(cap < 4);
			assert_true(w.truncated);
		}
		free(mem);
	}
	json_decref(want);
}

/* A string cut before an escape or a multi-byte character says so, even as the last member. */
static void test_cut_last_string(void **state)
{
	const char *vals[] = {"ab\x01\x02\x03", "abc咖啡咖啡", "a\"\\\"\\\"", "plain ascii text"};
	(void)state;

	for (size_t v = 0; v < sizeof(vals) / sizeof(vals[0]); v++) {
		for (size_t cap = 4; cap < 48; cap++) {
			unsigned char mem[48 + GUARD];
			struct jsonw w;
			memset(mem, GUARD_BYTE, sizeof(mem));
			jsonw_init(&w, (char *)mem, cap);
			jsonw_open(&w);
			jsonw_str(&w, "v", vals[v]);
			size_t len = jsonw_close(&w);
			for (size_t g = cap; g < sizeof(mem); g++)
				assert_int_equal(mem[g], GUARD_BYTE);

			json_t *j = parse_line((char *)mem, len);
			const char *got = json_string_value(json_object_get(j, "v"));
			bool whole = got != NULL && strcmp(got, vals[v]) == 0;
			if (got != NULL)
				assert_true(strncmp(got, vals[v], strlen(got)) == 0);
			/* With no room for a character the member is left out, not written "". */
			if (got != NULL && got[0] == '\0')
				fail_msg("value %zu, cap %zu: written empty", v, cap);
			if (whole == w.truncated)
				fail_msg("value %zu, cap %zu: %s but truncated=%d", v, cap,
				         whole ? "whole" : "cut", w.truncated);
			json_decref(j);
		}
	}
}

/* The smallest buffer that holds a reply at all gives "{}\n" and truncated. */
static void test_tiny_buffer(void **state)
{
	unsigned char mem[4 + GUARD];
	struct jsonw w;
	(void)state;

	memset(mem, GUARD_BYTE, sizeof(mem));
	jsonw_init(&w, (char *)mem, 4);
	jsonw_open(&w);
	jsonw_str(&w, "type", "ack");
	assert_int_equal(jsonw_close(&w), 3);
	assert_string_equal((char *)mem, "{}\n");
	assert_true(w.truncated);
	for (size_t g = 4; g < sizeof(mem); g++)
		assert_int_equal(mem[g], GUARD_BYTE);

	/* A moderately small buffer keeps the first members and ends properly. */
	char buf[24];
	jsonw_init(&w, buf, sizeof(buf));
	jsonw_open(&w);
	jsonw_str(&w, "type", "ack");
	jsonw_str(&w, "id", "a-rather-long-event-identifier");
	size_t len = jsonw_close(&w);
	assert_true(w.truncated);
	assert_true(len < sizeof(buf));
	assert_int_equal(buf[len - 2], '}');
	assert_int_equal(buf[len - 1], '\n');
	json_t *j = parse_line(buf, len);
	assert_string_equal(json_string_value(json_object_get(j, "type")), "ack");
	json_decref(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ack_round_trip),      cmocka_unit_test(test_error_round_trip),
	    cmocka_unit_test(test_empty_object),        cmocka_unit_test(test_escape_exact),
	    cmocka_unit_test(test_escape_fit),          cmocka_unit_test(test_escape_round_trip),
	    cmocka_unit_test(test_cut_never_overflows), cmocka_unit_test(test_cut_last_string),
	    cmocka_unit_test(test_tiny_buffer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
