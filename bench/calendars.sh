#!/usr/bin/env bash
# What calendars cost (README, "Send windows, calendars and digests"): the
# first run and claims, in two databases of one cluster with the same data,
# one without calendars ("plain") and one with calendars configured for half
# of the 20 organizations ("calendars": every weekday listed in send_days, a
# year of quiet days each and ten for '*', and absences for 5% of the
# mentors, all of them ahead of now, so that both databases hand out the
# same messages and the difference is the cost of looking). Not a test: it
# measures and prints each figure and the ratio calendars / plain, measured
# in the same run on PostgreSQL's default planner and JIT settings.
#
#   bench/calendars.sh                 N=300000 assignments, RUNS=3, DURATION=10 s
#   N=100000 RUNS=5 DURATION=20 CLIENTS="1 4" bench/calendars.sh
#   KEEP_CLUSTERS=1                    keep the cluster's directory afterwards
#
# The extension must be installed in the system PostgreSQL (tests/lib/install.sh
# --release for figures worth comparing).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
N=${N:-300000}
RUNS=${RUNS:-3}
DURATION=${DURATION:-10}
CLIENTS=${CLIENTS:-"1 4"}
AS_OF=2026-06-15
BATCH=100

source "$REPO/tests/lib/cluster.sh"
trap cluster_cleanup_all EXIT
trap "exit 1" INT TERM
cluster_init bench "shared_buffers = 1GB" "max_connections = 20"
cluster_start bench
export PGHOST=$(cluster_host bench) PGPORT=$(cluster_port bench) PGUSER=postgres

sql() { psql -X -At -q -v ON_ERROR_STOP=1 -d "$1" -c "$2"; }

# the same app, data, registration and policies in both databases
for db in plain calendars; do
    createdb "$db"
    sql "$db" "CREATE EXTENSION pg_followup"
    psql -X -q -v ON_ERROR_STOP=1 -d "$db" -f "$REPO/demo/app.sql" >/dev/null
    sql "$db" "SELECT app.seed($N, '$AS_OF')" >/dev/null
    sql "$db" "SELECT followup.track_assignments('app.assignments', 'id', 'mentor_id', 'last_contact_date',
                   created_column => 'created_at', coordinator_column => 'coordinator_id',
                   organization_column => 'organization', active_when => \$\$status = 'active'\$\$)" >/dev/null
    sql "$db" "SELECT followup.track_activities('app.activities', 'occurred_at', '{mentor_id,contact_id}')" >/dev/null
    sql "$db" "INSERT INTO followup.policies (organization, remind_after_days, repeat_every_days, escalate_after_days,
                                              timezone)
               SELECT 'org-' || lpad(g::text, 2, '0'), 14, 7, 21,
                      (ARRAY['Europe/Oslo', 'America/Chicago', 'Asia/Tokyo', 'UTC'])[1 + g % 4]
                 FROM generate_series(1, 20) AS g"
    sql "$db" "VACUUM ANALYZE"
done
# calendars for half of the organizations, none closing anything now
sql calendars "UPDATE followup.policies SET send_days = '{1,2,3,4,5,6,7}'
                WHERE organization IN (SELECT 'org-' || lpad(g::text, 2, '0') FROM generate_series(1, 10) AS g)"
sql calendars "INSERT INTO followup.quiet_days
               SELECT 'org-' || lpad(g::text, 2, '0'), current_date + 2 + k * 7 + g % 7, 'closed'
                 FROM generate_series(1, 10) AS g, generate_series(0, 51) AS k
               UNION ALL
               SELECT '*', current_date + 3 + k * 30, 'holiday' FROM generate_series(0, 9) AS k"
sql calendars "INSERT INTO followup.away (recipient_role, recipient_id, from_day, until_day, reason)
               SELECT 'mentor', mentor_id::text, current_date + 10 + (mentor_id % 20)::int, current_date + 40, 'away later'
                 FROM (SELECT DISTINCT mentor_id FROM app.assignments) AS m WHERE mentor_id % 20 = 0"
sql calendars "VACUUM ANALYZE followup.policies, followup.quiet_days, followup.away"

echo "pg_followup calendars benchmark: $N assignments in 20 organizations, as of $AS_OF"
echo "machine: $(nproc) cores; PostgreSQL $(sql postgres "SHOW server_version"); $(sql calendars "SELECT count(*) FROM followup.quiet_days") quiet days and $(sql calendars "SELECT count(*) FROM followup.away") absences in 'calendars'"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# refill DB: an empty outbox filled by a first run; prints the run's seconds
refill() {
    sql "$1" "TRUNCATE followup.outbox, followup.outbox_leases, followup.runs"
    sql "$1" "CHECKPOINT"
    sql "$1" "SELECT extract(epoch FROM finished_at - started_at) FROM followup.run_now('$AS_OF')"
}

echo
echo "=== the first run (enqueues every message due), $RUNS times each, alternating ==="
declare -A run_seconds=([plain]="" [calendars]="")
for i in $(seq 1 "$RUNS"); do
    order="plain calendars"
    [ $((i % 2)) = 0 ] && order="calendars plain"
    for db in $order; do
        s=$(refill "$db")
        run_seconds[$db]="${run_seconds[$db]} $s"
        echo "  run $i $db: ${s}s, $(sql "$db" "SELECT count(*) FROM followup.outbox") messages"
    done
done
plain_run=$(echo "${run_seconds[plain]}" | median)
calendars_run=$(echo "${run_seconds[calendars]}" | median)
echo "first run, median: plain ${plain_run}s, calendars ${calendars_run}s, ratio $(ratio "$calendars_run" "$plain_run")"
same=$(psql -X -At -q -d calendars -c "SELECT count(*) FROM followup.outbox" )
[ "$same" = "$(sql plain "SELECT count(*) FROM followup.outbox")" ] || echo "note: the databases enqueued different counts"

cat >"$CLUSTER_ROOT/claim.sql" <<EOF
SELECT lease_id, array_agg(message_id) OVER () AS ids FROM followup.claim('c' || :client_id, $BATCH) LIMIT 1 \gset
SELECT followup.ack(':lease_id', ':ids');
EOF

# claims DB CLIENTS: messages delivered per second over DURATION
claims() {
    local out status=0 delivered
    refill "$1" >/dev/null
    sql "$1" "VACUUM ANALYZE followup.outbox"
    out=$(pgbench -n -f "$CLUSTER_ROOT/claim.sql" -c "$2" -j "$2" -T "$DURATION" "$1" 2>&1) || status=$?
    if [ "$status" -ne 0 ] && ! grep -q 'expected one row, got 0' <<<"$out"; then
        echo "$out" >&2
        exit 1
    fi
    delivered=$(sql "$1" "SELECT count(*) FROM followup.outbox WHERE status = 'delivered'")
    [ "$status" -ne 0 ] && echo "  ($1 ran dry before ${DURATION}s: lower N or DURATION)" >&2
    awk -v n="$delivered" -v d="$DURATION" 'BEGIN { printf "%.0f", n / d }'
}

echo
echo "=== claim $BATCH + ack by ids, ${DURATION}s, messages delivered per second ==="
for clients in $CLIENTS; do
    declare -A rate=([plain]="" [calendars]="")
    for i in $(seq 1 "$RUNS"); do
        order="plain calendars"
        [ $((i % 2)) = 0 ] && order="calendars plain"
        for db in $order; do
            r=$(claims "$db" "$clients")
            rate[$db]="${rate[$db]} $r"
            echo "  $clients consumer(s), round $i, $db: $r messages/s"
        done
    done
    p=$(echo "${rate[plain]}" | median)
    c=$(echo "${rate[calendars]}" | median)
    echo "$clients consumer(s), median: plain $p, calendars $c messages/s, ratio $(ratio "$c" "$p")"
done
