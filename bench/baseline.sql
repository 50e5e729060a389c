-- What a DBA would write without pg_followup, for bench/run.sh to compare with
-- on the same data:
--   * the same contract by hand: an outbox with the same columns and indexes
--     as followup.outbox but a text idempotency key, filled by one
--     INSERT … SELECT … ON CONFLICT DO NOTHING applying the policies;
--   * the minimal one, what a DBA writes in 20 lines: a bigserial key, one
--     text unique idempotency key, a fixed 14-day / 7-day rule, one statement;
--   * last_contact_date kept by a typical FOR EACH ROW trigger, and by a
--     FOR EACH STATEMENT trigger with a transition table doing one raise-only
--     UPDATE.
-- Plus the tables the bulk-insert comparison uses.
CREATE SCHEMA bench;

-- Same columns and indexes as followup.outbox (primary key, unique
-- idempotency key, claim index), the key as one text column.
CREATE TABLE bench.outbox_baseline (
    message_id         bigserial PRIMARY KEY,
    run_id             bigint,
    idem_key           text NOT NULL UNIQUE,
    assignment_id      text NOT NULL,
    cycle_start        date NOT NULL,
    kind               text NOT NULL,
    sequence           int NOT NULL,
    recipient_role     text NOT NULL,
    recipient_id       text,
    days_since_contact int NOT NULL,
    payload            jsonb NOT NULL DEFAULT '{}',
    enqueued_at        timestamptz NOT NULL DEFAULT now(),
    status             text NOT NULL DEFAULT 'pending',
    attempts           int NOT NULL DEFAULT 0,
    visible_at         timestamptz NOT NULL DEFAULT now(),
    lease_id           uuid,
    claimed_by         text,
    delivered_at       timestamptz,
    last_error         text
);
CREATE INDEX ON bench.outbox_baseline (message_id) WHERE delivered_at IS NULL;

-- The same reminder rule (README, "Policies and the reminder rule") as one set-based statement.
CREATE FUNCTION bench.baseline_run(as_of date) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    enqueued bigint;
BEGIN
    INSERT INTO bench.outbox_baseline (idem_key, run_id, assignment_id, cycle_start, kind, sequence,
                                       recipient_role, recipient_id, days_since_contact, payload)
    SELECT x.id || ':' || x.cycle_start || ':' || m.kind || ':' || m.seq, 0, x.id::text, x.cycle_start, m.kind, m.seq,
           m.role, m.recipient, x.age, jsonb_build_object('organization', x.organization, 'contact_id', x.contact_id)
      FROM (SELECT a.id, a.organization, a.contact_id, a.mentor_id, a.coordinator_id,
                   coalesce(a.last_contact_date, a.created_at) AS cycle_start,
                   as_of - coalesce(a.last_contact_date, a.created_at) AS age,
                   CASE WHEN own.organization IS NULL THEN dflt ELSE own END AS pol
              FROM app.assignments a
              CROSS JOIN followup.policies dflt
              LEFT JOIN followup.policies own ON own.organization = a.organization AND own.organization <> '*'
             WHERE dflt.organization = '*' AND a.status = 'active') x
     CROSS JOIN LATERAL (VALUES
            ('reminder', 'mentor', x.mentor_id::text,
             CASE WHEN (x.pol).repeat_every_days IS NULL THEN 1
                  ELSE 1 + (x.age - (x.pol).remind_after_days) / (x.pol).repeat_every_days END),
            ('escalation', 'coordinator', x.coordinator_id::text, 1)) AS m(kind, role, recipient, seq)
     WHERE (x.pol).enabled AND m.recipient IS NOT NULL
       AND CASE m.kind
             WHEN 'reminder' THEN x.age >= (x.pol).remind_after_days
                              AND ((x.pol).max_reminders IS NULL OR m.seq <= (x.pol).max_reminders)
             ELSE (x.pol).escalate_after_days IS NOT NULL AND x.age >= (x.pol).escalate_after_days
           END
    ON CONFLICT (idem_key) DO NOTHING;
    GET DIAGNOSTICS enqueued = ROW_COUNT;
    RETURN enqueued;
END $$;

-- The minimal outbox: a bigserial key and one text idempotency key, nothing
-- for a consumer protocol (no status, lease or claim index).
CREATE TABLE bench.outbox_minimal (
    id                 bigserial PRIMARY KEY,
    idempotency_key    text NOT NULL UNIQUE,
    assignment_id      bigint NOT NULL,
    mentor_id          bigint NOT NULL,
    sequence           int NOT NULL,
    days_since_contact int NOT NULL,
    payload            jsonb NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    sent_at            timestamptz
);

-- A reminder 14 days after the last contact (or the creation), then every 7.
CREATE FUNCTION bench.minimal_run(as_of date) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    enqueued bigint;
BEGIN
    INSERT INTO bench.outbox_minimal (idempotency_key, assignment_id, mentor_id, sequence, days_since_contact, payload)
    SELECT a.id || '/' || c.cycle_start || '/' || (1 + (c.age - 14) / 7), a.id, a.mentor_id, 1 + (c.age - 14) / 7,
           c.age, jsonb_build_object('organization', a.organization, 'contact_id', a.contact_id)
      FROM app.assignments a,
           LATERAL (SELECT coalesce(a.last_contact_date, a.created_at) AS cycle_start,
                           as_of - coalesce(a.last_contact_date, a.created_at) AS age) c
     WHERE a.status = 'active' AND c.age >= 14
    ON CONFLICT (idempotency_key) DO NOTHING;
    GET DIAGNOSTICS enqueued = ROW_COUNT;
    RETURN enqueued;
END $$;

-- The bulk-insert comparison: the rows to insert, an untracked copy of the
-- activity table, and one with a typical row trigger keeping a copy of the
-- assignments up to date.
CREATE FUNCTION bench.prepare() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    -- "new contacts": one activity per assignment within the last 30 days,
    -- mostly newer than its last contact (the worst case: nearly every row
    -- moves a different assignment's date)
    CREATE TABLE bench.new_activities AS
    SELECT mentor_id, contact_id, (current_date - (id % 30)::int)::timestamptz + interval '12 hours' AS occurred_at,
           'bulk'::text AS registration
      FROM app.assignments ORDER BY id;
    -- "history import": as many activities for random assignments, 30 to 90
    -- days old, so few are newer than what is already known
    CREATE TABLE bench.old_activities AS
    SELECT a.mentor_id, a.contact_id,
           (current_date - (30 + (g * 7919) % 60)::int)::timestamptz + interval '9 hours' AS occurred_at,
           'bulk'::text AS registration
      FROM generate_series(1, (SELECT count(*) FROM app.assignments)) g
      JOIN app.assignments a ON a.id = 1 + (g * 104729) % (SELECT count(*) FROM app.assignments)
     ORDER BY g;
    -- The comparison tables start as copies of app.activities (the app's
    -- history, same rows and indexes), so every insert lands in indexes of
    -- the same size.
    CREATE TABLE bench.activities_plain (LIKE app.activities INCLUDING ALL);
    INSERT INTO bench.activities_plain OVERRIDING SYSTEM VALUE SELECT * FROM app.activities;
    CREATE TABLE bench.assignments_copy (LIKE app.assignments INCLUDING ALL);
    INSERT INTO bench.assignments_copy SELECT * FROM app.assignments;
    CREATE TABLE bench.activities_rowtrigger (LIKE app.activities INCLUDING ALL);
    INSERT INTO bench.activities_rowtrigger OVERRIDING SYSTEM VALUE SELECT * FROM app.activities;
    CREATE TABLE bench.assignments_stmt (LIKE app.assignments INCLUDING ALL);
    INSERT INTO bench.assignments_stmt SELECT * FROM app.assignments;
    CREATE TABLE bench.activities_stmttrigger (LIKE app.activities INCLUDING ALL);
    INSERT INTO bench.activities_stmttrigger OVERRIDING SYSTEM VALUE SELECT * FROM app.activities;
    PERFORM pg_catalog.setval(pg_catalog.pg_get_serial_sequence(t, 'id'), (SELECT max(id) FROM app.activities))
       FROM unnest(ARRAY['bench.activities_plain', 'bench.activities_rowtrigger', 'bench.activities_stmttrigger']) AS t;
    CREATE TABLE bench.last_contact_before AS SELECT id, last_contact_date FROM app.assignments;
    CREATE FUNCTION bench.touch_last_contact() RETURNS trigger LANGUAGE plpgsql AS $f$
    BEGIN
        UPDATE bench.assignments_copy
           SET last_contact_date = NEW.occurred_at::date
         WHERE mentor_id = NEW.mentor_id AND contact_id = NEW.contact_id
           AND (last_contact_date IS NULL OR last_contact_date < NEW.occurred_at::date);
        RETURN NULL;
    END $f$;
    CREATE TRIGGER touch_last_contact AFTER INSERT ON bench.activities_rowtrigger
        FOR EACH ROW EXECUTE FUNCTION bench.touch_last_contact();
    -- the hand-written set-based trigger: one raise-only UPDATE per statement
    CREATE FUNCTION bench.raise_last_contact() RETURNS trigger LANGUAGE plpgsql AS $f$
    BEGIN
        UPDATE bench.assignments_stmt a
           SET last_contact_date = n.latest
          FROM (SELECT mentor_id, contact_id, max(occurred_at)::date AS latest
                  FROM new_rows GROUP BY mentor_id, contact_id) n
         WHERE a.mentor_id = n.mentor_id AND a.contact_id = n.contact_id
           AND (a.last_contact_date IS NULL OR a.last_contact_date < n.latest);
        RETURN NULL;
    END $f$;
    CREATE TRIGGER raise_last_contact AFTER INSERT ON bench.activities_stmttrigger
        REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION bench.raise_last_contact();
END $$;

-- Back to the state before a bulk-insert trial: no benchmark activities, the
-- last contacts as they were.
CREATE FUNCTION bench.reset_activities() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    -- The benchmark's rows have no note; the app's history does. Deleting the
    -- benchmark's rows would recompute every assignment: skip it.
    DELETE FROM bench.activities_plain WHERE note IS NULL;
    DELETE FROM bench.activities_rowtrigger WHERE note IS NULL;
    DELETE FROM bench.activities_stmttrigger WHERE note IS NULL;
    ALTER TABLE app.activities DISABLE TRIGGER followup_activity_delete;
    DELETE FROM app.activities WHERE note IS NULL;
    ALTER TABLE app.activities ENABLE TRIGGER followup_activity_delete;
    UPDATE app.assignments a SET last_contact_date = b.last_contact_date
      FROM bench.last_contact_before b
     WHERE a.id = b.id AND a.last_contact_date IS DISTINCT FROM b.last_contact_date;
    UPDATE bench.assignments_copy a SET last_contact_date = b.last_contact_date
      FROM bench.last_contact_before b
     WHERE a.id = b.id AND a.last_contact_date IS DISTINCT FROM b.last_contact_date;
    UPDATE bench.assignments_stmt a SET last_contact_date = b.last_contact_date
      FROM bench.last_contact_before b
     WHERE a.id = b.id AND a.last_contact_date IS DISTINCT FROM b.last_contact_date;
END $$;

-- After the bulk inserts: pg_followup's last contacts are exactly the latest
-- activities, and both hand-written triggers agree.
CREATE FUNCTION bench.tracking_is_exact() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    RETURN NOT EXISTS (
               SELECT 1 FROM app.assignments a
                WHERE a.last_contact_date IS DISTINCT FROM
                      (SELECT max(occurred_at AT TIME ZONE 'UTC')::date FROM app.activities x
                        WHERE x.mentor_id = a.mentor_id AND x.contact_id = a.contact_id))
       AND NOT EXISTS (
               SELECT 1 FROM app.assignments a JOIN bench.assignments_copy c USING (id)
                WHERE a.last_contact_date IS DISTINCT FROM c.last_contact_date)
       AND NOT EXISTS (
               SELECT 1 FROM app.assignments a JOIN bench.assignments_stmt c USING (id)
                WHERE a.last_contact_date IS DISTINCT FROM c.last_contact_date);
END $$;

-- Drift, and the hand-written way to find and fix it: a correlated subquery
-- per assignment over both tracked tables and the corrections. bench.calls is
-- the second activity table; bench/run.sh fills and tracks it for the repair
-- benchmark only, so the earlier sections see one tracked table.
CREATE TABLE bench.calls (assignment bigint, called_at timestamptz);
CREATE FUNCTION bench.expected(a app.assignments) RETURNS date LANGUAGE sql STABLE AS $$
    SELECT greatest(
        (SELECT max(x.occurred_at AT TIME ZONE 'UTC')::date FROM app.activities x
          WHERE x.mentor_id = a.mentor_id AND x.contact_id = a.contact_id),
        (SELECT max(c.called_at AT TIME ZONE 'UTC')::date FROM bench.calls c WHERE c.assignment = a.id),
        (SELECT cc.new_value FROM followup.contact_corrections cc WHERE cc.assignment_id = a.id::text
          ORDER BY cc.corrected_at DESC, cc.correction_id DESC LIMIT 1))
$$;
CREATE FUNCTION bench.naive_verify() RETURNS bigint LANGUAGE sql AS $$
    SELECT count(*) FROM app.assignments a WHERE a.last_contact_date IS DISTINCT FROM bench.expected(a)
$$;
CREATE FUNCTION bench.naive_repair() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    fixed bigint;
BEGIN
    UPDATE app.assignments a SET last_contact_date = bench.expected(a)
     WHERE a.last_contact_date IS DISTINCT FROM bench.expected(a);
    GET DIAGNOSTICS fixed = ROW_COUNT;
    RETURN fixed;
END $$;
-- every tenth assignment's last contact lost, as by a restore without the triggers
CREATE FUNCTION bench.drift() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    UPDATE app.assignments SET last_contact_date = NULL WHERE id % 10 = 0 AND last_contact_date IS NOT NULL;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
