-- Manual correction and the privilege model (README, "Correcting a last contact"), with real login roles.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_followup CASCADE;
DROP SCHEMA IF EXISTS priv CASCADE;
\i tests/pg_regress/helpers/roles.sql
SELECT FROM drop_roles(ARRAY['followup_priv_admin', 'followup_priv_nobody', 'followup_priv_notifier',
                                  'followup_priv_monitor']);
CREATE EXTENSION pg_followup;
RESET client_min_messages;
CREATE SCHEMA priv;
SET search_path = priv, public;

-- pg_regress feeds psql on stdin, so paths are relative to the repository root
\i tests/pg_regress/helpers/try.sql
GRANT USAGE ON SCHEMA priv TO PUBLIC;

-- no tracked assignments table yet
SELECT try($$SELECT followup.set_last_contact('1', '2026-11-01', 'phone call')$$);

CREATE TABLE assignments (id int PRIMARY KEY, mentor_id int, last_contact_date date, secret text DEFAULT 'x');
INSERT INTO assignments SELECT g, 100 + g, date '2026-10-01', 's' FROM generate_series(1, 5) g;
CREATE TABLE activities (assignment_id int, occurred_on date);
CREATE INDEX ON activities (assignment_id, occurred_on);
SELECT followup.track_assignments('assignments', 'id', 'mentor_id', 'last_contact_date');
SELECT followup.track_activities('activities', 'occurred_on', '{assignment_id}', '{id}');
INSERT INTO activities VALUES (1, '2026-10-01'), (2, '2026-10-01');

-- the roles of the README's GRANT recipes
CREATE ROLE followup_priv_admin LOGIN;
CREATE ROLE followup_priv_nobody LOGIN;
CREATE ROLE followup_priv_notifier LOGIN;
CREATE ROLE followup_priv_monitor LOGIN;
GRANT USAGE ON SCHEMA followup TO followup_priv_admin, followup_priv_nobody, followup_priv_notifier, followup_priv_monitor;
GRANT EXECUTE ON FUNCTION followup.set_last_contact(text, date, text), followup.run_now(date),
                          followup.preview(date), followup.requeue_dead(bigint[])
   TO followup_priv_admin;
GRANT SELECT ON followup.contact_corrections, followup.runs, followup.alerts, followup.outbox, followup.health
   TO followup_priv_admin;
GRANT EXECUTE ON FUNCTION followup.claim(text, int, interval), followup.ack(uuid, bigint[]),
                          followup.fail(uuid, bigint, text, interval)
   TO followup_priv_notifier;
GRANT SELECT ON followup.health, followup.runs, followup.alerts TO followup_priv_monitor;

-- An unprivileged role is refused every function that changes state: all
-- volatile functions of the extension that can be called directly.
\c - followup_priv_nobody
SET search_path = priv, public;
SELECT p.oid::regprocedure AS function,
       try(format('SELECT %s.%I(%s)', n.nspname, p.proname,
                  (SELECT string_agg('NULL', ', ') FROM generate_series(1, p.pronargs)))) AS outcome
  FROM pg_proc p
  JOIN pg_namespace n ON n.oid = p.pronamespace
  JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_followup'
 WHERE p.provolatile = 'v' AND p.prorettype NOT IN ('trigger'::regtype, 'event_trigger'::regtype)
 ORDER BY p.oid::regprocedure::text;
-- ... and cannot read or write the extension's tables or the app's
SELECT try($$SELECT * FROM followup.outbox$$);
SELECT try($$UPDATE followup.policies SET enabled = false$$);
SELECT try($$INSERT INTO followup.contact_corrections (assignment_id, new_value, reason) VALUES ('1', current_date, 'x')$$);
SELECT try($$UPDATE priv.assignments SET last_contact_date = current_date$$);
SELECT try($$SELECT * FROM followup.health$$);

-- the notifier can claim, ack and fail, and nothing else
\c - followup_priv_notifier
SELECT count(*) AS claimed FROM followup.claim('notifier', 10);
SELECT try($$SELECT followup.set_last_contact('1', '2026-11-01', 'x')$$);
SELECT try($$SELECT followup.run_now()$$);

-- the monitor can read health and the log
\c - followup_priv_monitor
SELECT count(*) AS health_rows FROM followup.health;
SELECT try($$SELECT * FROM followup.outbox$$);

-- the admin corrects a last contact; the audit row names the admin
\c - followup_priv_admin
SET search_path = priv, public;
SELECT correction_id, assignment_id, old_value, new_value, reason, corrected_by,
       corrected_at BETWEEN now() - interval '1 minute' AND now() AS corrected_now,
       client_addr IS NULL AS over_a_socket
  FROM followup.set_last_contact('1', '2026-11-15', 'phone call logged on paper');
-- each bad input is refused with a SQLSTATE and writes no audit row
SELECT try($$SELECT followup.set_last_contact('99', '2026-11-15', 'no such assignment')$$);
SELECT try($$SELECT followup.set_last_contact('abc', '2026-11-15', 'not even an integer')$$);
SELECT try($$SELECT followup.set_last_contact(NULL, '2026-11-15', 'x')$$);
SELECT try($$SELECT followup.set_last_contact('2', NULL, 'x')$$);
-- a future date: the message names today in followup.timezone, in ISO form
-- whatever the session's DateStyle (pg_regress runs with Postgres, MDY)
SELECT replace(try($$SELECT followup.set_last_contact('2', current_date + 2, 'the day after tomorrow')$$),
               to_char((now() AT TIME ZONE current_setting('followup.timezone'))::date, 'YYYY-MM-DD'),
               '<today>') AS refused;
SELECT try($$SELECT followup.set_last_contact('2', '2026-11-15', '')$$);
SELECT try($$SELECT followup.set_last_contact('2', '2026-11-15', '   ')$$);
SELECT try($$SELECT followup.set_last_contact('2', '2026-11-15', NULL)$$);
SELECT count(*) AS audit_rows FROM followup.contact_corrections;
-- the admin role itself still cannot write the tables directly
SELECT try($$UPDATE priv.assignments SET last_contact_date = current_date$$);
SELECT try($$DELETE FROM followup.contact_corrections$$);

-- A search_path hijack: the admin creates a now(), a client address and an
-- equality operator in public that would change what an unpinned function
-- does, and puts public first. The correction is unaffected.
\c - postgres
GRANT CREATE ON SCHEMA public TO followup_priv_admin;
\c - followup_priv_admin
CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE sql AS $$ SELECT timestamptz '1999-01-01' $$;
CREATE FUNCTION public.inet_client_addr() RETURNS inet LANGUAGE sql AS $$ SELECT inet '6.6.6.6' $$;
CREATE FUNCTION public.always_equal(int, int) RETURNS boolean LANGUAGE sql AS $$ SELECT true $$;
CREATE OPERATOR public.= (LEFTARG = int, RIGHTARG = int, FUNCTION = public.always_equal);
CREATE FUNCTION pg_temp.now() RETURNS timestamptz LANGUAGE sql AS $$ SELECT timestamptz '1999-01-01' $$;
SET search_path = public, pg_temp, pg_catalog, priv;
SELECT 1 = 2 AS hijacked_equality, now() = '1999-01-01' AS hijacked_now;
SELECT assignment_id, new_value, corrected_by, corrected_at > '2000-01-01' AS real_now,
       client_addr IS DISTINCT FROM '6.6.6.6' AS real_client_addr
  FROM followup.set_last_contact('2', '2026-11-20', 'visit');
RESET search_path;
\c - postgres
DROP OPERATOR public.= (int, int);
DROP FUNCTION public.always_equal(int, int), public.now(), public.inet_client_addr();
REVOKE CREATE ON SCHEMA public FROM followup_priv_admin;
SET search_path = priv, public;
-- only assignment 2 was changed by that call
SELECT id, last_contact_date FROM assignments ORDER BY id;

-- a correction is the floor a later recompute never drops below
INSERT INTO activities VALUES (1, '2026-11-20');
DELETE FROM activities WHERE assignment_id = 1 AND occurred_on = '2026-11-20';
SELECT id, last_contact_date FROM assignments WHERE id = 1;

-- timestamp columns: the date becomes local midnight, the old value is kept exactly
ALTER TABLE assignments ADD COLUMN last_contact_at timestamptz DEFAULT '2026-10-01 12:34:56+00';
SELECT followup.track_assignments('assignments', 'id', 'mentor_id', 'last_contact_at');
SET followup.timezone = 'Europe/Oslo';
SELECT old_value, new_value FROM followup.set_last_contact('3', '2026-11-16', 'visit');
SET TimeZone = 'UTC';
SELECT id, last_contact_at FROM assignments WHERE id = 3;
RESET TimeZone;
RESET followup.timezone;

-- The catalog checks every future function must pass too:
-- every SECURITY DEFINER function pins search_path ...
SELECT p.oid::regprocedure AS definer_without_pinned_search_path
  FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_followup')
   AND p.prosecdef
   AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search_path=pg_catalog%');
-- ... and no function that can change state is executable by PUBLIC, but
-- for those the README lists: the tracking trigger functions (no trigger
-- function can be called directly, and a table owner must be able to create
-- partitions of a tracked table) and the run's row counters (the run's
-- INSERT runs as the table owner and calls them)
SELECT p.oid::regprocedure AS volatile_function_executable_by_public,
       p.oid::regprocedure IN ('followup.activity_statement_trigger()'::regprocedure,
                               'followup.activity_replica_trigger()'::regprocedure,
                               'followup.activity_truncate_trigger()'::regprocedure,
                               'followup._tally_scanned(text)'::regprocedure,
                               'followup._tally_due(text)'::regprocedure) AS documented
  FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_followup')
   AND p.provolatile = 'v'
   AND EXISTS (SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
                WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE')
 ORDER BY p.oid::regprocedure::text;
-- ... and no table of the extension is readable or writable by PUBLIC
SELECT c.oid::regclass AS table_open_to_public
  FROM pg_class c JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_followup')
   AND c.relkind IN ('r', 'v', 'S')
   AND EXISTS (SELECT 1 FROM aclexplode(c.relacl) a WHERE a.grantee = 0);
