/*
 * jsonw.c - a tiny JSON object writer for reply lines; see jsonw.h.
 *
 * It writes only flat objects of strings, integers, null and raw values,
 * which is all the protocol's replies need.  Space for the closing "}\n" is
 * reserved up front so a cut reply is still a valid line.
 */
#include "jsonw.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define JSONW_RESERVE 3 /* "}\n" and NUL */

void jsonw_init(struct jsonw *w, char *buf, size_t cap)
{
	w->buf = buf;
	w->cap = cap;
	w->len = 0;
	w->first = true;
	w->truncated = false;
	if (cap > 0)
		buf[0] = '\0';
}

/* Room left before the reserved tail. */
static size_t room(const struct jsonw *w)
{
	size_t limit = w->cap > JSONW_RESERVE ? w->cap - JSONW_RESERVE : 0;
	return w->len < limit ? limit - w->len : 0;
}

/* Append bytes if they all fit; otherwise mark the writer truncated. */
static bool put(struct jsonw *w, const char *s, size_t n)
{
	if (n > room(w)) {
		w->truncated = true;
		return false;
	}
	memcpy(w->buf + w->len, s, n);
	w->len += n;
	return true;
}

void jsonw_open(struct jsonw *w)
{
	put(w, "{", 1);
	w->first = true;
}

/* Write the separator and "key": for the next member. */
static bool key(struct jsonw *w, const char *k)
{
	size_t mark = w->len;
	if (!w->first && !put(w, ",", 1))
		return false;
	if (!put(w, "\"", 1) || !put(w, k, strlen(k)) || !put(w, "\":", 2)) {
		w->len = mark;
		return false;
	}
	w->first = false;
	return true;
}

/*
 * Is the UTF-8 sequence at s (seq bytes) a line break outside ASCII: NEL
 * (U+0085), LINE SEPARATOR (U+2028) or PARAGRAPH SEPARATOR (U+2029)?  JSON
 * lets them stand raw in a string, but many readers of lines (Python's
 * splitlines, JavaScript before ES2019) break on them, and would then
 * count one reply as two.  They are written \uXXXX; *cp is the code point.
 */
static bool unicode_break(const unsigned char *s, size_t seq, unsigned *cp)
{
	if (seq == 2 && s[0] == 0xc2 && s[1] == 0x85) {
		*cp = 0x85;
		return true;
	}
	if (seq == 3 && s[0] == 0xe2 && s[1] == 0x80 && (s[2] == 0xa8 || s[2] == 0xa9)) {
		*cp = s[2] == 0xa8 ? 0x2028 : 0x2029;
		return true;
	}
	return false;
}

/* Escape as much of s as fits into out; *used says how many input bytes went in. */
static size_t escape_into(char *out, size_t cap, const char *s, size_t len, size_t *used)
{
	size_t o = 0;
	size_t i;
	*used = 0;
	if (cap == 0)
		return 0;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		char tmp[8];
		size_t n;
		if (c == '"' || c == '\\') {
			tmp[0] = '\\';
			tmp[1] = (char)c;
			n = 2;
		} else if (c == '\n') {
			memcpy(tmp, "\\n", 2);
			n = 2;
		} else if (c == '\r') {
			memcpy(tmp, "\\r", 2);
			n = 2;
		} else if (c == '\t') {
			memcpy(tmp, "\\t", 2);
			n = 2;
		} else if (c < 0x20 || c == 0x7f) {
			n = (size_t)snprintf(tmp, sizeof(tmp), "\\u%04x", c);
		} else {
			/* Do not cut a UTF-8 sequence in the middle. */
			size_t seq = 1;
			if (c >= 0xf0)
				seq = 4;
			else if (c >= 0xe0)
				seq = 3;
			else if (c >= 0xc0)
				seq = 2;
			if (i + seq > len)
				break;
			unsigned cp;
			if (unicode_break((const unsigned char *)s + i, seq, &cp)) {
				if (o + 6 >= cap)
					break;
				snprintf(out + o, cap - o, "\\u%04x", cp);
				o += 6;
			} else {
				if (o + seq >= cap)
					break;
				memcpy(out + o, s + i, seq);
				o += seq;
			}
			i += seq - 1;
			continue;
		}
		if (o + n >= cap)
			break;
		memcpy(out + o, tmp, n);
		o += n;
	}
	out[o] = '\0';
	*used = i;
	return o;
}

size_t json_escape(char *out, size_t cap, const char *s, size_t len)
{
	size_t used;
	return escape_into(out, cap, s, len, &used);
}

/* Bytes a UTF-8 sequence led by c takes (1 for ASCII and stray bytes). */
static size_t utf8_seq_len(unsigned char c)
{
	if (c >= 0xf0)
		return 4;
	if (c >= 0xe0)
		return 3;
	if (c >= 0xc0)
		return 2;
	return 1;
}

size_t json_escape_fit(const char *s, size_t len, size_t max)
{
	size_t i = 0, out = 0;

	while (i < len) {
		unsigned char c = (unsigned char)s[i];
		size_t seq = utf8_seq_len(c), n = seq;

		/* The sizes escape_into() writes. */
		if (c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t')
			n = 2;
		else if (c < 0x20 || c == 0x7f)
			n = 6;
		if (i + seq > len)
			break;
		unsigned cp;
		if (unicode_break((const unsigned char *)s + i, seq, &cp))
			n = 6;
		if (out + n > max)
			break;
		out += n;
		i += seq;
	}
	return i;
}

/* Drop a member that did not fit: back to mark, and to the separator state before it. */
static void drop_member(struct jsonw *w, size_t mark, bool first)
{
	w->len = mark;
	w->first = first;
}

void jsonw_strn(struct jsonw *w, const char *k, const char *val, size_t len)
{
	if (val == NULL) {
		jsonw_null(w, k);
		return;
	}
	size_t mark = w->len;
	bool first = w->first;
	if (!key(w, k) || !put(w, "\"", 1)) {
		drop_member(w, mark, first);
		return;
	}
	/* json_escape writes at most avail-1 bytes, which leaves one for the
	 * closing quote inside the room we have. */
	size_t avail = room(w);
	if (avail < 2) {
		drop_member(w, mark, first);
		w->truncated = true;
		return;
	}
	size_t used;
	size_t n = escape_into(w->buf + w->len, avail, val, len, &used);
	if (used < len)
		w->truncated = true; /* part of the value did not fit */
	w->len += n;
	w->buf[w->len++] = '"';
}

void jsonw_str(struct jsonw *w, const char *k, const char *val)
{
	jsonw_strn(w, k, val, val ? strlen(val) : 0);
}

void jsonw_int(struct jsonw *w, const char *k, long long val)
{
	char tmp[32];
	int n = snprintf(tmp, sizeof(tmp), "%lld", val);
	size_t mark = w->len;
	bool first = w->first;
	if (!key(w, k) || !put(w, tmp, (size_t)n))
		drop_member(w, mark, first);
}

void jsonw_null(struct jsonw *w, const char *k)
{
	size_t mark = w->len;
	bool first = w->first;
	if (!key(w, k) || !put(w, "null", 4))
		drop_member(w, mark, first);
}

void jsonw_raw(struct jsonw *w, const char *k, const char *json, size_t len)
{
	size_t mark = w->len;
	bool first = w->first;
	if (!key(w, k) || !put(w, json, len))
		drop_member(w, mark, first);
}

size_t jsonw_close(struct jsonw *w)
{
	/* Below "{}\n" plus NUL no valid line fits: write nothing, not past cap. */
	if (w->cap < JSONW_RESERVE + 1) {
		w->truncated = true;
		w->len = 0;
		if (w->cap > 0)
			w->buf[0] = '\0';
		return 0;
	}
	/* The reserve guarantees these fit. */
	w->buf[w->len++] = '}';
	w->buf[w->len++] = '\n';
	w->buf[w->len] = '\0';
	return w->len;
}
