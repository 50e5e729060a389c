-- A long_run alert (once per run: followup._raise_alert) for every run
-- running longer than followup.alert_after ($1 minutes).
SELECT followup._raise_alert('long_run', run_id,
       pg_catalog.format('run %s has been running for %s (since %s), longer than followup.alert_after (%s min)',
                         run_id, pg_catalog.date_trunc('second', pg_catalog.now() - started_at), started_at, $1))
  FROM followup.runs
 WHERE status = 'running' AND started_at < pg_catalog.now() - pg_catalog.make_interval(mins => $1)
