//! Where a run executes. `followup.run_now` and the scheduler start it in a
//! dynamic background worker and wait for it: the worker commits the
//! `running` row before it scans, so other sessions see the run in progress.
//! Without a free worker slot (or with `followup.run_in_worker = off`) the
//! run happens in the calling session, inside its transaction.

use super::log::{self, Start};
use super::{scan_and_finish, RunCause, RunSettings};
use crate::bgw;
use crate::errors::internal;
use crate::query::select_one;
use pgrx::bgworkers::{BackgroundWorker, DynamicBackgroundWorker};
use pgrx::datum::Date;
use pgrx::prelude::*;

/// Runs for `as_of` (cause `cause`) and waits until it has ended; returns its
/// run id. The worker uses this session's followup.timezone (it may have
/// been SET here) to turn timestamps into local dates, as preview does.
pub fn run_and_wait(as_of: Date, cause: RunCause) -> i64 {
    let run_id = log::next_run_id();
    let settings = RunSettings::current();
    if !crate::gucs::RUN_IN_WORKER.get() {
        run_in_this_session(run_id, as_of, cause, &settings);
        return run_id;
    }
    match launch(run_id, as_of, cause, &settings) {
        Some(worker) => {
            if worker.wait_for_startup().is_ok() {
                // The worker logs the run however it ends; its exit is all we wait for.
                let _ = worker.wait_for_shutdown();
            }
        }
        None => {
            warning!(
                "pg_followup: no background worker slot is free (max_worker_processes); running in this session, \
                 so the running row becomes visible to others only when the run ends"
            );
            run_in_this_session(run_id, as_of, cause, &settings);
        }
    }
    run_id
}

/// Starts the dynamic worker for one run in this database, as the extension
/// owner, notifying this process when it starts and stops. None when no
/// worker slot is free.
pub fn launch(run_id: i64, as_of: Date, cause: RunCause, settings: &RunSettings) -> Option<DynamicBackgroundWorker> {
    let owner = bgw::in_transaction(extension_owner);
    let extra = WorkerArgs {
        database: unsafe { pg_sys::MyDatabaseId },
        user: owner,
        run_id,
        as_of,
        cause,
        settings: settings.clone(),
    }
    .encode();
    // The handle must outlive the caller's transaction (the scheduler waits
    // across several).
    let launch = || {
        bgw::builder(&format!("pg_followup run {run_id}"), "pg_followup run", "followup_run_worker_main", None)
            .set_extra(&extra)
            .set_notify_pid(unsafe { pg_sys::MyProcPid })
            .load_dynamic()
            .ok()
    };
    // SAFETY: only the worker handle is allocated in TopMemoryContext; it is
    // small and lives as long as the caller waits for the worker.
    unsafe { pgrx::PgMemoryContexts::TopMemoryContext.switch_to(|_| launch()) }
}

/// The role a run's workers connect as: the extension's owner.
pub fn extension_owner() -> pg_sys::Oid {
    select_one("SELECT extowner FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'pg_followup'", &[])
        .unwrap_or_else(|| internal("pg_followup is not installed in this database"))
}

/// The whole run inside the caller's transaction. The lock is a session lock,
/// so other runs see it at once; the log row becomes visible when the caller
/// commits.
fn run_in_this_session(run_id: i64, as_of: Date, cause: RunCause, settings: &RunSettings) {
    if let Start::Running = log::start(run_id, as_of, cause) {
        // one statement: the snapshot a split shares cannot be exported from
        // inside the caller's subtransactions
        scan_and_finish(run_id, as_of, settings.max_runtime_minutes, 1);
        log::release_lock();
    }
}

/// A whole run from a background worker (or, without a free slot, the
/// scheduler's own process): one transaction per step, so the `running` row
/// is committed (and visible) before the scan starts.
pub fn execute_in_worker(run_id: i64, as_of: Date, cause: RunCause, settings: &RunSettings) {
    let started = BackgroundWorker::transaction(|| {
        pin_settings(&settings.timezone);
        log::start(run_id, as_of, cause)
    });
    if let Start::Running = started {
        BackgroundWorker::transaction(|| {
            pin_settings(&settings.timezone);
            scan_and_finish(run_id, as_of, settings.max_runtime_minutes, settings.workers)
        });
        BackgroundWorker::transaction(log::release_lock);
    }
}

/// For the current transaction: the caller's followup.timezone, and a
/// search_path of pg_catalog only (the run's SQL is schema-qualified;
/// active_when is resolved in pg_catalog). Local to the transaction, so that
/// a scheduler running a run itself still follows reloads of its settings.
/// (Every worker session has pinned its search path already; this covers a
/// run in the scheduler's own process too.)
pub fn pin_settings(timezone: &str) {
    Spi::run_with_args(
        "SELECT pg_catalog.set_config('followup.timezone', $1, true),
                pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true)",
        &[timezone.into()],
    )
    .unwrap_or_else(|e| internal(e.to_string()));
}

/// What the run worker is told, in `bgw_extra` (at most 127 bytes):
/// "database-oid user-oid run-id as-of-days cause max-runtime workers timezone".
struct WorkerArgs {
    database: pg_sys::Oid,
    user: pg_sys::Oid,
    run_id: i64,
    as_of: Date,
    cause: RunCause,
    settings: RunSettings,
}

impl WorkerArgs {
    fn encode(&self) -> String {
        format!(
            "{} {} {} {} {} {} {} {}",
            self.database.to_u32(),
            self.user.to_u32(),
            self.run_id,
            self.as_of.into_inner(),
            self.cause.as_sql(),
            self.settings.max_runtime_minutes,
            self.settings.workers,
            self.settings.timezone
        )
    }

    fn decode(extra: &str) -> Option<WorkerArgs> {
        let parts: Vec<&str> = extra.split_whitespace().collect();
        let [database, user, run_id, as_of, cause, max_runtime, workers, timezone] = parts[..] else { return None };
        Some(WorkerArgs {
            database: pg_sys::Oid::from(database.parse::<u32>().ok()?),
            user: pg_sys::Oid::from(user.parse::<u32>().ok()?),
            run_id: run_id.parse().ok()?,
            as_of: Date::saturating_from_raw(as_of.parse().ok()?),
            cause: RunCause::parse(cause)?,
            settings: RunSettings {
                timezone: timezone.to_string(),
                max_runtime_minutes: max_runtime.parse().ok()?,
                workers: workers.parse().ok()?,
            },
        })
    }
}

/// Entry point of the dynamic run worker.
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn followup_run_worker_main(_arg: pg_sys::Datum) {
    bgw::install_signal_handlers(false);
    let extra = BackgroundWorker::get_extra().to_string();
    let Some(args) = WorkerArgs::decode(&extra) else {
        log!("pg_followup: bad run worker arguments {extra:?}");
        return;
    };
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(args.database), Some(args.user));
    bgw::pin_search_path();
    execute_in_worker(args.run_id, args.as_of, args.cause, &args.settings);
}
