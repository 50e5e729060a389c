-- Send windows: each organization's time zone and daily window (README,
-- "Send windows and digests"). The window arithmetic is here, once: the run
-- (visible_at of new messages), claims (messages whose window is closed wait
-- for its next opening), fail (a backoff that ends outside the window) and
-- explain all use these functions. They are plain SQL expressions, so the
-- planner inlines them; every name in them is schema-qualified.

-- The instant of local time `local_time` on local date `day` in zone `tz`. A
-- local time inside a spring-forward gap is the instant just after the gap
-- (02:30 in Europe/Oslo on 2026-03-29 is 03:30 CEST); one repeated by a
-- fall-back is the later of the two (standard time). The daily schedule
-- (followup._run_instant) is the same rule.
CREATE FUNCTION followup._local_instant(day date, local_time time, tz text) RETURNS timestamptz
LANGUAGE sql STABLE
AS $$ SELECT pg_catalog.timezone(tz, day OPERATOR(pg_catalog.+) local_time) $$;

-- Is instant `at` inside the daily window [send_from, send_until) in zone tz?
-- No window (NULL bounds) is always open; a window whose end is before its
-- start wraps midnight (21:00-02:00).
CREATE FUNCTION followup._in_window(at timestamptz, tz text, send_from time, send_until time) RETURNS boolean
LANGUAGE sql STABLE
AS $$
    SELECT send_from IS NULL
        OR CASE WHEN send_from OPERATOR(pg_catalog.<) send_until
                THEN pg_catalog.timezone(tz, at)::time OPERATOR(pg_catalog.>=) send_from
                     AND pg_catalog.timezone(tz, at)::time OPERATOR(pg_catalog.<) send_until
                ELSE pg_catalog.timezone(tz, at)::time OPERATOR(pg_catalog.>=) send_from
                     OR pg_catalog.timezone(tz, at)::time OPERATOR(pg_catalog.<) send_until
           END
$$;

-- The first instant at or after `at` inside the window: `at` itself, or the
-- window's next opening (send_from, local, that day or the next).
CREATE FUNCTION followup._next_opening(at timestamptz, tz text, send_from time, send_until time) RETURNS timestamptz
LANGUAGE sql STABLE
AS $$
    SELECT CASE WHEN followup._in_window(at, tz, send_from, send_until) THEN at
                ELSE followup._local_instant(
                         pg_catalog.timezone(tz, at)::date
                         OPERATOR(pg_catalog.+) CASE WHEN send_from OPERATOR(pg_catalog.<) send_until
                                                      AND pg_catalog.timezone(tz, at)::time OPERATOR(pg_catalog.>=) send_until
                                                     THEN 1 ELSE 0 END,
                         send_from, tz)
           END
$$;

-- The zone of a policy row: its own, or followup.timezone.
CREATE FUNCTION followup._policy_zone(policy_timezone text) RETURNS text
LANGUAGE sql STABLE
AS $$ SELECT coalesce(policy_timezone, pg_catalog.current_setting('followup.timezone')) $$;

-- When a message of `organization` may be handed out at the earliest, from
-- `at`: its effective policy's next opening (src/rule/policy.rs, the one
-- definition of the effective policy). fail uses it for one message; claims
-- and runs join the policies themselves the same way.
CREATE FUNCTION followup._opens_at(organization text, at timestamptz) RETURNS timestamptz
LANGUAGE c STABLE
AS 'MODULE_PATHNAME', '_opens_at_wrapper';
