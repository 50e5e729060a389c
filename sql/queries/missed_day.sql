-- The day whose scheduled run was due last (run_at $1 in time zone $2, at or
-- before now), if that run did not happen: no successful run of the
-- scheduler's for the day (followup._day_succeeded), although an assignments
-- table was registered before it was due. Returns the day and its scheduled
-- local time (ISO).
WITH last AS (SELECT followup._last_run_at_or_before(pg_catalog.now(), $1, $2) AS instant)
SELECT (last.instant AT TIME ZONE $2)::pg_catalog.date,
       pg_catalog.to_char(last.instant AT TIME ZONE $2, 'YYYY-MM-DD HH24:MI')
  FROM last
 WHERE EXISTS (SELECT 1 FROM followup.assignment_tables WHERE registered_at OPERATOR(pg_catalog.<) last.instant)
   AND NOT followup._day_succeeded((last.instant AT TIME ZONE $2)::pg_catalog.date)
