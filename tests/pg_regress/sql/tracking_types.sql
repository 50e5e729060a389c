-- Column types (README, "Registering the app's tables"): last contact and occurred columns may each be date,
-- timestamp or timestamptz. Timestamps become local dates (and dates local
-- midnights) in followup.timezone, whatever the session's TimeZone.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_followup CASCADE;
DROP SCHEMA IF EXISTS types CASCADE;
CREATE EXTENSION pg_followup;
RESET client_min_messages;
CREATE SCHEMA types;
SET search_path = types, public;
SET TimeZone = 'UTC';

-- last contact as a date, activities as timestamptz
CREATE TABLE assignments (id int PRIMARY KEY, mentor_id int, last_contact_date date);
INSERT INTO assignments VALUES (1, 1, NULL), (2, 1, NULL);
CREATE TABLE calls (assignment_id int, called_at timestamptz);
CREATE INDEX ON calls (assignment_id, called_at);
SELECT followup.track_assignments('assignments', 'id', 'mentor_id', 'last_contact_date');
SELECT followup.track_activities('calls', 'called_at', '{assignment_id}', '{id}');

-- 2026-11-28 20:00 UTC is already 2026-11-29 in Auckland
INSERT INTO calls VALUES (1, '2026-11-28 20:00+00');
SET followup.timezone = 'Pacific/Auckland';
INSERT INTO calls VALUES (2, '2026-11-28 20:00+00');
SELECT * FROM assignments ORDER BY id;
-- an unknown zone is refused
SET followup.timezone = 'Mars/Olympus_Mons';
SHOW followup.timezone;
RESET followup.timezone;

-- last contact as timestamptz, activities as date: local midnight
CREATE TABLE visits (assignment_id int, visited_on date);
SELECT followup.untrack_activities('calls');
ALTER TABLE assignments ADD COLUMN last_contact_at timestamptz;
SELECT followup.track_assignments('assignments', 'id', 'mentor_id', 'last_contact_at');
SELECT followup.track_activities('visits', 'visited_on', '{assignment_id}', '{id}');
SET followup.timezone = 'Europe/Oslo';
INSERT INTO visits VALUES (1, '2026-07-01'), (2, '2026-12-01');
SELECT id, last_contact_at FROM assignments ORDER BY id;
RESET followup.timezone;

-- last contact as timestamp (local wall clock), activities as timestamptz
CREATE TABLE messages (assignment_id int, sent_at timestamptz);
SELECT followup.untrack_activities('visits');
ALTER TABLE assignments ADD COLUMN last_contact_local timestamp;
SELECT followup.track_assignments('assignments', 'id', 'mentor_id', 'last_contact_local');
SELECT followup.track_activities('messages', 'sent_at', '{assignment_id}', '{id}');
SET followup.timezone = 'America/New_York';
INSERT INTO messages VALUES (1, '2026-11-28 20:00+00'), (1, '2026-11-27 20:00+00');
DELETE FROM messages WHERE sent_at = '2026-11-28 20:00+00';
SELECT id, last_contact_local FROM assignments ORDER BY id;
