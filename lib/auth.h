/*
 * auth.h - exporter token checks.
 *
 * The config stores only the SHA-256 of each token.  A hello's token is
 * hashed and compared in constant time, so the time a wrong token takes does
 * not tell how much of it was right.
 */
#ifndef OT_AUTH_H
#define OT_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AUTH_DIGEST_LEN 32

/* Parse 64 hex digits into a digest; false when the text is not that. */
bool auth_parse_hex(const char *hex, uint8_t out[AUTH_DIGEST_LEN]);
/* Hash a token into out. */
void auth_hash(const char *token, size_t len, uint8_t out[AUTH_DIGEST_LEN]);
/* Format a digest as 64 lowercase hex digits plus NUL. */
void auth_format_hex(const uint8_t d[AUTH_DIGEST_LEN], char out[2 * AUTH_DIGEST_LEN + 1]);
/* True when sha256(token) equals want; constant time in the digest. */
bool auth_token_matches(const uint8_t want[AUTH_DIGEST_LEN], const char *token, size_t len);

#endif
