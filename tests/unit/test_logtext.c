/*
 * test_logtext.c - log values: what stays as it is, what is quoted and
 * escaped, and that nothing a client sends can break or disguise a line.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "logtext.h"

/* Quote s (a C string) into a buffer of cap bytes and compare with want. */
static void expect_quoted(const char *s, size_t cap, const char *want)
{
	char out[600];
	assert_true(cap <= sizeof(out));
	memset(out, 'X', sizeof(out));
	size_t n = logtext_quote(out, cap, s, strlen(s));
	assert_string_equal(out, want);
	assert_int_equal(n, strlen(want));
	assert_true(n < cap);
}

static void test_plain_words(void **state)
{
	(void)state;
	expect_quoted("kivu-coffee", 64, "kivu-coffee");
	expect_quoted("ORD-2026/S1.x_y:z", 64, "ORD-2026/S1.x_y:z");
}

static void test_quoted_ascii(void **state)
{
	(void)state;
	expect_quoted("", 64, "\"\"");
	expect_quoted("two words", 64, "\"two words\"");
	expect_quoted("a=b", 64, "\"a=b\"");
	/* One word is bare only without '\\' and DEL as well. */
	expect_quoted("a\\b", 64, "\"a\\\\b\"");
	expect_quoted("ab\x7f", 64, "\"ab\\x7f\"");
	expect_quoted("say \"hi\" \\o/", 64, "\"say \\\"hi\\\" \\\\o/\"");
	expect_quoted("line\nbreak\r\ttab\x7f", 64, "\"line\\nbreak\\x0d\\x09tab\\x7f\"");
	/* A forged second record stays inside the value. */
	expect_quoted("x\nts=0 level=error msg=forged", 64, "\"x\\nts=0 level=error msg=forged\"");
}

static void test_utf8_kept(void **state)
{
	(void)state;
	/* Non-ASCII is quoted (one word of ASCII only is bare) and kept. */
	expect_quoted("Caf\xc3\xa9", 64, "\"Caf\xc3\xa9\"");
	expect_quoted("\xe6\x9d\xad\xe5\xb7\x9e", 64, "\"\xe6\x9d\xad\xe5\xb7\x9e\"");
	expect_quoted("\xf0\x9f\x93\xa6 box", 64, "\"\xf0\x9f\x93\xa6 box\"");
}

static void test_hidden_code_points(void **state)
{
	(void)state;
	/* C1 controls: U+0085 (next line), U+009B (CSI). */
	expect_quoted("a\xc2\x85"
	              "b\xc2\x9b"
	              "c",
	              64, "\"a\\u0085b\\u009bc\"");
	/* U+2028, U+2029 and the right-to-left override U+202E. */
	expect_quoted("\xe2\x80\xa8\xe2\x80\xa9\xe2\x80\xae", 64, "\"\\u2028\\u2029\\u202e\"");
	/* U+200F, U+2066, U+2069; U+00A0 and U+2027 either side are kept. */
	expect_quoted("\xe2\x80\x8f\xe2\x81\xa6\xe2\x81\xa9\xc2\xa0\xe2\x80\xa7", 64,
	              "\"\\u200f\\u2066\\u2069\xc2\xa0\xe2\x80\xa7\"");
}

static void test_not_utf8(void **state)
{
	(void)state;
	/* A stray continuation, a cut sequence, an overlong '/', a surrogate. */
	expect_quoted("\x80", 64, "\"\\x80\"");
	expect_quoted("ab\xe6\x9d", 64, "\"ab\\xe6\\x9d\"");
	expect_quoted("\xc0\xaf", 64, "\"\\xc0\\xaf\"");
	/* The same '/' overlong in three and in four bytes, and U+07FF in three. */
	expect_quoted("\xe0\x80\xaf", 64, "\"\\xe0\\x80\\xaf\"");
	expect_quoted("\xf0\x80\x80\xaf", 64, "\"\\xf0\\x80\\x80\\xaf\"");
	expect_quoted("\xe0\x9f\xbf", 64, "\"\\xe0\\x9f\\xbf\"");
	expect_quoted("\xf0\x8f\xbf\xbf", 64, "\"\\xf0\\x8f\\xbf\\xbf\"");
	expect_quoted("\xed\xa0\x80", 64, "\"\\xed\\xa0\\x80\"");
	expect_quoted("\xf4\x90\x80\x80", 64, "\"\\xf4\\x90\\x80\\x80\"");
	/* A sequence cut by len is not completed from the bytes after it. */
	char out[64];
	size_t n = logtext_quote(out, sizeof(out), "ab\xe6\x9d\xad", 4);
	assert_int_equal(n, 12);
	assert_string_equal(out, "\"ab\\xe6\\x9d\"");
}

/* For every cap from the least allowed (16) up, nothing is written past cap. */
static void test_cap_respected(void **state)
{
	static const char *const vals[] = {
	    "0123456789abcdef",                     /* a bare word of exactly 16 bytes */
	    "0123456789abcdefghijklmnopqrstuvwxyz", /* a longer one */
	    "\xe2\x80\xae\xe2\x80\xae\xe2\x80\xae\xe2\x80\xae\xe2\x80\xae\xe2\x80\xae", /* \u202e: 6
	                                                                                   each */
	    "\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c\x0e\x0f", /* \xNN: 4 each */
	    "a\"b\"c\"d\"e\"f\"g\"h\"i\"",
	};
	(void)state;

	for (size_t v = 0; v < sizeof(vals) / sizeof(vals[0]); v++) {
		for (size_t cap = 16; cap < 48; cap++) {
			unsigned char out[64];
			memset(out, 0xAA, sizeof(out));
			size_t n = logtext_quote((char *)out, cap, vals[v], strlen(vals[v]));
			assert_true(n < cap);
			assert_int_equal(out[n], '\0');
			for (size_t g = cap; g < sizeof(out); g++)
				if (out[g] != 0xAA)
					fail_msg("value %zu, cap %zu: byte %zu written", v, cap, g);
		}
	}
}

/* A value longer than the buffer is cut between characters and closed. */
static void test_cut(void **state)
{
	(void)state;
	char out[32];
	char s[200];
	for (size_t i = 0; i + 2 < sizeof(s); i += 2)
		memcpy(s + i, "\xc3\xa9", 2);
	s[sizeof(s) - 2] = '\0';
	size_t n = logtext_quote(out, sizeof(out), s, strlen(s));
	assert_true(n < sizeof(out));
	assert_int_equal(out[0], '"');
	assert_int_equal(out[n - 1], '"');
	/* Whole characters only: an even number of bytes between the quotes. */
	assert_int_equal((n - 2) % 2, 0);
	for (size_t i = 1; i + 1 < n; i += 2)
		assert_memory_equal(out + i, "\xc3\xa9", 2);

	/* A bare word too long for the buffer is quoted and cut as well. */
	memset(s, 'a', 100);
	s[100] = '\0';
	n = logtext_quote(out, sizeof(out), s, 100);
	assert_true(n < sizeof(out));
	assert_int_equal(out[0], '"');
	assert_int_equal(out[n - 1], '"');
}

/* No input byte sequence yields a raw control, line break or quote. */
static void test_no_raw_controls(void **state)
{
	(void)state;
	char s[3];
	char out[64];
	for (unsigned a = 0; a < 256; a++) {
		for (unsigned b = 0; b < 256; b++) {
			s[0] = (char)a;
			s[1] = (char)b;
			s[2] = '\xa8';
			size_t n = logtext_quote(out, sizeof(out), s, 3);
			for (size_t i = 0; i < n; i++) {
				unsigned char c = (unsigned char)out[i];
				assert_true(c >= ' ' && c != 0x7f);
				if (c == '"')
					assert_true(i == 0 || i == n - 1 || out[i - 1] == '\\');
			}
			/* No C1 control and no U+2028 left as UTF-8. */
			assert_null(memmem(out, n, "\xe2\x80\xa8", 3));
			for (size_t i = 0; i + 1 < n; i++)
				assert_false((unsigned char)out[i] == 0xc2 &&
				             (unsigned char)out[i + 1] >= 0x80 &&
				             (unsigned char)out[i + 1] <= 0x9f);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_plain_words),     cmocka_unit_test(test_quoted_ascii),
	    cmocka_unit_test(test_utf8_kept),       cmocka_unit_test(test_hidden_code_points),
	    cmocka_unit_test(test_not_utf8),        cmocka_unit_test(test_cut),
	    cmocka_unit_test(test_no_raw_controls), cmocka_unit_test(test_cap_respected),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
