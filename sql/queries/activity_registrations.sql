-- The registered activity tables that still exist, as
-- followup.track_activities stored them.
SELECT relation::pg_catalog.oid, occurred_column::pg_catalog.text, match_columns::pg_catalog.text[],
       assignment_columns::pg_catalog.text[]
  FROM followup.activity_tables
 WHERE relation::pg_catalog.oid IN (SELECT oid FROM pg_catalog.pg_class)
 ORDER BY relation::pg_catalog.oid
