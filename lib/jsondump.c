/* jsondump.c - compact JSON text from a jansson tree; see jsondump.h. */
#include "jsondump.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bytes a string may hold as they are: not a quote, a backslash or a control. */
static bool plain(unsigned char c)
{
	return c >= 0x20 && c != '"' && c != '\\';
}

static void dump_string(struct textbuf *b, const char *s, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	textbuf_add(b, "\"", 1);
	size_t i = 0;
	while (i < len) {
		size_t run = i;
		while (run < len && plain((unsigned char)s[run]))
			run++;
		if (run > i) {
			textbuf_add(b, s + i, run - i);
			i = run;
			continue;
		}
		unsigned char c = (unsigned char)s[i++];
		char esc[6] = {'\\', 0, 0, 0, 0, 0};
		size_t n = 2;
		switch (c) {
		case '"':
			esc[1] = '"';
			break;
		case '\\':
			esc[1] = '\\';
			break;
		case '\b':
			esc[1] = 'b';
			break;
		case '\f':
			esc[1] = 'f';
			break;
		case '\n':
			esc[1] = 'n';
			break;
		case '\r':
			esc[1] = 'r';
			break;
		case '\t':
			esc[1] = 't';
			break;
		default:
			memcpy(esc + 1, "u00", 3);
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 0xf];
			n = 6;
			break;
		}
		textbuf_add(b, esc, n);
	}
	textbuf_add(b, "\"", 1);
}

/*
 * The fewest of 15, 16 or 17 significant digits that read back as the
 * same double (%.15g alone made 1.0000000000000002 into 1.0, another
 * number), then the same touches as jansson: ".0" on what would read as
 * an integer, and no '+' or leading zeros in the exponent (1e-5, 1e300).
 */
static void dump_real(struct textbuf *b, double d)
{
	char buf[40];
	int n = -1;
	/* 17 digits always read back; most reals are done at 15. */
	for (int prec = 15; prec <= 17; prec++) {
		n = snprintf(buf, sizeof(buf), "%.*g", prec, d);
		if (n < 0 || (size_t)n >= sizeof(buf) || strtod(buf, NULL) == d)
			break;
	}
	if (n < 0 || (size_t)n >= sizeof(buf))
		n = snprintf(buf, sizeof(buf), "0.0");
	size_t len = (size_t)n;
	if (strspn(buf, "0123456789-") == len) {
		memcpy(buf + len, ".0", 3);
		len += 2;
	}
	char *e = strchr(buf, 'e');
	if (e != NULL) {
		char *start = e + 1, *end;
		if (*start == '-')
			start++;
		end = start;
		if (*end == '+')
			end++;
		while (*end == '0' && end[1] != '\0')
			end++;
		memmove(start, end, strlen(end) + 1);
		len = strlen(buf);
	}
	textbuf_add(b, buf, len);
}

void jsondump(struct textbuf *b, const json_t *v)
{
	char num[32];
	const char *key;
	json_t *item;
	size_t i;
	bool first = true;

	switch (json_typeof(v)) {
	case JSON_OBJECT:
		textbuf_add(b, "{", 1);
		json_object_foreach((json_t *)v, key, item)
		{
			if (!first)
				textbuf_add(b, ",", 1);
			first = false;
			dump_string(b, key, strlen(key));
			textbuf_add(b, ":", 1);
			jsondump(b, item);
		}
		textbuf_add(b, "}", 1);
		break;
	case JSON_ARRAY:
		textbuf_add(b, "[", 1);
		json_array_foreach(v, i, item)
		{
			if (i > 0)
				textbuf_add(b, ",", 1);
			jsondump(b, item);
		}
		textbuf_add(b, "]", 1);
		break;
	case JSON_STRING:
		dump_string(b, json_string_value(v), json_string_length(v));
		break;
	case JSON_INTEGER:
		textbuf_add(b, num,
		            (size_t)snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT,
		                             json_integer_value(v)));
		break;
	case JSON_REAL:
		dump_real(b, json_real_value(v));
		break;
	case JSON_TRUE:
		textbuf_add(b, "true", 4);
		break;
	case JSON_FALSE:
		textbuf_add(b, "false", 5);
		break;
	case JSON_NULL:
		textbuf_add(b, "null", 4);
		break;
	}
}
