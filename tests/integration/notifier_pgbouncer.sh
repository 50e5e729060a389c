#!/usr/bin/env bash
# Two notifiers through one PgBouncer (Debian's pgbouncer, 1.18) in transaction
# pooling with a pool of one server connection, so that their statements
# interleave on the same server session: nothing may depend on state kept
# between transactions (named prepared statements collided there before:
# 'prepared statement "s0" already exists'), and LISTEN is only a hint, so
# polling must find the work.
#   1. both stay up and share the work, each with two deliveries at once (so
#      its claims and releases go out pipelined on one of its two
#      connections, its acks and fails on the other);
#      every message reaches the webhook exactly once, on its first attempt;
#   2. SIGTERM to the one whose two requests in flight the webhook holds: it
#      releases the rest of its batch through PgBouncer at once, and the other
#      delivers those while the two are still held; once answered, the two are
#      acked and it exits 0;
#   3. /healthz answers 200 through PgBouncer while the notifier is busy
#      (its checks share the delivery loop's connection).
source "$(dirname "$0")/../lib/integration.sh"
source "$REPO/tests/lib/notifier.sh"
source "$REPO/tests/lib/pgbouncer.sh"

notifier_setup notifier-pgbouncer
cluster_init pgb
cleanup_hook "cluster_stop pgb immediate"
cluster_start pgb
export PGHOST=$(cluster_host pgb) PGPORT=$(cluster_port pgb)
new_db it_notifier_pgb

BOUNCER="$WORK/pgbouncer"
cleanup_hook "pgbouncer_stop '$BOUNCER'"
pgbouncer_start "$BOUNCER" pgb transaction 1 || abort "pgbouncer did not start"
expect "PgBouncer pools by transaction, one server connection per database" \
    "$(pgbouncer_admin "$BOUNCER" "SHOW CONFIG" | awk -F'|' '$1 == "pool_mode" || $1 == "default_pool_size" { print $1 "=" $2 }' | sort | tr '\n' ' ')" \
    "default_pool_size=1 pool_mode=transaction "

start_webhook web
WEBHOOK_URL="http://127.0.0.1:$WEBHOOK_PORT/hooks/followup"
NOTIFIER_DB="host=127.0.0.1 port=$(pgbouncer_port "$BOUNCER") dbname=$DB user=postgres"
start_notifier p1 --batch-size 10 --concurrency 2 --poll-interval 1s --metrics-addr 127.0.0.1:0
P1=$NOTIFIER_PID
start_notifier p2 --batch-size 10 --concurrency 2 --poll-interval 1s
P2=$NOTIFIER_PID
# (two client connections each: claims and releases; acks and fails)
expect "both notifiers are PgBouncer clients of the one database, two connections each" \
    "$(pgbouncer_admin "$BOUNCER" "SHOW CLIENTS" | awk -F'|' -v db="$DB" '$3 == db' | wc -l)" "4"

# --- 1 and 2 -------------------------------------------------------------------
first=$(next_message_id)
total=300
# two neighbours, so one claim of 10 (claims take the lowest ids) holds both
held1=$((first + 151)) held2=$((first + 152))
rules "$held1 hold $WORK/gate" "$held2 hold $WORK/gate" "* delay 0.01"
add_messages bounce "$total"
healthz() { curl -s -o /dev/null -w '%{http_code}' "$(metrics_base p1)/healthz"; }
codes=""
for _ in 1 2 3 4 5; do codes+="$(healthz) "; sleep 0.1; done
expect "/healthz through PgBouncer, with both notifiers at work: 200 each time" "$codes" "200 200 200 200 200 "
both_held() { requests_are "$held1" 1 && requests_are "$held2" 1; }
wait_until "the two held messages are in flight" 60 both_held
holder=$(q "SELECT string_agg(DISTINCT claimed_by, ',') FROM followup.outbox WHERE message_id IN ($held1, $held2)")
expect "one notifier has both in flight, its two delivery slots taken" "$(grep -c , <<<"$holder")" "0"
if [ "$holder" = p1 ]; then stop_pid=$P1 other=p2; else stop_pid=$P2 other=p1; fi
held_lease=$(q "SELECT lease_id FROM followup.outbox WHERE message_id = $held1")
kill -TERM "$stop_pid"
released_by_holder() {
    grep -qs ' released [0-9]* undelivered messages\? (notifier shut down before delivery)' "$WORK/$holder.log"
}
wait_until "$holder released the rest of its batch" 60 released_by_holder
rest=$(q "SELECT array_to_string(array_agg(m), ',') FROM followup.outbox_leases, unnest(message_ids) AS m
           WHERE lease_id = '$held_lease' AND m > $held2")
wait_until "$other delivered the released ones" 60 count_is "message_id IN ($rest) AND status = 'delivered'" \
    "$(tr ',' '\n' <<<"$rest" | wc -l)"
expect "SIGTERM to $holder: it released the rest of its batch through PgBouncer at once; $other delivered it, \
while $holder still waited for its two held requests" \
    "$(count "message_id IN ($rest) AND claimed_by = '$other'") $(kill -0 "$stop_pid" 2>/dev/null && echo running) \
$(count "message_id IN ($held1, $held2) AND status = 'claimed'")" "$(tr ',' '\n' <<<"$rest" | wc -l) running 2"
touch "$WORK/gate"
STATUS=0
{ wait "$stop_pid" || STATUS=$?; } 2>/dev/null
forget_notifier "$stop_pid"
expect "  once answered, the two were acked, and it exited 0" \
    "$(count "message_id IN ($held1, $held2) AND status = 'delivered' AND claimed_by = '$holder'") $STATUS" "2 0"
wait_until "all $total are delivered" 120 count_is "message_id >= $first AND status = 'delivered'" "$total"

load_requests
expect "every message reached the webhook exactly once" \
    "$(q "SELECT count(*) || ' ' || count(DISTINCT message_id) || ' ' || count(*) FILTER (WHERE check_ = 'ok')
            FROM webhook_requests")" "$total $total $total"
expect "  on its first attempt (the released ones too), without error" \
    "$(count "message_id >= $first AND status = 'delivered' AND attempts = 1 AND last_error IS NULL")" "$total"
expect "both notifiers delivered a share" \
    "$(q "SELECT count(DISTINCT claimed_by) FROM followup.outbox WHERE message_id >= $first")" "2"
expect "no statement failed on the shared server connection (no prepared-statement collision, no error)" \
    "$(cat "$WORK"/p1.log "$WORK"/p2.log | grep -c -i 'prepared statement\|database error\|cannot start' || true)" "0"
remaining=$([ "$other" = p1 ] && echo "$P1" || echo "$P2")
expect "the other one is still running" "$(kill -0 "$remaining" 2>/dev/null && echo up)" "up"
stop_notifier TERM "$remaining"
expect "  and exits 0 on SIGTERM" "$STATUS" "0"
finish
