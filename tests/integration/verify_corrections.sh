#!/usr/bin/env bash
# Found by the soak (README, "Soak"): ops correcting a last contact with
# set_last_contact, and verify. The README says a correction below existing
# activities "is kept until a later write to that assignment's activities
# recomputes it" (tracking keeps it), and that verify lists "the assignments
# whose stored last contact is not what the triggers keep". So right after
# such a correction verify must not call it drift, nor repair undo it.
source "$(dirname "$0")/../lib/integration.sh"
new_db it_verify_corrections
seed 40
register_app
q "INSERT INTO app.activities (mentor_id, contact_id, occurred_at, registration)
   VALUES ($(pair 5), '$AS_OF 12:00+00', 'direct')"
expect "the contact is the last contact" "$(last_contact 5)" "$AS_OF"
expect "verify finds nothing before the correction" "$(q "SELECT count(*) FROM followup.verify()")" "0"
q "SELECT followup.set_last_contact('5', '$(day -3)', 'the visit was three days earlier')" >/dev/null
expect "the correction below the latest activity is kept" "$(last_contact 5)" "$(day -3)"
expect "verify does not list the corrected assignment as drift" \
    "$(q "SELECT coalesce(string_agg(assignment_id || ': ' || stored || ' / ' || expected, ', '), 'nothing') FROM followup.verify()")" \
    "nothing"
finish
