-- The console's three group roles and their grants (README, "Console").
--
-- Run once, as a superuser, in the database that has pg_followup:
--     psql -d app -v ON_ERROR_STOP=1 -f console/roles.sql
-- It needs pg_followup 0.4.0 or later. Safe to run again (after an upgrade of
-- pg_followup, say: it grants what the new version adds). Giving a person
-- access is then one statement:
--     CREATE ROLE ann LOGIN PASSWORD '...' IN ROLE followup_support;
-- and taking it away: DROP ROLE ann (or REVOKE followup_support FROM ann).
--
-- Each group inherits the one below it (a person's role inherits its group's
-- privileges: roles are INHERIT unless created NOINHERIT):
--   followup_viewer   read: health, runs, alerts, the outbox, the audit tables,
--                     policies, quiet days, absences; explain, verify
--   followup_support  viewer + correct a last contact, snooze, unsnooze,
--                     set_away / end_away (a recipient's absence)
--   followup_admin    support + run now, cancel, requeue dead messages, repair,
--                     resolve alerts, edit policies and quiet days
-- The console itself holds no privilege: it logs each person in as themselves.

\set ON_ERROR_STOP on

DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['followup_viewer', 'followup_support', 'followup_admin'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN INHERIT', r);
        END IF;
    END LOOP;
END
$$;

COMMENT ON ROLE followup_viewer IS 'pg_followup console: reads health, runs, alerts, outbox, audit, policies; explain, verify';
COMMENT ON ROLE followup_support IS 'pg_followup console: viewer + set_last_contact, snooze, unsnooze, set_away, end_away';
COMMENT ON ROLE followup_admin IS 'pg_followup console: everything (run now, cancel, requeue, repair, alerts, policies, quiet days)';

GRANT followup_viewer TO followup_support;
GRANT followup_support TO followup_admin;

-- viewer
GRANT USAGE ON SCHEMA followup TO followup_viewer;
GRANT SELECT ON followup.health, followup.runs, followup.alerts, followup.outbox, followup.policies,
                followup.contact_corrections, followup.snoozes, followup.repairs, followup.audit_log
   TO followup_viewer;
GRANT EXECUTE ON FUNCTION followup.explain(text, date), followup.verify(int),
                          followup.oldest_claimable_age()
   TO followup_viewer;

-- support
GRANT EXECUTE ON FUNCTION followup.set_last_contact(text, date, text), followup.snooze(text, date, text),
                          followup.unsnooze(text)
   TO followup_support;

-- admin
GRANT EXECUTE ON FUNCTION followup.run_now(date), followup.preview(date), followup.cancel(bigint[], text),
                          followup.requeue_dead(bigint[]), followup.requeue_dead(bigint[], text),
                          followup.repair(text), followup.resolve_alert(bigint)
   TO followup_admin;
GRANT INSERT, UPDATE, DELETE ON followup.policies TO followup_admin;
GRANT UPDATE (resolved_at) ON followup.alerts TO followup_admin;

-- calendars: everyone reads them; support (and so admin) records absences,
-- admins edit quiet days like the policies
GRANT SELECT ON followup.quiet_days, followup.away TO followup_viewer;
GRANT EXECUTE ON FUNCTION followup.set_away(followup.recipient_role, text, date, date, text),
                          followup.end_away(followup.recipient_role, text)
   TO followup_support;
GRANT INSERT, UPDATE, DELETE ON followup.quiet_days TO followup_admin;
