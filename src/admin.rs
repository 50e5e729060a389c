//! The admin paths on one assignment: `followup.set_last_contact` (README,
//! "Correcting a last contact"), the authenticated path to correct an
//! assignment's last contact with an audit row, and the lookup that
//! `followup.snooze` / `unsnooze` (sql/admin.sql) use.
//!
//! Authentication is the server's, authorization is a GRANT on the function
//! (EXECUTE is revoked from PUBLIC), the audit is `followup.contact_corrections`
//! naming the acting role (security.rs). The statements on the app's table
//! run as its owner.
//! The SQL wrapper in sql/admin.sql is SECURITY DEFINER with a pinned
//! search_path; everything here is schema-qualified as well.

use crate::errors::{raise, required};
use crate::local_time::{convert, iso, iso_text_sql, today, DateKind, Zone};
use crate::registry;
use crate::security;
use pgrx::datum::Date;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::*;

/// Corrects the assignment's last contact and writes the audit row; returns
/// its correction_id. Every check comes before any write.
#[pg_extern(sql = false)]
fn _set_last_contact(assignment_id: Option<&str>, contact_date: Option<Date>, reason: Option<&str>) -> i64 {
    let assignment_id = required(assignment_id, "assignment_id");
    let contact_date = required(contact_date, "contact_date");
    let reason = required(reason, "reason");
    if reason.trim().is_empty() {
        raise(ERRCODE_INVALID_PARAMETER_VALUE, "reason must say why the last contact is corrected");
    }

    Spi::connect_mut(|client| {
        let assignments = registry::require_assignment_table(client);
        if !contact_date.is_finite() {
            raise(ERRCODE_INVALID_PARAMETER_VALUE, "contact_date must be a finite date");
        }
        let today = today();
        if contact_date.to_pg_epoch_days() > today.to_pg_epoch_days() {
            raise(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!("contact_date is in the future (today is {} in followup.timezone)", iso(today)),
            );
        }

        let not_found = || -> ! {
            raise(ERRCODE_NO_DATA_FOUND, format!("no assignment with id {}", registry::quote_literal(assignment_id)))
        };
        let is_the_assignment = assignments.id_equals_sql("$1");

        let lc = &assignments.last_contact_column;
        // The old value in ISO 8601, whatever the session's DateStyle and
        // TimeZone: a timestamptz in UTC.
        let old_value = iso_text_sql(lc, assignments.last_contact_kind);
        let lock =
            format!("SELECT {old_value} FROM {table} WHERE {is_the_assignment} FOR UPDATE", table = assignments.table);
        let current: Vec<Option<String>> = security::as_owner_statement(assignments.owner, &lock, || {
            client
                .update(&lock, None, &[assignment_id.into()])
                .map(|rows| rows.map(|r| r.get::<String>(1).ok().flatten()).collect())
                .unwrap_or_default()
        });
        match current.len() {
            0 => not_found(),
            1 => {}
            n => raise(
                ERRCODE_CARDINALITY_VIOLATION,
                format!(
                    "assignment id {} matches {n} rows of {}",
                    registry::quote_literal(assignment_id),
                    assignments.table
                ),
            ),
        }
        let old_value = current.into_iter().next().flatten();

        let update = format!(
            "UPDATE {table} SET {lc} = {new_value} WHERE {is_the_assignment}",
            table = assignments.table,
            new_value = convert("$2::pg_catalog.date", DateKind::Date, assignments.last_contact_kind, Zone::SETTING),
        );
        security::as_owner_statement(assignments.owner, &update, || {
            client
                .update(&update, None, &[assignment_id.into(), contact_date.into()])
                .unwrap_or_else(|e| crate::errors::internal(e.to_string()))
        });
        client
            .update(
                "INSERT INTO followup.contact_corrections (assignment_id, old_value, new_value, reason, corrected_by)
                 VALUES ($1, $2, $3, $4, $5) RETURNING correction_id",
                None,
                &[
                    assignment_id.into(),
                    old_value.into(),
                    contact_date.into(),
                    reason.into(),
                    security::role_name(security::acting_role()).into(),
                ],
            )
            .ok()
            .and_then(|t| t.first().get_one::<i64>().ok().flatten())
            .unwrap_or_else(|| crate::errors::internal("could not write the audit row"))
    })
}

/// Raises `P0002` unless the registered assignments table has a row with
/// this id (as the outbox carries it, `id::text`).
#[pg_extern(sql = false)]
fn _require_assignment(assignment_id: Option<&str>) {
    let assignment_id = required(assignment_id, "assignment_id");
    Spi::connect(|client| {
        let assignments = registry::require_assignment_table(&client);
        let sql = format!(
            "SELECT EXISTS (SELECT 1 FROM {table} WHERE {is_the_assignment})",
            table = assignments.table,
            is_the_assignment = assignments.id_equals_sql("$1")
        );
        let found = security::as_owner_statement(assignments.owner, &sql, || {
            crate::query::one::<bool>(&client, &sql, &[assignment_id.into()]).unwrap_or(false)
        });
        if !found {
            raise(ERRCODE_NO_DATA_FOUND, format!("no assignment with id {}", registry::quote_literal(assignment_id)));
        }
    });
}
