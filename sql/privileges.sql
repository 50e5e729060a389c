-- Privileges. The extension creates no roles. Functions that change
-- state are not executable by PUBLIC; the README shows the GRANTs for an
-- admin, a notifier and a monitoring role.

REVOKE ALL ON ALL TABLES IN SCHEMA followup FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA followup FROM PUBLIC;

REVOKE EXECUTE ON FUNCTION
    followup.track_assignments(regclass, name, name, name, name, name, name, text, name[]),
    followup.track_activities(regclass, name, name[], name[]),
    followup.untrack_activities(regclass),
    followup.activity_statement_trigger(),
    followup.activity_replica_trigger(),
    followup.activity_truncate_trigger(),
    followup._verify(int),
    followup.verify(int),
    followup._repair(text),
    followup.repair(text),
    followup._sync_partition_triggers(),
    followup._on_ddl_command_end(),
    followup._on_sql_drop(),
    followup._policies_default_row(),
    followup._raise_alert(followup.alert_kind, bigint, text),
    followup._run_now(date),
    followup._as_of(date),
    followup._preview_sql(),
    followup._tally_scanned(text),
    followup._tally_due(text),
    followup.run_now(date),
    followup.preview(date),
    followup._max_attempts(),
    followup.claim(text, int, interval),
    followup.ack(uuid, bigint[]),
    followup.fail(uuid, bigint, text, interval),
    followup.requeue_dead(bigint[]),
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
    followup.set_last_contact(text, date, text)
FROM PUBLIC;

GRANT USAGE ON SCHEMA followup TO PUBLIC;
