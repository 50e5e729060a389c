-- The outbox consumer protocol (SPEC §8).
--
--   claim    hands out up to max_messages visible messages under a new lease
--            (FOR UPDATE SKIP LOCKED: concurrent consumers never get the same
--            message); an expired lease makes a message claimable again.
--   ack      marks messages of the caller's lease delivered.
--   fail     records a failed delivery: back to pending after an exponential
--            backoff, or dead after followup.max_attempts.
--   requeue_dead  gives dead messages a fresh start.
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

CREATE FUNCTION followup.claim(consumer text, max_messages int DEFAULT 100, lease interval DEFAULT '5 minutes')
RETURNS SETOF followup.outbox
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    attempts_allowed int := followup._max_attempts();
    new_lease uuid := gen_random_uuid();  -- one lease for the whole batch
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
    RETURN QUERY
    WITH picked AS (
        SELECT o.message_id,
               -- a lease that expired as often as attempts allow belongs to a
               -- message that keeps killing its consumer: it goes dead, not out again
               o.status = 'claimed' AND o.attempts >= attempts_allowed AS exhausted
          FROM followup.outbox AS o
         WHERE o.delivered_at IS NULL
           AND o.status IN ('pending', 'claimed')
           AND o.visible_at <= now()
         ORDER BY o.message_id
         LIMIT max_messages
           FOR UPDATE SKIP LOCKED),
    handed_out AS (
        UPDATE followup.outbox AS o
           SET status = CASE WHEN picked.exhausted THEN 'dead'::followup.message_status ELSE 'claimed' END,
               attempts = CASE WHEN picked.exhausted THEN o.attempts ELSE o.attempts + 1 END,
               last_error = CASE WHEN picked.exhausted
                                 THEN format('lease expired %s times without ack or fail', o.attempts)
                                 ELSE o.last_error END,
               lease_id = CASE WHEN picked.exhausted THEN NULL ELSE new_lease END,
               claimed_by = CASE WHEN picked.exhausted THEN NULL ELSE consumer END,
               visible_at = now() + lease
          FROM picked
         WHERE o.message_id = picked.message_id
        RETURNING o.*)
    SELECT * FROM handed_out WHERE handed_out.status = 'claimed' ORDER BY handed_out.message_id;
END
$$;
COMMENT ON FUNCTION followup.claim(text, int, interval) IS
    'Claims up to max_messages visible messages for consumer under a new lease (FOR UPDATE SKIP LOCKED).';

CREATE FUNCTION followup.ack(lease_id uuid, message_ids bigint[] DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    acked bigint;
BEGIN
    IF lease_id IS NULL THEN
        RAISE EXCEPTION 'lease_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    UPDATE followup.outbox AS o
       SET status = 'delivered', delivered_at = now(), last_error = NULL
     WHERE o.lease_id = ack.lease_id
       AND o.status = 'claimed'
       AND (ack.message_ids IS NULL OR o.message_id = ANY (ack.message_ids));
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
    IF retry_in IS NOT NULL AND retry_in < interval '0' THEN
        RAISE EXCEPTION 'retry_in must not be negative, not %', retry_in USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE followup.outbox AS o
       SET status = CASE WHEN o.attempts >= attempts_allowed THEN 'dead'::followup.message_status
                         ELSE 'pending' END,
           visible_at = now() + coalesce(fail.retry_in,
                                         least(interval '1 hour', interval '30 seconds' * power(2, o.attempts - 1))),
           last_error = coalesce(fail.error, 'unspecified error'),
           lease_id = NULL,
           claimed_by = NULL
     WHERE o.message_id = fail.message_id
       AND o.lease_id = fail.lease_id
       AND o.status = 'claimed'
    RETURNING o.status INTO outcome;
    IF outcome IS NULL THEN
        RETURN 'lease_not_current';
    END IF;
    RETURN outcome::text;
END
$$;
COMMENT ON FUNCTION followup.fail(uuid, bigint, text, interval) IS
    'Records a failed delivery under the lease: returns pending (retried after retry_in or the backoff), dead, or lease_not_current.';

CREATE FUNCTION followup.requeue_dead(message_ids bigint[] DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    requeued bigint;
BEGIN
    UPDATE followup.outbox AS o
       SET status = 'pending', attempts = 0, visible_at = now(), lease_id = NULL, claimed_by = NULL
     WHERE o.status = 'dead'
       AND (requeue_dead.message_ids IS NULL OR o.message_id = ANY (requeue_dead.message_ids));
    GET DIAGNOSTICS requeued = ROW_COUNT;
    RETURN requeued;
END
$$;
COMMENT ON FUNCTION followup.requeue_dead(bigint[]) IS
    'Makes dead messages (all, or those listed) pending again with attempts reset; returns how many.';
