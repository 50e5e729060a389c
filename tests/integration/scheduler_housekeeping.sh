#!/usr/bin/env bash
# Found by the soak (README, "Soak"): a run started while the scheduler looks
# at running runs (its check once a minute, at start-up, and whenever it is
# woken while it waits for its own run) is skipped "because another run holds
# the lock", naming the scheduler's own pid: the scheduler takes the run lock
# for the transaction in which it marks dead runs abandoned
# (mark_abandoned_if_free) and holds it through raising long_run alerts and
# resolving alerts. The README promises a skip only when another run holds
# the lock. Here the scheduler's check is made to last (a session holds
# followup.alerts in SHARE mode, so its resolving of alerts waits) and a
# run_now is made meanwhile; it must run, not be skipped on the scheduler's
# account. (The same race makes a catch-up skip itself: the scheduler is
# woken by its catch-up worker's start, with the missed_schedule alert open.)
source "$(dirname "$0")/../lib/integration.sh"
trap 'cluster_stop schedhk immediate' EXIT
DB=followup_schedhk
cluster_init schedhk "followup.database = '$DB'" "followup.timezone = '$(noon_tz)'"
cluster_start schedhk
export PGHOST=$(cluster_host schedhk) PGPORT=$(cluster_port schedhk)
createdb "$DB"
psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -c "CREATE EXTENSION pg_followup" -f "$REPO/demo/app.sql" >/dev/null
seed 40
register_app
wait_for "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_followup scheduler'" "1" 60 || true
scheduler=$(q "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_followup scheduler'")
expect "a scheduler runs" "$([ -n "$scheduler" ] && echo yes)" "yes"
# an open alert: the scheduler's check has something to do
q "INSERT INTO followup.alerts (kind, message) VALUES ('missed_schedule', 'an alert left open by an earlier day')"
psql -X -q -d "$DB" -c "BEGIN; LOCK TABLE followup.alerts IN SHARE MODE; SELECT pg_sleep(120); COMMIT" >/dev/null 2>&1 &
locker=$!
# its check comes within a minute
wait_for "SELECT count(*) FROM pg_stat_activity WHERE pid = $scheduler AND wait_event_type = 'Lock'" "1" 75 || true
expect "the scheduler's check waits, holding what it took" \
    "$(q "SELECT count(*) FROM pg_stat_activity WHERE pid = $scheduler AND wait_event_type = 'Lock'")" "1"
result="$CLUSTER_ROOT/schedhk-run"
q "SELECT status || ':' || coalesce(error, '') FROM followup.run_now('$AS_OF')" >"$result" 2>&1 &
runner=$!
sleep 3
q "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%LOCK TABLE followup.alerts%' AND pid <> pg_backend_pid()" >/dev/null
wait "$runner" || true
wait "$locker" 2>/dev/null || true
expect "a run made meanwhile runs: it is not skipped on the scheduler's account (pid $scheduler)" "$(cat "$result")" "succeeded:"
finish
