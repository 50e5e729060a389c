//! The trigger functions installed on tracked activity tables.
//!
//! * `followup.activity_statement_trigger()`: AFTER INSERT / UPDATE / DELETE
//!   FOR EACH STATEMENT with transition tables. Every ordinary write path
//!   (single and multi-row INSERT, INSERT … SELECT, COPY, upserts, MERGE,
//!   UPDATE, DELETE, rows routed into partitions) ends here, once per statement.
//! * `followup.activity_replica_trigger()`: FOR EACH ROW, enabled only for
//!   `session_replication_role = replica`, i.e. for logical-replication apply,
//!   which never fires statement triggers.
//!
//! Both run the statements of `tracking.rs` through SPI, as the assignments
//! table's owner (security.rs): the functions are SECURITY DEFINER only so
//! that they can read the registrations. Plans are prepared once
//! per backend and kept (keyed by table, kind of change, row or statement level
//! and a size class of the transition table, so a 1-row insert and a
//! 1,000,000-row COPY get plans fit for their size). A relcache invalidation of
//! any table a plan depends on, including the registration tables, drops them.

use crate::plan_cache;
use crate::registry;
use crate::security;
use crate::tracking::{tracking_statement, Change};
use pgrx::prelude::*;
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CString;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct PlanKey {
    relid: pg_sys::Oid,
    change: Change,
    row_level: bool,
    size_class: u8,
}

struct CachedPlan {
    /// Locks the touched assignments (tracking.rs, `lock_sql`), run first,
    /// then the write: each with its SQL text (security.rs arms it by it).
    statements: [(pg_sys::SPIPlanPtr, String); 2],
    /// For row-level plans: per parameter, (from the NEW tuple?, attnum).
    params: Vec<(bool, i32)>,
    /// The assignments table's owner, whom the statements run as.
    owner: pg_sys::Oid,
}

thread_local! {
    /// Plans by key, and the plan_cache generation they were built at.
    static PLANS: RefCell<(u64, HashMap<PlanKey, Option<CachedPlan>>)> = RefCell::new((0, HashMap::new()));
}

/// A key's statements, parameters and owner (see CachedPlan).
type Plans = ([(pg_sys::SPIPlanPtr, String); 2], Vec<(bool, i32)>, pg_sys::Oid);

impl CachedPlan {
    fn plans(&self) -> Plans {
        (self.statements.clone(), self.params.clone(), self.owner)
    }
}

/// The cached plan for `key`, if built at the current generation; retires
/// every plan of an older one.
fn cached(key: &PlanKey) -> Option<Option<Plans>> {
    let generation = plan_cache::generation();
    PLANS.with(|plans| {
        let mut plans = plans.borrow_mut();
        if plans.0 != generation {
            for cached in plans.1.drain().filter_map(|(_, p)| p) {
                for (plan, _) in cached.statements {
                    plan_cache::retire(plan);
                }
            }
            plans.0 = generation;
        }
        plans.1.get(key).map(|c| c.as_ref().map(CachedPlan::plans))
    })
}

/// Builds and keeps the plan for `key`, or None when the table is not (or no
/// longer) tracked. Runs inside the caller's SPI connection so the transition
/// tables it registered are visible to parse analysis. The registrations
/// are read as ourselves; the statements are prepared as the owner they
/// run as.
fn build_plan(key: PlanKey, tupdesc: pg_sys::TupleDesc) -> Option<CachedPlan> {
    let (statement, watched, owner) = Spi::connect(|client| {
        let root: pg_sys::Oid = client
            .select("SELECT coalesce(pg_catalog.pg_partition_root($1), $1)::pg_catalog.oid", None, &[key.relid.into()])
            .ok()?
            .first()
            .get_one()
            .ok()??;
        let assignments = registry::load_assignment_table(&client)?;
        let activities = registry::load_activity_tables(&client);
        let activity = activities.iter().find(|a| a.relid == root)?;
        let statement = tracking_statement(
            &assignments,
            activity,
            &activities,
            key.change,
            key.row_level,
            key.size_class == SINGLE_ROW,
        );
        let mut watched: Vec<pg_sys::Oid> = activities.iter().map(|a| a.relid).collect();
        watched.extend(plan_cache::registration_tables());
        watched.extend([assignments.relid, key.relid, root]);
        Some((statement, watched, assignments.owner))
    })?;

    let mut params = Vec::with_capacity(statement.params.len());
    let mut types = Vec::with_capacity(statement.params.len());
    for (from_new, column, type_oid) in &statement.params {
        let name = CString::new(column.as_str()).ok()?;
        let attnum = unsafe { pg_sys::SPI_fnumber(tupdesc, name.as_ptr()) };
        if attnum <= 0 {
            return None;
        }
        params.push((*from_new, attnum));
        types.push(*type_oid);
    }
    let (lock, plan) = security::as_table_owner(owner, || {
        (
            security::statement(&statement.lock_sql, || {
                plan_cache::prepare_kept(&statement.lock_sql, &mut types.clone())
            }),
            security::statement(&statement.sql, || plan_cache::prepare_kept(&statement.sql, &mut types)),
        )
    });
    plan_cache::watch(watched);
    Some(CachedPlan { statements: [(lock, statement.lock_sql), (plan, statement.sql)], params, owner })
}

/// Transition tables of one row (a single-row statement: no grouping needed),
/// up to 16, up to 16k rows, and more: each class gets a plan made with a row
/// estimate of its own size.
const SINGLE_ROW: u8 = 0;
fn size_class(rows: i64) -> u8 {
    match rows {
        ..=1 => SINGLE_ROW,
        2..=16 => 1,
        17..=16_384 => 2,
        _ => 3,
    }
}

fn change_of(trigger: &PgTrigger<'_>) -> Option<Change> {
    match trigger.op().ok()? {
        PgTriggerOperation::Insert => Some(Change::Insert),
        PgTriggerOperation::Update => Some(Change::Update),
        PgTriggerOperation::Delete => Some(Change::Delete),
        PgTriggerOperation::Truncate => None,
    }
}

/// Runs the tracking statement for one trigger invocation.
fn track(trigger: &PgTrigger<'_>, row_level: bool) {
    let Some(change) = change_of(trigger) else {
        return;
    };
    let data = trigger.trigger_data() as *const pg_sys::TriggerData as *mut pg_sys::TriggerData;
    let (relation, rows) = unsafe {
        let transition = if change == Change::Insert { (*data).tg_newtable } else { (*data).tg_oldtable };
        let rows = if row_level || transition.is_null() { 1 } else { pg_sys::tuplestore_tuple_count(transition) };
        ((*data).tg_relation, rows)
    };
    if rows == 0 {
        return; // e.g. an UPDATE that matched nothing still fires its statement trigger
    }
    let key = PlanKey {
        relid: unsafe { (*relation).rd_id },
        change,
        row_level,
        size_class: if row_level { 0 } else { size_class(rows) },
    };

    unsafe {
        pg_sys::SPI_connect();
        if !row_level {
            pg_sys::SPI_register_trigger_data(data);
        }
    }
    let entry = match cached(&key) {
        Some(entry) => entry,
        None => {
            let built = build_plan(key, unsafe { (*relation).rd_att });
            let entry = built.as_ref().map(CachedPlan::plans);
            PLANS.with(|p| p.borrow_mut().1.insert(key, built));
            entry
        }
    };
    if let Some((statements, params, owner)) = entry {
        let mut values = Vec::with_capacity(params.len());
        let mut nulls = Vec::with_capacity(params.len());
        for (from_new, attnum) in params {
            let tuple = unsafe {
                if from_new {
                    (*data).tg_newtuple_or_trig()
                } else {
                    (*data).tg_trigtuple
                }
            };
            let mut is_null = false;
            let value = unsafe { pg_sys::SPI_getbinval(tuple, (*relation).rd_att, attnum, &mut is_null) };
            values.push(value);
            nulls.push(if is_null { b'n' as std::ffi::c_char } else { b' ' as std::ffi::c_char });
        }
        let _executing = plan_cache::Executing::enter();
        // The lock first, then the write: a second statement, so under READ
        // COMMITTED it reads with a snapshot taken after the lock was granted
        // (tracking.rs).
        let mut execute = || {
            security::as_table_owner(owner, || {
                for (plan, sql) in &statements {
                    let status = security::statement(sql, || unsafe {
                        pg_sys::SPI_execute_plan(*plan, values.as_mut_ptr(), nulls.as_ptr(), false, 0)
                    });
                    if status < 0 {
                        return status;
                    }
                }
                0
            })
        };
        // A kept plan is planned at its first execution (and again after an
        // invalidation), here: the settings in force now decide whether it
        // JIT-compiles. Single-row statements never cost enough for JIT and
        // skip the setting on the hottest path.
        let status =
            if key.size_class == SINGLE_ROW || row_level { execute() } else { crate::planner::without_jit(execute) };
        if status < 0 {
            crate::errors::internal(format!("tracking statement failed (SPI error {status})"));
        }
    }
    unsafe { pg_sys::SPI_finish() };
}

/// NEW tuple of a row-level event: for INSERT it is `tg_trigtuple`, for UPDATE `tg_newtuple`.
trait NewTuple {
    unsafe fn tg_newtuple_or_trig(&self) -> pg_sys::HeapTuple;
}
impl NewTuple for pg_sys::TriggerData {
    unsafe fn tg_newtuple_or_trig(&self) -> pg_sys::HeapTuple {
        if self.tg_newtuple.is_null() {
            self.tg_trigtuple
        } else {
            self.tg_newtuple
        }
    }
}

#[pg_trigger(sql = false)]
fn activity_statement_trigger<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, PgTriggerError> {
    track(trigger, false);
    Ok(None)
}

/// BEFORE and AFTER TRUNCATE of a tracked table or partition (repair.rs):
/// TRUNCATE fires no row or delete triggers.
#[pg_trigger(sql = false)]
fn activity_truncate_trigger<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, PgTriggerError> {
    let relid = unsafe { (*(*trigger.trigger_data()).tg_relation).rd_id };
    let before = matches!(trigger.when(), Ok(PgTriggerWhen::Before));
    Spi::connect_mut(|client| {
        if before {
            crate::repair::before_truncate(client, relid);
        } else {
            crate::repair::after_truncate(client);
        }
    });
    Ok(None)
}

#[pg_trigger(sql = false)]
fn activity_replica_trigger<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, PgTriggerError> {
    track(trigger, true);
    // AFTER ROW trigger: the return value is ignored.
    Ok(None)
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use super::{size_class, SINGLE_ROW};
    use pgrx::prelude::*;

    #[pg_test]
    fn statements_get_a_plan_per_size_class() {
        assert_eq!(size_class(0), SINGLE_ROW);
        assert_eq!(size_class(1), SINGLE_ROW);
        assert_eq!([size_class(2), size_class(16)], [1, 1]);
        assert_eq!([size_class(17), size_class(16_384)], [2, 2]);
        assert_eq!([size_class(16_385), size_class(10_000_000)], [3, 3]);
    }

    /// The cached plans follow the registration: after the assignments table
    /// is registered anew with another last-contact column, the next insert
    /// in the same session writes that column.
    #[pg_test]
    fn cached_plans_follow_a_changed_registration() {
        Spi::run(
            "CREATE SCHEMA c;
             CREATE TABLE c.assignments (id int PRIMARY KEY, mentor int, contact int, first_col date, second_col date);
             INSERT INTO c.assignments VALUES (1, 10, 100, NULL, NULL);
             CREATE TABLE c.activities (mentor int, contact int, on_day date);
             SELECT followup.track_assignments('c.assignments', 'id', 'mentor', 'first_col');
             SELECT followup.track_activities('c.activities', 'on_day', '{mentor,contact}');
             INSERT INTO c.activities VALUES (10, 100, '2026-11-01');
             SELECT followup.track_assignments('c.assignments', 'id', 'mentor', 'second_col');
             INSERT INTO c.activities VALUES (10, 100, '2026-11-02');",
        )
        .unwrap();
        let row =
            Spi::get_two::<String, String>("SELECT first_col::text, second_col::text FROM c.assignments WHERE id = 1")
                .unwrap();
        assert_eq!(row, (Some("2026-11-01".into()), Some("2026-11-02".into())));
    }
}
