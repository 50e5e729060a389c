//! Local time: the dates pg_followup reasons in, and the one place that turns
//! dates, timestamps and instants into each other.
//!
//! A cycle start, the date of an activity and "today" are local dates in a
//! time zone. Dates and timestamps without zone are local wall-clock values;
//! a timestamptz is an instant. Every conversion between them goes through
//! `convert`, and "today" through `today_sql`, with the zone as a parameter:
//! `Zone::SETTING` (`followup.timezone`, read when the statement executes, so
//! cached plans follow a changed setting) or any other zone expression.

use crate::query::select_one;
use pgrx::datum::Date;
use pgrx::pg_sys;

/// The types a last-contact, created or occurred column may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DateKind {
    Date,
    Timestamp,
    Timestamptz,
}

impl DateKind {
    pub fn from_type_oid(oid: pg_sys::Oid) -> Option<DateKind> {
        match oid {
            pg_sys::DATEOID => Some(DateKind::Date),
            pg_sys::TIMESTAMPOID => Some(DateKind::Timestamp),
            pg_sys::TIMESTAMPTZOID => Some(DateKind::Timestamptz),
            _ => None,
        }
    }
}

/// A time zone, as a SQL expression yielding its name.
#[derive(Clone, Copy, Debug)]
pub struct Zone<'a>(pub &'a str);

impl Zone<'static> {
    /// `followup.timezone`, read at execution time.
    pub const SETTING: Zone<'static> = Zone("pg_catalog.current_setting('followup.timezone')");
}

impl std::fmt::Display for Zone<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// SQL converting `expr` of kind `from` into kind `to`, dates and timestamps
/// being local to `zone`.
pub fn convert(expr: &str, from: DateKind, to: DateKind, zone: Zone<'_>) -> String {
    use DateKind::*;
    match (from, to) {
        (a, b) if a == b => expr.to_string(),
        (Date, Timestamp) => format!("({expr})::pg_catalog.timestamp"),
        (Date, Timestamptz) => format!("(({expr})::pg_catalog.timestamp AT TIME ZONE {zone})"),
        (Timestamp, Date) => format!("({expr})::pg_catalog.date"),
        (Timestamp, Timestamptz) => format!("(({expr}) AT TIME ZONE {zone})"),
        (Timestamptz, Date) => format!("(({expr}) AT TIME ZONE {zone})::pg_catalog.date"),
        (Timestamptz, Timestamp) => format!("(({expr}) AT TIME ZONE {zone})"),
        _ => unreachable!("every pair of kinds is handled above"),
    }
}

/// SQL: the local date in `zone` of `expr`, a value of kind `kind`.
pub fn local_date(expr: &str, kind: DateKind, zone: Zone<'_>) -> String {
    convert(expr, kind, DateKind::Date, zone)
}

/// SQL: today's date in `zone` (at the statement's transaction start).
pub fn today_sql(zone: Zone<'_>) -> String {
    local_date("pg_catalog.now()", DateKind::Timestamptz, zone)
}

/// Today in followup.timezone.
pub fn today() -> Date {
    select_one::<Date>(&format!("SELECT {}", today_sql(Zone::SETTING)), &[])
        .unwrap_or_else(|| crate::errors::internal("could not determine today's date"))
}

/// Today in followup.timezone, for SQL (`followup._today()`).
#[pgrx::pg_extern(sql = false)]
fn _today() -> Date {
    today()
}

/// `as_of`, or today in followup.timezone when it is NULL: the date a run or
/// a preview is for. An infinite date is refused: no age can be counted to it.
pub fn as_of_or_today(as_of: Option<Date>) -> Date {
    match as_of {
        Some(date) if !date.is_finite() => {
            crate::errors::raise(pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "as_of must be a finite date")
        }
        Some(date) => date,
        None => today(),
    }
}

/// SQL: `expr` (of kind `kind`) as ISO 8601 text, whatever the session's
/// DateStyle and TimeZone: `2026-06-15`, `2026-06-15T08:00:00`, a
/// timestamptz in UTC with a `Z`.
pub fn iso_text_sql(expr: &str, kind: DateKind) -> String {
    match kind {
        DateKind::Timestamptz => format!(
            "pg_catalog.to_json(({expr}) AT TIME ZONE 'UTC') OPERATOR(pg_catalog.#>>) '{{}}'::pg_catalog.text[] OPERATOR(pg_catalog.||) 'Z'"
        ),
        _ => format!("pg_catalog.to_json({expr}) OPERATOR(pg_catalog.#>>) '{{}}'::pg_catalog.text[]"),
    }
}

/// A date in ISO 8601 (`2026-06-15`), whatever the session's DateStyle.
pub fn iso(date: Date) -> String {
    select_one::<String>("SELECT pg_catalog.to_char($1, 'YYYY-MM-DD')", &[date.into()])
        .unwrap_or_else(|| crate::errors::internal("could not format a date"))
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use super::{convert, iso, today, DateKind, Zone};
    use pgrx::prelude::*;

    fn eval(sql: &str) -> String {
        Spi::get_one::<String>(&format!("SELECT ({sql})::text")).unwrap().unwrap()
    }

    /// One instant, 2026-03-29 00:30 UTC: in Europe/Oslo it is already
    /// 01:30 local (and after 02:00 the clocks jump: the spring-forward day).
    #[pg_test]
    fn conversions_follow_the_zone_given() {
        Spi::run("SET TimeZone = 'UTC'").unwrap();
        let oslo = Zone("'Europe/Oslo'");
        let chicago = Zone("'America/Chicago'");
        let instant = "timestamptz '2026-03-29 00:30+00'";
        assert_eq!(eval(&convert(instant, DateKind::Timestamptz, DateKind::Date, oslo)), "2026-03-29");
        assert_eq!(eval(&convert(instant, DateKind::Timestamptz, DateKind::Date, chicago)), "2026-03-28");
        assert_eq!(eval(&convert(instant, DateKind::Timestamptz, DateKind::Timestamp, oslo)), "2026-03-29 01:30:00");
        // local midnight of a date, as an instant
        assert_eq!(
            eval(&convert("date '2026-03-29'", DateKind::Date, DateKind::Timestamptz, oslo)),
            "2026-03-28 23:00:00+00"
        );
        assert_eq!(
            eval(&convert("date '2026-03-29'", DateKind::Date, DateKind::Timestamp, oslo)),
            "2026-03-29 00:00:00"
        );
    }

    #[pg_test]
    fn the_setting_zone_is_read_when_the_statement_runs() {
        Spi::run("SET followup.timezone = 'Pacific/Kiritimati'").unwrap();
        let sql = convert("timestamptz '2026-06-15 12:00+00'", DateKind::Timestamptz, DateKind::Date, Zone::SETTING);
        assert_eq!(eval(&sql), "2026-06-16");
        Spi::run("SET followup.timezone = 'Pacific/Pago_Pago'").unwrap();
        assert_eq!(eval(&sql), "2026-06-15");
    }

    #[pg_test]
    fn today_is_the_local_date_of_now_and_iso_ignores_datestyle() {
        Spi::run("SET DateStyle = 'Postgres, MDY'; SET followup.timezone = 'Asia/Tokyo'").unwrap();
        let expected = Spi::get_one::<String>("SELECT to_char((now() AT TIME ZONE 'Asia/Tokyo')::date, 'YYYY-MM-DD')")
            .unwrap()
            .unwrap();
        assert_eq!(iso(today()), expected);
    }
}
