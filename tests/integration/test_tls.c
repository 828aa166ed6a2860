/*
 * test_tls.c - TLS on the event port of the real daemon.
 *
 * The test makes its certificates with the openssl CLI in its temp dir: a
 * CA, two server certificates for 127.0.0.1 from it (the second for the
 * reload test), a client certificate from it, and a client certificate
 * from a second, unrelated CA.  Its TLS client is OpenSSL on a blocking
 * socket with a receive timeout: SSL_connect, then lines through
 * SSL_write and SSL_read.  It checks the server's certificate against the
 * CA and its subjectAltName against 127.0.0.1.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "harness.h"

#define READ_TIMEOUT_S 10

/* Certificates, made once for the whole run. */
static char dir[1024];
static bool certs_made;

/* A TLS client connection. */
struct tc {
	int fd;
	SSL_CTX *ctx;
	SSL *ssl;
	char in[16384];
	size_t in_len;
};

/* Path of a file in the certificate directory, in a rotating static buffer. */
static const char *cpath(const char *name)
{
	static char bufs[8][PATH_MAX];
	static int next;
	char *b = bufs[next++ % 8];
	snprintf(b, PATH_MAX, "%s/%s", dir, name);
	return b;
}

/* Run a shell command in the certificate directory; fail the test if it fails. */
static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
	char cmd[4096];
	int n = snprintf(cmd, sizeof(cmd), "cd '%s' && (", dir);
	va_list ap;
	va_start(ap, fmt);
	n += vsnprintf(cmd + n, sizeof(cmd) - (size_t)n, fmt, ap);
	va_end(ap);
	snprintf(cmd + n, sizeof(cmd) - (size_t)n, ") >>openssl.log 2>&1");
	int st = system(cmd);
	if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		fail_msg("command failed (see %s/openssl.log): %s", dir, cmd);
}

/* A CA: name.key, name.pem. */
static void make_ca(const char *name, const char *cn)
{
	sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
	   "-keyout %s.key -out %s.pem -days 2 -subj '/CN=%s'",
	   name, name, cn);
}

/* A leaf with a newkey key (openssl req's -newkey argument): name.key, name.pem signed by ca. */
static void make_leaf_key(const char *name, const char *newkey, const char *ca, const char *cn,
                          int serial, const char *ext)
{
	sh("printf '%s\\n' > %s.ext && "
	   "openssl req -newkey %s -nodes "
	   "-keyout %s.key -out %s.csr -subj '/CN=%s' && "
	   "openssl x509 -req -in %s.csr -CA %s.pem -CAkey %s.key -set_serial %d -days 2 "
	   "-extfile %s.ext -out %s.pem",
	   ext, name, newkey, name, name, cn, name, ca, ca, serial, name, name);
}

/* A leaf with a P-256 key: name.key, name.pem signed by ca, with the extensions given. */
static void make_leaf(const char *name, const char *ca, const char *cn, int serial, const char *ext)
{
	make_leaf_key(name, "ec -pkeyopt ec_paramgen_curve:prime256v1", ca, cn, serial, ext);
}

/* Make every certificate the tests use, once. */
static void certs_make(void)
{
	if (certs_made)
		return;
	snprintf(dir, sizeof(dir), "%s/certs", it_tmpdir());
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", dir);
	assert_int_equal(system(cmd), 0);
	const char *srv = "subjectAltName=IP:127.0.0.1\\nextendedKeyUsage=serverAuth";
	const char *cli = "extendedKeyUsage=clientAuth";
	make_ca("ca", "ordertrack test CA");
	make_ca("other-ca", "some other CA");
	make_leaf("server", "ca", "ordertrack-server-one", 4001, srv);
	make_leaf("server2", "ca", "ordertrack-server-two", 4002, srv);
	/* RSA: the only key type that suites without forward secrecy can use. */
	make_leaf_key("server-rsa", "rsa:2048", "ca", "ordertrack-server-rsa", 4003, srv);
	make_leaf("client", "ca", "kivu-coffee client", 5001, cli);
	make_leaf("badclient", "other-ca", "kivu-coffee impostor", 6001, cli);
	certs_made = true;
}

/* The tls group for a config, into a static buffer. */
static const char *tls_text(const char *cert, const char *key, bool with_ca, bool require)
{
	static char b[4 * PATH_MAX];
	char ca[PATH_MAX + 16] = "";
	if (with_ca)
		snprintf(ca, sizeof(ca), "ca = \"%s\";", cpath("ca.pem"));
	snprintf(b, sizeof(b), "tls = { cert = \"%s\"; key = \"%s\"; %s require = %s; };",
	         cpath(cert), cpath(key), ca, require ? "true" : "false");
	return b;
}

/* A blocking TCP socket to the daemon with a receive timeout. */
static int tcp_open(const struct it_daemon *d)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	struct sockaddr_in sa;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)d->port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		fail_msg("connect to 127.0.0.1:%d failed", d->port);
	struct timeval tv = {READ_TIMEOUT_S, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return fd;
}

/*
 * Connect with TLS, presenting cert/key when given; with tls12_ciphers,
 * as a TLS 1.2 client offering only those suites.  NULL when the
 * handshake fails (the client's side of it).
 */
static struct tc *tc_connect(const struct it_daemon *d, const char *cert, const char *key,
                             const char *tls12_ciphers)
{
	struct tc *t = calloc(1, sizeof(*t));
	assert_non_null(t);
	t->ctx = SSL_CTX_new(TLS_client_method());
	assert_non_null(t->ctx);
	SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
	if (tls12_ciphers != NULL) {
		SSL_CTX_set_max_proto_version(t->ctx, TLS1_2_VERSION);
		assert_int_equal(SSL_CTX_set_cipher_list(t->ctx, tls12_ciphers), 1);
	}
	assert_int_equal(SSL_CTX_load_verify_locations(t->ctx, cpath("ca.pem"), NULL), 1);
	SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
	if (cert != NULL) {
		assert_int_equal(
		    SSL_CTX_use_certificate_file(t->ctx, cpath(cert), SSL_FILETYPE_PEM), 1);
		assert_int_equal(SSL_CTX_use_PrivateKey_file(t->ctx, cpath(key), SSL_FILETYPE_PEM),
		                 1);
	}
	t->fd = tcp_open(d);
	t->ssl = SSL_new(t->ctx);
	assert_non_null(t->ssl);
	X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), "127.0.0.1");
	SSL_set_fd(t->ssl, t->fd);
	if (SSL_connect(t->ssl) != 1) {
		ERR_clear_error();
		SSL_free(t->ssl);
		SSL_CTX_free(t->ctx);
		close(t->fd);
		free(t);
		return NULL;
	}
	return t;
}

/* Connect with TLS, presenting cert/key when given.  NULL when the handshake fails. */
static struct tc *tc_open(const struct it_daemon *d, const char *cert, const char *key)
{
	return tc_connect(d, cert, key, NULL);
}

/* Free a TLS client without a close_notify: its stream just ends. */
static void tc_free(struct tc *t)
{
	SSL_free(t->ssl);
	SSL_CTX_free(t->ctx);
	close(t->fd);
	free(t);
}

/* Close a TLS client. */
static void tc_close(struct tc *t)
{
	if (t == NULL)
		return;
	SSL_shutdown(t->ssl);
	tc_free(t);
}

/* Write a line and "\n"; false when the connection refuses it. */
static bool tc_send(struct tc *t, const char *line)
{
	char buf[8192];
	int n = snprintf(buf, sizeof(buf), "%s\n", line);
	assert_true(n > 0 && (size_t)n < sizeof(buf));
	return SSL_write(t->ssl, buf, n) == n;
}

/* Read one line (malloc'd, without "\n"); NULL on EOF, error or timeout. */
static char *tc_read_line(struct tc *t)
{
	for (;;) {
		char *nl = memchr(t->in, '\n', t->in_len);
		if (nl != NULL) {
			size_t len = (size_t)(nl - t->in);
			char *line = strndup(t->in, len);
			memmove(t->in, nl + 1, t->in_len - len - 1);
			t->in_len -= len + 1;
			return line;
		}
		if (t->in_len == sizeof(t->in))
			return NULL;
		int n = SSL_read(t->ssl, t->in + t->in_len, (int)(sizeof(t->in) - t->in_len));
		if (n <= 0) {
			ERR_clear_error();
			return NULL;
		}
		t->in_len += (size_t)n;
	}
}

/* The acks of events <prefix>0 to <prefix>n-1 (width digits), after the client's EOF. */
static void tc_expect_acks_after_eof(struct tc *t, const char *prefix, int width, int n)
{
	for (int i = 0; i < n; i++) {
		char id[32];
		snprintf(id, sizeof(id), "%s%0*d", prefix, width, i);
		char *line = tc_read_line(t);
		if (line == NULL)
			it_fail("no ack for %s after the client's EOF", id);
		it_check_ack(line, id, "stored");
		free(line);
	}
}

/* Say hello as IT_EXPORTER and require the welcome. */
static void tc_hello(struct tc *t)
{
	assert_true(tc_send(t, "{\"type\":\"hello\",\"exporter\":\"" IT_EXPORTER
	                       "\",\"token\":\"" IT_TOKEN "\"}"));
	char *line = tc_read_line(t);
	if (line == NULL)
		fail_msg("no welcome over TLS");
	assert_non_null(strstr(line, "\"welcome\""));
	free(line);
}

/* Send an event and require its ack with result "stored". */
static void tc_event_stored(struct tc *t, const char *id)
{
	char *ev = it_event_line(id, "shipment.checkpoint", "PO-TLS", "SH-TLS");
	assert_true(tc_send(t, ev));
	free(ev);
	char *line = tc_read_line(t);
	if (line == NULL)
		fail_msg("no ack for %s over TLS", id);
	it_check_ack(line, id, "stored");
	free(line);
}

/* Rows of one event id in a database. */
static long event_rows(const char *db, const char *id)
{
	return it_db_long(db, "SELECT count(*) FROM ordertrack.events WHERE event_id = $1", id,
	                  NULL);
}

/*
 * True when a TLS client (cert/key or none) cannot use the connection:
 * the handshake fails, or (TLS 1.3 checks the client after the client
 * thinks it is done) the hello gets no reply.
 */
static bool tc_refused(const struct it_daemon *d, const char *cert, const char *key)
{
	struct tc *t = tc_open(d, cert, key);
	if (t == NULL)
		return true;
	bool refused = true;
	if (tc_send(t, "{\"type\":\"hello\",\"exporter\":\"" IT_EXPORTER "\",\"token\":\"" IT_TOKEN
	               "\"}")) {
		char *line = tc_read_line(t);
		refused = line == NULL;
		free(line);
	}
	tc_close(t);
	return refused;
}

/* The subject of the certificate the server presents to a new connection. */
static char *server_subject(const struct it_daemon *d)
{
	struct tc *t = tc_open(d, NULL, NULL);
	if (t == NULL)
		fail_msg("TLS handshake failed");
	X509 *x = SSL_get1_peer_certificate(t->ssl);
	assert_non_null(x);
	char *s = X509_NAME_oneline(X509_get_subject_name(x), NULL, 0);
	long serial = ASN1_INTEGER_get(X509_get_serialNumber(x));
	char *out = NULL;
	assert_true(asprintf(&out, "%s serial=%ld", s, serial) > 0);
	OPENSSL_free(s);
	X509_free(x);
	tc_close(t);
	return out;
}

/* A TLS client says hello, sends an event, gets its ack; the row is there. */
static void test_tls_event(void **state)
{
	(void)state;
	certs_make();
	it_pg_createdb("tls_event");
	struct it_config cfg = {.name = "tls_event",
	                        .dbname = "tls_event",
	                        .extra_text = tls_text("server.pem", "server.key", false, true)};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	struct tc *t = tc_open(d, NULL, NULL);
	if (t == NULL)
		fail_msg("TLS handshake failed");
	tc_hello(t);
	tc_event_stored(t, "tls-ev-1");
	assert_true(tc_send(t, "{\"type\":\"ping\"}"));
	char *pong = tc_read_line(t);
	assert_non_null(pong);
	assert_non_null(strstr(pong, "pong"));
	free(pong);
	tc_close(t);
	assert_int_equal(event_rows("tls_event", "tls-ev-1"), 1);
	it_daemon_stop_clean(d);
}

/*
 * A TLS client that sends its events and then shuts its socket's sending
 * side without close_notify (what many clients do on exit) has ended its
 * stream, not failed: every event is stored and acked, and the daemon logs
 * "peer closed", not a socket error.  OpenSSL 3 reports such an EOF as an
 * error unless told not to.
 */
static void test_eof_without_close_notify(void **state)
{
	(void)state;
	enum { EVENTS = 50 };
	certs_make();
	it_pg_createdb("tls_eof");
	struct it_config cfg = {.name = "tls_eof",
	                        .dbname = "tls_eof",
	                        .extra_text = tls_text("server.pem", "server.key", false, true)};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	struct tc *t = tc_open(d, NULL, NULL);
	if (t == NULL)
		fail_msg("TLS handshake failed");
	tc_hello(t);
	off_t off = it_log_offset(d);
	for (int i = 0; i < EVENTS; i++) {
		char id[32];
		snprintf(id, sizeof(id), "tls-eof-%02d", i);
		char *ev = it_event_line(id, "shipment.checkpoint", "PO-TLS", "SH-TLS");
		assert_true(tc_send(t, ev));
		free(ev);
	}
	/* No SSL_shutdown: the TCP stream just ends. */
	assert_int_equal(shutdown(t->fd, SHUT_WR), 0);
	tc_expect_acks_after_eof(t, "tls-eof-", 2, EVENTS);
	it_log_expect(d, off, "reason=\"peer closed\"", IT_REPLY_MS);
	if (it_log_wait(d, off, "reason=\"socket error\"", 0) >= 0)
		it_fail("an EOF without close_notify was logged as a socket error");
	assert_int_equal(it_db_long("tls_eof",
	                            "SELECT count(*) FROM ordertrack.events WHERE event_id LIKE "
	                            "'tls-eof-%'",
	                            NULL),
	                 EVENTS);
	tc_free(t);
	it_daemon_stop_clean(d);
}

/*
 * The same EOF while replies are still on their way out: libevent stops
 * writing a TLS stream when it reads its end, yet every line sent is
 * answered.  Then a client that closes its socket with acks still to come
 * (the acks meet a reset) is let go at once, not kept until the write
 * deadline.
 */
static void test_eof_with_replies_pending(void **state)
{
	(void)state;
	enum { EVENTS = 300 };
	certs_make();
	it_pg_createdb("tls_eof_pending");
	struct it_config cfg = {.name = "tls_eof_pending",
	                        .dbname = "tls_eof_pending",
	                        .window = 10,
	                        .extra_text = tls_text("server.pem", "server.key", false, true)};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	struct tc *t = tc_open(d, NULL, NULL);
	if (t == NULL)
		fail_msg("TLS handshake failed");
	tc_hello(t);
	off_t off = it_log_offset(d);
	/* All lines in full TLS records, as a buffered writer sends them. */
	size_t len = 0, cap = (size_t)EVENTS * 512;
	char *all = malloc(cap);
	assert_non_null(all);
	for (int i = 0; i < EVENTS; i++) {
		char id[32];
		snprintf(id, sizeof(id), "tls-eofp-%03d", i);
		char *ev = it_event_line(id, "shipment.checkpoint", "PO-TLS", "SH-TLS");
		len += (size_t)snprintf(all + len, cap - len, "%s\n", ev);
		free(ev);
	}
	assert_true(len < cap);
	for (size_t at = 0; at < len; at += 16384) {
		int n = (int)(len - at < 16384 ? len - at : 16384);
		assert_int_equal(SSL_write(t->ssl, all + at, n), n);
	}
	free(all);
	assert_int_equal(shutdown(t->fd, SHUT_WR), 0);
	tc_expect_acks_after_eof(t, "tls-eofp-", 3, EVENTS);
	off = it_log_expect(d, off, "reason=\"peer closed\"", IT_REPLY_MS);
	tc_free(t);

	/* Gone before its acks: closed once writing them fails. */
	t = tc_open(d, NULL, NULL);
	if (t == NULL)
		fail_msg("TLS handshake failed");
	tc_hello(t);
	for (int i = 0; i < EVENTS; i++) {
		char id[32];
		snprintf(id, sizeof(id), "tls-gone-%03d", i);
		char *ev = it_event_line(id, "shipment.checkpoint", "PO-TLS", "SH-TLS");
		assert_true(tc_send(t, ev));
		free(ev);
	}
	tc_free(t);
	it_log_expect(d, off, "msg=\"connection closed\"", 5000);
	it_daemon_stop_clean(d);
}

/* Plain text to a TLS-only port: no JSON back, closed, logged; the daemon serves on. */
static void test_plain_refused(void **state)
{
	(void)state;
	certs_make();
	it_pg_createdb("tls_plain");
	struct it_config cfg = {.name = "tls_plain",
	                        .dbname = "tls_plain",
	                        .extra_text = tls_text("server.pem", "server.key", false, true)};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	off_t off = it_log_offset(d);
	int fd = tcp_open(d);
	const char hello[] =
	    "{\"type\":\"hello\",\"exporter\":\"" IT_EXPORTER "\",\"token\":\"" IT_TOKEN "\"}\n";
	assert_int_equal(send(fd, hello, sizeof(hello) - 1, MSG_NOSIGNAL),
	                 (ssize_t)sizeof(hello) - 1);
	char got[4096];
	size_t len = 0;
	for (;;) {
		ssize_t n = recv(fd, got + len, sizeof(got) - 1 - len, 0);
		if (n <= 0)
			break; /* EOF or reset: closed (a timeout fails below) */
		len += (size_t)n;
	}
	got[len] = '\0';
	assert_null(memchr(got, '{', len));
	close(fd);
	it_log_expect(d, off, "msg=\"tls handshake failed\"", IT_REPLY_MS);
	it_log_expect(d, off, "reason=\"tls handshake failed\"", IT_REPLY_MS);
	assert_true(it_daemon_alive(d));

	struct tc *t = tc_open(d, NULL, NULL);
	if (t == NULL)
		fail_msg("TLS handshake failed after the plain client");
	tc_hello(t);
	tc_close(t);
	it_daemon_stop_clean(d);
}

/* A refusal at accept (per-address cap) reaches a TLS peer as its JSON error. */
static void test_refusal_over_tls(void **state)
{
	(void)state;
	certs_make();
	it_pg_createdb("tls_cap");
	struct it_config cfg = {.name = "tls_cap",
	                        .dbname = "tls_cap",
	                        .max_connections_per_ip = 1,
	                        .extra_text = tls_text("server.pem", "server.key", false, true)};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	struct tc *first = tc_open(d, NULL, NULL);
	assert_non_null(first);
	tc_hello(first);
	struct tc *second = tc_open(d, NULL, NULL);
	if (second == NULL)
		fail_msg("TLS handshake failed for the refused client");
	char *line = tc_read_line(second);
	if (line == NULL)
		fail_msg("no error line for the refused TLS client");
	json_t *err = it_check_error(line, NULL, "too_many_connections");
	json_decref(err);
	free(line);
	assert_null(tc_read_line(second)); /* then closed */
	tc_close(second);
	tc_close(first);
	it_daemon_stop_clean(d);
}

/*
 * Refused TLS sockets that never handshake cannot be sent their refusal
 * line; they must still go at limits.hello_timeout_s rather than hold
 * places of limits.max_connections, so a normal client gets in afterwards.
 */
static void test_refused_without_handshake(void **state)
{
	(void)state;
	enum { SILENT = 3 };
	certs_make();
	it_pg_createdb("tls_refused");
	struct it_config cfg = {.name = "tls_refused",
	                        .dbname = "tls_refused",
	                        .max_connections = 4,
	                        .max_connections_per_ip = 2,
	                        .hello_timeout_s = 1,
	                        .extra_text = tls_text("server.pem", "server.key", false, true)};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	struct tc *a = tc_open(d, NULL, NULL);
	struct tc *b = tc_open(d, NULL, NULL);
	assert_non_null(a);
	assert_non_null(b);
	tc_hello(a);
	tc_hello(b);
	/* Over the per-address cap, and silent: no ClientHello ever comes. */
	off_t off = it_log_offset(d);
	int silent[SILENT];
	for (int i = 0; i < SILENT; i++) {
		silent[i] = tcp_open(d);
		off = it_log_expect(d, off, "msg=\"connection refused\"", IT_REPLY_MS);
	}
	tc_close(b);
	it_sleep_ms(2500); /* past the hello deadline of the refused sockets */
	struct tc *c = tc_open(d, NULL, NULL);
	if (c == NULL)
		fail_msg("TLS handshake failed after the refused sockets' deadline");
	tc_hello(c); /* a welcome, not too_many_connections */
	tc_close(c);
	for (int i = 0; i < SILENT; i++)
		close(silent[i]);
	tc_close(a);
	it_daemon_stop_clean(d);
}

/*
 * require = false: a plain and a TLS client on the same port both work; a
 * silent socket, or one that sends a byte late, goes at the hello deadline.
 */
static void test_mixed(void **state)
{
	(void)state;
	certs_make();
	it_pg_createdb("tls_mixed");
	struct it_config cfg = {.name = "tls_mixed",
	                        .dbname = "tls_mixed",
	                        .hello_timeout_s = 1,
	                        .extra_text = tls_text("server.pem", "server.key", false, false)};
	struct it_daemon *d = it_daemon_start(&cfg, true);

	/* A socket that sends nothing is closed at the hello deadline. */
	off_t off = it_log_offset(d);
	struct it_client *silent = it_connect(d);
	it_expect_eof(silent, 5000);
	it_close(silent);
	it_log_expect(d, off, "stage=sniff", IT_REPLY_MS);

	/* One byte just before the deadline, then nothing: the deadline
	 * still counts from the connect, not again from that byte. */
	long long t0 = it_now_ms();
	struct it_client *late = it_connect(d);
	it_sleep_ms(800);
	it_send_raw(late, "{", 1);
	char *line;
	while (it_try_read_line(late, 3000, &line) == IT_READ_LINE)
		;
	long long closed_ms = it_now_ms() - t0;
	it_close(late);
	if (closed_ms > 1500)
		fail_msg("a socket that sent one byte at 0.8 s was closed after %lld ms, not at "
		         "the 1 s hello deadline",
		         closed_ms);

	struct it_client *p = it_connect(d);
	struct tc *t = tc_open(d, NULL, NULL);
	if (t == NULL)
		fail_msg("TLS handshake failed on a mixed port");
	it_hello(p, IT_EXPORTER, IT_TOKEN);
	tc_hello(t);
	it_send_event(p, "mixed-plain-1", "shipment.checkpoint", "PO-TLS", "SH-TLS");
	it_expect_ack(p, "mixed-plain-1", "stored");
	tc_event_stored(t, "mixed-tls-1");
	tc_close(t);
	it_close(p);
	assert_int_equal(event_rows("tls_mixed", "mixed-plain-1"), 1);
	assert_int_equal(event_rows("tls_mixed", "mixed-tls-1"), 1);
	it_daemon_stop_clean(d);
}

/*
 * require = false: sockets whose first byte has not come count towards
 * limits.max_connections, so silent sockets cannot pile up past it.
 */
static void test_sniff_limit(void **state)
{
	(void)state;
	certs_make();
	it_pg_createdb("tls_sniff_limit");
	struct it_config cfg = {.name = "tls_sniff_limit",
	                        .dbname = "tls_sniff_limit",
	                        .hello_timeout_s = 30,
	                        .max_connections = 2,
	                        .extra_text = tls_text("server.pem", "server.key", false, false)};
	struct it_daemon *d = it_daemon_start(&cfg, true);

	struct it_client *silent1 = it_connect(d);
	struct it_client *silent2 = it_connect(d);
	off_t off = it_log_offset(d);
	/* The third is closed at once, long before the 30 s hello deadline. */
	struct it_client *third = it_connect(d);
	it_expect_eof(third, 3000);
	it_close(third);
	it_log_expect(d, off, "reason=too_many_connections stage=sniff", IT_REPLY_MS);

	/* When a silent one leaves, its place is free again. */
	it_close(silent1);
	long long deadline = it_now_ms() + 5000;
	for (;;) {
		char *line;
		struct it_client *p = it_connect(d);
		it_send(p, "{\"type\":\"hello\",\"exporter\":\"" IT_EXPORTER
		           "\",\"token\":\"" IT_TOKEN "\"}");
		int got = it_try_read_line(p, IT_REPLY_MS, &line);
		if (got == IT_READ_LINE && strstr(line, "\"welcome\"") != NULL) {
			free(line);
			it_close(p);
			break;
		}
		if (got == IT_READ_LINE)
			free(line);
		it_close(p);
		if (it_now_ms() > deadline)
			fail_msg("no connection admitted after a sniffing socket closed");
		usleep(50 * 1000);
	}
	it_close(silent2);
	it_daemon_stop_clean(d);
}

/*
 * require = false: sockets being sniffed also count towards
 * limits.max_connections_per_ip, so silent sockets from one address
 * cannot take every place of limits.max_connections from the others.
 */
static void test_sniff_per_ip(void **state)
{
	(void)state;
	enum { SILENT = 4 };
	certs_make();
	it_pg_createdb("tls_sniff_ip");
	struct it_config cfg = {.name = "tls_sniff_ip",
	                        .dbname = "tls_sniff_ip",
	                        .hello_timeout_s = 30,
	                        .max_connections = SILENT,
	                        .max_connections_per_ip = 2,
	                        .extra_text = tls_text("server.pem", "server.key", false, false)};
	struct it_daemon *d = it_daemon_start(&cfg, true);

	off_t off = it_log_offset(d);
	int silent[SILENT];
	for (int i = 0; i < SILENT; i++)
		silent[i] = tcp_open(d);
	it_sleep_ms(300); /* all accepted, two of them refused */

	/* Another address still gets in, in plain text. */
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	struct sockaddr_in sa;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK + 1); /* 127.0.0.2 */
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		fail_msg("cannot bind 127.0.0.2");
	sa.sin_port = htons((uint16_t)d->port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		fail_msg("connect to 127.0.0.1:%d failed", d->port);
	struct timeval tv = {READ_TIMEOUT_S, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	static const char hello[] =
	    "{\"type\":\"hello\",\"exporter\":\"" IT_EXPORTER "\",\"token\":\"" IT_TOKEN "\"}\n";
	assert_int_equal(send(fd, hello, sizeof(hello) - 1, MSG_NOSIGNAL),
	                 (ssize_t)(sizeof(hello) - 1));
	char reply[512];
	ssize_t n = recv(fd, reply, sizeof(reply) - 1, 0);
	reply[n > 0 ? n : 0] = '\0';
	if (strstr(reply, "\"welcome\"") == NULL)
		fail_msg("a client from 127.0.0.2 got \"%s\" instead of a welcome", reply);
	close(fd);
	it_log_expect(d, off, "reason=too_many_connections_per_ip stage=sniff", IT_REPLY_MS);
	for (int i = 0; i < SILENT; i++)
		close(silent[i]);
	it_daemon_stop_clean(d);
}

/* With ca: no certificate and a certificate from another CA are refused. */
static void test_client_certs(void **state)
{
	(void)state;
	certs_make();
	it_pg_createdb("tls_ca");
	struct it_config cfg = {.name = "tls_ca",
	                        .dbname = "tls_ca",
	                        .extra_text = tls_text("server.pem", "server.key", true, true)};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	off_t off = it_log_offset(d);

	assert_true(tc_refused(d, NULL, NULL));
	it_log_expect(d, off, "msg=\"tls handshake failed\"", IT_REPLY_MS);
	off = it_log_offset(d);
	assert_true(tc_refused(d, "badclient.pem", "badclient.key"));
	it_log_expect(d, off, "msg=\"tls handshake failed\"", IT_REPLY_MS);

	struct tc *t = tc_open(d, "client.pem", "client.key");
	if (t == NULL)
		fail_msg("TLS handshake failed with the right client certificate");
	tc_hello(t);
	tc_event_stored(t, "ca-ev-1");
	tc_close(t);
	assert_int_equal(event_rows("tls_ca", "ca-ev-1"), 1);
	it_daemon_stop_clean(d);
}

/*
 * A TLS 1.2 client offering only suite is refused at the handshake, and
 * the daemon logs the failure.
 */
static void tls12_suite_refused(struct it_daemon *d, const char *suite)
{
	off_t off = it_log_offset(d);
	struct tc *t = tc_connect(d, NULL, NULL, suite);
	if (t != NULL) {
		tc_close(t);
		fail_msg("TLS 1.2 handshake with %s succeeded", suite);
	}
	it_log_expect(d, off, "msg=\"tls handshake failed\"", IT_REPLY_MS);
}

/* A TLS 1.2 client offering only suite gets it and can say hello. */
static void tls12_suite_works(const struct it_daemon *d, const char *suite)
{
	struct tc *t = tc_connect(d, NULL, NULL, suite);
	if (t == NULL)
		fail_msg("TLS 1.2 handshake with %s failed", suite);
	assert_int_equal(SSL_version(t->ssl), TLS1_2_VERSION);
	assert_string_equal(SSL_get_cipher_name(t->ssl), suite);
	tc_hello(t);
	tc_close(t);
}

/*
 * TLS 1.2 takes only suites with forward secrecy and an AEAD cipher, with
 * the context made at start and with the one a SIGHUP rebuilds.  The
 * server key is RSA, so that OpenSSL's default list would accept the
 * suites refused here; TLS 1.3 keeps working.
 */
static void test_tls12_ciphers(void **state)
{
	(void)state;
	certs_make();
	it_pg_createdb("tls_ciphers");
	struct it_config cfg = {.name = "tls_ciphers",
	                        .dbname = "tls_ciphers",
	                        .extra_text =
	                            tls_text("server-rsa.pem", "server-rsa.key", false, true)};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	for (int round = 0; round < 2; round++) {
		if (round == 1) {
			off_t off = it_log_offset(d);
			kill(d->pid, SIGHUP);
			it_log_expect(d, off, "msg=\"tls reloaded\"", IT_REPLY_MS);
		}
		tls12_suite_refused(d, "AES128-SHA");           /* RSA key exchange, CBC */
		tls12_suite_refused(d, "AES128-GCM-SHA256");    /* RSA key exchange */
		tls12_suite_refused(d, "ECDHE-RSA-AES128-SHA"); /* CBC */
		tls12_suite_works(d, "ECDHE-RSA-AES128-GCM-SHA256");
		tls12_suite_works(d, "ECDHE-RSA-CHACHA20-POLY1305");
		tls12_suite_works(d, "DHE-RSA-AES256-GCM-SHA384");
		struct tc *t = tc_open(d, NULL, NULL);
		if (t == NULL)
			fail_msg("TLS 1.3 handshake failed");
		assert_int_equal(SSL_version(t->ssl), TLS1_3_VERSION);
		tc_hello(t);
		tc_close(t);
	}
	it_daemon_stop_clean(d);
}

static void expect_tls_unchanged(struct it_daemon *d, off_t off, const char *what);

/*
 * SIGHUP: a broken cert path keeps the old context, and the reload does not
 * say tls changed (it was listed, and an identical reload then said
 * nothing); a new valid cert switches.
 */
static void test_reload(void **state)
{
	(void)state;
	certs_make();
	it_pg_createdb("tls_reload");
	struct it_config cfg = {.name = "tls_reload",
	                        .dbname = "tls_reload",
	                        .extra_text = tls_text("server.pem", "server.key", false, true)};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	char *subj = server_subject(d);
	assert_non_null(strstr(subj, "ordertrack-server-one"));
	assert_non_null(strstr(subj, "serial=4001"));
	free(subj);

	/* A connection open across both reloads keeps working. */
	struct tc *kept = tc_open(d, NULL, NULL);
	assert_non_null(kept);
	tc_hello(kept);

	off_t off = it_log_offset(d);
	cfg.extra_text = tls_text("no-such-cert.pem", "server.key", false, true);
	it_daemon_rewrite(d, &cfg);
	kill(d->pid, SIGHUP);
	it_log_expect(d, off, "msg=\"tls reload failed\"", IT_REPLY_MS);
	it_log_expect(d, off, "no-such-cert.pem", IT_REPLY_MS);
	expect_tls_unchanged(d, off, "to a missing certificate");
	subj = server_subject(d);
	assert_non_null(strstr(subj, "serial=4001"));
	free(subj);

	off = it_log_offset(d);
	cfg.extra_text = tls_text("server2.pem", "server2.key", false, true);
	it_daemon_rewrite(d, &cfg);
	kill(d->pid, SIGHUP);
	it_log_expect(d, off, "msg=\"tls reloaded\"", IT_REPLY_MS);
	subj = server_subject(d);
	assert_non_null(strstr(subj, "ordertrack-server-two"));
	assert_non_null(strstr(subj, "serial=4002"));
	free(subj);

	tc_event_stored(kept, "reload-kept-1");
	tc_close(kept);
	it_daemon_stop_clean(d);
}

/* The next config reloaded line after off must not list tls among changed keys. */
static void expect_tls_unchanged(struct it_daemon *d, off_t off, const char *what)
{
	it_log_expect(d, off, "msg=\"config reloaded\" file=", IT_REPLY_MS);
	char *line = NULL;
	FILE *f = fopen(d->log_path, "r");
	assert_non_null(f);
	size_t cap = 0;
	fseeko(f, off, SEEK_SET);
	while (getline(&line, &cap, f) > 0) {
		const char *ch = strstr(line, "msg=\"config reloaded\"");
		if (ch == NULL || (ch = strstr(ch, " changed=")) == NULL)
			continue;
		char keys[256];
		snprintf(keys, sizeof(keys), ",%.*s,", (int)strcspn(ch + 9, " \n"), ch + 9);
		if (strstr(keys, ",tls,") != NULL)
			fail_msg("the reload that cannot turn TLS %s names tls as changed: %s",
			         what, line);
		break;
	}
	free(line);
	fclose(f);
}

/*
 * Adding the tls group, or removing it, takes a restart: a reload says so
 * ("config keys need a restart" keys=tls, with what stays), does not call
 * tls changed, and the port keeps speaking what it spoke.
 */
static void test_reload_tls_on_off(void **state)
{
	(void)state;
	certs_make();
	it_pg_createdb("tls_on_off");
	struct it_config cfg = {.name = "tls_turned_on", .dbname = "tls_on_off"};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	off_t off = it_log_offset(d);
	cfg.extra_text = tls_text("server.pem", "server.key", false, true);
	it_daemon_rewrite(d, &cfg);
	kill(d->pid, SIGHUP);
	it_log_expect(d, off,
	              "msg=\"config keys need a restart\" keys=tls reason=\"turning TLS on takes a "
	              "restart; the port stays plain text\"",
	              IT_REPLY_MS);
	/* Nothing changed in effect: the reload does not name tls as changed. */
	expect_tls_unchanged(d, off, "on");
	struct it_client *c = it_connect(d);
	it_hello(c, IT_EXPORTER, IT_TOKEN);
	it_daemon_stop_clean(d);

	struct it_config on = {.name = "tls_turned_off",
	                       .dbname = "tls_on_off",
	                       .extra_text = tls_text("server.pem", "server.key", false, true)};
	d = it_daemon_start(&on, true);
	off = it_log_offset(d);
	on.extra_text = NULL;
	it_daemon_rewrite(d, &on);
	kill(d->pid, SIGHUP);
	it_log_expect(
	    d, off,
	    "msg=\"config keys need a restart\" keys=tls reason=\"turning TLS off takes a "
	    "restart; TLS stays on\"",
	    IT_REPLY_MS);
	expect_tls_unchanged(d, off, "off");
	struct tc *t = tc_open(d, NULL, NULL);
	assert_non_null(t);
	tc_hello(t);
	tc_event_stored(t, "on-off-1");
	tc_close(t);
	it_daemon_stop_clean(d);
}

/*
 * Run the daemon (with -t when check) on cfg, without a database; returns
 * its exit status and its output (malloc'd) in *out.
 */
static int daemon_run(const struct it_config *cfg, bool check, char **out)
{
	char conf[PATH_MAX], cmd[2 * PATH_MAX + 64];
	snprintf(conf, sizeof(conf), "%s/%s.conf", it_tmpdir(), cfg->name);
	it_config_write(cfg, conf);
	const char *daemon = getenv("OT_DAEMON");
	assert_non_null(daemon);
	snprintf(cmd, sizeof(cmd), "'%s' %s -c '%s' 2>&1", daemon, check ? "-t" : "", conf);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	size_t cap = 65536, len = 0;
	char *buf = calloc(1, cap);
	assert_non_null(buf);
	size_t n;
	while (len + 1 < cap && (n = fread(buf + len, 1, cap - 1 - len, p)) > 0)
		len += n;
	int st = pclose(p);
	assert_true(WIFEXITED(st));
	*out = buf;
	return WEXITSTATUS(st);
}

/* A cert that cannot be loaded at start-up: exit 78 with the file and the reason. */
static void test_bad_cert_at_start(void **state)
{
	(void)state;
	certs_make();
	char *out = NULL;
	struct it_config cfg = {.name = "tls_bad",
	                        .dbname = "tls_bad",
	                        .extra_text = tls_text("missing.pem", "server.key", false, true)};
	for (int check = 0; check <= 1; check++) {
		assert_int_equal(daemon_run(&cfg, check, &out), 78);
		if (strstr(out, "missing.pem") == NULL ||
		    strstr(out, "No such file or directory") == NULL)
			fail_msg("no file or reason in: %s", out);
		free(out);
	}

	/* A key that does not belong to the certificate. */
	struct it_config mism = {.name = "tls_mism",
	                         .dbname = "tls_bad",
	                         .extra_text = tls_text("server.pem", "server2.key", false, true)};
	assert_int_equal(daemon_run(&mism, false, &out), 78);
	if (strstr(out, "server2.key") == NULL || strstr(out, "mismatch") == NULL)
		fail_msg("no mismatch reason in: %s", out);
	free(out);

	/* A ca file that is not PEM. */
	struct it_config badca = {.name = "tls_badca",
	                          .dbname = "tls_bad",
	                          .extra_text = tls_text("server.pem", "server.key", false, true)};
	char text[4 * PATH_MAX];
	snprintf(text, sizeof(text), "tls = { cert = \"%s\"; key = \"%s\"; ca = \"%s\"; };",
	         cpath("server.pem"), cpath("server.key"), cpath("server.ext"));
	badca.extra_text = text;
	assert_int_equal(daemon_run(&badca, false, &out), 78);
	if (strstr(out, "tls.ca") == NULL || strstr(out, "server.ext") == NULL)
		fail_msg("no ca reason in: %s", out);
	free(out);
}

/*
 * A private key others can read: -t and start-up warn naming the file and
 * its mode (a warning, not a refusal); at 0600 they say nothing.
 */
static void test_key_mode_warned(void **state)
{
	(void)state;
	certs_make();
	sh("cp server.key open.key && chmod 0644 open.key");
	char *out = NULL;
	struct it_config cfg = {.name = "tls_keymode",
	                        .dbname = "tls_keymode",
	                        .extra_text = tls_text("server.pem", "open.key", false, true)};
	assert_int_equal(daemon_run(&cfg, true, &out), 0);
	char want[PATH_MAX + 64];
	snprintf(want, sizeof(want), "file=%s mode=0644", cpath("open.key"));
	if (strstr(out, "msg=\"tls key readable by others\"") == NULL ||
	    strstr(out, want) == NULL || strstr(out, "readable_by=others") == NULL)
		fail_msg("-t does not warn about a world-readable key: %s", out);
	free(out);
	sh("chmod 0600 open.key");
	assert_int_equal(daemon_run(&cfg, true, &out), 0);
	if (strstr(out, "readable by others") != NULL)
		fail_msg("-t warns about a key at 0600: %s", out);
	free(out);
}

/*
 * A slow loris over TLS: after its hello, a peer sends the bytes of one
 * record (a line begun) a byte every 300 ms, never finishing it.  Nothing
 * is decrypted until the record is whole, and each byte keeps the idle
 * timeout away: the line deadline must count from the record's first
 * byte, and close it at limits.line_timeout_s (2 s here), as it does for
 * plain text.
 */
static void test_record_trickled(void **state)
{
	(void)state;
	certs_make();
	it_pg_createdb("tls_trickle");
	struct it_config cfg = {.name = "tls_trickle",
	                        .dbname = "tls_trickle",
	                        .line_timeout_s = 2,
	                        .idle_timeout_s = 30,
	                        .extra_text = tls_text("server.pem", "server.key", false, true)};
	struct it_daemon *d = it_daemon_start(&cfg, true);
	struct tc *t = tc_open(d, NULL, NULL);
	assert_non_null(t);
	tc_hello(t);
	off_t off = it_log_offset(d);

	/* The record goes to memory; its bytes go out one at a time. */
	BIO *mem = BIO_new(BIO_s_mem());
	assert_non_null(mem);
	SSL_set0_wbio(t->ssl, mem);
	static const char part[] = "{\"type\":\"ping\"";
	assert_int_equal(SSL_write(t->ssl, part, (int)sizeof(part) - 1), (int)sizeof(part) - 1);
	char rec[512];
	int n = BIO_read(mem, rec, sizeof(rec));
	assert_true(n > 10);
	long long start = it_now_ms();
	bool closed = false;
	for (int i = 0; i < n - 1 && !closed; i++) {
		if (send(t->fd, rec + i, 1, MSG_NOSIGNAL) != 1)
			closed = true; /* the daemon closed it: the reset came back */
		closed = closed || it_log_wait(d, off, "reason=\"line timeout\"", 300) >= 0;
	}
	long long took = it_now_ms() - start;
	if (!closed)
		fail_msg("a TLS record trickled for %lld ms kept its connection open", took);
	it_log_expect(d, off, "reason=\"line timeout\"", IT_REPLY_MS);
	if (took > 4500)
		fail_msg("closed %lld ms after the record's first byte, line_timeout_s is 2", took);
	tc_free(t);

	/* A record's header alone, then nothing: OpenSSL takes the header in
	 * and says it holds nothing, but the line has begun all the same. */
	t = tc_open(d, NULL, NULL);
	assert_non_null(t);
	tc_hello(t);
	off = it_log_offset(d);
	mem = BIO_new(BIO_s_mem());
	assert_non_null(mem);
	SSL_set0_wbio(t->ssl, mem);
	assert_int_equal(SSL_write(t->ssl, part, (int)sizeof(part) - 1), (int)sizeof(part) - 1);
	n = BIO_read(mem, rec, sizeof(rec));
	assert_true(n > 5);
	start = it_now_ms();
	assert_int_equal(send(t->fd, rec, 5, MSG_NOSIGNAL), 5);
	it_log_expect(d, off, "reason=\"line timeout\"", 4500);
	took = it_now_ms() - start;
	if (took < 1500)
		fail_msg("a record's header closed %lld ms after it came, line_timeout_s is 2",
		         took);
	tc_free(t);
	it_daemon_stop_clean(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_tls_event, it_test_teardown),
	    cmocka_unit_test_teardown(test_eof_without_close_notify, it_test_teardown),
	    cmocka_unit_test_teardown(test_eof_with_replies_pending, it_test_teardown),
	    cmocka_unit_test_teardown(test_plain_refused, it_test_teardown),
	    cmocka_unit_test_teardown(test_refusal_over_tls, it_test_teardown),
	    cmocka_unit_test_teardown(test_refused_without_handshake, it_test_teardown),
	    cmocka_unit_test_teardown(test_mixed, it_test_teardown),
	    cmocka_unit_test_teardown(test_sniff_limit, it_test_teardown),
	    cmocka_unit_test_teardown(test_sniff_per_ip, it_test_teardown),
	    cmocka_unit_test_teardown(test_client_certs, it_test_teardown),
	    cmocka_unit_test_teardown(test_tls12_ciphers, it_test_teardown),
	    cmocka_unit_test_teardown(test_reload, it_test_teardown),
	    cmocka_unit_test_teardown(test_reload_tls_on_off, it_test_teardown),
	    cmocka_unit_test_teardown(test_bad_cert_at_start, it_test_teardown),
	    cmocka_unit_test_teardown(test_key_mode_warned, it_test_teardown),
	    cmocka_unit_test_teardown(test_record_trickled, it_test_teardown),
	};
	it_env_init("tls");
	return it_env_fini(cmocka_run_group_tests(tests, NULL, NULL));
}
