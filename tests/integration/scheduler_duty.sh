#!/usr/bin/env bash
# The scheduler's duty (README, "The scheduler"): followup.health.overdue and
# the scheduler's catch-up use one definition of a missed day
# (followup._missed_day), and a day whose run_at passed before the scheduler
# was responsible for it was never its to run: before the extension was
# installed and registered, while followup.enabled was off, before
# followup.database named this database. A day whose run_at passed while the
# server was down still is (tests/integration/scheduler.sh: the catch-up).
# The scheduler works on the real clock, so this test does too, in a zone
# where it is about noon (today's 03:00 has passed, whatever the hour in UTC).
source "$(dirname "$0")/../lib/integration.sh"
trap 'cluster_stop duty immediate' EXIT

NOON_TZ=$(noon_tz)
cluster_init duty "followup.database = 'demo'" "followup.timezone = '$NOON_TZ'"
cluster_start duty
export PGHOST=$(cluster_host duty) PGPORT=$(cluster_port duty)
LOG="$(cluster_dir duty)/server.log"

# restart_with SETTING...: ALTER SYSTEM each, then restart the server
restart_with() {
    local setting
    for setting in "$@"; do psql -X -q -d postgres -c "ALTER SYSTEM SET $setting" >/dev/null; done
    cluster_stop duty fast
    cluster_start duty
}
overdue_and_runs() { q "SELECT h.overdue || ' ' || (SELECT count(*) FROM followup.runs) FROM followup.health AS h"; }

# --- 1. the demo, installed after today's run_at -----------------------------
DB=demo
createdb demo
demo_output=$(psql -X -v ON_ERROR_STOP=1 -d demo -f "$REPO/demo/demo.sql" 2>&1)
expect "the demo's health row says it is not overdue" \
    "$(echo "$demo_output" | grep -Ec '^overdue +\| f$')" "1"
# the scheduler has found the extension and taken up its duty, since after
# today's run_at: it runs nothing for today, and health agrees
wait_for "SELECT on_duty_since IS NOT NULL FROM followup.scheduler_duty" "t" 30 || true
expect "the scheduler is on duty since it found the extension, after today's run_at" \
    "$(q "SELECT on_duty_since > followup._last_run_at_or_before(now(), '03:00', '$NOON_TZ') FROM followup.scheduler_duty")" "t"
expect "no catch-up run for today, and not overdue (the demo's two manual runs only)" "$(overdue_and_runs)" "false 2"
before=$(q "SELECT now()")
restart_with
scheduler_ticked_after "$before" || true
expect "a restart the same day catches nothing up either (the scheduler looked since)" "$(overdue_and_runs)" "false 2"

# --- 2. a day whose run_at passed while the server was down is missed ------
# (on duty since two days, run_at two minutes ago, down over it)
q "UPDATE followup.scheduler_duty SET on_duty_since = now() - interval '2 days'"
q "UPDATE followup.assignment_tables SET tracked_since = now() - interval '2 days'"
missed_at=$(q "SELECT to_char(now() AT TIME ZONE '$NOON_TZ' - interval '2 minutes', 'HH24:MI')")
restart_with "followup.run_at = '$missed_at'"
wait_for "SELECT status FROM followup.runs WHERE trigger = 'catch_up'" "succeeded" 60 || true
expect "the scheduler catches the day up" \
    "$(q "SELECT status FROM followup.runs WHERE trigger = 'catch_up'")" "succeeded"
expect "with a missed_schedule alert" "$(q "SELECT count(*) FROM followup.alerts WHERE kind = 'missed_schedule'")" "1"
expect "then it is not overdue" "$(q "SELECT overdue FROM followup.health")" "f"

# --- 3. followup.enabled off over run_at, then on: not the scheduler's day --
q "DELETE FROM followup.runs WHERE trigger = 'catch_up'"
restart_with "followup.enabled = off"
wait_for "SELECT on_duty_since IS NULL FROM followup.scheduler_duty" "t" 30 || true
expect "off duty while followup.enabled is off" "$(q "SELECT on_duty_since IS NULL FROM followup.scheduler_duty")" "t"
expect "a day missed while disabled is not overdue" "$(q "SELECT overdue FROM followup.health")" "f"
psql -X -q -d postgres -c "ALTER SYSTEM SET followup.enabled = on" -c "SELECT pg_reload_conf()" >/dev/null
wait_for_log 'followup.enabled is on; on duty from now on' 70 || true
expect "turned on again (SIGHUP), the scheduler is on duty from then on" \
    "$(q "SELECT on_duty_since > now() - interval '2 minutes' FROM followup.scheduler_duty")" "t"
before=$(q "SELECT now()")
restart_with
scheduler_ticked_after "$before" || true
expect "the day's run_at passed before it was on again: no catch-up, not overdue" \
    "$(q "SELECT count(*) FILTER (WHERE trigger = 'catch_up') || ' ' || (SELECT overdue FROM followup.health) FROM followup.runs")" "0 false"

# --- 4. followup.database changed to another database and back ----------------
createdb other
psql -X -q -v ON_ERROR_STOP=1 -d other -c "CREATE EXTENSION pg_followup" -f "$REPO/demo/app.sql" >/dev/null
DB=other
seed 50
register_app
q "UPDATE followup.assignment_tables SET tracked_since = now() - interval '2 days'"
restart_with "followup.database = 'other'"
wait_for "SELECT on_duty_since IS NOT NULL FROM followup.scheduler_duty" "t" 30 || true
expect "another database, registered long ago but served only from now on: no catch-up, not overdue" \
    "$(q "SELECT count(*) || ' ' || (SELECT overdue FROM followup.health) FROM followup.runs")" "0 false"
# back to demo, whose duty dates from before: days since the switch were
# other's, so demo's run_at two minutes ago is not demo's to catch up
DB=demo
q "UPDATE followup.scheduler_duty SET on_duty_since = now() - interval '2 days'"
before=$(q "SELECT now()")
restart_with "followup.database = 'demo'"
wait_for_log 'followup.database changed to "demo"; on duty from now on' 30 || true
scheduler_ticked_after "$before" || true
expect "back in demo: on duty from the switch" \
    "$(q "SELECT on_duty_since > now() - interval '2 minutes' FROM followup.scheduler_duty")" "t"
expect "and the day missed while serving the other database is neither caught up nor overdue" \
    "$(q "SELECT count(*) FILTER (WHERE trigger = 'catch_up') || ' ' || (SELECT overdue FROM followup.health) FROM followup.runs")" "0 false"
finish
