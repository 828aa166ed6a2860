/*
 * aux.c - the auxiliary PostgreSQL connection; see aux.h.
 *
 * A plain (not pipelined) asynchronous libpq connection driven by the
 * event loop: one query in flight, the rest in a FIFO.  Queries here are
 * few and small (a page of notifications, a cursor update), so a round
 * trip each is fine, and keeping them apart from the ingest connection
 * means a slow feed reader never delays a commit.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include "aux.h"
#include "log.h"
#include "pgsock.h"
#include "server.h"

#define AUX_BACKOFF_MIN_MS 200
#define AUX_BACKOFF_MAX_MS 5000

struct aux_query {
	STAILQ_ENTRY(aux_query) q_entry;
	char *sql;
	int nparams;
	char **params;
	aux_result_fn *fn;
	void *arg;
	PGresult *result; /* held until the query is over; an error replaces it */
};

enum aux_state {
	AUX_DOWN,       /* waiting for the retry timer; exits: CONNECTING */
	AUX_CONNECTING, /* PQconnectPoll; exits: IDLE, DOWN */
	AUX_IDLE,       /* connected, nothing in flight; exits: BUSY, DOWN */
	AUX_BUSY,       /* one query in flight; exits: IDLE, DOWN */
};

struct aux {
	char *conninfo;
	struct pgsock sock; /* sock.pg is the connection */
	enum aux_state state;
	bool down_logged; /* "database unavailable" said since the last connect */
	bool outage;      /* lost or unavailable since the last connect */
	int pid;          /* the backend of the session up now (0: none) */
	int lost_pid;     /* the backend of the session lost last */
	STAILQ_HEAD(, aux_query) queue;
	char *listen_channel; /* LISTEN runs as an internal query */
	aux_notify_fn *notify_fn;
	aux_up_fn *up_fn;
	void *listen_arg;
};

static void aux_io_cb(evutil_socket_t fd, short what, void *arg);
static void aux_lost(struct aux *a, const char *why);
static void aux_next(struct aux *a);

/* Release one queued query. */
static void query_free(struct aux_query *q)
{
	for (int i = 0; i < q->nparams; i++)
		free(q->params[i]);
	free(q->params);
	free(q->sql);
	PQclear(q->result);
	free(q);
}

/* Server notices go to the debug log. */
static void aux_notice(void *arg, const PGresult *r)
{
	struct aux *a = arg;
	pgsock_notice(&a->sock, r);
	log_debug("database notice", "conn=aux detail=%s", lq(PQresultErrorMessage(r)));
}

/* Start connecting. */
static void aux_connect(struct aux *a)
{
	if (!pgsock_start(&a->sock, a->conninfo, "ordertrackd-aux", aux_notice, a)) {
		aux_lost(a, PQerrorMessage(a->sock.pg));
		return;
	}
	a->state = AUX_CONNECTING;
}

/* Retry timer. */
static void aux_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	aux_connect(arg);
}

/* Connection failed or lost: fail the query in flight, retry later. */
static void aux_lost(struct aux *a, const char *why)
{
	char buf[256];
	bool was_up = a->state == AUX_IDLE || a->state == AUX_BUSY;
	log_first_line(why, buf, sizeof(buf));
	char more[sizeof(a->sock.fields)];
	snprintf(more, sizeof(more), "%s", pgsock_loss_fields(&a->sock));
	/* Kept from the connect: libpq says 0 once the connection broke. */
	a->lost_pid = was_up ? a->pid : 0;
	a->pid = 0;
	pgsock_close_retry(&a->sock);
	/* As the ingest sessions: a loss, then the first reconnect that
	 * fails, with its reason; the other failures at debug level. */
	if (was_up) {
		log_warnx("database lost", "conn=aux reason=%s%s", lq(buf), more);
		a->down_logged = false;
	} else if (!a->down_logged) {
		log_warnx("database unavailable", "conn=aux reason=%s", lq(buf));
		a->down_logged = true;
	} else {
		log_debug("database still unavailable", "conn=aux reason=%s", lq(buf));
	}
	a->outage = true;
	/* The query in flight has no answer; its owner may ask again.  Down
	 * before it hears so: a callback that asks is queued for the next
	 * session, and one that drops the session finds it gone already. */
	struct aux_query *q = STAILQ_FIRST(&a->queue);
	bool busy = a->state == AUX_BUSY;
	a->state = AUX_DOWN;
	if (busy && q != NULL) {
		STAILQ_REMOVE_HEAD(&a->queue, q_entry);
		if (q->fn)
			q->fn(q->arg, NULL);
		query_free(q);
	}
}

/* Push output; watch for write while some is left. */
static bool aux_flush(struct aux *a)
{
	if (pgsock_flush(&a->sock) < 0) {
		aux_lost(a, PQerrorMessage(a->sock.pg));
		return false;
	}
	return true;
}

/* Connected: the session's settings, then LISTEN (internal queries), then the queue. */
static void aux_connected(struct aux *a)
{
	a->state = AUX_IDLE;
	a->pid = PQbackendPID(a->sock.pg);
	pgsock_ready(&a->sock);
	log_info("database connected", "conn=aux backend_pid=%d", PQbackendPID(a->sock.pg));
	a->outage = false;
	a->down_logged = false;
	if (a->listen_channel != NULL) {
		char sql[128];
		snprintf(sql, sizeof(sql), "LISTEN %s", a->listen_channel);
		/* Ahead of everything else, so no NOTIFY after this point is
		 * missed; the owner's up callback then catches up. */
		struct aux_query *q = calloc(1, sizeof(*q));
		if (q == NULL || (q->sql = strdup(sql)) == NULL)
			abort();
		STAILQ_INSERT_HEAD(&a->queue, q, q_entry);
	}
	const char *first[] = {pgsock_keep_idle_sql(a->sock.pg), PGSOCK_READ_COMMITTED_SQL};
	for (size_t i = 0; i < sizeof(first) / sizeof(first[0]); i++) {
		if (first[i] == NULL)
			continue;
		struct aux_query *q = calloc(1, sizeof(*q));
		if (q == NULL || (q->sql = strdup(first[i])) == NULL)
			abort();
		STAILQ_INSERT_HEAD(&a->queue, q, q_entry);
	}
	/* Only now: a query the callback queues (a webhook's lock, a feed
	 * page) sends the head of the queue at once, and one sent before the
	 * settings were at the head would have them inserted ahead of it, to
	 * be taken for its answer and never sent. */
	if (a->listen_channel != NULL && a->up_fn)
		a->up_fn(a->listen_arg);
	aux_next(a);
}

/* Send the query at the head of the queue, if idle. */
static void aux_next(struct aux *a)
{
	struct aux_query *q = STAILQ_FIRST(&a->queue);
	if (a->state != AUX_IDLE || q == NULL)
		return;
	if (!PQsendQueryParams(a->sock.pg, q->sql, q->nparams, NULL, (const char *const *)q->params,
	                       NULL, NULL, 0)) {
		aux_lost(a, PQerrorMessage(a->sock.pg));
		return;
	}
	a->state = AUX_BUSY;
	aux_flush(a);
}

/* Hand NOTIFY payloads to the listener. */
static void aux_notifies(struct aux *a)
{
	PGnotify *n;
	while (a->sock.pg != NULL && (n = PQnotifies(a->sock.pg)) != NULL) {
		if (a->notify_fn)
			a->notify_fn(a->listen_arg, n->extra);
		PQfreemem(n);
	}
}

/*
 * Say why a query failed.  A FATAL (or PANIC) ends the session: the
 * "database lost" line that follows says why, with the server's words,
 * and this one goes to the debug log; a query that failed with the
 * session up (a timeout, a cancel, a full disk) is an error.
 */
static void aux_query_failed(struct aux *a, const PGresult *r)
{
	char why[512];
	const char *severity = PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED);
	bool ends =
	    severity != NULL && (strcmp(severity, "FATAL") == 0 || strcmp(severity, "PANIC") == 0);
	pgsock_notice(&a->sock, r); /* a FATAL, for the line when it closes */
	log_first_line(PQresultErrorMessage(r), why, sizeof(why));
	if (ends)
		log_debug("query failed", "conn=aux reason=%s", lq(why));
	else
		log_error("query failed", "conn=aux reason=%s", lq(why));
}

/*
 * Read the results of the query in flight; its owner hears of it once it
 * is over.  A statement's result comes before the Sync that ends its
 * implicit transaction, and the commit happens only there: a write
 * answered on its result alone could be rolled back after (a deferred
 * constraint, or the backend terminated between the two), and a webhook
 * would move past a cursor that was never written.  An error after the
 * result replaces it.
 */
static void aux_results(struct aux *a)
{
	while (a->state == AUX_BUSY && !PQisBusy(a->sock.pg)) {
		PGresult *r = PQgetResult(a->sock.pg);
		struct aux_query *q = STAILQ_FIRST(&a->queue);
		if (r == NULL) {
			/* The query is over: ReadyForQuery came. */
			STAILQ_REMOVE_HEAD(&a->queue, q_entry);
			a->state = AUX_IDLE;
			if (q->fn)
				q->fn(q->arg, q->result);
			query_free(q);
			aux_next(a);
			return;
		}
		if (PQresultStatus(r) == PGRES_FATAL_ERROR)
			aux_query_failed(a, r);
		if (q->result == NULL || PQresultStatus(r) == PGRES_FATAL_ERROR) {
			PQclear(q->result);
			q->result = r;
		} else {
			PQclear(r);
		}
	}
}

/* Socket readiness. */
static void aux_io_cb(evutil_socket_t fd, short what, void *arg)
{
	struct aux *a = arg;
	(void)fd;
	if (a->state == AUX_CONNECTING) {
		switch (pgsock_connect_poll(&a->sock)) {
		case PGSOCK_WAITING:
			return;
		case PGSOCK_FAILED:
			/* pgsock_error: a connect deadline has no libpq message. */
			aux_lost(a, pgsock_error(&a->sock));
			return;
		case PGSOCK_CONNECTED:
			aux_connected(a);
			return;
		}
	}
	if ((what & EV_READ) && !PQconsumeInput(a->sock.pg)) {
		aux_lost(a, PQerrorMessage(a->sock.pg));
		return;
	}
	aux_results(a);
	if (a->state == AUX_DOWN)
		return;
	aux_notifies(a);
	/* A payload's listener may queue a query whose send finds the
	 * session gone: lost once is enough. */
	if (a->state == AUX_DOWN)
		return;
	if (PQstatus(a->sock.pg) == CONNECTION_BAD) {
		aux_lost(a, PQerrorMessage(a->sock.pg));
		return;
	}
	aux_flush(a);
}

struct aux *aux_new(struct event_base *base, const char *conninfo)
{
	struct aux *a = calloc(1, sizeof(*a));
	if (a == NULL)
		abort();
	a->conninfo = strdup(conninfo);
	pgsock_init(&a->sock, base, PRIO_NORMAL, aux_io_cb, aux_retry_cb, a, AUX_BACKOFF_MIN_MS,
	            AUX_BACKOFF_MAX_MS);
	if (a->conninfo == NULL)
		abort();
	STAILQ_INIT(&a->queue);
	aux_connect(a);
	return a;
}

void aux_listen(struct aux *a, const char *channel, aux_notify_fn *fn, aux_up_fn *up, void *arg)
{
	free(a->listen_channel);
	a->listen_channel = strdup(channel);
	a->notify_fn = fn;
	a->up_fn = up;
	a->listen_arg = arg;
	if (a->listen_channel == NULL)
		abort();
	if (a->state == AUX_IDLE || a->state == AUX_BUSY) {
		char sql[128];
		snprintf(sql, sizeof(sql), "LISTEN %s", channel);
		aux_query(a, sql, 0, NULL, NULL, NULL);
		if (up)
			up(arg);
	}
}

void aux_query(struct aux *a, const char *sql, int nparams, const char *const *params,
               aux_result_fn *fn, void *arg)
{
	struct aux_query *q = calloc(1, sizeof(*q));
	if (q == NULL || (q->sql = strdup(sql)) == NULL)
		abort();
	q->nparams = nparams;
	if (nparams > 0) {
		q->params = calloc((size_t)nparams, sizeof(char *));
		if (q->params == NULL)
			abort();
		for (int i = 0; i < nparams; i++) {
			if (params[i] != NULL && (q->params[i] = strdup(params[i])) == NULL)
				abort();
		}
	}
	q->fn = fn;
	q->arg = arg;
	STAILQ_INSERT_TAIL(&a->queue, q, q_entry);
	aux_next(a);
}

bool aux_up(const struct aux *a)
{
	return a->state == AUX_IDLE || a->state == AUX_BUSY;
}

int aux_lost_pid(const struct aux *a)
{
	return a->lost_pid;
}

void aux_break(struct aux *a)
{
	if (a->state == AUX_BUSY)
		shutdown(PQsocket(a->sock.pg), SHUT_RDWR);
}

void aux_free(struct aux *a)
{
	if (a == NULL)
		return;
	struct aux_query *q;
	while ((q = STAILQ_FIRST(&a->queue)) != NULL) {
		STAILQ_REMOVE_HEAD(&a->queue, q_entry);
		query_free(q);
	}
	pgsock_free(&a->sock);
	free(a->listen_channel);
	free(a->conninfo);
	free(a);
}
