-- The processes holding the run lock in this database (pg_followup's
-- advisory lock $1, as pg_try_advisory_lock(bigint) takes it: the key split
-- into classid and objid, objsubid 1).
SELECT l.pid
  FROM pg_catalog.pg_locks AS l
 WHERE l.locktype = 'advisory' AND l.granted
   AND l.database = (SELECT d.oid FROM pg_catalog.pg_database AS d WHERE d.datname = pg_catalog.current_database())
   AND l.classid = ($1 >> 32)::pg_catalog.oid
   AND l.objid = ($1 & 4294967295)::pg_catalog.oid
   AND l.objsubid = 1
