#!/usr/bin/env bash
# Someone else logs a contact on the mentor's behalf (registration 'proxy'):
# the row names the assignment's mentor and contact, the proxy is only
# registered_by. The proxy's role may only insert activities.
source "$(dirname "$0")/../lib/integration.sh"
new_db it_kind_proxy
seed 40
register_app
app_role followup_it_proxy

as followup_it_proxy "INSERT INTO app.activities (mentor_id, contact_id, occurred_at, registration, note)
                      VALUES ($(pair 9), '$(day -2) 11:00+00', 'proxy', 'logged by the front desk')"
expect "proxy contact counts for the mentor's assignment" "$(last_contact 9)" "$(day -2)"
expect "registered_by names the proxy" \
    "$(q "SELECT registered_by FROM app.activities WHERE registration = 'proxy'")" "followup_it_proxy"
# the proxy mis-typed the date and corrects it: an UPDATE moving it back recomputes
q "UPDATE app.activities SET occurred_at = occurred_at - interval '90 days' WHERE registration = 'proxy'"
expect "correcting the proxy's date recomputes from the remaining activities" "$(last_contact 9)" \
    "$(q "SELECT coalesce(max(occurred_at)::date::text, 'NULL') FROM app.activities x JOIN app.assignments a
           ON (a.mentor_id, a.contact_id) = (x.mentor_id, x.contact_id) WHERE a.id = 9")"
expect "no assignment drifts from its latest activity" "$(drifted)" "0"

# a reminder enqueued before the front desk logs the contact is withdrawn
front_desk_logs_contact() {
    local id
    for id in "$@"; do
        as followup_it_proxy "INSERT INTO app.activities (mentor_id, contact_id, occurred_at, registration, note)
                              VALUES ($(pair "$id"), '$AS_OF 11:00+00', 'proxy', 'logged by the front desk')"
    done
}
still_due_after_contact front_desk_logs_contact 3
finish
