//! `followup.explain(assignment_id, as_of)` (README, "Explaining one
//! assignment"): why an assignment gets (or does not get) a reminder, as one
//! jsonb document a support person can read without knowing the SQL.
//!
//! Every fact comes from the definitions the run uses: the cycle start and
//! `active_when` (run/due.rs), the effective policy, open snoozes, the due
//! messages (the run's own scan restricted to this assignment), the send
//! window (sql/delivery.sql), and for where the last contact came from, the
//! tracking statements' latest activity per table and latest correction
//! (tracking.rs).

use crate::errors::{raise, required};
use crate::local_time::{as_of_or_today, iso};
use crate::registry::{self, quote_literal, AssignmentTable};
use crate::run::any_policy_escalates;
use crate::run::due::{active_when_sql, cycle_start_sql, due_sql, open_snoozes_sql, policy_join_sql, window_of};
use crate::security;
use crate::tracking::{latest_activity_sql, latest_correction_sql};
use pgrx::datum::{Date, JsonB};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::PgSqlErrorCode::*;
use serde_json::{json, Value};

/// The facts about one assignment on a date, from one statement.
struct Facts {
    active: bool,
    organization: Option<String>,
    policy: Value,
    enabled: bool,
    remind_after: i32,
    repeat_every: Option<i32>,
    escalate_after: Option<i32>,
    max_reminders: Option<i32>,
    last_contact: Value,
    last_contact_source: Value,
    cycle_start: Option<Date>,
    has_mentor: bool,
    has_coordinator: bool,
    snoozed_until: Option<Date>,
    messages: Value,
    window: Value,
}

/// SQL: where the stored last contact of assignment row `a` came from: the
/// first tracked table whose latest activity is it, else the latest
/// correction if it is that, else NULL.
fn source_sql(assignments: &AssignmentTable, client: &SpiClient<'_>) -> String {
    let lc = format!("a.{}", assignments.last_contact_column);
    let mut branches: Vec<String> = registry::load_activity_tables(client)
        .iter()
        .map(|activity| {
            format!(
                "CASE WHEN {latest} IS NOT DISTINCT FROM {lc} AND {lc} IS NOT NULL
                      THEN pg_catalog.jsonb_build_object('table', {table}, 'occurred', {occurred}) END",
                latest = latest_activity_sql(assignments, activity, true),
                table = quote_literal(&activity.table),
                occurred = latest_activity_sql(assignments, activity, false),
            )
        })
        .collect();
    let corrected = crate::local_time::convert(
        "cc.new_value",
        crate::local_time::DateKind::Date,
        assignments.last_contact_kind,
        crate::local_time::Zone::SETTING,
    );
    branches.push(latest_correction_sql(
        assignments,
        &format!(
            "CASE WHEN {corrected} IS NOT DISTINCT FROM {lc}
                  THEN pg_catalog.jsonb_build_object('correction_id', cc.correction_id, 'reason', cc.reason) END"
        ),
    ));
    format!("coalesce({})", branches.join(",\n                 "))
}

/// SQL: the send window of the policy row `policy` as of now (sql/delivery.sql
/// holds the arithmetic): its zone, bounds, whether it is open and when it
/// next opens; NULL when the policy has no window.
fn window_sql(policy: &str) -> String {
    let window = window_of(policy);
    format!(
        "CASE WHEN {policy}.send_from IS NOT NULL THEN pg_catalog.jsonb_build_object(
                'timezone', followup._policy_zone({policy}.timezone),
                'send_from', {policy}.send_from, 'send_until', {policy}.send_until,
                'open_now', followup._in_window(pg_catalog.now(), {window}),
                'next_opening', followup._next_opening(pg_catalog.now(), {window})) END"
    )
}

/// The facts, read as the assignments table's owner (security.rs). When
/// active_when cannot be evaluated on the row, it is read without it and
/// the failure's SQLSTATE returned too: a run skips such a row
/// (run/unreadable.rs), so it is not active.
fn facts(
    client: &SpiClient<'_>,
    assignments: &AssignmentTable,
    assignment_id: &str,
    as_of: Date,
) -> Option<(Facts, Option<String>)> {
    let read = |active_when: &str| {
        let sql = facts_sql(client, assignments, active_when);
        crate::errors::in_subtransaction(std::panic::AssertUnwindSafe(|| {
            security::as_owner_statement(assignments.owner, &sql, || read_facts(client, &sql, assignment_id, as_of))
        }))
    };
    match read(active_when_sql(assignments)) {
        Ok(facts) => facts.map(|f| (f, None)),
        Err(failure) if failure.is_data_exception() => match read("NULL::pg_catalog.bool") {
            Ok(facts) => facts.map(|f| (f, Some(failure.sqlstate()))),
            Err(failure) => crate::errors::raise(failure.code, failure.message),
        },
        Err(failure) => crate::errors::raise(failure.code, failure.message),
    }
}

fn facts_sql(client: &SpiClient<'_>, assignments: &AssignmentTable, active_when: &str) -> String {
    format!(
        "SELECT a.followup_active, a.followup_organization, pg_catalog.to_jsonb(policy.*),
                policy.enabled, policy.remind_after_days, policy.repeat_every_days, policy.escalate_after_days,
                policy.max_reminders,
                pg_catalog.to_jsonb(a.{lc}), {source}, a.followup_cycle_start,
                a.{mentor} IS NOT NULL, {coordinator} IS NOT NULL,
                (SELECT pg_catalog.max(sz.until) {open_snoozes} AND sz.assignment_id = $1),
                (SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                            'message_id', o.message_id, 'kind', o.kind, 'sequence', o.sequence, 'status', o.status,
                            'cancel_reason', o.cancel_reason, 'delivered_at', o.delivered_at,
                            'visible_at', o.visible_at) ORDER BY o.message_id),
                        '[]')
                   FROM followup.outbox AS o
                  WHERE o.assignment_id = $1 AND o.cycle_start = a.followup_cycle_start),
                {window}
           FROM (SELECT *, coalesce(({active_when}), false) AS followup_active,
                        ({organization})::pg_catalog.text AS followup_organization,
                        {cycle_start} AS followup_cycle_start
                   FROM {table}
                  WHERE {is_the_assignment}
                  LIMIT 1) AS a
           {policy_join}
           CROSS JOIN LATERAL (SELECT p.* FROM followup.policies AS p
                                WHERE p.organization = coalesce(own.organization, '*')) AS policy",
        lc = assignments.last_contact_column,
        source = source_sql(assignments, client),
        mentor = assignments.mentor_column,
        coordinator = assignments.coordinator_column.as_ref().map(|c| format!("a.{c}")).unwrap_or("NULL".into()),
        open_snoozes = open_snoozes_sql("$2::pg_catalog.date"),
        organization = assignments.organization_column.as_deref().unwrap_or("NULL"),
        cycle_start = cycle_start_sql(assignments),
        table = assignments.table,
        is_the_assignment = assignments.id_equals_sql("$1"),
        policy_join = policy_join_sql("a.followup_organization"),
        window = window_sql("policy"),
    )
}

fn read_facts(client: &SpiClient<'_>, sql: &str, assignment_id: &str, as_of: Date) -> Option<Facts> {
    let row = client
        .select(sql, None, &[assignment_id.into(), as_of.into()])
        .unwrap_or_else(|e| crate::errors::internal(e.to_string()));
    if row.is_empty() {
        return None;
    }
    let row = row.first();
    let json = |i: usize| row.get::<JsonB>(i).ok().flatten().map(|j| j.0).unwrap_or(Value::Null);
    Some(Facts {
        active: row.get::<bool>(1).ok().flatten().unwrap_or(false),
        organization: row.get::<String>(2).ok().flatten(),
        policy: json(3),
        enabled: row.get::<bool>(4).ok().flatten().unwrap_or(false),
        remind_after: row.get::<i32>(5).ok().flatten().unwrap_or(0),
        repeat_every: row.get::<i32>(6).ok().flatten(),
        escalate_after: row.get::<i32>(7).ok().flatten(),
        max_reminders: row.get::<i32>(8).ok().flatten(),
        last_contact: json(9),
        last_contact_source: json(10),
        cycle_start: row.get::<Date>(11).ok().flatten(),
        has_mentor: row.get::<bool>(12).ok().flatten().unwrap_or(false),
        has_coordinator: row.get::<bool>(13).ok().flatten().unwrap_or(false),
        snoozed_until: row.get::<Date>(14).ok().flatten(),
        messages: json(15),
        window: json(16),
    })
}

/// What a run as of `as_of` would want for the assignment: the run's own
/// scan, restricted to it, as the table's owner.
fn due(client: &SpiClient<'_>, assignments: &AssignmentTable, assignment_id: &str, as_of: Date) -> Value {
    let sql = format!(
        "SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                    'kind', d.kind, 'sequence', d.sequence, 'recipient_role', d.recipient_role,
                    'recipient_id', d.recipient_id) ORDER BY d.kind), '[]')
           FROM ({due}) AS d",
        due = due_sql(assignments, false, any_policy_escalates(client), &assignments.id_equals_sql("$2")),
    );
    security::as_owner_statement(assignments.owner, &sql, || {
        client
            .select(sql.as_str(), None, &[as_of.into(), assignment_id.into()])
            .ok()
            .and_then(|t| t.first().get_one::<JsonB>().ok().flatten())
            .map(|j| j.0)
            .unwrap_or(Value::Array(Vec::new()))
    })
}

/// The reminder sequence due at `age` days into a cycle, if any is.
fn reminder_sequence(facts: &Facts, age: i32) -> Option<i32> {
    (age >= facts.remind_after).then(|| match facts.repeat_every {
        Some(every) => 1 + (age - facts.remind_after) / every,
        None => 1,
    })
}

/// The date of the next reminder after `as_of` if nothing changes (a snooze
/// postpones it to the day after it ends), or None.
fn next_due_on(facts: &Facts, as_of: Date) -> Option<Date> {
    let start = facts.cycle_start?.to_pg_epoch_days();
    if !facts.active || !facts.enabled || !facts.has_mentor {
        return None;
    }
    let today = as_of.to_pg_epoch_days();
    let first = start + facts.remind_after;
    let mut next = if today < first {
        first
    } else {
        let sequence = reminder_sequence(facts, today - start)?;
        start + facts.remind_after + sequence * facts.repeat_every?
    };
    if let Some(until) = facts.snoozed_until {
        if until.is_finite() && next <= until.to_pg_epoch_days() {
            next = (until.to_pg_epoch_days() + 1).max(first);
        } else if !until.is_finite() {
            return None;
        }
    }
    let sequence = reminder_sequence(facts, next - start)?;
    if facts.max_reminders.is_some_and(|max| sequence > max) {
        return None;
    }
    Some(Date::saturating_from_raw(next))
}

fn verdict(facts: &Facts, age: Option<i32>, due: &Value) -> &'static str {
    let Some(age) = age else {
        return if facts.active { "no_cycle_start" } else { "inactive" };
    };
    if !facts.active {
        "inactive"
    } else if facts.snoozed_until.is_some() {
        "snoozed"
    } else if !facts.enabled {
        "policy_disabled"
    } else if due.as_array().is_some_and(|d| !d.is_empty()) {
        "due"
    } else {
        match reminder_sequence(facts, age) {
            None => "not_yet_due",
            Some(sequence) if facts.max_reminders.is_some_and(|max| sequence > max) => "max_reminders_reached",
            Some(_) if !facts.has_mentor => "no_recipient",
            // due by age, but no message: only an escalation could be missing
            // its coordinator
            Some(_) => {
                if facts.escalate_after.is_some_and(|e| age >= e) && !facts.has_coordinator {
                    "no_recipient"
                } else {
                    "not_yet_due"
                }
            }
        }
    }
}

#[pg_extern(sql = false)]
fn _explain(assignment_id: Option<&str>, as_of: Option<Date>) -> JsonB {
    let assignment_id = required(assignment_id, "assignment_id");
    let as_of = as_of_or_today(as_of);
    Spi::connect(|client| {
        let assignments = registry::require_assignment_table(&client);
        let Some((facts, active_when_error)) = facts(&client, &assignments, assignment_id, as_of) else {
            raise(ERRCODE_NO_DATA_FOUND, format!("no assignment with id {}", quote_literal(assignment_id)))
        };
        // a run skips a row whose active_when fails: nothing is due for it
        let due = if active_when_error.is_some() {
            Value::Array(Vec::new())
        } else {
            due(&client, &assignments, assignment_id, as_of)
        };
        let age = facts.cycle_start.map(|c| as_of.to_pg_epoch_days() - c.to_pg_epoch_days());
        let date = |d: Option<Date>| d.map(|d| Value::String(iso(d))).unwrap_or(Value::Null);
        let verdict = verdict(&facts, age, &due);
        JsonB(json!({
            "assignment_id": assignment_id,
            "as_of": iso(as_of),
            "active": facts.active,
            "active_when_error": active_when_error,
            "organization": facts.organization,
            "policy": facts.policy,
            "last_contact": facts.last_contact,
            "last_contact_source": facts.last_contact_source,
            "cycle_start": date(facts.cycle_start),
            "age_days": age,
            "snoozed_until": date(facts.snoozed_until),
            "due": due,
            "messages": facts.messages,
            "window": facts.window,
            "next_due_on": date(next_due_on(&facts, as_of)),
            "verdict": verdict,
        }))
    })
}
