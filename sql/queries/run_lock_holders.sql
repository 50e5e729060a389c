-- The processes holding the lock of sub-id $1 of the pg_followup extension
-- in this database (src/security.rs: 1 the run lock, 2 the scheduler's): an
-- object lock on the extension, which no SQL function can take.
SELECT l.pid
  FROM pg_catalog.pg_locks AS l
 WHERE l.locktype OPERATOR(pg_catalog.=) 'object' AND l.granted
   AND l.database OPERATOR(pg_catalog.=) (SELECT d.oid FROM pg_catalog.pg_database AS d
                                            WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())
   AND l.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_extension'::pg_catalog.regclass
   AND l.objid OPERATOR(pg_catalog.=) (SELECT e.oid FROM pg_catalog.pg_extension AS e
                                         WHERE e.extname OPERATOR(pg_catalog.=) 'pg_followup')
   AND l.objsubid OPERATOR(pg_catalog.=) $1
