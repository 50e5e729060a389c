-- Digests (README, "Send windows and digests"): followup.claim_digest hands
-- out, under one lease, all claimable still-due messages of up to
-- max_recipients recipients, one row per recipient, recipients in the order
-- of their oldest message. ack, fail and release work on the lease and ids.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_followup CASCADE;
DROP SCHEMA IF EXISTS dig CASCADE;
CREATE EXTENSION pg_followup;
RESET client_min_messages;
CREATE SCHEMA dig;
SET search_path = dig, public;
\i tests/pg_regress/helpers/try.sql

-- mentor 101 has five assignments, 102 has two, 103 one; coordinator 900 escalations
CREATE TABLE assignments (id int PRIMARY KEY, mentor_id int, coordinator_id int, org text, last_contact_date date);
INSERT INTO assignments VALUES
    (1, 102, 900, 'esc', '2026-05-26'), (2, 101, 900, 'org', '2026-05-26'), (3, 101, 900, 'org', '2026-05-26'),
    (4, 103, 900, 'org', '2026-05-26'), (5, 101, 900, 'org', '2026-05-26'), (6, 102, 900, 'org', '2026-05-26'),
    (7, 101, 900, 'org', '2026-05-26'), (8, 101, 900, 'org', '2026-05-26');
INSERT INTO followup.policies VALUES ('esc', 14, 7, 14, NULL, true);
SELECT followup.track_assignments('assignments', 'id', 'mentor_id', 'last_contact_date',
    coordinator_column => 'coordinator_id', organization_column => 'org');
-- the messages a run as of 2026-06-15 enqueues, in a fixed order (a run
-- enqueues in whatever order its plan produces)
INSERT INTO followup.outbox (assignment_id, cycle_start, kind, sequence, recipient_role, recipient_id, days_since_contact, organization)
SELECT assignment_id, cycle_start, kind, sequence, recipient_role, recipient_id, days_since_contact, organization
  FROM followup.preview('2026-06-15') ORDER BY assignment_id::int DESC, kind;
SELECT message_id, assignment_id, kind, recipient_role, recipient_id FROM followup.outbox ORDER BY message_id;

-- mentor 101 logged contact for assignment 8 after the run: withdrawn, not in the digest
UPDATE assignments SET last_contact_date = '2026-06-15' WHERE id = 8;

-- two recipients: the two with the oldest messages, each with all its messages
SELECT lease_id IS NOT NULL AS leased, count(*) OVER (PARTITION BY lease_id) AS rows_of_the_lease,
       recipient_role, recipient_id, message_ids, jsonb_array_length(messages) AS n,
       (SELECT array_agg((m->>'assignment_id')::int ORDER BY (m->>'message_id')::bigint)
          FROM jsonb_array_elements(messages) AS m) AS assignments_in_the_body
  FROM followup.claim_digest('d1', 2);
SELECT DISTINCT lease_id AS lease FROM followup.outbox WHERE claimed_by = 'd1' \gset
SELECT assignment_id, status, cancel_reason FROM followup.outbox WHERE assignment_id = '8';
-- the next digest gets the rest, never a message of the first
SELECT recipient_role, recipient_id, message_ids FROM followup.claim_digest('d2', 10);
SELECT count(*) FILTER (WHERE claimed_by = 'd1') AS d1, count(*) FILTER (WHERE claimed_by = 'd2') AS d2,
       count(DISTINCT claimed_by) FILTER (WHERE recipient_id = '101') AS consumers_of_101
  FROM followup.outbox WHERE status = 'claimed';
SELECT count(*) AS nothing_left FROM followup.claim_digest('d3', 10);

-- ack, fail and release on the digest's lease and ids
SELECT followup.ack(:'lease', (SELECT array_agg(message_id) FROM followup.outbox
                                 WHERE claimed_by = 'd1' AND recipient_id = '102')) AS acked;
SELECT followup.fail(:'lease', (SELECT min(message_id) FROM followup.outbox WHERE claimed_by = 'd1'), 'HTTP 500') AS failed;
SELECT followup.release(:'lease') AS released;
SELECT status, count(*) FROM followup.outbox GROUP BY status ORDER BY status;

-- A mentor with 15 overdue contacts gets one notification, not 15: mentor
-- 104's fifteen reminders come back as one digest row, acked with one call
INSERT INTO assignments SELECT g, 104, 900, 'org', '2026-05-26' FROM generate_series(101, 115) g;
INSERT INTO followup.outbox (assignment_id, cycle_start, kind, sequence, recipient_role, recipient_id, days_since_contact, organization)
SELECT assignment_id, cycle_start, kind, sequence, recipient_role, recipient_id, days_since_contact, organization
  FROM followup.preview('2026-06-15') WHERE recipient_id = '104' ORDER BY assignment_id::int;
CREATE TEMP TABLE digest_of_104 AS
SELECT * FROM followup.claim_digest('d15', 10) WHERE recipient_id = '104';
SELECT count(*) AS rows_for_104, sum(cardinality(message_ids)) AS messages, sum(jsonb_array_length(messages)) AS in_the_body
  FROM digest_of_104;
SELECT followup.ack(lease_id, message_ids) AS acked_with_one_call FROM digest_of_104;
SELECT status, count(*) FROM followup.outbox WHERE recipient_id = '104' GROUP BY status;

-- bad input is refused
SELECT try($$SELECT * FROM followup.claim_digest(NULL)$$);
SELECT try($$SELECT * FROM followup.claim_digest('x', 0)$$);
SELECT try($$SELECT * FROM followup.claim_digest('x', 1001)$$);
SELECT try($$SELECT * FROM followup.claim_digest('x', 5, '0 seconds')$$);
