-- pg_followup 0.2.0 -> 0.3.0
--
-- Run by ALTER EXTENSION pg_followup UPDATE. Every change keeps the data:
-- tables are altered in place, never dropped. tests/integration/upgrade.sh
-- checks that the result is exactly a fresh 0.3.0 install.

-- One definition of "the day's run succeeded" (only the scheduler's runs
-- count), shared by the scheduler, its catch-up and followup.health.
CREATE FUNCTION followup._day_succeeded(day date) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM followup.runs
                    WHERE as_of = day AND status = 'succeeded' AND trigger IN ('schedule', 'catch_up'))
$$;

-- The schedule settings from the library's own definitions and defaults
-- (replaces followup._setting, which repeated the defaults in SQL).
CREATE FUNCTION followup._settings() RETURNS TABLE (run_at text, timezone text, alert_after int)
LANGUAGE c STABLE
AS 'MODULE_PATHNAME', '_settings_wrapper';

CREATE OR REPLACE VIEW followup.health AS
WITH settings AS (
    SELECT s.run_at, s.timezone AS tz, s.alert_after AS alert_after_minutes FROM followup._settings() AS s
),
last_run AS (
    SELECT status FROM followup.runs WHERE status <> 'skipped' ORDER BY started_at DESC, run_id DESC LIMIT 1
),
running AS (
    SELECT run_id, now() - started_at AS running_for
      FROM followup.runs WHERE status = 'running' ORDER BY started_at LIMIT 1
),
due AS (
    SELECT followup._last_run_at_or_before(now(), s.run_at, s.tz) AS instant, s.alert_after_minutes, s.tz
      FROM settings s
),
queue AS (
    SELECT count(*) FILTER (WHERE status IN ('pending', 'claimed')) AS pending,
           now() - min(enqueued_at) FILTER (WHERE status IN ('pending', 'claimed')) AS oldest_pending_age,
           count(*) FILTER (WHERE status = 'dead') AS dead
      FROM followup.outbox WHERE delivered_at IS NULL
)
SELECT (SELECT status FROM last_run) AS last_run_status,
       (SELECT max(finished_at) FROM followup.runs WHERE status = 'succeeded') AS last_success_at,
       (SELECT run_id FROM running) AS running_run_id,
       (SELECT running_for FROM running) AS running_for,
       -- the last scheduled run (plus alert_after of grace) has passed without
       -- a successful run for its day, and an assignments table is registered
       (now() > due.instant + make_interval(mins => due.alert_after_minutes)
        AND EXISTS (SELECT 1 FROM followup.assignment_tables)
        AND NOT followup._day_succeeded((due.instant AT TIME ZONE due.tz)::date)) AS overdue,
       (SELECT count(*) FROM followup.alerts WHERE resolved_at IS NULL) AS open_alerts,
       queue.pending AS outbox_pending,
       queue.oldest_pending_age,
       queue.dead AS outbox_dead
  FROM due, queue;
COMMENT ON VIEW followup.health IS
    'One row: last run status, last success, the running run, whether the daily run is overdue, open alerts, outbox backlog.';

DROP FUNCTION followup._setting(text, text);

-- preview never pays JIT compilation (as the run does not).
ALTER FUNCTION followup.preview(date) SET jit = off;
