-- The reminder rule (README, "Policies and the reminder rule") on hand-made assignments, as of 2026-12-01.
-- Each row of `cases` says what it exercises and what it must produce.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_followup CASCADE;
DROP SCHEMA IF EXISTS rule CASCADE;
CREATE EXTENSION pg_followup;
RESET client_min_messages;
CREATE SCHEMA rule;
SET search_path = rule, public;

CREATE TABLE assignments (
    id                int PRIMARY KEY,
    mentor_id         int,
    coordinator_id    int,
    org               text,
    status            text NOT NULL DEFAULT 'active',
    created_at        date,
    last_contact_date date,
    note              text
);
INSERT INTO followup.policies VALUES
    ('esc',  10, 5,    20,   3,    true),   -- remind at 10, every 5 days, at most 3; escalate at 20
    ('once',  7, NULL, NULL, NULL, true),   -- one reminder only
    ('off',   1, 1,    1,    NULL, false),  -- disabled organization
    ('max',   3, 1,    NULL, 2,    true);   -- daily, at most 2

-- '*' is 14 / every 7 / no escalation / no maximum
INSERT INTO assignments (id, mentor_id, coordinator_id, org, status, created_at, last_contact_date, note) VALUES
    ( 1, 101, 901, 'nowhere', 'active', NULL,               date '2026-12-01' - 13, 'default policy, 13 days: nothing yet'),
    ( 2, 102, 901, 'nowhere', 'active', NULL,               date '2026-12-01' - 14, 'default policy, 14 days: reminder 1'),
    ( 3, 103, 901, NULL,      'active', NULL,               date '2026-12-01' - 20, 'no organization -> default, 20 days: still reminder 1'),
    ( 4, 104, 901, 'nowhere', 'active', NULL,               date '2026-12-01' - 21, '21 days: reminder 2'),
    ( 5, 105, 901, 'nowhere', 'active', NULL,               date '2026-12-01' - 35, '35 days: reminder 4'),
    ( 6, 106, 901, 'nowhere', 'active', date '2026-12-01' - 15, NULL,           'never contacted, created 15 days ago: reminder 1'),
    ( 7, 107, 901, 'nowhere', 'active', NULL,               NULL,               'never contacted, no created date: nothing'),
    ( 8, 108, 901, 'nowhere', 'paused', NULL,               date '2026-12-01' - 30, 'inactive: nothing'),
    ( 9, 109, 909, 'esc',     'active', NULL,               date '2026-12-01' - 20, 'esc, 20 days: reminder 3 and escalation'),
    (10, 110, 910, 'esc',     'active', NULL,               date '2026-12-01' - 25, 'esc, 25 days: reminder 4 > max 3, escalation only'),
    (11, 111, NULL,'esc',     'active', NULL,               date '2026-12-01' - 25, 'esc, no coordinator: nothing'),
    (12, 112, 912, 'once',    'active', NULL,               date '2026-12-01' - 30, 'once, 30 days: reminder 1'),
    (13, 113, 913, 'off',     'active', NULL,               date '2026-12-01' - 60, 'disabled organization: nothing'),
    (14, NULL,914, 'nowhere', 'active', NULL,               date '2026-12-01' - 30, 'no mentor: no reminder'),
    (15, 115, 915, 'max',     'active', NULL,               date '2026-12-01' - 4,  'max, 4 days: reminder 2'),
    (16, 116, 916, 'max',     'active', NULL,               date '2026-12-01' - 5,  'max, 5 days: reminder 3 > max 2, nothing'),
    (17, 117, 917, 'nowhere', 'active', NULL,               date '2026-12-01' + 3,  'contact in the future: nothing');

SELECT followup.track_assignments('assignments', 'id', 'mentor_id', 'last_contact_date',
    created_column => 'created_at', coordinator_column => 'coordinator_id', organization_column => 'org',
    active_when => $$status = 'active'$$, payload_columns => '{org,note}');

-- preview writes nothing and shows what a run would enqueue
SELECT assignment_id, cycle_start, kind, sequence, recipient_role, recipient_id, days_since_contact,
       payload->>'note' AS note
  FROM followup.preview('2026-12-01')
 ORDER BY assignment_id::int, kind;
SELECT count(*) AS outbox_rows_after_preview FROM followup.outbox;

-- the run enqueues exactly that
SELECT status, as_of, assignments_scanned, reminders_enqueued, duplicates_suppressed, error
  FROM followup.run_now('2026-12-01');
SELECT assignment_id, cycle_start, kind, sequence, recipient_role, recipient_id, days_since_contact, status,
       payload
  FROM followup.outbox
 ORDER BY assignment_id::int, kind;
SELECT bool_and(run_id = 1) AS all_from_run_1 FROM followup.outbox;

-- the same day again: nothing new, everything counted as a duplicate
SELECT status, reminders_enqueued, duplicates_suppressed FROM followup.run_now('2026-12-01');
SELECT count(*) FROM followup.preview('2026-12-01');

-- the next day: only sequences that moved on are new (missed days are not back-filled)
SELECT assignment_id, kind, sequence, days_since_contact FROM followup.preview('2026-12-02') ORDER BY assignment_id::int, kind;
SELECT status, reminders_enqueued FROM followup.run_now('2026-12-02');

-- a new contact starts a new cycle: nothing until the policy says so, then
-- reminders start over at 1
UPDATE assignments SET last_contact_date = '2026-12-01' WHERE id = 5;
SELECT count(*) AS due_for_5_on_dec_2 FROM followup.preview('2026-12-02') WHERE assignment_id = '5';
SELECT assignment_id, cycle_start, kind, sequence FROM followup.preview('2026-12-15') WHERE assignment_id = '5';

-- policy changes apply to the next run
UPDATE followup.policies SET enabled = true WHERE organization = 'off';
SELECT assignment_id, kind, sequence FROM followup.preview('2026-12-02') WHERE assignment_id = '13' ORDER BY kind;
-- the default row cannot be deleted, only disabled
DELETE FROM followup.policies WHERE organization = '*';
UPDATE followup.policies SET enabled = false WHERE organization = '*';
SELECT count(*) AS default_policy_rows_due FROM followup.preview('2026-12-02') WHERE assignment_id IN ('2', '3', '4');

-- the log
SELECT run_id, trigger, status, as_of, assignments_scanned, reminders_enqueued, duplicates_suppressed,
       finished_at >= started_at AS finished_after_start, backend_pid <> pg_backend_pid() AS ran_in_a_worker
  FROM followup.runs ORDER BY run_id;

-- bad policies are refused by constraints
INSERT INTO followup.policies VALUES ('bad', -1, NULL, NULL, NULL, true);
INSERT INTO followup.policies VALUES ('bad', 1, 0, NULL, NULL, true);
INSERT INTO followup.policies VALUES ('bad', 1, NULL, NULL, 0, true);
