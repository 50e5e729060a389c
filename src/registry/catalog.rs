//! Describing registrations against the live catalogs: does the table have
//! these columns, of usable types, and can the activity table's match columns
//! be compared with the assignments table's? `track_assignments` and
//! `track_activities` raise what these return; loading a registration
//! (mod.rs) skips one that no longer fits.

use super::{quote_ident, ActivityTable, AssignmentTable, MatchKey};
use crate::local_time::DateKind;
use crate::query::one;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

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

/// Why a registration does not fit the tables as they are now: the SQLSTATE
/// and message `track_*` raise.
pub struct DescribeError(pub PgSqlErrorCode, pub String);

impl DescribeError {
    pub fn raise(self) -> ! {
        crate::errors::raise(self.0, self.1)
    }
}

/// An assignments registration by raw column names, as stored in
/// `followup.assignment_tables` or given to `track_assignments`.
pub struct AssignmentSpec {
    pub relid: pg_sys::Oid,
    pub id_column: String,
    pub mentor_column: String,
    pub last_contact_column: String,
    pub created_column: Option<String>,
    pub coordinator_column: Option<String>,
    pub organization_column: Option<String>,
    pub active_when: Option<String>,
    pub payload_columns: Vec<String>,
}

/// Resolves an assignments registration against the live catalogs: every
/// named column exists, the last-contact and created columns are dates or
/// timestamps. (`active_when` is validated by active_when.rs when it is
/// registered.)
pub fn describe_assignment_table(
    client: &SpiClient<'_>,
    spec: &AssignmentSpec,
) -> Result<AssignmentTable, DescribeError> {
    use PgSqlErrorCode::*;
    let relid = spec.relid;
    let table = qualified_name(client, relid)
        .ok_or_else(|| DescribeError(ERRCODE_UNDEFINED_TABLE, format!("relation {} does not exist", relid.to_u32())))?;
    let column = |name: &str| {
        column_type(client, relid, name).ok_or_else(|| {
            DescribeError(
                ERRCODE_UNDEFINED_COLUMN,
                format!("column {} of relation {table} does not exist", quote_ident(name)),
            )
        })
    };
    let date_column = |name: &str, role: &str| {
        let type_oid = column(name)?;
        DateKind::from_type_oid(type_oid).ok_or_else(|| {
            DescribeError(
                ERRCODE_DATATYPE_MISMATCH,
                format!(
                    "{role} {} of {table} has type {}, but must be date, timestamp or timestamptz",
                    quote_ident(name),
                    type_name(client, type_oid)
                ),
            )
        })
    };
    let id_type = column(&spec.id_column)?;
    column(&spec.mentor_column)?;
    let last_contact_kind = date_column(&spec.last_contact_column, "last contact column")?;
    let created_column = match &spec.created_column {
        Some(created) => Some((quote_ident(created), date_column(created, "created column")?)),
        None => None,
    };
    for name in spec.coordinator_column.iter().chain(&spec.organization_column).chain(&spec.payload_columns) {
        column(name)?;
    }
    Ok(AssignmentTable {
        relid,
        table: table.clone(),
        id_column: quote_ident(&spec.id_column),
        id_type,
        mentor_column: quote_ident(&spec.mentor_column),
        last_contact_column: quote_ident(&spec.last_contact_column),
        last_contact_kind,
        created_column,
        coordinator_column: spec.coordinator_column.as_deref().map(quote_ident),
        organization_column: spec.organization_column.as_deref().map(quote_ident),
        active_when: spec.active_when.clone(),
        payload_columns: spec.payload_columns.iter().map(|c| (c.clone(), quote_ident(c))).collect(),
    })
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
    let invalid = |code, msg: String| Err(DescribeError(code, msg));
    let table = qualified_name(client, relid)
        .ok_or_else(|| DescribeError(ERRCODE_UNDEFINED_TABLE, format!("relation {} does not exist", relid.to_u32())))?;
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
