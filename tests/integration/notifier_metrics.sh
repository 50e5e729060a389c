#!/usr/bin/env bash
# --metrics-addr: /metrics against the outbox it describes, /healthz against
# the database's state, and --log-format json. A private cluster, so that the
# test can stop and start it.
#   1. after deliveries, failures (one message retried, one made dead with
#      followup.max_attempts = 2) and releases (a batch too slow for its
#      lease), every counter equals what the outbox and the webhook recorded:
#      delivered, failed (attempts that ended in followup.fail), dead,
#      released (claimed and handed back unsent), the latency histogram's
#      count (requests the webhook saw), the connection gauge, and no request
#      in flight at rest (tests/integration/notifier_concurrency.sh has that
#      gauge with requests in flight);
#   2. the age of the oldest claimable message (followup.oldest_claimable_age),
#      read by a notifier running as a role with exactly the README's grants:
#      the age of the message the next claim takes (one inserted with a fixed
#      enqueued_at), 0 once none is left; without EXECUTE on that function the
#      gauge is left out and a warning names the grant, once;
#   3. /healthz: 200 while connected; 503 while the database is down; 200 again
#      after the notifier reconnected, and it delivers what came meanwhile;
#   4. --log-format json: one JSON object a line, a delivery's fields included.
source "$(dirname "$0")/../lib/integration.sh"
source "$REPO/tests/lib/notifier.sh"

notifier_setup notifier-metrics
cluster_init met
cleanup_hook "cluster_stop met immediate"
cluster_start met
export PGHOST=$(cluster_host met) PGPORT=$(cluster_port met)
new_db it_notifier_metrics
q "ALTER DATABASE $DB SET followup.max_attempts = 2"
start_webhook web
WEBHOOK_URL="http://127.0.0.1:$WEBHOOK_PORT/hooks/followup"

# --- 1. counters against the outbox -------------------------------------------
first=$(next_message_id)
dead=$((first + 1)) retried=$((first + 2))
rules "$dead status 500" "$retried status 500 1"
add_messages metrics 20
# (one delivery at a time, so that the slow batch below outlasts its lease
# whatever the machine's speed)
start_notifier m1 --lease '5 seconds' --request-timeout 2s --batch-size 10 --poll-interval 1s --concurrency 1 \
    --metrics-addr 127.0.0.1:0 --log-format json
METRICS="$(python3 -c 'import json, sys
for line in open(sys.argv[1]):
    m = json.loads(line)["message"]
    if m.startswith("serving /metrics"):
        print(m.split(" on ")[1] + "/metrics")' "$WORK/m1.log")"
wait_until "the first attempts are done" 30 \
    count_is "status = 'delivered' OR (message_id IN ($dead, $retried) AND last_error IS NOT NULL)" 20
q "UPDATE followup.outbox SET visible_at = now() WHERE message_id IN ($dead, $retried)"  # the backoff is over
wait_until "the retries are done" 30 count_is "status = 'delivered' OR (message_id = $dead AND status = 'dead')" 20
# a batch too slow for its lease: 0.5 s a request, a 5 s lease, a 2 s timeout
# (requests may start during the first 2.75 s of a lease: at most 6 of the 10)
rules "* delay 0.5"
add_messages slow 10
wait_until "the slow ones are delivered" 60 count_is "status = 'delivered'" 29
load_requests
posts=$(q "SELECT count(*) FROM webhook_requests")
expect "followup_notifier_delivered_total = delivered messages in the outbox (29)" \
    "$(metric "$METRICS" followup_notifier_delivered_total)" "$(count "status = 'delivered'")"
expect "followup_notifier_failed_total = failed attempts in the outbox (3)" \
    "$(metric "$METRICS" followup_notifier_failed_total)" \
    "$(q "SELECT sum(CASE WHEN status = 'dead' THEN attempts ELSE attempts - 1 END) FROM followup.outbox")"
expect "  = the webhook's error answers" \
    "$(metric "$METRICS" followup_notifier_failed_total)" "$(q "SELECT count(*) FROM webhook_requests WHERE answer <> '200'")"
expect "followup_notifier_dead_total = dead messages in the outbox (1)" \
    "$(metric "$METRICS" followup_notifier_dead_total)" "$(count "status = 'dead'")"
released=$(metric "$METRICS" followup_notifier_released_total)
expect "followup_notifier_released_total = messages claimed but not posted (from the lease records), more than 0" \
    "$released $((released > 0))" \
    "$(($(q "SELECT sum(cardinality(message_ids)) FROM followup.outbox_leases WHERE consumer = 'm1'") - posts)) 1"
expect "  = the counts of its 'released' log lines" "$released" \
    "$(python3 -c 'import json, re, sys
print(sum(int(re.match(r"released (\d+) ", json.loads(l)["message"]).group(1))
          for l in open(sys.argv[1]) if json.loads(l)["message"].startswith("released ")))' "$WORK/m1.log")"
expect "the latency histogram counted every request ($posts), its sum in seconds > 0" \
    "$(metric "$METRICS" followup_notifier_delivery_duration_seconds_count) $(awk -v s="$(metric "$METRICS" followup_notifier_delivery_duration_seconds_sum)" 'BEGIN { print (s > 0) }')" \
    "$posts 1"
expect "  the 10 requests of at least 0.5 s are above its 0.25 s bucket" \
    "$(($(metric "$METRICS" 'followup_notifier_delivery_duration_seconds_bucket{le="0.25"}') <= posts - 10)) $(metric "$METRICS" 'followup_notifier_delivery_duration_seconds_bucket{le="+Inf"}')" \
    "1 $posts"
expect "connected: followup_notifier_database_connected 1" "$(metric "$METRICS" followup_notifier_database_connected)" "1"
expect "no request in flight at rest: followup_notifier_requests_in_flight 0" \
    "$(metric "$METRICS" followup_notifier_requests_in_flight)" "0"
expect "nothing claimable is left: the oldest claimable message's age is 0" \
    "$(metric "$METRICS" followup_notifier_oldest_claimable_age_seconds)" "0.0"
stop_notifier TERM
expect "m1 exits 0" "$STATUS" "0"

# --- 4. (m1's) JSON log --------------------------------------------------------
expect "--log-format json: every line is a JSON object with a timestamp, a level and a message" \
    "$(python3 -c 'import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
print(len(lines) > 0 and all({"timestamp", "level", "message"} <= set(l) for l in lines))' "$WORK/m1.log")" "True"
expect "  one 'delivered' event per delivery, with message_id, key, status and elapsed_ms fields" \
    "$(python3 -c 'import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
ev = [e for e in ev if e["message"] == "delivered"]
print(len(ev), all(e["status"] == 200 and e["key"].endswith("/" + sys.argv[2] + "/reminder/1") and "elapsed_ms" in e
                   and e["message_id"].isdigit() for e in ev))' "$WORK/m1.log" "$AS_OF")" "29 True"

# --- 2. the age of the oldest claimable message --------------------------------
# m2 polls once an hour and rows inserted by hand send no NOTIFY: the message
# below stays claimable until the pg_notify that wakes m2. It runs as the
# role the README's grants make, nothing more.
notifier_role
NOTIFIER_DB="dbname=$DB user=followup_notifier"
start_notifier m2 --poll-interval 60m --metrics-addr 127.0.0.1:0
METRICS="$(metrics_base m2)/metrics" HEALTHZ="$(metrics_base m2)/healthz"
wait_until "m2 has made its first claim and waits" 60 idle_claimer
rules
aged=$(next_message_id)
q "INSERT INTO followup.outbox (assignment_id, cycle_start, kind, sequence, recipient_role, recipient_id,
                                days_since_contact, payload, enqueued_at)
   VALUES ('aged-1', date '$AS_OF', 'reminder', 1, 'mentor', 'mentor-1', 30, '{}', timestamptz '$AS_OF 03:00+00')"
age_now() { q "SELECT extract(epoch FROM clock_timestamp() - enqueued_at) FROM followup.outbox WHERE message_id = $aged"; }
before=$(age_now)
age=$(metric "$METRICS" followup_notifier_oldest_claimable_age_seconds)
after=$(age_now)
expect "a claimable message enqueued at a fixed instant: the gauge is its age, read at the scrape" \
    "$(awk -v b="$before" -v a="$age" -v c="$after" 'BEGIN { print (b <= a && a <= c) }')" "1"
q "SELECT pg_notify('followup_outbox', '{}')" >/dev/null
wait_until "m2 delivered it" 60 count_is "message_id = $aged AND status = 'delivered'" 1
expect "  and 0 once it is delivered" "$(metric "$METRICS" followup_notifier_oldest_claimable_age_seconds)" "0.0"
q "REVOKE EXECUTE ON FUNCTION followup.oldest_claimable_age() FROM followup_notifier"
expect "without EXECUTE on followup.oldest_claimable_age(): no age in /metrics (twice), the counters still there" \
    "$(metric "$METRICS" followup_notifier_oldest_claimable_age_seconds | wc -l) $(metric "$METRICS" followup_notifier_oldest_claimable_age_seconds | wc -l) $(metric "$METRICS" followup_notifier_delivered_total)" \
    "0 0 1"
expect "  and one warning, naming the grant" \
    "$(grep -c 'cannot read the age of the oldest claimable message (ERROR: permission denied for function oldest_claimable_age); grant the notifier.s role EXECUTE ON FUNCTION followup.oldest_claimable_age()' "$WORK/m2.log")" "1"
q "GRANT EXECUTE ON FUNCTION followup.oldest_claimable_age() TO followup_notifier"
expect "granted again: the age is back" "$(metric "$METRICS" followup_notifier_oldest_claimable_age_seconds)" "0.0"

# --- 3. /healthz ----------------------------------------------------------------
healthz() { curl -s -o /dev/null -w '%{http_code}' "$HEALTHZ"; }
healthz_is() { [ "$(healthz)" = "$1" ]; }
expect "/healthz while connected to the primary: 200" "$(healthz) $(curl -s "$HEALTHZ")" \
    "200 ok: connected to a writable primary"
cluster_stop met fast
wait_until "/healthz says 503" 30 healthz_is 503
expect "the database is down: /healthz 503, and the connection gauge 0" \
    "$(healthz) $(metric "$METRICS" followup_notifier_database_connected)" "503 0"
expect "  /metrics still answers, without the age (unknown while disconnected)" \
    "$(metric "$METRICS" followup_notifier_delivered_total) $(metric "$METRICS" followup_notifier_oldest_claimable_age_seconds | wc -l)" \
    "1 0"
cluster_start met
wait_until "m2 reconnected" 60 grep -qs "reconnected to" "$WORK/m2.log"
expect "after the database came back: /healthz 200 again, connected 1" \
    "$(healthz) $(metric "$METRICS" followup_notifier_database_connected)" "200 1"
first=$(next_message_id)
add_messages after 5
q "SELECT pg_notify('followup_outbox', '{}')" >/dev/null
wait_until "m2 delivered the 5" 60 count_is "message_id >= $first AND status = 'delivered'" 5
expect "  and delivers again: 6 delivered by m2, as its counter says" \
    "$(count "claimed_by = 'm2' AND status = 'delivered'") $(metric "$METRICS" followup_notifier_delivered_total)" "6 6"
stop_notifier TERM
expect "m2 exits 0" "$STATUS" "0"
load_requests
expect "every message reached the webhook once, the dead one twice and the retried one twice" \
    "$(q "SELECT count(*) - count(DISTINCT message_id) || ' ' || count(DISTINCT message_id) FROM webhook_requests")" \
    "2 $(count "true")"
finish
