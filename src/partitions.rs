//! Keeping the tracking triggers on every table that needs them.
//!
//! A tracked activity table carries four triggers (README, "How
//! last_contact_date is kept true"): three statement triggers with transition
//! tables and a row trigger enabled only for logical-replication apply. Rows
//! inserted straight into a partition fire only that partition's statement
//! triggers, so every partition, at any depth, carries the three statement
//! triggers too. `sync_triggers` makes the triggers match the registrations;
//! it runs after every registration change and, through the
//! `followup_partitions` event trigger, after partitions are created,
//! attached or detached.

use crate::query::execute;
use crate::registry::{self, quote_ident};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

/// Names of the triggers this extension puts on activity tables.
const INSERT_TRIGGER: &str = "followup_activity_insert";
const UPDATE_TRIGGER: &str = "followup_activity_update";
const DELETE_TRIGGER: &str = "followup_activity_delete";
const REPLICA_TRIGGER: &str = "followup_activity_replica";
const TRUNCATE_NOTE_TRIGGER: &str = "followup_activity_truncate_note";
const TRUNCATE_TRIGGER: &str = "followup_activity_truncate";
const STATEMENT_TRIGGERS: [&str; 3] = [INSERT_TRIGGER, UPDATE_TRIGGER, DELETE_TRIGGER];
/// BEFORE TRUNCATE notes the assignments with activities in the table, AFTER
/// TRUNCATE recomputes them (repair.rs); on the table and every partition.
const TRUNCATE_TRIGGERS: [(&str, &str); 2] = [(TRUNCATE_NOTE_TRIGGER, "BEFORE"), (TRUNCATE_TRIGGER, "AFTER")];

const TRACKED_RELATIONS: &str = include_str!("../sql/queries/tracked_relations.sql");
const TRACKING_TRIGGERS: &str = include_str!("../sql/queries/tracking_triggers.sql");

/// `followup._sync_partition_triggers(relids oid[])`: called by the
/// `followup_partitions` event trigger after CREATE TABLE … PARTITION OF,
/// ATTACH PARTITION and DETACH PARTITION, with the tables the command named
/// (in a tracked table's partition tree).
#[pg_extern(sql = false)]
fn _sync_partition_triggers_for(relids: Option<Vec<pg_sys::Oid>>) {
    Spi::connect_mut(|client| sync_triggers(client, relids.as_deref()));
}

/// `followup._sync_partition_triggers()` of the schema before 0.4.0, which
/// its upgrade scripts call while this library is installed: a full sync.
#[pg_extern(sql = false)]
fn _sync_partition_triggers() {
    Spi::connect_mut(|client| sync_triggers(client, None));
}

/// Makes the tracking triggers match the registrations: the four triggers on
/// each tracked table, the three statement triggers on each of its partitions
/// at any depth (rows inserted straight into a partition fire only the
/// partition's statement triggers), the row trigger's clones enabled for
/// replication only, and no trigger of ours on a table that is no longer
/// tracked (untracked, or a detached partition).
///
/// With `scope`, triggers are added only for the registrations whose
/// partition trees hold one of those tables: DDL on one tracked table never
/// depends on the state of another. A trigger of someone else's with one of
/// our names is left alone, with a WARNING (the table is then not tracked
/// on that path), instead of failing the statement that caused the sync.
pub fn sync_triggers(client: &mut SpiClient<'_>, scope: Option<&[pg_sys::Oid]>) {
    // (table, is the registered table itself, registered table's OID,
    // relation OID), of every registration
    let tracked: Vec<(String, bool, pg_sys::Oid, pg_sys::Oid)> = client
        .select(TRACKED_RELATIONS, None, &[])
        .map(|rows| {
            rows.filter_map(|r| Some((r.get(1).ok()??, r.get(2).ok()??, r.get(3).ok()??, r.get(4).ok()??))).collect()
        })
        .unwrap_or_default();
    let in_scope: Vec<pg_sys::Oid> = match scope {
        None => tracked.iter().map(|(_, _, registered, _)| *registered).collect(),
        Some(relids) => tracked
            .iter()
            .filter(|(_, _, _, relid)| relids.contains(relid))
            .map(|(_, _, registered, _)| *registered)
            .collect(),
    };
    let wanted: Vec<(String, bool, pg_sys::Oid)> = tracked
        .iter()
        .filter(|(_, _, registered, _)| in_scope.contains(registered))
        .map(|(table, is_root, registered, _)| (table.clone(), *is_root, *registered))
        .collect();

    // (table, trigger, enabled, is a clone of a parent's trigger)
    let existing: Vec<(String, String, String, bool)> = client
        .select(TRACKING_TRIGGERS, None, &[])
        .map(|rows| {
            rows.filter_map(|r| Some((r.get(1).ok()??, r.get(2).ok()??, r.get(3).ok()??, r.get(4).ok()??))).collect()
        })
        .unwrap_or_default();
    // triggers of any function on the wanted tables, to see a name taken by
    // someone else's
    let tables: Vec<String> = wanted.iter().map(|(t, _, _)| t.clone()).collect();
    let named: Vec<(String, String)> = client
        .select(
            "SELECT pg_catalog.format('%I.%I', n.nspname, c.relname), tg.tgname::pg_catalog.text
               FROM pg_catalog.pg_trigger AS tg
               JOIN pg_catalog.pg_class AS c ON c.oid OPERATOR(pg_catalog.=) tg.tgrelid
               JOIN pg_catalog.pg_namespace AS n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
              WHERE pg_catalog.format('%I.%I', n.nspname, c.relname) OPERATOR(pg_catalog.=) ANY ($1)",
            None,
            &[tables.into()],
        )
        .map(|rows| rows.filter_map(|r| Some((r.get(1).ok()??, r.get(2).ok()??))).collect())
        .unwrap_or_default();
    let taken = |table: &str, trigger: &str| {
        let foreign = named.iter().any(|(t, n)| t == table && n == trigger);
        if foreign {
            warning!(
                "pg_followup: {table} has a trigger named {trigger} that is not pg_followup's; not tracking that path of {table} (rename or drop it, then register again)"
            );
        }
        foreign
    };
    let has = |table: &str, trigger: &str| existing.iter().any(|(t, n, _, _)| t == table && n == trigger);
    // The TRUNCATE trigger function exists from the schema of 0.3.0 on; a
    // library that is newer than the schema (before ALTER EXTENSION UPDATE,
    // which adds them) leaves them out.
    let truncate_tracked = crate::query::one::<bool>(
        client,
        "SELECT pg_catalog.to_regprocedure('followup.activity_truncate_trigger()') IS NOT NULL",
        &[],
    )
    .unwrap_or(false);

    let mut ddl = Vec::new();
    // Partitions created or attached since the last sync: their rows are
    // activities from now on.
    let mut new_partitions: Vec<(&str, pg_sys::Oid)> = Vec::new();
    for (table, is_root, registered) in &wanted {
        if !is_root && !has(table, INSERT_TRIGGER) {
            new_partitions.push((table, *registered));
        }
        for trigger in STATEMENT_TRIGGERS {
            if !has(table, trigger) && !taken(table, trigger) {
                let (event, referencing) = match trigger {
                    INSERT_TRIGGER => ("INSERT", "NEW TABLE AS followup_new"),
                    UPDATE_TRIGGER => ("UPDATE", "OLD TABLE AS followup_old NEW TABLE AS followup_new"),
                    _ => ("DELETE", "OLD TABLE AS followup_old"),
                };
                ddl.push(format!(
                    "CREATE TRIGGER {trigger} AFTER {event} ON {table} REFERENCING {referencing}
                     FOR EACH STATEMENT EXECUTE FUNCTION followup.activity_statement_trigger()"
                ));
            }
        }
        for (trigger, timing) in TRUNCATE_TRIGGERS {
            if truncate_tracked && !has(table, trigger) && !taken(table, trigger) {
                ddl.push(format!(
                    "CREATE TRIGGER {trigger} {timing} TRUNCATE ON {table}
                     FOR EACH STATEMENT EXECUTE FUNCTION followup.activity_truncate_trigger()"
                ));
            }
        }
        if *is_root && !has(table, REPLICA_TRIGGER) && !taken(table, REPLICA_TRIGGER) {
            // Row-level, and enabled only while session_replication_role =
            // replica: logical-replication apply fires no statement triggers.
            // On a partitioned table Postgres clones it onto every partition.
            ddl.push(format!(
                "CREATE TRIGGER {REPLICA_TRIGGER} AFTER INSERT OR UPDATE OR DELETE ON {table}
                 FOR EACH ROW EXECUTE FUNCTION followup.activity_replica_trigger()"
            ));
            ddl.push(format!("ALTER TABLE {table} ENABLE REPLICA TRIGGER {REPLICA_TRIGGER}"));
        }
    }
    for (table, trigger, enabled, is_clone) in &existing {
        let still_wanted = tracked
            .iter()
            .any(|(t, is_root, _, _)| t == table && (trigger != REPLICA_TRIGGER || *is_root || *is_clone));
        if !still_wanted && !is_clone {
            ddl.push(format!("DROP TRIGGER {} ON {table}", quote_ident(trigger)));
        } else if still_wanted && trigger == REPLICA_TRIGGER && enabled != "R" {
            ddl.push(format!("ALTER TABLE {table} ENABLE REPLICA TRIGGER {REPLICA_TRIGGER}"));
        }
    }
    if ddl.is_empty() {
        return;
    }
    // Our own ALTER TABLE … ENABLE REPLICA TRIGGER fires the event trigger
    // again; the nested call has nothing to add.
    if SYNCING.get() {
        return;
    }
    let _syncing = Syncing::enter();
    for statement in &ddl {
        execute(client, statement, &[]);
    }
    if new_partitions.is_empty() {
        return;
    }
    let Some(assignments) = registry::load_assignment_table(client) else { return };
    let activities = registry::load_activity_tables(client);
    for (partition, registered) in new_partitions {
        if let Some(activity) = activities.iter().find(|a| a.relid == registered) {
            crate::registration::backfill(client, &assignments, activity, partition);
        }
    }
}

thread_local! {
    static SYNCING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Clears the flag however the sync ends (errors unwind through Drop).
struct Syncing;
impl Syncing {
    fn enter() -> Syncing {
        SYNCING.set(true);
        Syncing
    }
}
impl Drop for Syncing {
    fn drop(&mut self) {
        SYNCING.set(false);
    }
}
