#!/usr/bin/env bash
# Retries and a hard runtime limit (README, "The scheduler"): a failed
# scheduled run is run again by the scheduler (trigger retry) 5, 10, 20
# minutes after each failure, up to followup.run_retries; a run past
# followup.max_runtime is cancelled and logged failed, naming the limit, with
# its run_failed alert. The retry schedule itself is pinned with fixed
# instants in tests/pg_regress/sql/schedule.sql; here the scheduler acts on
# it: a retry that is due when the scheduler starts runs at once.
source "$(dirname "$0")/../lib/integration.sh"
trap 'cluster_stop limits immediate' EXIT

# A zone where it is about noon, run_at an hour ago: today's scheduled run is
# past, whatever the hour in UTC.
NOON_TZ=$(awk -v h="$(date -u +%H)" 'BEGIN { o = h - 12; printf "Etc/GMT%s%d", (o < 0 ? "-" : "+"), (o < 0 ? -o : o) }')
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
    "$(q "SELECT count(*) FROM followup.outbox") $(q "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 1870099824")" "0 0"

# --- a failed scheduled run is retried by the scheduler ----------------------
run_at=$(q "SELECT to_char(now() AT TIME ZONE '$NOON_TZ' - interval '1 hour', 'HH24:MI')")
today=$(q "SELECT (now() AT TIME ZONE '$NOON_TZ')::date")
q "UPDATE followup.assignment_tables SET registered_at = now() - interval '2 days'"
# today's scheduled run failed six minutes ago: its first retry (5 minutes
# after) is due
q "INSERT INTO followup.runs (trigger, status, as_of, started_at, finished_at, error)
   VALUES ('schedule', 'failed', '$today', now() - interval '7 minutes', now() - interval '6 minutes', 'injected')"
expect "health shows the retry that is due" \
    "$(q "SELECT next_retry_at < now() AND run_retries = 3 FROM followup.health")" "t"
psql -X -q -d postgres -c "ALTER SYSTEM SET followup.run_at = '$run_at'" -c "ALTER SYSTEM SET followup.enabled = on" >/dev/null
cluster_stop limits fast
cluster_start limits
for _ in $(seq 1 60); do
    [ "$(q "SELECT status FROM followup.runs WHERE trigger = 'retry'" 2>/dev/null)" = "succeeded" ] && break
    sleep 1
done
expect "at start-up the scheduler runs the due retry, for today" \
    "$(q "SELECT trigger || ':' || status || ':' || (as_of = '$today') FROM followup.runs WHERE trigger = 'retry'")" \
    "retry:succeeded:true"
expect "the retry enqueued the day's reminders" "$(q "SELECT reminders_enqueued > 0 FROM followup.runs WHERE trigger = 'retry'")" "t"
expect "health: no retry pending, not overdue" \
    "$(q "SELECT coalesce(next_retry_at::text, 'none') || ':' || overdue FROM followup.health")" "none:false"
expect "the failed run's alert is resolved by the retry" \
    "$(q "SELECT count(*) FROM followup.alerts WHERE kind = 'run_failed' AND resolved_at IS NULL")" "0"
finish
