-- The reminder run (README, "Policies and the reminder rule" and "Running").
-- Implemented in src/run/.

-- Records an alert once per (kind, run), tells LISTENers on followup_alerts
-- and writes a WARNING to the server log. Returns false if it was raised before.
CREATE FUNCTION followup._raise_alert(alert_kind followup.alert_kind, alert_run_id bigint, alert_message text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    new_alert_id bigint;
BEGIN
    -- an alert that belongs to no run (missed_schedule with catch_up off) is
    -- raised once per message while it is open
    IF alert_run_id IS NULL AND EXISTS (SELECT 1 FROM followup.alerts a
                                         WHERE a.kind = alert_kind AND a.run_id IS NULL
                                           AND a.message = alert_message AND a.resolved_at IS NULL) THEN
        RETURN false;
    END IF;
    INSERT INTO followup.alerts (kind, run_id, message)
    VALUES (alert_kind, alert_run_id, alert_message)
    ON CONFLICT (kind, run_id) WHERE run_id IS NOT NULL DO NOTHING
    RETURNING alert_id INTO new_alert_id;
    IF new_alert_id IS NULL THEN
        RETURN false;
    END IF;
    -- ids, not text: any connected role can LISTEN, and a message can hold
    -- an app's values (followup.alerts, readable by granted roles, has it)
    PERFORM pg_notify('followup_alerts', json_build_object(
        'alert_id', new_alert_id, 'kind', alert_kind, 'run_id', alert_run_id)::text);
    RAISE WARNING 'pg_followup alert %: %', alert_kind, alert_message;
    RETURN true;
END
$$;

CREATE FUNCTION followup._run_now(as_of date) RETURNS bigint
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', '_run_now_wrapper';

-- The rows of followup.preview (src/run/preview.rs): the run's query, as the
-- assignments table's owner, without writing.
CREATE FUNCTION followup._preview(as_of date) RETURNS SETOF followup.outbox
LANGUAGE c STABLE
AS 'MODULE_PATHNAME', '_preview_wrapper';

-- Counters bumped by the run's INSERT as rows pass (see src/run/log.rs).
CREATE FUNCTION followup._tally_scanned(assignment_id text) RETURNS text
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', '_tally_scanned_wrapper';

CREATE FUNCTION followup._tally_due(assignment_id text) RETURNS text
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', '_tally_due_wrapper';

CREATE FUNCTION followup.run_now(as_of date DEFAULT NULL) RETURNS followup.runs
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    new_run_id bigint;
    finished followup.runs;
BEGIN
    IF pg_is_in_recovery() THEN
        RAISE EXCEPTION 'followup.run_now cannot run on a standby'
            USING ERRCODE = 'read_only_sql_transaction',
                  HINT = 'Run it on the primary; followup.preview works here.';
    END IF;
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'followup.run_now needs READ COMMITTED isolation'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'The run commits in a background worker; a REPEATABLE READ or SERIALIZABLE snapshot could not see its log row.';
    END IF;
    new_run_id := followup._run_now(as_of);
    SELECT * INTO finished FROM followup.runs AS r WHERE r.run_id = new_run_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'run % did not start: its background worker exited before logging it', new_run_id
            USING ERRCODE = 'system_error', HINT = 'See the server log.';
    END IF;
    INSERT INTO followup.audit_log (action, subject, details)
    VALUES ('run_now', finished.run_id::text, jsonb_build_object('as_of', finished.as_of, 'status', finished.status));
    RETURN finished;
END
$$;
COMMENT ON FUNCTION followup.run_now(date) IS
    'Runs the reminder scan for as_of (default: today in followup.timezone), waits, and returns its log row.';

-- jit = off for the same reason as the run's (src/planner.rs): the query is a
-- scan whose cost clears the JIT thresholds long before compiling pays.
CREATE FUNCTION followup.preview(as_of date DEFAULT NULL) RETURNS SETOF followup.outbox
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET jit = off
AS $$ SELECT * FROM followup._preview(as_of) $$;
COMMENT ON FUNCTION followup.preview(date) IS
    'The messages a run for as_of would enqueue now (not yet in the outbox); writes nothing.';

-- Resolves an open alert by hand (an operator has dealt with it), audited;
-- true if it was open. Alerts also resolve by themselves once what they
-- warned about is over (followup._resolve_alerts).
CREATE FUNCTION followup.resolve_alert(alert_id bigint)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF resolve_alert.alert_id IS NULL THEN
        RAISE EXCEPTION 'alert_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM followup.alerts AS a WHERE a.alert_id = resolve_alert.alert_id) THEN
        RAISE EXCEPTION 'no alert with id %', resolve_alert.alert_id USING ERRCODE = 'no_data_found';
    END IF;
    UPDATE followup.alerts AS a SET resolved_at = now()
     WHERE a.alert_id = resolve_alert.alert_id AND a.resolved_at IS NULL;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO followup.audit_log (action, subject) VALUES ('resolve_alert', resolve_alert.alert_id::text);
    RETURN true;
END
$$;
COMMENT ON FUNCTION followup.resolve_alert(bigint) IS
    'Resolves an open alert by hand, audited; true if it was open.';
