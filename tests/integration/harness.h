/*
 * harness.h - run the real ordertrackd against a real PostgreSQL.
 *
 * Each test executable gets one temp dir with its own PostgreSQL cluster
 * (through tools/pgcluster) and a database "ordertrack".  A test starts one
 * or more daemons with a config it shapes through struct it_config, talks to
 * them over TCP with struct it_client, and checks the rows with the it_db_*
 * helpers.  Every helper that can go wrong fails the running cmocka test
 * itself, printing what it expected, what came back and where the daemon's
 * log is, so tests read as a list of expectations.
 *
 * Daemons and clients are tracked: it_test_teardown() kills what a failed
 * test left behind and restarts PostgreSQL if a test stopped it, so the next
 * test starts clean.  The temp dir is removed at the end unless a test
 * failed; then its path is printed.
 *
 * Environment: OT_DAEMON (the ordertrackd binary), OT_PGCLUSTER (the
 * pgcluster script), optional OT_PG_TEMPLATE (a cluster to copy), TMPDIR and
 * OT_TEST_FILTER (run only the tests whose names match it).
 * Limits: single-threaded; one cluster per executable.
 */
#ifndef OT_IT_HARNESS_H
#define OT_IT_HARNESS_H

#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Exporters present in every config the harness writes. */
#define IT_EXPORTER       "kivu-coffee"
#define IT_EXPORTER_NAME  "Kivu Hills Coffee Cooperative"
#define IT_TOKEN          "kivu-7f3a9c51-token"
#define IT_EXPORTER2      "andes-cacao"
#define IT_EXPORTER2_NAME "Andes Cacao Exporters S.A."
#define IT_TOKEN2         "andes-51be02d4-token"

#define IT_DB        "ordertrack" /* database created at start-up */
#define IT_REPLY_MS  10000        /* default wait for one reply line */
#define IT_START_MS  20000        /* wait for msg=listening / msg=ready */
#define IT_STOP_MS   20000        /* wait for the daemon to exit */
#define IT_MAX_EXTRA 4            /* extra exporters a config can carry */

/* One exporter entry; the harness writes sha256(token) into the config. */
struct it_exporter {
	const char *id;
	const char *name;
	const char *token;
};

/*
 * The knobs a test can set in the daemon's config.  Zero or NULL means
 * "leave the key out" so the daemon's default applies.
 */
struct it_config {
	const char *name;   /* file label: <tmp>/<name>.conf and .log; required */
	const char *dbname; /* NULL: IT_DB */
	const char *listen; /* the one listen address; NULL: "127.0.0.1:0" */
	/* JOURNAL_STREAM for the daemon, as systemd sets it; NULL: unset. */
	const char *journal_stream;
	struct it_exporter extra[IT_MAX_EXTRA];
	size_t n_extra;
	bool no_default_exporters; /* leave out IT_EXPORTER and IT_EXPORTER2 */
	int max_connections;
	int max_line_bytes;
	int idle_timeout_s;
	int window;
	int max_pending;
	int max_connections_per_ip; /* 0: the daemon's default, like the others */
	int hello_timeout_s;
	int line_timeout_s;
	int max_failed_hellos;
	int keepalive_s; /* limits.keepalive_s; 0: the default; -1: 0 (off) */
	int batch_max_events;
	int batch_max_delay_ms;
	int db_connections;    /* database.connections; 0: the daemon's default */
	const char *log_level; /* NULL: "debug" */
	/* operators = ( ... ), written like exporters; none when n_operators is 0. */
	struct it_exporter operators[IT_MAX_EXTRA];
	size_t n_operators;
	/*
	 * libconfig text appended as it is, for groups the fields above do not
	 * cover (documents, webhooks, alerts); NULL: nothing.
	 */
	const char *extra_text;
};

/* A running (or exited) ordertrackd. */
struct it_daemon {
	pid_t pid;
	bool exited; /* reaped; status is valid */
	int status;  /* waitpid status */
	int port;    /* from msg=listening */
	char conf_path[PATH_MAX];
	char log_path[PATH_MAX];
	struct it_config cfg;   /* as last written */
	struct it_daemon *next; /* harness registry */
};

/* Result of a read that may legitimately not produce a line. */
enum it_read {
	IT_READ_LINE,    /* *line set, malloc'd */
	IT_READ_EOF,     /* the daemon closed the connection */
	IT_READ_TIMEOUT, /* nothing within the time given */
};

/* One TCP connection to a daemon. */
struct it_client {
	int fd;
	struct it_daemon *d; /* for messages: its log path */
	char *in;            /* bytes read; in[in_off..in_len) not yet taken */
	size_t in_off, in_len, in_cap;
	bool eof;
	char *out; /* queued by it_queue, sent by it_pump */
	size_t out_len, out_off, out_cap;
	char **lines; /* lines collected by it_pump */
	size_t n_lines, lines_cap;
	size_t want;            /* it_pump: lines wanted from this client */
	struct it_client *next; /* harness registry */
};

/* --- process-wide set-up, called from main() around the cmocka run --- */

/* Create the temp dir and the cluster; exits the process when that fails. */
void it_env_init(const char *label);
/*
 * Stop the cluster.  All passed (failed == 0): remove the temp dir and
 * return 0.  Otherwise keep it, list the failures and _exit(1).
 */
int it_env_fini(int failed);
/* cmocka teardown for every test: kill leftovers, restart PostgreSQL. */
int it_test_teardown(void **state);

const char *it_tmpdir(void);
/* libpq conninfo for a database of the cluster (NULL: IT_DB). */
const char *it_conninfo(const char *dbname);

/* --- PostgreSQL --- */

void it_pg_createdb(const char *name);
void it_pg_stop(const char *mode);
/* Start stopping the cluster in the background; returns the pgcluster pid. */
pid_t it_pg_stop_begin(const char *mode);
/* True once that stop has finished (fails the test if it failed). */
bool it_pg_stop_done(pid_t pid);
void it_pg_start(void);
bool it_pg_running(void);

/* The single value of a one-row, one-column query; NULL-terminated text params. */
char *it_db_value(const char *dbname, const char *sql, ...) __attribute__((sentinel));
/* it_db_value as a number. */
long it_db_long(const char *dbname, const char *sql, ...) __attribute__((sentinel));
/* Rows in ordertrack.events of a database. */
long it_db_rows(const char *dbname);
/* A PostgreSQL text[] literal of the strings, for "= ANY($1::text[])". */
char *it_pg_array(char *const *items, size_t n);
/* Run a statement that returns no rows (DDL, UPDATE); NULL-terminated text params. */
void it_db_command(const char *dbname, const char *sql, ...) __attribute__((sentinel));
/* Run a script of several statements, without parameters (a migration file). */
void it_db_script(const char *dbname, const char *sql);

/* --- the daemon --- */

/* Write cfg as a libconfig file at path. */
void it_config_write(const struct it_config *cfg, const char *path);
/* Start ordertrackd; waits for msg=listening and, if asked, msg=ready. */
struct it_daemon *it_daemon_start(const struct it_config *cfg, bool wait_ready);
/* Rewrite the daemon's config file (atomically) with cfg. */
void it_daemon_rewrite(struct it_daemon *d, const struct it_config *cfg);
/* Write raw text as the daemon's config file (for broken configs). */
void it_daemon_rewrite_raw(struct it_daemon *d, const char *text);
/* Send sig; wait up to timeout_ms for exit; returns the wait status. */
int it_daemon_stop(struct it_daemon *d, int sig, int timeout_ms);
/* Wait up to timeout_ms for the daemon to exit by itself; returns the wait status. */
int it_daemon_wait(struct it_daemon *d, int timeout_ms);
/* SIGTERM, and fail unless the daemon exits 0 within IT_STOP_MS. */
#define it_daemon_stop_clean(d) (it_at(__FILE__, __LINE__), it_daemon_stop_clean_(d))
void it_daemon_stop_clean_(struct it_daemon *d);
/* True while the process has not exited (reaps it when it has). */
bool it_daemon_alive(struct it_daemon *d);

/* Bytes in the daemon's log now, a position for it_log_wait. */
off_t it_log_offset(const struct it_daemon *d);
/*
 * Wait for a complete log line holding needle, at or after from.  Returns
 * the offset just past that line, or -1 after timeout_ms.
 */
off_t it_log_wait(struct it_daemon *d, off_t from, const char *needle, int timeout_ms);
/* Like it_log_wait but fails the test on timeout. */
#define it_log_expect(d, f, n, t) (it_at(__FILE__, __LINE__), it_log_expect_(d, f, n, t))
off_t it_log_expect_(struct it_daemon *d, off_t from, const char *needle, int timeout_ms);
/* Print the last lines of the daemon's log to stderr. */
void it_log_tail(const struct it_daemon *d, int nlines);

/* --- clients --- */

struct it_client *it_connect(struct it_daemon *d);
/*
 * The same from a given loopback address, bound first: one of 127.0.0.0/8,
 * or "::1" to connect to a daemon listening on [::1].
 */
struct it_client *it_connect_from(struct it_daemon *d, const char *source);
/*
 * A blocking socket connected to d with a 4 KiB receive buffer, for a peer
 * that is slow to read its replies; fails the test if it cannot be made.
 */
int it_connect_small_rcvbuf(const struct it_daemon *d);
void it_close(struct it_client *c);
/* Send a line, appending "\n". */
void it_send(struct it_client *c, const char *line);
void it_sendf(struct it_client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Send bytes as they are; reads replies into the buffer meanwhile. */
void it_send_raw(struct it_client *c, const void *buf, size_t len);
/* Read one reply line or fail the test. */
char *it_read_line(struct it_client *c, int timeout_ms);
/* Read one reply line, or report EOF or timeout. */
enum it_read it_try_read_line(struct it_client *c, int timeout_ms, char **line);
/* Fail unless the daemon closes the connection within timeout_ms. */
void it_expect_eof(struct it_client *c, int timeout_ms);
/* Read one reply and parse it; fail unless it is a JSON object. */
json_t *it_read_json(struct it_client *c, int timeout_ms);

/* Queue a line for it_pump. */
void it_queue(struct it_client *c, const char *line);
/*
 * Drive many clients at once: write what is queued, collect reply lines
 * into c->lines, until every client has c->want lines (true) or timeout_ms
 * passed (false).  A client at EOF stops counting.
 */
bool it_pump(struct it_client **cs, size_t n, int timeout_ms);

/* --- reply checks (macros so a failure names the test's line) --- */

void it_at(const char *file, int line);
void it_hello_(struct it_client *c, const char *exporter, const char *token);
void it_expect_ack_(struct it_client *c, const char *id, const char *result);
json_t *it_expect_error_(struct it_client *c, const char *id, const char *code)
    __attribute__((warn_unused_result));
void it_expect_pong_(struct it_client *c);
void it_check_ack_(const char *line, const char *id, const char *result);
json_t *it_check_error_(const char *line, const char *id, const char *code)
    __attribute__((warn_unused_result));

/* Pass as the id of it_expect_error to accept any id (string or null). */
extern const char it_id_any[];

/* Say hello and require the welcome. */
#define it_hello(c, e, t) (it_at(__FILE__, __LINE__), it_hello_(c, e, t))
/* Say hello as an operator and require the welcome naming it. */
#define it_hello_operator(c, o, t) (it_at(__FILE__, __LINE__), it_hello_operator_(c, o, t))
void it_hello_operator_(struct it_client *c, const char *operator_id, const char *token);
/* Require {"type":"ack","id":id,"result":result}. */
#define it_expect_ack(c, i, r) (it_at(__FILE__, __LINE__), it_expect_ack_(c, i, r))
/* Require an error with code and id (NULL: the id must be JSON null); returns it. */
#define it_expect_error(c, i, k) (it_at(__FILE__, __LINE__), it_expect_error_(c, i, k))
#define it_expect_pong(c)        (it_at(__FILE__, __LINE__), it_expect_pong_(c))
/* The same checks on a line already read. */
#define it_check_ack(l, i, r)   (it_at(__FILE__, __LINE__), it_check_ack_(l, i, r))
#define it_check_error(l, i, k) (it_at(__FILE__, __LINE__), it_check_error_(l, i, k))

/* Fail the running test with a message, the daemon's log path and tail. */
#define it_fail(...) it_fail_at(__FILE__, __LINE__, __VA_ARGS__)
void it_fail_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));

/* --- other programs --- */

/*
 * Run bin with argv (argv[0] first, NULL-terminated).  env, when not NULL,
 * is a NULL-terminated list of "NAME=value" to set and "NAME" to unset in
 * the program's environment.  Its standard output goes to *out (malloc'd,
 * NUL-terminated); its standard error is the test's.  Fails the test when
 * the program does not exit within timeout_ms (and kills it).  Returns its
 * exit status, or -1 when a signal ended it.
 */
int it_run(const char *bin, const char *const argv[], const char *const env[], int timeout_ms,
           char **out);
/* it_run with argv[0] = name and the rest from ap, NULL-terminated (at most 38). */
int it_runv(const char *bin, const char *name, const char *const env[], int timeout_ms, char **out,
            va_list ap);

/* --- events --- */

/* occurred_at used by it_event_line; an instant well in the past. */
#define IT_OCCURRED_AT "2026-11-20T09:15:30.250+02:00"

/*
 * The compact JSON text of a valid event with IT_OCCURRED_AT (malloc'd):
 * the envelope plus what the type requires.  shipment is for shipment.*
 * (required) and document.issued (optional) only; NULL leaves it out.
 */
char *it_event_line(const char *id, const char *type, const char *order, const char *shipment);
/* The same with occurred_at set to when. */
char *it_event_line_at(const char *id, const char *type, const char *order, const char *shipment,
                       const char *when);
/* Send it_event_line(id, type, order, shipment) on c. */
void it_send_event(struct it_client *c, const char *id, const char *type, const char *order,
                   const char *shipment);
/* A string field of a JSON object, or NULL. */
const char *it_json_str(const json_t *o, const char *key);
/* True when text contains word with no identifier character either side. */
bool it_has_word(const char *text, const char *word);
/* The whole of a file of the source tree ($OT_SOURCE_ROOT/rel), malloc'd; fails the test. */
char *it_source_file(const char *rel);
/* The wall-clock time now + offset_s as RFC 3339 UTC ("2026-11-28T03:20:00Z"). */
void it_utc_time(char *out, size_t cap, long offset_s);
/* Milliseconds on the monotonic clock. */
long long it_now_ms(void);
void it_sleep_ms(int ms);
/* Wait until webhook's cursor in db (webhook_cursors.last_seq) is seq; fail after ms. */
void it_webhook_wait_cursor(const char *db, const char *webhook, long long seq, int ms);
/* CPU time (user + system) process pid has used so far, in ms, from /proc. */
long long it_proc_cpu_ms(pid_t pid);

/*
 * A client that reads late: a raw socket with a 4 KiB receive buffer says
 * hello and sends n shipment.checkpoint events with ids "<prefix>-00000"
 * on, in one go, and waits until dbname holds them.  Its acks then wait
 * in the daemon's socket; the caller does what it tests (a stop, an idle
 * close), then it_late_reader_expect().  Returns the socket.
 */
int it_late_reader_send(struct it_daemon *d, const char *dbname, const char *prefix, int n);
/*
 * Read fd to its end (or a reset after it), close it and require the
 * welcome, then exactly the n acks "stored" of it_late_reader_send, each
 * whole and in order.
 */
void it_late_reader_expect(int fd, const char *prefix, int n);
/*
 * Daemons started between these two calls run without ASan's quarantine
 * when the tests are built with AddressSanitizer (build-asan/): it keeps
 * freed blocks (256 MB by default) instead of reusing them, so a bound on
 * the daemon's resident memory would measure ASan.  No-ops otherwise.
 */
void it_asan_quarantine_off(void);
void it_asan_quarantine_restore(void);

#endif
