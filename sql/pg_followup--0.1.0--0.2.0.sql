-- pg_followup 0.1.0 -> 0.2.0
--
-- Run by ALTER EXTENSION pg_followup UPDATE. Every change keeps the data:
-- tables are altered in place, never dropped.

-- The outbox: half of each page kept free so that claims are mostly HOT
-- updates, and vacuumed more often (see sql/schema.sql). Rows already stored
-- keep their pages; VACUUM FULL followup.outbox repacks them if wanted.
ALTER TABLE followup.outbox SET (fillfactor = 50, autovacuum_vacuum_scale_factor = 0.01,
                                 autovacuum_vacuum_threshold = 1000);
