#!/usr/bin/env bash
# Messages per second of ONE reference notifier, end to end (claim, POST, ack),
# against a webhook that answers 200 after 0 ms or 50 ms, over HTTP keep-alive
# and HTTPS, one message per POST and --digest, in one run. Not a test: it
# measures and prints, each figure as a ratio to its limit or target.
#
#   bench/notifier_throughput.sh
#   MESSAGES=40000 SLOW_MESSAGES=12800 bench/notifier_throughput.sh   longer runs
#
# The database is a private PostgreSQL 15 cluster (tests/lib/cluster.sh; the
# extension must be installed in the system PostgreSQL) with PostgreSQL's
# defaults: durable commits (fsync and synchronous_commit on: every ack
# waits for its WAL flush), shared_buffers 128MB, jit on. An assignments
# table is registered, so every claim makes its still-due check, as in
# production. The webhook is bench-receiver (bench/receiver, Rust: hyper, and
# rustls for HTTPS with a throwaway CA from tests/lib/tls.sh), on 127.0.0.1:
# it answers after the delay and counts, nothing more. The notifier and the
# receiver are release builds without LTO in target/bench-notifier (kept, so a
# second run builds nothing); the machine's cores are shared by PostgreSQL,
# the notifier and the receiver.
#
# Each run refills the outbox with its messages (pending, visible, still due)
# and starts one notifier (default flags but --concurrency, --digest and
# --ca-file); messages/s is over the span from the first delivered_at to the
# last (so the notifier's start is left out); POSTs/s the same for requests
# (a digest is one POST). Runs:
#   0 ms, --concurrency 16 (the default) and 1 (one delivery at a time, the
#        notifier before --concurrency): target 5,000 msg/s over HTTP, 3,000 over
#        HTTPS
#   50 ms, --concurrency 32: the limit is 32 / 0.05 s = 640 POSTs/s, the target
#        80% of it; --concurrency 1 as the baseline (limit 20 POSTs/s)
# Digests: DIGEST_SIZE messages per recipient, --batch-size 100 recipients.
#   MESSAGES=20000        messages per 0 ms run
#   SLOW_MESSAGES=8000    messages per 50 ms run (digests: x DIGEST_SIZE / 2)
#   SERIAL_SLOW_MESSAGES=200   messages of the 50 ms --concurrency 1 baseline
#   DIGEST_SIZE=10
#   SCHEMES="http https"  or only one of them
#   BATCH=100 DIGEST_BATCH=100   --batch-size of the runs (messages; recipients with --digest)
#   KEEP_CLUSTERS=1       keep the cluster's directory (logs) afterwards
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
MESSAGES=${MESSAGES:-20000}
SLOW_MESSAGES=${SLOW_MESSAGES:-8000}
SERIAL_SLOW_MESSAGES=${SERIAL_SLOW_MESSAGES:-200}
DIGEST_SIZE=${DIGEST_SIZE:-10}
SCHEMES=${SCHEMES:-"http https"}
BATCH=${BATCH:-100}
DIGEST_BATCH=${DIGEST_BATCH:-100}

source "$REPO/tests/lib/cluster.sh"
source "$REPO/tests/lib/tls.sh"
RECEIVER_PID="" NOTIFIER_PID=""
cleanup() {
    [ -z "$NOTIFIER_PID" ] || kill -KILL "$NOTIFIER_PID" 2>/dev/null || true
    [ -z "$RECEIVER_PID" ] || kill -KILL "$RECEIVER_PID" 2>/dev/null || true
    cluster_cleanup_all
}
trap cleanup EXIT
trap "exit 1" INT TERM  # (so that the EXIT trap runs)

# PostgreSQL's defaults (cluster.sh turns fsync off for the tests: back on).
cluster_up bench_notifier "fsync = on" "synchronous_commit = on"
sql() { psql -X -At -q -v ON_ERROR_STOP=1 -c "$1"; }
sql "CREATE EXTENSION pg_followup"
# an active assignment for every message, whose cycle start is the message's:
# every claim checks each message is still due (all of them are)
most=$((MESSAGES > SLOW_MESSAGES * DIGEST_SIZE / 2 ? MESSAGES : SLOW_MESSAGES * DIGEST_SIZE / 2))
sql "CREATE TABLE public.assignments (id bigint PRIMARY KEY, mentor text, status text, last_contact_date date);
     INSERT INTO public.assignments SELECT g, (g / $DIGEST_SIZE)::text, 'active', date '2026-11-01'
       FROM generate_series(1, $most) AS g;
     SELECT followup.track_assignments('public.assignments', 'id', 'mentor', 'last_contact_date',
                                       active_when => \$\$status = 'active'\$\$)" >/dev/null
sql "VACUUM ANALYZE public.assignments"

echo "building the notifier and bench-receiver (release, no LTO) into target/bench-notifier"
(cd "$REPO" && CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    cargo build --quiet --release -p followup-notifier -p bench-receiver --target-dir target/bench-notifier)
NOTIFIER="$REPO/target/bench-notifier/release/followup-notifier"
RECEIVER="$REPO/target/bench-notifier/release/bench-receiver"
CERTS="$CLUSTER_ROOT/certs"
mkdir -p "$CERTS"
tls_ca "$CERTS" ca && tls_cert "$CERTS" ca web "IP:127.0.0.1"

# refill N: the outbox holds N pending messages, one per assignment; the
# recipient is the assignment's mentor (DIGEST_SIZE messages each).
refill() {
    sql "TRUNCATE followup.outbox"
    sql "INSERT INTO followup.outbox (assignment_id, cycle_start, kind, sequence, recipient_role, recipient_id,
                                      days_since_contact, payload)
         SELECT a.id::text, a.last_contact_date, 'reminder', 1, 'mentor', a.mentor, 30,
                jsonb_build_object('organization', 'org-' || (a.id % 20), 'contact_id', 10000000 + a.id)
           FROM public.assignments AS a WHERE a.id <= $1"
    sql "VACUUM ANALYZE followup.outbox"
    sql "CHECKPOINT"
}

delivered() { sql "SELECT count(*) FROM followup.outbox WHERE status = 'delivered'"; }
# cpu PID...: seconds of CPU (user + system) the processes have used so far
cpu() {
    local pid ticks=0
    for pid in "$@"; do
        # fields 14 and 15 of /proc/PID/stat, counted after the ")" that ends
        # the command name (which may contain spaces)
        ticks=$((ticks + $(sed 's/.*) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }')))
    done
    awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

# run DELAY_MS SCHEME MODE CONCURRENCY MESSAGES: one measured delivery of
# MESSAGES; prints a table row and remembers messages/s and POSTs/s.
rows=()
run() {
    local delay=$1 scheme=$2 mode=$3 concurrency=$4 n=$5
    local dir="$CLUSTER_ROOT/run-$delay-$scheme-$mode-$concurrency" args=() flags=() posts expected span rate post_rate load claims_backend acks_backend cpus
    mkdir -p "$dir"
    [ "$scheme" = https ] && args+=(--tls-cert "$CERTS/web.crt" --tls-key "$CERTS/web.key") \
        && flags+=(--ca-file "$CERTS/ca.crt")
    if [ "$mode" = digest ]; then flags+=(--digest --batch-size "$DIGEST_BATCH"); else flags+=(--batch-size "$BATCH"); fi
    refill "$n"
    # the machine may be shared: the 1-minute load average before the run says
    # how busy it was with other work (the benchmark's own processes are idle here)
    load=$(cut -d' ' -f1 /proc/loadavg)
    "$RECEIVER" --port-file "$dir/port" --count-file "$dir/count" --delay-ms "$delay" "${args[@]}" &
    RECEIVER_PID=$!
    until [ -s "$dir/port" ]; do sleep 0.05; done
    "$NOTIFIER" --database "dbname=postgres" --webhook-url "$scheme://127.0.0.1:$(cat "$dir/port")/hook" \
        --consumer "bench-$concurrency" --concurrency "$concurrency" --poll-interval 1s "${flags[@]}" \
        2>"$dir/notifier.log" &
    NOTIFIER_PID=$!
    until [ "$(delivered)" -ge "$n" ]; do
        kill -0 "$NOTIFIER_PID" 2>/dev/null || { tail "$dir/notifier.log"; echo "the notifier stopped"; exit 1; }
        [ "$(sql "SELECT count(*) FROM followup.outbox WHERE status NOT IN ('pending', 'claimed', 'delivered')")" = 0 ] \
            || { echo "messages were failed or withdrawn: see $dir/notifier.log"; exit 1; }
        sleep 1  # (each look is a psql: CPU taken from the measured processes)
    done
    # where the machine's time went (read before they stop): the notifier, its
    # two database backends (told apart by their last statement: the acks'
    # connection only ever runs followup.ack and followup.fail), the receiver
    claims_backend=$(sql "SELECT pid FROM pg_stat_activity WHERE application_name = 'followup-notifier'
                            AND query NOT LIKE '%followup.ack(%' AND query NOT LIKE '%followup.fail(%'")
    acks_backend=$(sql "SELECT pid FROM pg_stat_activity WHERE application_name = 'followup-notifier'
                          AND (query LIKE '%followup.ack(%' OR query LIKE '%followup.fail(%')")
    cpus="notifier $(cpu "$NOTIFIER_PID") s, its claims backend $(cpu $claims_backend) s,"
    cpus+=" its acks backend $(cpu $acks_backend) s, receiver $(cpu "$RECEIVER_PID") s"
    kill -TERM "$NOTIFIER_PID" && wait "$NOTIFIER_PID" || true
    kill -TERM "$RECEIVER_PID" && wait "$RECEIVER_PID" || true
    NOTIFIER_PID="" RECEIVER_PID=""
    posts=$(awk '$1 == "requests" { print $2 }' "$dir/count")
    expected=$n
    [ "$mode" = digest ] && expected=$(sql "SELECT count(DISTINCT recipient_id) FROM followup.outbox")
    [ "$posts" = "$expected" ] || echo "  NOTE: $posts POSTs for $expected expected (a repeat or a lost request?)"
    span=$(sql "SELECT extract(epoch FROM max(delivered_at) - min(delivered_at)) FROM followup.outbox")
    rate=$(awk -v n="$n" -v s="$span" 'BEGIN { printf "%.0f", n / s }')
    post_rate=$(awk -v n="$posts" -v s="$span" 'BEGIN { printf "%.0f", n / s }')
    LAST_RATE=$rate LAST_POST_RATE=$post_rate
    echo "  $delay ms $scheme $mode --concurrency $concurrency: $n messages in $posts POSTs," \
        "$rate msg/s, $post_rate POSTs/s (most requests held at once by the receiver:" \
        "$(awk '$1 == "most_in_flight" { print $2 }' "$dir/count"), connections: $(awk '$1 == "connections" { print $2 }' "$dir/count");" \
        "load average before: $load)"
    echo "    CPU: $cpus; delivery span $span s"
}

# row DELAY SCHEME MODE CONCURRENCY LIMIT_TEXT RATIO
row() { rows+=("| $1 ms | $2 | $3 | $4 | $LAST_RATE | $LAST_POST_RATE | $5 | **$6** |"); }

echo "pg_followup notifier end-to-end benchmark, $(date -u +%F), $(nproc) cores,"
echo "PostgreSQL $(sql "SHOW server_version"), defaults (fsync $(sql "SHOW fsync"), synchronous_commit $(sql "SHOW synchronous_commit"), shared_buffers $(sql "SHOW shared_buffers"), jit $(sql "SHOW jit"))"
for scheme in $SCHEMES; do
    target=5000
    [ "$scheme" = https ] && target=3000
    run 0 "$scheme" plain 16 "$MESSAGES"
    fast=$LAST_RATE
    row 0 "$scheme" "one message a POST" 16 "target $target msg/s" "$(ratio "$LAST_RATE" "$target")"
    run 0 "$scheme" plain 1 "$MESSAGES"
    row 0 "$scheme" "one message a POST" 1 "target $target msg/s (16 at once: $(ratio "$fast" "$LAST_RATE")x this)" \
        "$(ratio "$LAST_RATE" "$target")"
    run 0 "$scheme" digest 16 "$MESSAGES"
    row 0 "$scheme" "digests of $DIGEST_SIZE" 16 "target $target msg/s" "$(ratio "$LAST_RATE" "$target")"
    run 50 "$scheme" plain 32 "$SLOW_MESSAGES"
    row 50 "$scheme" "one message a POST" 32 "limit 640 POSTs/s (target 80%)" "$(ratio "$LAST_POST_RATE" 640)"
    run 50 "$scheme" plain 1 "$SERIAL_SLOW_MESSAGES"
    row 50 "$scheme" "one message a POST" 1 "limit 20 POSTs/s" "$(ratio "$LAST_POST_RATE" 20)"
    run 50 "$scheme" digest 32 $((SLOW_MESSAGES * DIGEST_SIZE / 2))
    row 50 "$scheme" "digests of $DIGEST_SIZE" 32 "limit 640 POSTs/s (target 80%)" "$(ratio "$LAST_POST_RATE" 640)"
done
echo
echo "| answer after | webhook | POST | --concurrency | messages/s | POSTs/s | limit or target | ratio |"
echo "|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
