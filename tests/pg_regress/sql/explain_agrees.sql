-- Explain says what the run does (README, "Explaining one assignment"): for
-- every assignment and every day, explain(a, d)->'due' is exactly what
-- preview(d) has for a (no run has enqueued anything, so preview is all that
-- is due), and next_due_on is the first later day on which preview has a
-- reminder for a that is not due on d already (a run on each day would have
-- enqueued that one: next_due_on is when a run would enqueue a new one).
-- Generated assignments: six organizations (repeats, no repeats, maximum
-- reminders, escalations, a disabled one, one on the default policy),
-- closed ones, ones never contacted, without a mentor or coordinator, and
-- snoozes ending on various days.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_followup CASCADE;
DROP SCHEMA IF EXISTS agree CASCADE;
CREATE EXTENSION pg_followup;
RESET client_min_messages;
CREATE SCHEMA agree;
SET search_path = agree, public;

CREATE TABLE assignments (id int PRIMARY KEY, mentor_id int, coordinator_id int, org text, status text,
                          created_on date NOT NULL, last_contact date);
INSERT INTO assignments
SELECT g,
       CASE WHEN g % 13 = 0 THEN NULL ELSE 1000 + g END,
       CASE WHEN g % 5 = 0 THEN NULL ELSE 2000 + g % 7 END,
       'org-' || (g % 6),
       CASE WHEN g % 11 = 0 THEN 'closed' ELSE 'active' END,
       date '2026-01-01' + (g * 3) % 40,
       CASE WHEN g % 4 = 0 THEN NULL ELSE date '2026-01-05' + (g * 7) % 50 END
  FROM generate_series(1, 60) AS g;
INSERT INTO followup.policies (organization, remind_after_days, repeat_every_days, escalate_after_days,
                               max_reminders, enabled)
VALUES ('org-0', 14, 7, NULL, NULL, true),
       ('org-1', 10, 5, 21, 3, true),
       ('org-2', 7, NULL, 10, NULL, true),
       ('org-3', 14, 7, 28, NULL, false),
       ('org-4', 20, 10, 30, 2, true);
-- org-5 has no row: the default '*' (14 / 7) applies, with an escalation
UPDATE followup.policies SET escalate_after_days = 35 WHERE organization = '*';
SELECT followup.track_assignments('assignments', 'id', 'mentor_id', 'last_contact',
                                  created_column => 'created_on', coordinator_column => 'coordinator_id',
                                  organization_column => 'org', active_when => $$status = 'active'$$);
-- snoozes ending on various days, one ended early, one for good
INSERT INTO followup.snoozes (assignment_id, until, reason, ended_at)
SELECT g::text, date '2026-02-01' + (g * 5) % 45, 'away', NULL::timestamptz FROM generate_series(3, 60, 9) AS g
UNION ALL SELECT '7', '2026-03-20', 'ended early', '2026-01-01'
UNION ALL SELECT '8', '2099-01-01', 'for good', NULL;

-- every day's preview over three months, and explain of every assignment on
-- every day of the first five weeks
CREATE TABLE previewed AS
SELECT d::date AS day, p.assignment_id, p.kind::text, p.sequence, p.recipient_role::text, p.recipient_id
  FROM generate_series(date '2026-02-01', date '2026-04-30', interval '1 day') AS d,
       LATERAL followup.preview(d::date) AS p;
CREATE TABLE explained AS
SELECT d::date AS day, a.id::text AS assignment_id, followup.explain(a.id::text, d::date) AS e
  FROM generate_series(date '2026-02-01', date '2026-03-07', interval '1 day') AS d, assignments AS a;
CREATE TABLE explained_due AS
SELECT x.day, x.assignment_id, d.kind, d.sequence, d.recipient_role, d.recipient_id
  FROM explained AS x,
       jsonb_to_recordset(x.e->'due') AS d(kind text, sequence int, recipient_role text, recipient_id text);

-- what is checked covers every verdict, both kinds and enough messages
SELECT e->>'verdict' AS verdict, count(*) AS assignment_days FROM explained GROUP BY 1 ORDER BY 1;
SELECT kind, count(*) AS messages_due FROM previewed WHERE day <= '2026-03-07' GROUP BY 1 ORDER BY 1;

-- 1. explain's due is preview's, to the message
SELECT count(*) AS due_but_not_previewed FROM (
    SELECT * FROM explained_due
    EXCEPT ALL
    SELECT * FROM previewed WHERE day <= '2026-03-07') AS x;
SELECT count(*) AS previewed_but_not_due FROM (
    SELECT * FROM previewed WHERE day <= '2026-03-07'
    EXCEPT ALL
    SELECT * FROM explained_due) AS x;

-- 2. next_due_on is the first later day with a new reminder in preview (a
-- next_due_on past the previewed months, such as the end of a long snooze,
-- counts as none there)
CREATE TABLE next_due AS
SELECT x.day, x.assignment_id, nullif(least((x.e->>'next_due_on')::date, '2026-05-01'), '2026-05-01') AS explained,
       (SELECT min(p.day) FROM previewed AS p
         WHERE p.assignment_id = x.assignment_id AND p.kind = 'reminder' AND p.day > x.day
           AND NOT EXISTS (SELECT 1 FROM explained_due AS d
                            WHERE d.day = x.day AND d.assignment_id = x.assignment_id
                              AND d.kind = 'reminder' AND d.sequence = p.sequence)) AS previewed
  FROM explained AS x;
SELECT count(*) AS next_due_on_disagreements FROM next_due WHERE explained IS DISTINCT FROM previewed;
SELECT count(*) FILTER (WHERE explained IS NOT NULL) AS with_a_next_due_on,
       count(*) FILTER (WHERE explained IS NULL) AS without
  FROM next_due;
-- (the first few disagreements, if any, to look at)
SELECT * FROM next_due WHERE explained IS DISTINCT FROM previewed ORDER BY assignment_id::int, day LIMIT 5;
