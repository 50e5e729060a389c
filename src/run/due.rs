//! What is due on a date, as SQL text: the scan of the assignments, what
//! each message kind wants from it, the run's one INSERT, and
//! `followup.preview`'s query. Nothing here executes anything; every rule it
//! applies is defined in src/rule/.
//!
//! The reminder rule (README, "Policies and the reminder rule"): for a run as
//! of local date D, every assignment matching `active_when` with a cycle
//! start C (its last contact, or its creation while there is none) has age
//! D − C, and each message kind (rule/kinds.rs) that applies is due by its own
//! condition over that age and the assignment's effective policy.

use crate::registry::{quote_literal, AssignmentTable};
use crate::rule::calendar::Openings;
use crate::rule::cycle::{active_when_sql, cycle_start_sql};
use crate::rule::kinds::{self, MessageKind};
use crate::rule::policy::Policy;
use crate::rule::snoozes::snoozed_sql;

/// The as-of date of the run's statements: their first parameter.
pub const AS_OF: &str = "$1::pg_catalog.date";

/// The assignments a run reads, one row `s` each: the assignment's id,
/// recipients, organization, cycle start and payload columns (p1..pn), its
/// `age` on the date expression `as_of` and its effective policy.
///
/// The innermost query reads only the assignments table, unaliased, so
/// active_when sees exactly its columns (qualified by the table name or not).
/// `only` is tested before active_when (the CASE), so that active_when is
/// never evaluated on a row `only` leaves out (unreadable.rs leaves out the
/// rows it cannot be evaluated on).
/// A row without a cycle start has a NULL age, which no condition accepts.
/// With `tallied`, every assignment read is counted (log.rs's
/// `_tally_scanned`) behind an OFFSET 0 fence, so that the planner cannot push
/// the outer filters below the count.
pub fn scan_sql(assignments: &AssignmentTable, tallied: bool, only: &str, as_of: &str) -> String {
    let or_null = |column: &Option<String>| column.clone().unwrap_or_else(|| "NULL".to_string());
    let payload: String = assignments
        .payload_columns
        .iter()
        .enumerate()
        .map(|(i, (_, quoted))| format!(", {quoted} AS p{}", i + 1))
        .collect();
    let (tally, fence) =
        if tallied { (", followup._tally_scanned(NULL::pg_catalog.text) AS counted", "OFFSET 0") } else { ("", "") };
    format!(
        "(SELECT a.*, ({as_of}) - a.cycle_start AS age,
                 {enabled} AS enabled, {remind_after} AS remind_after, {repeat_every} AS repeat_every,
                 {escalate_after} AS escalate_after, {max_reminders} AS max_reminders
            FROM (SELECT {id} AS id, {mentor} AS mentor, {coordinator} AS coordinator,
                         ({organization})::pg_catalog.text AS organization, {cycle_start} AS cycle_start
                         {payload}{tally}
                    FROM {table}
                   WHERE {only} AND CASE WHEN {only} THEN ({active_when}) END
                  {fence}) AS a
            {policy}) AS s",
        id = assignments.id_column,
        mentor = assignments.mentor_column,
        coordinator = or_null(&assignments.coordinator_column),
        organization = or_null(&assignments.organization_column),
        cycle_start = cycle_start_sql(assignments),
        table = assignments.table,
        active_when = active_when_sql(assignments),
        policy = POLICY.join_sql("a.organization"),
        enabled = POLICY.value("enabled"),
        remind_after = POLICY.value("remind_after_days"),
        repeat_every = POLICY.value("repeat_every_days"),
        escalate_after = POLICY.value("escalate_after_days"),
        max_reminders = POLICY.value("max_reminders"),
    )
}

/// The scan joins the assignment's effective policy under the usual aliases.
const POLICY: Policy = Policy::EFFECTIVE;

/// A new message is visible from its organization's next opening from now
/// (rule/calendar.rs): joined once per organization over the due rows.
const OPENINGS: Openings = Openings::USUAL;

/// One kind's messages due: a SELECT over its own scan. The first branch
/// keeps the outbox's column names.
fn branch_sql(assignments: &AssignmentTable, kind: &MessageKind, tallied: bool, only: &str, days: Days) -> String {
    let payload = payload_columns(assignments, "s");
    format!(
        "SELECT (s.id)::pg_catalog.text AS assignment_id, s.cycle_start, '{kind}'::followup.message_kind AS kind,
                {sequence} AS sequence, '{role}'::followup.recipient_role AS recipient_role,
                ({recipient})::pg_catalog.text AS recipient_id, s.age AS days_since_contact,
                s.organization{payload}
           FROM {scan}
          WHERE s.enabled AND {recipient} IS NOT NULL AND {due} AND NOT {snoozed}",
        kind = kind.kind,
        sequence = kind.sequence,
        role = kind.recipient_role,
        recipient = kind.recipient,
        scan = scan_sql(assignments, tallied, only, days.as_of),
        due = kind.due_sql(),
        snoozed = snoozed_sql(assignments, "s.id", days.snoozes_on),
    )
}

/// One row per message due on the date expression `as_of` (the run's
/// `AS_OF`), in the outbox's column names:
/// assignment_id, cycle_start, kind, sequence, recipient_role, recipient_id,
/// days_since_contact, organization, then the payload columns as p1..pn
/// (see payload_sql).
/// With `tally`, the first kind's scan counts the active assignments it reads.
///
/// Shaped for a million assignments: one plain scan per message kind (a
/// second sequential scan is cheaper than expanding every row into both
/// kinds), texts built only for the messages actually due, and no scan at all
/// for a kind that does not apply (kinds.rs).
///
/// `only` restricts the scan to the assignments it is true for (SQL over the
/// assignments table's columns, unqualified); "true" for all.
pub fn due_sql(
    assignments: &AssignmentTable,
    tally: bool,
    any_policy_escalates: bool,
    only: &str,
    as_of: &str,
) -> String {
    due_sql_on(assignments, tally, any_policy_escalates, only, Days { as_of, snoozes_on: as_of })
}

/// The date expressions of `due_sql_on`: the as-of date, and the day whose
/// open snoozes hold an assignment (README, "Snoozing an assignment"): the
/// as-of date itself, except for a caller that asks about many days all
/// after every open snooze (explain's `next_due_on`), which may name the
/// first of them: a snooze open on a later day is open on the first, so the
/// answer is the same, and the snoozes are read once instead of once a day.
#[derive(Clone, Copy)]
pub struct Days<'a> {
    pub as_of: &'a str,
    pub snoozes_on: &'a str,
}

/// `due_sql` with the snoozes read on `days.snoozes_on`.
pub fn due_sql_on(
    assignments: &AssignmentTable,
    tally: bool,
    any_policy_escalates: bool,
    only: &str,
    days: Days,
) -> String {
    kinds::ALL
        .iter()
        .filter(|kind| kind.applies(assignments, any_policy_escalates))
        .enumerate()
        .map(|(i, kind)| branch_sql(assignments, kind, tally && i == 0, only, days))
        .collect::<Vec<_>>()
        .join("\n         UNION ALL\n         ")
}

/// Why a kind is or is not due for the assignments `only` is true for, on
/// the date expression `as_of`: one row per assignment and kind that
/// applies, `kind`, `reached`, `within_limit` and `has_recipient`, each
/// asked of the kind itself (rule/kinds.rs). What explain's verdict is made
/// of, besides the assignment's own facts.
pub fn reasons_sql(assignments: &AssignmentTable, any_policy_escalates: bool, only: &str, as_of: &str) -> String {
    kinds::ALL
        .iter()
        .filter(|kind| kind.applies(assignments, any_policy_escalates))
        .map(|kind| {
            format!(
                "SELECT '{name}'::pg_catalog.text AS kind, coalesce({reached}, false) AS reached,
                        coalesce({within_limit}, true) AS within_limit, {recipient} IS NOT NULL AS has_recipient
                   FROM {scan}",
                name = kind.kind,
                reached = kind.reached,
                within_limit = kind.within_limit_sql(),
                recipient = kind.recipient,
                scan = scan_sql(assignments, false, only, as_of),
            )
        })
        .collect::<Vec<_>>()
        .join("\n         UNION ALL\n         ")
}

/// `, alias.p1, …, alias.pn`: the payload columns of a row aliased `alias`
/// that carries them (the assignments scan, or a row of due_sql).
fn payload_columns(assignments: &AssignmentTable, alias: &str) -> String {
    (1..=assignments.payload_columns.len()).map(|i| format!(", {alias}.p{i}")).collect()
}

/// The JSON payload of a row of due_sql aliased `alias`: the registered
/// payload columns by name.
fn payload_sql(assignments: &AssignmentTable, alias: &str) -> String {
    if assignments.payload_columns.is_empty() {
        return "'{}'::pg_catalog.jsonb".to_string();
    }
    let pairs: Vec<String> = assignments
        .payload_columns
        .iter()
        .enumerate()
        .map(|(i, (raw, _))| format!("{}, {alias}.p{}", quote_literal(raw), i + 1))
        .collect();
    format!("pg_catalog.jsonb_build_object({})", pairs.join(", "))
}

/// Is `o` (an outbox row) the message `d` (a row of due_sql)? The
/// idempotency key.
const SAME_MESSAGE: &str = "o.assignment_id = d.assignment_id AND o.cycle_start = d.cycle_start
                            AND o.kind = d.kind AND o.sequence = d.sequence";

/// `followup.preview`: the due messages not yet in the outbox, as outbox
/// rows, of the assignments `only` is true for.
pub fn preview_sql(assignments: &AssignmentTable, any_policy_escalates: bool, only: &str) -> String {
    format!(
        "SELECT NULL::pg_catalog.int8 AS message_id, NULL::pg_catalog.int8 AS run_id,
                d.assignment_id, d.cycle_start, d.kind, d.sequence, d.recipient_role, d.recipient_id,
                d.days_since_contact, {payload} AS payload, pg_catalog.now() AS enqueued_at,
                'pending'::followup.message_status AS status, 0 AS attempts, {visible_at} AS visible_at,
                NULL::pg_catalog.uuid AS lease_id, NULL::pg_catalog.text AS claimed_by,
                NULL::pg_catalog.timestamptz AS delivered_at, NULL::pg_catalog.text AS last_error,
                NULL::pg_catalog.timestamptz AS cancelled_at, NULL::pg_catalog.text AS cancel_reason,
                d.organization
           FROM ({due}) AS d
           {openings}
          WHERE NOT EXISTS (SELECT 1 FROM followup.outbox AS o WHERE {SAME_MESSAGE})
          ORDER BY d.assignment_id, d.kind",
        payload = payload_sql(assignments, "d"),
        due = due_sql(assignments, false, any_policy_escalates, only, AS_OF),
        openings = OPENINGS.join_sql("d.organization", "pg_catalog.now()"),
        visible_at = OPENINGS.value(),
    )
}

/// The run's one INSERT. `$1` as-of date, `$2` run id.
///
/// ON CONFLICT DO NOTHING on the idempotency key is what makes any number of
/// runs, with or without the lock, enqueue each message once.
///
/// `skip_enqueued` adds an anti-join against the outbox in front of it: a
/// rerun, or any day's run where most due messages were enqueued on earlier
/// days, then drops those with one hash (or index) anti-join instead of
/// building each row and probing the unique index for it — about 4× cheaper
/// for a same-day rerun. The caller leaves it out when the outbox has no pages:
/// there is nothing to skip, and a planner that sees an empty table may choose
/// to rescan it (the table this statement is filling) for every candidate.
///
/// The due tally sits behind an OFFSET 0 fence, so it counts every due
/// message, enqueued before or not; the difference is `duplicates_suppressed`.
/// The JSON payload is built only for rows that get past the anti-join.
///
/// `only` as in due_sql (the run leaves out rows it cannot evaluate).
pub fn enqueue_sql(
    assignments: &AssignmentTable,
    any_policy_escalates: bool,
    skip_enqueued: bool,
    only: &str,
) -> String {
    let payload_columns = payload_columns(assignments, "due");
    let anti_join = if skip_enqueued {
        format!("WHERE NOT EXISTS (SELECT 1 FROM followup.outbox AS o WHERE {SAME_MESSAGE})")
    } else {
        String::new()
    };
    format!(
        "INSERT INTO followup.outbox (run_id, assignment_id, cycle_start, kind, sequence, recipient_role,
                                      recipient_id, days_since_contact, payload, organization, visible_at)
         SELECT $2, d.assignment_id, d.cycle_start, d.kind, d.sequence, d.recipient_role,
                d.recipient_id, d.days_since_contact, {payload}, d.organization, {visible_at}
           FROM (SELECT followup._tally_due(due.assignment_id) AS assignment_id, due.cycle_start, due.kind,
                        due.sequence, due.recipient_role, due.recipient_id, due.days_since_contact,
                        due.organization{payload_columns}
                   FROM ({due}) AS due
                 OFFSET 0) AS d
         {openings}
         {anti_join}
         ON CONFLICT ON CONSTRAINT outbox_idempotency_key DO NOTHING",
        payload = payload_sql(assignments, "d"),
        due = due_sql(assignments, true, any_policy_escalates, only, AS_OF),
        openings = OPENINGS.join_sql("d.organization", "pg_catalog.now()"),
        visible_at = OPENINGS.value(),
    )
}
