/*
 * store.c - events into PostgreSQL: group commit over libpq pipeline mode.
 *
 * Events from all connections queue here.  The daemon keeps
 * database.connections sessions ("lanes", lane.c), each with at most one
 * batch in flight.  Whenever a lane is idle the queue is cut into a batch
 * (at most batch.max_events) and sent as one transaction in two pipelined
 * parts (batch.c): the orders' locks, stored states and earlier events;
 * then the events by COPY (or by an INSERT that tells duplicates and
 * conflicts apart), the orders folded in C (project.c), the read model,
 * the notifications and COMMIT.  The loop never waits for the database:
 * the sockets are watched by libevent and results are read as they come.
 * Replies go back to the connections only after COMMIT has answered.
 *
 * With two lanes the daemon folds one batch while PostgreSQL works on the
 * other, so both CPUs are busy.  A batch never takes an event of an order
 * another lane's batch holds (it would wait for that batch's locks) nor
 * overtakes an earlier event with the same id (see batch_take).
 *
 * This file holds the queue and what a batch's outcome means for its
 * events.  Failures: when the batch fails for its data (SQLSTATE classes
 * 22 and 23, or anything that names no event), it is sent again one event
 * at a time, so the event at fault is answered with an error and the
 * others commit; the next batch starts with ROLLBACK, since Sync does not
 * end an explicit transaction block (or, when none starts at once, a
 * ROLLBACK goes alone, so the session is not left idle in an aborted
 * transaction).  A lost connection sends the whole
 * batch again after reconnecting (an event sent too often is answered
 * internal_error), and so does a COPY that met a stored id (23505: the id
 * is stored under another order, or another transaction stored it after
 * LOAD read), then by the INSERT.  A transient failure
 * (08, 40, 53, 57, 58; a read-only server, a revoked privilege, a lock
 * timeout) sends the batch again at once after a deadlock or
 * a serialization failure (40), else after a pause that grows while the
 * failures last; an event tried too often is answered internal_error.
 * Events a batch was storing whose COMMIT was sent but whose outcome was
 * lost with the connection are marked in doubt; when the INSERT finds them
 * stored with the same content, it may have been this daemon that stored
 * them, so they are acked "stored".  A batch lost before its COMMIT went
 * out rolled back: its events are not in doubt; nor are those its INSERT
 * found stored already.  Every SCHEMA_CHECK_S the auxiliary session reads
 * the schema's version: a newer one (a later release migrated the
 * database under the daemon) drops every lane, and each refuses it on
 * reconnecting (lane.c) until the version is the daemon's again.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aux.h"
#include "fault.h"
#include "feed.h"
#include "log.h"
#include "metrics.h"
#include "migrations.h"
#include "store.h"

/*
 * Batches that go by the INSERT after a COPY was refused: an exporter that
 * reuses ids across orders would otherwise make every batch it shares
 * with others be written twice.
 */
#define COPY_PAUSE_BATCHES 32
#define MAX_ATTEMPTS       5 /* failures neither data nor transient */
#define MAX_LOST           5 /* sessions lost with the event in flight */
/*
 * How often the schema's version is read while the daemon runs: a later
 * release started on another host may migrate the database under it.
 */
#define SCHEMA_CHECK_S 5

/*
 * Transient failures: the batches wait 100 ms after the first, doubling up
 * to 5 s, so that a full disk or a failing device is not asked hundreds of
 * times a second; an event still unstored after this many tries (about
 * 11 s of them) is answered internal_error, and its sender tries later.
 */
#define MAX_TRANSIENT_ATTEMPTS 8
#define PAUSE_MIN_MS           100
#define PAUSE_MAX_MS           5000

/*
 * May lane i start a batch now?  The first ready lane may whenever events
 * wait; the others only while a backlog does (half a full batch or more).
 * Below that one lane keeps up, and a second would only split the batches
 * and pay each batch's fixed cost (about 0.8 ms of the server's CPU) more
 * often, on a machine whose cores the daemon and the server share: at
 * 4,600 to 18,000 events/s one lane took 15 to 25 % less server CPU per
 * event, with the same or a lower median latency.  A backlog is what more lanes are
 * for.  A lane whose lower lanes are all down (or connecting, migrating,
 * preparing) stands in for the first: else the events of a quiet stream
 * would wait as long as the first lane cannot connect.
 */
static bool lane_may_start(const struct store *st, unsigned i)
{
	if (st->n_queued >= (unsigned)st->max_events / 2)
		return true;
	for (unsigned j = 0; j < i; j++)
		if (st->lanes[j].state == DB_READY)
			return false;
	return true;
}

/* Start a batch on every idle lane while events wait. */
void store_send_batch(struct store *st)
{
	if (evtimer_pending(st->ev_pause, NULL))
		return; /* after a transient failure: store_pause_cb sends */
	for (unsigned i = 0; i < st->n_lanes && st->n_queued > 0; i++) {
		struct lane *ln = &st->lanes[i];
		if (ln->state == DB_READY && !ln->batch_in_flight && !ln->blocked &&
		    lane_may_start(st, i))
			batch_send(st, ln);
	}
}

/* Is a lane ready for a batch now? */
static bool store_lane_idle(const struct store *st)
{
	if (evtimer_pending(st->ev_pause, NULL))
		return false;
	for (unsigned i = 0; i < st->n_lanes; i++)
		if (st->lanes[i].state == DB_READY && !st->lanes[i].batch_in_flight &&
		    !st->lanes[i].blocked && lane_may_start(st, i))
			return true;
	return false;
}

/*
 * Is this SQLSTATE worth retrying the whole batch for?  The classes 08,
 * 40, 53, 57 and 58, and three states of the server that every event meets
 * alike and that end without the daemon: a read-only server (25006: a
 * standby, default_transaction_read_only), a privilege taken away (42501)
 * and a lock another session holds past lock_timeout (55P03).  Taken for
 * failures of one event, those three had every event isolated and sent
 * five times at once: thousands of tries and log lines a second, and
 * internal_error for every event that arrived meanwhile.
 */
static bool sqlstate_transient(const char *s)
{
	return strncmp(s, "08", 2) == 0 || strncmp(s, "40", 2) == 0 || strncmp(s, "53", 2) == 0 ||
	       strncmp(s, "57", 2) == 0 || strncmp(s, "58", 2) == 0 || strcmp(s, "25006") == 0 ||
	       strcmp(s, "42501") == 0 || strcmp(s, "55P03") == 0;
}

/* Is this SQLSTATE a deadlock or a serialization failure, worth an at-once retry? */
static bool sqlstate_rollback(const char *s)
{
	return strncmp(s, "40", 2) == 0;
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

/*
 * The set of full orders (limits.max_events_per_order): FULL_SLOTS
 * entries, emptied when it is half full, so that a lookup stays short and
 * the set bounded.  Events are never deleted, so an order found full
 * stays full until the limit changes (store_apply_config empties it).
 */
#define FULL_SLOTS 1024

/* The reply to an event its order has no room for. */
void store_order_full_why(const struct store *st, char *buf, size_t cap)
{
	snprintf(buf, cap,
	         "field \"order\": the order has reached the limit of %d events this server "
	         "stores for one order",
	         st->max_events_per_order);
}

/* Does e name (exporter, order)? */
static bool full_is(const struct full_order *e, const char *exporter, const char *order)
{
	return strcmp(e->name, exporter) == 0 && strcmp(e->name + strlen(exporter) + 1, order) == 0;
}

/* Empty the set of full orders. */
static void full_forget(struct store *st)
{
	for (unsigned i = 0; i < FULL_SLOTS && st->n_full > 0; i++) {
		if (st->full[i].name != NULL) {
			free(st->full[i].name);
			st->full[i].name = NULL;
			st->full[i].key = 0;
			st->n_full--;
		}
	}
}

/*
 * Is the event's order known to be full?  Nothing to look at (and nothing
 * paid) while no order is.
 */
bool store_order_full(const struct store *st, const struct slot *s)
{
	if (st->n_full == 0)
		return false;
	for (unsigned i = s->s_order_key & (FULL_SLOTS - 1); st->full[i].name != NULL;
	     i = (i + 1) & (FULL_SLOTS - 1))
		if (st->full[i].key == s->s_order_key &&
		    full_is(&st->full[i], s->s_exporter, s->s_order))
			return true;
	return false;
}

/*
 * LOAD found this order with stored events, at least the limit: remember
 * it, so that the next batches leave its events out of LOAD, and say so
 * once.
 */
void store_mark_full(struct store *st, const char *exporter, const char *order, int stored)
{
	uint64_t key = ref_key(exporter, order);
	unsigned i = key & (FULL_SLOTS - 1);
	if (st->n_full >= FULL_SLOTS / 2)
		full_forget(st);
	for (; st->full[i].name != NULL; i = (i + 1) & (FULL_SLOTS - 1))
		if (st->full[i].key == key && full_is(&st->full[i], exporter, order))
			return;
	size_t ne = strlen(exporter) + 1, no = strlen(order) + 1;
	char *name = malloc(ne + no);
	if (name == NULL)
		abort();
	memcpy(name, exporter, ne);
	memcpy(name + ne, order, no);
	st->full[i].key = key;
	st->full[i].name = name;
	st->n_full++;
	log_warnx("order full", "exporter=%s order=%s events=%d limit=%d", exporter, lq(order),
	          stored, st->max_events_per_order);
}

/* Did the batch's statement give this event a verdict ('s', 'd', 'c', 'r', 'f')? */
static bool has_verdict(const struct slot *s)
{
	return s->s_outcome != '\0' && strchr("sdcrf", s->s_outcome) != NULL;
}

/* Answer one event of a committed batch from its statement's verdict. */
static void store_answer_committed(const struct store *st, struct slot *s)
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
	case 'f': {
		char why[160];
		store_order_full_why(st, why, sizeof(why));
		store_answer(s, STORE_REJECTED, why);
		break;
	}
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
	/* Only a batch sent after the last transient failure shows the
	 * server works again; one that was in flight on another lane
	 * meanwhile shows nothing, and must not cut the backoff short. */
	if (ln->fail_gen_sent == ln->st->fail_gen) {
		if (ln->st->failing)
			log_info("database failing no more", "link=%u retries=%u", ln->id,
			         ln->st->failing_retries);
		ln->st->failing = false;
		ln->st->pause_ms = PAUSE_MIN_MS;
	}
	TAILQ_INIT(&done);
	TAILQ_FOREACH_SAFE(s, &ln->batch, s_store, next)
	{
		if (has_verdict(s)) {
			TAILQ_REMOVE(&ln->batch, s, s_store);
			ln->n_batch--;
			TAILQ_INSERT_TAIL(&done, s, s_store);
		}
	}
	batch_requeue(ln, false);
	store_send_batch(ln->st);
	metrics_batch_committed(&sent_at);
	metrics_notifications(emitted);
	feed_report(emitted);
	PQclear(emitted);
	TAILQ_FOREACH_SAFE(s, &done, s_store, next)
	{
		TAILQ_REMOVE(&done, s, s_store);
		store_answer_committed(ln->st, s);
	}
}

/*
 * The batch failed for a reason that may pass (a deadlock, a full disk, an
 * I/O error): it goes again, at once after a deadlock or a serialization
 * failure, else after a pause that doubles while the failures go on.  The
 * first failure of such an episode is a warning, the others debug lines.
 * An event whose batches failed so MAX_TRANSIENT_ATTEMPTS times gets
 * internal_error.
 */
static void store_batch_transient(struct lane *ln)
{
	struct store *st = ln->st;
	struct batch_outcome *o = &ln->out;
	struct slot *s, *next;
	unsigned failed = 0;

	st->fail_gen++;
	TAILQ_FOREACH_SAFE(s, &ln->batch, s_store, next)
	{
		/* Counted apart from s_attempts, which also counts harmless
		 * retakes (COPY's fallback to the INSERT, a verdict asked again). */
		if (++s->s_transient >= MAX_TRANSIENT_ATTEMPTS) {
			store_finish(ln, s, STORE_FAILED,
			             "the database failed to store this event");
			failed++;
		}
	}
	if (failed > 0)
		log_error("events failed", "link=%u sqlstate=%s reason=%s events=%u attempts=%d",
		          ln->id, o->sqlstate, lq(o->message), failed, MAX_TRANSIENT_ATTEMPTS);
	if (ln->n_batch == 0)
		return; /* nothing to try again; the next batch finds out */
	if (sqlstate_rollback(o->sqlstate)) {
		log_info("batch retried", "link=%u sqlstate=%s reason=%s events=%u", ln->id,
		         o->sqlstate, lq(o->message), ln->n_batch);
		return;
	}
	int delay = st->pause_ms;
	if (!st->failing) {
		log_warnx("database failing", "link=%u sqlstate=%s reason=%s events=%u retry_ms=%d",
		          ln->id, o->sqlstate, lq(o->message), ln->n_batch, delay);
		st->failing = true;
		st->failing_retries = 0;
	} else {
		log_debug("database still failing", "link=%u sqlstate=%s reason=%s retry_ms=%d",
		          ln->id, o->sqlstate, lq(o->message), delay);
	}
	st->failing_retries++;
	/* Every lane waits: the failure is the server's, not this batch's. */
	struct timeval tv = {delay / 1000, (delay % 1000) * 1000};
	evtimer_add(st->ev_pause, &tv);
	st->pause_ms = delay * 2 > PAUSE_MAX_MS ? PAUSE_MAX_MS : delay * 2;
}

/* The batch rolled back: answer the guilty event, resend the others. */
static void store_batch_failed(struct lane *ln)
{
	struct batch_outcome *o = &ln->out;

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
	/* The fold could not go on from a saved walk (one it cannot read):
	 * the next try folds those orders from their events (s_fold_whole). */
	if (o->walk_refused) {
		log_warnx("batch retried", "link=%u reason=%s events=%u", ln->id, lq(o->message),
		          ln->n_batch);
		return;
	}
	if (sqlstate_transient(o->sqlstate)) {
		store_batch_transient(ln);
		return;
	}
	/* A failure names no event (one statement writes them all): resend
	 * the batch one event at a time to find it. */
	struct slot *bad = ln->n_batch == 1 ? TAILQ_FIRST(&ln->batch) : NULL;
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

/*
 * The session was lost with the batch in flight: its events go back to
 * the queue, to be sent again on a session that works.  Those it was
 * storing are in doubt only when the batch's COMMIT had been sent: it may
 * have committed, and the next try then finds them stored by this daemon
 * (batch_requeue).  Lost before that,
 * the server rolled the batch back, and an event found stored is an
 * exporter's resend of one stored earlier: "duplicate".  A batch that
 * takes its session down each time it is sent (a server crash it
 * provokes, say) would be sent forever: an event whose session was lost
 * MAX_LOST times is answered internal_error instead.  Its COMMIT may have
 * been sent, so it may be stored; a resend is then answered "duplicate".
 */
void store_batch_lost(struct lane *ln, const char *why)
{
	struct slot *s, *next;
	unsigned failed = 0;

	TAILQ_FOREACH_SAFE(s, &ln->batch, s_store, next)
	{
		if (++s->s_lost >= MAX_LOST) {
			store_finish(ln, s, STORE_FAILED,
			             "the database session was lost each time this event was sent;"
			             " it may be stored: send it again");
			failed++;
		}
	}
	if (failed > 0)
		log_error("events failed", "link=%u reason=%s events=%u attempts=%d", ln->id,
		          lq(why), failed, MAX_LOST);
	/* Committed, its notifications would have no status line: the
	 * resend finds its orders folded already. */
	if (ln->out.commit_sent) {
		feed_report_in_doubt(ln->out.emitted, ln->out.xid, ln->out.seq_floor);
		ln->out.emitted = NULL;
	}
	batch_requeue(ln, ln->out.commit_sent);
	/* Their answers may have freed room under limits.max_pending. */
	if (failed > 0)
		conn_resume_paused();
}

/* The Sync arrived: settle the batch and start the next one. */
void store_batch_done(struct lane *ln)
{
	/* A failed batch leaves its BEGIN block aborted: the next batch
	 * starts with ROLLBACK, or one is sent alone (below). */
	ln->needs_rollback = !ln->out.commit_ok;
	if (ln->out.commit_ok) {
		fault_point("after_commit");
		store_batch_committed(ln);
		fault_point_soon("after_acks");
	} else {
		store_batch_failed(ln);
		batch_requeue(ln, false); /* whatever is left goes again */
	}
	store_send_batch(ln->st);
	/* No batch took over the aborted block (the queue is empty, another
	 * lane took the events, or a pause runs): end it now. */
	if (ln->needs_rollback && !ln->batch_in_flight && ln->state == DB_READY)
		batch_send_rollback(ln);
	conn_resume_paused();
}

/* Flush timer: start a batch now. */
static void store_flush_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	store_send_batch(arg);
}

/* Pause timer: the wait after a transient failure is over. */
static void store_pause_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	store_send_batch(arg);
}

static const char schema_sql[] =
    "SELECT coalesce(max(version), 0) FROM ordertrack.schema_migrations";

/*
 * The schema's version, read on the auxiliary session (r NULL: it could
 * not run).  Newer than this daemon's: a later release has migrated the
 * database, and this release's statements must not go on writing to it.
 * Every session is dropped; on reconnecting each refuses the schema
 * ("database schema not ready") and tries again, holding the events, until
 * the version is this daemon's again.
 */
static void store_schema_cb(void *arg, const PGresult *r)
{
	struct store *st = arg;
	st->schema_check_in_flight = false;
	if (r == NULL || PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
		return;
	int version = atoi(PQgetvalue(r, 0, 0));
	if (version <= migrations_count)
		return;
	char why[128];
	snprintf(why, sizeof(why), "database schema version %d is newer than this daemon's %d",
	         version, migrations_count);
	log_error("database schema changed", "version=%d reason=%s", version, lq(why));
	for (unsigned i = 0; i < st->n_lanes; i++)
		if (st->lanes[i].state != DB_DOWN)
			lane_lost(&st->lanes[i], why);
}

/* Schema timer: read the version while a session is ready and the auxiliary one is up. */
static void store_schema_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct store *st = arg;
	(void)fd;
	(void)what;
	if (st->schema_check_in_flight || server.aux == NULL || !aux_up(server.aux) ||
	    !store_db_up(st))
		return;
	st->schema_check_in_flight = true;
	aux_query(server.aux, schema_sql, 0, NULL, store_schema_cb, st);
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
	st->ev_pause = evtimer_new(base, store_pause_cb, st);
	st->ev_schema = event_new(base, -1, EV_PERSIST, store_schema_tick_cb, st);
	st->pause_ms = PAUSE_MIN_MS;
	st->batch_set = calloc(BATCH_SET_SIZE, sizeof(*st->batch_set));
	st->full = calloc(FULL_SLOTS, sizeof(*st->full));
	st->passed_set = calloc(2 * BATCH_SET_SIZE, sizeof(*st->passed_set));
	st->n_lanes = (unsigned)cfg->db_connections;
	st->lanes = calloc(st->n_lanes, sizeof(*st->lanes));
	if (st->conninfo == NULL || st->ev_flush == NULL || st->ev_pause == NULL ||
	    st->ev_schema == NULL || st->batch_set == NULL || st->passed_set == NULL ||
	    st->lanes == NULL || st->full == NULL)
		abort();
	store_apply_config(st, cfg);
	for (unsigned i = 0; i < st->n_lanes; i++)
		lane_init(st, i);
	struct timeval tv = {SCHEMA_CHECK_S, 0};
	event_add(st->ev_schema, &tv);
	return st;
}

void store_apply_config(struct store *st, const struct config *cfg)
{
	st->max_events = cfg->batch_max_events;
	st->max_delay_ms = cfg->batch_max_delay_ms;
	/* An order full under the old limit may have room under the new one. */
	if (st->max_events_per_order != cfg->max_events_per_order)
		full_forget(st);
	st->max_events_per_order = cfg->max_events_per_order;
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
	for (unsigned i = 0; i < st->n_lanes; i++)
		lane_free(&st->lanes[i]);
	free(st->lanes);
	event_free(st->ev_flush);
	event_free(st->ev_pause);
	event_free(st->ev_schema);
	free(st->conninfo);
	free(st->batch_set);
	free(st->passed_set);
	full_forget(st);
	free(st->full);
	free(st);
}
