-- Runs and the execution log (README, "Running"): failed and abandoned runs are
-- logged as such, raise alerts, release the lock and never block later runs;
-- rows a run cannot evaluate are skipped and counted. (Skipped runs, two at
-- once: tests/isolation/specs/run_lock.spec.)
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_followup CASCADE;
DROP SCHEMA IF EXISTS runlog CASCADE;
CREATE EXTENSION pg_followup;
RESET client_min_messages;
CREATE SCHEMA runlog;
SET search_path = runlog, public;

-- before anything is registered a run fails and says why
SELECT status, assignments_scanned, error FROM followup.run_now('2026-12-01');

CREATE TABLE assignments (id int PRIMARY KEY, mentor_id int, last_contact_date date, weight int NOT NULL DEFAULT 1);
INSERT INTO assignments SELECT g, 100 + g, date '2026-11-01', 1 FROM generate_series(1, 5) g;
UPDATE assignments SET weight = 0 WHERE id = 3;
-- valid, deterministic, but divides by zero on row 3 when a run evaluates
-- it: registration warns (runs skip such rows)
SELECT followup.track_assignments('assignments', 'id', 'mentor_id', 'last_contact_date',
                                  active_when => '10 / weight > 0');

-- one row the run cannot evaluate stops nobody else's reminders: it is
-- skipped and counted (never shown), the others are enqueued
SELECT run_id, status, error, assignments_scanned, reminders_enqueued, assignments_skipped
  FROM followup.run_now('2026-12-01');
SELECT string_agg(assignment_id, ',' ORDER BY assignment_id) AS enqueued_for FROM followup.outbox;
SELECT assignments_skipped FROM followup.health;
-- preview leaves it out the same way
SELECT string_agg(assignment_id || '#' || sequence, ',' ORDER BY assignment_id) AS previewed FROM followup.preview('2026-12-06');

-- fixed, the next run enqueues it too
UPDATE assignments SET weight = 2 WHERE id = 3;
SELECT run_id, status, error, assignments_scanned, reminders_enqueued, assignments_skipped
  FROM followup.run_now('2026-12-01');

-- a failed run: logged with the error, nothing enqueued, alert raised, lock
-- released. (A setting the run's own session does not have: not a row's
-- fault, so the whole run fails.)
SET runlog.gate = 'on';
SELECT followup.track_assignments('assignments', 'id', 'mentor_id', 'last_contact_date',
                                  active_when => $$pg_catalog.current_setting('runlog.gate')::boolean$$);
RESET runlog.gate;
SELECT run_id, status, error, assignments_scanned, reminders_enqueued FROM followup.run_now('2026-12-02');
SELECT count(*) AS enqueued_by_the_failed_run FROM followup.outbox WHERE run_id = 4;
SELECT kind, run_id, message, resolved_at IS NULL AS open FROM followup.alerts ORDER BY alert_id;
SELECT count(*) AS run_lock_holders FROM pg_locks
 WHERE locktype = 'object' AND classid = 'pg_extension'::regclass AND objsubid = 1;
SELECT followup.track_assignments('assignments', 'id', 'mentor_id', 'last_contact_date');

-- a run whose process died is marked abandoned by the next run, with an alert
INSERT INTO followup.runs (trigger, status, as_of, backend_pid) VALUES ('schedule', 'running', '2026-11-30', 2147483647);
SELECT status FROM followup.run_now('2026-12-02');
SELECT run_id, trigger, status, error FROM followup.runs WHERE as_of = '2026-11-30';
SELECT kind, message FROM followup.alerts WHERE kind = 'run_abandoned';

SELECT run_id, trigger, status, as_of FROM followup.runs ORDER BY run_id;

-- run_now commits in a worker: it refuses snapshots that could not see that
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT status FROM followup.run_now('2026-12-03');
ROLLBACK;
