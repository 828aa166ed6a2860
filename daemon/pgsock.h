/*
 * pgsock.h - one libpq connection in the event loop: connecting without
 * blocking, watching its socket, flushing, and reconnecting after a
 * backoff.  The ingest lanes (lane.c) and the auxiliary connection (aux.c)
 * each hold one and keep their own protocol on top.
 */
#ifndef OT_PGSOCK_H
#define OT_PGSOCK_H

#include <event2/event.h>
#include <event2/event_struct.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <time.h>

/* The deadline of connecting when the conninfo sets no connect_timeout. */
#define PGSOCK_CONNECT_TIMEOUT_S 10

struct pgsock {
	PGconn *pg; /* NULL while down */
	struct event_base *base;
	event_callback_fn io_cb; /* on readiness of the socket */
	void *arg;               /* for io_cb and the retry callback */
	int priority;            /* of the socket's event */
	struct event ev;         /* the socket's readiness */
	bool ev_added;
	int fd;     /* the socket ev watches; libpq may change it while connecting */
	short what; /* what ev watches for */
	struct event *ev_retry;
	int backoff_ms, backoff_min_ms, backoff_max_ms;
	bool connecting;          /* pgsock_start was called, pgsock_connect_poll not done */
	struct timespec deadline; /* of connecting, on CLOCK_MONOTONIC */
	int connect_timeout_s;    /* what the deadline was set from, for the reason */
	bool timed_out;           /* connecting passed its deadline */
	char error[96];           /* pgsock_error's text after a timeout */
	/* For the line that says the session was lost (pgsock_loss_fields). */
	bool up;                      /* connected since the last pgsock_start */
	struct timespec connected_at; /* CLOCK_MONOTONIC */
	char server[160];             /* "host:port" it connected to, as libpq says */
	char sqlstate[6];             /* of the last FATAL or PANIC the server sent, or "" */
	char fatal[160];              /* its primary message */
	char fields[512];             /* pgsock_loss_fields' text */
};

/* What a step of connecting came to. */
enum pgsock_step {
	PGSOCK_WAITING,   /* the socket is watched for what libpq needs next */
	PGSOCK_CONNECTED, /* up, and in non-blocking mode */
	PGSOCK_FAILED,    /* the reason is in PQerrorMessage(ps->pg) */
};

/* Set ps up; retry_cb runs when the backoff after a failure is over. */
void pgsock_init(struct pgsock *ps, struct event_base *base, int priority, event_callback_fn io_cb,
                 event_callback_fn retry_cb, void *arg, int backoff_min_ms, int backoff_max_ms);

/*
 * Start connecting to conninfo (a libpq connection string or a database
 * name), as app_name unless conninfo names another; notices go to notice.
 * TCP keepalives are on (idle 30 s, then every 10 s, 3 probes) unless
 * conninfo sets them.  Connecting must be done within conninfo's
 * connect_timeout, or PGSOCK_CONNECT_TIMEOUT_S when it sets none; libpq
 * applies connect_timeout only when it blocks.  False when the attempt
 * failed at once; the reason is in pgsock_error().
 */
bool pgsock_start(struct pgsock *ps, const char *conninfo, const char *app_name,
                  PQnoticeReceiver notice, void *notice_arg);

/*
 * One step of PQconnectPoll, on readiness of the socket or when the
 * deadline has passed (the socket's event times out: what holds EV_TIMEOUT).
 */
enum pgsock_step pgsock_connect_poll(struct pgsock *ps);

/*
 * The statement that keeps the server from ending the session while it
 * waits for work ("SET idle_session_timeout = 0"), or NULL on a server
 * before 14, which has no such setting.  The daemon's sessions are meant to
 * be idle for long spells; a timeout meant for forgotten sessions would end
 * them again and again, each time logged as the database lost.
 */
const char *pgsock_keep_idle_sql(const PGconn *pg);

/*
 * The statement that gives the session's transactions READ COMMITTED,
 * whatever default_transaction_isolation the server, the database or the
 * role sets.  Each statement must see what was committed before it ran:
 * the migrations read the schema version after taking the advisory lock,
 * a batch loads an order's events after taking the order's lock, and
 * evaluate_alerts() reads the open alerts after taking its own.  Under
 * REPEATABLE READ the snapshot comes from before the wait, and a second
 * daemon re-applies migration 1, refuses events with serialization
 * failures and raises alerts that are already open.
 */
#define PGSOCK_READ_COMMITTED_SQL "SET default_transaction_isolation = 'read committed'"

/*
 * Give every notice of the session, and every PGRES_FATAL_ERROR result, to
 * this first: a FATAL or PANIC the server sends before it closes the
 * session (an administrator's shutdown or pg_terminate_backend, SQLSTATE
 * 57P01, say) comes as the result of the query in flight, or to libpq's
 * notice receiver while the session is idle, and libpq then reports only
 * "server closed the connection unexpectedly"; it is kept for
 * pgsock_loss_fields.  Other errors are ignored here.
 */
void pgsock_notice(struct pgsock *ps, const PGresult *r);
/*
 * logfmt fields that say more about a session just lost, to follow
 * reason=: the server it was connected to (server="host:port"), how long
 * it was up (up_s=), and the FATAL the server sent before closing
 * (sqlstate= and server_said=), each only when known; "" when it never
 * connected.  Call before pgsock_close_retry: it parses what libpq has
 * read and not yet parsed.  No password: libpq's host
 * and port, and the server's own message.
 */
const char *pgsock_loss_fields(struct pgsock *ps);
/* Why connecting or the connection failed: the deadline, or libpq's message. */
const char *pgsock_error(struct pgsock *ps);

/* Watch the socket for what (EV_READ, EV_WRITE or both). */
void pgsock_watch(struct pgsock *ps, short what);

/*
 * Send what libpq holds, then watch for reading, and for writing too while
 * some is left.  Returns PQflush()'s answer: 0 all sent, 1 some left, -1
 * failed (the caller closes).
 */
int pgsock_flush(struct pgsock *ps);

/* The connection is ready for work: the next failure backs off from the start. */
void pgsock_ready(struct pgsock *ps);

/*
 * Close the connection and arm the retry timer; returns the delay in ms.
 * Each failure in a row doubles the next delay, up to the maximum.
 */
int pgsock_close_retry(struct pgsock *ps);

/* Close the connection and free the timer. */
void pgsock_free(struct pgsock *ps);

#endif
