#!/usr/bin/env bash
# The notifier over TLS, both ways, with a throwaway CA made here by openssl:
# a private cluster with ssl = on (a certificate for DNS:localhost from that CA,
# and a pg_hba.conf that admits TCP clients over TLS only) and an HTTPS webhook
# (tests/lib/webhook.py --tls-cert) with a certificate from the same CA.
#   1. sslmode=verify-full + --ca-file: every message delivered exactly once,
#      the database connection is TLS, and with --concurrency 4 at most four
#      kept-alive HTTPS connections carried every request (with
#      --concurrency 1, one);
#   2. the database is refused with a wrong sslrootcert (verify-full), with a
#      host name the certificate does not name (verify-full), and with
#      sslmode=disable (the server wants TLS); verify-ca accepts the host name
#      that verify-full refused; require encrypts without a root certificate,
#      and checks the chain (refuses) when sslrootcert names the wrong CA;
#   3. a webhook whose certificate is not trusted (another CA; or ours without
#      --ca-file) receives nothing: each message is failed with the TLS error in
#      last_error, and stays pending for a retry.
source "$(dirname "$0")/../lib/integration.sh"
source "$REPO/tests/lib/notifier.sh"
source "$REPO/tests/lib/tls.sh"

notifier_setup notifier-tls
CERTS="$WORK/certs"
mkdir -p "$CERTS"
tls_ca "$CERTS" ca
tls_ca "$CERTS" other-ca
tls_cert "$CERTS" ca db "DNS:localhost"
tls_cert "$CERTS" ca web "DNS:localhost,IP:127.0.0.1"
tls_cert "$CERTS" other-ca rogue "DNS:localhost,IP:127.0.0.1"
chmod 644 "$CERTS"/*.crt
# an empty home: no ~/.postgresql/root.crt to be found by accident
export HOME="$WORK/home"
mkdir -p "$HOME"

# --- the database: ssl = on, TLS required over TCP ----------------------------
cluster_init tls "ssl = on" "ssl_cert_file = 'server.crt'" "ssl_key_file = 'server.key'"
cleanup_hook "cluster_stop tls immediate"
data="$(cluster_dir tls)/data"
install -o postgres -m 644 "$CERTS/db.crt" "$data/server.crt"
install -o postgres -m 600 "$CERTS/db.key" "$data/server.key"
printf 'local all all trust\nhostssl all all 127.0.0.1/32 trust\n' >"$data/pg_hba.conf"
cluster_start tls
export PGHOST=$(cluster_host tls) PGPORT=$(cluster_port tls)
new_db it_notifier_tls
port=$PGPORT
# the script's own psql goes over the socket; the notifier over TCP
tcp() { echo "host=$1 port=$port dbname=$DB user=postgres $2"; }
# ssl_of CONSUMER: its backend's TLS state as pg_stat_ssl sees it
ssl_of() {
    q "SELECT s.ssl || ' ' || s.version FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
        WHERE a.application_name = 'followup-notifier' AND a.query LIKE '%followup%'
        ORDER BY a.backend_start DESC LIMIT 1"
}
no_lease_for() { q "SELECT count(*) FROM followup.outbox_leases WHERE consumer = '$1'"; }
# start_line CONSUMER: what its last log line says, without the timestamp
last_line() { tail -n 1 "$WORK/$1.log" | sed -E 's/^[^ ]+ +//'; }

# --- 1. verify-full and HTTPS ---------------------------------------------------
start_webhook web --tls-cert "$CERTS/web.crt" --tls-key "$CERTS/web.key"
WEBHOOK_URL="https://127.0.0.1:$WEBHOOK_PORT/hooks/followup"
first=$(next_message_id)
rules "* delay 0.01"
add_messages tls 50
NOTIFIER_DB=$(tcp localhost "sslmode=verify-full sslrootcert=$CERTS/ca.crt")
start_notifier t1 --ca-file "$CERTS/ca.crt" --poll-interval 1s --concurrency 4
wait_until "the 50 are delivered" 60 count_is "message_id >= $first AND status = 'delivered'" 50
expect "the notifier's database connection is TLS (verify-full against the throwaway CA)" \
    "$(ssl_of | cut -d' ' -f1) $(ssl_of | grep -c ' TLSv1\.[23]$')" "true 1"
load_requests
expect "over HTTPS, each of the 50 reached the webhook exactly once, well-formed" \
    "$(q "SELECT count(*) || ' ' || count(DISTINCT message_id) || ' ' || count(*) FILTER (WHERE check_ = 'ok')
            FROM webhook_requests WHERE message_id >= $first")" "50 50 50"
expect "every message was delivered on its first attempt, without error" \
    "$(count "message_id >= $first AND attempts = 1 AND last_error IS NULL AND claimed_by = 't1'")" "50"
expect "keep-alive: at most 4 TLS connections (one per request in flight) carried all 50 requests" \
    "$(q "SELECT count(DISTINCT conn) BETWEEN 1 AND 4 FROM webhook_requests WHERE message_id >= $first")" "t"
stop_notifier TERM
expect "SIGTERM: exit 0" "$STATUS" "0"
first=$(next_message_id)
add_messages tls-serial 20
start_notifier t1s --ca-file "$CERTS/ca.crt" --poll-interval 1s --concurrency 1
wait_until "the 20 are delivered" 60 count_is "message_id >= $first AND status = 'delivered'" 20
load_requests
expect "with --concurrency 1, one TLS connection carried all 20 requests, each message's one request" \
    "$(q "SELECT count(DISTINCT conn) || ' ' || count(*) || ' ' || count(DISTINCT message_id)
            FROM webhook_requests WHERE message_id >= $first")" "1 20 20"
stop_notifier TERM

# --- 2. what the database connection refuses, and what it accepts ----------------
first=$(next_message_id)
add_messages refused 5
NOTIFIER_DB=$(tcp localhost "sslmode=verify-full sslrootcert=$CERTS/other-ca.crt")
run_notifier t2 --ca-file "$CERTS/ca.crt"
expect "verify-full with a wrong sslrootcert: the notifier does not start (exit 1)" "$STATUS" "1"
expect "  and says the server's certificate is not trusted" \
    "$(last_line t2 | grep -c 'ERROR cannot start: .*invalid peer certificate: UnknownIssuer')" "1"
NOTIFIER_DB=$(tcp 127.0.0.1 "sslmode=verify-full sslrootcert=$CERTS/ca.crt")
run_notifier t3 --ca-file "$CERTS/ca.crt"
expect "verify-full to 127.0.0.1, a name the certificate (DNS:localhost) does not carry: refused" \
    "$STATUS $(last_line t3 | grep -c 'ERROR cannot start: .*certificate not valid for name')" "1 1"
NOTIFIER_DB=$(tcp 127.0.0.1 "sslmode=require sslrootcert=$CERTS/other-ca.crt")
run_notifier t4 --ca-file "$CERTS/ca.crt"
expect "require with an sslrootcert checks the chain, as libpq does: the wrong CA is refused" \
    "$STATUS $(last_line t4 | grep -c 'ERROR cannot start: .*invalid peer certificate: UnknownIssuer')" "1 1"
NOTIFIER_DB=$(tcp 127.0.0.1 "sslmode=disable")
run_notifier t5 --ca-file "$CERTS/ca.crt"
expect "sslmode=disable: the server, which wants TLS, refuses the connection" \
    "$STATUS $(last_line t5 | grep -c 'ERROR cannot start: FATAL: no pg_hba.conf entry .* no encryption')" "1 1"
expect "none of the refused notifiers claimed anything" \
    "$(no_lease_for t2)$(no_lease_for t3)$(no_lease_for t4)$(no_lease_for t5) $(count "message_id >= $first AND status <> 'pending'")" \
    "0000 0"
expect "  nor sent anything" "$(awk -F'\t' -v id="$first" '$2 + 0 >= id' "$REQUESTS" | wc -l)" "0"

NOTIFIER_DB=$(tcp 127.0.0.1 "sslmode=verify-ca sslrootcert=$CERTS/ca.crt")
start_notifier t6 --ca-file "$CERTS/ca.crt" --poll-interval 1s
wait_until "t6 delivered the 5" 30 count_is "message_id >= $first AND status = 'delivered'" 5
expect "verify-ca checks the chain but not the name: 127.0.0.1 is accepted, over TLS" \
    "$(ssl_of | cut -d' ' -f1) $(count "message_id >= $first AND claimed_by = 't6'")" "true 5"
stop_notifier TERM

first=$(next_message_id)
add_messages require 5
NOTIFIER_DB=$(tcp 127.0.0.1 "sslmode=require")
start_notifier t7 --ca-file "$CERTS/ca.crt" --poll-interval 1s
wait_until "t7 delivered the 5" 30 count_is "message_id >= $first AND status = 'delivered'" 5
expect "require without a root certificate file: encrypted, certificate unchecked, as libpq" \
    "$(ssl_of | cut -d' ' -f1) $(count "message_id >= $first AND claimed_by = 't7'")" "true 5"
stop_notifier TERM
load_requests
expect "everything so far reached the webhook exactly once" \
    "$(q "SELECT count(*) || ' ' || count(DISTINCT message_id) FROM webhook_requests")" "80 80"

# --- 3. a webhook whose certificate is not trusted ------------------------------
trusted_requests=$REQUESTS
start_webhook rogue --tls-cert "$CERTS/rogue.crt" --tls-key "$CERTS/rogue.key"
rogue_requests=$REQUESTS
WEBHOOK_URL="https://127.0.0.1:$WEBHOOK_PORT/hooks/followup"
first=$(next_message_id)
add_messages untrusted 3
NOTIFIER_DB=$(tcp localhost "sslmode=verify-full sslrootcert=$CERTS/ca.crt")
start_notifier t8 --ca-file "$CERTS/ca.crt" --poll-interval 1s
wait_until "the 3 have been tried" 30 count_is "message_id >= $first AND last_error IS NOT NULL" 3
stop_notifier TERM
expect "a certificate from another CA: nothing delivered, each message failed once and pending for a retry" \
    "$(q "SELECT string_agg(DISTINCT status || '|' || attempts, ',') || ' ' || count(*) FROM followup.outbox
           WHERE message_id >= $first")" "pending|1 3"
expect "  last_error names the TLS error" \
    "$(q "SELECT string_agg(DISTINCT last_error, ',') FROM followup.outbox WHERE message_id >= $first")" \
    "TLS error: invalid peer certificate: UnknownIssuer"
expect "  and the webhook received no request" "$(wc -l <"$rogue_requests")" "0"

# our own CA's webhook, but without --ca-file: the system's roots do not have it
WEBHOOK_URL="https://127.0.0.1:$(cat "$WORK/web/port")/hooks/followup"
q "UPDATE followup.outbox SET visible_at = now() WHERE message_id >= $first"  # the backoff is over
start_notifier t9 --poll-interval 1s
wait_until "the 3 have been tried again" 30 count_is "message_id >= $first AND attempts = 2 AND status = 'pending'" 3
stop_notifier TERM
expect "without --ca-file only the system's roots are trusted: refused too, with the same error" \
    "$(q "SELECT string_agg(DISTINCT last_error, ',') FROM followup.outbox WHERE message_id >= $first")" \
    "TLS error: invalid peer certificate: UnknownIssuer"
expect "  and the trusted webhook received nothing more" "$(wc -l <"$trusted_requests")" "80"
finish
