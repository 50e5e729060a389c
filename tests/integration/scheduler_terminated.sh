#!/usr/bin/env bash
# Found by the soak (README, "Soak"): the scheduler terminated while it sleeps
# (pg_terminate_backend, as an operator or an OOM killer's SIGTERM would) must
# come back by itself, as the README promises ("restarted by the postmaster
# if it dies"), and leave nothing behind.
#   - once its process has ended, no lock on the extension object is held in
#     its name (a session lock of a process that exits outside a transaction
#     is not released by PostgreSQL's abort path);
#   - a scheduler runs again within 40 s (RESTART_AFTER is 10 s), and its
#     start-up met no lock of the dead one ("lock ... is already held", or the
#     scheduler lock taken, upon which the new scheduler exits for good).
source "$(dirname "$0")/../lib/integration.sh"
trap 'cluster_stop schedterm immediate' EXIT
DB=followup_schedterm
# enabled off: no run of the scheduler's joins in, whatever the hour
cluster_init schedterm "followup.database = '$DB'" "followup.enabled = off"
cluster_start schedterm
export PGHOST=$(cluster_host schedterm) PGPORT=$(cluster_port schedterm)
LOG="$(cluster_dir schedterm)/server.log"
createdb "$DB"
q "CREATE EXTENSION pg_followup"
scheduler_pid() { q "SELECT coalesce(string_agg(pid::text, ','), '') FROM pg_stat_activity WHERE backend_type = 'pg_followup scheduler'"; }
wait_for "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_followup scheduler'" "1" 60 || true
pid=$(scheduler_pid)
expect "a scheduler runs" "$([ -n "$pid" ] && echo yes)" "yes"
# the locks on pg_followup's extension object held by processes that no longer exist
orphaned_locks() {
    q "SELECT count(*) FROM pg_locks l
        WHERE l.locktype = 'object' AND l.classid = 'pg_extension'::regclass
          AND l.objid = (SELECT oid FROM pg_extension WHERE extname = 'pg_followup')
          AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = l.pid)"
}
q "SELECT pg_terminate_backend($pid)" >/dev/null
wait_for "SELECT count(*) FROM pg_stat_activity WHERE pid = $pid" "0" 30 || true
expect "its process has ended" "$(q "SELECT count(*) FROM pg_stat_activity WHERE pid = $pid")" "0"
expect "and no lock on the extension is left in the name of an ended process" "$(orphaned_locks)" "0"
# other sessions come and go meanwhile, as on any server
for _ in 1 2 3; do psql -X -q -d "$DB" -c "SELECT pg_sleep(15)" >/dev/null 2>&1 & done
wait_for "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_followup scheduler'" "1" 40 || true
expect "a scheduler runs again within 40 s" \
    "$(q "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_followup scheduler'")" "1"
expect "its start-up met no lock left by the dead one" "$(grep -c 'is already held' "$LOG" || true)" "0"
wait
finish
