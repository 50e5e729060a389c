//! The SQL that keeps `last_contact_column` equal to the latest tracked activity.
//!
//! One statement per write, whatever its size: the statement-level triggers hand
//! us the changed rows as transition tables (`followup_new`, `followup_old`) and
//! we run a single set-based UPDATE of the assignments table. Row-level triggers
//! (used only for logical-replication apply, where Postgres fires no statement
//! triggers) run the very same statements with the one changed row bound as
//! parameters in CTEs of the same names.
//!
//! The rules:
//! * rows added (INSERT, or the new side of an UPDATE) can only raise the last
//!   contact: `last_contact = max(last_contact, latest added)`;
//! * rows removed (DELETE, or the old side of an UPDATE) matter only when the
//!   removed date is at least the current last contact; then the value is
//!   recomputed from all tracked activity tables and the latest manual
//!   correction. Deleting an old activity therefore costs no recompute;
//! * `infinity` and `-infinity` are no dates of contact: they are ignored.
//!
//! The statements run as the assignments table's owner (security.rs; the
//! trigger functions in triggers.rs see to it).
//!
//! Every write first locks the assignment rows it touches (`lock_sql`, FOR NO
//! KEY UPDATE, in id order) and only then computes, in a second statement
//! that under READ COMMITTED gets a fresh snapshot. Tracking writes of one
//! assignment thus take turns, and each sees what the one before committed:
//! a transaction deleting the latest activity while another inserts an
//! older one cannot leave the date at an activity that is gone (the
//! isolation spec tracking_race). Locking in id order also keeps two bulk
//! writes from deadlocking on each other's assignments.

use crate::local_time::{self, DateKind, Zone};
use crate::registry::{ActivityTable, AssignmentTable, EQUALS};
use pgrx::pg_sys;

/// Activity dates are local to followup.timezone, read when the statement
/// runs (local_time.rs).
fn convert(expr: &str, from: DateKind, to: DateKind) -> String {
    local_time::convert(expr, from, to, Zone::SETTING)
}

/// Names of the transition tables in the trigger definitions.
pub const NEW_ROWS: &str = "followup_new";
pub const OLD_ROWS: &str = "followup_old";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Change {
    Insert,
    Update,
    Delete,
}

/// A generated statement and, for the row-level form, what to bind to `$n`.
pub struct TrackingStatement {
    /// Locks the assignment rows the change touches; run first.
    pub lock_sql: String,
    /// Updates their last contact; run after `lock_sql`, same parameters.
    pub sql: String,
    /// For each parameter: (reads the NEW row?, raw activity column name, type).
    pub params: Vec<(bool, String, pg_sys::Oid)>,
}

/// The tracking statement for one kind of change on `activity`.
/// `row_level`: bind the changed row as parameters instead of reading
/// transition tables. `single_row`: the transition table holds one row.
pub fn tracking_statement(
    assignments: &AssignmentTable,
    activity: &ActivityTable,
    all_activities: &[ActivityTable],
    change: Change,
    row_level: bool,
    single_row: bool,
) -> TrackingStatement {
    let mut ctes = Vec::new();
    let mut params = Vec::new();
    if row_level {
        let sides: &[(bool, &str)] = match change {
            Change::Insert => &[(true, NEW_ROWS)],
            Change::Update => &[(true, NEW_ROWS), (false, OLD_ROWS)],
            Change::Delete => &[(false, OLD_ROWS)],
        };
        for &(is_new, name) in sides {
            let mut columns = Vec::new();
            let mut values = Vec::new();
            let bound =
                activity.keys.iter().map(|k| (&k.activity_column, &k.activity_column_raw, k.activity_type)).chain(
                    std::iter::once((&activity.occurred_column, &activity.occurred_column_raw, activity.occurred_type)),
                );
            for (quoted, raw, type_oid) in bound {
                params.push((is_new, raw.clone(), type_oid));
                columns.push(quoted.clone());
                values.push(format!("${}", params.len()));
            }
            ctes.push(format!("{name} ({}) AS (VALUES ({}))", columns.join(", "), values.join(", ")));
        }
    }
    let single_row = single_row || row_level;
    // The row-level form's CTEs go inside the subquery that reads them, not
    // in front of the UPDATE: PostgreSQL refuses a WITH on an UPDATE that a
    // rule on the assignments table turns into several statements.
    let with_rows = |source: String| {
        if ctes.is_empty() {
            source
        } else {
            format!("WITH {}\n{source}", ctes.join(",\n"))
        }
    };
    let (lock_sql, sql) = match change {
        Change::Insert => {
            let added = with_rows(added_rows_sql(activity, NEW_ROWS, assignments, single_row));
            (lock_sql_for(assignments, activity, &added, single_row), raise_from_sql(assignments, activity, &added))
        }
        Change::Update | Change::Delete => {
            let changed = with_rows(changed_sql(assignments, activity, change));
            (
                lock_sql_for(assignments, activity, &changed, single_row),
                change_sql(assignments, activity, all_activities, &changed),
            )
        }
    };
    TrackingStatement { lock_sql, sql, params }
}

/// SQL: lock the assignment rows matched by `rows` (grouped change rows with
/// key columns `k1..kn`), in id order unless there is only one.
fn lock_sql_for(assignments: &AssignmentTable, activity: &ActivityTable, rows: &str, single_row: bool) -> String {
    let order = if single_row { String::new() } else { format!("ORDER BY a.{}", assignments.id_column) };
    format!(
        "SELECT 1 FROM {table} AS a JOIN ({rows}) AS n ON {join} {order} FOR NO KEY UPDATE OF a",
        table = assignments.table,
        join = key_join(activity, "n"),
    )
}

/// `a.x = n.k1 AND a.y = n.k2 ...` joining the assignment alias `a` to the
/// grouped change rows `source` (whose key columns are `k1..kn`).
fn key_join(activity: &ActivityTable, source: &str) -> String {
    activity
        .keys
        .iter()
        .enumerate()
        .map(|(i, k)| format!("a.{} {EQUALS} {source}.k{}", k.assignment_column, i + 1))
        .collect::<Vec<_>>()
        .join(" AND ")
}

fn key_select(activity: &ActivityTable, alias: &str) -> String {
    activity
        .keys
        .iter()
        .enumerate()
        .map(|(i, k)| format!("{alias}.{} AS k{}", k.activity_column, i + 1))
        .collect::<Vec<_>>()
        .join(", ")
}

fn group_by(activity: &ActivityTable) -> String {
    (1..=activity.keys.len()).map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

/// Raise-only update from the rows of `rows` (a transition table, or the whole
/// activity table when a registration back-fills).
pub fn raise_sql(assignments: &AssignmentTable, activity: &ActivityTable, rows: &str) -> String {
    raise_from_sql(assignments, activity, &added_rows_sql(activity, rows, assignments, false))
}

/// Raise-only update from `source`, the latest added activity per
/// assignment key (`added_rows_sql`).
fn raise_from_sql(assignments: &AssignmentTable, activity: &ActivityTable, source: &str) -> String {
    let lc = &assignments.last_contact_column;
    format!(
        "UPDATE {table} AS a SET {lc} = n.latest
           FROM ({source}) AS n
          WHERE {join} AND n.latest IS NOT NULL AND (a.{lc} IS NULL OR a.{lc} < n.latest)",
        table = assignments.table,
        join = key_join(activity, "n"),
    )
}

/// SQL: per assignment key (`k1..kn`) in `rows`, the latest added activity
/// as a last-contact value (`latest`). `single_row`: `rows` holds exactly
/// one row (a single-row INSERT, the replication trigger), so there is
/// nothing to group: a plain join, which spares the executor a hash
/// aggregate on the hottest path.
fn added_rows_sql(activity: &ActivityTable, rows: &str, assignments: &AssignmentTable, single_row: bool) -> String {
    let occurred = format!("t.{}", activity.occurred_column);
    if single_row {
        let latest = convert(&occurred, activity.occurred_kind, assignments.last_contact_kind);
        format!(
            "SELECT {keys}, {latest} AS latest FROM {rows} AS t WHERE {finite}",
            keys = key_select(activity, "t"),
            finite = finite_sql(&occurred)
        )
    } else {
        let latest =
            convert(&format!("pg_catalog.max({occurred})"), activity.occurred_kind, assignments.last_contact_kind);
        format!(
            "SELECT {keys}, {latest} AS latest FROM {rows} AS t WHERE {finite} GROUP BY {group}",
            keys = key_select(activity, "t"),
            finite = finite_sql(&occurred),
            group = group_by(activity)
        )
    }
}

/// SQL: the changed rows of an UPDATE or DELETE grouped per assignment key
/// (`k1..kn`): the latest date `added` and the latest date `removed`.
fn changed_sql(assignments: &AssignmentTable, activity: &ActivityTable, change: Change) -> String {
    let occ = &activity.occurred_column;
    let keys = key_select(activity, "t");
    let finite = finite_sql(&format!("t.{occ}"));
    let side = |rows: &str, added: bool| {
        format!("SELECT {keys}, t.{occ} AS occ, {added} AS added FROM {rows} AS t WHERE {finite}")
    };
    // An UPDATE that does not touch the match or occurred columns produces the
    // same (keys, occurred) multiset on both sides and so no change rows.
    let changed_rows = match change {
        Change::Update => format!(
            "({new_side} EXCEPT ALL {old_as_new}) UNION ALL ({old_side} EXCEPT ALL {new_as_old})",
            new_side = side(NEW_ROWS, true),
            old_as_new = side(OLD_ROWS, true),
            old_side = side(OLD_ROWS, false),
            new_as_old = side(NEW_ROWS, false),
        ),
        Change::Delete => side(OLD_ROWS, false),
        Change::Insert => unreachable!("inserts use raise_sql"),
    };
    let convert_to_lc = |e: &str| convert(e, activity.occurred_kind, assignments.last_contact_kind);
    let ks = (1..=activity.keys.len()).map(|i| format!("x.k{i}")).collect::<Vec<_>>().join(", ");
    format!(
        "SELECT {ks}, {added} AS added, {removed} AS removed FROM ({changed_rows}) AS x GROUP BY {group}",
        added = convert_to_lc("pg_catalog.max(x.occ) FILTER (WHERE x.added)"),
        removed = convert_to_lc("pg_catalog.max(x.occ) FILTER (WHERE NOT x.added)"),
        group = group_by(activity),
    )
}

/// UPDATE or DELETE: raise for added dates, recompute where a removed date was
/// (possibly) the latest one. `changed` is `changed_sql`.
fn change_sql(
    assignments: &AssignmentTable,
    activity: &ActivityTable,
    all_activities: &[ActivityTable],
    changed: &str,
) -> String {
    let lc = &assignments.last_contact_column;
    let needs_recompute = format!("(c.removed IS NOT NULL AND (a.{lc} IS NULL OR c.removed >= a.{lc}))");
    format!(
        "UPDATE {table} AS a
            SET {lc} = CASE WHEN {needs_recompute} THEN {recompute} ELSE c.added END
           FROM ({changed}) AS c
          WHERE {join}
            AND ({needs_recompute} OR (c.added IS NOT NULL AND (a.{lc} IS NULL OR c.added > a.{lc})))",
        table = assignments.table,
        recompute = recompute_sql(assignments, all_activities),
        join = key_join(activity, "c"),
    )
}

/// The last contact of assignment row `a` derived from scratch: the latest
/// activity over every tracked table, or the latest manual correction if that
/// is later.
pub fn recompute_sql(assignments: &AssignmentTable, all_activities: &[ActivityTable]) -> String {
    let mut candidates: Vec<String> =
        all_activities.iter().map(|act| latest_activity_sql(assignments, act, true)).collect();
    candidates.push(latest_correction_sql(
        assignments,
        &convert("cc.new_value", DateKind::Date, assignments.last_contact_kind),
    ));
    format!("GREATEST({})", candidates.join(",\n                 "))
}

/// In `bulk_recompute_sql`'s joins: the assignment's latest correction, in
/// the last-contact column's kind (NULL without one).
pub const LATEST_CORRECTION: &str = "latest_correction.latest";

/// The same value for every assignment row `a` at once (verify, repair,
/// TRUNCATE): `(joins, expression)`, the joins to add after `FROM <table> AS
/// a` and the expression over them. Each tracked table and the corrections
/// are aggregated once and hash-joined, instead of looked up per assignment.
/// The pg_test `bulk_and_row_recompute_agree` keeps the two forms equal.
pub fn bulk_recompute_sql(assignments: &AssignmentTable, all_activities: &[ActivityTable]) -> (String, String) {
    let mut joins = Vec::new();
    let mut candidates = Vec::new();
    for (n, activity) in all_activities.iter().enumerate() {
        let alias = format!("latest_{n}");
        let latest = convert(
            &format!("pg_catalog.max(t.{})", activity.occurred_column),
            activity.occurred_kind,
            assignments.last_contact_kind,
        );
        joins.push(format!(
            "LEFT JOIN (SELECT {keys}, {latest} AS latest FROM {table} AS t WHERE {finite} GROUP BY {group})
                    AS {alias} ON {join}",
            keys = key_select(activity, "t"),
            finite = finite_sql(&format!("t.{}", activity.occurred_column)),
            table = activity.table,
            group = group_by(activity),
            join = key_join(activity, &alias),
        ));
        candidates.push(format!("{alias}.latest"));
    }
    joins.push(format!(
        "LEFT JOIN (SELECT DISTINCT ON (cc.assignment_id) cc.assignment_id, {corrected} AS latest
                      FROM followup.contact_corrections AS cc
                     ORDER BY cc.assignment_id, cc.corrected_at DESC, cc.correction_id DESC) AS latest_correction
                ON latest_correction.assignment_id = (a.{id})::pg_catalog.text",
        corrected = convert("cc.new_value", DateKind::Date, assignments.last_contact_kind),
        id = assignments.id_column,
    ));
    candidates.push(LATEST_CORRECTION.to_string());
    (
        joins.join(
            "
         ",
        ),
        format!("GREATEST({})", candidates.join(", ")),
    )
}

/// SQL: the latest activity in `activity` of assignment row `a`: its
/// occurred value as stored, or `converted` to the last-contact column's kind.
pub fn latest_activity_sql(assignments: &AssignmentTable, activity: &ActivityTable, converted: bool) -> String {
    let matches = activity
        .keys
        .iter()
        .map(|k| format!("a.{} {EQUALS} r.{}", k.assignment_column, k.activity_column))
        .collect::<Vec<_>>()
        .join(" AND ");
    let latest = format!("pg_catalog.max(r.{})", activity.occurred_column);
    let value =
        if converted { convert(&latest, activity.occurred_kind, assignments.last_contact_kind) } else { latest };
    format!(
        "(SELECT {value} FROM {table} AS r WHERE {matches} AND {finite})",
        table = activity.table,
        finite = finite_sql(&format!("r.{}", activity.occurred_column))
    )
}

/// SQL: is the activity date `occurred` finite? `infinity` and `-infinity`
/// never count as a contact: no age can be counted from them (README, "How
/// last_contact_date is kept true").
fn finite_sql(occurred: &str) -> String {
    format!("pg_catalog.isfinite({occurred})")
}

/// SQL: `value` (over the row `cc`) of the latest correction of assignment
/// row `a` (`followup.contact_corrections`), or NULL.
pub fn latest_correction_sql(assignments: &AssignmentTable, value: &str) -> String {
    format!(
        "(SELECT {value} FROM followup.contact_corrections AS cc
           WHERE cc.assignment_id = (a.{id})::pg_catalog.text
           ORDER BY cc.corrected_at DESC, cc.correction_id DESC LIMIT 1)",
        id = assignments.id_column,
    )
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use super::{added_rows_sql, raise_from_sql, raise_sql, recompute_sql};
    use crate::registry::{load_activity_tables, require_assignment_table};
    use pgrx::prelude::*;

    /// Assignments with a timestamptz last contact (so every statement
    /// converts), activities with a timestamp, both registered; `rows` a plain
    /// table standing in for a transition table.
    fn setup() {
        Spi::run(
            "SET followup.timezone = 'Pacific/Auckland';
             CREATE SCHEMA t;
             CREATE TABLE t.assignments (id int PRIMARY KEY, mentor int, contact int, last_seen timestamptz,
                                         UNIQUE (mentor, contact));
             INSERT INTO t.assignments VALUES (1, 10, 100, NULL), (2, 10, 200, '2026-11-20 00:00+13'),
                                              (3, 20, 300, '2026-11-25 00:00+13');
             CREATE TABLE t.activities (mentor int, contact int, at timestamp);
             SELECT followup.track_assignments('t.assignments', 'id', 'mentor', 'last_seen');
             SELECT followup.track_activities('t.activities', 'at', '{mentor,contact}');
             CREATE TABLE t.rows (mentor int, contact int, at timestamp);",
        )
        .unwrap();
    }

    fn last_seen_local(id: i32) -> Option<String> {
        Spi::get_one_with_args::<String>(
            "SELECT to_char(last_seen AT TIME ZONE 'Pacific/Auckland', 'YYYY-MM-DD HH24:MI') FROM t.assignments WHERE id = $1",
            &[id.into()],
        )
        .unwrap()
    }

    /// Runs the generated raise statement over t.rows.
    fn raise(single_row: bool) {
        Spi::connect_mut(|client| {
            let assignments = require_assignment_table(client);
            let activity = load_activity_tables(client).remove(0);
            let sql = if single_row {
                raise_from_sql(&assignments, &activity, &added_rows_sql(&activity, "t.rows", &assignments, true))
            } else {
                raise_sql(&assignments, &activity, "t.rows")
            };
            client.update(&sql, None, &[]).unwrap();
        });
    }

    #[pg_test]
    fn raise_takes_the_latest_row_per_assignment_and_never_lowers() {
        setup();
        Spi::run(
            "INSERT INTO t.rows VALUES (10, 100, '2026-11-01 09:00'), (10, 100, '2026-11-03 18:30'),
                                       (10, 200, '2026-11-10 08:00'), (20, 300, '2026-11-28 07:15'),
                                       (99, 999, '2026-11-28 07:15')",
        )
        .unwrap();
        raise(false);
        // the later of two rows; a timestamp is wall-clock time in followup.timezone
        assert_eq!(last_seen_local(1).as_deref(), Some("2026-11-03 18:30"));
        // an older activity does not move the last contact back
        assert_eq!(last_seen_local(2).as_deref(), Some("2026-11-20 00:00"));
        assert_eq!(last_seen_local(3).as_deref(), Some("2026-11-28 07:15"));
        // the row matching no assignment (99, 999) changed nothing: the whole
        // table is exactly the three values above
        assert_eq!(
            Spi::get_one::<String>(
                "SELECT string_agg(id || '=' || to_char(last_seen AT TIME ZONE 'Pacific/Auckland', 'MM-DD HH24:MI'), ' ' ORDER BY id)
                   FROM t.assignments"
            )
            .unwrap(),
            Some("1=11-03 18:30 2=11-20 00:00 3=11-28 07:15".into())
        );
    }

    #[pg_test]
    fn the_single_row_form_agrees_with_the_grouped_form() {
        setup();
        Spi::run("INSERT INTO t.rows VALUES (10, 200, '2026-11-22 23:59')").unwrap();
        raise(true);
        let single = last_seen_local(2);
        Spi::run("UPDATE t.assignments SET last_seen = '2026-11-20 00:00+13' WHERE id = 2").unwrap();
        raise(false);
        assert_eq!(last_seen_local(2), single);
        assert_eq!(single.as_deref(), Some("2026-11-22 23:59"));
    }

    /// The bulk form (verify, repair) and the per-row form (the triggers)
    /// of "what the last contact should be" agree on every assignment.
    #[pg_test]
    fn bulk_and_row_recompute_agree() {
        setup();
        Spi::run(
            "INSERT INTO t.activities VALUES (10, 200, '2026-11-05 10:00'), (10, 200, '2026-11-07 23:30'),
                                             (20, 300, '2026-11-01 00:10');
             INSERT INTO followup.contact_corrections (assignment_id, new_value, reason)
             VALUES ('3', '2026-11-12', 'paper log'), ('2', '2026-11-01', 'older than the activities')",
        )
        .unwrap();
        let (row, (joins, bulk)) = Spi::connect(|client| {
            let assignments = require_assignment_table(&client);
            let activities = load_activity_tables(&client);
            (recompute_sql(&assignments, &activities), super::bulk_recompute_sql(&assignments, &activities))
        });
        let differing = Spi::get_one::<i64>(&format!(
            "SELECT count(*) FROM t.assignments AS a {joins}
              WHERE ({bulk}) IS DISTINCT FROM ({row})"
        ))
        .unwrap();
        assert_eq!(differing, Some(0));
        let values = Spi::get_one::<String>(&format!(
            "SELECT string_agg(a.id || '=' || coalesce(to_char(({bulk}) AT TIME ZONE 'Pacific/Auckland', 'MM-DD HH24:MI'), '-'), ' ' ORDER BY a.id)
               FROM t.assignments AS a {joins}"
        ))
        .unwrap();
        assert_eq!(values.as_deref(), Some("1=- 2=11-07 23:30 3=11-12 00:00"));
    }

    #[pg_test]
    fn recompute_takes_the_latest_activity_or_a_later_correction() {
        setup();
        Spi::run(
            "INSERT INTO t.activities VALUES (10, 200, '2026-11-05 10:00'), (10, 200, '2026-11-07 10:00');
             INSERT INTO followup.contact_corrections (assignment_id, new_value, reason)
             VALUES ('3', '2026-11-12', 'paper log')",
        )
        .unwrap();
        let recompute =
            Spi::connect(|client| recompute_sql(&require_assignment_table(&client), &load_activity_tables(&client)));
        let value = |id: i32| {
            Spi::get_one_with_args::<String>(
                &format!(
                    "SELECT coalesce(to_char(({recompute}) AT TIME ZONE 'Pacific/Auckland', 'YYYY-MM-DD'), 'none')
                       FROM t.assignments AS a WHERE a.id = $1"
                ),
                &[id.into()],
            )
            .unwrap()
        };
        assert_eq!(value(2).as_deref(), Some("2026-11-07"), "the latest activity");
        assert_eq!(value(3).as_deref(), Some("2026-11-12"), "no activity: the correction");
        assert_eq!(value(1).as_deref(), Some("none"), "neither");
    }
}
