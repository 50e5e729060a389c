//! A run's life in `followup.runs` and the run lock: the `running` row (or a
//! `skipped` one), runs whose process died, the outcome, the counters the
//! run's INSERT bumps, and whether a day's run succeeded.

use super::{RunCause, RunStatus};
use crate::errors::internal;
use crate::query::{execute, one, select_one};
use crate::security::Lock;
use pgrx::datum::Date;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use std::cell::Cell;

/// The lock every run takes (security.rs): an object lock on the
/// pg_followup extension with sub-id 1, which no role can take from SQL
/// (`pg_locks`: locktype `object`, classid `pg_extension`, objsubid 1).
const RUN_LOCK: Lock = Lock::Run;

const RUN_LOCK_HOLDERS: &str = include_str!("../../sql/queries/run_lock_holders.sql");
const MARK_ABANDONED: &str = include_str!("../../sql/queries/mark_abandoned.sql");

pub fn next_run_id() -> i64 {
    select_one::<i64>("SELECT pg_catalog.nextval('followup.runs_run_id_seq')", &[])
        .unwrap_or_else(|| internal("could not allocate a run id"))
}

/// What the first step of a run found.
pub enum Start {
    /// Another run holds the lock: logged as skipped.
    Skipped,
    /// We hold the lock and the `running` row is written.
    Running,
}

/// Step 1: take the lock (or log `skipped`, naming the holder), mark runs
/// whose process died `abandoned`, write the `running` row. In a worker this
/// is a transaction of its own, so the row is visible while the run works.
pub fn start(run_id: i64, as_of: Date, cause: RunCause) -> Start {
    let pid = unsafe { pg_sys::MyProcPid };
    Spi::connect_mut(|client| {
        if !RUN_LOCK.try_acquire(true) {
            let holder = one::<i32>(client, &format!("{RUN_LOCK_HOLDERS} LIMIT 1"), &[(Lock::RUN_SUBID as i32).into()])
                .map(|p| format!("another run holds the lock (pid {p})"))
                .unwrap_or_else(|| "another run holds the lock".to_string());
            execute(
                client,
                "INSERT INTO followup.runs (run_id, trigger, status, as_of, finished_at, error, backend_pid)
                 VALUES ($1, $2::followup.run_trigger, $3::followup.run_status, $4, pg_catalog.clock_timestamp(), $5, $6)",
                &[
                    run_id.into(),
                    cause.as_sql().into(),
                    RunStatus::Skipped.as_sql().into(),
                    as_of.into(),
                    holder.into(),
                    pid.into(),
                ],
            );
            return Start::Skipped;
        }
        mark_abandoned(client);
        execute(
            client,
            "INSERT INTO followup.runs (run_id, trigger, status, as_of, backend_pid)
             VALUES ($1, $2::followup.run_trigger, $3::followup.run_status, $4, $5)",
            &[run_id.into(), cause.as_sql().into(), RunStatus::Running.as_sql().into(), as_of.into(), pid.into()],
        );
        Start::Running
    })
}

/// A `running` row whose process does not hold the run lock belongs to a
/// process that died (crash, kill, restart). Reads first, so the
/// usual case (no such row) writes nothing.
pub fn mark_abandoned(client: &mut SpiClient<'_>) {
    let any_running = one::<bool>(
        client,
        "SELECT EXISTS (SELECT 1 FROM followup.runs WHERE status OPERATOR(pg_catalog.=) 'running'::followup.run_status)",
        &[],
    )
        .unwrap_or(true);
    if any_running {
        execute(
            client,
            &MARK_ABANDONED.replace("{run_lock_holders}", RUN_LOCK_HOLDERS),
            &[(Lock::RUN_SUBID as i32).into()],
        );
    }
}

/// `mark_abandoned` for the scheduler, without the run lock: the statement
/// itself leaves alone every run whose process holds the lock. (Taking the
/// lock here, even for a moment, would make a run started at that moment
/// skip itself on the scheduler's account.)
pub fn mark_abandoned_now() {
    Spi::connect_mut(|client| mark_abandoned(client));
}

pub fn release_lock() {
    RUN_LOCK.release();
}

/// Counts of a finished scan.
pub struct Outcome {
    pub scanned: i64,
    pub due: i64,
    pub enqueued: i64,
    /// Assignments left out because they cannot be evaluated (unreadable.rs).
    pub skipped: i64,
}

/// The run's last step: the outcome in its log row, alerts resolved (or a
/// run_failed alert raised), and one `NOTIFY followup_outbox` when it
/// enqueued messages (delivered when this transaction commits).
pub fn finish(run_id: i64, result: Result<Outcome, String>) {
    Spi::connect_mut(|client| match result {
        Ok(outcome) => {
            execute(
                client,
                "UPDATE followup.runs
                    SET status = $2::followup.run_status, finished_at = pg_catalog.clock_timestamp(),
                        assignments_scanned = $3, reminders_enqueued = $4, duplicates_suppressed = $5,
                        assignments_skipped = $6
                  WHERE run_id = $1",
                &[
                    run_id.into(),
                    RunStatus::Succeeded.as_sql().into(),
                    outcome.scanned.into(),
                    outcome.enqueued.into(),
                    (outcome.due - outcome.enqueued).into(),
                    outcome.skipped.into(),
                ],
            );
            execute(client, "SELECT followup._resolve_alerts()", &[]);
            if outcome.enqueued > 0 {
                execute(
                    client,
                    "SELECT pg_catalog.pg_notify('followup_outbox',
                            pg_catalog.json_build_object('run_id', $1::pg_catalog.int8, 'enqueued', $2::pg_catalog.int8)::pg_catalog.text)",
                    &[run_id.into(), outcome.enqueued.into()],
                );
            }
        }
        Err(message) => {
            execute(
                client,
                "UPDATE followup.runs
                    SET status = $2::followup.run_status, finished_at = pg_catalog.clock_timestamp(), error = $3
                  WHERE run_id = $1",
                &[run_id.into(), RunStatus::Failed.as_sql().into(), message.as_str().into()],
            );
            execute(
                client,
                "SELECT followup._raise_alert('run_failed', $1, pg_catalog.format('run %s failed: %s', $1, $2::pg_catalog.text))",
                &[run_id.into(), message.as_str().into()],
            );
        }
    })
}

/// The logged status of a run, if it is logged.
pub fn status_of(run_id: i64) -> Option<RunStatus> {
    select_one::<String>("SELECT status::pg_catalog.text FROM followup.runs WHERE run_id = $1", &[run_id.into()])
        .and_then(|s| RunStatus::parse(&s))
}

/// Did the day's run for `as_of` succeed? `followup._day_succeeded`, the one
/// definition (sql/scheduler.sql) the scheduler, the catch-up and
/// `followup.health` share: only the scheduler's own runs count.
pub fn day_succeeded(as_of: Date) -> bool {
    select_one::<bool>("SELECT followup._day_succeeded($1)", &[as_of.into()]).unwrap_or(false)
}

// Counters the run's INSERT bumps as rows flow through it, so one statement
// yields the number of assignments scanned and of messages due without a
// second pass. Volatile functions in a subquery's target list are evaluated
// once per row that subquery emits.
thread_local! {
    static SCANNED: Cell<i64> = const { Cell::new(0) };
    static DUE: Cell<i64> = const { Cell::new(0) };
}

pub fn reset_tallies() {
    SCANNED.set(0);
    DUE.set(0);
}

/// (assignments scanned, messages due) since `reset_tallies`.
pub fn tallies() -> (i64, i64) {
    (SCANNED.get(), DUE.get())
}

#[pg_extern(sql = false)]
fn _tally_scanned(assignment_id: Option<&str>) -> Option<&str> {
    SCANNED.set(SCANNED.get() + 1);
    assignment_id
}

#[pg_extern(sql = false)]
fn _tally_due(assignment_id: Option<&str>) -> Option<&str> {
    DUE.set(DUE.get() + 1);
    assignment_id
}
