#!/usr/bin/env bash
# The console's page times at scale (a benchmark that prints, not a test):
#
#   bench/console.sh                       1,000,000 assignments, 1,200,000 outbox messages
#   bench/console.sh 100000 120000         other sizes
#   USERS=8 ROUNDS=5                       concurrent people, pages each fetches per page
#   KEEP=1                                 leave the cluster running afterwards (to look into a page)
#
# Uses the pg_followup installed in the system PostgreSQL (tests/lib/install.sh
# --release first) in a private cluster with PostgreSQL's defaults for the
# planner and JIT, shared_buffers 2GB. It builds the sample app (demo/app.sql)
# with N assignments and their activities, 60 days of runs, M outbox messages
# over 30 days (about 83% delivered, 8% cancelled, 90,000 pending, 1 in 120
# dead), 10,000 corrections, 5,000 snoozes, 20,000 repairs and 20,000 audit
# log rows, send days, 60 quiet days and 20,000 absences; then USERS people (followup_admin, so every action is offered)
# log in to a release build of the console and fetch every page at once,
# ROUNDS times each after one warm-up. A page's time is the time to its first
# byte as curl measures it on loopback: the server's time (the console renders
# a whole page before it sends it). The target is 100 ms for every page.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
N=${1:-1000000}
M=${2:-1200000}
USERS=${USERS:-8}
ROUNDS=${ROUNDS:-5}

tests/setup.sh >/dev/null
echo "building the console (release, without LTO)" >&2
CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    cargo build --quiet --release -p followup-console
CONSOLE=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/release/followup-console

source tests/lib/cluster.sh
WORK=$(mktemp -d /tmp/console-bench.XXXXXX)
CONSOLE_PID=""
cleanup() {
    [ -z "$CONSOLE_PID" ] || kill "$CONSOLE_PID" 2>/dev/null || true
    if [ -n "${KEEP:-}" ]; then
        echo "kept the cluster: PGHOST=$(cluster_host bench) PGPORT=$(cluster_port bench) PGDATABASE=bench_console;" \
             "stop it with pg_ctl -D $(cluster_dir bench)/data stop" >&2
    else
        cluster_cleanup_all
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
cluster_init bench "shared_buffers = 2GB" "work_mem = 64MB" "maintenance_work_mem = 1GB" "max_wal_size = 16GB" \
    "password_encryption = 'scram-sha-256'" "followup.database = 'postgres'" >/dev/null
printf 'local all postgres trust\nhost all all 127.0.0.1/32 scram-sha-256\n' >"$(cluster_dir bench)/data/pg_hba.conf"
cluster_start bench
export PGHOST=$(cluster_host bench) PGPORT=$(cluster_port bench) PGUSER=postgres PGDATABASE=bench_console
source tests/lib/integration.sh   # new_db, register_app, q

echo "building the data: $N assignments, $M messages" >&2
new_db bench_console
register_app
q "SELECT app.seed($N)" >/dev/null
q "INSERT INTO followup.policies (organization, remind_after_days, repeat_every_days, timezone, send_from, send_until, send_days)
   SELECT 'org-' || lpad(g::text, 2, '0'), 10, 5, 'Europe/Oslo', '08:00', '20:00', '{1,2,3,4,5}' FROM generate_series(1, 5) g" >/dev/null
# a year of quiet days, and 20,000 absences of mentors (a quarter still open)
q "INSERT INTO followup.quiet_days
   SELECT CASE WHEN g % 3 = 0 THEN '*' ELSE 'org-' || lpad((1 + g % 5)::text, 2, '0') END, current_date - 180 + 6 * g, 'holiday ' || g
     FROM generate_series(1, 60) g" >/dev/null
q "INSERT INTO followup.away (recipient_role, recipient_id, from_day, until_day, reason, set_by, set_at, ended_at, ended_by)
   SELECT 'mentor', (1001 + g % greatest($N / 4, 1))::text, current_date - g % 365, current_date - g % 365 + 14, 'holiday',
          'ann', now() - make_interval(days => g % 365), CASE WHEN g % 4 <> 0 THEN now() END, CASE WHEN g % 4 <> 0 THEN 'ann' END
     FROM generate_series(1, 20000) g" >/dev/null
# 60 days of scheduled runs, a minute or two each
q "INSERT INTO followup.runs (trigger, status, as_of, started_at, finished_at, assignments_scanned, reminders_enqueued)
   SELECT 'schedule', 'succeeded', d::date, d + time '03:00', d + time '03:00' + make_interval(secs => 60 + (g * 37) % 90),
          $N, $M / 30
     FROM generate_series(current_date - 59, current_date, interval '1 day') WITH ORDINALITY AS s(d, g)" >/dev/null
# M messages over the last 30 days, message ids in enqueue order
q "INSERT INTO followup.outbox (run_id, assignment_id, cycle_start, kind, sequence, recipient_role, recipient_id,
                                days_since_contact, organization, enqueued_at, visible_at, status, attempts,
                                delivered_at, cancelled_at, cancel_reason, last_error)
   SELECT r.run_id, (1 + g % $N)::text, current_date - 60, CASE WHEN g % 9 = 0 THEN 'escalation' ELSE 'reminder' END::followup.message_kind,
          g, CASE WHEN g % 9 = 0 THEN 'coordinator' ELSE 'mentor' END::followup.recipient_role,
          (1001 + g % greatest($N / 4, 1))::text, 14 + g % 30, 'org-' || lpad((1 + g % 20)::text, 2, '0'),
          t.at, t.at,
          s.status::followup.message_status, CASE WHEN s.status = 'pending' THEN 0 ELSE 1 + g % 3 END,
          CASE WHEN s.status = 'delivered' THEN t.at + interval '10 minutes' END,
          CASE WHEN s.status = 'cancelled' THEN t.at + interval '2 hours' END,
          CASE WHEN s.status = 'cancelled' THEN 'contact_logged' END,
          CASE WHEN s.status = 'dead' THEN 'HTTP 500 from the push service' END
     FROM generate_series(1, $M) AS g
    CROSS JOIN LATERAL (SELECT now() - make_interval(secs => 30 * 86400.0 * ($M - g) / $M) AS at) AS t
    CROSS JOIN LATERAL (SELECT CASE WHEN g % 120 = 0 THEN 'dead' WHEN g > $M - 90000 THEN 'pending'
                                    WHEN g % 12 = 1 THEN 'cancelled' ELSE 'delivered' END AS status) AS s
    LEFT JOIN followup.runs AS r ON r.as_of = t.at::date" >/dev/null
q "INSERT INTO followup.contact_corrections (assignment_id, new_value, reason, corrected_by, corrected_at)
   SELECT (1 + g * 97 % $N)::text, current_date - g % 30, 'phone call ' || g, 'ann', now() - make_interval(mins => g)
     FROM generate_series(1, 10000) g" >/dev/null
q "INSERT INTO followup.snoozes (assignment_id, until, reason, snoozed_by, snoozed_at, ended_at)
   SELECT (1 + g * 89 % $N)::text, current_date + g % 30, 'on leave ' || g, 'ann', now() - make_interval(mins => g),
          CASE WHEN g % 2 = 0 THEN now() END
     FROM generate_series(1, 5000) g" >/dev/null
q "INSERT INTO followup.repairs (assignment_id, old_value, new_value, reason, repaired_by, repaired_at)
   SELECT (1 + g % $N)::text, NULL, (current_date - 3)::text, 'import ran with triggers off',
          'ada', now() - make_interval(days => g / 5000)
     FROM generate_series(1, 20000) g" >/dev/null
q "INSERT INTO followup.audit_log (at, action, acting_role, subject, reason, details)
   SELECT now() - make_interval(mins => g), 'cancel', 'ada', NULL, 'sent by phone', jsonb_build_object('message_ids', ARRAY[g])
     FROM generate_series(1, 20000) g" >/dev/null
psql -X -q -c "VACUUM ANALYZE" >/dev/null
psql -X -q -v ON_ERROR_STOP=1 -f console/roles.sql >/dev/null
PASSWORD=bench-password
for i in $(seq 1 "$USERS"); do
    q "DROP ROLE IF EXISTS bench_user_$i" >/dev/null 2>&1 || true
    q "CREATE ROLE bench_user_$i LOGIN PASSWORD '$PASSWORD' IN ROLE followup_admin" >/dev/null
done
counts=$(q "SELECT (SELECT count(*) FROM app.assignments) || ' assignments, ' || (SELECT count(*) FROM followup.outbox)
            || ' messages (' || (SELECT string_agg(status || ' ' || n, ', ' ORDER BY status)
                                  FROM (SELECT status, count(*) n FROM followup.outbox GROUP BY 1) s) || ')'")

PORT=$(free_port)
"$CONSOLE" --database-url "host=127.0.0.1 port=$PGPORT dbname=bench_console sslmode=disable" \
    --listen "127.0.0.1:$PORT" --max-sessions $((USERS * 2)) 2>"$WORK/console.log" &
CONSOLE_PID=$!
BASE="http://127.0.0.1:$PORT"
for _ in $(seq 1 100); do curl -sf -o /dev/null "$BASE/healthz" && break; sleep 0.1; done
for i in $(seq 1 "$USERS"); do
    curl -s -o /dev/null -c "$WORK/jar$i" -X POST --data-urlencode "user=bench_user_$i" \
        --data-urlencode "password=$PASSWORD" "$BASE/login"
done

recent_run=$(q "SELECT max(run_id) FROM followup.runs")
old_run=$(q "SELECT min(run_id) FROM followup.runs WHERE as_of > current_date - 30")
some_day=$(q "SELECT (current_date - 12)::text")
with_history=$(q "SELECT assignment_id FROM followup.contact_corrections ORDER BY correction_id LIMIT 1")
before=$(q "SELECT max(message_id) - 600000 FROM followup.outbox")
pages=(
    "/" "/runs" "/runs?status=succeeded" "/runs/$recent_run" "/runs/$old_run" "/alerts"
    "/outbox" "/outbox?before=$before" "/outbox?status=pending" "/outbox?status=dead" "/outbox?status=claimed"
    "/outbox?status=delivered&organization=org-07" "/outbox?kind=escalation" "/outbox?organization=org-none"
    "/outbox?recipient=1001" "/outbox?date=$some_day" "/outbox?status=pending&limit=1000"
    "/assignments/$with_history" "/assignments/4242" "/drift" "/audit" "/audit?source=repairs" "/audit?source=log"
    "/policies" "/policies?from=2000-01-01" "/api/runs?limit=20" "/api/health" "/api/assignments/4242"
)

# fetch PAGE USER: ROUNDS+1 fetches (the first a warm-up), one time (ms) a line
fetch() {
    local page=$1 user=$2 i
    for i in $(seq 0 "$ROUNDS"); do
        t=$(curl -s -o /dev/null -b "$WORK/jar$user" -w '%{http_code} %{time_starttransfer}' "$BASE$page")
        [ "${t%% *}" = 200 ] || { echo "FAIL $page: HTTP ${t%% *}" >&2; continue; }
        [ "$i" -eq 0 ] || awk -v s="${t#* }" 'BEGIN { printf "%.1f\n", s * 1000 }'
    done
}

printf '\npg_followup console benchmark, %s, %s cores, PostgreSQL %s\n' "$(date -u +%F)" "$(nproc)" \
    "$(q "SHOW server_version")"
printf '%s; %s people logged in, each page fetched by all of them at once, %s times each\n\n' "$counts" "$USERS" "$ROUNDS"
printf '| page | median | p95 | max | <= 100 ms |\n|---|---|---|---|---|\n'
worst=0
for page in "${pages[@]}"; do
    fetchers=()
    for u in $(seq 1 "$USERS"); do
        fetch "$page" "$u" >"$WORK/times.$u" &
        fetchers+=($!)
    done
    wait "${fetchers[@]}"
    sort -g "$WORK"/times.* >"$WORK/all"
    n=$(wc -l <"$WORK/all")
    [ "$n" -gt 0 ] || { printf '| `%s` | failed | | | no |\n' "$page"; continue; }
    median=$(sed -n "$(( (n + 1) / 2 ))p" "$WORK/all")
    p95=$(sed -n "$(( (n * 95 + 99) / 100 ))p" "$WORK/all")
    max=$(tail -n 1 "$WORK/all")
    ok=$(awk -v m="$max" 'BEGIN { print (m <= 100 ? "yes" : "**no**") }')
    printf '| `%s` | %s ms | %s ms | %s ms | %s |\n' "$page" "$median" "$p95" "$max" "$ok"
    rm -f "$WORK"/times.*
done
# verify reads every assignment and activity: run on request, timed alone
t=$(curl -s -o /dev/null -b "$WORK/jar1" -w '%{time_starttransfer}' "$BASE/drift?check=1")
printf '\n`/drift?check=1` (followup.verify over %s assignments, asked for by one person, alone): %s ms\n' "$N" \
    "$(awk -v s="$t" 'BEGIN { printf "%.0f", s * 1000 }')"
