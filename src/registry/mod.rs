//! The registrations (`followup.assignment_tables`, `followup.activity_tables`)
//! as typed descriptions, with every identifier already quoted for SQL.
//!
//! Everything that generates SQL against the app's tables (tracking triggers,
//! the run, corrections) starts from these structs, so quoting and type
//! handling live in one place. A registration is stored by column names and
//! described against the live catalogs each time it is loaded (catalog.rs),
//! with the same checks `track_assignments` and `track_activities` apply.

mod catalog;

pub use catalog::{
    describe_activity_table, describe_assignment_table, qualified_name, type_name, AssignmentSpec, DescribeError,
};

use crate::local_time::DateKind;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

/// The registered assignments table.
#[derive(Clone, Debug)]
pub struct AssignmentTable {
    pub relid: pg_sys::Oid,
    /// The table's owner: our statements on the app's tables run as this
    /// role (security.rs).
    pub owner: pg_sys::Oid,
    /// `"schema"."table"`
    pub table: String,
    /// Quoted column names.
    pub id_column: String,
    /// The id column's type.
    pub id_type: pg_sys::Oid,
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
}

/// The equality that compares a match-column pair, written
/// `assignment_column EQUALS activity_column`: always the built-in one,
/// whatever a caller created elsewhere (catalog.rs admits only pairs of
/// built-in base types).
pub const EQUALS: &str = "OPERATOR(pg_catalog.=)";

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

impl AssignmentTable {
    /// SQL: is this row of the assignments table (its columns unqualified)
    /// the assignment whose id, as the outbox and the SQL API carry it
    /// (`id::text`), is the text expression `text_id`? Compares in the id
    /// column's own type, so its index is used; a text that is not a valid
    /// id of that type matches nothing (no error). For id types other than
    /// integers, text and uuid it compares as text, without the index.
    pub fn id_equals_sql(&self, text_id: &str) -> String {
        match self.id_from_text_sql(text_id) {
            Some(typed) => format!("{} = {typed}", self.id_column),
            None => format!("({})::pg_catalog.text = ({text_id})", self.id_column),
        }
    }

    /// SQL: the text expression `text_id` as a value comparable with the id
    /// column through its index, or NULL when it is not a valid id; None for
    /// id types other than integers, text and uuid (compare as text).
    pub fn id_from_text_sql(&self, text_id: &str) -> Option<String> {
        match self.id_type {
            pg_sys::INT2OID | pg_sys::INT4OID | pg_sys::INT8OID => Some(format!(
                "(CASE WHEN ({text_id}) ~ '^[+-]?[0-9]{{1,19}}$'
                        AND ({text_id})::pg_catalog.numeric BETWEEN -9223372036854775808 AND 9223372036854775807
                       THEN ({text_id})::pg_catalog.int8 END)"
            )),
            pg_sys::TEXTOID | pg_sys::VARCHAROID => Some(format!("({text_id})")),
            pg_sys::UUIDOID => Some(format!(
                "(CASE WHEN ({text_id}) ~* '^[0-9a-f]{{8}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{12}}$'
                       THEN ({text_id})::pg_catalog.uuid END)"
            )),
            _ => None,
        }
    }
}

pub fn quote_ident(ident: &str) -> String {
    pgrx::spi::quote_identifier(ident)
}

pub fn quote_literal(literal: &str) -> String {
    pgrx::spi::quote_literal(literal)
}

const ASSIGNMENT_REGISTRATION: &str = include_str!("../../sql/queries/assignment_registration.sql");
const ACTIVITY_REGISTRATIONS: &str = include_str!("../../sql/queries/activity_registrations.sql");

/// The statements this library generates read objects of its own
/// version's schema: with the library of a newer release installed and the
/// database not yet updated (README, "Upgrading"), runs and claims refuse
/// with a clear error instead of failing on a missing object.
pub fn require_current_schema(client: &SpiClient<'_>) {
    let library = env!("CARGO_PKG_VERSION");
    let schema = crate::query::one::<String>(
        client,
        "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'pg_followup'",
        &[],
    );
    if schema.as_deref() != Some(library) {
        crate::errors::raise_with_hint(
            pgrx::PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!(
                "pg_followup's schema is version {} but its library is version {library}",
                schema.as_deref().unwrap_or("(none)")
            ),
            "Run ALTER EXTENSION pg_followup UPDATE.",
        )
    }
}

/// The registered assignments table, or None when none is registered (or it
/// was dropped, or no longer fits its registration).
pub fn load_assignment_table(client: &SpiClient<'_>) -> Option<AssignmentTable> {
    let row = client.select(ASSIGNMENT_REGISTRATION, None, &[]).ok()?.first();
    let spec = AssignmentSpec {
        relid: row.get(1).ok()??,
        id_column: row.get(2).ok()??,
        mentor_column: row.get(3).ok()??,
        last_contact_column: row.get(4).ok()??,
        created_column: row.get(5).ok()?,
        coordinator_column: row.get(6).ok()?,
        organization_column: row.get(7).ok()?,
        active_when: row.get(8).ok()?,
        payload_columns: row.get::<Vec<String>>(9).ok()?.unwrap_or_default(),
    };
    describe_assignment_table(client, &spec).ok()
}

/// The registered assignments table, or an error saying to register one.
pub fn require_assignment_table(client: &SpiClient<'_>) -> AssignmentTable {
    load_assignment_table(client).unwrap_or_else(|| {
        crate::errors::raise_with_hint(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "no assignments table is tracked",
            "Register it first with followup.track_assignments(...).",
        )
    })
}

/// A stored activity registration: (table, occurred column, match columns,
/// assignment columns).
pub type ActivityRegistration = (pg_sys::Oid, String, Vec<String>, Vec<String>);

/// The activity registrations as stored, whether or not they still fit.
pub fn activity_registrations(client: &SpiClient<'_>) -> Vec<ActivityRegistration> {
    client
        .select(ACTIVITY_REGISTRATIONS, None, &[])
        .map(|rows| {
            rows.filter_map(|row| Some((row.get(1).ok()??, row.get(2).ok()??, row.get(3).ok()??, row.get(4).ok()??)))
                .collect()
        })
        .unwrap_or_default()
}

/// All registered activity tables that still exist and fit the assignments
/// table.
pub fn load_activity_tables(client: &SpiClient<'_>) -> Vec<ActivityTable> {
    let Some(assignments_relid) = crate::query::one::<pg_sys::Oid>(
        client,
        "SELECT relation::pg_catalog.oid FROM followup.assignment_tables",
        &[],
    ) else {
        return Vec::new();
    };
    activity_registrations(client)
        .into_iter()
        .filter_map(|(relid, occurred, matches, targets)| {
            describe_activity_table(client, relid, &occurred, &matches, &targets, assignments_relid).ok()
        })
        .collect()
}
