-- A long_run alert (once per run: followup._raise_alert) for every run
-- running longer than followup.alert_after ($1 minutes). Operators are
-- pg_catalog's, whatever the search path (the scheduler runs this); an
-- OPERATOR(…) binds like any other operator, hence the parentheses.
SELECT followup._raise_alert('long_run', run_id,
       pg_catalog.format('run %s has been running for %s (since %s), longer than followup.alert_after (%s min)',
                         run_id, pg_catalog.date_trunc('second', pg_catalog.now() OPERATOR(pg_catalog.-) started_at),
                         started_at, $1))
  FROM followup.runs
 WHERE status OPERATOR(pg_catalog.=) 'running'::followup.run_status
   AND started_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.make_interval(mins => $1))
