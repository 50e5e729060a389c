-- pg_followup 0.2.0 -> 0.3.0
--
-- Run by ALTER EXTENSION pg_followup UPDATE. Every change keeps the data:
-- tables are altered in place, never dropped. tests/integration/upgrade.sh
-- checks that the result is exactly a fresh 0.3.0 install.

-------------------------------------------------------------------------------
-- One definition of "the day's run succeeded" (only the scheduler's runs
-- count), shared by the scheduler, its catch-up and followup.health; the
-- schedule settings from the library (replaces followup._setting, which
-- repeated the defaults in SQL).
-------------------------------------------------------------------------------
-- (Values added to an enum cannot be used in this transaction; nothing
-- below that is parsed now uses them: the functions that do are PL/pgSQL or C,
-- and followup._day_succeeded says trigger <> 'manual'.)
ALTER TYPE followup.run_trigger ADD VALUE 'retry';

CREATE FUNCTION followup._day_succeeded(day date) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM followup.runs
                    WHERE as_of = day AND status = 'succeeded' AND trigger <> 'manual')
$$;

CREATE FUNCTION followup._next_retry_at(day date, retries int, first_delay interval) RETURNS timestamptz
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN f.failures BETWEEN 1 AND retries AND NOT followup._day_succeeded(day)
                THEN f.last_failure + first_delay * (2 ^ (f.failures - 1)) END
      FROM (SELECT count(*) AS failures, max(finished_at) AS last_failure
              FROM followup.runs
             WHERE as_of = day AND status = 'failed' AND trigger <> 'manual') AS f
$$;

CREATE FUNCTION followup._settings()
RETURNS TABLE (run_at text, timezone text, alert_after int, run_retries int, max_runtime int, retry_delay int)
LANGUAGE c STABLE
AS 'MODULE_PATHNAME', '_settings_wrapper';

-- preview never pays JIT compilation (as the run does not).
ALTER FUNCTION followup.preview(date) SET jit = off;

-------------------------------------------------------------------------------
-- Send windows: each organization's time zone and window, the window
-- arithmetic, the organization of each message.
-------------------------------------------------------------------------------
ALTER TABLE followup.policies
    ADD COLUMN timezone text,
    ADD COLUMN send_from time,
    ADD COLUMN send_until time;
-- Refuses, with 22023, a time zone the server does not know, one window bound
-- without the other, and an empty window.
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
    RETURN NEW;
END
$$;
CREATE TRIGGER policies_check
    BEFORE INSERT OR UPDATE ON followup.policies
    FOR EACH ROW EXECUTE FUNCTION followup._policies_check();

CREATE OR REPLACE FUNCTION followup._policies_default_row() RETURNS trigger
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
           send_until = NEW.send_until
     WHERE organization = '*';
    IF FOUND THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END
$$;

-- The instant of local time `local_time` on local date `day` in zone `tz`. A
-- local time inside a spring-forward gap is the instant just after the gap
-- (02:30 in Europe/Oslo on 2026-03-29 is 03:30 CEST); one repeated by a
-- fall-back is the later of the two (standard time). The daily schedule
-- (followup._run_instant) is the same rule.
CREATE FUNCTION followup._local_instant(day date, local_time time, tz text) RETURNS timestamptz
LANGUAGE sql STABLE
AS $$ SELECT pg_catalog.timezone(tz, day OPERATOR(pg_catalog.+) local_time) $$;

-- Is instant `at` inside the daily window [send_from, send_until) in zone tz?
-- No window (NULL bounds) is always open; a window whose end is before its
-- start wraps midnight (21:00-02:00).
CREATE FUNCTION followup._in_window(at timestamptz, tz text, send_from time, send_until time) RETURNS boolean
LANGUAGE sql STABLE
AS $$
    SELECT send_from IS NULL
        OR CASE WHEN send_from OPERATOR(pg_catalog.<) send_until
                THEN pg_catalog.timezone(tz, at)::time OPERATOR(pg_catalog.>=) send_from
                     AND pg_catalog.timezone(tz, at)::time OPERATOR(pg_catalog.<) send_until
                ELSE pg_catalog.timezone(tz, at)::time OPERATOR(pg_catalog.>=) send_from
                     OR pg_catalog.timezone(tz, at)::time OPERATOR(pg_catalog.<) send_until
           END
$$;

-- The first instant at or after `at` inside the window: `at` itself, or the
-- window's next opening (send_from, local, that day or the next).
CREATE FUNCTION followup._next_opening(at timestamptz, tz text, send_from time, send_until time) RETURNS timestamptz
LANGUAGE sql STABLE
AS $$
    SELECT CASE WHEN followup._in_window(at, tz, send_from, send_until) THEN at
                ELSE followup._local_instant(
                         pg_catalog.timezone(tz, at)::date
                         OPERATOR(pg_catalog.+) CASE WHEN send_from OPERATOR(pg_catalog.<) send_until
                                                      AND pg_catalog.timezone(tz, at)::time OPERATOR(pg_catalog.>=) send_until
                                                     THEN 1 ELSE 0 END,
                         send_from, tz)
           END
$$;

-- The zone of a policy row: its own, or followup.timezone.
CREATE FUNCTION followup._policy_zone(policy_timezone text) RETURNS text
LANGUAGE sql STABLE
AS $$ SELECT coalesce(policy_timezone, pg_catalog.current_setting('followup.timezone')) $$;

-- When a message of `organization` may be handed out at the earliest, from
-- `at`: its effective policy's (the organization's row, else '*') next
-- opening. fail uses it for one message; claims and runs join the policies
-- themselves and call followup._next_opening.
CREATE FUNCTION followup._opens_at(organization text, at timestamptz) RETURNS timestamptz
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp AS $$
    SELECT followup._next_opening(at, followup._policy_zone(p.timezone), p.send_from, p.send_until)
      FROM followup.policies AS p
     WHERE p.organization = coalesce((SELECT own.organization FROM followup.policies AS own
                                       WHERE own.organization = _opens_at.organization AND own.organization <> '*'), '*')
$$;

CREATE OR REPLACE FUNCTION followup._run_instant(day date, run_at text, tz text) RETURNS timestamptz
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT followup._local_instant(day, run_at::time, tz) $$;

-------------------------------------------------------------------------------
-- Only still-due reminders are delivered: withdrawn messages, claim-time
-- check, followup.cancel; the organization of each message.
-------------------------------------------------------------------------------
ALTER TYPE followup.message_status ADD VALUE 'cancelled';
ALTER TABLE followup.outbox
    ADD COLUMN cancelled_at timestamptz,
    ADD COLUMN cancel_reason text,
    ADD COLUMN organization text,
    ADD CONSTRAINT outbox_cancelled_has_reason CHECK ((cancelled_at IS NULL) = (cancel_reason IS NULL));
-- Messages enqueued before 0.3.0 get their assignment's organization (as it
-- is now), so that its send window applies to them.
DO $upgrade$
DECLARE
    registration record;
BEGIN
    SELECT relation, id_column, organization_column INTO registration
      FROM followup.assignment_tables
     WHERE organization_column IS NOT NULL AND relation::oid IN (SELECT oid FROM pg_catalog.pg_class);
    IF FOUND THEN
        EXECUTE pg_catalog.format(
            'UPDATE followup.outbox AS o SET organization = (a.%I)::pg_catalog.text
               FROM %s AS a WHERE (a.%I)::pg_catalog.text = o.assignment_id',
            registration.organization_column, registration.relation, registration.id_column);
    END IF;
END
$upgrade$;
-- withdrawn messages leave the claim index
DROP INDEX followup.outbox_undelivered;
CREATE INDEX outbox_undelivered ON followup.outbox (message_id) WHERE delivered_at IS NULL AND cancelled_at IS NULL;
CREATE INDEX outbox_undelivered_by_recipient ON followup.outbox ((coalesce(recipient_id, '')), recipient_role, message_id)
    WHERE delivered_at IS NULL AND cancelled_at IS NULL;
CREATE INDEX outbox_cancelled ON followup.outbox (cancelled_at) WHERE cancelled_at IS NOT NULL;

CREATE FUNCTION followup._claim(consumer text, max_messages int, lease interval, lease_id uuid) RETURNS bigint[]
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', '_claim_wrapper';

CREATE FUNCTION followup._claim_digest(consumer text, max_recipients int, lease interval, lease_id uuid) RETURNS bigint[]
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', '_claim_digest_wrapper';

CREATE OR REPLACE FUNCTION followup.claim(consumer text, max_messages int DEFAULT 100, lease interval DEFAULT '5 minutes')
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

CREATE OR REPLACE FUNCTION followup.fail(lease_id uuid, message_id bigint, error text, retry_in interval DEFAULT NULL)
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

CREATE FUNCTION followup.cancel(message_ids bigint[], reason text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    withdrawn bigint;
BEGIN
    IF cancel.message_ids IS NULL OR cancel.reason IS NULL THEN
        RAISE EXCEPTION 'message_ids and reason must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF btrim(cancel.reason) = '' THEN
        RAISE EXCEPTION 'reason must say why the messages are withdrawn' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE followup.outbox AS o
       SET status = 'cancelled', cancelled_at = clock_timestamp(), cancel_reason = 'manual: ' || btrim(cancel.reason)
     WHERE o.message_id = ANY (cancel.message_ids)
       AND o.delivered_at IS NULL AND o.cancelled_at IS NULL
       AND o.status IN ('pending', 'claimed');
    GET DIAGNOSTICS withdrawn = ROW_COUNT;
    RETURN withdrawn;
END
$$;

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

CREATE OR REPLACE FUNCTION followup._prune(retention_days int, batch int) RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    horizon timestamptz := now() - make_interval(days => retention_days);
    removed bigint := 0;
    n bigint;
BEGIN
    DELETE FROM followup.runs
     WHERE run_id IN (SELECT run_id FROM followup.runs
                       WHERE status <> 'running' AND coalesce(finished_at, started_at) < horizon
                       LIMIT batch);
    GET DIAGNOSTICS n = ROW_COUNT;
    removed := removed + n;

    DELETE FROM followup.alerts
     WHERE alert_id IN (SELECT alert_id FROM followup.alerts
                         WHERE resolved_at IS NOT NULL AND resolved_at < horizon
                         LIMIT batch);
    GET DIAGNOSTICS n = ROW_COUNT;
    removed := removed + n;

    DELETE FROM followup.outbox
     WHERE message_id IN (
            SELECT o.message_id
              FROM followup.outbox AS o
             WHERE o.status IN ('delivered', 'dead', 'cancelled')
               AND coalesce(o.delivered_at, o.cancelled_at, o.enqueued_at) < horizon
               AND EXISTS (SELECT 1 FROM followup.outbox AS newer
                            WHERE newer.assignment_id = o.assignment_id
                              AND (newer.cycle_start > o.cycle_start
                                   OR (newer.cycle_start = o.cycle_start AND newer.kind = o.kind
                                       AND newer.sequence > o.sequence)))
             LIMIT batch);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN removed + n;
END
$$;

-------------------------------------------------------------------------------
-- Verify and repair; TRUNCATE of a tracked table recomputes what it affected
-- (the new triggers are put on the tables tracked already).
-------------------------------------------------------------------------------
-- Repairs (followup.repair): each last contact set back to what tracking
-- keeps, who did it, when, why. Not a correction: it is no floor for later
-- recomputes.
CREATE TABLE followup.repairs (
    repair_id     bigserial PRIMARY KEY,
    assignment_id text NOT NULL,
    old_value     text,
    new_value     text,
    reason        text NOT NULL CHECK (btrim(reason) <> ''),
    repaired_by   name NOT NULL DEFAULT session_user,
    repaired_at   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE followup.repairs IS 'Audit log of followup.repair.';
SELECT pg_catalog.pg_extension_config_dump('followup.repairs', '');
SELECT pg_catalog.pg_extension_config_dump('followup.repairs_repair_id_seq', '');
REVOKE ALL ON followup.repairs, followup.repairs_repair_id_seq FROM PUBLIC;

CREATE FUNCTION followup.activity_truncate_trigger() RETURNS trigger
LANGUAGE c SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'activity_truncate_trigger_wrapper';

CREATE FUNCTION followup._verify(max_rows int) RETURNS TABLE (assignment_id text, stored text, expected text)
LANGUAGE c STABLE
AS 'MODULE_PATHNAME', '_verify_wrapper';

CREATE FUNCTION followup.verify(max_rows int DEFAULT 1000)
RETURNS TABLE (assignment_id text, stored text, expected text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET jit = off
AS $$ SELECT * FROM followup._verify(max_rows) $$;

CREATE FUNCTION followup._repair(reason text) RETURNS bigint
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', '_repair_wrapper';

CREATE FUNCTION followup.repair(reason text)
RETURNS bigint
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET jit = off
AS $$ SELECT followup._repair(reason) $$;

DO $upgrade$
BEGIN
    IF EXISTS (SELECT 1 FROM followup.activity_tables) THEN
        PERFORM followup._sync_partition_triggers();
    END IF;
END
$upgrade$;

-------------------------------------------------------------------------------
-- Snoozes and explain
-------------------------------------------------------------------------------
CREATE TABLE followup.snoozes (
    snooze_id     bigserial PRIMARY KEY,
    assignment_id text NOT NULL,
    until         date NOT NULL,
    reason        text NOT NULL CHECK (btrim(reason) <> ''),
    snoozed_by    name NOT NULL DEFAULT session_user,
    snoozed_at    timestamptz NOT NULL DEFAULT now(),
    ended_at      timestamptz
);
-- The runs and claims look for open snoozes only.
CREATE INDEX snoozes_open_idx ON followup.snoozes (assignment_id, until) WHERE ended_at IS NULL;
COMMENT ON TABLE followup.snoozes IS 'Snoozed assignments (followup.snooze / followup.unsnooze), kept as an audit.';
SELECT pg_catalog.pg_extension_config_dump('followup.snoozes', '');
SELECT pg_catalog.pg_extension_config_dump('followup.snoozes_snooze_id_seq', '');
REVOKE ALL ON followup.snoozes, followup.snoozes_snooze_id_seq FROM PUBLIC;

CREATE FUNCTION followup._require_assignment(assignment_id text) RETURNS void
LANGUAGE c STABLE
AS 'MODULE_PATHNAME', '_require_assignment_wrapper';

CREATE FUNCTION followup._today() RETURNS date
LANGUAGE c STABLE
AS 'MODULE_PATHNAME', '_today_wrapper';

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
       SET ended_at = now()
     WHERE s.assignment_id = unsnooze.assignment_id AND s.ended_at IS NULL AND s.until >= followup._today();
    GET DIAGNOSTICS ended = ROW_COUNT;
    RETURN ended;
END
$$;

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

REVOKE EXECUTE ON FUNCTION
    followup._claim(text, int, interval, uuid),
    followup._claim_digest(text, int, interval, uuid),
    followup.claim_digest(text, int, interval),
    followup._policies_check(),
    followup.cancel(bigint[], text),
    followup._require_assignment(text),
    followup._today(),
    followup.snooze(text, date, text),
    followup.unsnooze(text),
    followup._explain(text, date),
    followup.explain(text, date),
    followup.activity_truncate_trigger(),
    followup._verify(int),
    followup.verify(int),
    followup._repair(text),
    followup.repair(text)
FROM PUBLIC;

-------------------------------------------------------------------------------
-- followup.health: the schedule settings from the library, only the
-- scheduler's runs count, withdrawn messages of the last 24 hours.
-------------------------------------------------------------------------------
CREATE OR REPLACE VIEW followup.health AS
WITH settings AS (
    SELECT s.run_at, s.timezone AS tz, s.alert_after AS alert_after_minutes, s.run_retries, s.max_runtime,
           s.retry_delay
      FROM followup._settings() AS s
),
last_run AS (
    SELECT status FROM followup.runs WHERE status <> 'skipped' ORDER BY started_at DESC, run_id DESC LIMIT 1
),
running AS (
    SELECT run_id, now() - started_at AS running_for
      FROM followup.runs WHERE status = 'running' ORDER BY started_at LIMIT 1
),
due AS (
    SELECT followup._last_run_at_or_before(now(), s.run_at, s.tz) AS instant, s.alert_after_minutes, s.tz,
           s.run_retries, s.max_runtime, s.retry_delay
      FROM settings s
),
queue AS (
    SELECT count(*) FILTER (WHERE status IN ('pending', 'claimed')) AS pending,
           now() - min(enqueued_at) FILTER (WHERE status IN ('pending', 'claimed')) AS oldest_pending_age,
           count(*) FILTER (WHERE status = 'dead') AS dead
      FROM followup.outbox WHERE delivered_at IS NULL AND cancelled_at IS NULL
)
SELECT (SELECT status FROM last_run) AS last_run_status,
       (SELECT max(finished_at) FROM followup.runs WHERE status = 'succeeded') AS last_success_at,
       (SELECT run_id FROM running) AS running_run_id,
       (SELECT running_for FROM running) AS running_for,
       -- the last scheduled run (plus alert_after of grace) has passed without
       -- a successful run for its day, and an assignments table is registered
       (now() > due.instant + make_interval(mins => due.alert_after_minutes)
        AND EXISTS (SELECT 1 FROM followup.assignment_tables)
        AND NOT followup._day_succeeded((due.instant AT TIME ZONE due.tz)::date)) AS overdue,
       (SELECT count(*) FROM followup.alerts WHERE resolved_at IS NULL) AS open_alerts,
       queue.pending AS outbox_pending,
       queue.oldest_pending_age,
       queue.dead AS outbox_dead,
       (SELECT count(*) FROM followup.outbox
         WHERE cancelled_at > now() - interval '24 hours') AS outbox_cancelled_24h,
       -- the scheduler's next retry of the last scheduled day's failed run
       followup._next_retry_at((due.instant AT TIME ZONE due.tz)::date, due.run_retries,
                               make_interval(secs => due.retry_delay)) AS next_retry_at,
       due.run_retries,
       nullif(due.max_runtime, 0) AS max_runtime_minutes
  FROM due, queue;
COMMENT ON VIEW followup.health IS
    'One row: last run status, last success, the running run, whether the daily run is overdue, open alerts, outbox backlog, withdrawn messages.';

DROP FUNCTION followup._setting(text, text);
