-- 003: notifications, written in the same transaction as the change.
--
-- seq is strictly increasing in commit order, also with several daemons on
-- one database: every transaction that emits notifications takes its seqs
-- from the single row of notification_counter.  The UPDATE locks that row
-- until the transaction ends, so a second writer waits, reads the counter
-- only after the first has committed (or rolled back: then the seqs are
-- reused and no gap appears), and commits after it.  A reader that has
-- seen seq N can therefore never later find a committed row below N.  The
-- price is that emitting transactions are serialized on that row; the
-- daemon takes it last, just before COMMIT, to hold it briefly.

CREATE TABLE ordertrack.notifications (
    seq          bigint      PRIMARY KEY,
    kind         text        NOT NULL,
    exporter     text        NOT NULL,
    order_ref    text        NOT NULL,
    shipment_ref text,
    from_status  text,
    to_status    text,
    event_id     text,
    occurred_at  timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    body         jsonb       NOT NULL
);
CREATE INDEX notifications_exporter_idx ON ordertrack.notifications (exporter, seq);

CREATE TABLE ordertrack.notification_counter (
    one      boolean PRIMARY KEY DEFAULT true CHECK (one),
    last_seq bigint  NOT NULL
);
INSERT INTO ordertrack.notification_counter VALUES (true, 0);

-- Store the notifications in items (a JSON array of objects with kind,
-- exporter, order, shipment, from, to, event, occurred_at and any other
-- members of the wire format), numbered from the counter, and announce
-- each with NOTIFY ordertrack.  Returns the stored rows.
CREATE FUNCTION ordertrack.emit_notifications(items jsonb)
RETURNS SETOF ordertrack.notifications
LANGUAGE plpgsql AS $$
DECLARE
    n    integer := coalesce(jsonb_array_length(items), 0);
    last bigint;
    at   text := to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');
BEGIN
    IF n = 0 THEN
        RETURN;
    END IF;
    UPDATE ordertrack.notification_counter SET last_seq = last_seq + n
        RETURNING last_seq INTO last;
    RETURN QUERY
    INSERT INTO ordertrack.notifications AS t
        (seq, kind, exporter, order_ref, shipment_ref, from_status, to_status,
         event_id, occurred_at, body)
    SELECT last - n + x.i, x.item->>'kind', x.item->>'exporter', x.item->>'order',
           x.item->>'shipment', x.item->>'from', x.item->>'to', x.item->>'event',
           (x.item->>'occurred_at')::timestamptz,
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

-- Where each webhook has got to: the last seq its endpoint acknowledged.
CREATE TABLE ordertrack.webhook_cursors (
    webhook    text        PRIMARY KEY,
    last_seq   bigint      NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Alerts for stuck shipments, one row per episode; cleared_at is set when
-- the condition ends.  At most one open episode per shipment and kind.
CREATE TABLE ordertrack.alerts (
    exporter     text        NOT NULL,
    order_ref    text        NOT NULL,
    shipment_ref text        NOT NULL,
    kind         text        NOT NULL,
    raised_at    timestamptz NOT NULL DEFAULT now(),
    cleared_at   timestamptz
);
CREATE UNIQUE INDEX alerts_open_idx ON ordertrack.alerts (exporter, order_ref, shipment_ref, kind)
    WHERE cleared_at IS NULL;

-- Raise and clear the alerts for stuck shipments, once per episode, and
-- emit a notification for each change.  Run by the daemon's alert timer;
-- the advisory lock makes concurrent daemons take turns.  An episode ends
-- when its condition no longer holds (the shipment was released,
-- delivered, got a new event or a new eta).
CREATE FUNCTION ordertrack.evaluate_alerts(customs_hold_hours integer, stale_hours integer)
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
             s.hold IS NOT NULL AND s.status <> 'delivered' AND (
                 SELECT max(e.occurred_at) FROM ordertrack.events e
                 WHERE e.exporter = s.exporter AND e.order_ref = s.order_ref
                   AND e.shipment_ref = s.shipment_ref
                   AND e.type = 'shipment.customs_hold' AND e.body->>'stage' = s.hold)
                 < now() - make_interval(hours => customs_hold_hours)),
            ('alert.overdue', s.eta < now() AND s.status <> 'delivered'),
            ('alert.stale', s.status <> 'delivered'
                 AND s.last_event_at < now() - make_interval(hours => stale_hours))
        ) AS k(kind, active)
        WHERE k.active
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
