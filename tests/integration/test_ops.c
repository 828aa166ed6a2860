/* SPDX-License-Identifier: ISC */
/*
 * test_ops.c - operations: ordertrackctl, the admin endpoint, sd_notify and
 * the systemd unit, against the real daemon and PostgreSQL.
 *
 * The demo scenario (tests/data/scenario-*.jsonl, sent as kivu-coffee and
 * akagera-chili) is stored once per test that needs it, and ordertrackctl
 * --json must give the figures it implies: statuses, holds, the timeline
 * with the offsets as sent, the worklists and the report.  A token from
 * `ordertrackctl token new` must open a session after a reload.  /metrics
 * must be valid Prometheus text whose counters move with the traffic, and
 * /readyz must follow the database through an outage.  sd_notify is
 * checked on a datagram socket the test binds itself (NOTIFY_SOCKET).
 * `systemd-analyze verify` runs when systemd-analyze is installed and is
 * skipped otherwise.
 *
 * Environment, besides the harness's: OT_CTL, the ordertrackctl binary.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <regex.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <libpq-fe.h>

#include "harness.h"
#include "ot_build.h"

#define CHILI       "akagera-chili"
#define CHILI_NAME  "Akagera Chili Exporters"
#define CHILI_TOKEN "akagera-3e71d0c2-token"
#define OPS         "ops"
#define OPS_TOKEN   "ops-9a0c44e1-token"
#define CTL_MS      30000 /* an ordertrackctl run */
#define KIVU_ORDER  "KVH-2026-0142"
#define CHILI_ORDER "AKC-HEMA-2026-031"

/* A daemon this file started itself (for NOTIFY_SOCKET), killed in teardown. */
static struct it_daemon *own_daemon;

/* Kill what this file started, then the harness's teardown. */
static int ops_teardown(void **state)
{
	if (own_daemon != NULL && it_daemon_alive(own_daemon)) {
		kill(own_daemon->pid, SIGKILL);
		waitpid(own_daemon->pid, NULL, 0);
	}
	free(own_daemon);
	own_daemon = NULL;
	return it_test_teardown(state);
}

/* The config of these tests: both demo exporters, an operator, admin on any port. */
static struct it_config ops_config(const char *name, const char *dbname)
{
	struct it_config cfg = {.name = name, .dbname = dbname};
	cfg.extra[0] = (struct it_exporter){CHILI, CHILI_NAME, CHILI_TOKEN};
	cfg.n_extra = 1;
	cfg.operators[0] = (struct it_exporter){OPS, "Operations desk", OPS_TOKEN};
	cfg.n_operators = 1;
	/* The documents rules of the shipped config, so the anomalies are the demo's. */
	cfg.extra_text = "admin = { listen = \"127.0.0.1:0\"; };\n"
	                 "documents = { required = (\n"
	                 "  { hs_prefix = \"0901\"; documents = [ \"phytosanitary\",\n"
	                 "    \"certificate_of_origin\" ]; },\n"
	                 "  { hs_prefix = \"0904\"; documents = [ \"phytosanitary\",\n"
	                 "    \"certificate_of_origin\", \"quality_certificate\" ]; } ); };";
	return cfg;
}

/* The port of the admin endpoint, from the daemon's "admin listening" line. */
static int admin_port(struct it_daemon *d)
{
	it_log_expect(d, 0, "msg=\"admin listening\"", IT_START_MS);
	FILE *f = fopen(d->log_path, "r");
	char line[1024];
	int port = -1;
	if (f == NULL)
		it_fail("open %s: %s", d->log_path, strerror(errno));
	while (port < 0 && fgets(line, sizeof(line), f) != NULL) {
		const char *a = strstr(line, "msg=\"admin listening\" addr=127.0.0.1:");
		if (a != NULL)
			port = atoi(a + strlen("msg=\"admin listening\" addr=127.0.0.1:"));
	}
	fclose(f);
	if (port <= 0)
		it_fail("no admin port in %s", d->log_path);
	return port;
}

/* One HTTP/1.0 request to the admin endpoint; the status, with headers and body malloc'd. */
static int http(int port, const char *method, const char *path, char **headers, char **body)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	struct timeval tv = {10, 0};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		it_fail("connect to the admin endpoint 127.0.0.1:%d: %s", port, strerror(errno));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	char req[256];
	int n = snprintf(req, sizeof(req),
	                 "%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n", method,
	                 path);
	if (write(fd, req, (size_t)n) != n)
		it_fail("write to the admin endpoint: %s", strerror(errno));
	size_t len = 0, cap = 65536;
	char *buf = malloc(cap);
	for (;;) {
		if (len + 1 == cap) {
			cap *= 2;
			buf = realloc(buf, cap);
		}
		if (buf == NULL)
			abort();
		ssize_t r = read(fd, buf + len, cap - len - 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			it_fail("read from the admin endpoint: %s", strerror(errno));
		if (r == 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	buf[len] = '\0';
	int status = 0;
	if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
		it_fail("not an HTTP response: %.200s", buf);
	char *sep = strstr(buf, "\r\n\r\n");
	if (sep == NULL)
		it_fail("HTTP response without the end of its headers: %.200s", buf);
	*sep = '\0';
	if (body != NULL)
		*body = strdup(sep + 4);
	if (headers != NULL)
		*headers = strdup(buf);
	free(buf);
	return status;
}

/* GET path; the body (malloc'd) after checking the status. */
static char *http_expect(int port, const char *path, int want)
{
	char *body;
	int got = http(port, "GET", path, NULL, &body);
	if (got != want)
		it_fail("GET %s: status %d, wanted %d; body: %.200s", path, got, want, body);
	return body;
}

/*
 * Run ordertrackctl with the arguments (NULL-terminated), the environment
 * variable ORDERTRACK_TOKEN set to token when not NULL; its standard
 * output goes to *out.  Returns the exit status.
 */
static int ctl(char **out, const char *token, ...)
{
	const char *bin = getenv("OT_CTL");
	if (bin == NULL || bin[0] == '\0')
		it_fail("OT_CTL is not set (meson test sets it)");
	char tok[256];
	snprintf(tok, sizeof(tok), "ORDERTRACK_TOKEN=%s", token != NULL ? token : "");
	const char *env[] = {token != NULL ? tok : "ORDERTRACK_TOKEN", NULL};
	char *buf;
	va_list ap;
	va_start(ap, token);
	int status = it_runv(bin, "ordertrackctl", env, CTL_MS, &buf, ap);
	va_end(ap);
	if (out != NULL)
		*out = buf;
	else
		free(buf);
	return status;
}

/* Parse ordertrackctl's output as JSON, failing the test when it is not. */
static json_t *parse_out(const char *what, char *out)
{
	json_error_t e;
	json_t *j = json_loads(out, 0, &e);
	if (j == NULL)
		it_fail("ordertrackctl %s: not JSON (%s): %.300s", what, e.text, out);
	free(out);
	return j;
}

/* Run a command that must exit 0 with --json output; its parsed output. */
#define CTL_JSON(...) ctl_json_(#__VA_ARGS__, __VA_ARGS__, "--json", (char *)NULL)
static json_t *ctl_json_(const char *what, ...)
{
	const char *args[24];
	int n = 0;
	va_list ap;
	va_start(ap, what);
	for (const char *a; n < 23 && (a = va_arg(ap, const char *)) != NULL;)
		args[n++] = a;
	va_end(ap);
	while (n < 24)
		args[n++] = NULL;
	char *out;
	int rc = ctl(&out, NULL, args[0], args[1], args[2], args[3], args[4], args[5], args[6],
	             args[7], args[8], args[9], args[10], args[11], args[12], (char *)NULL);
	if (rc != 0)
		it_fail("ordertrackctl %s: exit %d, wanted 0; output: %.300s", what, rc, out);
	return parse_out(what, out);
}

/* Send a scenario file as exporter and require an ack "stored" for every line. */
static void send_scenario(struct it_daemon *d, const char *exporter, const char *token)
{
	char rel[128];
	snprintf(rel, sizeof(rel), "tests/data/scenario-%s.jsonl", exporter);
	char *text = it_source_file(rel);
	size_t lines = 0;
	for (const char *p = text; *p != '\0'; p++)
		lines += *p == '\n';
	struct it_client *c = it_connect(d);
	it_hello(c, exporter, token);
	it_send_raw(c, text, strlen(text));
	for (size_t i = 0; i < lines; i++) {
		json_t *r = it_read_json(c, IT_REPLY_MS);
		const char *type = it_json_str(r, "type"), *res = it_json_str(r, "result");
		if (type == NULL || strcmp(type, "ack") != 0 || res == NULL ||
		    strcmp(res, "stored") != 0) {
			char *s = json_dumps(r, JSON_COMPACT);
			it_fail("%s line %zu: wanted an ack \"stored\", got %s", rel, i + 1, s);
		}
		json_decref(r);
	}
	it_close(c);
	free(text);
}

/* Start a daemon for these tests with the demo scenario stored. */
static struct it_daemon *start_with_scenario(const char *name, const char *dbname)
{
	it_pg_createdb(dbname);
	struct it_config cfg = ops_config(name, dbname);
	struct it_daemon *d = it_daemon_start(&cfg, true);
	send_scenario(d, IT_EXPORTER, IT_TOKEN);
	send_scenario(d, CHILI, CHILI_TOKEN);
	return d;
}

/* A string member, failing the test when it is not a string equal to want. */
static void expect_str(const json_t *o, const char *key, const char *want)
{
	const char *got = it_json_str(o, key);
	if (got == NULL || strcmp(got, want) != 0)
		it_fail("%s: wanted \"%s\", got %s%s%s", key, want, got ? "\"" : "",
		        got ? got : "nothing", got ? "\"" : "");
}

/* A number member, failing the test unless it is within 0.005 of want. */
static void expect_num(const json_t *o, const char *key, double want)
{
	const json_t *v = json_object_get(o, key);
	if (!json_is_number(v) || json_number_value(v) < want - 0.005 ||
	    json_number_value(v) > want + 0.005)
		it_fail("%s: wanted %g, got %s", key, want,
		        json_is_number(v) ? "another number" : "no number");
}

/* The element of an array of objects whose key equals value, or fail. */
static json_t *find_by(const json_t *arr, const char *key, const char *value)
{
	size_t i;
	json_t *e;
	json_array_foreach(arr, i, e)
	{
		const char *v = it_json_str(e, key);
		if (v != NULL && strcmp(v, value) == 0)
			return e;
	}
	it_fail("no element with %s = \"%s\"", key, value);
}

/*
 * Run ordertrackctl -c conf with the words of args (up to four, split at
 * spaces) and require exit 0 and every string of want in its output.
 */
static void expect_text(const char *conf, const char *args, const char *const *want)
{
	char *words[4] = {NULL}, copy[256], *save = NULL, *out;
	size_t n = 0;
	snprintf(copy, sizeof(copy), "%s", args);
	for (char *w = strtok_r(copy, " ", &save); w != NULL; w = strtok_r(NULL, " ", &save)) {
		if (n == 4)
			it_fail("expect_text takes four words at most: %s", args);
		words[n++] = w;
	}
	int rc = ctl(&out, NULL, "-c", conf, words[0], words[1], words[2], words[3], (char *)NULL);
	if (rc != 0)
		it_fail("ordertrackctl %s: exit %d: %s", args, rc, out);
	for (size_t i = 0; want[i] != NULL; i++)
		if (strstr(out, want[i]) == NULL)
			it_fail("ordertrackctl %s: no \"%s\" in:\n%s", args, want[i], out);
	free(out);
}

static int shell(const char *cmd, char **out);

/* An order.created of order with one line of quantity qty, unit_price price (JSON numbers). */
static void send_big_order(struct it_client *c, const char *order, const char *qty,
                           const char *price)
{
	it_sendf(c,
	         "{\"type\":\"order.created\",\"id\":\"%s-created\","
	         "\"occurred_at\":\"2026-11-02T09:15:00+02:00\",\"order\":\"%s\","
	         "\"buyer\":\"B\",\"origin\":\"RW\",\"destination\":\"CN\",\"lines\":[{"
	         "\"sku\":\"S\",\"product\":\"Huge\",\"hs_code\":\"090111\",\"quantity\":%s,"
	         "\"unit\":\"bag\",\"unit_price\":%s}],\"currency\":\"USD\"}",
	         order, order, qty, price);
	char id[64];
	snprintf(id, sizeof(id), "%s-created", order);
	it_expect_ack(c, id, "stored");
}

/*
 * Quantities and prices past 64-bit integers, which the protocol accepts
 * and PostgreSQL's numeric holds: ordertrackctl's JSON gives them as the
 * nearest double, not clipped to the largest integer, and a report whose
 * sum is one keeps that group's quantities instead of dropping them.
 */
static void test_ctl_huge_numbers(void **state)
{
	(void)state;
	it_pg_createdb("ops_huge");
	struct it_config cfg = ops_config("huge", "ops_huge");
	struct it_daemon *d = it_daemon_start(&cfg, true);
	struct it_client *c = it_connect(d);
	it_hello(c, IT_EXPORTER, IT_TOKEN);
	send_big_order(c, "HUGE-1", "1e19", "2.5e20");
	send_big_order(c, "HUGE-2", "1", "7");
	it_close(c);

	json_t *s = CTL_JSON("-c", d->conf_path, "status", IT_EXPORTER, "HUGE-1");
	const json_t *line = json_array_get(json_object_get(s, "lines"), 0);
	expect_num(line, "quantity", 1e19);
	expect_num(line, "unit_price", 2.5e20);
	json_decref(s);
	json_t *r = CTL_JSON("-c", d->conf_path, "report", "--by", "product");
	json_t *row = find_by(json_object_get(r, "groups"), "key", "Huge");
	expect_num(row, "orders", 2);
	expect_num(json_object_get(row, "quantities"), "bag", 1e19 + 1);
	json_decref(r);

	/* The earliest instant an event can name, 1 BC once in UTC: year 0000,
	 * not 0001 (to_char drops the era). */
	c = it_connect(d);
	it_hello(c, IT_EXPORTER, IT_TOKEN);
	it_send(c, "{\"type\":\"order.created\",\"id\":\"bc-1\","
	           "\"occurred_at\":\"0001-01-01T00:00:00+15:00\",\"order\":\"BC-1\","
	           "\"buyer\":\"B\",\"origin\":\"RW\",\"destination\":\"CN\","
	           "\"lines\":[{\"sku\":\"S\",\"product\":\"P\",\"hs_code\":\"090111\","
	           "\"quantity\":1,\"unit\":\"kg\"}]}");
	it_expect_ack(c, "bc-1", "stored");
	it_close(c);
	s = CTL_JSON("-c", d->conf_path, "status", IT_EXPORTER, "BC-1");
	expect_str(s, "created_at", "0000-12-31T09:00:00Z");
	json_decref(s);
	r = CTL_JSON("-c", d->conf_path, "report", "--by", "month");
	expect_num(find_by(json_object_get(r, "groups"), "key", "0000-12"), "orders", 1);
	json_decref(r);
	it_daemon_stop_clean(d);
}

/*
 * tail refused on connect by limits.max_connections_per_ip: the daemon
 * answers too_many_connections before the hello and closes, so tail's
 * hello may meet a closed socket; it still says why, and exits 69.
 */
static void test_tail_refused_by_limit(void **state)
{
	(void)state;
	it_pg_createdb("ops_tail_limit");
	struct it_config cfg = ops_config("tail_limit", "ops_tail_limit");
	cfg.max_connections_per_ip = 1;
	struct it_daemon *d = it_daemon_start(&cfg, true);
	struct it_client *hold = it_connect(d);
	it_hello(hold, IT_EXPORTER, IT_TOKEN);
	char cmd[3 * PATH_MAX], *out;
	snprintf(cmd, sizeof(cmd),
	         "ORDERTRACK_TOKEN=%s '%s' -c '%s' tail --after 0 --limit 1 --address 127.0.0.1:%d "
	         "2>&1",
	         OPS_TOKEN, getenv("OT_CTL"), d->conf_path, d->port);
	int rc = shell(cmd, &out);
	if (rc != 69 || strstr(out, "too_many_connections") == NULL)
		it_fail("tail refused by the limit: exit %d, %s", rc, out);
	free(out);
	it_close(hold);
	it_daemon_stop_clean(d);
}

/* status, history, list, report and check on the demo scenario. */
static void test_ctl_scenario(void **state)
{
	(void)state;
	struct it_daemon *d = start_with_scenario("ctl", "ops_ctl");
	const char *conf = d->conf_path;

	/* status: the coffee order, delivered in one air shipment. */
	json_t *s = CTL_JSON("-c", conf, "status", IT_EXPORTER, KIVU_ORDER);
	expect_str(s, "status", "delivered");
	expect_str(s, "buyer", "Tmall Global store: Kivu Hills Coffee");
	expect_str(s, "origin", "RW");
	expect_str(s, "destination", "CN");
	expect_str(s, "incoterm", "DDP");
	expect_str(s, "created_at", "2026-10-05T07:12:00Z");
	assert_int_equal(json_array_size(json_object_get(s, "anomalies")), 0);
	const json_t *lines = json_object_get(s, "lines");
	assert_int_equal(json_array_size(lines), 2);
	expect_num(json_array_get(lines, 0), "quantity", 240);
	expect_str(json_array_get(lines, 0), "unit", "bag");
	expect_num(json_array_get(lines, 0), "unit_price", 14.5);
	expect_num(json_array_get(lines, 1), "quantity", 360);
	const json_t *ships = json_object_get(s, "shipments");
	assert_int_equal(json_array_size(ships), 1);
	json_t *sh = json_array_get(ships, 0);
	expect_str(sh, "shipment", "KVH-0142-A");
	expect_str(sh, "status", "delivered");
	expect_str(sh, "mode", "air");
	expect_str(sh, "eta", "2026-10-15T10:00:00Z");
	expect_str(sh, "last_location", "CNHGH");
	assert_true(json_is_null(json_object_get(sh, "hold")));
	json_decref(s);

	/* status: the chili order, one shipment held, one late, one delivered. */
	s = CTL_JSON("-c", conf, "status", CHILI, CHILI_ORDER);
	expect_str(s, "status", "partially_delivered");
	assert_int_equal(json_array_size(json_object_get(s, "anomalies")), 1);
	assert_string_equal(json_string_value(json_array_get(json_object_get(s, "anomalies"), 0)),
	                    "missing_documents");
	ships = json_object_get(s, "shipments");
	assert_int_equal(json_array_size(ships), 4);
	sh = find_by(ships, "shipment", "AKC-031-SH1");
	expect_str(sh, "status", "customs_hold");
	expect_str(sh, "hold", "import");
	expect_str(sh, "held_since", "2026-11-10T07:20:00Z");
	expect_str(sh, "last_location", "CNSHA");
	sh = find_by(ships, "shipment", "AKC-031-SH2");
	expect_str(sh, "status", "exception");
	expect_str(sh, "exception", "delayed");
	expect_str(sh, "eta", "2026-11-24T00:00:00Z");
	expect_str(find_by(ships, "shipment", "AKC-031-SH3"), "status", "import_cleared");
	expect_str(find_by(ships, "shipment", "AKC-031-SH4"), "status", "delivered");
	json_decref(s);

	char *out;
	assert_int_equal(
	    ctl(&out, NULL, "-c", conf, "status", IT_EXPORTER, "KVH-NOPE", "--json", (char *)NULL),
	    1);
	free(out);

	/* history: time order (not id order), offsets as sent, the retraction marked. */
	json_t *h = CTL_JSON("-c", conf, "history", CHILI, CHILI_ORDER);
	const json_t *evs = json_object_get(h, "events");
	assert_int_equal(json_array_size(evs), 41);
	expect_str(json_array_get(evs, 0), "id", "akc-031-01");
	expect_str(json_array_get(evs, 0), "occurred_at", "2026-10-01T08:30:00+02:00");
	size_t i21 = 0, i25 = 0, i22 = 0, i;
	json_t *e;
	json_array_foreach(evs, i, e)
	{
		const char *id = it_json_str(e, "id");
		if (strcmp(id, "akc-031-21") == 0)
			i21 = i;
		else if (strcmp(id, "akc-031-25") == 0)
			i25 = i;
		else if (strcmp(id, "akc-031-22") == 0)
			i22 = i;
		bool retracted = json_is_true(json_object_get(e, "retracted"));
		assert_int_equal(retracted, strcmp(id, "akc-031-33") == 0);
	}
	assert_true(i21 < i25 && i25 < i22);
	expect_str(find_by(evs, "id", "akc-031-33"), "retracted_by", "akc-031-34");
	expect_str(find_by(evs, "id", "akc-031-32"), "occurred_at", "2026-11-07T14:00:00+08:00");
	expect_str(find_by(evs, "id", "akc-031-26"), "occurred_at", "2026-10-12T16:00:00+03:00");
	json_decref(h);
	assert_int_equal(ctl(&out, NULL, "-c", conf, "history", CHILI, "NOPE", (char *)NULL), 1);
	free(out);

	/* list --held: what is stuck at customs. */
	json_t *l = CTL_JSON("-c", conf, "list", "--held");
	assert_int_equal(json_array_size(l), 1);
	expect_str(json_array_get(l, 0), "exporter", CHILI);
	expect_str(json_array_get(l, 0), "shipment", "AKC-031-SH1");
	expect_str(json_array_get(l, 0), "hold", "import");
	expect_str(json_array_get(l, 0), "held_since", "2026-11-10T07:20:00Z");
	json_decref(l);

	/* list --anomalies: the chili order's four shipments. */
	l = CTL_JSON("-c", conf, "list", "--anomalies");
	assert_int_equal(json_array_size(l), 4);
	json_decref(l);
	l = CTL_JSON("-c", conf, "list", "--anomalies", "--exporter", IT_EXPORTER);
	assert_int_equal(json_array_size(l), 0);
	json_decref(l);

	/* list --overdue and the default worklist: the same rows as the SQL of SCHEMA.md. */
	long overdue = it_db_long("ops_ctl",
	                          "SELECT count(*) FROM ordertrack.shipments"
	                          " WHERE eta < now() AND status <> 'delivered'",
	                          (char *)NULL);
	l = CTL_JSON("-c", conf, "list", "--overdue");
	assert_int_equal((long)json_array_size(l), overdue);
	json_decref(l);
	l = CTL_JSON("-c", conf, "list");
	/* Open orders' shipments that are not delivered: SH1, SH2, SH3 and KVH-0157-A. */
	assert_int_equal(json_array_size(l), 4);
	find_by(l, "shipment", "KVH-0157-A");
	json_decref(l);
	l = CTL_JSON("-c", conf, "list", "--status", "customs_hold");
	assert_int_equal(json_array_size(l), 1);
	json_decref(l);

	/* report --by product: quantities per unit, orders, delivered share, median days. */
	json_t *r = CTL_JSON("-c", conf, "report", "--by", "product");
	const json_t *g = json_object_get(r, "groups");
	assert_int_equal(json_array_size(g), 4);
	json_t *row = find_by(g, "key", "Washed Arabica green coffee, Lake Kivu, 1 kg bag");
	expect_num(row, "orders", 2);
	expect_num(row, "delivered", 1);
	expect_num(row, "delivered_share", 0.5);
	/* 2026-10-05T07:12Z to 2026-10-17T07:40Z: 12 days and 28 minutes. */
	expect_num(row, "median_door_to_door_days", 12.02);
	expect_num(json_object_get(row, "quantities"), "bag", 640);
	row = find_by(g, "key", "Washed Arabica green coffee, Lake Kivu, 500 g bag");
	expect_num(row, "orders", 1);
	expect_num(row, "delivered_share", 1);
	expect_num(json_object_get(row, "quantities"), "bag", 360);
	row = find_by(g, "key", "Dried bird's eye chili (akabanga), whole, 10 kg carton");
	expect_num(row, "delivered", 0);
	expect_num(json_object_get(row, "quantities"), "carton", 480);
	assert_true(json_is_null(json_object_get(row, "median_door_to_door_days")));
	json_decref(r);

	r = CTL_JSON("-c", conf, "report", "--by", "destination");
	g = json_object_get(r, "groups");
	assert_int_equal(json_array_size(g), 1);
	row = json_array_get(g, 0);
	expect_str(row, "key", "CN");
	expect_num(row, "orders", 3);
	expect_num(row, "delivered", 1);
	expect_num(json_object_get(row, "quantities"), "bag", 1320);
	expect_num(json_object_get(row, "quantities"), "carton", 480);
	json_decref(r);

	/* The chili order was created on 1 October (UTC): outside this period. */
	r = CTL_JSON("-c", conf, "report", "--by", "month", "--from", "2026-10-02", "--to",
	             "2026-10-31");
	g = json_object_get(r, "groups");
	assert_int_equal(json_array_size(g), 1);
	expect_str(json_array_get(g, 0), "key", "2026-10");
	expect_num(json_array_get(g, 0), "orders", 2);
	expect_num(json_object_get(json_array_get(g, 0), "quantities"), "bag", 1000);
	json_decref(r);

	r = CTL_JSON("-c", conf, "report", "--by", "buyer");
	expect_num(find_by(json_object_get(r, "groups"), "key", "Hema Fresh"), "orders", 1);
	json_decref(r);
	assert_int_equal(ctl(&out, NULL, "-c", conf, "report", "--by", "colour", (char *)NULL), 64);
	free(out);
	assert_int_equal(
	    ctl(&out, NULL, "-c", conf, "report", "--from", "2026-02-30", (char *)NULL), 64);
	free(out);

	/* check: config, database, schema version. */
	json_t *k = CTL_JSON("-c", conf, "check");
	assert_true(json_is_true(json_object_get(k, "ok")));
	const json_t *db = json_object_get(k, "database");
	assert_int_equal(json_integer_value(json_object_get(db, "schema_version")),
	                 json_integer_value(json_object_get(db, "expected_schema_version")));
	json_decref(k);

	/* Exit codes: a broken config is 78, an unreachable database 69, usage 64. */
	char bad[PATH_MAX];
	snprintf(bad, sizeof(bad), "%s/broken.conf", it_tmpdir());
	FILE *f = fopen(bad, "w");
	assert_non_null(f);
	fputs("limts = { window = 5; };\n", f);
	fclose(f);
	assert_int_equal(ctl(&out, NULL, "-c", bad, "check", (char *)NULL), 78);
	free(out);
	snprintf(bad, sizeof(bad), "%s/nodb.conf", it_tmpdir());
	f = fopen(bad, "w");
	assert_non_null(f);
	fprintf(f,
	        "database = { conninfo = \"host=%s/no-such-dir port=1 dbname=x "
	        "connect_timeout=2\"; };\n",
	        it_tmpdir());
	fclose(f);
	assert_int_equal(ctl(&out, NULL, "-c", bad, "check", (char *)NULL), 69);
	free(out);
	/* --json carries the reason too, not only stderr: a script reading
	 * stdout must learn why. */
	assert_int_equal(ctl(&out, NULL, "-c", bad, "--json", "check", (char *)NULL), 69);
	k = parse_out("check --json, no database", out);
	db = json_object_get(k, "database");
	const char *why = json_string_value(json_object_get(db, "error"));
	if (!json_is_false(json_object_get(db, "ok")) || why == NULL ||
	    strstr(why, "no-such-dir") == NULL)
		it_fail("check --json without a database gives no reason: error=%s",
		        why ? why : "(none)");
	json_decref(k);
	/* A database the daemon never ran on (the wrong dbname, say): the
	 * queries say so, not "no such table". */
	it_pg_createdb("ops_ctl_empty");
	snprintf(bad, sizeof(bad), "%s/emptydb.conf", it_tmpdir());
	f = fopen(bad, "w");
	assert_non_null(f);
	fprintf(f, "database = { conninfo = \"%s\"; };\n", it_conninfo("ops_ctl_empty"));
	fclose(f);
	char cmd[2 * PATH_MAX];
	snprintf(cmd, sizeof(cmd), "'%s' -c '%s' status " IT_EXPORTER " " KIVU_ORDER " 2>&1",
	         getenv("OT_CTL"), bad);
	assert_int_equal(shell(cmd, &out), 69);
	if (strstr(out, "the ordertrack schema is not in this database") == NULL)
		it_fail("status on a database without the schema: %s", out);
	free(out);
	assert_int_equal(ctl(&out, NULL, "-c", conf, "status", IT_EXPORTER, (char *)NULL), 64);
	free(out);
	assert_int_equal(ctl(&out, NULL, "-c", conf, "list", "--after", "3", (char *)NULL), 64);
	free(out);
	/* A --status that no order or shipment can have is a typo, not an
	 * empty worklist; every status the scenario produced is taken. */
	assert_int_equal(ctl(&out, NULL, "-c", conf, "list", "--status", "exeption", (char *)NULL),
	                 64);
	free(out);
	char *seen = it_db_value("ops_ctl",
	                         "SELECT string_agg(DISTINCT st, ' ') FROM (SELECT status AS st"
	                         " FROM ordertrack.orders UNION SELECT status FROM"
	                         " ordertrack.shipments UNION SELECT milestone FROM"
	                         " ordertrack.shipments) x",
	                         NULL);
	char *save_st = NULL;
	for (char *st = strtok_r(seen, " ", &save_st); st != NULL;
	     st = strtok_r(NULL, " ", &save_st)) {
		int rc = ctl(&out, NULL, "-c", conf, "list", "--status", st, (char *)NULL);
		if (rc != 0)
			it_fail("list --status %s: exit %d", st, rc);
		free(out);
	}
	free(seen);

	/* The same as an operator reads them, without --json. */
	expect_text(conf, "status " IT_EXPORTER " " KIVU_ORDER,
	            (const char *const[]){"order " KIVU_ORDER " of " IT_EXPORTER ": delivered\n",
	                                  "  buyer       Tmall Global store: Kivu Hills Coffee",
	                                  "  route       RW -> CN, DDP", "  anomalies   none\n",
	                                  "lines\n", " bag ", "shipments\n",
	                                  "  KVH-0142-A: delivered (milestone delivered)\n", NULL});
	expect_text(conf, "status " CHILI " " CHILI_ORDER,
	            (const char *const[]){
	                "of " CHILI ": partially_delivered\n", "  anomalies   missing_documents\n",
	                "  AKC-031-SH1: customs_hold", "      hold import since ", NULL});
	expect_text(
	    conf, "report --by product",
	    (const char *const[]){"exported volumes by product, orders created at any time to "
	                          "now (UTC dates), cancelled orders left out\n",
	                          "QUANTITY", "Washed Arabica green coffee, Lake Kivu, 1 kg bag",
	                          "640 bag", "50%", "12.0 days", NULL});
	expect_text(conf, "check",
	            (const char *const[]){"database  ok (PostgreSQL ", "schema    version ",
	                                  "durable   fsync=", NULL});

	/* tail: the feed as an operator, from the beginning, one JSON line each. */
	char addr[64];
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", d->port);
	assert_int_equal(ctl(&out, OPS_TOKEN, "-c", conf, "tail", "--after", "0", "--limit", "3",
	                     "--json", "--address", addr, (char *)NULL),
	                 0);
	char *save = NULL, *ln = strtok_r(out, "\n", &save);
	for (long want = 1; want <= 3; want++, ln = strtok_r(NULL, "\n", &save)) {
		if (ln == NULL)
			it_fail("tail printed fewer than 3 lines");
		json_t *nt = json_loads(ln, 0, NULL);
		expect_str(nt, "type", "notification");
		assert_int_equal(json_integer_value(json_object_get(nt, "seq")), want);
		json_decref(nt);
	}
	free(out);
	/* And as text: one line each, "#seq at kind exporter order shipment from -> to". */
	assert_int_equal(ctl(&out, OPS_TOKEN, "-c", conf, "tail", "--after", "0", "--limit", "3",
	                     "--address", addr, (char *)NULL),
	                 0);
	if (strncmp(out, "#1 ", 3) != 0 || strstr(out, "\n#2 ") == NULL ||
	    strstr(out, "\n#3 ") == NULL || strstr(out, " -> ") == NULL ||
	    strstr(out, "#4 ") != NULL)
		it_fail("tail's text: %s", out);
	free(out);
	assert_int_equal(ctl(&out, "not-the-token", "-c", conf, "tail", "--after", "0", "--address",
	                     addr, (char *)NULL),
	                 78);
	free(out);
	/* The daemon refuses the subscription (no exporter has this id): a
	 * usage error, not "not found". */
	assert_int_equal(ctl(&out, OPS_TOKEN, "-c", conf, "tail", "--after", "0", "--exporter",
	                     "No Such/Exporter", "--address", addr, (char *)NULL),
	                 64);
	free(out);
	/* Without --after, --exporter starts before that exporter's ten
	 * newest (the ten newest of all are the other exporter's). */
	long tenth = it_db_long("ops_ctl",
	                        "SELECT min(seq) FROM (SELECT seq FROM ordertrack.notifications"
	                        " WHERE exporter = $1 ORDER BY seq DESC LIMIT 10) s",
	                        IT_EXPORTER, NULL);
	assert_true(tenth < it_db_long("ops_ctl",
	                               "SELECT max(seq) - 10 FROM ordertrack.notifications", NULL));
	assert_int_equal(ctl(&out, OPS_TOKEN, "-c", conf, "tail", "--exporter", IT_EXPORTER,
	                     "--limit", "1", "--json", "--address", addr, (char *)NULL),
	                 0);
	json_t *first = json_loads(out, 0, NULL);
	if (first == NULL || json_integer_value(json_object_get(first, "seq")) != tenth)
		it_fail("tail --exporter without --after: wanted seq %ld first, got %s", tenth,
		        out);
	json_decref(first);
	free(out);
	/* The config listens on port 0 (any free port): tail cannot guess it. */
	assert_int_equal(ctl(&out, OPS_TOKEN, "-c", conf, "tail", "--after", "0", (char *)NULL),
	                 64);
	free(out);
	assert_int_equal(ctl(&out, NULL, "-c", conf, "tail", "--after", "0", (char *)NULL), 64);
	free(out);

	it_daemon_stop_clean(d);
}

/*
 * history marks an event retracted only as the fold counts retractions: a
 * retraction stored before its target came, whose target turns out to be
 * a retraction itself, counts for nothing and marks nothing.
 */
static void test_history_retraction_of_retraction(void **state)
{
	(void)state;
	it_pg_createdb("ops_history");
	struct it_config cfg = ops_config("history", "ops_history");
	struct it_daemon *d = it_daemon_start(&cfg, true);
	struct it_client *c = it_connect(d);
	it_hello(c, IT_EXPORTER, IT_TOKEN);
	char *ev = it_event_line("hr-1", "order.created", "PO-HR", NULL);
	it_send(c, ev);
	free(ev);
	it_expect_ack(c, "hr-1", "stored");
	ev = it_event_line("hr-2", "shipment.booked", "PO-HR", "SH-1");
	it_send(c, ev);
	free(ev);
	it_expect_ack(c, "hr-2", "stored");
	/* hr-4 names hr-3 before it is there; hr-3 then retracts hr-2. */
	static const char retraction[] = "{\"type\":\"event.retracted\",\"id\":\"%s\","
	                                 "\"occurred_at\":\"" IT_OCCURRED_AT "\","
	                                 "\"order\":\"PO-HR\",\"retracts\":\"%s\"}";
	it_sendf(c, retraction, "hr-4", "hr-3");
	it_expect_ack(c, "hr-4", "stored");
	it_sendf(c, retraction, "hr-3", "hr-2");
	it_expect_ack(c, "hr-3", "stored");
	it_close(c);

	json_t *h = CTL_JSON("-c", d->conf_path, "history", IT_EXPORTER, "PO-HR");
	const json_t *evs = json_object_get(h, "events");
	assert_int_equal(json_array_size(evs), 4);
	size_t i;
	json_t *e;
	json_array_foreach(evs, i, e)
	{
		const char *id = it_json_str(e, "id");
		bool retracted = json_is_true(json_object_get(e, "retracted"));
		if (retracted != (strcmp(id, "hr-2") == 0))
			it_fail("history: %s is%s marked retracted", id, retracted ? "" : " not");
	}
	expect_str(find_by(evs, "id", "hr-2"), "retracted_by", "hr-3");
	assert_true(json_is_null(json_object_get(find_by(evs, "id", "hr-3"), "retracted_by")));
	json_decref(h);
	/* The table says the same: one mark, on hr-2. */
	char *out;
	assert_int_equal(
	    ctl(&out, NULL, "-c", d->conf_path, "history", IT_EXPORTER, "PO-HR", (char *)NULL), 0);
	const char *mark = strstr(out, "[RETRACTED by ");
	assert_non_null(mark);
	assert_true(strncmp(mark, "[RETRACTED by hr-3]", 19) == 0);
	assert_null(strstr(mark + 1, "[RETRACTED by "));
	free(out);
	it_daemon_stop_clean(d);
}

/* token new: the printed line, put into the config, admits the token after SIGHUP. */
static void test_token_new(void **state)
{
	(void)state;
	it_pg_createdb("ops_token");
	struct it_config cfg = ops_config("token", "ops_token");
	struct it_daemon *d = it_daemon_start(&cfg, true);

	json_t *t = CTL_JSON("-c", d->conf_path, "token", "new", "--name", "Lake Kivu \"Tea\" Co",
	                     "lake-tea");
	const char *token = it_json_str(t, "token"), *line = it_json_str(t, "config_line");
	assert_non_null(token);
	assert_non_null(line);
	assert_int_equal(strlen(token), 64);
	assert_false(json_is_true(json_object_get(t, "replaces_exporter")));

	/* Not known yet. */
	struct it_client *c = it_connect(d);
	it_sendf(c, "{\"type\":\"hello\",\"exporter\":\"lake-tea\",\"token\":\"%s\"}", token);
	json_decref(it_expect_error(c, NULL, "auth_failed"));
	it_close(c);

	/* Add the printed line to exporters, reload, and say hello again. */
	FILE *f = fopen(d->conf_path, "r");
	char text[16384];
	size_t n = f ? fread(text, 1, sizeof(text) - 1, f) : 0;
	if (f != NULL)
		fclose(f);
	text[n] = '\0';
	char *at = strstr(text, "exporters = (");
	if (at == NULL)
		it_fail("no \"exporters = (\" in %s", d->conf_path);
	at += strlen("exporters = (");
	char neu[20000];
	snprintf(neu, sizeof(neu), "%.*s\n%s,%s", (int)(at - text), text, line, at);
	it_daemon_rewrite_raw(d, neu);
	off_t off = it_log_offset(d);
	kill(d->pid, SIGHUP);
	it_log_expect(d, off, "msg=\"config reloaded\"", IT_REPLY_MS);

	c = it_connect(d);
	it_hello(c, "lake-tea", token);
	it_close(c);
	json_decref(t);

	/* As text: the token once, the entry to add, the commands to apply it;
	 * for an id the file has, the entry replaces the old one. */
	char *out;
	assert_int_equal(ctl(&out, NULL, "-c", d->conf_path, "token", "new", "--name", "Tea Two",
	                     "lake-tea", (char *)NULL),
	                 0);
	if (strstr(out, "New token for lake-tea. It is shown only this once") == NULL ||
	    strstr(out, "Replace the existing entry in exporters of ") == NULL ||
	    strstr(out, "id = \"lake-tea\"") == NULL || strstr(out, "token_sha256 = \"") == NULL ||
	    strstr(out, "ordertrackd -t -c ") == NULL ||
	    strstr(out, " && systemctl reload ordertrackd\n") == NULL)
		it_fail("token new's text: %s", out);
	free(out);
	/* Without --name, a new token for an exporter the file has keeps its
	 * name (the entry in the file was written with "Lake Kivu \"Tea\" Co"). */
	assert_int_equal(
	    ctl(&out, NULL, "-c", d->conf_path, "token", "new", "lake-tea", (char *)NULL), 0);
	if (strstr(out, "name = \"Lake Kivu \\\"Tea\\\" Co\";") == NULL)
		it_fail("token new without --name did not keep the exporter's name: %s", out);
	free(out);
	/* An operator's id: its entry in operators is the one replaced. */
	assert_int_equal(ctl(&out, NULL, "-c", d->conf_path, "token", "new", OPS, (char *)NULL), 0);
	if (strstr(out, "Replace the existing entry in operators of ") == NULL ||
	    strstr(out, "Add this entry") != NULL)
		it_fail("token new's text for an operator: %s", out);
	free(out);
	assert_int_equal(ctl(NULL, NULL, "token", "new", "bad id!", (char *)NULL), 64);
	/* A --name that is not UTF-8 would print an entry the daemon refuses
	 * ("must be valid UTF-8"), and --json aborted on it: a usage error. */
	assert_int_equal(ctl(NULL, NULL, "-c", d->conf_path, "token", "new", "--name",
	                     "Caf\xe9 Rwanda", "cafe-rw", (char *)NULL),
	                 64);
	assert_int_equal(ctl(NULL, NULL, "-c", d->conf_path, "--json", "token", "new", "--name",
	                     "Caf\xe9 Rwanda", "cafe-rw", (char *)NULL),
	                 64);
	it_daemon_stop_clean(d);
}

/* The value of the sample named exactly name (with its labels), or fail. */
static double metric(const char *text, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = text; p != NULL && *p != '\0';) {
		if (strncmp(p, name, n) == 0 && p[n] == ' ')
			return strtod(p + n + 1, NULL);
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	it_fail("no sample %s in /metrics", name);
}

/*
 * Check every line of a Prometheus text exposition: HELP and TYPE lines,
 * samples with optional labels, each sample after the TYPE of its family,
 * no family typed twice.
 */
static void check_exposition(const char *text)
{
	static const char *const patterns[] = {
	    "^# HELP [a-zA-Z_:][a-zA-Z0-9_:]* [^\n]+$",
	    "^# TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge|histogram|summary|untyped)$",
	    "^[a-zA-Z_:][a-zA-Z0-9_:]*"
	    "(\\{[a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\\n]|\\\\[\"\\\\n])*\""
	    "(,[a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\\n]|\\\\[\"\\\\n])*\")*\\})?"
	    " (-?[0-9]+(\\.[0-9]*)?([eE][-+]?[0-9]+)?|[-+]Inf|NaN)( -?[0-9]+)?$",
	};
	regex_t re[3];
	for (int i = 0; i < 3; i++)
		assert_int_equal(regcomp(&re[i], patterns[i], REG_EXTENDED | REG_NOSUB), 0);
	size_t len = strlen(text);
	if (len == 0 || text[len - 1] != '\n')
		it_fail("/metrics must end with a newline");
	char *copy = strdup(text), *save = NULL;
	char typed[128][96];
	size_t n_typed = 0, samples = 0;
	for (char *ln = strtok_r(copy, "\n", &save); ln != NULL; ln = strtok_r(NULL, "\n", &save)) {
		int kind = -1;
		for (int i = 0; i < 3 && kind < 0; i++)
			if (regexec(&re[i], ln, 0, NULL, 0) == 0)
				kind = i;
		if (kind < 0)
			it_fail("not Prometheus text format: \"%s\"", ln);
		char name[96];
		if (kind == 1) {
			sscanf(ln, "# TYPE %95s", name);
			for (size_t k = 0; k < n_typed; k++)
				if (strcmp(typed[k], name) == 0)
					it_fail("TYPE of %s given twice", name);
			if (n_typed < 128)
				snprintf(typed[n_typed++], sizeof(typed[0]), "%s", name);
		} else if (kind == 2) {
			size_t nl = strcspn(ln, "{ ");
			snprintf(name, sizeof(name), "%.*s", (int)nl, ln);
			bool found = false;
			for (size_t k = 0; k < n_typed && !found; k++) {
				size_t tl = strlen(typed[k]);
				found = strcmp(typed[k], name) == 0 ||
				        (strncmp(typed[k], name, tl) == 0 &&
				         (strcmp(name + tl, "_bucket") == 0 ||
				          strcmp(name + tl, "_sum") == 0 ||
				          strcmp(name + tl, "_count") == 0));
			}
			if (!found)
				it_fail("sample %s comes before a TYPE line of its family", name);
			samples++;
		}
	}
	free(copy);
	for (int i = 0; i < 3; i++)
		regfree(&re[i]);
	assert_true(samples > 50);
}

/*
 * Out of file descriptors, the admin endpoint's accept pauses on a timer
 * like the event port's, instead of retrying (and logging the failure) as
 * fast as the loop turns; once descriptors are free it answers again.
 * Anyone who can reach the port can open the connections that exhaust
 * them.  The test lowers the running daemon's limit to 48.
 */
static void test_admin_emfile_pause(void **state)
{
	(void)state;
	it_pg_createdb("ops_admin_emfile");
	struct it_config cfg = ops_config("admin_emfile", "ops_admin_emfile");
	cfg.log_level = "info";
	struct it_daemon *d = it_daemon_start(&cfg, true);
	int port = admin_port(d);
	struct rlimit low = {48, 48};
	if (prlimit(d->pid, RLIMIT_NOFILE, &low, NULL) != 0) {
		print_message("cannot lower the daemon's RLIMIT_NOFILE; skipped\n");
		it_daemon_stop_clean(d);
		skip();
	}

	off_t off = it_log_offset(d);
	enum { N = 60 };
	int fds[N];
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	for (int i = 0; i < N; i++) {
		fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		/* The kernel queues them; the daemon cannot take them all. */
		if (fds[i] < 0 || connect(fds[i], (struct sockaddr *)&sa, sizeof(sa)) != 0)
			it_fail("connect to the admin endpoint: %s", strerror(errno));
	}
	/* Paused, it retries once a second: a few ms of CPU in 2 s, not all of it. */
	it_sleep_ms(500);
	long long cpu0 = it_proc_cpu_ms(d->pid);
	off_t log0 = it_log_offset(d);
	it_sleep_ms(2000);
	long long cpu = it_proc_cpu_ms(d->pid) - cpu0;
	off_t logged = it_log_offset(d) - log0;
	print_message("admin emfile: %lld ms of CPU and %lld bytes of log in 2 s\n", cpu,
	              (long long)logged);
	if (cpu > 300)
		it_fail("the daemon used %lld ms of CPU in 2 s out of descriptors", cpu);
	if (logged > 4096)
		it_fail("the daemon logged %lld bytes in 2 s out of descriptors",
		        (long long)logged);
	char want[128];
	snprintf(want, sizeof(want), "msg=\"accept paused\" addr=127.0.0.1:%d", port);
	it_log_expect(d, off, want, IT_REPLY_MS);
	assert_true(it_daemon_alive(d));
	for (int i = 0; i < N; i++)
		close(fds[i]);
	/* Descriptors are back: the endpoint answers within the retry. */
	it_sleep_ms(1500);
	char *body = http_expect(port, "/healthz", 200);
	assert_string_equal(body, "ok\n");
	free(body);
	it_daemon_stop_clean(d);
}

/*
 * tools/pgcluster as root keeps a cluster that its user cannot reach in
 * the fall-back folder, then hands it to that user: a fall-back folder
 * that another user owns and may write to is refused, before root opens
 * its .lock (here a symbolic link that user planted) or makes anything
 * in it.
 */
static void test_pgcluster_fallback_base(void **state)
{
	(void)state;
	if (geteuid() != 0) {
		print_message("not root: pgcluster falls back only as root; skipped\n");
		skip();
	}
	char base[PATH_MAX], lock[PATH_MAX + 8], planted[PATH_MAX], closed[PATH_MAX],
	    dir[PATH_MAX + 8];
	snprintf(base, sizeof(base), "%s/someone-elses-base", it_tmpdir());
	snprintf(lock, sizeof(lock), "%s/.lock", base);
	snprintf(planted, sizeof(planted), "%s/made-by-root", it_tmpdir());
	snprintf(closed, sizeof(closed), "%s/closed", it_tmpdir());
	snprintf(dir, sizeof(dir), "%s/pg", closed);
	/* uid and gid 65534 (nobody): any user but root and the cluster's. */
	if (mkdir(base, 0777) != 0 || chmod(base, 0777) != 0 || chown(base, 65534, 65534) != 0 ||
	    symlink(planted, lock) != 0 || lchown(lock, 65534, 65534) != 0)
		it_fail("cannot set up %s: %s", base, strerror(errno));
	/* A folder the cluster's user cannot enter, so pgcluster falls back. */
	if (mkdir(closed, 0700) != 0 || chmod(closed, 0700) != 0)
		it_fail("mkdir %s: %s", closed, strerror(errno));

	char fallback[PATH_MAX + 32];
	snprintf(fallback, sizeof(fallback), "OT_PG_FALLBACK_DIR=%s", base);
	const char *const env[] = {fallback, "OT_PG_FAST=1", NULL};
	const char *const argv[] = {"pgcluster", "init", dir, NULL};
	char *out;
	int rc = it_run(getenv("OT_PGCLUSTER"), argv, env, 120000, &out);
	free(out);
	struct stat st;
	bool made_planted = lstat(planted, &st) == 0;
	bool made_dir = lstat(dir, &st) == 0;
	if (rc == 0 || made_planted || made_dir)
		it_fail("pgcluster init used a fall-back folder owned by another user: exit %d, "
		        "%s %s, %s %s",
		        rc, planted, made_planted ? "created" : "absent", dir,
		        made_dir ? "created" : "absent");
	assert_int_equal(rc, 1);
}

/* Run tools/pgcluster with argv (NULL-terminated after the command); its exit status. */
static int pgcluster(const char *const argv[])
{
	const char *const env[] = {"OT_PG_FAST=1", NULL};
	char *out;
	int rc = it_run(getenv("OT_PGCLUSTER"), argv, env, 120000, &out);
	free(out);
	return rc;
}

/*
 * tools/pgcluster as root writes into the folders of a cluster, which
 * belong to the cluster's user: a symbolic link that user left there
 * (here data/pgcluster.conf.new, rewritten at every start) must not make
 * root overwrite, or hand over, the file it points to.
 */
static void test_pgcluster_planted_link(void **state)
{
	(void)state;
	if (geteuid() != 0) {
		print_message("not root: pgcluster then writes as the cluster's user; skipped\n");
		skip();
	}
	char dir[PATH_MAX], victim[PATH_MAX], link[PATH_MAX + 64];
	snprintf(dir, sizeof(dir), "%s/planted", it_tmpdir());
	snprintf(victim, sizeof(victim), "%s/roots-file", it_tmpdir());
	snprintf(link, sizeof(link), "%s/data/pgcluster.conf.new", dir);
	const char *const init[] = {"pgcluster", "init", dir, NULL};
	assert_int_equal(pgcluster(init), 0);
	FILE *f = fopen(victim, "w");
	if (f == NULL || fputs("root's own\n", f) < 0 || fclose(f) != 0)
		it_fail("cannot write %s", victim);
	if (symlink(victim, link) != 0)
		it_fail("symlink %s: %s", link, strerror(errno));

	const char *const start[] = {"pgcluster", "start", dir, NULL};
	int rc = pgcluster(start);
	const char *const destroy[] = {"pgcluster", "destroy", dir, NULL};
	struct stat st;
	assert_int_equal(stat(victim, &st), 0);
	char text[64] = "";
	f = fopen(victim, "r");
	assert_non_null(f);
	if (fgets(text, sizeof(text), f) == NULL)
		text[0] = '\0';
	fclose(f);
	if (st.st_uid != 0 || strcmp(text, "root's own\n") != 0) {
		pgcluster(destroy);
		it_fail(
		    "pgcluster start wrote through the link: %s now has uid %d and starts \"%s\"",
		    victim, (int)st.st_uid, text);
	}
	assert_int_equal(rc, 0);
	assert_int_equal(pgcluster(destroy), 0);
}

/* /healthz, /metrics in the exposition format, counters that move with traffic. */
static void test_metrics(void **state)
{
	(void)state;
	it_pg_createdb("ops_metrics");
	struct it_config cfg = ops_config("metrics", "ops_metrics");
	cfg.batch_max_events = 100; /* the burst below takes 30 batches or more */
	struct it_daemon *d = it_daemon_start(&cfg, true);
	int port = admin_port(d);

	char *body = http_expect(port, "/healthz", 200);
	assert_string_equal(body, "ok\n");
	free(body);
	char *headers;
	assert_int_equal(http(port, "GET", "/metrics", &headers, &body), 200);
	assert_non_null(strstr(headers, "Content-Type: text/plain; version=0.0.4"));
	free(headers);
	check_exposition(body);
	double stored0 = metric(body, "ordertrack_events_total{type=\"shipment.checkpoint\","
	                              "result=\"stored\"}");
	double received0 = metric(body, "ordertrack_events_received_total");
	double conns0 = metric(body, "ordertrack_connections_total");
	double batches0 = metric(body, "ordertrack_batch_events_count");
	double commits0 = metric(body, "ordertrack_commit_seconds_count");
	assert_true(metric(body, "ordertrack_database_up") == 1);
	free(body);

	struct it_client *c = it_connect(d);
	it_hello(c, IT_EXPORTER, IT_TOKEN);
	for (int i = 0; i < 5; i++) {
		char id[32];
		snprintf(id, sizeof(id), "metrics-%d", i);
		char *ev = it_event_line(id, "shipment.checkpoint", "PO-METRICS", "SH-METRICS");
		it_send(c, ev);
		free(ev);
		it_expect_ack(c, id, "stored");
	}
	it_send(c, "{\"type\":\"nonsense\"}");
	json_decref(it_expect_error(c, NULL, "unknown_type"));
	/* Still open: the gauge counts it. */
	body = http_expect(port, "/metrics", 200);
	check_exposition(body);
	assert_true(metric(body, "ordertrack_events_total{type=\"shipment.checkpoint\","
	                         "result=\"stored\"}") == stored0 + 5);
	assert_true(metric(body, "ordertrack_events_received_total") == received0 + 5);
	assert_true(metric(body, "ordertrack_connections_total") == conns0 + 1);
	assert_true(metric(body, "ordertrack_connections_open") >= 1);
	assert_true(metric(body, "ordertrack_batch_events_count") > batches0);
	assert_true(metric(body, "ordertrack_commit_seconds_count") > commits0);
	assert_true(metric(body, "ordertrack_lines_rejected_total{code=\"unknown_type\"}") == 1);
	assert_true(metric(body, "ordertrack_notifications_total{kind=\"shipment.status\"}") >= 1);
	assert_true(metric(body, "ordertrack_pending_events") == 0);
	/* Every answered event gave its line's bytes back. */
	assert_true(metric(body, "ordertrack_pending_bytes") == 0);
	free(body);

	/* A burst keeps both database sessions busy at once: each batch
	 * still gets its own time from send to commit. */
	enum { BURST = 3000 };
	for (int i = 0; i < BURST; i++) {
		char id[32];
		char order[32];
		snprintf(id, sizeof(id), "metrics-burst-%d", i);
		/* Many orders: two batches never hold the same one. */
		snprintf(order, sizeof(order), "PO-BURST-%d", i % 300);
		char *ev = it_event_line(id, "shipment.checkpoint", order, "SH-METRICS");
		it_queue(c, ev);
		free(ev);
	}
	c->want = BURST;
	if (!it_pump(&c, 1, 60000))
		it_fail("the burst was not answered: %zu of %d replies", c->n_lines, BURST);
	body = http_expect(port, "/metrics", 200);
	assert_true(metric(body, "ordertrack_batch_events_count") >= batches0 + BURST / 100);
	assert_true(metric(body, "ordertrack_commit_seconds_count") ==
	            metric(body, "ordertrack_batches_committed_total"));
	free(body);
	it_close(c);

	assert_int_equal(http(port, "GET", "/nope", NULL, NULL), 404);
	assert_int_equal(http(port, "POST", "/metrics", NULL, NULL), 405);
	/* Methods HTTP knows are refused alike; one it does not know is 501. */
	assert_int_equal(http(port, "TRACE", "/healthz", NULL, NULL), 405);
	assert_int_equal(http(port, "CONNECT", "/healthz", NULL, NULL), 405);
	assert_int_equal(http(port, "PROPFIND", "/healthz", NULL, NULL), 501);
	assert_int_equal(http(port, "HEAD", "/healthz", NULL, NULL), 200);
	it_daemon_stop_clean(d);
}

/* Poll GET path until it answers want, within timeout_ms. */
static void wait_status(int port, const char *path, int want, int timeout_ms)
{
	long long deadline = it_now_ms() + timeout_ms;
	int got;
	while ((got = http(port, "GET", path, NULL, NULL)) != want) {
		if (it_now_ms() > deadline)
			it_fail("GET %s stayed %d for %d ms, wanted %d", path, got, timeout_ms,
			        want);
		it_sleep_ms(100);
	}
}

/*
 * Wait until /metrics shows name at value; fail after timeout_ms.  A
 * sample not there yet (the open alerts before their first count) is
 * waited for too.
 */
static void wait_metric(int port, const char *name, double value, int timeout_ms)
{
	long long deadline = it_now_ms() + timeout_ms;
	for (;;) {
		char *body = http_expect(port, "/metrics", 200);
		bool has = strstr(body, name) != NULL;
		double got = has ? metric(body, name) : -1;
		free(body);
		if (got == value)
			return;
		if (it_now_ms() > deadline)
			it_fail("%s stayed %g%s for %d ms, wanted %g", name, got,
			        has ? "" : " (no sample)", timeout_ms, value);
		it_sleep_ms(100);
	}
}

/*
 * /readyz follows the database: 503 while PostgreSQL is stopped, 200 after.
 * The auxiliary session (feed, webhooks, alerts) has a gauge of its own.
 */
static void test_readyz_outage(void **state)
{
	(void)state;
	it_pg_createdb("ops_ready");
	struct it_config cfg = ops_config("ready", "ops_ready");
	struct it_daemon *d = it_daemon_start(&cfg, true);
	int port = admin_port(d);

	free(http_expect(port, "/readyz", 200));
	wait_metric(port, "ordertrack_database_aux_up", 1, 15000);
	it_pg_stop("fast");
	wait_status(port, "/readyz", 503, 15000);
	wait_metric(port, "ordertrack_database_aux_up", 0, 15000);
	char *body = http_expect(port, "/healthz", 200);
	free(body);
	body = http_expect(port, "/metrics", 200);
	assert_true(metric(body, "ordertrack_database_up") == 0);
	free(body);

	it_pg_start();
	wait_status(port, "/readyz", 200, 30000);
	body = http_expect(port, "/metrics", 200);
	assert_true(metric(body, "ordertrack_database_up") == 1);
	assert_true(metric(body, "ordertrack_database_reconnects_total") >= 1);
	free(body);
	wait_metric(port, "ordertrack_database_aux_up", 1, 30000);
	it_daemon_stop_clean(d);
}

/*
 * ordertrack_alerts_active{kind}, which OPERATIONS.md's alerting rule
 * watches, counts the open episodes: a shipment held at customs for days
 * makes alert.customs_dwell 1, its release 0 again.
 */
static void test_metrics_alerts_active(void **state)
{
	(void)state;
	static const char dwell[] = "ordertrack_alerts_active{kind=\"alert.customs_dwell\"}";
	it_pg_createdb("ops_alerts_gauge");
	struct it_config cfg = {.name = "alerts_gauge", .dbname = "ops_alerts_gauge"};
	cfg.extra_text = "admin = { listen = \"127.0.0.1:0\"; };\n"
	                 "alerts = { interval_s = 1; customs_hold_hours = 1; };";
	struct it_daemon *d = it_daemon_start(&cfg, true);
	int port = admin_port(d);
	wait_metric(port, dwell, 0, 25000);

	struct it_client *c = it_connect(d);
	it_hello(c, IT_EXPORTER, IT_TOKEN);
	/* Held since IT_OCCURRED_AT, days ago. */
	static const char *const held[][2] = {{"gauge-1", "order.created"},
	                                      {"gauge-2", "shipment.booked"},
	                                      {"gauge-3", "shipment.customs_hold"}};
	for (size_t i = 0; i < 3; i++) {
		char *ev =
		    it_event_line(held[i][0], held[i][1], "PO-GAUGE", i == 0 ? NULL : "SH-GAUGE");
		it_send(c, ev);
		free(ev);
		it_expect_ack(c, held[i][0], "stored");
	}
	wait_metric(port, dwell, 1, 25000);
	assert_int_equal(it_db_long(cfg.dbname,
	                            "SELECT count(*) FROM ordertrack.alerts"
	                            " WHERE kind = 'alert.customs_dwell' AND cleared_at IS NULL",
	                            NULL),
	                 1);

	it_send_event(c, "gauge-4", "shipment.customs_released", "PO-GAUGE", "SH-GAUGE");
	it_expect_ack(c, "gauge-4", "stored");
	wait_metric(port, dwell, 0, 25000);
	it_daemon_stop_clean(d);
}

/*
 * SIGTERM while PostgreSQL is down and an event waits: /readyz answers 503
 * "draining" (not "database unavailable") while /healthz stays 200; once
 * PostgreSQL is back the drain commits the event, acks it and exits 0.
 */
static void test_readyz_draining(void **state)
{
	(void)state;
	it_pg_createdb("ops_drain");
	struct it_config cfg = ops_config("drain", "ops_drain");
	struct it_daemon *d = it_daemon_start(&cfg, true);
	int port = admin_port(d);
	struct it_client *c = it_connect(d);
	it_hello(c, IT_EXPORTER, IT_TOKEN);
	it_pg_stop("fast");
	wait_status(port, "/readyz", 503, 15000);
	it_send_event(c, "drain-1", "shipment.checkpoint", "PO-DRAIN", "SH-DRAIN");
	off_t off = it_log_offset(d);
	it_sleep_ms(300); /* read, and waiting for the database */
	kill(d->pid, SIGTERM);
	it_log_expect(d, off, "msg=draining signal=15 connections=1 pending=1", IT_REPLY_MS);
	char *body = http_expect(port, "/readyz", 503);
	assert_string_equal(body, "draining\n");
	free(body);
	free(http_expect(port, "/healthz", 200));

	it_pg_start();
	it_expect_ack(c, "drain-1", "stored");
	long long until = it_now_ms() + 30000;
	while (it_daemon_alive(d) && it_now_ms() < until)
		it_sleep_ms(50);
	if (it_daemon_alive(d))
		it_fail("the drain did not end once PostgreSQL was back");
	assert_true(WIFEXITED(d->status) && WEXITSTATUS(d->status) == 0);
	assert_int_equal(it_db_long("ops_drain", "SELECT count(*) FROM ordertrack.events", NULL),
	                 1);
}

/* How many lines holding needle the daemon's log has after from. */
static int log_count(struct it_daemon *d, off_t from, const char *needle)
{
	int n = 0;
	for (off_t at = from; (at = it_log_wait(d, at, needle, 0)) >= 0;)
		n++;
	return n;
}

/*
 * No session to be had: the daemon's role at its connection limit (as a
 * server at max_connections, SQLSTATE 53300).  First the auxiliary session
 * is refused on reconnecting: one warning with the server's reason, no
 * storm of attempts, events still stored and /readyz 200, but
 * ordertrack_database_aux_up 0.  Then every session: /readyz 503, events
 * held; raised again, everything comes back and the held event is stored.
 */
static void test_connection_limit(void **state)
{
	(void)state;
	const char *db = "ops_conn_limit";
	it_pg_createdb(db);
	it_db_command(db, "CREATE ROLE ot_limited LOGIN CONNECTION LIMIT 3", NULL);
	it_db_command(db, "ALTER DATABASE ops_conn_limit OWNER TO ot_limited", NULL);
	struct it_config cfg = ops_config("conn_limit", "ops_conn_limit user=ot_limited");
	cfg.db_connections = 2;
	struct it_daemon *d = it_daemon_start(&cfg, true);
	int port = admin_port(d);
	wait_metric(port, "ordertrack_database_aux_up", 1, 15000);
	struct it_client *c = it_connect(d);
	it_hello(c, IT_EXPORTER, IT_TOKEN);

	/* Two slots left for three sessions: the auxiliary one is refused. */
	off_t off = it_log_offset(d);
	it_db_command(db, "ALTER ROLE ot_limited CONNECTION LIMIT 2", NULL);
	assert_int_equal(it_db_long(db,
	                            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
	                            " WHERE datname = $1 AND application_name = 'ordertrackd-aux'",
	                            db, NULL),
	                 1);
	/* Lost, then refused: the refusal is what the warning names. */
	it_log_expect(d, off, "msg=\"database lost\" conn=aux", IT_REPLY_MS);
	off_t why = it_log_expect(d, off, "msg=\"database unavailable\" conn=aux", IT_REPLY_MS);
	if (it_log_wait(d, off, "too many connections for role", 0) != why)
		it_fail("the warning does not give the server's reason for refusing the session");
	wait_metric(port, "ordertrack_database_aux_up", 0, 15000);
	char *ev = it_event_line("limit-1", "order.created", "LIMIT-1", NULL);
	it_send(c, ev);
	free(ev);
	it_expect_ack(c, "limit-1", "stored");
	free(http_expect(port, "/readyz", 200));
	it_sleep_ms(3000);
	assert_int_equal(log_count(d, off, "msg=\"database unavailable\" conn=aux"), 1);

	/* No slot at all: the ingest sessions go too. */
	off = it_log_offset(d);
	it_db_command(db, "ALTER ROLE ot_limited CONNECTION LIMIT 0", NULL);
	it_db_command(db,
	              "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1"
	              " AND usename = 'ot_limited'",
	              db, NULL);
	wait_status(port, "/readyz", 503, 15000);
	ev = it_event_line("limit-2", "order.confirmed", "LIMIT-1", NULL);
	it_send(c, ev);
	free(ev);
	char *line = NULL;
	if (it_try_read_line(c, 1500, &line) == IT_READ_LINE)
		it_fail("an event was answered while no session could connect: %s", line);
	for (int link = 1; link <= 2; link++) {
		char needle[64];
		snprintf(needle, sizeof(needle), "msg=\"database unavailable\" link=%d", link);
		assert_int_equal(log_count(d, off, needle), 1);
	}

	it_db_command(db, "ALTER ROLE ot_limited CONNECTION LIMIT 3", NULL);
	line = it_read_line(c, 30000);
	it_check_ack(line, "limit-2", "stored");
	free(line);
	wait_status(port, "/readyz", 200, 30000);
	wait_metric(port, "ordertrack_database_aux_up", 1, 30000);
	it_daemon_stop_clean(d);
}

/*
 * A database whose sessions start read-only (default_transaction_read_only,
 * as on a standby): the migrations fail, each session says why once
 * ("database schema not ready", the server's reason), the daemon is not
 * ready and holds an event.  Once the setting is gone, the next attempt
 * migrates and the event is stored.
 */
static void test_read_only_at_start(void **state)
{
	(void)state;
	const char *db = "ops_read_only";
	it_pg_createdb(db);
	it_db_command(db, "ALTER DATABASE ops_read_only SET default_transaction_read_only = on",
	              NULL);
	struct it_config cfg = ops_config("read_only", db);
	cfg.db_connections = 2;
	struct it_daemon *d = it_daemon_start(&cfg, false);
	int port = admin_port(d);
	for (int link = 1; link <= 2; link++) {
		char needle[160];
		snprintf(
		    needle, sizeof(needle),
		    "msg=\"database schema not ready\" link=%d reason=\"ERROR:  cannot execute "
		    "CREATE SCHEMA in a read-only transaction\"",
		    link);
		it_log_expect(d, 0, needle, 15000);
	}
	free(http_expect(port, "/readyz", 503));
	struct it_client *c = it_connect(d);
	it_hello(c, IT_EXPORTER, IT_TOKEN);
	it_send_event(c, "ro-1", "order.created", "RO-1", NULL);
	char *line = NULL;
	if (it_try_read_line(c, 3000, &line) == IT_READ_LINE)
		it_fail("an event was answered with no schema: %s", line);
	for (int link = 1; link <= 2; link++) {
		char needle[64];
		snprintf(needle, sizeof(needle), "msg=\"database schema not ready\" link=%d", link);
		assert_int_equal(log_count(d, 0, needle), 1);
	}

	/* From another database: a session of this one starts read-only. */
	it_db_command(NULL, "ALTER DATABASE ops_read_only RESET default_transaction_read_only",
	              NULL);
	line = it_read_line(c, 30000);
	it_check_ack(line, "ro-1", "stored");
	free(line);
	wait_status(port, "/readyz", 200, 30000);
	it_daemon_stop_clean(d);
}

/*
 * A later release migrates the database while this daemon runs (the
 * rolling restart of two hosts): the running sessions must not go on
 * writing with this release's statements on a schema whose meaning has
 * changed.  Within seconds the daemon finds the newer version, drops its
 * sessions, refuses the schema on reconnecting and holds events, not
 * ready; once the version is its own again it stores them.
 */
static void test_schema_newer_while_running(void **state)
{
	(void)state;
	const char *db = "ops_newer_running";
	it_pg_createdb(db);
	struct it_config cfg = ops_config("newer_running", db);
	cfg.db_connections = 2;
	struct it_daemon *d = it_daemon_start(&cfg, true);
	int port = admin_port(d);
	struct it_client *c = it_connect(d);
	it_hello(c, IT_EXPORTER, IT_TOKEN);
	char *ev = it_event_line("newer-1", "order.created", "NEWER-1", NULL);
	it_send(c, ev);
	free(ev);
	it_expect_ack(c, "newer-1", "stored");

	off_t off = it_log_offset(d);
	it_db_command(db,
	              "INSERT INTO ordertrack.schema_migrations (version, name)"
	              " VALUES (9999, 'from_a_later_release')",
	              NULL);
	wait_status(port, "/readyz", 503, 15000);
	it_log_expect(d, off, "msg=\"database schema changed\"", 0);
	ev = it_event_line("newer-2", "order.confirmed", "NEWER-1", NULL);
	it_send(c, ev);
	free(ev);
	char *line = NULL;
	if (it_try_read_line(c, 2000, &line) == IT_READ_LINE)
		it_fail("an event was answered on a schema the daemon refuses: %s", line);
	assert_int_equal(it_db_rows(db), 1);
	/* Each session says why once, however often it tries (every 100 ms at
	 * first, then less often); its retries are debug lines. */
	for (int link = 1; link <= 2; link++) {
		char needle[64];
		int n = 0;
		snprintf(needle, sizeof(needle), "msg=\"database schema not ready\" link=%d", link);
		for (off_t at = off; (at = it_log_wait(d, at, needle, 0)) >= 0;)
			n++;
		if (n != 1)
			it_fail("session %d said \"database schema not ready\" %d times", link, n);
	}

	it_db_command(db, "DELETE FROM ordertrack.schema_migrations WHERE version = 9999", NULL);
	line = it_read_line(c, 30000);
	it_check_ack(line, "newer-2", "stored");
	free(line);
	wait_status(port, "/readyz", 200, 30000);
	it_daemon_stop_clean(d);
}

/* The next datagram holding needle within timeout_ms (others are skipped), malloc'd. */
static char *notify_wait(int fd, const char *needle, int timeout_ms)
{
	long long deadline = it_now_ms() + timeout_ms;
	char buf[4096];
	for (;;) {
		long long left = deadline - it_now_ms();
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			it_fail("no sd_notify message with \"%s\" within %d ms", needle,
			        timeout_ms);
		ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
		if (n < 0)
			continue;
		buf[n] = '\0';
		if (strstr(buf, needle) != NULL)
			return strdup(buf);
	}
}

/* Start ordertrackd with NOTIFY_SOCKET (abstract name) and a watchdog; the harness would unset it.
 */
static struct it_daemon *start_notified(const char *conf, const char *log, const char *sock)
{
	struct it_daemon *d = calloc(1, sizeof(*d));
	const char *bin = getenv("OT_DAEMON");
	assert_non_null(d);
	snprintf(d->conf_path, sizeof(d->conf_path), "%s", conf);
	snprintf(d->log_path, sizeof(d->log_path), "%s", log);
	int logfd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
	if (logfd < 0)
		it_fail("open %s: %s", log, strerror(errno));
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		it_fail("fork: %s", strerror(errno));
	if (pid == 0) {
		char me[32];
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(logfd, 1);
		dup2(logfd, 2);
		signal(SIGPIPE, SIG_DFL);
		snprintf(me, sizeof(me), "%d", (int)getpid());
		setenv("NOTIFY_SOCKET", sock, 1);
		setenv("WATCHDOG_USEC", "1000000", 1);
		setenv("WATCHDOG_PID", me, 1);
		unsetenv("JOURNAL_STREAM");
		execl(bin, "ordertrackd", "-c", conf, (char *)NULL);
		dprintf(2, "exec %s: %s\n", bin, strerror(errno));
		_exit(127);
	}
	close(logfd);
	d->pid = pid;
	own_daemon = d;
	return d;
}

/* sd_notify: READY=1 once ready, WATCHDOG=1, RELOADING=1 then READY=1, STOPPING=1. */
static void test_sd_notify(void **state)
{
	(void)state;
#if !OT_HAVE_SYSTEMD
	skip(); /* built without libsystemd: the daemon sends nothing */
#endif
	it_pg_createdb("ops_notify");
	struct it_config cfg = ops_config("notify", "ops_notify");
	char conf[PATH_MAX], log[PATH_MAX], sock[64];
	snprintf(conf, sizeof(conf), "%s/notify.conf", it_tmpdir());
	snprintf(log, sizeof(log), "%s/notify.log", it_tmpdir());
	it_config_write(&cfg, conf);

	/* A stats line every second, to see it in the log too. */
	char text[16384];
	FILE *f = fopen(conf, "r");
	assert_non_null(f);
	size_t n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[n] = '\0';
	char *lg = strstr(text, "log = { level = \"debug\"; };");
	assert_non_null(lg);
	f = fopen(conf, "w");
	fprintf(f, "%.*slog = { level = \"debug\"; stats_interval_s = 1; };%s", (int)(lg - text),
	        text, lg + strlen("log = { level = \"debug\"; };"));
	fclose(f);

	/* An abstract socket: no path length limit, nothing to clean up. */
	snprintf(sock, sizeof(sock), "@ot-it-notify-%d", (int)getpid());
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t sl = strlen(sock);
	memcpy(sa.sun_path, sock, sl);
	sa.sun_path[0] = '\0';
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa,
	                   (socklen_t)(offsetof(struct sockaddr_un, sun_path) + sl)) != 0)
		it_fail("bind the notify socket: %s", strerror(errno));

	struct it_daemon *d = start_notified(conf, log, sock);
	char *m = notify_wait(fd, "READY=1", IT_START_MS);
	assert_non_null(strstr(m, "STATUS="));
	assert_non_null(strstr(m, "database up"));
	free(m);
	it_log_expect(d, 0, "msg=ready", IT_START_MS);
	it_log_expect(d, 0, "msg=\"watchdog enabled\"", IT_START_MS);
	free(notify_wait(fd, "WATCHDOG=1", 3000));
	free(notify_wait(fd, "WATCHDOG=1", 3000));
	it_log_expect(d, 0, "msg=stats", 5000);

	kill(d->pid, SIGHUP);
	m = notify_wait(fd, "RELOADING=1", IT_REPLY_MS);
	assert_non_null(strstr(m, "MONOTONIC_USEC="));
	free(m);
	free(notify_wait(fd, "READY=1", IT_REPLY_MS));
	free(notify_wait(fd, "events/s", 8000)); /* the periodic STATUS= */

	kill(d->pid, SIGTERM);
	free(notify_wait(fd, "STOPPING=1", IT_REPLY_MS));
	int st = it_daemon_wait(d, IT_STOP_MS);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	close(fd);
}

/* Is program on PATH? */
static bool on_path(const char *program)
{
	const char *path = getenv("PATH");
	char buf[PATH_MAX];
	if (path == NULL)
		return false;
	char *copy = strdup(path), *save = NULL;
	bool found = false;
	for (char *dir = strtok_r(copy, ":", &save); dir != NULL && !found;
	     dir = strtok_r(NULL, ":", &save)) {
		snprintf(buf, sizeof(buf), "%s/%s", dir, program);
		found = access(buf, X_OK) == 0;
	}
	free(copy);
	return found;
}

/* Run a shell command; its exit status, its output in *out. */
static int shell(const char *cmd, char **out)
{
	FILE *p = popen(cmd, "r");
	if (p == NULL)
		it_fail("popen %s: %s", cmd, strerror(errno));
	char *buf = calloc(1, 65536);
	size_t n = fread(buf, 1, 65535, p);
	buf[n] = '\0';
	int st = pclose(p);
	*out = buf;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/*
 * Write path as one quoted word of a unit's command line, so that a
 * checkout path with spaces stays one argument: systemd reads C escapes
 * inside quotes, and % and $ as specifiers and variables everywhere.
 */
static void unit_put_path(FILE *f, const char *path)
{
	fputc('"', f);
	for (const char *p = path; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\')
			fputc('\\', f);
		else if (*p == '%' || *p == '$')
			fputc(*p, f);
		fputc(*p, f);
	}
	fputc('"', f);
}

/* The shipped files: the config passes -t; the unit passes systemd-analyze verify. */
static void test_shipped_files(void **state)
{
	(void)state;
	const char *root = getenv("OT_SOURCE_ROOT"), *bin = getenv("OT_DAEMON");
	char cmd[3 * PATH_MAX], *out;
	snprintf(cmd, sizeof(cmd), "'%s' -t -c '%s/conf/ordertrackd.conf' 2>&1", bin, root);
	if (shell(cmd, &out) != 0)
		it_fail("the shipped conf/ordertrackd.conf fails ordertrackd -t: %s", out);
	free(out);

	if (!on_path("systemd-analyze"))
		skip(); /* no systemd here: nothing to verify the unit with */
	/* The unit names /usr/sbin/ordertrackd, which is not installed here:
	 * verify a copy that runs the binary under test instead.  --man=no:
	 * the man pages are not installed either. */
	char unit[PATH_MAX], conf[PATH_MAX];
	snprintf(unit, sizeof(unit), "%s/ordertrackd.service", it_tmpdir());
	snprintf(conf, sizeof(conf), "%s/conf/ordertrackd.conf", root);
	char *text = it_source_file("conf/ordertrackd.service");
	FILE *f = fopen(unit, "w");
	if (f == NULL)
		it_fail("cannot write %s: %s", unit, strerror(errno));
	for (const char *p = text; *p != '\0';) {
		if (strncmp(p, "/usr/sbin/ordertrackd", 21) == 0) {
			unit_put_path(f, bin);
			p += 21;
		} else if (strncmp(p, "/etc/ordertrack/ordertrackd.conf", 32) == 0) {
			unit_put_path(f, conf);
			p += 32;
		} else {
			fputc(*p++, f);
		}
	}
	if (fclose(f) != 0)
		it_fail("cannot write %s", unit);
	free(text);
	snprintf(cmd, sizeof(cmd), "systemd-analyze verify --man=no '%s' 2>&1", unit);
	int rc = shell(cmd, &out);
	if (rc != 0 || out[0] != '\0')
		it_fail("systemd-analyze verify (exit %d): %s", rc, out);
	free(out);
}

/* Subscribe c after seq after; the first line of the answer (malloc'd). */
static char *subscribe_line(struct it_client *c, long long after)
{
	char line[64];
	snprintf(line, sizeof(line), "{\"type\":\"subscribe\",\"after\":%lld}", after);
	it_send(c, line);
	return it_read_line(c, IT_REPLY_MS);
}

/*
 * Encodings: check fails on a database that is not UTF8, naming it (the
 * daemon refuses such a database); and the tool speaks UTF-8 to the
 * server whatever conninfo asks: with client_encoding=LATIN1 there, a
 * status with a character LATIN1 lacks failed (exit 64), and --json
 * status with one it has aborted.
 */
static void test_ctl_encoding(void **state)
{
	(void)state;
	it_db_command(NULL,
	              "CREATE DATABASE ops_ascii TEMPLATE template0 ENCODING 'SQL_ASCII'"
	              " LC_COLLATE 'C' LC_CTYPE 'C'",
	              NULL);
	struct it_config cfg = ops_config("ctl_ascii", "ops_ascii");
	struct it_daemon *d = it_daemon_start(&cfg, false);
	char *out;
	assert_int_equal(ctl(&out, NULL, "-c", d->conf_path, "check", (char *)NULL), 1);
	if (strstr(out, "encoding SQL_ASCII") == NULL ||
	    strstr(out, "the database's encoding is SQL_ASCII: ordertrackd needs UTF8") == NULL)
		it_fail("check on a SQL_ASCII database: %s", out);
	free(out);
	it_daemon_stop_clean(d);

	it_pg_createdb("ops_latin1_client");
	struct it_config cfg2 =
	    ops_config("ctl_latin1", "ops_latin1_client client_encoding=LATIN1");
	d = it_daemon_start(&cfg2, true);
	struct it_client *c = it_connect(d);
	it_hello(c, IT_EXPORTER, IT_TOKEN);
	char *line = it_event_line("enc-ctl-1", "order.created", "PO-ENC-CTL", NULL);
	json_t *o = json_loads(line, 0, NULL);
	free(line);
	json_object_set_new(o, "buyer", json_string("\xe6\x9d\xb1 Caf\xc3\xa9 Trading"));
	line = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	it_send(c, line);
	free(line);
	it_expect_ack(c, "enc-ctl-1", "stored");
	it_close(c);
	assert_int_equal(ctl(&out, NULL, "-c", d->conf_path, "--json", "status", IT_EXPORTER,
	                     "PO-ENC-CTL", (char *)NULL),
	                 0);
	json_t *j = parse_out("status", out);
	char *text = json_dumps(j, JSON_COMPACT);
	if (strstr(text, "\"buyer\":\"\xe6\x9d\xb1 Caf\xc3\xa9 Trading\"") == NULL)
		it_fail("--json status lost the buyer's name: %s", text);
	free(text);
	json_decref(j);
	assert_int_equal(
	    ctl(&out, NULL, "-c", d->conf_path, "status", IT_EXPORTER, "PO-ENC-CTL", (char *)NULL),
	    0);
	if (strstr(out, "\xe6\x9d\xb1 Caf\xc3\xa9 Trading") == NULL)
		it_fail("status lost the buyer's name: %s", out);
	free(out);
	it_daemon_stop_clean(d);
}

/*
 * prune --keep-days: the notifications older than that go, in chunks, but
 * none a configured webhook has not delivered (here one whose endpoint
 * refuses every connection: its cursor stays at 0); once it is out of the
 * config they go.  A subscriber resuming inside what was pruned gets
 * feed_gap instead of a silent jump, and may subscribe again; one after 0
 * gets what is kept, from the oldest.
 */
static void test_ctl_prune(void **state)
{
	(void)state;
	const char *db = "ops_prune";
	it_pg_createdb(db);
	struct it_config cfg = ops_config("prune", db);
	char extra[2048];
	snprintf(extra, sizeof(extra),
	         "%s\nwebhooks = ( { id = \"erp\"; url = \"http://127.0.0.1:1/hook\";"
	         " secret = \"whsec-prune-0123456789\"; } );\n",
	         cfg.extra_text);
	cfg.extra_text = extra;
	struct it_daemon *d = it_daemon_start(&cfg, true);
	send_scenario(d, IT_EXPORTER, IT_TOKEN);
	send_scenario(d, CHILI, CHILI_TOKEN);
	long top = it_db_long(db, "SELECT max(seq) FROM ordertrack.notifications", NULL);
	assert_true(top > 10);
	long long deadline = it_now_ms() + IT_REPLY_MS;
	while (it_db_long(db, "SELECT count(*) FROM ordertrack.webhook_cursors", NULL) < 1) {
		if (it_now_ms() > deadline)
			it_fail("the webhook's cursor row was never made");
		it_sleep_ms(50);
	}
	const char *conf = d->conf_path;
	/* Nothing old yet, and the webhook caught up (as far as its row says):
	 * nothing goes (least() would have taken the cursor for the bound). */
	char sql[160];
	snprintf(sql, sizeof(sql), "UPDATE ordertrack.webhook_cursors SET last_seq = %ld", top);
	it_db_command(db, sql, NULL);
	json_t *j = CTL_JSON("-c", conf, "prune", "--keep-days", "30");
	assert_int_equal(json_integer_value(json_object_get(j, "deleted")), 0);
	assert_true(json_is_null(json_object_get(j, "held_back_by")));
	json_decref(j);
	it_db_command(db, "UPDATE ordertrack.webhook_cursors SET last_seq = 0", NULL);

	snprintf(sql, sizeof(sql),
	         "UPDATE ordertrack.notifications SET created_at = created_at - interval '40 days'"
	         " WHERE seq <= %ld",
	         top - 3);
	it_db_command(db, sql, NULL);
	j = CTL_JSON("-c", conf, "prune", "--keep-days", "30");
	assert_int_equal(json_integer_value(json_object_get(j, "deleted")), 0);
	expect_str(j, "held_back_by", "erp");
	json_decref(j);

	/* A webhook in the file whose row is not made yet (no reload) starts
	 * at 0: it holds everything back too. */
	*strstr(extra, "\nwebhooks") = '\0';
	char with_new[sizeof(extra) + 128];
	snprintf(with_new, sizeof(with_new),
	         "%s\nwebhooks = ( { id = \"crm\"; url = \"http://127.0.0.1:1/hook\";"
	         " secret = \"whsec-prune-0123456789\"; } );\n",
	         extra);
	cfg.extra_text = with_new;
	it_daemon_rewrite(d, &cfg);
	j = CTL_JSON("-c", conf, "prune", "--keep-days", "30");
	assert_int_equal(json_integer_value(json_object_get(j, "deleted")), 0);
	expect_str(j, "held_back_by", "crm");
	json_decref(j);

	cfg.extra_text = extra; /* no webhook in the config */
	it_daemon_rewrite(d, &cfg);
	j = CTL_JSON("-c", conf, "prune", "--keep-days", "30");
	assert_int_equal(json_integer_value(json_object_get(j, "deleted")), top - 3);
	assert_int_equal(json_integer_value(json_object_get(j, "through_seq")), top - 3);
	assert_true(json_is_null(json_object_get(j, "held_back_by")));
	json_decref(j);
	assert_int_equal(it_db_long(db, "SELECT min(seq) FROM ordertrack.notifications", NULL),
	                 top - 2);

	/* Resuming after seq 1: told, not fed around the hole. */
	struct it_client *c = it_connect(d);
	it_hello_operator(c, OPS, OPS_TOKEN);
	char *line = subscribe_line(c, 1);
	if (strstr(line, "\"subscribed\"") == NULL)
		it_fail("subscribe after 1: %s", line);
	free(line);
	line = it_read_line(c, IT_REPLY_MS);
	json_t *err = it_check_error(line, NULL, "feed_gap");
	char want[96];
	snprintf(want, sizeof(want), "notifications 2 to %ld are no longer stored", top - 3);
	if (strstr(it_json_str(err, "message"), want) == NULL)
		it_fail("feed_gap message: %s", line);
	json_decref(err);
	free(line);
	it_log_expect(d, 0, "msg=\"feed gap\" conn=", IT_REPLY_MS);
	/* tail from there: exit 1 (what it asked for is not there), nothing printed. */
	char addr[64], *out;
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", d->port);
	assert_int_equal(ctl(&out, OPS_TOKEN, "-c", conf, "tail", "--after", "1", "--limit", "3",
	                     "--json", "--address", addr, (char *)NULL),
	                 1);
	assert_string_equal(out, "");
	free(out);

	/* The same connection subscribes again, after what was pruned. */
	line = subscribe_line(c, top - 3);
	if (strstr(line, "\"subscribed\"") == NULL)
		it_fail("subscribe again: %s", line);
	free(line);
	for (long seq = top - 2; seq <= top; seq++) {
		line = it_read_line(c, IT_REPLY_MS);
		json_t *n = json_loads(line, 0, NULL);
		if (n == NULL || json_integer_value(json_object_get(n, "seq")) != seq)
			it_fail("after the gap: wanted seq %ld, got %s", seq, line);
		json_decref(n);
		free(line);
	}
	it_close(c);

	/* tail without --after: the newest kept, though fewer than ten are
	 * (not the newest seq minus ten, which were pruned). */
	assert_int_equal(ctl(&out, OPS_TOKEN, "-c", conf, "tail", "--limit", "1", "--json",
	                     "--address", addr, (char *)NULL),
	                 0);
	json_t *n = json_loads(out, 0, NULL);
	if (n == NULL || json_integer_value(json_object_get(n, "seq")) != top - 2)
		it_fail("tail without --after, once pruned: wanted seq %ld first, got %s", top - 2,
		        out);
	json_decref(n);
	free(out);

	/* After 0: what is kept, from the oldest, no error. */
	c = it_connect(d);
	it_hello_operator(c, OPS, OPS_TOKEN);
	free(subscribe_line(c, 0));
	line = it_read_line(c, IT_REPLY_MS);
	n = json_loads(line, 0, NULL);
	if (n == NULL || json_integer_value(json_object_get(n, "seq")) != top - 2)
		it_fail("after 0, once pruned: wanted seq %ld first, got %s", top - 2, line);
	json_decref(n);
	free(line);
	it_close(c);
	it_daemon_stop_clean(d);
}

/*
 * The log names an operator's connection as the operator's: an operator
 * may share its id with an exporter, and "exporter=ops" would count its
 * refused lines and its close against an exporter of that name.
 */
static void test_operator_log_lines(void **state)
{
	(void)state;
	it_pg_createdb("ops_oplog");
	struct it_config cfg = ops_config("oplog", "ops_oplog");
	struct it_daemon *d = it_daemon_start(&cfg, true);
	struct it_client *c = it_connect(d);
	it_hello_operator(c, OPS, OPS_TOKEN);
	it_send_event(c, "oplog-1", "order.cancelled", "PO-OPLOG", NULL);
	json_decref(it_expect_error(c, "oplog-1", "forbidden"));
	it_close(c);
	it_log_expect(d, 0, "msg=\"line rejected\"", IT_REPLY_MS);
	it_log_expect(d, 0, "operator=" OPS " code=forbidden event=oplog-1", IT_REPLY_MS);
	it_log_expect(d, 0, "operator=" OPS " reason=\"peer closed\"", IT_REPLY_MS);
	it_daemon_stop_clean(d);
	assert_int_equal(it_log_wait(d, 0, "exporter=" OPS " ", 0), -1);
}

/*
 * tail --token: the token does not stay in the command line that ps and
 * /proc/PID/cmdline show every user of the host while tail follows the
 * feed, and tail still says hello with it.
 */
static void test_tail_token_hidden(void **state)
{
	(void)state;
	it_pg_createdb("ops_tail_token");
	struct it_config cfg = ops_config("tail_token", "ops_tail_token");
	struct it_daemon *d = it_daemon_start(&cfg, true);
	const char *bin = getenv("OT_CTL");
	if (bin == NULL || bin[0] == '\0')
		it_fail("OT_CTL is not set (meson test sets it)");
	char addr[64];
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", d->port);
	off_t off = it_log_offset(d);
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		it_fail("fork: %s", strerror(errno));
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		int null = open("/dev/null", O_WRONLY);
		dup2(null, 1);
		unsetenv("ORDERTRACK_TOKEN");
		/* No notification at all yet: it follows the feed until killed. */
		execl(bin, "ordertrackctl", "-c", d->conf_path, "tail", "--after", "0", "--address",
		      addr, "--token", OPS_TOKEN, (char *)NULL);
		_exit(127);
	}
	/* Subscribed: its options were read long ago. */
	it_log_expect(d, off, "msg=subscribed", IT_REPLY_MS);
	char path[64], cmdline[4096];
	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		it_fail("open %s: %s", path, strerror(errno));
	ssize_t n = read(fd, cmdline, sizeof(cmdline) - 1);
	close(fd);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	assert_true(n > 0);
	for (ssize_t i = 0; i < n; i++)
		if (cmdline[i] == '\0')
			cmdline[i] = ' ';
	cmdline[n] = '\0';
	if (strstr(cmdline, OPS_TOKEN) != NULL)
		it_fail("the token is in tail's command line: %s", cmdline);
	assert_non_null(strstr(cmdline, "--token"));
	it_daemon_stop_clean(d);
	/* --help points to the safer way. */
	char *out;
	assert_int_equal(ctl(&out, NULL, "--help", (char *)NULL), 0);
	if (strstr(out, "ORDERTRACK_TOKEN") == NULL)
		it_fail("ordertrackctl --help does not name ORDERTRACK_TOKEN: %s", out);
	free(out);
}

/*
 * tail --address that is no HOST:PORT is a usage error that says so (it
 * was exit 69 without a word), and so is an --exporter, --operator or
 * token that is not UTF-8; a port that answers something else than
 * ordertrackd's protocol (the admin endpoint answers HTTP) is named with
 * what came back, not as an empty refusal ("-: -").
 */
static void test_tail_wrong_address(void **state)
{
	(void)state;
	it_pg_createdb("ops_tailaddr");
	struct it_config cfg = ops_config("tailaddr", "ops_tailaddr");
	struct it_daemon *d = it_daemon_start(&cfg, true);
	char *out;
	assert_int_equal(ctl(&out, OPS_TOKEN, "-c", d->conf_path, "tail", "--after", "0",
	                     "--address", "localhost", (char *)NULL),
	                 64);
	free(out);
	assert_int_equal(ctl(&out, OPS_TOKEN, "-c", d->conf_path, "tail", "--after", "0",
	                     "--address", "127.0.0.1:", (char *)NULL),
	                 64);
	free(out);

	/* Values that cannot go into the JSON hello or subscription: the
	 * exporter filter was dropped (every exporter followed), the others
	 * aborted the tool. */
	char addr[64];
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", d->port);
	assert_int_equal(ctl(&out, OPS_TOKEN, "-c", d->conf_path, "tail", "--after", "0", "--limit",
	                     "1", "--address", addr, "--exporter", "caf\xe9", (char *)NULL),
	                 64);
	free(out);
	assert_int_equal(ctl(&out, OPS_TOKEN, "-c", d->conf_path, "tail", "--after", "0",
	                     "--address", addr, "--operator", "op\xe9", (char *)NULL),
	                 64);
	free(out);
	assert_int_equal(ctl(&out, "tok\xe9n", "-c", d->conf_path, "tail", "--after", "0",
	                     "--address", addr, (char *)NULL),
	                 64);
	free(out);

	char cmd[3 * PATH_MAX];
	snprintf(cmd, sizeof(cmd),
	         "ORDERTRACK_TOKEN=%s '%s' -c '%s' tail --after 0 --address 127.0.0.1:%d 2>&1",
	         OPS_TOKEN, getenv("OT_CTL"), d->conf_path, admin_port(d));
	assert_int_equal(shell(cmd, &out), 69);
	if (strstr(out, "did not answer the hello as ordertrackd does (got \"HTTP/1.1 400") == NULL)
		it_fail("tail against the admin port: %s", out);
	free(out);
	it_daemon_stop_clean(d);
}

/*
 * The daemon's long options are ordertrackctl's: --version and --help
 * answer (they were "invalid option -- '-'", exit 64), --check --config
 * checks a file, and an unknown one is still a usage error.
 */
static void test_daemon_long_options(void **state)
{
	(void)state;
	const char *bin = getenv("OT_DAEMON");
	char cmd[3 * PATH_MAX], *out;
	snprintf(cmd, sizeof(cmd), "'%s' --version 2>&1", bin);
	assert_int_equal(shell(cmd, &out), 0);
	assert_string_equal(out, "ordertrackd " OT_VERSION "\n");
	free(out);
	snprintf(cmd, sizeof(cmd), "'%s' --help 2>&1", bin);
	assert_int_equal(shell(cmd, &out), 0);
	if (strncmp(out, "usage: ordertrackd ", 19) != 0 || strstr(out, "--check") == NULL)
		it_fail("ordertrackd --help: %s", out);
	free(out);
	snprintf(cmd, sizeof(cmd), "'%s' --check --config '%s/conf/ordertrackd.conf' 2>&1", bin,
	         getenv("OT_SOURCE_ROOT"));
	assert_int_equal(shell(cmd, &out), 0);
	if (strstr(out, "configuration OK") == NULL)
		it_fail("ordertrackd --check --config: %s", out);
	free(out);
	snprintf(cmd, sizeof(cmd), "'%s' --no-such-option 2>&1", bin);
	assert_int_equal(shell(cmd, &out), 64);
	free(out);
}

/* Write n bytes of data as the file tmpdir/name; its path in path. */
static void write_tmp_bytes(char *path, size_t cap, const char *name, const char *data, size_t n)
{
	snprintf(path, cap, "%s/%s", it_tmpdir(), name);
	FILE *f = fopen(path, "w");
	if (f == NULL || fwrite(data, 1, n, f) != n || fclose(f) != 0)
		it_fail("cannot write %s", path);
}

/* Write text as the file tmpdir/name; its path in path. */
static void write_tmp(char *path, size_t cap, const char *name, const char *text)
{
	write_tmp_bytes(path, cap, name, text, strlen(text));
}

/*
 * What -t cannot leave to start-up: a conninfo libpq cannot parse fails
 * every connection alike (the daemon would retry for ever, never ready,
 * and systemd would restart it after TimeoutStartSec), so -t, start-up
 * and ordertrackctl refuse it as a configuration error naming the key;
 * -t also refuses a user that does not exist, which start-up would only
 * find once bound.
 */
static void test_check_mode_conninfo_user(void **state)
{
	(void)state;
	const char *bin = getenv("OT_DAEMON");
	char conf[PATH_MAX], cmd[3 * PATH_MAX], *out;

	write_tmp(conf, sizeof(conf), "typo_conninfo.conf",
	          "listen = [ \"127.0.0.1:0\" ];\n"
	          "admin = { listen = \"\"; };\n"
	          "database = { conninfo = \"dbnme=ordertrack\"; };\n");
	snprintf(cmd, sizeof(cmd), "'%s' -t -c '%s' 2>&1", bin, conf);
	assert_int_equal(shell(cmd, &out), 78);
	if (strstr(out, "typo_conninfo.conf: database.conninfo: invalid connection option "
	                "\"dbnme\"") == NULL)
		it_fail("ordertrackd -t does not name the key and the reason: %s", out);
	free(out);
	/* Started for real it stops at once, before it listens. */
	snprintf(cmd, sizeof(cmd), "timeout 10 '%s' -c '%s' 2>&1", bin, conf);
	assert_int_equal(shell(cmd, &out), 78);
	if (strstr(out, "database.conninfo") == NULL || strstr(out, "msg=listening") != NULL)
		it_fail("start-up with a bad conninfo: %s", out);
	free(out);
	assert_int_equal(ctl(&out, NULL, "-c", conf, "check", (char *)NULL), 78);
	free(out);

	write_tmp(conf, sizeof(conf), "no_user.conf", "user = \"no-such-user-here\";\n");
	snprintf(cmd, sizeof(cmd), "'%s' -t -c '%s' 2>&1", bin, conf);
	assert_int_equal(shell(cmd, &out), 78);
	if (strstr(out, "no_user.conf: user: no such user \"no-such-user-here\"") == NULL)
		it_fail("ordertrackd -t does not name the user: %s", out);
	free(out);

	/* A database name alone, or a URI, is no connection string to reject. */
	write_tmp(conf, sizeof(conf), "plain_conninfo.conf",
	          "database = { conninfo = \"ordertrack\"; };\n");
	snprintf(cmd, sizeof(cmd), "'%s' -t -c '%s' 2>&1", bin, conf);
	assert_int_equal(shell(cmd, &out), 0);
	free(out);
	write_tmp(conf, sizeof(conf), "uri_conninfo.conf",
	          "database = { conninfo = \"postgresql:///ordertrack?connect_timeout=5\"; };\n");
	snprintf(cmd, sizeof(cmd), "'%s' -t -c '%s' 2>&1", bin, conf);
	assert_int_equal(shell(cmd, &out), 0);
	free(out);
}

/*
 * Config files the daemon cannot use as they are: a folder, a file with a
 * NUL byte (libconfig would stop reading there and run on the lines before
 * it), one over 16 MiB, and one that pulls another in with @include.  -t
 * refuses each with 78, naming the file and the reason (the NUL with its
 * line).
 */
static void test_config_file_unusable(void **state)
{
	(void)state;
	const char *bin = getenv("OT_DAEMON");
	char path[PATH_MAX], cmd[2 * PATH_MAX + 64], *out;
	static const char nul[] = "log = { level = \"info\"; };\n# a NUL \0 here\n"
	                          "exporters = ( );\n";

	snprintf(cmd, sizeof(cmd), "'%s' -t -c '%s' 2>&1", bin, it_tmpdir());
	assert_int_equal(shell(cmd, &out), 78);
	if (strstr(out, it_tmpdir()) == NULL || strstr(out, "Is a directory") == NULL)
		it_fail("a folder as the config: %s", out);
	free(out);

	write_tmp_bytes(path, sizeof(path), "nul.conf", nul, sizeof(nul) - 1);
	snprintf(cmd, sizeof(cmd), "'%s' -t -c '%s' 2>&1", bin, path);
	assert_int_equal(shell(cmd, &out), 78);
	if (strstr(out, "nul.conf:2: file contains a NUL byte") == NULL)
		it_fail("a NUL in the config: %s", out);
	free(out);

	size_t big = (16u << 20) + 4096;
	char *text = malloc(big);
	assert_non_null(text);
	for (size_t i = 0; i < big; i++)
		text[i] = i % 64 == 63 ? '\n' : (i % 64 == 0 ? '#' : 'x');
	write_tmp_bytes(path, sizeof(path), "big.conf", text, big);
	free(text);
	snprintf(cmd, sizeof(cmd), "'%s' -t -c '%s' 2>&1", bin, path);
	assert_int_equal(shell(cmd, &out), 78);
	if (strstr(out, "big.conf: larger than 16777216 bytes") == NULL)
		it_fail("a 16 MiB config: %s", out);
	free(out);

	/* @include: its text would escape the checks (here a wrapped integer). */
	static const char inc[] = "limits = { window = 4294968320; };\n";
	char inc_path[PATH_MAX], main_text[PATH_MAX + 64];
	write_tmp_bytes(inc_path, sizeof(inc_path), "inc.conf", inc, sizeof(inc) - 1);
	int len = snprintf(main_text, sizeof(main_text), "@include \"%s\"\n", inc_path);
	write_tmp_bytes(path, sizeof(path), "includes.conf", main_text, (size_t)len);
	snprintf(cmd, sizeof(cmd), "'%s' -t -c '%s' 2>&1", bin, path);
	assert_int_equal(shell(cmd, &out), 78);
	if (strstr(out, "inc.conf:1: limits: comes from a file pulled in by @include") == NULL)
		it_fail("an @include: %s", out);
	free(out);
	/* Inside a list too (libconfig takes @include on any line). */
	static const char exp[] =
	    "{ id = \"inc-x\"; name = \"X\"; token_sha256 = "
	    "\"0ef4ba1c633bd5d1f6b77c53d92686e817a73605f760b21ec7b5e932c4bd5adf\"; }\n";
	write_tmp_bytes(inc_path, sizeof(inc_path), "exp.conf", exp, sizeof(exp) - 1);
	len = snprintf(main_text, sizeof(main_text), "exporters = (\n@include \"%s\"\n);\n",
	               inc_path);
	write_tmp_bytes(path, sizeof(path), "includes2.conf", main_text, (size_t)len);
	snprintf(cmd, sizeof(cmd), "'%s' -t -c '%s' 2>&1", bin, path);
	assert_int_equal(shell(cmd, &out), 78);
	if (strstr(out, "exp.conf:1: exporters[0]: comes from a file pulled in by @include") ==
	    NULL)
		it_fail("an @include in a list: %s", out);
	free(out);
}

/*
 * Under systemd (JOURNAL_STREAM set) every log line starts with its syslog
 * priority, <6> for info and <4> for a warning, so that journalctl -p
 * filters by level (OPERATIONS.md, "Reading the logs").
 */
static void test_journal_priorities(void **state)
{
	(void)state;
	it_pg_createdb("ops_journal");
	struct it_config cfg = {.name = "journal",
	                        .dbname = "ops_journal",
	                        .log_level = "info",
	                        .journal_stream = "8:4242"};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	struct it_client *c = it_connect(d);
	it_send(c, "{\"type\":\"hello\",\"exporter\":\"kivu-coffee\",\"token\":\"guess\"}");
	json_decref(it_expect_error(c, NULL, "auth_failed"));
	off_t warn = it_log_expect(d, 0, "level=warning", IT_REPLY_MS);
	it_daemon_stop_clean(d);

	FILE *f = fopen(d->log_path, "r");
	if (f == NULL)
		it_fail("open %s: %s", d->log_path, strerror(errno));
	char line[4096];
	int info = 0, warning = 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strstr(line, "level=info ") != NULL) {
			if (strncmp(line, "<6>ts=", 6) != 0)
				it_fail("an info line without <6>: %s", line);
			info++;
		} else if (strstr(line, "level=warning ") != NULL) {
			if (strncmp(line, "<4>ts=", 6) != 0)
				it_fail("a warning without <4>: %s", line);
			warning++;
		}
	}
	fclose(f);
	assert_true(info > 3 && warning >= 1 && warn > 0);
}

/*
 * A listen address another program holds (a second instance, say): the
 * daemon names the address and the reason and exits 69 at once, before it
 * connects to anything.  The same address as admin.listen only costs the
 * admin endpoint: the daemon runs without it and says why.  A stray
 * argument is a usage error (64).
 */
static void test_listen_unavailable(void **state)
{
	(void)state;
	const char *bin = getenv("OT_DAEMON");
	char conf[PATH_MAX], cmd[2 * PATH_MAX + 64], text[256], want[64], *out;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 1) != 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
		it_fail("cannot hold a port: %s", strerror(errno));
	snprintf(text, sizeof(text),
	         "listen = [ \"127.0.0.1:%d\" ];\nadmin = { listen = \"\"; };\n",
	         ntohs(sa.sin_port));
	write_tmp(conf, sizeof(conf), "listen_taken.conf", text);
	snprintf(cmd, sizeof(cmd), "timeout 20 '%s' -c '%s' 2>&1", bin, conf);
	assert_int_equal(shell(cmd, &out), 69);
	snprintf(want, sizeof(want), "127.0.0.1:%d", ntohs(sa.sin_port));
	if (strstr(out, "msg=\"cannot listen\"") == NULL || strstr(out, want) == NULL ||
	    strstr(out, "Address already in use") == NULL ||
	    strstr(out, "msg=\"cannot start\" reason=\"a listen address failed\"") == NULL)
		it_fail("a taken port: %s", out);
	free(out);

	/* The same port as admin.listen: the daemon runs without the
	 * endpoint, and says so. */
	it_pg_createdb("ops_admin_taken");
	char admin[96];
	snprintf(admin, sizeof(admin), "admin = { listen = \"127.0.0.1:%d\"; };",
	         ntohs(sa.sin_port));
	struct it_config cfg = {.name = "admin_taken", .dbname = "ops_admin_taken"};
	cfg.extra_text = admin;
	struct it_daemon *d = it_daemon_start(&cfg, true);
	char needle[96];
	snprintf(needle, sizeof(needle), "msg=\"admin endpoint not started\" addr=127.0.0.1:%d",
	         ntohs(sa.sin_port));
	off_t at = it_log_expect(d, 0, needle, IT_REPLY_MS);
	if (it_log_wait(d, 0, "Address already in use", 0) != at)
		it_fail("the admin line does not give the reason");
	struct it_client *c = it_connect(d);
	it_hello(c, IT_EXPORTER, IT_TOKEN);
	it_daemon_stop_clean(d);
	close(fd);

	snprintf(cmd, sizeof(cmd), "'%s' -t -c '%s' extra 2>&1", bin, conf);
	assert_int_equal(shell(cmd, &out), 64);
	if (strstr(out, "unexpected argument \"extra\"") == NULL || strstr(out, "usage") == NULL)
		it_fail("a stray argument: %s", out);
	free(out);
}

/*
 * A conninfo libpq cannot parse is refused with libpq's reason, which may
 * quote the string whole: the password in it must not reach the terminal
 * (-t) or the log (a reload), which more people read than the file.
 */
static void test_conninfo_password_not_shown(void **state)
{
	(void)state;
	const char *bin = getenv("OT_DAEMON");
	char conf[PATH_MAX], cmd[3 * PATH_MAX], *out;
	/* libpq: end of string reached when looking for matching "]" ... in URI: "<it>" */
	static const char bad[] = "database = { conninfo = "
	                          "\"postgresql://ordertrack:Pw-5ecret-77@[::1/ordertrack\"; };\n";

	write_tmp(conf, sizeof(conf), "uri_password_conninfo.conf", bad);
	snprintf(cmd, sizeof(cmd), "'%s' -t -c '%s' 2>&1", bin, conf);
	assert_int_equal(shell(cmd, &out), 78);
	if (strstr(out, "database.conninfo: ") == NULL || strstr(out, "in URI") == NULL)
		it_fail("ordertrackd -t does not give libpq's reason: %s", out);
	if (strstr(out, "5ecret") != NULL)
		it_fail("ordertrackd -t shows the password: %s", out);
	assert_non_null(strstr(out, "postgresql://ordertrack:***@[::1/ordertrack"));
	free(out);

	/* A password as a URI parameter, and one written with a space and no
	 * quotes, whose second word libpq's reason quotes. */
	static const struct {
		const char *conf, *reason, *shown;
	} more[] = {
	    {"database = { conninfo = \"postgresql://[::1/ordertrack?password=Q5ecret&x=1\"; };\n",
	     "in URI", "?password=***&x=1"},
	    {"database = { conninfo = \"host=/tmp password=Pw-5e cret-77 dbname=x\"; };\n",
	     "missing \"=\" after", "after \"***\""},
	};
	for (size_t i = 0; i < sizeof(more) / sizeof(more[0]); i++) {
		write_tmp(conf, sizeof(conf), "more_password_conninfo.conf", more[i].conf);
		snprintf(cmd, sizeof(cmd), "'%s' -t -c '%s' 2>&1", bin, conf);
		assert_int_equal(shell(cmd, &out), 78);
		if (strstr(out, more[i].reason) == NULL || strstr(out, more[i].shown) == NULL)
			it_fail("ordertrackd -t: unexpected reason: %s", out);
		if (strstr(out, "5ecret") != NULL || strstr(out, "cret-77") != NULL)
			it_fail("ordertrackd -t shows the password: %s", out);
		free(out);
	}

	/* The same file on SIGHUP: refused, and logged without the password. */
	it_pg_createdb("ops_conninfo_pw");
	struct it_config cfg = ops_config("conninfo_pw", "ops_conninfo_pw");
	struct it_daemon *d = it_daemon_start(&cfg, true);
	off_t off = it_log_offset(d);
	it_daemon_rewrite_raw(d, bad);
	kill(d->pid, SIGHUP);
	it_log_expect(d, off, "msg=\"config reload failed\"", IT_REPLY_MS);
	FILE *f = fopen(d->log_path, "r");
	if (f == NULL)
		it_fail("open %s: %s", d->log_path, strerror(errno));
	char line[4096];
	bool refused = false;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strstr(line, "5ecret") != NULL)
			it_fail("the log shows the password: %s", line);
		if (strstr(line, "config reload failed") != NULL &&
		    strstr(line, "postgresql://ordertrack:***@[::1/ordertrack") != NULL)
			refused = true;
	}
	fclose(f);
	assert_true(refused);
	it_daemon_stop_clean(d);
}

/*
 * A config file holding secrets (a conninfo password, webhook secrets)
 * that others can read: -t, start-up and a reload warn naming the file
 * and its mode, without the secret and without refusing; at 0600, or
 * with no secret in it, they say nothing.
 */
static void test_secret_config_mode_warned(void **state)
{
	(void)state;
	const char *bin = getenv("OT_DAEMON");
	char conf[PATH_MAX], cmd[3 * PATH_MAX], want[PATH_MAX + 64], *out;

	write_tmp(conf, sizeof(conf), "pw_mode.conf",
	          "listen = [ \"127.0.0.1:0\" ];\n"
	          "admin = { listen = \"\"; };\n"
	          "database = { conninfo = \"host=/nowhere dbname=x password=Pw-5ecret-88\"; };\n");
	snprintf(want, sizeof(want), "file=%s mode=0644", conf);
	snprintf(cmd, sizeof(cmd), "chmod 0644 '%s' && '%s' -t -c '%s' 2>&1", conf, bin, conf);
	assert_int_equal(shell(cmd, &out), 0);
	if (strstr(out, "level=warning msg=\"config file readable by others\"") == NULL ||
	    strstr(out, want) == NULL || strstr(out, "holds=database.conninfo") == NULL ||
	    strstr(out, "configuration OK") == NULL)
		it_fail("-t does not warn about a world-readable password: %s", out);
	if (strstr(out, "5ecret") != NULL)
		it_fail("-t shows the password: %s", out);
	free(out);
	snprintf(cmd, sizeof(cmd), "chmod 0600 '%s' && '%s' -t -c '%s' 2>&1", conf, bin, conf);
	assert_int_equal(shell(cmd, &out), 0);
	if (strstr(out, "readable by others") != NULL)
		it_fail("-t warns about a file at 0600: %s", out);
	free(out);
	/* As root, group read: without user root cannot know the service's
	 * user (systemd's User=), so only others count; with user, a group
	 * that user is not in is named. */
	if (geteuid() == 0) {
		static const char hook[] =
		    "listen = [ \"127.0.0.1:0\" ];\nadmin = { listen = \"\"; };\n"
		    "webhooks = ( { id = \"e\"; url = \"http://127.0.0.1:9/h\";"
		    " secret = \"0123456789abcdef-group\"; } );\n";
		write_tmp(conf, sizeof(conf), "group_mode.conf", hook);
		const struct group *gr = getgrnam("daemon");
		if (gr == NULL || chown(conf, (uid_t)-1, gr->gr_gid) != 0 || chmod(conf, 0640) != 0)
			it_fail("cannot give %s to group daemon, mode 0640", conf);
		snprintf(cmd, sizeof(cmd), "'%s' -t -c '%s' 2>&1", bin, conf);
		assert_int_equal(shell(cmd, &out), 0);
		if (strstr(out, "readable by others") != NULL)
			it_fail("-t as root without user warns about group read: %s", out);
		free(out);
		char text[512];
		snprintf(text, sizeof(text), "%suser = \"nobody\";\n", hook);
		write_tmp(conf, sizeof(conf), "group_mode.conf", text); /* keeps group and mode */
		snprintf(cmd, sizeof(cmd), "'%s' -t -c '%s' 2>&1", bin, conf);
		assert_int_equal(shell(cmd, &out), 0);
		if (strstr(out,
		           "mode=0640 group=daemon readable_by=group holds=webhooks.secrets") ==
		    NULL)
			it_fail("-t with user = nobody does not warn about group daemon: %s", out);
		free(out);
		/* The overflow group (nogroup): what any group outside a user
		 * namespace, such as the unit's PrivateUsers=, stats as. */
		gr = getgrgid(65534);
		if (gr != NULL && getpwnam("daemon") != NULL) {
			snprintf(text, sizeof(text), "%suser = \"daemon\";\n", hook);
			write_tmp(conf, sizeof(conf), "group_mode.conf", text);
			if (chown(conf, (uid_t)-1, gr->gr_gid) != 0)
				it_fail("cannot give %s to group %s", conf, gr->gr_name);
			assert_int_equal(shell(cmd, &out), 0);
			if (strstr(out, "readable by others") != NULL)
				it_fail("-t warns about the overflow group: %s", out);
			free(out);
		}
	}
	write_tmp(conf, sizeof(conf), "nosecret_mode.conf",
	          "listen = [ \"127.0.0.1:0\" ];\nadmin = { listen = \"\"; };\n");
	snprintf(cmd, sizeof(cmd), "chmod 0644 '%s' && '%s' -t -c '%s' 2>&1", conf, bin, conf);
	assert_int_equal(shell(cmd, &out), 0);
	if (strstr(out, "readable by others") != NULL)
		it_fail("-t warns about a file without secrets: %s", out);
	free(out);
	/* Writable by anyone: warned about, secrets or not. */
	snprintf(want, sizeof(want), "file=%s mode=0646 writable_by=others", conf);
	snprintf(cmd, sizeof(cmd), "chmod 0646 '%s' && '%s' -t -c '%s' 2>&1", conf, bin, conf);
	assert_int_equal(shell(cmd, &out), 0);
	if (strstr(out, "level=warning msg=\"config file writable by others\"") == NULL ||
	    strstr(out, want) == NULL)
		it_fail("-t does not warn about a world-writable config: %s", out);
	free(out);
	snprintf(cmd, sizeof(cmd), "chmod 0644 '%s' && '%s' -t -c '%s' 2>&1", conf, bin, conf);
	assert_int_equal(shell(cmd, &out), 0);
	if (strstr(out, "writable by others") != NULL)
		it_fail("-t warns about a config at 0644 as writable: %s", out);
	free(out);

	/* A webhook secret, on SIGHUP and at start-up. */
	it_pg_createdb("ops_secret_mode");
	struct it_config cfg = ops_config("secret_mode", "ops_secret_mode");
	cfg.extra_text = "admin = { listen = \"\"; };\n"
	                 "webhooks = ( { id = \"erp\"; url = \"http://127.0.0.1:9/hook\";"
	                 " secret = \"0123456789abcdef-hook\"; } );\n";
	struct it_daemon *d = it_daemon_start(&cfg, true);
	snprintf(want, sizeof(want), "file=%s mode=0644", d->conf_path);
	for (int pass = 0; pass < 2; pass++) {
		off_t off = it_log_offset(d);
		if (chmod(d->conf_path, pass == 0 ? 0644 : 0600) != 0)
			it_fail("chmod %s: %s", d->conf_path, strerror(errno));
		kill(d->pid, SIGHUP);
		it_log_expect(d, off, "msg=\"config reloaded\"", IT_REPLY_MS);
		/* The check follows the reload line in the same callback. */
		off_t at = it_log_wait(d, off, "msg=\"config file readable by others\"", 200);
		if (pass == 0 && (at < 0 || it_log_wait(d, off, want, 0) < 0 ||
		                  it_log_wait(d, off, "holds=webhooks.secrets", 0) < 0))
			it_fail("a reload does not warn about a world-readable webhook secret");
		if (pass == 1 && at >= 0)
			it_fail("a reload warns about a file at 0600");
	}
	it_daemon_stop_clean(d);
	if (chmod(d->conf_path, 0644) != 0)
		it_fail("chmod %s: %s", d->conf_path, strerror(errno));
	d = it_daemon_start(&cfg, true); /* rewrites the file, which keeps its mode */
	if (it_log_wait(d, 0, want, 0) < 0)
		it_fail("start-up does not warn about a world-readable webhook secret");
	it_daemon_stop_clean(d);
}

/*
 * check as a staff role (OPERATIONS.md, "Running ordertrackctl"): without
 * the grants it must say it cannot read the schema (it said "no schema
 * yet: ordertrackd creates it when it first starts" of a schema at the
 * newest version); with the documented grants it is up to date.
 */
static void test_check_role_without_grants(void **state)
{
	(void)state;
	const char *db = "ops_roles";
	it_pg_createdb(db);
	struct it_config cfg = ops_config("roles", db);
	struct it_daemon *d = it_daemon_start(&cfg, true);
	it_daemon_stop_clean(d);
	it_db_command(db, "DROP ROLE IF EXISTS ops_alice", NULL);
	it_db_command(db, "CREATE ROLE ops_alice LOGIN", NULL);

	char conf[PATH_MAX], text[2048];
	snprintf(text, sizeof(text), "database = { conninfo = \"%s user=ops_alice\"; };\n",
	         it_conninfo(db));
	write_tmp(conf, sizeof(conf), "alice.conf", text);
	char *out;
	assert_int_equal(ctl(&out, NULL, "-c", conf, "--json", "check", (char *)NULL), 1);
	json_t *j = parse_out("check as ops_alice", out);
	const json_t *dbj = json_object_get(j, "database");
	const char *schema = it_json_str(dbj, "schema");
	if (schema == NULL || strstr(schema, "cannot be read: permission denied") == NULL)
		it_fail("check without grants says: %s", schema ? schema : "nothing");
	assert_true(json_is_null(json_object_get(dbj, "schema_version")));
	json_decref(j);

	it_db_command(db, "GRANT USAGE ON SCHEMA ordertrack TO ops_alice", NULL);
	it_db_command(db, "GRANT SELECT ON ALL TABLES IN SCHEMA ordertrack TO ops_alice", NULL);
	j = CTL_JSON("-c", conf, "check");
	expect_str(json_object_get(j, "database"), "schema", "up to date");
	json_decref(j);
}

/* qsort's comparison of two strings through their pointers. */
static int strcmp_ptr(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The migration files in sql/ ("NNN_name.sql"), oldest first, malloc'd. */
static size_t migration_files(char ***out)
{
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s/sql", getenv("OT_SOURCE_ROOT"));
	DIR *d = opendir(dir);
	if (d == NULL)
		it_fail("open %s: %s", dir, strerror(errno));
	char **names = NULL;
	size_t n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		size_t len = strlen(e->d_name);
		if (len < 9 || strspn(e->d_name, "0123456789") != 3 || e->d_name[3] != '_' ||
		    strcmp(e->d_name + len - 4, ".sql") != 0)
			continue;
		names = realloc(names, (n + 1) * sizeof(*names));
		if (names == NULL || (names[n] = strdup(e->d_name)) == NULL)
			abort();
		n++;
	}
	closedir(d);
	qsort(names, n, sizeof(*names), strcmp_ptr);
	*out = names;
	return n;
}

/* Free what migration_files() returned. */
static void migration_files_free(char **files, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(files[i]);
	free(files);
}

/* The read model of a database as one text: each order's fold and its shipments. */
static char *read_model(const char *db)
{
	return it_db_value(
	    db,
	    "SELECT (SELECT string_agg(order_ref || '=' || status || ' ' || state::text,"
	    "   E'\n' ORDER BY order_ref) FROM ordertrack.orders) || E'\n' ||"
	    " (SELECT string_agg(shipment_ref || '=' || status || '/' || milestone,"
	    "   E'\n' ORDER BY shipment_ref) FROM ordertrack.shipments)",
	    NULL);
}

/*
 * Upgrading: a database left by the previous release (every migration but
 * the newest, recorded as the daemon records them) holds half of the Kivu
 * scenario's events, stored as that release stored them.  The daemon must
 * apply the newest migration at start, answer the old events "duplicate"
 * and the others "stored", and fold them together into the read model a
 * fresh database gets from the whole scenario.
 */
static void test_upgrade_keeps_stored_events(void **state)
{
	(void)state;
	const char *db = "ops_upgrade";
	char **files;
	size_t n = migration_files(&files);
	assert_true(n >= 2);

	it_pg_createdb(db);
	it_db_script(db, "CREATE SCHEMA ordertrack;"
	                 "CREATE TABLE ordertrack.schema_migrations (version integer PRIMARY KEY,"
	                 " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())");
	for (size_t i = 0; i + 1 < n; i++) {
		char rel[PATH_MAX], version[8], name[256];
		snprintf(rel, sizeof(rel), "sql/%s", files[i]);
		char *sql = it_source_file(rel);
		it_db_script(db, sql);
		free(sql);
		snprintf(version, sizeof(version), "%d", atoi(files[i]));
		snprintf(name, sizeof(name), "%.*s", (int)(strlen(files[i]) - 8), files[i] + 4);
		it_db_command(db,
		              "INSERT INTO ordertrack.schema_migrations (version, name)"
		              " VALUES ($1::integer, $2)",
		              version, name, NULL);
	}
	char *scenario = it_source_file("tests/data/scenario-kivu-coffee.jsonl");
	it_db_command(db,
	              "INSERT INTO ordertrack.events"
	              " (exporter, event_id, type, order_ref, shipment_ref, occurred_at, body)"
	              " SELECT $1, j->>'id', j->>'type', j->>'order', j->>'shipment',"
	              " (j->>'occurred_at')::timestamptz, j"
	              " FROM unnest(string_to_array(rtrim($2, E'\n'), E'\n'))"
	              "  WITH ORDINALITY AS l(line, n), LATERAL (SELECT line::json AS j) x"
	              " WHERE n % 2 = 1",
	              IT_EXPORTER, scenario, NULL);
	long old_events = it_db_rows(db);
	assert_true(old_events >= 10);

	struct it_config cfg = ops_config("upgrade", db);
	struct it_daemon *d = it_daemon_start(&cfg, true);
	char applied[128];
	snprintf(applied, sizeof(applied), "msg=\"migration applied\" version=%d",
	         atoi(files[n - 1]));
	it_log_expect(d, 0, applied, IT_START_MS);

	struct it_client *c = it_connect(d);
	it_hello(c, IT_EXPORTER, IT_TOKEN);
	it_send_raw(c, scenario, strlen(scenario));
	long lines = 0, duplicates = 0;
	for (const char *p = scenario; *p != '\0'; p++)
		lines += *p == '\n';
	for (long i = 0; i < lines; i++) {
		json_t *r = it_read_json(c, IT_REPLY_MS);
		const char *want = i % 2 == 0 ? "duplicate" : "stored",
		           *got = it_json_str(r, "result");
		if (got == NULL || strcmp(got, want) != 0) {
			char *s = json_dumps(r, JSON_COMPACT);
			it_fail("line %ld: wanted an ack \"%s\", got %s", i + 1, want, s);
		}
		duplicates += i % 2 == 0;
		json_decref(r);
	}
	it_close(c);
	it_daemon_stop_clean(d);
	assert_int_equal(duplicates, old_events);
	assert_int_equal(it_db_rows(db), lines);
	assert_int_equal(
	    it_db_long(db, "SELECT max(version) FROM ordertrack.schema_migrations", NULL),
	    atoi(files[n - 1]));

	/* The same scenario through a fresh database, for the read model. */
	it_pg_createdb("ops_upgrade_ref");
	struct it_config ref_cfg = ops_config("upgrade_ref", "ops_upgrade_ref");
	d = it_daemon_start(&ref_cfg, true);
	send_scenario(d, IT_EXPORTER, IT_TOKEN);
	it_daemon_stop_clean(d);
	char *got = read_model(db), *want = read_model("ops_upgrade_ref");
	assert_non_null(want);
	assert_string_equal(got, want);
	free(got);
	free(want);
	free(scenario);
	migration_files_free(files, n);
}

/*
 * Upgrading from 004 or older: those releases stored the fold's whole
 * result in orders.state, lines and documents included, where 005 and
 * later store the order and its shipments only.  A database left at
 * version 4 with the Kivu scenario folded as that release folded it must,
 * once the daemon has migrated it, hold the read model of a fresh
 * database, orders.state included, without a batch touching its orders.
 */
static void test_upgrade_from_whole_state(void **state)
{
	(void)state;
	char **files;
	size_t n = migration_files(&files);
	assert_true(n >= 5);

	/* The reference: the whole scenario through a fresh database. */
	it_pg_createdb("ops_whole_ref");
	struct it_config ref_cfg = ops_config("whole_ref", "ops_whole_ref");
	struct it_daemon *d = it_daemon_start(&ref_cfg, true);
	send_scenario(d, IT_EXPORTER, IT_TOKEN);
	it_daemon_stop_clean(d);
	/* What a release up to 004 sent apply_orders: state with the lines
	 * and documents of the fold. */
	char *batch = it_db_value(
	    "ops_whole_ref",
	    "SELECT jsonb_agg(jsonb_build_object('exporter', o.exporter, 'order_ref', o.order_ref,"
	    " 'state', o.state || jsonb_build_object("
	    "  'lines', (SELECT coalesce(jsonb_agg(jsonb_build_object('sku', l.sku,"
	    "   'product', l.product, 'hs_code', l.hs_code, 'quantity', l.quantity,"
	    "   'unit', l.unit, 'unit_price', l.unit_price, 'currency', l.currency)"
	    "   ORDER BY l.line_no), '[]') FROM ordertrack.order_lines l"
	    "   WHERE l.exporter = o.exporter AND l.order_ref = o.order_ref),"
	    "  'documents', (SELECT coalesce(jsonb_agg(jsonb_build_object("
	    "   'shipment_ref', x.shipment_ref, 'document', x.document, 'number', x.number,"
	    "   'issued_at', x.issued_at)), '[]') FROM ordertrack.documents x"
	    "   WHERE x.exporter = o.exporter AND x.order_ref = o.order_ref))))"
	    " FROM ordertrack.orders o",
	    NULL);

	const char *db = "ops_whole";
	it_pg_createdb(db);
	it_db_script(db, "CREATE SCHEMA ordertrack;"
	                 "CREATE TABLE ordertrack.schema_migrations (version integer PRIMARY KEY,"
	                 " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())");
	for (size_t i = 0; i < 4; i++) {
		char rel[PATH_MAX], version[8], name[256];
		snprintf(rel, sizeof(rel), "sql/%s", files[i]);
		char *sql = it_source_file(rel);
		it_db_script(db, sql);
		free(sql);
		snprintf(version, sizeof(version), "%d", atoi(files[i]));
		snprintf(name, sizeof(name), "%.*s", (int)(strlen(files[i]) - 8), files[i] + 4);
		it_db_command(db,
		              "INSERT INTO ordertrack.schema_migrations (version, name)"
		              " VALUES ($1::integer, $2)",
		              version, name, NULL);
	}
	char *scenario = it_source_file("tests/data/scenario-kivu-coffee.jsonl");
	it_db_command(db,
	              "INSERT INTO ordertrack.events"
	              " (exporter, event_id, type, order_ref, shipment_ref, occurred_at, body)"
	              " SELECT $1, j->>'id', j->>'type', j->>'order', j->>'shipment',"
	              " (j->>'occurred_at')::timestamptz, j"
	              " FROM unnest(string_to_array(rtrim($2, E'\\n'), E'\\n')) AS l(line),"
	              " LATERAL (SELECT line::jsonb AS j) x",
	              IT_EXPORTER, scenario, NULL);
	free(scenario);
	free(it_db_value(db, "SELECT ordertrack.apply_orders($1::jsonb)", batch, NULL));
	free(batch);
	assert_int_equal(it_db_long(db,
	                            "SELECT count(*) FROM ordertrack.orders"
	                            " WHERE state ? 'lines' AND state ? 'documents'",
	                            NULL),
	                 2);

	struct it_config cfg = ops_config("whole", db);
	d = it_daemon_start(&cfg, true);
	char applied[128];
	snprintf(applied, sizeof(applied), "msg=\"migration applied\" version=%d",
	         atoi(files[n - 1]));
	it_log_expect(d, 0, applied, IT_START_MS);
	it_daemon_stop_clean(d);

	char *got = read_model(db), *want = read_model("ops_whole_ref");
	assert_non_null(want);
	assert_string_equal(got, want);
	free(got);
	free(want);
	migration_files_free(files, n);
}

/* Run sql on a session of the test's own; fail unless it succeeds. */
static void own_exec(PGconn *pg, const char *sql, const char *p1, const char *p2)
{
	const char *params[2] = {p1, p2};
	PGresult *r = PQexecParams(pg, sql, p2 ? 2 : p1 ? 1 : 0, NULL, params, NULL, NULL, 0);
	ExecStatusType t = PQresultStatus(r);
	if (t != PGRES_COMMAND_OK && t != PGRES_TUPLES_OK)
		it_fail("%s: %s", sql, PQresultErrorMessage(r));
	PQclear(r);
}

/* Wait until some session of db waits for an advisory lock. */
static void wait_advisory_waiter(const char *db)
{
	long long deadline = it_now_ms() + IT_REPLY_MS;
	while (it_db_long(
	           db, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
	           NULL) == 0) {
		if (it_now_ms() > deadline)
			it_fail("no session of %s came to wait for an advisory lock", db);
		it_sleep_ms(20);
	}
}

/*
 * Two daemons of two sessions each started at once on an empty database:
 * a test session holds the migrations' advisory lock until all four
 * sessions wait for it, then lets go.  The first to get it applies every
 * migration; the other three find the schema up to date and apply none,
 * and no session fails (no "schema not ready").
 */
static void test_two_daemons_empty_database(void **state)
{
	(void)state;
	const char *db = "ops_two_empty";
	char **files;
	size_t n = migration_files(&files);
	it_pg_createdb(db);
	PGconn *pg = PQconnectdb(it_conninfo(db));
	if (PQstatus(pg) != CONNECTION_OK)
		it_fail("connect: %s", PQerrorMessage(pg));
	own_exec(pg, "BEGIN", NULL, NULL);
	own_exec(pg, "SELECT pg_advisory_xact_lock(7433001)", NULL, NULL);
	struct it_config ca = {.name = "two_empty_a",
	                       .dbname = db,
	                       .db_connections = 2,
	                       .extra_text = "alerts = { interval_s = 86400; };\n"};
	struct it_config cb = ca;
	cb.name = "two_empty_b";
	struct it_daemon *a = it_daemon_start(&ca, false);
	struct it_daemon *b = it_daemon_start(&cb, false);
	long long deadline = it_now_ms() + IT_START_MS;
	while (it_db_long(db,
	                  "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
	                  " AND NOT granted",
	                  NULL) < 4) {
		if (it_now_ms() > deadline)
			it_fail(
			    "the four sessions did not all come to wait for the migrations' lock");
		it_sleep_ms(20);
	}
	own_exec(pg, "COMMIT", NULL, NULL);
	PQfinish(pg);
	it_log_expect(a, 0, "msg=ready", IT_START_MS);
	it_log_expect(b, 0, "msg=ready", IT_START_MS);
	struct it_daemon *both[2] = {a, b};
	int applied = 0, ready = 0;
	for (int k = 0; k < 2; k++) {
		for (int link = 1; link <= 2; link++) {
			char needle[64];
			snprintf(needle, sizeof(needle), "msg=\"schema ready\" link=%d", link);
			it_log_expect(both[k], 0, needle, IT_START_MS);
			ready++;
		}
		for (off_t off = 0;
		     (off = it_log_wait(both[k], off, "msg=\"migration applied\"", 0)) >= 0;)
			applied++;
		if (it_log_wait(both[k], 0, "msg=\"database schema not ready\"", 0) >= 0)
			it_fail("a session of daemon %d found the schema not ready", k);
	}
	assert_int_equal(ready, 4);
	assert_int_equal(applied, (int)n);
	assert_int_equal(it_db_long(db, "SELECT count(*) FROM ordertrack.schema_migrations", NULL),
	                 (long)n);
	migration_files_free(files, n);
	it_daemon_stop_clean(a);
	it_daemon_stop_clean(b);
}

/*
 * PostgreSQL crashes (stop -m immediate) while the daemon applies the
 * migrations: a database at version 7, whose migration 008 is held half
 * way (its ALTER TABLE of orders waits for a test session reading the
 * table) when the server goes.  The migrations' one transaction is rolled
 * back by the crash; after the restart the daemon applies 8 to the newest
 * once, whole, and is ready.
 */
static void test_restart_during_migrations(void **state)
{
	(void)state;
	const char *db = "ops_mig_restart";
	char **files;
	size_t n = migration_files(&files);
	assert_true(n > 8);
	it_pg_createdb(db);
	it_db_script(db, "CREATE SCHEMA ordertrack;"
	                 "CREATE TABLE ordertrack.schema_migrations (version integer PRIMARY KEY,"
	                 " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())");
	for (size_t i = 0; i < 7; i++) {
		char rel[PATH_MAX], version[8], name[256];
		snprintf(rel, sizeof(rel), "sql/%s", files[i]);
		char *sql = it_source_file(rel);
		it_db_script(db, sql);
		free(sql);
		snprintf(version, sizeof(version), "%d", atoi(files[i]));
		snprintf(name, sizeof(name), "%.*s", (int)(strlen(files[i]) - 8), files[i] + 4);
		it_db_command(db,
		              "INSERT INTO ordertrack.schema_migrations (version, name)"
		              " VALUES ($1::integer, $2)",
		              version, name, NULL);
	}
	PGconn *pg = PQconnectdb(it_conninfo(db));
	if (PQstatus(pg) != CONNECTION_OK)
		it_fail("connect: %s", PQerrorMessage(pg));
	own_exec(pg, "BEGIN", NULL, NULL);
	own_exec(pg, "SELECT count(*) FROM ordertrack.orders", NULL, NULL);

	struct it_config cfg = {.name = "mig_restart",
	                        .dbname = db,
	                        .db_connections = 1,
	                        .extra_text = "alerts = { interval_s = 86400; };\n"};
	struct it_daemon *d = it_daemon_start(&cfg, false);
	long long deadline = it_now_ms() + IT_START_MS;
	while (it_db_long(db,
	                  "SELECT count(*) FROM pg_locks WHERE NOT granted"
	                  " AND relation = 'ordertrack.orders'::regclass",
	                  NULL) == 0) {
		if (it_now_ms() > deadline)
			it_fail("migration 008 did not come to wait for the orders table");
		it_sleep_ms(20);
	}
	it_pg_stop("immediate");
	PQfinish(pg);
	it_pg_start();
	it_log_expect(d, 0, "msg=ready", 60000);
	assert_int_equal(it_db_long(db, "SELECT count(*) FROM ordertrack.schema_migrations", NULL),
	                 (long)n);
	char *coll = it_db_value(db,
	                         "SELECT collation_name FROM information_schema.columns"
	                         " WHERE table_schema = 'ordertrack' AND table_name = 'orders'"
	                         " AND column_name = 'order_ref'",
	                         NULL);
	assert_string_equal(coll, "C");
	free(coll);
	assert_int_equal(log_count(d, 0, "msg=\"migration applied\" version=8 "), 1);
	assert_int_equal(log_count(d, 0, "msg=\"schema ready\""), 1);
	migration_files_free(files, n);
	it_daemon_stop_clean(d);
}

/*
 * A statement_timeout on the database (or the role) shorter than a
 * migration: the migrations run as one transaction, so a cancelled one
 * rolls all of them back and is tried again, cancelled again, for ever;
 * each try holding its locks until the timeout.  The daemon's migration
 * transaction sets the timeout off for itself (SET LOCAL), so it
 * completes; here under 1 ms, which nearly every statement of the
 * migrations outlasts.
 */
static void test_migrations_statement_timeout(void **state)
{
	(void)state;
	const char *db = "ops_stmt_timeout";
	char **files;
	size_t n = migration_files(&files);
	it_pg_createdb(db);
	it_db_command(db, "ALTER DATABASE ops_stmt_timeout SET statement_timeout = 1", NULL);
	struct it_config cfg = {.name = "stmt_timeout",
	                        .dbname = db,
	                        .extra_text = "alerts = { interval_s = 86400; };\n"};
	struct it_daemon *d = it_daemon_start(&cfg, false);
	off_t ready = it_log_wait(d, 0, "msg=\"schema ready\"", 15000);
	it_db_command("postgres", "ALTER DATABASE ops_stmt_timeout RESET statement_timeout", NULL);
	if (ready < 0)
		it_fail("the migrations did not complete under statement_timeout = 1 ms");
	char version[16];
	snprintf(version, sizeof(version), "%d", atoi(files[n - 1]));
	assert_int_equal(
	    it_db_long(db, "SELECT max(version) FROM ordertrack.schema_migrations", NULL),
	    atoi(version));
	migration_files_free(files, n);
	it_daemon_stop_clean(d);
}

/*
 * The daemon's statements count on READ COMMITTED: each takes a lock, then
 * reads what was committed before it got the lock.  A database (or role,
 * or server) whose default_transaction_isolation is repeatable read must
 * change nothing.  The test's own session plays a second daemon holding
 * each lock: the daemon's second lane at start-up must find the schema
 * the first one made, a batch must fold the event committed while it
 * waited for its order's lock, and the alert check must see the alerts
 * raised while it waited for its lock.  A webhook is configured (its
 * endpoint refuses): its lock query goes out on the auxiliary session from
 * the session's "up" callback, and must not go ahead of the settings.
 */
#define RR_WEBHOOK                                                                                 \
	"webhooks = ( { id = \"rr\"; url = \"http://127.0.0.1:1/hook\";"                           \
	" secret = \"rr-secret-0123456789\"; } );\n"
static void test_repeatable_read_default(void **state)
{
	(void)state;
	const char *db = "ops_rr";
	it_pg_createdb(db);
	it_db_command(db,
	              "ALTER DATABASE ops_rr SET default_transaction_isolation = 'repeatable read'",
	              NULL);
	struct it_config cfg = {.name = "rr",
	                        .dbname = db,
	                        .db_connections = 2,
	                        .extra_text = "alerts = { interval_s = 86400; };\n" RR_WEBHOOK};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	it_log_expect(d, 0, "msg=\"schema ready\" link=1", IT_START_MS);
	it_log_expect(d, 0, "msg=\"schema ready\" link=2", IT_START_MS);
	assert_true(it_log_wait(d, 0, "msg=\"database schema not ready\"", 0) < 0);

	/* The scenario's order.created, committed while the daemon waits to
	 * fold its order.confirmed. */
	char *scenario = it_source_file("tests/data/scenario-kivu-coffee.jsonl");
	char *second = strchr(scenario, '\n') + 1, *rest = strchr(second, '\n') + 1;
	second[-1] = '\0';
	rest[-1] = '\0';
	PGconn *pg = PQconnectdb(it_conninfo(db));
	if (PQstatus(pg) != CONNECTION_OK)
		it_fail("connect: %s", PQerrorMessage(pg));
	own_exec(pg, "BEGIN", NULL, NULL);
	own_exec(pg, "SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2, 7433))",
	         IT_EXPORTER, "KVH-2026-0142");
	own_exec(pg,
	         "INSERT INTO ordertrack.events"
	         " (exporter, event_id, type, order_ref, shipment_ref, occurred_at, body)"
	         " SELECT $1, j->>'id', j->>'type', j->>'order', j->>'shipment',"
	         " (j->>'occurred_at')::timestamptz, j FROM (SELECT $2::json AS j) x",
	         IT_EXPORTER, scenario);
	struct it_client *c = it_connect(d);
	it_hello(c, IT_EXPORTER, IT_TOKEN);
	it_send(c, second);
	wait_advisory_waiter(db);
	own_exec(pg, "COMMIT", NULL, NULL);
	json_t *r = it_read_json(c, IT_REPLY_MS);
	assert_string_equal(it_json_str(r, "result"), "stored");
	json_decref(r);
	char *status = it_db_value(
	    db, "SELECT status FROM ordertrack.orders WHERE order_ref = 'KVH-2026-0142'", NULL);
	assert_string_equal(status, "confirmed");
	free(status);

	/* The rest of the scenario leaves KVH-0157-A overdue and stale; another
	 * daemon raises both while this one's check waits for the lock. */
	size_t lines = 0;
	for (const char *p = rest; *p != '\0'; p++)
		lines += *p == '\n';
	it_send_raw(c, rest, strlen(rest));
	for (size_t i = 0; i < lines; i++) {
		r = it_read_json(c, IT_REPLY_MS);
		assert_string_equal(it_json_str(r, "result"), "stored");
		json_decref(r);
	}
	it_close(c);
	own_exec(pg, "BEGIN", NULL, NULL);
	own_exec(pg, "SELECT pg_advisory_xact_lock(7433002)", NULL, NULL);
	own_exec(pg,
	         "INSERT INTO ordertrack.alerts (exporter, order_ref, shipment_ref, kind)"
	         " SELECT $1, 'KVH-2026-0157', 'KVH-0157-A', k"
	         " FROM unnest(ARRAY['alert.overdue', 'alert.stale']) AS k",
	         IT_EXPORTER, NULL);
	off_t off = it_log_offset(d);
	cfg.extra_text = "alerts = { interval_s = 1; };\n" RR_WEBHOOK;
	it_daemon_rewrite(d, &cfg);
	kill(d->pid, SIGHUP);
	it_log_expect(d, off, "msg=\"config reloaded\"", IT_REPLY_MS);
	wait_advisory_waiter(db);
	own_exec(pg, "COMMIT", NULL, NULL);
	PQfinish(pg);
	/* That check and the next: neither raises what is open already. */
	assert_true(it_log_wait(d, off, "msg=\"query failed\"", 2500) < 0);
	assert_int_equal(it_db_long(db, "SELECT count(*) FROM ordertrack.alerts", NULL), 2);
	assert_int_equal(it_db_long(db,
	                            "SELECT count(*) FROM ordertrack.notifications"
	                            " WHERE kind LIKE 'alert.%'",
	                            NULL),
	                 0);
	it_daemon_stop_clean(d);
	free(scenario);
}

/*
 * The alert check runs every alerts.interval_s for good, while delivered
 * shipments pile up: it must find the shipments not delivered without
 * reading every row.  With 20,000 delivered shipments and one in transit
 * (analyzed, as autovacuum would), the check must scan ordertrack.shipments
 * through an index only, and still raise the in-transit one's alerts.
 */
static void test_alerts_skip_delivered(void **state)
{
	(void)state;
	const char *db = "ops_delivered";
	it_pg_createdb(db);
	struct it_config cfg = {
	    .name = "delivered", .dbname = db, .extra_text = "alerts = { interval_s = 86400; };\n"};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	it_daemon_stop_clean(d);
	it_db_command(db,
	              "INSERT INTO ordertrack.shipments"
	              " (exporter, order_ref, shipment_ref, status, milestone, last_event_at)"
	              " SELECT $1, 'OLD-' || i, 'S', 'delivered', 'delivered',"
	              " now() - interval '300 days' FROM generate_series(1, 20000) AS i"
	              " UNION ALL SELECT $1, 'NEW', 'S', 'in_transit', 'departed',"
	              " now() - interval '30 days'",
	              IT_EXPORTER, NULL);
	it_db_command(db, "ANALYZE ordertrack.shipments", NULL);

	PGconn *pg = PQconnectdb(it_conninfo(db));
	if (PQstatus(pg) != CONNECTION_OK)
		it_fail("connect: %s", PQerrorMessage(pg));
	own_exec(pg, "BEGIN", NULL, NULL);
	PGresult *r = PQexec(pg, "SELECT kind, order_ref FROM ordertrack.evaluate_alerts(48, 120)");
	assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
	assert_int_equal(PQntuples(r), 1);
	assert_string_equal(PQgetvalue(r, 0, 0), "alert.stale");
	assert_string_equal(PQgetvalue(r, 0, 1), "NEW");
	PQclear(r);
	/* This transaction's own scans of the table. */
	r = PQexec(pg, "SELECT seq_scan, idx_scan FROM pg_stat_xact_user_tables"
	               " WHERE relid = 'ordertrack.shipments'::regclass");
	assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
	assert_string_equal(PQgetvalue(r, 0, 0), "0");
	assert_true(atol(PQgetvalue(r, 0, 1)) > 0);
	PQclear(r);
	own_exec(pg, "ROLLBACK", NULL, NULL);
	PQfinish(pg);
}

/* Set fsync and full_page_writes for the whole cluster and wait until they read so. */
static void set_durability(const char *db, const char *fsync, const char *fpw)
{
	char sql[96];
	snprintf(sql, sizeof(sql), "ALTER SYSTEM SET fsync = %s", fsync);
	it_db_command(db, sql, NULL);
	snprintf(sql, sizeof(sql), "ALTER SYSTEM SET full_page_writes = %s", fpw);
	it_db_command(db, sql, NULL);
	free(it_db_value(db, "SELECT pg_reload_conf()", NULL));
	char want[64];
	snprintf(want, sizeof(want), "%s %s", fsync, fpw);
	long long deadline = it_now_ms() + 10000;
	for (;;) {
		char *got = it_db_value(
		    db,
		    "SELECT current_setting('fsync') || ' ' || current_setting('full_page_writes')",
		    NULL);
		bool done = strcmp(got, want) == 0;
		free(got);
		if (done)
			return;
		if (it_now_ms() > deadline)
			it_fail("the server did not take fsync and full_page_writes = %s", want);
		it_sleep_ms(50);
	}
}

/*
 * Durability: with fsync or full_page_writes off a commit, and so an ack,
 * may not survive a crash of the database host, and the daemon cannot
 * change that.  It must say so for every session it opens, and
 * ordertrackctl check must report it; with both on, neither says a word.
 */
static void test_durability_reported(void **state)
{
	(void)state;
	const char *db = "ops_durable";
	it_pg_createdb(db);
	struct it_config cfg = ops_config("durable", db);

	set_durability(db, "off", "on");
	struct it_daemon *d = it_daemon_start(&cfg, true);
	it_log_expect(d, 0, "msg=\"database not durable\" link=1 fsync=off full_page_writes=on",
	              IT_START_MS);
	it_log_expect(d, 0, "msg=\"database not durable\" link=2", IT_START_MS);
	json_t *j = CTL_JSON("-c", d->conf_path, "check");
	const json_t *dbj = json_object_get(j, "database");
	assert_true(json_is_false(json_object_get(dbj, "durable")));
	expect_str(dbj, "fsync", "off");
	json_decref(j);
	it_daemon_stop_clean(d);

	set_durability(db, "on", "on");
	d = it_daemon_start(&cfg, true);
	it_log_expect(d, 0, "msg=\"database connected\" link=2", IT_START_MS);
	j = CTL_JSON("-c", d->conf_path, "check");
	dbj = json_object_get(j, "database");
	assert_true(json_is_true(json_object_get(dbj, "durable")));
	expect_str(dbj, "full_page_writes", "on");
	json_decref(j);
	it_daemon_stop_clean(d);
	assert_int_equal(it_log_wait(d, 0, "database not durable", 0), -1);

	/* Back to the test cluster's own settings for the tests after this one. */
	it_db_command(db, "ALTER SYSTEM RESET fsync", NULL);
	it_db_command(db, "ALTER SYSTEM RESET full_page_writes", NULL);
	free(it_db_value(db, "SELECT pg_reload_conf()", NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_ctl_scenario, ops_teardown),
	    cmocka_unit_test_teardown(test_ctl_huge_numbers, ops_teardown),
	    cmocka_unit_test_teardown(test_tail_refused_by_limit, ops_teardown),
	    cmocka_unit_test_teardown(test_history_retraction_of_retraction, ops_teardown),
	    cmocka_unit_test_teardown(test_token_new, ops_teardown),
	    cmocka_unit_test_teardown(test_metrics, ops_teardown),
	    cmocka_unit_test_teardown(test_metrics_alerts_active, ops_teardown),
	    cmocka_unit_test_teardown(test_readyz_outage, ops_teardown),
	    cmocka_unit_test_teardown(test_readyz_draining, ops_teardown),
	    cmocka_unit_test_teardown(test_schema_newer_while_running, ops_teardown),
	    cmocka_unit_test_teardown(test_read_only_at_start, ops_teardown),
	    cmocka_unit_test_teardown(test_connection_limit, ops_teardown),
	    cmocka_unit_test_teardown(test_sd_notify, ops_teardown),
	    cmocka_unit_test_teardown(test_shipped_files, ops_teardown),
	    cmocka_unit_test_teardown(test_check_mode_conninfo_user, ops_teardown),
	    cmocka_unit_test_teardown(test_conninfo_password_not_shown, ops_teardown),
	    cmocka_unit_test_teardown(test_config_file_unusable, ops_teardown),
	    cmocka_unit_test_teardown(test_listen_unavailable, ops_teardown),
	    cmocka_unit_test_teardown(test_journal_priorities, ops_teardown),
	    cmocka_unit_test_teardown(test_secret_config_mode_warned, ops_teardown),
	    cmocka_unit_test_teardown(test_ctl_prune, ops_teardown),
	    cmocka_unit_test_teardown(test_ctl_encoding, ops_teardown),
	    cmocka_unit_test_teardown(test_operator_log_lines, ops_teardown),
	    cmocka_unit_test_teardown(test_tail_wrong_address, ops_teardown),
	    cmocka_unit_test_teardown(test_tail_token_hidden, ops_teardown),
	    cmocka_unit_test_teardown(test_daemon_long_options, ops_teardown),
	    cmocka_unit_test_teardown(test_check_role_without_grants, ops_teardown),
	    cmocka_unit_test_teardown(test_upgrade_keeps_stored_events, ops_teardown),
	    cmocka_unit_test_teardown(test_upgrade_from_whole_state, ops_teardown),
	    cmocka_unit_test_teardown(test_repeatable_read_default, ops_teardown),
	    cmocka_unit_test_teardown(test_migrations_statement_timeout, ops_teardown),
	    cmocka_unit_test_teardown(test_two_daemons_empty_database, ops_teardown),
	    cmocka_unit_test_teardown(test_restart_during_migrations, ops_teardown),
	    cmocka_unit_test_teardown(test_alerts_skip_delivered, ops_teardown),
	    cmocka_unit_test_teardown(test_durability_reported, ops_teardown),
	    cmocka_unit_test_teardown(test_admin_emfile_pause, ops_teardown),
	    cmocka_unit_test_teardown(test_pgcluster_fallback_base, ops_teardown),
	    cmocka_unit_test_teardown(test_pgcluster_planted_link, ops_teardown),
	};
	it_env_init("ops");
	return it_env_fini(cmocka_run_group_tests(tests, NULL, NULL));
}
