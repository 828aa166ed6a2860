/*
 * batch.c - one batch's transaction, in two pipelined parts.
 *
 * batch_send() takes events from the queue (batch_take) and sends part
 * one: BEGIN, the advisory locks of the batch's orders (LOCK) and their
 * stored states and walks (STATE), then a flush request.  While the server
 * works on it the daemon writes COPY's rows.  When STATE is in, the events
 * stored earlier (LOAD) of the orders the fold cannot go on with from
 * their walk are read, if there are any: an event that sorts before the
 * last one walked, a retraction, an order near its limit or without a
 * walk (batch_needs_load).  Then the events are written: by COPY, outside
 * pipeline mode, when none of their ids is among LOAD's rows and none is a
 * retraction (the usual case), else by one set-based INSERT that answers
 * stored, duplicate or conflict for each.  Events that would take an
 * order past limits.max_events_per_order go by the INSERT too, which
 * refuses them unless they are stored; an order found full is left out of
 * part one from then on.  The changed orders are folded
 * in C (project.c), during the COPY or after the INSERT's verdicts, and
 * part two goes out: APPLY (the read model), EMIT (the notifications,
 * numbered last since that serializes), COMMIT, Sync.
 *
 * Results are matched to their statements by position (enum batch_query)
 * as they arrive; the Sync's result hands the batch to store.c, which
 * answers its events.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "copybin.h"
#include "fault.h"
#include "log.h"
#include "metrics.h"
#include "project.h"
#include "store.h"

/*
 * The whole batch in one statement.  $1 is a JSON array with one element
 * per event: [exporter, id, type, order, shipment, occurred_at, retracts],
 * and an eighth element, true, for an event whose order is full (it is
 * never inserted: answered 'd' or 'c' when stored, else 'f');
 * $2 holds the bodies in the same order, as a json (not jsonb) array, so
 * that each is stored as sent, as COPY stores it.  Answers, per event in
 * order: 's' stored, 'd' the same event was already stored, 'c' another
 * event holds the id, 'r' a retraction that may not be stored (its target,
 * stored or in the batch, is a retraction or belongs to another order), or
 * NULL: the id is taken
 * by a transaction not visible yet (the daemon asks again).  A stored
 * event is answered 'd' or 'c' before the retraction rules apply: a
 * retraction stored before its target came (under another order, say) is
 * a duplicate when sent again, not a refusal.  "The same"
 * compares the bodies as jsonb: key order and spacing do not count.  A
 * batch never holds the same (exporter, id) twice (batch_take sees
 * to it), so each row's verdict is unambiguous.  The final SELECT reads
 * events with the statement's snapshot, so it sees the rows that existed
 * before, not the ones it just inserted; it looks a stored row up only
 * for the events that were not inserted, the rare case.
 */
static const char insert_sql[] =
    "WITH input AS ("
    " SELECT x->>0 AS exporter, x->>1 AS event_id, x->>2 AS type, x->>3 AS order_ref,"
    " x->>4 AS shipment_ref, (x->>5)::timestamptz AS occurred_at, body,"
    " x->>6 AS retracts, x->7 IS NOT NULL AS order_full, n"
    " FROM ROWS FROM (jsonb_array_elements($1::jsonb), json_array_elements($2::json))"
    " WITH ORDINALITY AS a(x, body, n)),"
    " bad AS ("
    " SELECT i.n FROM input i CROSS JOIN LATERAL ("
    " SELECT 1 FROM ordertrack.events t"
    " WHERE t.exporter = i.exporter AND t.event_id = i.retracts"
    " AND (t.type = 'event.retracted' OR t.order_ref <> i.order_ref) OFFSET 0) t"
    " WHERE i.retracts IS NOT NULL"
    " UNION SELECT i.n FROM input i JOIN input t"
    " ON t.exporter = i.exporter AND t.event_id = i.retracts"
    " WHERE (t.type = 'event.retracted' OR t.order_ref <> i.order_ref) AND NOT t.order_full"
    " AND NOT EXISTS (SELECT 1 FROM ordertrack.events s"
    " WHERE s.exporter = t.exporter AND s.event_id = t.event_id)),"
    " ins AS ("
    " INSERT INTO ordertrack.events"
    " (exporter, event_id, type, order_ref, shipment_ref, occurred_at, body)"
    " SELECT exporter, event_id, type, order_ref, shipment_ref, occurred_at, body"
    " FROM input WHERE n NOT IN (SELECT n FROM bad) AND NOT order_full ORDER BY n"
    " ON CONFLICT (exporter, event_id) DO NOTHING RETURNING exporter, event_id)"
    " SELECT CASE WHEN ins.event_id IS NOT NULL THEN 's'"
    " ELSE coalesce((SELECT CASE WHEN e.body::jsonb = i.body::jsonb THEN 'd' ELSE 'c' END"
    " FROM ordertrack.events e WHERE e.exporter = i.exporter AND e.event_id = i.event_id),"
    " CASE WHEN b.n IS NOT NULL THEN 'r' WHEN i.order_full THEN 'f' END)"
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
 * folding the same order at once could each miss the other's event.  The
 * transaction's id comes back too: if the session is lost with COMMIT on
 * its way, pg_xact_status() tells whether it committed (feed.c).
 */
static const char lock_sql[] = "SELECT count(pg_advisory_xact_lock(k)), pg_current_xact_id()::text"
                               " FROM (SELECT DISTINCT hashtextextended(e || '/' || o, 7433) AS k"
                               " FROM unnest($1::text[], $2::text[]) AS t(e, o) ORDER BY k) s";

/*
 * The events of the given orders stored before this transaction, for the
 * fold.  The rows this transaction inserted (xmin is its own id) are left
 * out: the daemon holds those events parsed already.  Sent once STATE is
 * in, for the orders the fold cannot go on with from their saved walk
 * (batch_order_params).
 */
static const char load_sql[] =
    "SELECT e.exporter, e.order_ref, e.event_id, e.type, e.body::text"
    " FROM (SELECT DISTINCT x, o FROM unnest($1::text[], $2::text[]) AS t(x, o)) t"
    " CROSS JOIN LATERAL (SELECT * FROM ordertrack.events e"
    " WHERE e.exporter = t.x AND e.order_ref = t.o"
    " AND e.xmin <> pg_current_xact_id()::xid OFFSET 0) e"
    " ORDER BY e.exporter COLLATE \"C\", e.order_ref COLLATE \"C\"";

/*
 * The state each order had before this batch, for the notification diff,
 * its walk (migration 013), and of the walk, when it is one this daemon
 * reads, the number of events read and the last one's instant and id.
 */
static const char state_sql[] =
    "SELECT o.exporter, o.order_ref, o.state::text, o.walk::text,"
    " CASE WHEN o.walk->'v' = '1' THEN o.walk->>'n' END,"
    " o.walk->'last'->>0, o.walk->'last'->>1"
    " FROM (SELECT DISTINCT x, ord FROM unnest($1::text[], $2::text[]) AS t(x, ord)) t"
    " CROSS JOIN LATERAL (SELECT * FROM ordertrack.orders o"
    " WHERE o.exporter = t.x AND o.order_ref = t.ord OFFSET 0) o"
    " ORDER BY o.exporter COLLATE \"C\", o.order_ref COLLATE \"C\"";

/* Number and store the batch's notifications; last, as it serializes. */
static const char emit_sql[] =
    "SELECT seq, kind, exporter, order_ref, shipment_ref, from_status, to_status, event_id,"
    " created_at FROM ordertrack.emit_notifications($1::jsonb)";

static const char apply_sql[] = "SELECT ordertrack.apply_orders($1::jsonb)";

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

/*
 * Put the in-flight batch back at the head of the queue, in order; its
 * events in doubt when asked (a session lost after COMMIT was sent).  Only
 * those the batch was storing ('s') are: COMMIT goes out after every
 * verdict is in, and an event the INSERT found stored already ('d') was
 * stored by an earlier commit, whatever became of this one; its next try
 * answers it duplicate.
 */
void batch_requeue(struct lane *ln, bool in_doubt)
{
	struct slot *s;
	while ((s = TAILQ_LAST(&ln->batch, slot_list)) != NULL) {
		TAILQ_REMOVE(&ln->batch, s, s_store);
		if (in_doubt && s->s_outcome == 's')
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
uint64_t ref_key(const char *exporter, const char *ref)
{
	uint64_t h = 14695981039346656037u;
	for (const char *p = exporter; *p; p++)
		h = (h ^ (uint8_t)*p) * 1099511628211u;
	h = (h ^ 0xff) * 1099511628211u;
	for (const char *p = ref; *p; p++)
		h = (h ^ (uint8_t)*p) * 1099511628211u;
	return h != 0 ? h : 1;
}

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
 *    statement must never hold an id twice;
 *  - an event of an order an event passed over earlier in the queue has:
 *    one order's events commit in the order they were sent.
 * passed_set holds the ids and the orders of the events passed over (the
 * two kinds of hash share it: a collision only makes an event wait).
 * The sets of other lanes hold hashes; a collision only makes an event
 * wait for the next batch.
 */
static unsigned batch_take(struct store *st, struct lane *ln, unsigned max)
{
	struct slot *s, *next;
	unsigned n = 0, looked = 0;
	size_t bytes = 0;
	/* Looking far past events that must wait costs more than it gains,
	 * and there is nothing to look at past the queue's end. */
	unsigned look_max = 4 * max + 64;
	if (look_max > st->n_queued)
		look_max = st->n_queued;
	if (look_max > BATCH_SET_SIZE / 2)
		look_max = BATCH_SET_SIZE / 2;
	size_t size = 64;
	while (size < 2 * (size_t)look_max)
		size *= 2;
	/* Clear only what this batch uses: small batches come often, and
	 * sets sized for a full batch were 256 kB of memset each time. */
	size_t mask = size - 1;
	ln->set_mask = mask;
	/* Up to two keys for each event looked at, and a free slot left. */
	size_t pmask = 2 * size - 1;
	memset(st->batch_set, 0, size * sizeof(*st->batch_set));
	memset(st->passed_set, 0, 2 * size * sizeof(*st->passed_set));
	memset(ln->order_set, 0, size * sizeof(*ln->order_set));
	memset(ln->id_set, 0, size * sizeof(*ln->id_set));
	for (s = TAILQ_FIRST(&st->queue); s != NULL && n < max && looked < look_max; s = next) {
		next = TAILQ_NEXT(s, s_store);
		looked++;
		if (n > 0 && bytes + s->s_body_len > BATCH_MAX_BYTES)
			break; /* the rest waits for the next batch */
		uint64_t order = s->s_order_key, id = s->s_id_key;
		if (key_set_has(st->passed_set, pmask, order) ||
		    (st->n_lanes > 1 &&
		     (lanes_hold(st, ln, order, id) || key_set_has(st->passed_set, pmask, id))) ||
		    !batch_set_add(st->batch_set, mask, s)) {
			/* Its order's later events wait behind it, as its id's do. */
			key_set_add(st->passed_set, pmask, id);
			key_set_add(st->passed_set, pmask, order);
			continue;
		}
		bytes += s->s_body_len;
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

/* The row of (exporter, order) in STATE's result (sorted so in byte order), or -1. */
int batch_state_row(const PGresult *states, const char *exporter, const char *order)
{
	int lo = 0, hi = states ? PQntuples(states) : 0;
	while (lo < hi) {
		int mid = (lo + hi) / 2;
		int c = strcmp(PQgetvalue(states, mid, 0), exporter);
		if (c == 0)
			c = strcmp(PQgetvalue(states, mid, 1), order);
		if (c == 0)
			return mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

/*
 * Must the fold read the stored events of event s's order?  Not when its
 * walk can go on: s sorts after the last event the walk read, retracts
 * nothing and was not refused a walk before, and the order's events stored
 * and in the batch stay within limits.max_events_per_order (whose check
 * reads them).  An order without a row is read too: events can be stored
 * without one (the read model emptied to be rebuilt, events loaded by
 * hand), and it costs one probe when there are none.
 */
static bool batch_needs_load(const struct lane *ln, const struct slot *s)
{
	const PGresult *states = ln->out.states;
	int row = batch_state_row(states, s->s_exporter, s->s_order);
	if (row < 0 || PQgetisnull(states, row, 4) || PQgetisnull(states, row, 5) ||
	    PQgetisnull(states, row, 6) || s->s_retracts != NULL || s->s_fold_whole)
		return true;
	long long n = atoll(PQgetvalue(states, row, 4));
	long long last_ms = atoll(PQgetvalue(states, row, 5));
	if (n + (long long)ln->n_batch > ln->st->max_events_per_order)
		return true;
	return s->s_occurred_ms < last_ms ||
	       (s->s_occurred_ms == last_ms && strcmp(s->s_id, PQgetvalue(states, row, 6)) <= 0);
}

/*
 * The batch's exporters and orders as two array literals, an element per
 * event: for LOCK and STATE (part one), or for LOAD, then only the events
 * whose order the fold must read (batch_needs_load).  The events of an
 * order known to be full are left out: they change nothing, and the INSERT
 * alone answers them (batch_cap_orders).  The lane's buffers are reused
 * from batch to batch.  False when no event is in them.
 */
static bool batch_order_params(struct lane *ln, bool for_load)
{
	struct textbuf *exporters = &ln->exporters, *orders = &ln->orders;
	struct slot *s;
	bool any = false;
	textbuf_reset(exporters);
	textbuf_reset(orders);
	textbuf_add(exporters, "{", 1);
	textbuf_add(orders, "{", 1);
	TAILQ_FOREACH(s, &ln->batch, s_store)
	{
		if (!for_load)
			s->s_order_full = store_order_full(ln->st, s);
		if (s->s_order_full || (for_load && !batch_needs_load(ln, s)))
			continue;
		if (any) {
			textbuf_add(exporters, ",", 1);
			textbuf_add(orders, ",", 1);
		}
		any = true;
		tb_quoted(exporters, s->s_exporter);
		tb_quoted(orders, s->s_order);
	}
	textbuf_add(exporters, "}", 1);
	textbuf_add(orders, "}", 1);
	return any;
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
		if (s->s_order_full)
			textbuf_str(events, ",true");
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
 * transaction on an idle lane: BEGIN, the order locks and STATE, then a
 * flush request so the server sends those results at once; LOAD follows
 * when needed (batch_after_state).
 */
void batch_send(struct store *st, struct lane *ln)
{
	PGconn *pg = ln->sock.pg;
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
	ln->out.seq_floor = server.last_seq;

	batch_order_params(ln, false);
	const char *ord_params[2] = {ln->exporters.p, ln->orders.p};
	bool ok = (!ln->needs_rollback ||
	           PQsendQueryParams(pg, "ROLLBACK", 0, NULL, NULL, NULL, NULL, 0)) &&
	          PQsendQueryParams(pg, "BEGIN", 0, NULL, NULL, NULL, NULL, 0) &&
	          PQsendQueryPrepared(pg, "lock", 2, ord_params, NULL, NULL, 0) &&
	          PQsendQueryPrepared(pg, "state", 2, ord_params, NULL, NULL, 0) &&
	          PQsendFlushRequest(pg);
	if (!ok) {
		lane_lost(ln, PQerrorMessage(pg));
		return;
	}
	log_debug("batch sent", "link=%u events=%u queued=%u", ln->id, n, st->n_queued);
	metrics_batch_sent(n);
	clock_gettime(CLOCK_MONOTONIC, &ln->sent_at);
	ln->fail_gen_sent = ln->st->fail_gen;
	lane_flush(ln);
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
	bool ok = !o->loaded || project_build(o->load, o->states, changed, n_changed,
	                                      &ln->st->rules, &ln->apply, &ln->notes, &p);
	free(changed);
	o->has_apply = ok && p.n_orders > 0;
	o->has_emit = ok && p.n_notes > 0;
	o->folded = true;
	batch_results_clear(o, false);
	if (!ok) {
		/* Roll back; the events go again, their orders folded from the
		 * events (project_build marked them). */
		o->walk_refused = true;
		snprintf(o->sqlstate, sizeof(o->sqlstate), "XX000");
		snprintf(o->message, sizeof(o->message), "the fold refused a saved walk");
	}
}

/*
 * The events are written: send part two (APPLY, EMIT, COMMIT), folding
 * first unless that was done already, or only the Sync (which rolls back)
 * when something failed.
 */
static void batch_send_part2(struct lane *ln)
{
	struct batch_outcome *o = &ln->out;
	bool ok = true;

	o->part2_sent = true;
	fault_point("before_commit");
	if (o->sqlstate[0] == '\0' && !o->folded)
		batch_fold(ln);
	if (o->sqlstate[0] == '\0') {
		/* libpq copies a parameter as it is sent: the buffers are free
		 * for the next batch right after. */
		if (o->has_apply) {
			const char *v[1] = {ln->apply.p};
			ok = PQsendQueryPrepared(ln->sock.pg, "apply", 1, v, NULL, NULL, 0);
		}
		if (ok && o->has_emit) {
			const char *v[1] = {ln->notes.p};
			ok = PQsendQueryPrepared(ln->sock.pg, "emit", 1, v, NULL, NULL, 0);
		}
		/* Set before COMMIT is queued: libpq may send it at once, and
		 * the server runs it without waiting for the Sync, so from here
		 * on a lost session may follow a commit. */
		o->commit_sent = ok;
		ok = ok && PQsendQueryParams(ln->sock.pg, "COMMIT", 0, NULL, NULL, NULL, NULL, 0);
	} else {
		o->has_apply = o->has_emit = false;
	}
	batch_results_clear(o, false);
	ok = ok && PQpipelineSync(ln->sock.pg);
	if (!ok)
		lane_lost(ln, PQerrorMessage(ln->sock.pg));
}

/*
 * Must the batch go by the INSERT, as far as its own events tell?  It must
 * while COPY is paused, when an event retracts another (the INSERT checks
 * the target), when a COPY refused one of its events before and when an
 * event's order is full (the INSERT tells a resend from a new event).
 */
static bool batch_insert_known(const struct lane *ln)
{
	const struct slot *s;
	if (ln->st->copy_pause > 0)
		return true;
	TAILQ_FOREACH(s, &ln->batch, s_store)
	{
		if (s->s_retracts != NULL || s->s_copy_refused || s->s_order_full)
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
	if (batch_insert_known(ln) || !ln->out.loaded)
		return true;
	for (int row = 0; row < PQntuples(load); row++) {
		uint64_t id = ref_key(PQgetvalue(load, row, 0), PQgetvalue(load, row, 2));
		if (key_set_has(ln->id_set, ln->set_mask, id))
			return true;
	}
	return false;
}

/*
 * limits.max_events_per_order, for the order of LOAD's rows [from, to) (all
 * its stored events): its events in the batch that are stored already
 * (LOAD holds their ids) go on, to be answered duplicate or conflict; the
 * new ones take the room left in line order, and those past it are marked
 * s_order_full, as the events of an order found full before are.  The
 * INSERT then refuses them unless their id is stored: under another order
 * (which LOAD does not show) that is a conflict, whether this batch or an
 * earlier one found the order full.  Runs only for an order at or near
 * the limit, so the arrays it allocates cost ordinary batches nothing.
 */
static void batch_cap_order(struct lane *ln, const char *exp, const char *ord, const PGresult *load,
                            int from, int to)
{
	uint64_t key = ref_key(exp, ord);
	struct slot **mine = calloc(ln->n_batch, sizeof(*mine));
	bool *held = calloc(ln->n_batch, sizeof(*held));
	size_t n = 0;
	struct slot *s;
	if (mine == NULL || held == NULL)
		abort();
	TAILQ_FOREACH(s, &ln->batch, s_store)
	{
		if (s->s_order_key == key && strcmp(s->s_order, ord) == 0 &&
		    strcmp(s->s_exporter, exp) == 0)
			mine[n++] = s;
	}
	long room = (long)ln->st->max_events_per_order - (to - from);
	if (room < (long)n) {
		/* Which of them are stored already: id_set (every id of the
		 * batch, hashed) passes over nearly every row at once. */
		for (int row = from; row < to; row++) {
			const char *id = PQgetvalue(load, row, 2);
			uint64_t h = ref_key(exp, id);
			if (!key_set_has(ln->id_set, ln->set_mask, h))
				continue;
			for (size_t i = 0; i < n; i++) {
				if (mine[i]->s_id_key == h && strcmp(mine[i]->s_id, id) == 0) {
					held[i] = true;
					break;
				}
			}
		}
		for (size_t i = 0; i < n; i++) {
			if (held[i])
				continue;
			if (room > 0) {
				room--;
				continue;
			}
			mine[i]->s_order_full = true;
		}
	}
	free(mine);
	free(held);
}

/* Order slots by order, for batch_cap_new_orders. */
static int slot_order_cmp(const void *a, const void *b)
{
	const struct slot *x = *(const struct slot *const *)a, *y = *(const struct slot *const *)b;
	if (x->s_order_key != y->s_order_key)
		return x->s_order_key < y->s_order_key ? -1 : 1;
	int c = strcmp(x->s_order, y->s_order);
	return c != 0 ? c : strcmp(x->s_exporter, y->s_exporter);
}

/* Does LOAD hold a stored event of the order? */
static bool load_has_order(const PGresult *load, const char *exp, const char *ord)
{
	for (int row = 0, rows = PQntuples(load); row < rows; row++)
		if (strcmp(PQgetvalue(load, row, 1), ord) == 0 &&
		    strcmp(PQgetvalue(load, row, 0), exp) == 0)
			return true;
	return false;
}

/*
 * An order with no stored event is in none of LOAD's rows, yet the batch
 * alone can hold more of its events than limits.max_events_per_order
 * (when the limit is below batch.max_events): the first ones in line order
 * take the room.  An order with stored events is capped by its LOAD rows;
 * one whose LOAD was skipped had room for the whole batch.  Runs only when
 * the batch is larger than the limit.
 */
static void batch_cap_new_orders(struct lane *ln, const PGresult *load)
{
	long max = ln->st->max_events_per_order;
	struct slot **all = calloc(ln->n_batch, sizeof(*all));
	size_t n = 0;
	struct slot *s;
	if (all == NULL)
		abort();
	TAILQ_FOREACH(s, &ln->batch, s_store)
	all[n++] = s;
	qsort(all, n, sizeof(*all), slot_order_cmp);
	for (size_t from = 0, to; from < n; from = to) {
		for (to = from + 1; to < n && slot_order_cmp(&all[from], &all[to]) == 0; to++)
			;
		const char *exp = all[from]->s_exporter, *ord = all[from]->s_order;
		if ((long)(to - from) > max && !load_has_order(load, exp, ord))
			batch_cap_order(ln, exp, ord, load, 0, 0);
	}
	free(all);
}

/*
 * Mark the events that would take an order past
 * limits.max_events_per_order, for the INSERT to refuse.  Every batch
 * folds all the stored events of each order it changes (LOAD returns them
 * all), so one order without a bound would slow every batch that touches
 * it, and the batches are shared by all clients.  LOAD's rows give each
 * order's count, grouped by order.
 */
static void batch_cap_orders(struct lane *ln)
{
	const PGresult *load = ln->out.load;
	long max = ln->st->max_events_per_order;
	if (load == NULL)
		return;
	if ((long)ln->n_batch > max)
		batch_cap_new_orders(ln, load);
	int rows = PQntuples(load);
	/* No order can pass the limit while all the rows and all the
	 * events together do not: ordinary batches stop here. */
	if (rows + (long)ln->n_batch <= max)
		return;
	for (int from = 0, to; from < rows; from = to) {
		const char *exp = PQgetvalue(load, from, 0), *ord = PQgetvalue(load, from, 1);
		for (to = from + 1; to < rows; to++)
			if (strcmp(PQgetvalue(load, to, 1), ord) != 0 ||
			    strcmp(PQgetvalue(load, to, 0), exp) != 0)
				break;
		if ((to - from) + (long)ln->n_batch > max)
			batch_cap_order(ln, exp, ord, load, from, to);
		/* Full before this batch: the next ones leave it out of LOAD. */
		if (to - from >= max)
			store_mark_full(ln->st, exp, ord, to - from);
	}
}

/*
 * LOAD is in: write the events.  By COPY when the batch holds only new
 * events: every verdict is 's', so the batch can be folded while the
 * server stores the rows.  COPY does not run in pipeline mode, which is
 * left (every result is read by now) and entered again after it.
 * Otherwise by the INSERT, whose verdicts come before the fold.
 */
static void batch_write_events(struct lane *ln)
{
	struct batch_outcome *o = &ln->out;
	struct slot *s;
	batch_cap_orders(ln);
	bool insert = batch_needs_insert(ln);
	if (ln->st->copy_pause > 0)
		ln->st->copy_pause--;
	if (insert) {
		batch_insert_params(ln);
		const char *v[2] = {ln->events.p, ln->bodies.p};
		o->expect = BQ_INSERT;
		if (!PQsendQueryPrepared(ln->sock.pg, "ins", 2, v, NULL, NULL, 0) ||
		    !PQsendFlushRequest(ln->sock.pg))
			lane_lost(ln, PQerrorMessage(ln->sock.pg));
		return;
	}
	TAILQ_FOREACH(s, &ln->batch, s_store)
	{
		s->s_outcome = 's';
	}
	o->expect = BQ_COPY;
	if (!PQexitPipelineMode(ln->sock.pg) || !PQsendQuery(ln->sock.pg, copy_sql)) {
		lane_lost(ln, PQerrorMessage(ln->sock.pg));
		return;
	}
	if (!o->rows_built)
		batch_copy_rows(ln);
}

/*
 * COPY asks for its rows: hand them all and the end to libpq.  The batch
 * is folded once libpq has sent the last of them (lane_io_cb), so that
 * the server is never left waiting for rows while the daemon folds.
 */
static void batch_copy_send(struct lane *ln)
{
	/* In pieces: PQputCopyData takes an int, and a batch of long lines
	 * may pass 2 GB (10,000 events of up to 16 MB). */
	enum { PIECE = 1 << 20 };
	for (size_t at = 0; at < ln->events.len; at += PIECE) {
		size_t n = ln->events.len - at < PIECE ? ln->events.len - at : PIECE;
		if (PQputCopyData(ln->sock.pg, ln->events.p + at, (int)n) != 1) {
			lane_lost(ln, PQerrorMessage(ln->sock.pg));
			return;
		}
	}
	if (PQputCopyEnd(ln->sock.pg, NULL) != 1) {
		lane_lost(ln, PQerrorMessage(ln->sock.pg));
		return;
	}
	ln->out.copy_sent = true;
}

/* COPY is over: back to pipeline mode for part two. */
static void batch_copy_done(struct lane *ln)
{
	if (!PQenterPipelineMode(ln->sock.pg)) {
		lane_lost(ln, PQerrorMessage(ln->sock.pg));
		return;
	}
	batch_send_part2(ln);
}

/* Remember the first failure of a batch (its text is copied; r is not kept). */
static void note_failure(struct batch_outcome *o, const PGresult *r)
{
	char buf[256];
	if (o->sqlstate[0] != '\0')
		return;
	const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
	snprintf(o->sqlstate, sizeof(o->sqlstate), "%s", state ? state : "XX000");
	const char *primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
	snprintf(o->message, sizeof(o->message), "%s",
	         primary ? primary : log_first_line(PQresultErrorMessage(r), buf, sizeof(buf)));
}

/* One result of the batch, matched to its query by position. */
static void batch_result(struct lane *ln, PGresult *r)
{
	struct batch_outcome *o = &ln->out;
	ExecStatusType t = PQresultStatus(r);

	if (t == PGRES_PIPELINE_ABORTED || t == PGRES_FATAL_ERROR) {
		/* A FATAL (the session ended by the server) is also the reason
		 * the "database lost" line gives once the connection closes. */
		if (t == PGRES_FATAL_ERROR)
			pgsock_notice(&ln->sock, r);
		if (t == PGRES_FATAL_ERROR && o->sqlstate[0] == '\0') {
			note_failure(o, r);
			o->copy_failed = o->expect == BQ_COPY;
		}
		PQclear(r);
		return;
	}
	switch (o->expect) {
	case BQ_COPY:
		if (t == PGRES_COPY_IN)
			batch_copy_send(ln);
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
	case BQ_LOCK:
		if (t == PGRES_TUPLES_OK && PQntuples(r) == 1)
			snprintf(o->xid, sizeof(o->xid), "%s", PQgetvalue(r, 0, 1));
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
			o->loaded = true;
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

/*
 * STATE is in: LOAD the orders the fold must read, if any (the results of
 * LOCK and STATE had to come first, so this is one more round trip, only
 * for batches with such an order); else write the events at once.
 */
static void batch_after_state(struct lane *ln)
{
	struct batch_outcome *o = &ln->out;
	if (o->sqlstate[0] != '\0') {
		batch_send_part2(ln);
		o->expect = BQ_SYNC;
		return;
	}
	if (!batch_order_params(ln, true)) {
		o->loaded = true;
		batch_write_events(ln);
		return;
	}
	const char *v[2] = {ln->exporters.p, ln->orders.p};
	o->expect = BQ_LOAD;
	if (!PQsendQueryPrepared(ln->sock.pg, "load", 2, v, NULL, NULL, 0) ||
	    !PQsendFlushRequest(ln->sock.pg))
		lane_lost(ln, PQerrorMessage(ln->sock.pg));
}

/* The query after the current one, once its results are complete. */
static void batch_advance(struct lane *ln)
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
		batch_after_state(ln);
		break;
	case BQ_LOAD:
		if (o->sqlstate[0] == '\0') {
			batch_write_events(ln);
			break;
		}
		batch_send_part2(ln);
		o->expect = BQ_SYNC;
		break;
	case BQ_INSERT:
	case BQ_COPY:
		if (o->expect == BQ_COPY)
			batch_copy_done(ln);
		else
			batch_send_part2(ln);
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

/*
 * A failed batch left its transaction block open and aborted, and no batch
 * followed at once to start with ROLLBACK: end the block now, with a Sync
 * of its own.  Left open, the session would sit "idle in transaction
 * (aborted)" until the next event, and a server with
 * idle_in_transaction_session_timeout would end it.
 */
void batch_send_rollback(struct lane *ln)
{
	PGconn *pg = ln->sock.pg;
	ln->needs_rollback = false;
	ln->rollback_in_flight = true;
	if (!PQsendQueryParams(pg, "ROLLBACK", 0, NULL, NULL, NULL, NULL, 0) ||
	    !PQpipelineSync(pg)) {
		lane_lost(ln, PQerrorMessage(pg));
		return;
	}
	lane_flush(ln);
}

/*
 * Read the results of batch_send_rollback's ROLLBACK, up to its Sync;
 * false while they are not all in.  A ROLLBACK that failed leaves the
 * block to the next batch's ROLLBACK.
 */
static bool batch_rollback_results(struct lane *ln)
{
	int nulls = 0;
	while (ln->rollback_in_flight && !PQisBusy(ln->sock.pg)) {
		PGresult *r = PQgetResult(ln->sock.pg);
		if (r == NULL) {
			if (++nulls > 1)
				break; /* nothing more has arrived */
			continue;      /* the end of ROLLBACK's results */
		}
		nulls = 0;
		ExecStatusType t = PQresultStatus(r);
		if (t == PGRES_PIPELINE_SYNC)
			ln->rollback_in_flight = false;
		else if (t != PGRES_COMMAND_OK)
			ln->needs_rollback = true;
		PQclear(r);
	}
	return !ln->rollback_in_flight;
}

/* Read every result that is ready for the batch in flight. */
void batch_results(struct lane *ln)
{
	struct batch_outcome *o = &ln->out;
	/* A lone ROLLBACK went before the batch: its results come first. */
	if (ln->rollback_in_flight && !batch_rollback_results(ln))
		return;
	while (ln->batch_in_flight && ln->state == DB_READY && !PQisBusy(ln->sock.pg)) {
		PGresult *r = PQgetResult(ln->sock.pg);
		if (r == NULL) {
			if (!o->have_result)
				break; /* nothing more has arrived */
			o->have_result = false;
			batch_advance(ln);
			continue;
		}
		if (PQresultStatus(r) == PGRES_PIPELINE_SYNC) {
			PQclear(r);
			if (o->commit_ok && fault_check("lose_commit_answer")) {
				lane_lost(ln, "fault point lose_commit_answer");
				return;
			}
			if (o->commit_ok && fault_check("lose_emit_answer")) {
				/* As if the session broke before EMIT's rows came. */
				PQclear(o->emitted);
				o->emitted = NULL;
				lane_lost(ln, "fault point lose_emit_answer");
				return;
			}
			store_batch_done(ln);
			continue;
		}
		o->have_result = true;
		batch_result(ln, r);
	}
}

/* Prepare the batch's statements on a new session (in its pipeline). */
bool batch_send_prepares(PGconn *pg)
{
	return PQsendPrepare(pg, "ins", insert_sql, 2, NULL) &&
	       PQsendPrepare(pg, "lock", lock_sql, 2, NULL) &&
	       PQsendPrepare(pg, "load", load_sql, 2, NULL) &&
	       PQsendPrepare(pg, "state", state_sql, 2, NULL) &&
	       PQsendPrepare(pg, "emit", emit_sql, 1, NULL) &&
	       PQsendPrepare(pg, "apply", apply_sql, 1, NULL);
}

/*
 * The lane's output is all with the server: use the time until its next
 * result for the batch's own work.
 */
void batch_after_flush(struct lane *ln)
{
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
