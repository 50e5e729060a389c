#!/usr/bin/env bash
# The scheduler background worker (README, "The scheduler"), on a private cluster of its
# own with pg_followup preloaded:
#   - a missing followup.database is reported once and waited for (no crash loop),
#     then a missing extension likewise;
#   - bad settings are refused;
#   - idle, the worker sleeps on its latch and uses no CPU;
#   - the daily run fires at followup.run_at; while it is blocked a long_run
#     alert is raised; killed, it is marked abandoned with an alert;
#   - the day is not run twice; SIGHUP applies a new schedule;
#   - after downtime over the scheduled time: missed_schedule and a catch-up run.
source "$(dirname "$0")/../lib/integration.sh"
trap 'cluster_stop sched immediate' EXIT

# The scheduler works on the real clock, so this test does too, with every
# expectation computed from it. followup.timezone is a zone where it is about
# noon now: nothing here crosses local midnight or meets the 03:00 default
# run_at, whatever the hour in UTC.
NOON_TZ=$(noon_tz)
cluster_init sched "followup.database = 'followup_sched'" "followup.alert_after = 1" "followup.timezone = '$NOON_TZ'"
cluster_start sched
export PGHOST=$(cluster_host sched) PGPORT=$(cluster_port sched)
LOG="$(cluster_dir sched)/server.log"
DB=followup_sched

# HH:MM of the local time (followup.timezone) $1 seconds from now
local_hhmm() { q "SELECT to_char((now() + make_interval(secs => $1)) AT TIME ZONE current_setting('followup.timezone'), 'HH24:MI')" -d postgres; }
scheduler_pid() { psql -X -At -d postgres -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_followup scheduler'"; }

# --- a database that does not exist yet -------------------------------------
sleep 12   # longer than the launcher's restart time: a crash loop would show
expect "the missing database is reported once" \
    "$(grep -c 'database "followup_sched" (followup.database) does not exist' "$LOG")" "1"
expect "and the launcher does not crash-loop" "$(grep -c 'launcher" (PID [0-9]*) exited' "$LOG")" "0"
createdb "$DB"
wait_for_log 'the extension is not installed in database "followup_sched"' 45 || true
expect "once the database exists, the missing extension is reported" \
    "$(grep -c 'the extension is not installed in database "followup_sched"' "$LOG")" "1"

psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -c "CREATE EXTENSION pg_followup" -f "$REPO/demo/app.sql" >/dev/null
seed 400
register_app
wait_for_log 'pg_followup scheduler started in database "followup_sched"' 45 || true
expect "the scheduler starts once the extension exists" \
    "$(grep -c 'pg_followup scheduler started in database "followup_sched"' "$LOG")" "1"
expect "exactly one scheduler" \
    "$(psql -X -At -d postgres -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_followup scheduler'")" "1"

# --- bad settings are refused ------------------------------------------------
refused() { psql -X -q -d postgres -c "$1" 2>&1 | grep -c "$2" || true; }
expect "run_at 25:00 is refused" "$(refused "ALTER SYSTEM SET followup.run_at = '25:00'" 'invalid value for parameter "followup.run_at"')" "1"
expect "run_at 'noon' is refused" "$(refused "ALTER SYSTEM SET followup.run_at = 'noon'" 'must be a 24-hour local time')" "1"
expect "an unknown time zone is refused" "$(refused "ALTER SYSTEM SET followup.timezone = 'Nowhere/Town'" 'invalid value for parameter "followup.timezone"')" "1"
expect "alert_after 0 is refused" "$(refused "ALTER SYSTEM SET followup.alert_after = 0" 'outside the valid range')" "1"
expect "a negative log_retention is refused" "$(refused "ALTER SYSTEM SET followup.log_retention = -1" 'outside the valid range')" "1"
expect "max_attempts 0 is refused" "$(refused "ALTER SYSTEM SET followup.max_attempts = 0" 'outside the valid range')" "1"
expect "enabled 'maybe' is refused" "$(refused "ALTER SYSTEM SET followup.enabled = 'maybe'" 'requires a Boolean value')" "1"
expect "database needs a restart" "$(refused "SET followup.database = 'x'" 'cannot be changed without restarting the server')" "1"
expect "run_at is not a session setting" "$(refused "SET followup.run_at = '04:00'" 'cannot be changed now')" "1"
expect "nothing was written by the refused settings" \
    "$(grep -c followup "$(cluster_dir sched)/data/postgresql.auto.conf" || true)" "0"

# --- idle: asleep on its latch, no CPU ---------------------------------------
pid=$(scheduler_pid)
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
before=$(ticks); sleep 10; after=$(ticks)
expect "idle for 10 s, the scheduler used at most 1 clock tick of CPU" "$([ $((after - before)) -le 1 ] && echo yes)" "yes"
expect "it waits on its latch" \
    "$(psql -X -At -d postgres -c "SELECT wait_event FROM pg_stat_activity WHERE pid = $pid")" "Extension"

# --- the daily run at run_at, blocked: long_run, then killed: abandoned ------
# First a manual run for today, before the scheduled time. Manual runs never
# stand in for the day's scheduled run (README, "The scheduler"): the
# scheduled run must still happen.
expect "a manual run for today succeeds before the scheduled time" \
    "$(q "SELECT trigger || ':' || status || ':' || (as_of = (now() AT TIME ZONE '$NOON_TZ')::date) FROM followup.run_now()")" \
    "manual:succeeded:true"
# leave at least 20 s to get ready before the scheduled minute
secs=$(q "SELECT 60 - floor(extract(second FROM now()))::int")
ahead=$(( secs < 20 ? secs + 60 : secs ))
run_at=$(local_hhmm "$ahead")
psql -X -q -d postgres -c "ALTER SYSTEM SET followup.run_at = '$run_at'" -c "SELECT pg_reload_conf()" >/dev/null
wait_for_log "schedule changed to $run_at $NOON_TZ" 10 || true
expect "SIGHUP applies the new run_at" "$(grep -c "schedule changed to $run_at $NOON_TZ; rescheduling" "$LOG")" "1"
# hold the assignments table so the run blocks
psql -X -q -d "$DB" -c "BEGIN; LOCK TABLE app.assignments; SELECT pg_sleep(200); COMMIT;" >/dev/null 2>&1 &
locker=$!
wait_for "SELECT status FROM followup.runs WHERE trigger = 'schedule'" "running" 90 || true
expect "the scheduled run starts at run_at for the same day, and is visible as running" \
    "$(q "SELECT s.trigger || ':' || s.status || ':' || (s.as_of = m.as_of)
           FROM followup.runs s, followup.runs m WHERE s.trigger = 'schedule' AND m.trigger = 'manual'")" \
    "schedule:running:true"
started=$(q "SELECT to_char(started_at AT TIME ZONE '$NOON_TZ', 'HH24:MI') FROM followup.runs WHERE trigger = 'schedule'")
expect "it started in the run_at minute" "$started" "$run_at"
wait_for "SELECT count(*) FROM followup.alerts WHERE kind = 'long_run'" "1" 90 || true
expect "a long_run alert is raised while it still runs" \
    "$(q "SELECT a.kind || ':' || r.status FROM followup.alerts a JOIN followup.runs r USING (run_id)")" "long_run:running"
expect "and written to the server log as a WARNING" "$(grep -c 'WARNING:  pg_followup alert long_run' "$LOG")" "1"
psql -X -q -d postgres -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'pg_followup run'" >/dev/null
wait_for "SELECT status FROM followup.runs WHERE trigger = 'schedule'" "abandoned" 30 || true
expect "the killed run is marked abandoned" "$(q "SELECT status FROM followup.runs WHERE trigger = 'schedule'")" "abandoned"
expect "with a run_abandoned alert" "$(q "SELECT count(*) FROM followup.alerts WHERE kind = 'run_abandoned'")" "1"
kill "$locker" 2>/dev/null || true
psql -X -q -d postgres -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%LOCK TABLE app.assignments%' AND pid <> pg_backend_pid()" >/dev/null
expect "the lock is free after the killed run" \
    "$(q "SELECT count(*) FROM pg_locks WHERE locktype = 'object' AND classid = 'pg_extension'::regclass AND objsubid = 1")" "0"
killed_at=$(q "SELECT now()")
scheduler_ticked_after "$killed_at" || true
expect "the day's scheduled run is not started again (the scheduler looked since)" \
    "$(q "SELECT count(*) FROM followup.runs WHERE trigger = 'schedule'")" "1"

# --- downtime over the scheduled time: missed_schedule and a catch-up run ----
# The manual run above succeeded for today, but it does not count: the day's
# scheduled run was abandoned, so the catch-up runs. It starts from an empty
# outbox, so what it enqueues shows.
q "TRUNCATE followup.outbox"
# registered long before the scheduled time that will be missed
long_on_duty
# local time is about noon (NOON_TZ), so the missed time is today and not near midnight
missed_at=$(q "SELECT to_char(now() AT TIME ZONE '$NOON_TZ' - interval '2 minutes', 'HH24:MI')")
psql -X -q -d postgres -c "ALTER SYSTEM SET followup.run_at = '$missed_at'" >/dev/null
cluster_stop sched fast
cluster_start sched
wait_for "SELECT status FROM followup.runs WHERE trigger = 'catch_up'" "succeeded" 60 || true
expect "after the restart a catch-up run succeeds for today" \
    "$(q "SELECT trigger || ':' || status || ':' || (as_of = (now() AT TIME ZONE '$NOON_TZ')::date) FROM followup.runs WHERE trigger = 'catch_up'")" \
    "catch_up:succeeded:true"
expect "a missed_schedule alert names the day and the catch-up run" \
    "$(q "SELECT count(*) FROM followup.alerts a JOIN followup.runs r USING (run_id)
           WHERE a.kind = 'missed_schedule' AND r.trigger = 'catch_up' AND a.message LIKE '%did not happen; running it now (catch_up)'")" "1"
expect "the catch-up enqueued the day's reminders" \
    "$(q "SELECT reminders_enqueued > 0 AND reminders_enqueued = (SELECT count(*) FROM followup.outbox) FROM followup.runs WHERE trigger = 'catch_up'")" "t"
expect "earlier failures' alerts are resolved by the successful run" \
    "$(q "SELECT count(*) FROM followup.alerts WHERE kind IN ('run_abandoned', 'long_run', 'missed_schedule') AND resolved_at IS NULL")" "0"
expect "health: last run succeeded, not overdue, no open alerts" \
    "$(q "SELECT last_run_status || ':' || overdue || ':' || open_alerts FROM followup.health")" "succeeded:false:0"
restarted=$(q "SELECT now()")
cluster_stop sched fast
cluster_start sched
scheduler_ticked_after "$restarted" || true
expect "another restart the same day runs nothing more (the scheduler looked since)" "$(q "SELECT count(*) FROM followup.runs")" "3"
finish
