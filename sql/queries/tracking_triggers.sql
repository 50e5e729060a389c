-- The tracking triggers that exist now: table, trigger name, tgenabled, and
-- whether it is a clone of a partitioned parent's trigger.
SELECT pg_catalog.format('%I.%I', n.nspname, c.relname), tg.tgname::pg_catalog.text, tg.tgenabled::pg_catalog.text,
       tg.tgparentid <> 0
  FROM pg_catalog.pg_trigger AS tg
  JOIN pg_catalog.pg_class AS c ON c.oid = tg.tgrelid
  JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
 WHERE tg.tgfoid IN ('followup.activity_statement_trigger()'::pg_catalog.regprocedure,
                     'followup.activity_replica_trigger()'::pg_catalog.regprocedure,
                     -- (missing before the update to 0.3.0 while the new library is installed)
                     pg_catalog.to_regprocedure('followup.activity_truncate_trigger()'))
