/*
 * listener.c - the TCP listeners from `listen`.
 *
 * Each "host:port" is resolved and bound with evconnlistener.  When accept
 * fails for lack of file descriptors, the listener is switched off and a
 * one-second timer switches it on again, instead of spinning on a socket
 * that stays readable (as relayd does).
 */
#include <errno.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "log.h"
#include "server.h"

#define LISTEN_BACKLOG 511

struct listener {
	struct evconnlistener *l_evl;
	struct event *l_retry;
	char l_addr[80];
};

/* Split "host:port" or "[v6]:port" into its parts. */
bool listen_split(const char *s, char *host, size_t hcap, char *port, size_t pcap)
{
	const char *colon;
	if (s[0] == '[') {
		const char *end = strchr(s, ']');
		if (end == NULL || end[1] != ':')
			return false;
		snprintf(host, hcap, "%.*s", (int)(end - s - 1), s + 1);
		colon = end + 1;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL)
			return false;
		snprintf(host, hcap, "%.*s", (int)(colon - s), s);
	}
	snprintf(port, pcap, "%s", colon + 1);
	return true;
}

/* Format the address a socket is bound to. */
void listen_bound_address(int fd, char *out, size_t cap)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char host[INET6_ADDRSTRLEN] = "?";
	if (fd < 0 || getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
		snprintf(out, cap, "?");
		return;
	}
	if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		snprintf(out, cap, "[%s]:%d", host, ntohs(in6->sin6_port));
	} else {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		snprintf(out, cap, "%s:%d", host, ntohs(in->sin_port));
	}
}

/* A new connection arrived. */
static void listener_accept_cb(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa,
                               int salen, void *arg)
{
	(void)evl;
	(void)arg;
	conn_accept(fd, sa, salen);
}

/* Re-enable a listener paused by EMFILE. */
static void listener_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct listener *l = arg;
	(void)fd;
	(void)what;
	evconnlistener_enable(l->l_evl);
}

/* accept() failed: pause on descriptor exhaustion, log anything else. */
static void listener_error_cb(struct evconnlistener *evl, void *arg)
{
	struct listener *l = arg;
	int err = EVUTIL_SOCKET_ERROR();
	if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
		struct timeval tv = {1, 0};
		evconnlistener_disable(evl);
		evtimer_add(l->l_retry, &tv);
		log_warnx("accept paused", "addr=%s reason=%s retry_s=1", l->l_addr,
		          lq(evutil_socket_error_to_string(err)));
		return;
	}
	log_warnx("accept failed", "addr=%s reason=%s", l->l_addr,
	          lq(evutil_socket_error_to_string(err)));
}

/* Bind one "host:port"; NULL with a logged reason on failure. */
static struct listener *listener_open(const char *spec)
{
	char host[256], port[16];
	struct evutil_addrinfo hints, *ai = NULL;

	if (!listen_split(spec, host, sizeof(host), port, sizeof(port))) {
		log_error("cannot listen", "addr=%s reason=%s", lq(spec), lq("not host:port"));
		return NULL;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = EVUTIL_AI_PASSIVE | EVUTIL_AI_ADDRCONFIG;
	int rc = evutil_getaddrinfo(host[0] ? host : NULL, port, &hints, &ai);
	if (rc != 0) {
		log_error("cannot listen", "addr=%s reason=%s", lq(spec),
		          lq(evutil_gai_strerror(rc)));
		return NULL;
	}
	struct listener *l = calloc(1, sizeof(*l));
	if (l == NULL)
		abort();
	l->l_evl = evconnlistener_new_bind(server.base, listener_accept_cb, l,
	                                   LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
	                                       LEV_OPT_CLOSE_ON_EXEC,
	                                   LISTEN_BACKLOG, ai->ai_addr, (int)ai->ai_addrlen);
	evutil_freeaddrinfo(ai);
	if (l->l_evl == NULL) {
		log_error("cannot listen", "addr=%s reason=%s", lq(spec),
		          lq(evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR())));
		free(l);
		return NULL;
	}
	l->l_retry = evtimer_new(server.base, listener_retry_cb, l);
	if (l->l_retry == NULL)
		abort();
	evconnlistener_set_error_cb(l->l_evl, listener_error_cb);
	listen_bound_address(evconnlistener_get_fd(l->l_evl), l->l_addr, sizeof(l->l_addr));
	log_info("listening", "addr=%s", l->l_addr);
	return l;
}

/*
 * Raise the soft limit on open files to the hard one: every connection is
 * a descriptor, and the default soft limit (1024) is below
 * limits.max_connections.
 */
static void raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rlim_t was = rl.rlim_cur;
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
			log_info("file limit raised", "from=%llu to=%llu", (unsigned long long)was,
			         (unsigned long long)rl.rlim_cur);
	}
}

bool listeners_open(void)
{
	raise_nofile();
	server.listeners = calloc(server.cfg->n_listen, sizeof(*server.listeners));
	if (server.listeners == NULL)
		abort();
	for (size_t i = 0; i < server.cfg->n_listen; i++) {
		struct listener *l = listener_open(server.cfg->listen[i]);
		if (l == NULL)
			return false;
		server.listeners[server.n_listeners++] = l;
	}
	return true;
}

void listeners_close(void)
{
	for (size_t i = 0; i < server.n_listeners; i++) {
		struct listener *l = server.listeners[i];
		log_info("listener closed", "addr=%s", l->l_addr);
		evconnlistener_free(l->l_evl);
		event_free(l->l_retry);
		free(l);
	}
	free(server.listeners);
	server.listeners = NULL;
	server.n_listeners = 0;
}
