//! `followup.track_assignments`, `followup.track_activities` and
//! `followup.untrack_activities` (README, "Registering the app's tables").
//! The triggers they put on activity tables are kept by partitions.rs.
//!
//! The SQL declarations are in `sql/registration.sql`: the public signatures use
//! `regclass`, `name` and `name[]`, which arrive here as an OID and C strings.
//! They are SECURITY DEFINER with a pinned search_path; who may register a
//! table is decided here, against the role that called (`GetOuterUserId`):
//! the table's owner (or a member of the owning role) or a superuser; to
//! replace the assignments registration, also the owner of the table
//! registered now; to register an activity table, also a role that may set
//! the assignments' last contact itself (README, "Roles and privileges").
//!
//! Every check happens before anything is written, and any error aborts the
//! statement, so a rejected call registers nothing.

use crate::errors::{raise, raise_with_hint, required};
use crate::partitions::sync_triggers;
use crate::plan_cache;
use crate::query::execute;
use crate::registry::{self, quote_ident, AssignmentSpec, DescribeError};
use crate::tracking;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::PgSqlErrorCode::*;
use std::ffi::CStr;

fn name_arg(value: Option<&CStr>, argument: &str) -> String {
    required(value, argument).to_string_lossy().into_owned()
}

fn optional_name(value: Option<&CStr>) -> Option<String> {
    value.map(|v| v.to_string_lossy().into_owned())
}

fn name_array(value: Option<Array<'_, &CStr>>, argument: &str) -> Option<Vec<String>> {
    value.map(|array| {
        array
            .iter()
            .map(|element| match element {
                Some(name) => name.to_string_lossy().into_owned(),
                None => raise(ERRCODE_NULL_VALUE_NOT_ALLOWED, format!("{argument} must not contain NULL")),
            })
            .collect()
    })
}

/// Facts about a relation needed to decide whether it can be registered.
struct RelationInfo {
    name: String,
    kind: char,
    is_partition: bool,
}

fn relation_info(client: &SpiClient<'_>, relid: pg_sys::Oid) -> RelationInfo {
    let row = client
        .select(
            "SELECT pg_catalog.format('%I.%I', n.nspname, c.relname), c.relkind::text, c.relispartition
               FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE c.oid = $1",
            None,
            &[relid.into()],
        )
        .unwrap_or_else(|e| crate::errors::internal(e.to_string()))
        .first();
    let name: Option<String> = row.get(1).ok().flatten();
    let Some(name) = name else {
        raise(ERRCODE_UNDEFINED_TABLE, format!("relation with OID {} does not exist", relid.to_u32()))
    };
    let kind: String = row.get(2).ok().flatten().unwrap_or_default();
    RelationInfo {
        name,
        kind: kind.chars().next().unwrap_or('?'),
        is_partition: row.get(3).ok().flatten().unwrap_or(false),
    }
}

/// The role that called us, even from inside a SECURITY DEFINER function.
fn caller() -> pg_sys::Oid {
    unsafe { pg_sys::GetOuterUserId() }
}

fn caller_name(client: &SpiClient<'_>) -> String {
    crate::query::one::<String>(
        client,
        "SELECT rolname::text FROM pg_catalog.pg_roles WHERE oid = $1",
        &[caller().into()],
    )
    .unwrap_or_default()
}

/// Registering a table creates triggers on it and makes the extension write to
/// it: only its owner (or a superuser) may do that.
pub fn require_owner(client: &SpiClient<'_>, relid: pg_sys::Oid, table: &str) {
    if !caller_owns(client, relid) {
        raise(ERRCODE_INSUFFICIENT_PRIVILEGE, format!("must be owner of table {table}"));
    }
}

/// Is the calling role the owner of the table (a member of the owning role,
/// or a superuser)?
fn caller_owns(client: &SpiClient<'_>, relid: pg_sys::Oid) -> bool {
    crate::query::one::<bool>(
        client,
        "SELECT pg_catalog.pg_has_role($1, c.relowner, 'USAGE') FROM pg_catalog.pg_class c WHERE c.oid = $2",
        &[caller().into(), relid.into()],
    )
    .unwrap_or(false)
}

/// An activity table moves the assignments' last contacts: registering one
/// needs the right to do that directly, i.e. to own the assignments table or
/// to UPDATE its last-contact column.
fn require_last_contact_update(client: &SpiClient<'_>, assignments: &registry::AssignmentTable) {
    let allowed = caller_owns(client, assignments.relid)
        || crate::query::one::<bool>(
            client,
            "SELECT pg_catalog.has_column_privilege($1, $2, a.attnum, 'UPDATE')
               FROM pg_catalog.pg_attribute a
              WHERE a.attrelid = $2 AND pg_catalog.quote_ident(a.attname) = $3",
            &[caller().into(), assignments.relid.into(), assignments.last_contact_column.as_str().into()],
        )
        .unwrap_or(false);
    if !allowed {
        raise_with_hint(
            ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!(
                "registering an activity table needs UPDATE on {}.{} or ownership of {}",
                assignments.table, assignments.last_contact_column, assignments.table
            ),
            "An activity table sets the assignments' last contact; only a role that may set it itself can register one.",
        );
    }
}

/// Tracking reads the activity table as the assignments table's owner
/// (security.rs): that role must be able to.
fn require_readable_by_owner(client: &SpiClient<'_>, assignments: &registry::AssignmentTable, activity: pg_sys::Oid) {
    let readable = crate::query::one::<bool>(
        client,
        "SELECT pg_catalog.has_table_privilege($1, $2, 'SELECT')",
        &[assignments.owner.into(), activity.into()],
    )
    .unwrap_or(false);
    if !readable {
        let table = registry::qualified_name(client, activity).unwrap_or_default();
        let owner = crate::security::role_name(assignments.owner);
        raise_with_hint(
            ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("{owner}, the owner of {}, cannot read {table}", assignments.table),
            format!(
                "pg_followup reads activity tables as the owner of the assignments table: GRANT SELECT ON {table} TO {};",
                quote_ident(&owner)
            ),
        );
    }
}

fn require_table(info: &RelationInfo, what: &str) {
    match info.kind {
        'r' | 'p' => {}
        'f' => raise_with_hint(
            ERRCODE_WRONG_OBJECT_TYPE,
            format!("cannot track foreign table {}", info.name),
            "Tracking uses statement triggers with transition tables, which foreign tables cannot have.",
        ),
        _ => raise(ERRCODE_WRONG_OBJECT_TYPE, format!("{} is not a table; the {what} must be a table", info.name)),
    }
}

#[pg_extern(sql = false)]
#[allow(clippy::too_many_arguments)]
fn track_assignments(
    assignments: Option<pg_sys::Oid>,
    id_column: Option<&CStr>,
    mentor_column: Option<&CStr>,
    last_contact_column: Option<&CStr>,
    created_column: Option<&CStr>,
    coordinator_column: Option<&CStr>,
    organization_column: Option<&CStr>,
    active_when: Option<&str>,
    payload_columns: Option<Array<'_, &CStr>>,
) {
    let relid = required(assignments, "assignments");
    let id_column = name_arg(id_column, "id_column");
    let mentor_column = name_arg(mentor_column, "mentor_column");
    let last_contact_column = name_arg(last_contact_column, "last_contact_column");
    let created_column = optional_name(created_column);
    let coordinator_column = optional_name(coordinator_column);
    let organization_column = optional_name(organization_column);
    let active_when = active_when.map(str::trim).filter(|w| !w.is_empty()).map(str::to_string);
    let payload_columns = name_array(payload_columns, "payload_columns").unwrap_or_default();

    Spi::connect_mut(|client| {
        let info = relation_info(client, relid);
        require_table(&info, "assignments table");
        require_owner(client, relid, &info.name);
        // replacing the registration takes the table registered now away
        // from pg_followup: that is its owner's decision
        if let Some(current) = crate::query::one::<pg_sys::Oid>(
            client,
            "SELECT relation::pg_catalog.oid FROM followup.assignment_tables",
            &[],
        ) {
            if let Some(current_name) = registry::qualified_name(client, current) {
                if current != relid && !caller_owns(client, current) {
                    raise_with_hint(
                        ERRCODE_INSUFFICIENT_PRIVILEGE,
                        format!("must be owner of table {current_name}, the assignments table registered now"),
                        "Only the owner of the registered assignments table may replace its registration.",
                    );
                }
            }
        }
        let table = &info.name;
        let spec = AssignmentSpec {
            relid,
            id_column: id_column.clone(),
            mentor_column: mentor_column.clone(),
            last_contact_column: last_contact_column.clone(),
            created_column: created_column.clone(),
            coordinator_column: coordinator_column.clone(),
            organization_column: organization_column.clone(),
            active_when: active_when.clone(),
            payload_columns: payload_columns.clone(),
        };
        let described = registry::describe_assignment_table(client, &spec).unwrap_or_else(|e| e.raise());
        if let Some(expression) = &active_when {
            crate::active_when::validate(client, &described, expression);
        }

        // Activity tables already registered must still match the (new)
        // table, and its owner must be able to read them.
        for (activity_relid, occurred, matches, targets) in registry::activity_registrations(client) {
            if let Err(DescribeError(code, message)) =
                registry::describe_activity_table(client, activity_relid, &occurred, &matches, &targets, relid)
            {
                raise_with_hint(
                    code,
                    format!("a tracked activity table does not fit {table}: {message}"),
                    "Untrack that activity table first (followup.untrack_activities).",
                );
            }
            require_readable_by_owner(client, &described, activity_relid);
        }

        let registered_by = caller_name(client);
        client
            .update(
                "INSERT INTO followup.assignment_tables AS t
                        (singleton, relation, id_column, mentor_column, last_contact_column, created_column,
                         coordinator_column, organization_column, active_when, payload_columns, registered_by)
                 VALUES (true, $1, $2, $3, $4, $5, $6, $7, $8, $9::name[], $10)
                 ON CONFLICT (singleton) DO UPDATE
                    SET relation = EXCLUDED.relation, id_column = EXCLUDED.id_column,
                        mentor_column = EXCLUDED.mentor_column,
                        last_contact_column = EXCLUDED.last_contact_column,
                        created_column = EXCLUDED.created_column,
                        coordinator_column = EXCLUDED.coordinator_column,
                        organization_column = EXCLUDED.organization_column,
                        active_when = EXCLUDED.active_when, payload_columns = EXCLUDED.payload_columns,
                        registered_at = now(), registered_by = EXCLUDED.registered_by",
                None,
                &[
                    relid.into(),
                    id_column.as_str().into(),
                    mentor_column.as_str().into(),
                    last_contact_column.as_str().into(),
                    created_column.as_deref().into(),
                    coordinator_column.as_deref().into(),
                    organization_column.as_deref().into(),
                    active_when.as_deref().into(),
                    payload_columns.clone().into(),
                    registered_by.as_str().into(),
                ],
            )
            .unwrap_or_else(|e| crate::errors::internal(e.to_string()));
        plan_cache::invalidate_registrations();
        backfill_all(client);
    });
}

#[pg_extern(sql = false)]
fn track_activities(
    activities: Option<pg_sys::Oid>,
    occurred_column: Option<&CStr>,
    match_columns: Option<Array<'_, &CStr>>,
    assignment_columns: Option<Array<'_, &CStr>>,
) {
    let relid = required(activities, "activities");
    let occurred = name_arg(occurred_column, "occurred_column");
    let Some(match_columns) = name_array(match_columns, "match_columns") else {
        raise(ERRCODE_NULL_VALUE_NOT_ALLOWED, "match_columns must not be NULL")
    };
    let assignment_columns =
        name_array(assignment_columns, "assignment_columns").unwrap_or_else(|| match_columns.clone());

    Spi::connect_mut(|client| {
        let assignments = registry::require_assignment_table(client);
        let info = relation_info(client, relid);
        require_table(&info, "activity table");
        if info.is_partition {
            raise_with_hint(
                ERRCODE_WRONG_OBJECT_TYPE,
                format!("{} is a partition", info.name),
                "Track the partitioned table it belongs to; its partitions, present and future, are tracked with it.",
            );
        }
        if relid == assignments.relid {
            raise(ERRCODE_INVALID_PARAMETER_VALUE, "the assignments table cannot also be an activity table");
        }
        require_owner(client, relid, &info.name);
        require_last_contact_update(client, &assignments);
        require_readable_by_owner(client, &assignments, relid);
        if match_columns.is_empty() {
            raise(ERRCODE_INVALID_PARAMETER_VALUE, "match_columns must name at least one column");
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(duplicate) = match_columns.iter().find(|c| !seen.insert(c.as_str())) {
            raise(ERRCODE_INVALID_PARAMETER_VALUE, format!("match_columns names {} twice", quote_ident(duplicate)));
        }
        if match_columns.contains(&occurred) {
            raise(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!("occurred column {} cannot also be a match column", quote_ident(&occurred)),
            );
        }
        let activity = registry::describe_activity_table(
            client,
            relid,
            &occurred,
            &match_columns,
            &assignment_columns,
            assignments.relid,
        )
        .unwrap_or_else(|e| e.raise());

        let registered_by = caller_name(client);
        client
            .update(
                "INSERT INTO followup.activity_tables AS t
                        (relation, occurred_column, match_columns, assignment_columns, registered_by)
                 VALUES ($1, $2, $3::name[], $4::name[], $5)
                 ON CONFLICT (relation) DO UPDATE
                    SET occurred_column = EXCLUDED.occurred_column, match_columns = EXCLUDED.match_columns,
                        assignment_columns = EXCLUDED.assignment_columns,
                        registered_at = now(), registered_by = EXCLUDED.registered_by",
                None,
                &[
                    relid.into(),
                    occurred.as_str().into(),
                    match_columns.clone().into(),
                    assignment_columns.clone().into(),
                    registered_by.as_str().into(),
                ],
            )
            .unwrap_or_else(|e| crate::errors::internal(e.to_string()));
        sync_triggers(client, None);
        plan_cache::invalidate_registrations();
        suggest_index(client, &activity);
        backfill(client, &assignments, &activity, &activity.table);
    });
}

/// Raises every assignment to the latest activity stored in `rows` (the
/// activity table, or one of its partitions), as the assignments table's
/// owner.
pub fn backfill(
    client: &mut SpiClient<'_>,
    assignments: &registry::AssignmentTable,
    activity: &registry::ActivityTable,
    rows: &str,
) {
    let sql = tracking::raise_sql(assignments, activity, rows);
    crate::security::as_owner_statement(assignments.owner, &sql, || execute(client, &sql, &[]));
}

#[pg_extern(sql = false)]
fn untrack_activities(activities: Option<pg_sys::Oid>) {
    let relid = required(activities, "activities");
    Spi::connect_mut(|client| {
        let info = relation_info(client, relid);
        require_owner(client, relid, &info.name);
        let removed = client
            .update("DELETE FROM followup.activity_tables WHERE relation = $1", None, &[relid.into()])
            .map(|t| t.len())
            .unwrap_or(0);
        if removed == 0 {
            raise(ERRCODE_UNDEFINED_OBJECT, format!("table {} is not tracked", info.name));
        }
        sync_triggers(client, None);
        plan_cache::invalidate_registrations();
    });
}

/// Raise every assignment to the latest activity already stored, so the
/// invariant holds from the moment of registration.
fn backfill_all(client: &mut SpiClient<'_>) {
    let Some(assignments) = registry::load_assignment_table(client) else { return };
    for activity in registry::load_activity_tables(client) {
        backfill(client, &assignments, &activity, &activity.table);
    }
}

/// Deletes and updates of the latest activity look up the remaining ones by
/// the match columns; without an index that is a scan per assignment.
fn suggest_index(client: &SpiClient<'_>, activity: &registry::ActivityTable) {
    let first_match = activity.keys[0].activity_column_raw.as_str();
    let indexed = crate::query::one::<bool>(
        client,
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_index i
                              JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                             WHERE i.indrelid = $1 AND a.attname = $2::name)",
        &[activity.relid.into(), first_match.into()],
    )
    .unwrap_or(true);
    if !indexed {
        let columns: Vec<&str> = activity.keys.iter().map(|k| k.activity_column.as_str()).collect();
        notice!(
            "pg_followup: {} has no index on its match columns; deleting or re-dating an assignment's latest activity will scan it. Consider: CREATE INDEX ON {} ({}, {})",
            activity.table,
            activity.table,
            columns.join(", "),
            activity.occurred_column
        );
    }
}
