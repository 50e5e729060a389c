#!/usr/bin/env bash
# The notifier's --digest mode (notifier/README.md, "Digests"): one POST per
# recipient with all of its messages (followup.claim_digest), against a real
# run of the sample app.
#   1. every recipient gets exactly one request, carrying all its messages
#      (and only its own), with an Idempotency-Key naming the recipient;
#   2. a message whose mentor logged contact after the run is withdrawn and
#      never posted;
#   3. a failed digest fails each of its messages (backoff, attempts), and the
#      retry posts them again together under the same key;
#   4. two digest notifiers at once, two digests in flight each, never split a
#      recipient.
source "$(dirname "$0")/../lib/integration.sh"
source "$REPO/tests/lib/notifier.sh"

notifier_setup notifier-digest
new_db it_notifier_digest
seed 200
register_app
start_webhook web
WEBHOOK_URL="http://127.0.0.1:$WEBHOOK_PORT/hooks/followup"

# --- 1 and 2: one digest per recipient; a withdrawn message is never posted ---
total=$(q "SELECT reminders_enqueued FROM followup.run_now('$AS_OF')")
recipients=$(q "SELECT count(DISTINCT (recipient_role, recipient_id)) FROM followup.outbox")
expect "the run enqueued several messages per mentor" "$(( total > recipients && recipients > 1 ))" "1"
# a mentor with several messages logs contact for one of them after the run
withdrawn=$(q "SELECT min(o.assignment_id::int) FROM followup.outbox o
                WHERE o.recipient_id = (SELECT recipient_id FROM followup.outbox GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1)")
q "INSERT INTO app.activities (mentor_id, contact_id, occurred_at, registration)
   SELECT mentor_id, contact_id, '$AS_OF 09:00+00', 'direct' FROM app.assignments WHERE id = $withdrawn"
start_notifier d1 --digest --batch-size 7 --poll-interval 1s
wait_until "every message is delivered or withdrawn" 60 count_is "status IN ('delivered', 'cancelled')" "$total"
load_requests
expect "one request per recipient" \
    "$(q "SELECT count(DISTINCT n) FROM webhook_requests")" "$recipients"
expect "every request was a well-formed digest of one recipient (body, ids, key)" \
    "$(q "SELECT count(*) FROM webhook_requests WHERE check_ <> 'ok'")" "0"
expect "each recipient's request carried all of its delivered messages" \
    "$(q "SELECT count(*) FROM (SELECT o.recipient_role, o.recipient_id, count(DISTINCT r.n) AS requests
                                   FROM followup.outbox o JOIN webhook_requests r USING (message_id)
                                  GROUP BY 1, 2) s WHERE requests <> 1")" "0"
expect "every delivered message was posted exactly once" \
    "$(q "SELECT count(*) || ' ' || count(DISTINCT message_id) FROM webhook_requests")" \
    "$(q "SELECT count(*) || ' ' || count(*) FROM followup.outbox WHERE status = 'delivered'")"
expect "the message of the contact logged after the run was withdrawn, never posted" \
    "$(q "SELECT o.status || ':' || o.cancel_reason || ':' || count(r.n)
            FROM followup.outbox o LEFT JOIN webhook_requests r USING (message_id)
           WHERE o.assignment_id = '$withdrawn' GROUP BY o.status, o.cancel_reason")" "cancelled:contact_logged:0"
stop_notifier TERM
expect "SIGTERM: exit 0" "$STATUS" "0"

# --- 3: a failed digest fails each message; the retry posts them together ---
q "SELECT followup.run_now('$(day 7)')" >/dev/null
busy=$(q "SELECT recipient_id FROM followup.outbox WHERE status = 'pending' GROUP BY 1 HAVING count(*) > 1 ORDER BY 1 LIMIT 1")
first_of_busy=$(q "SELECT min(message_id) FROM followup.outbox WHERE status = 'pending' AND recipient_id = '$busy'")
rules "$first_of_busy status 500 1"
start_notifier d2 --digest --batch-size 50 --poll-interval 1s
wait_until "the failed digest's messages are back to pending" 60 \
    count_is "recipient_id = '$busy' AND status = 'pending' AND attempts = 1 AND last_error LIKE 'HTTP 500%'" \
    "$(q "SELECT count(*) FROM followup.outbox WHERE status = 'pending' AND recipient_id = '$busy'")"
q "UPDATE followup.outbox SET visible_at = now() WHERE recipient_id = '$busy' AND status = 'pending'"
wait_until "the retry delivers them" 60 count_is "status = 'pending'" 0
load_requests
expect "the digest of $busy was posted twice, the second time with the same key and the same messages" \
    "$(q "SELECT count(DISTINCT n) || ' ' || count(DISTINCT idempotency_key) || ' ' || string_agg(DISTINCT answer, ',' ORDER BY answer)
            FROM webhook_requests
           WHERE message_id IN (SELECT message_id FROM followup.outbox WHERE recipient_id = '$busy' AND attempts = 2)")" \
    "2 1 200,500"
stop_notifier TERM

# --- 4: two digest notifiers at once never split a recipient -------------------
q "SELECT followup.run_now('$(day 14)')" >/dev/null
before=$(q "SELECT coalesce(max(n), 0) FROM webhook_requests")
# Every request is held until both notifiers hold recipients: with two
# deliveries at once and 3 recipients a claim, one holds at most 6 (2 in
# flight, 4 queued: the next claim is made while fewer than 3 are queued), so
# with more recipients than that neither can take them all before the other
# starts, however fast the machine.
new_recipients=$(q "SELECT count(DISTINCT (recipient_role, recipient_id)) FROM followup.outbox WHERE status = 'pending'")
expect "the new day has more recipients than one notifier can hold (6)" "$((new_recipients > 6))" "1"
rules "* hold $WORK/gate4"
start_notifier d3 --digest --batch-size 3 --concurrency 2 --poll-interval 1s
start_notifier d4 --digest --batch-size 3 --concurrency 2 --poll-interval 1s
both_hold() {
    [ "$(q "SELECT count(DISTINCT claimed_by) FROM followup.outbox WHERE status = 'claimed' AND claimed_by IN ('d3', 'd4')")" = 2 ]
}
wait_until "both notifiers hold recipients" 30 both_hold
rules "* delay 0.1"
touch "$WORK/gate4"
wait_until "everything is delivered" 120 count_is "status = 'pending'" 0
load_requests
expect "no recipient of the new day was split between the two notifiers" \
    "$(q "SELECT count(*) FROM (SELECT o.recipient_role, o.recipient_id FROM followup.outbox o
                                  JOIN webhook_requests r USING (message_id)
                                 WHERE r.n > $before GROUP BY 1, 2 HAVING count(DISTINCT r.n) > 1) s")" "0"
expect "both notifiers took part" \
    "$(q "SELECT count(DISTINCT claimed_by) FROM followup.outbox WHERE claimed_by IN ('d3', 'd4')")" "2"
finish
