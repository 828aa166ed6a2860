-- 008: identifiers compare byte by byte (COLLATE "C"), whatever the
-- database's locale.
--
-- Under a linguistic collation (en_US.UTF-8, the usual locale of a Debian
-- server's cluster) every comparison in a B-tree on these columns goes
-- through strcoll(): each stored event pays it in the primary key and in
-- events_order_idx, each read-model and notification row in its own keys.
-- On the benchmark machine, 200,000 events into a table shaped like
-- ordertrack.events took 2.7 to 3.2 s under en_US.UTF-8 against 1.7 to 2.3 s
-- with these columns in "C" (docs/PERFORMANCE.md).  Ids are opaque: nothing
-- here sorts them for people, and equality is the same under any
-- deterministic collation, so the keys accept and refuse exactly what they
-- did.  What changes is the order of ORDER BY on these columns (byte order,
-- which the daemon's own queries already asked for) and that LIKE 'prefix%'
-- can use the indexes.
--
-- Only the collation changes, so no table is rewritten; the indexes that
-- hold these columns are rebuilt, under the table's exclusive lock
-- (docs/OPERATIONS.md, "Upgrades").  The status columns are indexed too and
-- hold fixed ASCII words, so they change with the ids.
ALTER TABLE ordertrack.events
    ALTER COLUMN exporter TYPE text COLLATE "C",
    ALTER COLUMN event_id TYPE text COLLATE "C",
    ALTER COLUMN order_ref TYPE text COLLATE "C",
    ALTER COLUMN shipment_ref TYPE text COLLATE "C";

ALTER TABLE ordertrack.orders
    ALTER COLUMN exporter TYPE text COLLATE "C",
    ALTER COLUMN order_ref TYPE text COLLATE "C",
    ALTER COLUMN status TYPE text COLLATE "C";

ALTER TABLE ordertrack.shipments
    ALTER COLUMN exporter TYPE text COLLATE "C",
    ALTER COLUMN order_ref TYPE text COLLATE "C",
    ALTER COLUMN shipment_ref TYPE text COLLATE "C",
    ALTER COLUMN status TYPE text COLLATE "C";

ALTER TABLE ordertrack.order_lines
    ALTER COLUMN exporter TYPE text COLLATE "C",
    ALTER COLUMN order_ref TYPE text COLLATE "C";

ALTER TABLE ordertrack.documents
    ALTER COLUMN exporter TYPE text COLLATE "C",
    ALTER COLUMN order_ref TYPE text COLLATE "C",
    ALTER COLUMN shipment_ref TYPE text COLLATE "C";

ALTER TABLE ordertrack.notifications
    ALTER COLUMN exporter TYPE text COLLATE "C",
    ALTER COLUMN order_ref TYPE text COLLATE "C",
    ALTER COLUMN shipment_ref TYPE text COLLATE "C",
    ALTER COLUMN event_id TYPE text COLLATE "C";

ALTER TABLE ordertrack.alerts
    ALTER COLUMN exporter TYPE text COLLATE "C",
    ALTER COLUMN order_ref TYPE text COLLATE "C",
    ALTER COLUMN shipment_ref TYPE text COLLATE "C",
    ALTER COLUMN kind TYPE text COLLATE "C";

ALTER TABLE ordertrack.webhook_cursors
    ALTER COLUMN webhook TYPE text COLLATE "C";
