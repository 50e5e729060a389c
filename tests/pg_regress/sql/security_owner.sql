-- Security (README, "Roles and privileges"): code a table owner attaches to
-- the app's tables never runs with more rights than that owner has. Every
-- attack below is made by sec_owner, an ordinary role owning the app's
-- schema, and fired by the path that used to run it as a superuser: an
-- activity written by an app role, a correction and a run by ops, explain
-- by support, a TRUNCATE by a role that may only truncate. Each attack's
-- code records current_user and session_user into app.seen and tries
-- ALTER ROLE sec_owner SUPERUSER; afterwards no role has gained anything.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_followup CASCADE;
DROP SCHEMA IF EXISTS app CASCADE;
DROP TABLE IF EXISTS public.sec_roles_before;
\i tests/pg_regress/helpers/roles.sql
SELECT FROM drop_roles(ARRAY['sec_owner', 'sec_writer', 'sec_ops', 'sec_support', 'sec_truncator']);
CREATE EXTENSION pg_followup;
RESET client_min_messages;
\i tests/pg_regress/helpers/try.sql

CREATE ROLE sec_owner LOGIN;
CREATE ROLE sec_writer LOGIN;
CREATE ROLE sec_ops LOGIN;
CREATE ROLE sec_support LOGIN;
CREATE ROLE sec_truncator LOGIN;
GRANT USAGE ON SCHEMA followup TO sec_owner, sec_writer, sec_ops, sec_support, sec_truncator;
GRANT EXECUTE ON FUNCTION followup.track_assignments(regclass, name, name, name, name, name, name, text, name[]),
                          followup.track_activities(regclass, name, name[], name[])
   TO sec_owner;
GRANT EXECUTE ON FUNCTION followup.run_now(date), followup.preview(date), followup.set_last_contact(text, date, text),
                          followup.verify(int), followup.repair(text), followup.explain(text, date),
                          followup.claim(text, int, interval), followup.claim_digest(text, int, interval)
   TO sec_ops;
GRANT EXECUTE ON FUNCTION followup.explain(text, date) TO sec_support;
CREATE SCHEMA app AUTHORIZATION sec_owner;
GRANT USAGE ON SCHEMA app TO sec_writer, sec_truncator;

-- Every role and membership now: nothing below may change them.
CREATE TABLE public.sec_roles_before AS
SELECT r.rolname, r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolbypassrls,
       (SELECT array_agg(g.rolname ORDER BY g.rolname) FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
         WHERE m.member = r.oid) AS member_of
  FROM pg_roles r;

\c - sec_owner
SET search_path = app, public;
CREATE TYPE app.org AS ENUM ('north', 'south');
CREATE TABLE assignments (id int PRIMARY KEY, mentor_id int, contact_id int, last_contact_date date,
                          status text NOT NULL DEFAULT 'active', org app.org NOT NULL DEFAULT 'north',
                          updated_by text);
INSERT INTO assignments (id, mentor_id, contact_id) SELECT g, 100 + g, 200 + g FROM generate_series(1, 6) g;
CREATE TABLE activities (mentor_id int, contact_id int, occurred_at date);
CREATE INDEX ON activities (mentor_id, contact_id, occurred_at);
GRANT INSERT, UPDATE, DELETE, SELECT ON activities TO sec_writer;
GRANT TRUNCATE ON activities TO sec_truncator;

-- What each attack leaves behind: who ran it, in whose session, and what
-- happened when it tried to become superuser.
CREATE TABLE seen (attack text, current_role_name text, session_role_name text, escalation text);
GRANT INSERT ON seen TO PUBLIC;
CREATE FUNCTION record(attack text) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    outcome text := 'not a superuser: not tried';
BEGIN
    IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
        BEGIN
            EXECUTE 'ALTER ROLE sec_owner SUPERUSER';
            outcome := 'became superuser';
        EXCEPTION WHEN OTHERS THEN
            outcome := SQLERRM;
        END;
    END IF;
    INSERT INTO app.seen VALUES (attack, current_user, session_user, outcome);
    RETURN true;
END $$;
GRANT EXECUTE ON FUNCTION record(text) TO PUBLIC;

-- 1. A trigger of the owner's on the assignments table, and one the app
--    relies on (it stamps who changed the row): both keep running, as the
--    owner.
CREATE FUNCTION pwn_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM app.record('trigger on assignments');
    NEW.updated_by := current_user;
    RETURN NEW;
END $$;
CREATE TRIGGER pwn BEFORE UPDATE ON assignments FOR EACH ROW EXECUTE FUNCTION pwn_trigger();
-- a CHECK constraint calling a function
CREATE FUNCTION pwn_check(d date) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN app.record('check constraint');
END $$;
ALTER TABLE assignments ADD CONSTRAINT pwn CHECK (pwn_check(last_contact_date));
-- a rule
CREATE RULE pwn AS ON UPDATE TO assignments DO ALSO SELECT app.record('rule');
-- a stored generated column and an index expression: IMMUTABLE functions
-- that call a volatile one
CREATE FUNCTION pwn_immutable(d date, attack text) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    PERFORM app.record(attack);
    RETURN 1;
END $$;
ALTER TABLE assignments ADD COLUMN generated int GENERATED ALWAYS AS (pwn_immutable(last_contact_date, 'generated column')) STORED;
CREATE INDEX pwn_index ON assignments (pwn_immutable(last_contact_date, 'index expression'));
-- a cast of the organization column's enum type to text
CREATE FUNCTION pwn_cast(o app.org) RETURNS text LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM app.record('cast of the organization column');
    RETURN o::name::text;
END $$;
CREATE CAST (app.org AS text) WITH FUNCTION pwn_cast(app.org);
TRUNCATE seen;

SELECT followup.track_assignments('app.assignments', 'id', 'mentor_id', 'last_contact_date',
                                  organization_column => 'org', active_when => $$status = 'active'$$);
SELECT followup.track_activities('app.activities', 'occurred_at', '{mentor_id,contact_id}');
SELECT attack, current_role_name, escalation FROM seen ORDER BY 1;
TRUNCATE seen;

-- Fired by an app role's activity insert: tracking's UPDATE runs as the
-- table's owner, so every attack runs as sec_owner and gains nothing.
\c - sec_writer
INSERT INTO app.activities VALUES (101, 201, '2026-11-20'), (102, 202, '2026-11-21');
\c - sec_owner
SET search_path = app, public;
SELECT attack, current_role_name, session_role_name, escalation FROM seen ORDER BY 1;
SELECT id, last_contact_date, updated_by FROM assignments WHERE id <= 2 ORDER BY id;
TRUNCATE seen;

-- Fired by ops: a correction, a deletion's recompute, a run and a preview.
\c - sec_ops
SELECT corrected_by, session_role, new_value FROM followup.set_last_contact('3', '2026-11-25', 'phone call');
SELECT status, error, reminders_enqueued FROM followup.run_now('2026-12-20');
SELECT count(*) AS previewed FROM followup.preview('2026-12-31');
SELECT * FROM followup.verify();
\c - sec_writer
DELETE FROM app.activities WHERE mentor_id = 102;
\c - sec_owner
SET search_path = app, public;
SELECT attack, current_role_name, session_role_name, escalation FROM seen ORDER BY 1, 3;
SELECT id, last_contact_date, updated_by FROM assignments WHERE id <= 3 ORDER BY id;
TRUNCATE seen;

-- Fired by support: explain reads the organization through the owner's cast.
\c - sec_support
SELECT followup.explain('4', '2026-12-20')->>'organization' AS organization,
       followup.explain('4', '2026-12-20')->>'verdict' AS verdict;
\c - sec_owner
SET search_path = app, public;
-- (as often as explain's statements read the column: each time as sec_owner)
SELECT DISTINCT attack, current_role_name, session_role_name, escalation FROM seen ORDER BY 1;
TRUNCATE seen;

-- A claim's still-due check reads the assignment too.
\c - sec_ops
SELECT count(*) AS claimed FROM followup.claim('sec-notifier', 10);
\c - sec_owner
SET search_path = app, public;
SELECT DISTINCT attack, current_role_name, escalation FROM seen ORDER BY 1;
TRUNCATE seen;

-- 4. A role that may only TRUNCATE the activity table prepares the temporary
--    table an earlier version noted the affected assignments in, with a
--    trigger of its own: nothing of it runs, and the last contacts are
--    recomputed all the same.
\c - sec_truncator
CREATE TEMP TABLE followup_truncated_assignments (assignment_id text);
CREATE FUNCTION pg_temp.pwn_temp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM app.record('temporary table of the truncating role');
    RETURN NEW;
END $$;
CREATE TRIGGER pwn AFTER INSERT ON pg_temp.followup_truncated_assignments
    FOR EACH ROW EXECUTE FUNCTION pg_temp.pwn_temp();
TRUNCATE app.activities;
SELECT count(*) AS noted_in_my_table FROM pg_temp.followup_truncated_assignments;
\c - sec_owner
SET search_path = app, public;
SELECT attack, current_role_name, session_role_name, escalation FROM seen ORDER BY 1;
-- 3 keeps its correction (a floor); 1 and 2 had only the truncated activities
SELECT id, last_contact_date FROM assignments WHERE id <= 3 ORDER BY id;
TRUNCATE seen;

-- 8. An activity dated infinity never becomes a last contact; runs,
--    previews and explain go on.
\c - sec_writer
INSERT INTO app.activities VALUES (105, 205, 'infinity'), (106, 206, '-infinity'), (105, 205, '2026-11-01');
\c - sec_ops
SELECT followup.explain('5', '2026-12-20')->>'last_contact' AS five_last_contact,
       followup.explain('6', '2026-12-20')->>'last_contact' AS six_last_contact;
-- and a non-finite date the app writes into the column itself counts as none
\c - sec_owner
UPDATE app.assignments SET last_contact_date = 'infinity' WHERE id = 6;
\c - sec_ops
SELECT status, error FROM followup.run_now('2026-12-21');
SELECT followup.explain('6', '2026-12-21')->>'verdict' AS six_verdict;
SELECT count(*) AS previewed FROM followup.preview('2026-12-31');

-- Nothing gained: every role and membership is as before.
\c - postgres
SELECT r.rolname, r.rolsuper, b.rolsuper AS was_super, r.member_of, b.member_of AS was_member_of
  FROM (SELECT r.rolname, r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolbypassrls,
               (SELECT array_agg(g.rolname ORDER BY g.rolname) FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
                 WHERE m.member = r.oid) AS member_of
          FROM pg_roles r) AS r
  FULL JOIN public.sec_roles_before AS b USING (rolname)
 WHERE (r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolbypassrls, r.member_of)
       IS DISTINCT FROM (b.rolsuper, b.rolcreaterole, b.rolcreatedb, b.rolbypassrls, b.member_of);
DROP TABLE public.sec_roles_before;
