/* SPDX-License-Identifier: ISC */
/*
 * tls.c - TLS on the event port; see tls.h.
 *
 * One SSL_CTX serves every new connection.  A reload builds a whole new
 * context and swaps it in only when cert, key and ca all loaded; each SSL
 * holds a reference to the context it was made from, so connections that
 * are open keep theirs until they close.
 *
 * With tls.require = false the port takes both TLS and plain text: before
 * a bufferevent exists, a one-shot read event waits (at most
 * limits.hello_timeout_s) for the peer's first byte and peeks at it.  A
 * TLS handshake record starts with 0x16; a line of JSON never does.
 * Sockets being sniffed count towards limits.max_connections and
 * limits.max_connections_per_ip like connections do: one that would pass
 * a limit is closed at once, without a reply, since its protocol is not
 * known yet.  (Counted only as connections, one address could hold every
 * place of max_connections with silent sockets.)
 *
 * Turning TLS on or off takes a restart: a reload that adds or removes the
 * tls group is logged and not applied, so a typo cannot silently open the
 * port to plain text.
 */
#include "tls.h"

#include <errno.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"
#include "peers.h"
#include "server.h"

#define TLS_RECORD_HANDSHAKE 0x16 /* first byte of a ClientHello record */
#define TLS_SESSION_CONTEXT  "ordertrackd"

/*
 * TLS 1.2 suites: ECDHE or DHE key exchange (forward secrecy) with an
 * AEAD cipher only, the usual "intermediate" set.  OpenSSL's default
 * list also takes plain RSA key exchange and CBC suites such as
 * AES128-SHA.  TLS 1.3 suites are all of that kind and keep OpenSSL's
 * defaults (SSL_CTX_set_ciphersuites is not called).
 */
#define TLS12_CIPHERS                                                                              \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                               \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                               \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"                               \
	"DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384"

/* A socket whose first byte is awaited to choose between TLS and plain text. */
struct sniff {
	TAILQ_ENTRY(sniff) sn_entry;
	struct event *sn_ev;
	int sn_fd;
	struct sockaddr_storage sn_sa;
	int sn_salen;
	struct peer *sn_peer; /* counts this socket in its address's connections */
	tls_ready_fn *sn_ready;
	int64_t sn_start_ms; /* accepted at, on the monotonic clock */
};

static SSL_CTX *tls_ctx; /* NULL: the port speaks plain text only */
static bool tls_require; /* of the config tls_ctx was built from */
static TAILQ_HEAD(, sniff) sniffs = TAILQ_HEAD_INITIALIZER(sniffs);
static unsigned n_sniffs; /* in sniffs */

/* malloc'd printf, or abort: out-of-memory is not a code path. */
static char *xprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xprintf(const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;
	va_start(ap, fmt);
	int n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0)
		abort();
	return s;
}

/*
 * Append the reason of OpenSSL error e to buf (used bytes so far) as
 * "; reason": an errno from a system call as its strerror text, the
 * "system lib" entries that OpenSSL stacks above it left out.
 */
static size_t reason_append(char *buf, size_t cap, size_t used, unsigned long e)
{
	char one[256];
	const char *r;
	if (used >= cap)
		return used;
	/* libevent also queues SSL_get_error()'s code itself (library 0): not a reason. */
	if (!ERR_SYSTEM_ERROR(e) && ERR_GET_LIB(e) == 0)
		return used;
	if (ERR_SYSTEM_ERROR(e)) {
		r = strerror(ERR_GET_REASON(e));
	} else {
		r = ERR_reason_error_string(e);
		if (r != NULL && strcmp(r, "system lib") == 0)
			return used;
		if (r == NULL) {
			ERR_error_string_n(e, one, sizeof(one));
			r = one;
		}
	}
	return used + (size_t)snprintf(buf + used, cap - used, "%s%s", used ? "; " : "", r);
}

/*
 * Take OpenSSL's queued errors into buf as "reason; reason", oldest
 * first; fallback when the queue is empty.
 */
static const char *openssl_reasons(char *buf, size_t cap, const char *fallback)
{
	size_t used = 0;
	unsigned long e;
	buf[0] = '\0';
	while ((e = ERR_get_error()) != 0)
		used = reason_append(buf, cap, used, e);
	if (buf[0] == '\0')
		snprintf(buf, cap, "%s", fallback);
	return buf;
}

/* A new server context from the tls keys of cfg; NULL with *errstr. */
static SSL_CTX *ctx_build(const struct config *cfg, char **errstr)
{
	char why[512];
	ERR_clear_error();
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL) {
		*errstr = xprintf("tls: cannot create a context: %s",
		                  openssl_reasons(why, sizeof(why), "unknown error"));
		return NULL;
	}
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
		*errstr = xprintf("tls: cannot require TLS 1.2: %s",
		                  openssl_reasons(why, sizeof(why), "unknown error"));
		goto fail;
	}
	if (SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1) {
		*errstr = xprintf("tls: cannot set the TLS 1.2 ciphers: %s",
		                  openssl_reasons(why, sizeof(why), "unknown error"));
		goto fail;
	}
	/* DHE suites need a group: OpenSSL picks one to match the key's strength. */
	SSL_CTX_set_dh_auto(ctx, 1);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE |
	                             SSL_OP_NO_RENEGOTIATION);
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
	/* OpenSSL 3 reports a peer closing without close_notify as an error,
	 * and libevent 2.1's allow_dirty_shutdown (bev_tls) does not catch
	 * that error: the connection would be dropped with its lines unread.
	 * Our lines carry their own framing, so a plain EOF is a clean end. */
	SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
#endif
	/* libevent may hand SSL_write a moved buffer after a WANT_WRITE. */
	SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert) != 1) {
		*errstr = xprintf("tls.cert %s: %s", cfg->tls_cert,
		                  openssl_reasons(why, sizeof(why), "cannot load"));
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_key, SSL_FILETYPE_PEM) != 1) {
		*errstr = xprintf("tls.key %s: %s", cfg->tls_key,
		                  openssl_reasons(why, sizeof(why), "cannot load"));
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		*errstr = xprintf("tls.key %s does not match tls.cert %s: %s", cfg->tls_key,
		                  cfg->tls_cert, openssl_reasons(why, sizeof(why), "mismatch"));
		goto fail;
	}
	if (cfg->tls_ca != NULL) {
		if (SSL_CTX_load_verify_locations(ctx, cfg->tls_ca, NULL) != 1) {
			*errstr = xprintf("tls.ca %s: %s", cfg->tls_ca,
			                  openssl_reasons(why, sizeof(why), "cannot load"));
			goto fail;
		}
		STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->tls_ca);
		if (names == NULL) {
			*errstr =
			    xprintf("tls.ca %s: %s", cfg->tls_ca,
			            openssl_reasons(why, sizeof(why), "no certificate in it"));
			goto fail;
		}
		SSL_CTX_set_client_CA_list(ctx, names);
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
		/* Needed for session resumption once peers are verified. */
		SSL_CTX_set_session_id_context(ctx, (const unsigned char *)TLS_SESSION_CONTEXT,
		                               sizeof(TLS_SESSION_CONTEXT) - 1);
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

bool tls_init(const struct config *cfg, char **errstr)
{
	*errstr = NULL;
	if (!cfg->tls_enabled)
		return true;
	SSL_CTX *ctx = ctx_build(cfg, errstr);
	if (ctx == NULL)
		return false;
	SSL_CTX_free(tls_ctx);
	tls_ctx = ctx;
	tls_require = cfg->tls_require;
	return true;
}

bool tls_reload(const struct config *cfg)
{
	if (!cfg->tls_enabled) {
		if (tls_ctx != NULL)
			log_warnx("config keys need a restart", "keys=tls reason=%s",
			          lq("turning TLS off takes a restart; TLS stays on"));
		return true;
	}
	if (tls_ctx == NULL) {
		log_warnx("config keys need a restart", "keys=tls reason=%s",
		          lq("turning TLS on takes a restart; the port stays plain text"));
		return true;
	}
	char *err = NULL;
	SSL_CTX *ctx = ctx_build(cfg, &err);
	if (ctx == NULL) {
		log_error("tls reload failed", "reason=%s", lq(err));
		free(err);
		return false;
	}
	/* Open connections hold their own references to the old context. */
	SSL_CTX_free(tls_ctx);
	tls_ctx = ctx;
	tls_require = cfg->tls_require;
	log_info("tls reloaded", "cert=%s ca=%s require=%s", lq(cfg->tls_cert),
	         cfg->tls_ca ? lq(cfg->tls_ca) : "-", tls_require ? "true" : "false");
	return true;
}

/* Free one sniff record (not its socket) and uncount it from its address. */
static void sniff_free(struct sniff *sn)
{
	TAILQ_REMOVE(&sniffs, sn, sn_entry);
	n_sniffs--;
	peer_conn_closed(sn->sn_peer);
	event_free(sn->sn_ev);
	free(sn);
}

void tls_fini(void)
{
	struct sniff *sn;
	while ((sn = TAILQ_FIRST(&sniffs)) != NULL) {
		close(sn->sn_fd);
		sniff_free(sn);
	}
	SSL_CTX_free(tls_ctx);
	tls_ctx = NULL;
}

/* A TLS bufferevent over fd, in the server role, from the current context. */
static struct bufferevent *bev_tls(int fd)
{
	SSL *ssl = SSL_new(tls_ctx);
	if (ssl == NULL)
		abort();
	struct bufferevent *bev = bufferevent_openssl_socket_new(
	    server.base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL)
		abort();
	/* A peer closing without close_notify has ended its stream: EOF. */
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return bev;
}

/* What tls_watch_raw() was given: one conn.c function for every socket. */
static tls_raw_fn *raw_fn;

/* OpenSSL read from the socket BIO: bytes came, whole records or not. */
static long raw_read_cb(BIO *b, int oper, const char *argp, size_t len, int argi, long argl,
                        int ret, size_t *processed)
{
	(void)argp;
	(void)len;
	(void)argi;
	(void)argl;
	if (oper == (BIO_CB_READ | BIO_CB_RETURN) && ret > 0 && processed != NULL &&
	    *processed > 0 && raw_fn != NULL)
		raw_fn(BIO_get_callback_arg(b));
	return ret;
}

void tls_watch_raw(struct bufferevent *bev, tls_raw_fn *fn, void *arg)
{
	SSL *ssl = bufferevent_openssl_get_ssl(bev);
	BIO *rbio = ssl != NULL ? SSL_get_rbio(ssl) : NULL;
	if (rbio == NULL)
		return;
	raw_fn = fn;
	BIO_set_callback_arg(rbio, arg);
	BIO_set_callback_ex(rbio, raw_read_cb);
}

bool tls_raw_pending(struct bufferevent *bev)
{
	SSL *ssl = bufferevent_openssl_get_ssl(bev);
	return ssl != NULL && SSL_has_pending(ssl);
}

/* A plain bufferevent over fd. */
static struct bufferevent *bev_plain(int fd)
{
	struct bufferevent *bev = bufferevent_socket_new(server.base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL)
		abort();
	return bev;
}

/* The peer's address as text, for the few lines logged before a connection exists. */
static void sniff_peer(const struct sniff *sn, char *out, size_t cap)
{
	char host[NI_MAXHOST], port[NI_MAXSERV];
	if (getnameinfo((const struct sockaddr *)&sn->sn_sa, (socklen_t)sn->sn_salen, host,
	                sizeof(host), port, sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV) != 0)
		snprintf(out, cap, "unknown");
	else if (sn->sn_sa.ss_family == AF_INET6)
		snprintf(out, cap, "[%s]:%s", host, port);
	else
		snprintf(out, cap, "%s:%s", host, port);
}

/* Milliseconds on the monotonic clock. */
static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait for the first byte until the hello deadline, counted from the accept. */
static void sniff_wait(struct sniff *sn)
{
	int64_t left = server.cfg->hello_timeout_s * (int64_t)1000 - (mono_ms() - sn->sn_start_ms);
	if (left < 0)
		left = 0;
	struct timeval tv = {(time_t)(left / 1000), (suseconds_t)(left % 1000) * 1000};
	event_add(sn->sn_ev, &tv);
}

/* The first byte arrived (or the deadline passed): choose the stream. */
static void sniff_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sniff *sn = arg;
	char peer[NI_MAXHOST + NI_MAXSERV + 4];
	const char *why = NULL;
	unsigned char b = 0;

	if (what & EV_TIMEOUT) {
		why = "hello timeout";
	} else if (server.draining) {
		why = "shutdown";
	} else {
		ssize_t n = recv(fd, &b, 1, MSG_PEEK);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
			sniff_wait(sn);
			return;
		}
		if (n == 0)
			why = "peer closed";
		else if (n < 0)
			why = errno == ECONNRESET ? "connection reset" : "socket error";
	}
	if (why != NULL) {
		sniff_peer(sn, peer, sizeof(peer));
		log_info("connection closed", "peer=%s reason=%s stage=sniff", peer, lq(why));
		close(fd);
		sniff_free(sn);
		return;
	}
	struct bufferevent *bev = b == TLS_RECORD_HANDSHAKE ? bev_tls(fd) : bev_plain(fd);
	struct sockaddr_storage sa = sn->sn_sa;
	int salen = sn->sn_salen;
	tls_ready_fn *ready = sn->sn_ready;
	long waited_ms = (long)(mono_ms() - sn->sn_start_ms);
	sniff_free(sn); /* uncounted first: the connection counts itself */
	ready(bev, (const struct sockaddr *)&sa, salen, waited_ms);
}

void tls_accept(int fd, const struct sockaddr *sa, int salen, tls_ready_fn *ready)
{
	if (tls_ctx == NULL) {
		ready(bev_plain(fd), sa, salen, 0);
		return;
	}
	if (tls_require) {
		ready(bev_tls(fd), sa, salen, 0);
		return;
	}
	struct sniff *sn = calloc(1, sizeof(*sn));
	if (sn == NULL)
		abort();
	sn->sn_fd = fd;
	if (salen > (int)sizeof(sn->sn_sa))
		salen = (int)sizeof(sn->sn_sa);
	memcpy(&sn->sn_sa, sa, (size_t)salen);
	sn->sn_salen = salen;
	sn->sn_peer = peer_get(sa);
	const char *refused = NULL;
	if (server.n_conns + n_sniffs >= (unsigned)server.cfg->max_connections)
		refused = "too_many_connections";
	else if (peer_conns(sn->sn_peer) >= (unsigned)server.cfg->max_connections_per_ip)
		refused = "too_many_connections_per_ip";
	if (refused != NULL) {
		char peer[NI_MAXHOST + NI_MAXSERV + 4];
		sniff_peer(sn, peer, sizeof(peer));
		log_warnx("connection refused", "peer=%s reason=%s stage=sniff", peer, refused);
		metrics_conn_rejected();
		close(fd);
		free(sn);
		return;
	}
	peer_conn_opened(sn->sn_peer);
	sn->sn_ready = ready;
	sn->sn_ev = event_new(server.base, fd, EV_READ, sniff_cb, sn);
	if (sn->sn_ev == NULL)
		abort();
	TAILQ_INSERT_TAIL(&sniffs, sn, sn_entry);
	n_sniffs++;
	sn->sn_start_ms = mono_ms();
	sniff_wait(sn);
}

bool tls_handshake_failed(struct bufferevent *bev, const char *peer)
{
	SSL *ssl = bufferevent_openssl_get_ssl(bev);
	if (ssl == NULL || SSL_is_init_finished(ssl))
		return false;
	char why[512];
	size_t used = 0;
	unsigned long e;
	why[0] = '\0';
	/* libevent moved OpenSSL's errors for this stream onto the bufferevent. */
	while ((e = bufferevent_get_openssl_error(bev)) != 0)
		used = reason_append(why, sizeof(why), used, e);
	long vr = SSL_get_verify_result(ssl);
	if (vr != X509_V_OK && used < sizeof(why))
		used += (size_t)snprintf(why + used, sizeof(why) - used, "%s%s", used ? "; " : "",
		                         X509_verify_cert_error_string(vr));
	if (why[0] == '\0') {
		int err = EVUTIL_SOCKET_ERROR();
		snprintf(why, sizeof(why), "%s",
		         err ? evutil_socket_error_to_string(err) : "closed during the handshake");
	}
	log_warnx("tls handshake failed", "peer=%s reason=%s", peer, lq(why));
	return true;
}
