-- Verify and repair (README, "Verify and repair"): drift is an assignment whose
-- stored last contact is not what tracking keeps (the latest tracked activity,
-- floored by the latest correction). verify lists it, repair fixes it in one
-- audited statement; TRUNCATE of a tracked table recomputes what it affected.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_followup CASCADE;
DROP SCHEMA IF EXISTS rep CASCADE;
CREATE EXTENSION pg_followup;
RESET client_min_messages;
CREATE SCHEMA rep;
SET search_path = rep, public;
\i tests/pg_regress/helpers/try.sql

CREATE TABLE assignments (id int PRIMARY KEY, mentor_id int, last_contact_date date);
INSERT INTO assignments SELECT g, 100 + g, NULL FROM generate_series(1, 6) g;
CREATE TABLE visits (assignment int, visited_on date);
CREATE TABLE calls (assignment int, called_at timestamptz) PARTITION BY RANGE (called_at);
CREATE TABLE calls_h1 PARTITION OF calls FOR VALUES FROM ('2026-01-01') TO ('2026-07-01');
CREATE TABLE calls_h2 PARTITION OF calls FOR VALUES FROM ('2026-07-01') TO ('2027-01-01');
SELECT followup.track_assignments('assignments', 'id', 'mentor_id', 'last_contact_date');
SET client_min_messages = warning;
SELECT followup.track_activities('visits', 'visited_on', '{assignment}', '{id}');
SELECT followup.track_activities('calls', 'called_at', '{assignment}', '{id}');
RESET client_min_messages;
INSERT INTO visits VALUES (1, '2026-06-01'), (2, '2026-06-02'), (3, '2026-06-03');
INSERT INTO calls VALUES (1, '2026-05-01 12:00+00'), (2, '2026-08-02 12:00+00'), (4, '2026-06-20 12:00+00');
SELECT (followup.set_last_contact('5', '2026-06-05', 'paper log')).correction_id;
SELECT id, last_contact_date FROM assignments ORDER BY id;
SELECT count(*) AS drifted FROM followup.verify();

-- Drift: an import with the triggers off, the app writing the column, a
-- restore that skipped the triggers
ALTER TABLE visits DISABLE TRIGGER followup_activity_insert;
INSERT INTO visits VALUES (3, '2026-06-30'), (6, '2026-06-06');
ALTER TABLE visits ENABLE TRIGGER followup_activity_insert;
UPDATE assignments SET last_contact_date = '2026-12-01' WHERE id = 1;   -- higher than any activity
UPDATE assignments SET last_contact_date = NULL WHERE id = 5;           -- below the correction
SELECT * FROM followup.verify();
SELECT * FROM followup.verify(2);

-- bad input is refused and changes nothing
SELECT try($$SELECT * FROM followup.verify(0)$$);
SELECT try($$SELECT * FROM followup.verify(NULL)$$);
SELECT try($$SELECT followup.repair('   ')$$);
SELECT try($$SELECT followup.repair(NULL)$$);
SELECT count(*) AS repairs, (SELECT count(*) FROM followup.verify()) AS still_drifted FROM followup.repairs;

-- a message of assignment 3's old cycle, pending
INSERT INTO followup.outbox (assignment_id, cycle_start, kind, sequence, recipient_role, recipient_id, days_since_contact)
VALUES ('3', '2026-06-03', 'reminder', 1, 'mentor', '103', 20);

-- repair: every drifted assignment set to what tracking keeps, audited
SELECT followup.repair('import ran with triggers disabled') AS repaired;
SELECT assignment_id, old_value, new_value, reason, repaired_by = session_user AS by_me, repaired_at IS NOT NULL AS stamped
  FROM followup.repairs ORDER BY assignment_id;
SELECT id, last_contact_date FROM assignments ORDER BY id;
SELECT count(*) AS drifted FROM followup.verify();
SELECT followup.repair('again') AS repaired_again;
-- the message of the cycle the repair ended is withdrawn at the next claim
SELECT count(*) AS handed_out FROM followup.claim('c', 10);
SELECT status, cancel_reason FROM followup.outbox WHERE assignment_id = '3';

-- TRUNCATE recomputes the last contacts it affected, from what is left
TRUNCATE visits;
SELECT id, last_contact_date FROM assignments ORDER BY id;
SELECT count(*) AS drifted FROM followup.verify();
-- of one partition
TRUNCATE calls_h2;
SELECT id, last_contact_date FROM assignments WHERE id = 2;
-- of the partitioned table, together with another tracked table
INSERT INTO visits VALUES (4, '2026-06-01');
TRUNCATE calls, visits;
SELECT id, last_contact_date FROM assignments ORDER BY id;
SELECT count(*) AS drifted FROM followup.verify();
-- and tracking goes on afterwards
INSERT INTO calls VALUES (6, '2026-09-09 09:00+00');
SELECT last_contact_date FROM assignments WHERE id = 6;
-- the TRUNCATE triggers are on the tables and on every partition
SELECT tgrelid::regclass AS table_name, string_agg(tgname, ', ' ORDER BY tgname) AS triggers
  FROM pg_trigger WHERE tgname LIKE 'followup_activity_truncate%' GROUP BY tgrelid ORDER BY 1;
