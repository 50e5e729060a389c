-- Registration (README, "Registering the app's tables"): every bad input is refused with a clear message and
-- SQLSTATE, and registers nothing. Identifiers that need quoting work.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_followup CASCADE;
DROP SCHEMA IF EXISTS reg CASCADE;
DROP SCHEMA IF EXISTS "Odd Schema; x" CASCADE;
CREATE EXTENSION pg_followup;
DROP ROLE IF EXISTS followup_reg_stranger;
DROP ROLE IF EXISTS followup_reg_owner;
RESET client_min_messages;
CREATE SCHEMA reg;
SET search_path = reg, public;

-- pg_regress feeds psql on stdin, so paths are relative to the repository root
\i tests/pg_regress/helpers/try.sql
-- What is registered, in one line.
CREATE VIEW registered AS
SELECT (SELECT count(*) FROM followup.assignment_tables) AS assignment_tables,
       (SELECT count(*) FROM followup.activity_tables) AS activity_tables,
       (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'followup_activity_%') AS triggers;

CREATE TABLE assignments (
    id int PRIMARY KEY, mentor_id int, coordinator_id int, org text,
    status text DEFAULT 'active', created_at date, last_contact_date date,
    last_contact_text text, contact_key bigint, note varchar(20)
);
CREATE TABLE activities (assignment_id int, occurred_at timestamptz, occurred_text text, amount numeric, note text,
                         person_key bigint);

-- no assignments table yet
SELECT try($$SELECT followup.track_activities('activities', 'occurred_at', '{assignment_id}', '{id}')$$);

-- track_assignments: unknown table, unknown columns, wrong types, NULLs
SELECT try($$SELECT followup.track_assignments('nope', 'id', 'mentor_id', 'last_contact_date')$$);
SELECT try($$SELECT followup.track_assignments('assignments', 'ident', 'mentor_id', 'last_contact_date')$$);
SELECT try($$SELECT followup.track_assignments('assignments', 'id', 'mentor', 'last_contact_date')$$);
SELECT try($$SELECT followup.track_assignments('assignments', 'id', 'mentor_id', 'last_contact_text')$$);
SELECT try($$SELECT followup.track_assignments('assignments', 'id', 'mentor_id', 'last_contact_date', created_column => 'org')$$);
SELECT try($$SELECT followup.track_assignments('assignments', 'id', 'mentor_id', 'last_contact_date', coordinator_column => 'boss')$$);
SELECT try($$SELECT followup.track_assignments('assignments', 'id', 'mentor_id', 'last_contact_date', organization_column => 'orgs')$$);
SELECT try($$SELECT followup.track_assignments('assignments', 'id', 'mentor_id', 'last_contact_date', payload_columns => '{org,missing}')$$);
SELECT try($$SELECT followup.track_assignments(NULL, 'id', 'mentor_id', 'last_contact_date')$$);
SELECT try($$SELECT followup.track_assignments('assignments', 'id', NULL, 'last_contact_date')$$);
SELECT try($$SELECT followup.track_assignments('assignments', 'id', 'mentor_id', 'last_contact_date', payload_columns => '{org,NULL}')$$);

-- not a table
CREATE VIEW assignments_view AS SELECT * FROM assignments;
SELECT try($$SELECT followup.track_assignments('assignments_view', 'id', 'mentor_id', 'last_contact_date')$$);

-- active_when: must be one boolean expression over the table, deterministic,
-- without subqueries into other tables, and no way to smuggle in a statement
SELECT try($$SELECT followup.track_assignments('assignments', 'id', 'mentor_id', 'last_contact_date', active_when => 'status =')$$);
SELECT try($$SELECT followup.track_assignments('assignments', 'id', 'mentor_id', 'last_contact_date', active_when => 'stauts = ''active''')$$);
SELECT try($$SELECT followup.track_assignments('assignments', 'id', 'mentor_id', 'last_contact_date', active_when => 'length(status)')$$);
SELECT try($$SELECT followup.track_assignments('assignments', 'id', 'mentor_id', 'last_contact_date', active_when => 'random() < 0.5')$$);
SELECT try($$SELECT followup.track_assignments('assignments', 'id', 'mentor_id', 'last_contact_date', active_when => 'count(*) > 0')$$);
SELECT try($$SELECT followup.track_assignments('assignments', 'id', 'mentor_id', 'last_contact_date', active_when => 'EXISTS (SELECT 1 FROM pg_authid)')$$);
SELECT try($$SELECT followup.track_assignments('assignments', 'id', 'mentor_id', 'last_contact_date', active_when => 'true) FROM reg.assignments; DROP TABLE reg.activities; SELECT (true')$$);
SELECT try($$SELECT followup.track_assignments('assignments', 'id', 'mentor_id', 'last_contact_date', active_when => 'true) AS x, (1')$$);
SELECT try($$SELECT followup.track_assignments('assignments', 'id', 'mentor_id', 'last_contact_date', active_when => 'true) UNION (SELECT false')$$);
SELECT try($$SELECT followup.track_assignments('assignments', 'id', 'mentor_id', 'last_contact_date', active_when => 'true -- ')$$);
SELECT * FROM registered;
SELECT to_regclass('reg.activities') IS NOT NULL AS activities_table_still_there;

-- active_when may use only what PostgreSQL defines: a user-defined function
-- is refused for every registering role (the run evaluates active_when as
-- the table's owner anyway; tests/pg_regress/sql/security_*.sql)
CREATE FUNCTION is_open(s text) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$ SELECT s = 'active' $$;
CREATE ROLE followup_reg_owner;
CREATE TABLE owned_assignments (id int, mentor_id int, status text, last_contact_date date);
ALTER TABLE owned_assignments OWNER TO followup_reg_owner;
GRANT USAGE ON SCHEMA reg TO followup_reg_owner;
GRANT EXECUTE ON FUNCTION followup.track_assignments(regclass, name, name, name, name, name, name, text, name[])
   TO followup_reg_owner;
SET ROLE followup_reg_owner;
SELECT try($$SELECT followup.track_assignments('reg.owned_assignments', 'id', 'mentor_id', 'last_contact_date', active_when => 'reg.is_open(status)')$$);
-- a built-in function that needs more than the owner may do (reading a
-- superuser-only setting) is refused too: the run evaluates it as the
-- table's owner
SELECT try($$SELECT followup.track_assignments('reg.owned_assignments', 'id', 'mentor_id', 'last_contact_date', active_when => $a$pg_catalog.current_setting('data_directory') IS NOT NULL$a$)$$);
SELECT try($$SELECT followup.track_assignments('reg.owned_assignments', 'id', 'mentor_id', 'last_contact_date', active_when => $a$status = 'active' AND id > 0$a$)$$);
RESET ROLE;
SELECT relation, registered_by FROM followup.assignment_tables;
-- a superuser too
SELECT try($$SELECT followup.track_assignments('reg.owned_assignments', 'id', 'mentor_id', 'last_contact_date', active_when => 'reg.is_open(status)')$$);
SELECT relation, active_when FROM followup.assignment_tables;

-- a good registration
SELECT followup.track_assignments('assignments', 'id', 'mentor_id', 'last_contact_date',
    created_column => 'created_at', coordinator_column => 'coordinator_id', organization_column => 'org',
    active_when => $$status = 'active' AND coalesce(note, '') NOT LIKE 'test%'$$,
    payload_columns => '{org,note}');
SELECT relation, id_column, mentor_column, last_contact_column, created_column, coordinator_column,
       organization_column, active_when, payload_columns
  FROM followup.assignment_tables;

-- track_activities: unknown columns, types, counts, duplicates, NULLs
SELECT try($$SELECT followup.track_activities('activities', 'occurred', '{assignment_id}', '{id}')$$);
SELECT try($$SELECT followup.track_activities('activities', 'occurred_text', '{assignment_id}', '{id}')$$);
SELECT try($$SELECT followup.track_activities('activities', 'occurred_at', '{assignment}', '{id}')$$);
SELECT try($$SELECT followup.track_activities('activities', 'occurred_at', '{assignment_id}', '{ident}')$$);
SELECT try($$SELECT followup.track_activities('activities', 'occurred_at', '{assignment_id}')$$);
SELECT try($$SELECT followup.track_activities('activities', 'occurred_at', '{assignment_id}', '{id,mentor_id}')$$);
SELECT try($$SELECT followup.track_activities('activities', 'occurred_at', '{}', '{}')$$);
SELECT try($$SELECT followup.track_activities('activities', 'occurred_at', '{assignment_id,assignment_id}', '{id,id}')$$);
SELECT try($$SELECT followup.track_activities('activities', 'occurred_at', '{note}', '{id}')$$);
SELECT try($$SELECT followup.track_activities('activities', 'occurred_at', '{amount}', '{last_contact_date}')$$);
SELECT try($$SELECT followup.track_activities('activities', 'occurred_at', '{occurred_at}', '{created_at}')$$);
SELECT try($$SELECT followup.track_activities('activities', 'occurred_at', NULL, '{id}')$$);
SELECT try($$SELECT followup.track_activities('activities', NULL, '{assignment_id}', '{id}')$$);
SELECT try($$SELECT followup.track_activities('assignments', 'last_contact_date', '{id}', '{id}')$$);
SELECT try($$SELECT followup.track_activities('assignments_view', 'last_contact_date', '{id}', '{id}')$$);

-- a foreign table cannot have transition tables
CREATE FOREIGN DATA WRAPPER reg_fdw;
CREATE SERVER reg_server FOREIGN DATA WRAPPER reg_fdw;
CREATE FOREIGN TABLE remote_activities (assignment_id int, occurred_at date) SERVER reg_server;
SELECT try($$SELECT followup.track_activities('remote_activities', 'occurred_at', '{assignment_id}', '{id}')$$);

-- a partition must be tracked through its partitioned table
CREATE TABLE parted (assignment_id int, occurred_at date) PARTITION BY RANGE (occurred_at);
CREATE TABLE parted_2026 PARTITION OF parted FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
SELECT try($$SELECT followup.track_activities('parted_2026', 'occurred_at', '{assignment_id}', '{id}')$$);

-- only the owner of a table may register it
CREATE ROLE followup_reg_stranger;
GRANT USAGE ON SCHEMA reg TO followup_reg_stranger;
GRANT EXECUTE ON FUNCTION followup.track_activities(regclass, name, name[], name[]) TO followup_reg_stranger;
SET ROLE followup_reg_stranger;
SELECT try($$SELECT followup.track_activities('reg.activities', 'occurred_at', '{assignment_id}', '{id}')$$);
RESET ROLE;

SELECT * FROM registered;

-- bigint matches int (a cross-type equality exists), text matches varchar;
-- numeric and bigint have no equality of their own
SELECT try($$SELECT followup.track_activities('activities', 'occurred_at', '{amount}', '{contact_key}')$$);
CREATE INDEX ON activities (person_key);
SELECT followup.track_activities('activities', 'occurred_at', '{person_key}', '{id}');
SELECT relation, occurred_column, match_columns, assignment_columns FROM followup.activity_tables;
SELECT try($$SELECT followup.track_activities('activities', 'occurred_at', '{note}', '{note}')$$);
SELECT relation, occurred_column, match_columns, assignment_columns FROM followup.activity_tables;
SELECT followup.untrack_activities('activities');
SELECT try($$SELECT followup.untrack_activities('activities')$$);
SELECT * FROM registered;

-- identifiers that need quoting: spaces, quotes, semicolons, capitals
CREATE SCHEMA "Odd Schema; x";
CREATE TABLE "Odd Schema; x"."Weird; DROP TABLE x" (
    "Assignment ID" int PRIMARY KEY,
    "mentor ""id""" int,
    "Last Contact" timestamptz,
    "Status" text DEFAULT 'open'
);
CREATE TABLE "Odd Schema; x"."Contact Log" ("For Assignment" int, "When" timestamp);
CREATE INDEX ON "Odd Schema; x"."Contact Log" ("For Assignment", "When");
INSERT INTO "Odd Schema; x"."Weird; DROP TABLE x" VALUES (1, 7, NULL), (2, 8, NULL);
SELECT followup.track_assignments('"Odd Schema; x"."Weird; DROP TABLE x"', 'Assignment ID', 'mentor "id"',
                                  'Last Contact', active_when => $$"Status" = 'open'$$,
                                  payload_columns => '{Status}');
SELECT followup.track_activities('"Odd Schema; x"."Contact Log"', 'When', '{For Assignment}', '{Assignment ID}');
INSERT INTO "Odd Schema; x"."Contact Log" VALUES (1, '2026-11-20 10:00'), (1, '2026-11-21 09:00'), (2, '2026-11-01 00:00');
DELETE FROM "Odd Schema; x"."Contact Log" WHERE "When" = '2026-11-21 09:00';
SET TimeZone = 'UTC';
SELECT "Assignment ID", "Last Contact" FROM "Odd Schema; x"."Weird; DROP TABLE x" ORDER BY 1;
RESET TimeZone;
SELECT count(*) AS tables_in_odd_schema FROM pg_tables WHERE schemaname = 'Odd Schema; x';
