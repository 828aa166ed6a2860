-- 014: a shipment held at both customs stages is timed from its older hold.
--
-- shipments.hold names one stage: when both are held (an export hold never
-- released, then an import hold), the one whose hold came last.  The
-- customs dwell was timed from that stage's hold alone, so a second
-- stage's hold cleared the alert of a shipment held for days, raised it
-- again a threshold later as a new episode, and a release of the newer
-- hold could flip it back.  held_since(exporter, order_ref, shipment_ref)
-- is the start of the older current hold, of either stage; the alert and
-- ordertrackctl's "held since" use it.

-- When the shipment's older current customs hold began, of either stage;
-- null when neither stage is held.
CREATE FUNCTION ordertrack.held_since(exporter text, order_ref text, shipment_ref text)
RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT least(ordertrack.held_since(exporter, order_ref, shipment_ref, 'export'),
                 ordertrack.held_since(exporter, order_ref, shipment_ref, 'import'))
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
                 AND ordertrack.held_since(s.exporter, s.order_ref, s.shipment_ref)
                     < now() - make_interval(hours => customs_hold_hours)),
            ('alert.overdue', s.eta < now() AND s.status <> 'delivered'),
            ('alert.stale', s.status <> 'delivered'
                 AND s.last_event_at < now() - make_interval(hours => stale_hours))
        ) AS k(kind, active)
        WHERE (s.status < 'delivered' OR s.status > 'delivered')
          AND k.active AND NOT EXISTS (
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
