/*
 * test_copybin.c - COPY's binary format, byte by byte: the header, a row's
 * field count, text and NULL fields, timestamptz as microseconds since
 * 2000-01-01 UTC, and the trailer.  That the server reads these rows as
 * meant is shown by the integration tests, which store events through it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "copybin.h"

static void expect_bytes(const struct textbuf *b, const void *want, size_t n)
{
	assert_int_equal(b->len, n);
	assert_memory_equal(b->p, want, n);
}

static void test_header_and_trailer(void **state)
{
	(void)state;
	struct textbuf b = {0};
	copybin_header(&b);
	static const unsigned char head[19] = {'P', 'G',  'C',  'O',  'P',
	                                       'Y', '\n', 0xff, '\r', '\n'};
	expect_bytes(&b, head, sizeof(head));
	textbuf_reset(&b);
	copybin_trailer(&b);
	expect_bytes(&b, "\xff\xff", 2);
	textbuf_free(&b);
}

static void test_row_of_fields(void **state)
{
	(void)state;
	struct textbuf b = {0};
	copybin_row(&b, 7);
	copybin_str(&b, "kivu");
	copybin_str(&b, NULL);
	copybin_bytes(&b, "a\tb\\c\nd", 7); /* no escapes in this format */
	copybin_str(&b, "");
	static const char want[] = "\x00\x07"
	                           "\x00\x00\x00\x04kivu"
	                           "\xff\xff\xff\xff"
	                           "\x00\x00\x00\x07"
	                           "a\tb\\c\nd"
	                           "\x00\x00\x00\x00";
	expect_bytes(&b, want, sizeof(want) - 1);
	textbuf_free(&b);
}

/* Microseconds since 2000-01-01 UTC, big-endian, behind a length of 8. */
static void expect_timestamptz(int64_t unix_us, uint64_t want_pg)
{
	struct textbuf b = {0};
	copybin_timestamptz(&b, unix_us);
	unsigned char want[12] = {0, 0, 0, 8};
	for (int i = 0; i < 8; i++)
		want[4 + i] = (unsigned char)(want_pg >> (56 - 8 * i));
	expect_bytes(&b, want, sizeof(want));
	textbuf_free(&b);
}

static void test_timestamptz(void **state)
{
	(void)state;
	/* 2000-01-01T00:00:00Z is 946684800 s after 1970: zero. */
	expect_timestamptz(INT64_C(946684800000000), 0);
	expect_timestamptz(INT64_C(946684800000001), 1);
	/* The Unix epoch is before it: negative, two's complement. */
	expect_timestamptz(0, (uint64_t)-INT64_C(946684800000000));
	/* 2026-03-01T06:00:00.123456Z: 1772344800.123456 s after 1970, less
	 * the 946684800 s to 2000. */
	expect_timestamptz(INT64_C(1772344800123456), UINT64_C(825660000123456));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_header_and_trailer),
	    cmocka_unit_test(test_row_of_fields),
	    cmocka_unit_test(test_timestamptz),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
