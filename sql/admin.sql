-- What ops and support do to one assignment or to drift: correct its last
-- contact, snooze and unsnooze it, explain it, verify and repair the last
-- contacts. Implemented in src/admin.rs, src/explain.rs and src/repair.rs.

CREATE FUNCTION followup._set_last_contact(assignment_id text, contact_date date, reason text) RETURNS bigint
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', '_set_last_contact_wrapper';

CREATE FUNCTION followup.set_last_contact(assignment_id text, contact_date date, reason text)
RETURNS followup.contact_corrections
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    new_correction_id bigint;
    audit followup.contact_corrections;
BEGIN
    new_correction_id := followup._set_last_contact(assignment_id, contact_date, reason);
    SELECT * INTO audit FROM followup.contact_corrections AS c WHERE c.correction_id = new_correction_id;
    RETURN audit;
END
$$;
COMMENT ON FUNCTION followup.set_last_contact(text, date, text) IS
    'Sets an assignment''s last contact to contact_date and records who, when, from where and why.';

CREATE FUNCTION followup._require_assignment(assignment_id text) RETURNS void
LANGUAGE c STABLE
AS 'MODULE_PATHNAME', '_require_assignment_wrapper';

CREATE FUNCTION followup._today() RETURNS date
LANGUAGE c STABLE
AS 'MODULE_PATHNAME', '_today_wrapper';

-- While the snooze is open (not ended, until on or after the day of a run or
-- claim) no run enqueues for the assignment and a claim withdraws its
-- messages; its pending messages are withdrawn at once.
CREATE FUNCTION followup.snooze(assignment_id text, until date, reason text)
RETURNS followup.snoozes
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    today date := followup._today();
    created followup.snoozes;
BEGIN
    IF snooze.assignment_id IS NULL OR snooze.until IS NULL OR snooze.reason IS NULL THEN
        RAISE EXCEPTION 'assignment_id, until and reason must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF btrim(snooze.reason) = '' THEN
        RAISE EXCEPTION 'reason must say why the assignment is snoozed' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF snooze.until < today THEN
        RAISE EXCEPTION 'until (%) is before today (% in followup.timezone)',
                        to_char(snooze.until, 'YYYY-MM-DD'), to_char(today, 'YYYY-MM-DD')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM followup._require_assignment(snooze.assignment_id);
    INSERT INTO followup.snoozes (assignment_id, until, reason)
    VALUES (snooze.assignment_id, snooze.until, btrim(snooze.reason))
    RETURNING * INTO created;
    UPDATE followup.outbox AS o
       SET status = 'cancelled', cancelled_at = clock_timestamp(), cancel_reason = 'snoozed'
     WHERE o.assignment_id = snooze.assignment_id
       AND o.status = 'pending' AND o.delivered_at IS NULL AND o.cancelled_at IS NULL;
    RETURN created;
END
$$;
COMMENT ON FUNCTION followup.snooze(text, date, text) IS
    'Snoozes an assignment until a date (no run enqueues for it, its pending messages are withdrawn); audited in followup.snoozes.';

CREATE FUNCTION followup.unsnooze(assignment_id text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ended bigint;
BEGIN
    IF unsnooze.assignment_id IS NULL THEN
        RAISE EXCEPTION 'assignment_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM followup._require_assignment(unsnooze.assignment_id);
    UPDATE followup.snoozes AS s
       SET ended_at = now(), ended_by = followup._acting_role()
     WHERE s.assignment_id = unsnooze.assignment_id AND s.ended_at IS NULL AND s.until >= followup._today();
    GET DIAGNOSTICS ended = ROW_COUNT;
    IF ended > 0 THEN
        INSERT INTO followup.audit_log (action, subject, details)
        VALUES ('unsnooze', unsnooze.assignment_id, jsonb_build_object('snoozes_ended', ended));
    END IF;
    RETURN ended;
END
$$;
COMMENT ON FUNCTION followup.unsnooze(text) IS 'Ends the assignment''s open snoozes; returns how many.';

CREATE FUNCTION followup._explain(assignment_id text, as_of date) RETURNS jsonb
LANGUAGE c STABLE
AS 'MODULE_PATHNAME', '_explain_wrapper';

CREATE FUNCTION followup.explain(assignment_id text, as_of date DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET jit = off
AS $$ SELECT followup._explain(assignment_id, as_of) $$;
COMMENT ON FUNCTION followup.explain(text, date) IS
    'Why an assignment gets (or does not get) a reminder as of a date: a jsonb document with a verdict.';

-- Drift (src/repair.rs): assignments whose stored last contact is not what the
-- tracking triggers keep.
CREATE FUNCTION followup._verify(max_rows int) RETURNS TABLE (assignment_id text, stored text, expected text)
LANGUAGE c STABLE
AS 'MODULE_PATHNAME', '_verify_wrapper';

CREATE FUNCTION followup.verify(max_rows int DEFAULT 1000)
RETURNS TABLE (assignment_id text, stored text, expected text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET jit = off
AS $$ SELECT * FROM followup._verify(max_rows) $$;
COMMENT ON FUNCTION followup.verify(int) IS
    'Assignments whose stored last contact differs from the latest tracked activity (floored by the latest correction); read-only.';

CREATE FUNCTION followup._repair(reason text) RETURNS bigint
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', '_repair_wrapper';

CREATE FUNCTION followup.repair(reason text)
RETURNS bigint
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET jit = off
AS $$ SELECT followup._repair(reason) $$;
COMMENT ON FUNCTION followup.repair(text) IS
    'Sets every drifted assignment to what tracking keeps, audited in followup.repairs; returns how many.';
