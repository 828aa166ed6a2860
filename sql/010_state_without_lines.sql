-- 010: orders.state without lines and documents, also in rows written
-- before migration 005.
--
-- Up to migration 004 apply_orders stored the fold's whole result in
-- orders.state, lines and documents included; from 005 on it stores the
-- order and its shipments only (lines and documents have their own
-- tables).  A database upgraded from 004 or older kept the old copies in
-- every order that no batch has touched since, so its read model was not
-- the one a fresh database builds from the same events.  Drop them.
-- Rows written since 005 hold neither member and are left as they are, so
-- their updated_at does not move either.
UPDATE ordertrack.orders
SET state = state - 'lines' - 'documents'
WHERE state ?| ARRAY['lines', 'documents'];
