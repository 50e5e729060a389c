#!/usr/bin/env bash
# Failover to a streaming standby: the standby, with pg_followup
# preloaded, runs no scheduler while it replays; after promotion the scheduler
# starts by itself, and a run for a day already served by the old primary
# enqueues nothing again.
source "$(dirname "$0")/../lib/integration.sh"
trap 'cluster_stop standby immediate; cluster_stop primary immediate' EXIT

DB=followup_failover
# followup.enabled = off: the scheduler starts (and is checked), but no daily
# run at 03:00 or catch-up joins the test's runs, whatever the time of day
cluster_init primary "followup.database = '$DB'" "followup.enabled = off"
cluster_start primary
export PGHOST=$(cluster_host primary) PGPORT=$(cluster_port primary)
createdb "$DB"
psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -c "CREATE EXTENSION pg_followup" -f "$REPO/demo/app.sql" >/dev/null
seed 2000
register_app
first=$(q "SELECT reminders_enqueued FROM followup.run_now('$AS_OF')")
expect "the primary enqueued the day's messages" "$([ "$first" -gt 0 ] && echo yes)" "yes"

# a standby from a base backup of the primary, on its own port and socket
standby_dir=$(cluster_dir standby)
rm -rf "$standby_dir"; mkdir -p "$standby_dir" && chown postgres: "$standby_dir"
as_postgres "$PG_BIN/pg_basebackup" -h "$PGHOST" -p "$PGPORT" -U postgres -D "$standby_dir/data" -R -X stream -c fast
standby_port=$(free_port)
echo "$standby_port" >"$standby_dir/port"
{
    echo "port = $standby_port"
    echo "unix_socket_directories = '$standby_dir'"
} >>"$standby_dir/data/postgresql.conf"
cluster_start standby
sq() { psql -X -At -q -v ON_ERROR_STOP=1 -h "$standby_dir" -p "$standby_port" -U postgres -d "$DB" -c "$1"; }

# wait until the standby has replayed the run
for _ in $(seq 1 60); do
    [ "$(sq "SELECT count(*) FROM followup.outbox" 2>/dev/null)" = "$first" ] && break
    sleep 0.5
done
expect "the standby is in recovery" "$(sq "SELECT pg_is_in_recovery()")" "t"
expect "it has the primary's outbox" "$(sq "SELECT count(*) FROM followup.outbox")" "$first"
for _ in $(seq 1 60); do
    [ "$(q "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_followup scheduler'")" = "1" ] && break
    sleep 1
done
expect "the primary has its scheduler" \
    "$(q "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_followup scheduler'")" "1"
# the standby has been up twice as long as the primary took to start its
# scheduler (plus a second): a scheduler would have started by now
took=$(q "SELECT extract(epoch FROM s.backend_start - pg_postmaster_start_time())
           FROM pg_stat_activity AS s WHERE s.backend_type = 'pg_followup scheduler'")
for _ in $(seq 1 120); do
    [ "$(sq "SELECT extract(epoch FROM now() - pg_postmaster_start_time()) > 2 * $took + 1")" = "t" ] && break
    sleep 0.5
done
expect "no pg_followup worker runs on the standby (up long enough for one to have started)" \
    "$(sq "SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'pg_followup%'")" "0"
refusal=$(sq "SELECT status FROM followup.run_now('$AS_OF')" 2>&1 || true)
expect "run_now on the standby is refused with a clear message" \
    "$(echo "$refusal" | grep -c 'ERROR:  followup.run_now cannot run on a standby' || true)" "1"
expect "preview works on the standby, and has nothing more to send" "$(sq "SELECT count(*) FROM followup.preview('$AS_OF')")" "0"

# fail over: stop the primary, promote the standby
cluster_stop primary immediate
as_postgres "$PG_BIN/pg_ctl" -D "$standby_dir/data" -w promote >/dev/null
for _ in $(seq 1 60); do
    [ "$(sq "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_followup scheduler'")" = "1" ] && break
    sleep 0.5
done
expect "after promotion the scheduler starts by itself" \
    "$(sq "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_followup scheduler'")" "1"
expect "a run for the same day on the new primary enqueues nothing again" \
    "$(sq "SELECT status || ':' || reminders_enqueued || ':' || duplicates_suppressed FROM followup.run_now('$AS_OF')")" \
    "succeeded:0:$first"
expect "no duplicate message" \
    "$(sq "SELECT count(*) - count(DISTINCT (assignment_id, cycle_start, kind, sequence)) FROM followup.outbox")" "0"
sq "INSERT INTO app.activities (mentor_id, contact_id, occurred_at, registration)
    SELECT mentor_id, contact_id, '$(day 1) 09:00+00', 'direct' FROM app.assignments WHERE id = 7"
expect "tracking works on the new primary" \
    "$(sq "SELECT last_contact_date FROM app.assignments WHERE id = 7")" "$(day 1)"
finish
