/*
 * lane.c - one session with PostgreSQL, from connecting to ready.
 *
 * A lane connects without blocking (PQconnectStartParams, then
 * PQconnectPoll on each readiness of its socket), checks the server's
 * version, brings the schema up to date and prepares the batch's
 * statements; then it is ready for batches (batch.c).  The migrations
 * built into the binary are applied in one transaction under an advisory
 * lock, so two daemons starting at once cannot race.  When the session
 * fails or is lost, the batch in flight goes back to the queue (store.c
 * answers internal_error for an event sent too often) and the lane tries
 * again after a backoff that doubles from 100 ms to 5 s.  A lost session
 * is a warning, and so is the first failure of an outage to connect, with
 * its reason (too many clients, a password refused, no such database);
 * the others are debug lines.
 *
 * The socket is watched by one event at PRIO_DATABASE: for reading
 * always, for writing while libpq holds output it could not send.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault.h"
#include "feed.h"
#include "log.h"
#include "metrics.h"
#include "migrations.h"
#include "store.h"

#define BACKOFF_MIN_MS     100
#define BACKOFF_MAX_MS     5000
#define MIGRATION_LOCK_KEY "7433001"
#define MIN_SERVER_VERSION 130000

static const char *const db_state_names[DB_STATE_MAX] = {
    "down", "connecting", "migrating", "preparing", "ready",
};

static void lane_io_cb(evutil_socket_t fd, short what, void *arg);

/* Move to a new state, logging the transition at debug level. */
static void lane_set_state(struct lane *ln, enum db_state s)
{
	if (s >= DB_STATE_MAX)
		abort();
	log_debug("database state", "link=%u from=%s to=%s", ln->id, db_state_names[ln->state],
	          db_state_names[s]);
	ln->state = s;
}

/*
 * Push buffered output; keep watching for write while some is left.
 * Returns PQflush()'s answer: 0 all sent, 1 some left, -1 the lane was lost.
 */
int lane_flush(struct lane *ln)
{
	int r = pgsock_flush(&ln->sock);
	if (r < 0)
		lane_lost(ln, PQerrorMessage(ln->sock.pg));
	return r;
}

/* Server notices ("already exists, skipping") go to the debug log. */
static void lane_notice(void *arg, const PGresult *r)
{
	char buf[256];
	struct lane *ln = arg;
	pgsock_notice(&ln->sock, r);
	log_debug("database notice", "detail=%s",
	          lq(log_first_line(PQresultErrorMessage(r), buf, sizeof(buf))));
}

/* Start a connection attempt. */
static void lane_connect(struct lane *ln)
{
	if (!pgsock_start(&ln->sock, ln->st->conninfo, "ordertrackd", lane_notice, ln)) {
		lane_lost(ln, pgsock_error(&ln->sock));
		return;
	}
	lane_set_state(ln, DB_CONNECTING);
}

/* Reconnect timer. */
static void lane_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	lane_connect(arg);
}

/*
 * The connection failed or was lost: keep every unanswered event, drop the
 * connection, and try again after a backoff that doubles up to a cap.
 */
void lane_lost(struct lane *ln, const char *why)
{
	char buf[256];
	const char *reason = log_first_line(why, buf, sizeof(buf));

	if (ln->batch_in_flight) {
		store_batch_lost(ln, reason);
		/* Another lane may be up and able to take them; from the loop,
		 * since this can run inside store_send_batch. */
		event_active(ln->st->ev_flush, EV_TIMEOUT, 0);
	}
	ln->rollback_in_flight = false; /* the new session has no block */
	char more[sizeof(ln->sock.fields)];
	snprintf(more, sizeof(more), "%s", pgsock_loss_fields(&ln->sock));
	int retry_ms = pgsock_close_retry(&ln->sock);
	/* Lost once connected ("database connected" came); cut off before
	 * that (migrating, preparing) it was never up: unavailable. */
	if (ln->state == DB_READY) {
		log_warnx("database lost", "link=%u reason=%s%s pending=%u", ln->id, lq(reason),
		          more, ln->st->n_queued);
		/* The loss's reason says little ("server closed the
		 * connection"): the first reconnect that fails says why. */
		ln->down_logged = false;
	} else if (!ln->down_logged) {
		log_warnx("database unavailable", "link=%u reason=%s retry_ms=%d", ln->id,
		          lq(reason), retry_ms);
		ln->down_logged = true;
	} else {
		log_debug("database still unavailable", "link=%u reason=%s", ln->id, lq(reason));
	}
	lane_set_state(ln, DB_DOWN);
}

/* Step 1 of start-up: lock out other daemons and read the schema version. */
static void lane_migrate_begin(struct lane *ln)
{
	static const char sql[] =
	    "SET synchronous_commit = on;" PGSOCK_READ_COMMITTED_SQL ";"
	    /* The SET is for the session's batches: this string's transaction
	     * began with the statement before it. */
	    "BEGIN ISOLATION LEVEL READ COMMITTED;"
	    /* For this transaction only (step 2 too): the migrations commit
	     * whole or not at all, and a statement_timeout of the role or
	     * database shorter than one of them (007 rewrites the events)
	     * would roll them all back at every try, for ever, each try
	     * holding its locks that long.  lock_timeout stays: a wait it
	     * ends is tried again later and does get through. */
	    "SET LOCAL statement_timeout = 0;"
	    "SELECT pg_advisory_xact_lock(" MIGRATION_LOCK_KEY ");"
	    "CREATE SCHEMA IF NOT EXISTS ordertrack;"
	    "CREATE TABLE IF NOT EXISTS ordertrack.schema_migrations ("
	    " version integer PRIMARY KEY,"
	    " name text NOT NULL,"
	    " applied_at timestamptz NOT NULL DEFAULT now());"
	    "SELECT coalesce(max(version), 0), current_setting('fsync'),"
	    " current_setting('full_page_writes') FROM ordertrack.schema_migrations";

	lane_set_state(ln, DB_MIGRATING);
	ln->needs_rollback = false; /* a new session has no open block */
	ln->mig_step = 1;
	ln->mig_failed = false;
	ln->schema_version = -1;
	ln->durable = true; /* until step 1's row says otherwise */
	if (!PQsendQuery(ln->sock.pg, sql)) {
		lane_lost(ln, PQerrorMessage(ln->sock.pg));
		return;
	}
	lane_flush(ln);
}

/* Step 2: apply what is missing and commit, releasing the lock. */
static void lane_migrate_apply(struct lane *ln)
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
	int ok = PQsendQuery(ln->sock.pg, sql);
	free(sql);
	if (!ok) {
		lane_lost(ln, PQerrorMessage(ln->sock.pg));
		return;
	}
	lane_flush(ln);
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
static bool lane_send_settings(struct lane *ln)
{
	for (size_t i = 0; i < sizeof(session_settings) / sizeof(session_settings[0]); i++)
		if (!PQsendQueryParams(ln->sock.pg, session_settings[i], 0, NULL, NULL, NULL, NULL,
		                       0))
			return false;
	const char *keep = pgsock_keep_idle_sql(ln->sock.pg);
	return keep == NULL || PQsendQueryParams(ln->sock.pg, keep, 0, NULL, NULL, NULL, NULL, 0);
}

static const char counter_sql[] = "SELECT last_seq FROM ordertrack.notification_counter";

/* Schema done: enter pipeline mode, set the session up and prepare the statements. */
static void lane_prepare(struct lane *ln)
{
	lane_set_state(ln, DB_PREPARING);
	if (fault_check("lose_in_prepare")) {
		lane_lost(ln, "fault point lose_in_prepare");
		return;
	}
	/* The counter before this session's first batch: a database
	 * restored from an older backup has given out fewer seqs than the
	 * subscribers' cursors (feed.c).  Read here, it comes before any
	 * batch of this session can commit past those cursors. */
	ln->feed_check = feed_check_begin();
	ln->counter = -1;
	if (!PQenterPipelineMode(ln->sock.pg) || !lane_send_settings(ln) ||
	    !PQsendQueryParams(ln->sock.pg, counter_sql, 0, NULL, NULL, NULL, NULL, 0) ||
	    !batch_send_prepares(ln->sock.pg) || !PQpipelineSync(ln->sock.pg)) {
		lane_lost(ln, PQerrorMessage(ln->sock.pg));
		return;
	}
	lane_flush(ln);
}

/*
 * Step 1's row: the schema version, and the two server settings without
 * which a commit, and so an ack, is not on disk.  The daemon sets
 * synchronous_commit itself; these it can only report.
 */
static void lane_read_version(struct lane *ln, const PGresult *r)
{
	ln->schema_version = atoi(PQgetvalue(r, 0, 0));
	const char *fsync = PQgetvalue(r, 0, 1), *fpw = PQgetvalue(r, 0, 2);
	ln->durable = strcmp(fsync, "on") == 0 && strcmp(fpw, "on") == 0;
	snprintf(ln->durability, sizeof(ln->durability), "fsync=%.8s full_page_writes=%.8s", fsync,
	         fpw);
}

/* Read the results of the start-up queries (no pipeline yet). */
static void lane_migrate_results(struct lane *ln)
{
	char buf[256];
	for (;;) {
		if (PQisBusy(ln->sock.pg))
			return; /* more to come */
		PGresult *r = PQgetResult(ln->sock.pg);
		if (r == NULL)
			break; /* every statement of the string has answered */
		ExecStatusType t = PQresultStatus(r);
		/* Step 1's string also selects the advisory lock: one column. */
		if (t == PGRES_TUPLES_OK && ln->mig_step == 1 && PQntuples(r) == 1 &&
		    PQnfields(r) == 3)
			lane_read_version(ln, r);
		else if (t != PGRES_COMMAND_OK && t != PGRES_TUPLES_OK && !ln->mig_failed) {
			ln->mig_failed = true;
			snprintf(ln->mig_error, sizeof(ln->mig_error), "%s",
			         log_first_line(PQresultErrorMessage(r), buf, sizeof(buf)));
		}
		PQclear(r);
	}
	/* The query string is finished. */
	if (ln->mig_failed) {
		/* Once per reason until the schema is ready: a session that
		 * tries every 5 s for days must not fill the log. */
		if (strcmp(ln->mig_logged, ln->mig_error) != 0)
			log_error("database schema not ready", "link=%u reason=%s", ln->id,
			          lq(ln->mig_error));
		snprintf(ln->mig_logged, sizeof(ln->mig_logged), "%s", ln->mig_error);
		lane_lost(ln, ln->mig_error);
		return;
	}
	if (ln->mig_step == 1) {
		lane_migrate_apply(ln);
		return;
	}
	for (int i = ln->schema_version; i < migrations_count; i++)
		log_info("migration applied", "version=%d name=%s", migrations[i].version,
		         migrations[i].name);
	log_info("schema ready", "link=%u version=%d", ln->id, migrations_count);
	ln->mig_logged[0] = '\0';
	if (!ln->durable)
		log_warnx("database not durable",
		          "link=%u %s reason=\"an acked event may be lost if the database host "
		          "crashes\"",
		          ln->id, ln->durability);
	lane_prepare(ln);
}

/* Read the results of the PREPARE pipeline. */
static void lane_prepare_results(struct lane *ln)
{
	int nulls = 0;
	while (!PQisBusy(ln->sock.pg)) {
		PGresult *r = PQgetResult(ln->sock.pg);
		if (r == NULL) {
			if (++nulls > 1)
				return; /* nothing more has arrived */
			continue;       /* end of the PREPARE's results */
		}
		nulls = 0;
		ExecStatusType t = PQresultStatus(r);
		if (t == PGRES_TUPLES_OK && PQntuples(r) == 1 && PQnfields(r) == 1) {
			ln->counter = strtoll(PQgetvalue(r, 0, 0), NULL, 10); /* counter_sql */
			PQclear(r);
			continue;
		}
		if (t == PGRES_PIPELINE_SYNC) {
			PQclear(r);
			lane_set_state(ln, DB_READY);
			pgsock_ready(&ln->sock);
			ln->down_logged = false;
			/* The backend's pid finds the session in pg_stat_activity. */
			log_info("database connected",
			         "link=%u server_version=%d backend_pid=%d pending=%u", ln->id,
			         PQserverVersion(ln->sock.pg), PQbackendPID(ln->sock.pg),
			         ln->st->n_queued);
			metrics_db_connected(ln->ever_ready);
			ln->ever_ready = true;
			if (ln->counter >= 0)
				feed_check_end(ln->feed_check, ln->counter, true);
			server_db_ready();
			if (ln->st->n_queued > 0)
				store_send_batch(ln->st);
			return;
		}
		if (t != PGRES_COMMAND_OK) {
			/* A FATAL ends the session, and the line lane_lost logs
			 * gives the server's reason; anything else is an error of
			 * the statements themselves. */
			char buf[256];
			const char *sev = PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED);
			bool ends =
			    sev != NULL && (strcmp(sev, "FATAL") == 0 || strcmp(sev, "PANIC") == 0);
			log_first_line(PQresultErrorMessage(r), buf, sizeof(buf));
			if (!ends)
				log_error("prepare failed", "link=%u reason=%s", ln->id, lq(buf));
			PQclear(r);
			lane_lost(ln, buf);
			return;
		}
		PQclear(r);
	}
}

/*
 * The database must be UTF8: events are UTF-8 text, and a resend is told
 * from a new event by comparing bodies as jsonb, which in SQL_ASCII
 * fails on any non-ASCII character (the resend of a stored event would
 * be internal_error for ever) and in LATIN1 and the like refuses
 * characters the encoding lacks.  Said like any reason the server cannot
 * be used, and retried: the database may be recreated.
 */
static bool lane_encoding_ok(struct lane *ln)
{
	const char *enc = PQparameterStatus(ln->sock.pg, "server_encoding");
	if (enc != NULL && strcmp(enc, "UTF8") == 0)
		return true;
	char why[200];
	snprintf(why, sizeof(why),
	         "the database's encoding is %s, and ordertrack needs UTF8"
	         " (createdb -E UTF8 -T template0)",
	         enc != NULL ? enc : "unknown");
	lane_lost(ln, why);
	return false;
}

/* Socket readiness for every state after the first connect call. */
static void lane_io_cb(evutil_socket_t fd, short what, void *arg)
{
	struct lane *ln = arg;
	(void)fd;

	if (ln->state == DB_CONNECTING) {
		switch (pgsock_connect_poll(&ln->sock)) {
		case PGSOCK_WAITING:
			return;
		case PGSOCK_FAILED:
			lane_lost(ln, pgsock_error(&ln->sock));
			return;
		case PGSOCK_CONNECTED:
			break;
		}
		if (PQserverVersion(ln->sock.pg) < MIN_SERVER_VERSION) {
			/* Said once per outage, like any reason the server
			 * cannot be used; retried, since it may be upgraded. */
			lane_lost(ln, "PostgreSQL 13 or later is needed"
			              " (the batches use pg_current_xact_id())");
			return;
		}
		if (!lane_encoding_ok(ln))
			return;
		lane_migrate_begin(ln);
		return;
	}

	/* Always read before writing more (a full socket both ways would
	 * otherwise deadlock). */
	if ((what & EV_READ) && !PQconsumeInput(ln->sock.pg)) {
		lane_lost(ln, PQerrorMessage(ln->sock.pg));
		return;
	}
	if (ln->state == DB_MIGRATING)
		lane_migrate_results(ln);
	else if (ln->state == DB_PREPARING)
		lane_prepare_results(ln);
	else if (ln->state == DB_READY)
		batch_results(ln);
	if (ln->state == DB_DOWN)
		return;
	if (PQstatus(ln->sock.pg) == CONNECTION_BAD) {
		lane_lost(ln, PQerrorMessage(ln->sock.pg));
		return;
	}
	if (lane_flush(ln) != 0)
		return;
	batch_after_flush(ln);
}

/* Set up lane i and start its first connection attempt. */
void lane_init(struct store *st, unsigned i)
{
	struct lane *ln = &st->lanes[i];
	ln->st = st;
	ln->id = i + 1;
	ln->state = DB_DOWN;
	TAILQ_INIT(&ln->batch);
	pgsock_init(&ln->sock, st->base, PRIO_DATABASE, lane_io_cb, lane_retry_cb, ln,
	            BACKOFF_MIN_MS, BACKOFF_MAX_MS);
	ln->order_set = calloc(BATCH_SET_SIZE, sizeof(*ln->order_set));
	ln->id_set = calloc(BATCH_SET_SIZE, sizeof(*ln->id_set));
	if (ln->order_set == NULL || ln->id_set == NULL)
		abort();
	lane_connect(ln);
}

/* Close the session and free what the lane holds. */
void lane_free(struct lane *ln)
{
	pgsock_free(&ln->sock);
	textbuf_free(&ln->events);
	textbuf_free(&ln->bodies);
	textbuf_free(&ln->exporters);
	textbuf_free(&ln->orders);
	textbuf_free(&ln->apply);
	textbuf_free(&ln->notes);
	free(ln->order_set);
	free(ln->id_set);
}
