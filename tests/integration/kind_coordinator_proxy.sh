#!/usr/bin/env bash
# The coordinator logs a contact for a mentor (registration
# 'coordinator_proxy'), here through an upsert keyed on an external id, as a
# coordinator app role that may only insert and update activities.
source "$(dirname "$0")/../lib/integration.sh"
new_db it_kind_coordinator
seed 40
q "ALTER TABLE app.activities ADD COLUMN external_id text UNIQUE" >/dev/null
register_app
app_role followup_it_coordinator
q "GRANT UPDATE ON app.activities TO followup_it_coordinator"

upsert() {
    as followup_it_coordinator "INSERT INTO app.activities (mentor_id, contact_id, occurred_at, registration, external_id)
                                VALUES ($(pair 14), '$1', 'coordinator_proxy', 'crm-77')
                                ON CONFLICT (external_id) DO UPDATE SET occurred_at = EXCLUDED.occurred_at"
}
upsert "$(day -3) 15:00+00"
expect "coordinator's contact counts" "$(last_contact 14)" "$(day -3)"
upsert "$(day -1) 15:00+00"
expect "the upsert's update part moves it forward" "$(last_contact 14)" "$(day -1)"
expect "still one activity from the coordinator" \
    "$(q "SELECT count(*) FROM app.activities WHERE registration = 'coordinator_proxy'")" "1"
expect "no assignment drifts from its latest activity" "$(drifted)" "0"

# a reminder enqueued before the coordinator's upsert is withdrawn
coordinator_upserts_contact() {
    local id
    for id in "$@"; do
        as followup_it_coordinator "INSERT INTO app.activities (mentor_id, contact_id, occurred_at, registration, external_id)
                                    VALUES ($(pair "$id"), '$AS_OF 15:00+00', 'coordinator_proxy', 'crm-still-$id')
                                    ON CONFLICT (external_id) DO UPDATE SET occurred_at = EXCLUDED.occurred_at"
    done
}
still_due_after_contact coordinator_upserts_contact 3
finish
