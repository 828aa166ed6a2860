/*
 * test_copytext.c - fields in COPY's text format: the four characters
 * COPY treats specially are escaped, everything else passes as it is,
 * NULL is \N.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "copytext.h"

static void field_is(const char *v, size_t len, const char *want)
{
	struct textbuf b = {0};
	copytext_field(&b, v, len);
	assert_string_equal(b.p, want);
	assert_int_equal(b.len, strlen(want));
	textbuf_free(&b);
}

static void test_plain(void **state)
{
	(void)state;
	field_is("kivu-coffee", 11, "kivu-coffee");
	field_is("", 0, "");
	/* UTF-8 and JSON punctuation pass untouched. */
	field_is("{\"buyer\":\"杭州\"}", strlen("{\"buyer\":\"杭州\"}"), "{\"buyer\":\"杭州\"}");
}

static void test_escapes(void **state)
{
	(void)state;
	/* A JSON body with an escaped quote and a \u escape. */
	const char *body = "{\"note\":\"say \\\"hi\\\" \\u00e9\"}";
	field_is(body, strlen(body), "{\"note\":\"say \\\\\"hi\\\\\" \\\\u00e9\"}");
	field_is("a\tb\nc\rd\\", 8, "a\\tb\\nc\\rd\\\\");
	/* Escapes at both ends and back to back. */
	field_is("\\\\", 2, "\\\\\\\\");
	field_is("\t", 1, "\\t");
}

static void test_null_and_length(void **state)
{
	(void)state;
	field_is(NULL, 0, "\\N");
	/* Only len bytes are taken. */
	field_is("abc\\def", 3, "abc");
	struct textbuf b = {0};
	copytext_str(&b, "x\\y");
	copytext_str(&b, NULL);
	assert_string_equal(b.p, "x\\\\y\\N");
	textbuf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_plain),
	    cmocka_unit_test(test_escapes),
	    cmocka_unit_test(test_null_and_length),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
