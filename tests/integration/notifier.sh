#!/usr/bin/env bash
# The reference notifier (notifier/, SPEC §8, issue 5) end to end: the real
# followup-notifier binary against this cluster, delivering to a real HTTP
# server on a local socket (tests/lib/webhook.py, which records every request
# and can answer 500s or hang on chosen messages). Checks, with exact counts:
#   1. a run's messages are delivered once each, woken by NOTIFY;
#   2. SIGTERM mid-batch: the request in flight is finished and acked, the rest
#      of the batch released at once, exit 0; after a restart every message has
#      reached the webhook exactly once and nothing is left claimed;
#   3. a 500 is failed (last_error, attempts, backoff) and retried until delivered;
#   4. a hanging request times out, is failed, and is retried;
#   5. SIGKILL mid-batch: the unacked messages come back once the lease expires
#      and are delivered by the next notifier with the same Idempotency-Key;
#   6. a batch too slow for its lease is released in time, not sent late.
source "$(dirname "$0")/../lib/integration.sh"

WORK="$CLUSTER_ROOT/notifier-test"
rm -rf "$WORK" && mkdir -p "$WORK"
NOTIFIER_PID="" WEBHOOK_PID=""
cleanup() {
    [ -n "$NOTIFIER_PID" ] && kill -KILL "$NOTIFIER_PID" 2>/dev/null
    [ -n "$WEBHOOK_PID" ] && kill "$WEBHOOK_PID" 2>/dev/null
    return 0
}
trap cleanup EXIT

# Gives up on the whole script, with the logs that say why.
abort() {
    echo "FAIL - $*"
    for f in "$WORK"/*.log "$WORK/webhook.err"; do
        [ -s "$f" ] && { echo "--- $f"; tail -n 30 "$f"; }
    done
    exit 1
}

# wait_until DESCRIPTION SECONDS COMMAND...: runs COMMAND every 0.1 s until it
# succeeds (a function, so that what it checks is looked at anew each time).
wait_until() {
    local what=$1 seconds=$2; shift 2
    local deadline=$((SECONDS + seconds))
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || abort "timed out after ${seconds}s waiting until $what"
        sleep 0.1
    done
}

echo "# building the notifier"
(cd "$REPO" && cargo build --quiet -p followup-notifier) || abort "cargo build -p followup-notifier"
TARGET_DIR=$(cd "$REPO" && cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
NOTIFIER="$TARGET_DIR/debug/followup-notifier"
[ -x "$NOTIFIER" ] || abort "no binary at $NOTIFIER"

# --- the webhook -------------------------------------------------------------
REQUESTS="$WORK/requests.tsv" RULES="$WORK/rules"
: >"$RULES"
python3 "$REPO/tests/lib/webhook.py" --port-file "$WORK/port" --log "$REQUESTS" --rules "$RULES" \
    2>"$WORK/webhook.err" &
WEBHOOK_PID=$!
wait_until "the webhook listens" 10 test -s "$WORK/port"
WEBHOOK_URL="http://127.0.0.1:$(cat "$WORK/port")/hooks/followup"

# rules LINE...: replaces the webhook's rules.
rules() { printf '%s\n' "$@" >"$RULES"; }
# requests_for ID: how many requests the webhook has seen for message ID.
requests_for() { awk -F'\t' -v id="$1" '$2 == id' "$REQUESTS" | wc -l; }
# requests_from ID: requests for messages with ids >= ID.
requests_from() { awk -F'\t' -v id="$1" '$2 + 0 >= id' "$REQUESTS" | wc -l; }
# load_requests: the webhook's log as table webhook_requests, for SQL checks.
load_requests() {
    q "SET client_min_messages = warning; DROP TABLE IF EXISTS webhook_requests;
       CREATE TABLE webhook_requests (n int, message_id bigint, idempotency_key text, answer text, nth int, check_ text)"
    q "\\copy webhook_requests FROM '$REQUESTS'"
}

# --- the notifier ------------------------------------------------------------
# start_notifier CONSUMER [FLAGS...]: runs it in the background, logging to
# $WORK/CONSUMER.log, and waits until it listens. PGHOST/PGPORT/PGUSER come
# from the environment: the connection string names only the database.
start_notifier() {
    local consumer=$1; shift
    "$NOTIFIER" --database "dbname=$DB" --webhook-url "$WEBHOOK_URL" --consumer "$consumer" "$@" \
        2>>"$WORK/$consumer.log" &
    NOTIFIER_PID=$!
    wait_until "notifier $consumer listens" 15 grep -qs "listening on followup_outbox" "$WORK/$consumer.log"
}
# stop_notifier SIGNAL: signals it, waits, sets STATUS to its exit status.
stop_notifier() {
    STATUS=0
    kill "-$1" "$NOTIFIER_PID"
    # (the braces keep bash's own "Killed" job report out of the output)
    { wait "$NOTIFIER_PID" || STATUS=$?; } 2>/dev/null
    NOTIFIER_PID=""
}
next_message_id() {
    q "SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM followup.outbox_message_id_seq"
}
count() { q "SELECT count(*) FROM followup.outbox WHERE $1"; }
# count_is CONDITION N / requests_are ID N: conditions for wait_until.
count_is() { [ "$(count "$1")" -eq "$2" ]; }
requests_are() { [ "$(requests_for "$1")" -eq "$2" ]; }
# add_messages PREFIX N: N pending messages inserted by hand (like a run would).
add_messages() {
    q "INSERT INTO followup.outbox (assignment_id, cycle_start, kind, sequence, recipient_role, recipient_id,
                                    days_since_contact, payload)
       SELECT '$1-' || g, current_date, 'reminder', 1, 'mentor', 'mentor-' || g, 30, jsonb_build_object('n', g)
         FROM generate_series(1, $2) AS g"
}

new_db it_notifier
q "SELECT app.seed(200)" >/dev/null
register_app

# --- 1 and 2: a run's messages, SIGTERM in the middle of a batch, restart ---
first=$(next_message_id)
slow=$((first + 39))  # claimed in id order: the 40th message of the first batch
rules "$slow delay 1.5" "* delay 0.02"
# A 60 s poll interval: only the run's NOTIFY can wake it within the wait below.
start_notifier n1 --poll-interval 60s --request-timeout 5s
started=$SECONDS
total=$(q "SELECT reminders_enqueued FROM followup.run_now()")
expect "the run enqueued more than one batch of 100" "$((total > 100))" "1"
wait_until "the 40th message is being delivered" 20 requests_are "$slow" 1
expect "woken by the run's NOTIFY (well before its 60 s poll)" "$((SECONDS - started < 30))" "1"
stop_notifier TERM
expect "SIGTERM while a request is in flight: the notifier exits 0" "$STATUS" "0"
expect "the message in flight was finished and acked" \
    "$(q "SELECT status FROM followup.outbox WHERE message_id = $slow")" "delivered"
expect "the 40 messages sent are delivered, nothing else" "$(count "status = 'delivered'")" "40"
expect "the webhook received exactly those 40" "$(wc -l <"$REQUESTS")" "40"
expect "nothing is left claimed" "$(count "status = 'claimed'")" "0"
expect "the other 60 of the batch were released: pending, visible now, with the reason" \
    "$(count "status = 'pending' AND attempts = 1 AND visible_at <= now()
              AND last_error = 'notifier shut down before delivery'")" "60"
expect "messages beyond the batch were never claimed" "$(count "status = 'pending' AND attempts = 0")" \
    "$((total - 100))"
expect "n1 logged the SIGTERM and one 'released' line per released message" \
    "$(grep -c 'SIGTERM received' "$WORK/n1.log") $(grep -c ' released message_id=' "$WORK/n1.log")" "1 60"

start_notifier n2 --poll-interval 1s --request-timeout 1s
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
expect "the released messages were delivered on their second claim, the rest on their first" \
    "$(q "SELECT string_agg(attempts || ':' || n, ' ' ORDER BY attempts)
            FROM (SELECT attempts, count(*) AS n FROM followup.outbox GROUP BY attempts) s")" \
    "1:$((total - 60)) 2:60"
expect "delivered rows keep no error" "$(count "last_error IS NOT NULL")" "0"
expect "n2 logged one 'delivered' line per message it delivered" \
    "$(grep -c ' delivered message_id=' "$WORK/n2.log")" "$((total - 40))"

# --- 3 and 4: a webhook that answers 500, one that hangs ---------------------
first=$(next_message_id)
failing=$((first + 1)) hanging=$((first + 3))
rules "$failing status 500 2" "$hanging hang 1"
add_messages retry 6
wait_until "every message had its first attempt" 20 \
    count_is "message_id >= $first AND (status = 'delivered' OR last_error IS NOT NULL)" 6
expect "the other four, also after the hanging one, are delivered" \
    "$(q "SELECT string_agg((message_id - $first)::text, ',' ORDER BY message_id) FROM followup.outbox
           WHERE message_id >= $first AND status = 'delivered'")" "0,2,4,5"
expect "a 500 is failed: pending again, its error recorded, attempt 1" \
    "$(q "SELECT status || '|' || attempts || '|' || last_error FROM followup.outbox WHERE message_id = $failing")" \
    "pending|1|HTTP 500 Internal Server Error: injected failure"
expect "  and retried after the first backoff step (30 s)" \
    "$(count "message_id = $failing AND visible_at - now() BETWEEN interval '20 s' AND interval '30 s'")" "1"
expect "a hanging request times out and is failed" \
    "$(q "SELECT status || '|' || attempts || '|' || last_error FROM followup.outbox WHERE message_id = $hanging")" \
    "pending|1|request timed out after 1s"
# time passes: the backoff is over
q "UPDATE followup.outbox SET visible_at = now() WHERE message_id IN ($failing, $hanging)"
wait_until "the second attempts are done" 20 count_is \
    "(message_id = $hanging AND status = 'delivered') OR (message_id = $failing AND attempts = 2 AND status = 'pending')" 2
expect "the hung message is delivered on its retry" \
    "$(q "SELECT attempts FROM followup.outbox WHERE message_id = $hanging")" "2"
expect "a second 500: attempt 2, the backoff doubled (60 s)" \
    "$(count "message_id = $failing AND visible_at - now() BETWEEN interval '50 s' AND interval '60 s'")" "1"
q "UPDATE followup.outbox SET visible_at = now() WHERE message_id = $failing"
wait_until "the failing message is delivered" 20 count_is "message_id = $failing AND status = 'delivered'" 1
expect "delivered on the third attempt" "$(q "SELECT attempts FROM followup.outbox WHERE message_id = $failing")" "3"
load_requests
expect "the webhook saw 500, 500, 200 for it, always with the same key" \
    "$(q "SELECT string_agg(answer, ',' ORDER BY n) || ' ' || count(DISTINCT idempotency_key)
            FROM webhook_requests WHERE message_id = $failing")" "500,500,200 1"
expect "and hang, 200 for the hanging one" \
    "$(q "SELECT string_agg(answer, ',' ORDER BY n) FROM webhook_requests WHERE message_id = $hanging")" "hang,200"
expect "one request for each of the other four" \
    "$(q "SELECT count(*) FROM webhook_requests WHERE message_id >= $first AND message_id NOT IN ($failing, $hanging)")" "4"
started=$(date +%s%3N)
stop_notifier TERM
expect "an idle notifier stops at once on SIGTERM (under 1 s), exit 0" \
    "$STATUS $(($(date +%s%3N) - started < 1000))" "0 1"

# --- 5: SIGKILL in the middle of a batch, short lease -------------------------
first=$(next_message_id)
stuck=$((first + 5))
rules "$stuck hang 1"
add_messages kill 60
start_notifier n3 --lease '3 seconds' --batch-size 20 --request-timeout 2s --poll-interval 1s
wait_until "the 6th message is in flight" 10 requests_are "$stuck" 1
stop_notifier KILL
expect "SIGKILL: no chance to clean up" "$STATUS" "137"
q "CREATE TABLE killed AS SELECT message_id, visible_at AS lease_end FROM followup.outbox WHERE status = 'claimed'"
expect "at the kill: 5 delivered, the 15 others of the batch claimed, 40 never claimed" \
    "$(q "SELECT count(*) FILTER (WHERE status = 'delivered') || ' ' || count(*) FILTER (WHERE status = 'claimed')
                 || ' ' || count(*) FILTER (WHERE status = 'pending' AND attempts = 0)
            FROM followup.outbox WHERE message_id >= $first")" "5 15 40"
start_notifier n4 --lease '3 seconds' --batch-size 20 --request-timeout 2s --poll-interval 1s
wait_until "all 60 are delivered" 30 count_is "message_id >= $first AND status = 'delivered'" 60
expect "the 15 came back only after their lease expired, and n4 delivered them on attempt 2" \
    "$(q "SELECT count(*) FROM killed k JOIN followup.outbox o USING (message_id)
           WHERE o.status = 'delivered' AND o.attempts = 2 AND o.claimed_by = 'n4' AND o.delivered_at >= k.lease_end")" \
    "15"
load_requests
expect "the webhook got each of the 60 once, but the one in flight at the kill twice" \
    "$(q "SELECT count(*) || ' ' || count(DISTINCT message_id) FROM webhook_requests WHERE message_id >= $first")" \
    "61 60"
expect "both times with the same Idempotency-Key, the outbox's" \
    "$(q "SELECT string_agg(r.answer, ',' ORDER BY r.n) || ' ' || count(DISTINCT r.idempotency_key) || ' '
                 || bool_and(r.idempotency_key = format('%s/%s/%s/%s', o.assignment_id, o.cycle_start, o.kind, o.sequence))
            FROM webhook_requests r JOIN followup.outbox o USING (message_id) WHERE message_id = $stuck")" \
    "hang,200 1 true"
expect "no malformed request all along" "$(q "SELECT count(*) FROM webhook_requests WHERE check_ <> 'ok'")" "0"
expect "nothing is left claimed or pending" "$(count "status <> 'delivered'")" "0"
stop_notifier TERM
expect "SIGTERM: exit 0" "$STATUS" "0"

# --- 6: a batch that would outlast its lease ---------------------------------
# 0.5 s a request, a 3 s lease, a 1 s timeout: a request may only start while
# 1.25 s (timeout + ack) of the lease remain, so each claim of 10 delivers 4 or
# so and releases the rest for the next claim, rather than sending messages
# another consumer could have re-claimed meanwhile.
first=$(next_message_id)
rules "* delay 0.5"
add_messages lease 10
start_notifier n5 --lease '3 seconds' --batch-size 10 --request-timeout 1s --poll-interval 1s
wait_until "all 10 are delivered" 30 count_is "message_id >= $first AND status = 'delivered'" 10
stop_notifier TERM
expect "each of the 10 reached the webhook once" \
    "$(awk -F'\t' -v id="$first" '$2 + 0 >= id' "$REQUESTS" | cut -f2 | sort -u | wc -l) $(requests_from "$first")" "10 10"
expect "the rest of a batch was released before its lease ran out, never sent late" \
    "$(($(grep -c 'lease about to expire before delivery' "$WORK/n5.log") > 0)) $(grep -c 'ack was refused' "$WORK/n5.log" || true)" \
    "1 0"
finish
