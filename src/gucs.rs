//! The `followup.*` configuration parameters (README, "The scheduler").
//!
//! Every parameter is defined whenever the library is loaded, so a bad value is
//! rejected at `SET`, `ALTER SYSTEM` or reload time by the check hooks below, not
//! discovered later by the scheduler. Each default is written once: in the
//! setting's `GucSetting::new` (the `DEFAULT_*` constants for the strings,
//! which the readers below fall back to); SQL reads the settings through
//! `followup._settings()` (below), which loads the library, so it sees the
//! same values and defaults.

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::pg_sys;
use std::ffi::{c_char, c_void, CStr, CString};

const DEFAULT_DATABASE: &CStr = c"postgres";
const DEFAULT_RUN_AT: &CStr = c"03:00";
const DEFAULT_TIMEZONE: &CStr = c"UTC";

/// Database the scheduler background worker connects to.
pub static DATABASE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(DEFAULT_DATABASE));
/// Master switch for the scheduled daily run.
pub static ENABLED: GucSetting<bool> = GucSetting::<bool>::new(true);
/// Local wall-clock time (`HH:MM`, in `followup.timezone`) of the daily run.
pub static RUN_AT: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(DEFAULT_RUN_AT));
/// IANA time zone that defines "today" and converts timestamps to local dates.
pub static TIMEZONE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(DEFAULT_TIMEZONE));
/// Minutes after which a still-running run raises a `long_run` alert.
pub static ALERT_AFTER_MINUTES: GucSetting<i32> = GucSetting::<i32>::new(30);
/// Run once at start-up when the day's scheduled run was missed.
pub static CATCH_UP: GucSetting<bool> = GucSetting::<bool>::new(true);
/// Days of run log, alerts and finished outbox messages to keep.
pub static LOG_RETENTION_DAYS: GucSetting<i32> = GucSetting::<i32>::new(90);
/// `run_now` runs the scan in a background worker (so its `running` row is
/// visible while it runs); off runs it in the calling session.
pub static RUN_IN_WORKER: GucSetting<bool> = GucSetting::<bool>::new(true);
/// Delivery attempts before an outbox message becomes `dead`.
pub static MAX_ATTEMPTS: GucSetting<i32> = GucSetting::<i32>::new(10);
/// Retries of a failed scheduled (or catch-up) run: the first
/// followup.retry_delay after the failure, each next one twice as long.
pub static RUN_RETRIES: GucSetting<i32> = GucSetting::<i32>::new(3);
/// Seconds before the first retry of a failed run (doubling for each next).
pub static RETRY_DELAY_SECONDS: GucSetting<i32> = GucSetting::<i32>::new(300);
/// Minutes a run may take before it is cancelled (0: no limit).
pub static MAX_RUNTIME_MINUTES: GucSetting<i32> = GucSetting::<i32>::new(0);
/// Processes a run over a big assignments table is split across
/// (run/parts.rs); 1 for one statement in the run's own worker.
pub static RUN_WORKERS: GucSetting<i32> = GucSetting::<i32>::new(2);

pub fn init() {
    // A postmaster-only parameter can only be defined while the library is
    // preloaded; without preloading there is no worker that would use it.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        GucRegistry::define_string_guc(
            c"followup.database",
            c"Database in which the pg_followup scheduler runs.",
            c"The background worker connects to this database at server start. Requires a restart.",
            &DATABASE,
            GucContext::Postmaster,
            GucFlags::default(),
        );
    }
    GucRegistry::define_bool_guc(
        c"followup.enabled",
        c"Enables the daily scheduled reminder run.",
        c"When off, the worker keeps running but starts no scheduled or catch-up runs.",
        &ENABLED,
        GucContext::Sighup,
        GucFlags::default(),
    );
    unsafe {
        GucRegistry::define_string_guc_with_hooks(
            c"followup.run_at",
            c"Local time (HH:MM, 24-hour) of the daily reminder run.",
            c"Interpreted in followup.timezone; daylight-saving changes are handled.",
            &RUN_AT,
            GucContext::Sighup,
            GucFlags::default(),
            Some(check_run_at),
            None,
            None,
        );
        GucRegistry::define_string_guc_with_hooks(
            c"followup.timezone",
            c"IANA time zone that defines the local date of a run.",
            c"Used for the default as-of date, the daily schedule and for turning timestamps into local dates.",
            &TIMEZONE,
            GucContext::Suset,
            GucFlags::default(),
            Some(check_timezone),
            None,
            None,
        );
    }
    GucRegistry::define_int_guc(
        c"followup.alert_after",
        c"Raise a long_run alert when a run has been running this long.",
        c"In minutes; units such as '1h' are accepted.",
        &ALERT_AFTER_MINUTES,
        1,
        7 * 24 * 60,
        GucContext::Sighup,
        GucFlags::UNIT_MIN,
    );
    GucRegistry::define_bool_guc(
        c"followup.catch_up",
        c"Run once at start-up when the day's scheduled run was missed.",
        c"",
        &CATCH_UP,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"followup.log_retention",
        c"Days of run log, alerts and delivered or dead outbox messages to keep.",
        c"",
        &LOG_RETENTION_DAYS,
        1,
        100_000,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"followup.run_in_worker",
        c"followup.run_now runs the scan in a background worker.",
        c"On (default), the run commits its running row before scanning, so other sessions see it in progress. \
          Off runs it in the calling session, without using a background worker slot.",
        &RUN_IN_WORKER,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"followup.max_attempts",
        c"Delivery attempts before an outbox message is marked dead.",
        c"",
        &MAX_ATTEMPTS,
        1,
        1_000,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"followup.run_retries",
        c"Retries of a failed scheduled or catch-up run.",
        c"The scheduler runs the day again followup.retry_delay after a failure, then twice, four times as long, ..., until one succeeds or the retries are spent.",
        &RUN_RETRIES,
        0,
        100,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"followup.retry_delay",
        c"Delay before the first retry of a failed scheduled or catch-up run; each next one waits twice as long.",
        c"In seconds; units such as '5min' are accepted. Superuser only: shorten it to test retries.",
        &RETRY_DELAY_SECONDS,
        1,
        24 * 60 * 60,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"followup.max_runtime",
        c"A run still running after this long is cancelled and logged as failed (0: no limit).",
        c"In minutes; units such as '1h' are accepted. A scheduled run cancelled so is retried (followup.run_retries).",
        &MAX_RUNTIME_MINUTES,
        0,
        7 * 24 * 60,
        GucContext::Suset,
        GucFlags::UNIT_MIN,
    );
    GucRegistry::define_int_guc(
        c"followup.run_workers",
        c"Background workers a run over a big assignments table is split across (1: one statement).",
        c"Each takes an equal range of the table's pages and a max_worker_processes slot while it runs.",
        &RUN_WORKERS,
        1,
        8,
        GucContext::Suset,
        GucFlags::default(),
    );
}

/// `followup.max_attempts`, for the outbox functions in SQL (calling this
/// also makes sure the library, and so the validated setting, is loaded).
#[pgrx::pg_extern(sql = false)]
fn _max_attempts() -> i32 {
    MAX_ATTEMPTS.get()
}

/// The schedule settings for SQL (the `followup.health` view), from the
/// same definitions the scheduler uses.
#[pgrx::pg_extern(sql = false)]
fn _settings() -> pgrx::iter::TableIterator<
    'static,
    (
        pgrx::name!(run_at, String),
        pgrx::name!(timezone, String),
        pgrx::name!(alert_after, i32),
        pgrx::name!(run_retries, i32),
        pgrx::name!(max_runtime, i32),
        pgrx::name!(retry_delay, i32),
    ),
> {
    pgrx::iter::TableIterator::once((
        run_at(),
        timezone(),
        ALERT_AFTER_MINUTES.get(),
        RUN_RETRIES.get(),
        MAX_RUNTIME_MINUTES.get(),
        RETRY_DELAY_SECONDS.get(),
    ))
}

/// The configured time zone name (validated by its check hook).
pub fn timezone() -> String {
    string_setting(&TIMEZONE, DEFAULT_TIMEZONE)
}

pub fn database() -> String {
    string_setting(&DATABASE, DEFAULT_DATABASE)
}

/// `followup.run_at` as `HH:MM` (two-digit hour).
pub fn run_at() -> String {
    let (hour, minute) = parse_run_at(&string_setting(&RUN_AT, DEFAULT_RUN_AT))
        .expect("the check hook accepts only valid times, and the default is one");
    format!("{hour:02}:{minute:02}")
}

fn string_setting(setting: &GucSetting<Option<CString>>, default: &CStr) -> String {
    setting.get().unwrap_or_else(|| default.to_owned()).to_string_lossy().into_owned()
}

/// Parses a 24-hour `HH:MM` (one- or two-digit hour, two-digit minute).
pub fn parse_run_at(value: &str) -> Option<(u32, u32)> {
    let (hours, minutes) = value.trim().split_once(':')?;
    if hours.is_empty() || hours.len() > 2 || minutes.len() != 2 {
        return None;
    }
    let hours: u32 = hours.parse().ok()?;
    let minutes: u32 = minutes.parse().ok()?;
    (hours < 24 && minutes < 60).then_some((hours, minutes))
}

/// Reports a rejected value the way built-in GUCs do: the server prints
/// `invalid value for parameter "followup.x": "..."` followed by this detail.
unsafe fn reject(detail: &CStr) -> bool {
    unsafe {
        pg_sys::GUC_check_errcode(pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE as i32);
        pg_sys::GUC_check_errdetail_string = pg_sys::pstrdup(detail.as_ptr());
    }
    false
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn check_run_at(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    let value = unsafe { (*newval).as_ref() }.map(|v| unsafe { CStr::from_ptr(v) });
    match value.and_then(|v| v.to_str().ok()) {
        Some(v) if parse_run_at(v).is_some() => true,
        _ => unsafe { reject(c"followup.run_at must be a 24-hour local time HH:MM, e.g. '03:00'.") },
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn check_timezone(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    let value = unsafe { *newval };
    // pg_tzset loads the zone from the server's time zone database and returns
    // NULL for a name it does not know; that is exactly what `SET timezone` uses.
    if value.is_null() || unsafe { *value } == 0 || unsafe { pg_sys::pg_tzset(value) }.is_null() {
        return unsafe {
            reject(c"followup.timezone must be a time zone name known to the server, e.g. 'Europe/Oslo' (see pg_timezone_names).")
        };
    }
    true
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use super::parse_run_at;
    use pgrx::prelude::*;

    #[pg_test]
    fn run_at_accepts_24_hour_times() {
        assert_eq!(parse_run_at("03:00"), Some((3, 0)));
        assert_eq!(parse_run_at("3:05"), Some((3, 5)));
        assert_eq!(parse_run_at("23:59"), Some((23, 59)));
        assert_eq!(parse_run_at("00:00"), Some((0, 0)));
    }

    #[pg_test]
    fn run_at_rejects_malformed_times() {
        for bad in ["24:00", "12:60", "12", "12:5", "noon", "", "-1:00", "12:00:00", "123:00"] {
            assert_eq!(parse_run_at(bad), None, "{bad:?} should be rejected");
        }
    }

    #[pg_test(error = "invalid value for parameter \"followup.timezone\": \"Mars/Olympus\"")]
    fn unknown_timezone_is_rejected() {
        Spi::run("SET followup.timezone = 'Mars/Olympus'").unwrap();
    }
}
