#!/usr/bin/env bash
# Found by the soak (README, "Soak"; seed 360102, one hour): end_away must
# release every message the absence held. The README: "end_away ends the
# recipient's open absences at once: the messages they held are visible
# again from the next opening after now". A message whose lease ran out while
# its recipient was away (its consumer died mid-delivery) is met by the next
# claim, which holds it back to the first opening after the absence, leaving
# it `claimed` under the dead lease; end_away must release it too, not only
# the recipient's `pending` messages.
source "$(dirname "$0")/../lib/integration.sh"
new_db it_away_expired_lease
seed 40
register_app
today="(now() AT TIME ZONE current_setting('followup.timezone'))::date"
q "SELECT status FROM followup.run_now('$AS_OF')" >/dev/null
mentor=$(q "SELECT recipient_id FROM followup.outbox WHERE recipient_role = 'mentor' ORDER BY message_id LIMIT 1")
# the mentor's undelivered messages held past tomorrow
held="SELECT count(*) FROM followup.outbox WHERE recipient_role = 'mentor' AND recipient_id = '$mentor'
        AND status IN ('pending', 'claimed') AND visible_at > now() + interval '1 day'"
# a consumer takes everything on a one-second lease and dies before acking
q "SELECT count(*) FROM followup.claim('dies', 1000, '1 second')" >/dev/null
# the mentor is away from yesterday (any organization's local day) to the day after tomorrow
q "SELECT recipient_id FROM followup.set_away('mentor', '$mentor', $today - 1, $today + 2, 'hiking')" >/dev/null
sleep 1.5
# the next claim meets the expired lease and holds the mentor's message back
q "SELECT count(*) FROM followup.claim('next', 1000, '1 hour')" >/dev/null
expect "the absence holds the mentor's message, pending again (the dead lease is gone)" \
    "$(q "SELECT string_agg(DISTINCT status::text, ',') FROM followup.outbox
           WHERE recipient_id = '$mentor' AND recipient_role = 'mentor' AND visible_at > now() + interval '1 day'")" "pending"
expect "end_away ends the absence" "$(q "SELECT followup.end_away('mentor', '$mentor')")" "1"
expect "and no message of the mentor is held past tomorrow any more" "$(q "$held")" "0"
finish
