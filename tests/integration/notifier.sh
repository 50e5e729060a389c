#!/usr/bin/env bash
# The reference notifier (notifier/) end to end: the real
# followup-notifier binary against this cluster, delivering to a real HTTP
# server on a local socket (tests/lib/webhook.py, which records every request
# and can answer 500s or hang on chosen messages). Checks, with exact counts:
#   1. a run's messages are delivered once each, woken by NOTIFY;
#   2. SIGTERM mid-batch: the request in flight is finished and acked, the rest
#      of the batch released at once with followup.release (pending, visible
#      now, no attempt counted, last_error untouched, one NOTIFY), exit 0;
#      after a restart every message has reached the webhook exactly once, the
#      released ones on their first attempt, and nothing is left claimed;
#   3. a 500 is failed (last_error, attempts, backoff) and retried until
#      delivered, and the delivered message keeps the error of its last failure;
#   4. a hanging request times out, is failed, and is retried;
#   5. SIGKILL mid-batch: the unacked messages come back once the lease expires
#      and are delivered by the next notifier with the same Idempotency-Key;
#   6. a batch too slow for its lease is released in time, not sent late, and
#      re-claimed at once; the releases cost no attempt and keep last_error;
#   7. the NOTIFY of a release and of requeue_dead wakes an idle notifier.
# Every notifier here delivers one message at a time (--concurrency 1, the
# notifier's behaviour before --concurrency existed), so that each scenario
# knows which message is in flight; notifier_concurrency.sh has the same kinds
# of scenario with several deliveries at once.
# No check depends on how fast the machine is: waits are conditions (their
# deadlines only guard against a hang), time-based outcomes (a backoff, a
# lease's end) are checked against instants read before and after, and a
# lease's expiry is brought forward by hand where the test would otherwise
# wait for it.
source "$(dirname "$0")/../lib/integration.sh"
source "$REPO/tests/lib/notifier.sh"
export FOLLOWUP_CONCURRENCY=1  # (the flag's environment variable: every notifier below)

notifier_setup notifier-test
LISTEN_PID=""
cleanup_hook '[ -n "$LISTEN_PID" ] && kill "$LISTEN_PID"'

# --- the webhook -------------------------------------------------------------
start_webhook webhook
WEBHOOK_URL="http://127.0.0.1:$WEBHOOK_PORT/hooks/followup"
# requests_from ID: requests for messages with ids >= ID.
requests_from() { awk -F'\t' -v id="$1" '$2 + 0 >= id' "$REQUESTS" | wc -l; }

# released_lines CONSUMER: its 'released' log lines, without the timestamp and level.
released_lines() { grep ' released ' "$WORK/$1.log" | sed -E 's/^[^ ]+ +[A-Z]+ +//' || true; }

# listen_start / listen_stop: a psql session LISTENing on followup_outbox in
# the background; listen_stop ends it and sets NOTIFICATIONS to the payloads
# it received meanwhile, one a line (psql reports notifications after its next
# command). Not to be run in a subshell: the session is this shell's child.
listen_start() {
    rm -f "$WORK/listen.in" "$WORK/listening"
    mkfifo "$WORK/listen.in"
    psql -X -q -d "$DB" <"$WORK/listen.in" >"$WORK/listen.out" 2>&1 &
    LISTEN_PID=$!
    exec 7>"$WORK/listen.in"
    printf 'LISTEN followup_outbox;\n\\! touch %s\n' "$WORK/listening" >&7
    wait_until "psql listens" 10 test -e "$WORK/listening"
}
listen_stop() {
    printf 'SELECT 1 \\g /dev/null\n' >&7
    exec 7>&-
    wait "$LISTEN_PID" || abort "the listening psql failed: $(cat "$WORK/listen.out")"
    LISTEN_PID=""
    NOTIFICATIONS=$(sed -n 's/^Asynchronous notification "followup_outbox" with payload "\(.*\)" received.*/\1/p' \
        "$WORK/listen.out")
}

new_db it_notifier
seed 200
register_app

# --- 1 and 2: a run's messages, SIGTERM in the middle of a batch, restart ---
first=$(next_message_id)
slow=$((first + 39))  # claimed in id order: the 40th message of the first batch
batch_end=$((first + 99))
rules "$slow delay 1.5" "* delay 0.02"
listen_start  # records the NOTIFYs of the run and of n1's release
# A 60 min poll interval: the notifier polls once when it starts (nothing to do
# yet), so only the run's NOTIFY can wake it for the delivery below.
start_notifier n1 --poll-interval 60m --request-timeout 5s
total=$(q "SELECT reminders_enqueued FROM followup.run_now('$AS_OF')")
expect "the run enqueued more than one batch of 100" "$((total > 100))" "1"
wait_until "the 40th message is being delivered (woken by the run's NOTIFY)" 60 requests_are "$slow" 1
before_stop=$(q "SELECT clock_timestamp()")
stop_notifier TERM
listen_stop
expect "SIGTERM while a request is in flight: the notifier exits 0" "$STATUS" "0"
expect "the message in flight was finished and acked" \
    "$(q "SELECT status FROM followup.outbox WHERE message_id = $slow")" "delivered"
expect "the 40 messages sent are delivered, nothing else" "$(count "status = 'delivered'")" "40"
expect "the webhook received exactly those 40" "$(wc -l <"$REQUESTS")" "40"
expect "nothing is left claimed" "$(count "status = 'claimed'")" "0"
expect "the other 60 of the batch were released: pending, visible since the release, attempts back to 0, no error, no lease" \
    "$(count "message_id BETWEEN $((slow + 1)) AND $batch_end
              AND status = 'pending' AND attempts = 0 AND visible_at BETWEEN '$before_stop' AND now()
              AND last_error IS NULL AND lease_id IS NULL AND claimed_by IS NULL")" "60"
expect "messages beyond the batch were never claimed: pending, attempt 0, visible since the run" \
    "$(count "message_id > $batch_end AND status = 'pending' AND attempts = 0 AND visible_at < '$before_stop'
              AND last_error IS NULL AND lease_id IS NULL")" "$((total - 100))"
expect "NOTIFY followup_outbox: the run's, then one from the release, with its count" \
    "$(sed 's/"run_id" : [0-9]*/"run_id" : R/' <<<"$NOTIFICATIONS")" \
    "$(printf '%s\n%s' "{\"run_id\" : R, \"enqueued\" : $total}" '{"released" : 60}')"
expect "n1 logged the SIGTERM once" "$(grep -c 'SIGTERM received' "$WORK/n1.log")" "1"
expect "n1 logged one 'released' line, with the count and the ids" "$(released_lines n1)" \
    "released 60 undelivered messages (notifier shut down before delivery) -> pending, claimable at once, no attempt counted: message_ids=$((slow + 1))-$batch_end"

start_notifier n2 --poll-interval 1s --request-timeout 3s
wait_until "all $total messages are delivered" 30 count_is "status = 'delivered'" "$total"
load_requests
expect "every message reached the webhook exactly once" \
    "$(q "SELECT count(*) || ' requests, ' || count(DISTINCT message_id) || ' messages' FROM webhook_requests")" \
    "$total requests, $total messages"
expect "every request carried the message's idempotency key and its row as JSON" \
    "$(q "SELECT count(*) FROM webhook_requests r JOIN followup.outbox o USING (message_id)
           WHERE r.check_ = 'ok'
             AND r.idempotency_key = format('%s/%s/%s/%s', o.assignment_id, o.cycle_start, o.kind, o.sequence)")" \
    "$total"
expect "every message was delivered on its first attempt, the released ones too (a release costs no attempt)" \
    "$(q "SELECT string_agg(attempts || ':' || n, ' ' ORDER BY attempts)
            FROM (SELECT attempts, count(*) AS n FROM followup.outbox GROUP BY attempts) s")" \
    "1:$total"
expect "  the 60 released at shutdown were delivered by n2, on attempt 1" \
    "$(count "message_id BETWEEN $((slow + 1)) AND $batch_end AND status = 'delivered' AND attempts = 1
              AND claimed_by = 'n2'")" "60"
expect "messages delivered on their first attempt have no error" \
    "$(count "status = 'delivered' AND attempts = 1 AND last_error IS NOT NULL")" "0"
expect "n2 logged one 'delivered' line per message it delivered, and released nothing" \
    "$(grep -c ' delivered message_id=' "$WORK/n2.log") $(released_lines n2 | wc -l)" "$((total - 40)) 0"

# --- 3 and 4: a webhook that answers 500, one that hangs ---------------------
first=$(next_message_id)
failing=$((first + 1)) hanging=$((first + 3))
rules "$failing status 500 2" "$hanging hang 1"
before_attempts=$(q "SELECT clock_timestamp()")
add_messages retry 6
wait_until "every message had its first attempt" 30 \
    count_is "message_id >= $first AND (status = 'delivered' OR last_error IS NOT NULL)" 6
after_attempts=$(q "SELECT clock_timestamp()")
# backoff_is ID SECONDS FROM TO: ID is visible again SECONDS after a failure
# that happened between the instants FROM and TO
backoff_is() {
    count_is "message_id = $1 AND visible_at BETWEEN timestamptz '$3' + interval '$2 s' AND timestamptz '$4' + interval '$2 s'" 1
}
expect "the other four, also after the hanging one, are delivered" \
    "$(q "SELECT string_agg((message_id - $first)::text, ',' ORDER BY message_id) FROM followup.outbox
           WHERE message_id >= $first AND status = 'delivered'")" "0,2,4,5"
expect "a 500 is failed: pending again, its error recorded, attempt 1" \
    "$(q "SELECT status || '|' || attempts || '|' || last_error FROM followup.outbox WHERE message_id = $failing")" \
    "pending|1|HTTP 500 Internal Server Error: injected failure"
expect "  and retried after the first backoff step (30 s)" \
    "$(backoff_is "$failing" 30 "$before_attempts" "$after_attempts" && echo yes)" "yes"
expect "a hanging request times out and is failed" \
    "$(q "SELECT status || '|' || attempts || '|' || last_error FROM followup.outbox WHERE message_id = $hanging")" \
    "pending|1|request timed out after 3s"
expect "  and retried after the first backoff step too" \
    "$(backoff_is "$hanging" 30 "$before_attempts" "$after_attempts" && echo yes)" "yes"
# time passes: the backoff is over
before_attempts=$(q "SELECT clock_timestamp()")
q "UPDATE followup.outbox SET visible_at = now() WHERE message_id IN ($failing, $hanging)"
wait_until "the second attempts are done" 30 count_is \
    "(message_id = $hanging AND status = 'delivered') OR (message_id = $failing AND attempts = 2 AND status = 'pending')" 2
expect "the hung message is delivered on its retry, keeping the error of its first attempt" \
    "$(q "SELECT status || '|' || attempts || '|' || last_error FROM followup.outbox WHERE message_id = $hanging")" \
    "delivered|2|request timed out after 3s"
after_attempts=$(q "SELECT clock_timestamp()")
expect "a second 500: attempt 2, the backoff doubled (60 s)" \
    "$(backoff_is "$failing" 60 "$before_attempts" "$after_attempts" && echo yes)" "yes"
q "UPDATE followup.outbox SET visible_at = now() WHERE message_id = $failing"
wait_until "the failing message is delivered" 60 count_is "message_id = $failing AND status = 'delivered'" 1
expect "delivered on the third attempt, keeping the error of its last failure (ack leaves last_error)" \
    "$(q "SELECT status || '|' || attempts || '|' || last_error FROM followup.outbox WHERE message_id = $failing")" \
    "delivered|3|HTTP 500 Internal Server Error: injected failure"
expect "all delivered: those delivered on their first attempt have no error, those that failed first keep theirs" \
    "$(q "SELECT string_agg(format('%s:%s:%s', attempts, coalesce(last_error, '-'), n), ' | ' ORDER BY attempts)
            FROM (SELECT attempts, last_error, count(*) AS n FROM followup.outbox
                   WHERE status = 'delivered' GROUP BY 1, 2) s") $(count "status <> 'delivered'")" \
    "1:-:$((total + 4)) | 2:request timed out after 3s:1 | 3:HTTP 500 Internal Server Error: injected failure:1 0"
load_requests
expect "the webhook saw 500, 500, 200 for it, always with the same key" \
    "$(q "SELECT string_agg(answer, ',' ORDER BY n) || ' ' || count(DISTINCT idempotency_key)
            FROM webhook_requests WHERE message_id = $failing")" "500,500,200 1"
expect "and hang, 200 for the hanging one" \
    "$(q "SELECT string_agg(answer, ',' ORDER BY n) FROM webhook_requests WHERE message_id = $hanging")" "hang,200"
expect "one request for each of the other four" \
    "$(q "SELECT count(*) FROM webhook_requests WHERE message_id >= $first AND message_id NOT IN ($failing, $hanging)")" "4"
stop_notifier TERM
expect "an idle notifier stops on SIGTERM, exit 0" "$STATUS" "0"
expect "  and had nothing to release" "$(released_lines n2 | wc -l)" "0"

# --- 5: SIGKILL in the middle of a batch -------------------------------------
# A lease and a request timeout far longer than the test's steps: the kill
# comes while the 6th request hangs, whatever the machine's speed, and the
# lease's end is then brought forward by hand (time passes) rather than waited for.
first=$(next_message_id)
stuck=$((first + 5))
rules "$stuck hang 1"
add_messages kill 60
start_notifier n3 --lease '10 minutes' --batch-size 20 --request-timeout 60s --poll-interval 1s
wait_until "the 6th message is in flight" 30 requests_are "$stuck" 1
stop_notifier KILL
expect "SIGKILL: no chance to clean up" "$STATUS" "137"
q "CREATE TABLE killed AS SELECT message_id, lease_id FROM followup.outbox WHERE status = 'claimed'"
expect "at the kill: 5 delivered, the 15 others of the batch claimed, 40 never claimed" \
    "$(q "SELECT count(*) FILTER (WHERE status = 'delivered') || ' ' || count(*) FILTER (WHERE status = 'claimed')
                 || ' ' || count(*) FILTER (WHERE status = 'pending' AND attempts = 0)
            FROM followup.outbox WHERE message_id >= $first")" "5 15 40"
start_notifier n4 --lease '10 minutes' --batch-size 20 --request-timeout 60s --poll-interval 1s
wait_until "n4 has delivered the 40 never claimed" 60 count_is "message_id >= $first AND status = 'delivered'" 45
wait_until "n4 waits for work" 30 idle_claimer
expect "while n3's lease holds, its 15 stay claimed under it: n4 neither claimed nor sent them" \
    "$(q "SELECT count(*) FROM killed k JOIN followup.outbox o USING (message_id)
           WHERE o.status = 'claimed' AND o.lease_id = k.lease_id AND o.claimed_by = 'n3'") $(requests_for "$stuck")" "15 1"
lease_ended=$(q "SELECT clock_timestamp()")
q "UPDATE followup.outbox SET visible_at = now() WHERE message_id IN (SELECT message_id FROM killed)"  # time passes
wait_until "all 60 are delivered" 30 count_is "message_id >= $first AND status = 'delivered'" 60
expect "once the lease ended, the 15 came back and n4 delivered them on attempt 2" \
    "$(q "SELECT count(*) FROM killed k JOIN followup.outbox o USING (message_id)
           WHERE o.status = 'delivered' AND o.attempts = 2 AND o.claimed_by = 'n4' AND o.delivered_at >= '$lease_ended'")" \
    "15"
expect "the 45 others were delivered on their first attempt; none of the 60 has an error (nothing failed)" \
    "$(count "message_id >= $first AND status = 'delivered' AND attempts = 1") $(count "message_id >= $first AND last_error IS NOT NULL")" \
    "45 0"
load_requests
expect "the webhook got each of the 60 once, but the one in flight at the kill twice" \
    "$(q "SELECT count(*) || ' ' || count(DISTINCT message_id) FROM webhook_requests WHERE message_id >= $first")" \
    "61 60"
expect "both times with the same Idempotency-Key, the outbox's" \
    "$(q "SELECT string_agg(r.answer, ',' ORDER BY r.n) || ' ' || count(DISTINCT r.idempotency_key) || ' '
                 || bool_and(r.idempotency_key = format('%s/%s/%s/%s', o.assignment_id, o.cycle_start, o.kind, o.sequence))
            FROM webhook_requests r JOIN followup.outbox o USING (message_id) WHERE message_id = $stuck")" \
    "hang,200 1 true"
expect "nothing is left claimed or pending" "$(count "status <> 'delivered'")" "0"
stop_notifier TERM
expect "SIGTERM: exit 0" "$STATUS" "0"

# --- 6: a batch that would outlast its lease ---------------------------------
# 0.5 s a request, a 5 s lease, a 2 s timeout: a request may only start while
# 2.25 s (timeout + ack) of the lease remain, so each claim of 10 delivers 6 at
# most (however fast the machine) and releases the rest for the next claim,
# rather than sending messages another consumer could have re-claimed
# meanwhile. Two of the messages failed twice before (as if an earlier
# notifier had had 503s): at least the last four are released once or more,
# and a release must neither count an attempt nor touch last_error.
first=$(next_message_id)
rules "* delay 0.5"
add_messages lease 10
earlier_error='HTTP 503 Service Unavailable: earlier failure'
q "UPDATE followup.outbox SET attempts = 2, last_error = '$earlier_error'
    WHERE message_id IN ($((first + 6)), $((first + 8)))"
start_notifier n5 --lease '5 seconds' --batch-size 10 --request-timeout 2s --poll-interval 1s
wait_until "all 10 are delivered" 30 count_is "message_id >= $first AND status = 'delivered'" 10
stop_notifier TERM
expect "each of the 10 reached the webhook once" \
    "$(awk -F'\t' -v id="$first" '$2 + 0 >= id' "$REQUESTS" | cut -f2 | sort -u | wc -l) $(requests_from "$first")" "10 10"
expect "the rest of a batch was released before its lease ran out, never sent late" \
    "$(($(grep -c 'lease about to expire before delivery' "$WORK/n5.log") > 0)) $(grep -c 'ack was refused' "$WORK/n5.log" || true)" \
    "1 0"
# the claims, from their lease records
q "CREATE TABLE n5_leases AS SELECT lease_id, message_ids, expires_at FROM followup.outbox_leases WHERE consumer = 'n5'"
released=$(released_lines n5 | sed -n 's/^released \([0-9]*\) undelivered .*/\1/p' | awk '{ n += $1 } END { print n + 0 }')
expect "every message handed out was delivered once or released: claimed = 10 + released (logged, in full)" \
    "$(q "SELECT sum(cardinality(message_ids)) FROM n5_leases") $(released_lines n5 | grep -vc '^released [0-9]* undelivered messages\? (lease about to expire before delivery) -> pending, claimable at once, no attempt counted: message_ids=' || true)" \
    "$((10 + released)) 0"
expect "the last message of the first claim was claimed at least twice" \
    "$(q "SELECT count(*) >= 2 FROM n5_leases WHERE $((first + 9)) = ANY (message_ids)")" "t"
expect "each claim after the first began with the first message the claim before had released" \
    "$(q "SELECT string_agg(m::text, ' ' ORDER BY expires_at) FROM (SELECT expires_at, (SELECT min(x) FROM unnest(message_ids) x) AS m
                                                                    FROM n5_leases ORDER BY expires_at OFFSET 1) s")" \
    "$(released_lines n5 | sed -n 's/.*message_ids=\([0-9]*\).*/\1/p' | tr '\n' ' ' | sed 's/ $//')"
expect "releases counted no attempt and kept last_error: one more attempt each, and the earlier errors" \
    "$(q "SELECT string_agg(format('%s:%s:%s', message_id - $first, attempts, coalesce(last_error, '-')), ' | '
                            ORDER BY message_id)
            FROM followup.outbox WHERE message_id >= $first")" \
    "0:1:- | 1:1:- | 2:1:- | 3:1:- | 4:1:- | 5:1:- | 6:3:$earlier_error | 7:1:- | 8:3:$earlier_error | 9:1:-"

# --- 7: the NOTIFY of a release, and of requeue_dead, wakes an idle notifier --
# n6 and n7 poll once an hour: within this test only a NOTIFY can wake them.
# n7 claims a batch of 10, delivers #0, fails #1 (max_attempts 1: dead at
# once), and is stopped while #2 is in flight; n6 must take the released rest
# (#3 to #9) at once. (#k: the k-th message after $first.)
q "ALTER DATABASE $DB SET followup.max_attempts = 1"
first=$(next_message_id)
dead=$((first + 1)) slow=$((first + 2))
rules "$dead status 500 1" "$slow delay 1.5" "* delay 0.02"
start_notifier n6 --poll-interval 60m
IDLE_PID=$NOTIFIER_PID
wait_until "n6 has made its first claim and waits" 60 idle_claimer
add_messages wake 10
start_notifier n7 --poll-interval 60m --batch-size 10
wait_until "n7 is delivering #2" 60 requests_are "$slow" 1
stop_notifier TERM
expect "n7 exits 0" "$STATUS" "0"
expect "n7 finished #2 and released #3 to #9" \
    "$(q "SELECT status FROM followup.outbox WHERE message_id = $slow") $(released_lines n7)" \
    "delivered released 7 undelivered messages (notifier shut down before delivery) -> pending, claimable at once, no attempt counted: message_ids=$((first + 3))-$((first + 9))"
wait_until "n6 has delivered the 7 released messages" 60 \
    count_is "message_id >= $first AND status = 'delivered' AND claimed_by = 'n6'" 7
expect "the release's NOTIFY woke n6: it delivered the 7, each on its first attempt, without error" \
    "$(q "SELECT string_agg((message_id - $first)::text, ',' ORDER BY message_id) FROM followup.outbox
           WHERE message_id >= $first AND status = 'delivered' AND claimed_by = 'n6' AND attempts = 1
             AND last_error IS NULL")" "3,4,5,6,7,8,9"
expect "#1 went dead on its first 500 (max_attempts 1)" \
    "$(q "SELECT status || '|' || attempts || '|' || last_error FROM followup.outbox WHERE message_id = $dead")" \
    "dead|1|HTTP 500 Internal Server Error: injected failure"
expect "requeue_dead gives it back" "$(q "SELECT followup.requeue_dead(ARRAY[$dead]::bigint[])")" "1"
wait_until "n6 has delivered the requeued message" 60 count_is "message_id = $dead AND status = 'delivered'" 1
expect "requeue_dead's NOTIFY woke n6: delivered on attempt 1 (requeue resets attempts), its error kept" \
    "$(q "SELECT claimed_by || '|' || attempts || '|' || last_error FROM followup.outbox WHERE message_id = $dead")" \
    "n6|1|HTTP 500 Internal Server Error: injected failure"
load_requests
expect "the webhook saw each of the 10 once, and the dead one twice: 500 then 200" \
    "$(q "SELECT count(*) || ' ' || count(DISTINCT message_id) || ' '
                 || string_agg(answer, ',' ORDER BY n) FILTER (WHERE message_id = $dead)
            FROM webhook_requests WHERE message_id >= $first")" "11 10 500,200"
stop_notifier TERM "$IDLE_PID"
expect "n6 exits 0, and never released anything" "$STATUS $(released_lines n6 | wc -l)" "0 0"
q "ALTER DATABASE $DB RESET followup.max_attempts"

expect "no malformed request all along" "$(q "SELECT count(*) FROM webhook_requests WHERE check_ <> 'ok'")" "0"
expect "nothing is left claimed or pending" "$(count "status <> 'delivered'")" "0"
finish
