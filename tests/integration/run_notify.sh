#!/usr/bin/env bash
# One NOTIFY followup_outbox per run that enqueued messages, with the run id
# and the count as JSON (SPEC §5); none for a run that enqueued nothing. The
# running row is visible to other sessions while the run is in progress.
source "$(dirname "$0")/../lib/integration.sh"
new_db it_run_notify
seed 300
register_app

# psql prints notifications received while it waits for the next command
listen() {
    psql -X -q -d "$DB" -v ON_ERROR_STOP=1 <<SQL 2>&1
LISTEN followup_outbox;
SELECT 'run ' || run_id || ' enqueued ' || reminders_enqueued FROM followup.run_now('$AS_OF') \g /dev/null
SELECT 1 \g /dev/null
SQL
}
first=$(listen)
expected=$(q "SELECT format('{\"run_id\" : %s, \"enqueued\" : %s}', run_id, reminders_enqueued)
               FROM followup.runs ORDER BY run_id DESC LIMIT 1")
expect "the first run notifies once with its id and count" \
    "$(echo "$first" | grep -c 'Asynchronous notification "followup_outbox"')" "1"
expect "the payload is the run id and the number enqueued" \
    "$(echo "$first" | sed -n 's/.*with payload "\(.*\)" received.*/\1/p')" "$expected"
expect "it enqueued something" "$(q "SELECT reminders_enqueued > 0 FROM followup.runs ORDER BY run_id DESC LIMIT 1")" "t"
second=$(listen)
expect "a rerun that enqueues nothing does not notify" \
    "$(echo "$second" | grep -c 'Asynchronous notification' || true)" "0"

# the running row is visible while a run waits on a locked assignments table
psql -X -q -d "$DB" -c "BEGIN; LOCK TABLE app.assignments; SELECT pg_sleep(3); COMMIT;" >/dev/null &
locker=$!
sleep 0.5
q "SELECT status FROM followup.run_now('$(day 1)')" >"$CLUSTER_ROOT/run_notify.out" &
runner=$!
seen=""
for _ in $(seq 1 40); do
    seen=$(q "SELECT string_agg(status::text, ',') FROM followup.runs WHERE as_of = '$(day 1)'")
    [ "$seen" = "running" ] && break
    sleep 0.1
done
expect "another session sees the run as running while it works" "$seen" "running"
wait "$locker" "$runner"
expect "and then as succeeded" "$(cat "$CLUSTER_ROOT/run_notify.out")" "succeeded"
finish
