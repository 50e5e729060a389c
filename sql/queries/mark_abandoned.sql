-- Runs left `running` by a process that no longer holds the run lock ($1,
-- its sub-id) died before they finished (crash, kill, restart): mark them
-- abandoned and raise a run_abandoned alert for each. The holders' query
-- (run_lock_holders.sql) is put in where the braces say. Operators are
-- pg_catalog's, whatever the search path (the scheduler runs this).
WITH gone AS (
    UPDATE followup.runs
       SET status = 'abandoned', finished_at = pg_catalog.clock_timestamp(),
           error = pg_catalog.format('the process running it (pid %s) ended before it finished', backend_pid)
     WHERE status OPERATOR(pg_catalog.=) 'running'::followup.run_status
       AND NOT EXISTS (SELECT 1 FROM ({run_lock_holders}) AS holders
                        WHERE holders.pid OPERATOR(pg_catalog.=) runs.backend_pid)
    RETURNING run_id, error)
SELECT followup._raise_alert('run_abandoned', run_id, pg_catalog.format('run %s was abandoned: %s', run_id, error))
  FROM gone
