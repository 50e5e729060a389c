#!/usr/bin/env bash
# A mentor logs their own contact (registration 'direct'), one row at a time,
# as an app role that may only insert activities.
source "$(dirname "$0")/../lib/integration.sh"
new_db it_kind_direct
seed 40
register_app
app_role followup_it_mentor

before=$(last_contact 5)
as followup_it_mentor "INSERT INTO app.activities (mentor_id, contact_id, occurred_at, registration)
                       VALUES ($(pair 5), '$AS_OF 12:00+00', 'direct')"
expect "direct contact sets its date" "$(last_contact 5)" "$AS_OF"
expect "it was not that date before" "$([ "$before" != "$AS_OF" ] && echo changed)" "changed"

as followup_it_mentor "INSERT INTO app.activities (mentor_id, contact_id, occurred_at, registration)
                       VALUES ($(pair 5), '$(day -30) 12:00+00', 'direct')"
expect "an older direct contact does not move it back" "$(last_contact 5)" "$AS_OF"
expect "the mentor role cannot update assignments itself" \
    "$(as followup_it_mentor "SELECT has_table_privilege('app.assignments', 'UPDATE')")" "f"
expect "no assignment drifts from its latest activity" "$(drifted)" "0"

# a reminder enqueued before the mentor logs contact is withdrawn, not sent
mentor_logs_contact() {
    local id
    for id in "$@"; do
        as followup_it_mentor "INSERT INTO app.activities (mentor_id, contact_id, occurred_at, registration)
                               VALUES ($(pair "$id"), '$AS_OF 12:00+00', 'direct')"
    done
}
still_due_after_contact mentor_logs_contact 3
finish
