-- The daily schedule, retention and the health view (README, "The scheduler"
-- and "Monitoring"). The scheduler background worker (src/scheduler.rs) calls
-- these; monitoring reads followup.health.

-- The instant of the run for local date `day`: `run_at` wall-clock time in
-- `tz`. On a spring-forward day a run_at inside the gap lands just after it;
-- on a fall-back day an ambiguous run_at is one of the two instants. Either
-- way each local date has exactly one instant, so the worker runs once a day.
CREATE FUNCTION followup._run_instant(day date, run_at text, tz text) RETURNS timestamptz
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT followup._local_instant(day, run_at::time, tz) $$;

-- The first scheduled instant strictly after `after`.
CREATE FUNCTION followup._next_run_after(after timestamptz, run_at text, tz text) RETURNS timestamptz
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN followup._run_instant(d, run_at, tz) > after
                THEN followup._run_instant(d, run_at, tz)
                ELSE followup._run_instant(d + 1, run_at, tz) END
      FROM (SELECT (after AT TIME ZONE tz)::date AS d) AS local_day
$$;

-- The last scheduled instant at or before `at`.
CREATE FUNCTION followup._last_run_at_or_before(at timestamptz, run_at text, tz text) RETURNS timestamptz
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN followup._run_instant(d, run_at, tz) <= at
                THEN followup._run_instant(d, run_at, tz)
                ELSE followup._run_instant(d - 1, run_at, tz) END
      FROM (SELECT (at AT TIME ZONE tz)::date AS d) AS local_day
$$;

-- Did the daily run for local date `day`, or for a later day, succeed? A
-- later day's run covers an earlier day: a reminder that was due stays due,
-- so it enqueues what the missed day's would have. Only the scheduler's own
-- runs count (schedule, catch_up, retry): a manual run_now is extra and never
-- stands in for the day's run (README, "The scheduler"). The scheduler, its
-- catch-up and followup.health all ask this one function.
CREATE FUNCTION followup._day_succeeded(day date) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM followup.runs
                    WHERE as_of >= day AND status = 'succeeded' AND trigger <> 'manual')
$$;

-- The one definition of "the day's scheduled run was missed", for the
-- scheduler's catch-up and missed_schedule alert (grace 0, at start-up) and
-- for followup.health's overdue (grace followup.alert_after): the day of the
-- last scheduled instant at or before `at - grace` (run_at in tz), if the
-- scheduler was on duty then (followup.scheduler_duty), an assignments table
-- had been registered before it, and no run of the scheduler's for the day
-- succeeded. A day before the first registration, while followup.enabled
-- was off, or before followup.database named this database, was never the
-- scheduler's (README, "The scheduler"). Returns the day and its scheduled
-- instant, or no row. SECURITY DEFINER (read-only): followup.health calls
-- it for whoever may read health, who need not read the registrations.
CREATE FUNCTION followup._missed_day(at timestamptz, grace interval, run_at text, tz text)
RETURNS TABLE (day date, scheduled_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
    SELECT (last.instant AT TIME ZONE tz)::date, last.instant
      FROM (SELECT followup._last_run_at_or_before(at - grace, run_at, tz) AS instant) AS last
     WHERE EXISTS (SELECT 1 FROM followup.scheduler_duty AS d WHERE d.on_duty_since <= last.instant)
       AND EXISTS (SELECT 1 FROM followup.assignment_tables AS t WHERE t.tracked_since < last.instant)
       AND NOT followup._day_succeeded((last.instant AT TIME ZONE tz)::date)
$$;

-- When the scheduler runs the day `day` again after a failure: first_delay
-- (followup.retry_delay, 5 minutes), then twice, four times as long, ... after the latest failed run of its own for the day, while it has
-- failed at most `retries` times (the day's run and its retries) and none of
-- its runs succeeded; NULL when no retry is due.
CREATE FUNCTION followup._next_retry_at(day date, retries int, first_delay interval) RETURNS timestamptz
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN f.failures BETWEEN 1 AND retries AND NOT followup._day_succeeded(day)
                THEN f.last_failure + first_delay * (2 ^ (f.failures - 1)) END
      FROM (SELECT count(*) AS failures, max(finished_at) AS last_failure
              FROM followup.runs
             WHERE as_of = day AND status = 'failed' AND trigger <> 'manual') AS f
$$;

-- followup.run_at (HH:MM), followup.timezone, followup.alert_after (minutes),
-- followup.run_retries and followup.max_runtime (minutes) as the scheduler sees them: the library's own definitions and
-- defaults (src/gucs.rs). Calling it loads the library.
CREATE FUNCTION followup._settings()
RETURNS TABLE (run_at text, timezone text, alert_after int, run_retries int, max_runtime int, retry_delay int)
LANGUAGE c STABLE
AS 'MODULE_PATHNAME', '_settings_wrapper';

-- Deletes up to `batch` old rows from each history table; returns how many.
-- Kept: runs still running, undelivered messages (cancelled ones go like
-- delivered ones), open alerts, and the newest
-- message of every assignment's current cycle and kind: a once-only reminder
-- or an escalation stays due for its whole cycle, and only its outbox row
-- stops the run from sending it again.
CREATE FUNCTION followup._prune(retention_days int, batch int) RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    horizon timestamptz := now() - make_interval(days => retention_days);
    removed bigint := 0;
    n bigint;
BEGIN
    DELETE FROM followup.runs
     WHERE run_id IN (SELECT run_id FROM followup.runs
                       WHERE status <> 'running' AND coalesce(finished_at, started_at) < horizon
                       LIMIT batch);
    GET DIAGNOSTICS n = ROW_COUNT;
    removed := removed + n;

    DELETE FROM followup.alerts
     WHERE alert_id IN (SELECT alert_id FROM followup.alerts
                         WHERE resolved_at IS NOT NULL AND resolved_at < horizon
                         LIMIT batch);
    GET DIAGNOSTICS n = ROW_COUNT;
    removed := removed + n;

    DELETE FROM followup.outbox
     WHERE message_id IN (
            SELECT o.message_id
              FROM followup.outbox AS o
             WHERE o.status IN ('delivered', 'dead', 'cancelled')
               AND coalesce(o.delivered_at, o.cancelled_at, o.enqueued_at) < horizon
               AND EXISTS (SELECT 1 FROM followup.outbox AS newer
                            WHERE newer.assignment_id = o.assignment_id
                              AND (newer.cycle_start > o.cycle_start
                                   OR (newer.cycle_start = o.cycle_start AND newer.kind = o.kind
                                       AND newer.sequence > o.sequence)))
             LIMIT batch);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN removed + n;
END
$$;

-- Marks alerts resolved once what they warned about is over: a run's long_run
-- alert when it finishes, and failures, abandoned runs and missed schedules
-- once a later run succeeds.
CREATE FUNCTION followup._resolve_alerts() RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n bigint;
BEGIN
    UPDATE followup.alerts AS a
       SET resolved_at = now()
     WHERE a.resolved_at IS NULL
       AND ((a.kind = 'long_run'
             AND EXISTS (SELECT 1 FROM followup.runs r WHERE r.run_id = a.run_id AND r.status <> 'running'))
         OR (a.kind IN ('run_failed', 'run_abandoned', 'missed_schedule')
             AND EXISTS (SELECT 1 FROM followup.runs r
                          WHERE r.status = 'succeeded' AND r.started_at > a.raised_at)));
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- One row for monitoring (postgres_exporter custom queries, check scripts).
CREATE VIEW followup.health AS
WITH settings AS (
    SELECT s.run_at, s.timezone AS tz, s.alert_after AS alert_after_minutes, s.run_retries, s.max_runtime,
           s.retry_delay
      FROM followup._settings() AS s
),
last_run AS (
    SELECT status FROM followup.runs WHERE status <> 'skipped' ORDER BY started_at DESC, run_id DESC LIMIT 1
),
running AS (
    SELECT run_id, now() - started_at AS running_for
      FROM followup.runs WHERE status = 'running' ORDER BY started_at LIMIT 1
),
due AS (
    SELECT followup._last_run_at_or_before(now(), s.run_at, s.tz) AS instant, s.alert_after_minutes, s.tz,
           s.run_retries, s.max_runtime, s.retry_delay,
           EXISTS (SELECT 1 FROM followup._missed_day(now(), make_interval(mins => s.alert_after_minutes),
                                                      s.run_at, s.tz)) AS missed
      FROM settings s
),
queue AS (
    SELECT count(*) FILTER (WHERE status IN ('pending', 'claimed')) AS pending,
           now() - min(enqueued_at) FILTER (WHERE status IN ('pending', 'claimed')) AS oldest_pending_age,
           count(*) FILTER (WHERE status = 'dead') AS dead
      FROM followup.outbox WHERE delivered_at IS NULL AND cancelled_at IS NULL
)
SELECT (SELECT status FROM last_run) AS last_run_status,
       (SELECT max(finished_at) FROM followup.runs WHERE status = 'succeeded') AS last_success_at,
       (SELECT run_id FROM running) AS running_run_id,
       (SELECT running_for FROM running) AS running_for,
       -- the scheduler missed a day (followup._missed_day, with alert_after
       -- of grace for a run in progress): the definition its catch-up uses
       due.missed AS overdue,
       (SELECT count(*) FROM followup.alerts WHERE resolved_at IS NULL) AS open_alerts,
       queue.pending AS outbox_pending,
       queue.oldest_pending_age,
       queue.dead AS outbox_dead,
       (SELECT count(*) FROM followup.outbox
         WHERE cancelled_at > now() - interval '24 hours') AS outbox_cancelled_24h,
       -- the scheduler's next retry of the last scheduled day's failed run
       followup._next_retry_at((due.instant AT TIME ZONE due.tz)::date, due.run_retries,
                               make_interval(secs => due.retry_delay)) AS next_retry_at,
       due.run_retries,
       nullif(due.max_runtime, 0) AS max_runtime_minutes,
       -- assignments the last successful run left out because it could not
       -- evaluate them (README, "Running")
       (SELECT r.assignments_skipped FROM followup.runs AS r
         WHERE r.status = 'succeeded' ORDER BY r.run_id DESC LIMIT 1) AS assignments_skipped
  FROM due, queue;
COMMENT ON VIEW followup.health IS
    'One row: last run status, last success, the running run, whether the daily run is overdue, open alerts, outbox backlog, withdrawn messages.';
