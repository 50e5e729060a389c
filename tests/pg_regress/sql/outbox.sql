-- The outbox consumer protocol (README, "Consuming the outbox"): claim with leases, ack, fail with
-- backoff, dead letters, requeue; a stale lease can neither ack nor fail.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_followup CASCADE;
CREATE EXTENSION pg_followup;
RESET client_min_messages;

-- Five pending messages, as a run would have enqueued them.
INSERT INTO followup.outbox (run_id, assignment_id, cycle_start, kind, sequence, recipient_role, recipient_id,
                             days_since_contact)
SELECT 1, g::text, date '2026-11-01', 'reminder', 1, 'mentor', 'm' || g, 30 FROM generate_series(1, 5) g;

-- claim hands out the oldest visible messages under one lease
SELECT message_id, status, attempts, claimed_by, lease_id IS NOT NULL AS leased,
       visible_at - clock_timestamp() BETWEEN interval '4 minutes 58 seconds' AND interval '5 minutes' AS lease_ends_in_5_minutes
  FROM followup.claim('consumer-a', 2);
SELECT count(DISTINCT lease_id) AS leases FROM followup.outbox WHERE status = 'claimed';
SELECT lease_id AS lease_a FROM followup.outbox WHERE claimed_by = 'consumer-a' LIMIT 1 \gset
-- a second consumer gets the next ones, never the same
SELECT message_id, claimed_by FROM followup.claim('consumer-b', 2);
SELECT lease_id AS lease_b FROM followup.outbox WHERE claimed_by = 'consumer-b' LIMIT 1 \gset

-- ack under the lease: listed messages only, then the rest; acking again does nothing
SELECT followup.ack(:'lease_a', ARRAY[1]::bigint[]) AS acked;
SELECT followup.ack(:'lease_a') AS acked;
SELECT followup.ack(:'lease_a') AS acked_again;
-- another consumer's lease cannot ack or fail my messages
SELECT followup.ack(:'lease_b', ARRAY[5]::bigint[]) AS acked_by_wrong_lease;
SELECT message_id, status, delivered_at IS NOT NULL AS delivered FROM followup.outbox ORDER BY message_id;

-- fail: back to pending after an exponential backoff, the error recorded
SELECT followup.fail(:'lease_b', 3, 'HTTP 500 from webhook') AS outcome;
SELECT message_id, status, attempts, last_error, lease_id IS NULL AS lease_cleared,
       round(extract(epoch FROM visible_at - now())) AS retry_in_seconds
  FROM followup.outbox WHERE message_id = 3;
-- the old lease is spent for that message
SELECT followup.fail(:'lease_b', 3, 'again') AS outcome;
SELECT followup.ack(:'lease_b', ARRAY[3]::bigint[]) AS acked;
-- an explicit retry_in wins over the backoff
SELECT followup.fail(:'lease_b', 4, 'rate limited', retry_in => '10 minutes') AS outcome;
SELECT message_id, round(extract(epoch FROM visible_at - now())) AS retry_in_seconds FROM followup.outbox WHERE message_id = 4;

-- the backoff grows with each attempt, up to an hour; dead after max_attempts
SET followup.max_attempts = 4;
UPDATE followup.outbox SET visible_at = now() - interval '1 second' WHERE message_id = 3;
SELECT lease_id AS l FROM followup.claim('consumer-c', 1) \gset
SELECT followup.fail(:'l', 3, 'HTTP 502') AS outcome;
SELECT attempts, round(extract(epoch FROM visible_at - now())) AS retry_in_seconds FROM followup.outbox WHERE message_id = 3;
UPDATE followup.outbox SET visible_at = now() - interval '1 second' WHERE message_id = 3;
SELECT lease_id AS l FROM followup.claim('consumer-c', 1) \gset
SELECT followup.fail(:'l', 3, 'HTTP 503') AS outcome;
SELECT attempts, round(extract(epoch FROM visible_at - now())) AS retry_in_seconds FROM followup.outbox WHERE message_id = 3;
UPDATE followup.outbox SET visible_at = now() - interval '1 second' WHERE message_id = 3;
SELECT lease_id AS l FROM followup.claim('consumer-c', 1) \gset
SELECT followup.fail(:'l', 3, 'HTTP 504') AS outcome;
SELECT message_id, status, attempts, last_error FROM followup.outbox WHERE message_id = 3;
-- a dead message is not claimed
UPDATE followup.outbox SET visible_at = now() - interval '1 second' WHERE message_id IN (3, 4);
SELECT message_id FROM followup.claim('consumer-c', 10);
RESET followup.max_attempts;

-- an expired lease makes the message claimable again: attempts + 1, new lease,
-- and the first consumer's lease no longer acks it (no double delivery)
SELECT lease_id AS stale FROM followup.outbox WHERE message_id = 5 \gset
UPDATE followup.outbox SET visible_at = now() - interval '1 second' WHERE message_id = 5;
SELECT message_id, attempts, claimed_by, lease_id <> :'stale' AS new_lease FROM followup.claim('consumer-d', 10);
SELECT followup.ack(:'stale', ARRAY[5]::bigint[]) AS stale_ack;
SELECT followup.fail(:'stale', 5, 'late failure') AS stale_fail;
SELECT status, claimed_by FROM followup.outbox WHERE message_id = 5;

-- a lease that expires as often as attempts allow sends the message dead
SET followup.max_attempts = 2;
UPDATE followup.outbox SET visible_at = now() - interval '1 second' WHERE message_id = 5;
SELECT count(*) AS claimed FROM followup.claim('consumer-e', 10);
SELECT status, attempts, last_error FROM followup.outbox WHERE message_id = 5;
RESET followup.max_attempts;

-- requeue_dead: listed ones, then all
SELECT followup.requeue_dead(ARRAY[5]::bigint[]) AS requeued;
SELECT followup.requeue_dead() AS requeued;
SELECT followup.requeue_dead() AS requeued_again;
SELECT message_id, status, attempts, last_error FROM followup.outbox WHERE message_id IN (3, 5) ORDER BY 1;

-- release hands messages back without counting the attempt
SELECT min(lease_id::text) AS l FROM followup.claim('consumer-g', 2) \gset
SELECT message_id, attempts FROM followup.outbox WHERE lease_id = :'l' ORDER BY 1;
SELECT followup.release(:'l') AS released;
SELECT message_id, status, attempts, lease_id IS NULL AS lease_cleared, visible_at <= clock_timestamp() AS visible_now
  FROM followup.outbox WHERE message_id IN (3, 5) ORDER BY 1;
SELECT followup.release(:'l') AS released_again;

-- acking a whole lease works from its lease record, and without it
SELECT min(lease_id::text) AS l FROM followup.claim('consumer-h', 1) \gset
DELETE FROM followup.outbox_leases WHERE lease_id = :'l';
SELECT followup.ack(:'l') AS acked_without_lease_record;

-- the backoff stays at the one-hour cap however many attempts there were
SET followup.max_attempts = 1000;
UPDATE followup.outbox SET attempts = 499, visible_at = now() - interval '1 second' WHERE message_id = 5;
SELECT min(lease_id::text) AS l FROM followup.claim('consumer-i', 1) \gset
SELECT followup.fail(:'l', 5, 'still failing') AS outcome;
SELECT attempts, round(extract(epoch FROM visible_at - clock_timestamp()) / 60) AS retry_in_minutes
  FROM followup.outbox WHERE message_id = 5;
RESET followup.max_attempts;

-- bad input is refused with a SQLSTATE and changes nothing
-- pg_regress feeds psql on stdin, so paths are relative to the repository root
\i tests/pg_regress/helpers/try.sql
SELECT count(*) FILTER (WHERE status = 'pending') AS pending_before FROM followup.outbox;
SELECT try($$SELECT * FROM followup.claim(NULL)$$);
SELECT try($$SELECT * FROM followup.claim('')$$);
SELECT try($$SELECT * FROM followup.claim('x', 0)$$);
SELECT try($$SELECT * FROM followup.claim('x', 10001)$$);
SELECT try($$SELECT * FROM followup.claim('x', 10, '-1 minute')$$);
SELECT try($$SELECT * FROM followup.claim('x', 10, '0')$$);
SELECT try($$SELECT followup.ack(NULL)$$);
SELECT try($$SELECT followup.release(NULL)$$);
SELECT try($$SELECT followup.fail(NULL, 1, 'x')$$);
SELECT try($$SELECT followup.fail(gen_random_uuid(), 1, 'x', retry_in => '-5 minutes')$$);
SELECT try($$SET followup.max_attempts = 0$$);
SELECT count(*) FILTER (WHERE status = 'pending') AS pending_after FROM followup.outbox;

-- claim, fail and requeue are HOT updates (no indexed column changes, room
-- left by fillfactor); only ack moves a message out of the claim index
UPDATE followup.outbox SET visible_at = now() + interval '1 day' WHERE status = 'pending';
INSERT INTO followup.outbox (assignment_id, cycle_start, kind, sequence, recipient_role, recipient_id, days_since_contact)
VALUES ('6', '2026-11-01', 'reminder', 1, 'mentor', 'm6', 30), ('7', '2026-11-01', 'reminder', 1, 'mentor', 'm7', 30);
BEGIN;
SELECT n_tup_upd AS upd0, n_tup_hot_upd AS hot0 FROM pg_stat_xact_user_tables
 WHERE relid = 'followup.outbox'::regclass \gset
SELECT min(lease_id::text) AS l FROM followup.claim('consumer-f', 2) \gset
SELECT followup.fail(:'l', 6, 'retry me', retry_in => '0') AS outcome;
SELECT followup.fail(:'l', 7, 'retry me', retry_in => '0') AS outcome;
SELECT n_tup_upd - :upd0 AS updates, n_tup_hot_upd - :hot0 AS hot_updates FROM pg_stat_xact_user_tables
 WHERE relid = 'followup.outbox'::regclass;
SELECT min(lease_id::text) AS l FROM followup.claim('consumer-f', 2) \gset
SELECT followup.ack(:'l') AS acked;
SELECT n_tup_upd - :upd0 AS updates, n_tup_hot_upd - :hot0 AS hot_updates FROM pg_stat_xact_user_tables
 WHERE relid = 'followup.outbox'::regclass;
COMMIT;

-- "Claimable" is one definition, the view followup.claimable; it reads
-- through the claim index (its predicate implies the partial index's), as
-- claims and the notifier's metric (oldest_claimable_age) read it.
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT c.message_id FROM followup.claimable AS c ORDER BY c.message_id LIMIT 1;
RESET enable_seqscan;
SELECT followup.oldest_claimable_age() >= interval '0' AS has_an_age;
