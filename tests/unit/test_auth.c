/*
 * test_auth.c - unit tests for lib/auth.c.
 *
 * SHA-256 is checked against the FIPS 180-2 example vectors, the hex codec
 * against malformed input of every kind, and token matching against right,
 * wrong, near-miss and empty tokens.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "auth.h"

/* Hash s and compare the hex form with want. */
static void expect_sha256(const char *s, size_t len, const char *want)
{
	uint8_t d[AUTH_DIGEST_LEN];
	char hex[2 * AUTH_DIGEST_LEN + 1];

	auth_hash(s, len, d);
	auth_format_hex(d, hex);
	assert_string_equal(hex, want);
}

/* The published SHA-256 test vectors. */
static void test_sha256_vectors(void **state)
{
	(void)state;

	expect_sha256("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	expect_sha256("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
	expect_sha256(two, strlen(two),
	              "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");

	char *million = malloc(1000000);
	assert_non_null(million);
	memset(million, 'a', 1000000);
	expect_sha256(million, 1000000,
	              "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
	free(million);

	/* The length is honoured: bytes after it do not count. */
	expect_sha256("abcdef", 3,
	              "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

/* Well-formed hex parses to the right bytes, in either case. */
static void test_parse_hex_good(void **state)
{
	uint8_t d[AUTH_DIGEST_LEN];
	(void)state;

	assert_true(
	    auth_parse_hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", d));
	assert_int_equal(d[0], 0xba);
	assert_int_equal(d[1], 0x78);
	assert_int_equal(d[31], 0xad);

	uint8_t u[AUTH_DIGEST_LEN];
	assert_true(
	    auth_parse_hex("BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD", u));
	assert_memory_equal(d, u, AUTH_DIGEST_LEN);

	assert_true(
	    auth_parse_hex("0000000000000000000000000000000000000000000000000000000000000000", d));
	for (size_t i = 0; i < AUTH_DIGEST_LEN; i++)
		assert_int_equal(d[i], 0);
	assert_true(
	    auth_parse_hex("ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", d));
	for (size_t i = 0; i < AUTH_DIGEST_LEN; i++)
		assert_int_equal(d[i], 0xff);
}

/* Wrong lengths and non-hex characters are refused. */
static void test_parse_hex_bad(void **state)
{
	uint8_t d[AUTH_DIGEST_LEN];
	const char *good = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
	char buf[80];
	(void)state;

	/* 63 and 65 characters, and empty. */
	memcpy(buf, good, 63);
	buf[63] = '\0';
	assert_false(auth_parse_hex(buf, d));
	memcpy(buf, good, 64);
	buf[64] = '0';
	buf[65] = '\0';
	assert_false(auth_parse_hex(buf, d));
	assert_false(auth_parse_hex("", d));
	assert_false(auth_parse_hex("ab", d));

	/* A bad character at each position, high and low nibble alike. */
	const char bad[] = {'g', 'G', 'x', ' ', '-', ':', 'z', '\n'};
	for (size_t pos = 0; pos < 64; pos++) {
		for (size_t b = 0; b < sizeof(bad); b++) {
			memcpy(buf, good, 65);
			buf[pos] = bad[b];
			if (auth_parse_hex(buf, d))
				fail_msg("accepted '%c' at %zu", bad[b], pos);
		}
	}
	/* Prefixes and padding are not hex digits either. */
	assert_false(
	    auth_parse_hex("0xa7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", d));
	assert_false(
	    auth_parse_hex(" a7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", d));
}

/* Formatting and parsing are inverse operations. */
static void test_hex_round_trip(void **state)
{
	uint8_t d[AUTH_DIGEST_LEN], back[AUTH_DIGEST_LEN];
	char hex[2 * AUTH_DIGEST_LEN + 1];
	(void)state;

	for (size_t i = 0; i < AUTH_DIGEST_LEN; i++)
		d[i] = (uint8_t)(i * 37 + 11);
	memset(hex, '#', sizeof(hex));
	auth_format_hex(d, hex);
	assert_int_equal(strlen(hex), 64);
	for (size_t i = 0; i < 64; i++)
		assert_non_null(strchr("0123456789abcdef", hex[i]));
	assert_true(auth_parse_hex(hex, back));
	assert_memory_equal(d, back, AUTH_DIGEST_LEN);

	/* And the other way: parse, format, same lowercase text. */
	const char *text = "00ff10e0a5c3000000000000000000000000000000000000000000000000007f";
	assert_true(auth_parse_hex(text, back));
	auth_format_hex(back, hex);
	assert_string_equal(hex, text);
}

/* The right token matches; wrong, near-miss, prefixed and empty ones do not. */
static void test_token_matches(void **state)
{
	uint8_t want[AUTH_DIGEST_LEN];
	uint8_t empty[AUTH_DIGEST_LEN];
	const char *tok = "s3cret-token-for-kigali-coffee";
	(void)state;

	auth_hash(tok, strlen(tok), want);
	assert_true(auth_token_matches(want, tok, strlen(tok)));
	assert_false(auth_token_matches(want, "s3cret-token-for-kigali-coffeE", strlen(tok)));
	assert_false(auth_token_matches(want, tok, strlen(tok) - 1));
	assert_false(auth_token_matches(want, "s3cret-token-for-kigali-coffee ", strlen(tok) + 1));
	assert_false(auth_token_matches(want, "", 0));

	/* The digest of "abc" as a config would store it. */
	assert_true(auth_parse_hex(
	    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", want));
	assert_true(auth_token_matches(want, "abc", 3));
	assert_false(auth_token_matches(want, "abd", 3));

	/* An empty token only matches the digest of the empty string. */
	auth_hash("", 0, empty);
	assert_true(auth_token_matches(empty, "", 0));
	assert_false(auth_token_matches(empty, "x", 1));

	/* Every byte of the digest counts: a stored digest off in any one bit refuses. */
	auth_hash(tok, strlen(tok), want);
	for (size_t i = 0; i < AUTH_DIGEST_LEN; i++) {
		want[i] ^= 0x01;
		assert_false(auth_token_matches(want, tok, strlen(tok)));
		want[i] ^= 0x01;
	}
	assert_true(auth_token_matches(want, tok, strlen(tok)));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sha256_vectors), cmocka_unit_test(test_parse_hex_good),
	    cmocka_unit_test(test_parse_hex_bad),  cmocka_unit_test(test_hex_round_trip),
	    cmocka_unit_test(test_token_matches),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
