#!/usr/bin/env bash
# The notifier with several deliveries at once (--concurrency), against a real
# webhook (tests/lib/webhook.py) that answers slowly, out of order, with 500s
# and with requests it never answers; every notifier runs as the role the
# README's grants make (followup_notifier), nothing more.
#   1. the bound: with --concurrency 4 (given as FOLLOWUP_CONCURRENCY) and four
#      requests held by the webhook, nothing else starts; /metrics shows 4
#      requests in flight; answers taken out of order are acked as they come
#      (a later message delivered before earlier ones); never more than 4 in
#      flight, on at most 4 kept-alive connections;
#   2. two notifiers (8 and 3 at once), answers after a random 0.2-0.4 s, a
#      500 for every tenth message's first request and a hang (past the 1 s
#      request timeout) for others: every message is delivered exactly once
#      (one 200 per Idempotency-Key), the failed ones after exactly one failed
#      request and a 30 s backoff, none with an attempt more than its
#      failures; the lease rule holds (every 200 answered before the lease
#      that carried it expired, every ack and fail accepted under its lease,
#      and the batch too big for its lease released in time); the counters of
#      both notifiers add up to the outbox;
#   3. SIGTERM with four requests in flight (three held, one hanging): the
#      messages not started are released at once, while the four are still
#      in flight; the held ones are acked once answered, the hanging one
#      failed at its timeout; exit 0; nothing lost: another notifier delivers
#      the rest, each message once.
# No check depends on the machine's speed: the webhook holds requests until
# the test opens a gate, waits are conditions (deadlines only guard against a
# hang), and time-based outcomes are checked against the lease records.
source "$(dirname "$0")/../lib/integration.sh"
source "$REPO/tests/lib/notifier.sh"

notifier_setup notifier-concurrency
new_db it_notifier_concurrency
notifier_role
NOTIFIER_DB="dbname=$DB user=followup_notifier"
start_webhook web
WEBHOOK_URL="http://127.0.0.1:$WEBHOOK_PORT/hooks/followup"
# held IDS...: each of the messages has a request at the webhook
held() { local id; for id in "$@"; do requests_are "$id" 1 || return 1; done; }
metric_of() { metric "$(metrics_base "$1")/metrics" "$2"; }

# --- 1. the bound, the gauge, answers out of order --------------------------
first=$(next_message_id)
m0=$first m1=$((first + 1)) m2=$((first + 2)) m3=$((first + 3))
rules "$m0 hold $WORK/gate0" "$m1 hold $WORK/gate1" "$m2 hold $WORK/gate2" "$m3 hold $WORK/gate3" "* delay 0.01"
add_messages bound 40
FOLLOWUP_CONCURRENCY=4 start_notifier c1 --batch-size 10 --poll-interval 1s --metrics-addr 127.0.0.1:0
wait_until "the first four are in flight" 60 held "$m0" "$m1" "$m2" "$m3"
expect "four requests held: /metrics says 4 in flight" "$(metric_of c1 followup_notifier_requests_in_flight)" "4"
# one claim is kept ahead: with 6 of the first 10 queued (fewer than a claim
# brings) the next claim of 10 is made; then 16 are queued and no more
wait_until "the next claim is made ahead" 60 count_is "status = 'claimed'" 20
expect "  and nothing else started: the webhook has 4 requests, the outbox no delivery, two claims of 10" \
    "$(wc -l <"$REQUESTS") $(count "status = 'delivered'") $(count "status = 'claimed'")" "4 0 20"
touch "$WORK/gate3"
wait_until "the 36 not held are delivered, through the one free slot" 60 \
    count_is "status = 'delivered' AND message_id NOT IN ($m0, $m1, $m2)" 37
expect "the 4th message, answered first, was acked at once: delivered before the three held, which are still claimed" \
    "$(count "message_id = $m3 AND status = 'delivered'") $(count "message_id IN ($m0, $m1, $m2) AND status = 'claimed'")" \
    "1 3"
expect "  /metrics: 3 in flight, 37 delivered" \
    "$(metric_of c1 followup_notifier_requests_in_flight) $(metric_of c1 followup_notifier_delivered_total)" "3 37"
touch "$WORK/gate1" "$WORK/gate0" "$WORK/gate2"
wait_until "all 40 are delivered" 60 count_is "status = 'delivered'" 40
expect "the held ones, answered last, were delivered after all the others" \
    "$(q "SELECT count(*) FROM followup.outbox WHERE message_id IN ($m0, $m1, $m2)
           AND delivered_at > (SELECT max(delivered_at) FROM followup.outbox WHERE message_id NOT IN ($m0, $m1, $m2))")" "3"
load_requests
expect "each message reached the webhook once; never more than 4 requests at once, 4 reached; at most 4 connections" \
    "$(q "SELECT count(*) || ' ' || count(DISTINCT message_id) || ' ' || max(in_flight) || ' ' || (count(DISTINCT conn) <= 4)
            FROM webhook_requests")" "40 40 4 true"
expect "/metrics: nothing in flight at the end, 40 delivered" \
    "$(metric_of c1 followup_notifier_requests_in_flight) $(metric_of c1 followup_notifier_delivered_total)" "0 40"
stop_notifier TERM
expect "c1 exits 0 on SIGTERM" "$STATUS" "0"

# --- 2. two notifiers, slow answers out of order, 500s, timeouts -------------
start=$(next_message_id)
n=300
# by position k in 0..299: every tenth (k % 10 = 3) gets a 500 first, others
# (k % 23 = 7) a request that hangs past the timeout; every answer after
# 0.2 to 0.4 s, in whatever order that makes
failing=$(seq 0 $((n - 1)) | awk -v s="$start" '$1 % 10 == 3 { print s + $1 }' | paste -sd,)
hanging=$(seq 0 $((n - 1)) | awk -v s="$start" '$1 % 23 == 7 && $1 % 10 != 3 { print s + $1 }' | paste -sd,)
{
    tr ',' '\n' <<<"$failing" | sed 's/$/ status 500 1/'
    tr ',' '\n' <<<"$hanging" | sed 's/$/ hang 1/'
    echo "* jitter 0.2 0.4"
} >"$RULES"
# c3's first claim of 60 needs 60 x 0.2 s / 3 = 4 s at the least; its lease
# lets requests start for 5 - 1.25 = 3.75 s: it must release some of it.
start_notifier c2 --concurrency 8 --batch-size 40 --lease '5 seconds' --request-timeout 1s --poll-interval 1s \
    --metrics-addr 127.0.0.1:0
C2=$NOTIFIER_PID
start_notifier c3 --concurrency 3 --batch-size 60 --lease '5 seconds' --request-timeout 1s --poll-interval 1s \
    --metrics-addr 127.0.0.1:0
both_idle() {
    [ "$(q "SELECT count(*) FROM pg_stat_activity WHERE usename = 'followup_notifier' AND state = 'idle'
             AND query LIKE '%followup.claim(%'")" = 2 ]
}
wait_until "both wait for work" 60 both_idle
before=$(q "SELECT clock_timestamp()")
add_messages chaos "$n"
q "SELECT pg_notify('followup_outbox', '{}')" >/dev/null
wait_until "every message had its first delivery or failure" 120 \
    count_is "message_id >= $start AND (status = 'delivered' OR last_error IS NOT NULL)" "$n"
after=$(q "SELECT clock_timestamp()")
failed_count=$(($(tr ',' '\n' <<<"$failing" | wc -l) + $(tr ',' '\n' <<<"$hanging" | wc -l)))
expect "the $failed_count failed ones: pending, attempt 1, their error, retried 30 s after the failure" \
    "$(q "SELECT count(*) FILTER (WHERE message_id IN ($failing) AND last_error = 'HTTP 500 Internal Server Error: injected failure')
                 + count(*) FILTER (WHERE message_id IN ($hanging) AND last_error = 'request timed out after 1s')
            FROM followup.outbox
           WHERE status = 'pending' AND attempts = 1
             AND visible_at BETWEEN timestamptz '$before' + interval '30 s' AND timestamptz '$after' + interval '30 s'")" \
    "$failed_count"
expect "  every other one delivered on its first attempt, without error (a release costs no attempt)" \
    "$(count "message_id >= $start AND status = 'delivered' AND attempts = 1 AND last_error IS NULL")" "$((n - failed_count))"
q "UPDATE followup.outbox SET visible_at = now() WHERE message_id >= $start AND status = 'pending'"  # time passes
wait_until "all $n are delivered" 120 count_is "message_id >= $start AND status = 'delivered'" "$n"
load_requests
q "CREATE TABLE chaos_leases AS SELECT lease_id::text, consumer, message_ids, expires_at FROM followup.outbox_leases
    WHERE consumer IN ('c2', 'c3')"
expect "every message delivered exactly once: one 200 per Idempotency-Key, each the outbox's" \
    "$(q "SELECT count(*) || ' ' || count(DISTINCT r.idempotency_key) || ' '
                 || count(*) FILTER (WHERE r.idempotency_key = format('%s/%s/%s/%s', o.assignment_id, o.cycle_start, o.kind, o.sequence))
            FROM webhook_requests r JOIN followup.outbox o USING (message_id)
           WHERE r.message_id >= $start AND r.answer = '200'")" "$n $n $n"
expect "the requests per message: 500 then 200, hang then 200, else one 200 (nothing posted twice)" \
    "$(q "SELECT string_agg(format('%s:%s', answers, c), ' ' ORDER BY answers)
            FROM (SELECT answers, count(*) AS c
                    FROM (SELECT string_agg(answer, ',' ORDER BY n) AS answers FROM webhook_requests
                           WHERE message_id >= $start GROUP BY message_id) s GROUP BY answers) t")" \
    "200:$((n - failed_count)) 500,200:$(tr ',' '\n' <<<"$failing" | wc -l) hang,200:$(tr ',' '\n' <<<"$hanging" | wc -l)"
expect "the failed ones were delivered on their second attempt, keeping their error" \
    "$(count "message_id IN ($failing, $hanging) AND status = 'delivered' AND attempts = 2 AND last_error IS NOT NULL")" \
    "$failed_count"
expect "the lease rule: every request came under a lease of its notifier holding the message, every 200 answered before that lease expired" \
    "$(q "SELECT count(*) FILTER (WHERE l.lease_id IS NOT NULL AND r.message_id = ANY (l.message_ids))
                 || ' ' || count(*) FILTER (WHERE r.answer = '200' AND r.answered <= l.expires_at)
            FROM webhook_requests r LEFT JOIN chaos_leases l USING (lease_id) WHERE r.message_id >= $start")" \
    "$((n + failed_count)) $n"
expect "  every ack and fail was accepted under its lease (no 'lease is no longer ours' in the logs)" \
    "$(cat "$WORK/c2.log" "$WORK/c3.log" | grep -c 'no longer ours' || true)" "0"
released=$(grep -h ' released [0-9]* undelivered messages\? (lease about to expire before delivery)' "$WORK/c2.log" "$WORK/c3.log" \
    | sed -n 's/.* released \([0-9]*\) .*/\1/p' | awk '{ s += $1 } END { print s + 0 }')
expect "  c3's batch, too big for its lease, was partly released before the lease ran out" \
    "$(( $(grep -c 'lease about to expire before delivery' "$WORK/c3.log") > 0 ))" "1"
expect "  every message handed out was posted once per claim or released: claimed = requests + released" \
    "$(q "SELECT sum(cardinality(message_ids)) FROM chaos_leases")" \
    "$(($(q "SELECT count(*) FROM webhook_requests WHERE message_id >= $start") + released))"
expect "the two notifiers' counters add up to the outbox: delivered, failed, released" \
    "$(($(metric_of c2 followup_notifier_delivered_total) + $(metric_of c3 followup_notifier_delivered_total))) $(($(metric_of c2 followup_notifier_failed_total) + $(metric_of c3 followup_notifier_failed_total))) $(($(metric_of c2 followup_notifier_released_total) + $(metric_of c3 followup_notifier_released_total)))" \
    "$n $failed_count $released"
expect "both took part" "$(q "SELECT count(DISTINCT claimed_by) FROM followup.outbox WHERE message_id >= $start")" "2"
stop_notifier TERM
expect "c3 exits 0" "$STATUS" "0"
stop_notifier TERM "$C2"
expect "c2 exits 0" "$STATUS" "0"

# --- 3. SIGTERM with four requests in flight ------------------------------------
start=$(next_message_id)
h0=$start h1=$((start + 1)) h2=$((start + 2)) hang=$((start + 3))
rules "$h0 hold $WORK/gateC" "$h1 hold $WORK/gateC" "$h2 hold $WORK/gateC" "$hang hang 1" "* delay 0.01"
add_messages stop 30
start_notifier c4 --concurrency 4 --batch-size 30 --lease '10 minutes' --request-timeout 3s --poll-interval 1s
C4=$NOTIFIER_PID
wait_until "four requests are in flight" 60 held "$h0" "$h1" "$h2" "$hang"
kill -TERM "$C4"
released_c4() { grep -qs ' released ' "$WORK/c4.log"; }
wait_until "c4 released what it had not started" 60 released_c4
expect "SIGTERM: the 26 not started were released at once, while the four were still in flight" \
    "$(count "message_id > $hang AND status = 'pending' AND attempts = 0 AND lease_id IS NULL AND last_error IS NULL") $(count "message_id <= $hang AND status = 'claimed'") $(kill -0 "$C4" 2>/dev/null && echo running)" \
    "26 4 running"
touch "$WORK/gateC"
STATUS=0
{ wait "$C4" || STATUS=$?; } 2>/dev/null
forget_notifier "$C4"
expect "c4 finished its requests in flight and exited 0: the held ones acked, the hanging one failed at its timeout" \
    "$STATUS $(count "message_id IN ($h0, $h1, $h2) AND status = 'delivered'") $(q "SELECT status || '|' || attempts || '|' || last_error FROM followup.outbox WHERE message_id = $hang")" \
    "0 3 pending|1|request timed out after 3s"
expect "  it logged one release, of the 26, and posted nothing else" \
    "$(grep -c ' released ' "$WORK/c4.log") $(grep ' released ' "$WORK/c4.log" | grep -c "released 26 undelivered messages (notifier shut down before delivery) -> pending, claimable at once, no attempt counted: message_ids=$((hang + 1))-$((start + 29))") $(awk -F'\t' -v s="$start" '$2 + 0 >= s' "$REQUESTS" | wc -l)" \
    "1 1 4"
q "UPDATE followup.outbox SET visible_at = now() WHERE message_id = $hang"  # its backoff is over
start_notifier c5 --poll-interval 1s
wait_until "all 30 are delivered" 60 count_is "message_id >= $start AND status = 'delivered'" 30
load_requests
expect "nothing lost, nothing twice: each of the 30 answered 200 once (the hanging one also hung once)" \
    "$(q "SELECT count(*) FILTER (WHERE answer = '200') || ' ' || count(DISTINCT message_id) FILTER (WHERE answer = '200') || ' '
                 || count(*) FILTER (WHERE answer = 'hang')
            FROM webhook_requests WHERE message_id >= $start")" "30 30 1"
expect "  the released ones delivered by c5 on their first attempt" \
    "$(count "message_id > $hang AND status = 'delivered' AND attempts = 1 AND claimed_by = 'c5'")" "26"
stop_notifier TERM
expect "c5 exits 0" "$STATUS" "0"
expect "no malformed request all along" "$(q "SELECT count(*) FROM webhook_requests WHERE check_ <> 'ok'")" "0"
finish
