# Helpers for the integration scripts. Source it first; tests/run.sh exports
# PGHOST/PGPORT/PGUSER of the main private cluster (preloaded pg_followup) and
# CLUSTER_ROOT, so scripts can also start clusters of their own.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
source "$REPO/tests/lib/cluster.sh"
FAILED=0
export PGUSER=${PGUSER:-postgres}

# new_db NAME: a fresh database with the extension and the sample app.
new_db() {
    DB=$1
    dropdb --if-exists "$DB"
    createdb "$DB"
    psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -c "CREATE EXTENSION pg_followup" -f "$REPO/demo/app.sql" >/dev/null
}

# q SQL [psql args]: run SQL in $DB, print unaligned tuples.
q() {
    local sql=$1; shift
    psql -X -At -q -v ON_ERROR_STOP=1 -d "$DB" "$@" -c "$sql"
}

# expect DESCRIPTION ACTUAL EXPECTED
expect() {
    if [ "$2" == "$3" ]; then
        echo "ok - $1"
    else
        echo "FAIL - $1"
        echo "  expected: $3"
        echo "  actual:   $2"
        FAILED=1
    fi
}

# The day the tests pretend it is. The sample app is seeded relative to it
# (`seed N`) and runs are as of it (or of days computed from it), so what is
# due never depends on the day or the hour a test runs.
AS_OF=2026-06-15

# seed N: the sample app with N assignments, relative to $AS_OF.
seed() { q "SELECT app.seed($1, '$AS_OF')" >/dev/null; }

# day N: the date N days after $AS_OF (negative: before); calendar arithmetic
# only, it reads no clock.
day() { date -u -d "$AS_OF $1 days" +%F; }

# noon_tz: a time zone where it is about noon now (Etc/GMT±N, from the
# clock), for the tests that work on the real clock (the scheduler): nothing
# they do then crosses local midnight or meets the 03:00 default run_at.
noon_tz() {
    awk -v h="$(date -u +%H)" 'BEGIN { o = h - 12; printf "Etc/GMT%s%d", (o < 0 ? "-" : "+"), (o < 0 ? -o : o) }'
}

# long_on_duty: pretend the app was registered, and the scheduler on duty for
# $DB, two days ago, so that a run_at missed today is the scheduler's to
# catch up (followup._missed_day).
long_on_duty() {
    q "UPDATE followup.assignment_tables
          SET registered_at = now() - interval '2 days', tracked_since = now() - interval '2 days'"
    q "INSERT INTO followup.scheduler_duty (on_duty_since) VALUES (now() - interval '2 days')
       ON CONFLICT (singleton) DO UPDATE SET on_duty_since = EXCLUDED.on_duty_since"
}

# scheduler_ticked_after INSTANT: the scheduler of this cluster reported a
# tick (pg_stat_activity.query: "last tick …") after INSTANT (a timestamptz
# literal); a negative check waits for this first, so that the scheduler had
# its chance to act. A reload wakes it at once.
scheduler_ticked_after() {
    psql -X -q -d postgres -c "SELECT pg_reload_conf()" >/dev/null
    local i
    for i in $(seq 1 120); do
        [ "$(psql -X -At -q -d postgres -c "SELECT bool_or(substring(query FROM 'last tick ([^,]+)')::timestamptz > '$1')
               FROM pg_stat_activity WHERE backend_type = 'pg_followup scheduler'")" == "t" ] && return 0
        sleep 0.5
    done
    return 1
}

# wait_for_log PATTERN SECONDS: waits until the server log $LOG has a line
# matching PATTERN; false when the deadline passes first.
wait_for_log() {
    local i
    for i in $(seq 1 "$2"); do
        grep -q "$1" "$LOG" && return 0
        sleep 1
    done
    return 1
}

# abort MESSAGE: gives up on the whole script, with the logs in $WORK that
# say why (the notifier and console scripts).
abort() {
    echo "FAIL - $*"
    local f
    for f in "$WORK"/*.log "$WORK"/*/err "$WORK"/*/*.log; do
        [ -s "$f" ] && { echo "--- $f"; tail -n 30 "$f"; }
    done
    exit 1
}

# wait_until DESCRIPTION SECONDS COMMAND...: runs COMMAND every 0.1 s until it
# succeeds (a function, so that what it checks is looked at anew each time).
wait_until() {
    local what=$1 seconds=$2; shift 2
    local deadline=$((SECONDS + seconds))
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || abort "timed out after ${seconds}s waiting until $what"
        sleep 0.1
    done
}

# workspace_binary VAR PACKAGE: builds the workspace's debug binary PACKAGE
# and sets VAR to its path (gives up when it does not build).
workspace_binary() {
    echo "# building $2"
    (cd "$REPO" && cargo build --quiet -p "$2") || abort "cargo build -p $2"
    local target_dir
    target_dir=$(cd "$REPO" && cargo metadata --format-version 1 --no-deps \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
    [ -x "$target_dir/debug/$2" ] || abort "no binary at $target_dir/debug/$2"
    printf -v "$1" '%s' "$target_dir/debug/$2"
}

# wait_for SQL EXPECTED SECONDS: polls $DB until SQL returns EXPECTED; false
# when the deadline passes first (follow it with the expect that says so).
wait_for() {
    local i
    for i in $(seq 1 $(( $3 * 2 ))); do
        [ "$(q "$1" 2>/dev/null)" == "$2" ] && return 0
        sleep 0.5
    done
    return 1
}

finish() {
    [ "$FAILED" -eq 0 ] && echo "all checks passed" || echo "some checks FAILED"
    exit "$FAILED"
}

# The registration the demo uses.
register_app() {
    q "SELECT followup.track_assignments('app.assignments', 'id', 'mentor_id', 'last_contact_date',
           created_column => 'created_at', coordinator_column => 'coordinator_id',
           organization_column => 'organization', active_when => \$\$status = 'active'\$\$,
           payload_columns => '{organization,contact_id}')" >/dev/null
    q "SELECT followup.track_activities('app.activities', 'occurred_at', '{mentor_id,contact_id}')" >/dev/null
}

# app_role NAME: a login role that may only log activities (no privilege on
# assignments, none on followup.*).
app_role() {
    psql -X -q -d "$DB" -v ON_ERROR_STOP=1 <<SQL >/dev/null
DO \$\$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$1') THEN CREATE ROLE $1 LOGIN; END IF;
END \$\$;
GRANT USAGE ON SCHEMA app TO $1;
GRANT SELECT, INSERT ON app.activities TO $1;
SQL
}

# as ROLE SQL: run SQL as that role.
as() {
    local role=$1 sql=$2
    psql -X -At -q -v ON_ERROR_STOP=1 -d "$DB" -U "$role" -c "$sql"
}

# last_contact ASSIGNMENT_ID
last_contact() { q "SELECT coalesce(last_contact_date::text, 'NULL') FROM app.assignments WHERE id = $1"; }

# pair ASSIGNMENT_ID -> "mentor_id, contact_id"
pair() { q "SELECT mentor_id || ', ' || contact_id FROM app.assignments WHERE id = $1"; }

# drifted -> how many app.assignments disagree with their latest app.activities
# row: the invariant every registration kind must keep.
drifted() {
    q "SELECT count(*) FROM app.assignments a
        WHERE a.last_contact_date IS DISTINCT FROM
              (SELECT max(occurred_at)::date FROM app.activities x
                WHERE (x.mentor_id, x.contact_id) = (a.mentor_id, a.contact_id))"
}

# outbox_in_every_state CONSUMER: after a run, leave messages delivered (5),
# failed once and pending again (1) and claimed (3), so dump/restore and
# upgrade tests can show every delivery state survives.
outbox_in_every_state() {
    local consumer=$1 lease
    lease=$(q "SELECT DISTINCT lease_id FROM followup.claim('$consumer', 5)")
    q "SELECT followup.ack('$lease')" >/dev/null
    lease=$(q "SELECT lease_id FROM followup.claim('$consumer', 1)")
    q "SELECT followup.fail('$lease', (SELECT message_id FROM followup.outbox WHERE lease_id = '$lease'), 'HTTP 500')" >/dev/null
    q "SELECT lease_id FROM followup.claim('$consumer', 3)" >/dev/null
}

# still_due_after_contact LOG_CONTACT N: only still-due reminders are
# delivered (README, "Only still-due reminders are delivered"), on the
# script's own write path. The run as of $AS_OF enqueues; LOG_CONTACT (a
# function of the script, given assignment ids) logs contact on $AS_OF for
# the first N assignments with a pending message; a claim then withdraws
# exactly their messages (contact_logged) and hands out every other one once.
still_due_after_contact() {
    local log_contact=$1 n=$2 ids others
    expect "the run as of $AS_OF succeeds" "$(q "SELECT status FROM followup.run_now('$AS_OF')")" "succeeded"
    ids=$(q "SELECT string_agg(id, ' ') FROM (SELECT assignment_id AS id FROM followup.outbox WHERE status = 'pending'
                                              GROUP BY assignment_id ORDER BY min(message_id) LIMIT $n) AS first")
    # shellcheck disable=SC2086
    "$log_contact" $ids
    local contacted="string_to_array('$ids', ' ')"
    others=$(q "SELECT count(*) FROM followup.outbox WHERE status = 'pending' AND assignment_id <> ALL ($contacted)")
    expect "a claim hands out every message of the others, once" \
        "$(q "SELECT count(*) FROM followup.claim('it-still-due', 10000)")" "$others"
    expect "the $n contacted assignments' messages are withdrawn (contact_logged), never handed out" \
        "$(q "SELECT count(DISTINCT assignment_id) || ':' || count(*) FILTER (WHERE status <> 'cancelled'
                     OR cancel_reason <> 'contact_logged' OR attempts > 0)
                FROM followup.outbox WHERE assignment_id = ANY ($contacted)")" "$n:0"
    expect "no message is left to claim" "$(q "SELECT count(*) FROM followup.claim('it-again', 10000)")" "0"
}
