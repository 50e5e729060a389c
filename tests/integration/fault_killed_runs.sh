#!/usr/bin/env bash
# Killed runs: a run's worker terminated (pg_terminate_backend) or
# killed with SIGKILL in the middle of its scan, and a server stopped with
# `pg_ctl stop -m immediate` mid-run. Each time: the row ends `abandoned`
# (never stays `running`) with a run_abandoned alert, the lock is free, the
# next run (or the catch-up) enqueues exactly what was missing, and no message
# is enqueued twice.
source "$(dirname "$0")/../lib/integration.sh"
trap 'cluster_stop faults immediate' EXIT

DB=followup_faults
# The scheduler stays off (no 03:00 run may join in, whatever the hour) until
# the immediate-shutdown scenario, which turns it on to catch up.
cluster_init faults "followup.database = '$DB'" "followup.enabled = off"
cluster_start faults
export PGHOST=$(cluster_host faults) PGPORT=$(cluster_port faults)
createdb "$DB"
psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -c "CREATE EXTENSION pg_followup" -f "$REPO/demo/app.sql" >/dev/null
seed 3000
register_app

# Half the assignments paused: the first run enqueues their half only.
q "UPDATE app.assignments SET status = 'paused' WHERE status = 'active' AND id % 2 = 0"
first=$(q "SELECT reminders_enqueued FROM followup.run_now('$AS_OF')")
q "UPDATE app.assignments SET status = 'active' WHERE status = 'paused'"
missing=$(q "SELECT count(*) FROM followup.preview('$AS_OF')")
expect "a first run enqueued some, and some are still missing" \
    "$([ "$first" -gt 0 ] && [ "$missing" -gt 0 ] && echo yes)" "yes"

no_duplicates() {
    expect "$1: no message enqueued twice" \
        "$(q "SELECT count(*) - count(DISTINCT (assignment_id, cycle_start, kind, sequence)) FROM followup.outbox")" "0"
}
lock_free() {
    expect "$1: the run lock is free" \
        "$(q "SELECT count(*) FROM pg_locks WHERE locktype = 'object' AND classid = 'pg_extension'::regclass AND objsubid = 1")" "0"
}
# start_blocked_run SQL: run SQL (a run_now) in the background, held up by a
# lock on the assignments table, and wait until its `running` row is committed.
start_blocked_run() {
    psql -X -q -d "$DB" -c "BEGIN; LOCK TABLE app.assignments; SELECT pg_sleep(300); COMMIT;" >/dev/null 2>&1 &
    LOCKER=$!
    sleep 0.5
    psql -X -q -d "$DB" -c "$1" >/dev/null 2>&1 &
    RUNNER=$!
    for _ in $(seq 1 60); do
        [ "$(q "SELECT count(*) FROM followup.runs WHERE status = 'running'")" = "1" ] && return 0
        sleep 0.5
    done
    echo "the run did not start"
}
stop_locker() {
    psql -X -q -d "$DB" -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                            WHERE query LIKE 'BEGIN; LOCK TABLE app.assignments%'" >/dev/null 2>&1 || true
    wait "$LOCKER" "$RUNNER" 2>/dev/null || true
}
worker_pid() { q "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_followup run'"; }

# --- 1. pg_terminate_backend of the run's worker ------------------------------
start_blocked_run "SELECT followup.run_now('$AS_OF')"
run_id=$(q "SELECT run_id FROM followup.runs WHERE status = 'running'")
q "SELECT pg_terminate_backend($(worker_pid))" >/dev/null
stop_locker
after=$(q "SELECT status FROM followup.run_now('$AS_OF')")
expect "terminated: the next run succeeds" "$after" "succeeded"
expect "terminated: the killed run is abandoned" "$(q "SELECT status FROM followup.runs WHERE run_id = $run_id")" "abandoned"
expect "terminated: with a run_abandoned alert" \
    "$(q "SELECT count(*) FROM followup.alerts WHERE kind = 'run_abandoned' AND run_id = $run_id")" "1"
expect "terminated: the next run enqueued exactly what was missing" \
    "$(q "SELECT reminders_enqueued || '/' || duplicates_suppressed FROM followup.runs ORDER BY run_id DESC LIMIT 1")" \
    "$missing/$first"
lock_free "terminated"
no_duplicates "terminated"

# the next scenario needs messages missing again: a later day
day=$(day 7)
missing=$(q "SELECT count(*) FROM followup.preview('$day')")
already=$(q "SELECT count(*) FROM followup.outbox")

# --- 2. SIGKILL of the run's worker: the postmaster restarts every backend ----
start_blocked_run "SELECT followup.run_now('$day')"
run_id=$(q "SELECT run_id FROM followup.runs WHERE status = 'running'")
kill -9 "$(worker_pid)"
wait "$LOCKER" "$RUNNER" 2>/dev/null || true
for _ in $(seq 1 60); do
    [ "$(q "SELECT status FROM followup.runs WHERE run_id = $run_id" 2>/dev/null)" = "abandoned" ] && break
    sleep 1
done
expect "SIGKILL: the scheduler marks the run abandoned after the crash restart" \
    "$(q "SELECT status FROM followup.runs WHERE run_id = $run_id")" "abandoned"
expect "SIGKILL: with a run_abandoned alert" \
    "$(q "SELECT count(*) FROM followup.alerts WHERE kind = 'run_abandoned' AND run_id = $run_id")" "1"
lock_free "SIGKILL"
expect "SIGKILL: the next run enqueues exactly what was missing" \
    "$(q "SELECT status || ':' || reminders_enqueued FROM followup.run_now('$day')")" "succeeded:$missing"
expect "SIGKILL: the outbox grew by exactly that" "$(q "SELECT count(*) FROM followup.outbox")" "$((already + missing))"
no_duplicates "SIGKILL"

# --- 3. immediate shutdown mid-run: abandoned, missed_schedule, catch-up -------
# The scheduler works on the real clock, so this scenario does too, with the
# expectations computed from it: a time zone where it is about noon now (so
# nothing here crosses local midnight, whatever the hour in UTC), run_at two
# minutes ago, the tables registered before that. The data were seeded months
# before today, so every active assignment has a reminder due today that the
# runs above (as of $AS_OF and a week later) did not enqueue. Today's manual
# run is cut short by an immediate shutdown; after the restart the scheduler
# marks it abandoned and catches up.
tz=$(q "SELECT format('Etc/GMT%s', to_char(-(12 - extract(hour FROM now() AT TIME ZONE 'UTC')::int), 'FMSG99'))")
run_at=$(q "SELECT to_char(now() AT TIME ZONE '$tz' - interval '2 minutes', 'HH24:MI')")
today=$(q "SELECT (now() AT TIME ZONE '$tz')::date")
psql -X -q -d postgres -c "ALTER SYSTEM SET followup.timezone = '$tz'" -c "ALTER SYSTEM SET followup.run_at = '$run_at'" \
    -c "ALTER SYSTEM SET followup.enabled = on" -c "SELECT pg_reload_conf()" >/dev/null
# reloading moves the schedule to tomorrow: no catch-up while the server runs.
# Turning followup.enabled on puts the scheduler on duty from now; once it
# has, the duty is dated back two days (as if it had been on since), so that
# today's run_at, two minutes ago, was its to make.
expect "immediate: the scheduler takes up its duty" \
    "$(wait_for "SELECT on_duty_since IS NOT NULL FROM followup.scheduler_duty" t 30 && echo yes)" "yes"
long_on_duty
sleep 1
missing=$(q "SELECT count(*) FROM followup.preview('$today')")
already=$(q "SELECT count(*) FROM followup.outbox")
expect "immediate: today has messages due that no run enqueued yet" \
    "$([ "$missing" -gt 0 ] && [ "$missing" = "$(q "SELECT count(*) FROM app.assignments WHERE status = 'active'")" ] && echo yes)" "yes"
expect "immediate: no catch-up happened while the server ran" \
    "$(q "SELECT count(*) FROM followup.runs WHERE trigger = 'catch_up'")" "0"
start_blocked_run "SET followup.timezone = '$tz'; SELECT followup.run_now()"
run_id=$(q "SELECT run_id FROM followup.runs WHERE status = 'running'")
stopped_at=$(q "SELECT now()")
cluster_stop faults immediate
wait "$LOCKER" "$RUNNER" 2>/dev/null || true
cluster_start faults
for _ in $(seq 1 60); do
    [ "$(q "SELECT status FROM followup.runs WHERE trigger = 'catch_up'" 2>/dev/null)" = "succeeded" ] && break
    sleep 1
done
expect "immediate: the interrupted run is abandoned" "$(q "SELECT status FROM followup.runs WHERE run_id = $run_id")" "abandoned"
expect "immediate: run_abandoned and missed_schedule alerts" \
    "$(q "SELECT string_agg(kind::text, ',' ORDER BY kind) FROM followup.alerts WHERE raised_at > '$stopped_at'")" \
    "run_abandoned,missed_schedule"
expect "immediate: the catch-up run enqueued exactly what was missing" \
    "$(q "SELECT as_of || ':' || status || ':' || reminders_enqueued FROM followup.runs WHERE trigger = 'catch_up'")" \
    "$today:succeeded:$missing"
expect "immediate: the outbox grew by exactly that" "$(q "SELECT count(*) FROM followup.outbox")" "$((already + missing))"
lock_free "immediate"
no_duplicates "immediate"
expect "no run is left running" "$(q "SELECT count(*) FROM followup.runs WHERE status = 'running'")" "0"
finish
