//! `followup.explain(assignment_id, as_of)` (README, "Explaining one
//! assignment"): why an assignment gets (or does not get) a reminder, as one
//! jsonb document a support person can read without knowing the SQL.
//!
//! Every answer comes from the definitions the run uses (src/rule/): the
//! cycle start and `active_when`, the effective policy, open snoozes, the
//! send window (sql/windows.sql). What is due is the run's own scan
//! restricted to this assignment; the next due date is the first later day
//! on which that scan wants a new reminder; the verdict is made of what each
//! message kind says of the assignment (reached, within its limit, with a
//! recipient). Where the last contact came from is the tracking statements'
//! latest activity per table and latest correction (tracking.rs). Nothing of
//! the reminder rule is computed here again.

use crate::errors::{raise, required};
use crate::local_time::{as_of_or_today, iso};
use crate::plan_cache::{self, Statement};
use crate::registry::{self, quote_literal, AssignmentTable};
use crate::rule::calendar::{calendar_sql, earliest_sql, gate_sql, key_sql, local_day_sql};
use crate::rule::cycle::{active_when_sql, cycle_start_sql};
use crate::rule::kinds::REMINDER;
use crate::rule::policy::Policy;
use crate::rule::snoozes::open_snoozes_sql;
use crate::run::any_policy_escalates;
use crate::run::due::{due_sql, due_sql_on, reasons_sql, Days, AS_OF};
use crate::tracking::{latest_activity_sql, latest_correction_sql};
use pgrx::datum::{Date, JsonB};
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient};
use pgrx::PgOid;
use pgrx::PgSqlErrorCode::*;
use serde_json::{json, Value};

/// The facts about one assignment on a date, from one statement.
struct Facts {
    active: bool,
    organization: Option<String>,
    policy: Value,
    enabled: bool,
    /// How many days ahead the next reminder can be at most: the policy's
    /// remind_after_days or repeat_every_days (bounds the search for it).
    reminder_horizon: i32,
    last_contact: Value,
    last_contact_source: Value,
    cycle_start: Option<Date>,
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

/// SQL: the calendar `calendar` (rule/calendar.rs) as of now: its zone,
/// window, weekdays, whether today is a quiet day, whether a message could
/// go out now and when it next can; NULL when the organization has no
/// window, weekdays or quiet days (a message can go out at any time).
fn window_sql(calendar: &str) -> String {
    let now = "pg_catalog.now()";
    let next_opening = earliest_sql(calendar, now, "NULL::pg_catalog.date");
    format!(
        "CASE WHEN {calendar}.send_from IS NOT NULL OR {calendar}.send_days IS NOT NULL
                   OR pg_catalog.cardinality({calendar}.quiet) > 0
              THEN pg_catalog.jsonb_build_object(
                'timezone', {calendar}.zone, 'send_from', {calendar}.send_from, 'send_until', {calendar}.send_until,
                'send_days', {calendar}.send_days, 'quiet_today', {today} = ANY ({calendar}.quiet),
                'open_now', {next_opening} = {now}, 'next_opening', {next_opening}) END",
        today = local_day_sql(calendar, now),
    )
}

/// The facts, read as the assignments table's owner (security.rs). When
/// active_when cannot be evaluated on the row, it is read without it and
/// the failure's SQLSTATE returned too: a run skips such a row
/// (run/unreadable.rs), so it is not active.
fn facts(
    client: &mut SpiClient<'_>,
    assignments: &AssignmentTable,
    assignment_id: &str,
    as_of: Date,
) -> Option<(Facts, Option<String>)> {
    let mut read = |active_when: &str| {
        let sql = facts_sql(client, assignments, active_when);
        crate::errors::in_subtransaction(std::panic::AssertUnwindSafe(|| {
            kept(client, assignments, sql, &[pg_sys::TEXTOID, pg_sys::DATEOID], |client, statement| {
                read_facts(client, statement, assignment_id, as_of)
            })
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
                policy.enabled, GREATEST(policy.remind_after_days, policy.repeat_every_days),
                pg_catalog.to_jsonb(a.{lc}), {source}, a.followup_cycle_start,
                (SELECT pg_catalog.max(sz.until) {open_snoozes} AND sz.assignment_id = $1),
                (SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                            'message_id', o.message_id, 'kind', o.kind, 'sequence', o.sequence, 'status', o.status,
                            'cancel_reason', o.cancel_reason, 'delivered_at', o.delivered_at,
                            'visible_at', o.visible_at,
                            'held_by', CASE WHEN o.status = 'pending' THEN {gate} END) ORDER BY o.message_id),
                        '[]')
                   FROM followup.outbox AS o
                  CROSS JOIN LATERAL {message_calendar} AS mcal
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
                                WHERE p.organization = {effective}) AS policy
           CROSS JOIN LATERAL {calendar} AS cal",
        lc = assignments.last_contact_column,
        source = source_sql(assignments, client),
        open_snoozes = open_snoozes_sql("$2::pg_catalog.date"),
        organization = assignments.organization_column.as_deref().unwrap_or("NULL"),
        cycle_start = cycle_start_sql(assignments),
        table = assignments.table,
        is_the_assignment = assignments.id_equals_sql("$1"),
        policy_join = Policy::EFFECTIVE.join_sql("a.followup_organization"),
        effective = Policy::EFFECTIVE.organization(),
        calendar = calendar_sql(&key_sql("a.followup_organization"), "pg_catalog.now()"),
        window = window_sql("cal"),
        message_calendar = calendar_sql(&key_sql("o.organization"), "pg_catalog.now()"),
        gate = gate_sql("o", "mcal", "pg_catalog.now()"),
    )
}

fn read_facts(
    client: &SpiClient<'_>,
    statement: &OwnedPreparedStatement,
    assignment_id: &str,
    as_of: Date,
) -> Option<Facts> {
    let row = client
        .select(statement, None, &[assignment_id.into(), as_of.into()])
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
        reminder_horizon: row.get::<i32>(5).ok().flatten().unwrap_or(0),
        last_contact: json(6),
        last_contact_source: json(7),
        cycle_start: row.get::<Date>(8).ok().flatten(),
        snoozed_until: row.get::<Date>(9).ok().flatten(),
        messages: json(10),
        window: json(11),
    })
}

/// What a run as of `as_of` would want for the assignment: the run's own
/// scan, restricted to it, as the table's owner.
fn due(client: &mut SpiClient<'_>, assignments: &AssignmentTable, assignment_id: &str, as_of: Date) -> Value {
    let sql = format!(
        "SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                    'kind', d.kind, 'sequence', d.sequence, 'recipient_role', d.recipient_role,
                    'recipient_id', d.recipient_id) ORDER BY d.kind), '[]')
           FROM ({due}) AS d",
        due = due_sql(assignments, false, any_policy_escalates(client), &assignments.id_equals_sql("$2"), AS_OF),
    );
    kept(client, assignments, sql, &[pg_sys::DATEOID, pg_sys::TEXTOID], |client, statement| {
        client
            .select(statement, None, &[as_of.into(), assignment_id.into()])
            .ok()
            .and_then(|t| t.first().get_one::<JsonB>().ok().flatten())
            .map(|j| j.0)
            .unwrap_or(Value::Array(Vec::new()))
    })
}

/// The next day after `as_of` on which a run would enqueue a new reminder
/// for the assignment if nothing changed: the first day, in the window the
/// policy allows (after an open snooze ends), on which the run's scan wants
/// a reminder whose sequence is not due on `as_of` already (that one a run
/// enqueues on `as_of`).
fn next_due_on(
    client: &mut SpiClient<'_>,
    assignments: &AssignmentTable,
    assignment_id: &str,
    as_of: Date,
    facts: &Facts,
    due: &Value,
) -> Option<Date> {
    let due_now: Vec<i32> = due
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["kind"] == REMINDER.kind)
        .filter_map(|d| d["sequence"].as_i64().map(|n| n as i32))
        .collect();
    let after = match facts.snoozed_until {
        Some(until) if !until.is_finite() => return None,
        Some(until) if until.to_pg_epoch_days() > as_of.to_pg_epoch_days() => until,
        _ => as_of,
    };
    let first = Date::saturating_from_raw(after.to_pg_epoch_days() + 1);
    // a reminder is due at most `reminder_horizon` days after the later of
    // `first` and the cycle's start (a last contact dated ahead of as_of)
    let not_started =
        facts.cycle_start.map_or(0, |c| (i64::from(c.to_pg_epoch_days()) - i64::from(first.to_pg_epoch_days())).max(0));
    let horizon = i32::try_from(i64::from(facts.reminder_horizon) + not_started).unwrap_or(i32::MAX);
    let day = "($2::pg_catalog.date + i.n)";
    let sql = format!(
        "SELECT pg_catalog.min({day})
           FROM pg_catalog.generate_series(0, $3) AS i (n)
          CROSS JOIN LATERAL ({due}) AS d
          WHERE d.kind = '{reminder}' AND d.sequence <> ALL ($4::pg_catalog.int4[])",
        // every day from `first` on is after the assignment's open snoozes
        due = due_sql_on(
            assignments,
            false,
            false,
            &assignments.id_equals_sql("$1"),
            Days { as_of: day, snoozes_on: "$2::pg_catalog.date" }
        ),
        reminder = REMINDER.kind,
    );
    let types = [pg_sys::TEXTOID, pg_sys::DATEOID, pg_sys::INT4OID, pg_sys::INT4ARRAYOID];
    kept(client, assignments, sql, &types, |client, statement| {
        client
            .select(statement, Some(1), &[assignment_id.into(), first.into(), horizon.into(), due_now.into()])
            .ok()
            .and_then(|t| t.first().get_one::<Date>().ok().flatten())
    })
}

/// What each message kind that applies says of the assignment on `as_of`:
/// (kind, reached, within its limit, has a recipient).
fn reasons(
    client: &mut SpiClient<'_>,
    assignments: &AssignmentTable,
    assignment_id: &str,
    as_of: Date,
) -> Vec<(String, bool, bool, bool)> {
    let sql = reasons_sql(assignments, any_policy_escalates(client), &assignments.id_equals_sql("$2"), AS_OF);
    kept(client, assignments, sql, &[pg_sys::DATEOID, pg_sys::TEXTOID], |client, statement| {
        client
            .select(statement, None, &[as_of.into(), assignment_id.into()])
            .map(|rows| {
                rows.filter_map(|r| Some((r.get(1).ok()??, r.get(2).ok()??, r.get(3).ok()??, r.get(4).ok()??)))
                    .collect()
            })
            .unwrap_or_default()
    })
}

/// The verdict, in the order a support person would look: no cycle, not
/// active, snoozed, disabled; due; else why not, as the kinds say.
fn verdict(facts: &Facts, due: &Value, reasons: &[(String, bool, bool, bool)]) -> &'static str {
    if facts.cycle_start.is_none() {
        return if facts.active { "no_cycle_start" } else { "inactive" };
    }
    if !facts.active {
        "inactive"
    } else if facts.snoozed_until.is_some() {
        "snoozed"
    } else if !facts.enabled {
        "policy_disabled"
    } else if due.as_array().is_some_and(|d| !d.is_empty()) {
        "due"
    } else if reasons.iter().any(|(_, reached, within_limit, _)| *reached && !within_limit) {
        "max_reminders_reached"
    } else if reasons.iter().any(|(_, reached, within_limit, recipient)| *reached && *within_limit && !recipient) {
        "no_recipient"
    } else {
        "not_yet_due"
    }
}

/// Runs `f` with `sql` kept prepared (plan_cache.rs: explain's statements
/// are generated once per registration, and planning them is most of an
/// explain's cost), as the assignments table's owner.
fn kept<R>(
    client: &mut SpiClient<'_>,
    assignments: &AssignmentTable,
    sql: String,
    types: &[pg_sys::Oid],
    f: impl FnOnce(&mut SpiClient<'_>, &OwnedPreparedStatement) -> R,
) -> R {
    let key = format!("explain {sql}");
    let build = |_: &mut SpiClient<'_>| Statement {
        sql,
        types: types.iter().map(|t| PgOid::from(*t)).collect(),
        owner: Some(assignments.owner),
        reads: vec![assignments.relid],
    };
    plan_cache::with_kept(client, &key, build, f)
}

#[pg_extern(sql = false)]
fn _explain(assignment_id: Option<&str>, as_of: Option<Date>) -> JsonB {
    let assignment_id = required(assignment_id, "assignment_id");
    let as_of = as_of_or_today(as_of);
    Spi::connect_mut(|client| {
        let assignments = registry::require_assignment_table(client);
        let Some((facts, active_when_error)) = facts(client, &assignments, assignment_id, as_of) else {
            raise(ERRCODE_NO_DATA_FOUND, format!("no assignment with id {}", quote_literal(assignment_id)))
        };
        // a run skips a row whose active_when fails: nothing is due for it
        let (due, reasons, next) = if active_when_error.is_some() {
            (Value::Array(Vec::new()), Vec::new(), None)
        } else {
            let due = due(client, &assignments, assignment_id, as_of);
            let reasons = reasons(client, &assignments, assignment_id, as_of);
            let next = next_due_on(client, &assignments, assignment_id, as_of, &facts, &due);
            (due, reasons, next)
        };
        let age = facts.cycle_start.map(|c| as_of.to_pg_epoch_days() - c.to_pg_epoch_days());
        let date = |d: Option<Date>| d.map(|d| Value::String(iso(d))).unwrap_or(Value::Null);
        let verdict = verdict(&facts, &due, &reasons);
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
            "next_due_on": date(next),
            "verdict": verdict,
        }))
    })
}
