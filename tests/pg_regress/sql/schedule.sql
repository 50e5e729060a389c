-- The daily schedule (README, "The scheduler"): the instants the scheduler computes with
-- followup._next_run_after, and the health view (README, "Monitoring").
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_followup CASCADE;
DROP SCHEMA IF EXISTS sched CASCADE;
CREATE EXTENSION pg_followup;
RESET client_min_messages;
CREATE SCHEMA sched;
SET search_path = sched, public;

-- Consecutive scheduled instants from `start`, as local and UTC times.
CREATE FUNCTION schedule(start timestamptz, run_at text, tz text, n int)
RETURNS TABLE (local_time timestamp, utc timestamp) LANGUAGE sql AS $$
    WITH RECURSIVE s(i, instant) AS (
        SELECT 1, followup._next_run_after(start, run_at, tz)
        UNION ALL
        SELECT i + 1, followup._next_run_after(instant, run_at, tz) FROM s WHERE i < n)
    SELECT instant AT TIME ZONE tz, instant AT TIME ZONE 'UTC' FROM s
$$;

-- Europe/Oslo springs forward on 2026-03-29 (02:00 -> 03:00): 02:30 does not
-- exist that day and lands after the gap; every local date runs exactly once.
SELECT * FROM schedule('2026-03-27 12:00+00', '02:30', 'Europe/Oslo', 4);
SELECT * FROM schedule('2026-03-27 12:00+00', '03:00', 'Europe/Oslo', 4);
-- ... and falls back on 2026-10-25 (03:00 -> 02:00): 02:30 happens twice that
-- day, the run once.
SELECT * FROM schedule('2026-10-23 12:00+00', '02:30', 'Europe/Oslo', 4);
SELECT * FROM schedule('2026-10-23 12:00+00', '01:30', 'Europe/Oslo', 4);
-- exactly one instant per local date over the whole year, for every run_at
SELECT run_at, count(*) AS instants, count(DISTINCT (local_time)::date) AS local_dates,
       min((local_time)::date) AS first_day, max((local_time)::date) AS last_day
  FROM unnest(ARRAY['00:00', '01:30', '02:00', '02:30', '02:59', '03:00', '23:59']) AS run_at,
       LATERAL schedule('2025-12-31 23:00+00', run_at, 'Europe/Oslo', 365)
 GROUP BY run_at ORDER BY run_at;
-- an instant exactly at `after` is not "after"
SELECT followup._next_run_after('2026-06-01 01:00+00', '03:00', 'Europe/Oslo') AT TIME ZONE 'UTC' AS next_utc;
SELECT followup._last_run_at_or_before('2026-06-01 01:00+00', '03:00', 'Europe/Oslo') AT TIME ZONE 'UTC' AS last_utc;

-- the health view: one row, for monitoring
SELECT * FROM followup.health;
-- Make the session's local time about noon, so "today's 03:00" is hours ago.
SELECT set_config('followup.timezone',
                  format('Etc/GMT%s', to_char(-(12 - extract(hour FROM now() AT TIME ZONE 'UTC')::int), 'FMSG99')),
                  false) IS NOT NULL AS timezone_set;
SELECT extract(hour FROM now() AT TIME ZONE current_setting('followup.timezone')) BETWEEN 11 AND 13 AS local_noon;
CREATE TABLE assignments (id int PRIMARY KEY, mentor_id int, last_contact_date date);
SELECT followup.track_assignments('assignments', 'id', 'mentor_id', 'last_contact_date');
-- registered just now, after today's 03:00: not the scheduler's day
SELECT overdue AS overdue_when_registered_after_run_at FROM followup.health;
-- registered, and the scheduler on duty, since two days; no run for today: overdue
UPDATE followup.assignment_tables SET tracked_since = now() - interval '2 days';
INSERT INTO followup.scheduler_duty (on_duty_since) VALUES (now() - interval '2 days');
SELECT last_run_status, last_success_at IS NULL AS never_succeeded, overdue FROM followup.health;
INSERT INTO followup.runs (trigger, status, as_of, started_at, finished_at)
VALUES ('schedule', 'succeeded', (now() AT TIME ZONE current_setting('followup.timezone'))::date - 1,
        now() - interval '1 day', now() - interval '1 day'),
       ('manual', 'skipped', (now() AT TIME ZONE current_setting('followup.timezone'))::date,
        now() - interval '1 hour', now() - interval '1 hour');
-- yesterday's success does not cover today; a skipped run is not a status
SELECT last_run_status, last_success_at < now() - interval '23 hours' AS last_success_yesterday, overdue FROM followup.health;
INSERT INTO followup.runs (trigger, status, as_of, started_at, finished_at)
VALUES ('schedule', 'succeeded', (now() AT TIME ZONE current_setting('followup.timezone'))::date,
        now() - interval '2 hours', now() - interval '2 hours' + interval '5 seconds');
SELECT last_run_status, overdue FROM followup.health;
-- a run in progress, alerts, the outbox backlog
INSERT INTO followup.runs (trigger, status, as_of, started_at, backend_pid)
VALUES ('manual', 'running', current_date, now() - interval '90 seconds', pg_backend_pid());
SELECT followup._raise_alert('long_run', (SELECT max(run_id) FROM followup.runs), 'test alert');
INSERT INTO followup.outbox (assignment_id, cycle_start, kind, sequence, recipient_role, recipient_id,
                             days_since_contact, status, enqueued_at)
VALUES ('1', '2026-11-01', 'reminder', 1, 'mentor', 'm', 30, 'pending', now() - interval '2 hours'),
       ('2', '2026-11-01', 'reminder', 1, 'mentor', 'm', 30, 'claimed', now() - interval '1 hour'),
       ('3', '2026-11-01', 'reminder', 1, 'mentor', 'm', 30, 'dead', now() - interval '3 hours');
INSERT INTO followup.outbox (assignment_id, cycle_start, kind, sequence, recipient_role, recipient_id,
                             days_since_contact, status, delivered_at)
VALUES ('4', '2026-11-01', 'reminder', 1, 'mentor', 'm', 30, 'delivered', now());
SELECT last_run_status, running_run_id = (SELECT max(run_id) FROM followup.runs) AS shows_running_run,
       running_for >= interval '90 seconds' AS running_for_90s, open_alerts, outbox_pending,
       date_trunc('hour', oldest_pending_age + interval '1 minute') AS oldest_pending_age, outbox_dead
  FROM followup.health;

-- Retries of a failed day (followup._next_retry_at), with a first delay of 5
-- minutes (followup.retry_delay): 5, 10, 20 minutes after
-- each failure of the scheduler's own runs, up to followup.run_retries (3
-- here), none once one succeeded; manual runs do not count.
TRUNCATE followup.runs;
CREATE FUNCTION retry(day date) RETURNS text LANGUAGE sql AS $$
    SELECT coalesce(to_char(followup._next_retry_at(day, 3, interval '5 minutes') AT TIME ZONE 'UTC', 'HH24:MI'), 'none') $$;
SELECT retry('2026-06-15') AS no_failure;
INSERT INTO followup.runs (trigger, status, as_of, started_at, finished_at)
VALUES ('manual', 'failed', '2026-06-15', '2026-06-15 02:00+00', '2026-06-15 02:01+00');
SELECT retry('2026-06-15') AS after_a_manual_failure;
INSERT INTO followup.runs (trigger, status, as_of, started_at, finished_at)
VALUES ('schedule', 'failed', '2026-06-15', '2026-06-15 03:00+00', '2026-06-15 03:02+00');
SELECT retry('2026-06-15') AS after_the_scheduled_run_failed;
INSERT INTO followup.runs (trigger, status, as_of, started_at, finished_at)
VALUES ('retry', 'failed', '2026-06-15', '2026-06-15 03:07+00', '2026-06-15 03:08+00');
SELECT retry('2026-06-15') AS after_the_first_retry_failed;
INSERT INTO followup.runs (trigger, status, as_of, started_at, finished_at)
VALUES ('retry', 'failed', '2026-06-15', '2026-06-15 03:18+00', '2026-06-15 03:19+00');
SELECT retry('2026-06-15') AS after_the_second;
INSERT INTO followup.runs (trigger, status, as_of, started_at, finished_at)
VALUES ('retry', 'failed', '2026-06-15', '2026-06-15 03:39+00', '2026-06-15 03:40+00');
SELECT retry('2026-06-15') AS retries_spent;
SELECT to_char(followup._next_retry_at('2026-06-15', 5, interval '5 minutes') AT TIME ZONE 'UTC', 'HH24:MI') AS with_five_retries;
-- followup.retry_delay sets the first delay; each next one doubles it (the
-- fourth failure, at 03:40, waits 8 x 30 s)
SELECT to_char(followup._next_retry_at('2026-06-15', 5, interval '30 seconds') AT TIME ZONE 'UTC', 'HH24:MI:SS') AS thirty_seconds_first;
INSERT INTO followup.runs (trigger, status, as_of, started_at, finished_at)
VALUES ('catch_up', 'succeeded', '2026-06-15', '2026-06-15 04:00+00', '2026-06-15 04:01+00');
SELECT to_char(followup._next_retry_at('2026-06-15', 5, interval '5 minutes') AT TIME ZONE 'UTC', 'HH24:MI') AS after_a_success;
-- One definition of a missed day (followup._missed_day): the scheduler's
-- catch-up asks it at start-up (no grace), followup.health with
-- followup.alert_after of grace. Fixed instants; run_at 03:00 in Oslo (UTC+2
-- in June: 01:00 UTC).
TRUNCATE followup.runs;
DELETE FROM followup.scheduler_duty;
CREATE FUNCTION missed(at timestamptz, grace interval DEFAULT '0') RETURNS text LANGUAGE sql AS $$
    SELECT coalesce((SELECT day::text FROM followup._missed_day(at, grace, '03:00', 'Europe/Oslo')), 'none') $$;
UPDATE followup.assignment_tables SET tracked_since = '2026-06-10 12:00+00';
SELECT missed('2026-06-15 12:00+00') AS the_scheduler_never_served_this_database;
INSERT INTO followup.scheduler_duty (on_duty_since) VALUES ('2026-06-12 09:00+00');
SELECT missed('2026-06-15 12:00+00') AS on_duty_registered_no_run,
       missed('2026-06-15 00:30+00') AS before_todays_run_at,
       missed('2026-06-15 01:10+00', '30 minutes') AS within_the_grace_of_todays,
       missed('2026-06-15 01:40+00', '30 minutes') AS past_the_grace;
SELECT missed('2026-06-12 12:00+00') AS run_at_before_the_duty_began;
UPDATE followup.assignment_tables SET tracked_since = '2026-06-15 08:00+00';
SELECT missed('2026-06-15 12:00+00') AS run_at_before_the_first_registration;
UPDATE followup.assignment_tables SET tracked_since = '2026-06-10 12:00+00';
INSERT INTO followup.runs (trigger, status, as_of, started_at, finished_at)
VALUES ('manual', 'succeeded', '2026-06-15', '2026-06-15 10:00+00', '2026-06-15 10:01+00');
SELECT missed('2026-06-15 12:00+00') AS after_a_manual_run;
INSERT INTO followup.runs (trigger, status, as_of, started_at, finished_at)
VALUES ('catch_up', 'succeeded', '2026-06-15', '2026-06-15 11:00+00', '2026-06-15 11:01+00');
SELECT missed('2026-06-15 12:00+00') AS after_the_catch_up;
-- a day missed before a later day's run succeeded is covered by it (what was
-- due stays due): within the grace of the 16th's run_at, the 15th is asked
DELETE FROM followup.runs WHERE as_of = '2026-06-15';
SELECT missed('2026-06-16 01:10+00', '30 minutes') AS the_15th_before_the_16th_ran;
INSERT INTO followup.runs (trigger, status, as_of, started_at, finished_at)
VALUES ('schedule', 'succeeded', '2026-06-16', '2026-06-16 01:00+00', '2026-06-16 01:05+00');
SELECT missed('2026-06-16 01:10+00', '30 minutes') AS the_15th_after_the_16th_ran;
UPDATE followup.scheduler_duty SET on_duty_since = NULL;
SELECT missed('2026-06-16 12:00+00') AS while_followup_enabled_is_off;

-- the settings: reloadable, a negative value refused
SELECT name, setting, unit, context FROM pg_settings WHERE name IN ('followup.run_retries', 'followup.retry_delay', 'followup.max_runtime') ORDER BY name;
SET followup.max_runtime = -1;
