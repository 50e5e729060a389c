# Helpers for the notifier's integration scripts (tests/integration/notifier*.sh):
# the real followup-notifier binary, a real webhook (tests/lib/webhook.py) and
# the outbox they share. Source tests/lib/integration.sh first, then this,
# then call notifier_setup NAME.
#
#   notifier_setup NAME            work directory $CLUSTER_ROOT/NAME ($WORK), EXIT trap, builds
#                                  the notifier ($NOTIFIER)
#   start_webhook NAME [ARGS...]   a webhook.py ($WORK/NAME/...); sets WEBHOOK_PORT, REQUESTS, RULES
#   start_notifier CONSUMER [FLAGS...]   the notifier against "$NOTIFIER_DB" (default dbname=$DB)
#                                  and "$WEBHOOK_URL", logging to $WORK/CONSUMER.log; waits until
#                                  it listens; sets NOTIFIER_PID
#   stop_notifier SIGNAL [PID]     signals it, waits, sets STATUS
#   run_notifier CONSUMER [FLAGS...]     runs it in the foreground (a start that must fail); STATUS
#   wait_until WHAT SECONDS CMD... retries CMD every 0.1 s (the seconds are only a safety net
#                                  against a hang: no check depends on how fast anything is)
#   rules LINE... / requests_for ID / requests_are ID N / load_requests (table webhook_requests)
#   notifier_role                  the role followup_notifier with exactly the README's grants
#                                  for the notifier (run as it: NOTIFIER_DB="dbname=$DB user=followup_notifier")
#   count CONDITION / count_is CONDITION N / count_at_least CONDITION N / add_messages PREFIX N / next_message_id
#   idle_claimer                   some notifier waits for work after a claim
#   metric URL NAME                a sample's value from a /metrics page
#   metrics_base CONSUMER          http://HOST:PORT of its metrics server (start it with
#                                  --metrics-addr 127.0.0.1:0: the port it got is in its log)
#   cleanup_hook CMD               run CMD at exit (servers the script started)

NOTIFIER_PIDS=()   # every notifier started, so that an abort leaves none behind
WEBHOOK_PIDS=()
CLEANUP_HOOKS=()

notifier_cleanup() {
    local pid hook
    for pid in "${NOTIFIER_PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null; done
    for pid in "${WEBHOOK_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    for hook in "${CLEANUP_HOOKS[@]}"; do eval "$hook" >/dev/null 2>&1 || true; done
    return 0
}
cleanup_hook() { CLEANUP_HOOKS+=("$1"); }

notifier_setup() {
    WORK="$CLUSTER_ROOT/$1"
    rm -rf "$WORK" && mkdir -p "$WORK" && chmod 755 "$WORK"
    trap notifier_cleanup EXIT
    trap "exit 1" INT TERM  # (so that the EXIT trap runs)
    workspace_binary NOTIFIER followup-notifier
}

# start_webhook NAME [webhook.py args...]
start_webhook() {
    local name=$1; shift
    local dir="$WORK/$name"
    mkdir -p "$dir"
    REQUESTS="$dir/requests.tsv" RULES="$dir/rules"
    : >"$RULES"
    python3 "$REPO/tests/lib/webhook.py" --port-file "$dir/port" --log "$REQUESTS" --rules "$RULES" "$@" \
        2>"$dir/err" &
    WEBHOOK_PIDS+=($!)
    wait_until "the webhook $name listens" 10 test -s "$dir/port"
    WEBHOOK_PORT=$(cat "$dir/port")
}

# rules LINE...: replaces the webhook's rules.
rules() { printf '%s\n' "$@" >"$RULES"; }
# requests_for ID: how many requests the webhook has seen for message ID.
requests_for() { awk -F'\t' -v id="$1" '$2 == id' "$REQUESTS" | wc -l; }
requests_are() { [ "$(requests_for "$1")" -eq "$2" ]; }
# load_requests: the webhook's log as table webhook_requests, for SQL checks.
# (columns: see tests/lib/webhook.py; received and answered are timestamptz,
# answered NULL for a request never answered)
load_requests() {
    q "SET client_min_messages = warning; DROP TABLE IF EXISTS webhook_requests, webhook_answered;
       CREATE TABLE webhook_requests (n int, message_id bigint, idempotency_key text, answer text, nth int, check_ text,
                                      conn int, lease_id text, received_epoch float8, in_flight int);
       CREATE TABLE webhook_answered (n int, answered_epoch float8)"
    q "\\copy webhook_requests FROM '$REQUESTS'"
    q "\\copy webhook_answered FROM '$REQUESTS.answered'"
    q "ALTER TABLE webhook_requests ADD received timestamptz, ADD answered timestamptz;
       UPDATE webhook_requests r SET received = to_timestamp(r.received_epoch),
                                     answered = (SELECT to_timestamp(a.answered_epoch) FROM webhook_answered a
                                                  WHERE a.n = r.n)"
}

start_notifier() {
    local consumer=$1; shift
    "$NOTIFIER" --database "${NOTIFIER_DB:-dbname=$DB}" --webhook-url "$WEBHOOK_URL" --consumer "$consumer" "$@" \
        2>>"$WORK/$consumer.log" &
    NOTIFIER_PID=$!
    NOTIFIER_PIDS+=("$NOTIFIER_PID")
    wait_until "notifier $consumer listens" 15 grep -qs "listening on followup_outbox" "$WORK/$consumer.log"
}

# stop_notifier SIGNAL [PID]: signals it (the last one started by default),
# waits, sets STATUS to its exit status.
stop_notifier() {
    local pid=${2:-$NOTIFIER_PID}
    STATUS=0
    kill "-$1" "$pid"
    # (the braces keep bash's own "Killed" job report out of the output)
    { wait "$pid" || STATUS=$?; } 2>/dev/null
    [ "$pid" != "$NOTIFIER_PID" ] || NOTIFIER_PID=""
    forget_notifier "$pid"
}
forget_notifier() {
    local p rest=()
    for p in "${NOTIFIER_PIDS[@]}"; do [ "$p" = "$1" ] || rest+=("$p"); done
    NOTIFIER_PIDS=("${rest[@]}")
}

next_message_id() {
    q "SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM followup.outbox_message_id_seq"
}
count() { q "SELECT count(*) FROM followup.outbox WHERE $1"; }
count_is() { [ "$(count "$1")" -eq "$2" ]; }
count_at_least() { [ "$(count "$1")" -ge "$2" ]; }
# add_messages PREFIX N: N pending messages inserted by hand (like a run would).
# Without a registered assignments table, for made-up assignments and the
# cycle of $AS_OF (a fixed date, tests/lib/integration.sh). With one (a claim
# then withdraws a message that is no longer due), for the first N active
# assignments and their cycle starts, under sequence numbers no run uses.
add_messages() {
    if [ "$(q "SELECT count(*) FROM followup.assignment_tables")" = "1" ]; then
        q "INSERT INTO followup.outbox (assignment_id, cycle_start, kind, sequence, recipient_role, recipient_id,
                                        days_since_contact, payload)
           SELECT a.id::text, coalesce(a.last_contact_date, a.created_at), 'reminder',
                  (SELECT greatest(1000, max(sequence)) + 1 FROM followup.outbox), 'mentor', 'mentor-' || a.g, 30,
                  jsonb_build_object('n', a.g)
             FROM (SELECT a.*, row_number() OVER (ORDER BY a.id) AS g FROM app.assignments AS a
                    WHERE a.status = 'active') AS a
            WHERE a.g <= $2"
    else
        q "INSERT INTO followup.outbox (assignment_id, cycle_start, kind, sequence, recipient_role, recipient_id,
                                        days_since_contact, payload)
           SELECT '$1-' || g, date '$AS_OF', 'reminder', 1, 'mentor', 'mentor-' || g, 30, jsonb_build_object('n', g)
             FROM generate_series(1, $2) AS g"
    fi
}

# run_notifier CONSUMER [FLAGS...]: runs it in the foreground, for a start that
# must fail; sets STATUS. (timeout only guards against a hang.)
run_notifier() {
    local consumer=$1; shift
    STATUS=0
    timeout 60 "$NOTIFIER" --database "${NOTIFIER_DB:-dbname=$DB}" --webhook-url "$WEBHOOK_URL" \
        --consumer "$consumer" "$@" 2>>"$WORK/$consumer.log" || STATUS=$?
}

# idle_claimer: some notifier's last statement was a claim, and it is idle
# (waiting for a notification or its poll interval).
idle_claimer() {
    [ "$(q "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state = 'idle'
                AND query LIKE '%followup.claim(%' AND pid <> pg_backend_pid()")" -ge 1 ]
}

# metric URL SAMPLE: the value of SAMPLE (e.g. followup_notifier_delivered_total,
# or with its labels: followup_notifier_delivery_duration_seconds_bucket{le="+Inf"})
# on the /metrics page at URL; empty if absent.
metric() {
    curl -sf "$1" | awk -v name="$2" '$1 == name { print $2 }'
}

metrics_base() {
    sed -n 's|.*serving /metrics and /healthz on \(http://[0-9.:]*\).*|\1|p' "$WORK/$1.log" | tail -n 1
}

# notifier_role: the login role followup_notifier with the grants the README
# gives the notifier ("Grants for the usual roles"), taken from the README
# itself, so that a test run as that role shows they are enough. (Roles are
# the cluster's: an existing one is kept, the grants are made in $DB.)
notifier_role() {
    local grants
    grants=$(awk '/^-- the notifier: the consumer protocol only/ { on = 1; next } on && /^$/ { exit } on' "$REPO/README.md")
    [ -n "$grants" ] || abort "no notifier grants found in README.md"
    if [ "$(q "SELECT count(*) FROM pg_roles WHERE rolname = 'followup_notifier'")" = 1 ]; then
        grants=$(grep -v '^CREATE ROLE followup_notifier' <<<"$grants")
    fi
    q "$grants" >/dev/null
}
