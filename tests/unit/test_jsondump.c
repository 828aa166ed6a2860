/*
 * test_jsondump.c - jsondump() writes exactly what json_dumps() writes with
 * the flags the daemon used (reals with the fewest of 15, 16 and 17 digits
 * that read back), and textbuf grows and resets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "jsondump.h"
#include "textbuf.h"

#define FLAGS(p) (JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(p))

/* A real with its jansson text at precision p reads back as itself, or is no real. */
static bool reads_back(const json_t *v, const char *text)
{
	return !json_is_real(v) || strtod(text, NULL) == json_real_value(v);
}

/*
 * jsondump(v) must equal json_dumps(v, FLAGS(p)), byte for byte, for the
 * first p of 15, 16 and 17 whose text of a real reads back as it (the
 * containers below hold only reals that 15 digits carry).
 */
static void same_as_jansson(const json_t *v)
{
	char *want = json_dumps(v, FLAGS(15));
	struct textbuf b = {0};
	for (int p = 16; p <= 17 && want != NULL && !reads_back(v, want); p++) {
		free(want);
		want = json_dumps(v, FLAGS(p));
	}
	assert_non_null(want);
	jsondump(&b, v);
	assert_string_equal(b.p, want);
	assert_int_equal(b.len, strlen(want));
	free(want);
	textbuf_free(&b);
}

static void test_scalars(void **state)
{
	(void)state;
	static const double reals[] = {7.9,
	                               1e300,
	                               1e-5,
	                               -0.0,
	                               1.0,
	                               123456789012345.0,
	                               1.5e18,
	                               0.1,
	                               2.5e-310,
	                               100.0,
	                               1e15,
	                               1e16,
	                               -42.125,
	                               3.14159265358979,
	                               1e-100,
	                               9.99e99,
	                               1.0000000000000002,
	                               0.30000000000000004,
	                               5e-324,
	                               4503599627370497.5};
	static const json_int_t ints[] = {0, 1, -1, 42, INT64_MAX, INT64_MIN};
	for (size_t i = 0; i < sizeof(reals) / sizeof(reals[0]); i++) {
		json_t *r = json_real(reals[i]);
		same_as_jansson(r);
		json_decref(r);
	}
	for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
		json_t *n = json_integer(ints[i]);
		same_as_jansson(n);
		json_decref(n);
	}
	same_as_jansson(json_true());
	same_as_jansson(json_false());
	same_as_jansson(json_null());
}

/* The text of one real, as jsondump writes it; the caller frees it. */
static char *real_text(double d)
{
	json_t *r = json_real(d);
	struct textbuf b = {0};

	assert_non_null(r);
	jsondump(&b, r);
	json_decref(r);
	return b.p;
}

/* Reals that 15 digits do not carry keep 16 or 17; the rest keep their short form. */
static void test_real_precision(void **state)
{
	static const struct {
		double d;
		const char *text;
	} cases[] = {
	    {1.0000000000000002, "1.0000000000000002"},
	    {0.30000000000000004, "0.30000000000000004"},
	    {0.1 + 0.2, "0.30000000000000004"},
	    {0.3, "0.3"},
	    {7.9, "7.9"},
	    {1.0, "1.0"},
	    {1896.0, "1896.0"},
	    {-0.0, "-0.0"},
	    {1e21, "1e21"},
	    {1.7976931348623157e308, "1.7976931348623157e308"},
	    {2.2250738585072014e-308, "2.2250738585072014e-308"},
	    {9007199254740993.0, "9007199254740992.0"}, /* 2^53 + 1 is no double */
	    {123456789.12345679, "123456789.12345679"},
	};
	(void)state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *got = real_text(cases[i].d);
		assert_string_equal(got, cases[i].text);
		assert_true(strtod(got, NULL) == cases[i].d);
		free(got);
	}
}

/* Every ASCII byte, alone and between plain text, and some UTF-8. */
static void test_strings(void **state)
{
	(void)state;
	for (int c = 1; c < 0x80; c++) {
		char alone[2] = {(char)c, 0}, mid[8] = {'a', 'b', (char)c, 'c', (char)c, 0};
		json_t *s = json_string(alone), *m = json_string(mid);
		same_as_jansson(s);
		same_as_jansson(m);
		json_decref(s);
		json_decref(m);
	}
	static const char *const texts[] = {"",
	                                    "Kigali → Shenzhen",
	                                    "café \"crème\" \\ /",
	                                    "line\nnext\ttab\r\b\f",
	                                    "\xe2\x80\xa8 U+2028",
	                                    "😀 four bytes"};
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		json_t *s = json_string(texts[i]);
		assert_non_null(s);
		same_as_jansson(s);
		json_decref(s);
	}
	json_t *nul = json_stringn("a\0b", 3);
	same_as_jansson(nul);
	json_decref(nul);
}

/* Nested containers, key order kept, escaped keys, empty ones. */
static void test_containers(void **state)
{
	(void)state;
	json_t *v = json_pack("{s:[i,b,n,{},[]], s:{s:f, s:s, s:[s, o]}, s:s, s:{}}", "lines", 3, 1,
	                      "order", "qty", 7.9, "status", "in_transit", "tags", "a\"b",
	                      json_real(1e-5), "we\nird \"key\"", "x", "z", "");
	assert_non_null(v);
	same_as_jansson(v);
	json_decref(v);
	json_t *empty_a = json_array(), *empty_o = json_object();
	same_as_jansson(empty_a);
	same_as_jansson(empty_o);
	json_decref(empty_a);
	json_decref(empty_o);
}

/* A daemon-shaped state, parsed from text, and the fold's notes array. */
static void test_parsed(void **state)
{
	(void)state;
	static const char text[] =
	    "[{\"exporter\":\"kivu-coffee\",\"order_ref\":\"PO-1\",\"state\":{\"order\":{"
	    "\"status\":\"booked\",\"anomalies\":[],\"created_at\":\"2026-11-01T08:00:00+02:00\","
	    "\"lines\":[{\"sku\":\"K-1\",\"quantity\":120.5,\"unit_price\":7.9}]},"
	    "\"shipments\":[{\"shipment_ref\":\"SH-1\",\"eta\":null,\"hold\":false}]},"
	    "\"new\":true,\"retracted\":false}]";
	json_error_t err;
	json_t *v = json_loads(text, 0, &err);
	assert_non_null(v);
	same_as_jansson(v);
	json_decref(v);
}

/* Appending grows the buffer, keeps it terminated, and reset keeps the memory. */
static void test_textbuf(void **state)
{
	(void)state;
	struct textbuf b = {0};
	textbuf_str(&b, "ab");
	textbuf_add(&b, "cdef", 2);
	assert_string_equal(b.p, "abcd");
	assert_int_equal(b.len, 4);
	for (int i = 0; i < 10000; i++)
		textbuf_add(&b, "x", 1);
	assert_int_equal(b.len, 10004);
	assert_int_equal(strlen(b.p), 10004);
	char *mem = b.p;
	size_t cap = b.cap;
	textbuf_reset(&b);
	assert_int_equal(b.len, 0);
	assert_string_equal(b.p, "");
	textbuf_str(&b, "again");
	assert_ptr_equal(b.p, mem);
	assert_int_equal(b.cap, cap);
	assert_string_equal(b.p, "again");
	textbuf_free(&b);
	assert_null(b.p);
	textbuf_reset(&b); /* on an empty one: nothing to do */
	assert_int_equal(b.len, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_scalars), cmocka_unit_test(test_real_precision),
	    cmocka_unit_test(test_strings), cmocka_unit_test(test_containers),
	    cmocka_unit_test(test_parsed),  cmocka_unit_test(test_textbuf),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
