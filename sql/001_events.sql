-- 001: the event log.
--
-- Every accepted event, exactly as it was accepted, once per (exporter, id).
-- Rows are never changed or removed: the status of orders and shipments is
-- derived from this table, and an ack promises the row is here for good.

CREATE TABLE ordertrack.events (
    exporter     text        NOT NULL,
    event_id     text        NOT NULL,
    type         text        NOT NULL,
    order_ref    text        NOT NULL,
    shipment_ref text,
    occurred_at  timestamptz NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    body         jsonb       NOT NULL,
    PRIMARY KEY (exporter, event_id),
    CHECK (event_id <> '' AND order_ref <> '')
);

CREATE INDEX events_order_idx ON ordertrack.events (exporter, order_ref);

CREATE FUNCTION ordertrack.events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ordertrack.events is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER events_append_only
    BEFORE UPDATE OR DELETE ON ordertrack.events
    FOR EACH ROW EXECUTE FUNCTION ordertrack.events_append_only();

CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON ordertrack.events
    FOR EACH STATEMENT EXECUTE FUNCTION ordertrack.events_append_only();
