-- The day whose scheduled run (run_at $1 in time zone $2) was missed, at
-- start-up (no grace): followup._missed_day, the definition followup.health
-- shares. Returns the day and its scheduled local time (ISO).
SELECT m.day, pg_catalog.to_char(m.scheduled_at AT TIME ZONE $2, 'YYYY-MM-DD HH24:MI')
  FROM followup._missed_day(pg_catalog.now(), '0'::pg_catalog.interval, $1, $2) AS m
