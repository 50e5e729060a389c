-- Privileges. The extension creates no roles. Functions that change
-- state are not executable by PUBLIC; the README shows the GRANTs for an
-- admin, a notifier and a monitoring role.
--
-- Executable by PUBLIC on purpose (README, "Roles and privileges"):
-- * the tracking trigger functions: a trigger function cannot be called
--   directly, and the owner of a tracked partitioned table must be able to
--   create and attach partitions (PostgreSQL clones the row trigger onto
--   them as that owner); on a table that is not tracked they do nothing;
-- * followup._tally_scanned / _tally_due: the run's INSERT runs as the
--   assignments table's owner (src/security.rs) and calls them; they only
--   count rows in the calling backend's memory;
-- * followup._acting_role(): the name of the caller's own role.

REVOKE ALL ON ALL TABLES IN SCHEMA followup FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA followup FROM PUBLIC;

REVOKE EXECUTE ON FUNCTION
    followup.track_assignments(regclass, name, name, name, name, name, name, text, name[]),
    followup.track_activities(regclass, name, name[], name[]),
    followup.untrack_activities(regclass),
    followup._verify(int),
    followup.verify(int),
    followup._repair(text),
    followup.repair(text),
    followup._sync_partition_triggers(oid[]),
    followup._audit_policy_change(),
    followup._on_ddl_command_end(),
    followup._on_sql_drop(),
    followup._policies_default_row(),
    followup._raise_alert(followup.alert_kind, bigint, text),
    followup._run_now(date),
    followup._preview(date),
    followup.oldest_claimable_age(),
    followup._tally_scanned(text),
    followup._tally_due(text),
    followup.activity_statement_trigger(),
    followup.activity_replica_trigger(),
    followup.activity_truncate_trigger(),
    followup.run_now(date),
    followup.preview(date),
    followup._max_attempts(),
    followup.claim(text, int, interval),
    followup.ack(uuid, bigint[]),
    followup.fail(uuid, bigint, text, interval),
    followup.requeue_dead(bigint[]),
    followup.requeue_dead(bigint[], text),
    followup.resolve_alert(bigint),
    followup._requeue_dead(bigint[], text),
    followup.release(uuid, bigint[]),
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
    followup._lease_messages(uuid, bigint[]),
    followup._prune(int, int),
    followup._resolve_alerts(),
    followup._set_last_contact(text, date, text),
    followup.set_last_contact(text, date, text),
    followup._opens_at(text, timestamptz),
    followup._place_recipient_messages(text, text, date),
    followup.set_away(followup.recipient_role, text, date, date, text),
    followup.end_away(followup.recipient_role, text)
FROM PUBLIC;

GRANT USAGE ON SCHEMA followup TO PUBLIC;

-- (revoked above and granted here, so that a fresh install's ACL reads as an
-- upgraded one's)
GRANT EXECUTE ON FUNCTION
    followup.activity_statement_trigger(),
    followup.activity_replica_trigger(),
    followup.activity_truncate_trigger(),
    followup._tally_scanned(text),
    followup._tally_due(text)
TO PUBLIC;
