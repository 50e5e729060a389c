//! The scheduler background worker (README, "The scheduler" and "Monitoring").
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
//!   (run/worker.rs), so the scheduler stays free to raise a long_run alert while it
//!   runs. At start-up it marks runs whose process died as abandoned and, when
//!   the day's run was missed while the server was down, raises
//!   missed_schedule and runs once (catch_up). A lock of the extension's own
//!   keeps it single (security.rs).
//!
//! Every worker session pins `search_path = pg_catalog, pg_temp` before its
//! first query, and its SQL names pg_catalog's operators and functions: an
//! object a database owner creates in `public` (or in a schema named after
//! the worker's user) is never resolved instead (bgw.rs).

use crate::bgw::{self, sleep};
use crate::gucs;
use crate::local_time::{iso, local_date, DateKind, Zone};
use crate::query::select_one;
use crate::run::log::{self as run_log, mark_abandoned_now};
use crate::run::worker;
use crate::run::{RunCause, RunSettings, RunStatus};
use pgrx::bgworkers::BackgroundWorker;
use pgrx::datum::Date;
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
/// The launcher and the scheduler are restarted this long after they die.
const RESTART_AFTER: Duration = Duration::from_secs(10);

const MISSED_DAY: &str = include_str!("../sql/queries/missed_day.sql");
const RAISE_LONG_RUNS: &str = include_str!("../sql/queries/raise_long_runs.sql");

pub fn register() {
    bgw::builder("pg_followup launcher", "pg_followup launcher", "followup_launcher_main", Some(RESTART_AFTER)).load();
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn followup_launcher_main(_arg: pg_sys::Datum) {
    bgw::install_signal_handlers(true);
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
    let started =
        bgw::builder("pg_followup scheduler", "pg_followup scheduler", "followup_scheduler_main", Some(RESTART_AFTER))
            .load_dynamic();
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
    bgw::install_signal_handlers(true);
    let database = gucs::database();
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    bgw::pin_search_path();
    wait_for_extension(&database);
    if !take_scheduler_lock() {
        // another scheduler (e.g. left over from before a launcher restart) runs
        unsafe { pg_sys::proc_exit(0) };
    }
    log!("pg_followup scheduler started in database \"{database}\"");

    let mut scheduler = Scheduler::new();
    scheduler.start_up();
    loop {
        scheduler.tick();
        scheduler.report();
        sleep(scheduler.sleep_for());
    }
}

/// The one scheduler of a database holds this lock (security.rs: a lock
/// no role can take from SQL, so none can keep the scheduler from starting).
fn take_scheduler_lock() -> bool {
    BackgroundWorker::transaction(|| crate::security::Lock::Scheduler.try_acquire(true))
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
        select_one::<bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension
                             WHERE extname OPERATOR(pg_catalog.=) 'pg_followup')",
            &[],
        )
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
#[derive(Clone, PartialEq, Eq)]
struct Schedule {
    run_at: String,
    timezone: String,
}

impl Schedule {
    fn current() -> Schedule {
        Schedule { run_at: gucs::run_at(), timezone: gucs::timezone() }
    }

    /// Epoch seconds of the first scheduled instant strictly after `after`
    /// (followup._next_run_after: DST-correct, one instant per local date).
    fn next_run_after(&self, after: f64) -> f64 {
        let (run_at, tz) = (self.run_at.clone(), self.timezone.clone());
        BackgroundWorker::transaction(move || {
            select_one::<f64>(
                "SELECT pg_catalog.date_part('epoch', followup._next_run_after(pg_catalog.to_timestamp($1), $2, $3))",
                &[after.into(), run_at.as_str().into(), tz.as_str().into()],
            )
            .unwrap_or(after + 86_400.0)
        })
    }

    /// Epoch seconds of the last scheduled instant at or before `at`.
    fn last_run_at_or_before(&self, at: f64) -> f64 {
        let (run_at, tz) = (self.run_at.clone(), self.timezone.clone());
        BackgroundWorker::transaction(move || {
            select_one::<f64>(
                "SELECT pg_catalog.date_part('epoch', followup._last_run_at_or_before(pg_catalog.to_timestamp($1), $2, $3))",
                &[at.into(), run_at.as_str().into(), tz.as_str().into()],
            )
            .unwrap_or(at)
        })
    }

    /// The local date (in the schedule's zone) of an instant.
    fn local_date(&self, epoch: f64) -> Date {
        let tz = self.timezone.clone();
        BackgroundWorker::transaction(move || {
            select_one::<Date>(
                &format!("SELECT {}", local_date("pg_catalog.to_timestamp($1)", DateKind::Timestamptz, Zone("$2"))),
                &[epoch.into(), tz.as_str().into()],
            )
            .unwrap_or_else(|| crate::errors::internal("could not compute a local date"))
        })
    }
}

/// Seconds since the epoch, from the database clock.
fn now() -> f64 {
    BackgroundWorker::transaction(|| {
        select_one::<f64>("SELECT pg_catalog.date_part('epoch', pg_catalog.clock_timestamp())", &[]).unwrap_or(0.0)
    })
}

struct Scheduler {
    /// Epoch seconds of the next scheduled run.
    next_run: f64,
    /// Epoch seconds of the next look at running runs.
    next_check: f64,
    /// The next retry of the day's run: (at, as_of, cause). After a skip
    /// (another run held the lock) the same run again a minute later; after
    /// a failure a `retry` run when followup._next_retry_at says.
    retry: Option<(f64, Date, RunCause)>,
    /// The schedule `next_run` was computed from (recomputed on change).
    schedule: Schedule,
    /// followup.enabled as last seen: a change starts or ends the duty.
    enabled: bool,
}

impl Scheduler {
    fn new() -> Scheduler {
        let schedule = Schedule::current();
        let now = now();
        Scheduler { next_run: schedule.next_run_after(now), next_check: now, retry: None, schedule, enabled: false }
    }

    /// Once, after connecting: abandoned runs, a missed run, a retry that
    /// was pending when the scheduler stopped, retention.
    fn start_up(&mut self) {
        BackgroundWorker::transaction(mark_abandoned_now);
        self.enabled = gucs::ENABLED.get();
        duty::take_up(self.enabled);
        if self.enabled {
            self.catch_up();
            if self.retry.is_none() {
                let last_day = self.schedule.local_date(self.schedule.last_run_at_or_before(now()));
                self.plan_retry(last_day);
            }
        }
        prune();
    }

    /// A retry of the day `as_of` if one is due (followup._next_retry_at:
    /// followup.retry_delay, 5 minutes, after the first failure, doubling
    /// after each next one, up to followup.run_retries).
    fn plan_retry(&mut self, as_of: Date) {
        let retries = gucs::RUN_RETRIES.get();
        let first_delay = gucs::RETRY_DELAY_SECONDS.get();
        let at = BackgroundWorker::transaction(move || {
            select_one::<f64>(
                "SELECT pg_catalog.date_part('epoch',
                        followup._next_retry_at($1, $2, pg_catalog.make_interval(secs => $3)))",
                &[as_of.into(), retries.into(), (first_delay as f64).into()],
            )
        });
        if let Some(at) = at {
            log!(
                "pg_followup scheduler: the run for {} failed; retrying it in {:.0} s (followup.run_retries = {retries})",
                day(as_of),
                (at - now()).max(0.0)
            );
            self.retry = Some((at, as_of, RunCause::Retry));
        }
    }

    /// If the last scheduled run time passed (while the server was down) with
    /// no successful run for its day, say so and, with followup.catch_up, run
    /// (followup._missed_day: the definition followup.health shares).
    fn catch_up(&mut self) {
        let (run_at, tz) = (self.schedule.run_at.clone(), self.schedule.timezone.clone());
        let missed: Option<(Date, String)> = BackgroundWorker::transaction(move || {
            Spi::connect(|client| {
                let rows = client.select(MISSED_DAY, None, &[run_at.as_str().into(), tz.as_str().into()]).ok()?;
                let row = rows.first();
                Some((row.get::<Date>(1).ok()??, row.get::<String>(2).ok()??))
            })
        });
        let Some((as_of, local_time)) = missed else { return };
        let catch_up = gucs::CATCH_UP.get();
        let run_id = catch_up.then(|| BackgroundWorker::transaction(run_log::next_run_id));
        let message = format!(
            "the scheduled run for {} ({local_time} {}) did not happen{}",
            BackgroundWorker::transaction(|| iso(as_of)),
            self.schedule.timezone,
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
            self.run(run_id, as_of, RunCause::CatchUp);
        }
    }

    fn tick(&mut self) {
        let enabled = gucs::ENABLED.get();
        if enabled != self.enabled {
            log!(
                "pg_followup scheduler: followup.enabled is {}; {}",
                if enabled { "on" } else { "off" },
                if enabled { "on duty from now on" } else { "no runs until it is on again" }
            );
            duty::set(enabled);
            self.enabled = enabled;
        }
        let schedule = Schedule::current();
        if schedule != self.schedule {
            log!("pg_followup scheduler: schedule changed to {} {}; rescheduling", schedule.run_at, schedule.timezone);
            self.next_run = schedule.next_run_after(now());
            self.schedule = schedule;
        }
        let now = now();
        if now >= self.next_run {
            let as_of = self.schedule.local_date(self.next_run);
            self.next_run = self.schedule.next_run_after(self.next_run.max(now));
            if !gucs::ENABLED.get() {
                log!("pg_followup scheduler: followup.enabled is off; no run for {}", day(as_of));
            } else if BackgroundWorker::transaction(|| run_log::day_succeeded(as_of)) {
                // e.g. the schedule moved to a later time after today's run or catch-up
                log!("pg_followup scheduler: the run for {} already succeeded; not running it again", day(as_of));
            } else {
                let run_id = BackgroundWorker::transaction(run_log::next_run_id);
                self.run(run_id, as_of, RunCause::Schedule);
                prune();
            }
        }
        if let Some((at, as_of, cause)) = self.retry {
            if now >= at {
                self.retry = None;
                if gucs::ENABLED.get() && !BackgroundWorker::transaction(|| run_log::day_succeeded(as_of)) {
                    let run_id = BackgroundWorker::transaction(run_log::next_run_id);
                    self.run(run_id, as_of, cause);
                }
            }
        }
        if now >= self.next_check {
            check_running_runs();
            self.next_check = now + CHECK_INTERVAL.as_secs_f64();
        }
    }

    /// Shows in `pg_stat_activity.query` when the scheduler last looked
    /// and what it waits for: operators see it, and tests wait for a tick
    /// after an instant before they check that nothing happened.
    fn report(&self) {
        let (next_run, retry) = (self.next_run, self.retry.map(|(at, _, _)| at));
        let text = BackgroundWorker::transaction(move || {
            select_one::<String>(
                "SELECT pg_catalog.format('last tick %s, next run %s%s',
                        pg_catalog.to_char(pg_catalog.clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
                        pg_catalog.to_char(pg_catalog.to_timestamp($1) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                        COALESCE(', retry ' || pg_catalog.to_char(pg_catalog.to_timestamp($2) AT TIME ZONE 'UTC',
                                                                             'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), ''))",
                &[next_run.into(), retry.into()],
            )
        })
        .unwrap_or_default();
        let text = std::ffi::CString::new(text).unwrap_or_default();
        unsafe { pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_IDLE, text.as_ptr()) };
    }

    fn sleep_for(&self) -> Duration {
        let now = now();
        let mut wake = self.next_run.min(self.next_check);
        if let Some((at, _, _)) = &self.retry {
            wake = wake.min(*at);
        }
        Duration::from_secs_f64((wake - now).max(0.05))
    }

    /// Runs in a dynamic worker and waits for it, looking at running runs
    /// every RUNNING_CHECK_INTERVAL meanwhile (so a long run raises its alert
    /// while it still runs).
    fn run(&mut self, run_id: i64, as_of: Date, cause: RunCause) {
        let settings = RunSettings { timezone: self.schedule.timezone.clone(), ..RunSettings::current() };
        match worker::launch(run_id, as_of, cause, &settings) {
            Some(handle) => {
                loop {
                    match handle.pid() {
                        Ok(_) | Err(pgrx::bgworkers::BackgroundWorkerStatus::NotYetStarted) => {
                            // woken early by the postmaster when the worker stops
                            sleep(RUNNING_CHECK_INTERVAL);
                            check_running_runs();
                        }
                        Err(_) => break,
                    }
                }
                // killed before it could log the end: say so now, not at the next run
                if status_of(run_id) == Some(RunStatus::Running) {
                    BackgroundWorker::transaction(mark_abandoned_now);
                }
            }
            None => {
                warning!("pg_followup scheduler: no background worker slot is free; running in the scheduler itself");
                worker::execute_in_worker(run_id, as_of, cause, &settings);
            }
        }
        match status_of(run_id) {
            Some(RunStatus::Skipped) => self.retry = Some((now() + RETRY_AFTER_SKIP.as_secs_f64(), as_of, cause)),
            Some(RunStatus::Failed) => self.plan_retry(as_of),
            _ => {}
        }
    }
}

/// A date for the server log.
fn day(date: Date) -> String {
    BackgroundWorker::transaction(move || iso(date))
}

fn status_of(run_id: i64) -> Option<RunStatus> {
    BackgroundWorker::transaction(move || run_log::status_of(run_id))
}

/// long_run alerts for runs running longer than followup.alert_after (once
/// per run), abandoned runs, and alerts whose cause is over. Reads first: with
/// no run running and no open alert (the usual idle state) it writes nothing.
fn check_running_runs() {
    let alert_after = gucs::ALERT_AFTER_MINUTES.get();
    BackgroundWorker::transaction(move || {
        let anything_to_do = select_one::<bool>(
            "SELECT EXISTS (SELECT 1 FROM followup.runs WHERE status OPERATOR(pg_catalog.=) 'running'::followup.run_status)
                 OR EXISTS (SELECT 1 FROM followup.alerts WHERE resolved_at IS NULL)",
            &[],
        )
        .unwrap_or(false);
        if !anything_to_do {
            return;
        }
        mark_abandoned_now();
        Spi::run_with_args(RAISE_LONG_RUNS, &[alert_after.into()]).ok();
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
        bgw::handle_interrupts();
    }
}

/// The scheduler's duty (`followup.scheduler_duty`): since when it has been
/// responsible for this database's daily runs, which `followup._missed_day`
/// (the catch-up, `followup.health.overdue`) goes by. A day whose run_at
/// passed before the duty began was never the scheduler's; a day whose
/// run_at passed while the server was down still is. Written only when the
/// duty changes, never on an idle tick.
mod duty {
    use pgrx::bgworkers::BackgroundWorker;
    use pgrx::prelude::*;

    /// The file in the data directory naming the database the scheduler
    /// serves: followup.database can change only with a restart, and the
    /// database it names then learns here that it was not served before.
    const SERVED_FILE: &str = "pg_followup.scheduler";

    /// At start-up: on duty since now when the scheduler serves this
    /// database for the first time, or again after followup.database named
    /// another one; still on duty (since before) after a restart; off while
    /// followup.enabled is off.
    pub fn take_up(enabled: bool) {
        let database = crate::gucs::database();
        let path = std::path::Path::new(&data_directory()).join(SERVED_FILE);
        let served_before = std::fs::read_to_string(&path).ok().map(|s| s.trim().to_string());
        let switched = served_before.as_deref().is_some_and(|before| before != database);
        if served_before.as_deref() != Some(database.as_str()) {
            if let Err(e) = std::fs::write(&path, format!("{database}\n")) {
                warning!("pg_followup scheduler: could not write {}: {e}", path.display());
            }
        }
        if switched {
            log!("pg_followup scheduler: followup.database changed to \"{database}\"; on duty from now on");
        }
        BackgroundWorker::transaction(move || {
            Spi::run_with_args(
                "INSERT INTO followup.scheduler_duty AS d (on_duty_since)
                 VALUES (CASE WHEN $1 THEN pg_catalog.now() END)
                 ON CONFLICT (singleton) DO UPDATE
                    SET on_duty_since = CASE WHEN NOT $1 THEN NULL
                                             WHEN $2 OR d.on_duty_since IS NULL THEN pg_catalog.now()
                                             ELSE d.on_duty_since END,
                        changed_at = pg_catalog.now()
                  WHERE d.on_duty_since IS DISTINCT FROM
                        (CASE WHEN NOT $1 THEN NULL WHEN $2 OR d.on_duty_since IS NULL THEN pg_catalog.now()
                              ELSE d.on_duty_since END)",
                &[enabled.into(), switched.into()],
            )
            .unwrap_or_else(|e| crate::errors::internal(e.to_string()));
        });
    }

    /// followup.enabled changed: on duty from now on, or off.
    pub fn set(enabled: bool) {
        BackgroundWorker::transaction(move || {
            Spi::run_with_args(
                "INSERT INTO followup.scheduler_duty AS d (on_duty_since)
                 VALUES (CASE WHEN $1 THEN pg_catalog.now() END)
                 ON CONFLICT (singleton) DO UPDATE
                    SET on_duty_since = EXCLUDED.on_duty_since, changed_at = pg_catalog.now()",
                &[enabled.into()],
            )
            .unwrap_or_else(|e| crate::errors::internal(e.to_string()));
        });
    }

    fn data_directory() -> String {
        unsafe { std::ffi::CStr::from_ptr(pgrx::pg_sys::DataDir) }.to_string_lossy().into_owned()
    }
}
