-- Partitioned activity tables (README, "Registering the app's tables"): rows written through the parent or
-- straight into a partition are tracked, including partitions created or
-- attached after registration, at any depth. Detached partitions lose the
-- triggers.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_followup CASCADE;
DROP SCHEMA IF EXISTS part CASCADE;
CREATE EXTENSION pg_followup;
RESET client_min_messages;
CREATE SCHEMA part;
SET search_path = part, public;

CREATE TABLE assignments (id int PRIMARY KEY, mentor_id int, last_contact_date date);
INSERT INTO assignments SELECT g, 1, NULL FROM generate_series(1, 10) g;
SELECT followup.track_assignments('assignments', 'id', 'mentor_id', 'last_contact_date');

CREATE TABLE contacts (assignment_id int NOT NULL, contacted_on date NOT NULL, channel text)
    PARTITION BY RANGE (contacted_on);
CREATE INDEX ON contacts (assignment_id, contacted_on);
CREATE TABLE contacts_2025 PARTITION OF contacts FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE contacts_2026h1 PARTITION OF contacts FOR VALUES FROM ('2026-01-01') TO ('2026-07-01');
SELECT followup.track_activities('contacts', 'contacted_on', '{assignment_id}', '{id}');

CREATE VIEW lc AS SELECT id, last_contact_date FROM assignments;
CREATE VIEW drift AS
SELECT a.id, a.last_contact_date, (SELECT max(contacted_on) FROM contacts c WHERE c.assignment_id = a.id) AS latest
  FROM assignments a
 WHERE a.last_contact_date IS DISTINCT FROM (SELECT max(contacted_on) FROM contacts c WHERE c.assignment_id = a.id);
-- Which tables carry which tracking triggers, and how they are enabled.
CREATE VIEW tracking_triggers AS
SELECT tgrelid::regclass AS "table", string_agg(tgname || ':' || tgenabled::text, ' ' ORDER BY tgname) AS triggers
  FROM pg_trigger WHERE tgname LIKE 'followup_activity_%'
 GROUP BY tgrelid ORDER BY tgrelid::regclass::text;

SELECT * FROM tracking_triggers;

-- through the parent
INSERT INTO contacts VALUES (1, '2025-05-01', 'call'), (2, '2026-02-01', 'visit');
SELECT * FROM lc WHERE id IN (1, 2) ORDER BY id;
-- straight into a partition
INSERT INTO contacts_2026h1 VALUES (1, '2026-03-01', 'call');
SELECT * FROM lc WHERE id = 1;
COPY contacts_2025 FROM stdin;
3	2025-12-30	sms
\.
SELECT * FROM lc WHERE id = 3;
-- DELETE and UPDATE straight in a partition
DELETE FROM contacts_2026h1 WHERE assignment_id = 1;
SELECT * FROM lc WHERE id = 1;
UPDATE contacts_2025 SET contacted_on = '2025-04-01' WHERE assignment_id = 1;
SELECT * FROM lc WHERE id = 1;
-- an UPDATE through the parent that moves a row to another partition
UPDATE contacts SET contacted_on = '2026-06-30' WHERE assignment_id = 3;
SELECT * FROM lc WHERE id = 3;

-- a partition created after registration
CREATE TABLE contacts_2026h2 PARTITION OF contacts FOR VALUES FROM ('2026-07-01') TO ('2027-01-01');
INSERT INTO contacts_2026h2 VALUES (4, '2026-11-11', 'call');
SELECT * FROM lc WHERE id = 4;

-- a table attached later
CREATE TABLE contacts_2027 (LIKE contacts);
INSERT INTO contacts_2027 VALUES (5, '2027-01-15', 'visit');  -- before attaching
-- attaching makes its rows activities: assignment 5 is back-filled
ALTER TABLE contacts ATTACH PARTITION contacts_2027 FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');
INSERT INTO contacts_2027 VALUES (6, '2027-02-01', 'visit');
SELECT * FROM lc WHERE id IN (5, 6) ORDER BY id;

-- a sub-partitioned partition created later: its own partitions are tracked too
CREATE TABLE contacts_2028 PARTITION OF contacts FOR VALUES FROM ('2028-01-01') TO ('2029-01-01')
    PARTITION BY LIST (channel);
CREATE TABLE contacts_2028_call PARTITION OF contacts_2028 FOR VALUES IN ('call');
CREATE TABLE contacts_2028_other PARTITION OF contacts_2028 DEFAULT;
INSERT INTO contacts_2028_call VALUES (7, '2028-03-01', 'call');
INSERT INTO contacts_2028 VALUES (8, '2028-04-01', 'visit');
SELECT * FROM lc WHERE id IN (7, 8) ORDER BY id;

SELECT * FROM tracking_triggers;
SELECT * FROM drift;

-- a detached partition is no longer tracked: later writes to it are not
-- activities (dates already derived from its rows stay, as with untrack)
ALTER TABLE contacts DETACH PARTITION contacts_2027;
SELECT * FROM tracking_triggers WHERE "table"::text = 'contacts_2027';
INSERT INTO contacts_2027 VALUES (9, '2027-03-01', 'visit');
SELECT * FROM lc WHERE id = 9;

-- untracking removes the triggers from every partition
SELECT followup.untrack_activities('contacts');
SELECT count(*) AS tracking_triggers_left FROM tracking_triggers;
