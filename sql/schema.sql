-- pg_followup: tables, types and views of the `followup` schema.
--
-- Every table that holds configuration or history is registered with
-- pg_extension_config_dump (at the end of this file) together with the sequence
-- behind it, so a pg_dump / pg_restore round trip keeps it.

COMMENT ON SCHEMA followup IS 'pg_followup: follow-up reminders for peer-mentoring assignments';

-------------------------------------------------------------------------------
-- Types
-------------------------------------------------------------------------------
CREATE TYPE followup.run_trigger AS ENUM ('schedule', 'manual', 'catch_up', 'retry');
CREATE TYPE followup.run_status AS ENUM ('running', 'succeeded', 'failed', 'skipped', 'abandoned');
CREATE TYPE followup.message_kind AS ENUM ('reminder', 'escalation');
CREATE TYPE followup.recipient_role AS ENUM ('mentor', 'coordinator');
CREATE TYPE followup.message_status AS ENUM ('pending', 'claimed', 'delivered', 'dead', 'cancelled');
CREATE TYPE followup.alert_kind AS ENUM ('long_run', 'run_failed', 'run_abandoned', 'missed_schedule');

-- The role a call acts for: PostgreSQL's outer user, which SET ROLE changes
-- and SECURITY DEFINER does not (src/security.rs). Every audit column
-- records it, next to session_user.
CREATE FUNCTION followup._acting_role() RETURNS text
LANGUAGE c STABLE
AS 'MODULE_PATHNAME', '_acting_role_wrapper';

-------------------------------------------------------------------------------
-- Registrations. Written only by track_* / untrack_*; read by the
-- tracking triggers and the run. Column names are stored, not attnums, so a
-- dump/restore (which may renumber columns) keeps them valid.
-------------------------------------------------------------------------------
CREATE TABLE followup.assignment_tables (
    singleton           boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    relation            regclass NOT NULL,
    id_column           name NOT NULL,
    mentor_column       name NOT NULL,
    last_contact_column name NOT NULL,
    created_column      name,
    coordinator_column  name,
    organization_column name,
    active_when         text,
    payload_columns     name[] NOT NULL DEFAULT '{}',
    registered_at       timestamptz NOT NULL DEFAULT now(),
    registered_by       name NOT NULL DEFAULT current_user,
    -- the first registration of an assignments table in this database: a
    -- re-registration keeps it (README, "The scheduler": days before it
    -- were never the scheduler's)
    tracked_since       timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE followup.assignment_tables IS
    'The one assignments table of this database (followup.track_assignments).';

CREATE TABLE followup.activity_tables (
    relation           regclass PRIMARY KEY,
    occurred_column    name NOT NULL,
    match_columns      name[] NOT NULL,
    assignment_columns name[] NOT NULL,
    registered_at      timestamptz NOT NULL DEFAULT now(),
    registered_by      name NOT NULL DEFAULT current_user,
    CHECK (cardinality(match_columns) > 0
           AND cardinality(match_columns) = cardinality(assignment_columns))
);
COMMENT ON TABLE followup.activity_tables IS
    'Activity tables whose rows keep last_contact_column true (followup.track_activities).';

-------------------------------------------------------------------------------
-- The scheduler's duty (src/scheduler.rs): since when the scheduler has been
-- responsible for this database's daily runs. Set when it first serves the
-- database, when followup.enabled is turned on again and when
-- followup.database has changed to this one; NULL while followup.enabled is
-- off; kept across restarts, so a day whose run_at passed while the server
-- was down is still the scheduler's to catch up. Not dumped: a restored
-- database's scheduler takes its duty anew.
-------------------------------------------------------------------------------
CREATE TABLE followup.scheduler_duty (
    singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    on_duty_since timestamptz,
    changed_at    timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE followup.scheduler_duty IS
    'Since when the scheduler has been responsible for the daily runs of this database (NULL: followup.enabled is off).';

-------------------------------------------------------------------------------
-- Policies
-------------------------------------------------------------------------------
CREATE TABLE followup.policies (
    organization        text PRIMARY KEY,
    remind_after_days   int NOT NULL CHECK (remind_after_days >= 0),
    repeat_every_days   int NULL CHECK (repeat_every_days > 0),
    escalate_after_days int NULL CHECK (escalate_after_days >= 0),
    max_reminders       int NULL CHECK (max_reminders > 0),
    enabled             bool NOT NULL DEFAULT true,
    -- delivery (README, "Send windows and digests"): the organization's IANA
    -- time zone (NULL: followup.timezone) and its daily send window, both
    -- bounds or neither; a window may wrap midnight (21:00-02:00)
    timezone            text,
    send_from           time,
    send_until          time,
    -- the ISO weekdays (1 = Monday) on which the window opens; NULL: every day
    send_days           smallint[]
);
COMMENT ON TABLE followup.policies IS
    'Reminder policy per organization; row ''*'' applies to organizations without a row of their own.';

-- Refuses, with 22023, a time zone the server does not know, one window bound
-- without the other, an empty window, and send_days that are not distinct
-- ISO weekdays (1-7) or none at all.
CREATE FUNCTION followup._policies_check() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NEW.timezone IS NOT NULL THEN
        BEGIN
            PERFORM now() AT TIME ZONE NEW.timezone;
        EXCEPTION WHEN invalid_parameter_value THEN
            RAISE EXCEPTION 'timezone "%" of policy "%" is not a time zone known to the server', NEW.timezone, NEW.organization
                USING ERRCODE = 'invalid_parameter_value', HINT = 'Use an IANA name such as Europe/Oslo (see pg_timezone_names).';
        END;
    END IF;
    IF (NEW.send_from IS NULL) <> (NEW.send_until IS NULL) THEN
        RAISE EXCEPTION 'policy "%" needs both send_from and send_until, or neither', NEW.organization
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NEW.send_from = NEW.send_until THEN
        RAISE EXCEPTION 'the send window of policy "%" is empty (send_from = send_until = %)', NEW.organization, NEW.send_from
            USING ERRCODE = 'invalid_parameter_value', HINT = 'A window may wrap midnight, e.g. 21:00 to 02:00.';
    END IF;
    IF NEW.send_days IS NOT NULL AND (
           cardinality(NEW.send_days) = 0
           OR EXISTS (SELECT 1 FROM unnest(NEW.send_days) AS d WHERE d IS NULL OR d NOT BETWEEN 1 AND 7)
           OR (SELECT count(DISTINCT d) FROM unnest(NEW.send_days) AS d) <> cardinality(NEW.send_days)) THEN
        RAISE EXCEPTION 'send_days of policy "%" must be distinct ISO weekdays from 1 (Monday) to 7 (Sunday), at least one',
                        NEW.organization
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('send_days = %s', NEW.send_days),
                  HINT = 'Use NULL for every day, e.g. ''{1,2,3,4,5}'' for Monday to Friday.';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER policies_check
    BEFORE INSERT OR UPDATE ON followup.policies
    FOR EACH ROW EXECUTE FUNCTION followup._policies_check();

-------------------------------------------------------------------------------
-- Calendars (README, "Send windows, calendars and digests"): the days on
-- which no message of an organization is handed out ('*': of every
-- organization), in its local time; edited by admins like the policies.
-------------------------------------------------------------------------------
CREATE TABLE followup.quiet_days (
    organization text NOT NULL CHECK (btrim(organization) <> ''),
    day          date NOT NULL CHECK (isfinite(day)),
    reason       text NOT NULL CHECK (btrim(reason) <> ''),
    PRIMARY KEY (organization, day)
);
COMMENT ON TABLE followup.quiet_days IS
    'Local days on which no message of the organization (''*'': of every organization) is handed out.';

-- Recipients who are away (followup.set_away, followup.end_away), kept as an
-- audit. While one is open (not ended) and its days cover the local day,
-- their messages wait for the first opening after until_day.
CREATE TABLE followup.away (
    away_id        bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    recipient_role followup.recipient_role NOT NULL,
    recipient_id   text NOT NULL,
    from_day       date NOT NULL,
    until_day      date NOT NULL,
    reason         text NOT NULL CHECK (btrim(reason) <> ''),
    set_by         name NOT NULL DEFAULT followup._acting_role(),
    set_at         timestamptz NOT NULL DEFAULT now(),
    ended_at       timestamptz,
    ended_by       name,
    CHECK (from_day <= until_day)
);
-- Claims look up the open absences of each message's recipient.
CREATE INDEX away_open_idx ON followup.away (recipient_role, recipient_id, until_day) WHERE ended_at IS NULL;
COMMENT ON TABLE followup.away IS 'Recipients who are away (followup.set_away / followup.end_away), kept as an audit.';

-------------------------------------------------------------------------------
-- Runs
-------------------------------------------------------------------------------
CREATE TABLE followup.runs (
    run_id                bigserial PRIMARY KEY,
    trigger               followup.run_trigger NOT NULL,
    status                followup.run_status NOT NULL,
    as_of                 date NOT NULL,
    started_at            timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at           timestamptz,
    assignments_scanned   bigint,
    reminders_enqueued    bigint,
    duplicates_suppressed bigint,
    error                 text,
    backend_pid           int,
    -- assignments left out because active_when (or a column) cannot be
    -- evaluated on their row; never their values (README, "Running")
    assignments_skipped   bigint
);
CREATE INDEX runs_as_of_idx ON followup.runs (as_of, status);
CREATE INDEX runs_running_idx ON followup.runs (run_id) WHERE status = 'running';
COMMENT ON TABLE followup.runs IS 'Execution log: one row per reminder run, including skipped ones.';

-- The tallies of a split run's parts (src/run/parts.rs): each helper worker
-- records what its range of the assignments table enqueued, in the
-- transaction that enqueued it; the run sums and removes them. Transient.
CREATE TABLE followup._run_parts (
    run_id   bigint NOT NULL,
    part     int NOT NULL,
    scanned  bigint NOT NULL,
    due      bigint NOT NULL,
    enqueued bigint NOT NULL,
    PRIMARY KEY (run_id, part)
);

-------------------------------------------------------------------------------
-- Outbox
-------------------------------------------------------------------------------
CREATE TABLE followup.outbox (
    -- an identity, not a serial: the run's INSERT runs as the assignments
    -- table's owner (src/security.rs), and an identity's next value needs
    -- no privilege on the sequence
    message_id         bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    run_id             bigint,
    assignment_id      text NOT NULL,
    cycle_start        date NOT NULL,
    kind               followup.message_kind NOT NULL,
    sequence           int NOT NULL,
    recipient_role     followup.recipient_role NOT NULL,
    recipient_id       text,
    days_since_contact int NOT NULL,
    payload            jsonb NOT NULL DEFAULT '{}',
    enqueued_at        timestamptz NOT NULL DEFAULT now(),
    status             followup.message_status NOT NULL DEFAULT 'pending',
    attempts           int NOT NULL DEFAULT 0,
    visible_at         timestamptz NOT NULL DEFAULT now(),
    lease_id           uuid,
    claimed_by         text,
    delivered_at       timestamptz,
    last_error         text,
    -- withdrawn because it is no longer due (README, "Only still-due reminders
    -- are delivered"): when, and why (contact_logged, assignment_inactive,
    -- snoozed, policy_disabled, manual: ...)
    cancelled_at       timestamptz,
    cancel_reason      text,
    -- the assignment's organization when the message was enqueued: whose
    -- policy's send window applies
    organization       text,
    CONSTRAINT outbox_idempotency_key UNIQUE (assignment_id, cycle_start, kind, sequence),
    CONSTRAINT outbox_cancelled_has_reason CHECK ((cancelled_at IS NULL) = (cancel_reason IS NULL))
) WITH (
    -- A claim rewrites every row of a batch at once; with half of each page
    -- free, most of those new versions fit on their page (HOT, no index
    -- entries). At fillfactor 85 only about 1 in 8 did, and the claim index
    -- grew with every batch (bench/outbox_throughput.sh).
    fillfactor = 50,
    -- Claims walk the claim index from its oldest entry; entries left behind by
    -- delivered messages are skipped until vacuum removes them: vacuum often.
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000
);
-- Where consumers look for work (followup.claimable, sql/outbox.sql, is
-- defined over exactly this predicate). Only message_id is indexed and only
-- delivered_at and cancelled_at are in the predicate, so claim, fail, release,
-- dead and requeue (which change status, lease, visible_at, attempts) can be
-- HOT updates that add no index entries; a message leaves this index once,
-- when delivered or withdrawn.
CREATE INDEX outbox_undelivered ON followup.outbox (message_id) WHERE delivered_at IS NULL AND cancelled_at IS NULL;
-- A recipient's undelivered messages, oldest first: what claim_digest takes
-- for each recipient it serves (src/outbox.rs). No column a claim, fail or
-- release changes is in it, so those stay HOT updates.
CREATE INDEX outbox_undelivered_by_recipient ON followup.outbox ((coalesce(recipient_id, '')), recipient_role, message_id)
    WHERE delivered_at IS NULL AND cancelled_at IS NULL;
-- Withdrawn messages, for followup.health's count of the last 24 hours.
CREATE INDEX outbox_cancelled ON followup.outbox (cancelled_at) WHERE cancelled_at IS NOT NULL;
COMMENT ON TABLE followup.outbox IS
    'Reminders to deliver. (assignment_id, cycle_start, kind, sequence) is the idempotency key.';

-- One row per claim batch: lets ack(lease_id) and release(lease_id) without a
-- list of ids find the lease's messages by primary key, with no index on
-- outbox.lease_id (which would make every claim a non-HOT update). Transient:
-- rows are removed an hour after the lease expires, and not dumped.
CREATE TABLE followup.outbox_leases (
    lease_id    uuid PRIMARY KEY,
    consumer    text NOT NULL,
    message_ids bigint[] NOT NULL,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX outbox_leases_expiry_idx ON followup.outbox_leases (expires_at);

-------------------------------------------------------------------------------
-- Alerts
-------------------------------------------------------------------------------
CREATE TABLE followup.alerts (
    alert_id    bigserial PRIMARY KEY,
    raised_at   timestamptz NOT NULL DEFAULT now(),
    kind        followup.alert_kind NOT NULL,
    run_id      bigint,
    message     text NOT NULL,
    resolved_at timestamptz
);
CREATE UNIQUE INDEX alerts_once_per_run ON followup.alerts (kind, run_id) WHERE run_id IS NOT NULL;
CREATE INDEX alerts_open_idx ON followup.alerts (raised_at) WHERE resolved_at IS NULL;

-------------------------------------------------------------------------------
-- Manual corrections
-------------------------------------------------------------------------------
CREATE TABLE followup.contact_corrections (
    correction_id bigserial PRIMARY KEY,
    assignment_id text NOT NULL,
    old_value     text,
    new_value     date NOT NULL,
    reason        text NOT NULL CHECK (btrim(reason) <> ''),
    corrected_by  name NOT NULL DEFAULT followup._acting_role(),
    corrected_at  timestamptz NOT NULL DEFAULT now(),
    client_addr   inet DEFAULT inet_client_addr(),
    session_role  name NOT NULL DEFAULT session_user
);
-- The tracking triggers look up the latest correction of an assignment when a
-- delete or update forces a recompute.
CREATE INDEX contact_corrections_latest_idx
    ON followup.contact_corrections (assignment_id, corrected_at DESC, correction_id DESC);
COMMENT ON TABLE followup.contact_corrections IS 'Audit log of followup.set_last_contact.';

-- Repairs (followup.repair): each last contact set back to what tracking
-- keeps, who did it, when, why. Not a correction: it is no floor for later
-- recomputes.
CREATE TABLE followup.repairs (
    repair_id     bigserial PRIMARY KEY,
    assignment_id text NOT NULL,
    old_value     text,
    new_value     text,
    reason        text NOT NULL CHECK (btrim(reason) <> ''),
    repaired_by   name NOT NULL DEFAULT followup._acting_role(),
    repaired_at   timestamptz NOT NULL DEFAULT now(),
    session_role  name NOT NULL DEFAULT session_user
);
COMMENT ON TABLE followup.repairs IS 'Audit log of followup.repair.';

-------------------------------------------------------------------------------
-- Snoozes (README, "Snoozing an assignment"): while one is open (not ended,
-- until on or after the day in question) no run enqueues for the assignment
-- and its pending messages are withdrawn.
-------------------------------------------------------------------------------
CREATE TABLE followup.snoozes (
    snooze_id     bigserial PRIMARY KEY,
    assignment_id text NOT NULL,
    until         date NOT NULL,
    reason        text NOT NULL CHECK (btrim(reason) <> ''),
    snoozed_by    name NOT NULL DEFAULT followup._acting_role(),
    snoozed_at    timestamptz NOT NULL DEFAULT now(),
    ended_at      timestamptz,
    session_role  name NOT NULL DEFAULT session_user,
    ended_by      name
);
-- The runs and claims look for open snoozes only.
CREATE INDEX snoozes_open_idx ON followup.snoozes (assignment_id, until) WHERE ended_at IS NULL;
COMMENT ON TABLE followup.snoozes IS 'Snoozed assignments (followup.snooze / followup.unsnooze), kept as an audit.';

-------------------------------------------------------------------------------
-- The audit log of the calls that change state and have no table of their
-- own (README, "Roles and privileges"): cancels, requeues, unsnoozes, policy
-- edits, manual runs, resolved alerts, registrations. Who: the acting role
-- (the outer user, which SET ROLE sets) and the session's login role.
-------------------------------------------------------------------------------
CREATE TABLE followup.audit_log (
    audit_id     bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    action       text NOT NULL,
    acting_role  name NOT NULL DEFAULT followup._acting_role(),
    session_role name NOT NULL DEFAULT session_user,
    subject      text,
    reason       text,
    details      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at_idx ON followup.audit_log (at);
COMMENT ON TABLE followup.audit_log IS
    'Who changed what, when and why: cancels, requeues, unsnoozes, policy edits, manual runs, resolved alerts, registrations.';

-- Policy and quiet-day edits are audited whoever makes them, and however (a
-- restore, which runs with check_function_bodies off, is not an edit).
CREATE FUNCTION followup._audit_policy_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT current_setting('check_function_bodies')::boolean THEN
        RETURN NULL;
    END IF;
    INSERT INTO followup.audit_log (action, subject, details)
    VALUES (CASE TG_TABLE_NAME WHEN 'quiet_days' THEN 'quiet_day_' ELSE 'policy_' END || lower(TG_OP),
            coalesce(NEW.organization, OLD.organization),
            jsonb_strip_nulls(jsonb_build_object('old', CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END,
                                                 'new', CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END)));
    RETURN NULL;
END
$$;

-------------------------------------------------------------------------------
-- The default policy row '*'.
--
-- The install script inserts it and pg_dump dumps the whole table, so a restore
-- would insert '*' a second time. This trigger turns an INSERT of '*' into an
-- update of the existing row: the restored values win, nothing collides.
-- Deleting '*' is refused: disable it instead.
-------------------------------------------------------------------------------
CREATE FUNCTION followup._policies_default_row() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'the default policy ''*'' cannot be deleted'
            USING ERRCODE = 'restrict_violation',
                  HINT = 'Set enabled = false on it to stop reminders for organizations without a policy.';
    END IF;
    UPDATE followup.policies
       SET remind_after_days = NEW.remind_after_days,
           repeat_every_days = NEW.repeat_every_days,
           escalate_after_days = NEW.escalate_after_days,
           max_reminders = NEW.max_reminders,
           enabled = NEW.enabled,
           timezone = NEW.timezone,
           send_from = NEW.send_from,
           send_until = NEW.send_until,
           send_days = NEW.send_days
     WHERE organization = '*';
    IF FOUND THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER policies_default_row_upsert
    BEFORE INSERT ON followup.policies
    FOR EACH ROW WHEN (NEW.organization = '*')
    EXECUTE FUNCTION followup._policies_default_row();
CREATE TRIGGER policies_default_row_keep
    BEFORE DELETE ON followup.policies
    FOR EACH ROW WHEN (OLD.organization = '*')
    EXECUTE FUNCTION followup._policies_default_row();

INSERT INTO followup.policies (organization, remind_after_days, repeat_every_days,
                               escalate_after_days, max_reminders, enabled)
VALUES ('*', 14, 7, NULL, NULL, true);

-- (created after the default row, which is the install's, not an edit)
CREATE TRIGGER policies_audit
    AFTER INSERT OR UPDATE OR DELETE ON followup.policies
    FOR EACH ROW EXECUTE FUNCTION followup._audit_policy_change();
CREATE TRIGGER quiet_days_audit
    AFTER INSERT OR UPDATE OR DELETE ON followup.quiet_days
    FOR EACH ROW EXECUTE FUNCTION followup._audit_policy_change();

-------------------------------------------------------------------------------
-- pg_dump keeps configuration and history.
-------------------------------------------------------------------------------
SELECT pg_catalog.pg_extension_config_dump('followup.assignment_tables', '');
SELECT pg_catalog.pg_extension_config_dump('followup.activity_tables', '');
SELECT pg_catalog.pg_extension_config_dump('followup.policies', '');
SELECT pg_catalog.pg_extension_config_dump('followup.runs', '');
SELECT pg_catalog.pg_extension_config_dump('followup.runs_run_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('followup.outbox', '');
SELECT pg_catalog.pg_extension_config_dump('followup.outbox_message_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('followup.alerts', '');
SELECT pg_catalog.pg_extension_config_dump('followup.alerts_alert_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('followup.contact_corrections', '');
SELECT pg_catalog.pg_extension_config_dump('followup.contact_corrections_correction_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('followup.repairs', '');
SELECT pg_catalog.pg_extension_config_dump('followup.repairs_repair_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('followup.snoozes', '');
SELECT pg_catalog.pg_extension_config_dump('followup.snoozes_snooze_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('followup.audit_log', '');
SELECT pg_catalog.pg_extension_config_dump('followup.audit_log_audit_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('followup.quiet_days', '');
SELECT pg_catalog.pg_extension_config_dump('followup.away', '');
SELECT pg_catalog.pg_extension_config_dump('followup.away_away_id_seq', '');
