#!/usr/bin/env bash
# JIT (README, Performance): the run, the bulk tracking statements and the
# claims decide JIT for themselves and never compile, on a server where JIT
# is on and every cost threshold is 0 (so any other statement is compiled).
# pg_stat_statements (track = all, so statements run by the extension through
# SPI are seen, in the run's background worker too) counts the functions JIT
# compiled for each.
source "$(dirname "$0")/../lib/integration.sh"
trap 'cluster_stop jit immediate' EXIT

cluster_init jit "shared_preload_libraries = 'pg_followup,pg_stat_statements'" "pg_stat_statements.track = all" \
    "jit = on" "jit_above_cost = 0" "jit_inline_above_cost = 0" "jit_optimize_above_cost = 0"
cluster_start jit
export PGHOST=$(cluster_host jit) PGPORT=$(cluster_port jit)
new_db it_jit
q "CREATE EXTENSION pg_stat_statements"
# the sample app is built without JIT: at cost threshold 0 every foreign-key
# check and nested-loop rescan of the seeding would compile
PGOPTIONS="-c jit=off" seed 2000
PGOPTIONS="-c jit=off" register_app
expect "JIT is available on this server" "$(q "SELECT pg_jit_available()")" "t"

# jit_functions summed over the statements whose text matches PATTERN, as
# "calls:functions"
jitted() {
    q "SELECT coalesce(sum(calls), 0) || ':' || coalesce(sum(jit_functions), 0)
         FROM pg_stat_statements WHERE query LIKE '$1' AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
}

q "SELECT pg_stat_statements_reset()" >/dev/null
q "SELECT count(*) FROM generate_series(1, 1000) AS g WHERE g % 7 = 0" >/dev/null
expect "a plain statement is JIT-compiled here (the control)" \
    "$(jitted 'SELECT count(*) FROM generate_series(%' | awk -F: '{ print ($2 > 0) }')" "1"

q "SELECT status FROM followup.run_now('$AS_OF')" >/dev/null
q "SELECT status FROM followup.run_now('$AS_OF')" >/dev/null
psql -X -q -d "$DB" -c "SET followup.run_in_worker = off" -c "SELECT status FROM followup.run_now('$(day 1)')" >/dev/null
expect "the run's INSERT (in a worker and in the session, first run and rerun) compiles nothing" \
    "$(jitted 'INSERT INTO followup.outbox (run_id, %')" "3:0"

# bulk tracking: an insert of 1,000 activities (one statement), an update of
# them, and their delete: the raise, the change and the recompute statements
q "INSERT INTO app.activities (mentor_id, contact_id, occurred_at, registration)
   SELECT mentor_id, contact_id, '$AS_OF 15:00+00', 'bulk' FROM app.assignments WHERE id <= 1000"
q "UPDATE app.activities SET occurred_at = occurred_at + interval '1 day' WHERE occurred_at = '$AS_OF 15:00+00'"
q "DELETE FROM app.activities WHERE occurred_at = '$(day 1) 15:00+00'"
expect "bulk tracking statements ran (insert, update, delete) and compiled nothing" \
    "$(jitted '%UPDATE app.assignments AS a%')" "3:0"
expect "and so did their row locks, taken first (at least one per statement)" \
    "$(jitted '%FOR NO KEY UPDATE OF a' | awk -F: '{ print ($1 >= 3 && $2 == 0) }')" "1"
expect "and the dates are right: back to the seeded history after the delete" "$(drifted)" "0"

# the consumer protocol: a claim and a digest, each one statement over the
# outbox (and the still-due check's join to the assignments)
q "SELECT count(*) FROM followup.claim('it-jit', 100)" >/dev/null
q "SELECT count(*) FROM followup.claim_digest('it-jit', 5)" >/dev/null
expect "a claim and a digest ran their pick and compiled nothing" \
    "$(jitted 'WITH picked AS (%' | awk -F: '{ print ($1 >= 2 && $2 == 0) }')" "1"
finish
