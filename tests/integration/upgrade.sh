#!/usr/bin/env bash
# Upgrade paths: for every released version (sql/released/), install it, use
# it (registrations, runs, outbox in every state, alerts, corrections), ALTER
# EXTENSION pg_followup UPDATE to the new version, and check that nothing is
# lost, everything still works, and the upgraded schema is exactly what a
# fresh install of the new version creates.
source "$(dirname "$0")/../lib/integration.sh"
source "$REPO/tests/lib/schema.sh"

new_version=$(psql -X -At -d postgres -c "SELECT default_version FROM pg_available_extensions WHERE name = 'pg_followup'")

dropdb --if-exists it_upgrade_fresh && createdb it_upgrade_fresh
psql -X -q -v ON_ERROR_STOP=1 -d it_upgrade_fresh -c "CREATE EXTENSION pg_followup" >/dev/null
fresh=$(describe it_upgrade_fresh)

no_duplicates() {
    expect "no message enqueued twice" \
        "$(q "SELECT count(*) - count(DISTINCT (assignment_id, cycle_start, kind, sequence)) FROM followup.outbox")" "0"
}

# upgrade_from VERSION: install VERSION, use it, update to the new version,
# and check nothing is lost, the schema is a fresh install's, and it works.
upgrade_from() {
    local from=$1
    DB=it_upgrade_${from//./_}
    dropdb --if-exists "$DB" && createdb "$DB"
    psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -c "CREATE EXTENSION pg_followup VERSION '$from'" -f "$REPO/demo/app.sql" >/dev/null
    expect "$from installs" "$(q "SELECT extversion FROM pg_extension WHERE extname = 'pg_followup'")" "$from"

    seed 500
    register_app
    q "INSERT INTO followup.policies VALUES ('org-02', 7, 3, 21, 5, true)"
    q "SELECT followup.set_last_contact('9', '$(day -3)', 'paper log')" >/dev/null
    # A run's log row and messages, written in plain SQL: the library
    # installed is the new version's, whose run needs the new schema (README,
    # "Upgrading": update right after installing the library).
    q "INSERT INTO followup.runs (trigger, status, as_of, finished_at, assignments_scanned, reminders_enqueued,
                                  duplicates_suppressed, backend_pid)
       VALUES ('manual', 'succeeded', '$(day -1)', now(), 450, 400, 0, 4242)"
    q "INSERT INTO followup.outbox (run_id, assignment_id, cycle_start, kind, sequence, recipient_role, recipient_id,
                                    days_since_contact, payload)
       SELECT (SELECT max(run_id) FROM followup.runs), id::text, coalesce(last_contact_date, created_at), 'reminder', 1,
              'mentor', mentor_id::text, date '$(day -1)' - coalesce(last_contact_date, created_at),
              jsonb_build_object('organization', organization, 'contact_id', contact_id)
         FROM app.assignments WHERE status = 'active' ORDER BY id LIMIT 400"
    # The messages' states too, in plain SQL: from 0.3.0 on, claims run in
    # the library, and the new library's claims, like its runs, refuse to
    # work on the old schema until the update, and say so.
    if [[ ! "$from" < "0.3.0" ]]; then
        expect "before the update a claim refuses, naming both versions" \
            "$(q "SELECT followup.claim('upgrade-test', 5)" 2>&1 | grep -o "schema is version $from but its library is version $new_version")" \
            "schema is version $from but its library is version $new_version"
    fi
    q "WITH m AS (SELECT message_id, row_number() OVER (ORDER BY message_id) AS n FROM followup.outbox)
       UPDATE followup.outbox AS o
          SET status = CASE WHEN m.n <= 5 THEN 'delivered' WHEN m.n <= 8 THEN 'claimed' ELSE 'pending' END::followup.message_status,
              attempts = 1,
              delivered_at = CASE WHEN m.n <= 5 THEN now() END,
              lease_id = CASE WHEN m.n BETWEEN 6 AND 8 THEN '00000000-0000-4000-8000-000000000001'::uuid END,
              claimed_by = CASE WHEN m.n BETWEEN 6 AND 8 THEN 'upgrade-test' END,
              visible_at = now() + CASE WHEN m.n <= 8 THEN interval '5 minutes' ELSE interval '30 seconds' END,
              last_error = CASE WHEN m.n = 9 THEN 'HTTP 500' END
         FROM m WHERE o.message_id = m.message_id AND m.n <= 9"
    q "INSERT INTO followup.outbox_leases (lease_id, consumer, message_ids, expires_at)
       SELECT lease_id, claimed_by, array_agg(message_id ORDER BY message_id), now() + interval '5 minutes'
         FROM followup.outbox WHERE status = 'claimed' GROUP BY lease_id, claimed_by"
    q "SELECT followup._raise_alert('run_failed', NULL, 'kept across the upgrade')" >/dev/null

    before=$(snapshot)
    expect "the $from database has messages in several states" \
        "$(q "SELECT string_agg(DISTINCT status::text, ',' ORDER BY status::text) FROM followup.outbox")" "claimed,delivered,pending"

    q "ALTER EXTENSION pg_followup UPDATE" >/dev/null
    expect "ALTER EXTENSION UPDATE from $from reaches $new_version" \
        "$(q "SELECT extversion FROM pg_extension WHERE extname = 'pg_followup'")" "$new_version"
    expect "no registration, policy, run, message, alert or correction is lost or changed" "$(snapshot)" "$before"
    expect "the tables tracked already got the TRUNCATE triggers" \
        "$(q "SELECT string_agg(tgname, ',' ORDER BY tgname) FROM pg_trigger
               WHERE tgrelid = 'app.activities'::regclass AND tgname LIKE 'followup_activity_truncate%'")" \
        "followup_activity_truncate,followup_activity_truncate_note"
    if [[ "$from" < "0.3.0" ]]; then
        # (the update to 0.3.0 gives each message the organization it lacked)
        expect "every queued message got its assignment's organization (for its send window)" \
            "$(q "SELECT count(*) FILTER (WHERE o.organization IS DISTINCT FROM a.organization) || '/' || count(*)
                   FROM followup.outbox o JOIN app.assignments a ON a.id::text = o.assignment_id")" \
            "0/$(q "SELECT count(*) FROM followup.outbox")"
    fi

    upgraded=$(describe "$DB")
    if [ "$fresh" != "$upgraded" ]; then
        diff <(echo "$fresh") <(echo "$upgraded") | head -40 || true
    fi
    expect "from $from: the upgraded schema is exactly a fresh $new_version install's ($(echo "$fresh" | wc -l) objects compared)" \
        "$([ "$fresh" == "$upgraded" ] && echo same)" "same"

    # and it works
    last_message_id=$(q "SELECT max(message_id) FROM followup.outbox")
    q "INSERT INTO app.activities (mentor_id, contact_id, occurred_at, registration)
       SELECT mentor_id, contact_id, '$AS_OF 12:00+00', 'direct' FROM app.assignments WHERE id = 11"
    expect "tracking works after the upgrade" "$(last_contact 11)" "$AS_OF"
    expect "a run after the upgrade succeeds, enqueueing none of the messages already there again" \
        "$(q "SELECT status FROM followup.run_now('$(day -1)')")" "succeeded"
    no_duplicates
    expect "message ids continue after the ones already there" \
        "$(q "SELECT count(*) FROM followup.outbox WHERE run_id = (SELECT max(run_id) FROM followup.runs)
                                                     AND message_id <= $last_message_id")" "0"
    expect "a rerun for the same day enqueues nothing new" \
        "$(q "SELECT status || ':' || reminders_enqueued FROM followup.run_now('$(day -1)')")" "succeeded:0"
    expect "a run for today (the default as_of) works" \
        "$(q "SELECT status || ':' || (as_of = (now() AT TIME ZONE current_setting('followup.timezone'))::date) FROM followup.run_now()")" \
        "succeeded:true"
    lease=$(q "SELECT DISTINCT lease_id FROM followup.claim('after-upgrade', 5)")
    expect "claim and ack work" "$(q "SELECT followup.ack('$lease')")" "5"
    expect "corrections work, ids continue" \
        "$(q "SELECT correction_id FROM followup.set_last_contact('12', '$(day -1)', 'after upgrade')")" "2"
    expect "corrections written before the update name their session role as their acting role" \
        "$(q "SELECT string_agg(corrected_by || '/' || session_role, ',' ORDER BY correction_id) FROM followup.contact_corrections")" \
        "postgres/postgres,postgres/postgres"
}

# every released version, and so every upgrade path to the new one
for from in $(ls "$REPO/sql/released/" | sed -n 's/^pg_followup--\([0-9.]*\)\.sql$/\1/p' | sort -V); do
    upgrade_from "$from"
done
finish
