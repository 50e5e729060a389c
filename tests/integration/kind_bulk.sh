#!/usr/bin/env bash
# A group session or an import logs many contacts at once (registration 'bulk'):
# INSERT ... SELECT and COPY, each one statement whatever its size.
source "$(dirname "$0")/../lib/integration.sh"
new_db it_kind_bulk
seed 200
register_app
app_role followup_it_importer

# a group session the day before $AS_OF with every contact of mentor 1002
as followup_it_importer "INSERT INTO app.activities (mentor_id, contact_id, occurred_at, registration)
                         SELECT 1002, 10000000 + g, '$(day -1) 17:00+00', 'bulk'
                           FROM generate_series(1, 200) g WHERE (1 + g % 50) = 2"
expect "every contact of the group session has that day" \
    "$(q "SELECT count(*) FILTER (WHERE last_contact_date = '$(day -1)') || '/' || count(*)
           FROM app.assignments WHERE mentor_id = 1002")" "4/4"

# an import file through COPY
q "SELECT mentor_id, contact_id, '$AS_OF 09:00+00', 'bulk'
     FROM app.assignments WHERE id % 5 = 0" -F $'\t' > "$CLUSTER_ROOT/import.tsv"
as followup_it_importer "\\copy app.activities (mentor_id, contact_id, occurred_at, registration) FROM '$CLUSTER_ROOT/import.tsv'"
expect "every imported contact has the import's day" \
    "$(q "SELECT count(*) FILTER (WHERE last_contact_date = '$AS_OF') || '/' || count(*)
           FROM app.assignments WHERE id % 5 = 0")" "40/40"
expect "no assignment drifts from its latest activity" "$(drifted)" "0"

# reminders enqueued before a group session is imported are withdrawn, in
# one INSERT ... SELECT for all of them
group_session_imported() {
    local ids
    ids=$(IFS=,; echo "$*")
    as followup_it_importer "INSERT INTO app.activities (mentor_id, contact_id, occurred_at, registration)
                             SELECT mentor_id, contact_id, '$AS_OF 17:00+00', 'bulk'
                               FROM (VALUES $(q "SELECT string_agg(format('(%s, %s)', mentor_id, contact_id), ', ')
                                                   FROM app.assignments WHERE id IN ($ids)")) AS v(mentor_id, contact_id)"
}
still_due_after_contact group_session_imported 10
finish
