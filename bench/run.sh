#!/usr/bin/env bash
# pg_followup benchmark (not a test): every figure is a ratio against a
# baseline measured in the same run, on the same data, in the same cluster.
#
#   bench/run.sh                      N = 10,000  300,000  1,000,000
#   bench/run.sh 10000 100000         other sizes
#   PGBENCH_SECONDS=30 (default)      length of each single-row insert run
#   ONLY_RUNS=1                       only sections 1 and 2 (the run vs the baselines)
#   SKIP_INSTALL=1                    use the pg_followup already installed (in PG_BIN's server)
#
# For each N it builds the sample app (demo/app.sql: 20 organizations, 10%
# closed, 1 in 7 never contacted, contacts spread over 60 days, two policies)
# with tracking on, then measures:
#   1. the reminder run vs the best hand-written INSERT … SELECT … ON CONFLICT
#      DO NOTHING into an equivalent outbox table with a text idempotency key
#      (same contract: policies, escalations, the consumer protocol's columns
#      and indexes); first run and same-day rerun (best of 3, each on an empty
#      outbox);
#   2. the same against the minimal hand-written baseline (bigserial key, one
#      text unique key, fixed 14/7 rule, one statement), with the policies
#      reduced to the default 14/7 row so both enqueue the same messages;
#   3. a bulk INSERT of N activities into the tracked table vs an identical
#      untracked table, one with a typical FOR EACH ROW PL/pgSQL trigger, and
#      one with a hand-written FOR EACH STATEMENT trigger (transition table,
#      one raise-only UPDATE);
#   4. single-row activity inserts with pgbench (2 clients), tracked vs untracked;
#   5. how much memory the backend doing the run allocates (peak RssAnon growth);
#   6. the run with send windows for half of the organizations vs without;
#   7. verify over N assignments with two tracked activity tables vs the
#      hand-written check (a correlated subquery per assignment), and repair of
#      N/10 drifted assignments vs the hand-written correlated UPDATE.
# Runs on a private cluster with PostgreSQL's defaults for every planner and
# JIT setting (what users run: jit = on), and durable settings (fsync,
# synchronous_commit on); only memory and checkpoint settings are raised.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(10000 300000 1000000)
PGBENCH_SECONDS=${PGBENCH_SECONDS:-30}

if [ -z "${SKIP_INSTALL:-}" ]; then
    tests/setup.sh >/dev/null
    echo "building and installing pg_followup (release)" >&2
    tests/lib/install.sh --release
fi
source tests/lib/cluster.sh
trap cluster_cleanup_all EXIT
cluster_init bench "fsync = on" "synchronous_commit = on" "shared_buffers = 2GB" "work_mem = 64MB" \
    "maintenance_work_mem = 1GB" "max_wal_size = 16GB" "checkpoint_timeout = 1h" \
    "followup.database = 'postgres'"
cluster_start bench
export PGHOST=$(cluster_host bench) PGPORT=$(cluster_port bench) PGUSER=postgres

q() { psql -X -At -q -v ON_ERROR_STOP=1 -d "$DB" -c "$1"; }
# ms SQL: wall time of one statement in milliseconds, as psql measures it
ms() {
    psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -c '\timing on' -c "$1" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -n 1
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
min() { printf '%s\n' "$@" | sort -g | head -n 1; }
fmt_ms() { awk -v v="$1" 'BEGIN { if (v >= 1000) printf "%.2f s", v / 1000; else printf "%.0f ms", v }'; }

setup_database() {
    DB="bench_$1"
    dropdb --if-exists "$DB"
    createdb "$DB"
    psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -c "CREATE EXTENSION pg_followup" -f demo/app.sql -f bench/baseline.sql >/dev/null
    q "INSERT INTO followup.policies VALUES ('org-01', 10, 5, 30, 6, true), ('org-02', 10, 5, 30, 6, true),
                                            ('org-03', 10, 5, 30, 6, true), ('org-04', 10, 5, 30, 6, true),
                                            ('org-05', 10, 5, 30, 6, true)"
    q "SELECT followup.track_assignments('app.assignments', 'id', 'mentor_id', 'last_contact_date',
           created_column => 'created_at', coordinator_column => 'coordinator_id',
           organization_column => 'organization', active_when => \$\$status = 'active'\$\$,
           payload_columns => '{organization,contact_id}')" >/dev/null
    q "SELECT followup.track_activities('app.activities', 'occurred_at', '{mentor_id,contact_id}')" >/dev/null
    q "SELECT app.seed($1)" >/dev/null
    q "SELECT bench.prepare()" >/dev/null
    psql -X -q -d "$DB" -c "VACUUM ANALYZE" >/dev/null
    psql -X -q -d "$DB" -c "CHECKPOINT" >/dev/null
}

# 1, 2. The run vs a baseline (function, table), best of 3, each on an empty
# outbox: a first run, then a same-day rerun.
bench_run() {
    local fn=$1 table=$2 ours=() base=() ours_rerun=() base_rerun=() one=() i
    for i in 1 2 3; do
        q "TRUNCATE followup.outbox, $table, followup.runs" >/dev/null
        psql -X -q -d "$DB" -c "VACUUM ANALYZE followup.outbox, $table" -c "CHECKPOINT" >/dev/null
        base+=("$(ms "SELECT $fn(current_date)")")
        base_rerun+=("$(ms "SELECT $fn(current_date)")")
        psql -X -q -d "$DB" -c "CHECKPOINT" >/dev/null
        ours+=("$(ms "SELECT status FROM followup.run_now(current_date)")")
        ours_rerun+=("$(ms "SELECT status FROM followup.run_now(current_date)")")
        # the same first run as one statement (followup.run_workers = 1)
        q "TRUNCATE followup.outbox" >/dev/null
        psql -X -q -d "$DB" -c "VACUUM ANALYZE followup.outbox" -c "CHECKPOINT" >/dev/null
        one+=("$(ms "SET followup.run_workers = 1; SELECT status FROM followup.run_now(current_date)")")
    done
    RUN_OURS=$(min "${ours[@]}") RUN_BASE=$(min "${base[@]}") RUN_ONE=$(min "${one[@]}")
    RERUN_OURS=$(min "${ours_rerun[@]}") RERUN_BASE=$(min "${base_rerun[@]}")
    MESSAGES=$(q "SELECT count(*) FROM followup.outbox")
    local baseline_messages
    baseline_messages=$(q "SELECT count(*) FROM $table")
    if [ "$MESSAGES" != "$baseline_messages" ]; then
        echo "the run enqueued $MESSAGES messages, the baseline $baseline_messages: not the same work" >&2
        exit 1
    fi
    q "SELECT count(*) FROM followup.runs WHERE status <> 'succeeded'" | grep -qx 0 \
        || { echo "a run did not succeed" >&2; exit 1; }
}

# 3. Bulk insert of N activities: tracked vs untracked vs row trigger vs
# statement trigger (best of 2), for the rows of bench.$1 (new_activities or
# old_activities)
bench_bulk() {
    local source=$1 tracked=() plain=() rowtrig=() stmttrig=() i
    for i in 1 2; do
        q "SELECT bench.reset_activities()" >/dev/null
        psql -X -q -d "$DB" -c "VACUUM ANALYZE app.assignments, bench.assignments_copy, bench.assignments_stmt,
                                               app.activities, bench.activities_plain, bench.activities_rowtrigger,
                                               bench.activities_stmttrigger" \
            -c "CHECKPOINT" >/dev/null
        plain+=("$(ms "INSERT INTO bench.activities_plain (mentor_id, contact_id, occurred_at, registration)
                       SELECT mentor_id, contact_id, occurred_at, registration FROM bench.$source")")
        rowtrig+=("$(ms "INSERT INTO bench.activities_rowtrigger (mentor_id, contact_id, occurred_at, registration)
                         SELECT mentor_id, contact_id, occurred_at, registration FROM bench.$source")")
        stmttrig+=("$(ms "INSERT INTO bench.activities_stmttrigger (mentor_id, contact_id, occurred_at, registration)
                          SELECT mentor_id, contact_id, occurred_at, registration FROM bench.$source")")
        tracked+=("$(ms "INSERT INTO app.activities (mentor_id, contact_id, occurred_at, registration)
                         SELECT mentor_id, contact_id, occurred_at, registration FROM bench.$source")")
    done
    BULK_TRACKED=$(min "${tracked[@]}") BULK_PLAIN=$(min "${plain[@]}") BULK_ROW=$(min "${rowtrig[@]}")
    BULK_STMT=$(min "${stmttrig[@]}")
    BULK_MOVED=$(q "SELECT count(*) FROM app.assignments a JOIN bench.last_contact_before b USING (id)
                     WHERE a.last_contact_date IS DISTINCT FROM b.last_contact_date")
    [ "$(q "SELECT bench.tracking_is_exact()")" = "t" ] || { echo "tracking drifted" >&2; exit 1; }
    q "SELECT bench.reset_activities()" >/dev/null
}

# 4. Single-row inserts with pgbench, 2 clients
bench_single() {
    local n=$1
    for table in app.activities bench.activities_plain; do
        cat >"$CLUSTER_ROOT/single_$table.sql" <<SQL
\\set id random(1, $n)
INSERT INTO $table (mentor_id, contact_id, occurred_at, registration)
SELECT mentor_id, contact_id, now(), 'direct' FROM app.assignments WHERE id = :id;
SQL
    done
    psql -X -q -d "$DB" -c "CHECKPOINT" >/dev/null
    TPS_PLAIN=$("$PG_BIN/pgbench" -n -c 2 -j 2 -T "$PGBENCH_SECONDS" -f "$CLUSTER_ROOT/single_bench.activities_plain.sql" "$DB" 2>/dev/null \
        | sed -n 's/^tps = \([0-9.]*\) .*/\1/p')
    psql -X -q -d "$DB" -c "CHECKPOINT" >/dev/null
    TPS_TRACKED=$("$PG_BIN/pgbench" -n -c 2 -j 2 -T "$PGBENCH_SECONDS" -f "$CLUSTER_ROOT/single_app.activities.sql" "$DB" 2>/dev/null \
        | sed -n 's/^tps = \([0-9.]*\) .*/\1/p')
}

# 5. Memory of the backend doing the run: its anonymous resident memory
# (RssAnon in /proc/PID/status: palloc'd memory, not the shared buffers it
# touches), sampled every 20 ms, peak minus what the idle backend held. The run
# goes in-session (followup.run_in_worker = off) so that the sampler knows the
# process before the run starts; a worker runs the same scan.
bench_memory() {
    q "TRUNCATE followup.outbox" >/dev/null
    PGAPPNAME=followup-bench-run psql -X -q -d "$DB" -c "SELECT pg_sleep(1)" \
        -c "SET followup.run_in_worker = off" -c "SELECT status FROM followup.run_now(current_date)" >/dev/null &
    local runner=$! pid="" idle=0 peak=0 kb
    for _ in $(seq 1 100); do
        pid=$(q "SELECT pid FROM pg_stat_activity WHERE application_name = 'followup-bench-run'")
        [ -z "$pid" ] || break
    done
    idle=$(awk '/^RssAnon:/ { print $2 }' "/proc/$pid/status")
    while kill -0 "$runner" 2>/dev/null; do
        kb=$(awk '/^RssAnon:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
        [ "${kb:-0}" -gt "$peak" ] && peak=$kb
        sleep 0.02
    done
    wait "$runner"
    PEAK_KB=$((peak > idle ? peak - idle : 0))
}

# 6. The first run with send windows for half of the 20 organizations (in
# other time zones) vs the same run without (best of 3, empty outbox).
bench_windows() {
    local with=() without=() i
    for i in 1 2 3; do
        q "UPDATE followup.policies SET timezone = NULL, send_from = NULL, send_until = NULL"
        q "TRUNCATE followup.outbox, followup.runs" >/dev/null
        psql -X -q -d "$DB" -c "VACUUM ANALYZE followup.outbox" -c "CHECKPOINT" >/dev/null
        without+=("$(ms "SELECT status FROM followup.run_now(current_date)")")
        q "INSERT INTO followup.policies (organization, remind_after_days, repeat_every_days, timezone, send_from, send_until)
           SELECT 'org-' || lpad(g::text, 2, '0'), 14, 7, (ARRAY['Asia/Tokyo', 'America/Chicago', 'Europe/Oslo'])[1 + g % 3],
                  '09:00', '18:00'
             FROM generate_series(6, 15) g
           ON CONFLICT (organization) DO UPDATE SET timezone = EXCLUDED.timezone, send_from = EXCLUDED.send_from,
                                                    send_until = EXCLUDED.send_until"
        q "TRUNCATE followup.outbox, followup.runs" >/dev/null
        psql -X -q -d "$DB" -c "VACUUM ANALYZE followup.outbox" -c "CHECKPOINT" >/dev/null
        with+=("$(ms "SELECT status FROM followup.run_now(current_date)")")
        q "DELETE FROM followup.policies WHERE organization BETWEEN 'org-06' AND 'org-15'"
    done
    WIN_OURS=$(min "${with[@]}") WIN_BASE=$(min "${without[@]}")
}

# 7. verify (one set-based pass) vs the hand-written check, with a second
# tracked activity table; then repair of N/10 drifted assignments vs the
# hand-written correlated UPDATE (each on the same drift).
bench_repair() {
    q "INSERT INTO bench.calls SELECT id, (current_date - (id % 45)::int)::timestamptz + interval '15 hours'
         FROM app.assignments WHERE id % 3 = 0;
       CREATE INDEX ON bench.calls (assignment, called_at)" >/dev/null
    q "SELECT followup.track_activities('bench.calls', 'called_at', '{assignment}', '{id}')" >/dev/null
    psql -X -q -d "$DB" -c "VACUUM ANALYZE" -c "CHECKPOINT" >/dev/null
    local verify=() base=() i
    for i in 1 2; do
        verify+=("$(ms "SELECT count(*) FROM followup.verify(2000000000)")")
        base+=("$(ms "SELECT bench.naive_verify()")")
    done
    VERIFY_OURS=$(min "${verify[@]}") VERIFY_BASE=$(min "${base[@]}")
    local repair=() naive=()
    for i in 1 2; do
        q "SELECT bench.drift()" >/dev/null
        psql -X -q -d "$DB" -c "VACUUM ANALYZE app.assignments" -c "CHECKPOINT" >/dev/null
        DRIFTED=$(q "SELECT count(*) FROM followup.verify(2000000000)")
        repair+=("$(ms "SELECT followup.repair('benchmark')")")
        q "SELECT bench.drift()" >/dev/null
        psql -X -q -d "$DB" -c "VACUUM ANALYZE app.assignments" -c "CHECKPOINT" >/dev/null
        naive+=("$(ms "SELECT bench.naive_repair()")")
        [ "$(q "SELECT count(*) FROM followup.verify(1)")" = 0 ] || { echo "the hand-written repair left drift" >&2; exit 1; }
    done
    REPAIR_OURS=$(min "${repair[@]}") REPAIR_BASE=$(min "${naive[@]}")
}

run_rows=() minimal_rows=() track_rows=() tps_rows=() window_rows=() repair_rows=()
run_row() {
    printf '| %s | %s | %s | %s | **%s** | %s | %s | **%s** | %s | %s |' \
        "$1" "$MESSAGES" "$(fmt_ms "$RUN_OURS")" "$(fmt_ms "$RUN_BASE")" "$(ratio "$RUN_OURS" "$RUN_BASE")" \
        "$(fmt_ms "$RERUN_OURS")" "$(fmt_ms "$RERUN_BASE")" "$(ratio "$RERUN_OURS" "$RERUN_BASE")" \
        "$(fmt_ms "$RUN_ONE")" "$(ratio "$RUN_ONE" "$RUN_BASE")"
}
for n in "${SIZES[@]}"; do
    echo "== N = $n: building the data set" >&2
    setup_database "$n"
    echo "== N = $n: reminder run vs the same-contract baseline" >&2
    bench_run bench.baseline_run bench.outbox_baseline
    contract_row=$(run_row "$n")
    echo "== N = $n: reminder run vs the minimal baseline (default 14/7 policy only)" >&2
    q "CREATE TABLE bench.policies_saved AS SELECT * FROM followup.policies WHERE organization <> '*';
       DELETE FROM followup.policies WHERE organization <> '*'"
    bench_run bench.minimal_run bench.outbox_minimal
    minimal_rows+=("$(run_row "$n")")
    q "INSERT INTO followup.policies SELECT * FROM bench.policies_saved; DROP TABLE bench.policies_saved"
    if [ -n "${ONLY_RUNS:-}" ]; then
        run_rows+=("$contract_row - |")
        dropdb "$DB"
        continue
    fi
    echo "== N = $n: bulk inserts" >&2
    bench_bulk old_activities
    OLD_TRACKED=$BULK_TRACKED OLD_PLAIN=$BULK_PLAIN OLD_ROW=$BULK_ROW OLD_STMT=$BULK_STMT OLD_MOVED=$BULK_MOVED
    bench_bulk new_activities
    echo "== N = $n: single-row inserts (pgbench, ${PGBENCH_SECONDS}s each)" >&2
    bench_single "$n"
    echo "== N = $n: memory" >&2
    bench_memory
    echo "== N = $n: send windows, verify and repair" >&2
    bench_windows
    bench_repair
    run_rows+=("$contract_row $(awk -v k="$PEAK_KB" 'BEGIN { printf "%.1f", k / 1024 }') MB |")
    track_rows+=("$(printf '| %s | new contacts | %s | %s | %s | %s | %s | **%s** | **%s** | %s |' \
        "$n" "$BULK_MOVED" "$(fmt_ms "$BULK_TRACKED")" "$(fmt_ms "$BULK_PLAIN")" "$(fmt_ms "$BULK_STMT")" \
        "$(fmt_ms "$BULK_ROW")" "$(ratio "$BULK_TRACKED" "$BULK_PLAIN")" "$(ratio "$BULK_TRACKED" "$BULK_STMT")" \
        "$(ratio "$BULK_ROW" "$BULK_PLAIN")")")
    track_rows+=("$(printf '| %s | history import | %s | %s | %s | %s | %s | **%s** | **%s** | %s |' \
        "$n" "$OLD_MOVED" "$(fmt_ms "$OLD_TRACKED")" "$(fmt_ms "$OLD_PLAIN")" "$(fmt_ms "$OLD_STMT")" \
        "$(fmt_ms "$OLD_ROW")" "$(ratio "$OLD_TRACKED" "$OLD_PLAIN")" "$(ratio "$OLD_TRACKED" "$OLD_STMT")" \
        "$(ratio "$OLD_ROW" "$OLD_PLAIN")")")
    tps_rows+=("$(printf '| %s | %s | %s | **%s** |' "$n" "${TPS_TRACKED%.*}" "${TPS_PLAIN%.*}" "$(ratio "$TPS_TRACKED" "$TPS_PLAIN")")")
    window_rows+=("$(printf '| %s | %s | %s | **%s** |' "$n" "$(fmt_ms "$WIN_OURS")" "$(fmt_ms "$WIN_BASE")" "$(ratio "$WIN_OURS" "$WIN_BASE")")")
    repair_rows+=("$(printf '| %s | %s | %s | **%s** | %s | %s | %s | **%s** |' "$n" \
        "$(fmt_ms "$VERIFY_OURS")" "$(fmt_ms "$VERIFY_BASE")" "$(ratio "$VERIFY_OURS" "$VERIFY_BASE")" \
        "$DRIFTED" "$(fmt_ms "$REPAIR_OURS")" "$(fmt_ms "$REPAIR_BASE")" "$(ratio "$REPAIR_OURS" "$REPAIR_BASE")")")
    dropdb "$DB"
done

cat <<EOT

pg_followup benchmark, $(date -u +%Y-%m-%d), $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo),
PostgreSQL $(psql -X -At -d postgres -c "SHOW server_version"), default planner and JIT settings (jit $(psql -X -At -d postgres -c "SHOW jit")),
fsync and synchronous_commit on, shared_buffers 2GB, work_mem 64MB.
Times are the best of 3 (runs) or 2 (bulk inserts) as psql measures them; a ratio is ours / the baseline's.

The reminder run vs the same contract by hand: one INSERT … SELECT … ON CONFLICT DO NOTHING applying the
policies, into an outbox with followup.outbox's columns and indexes and a text idempotency key (same messages):

| N assignments | messages | run | baseline | ratio | same-day rerun | baseline rerun | ratio | run as one statement | ratio | run's peak memory growth |
|---|---|---|---|---|---|---|---|---|---|---|
EOT
printf '%s\n' "${run_rows[@]}"
cat <<EOT

The reminder run vs the minimal hand-written baseline: a bigserial key, one text unique idempotency key, a fixed
14-day / 7-day rule, one INSERT … SELECT … ON CONFLICT DO NOTHING (policies reduced to the default 14/7 row, so
both enqueue the same messages):

| N assignments | messages | run | minimal | ratio | same-day rerun | minimal rerun | ratio | run as one statement | ratio |
|---|---|---|---|---|---|---|---|---|---|
EOT
printf '%s\n' "${minimal_rows[@]}"
[ -z "${ONLY_RUNS:-}" ] || exit 0
cat <<EOT

A bulk INSERT … SELECT of N activities: tracked vs the same insert into an untracked copy of the table, into a
copy with a hand-written FOR EACH STATEMENT trigger (transition table, one raise-only UPDATE), and into a copy
with a typical FOR EACH ROW PL/pgSQL trigger:

| N activities | rows | last contacts moved | tracked | untracked | statement trigger | row trigger | tracked / untracked | tracked / statement trigger | row trigger / untracked |
|---|---|---|---|---|---|---|---|---|---|
EOT
printf '%s\n' "${track_rows[@]}"
cat <<EOT

Single-row activity inserts, pgbench with 2 clients for ${PGBENCH_SECONDS} s each:

| N assignments | TPS tracked | TPS untracked | ratio |
|---|---|---|---|
EOT
printf '%s\n' "${tps_rows[@]}"
cat <<EOT

The first run with send windows (09:00-18:00 in Tokyo, Chicago or Oslo) for half of the organizations, vs the
same run without windows:

| N assignments | with windows | without | ratio |
|---|---|---|---|
EOT
printf '%s\n' "${window_rows[@]}"
cat <<EOT

followup.verify over N assignments (two tracked activity tables) vs the hand-written check (a correlated
subquery per assignment), and followup.repair (audited) vs the hand-written correlated UPDATE (no audit), on
the same drift (every tenth assignment):

| N assignments | verify | hand-written | ratio | drifted | repair | hand-written | ratio |
|---|---|---|---|---|---|---|---|
EOT
printf '%s\n' "${repair_rows[@]}"
