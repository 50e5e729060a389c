#!/usr/bin/env bash
# Load: 10 concurrent run_now calls for the same day while 4
# sessions stream activity inserts. Exactly one run does the work, the other
# nine are skipped (naming the holder), no message is enqueued twice, and at
# the end every last_contact_date matches its activities.
#
# The winning run is held up by a lock on the assignments table until all
# ten calls have started, whatever the machine's speed.
source "$(dirname "$0")/../lib/integration.sh"
new_db it_load
seed 20000
register_app

# 4 sessions inserting activities (single rows, random assignments, dates in
# the 30 days before $AS_OF) for 12 seconds
cat >"$CLUSTER_ROOT/load_insert.sql" <<SQL
\set id random(1, 20000)
\set days random(0, 30)
INSERT INTO app.activities (mentor_id, contact_id, occurred_at, registration)
SELECT mentor_id, contact_id, timestamptz '$AS_OF 12:00+00' - make_interval(days => :days), 'direct' FROM app.assignments WHERE id = :id;
SQL
"$PG_BIN/pgbench" -n -c 4 -j 4 -T 12 -f "$CLUSTER_ROOT/load_insert.sql" "$DB" >"$CLUSTER_ROOT/load_pgbench.log" 2>&1 &
inserts=$!
wait_for "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgbench' AND datname = '$DB'" "4" 30 || true

# Hold the assignments table until all ten runs have started: the first one
# to take the run lock waits for the table, the nine others find the lock
# held, however fast or slow the machine.
coproc LOCKER { psql -X -q -d "$DB" >/dev/null 2>&1; }
echo "BEGIN; LOCK TABLE app.assignments;" >&"${LOCKER[1]}"
wait_for "SELECT count(*) FROM pg_locks WHERE relation = 'app.assignments'::regclass AND mode = 'AccessExclusiveLock' AND granted" "1" 30 || true
pids=()
for i in $(seq 1 10); do
    q "SELECT status FROM followup.run_now('$AS_OF')" >"$CLUSTER_ROOT/load_run_$i.out" 2>&1 &
    pids+=($!)
done
wait_for "SELECT count(*) FILTER (WHERE status = 'skipped') || ' ' || count(*) FILTER (WHERE status = 'running')
            FROM followup.runs WHERE as_of = '$AS_OF'" "9 1" 60 || true
echo "COMMIT;" >&"${LOCKER[1]}"
exec {LOCKER[1]}>&-
wait "${pids[@]}"
wait "$inserts"

expect "the activity streams ran" "$(grep -c 'number of failed transactions: 0' "$CLUSTER_ROOT/load_pgbench.log")" "1"
expect "ten runs for the day: one succeeded, nine skipped" \
    "$(q "SELECT string_agg(status || '=' || n, ',' ORDER BY status) FROM (SELECT status, count(*) AS n FROM followup.runs WHERE as_of = '$AS_OF' GROUP BY status) s")" \
    "succeeded=1,skipped=9"
expect "each run_now call returned its run's status" \
    "$(cat "$CLUSTER_ROOT"/load_run_*.out | sort | uniq -c | awk '{print $2 "=" $1}' | paste -sd, -)" "skipped=9,succeeded=1"
expect "every skipped run names the winner's pid" \
    "$(q "SELECT count(*) FROM followup.runs s, followup.runs w
           WHERE s.status = 'skipped' AND w.status = 'succeeded'
             AND s.error = format('another run holds the lock (pid %s)', w.backend_pid)")" "9"
expect "the winner enqueued messages" "$(q "SELECT reminders_enqueued > 0 FROM followup.runs WHERE status = 'succeeded'")" "t"
expect "no message enqueued twice" \
    "$(q "SELECT count(*) - count(DISTINCT (assignment_id, cycle_start, kind, sequence)) FROM followup.outbox")" "0"
expect "every last_contact_date matches its activities" \
    "$(q "SELECT count(*) FROM app.assignments a
           WHERE a.last_contact_date IS DISTINCT FROM
                 (SELECT max(occurred_at)::date FROM app.activities x
                   WHERE x.mentor_id = a.mentor_id AND x.contact_id = a.contact_id)")" "0"
missing=$(q "SELECT count(*) FROM followup.preview('$AS_OF')")
expect "a rerun after the load enqueues exactly what contacts logged during the run made due" \
    "$(q "SELECT reminders_enqueued FROM followup.run_now('$AS_OF')")" "$missing"
expect "and then nothing is due any more" "$(q "SELECT count(*) FROM followup.preview('$AS_OF')")" "0"
finish
