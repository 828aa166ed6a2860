-- 009: alerts timed by episode, none for cancelled orders; `at` taken at
-- numbering.
--
-- The customs dwell was timed from the newest customs_hold of the held
-- stage, retracted ones included: a second hold within one episode (a new
-- reason, no release between) cleared the alert and raised it again much
-- later, and a retracted hold still counted.  held_since() gives the start
-- of the current episode by the fold's rule, and ordertrackctl shows the
-- same.  Shipments of a cancelled order hear no more events, so their
-- alerts could never end; now they end at the next check.  `at` came from
-- now(), the transaction's start, so a batch that waited for the counter
-- row got a higher seq with an earlier `at`.

-- The instant of an event's occurred_at as the fold orders events: the
-- text sent, truncated to the millisecond (the column holds PostgreSQL's
-- rounding to the microsecond, which can fall in the next millisecond).
CREATE FUNCTION ordertrack.fold_instant(occurred_at text) RETURNS timestamptz
LANGUAGE sql STABLE STRICT AS $$
    SELECT regexp_replace(occurred_at, '(\.[0-9]{1,3})[0-9]*', '\1')::timestamptz
$$;

-- When the current customs hold of a shipment at stage began: the first
-- customs_hold of that stage after its last customs_released, neither
-- retracted, in the fold's order (lib/model.c: instant to the
-- millisecond, then id byte by byte).  Retractions count as in the fold:
-- an event.retracted of the order whose "retracts" names the event.  Null
-- when the stage is not held.
CREATE FUNCTION ordertrack.held_since(exporter text, order_ref text, shipment_ref text,
                                      stage text)
RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    WITH c AS (
        SELECT e.type, e.event_id, e.occurred_at,
               ordertrack.fold_instant(e.body->>'occurred_at') AS instant
        FROM ordertrack.events e
        WHERE e.exporter = held_since.exporter AND e.order_ref = held_since.order_ref
          AND e.shipment_ref = held_since.shipment_ref
          AND e.type IN ('shipment.customs_hold', 'shipment.customs_released')
          AND e.body->>'stage' = held_since.stage
          AND NOT EXISTS (
              SELECT 1 FROM ordertrack.events r
              WHERE r.exporter = e.exporter AND r.order_ref = e.order_ref
                AND r.type = 'event.retracted' AND r.body->>'retracts' = e.event_id)
    ),
    released AS (
        SELECT instant, event_id FROM c WHERE type = 'shipment.customs_released'
        ORDER BY instant DESC, event_id DESC LIMIT 1
    )
    SELECT c.occurred_at FROM c
    WHERE c.type = 'shipment.customs_hold'
      AND NOT EXISTS (SELECT 1 FROM released r
                      WHERE (c.instant, c.event_id) < (r.instant, r.event_id))
    ORDER BY c.instant, c.event_id LIMIT 1
$$;

-- Store the notifications in items (a JSON array of objects with kind,
-- exporter, order, shipment, from, to, event, occurred_at and any other
-- members of the wire format), numbered from the counter, and announce
-- each with NOTIFY ordertrack.  Returns the stored rows.  `at` (and
-- created_at, the same instant) is read from the clock once the counter
-- row is ours: the next emitter gets the row only after this transaction
-- ends, so `at` does not go back as seq grows.
CREATE OR REPLACE FUNCTION ordertrack.emit_notifications(items jsonb)
RETURNS SETOF ordertrack.notifications
LANGUAGE plpgsql AS $$
DECLARE
    n     integer := coalesce(jsonb_array_length(items), 0);
    last  bigint;
    stamp timestamptz;
    at    text;
BEGIN
    IF n = 0 THEN
        RETURN;
    END IF;
    UPDATE ordertrack.notification_counter SET last_seq = last_seq + n
        RETURNING last_seq INTO last;
    stamp := clock_timestamp();
    at := to_char(stamp AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');
    RETURN QUERY
    INSERT INTO ordertrack.notifications AS t
        (seq, kind, exporter, order_ref, shipment_ref, from_status, to_status,
         event_id, occurred_at, created_at, body)
    SELECT last - n + x.i, x.item->>'kind', x.item->>'exporter', x.item->>'order',
           x.item->>'shipment', x.item->>'from', x.item->>'to', x.item->>'event',
           (x.item->>'occurred_at')::timestamptz, stamp,
           jsonb_build_object('type', 'notification', 'seq', last - n + x.i, 'at', at)
               || x.item
    FROM jsonb_array_elements(items) WITH ORDINALITY AS x(item, i)
    ORDER BY x.i
    RETURNING t.*;
    PERFORM pg_notify('ordertrack', json_build_object(
                'seq', t.seq, 'kind', t.kind, 'exporter', t.exporter,
                'order', t.order_ref)::text)
    FROM ordertrack.notifications t
    WHERE t.seq > last - n AND t.seq <= last
    ORDER BY t.seq;
END;
$$;

-- Raise and clear the alerts for stuck shipments, once per episode, and
-- emit a notification for each change.  Run by the daemon's alert timer;
-- the advisory lock makes concurrent daemons take turns.  An episode ends
-- when its condition no longer holds (the shipment was released,
-- delivered, got a new event or a new eta, or its order was cancelled).
CREATE OR REPLACE FUNCTION ordertrack.evaluate_alerts(customs_hold_hours integer,
                                                      stale_hours integer)
RETURNS SETOF ordertrack.notifications
LANGUAGE plpgsql AS $$
DECLARE
    items jsonb;
BEGIN
    PERFORM pg_advisory_xact_lock(7433002);
    WITH cond AS (
        SELECT s.exporter, s.order_ref, s.shipment_ref, k.kind
        FROM ordertrack.shipments s
        CROSS JOIN LATERAL (VALUES
            ('alert.customs_dwell'::text,
             s.hold IS NOT NULL AND s.status <> 'delivered'
                 AND ordertrack.held_since(s.exporter, s.order_ref, s.shipment_ref, s.hold)
                     < now() - make_interval(hours => customs_hold_hours)),
            ('alert.overdue', s.eta < now() AND s.status <> 'delivered'),
            ('alert.stale', s.status <> 'delivered'
                 AND s.last_event_at < now() - make_interval(hours => stale_hours))
        ) AS k(kind, active)
        WHERE k.active AND NOT EXISTS (
            SELECT 1 FROM ordertrack.orders o
            WHERE o.exporter = s.exporter AND o.order_ref = s.order_ref
              AND o.status = 'cancelled')
    ),
    raised AS (
        INSERT INTO ordertrack.alerts (exporter, order_ref, shipment_ref, kind)
        SELECT c.exporter, c.order_ref, c.shipment_ref, c.kind FROM cond c
        WHERE NOT EXISTS (
            SELECT 1 FROM ordertrack.alerts a
            WHERE a.cleared_at IS NULL AND a.exporter = c.exporter
              AND a.order_ref = c.order_ref AND a.shipment_ref = c.shipment_ref
              AND a.kind = c.kind)
        RETURNING exporter, order_ref, shipment_ref, kind, 'raised'::text AS change
    ),
    cleared AS (
        UPDATE ordertrack.alerts a SET cleared_at = now()
        WHERE a.cleared_at IS NULL AND NOT EXISTS (
            SELECT 1 FROM cond c
            WHERE a.exporter = c.exporter AND a.order_ref = c.order_ref
              AND a.shipment_ref = c.shipment_ref AND a.kind = c.kind)
        RETURNING exporter, order_ref, shipment_ref, kind, 'cleared'::text AS change
    )
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'kind', x.kind, 'exporter', x.exporter, 'order', x.order_ref,
               'shipment', x.shipment_ref,
               'from', CASE x.change WHEN 'cleared' THEN 'raised' END,
               'to', x.change, 'event', NULL, 'occurred_at', NULL)
               ORDER BY x.exporter, x.order_ref, x.shipment_ref, x.kind, x.change), '[]')
    INTO items
    FROM (SELECT * FROM raised UNION ALL SELECT * FROM cleared) x;
    RETURN QUERY SELECT * FROM ordertrack.emit_notifications(items);
END;
$$;
