-- The outbox consumer protocol.
--
--   claim    hands out up to max_messages visible messages under a new lease
--            (FOR UPDATE SKIP LOCKED: concurrent consumers never get the same
--            message); an expired lease makes a message claimable again.
--   ack      marks messages of the caller's lease delivered.
--   fail     records a failed delivery: back to pending after an exponential
--            backoff, or dead after followup.max_attempts.
--   requeue_dead  gives dead messages a fresh start.
--   cancel   withdraws pending or claimed messages by hand (an admin).
--   claim_digest  claims whole recipients: one row per recipient with all of
--            its messages, under one lease (ack, fail, release as for claim).
--   release  hands claimed messages back without counting
--            an attempt, e.g. when a consumer shuts down mid-batch.
--
-- Times are clock_timestamp(): a lease is as long as asked even when the
-- caller's transaction started long ago.
--
-- ack and fail act only under the lease that currently holds the message: once
-- another consumer has re-claimed it (new lease_id), the old lease matches
-- nothing. A late ack whose lease expired but was not yet re-claimed is still
-- accepted: nobody else has the message, and refusing would only cause a
-- duplicate delivery.
--
-- Backoff for fail without retry_in: 30 s * 2^(attempts - 1), at most 1 hour.

CREATE FUNCTION followup._max_attempts() RETURNS int
LANGUAGE c STABLE
AS 'MODULE_PATHNAME', '_max_attempts_wrapper';

-- Which messages a consumer may take (README, "Consuming the outbox"): not
-- delivered, not withdrawn, pending or claimed under a lease that ran out,
-- and visible. The one definition: claims, digests and the notifier's
-- metrics read it, and the partial indexes outbox_undelivered and
-- outbox_undelivered_by_recipient (sql/schema.sql) hold exactly the rows of
-- its first two conditions, so it reads through them.
CREATE VIEW followup.claimable AS
SELECT o.*
  FROM followup.outbox AS o
 WHERE o.delivered_at IS NULL AND o.cancelled_at IS NULL
   AND o.status IN ('pending', 'claimed')
   AND o.visible_at <= clock_timestamp();
COMMENT ON VIEW followup.claimable IS 'Messages a consumer may take now (claim and claim_digest pick from these).';

-- For a consumer's metrics: how long the oldest claimable message has
-- waited since it was enqueued (zero when there is none), through the claim
-- index.
CREATE FUNCTION followup.oldest_claimable_age() RETURNS interval
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce((SELECT clock_timestamp() - c.enqueued_at FROM followup.claimable AS c
                      ORDER BY c.message_id LIMIT 1), interval '0')
$$;
COMMENT ON FUNCTION followup.oldest_claimable_age() IS
    'How long the oldest claimable message has waited since it was enqueued (0 when none): for a consumer''s metrics.';

-- One claim (src/outbox.rs): picks, checks each message is still due, withdraws
-- those that are not, hands out the rest under lease_id; returns their ids.
CREATE FUNCTION followup._claim(consumer text, max_messages int, lease interval, lease_id uuid) RETURNS bigint[]
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', '_claim_wrapper';

CREATE FUNCTION followup.claim(consumer text, max_messages int DEFAULT 100, lease interval DEFAULT '5 minutes')
RETURNS SETOF followup.outbox
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    claimed bigint[];
BEGIN
    IF consumer IS NULL OR btrim(consumer) = '' THEN
        RAISE EXCEPTION 'consumer must name the claiming consumer' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF max_messages IS NULL OR max_messages < 1 OR max_messages > 10000 THEN
        RAISE EXCEPTION 'max_messages must be between 1 and 10000, not %', max_messages
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF lease IS NULL OR lease <= interval '0' OR lease > interval '1 day' THEN
        RAISE EXCEPTION 'lease must be positive and at most 1 day, not %', lease
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- forget leases that ended an hour ago (a few per call)
    DELETE FROM followup.outbox_leases
     WHERE lease_id IN (SELECT l.lease_id FROM followup.outbox_leases AS l
                         WHERE l.expires_at < clock_timestamp() - interval '1 hour' LIMIT 100);
    -- one lease for the whole batch
    claimed := followup._claim(consumer, max_messages, lease, gen_random_uuid());
    RETURN QUERY SELECT * FROM followup.outbox AS o WHERE o.message_id = ANY (claimed) ORDER BY o.message_id;
END
$$;
COMMENT ON FUNCTION followup.claim(text, int, interval) IS
    'Claims up to max_messages visible, still-due messages for consumer under a new lease (FOR UPDATE SKIP LOCKED); withdraws those no longer due.';

-- The messages an ack or release means: the ids given, or all of the lease's
-- (from its outbox_leases row; once that is gone, found among the undelivered).
CREATE FUNCTION followup._lease_messages(lease uuid, message_ids bigint[]) RETURNS bigint[]
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ids bigint[] := message_ids;
BEGIN
    IF lease IS NULL THEN
        RAISE EXCEPTION 'lease_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF ids IS NULL THEN
        SELECT l.message_ids INTO ids FROM followup.outbox_leases AS l WHERE l.lease_id = lease;
    END IF;
    IF ids IS NULL THEN
        SELECT array_agg(o.message_id) INTO ids
          FROM followup.outbox AS o
         WHERE o.delivered_at IS NULL AND o.lease_id = lease AND o.status = 'claimed';
    END IF;
    RETURN coalesce(ids, '{}');
END
$$;

CREATE FUNCTION followup.ack(lease_id uuid, message_ids bigint[] DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    targets bigint[] := followup._lease_messages(ack.lease_id, ack.message_ids);
    acked bigint;
BEGIN
    UPDATE followup.outbox AS o
       SET status = 'delivered', delivered_at = clock_timestamp()
     WHERE o.message_id = ANY (targets)
       AND o.lease_id = ack.lease_id
       AND o.status = 'claimed';
    GET DIAGNOSTICS acked = ROW_COUNT;
    RETURN acked;
END
$$;
COMMENT ON FUNCTION followup.ack(uuid, bigint[]) IS
    'Marks the lease''s messages (all, or those listed) delivered; returns how many. 0 when the lease no longer holds them.';

CREATE FUNCTION followup.fail(lease_id uuid, message_id bigint, error text, retry_in interval DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    attempts_allowed int := followup._max_attempts();
    outcome followup.message_status;
BEGIN
    IF fail.lease_id IS NULL OR fail.message_id IS NULL THEN
        RAISE EXCEPTION 'lease_id and message_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF retry_in IS NOT NULL AND (retry_in < interval '0' OR retry_in > interval '1 day') THEN
        RAISE EXCEPTION 'retry_in must be between 0 and 1 day, not %', retry_in
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A message deferred longer is better cancelled (followup.cancel) or left to the backoff.';
    END IF;
    UPDATE followup.outbox AS o
       SET status = CASE WHEN o.attempts >= attempts_allowed THEN 'dead'::followup.message_status
                         ELSE 'pending' END,
           -- 2^7 * 30 s is past the 1 hour cap: the exponent stops there; a
           -- retry that falls outside the send window waits for its opening
           visible_at = followup._opens_at(o.organization, clock_timestamp() + coalesce(fail.retry_in,
                            least(interval '1 hour', interval '30 seconds' * power(2, least(o.attempts - 1, 7))))),
           last_error = coalesce(fail.error, 'unspecified error'),
           lease_id = NULL,
           claimed_by = NULL
     WHERE o.message_id = fail.message_id
       AND o.lease_id = fail.lease_id
       AND o.status = 'claimed'
    RETURNING o.status INTO outcome;
    IF outcome IS NULL THEN
        -- an admin withdrew it while this lease held it (followup.cancel)
        IF EXISTS (SELECT 1 FROM followup.outbox AS o
                    WHERE o.message_id = fail.message_id AND o.lease_id = fail.lease_id
                      AND o.status = 'cancelled') THEN
            RETURN 'cancelled';
        END IF;
        RETURN 'lease_not_current';
    END IF;
    RETURN outcome::text;
END
$$;
COMMENT ON FUNCTION followup.fail(uuid, bigint, text, interval) IS
    'Records a failed delivery under the lease: returns pending (retried after retry_in or the backoff), dead, cancelled or lease_not_current.';

-- Dead messages (all, or those listed) pending again with attempts reset,
-- audited with the acting role and, from the two-argument form, a reason.
CREATE FUNCTION followup._requeue_dead(message_ids bigint[], reason text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    requeued bigint;
    requeued_ids bigint[];
BEGIN
    WITH requeued_now AS (
        UPDATE followup.outbox AS o
           SET status = 'pending', attempts = 0, visible_at = clock_timestamp(), lease_id = NULL, claimed_by = NULL
         WHERE o.status = 'dead'
           AND (_requeue_dead.message_ids IS NULL OR o.message_id = ANY (_requeue_dead.message_ids))
        RETURNING o.message_id)
    SELECT count(*), coalesce(array_agg(r.message_id ORDER BY r.message_id), '{}')
      INTO requeued, requeued_ids FROM requeued_now AS r;
    IF requeued > 0 THEN
        INSERT INTO followup.audit_log (action, reason, details)
        VALUES ('requeue_dead', _requeue_dead.reason, jsonb_build_object('message_ids', to_jsonb(requeued_ids)));
        PERFORM pg_notify('followup_outbox', json_build_object('requeued', requeued)::text);
    END IF;
    RETURN requeued;
END
$$;

CREATE FUNCTION followup.requeue_dead(message_ids bigint[] DEFAULT NULL)
RETURNS bigint
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT followup._requeue_dead(message_ids, NULL) $$;
COMMENT ON FUNCTION followup.requeue_dead(bigint[]) IS
    'Makes dead messages (all, or those listed) pending again with attempts reset; returns how many.';

CREATE FUNCTION followup.requeue_dead(message_ids bigint[], reason text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF requeue_dead.reason IS NULL THEN
        RAISE EXCEPTION 'reason must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF btrim(requeue_dead.reason) = '' THEN
        RAISE EXCEPTION 'reason must say why the messages are requeued' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN followup._requeue_dead(requeue_dead.message_ids, btrim(requeue_dead.reason));
END
$$;
COMMENT ON FUNCTION followup.requeue_dead(bigint[], text) IS
    'Makes dead messages (all, or those listed) pending again with attempts reset, recording why; returns how many.';

CREATE FUNCTION followup.release(lease_id uuid, message_ids bigint[] DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    targets bigint[] := followup._lease_messages(release.lease_id, release.message_ids);
    released bigint;
BEGIN
    UPDATE followup.outbox AS o
       SET status = 'pending', attempts = greatest(o.attempts - 1, 0), visible_at = clock_timestamp(),
           lease_id = NULL, claimed_by = NULL
     WHERE o.message_id = ANY (targets)
       AND o.lease_id = release.lease_id
       AND o.status = 'claimed';
    GET DIAGNOSTICS released = ROW_COUNT;
    IF released > 0 THEN
        PERFORM pg_notify('followup_outbox', json_build_object('released', released)::text);
    END IF;
    RETURN released;
END
$$;
COMMENT ON FUNCTION followup.release(uuid, bigint[]) IS
    'Hands the lease''s messages (all, or those listed) back undelivered, without counting the attempt; returns how many.';

-- Withdraws messages by hand: pending ones, and claimed ones (which stay with
-- their lease: its ack then counts 0 for them, fail answers 'cancelled').
CREATE FUNCTION followup.cancel(message_ids bigint[], reason text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    withdrawn bigint;
    withdrawn_ids bigint[];
BEGIN
    IF cancel.message_ids IS NULL OR cancel.reason IS NULL THEN
        RAISE EXCEPTION 'message_ids and reason must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF btrim(cancel.reason) = '' THEN
        RAISE EXCEPTION 'reason must say why the messages are withdrawn' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    WITH withdrawn_now AS (
        UPDATE followup.outbox AS o
           SET status = 'cancelled', cancelled_at = clock_timestamp(), cancel_reason = 'manual: ' || btrim(cancel.reason)
         WHERE o.message_id = ANY (cancel.message_ids)
           AND o.delivered_at IS NULL AND o.cancelled_at IS NULL
           AND o.status IN ('pending', 'claimed')
        RETURNING o.message_id)
    SELECT count(*), coalesce(array_agg(w.message_id ORDER BY w.message_id), '{}')
      INTO withdrawn, withdrawn_ids FROM withdrawn_now AS w;
    IF withdrawn > 0 THEN
        INSERT INTO followup.audit_log (action, reason, details)
        VALUES ('cancel', btrim(cancel.reason), jsonb_build_object('message_ids', to_jsonb(withdrawn_ids)));
    END IF;
    RETURN withdrawn;
END
$$;
COMMENT ON FUNCTION followup.cancel(bigint[], text) IS
    'Withdraws pending or claimed messages by hand (status cancelled, cancel_reason ''manual: <reason>''); returns how many.';

-- One digest (src/outbox.rs): up to max_recipients recipients, in the order of
-- their oldest claimable message, each locked against other digests, with all
-- their claimable still-due messages under lease_id; returns the message ids.
CREATE FUNCTION followup._claim_digest(consumer text, max_recipients int, lease interval, lease_id uuid) RETURNS bigint[]
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', '_claim_digest_wrapper';

CREATE FUNCTION followup.claim_digest(consumer text, max_recipients int DEFAULT 50, lease interval DEFAULT '5 minutes')
RETURNS TABLE (lease_id uuid, recipient_role followup.recipient_role, recipient_id text,
               message_ids bigint[], messages jsonb)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    new_lease uuid := gen_random_uuid();  -- one lease for every recipient of the call
    claimed bigint[];
BEGIN
    IF consumer IS NULL OR btrim(consumer) = '' THEN
        RAISE EXCEPTION 'consumer must name the claiming consumer' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF max_recipients IS NULL OR max_recipients < 1 OR max_recipients > 1000 THEN
        RAISE EXCEPTION 'max_recipients must be between 1 and 1000, not %', max_recipients
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF lease IS NULL OR lease <= interval '0' OR lease > interval '1 day' THEN
        RAISE EXCEPTION 'lease must be positive and at most 1 day, not %', lease
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    DELETE FROM followup.outbox_leases
     WHERE lease_id IN (SELECT l.lease_id FROM followup.outbox_leases AS l
                         WHERE l.expires_at < clock_timestamp() - interval '1 hour' LIMIT 100);
    claimed := followup._claim_digest(consumer, max_recipients, lease, new_lease);
    RETURN QUERY
    SELECT new_lease, o.recipient_role, o.recipient_id, array_agg(o.message_id ORDER BY o.message_id),
           jsonb_agg(to_jsonb(o) ORDER BY o.message_id)
      FROM followup.outbox AS o
     WHERE o.message_id = ANY (claimed)
     GROUP BY o.recipient_role, o.recipient_id
     ORDER BY min(o.message_id);
END
$$;
COMMENT ON FUNCTION followup.claim_digest(text, int, interval) IS
    'Claims, under one new lease, all claimable still-due messages of up to max_recipients recipients: one row per recipient.';
