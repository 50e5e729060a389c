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
    let owner = one::<pg_sys::Oid>(client, "SELECT relowner FROM pg_catalog.pg_class WHERE oid = $1", &[relid.into()])
        .ok_or_else(|| DescribeError(ERRCODE_UNDEFINED_TABLE, format!("relation {table} does not exist")))?;
    Ok(AssignmentTable {
        relid,
        owner,
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
        if !comparable_with_builtin_equality(client, activity_type, assignment_type) {
            return invalid(
                ERRCODE_DATATYPE_MISMATCH,
                format!(
                    "match column {table}.{} ({}) cannot be compared with {assignments_table}.{} ({}) by a built-in equality operator",
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

/// Can the pair be compared with `OPERATOR(pg_catalog.=)`, as tracking
/// compares them (`assignment_column = activity_column`), with an equality
/// an index can use? Both base types must be built-in, and either share
/// their default equality (int and int, text and varchar) or have a
/// built-in cross-type one (int and bigint). Then the parser can only find
/// built-in operators and casts (a cast needs its creator to own the source
/// or the target type), and no code of a table owner's runs in the
/// comparison: a user-defined `=`, or a user type with its own, is refused.
fn comparable_with_builtin_equality(
    client: &SpiClient<'_>,
    activity_type: pg_sys::Oid,
    assignment_type: pg_sys::Oid,
) -> bool {
    let (activity_base, assignment_base) =
        unsafe { (pg_sys::getBaseType(activity_type), pg_sys::getBaseType(assignment_type)) };
    if !is_builtin(activity_base) || !is_builtin(assignment_base) {
        return false;
    }
    let default_equality = |t: pg_sys::Oid| unsafe {
        let entry = pg_sys::lookup_type_cache(t, pg_sys::TYPECACHE_EQ_OPR as i32);
        (*entry).eq_opr
    };
    let shared = default_equality(activity_base);
    if shared != pg_sys::InvalidOid && is_builtin(shared) && shared == default_equality(assignment_base) {
        return true;
    }
    one::<bool>(
        client,
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_operator AS o
                         WHERE o.oprname OPERATOR(pg_catalog.=) '='
                           AND o.oprnamespace OPERATOR(pg_catalog.=) 'pg_catalog'::pg_catalog.regnamespace
                           AND o.oprleft OPERATOR(pg_catalog.=) $1 AND o.oprright OPERATOR(pg_catalog.=) $2
                           AND o.oid OPERATOR(pg_catalog.<) $3)",
        &[assignment_base.into(), activity_base.into(), pg_sys::Oid::from(pg_sys::FirstNormalObjectId).into()],
    )
    .unwrap_or(false)
}

/// Built into PostgreSQL (an OID below FirstNormalObjectId), not created
/// by a user or an extension.
fn is_builtin(oid: pg_sys::Oid) -> bool {
    oid.to_u32() < pg_sys::FirstNormalObjectId
}
