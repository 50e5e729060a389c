-- Registering the app's tables. Implemented in src/registration.rs.
--
-- SECURITY DEFINER so the registration tables can stay writable only by the
-- extension owner; the Rust code checks that the *calling* role owns the table
-- it registers. search_path is pinned so nothing a caller creates is resolved.

CREATE FUNCTION followup.track_assignments(
    assignments         regclass,
    id_column           name,
    mentor_column       name,
    last_contact_column name,
    created_column      name DEFAULT NULL,
    coordinator_column  name DEFAULT NULL,
    organization_column name DEFAULT NULL,
    active_when         text DEFAULT NULL,
    payload_columns     name[] DEFAULT '{}')
RETURNS void
LANGUAGE c VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'track_assignments_wrapper';
COMMENT ON FUNCTION followup.track_assignments IS
    'Registers the assignments table whose last contact pg_followup keeps and scans.';

CREATE FUNCTION followup.track_activities(
    activities         regclass,
    occurred_column    name,
    match_columns      name[],
    assignment_columns name[] DEFAULT NULL)
RETURNS void
LANGUAGE c VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'track_activities_wrapper';
COMMENT ON FUNCTION followup.track_activities IS
    'Tracks an activity table: every write to it keeps the matching assignment''s last contact true.';

CREATE FUNCTION followup.untrack_activities(activities regclass)
RETURNS void
LANGUAGE c VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'untrack_activities_wrapper';
COMMENT ON FUNCTION followup.untrack_activities IS
    'Stops tracking an activity table and removes its triggers.';

-------------------------------------------------------------------------------
-- Trigger functions put on tracked activity tables (src/triggers.rs).
-- SECURITY DEFINER so that they can read the registrations; the statements
-- on the app's tables they run, they run as the assignments table's owner
-- in a security-restricted operation (src/security.rs). The app role that
-- inserts activities needs no privilege on the assignments table or on
-- followup.*.
-------------------------------------------------------------------------------
CREATE FUNCTION followup.activity_statement_trigger() RETURNS trigger
LANGUAGE c SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'activity_statement_trigger_wrapper';

CREATE FUNCTION followup.activity_truncate_trigger() RETURNS trigger
LANGUAGE c SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'activity_truncate_trigger_wrapper';

CREATE FUNCTION followup.activity_replica_trigger() RETURNS trigger
LANGUAGE c SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'activity_replica_trigger_wrapper';

-------------------------------------------------------------------------------
-- Event triggers: partitions created, attached or detached after registration
-- get (or lose) the tracking triggers; dropped tables lose their registration.
-------------------------------------------------------------------------------
-- Makes the tracking triggers match the registrations (src/partitions.rs):
-- on the tracked tables whose partition trees hold `relids` (all of them
-- when NULL), and off every table no longer in any tree.
CREATE FUNCTION followup._sync_partition_triggers(relids oid[]) RETURNS void
LANGUAGE c VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', '_sync_partition_triggers_for_wrapper';

CREATE FUNCTION followup._on_ddl_command_end() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    touched oid[];
BEGIN
    -- pg_dump scripts run with check_function_bodies = off and bring every
    -- trigger along themselves; syncing half-way through a restore would
    -- create triggers the script is about to create.
    IF NOT current_setting('check_function_bodies')::boolean THEN
        RETURN;
    END IF;
    -- Only the tables this command names that belong to a tracked table's
    -- partition tree (a partition created or attached, a partition
    -- detached from its parent): DDL on any other table never depends on
    -- the state of ours.
    SELECT array_agg(DISTINCT cmd.objid) INTO touched
      FROM pg_event_trigger_ddl_commands() AS cmd
      JOIN pg_class AS rel ON rel.oid = cmd.objid
     WHERE cmd.classid = 'pg_class'::regclass
       AND (rel.relispartition OR rel.relkind = 'p')
       AND EXISTS (SELECT 1 FROM followup.activity_tables AS t
                    WHERE t.relation::oid IN (SELECT a.relid::oid FROM pg_partition_ancestors(cmd.objid) AS a));
    IF touched IS NOT NULL THEN
        PERFORM followup._sync_partition_triggers(touched);
    END IF;
END
$$;

CREATE FUNCTION followup._on_sql_drop() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    dropped oid[];
BEGIN
    SELECT array_agg(objid) INTO dropped
      FROM pg_event_trigger_dropped_objects()
     WHERE classid = 'pg_class'::regclass AND objsubid = 0;
    -- DROP EXTENSION drops our own tables too: nothing left to clean.
    IF dropped IS NULL OR to_regclass('followup.activity_tables') IS NULL THEN
        RETURN;
    END IF;
    DELETE FROM followup.activity_tables WHERE relation::oid = ANY (dropped);
    DELETE FROM followup.assignment_tables WHERE relation::oid = ANY (dropped);
END
$$;

CREATE EVENT TRIGGER followup_partitions ON ddl_command_end
    WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE')
    EXECUTE FUNCTION followup._on_ddl_command_end();

CREATE EVENT TRIGGER followup_dropped_tables ON sql_drop
    EXECUTE FUNCTION followup._on_sql_drop();
