-- A small peer-mentoring app, as the app team would have it before pg_followup:
-- people, organizations, assignments (a mentor looks after a contact, a
-- coordinator oversees) and the activities mentors log. Used by the demo, the
-- integration tests and the benchmark.
--
-- Activities identify the pair (mentor_id, contact_id) they are about, and say
-- how they were registered:
--   direct             the mentor logs their own contact
--   proxy              someone else logs it on the mentor's behalf
--   bulk               a group session or an import logs many at once
--   coordinator_proxy  the coordinator logs it for the mentor
CREATE SCHEMA app;

CREATE TABLE app.organizations (
    id   text PRIMARY KEY,
    name text NOT NULL
);

CREATE TABLE app.people (
    id   bigint PRIMARY KEY,
    name text NOT NULL,
    role text NOT NULL CHECK (role IN ('mentor', 'contact', 'coordinator'))
);

CREATE TABLE app.assignments (
    id                bigint PRIMARY KEY,
    mentor_id         bigint NOT NULL REFERENCES app.people,
    contact_id        bigint NOT NULL REFERENCES app.people,
    coordinator_id    bigint REFERENCES app.people,
    organization      text NOT NULL REFERENCES app.organizations,
    status            text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused', 'closed')),
    created_at        date NOT NULL DEFAULT current_date,
    last_contact_date date,
    UNIQUE (mentor_id, contact_id)
);

CREATE TABLE app.activities (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    mentor_id     bigint NOT NULL,
    contact_id    bigint NOT NULL,
    occurred_at   timestamptz NOT NULL,
    registration  text NOT NULL CHECK (registration IN ('direct', 'proxy', 'bulk', 'coordinator_proxy')),
    registered_by text NOT NULL DEFAULT current_user,
    note          text
);
CREATE INDEX activities_pair_idx ON app.activities (mentor_id, contact_id, occurred_at);

-- app.seed(n, as_of): n assignments in 20 organizations (ids 1..n), one
-- mentor per four assignments, 10% closed, 1 in 7 never contacted, created 60
-- to 120 days and last contacted 0 to 60 days before `as_of` (default: today).
-- Activities are inserted with registration 'bulk' (an import), at 10:00 UTC.
-- Deterministic for a given n and as_of: tests pass a fixed as_of, so what is
-- due does not depend on the day they run.
CREATE FUNCTION app.seed(n int, as_of date DEFAULT current_date) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    mentors int := greatest(n / 4, 1);
BEGIN
    INSERT INTO app.organizations
    SELECT 'org-' || lpad(g::text, 2, '0'), 'Organization ' || g FROM generate_series(1, 20) g;
    INSERT INTO app.people SELECT g, 'Coordinator ' || g, 'coordinator' FROM generate_series(1, 20) g;
    INSERT INTO app.people SELECT 1000 + g, 'Mentor ' || g, 'mentor' FROM generate_series(1, mentors) g;
    INSERT INTO app.people SELECT 10000000 + g, 'Contact ' || g, 'contact' FROM generate_series(1, n) g;
    INSERT INTO app.assignments (id, mentor_id, contact_id, coordinator_id, organization, status, created_at)
    SELECT g,
           1000 + 1 + (g % mentors),
           10000000 + g,
           1 + (g % 20),
           'org-' || lpad((1 + g % 20)::text, 2, '0'),
           CASE WHEN g % 10 = 0 THEN 'closed' ELSE 'active' END,
           as_of - (60 + g % 61)::int
      FROM generate_series(1, n) g;
    -- every assignment but ~15% has one to three activities in the last 60 days
    INSERT INTO app.activities (mentor_id, contact_id, occurred_at, registration, note)
    SELECT a.mentor_id, a.contact_id,
           ((as_of - ((a.id * 7 + k * 13) % 60)::int) + time '10:00') AT TIME ZONE 'UTC',
           'bulk', 'imported'
      FROM app.assignments a
     CROSS JOIN LATERAL generate_series(1, 1 + (a.id % 3)) k
     WHERE a.id % 7 <> 3;
END
$$;
