-- Send windows and calendars: each organization's time zone, daily window,
-- weekdays and quiet days, and recipients who are away (README, "Send
-- windows, calendars and digests"). The arithmetic is here, once:
-- `followup._opening` says when a message may be handed out at the
-- earliest; the run (visible_at of new messages), claims and digests
-- (messages held back wait for it), fail (a backoff that ends when nothing
-- may be handed out), set_away / end_away and explain all ask it, with the
-- calendar src/rule/calendar.rs assembles for an organization.

-- The instant of local time `local_time` on local date `day` in zone `tz`. A
-- local time inside a spring-forward gap is the instant just after the gap
-- (02:30 in Europe/Oslo on 2026-03-29 is 03:30 CEST); one repeated by a
-- fall-back is the later of the two (standard time). The daily schedule
-- (followup._run_instant) is the same rule.
CREATE FUNCTION followup._local_instant(day date, local_time time, tz text) RETURNS timestamptz
LANGUAGE sql STABLE
AS $$ SELECT pg_catalog.timezone(tz, day OPERATOR(pg_catalog.+) local_time) $$;

-- The first instant at or after `at`, on a local day (zone `tz`) not before
-- `not_before` (NULL: any), at which a message may be handed out: inside
-- the daily window [send_from, send_until) (NULL bounds: all day; a window
-- whose end is before its start wraps midnight and belongs to the day it
-- opens on), of an opening on a weekday in `send_days` (ISO, 1 = Monday;
-- NULL: every day), on a local day that is not in `quiet` (no message is
-- handed out on a quiet day, not even in the part of the previous evening's
-- window that runs past midnight). DST-correct: every bound is a local time
-- made an instant by followup._local_instant. 'infinity' if there is none
-- (cannot happen with a valid calendar: past the last quiet day every
-- weekday comes within a week).
CREATE FUNCTION followup._opening(at timestamptz, not_before date, tz text, send_from time, send_until time,
                                  send_days smallint[], quiet date[]) RETURNS timestamptz
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    day date := timezone(tz, at)::date;
    last_day date;
    opens timestamptz;
    closes timestamptz;
    part int;
BEGIN
    IF not_before > day THEN
        day := not_before;
    END IF;
    last_day := greatest(day, (SELECT max(q) FROM unnest(quiet) AS q)) + 8;
    WHILE day <= last_day LOOP
        IF NOT coalesce(day = ANY (quiet), false) THEN
            -- the day's parts of a window, earliest first: with a window that
            -- wraps midnight, the end of the previous day's opening (part 1)
            -- and the start of its own (part 2)
            FOR part IN 1..2 LOOP
                opens := NULL;
                IF send_from IS NULL THEN
                    IF part = 1 AND (send_days IS NULL OR extract(isodow FROM day)::smallint = ANY (send_days)) THEN
                        opens := followup._local_instant(day, '00:00', tz);
                        closes := followup._local_instant(day + 1, '00:00', tz);
                    END IF;
                ELSIF send_from < send_until THEN
                    IF part = 1 AND (send_days IS NULL OR extract(isodow FROM day)::smallint = ANY (send_days)) THEN
                        opens := followup._local_instant(day, send_from, tz);
                        closes := followup._local_instant(day, send_until, tz);
                    END IF;
                ELSIF part = 1 THEN
                    IF send_days IS NULL OR extract(isodow FROM day - 1)::smallint = ANY (send_days) THEN
                        opens := followup._local_instant(day, '00:00', tz);
                        closes := followup._local_instant(day, send_until, tz);
                    END IF;
                ELSIF send_days IS NULL OR extract(isodow FROM day)::smallint = ANY (send_days) THEN
                    opens := followup._local_instant(day, send_from, tz);
                    closes := followup._local_instant(day + 1, '00:00', tz);
                END IF;
                IF opens < closes AND closes > at THEN
                    RETURN greatest(opens, at);
                END IF;
            END LOOP;
        END IF;
        day := day + 1;
    END LOOP;
    RETURN 'infinity';
END
$$;

-- The zone of a policy row: its own, or followup.timezone.
CREATE FUNCTION followup._policy_zone(policy_timezone text) RETURNS text
LANGUAGE sql STABLE
AS $$ SELECT coalesce(policy_timezone, pg_catalog.current_setting('followup.timezone')) $$;

-- When a message of `organization` may be handed out at the earliest, from
-- `at`: followup._opening with the organization's calendar
-- (src/rule/calendar.rs, the one definition of it). fail uses it for one
-- message; claims and runs join the calendars themselves the same way.
CREATE FUNCTION followup._opens_at(organization text, at timestamptz) RETURNS timestamptz
LANGUAGE c STABLE
AS 'MODULE_PATHNAME', '_opens_at_wrapper';

-- Recipients who are away (followup.set_away, followup.end_away): a
-- recipient's pending messages wait for the first opening after the
-- absence (held at once when it has begun), and those it held are visible
-- again from the next opening once it is ended (src/rule/calendar.rs).
-- Returns how many messages moved.
CREATE FUNCTION followup._place_recipient_messages(recipient_role text, recipient_id text, released_until date)
RETURNS bigint
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', '_place_recipient_messages_wrapper';

CREATE FUNCTION followup.set_away(recipient_role followup.recipient_role, recipient_id text,
                                  from_day date, until_day date, reason text)
RETURNS followup.away
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    today date := followup._today();
    created followup.away;
BEGIN
    IF set_away.recipient_role IS NULL OR set_away.recipient_id IS NULL OR set_away.from_day IS NULL
       OR set_away.until_day IS NULL OR set_away.reason IS NULL THEN
        RAISE EXCEPTION 'recipient_role, recipient_id, from_day, until_day and reason must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF btrim(set_away.reason) = '' THEN
        RAISE EXCEPTION 'reason must say why the recipient is away' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT isfinite(set_away.from_day) OR NOT isfinite(set_away.until_day) THEN
        RAISE EXCEPTION 'from_day and until_day must be dates, not infinity' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF set_away.until_day < set_away.from_day THEN
        RAISE EXCEPTION 'until_day (%) is before from_day (%)',
                        to_char(set_away.until_day, 'YYYY-MM-DD'), to_char(set_away.from_day, 'YYYY-MM-DD')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF set_away.until_day < today THEN
        RAISE EXCEPTION 'until_day (%) is before today (% in followup.timezone)',
                        to_char(set_away.until_day, 'YYYY-MM-DD'), to_char(today, 'YYYY-MM-DD')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO followup.away (recipient_role, recipient_id, from_day, until_day, reason)
    VALUES (set_away.recipient_role, set_away.recipient_id, set_away.from_day, set_away.until_day,
            btrim(set_away.reason))
    RETURNING * INTO created;
    PERFORM followup._place_recipient_messages(set_away.recipient_role::text, set_away.recipient_id, NULL);
    RETURN created;
END
$$;
COMMENT ON FUNCTION followup.set_away(followup.recipient_role, text, date, date, text) IS
    'A recipient is away from from_day through until_day: their messages wait for the first opening after it; audited in followup.away.';

CREATE FUNCTION followup.end_away(recipient_role followup.recipient_role, recipient_id text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ended bigint;
    latest_until date;
BEGIN
    IF end_away.recipient_role IS NULL OR end_away.recipient_id IS NULL THEN
        RAISE EXCEPTION 'recipient_role and recipient_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    WITH ended_now AS (
        UPDATE followup.away AS a
           SET ended_at = now(), ended_by = followup._acting_role()
         WHERE a.recipient_role = end_away.recipient_role AND a.recipient_id = end_away.recipient_id
           AND a.ended_at IS NULL AND a.until_day >= followup._today()
        RETURNING a.until_day)
    SELECT count(*), max(until_day) INTO ended, latest_until FROM ended_now;
    IF ended > 0 THEN
        PERFORM followup._place_recipient_messages(end_away.recipient_role::text, end_away.recipient_id, latest_until);
    END IF;
    RETURN ended;
END
$$;
COMMENT ON FUNCTION followup.end_away(followup.recipient_role, text) IS
    'Ends the recipient''s open absences at once (their held messages are visible from the next opening); returns how many.';
