-- Snoozing an assignment (README, "Snoozing an assignment"): while a snooze is
-- open no run enqueues for the assignment and its pending messages are
-- withdrawn; after `until` the rule applies again; audited in followup.snoozes.
-- `until` may not be before today, so every date here is computed from one
-- date, today (followup.timezone), and only their relations are printed.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_followup CASCADE;
DROP SCHEMA IF EXISTS snz CASCADE;
CREATE EXTENSION pg_followup;
RESET client_min_messages;
CREATE SCHEMA snz;
SET search_path = snz, public;
\i tests/pg_regress/helpers/try.sql

SELECT followup._today() AS today, followup._today() + 10 AS until, followup._today() - 20 AS contacted \gset
CREATE TABLE assignments (id int PRIMARY KEY, mentor_id int, last_contact_date date);
-- last contacted 20 days before today: due today
INSERT INTO assignments VALUES (1, 101, :'contacted'), (2, 102, :'contacted'), (3, 103, :'contacted');
SELECT followup.track_assignments('assignments', 'id', 'mentor_id', 'last_contact_date');
SELECT status, reminders_enqueued FROM followup.run_now(:'today');

-- bad input is refused and changes nothing
SELECT try(format($$SELECT followup.snooze('99', %L, 'x')$$, :'today'));
SELECT try(format($$SELECT followup.snooze('x', %L, 'x')$$, :'today'));
SELECT try(format($$SELECT followup.snooze(NULL, %L, 'x')$$, :'today'));
SELECT try($$SELECT followup.snooze('1', NULL, 'x')$$);
SELECT try(format($$SELECT followup.snooze('1', %L, NULL)$$, :'today'));
SELECT try(format($$SELECT followup.snooze('1', %L, '  ')$$, :'today'));
SELECT regexp_replace(try(format($$SELECT followup.snooze('1', %L, 'too late')$$, :'today'::date - 1)),
                      '\d{4}-\d{2}-\d{2}', 'YYYY-MM-DD', 'g') AS refused;
SELECT try($$SELECT followup.unsnooze(NULL)$$);
SELECT try($$SELECT followup.unsnooze('99')$$);
SELECT count(*) AS snoozes, count(*) FILTER (WHERE status = 'cancelled') AS withdrawn
  FROM followup.snoozes, followup.outbox;

-- snooze 1 until ten days from today: its pending message is withdrawn at once
SELECT snooze_id, assignment_id, until = :'until'::date AS until_as_given, reason, snoozed_by = session_user AS by_me,
       snoozed_at IS NOT NULL AS stamped, ended_at
  FROM followup.snooze('1', :'until', 'on holiday');
SELECT assignment_id, status, cancel_reason FROM followup.outbox ORDER BY assignment_id;

-- a claim withdraws a snoozed assignment's messages too (2 is snoozed after it
-- was claimed: a claimed message stays with its consumer until its lease ends;
-- the others wait a moment, so that this claim takes 2's whatever the order
-- the run enqueued them in)
UPDATE followup.outbox SET visible_at = now() + interval '1 hour' WHERE assignment_id <> '2';
SELECT assignment_id FROM followup.claim('c', 1);
UPDATE followup.outbox SET visible_at = now() WHERE assignment_id <> '2' AND status = 'pending';
SELECT (followup.snooze('2', :'until', 'moved away for a while')).snooze_id IS NOT NULL AS snoozed;
SELECT assignment_id, status FROM followup.outbox WHERE assignment_id = '2';
UPDATE followup.outbox SET visible_at = now() - interval '1 second' WHERE assignment_id = '2';
SELECT count(*) AS handed_out FROM followup.claim('c', 10);
SELECT assignment_id, status, cancel_reason FROM followup.outbox ORDER BY assignment_id;

-- while snoozed no run or preview wants it; from the day after `until` it is due again
SELECT assignment_id FROM followup.preview(:'until') ORDER BY 1;
SELECT assignment_id FROM followup.preview(:'until'::date + 1) ORDER BY 1;
-- today 3's reminder is already in the outbox, and 1 and 2 are snoozed: nothing more
SELECT assignment_id, kind FROM followup.preview(:'today') ORDER BY 1;

-- unsnooze ends the open snoozes (and says how many); then runs want it again
SELECT followup.unsnooze('1') AS ended;
SELECT followup.unsnooze('1') AS ended_again;
SELECT assignment_id, ended_at IS NOT NULL AS ended FROM followup.snoozes ORDER BY snooze_id;
SELECT assignment_id FROM followup.preview(:'until') ORDER BY 1;

-- the snoozes table is dumped with the extension's configuration
SELECT 'followup.snoozes'::regclass = ANY (extconfig) AS dumped FROM pg_extension WHERE extname = 'pg_followup';
