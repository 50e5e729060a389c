//! Which snoozes hold an assignment on a day (README, "Snoozing an
//! assignment"): while one is open (not ended, `until` on or after the day)
//! no run enqueues for the assignment and a claim withdraws its messages.

use crate::registry::AssignmentTable;

/// SQL, `FROM followup.snoozes AS sz WHERE …`: the snoozes open on the date
/// expression `day` (not ended, until on or after the day).
pub fn open_snoozes_sql(day: &str) -> String {
    format!("FROM followup.snoozes AS sz WHERE sz.ended_at IS NULL AND sz.until >= ({day})")
}

/// SQL: is the assignment whose id (a column of the assignments table, the
/// expression `id`) snoozed on the date expression `day`? An open snooze
/// (not ended, until on or after the day) holds it.
pub fn snoozed_sql(assignments: &AssignmentTable, id: &str, day: &str) -> String {
    let open = open_snoozes_sql(day);
    match assignments.id_from_text_sql("sz.assignment_id") {
        // compared in the id's type, so that a run converts the few snoozed
        // ids rather than every assignment's id
        Some(typed) => format!("({id}) IN (SELECT {typed} {open} AND {typed} IS NOT NULL)"),
        None => format!("({id})::pg_catalog.text IN (SELECT sz.assignment_id {open})"),
    }
}
