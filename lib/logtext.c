/* SPDX-License-Identifier: ISC */
/*
 * logtext.c - values for key=value log lines (see logtext.h).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "logtext.h"

/* One word that needs no quotes: printable ASCII, none of '"', '=', '\'. */
static bool logtext_plain(const char *s, size_t len)
{
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c <= ' ' || c >= 0x7f || c == '"' || c == '=' || c == '\\')
			return false;
	}
	return true;
}

/*
 * The UTF-8 sequence at s (n bytes left): its length, 2 to 4, with its
 * code point in *cp; 0 when the bytes are not one (a stray continuation,
 * a cut sequence, an overlong form, a surrogate, past U+10FFFF).
 */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
	size_t len;
	uint32_t c, min;
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		len = 2, c = s[0] & 0x1f, min = 0x80;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		len = 3, c = s[0] & 0x0f, min = 0x800;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		len = 4, c = s[0] & 0x07, min = 0x10000;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return len;
}

/* Code points shown as \uNNNN: controls, line breaks and layout overrides. */
static bool logtext_hidden(uint32_t c)
{
	return (c >= 0x80 && c <= 0x9f) || c == 0x2028 || c == 0x2029 || c == 0x200e ||
	       c == 0x200f || (c >= 0x202a && c <= 0x202e) || (c >= 0x2066 && c <= 0x2069);
}

size_t logtext_quote(char *out, size_t cap, const char *s, size_t len)
{
	if (logtext_plain(s, len) && len < cap) {
		memcpy(out, s, len);
		out[len] = '\0';
		return len;
	}
	const unsigned char *u = (const unsigned char *)s;
	size_t o = 0;
	out[o++] = '"';
	/* Room for the longest escape (6), the closing quote and the NUL. */
	for (size_t i = 0; i < len && o + 8 <= cap;) {
		unsigned char c = u[i];
		uint32_t cp;
		size_t n;
		if (c == '"' || c == '\\') {
			out[o++] = '\\';
			out[o++] = (char)c;
			i++;
		} else if (c == '\n') {
			out[o++] = '\\';
			out[o++] = 'n';
			i++;
		} else if (c < ' ' || c == 0x7f) {
			o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
			i++;
		} else if (c < 0x80) {
			out[o++] = (char)c;
			i++;
		} else if ((n = utf8_decode(u + i, len - i, &cp)) == 0) {
			o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
			i++;
		} else if (logtext_hidden(cp)) {
			o += (size_t)snprintf(out + o, cap - o, "\\u%04x", (unsigned)cp);
			i += n;
		} else {
			memcpy(out + o, u + i, n);
			o += n;
			i += n;
		}
	}
	out[o++] = '"';
	out[o] = '\0';
	return o;
}
