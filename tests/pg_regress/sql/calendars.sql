-- Calendars and the recipient's own time (README, "Send windows, calendars
-- and digests"): the weekdays a window opens on (policies.send_days), quiet
-- days per organization and for all ('*'), recipients away
-- (set_away / end_away), and superseded reminders. The arithmetic is pinned
-- with fixed instants through followup._opens_at (the organization's
-- calendar, as the run, claims and fail use it); where the real clock is in
-- play (claims, set_away, explain), the zone is one where it is about noon
-- now and every expectation is computed from the same clock.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_followup CASCADE;
DROP SCHEMA IF EXISTS cal CASCADE;
CREATE EXTENSION pg_followup;
RESET client_min_messages;
CREATE SCHEMA cal;
SET search_path = cal, public;
SET TimeZone = 'UTC';
\i tests/pg_regress/helpers/try.sql

-- 1. The arithmetic, at fixed instants. 2026-06-12 is a Friday; Oslo is
-- UTC+2 in summer. `opens(org, at)` prints the local time and the instant.
CREATE FUNCTION opens(org text, at timestamptz) RETURNS text LANGUAGE sql AS $$
    SELECT to_char(o AT TIME ZONE 'Europe/Oslo', 'Dy YYYY-MM-DD HH24:MI') || ' (' || to_char(o, 'HH24:MI') || ' UTC)'
      FROM followup._opens_at(org, at) AS o $$;
INSERT INTO followup.policies (organization, remind_after_days, repeat_every_days, timezone, send_from, send_until, send_days)
VALUES ('weekdays', 14, 7, 'Europe/Oslo', '09:00', '17:00', '{1,2,3,4,5}'),
       ('evenings', 14, 7, 'Europe/Oslo', '21:00', '02:00', '{1,2,3,4,5}'),
       ('all-day',  14, 7, 'Europe/Oslo', NULL, NULL, NULL),
       ('nights',   14, 7, 'Europe/Oslo', '21:00', '02:00', NULL);
SELECT label, opens(org, at) AS opens_at
  FROM (VALUES
    ('Mon-Fri 09-17, Friday 19:00: Monday at the opening',       'weekdays', timestamptz '2026-06-12 17:00+00'),
    ('Mon-Fri 09-17, Saturday noon: Monday',                     'weekdays', timestamptz '2026-06-13 10:00+00'),
    ('Mon-Fri 09-17, Monday 10:00: now',                         'weekdays', timestamptz '2026-06-15 08:00+00'),
    ('Mon-Fri 21-02, Friday 23:30: open (Friday''s opening)',    'evenings', timestamptz '2026-06-12 21:30+00'),
    ('Mon-Fri 21-02, Saturday 01:00: open (Friday''s, wrapped)', 'evenings', timestamptz '2026-06-12 23:00+00'),
    ('Mon-Fri 21-02, Saturday 03:00: Monday 21:00',              'evenings', timestamptz '2026-06-13 01:00+00'),
    ('Mon-Fri 21-02, Monday 01:00 is Sunday''s: Monday 21:00',   'evenings', timestamptz '2026-06-14 23:00+00')
  ) AS c(label, org, at);

-- quiet days: the organization's own and '*' (every organization's)
INSERT INTO followup.quiet_days VALUES ('weekdays', '2026-06-15', 'staff day'),
                                       ('*', '2026-06-16', 'national holiday'),
                                       ('weekdays', '2026-06-17', 'second staff day'),
                                       ('nights', '2026-06-13', 'midsummer');
SELECT label, opens(org, at) AS opens_at
  FROM (VALUES
    ('Friday 19:00, Monday quiet, Tuesday quiet for all, Wednesday quiet: Thursday', 'weekdays', timestamptz '2026-06-12 17:00+00'),
    ('Tuesday is quiet for every organization: all-day opens Wednesday 00:00',       'all-day',  timestamptz '2026-06-16 10:00+00'),
    ('an organization without a row of its own: ''*''''s quiet day too',             'no-row',   timestamptz '2026-06-16 10:00+00'),
    ('no organization: ''*''''s quiet day',                                           NULL,       timestamptz '2026-06-16 10:00+00'),
    ('21-02, Friday 23:30: open',                                                    'nights',   timestamptz '2026-06-12 21:30+00'),
    ('21-02, Saturday 00:30 is quiet, wrapped window or not: Sunday 00:00',          'nights',   timestamptz '2026-06-12 22:30+00')
  ) AS c(label, org, at);

-- a quiet day on a daylight-saving change: Oslo springs forward on Sunday
-- 2026-03-29 (a 23-hour day) and falls back on Sunday 2026-10-25 (25 hours);
-- the next opening is local midnight after it, in the right offset
INSERT INTO followup.quiet_days VALUES ('all-day', '2026-03-29', 'spring'), ('all-day', '2026-10-25', 'autumn');
SELECT label, opens(org, at) AS opens_at
  FROM (VALUES
    ('quiet 23-hour day: Monday 00:00 CEST',        'all-day', timestamptz '2026-03-29 10:00+00'),
    ('the evening before it: open',                 'all-day', timestamptz '2026-03-28 22:30+00'),
    ('quiet 25-hour day, 23:30 CET: Monday 00:00',  'all-day', timestamptz '2026-10-25 22:30+00'),
    ('quiet 25-hour day, 02:30 CEST: Monday 00:00', 'all-day', timestamptz '2026-10-25 00:30+00')
  ) AS c(label, org, at);

-- a recipient away: not before the day after the absence (through
-- followup._opening's not_before, the same call a claim makes)
SELECT to_char(followup._opening('2026-06-12 17:00+00', date '2026-06-18' + 1, 'Europe/Oslo', '09:00', '17:00',
                                 '{1,2,3,4,5}', NULL) AT TIME ZONE 'Europe/Oslo', 'Dy YYYY-MM-DD HH24:MI')
       AS away_through_thursday_opens;

-- bad calendars are refused with 22023 (policies) or 23514 (quiet days) and
-- change nothing
SELECT try($$UPDATE followup.policies SET send_days = '{}' WHERE organization = 'weekdays'$$);
SELECT try($$UPDATE followup.policies SET send_days = '{0,1}' WHERE organization = 'weekdays'$$);
SELECT try($$UPDATE followup.policies SET send_days = '{1,8}' WHERE organization = 'weekdays'$$);
SELECT try($$UPDATE followup.policies SET send_days = '{1,1}' WHERE organization = 'weekdays'$$);
SELECT try($$UPDATE followup.policies SET send_days = '{1,NULL}' WHERE organization = 'weekdays'$$);
SELECT try($$INSERT INTO followup.quiet_days VALUES ('weekdays', '2026-06-20', '  ')$$);
SELECT try($$INSERT INTO followup.quiet_days VALUES ('weekdays', 'infinity', 'forever')$$);
SELECT try($$INSERT INTO followup.quiet_days VALUES ('weekdays', '2026-06-15', 'twice')$$);
SELECT organization, send_days FROM followup.policies ORDER BY organization;
SELECT count(*) AS quiet_days FROM followup.quiet_days;
-- and every edit of the calendars is audited
SELECT action, subject, count(*) FROM followup.audit_log GROUP BY 1, 2 ORDER BY 1, 2;

-- 2. The real clock: claims, set_away / end_away, fail, explain. `noon` is a
-- zone where it is about 12:xx now; followup.timezone too, so that today is
-- the same day there for every function.
SELECT format('Etc/GMT%s', to_char(-(12 - extract(hour FROM now() AT TIME ZONE 'UTC')::int), 'FMSG99')) AS noon \gset
SET followup.timezone = :'noon';
SELECT followup._today() AS today \gset
SELECT extract(hour FROM now() AT TIME ZONE :'noon') = 12 AS noon_there,
       followup._today() = (now() AT TIME ZONE :'noon')::date AS today_is_local;
TRUNCATE followup.quiet_days;
DELETE FROM followup.policies WHERE organization <> '*';
INSERT INTO followup.policies (organization, remind_after_days, repeat_every_days, timezone, send_from, send_until)
VALUES ('open-org', 14, 7, :'noon', '10:00', '14:00');
-- `local(t)`: an instant as the day after today it falls on and its local time
CREATE FUNCTION local(t timestamptz) RETURNS text LANGUAGE sql AS $$
    SELECT CASE WHEN t <= now() THEN 'now'
                ELSE 'today+' || ((t AT TIME ZONE current_setting('followup.timezone'))::date - followup._today())
                     || ' ' || to_char(t AT TIME ZONE current_setting('followup.timezone'), 'HH24:MI') END $$;

CREATE TABLE assignments (id int PRIMARY KEY, mentor_id int, org text, last_contact_date date);
-- 1, 2: mentor 101; 3: mentor 102; 4: mentor 103 (for explain); 6: an
-- organization without a policy of its own, quiet today. Contacted
-- 2026-05-26, so a run as of 2026-06-15 wants one reminder each.
INSERT INTO assignments VALUES (1, 101, 'open-org', '2026-05-26'), (2, 101, 'open-org', '2026-05-26'),
                               (3, 102, 'open-org', '2026-05-26'), (4, 103, 'open-org', '2026-05-26'),
                               (6, 106, 'quiet-org', '2026-05-26');
INSERT INTO followup.quiet_days VALUES ('quiet-org', :'today', 'closed today');
SELECT followup.track_assignments('assignments', 'id', 'mentor_id', 'last_contact_date', organization_column => 'org');
CREATE TABLE previewed AS SELECT assignment_id, visible_at FROM followup.preview('2026-06-15');
SELECT status, reminders_enqueued FROM followup.run_now('2026-06-15');
-- the run made them visible at their organization's opening from now: now
-- where the window is open, tomorrow 00:00 where today is quiet ('*''s
-- policy has no window), as preview says
SELECT assignment_id, local(visible_at) FROM followup.outbox ORDER BY assignment_id;
SELECT count(*) AS previewed_otherwise FROM previewed AS p
  JOIN followup.outbox AS o USING (assignment_id) WHERE local(p.visible_at) <> local(o.visible_at);
DELETE FROM followup.quiet_days;

-- set_away: bad input is refused with its SQLSTATE and changes nothing
SELECT try(format($$SELECT followup.set_away('mentor', '101', %L, %L, NULL)$$, :'today', :'today'));
SELECT try(format($$SELECT followup.set_away(NULL, '101', %L, %L, 'x')$$, :'today', :'today'));
SELECT try(format($$SELECT followup.set_away('mentor', '101', %L, %L, '  ')$$, :'today', :'today'));
SELECT regexp_replace(try(format($$SELECT followup.set_away('mentor', '101', %L, %L, 'x')$$, :'today', :'today'::date - 1)),
                      '\d{4}-\d{2}-\d{2}', 'YYYY-MM-DD', 'g') AS until_before_from;
SELECT regexp_replace(try(format($$SELECT followup.set_away('mentor', '101', %L, %L, 'x')$$, :'today'::date - 5, :'today'::date - 1)),
                      '\d{4}-\d{2}-\d{2}', 'YYYY-MM-DD', 'g') AS until_before_today;
SELECT try(format($$SELECT followup.set_away('mentor', '101', %L, 'infinity', 'x')$$, :'today'));
SELECT try(format($$SELECT followup.set_away('mentee', '101', %L, %L, 'x')$$, :'today', :'today'));
SELECT try($$SELECT followup.end_away('mentor', NULL)$$);
SELECT count(*) AS absences FROM followup.away;
SELECT count(*) AS moved FROM followup.outbox WHERE visible_at > now();

-- mentor 101 is away today through the day after tomorrow: their messages
-- are held at once, until the first opening after the absence
SELECT recipient_role, recipient_id, from_day = :'today'::date AS from_today, until_day - :'today'::date AS days,
       reason, set_by, ended_at IS NULL AS open
  FROM followup.set_away('mentor', '101', :'today', (:'today'::date + 2), 'two weeks of hiking, in short');
SELECT assignment_id, local(visible_at) FROM followup.outbox ORDER BY assignment_id;
-- a claim hands out the others only
SELECT assignment_id FROM followup.claim('c', 10) ORDER BY 1;
-- made visible by hand (as an expired lease or a release would), they are
-- still not handed out, by a claim or a digest: deferred again
UPDATE followup.outbox SET visible_at = now() - interval '1 second' WHERE recipient_id = '101';
SELECT count(*) AS handed_out FROM followup.claim('c', 10);
UPDATE followup.outbox SET visible_at = now() - interval '1 second' WHERE recipient_id = '101';
SELECT count(*) AS digests FROM followup.claim_digest('d', 10);
SELECT assignment_id, status, local(visible_at) FROM followup.outbox WHERE recipient_id = '101' ORDER BY 1;
-- explain names the gate, with the absence's last day
SELECT e->'messages'->0->'held_by'->>'gate' AS gate,
       (e->'messages'->0->'held_by'->>'until')::date - :'today'::date AS until_today_plus,
       local((e->'messages'->0->'held_by'->>'visible_from')::timestamptz) AS visible_from
  FROM followup.explain('1', '2026-06-15') AS e;
-- during the absence the mentor logs contact for 1 (written as the app
-- would); once the absence is over (its days moved to the past, as time
-- would), 1 is withdrawn as no longer due and 2 handed out
UPDATE assignments SET last_contact_date = :'today' WHERE id = 1;
UPDATE followup.away SET from_day = :'today'::date - 5, until_day = :'today'::date - 3 WHERE recipient_id = '101';
UPDATE followup.outbox SET visible_at = now() - interval '1 second' WHERE recipient_id = '101';
SELECT assignment_id FROM followup.claim('c', 10) ORDER BY 1;
SELECT assignment_id, status, cancel_reason FROM followup.outbox WHERE recipient_id = '101' ORDER BY 1;

-- end_away: mentor 103 away from today for a week, then back early: the
-- held message is visible from the next opening (now, the window is open).
-- (4 was handed out above: its consumer releases it first.)
SELECT followup.release(lease_id, ARRAY[message_id]) AS released FROM followup.outbox WHERE assignment_id = '4';
SELECT (followup.set_away('mentor', '103', :'today', (:'today'::date + 7), 'conference')).away_id IS NOT NULL AS away;
SELECT local(visible_at) FROM followup.outbox WHERE assignment_id = '4';
SELECT followup.end_away('mentor', '103') AS ended, followup.end_away('mentor', '103') AS ended_again;
SELECT local(visible_at) FROM followup.outbox WHERE assignment_id = '4';
SELECT recipient_id, ended_at IS NOT NULL AS ended, ended_by FROM followup.away ORDER BY away_id;
-- an absence that has not begun holds nothing yet
SELECT (followup.set_away('mentor', '103', (:'today'::date + 3), (:'today'::date + 5), 'later')).away_id IS NOT NULL AS away;
SELECT local(visible_at) FROM followup.outbox WHERE assignment_id = '4';

-- a quiet day today: explain names it, a claim defers to tomorrow's opening
INSERT INTO followup.quiet_days VALUES ('open-org', :'today', 'closed today');
SELECT e->'window'->>'quiet_today' AS quiet_today, e->'window'->>'open_now' AS open_now,
       e->'messages'->0->'held_by'->>'gate' AS gate,
       local((e->'messages'->0->'held_by'->>'visible_from')::timestamptz) AS visible_from
  FROM followup.explain('4', '2026-06-15') AS e;
SELECT count(*) AS handed_out FROM followup.claim('c', 10);
SELECT local(visible_at) FROM followup.outbox WHERE assignment_id = '4';

-- a fail whose backoff ends on a quiet day waits for the next opening: 3 was
-- handed out above; today is quiet for its organization now
SELECT followup.fail(lease_id, message_id, 'HTTP 503', '10 minutes') FROM followup.outbox WHERE assignment_id = '3';
SELECT status, local(visible_at) FROM followup.outbox WHERE assignment_id = '3';

-- a closed window: not today's weekday (send_days), explain says window_closed
DELETE FROM followup.quiet_days;
UPDATE followup.policies
   SET send_days = ARRAY[extract(isodow FROM :'today'::date + 1)::smallint]
 WHERE organization = 'open-org';
UPDATE followup.outbox SET visible_at = now() - interval '1 second' WHERE assignment_id = '4';
SELECT e->'window'->>'open_now' AS open_now,
       e->'window'->'send_days' = jsonb_build_array(extract(isodow FROM :'today'::date + 1)::int) AS send_days_shown,
       e->'messages'->0->'held_by'->>'gate' AS gate,
       local((e->'messages'->0->'held_by'->>'visible_from')::timestamptz) AS visible_from
  FROM followup.explain('4', '2026-06-15') AS e;
SELECT count(*) AS handed_out FROM followup.claim('c', 10);
SELECT local(visible_at) FROM followup.outbox WHERE assignment_id = '4';

-- 3. Superseded: an assignment contacted 2026-05-01 gets reminders 1, 2 and
-- 3 from runs on 05-15, 05-22 and 05-29 (the default policy: 14 days, then
-- every 7) while nothing claims them; a claim hands out the newest only and
-- withdraws the others.
UPDATE followup.policies SET send_days = NULL WHERE organization = 'open-org';
INSERT INTO assignments VALUES (5, 105, 'open-org', '2026-05-01');
SELECT string_agg(r.reminders_enqueued::text, ',' ORDER BY d) AS enqueued
  FROM unnest(ARRAY[date '2026-05-15', '2026-05-22', '2026-05-29']) AS d,
       LATERAL followup.run_now(d) AS r;
UPDATE followup.outbox SET visible_at = now() - interval '1 second' WHERE assignment_id = '5';
SELECT (m->>'sequence')::int AS sequence, m->'held_by'->>'gate' AS gate
  FROM followup.explain('5', '2026-05-29') AS x, jsonb_array_elements(x->'messages') AS m
 ORDER BY 1;
SELECT assignment_id, sequence FROM followup.claim('c', 10) ORDER BY 1, 2;
SELECT sequence, status, cancel_reason FROM followup.outbox WHERE assignment_id = '5' ORDER BY sequence;
