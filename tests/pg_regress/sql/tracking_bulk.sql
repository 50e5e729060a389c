-- Bulk writes are set-based (README, "Registering the app's tables"): one INSERT of 100,000 activities calls
-- the statement trigger once, which runs one UPDATE touching each affected
-- assignment once; the per-row replication trigger does not fire at all.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_followup CASCADE;
DROP SCHEMA IF EXISTS bulk CASCADE;
CREATE EXTENSION pg_followup;
RESET client_min_messages;
CREATE SCHEMA bulk;
SET search_path = bulk, public;

CREATE TABLE assignments (id int PRIMARY KEY, mentor_id int, last_contact_date date);
INSERT INTO assignments SELECT g, g % 100, NULL FROM generate_series(1, 1000) g;
CREATE TABLE activities (assignment_id int, occurred_on date);
CREATE INDEX ON activities (assignment_id, occurred_on);
SELECT followup.track_assignments('assignments', 'id', 'mentor_id', 'last_contact_date');
SELECT followup.track_activities('activities', 'occurred_on', '{assignment_id}', '{id}');

BEGIN;
SET LOCAL track_functions = 'all';
INSERT INTO activities
SELECT 1 + g % 1000, date '2026-01-01' + (g % 300) FROM generate_series(1, 100000) g;
SELECT funcname, calls FROM pg_stat_xact_user_functions
 WHERE schemaname = 'followup' ORDER BY funcname;
SELECT relname, n_tup_upd FROM pg_stat_xact_user_tables WHERE schemaname = 'bulk' AND relname = 'assignments';
COMMIT;

SELECT count(*) AS assignments, count(last_contact_date) AS with_last_contact,
       count(*) FILTER (WHERE last_contact_date = (SELECT max(occurred_on) FROM activities x WHERE x.assignment_id = a.id)) AS correct
  FROM assignments a;

-- a bulk DELETE of 16,650 rows: one call, and only the assignments whose
-- latest activity went are recomputed
-- (counts of the previous transaction may still be pending: compare before/after)
BEGIN;
SET LOCAL track_functions = 'all';
SELECT coalesce(sum(calls), 0) AS calls_before FROM pg_stat_xact_user_functions
 WHERE schemaname = 'followup' \gset
SELECT count(*) AS deleting FROM activities WHERE occurred_on >= date '2026-01-01' + 250;
DELETE FROM activities WHERE occurred_on >= date '2026-01-01' + 250;
SELECT funcname, calls - :calls_before AS calls FROM pg_stat_xact_user_functions
 WHERE schemaname = 'followup' ORDER BY funcname;
COMMIT;
SELECT count(*) FILTER (WHERE last_contact_date = (SELECT max(occurred_on) FROM activities x WHERE x.assignment_id = a.id)) AS correct
  FROM assignments a;
