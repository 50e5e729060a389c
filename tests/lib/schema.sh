# Snapshots for the upgrade checks (tests/integration/upgrade.sh, packages.sh).
# Source after tests/lib/integration.sh.
#   snapshot             the data of $DB that an upgrade must keep: registrations,
#                        policies, runs, messages, alerts, corrections, tracking triggers
#   describe DATABASE    every object of the extension in DATABASE, to compare an
#                        upgraded schema with a fresh install's

snapshot() {
    psql -X -At -q -v ON_ERROR_STOP=1 -d "$DB" <<'SQL'
SELECT 'assignments', relation, id_column, mentor_column, last_contact_column, created_column, coordinator_column,
       organization_column, active_when, payload_columns, registered_by FROM followup.assignment_tables;
SELECT 'activities', relation, occurred_column, match_columns, assignment_columns FROM followup.activity_tables;
SELECT 'policy', organization, remind_after_days, repeat_every_days, escalate_after_days, max_reminders, enabled
  FROM followup.policies ORDER BY organization;
SELECT 'run', run_id, trigger, status, as_of, assignments_scanned, reminders_enqueued, duplicates_suppressed
  FROM followup.runs ORDER BY run_id;
SELECT 'outbox', message_id, assignment_id, cycle_start, kind, sequence, recipient_role, recipient_id, payload,
       status, attempts, lease_id, claimed_by, delivered_at, last_error FROM followup.outbox ORDER BY message_id;
SELECT 'alert', alert_id, kind, run_id, message, resolved_at FROM followup.alerts ORDER BY alert_id;
SELECT 'correction', correction_id, assignment_id, old_value, new_value, reason, corrected_by
  FROM followup.contact_corrections ORDER BY correction_id;
SELECT 'trigger', tgrelid::regclass, tgname, tgenabled FROM pg_trigger
 WHERE tgname LIKE 'followup_activity_%' AND tgname NOT LIKE 'followup_activity_truncate%'
 ORDER BY tgrelid::regclass::text, tgname;
SQL
}
describe() {
    psql -X -At -q -v ON_ERROR_STOP=1 -d "$1" <<'SQL'
WITH ext AS (SELECT oid FROM pg_extension WHERE extname = 'pg_followup'),
members AS (SELECT d.classid, d.objid FROM pg_depend d, ext WHERE d.refobjid = ext.oid AND d.deptype = 'e')
SELECT 'relation ' || c.oid::regclass || ' ' || c.relkind::text || coalesce(' ' || array_to_string(c.reloptions, ','), '')
  FROM pg_class c JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = c.oid
UNION ALL
SELECT 'column ' || a.attrelid::regclass || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
       || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
       || coalesce(' collate ' || nullif(co.collname, 'default'), '')
       || coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), '')
  FROM pg_attribute a
  JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = a.attrelid
  LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
  LEFT JOIN pg_collation co ON co.oid = a.attcollation
 WHERE a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'index ' || pg_get_indexdef(i.indexrelid)
  FROM pg_index i JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = i.indrelid
UNION ALL
SELECT 'constraint ' || con.conrelid::regclass || ' ' || con.conname || ' ' || pg_get_constraintdef(con.oid)
  FROM pg_constraint con JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = con.conrelid
UNION ALL
SELECT 'trigger ' || pg_get_triggerdef(t.oid)
  FROM pg_trigger t JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = t.tgrelid
 WHERE NOT t.tgisinternal
UNION ALL
SELECT 'view ' || c.oid::regclass || ' ' || pg_get_viewdef(c.oid)
  FROM pg_class c JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = c.oid WHERE c.relkind = 'v'
UNION ALL
SELECT 'function ' || pg_get_functiondef(p.oid) || ' acl ' || coalesce(p.proacl::text, 'default')
  FROM pg_proc p JOIN members m ON m.classid = 'pg_proc'::regclass AND m.objid = p.oid
UNION ALL
SELECT 'type ' || t.oid::regtype || ' ' || coalesce((SELECT string_agg(enumlabel, ',' ORDER BY enumsortorder)
                                                      FROM pg_enum WHERE enumtypid = t.oid), '')
  FROM pg_type t JOIN members m ON m.classid = 'pg_type'::regclass AND m.objid = t.oid
UNION ALL
SELECT 'event trigger ' || e.evtname || ' ' || e.evtevent || ' ' || e.evtfoid::regproc::text
  FROM pg_event_trigger e JOIN members m ON m.classid = 'pg_event_trigger'::regclass AND m.objid = e.oid
UNION ALL
SELECT 'table acl ' || c.oid::regclass || ' ' || coalesce(c.relacl::text, 'default')
  FROM pg_class c JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = c.oid
UNION ALL
SELECT 'dumped ' || cfg.c::regclass || ' ' || coalesce(cond.w, '')
  FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS cfg(c, w), LATERAL (SELECT cfg.w) cond(w)
 WHERE e.extname = 'pg_followup'
ORDER BY 1
SQL
}
