/* SPDX-License-Identifier: ISC */
/*
 * test_load.c - the load generator, tools/ordertrack-load, against the real
 * daemon and PostgreSQL.
 *
 * The benchmark (tests/bench/run) trusts what ordertrack-load reports and
 * what it sends, so this file checks both: a closed-loop run stores every
 * event it says it sent, and a second run with the same --run-id and --seed
 * is answered `duplicate` throughout; an open-loop run keeps to its
 * schedule; a refused hello makes a failed run; a run that gets no
 * answers reports every event it sent lost; --out writes the same lines
 * for the same seed, other lines for another, and those lines are the
 * realistic orders the issue asks for (every milestone, customs holds,
 * neighbouring events out of order); --self-check passes the daemon's own
 * parser over them.
 *
 * Environment, besides the harness's: OT_LOAD, the ordertrack-load binary.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "model.h"

#define LOAD_MS     120000 /* one ordertrack-load run, at most */
#define CLOSED_N    "2000" /* events of the closed-loop run */
#define OPEN_RATE   "1500" /* events/s of the open-loop run */
#define OPEN_SECS   "2"
#define OPEN_EVENTS 3000  /* OPEN_RATE x OPEN_SECS */
#define ORDERS_N    "120" /* events of each --open-orders run, one at a time */

/*
 * Run ordertrack-load with the arguments (NULL-terminated); its standard
 * output in *out (malloc'd).  Returns its exit status.
 */
static int load(char **out, ...)
{
	const char *bin = getenv("OT_LOAD");
	if (bin == NULL || bin[0] == '\0')
		it_fail("OT_LOAD is not set (meson test sets it)");
	va_list ap;
	va_start(ap, out);
	int status = it_runv(bin, "ordertrack-load", NULL, LOAD_MS, out, ap);
	va_end(ap);
	return status;
}

/* Parse a --json report, failing the test when it is not one object. */
static json_t *report(char *out)
{
	json_error_t e;
	json_t *j = json_loads(out, 0, &e);
	if (!json_is_object(j))
		it_fail("ordertrack-load --json printed no object (%s): %.300s", e.text, out);
	free(out);
	return j;
}

/* A number member of a report; fails the test when it is missing. */
static double real(const json_t *r, const char *key)
{
	const json_t *v = json_object_get(r, key);
	if (!json_is_number(v))
		it_fail("the report has no number %s", key);
	return json_number_value(v);
}

/* A count member of a report (exact as a double far beyond any run here). */
static long long num(const json_t *r, const char *key)
{
	return (long long)real(r, key);
}

/* A boolean member of a report; fails the test when it is missing. */
static bool flag(const json_t *r, const char *key)
{
	const json_t *v = json_object_get(r, key);
	if (!json_is_boolean(v))
		it_fail("the report has no boolean %s", key);
	return json_is_true(v);
}

/* The latency percentiles of a report must be in order and above zero. */
static void check_latencies(const json_t *r)
{
	static const char *const keys[] = {"latency_p50_ms", "latency_p90_ms", "latency_p99_ms",
	                                   "latency_p999_ms", "latency_max_ms"};
	double prev = 0;
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		double v = real(r, keys[i]);
		if (v <= 0 || v < prev)
			it_fail("%s is %g after %g: percentiles out of order", keys[i], v, prev);
		prev = v;
	}
	assert_true(real(r, "latency_mean_ms") > 0);
}

/* The UTC day now: --out's lines depend on it (their instants are in the past). */
static long utc_day(void)
{
	return (long)(time(NULL) / 86400);
}

/* Start a daemon with the harness's exporters; its port as text in port. */
static struct it_daemon *start_daemon(const char *name, char port[16])
{
	struct it_config cfg = {.name = name, .log_level = "info"};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	snprintf(port, 16, "%d", d->port);
	return d;
}

/*
 * A closed-loop run stores every event it reports, each order in full; the
 * same run again is answered duplicate throughout and stores nothing.
 */
static void test_closed_loop_then_resend(void **state)
{
	(void)state;
	char port[16], *out;
	struct it_daemon *d = start_daemon("closed", port);
	long day = utc_day();

	int rc = load(&out, "-p", port, "-e", IT_EXPORTER, "-t", IT_TOKEN, "-c", "4", "-w", "50",
	              "-n", CLOSED_N, "--run-id", "itc", "--json", (char *)NULL);
	json_t *r = report(out);
	assert_int_equal(rc, 0);
	assert_true(flag(r, "ok"));
	assert_true(flag(r, "complete"));
	assert_int_equal(num(r, "sent"), atoi(CLOSED_N));
	assert_int_equal(num(r, "acked"), atoi(CLOSED_N));
	assert_int_equal(num(r, "stored"), atoi(CLOSED_N));
	assert_int_equal(num(r, "duplicate"), 0);
	assert_int_equal(num(r, "errors"), 0);
	assert_int_equal(num(r, "lost"), 0);
	assert_true(real(r, "events_per_s") > 0);
	assert_true(real(r, "bytes_per_event") > 100);
	check_latencies(r);
	long orders = (long)num(r, "orders");
	json_decref(r);

	/* What it reports is what the database holds. */
	assert_int_equal(it_db_long(NULL,
	                            "SELECT count(*) FROM ordertrack.events"
	                            " WHERE exporter = $1 AND event_id LIKE 'itc.%'",
	                            IT_EXPORTER, NULL),
	                 atoi(CLOSED_N));
	assert_int_equal(it_db_long(NULL,
	                            "SELECT count(DISTINCT order_ref) FROM ordertrack.events"
	                            " WHERE event_id LIKE 'itc.%'",
	                            NULL),
	                 orders);
	/* Whole lifecycles: orders get delivered, and some wait at customs. */
	assert_true(it_db_long(NULL,
	                       "SELECT count(*) FROM ordertrack.shipments"
	                       " WHERE order_ref LIKE 'ORD-itc-%' AND status = 'delivered'",
	                       NULL) > 0);
	assert_true(it_db_long(NULL,
	                       "SELECT count(*) FROM ordertrack.events"
	                       " WHERE event_id LIKE 'itc.%' AND type = 'shipment.customs_hold'",
	                       NULL) > 0);

	rc = load(&out, "-p", port, "-e", IT_EXPORTER, "-t", IT_TOKEN, "-c", "4", "-w", "50", "-n",
	          CLOSED_N, "--run-id", "itc", "--json", (char *)NULL);
	r = report(out);
	if (utc_day() != day) {
		/* Midnight UTC came between the runs: other instants, so other
		 * events under the same ids.  Nothing to compare. */
		json_decref(r);
		skip();
	}
	assert_int_equal(rc, 0);
	assert_true(flag(r, "ok"));
	assert_int_equal(num(r, "acked"), atoi(CLOSED_N));
	assert_int_equal(num(r, "stored"), 0);
	assert_int_equal(num(r, "duplicate"), atoi(CLOSED_N));
	json_decref(r);
	assert_int_equal(it_db_long(NULL,
	                            "SELECT count(*) FROM ordertrack.events"
	                            " WHERE event_id LIKE 'itc.%'",
	                            NULL),
	                 atoi(CLOSED_N));
	it_daemon_stop_clean(d);
}

/*
 * An open-loop run sends rate x duration events on its schedule: the last
 * is due just before the duration ends, so the run cannot finish sooner,
 * however fast the daemon answers.
 */
static void test_open_loop_keeps_its_schedule(void **state)
{
	(void)state;
	char port[16], *out;
	struct it_daemon *d = start_daemon("open", port);

	int rc = load(&out, "-p", port, "-e", IT_EXPORTER, "-t", IT_TOKEN, "-c", "4", "-r",
	              OPEN_RATE, "-d", OPEN_SECS, "--run-id", "ito", "--json", (char *)NULL);
	json_t *r = report(out);
	assert_int_equal(rc, 0);
	assert_true(flag(r, "ok"));
	assert_int_equal(num(r, "sent"), OPEN_EVENTS);
	assert_int_equal(num(r, "stored"), OPEN_EVENTS);
	assert_true(real(r, "rate") == atof(OPEN_RATE));
	double elapsed = real(r, "elapsed_s");
	if (elapsed < atof(OPEN_SECS) * 0.95)
		it_fail("%d events at %s/s took %.3f s: the rate was not kept", OPEN_EVENTS,
		        OPEN_RATE, elapsed);
	check_latencies(r);
	json_decref(r);
	assert_int_equal(it_db_long(NULL,
	                            "SELECT count(*) FROM ordertrack.events"
	                            " WHERE event_id LIKE 'ito.%'",
	                            NULL),
	                 OPEN_EVENTS);
	it_daemon_stop_clean(d);
}

/*
 * A closed-loop run for a duration (-d without --rate) sends for that long,
 * then waits for its acks: at least a second, everything it sent acked
 * and stored, and the database holds exactly what it reports.
 */
static void test_closed_loop_for_a_duration(void **state)
{
	(void)state;
	char port[16], *out;
	struct it_daemon *d = start_daemon("closed_duration", port);

	int rc = load(&out, "-p", port, "-e", IT_EXPORTER, "-t", IT_TOKEN, "-c", "2", "-w", "20",
	              "-d", "1", "--run-id", "itd", "--json", (char *)NULL);
	json_t *r = report(out);
	assert_int_equal(rc, 0);
	assert_true(flag(r, "ok"));
	long long sent = num(r, "sent");
	assert_true(sent > 0);
	assert_int_equal(num(r, "acked"), sent);
	assert_int_equal(num(r, "stored"), sent);
	assert_int_equal(num(r, "lost"), 0);
	if (real(r, "elapsed_s") < 0.95)
		it_fail("-d 1 ended after %.3f s", real(r, "elapsed_s"));
	json_decref(r);
	assert_int_equal(it_db_long(NULL,
	                            "SELECT count(*) FROM ordertrack.events"
	                            " WHERE event_id LIKE 'itd.%'",
	                            NULL),
	                 sent);
	it_daemon_stop_clean(d);
}

/* A refused hello is a failed run that sent nothing. */
static void test_refused_hello_fails(void **state)
{
	(void)state;
	char port[16], *out;
	struct it_daemon *d = start_daemon("refused", port);

	int rc = load(&out, "-p", port, "-e", IT_EXPORTER, "-t", "not-the-token", "-c", "2", "-n",
	              "100", "--run-id", "itr", "--json", (char *)NULL);
	json_t *r = report(out);
	assert_int_equal(rc, 1);
	assert_false(flag(r, "ok"));
	assert_false(flag(r, "complete"));
	assert_int_equal(num(r, "sent"), 0);
	assert_int_equal(num(r, "lost"), 100);
	json_decref(r);
	assert_int_equal(it_db_long(NULL,
	                            "SELECT count(*) FROM ordertrack.events"
	                            " WHERE event_id LIKE 'itr.%'",
	                            NULL),
	                 0);
	it_daemon_stop_clean(d);
}

/*
 * The child of mute_daemon(): welcome every connection at its first bytes,
 * then read and drop everything, answering nothing.  Never returns.
 */
static void mute_daemon_serve(int lfd)
{
	static const char welcome[] = "{\"type\":\"welcome\",\"protocol\":1}\n";
	struct pollfd p[16] = {{.fd = lfd, .events = POLLIN}};
	bool welcomed[16] = {false};
	nfds_t n = 1;
	char buf[65536];

	for (;;) {
		if (poll(p, n, -1) < 0)
			_exit(1);
		if ((p[0].revents & POLLIN) && n < 16) {
			int fd = accept(lfd, NULL, NULL);
			if (fd >= 0) {
				welcomed[n] = false;
				p[n++] = (struct pollfd){.fd = fd, .events = POLLIN};
			}
		}
		for (nfds_t i = 1; i < n; i++) {
			if (!(p[i].revents & (POLLIN | POLLHUP)))
				continue;
			ssize_t r = read(p[i].fd, buf, sizeof(buf));
			if (r <= 0) {
				p[i].fd = -1; /* poll skips it from now on */
				continue;
			}
			if (!welcomed[i] && write(p[i].fd, welcome, sizeof(welcome) - 1) > 0)
				welcomed[i] = true;
		}
	}
}

/*
 * A stand-in for a daemon that says welcome and then never answers an
 * event, listening on 127.0.0.1; its port as text in port.  Returns the
 * pid of the process that serves it.
 */
static pid_t mute_daemon(char port[16])
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(lfd, 16) != 0 ||
	    getsockname(lfd, (struct sockaddr *)&sa, &len) != 0)
		it_fail("cannot listen on 127.0.0.1");
	snprintf(port, 16, "%d", ntohs(sa.sin_port));
	pid_t pid = fork();
	if (pid < 0)
		it_fail("fork failed");
	if (pid == 0)
		mute_daemon_serve(lfd);
	close(lfd);
	return pid;
}

/*
 * A run whose events are never answered stalls, and every event it sent
 * is reported lost: the report accounts for all it sent, as acked, an
 * error or lost, not only for the replies that came.
 */
static void test_stall_reports_unanswered_as_lost(void **state)
{
	(void)state;
	char port[16], *out;
	pid_t mute = mute_daemon(port);

	int rc = load(&out, "-p", port, "-c", "2", "-n", "100", "--timeout", "1", "--run-id", "itm",
	              "--json", (char *)NULL);
	kill(mute, SIGKILL);
	waitpid(mute, NULL, 0);
	json_t *r = report(out);
	assert_int_equal(rc, 1);
	assert_false(flag(r, "ok"));
	assert_false(flag(r, "complete"));
	assert_int_equal(num(r, "sent"), 100);
	assert_int_equal(num(r, "acked"), 0);
	assert_int_equal(num(r, "errors"), 0);
	assert_int_equal(num(r, "unsent"), 0);
	assert_int_equal(num(r, "lost"), 100);
	json_decref(r);
}

/*
 * Run ordertrack-load for one event, with the arguments (NULL-terminated)
 * after "-p PORT", against a listener of the test's own that reads its
 * hello and answers nothing.  env (may be NULL) is "NAME=value" to set or
 * "NAME" to unset.  Returns the hello line (malloc'd), and the load's
 * command line as ps shows it, NULs made spaces, in cmdline.
 */
static char *hello_of_load(const char *const env[], char cmdline[4096], ...)
{
	const char *bin = getenv("OT_LOAD");
	if (bin == NULL || bin[0] == '\0')
		it_fail("OT_LOAD is not set (meson test sets it)");
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(lfd, 4) != 0 ||
	    getsockname(lfd, (struct sockaddr *)&sa, &len) != 0)
		it_fail("cannot listen on 127.0.0.1");
	char port[16];
	snprintf(port, sizeof(port), "%d", ntohs(sa.sin_port));
	const char *argv[24] = {"ordertrack-load", "-p", port, "-c", "1", "-n", "1"};
	int argc = 7;
	va_list ap;
	va_start(ap, cmdline);
	for (const char *a; argc < 23 && (a = va_arg(ap, const char *)) != NULL;)
		argv[argc++] = a;
	va_end(ap);
	argv[argc] = NULL;

	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		it_fail("fork failed");
	if (pid == 0) {
		for (size_t i = 0; env != NULL && env[i] != NULL; i++) {
			const char *eq = strchr(env[i], '=');
			if (eq == NULL) {
				unsetenv(env[i]);
			} else {
				char name[64];
				snprintf(name, sizeof(name), "%.*s", (int)(eq - env[i]), env[i]);
				setenv(name, eq + 1, 1);
			}
		}
		execv(bin, (char *const *)argv);
		_exit(127);
	}
	struct pollfd p = {.fd = lfd, .events = POLLIN};
	if (poll(&p, 1, 10000) != 1)
		it_fail("ordertrack-load did not connect within 10 s");
	int fd = accept(lfd, NULL, NULL);
	close(lfd);
	if (fd < 0)
		it_fail("accept failed");
	struct timeval tv = {10, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	char line[1024];
	size_t n = 0;
	while (n < sizeof(line) - 1 && memchr(line, '\n', n) == NULL) {
		ssize_t r = read(fd, line + n, sizeof(line) - 1 - n);
		if (r <= 0)
			it_fail("no hello line from ordertrack-load");
		n += (size_t)r;
	}
	line[n] = '\0';

	/* The hello is sent: the options were read long ago. */
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	int cfd = open(path, O_RDONLY);
	if (cfd < 0)
		it_fail("open %s failed", path);
	ssize_t c = read(cfd, cmdline, 4095);
	close(cfd);
	if (c <= 0)
		it_fail("read %s failed", path);
	for (ssize_t i = 0; i < c; i++)
		if (cmdline[i] == '\0')
			cmdline[i] = ' ';
	cmdline[c] = '\0';
	close(fd);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	return strdup(line);
}

/* Fail unless the hello says token and the command line does not. */
static void expect_token(const char *how, char *hello, const char *cmdline, const char *token)
{
	char want[128];
	snprintf(want, sizeof(want), "\"token\":\"%s\"", token);
	if (strstr(hello, want) == NULL)
		it_fail("%s: the hello does not say %s: %s", how, want, hello);
	if (strstr(cmdline, token) != NULL)
		it_fail("%s: the token is in the command line ps shows: %s", how, cmdline);
	free(hello);
}

/*
 * The token: --token is written over in the command line that ps and
 * /proc/PID/cmdline show every user of the host (the hello still carries
 * it), and OT_LOAD_TOKEN and --token-file give it without the command
 * line at all; --token with --token-file, or an empty file, is a usage
 * error.
 */
static void test_token_not_in_ps(void **state)
{
	(void)state;
	char cmdline[4096], *out;
	const char *const no_env[] = {"OT_LOAD_TOKEN", NULL};
	const char *const env[] = {"OT_LOAD_TOKEN=token-from-env-3b1e", NULL};

	char *h = hello_of_load(no_env, cmdline, "-t", "token-in-argv-9c2d", (char *)NULL);
	expect_token("--token", h, cmdline, "token-in-argv-9c2d");
	if (strstr(cmdline, "--token") == NULL && strstr(cmdline, "-t") == NULL)
		it_fail("the command line lost the option itself: %s", cmdline);

	h = hello_of_load(env, cmdline, (char *)NULL);
	expect_token("OT_LOAD_TOKEN", h, cmdline, "token-from-env-3b1e");

	char file[PATH_MAX];
	snprintf(file, sizeof(file), "%s/load-token", it_tmpdir());
	FILE *f = fopen(file, "w");
	assert_non_null(f);
	fputs("token-from-file-77a0\n", f);
	fclose(f);
	/* The file wins over the environment. */
	h = hello_of_load(env, cmdline, "--token-file", file, (char *)NULL);
	expect_token("--token-file", h, cmdline, "token-from-file-77a0");

	assert_int_equal(load(&out, "--token-file", file, "-t", "x", "--self-check", (char *)NULL),
	                 64);
	free(out);
	f = fopen(file, "w");
	assert_non_null(f);
	fclose(f);
	assert_int_equal(load(&out, "--token-file", file, (char *)NULL), 64);
	free(out);
	snprintf(file, sizeof(file), "%s/no-such-token-file", it_tmpdir());
	assert_int_equal(load(&out, "--token-file", file, (char *)NULL), 64);
	free(out);
}

/* The lines of --out for a seed (malloc'd); the run must exit 0. */
static char *out_lines(const char *seed, const char *n)
{
	char *out;
	int rc = load(&out, "--out", "-", "-n", n, "--run-id", "itx", "--seed", seed, (char *)NULL);
	if (rc != 0)
		it_fail("ordertrack-load --out exited %d", rc);
	return out;
}

/*
 * Walk the lines, which --out writes one whole order after another: count
 * the types, and count the pairs in which a shipment milestone comes after
 * a later one of the same order (a swap).
 */
static void survey(char *text, size_t *n_lines, size_t *n_holds, size_t *n_delivered,
                   size_t *n_swapped)
{
	char order_was[128] = "";
	int last_rank = 0;
	*n_lines = *n_holds = *n_delivered = *n_swapped = 0;
	for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
		json_error_t e;
		json_t *ev = json_loads(line, 0, &e);
		const char *type = it_json_str(ev, "type"), *order = it_json_str(ev, "order");
		if (type == NULL || order == NULL)
			it_fail("--out line %zu is no event (%s): %.200s", *n_lines + 1, e.text,
			        line);
		(*n_lines)++;
		*n_holds += strcmp(type, "shipment.customs_hold") == 0;
		*n_delivered += strcmp(type, "shipment.delivered") == 0;
		if (strcmp(order, order_was) != 0) {
			snprintf(order_was, sizeof(order_was), "%s", order);
			last_rank = 0;
		}
		int rank = model_milestone_rank(type);
		if (rank > 0) {
			*n_swapped += rank < last_rank;
			last_rank = rank;
		}
		json_decref(ev);
	}
}

/*
 * --out is a function of --run-id, --seed and the day; and its orders are
 * realistic: delivered, some held at customs, some with two neighbouring
 * milestones swapped.
 */
static void test_out_is_repeatable_and_realistic(void **state)
{
	(void)state;
	long day = utc_day();
	char *a = out_lines("7", "3000"), *b = out_lines("7", "3000"), *c = out_lines("8", "3000");
	if (utc_day() != day) {
		free(a);
		free(b);
		free(c);
		skip(); /* midnight UTC between the runs moves every instant */
	}
	assert_string_equal(a, b);
	assert_string_not_equal(a, c);

	size_t lines, holds, delivered, swapped;
	survey(a, &lines, &holds, &delivered, &swapped);
	assert_int_equal(lines, 3000);
	assert_true(delivered > 0);
	assert_true(holds > 0);
	assert_true(swapped > 0);
	free(a);
	free(b);
	free(c);
}

/* Send ORDERS_N events of one seed with --open-orders k, one at a time. */
static void send_open_orders(const char *port, const char *run_id, const char *k)
{
	char *out;
	int rc =
	    load(&out, "-p", port, "-e", IT_EXPORTER, "-t", IT_TOKEN, "-c", "1", "-w", "1", "-n",
	         ORDERS_N, "--open-orders", k, "--run-id", run_id, "--json", (char *)NULL);
	json_t *r = report(out);
	assert_int_equal(rc, 0);
	assert_true(flag(r, "ok"));
	assert_int_equal(num(r, "stored"), atoi(ORDERS_N));
	assert_int_equal(num(r, "open_orders"), atoi(k));
	json_decref(r);
}

/* How many orders the first three events of a run belong to, as stored. */
static long orders_of_first_three(const char *run_id)
{
	char like[32];
	snprintf(like, sizeof(like), "%s.%%", run_id);
	return it_db_long(NULL,
	                  "SELECT count(DISTINCT order_ref) FROM (SELECT order_ref"
	                  " FROM ordertrack.events WHERE event_id LIKE $1"
	                  " ORDER BY received_at LIMIT 3) s",
	                  like, NULL);
}

/* The statuses of a run's orders and shipments, counted, as one text. */
static char *statuses(const char *run_id)
{
	char like[32];
	snprintf(like, sizeof(like), "ORD-%s-%%", run_id);
	return it_db_value(NULL,
	                   "SELECT (SELECT string_agg(status || '=' || n, ',' ORDER BY status)"
	                   " FROM (SELECT status, count(*) n FROM ordertrack.orders"
	                   " WHERE order_ref LIKE $1 GROUP BY status) o) || ' / ' ||"
	                   " (SELECT string_agg(status || '=' || n, ',' ORDER BY status)"
	                   " FROM (SELECT status, count(*) n FROM ordertrack.shipments"
	                   " WHERE order_ref LIKE $1 GROUP BY status) s)",
	                   like, NULL);
}

/*
 * --open-orders k interleaves k orders per connection, an event of each in
 * turn, as live traffic does (each event then meets its order's earlier
 * ones already stored); 1 sends whole orders.  One event per transaction
 * (-c 1 -w 1), so the events' received_at is their sending order.  The
 * same orders end in the same statuses either way, and usage is checked.
 */
static void test_open_orders_interleave(void **state)
{
	(void)state;
	char port[16], *out;
	struct it_daemon *d = start_daemon("interleave", port);

	send_open_orders(port, "itw", "1");
	send_open_orders(port, "iti", "4");
	assert_int_equal(orders_of_first_three("itw"), 1);
	assert_int_equal(orders_of_first_three("iti"), 3);
	char *whole = statuses("itw"), *interleaved = statuses("iti");
	assert_non_null(strstr(whole, "delivered="));
	assert_string_equal(whole, interleaved);
	free(whole);
	free(interleaved);

	assert_int_equal(load(&out, "--open-orders", "0", "-n", "1", (char *)NULL), 64);
	free(out);
	assert_int_equal(load(&out, "--open-orders", "257", "-n", "1", (char *)NULL), 64);
	free(out);
	it_daemon_stop_clean(d);
}

/* Every generated event passes the daemon's own parser and validation. */
static void test_self_check(void **state)
{
	(void)state;
	char *out;
	int rc = load(&out, "--self-check", "-n", "20000", "--run-id", "its", (char *)NULL);
	free(out);
	assert_int_equal(rc, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_closed_loop_then_resend, it_test_teardown),
	    cmocka_unit_test_teardown(test_open_loop_keeps_its_schedule, it_test_teardown),
	    cmocka_unit_test_teardown(test_closed_loop_for_a_duration, it_test_teardown),
	    cmocka_unit_test_teardown(test_refused_hello_fails, it_test_teardown),
	    cmocka_unit_test_teardown(test_stall_reports_unanswered_as_lost, it_test_teardown),
	    cmocka_unit_test_teardown(test_token_not_in_ps, it_test_teardown),
	    cmocka_unit_test_teardown(test_out_is_repeatable_and_realistic, it_test_teardown),
	    cmocka_unit_test_teardown(test_open_orders_interleave, it_test_teardown),
	    cmocka_unit_test_teardown(test_self_check, it_test_teardown),
	};
	it_env_init("load");
	return it_env_fini(cmocka_run_group_tests(tests, NULL, NULL));
}
