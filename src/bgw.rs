//! Background-worker plumbing shared by the scheduler and the run worker:
//! building a worker of this library, PostgreSQL's own signal handlers,
//! sleeping on the latch, and transactions in a process that has none.

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime};
use pgrx::pg_sys;
use std::time::Duration;

unsafe extern "C-unwind" {
    /// PostgreSQL's SIGTERM handler for backends (tcop/postgres.c): terminate
    /// at the next interrupt check, also inside a long query.
    #[link_name = "die"]
    fn postgres_die(signal: std::ffi::c_int);
    /// Sets ConfigReloadPending and the latch.
    #[link_name = "SignalHandlerForConfigReload"]
    fn postgres_config_reload(signal: std::ffi::c_int);
}

/// A worker of this library, started once the server accepts writes (so
/// never on a hot standby), with SPI access; `restart` after it dies, or never.
pub fn builder(name: &str, kind: &str, function: &str, restart: Option<Duration>) -> BackgroundWorkerBuilder {
    BackgroundWorkerBuilder::new(name)
        .set_type(kind)
        .set_library("pg_followup")
        .set_function(function)
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(restart)
}

/// SIGTERM terminates like a backend (pg_terminate_backend and shutdown stop
/// a long scan cleanly); with `reload`, SIGHUP marks the configuration for
/// reloading at the next `sleep`. Also makes the process give up its session
/// locks when it exits (see `release_session_locks`).
pub fn install_signal_handlers(reload: bool) {
    unsafe {
        pg_sys::before_shmem_exit(Some(release_session_locks), pg_sys::Datum::from(0));
        if reload {
            pg_sys::pqsignal(pg_sys::SIGHUP as i32, Some(postgres_config_reload));
        }
        pg_sys::pqsignal(pg_sys::SIGTERM as i32, Some(postgres_die));
        pg_sys::BackgroundWorkerUnblockSignals();
    }
}

/// At exit: the session locks of this process (the scheduler's lock, the run
/// lock a run holds across its transactions) are released. PostgreSQL
/// releases session locks of the default lock method only when a transaction
/// aborts; a worker that exits between transactions (terminated while it
/// sleeps) would leave them held in the name of a process that no longer
/// exists, and the scheduler restarted after it would find its own lock taken.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn release_session_locks(_code: std::ffi::c_int, _arg: pg_sys::Datum) {
    unsafe { pg_sys::LockReleaseSession(pg_sys::DEFAULT_LOCKMETHOD as pg_sys::LOCKMETHODID) };
}

/// Sleeps on the latch for at most `duration` (woken early by SetLatch, e.g.
/// a signal or a worker it waits for stopping); then handles interrupts.
pub fn sleep(duration: Duration) {
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

/// SIGTERM (exits) and SIGHUP (reloads the configuration).
pub fn handle_interrupts() {
    pg_sys::check_for_interrupts!();
    unsafe {
        if pg_sys::ConfigReloadPending != 0 {
            pg_sys::ConfigReloadPending = 0;
            pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP);
        }
    }
}

/// Runs `body` in the current transaction, or in a new one when there is
/// none (a worker between its transactions).
pub fn in_transaction<R>(body: impl FnOnce() -> R + std::panic::UnwindSafe + std::panic::RefUnwindSafe) -> R {
    if unsafe { pg_sys::IsTransactionState() } {
        body()
    } else {
        BackgroundWorker::transaction(body)
    }
}

/// Pins this worker session's search path to `pg_catalog, pg_temp`, before
/// its first query: whatever `ALTER DATABASE … SET search_path` or the
/// default `"$user", public` says, no function or operator a role created
/// elsewhere is resolved instead of pg_catalog's (the worker is a
/// superuser).
pub fn pin_search_path() {
    BackgroundWorker::transaction(|| unsafe {
        pg_sys::SetConfigOption(
            c"search_path".as_ptr(),
            c"pg_catalog, pg_temp".as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_SESSION,
        );
    });
}
