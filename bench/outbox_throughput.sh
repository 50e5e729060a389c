#!/usr/bin/env bash
# Throughput of the outbox protocol, and of the notifier end to end. Not a
# test: it measures and prints.
#
# Starts a private PostgreSQL 15 cluster (tests/lib/cluster.sh; the extension
# must already be installed in the system PostgreSQL), fills followup.outbox
# with pending messages, and runs pgbench, one claim of 100 and its ack per
# pgbench transaction, for 1 consumer and for 4 consumers, with two forms of
# the ack:
#
#   lease  ack the whole lease:
#              SELECT lease_id FROM followup.claim('c' || :client_id, 100) LIMIT 1 \gset
#              SELECT followup.ack(':lease_id');
#   ids    ack the messages by id, as a consumer that acks what it delivered
#          does (the notifier acks each message by id):
#              SELECT lease_id, array_agg(message_id) OVER () AS ids FROM followup.claim(...) LIMIT 1 \gset
#              SELECT followup.ack(':lease_id', ':ids');
#
# (pgbench has no :'var' quoting, but substitutes :var inside a literal.)
#
# Each of these SCHEMAS runs in a database of its own, in the same cluster and
# the same run, so the figures compare:
#   0.2.0        the 0.2.0 schema's claim (CREATE EXTENSION ... VERSION '0.2.0')
#   0.3.0        this version's claim, no assignments table registered
#   0.3.0+check  this version's claim with an assignments table registered: every
#                claim checks that each message is still due (all of them are)
#   0.3.0+digest claim_digest of one recipient (100 messages) per transaction, checked
# messages/s is what was delivered over the run.
# For each run it prints messages/s (pgbench's TPS x 100, and the rows
# actually delivered per second as a check), the rate every 5 s, the table's
# updates vs HOT updates, and the table and index sizes before and after. The
# outbox is emptied and refilled before each run, so the runs start alike.
#
#   bench/outbox_throughput.sh
#   DURATION=30 CLIENTS="1 2 4" ACKS=ids bench/outbox_throughput.sh
#   MESSAGES=1500000             pending messages per ack=lease run (default 1,200,000: with
#                                the lease records ack(lease_id) is as fast as ack by ids, and
#                                400,000 ran dry in about 10 s)
#   MESSAGES_IDS=1500000         ... per ack=ids run (default: MESSAGES)
#   FILLFACTOR=50                try another fillfactor on followup.outbox (an
#                                experiment: the extension's own is in sql/schema.sql)
#   KEEP_CLUSTERS=1              keep the cluster's directory (server.log) afterwards
#
# A run that drains the outbox stops early (pgbench aborts a client whose claim
# returns no row); its rate is then over the time until the outbox ran dry, and
# the script says so.
#
# End to end (after the pgbench runs): the reference notifier delivering
# E2E_MESSAGES pending messages (default 20,000) to a local webhook
# (tests/lib/webhook.py, answering 200 at once, nothing logged per request),
# one notifier, batches of 100, messages/s over the span from the first
# delivered_at to the last:
#   http keep-alive    this tree's notifier (reqwest, one pooled connection)
#   http old           the notifier before it was rebuilt, with its hand-written
#                      client (a new TCP connection per message, Connection: close),
#                      built from git history (OLD_NOTIFIER_REV, default: the parent
#                      of the commit that removed notifier/src/http.rs)
#   http per-message   this tree's notifier, the webhook closing the connection
#                      after each answer (webhook.py --close): the same client, no reuse
#   https keep-alive / https per-message   the same two over HTTPS (a throwaway CA,
#                      tests/lib/tls.sh); the old notifier has no HTTPS
# The notifiers are release builds without LTO into target/bench-notifier (kept,
# so a second run builds nothing); the first build takes a few minutes.
#   PGBENCH=0                    only the end-to-end part
#   E2E=0                        only the pgbench part
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
MESSAGES=${MESSAGES:-1200000}
MESSAGES_IDS=${MESSAGES_IDS:-$MESSAGES}
DURATION=${DURATION:-20}
CLIENTS=${CLIENTS:-"1 4"}
ACKS=${ACKS:-"lease ids"}
SCHEMAS=${SCHEMAS:-"0.2.0 0.3.0 0.3.0+check 0.3.0+digest"}
FILLFACTOR=${FILLFACTOR:-}
PGBENCH=${PGBENCH:-1}
E2E=${E2E:-1}
E2E_MESSAGES=${E2E_MESSAGES:-20000}
BATCH=100

source "$REPO/tests/lib/cluster.sh"
trap cluster_cleanup_all EXIT
trap "exit 1" INT TERM  # (so that the EXIT trap runs)
# Defaults, but shared buffers that hold the whole outbox (about 200 bytes a
# message, more as it churns): the figure is the protocol's, not the disk's.
cluster_up bench "shared_buffers = 1GB" "max_connections = 20"

sql() { psql -X -At -q -v ON_ERROR_STOP=1 -c "$1"; }
# use_schema VARIANT: its database (made on first use), as PGDATABASE
use_schema() {
    local db
    db="bench_$(echo "$1" | tr '.+' '__')"
    export PGDATABASE=$db
    if [ "$(psql -X -At -d postgres -c "SELECT count(*) FROM pg_database WHERE datname = '$db'")" = 0 ]; then
        createdb "$db"
        case $1 in
            0.2.0) sql "CREATE EXTENSION pg_followup VERSION '0.2.0'" ;;
            *) sql "CREATE EXTENSION pg_followup" ;;
        esac
        if [ -n "$FILLFACTOR" ]; then
            sql "ALTER TABLE followup.outbox SET (fillfactor = $FILLFACTOR)"
        fi
        case $1 in
            *+check | *+digest)
                # an active assignment for every message, whose cycle start is the message's
                sql "CREATE TABLE public.assignments (id bigint PRIMARY KEY, mentor text, status text,
                                                      last_contact_date date);
                     INSERT INTO public.assignments
                     SELECT g, (1000 + g % 12000)::text, 'active', date '2026-11-01'
                       FROM generate_series(1, greatest($MESSAGES, $MESSAGES_IDS)) AS g;
                     SELECT followup.track_assignments('public.assignments', 'id', 'mentor', 'last_contact_date',
                                                       active_when => \$\$status = 'active'\$\$)" >/dev/null
                # (psql -c runs its statements as one transaction: VACUUM on its own)
                sql "VACUUM ANALYZE public.assignments" ;;
        esac
    fi
}

cat >"$CLUSTER_ROOT/ack_lease.sql" <<EOF
SELECT lease_id FROM followup.claim('c' || :client_id, $BATCH) LIMIT 1 \gset
SELECT followup.ack(':lease_id');
EOF
cat >"$CLUSTER_ROOT/ack_ids.sql" <<EOF
SELECT lease_id, array_agg(message_id) OVER () AS ids FROM followup.claim('c' || :client_id, $BATCH) LIMIT 1 \gset
SELECT followup.ack(':lease_id', ':ids');
EOF
cat >"$CLUSTER_ROOT/ack_digest.sql" <<EOF
SELECT lease_id FROM followup.claim_digest('c' || :client_id, 1) LIMIT 1 \gset
SELECT followup.ack(':lease_id');
EOF

# refill N: an outbox of N pending messages, vacuumed, statistics reset.
refill() {
    sql "TRUNCATE followup.outbox"
    sql "INSERT INTO followup.outbox (assignment_id, cycle_start, kind, sequence, recipient_role, recipient_id,
                                      days_since_contact, payload)
         SELECT g::text, date '2026-11-01', 'reminder', 1 + g % 7, 'mentor', (1000 + g % 12000)::text, 30 + g % 60,
                jsonb_build_object('organization', 'org-' || lpad((1 + g % 20)::text, 2, '0'), 'contact_id', 10000000 + g)
           FROM generate_series(1, $1) AS g"
    sql "VACUUM (ANALYZE) followup.outbox"
    sql "CHECKPOINT"
    sql "SELECT pg_stat_reset_single_table_counters('followup.outbox'::regclass)"
}

sizes() {
    sql "SELECT format('table %s, indexes: %s',
                       pg_size_pretty(pg_table_size('followup.outbox')),
                       string_agg(format('%s %s', indexrelid::regclass, pg_size_pretty(pg_relation_size(indexrelid))),
                                  ', ' ORDER BY indexrelid::regclass::text))
           FROM pg_index WHERE indrelid = 'followup.outbox'::regclass"
}

per_second() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", n / s }'; }

echo "pg_followup outbox claim+ack benchmark: batches of $BATCH, ${DURATION}s per run"
echo "machine: $(nproc) cores; PostgreSQL $(sql "SHOW server_version")"
summary=()
[ "$PGBENCH" = 1 ] || SCHEMAS=""
for schema in $SCHEMAS; do
use_schema "$schema"
echo "schema $schema: followup.outbox with $(sql "SELECT coalesce(array_to_string(reloptions, ', '), 'default options')
                                                    FROM pg_class WHERE oid = 'followup.outbox'::regclass")"
schema_acks=$ACKS
[ "${schema#*+}" = digest ] && schema_acks=digest
for ack in $schema_acks; do
    case $ack in
        lease) messages=$MESSAGES form="ack(lease_id)" ;;
        ids) messages=$MESSAGES_IDS form="ack(lease_id, message_ids)" ;;
        digest) messages=$MESSAGES form="claim_digest of 1 recipient, ack(lease_id)" ;;
        *) echo "ACKS: 'lease' and/or 'ids', not '$ack'"; exit 2 ;;
    esac
    for clients in $CLIENTS; do
        label="schema $schema, $clients consumer(s), $form"
        echo
        echo "=== $label, $messages pending messages ==="
        refill "$messages"
        echo "before: $(sizes)"
        status=0
        out=$(pgbench -n -f "$CLUSTER_ROOT/ack_$ack.sql" -c "$clients" -j "$clients" -T "$DURATION" -P 5 2>&1) \
            || status=$?
        # the rate every 5 s: a falling rate shows the outbox getting slower as it churns
        echo "$out" | grep '^progress:' | sed 's/^/  /' || true
        dry=""
        if [ "$status" -ne 0 ]; then
            if grep -q 'expected one row, got 0' <<<"$out"; then
                dry=1
            else
                echo "$out"
                echo "pgbench failed"
                exit 1
            fi
        fi
        tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out" | head -n 1)
        processed=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
        sleep 1 # the backends' statistics reach pg_stat_* when they exit
        delivered=$(sql "SELECT count(*) FROM followup.outbox WHERE status = 'delivered'")
        left=$(sql "SELECT count(*) FROM followup.outbox WHERE status = 'pending'")
        claimed=$(sql "SELECT count(*) FROM followup.outbox WHERE status = 'claimed'")
        stats=$(sql "SELECT format('%s updates, %s HOT (%s%%), %s dead tuples, autovacuum ran %s times',
                                   n_tup_upd, n_tup_hot_upd, round(100.0 * n_tup_hot_upd / nullif(n_tup_upd, 0), 1),
                                   n_dead_tup, autovacuum_count)
                       FROM pg_stat_user_tables WHERE relid = 'followup.outbox'::regclass")
        rate=$(per_second "$(awk -v t="$tps" -v b="$BATCH" 'BEGIN { print t * b }')" 1)
        echo "after:  $(sizes)"
        echo "outbox: $stats"
        echo "pgbench: $processed transactions, tps = $tps"
        if [ -n "$dry" ]; then
            echo "messages/s: $rate (TPS x $BATCH, until the outbox ran dry: all $delivered delivered," \
                "$left pending, $claimed claimed; raise the number of messages for a full ${DURATION}s run)"
            summary+=("$label: $rate messages/s (outbox ran dry before ${DURATION}s)")
        else
            rate=$(per_second "$delivered" "$DURATION")
            echo "messages/s: $rate delivered in ${DURATION}s (pgbench: TPS $tps);" \
                "$left still pending, $claimed left claimed"
            summary+=("$label: $rate messages/s")
        fi
    done
done
done
if [ ${#summary[@]} -gt 0 ]; then
    echo
    echo "=== summary: messages/s, a claim of $BATCH and its ack per transaction ==="
    printf '%s\n' "${summary[@]}"
fi
[ "$E2E" = 1 ] || exit 0
use_schema 0.3.0

# --- end to end: notifier -> local webhook ------------------------------------
echo
echo "=== end to end: one notifier delivering $E2E_MESSAGES messages to a local webhook ==="
BUILD="$REPO/target/bench-notifier"
export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
echo "building the notifier (release, no LTO) into $BUILD"
(cd "$REPO" && cargo build --quiet --release -p followup-notifier --target-dir "$BUILD/new")
NEW_NOTIFIER="$BUILD/new/release/followup-notifier"
OLD_NOTIFIER_REV=${OLD_NOTIFIER_REV:-$(git -C "$REPO" rev-list -n 1 HEAD -- notifier/src/http.rs)^}
old_rev=$(git -C "$REPO" rev-parse --short "$OLD_NOTIFIER_REV")
echo "building the old notifier (git $old_rev, hand-written HTTP client) into $BUILD"
rm -rf "$BUILD/old-src" && mkdir -p "$BUILD/old-src"
git -C "$REPO" archive "$OLD_NOTIFIER_REV" notifier Cargo.lock | tar -x -C "$BUILD/old-src"
# a package of its own, out of this workspace
mv "$BUILD/old-src/Cargo.lock" "$BUILD/old-src/notifier/"
printf '\n[workspace]\n' >>"$BUILD/old-src/notifier/Cargo.toml"
(cd "$BUILD/old-src/notifier" && cargo build --quiet --release --target-dir "$BUILD/old")
OLD_NOTIFIER="$BUILD/old/release/followup-notifier"

source "$REPO/tests/lib/tls.sh"
CERTS="$CLUSTER_ROOT/certs"
mkdir -p "$CERTS"
tls_ca "$CERTS" ca && tls_cert "$CERTS" ca web "IP:127.0.0.1"
WEBHOOK_PID=""
trap '[ -n "$WEBHOOK_PID" ] && kill "$WEBHOOK_PID" 2>/dev/null; cluster_cleanup_all' EXIT

# e2e LABEL BINARY SCHEME CONNECTIONS [FLAGS...]: one measured delivery of the
# whole outbox; CONNECTIONS keep-alive, or per-message (the webhook closes each)
e2e_summary=()
e2e() {
    local label=$1 binary=$2 scheme=$3 connections=$4; shift 4
    local dir="$CLUSTER_ROOT/e2e-${label// /-}" args=() pid rate served
    mkdir -p "$dir"
    : >"$dir/rules"
    [ "$scheme" = https ] && args+=(--tls-cert "$CERTS/web.crt" --tls-key "$CERTS/web.key")
    [ "$connections" = per-message ] && args+=(--close)
    python3 "$REPO/tests/lib/webhook.py" --port-file "$dir/port" --rules "$dir/rules" "${args[@]}" 2>"$dir/webhook.err" &
    WEBHOOK_PID=$!
    until [ -s "$dir/port" ]; do sleep 0.1; done
    refill "$E2E_MESSAGES" >/dev/null
    "$binary" --database "dbname=postgres" --webhook-url "$scheme://127.0.0.1:$(cat "$dir/port")/hook" \
        --consumer "${label// /-}" --batch-size "$BATCH" --poll-interval 1s "$@" 2>"$dir/notifier.log" &
    pid=$!
    until [ "$(sql "SELECT count(*) FROM followup.outbox WHERE status = 'delivered'")" -ge "$E2E_MESSAGES" ]; do
        kill -0 "$pid" 2>/dev/null || { tail "$dir/notifier.log"; echo "the notifier stopped"; exit 1; }
        sleep 0.5
    done
    kill -TERM "$pid" && wait "$pid" || true
    kill -TERM "$WEBHOOK_PID" && wait "$WEBHOOK_PID" || true
    WEBHOOK_PID=""
    served=$(cat "$dir/count")
    rate=$(sql "SELECT round(count(*) / extract(epoch FROM max(delivered_at) - min(delivered_at)))
                  FROM followup.outbox WHERE status = 'delivered'")
    echo "$label: $rate messages/s ($E2E_MESSAGES delivered, the webhook answered $served requests)"
    e2e_summary+=("$label: $rate messages/s")
}
e2e "http keep-alive" "$NEW_NOTIFIER" http keep-alive
e2e "http old" "$OLD_NOTIFIER" http keep-alive   # (it sends Connection: close itself)
e2e "http per-message" "$NEW_NOTIFIER" http per-message
e2e "https keep-alive" "$NEW_NOTIFIER" https keep-alive --ca-file "$CERTS/ca.crt"
e2e "https per-message" "$NEW_NOTIFIER" https per-message --ca-file "$CERTS/ca.crt"
echo
echo "=== summary: end to end, one notifier, batches of $BATCH, webhook on 127.0.0.1 ==="
printf '%s\n' "${e2e_summary[@]}"
echo "(keep-alive: this tree's notifier on one pooled connection; old: git $old_rev, its hand-written"
echo " client, a new connection per message; per-message: this tree's notifier, the webhook closing every"
echo " connection. Every message is acked after its 200, one database round trip each. The webhook is"
echo " Python's ThreadingHTTPServer, single-threaded in effect (a thread per connection, one GIL), and"
echo " $(nproc) cores are shared by it, PostgreSQL and the notifier.)"
