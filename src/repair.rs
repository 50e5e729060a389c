//! Finding and repairing drift (README, "Verify and repair"), and TRUNCATE.
//!
//! Drift is an assignment whose stored last contact is not what the tracking
//! triggers keep: the latest tracked activity under the date rules, floored
//! by the latest correction (tracking.rs, `bulk_recompute_sql`). It comes
//! from writes the triggers did not see (an import with triggers disabled, a
//! restore that skipped them, the app writing the column itself).
//! `followup.verify` lists it, `followup.repair` fixes it in one statement
//! and audits each change in `followup.repairs`. Both are one set-based pass
//! over the assignments, every tracked table aggregated once.
//!
//! TRUNCATE fires no row triggers: a BEFORE TRUNCATE statement trigger notes
//! the assignments that have activities in the table, and the AFTER TRUNCATE
//! one recomputes just those, once the table (or every table of the
//! statement) is empty.
//!
//! Every statement on the app's tables runs as the assignments table's
//! owner (security.rs); the audit rows are written as ourselves.

use crate::errors::{raise, required};
use crate::local_time::iso_text_sql;
use crate::query::execute;
use crate::registry::{self, AssignmentTable, EQUALS};
use crate::security;
use crate::tracking::{bulk_recompute_sql, recompute_sql, LATEST_CORRECTION};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::PgSqlErrorCode::*;

/// SQL: the drifted assignments: `(id as text, id, stored, expected, value)`,
/// stored and expected as ISO text, with the expected value itself as `value`.
///
/// A stored value equal to the latest correction is no drift, even below the
/// latest activity: `set_last_contact` may set a date below existing
/// activities, and the triggers keep it until a later write to that
/// assignment's activities recomputes it (README, "Correcting a last
/// contact"); verify must not call it drift, nor repair undo it.
fn drift_sql(client: &SpiClient<'_>, assignments: &AssignmentTable) -> String {
    let activities = registry::load_activity_tables(client);
    let (joins, expected) = bulk_recompute_sql(assignments, &activities);
    let lc = format!("a.{}", assignments.last_contact_column);
    format!(
        "SELECT (a.{id})::pg_catalog.text AS assignment_id, a.{id} AS id_value,
                {stored} AS stored, {expected_text} AS expected, {expected} AS value
           FROM {table} AS a
           {joins}
          WHERE {lc} IS DISTINCT FROM {expected} AND ({correction} IS NULL OR {lc} IS DISTINCT FROM {correction})",
        correction = LATEST_CORRECTION,
        id = assignments.id_column,
        stored = iso_text_sql(&lc, assignments.last_contact_kind),
        expected_text = iso_text_sql(&expected, assignments.last_contact_kind),
        table = assignments.table,
    )
}

#[pg_extern(sql = false)]
fn _verify(
    max_rows: Option<i32>,
) -> TableIterator<
    'static,
    (name!(assignment_id, String), name!(stored, Option<String>), name!(expected, Option<String>)),
> {
    let max_rows = required(max_rows, "max_rows");
    if max_rows < 1 {
        raise(ERRCODE_INVALID_PARAMETER_VALUE, format!("max_rows must be positive, not {max_rows}"));
    }
    let rows: Vec<(String, Option<String>, Option<String>)> = Spi::connect(|client| {
        let assignments = registry::require_assignment_table(&client);
        // MATERIALIZED: planned under the LIMIT, the joins would become
        // nested loops over the aggregated activities that "stop early",
        // yet the ORDER BY needs every drifted row (minutes at 300,000
        // assignments instead of a second).
        let sql = format!(
            "WITH drift AS MATERIALIZED ({})
             SELECT d.assignment_id, d.stored, d.expected FROM drift AS d ORDER BY d.assignment_id LIMIT $1",
            drift_sql(&client, &assignments)
        );
        security::as_owner_statement(assignments.owner, &sql, || {
            client
                .select(sql.as_str(), None, &[max_rows.into()])
                .unwrap_or_else(|e| crate::errors::internal(e.to_string()))
                .map(|row| {
                    (
                        row.get::<String>(1).ok().flatten().unwrap_or_default(),
                        row.get::<String>(2).ok().flatten(),
                        row.get::<String>(3).ok().flatten(),
                    )
                })
                .collect()
        })
    });
    TableIterator::new(rows)
}

/// Sets every drifted assignment to what tracking keeps and audits each
/// change. Two statements: the UPDATE of the app's table as its owner
/// (security.rs), the audit rows as ourselves.
#[pg_extern(sql = false)]
fn _repair(reason: Option<&str>) -> i64 {
    let reason = required(reason, "reason");
    if reason.trim().is_empty() {
        raise(ERRCODE_INVALID_PARAMETER_VALUE, "reason must say why the last contacts are repaired");
    }
    Spi::connect_mut(|client| {
        let assignments = registry::require_assignment_table(client);
        let sql = format!(
            "WITH drift AS MATERIALIZED ({drift})
             UPDATE {table} AS a SET {lc} = drift.value
               FROM drift WHERE a.{id} = drift.id_value
             RETURNING drift.assignment_id, drift.stored, drift.expected",
            drift = drift_sql(client, &assignments),
            table = assignments.table,
            lc = assignments.last_contact_column,
            id = assignments.id_column,
        );
        let mut ids = Vec::new();
        let mut stored = Vec::new();
        let mut expected = Vec::new();
        security::as_owner_statement(assignments.owner, &sql, || {
            for row in client.update(sql.as_str(), None, &[]).unwrap_or_else(|e| crate::errors::internal(e.to_string()))
            {
                ids.push(row.get::<String>(1).ok().flatten().unwrap_or_default());
                stored.push(row.get::<String>(2).ok().flatten());
                expected.push(row.get::<String>(3).ok().flatten());
            }
        });
        let repaired = ids.len() as i64;
        if repaired > 0 {
            execute(
                client,
                "INSERT INTO followup.repairs (assignment_id, old_value, new_value, reason, repaired_by)
                 SELECT r.id, r.old_value, r.new_value, $4, $5
                   FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), pg_catalog.unnest($2::pg_catalog.text[]),
                                   pg_catalog.unnest($3::pg_catalog.text[])) AS r (id, old_value, new_value)",
                &[
                    ids.into(),
                    stored.into(),
                    expected.into(),
                    reason.trim().into(),
                    security::role_name(security::acting_role()).into(),
                ],
            );
        }
        repaired
    })
}

thread_local! {
    /// The assignments with activities in the tables a TRUNCATE empties,
    /// noted by its BEFORE TRUNCATE triggers for its AFTER TRUNCATE ones,
    /// with the transaction they belong to. Kept in memory, not in a table:
    /// nothing of the caller's can take part.
    static TRUNCATED: std::cell::RefCell<(pg_sys::TransactionId, std::collections::HashSet<String>)> =
        std::cell::RefCell::new((pg_sys::InvalidTransactionId, std::collections::HashSet::new()));
}

/// BEFORE TRUNCATE of a tracked table (or one of its partitions): note the
/// assignments with an activity in it.
pub fn before_truncate(client: &mut SpiClient<'_>, relid: pg_sys::Oid) {
    let Some(assignments) = registry::load_assignment_table(client) else { return };
    let activities = registry::load_activity_tables(client);
    let root: pg_sys::Oid = crate::query::one(
        client,
        "SELECT coalesce(pg_catalog.pg_partition_root($1), $1)::pg_catalog.oid",
        &[relid.into()],
    )
    .unwrap_or(relid);
    let Some(activity) = activities.iter().find(|a| a.relid == root) else { return };
    let truncated = crate::registry::qualified_name(client, relid).unwrap_or_else(|| activity.table.clone());
    let matches = activity
        .keys
        .iter()
        .map(|k| format!("a.{} {EQUALS} r.{}", k.assignment_column, k.activity_column))
        .collect::<Vec<_>>()
        .join(" AND ");
    let sql = format!(
        "SELECT (a.{id})::pg_catalog.text FROM {table} AS a
          WHERE EXISTS (SELECT 1 FROM {truncated} AS r WHERE {matches})",
        id = assignments.id_column,
        table = assignments.table,
    );
    let noted: Vec<String> = security::as_owner_statement(assignments.owner, &sql, || {
        client
            .select(sql.as_str(), None, &[])
            .unwrap_or_else(|e| crate::errors::internal(e.to_string()))
            .filter_map(|row| row.get::<String>(1).ok().flatten())
            .collect()
    });
    let transaction = unsafe { pg_sys::GetTopTransactionId() };
    TRUNCATED.with(|t| {
        let mut t = t.borrow_mut();
        if t.0 != transaction {
            *t = (transaction, std::collections::HashSet::new());
        }
        t.1.extend(noted);
    });
}

/// AFTER TRUNCATE: recompute the noted assignments from what is left.
pub fn after_truncate(client: &mut SpiClient<'_>) {
    let transaction = unsafe { pg_sys::GetTopTransactionId() };
    let noted: Vec<String> = TRUNCATED.with(|t| {
        let mut t = t.borrow_mut();
        if t.0 != transaction {
            return Vec::new();
        }
        t.1.drain().collect()
    });
    if noted.is_empty() {
        return;
    }
    let Some(assignments) = registry::load_assignment_table(client) else { return };
    let activities = registry::load_activity_tables(client);
    let recompute = recompute_sql(&assignments, &activities);
    let lc = &assignments.last_contact_column;
    let sql = format!(
        "UPDATE {table} AS a SET {lc} = {recompute}
          WHERE (a.{id})::pg_catalog.text OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[])
            AND a.{lc} IS DISTINCT FROM {recompute}",
        table = assignments.table,
        id = assignments.id_column,
    );
    security::as_owner_statement(assignments.owner, &sql, || execute(client, &sql, &[noted.into()]));
}
