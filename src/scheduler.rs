//! The scheduler background worker (SPEC §6, §7).
//!
//! Two processes, both started only when the library is in
//! `shared_preload_libraries`, and only once the server accepts writes
//! (`RecoveryFinished`): on a hot standby neither runs, and after promotion
//! they start by themselves.
//!
//! * The launcher (static worker) connects to no database, waits until
//!   `followup.database` exists (saying so once in the log), starts the
//!   scheduler and exits. A backend can connect to one database only, once,
//!   and connecting to a missing one is FATAL: checking first keeps a missing
//!   database from becoming a crash loop.
//! * The scheduler (dynamic worker, restarted by the postmaster if it dies)
//!   connects to the database, waits for the extension, and sleeps on its latch
//!   until the next thing to do: the daily run at `followup.run_at` in
//!   `followup.timezone`, or its once-a-minute look at running runs (long_run
//!   alerts, dead processes). The run itself happens in a dynamic worker
//!   (run.rs), so the scheduler stays free to raise a long_run alert while it
//!   runs. At start-up it marks runs whose process died as abandoned and, when
//!   the day's run was missed while the server was down, raises
//!   missed_schedule and runs once (catch_up). An advisory lock keeps it single.

use crate::gucs;
use crate::query::select_one;
use crate::run::{self, Trigger};
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime};
use pgrx::prelude::*;
use std::time::Duration;

/// How often the idle worker looks at running runs (long_run alerts, dead
/// processes). Between these it sleeps on its latch.
const CHECK_INTERVAL: Duration = Duration::from_secs(60);
/// How often the scheduler looks at a run it is waiting for.
const RUNNING_CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// While waiting for the database or the extension to appear.
const WAIT_INTERVAL: Duration = Duration::from_secs(10);
/// After a scheduled run was skipped (another run held the lock).
const RETRY_AFTER_SKIP: Duration = Duration::from_secs(60);
/// Rows deleted per retention transaction.
const PRUNE_BATCH: i32 = 5_000;

/// `pg_try_advisory_lock(7381237527265899859)`: held by the one scheduler of a
/// database ("followupS").
const SCHEDULER_LOCK_KEY: i64 = 0x666F_6C6C_6F77_7553;

/// A worker of this library that runs once the server accepts writes and is
/// restarted 10 s after it dies.
fn worker(name: &str, function: &str) -> BackgroundWorkerBuilder {
    BackgroundWorkerBuilder::new(name)
        .set_type(name)
        .set_library("pg_followup")
        .set_function(function)
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(Some(Duration::from_secs(10)))
}

pub fn register() {
    worker("pg_followup launcher", "followup_launcher_main").load();
}

unsafe extern "C-unwind" {
    /// PostgreSQL's SIGTERM handler for backends: terminate at the next
    /// interrupt check (also inside a long query).
    #[link_name = "die"]
    fn postgres_die(signal: std::ffi::c_int);
    /// Sets ConfigReloadPending and the latch.
    #[link_name = "SignalHandlerForConfigReload"]
    fn postgres_config_reload(signal: std::ffi::c_int);
}

fn install_signal_handlers() {
    unsafe {
        pg_sys::pqsignal(pg_sys::SIGHUP as i32, Some(postgres_config_reload));
        pg_sys::pqsignal(pg_sys::SIGTERM as i32, Some(postgres_die));
        pg_sys::BackgroundWorkerUnblockSignals();
    }
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn followup_launcher_main(_arg: pg_sys::Datum) {
    install_signal_handlers();
    unsafe {
        // no database: only the shared catalogs (pg_database) are readable
        pg_sys::BackgroundWorkerInitializeConnection(std::ptr::null(), std::ptr::null(), 0);
    }
    let database = gucs::database();
    if !database_exists(&database) {
        log!(
            "pg_followup: database \"{database}\" (followup.database) does not exist; the scheduler waits for it to be created"
        );
        while !database_exists(&database) {
            sleep(WAIT_INTERVAL);
        }
    }
    let started = worker("pg_followup scheduler", "followup_scheduler_main").load_dynamic();
    if started.is_err() {
        // exit code 1: the postmaster starts the launcher again later
        log!("pg_followup: no background worker slot is free for the scheduler (max_worker_processes); retrying");
        unsafe { pg_sys::proc_exit(1) };
    }
    // exit code 0: done, not restarted (the scheduler now runs on its own)
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn followup_scheduler_main(_arg: pg_sys::Datum) {
    install_signal_handlers();
    let database = gucs::database();
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    if !take_scheduler_lock() {
        // another scheduler (e.g. left over from before a launcher restart) runs
        unsafe { pg_sys::proc_exit(0) };
    }
    wait_for_extension(&database);
    log!("pg_followup scheduler started in database \"{database}\"");

    let mut scheduler = Scheduler::new();
    scheduler.start_up();
    loop {
        scheduler.tick();
        sleep(scheduler.sleep_for());
    }
}

fn take_scheduler_lock() -> bool {
    BackgroundWorker::transaction(|| {
        select_one::<bool>("SELECT pg_catalog.pg_try_advisory_lock($1)", &[SCHEDULER_LOCK_KEY.into()]).unwrap_or(false)
    })
}

/// Sleeps on the latch for at most `duration`; handles SIGTERM (exits) and
/// SIGHUP (reloads the configuration) when woken.
fn sleep(duration: Duration) {
    let millis = duration.as_millis().clamp(1, i64::MAX as u128) as std::ffi::c_long;
    unsafe {
        pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            millis,
            pg_sys::PG_WAIT_EXTENSION,
        );
        pg_sys::ResetLatch(pg_sys::MyLatch);
    }
    handle_interrupts();
}

fn handle_interrupts() {
    pg_sys::check_for_interrupts!();
    unsafe {
        if pg_sys::ConfigReloadPending != 0 {
            pg_sys::ConfigReloadPending = 0;
            pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP);
        }
    }
}

/// Is there a database of that name? Before connecting to a database only the
/// shared catalogs' heaps can be read (not their indexes), so this scans
/// pg_database the way the autovacuum launcher does.
fn database_exists(database: &str) -> bool {
    unsafe {
        pg_sys::StartTransactionCommand();
        let relation = pg_sys::table_open(pg_sys::DatabaseRelationId, pg_sys::AccessShareLock as i32);
        let scan = pg_sys::table_beginscan_catalog(relation, 0, std::ptr::null_mut());
        let mut found = false;
        loop {
            let tuple = pg_sys::heap_getnext(scan, pg_sys::ScanDirection::ForwardScanDirection);
            if tuple.is_null() {
                break;
            }
            let form = pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_database>(tuple);
            if pgrx::name_data_to_str(&(*form).datname) == database {
                found = true;
                break;
            }
        }
        pg_sys::table_endscan(scan);
        pg_sys::table_close(relation, pg_sys::AccessShareLock as i32);
        pg_sys::CommitTransactionCommand();
        found
    }
}

fn extension_installed() -> bool {
    BackgroundWorker::transaction(|| {
        select_one::<bool>("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_followup')", &[])
            .unwrap_or(false)
    })
}

fn wait_for_extension(database: &str) {
    if extension_installed() {
        return;
    }
    log!(
        "pg_followup scheduler: the extension is not installed in database \"{database}\"; waiting for CREATE EXTENSION pg_followup"
    );
    while !extension_installed() {
        sleep(WAIT_INTERVAL);
    }
}

/// The schedule as configured now.
struct Schedule {
    run_at: String,
    timezone: String,
}

impl Schedule {
    fn current() -> Schedule {
        let (hour, minute) = gucs::run_at();
        Schedule { run_at: format!("{hour:02}:{minute:02}"), timezone: gucs::timezone() }
    }
}

struct Scheduler {
    /// Epoch seconds of the next scheduled run.
    next_run: f64,
    /// Epoch seconds of the next look at running runs.
    next_check: f64,
    /// Retry of today's scheduled run after it was skipped: (at, as_of).
    retry: Option<(f64, String)>,
    /// The schedule `next_run` was computed from (recomputed on change).
    run_at: String,
    timezone: String,
}

/// Seconds since the epoch, from the database clock.
fn now() -> f64 {
    BackgroundWorker::transaction(|| {
        select_one::<f64>("SELECT extract(epoch FROM pg_catalog.clock_timestamp())::float8", &[]).unwrap_or(0.0)
    })
}

fn next_run_after(after_epoch: f64, schedule: &Schedule) -> f64 {
    let (run_at, tz) = (schedule.run_at.clone(), schedule.timezone.clone());
    BackgroundWorker::transaction(move || {
        select_one::<f64>(
            "SELECT extract(epoch FROM followup._next_run_after(pg_catalog.to_timestamp($1), $2, $3))::float8",
            &[after_epoch.into(), run_at.as_str().into(), tz.as_str().into()],
        )
        .unwrap_or(after_epoch + 86_400.0)
    })
}

impl Scheduler {
    fn new() -> Scheduler {
        let schedule = Schedule::current();
        let now = now();
        Scheduler {
            next_run: next_run_after(now, &schedule),
            next_check: now,
            retry: None,
            run_at: schedule.run_at,
            timezone: schedule.timezone,
        }
    }

    /// Once, after connecting: abandoned runs, a missed run, retention.
    fn start_up(&mut self) {
        BackgroundWorker::transaction(mark_abandoned_if_free);
        if gucs::ENABLED.get() {
            self.catch_up();
        }
        prune();
    }

    /// If the last scheduled run time passed (while the server was down) with
    /// no successful run for its day, say so and, with followup.catch_up, run.
    fn catch_up(&mut self) {
        let (run_at, tz) = (self.run_at.clone(), self.timezone.clone());
        let missed: Option<(String, String)> = BackgroundWorker::transaction(move || {
            Spi::connect(|client| {
                client
                    .select(
                        "WITH last AS (SELECT followup._last_run_at_or_before(now(), $1, $2) AS instant)
                         SELECT ((last.instant AT TIME ZONE $2)::date)::text,
                                pg_catalog.to_char(last.instant AT TIME ZONE $2, 'YYYY-MM-DD HH24:MI')
                           FROM last
                          WHERE EXISTS (SELECT 1 FROM followup.assignment_tables WHERE registered_at < last.instant)
                            AND NOT EXISTS (SELECT 1 FROM followup.runs
                                             WHERE status = 'succeeded'
                                               AND as_of = (last.instant AT TIME ZONE $2)::date)",
                        None,
                        &[run_at.as_str().into(), tz.as_str().into()],
                    )
                    .ok()
                    .and_then(|t| {
                        let row = t.first();
                        Some((row.get::<String>(1).ok()??, row.get::<String>(2).ok()??))
                    })
            })
        });
        let Some((as_of, local_time)) = missed else { return };
        let catch_up = gucs::CATCH_UP.get();
        let run_id = catch_up.then(run::next_run_id_in_worker);
        let message = format!(
            "the scheduled run for {as_of} ({local_time} {}) did not happen{}",
            self.timezone,
            if catch_up { "; running it now (catch_up)" } else { "; followup.catch_up is off" }
        );
        BackgroundWorker::transaction(move || {
            Spi::run_with_args(
                "SELECT followup._raise_alert('missed_schedule', $1, $2)",
                &[run_id.into(), message.as_str().into()],
            )
            .ok();
        });
        if let Some(run_id) = run_id {
            self.run(run_id, &as_of, Trigger::CatchUp);
        }
    }

    fn tick(&mut self) {
        let schedule = Schedule::current();
        if schedule.run_at != self.run_at || schedule.timezone != self.timezone {
            log!("pg_followup scheduler: schedule changed to {} {}; rescheduling", schedule.run_at, schedule.timezone);
            self.next_run = next_run_after(now(), &schedule);
            self.run_at = schedule.run_at.clone();
            self.timezone = schedule.timezone.clone();
        }
        let now = now();
        if now >= self.next_run {
            let as_of = self.local_date(self.next_run);
            self.next_run = next_run_after(self.next_run.max(now), &schedule);
            if !gucs::ENABLED.get() {
                log!("pg_followup scheduler: followup.enabled is off; no run for {as_of}");
            } else if succeeded_for(&as_of) {
                // e.g. the schedule moved to a later time after today's run or catch-up
                log!("pg_followup scheduler: the run for {as_of} already succeeded; not running it again");
            } else {
                let run_id = run::next_run_id_in_worker();
                self.run(run_id, &as_of, Trigger::Schedule);
                prune();
            }
        }
        if let Some((at, as_of)) = self.retry.clone() {
            if now >= at {
                self.retry = None;
                if gucs::ENABLED.get() && !succeeded_for(&as_of) {
                    let run_id = run::next_run_id_in_worker();
                    self.run(run_id, &as_of, Trigger::Schedule);
                }
            }
        }
        if now >= self.next_check {
            check_running_runs();
            self.next_check = now + CHECK_INTERVAL.as_secs_f64();
        }
    }

    fn sleep_for(&self) -> Duration {
        let now = now();
        let mut wake = self.next_run.min(self.next_check);
        if let Some((at, _)) = &self.retry {
            wake = wake.min(*at);
        }
        Duration::from_secs_f64((wake - now).max(0.05))
    }

    fn local_date(&self, epoch: f64) -> String {
        let tz = self.timezone.clone();
        BackgroundWorker::transaction(move || {
            select_one::<String>(
                "SELECT ((pg_catalog.to_timestamp($1) AT TIME ZONE $2)::date)::text",
                &[epoch.into(), tz.as_str().into()],
            )
            .unwrap_or_default()
        })
    }

    /// Runs in a dynamic worker and waits for it, looking at running runs
    /// every CHECK_INTERVAL meanwhile (so a long run raises its alert while it
    /// still runs).
    fn run(&mut self, run_id: i64, as_of: &str, trigger: Trigger) {
        match run::launch_worker(run_id, as_of, trigger, &self.timezone) {
            Some(worker) => {
                loop {
                    match worker.pid() {
                        Ok(_) | Err(pgrx::bgworkers::BackgroundWorkerStatus::NotYetStarted) => {
                            // woken early by the postmaster when the worker stops
                            sleep(RUNNING_CHECK_INTERVAL);
                            check_running_runs();
                        }
                        Err(_) => break,
                    }
                }
                // killed before it could log the end: say so now, not at the next run
                if run::status_of(run_id).as_deref() == Some("running") {
                    BackgroundWorker::transaction(mark_abandoned_if_free);
                }
            }
            None => {
                warning!("pg_followup scheduler: no background worker slot is free; running in the scheduler itself");
                let as_of = as_of.to_string();
                let tz = self.timezone.clone();
                run::execute_in_worker_with_timezone(run_id, &as_of, trigger, &tz);
            }
        }
        if run::status_of(run_id).as_deref() == Some("skipped") {
            self.retry = Some((now() + RETRY_AFTER_SKIP.as_secs_f64(), as_of.to_string()));
        }
    }
}

/// Has a scheduled (or catch-up) run for that date succeeded? The scheduler
/// runs once a day; manual runs do not count.
fn succeeded_for(as_of: &str) -> bool {
    let as_of = as_of.to_string();
    BackgroundWorker::transaction(move || {
        select_one::<bool>(
            "SELECT EXISTS (SELECT 1 FROM followup.runs
                             WHERE status = 'succeeded' AND as_of = $1::date AND trigger IN ('schedule', 'catch_up'))",
            &[as_of.as_str().into()],
        )
        .unwrap_or(false)
    })
}

/// With the run lock free, a `running` row belongs to a process that died.
fn mark_abandoned_if_free() {
    Spi::connect_mut(|client| {
        let locked = crate::query::one::<bool>(
            client,
            "SELECT pg_catalog.pg_try_advisory_xact_lock($1)",
            &[run::LOCK_KEY.into()],
        )
        .unwrap_or(false);
        if locked {
            run::mark_abandoned(client);
        }
    });
}

/// long_run alerts for runs running longer than followup.alert_after (once
/// per run), abandoned runs, and alerts whose cause is over. Reads first: with
/// no run running and no open alert (the usual idle state) it writes nothing.
fn check_running_runs() {
    let alert_after = gucs::ALERT_AFTER_MINUTES.get();
    BackgroundWorker::transaction(move || {
        let anything_to_do = select_one::<bool>(
            "SELECT EXISTS (SELECT 1 FROM followup.runs WHERE status = 'running')
                 OR EXISTS (SELECT 1 FROM followup.alerts WHERE resolved_at IS NULL)",
            &[],
        )
        .unwrap_or(false);
        if !anything_to_do {
            return;
        }
        mark_abandoned_if_free();
        Spi::run_with_args(
            "SELECT followup._raise_alert('long_run', run_id,
                    pg_catalog.format('run %s has been running for %s (since %s), longer than followup.alert_after (%s min)',
                                      run_id, pg_catalog.date_trunc('second', now() - started_at), started_at, $1))
               FROM followup.runs
              WHERE status = 'running' AND started_at < now() - pg_catalog.make_interval(mins => $1)",
            &[alert_after.into()],
        )
        .ok();
        Spi::run("SELECT followup._resolve_alerts()").ok();
    });
}

/// Retention in small transactions, so it never holds many locks or a long snapshot.
fn prune() {
    let days = gucs::LOG_RETENTION_DAYS.get();
    loop {
        let removed = BackgroundWorker::transaction(move || {
            Spi::get_one_with_args::<i64>("SELECT followup._prune($1, $2)", &[days.into(), PRUNE_BATCH.into()])
                .ok()
                .flatten()
                .unwrap_or(0)
        });
        if removed == 0 {
            break;
        }
        handle_interrupts();
    }
}
