//! Reading the registrations (`followup.assignment_tables`, `followup.activity_tables`)
//! into typed descriptions, with every identifier already quoted for SQL.
//!
//! Everything that generates SQL against the app's tables (tracking triggers, the
//! run, manual corrections) starts from these structs, so quoting and type
//! handling live in one place.

use crate::query::one;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

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

/// SQL that yields the value of `followup.timezone` at execution time, so cached
/// plans follow a changed setting.
pub const TIMEZONE_SQL: &str = "pg_catalog.current_setting('followup.timezone')";

/// SQL converting `expr` of kind `from` into kind `to`. Dates and timestamps
/// without zone are local wall-clock values in `followup.timezone`.
pub fn convert(expr: &str, from: DateKind, to: DateKind) -> String {
    use DateKind::*;
    match (from, to) {
        (a, b) if a == b => expr.to_string(),
        (Date, Timestamp) => format!("({expr})::pg_catalog.timestamp"),
        (Date, Timestamptz) => {
            format!("(({expr})::pg_catalog.timestamp AT TIME ZONE {TIMEZONE_SQL})")
        }
        (Timestamp, Date) => format!("({expr})::pg_catalog.date"),
        (Timestamp, Timestamptz) => format!("(({expr}) AT TIME ZONE {TIMEZONE_SQL})"),
        (Timestamptz, Date) => format!("(({expr}) AT TIME ZONE {TIMEZONE_SQL})::pg_catalog.date"),
        (Timestamptz, Timestamp) => format!("(({expr}) AT TIME ZONE {TIMEZONE_SQL})"),
        _ => unreachable!(),
    }
}

/// The registered assignments table.
#[derive(Clone, Debug)]
pub struct AssignmentTable {
    pub relid: pg_sys::Oid,
    /// `"schema"."table"`
    pub table: String,
    /// Quoted column names.
    pub id_column: String,
    pub mentor_column: String,
    pub last_contact_column: String,
    pub last_contact_kind: DateKind,
    pub created_column: Option<(String, DateKind)>,
    pub coordinator_column: Option<String>,
    pub organization_column: Option<String>,
    pub active_when: Option<String>,
    /// (raw name for the JSON key, quoted column)
    pub payload_columns: Vec<(String, String)>,
}

/// One column pair that links an activity to its assignment.
#[derive(Clone, Debug)]
pub struct MatchKey {
    /// Quoted column of the activity table.
    pub activity_column: String,
    /// Raw (unquoted) name of the activity column, for tuple access in row triggers.
    pub activity_column_raw: String,
    pub activity_type: pg_sys::Oid,
    /// Quoted column of the assignments table.
    pub assignment_column: String,
    /// `OPERATOR(schema.=)` that compares the two.
    pub equality: String,
}

/// A registered activity table.
#[derive(Clone, Debug)]
pub struct ActivityTable {
    pub relid: pg_sys::Oid,
    pub table: String,
    pub occurred_column: String,
    pub occurred_column_raw: String,
    pub occurred_type: pg_sys::Oid,
    pub occurred_kind: DateKind,
    pub keys: Vec<MatchKey>,
}

pub fn quote_ident(ident: &str) -> String {
    pgrx::spi::quote_identifier(ident)
}

pub fn quote_literal(literal: &str) -> String {
    pgrx::spi::quote_literal(literal)
}

/// `"schema"."table"` for a relation, or None when it does not exist.
pub fn qualified_name(client: &SpiClient<'_>, relid: pg_sys::Oid) -> Option<String> {
    one(
        client,
        "SELECT pg_catalog.format('%I.%I', n.nspname, c.relname)
           FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
          WHERE c.oid = $1",
        &[relid.into()],
    )
}

/// Type of a live (not dropped, not system) column, or None.
pub fn column_type(client: &SpiClient<'_>, relid: pg_sys::Oid, column: &str) -> Option<pg_sys::Oid> {
    one(
        client,
        "SELECT atttypid FROM pg_catalog.pg_attribute
          WHERE attrelid = $1 AND attname = $2::name AND attnum > 0 AND NOT attisdropped",
        &[relid.into(), column.into()],
    )
}

pub fn type_name(client: &SpiClient<'_>, type_oid: pg_sys::Oid) -> String {
    one(client, "SELECT pg_catalog.format_type($1, NULL)", &[type_oid.into()])
        .unwrap_or_else(|| format!("type {}", type_oid.to_u32()))
}

/// The registered assignments table, or None when none is registered (or it
/// was dropped).
pub fn load_assignment_table(client: &SpiClient<'_>) -> Option<AssignmentTable> {
    let row = client
        .select(
            "SELECT relation::oid, id_column::text, mentor_column::text, last_contact_column::text,
                    created_column::text, coordinator_column::text, organization_column::text,
                    active_when, payload_columns::text[]
               FROM followup.assignment_tables
              WHERE relation::oid IN (SELECT oid FROM pg_catalog.pg_class)",
            None,
            &[],
        )
        .ok()?
        .first();
    let relid: pg_sys::Oid = row.get(1).ok()??;
    let id: String = row.get(2).ok()??;
    let mentor: String = row.get(3).ok()??;
    let last_contact: String = row.get(4).ok()??;
    let created: Option<String> = row.get(5).ok()?;
    let coordinator: Option<String> = row.get(6).ok()?;
    let organization: Option<String> = row.get(7).ok()?;
    let active_when: Option<String> = row.get(8).ok()?;
    let payload: Vec<String> = row.get::<Vec<String>>(9).ok()?.unwrap_or_default();

    let kind_of = |column: &str| column_type(client, relid, column).and_then(DateKind::from_type_oid);
    Some(AssignmentTable {
        relid,
        table: qualified_name(client, relid)?,
        id_column: quote_ident(&id),
        mentor_column: quote_ident(&mentor),
        last_contact_kind: kind_of(&last_contact)?,
        last_contact_column: quote_ident(&last_contact),
        created_column: match created {
            Some(c) => Some((quote_ident(&c), kind_of(&c)?)),
            None => None,
        },
        coordinator_column: coordinator.as_deref().map(quote_ident),
        organization_column: organization.as_deref().map(quote_ident),
        active_when,
        payload_columns: payload.iter().map(|c| (c.clone(), quote_ident(c))).collect(),
    })
}

/// The registered assignments table, or an error saying to register one.
pub fn require_assignment_table(client: &SpiClient<'_>) -> AssignmentTable {
    load_assignment_table(client).unwrap_or_else(|| {
        crate::errors::raise_with_hint(
            pgrx::PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "no assignments table is tracked",
            "Register it first with followup.track_assignments(...).",
        )
    })
}

/// All registered activity tables that still exist.
pub fn load_activity_tables(client: &SpiClient<'_>) -> Vec<ActivityTable> {
    let rows = client
        .select(
            "SELECT relation::oid, occurred_column::text, match_columns::text[], assignment_columns::text[]
               FROM followup.activity_tables
              WHERE relation::oid IN (SELECT oid FROM pg_catalog.pg_class)
              ORDER BY relation::oid",
            None,
            &[],
        )
        .map(|t| {
            t.filter_map(|row| {
                Some((
                    row.get::<pg_sys::Oid>(1).ok()??,
                    row.get::<String>(2).ok()??,
                    row.get::<Vec<String>>(3).ok()??,
                    row.get::<Vec<String>>(4).ok()??,
                ))
            })
            .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let Some(assignments) = load_assignment_table_relid(client) else {
        return Vec::new();
    };
    rows.into_iter()
        .filter_map(|(relid, occurred, matches, targets)| {
            describe_activity_table(client, relid, &occurred, &matches, &targets, assignments).ok()
        })
        .collect()
}

fn load_assignment_table_relid(client: &SpiClient<'_>) -> Option<pg_sys::Oid> {
    one(client, "SELECT relation::oid FROM followup.assignment_tables", &[])
}

/// Why an activity registration does not fit the tables as they are now.
pub enum DescribeError {
    /// (SQLSTATE, message)
    Invalid(PgSqlErrorCode, String),
}

/// Resolves an activity registration against the live catalogs, checking the
/// occurred column type and every match-column pair.
pub fn describe_activity_table(
    client: &SpiClient<'_>,
    relid: pg_sys::Oid,
    occurred: &str,
    match_columns: &[String],
    assignment_columns: &[String],
    assignments_relid: pg_sys::Oid,
) -> Result<ActivityTable, DescribeError> {
    use PgSqlErrorCode::*;
    let invalid = |code, msg: String| Err(DescribeError::Invalid(code, msg));
    let table = qualified_name(client, relid).ok_or_else(|| {
        DescribeError::Invalid(ERRCODE_UNDEFINED_TABLE, format!("relation {} does not exist", relid.to_u32()))
    })?;
    let assignments_table = qualified_name(client, assignments_relid).unwrap_or_default();

    let Some(occurred_type) = column_type(client, relid, occurred) else {
        return invalid(
            ERRCODE_UNDEFINED_COLUMN,
            format!("column {} of relation {table} does not exist", quote_ident(occurred)),
        );
    };
    let Some(occurred_kind) = DateKind::from_type_oid(occurred_type) else {
        return invalid(
            ERRCODE_DATATYPE_MISMATCH,
            format!(
                "occurred column {} of {table} has type {}, but must be date, timestamp or timestamptz",
                quote_ident(occurred),
                type_name(client, occurred_type)
            ),
        );
    };
    if match_columns.is_empty() {
        return invalid(ERRCODE_INVALID_PARAMETER_VALUE, "match_columns must name at least one column".into());
    }
    if match_columns.len() != assignment_columns.len() {
        return invalid(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!(
                "match_columns has {} columns but assignment_columns has {}; they are compared pairwise",
                match_columns.len(),
                assignment_columns.len()
            ),
        );
    }
    let mut keys = Vec::with_capacity(match_columns.len());
    for (activity_column, assignment_column) in match_columns.iter().zip(assignment_columns) {
        let Some(activity_type) = column_type(client, relid, activity_column) else {
            return invalid(
                ERRCODE_UNDEFINED_COLUMN,
                format!("column {} of relation {table} does not exist", quote_ident(activity_column)),
            );
        };
        let Some(assignment_type) = column_type(client, assignments_relid, assignment_column) else {
            return invalid(
                ERRCODE_UNDEFINED_COLUMN,
                format!("column {} of relation {assignments_table} does not exist", quote_ident(assignment_column)),
            );
        };
        let Some(equality) = equality_operator(client, activity_type, assignment_type) else {
            return invalid(
                ERRCODE_DATATYPE_MISMATCH,
                format!(
                    "match column {table}.{} ({}) cannot be compared with {assignments_table}.{} ({})",
                    quote_ident(activity_column),
                    type_name(client, activity_type),
                    quote_ident(assignment_column),
                    type_name(client, assignment_type)
                ),
            );
        };
        keys.push(MatchKey {
            activity_column: quote_ident(activity_column),
            activity_column_raw: activity_column.clone(),
            activity_type,
            assignment_column: quote_ident(assignment_column),
            equality,
        });
    }
    Ok(ActivityTable {
        relid,
        table,
        occurred_column: quote_ident(occurred),
        occurred_column_raw: occurred.to_string(),
        occurred_type,
        occurred_kind,
        keys,
    })
}

/// `OPERATOR(schema.=)` comparing the two types: the types' own default
/// equality when both share it (text and varchar do), else an exact
/// cross-type `=` (int4 = int8). None when the types cannot be matched.
fn equality_operator(client: &SpiClient<'_>, left: pg_sys::Oid, right: pg_sys::Oid) -> Option<String> {
    let default_eq = |t: pg_sys::Oid| unsafe {
        let base = pg_sys::getBaseType(t);
        let entry = pg_sys::lookup_type_cache(base, pg_sys::TYPECACHE_EQ_OPR as i32);
        (*entry).eq_opr
    };
    let (left_eq, right_eq) = (default_eq(left), default_eq(right));
    let operator = if left_eq != pg_sys::InvalidOid && left_eq == right_eq {
        left_eq
    } else {
        let (l, r) = unsafe { (pg_sys::getBaseType(left), pg_sys::getBaseType(right)) };
        one(
            client,
            "SELECT o.oid FROM pg_catalog.pg_operator o
              WHERE o.oprname = '=' AND o.oprleft = $1 AND o.oprright = $2
                AND o.oprresult = 'pg_catalog.bool'::pg_catalog.regtype",
            &[l.into(), r.into()],
        )?
    };
    one(
        client,
        "SELECT pg_catalog.format('OPERATOR(%I.%s)', n.nspname, o.oprname)
           FROM pg_catalog.pg_operator o JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace
          WHERE o.oid = $1",
        &[operator.into()],
    )
}
