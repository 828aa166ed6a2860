/* SPDX-License-Identifier: ISC */
/*
 * test_hostile.c - nasty input against the real daemon: bytes that are not
 * what docs/PROTOCOL.md asks for, from a peer that may be broken or
 * hostile.
 *
 * One table drives most of it: each row is the bytes sent on a connection
 * that has said hello, and the error reply they must get (code, and the
 * field the message must name when there is one).  After every row the
 * daemon must still run; after the whole table the same connection and a
 * new one must still work.  Around the table: SQL in every free-text field
 * of an order.created is stored verbatim and harms nothing; a TLS
 * ClientHello and an HTTP request sent to the plain JSON Lines port are
 * refused and logged, and the next client is served; 10 MB without a
 * newline costs one line_too_long and no memory to speak of (VmRSS of the
 * daemon, from /proc); 20,000 empty lines cost at most 100 log lines a
 * second.
 *
 * The pre-hello tests (TLS, HTTP) make two refused connections each; none
 * of them is an auth_failed, so limits.max_failed_hellos is never reached.
 */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

#define MB                (1024 * 1024)
#define NEST_LEVELS       10000 /* arrays in the deep-nesting rows */
#define RSS_GROWTH_MAX_KB 16384 /* what 10 MB without a newline may cost */

/* One row: what is sent after hello, and the reply it must get. */
struct hostile_row {
	const char *name; /* for failure messages */
	char *bytes;      /* malloc'd; sent as they are, "\n" included */
	size_t len;
	const char *code;  /* the error code the reply must carry */
	const char *field; /* the message must name this field, or NULL */
	const char *id;    /* the reply's id: it_id_any, NULL (JSON null) or a value */
};

/* A growable table of rows. */
struct hostile_table {
	struct hostile_row *rows;
	size_t n, cap;
};

/* Add a row holding a copy of bytes[0..len) followed by "\n". */
static void row_add(struct hostile_table *t, const char *name, const void *bytes, size_t len,
                    const char *code, const char *field, const char *id)
{
	if (t->n == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 32;
		t->rows = realloc(t->rows, t->cap * sizeof(*t->rows));
		if (t->rows == NULL)
			abort();
	}
	char *b = malloc(len + 1);
	if (b == NULL)
		abort();
	memcpy(b, bytes, len);
	b[len] = '\n';
	t->rows[t->n++] = (struct hostile_row){
	    .name = name, .bytes = b, .len = len + 1, .code = code, .field = field, .id = id};
}

/* Add a row from a C string (so without NUL bytes in it). */
static void row_add_str(struct hostile_table *t, const char *name, const char *line,
                        const char *code, const char *field, const char *id)
{
	row_add(t, name, line, strlen(line), code, field, id);
}

/* A malloc'd string of n copies of c. */
static char *repeat(char c, size_t n)
{
	char *s = malloc(n + 1);
	if (s == NULL)
		abort();
	memset(s, c, n);
	s[n] = '\0';
	return s;
}

/* A malloc'd string: printf into a fresh buffer. */
static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;
	va_start(ap, fmt);
	int n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0)
		abort();
	return s;
}

/*
 * A valid order.created with one line, as text, with the given quantity
 * literal and buyer value spliced in as they are (both raw JSON).
 */
static char *order_created(const char *id, const char *quantity, const char *buyer)
{
	return xasprintf("{\"type\":\"order.created\",\"id\":\"%s\","
	                 "\"occurred_at\":\"" IT_OCCURRED_AT "\",\"order\":\"H-ORD-1\","
	                 "\"buyer\":%s,\"origin\":\"RW\",\"destination\":\"CN\","
	                 "\"lines\":[{\"sku\":\"KV-1\",\"product\":\"Green coffee\","
	                 "\"hs_code\":\"090111\",\"quantity\":%s,\"unit\":\"kg\"}]}",
	                 id, buyer, quantity);
}

/* An order.cancelled whose reason is the given raw bytes (not escaped). */
static void row_reason_bytes(struct hostile_table *t, const char *name, const char *raw,
                             size_t rawlen, const char *code)
{
	static const char head[] = "{\"type\":\"order.cancelled\",\"id\":\"h-raw-1\","
	                           "\"occurred_at\":\"" IT_OCCURRED_AT "\","
	                           "\"order\":\"H-ORD-1\",\"reason\":\"";
	static const char tail[] = "\"}";
	size_t n = sizeof(head) - 1 + rawlen + sizeof(tail) - 1;
	char *b = malloc(n);
	if (b == NULL)
		abort();
	memcpy(b, head, sizeof(head) - 1);
	memcpy(b + sizeof(head) - 1, raw, rawlen);
	memcpy(b + sizeof(head) - 1 + rawlen, tail, sizeof(tail) - 1);
	row_add(t, name, b, n, code, NULL, it_id_any);
	free(b);
}

/* The table of PROTOCOL.md's refusals, built once per run. */
static void table_build(struct hostile_table *t)
{
	char *s, *nest;

	/* Text that is not UTF-8, or UTF-8 that is not allowed. */
	row_reason_bytes(t, "invalid UTF-8 (Latin-1 e-acute)", "caf\xe9", 4, "malformed_json");
	row_reason_bytes(t, "invalid UTF-8 (lone continuation bytes)", "\x80\xbf", 2,
	                 "malformed_json");
	row_reason_bytes(t, "overlong UTF-8 of '/'", "\xc0\xaf", 2, "malformed_json");
	row_reason_bytes(t, "overlong UTF-8, three bytes", "\xe0\x80\xaf", 3, "malformed_json");
	row_reason_bytes(t, "UTF-8 of a surrogate", "\xed\xa0\x80", 3, "malformed_json");
	row_reason_bytes(t, "a code point past U+10FFFF", "\xf4\x90\x80\x80", 4, "malformed_json");
	row_reason_bytes(t, "NUL byte inside a string", "a\0b", 3, "malformed_json");
	row_reason_bytes(t, "escaped \\u0000", "a\\u0000b", 8, "malformed_json");
	row_reason_bytes(t, "escaped lone surrogate", "\\ud800", 6, "malformed_json");
	row_add(t, "NUL byte after the object", "{\"type\":\"ping\"}\0", 16, "malformed_json", NULL,
	        NULL);
	row_add(t, "NUL byte alone", "\0", 1, "malformed_json", NULL, NULL);

	/* Nesting far past any parser's stack. */
	s = repeat('[', NEST_LEVELS);
	nest = xasprintf("%s%s", s, s);
	memset(nest + NEST_LEVELS, ']', NEST_LEVELS);
	free(s);
	row_add_str(t, "10,000 nested arrays", nest, "malformed_json", NULL, NULL);
	s = xasprintf("{\"type\":\"order.confirmed\",\"id\":\"h-nest-1\","
	              "\"occurred_at\":\"" IT_OCCURRED_AT
	              "\",\"order\":\"H-ORD-1\",\"ext\":{\"a\":%s}}",
	              nest);
	row_add_str(t, "10,000 nested arrays in ext", s, "malformed_json", NULL, it_id_any);
	free(s);
	s = repeat('[', NEST_LEVELS);
	row_add_str(t, "10,000 unclosed arrays", s, "malformed_json", NULL, NULL);
	free(s);
	free(nest);

	/* Numbers. */
	s = order_created("h-num-1", "1e400", "\"B\"");
	row_add_str(t, "quantity 1e400", s, "malformed_json", NULL, it_id_any);
	free(s);
	s = order_created("h-num-2", "-1e400", "\"B\"");
	row_add_str(t, "quantity -1e400", s, "malformed_json", NULL, it_id_any);
	free(s);
	s = order_created("h-num-3", "123456789012345678901234567890", "\"B\"");
	row_add_str(t, "quantity past int64", s, "malformed_json", NULL, it_id_any);
	free(s);
	s = order_created("h-num-4", "-0", "\"B\"");
	row_add_str(t, "quantity -0", s, "invalid_event", "lines[0].quantity", "h-num-4");
	free(s);
	s = order_created("h-num-5", "-0.0", "\"B\"");
	row_add_str(t, "quantity -0.0", s, "invalid_event", "lines[0].quantity", "h-num-5");
	free(s);
	s = order_created("h-num-6", "1e-400", "\"B\"");
	row_add_str(t, "quantity 1e-400 (underflows)", s, "malformed_json", NULL, it_id_any);
	free(s);

	/* Duplicate keys, at the top and nested. */
	row_add_str(t, "duplicate type", "{\"type\":\"ping\",\"type\":\"ping\"}", "malformed_json",
	            NULL, NULL);
	s = order_created("h-dup-1", "5", "\"B\",\"buyer\":\"C\"");
	row_add_str(t, "duplicate buyer", s, "malformed_json", NULL, it_id_any);
	free(s);
	s = order_created("h-dup-2", "5,\"quantity\":6", "\"B\"");
	row_add_str(t, "duplicate key in a line", s, "malformed_json", NULL, it_id_any);
	free(s);

	/* A megabyte in one string, over the default 64 KiB limit. */
	s = repeat('a', MB);
	char *big = xasprintf("{\"type\":\"order.cancelled\",\"id\":\"h-big-1\","
	                      "\"occurred_at\":\"" IT_OCCURRED_AT "\",\"order\":\"H-ORD-1\","
	                      "\"reason\":\"%s\"}",
	                      s);
	row_add_str(t, "1 MB string", big, "line_too_long", NULL, NULL);
	free(big);
	free(s);

	/* Numbers where strings belong: the message names the field. */
	s = order_created("h-type-1", "5", "42");
	row_add_str(t, "buyer a number", s, "invalid_event", "buyer", "h-type-1");
	free(s);
	s = order_created("h-type-2", "5", "[\"B\"]");
	row_add_str(t, "buyer an array", s, "invalid_event", "buyer", "h-type-2");
	free(s);
	row_add_str(t, "order a number",
	            "{\"type\":\"order.confirmed\",\"id\":\"h-type-3\","
	            "\"occurred_at\":\"" IT_OCCURRED_AT "\",\"order\":12345}",
	            "invalid_event", "order", "h-type-3");
	row_add_str(t, "id a number",
	            "{\"type\":\"order.confirmed\",\"id\":7,"
	            "\"occurred_at\":\"" IT_OCCURRED_AT "\",\"order\":\"H-ORD-1\"}",
	            "invalid_event", "id", NULL);
	row_add_str(t, "occurred_at a number",
	            "{\"type\":\"order.confirmed\",\"id\":\"h-type-5\","
	            "\"occurred_at\":1795000000,\"order\":\"H-ORD-1\"}",
	            "invalid_event", "occurred_at", "h-type-5");
	row_add_str(t, "hs_code a number",
	            "{\"type\":\"order.created\",\"id\":\"h-type-6\","
	            "\"occurred_at\":\"" IT_OCCURRED_AT "\",\"order\":\"H-ORD-1\",\"buyer\":\"B\","
	            "\"origin\":\"RW\",\"destination\":\"CN\",\"lines\":[{\"sku\":\"KV-1\","
	            "\"product\":\"P\",\"hs_code\":90111,\"quantity\":5,\"unit\":\"kg\"}]}",
	            "invalid_event", "lines[0].hs_code", "h-type-6");
	row_add_str(t, "location.name a number",
	            "{\"type\":\"shipment.checkpoint\",\"id\":\"h-type-7\","
	            "\"occurred_at\":\"" IT_OCCURRED_AT "\",\"order\":\"H-ORD-1\","
	            "\"shipment\":\"H-SH-1\",\"location\":{\"name\":5}}",
	            "invalid_event", "location.name", "h-type-7");
	row_add_str(t, "shipment true",
	            "{\"type\":\"shipment.departed\",\"id\":\"h-type-8\","
	            "\"occurred_at\":\"" IT_OCCURRED_AT "\",\"order\":\"H-ORD-1\","
	            "\"shipment\":true}",
	            "invalid_event", "shipment", "h-type-8");
	row_add_str(t, "type a number", "{\"type\":7,\"id\":\"h-type-9\"}", "invalid_request",
	            "type", it_id_any);
	row_add_str(t, "type null", "{\"type\":null}", "invalid_request", "type", NULL);

	/* Not an object, or an object and more. */
	row_add_str(t, "a bare string", "\"ping\"", "malformed_json", NULL, NULL);
	row_add_str(t, "spaces only", "   \t ", "malformed_json", NULL, NULL);
	row_add_str(t, "two objects on a line", "{\"type\":\"ping\"}{\"type\":\"ping\"}",
	            "malformed_json", NULL, NULL);
	row_add_str(t, "UTF-8 byte order mark", "\xef\xbb\xbf{\"type\":\"ping\"}", "malformed_json",
	            NULL, NULL);
}

/* Free the rows and their bytes. */
static void table_free(struct hostile_table *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->rows[i].bytes);
	free(t->rows);
}

/* A connected client that has said hello as IT_EXPORTER. */
static struct it_client *session(struct it_daemon *d)
{
	struct it_client *c = it_connect(d);
	it_hello(c, IT_EXPORTER, IT_TOKEN);
	return c;
}

/* The daemon's resident set in kB, from /proc/<pid>/status. */
static long daemon_rss_kb(const struct it_daemon *d)
{
	char path[64], line[256];
	long kb = -1;

	snprintf(path, sizeof(path), "/proc/%ld/status", (long)d->pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		it_fail("cannot read %s", path);
	while (fgets(line, sizeof(line), f) != NULL) {
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	}
	fclose(f);
	if (kb < 0)
		it_fail("no VmRSS in %s", path);
	return kb;
}

/* The daemon's log from byte from to byte to, malloc'd and NUL-terminated. */
static char *log_range(const struct it_daemon *d, off_t from, off_t to)
{
	FILE *f = fopen(d->log_path, "r");
	size_t n = to > from ? (size_t)(to - from) : 0;
	char *s = malloc(n + 1);

	if (f == NULL || s == NULL)
		it_fail("cannot read %s", d->log_path);
	if (fseeko(f, from, SEEK_SET) != 0)
		it_fail("cannot seek in %s", d->log_path);
	n = fread(s, 1, n, f);
	s[n] = '\0';
	fclose(f);
	return s;
}

/*
 * Require that the daemon logs the close of a connection that never said
 * hello, after from, with reason why1 or why2 (as the log writes them).
 */
static void expect_closed_logged(struct it_daemon *d, off_t from, const char *why1,
                                 const char *why2)
{
	static const char anon[] = "exporter=- reason=";
	off_t end = it_log_expect(d, from, anon, IT_REPLY_MS);
	char *text = log_range(d, from, end);
	const char *r = strstr(text, anon);
	if (r == NULL)
		it_fail("log line with %s vanished", anon);
	r += sizeof(anon) - 1;
	if (strncmp(r, why1, strlen(why1)) != 0 && strncmp(r, why2, strlen(why2)) != 0)
		it_fail("expected the close to be logged with reason %s or %s, got:\n%s", why1,
		        why2, text);
	free(text);
}

/* A client that says hello, sends one event and gets it acked. */
static void expect_normal_client(struct it_daemon *d, const char *id, const char *order)
{
	struct it_client *c = session(d);
	char *ev = it_event_line(id, "order.created", order, NULL);
	it_send(c, ev);
	it_expect_ack(c, id, "stored");
	free(ev);
	it_close(c);
}

/* Every row of the table gets its error; the daemon survives all of them. */
static void test_hostile_table(void **state)
{
	struct hostile_table t = {0};
	struct it_config cfg = {.name = "table"};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	struct it_client *c = session(d);

	table_build(&t);
	for (size_t i = 0; i < t.n; i++) {
		const struct hostile_row *r = &t.rows[i];
		it_send_raw(c, r->bytes, r->len);
		char *line = it_read_line(c, IT_REPLY_MS);
		json_t *o = it_check_error(line, r->id, r->code);
		const char *msg = it_json_str(o, "message");
		if (r->field != NULL) {
			char *want = xasprintf("field \"%s\"", r->field);
			if (msg == NULL || strstr(msg, want) == NULL)
				it_fail("row \"%s\": the message should name %s: %s", r->name, want,
				        line);
			free(want);
		}
		if (!it_daemon_alive(d))
			it_fail("the daemon died on row \"%s\"", r->name);
		json_decref(o);
		free(line);
	}

	/* The same connection still answers, and nothing of the table was stored. */
	it_send(c, "{\"type\":\"ping\"}");
	it_expect_pong(c);
	char *ev = it_event_line("h-table-after", "order.created", "H-ORD-2", NULL);
	it_send(c, ev);
	it_expect_ack(c, "h-table-after", "stored");
	free(ev);
	assert_int_equal(it_db_long(IT_DB,
	                            "SELECT count(*) FROM ordertrack.events"
	                            " WHERE exporter = $1 AND order_ref = 'H-ORD-1'",
	                            IT_EXPORTER, NULL),
	                 0);
	it_close(c);
	expect_normal_client(d, "h-table-fresh", "H-ORD-3");
	table_free(&t);
	it_daemon_stop_clean(d);
}

/* Strings aimed at an SQL string literal, a dollar quote, a format or a template. */
static const char *const sql_payloads[] = {
    "'; DROP TABLE ordertrack.events; --",
    "Robert'); DROP TABLE ordertrack.events;--",
    "\" OR \"1\"=\"1\"; DELETE FROM ordertrack.orders; --",
    "$$; DROP SCHEMA ordertrack CASCADE; $$",
    "1'; SELECT pg_sleep(30); --",
    "\\'; TRUNCATE ordertrack.events; --",
    "E'\\x27'); COPY ordertrack.events TO '/tmp/ot-pwned'; --",
    "%s%s%n%x ${jndi:ldap://x/a} {{7*7}} \x01\x1b[31m",
};

/* SQL in every free-text field is stored as it is and does nothing. */
static void test_sql_in_strings(void **state)
{
	struct it_config cfg = {.name = "sql"};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	struct it_client *c = session(d);
	size_t n = sizeof(sql_payloads) / sizeof(sql_payloads[0]);

	for (size_t i = 0; i < n; i++) {
		const char *p = sql_payloads[i];
		char id[32], order[32];
		snprintf(id, sizeof(id), "h-sql-%zu", i);
		snprintf(order, sizeof(order), "H-SQL-%zu", i);
		/* jansson escapes what JSON needs; the daemon gets the exact text. */
		json_t *o =
		    json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:[{s:s, s:s, "
		              "s:s, s:i, s:s}], s:{s:s}}",
		              "type", "order.created", "id", id, "occurred_at", IT_OCCURRED_AT,
		              "order", order, "buyer", p, "channel", p, "note", p, "origin", "RW",
		              "destination", "CN", "lines", "sku", p, "product", p, "hs_code",
		              "090111", "quantity", 10, "unit", "kg", "ext", p, p);
		assert_non_null(o);
		char *line = json_dumps(o, JSON_COMPACT);
		it_send(c, line);
		it_expect_ack(c, id, "stored");
		it_send(c, line);
		it_expect_ack(c, id, "duplicate");
		free(line);
		json_decref(o);

		char *same =
		    it_db_value(IT_DB,
		                "SELECT (body->>'buyer' = $3 AND body->>'channel' = $3"
		                " AND body->>'note' = $3 AND body->'lines'->0->>'sku' = $3"
		                " AND body->'lines'->0->>'product' = $3"
		                " AND body->'ext'->>$3 = $3)::text"
		                " FROM ordertrack.events WHERE exporter = $1 AND event_id = $2",
		                IT_EXPORTER, id, p, NULL);
		if (strcmp(same, "true") != 0)
			it_fail("event %s: the stored body does not hold the exact string %s", id,
			        p);
		free(same);
		same = it_db_value(IT_DB,
		                   "SELECT (o.buyer = $3 AND o.channel = $3 AND l.sku = $3"
		                   " AND l.product = $3)::text"
		                   " FROM ordertrack.orders o JOIN ordertrack.order_lines l"
		                   " USING (exporter, order_ref)"
		                   " WHERE o.exporter = $1 AND o.order_ref = $2",
		                   IT_EXPORTER, order, p, NULL);
		if (strcmp(same, "true") != 0)
			it_fail("order %s: the read model does not hold the exact string %s", order,
			        p);
		free(same);
	}

	char *tables = it_db_value(IT_DB,
	                           "SELECT (to_regclass('ordertrack.events') IS NOT NULL"
	                           " AND to_regclass('ordertrack.orders') IS NOT NULL"
	                           " AND to_regclass('ordertrack.order_lines') IS NOT NULL)::text",
	                           NULL);
	assert_string_equal(tables, "true");
	free(tables);
	assert_int_equal(it_db_long(IT_DB,
	                            "SELECT count(*) FROM ordertrack.events"
	                            " WHERE exporter = $1 AND event_id LIKE 'h-sql-%'",
	                            IT_EXPORTER, NULL),
	                 (long)n);
	it_send(c, "{\"type\":\"ping\"}");
	it_expect_pong(c);
	it_daemon_stop_clean(d);
}

/* A growable byte buffer for the TLS record. */
struct bytes {
	unsigned char b[1024];
	size_t n;
};

/* Append one byte. */
static void put8(struct bytes *x, unsigned v)
{
	assert_true(x->n < sizeof(x->b));
	x->b[x->n++] = (unsigned char)v;
}

/* Append a big-endian 16-bit value. */
static void put16(struct bytes *x, unsigned v)
{
	put8(x, v >> 8 & 0xff);
	put8(x, v & 0xff);
}

/* Write a big-endian length of width bytes at pos, counting what follows it. */
static void patch_len(struct bytes *x, size_t pos, size_t width)
{
	size_t len = x->n - pos - width;
	for (size_t i = 0; i < width; i++)
		x->b[pos + i] = (unsigned char)(len >> (8 * (width - 1 - i)) & 0xff);
}

/*
 * A TLS 1.3 ClientHello for "localhost", as a browser or curl would open
 * with.  with_groups adds the supported_groups extension, whose type is
 * 0x000a: a "\n" to a line-based server, as in nearly every real
 * ClientHello.  Without it, no byte of the record is 0x0a.
 */
static void client_hello(struct bytes *x, bool with_groups)
{
	static const unsigned suites[] = {0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030};
	size_t rec, hs, ext, e;

	x->n = 0;
	put8(x, 0x16); /* handshake record */
	put16(x, 0x0301);
	rec = x->n;
	put16(x, 0);
	put8(x, 0x01); /* client_hello */
	hs = x->n;
	put8(x, 0), put16(x, 0);
	put16(x, 0x0303);
	for (unsigned i = 0; i < 32; i++) /* random */
		put8(x, (i * 37 + 101) & 0xff);
	put8(x, 32); /* legacy session id */
	for (unsigned i = 0; i < 32; i++)
		put8(x, (i * 59 + 3) & 0xff);
	put16(x, 2 * (unsigned)(sizeof(suites) / sizeof(suites[0])));
	for (size_t i = 0; i < sizeof(suites) / sizeof(suites[0]); i++)
		put16(x, suites[i]);
	put8(x, 1), put8(x, 0); /* compression: null */
	ext = x->n;
	put16(x, 0);
	/* server_name: localhost */
	put16(x, 0x0000);
	e = x->n;
	put16(x, 0);
	put16(x, 12), put8(x, 0), put16(x, 9);
	for (const char *h = "localhost"; *h; h++)
		put8(x, (unsigned char)*h);
	patch_len(x, e, 2);
	/* supported_versions: TLS 1.3, 1.2 */
	put16(x, 0x002b), put16(x, 5), put8(x, 4), put16(x, 0x0304), put16(x, 0x0303);
	/* signature_algorithms */
	put16(x, 0x000d), put16(x, 8), put16(x, 6);
	put16(x, 0x0403), put16(x, 0x0804), put16(x, 0x0401);
	if (with_groups) /* supported_groups: x25519, secp256r1 */
		put16(x, 0x000a), put16(x, 6), put16(x, 4), put16(x, 0x001d), put16(x, 0x0017);
	/* key_share: x25519 with a 32-byte key */
	put16(x, 0x0033), put16(x, 38), put16(x, 36), put16(x, 0x001d), put16(x, 32);
	for (unsigned i = 0; i < 32; i++)
		put8(x, (i * 11 + 201) & 0xff);
	patch_len(x, ext, 2);
	patch_len(x, hs, 3);
	patch_len(x, rec, 2);
}

/*
 * A TLS ClientHello as the first bytes: the daemon answers with an error or
 * closes, logs why, stays up and serves the next client.
 */
static void test_tls_client_hello(void **state)
{
	struct it_config cfg = {.name = "tls", .hello_timeout_s = 2};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	struct bytes x;

	for (int with_groups = 0; with_groups <= 1; with_groups++) {
		client_hello(&x, with_groups);
		assert_true((memchr(x.b, '\n', x.n) != NULL) == (with_groups != 0));
		off_t off = it_log_offset(d);
		struct it_client *c = it_connect(d);
		it_send_raw(c, x.b, x.n);
		/* Wait past the hello deadline: a line, then the close, or the close. */
		char *line = NULL;
		enum it_read got = it_try_read_line(c, IT_REPLY_MS, &line);
		if (got == IT_READ_TIMEOUT)
			it_fail("ClientHello (%s a newline): no reply and no close within %d ms",
			        with_groups ? "with" : "without", IT_REPLY_MS);
		if (got == IT_READ_LINE) {
			json_decref(it_check_error(line, NULL, "auth_required"));
			free(line);
			it_expect_eof(c, IT_REPLY_MS);
		}
		expect_closed_logged(d, off, "auth_required ", "\"hello timeout\" ");
		it_close(c);
		assert_true(it_daemon_alive(d));
		expect_normal_client(d, with_groups ? "h-tls-after-2" : "h-tls-after-1", "H-TLS-1");
	}
	it_daemon_stop_clean(d);
}

/* HTTP on the event port: its first line is not a hello, so auth_required and closed. */
static void test_http_request(void **state)
{
	static const char get[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	static const char post[] = "POST /events HTTP/1.1\r\nHost: x\r\n"
	                           "Content-Type: application/json\r\nContent-Length: 15\r\n\r\n"
	                           "{\"type\":\"ping\"}";
	const char *const reqs[] = {get, post};
	struct it_config cfg = {.name = "http"};
	struct it_daemon *d = it_daemon_start(&cfg, true);

	for (size_t i = 0; i < 2; i++) {
		off_t off = it_log_offset(d);
		struct it_client *c = it_connect(d);
		it_send_raw(c, reqs[i], strlen(reqs[i]));
		json_decref(it_expect_error(c, NULL, "auth_required"));
		it_expect_eof(c, IT_REPLY_MS);
		expect_closed_logged(d, off, "auth_required ", "auth_required ");
		it_close(c);
	}
	assert_true(it_daemon_alive(d));
	expect_normal_client(d, "h-http-after", "H-HTTP-1");
	it_daemon_stop_clean(d);
}

/*
 * Guessing tokens on connections opened beforehand: once an address has
 * had limits.max_failed_hellos failed hellos in the minute, a hello on a
 * connection it opened earlier is refused too, before its token is
 * checked, so opening many connections first does not buy more guesses.
 */
static void test_failed_hellos_preopened(void **state)
{
	(void)state;
	enum { OPEN = 6, BUDGET = 3 };
	it_pg_createdb("preopened");
	struct it_config cfg = {
	    .name = "preopened", .dbname = "preopened", .max_failed_hellos = BUDGET};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	struct it_client *c[OPEN];
	for (int i = 0; i < OPEN; i++)
		c[i] = it_connect(d);
	it_send(c[0], "{\"type\":\"ping\"}"); /* all six are accepted by now */
	json_decref(it_expect_error(c[0], NULL, "auth_required"));
	for (int i = 1; i <= BUDGET; i++) {
		it_sendf(c[i],
		         "{\"type\":\"hello\",\"exporter\":\"" IT_EXPORTER
		         "\",\"token\":\"guess-%d\"}",
		         i);
		json_t *err = it_expect_error(c[i], NULL, "auth_failed");
		assert_null(strstr(it_json_str(err, "message"), "too many"));
		json_decref(err);
	}
	/* The budget is spent: even the right token is not checked. */
	for (int i = BUDGET + 1; i < OPEN; i++) {
		off_t off = it_log_offset(d);
		it_send(c[i], "{\"type\":\"hello\",\"exporter\":\"" IT_EXPORTER
		              "\",\"token\":\"" IT_TOKEN "\"}");
		json_t *err = it_expect_error(c[i], NULL, "auth_failed");
		assert_non_null(strstr(it_json_str(err, "message"), "too many failed hellos"));
		json_decref(err);
		it_expect_eof(c[i], IT_REPLY_MS);
		it_log_expect(d, off, "reason=failed_hellos", IT_REPLY_MS);
	}
	for (int i = 0; i < OPEN; i++)
		it_close(c[i]);
	it_daemon_stop_clean(d);
}

/* 10 MB without a newline: one line_too_long, a usable connection, little memory. */
static void test_ten_megabytes_no_newline(void **state)
{
	struct it_config cfg = {.name = "ten_mb"};
	it_asan_quarantine_off();
	struct it_daemon *d = it_daemon_start(&cfg, true);
	it_asan_quarantine_restore();
	struct it_client *c = session(d);
	/* Warm up the paths a normal line takes, so they do not count as growth. */
	char *ev = it_event_line("h-10mb-before", "order.created", "H-10MB-1", NULL);
	it_send(c, ev);
	it_expect_ack(c, "h-10mb-before", "stored");
	free(ev);
	long before = daemon_rss_kb(d);

	char *junk = repeat('x', 10 * MB);
	it_send_raw(c, junk, 10 * MB);
	free(junk);
	long after = daemon_rss_kb(d);
	/* End the line; exactly one error for all of it, then the pong. */
	it_send_raw(c, "\n", 1);
	json_decref(it_expect_error(c, NULL, "line_too_long"));
	it_send(c, "{\"type\":\"ping\"}");
	it_expect_pong(c);
	char *extra = NULL;
	if (it_try_read_line(c, 500, &extra) != IT_READ_TIMEOUT)
		it_fail("a reply more than expected: %s",
		        extra ? extra : "(the connection closed)");

	ev = it_event_line("h-10mb-after", "order.created", "H-10MB-1", NULL);
	it_send(c, ev);
	it_expect_ack(c, "h-10mb-after", "stored");
	free(ev);
	long end = daemon_rss_kb(d);
	printf("daemon VmRSS: %ld kB before, %ld kB after 10 MB, %ld kB at the end\n", before,
	       after, end);
	if (after - before >= RSS_GROWTH_MAX_KB || end - before >= RSS_GROWTH_MAX_KB)
		it_fail("10 MB without a newline grew the daemon from %ld kB to %ld kB (%ld at the "
		        "end); the limit is %d kB",
		        before, after, end, RSS_GROWTH_MAX_KB);
	it_daemon_stop_clean(d);
}

/*
 * 20,000 empty lines, each a byte, each answered malformed_json: the log
 * gets at most 100 "line rejected" lines a second for the connection, not
 * one each (two hundred bytes of log per byte sent), and the suppressed=
 * counts of the lines it gets add up with them to every rejection.
 */
static void test_rejections_log_bounded(void **state)
{
	(void)state;
	enum { LINES = 20000, PER_S = 100 };
	struct it_config cfg = {.name = "rej_log", .log_level = "info"};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	struct it_client *c = session(d);
	off_t from = it_log_offset(d);
	long long t0 = it_now_ms();
	char *empty = repeat('\n', LINES - 1);
	it_queue(c, empty); /* and a newline of its own: LINES empty lines */
	free(empty);
	c->want = LINES;
	assert_true(it_pump(&c, 1, 60000));
	for (size_t i = 0; i < c->n_lines; i++)
		json_decref(it_check_error(c->lines[i], NULL, "malformed_json"));
	it_sleep_ms(1100); /* a new second: the next rejection is logged */
	it_send(c, "");
	json_decref(it_expect_error(c, NULL, "malformed_json"));
	long long secs = (it_now_ms() - t0) / 1000 + 2;

	char *log = log_range(d, from, it_log_offset(d));
	long logged = 0, suppressed = 0, without = 0;
	for (char *p = log; (p = strstr(p, "msg=\"line rejected\"")) != NULL; p++) {
		char *s = strstr(p, " suppressed=");
		char *eol = strchr(p, '\n');
		logged++;
		if (s == NULL || (eol != NULL && s > eol))
			without++;
		else
			suppressed += strtol(s + 12, NULL, 10);
	}
	free(log);
	printf("%ld lines rejected logged, %ld suppressed, in about %lld s\n", logged, suppressed,
	       secs);
	if (logged > PER_S * secs)
		it_fail("%ld rejections logged in about %lld s", logged, secs);
	if (without > 0)
		it_fail("%ld of %ld line rejected records without suppressed=", without, logged);
	assert_int_equal(logged + suppressed, LINES + 1);
	it_daemon_stop_clean(d);
}

/*
 * A member name or type that holds a line separator, a C1 control or a
 * right-to-left override is quoted into the log escaped (\u2028, \u0085,
 * \u202e): the record stays one line and reads as the bytes were sent.
 */
static void test_log_keeps_one_line(void **state)
{
	(void)state;
	struct it_config cfg = {.name = "log_line", .log_level = "info"};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	struct it_client *c = session(d);
	off_t from = it_log_offset(d);
	it_send(c, "{\"type\":\"order.created\",\"id\":\"forge-1\",\"occurred_at\":"
	           "\"2026-11-02T09:15:00+02:00\",\"order\":\"K1\","
	           "\"\\u2028ts=0 level=error msg=forged\\u0085\":1}");
	json_decref(it_expect_error(c, "forge-1", "invalid_event"));
	it_send(c, "{\"type\":\"order.cr\\u202eeated\",\"id\":\"forge-2\"}");
	json_decref(it_expect_error(c, "forge-2", "unknown_type"));
	off_t to = it_log_expect(d, from, "event=forge-2", IT_REPLY_MS);
	char *log = log_range(d, from, to);
	assert_non_null(strstr(log, "\\u2028ts=0 level=error msg=forged\\u0085"));
	assert_non_null(strstr(log, "order.cr\\u202eeated"));
	assert_null(strstr(log, "\xe2\x80\xa8"));
	assert_null(strstr(log, "\xc2\x85"));
	assert_null(strstr(log, "\xe2\x80\xae"));
	/* Every line of the log is a whole record of the daemon's. */
	for (const char *p = log; *p != '\0'; p = strchr(p, '\n') + 1) {
		assert_int_equal(strncmp(p, "ts=", 3), 0);
		assert_non_null(strchr(p, '\n'));
	}
	free(log);
	it_daemon_stop_clean(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_hostile_table, it_test_teardown),
	    cmocka_unit_test_teardown(test_sql_in_strings, it_test_teardown),
	    cmocka_unit_test_teardown(test_tls_client_hello, it_test_teardown),
	    cmocka_unit_test_teardown(test_http_request, it_test_teardown),
	    cmocka_unit_test_teardown(test_failed_hellos_preopened, it_test_teardown),
	    cmocka_unit_test_teardown(test_ten_megabytes_no_newline, it_test_teardown),
	    cmocka_unit_test_teardown(test_rejections_log_bounded, it_test_teardown),
	    cmocka_unit_test_teardown(test_log_keeps_one_line, it_test_teardown),
	};
	it_env_init("hostile");
	return it_env_fini(cmocka_run_group_tests(tests, NULL, NULL));
}
