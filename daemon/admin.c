/* SPDX-License-Identifier: ISC */
/*
 * admin.c - health checks and metrics over HTTP (libevent's evhttp).
 *
 *   GET /healthz  200 "ok": the process runs and its loop turns.
 *   GET /readyz   200 "ready" while the ingest connection to PostgreSQL is
 *                 ready; 503 while it is not, and while the daemon drains.
 *   GET /metrics  the Prometheus text format (metrics.c).
 *
 * HEAD is answered like GET; other methods get 405 (one libevent does not
 * know, such as PROPFIND, 501 from libevent itself), other paths 404.  The
 * endpoint has no authentication: it listens on the loopback address by
 * default, and what it shows are counts, never exporter data.  Requests
 * are served by the daemon's one event loop and each answer is built in
 * memory, so a scrape costs a few microseconds of the loop.
 *
 * admin.listen is a restart-only key.  When the address cannot be bound
 * the daemon logs why and runs on without the endpoint, so that a port
 * taken by something else never stops ingest; a monitor that scrapes it
 * sees the target down.
 *
 * Out of file descriptors, accept fails and the listening socket stays
 * readable: evhttp's own listener would retry at once, forever, logging
 * each failure.  Ours is switched off and on again from a one-second
 * timer instead, as listener.c does for the event port.
 */
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <errno.h>
#include <sys/socket.h>

#include "admin.h"
#include "log.h"
#include "metrics.h"
#include "server.h"

#define ADMIN_TIMEOUT_S   10
#define ADMIN_MAX_HEADERS 8192
#define ADMIN_MAX_BODY    1024

static struct evhttp *admin_http;
static struct event *admin_retry; /* switches accept back on after EMFILE */
static char admin_addr[80];

/* Answer with a status, a content type and the body already in buf. */
static void admin_reply(struct evhttp_request *req, int code, const char *reason, const char *type,
                        struct evbuffer *buf)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	evhttp_add_header(h, "Content-Type", type);
	evhttp_add_header(h, "Cache-Control", "no-store");
	evhttp_send_reply(req, code, reason, buf);
}

/* Answer with a short plain-text body. */
static void admin_text(struct evhttp_request *req, int code, const char *reason, const char *text)
{
	struct evbuffer *buf = evbuffer_new();
	if (buf == NULL)
		abort();
	evbuffer_add_printf(buf, "%s\n", text);
	admin_reply(req, code, reason, "text/plain; charset=utf-8", buf);
	evbuffer_free(buf);
}

/* Every request: route by path. */
static void admin_request_cb(struct evhttp_request *req, void *arg)
{
	(void)arg;
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;

	if (path == NULL)
		path = "";
	if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
		admin_text(req, 405, "Method Not Allowed", "only GET and HEAD");
		return;
	}
	if (strcmp(path, "/healthz") == 0) {
		admin_text(req, 200, "OK", "ok");
	} else if (strcmp(path, "/readyz") == 0) {
		if (server.draining)
			admin_text(req, 503, "Service Unavailable", "draining");
		else if (!store_db_up(server.store))
			admin_text(req, 503, "Service Unavailable", "database unavailable");
		else
			admin_text(req, 200, "OK", "ready");
	} else if (strcmp(path, "/metrics") == 0) {
		struct evbuffer *buf = evbuffer_new();
		if (buf == NULL)
			abort();
		metrics_render(buf);
		admin_reply(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", buf);
		evbuffer_free(buf);
	} else {
		admin_text(req, 404, "Not Found", "not found: try /healthz, /readyz or /metrics");
	}
}

/* The pause after EMFILE is over: accept again. */
static void admin_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	evconnlistener_enable(arg);
}

/* accept() failed: pause on descriptor exhaustion, log anything else. */
static void admin_accept_error_cb(struct evconnlistener *evl, void *arg)
{
	(void)arg;
	int err = EVUTIL_SOCKET_ERROR();
	if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
		struct timeval tv = {1, 0};
		evconnlistener_disable(evl);
		evtimer_add(admin_retry, &tv);
		log_warnx("accept paused", "addr=%s reason=%s retry_s=1", admin_addr,
		          lq(evutil_socket_error_to_string(err)));
		return;
	}
	log_warnx("accept failed", "addr=%s reason=%s", admin_addr,
	          lq(evutil_socket_error_to_string(err)));
}

void admin_start(void)
{
	const char *spec = server.cfg->admin_listen;
	char host[256], port_s[16];
	unsigned short port;

	if (spec == NULL || spec[0] == '\0') {
		log_info("admin endpoint off", "reason=%s", lq("admin.listen is empty"));
		return;
	}
	if (!listen_split(spec, host, sizeof(host), port_s, sizeof(port_s))) {
		log_error("admin endpoint not started", "addr=%s reason=%s", lq(spec),
		          lq("not host:port"));
		return;
	}
	port = (unsigned short)strtoul(port_s, NULL, 10); /* checked by the config loader */
	admin_http = evhttp_new(server.base);
	if (admin_http == NULL)
		abort();
	evhttp_set_timeout(admin_http, ADMIN_TIMEOUT_S);
	evhttp_set_max_headers_size(admin_http, ADMIN_MAX_HEADERS);
	evhttp_set_max_body_size(admin_http, ADMIN_MAX_BODY);
	/* Let every method libevent knows reach the callback, which answers
	 * 405 itself; libevent answers one left out here with 501. */
	evhttp_set_allowed_methods(admin_http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
	                                           EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
	                                           EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
	                                           EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
	evhttp_set_gencb(admin_http, admin_request_cb, NULL);
	struct evhttp_bound_socket *bs = evhttp_bind_socket_with_handle(admin_http, host, port);
	if (bs == NULL) {
		log_error("admin endpoint not started", "addr=%s reason=%s", lq(spec),
		          lq(evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR())));
		evhttp_free(admin_http);
		admin_http = NULL;
		return;
	}
	listen_bound_address(evhttp_bound_socket_get_fd(bs), admin_addr, sizeof(admin_addr));
	struct evconnlistener *evl = evhttp_bound_socket_get_listener(bs);
	admin_retry = evtimer_new(server.base, admin_retry_cb, evl);
	if (admin_retry == NULL)
		abort();
	evconnlistener_set_error_cb(evl, admin_accept_error_cb);
	log_info("admin listening", "addr=%s paths=/healthz,/readyz,/metrics", admin_addr);
}

void admin_stop(void)
{
	/* The timer first: it refers to evhttp's listener. */
	if (admin_retry != NULL)
		event_free(admin_retry);
	admin_retry = NULL;
	if (admin_http != NULL)
		evhttp_free(admin_http);
	admin_http = NULL;
}
