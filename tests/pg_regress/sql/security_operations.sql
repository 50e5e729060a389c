-- Security (README, "Roles and privileges"): nobody stops anybody else's
-- reminders, and every change names who made it.
--   9.  a role that holds the advisory lock keys of earlier versions
--       blocks no run (digests: tests/isolation/specs/security_locks.spec);
--   10. one row that active_when cannot evaluate stops neither the run, nor
--       a claim, nor explain; its values are shown nowhere;
--   11. cancels, requeues, unsnoozes and policy edits record the acting
--       role, also under SET ROLE; a retry is at most a day away.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_followup CASCADE;
DROP SCHEMA IF EXISTS ops CASCADE;
\i tests/pg_regress/helpers/roles.sql
SELECT FROM drop_roles(ARRAY['sec_nobody', 'sec_admin', 'sec_ann', 'sec_notifier']);
CREATE EXTENSION pg_followup;
RESET client_min_messages;
\i tests/pg_regress/helpers/try.sql
CREATE SCHEMA ops;
SET search_path = ops, public;

CREATE TABLE assignments (id int PRIMARY KEY, mentor_id int, last_contact_date date, weight text NOT NULL DEFAULT '1');
INSERT INTO assignments SELECT g, 100 + g, date '2026-11-01', '1' FROM generate_series(1, 6) g;
SELECT followup.track_assignments('assignments', 'id', 'mentor_id', 'last_contact_date',
                                  active_when => $$weight::int > 0$$);

CREATE ROLE sec_nobody LOGIN;
CREATE ROLE sec_admin NOLOGIN;
CREATE ROLE sec_ann LOGIN IN ROLE sec_admin NOINHERIT;
CREATE ROLE sec_notifier LOGIN;
GRANT USAGE ON SCHEMA followup TO sec_admin, sec_notifier;
GRANT EXECUTE ON FUNCTION followup.cancel(bigint[], text), followup.requeue_dead(bigint[]),
                          followup.snooze(text, date, text), followup.unsnooze(text),
                          followup.set_last_contact(text, date, text), followup.run_now(date)
   TO sec_admin;
GRANT SELECT, INSERT, UPDATE, DELETE ON followup.policies TO sec_admin;
GRANT EXECUTE ON FUNCTION followup.claim(text, int, interval), followup.fail(uuid, bigint, text, interval)
   TO sec_notifier;

-- 9. Any connected role can take an advisory lock with the keys the run
--    used to take: runs go on all the same (the run lock is a lock on the
--    extension object that no SQL function can take).
SET SESSION AUTHORIZATION sec_nobody;
SELECT pg_try_advisory_lock(7381237527265899888) AS holds_old_run_key,
       pg_try_advisory_lock(7381237527265899859) AS holds_old_scheduler_key;
RESET SESSION AUTHORIZATION;
SELECT status, reminders_enqueued FROM followup.run_now('2026-12-01');
SET SESSION AUTHORIZATION sec_nobody;
SELECT pg_advisory_unlock_all();
RESET SESSION AUTHORIZATION;

-- 10. One row active_when cannot evaluate ('x'::int fails) ...
UPDATE assignments SET weight = 'x' WHERE id = 2;
-- ... is skipped by the run, counted, and not shown
SELECT status, error, reminders_enqueued, assignments_skipped FROM followup.run_now('2026-12-08');
SELECT assignments_skipped FROM followup.health;
-- ... a message already enqueued for it is held back by the claim, with the
-- reason (no values) in last_error, and everybody else's are handed out
\c - sec_notifier
SELECT string_agg(assignment_id, ',' ORDER BY assignment_id) AS claimed FROM followup.claim('n', 100);
\c - postgres
SET search_path = ops, public;
SELECT assignment_id, status, attempts, last_error,
       visible_at > now() + interval '50 minutes' AS held_an_hour
  FROM followup.outbox WHERE assignment_id = '2' ORDER BY sequence;
-- ... explain answers for it: inactive, with the SQLSTATE
SELECT e->>'active' AS active, e->>'active_when_error' AS active_when_error, e->>'verdict' AS verdict,
       e->'due' AS due
  FROM followup.explain('2', '2026-12-08') AS e;
-- ... and the run's log names no value of the row
SELECT count(*) AS logs_naming_the_value FROM followup.runs WHERE error LIKE '%"x"%';
UPDATE assignments SET weight = '1' WHERE id = 2;

-- 11. Audit names the acting role: ann logs in as herself and acts through
--     SET ROLE sec_admin (a console's pooled connection works this way).
SELECT array_agg(message_id) AS fives FROM followup.outbox WHERE assignment_id = '5' \gset
\c - sec_ann
SET ROLE sec_admin;
SELECT session_user, current_user;
SELECT corrected_by, session_role FROM followup.set_last_contact('3', '2026-11-20', 'phone call');
SELECT snoozed_by, session_role FROM followup.snooze('4', '2099-01-01', 'on leave');
SELECT followup.unsnooze('4') AS unsnoozed;
SELECT followup.cancel(:'fives', 'duplicate') AS cancelled;
UPDATE followup.policies SET max_reminders = 3 WHERE organization = '*';
INSERT INTO followup.policies (organization, remind_after_days) VALUES ('north', 10);
DELETE FROM followup.policies WHERE organization = 'north';
RESET ROLE;
\c - postgres
SET search_path = ops, public;
-- a dead message to requeue
UPDATE followup.outbox SET status = 'dead', attempts = 10, lease_id = NULL, claimed_by = NULL
 WHERE assignment_id = '6';
\c - sec_ann
SET ROLE sec_admin;
SELECT followup.requeue_dead() AS requeued;
\c - postgres
SELECT action, acting_role, session_role, subject, reason,
       CASE WHEN action LIKE 'policy_%' THEN details - 'new' - 'old' ELSE details END AS details,
       action LIKE 'policy_%' AND details ? (CASE action WHEN 'policy_delete' THEN 'old' ELSE 'new' END) AS has_rows
  FROM followup.audit_log ORDER BY audit_id;
SELECT snoozed_by, ended_by FROM followup.snoozes;

-- A failed delivery is retried within a day at the latest.
\c - sec_notifier
SELECT try($$SELECT followup.fail(gen_random_uuid(), 1, 'provider down', retry_in => '10 years')$$);
