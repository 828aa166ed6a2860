/*
 * auth.c - token hashing and constant-time comparison.
 *
 * OpenSSL's libcrypto provides SHA-256 and CRYPTO_memcmp; both are pure
 * computation, so this module stays free of I/O.
 */
#include "auth.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

/* Value of one hex digit, or -1. */
static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

bool auth_parse_hex(const char *hex, uint8_t out[AUTH_DIGEST_LEN])
{
	for (size_t i = 0; i < AUTH_DIGEST_LEN; i++) {
		int hi = hexval(hex[2 * i]);
		if (hi < 0)
			return false;
		int lo = hexval(hex[2 * i + 1]);
		if (lo < 0)
			return false;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return hex[2 * AUTH_DIGEST_LEN] == '\0';
}

void auth_hash(const char *token, size_t len, uint8_t out[AUTH_DIGEST_LEN])
{
	SHA256((const unsigned char *)token, len, out);
}

void auth_format_hex(const uint8_t d[AUTH_DIGEST_LEN], char out[2 * AUTH_DIGEST_LEN + 1])
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < AUTH_DIGEST_LEN; i++) {
		out[2 * i] = digits[d[i] >> 4];
		out[2 * i + 1] = digits[d[i] & 15];
	}
	out[2 * AUTH_DIGEST_LEN] = '\0';
}

bool auth_token_matches(const uint8_t want[AUTH_DIGEST_LEN], const char *token, size_t len)
{
	uint8_t got[AUTH_DIGEST_LEN];
	auth_hash(token, len, got);
	/* Comparing digests, not tokens, already hides the token's length;
	 * CRYPTO_memcmp hides where the first difference is. */
	return CRYPTO_memcmp(got, want, AUTH_DIGEST_LEN) == 0;
}
