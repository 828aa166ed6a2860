/*
 * store.h - the storage module's own types, shared by its three files and
 * by nothing else (the rest of the daemon sees the store_* calls in
 * server.h):
 *
 *   store.c  the queue of events, which lane takes the next batch, and
 *            what each batch's outcome means for its events (acks,
 *            retries, isolating a bad event);
 *   lane.c   one session with PostgreSQL: connecting, reconnecting with
 *            backoff, migrating the schema, preparing the statements,
 *            and the socket's readiness;
 *   batch.c  one batch's transaction: taking events from the queue,
 *            sending its statements and COPY's rows, folding the changed
 *            orders, reading the results.
 *
 * The design as a whole is described at the top of store.c.
 */
#ifndef OT_STORE_H
#define OT_STORE_H

#include <event2/event_struct.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "model.h"
#include "pgsock.h"
#include "server.h"
#include "textbuf.h"

/* The most entries of the sets batch_take fills: a power of two, and
 * batch_take looks at no more than half as many events. */
#define BATCH_SET_SIZE 32768

/*
 * The most line bytes one batch takes (past its first event): the INSERT
 * sends all of a batch's bodies as one parameter, escaped, and PostgreSQL
 * refuses a value or message of 1 GB or more, ending the session, so a
 * batch near limits.max_pending_bytes' 1 GiB ceiling would fail every try.
 */
#define BATCH_MAX_BYTES (64u << 20)

enum db_state {
	DB_DOWN,       /* no connection; ev_retry runs; exits: CONNECTING */
	DB_CONNECTING, /* PQconnectPoll in progress; exits: MIGRATING, DOWN */
	DB_MIGRATING,  /* schema check and migrations; exits: PREPARING, DOWN */
	DB_PREPARING,  /* pipeline mode on, statements being prepared; exits: READY, DOWN */
	DB_READY,      /* idle or one batch in flight; exits: DOWN */
	DB_STATE_MAX,
};

/*
 * The queries of one batch, in the order their results come back.  Part
 * one is sent at once and ends with a flush request; LOAD only once
 * STATE's rows are in, and only when an order needs it (batch.c).  Then
 * the events are written: by COPY when none of their ids is among the
 * stored events of their orders and none is a retraction (the common case,
 * and COPY costs the server about half of what the INSERT does; its rows
 * are written while part one runs), else by the INSERT, which tells
 * duplicates and conflicts apart.  Part two (APPLY, EMIT, COMMIT, or only
 * the Sync after a failure) follows once the changed orders are folded.
 */
enum batch_query {
	BQ_ROLLBACK, /* only after a failed batch: ends its aborted transaction */
	BQ_BEGIN,
	BQ_LOCK,
	BQ_STATE,
	BQ_LOAD,
	BQ_INSERT, /* all events, one row of verdict each */
	BQ_COPY,   /* all events, outside pipeline mode */
	BQ_APPLY,  /* only when an order changed */
	BQ_EMIT,   /* only when there are notifications */
	BQ_COMMIT,
	BQ_SYNC,
};

/* Where a batch stands, filled from its results. */
struct batch_outcome {
	enum batch_query expect; /* the query whose results come next */
	bool have_result;        /* a result of that query has been read */
	bool part2_sent;
	bool commit_sent;  /* COMMIT may be with the server: the batch may commit */
	bool folded;       /* apply and notes hold the batch's part two */
	bool copy_sent;    /* COPY's rows and end are with libpq */
	bool rows_built;   /* the lane's events buffer holds COPY's rows */
	bool copy_failed;  /* the failure was COPY's */
	bool walk_refused; /* the fold refused a saved walk: not the server's failure */
	bool loaded;       /* LOAD's rows are in, or none were needed */
	bool has_apply;
	bool has_emit;
	PGresult *states;  /* STATE's rows, kept until part two is built */
	PGresult *load;    /* LOAD's rows, likewise */
	PGresult *emitted; /* EMIT's rows, reported after COMMIT */
	bool commit_ok;
	char xid[24];        /* the transaction's id (LOCK's), to ask after a lost COMMIT */
	long long seq_floor; /* the newest seq known when it was sent: its own come after */
	char sqlstate[6];    /* of the first failure */
	char message[256];   /* of the first failure */
};

/*
 * One session with PostgreSQL and the batch in flight on it.  Two or more
 * lanes let the daemon fold one batch while the server works on another,
 * so both CPUs work; the advisory locks order batches that share an order.
 */
struct lane {
	struct store *st;
	unsigned id;        /* 1, 2, ... in the logs */
	struct pgsock sock; /* sock.pg is the session */
	enum db_state state;
	bool down_logged; /* "database unavailable" said for this outage */
	bool ever_ready;

	struct slot_list batch; /* in flight */
	unsigned n_batch;
	bool batch_in_flight;
	struct timespec sent_at; /* of the batch in flight, for its commit time */
	unsigned fail_gen_sent;  /* the store's fail_gen when that batch was sent */
	struct batch_outcome out;
	/* The last batch failed: its transaction block is still open (and
	 * aborted) on the server, since Sync ends only implicit ones. */
	bool needs_rollback;
	/* A ROLLBACK of its own and its Sync are with the server (no batch
	 * followed the failed one at once); a batch sent meanwhile has its
	 * results after theirs. */
	bool rollback_in_flight;
	struct textbuf events, bodies, exporters, orders; /* parameters, reused */
	struct textbuf apply, notes;                      /* part two's, likewise */
	uint64_t *id_set;                                 /* ref_key() of the batch's event ids */
	uint64_t *order_set;                              /* ref_key() of the batch's orders */
	bool blocked;    /* found nothing it could take; see batch_send */
	size_t set_mask; /* of order_set and id_set, as batch_take last sized them */

	int mig_step;        /* 1: lock and read version, 2: apply */
	int schema_version;  /* read in step 1 */
	bool durable;        /* read in step 1: fsync and full_page_writes are on */
	unsigned feed_check; /* the feed's counter check this session's prepare reads for */
	long long counter;   /* the notification counter as the prepare read it; -1: not */
	char durability[64]; /* those settings as key=value, for the log */
	bool mig_failed;
	char mig_error[256];
	char mig_logged[256]; /* the last "schema not ready" reason logged, "" none */
};

struct store {
	struct event_base *base;
	char *conninfo;
	int max_events;
	int max_delay_ms;
	int max_events_per_order; /* limits.max_events_per_order */
	/* Orders found with max_events_per_order events stored: open
	 * addressing on ref_key(exporter, order), each with its
	 * "exporter\0order" (malloc'd) to tell collisions apart. */
	struct full_order {
		uint64_t key;
		char *name;
	} * full;
	unsigned n_full;
	struct model_rules rules; /* documents.required, for the fold */

	struct slot_list queue; /* waiting for a batch */
	unsigned n_queued;
	struct event *ev_flush;
	struct event *ev_pause;        /* pending: no batch starts (a transient failure) */
	struct event *ev_schema;       /* reads the schema's version every SCHEMA_CHECK_S */
	bool schema_check_in_flight;   /* its query is on the auxiliary session */
	int pause_ms;                  /* the next pause's length */
	bool failing;                  /* "database failing" said; until a commit */
	unsigned failing_retries;      /* batches retried since */
	unsigned fail_gen;             /* transient failures so far, to date commits by */
	unsigned solo;                 /* events still to send one per batch */
	unsigned copy_pause;           /* batches still to send by the INSERT */
	const struct slot **batch_set; /* (exporter, id) of the batch being built */
	uint64_t *passed_set;          /* ids and orders batch_take passed over (2x the size) */

	struct lane *lanes;
	unsigned n_lanes;
};

/* store.c */
void store_send_batch(struct store *st);
void store_batch_done(struct lane *ln);
void store_batch_lost(struct lane *ln, const char *why);
bool store_order_full(const struct store *st, const struct slot *s);
void store_mark_full(struct store *st, const char *exporter, const char *order, int stored);
void store_order_full_why(const struct store *st, char *buf, size_t cap);

/* lane.c */
void lane_init(struct store *st, unsigned i);
void lane_free(struct lane *ln);
void lane_lost(struct lane *ln, const char *why);
int lane_flush(struct lane *ln);

/* batch.c */
bool batch_send_prepares(PGconn *pg);
void batch_send(struct store *st, struct lane *ln);
void batch_results(struct lane *ln);
void batch_after_flush(struct lane *ln);
void batch_requeue(struct lane *ln, bool in_doubt);
void batch_send_rollback(struct lane *ln);
uint64_t ref_key(const char *exporter, const char *ref);
int batch_state_row(const PGresult *states, const char *exporter, const char *order);

#endif
