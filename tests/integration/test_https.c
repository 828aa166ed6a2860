/*
 * test_https.c - webhook deliveries to an https endpoint: TLS with the
 * certificate checked, signatures valid, failures retried in seq order,
 * nothing skipped.  The endpoint is a small Python server
 * (https_receiver.py) with a throwaway certificate made by openssl; the
 * daemon trusts it through SSL_CERT_FILE.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

#define SECRET "whsec-https-test-000111"

static pid_t receiver = -1;

/* Run a shell command; fail the test if it fails. */
static void run(const char *cmd)
{
	int rc = system(cmd);
	if (rc != 0)
		it_fail("command failed (%d): %s", rc, cmd);
}

/* Count lines of a file (0 when it does not exist yet). */
static int count_lines(const char *path)
{
	FILE *f = fopen(path, "r");
	int n = 0, ch;
	if (f == NULL)
		return 0;
	while ((ch = fgetc(f)) != EOF)
		n += ch == '\n';
	fclose(f);
	return n;
}

/* Make a certificate for 127.0.0.1 and localhost and start the receiver; returns its port. */
static int start_receiver(const char *dir, const char *out, int fails)
{
	char cmd[2048], cert[512], key[512], portfile[512], script[512];
	snprintf(cert, sizeof(cert), "%s/hook-cert.pem", dir);
	snprintf(key, sizeof(key), "%s/hook-key.pem", dir);
	snprintf(portfile, sizeof(portfile), "%s/hook.port", dir);
	snprintf(script, sizeof(script), "%s/tests/integration/https_receiver.py",
	         getenv("OT_SOURCE_ROOT"));
	snprintf(
	    cmd, sizeof(cmd),
	    "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1"
	    " -addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout %s -out %s 2>/dev/null",
	    key, cert);
	run(cmd);
	char fails_s[16];
	snprintf(fails_s, sizeof(fails_s), "%d", fails);
	unlink(portfile); /* an earlier receiver's */
	receiver = fork();
	assert_true(receiver >= 0);
	if (receiver == 0) {
		execlp("python3", "python3", script, cert, key, SECRET, fails_s, out, portfile,
		       (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 100; i++) {
		FILE *f = fopen(portfile, "r");
		if (f != NULL) {
			int port = 0;
			if (fscanf(f, "%d", &port) != 1)
				port = 0;
			fclose(f);
			if (port > 0) {
				setenv("SSL_CERT_FILE", cert, 1);
				return port;
			}
		}
		it_sleep_ms(100);
	}
	it_fail("the https receiver did not start");
	return 0;
}

/* Stop the receiver. */
static void stop_receiver(void)
{
	if (receiver > 0) {
		kill(receiver, SIGTERM);
		waitpid(receiver, NULL, 0);
		receiver = -1;
	}
}

/* Wait until path has at least n lines. */
static bool wait_lines(const char *path, int n, int timeout_ms)
{
	long long end = it_now_ms() + timeout_ms;
	while (it_now_ms() < end) {
		if (count_lines(path) >= n)
			return true;
		it_sleep_ms(100);
	}
	return false;
}

/*
 * Every notification of the exporter reaches the https endpoint at host
 * (an address, or a name the daemon resolves), in order; db is a new
 * database for it.
 */
static void https_webhook(const char *host, const char *db)
{
	char out[512], extra[1024];
	stop_receiver(); /* one a failed test left */
	snprintf(out, sizeof(out), "%s/%s.deliveries", it_tmpdir(), db);
	int port = start_receiver(it_tmpdir(), out, 2);
	snprintf(extra, sizeof(extra),
	         "webhooks = ( { id = \"secure\"; url = \"https://%s:%d/hook\";"
	         " secret = \"" SECRET "\"; exporters = [\"" IT_EXPORTER "\"]; } );\n"
	         "alerts = { interval_s = 86400; };",
	         host, port);
	it_pg_createdb(db);
	struct it_config cfg = {.name = db, .dbname = db, .extra_text = extra};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	unsetenv("SSL_CERT_FILE");

	struct it_client *c = it_connect(d);
	it_hello(c, IT_EXPORTER, IT_TOKEN);
	const char *types[] = {"shipment.checkpoint", "shipment.booked"};
	for (int i = 0; i < 2; i++) {
		char id[32];
		snprintf(id, sizeof(id), "https-%d", i);
		char *ev = it_event_line(id, types[i], "PO-HTTPS", "SH-1");
		it_send(c, ev);
		free(ev);
		it_expect_ack(c, id, "stored");
	}
	long n = it_db_long(db, "SELECT count(*) FROM ordertrack.notifications WHERE exporter = $1",
	                    IT_EXPORTER, NULL);
	assert_true(n >= 2);
	/* Two failures first (retried after 1 s and 2 s), then every one. */
	assert_true(wait_lines(out, (int)n + 2, 30000));
	FILE *f = fopen(out, "r");
	assert_non_null(f);
	long last_ok = 0;
	int failed = 0, delivered = 0;
	char line[256];
	while (fgets(line, sizeof(line), f) != NULL) {
		long delivery, seq;
		int status, sigok;
		assert_int_equal(sscanf(line, "%ld %d %d %ld", &delivery, &status, &sigok, &seq),
		                 4);
		assert_int_equal(sigok, 1);
		assert_int_equal(delivery, seq);
		if (status != 204) {
			failed++;
			continue;
		}
		/* In seq order, none skipped: each success is the next one. */
		assert_true(seq > last_ok);
		last_ok = seq;
		delivered++;
	}
	fclose(f);
	assert_int_equal(failed, 2);
	assert_int_equal(delivered, n);
	/* The receiver logs before it answers 204; the cursor moves after. */
	it_webhook_wait_cursor(db, "secure", last_ok, 30000);
	it_daemon_stop_clean(d);
	stop_receiver();
}

/* To an IP address: the certificate must name that address. */
static void test_https_webhook(void **state)
{
	(void)state;
	https_webhook("127.0.0.1", "https");
}

/* To a host name, resolved by the daemon (from the hosts file here). */
static void test_https_webhook_by_name(void **state)
{
	(void)state;
	https_webhook("localhost", "https_name");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_https_webhook, it_test_teardown),
	    cmocka_unit_test_teardown(test_https_webhook_by_name, it_test_teardown),
	};
	it_env_init("https");
	int rc = it_env_fini(cmocka_run_group_tests(tests, NULL, NULL));
	stop_receiver();
	return rc;
}
