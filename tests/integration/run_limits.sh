#!/usr/bin/env bash
# Retries and a hard runtime limit (README, "The scheduler"): a failed
# scheduled run is run again by the scheduler (trigger retry)
# followup.retry_delay after a failure, then twice as long and so on, up to
# followup.run_retries; a run past
# followup.max_runtime is cancelled and logged failed, naming the limit, with
# its run_failed alert. The retry schedule itself is pinned with fixed
# instants in tests/pg_regress/sql/schedule.sql; here the scheduler acts on
# it, with followup.retry_delay shortened to seconds: a run that fails while
# a gate setting read by active_when is unset is retried until it is set.
source "$(dirname "$0")/../lib/integration.sh"
trap 'cluster_stop limits immediate' EXIT

# A zone where it is about noon, run_at an hour ago: today's scheduled run is
# past, whatever the hour in UTC.
NOON_TZ=$(noon_tz)
DB=followup_limits
cluster_init limits "followup.database = '$DB'" "followup.timezone = '$NOON_TZ'" "followup.catch_up = off" \
    "followup.enabled = off"
cluster_start limits
export PGHOST=$(cluster_host limits) PGPORT=$(cluster_port limits)
createdb "$DB"
psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -c "CREATE EXTENSION pg_followup" -f "$REPO/demo/app.sql" >/dev/null
seed 300
register_app
refused() { psql -X -q -d postgres -c "$1" 2>&1 | grep -c "$2" || true; }
expect "a negative run_retries is refused" \
    "$(refused "ALTER SYSTEM SET followup.run_retries = -1" 'outside the valid range')" "1"
expect "a negative max_runtime is refused" \
    "$(refused "ALTER SYSTEM SET followup.max_runtime = -1" 'outside the valid range')" "1"

# --- max_runtime: a run held up past the limit is cancelled, logged, alerted --
psql -X -q -d "$DB" -c "BEGIN; LOCK TABLE app.assignments; SELECT pg_sleep(150); COMMIT;" >"$CLUSTER_ROOT/limits_locker.log" 2>&1 &
locker=$!
sleep 0.5
limited=$(psql -X -At -q -d "$DB" -c "SET followup.max_runtime = 1" 2>&1 \
    -c "SELECT status || ' | ' || error FROM followup.run_now('$AS_OF')")
kill "$locker" 2>/dev/null; wait "$locker" 2>/dev/null || true
expect "a run past followup.max_runtime is cancelled and logged failed, naming the limit" \
    "$limited" "failed | cancelled: the run took longer than followup.max_runtime (1 min)"
expect "with its run_failed alert" \
    "$(q "SELECT count(*) FROM followup.alerts WHERE kind = 'run_failed' AND message LIKE '%followup.max_runtime (1 min)%'")" "1"
expect "and nothing enqueued, the lock released" \
    "$(q "SELECT count(*) FROM followup.outbox") $(q "SELECT count(*) FROM pg_locks WHERE locktype = 'object' AND classid = 'pg_extension'::regclass AND objsubid = 1")" "0 0"

# --- a failed catch-up run is retried by the scheduler until it succeeds ----
# active_when reads a gate setting: while the database does not set it, every
# run fails (unrecognized configuration parameter, not a row's fault), until
# someone opens it.
psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -c "SET limits.gate = 'on'" \
    -c "SELECT followup.track_assignments('app.assignments', 'id', 'mentor_id', 'last_contact_date',
       created_column => 'created_at', coordinator_column => 'coordinator_id',
       organization_column => 'organization',
       active_when => \$\$status = 'active' AND pg_catalog.current_setting('limits.gate')::pg_catalog.bool\$\$,
       payload_columns => '{organization,contact_id}')" >/dev/null
run_at=$(q "SELECT to_char(now() AT TIME ZONE '$NOON_TZ' - interval '1 hour', 'HH24:MI')")
today=$(q "SELECT (now() AT TIME ZONE '$NOON_TZ')::date")
# registered before today's run time, so the scheduler catches the day up at
# start-up; retries 3 s, 6 s, 12 s after each failure
long_on_duty
psql -X -q -d postgres -c "ALTER SYSTEM SET followup.run_at = '$run_at'" -c "ALTER SYSTEM SET followup.enabled = on" \
    -c "ALTER SYSTEM SET followup.catch_up = on" -c "ALTER SYSTEM SET followup.retry_delay = '3s'" >/dev/null
cluster_stop limits fast
cluster_start limits
# (A try that found the run lock held is logged skipped and tried again
# shortly, by design; it is neither a failure nor a retry, so it is left out
# here and printed with the holder it names.)
runs_of_today() {
    q "SELECT string_agg(trigger || ':' || status, ' ' ORDER BY run_id) FROM followup.runs
        WHERE as_of = '$today' AND trigger IN ('catch_up', 'retry') AND status <> 'skipped'"
}
# the catch-up fails, then the first retry: open the gate
for _ in $(seq 1 300); do
    [ "$(q "SELECT count(*) FROM followup.runs WHERE as_of = '$today' AND trigger = 'retry' AND status = 'failed'" 2>/dev/null)" -ge 1 ] && break
    sleep 0.2
done
q "ALTER DATABASE $DB SET limits.gate = 'on'" >/dev/null
for _ in $(seq 1 300); do
    runs_of_today 2>/dev/null | grep -q "retry:succeeded" && break
    sleep 0.2
done
runs=$(runs_of_today)
echo "  runs of today: $runs"
q "SELECT '  skipped: ' || trigger || ' ' || error FROM followup.runs WHERE as_of = '$today' AND status = 'skipped'"
expect "the catch-up failed, was retried (trigger retry) while the gate was closed, and a retry succeeded" \
    "$(echo "$runs" | grep -Ec '^catch_up:failed( retry:failed)+ retry:succeeded$')" "1"
expect "each failure names the gate's error" \
    "$(q "SELECT count(*) FROM followup.runs WHERE as_of = '$today' AND status = 'failed' AND error NOT LIKE '%unrecognized configuration parameter \"limits.gate\"%'")" "0"
expect "each failure raised its run_failed alert" \
    "$(q "SELECT count(*) FROM followup.runs AS r
           WHERE r.as_of = '$today' AND r.status = 'failed'
             AND NOT EXISTS (SELECT 1 FROM followup.alerts AS a WHERE a.kind = 'run_failed' AND a.run_id = r.run_id)")" "0"
# the waits between a failure and the next try: at least 3 s, then 6 s
# (lower bounds only: the scheduler never retries early)
expect "the first retry waited followup.retry_delay, the next twice as long" \
    "$(q "WITH r AS (SELECT run_id, trigger, status, started_at - lag(finished_at) OVER (ORDER BY run_id) AS waited
                      FROM followup.runs
                     WHERE as_of = '$today' AND trigger IN ('catch_up', 'retry') AND status <> 'skipped')
          SELECT bool_and(waited >= interval '3 seconds' * 2 ^ (n - 1))
            FROM (SELECT waited, row_number() OVER (ORDER BY run_id) AS n FROM r WHERE trigger = 'retry') AS w")" "t"
expect "the retry enqueued the day's reminders" \
    "$(q "SELECT reminders_enqueued > 0 FROM followup.runs WHERE trigger = 'retry' AND status = 'succeeded'")" "t"
expect "health: no retry pending, not overdue" \
    "$(q "SELECT coalesce(next_retry_at::text, 'none') || ':' || overdue FROM followup.health")" "none:false"
finish
