-- Explaining one assignment (README, "Explaining one assignment"): the jsonb
-- a support person reads to answer "why did I (not) get this?", with its
-- verdict, as of fixed dates.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_followup CASCADE;
DROP SCHEMA IF EXISTS expl CASCADE;
CREATE EXTENSION pg_followup;
RESET client_min_messages;
CREATE SCHEMA expl;
SET search_path = expl, public;
\i tests/pg_regress/helpers/try.sql

CREATE TABLE assignments (
    id                int PRIMARY KEY,
    mentor_id         int,
    coordinator_id    int,
    org               text,
    status            text NOT NULL DEFAULT 'active',
    created_at        date,
    last_contact_date date
);
CREATE TABLE visits (mentor_id int, assignment int, visited_on date);
CREATE TABLE calls (assignment int, called_at timestamptz);
INSERT INTO followup.policies VALUES ('esc', 10, 5, 20, 3, true), ('off', 1, 1, NULL, NULL, false);
INSERT INTO assignments (id, mentor_id, coordinator_id, org, status, created_at) VALUES
    (1, 101, 901, 'org', 'active', '2026-01-01'),   -- visited 20 days ago: due (reminder 1)
    (2, 102, 901, 'org', 'active', '2026-01-01'),   -- called 5 days ago: not yet due
    (3, 103, 901, 'org', 'paused', '2026-01-01'),   -- inactive
    (4, 104, 901, 'org', 'active', NULL),           -- no contact, no created date
    (5, 105, 901, 'off', 'active', '2026-01-01'),   -- policy disabled
    (6, 106, 906, 'esc', 'active', '2026-01-01'),   -- esc: reminder 4 > max 3 at 25 days, escalation due
    (7, NULL, NULL, 'org', 'active', '2026-01-01'), -- no mentor
    (8, 108, 901, 'org', 'active', '2026-01-01'),   -- corrected by an admin 15 days ago: due
    (9, 109, NULL, 'esc', 'active', '2026-01-01');  -- esc at 25 days, no coordinator: reminder 4 > max 3, no escalation
INSERT INTO visits VALUES (101, 1, '2026-06-15'::date - 20), (102, 2, '2026-06-15'::date - 40),
                          (106, 6, '2026-06-15'::date - 25), (109, 9, '2026-06-15'::date - 25);
INSERT INTO calls VALUES (2, '2026-06-10 12:00+00'), (7, '2026-06-15 09:00+00'::timestamptz - interval '30 days');
SELECT followup.track_assignments('assignments', 'id', 'mentor_id', 'last_contact_date',
    created_column => 'created_at', coordinator_column => 'coordinator_id', organization_column => 'org',
    active_when => $$status = 'active'$$);
SELECT followup.track_activities('visits', 'visited_on', '{mentor_id,assignment}', '{mentor_id,id}');
SELECT followup.track_activities('calls', 'called_at', '{assignment}', '{id}');
SELECT (followup.set_last_contact('8', '2026-05-31', 'paper log')).correction_id IS NOT NULL AS corrected;

-- one row per assignment: the verdict and the facts behind it
SELECT id, e->>'verdict' AS verdict, e->>'active' AS active, e->>'cycle_start' AS cycle_start,
       e->>'age_days' AS age, e->'due' AS due, e->>'next_due_on' AS next_due_on
  FROM assignments, LATERAL followup.explain(id::text, '2026-06-15') AS e
 ORDER BY id;

-- where the last contact came from: a table of activities, or a correction
SELECT id, e->'last_contact' AS last_contact, e->'last_contact_source' AS source
  FROM assignments, LATERAL followup.explain(id::text, '2026-06-15') AS e
 WHERE id IN (1, 2, 4, 8) ORDER BY id;

-- the policy applied, and the messages of the current cycle after a run
SELECT followup.explain('6', '2026-06-15')->'policy' AS policy;
SELECT status, reminders_enqueued FROM followup.run_now('2026-06-15');
-- (message ids follow the run's plan, visible_at is the run's clock: left out;
-- windows.sql shows visible_at and the window)
SELECT jsonb_pretty((followup.explain('1', '2026-06-15') - 'policy') #- '{messages,0,message_id}'
                                                                    #- '{messages,0,visible_at}');

-- a snoozed assignment says so, and when it is due again (the snooze is
-- written as followup.snooze would, ten days from the date of this file:
-- followup.snooze itself refuses an `until` before today, snooze.sql)
INSERT INTO followup.snoozes (assignment_id, until, reason) VALUES ('1', '2026-06-25', 'away');
UPDATE followup.outbox SET status = 'cancelled', cancelled_at = now(), cancel_reason = 'snoozed'
 WHERE assignment_id = '1' AND status = 'pending';
SELECT e->>'verdict' AS verdict, e->>'snoozed_until' AS snoozed_until, e->>'next_due_on' AS next_due_on,
       e->'due' AS due, e->'messages'->0->>'status' AS message, e->'messages'->0->>'cancel_reason' AS why
  FROM followup.explain('1', '2026-06-15') AS e;

-- explain writes nothing, and refuses what it cannot explain
SELECT count(*) AS outbox_rows FROM followup.outbox;
SELECT try($$SELECT followup.explain('99', '2026-06-15')$$);
SELECT try($$SELECT followup.explain('x', '2026-06-15')$$);
SELECT try($$SELECT followup.explain(NULL, '2026-06-15')$$);
SELECT try($$SELECT followup.explain('1', 'infinity')$$);
