//! When a message may be handed out (README, "Send windows, calendars and
//! digests"): an organization's calendar (its effective policy's time zone,
//! daily window and weekdays, and the quiet days of the organization and of
//! `'*'`), a recipient's absences, and a newer reminder superseding an older
//! one. The arithmetic is `followup._opening` (sql/windows.sql); this module
//! assembles its arguments, once, for every caller:
//!
//! * the run gives each new message `visible_at`, the opening from now of
//!   its organization (`Openings`, one per organization, not per message);
//! * a claim or digest withdraws superseded messages and defers the others
//!   to `earliest_sql` (calendar and absence) when that is later than now;
//! * `fail` defers a retry with `followup._opens_at`;
//! * `set_away` / `end_away` move a recipient's pending messages
//!   (`_place_recipient_messages`);
//! * explain names the gate that holds a message back (`gate_sql`).
//!
//! A message without an organization, or of one with neither a policy nor
//! quiet days of its own, has the calendar of `'*'`.

use crate::plan_cache;
use crate::rule::policy::Policy;
use pgrx::datum::{Date, TimestampWithTimeZone};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::PgOid;

/// SQL: the key of an organization's calendar, `'*'` for none.
pub fn key_sql(organization: &str) -> String {
    format!("coalesce(({organization})::pg_catalog.text, '*')")
}

/// SQL, a one-row subquery: the calendar of the organization key `key`
/// (`key_sql`), as `zone`, `send_from`, `send_until`, `send_days` and
/// `quiet` (its quiet days and `'*'`'s, from the instant `since` on, give
/// or take the day in any zone: the caller asks `_opening` from `since` or
/// later). Use it LATERAL, aliased.
pub fn calendar_sql(key: &str, since: &str) -> String {
    let policy = Policy::EFFECTIVE;
    format!(
        "(SELECT followup._policy_zone({timezone}) AS zone, {send_from} AS send_from, {send_until} AS send_until,
                 {send_days} AS send_days,
                 ARRAY(SELECT q.day FROM followup.quiet_days AS q
                                   WHERE q.organization IN ('*', m.organization)
                                     AND q.day >= ({since})::pg_catalog.date - 2
                                   ORDER BY q.day) AS quiet
            FROM (SELECT ({key}) AS organization) AS m {join})",
        timezone = policy.value("timezone"),
        send_from = policy.value("send_from"),
        send_until = policy.value("send_until"),
        send_days = policy.value("send_days"),
        join = policy.join_sql("m.organization"),
    )
}

/// SQL: the first instant from `at` at which a message with the calendar
/// `calendar` (an alias of `calendar_sql`) may be handed out, on a local
/// day after `away_until` (a date expression, NULL when not away).
pub fn earliest_sql(calendar: &str, at: &str, away_until: &str) -> String {
    format!(
        "followup._opening({at}, ({away_until}) + 1, {calendar}.zone, {calendar}.send_from, {calendar}.send_until,
                           {calendar}.send_days, {calendar}.quiet)"
    )
}

/// SQL: the local date of `at` in the zone of `calendar`.
pub fn local_day_sql(calendar: &str, at: &str) -> String {
    format!("(pg_catalog.timezone({calendar}.zone, {at}))::pg_catalog.date")
}

/// SQL: the last day of the open absences of recipient (`role`, `id`)
/// that cover the local date `day`; NULL when they are not away.
pub fn away_until_sql(role: &str, id: &str, day: &str) -> String {
    format!(
        "(SELECT pg_catalog.max(w.until_day) FROM followup.away AS w
           WHERE w.recipient_role = ({role}) AND w.recipient_id = ({id}) AND w.ended_at IS NULL
             AND w.until_day >= ({day}) AND w.from_day <= ({day}))"
    )
}

/// SQL: is the message `message` (an outbox row alias) superseded, by a
/// newer sequence of the same assignment, cycle and kind? A recipient then
/// gets the latest reminder for a contact, not all of them at once.
pub fn superseded_sql(message: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM followup.outbox AS newer
                  WHERE newer.assignment_id = {message}.assignment_id AND newer.cycle_start = {message}.cycle_start
                    AND newer.kind = {message}.kind AND newer.sequence > {message}.sequence)"
    )
}

/// SQL: what holds the message `message` back at `at`, by its calendar
/// `calendar`: `superseded`, `recipient_away` (with `until`), `quiet_day`,
/// `window_closed`, each with the instant it may go out (`visible_from`);
/// NULL when nothing does. In the order a claim applies them.
pub fn gate_sql(message: &str, calendar: &str, at: &str) -> String {
    let away_until = away_until_sql(
        &format!("{message}.recipient_role"),
        &format!("{message}.recipient_id"),
        &local_day_sql(calendar, at),
    );
    format!(
        "CASE WHEN {superseded} THEN pg_catalog.jsonb_build_object('gate', 'superseded')
              WHEN {away_until} IS NOT NULL
              THEN pg_catalog.jsonb_build_object('gate', 'recipient_away', 'until', {away_until},
                                                 'visible_from', {earliest_after_away})
              WHEN {today} = ANY ({calendar}.quiet)
              THEN pg_catalog.jsonb_build_object('gate', 'quiet_day', 'visible_from', {earliest})
              WHEN {earliest} > {at}
              THEN pg_catalog.jsonb_build_object('gate', 'window_closed', 'visible_from', {earliest})
         END",
        superseded = superseded_sql(message),
        earliest_after_away = earliest_sql(calendar, at, &away_until),
        today = local_day_sql(calendar, at),
        earliest = earliest_sql(calendar, at, "NULL::pg_catalog.date"),
    )
}

/// The opening from `at` of every organization's calendar, for the rows of
/// a statement that have an organization: joined once per organization
/// with a calendar of its own (a policy or quiet days) and once for `'*'`,
/// so that a run over a million assignments computes a handful.
pub struct Openings {
    pub own: &'static str,
    pub default: &'static str,
}

impl Openings {
    pub const USUAL: Openings = Openings { own: "own_opening", default: "default_opening" };

    /// SQL joining the openings from `at` for the organization expression
    /// `organization`.
    pub fn join_sql(&self, organization: &str, at: &str) -> String {
        let opening = earliest_sql("cal", at, "NULL::pg_catalog.date");
        format!(
            "LEFT JOIN (SELECT k.organization, {opening} AS opens_at
                          FROM (SELECT p.organization FROM followup.policies AS p WHERE p.organization <> '*'
                                UNION
                                SELECT q.organization FROM followup.quiet_days AS q WHERE q.organization <> '*') AS k
                         CROSS JOIN LATERAL {own_calendar} AS cal
                        OFFSET 0) AS {own} ON {own}.organization = ({organization})
             CROSS JOIN (SELECT {opening} AS opens_at FROM {default_calendar} AS cal OFFSET 0) AS {default}",
            own_calendar = calendar_sql("k.organization", at),
            default_calendar = calendar_sql("'*'", at),
            own = self.own,
            default = self.default,
        )
    }

    /// SQL: the opening of the row's organization, joined by `join_sql`.
    pub fn value(&self) -> String {
        format!("coalesce({own}.opens_at, {default}.opens_at)", own = self.own, default = self.default)
    }
}

/// `followup._opens_at(organization, at)`: when a message of
/// `organization` may be handed out at the earliest from `at`, by its
/// calendar (`fail` defers a retry with it).
#[pg_extern(sql = false)]
fn _opens_at(organization: Option<&str>, at: TimestampWithTimeZone) -> TimestampWithTimeZone {
    Spi::connect_mut(|client| {
        let build = |_: &mut SpiClient<'_>| plan_cache::Statement {
            sql: format!(
                "SELECT {earliest} FROM {calendar} AS cal",
                earliest = earliest_sql("cal", "$2::pg_catalog.timestamptz", "NULL::pg_catalog.date"),
                calendar = calendar_sql(&key_sql("$1"), "$2::pg_catalog.timestamptz"),
            ),
            types: vec![PgOid::from(pg_sys::TEXTOID), PgOid::from(pg_sys::TIMESTAMPTZOID)],
            owner: None,
            reads: Vec::new(),
        };
        plan_cache::with_kept(client, "calendar.opens_at", build, |client, statement| {
            client
                .select(statement, Some(1), &[organization.into(), at.into()])
                .ok()
                .and_then(|t| t.first().get_one::<TimestampWithTimeZone>().ok().flatten())
                .unwrap_or_else(|| crate::errors::internal("the default policy '*' is missing"))
        })
    })
}

/// `followup._place_recipient_messages(role, id, released_until)`: after
/// `set_away` or `end_away`, the recipient's pending messages are placed
/// anew. One the recipient's absences now hold (a claim would defer it) is
/// moved to the first opening after them at once, so that a claim racing
/// `set_away` either took it first (the row lock orders them) or finds it
/// held. With `released_until`, the last day of the absences just ended,
/// the messages they held (visible at or after the first opening after
/// that day) are visible from the next opening instead. Returns how many
/// moved.
#[pg_extern(sql = false)]
fn _place_recipient_messages(recipient_role: &str, recipient_id: &str, released_until: Option<Date>) -> i64 {
    let now = "pg_catalog.now()";
    let away_until = away_until_sql("o.recipient_role", "o.recipient_id", &local_day_sql("cal", now));
    let sql = format!(
        "WITH placed AS (
             SELECT o.message_id, o.visible_at, {earliest} AS earliest, {held_until} AS held_until
               FROM followup.outbox AS o
              CROSS JOIN LATERAL {calendar} AS cal
              WHERE o.recipient_role = $1::followup.recipient_role AND o.recipient_id = $2::pg_catalog.text
                AND o.delivered_at IS NULL AND o.cancelled_at IS NULL AND o.status = 'pending'
                FOR UPDATE OF o),
         moved AS (
             UPDATE followup.outbox AS o
                SET visible_at = p.earliest
               FROM placed AS p
              WHERE o.message_id = p.message_id
                AND (p.earliest > p.visible_at
                     OR ($3 IS NOT NULL AND p.visible_at >= p.held_until AND p.earliest < p.visible_at))
             RETURNING 1)
         SELECT pg_catalog.count(*) FROM moved",
        earliest = earliest_sql("cal", now, &away_until),
        held_until = earliest_sql("cal", now, "$3::pg_catalog.date"),
        calendar = calendar_sql(&key_sql("o.organization"), now),
    );
    crate::query::select_one::<i64>(&sql, &[recipient_role.into(), recipient_id.into(), released_until.into()])
        .unwrap_or(0)
}
