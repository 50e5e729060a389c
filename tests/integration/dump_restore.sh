#!/usr/bin/env bash
# pg_dump / pg_restore of a database using pg_followup (SPEC §1, issue 8):
# registrations, policies (including a changed default row), the run log, the
# outbox with its delivery states, alerts, corrections and the sequences behind
# them survive; tracking works in the restored database, also on partitions;
# a rerun for the same day enqueues nothing new. Both the custom format
# (pg_restore) and plain SQL (psql).
source "$(dirname "$0")/../lib/integration.sh"
new_db it_dump
seed 50
q "CREATE TABLE app.visits (mentor_id bigint, contact_id bigint, visited_on date) PARTITION BY RANGE (visited_on)"
q "CREATE TABLE app.visits_2026 PARTITION OF app.visits FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')"
register_app
q "SELECT followup.track_activities('app.visits', 'visited_on', '{mentor_id,contact_id}')" >/dev/null
q "UPDATE followup.policies SET remind_after_days = 10 WHERE organization = '*'"
q "INSERT INTO followup.policies VALUES ('org-03', 7, 3, 21, 4, true)"
q "SELECT followup.set_last_contact('7', '$(day -5)', 'paper log')" >/dev/null
q "SELECT status FROM followup.run_now('$AS_OF')" >/dev/null
outbox_in_every_state dump-test
q "SELECT followup._raise_alert('run_failed', NULL, 'an alert to keep')" >/dev/null

snapshot() {
    psql -X -At -q -v ON_ERROR_STOP=1 -d "$1" <<'SQL'
SELECT 'assignments', relation, id_column, mentor_column, last_contact_column, created_column, coordinator_column,
       organization_column, active_when, payload_columns FROM followup.assignment_tables;
SELECT 'activities', relation, occurred_column, match_columns, assignment_columns FROM followup.activity_tables ORDER BY relation::text;
SELECT 'policy', organization, remind_after_days, repeat_every_days, escalate_after_days, max_reminders, enabled
  FROM followup.policies ORDER BY organization;
SELECT 'correction', correction_id, assignment_id, old_value, new_value, reason, corrected_by
  FROM followup.contact_corrections ORDER BY 2;
SELECT 'run', run_id, trigger, status, as_of, assignments_scanned, reminders_enqueued, duplicates_suppressed
  FROM followup.runs ORDER BY run_id;
SELECT 'outbox', count(*), status, sum(attempts), count(last_error), count(delivered_at), min(message_id), max(message_id)
  FROM followup.outbox GROUP BY status ORDER BY status;
SELECT 'alert', alert_id, kind, run_id, message FROM followup.alerts ORDER BY alert_id;
SELECT 'trigger', tgrelid::regclass, tgname, tgenabled FROM pg_trigger
 WHERE tgname LIKE 'followup_activity_%' ORDER BY tgrelid::regclass::text, tgname;
SELECT 'last_contact', sum(hashtext(id || ':' || coalesce(last_contact_date::text, '-'))) FROM app.assignments;
SQL
}
before=$(snapshot it_dump)

check_restored() {
    local target=$1 how=$2
    DB=$target
    expect "$how: registrations, policies, run log, outbox, alerts, corrections, triggers and dates are as dumped" "$(snapshot "$target")" "$before"
    q "INSERT INTO app.activities (mentor_id, contact_id, occurred_at, registration)
       SELECT mentor_id, contact_id, '$(day 1) 09:00+00', 'direct' FROM app.assignments WHERE id = 11"
    expect "$how: tracking works after restore" "$(last_contact 11)" "$(day 1)"
    q "INSERT INTO app.visits_2026 SELECT mentor_id, contact_id, date '2026-12-31' FROM app.assignments WHERE id = 12"
    expect "$how: tracking works on a restored partition" "$(last_contact 12)" "2026-12-31"
    q "CREATE TABLE app.visits_2027 PARTITION OF app.visits FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')"
    q "INSERT INTO app.visits_2027 SELECT mentor_id, contact_id, date '2027-01-02' FROM app.assignments WHERE id = 13"
    expect "$how: a partition created after restore is tracked" "$(last_contact 13)" "2027-01-02"
    expect "$how: a rerun the same day enqueues nothing new" \
        "$(q "SELECT status || ':' || reminders_enqueued || ':' || (duplicates_suppressed > 0) FROM followup.run_now('$AS_OF')")" \
        "succeeded:0:true"
    expect "$how: sequences continue after the restored rows" \
        "$(q "SELECT correction_id FROM followup.set_last_contact('8', '$AS_OF', 'after restore')")" "2"
    expect "$how: new runs get new ids" "$(q "SELECT max(run_id) FROM followup.runs")" "2"
    expect "$how: the default policy row is not duplicated" \
        "$(q "SELECT count(*) || ':' || min(remind_after_days) FROM followup.policies WHERE organization = '*'")" "1:10"
}

pg_dump -Fc -d it_dump -f "$CLUSTER_ROOT/it_dump.dump"
dropdb --if-exists it_dump_custom && createdb it_dump_custom
pg_restore --exit-on-error -d it_dump_custom "$CLUSTER_ROOT/it_dump.dump"
check_restored it_dump_custom "pg_restore"

pg_dump -Fp -d it_dump -f "$CLUSTER_ROOT/it_dump.sql"
dropdb --if-exists it_dump_plain && createdb it_dump_plain
psql -X -q -v ON_ERROR_STOP=1 -d it_dump_plain -f "$CLUSTER_ROOT/it_dump.sql" >/dev/null
check_restored it_dump_plain "plain SQL"
finish
