-- Send windows (README, "Send windows, calendars and digests"): no message is handed out
-- outside its organization's window in the policy's zone, DST-correct. The
-- window arithmetic is pinned with fixed instants; where the real clock is in
-- play (runs, claims, fail), the policy's zone is one where it is about noon
-- now, so that a window is open or closed now whatever the hour in UTC.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_followup CASCADE;
DROP SCHEMA IF EXISTS win CASCADE;
CREATE EXTENSION pg_followup;
RESET client_min_messages;
CREATE SCHEMA win;
SET search_path = win, public;
SET TimeZone = 'UTC';
\i tests/pg_regress/helpers/try.sql

-- the opening (followup._opening, no weekdays or quiet days here: see
-- calendars.sql) from an instant, in a zone, of a window, at fixed instants
CREATE FUNCTION opening(at timestamptz, tz text, send_from time, send_until time) RETURNS timestamptz LANGUAGE sql AS $$
    SELECT followup._opening(at, NULL, tz, send_from, send_until, NULL, NULL) $$;
SELECT label, to_char(opening(at, tz, f, u) AT TIME ZONE tz, 'YYYY-MM-DD HH24:MI')
              || ' (' || to_char(opening(at, tz, f, u), 'YYYY-MM-DD HH24:MI') || ' UTC)' AS opening,
       opening(at, tz, f, u) = at AS open_at_that_instant
  FROM (VALUES
    ('Tokyo 09-18, 08:59 local: opens at 09:00 the same day', timestamptz '2026-06-15 23:59+00', 'Asia/Tokyo', time '09:00', time '18:00'),
    ('Tokyo 09-18, 09:00 local: open',                        timestamptz '2026-06-16 00:00+00', 'Asia/Tokyo', time '09:00', time '18:00'),
    ('Tokyo 09-18, 18:00 local: closed, next day 09:00',      timestamptz '2026-06-16 09:00+00', 'Asia/Tokyo', time '09:00', time '18:00'),
    ('Chicago 08-20, 03:00 UTC = 22:00 CDT: next day 08:00',  timestamptz '2026-06-16 03:00+00', 'America/Chicago', time '08:00', time '20:00'),
    ('Chicago 08-20 in winter (CST)',                         timestamptz '2026-12-16 03:00+00', 'America/Chicago', time '08:00', time '20:00'),
    ('wraps 21-02, 23:30 local: open',                        timestamptz '2026-06-15 21:30+00', 'Europe/Oslo', time '21:00', time '02:00'),
    ('wraps 21-02, 01:59 local: open',                        timestamptz '2026-06-15 23:59+00', 'Europe/Oslo', time '21:00', time '02:00'),
    ('wraps 21-02, 02:00 local: closed, opens 21:00 that day', timestamptz '2026-06-16 00:00+00', 'Europe/Oslo', time '21:00', time '02:00'),
    ('wraps 21-02, 20:59 local: opens in a minute',           timestamptz '2026-06-16 18:59+00', 'Europe/Oslo', time '21:00', time '02:00'),
    ('Oslo spring forward, opening 02:30 is in the gap: 03:30 CEST', timestamptz '2026-03-28 23:00+00', 'Europe/Oslo', time '02:30', time '06:00'),
    ('Oslo fall back, opening 02:30 repeats: the later (CET)', timestamptz '2026-10-24 23:00+00', 'Europe/Oslo', time '02:30', time '06:00'),
    ('Oslo fall back, 02:45 CEST (first time round): not yet, the window opens at the later 02:30', timestamptz '2026-10-25 00:45+00', 'Europe/Oslo', time '02:30', time '06:00'),
    ('Oslo fall back, 02:45 CET (second time round): open',   timestamptz '2026-10-25 01:45+00', 'Europe/Oslo', time '02:30', time '06:00'),
    ('no window: always open',                                timestamptz '2026-06-15 03:00+00', 'Europe/Oslo', NULL::time, NULL::time)
  ) AS c(label, at, tz, f, u);

-- policies: a zone the server does not know, one bound without the other and
-- an empty window are refused (22023) and change nothing
SELECT try($$INSERT INTO followup.policies (organization, remind_after_days, timezone) VALUES ('x', 14, 'Mars/Olympus')$$);
SELECT try($$INSERT INTO followup.policies (organization, remind_after_days, send_from) VALUES ('x', 14, '09:00')$$);
SELECT try($$INSERT INTO followup.policies (organization, remind_after_days, send_from, send_until) VALUES ('x', 14, '09:00', '09:00')$$);
SELECT try($$UPDATE followup.policies SET send_until = '17:00' WHERE organization = '*'$$);
SELECT count(*) AS policies, count(*) FILTER (WHERE send_from IS NOT NULL) AS with_window FROM followup.policies;

-- Now the real clock. `noon` is a zone where it is about 12:xx now.
SELECT format('Etc/GMT%s', to_char(-(12 - extract(hour FROM now() AT TIME ZONE 'UTC')::int), 'FMSG99')) AS noon \gset
SELECT extract(hour FROM now() AT TIME ZONE :'noon') = 12 AS noon_there;
CREATE TABLE assignments (id int PRIMARY KEY, mentor_id int, org text, last_contact_date date);
INSERT INTO assignments VALUES (1, 101, 'open-org', '2026-05-26'), (2, 102, 'closed-org', '2026-05-26'),
                               (3, 103, 'wrap-org', '2026-05-26'), (4, 104, 'no-window', '2026-05-26');
INSERT INTO followup.policies (organization, remind_after_days, repeat_every_days, timezone, send_from, send_until) VALUES
    ('open-org',   14, 7, :'noon', '10:00', '14:00'),   -- open now
    ('closed-org', 14, 7, :'noon', '15:00', '16:00'),   -- opens at 15:00 today
    ('wrap-org',   14, 7, :'noon', '21:00', '02:00');   -- opens at 21:00 today
SELECT followup.track_assignments('assignments', 'id', 'mentor_id', 'last_contact_date', organization_column => 'org');

-- preview and the run set visible_at to the window's next opening (now, where
-- it is open or there is none), and the organization of each message
SELECT assignment_id, organization,
       CASE WHEN visible_at <= now() THEN 'now'
            ELSE to_char(visible_at AT TIME ZONE :'noon', 'HH24:MI') || ' local today' END AS visible
  FROM followup.preview('2026-06-15') ORDER BY assignment_id;
SELECT status, reminders_enqueued FROM followup.run_now('2026-06-15');
SELECT assignment_id, organization,
       CASE WHEN visible_at <= now() THEN 'now'
            ELSE to_char(visible_at AT TIME ZONE :'noon', 'HH24:MI') || ' local today' END AS visible
  FROM followup.outbox ORDER BY assignment_id;

-- explain shows each organization's window as of now and when its message
-- becomes visible (the outbox row's visible_at)
SELECT a.id, jsonb_typeof(e->'window') AS window, e->'window'->>'timezone' = :'noon' AS in_its_zone,
       e->'window'->>'send_from' AS send_from, e->'window'->>'send_until' AS send_until,
       e->'window'->>'open_now' AS open_now,
       CASE WHEN (e->'window'->>'next_opening')::timestamptz <= now() THEN 'now'
            ELSE to_char((e->'window'->>'next_opening')::timestamptz AT TIME ZONE :'noon', 'HH24:MI') || ' local today'
       END AS next_opening,
       (e->'messages'->0->>'visible_at')::timestamptz = o.visible_at AS visible_at_shown
  FROM assignments AS a
  JOIN followup.outbox AS o ON o.assignment_id = a.id::text,
       LATERAL followup.explain(a.id::text, '2026-06-15') AS e
 ORDER BY a.id;

-- a claim hands out only what is visible and inside its window
SELECT assignment_id FROM followup.claim('c', 10) ORDER BY 1;
-- a message visible but outside its window (here: made visible by hand, as an
-- expired lease or a release would) is not handed out but deferred to the
-- next opening
UPDATE followup.outbox SET visible_at = now() - interval '1 minute' WHERE assignment_id = '2';
SELECT count(*) AS handed_out FROM followup.claim('c', 10);
SELECT status, to_char(visible_at AT TIME ZONE :'noon', 'HH24:MI') AS visible_local FROM followup.outbox WHERE assignment_id = '2';
-- an expired lease whose window has closed: not handed out again, it waits
-- for the opening, pending again (the expired lease is nobody's); closing
-- the open organization's window now
UPDATE followup.policies SET send_from = '15:00', send_until = '16:00' WHERE organization = 'open-org';
UPDATE followup.outbox SET visible_at = now() - interval '1 minute' WHERE assignment_id = '1';
SELECT count(*) AS handed_out FROM followup.claim('d', 10);
SELECT status, claimed_by, attempts, to_char(visible_at AT TIME ZONE :'noon', 'HH24:MI') AS visible_local
  FROM followup.outbox WHERE assignment_id = '1';
-- a backoff that ends outside the window waits for its opening: fail of the
-- unwindowed organization's message after moving it to the closed one
SELECT lease_id AS lease_4 FROM followup.outbox WHERE assignment_id = '4' \gset
UPDATE followup.outbox SET organization = 'closed-org' WHERE assignment_id = '4';
SELECT followup.fail(:'lease_4', (SELECT message_id FROM followup.outbox WHERE assignment_id = '4'), 'HTTP 503', '10 minutes');
SELECT status, to_char(visible_at AT TIME ZONE :'noon', 'HH24:MI') AS visible_local FROM followup.outbox WHERE assignment_id = '4';
-- a backoff that ends inside the window is unchanged
UPDATE followup.policies SET send_from = '10:00', send_until = '14:00' WHERE organization = 'open-org';
UPDATE followup.outbox SET organization = 'open-org', visible_at = now() - interval '1 second', status = 'pending'
 WHERE assignment_id = '4';
SELECT lease_id AS lease_4 FROM followup.claim('e', 10) WHERE assignment_id = '4' \gset
SELECT followup.fail(:'lease_4', (SELECT message_id FROM followup.outbox WHERE assignment_id = '4'), 'HTTP 503', '10 minutes');
SELECT visible_at - clock_timestamp() BETWEEN interval '9 minutes' AND interval '10 minutes' AS retried_in_10_minutes
  FROM followup.outbox WHERE assignment_id = '4';
