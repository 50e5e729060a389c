#!/usr/bin/env bash
# Rows applied by logical replication on a subscriber keep the subscriber's
# last_contact_date true (SPEC §2). Apply fires no statement triggers; the
# row-level trigger enabled for replicas does the work, on a plain table and
# on a partitioned one.
source "$(dirname "$0")/../lib/integration.sh"
trap 'cluster_stop sub immediate' EXIT

# publisher: the main cluster
new_db it_logrepl_pub
seed 60
q "CREATE TABLE app.visits (mentor_id bigint, contact_id bigint, visited_on date, PRIMARY KEY (mentor_id, contact_id, visited_on))"
q "ALTER TABLE app.activities REPLICA IDENTITY FULL"
q "CREATE PUBLICATION followup_pub FOR TABLE app.activities, app.visits"
PUB_CONN="host=$PGHOST port=$PGPORT user=postgres dbname=it_logrepl_pub"

# subscriber: a second cluster with the same app, its own assignments, and
# visits partitioned by year
cluster_init sub && cluster_start sub
SUB_HOST=$(cluster_host sub) SUB_PORT=$(cluster_port sub)
sq() { psql -X -At -q -v ON_ERROR_STOP=1 -h "$SUB_HOST" -p "$SUB_PORT" -U postgres -d sub -c "$1"; }
createdb -h "$SUB_HOST" -p "$SUB_PORT" -U postgres sub
psql -X -q -v ON_ERROR_STOP=1 -h "$SUB_HOST" -p "$SUB_PORT" -U postgres -d sub \
    -c "CREATE EXTENSION pg_followup" -f "$REPO/demo/app.sql" >/dev/null
sq "SELECT app.seed(60, '$AS_OF')" >/dev/null
sq "TRUNCATE app.activities"
sq "UPDATE app.assignments SET last_contact_date = NULL"
sq "CREATE TABLE app.visits (mentor_id bigint, contact_id bigint, visited_on date, PRIMARY KEY (mentor_id, contact_id, visited_on))
    PARTITION BY RANGE (visited_on)"
sq "CREATE TABLE app.visits_old PARTITION OF app.visits FOR VALUES FROM (MINVALUE) TO ('2026-01-01')"
sq "CREATE TABLE app.visits_new PARTITION OF app.visits FOR VALUES FROM ('2026-01-01') TO (MAXVALUE)"
sq "SELECT followup.track_assignments('app.assignments', 'id', 'mentor_id', 'last_contact_date')" >/dev/null
sq "SELECT followup.track_activities('app.activities', 'occurred_at', '{mentor_id,contact_id}')" >/dev/null
sq "SELECT followup.track_activities('app.visits', 'visited_on', '{mentor_id,contact_id}')" >/dev/null
sq "CREATE SUBSCRIPTION followup_sub CONNECTION '$PUB_CONN' PUBLICATION followup_pub WITH (copy_data = true)" >/dev/null

# wait_for SQL EXPECTED: poll the subscriber until SQL returns EXPECTED (60 s)
wait_for() {
    local i
    for i in $(seq 1 120); do
        [ "$(sq "$1")" == "$2" ] && return 0
        sleep 0.5
    done
    return 1
}
drift="SELECT count(*) FROM app.assignments a
        WHERE a.last_contact_date IS DISTINCT FROM greatest(
              (SELECT max(occurred_at)::date FROM app.activities x WHERE (x.mentor_id, x.contact_id) = (a.mentor_id, a.contact_id)),
              (SELECT max(visited_on) FROM app.visits v WHERE (v.mentor_id, v.contact_id) = (a.mentor_id, a.contact_id)))"

pub_count=$(q "SELECT count(*) FROM app.activities")
wait_for "SELECT count(*) FROM app.activities" "$pub_count" || echo "initial sync did not finish"
expect "initial table sync copied every activity" "$(sq "SELECT count(*) FROM app.activities")" "$pub_count"
expect "initial sync rows set last_contact_date on the subscriber" "$(sq "$drift")" "0"
expect "and some assignments have a last contact" \
    "$(sq "SELECT count(*) > 0 FROM app.assignments WHERE last_contact_date IS NOT NULL")" "t"

# streamed changes: single insert, multi-row insert, update, delete
q "INSERT INTO app.activities (mentor_id, contact_id, occurred_at, registration)
   SELECT mentor_id, contact_id, '$(day 1) 12:00+00', 'direct' FROM app.assignments WHERE id = 3"
q "INSERT INTO app.activities (mentor_id, contact_id, occurred_at, registration)
   SELECT mentor_id, contact_id, '$AS_OF 12:00+00', 'bulk' FROM app.assignments WHERE id BETWEEN 10 AND 19"
wait_for "SELECT last_contact_date FROM app.assignments WHERE id = 3" "$(day 1)" || true
expect "a replicated single insert sets the date" "$(sq "SELECT last_contact_date FROM app.assignments WHERE id = 3")" "$(day 1)"
wait_for "SELECT count(*) FROM app.assignments WHERE id BETWEEN 10 AND 19 AND last_contact_date = '$AS_OF'" "10" || true
expect "a replicated multi-row insert sets every date" \
    "$(sq "SELECT count(*) FROM app.assignments WHERE id BETWEEN 10 AND 19 AND last_contact_date = '$AS_OF'")" "10"

q "UPDATE app.activities SET occurred_at = occurred_at - interval '400 days'
    WHERE (mentor_id, contact_id) = (SELECT mentor_id, contact_id FROM app.assignments WHERE id = 3)
      AND occurred_at = '$(day 1) 12:00+00'"
q "DELETE FROM app.activities WHERE registration = 'bulk' AND occurred_at >= '$(day -1) 12:00+00'
      AND (mentor_id, contact_id) IN (SELECT mentor_id, contact_id FROM app.assignments WHERE id BETWEEN 10 AND 14)"
wait_for "SELECT count(*) FROM app.activities" "$(q "SELECT count(*) FROM app.activities")" || true
wait_for "SELECT last_contact_date = '$(day 1)' FROM app.assignments WHERE id = 3" "f" || true
wait_for "$drift" "0" || true
expect "replicated update and delete recompute: no drift" "$(sq "$drift")" "0"
expect "the re-dated activity no longer counts" \
    "$(sq "SELECT last_contact_date = '$(day 1)' FROM app.assignments WHERE id = 3")" "f"

# into a partitioned table on the subscriber
q "INSERT INTO app.visits SELECT mentor_id, contact_id, date '$(day 2)' FROM app.assignments WHERE id IN (21, 22)"
q "INSERT INTO app.visits SELECT mentor_id, contact_id, date '2025-06-01' FROM app.assignments WHERE id = 23"
wait_for "SELECT count(*) FROM app.visits" "3" || true
wait_for "$drift" "0" || true
expect "replicated rows routed into partitions set the dates" \
    "$(sq "SELECT string_agg(last_contact_date::text, ',' ORDER BY id) FROM app.assignments WHERE id IN (21, 22)")" \
    "$(day 2),$(day 2)"
expect "no drift after replicating into partitions" "$(sq "$drift")" "0"
expect "the row trigger is enabled for replication only, on the table and its partitions" \
    "$(sq "SELECT string_agg(DISTINCT tgenabled::text, '') FROM pg_trigger WHERE tgname = 'followup_activity_replica'")" "R"

sq "DROP SUBSCRIPTION followup_sub" >/dev/null
finish
