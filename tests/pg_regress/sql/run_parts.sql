-- A run over a big assignments table split across helper workers
-- (followup.run_workers, README "Running"): it enqueues exactly the messages
-- the one statement enqueues, in one transaction per part, logs the same
-- tallies under one run id, and when a part fails the run does the whole
-- table itself.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_followup CASCADE;
DROP SCHEMA IF EXISTS parts CASCADE;
CREATE EXTENSION pg_followup;
RESET client_min_messages;
CREATE SCHEMA parts;
SET search_path = parts, public;

-- 24,000 assignments on about 2,000 pages (a wide note, half-full pages):
-- big enough for two parts of at least 500 pages each
CREATE TABLE assignments (
    id                int PRIMARY KEY,
    mentor_id         int NOT NULL,
    coordinator_id    int,
    org               text,
    status            text NOT NULL,
    created_at        date NOT NULL,
    last_contact_date date,
    score             text NOT NULL,
    note              text
) WITH (fillfactor = 50);
INSERT INTO assignments
SELECT g, 1000 + g % 500, CASE WHEN g % 3 = 0 THEN 900 + g % 7 END, 'org-' || g % 5,
       CASE WHEN g % 10 = 0 THEN 'closed' ELSE 'active' END, date '2026-04-01',
       CASE WHEN g % 7 <> 0 THEN date '2026-06-15' - g % 60 END, '1', repeat('x', 300)
  FROM generate_series(1, 24000) AS g;
ANALYZE assignments;  -- a run counts the pages as of the last VACUUM or ANALYZE
SELECT relpages >= 1000 AS two_parts_of_500_pages FROM pg_class WHERE oid = 'assignments'::regclass;
SELECT followup.track_assignments('parts.assignments', 'id', 'mentor_id', 'last_contact_date',
           created_column => 'created_at', coordinator_column => 'coordinator_id', organization_column => 'org',
           active_when => $$status = 'active' AND score::int > 0$$);
INSERT INTO followup.policies (organization, remind_after_days, repeat_every_days, escalate_after_days)
VALUES ('org-1', 10, 5, 21);

CREATE TEMP TABLE messages_of_one_statement AS
SELECT assignment_id, cycle_start, kind, sequence, recipient_role, recipient_id, days_since_contact, payload,
       organization
  FROM followup.outbox WHERE false;
CREATE FUNCTION outbox_differs() RETURNS bigint LANGUAGE sql AS $$
    SELECT count(*) FROM (
        (SELECT assignment_id, cycle_start, kind, sequence, recipient_role, recipient_id, days_since_contact,
                payload, organization FROM followup.outbox
         EXCEPT ALL SELECT * FROM messages_of_one_statement)
        UNION ALL
        (SELECT * FROM messages_of_one_statement
         EXCEPT ALL SELECT assignment_id, cycle_start, kind, sequence, recipient_role, recipient_id,
                           days_since_contact, payload, organization FROM followup.outbox)) AS d
$$;

-- the one statement
SET followup.run_workers = 1;
SELECT status, assignments_scanned, reminders_enqueued, duplicates_suppressed, assignments_skipped
  FROM followup.run_now('2026-06-15');
INSERT INTO messages_of_one_statement
SELECT assignment_id, cycle_start, kind, sequence, recipient_role, recipient_id, days_since_contact, payload,
       organization FROM followup.outbox;
SELECT count(DISTINCT xmin::text) AS transactions, count(*) FILTER (WHERE kind = 'escalation') > 0 AS escalations
  FROM followup.outbox;

-- two parts: the same messages and tallies, two transactions, no parts left behind
TRUNCATE followup.outbox, followup.outbox_leases;
SET followup.run_workers = 2;
SELECT status, assignments_scanned, reminders_enqueued, duplicates_suppressed, assignments_skipped
  FROM followup.run_now('2026-06-15');
SELECT count(DISTINCT xmin::text) AS transactions, outbox_differs() AS messages_not_the_same FROM followup.outbox;
SELECT (SELECT count(*) FROM followup._run_parts) AS parts_left,
       (SELECT count(DISTINCT (assignments_scanned, reminders_enqueued, duplicates_suppressed))
          FROM followup.runs WHERE status = 'succeeded') AS distinct_tallies;

-- a same-day rerun in two parts: nothing new, every due message a duplicate
SELECT status, assignments_scanned, reminders_enqueued,
       duplicates_suppressed = (SELECT count(*) FROM messages_of_one_statement) AS all_duplicates
  FROM followup.run_now('2026-06-15');

-- a row of the second part that active_when cannot evaluate: that part
-- fails and is rolled back, the run does the whole table itself, leaves
-- the row out and counts it; every other message is enqueued once
TRUNCATE followup.outbox, followup.outbox_leases;
UPDATE assignments SET score = 'not a number' WHERE id = 23991;
SELECT status, assignments_scanned, reminders_enqueued, duplicates_suppressed, assignments_skipped
  FROM followup.run_now('2026-06-15');
DELETE FROM messages_of_one_statement WHERE assignment_id = '23991';
SELECT count(*) AS messages_of_23991 FROM followup.outbox WHERE assignment_id = '23991';
SELECT outbox_differs() AS messages_not_the_same, (SELECT count(*) FROM followup._run_parts) AS parts_left;
SELECT count(DISTINCT run_id) AS runs_in_the_outbox FROM followup.outbox;

-- bad values
SET followup.run_workers = 0;
SET followup.run_workers = 9;
SHOW followup.run_workers;

SET client_min_messages = warning;
DROP SCHEMA parts CASCADE;
DROP EXTENSION pg_followup CASCADE;
