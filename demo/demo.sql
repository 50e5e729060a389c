-- The demo's SQL (run by demo/run.sh against a fresh database).
\pset footer off
\echo '==> the sample app: assignments and activities, before pg_followup'
\ir app.sql

\echo '==> CREATE EXTENSION pg_followup'
CREATE EXTENSION pg_followup;

\echo '==> registering the app''s tables'
SELECT followup.track_assignments(
    'app.assignments', 'id', 'mentor_id', 'last_contact_date',
    created_column      => 'created_at',
    coordinator_column  => 'coordinator_id',
    organization_column => 'organization',
    active_when         => $$status = 'active'$$,
    payload_columns     => '{organization,contact_id}');
SELECT followup.track_activities('app.activities', 'occurred_at', '{mentor_id,contact_id}');
SELECT relation, id_column, mentor_column, last_contact_column, active_when, payload_columns
  FROM followup.assignment_tables;
SELECT relation, occurred_column, match_columns, assignment_columns FROM followup.activity_tables;

\echo '==> loading 10,000 assignments and their activities (one bulk INSERT, tracked)'
\timing on
SELECT app.seed(10000);
\timing off
SELECT count(*) AS assignments,
       count(*) FILTER (WHERE status = 'active') AS active,
       count(last_contact_date) AS with_last_contact,
       min(last_contact_date) AS oldest_contact,
       max(last_contact_date) AS newest_contact
  FROM app.assignments;

\echo '==> logging contacts the four ways the app registers them'
-- the app's roles may only insert activities; the tracking triggers do the rest
CREATE ROLE demo_mentor;
CREATE ROLE demo_front_desk;
CREATE ROLE demo_coordinator;
CREATE ROLE demo_importer;
GRANT USAGE ON SCHEMA app TO demo_mentor, demo_front_desk, demo_coordinator, demo_importer;
GRANT INSERT ON app.activities TO demo_mentor, demo_front_desk, demo_coordinator, demo_importer;
GRANT SELECT ON app.assignments TO demo_importer;

CREATE TEMP TABLE watched AS
SELECT id, mentor_id, contact_id, last_contact_date AS before FROM app.assignments WHERE id IN (1, 2, 3, 4, 5, 6, 7, 8);
GRANT SELECT ON watched TO demo_mentor, demo_front_desk, demo_coordinator, demo_importer;

SET ROLE demo_mentor;          -- direct: the mentor logs their own call
INSERT INTO app.activities (mentor_id, contact_id, occurred_at, registration)
SELECT mentor_id, contact_id, now(), 'direct' FROM watched WHERE id = 1;
SET ROLE demo_front_desk;      -- proxy: logged on the mentor's behalf
INSERT INTO app.activities (mentor_id, contact_id, occurred_at, registration)
SELECT mentor_id, contact_id, now() - interval '1 day', 'proxy' FROM watched WHERE id = 2;
SET ROLE demo_coordinator;     -- coordinator proxy
INSERT INTO app.activities (mentor_id, contact_id, occurred_at, registration)
SELECT mentor_id, contact_id, now() - interval '2 days', 'coordinator_proxy' FROM watched WHERE id = 3;
SET ROLE demo_importer;        -- bulk: a group session with five contacts
INSERT INTO app.activities (mentor_id, contact_id, occurred_at, registration)
SELECT mentor_id, contact_id, now() - interval '3 days', 'bulk' FROM watched WHERE id BETWEEN 4 AND 8;
RESET ROLE;

SELECT w.id AS assignment, x.registration, x.registered_by, w.before AS last_contact_before,
       a.last_contact_date AS last_contact_after
  FROM watched w
  JOIN app.assignments a USING (id)
  JOIN LATERAL (SELECT registration, registered_by FROM app.activities x
                 WHERE (x.mentor_id, x.contact_id) = (w.mentor_id, w.contact_id)
                 ORDER BY x.id DESC LIMIT 1) x ON true
 ORDER BY w.id;

\echo '==> every assignment''s last contact equals its latest activity:'
SELECT count(*) AS assignments_checked,
       count(*) FILTER (WHERE a.last_contact_date IS NOT DISTINCT FROM latest.d) AS matching
  FROM app.assignments a
  LEFT JOIN LATERAL (SELECT max(occurred_at AT TIME ZONE 'UTC')::date AS d FROM app.activities x
                      WHERE (x.mentor_id, x.contact_id) = (a.mentor_id, a.contact_id)) latest ON true;

\echo '==> what the daily run would enqueue today (followup.preview writes nothing)'
SELECT kind, count(*) AS messages FROM followup.preview() GROUP BY kind ORDER BY kind;

\echo '==> the daily reminder run (followup.run_now), and a second run the same day'
\timing on
SELECT run_id, trigger, status, as_of, assignments_scanned, reminders_enqueued, duplicates_suppressed,
       finished_at - started_at AS took
  FROM followup.run_now();
SELECT run_id, trigger, status, as_of, assignments_scanned, reminders_enqueued, duplicates_suppressed,
       finished_at - started_at AS took
  FROM followup.run_now();
\timing off

\echo '==> the execution log (followup.runs)'
SELECT run_id, trigger, status, as_of, started_at::time(0) AS started, assignments_scanned,
       reminders_enqueued, duplicates_suppressed, error
  FROM followup.runs ORDER BY run_id;

\echo '==> health, as a monitoring system reads it (followup.health)'
\x on
SELECT * FROM followup.health;
\x off

\echo '==> the outbox by kind, sequence and status'
SELECT kind, recipient_role, min(sequence) AS first_seq, max(sequence) AS last_seq, status, count(*)
  FROM followup.outbox GROUP BY kind, recipient_role, status ORDER BY kind;

\echo '==> a few messages, as a notifier would claim them'
SELECT message_id, assignment_id, cycle_start, kind, sequence, recipient_role, recipient_id,
       days_since_contact, payload
  FROM followup.outbox ORDER BY days_since_contact DESC, message_id LIMIT 5;
