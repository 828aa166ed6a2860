/*
 * store.c - events into PostgreSQL: group commit over libpq pipeline mode.
 *
 * Events from all connections queue here.  The daemon keeps
 * database.connections sessions ("lanes"), each with at most one batch in
 * flight.  Whenever a lane is idle the queue is cut into a batch (at most
 * batch.max_events) and sent as one transaction in two pipelined parts.
 * Part one: BEGIN, the advisory locks of the batch's orders, the orders'
 * stored states (STATE) and their events stored earlier (LOAD), then a
 * flush request.  When LOAD's rows are in, the events are written: by
 * COPY, outside pipeline mode, when none of their ids is among those rows
 * and none is a retraction (the usual case), else by one set-based INSERT
 * that answers stored, duplicate or conflict for each.  The changed orders are folded in C
 * (project.c), during the COPY or after the INSERT's verdicts, and part two goes out: APPLY (the
 * read model), EMIT (the notifications, numbered last since that
 * serializes), COMMIT, Sync.  The loop never
 * waits for the database: the sockets are watched by libevent and results
 * are read as they come.  Replies go back to the connections only after
 * COMMIT has answered.
 *
 * With two lanes the daemon folds one batch while PostgreSQL works on the
 * other, so both CPUs are busy.  A batch never takes an event of an order
 * another lane's batch holds (it would wait for that batch's locks) nor
 * overtakes an earlier event with the same id (see batch_take).
 *
 * Failures: when the batch fails for its data (SQLSTATE classes 22 and 23,
 * or anything that names no event), it is sent again one event at a time,
 * so the event at fault is answered with an error and the others commit;
 * the next batch starts with ROLLBACK, since Sync does not end an explicit
 * transaction block.  A lost connection or a transient failure (08, 40,
 * 53, 57, 58) sends the whole batch again after reconnecting, and so does
 * a COPY that met a stored id (23505: the id is stored under another
 * order, or another transaction stored it after LOAD read), and then by
 * the INSERT.  Events of a batch whose COMMIT outcome was lost with the
 * connection are marked in doubt; when the INSERT finds them stored with
 * the same content, it was this daemon that stored them, so they are
 * acked "stored".
 *
 * On connecting, the schema is brought up to date first: the migrations
 * built into the binary are applied in one transaction under an advisory
 * lock, so two daemons starting at once cannot race.
 */
#include <event2/event_struct.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "copybin.h"
#include "fault.h"
#include "feed.h"
#include "log.h"
#include "metrics.h"
#include "migrations.h"
#include "project.h"
#include "server.h"
#include "textbuf.h"

/*
 * Batches that go by the INSERT after a COPY was refused: an exporter that
 * reuses ids across orders would otherwise make every batch it shares
 * with others be written twice.
 */
#define COPY_PAUSE_BATCHES 32
#define BACKOFF_MIN_MS     100
#define BACKOFF_MAX_MS     5000
#define MAX_ATTEMPTS       5 /* for failures that are neither data nor transient */
#define MIGRATION_LOCK_KEY "7433001"
#define MIN_SERVER_VERSION 130000

enum db_state {
	DB_DOWN,       /* no connection; ev_retry runs; exits: CONNECTING */
	DB_CONNECTING, /* PQconnectPoll in progress; exits: MIGRATING, DOWN */
	DB_MIGRATING,  /* schema check and migrations; exits: PREPARING, DOWN */
	DB_PREPARING,  /* pipeline mode on, statements being prepared; exits: READY, DOWN */
	DB_READY,      /* idle or one batch in flight; exits: DOWN */
	DB_STATE_MAX,
};

static const char *const db_state_names[DB_STATE_MAX] = {
    "down", "connecting", "migrating", "preparing", "ready",
};

/*
 * The queries of one batch, in the order their results come back.  Part
 * one is sent at once and ends with a flush request.  When LOAD's rows are
 * in, the events are written: by COPY when none of their ids is among the
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
	bool folded;      /* apply and notes hold the batch's part two */
	bool copy_sent;   /* COPY's rows and end are with libpq */
	bool rows_built;  /* the lane's events buffer holds COPY's rows */
	bool copy_failed; /* the failure was COPY's */
	bool has_apply;
	bool has_emit;
	PGresult *states;  /* STATE's rows, kept until part two is built */
	PGresult *load;    /* LOAD's rows, likewise */
	PGresult *emitted; /* EMIT's rows, reported after COMMIT */
	bool commit_ok;
	struct slot *failed; /* the event whose statement failed, if any */
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
	unsigned id; /* 1, 2, ... in the logs */
	PGconn *pg;
	enum db_state state;
	struct event ev_sock;
	bool ev_sock_added;
	int sock_fd;
	short sock_what;
	struct event *ev_retry;
	int backoff_ms;
	bool down_logged; /* "database unavailable" said for this outage */
	bool ever_ready;

	struct slot_list batch; /* in flight */
	unsigned n_batch;
	bool batch_in_flight;
	struct timespec sent_at; /* of the batch in flight, for its commit time */
	struct batch_outcome out;
	/* The last batch failed: its transaction block is still open (and
	 * aborted) on the server, since Sync ends only implicit ones. */
	bool needs_rollback;
	struct textbuf events, bodies, exporters, orders; /* parameters, reused */
	struct textbuf apply, notes;                      /* part two's, likewise */
	uint64_t *id_set;                                 /* ref_key() of the batch's event ids */
	uint64_t *order_set;                              /* ref_key() of the batch's orders */
	bool blocked;    /* found nothing it could take; see lane_send_batch */
	size_t set_mask; /* of order_set and id_set, as batch_take last sized them */

	int mig_step;       /* 1: lock and read version, 2: apply */
	int schema_version; /* read in step 1 */
	bool mig_failed;
	char mig_error[256];
};

struct store {
	struct event_base *base;
	char *conninfo;
	int max_events;
	int max_delay_ms;
	struct model_rules rules; /* documents.required, for the fold */

	struct slot_list queue; /* waiting for a batch */
	unsigned n_queued;
	struct event *ev_flush;
	unsigned solo;                 /* events still to send one per batch */
	unsigned copy_pause;           /* batches still to send by the INSERT */
	const struct slot **batch_set; /* (exporter, id) of the batch being built */
	uint64_t *passed_set;          /* ref_key() of the ids batch_take passed over */

	struct lane *lanes;
	unsigned n_lanes;
};

/*
 * The whole batch in one statement.  $1 is a JSON array with one element
 * per event: [exporter, id, type, order, shipment, occurred_at, retracts];
 * $2 holds the bodies in the same order, as a json (not jsonb) array, so
 * that each is stored as sent, as COPY stores it.  Answers, per event in
 * order: 's' stored, 'd' the same event was already stored, 'c' another
 * event holds the id, 'r' a retraction that may not be stored (its target
 * is a retraction or belongs to another order), or NULL: the id is taken
 * by a transaction not visible yet (the daemon asks again).  "The same"
 * compares the bodies as jsonb: key order and spacing do not count.  A
 * batch never holds the same (exporter, id) twice (store_send_batch sees
 * to it), so each row's verdict is unambiguous.  The final SELECT reads
 * events with the statement's snapshot, so it sees the rows that existed
 * before, not the ones it just inserted; it looks a stored row up only
 * for the events that were not inserted, the rare case.
 */
static const char insert_sql[] =
    "WITH input AS ("
    " SELECT x->>0 AS exporter, x->>1 AS event_id, x->>2 AS type, x->>3 AS order_ref,"
    " x->>4 AS shipment_ref, (x->>5)::timestamptz AS occurred_at, body,"
    " x->>6 AS retracts, n"
    " FROM ROWS FROM (jsonb_array_elements($1::jsonb), json_array_elements($2::json))"
    " WITH ORDINALITY AS a(x, body, n)),"
    " bad AS ("
    " SELECT i.n FROM input i CROSS JOIN LATERAL ("
    " SELECT 1 FROM ordertrack.events t"
    " WHERE t.exporter = i.exporter AND t.event_id = i.retracts"
    " AND (t.type = 'event.retracted' OR t.order_ref <> i.order_ref) OFFSET 0) t"
    " WHERE i.retracts IS NOT NULL),"
    " ins AS ("
    " INSERT INTO ordertrack.events"
    " (exporter, event_id, type, order_ref, shipment_ref, occurred_at, body)"
    " SELECT exporter, event_id, type, order_ref, shipment_ref, occurred_at, body"
    " FROM input WHERE n NOT IN (SELECT n FROM bad) ORDER BY n"
    " ON CONFLICT (exporter, event_id) DO NOTHING RETURNING exporter, event_id)"
    " SELECT CASE WHEN ins.event_id IS NOT NULL THEN 's'"
    " WHEN b.n IS NOT NULL THEN 'r'"
    " ELSE (SELECT CASE WHEN e.body::jsonb = i.body::jsonb THEN 'd' ELSE 'c' END"
    " FROM ordertrack.events e WHERE e.exporter = i.exporter AND e.event_id = i.event_id)"
    " END"
    " FROM input i"
    " LEFT JOIN ins ON ins.exporter = i.exporter AND ins.event_id = i.event_id"
    " LEFT JOIN bad b ON b.n = i.n"
    " ORDER BY i.n";

/*
 * COPY's columns, in the order batch_copy_rows() writes them.  Binary: the
 * server reads fields by length and occurred_at as a number, where the
 * text format had it scan every byte and parse every timestamp.
 */
#define COPY_COLS 7
static const char copy_sql[] =
    "COPY ordertrack.events (exporter, event_id, type, order_ref, shipment_ref,"
    " occurred_at, body) FROM STDIN (FORMAT binary)";

/*
 * Lock the batch's orders, in one global order so that two daemons cannot
 * deadlock: the fold reads all of an order's events, and two transactions
 * folding the same order at once could each miss the other's event.
 */
static const char lock_sql[] = "SELECT count(pg_advisory_xact_lock(k)) FROM ("
                               " SELECT DISTINCT hashtextextended(e || '/' || o, 7433) AS k"
                               " FROM unnest($1::text[], $2::text[]) AS t(e, o) ORDER BY k) s";

/*
 * The events of the batch's orders stored before this transaction, for the
 * fold.  The rows this transaction inserted (xmin is its own id) are left
 * out: the daemon holds those events parsed already.
 */
static const char load_sql[] =
    "SELECT e.exporter, e.order_ref, e.event_id, e.type, e.body::text"
    " FROM (SELECT DISTINCT x, o FROM unnest($1::text[], $2::text[]) AS t(x, o)) t"
    " CROSS JOIN LATERAL (SELECT * FROM ordertrack.events e"
    " WHERE e.exporter = t.x AND e.order_ref = t.o"
    " AND e.xmin <> pg_current_xact_id()::xid OFFSET 0) e"
    " ORDER BY e.exporter COLLATE \"C\", e.order_ref COLLATE \"C\"";

/* The state each order had before this batch, for the notification diff. */
static const char state_sql[] =
    "SELECT o.exporter, o.order_ref, o.state::text"
    " FROM (SELECT DISTINCT x, ord FROM unnest($1::text[], $2::text[]) AS t(x, ord)) t"
    " CROSS JOIN LATERAL (SELECT * FROM ordertrack.orders o"
    " WHERE o.exporter = t.x AND o.order_ref = t.ord OFFSET 0) o"
    " ORDER BY o.exporter COLLATE \"C\", o.order_ref COLLATE \"C\"";

/* Number and store the batch's notifications; last, as it serializes. */
static const char emit_sql[] =
    "SELECT seq, kind, exporter, order_ref, shipment_ref, from_status, to_status, event_id"
    " FROM ordertrack.emit_notifications($1::jsonb)";

static const char apply_sql[] = "SELECT ordertrack.apply_orders($1::jsonb)";

static void store_io_cb(evutil_socket_t fd, short what, void *arg);
static void store_lost(struct lane *ln, const char *why);
static void store_send_batch(struct store *st);

/* Move to a new state, logging the transition at debug level. */
static void store_set_state(struct lane *ln, enum db_state s)
{
	if (s >= DB_STATE_MAX)
		abort();
	log_debug("database state", "from=%s to=%s", db_state_names[ln->state], db_state_names[s]);
	ln->state = s;
}

/* The first line of a libpq error, for one-line logs. */
static const char *first_line(const char *msg, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s", msg ? msg : "");
	buf[strcspn(buf, "\n")] = '\0';
	return buf;
}

/* Watch the connection's socket for what; re-reads PQsocket every time. */
static void store_watch(struct lane *ln, short what)
{
	int fd = PQsocket(ln->pg);
	if (ln->ev_sock_added && fd == ln->sock_fd && what == ln->sock_what)
		return;
	if (ln->ev_sock_added)
		event_del(&ln->ev_sock);
	ln->ev_sock_added = false;
	if (fd < 0)
		return;
	event_assign(&ln->ev_sock, ln->st->base, fd, what | EV_PERSIST, store_io_cb, ln);
	event_priority_set(&ln->ev_sock, PRIO_DATABASE);
	event_add(&ln->ev_sock, NULL);
	ln->ev_sock_added = true;
	ln->sock_fd = fd;
	ln->sock_what = what;
}

/*
 * Push buffered output; keep watching for write while some is left.
 * Returns PQflush()'s answer: 0 all sent, 1 some left, -1 the lane was lost.
 */
static int store_flush(struct lane *ln)
{
	int r = PQflush(ln->pg);
	if (r < 0) {
		store_lost(ln, PQerrorMessage(ln->pg));
		return -1;
	}
	store_watch(ln, r == 1 ? EV_READ | EV_WRITE : EV_READ);
	return r;
}

/* Server notices ("already exists, skipping") go to the debug log. */
static void store_notice(void *arg, const PGresult *r)
{
	char buf[256];
	(void)arg;
	log_debug("database notice", "detail=%s",
	          lq(first_line(PQresultErrorMessage(r), buf, sizeof(buf))));
}

/* Start a connection attempt. */
static void store_connect(struct lane *ln)
{
	const char *keys[] = {"dbname", "fallback_application_name", NULL};
	const char *vals[] = {ln->st->conninfo, "ordertrackd", NULL};

	ln->pg = PQconnectStartParams(keys, vals, 1);
	if (ln->pg == NULL)
		abort();
	PQsetNoticeReceiver(ln->pg, store_notice, ln);
	if (PQstatus(ln->pg) == CONNECTION_BAD) {
		store_lost(ln, PQerrorMessage(ln->pg));
		return;
	}
	store_set_state(ln, DB_CONNECTING);
	store_watch(ln, EV_WRITE);
}

/* Reconnect timer. */
static void store_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	store_connect(arg);
}

/* Free the result sets a batch keeps; the emitted rows only if asked. */
static void batch_results_clear(struct batch_outcome *o, bool emitted)
{
	PQclear(o->states);
	PQclear(o->load);
	o->states = NULL;
	o->load = NULL;
	if (emitted) {
		PQclear(o->emitted);
		o->emitted = NULL;
	}
}

/* Put the in-flight batch back at the head of the queue, in order. */
static void store_requeue_batch(struct lane *ln, bool in_doubt)
{
	struct slot *s;
	while ((s = TAILQ_LAST(&ln->batch, slot_list)) != NULL) {
		TAILQ_REMOVE(&ln->batch, s, s_store);
		if (in_doubt)
			s->s_in_doubt = true;
		TAILQ_INSERT_HEAD(&ln->st->queue, s, s_store);
		ln->st->n_queued++;
	}
	ln->n_batch = 0;
	ln->batch_in_flight = false;
	/* Its orders are free: lanes that found nothing may look again. */
	for (unsigned i = 0; i < ln->st->n_lanes; i++)
		ln->st->lanes[i].blocked = false;
	batch_results_clear(&ln->out, true);
}

/*
 * The connection failed or was lost: keep every unanswered event, drop the
 * connection, and try again after a backoff that doubles up to a cap.
 */
static void store_lost(struct lane *ln, const char *why)
{
	char buf[256];
	const char *reason = first_line(why, buf, sizeof(buf));

	if (ln->batch_in_flight) {
		store_requeue_batch(ln, true);
		/* Another lane may be up and able to take them; from the loop,
		 * since this can run inside store_send_batch. */
		event_active(ln->st->ev_flush, EV_TIMEOUT, 0);
	}
	if (ln->ev_sock_added)
		event_del(&ln->ev_sock);
	ln->ev_sock_added = false;
	if (ln->pg != NULL)
		PQfinish(ln->pg);
	ln->pg = NULL;

	if (ln->state == DB_READY || ln->state == DB_PREPARING) {
		log_warnx("database lost", "link=%u reason=%s pending=%u", ln->id, lq(reason),
		          ln->st->n_queued);
		ln->down_logged = true;
	} else if (!ln->down_logged) {
		log_warnx("database unavailable", "link=%u reason=%s retry_ms=%d", ln->id,
		          lq(reason), ln->backoff_ms);
		ln->down_logged = true;
	} else {
		log_debug("database still unavailable", "link=%u reason=%s", ln->id, lq(reason));
	}
	store_set_state(ln, DB_DOWN);
	struct timeval tv = {ln->backoff_ms / 1000, (ln->backoff_ms % 1000) * 1000};
	evtimer_add(ln->ev_retry, &tv);
	ln->backoff_ms *= 2;
	if (ln->backoff_ms > BACKOFF_MAX_MS)
		ln->backoff_ms = BACKOFF_MAX_MS;
}

/* Step 1 of start-up: lock out other daemons and read the schema version. */
static void store_migrate_begin(struct lane *ln)
{
	static const char sql[] =
	    "SET synchronous_commit = on;"
	    "BEGIN;"
	    "SELECT pg_advisory_xact_lock(" MIGRATION_LOCK_KEY ");"
	    "CREATE SCHEMA IF NOT EXISTS ordertrack;"
	    "CREATE TABLE IF NOT EXISTS ordertrack.schema_migrations ("
	    " version integer PRIMARY KEY,"
	    " name text NOT NULL,"
	    " applied_at timestamptz NOT NULL DEFAULT now());"
	    "SELECT coalesce(max(version), 0) FROM ordertrack.schema_migrations";

	store_set_state(ln, DB_MIGRATING);
	ln->needs_rollback = false; /* a new session has no open block */
	ln->mig_step = 1;
	ln->mig_failed = false;
	ln->schema_version = -1;
	if (!PQsendQuery(ln->pg, sql)) {
		store_lost(ln, PQerrorMessage(ln->pg));
		return;
	}
	store_flush(ln);
}

/* Step 2: apply what is missing and commit, releasing the lock. */
static void store_migrate_apply(struct lane *ln)
{
	size_t cap = 64, len = 0;
	int have = ln->schema_version;

	if (have > migrations_count) {
		snprintf(ln->mig_error, sizeof(ln->mig_error),
		         "database schema version %d is newer than this daemon's %d", have,
		         migrations_count);
		ln->mig_failed = true;
	}
	for (int i = have; i < migrations_count && !ln->mig_failed; i++)
		cap += strlen(migrations[i].sql) + 200;
	char *sql = malloc(cap);
	if (sql == NULL)
		abort();
	for (int i = have; i < migrations_count && !ln->mig_failed; i++) {
		len +=
		    (size_t)snprintf(sql + len, cap - len,
		                     "%s;\nINSERT INTO ordertrack.schema_migrations"
		                     " (version, name) VALUES (%d, '%s');\n",
		                     migrations[i].sql, migrations[i].version, migrations[i].name);
	}
	snprintf(sql + len, cap - len, "%s", ln->mig_failed ? "ROLLBACK" : "COMMIT");
	ln->mig_step = 2;
	int ok = PQsendQuery(ln->pg, sql);
	free(sql);
	if (!ok) {
		store_lost(ln, PQerrorMessage(ln->pg));
		return;
	}
	store_flush(ln);
}

/*
 * Set after the migrations, which keep the server's defaults.  Plan each
 * statement once per session.  Custom plans, remade on every
 * batch, were a third of the server's CPU at low load.  A plan kept for
 * the session must not depend on the tables' sizes when it was made, or a
 * plan made while a table was nearly empty keeps scanning it whole as it
 * grows; so sequential scans are off too.  Every lookup of a batch is
 * written as a LATERAL subquery per key (here and in migration 006), whose
 * only other plan is the index probe.  JIT is off: disabled scans count a
 * huge cost, which would compile the one-row counter UPDATE (100 ms), and
 * a batch's statements never run long enough for JIT to pay off anyway.
 */
static const char *const session_settings[] = {
    "SET plan_cache_mode = force_generic_plan",
    "SET enable_seqscan = off",
    "SET jit = off",
};

/* Send the session's settings; their results are read with the PREPAREs'. */
static bool store_send_settings(struct lane *ln)
{
	for (size_t i = 0; i < sizeof(session_settings) / sizeof(session_settings[0]); i++)
		if (!PQsendQueryParams(ln->pg, session_settings[i], 0, NULL, NULL, NULL, NULL, 0))
			return false;
	return true;
}

/* Schema done: enter pipeline mode, set the session up and prepare the statements. */
static void store_prepare(struct lane *ln)
{
	store_set_state(ln, DB_PREPARING);
	if (!PQenterPipelineMode(ln->pg) || !store_send_settings(ln) ||
	    !PQsendPrepare(ln->pg, "ins", insert_sql, 2, NULL) ||
	    !PQsendPrepare(ln->pg, "lock", lock_sql, 2, NULL) ||
	    !PQsendPrepare(ln->pg, "load", load_sql, 2, NULL) ||
	    !PQsendPrepare(ln->pg, "state", state_sql, 2, NULL) ||
	    !PQsendPrepare(ln->pg, "emit", emit_sql, 1, NULL) ||
	    !PQsendPrepare(ln->pg, "apply", apply_sql, 1, NULL) || !PQpipelineSync(ln->pg)) {
		store_lost(ln, PQerrorMessage(ln->pg));
		return;
	}
	store_flush(ln);
}

/* Read the results of the start-up queries (no pipeline yet). */
static void store_migrate_results(struct lane *ln)
{
	char buf[256];
	for (;;) {
		if (PQisBusy(ln->pg))
			return; /* more to come */
		PGresult *r = PQgetResult(ln->pg);
		if (r == NULL)
			break; /* every statement of the string has answered */
		ExecStatusType t = PQresultStatus(r);
		if (t == PGRES_TUPLES_OK && ln->mig_step == 1 && PQntuples(r) == 1)
			ln->schema_version = atoi(PQgetvalue(r, 0, 0));
		else if (t != PGRES_COMMAND_OK && t != PGRES_TUPLES_OK && !ln->mig_failed) {
			ln->mig_failed = true;
			snprintf(ln->mig_error, sizeof(ln->mig_error), "%s",
			         first_line(PQresultErrorMessage(r), buf, sizeof(buf)));
		}
		PQclear(r);
	}
	/* The query string is finished. */
	if (ln->mig_failed) {
		log_error("database schema not ready", "link=%u reason=%s", ln->id,
		          lq(ln->mig_error));
		store_lost(ln, ln->mig_error);
		return;
	}
	if (ln->mig_step == 1) {
		store_migrate_apply(ln);
		return;
	}
	for (int i = ln->schema_version; i < migrations_count; i++)
		log_info("migration applied", "version=%d name=%s", migrations[i].version,
		         migrations[i].name);
	log_info("schema ready", "link=%u version=%d", ln->id, migrations_count);
	store_prepare(ln);
}

/* Read the results of the PREPARE pipeline. */
static void store_prepare_results(struct lane *ln)
{
	int nulls = 0;
	while (!PQisBusy(ln->pg)) {
		PGresult *r = PQgetResult(ln->pg);
		if (r == NULL) {
			if (++nulls > 1)
				return; /* nothing more has arrived */
			continue;       /* end of the PREPARE's results */
		}
		nulls = 0;
		ExecStatusType t = PQresultStatus(r);
		if (t == PGRES_PIPELINE_SYNC) {
			PQclear(r);
			store_set_state(ln, DB_READY);
			ln->backoff_ms = BACKOFF_MIN_MS;
			ln->down_logged = false;
			log_info("database connected", "link=%u server_version=%d pending=%u",
			         ln->id, PQserverVersion(ln->pg), ln->st->n_queued);
			metrics_db_connected(ln->ever_ready);
			ln->ever_ready = true;
			server_db_ready();
			if (ln->st->n_queued > 0)
				store_send_batch(ln->st);
			return;
		}
		if (t != PGRES_COMMAND_OK) {
			char buf[256];
			log_error("prepare failed", "link=%u reason=%s", ln->id,
			          lq(first_line(PQresultErrorMessage(r), buf, sizeof(buf))));
			PQclear(r);
			store_lost(ln, "prepare failed");
			return;
		}
		PQclear(r);
	}
}

/*
 * Append a quoted string, or null.  Everything quoted here (exporter ids,
 * event ids, types, refs, timestamps) comes from a charset without quote,
 * backslash, comma or brace (lib/validate.c), so the same quoting serves
 * JSON and PostgreSQL array literals.
 */
static void tb_quoted(struct textbuf *b, const char *s)
{
	if (s == NULL) {
		textbuf_add(b, "null", 4);
		return;
	}
	textbuf_add(b, "\"", 1);
	textbuf_str(b, s);
	textbuf_add(b, "\"", 1);
}

/* FNV-1a, 64 bits, over an exporter and a ref (an order or an event id); never 0. */
static uint64_t ref_key(const char *exporter, const char *ref)
{
	uint64_t h = 14695981039346656037u;
	for (const char *p = exporter; *p; p++)
		h = (h ^ (uint8_t)*p) * 1099511628211u;
	h = (h ^ 0xff) * 1099511628211u;
	for (const char *p = ref; *p; p++)
		h = (h ^ (uint8_t)*p) * 1099511628211u;
	return h != 0 ? h : 1;
}

/* The most entries of the sets batch_take fills: a power of two, and
 * batch_take looks at no more than half as many events. */
#define BATCH_SET_SIZE 32768

/*
 * Add s to the batch's set of events; false when an event with the same
 * exporter and id is there already.  The second occurrence must wait for
 * the next batch, so that one statement never holds the same id twice.
 */
static bool batch_set_add(const struct slot **set, size_t mask, const struct slot *s)
{
	size_t i = s->s_id_key & mask;
	for (; set[i] != NULL; i = (i + 1) & mask) {
		/* The strings only when the hashes agree: they are cold by now. */
		if (set[i]->s_id_key == s->s_id_key && strcmp(set[i]->s_id, s->s_id) == 0 &&
		    strcmp(set[i]->s_exporter, s->s_exporter) == 0)
			return false;
	}
	set[i] = s;
	return true;
}

/* Add key to a set of ref_key()s (open addressing, 0 is empty). */
static void key_set_add(uint64_t *set, size_t mask, uint64_t key)
{
	size_t i = key & mask;
	for (; set[i] != 0; i = (i + 1) & mask)
		if (set[i] == key)
			return;
	set[i] = key;
}

/* Is key in a set of ref_key()s? */
static bool key_set_has(const uint64_t *set, size_t mask, uint64_t key)
{
	for (size_t i = key & mask; set[i] != 0; i = (i + 1) & mask)
		if (set[i] == key)
			return true;
	return false;
}

/* Does a batch in flight on another lane hold this order or this event id? */
static bool lanes_hold(const struct store *st, const struct lane *self, uint64_t order, uint64_t id)
{
	for (unsigned i = 0; i < st->n_lanes; i++) {
		const struct lane *ln = &st->lanes[i];
		if (ln != self && ln->batch_in_flight &&
		    (key_set_has(ln->order_set, ln->set_mask, order) ||
		     key_set_has(ln->id_set, ln->set_mask, id)))
			return true;
	}
	return false;
}

/*
 * Move up to max events from the queue into the lane's batch, in queue
 * order, passing over events that must wait for a later batch (they stay
 * queued, in order):
 *  - an event whose order a batch on another lane holds: that batch holds
 *    the order's advisory lock until it commits, so this one would only
 *    wait for it and the lanes would take turns;
 *  - an event whose (exporter, id) a batch on another lane holds, or that
 *    an event passed over earlier in the queue has: the first one sent is
 *    the one stored, the later ones are duplicates or conflicts;
 *  - a second event with an (exporter, id) this batch holds already: one
 *    statement must never hold an id twice.
 * The sets of other lanes hold hashes; a collision only makes an event
 * wait for the next batch.
 */
static unsigned batch_take(struct store *st, struct lane *ln, unsigned max)
{
	struct slot *s, *next;
	unsigned n = 0, looked = 0;
	/* Looking far past events that must wait costs more than it gains. */
	unsigned look_max = 4 * max + 64;
	if (look_max > BATCH_SET_SIZE / 2)
		look_max = BATCH_SET_SIZE / 2;
	size_t size = 64;
	while (size < 2 * (size_t)look_max)
		size *= 2;
	/* Clear only what this batch uses: small batches come often. */
	size_t mask = size - 1;
	ln->set_mask = mask;
	memset(st->batch_set, 0, size * sizeof(*st->batch_set));
	memset(st->passed_set, 0, size * sizeof(*st->passed_set));
	memset(ln->order_set, 0, size * sizeof(*ln->order_set));
	memset(ln->id_set, 0, size * sizeof(*ln->id_set));
	for (s = TAILQ_FIRST(&st->queue); s != NULL && n < max && looked < look_max; s = next) {
		next = TAILQ_NEXT(s, s_store);
		looked++;
		uint64_t order = s->s_order_key, id = s->s_id_key;
		if ((st->n_lanes > 1 &&
		     (lanes_hold(st, ln, order, id) || key_set_has(st->passed_set, mask, id))) ||
		    !batch_set_add(st->batch_set, mask, s)) {
			key_set_add(st->passed_set, mask, id);
			continue;
		}
		key_set_add(ln->order_set, mask, order);
		key_set_add(ln->id_set, mask, id);
		TAILQ_REMOVE(&st->queue, s, s_store);
		st->n_queued--;
		TAILQ_INSERT_TAIL(&ln->batch, s, s_store);
		n++;
		s->s_attempts++;
		s->s_outcome = 0;
	}
	return n;
}

/*
 * Part one's parameters: the batch's exporters and orders as two array
 * literals, an element per event, for LOCK, STATE and LOAD.  The lane's
 * buffers are reused from batch to batch.
 */
static void batch_params(struct lane *ln)
{
	struct textbuf *exporters = &ln->exporters, *orders = &ln->orders;
	const struct slot *s;
	textbuf_reset(exporters);
	textbuf_reset(orders);
	textbuf_add(exporters, "{", 1);
	textbuf_add(orders, "{", 1);
	TAILQ_FOREACH(s, &ln->batch, s_store)
	{
		if (s != TAILQ_FIRST(&ln->batch)) {
			textbuf_add(exporters, ",", 1);
			textbuf_add(orders, ",", 1);
		}
		tb_quoted(exporters, s->s_exporter);
		tb_quoted(orders, s->s_order);
	}
	textbuf_add(exporters, "}", 1);
	textbuf_add(orders, "}", 1);
}

/* An event's columns before its body, in the order the INSERT's parameter takes them. */
enum { N_HEAD_COLS = 6 };

static void head_cols(const struct slot *s, const char *cols[N_HEAD_COLS])
{
	cols[0] = s->s_exporter;
	cols[1] = s->s_id;
	cols[2] = s->s_type;
	cols[3] = s->s_order;
	cols[4] = s->s_shipment;
	cols[5] = s->s_occurred_at;
}

/*
 * The INSERT's parameters: the events as one JSON array of [exporter, id,
 * type, order, shipment, occurred_at, retracts], and their bodies as a
 * second array, in the same order.  The bodies go in as they are: each is
 * one JSON object already.
 */
static void batch_insert_params(struct lane *ln)
{
	struct textbuf *events = &ln->events, *bodies = &ln->bodies;
	const struct slot *s;
	textbuf_reset(events);
	textbuf_reset(bodies);
	ln->out.rows_built = false;
	TAILQ_FOREACH(s, &ln->batch, s_store)
	{
		const char *cols[N_HEAD_COLS];
		bool first = s == TAILQ_FIRST(&ln->batch);
		head_cols(s, cols);
		textbuf_str(events, first ? "[[" : ",[");
		for (int c = 0; c < N_HEAD_COLS; c++) {
			tb_quoted(events, cols[c]);
			textbuf_add(events, ",", 1);
		}
		tb_quoted(events, s->s_retracts);
		textbuf_add(events, "]", 1);
		textbuf_add(bodies, first ? "[" : ",", 1);
		textbuf_add(bodies, s->s_body, s->s_body_len);
	}
	textbuf_add(events, "]", 1);
	textbuf_add(bodies, "]", 1);
}

/* COPY's data: a row per event, columns as in copy_sql. */
static void batch_copy_rows(struct lane *ln)
{
	struct textbuf *rows = &ln->events;
	const struct slot *s;
	textbuf_reset(rows);
	ln->out.rows_built = true;
	copybin_header(rows);
	TAILQ_FOREACH(s, &ln->batch, s_store)
	{
		copybin_row(rows, COPY_COLS);
		copybin_str(rows, s->s_exporter);
		copybin_str(rows, s->s_id);
		copybin_str(rows, s->s_type);
		copybin_str(rows, s->s_order);
		copybin_str(rows, s->s_shipment);
		copybin_timestamptz(rows, s->s_occurred_us);
		copybin_bytes(rows, s->s_body, s->s_body_len);
	}
	copybin_trailer(rows);
}

/*
 * Take up to max_events from the queue and send part one of their
 * transaction on an idle lane: BEGIN, the order locks, STATE and LOAD,
 * then a flush request so the server sends those results at once.
 */
static void lane_send_batch(struct store *st, struct lane *ln)
{
	PGconn *pg = ln->pg;
	bool solo = st->solo > 0;
	unsigned n = batch_take(st, ln, solo ? 1 : (unsigned)st->max_events);
	if (n == 0) {
		/* Every event looked at must wait for another lane's batch:
		 * try again when a batch is over, not on every new event. */
		ln->blocked = true;
		return;
	}
	if (solo)
		st->solo--;
	ln->n_batch = n;
	ln->batch_in_flight = true;
	memset(&ln->out, 0, sizeof(ln->out));
	ln->out.expect = ln->needs_rollback ? BQ_ROLLBACK : BQ_BEGIN;

	batch_params(ln);
	const char *ord_params[2] = {ln->exporters.p, ln->orders.p};
	bool ok = (!ln->needs_rollback ||
	           PQsendQueryParams(pg, "ROLLBACK", 0, NULL, NULL, NULL, NULL, 0)) &&
	          PQsendQueryParams(pg, "BEGIN", 0, NULL, NULL, NULL, NULL, 0) &&
	          PQsendQueryPrepared(pg, "lock", 2, ord_params, NULL, NULL, 0) &&
	          PQsendQueryPrepared(pg, "state", 2, ord_params, NULL, NULL, 0) &&
	          PQsendQueryPrepared(pg, "load", 2, ord_params, NULL, NULL, 0) &&
	          PQsendFlushRequest(pg);
	if (!ok) {
		store_lost(ln, PQerrorMessage(pg));
		return;
	}
	log_debug("batch sent", "link=%u events=%u queued=%u", ln->id, n, st->n_queued);
	metrics_batch_sent(n);
	clock_gettime(CLOCK_MONOTONIC, &ln->sent_at);
	store_flush(ln);
}

/*
 * May lane i start a batch now?  The first lane may whenever events wait;
 * the others only while a backlog does (half a full batch or more).
 * Below that one lane keeps up, and a second would only split the batches
 * and pay each batch's fixed cost (about 0.8 ms of the server's CPU) more
 * often, on a machine whose cores the daemon and the server share: at
 * 4,600 to 18,000 events/s one lane took 15 to 25 % less server CPU per
 * event, with the same or a lower median latency.  A backlog is what more lanes are
 * for.
 */
static bool lane_may_start(const struct store *st, unsigned i)
{
	return i == 0 || st->n_queued >= (unsigned)st->max_events / 2;
}

/* Start a batch on every idle lane while events wait. */
static void store_send_batch(struct store *st)
{
	for (unsigned i = 0; i < st->n_lanes && st->n_queued > 0; i++) {
		struct lane *ln = &st->lanes[i];
		if (ln->state == DB_READY && !ln->batch_in_flight && !ln->blocked &&
		    lane_may_start(st, i))
			lane_send_batch(st, ln);
	}
}

/* Is a lane ready for a batch now? */
static bool store_lane_idle(const struct store *st)
{
	for (unsigned i = 0; i < st->n_lanes; i++)
		if (st->lanes[i].state == DB_READY && !st->lanes[i].batch_in_flight &&
		    !st->lanes[i].blocked && lane_may_start(st, i))
			return true;
	return false;
}

/*
 * Fold the orders that got new events (the events with verdict 's') into
 * the lane's APPLY and EMIT parameters.  Needs STATE's and LOAD's rows,
 * which it frees.
 */
static void batch_fold(struct lane *ln)
{
	struct batch_outcome *o = &ln->out;
	struct slot **changed = calloc(ln->n_batch, sizeof(*changed));
	size_t n_changed = 0;
	struct slot *s;
	if (changed == NULL)
		abort();
	TAILQ_FOREACH(s, &ln->batch, s_store)
	{
		if (s->s_outcome == 's')
			changed[n_changed++] = s;
	}
	struct projection p = {0};
	if (o->load != NULL)
		project_build(o->load, o->states, changed, n_changed, &ln->st->rules, &ln->apply,
		              &ln->notes, &p);
	free(changed);
	o->has_apply = p.n_orders > 0;
	o->has_emit = p.n_notes > 0;
	o->folded = true;
	batch_results_clear(o, false);
}

/*
 * The events are written: send part two (APPLY, EMIT, COMMIT), folding
 * first unless that was done already, or only the Sync (which rolls back)
 * when something failed.
 */
static void store_send_part2(struct lane *ln)
{
	struct batch_outcome *o = &ln->out;
	bool ok = true;

	o->part2_sent = true;
	fault_point("before_commit");
	if (o->sqlstate[0] == '\0') {
		if (!o->folded)
			batch_fold(ln);
		/* libpq copies a parameter as it is sent: the buffers are free
		 * for the next batch right after. */
		if (o->has_apply) {
			const char *v[1] = {ln->apply.p};
			ok = PQsendQueryPrepared(ln->pg, "apply", 1, v, NULL, NULL, 0);
		}
		if (ok && o->has_emit) {
			const char *v[1] = {ln->notes.p};
			ok = PQsendQueryPrepared(ln->pg, "emit", 1, v, NULL, NULL, 0);
		}
		ok = ok && PQsendQueryParams(ln->pg, "COMMIT", 0, NULL, NULL, NULL, NULL, 0);
	} else {
		o->has_apply = o->has_emit = false;
	}
	batch_results_clear(o, false);
	ok = ok && PQpipelineSync(ln->pg);
	if (!ok)
		store_lost(ln, PQerrorMessage(ln->pg));
}

/*
 * Must the batch go by the INSERT, as far as its own events tell?  It must
 * while COPY is paused, when an event retracts another (the INSERT checks
 * the target) and when a COPY refused one of its events before.
 */
static bool batch_insert_known(const struct lane *ln)
{
	const struct slot *s;
	if (ln->st->copy_pause > 0)
		return true;
	TAILQ_FOREACH(s, &ln->batch, s_store)
	{
		if (s->s_retracts != NULL || s->s_copy_refused)
			return true;
	}
	return false;
}

/*
 * Must the batch go by the INSERT?  As batch_insert_known() says, and when
 * LOAD, which returns every stored event of the batch's orders, holds one
 * of its ids: a resent event, a duplicate or a conflict within the order.
 * An id stored under another order is not seen here; COPY meets it and the
 * batch comes back (store_batch_failed).  id_set holds hashes, so a
 * collision only costs the INSERT.
 */
static bool batch_needs_insert(const struct lane *ln)
{
	const PGresult *load = ln->out.load;
	if (batch_insert_known(ln) || load == NULL)
		return true;
	for (int row = 0; row < PQntuples(load); row++) {
		uint64_t id = ref_key(PQgetvalue(load, row, 0), PQgetvalue(load, row, 2));
		if (key_set_has(ln->id_set, ln->set_mask, id))
			return true;
	}
	return false;
}

/*
 * LOAD is in: write the events.  By COPY when the batch holds only new
 * events: every verdict is 's', so the batch can be folded while the
 * server stores the rows.  COPY does not run in pipeline mode, which is
 * left (every result is read by now) and entered again after it.
 * Otherwise by the INSERT, whose verdicts come before the fold.
 */
static void store_write_events(struct lane *ln)
{
	struct batch_outcome *o = &ln->out;
	struct slot *s;
	bool insert = batch_needs_insert(ln);
	if (ln->st->copy_pause > 0)
		ln->st->copy_pause--;
	if (insert) {
		batch_insert_params(ln);
		const char *v[2] = {ln->events.p, ln->bodies.p};
		o->expect = BQ_INSERT;
		if (!PQsendQueryPrepared(ln->pg, "ins", 2, v, NULL, NULL, 0) ||
		    !PQsendFlushRequest(ln->pg))
			store_lost(ln, PQerrorMessage(ln->pg));
		return;
	}
	TAILQ_FOREACH(s, &ln->batch, s_store)
	{
		s->s_outcome = 's';
	}
	o->expect = BQ_COPY;
	if (!PQexitPipelineMode(ln->pg) || !PQsendQuery(ln->pg, copy_sql)) {
		store_lost(ln, PQerrorMessage(ln->pg));
		return;
	}
	if (!o->rows_built)
		batch_copy_rows(ln);
}

/*
 * COPY asks for its rows: hand them all and the end to libpq.  The batch
 * is folded once libpq has sent the last of them (store_io_cb), so that
 * the server is never left waiting for rows while the daemon folds.
 */
static void store_copy_rows(struct lane *ln)
{
	/* In pieces: PQputCopyData takes an int, and a batch of long lines
	 * may pass 2 GB (10,000 events of up to 16 MB). */
	enum { PIECE = 1 << 20 };
	for (size_t at = 0; at < ln->events.len; at += PIECE) {
		size_t n = ln->events.len - at < PIECE ? ln->events.len - at : PIECE;
		if (PQputCopyData(ln->pg, ln->events.p + at, (int)n) != 1) {
			store_lost(ln, PQerrorMessage(ln->pg));
			return;
		}
	}
	if (PQputCopyEnd(ln->pg, NULL) != 1) {
		store_lost(ln, PQerrorMessage(ln->pg));
		return;
	}
	ln->out.copy_sent = true;
}

/* COPY is over: back to pipeline mode for part two. */
static void store_copy_done(struct lane *ln)
{
	if (!PQenterPipelineMode(ln->pg)) {
		store_lost(ln, PQerrorMessage(ln->pg));
		return;
	}
	store_send_part2(ln);
}

/* Remember the first failure of a batch (its text is copied; r is not kept). */
static void note_failure(struct batch_outcome *o, struct slot *s, const PGresult *r)
{
	char buf[256];
	if (o->sqlstate[0] != '\0')
		return;
	const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
	snprintf(o->sqlstate, sizeof(o->sqlstate), "%s", state ? state : "XX000");
	const char *primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
	snprintf(o->message, sizeof(o->message), "%s",
	         primary ? primary : first_line(PQresultErrorMessage(r), buf, sizeof(buf)));
	o->failed = s;
}

/* One result of the batch, matched to its query by position. */
static void store_batch_result(struct lane *ln, PGresult *r)
{
	struct batch_outcome *o = &ln->out;
	ExecStatusType t = PQresultStatus(r);

	if (t == PGRES_PIPELINE_ABORTED || t == PGRES_FATAL_ERROR) {
		if (t == PGRES_FATAL_ERROR && o->sqlstate[0] == '\0') {
			note_failure(o, NULL, r);
			o->copy_failed = o->expect == BQ_COPY;
		}
		PQclear(r);
		return;
	}
	switch (o->expect) {
	case BQ_COPY:
		if (t == PGRES_COPY_IN)
			store_copy_rows(ln);
		break;
	case BQ_INSERT:
		if (t == PGRES_TUPLES_OK && PQntuples(r) == (int)ln->n_batch) {
			int i = 0;
			struct slot *s;
			TAILQ_FOREACH(s, &ln->batch, s_store)
			{
				if (!PQgetisnull(r, i, 0))
					s->s_outcome = PQgetvalue(r, i, 0)[0];
				i++;
			}
		}
		break;
	case BQ_STATE:
		if (t == PGRES_TUPLES_OK && o->states == NULL) {
			o->states = r;
			return; /* kept for the diff */
		}
		break;
	case BQ_LOAD:
		if (t == PGRES_TUPLES_OK && o->load == NULL) {
			o->load = r;
			return; /* kept for the fold */
		}
		break;
	case BQ_EMIT:
		if (t == PGRES_TUPLES_OK && o->emitted == NULL) {
			o->emitted = r;
			return; /* reported after COMMIT */
		}
		break;
	case BQ_COMMIT:
		o->commit_ok = t == PGRES_COMMAND_OK;
		break;
	default:
		break;
	}
	PQclear(r);
}

/* The query after the current one, once its results are complete. */
static void store_batch_advance(struct lane *ln)
{
	struct batch_outcome *o = &ln->out;
	switch (o->expect) {
	case BQ_ROLLBACK:
		o->expect = BQ_BEGIN;
		break;
	case BQ_BEGIN:
		o->expect = BQ_LOCK;
		break;
	case BQ_LOCK:
		o->expect = BQ_STATE;
		break;
	case BQ_STATE:
		o->expect = BQ_LOAD;
		break;
	case BQ_LOAD:
		if (o->sqlstate[0] == '\0') {
			store_write_events(ln);
			break;
		}
		store_send_part2(ln);
		o->expect = BQ_SYNC;
		break;
	case BQ_INSERT:
	case BQ_COPY:
		if (o->expect == BQ_COPY)
			store_copy_done(ln);
		else
			store_send_part2(ln);
		o->expect = o->has_apply ? BQ_APPLY : o->has_emit ? BQ_EMIT : BQ_COMMIT;
		if (o->sqlstate[0] != '\0')
			o->expect = BQ_SYNC;
		break;
	case BQ_APPLY:
		o->expect = o->has_emit ? BQ_EMIT : BQ_COMMIT;
		break;
	case BQ_EMIT:
		o->expect = BQ_COMMIT;
		break;
	default:
		o->expect = BQ_SYNC;
		break;
	}
}

/* Is this SQLSTATE worth retrying the whole batch for? */
static bool sqlstate_transient(const char *s)
{
	return strncmp(s, "08", 2) == 0 || strncmp(s, "40", 2) == 0 || strncmp(s, "53", 2) == 0 ||
	       strncmp(s, "57", 2) == 0 || strncmp(s, "58", 2) == 0;
}

/* Is this SQLSTATE a verdict on the event's data? */
static bool sqlstate_data(const char *s)
{
	return strncmp(s, "22", 2) == 0 || strncmp(s, "23", 2) == 0;
}

/* Count and answer one slot that is out of every list. */
static void store_answer(struct slot *s, enum store_result r, const char *why)
{
	if (r == STORE_STORED)
		server.events_stored++;
	else if (r == STORE_DUPLICATE)
		server.events_duplicate++;
	else
		server.events_rejected++;
	metrics_event_result(s->s_type, r);
	conn_slot_finished(s, r, why);
}

/* Answer one slot and take it out of the batch. */
static void store_finish(struct lane *ln, struct slot *s, enum store_result r, const char *why)
{
	TAILQ_REMOVE(&ln->batch, s, s_store);
	ln->n_batch--;
	store_answer(s, r, why);
}

/* Did the batch's statement give this event a verdict ('s', 'd', 'c', 'r')? */
static bool has_verdict(const struct slot *s)
{
	return s->s_outcome != '\0' && strchr("sdcr", s->s_outcome) != NULL;
}

/* Answer one event of a committed batch from its statement's verdict. */
static void store_answer_committed(struct slot *s)
{
	switch (s->s_outcome) {
	case 's':
		store_answer(s, STORE_STORED, NULL);
		break;
	case 'd':
		store_answer(s, s->s_in_doubt ? STORE_STORED : STORE_DUPLICATE, NULL);
		break;
	case 'c':
		store_answer(s, STORE_CONFLICT, NULL);
		break;
	case 'r':
		store_answer(s, STORE_REJECTED,
		             "field \"retracts\": the event it names is a retraction or "
		             "belongs to another order");
		break;
	default:
		break; /* has_verdict() left it in the batch, to ask again */
	}
}

/*
 * The batch committed: answer every event from its statement's verdict.
 * The lane is handed its next batch first, and the answers are written
 * while the server works on it: answering first left the server waiting
 * for the daemon at every commit.  An event without a verdict (its id is
 * taken by a transaction not visible yet) goes back to the head of the
 * queue, to be asked about again.
 */
static void store_batch_committed(struct lane *ln)
{
	struct timespec sent_at = ln->sent_at;
	PGresult *emitted = ln->out.emitted;
	struct slot_list done;
	struct slot *s, *next;

	ln->out.emitted = NULL;
	TAILQ_INIT(&done);
	TAILQ_FOREACH_SAFE(s, &ln->batch, s_store, next)
	{
		if (has_verdict(s)) {
			TAILQ_REMOVE(&ln->batch, s, s_store);
			ln->n_batch--;
			TAILQ_INSERT_TAIL(&done, s, s_store);
		}
	}
	store_requeue_batch(ln, false);
	store_send_batch(ln->st);
	metrics_batch_committed(&sent_at);
	metrics_notifications(emitted);
	feed_report(emitted);
	PQclear(emitted);
	TAILQ_FOREACH_SAFE(s, &done, s_store, next)
	{
		TAILQ_REMOVE(&done, s, s_store);
		store_answer_committed(s);
	}
}

/* The batch rolled back: answer the guilty event, resend the others. */
static void store_batch_failed(struct lane *ln)
{
	struct batch_outcome *o = &ln->out;
	struct slot *bad = o->failed;

	/* COPY met a stored id LOAD could not show (one stored under another
	 * order, or by another transaction meanwhile): the next try of these
	 * events takes the INSERT, which answers each of them. */
	if (o->copy_failed && strcmp(o->sqlstate, "23505") == 0) {
		struct slot *s;
		TAILQ_FOREACH(s, &ln->batch, s_store)
		{
			s->s_copy_refused = true;
		}
		ln->st->copy_pause = COPY_PAUSE_BATCHES;
		log_info("batch retried by INSERT", "link=%u sqlstate=%s reason=%s events=%u",
		         ln->id, o->sqlstate, lq(o->message), ln->n_batch);
		return;
	}
	if (sqlstate_transient(o->sqlstate)) {
		log_info("batch retried", "link=%u sqlstate=%s reason=%s events=%u", ln->id,
		         o->sqlstate, lq(o->message), ln->n_batch);
		return;
	}
	/* A failure outside the INSERTs (the fold's rows, say) names no
	 * event: resend the batch one event at a time to find it. */
	if (bad == NULL && ln->n_batch == 1)
		bad = TAILQ_FIRST(&ln->batch);
	if (bad == NULL) {
		log_warnx("batch failed, isolating", "link=%u sqlstate=%s reason=%s events=%u",
		          ln->id, o->sqlstate, lq(o->message), ln->n_batch);
		ln->st->solo = ln->n_batch;
		return;
	}
	if (sqlstate_data(o->sqlstate)) {
		char why[320];
		snprintf(why, sizeof(why), "refused by the database: %s", o->message);
		store_finish(ln, bad, STORE_REJECTED, why);
		return;
	}
	log_error("batch failed", "link=%u sqlstate=%s reason=%s events=%u event=%s", ln->id,
	          o->sqlstate, lq(o->message), ln->n_batch, lq(bad->s_id));
	if (bad->s_attempts >= MAX_ATTEMPTS)
		store_finish(ln, bad, STORE_FAILED, "the database failed to store this event");
}

/* The Sync arrived: settle the batch and start the next one. */
static void store_batch_done(struct lane *ln)
{
	/* A failed batch leaves its BEGIN block aborted: the next batch
	 * starts with ROLLBACK. */
	ln->needs_rollback = !ln->out.commit_ok;
	if (ln->out.commit_ok) {
		fault_point("after_commit");
		store_batch_committed(ln);
		fault_point_soon("after_acks");
	} else {
		store_batch_failed(ln);
		store_requeue_batch(ln, false); /* whatever is left goes again */
	}
	store_send_batch(ln->st);
	conn_resume_paused();
}

/* Read every result that is ready for the batch in flight. */
static void store_batch_results(struct lane *ln)
{
	struct batch_outcome *o = &ln->out;
	while (ln->batch_in_flight && ln->state == DB_READY && !PQisBusy(ln->pg)) {
		PGresult *r = PQgetResult(ln->pg);
		if (r == NULL) {
			if (!o->have_result)
				break; /* nothing more has arrived */
			o->have_result = false;
			store_batch_advance(ln);
			continue;
		}
		if (PQresultStatus(r) == PGRES_PIPELINE_SYNC) {
			PQclear(r);
			store_batch_done(ln);
			continue;
		}
		o->have_result = true;
		store_batch_result(ln, r);
	}
}

/* Socket readiness for every state after the first connect call. */
static void store_io_cb(evutil_socket_t fd, short what, void *arg)
{
	struct lane *ln = arg;
	(void)fd;

	if (ln->state == DB_CONNECTING) {
		switch (PQconnectPoll(ln->pg)) {
		case PGRES_POLLING_READING:
			store_watch(ln, EV_READ);
			return;
		case PGRES_POLLING_WRITING:
			store_watch(ln, EV_WRITE);
			return;
		case PGRES_POLLING_FAILED:
			store_lost(ln, PQerrorMessage(ln->pg));
			return;
		default:
			if (PQsetnonblocking(ln->pg, 1) != 0) {
				store_lost(ln, PQerrorMessage(ln->pg));
				return;
			}
			if (PQserverVersion(ln->pg) < MIN_SERVER_VERSION) {
				/* Said once per outage, like any reason the server
				 * cannot be used; retried, since it may be upgraded. */
				store_lost(ln, "PostgreSQL 13 or later is needed"
				               " (the batches use pg_current_xact_id())");
				return;
			}
			store_migrate_begin(ln);
			return;
		}
	}

	/* Always read before writing more (a full socket both ways would
	 * otherwise deadlock). */
	if ((what & EV_READ) && !PQconsumeInput(ln->pg)) {
		store_lost(ln, PQerrorMessage(ln->pg));
		return;
	}
	if (ln->state == DB_MIGRATING)
		store_migrate_results(ln);
	else if (ln->state == DB_PREPARING)
		store_prepare_results(ln);
	else if (ln->state == DB_READY)
		store_batch_results(ln);
	if (ln->state == DB_DOWN)
		return;
	if (PQstatus(ln->pg) == CONNECTION_BAD) {
		store_lost(ln, PQerrorMessage(ln->pg));
		return;
	}
	if (store_flush(ln) != 0)
		return;
	/* COPY's rows are all out: fold while the server stores them. */
	struct batch_outcome *o = &ln->out;
	if (ln->batch_in_flight && o->copy_sent && !o->folded && o->sqlstate[0] == '\0')
		batch_fold(ln);
	/* Part one is with the server: write COPY's rows while it works, so
	 * that they are ready when LOAD is in and COPY asks for them. */
	else if (ln->batch_in_flight && o->expect < BQ_INSERT && !o->rows_built &&
	         !batch_insert_known(ln))
		batch_copy_rows(ln);
}

/* Flush timer: start a batch now. */
static void store_flush_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	store_send_batch(arg);
}

/* Set up lane i and start its first connection attempt. */
static void lane_init(struct store *st, unsigned i)
{
	struct lane *ln = &st->lanes[i];
	ln->st = st;
	ln->id = i + 1;
	ln->state = DB_DOWN;
	ln->backoff_ms = BACKOFF_MIN_MS;
	TAILQ_INIT(&ln->batch);
	ln->ev_retry = evtimer_new(st->base, store_retry_cb, ln);
	ln->order_set = calloc(BATCH_SET_SIZE, sizeof(*ln->order_set));
	ln->id_set = calloc(BATCH_SET_SIZE, sizeof(*ln->id_set));
	if (ln->ev_retry == NULL || ln->order_set == NULL || ln->id_set == NULL)
		abort();
	store_connect(ln);
}

struct store *store_new(struct event_base *base, const struct config *cfg)
{
	struct store *st = calloc(1, sizeof(*st));
	if (st == NULL)
		abort();
	st->base = base;
	TAILQ_INIT(&st->queue);
	st->conninfo = strdup(cfg->conninfo);
	st->ev_flush = evtimer_new(base, store_flush_cb, st);
	st->batch_set = calloc(BATCH_SET_SIZE, sizeof(*st->batch_set));
	st->passed_set = calloc(BATCH_SET_SIZE, sizeof(*st->passed_set));
	st->n_lanes = (unsigned)cfg->db_connections;
	st->lanes = calloc(st->n_lanes, sizeof(*st->lanes));
	if (st->conninfo == NULL || st->ev_flush == NULL || st->batch_set == NULL ||
	    st->passed_set == NULL || st->lanes == NULL)
		abort();
	store_apply_config(st, cfg);
	for (unsigned i = 0; i < st->n_lanes; i++)
		lane_init(st, i);
	return st;
}

void store_apply_config(struct store *st, const struct config *cfg)
{
	st->max_events = cfg->batch_max_events;
	st->max_delay_ms = cfg->batch_max_delay_ms;
	/* The rules point into cfg: taken again on every reload. */
	config_model_rules(cfg, &st->rules);
}

void store_submit(struct store *st, struct slot *s)
{
	/* Hashed now, while the strings are in the caches: batch_take reads
	 * them again only after the events queued ahead are gone. */
	s->s_order_key = ref_key(s->s_exporter, s->s_order);
	s->s_id_key = ref_key(s->s_exporter, s->s_id);
	TAILQ_INSERT_TAIL(&st->queue, s, s_store);
	st->n_queued++;
	if (!store_lane_idle(st))
		return; /* the next batch picks it up */
	if (st->n_queued >= (unsigned)st->max_events || st->max_delay_ms == 0) {
		/* After the current callbacks, so lines read in this loop pass
		 * join the same batch. */
		event_active(st->ev_flush, EV_TIMEOUT, 0);
	} else if (!evtimer_pending(st->ev_flush, NULL)) {
		struct timeval tv = {0, st->max_delay_ms * 1000};
		evtimer_add(st->ev_flush, &tv);
	}
}

unsigned store_pending(const struct store *st)
{
	unsigned n = st->n_queued;
	for (unsigned i = 0; i < st->n_lanes; i++)
		n += st->lanes[i].n_batch;
	return n;
}

bool store_db_up(const struct store *st)
{
	for (unsigned i = 0; i < st->n_lanes; i++)
		if (st->lanes[i].state == DB_READY)
			return true;
	return false;
}

void store_free(struct store *st)
{
	if (st == NULL)
		return;
	for (unsigned i = 0; i < st->n_lanes; i++) {
		struct lane *ln = &st->lanes[i];
		if (ln->ev_sock_added)
			event_del(&ln->ev_sock);
		if (ln->pg != NULL)
			PQfinish(ln->pg);
		event_free(ln->ev_retry);
		textbuf_free(&ln->events);
		textbuf_free(&ln->bodies);
		textbuf_free(&ln->exporters);
		textbuf_free(&ln->orders);
		textbuf_free(&ln->apply);
		textbuf_free(&ln->notes);
		free(ln->order_set);
		free(ln->id_set);
	}
	free(st->lanes);
	event_free(st->ev_flush);
	free(st->conninfo);
	free(st->batch_set);
	free(st->passed_set);
	free(st);
}
