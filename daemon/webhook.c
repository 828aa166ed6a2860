/*
 * webhook.c - webhook deliveries; see webhook.h.
 *
 * One deliverer per configured webhook, each a small state machine on the
 * event loop:
 *
 *   LOCKING  try for the webhook's advisory lock on the auxiliary session
 *   STANDBY  another daemon on the database holds it; a timer tries again
 *            every HOOK_STANDBY_S
 *   LOADING  read (or create) its row in ordertrack.webhook_cursors
 *   FETCHING ask for the first matching notification after the cursor
 *   IDLE     nothing to send; webhooks_wake() moves it to FETCHING
 *   POSTING  the POST is on the wire (libevent's evhttp)
 *   SAVING   a 2xx came back; the new cursor is being written
 *   WAITING  the POST failed; a timer retries the same notification after
 *            notify_backoff_ms(attempt)
 *
 * Deliveries happen in seq order and the cursor moves only after a 2xx, so
 * a crash between the 2xx and the cursor write repeats one delivery (at
 * least once); nothing is ever skipped or dropped.  A cursor write lost
 * with the auxiliary session, the daemon running on, repeats nothing: the
 * deliverer remembers the last notification its endpoint took and, reading
 * the cursor again on the new session, writes its seq if the row is behind
 * and the table still holds that notification there.  The cursor row is
 * shared by every daemon on the database that has a webhook of that id:
 * only the holder of the webhook's session advisory lock delivers, or two
 * daemons would each POST every notification and write the one cursor
 * back and forth.  The lock goes with the auxiliary session (a stop, a
 * crash, a lost connection), and a daemon in STANDBY then takes over from
 * the cursor.  A slow or dead endpoint holds up only its own deliverer:
 * ingest and the other webhooks do not wait for it.  https endpoints are
 * reached over OpenSSL bufferevents with the system's trusted certificates
 * (OpenSSL's default paths; SSL_CERT_FILE overrides them), the host name
 * checked against the certificate, TLS 1.2 at least.  Since libevent cannot reconnect a TLS
 * bufferevent, each https delivery uses a fresh connection.  Host names
 * are resolved with libevent's evdns (the system's resolv.conf and hosts
 * file, read once at start-up): getaddrinfo() would block the whole loop
 * for as long as a name server takes to answer.
 */
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "aux.h"
#include "log.h"
#include "notify.h"
#include "ot_build.h"
#include "server.h"
#include "webhook.h"

#define HOOK_TIMEOUT_S   10
#define HOOK_MAX_HEADERS (16 * 1024) /* the endpoint's answer: its headers, */
#define HOOK_MAX_BODY    (64 * 1024) /* its body */
#define HOOK_STANDBY_S   5           /* how often a standby tries for the lock */

enum hook_state {
	HOOK_LOCKING,
	HOOK_STANDBY,
	HOOK_LOADING,
	HOOK_FETCHING,
	HOOK_IDLE,
	HOOK_POSTING,
	HOOK_SAVING,
	HOOK_WAITING,
	HOOK_DISABLED, /* could not be set up */
};

struct hook {
	char *id;
	char *host;
	int port;
	bool https;
	char *path;
	char **secrets;
	size_t n_secrets;
	char *exporters; /* PostgreSQL array literal, or NULL for all */
	char *kinds;     /* likewise */

	enum hook_state state;
	bool owner; /* holds the webhook's lock on the current aux session */
	bool standby_logged;
	bool wake;         /* woken while busy: fetch again after */
	long long cursor;  /* last seq acknowledged by the endpoint */
	long long acked;   /* seq (of body) answered 2xx, its cursor not seen written; 0 none */
	long long scanned; /* none after cursor matched up to here; -1 unknown */
	long long seq;     /* the notification being delivered */
	char *body;        /* its JSON */
	unsigned attempt;  /* failed POSTs of this notification */
	unsigned failed;   /* its queries failed in a row, the session up */
	struct evhttp_connection *evcon;
	int post_error;  /* why libevent failed the POST in flight; -1 none */
	int post_status; /* the status its answer's headers gave; 0 none yet */
	bool moved;      /* a reload changed the endpoint: a new evcon at the next POST */
	struct event *retry;
	unsigned queries; /* its aux queries whose callbacks are still to come */
	bool dead;        /* stopped while a callback was pending */
};

static struct hook **hooks;
static size_t n_hooks;
static struct evdns_base *dns; /* resolves the endpoints' host names */

static const char load_sql[] =
    "WITH ins AS (INSERT INTO ordertrack.webhook_cursors (webhook) VALUES ($1)"
    " ON CONFLICT (webhook) DO NOTHING RETURNING last_seq)"
    " SELECT last_seq FROM ins"
    " UNION ALL SELECT last_seq FROM ordertrack.webhook_cursors WHERE webhook = $1";

/*
 * The first matching notification after $1, or none, and the newest seq
 * of the same snapshot.  Seqs are taken in commit order (003), so nothing
 * at or below that top can still appear: when none matched, the next
 * fetch starts there, and a filter that rarely matches does not read the
 * same rows again at every batch (each wake would otherwise scan every
 * notification since the last one delivered).
 */
static const char next_sql[] =
    "SELECT n.seq, n.body::text, t.top"
    " FROM (SELECT max(seq) AS top FROM ordertrack.notifications) t"
    " LEFT JOIN LATERAL (SELECT seq, body FROM ordertrack.notifications"
    " WHERE seq > $1::bigint AND ($2::text[] IS NULL OR exporter = ANY ($2::text[]))"
    " AND ($3::text[] IS NULL OR kind = ANY ($3::text[]))"
    " ORDER BY seq LIMIT 1) n ON true";

/* The two-key form keeps these locks apart from the bigint keys 7433001/2. */
static const char lock_sql[] = "SELECT pg_try_advisory_lock(7433003, hashtext($1))";
static const char unlock_sql[] = "SELECT pg_advisory_unlock(7433003, hashtext($1))";

/* Only forward: a save from a session that has lost the lock may come late. */
static const char save_sql[] =
    "UPDATE ordertrack.webhook_cursors SET last_seq = $2::bigint, updated_at = now()"
    " WHERE webhook = $1 AND last_seq < $2::bigint";

/*
 * The cursor a lost session did not write, written again: only forward, and
 * only if the row at that seq is the notification delivered ($3, its body
 * as next_sql read it).  A database replaced meanwhile (dropped and made
 * again, restored from a backup) numbers other notifications with the same
 * seqs, which must not be skipped.
 */
static const char resave_sql[] =
    "UPDATE ordertrack.webhook_cursors SET last_seq = $2::bigint, updated_at = now()"
    " WHERE webhook = $1 AND last_seq < $2::bigint AND EXISTS (SELECT 1"
    " FROM ordertrack.notifications WHERE seq = $2::bigint AND body::text = $3)";

static void hook_fetch(struct hook *h);
static void hook_post(struct hook *h);
static void hook_resaved_cb(void *arg, const PGresult *r);
static void hook_unpark(struct hook *h);

/* A query of h's worked: after failed ones, say the webhook is past them. */
static void hook_query_ok(struct hook *h)
{
	if (h->failed > 0)
		log_info("webhook query failing no more", "webhook=%s failures=%u", h->id,
		         h->failed);
	h->failed = 0;
}

/*
 * A query of h's failed.  When the session was lost (r is NULL), its
 * return wakes every deliverer (webhooks_aux_up).  When the session is up
 * (a lock or statement timeout, a cancelled query, a full disk), nothing
 * else may wake h for hours on a quiet database, its notifications
 * waiting: it tries again on the POSTs' schedule.
 */
static void hook_query_failed(struct hook *h, const PGresult *r)
{
	h->state = HOOK_IDLE;
	if (r == NULL)
		return;
	unsigned ms = notify_backoff_ms(++h->failed);
	log_warnx("webhook query failed", "webhook=%s attempt=%u retry_ms=%u", h->id, h->failed,
	          ms);
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	evtimer_add(h->retry, &tv);
}

/* strdup or abort. */
static char *xstrdup(const char *s)
{
	char *p = strdup(s);
	if (p == NULL)
		abort();
	return p;
}

/* A PostgreSQL array literal of ids or kinds (they need no escaping). */
static char *array_literal(char **v, size_t n)
{
	if (n == 0)
		return NULL;
	size_t cap = 3;
	for (size_t i = 0; i < n; i++)
		cap += strlen(v[i]) + 3;
	char *out = malloc(cap);
	if (out == NULL)
		abort();
	size_t len = 0;
	out[len++] = '{';
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(out + len, cap - len, "%s\"%s\"", i ? "," : "", v[i]);
	snprintf(out + len, cap - len, "}");
	return out;
}

/* Queue one of h's aux queries; its callback must call hook_answered() first. */
static void hook_query(struct hook *h, const char *sql, int nparams, const char *const *params,
                       aux_result_fn *fn)
{
	h->queries++;
	aux_query(server.aux, sql, nparams, params, fn, h);
}

/*
 * One of h's aux queries has answered.  True when h was stopped: the
 * caller only returns, and the last answer of a stopped deliverer frees
 * it (a reload that drops webhooks would otherwise keep each one until
 * exit, and a daemon reloaded for months would grow with every change).
 */
static bool hook_answered(struct hook *h)
{
	h->queries--;
	if (!h->dead)
		return false;
	if (h->queries == 0)
		hook_unpark(h);
	return true;
}

/* The cursor row was read. */
static void hook_loaded_cb(void *arg, const PGresult *r)
{
	struct hook *h = arg;
	if (hook_answered(h))
		return;
	if (r == NULL || PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) < 1) {
		h->cursor = -1;
		hook_query_failed(h, r);
		return;
	}
	hook_query_ok(h);
	h->cursor = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	/* What was scanned was another session's view: after a database
	 * replaced meanwhile, the same seqs are other notifications. */
	h->scanned = -1;
	log_info("webhook ready", "webhook=%s cursor=%lld", h->id, h->cursor);
	if (h->acked > h->cursor && h->acked == h->seq) {
		/* The endpoint took the notification in h->body, whose cursor
		 * write was lost with the session: write it now rather than
		 * deliver it a second time, if the table still holds it. */
		char seq[32];
		snprintf(seq, sizeof(seq), "%lld", h->seq);
		const char *params[3] = {h->id, seq, h->body};
		h->state = HOOK_SAVING;
		hook_query(h, resave_sql, 3, params, hook_resaved_cb);
		return;
	}
	h->acked = 0;
	hook_fetch(h);
}

/* Read (or create) the cursor row. */
static void hook_load(struct hook *h)
{
	const char *params[1] = {h->id};
	h->state = HOOK_LOADING;
	hook_query(h, load_sql, 1, params, hook_loaded_cb);
}

/* Give the lock back (a stopped deliverer's; the result is not needed). */
static void hook_unlock(const struct hook *h)
{
	const char *params[1] = {h->id};
	aux_query(server.aux, unlock_sql, 1, params, NULL, NULL);
}

/* The lock was tried: deliver from the cursor, or stand by. */
static void hook_locked_cb(void *arg, const PGresult *r)
{
	struct hook *h = arg;
	bool got = r != NULL && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
	           strcmp(PQgetvalue(r, 0, 0), "t") == 0;
	if (h->dead && got)
		hook_unlock(h); /* stopped while asking: not ours to keep */
	if (hook_answered(h))
		return;
	if (r == NULL || PQresultStatus(r) != PGRES_TUPLES_OK) {
		hook_query_failed(h, r);
		return;
	}
	hook_query_ok(h);
	if (!got) {
		if (!h->standby_logged)
			log_info("webhook standby", "webhook=%s reason=%s", h->id,
			         lq("another daemon on the database delivers it"));
		h->standby_logged = true;
		h->state = HOOK_STANDBY;
		struct timeval tv = {HOOK_STANDBY_S, 0};
		evtimer_add(h->retry, &tv);
		return;
	}
	h->owner = true;
	h->standby_logged = false;
	h->cursor = -1; /* another daemon may have moved it */
	hook_load(h);
}

/* Try for the webhook's lock. */
static void hook_lock(struct hook *h)
{
	const char *params[1] = {h->id};
	h->state = HOOK_LOCKING;
	hook_query(h, lock_sql, 1, params, hook_locked_cb);
}

/* The next notification after the cursor, or none. */
static void hook_fetched_cb(void *arg, const PGresult *r)
{
	struct hook *h = arg;
	if (hook_answered(h))
		return;
	if (r == NULL || PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
		hook_query_failed(h, r);
		return;
	}
	hook_query_ok(h);
	if (!h->owner) {
		/* Asked on a session since lost, and sent on the new one, which
		 * holds no lock: another daemon may deliver meanwhile.  Lock
		 * and read the cursor first. */
		hook_fetch(h);
		return;
	}
	if (PQgetisnull(r, 0, 0)) {
		/* Nothing matched up to the top: no need to read those again. */
		if (!PQgetisnull(r, 0, 2))
			h->scanned = strtoll(PQgetvalue(r, 0, 2), NULL, 10);
		h->state = HOOK_IDLE;
		if (h->wake) {
			h->wake = false;
			hook_fetch(h);
		}
		return;
	}
	h->seq = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	free(h->body);
	h->body = xstrdup(PQgetvalue(r, 0, 1));
	h->attempt = 0;
	hook_post(h);
}

/*
 * Ask for the first matching notification after the cursor.  Only while an
 * ingest session is ready, which means the schema is this daemon's: before
 * the first start's migrations the tables are not there, and a schema a
 * later release migrated is refused; a deliverer must not lock, write
 * cursors or POST on it meanwhile.  It waits in IDLE for server_db_ready().
 */
static void hook_fetch(struct hook *h)
{
	if (!store_db_up(server.store)) {
		h->state = HOOK_IDLE;
		return;
	}
	if (!h->owner) {
		hook_lock(h);
		return;
	}
	if (h->cursor < 0) {
		hook_load(h);
		return;
	}
	char after[32];
	snprintf(after, sizeof(after), "%lld", h->cursor > h->scanned ? h->cursor : h->scanned);
	const char *params[3] = {after, h->exporters, h->kinds};
	h->state = HOOK_FETCHING;
	h->wake = false;
	hook_query(h, next_sql, 3, params, hook_fetched_cb);
}

/* The cursor is saved: on to the next notification. */
static void hook_saved_cb(void *arg, const PGresult *r)
{
	struct hook *h = arg;
	if (hook_answered(h))
		return;
	if (r == NULL || PQresultStatus(r) != PGRES_COMMAND_OK) {
		/* Not saved: the cursor is read again, then this one is
		 * written there (hook_loaded_cb) or, if it cannot be, delivered
		 * again (at least once). */
		h->cursor = -1;
		hook_query_failed(h, r);
		return;
	}
	hook_query_ok(h);
	h->cursor = h->seq;
	h->acked = 0;
	hook_fetch(h);
}

/* The lost cursor write was made again, or found not to apply. */
static void hook_resaved_cb(void *arg, const PGresult *r)
{
	struct hook *h = arg;
	if (hook_answered(h))
		return;
	if (r == NULL || PQresultStatus(r) != PGRES_COMMAND_OK) {
		h->cursor = -1; /* tried again after the next load */
		hook_query_failed(h, r);
		return;
	}
	hook_query_ok(h);
	h->acked = 0;
	/* No row: another notification at that seq, or the cursor moved on;
	 * deliver from the cursor in the table. */
	h->cursor = strcmp(PQcmdTuples((PGresult *)r), "1") == 0 ? h->seq : -1;
	hook_fetch(h);
}

/*
 * Retry timer: the failed POST again; standing by, the lock; after a failed
 * query, that step again.
 */
static void hook_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct hook *h = arg;
	(void)fd;
	(void)what;
	switch (h->state) {
	case HOOK_WAITING:
		if (h->owner)
			hook_post(h);
		else
			hook_fetch(h); /* the session changed meanwhile: lock first */
		break;
	case HOOK_STANDBY:
	case HOOK_IDLE:
		hook_fetch(h);
		break;
	default:
		break; /* woken meanwhile, and on its way already */
	}
}

/* The answer's headers are in: its status, should its body be too large. */
static int hook_header_cb(struct evhttp_request *req, void *arg)
{
	struct hook *h = arg;
	h->post_status = evhttp_request_get_response_code(req);
	return 0;
}

/* libevent failed the POST: remember why, for hook_response_cb's line. */
static void hook_error_cb(enum evhttp_request_error err, void *arg)
{
	struct hook *h = arg;
	h->post_error = (int)err;
}

/* Why a delivery failed, for its log line; NULL when the status says it. */
static const char *hook_failure_reason(const struct hook *h, int code)
{
	/* A redirect is not followed: the signed body would go to a host the
	 * operator did not configure.  Saying so tells the operator to fix
	 * the url, which retrying alone never will. */
	if (code >= 300 && code < 400)
		return "redirect not followed: fix the url";
	if (code != 0)
		return NULL;
	/* libevent reports no error for a connection it could not make
	 * (refused, unreachable, the name not resolved). */
	switch (h->post_error) {
	case -1:
		return "could not connect";
	case EVREQ_HTTP_TIMEOUT:
		return "no answer in time";
	case EVREQ_HTTP_EOF:
		return "connection closed";
	case EVREQ_HTTP_INVALID_HEADER:
		return "headers not understood or too large";
	case EVREQ_HTTP_BUFFER_ERROR:
		return "connection failed";
	case EVREQ_HTTP_DATA_TOO_LONG:
		return "answer too large";
	default:
		return "request failed";
	}
}

/* The endpoint answered, or the request failed (req NULL or code 0). */
static void hook_response_cb(struct evhttp_request *req, void *arg)
{
	struct hook *h = arg;
	int code = req ? evhttp_request_get_response_code(req) : 0;
	if (h->dead)
		return;
	/* A body past HOOK_MAX_BODY is not read, but the status before it
	 * was: a 2xx answer took the notification, whatever page follows. */
	if (code == 0 && h->post_error == EVREQ_HTTP_DATA_TOO_LONG)
		code = h->post_status;
	if (code >= 200 && code < 300) {
		log_debug("webhook delivered", "webhook=%s seq=%lld status=%d", h->id, h->seq,
		          code);
		if (h->attempt > 0)
			log_info("webhook failing no more", "webhook=%s seq=%lld failures=%u",
			         h->id, h->seq, h->attempt);
		server.webhook_deliveries++;
		h->acked = h->seq;
		char seq[32];
		snprintf(seq, sizeof(seq), "%lld", h->seq);
		const char *params[2] = {h->id, seq};
		h->state = HOOK_SAVING;
		hook_query(h, save_sql, 2, params, hook_saved_cb);
		return;
	}
	h->attempt++;
	server.webhook_failures++;
	unsigned ms = notify_backoff_ms(h->attempt);
	const char *why = hook_failure_reason(h, code);
	log_warnx("webhook delivery failed",
	          "webhook=%s seq=%lld status=%d%s%s%s attempt=%u retry_ms=%u", h->id, h->seq, code,
	          why ? " reason=\"" : "", why ? why : "", why ? "\"" : "", h->attempt, ms);
	h->state = HOOK_WAITING;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	evtimer_add(h->retry, &tv);
}

/*
 * Bound what an endpoint can make the daemon wait for or keep: libevent's
 * client takes headers and bodies of any size by default, so an endpoint
 * answering without end would grow the daemon until it is killed.  The
 * answer's body is never read: past the bound the daemon stops reading,
 * and the status decides.  Headers past theirs fail the delivery.
 */
static void hook_bound(struct evhttp_connection *evcon)
{
	evhttp_connection_set_timeout(evcon, HOOK_TIMEOUT_S);
	evhttp_connection_set_max_headers_size(evcon, HOOK_MAX_HEADERS);
	evhttp_connection_set_max_body_size(evcon, HOOK_MAX_BODY);
}

static SSL_CTX *client_ctx; /* for https webhooks, made on first use */

/* The TLS client context: trusted roots from the system, TLS 1.2 at least. */
static SSL_CTX *tls_client_ctx(void)
{
	if (client_ctx != NULL)
		return client_ctx;
	client_ctx = SSL_CTX_new(TLS_client_method());
	if (client_ctx == NULL)
		abort();
	SSL_CTX_set_min_proto_version(client_ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(client_ctx, SSL_VERIFY_PEER, NULL);
	if (SSL_CTX_set_default_verify_paths(client_ctx) != 1)
		log_warnx("webhook trust store not loaded", "reason=%s",
		          lq(ERR_error_string(ERR_get_error(), NULL)));
	return client_ctx;
}

/* A fresh https connection to the hook's endpoint, or NULL. */
static struct evhttp_connection *https_connection(struct hook *h)
{
	SSL *ssl = SSL_new(tls_client_ctx());
	if (ssl == NULL)
		return NULL;
	SSL_set_tlsext_host_name(ssl, h->host);
	/* Check the certificate names this host (or IP address). */
	unsigned char addr[16];
	if (inet_pton(AF_INET, h->host, addr) == 1 || inet_pton(AF_INET6, h->host, addr) == 1)
		X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), h->host);
	else
		SSL_set1_host(ssl, h->host);
	struct bufferevent *bev =
	    bufferevent_openssl_socket_new(server.base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
	                                   BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (bev == NULL) {
		SSL_free(ssl);
		return NULL;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	struct evhttp_connection *evcon = evhttp_connection_base_bufferevent_new(
	    server.base, dns, bev, h->host, (unsigned short)h->port);
	if (evcon == NULL) {
		bufferevent_free(bev);
		return NULL;
	}
	hook_bound(evcon);
	return evcon;
}

/* A plain http connection to the hook's endpoint, kept between deliveries. */
static struct evhttp_connection *http_connection(struct hook *h)
{
	struct evhttp_connection *evcon =
	    evhttp_connection_base_new(server.base, dns, h->host, (unsigned short)h->port);
	if (evcon != NULL)
		hook_bound(evcon);
	return evcon;
}

/* POST the current notification, signed. */
static void hook_post(struct hook *h)
{
	if (server.draining) {
		/* Stopping: it waits at the cursor for the next start. */
		h->state = HOOK_IDLE;
		return;
	}
	struct evhttp_request *req = evhttp_request_new(hook_response_cb, h);
	size_t len = strlen(h->body);
	char sig[512], seq[32], host[300];
	if (req == NULL)
		abort();
	h->post_error = -1;
	h->post_status = 0;
	evhttp_request_set_error_cb(req, hook_error_cb);
	evhttp_request_set_header_cb(req, hook_header_cb);
	if (notify_signature_header((const char *const *)h->secrets, h->n_secrets,
	                            (long long)time(NULL), h->body, len, sig, sizeof(sig)) == 0) {
		/* Never send an unsigned delivery; retry as after a failure. */
		log_error("webhook signing failed", "webhook=%s seq=%lld", h->id, h->seq);
		evhttp_request_free(req);
		hook_response_cb(NULL, h);
		return;
	}
	snprintf(seq, sizeof(seq), "%lld", h->seq);
	/* An IPv6 address goes in brackets in the Host header. */
	snprintf(host, sizeof(host), strchr(h->host, ':') ? "[%s]:%d" : "%s:%d", h->host, h->port);
	struct evkeyvalq *hdr = evhttp_request_get_output_headers(req);
	evhttp_add_header(hdr, "Host", host);
	evhttp_add_header(hdr, "Content-Type", "application/json");
	evhttp_add_header(hdr, "User-Agent", "ordertrackd/" OT_VERSION);
	evhttp_add_header(hdr, "Ordertrack-Delivery", seq);
	evhttp_add_header(hdr, "Ordertrack-Signature", sig);
	evbuffer_add(evhttp_request_get_output_buffer(req), h->body, len);
	if (h->https || h->moved || h->evcon == NULL) {
		/* Not inside the old connection's callbacks here: free it. */
		if (h->evcon != NULL)
			evhttp_connection_free(h->evcon);
		h->moved = false;
		h->evcon = h->https ? https_connection(h) : http_connection(h);
		if (h->evcon == NULL) {
			log_error(
			    "webhook connection failed", "webhook=%s reason=%s", h->id,
			    lq(h->https ? "cannot set up TLS" : "cannot set up the connection"));
			evhttp_request_free(req);
			hook_response_cb(NULL, h);
			return;
		}
	}
	h->state = HOOK_POSTING;
	if (evhttp_make_request(h->evcon, req, EVHTTP_REQ_POST, h->path) != 0)
		hook_response_cb(NULL, h); /* libevent freed req; retry later */
}

/* Free the settings hook_configure() made. */
static void hook_unconfigure(struct hook *h)
{
	for (size_t i = 0; i < h->n_secrets; i++)
		free(h->secrets[i]);
	free(h->secrets);
	free(h->host);
	free(h->path);
	free(h->exporters);
	free(h->kinds);
	h->secrets = NULL;
	h->n_secrets = 0;
	h->host = h->path = h->exporters = h->kinds = NULL;
}

/* Equal strings, either of which may be NULL. */
static bool same_str(const char *a, const char *b)
{
	return a == NULL || b == NULL ? a == b : strcmp(a, b) == 0;
}

/* Would w deliver anything differently from h's settings? */
static bool hook_differs(const struct hook *h, const struct config_webhook *w,
                         const char *exporters, const char *kinds)
{
	if (!same_str(h->host, w->host) || h->port != w->port || h->https != w->https ||
	    !same_str(h->path, w->path) || h->n_secrets != w->n_secrets ||
	    !same_str(h->exporters, exporters) || !same_str(h->kinds, kinds))
		return true;
	for (size_t i = 0; i < w->n_secrets; i++)
		if (strcmp(h->secrets[i], w->secrets[i]) != 0)
			return true;
	return false;
}

/*
 * Take w's settings, for a new deliverer or one kept by a reload.  A POST
 * on the wire goes on as it was (its answer still moves the cursor); the
 * new settings apply from the next one.  A deliverer waiting to retry a
 * failed POST starts over now: the operator who fixed the url should not
 * wait out the old backoff (up to five minutes), and the notification it
 * held may be one the new filters leave out.
 */
static void hook_configure(struct hook *h, const struct config_webhook *w)
{
	char *exporters = array_literal(w->exporters, w->n_exporters);
	char *kinds = array_literal(w->kinds, w->n_kinds);
	if (h->state == HOOK_WAITING && hook_differs(h, w, exporters, kinds)) {
		evtimer_del(h->retry);
		h->state = HOOK_IDLE; /* webhooks_start() wakes it */
	}
	if (h->host == NULL || strcmp(h->host, w->host) != 0 || h->port != w->port ||
	    h->https != w->https)
		h->moved = true;
	hook_unconfigure(h);
	h->scanned = -1; /* the filters may have changed */
	h->host = xstrdup(w->host);
	h->port = w->port;
	h->https = w->https;
	h->path = xstrdup(w->path);
	h->n_secrets = w->n_secrets;
	h->secrets = calloc(w->n_secrets + 1, sizeof(char *));
	if (h->secrets == NULL)
		abort();
	for (size_t i = 0; i < w->n_secrets; i++)
		h->secrets[i] = xstrdup(w->secrets[i]);
	h->exporters = exporters;
	h->kinds = kinds;
}

/* Build a deliverer from its config; it connects at its first POST. */
static struct hook *hook_new(const struct config_webhook *w)
{
	struct hook *h = calloc(1, sizeof(*h));
	if (h == NULL)
		abort();
	h->id = xstrdup(w->id);
	hook_configure(h, w);
	h->cursor = -1;
	h->retry = evtimer_new(server.base, hook_retry_cb, h);
	if (h->retry == NULL)
		abort();
	/* The cursor is read once the schema is there: webhooks_wake() from
	 * server_db_ready(), or the first notification. */
	h->state = HOOK_IDLE;
	return h;
}

/* Release a stopped deliverer. */
static void hook_free(struct hook *h)
{
	hook_unconfigure(h);
	if (h->retry)
		event_free(h->retry);
	free(h->id);
	free(h->body);
	free(h);
}

/*
 * Stopped deliverers (config reload) that still have a query queued on
 * the auxiliary connection, whose callback will look at them: they are
 * marked dead and parked until its answer (hook_answered), or exit.
 */
static struct hook **parked;
static size_t n_parked;

/* The last answer of a parked deliverer came: release it. */
static void hook_unpark(struct hook *h)
{
	for (size_t i = 0; i < n_parked; i++) {
		if (parked[i] == h) {
			parked[i] = parked[--n_parked];
			break;
		}
	}
	hook_free(h);
}

/*
 * Stop a deliverer; its memory is released now, or with the answer of
 * the last query it has queued.  When a reload removed it, its lock is
 * given back, so that a daemon still configured with this webhook can
 * take it.
 */
static void hook_stop(struct hook *h, bool release)
{
	if (release && h->owner)
		hook_unlock(h);
	h->owner = false;
	h->dead = true;
	if (h->retry)
		event_del(h->retry);
	/* Its POST on the wire goes too, without a call to hook_response_cb. */
	if (h->evcon)
		evhttp_connection_free(h->evcon);
	h->evcon = NULL;
	if (h->queries == 0) {
		hook_free(h);
		return;
	}
	parked = realloc(parked, (n_parked + 1) * sizeof(*parked));
	if (parked == NULL)
		abort();
	parked[n_parked++] = h;
}

void webhooks_start(void)
{
	if (dns == NULL) {
		/* Idle, it holds no socket and no timer open. */
		dns = evdns_base_new(server.base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
		                                      EVDNS_BASE_DISABLE_WHEN_INACTIVE);
		/* Only short of memory or randomness: deliveries still go out,
		 * resolved by libevent with getaddrinfo(). */
		if (dns == NULL)
			log_warnx("webhook resolver not set up", "reason=%s",
			          lq("host names are resolved blocking the loop"));
	}
	/* A webhook the reload keeps (same id) keeps its deliverer: its POST
	 * on the wire, its retry timer and its lock.  Stopping it would throw
	 * away an answer already on its way and deliver that one again. */
	struct hook **old = hooks;
	size_t n_old = n_hooks;
	n_hooks = server.cfg->n_webhooks;
	hooks = calloc(n_hooks + 1, sizeof(*hooks));
	if (hooks == NULL)
		abort();
	for (size_t i = 0; i < n_hooks; i++) {
		const struct config_webhook *w = &server.cfg->webhooks[i];
		for (size_t j = 0; j < n_old && hooks[i] == NULL; j++) {
			if (old[j] != NULL && strcmp(old[j]->id, w->id) == 0) {
				hooks[i] = old[j];
				old[j] = NULL;
				hook_configure(hooks[i], w);
			}
		}
		if (hooks[i] == NULL)
			hooks[i] = hook_new(w);
	}
	for (size_t j = 0; j < n_old; j++)
		if (old[j] != NULL)
			hook_stop(old[j], true);
	free(old);
	if (store_db_up(server.store))
		webhooks_wake();
}

void webhooks_stop(void)
{
	/* The auxiliary session is gone already, and its locks with it. */
	for (size_t i = 0; i < n_hooks; i++)
		hook_stop(hooks[i], false);
	free(hooks);
	hooks = NULL;
	n_hooks = 0;
	for (size_t i = 0; i < n_parked; i++)
		hook_free(parked[i]);
	free(parked);
	parked = NULL;
	n_parked = 0;
	/* The connections are gone, and their lookups with them. */
	if (dns != NULL)
		evdns_base_free(dns, 0);
	dns = NULL;
	SSL_CTX_free(client_ctx);
	client_ctx = NULL;
}

bool webhooks_busy(void)
{
	for (size_t i = 0; i < n_hooks; i++) {
		const struct hook *h = hooks[i];
		/* A cursor write waits for the database only while it is up. */
		if (h->state == HOOK_POSTING || (h->state == HOOK_SAVING && aux_up(server.aux)))
			return true;
	}
	return false;
}

void webhooks_aux_up(void)
{
	/* A new session holds no lock: each deliverer tries again once its
	 * work in hand is done (hook_fetch), a standby at once. */
	for (size_t i = 0; i < n_hooks; i++) {
		struct hook *h = hooks[i];
		h->owner = false;
		if (h->state == HOOK_STANDBY) {
			evtimer_del(h->retry);
			h->state = HOOK_IDLE;
		} else if (h->state == HOOK_IDLE) {
			evtimer_del(h->retry); /* a failed query's: a new session */
		}
	}
	/* Not before the schema is there (a new database, the first start):
	 * server_db_ready() wakes them then. */
	if (store_db_up(server.store))
		webhooks_wake();
}

void webhooks_wake(void)
{
	for (size_t i = 0; i < n_hooks; i++) {
		struct hook *h = hooks[i];
		/* Idle with its timer set, a query of its failed: it waits
		 * for the timer, or a wake per commit would send (and log) the
		 * failing query at the rate of the batches. */
		if (h->state == HOOK_IDLE && !evtimer_pending(h->retry, NULL))
			hook_fetch(h);
		else if (h->state == HOOK_FETCHING)
			h->wake = true;
	}
}
