//! An assignment's cycle start and whether it counts at all: the facts
//! every message kind's rule starts from (README, "Policies and the
//! reminder rule").

use crate::local_time::{local_date, Zone};
use crate::registry::AssignmentTable;

/// SQL: the cycle start of an assignment row (unaliased columns of the
/// assignments table): its last contact as a local date, or its created
/// column's. The one definition the run, preview and the outbox's still-due
/// checks share.
///
/// A value that is not finite (`infinity`, `-infinity`, which the app may
/// write itself) counts as none: no age can be counted from it.
pub fn cycle_start_sql(assignments: &AssignmentTable) -> String {
    let finite_date = |column: &str, kind| {
        format!("CASE WHEN pg_catalog.isfinite({column}) THEN {} END", local_date(column, kind, Zone::SETTING))
    };
    let last_contact = finite_date(&assignments.last_contact_column, assignments.last_contact_kind);
    match &assignments.created_column {
        Some((created, kind)) => format!("coalesce({last_contact}, {})", finite_date(created, *kind)),
        None => last_contact,
    }
}

/// SQL: the filter of assignments a run, a claim and explain consider: the
/// registered `active_when`, or all.
pub fn active_when_sql(assignments: &AssignmentTable) -> &str {
    assignments.active_when.as_deref().unwrap_or("true")
}
