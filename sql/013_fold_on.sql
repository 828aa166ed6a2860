-- 013: fold an order on from where its last batch stopped.
--
-- Every batch read back all the stored events of each order it touched
-- (the daemon's LOAD), parsed them and folded the order again from its
-- first event.  When an order's events come in the same batch, as they
-- did in the benchmark's whole-order runs, that cost little; when they
-- come apart, as live traffic sends them, each event paid for its whole
-- order: at 64 interleaved orders per connection the pipeline ran at 0.4
-- of its whole-order rate (docs/PERFORMANCE.md, "Interleaved orders").
--
-- orders.walk keeps what the fold needs to go on and the state does not
-- show (lib/model.c has its layout): the number of events read and the
-- last (instant, id) read, the confirmed and cancelled flags, the HS codes
-- of the order's lines, each shipment's departure and latest customs hold
-- or release per stage, and the documents issued; a few hundred bytes.
-- The daemon writes it with the state, in the same transaction.  A batch
-- whose events of an order all sort after that last one, and retract
-- nothing, folds on from the state and the walk, and LOAD leaves the order
-- out.  NULL (orders stored before this migration, orders with a
-- retraction, delivered or cancelled orders, which seldom get another
-- event) means: fold from the events.  The column is internal; its
-- layout has a version ("v") and may change.
--
-- The walk changes with every event, so the upsert also writes a row
-- whose state stayed the same (a new event that changed no column), but
-- keeps its updated_at: that still says when the read model last
-- changed.

ALTER TABLE ordertrack.orders ADD COLUMN walk jsonb;

-- As in migration 012, with the walk: "walk" beside "state" in each item
-- (JSON null or missing: none).
CREATE OR REPLACE FUNCTION ordertrack.apply_orders(batch jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    ex  text[];
    ord text[];
    st  jsonb[];
    li  jsonb[];
    dd  jsonb[];
    lc  boolean[];
    dc  boolean[];
    nw  boolean[];
    rt  boolean[];
    wk  jsonb[];
BEGIN
    -- "new": the order has no rows yet, so there is nothing to delete.
    -- "retracted": only a retraction can take a shipment away.
    SELECT array_agg(b->>'exporter'), array_agg(b->>'order_ref'), array_agg(b->'state'),
           array_agg(b->'lines'), array_agg(b->'documents'),
           array_agg(b ? 'lines'), array_agg(b ? 'documents'),
           array_agg(coalesce((b->>'new')::boolean, false)),
           array_agg(coalesce((b->>'retracted')::boolean, true)),
           array_agg(b->'walk')
      INTO ex, ord, st, li, dd, lc, dc, nw, rt, wk
      FROM jsonb_array_elements(batch) AS b;
    IF ex IS NULL THEN
        RETURN;
    END IF;

    INSERT INTO ordertrack.orders AS o
        (exporter, order_ref, status, buyer, channel, origin, destination,
         incoterm, currency, expected_delivery, anomalies, created_at, last_event_at, state,
         walk)
    SELECT k.e, k.o, s.status, s.buyer, s.channel, s.origin,
           s.destination, s.incoterm, s.currency, s.expected_delivery,
           coalesce(ARRAY(SELECT jsonb_array_elements_text(k.state->'order'->'anomalies')), '{}'),
           s.created_at, s.updated_at, k.state, nullif(k.walk, 'null')
    FROM unnest(ex, ord, st, wk) AS k(e, o, state, walk),
         jsonb_to_record(k.state->'order') AS s(
             status text, buyer text, channel text, origin text, destination text,
             incoterm text, currency text, expected_delivery date,
             created_at timestamptz, updated_at timestamptz)
    ON CONFLICT (exporter, order_ref) DO UPDATE SET
        status = EXCLUDED.status, buyer = EXCLUDED.buyer, channel = EXCLUDED.channel,
        origin = EXCLUDED.origin, destination = EXCLUDED.destination,
        incoterm = EXCLUDED.incoterm, currency = EXCLUDED.currency,
        expected_delivery = EXCLUDED.expected_delivery, anomalies = EXCLUDED.anomalies,
        created_at = EXCLUDED.created_at, last_event_at = EXCLUDED.last_event_at,
        state = EXCLUDED.state, walk = EXCLUDED.walk,
        -- Every column is read from the state: the same state, the same row.
        updated_at = CASE WHEN o.state IS DISTINCT FROM EXCLUDED.state
                          THEN now() ELSE o.updated_at END
    WHERE (o.status, o.buyer, o.channel, o.origin, o.destination, o.incoterm,
           o.currency, o.expected_delivery, o.anomalies, o.created_at, o.last_event_at)
          IS DISTINCT FROM
          (EXCLUDED.status, EXCLUDED.buyer, EXCLUDED.channel, EXCLUDED.origin,
           EXCLUDED.destination, EXCLUDED.incoterm, EXCLUDED.currency,
           EXCLUDED.expected_delivery, EXCLUDED.anomalies, EXCLUDED.created_at,
           EXCLUDED.last_event_at)
       OR o.state IS DISTINCT FROM EXCLUDED.state
       OR o.walk IS DISTINCT FROM EXCLUDED.walk;

    IF true = ANY (rt) THEN
        DELETE FROM ordertrack.shipments WHERE ctid = ANY (ARRAY(
            SELECT sh.ctid
            FROM unnest(ex, ord, st, rt, nw) AS k(e, o, state, retracted, new)
            CROSS JOIN LATERAL (
                SELECT s.ctid, s.shipment_ref FROM ordertrack.shipments s
                WHERE s.exporter = k.e AND s.order_ref = k.o OFFSET 0) sh
            WHERE k.retracted AND NOT k.new
              AND NOT EXISTS (
                  SELECT 1 FROM jsonb_array_elements(k.state->'shipments') AS x
                  WHERE x->>'shipment_ref' = sh.shipment_ref)));
    END IF;

    INSERT INTO ordertrack.shipments AS sh
        (exporter, order_ref, shipment_ref, status, milestone, hold, exception, mode,
         carrier, tracking, consignee, eta, last_event_at, last_location)
    SELECT k.e, k.o, s.shipment_ref, s.status, s.milestone, s.hold,
           s.exception, s.mode, s.carrier, s.tracking, s.consignee, s.eta,
           s.last_event_at, s.last_location
    FROM unnest(ex, ord, st) AS k(e, o, state),
         jsonb_to_recordset(k.state->'shipments') AS s(
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

    IF true = ANY (lc) THEN
        DELETE FROM ordertrack.order_lines WHERE ctid = ANY (ARRAY(
            SELECT l.ctid FROM unnest(ex, ord, lc, nw) AS k(e, o, changed, new)
            CROSS JOIN LATERAL (
                SELECT x.ctid FROM ordertrack.order_lines x
                WHERE x.exporter = k.e AND x.order_ref = k.o OFFSET 0) l
            WHERE k.changed AND NOT k.new));
        INSERT INTO ordertrack.order_lines
            (exporter, order_ref, line_no, sku, product, hs_code, quantity, unit,
             unit_price, currency)
        SELECT k.e, k.o, x.n::integer, x.l->>'sku', x.l->>'product',
               x.l->>'hs_code', (x.l->>'quantity')::numeric, x.l->>'unit',
               (x.l->>'unit_price')::numeric, x.l->>'currency'
        FROM unnest(ex, ord, li, lc) AS k(e, o, lines, changed),
             jsonb_array_elements(k.lines) WITH ORDINALITY AS x(l, n)
        WHERE k.changed;
    END IF;

    IF true = ANY (dc) THEN
        DELETE FROM ordertrack.documents WHERE ctid = ANY (ARRAY(
            SELECT d.ctid FROM unnest(ex, ord, dc, nw) AS k(e, o, changed, new)
            CROSS JOIN LATERAL (
                SELECT x.ctid FROM ordertrack.documents x
                WHERE x.exporter = k.e AND x.order_ref = k.o OFFSET 0) d
            WHERE k.changed AND NOT k.new));
        INSERT INTO ordertrack.documents
            (exporter, order_ref, shipment_ref, document, number, issued_at)
        SELECT k.e, k.o, d.shipment_ref, d.document, d.number, d.issued_at
        FROM unnest(ex, ord, dd, dc) AS k(e, o, docs, changed),
             jsonb_to_recordset(k.docs) AS d(
                 shipment_ref text, document text, number text, issued_at timestamptz)
        WHERE k.changed;
    END IF;
END;
$$;
