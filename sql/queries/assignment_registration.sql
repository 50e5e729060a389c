-- The registered assignments table, as followup.track_assignments stored it,
-- if the table still exists.
SELECT relation::pg_catalog.oid, id_column::pg_catalog.text, mentor_column::pg_catalog.text,
       last_contact_column::pg_catalog.text, created_column::pg_catalog.text,
       coordinator_column::pg_catalog.text, organization_column::pg_catalog.text,
       active_when, payload_columns::pg_catalog.text[]
  FROM followup.assignment_tables
 WHERE relation::pg_catalog.oid IN (SELECT oid FROM pg_catalog.pg_class)
