-- Security (README, "Roles and privileges"): what registering a table lets a
-- role do. Each attack is made by the ordinary role that found it:
-- sec_owner owns the app's schema; sec_rival owns a table of its own and
-- holds the README's registration grant. Code the attacks plant records
-- current_user into app.seen; afterwards no role has gained anything.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_followup CASCADE;
DROP SCHEMA IF EXISTS app CASCADE;
DROP SCHEMA IF EXISTS rival CASCADE;
DROP SCHEMA IF EXISTS other CASCADE;
\i tests/pg_regress/helpers/roles.sql
SELECT FROM drop_roles(ARRAY['sec_owner', 'sec_rival', 'sec_other']);
CREATE EXTENSION pg_followup;
RESET client_min_messages;
\i tests/pg_regress/helpers/try.sql

CREATE ROLE sec_owner LOGIN;
CREATE ROLE sec_rival LOGIN;
CREATE ROLE sec_other LOGIN;
GRANT USAGE ON SCHEMA followup TO sec_owner, sec_rival, sec_other;
GRANT EXECUTE ON FUNCTION followup.track_assignments(regclass, name, name, name, name, name, name, text, name[]),
                          followup.track_activities(regclass, name, name[], name[]),
                          followup.untrack_activities(regclass)
   TO sec_owner, sec_rival, sec_other;
CREATE SCHEMA app AUTHORIZATION sec_owner;
CREATE SCHEMA rival AUTHORIZATION sec_rival;
CREATE SCHEMA other AUTHORIZATION sec_other;
CREATE VIEW registered AS
SELECT 'assignments' AS kind, relation::text, active_when FROM followup.assignment_tables
UNION ALL
SELECT 'activities', relation::text, NULL FROM followup.activity_tables
ORDER BY 1, 2;
GRANT SELECT ON registered TO PUBLIC;

\c - sec_owner
SET search_path = app, public;
CREATE TABLE seen (attack text, current_role_name text);
GRANT INSERT ON seen TO PUBLIC;
CREATE FUNCTION record(attack text) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    INSERT INTO app.seen VALUES (attack, current_user);
    RETURN true;
END $$;
GRANT EXECUTE ON FUNCTION record(text) TO PUBLIC;
CREATE TABLE assignments (id int PRIMARY KEY, mentor_id int, last_contact_date date, note text,
                          status text NOT NULL DEFAULT 'active');
INSERT INTO assignments (id, mentor_id, note) SELECT g, 100 + g, 'app.assignments' FROM generate_series(1, 3) g;
CREATE TABLE activities (assignment_id int, occurred_on date);
CREATE INDEX ON activities (assignment_id, occurred_on);
-- a view whose column calls a function of the owner's
CREATE FUNCTION leak() RETURNS text LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM app.record('view read through table_to_xml');
    RETURN 'x';
END $$;
CREATE VIEW pwn_view AS SELECT app.leak() AS x;
-- a domain whose check runs a volatile function of the owner's
CREATE FUNCTION domain_check(s text) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN app.record('domain check');
END $$;
CREATE DOMAIN app.active_status AS text CHECK (app.domain_check(VALUE));

-- 2. active_when admits nothing but what PostgreSQL defines, for any
--    registering role: not a relation read by name at run time ...
SELECT try($$SELECT followup.track_assignments('app.assignments', 'id', 'mentor_id', 'last_contact_date',
    active_when => $a$pg_catalog.table_to_xml('app.pwn_view'::pg_catalog.regclass, true, false, '') IS NOT NULL$a$)$$);
SELECT try($$SELECT followup.track_assignments('app.assignments', 'id', 'mentor_id', 'last_contact_date',
    active_when => $a$pg_catalog.length(pg_catalog.table_to_xml(note::pg_catalog.regclass, true, false, '')::pg_catalog.text) > 0$a$)$$);
-- ... not a domain (its check would run at every evaluation) ...
SELECT try($$SELECT followup.track_assignments('app.assignments', 'id', 'mentor_id', 'last_contact_date',
    active_when => $a$status::app.active_status = 'active'$a$)$$);
-- ... nor a function, operator or type of the owner's
CREATE FUNCTION is_active(s text) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$ SELECT s = 'active' $$;
SELECT try($$SELECT followup.track_assignments('app.assignments', 'id', 'mentor_id', 'last_contact_date',
    active_when => 'app.is_active(status)')$$);
SELECT * FROM registered;
SELECT count(*) AS attacks_that_ran FROM seen;

-- A plain expression is fine.
SELECT followup.track_assignments('app.assignments', 'id', 'mentor_id', 'last_contact_date',
                                  active_when => $$status = 'active'$$);

-- 3. Match columns compare with the built-in equality only. A user-defined
--    `=` between an int and a text column is no way to compare them ...
CREATE FUNCTION int_text_eq(a int, b text) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    PERFORM app.record('user-defined equality');
    RETURN a::text = b;
END $$;
CREATE OPERATOR app.= (LEFTARG = int, RIGHTARG = text, FUNCTION = int_text_eq);
CREATE TABLE text_activities (assignment_ref text, occurred_on date);
INSERT INTO text_activities VALUES ('1', '2026-11-01');
SELECT try($$SELECT followup.track_activities('app.text_activities', 'occurred_on', '{assignment_ref}', '{id}')$$);
-- ... and one for a domain over int is never used: the built-in int = int is
CREATE DOMAIN app.assignment_key AS int;
CREATE FUNCTION key_eq(a app.assignment_key, b app.assignment_key) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    PERFORM app.record('user-defined equality on a domain');
    RETURN a::int = b::int;
END $$;
CREATE OPERATOR app.= (LEFTARG = app.assignment_key, RIGHTARG = app.assignment_key, FUNCTION = key_eq);
CREATE TABLE keyed_activities (assignment_key app.assignment_key, occurred_on date);
CREATE INDEX ON keyed_activities (assignment_key, occurred_on);
INSERT INTO keyed_activities VALUES (2, '2026-11-02');
SET search_path = app, public;  -- app's operators first, where a caller would put them
SELECT followup.track_activities('app.keyed_activities', 'occurred_on', '{assignment_key}', '{id}');
INSERT INTO keyed_activities VALUES (2, '2026-11-03');
DELETE FROM keyed_activities WHERE occurred_on = '2026-11-03';
SELECT id, last_contact_date FROM assignments ORDER BY id;
SELECT count(*) AS attacks_that_ran FROM seen;
SELECT followup.track_activities('app.activities', 'occurred_on', '{assignment_id}', '{id}');
SELECT * FROM registered;

-- 6. Another role with the registration grant cannot replace the
--    assignments registration with a table of its own (whose rows the run
--    would scan and the notifier deliver)
\c - sec_rival
CREATE TABLE rival.fake_assignments (id int PRIMARY KEY, mentor_id int, last_contact_date date, link text);
INSERT INTO rival.fake_assignments VALUES (1, 666, '2026-01-01', 'https://phishing.example/');
SELECT try($$SELECT followup.track_assignments('rival.fake_assignments', 'id', 'mentor_id', 'last_contact_date',
                                               payload_columns => '{link}')$$);
SELECT * FROM registered;

-- 7. ... nor, owning an activity table but no right to the assignments'
--    last contact, register it to set every last contact (to 2099: no
--    reminder for anyone)
CREATE TABLE rival.silencer (assignment_id int, occurred_on date);
INSERT INTO rival.silencer SELECT g, '2099-01-01' FROM generate_series(1, 3) g;
GRANT SELECT ON rival.silencer TO sec_owner;
SELECT try($$SELECT followup.track_activities('rival.silencer', 'occurred_on', '{assignment_id}', '{id}')$$);
SELECT * FROM registered;
\c - sec_owner
SELECT id, last_contact_date FROM app.assignments ORDER BY id;

-- With UPDATE on the last-contact column (the right to set it directly),
-- another owner may register its activity table, once the assignments'
-- owner can read it.
GRANT USAGE ON SCHEMA app TO sec_other;
GRANT UPDATE (last_contact_date) ON app.assignments TO sec_other;
\c - sec_other
CREATE TABLE other.visits (assignment_id int, visited_on date);
CREATE INDEX ON other.visits (assignment_id, visited_on);
INSERT INTO other.visits VALUES (3, '2026-11-05');
SELECT try($$SELECT followup.track_activities('other.visits', 'visited_on', '{assignment_id}', '{id}')$$);
GRANT USAGE ON SCHEMA other TO sec_owner;
GRANT SELECT ON other.visits TO sec_owner;
SELECT followup.track_activities('other.visits', 'visited_on', '{assignment_id}', '{id}');
INSERT INTO other.visits VALUES (3, '2026-11-06');
\c - sec_owner
SELECT id, last_contact_date FROM app.assignments ORDER BY id;
SELECT * FROM registered;

-- 10. The owner of a tracked partitioned table creates and attaches
--     partitions itself, and they are tracked.
SET search_path = app, public;
CREATE TABLE calls (assignment_id int NOT NULL, called_on date NOT NULL) PARTITION BY RANGE (called_on);
CREATE TABLE calls_2026 PARTITION OF calls FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
SELECT followup.track_activities('app.calls', 'called_on', '{assignment_id}', '{id}');
CREATE TABLE calls_2027 PARTITION OF calls FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');
CREATE TABLE calls_2028 (assignment_id int NOT NULL, called_on date NOT NULL);
ALTER TABLE calls ATTACH PARTITION calls_2028 FOR VALUES FROM ('2028-01-01') TO ('2029-01-01');
INSERT INTO calls_2027 VALUES (1, '2027-02-01');
INSERT INTO calls VALUES (2, '2028-03-01');
SELECT id, last_contact_date FROM assignments ORDER BY id;
SELECT c.relname AS partition, count(*) AS tracking_triggers
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
 WHERE t.tgname LIKE 'followup_activity_%' AND c.relname LIKE 'calls\_%'
 GROUP BY 1 ORDER BY 1;

-- 11. A table owner who replaced one of our triggers with one of its own of
--     the same name breaks nobody else's DDL: an unrelated partitioned table
--     is created as usual, and a new partition of the table in question is
--     created with a WARNING (that path is then not tracked).
DROP TRIGGER followup_activity_insert ON calls_2027;
CREATE FUNCTION nothing() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE TRIGGER followup_activity_insert AFTER INSERT ON calls_2027 FOR EACH STATEMENT EXECUTE FUNCTION nothing();
\c - sec_rival
CREATE TABLE rival.events (at date NOT NULL) PARTITION BY RANGE (at);
CREATE TABLE rival.events_2026 PARTITION OF rival.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
\c - sec_owner
SET search_path = app, public;
CREATE TABLE calls_2029 PARTITION OF calls FOR VALUES FROM ('2029-01-01') TO ('2030-01-01');
INSERT INTO calls_2029 VALUES (3, '2029-01-02');
SELECT id, last_contact_date FROM assignments ORDER BY id;

-- Nothing of the attacker's ran, as anyone.
SELECT count(*) AS attacks_that_ran FROM seen;
\c - postgres
SELECT rolname, rolsuper FROM pg_roles WHERE rolname IN ('sec_owner', 'sec_rival', 'sec_other') ORDER BY 1;
