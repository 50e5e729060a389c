#!/usr/bin/env bash
# The notifier across a failover: a primary and a streaming standby (built
# here), a two-host connection string with target_session_attrs=read-write.
# The standby is cut off from the primary partway (as an asynchronous standby
# lags), so that the last acks the notifier made on the primary never reach it;
# then the primary dies (immediate stop) and the standby is promoted.
#   1. the notifier reconnects to the new primary by itself and delivers the
#      rest; /healthz is 503 while no primary is reachable, 200 after;
#   2. the messages whose acks were lost with the old primary come back (their
#      claims lost too, or their leases expired): the notifier remembers it
#      POSTed them and acks them without POSTing again;
#   3. so every message reached the webhook exactly once.
# The notifier delivers four at a time; the webhook holds four neighbouring
# messages at two points (all four delivery slots taken, nothing else moves)
# until the test opens their gate: the cut and the primary's death come at
# those points, whatever the machine's speed.
source "$(dirname "$0")/../lib/integration.sh"
source "$REPO/tests/lib/notifier.sh"

notifier_setup notifier-failover
cluster_init nf_primary
cleanup_hook "cluster_stop nf_primary immediate"
cleanup_hook "cluster_stop nf_standby immediate"
cluster_start nf_primary
export PGHOST=$(cluster_host nf_primary) PGPORT=$(cluster_port nf_primary)
primary_port=$PGPORT
new_db it_notifier_failover

# a standby from a base backup of the primary, on its own port and socket
standby_dir=$(cluster_dir nf_standby)
rm -rf "$standby_dir"; mkdir -p "$standby_dir" && chown postgres: "$standby_dir"
as_postgres "$PG_BIN/pg_basebackup" -h "$PGHOST" -p "$PGPORT" -U postgres -D "$standby_dir/data" -R -X stream -c fast
standby_port=$(free_port)
echo "$standby_port" >"$standby_dir/port"
printf "port = %s\nunix_socket_directories = '%s'\n" "$standby_port" "$standby_dir" >>"$standby_dir/data/postgresql.conf"
cluster_start nf_standby
sq() { psql -X -At -q -v ON_ERROR_STOP=1 -h "$standby_dir" -p "$standby_port" -U postgres -d "$DB" -c "$1"; }
expect "the standby is in recovery" "$(sq "SELECT pg_is_in_recovery()")" "t"

total=400
first=$(next_message_id)
add_messages failover "$total"
standby_has_all() { [ "$(sq "SELECT count(*) FROM followup.outbox" 2>/dev/null)" = "$total" ]; }
wait_until "the standby has the messages" 30 standby_has_all

start_webhook web
WEBHOOK_URL="http://127.0.0.1:$WEBHOOK_PORT/hooks/followup"
gate_rules() {  # gate_rules FROM GATE: messages FROM to FROM+3 wait for the file GATE
    local i
    for i in 0 1 2 3; do echo "$(($1 + i)) hold $2"; done
}
held() { local i; for i in 0 1 2 3; do requests_are "$(($1 + i))" 1 || return 1; done; }
rules "$(gate_rules $((first + 100)) "$WORK/gate1")" "$(gate_rules $((first + 200)) "$WORK/gate2")" "* delay 0.02"
healthz() { curl -s -o /dev/null -w '%{http_code}' "$HEALTHZ"; }
healthz_is() { [ "$(healthz)" = "$1" ]; }
NOTIFIER_DB="host=127.0.0.1,127.0.0.1 port=$primary_port,$standby_port dbname=$DB user=postgres target_session_attrs=read-write"
start_notifier f1 --batch-size 20 --lease '20 seconds' --request-timeout 8s --poll-interval 1s --concurrency 4 \
    --metrics-addr 127.0.0.1:0
HEALTHZ="$(metrics_base f1)/healthz"
expect "connected to the primary, the first host: /healthz 200" \
    "$(grep -c "connected to 127.0.0.1:$primary_port " "$WORK/f1.log") $(healthz)" "1 200"

wait_until "the first 100 are delivered, the next four held" 60 held $((first + 100))
expect "  (the four slots held: the 100 before are all acked, nothing after has started)" \
    "$(count "status = 'delivered'") $(wc -l <"$REQUESTS")" "100 104"
# cut the standby off: from here on, what the notifier does on the primary is lost
sq "ALTER SYSTEM SET primary_conninfo = ''" && sq "SELECT pg_reload_conf()" >/dev/null
receiver_gone() { [ "$(sq "SELECT count(*) FROM pg_stat_wal_receiver")" = 0 ]; }
wait_until "the standby no longer receives WAL" 30 receiver_gone
touch "$WORK/gate1"
wait_until "100 more are delivered on the primary alone, the next four held" 60 held $((first + 200))
expect "  (200 delivered, 204 posted)" "$(count "status = 'delivered'") $(wc -l <"$REQUESTS")" "200 204"

cluster_stop nf_primary immediate
touch "$WORK/gate2"  # the four held get their 200s; their acks cannot be made
wait_until "the notifier noticed" 30 grep -qs "database error" "$WORK/f1.log"
posted=$(wc -l <"$REQUESTS")
wait_until "/healthz says 503" 10 healthz_is 503
expect "no primary reachable (one host down, the other a standby): /healthz 503" "$(healthz)" "503"
replayed() { [ "$(sq "SELECT pg_last_wal_replay_lsn() >= pg_last_wal_receive_lsn()")" = t ]; }
wait_until "the standby has replayed what it received" 30 replayed
on_standby=$(sq "SELECT count(*) FROM followup.outbox WHERE status = 'delivered'")
expect "the standby lags: it knows fewer deliveries than the webhook received ($posted)" \
    "$((on_standby < posted))" "1"
as_postgres "$PG_BIN/pg_ctl" -D "$standby_dir/data" -w promote >/dev/null

export PGHOST=$standby_dir PGPORT=$standby_port
wait_until "all $total are delivered on the new primary" 120 count_is "status = 'delivered'" "$total"
expect "the notifier reconnected to the new primary, the second host" \
    "$(grep -c "reconnected to 127.0.0.1:$standby_port " "$WORK/f1.log")" "1"
expect "  and /healthz is 200 again" "$(healthz)" "200"
load_requests
expect "no message was POSTed twice: every one reached the webhook exactly once" \
    "$(q "SELECT count(*) || ' ' || count(DISTINCT message_id) FROM webhook_requests")" "$total $total"
expect "the $((posted - on_standby)) POSTed on the old primary whose acks were lost came back and were acked unposted" \
    "$(grep -c 'acked without posting it again' "$WORK/f1.log")" "$((posted - on_standby))"
stop_notifier TERM
expect "SIGTERM: exit 0" "$STATUS" "0"
finish
