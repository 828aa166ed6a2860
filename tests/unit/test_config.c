/* SPDX-License-Identifier: ISC */
/*
 * test_config.c - unit tests for lib/config.c and the handlers of its
 * list-valued settings (lib/config_*.c), all through the public API.
 *
 * Every case parses text with config_parse_string(), so nothing here touches
 * the file system except one open of a path that cannot exist.  Error cases
 * compare the whole message, which pins the file name, the line and the key.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

#define KIVU_SHA  "0ef4ba1c633bd5d1f6b77c53d92686e817a73605f760b21ec7b5e932c4bd5adf"
#define CHILI_SHA "c9650b84e152820e8200c755ecfda487950edc001cb49187e4bc268d5db9041b"
#define OPS_SHA   "4db91eab0281403a94ae3ed61e1e1baf7528d2dc264eb786f64c43d7697d3177"

/* A file that sets every key to something other than its default. */
static const char full_text[] =
    "listen = [\"0.0.0.0:9000\", \"[::1]:9001\", \"localhost:0\"];\n"
    "database = { conninfo = \"host=/tmp dbname=ot_test\"; };\n"
    "exporters = (\n"
    "  { id = \"kivu-coffee\"; name = \"Kivu Hills Coffee Cooperative\";\n"
    "    token_sha256 = \"" KIVU_SHA "\"; },\n"
    "  { id = \"akagera_chili.2\"; name = \"Akagera Chili Exporters \xc3\xa9\";\n"
    "    token_sha256 = \"" CHILI_SHA "\"; }\n"
    ");\n"
    "limits = {\n"
    "  max_connections = 10;\n"
    "  max_line_bytes = 4096;\n"
    "  idle_timeout_s = 0;\n"
    "  window = 50;\n"
    "  max_pending = 500;\n"
    "};\n"
    "batch = { max_events = 20; max_delay_ms = 0; };\n"
    "log = { level = \"debug\"; stats_interval_s = 15; };\n"
    "operators = ( { id = \"ops\"; name = \"Operations desk\"; token_sha256 = \"" OPS_SHA
    "\"; } );\n"
    "webhooks = ( { id = \"erp\"; url = \"https://erp.example.com/hooks/ot\";\n"
    "  secret = \"0123456789abcdef\"; exporters = [\"kivu-coffee\"];\n"
    "  kinds = [\"order.status\", \"alert.stale\"]; } );\n"
    "alerts = { interval_s = 30; customs_hold_hours = 24; stale_hours = 72; };\n"
    "admin = { listen = \"[::1]:9500\"; };\n";

/* Parse text that must be good; fails the test with the message otherwise. */
static struct config *parse_ok(const char *text)
{
	char *err = (char *)"unset";
	struct config *c = config_parse_string(text, "t.conf", &err);
	if (c == NULL)
		fail_msg("unexpected error: %s", err);
	assert_null(err);
	return c;
}

/* Parse text that must be rejected and compare the whole message. */
static void parse_bad(const char *text, const char *want)
{
	char *err = NULL;
	struct config *c = config_parse_string(text, "t.conf", &err);
	if (c != NULL) {
		config_free(c);
		fail_msg("accepted bad config; wanted: %s", want);
	}
	assert_non_null(err);
	assert_string_equal(err, want);
	free(err);
}

/* Every key set: each value lands in its field. */
static void test_full(void **state)
{
	(void)state;
	struct config *c = parse_ok(full_text);
	assert_string_equal(c->path, "t.conf");
	assert_int_equal(c->n_listen, 3);
	assert_string_equal(c->listen[0], "0.0.0.0:9000");
	assert_string_equal(c->listen[1], "[::1]:9001");
	assert_string_equal(c->listen[2], "localhost:0");
	assert_string_equal(c->conninfo, "host=/tmp dbname=ot_test");
	assert_int_equal(c->n_exporters, 2);
	assert_string_equal(c->exporters[0].id, "kivu-coffee");
	assert_string_equal(c->exporters[0].name, "Kivu Hills Coffee Cooperative");
	assert_string_equal(c->exporters[1].id, "akagera_chili.2");
	assert_string_equal(c->exporters[1].name, "Akagera Chili Exporters \xc3\xa9");
	assert_int_equal(c->max_connections, 10);
	assert_int_equal(c->max_line_bytes, 4096);
	assert_int_equal(c->idle_timeout_s, 0);
	assert_int_equal(c->window, 50);
	assert_int_equal(c->max_pending, 500);
	assert_int_equal(c->batch_max_events, 20);
	assert_int_equal(c->batch_max_delay_ms, 0);
	assert_int_equal(c->log_level, LOG_LEVEL_DEBUG);
	assert_int_equal(c->n_operators, 1);
	assert_string_equal(c->operators[0].id, "ops");
	assert_string_equal(c->operators[0].name, "Operations desk");
	assert_int_equal(c->n_webhooks, 1);
	assert_string_equal(c->webhooks[0].id, "erp");
	assert_true(c->webhooks[0].https);
	assert_string_equal(c->webhooks[0].host, "erp.example.com");
	assert_int_equal(c->webhooks[0].port, 443);
	assert_string_equal(c->webhooks[0].path, "/hooks/ot");
	assert_int_equal(c->webhooks[0].n_secrets, 1);
	assert_string_equal(c->webhooks[0].secrets[0], "0123456789abcdef");
	assert_int_equal(c->webhooks[0].n_exporters, 1);
	assert_int_equal(c->webhooks[0].n_kinds, 2);
	assert_int_equal(c->alerts_interval_s, 30);
	assert_int_equal(c->alerts_customs_hold_hours, 24);
	assert_int_equal(c->alerts_stale_hours, 72);
	assert_string_equal(c->admin_listen, "[::1]:9500");
	assert_int_equal(c->stats_interval_s, 15);

	char hex[2 * AUTH_DIGEST_LEN + 1];
	auth_format_hex(c->exporters[1].token_sha256, hex);
	assert_string_equal(hex, CHILI_SHA);
	config_free(c);
}

/* An empty file gives every documented default. */
static void test_defaults(void **state)
{
	(void)state;
	struct config *c = parse_ok("# nothing set\n");
	assert_int_equal(c->n_listen, 1);
	assert_string_equal(c->listen[0], "127.0.0.1:7433");
	assert_string_equal(c->conninfo, "dbname=ordertrack");
	assert_int_equal(c->n_exporters, 0);
	assert_null(config_find_exporter(c, "kivu-coffee"));
	assert_int_equal(c->max_connections, 1024);
	assert_int_equal(c->max_line_bytes, 65536);
	assert_int_equal(c->idle_timeout_s, 300);
	assert_int_equal(c->window, 1000);
	assert_int_equal(c->max_pending, 100000);
	assert_int_equal(c->max_pending_bytes, 64 << 20);
	assert_int_equal(c->max_events_per_order, 10000);
	assert_int_equal(c->batch_max_events, 1000);
	assert_int_equal(c->batch_max_delay_ms, 1);
	assert_int_equal(c->db_connections, 2);
	assert_int_equal(c->max_connections_per_ip, 256);
	assert_int_equal(c->hello_timeout_s, 10);
	assert_int_equal(c->line_timeout_s, 30);
	assert_int_equal(c->max_failed_hellos, 10);
	assert_int_equal(c->keepalive_s, 60);
	assert_string_equal(c->user, "");
	assert_int_equal(c->log_level, LOG_LEVEL_INFO);
	assert_int_equal(c->n_operators, 0);
	assert_null(config_find_operator(c, "ops"));
	assert_int_equal(c->n_webhooks, 0);
	assert_null(c->webhooks);
	assert_int_equal(c->alerts_interval_s, 60);
	assert_int_equal(c->alerts_customs_hold_hours, 48);
	assert_int_equal(c->alerts_stale_hours, 120);
	assert_string_equal(c->admin_listen, "127.0.0.1:9433");
	assert_int_equal(c->stats_interval_s, 60);
	config_free(c);
}

/* Keys left out of a group keep their defaults next to the ones set. */
static void test_partial_defaults(void **state)
{
	(void)state;
	struct config *c = parse_ok("limits: { window = 7; };\nbatch = { };\nexporters = ();\n");
	assert_int_equal(c->window, 7);
	assert_int_equal(c->max_connections, 1024);
	assert_int_equal(c->max_pending, 100000);
	assert_int_equal(c->batch_max_events, 1000);
	assert_int_equal(c->n_exporters, 0);
	config_free(c);
}

/* Bounds are inclusive; 64-bit literals in range are fine. */
static void test_bounds_inclusive(void **state)
{
	(void)state;
	struct config *c =
	    parse_ok("limits = { max_connections = 1000000; max_line_bytes = 256;\n"
	             "  idle_timeout_s = 604800; window = 1; max_pending = 10000000L; };\n"
	             "batch = { max_events = 0x2710; max_delay_ms = 1000; };\n"
	             "database = { connections = 16; };\n"
	             "listen = (\"[::]:65535\", \"127.0.0.1:0\", \"127.0.0.1:0\");\n");
	assert_int_equal(c->max_connections, 1000000);
	assert_int_equal(c->max_line_bytes, 256);
	assert_int_equal(c->idle_timeout_s, 604800);
	assert_int_equal(c->window, 1);
	assert_int_equal(c->max_pending, 10000000);
	assert_int_equal(c->batch_max_events, 10000);
	assert_int_equal(c->batch_max_delay_ms, 1000);
	assert_int_equal(c->db_connections, 16);
	assert_int_equal(c->n_listen, 3);
	config_free(c);

	/* The per-peer limits at both ends. */
	c = parse_ok(
	    "limits = { max_connections_per_ip = 1000000; hello_timeout_s = 3600;\n"
	    "  line_timeout_s = 3600; max_failed_hellos = 100000; keepalive_s = 7200; };\n");
	assert_int_equal(c->max_connections_per_ip, 1000000);
	assert_int_equal(c->keepalive_s, 7200);
	assert_int_equal(c->hello_timeout_s, 3600);
	assert_int_equal(c->line_timeout_s, 3600);
	assert_int_equal(c->max_failed_hellos, 100000);
	config_free(c);
	c = parse_ok("limits = { max_connections_per_ip = 1; hello_timeout_s = 1;\n"
	             "  line_timeout_s = 1; max_failed_hellos = 1; keepalive_s = 0; };\n");
	assert_int_equal(c->max_connections_per_ip, 1);
	assert_int_equal(c->keepalive_s, 0);
	assert_int_equal(c->hello_timeout_s, 1);
	assert_int_equal(c->line_timeout_s, 1);
	assert_int_equal(c->max_failed_hellos, 1);
	config_free(c);

	/* String settings: the longest allowed is taken, one more is not. */
	char text[4200], val[4100];
	memset(val, 'u', 32);
	val[32] = '\0';
	snprintf(text, sizeof(text), "user = \"%s\";\n", val);
	c = parse_ok(text);
	assert_int_equal(strlen(c->user), 32);
	config_free(c);
	snprintf(text, sizeof(text), "user = \"%su\";\n", val);
	parse_bad(text, "t.conf:1: user: must be 0 to 32 characters long (got 33)");
	memset(val, 'a', 4096);
	val[4096] = '\0';
	snprintf(text, sizeof(text), "database = { conninfo = \"%s\"; };\n", val);
	c = parse_ok(text);
	assert_int_equal(strlen(c->conninfo), 4096);
	config_free(c);
	snprintf(text, sizeof(text), "database = { conninfo = \"%sa\"; };\n", val);
	parse_bad(text,
	          "t.conf:1: database.conninfo: must be 0 to 4096 characters long (got 4097)");
}

/* limits.max_pending_bytes: 64 KiB to 1 GiB, both inclusive; 64 MiB when left out. */
static void test_max_pending_bytes(void **state)
{
	(void)state;
	struct config *c = parse_ok("limits = { max_pending_bytes = 65536; };\n");
	assert_int_equal(c->max_pending_bytes, 65536);
	assert_int_equal(c->max_pending, 100000);
	struct config *d = parse_ok("limits = { max_pending_bytes = 1073741824; };\n");
	assert_int_equal(d->max_pending_bytes, 1073741824);
	/* A reload applies it, as it does limits.max_pending. */
	char out[64];
	assert_int_equal(config_restart_keys(c, d, out, sizeof(out)), 0);
	config_free(c);
	config_free(d);
	c = parse_ok("limits = { max_pending = 5; };\n");
	assert_int_equal(c->max_pending_bytes, 67108864);
	config_free(c);
	parse_bad("limits = {\n  max_pending_bytes = 65535;\n};\n",
	          "t.conf:2: limits.max_pending_bytes: must be between 65536 and 1073741824 (got "
	          "65535)");
	parse_bad("limits = { max_pending_bytes = 1073741825; };\n",
	          "t.conf:1: limits.max_pending_bytes: must be between 65536 and 1073741824 (got "
	          "1073741825)");
	parse_bad("limits = { max_pending_bytes = 4294967296L; };\n",
	          "t.conf:1: limits.max_pending_bytes: must be between 65536 and 1073741824 (got "
	          "4294967296)");
	parse_bad("limits = { max_pending_bytes = \"64M\"; };\n",
	          "t.conf:1: limits.max_pending_bytes: must be an integer (got a string)");
}

/* limits.max_events_per_order: 1 to 1,000,000, both inclusive; 10,000 when left out. */
static void test_max_events_per_order(void **state)
{
	(void)state;
	struct config *c = parse_ok("limits = { max_events_per_order = 1; };\n");
	assert_int_equal(c->max_events_per_order, 1);
	struct config *d = parse_ok("limits = { max_events_per_order = 1000000; };\n");
	assert_int_equal(d->max_events_per_order, 1000000);
	/* A reload applies it: no restart key is reported. */
	char out[64];
	assert_int_equal(config_restart_keys(c, d, out, sizeof(out)), 0);
	config_free(c);
	config_free(d);
	c = parse_ok("limits = { max_pending = 5; };\n");
	assert_int_equal(c->max_events_per_order, 10000);
	config_free(c);
	parse_bad("limits = {\n  max_events_per_order = 0;\n};\n",
	          "t.conf:2: limits.max_events_per_order: must be between 1 and 1000000 (got 0)");
	parse_bad("limits = { max_events_per_order = 1000001; };\n",
	          "t.conf:1: limits.max_events_per_order: must be between 1 and 1000000 (got "
	          "1000001)");
	parse_bad("limits = { max_events_per_order = -1; };\n",
	          "t.conf:1: limits.max_events_per_order: must be between 1 and 1000000 (got -1)");
	parse_bad("limits = { max_events_per_order = \"10k\"; };\n",
	          "t.conf:1: limits.max_events_per_order: must be an integer (got a string)");
}

/* libconfig's own parse errors carry the line. */
static void test_syntax_error(void **state)
{
	(void)state;
	parse_bad("log = { level = \"info\"; };\nlimits = {\n  window = ;\n};\n",
	          "t.conf:3: syntax error");
	parse_bad("batch = { max_events = 1; };\nbatch = { max_events = 2; };\n",
	          "t.conf:2: duplicate setting name");
	/* A key written as the docs name it, with its group: how to write it. */
	parse_bad("listen = [ \"127.0.0.1:7433\" ];\ndatabase.conninfo = \"dbname=x\";\n",
	          "t.conf:2: syntax error (\"database.conninfo\" is not how the file names a key: "
	          "write database = { conninfo = ...; };)");
	/* A key given twice on lines of its own is named; a string or a
	 * comment that looks like one is not counted. */
	parse_bad("limits = {\n  window = 1;\n  window = 2; # window = 3\n};\n",
	          "t.conf:3: duplicate setting name \"window\" (a key may be given once in its "
	          "group)");
	parse_bad("database = { conninfo = \"a=b\"; };\nuser = \"x\";\n"
	          "user = \"name: = \\\" y = z\"; // user = w\n",
	          "t.conf:3: duplicate setting name \"user\" (a key may be given once in its "
	          "group)");
	/* "database.conninfo" is no libconfig name: not named, to mislead no one. */
	parse_bad("database = { conninfo = \"a=b\"; };\ndatabase.conninfo = \"c=d\";\n",
	          "t.conf:2: duplicate setting name");
}

/* Unknown keys are errors at every level, with a suggestion when one is close. */
static void test_unknown_keys(void **state)
{
	(void)state;
	parse_bad("log = { level = \"info\"; };\nlimts = { window = 5; };\n",
	          "t.conf:2: unknown key \"limts\" (did you mean \"limits\"?)");
	parse_bad("\n\nfrobnicate = 1;\n", "t.conf:3: unknown key \"frobnicate\"");
	parse_bad("limits = {\n  window = 5;\n  max_conections = 5;\n};\n",
	          "t.conf:3: unknown key \"limits.max_conections\" "
	          "(did you mean \"limits.max_connections\"?)");
	parse_bad("window = 5;\n",
	          "t.conf:1: unknown key \"window\" (did you mean \"limits.window\"?)");
	parse_bad("database = { conninfo = \"\"; sslmode = \"require\"; };\n",
	          "t.conf:1: unknown key \"database.sslmode\"");
	parse_bad("exporters = (\n  { id = \"a\"; name = \"A\";\n    token_sha256 = \"" KIVU_SHA
	          "\";\n    nmae = \"x\"; }\n);\n",
	          "t.conf:4: unknown key \"exporters[0].nmae\" (did you mean \"name\"?)");
	parse_bad("exporters = ( { id = \"a\"; name = \"A\";\n  token = \"secret\"; } );\n",
	          "t.conf:2: unknown key \"exporters[0].token\" (store the token's SHA-256 as "
	          "token_sha256, never the token itself)");
	/* Two rows end in "listen": the first in the table ("listen") is suggested. */
	parse_bad("limits = { listen = \"x\"; };\n",
	          "t.conf:1: unknown key \"limits.listen\" (did you mean \"listen\"?)");
	/* A two-letter name is two edits from "id" but not offered as it. */
	parse_bad("exporters = ( { id = \"a\"; xy = \"A\"; } );\n",
	          "t.conf:1: unknown key \"exporters[0].xy\"");
}

/* A value of the wrong type names the type wanted and the type found. */
static void test_wrong_type(void **state)
{
	(void)state;
	parse_bad("limits = {\n  window = \"10\";\n};\n",
	          "t.conf:2: limits.window: must be an integer (got a string)");
	parse_bad("batch = { max_delay_ms = 1.5; };\n",
	          "t.conf:1: batch.max_delay_ms: must be an integer (got a float)");
	parse_bad("batch = { max_events = true; };\n",
	          "t.conf:1: batch.max_events: must be an integer (got a boolean)");
	parse_bad("database = { conninfo = 5; };\n",
	          "t.conf:1: database.conninfo: must be a string (got an integer)");
	parse_bad("log = { level = 3; };\n",
	          "t.conf:1: log.level: must be a string (got an integer)");
	parse_bad("limits = 5;\n", "t.conf:1: limits: must be a group { ... } (got an integer)");
	parse_bad("listen = \"127.0.0.1:7433\";\n",
	          "t.conf:1: listen: must be a list of \"host:port\" strings, e.g. "
	          "[\"127.0.0.1:7433\"] (got a string)");
	parse_bad("listen = [1, 2];\n",
	          "t.conf:1: listen[0]: must be a \"host:port\" string (got an "
	          "integer)");
	parse_bad("exporters = { id = \"a\"; };\n",
	          "t.conf:1: exporters: must be a list of groups, e.g. ( { id = \"...\"; name = "
	          "\"...\"; token_sha256 = \"...\"; } ) (got a group)");
	parse_bad("exporters = ( \"kivu\" );\n",
	          "t.conf:1: exporters[0]: must be a group { id = \"...\"; name = \"...\"; "
	          "token_sha256 = \"...\"; } (got a string)");
	parse_bad("exporters = ( { id = 7; } );\n",
	          "t.conf:1: exporters[0].id: must be a string (got an integer)");
}

/* Integers outside their bounds, including ones libconfig would wrap. */
static void test_out_of_range(void **state)
{
	(void)state;
	parse_bad("limits = {\n  max_connections = 0;\n};\n",
	          "t.conf:2: limits.max_connections: must be between 1 and 1000000 (got 0)");
	parse_bad("database = { connections = 17; };\n",
	          "t.conf:1: database.connections: must be between 1 and 16 (got 17)");
	parse_bad("database = { connections = 0; };\n",
	          "t.conf:1: database.connections: must be between 1 and 16 (got 0)");
	parse_bad(
	    "limits = { max_line_bytes = 16777217; };\n",
	    "t.conf:1: limits.max_line_bytes: must be between 256 and 16777216 (got 16777217)");
	parse_bad("limits = { idle_timeout_s = -1; };\n",
	          "t.conf:1: limits.idle_timeout_s: must be between 0 and 604800 (got -1)");
	parse_bad("limits = { window = 100001; };\n",
	          "t.conf:1: limits.window: must be between 1 and 100000 (got 100001)");
	parse_bad("limits = { max_pending = 0; };\n",
	          "t.conf:1: limits.max_pending: must be between 1 and 10000000 (got 0)");
	parse_bad("batch = { max_events = 10001; };\n",
	          "t.conf:1: batch.max_events: must be between 1 and 10000 (got 10001)");
	parse_bad("batch = { max_delay_ms = 1001; };\n",
	          "t.conf:1: batch.max_delay_ms: must be between 0 and 1000 (got 1001)");
	parse_bad("limits = { max_pending = 99999999999L; };\n",
	          "t.conf:1: limits.max_pending: must be between 1 and 10000000 (got 99999999999)");
	/* 4294968320 is 2^32 + 1024: libconfig alone would read it as 1024. */
	parse_bad("limits = {\n  max_connections = 4294968320;\n};\n",
	          "t.conf:2: limits.max_connections: must be between 1 and 1000000 (got "
	          "4294968320)");
	/* Hex digits past 9, in either case. */
	struct config *c = parse_ok("limits = { window = 0x3e8; max_pending = 0x3E8F; };\n");
	assert_int_equal(c->window, 1000);
	assert_int_equal(c->max_pending, 16015);
	config_free(c);
	/* 2^32 + 1000, which libconfig alone would read as 1000, in both cases. */
	parse_bad("limits = { window = 0x1000003e8; };\n",
	          "t.conf:1: limits.window: must be between 1 and 100000 (got 0x1000003e8)");
	parse_bad("limits = { window = 0x1000003E8; };\n",
	          "t.conf:1: limits.window: must be between 1 and 100000 (got 0x1000003E8)");
	parse_bad("batch = { max_events = 0x100000001; };\n",
	          "t.conf:1: batch.max_events: must be between 1 and 10000 (got 0x100000001)");
	/* 0x80000000 is read as INT_MIN: still named as written. */
	parse_bad("batch = { max_events = 0x80000000; };\n",
	          "t.conf:1: batch.max_events: must be between 1 and 10000 (got 0x80000000)");
	parse_bad("limits = { max_connections_per_ip = 1000001; };\n",
	          "t.conf:1: limits.max_connections_per_ip: must be between 1 and 1000000 (got "
	          "1000001)");
	parse_bad("limits = { hello_timeout_s = 3601; };\n",
	          "t.conf:1: limits.hello_timeout_s: must be between 1 and 3600 (got 3601)");
	parse_bad("limits = { line_timeout_s = 0; };\n",
	          "t.conf:1: limits.line_timeout_s: must be between 1 and 3600 (got 0)");
	parse_bad("limits = { keepalive_s = 7201; };\n",
	          "t.conf:1: limits.keepalive_s: must be between 0 and 7200 (got 7201)");
	parse_bad("limits = { keepalive_s = -1; };\n",
	          "t.conf:1: limits.keepalive_s: must be between 0 and 7200 (got -1)");
	parse_bad("limits = { max_failed_hellos = 100001; };\n",
	          "t.conf:1: limits.max_failed_hellos: must be between 1 and 100000 (got 100001)");
	parse_bad("limits = { window = 123456789012345678901234567890; };\n",
	          "t.conf:1: limits.window: must be between 1 and 100000 (got "
	          "123456789012345678901234567890)");
}

/* Exporter ids are unique and drawn from a small alphabet. */
static void test_exporter_ids(void **state)
{
	(void)state;
	parse_bad("exporters = (\n"
	          "  { id = \"kivu\"; name = \"A\"; token_sha256 = \"" KIVU_SHA "\"; },\n"
	          "  { name = \"B\";\n"
	          "    id = \"kivu\"; token_sha256 = \"" CHILI_SHA "\"; }\n"
	          ");\n",
	          "t.conf:4: exporters[1].id: duplicate exporter id \"kivu\" (already used by "
	          "exporters[0])");
	parse_bad("exporters = ( { id = \"kivu coffee\"; name = \"A\"; token_sha256 = \"" KIVU_SHA
	          "\"; } );\n",
	          "t.conf:1: exporters[0].id: \"kivu coffee\" may only contain A-Z a-z 0-9 . _ - "
	          "(found ' ' at position 5)");
	parse_bad("exporters = ( { id = \"kivu/1\"; name = \"A\"; token_sha256 = \"" KIVU_SHA
	          "\"; } );\n",
	          "t.conf:1: exporters[0].id: \"kivu/1\" may only contain A-Z a-z 0-9 . _ - "
	          "(found '/' at position 5)");
	/* A backslash is shown escaped, so the quote cannot be misread. */
	parse_bad("exporters = ( { id = \"a\\\\b\"; name = \"A\"; } );\n",
	          "t.conf:1: exporters[0].id: \"a\\x5cb\" may only contain A-Z a-z 0-9 . _ - "
	          "(found '\\' at position 2)");
	parse_bad("exporters = ( { id = \"\"; name = \"A\"; token_sha256 = \"" KIVU_SHA
	          "\"; } );\n",
	          "t.conf:1: exporters[0].id: must not be empty");
	parse_bad("exporters = ( { id = "
	          "\"a123456789b123456789c123456789d123456789e123456789f123456789g1234\"; } );\n",
	          "t.conf:1: exporters[0].id: must be at most 64 characters (got 65)");
	/* 64 characters are fine. */
	struct config *c =
	    parse_ok("exporters = ( { id = "
	             "\"a123456789b123456789c123456789d123456789e123456789f123456789g123\"; name = "
	             "\"A\"; token_sha256 = \"" KIVU_SHA "\"; } );\n");
	assert_int_equal(strlen(c->exporters[0].id), 64);
	config_free(c);
}

/* Tokens are stored as 64 hex digits; names are required and bounded. */
static void test_exporter_token_and_name(void **state)
{
	(void)state;
	parse_bad("exporters = (\n  { id = \"a\"; name = \"A\";\n"
	          "    token_sha256 = \"demo-kivu-token\"; }\n);\n",
	          "t.conf:3: exporters[0].token_sha256: must be 64 hex digits, the SHA-256 of the "
	          "token (got 15 characters; make it with: printf %s \"$TOKEN\" | sha256sum)");
	parse_bad("exporters = ( { id = \"a\"; name = \"A\"; token_sha256 = "
	          "\"0ef4ba1c633bd5d1f6b77c53d92686e817a73605f760b21ec7b5e932c4bd5adg\"; } );\n",
	          "t.conf:1: exporters[0].token_sha256: must be 64 hex digits, the SHA-256 of the "
	          "token (got a character that is not 0-9 a-f A-F; make it with: printf %s "
	          "\"$TOKEN\" | sha256sum)");
	parse_bad("exporters = (\n  { id = \"a\";\n    token_sha256 = \"" KIVU_SHA "\"; }\n);\n",
	          "t.conf:2: exporters[0].name: missing (every exporter needs id, name and "
	          "token_sha256)");
	parse_bad("exporters = ( { id = \"a\"; name = \"A\"; } );\n",
	          "t.conf:1: exporters[0].token_sha256: missing (every exporter needs id, name and "
	          "token_sha256)");
	parse_bad("exporters = ( { id = \"a\"; name = \"\"; } );\n",
	          "t.conf:1: exporters[0].name: must not be empty");
	parse_bad("exporters = ( { id = \"a\"; name = \"bad \xff\"; } );\n",
	          "t.conf:1: exporters[0].name: must be valid UTF-8");
	parse_bad("exporters = ( { id = \"a\"; name = \"tab\\there\"; } );\n",
	          "t.conf:1: exporters[0].name: must not contain control characters");
	/* DEL and the last C1 control (U+009F) are controls too. */
	parse_bad("exporters = ( { id = \"a\"; name = \"del\x7f\"; } );\n",
	          "t.conf:1: exporters[0].name: must not contain control characters");
	parse_bad("exporters = ( { id = \"a\"; name = \"apc\xc2\x9f\"; } );\n",
	          "t.conf:1: exporters[0].name: must not contain control characters");
	/* An overlong '/' in three bytes is not UTF-8. */
	parse_bad("exporters = ( { id = \"a\"; name = \"x\xe0\x80\xaf\"; } );\n",
	          "t.conf:1: exporters[0].name: must be valid UTF-8");

	char text[512], name[140];
	memset(name, 'n', 129);
	name[129] = '\0';
	snprintf(text, sizeof(text), "exporters = ( { id = \"a\"; name = \"%s\"; } );\n", name);
	parse_bad(text, "t.conf:1: exporters[0].name: must be at most 128 characters (got 129)");
	/* 128 two-byte characters are 256 bytes but still 128 characters. */
	char *p = name;
	for (int i = 0; i < 64; i++) {
		memcpy(p, "\xc3\xa9", 2);
		p += 2;
	}
	*p = '\0';
	snprintf(text, sizeof(text),
	         "exporters = ( { id = \"a\"; name = \"%s%s\"; token_sha256 = \"" KIVU_SHA
	         "\"; } );\n",
	         name, name);
	struct config *c = parse_ok(text);
	assert_int_equal(strlen(c->exporters[0].name), 256);
	config_free(c);

	/* Four-byte characters (a seedling, U+1F331) count one each: 128 of
	 * them pass, 129 do not.  Past U+10FFFF, or overlong, is not UTF-8. */
	char big[1100], *q = big;
	for (int i = 0; i < 129; i++) {
		memcpy(q, "\xf0\x9f\x8c\xb1", 4);
		q += 4;
	}
	*q = '\0';
	char text4[1300];
	snprintf(text4, sizeof(text4),
	         "exporters = ( { id = \"a\"; name = \"%s\"; token_sha256 = \"" KIVU_SHA
	         "\"; } );\n",
	         big);
	parse_bad(text4, "t.conf:1: exporters[0].name: must be at most 128 characters (got 129)");
	big[128 * 4] = '\0';
	snprintf(text4, sizeof(text4),
	         "exporters = ( { id = \"a\"; name = \"%s\"; token_sha256 = \"" KIVU_SHA
	         "\"; } );\n",
	         big);
	c = parse_ok(text4);
	assert_int_equal(strlen(c->exporters[0].name), 512);
	config_free(c);
	parse_bad("exporters = ( { id = \"a\"; name = \"x\xf4\x90\x80\x80\"; } );\n",
	          "t.conf:1: exporters[0].name: must be valid UTF-8");
	parse_bad("exporters = ( { id = \"a\"; name = \"x\xf0\x8f\xbf\xbf\"; } );\n",
	          "t.conf:1: exporters[0].name: must be valid UTF-8");
}

/* listen entries must be host:port with a port in range. */
static void test_listen(void **state)
{
	(void)state;
	parse_bad("listen = [\n  \"127.0.0.1\"\n];\n",
	          "t.conf:2: listen[0]: \"127.0.0.1\" has no port (want \"host:port\")");
	parse_bad("listen = [\"127.0.0.1:7433\",\n  \"127.0.0.1:70000\"];\n",
	          "t.conf:2: listen[1]: port must be between 0 and 65535 (got \"70000\")");
	parse_bad("listen = [];\n", "t.conf:1: listen: must have 1 to 64 entries (got 0)");
	parse_bad("listen = [\"127.0.0.1:\"];\n",
	          "t.conf:1: listen[0]: \"127.0.0.1:\" has no port (want \"host:port\")");
	parse_bad("listen = [\":7433\"];\n", "t.conf:1: listen[0]: \":7433\" has no host (use "
	                                     "0.0.0.0 or [::] for every address)");
	parse_bad("listen = [\"::1:7433\"];\n", "t.conf:1: listen[0]: \"::1:7433\": an IPv6 "
	                                        "address needs brackets, e.g. \"[::1]:7433\"");
	parse_bad("listen = [\"[::1]\"];\n",
	          "t.conf:1: listen[0]: \"[::1]\" has no port (want \"[v6]:port\")");
	parse_bad("listen = [\"[::g]:1\"];\n",
	          "t.conf:1: listen[0]: \"[::g]:1\" is not an IPv6 address in brackets");
	parse_bad("listen = [\"[::1:7433\"];\n",
	          "t.conf:1: listen[0]: \"[::1:7433\" has no closing ']'");
	parse_bad("listen = [\"300.1.1.1:7433\"];\n", "t.conf:1: listen[0]: \"300.1.1.1:7433\" "
	                                              "does not start with a valid host name or "
	                                              "address");
	parse_bad("listen = [\"localhost:000007433\"];\n",
	          "t.conf:1: listen[0]: port must be between 0 and 65535 (got \"000007433\")");
	parse_bad("listen = [\"localhost:http\"];\n",
	          "t.conf:1: listen[0]: \"localhost:http\": port must be a number");
	parse_bad("listen = [\"\"];\n",
	          "t.conf:1: listen[0]: must not be empty (want \"host:port\")");
	parse_bad("listen = [\"127.0.0.1:7433\", \"127.0.0.1:7433\"];\n",
	          "t.conf:1: listen[1]: \"127.0.0.1:7433\" is already listed as listen[0]");
	/* Six digits are out of range even when the number is not. */
	parse_bad("listen = [\"localhost:007433\"];\n",
	          "t.conf:1: listen[0]: port must be between 0 and 65535 (got \"007433\")");
	/* 47 characters in brackets fill the address buffer: refused, nothing overrun. */
	parse_bad("listen = [\"[11111111111111111111111111111111111111111111111]:1\"];\n",
	          "t.conf:1: listen[0]: \"[11111111111111111111111111111111111111111111111]:1\" is "
	          "not an IPv6 address in brackets");

	/* A host name of 253 characters (with '_', as some resolvers allow) is fine, 254 are
	 * not. */
	char text[400], host[260];
	memset(host, 'a', 253);
	host[3] = '_';
	host[253] = '\0';
	snprintf(text, sizeof(text), "listen = [\"%s:7433\"];\n", host);
	struct config *c = parse_ok(text);
	assert_int_equal(strlen(c->listen[0]), 258);
	config_free(c);
	snprintf(text, sizeof(text), "listen = [\"a%s:7433\"];\n", host);
	char want[200];
	snprintf(want, sizeof(want),
	         "t.conf:1: listen[0]: \"a%.89s...\" does not start with a valid host name or "
	         "address",
	         host);
	parse_bad(text, want);

	/* 64 entries are the most (port 0 may repeat), 65 are too many. */
	char many[64 * 16 + 32];
	size_t n = (size_t)snprintf(many, sizeof(many), "listen = [");
	for (int i = 0; i < 64; i++)
		n +=
		    (size_t)snprintf(many + n, sizeof(many) - n, "%s\"127.0.0.1:0\"", i ? "," : "");
	snprintf(many + n, sizeof(many) - n, "];\n");
	c = parse_ok(many);
	assert_int_equal(c->n_listen, 64);
	config_free(c);
	snprintf(many + n, sizeof(many) - n, ",\"127.0.0.1:0\"];\n");
	parse_bad(many, "t.conf:1: listen: must have 1 to 64 entries (got 65)");
}

/* log.level accepts exactly the four names. */
static void test_bad_log_level(void **state)
{
	(void)state;
	parse_bad("log = {\n  level = \"verbose\";\n};\n",
	          "t.conf:2: log.level: must be \"error\", \"warning\", \"info\" or \"debug\" (got "
	          "\"verbose\")");
	parse_bad("log = { level = \"INFO\"; };\n",
	          "t.conf:1: log.level: must be \"error\", \"warning\", \"info\" or \"debug\" (got "
	          "\"INFO\")");
	parse_bad("log = \"info\";\n", "t.conf:1: log: must be a group { ... } (got a string)");
}

/* full_text with its first "from" replaced by "to", parsed. */
static struct config *parse_edited(const char *from, const char *to)
{
	const char *at = strstr(full_text, from);
	assert_non_null(at);
	size_t n = sizeof(full_text) + strlen(to);
	char *text = malloc(n);
	assert_non_null(text);
	snprintf(text, n, "%.*s%s%s", (int)(at - full_text), full_text, to, at + strlen(from));
	struct config *c = parse_ok(text);
	free(text);
	return c;
}

/* What a reload changes: reloadable keys only, each custom row compared. */
static void test_reload_keys(void **state)
{
	(void)state;
	static const struct {
		const char *from, *to, *want;
	} edits[] = {
	    {"Kivu Hills Coffee Cooperative", "Kivu Hills", "exporters"},
	    {"window = 50;", "window = 51;", "limits.window"},
	    {"level = \"debug\"; stats_interval_s = 15;",
	     "level = \"info\"; stats_interval_s = 16;", "log.level,log.stats_interval_s"},
	    {"Operations desk", "Ops", "operators"},
	    {"0123456789abcdef", "0123456789abcdeF", "webhooks"},
	    {"\"alert.stale\"]", "\"alert.overdue\"]", "webhooks"},
	    {"alerts = {",
	     "documents = { required = ( { hs_prefix = \"09\"; documents = "
	     "[\"phytosanitary\"]; } ); };\nalerts = {",
	     "documents.required"},
	    {"alerts = {", "tls = { cert = \"/etc/c.pem\"; key = \"/etc/k.pem\"; };\nalerts = {",
	     "tls"},
	    {"host=/tmp dbname=ot_test", "dbname=other", ""}, /* restart-only */
	};
	struct config *a = parse_ok(full_text);
	char out[256];
	assert_int_equal(config_reload_keys(a, a, out, sizeof(out)), 0);
	assert_string_equal(out, "");
	for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
		struct config *b = parse_edited(edits[i].from, edits[i].to);
		int want_n = edits[i].want[0] == '\0' ? 0 : 1;
		for (const char *c = edits[i].want; *c != '\0'; c++)
			want_n += *c == ',';
		assert_int_equal(config_reload_keys(a, b, out, sizeof(out)), want_n);
		assert_string_equal(out, edits[i].want);
		/* And back: the comparison does not depend on the side. */
		assert_int_equal(config_reload_keys(b, a, out, sizeof(out)), want_n);
		config_free(b);
	}
	config_free(a);
}

/* Only listen, database.conninfo and admin.listen need a restart, listed in table order. */
static void test_restart_keys(void **state)
{
	(void)state;
	struct config *a = parse_ok(full_text);
	struct config *b = parse_ok(full_text);
	char out[128];

	assert_int_equal(config_restart_keys(a, b, out, sizeof(out)), 0);
	assert_string_equal(out, "");

	/* Reloadable changes alone need no restart. */
	b->window = 1;
	b->log_level = LOG_LEVEL_ERROR;
	assert_int_equal(config_restart_keys(a, b, out, sizeof(out)), 0);
	assert_string_equal(out, "");

	free(b->conninfo);
	b->conninfo = strdup("dbname=other");
	assert_int_equal(config_restart_keys(a, b, out, sizeof(out)), 1);
	assert_string_equal(out, "database.conninfo");

	struct config *d = parse_ok("database = { conninfo = \"dbname=other\"; };\n");
	assert_int_equal(config_restart_keys(a, d, out, sizeof(out)), 3);
	assert_string_equal(out, "listen,database.conninfo,admin.listen");

	/* Reordering listen counts as a change. */
	struct config *e =
	    parse_ok("listen = [\"[::1]:9001\", \"0.0.0.0:9000\", \"localhost:0\"];\n"
	             "database = { conninfo = \"host=/tmp dbname=ot_test\"; };\n"
	             "admin = { listen = \"[::1]:9500\"; };\n");
	assert_int_equal(config_restart_keys(a, e, out, sizeof(out)), 1);
	assert_string_equal(out, "listen");

	/* So does adding an entry after the same first one. */
	struct config *f = parse_ok("listen = [\"0.0.0.0:9000\"];\n"
	                            "database = { conninfo = \"host=/tmp dbname=ot_test\"; };\n"
	                            "admin = { listen = \"[::1]:9500\"; };\n");
	assert_int_equal(config_restart_keys(f, a, out, sizeof(out)), 1);
	assert_string_equal(out, "listen");
	config_free(f);

	/* A short buffer keeps only whole keys but the count stays right. */
	char small[10];
	assert_int_equal(config_restart_keys(a, d, small, sizeof(small)), 3);
	assert_string_equal(small, "listen");
	assert_int_equal(config_restart_keys(a, d, NULL, 0), 3);
	/* A key that fits only without its NUL is left out, not cut. */
	char six[6];
	assert_int_equal(config_restart_keys(a, d, six, sizeof(six)), 3);
	assert_string_equal(six, "");
	/* The list stops at the first key that does not fit, though a later one would. */
	char twenty[20];
	assert_int_equal(config_restart_keys(a, d, twenty, sizeof(twenty)), 3);
	assert_string_equal(twenty, "listen");

	config_free(a);
	config_free(b);
	config_free(d);
	config_free(e);
}

/* Exporters are found by exact id and carry the right digest. */
static void test_find_exporter(void **state)
{
	(void)state;
	struct config *c = parse_ok(full_text);
	const struct config_exporter *x = config_find_exporter(c, "kivu-coffee");
	assert_non_null(x);
	assert_string_equal(x->name, "Kivu Hills Coffee Cooperative");
	assert_true(auth_token_matches(x->token_sha256, "demo-kivu-token", 15));
	assert_false(auth_token_matches(x->token_sha256, "demo-chili-token", 16));

	x = config_find_exporter(c, "akagera_chili.2");
	assert_non_null(x);
	assert_true(auth_token_matches(x->token_sha256, "demo-chili-token", 16));

	assert_null(config_find_exporter(c, "kivu"));
	assert_null(config_find_exporter(c, "KIVU-COFFEE"));
	assert_null(config_find_exporter(c, ""));
	assert_null(config_find_exporter(c, NULL));
	assert_null(config_find_exporter(NULL, "kivu-coffee"));
	config_free(c);
}

/* Level names and parsing are inverses; junk is refused. */
static void test_log_levels(void **state)
{
	(void)state;
	const enum log_level all[] = {LOG_LEVEL_ERROR, LOG_LEVEL_WARNING, LOG_LEVEL_INFO,
	                              LOG_LEVEL_DEBUG};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		enum log_level got = LOG_LEVEL_ERROR;
		if (all[i] == LOG_LEVEL_ERROR)
			got = LOG_LEVEL_DEBUG;
		assert_true(log_level_parse(log_level_name(all[i]), &got));
		assert_int_equal(got, all[i]);
	}
	assert_string_equal(log_level_name(LOG_LEVEL_WARNING), "warning");
	assert_string_equal(log_level_name((enum log_level)42), "unknown");

	enum log_level keep = LOG_LEVEL_INFO;
	assert_false(log_level_parse("warn", &keep));
	assert_false(log_level_parse("", &keep));
	assert_false(log_level_parse("debug ", &keep));
	assert_false(log_level_parse(NULL, &keep));
	assert_int_equal(keep, LOG_LEVEL_INFO);
}

/* A missing file is reported with the path and the system's reason. */
static void test_missing_file(void **state)
{
	(void)state;
	char *err = NULL;
	const char *path = "/nonexistent-ordertrack-dir/ordertrackd.conf";
	assert_null(config_load(path, &err));
	assert_non_null(err);
	assert_string_equal(err,
	                    "cannot read /nonexistent-ordertrack-dir/ordertrackd.conf: No such "
	                    "file or directory");
	free(err);
}

/* An empty file (a write cut short) is refused; one of comments only gives the defaults. */
static void test_empty_file(void **state)
{
	(void)state;
	char path[] = "/tmp/ot-config-empty-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, " \n\t\n", 4), 4);
	char *err = NULL;
	assert_null(config_load(path, &err));
	assert_non_null(err);
	assert_non_null(strstr(err, ": the file is empty"));
	assert_int_equal(strncmp(err, path, strlen(path)), 0);
	free(err);
	assert_int_equal(write(fd, "# the defaults\n", 15), 15);
	close(fd);
	struct config *c = config_load(path, &err);
	assert_non_null(c);
	assert_null(err);
	assert_int_equal(c->n_exporters, 0);
	config_free(c);
	unlink(path);
}

/* The first error wins, so messages stay about one thing. */
static void test_first_error_only(void **state)
{
	(void)state;
	parse_bad("limits = { window = 0; max_pending = 0; };\nbogus = 1;\n",
	          "t.conf:1: limits.window: must be between 1 and 100000 (got 0)");
}

/* The documents.required snippet of the shipped config: coffee and capsicum. */
static const char doc_rules_text[] =
    "documents = {\n"
    "  required = (\n"
    "    { hs_prefix = \"0901\"; documents = [\"phytosanitary\", \"certificate_of_origin\"]; },\n"
    "    { hs_prefix = \"0904\";\n"
    "      documents = [\"phytosanitary\", \"certificate_of_origin\",\n"
    "                   \"quality_certificate\"]; }\n"
    "  );\n"
    "};\n";

/* documents.required: absent means no rule; given, it becomes the fold's rules. */
static void test_doc_rules(void **state)
{
	(void)state;
	struct model_rules mr;
	struct config *c = parse_ok("# nothing\n");
	assert_int_equal(c->n_doc_rules, 0);
	config_model_rules(c, &mr);
	assert_int_equal(mr.n_doc_rules, 0);
	config_free(c);

	c = parse_ok("documents = { required = (); };\n");
	assert_int_equal(c->n_doc_rules, 0);
	config_free(c);

	c = parse_ok(doc_rules_text);
	assert_int_equal(c->n_doc_rules, 2);
	config_model_rules(c, &mr);
	assert_ptr_equal(mr.doc_rules, c->doc_rules);
	assert_int_equal(mr.n_doc_rules, 2);
	assert_string_equal(mr.doc_rules[0].hs_prefix, "0901");
	assert_int_equal(mr.doc_rules[0].n_documents, 2);
	assert_string_equal(mr.doc_rules[0].documents[0], "phytosanitary");
	assert_string_equal(mr.doc_rules[0].documents[1], "certificate_of_origin");
	assert_string_equal(mr.doc_rules[1].hs_prefix, "0904");
	assert_int_equal(mr.doc_rules[1].n_documents, 3);
	assert_string_equal(mr.doc_rules[1].documents[2], "quality_certificate");

	/* A list in ( ) works as well as an array in [ ], and 10 digits are fine. */
	struct config *d = parse_ok("documents: { required: ( { documents = ( \"packing_list\" ); "
	                            "hs_prefix = \"0904211000\"; } ); };\n");
	assert_int_equal(d->n_doc_rules, 1);
	assert_string_equal(d->doc_rules[0].documents[0], "packing_list");

	/* The rules reload without a restart. */
	char out[64];
	assert_int_equal(config_restart_keys(c, d, out, sizeof(out)), 0);
	config_free(c);
	config_free(d);
	config_model_rules(NULL, &mr);
	assert_null(mr.doc_rules);
}

/* documents.required errors name the file, the line and the key. */
static void test_doc_rules_errors(void **state)
{
	(void)state;
	parse_bad("documents = { required = 5; };\n",
	          "t.conf:1: documents.required: must be a list of groups, e.g. ( { hs_prefix = "
	          "\"0901\"; documents = [\"phytosanitary\"]; } ) (got an integer)");
	parse_bad("documents = 5;\n",
	          "t.conf:1: documents: must be a group { ... } (got an integer)");
	parse_bad("documents = { requird = (); };\n",
	          "t.conf:1: unknown key \"documents.requird\" (did you mean "
	          "\"documents.required\"?)");
	parse_bad("documents = { required = ( \"0901\" ); };\n",
	          "t.conf:1: documents.required[0]: must be a group { hs_prefix = \"...\"; "
	          "documents = [...]; } (got a string)");
	parse_bad("documents = { required = (\n"
	          "  { hs_prefix = \"09x1\"; documents = [\"phytosanitary\"]; } ); };\n",
	          "t.conf:2: documents.required[0].hs_prefix: must be 2-10 digits, the start of an "
	          "HS code (got \"09x1\")");
	parse_bad("documents = { required = (\n"
	          "  { hs_prefix = \"9\"; documents = [\"phytosanitary\"]; } ); };\n",
	          "t.conf:2: documents.required[0].hs_prefix: must be 2-10 digits, the start of an "
	          "HS code (got \"9\")");
	parse_bad("documents = { required = (\n"
	          "  { hs_prefix = 901; documents = [\"phytosanitary\"]; } ); };\n",
	          "t.conf:2: documents.required[0].hs_prefix: must be a string (got an integer)");
	parse_bad("documents = { required = (\n"
	          "  { hs_prefix = \"0901\";\n"
	          "    documents = [\"phytosanitary\", \"invoice\"]; } ); };\n",
	          "t.conf:3: documents.required[0].documents[1]: must be one of phytosanitary, "
	          "certificate_of_origin, export_declaration, commercial_invoice, packing_list, "
	          "bill_of_lading, air_waybill, quality_certificate (got \"invoice\")");
	parse_bad(
	    "documents = { required = (\n"
	    "  { hs_prefix = \"0901\"; documents = [\"phytosanitary\", "
	    "\"phytosanitary\"]; } ); };\n",
	    "t.conf:2: documents.required[0].documents[1]: \"phytosanitary\" is listed twice");
	parse_bad("documents = { required = (\n"
	          "  { hs_prefix = \"0901\"; documents = []; } ); };\n",
	          "t.conf:2: documents.required[0].documents: must name at least one document");
	parse_bad("documents = { required = (\n"
	          "  { hs_prefix = \"0901\"; documents = \"phytosanitary\"; } ); };\n",
	          "t.conf:2: documents.required[0].documents: must be a list of document kinds, "
	          "e.g. [\"phytosanitary\"] (got a string)");
	parse_bad(
	    "documents = { required = (\n"
	    "  { hs_prefix = \"0901\"; documents = [1]; } ); };\n",
	    "t.conf:2: documents.required[0].documents[0]: must be a string (got an integer)");
	parse_bad("documents = { required = (\n"
	          "  { hs_prefix = \"0901\"; } ); };\n",
	          "t.conf:2: documents.required[0].documents: missing (every rule needs hs_prefix "
	          "and documents)");
	parse_bad("documents = { required = (\n"
	          "  { hs_prefx = \"0901\"; documents = [\"phytosanitary\"]; } ); };\n",
	          "t.conf:2: unknown key \"documents.required[0].hs_prefx\" (did you mean "
	          "\"hs_prefix\"?)");
	parse_bad(
	    "documents = { required = (\n"
	    "  { hs_prefix = \"0901\"; documents = [\"phytosanitary\"]; },\n"
	    "  { hs_prefix = \"0904\"; documents = [\"phytosanitary\"]; },\n"
	    "  { documents = [\"packing_list\"];\n"
	    "    hs_prefix = \"0901\"; } ); };\n",
	    "t.conf:5: documents.required[2].hs_prefix: duplicate hs_prefix \"0901\" (already "
	    "used by documents.required[0])");
	/* A repeat right after its first, too. */
	parse_bad("documents = { required = ( { hs_prefix = \"0901\"; documents = "
	          "[\"phytosanitary\"]; },\n  { hs_prefix = \"0901\"; documents = "
	          "[\"phytosanitary\"]; } ); };\n",
	          "t.conf:2: documents.required[1].hs_prefix: duplicate hs_prefix \"0901\" "
	          "(already used by documents.required[0])");
	/* At most 1000 rules. */
	enum { CAP = 1001 * 72 + 64 };
	char *text = malloc(CAP);
	assert_non_null(text);
	size_t n = (size_t)snprintf(text, CAP, "documents = { required = (");
	for (int k = 0; k < 1000; k++)
		n += (size_t)snprintf(text + n, CAP - n,
		                      "%s{ hs_prefix = \"%06d\"; documents = [\"packing_list\"]; }",
		                      k ? "," : "", k);
	snprintf(text + n, CAP - n, "); };\n");
	struct config *c = parse_ok(text);
	assert_int_equal(c->n_doc_rules, 1000);
	config_free(c);
	snprintf(text + n, CAP - n,
	         ",{ hs_prefix = \"09\"; documents = [\"packing_list\"]; }); };\n");
	parse_bad(text, "t.conf:1: documents.required: must have at most 1000 entries (got 1001)");
	free(text);
}

/* Operators: the same shape as exporters, found by id, reloaded without a restart. */
static void test_operators(void **state)
{
	(void)state;
	struct config *c = parse_ok(
	    "exporters = ( { id = \"ops\"; name = \"An exporter called ops\";\n"
	    "    token_sha256 = \"" KIVU_SHA "\"; } );\n"
	    "operators = (\n"
	    "  { id = \"ops\"; name = \"Operations desk\"; token_sha256 = \"" OPS_SHA "\"; },\n"
	    "  { id = \"night.shift_2\"; name = \"Night shift \xc3\xa9\"; token_sha256 = "
	    "\"" CHILI_SHA "\"; }\n"
	    ");\n");
	assert_int_equal(c->n_operators, 2);
	/* An operator and an exporter may share an id: they are told apart by the hello. */
	const struct config_exporter *op = config_find_operator(c, "ops");
	const struct config_exporter *ex = config_find_exporter(c, "ops");
	assert_non_null(op);
	assert_non_null(ex);
	assert_ptr_not_equal(op, ex);
	assert_string_equal(op->name, "Operations desk");
	assert_true(auth_token_matches(op->token_sha256, "demo-ops-token", 14));
	assert_false(auth_token_matches(op->token_sha256, "demo-kivu-token", 15));
	assert_non_null(config_find_operator(c, "night.shift_2"));
	assert_null(config_find_operator(c, "OPS"));
	assert_null(config_find_operator(c, NULL));
	assert_null(config_find_operator(NULL, "ops"));
	assert_null(config_find_exporter(c, "night.shift_2"));

	struct config *d = parse_ok("operators = ();\n");
	assert_int_equal(d->n_operators, 0);
	char out[64];
	assert_int_equal(config_restart_keys(c, d, out, sizeof(out)), 0);
	config_free(c);
	config_free(d);
}

/* Operator errors read like exporter errors, with "operator" in them. */
static void test_operator_errors(void **state)
{
	(void)state;
	parse_bad("operators = (\n"
	          "  { id = \"ops\"; name = \"A\"; token_sha256 = \"" OPS_SHA "\"; },\n"
	          "  { id = \"ops\"; name = \"B\"; token_sha256 = \"" KIVU_SHA "\"; }\n"
	          ");\n",
	          "t.conf:3: operators[1].id: duplicate operator id \"ops\" (already used by "
	          "operators[0])");
	parse_bad("operators = ( { id = \"ops desk\"; name = \"A\"; token_sha256 = \"" OPS_SHA
	          "\"; } );\n",
	          "t.conf:1: operators[0].id: \"ops desk\" may only contain A-Z a-z 0-9 . _ - "
	          "(found ' ' at position 4)");
	parse_bad("operators = ( { id = \"ops\"; token_sha256 = \"" OPS_SHA "\"; } );\n",
	          "t.conf:1: operators[0].name: missing (every operator needs id, name and "
	          "token_sha256)");
	parse_bad(
	    "operators = ( { id = \"ops\"; name = \"A\";\n  token = \"demo-ops-token\"; } );\n",
	    "t.conf:2: unknown key \"operators[0].token\" (store the token's SHA-256 as "
	    "token_sha256, never the token itself)");
	parse_bad("operators = ( { id = \"ops\"; name = \"A\"; token_sha256 = \"abc\"; } );\n",
	          "t.conf:1: operators[0].token_sha256: must be 64 hex digits, the SHA-256 of the "
	          "token (got 3 characters; make it with: printf %s \"$TOKEN\" | sha256sum)");
	parse_bad("operators = { id = \"ops\"; };\n",
	          "t.conf:1: operators: must be a list of groups, e.g. ( { id = \"...\"; name = "
	          "\"...\"; token_sha256 = \"...\"; } ) (got a group)");
	parse_bad("operator = ();\n",
	          "t.conf:1: unknown key \"operator\" (did you mean \"operators\"?)");
}

/* A webhook with every key, and the url taken apart in each of its forms. */
static void test_webhooks(void **state)
{
	(void)state;
	/* webhooks come before exporters here: the exporter check waits for the whole file. */
	struct config *c = parse_ok(
	    "webhooks = (\n"
	    "  { id = \"erp\"; url = \"http://erp.internal:8080/ot/hook?src=ot\";\n"
	    "    secrets = [\"new-secret-0123456789\", \"old-secret-0123456789\"];\n"
	    "    exporters = [\"kivu-coffee\", \"akagera-chili\"];\n"
	    "    kinds = [\"order.status\", \"order.anomaly\", \"shipment.status\", "
	    "\"shipment.eta\",\n"
	    "             \"alert.customs_dwell\", \"alert.overdue\", \"alert.stale\"]; },\n"
	    "  { id = \"chat\"; url = \"https://hooks.example.com\"; secret = "
	    "\"s3cret-s3cret-16\"; },\n"
	    "  { id = \"v6\"; url = \"http://[::1]:9000?x=1\"; secret = \"0123456789abcdef\"; },\n"
	    "  { id = \"ip\"; url = \"https://10.0.0.7:65535/\"; secret = \"0123456789abcdef\"; }\n"
	    ");\n"
	    "exporters = (\n"
	    "  { id = \"kivu-coffee\"; name = \"K\"; token_sha256 = \"" KIVU_SHA "\"; },\n"
	    "  { id = \"akagera-chili\"; name = \"A\"; token_sha256 = \"" CHILI_SHA "\"; }\n"
	    ");\n");
	assert_int_equal(c->n_webhooks, 4);

	const struct config_webhook *w = &c->webhooks[0];
	assert_string_equal(w->id, "erp");
	assert_string_equal(w->url, "http://erp.internal:8080/ot/hook?src=ot");
	assert_false(w->https);
	assert_string_equal(w->host, "erp.internal");
	assert_int_equal(w->port, 8080);
	assert_string_equal(w->path, "/ot/hook?src=ot");
	assert_int_equal(w->n_secrets, 2);
	assert_string_equal(w->secrets[0], "new-secret-0123456789");
	assert_string_equal(w->secrets[1], "old-secret-0123456789");
	assert_int_equal(w->n_exporters, 2);
	assert_string_equal(w->exporters[1], "akagera-chili");
	assert_int_equal(w->n_kinds, 7);
	assert_string_equal(w->kinds[6], "alert.stale");

	w = &c->webhooks[1];
	assert_true(w->https);
	assert_string_equal(w->host, "hooks.example.com");
	assert_int_equal(w->port, 443);
	assert_string_equal(w->path, "/");
	assert_int_equal(w->n_secrets, 1);
	assert_int_equal(w->n_exporters, 0);
	assert_null(w->exporters);
	assert_int_equal(w->n_kinds, 0);
	assert_null(w->kinds);

	w = &c->webhooks[2];
	assert_false(w->https);
	assert_string_equal(w->host, "::1");
	assert_int_equal(w->port, 9000);
	assert_string_equal(w->path, "/?x=1");

	w = &c->webhooks[3];
	assert_string_equal(w->host, "10.0.0.7");
	assert_int_equal(w->port, 65535);
	assert_string_equal(w->path, "/");

	/* http without a port is port 80; an empty list is no webhook. */
	struct config *d = parse_ok("webhooks = ( { url = \"http://localhost/x\"; id = \"a\";\n"
	                            "  secrets = ( \"0123456789abcdef\" ); } );\n");
	assert_int_equal(d->webhooks[0].port, 80);
	assert_string_equal(d->webhooks[0].path, "/x");
	assert_int_equal(d->webhooks[0].n_secrets, 1);
	struct config *e = parse_ok("webhooks = ();\n");
	assert_int_equal(e->n_webhooks, 0);

	/* Webhooks reload without a restart. */
	char out[64];
	assert_int_equal(config_restart_keys(c, e, out, sizeof(out)), 0);
	assert_int_equal(config_restart_keys(d, e, out, sizeof(out)), 0);
	config_free(c);
	config_free(d);
	config_free(e);
}

/* One webhook entry around a url, for the url cases below. */
#define HOOK_URL(u)                                                                                \
	"webhooks = ( { id = \"h\"; secret = \"0123456789abcdef\";\n  url = \"" u "\"; } );\n"

/* Webhook errors name the file, the line and the key; secrets are never quoted. */
static void test_webhook_errors(void **state)
{
	(void)state;
	/* Duplicate ids. */
	parse_bad("webhooks = (\n"
	          "  { id = \"erp\"; url = \"http://a/\"; secret = \"0123456789abcdef\"; },\n"
	          "  { url = \"http://b/\"; secret = \"0123456789abcdef\";\n"
	          "    id = \"erp\"; }\n"
	          ");\n",
	          "t.conf:4: webhooks[1].id: duplicate webhook id \"erp\" (already used by "
	          "webhooks[0])");
	parse_bad("webhooks = ( { id = \"e r p\"; url = \"http://a/\"; secret = "
	          "\"0123456789abcdef\"; } );\n",
	          "t.conf:1: webhooks[0].id: \"e r p\" may only contain A-Z a-z 0-9 . _ - (found "
	          "' ' at position 2)");

	/* Bad urls. */
	parse_bad(HOOK_URL("ftp://example.com/"),
	          "t.conf:2: webhooks[0].url: \"ftp://example.com/\" must start with http:// or "
	          "https://");
	parse_bad(HOOK_URL("HTTP://example.com/"),
	          "t.conf:2: webhooks[0].url: \"HTTP://example.com/\" must start with http:// or "
	          "https://");
	parse_bad(HOOK_URL("example.com/hook"),
	          "t.conf:2: webhooks[0].url: \"example.com/hook\" must start with http:// or "
	          "https://");
	parse_bad(HOOK_URL("http:///hook"),
	          "t.conf:2: webhooks[0].url: \"http:///hook\" has no host");
	parse_bad(HOOK_URL("https://"), "t.conf:2: webhooks[0].url: \"https://\" has no host");
	parse_bad(HOOK_URL("http://:8080/"),
	          "t.conf:2: webhooks[0].url: \"http://:8080/\" has no host");
	parse_bad(
	    HOOK_URL("http://exa mple.com/"),
	    "t.conf:2: webhooks[0].url: \"http://exa mple.com/\" may only hold printable ASCII "
	    "without spaces (percent-encode the rest)");
	parse_bad(HOOK_URL("http://example.com/caf\xc3\xa9"),
	          "t.conf:2: webhooks[0].url: \"http://example.com/caf\\xc3\\xa9\" may only hold "
	          "printable ASCII without spaces (percent-encode the rest)");
	parse_bad(HOOK_URL("http://exa$mple.com/"),
	          "t.conf:2: webhooks[0].url: \"http://exa$mple.com/\" does not have a valid host "
	          "name or address");
	parse_bad(
	    HOOK_URL("http://300.1.1.1/"),
	    "t.conf:2: webhooks[0].url: \"http://300.1.1.1/\" does not have a valid host name "
	    "or address");
	parse_bad(HOOK_URL("http://example.com:0/"),
	          "t.conf:2: webhooks[0].url: port must be between 1 and 65535 (got \"0\")");
	parse_bad(HOOK_URL("http://example.com:70000/"),
	          "t.conf:2: webhooks[0].url: port must be between 1 and 65535 (got \"70000\")");
	parse_bad(HOOK_URL("http://example.com:/"),
	          "t.conf:2: webhooks[0].url: port must be between 1 and 65535 (got \"\")");
	parse_bad(HOOK_URL("http://example.com:http/"),
	          "t.conf:2: webhooks[0].url: port must be a number (got \"http\")");
	parse_bad(HOOK_URL("http://example.com:0000080/"),
	          "t.conf:2: webhooks[0].url: port must be between 1 and 65535 (got \"0000080\")");
	/* The password is not copied into the message (and so the log). */
	parse_bad(HOOK_URL("https://user:pw@example.com/"),
	          "t.conf:2: webhooks[0].url: \"https://***@example.com/\" must not hold a user "
	          "or password (the secret signs each request)");
	parse_bad(HOOK_URL("htps://user:s3cr3t@example.com/"),
	          "t.conf:2: webhooks[0].url: \"htps://***@example.com/\" must start with http:// "
	          "or https://");
	parse_bad(HOOK_URL("https://user:s3 cr3t@example.com/"),
	          "t.conf:2: webhooks[0].url: \"https://***@example.com/\" may only hold printable "
	          "ASCII without spaces (percent-encode the rest)");
	parse_bad(HOOK_URL("https://example.com/hook#frag"),
	          "t.conf:2: webhooks[0].url: \"https://example.com/hook#frag\" must not have a "
	          "fragment (#...)");
	parse_bad(
	    HOOK_URL("http://::1:8080/"),
	    "t.conf:2: webhooks[0].url: \"http://::1:8080/\": an IPv6 address needs brackets, "
	    "e.g. \"http://[::1]:8080/\"");
	parse_bad(HOOK_URL("http://[::1/"),
	          "t.conf:2: webhooks[0].url: \"http://[::1/\" has no closing ']'");
	parse_bad(
	    HOOK_URL("http://[::g]/"),
	    "t.conf:2: webhooks[0].url: \"http://[::g]/\" is not an IPv6 address in brackets");
	parse_bad(
	    HOOK_URL("http://[::1]x/"),
	    "t.conf:2: webhooks[0].url: \"http://[::1]x/\" has something after ']' that is not "
	    "a port");
	parse_bad("webhooks = ( { id = \"h\"; secret = \"0123456789abcdef\"; url = 80; } );\n",
	          "t.conf:1: webhooks[0].url: must be a string (got an integer)");

	/* Secrets: long enough, one key or the other, never echoed. */
	parse_bad(
	    "webhooks = ( { id = \"h\"; url = \"http://a/\";\n  secret = \"short-secret\"; } );\n",
	    "t.conf:2: webhooks[0].secret: must be at least 16 characters (got 12; make one "
	    "with: openssl rand -hex 32)");
	parse_bad(
	    "webhooks = ( { id = \"h\"; url = \"http://a/\";\n"
	    "  secrets = [\"0123456789abcdef\",\n"
	    "             \"too-short\"]; } );\n",
	    "t.conf:3: webhooks[0].secrets[1]: must be at least 16 characters (got 9; make one "
	    "with: openssl rand -hex 32)");
	parse_bad("webhooks = ( { id = \"h\"; url = \"http://a/\";\n"
	          "  secret = \"0123456789abcdef\";\n"
	          "  secrets = [\"fedcba9876543210\"]; } );\n",
	          "t.conf:3: webhooks[0].secrets: give either secret or secrets, not both");
	parse_bad("webhooks = ( { id = \"h\"; url = \"http://a/\";\n"
	          "  secrets = [\"fedcba9876543210\"];\n"
	          "  secret = \"0123456789abcdef\"; } );\n",
	          "t.conf:3: webhooks[0].secret: give either secret or secrets, not both");
	parse_bad("webhooks = ( { id = \"h\"; url = \"http://a/\"; secrets = []; } );\n",
	          "t.conf:1: webhooks[0].secrets: must have 1 or 2 entries (got 0)");
	parse_bad("webhooks = ( { id = \"h\"; url = \"http://a/\";\n"
	          "  secrets = [\"0123456789abcdef\", \"0123456789abcdeg\", \"0123456789abcdeh\"]; "
	          "} );\n",
	          "t.conf:2: webhooks[0].secrets: must have at most 2 entries (got 3)");
	parse_bad("webhooks = ( { id = \"h\"; url = \"http://a/\";\n"
	          "  secrets = [\"0123456789abcdef\", \"0123456789abcdef\"]; } );\n",
	          "t.conf:2: webhooks[0].secrets[1]: is the same as webhooks[0].secrets[0]");
	parse_bad("webhooks = ( { id = \"h\"; url = \"http://a/\"; secrets = \"0123456789abcdef\"; "
	          "} );\n",
	          "t.conf:1: webhooks[0].secrets: must be a list, e.g. [\"new secret\", \"old "
	          "secret\"] (got a string)");
	parse_bad("webhooks = ( { id = \"h\"; url = \"http://a/\";\n"
	          "  secret = \"0123456789abcde\\x07\"; } );\n",
	          "t.conf:2: webhooks[0].secret: must not contain control characters");
	parse_bad("webhooks = ( { id = \"h\";\n  url = \"http://a/\"; } );\n",
	          "t.conf:1: webhooks[0].secret: missing (every webhook needs secret or secrets)");
	parse_bad("webhooks = ( { id = \"h\"; secret = \"0123456789abcdef\"; } );\n",
	          "t.conf:1: webhooks[0].url: missing (every webhook needs id, url and secret or "
	          "secrets)");
	parse_bad("webhooks = ( { url = \"http://a/\"; secret = \"0123456789abcdef\"; } );\n",
	          "t.conf:1: webhooks[0].id: missing (every webhook needs id, url and secret or "
	          "secrets)");

	/* exporters: well-formed, configured, listed once. */
	parse_bad("exporters = ( { id = \"kivu-coffee\"; name = \"K\"; token_sha256 = \"" KIVU_SHA
	          "\"; } );\n"
	          "webhooks = ( { id = \"h\"; url = \"http://a/\"; secret = \"0123456789abcdef\";\n"
	          "  exporters = [\"kivu-coffee\",\n"
	          "               \"akagera-chili\"]; } );\n",
	          "t.conf:4: webhooks[0].exporters[1]: unknown exporter \"akagera-chili\" (not in "
	          "exporters)");
	/* Also when exporters come later in the file, and with no exporters at all. */
	parse_bad(
	    "webhooks = ( { id = \"h\"; url = \"http://a/\"; secret = \"0123456789abcdef\";\n"
	    "  exporters = [\"kivu\"]; } );\n"
	    "exporters = ( { id = \"kivu-coffee\"; name = \"K\"; token_sha256 = \"" KIVU_SHA
	    "\"; } );\n",
	    "t.conf:2: webhooks[0].exporters[0]: unknown exporter \"kivu\" (not in exporters)");
	parse_bad("webhooks = ( { id = \"h\"; url = \"http://a/\"; secret = \"0123456789abcdef\";\n"
	          "  exporters = [\"kivu-coffee\"]; } );\n",
	          "t.conf:2: webhooks[0].exporters[0]: unknown exporter \"kivu-coffee\" (not in "
	          "exporters)");
	parse_bad(
	    "webhooks = ( { id = \"h\"; url = \"http://a/\"; secret = \"0123456789abcdef\";\n"
	    "  exporters = [\"kivu coffee\"]; } );\n",
	    "t.conf:2: webhooks[0].exporters[0]: \"kivu coffee\" may only contain A-Z a-z 0-9 "
	    ". _ - (found ' ' at position 5)");
	parse_bad("webhooks = ( { id = \"h\"; url = \"http://a/\"; secret = \"0123456789abcdef\";\n"
	          "  exporters = []; } );\n",
	          "t.conf:2: webhooks[0].exporters: must name at least one exporter (leave it out "
	          "for all)");
	parse_bad("webhooks = ( { id = \"h\"; url = \"http://a/\"; secret = \"0123456789abcdef\";\n"
	          "  exporters = [\"k\", \"k\"]; } );\n",
	          "t.conf:2: webhooks[0].exporters[1]: \"k\" is listed twice");

	/* kinds: known notification kinds only. */
	parse_bad("webhooks = ( { id = \"h\"; url = \"http://a/\"; secret = \"0123456789abcdef\";\n"
	          "  kinds = [\"order.status\", \"order.created\"]; } );\n",
	          "t.conf:2: webhooks[0].kinds[1]: must be one of order.status, order.anomaly, "
	          "shipment.status, shipment.eta, alert.customs_dwell, alert.overdue, alert.stale "
	          "(got \"order.created\")");
	parse_bad("webhooks = ( { id = \"h\"; url = \"http://a/\"; secret = \"0123456789abcdef\";\n"
	          "  kinds = [5]; } );\n",
	          "t.conf:2: webhooks[0].kinds[0]: must be a string (got an integer)");
	parse_bad(
	    "webhooks = ( { id = \"h\"; url = \"http://a/\"; secret = \"0123456789abcdef\";\n"
	    "  kinds = []; } );\n",
	    "t.conf:2: webhooks[0].kinds: must name at least one kind (leave it out for all)");
	parse_bad("webhooks = ( { id = \"h\"; url = \"http://a/\"; secret = \"0123456789abcdef\";\n"
	          "  kinds = [\"alert.stale\", \"alert.stale\"]; } );\n",
	          "t.conf:2: webhooks[0].kinds[1]: \"alert.stale\" is listed twice");

	/* Shape and unknown keys. */
	parse_bad("webhooks = { id = \"h\"; };\n",
	          "t.conf:1: webhooks: must be a list of groups, e.g. ( { id = \"...\"; url = "
	          "\"https://...\"; secret = \"...\"; } ) (got a group)");
	parse_bad("webhooks = ( \"http://a/\" );\n",
	          "t.conf:1: webhooks[0]: must be a group { id = \"...\"; url = \"...\"; secret = "
	          "\"...\"; } (got a string)");
	parse_bad("webhooks = ( { id = \"h\"; url = \"http://a/\";\n  secert = "
	          "\"0123456789abcdef\"; } );\n",
	          "t.conf:2: unknown key \"webhooks[0].secert\" (did you mean \"secret\"?)");
	parse_bad("webhooks = ( { id = \"h\"; url = \"http://a/\"; secret = \"0123456789abcdef\";\n"
	          "  method = \"PUT\"; } );\n",
	          "t.conf:2: unknown key \"webhooks[0].method\"");
}

/* The webhook limits of CONFIG.md at their edges. */
static void test_webhook_limits(void **state)
{
	(void)state;
	enum { BIG = 110 * 80 + 64 };
	char *text = malloc(BIG);
	char *val = malloc(2100);
	struct config *c;
	size_t n;
	assert_non_null(text);
	assert_non_null(val);

	/* url: 2048 characters are fine, 2049 are not. */
	n = (size_t)snprintf(val, 2100, "https://h.example/");
	memset(val + n, 'a', 2048 - n);
	val[2048] = '\0';
	snprintf(text, BIG,
	         "webhooks = ( { id = \"a\"; url = \"%s\"; secret = \"0123456789abcdef\"; } );\n",
	         val);
	c = parse_ok(text);
	assert_int_equal(strlen(c->webhooks[0].url), 2048);
	config_free(c);
	snprintf(text, BIG,
	         "webhooks = ( { id = \"a\"; url = \"%sb\"; secret = \"0123456789abcdef\"; } );\n",
	         val);
	parse_bad(text, "t.conf:1: webhooks[0].url: must be at most 2048 characters (got 2049)");

	/* secret: 1024 characters are fine, 1025 are not. */
	memset(val, 's', 1024);
	val[1024] = '\0';
	snprintf(text, BIG,
	         "webhooks = ( { id = \"a\"; url = \"https://h/\"; secret = \"%s\"; } );\n", val);
	c = parse_ok(text);
	assert_int_equal(strlen(c->webhooks[0].secrets[0]), 1024);
	config_free(c);
	snprintf(text, BIG,
	         "webhooks = ( { id = \"a\"; url = \"https://h/\"; secret = \"%ss\"; } );\n", val);
	parse_bad(text, "t.conf:1: webhooks[0].secret: must be at most 1024 characters (got 1025)");

	/* The port: 65536 and six digits are out; DEL and a too long [v6] are refused. */
	parse_bad("webhooks = ( { id = \"a\"; url = \"https://h:65536/\"; secret = "
	          "\"0123456789abcdef\"; } );\n",
	          "t.conf:1: webhooks[0].url: port must be between 1 and 65535 (got \"65536\")");
	parse_bad("webhooks = ( { id = \"a\"; url = \"https://h:000443/\"; secret = "
	          "\"0123456789abcdef\"; } );\n",
	          "t.conf:1: webhooks[0].url: port must be between 1 and 65535 (got \"000443\")");
	parse_bad("webhooks = ( { id = \"a\"; url = \"https://h/\\x7f\"; secret = "
	          "\"0123456789abcdef\"; } );\n",
	          "t.conf:1: webhooks[0].url: \"https://h/\\x7f\" may only hold printable ASCII "
	          "without spaces (percent-encode the rest)");
	parse_bad("webhooks = ( { id = \"a\"; url = "
	          "\"https://[11111111111111111111111111111111111111111111111]/\"; secret = "
	          "\"0123456789abcdef\"; } );\n",
	          "t.conf:1: webhooks[0].url: "
	          "\"https://[11111111111111111111111111111111111111111111111]/\" is not an IPv6 "
	          "address in brackets");

	/* At most 1000 exporters per webhook and 100 webhooks. */
	n = (size_t)snprintf(text, BIG,
	                     "webhooks = ( { id = \"a\"; url = \"https://h/\"; secret = "
	                     "\"0123456789abcdef\"; exporters = [");
	for (int i = 0; i < 1001; i++)
		n += (size_t)snprintf(text + n, BIG - n, "%s\"e%d\"", i ? "," : "", i);
	snprintf(text + n, BIG - n, "]; } );\n");
	parse_bad(text,
	          "t.conf:1: webhooks[0].exporters: must have at most 1000 entries (got 1001)");
	n = (size_t)snprintf(text, BIG, "webhooks = (");
	for (int i = 0; i < 100; i++)
		n += (size_t)snprintf(text + n, BIG - n,
		                      "%s{ id = \"w%d\"; url = \"https://h/\"; secret = "
		                      "\"0123456789abcdef\"; }",
		                      i ? "," : "", i);
	snprintf(text + n, BIG - n, ");\n");
	c = parse_ok(text);
	assert_int_equal(c->n_webhooks, 100);
	config_free(c);
	snprintf(text + n, BIG - n,
	         ",{ id = \"w100\"; url = \"https://h/\"; secret = \"0123456789abcdef\"; });\n");
	parse_bad(text, "t.conf:1: webhooks: must have at most 100 entries (got 101)");
	/* A '@' after the '#' that ends the authority is no user: the url is quoted whole. */
	parse_bad("webhooks = ( { id = \"a\"; url = \"https://h#x@y\"; secret = "
	          "\"0123456789abcdef\"; } );\n",
	          "t.conf:1: webhooks[0].url: \"https://h#x@y\" must not have a fragment (#...)");
	free(val);
	free(text);
}

/* A secret never appears in a message, whatever is wrong with it. */
static void test_webhook_secret_not_echoed(void **state)
{
	(void)state;
	const char *const texts[] = {
	    "webhooks = ( { id = \"h\"; url = \"http://a/\"; secret = \"SeCrEt\"; } );\n",
	    "webhooks = ( { id = \"h\"; url = \"http://a/\"; secrets = [\"SeCrEt\"]; } );\n",
	    "webhooks = ( { id = \"h\"; url = \"http://a/\";\n"
	    "  secrets = [\"SeCrEt-0123456789\", \"SeCrEt-0123456789\"]; } );\n",
	    "webhooks = ( { id = \"h\"; url = \"http://a/\"; secret = \"SeCrEt-0123456789\\x01\"; "
	    "} );\n",
	};
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		char *err = NULL;
		assert_null(config_parse_string(texts[i], "t.conf", &err));
		assert_non_null(err);
		assert_null(strstr(err, "SeCrEt"));
		free(err);
	}
}

/* alerts: defaults, bounds inclusive, reloadable. */
static void test_alerts(void **state)
{
	(void)state;
	struct config *c = parse_ok("alerts = { interval_s = 1; customs_hold_hours = 8760;\n"
	                            "  stale_hours = 1; };\n");
	assert_int_equal(c->alerts_interval_s, 1);
	assert_int_equal(c->alerts_customs_hold_hours, 8760);
	assert_int_equal(c->alerts_stale_hours, 1);
	struct config *d = parse_ok("alerts = { interval_s = 86400; };\n");
	assert_int_equal(d->alerts_interval_s, 86400);
	assert_int_equal(d->alerts_customs_hold_hours, 48);
	assert_int_equal(d->alerts_stale_hours, 120);
	char out[64];
	assert_int_equal(config_restart_keys(c, d, out, sizeof(out)), 0);
	config_free(c);
	config_free(d);

	parse_bad("alerts = {\n  interval_s = 0;\n};\n",
	          "t.conf:2: alerts.interval_s: must be between 1 and 86400 (got 0)");
	parse_bad("alerts = { interval_s = 86401; };\n",
	          "t.conf:1: alerts.interval_s: must be between 1 and 86400 (got 86401)");
	parse_bad("alerts = { customs_hold_hours = 0; };\n",
	          "t.conf:1: alerts.customs_hold_hours: must be between 1 and 8760 (got 0)");
	parse_bad("alerts = { customs_hold_hours = 8761; };\n",
	          "t.conf:1: alerts.customs_hold_hours: must be between 1 and 8760 (got 8761)");
	parse_bad("alerts = { stale_hours = -5; };\n",
	          "t.conf:1: alerts.stale_hours: must be between 1 and 8760 (got -5)");
	parse_bad("alerts = { stale_hours = \"120\"; };\n",
	          "t.conf:1: alerts.stale_hours: must be an integer (got a string)");
	parse_bad("alerts = { stale_hours = 4294967416; };\n",
	          "t.conf:1: alerts.stale_hours: must be between 1 and 8760 (got 4294967416)");
	parse_bad(
	    "alerts = { stale_hour = 5; };\n",
	    "t.conf:1: unknown key \"alerts.stale_hour\" (did you mean \"alerts.stale_hours\"?)");
	parse_bad("alerts = 60;\n", "t.conf:1: alerts: must be a group { ... } (got an integer)");
}

/* admin.listen: a listen address or "" (off); a restart-only key kept across reloads. */
static void test_admin_listen(void **state)
{
	(void)state;
	struct config *c = parse_ok("admin = { listen = \"\"; };\n");
	assert_string_equal(c->admin_listen, "");
	struct config *d = parse_ok("admin: { listen = \"0.0.0.0:0\"; };\n");
	assert_string_equal(d->admin_listen, "0.0.0.0:0");
	struct config *e = parse_ok("admin = { listen = \"localhost:9433\"; };\n");
	assert_string_equal(e->admin_listen, "localhost:9433");

	char out[128];
	assert_int_equal(config_restart_keys(c, d, out, sizeof(out)), 1);
	assert_string_equal(out, "admin.listen");
	assert_int_equal(config_restart_keys(d, d, out, sizeof(out)), 0);

	/* A reload keeps the running address and reports the new one again. */
	config_keep_restart_keys(d, c);
	assert_string_equal(d->admin_listen, "");
	assert_string_equal(c->admin_listen, "0.0.0.0:0");
	config_free(c);
	config_free(d);
	config_free(e);

	/* database.connections too: the lanes are made once, at start. */
	c = parse_ok("database = { connections = 2; };\n");
	d = parse_ok("database = { connections = 5; };\n");
	assert_int_equal(config_restart_keys(c, d, out, sizeof(out)), 1);
	assert_string_equal(out, "database.connections");
	config_keep_restart_keys(d, c);
	assert_int_equal(d->db_connections, 2);
	assert_int_equal(c->db_connections, 5);
	config_free(c);
	config_free(d);

	parse_bad("admin = {\n  listen = \"127.0.0.1\";\n};\n",
	          "t.conf:2: admin.listen: \"127.0.0.1\" has no port (want \"host:port\")");
	parse_bad("admin = { listen = \"::1:9433\"; };\n",
	          "t.conf:1: admin.listen: \"::1:9433\": an IPv6 address needs brackets, e.g. "
	          "\"[::1]:7433\"");
	parse_bad("admin = { listen = \"127.0.0.1:65536\"; };\n",
	          "t.conf:1: admin.listen: port must be between 0 and 65535 (got \"65536\")");
	parse_bad("admin = { listen = [\"127.0.0.1:9433\"]; };\n",
	          "t.conf:1: admin.listen: must be a string (got an array)");
	parse_bad("admin = { listen = 9433; };\n",
	          "t.conf:1: admin.listen: must be a string (got an integer)");
	parse_bad("admin = { lisen = \"127.0.0.1:9433\"; };\n",
	          "t.conf:1: unknown key \"admin.lisen\" (did you mean \"admin.listen\"?)");
	parse_bad("admin = \"127.0.0.1:9433\";\n",
	          "t.conf:1: admin: must be a group { ... } (got a string)");
}

/* log.stats_interval_s: 0 (off) to a day, applied by a reload. */
static void test_stats_interval(void **state)
{
	(void)state;
	struct config *c = parse_ok("log = { level = \"info\"; stats_interval_s = 0; };\n");
	assert_int_equal(c->stats_interval_s, 0);
	assert_int_equal(c->log_level, LOG_LEVEL_INFO);
	struct config *d = parse_ok("log = { stats_interval_s = 86400; };\n");
	assert_int_equal(d->stats_interval_s, 86400);
	char out[64];
	assert_int_equal(config_restart_keys(c, d, out, sizeof(out)), 0);
	config_free(c);
	config_free(d);

	parse_bad("log = { stats_interval_s = -1; };\n",
	          "t.conf:1: log.stats_interval_s: must be between 0 and 86400 (got -1)");
	parse_bad("log = { stats_interval_s = 86401; };\n",
	          "t.conf:1: log.stats_interval_s: must be between 0 and 86400 (got 86401)");
	parse_bad("log = { stats_interval_s = 1.5; };\n",
	          "t.conf:1: log.stats_interval_s: must be an integer (got a float)");
	parse_bad("log = { stats_interval = 60; };\n",
	          "t.conf:1: unknown key \"log.stats_interval\" (did you mean "
	          "\"log.stats_interval_s\"?)");
}

/* tls: off by default; the group gives paths, ca is optional, require defaults to true. */
static void test_tls(void **state)
{
	(void)state;
	struct config *off = parse_ok("# nothing\n");
	assert_false(off->tls_enabled);
	assert_null(off->tls_cert);
	assert_true(off->tls_require);

	struct config *c =
	    parse_ok("tls = { cert = \"/etc/ot/cert.pem\"; key = \"/etc/ot/key.pem\"; };\n");
	assert_true(c->tls_enabled);
	assert_string_equal(c->tls_cert, "/etc/ot/cert.pem");
	assert_string_equal(c->tls_key, "/etc/ot/key.pem");
	assert_null(c->tls_ca);
	assert_true(c->tls_require);

	struct config *d = parse_ok("tls: { cert = \"c.pem\"; key = \"k.pem\"; ca = \"ca.pem\";\n"
	                            "  require = false; };\n");
	assert_string_equal(d->tls_ca, "ca.pem");
	assert_false(d->tls_require);

	/* Reloadable: never a restart key. */
	char out[128];
	assert_int_equal(config_restart_keys(off, c, out, sizeof(out)), 0);
	assert_int_equal(config_restart_keys(c, d, out, sizeof(out)), 0);
	config_free(off);
	config_free(c);
	config_free(d);
}

/* tls: missing cert or key, wrong types, unknown keys, empty paths. */
static void test_tls_errors(void **state)
{
	(void)state;
	parse_bad("tls = { key = \"k.pem\"; };\n",
	          "t.conf:1: tls.cert: is required when tls is set");
	parse_bad("tls = { cert = \"c.pem\"; };\n",
	          "t.conf:1: tls.key: is required when tls is set");
	parse_bad("tls = { };\n", "t.conf:1: tls.cert: is required when tls is set");
	parse_bad("tls = { cert = \"c.pem\"; key = \"k.pem\"; require = 1; };\n",
	          "t.conf:1: tls.require: must be true or false (got an integer)");
	parse_bad("tls = { cert = \"\"; key = \"k.pem\"; };\n",
	          "t.conf:1: tls.cert: must be a file path of 1 to 4096 characters (got 0)");
	parse_bad("tls = { cert = \"c.pem\";\n  key = 5; };\n",
	          "t.conf:2: tls.key: must be a string (got an integer)");
	parse_bad("tls = { cert = \"c.pem\"; key = \"k.pem\"; verify = true; };\n",
	          "t.conf:1: unknown key \"tls.verify\" (tls takes cert, key, ca and require)");
	parse_bad("tls = \"on\";\n", "t.conf:1: tls: must be a group { ... } (got a string)");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_full),
	    cmocka_unit_test(test_defaults),
	    cmocka_unit_test(test_partial_defaults),
	    cmocka_unit_test(test_bounds_inclusive),
	    cmocka_unit_test(test_syntax_error),
	    cmocka_unit_test(test_unknown_keys),
	    cmocka_unit_test(test_wrong_type),
	    cmocka_unit_test(test_out_of_range),
	    cmocka_unit_test(test_max_pending_bytes),
	    cmocka_unit_test(test_max_events_per_order),
	    cmocka_unit_test(test_exporter_ids),
	    cmocka_unit_test(test_exporter_token_and_name),
	    cmocka_unit_test(test_listen),
	    cmocka_unit_test(test_bad_log_level),
	    cmocka_unit_test(test_restart_keys),
	    cmocka_unit_test(test_reload_keys),
	    cmocka_unit_test(test_find_exporter),
	    cmocka_unit_test(test_log_levels),
	    cmocka_unit_test(test_missing_file),
	    cmocka_unit_test(test_empty_file),
	    cmocka_unit_test(test_first_error_only),
	    cmocka_unit_test(test_doc_rules),
	    cmocka_unit_test(test_doc_rules_errors),
	    cmocka_unit_test(test_operators),
	    cmocka_unit_test(test_operator_errors),
	    cmocka_unit_test(test_webhooks),
	    cmocka_unit_test(test_webhook_errors),
	    cmocka_unit_test(test_webhook_limits),
	    cmocka_unit_test(test_webhook_secret_not_echoed),
	    cmocka_unit_test(test_alerts),
	    cmocka_unit_test(test_admin_listen),
	    cmocka_unit_test(test_stats_interval),
	    cmocka_unit_test(test_tls),
	    cmocka_unit_test(test_tls_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
