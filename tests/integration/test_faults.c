/*
 * test_faults.c - faults from outside the daemon: poison events that pass
 * our validation but fail inside PostgreSQL, and clients that vanish
 * mid-stream.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

#define POISON_N      40
#define VANISH_CONNS  20
#define VANISH_EVENTS 300

/*
 * Every other event of a batch fails inside PostgreSQL (a CHECK added by
 * the test rejects their ids): the good ones are committed and acked, the
 * bad ones get an error naming the database's reason, none is retried
 * forever.
 */
static void test_poison_events(void **state)
{
	(void)state;
	it_pg_createdb("poison");
	struct it_config cfg = {.name = "poison", .dbname = "poison", .batch_max_delay_ms = 50};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	it_db_command("poison",
	              "ALTER TABLE ordertrack.events ADD CONSTRAINT test_poison"
	              " CHECK (event_id NOT LIKE 'poison-bad-%')",
	              NULL);
	struct it_client *c = it_connect(d);
	it_hello(c, IT_EXPORTER, IT_TOKEN);
	for (int i = 0; i < POISON_N; i++) {
		char id[48];
		snprintf(id, sizeof(id), "poison-%s-%03d", i % 2 ? "bad" : "good", i);
		char *ev = it_event_line(id, "shipment.checkpoint", "PO-POISON", "SH-1");
		it_queue(c, ev);
		free(ev);
	}
	c->want = POISON_N;
	assert_true(it_pump(&c, 1, 60000));
	assert_int_equal(c->n_lines, POISON_N);
	for (int i = 0; i < POISON_N; i++) {
		char id[48];
		snprintf(id, sizeof(id), "poison-%s-%03d", i % 2 ? "bad" : "good", i);
		if (i % 2 == 0) {
			it_check_ack(c->lines[i], id, "stored");
		} else {
			json_t *err = it_check_error(c->lines[i], id, "invalid_event");
			assert_non_null(strstr(it_json_str(err, "message"), "test_poison"));
			json_decref(err);
		}
	}
	assert_int_equal(it_db_long("poison", "SELECT count(*) FROM ordertrack.events", NULL),
	                 POISON_N / 2);
	/* The daemon is not stuck retrying: a new event goes straight through. */
	char *ev = it_event_line("poison-after", "shipment.checkpoint", "PO-POISON", "SH-1");
	it_send(c, ev);
	free(ev);
	it_expect_ack(c, "poison-after", "stored");
	it_daemon_stop_clean(d);
}

/* Close a client's socket with a reset (SO_LINGER 0), as a killed process would. */
static void vanish(struct it_client *c)
{
	struct linger lg = {1, 0};
	setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(c->fd);
	c->fd = -1;
	c->eof = true;
}

/*
 * 20 connections stream events; half of them vanish mid-stream (reset or
 * plain close).  The others get every ack, the daemon ends up with no
 * connection open, and (in the sanitizer build) exits without a leak.
 */
static void test_clients_vanish(void **state)
{
	(void)state;
	it_pg_createdb("vanish");
	struct it_config cfg = {.name = "vanish", .dbname = "vanish", .log_level = "info"};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	struct it_client *c[VANISH_CONNS];
	for (int k = 0; k < VANISH_CONNS; k++) {
		c[k] = it_connect(d);
		it_hello(c[k], IT_EXPORTER, IT_TOKEN);
		for (int i = 0; i < VANISH_EVENTS; i++) {
			char id[48], order[32];
			snprintf(id, sizeof(id), "vanish-%02d-%04d", k, i);
			snprintf(order, sizeof(order), "PO-VANISH-%02d", k);
			char *ev = it_event_line(id, "shipment.checkpoint", order, "SH-1");
			it_queue(c[k], ev);
			free(ev);
		}
		c[k]->want = VANISH_EVENTS;
	}
	/* Let the stream start, then drop the odd ones in the middle of it. */
	it_pump(c, VANISH_CONNS, 30);
	for (int k = 1; k < VANISH_CONNS; k += 2) {
		if (k % 4 == 1)
			vanish(c[k]);
		else
			shutdown(c[k]->fd, SHUT_RDWR);
	}
	struct it_client *alive[VANISH_CONNS / 2];
	for (int k = 0; k < VANISH_CONNS; k += 2)
		alive[k / 2] = c[k];
	assert_true(it_pump(alive, VANISH_CONNS / 2, 60000));
	for (int k = 0; k < VANISH_CONNS; k += 2) {
		assert_int_equal(c[k]->n_lines, VANISH_EVENTS);
		for (int i = 0; i < VANISH_EVENTS; i++) {
			char id[48];
			snprintf(id, sizeof(id), "vanish-%02d-%04d", k, i);
			it_check_ack(c[k]->lines[i], id, "stored");
		}
	}
	for (int k = 0; k < VANISH_CONNS; k++)
		it_close(c[k]);
	/* Every connection the daemon opened, it closed. */
	it_sleep_ms(500);
	it_daemon_stop_clean(d);
	FILE *f = fopen(d->log_path, "r");
	assert_non_null(f);
	char line[4096];
	int n_open = 0, n_closed = 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strstr(line, "msg=\"connection opened\""))
			n_open++;
		if (strstr(line, "msg=\"connection closed\""))
			n_closed++;
	}
	fclose(f);
	assert_int_equal(n_open, VANISH_CONNS);
	assert_int_equal(n_closed, VANISH_CONNS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_poison_events, it_test_teardown),
	    cmocka_unit_test_teardown(test_clients_vanish, it_test_teardown),
	};
	it_env_init("faults");
	return it_env_fini(cmocka_run_group_tests(tests, NULL, NULL));
}
