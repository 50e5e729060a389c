-- Runs and the execution log (README, "Running"): failed, skipped and abandoned runs are
-- logged as such, raise alerts, release the lock and never block later runs.
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
-- valid, deterministic, but divides by zero on row 3 when a run evaluates it
SELECT followup.track_assignments('assignments', 'id', 'mentor_id', 'last_contact_date',
                                  active_when => '10 / weight > 0');

-- a failed run: logged with the error, nothing enqueued, alert raised, lock released
SELECT run_id, status, error, assignments_scanned, reminders_enqueued FROM followup.run_now('2026-12-01');
SELECT count(*) AS outbox_rows FROM followup.outbox;
SELECT kind, run_id, message, resolved_at IS NULL AS open FROM followup.alerts ORDER BY alert_id;
SELECT count(*) AS run_lock_holders FROM pg_locks WHERE locktype = 'advisory' AND objid = 1870099824;

-- fixed, the next run succeeds
UPDATE assignments SET weight = 2 WHERE id = 3;
SELECT run_id, status, error, assignments_scanned, reminders_enqueued FROM followup.run_now('2026-12-01');

-- while another session holds the lock, a run is skipped at once, naming the holder
SELECT pg_advisory_lock(7381237527265899888);
SELECT status, error = format('another run holds the lock (pid %s)', pg_backend_pid()) AS names_holder,
       finished_at IS NOT NULL AS finished
  FROM followup.run_now('2026-12-02');
SELECT pg_advisory_unlock(7381237527265899888);

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
