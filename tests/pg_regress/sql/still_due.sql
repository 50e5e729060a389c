-- Only still-due reminders are delivered (README, "Only still-due reminders
-- are delivered"): a claim withdraws, instead of handing out, every message
-- that is no longer due at the moment of the claim: contact logged on any path
-- (an activity, set_last_contact, the app writing the column), the assignment
-- inactive or deleted, snoozed, its organization's policy disabled; and an
-- admin withdraws messages by hand with followup.cancel. All as of 2026-06-15.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_followup CASCADE;
DROP SCHEMA IF EXISTS due CASCADE;
CREATE EXTENSION pg_followup;
RESET client_min_messages;
CREATE SCHEMA due;
SET search_path = due, public;
\i tests/pg_regress/helpers/try.sql

CREATE TABLE assignments (
    id                bigint PRIMARY KEY,
    mentor_id         int,
    contact_id        int,
    org               text,
    status            text NOT NULL DEFAULT 'active',
    last_contact_date date
);
CREATE TABLE visits (mentor_id int, contact_id int, visited_at timestamptz);
-- twelve assignments, all last contacted 20 days before 2026-06-15: one
-- reminder each (the default policy: 14 days)
INSERT INTO assignments SELECT g, 100 + g, 200 + g, CASE WHEN g = 6 THEN 'closing-org' ELSE 'org' END,
                               'active', date '2026-06-15' - 20
  FROM generate_series(1, 12) g;
INSERT INTO followup.policies VALUES ('closing-org', 14, 7, NULL, NULL, true);
SELECT followup.track_assignments('assignments', 'id', 'mentor_id', 'last_contact_date',
    organization_column => 'org', active_when => $$status = 'active'$$);
SELECT followup.track_activities('visits', 'visited_at', '{mentor_id,contact_id}');
-- what a run as of 2026-06-15 enqueues, in the order of the assignments (a
-- run enqueues in whatever order its plan produces; claims go by message_id)
INSERT INTO followup.outbox (assignment_id, cycle_start, kind, sequence, recipient_role, recipient_id, days_since_contact, organization)
SELECT assignment_id, cycle_start, kind, sequence, recipient_role, recipient_id, days_since_contact, organization
  FROM followup.preview('2026-06-15') ORDER BY assignment_id::int;
SELECT count(*) AS messages FROM followup.outbox;

-- After the run, what the mentors and the app do:
-- 1: the mentor logs a visit (an activity)
INSERT INTO visits VALUES (101, 201, '2026-06-15 08:00+00');
-- 2: an admin corrects the last contact
SELECT new_value FROM followup.set_last_contact('2', '2026-06-14', 'phone call logged on paper');
-- 3: the app writes the column itself, bypassing activities
UPDATE assignments SET last_contact_date = '2026-06-13' WHERE id = 3;
-- 4: the assignment is closed; 5: it is deleted
UPDATE assignments SET status = 'closed' WHERE id = 4;
DELETE FROM assignments WHERE id = 5;
-- 6: its organization's policy is disabled
UPDATE followup.policies SET enabled = false WHERE organization = 'closing-org';
-- 7..12 still due

-- a claim of 3 withdraws what is no longer due and still hands out 3
SELECT message_id, assignment_id, status FROM followup.claim('c', 3);
SELECT assignment_id, status, cancel_reason, cancelled_at IS NOT NULL AS has_cancelled_at, attempts, lease_id IS NULL AS no_lease
  FROM followup.outbox ORDER BY message_id;
-- nothing was handed out that is not due, and a withdrawal costs no attempt
SELECT count(*) FILTER (WHERE status = 'claimed') AS claimed, count(*) FILTER (WHERE status = 'cancelled') AS withdrawn,
       count(*) FILTER (WHERE status = 'pending') AS pending
  FROM followup.outbox;
SELECT outbox_pending, outbox_cancelled_24h FROM followup.health;

-- withdrawn messages keep their idempotency key: a rerun enqueues none of them again
SELECT reminders_enqueued FROM followup.run_now('2026-06-15');

-- a claim when every visible message is withdrawn returns nothing (and stops)
UPDATE assignments SET status = 'paused' WHERE id IN (10, 11, 12);
SELECT count(*) AS handed_out FROM followup.claim('c', 10);
SELECT assignment_id, cancel_reason FROM followup.outbox WHERE assignment_id IN ('10', '11', '12') ORDER BY 1;

-- a lease that expired: the re-claim checks again (contact logged meanwhile)
SELECT lease_id AS lease_c FROM followup.outbox WHERE assignment_id = '7' \gset
UPDATE followup.outbox SET visible_at = now() - interval '1 second' WHERE assignment_id = '7';
INSERT INTO visits VALUES (107, 207, '2026-06-15 09:00+00');
SELECT count(*) AS handed_out FROM followup.claim('d', 10);
SELECT status, cancel_reason, attempts FROM followup.outbox WHERE assignment_id = '7';
-- the old lease can neither ack nor fail it
SELECT followup.ack(:'lease_c', ARRAY[(SELECT message_id FROM followup.outbox WHERE assignment_id = '7')]) AS acked;
SELECT followup.fail(:'lease_c', (SELECT message_id FROM followup.outbox WHERE assignment_id = '7'), 'x') AS fail;

-- followup.cancel by hand: a claimed message stays with its lease, whose
-- ack then counts 0 for it and whose fail says 'cancelled'
SELECT lease_id AS lease_8 FROM followup.outbox WHERE assignment_id = '8' \gset
SELECT followup.cancel(ARRAY(SELECT message_id FROM followup.outbox WHERE assignment_id IN ('8', '9')),
                       '  duplicate of a phone call  ') AS cancelled;
SELECT assignment_id, status, cancel_reason FROM followup.outbox WHERE assignment_id IN ('8', '9') ORDER BY 1;
SELECT followup.ack(:'lease_8', ARRAY[(SELECT message_id FROM followup.outbox WHERE assignment_id = '8')]) AS acked;
SELECT followup.fail(:'lease_8', (SELECT message_id FROM followup.outbox WHERE assignment_id = '8'), 'x') AS fail;
SELECT followup.release(:'lease_8') AS released;
-- cancelling again, or a delivered message, changes nothing
SELECT followup.cancel(ARRAY(SELECT message_id FROM followup.outbox WHERE assignment_id IN ('8', '9')), 'again') AS cancelled;
-- bad input is refused and changes nothing
SELECT try($$SELECT followup.cancel(NULL, 'x')$$);
SELECT try($$SELECT followup.cancel(ARRAY[1::bigint], NULL)$$);
SELECT try($$SELECT followup.cancel(ARRAY[1::bigint], '   ')$$);
SELECT count(*) FILTER (WHERE cancel_reason LIKE 'manual:%') AS manual FROM followup.outbox;

-- An outbox message for an id that is not even a valid id of the column's
-- type (bigint here) is withdrawn as for a deleted assignment, without error.
INSERT INTO followup.outbox (assignment_id, cycle_start, kind, sequence, recipient_role, recipient_id, days_since_contact)
VALUES ('not-a-number', '2026-05-26', 'reminder', 1, 'mentor', 'm', 20),
       ('99999999999999999999', '2026-05-26', 'reminder', 1, 'mentor', 'm', 20);
SELECT count(*) AS handed_out FROM followup.claim('e', 10);
SELECT assignment_id, status, cancel_reason FROM followup.outbox
 WHERE assignment_id IN ('not-a-number', '99999999999999999999') ORDER BY 1;

-- Text ids: the same check through the id column's own type.
SELECT followup.untrack_activities('visits');
CREATE TABLE text_assignments (code text PRIMARY KEY, mentor text, last_contact_date date, active boolean);
INSERT INTO text_assignments VALUES ('A-1', 'm1', '2026-05-20', true), ('A-2', 'm2', '2026-05-20', true);
SELECT followup.track_assignments('text_assignments', 'code', 'mentor', 'last_contact_date', active_when => 'active');
SELECT status, reminders_enqueued FROM followup.run_now('2026-06-15');
UPDATE text_assignments SET last_contact_date = '2026-06-15' WHERE code = 'A-2';
SELECT assignment_id FROM followup.claim('f', 10) ORDER BY 1;
SELECT assignment_id, status, cancel_reason FROM followup.outbox WHERE assignment_id LIKE 'A-%' ORDER BY 1;

-- Without a registered assignments table there is nothing to check against:
-- every visible message is handed out.
SET client_min_messages = warning;
DROP EXTENSION pg_followup CASCADE;
CREATE EXTENSION pg_followup;
RESET client_min_messages;
INSERT INTO followup.outbox (assignment_id, cycle_start, kind, sequence, recipient_role, recipient_id, days_since_contact)
VALUES ('x', '2026-05-26', 'reminder', 1, 'mentor', 'm', 20);
SELECT assignment_id, status FROM followup.claim('g', 10);
