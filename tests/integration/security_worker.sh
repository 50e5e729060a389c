#!/usr/bin/env bash
# Security (README, "Roles and privileges"): the background workers run as a
# superuser, so nothing a database's owner creates may be resolved in their
# SQL. The database owner (an ordinary role) plants, where an unpinned
# worker session would look first, an exact-type `=` for followup.run_status
# (PostgreSQL itself has only anyenum = anyenum), a make_interval(secs) and
# a now(): in `public`, and in a schema named after the worker's user
# (`"$user"`), with `ALTER DATABASE … SET search_path` pointing there too.
# Then the scheduler starts, finds a run whose process died and a missed
# day, marks the one abandoned, catches the other up, plans retries, and
# checks running runs: none of the planted objects runs, and the owner is
# no superuser. Also: NOTIFY followup_alerts carries ids, not the alert's text.
source "$(dirname "$0")/../lib/integration.sh"
trap 'cluster_stop secw immediate' EXIT

NOON_TZ=$(noon_tz)
cluster_init secw "followup.database = 'sec_worker'" "followup.timezone = '$NOON_TZ'" "followup.alert_after = 1"
cluster_start secw
export PGHOST=$(cluster_host secw) PGPORT=$(cluster_port secw)
LOG="$(cluster_dir secw)/server.log"
DB=sec_worker


psql -X -q -v ON_ERROR_STOP=1 -d postgres <<'SQL'
CREATE ROLE sec_dbowner LOGIN;
CREATE DATABASE sec_worker OWNER sec_dbowner;
SQL
psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -c "CREATE EXTENSION pg_followup" -f "$REPO/demo/app.sql" >/dev/null
seed 200
register_app
# The database owner's hijacks: what each one catches is recorded, and each
# tries to make its owner a superuser.
psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -U sec_dbowner <<'SQL'
CREATE SCHEMA postgres;   -- "$user" of the worker sessions
CREATE TABLE public.hijacked (what text, as_role text, at timestamptz DEFAULT clock_timestamp());
GRANT INSERT ON public.hijacked TO PUBLIC;
CREATE FUNCTION public.caught(what text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.hijacked (what, as_role) VALUES (what, current_user);
    BEGIN
        EXECUTE 'ALTER ROLE sec_dbowner SUPERUSER';
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
END $$;
DO $$
DECLARE
    s text;
BEGIN
    FOREACH s IN ARRAY ARRAY['public', 'postgres'] LOOP
        EXECUTE format($f$
            CREATE FUNCTION %1$I.status_eq(a followup.run_status, b followup.run_status) RETURNS boolean
            LANGUAGE plpgsql AS $b$ BEGIN PERFORM public.caught('= on run_status in %1$s'); RETURN a::text = b::text; END $b$;
            CREATE OPERATOR %1$I.= (LEFTARG = followup.run_status, RIGHTARG = followup.run_status,
                                    FUNCTION = %1$I.status_eq);
            CREATE FUNCTION %1$I.make_interval(secs double precision) RETURNS interval
            LANGUAGE plpgsql AS $b$ BEGIN PERFORM public.caught('make_interval in %1$s'); RETURN secs * interval '1 second'; END $b$;
            CREATE FUNCTION %1$I.now() RETURNS timestamptz
            LANGUAGE plpgsql AS $b$ BEGIN PERFORM public.caught('now in %1$s'); RETURN pg_catalog.now(); END $b$;
        $f$, s);
    END LOOP;
END $$;
ALTER DATABASE sec_worker SET search_path = "$user", public;
SQL
expect "the planted = catches an unpinned session's comparison" \
    "$(psql -X -At -q -d "$DB" -U sec_dbowner -c "SELECT 'running'::followup.run_status = 'running'" -c "SELECT count(*) FROM public.hijacked")" \
    "t
1"
q "TRUNCATE public.hijacked"

# What the scheduler will find at start-up: a run whose process died, a
# failed run of the last scheduled day (so retries are planned), and that
# day's run missing (registered long before it).
long_on_duty
q "INSERT INTO followup.runs (trigger, status, as_of, backend_pid) VALUES ('schedule', 'running', now()::date - 1, 2147483647)"
missed_at=$(q "SELECT to_char(now() AT TIME ZONE '$NOON_TZ' - interval '2 minutes', 'HH24:MI')")
psql -X -q -d postgres -c "ALTER SYSTEM SET followup.run_at = '$missed_at'" >/dev/null
cluster_stop secw fast
cluster_start secw
restarted_at_line=$(wc -l <"$LOG")

wait_for "SELECT status FROM followup.runs WHERE trigger = 'catch_up'" "succeeded" 60 || true
expect "the scheduler marked the dead run abandoned" \
    "$(q "SELECT status FROM followup.runs WHERE backend_pid = 2147483647")" "abandoned"
expect "and caught the missed day up" "$(q "SELECT status FROM followup.runs WHERE trigger = 'catch_up'")" "succeeded"
# the once-a-minute check of running runs: another dead one, marked by it
q "INSERT INTO followup.runs (trigger, status, as_of, backend_pid) VALUES ('manual', 'running', now()::date, 2147483646)"
wait_for "SELECT status FROM followup.runs WHERE backend_pid = 2147483646" "abandoned" 75 || true
expect "the scheduler's once-a-minute check ran (it marked a second dead run abandoned)" \
    "$(q "SELECT status FROM followup.runs WHERE backend_pid = 2147483646")" "abandoned"
expect "and no worker failed meanwhile" \
    "$(tail -n +"$restarted_at_line" "$LOG" | grep -c 'pg_followup.*exited with exit code 1' || true)" "0"
expect "every worker session pinned its search path: nothing planted ran" \
    "$(q "SELECT coalesce(string_agg(what || ' as ' || as_role, '; '), 'nothing') FROM public.hijacked")" "nothing"
expect "the database owner is no superuser" \
    "$(q "SELECT rolsuper FROM pg_roles WHERE rolname = 'sec_dbowner'")" "f"

# An alert's notification carries its ids, not its text (which can hold an
# app's values, and any connected role can LISTEN).
payload=$(psql -X -At -q -d "$DB" -c "LISTEN followup_alerts" \
    -c "SELECT followup._raise_alert('run_failed', 4242, 'run 4242 failed: invalid input syntax for type integer: \"secret\"')" 2>&1 \
    | sed -n 's/.*with payload "\(.*\)" received from server process.*/\1/p')
expect "the notification names the alert and the run" \
    "$(echo "$payload" | python3 -c 'import json, sys; p = json.loads(sys.stdin.read()); print(sorted(p), p["kind"], p["run_id"])')" \
    "['alert_id', 'kind', 'run_id'] run_failed 4242"
expect "and holds none of its text" "$(echo "$payload" | grep -c secret || true)" "0"
finish
