/*
 * pgsock.c - one libpq connection in the event loop; see pgsock.h.
 *
 * The socket gets one persistent event, set again only when what it waits
 * for or the socket itself changes: libpq may open a new socket while
 * connecting (trying the next address of a host), so PQsocket() is read
 * every time.
 *
 * Connecting has a deadline, kept as the timeout of the socket's event:
 * PQconnectPoll never gives up by itself, and a server (or a firewall)
 * that accepts and then says nothing would hold a session in connecting
 * for good.  Keepalives catch a peer that vanishes later, on TCP.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pgsock.h"

void pgsock_init(struct pgsock *ps, struct event_base *base, int priority, event_callback_fn io_cb,
                 event_callback_fn retry_cb, void *arg, int backoff_min_ms, int backoff_max_ms)
{
	ps->pg = NULL;
	ps->base = base;
	ps->io_cb = io_cb;
	ps->arg = arg;
	ps->priority = priority;
	ps->ev_added = false;
	ps->backoff_min_ms = backoff_min_ms;
	ps->backoff_max_ms = backoff_max_ms;
	ps->backoff_ms = backoff_min_ms;
	ps->connecting = false;
	ps->timed_out = false;
	ps->ev_retry = evtimer_new(base, retry_cb, arg);
	if (ps->ev_retry == NULL)
		abort();
}

/* The connect_timeout in effect for pg (conninfo or PGCONNECT_TIMEOUT), in seconds. */
static int pgsock_connect_timeout(PGconn *pg)
{
	PQconninfoOption *opts = PQconninfo(pg);
	int s = 0;
	for (PQconninfoOption *o = opts; o != NULL && o->keyword != NULL; o++)
		if (strcmp(o->keyword, "connect_timeout") == 0 && o->val != NULL)
			s = atoi(o->val);
	PQconninfoFree(opts);
	if (s <= 0)
		return PGSOCK_CONNECT_TIMEOUT_S;
	return s < 2 ? 2 : s; /* libpq's own minimum */
}

bool pgsock_start(struct pgsock *ps, const char *conninfo, const char *app_name,
                  PQnoticeReceiver notice, void *notice_arg)
{
	/*
	 * expand_dbname: conninfo may be a whole connection string.  A key
	 * later in the list wins, so the keepalives before dbname are only
	 * defaults: with the kernel's own (two hours idle), a server host
	 * that vanished would hold a batch in flight for hours.  libpq
	 * ignores them on Unix sockets.
	 */
	const char *keys[] = {
	    "keepalives", "keepalives_idle",           "keepalives_interval", "keepalives_count",
	    "dbname",     "fallback_application_name", "client_encoding",     NULL};
	/* client_encoding last: whatever conninfo says, the daemon's text is
	 * UTF-8 (and the lanes refuse a database that is not). */
	const char *vals[] = {"1", "30", "10", "3", conninfo, app_name, "UTF8", NULL};

	ps->pg = PQconnectStartParams(keys, vals, 1);
	if (ps->pg == NULL)
		abort(); /* libpq could not allocate */
	PQsetNoticeReceiver(ps->pg, notice, notice_arg);
	ps->timed_out = false;
	ps->up = false;
	ps->sqlstate[0] = ps->fatal[0] = '\0';
	if (PQstatus(ps->pg) == CONNECTION_BAD)
		return false;
	ps->connect_timeout_s = pgsock_connect_timeout(ps->pg);
	clock_gettime(CLOCK_MONOTONIC, &ps->deadline);
	ps->deadline.tv_sec += ps->connect_timeout_s;
	ps->connecting = true;
	pgsock_watch(ps, EV_WRITE);
	return true;
}

const char *pgsock_keep_idle_sql(const PGconn *pg)
{
	return PQserverVersion(pg) >= 140000 ? "SET idle_session_timeout = 0" : NULL;
}

/*
 * Time left until the deadline of connecting; zero once it has passed, or
 * nearly: libevent times the event from its cached clock and may wake a
 * little early, and a poll then would meet a socket not ready yet (libpq
 * would take a connect in progress for done and fail on another reason).
 */
static struct timeval pgsock_time_left(const struct pgsock *ps)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	long long us = (long long)(ps->deadline.tv_sec - now.tv_sec) * 1000000 +
	               (ps->deadline.tv_nsec - now.tv_nsec) / 1000;
	if (us < 10000)
		us = 0;
	struct timeval tv = {(time_t)(us / 1000000), (suseconds_t)(us % 1000000)};
	return tv;
}

enum pgsock_step pgsock_connect_poll(struct pgsock *ps)
{
	struct timeval left = pgsock_time_left(ps);
	if (left.tv_sec == 0 && left.tv_usec == 0) {
		ps->timed_out = true;
		return PGSOCK_FAILED;
	}
	switch (PQconnectPoll(ps->pg)) {
	case PGRES_POLLING_READING:
		pgsock_watch(ps, EV_READ);
		return PGSOCK_WAITING;
	case PGRES_POLLING_WRITING:
		pgsock_watch(ps, EV_WRITE);
		return PGSOCK_WAITING;
	case PGRES_POLLING_FAILED:
		return PGSOCK_FAILED;
	default:
		/* Connected: the socket's event loses its timeout. */
		ps->connecting = false;
		if (ps->ev_added)
			event_del(&ps->ev);
		ps->ev_added = false;
		pgsock_watch(ps, ps->what);
		if (PQsetnonblocking(ps->pg, 1) != 0)
			return PGSOCK_FAILED;
		ps->up = true;
		clock_gettime(CLOCK_MONOTONIC, &ps->connected_at);
		const char *host = PQhost(ps->pg), *port = PQport(ps->pg);
		snprintf(ps->server, sizeof(ps->server), "%s:%s", host ? host : "?",
		         port ? port : "?");
		return PGSOCK_CONNECTED;
	}
}

void pgsock_notice(struct pgsock *ps, const PGresult *r)
{
	const char *sev = PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED);
	if (sev == NULL || (strcmp(sev, "FATAL") != 0 && strcmp(sev, "PANIC") != 0))
		return;
	const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
	const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
	snprintf(ps->sqlstate, sizeof(ps->sqlstate), "%s", state ? state : "");
	snprintf(ps->fatal, sizeof(ps->fatal), "%s", msg ? msg : "");
}

const char *pgsock_loss_fields(struct pgsock *ps)
{
	ps->fields[0] = '\0';
	if (!ps->up)
		return ps->fields;
	/* A read that met the end of the connection fails before libpq has
	 * parsed what came with it: the FATAL that said why.  PQisBusy parses
	 * it (libpq keeps the input of a dropped connection), and on an idle
	 * session hands it to the notice receiver, so to pgsock_notice. */
	if (ps->pg != NULL && ps->sqlstate[0] == '\0')
		(void)PQisBusy(ps->pg);
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	double up = (double)(now.tv_sec - ps->connected_at.tv_sec) +
	            (double)(now.tv_nsec - ps->connected_at.tv_nsec) / 1e9;
	int n =
	    snprintf(ps->fields, sizeof(ps->fields), " server=%s up_s=%.1f", lq(ps->server), up);
	if (ps->sqlstate[0] != '\0' && n > 0 && (size_t)n < sizeof(ps->fields))
		snprintf(ps->fields + n, sizeof(ps->fields) - (size_t)n,
		         " sqlstate=%s server_said=%s", lq(ps->sqlstate), lq(ps->fatal));
	return ps->fields;
}

const char *pgsock_error(struct pgsock *ps)
{
	if (!ps->timed_out)
		return PQerrorMessage(ps->pg);
	snprintf(ps->error, sizeof(ps->error), "timeout expired: not connected within %d s",
	         ps->connect_timeout_s);
	return ps->error;
}

void pgsock_watch(struct pgsock *ps, short what)
{
	int fd = PQsocket(ps->pg);
	/* While connecting, set again each time: the timeout is what is left. */
	if (ps->ev_added && fd == ps->fd && what == ps->what && !ps->connecting)
		return;
	if (ps->ev_added)
		event_del(&ps->ev);
	ps->ev_added = false;
	if (fd < 0)
		return;
	event_assign(&ps->ev, ps->base, fd, what | EV_PERSIST, ps->io_cb, ps->arg);
	event_priority_set(&ps->ev, ps->priority);
	if (ps->connecting) {
		struct timeval left = pgsock_time_left(ps);
		event_add(&ps->ev, &left);
	} else {
		event_add(&ps->ev, NULL);
	}
	ps->ev_added = true;
	ps->fd = fd;
	ps->what = what;
}

int pgsock_flush(struct pgsock *ps)
{
	int r = PQflush(ps->pg);
	if (r >= 0)
		pgsock_watch(ps, r == 1 ? EV_READ | EV_WRITE : EV_READ);
	return r;
}

void pgsock_ready(struct pgsock *ps)
{
	ps->backoff_ms = ps->backoff_min_ms;
}

/* Stop watching and close. */
static void pgsock_close(struct pgsock *ps)
{
	if (ps->ev_added)
		event_del(&ps->ev);
	ps->ev_added = false;
	ps->connecting = false;
	ps->up = false;
	if (ps->pg != NULL)
		PQfinish(ps->pg);
	ps->pg = NULL;
}

int pgsock_close_retry(struct pgsock *ps)
{
	int delay = ps->backoff_ms;
	struct timeval tv = {delay / 1000, (delay % 1000) * 1000};

	pgsock_close(ps);
	evtimer_add(ps->ev_retry, &tv);
	ps->backoff_ms = delay * 2 > ps->backoff_max_ms ? ps->backoff_max_ms : delay * 2;
	return delay;
}

void pgsock_free(struct pgsock *ps)
{
	pgsock_close(ps);
	event_free(ps->ev_retry);
}
