/*
 * harness.c - temp dir, PostgreSQL cluster, daemon process, TCP clients and
 * database checks for the integration tests; see harness.h.
 *
 * Everything here blocks (poll with deadlines), which is what a test wants:
 * a step either completes in time or the test fails saying which step and
 * pointing at the daemon's log.  Failures go through it_fail(), which ends
 * the running cmocka test with a longjmp; the registries of daemons and
 * clients let it_test_teardown() clean up what that longjmp skipped.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "auth.h"

#define MAX_PARAMS   8
#define CONNINFO_MAX 1024
#define READ_CHUNK   65536
#define SEND_MS      60000  /* longest a single it_send_raw may take */
#define PGCLUSTER_MS 100000 /* longest a pgcluster command may take */
#define MAX_FAILURES 16
#define FAILURE_LEN  400

const char it_id_any[] = "<any id>";

/* Process-wide harness state: one cluster, the live daemons and clients. */
static struct {
	char tmp[PATH_MAX];    /* the temp dir */
	char pgdir[PATH_MAX];  /* <tmp>/pg, the cluster */
	char cmdlog[PATH_MAX]; /* <tmp>/pgcluster.log, output of pgcluster */
	char pghost[PATH_MAX];
	char pgport[32];
	char pguser[128];
	const char *pgcluster;  /* $OT_PGCLUSTER */
	const char *daemon_bin; /* $OT_DAEMON */
	bool pg_down;           /* a test stopped the cluster */
	struct it_daemon *daemons;
	struct it_client *clients;
	struct it_daemon *last; /* latest daemon started: named in failures */
	const char *at_file;    /* test line of the check running, if any */
	int at_line;
	char failures[MAX_FAILURES][FAILURE_LEN]; /* repeated at the end of the run */
	int n_failures;
} H;

static void fmt_fixed(char *out, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static pid_t spawn_pgcluster(const char *const *args, int *outfd);
static int wait_pgcluster(pid_t pid, long long deadline);
static int run_pgcluster(const char *const *args, char *out, size_t cap);
static void env_die(const char *what) __attribute__((noreturn));
static void parse_env_output(char *text);
static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw);
static void kill_leftovers(void);
static void describe_status(int status, char *out, size_t cap);
static off_t log_scan(const char *path, off_t *pos, const char *needle, char *line, size_t cap);
static off_t log_find(struct it_daemon *d, off_t from, const char *needle, int timeout_ms,
                      char *line, size_t cap);
static void write_file_atomic(const char *path, const char *text, size_t len);
static char *config_text(const struct it_config *cfg);
static void buf_append(char **buf, size_t *len, size_t *cap, const void *data, size_t n);
static int fill(struct it_client *c, long long deadline);
static bool take_line(struct it_client *c, char **line);
static void lines_push(struct it_client *c, char *line);
static json_t *parse_reply(const char *line);
static PGconn *db_open(const char *dbname);
static PGresult *db_check(PGconn *conn, PGresult *r, bool rows, const char *what, const char *sql);
static PGresult *db_run(const char *dbname, const char *sql, va_list ap, bool rows);

/* ------------------------------------------------------------------ */
/* Public functions                                                    */
/* ------------------------------------------------------------------ */

void it_at(const char *file, int line)
{
	H.at_file = file;
	H.at_line = line;
}

void it_fail_at(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	char where[512], what[FAILURE_LEN];
	if (H.at_file != NULL)
		snprintf(where, sizeof(where), "%s:%d, check at %s:%d", file, line, H.at_file,
		         H.at_line);
	else
		snprintf(where, sizeof(where), "%s:%d", file, line);
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n*** FAILED (%s): %s\n", where, what);
	if (H.n_failures < MAX_FAILURES) {
		const char *base = strrchr(H.at_file != NULL ? H.at_file : file, '/');
		snprintf(H.failures[H.n_failures++], FAILURE_LEN, "%.40s:%d: %.300s",
		         base != NULL ? base + 1 : file, H.at_file != NULL ? H.at_line : line,
		         what);
	}
	if (H.last != NULL) {
		fprintf(stderr, "*** daemon log: %s\n", H.last->log_path);
		it_log_tail(H.last, 25);
	}
	fflush(stderr);
	H.at_file = NULL;
	_fail(file, line);
	abort(); /* NOTREACHED: _fail jumps back into cmocka */
}

void it_env_init(const char *label)
{
	const char *base = getenv("TMPDIR");
	char out[4096];

	signal(SIGPIPE, SIG_IGN);
	H.daemon_bin = getenv("OT_DAEMON");
	H.pgcluster = getenv("OT_PGCLUSTER");
	if (H.daemon_bin == NULL || H.pgcluster == NULL) {
		fprintf(stderr, "harness: OT_DAEMON and OT_PGCLUSTER must be set "
		                "(meson test sets them)\n");
		exit(1);
	}
	if (access(H.daemon_bin, X_OK) != 0) {
		fprintf(stderr, "harness: %s: %s\n", H.daemon_bin, strerror(errno));
		exit(1);
	}
	if (access(H.pgcluster, X_OK) != 0) {
		fprintf(stderr, "harness: %s: %s\n", H.pgcluster, strerror(errno));
		exit(1);
	}
	/* Only the tests whose names match (cmocka's * and ? wildcards). */
	const char *only = getenv("OT_TEST_FILTER");
	if (only != NULL && only[0] != '\0')
		cmocka_set_test_filter(only);
	if (base == NULL || base[0] == '\0')
		base = "/tmp";
	fmt_fixed(H.tmp, sizeof(H.tmp), "%s/ot-it-%s-XXXXXX", base, label);
	if (mkdtemp(H.tmp) == NULL) {
		fprintf(stderr, "harness: mkdtemp %s: %s\n", H.tmp, strerror(errno));
		exit(1);
	}
	/* The cluster runs as an unprivileged user, who must reach <tmp>/pg. */
	if (chmod(H.tmp, 0755) != 0)
		env_die("chmod of the temp dir");
	fmt_fixed(H.pgdir, sizeof(H.pgdir), "%s/pg", H.tmp);
	fmt_fixed(H.cmdlog, sizeof(H.cmdlog), "%s/pgcluster.log", H.tmp);
	setenv("OT_PG_FAST", "1", 1);
	fprintf(stderr, "harness: temp dir %s\n", H.tmp);

	const char *tmpl = getenv("OT_PG_TEMPLATE");
	if (tmpl != NULL && tmpl[0] != '\0') {
		const char *a[] = {"init", H.pgdir, "--from", tmpl, NULL};
		if (run_pgcluster(a, NULL, 0) != 0)
			env_die("pgcluster init --from");
	} else {
		const char *a[] = {"init", H.pgdir, NULL};
		if (run_pgcluster(a, NULL, 0) != 0)
			env_die("pgcluster init");
	}
	const char *start[] = {"start", H.pgdir, NULL};
	if (run_pgcluster(start, NULL, 0) != 0)
		env_die("pgcluster start");
	const char *env[] = {"env", H.pgdir, NULL};
	if (run_pgcluster(env, out, sizeof(out)) != 0)
		env_die("pgcluster env");
	parse_env_output(out);
	const char *mk[] = {"createdb", H.pgdir, IT_DB, NULL};
	if (run_pgcluster(mk, NULL, 0) != 0)
		env_die("pgcluster createdb " IT_DB);
	fprintf(stderr, "harness: cluster up: %s\n", it_conninfo(NULL));
}

int it_env_fini(int failed)
{
	kill_leftovers();
	const char *stop[] = {"stop", H.pgdir, "fast", NULL};
	if (run_pgcluster(stop, NULL, 0) != 0) {
		fprintf(stderr, "harness: pgcluster stop failed; see %s\n", H.cmdlog);
		failed = 1;
	}
	if (failed) {
		fprintf(stderr, "harness: %d test(s) failed; keeping %s (daemon logs: *.log)\n",
		        failed, H.tmp);
		for (int i = 0; i < H.n_failures; i++)
			fprintf(stderr, "harness: failure %d: %s\n", i + 1, H.failures[i]);
		/*
		 * A failed check jumps out of its test and leaves its buffers
		 * behind.  Leaving through _exit skips LeakSanitizer's report of
		 * those, which would only push the real failures out of view; a
		 * run that passed returns normally and is checked for leaks.
		 */
		fflush(stdout);
		fflush(stderr);
		_exit(1);
	}
	/* destroy also removes a cluster pgcluster had to keep outside the dir. */
	const char *destroy[] = {"destroy", H.pgdir, NULL};
	if (run_pgcluster(destroy, NULL, 0) != 0) {
		fprintf(stderr, "harness: pgcluster destroy failed; keeping %s\n", H.tmp);
		return 1;
	}
	if (nftw(H.tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
		fprintf(stderr, "harness: could not remove %s: %s\n", H.tmp, strerror(errno));
	return 0;
}

int it_test_teardown(void **state)
{
	(void)state;
	kill_leftovers();
	H.last = NULL;
	H.at_file = NULL;
	if (H.pg_down) {
		const char *start[] = {"start", H.pgdir, NULL};
		if (run_pgcluster(start, NULL, 0) != 0) {
			fprintf(stderr, "harness: cannot restart the cluster; see %s\n", H.cmdlog);
			return -1;
		}
		H.pg_down = false;
	}
	return 0;
}

const char *it_tmpdir(void)
{
	return H.tmp;
}

const char *it_conninfo(const char *dbname)
{
	static char bufs[4][CONNINFO_MAX];
	static unsigned slot;
	char *b = bufs[slot++ % 4];

	fmt_fixed(b, CONNINFO_MAX, "host=%s port=%s user=%s dbname=%s", H.pghost, H.pgport,
	          H.pguser, dbname != NULL ? dbname : IT_DB);
	return b;
}

void it_pg_createdb(const char *name)
{
	const char *a[] = {"createdb", H.pgdir, name, NULL};
	if (run_pgcluster(a, NULL, 0) != 0)
		it_fail("pgcluster createdb %s failed; see %s", name, H.cmdlog);
}

void it_pg_stop(const char *mode)
{
	const char *a[] = {"stop", H.pgdir, mode, NULL};
	H.pg_down = true;
	if (run_pgcluster(a, NULL, 0) != 0)
		it_fail("pgcluster stop %s failed; see %s", mode, H.cmdlog);
}

pid_t it_pg_stop_begin(const char *mode)
{
	const char *a[] = {"stop", H.pgdir, mode, NULL};
	H.pg_down = true;
	pid_t pid = spawn_pgcluster(a, NULL);
	if (pid < 0)
		it_fail("cannot run pgcluster stop: %s", strerror(errno));
	return pid;
}

bool it_pg_stop_done(pid_t pid)
{
	int rc = wait_pgcluster(pid, 0);
	if (rc == -2)
		return false;
	if (rc != 0)
		it_fail("pgcluster stop failed (%d); see %s", rc, H.cmdlog);
	return true;
}

void it_pg_start(void)
{
	const char *a[] = {"start", H.pgdir, NULL};
	if (run_pgcluster(a, NULL, 0) != 0)
		it_fail("pgcluster start failed; see %s", H.cmdlog);
	H.pg_down = false;
}

bool it_pg_running(void)
{
	const char *a[] = {"status", H.pgdir, NULL};
	return run_pgcluster(a, NULL, 0) == 0;
}

char *it_db_value(const char *dbname, const char *sql, ...)
{
	va_list ap;
	va_start(ap, sql);
	PGresult *r = db_run(dbname, sql, ap, true);
	va_end(ap);
	if (PQntuples(r) != 1 || PQnfields(r) != 1) {
		int rows = PQntuples(r), cols = PQnfields(r);
		PQclear(r);
		it_fail("query returned %d rows x %d columns, expected one value: %s", rows, cols,
		        sql);
	}
	char *v = PQgetisnull(r, 0, 0) ? NULL : strdup(PQgetvalue(r, 0, 0));
	PQclear(r);
	return v;
}

long it_db_long(const char *dbname, const char *sql, ...)
{
	va_list ap;
	va_start(ap, sql);
	PGresult *r = db_run(dbname, sql, ap, true);
	va_end(ap);
	if (PQntuples(r) != 1 || PQnfields(r) != 1 || PQgetisnull(r, 0, 0)) {
		PQclear(r);
		it_fail("query did not return one non-null number: %s", sql);
	}
	char *end;
	long v = strtol(PQgetvalue(r, 0, 0), &end, 10);
	bool ok = *end == '\0';
	PQclear(r);
	if (!ok)
		it_fail("query result is not an integer: %s", sql);
	return v;
}

long it_db_rows(const char *dbname)
{
	return it_db_long(dbname, "SELECT count(*) FROM ordertrack.events", NULL);
}

char *it_pg_array(char *const *items, size_t n)
{
	char *buf = NULL;
	size_t len = 0, cap = 0;

	buf_append(&buf, &len, &cap, "{", 1);
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			buf_append(&buf, &len, &cap, ",", 1);
		buf_append(&buf, &len, &cap, "\"", 1);
		for (const char *p = items[i]; *p != '\0'; p++) {
			if (*p == '"' || *p == '\\')
				buf_append(&buf, &len, &cap, "\\", 1);
			buf_append(&buf, &len, &cap, p, 1);
		}
		buf_append(&buf, &len, &cap, "\"", 1);
	}
	buf_append(&buf, &len, &cap, "}", 2); /* with the NUL */
	return buf;
}

void it_db_command(const char *dbname, const char *sql, ...)
{
	va_list ap;
	va_start(ap, sql);
	PQclear(db_run(dbname, sql, ap, false));
	va_end(ap);
}

void it_db_script(const char *dbname, const char *sql)
{
	PGconn *conn = db_open(dbname);
	/* The simple protocol: one call may hold many statements. */
	PQclear(db_check(conn, PQexec(conn, sql), false, "script", sql));
}

void it_config_write(const struct it_config *cfg, const char *path)
{
	char *text = config_text(cfg);
	write_file_atomic(path, text, strlen(text));
	free(text);
}

struct it_daemon *it_daemon_start(const struct it_config *cfg, bool wait_ready)
{
	struct it_daemon *d = calloc(1, sizeof(*d));
	char line[1024];

	if (d == NULL)
		abort();
	if (cfg->name == NULL)
		it_fail("it_config.name is required");
	d->cfg = *cfg;
	fmt_fixed(d->conf_path, sizeof(d->conf_path), "%s/%s.conf", H.tmp, cfg->name);
	fmt_fixed(d->log_path, sizeof(d->log_path), "%s/%s.log", H.tmp, cfg->name);
	it_config_write(cfg, d->conf_path);

	int logfd = open(d->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
	if (logfd < 0)
		it_fail("open %s: %s", d->log_path, strerror(errno));
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		it_fail("fork: %s", strerror(errno));
	if (pid == 0) {
		/* Child: the daemon dies with the test, even when the test crashes. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		int nul = open("/dev/null", O_RDONLY);
		if (nul >= 0)
			dup2(nul, 0);
		dup2(logfd, 1);
		dup2(logfd, 2);
		signal(SIGPIPE, SIG_DFL);
		unsetenv("NOTIFY_SOCKET");
		unsetenv("JOURNAL_STREAM");
		if (cfg->journal_stream != NULL)
			setenv("JOURNAL_STREAM", cfg->journal_stream, 1);
		execl(H.daemon_bin, "ordertrackd", "-c", d->conf_path, (char *)NULL);
		dprintf(2, "harness: exec %s: %s\n", H.daemon_bin, strerror(errno));
		_exit(127);
	}
	close(logfd);
	d->pid = pid;
	d->next = H.daemons;
	H.daemons = d;
	H.last = d;

	off_t at = log_find(d, 0, "msg=listening", IT_START_MS, line, sizeof(line));
	if (at < 0)
		it_fail("no msg=listening from the daemon within %d ms%s", IT_START_MS,
		        d->exited ? " (it exited)" : "");
	const char *a = strstr(line, "addr=");
	if (a == NULL)
		it_fail("msg=listening line has no addr=: %s", line);
	a += 5;
	if (*a == '"')
		a++;
	size_t tok = strcspn(a, " \"\n");
	const char *colon = NULL;
	for (const char *p = a; p < a + tok; p++)
		if (*p == ':')
			colon = p;
	if (colon == NULL || (d->port = atoi(colon + 1)) <= 0 || d->port > 65535)
		it_fail("cannot read a port in: %s", line);
	if (wait_ready)
		it_log_expect(d, 0, "msg=ready", IT_START_MS);
	return d;
}

void it_daemon_rewrite(struct it_daemon *d, const struct it_config *cfg)
{
	d->cfg = *cfg;
	it_config_write(cfg, d->conf_path);
}

void it_daemon_rewrite_raw(struct it_daemon *d, const char *text)
{
	write_file_atomic(d->conf_path, text, strlen(text));
}

bool it_daemon_alive(struct it_daemon *d)
{
	if (d->exited)
		return false;
	int st;
	pid_t r = waitpid(d->pid, &st, WNOHANG);
	if (r == d->pid) {
		d->exited = true;
		d->status = st;
		return false;
	}
	return true;
}

int it_daemon_wait(struct it_daemon *d, int timeout_ms)
{
	long long deadline = it_now_ms() + timeout_ms;
	while (it_daemon_alive(d)) {
		if (it_now_ms() > deadline) {
			kill(d->pid, SIGKILL);
			waitpid(d->pid, &d->status, 0);
			d->exited = true;
			it_fail("daemon did not exit within %d ms; killed it", timeout_ms);
		}
		it_sleep_ms(10);
	}
	return d->status;
}

int it_daemon_stop(struct it_daemon *d, int sig, int timeout_ms)
{
	if (!it_daemon_alive(d))
		return d->status;
	if (kill(d->pid, sig) != 0)
		it_fail("kill %d: %s", (int)d->pid, strerror(errno));
	return it_daemon_wait(d, timeout_ms);
}

void it_daemon_stop_clean_(struct it_daemon *d)
{
	char what[64];
	int st = it_daemon_stop(d, SIGTERM, IT_STOP_MS);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		describe_status(st, what, sizeof(what));
		it_fail("daemon should exit 0 after SIGTERM, %s", what);
	}
	H.at_file = NULL;
}

off_t it_log_offset(const struct it_daemon *d)
{
	struct stat st;
	if (stat(d->log_path, &st) != 0)
		return 0;
	return st.st_size;
}

off_t it_log_wait(struct it_daemon *d, off_t from, const char *needle, int timeout_ms)
{
	char line[1024];
	return log_find(d, from, needle, timeout_ms, line, sizeof(line));
}

off_t it_log_expect_(struct it_daemon *d, off_t from, const char *needle, int timeout_ms)
{
	off_t at = it_log_wait(d, from, needle, timeout_ms);
	if (at < 0)
		it_fail("no log line with '%s' within %d ms (after offset %lld)%s", needle,
		        timeout_ms, (long long)from, d->exited ? "; the daemon exited" : "");
	H.at_file = NULL;
	return at;
}

void it_log_tail(const struct it_daemon *d, int nlines)
{
	FILE *f = fopen(d->log_path, "r");
	if (f == NULL)
		return;
	fseek(f, 0, SEEK_END);
	long size = ftell(f);
	long start = size > 65536 ? size - 65536 : 0;
	char *buf = malloc((size_t)(size - start) + 1);
	if (buf == NULL) {
		fclose(f);
		return;
	}
	fseek(f, start, SEEK_SET);
	size_t n = fread(buf, 1, (size_t)(size - start), f);
	fclose(f);
	buf[n] = '\0';
	size_t i = n;
	int seen = 0;
	while (i > 0 && seen <= nlines) {
		i--;
		if (buf[i] == '\n' && i + 1 < n)
			seen++;
	}
	const char *p = seen > nlines ? buf + i + 1 : buf;
	fprintf(stderr, "*** last log lines:\n");
	for (const char *q; *p != '\0'; p = q + 1) {
		q = strchr(p, '\n');
		if (q == NULL)
			q = p + strlen(p) - 1;
		fprintf(stderr, "  | %.*s\n", (int)(q - p), p);
		if (q[1] == '\0')
			break;
	}
	free(buf);
}

struct it_client *it_connect(struct it_daemon *d)
{
	return it_connect_from(d, NULL);
}

struct it_client *it_connect_from(struct it_daemon *d, const char *source)
{
	struct it_client *c = calloc(1, sizeof(*c));
	bool v6 = source != NULL && strchr(source, ':') != NULL;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)d->port)};
	struct sockaddr_in6 sa6 = {.sin6_family = AF_INET6,
	                           .sin6_port = htons((uint16_t)d->port),
	                           .sin6_addr = IN6ADDR_LOOPBACK_INIT};

	if (c == NULL)
		abort();
	c->d = d;
	c->fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		it_fail("socket: %s", strerror(errno));
	if (source != NULL && !v6) {
		struct sockaddr_in src = {.sin_family = AF_INET};
		if (inet_pton(AF_INET, source, &src.sin_addr) != 1 ||
		    bind(c->fd, (struct sockaddr *)&src, sizeof(src)) != 0)
			it_fail("bind to %s: %s", source, strerror(errno));
	}
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int rc = v6 ? connect(c->fd, (struct sockaddr *)&sa6, sizeof(sa6))
	            : connect(c->fd, (struct sockaddr *)&sa, sizeof(sa));
	if (rc != 0) {
		int e = errno;
		close(c->fd);
		free(c);
		it_fail("connect to %s port %d: %s", v6 ? "::1" : "127.0.0.1", d->port,
		        strerror(e));
	}
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
	c->next = H.clients;
	H.clients = c;
	return c;
}

void it_close(struct it_client *c)
{
	for (struct it_client **pp = &H.clients; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	close(c->fd);
	free(c->in);
	free(c->out);
	for (size_t i = 0; i < c->n_lines; i++)
		free(c->lines[i]);
	free(c->lines);
	free(c);
}

void it_send(struct it_client *c, const char *line)
{
	size_t n = strlen(line);
	char *buf = malloc(n + 1);
	if (buf == NULL)
		abort();
	memcpy(buf, line, n);
	buf[n] = '\n';
	it_send_raw(c, buf, n + 1);
	free(buf);
}

void it_sendf(struct it_client *c, const char *fmt, ...)
{
	va_list ap;
	char *line;

	va_start(ap, fmt);
	int n = vasprintf(&line, fmt, ap);
	va_end(ap);
	if (n < 0)
		abort();
	it_send(c, line);
	free(line);
}

void it_send_raw(struct it_client *c, const void *buf, size_t len)
{
	const char *p = buf;
	size_t off = 0;
	long long deadline = it_now_ms() + SEND_MS;

	while (off < len) {
		struct pollfd pfd = {.fd = c->fd, .events = POLLOUT};
		if (!c->eof)
			pfd.events |= POLLIN;
		long long left = deadline - it_now_ms();
		if (left <= 0)
			it_fail("could not send %zu bytes within %d ms (%zu sent); the daemon "
			        "stopped reading?",
			        len, SEND_MS, off);
		int r = poll(&pfd, 1, (int)left);
		if (r < 0 && errno != EINTR)
			it_fail("poll: %s", strerror(errno));
		if (r <= 0)
			continue;
		/* Take in replies meanwhile so neither side blocks on a full buffer. */
		if ((pfd.revents & (POLLIN | POLLHUP | POLLERR)) && !c->eof)
			fill(c, 0);
		if (pfd.revents & (POLLOUT | POLLERR)) {
			ssize_t w = send(c->fd, p + off, len - off, MSG_NOSIGNAL);
			if (w < 0 && errno != EAGAIN && errno != EINTR)
				it_fail("send after %zu of %zu bytes: %s", off, len,
				        strerror(errno));
			if (w > 0)
				off += (size_t)w;
		}
	}
}

enum it_read it_try_read_line(struct it_client *c, int timeout_ms, char **line)
{
	long long deadline = it_now_ms() + timeout_ms;
	*line = NULL;
	for (;;) {
		if (take_line(c, line))
			return IT_READ_LINE;
		if (c->eof)
			return IT_READ_EOF;
		if (fill(c, deadline) < 0)
			return IT_READ_TIMEOUT;
	}
}

char *it_read_line(struct it_client *c, int timeout_ms)
{
	char *line;
	switch (it_try_read_line(c, timeout_ms, &line)) {
	case IT_READ_LINE:
		return line;
	case IT_READ_EOF:
		it_fail("expected a reply line, the daemon closed the connection");
	case IT_READ_TIMEOUT:
		break;
	}
	size_t part = c->in_len - c->in_off;
	if (part > 0)
		it_fail("no complete reply line within %d ms; partial: %.*s", timeout_ms,
		        (int)(part > 200 ? 200 : part), c->in + c->in_off);
	it_fail("no reply line within %d ms", timeout_ms);
}

void it_expect_eof(struct it_client *c, int timeout_ms)
{
	char *line;
	switch (it_try_read_line(c, timeout_ms, &line)) {
	case IT_READ_EOF:
		return;
	case IT_READ_LINE:
		it_fail("expected the connection to be closed, got a line: %s", line);
	case IT_READ_TIMEOUT:
		break;
	}
	it_fail("expected the connection to be closed within %d ms; it stays open", timeout_ms);
}

json_t *it_read_json(struct it_client *c, int timeout_ms)
{
	char *line = it_read_line(c, timeout_ms);
	json_t *o = parse_reply(line);
	free(line);
	return o;
}

void it_queue(struct it_client *c, const char *line)
{
	buf_append(&c->out, &c->out_len, &c->out_cap, line, strlen(line));
	buf_append(&c->out, &c->out_len, &c->out_cap, "\n", 1);
}

bool it_pump(struct it_client **cs, size_t n, int timeout_ms)
{
	struct pollfd *pfds = calloc(n, sizeof(*pfds));
	long long deadline = it_now_ms() + timeout_ms;
	bool done = false;

	if (pfds == NULL)
		abort();
	for (;;) {
		done = true;
		for (size_t i = 0; i < n; i++) {
			struct it_client *c = cs[i];
			char *line;
			while (take_line(c, &line))
				lines_push(c, line);
			pfds[i].fd = c->fd;
			pfds[i].events = 0;
			pfds[i].revents = 0;
			if (!c->eof)
				pfds[i].events |= POLLIN;
			if (c->out_off < c->out_len && !c->eof)
				pfds[i].events |= POLLOUT;
			if (!c->eof && c->n_lines < c->want)
				done = false;
		}
		if (done)
			break;
		long long left = deadline - it_now_ms();
		if (left <= 0)
			break;
		int r = poll(pfds, n, (int)left);
		if (r < 0 && errno != EINTR)
			it_fail("poll: %s", strerror(errno));
		for (size_t i = 0; r > 0 && i < n; i++) {
			struct it_client *c = cs[i];
			if (pfds[i].revents & (POLLIN | POLLHUP | POLLERR))
				fill(c, 0);
			if ((pfds[i].revents & POLLOUT) && c->out_off < c->out_len) {
				ssize_t w = send(c->fd, c->out + c->out_off,
				                 c->out_len - c->out_off, MSG_NOSIGNAL);
				if (w > 0)
					c->out_off += (size_t)w;
				else if (w < 0 && errno != EAGAIN && errno != EINTR)
					c->out_off = c->out_len; /* peer gone; EOF follows */
			}
		}
	}
	/* Lines that came with the last read. */
	for (size_t i = 0; i < n; i++) {
		char *line;
		while (take_line(cs[i], &line))
			lines_push(cs[i], line);
	}
	free(pfds);
	return done;
}

void it_hello_(struct it_client *c, const char *exporter, const char *token)
{
	json_t *h =
	    json_pack("{s:s, s:s, s:s}", "type", "hello", "exporter", exporter, "token", token);
	char *text = json_dumps(h, JSON_COMPACT);
	json_decref(h);
	it_send(c, text);
	free(text);

	char *line = it_read_line(c, IT_REPLY_MS);
	json_t *o = parse_reply(line);
	const char *type = it_json_str(o, "type");
	const char *exp = it_json_str(o, "exporter");
	const char *server = it_json_str(o, "server");
	json_t *proto = json_object_get(o, "protocol");
	if (type == NULL || strcmp(type, "welcome") != 0 || exp == NULL ||
	    strcmp(exp, exporter) != 0 || !json_is_integer(proto) ||
	    json_integer_value(proto) != 1 || server == NULL ||
	    strncmp(server, "ordertrackd ", 12) != 0)
		it_fail("hello as %s: expected a welcome with exporter, protocol 1 and server "
		        "\"ordertrackd <version>\", got: %s",
		        exporter, line);
	json_decref(o);
	free(line);
	H.at_file = NULL;
}

void it_hello_operator_(struct it_client *c, const char *operator_id, const char *token)
{
	json_t *h =
	    json_pack("{s:s, s:s, s:s}", "type", "hello", "operator", operator_id, "token", token);
	char *text = json_dumps(h, JSON_COMPACT);
	json_decref(h);
	it_send(c, text);
	free(text);

	char *line = it_read_line(c, IT_REPLY_MS);
	json_t *o = parse_reply(line);
	const char *type = it_json_str(o, "type");
	const char *op = it_json_str(o, "operator");
	json_t *proto = json_object_get(o, "protocol");
	if (type == NULL || strcmp(type, "welcome") != 0 || op == NULL ||
	    strcmp(op, operator_id) != 0 || json_object_get(o, "exporter") != NULL ||
	    !json_is_integer(proto) || json_integer_value(proto) != 1)
		it_fail("hello as operator %s: expected a welcome naming the operator, "
		        "protocol 1, got: %s",
		        operator_id, line);
	json_decref(o);
	free(line);
	H.at_file = NULL;
}

void it_check_ack_(const char *line, const char *id, const char *result)
{
	json_t *o = parse_reply(line);
	const char *type = it_json_str(o, "type");
	const char *rid = it_json_str(o, "id");
	const char *res = it_json_str(o, "result");
	if (type == NULL || strcmp(type, "ack") != 0 || rid == NULL || strcmp(rid, id) != 0 ||
	    res == NULL || strcmp(res, result) != 0)
		it_fail("expected {\"type\":\"ack\",\"id\":\"%s\",\"result\":\"%s\"}, got: %s", id,
		        result, line);
	json_decref(o);
	H.at_file = NULL;
}

json_t *it_check_error_(const char *line, const char *id, const char *code)
{
	json_t *o = parse_reply(line);
	const char *type = it_json_str(o, "type");
	const char *rcode = it_json_str(o, "code");
	const char *msg = it_json_str(o, "message");
	json_t *rid = json_object_get(o, "id");
	bool id_ok;
	if (id == it_id_any)
		id_ok = json_is_null(rid) || json_is_string(rid);
	else if (id == NULL)
		id_ok = json_is_null(rid);
	else
		id_ok = json_is_string(rid) && strcmp(json_string_value(rid), id) == 0;
	if (type == NULL || strcmp(type, "error") != 0 || rcode == NULL || strcmp(rcode, code) != 0)
		it_fail("expected an error with code %s, got: %s", code, line);
	if (!id_ok)
		it_fail("error %s should carry id %s%s%s, got: %s", code, id ? "\"" : "",
		        id ? id : "null", id ? "\"" : "", line);
	if (msg == NULL || msg[0] == '\0')
		it_fail("error %s has no message: %s", code, line);
	H.at_file = NULL;
	return o;
}

void it_expect_ack_(struct it_client *c, const char *id, const char *result)
{
	const char *file = H.at_file;
	int lno = H.at_line;
	char *line = it_read_line(c, IT_REPLY_MS);
	it_at(file, lno);
	it_check_ack_(line, id, result);
	free(line);
}

json_t *it_expect_error_(struct it_client *c, const char *id, const char *code)
{
	const char *file = H.at_file;
	int lno = H.at_line;
	char *line = it_read_line(c, IT_REPLY_MS);
	it_at(file, lno);
	json_t *o = it_check_error_(line, id, code);
	free(line);
	return o;
}

void it_expect_pong_(struct it_client *c)
{
	char *line = it_read_line(c, IT_REPLY_MS);
	json_t *o = parse_reply(line);
	const char *type = it_json_str(o, "type");
	if (type == NULL || strcmp(type, "pong") != 0 || json_object_size(o) != 1)
		it_fail("expected {\"type\":\"pong\"}, got: %s", line);
	json_decref(o);
	free(line);
	H.at_file = NULL;
}

char *it_event_line(const char *id, const char *type, const char *order, const char *shipment)
{
	json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "type", type, "id", id, "occurred_at",
	                      IT_OCCURRED_AT, "order", order);
	if (shipment != NULL)
		json_object_set_new(o, "shipment", json_string(shipment));
	/* What each type requires besides the envelope (see lib/request.c). */
	if (strcmp(type, "order.created") == 0) {
		json_object_set_new(o, "buyer", json_string("Hangzhou Roasters Ltd"));
		json_object_set_new(o, "origin", json_string("CD"));
		json_object_set_new(o, "destination", json_string("CN"));
		json_object_set_new(o, "lines",
		                    json_pack("[{s:s, s:s, s:s, s:i, s:s}]", "sku", "KHC-GR-60",
		                              "product", "Green Arabica, 60 kg bag", "hs_code",
		                              "090111", "quantity", 20, "unit", "bag"));
	} else if (strcmp(type, "shipment.booked") == 0) {
		json_object_set_new(o, "mode", json_string("sea"));
	} else if (strcmp(type, "shipment.checkpoint") == 0) {
		json_object_set_new(o, "location", json_pack("{s:s}", "name", "Bukavu"));
	} else if (strcmp(type, "shipment.customs_hold") == 0 ||
	           strcmp(type, "shipment.customs_released") == 0) {
		json_object_set_new(o, "stage", json_string("export"));
	} else if (strcmp(type, "shipment.exception") == 0) {
		json_object_set_new(o, "reason", json_string("delayed"));
	} else if (strcmp(type, "shipment.eta_changed") == 0) {
		json_object_set_new(o, "eta", json_string("2026-12-05T14:00:00+01:00"));
	} else if (strcmp(type, "document.issued") == 0) {
		json_object_set_new(o, "document", json_string("phytosanitary"));
	} else if (strcmp(type, "event.retracted") == 0) {
		char target[160];
		snprintf(target, sizeof(target), "%.120s-target", id);
		json_object_set_new(o, "retracts", json_string(target));
	}
	char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	if (text == NULL)
		abort();
	return text;
}

char *it_event_line_at(const char *id, const char *type, const char *order, const char *shipment,
                       const char *when)
{
	char *line = it_event_line(id, type, order, shipment);
	json_t *o = json_loads(line, JSON_PRESERVE_ORDER, NULL);
	free(line);
	if (o == NULL)
		abort();
	json_object_set_new(o, "occurred_at", json_string(when));
	line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	if (line == NULL)
		abort();
	return line;
}

void it_send_event(struct it_client *c, const char *id, const char *type, const char *order,
                   const char *shipment)
{
	char *line = it_event_line(id, type, order, shipment);
	it_send(c, line);
	free(line);
}

const char *it_json_str(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

bool it_has_word(const char *text, const char *word)
{
	size_t n = strlen(word);
	for (const char *p = text; (p = strstr(p, word)) != NULL; p++) {
		bool left = p == text || !(isalnum((unsigned char)p[-1]) || p[-1] == '_');
		bool right = !(isalnum((unsigned char)p[n]) || p[n] == '_');
		if (left && right)
			return true;
	}
	return false;
}

char *it_source_file(const char *rel)
{
	const char *root = getenv("OT_SOURCE_ROOT");
	char path[PATH_MAX];

	if (root == NULL || root[0] == '\0')
		it_fail("OT_SOURCE_ROOT is not set (meson test sets it)");
	snprintf(path, sizeof(path), "%s/%s", root, rel);
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		it_fail("open %s: %s", path, strerror(errno));
	char *buf = NULL;
	size_t len = 0, cap = 0;
	char chunk[4096];
	size_t got;
	while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0)
		buf_append(&buf, &len, &cap, chunk, got);
	bool bad = ferror(f) != 0;
	fclose(f);
	if (bad) {
		free(buf);
		it_fail("read %s failed", path);
	}
	buf_append(&buf, &len, &cap, "", 1);
	return buf;
}

void it_utc_time(char *out, size_t cap, long offset_s)
{
	time_t t = time(NULL) + offset_s;
	struct tm tm;
	if (gmtime_r(&t, &tm) == NULL || strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		it_fail("cannot format the time %lld", (long long)t);
}

/* In the child of it_run: apply env, then exec; never returns. */
static void run_child(const char *bin, const char *const argv[], const char *const env[])
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	for (size_t i = 0; env != NULL && env[i] != NULL; i++) {
		const char *eq = strchr(env[i], '=');
		if (eq == NULL) {
			unsetenv(env[i]);
		} else {
			char name[256];
			fmt_fixed(name, sizeof(name), "%.*s", (int)(eq - env[i]), env[i]);
			setenv(name, eq + 1, 1);
		}
	}
	execv(bin, (char *const *)argv);
	dprintf(2, "exec %s: %s\n", bin, strerror(errno));
	_exit(127);
}

int it_run(const char *bin, const char *const argv[], const char *const env[], int timeout_ms,
           char **out)
{
	int fds[2];
	if (pipe2(fds, O_CLOEXEC) != 0)
		it_fail("pipe: %s", strerror(errno));
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		it_fail("fork: %s", strerror(errno));
	if (pid == 0) {
		dup2(fds[1], 1);
		run_child(bin, argv, env);
	}
	close(fds[1]);
	char *buf = NULL, chunk[4096];
	size_t len = 0, cap = 0;
	long long deadline = it_now_ms() + timeout_ms;
	for (;;) {
		struct pollfd p = {.fd = fds[0], .events = POLLIN};
		long long left = deadline - it_now_ms();
		if (left <= 0 || poll(&p, 1, (int)left) == 0) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			close(fds[0]);
			free(buf);
			it_fail("%s did not finish within %d ms", argv[0], timeout_ms);
		}
		ssize_t r = read(fds[0], chunk, sizeof(chunk));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		buf_append(&buf, &len, &cap, chunk, (size_t)r);
	}
	close(fds[0]);
	buf_append(&buf, &len, &cap, "", 1);
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	*out = buf;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int it_runv(const char *bin, const char *name, const char *const env[], int timeout_ms, char **out,
            va_list ap)
{
	const char *argv[40];
	int argc = 0;
	argv[argc++] = name;
	for (const char *a; (a = va_arg(ap, const char *)) != NULL;) {
		if (argc == 39)
			it_fail("%s: more than 38 arguments", name);
		argv[argc++] = a;
	}
	argv[argc] = NULL;
	return it_run(bin, argv, env, timeout_ms, out);
}

long long it_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void it_sleep_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* ------------------------------------------------------------------ */
/* Static functions                                                    */
/* ------------------------------------------------------------------ */

/* snprintf into a fixed buffer where a cut-off path would be a bug: abort on overflow. */
static void fmt_fixed(char *out, size_t cap, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(out, cap, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= cap) {
		fprintf(stderr, "harness: path or conninfo too long: %s...\n", out);
		abort();
	}
}

/*
 * Start pgcluster with args; its stdout goes to a pipe (when outfd is given)
 * or, like its stderr, to <tmp>/pgcluster.log.  Returns its pid, or -1.
 */
static pid_t spawn_pgcluster(const char *const *args, int *outfd)
{
	const char *argv[16];
	int pfd[2] = {-1, -1};
	size_t n = 0;

	argv[n++] = H.pgcluster;
	for (size_t i = 0; args[i] != NULL && n < 15; i++)
		argv[n++] = args[i];
	argv[n] = NULL;

	int logfd = open(H.cmdlog, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (logfd < 0)
		return -1;
	dprintf(logfd, "+ pgcluster");
	for (size_t i = 1; i < n; i++)
		dprintf(logfd, " %s", argv[i]);
	dprintf(logfd, "\n");
	if (outfd != NULL && pipe2(pfd, O_CLOEXEC) != 0) {
		close(logfd);
		return -1;
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		int nul = open("/dev/null", O_RDONLY);
		if (nul >= 0)
			dup2(nul, 0);
		dup2(outfd != NULL ? pfd[1] : logfd, 1);
		dup2(logfd, 2);
		signal(SIGPIPE, SIG_DFL);
		execv(argv[0], (char *const *)argv);
		dprintf(2, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(logfd);
	if (outfd != NULL) {
		close(pfd[1]);
		if (pid < 0)
			close(pfd[0]);
		else
			*outfd = pfd[0];
	}
	return pid;
}

/*
 * Reap a pgcluster run, waiting until deadline (0: do not wait).  Returns
 * its exit code, -1 when it failed to run or was killed at the deadline,
 * or -2 when it is still running and deadline is 0.
 */
static int wait_pgcluster(pid_t pid, long long deadline)
{
	int st;
	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			break;
		if (r < 0 && errno != EINTR)
			return -1;
		if (deadline == 0)
			return -2;
		/* A hung pgcluster must not eat the whole test timeout. */
		if (it_now_ms() > deadline) {
			fprintf(stderr, "harness: pgcluster did not finish in %d ms; killed it\n",
			        PGCLUSTER_MS);
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			return -1;
		}
		it_sleep_ms(10);
	}
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Run pgcluster to the end; stdout into out when given.  Returns its exit code or -1. */
static int run_pgcluster(const char *const *args, char *out, size_t cap)
{
	int fd = -1;
	pid_t pid = spawn_pgcluster(args, out != NULL ? &fd : NULL);
	long long deadline = it_now_ms() + PGCLUSTER_MS;

	if (pid < 0)
		return -1;
	if (out != NULL) {
		size_t got = 0;
		for (;;) {
			struct pollfd p = {.fd = fd, .events = POLLIN};
			long long left = deadline - it_now_ms();
			if (left <= 0 || poll(&p, 1, (int)left) == 0)
				break;
			ssize_t r = read(fd, out + got, cap - 1 - got);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				break;
			got += (size_t)r;
			if (got == cap - 1)
				break;
		}
		out[got] = '\0';
		close(fd);
	}
	return wait_pgcluster(pid, deadline);
}

/* Set-up failed outside any test: show pgcluster's output, keep the dir, exit. */
static void env_die(const char *what)
{
	fprintf(stderr, "harness: %s failed; output of pgcluster (%s):\n", what, H.cmdlog);
	FILE *f = fopen(H.cmdlog, "r");
	if (f != NULL) {
		char buf[1024];
		while (fgets(buf, sizeof(buf), f) != NULL)
			fprintf(stderr, "  | %s", buf);
		fclose(f);
	}
	fprintf(stderr, "harness: keeping %s\n", H.tmp);
	const char *stop[] = {"stop", H.pgdir, "immediate", NULL};
	run_pgcluster(stop, NULL, 0);
	exit(1);
}

/* Read PGHOST=, PGPORT=, PGUSER= lines (an "export " prefix or quotes are fine). */
static void parse_env_output(char *text)
{
	for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
		if (strncmp(line, "export ", 7) == 0)
			line += 7;
		char *eq = strchr(line, '=');
		if (eq == NULL)
			continue;
		*eq = '\0';
		char *v = eq + 1;
		size_t vl = strlen(v);
		if (vl >= 2 && (v[0] == '"' || v[0] == '\'') && v[vl - 1] == v[0]) {
			v[vl - 1] = '\0';
			v++;
		}
		if (strcmp(line, "PGHOST") == 0)
			snprintf(H.pghost, sizeof(H.pghost), "%s", v);
		else if (strcmp(line, "PGPORT") == 0)
			snprintf(H.pgport, sizeof(H.pgport), "%s", v);
		else if (strcmp(line, "PGUSER") == 0)
			snprintf(H.pguser, sizeof(H.pguser), "%s", v);
	}
	if (H.pghost[0] == '\0' || H.pgport[0] == '\0' || H.pguser[0] == '\0')
		env_die("reading PGHOST/PGPORT/PGUSER from pgcluster env");
}

/* nftw callback removing one entry, children first. */
static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path) != 0 ? -1 : 0;
}

/* Kill and reap every daemon still running; close every client. */
static void kill_leftovers(void)
{
	while (H.clients != NULL)
		it_close(H.clients);
	while (H.daemons != NULL) {
		struct it_daemon *d = H.daemons;
		H.daemons = d->next;
		if (it_daemon_alive(d)) {
			kill(d->pid, SIGKILL);
			waitpid(d->pid, &d->status, 0);
		}
		free(d);
	}
	H.last = NULL;
}

/* "exit 3" or "killed by signal 11 (Segmentation fault)". */
static void describe_status(int status, char *out, size_t cap)
{
	if (WIFEXITED(status))
		snprintf(out, cap, "it exited %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(out, cap, "it was killed by signal %d (%s)", WTERMSIG(status),
		         strsignal(WTERMSIG(status)));
	else
		snprintf(out, cap, "wait status 0x%x", status);
}

/*
 * Look through the complete lines of a log from *pos on for needle.  *pos
 * moves past the lines looked at.  Returns the offset just past the
 * matching line (copied into line), or -1.
 */
static off_t log_scan(const char *path, off_t *pos, const char *needle, char *line, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	off_t found = -1;

	if (fd < 0)
		return -1;
	if (fstat(fd, &st) != 0 || st.st_size <= *pos) {
		close(fd);
		return -1;
	}
	size_t len = (size_t)(st.st_size - *pos);
	char *buf = malloc(len);
	if (buf == NULL)
		abort();
	ssize_t got = pread(fd, buf, len, *pos);
	close(fd);
	if (got <= 0) {
		free(buf);
		return -1;
	}
	size_t nl = strlen(needle);
	char *p = buf, *end = buf + got;
	for (char *q; p < end && (q = memchr(p, '\n', (size_t)(end - p))) != NULL; p = q + 1) {
		if (memmem(p, (size_t)(q - p), needle, nl) != NULL) {
			size_t ll = (size_t)(q - p) < cap - 1 ? (size_t)(q - p) : cap - 1;
			memcpy(line, p, ll);
			line[ll] = '\0';
			found = *pos + (q + 1 - buf);
			p = q + 1;
			break;
		}
	}
	*pos += p - buf;
	free(buf);
	return found;
}

/* Poll a daemon's log for needle until found, timeout, or the daemon's exit. */
static off_t log_find(struct it_daemon *d, off_t from, const char *needle, int timeout_ms,
                      char *line, size_t cap)
{
	long long deadline = it_now_ms() + timeout_ms;
	off_t pos = from;
	for (;;) {
		bool alive = it_daemon_alive(d);
		off_t at = log_scan(d->log_path, &pos, needle, line, cap);
		if (at >= 0)
			return at;
		if (!alive || it_now_ms() > deadline)
			return -1;
		it_sleep_ms(20);
	}
}

/* Write a file through a temp name and rename, so no reader sees half of it. */
static void write_file_atomic(const char *path, const char *text, size_t len)
{
	char tmp[PATH_MAX + 8];
	snprintf(tmp, sizeof(tmp), "%s.new", path);
	FILE *f = fopen(tmp, "w");
	if (f == NULL)
		it_fail("open %s: %s", tmp, strerror(errno));
	if (fwrite(text, 1, len, f) != len || fclose(f) != 0)
		it_fail("write %s: %s", tmp, strerror(errno));
	if (rename(tmp, path) != 0)
		it_fail("rename %s: %s", tmp, strerror(errno));
}

/* Append s to a growing text buffer as a libconfig string literal. */
static void append_cfg_string(char **buf, size_t *len, size_t *cap, const char *s)
{
	buf_append(buf, len, cap, "\"", 1);
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			buf_append(buf, len, cap, "\\", 1);
		buf_append(buf, len, cap, s, 1);
	}
	buf_append(buf, len, cap, "\"", 1);
}

/* Append formatted text to a growing buffer. */
static void append_fmt(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void append_fmt(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
{
	va_list ap;
	char *s;
	va_start(ap, fmt);
	int n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0)
		abort();
	buf_append(buf, len, cap, s, (size_t)n);
	free(s);
}

/* Append one exporter entry. */
static void append_exporter(char **buf, size_t *len, size_t *cap, const struct it_exporter *e,
                            bool first)
{
	uint8_t digest[AUTH_DIGEST_LEN];
	char hex[2 * AUTH_DIGEST_LEN + 1];

	auth_hash(e->token, strlen(e->token), digest);
	auth_format_hex(digest, hex);
	append_fmt(buf, len, cap, "%s\n\t{ id = ", first ? "" : ",");
	append_cfg_string(buf, len, cap, e->id);
	append_fmt(buf, len, cap, "; name = ");
	append_cfg_string(buf, len, cap, e->name != NULL ? e->name : e->id);
	append_fmt(buf, len, cap, "; token_sha256 = \"%s\"; }", hex);
}

/*
 * Does config text set the top-level group name ("admin = {" or
 * "admin: {")?  Not a mere substring: a temporary path in a TLS
 * setting may contain the word.
 */
static bool config_sets_group(const char *text, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = strstr(text, name); p != NULL; p = strstr(p + 1, name)) {
		bool starts = p == text || strchr(" \t\n;{", p[-1]) != NULL;
		const char *q = p + n;
		while (*q == ' ' || *q == '\t')
			q++;
		if (starts && (*q == '=' || *q == ':'))
			return true;
	}
	return false;
}

/* The libconfig text of a daemon config. */
static char *config_text(const struct it_config *cfg)
{
	static const struct it_exporter defaults[] = {
	    {IT_EXPORTER, IT_EXPORTER_NAME, IT_TOKEN},
	    {IT_EXPORTER2, IT_EXPORTER2_NAME, IT_TOKEN2},
	};
	char *b = NULL;
	size_t len = 0, cap = 0;
	bool first = true;

	append_fmt(&b, &len, &cap, "# written by tests/integration/harness.c for %s\n", cfg->name);
	append_fmt(&b, &len, &cap, "listen = [ \"%s\" ];\n",
	           cfg->listen != NULL ? cfg->listen : "127.0.0.1:0");
	append_fmt(&b, &len, &cap, "database = { conninfo = ");
	append_cfg_string(&b, &len, &cap, it_conninfo(cfg->dbname));
	if (cfg->db_connections > 0)
		append_fmt(&b, &len, &cap, "; connections = %d", cfg->db_connections);
	append_fmt(&b, &len, &cap, "; };\nexporters = (");
	if (!cfg->no_default_exporters) {
		for (size_t i = 0; i < 2; i++, first = false)
			append_exporter(&b, &len, &cap, &defaults[i], first);
	}
	for (size_t i = 0; i < cfg->n_extra && i < IT_MAX_EXTRA; i++, first = false)
		append_exporter(&b, &len, &cap, &cfg->extra[i], first);
	append_fmt(&b, &len, &cap, "\n);\n");
	if (cfg->n_operators > 0) {
		/* Same entry shape as exporters (docs/CONFIG.md). */
		append_fmt(&b, &len, &cap, "operators = (");
		for (size_t i = 0; i < cfg->n_operators && i < IT_MAX_EXTRA; i++)
			append_exporter(&b, &len, &cap, &cfg->operators[i], i == 0);
		append_fmt(&b, &len, &cap, "\n);\n");
	}

	const struct {
		const char *key;
		int value;
	} limits[] = {
	    {"max_connections", cfg->max_connections},
	    {"max_line_bytes", cfg->max_line_bytes},
	    {"idle_timeout_s", cfg->idle_timeout_s},
	    {"window", cfg->window},
	    {"max_pending", cfg->max_pending},
	    {"max_connections_per_ip", cfg->max_connections_per_ip},
	    {"hello_timeout_s", cfg->hello_timeout_s},
	    {"line_timeout_s", cfg->line_timeout_s},
	    {"max_failed_hellos", cfg->max_failed_hellos},
	    {"keepalive_s", cfg->keepalive_s},
	};
	bool open = false;
	for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
		if (limits[i].value == 0)
			continue;
		append_fmt(&b, &len, &cap, "%s %s = %d;", open ? "" : "limits = {", limits[i].key,
		           limits[i].value < 0 ? 0 : limits[i].value);
		open = true;
	}
	if (open)
		append_fmt(&b, &len, &cap, " };\n");
	if (cfg->batch_max_events != 0 || cfg->batch_max_delay_ms != 0) {
		append_fmt(&b, &len, &cap, "batch = {");
		if (cfg->batch_max_events != 0)
			append_fmt(&b, &len, &cap, " max_events = %d;", cfg->batch_max_events);
		if (cfg->batch_max_delay_ms != 0)
			append_fmt(&b, &len, &cap, " max_delay_ms = %d;", cfg->batch_max_delay_ms);
		append_fmt(&b, &len, &cap, " };\n");
	}
	append_fmt(&b, &len, &cap, "log = { level = \"%s\"; };\n",
	           cfg->log_level != NULL ? cfg->log_level : "debug");
	if (cfg->extra_text != NULL)
		append_fmt(&b, &len, &cap, "%s\n", cfg->extra_text);
	/* Tests run in parallel: unless a test wants the admin endpoint,
	 * keep it off rather than have every daemon race for port 9433. */
	if (cfg->extra_text == NULL || !config_sets_group(cfg->extra_text, "admin"))
		append_fmt(&b, &len, &cap, "admin = { listen = \"\"; };\n");
	buf_append(&b, &len, &cap, "", 1);
	return b;
}

/* Grow *buf (by doubling) and append n bytes of data. */
static void buf_append(char **buf, size_t *len, size_t *cap, const void *data, size_t n)
{
	if (*len + n > *cap) {
		size_t nc = *cap ? *cap : 256;
		while (nc < *len + n)
			nc *= 2;
		char *nb = realloc(*buf, nc);
		if (nb == NULL)
			abort();
		*buf = nb;
		*cap = nc;
	}
	memcpy(*buf + *len, data, n);
	*len += n;
}

/*
 * Read what the socket has into c->in, waiting until deadline (0: do not
 * wait).  Returns 1 when bytes came, 0 at EOF, -1 when nothing came in time.
 */
static int fill(struct it_client *c, long long deadline)
{
	char chunk[READ_CHUNK];
	for (;;) {
		ssize_t r = recv(c->fd, chunk, sizeof(chunk), 0);
		if (r > 0) {
			if (c->in_off > 0 && c->in_off >= c->in_len / 2) {
				memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
				c->in_len -= c->in_off;
				c->in_off = 0;
			}
			buf_append(&c->in, &c->in_len, &c->in_cap, chunk, (size_t)r);
			return 1;
		}
		if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
			/* ECONNRESET after the daemon closed on unread input is an EOF too. */
			c->eof = true;
			return 0;
		}
		if (errno == EINTR)
			continue;
		long long left = deadline - it_now_ms();
		if (left <= 0)
			return -1;
		struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
		if (poll(&pfd, 1, (int)left) < 0 && errno != EINTR)
			it_fail("poll: %s", strerror(errno));
	}
}

/* Take one complete line (without "\n") out of c->in. */
static bool take_line(struct it_client *c, char **line)
{
	char *start = c->in + c->in_off;
	char *nl = c->in_len > c->in_off ? memchr(start, '\n', c->in_len - c->in_off) : NULL;
	if (nl == NULL)
		return false;
	size_t n = (size_t)(nl - start);
	*line = malloc(n + 1);
	if (*line == NULL)
		abort();
	memcpy(*line, start, n);
	(*line)[n] = '\0';
	c->in_off += n + 1;
	if (c->in_off == c->in_len)
		c->in_off = c->in_len = 0;
	return true;
}

/* Keep a line collected by it_pump in c->lines. */
static void lines_push(struct it_client *c, char *line)
{
	if (c->n_lines == c->lines_cap) {
		size_t nc = c->lines_cap ? 2 * c->lines_cap : 64;
		char **nl = realloc(c->lines, nc * sizeof(*nl));
		if (nl == NULL)
			abort();
		c->lines = nl;
		c->lines_cap = nc;
	}
	c->lines[c->n_lines++] = line;
}

/* Parse a reply line; fail unless it is one JSON object. */
static json_t *parse_reply(const char *line)
{
	json_error_t err;
	json_t *o = json_loads(line, 0, &err);
	if (o == NULL || !json_is_object(o))
		it_fail("reply is not a JSON object (%s): %s", o ? "not an object" : err.text,
		        line);
	return o;
}

/* Connect, run sql with NULL-terminated text params, and demand rows back. */
/* A connection to dbname, or the test fails. */
static PGconn *db_open(const char *dbname)
{
	PGconn *conn = PQconnectdb(it_conninfo(dbname));
	if (PQstatus(conn) != CONNECTION_OK) {
		char msg[512];
		snprintf(msg, sizeof(msg), "%s", PQerrorMessage(conn));
		PQfinish(conn);
		it_fail("connect to %s: %s", it_conninfo(dbname), msg);
	}
	return conn;
}

/*
 * Close conn and return r, which must hold rows (rows) or at least have
 * succeeded; otherwise the test fails with what failed, why, and the SQL.
 */
static PGresult *db_check(PGconn *conn, PGresult *r, bool rows, const char *what, const char *sql)
{
	ExecStatusType t = PQresultStatus(r);
	if (t != PGRES_TUPLES_OK && (rows || t != PGRES_COMMAND_OK)) {
		char msg[512];
		snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(r));
		PQclear(r);
		PQfinish(conn);
		it_fail("%s failed: %s\n  %.300s", what, msg, sql);
	}
	PQfinish(conn);
	return r;
}

/* Run sql with the NULL-terminated text parameters in ap on a fresh connection. */
static PGresult *db_run(const char *dbname, const char *sql, va_list ap, bool rows)
{
	const char *params[MAX_PARAMS];
	int n = 0;
	const char *p;

	while ((p = va_arg(ap, const char *)) != NULL) {
		if (n == MAX_PARAMS)
			it_fail("more than %d query parameters", MAX_PARAMS);
		params[n++] = p;
	}
	PGconn *conn = db_open(dbname);
	PGresult *r = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
	return db_check(conn, r, rows, rows ? "query" : "statement", sql);
}

void it_webhook_wait_cursor(const char *db, const char *webhook, long long seq, int ms)
{
	long long deadline = it_now_ms() + ms;
	long long got = -1;
	for (;;) {
		got = it_db_long(db,
		                 "SELECT coalesce((SELECT last_seq FROM ordertrack.webhook_cursors"
		                 " WHERE webhook = $1), -1)",
		                 webhook, NULL);
		if (got == seq)
			return;
		if (it_now_ms() > deadline)
			break;
		it_sleep_ms(50);
	}
	it_fail("webhook_cursors.last_seq of %s is %lld, expected %lld", webhook, got, seq);
}

long long it_proc_cpu_ms(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		it_fail("open %s: %s", path, strerror(errno));
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* The name in parentheses may hold spaces: fields count from its end. */
	char *p = strrchr(buf, ')');
	unsigned long long utime = 0, stime = 0;
	/* After the name: state (3) ... utime (14) and stime (15). */
	if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
	                        &utime, &stime) != 2)
		it_fail("cannot read the CPU times in %s", path);
	return (long long)(utime + stime) * 1000 / sysconf(_SC_CLK_TCK);
}

/* Built with AddressSanitizer (as build-asan/ is, daemon and tests alike)? */
#if defined(__SANITIZE_ADDRESS__)
#define IT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define IT_ASAN 1
#endif
#endif

#ifdef IT_ASAN
static char *asan_saved;
static bool asan_had;
#endif

void it_asan_quarantine_off(void)
{
#ifdef IT_ASAN
	const char *old = getenv("ASAN_OPTIONS");
	asan_had = old != NULL;
	asan_saved = old ? strdup(old) : NULL;
	char *opts = NULL;
	if (asprintf(&opts, "%s%squarantine_size_mb=0", old ? old : "", old ? ":" : "") < 0)
		abort();
	setenv("ASAN_OPTIONS", opts, 1);
	free(opts);
#endif
}

void it_asan_quarantine_restore(void)
{
#ifdef IT_ASAN
	if (asan_had)
		setenv("ASAN_OPTIONS", asan_saved, 1);
	else
		unsetenv("ASAN_OPTIONS");
	free(asan_saved);
	asan_saved = NULL;
#endif
}

int it_connect_small_rcvbuf(const struct it_daemon *d)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int small = 4096;
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)) != 0)
		it_fail("socket: %s", strerror(errno));
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)d->port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		it_fail("connect: %s", strerror(errno));
	return fd;
}

int it_late_reader_send(struct it_daemon *d, const char *dbname, const char *prefix, int n)
{
	int fd = it_connect_small_rcvbuf(d);

	char *buf = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&buf, &len);
	assert_non_null(mem);
	fprintf(mem, "{\"type\":\"hello\",\"exporter\":\"%s\",\"token\":\"%s\"}\n", IT_EXPORTER,
	        IT_TOKEN);
	for (int i = 0; i < n; i++) {
		char id[64];
		snprintf(id, sizeof(id), "%s-%05d", prefix, i);
		char *ev = it_event_line(id, "shipment.checkpoint", "PO-LATE", "SH-LATE");
		fprintf(mem, "%s\n", ev);
		free(ev);
	}
	fclose(mem);
	for (size_t at = 0; at < len;) {
		ssize_t w = send(fd, buf + at, len - at, MSG_NOSIGNAL);
		if (w < 0 && errno != EINTR)
			it_fail("send: %s", strerror(errno));
		if (w > 0)
			at += (size_t)w;
	}
	free(buf);
	long long deadline = it_now_ms() + IT_STOP_MS;
	while (it_db_rows(dbname) < n) {
		if (it_now_ms() > deadline)
			it_fail("the events were not stored");
		it_sleep_ms(50);
	}
	return fd;
}

void it_late_reader_expect(int fd, const char *prefix, int n)
{
	char *in = NULL;
	size_t in_len = 0, in_cap = 0;
	for (;;) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		if (poll(&pfd, 1, IT_STOP_MS) <= 0)
			it_fail("the daemon neither answered nor closed within %d ms", IT_STOP_MS);
		if (in_len + 65536 > in_cap) {
			in_cap = in_len + 65536;
			in = realloc(in, in_cap + 1);
			assert_non_null(in);
		}
		ssize_t r = recv(fd, in + in_len, in_cap - in_len, 0);
		if (r <= 0)
			break; /* end of stream, or the reset that may follow it */
		in_len += (size_t)r;
	}
	close(fd);
	in = realloc(in, in_len + 1);
	assert_non_null(in);
	in[in_len] = '\0';
	int acked = 0;
	char *line = in, *nl = strchr(line, '\n'); /* the welcome */
	if (nl == NULL)
		it_fail("no welcome, only \"%s\"", in);
	for (line = nl + 1; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
		*nl = '\0';
		char id[64];
		snprintf(id, sizeof(id), "%s-%05d", prefix, acked);
		it_check_ack(line, id, "stored");
		acked++;
	}
	if (*line != '\0')
		it_fail("the stream ended inside a line, after %d acks: \"%.60s\"", acked, line);
	if (acked != n)
		it_fail("%d events stored, but the client got only %d acks", n, acked);
	free(in);
}
