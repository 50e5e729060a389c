#!/usr/bin/env bash
# Two notifiers through one PgBouncer (Debian's pgbouncer, 1.18) in transaction
# pooling with a pool of one server connection, so that their statements
# interleave on the same server session: nothing may depend on state kept
# between transactions (named prepared statements collided there before:
# 'prepared statement "s0" already exists'), and LISTEN is only a hint, so
# polling must find the work.
#   1. both stay up and share the work; every message reaches the webhook
#      exactly once, on its first attempt;
#   2. SIGTERM to the one delivering a slow message: it finishes that one and
#      releases the rest of its batch through PgBouncer; the other delivers them;
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
start_notifier p1 --batch-size 10 --poll-interval 1s --metrics-addr 127.0.0.1:0
P1=$NOTIFIER_PID
start_notifier p2 --batch-size 10 --poll-interval 1s
P2=$NOTIFIER_PID
expect "both notifiers are PgBouncer clients of the one database" \
    "$(pgbouncer_admin "$BOUNCER" "SHOW CLIENTS" | awk -F'|' -v db="$DB" '$3 == db' | wc -l)" "2"

# --- 1 and 2 -------------------------------------------------------------------
first=$(next_message_id)
total=300
slow=$((first + 154))
rules "$slow delay 1.5" "* delay 0.01"
add_messages bounce "$total"
healthz() { curl -s -o /dev/null -w '%{http_code}' "$(metrics_base p1)/healthz"; }
codes=""
for _ in 1 2 3 4 5; do codes+="$(healthz) "; sleep 0.1; done
expect "/healthz through PgBouncer, with both notifiers at work: 200 each time" "$codes" "200 200 200 200 200 "
wait_until "the slow message is being delivered" 60 requests_are "$slow" 1
holder=$(q "SELECT claimed_by FROM followup.outbox WHERE message_id = $slow")
if [ "$holder" = p1 ]; then stop_pid=$P1 other=p2; else stop_pid=$P2 other=p1; fi
stop_notifier TERM "$stop_pid"
expect "SIGTERM to $holder while it delivers the slow message: exit 0" "$STATUS" "0"
expect "  it finished that message" "$(q "SELECT status FROM followup.outbox WHERE message_id = $slow")" "delivered"
expect "  and released the rest of its batch through PgBouncer" \
    "$(grep -c ' released [0-9]* undelivered messages\? (notifier shut down before delivery)' "$WORK/$holder.log")" "1"
wait_until "all $total are delivered" 120 count_is "message_id >= $first AND status = 'delivered'" "$total"

load_requests
expect "every message reached the webhook exactly once" \
    "$(q "SELECT count(*) || ' ' || count(DISTINCT message_id) || ' ' || count(*) FILTER (WHERE check_ = 'ok')
            FROM webhook_requests")" "$total $total $total"
expect "  on its first attempt (the released ones too), without error" \
    "$(count "message_id >= $first AND status = 'delivered' AND attempts = 1 AND last_error IS NULL")" "$total"
expect "both notifiers delivered a share" \
    "$(q "SELECT count(DISTINCT claimed_by) FROM followup.outbox WHERE message_id >= $first")" "2"
expect "  the one left took over the released messages" \
    "$(q "SELECT count(*) > 0 FROM followup.outbox WHERE message_id > $slow AND claimed_by = '$other'")" "t"
expect "no statement failed on the shared server connection (no prepared-statement collision, no error)" \
    "$(cat "$WORK"/p1.log "$WORK"/p2.log | grep -c -i 'prepared statement\|database error\|cannot start' || true)" "0"
remaining=$([ "$other" = p1 ] && echo "$P1" || echo "$P2")
expect "the other one is still running" "$(kill -0 "$remaining" 2>/dev/null && echo up)" "up"
stop_notifier TERM "$remaining"
expect "  and exits 0 on SIGTERM" "$STATUS" "0"
finish
