-- 004: apply_orders rewrites an order's lines and documents only when they
-- changed.
--
-- Most events move a shipment and leave the order's lines and documents as
-- they were; deleting and inserting those rows for every event was the
-- largest share of the write work.  The daemon now marks each order with
-- lines_changed and docs_changed (it compares the state it folded with the
-- one stored before); a missing mark means "changed", as before.

-- Replace the read model of the orders in $1, a JSON array of
-- {"exporter", "order_ref", "state": <model_fold() result>}.  Rows that did
-- not change keep their updated_at.
CREATE OR REPLACE FUNCTION ordertrack.apply_orders(batch jsonb) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN

    INSERT INTO ordertrack.orders AS o
        (exporter, order_ref, status, buyer, channel, origin, destination,
         incoterm, currency, expected_delivery, anomalies, created_at, last_event_at, state)
    SELECT i.exporter, i.order_ref, s.status, s.buyer, s.channel, s.origin,
           s.destination, s.incoterm, s.currency, s.expected_delivery,
           coalesce(ARRAY(SELECT jsonb_array_elements_text(i.state->'order'->'anomalies')), '{}'),
           s.created_at, s.updated_at, i.state
    FROM (SELECT b->>'exporter' AS exporter, b->>'order_ref' AS order_ref, b->'state' AS state
          FROM jsonb_array_elements(batch) AS b) i,
         jsonb_to_record(i.state->'order') AS s(
             status text, buyer text, channel text, origin text, destination text,
             incoterm text, currency text, expected_delivery date,
             created_at timestamptz, updated_at timestamptz)
    ON CONFLICT (exporter, order_ref) DO UPDATE SET
        status = EXCLUDED.status, buyer = EXCLUDED.buyer, channel = EXCLUDED.channel,
        origin = EXCLUDED.origin, destination = EXCLUDED.destination,
        incoterm = EXCLUDED.incoterm, currency = EXCLUDED.currency,
        expected_delivery = EXCLUDED.expected_delivery, anomalies = EXCLUDED.anomalies,
        created_at = EXCLUDED.created_at, last_event_at = EXCLUDED.last_event_at,
        state = EXCLUDED.state, updated_at = now()
    WHERE (o.status, o.buyer, o.channel, o.origin, o.destination, o.incoterm,
           o.currency, o.expected_delivery, o.anomalies, o.created_at, o.last_event_at)
          IS DISTINCT FROM
          (EXCLUDED.status, EXCLUDED.buyer, EXCLUDED.channel, EXCLUDED.origin,
           EXCLUDED.destination, EXCLUDED.incoterm, EXCLUDED.currency,
           EXCLUDED.expected_delivery, EXCLUDED.anomalies, EXCLUDED.created_at,
           EXCLUDED.last_event_at)
       OR o.state IS DISTINCT FROM EXCLUDED.state;

    DELETE FROM ordertrack.shipments sh
    USING (SELECT b->>'exporter' AS exporter, b->>'order_ref' AS order_ref, b->'state' AS state
          FROM jsonb_array_elements(batch) AS b) i
    WHERE sh.exporter = i.exporter AND sh.order_ref = i.order_ref
      AND NOT EXISTS (
          SELECT 1 FROM jsonb_array_elements(i.state->'shipments') AS x
          WHERE x->>'shipment_ref' = sh.shipment_ref);

    INSERT INTO ordertrack.shipments AS sh
        (exporter, order_ref, shipment_ref, status, milestone, hold, exception, mode,
         carrier, tracking, consignee, eta, last_event_at, last_location)
    SELECT i.exporter, i.order_ref, s.shipment_ref, s.status, s.milestone, s.hold,
           s.exception, s.mode, s.carrier, s.tracking, s.consignee, s.eta,
           s.last_event_at, s.last_location
    FROM (SELECT b->>'exporter' AS exporter, b->>'order_ref' AS order_ref, b->'state' AS state
          FROM jsonb_array_elements(batch) AS b) i,
         jsonb_to_recordset(i.state->'shipments') AS s(
             shipment_ref text, status text, milestone text, hold text, exception text,
             mode text, carrier text, tracking text, consignee text, eta timestamptz,
             last_event_at timestamptz, last_location text)
    ON CONFLICT (exporter, order_ref, shipment_ref) DO UPDATE SET
        status = EXCLUDED.status, milestone = EXCLUDED.milestone, hold = EXCLUDED.hold,
        exception = EXCLUDED.exception, mode = EXCLUDED.mode, carrier = EXCLUDED.carrier,
        tracking = EXCLUDED.tracking, consignee = EXCLUDED.consignee, eta = EXCLUDED.eta,
        last_event_at = EXCLUDED.last_event_at, last_location = EXCLUDED.last_location,
        updated_at = now()
    WHERE (sh.status, sh.milestone, sh.hold, sh.exception, sh.mode, sh.carrier,
           sh.tracking, sh.consignee, sh.eta, sh.last_event_at, sh.last_location)
          IS DISTINCT FROM
          (EXCLUDED.status, EXCLUDED.milestone, EXCLUDED.hold, EXCLUDED.exception,
           EXCLUDED.mode, EXCLUDED.carrier, EXCLUDED.tracking, EXCLUDED.consignee,
           EXCLUDED.eta, EXCLUDED.last_event_at, EXCLUDED.last_location);

    DELETE FROM ordertrack.order_lines l USING (SELECT b->>'exporter' AS exporter, b->>'order_ref' AS order_ref, b->'state' AS state
          FROM jsonb_array_elements(batch) AS b
          WHERE coalesce((b->>'lines_changed')::boolean, true)) i
    WHERE l.exporter = i.exporter AND l.order_ref = i.order_ref;
    INSERT INTO ordertrack.order_lines
        (exporter, order_ref, line_no, sku, product, hs_code, quantity, unit,
         unit_price, currency)
    SELECT i.exporter, i.order_ref, x.n::integer, x.l->>'sku', x.l->>'product',
           x.l->>'hs_code', (x.l->>'quantity')::numeric, x.l->>'unit',
           (x.l->>'unit_price')::numeric, x.l->>'currency'
    FROM (SELECT b->>'exporter' AS exporter, b->>'order_ref' AS order_ref, b->'state' AS state
          FROM jsonb_array_elements(batch) AS b
          WHERE coalesce((b->>'lines_changed')::boolean, true)) i,
         jsonb_array_elements(i.state->'lines') WITH ORDINALITY AS x(l, n);

    DELETE FROM ordertrack.documents d USING (SELECT b->>'exporter' AS exporter, b->>'order_ref' AS order_ref, b->'state' AS state
          FROM jsonb_array_elements(batch) AS b
          WHERE coalesce((b->>'docs_changed')::boolean, true)) i
    WHERE d.exporter = i.exporter AND d.order_ref = i.order_ref;
    INSERT INTO ordertrack.documents
        (exporter, order_ref, shipment_ref, document, number, issued_at)
    SELECT i.exporter, i.order_ref, d.shipment_ref, d.document, d.number, d.issued_at
    FROM (SELECT b->>'exporter' AS exporter, b->>'order_ref' AS order_ref, b->'state' AS state
          FROM jsonb_array_elements(batch) AS b
          WHERE coalesce((b->>'docs_changed')::boolean, true)) i,
         jsonb_to_recordset(i.state->'documents') AS d(
             shipment_ref text, document text, number text, issued_at timestamptz);
END;
$$;
