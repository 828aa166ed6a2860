/*
 * server.h - the daemon's shared state and the interfaces between its
 * modules: connections (conn.c), listeners (listener.c), storage (store.c,
 * with lane.c and batch.c behind store.h), and the top-level wiring (main.c).
 */
#ifndef OT_SERVER_H
#define OT_SERVER_H

#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "config.h"
#include "jarena.h"

/* glibc's sys/queue.h lacks the _SAFE variant the BSDs have. */
#ifndef TAILQ_FOREACH_SAFE
#define TAILQ_FOREACH_SAFE(var, head, field, tvar)                                                 \
	for ((var) = TAILQ_FIRST(head); (var) && ((tvar) = TAILQ_NEXT(var, field), 1);             \
	     (var) = (tvar))
#endif
#include "jansson.h"

struct conn;
struct store;
struct listener;
struct aux;

/*
 * One line of a client that awaits or holds its reply.  Events wait for
 * their commit here; any other reply queued behind an event waits too, so
 * replies leave in the order the lines came.
 */
struct slot {
	TAILQ_ENTRY(slot) s_conn;  /* in the connection's reply FIFO */
	TAILQ_ENTRY(slot) s_store; /* in the store's queue or batch */
	struct conn *s_owner;      /* the connection; it outlives its slots */
	bool s_done;               /* s_reply is final */
	bool s_in_doubt;           /* a batch holding it died after sending COMMIT */
	bool s_copy_refused;       /* a COPY holding it met its id: go by the INSERT */
	bool s_order_full;         /* its order is full (store_order_full): never inserted */
	bool s_fold_whole;         /* its order's walk was refused: fold from the events */
	int s_attempts;            /* batches it was sent in */
	uint8_t s_transient;       /* transient failures of batches holding it */
	uint8_t s_lost;            /* sessions lost with it in a batch */
	char s_outcome;            /* from its statement: 's'tored 'd'up 'c'onflict, 'f'ull, 0 */
	size_t s_reply_len;
	char s_reply[512];

	/* The event, for storage (NULL fields when this is a plain reply). */
	const char *s_exporter;    /* the owner's exporter id */
	json_t *s_root;            /* owns the strings below */
	struct jarena_mark s_mark; /* the blocks s_root lives in */
	char *s_body;              /* the line as sent, malloc'd */
	size_t s_body_len;
	const char *s_type;
	const char *s_id;
	const char *s_order;
	const char *s_shipment;
	const char *s_occurred_at;
	int64_t s_occurred_ms;
	int64_t s_occurred_us;          /* for COPY's timestamptz */
	uint64_t s_order_key, s_id_key; /* hashes of (exporter, order) and (exporter, id) */
	const char *s_retracts;
};
TAILQ_HEAD(slot_list, slot);

/* What the store tells a slot once its batch is over. */
enum store_result {
	STORE_STORED,    /* inserted and committed */
	STORE_DUPLICATE, /* same content already there, committed earlier */
	STORE_CONFLICT,  /* same id, different content */
	STORE_REJECTED,  /* the database refused this event (data error) */
	STORE_FAILED,    /* gave up after repeated unexplained failures */
};

/*
 * Event priorities.  The database sessions' sockets go first: every turn
 * the daemon takes to answer its session is time the server waits, and
 * the server is the pipeline's bottleneck.  Everything else (clients,
 * timers, HTTP) runs at PRIO_NORMAL, and the loop looks for a ready
 * database socket again after every LOOP_CHECK_CALLBACKS of those
 * callbacks rather than after all of them (each can parse up to a few
 * hundred lines).
 */
enum {
	PRIO_DATABASE,
	PRIO_NORMAL,
	N_PRIORITIES,
	LOOP_CHECK_CALLBACKS = 8,
};

struct server {
	struct event_base *base;
	struct config *cfg;
	const char *config_path;

	struct listener **listeners;
	size_t n_listeners;
	TAILQ_HEAD(, conn) conns;
	unsigned n_conns;      /* authenticated or not */
	unsigned next_conn_id; /* for logs */
	unsigned n_subscribers;
	struct aux *aux; /* feed, webhooks, alerts */

	struct store *store;
	/* Bytes of the lines of events read and not yet answered, all
	 * connections: limits.max_pending_bytes bounds them. */
	size_t pending_bytes;
	bool draining;
	bool db_ready_logged;

	struct event *ev_sigterm, *ev_sigint, *ev_sighup, *ev_drain_tick;

	long long last_seq;       /* newest notification this daemon committed or heard of */
	long long last_local_seq; /* the newest this daemon's own commits emitted */

	/* Counters for logs and stats. */
	uint64_t events_stored, events_duplicate, events_rejected;
	uint64_t notifications_total;
	uint64_t webhook_deliveries, webhook_failures;
};

extern struct server server;

/* conn.c */
void conn_accept(int fd, const struct sockaddr *sa, int salen);
void conn_slot_finished(struct slot *s, enum store_result r, const char *detail);
void conn_drain_all(void);
/* Close every connection now: what a peer has not read yet is dropped. */
void conn_close_all(const char *reason);
void conn_resume_paused(void);
void conn_apply_config(void);
/* For the feed: may c take a notification line now? */
bool conn_feed_ready(const struct conn *c);
void conn_feed_write(struct conn *c, const char *line, size_t len);
/* The feed lost rows after..next-1 (deleted): say so; the subscription is over. */
void conn_feed_gap(struct conn *c, long long after, long long next);
/* The subscriber's cursor is past the database's last seq (a restore): say so; it is over. */
void conn_feed_ahead(struct conn *c, long long after, long long last);
bool conn_all_idle(void);

/* listener.c */
bool listeners_open(void);
void listeners_close(void);
/* Split "host:port" or "[v6]:port"; false when it is neither. */
bool listen_split(const char *s, char *host, size_t hcap, char *port, size_t pcap);
/* The address a socket is bound to, as host:port or [v6]:port. */
void listen_bound_address(int fd, char *out, size_t cap);

/* store.c */
struct store *store_new(struct event_base *base, const struct config *cfg);
void store_free(struct store *st);
void store_submit(struct store *st, struct slot *s);
void store_apply_config(struct store *st, const struct config *cfg);
/* Events queued or in flight. */
unsigned store_pending(const struct store *st);
bool store_db_up(const struct store *st);

/* main.c: the store reports it reached the database, for READY. */
void server_db_ready(void);
/* main.c: a batch committed notifications up to seq; wake the feed. */
void server_notifications_committed(long long seq);

#endif
