//! `followup.set_last_contact` (SPEC §9): the authenticated admin path to
//! correct an assignment's last contact, with an audit row.
//!
//! Authentication is the server's, authorization is a GRANT on the function
//! (EXECUTE is revoked from PUBLIC), the audit is `followup.contact_corrections`.
//! The SQL wrapper in sql/admin.sql is SECURITY DEFINER with a pinned
//! search_path; everything here is schema-qualified as well.

use crate::errors::{raise, required};
use crate::registry::{self, convert, DateKind, TIMEZONE_SQL};
use pgrx::datum::Date;
use pgrx::pg_sys::panic::CaughtError;
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
        let (is_future, today): (bool, String) = client
            .select(
                &format!(
                    // ISO 8601 whatever the session's DateStyle
                    "SELECT $1 > (pg_catalog.now() AT TIME ZONE {TIMEZONE_SQL})::pg_catalog.date,
                            pg_catalog.to_char((pg_catalog.now() AT TIME ZONE {TIMEZONE_SQL})::pg_catalog.date, 'YYYY-MM-DD')"
                ),
                None,
                &[contact_date.into()],
            )
            .ok()
            .and_then(|t| {
                let row = t.first();
                Some((row.get::<bool>(1).ok()??, row.get::<String>(2).ok()??))
            })
            .unwrap_or_else(|| raise(ERRCODE_INTERNAL_ERROR, "could not read today's date"));
        if is_future {
            raise(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!("contact_date is in the future (today is {today} in followup.timezone)"),
            );
        }

        // Compare in the id column's own type, so its index is used; an id that
        // is not even a valid value of that type matches no assignment.
        let id_type = id_type(client, &assignments);
        let not_found = || -> ! {
            raise(ERRCODE_NO_DATA_FOUND, format!("no assignment with id {}", registry::quote_literal(assignment_id)))
        };
        let typed_id = format!("$1::{id_type}");
        PgTryBuilder::new(std::panic::AssertUnwindSafe(|| {
            client.select(&format!("SELECT {typed_id}"), None, &[assignment_id.into()]).map(|_| ()).ok();
        }))
        .catch_others(|caught| match caught {
            CaughtError::PostgresError(_) | CaughtError::ErrorReport(_) => not_found(),
            other => other.rethrow(),
        })
        .execute();

        let lc = &assignments.last_contact_column;
        // The old value in ISO 8601, whatever the session's DateStyle and
        // TimeZone: a timestamptz in UTC.
        let old_value = match assignments.last_contact_kind {
            DateKind::Timestamptz => format!(
                "pg_catalog.to_json({lc} AT TIME ZONE 'UTC') OPERATOR(pg_catalog.#>>) '{{}}'::pg_catalog.text[] OPERATOR(pg_catalog.||) 'Z'"
            ),
            _ => format!("pg_catalog.to_json({lc}) OPERATOR(pg_catalog.#>>) '{{}}'::pg_catalog.text[]"),
        };
        let current: Vec<Option<String>> = client
            .update(
                &format!(
                    "SELECT {old_value}
                       FROM {table} WHERE {id} OPERATOR(pg_catalog.=) {typed_id} FOR UPDATE",
                    table = assignments.table,
                    id = assignments.id_column,
                ),
                None,
                &[assignment_id.into()],
            )
            .map(|rows| rows.map(|r| r.get::<String>(1).ok().flatten()).collect())
            .unwrap_or_default();
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

        client
            .update(
                &format!(
                    "UPDATE {table} SET {lc} = {new_value} WHERE {id} OPERATOR(pg_catalog.=) {typed_id}",
                    table = assignments.table,
                    id = assignments.id_column,
                    new_value = convert("$2::pg_catalog.date", DateKind::Date, assignments.last_contact_kind),
                ),
                None,
                &[assignment_id.into(), contact_date.into()],
            )
            .unwrap_or_else(|e| raise(ERRCODE_INTERNAL_ERROR, e.to_string()));
        client
            .update(
                "INSERT INTO followup.contact_corrections (assignment_id, old_value, new_value, reason)
                 VALUES ($1, $2, $3, $4) RETURNING correction_id",
                None,
                &[assignment_id.into(), old_value.into(), contact_date.into(), reason.into()],
            )
            .ok()
            .and_then(|t| t.first().get_one::<i64>().ok().flatten())
            .unwrap_or_else(|| raise(ERRCODE_INTERNAL_ERROR, "could not write the audit row"))
    })
}

/// The id column's type, as SQL (`pg_catalog.int4`, `"app"."my_id"`).
fn id_type(client: &pgrx::spi::SpiClient<'_>, assignments: &registry::AssignmentTable) -> String {
    crate::query::one::<String>(
        client,
        "SELECT pg_catalog.format('%I.%I', n.nspname, t.typname)
           FROM pg_catalog.pg_attribute a
           JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
           JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
          WHERE a.attrelid = $1 AND pg_catalog.quote_ident(a.attname) = $2 AND NOT a.attisdropped",
        &[assignments.relid.into(), assignments.id_column.as_str().into()],
    )
    .unwrap_or_else(|| raise(ERRCODE_UNDEFINED_COLUMN, "the assignments table's id column is gone"))
}
