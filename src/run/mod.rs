//! The reminder run: which messages are due on a date, and the run that
//! enqueues them under the advisory lock and logs itself in `followup.runs`.
//!
//! A run is one set-based `INSERT … SELECT … ON CONFLICT DO NOTHING` into the
//! outbox (due.rs). The outbox's unique idempotency key (assignment_id,
//! cycle_start, kind, sequence) is what makes any number of runs for one date
//! (sequential, concurrent, with or without the lock) enqueue each message
//! once; the lock only keeps runs from doing the same work twice at the same
//! time.
//!
//! * due.rs    the SQL of what is due (scan, INSERT, preview)
//! * log.rs    the run's life in followup.runs, the lock, the tallies
//! * unreadable.rs  going on without the rows a statement cannot evaluate
//! * parts.rs  a run over a big table split across helper workers
//! * worker.rs where a run executes: a dynamic background worker (so others
//!   see the `running` row while it works) or the calling session
//!
//! This file holds the run's body (`scan_and_finish`) and the SQL-callable
//! entry points.

pub mod due;
pub mod log;
pub mod parts;
pub mod preview;
pub mod unreadable;
pub mod worker;

use crate::errors::in_subtransaction;
use crate::local_time::as_of_or_today;
use crate::planner::{with_settings, NO_JIT};
use crate::query::one;
use crate::registry;
use crate::security;
use pgrx::datum::Date;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use unreadable::skipping_unreadable;

/// What started a run (`followup.runs.trigger`; named so here to keep it
/// apart from database triggers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunCause {
    /// The scheduler's daily run at followup.run_at.
    Schedule,
    /// `followup.run_now`.
    Manual,
    /// The scheduler at start-up, for a day whose run was missed.
    CatchUp,
    /// The scheduler again, after the day's run failed (followup.run_retries).
    Retry,
}

impl RunCause {
    pub fn as_sql(self) -> &'static str {
        match self {
            RunCause::Schedule => "schedule",
            RunCause::Manual => "manual",
            RunCause::CatchUp => "catch_up",
            RunCause::Retry => "retry",
        }
    }

    pub fn parse(value: &str) -> Option<RunCause> {
        [RunCause::Schedule, RunCause::Manual, RunCause::CatchUp, RunCause::Retry]
            .into_iter()
            .find(|c| c.as_sql() == value)
    }
}

/// `followup.runs.status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    Skipped,
    Abandoned,
}

impl RunStatus {
    pub fn as_sql(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Skipped => "skipped",
            RunStatus::Abandoned => "abandoned",
        }
    }

    pub fn parse(value: &str) -> Option<RunStatus> {
        [RunStatus::Running, RunStatus::Succeeded, RunStatus::Failed, RunStatus::Skipped, RunStatus::Abandoned]
            .into_iter()
            .find(|s| s.as_sql() == value)
    }
}

/// Does any enabled policy escalate? (Decides whether a run scans for escalations.)
pub fn any_policy_escalates(client: &SpiClient<'_>) -> bool {
    one(
        client,
        "SELECT EXISTS (SELECT 1 FROM followup.policies WHERE enabled AND escalate_after_days IS NOT NULL)",
        &[],
    )
    .unwrap_or(true)
}

/// How the run's INSERT is planned, decided once per run from the outbox
/// and the policies (and handed to the workers of a split run).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnqueuePlan {
    /// Does any enabled policy escalate? (Else the escalation scan is left out.)
    pub escalations: bool,
    /// Has the outbox any pages? (Else there is nothing to skip: no anti-join.)
    pub skip_enqueued: bool,
    /// Has the outbox been analyzed with rows in it? (Else the planner has
    /// no statistics to weigh the anti-join with: hash joins only.)
    pub analyzed: bool,
}

impl EnqueuePlan {
    pub fn current(client: &SpiClient<'_>) -> EnqueuePlan {
        let (skip_enqueued, analyzed) = client
            .select(
                "SELECT pg_catalog.pg_relation_size(c.oid) > 0, c.reltuples > 0
                   FROM pg_catalog.pg_class c WHERE c.oid = 'followup.outbox'::pg_catalog.regclass",
                None,
                &[],
            )
            .ok()
            .and_then(|t| t.first().get_two::<bool, bool>().ok())
            .map(|(pages, analyzed)| (pages.unwrap_or(false), analyzed.unwrap_or(false)))
            .unwrap_or((false, false));
        EnqueuePlan { escalations: any_policy_escalates(client), skip_enqueued, analyzed }
    }
}

/// Counts of one INSERT (or of several summed): assignments scanned,
/// messages due, messages enqueued.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tallies {
    pub scanned: i64,
    pub due: i64,
    pub enqueued: i64,
}

impl std::ops::Add for Tallies {
    type Output = Tallies;
    fn add(self, other: Tallies) -> Tallies {
        Tallies {
            scanned: self.scanned + other.scanned,
            due: self.due + other.due,
            enqueued: self.enqueued + other.enqueued,
        }
    }
}

/// The run's INSERT (due.rs) over the assignments `only` is true for (SQL
/// over the table's columns), as the assignments table's owner
/// (security.rs), `unreadable` the ids unreadable.rs leaves out.
pub fn enqueue(
    client: &mut SpiClient<'_>,
    assignments: &registry::AssignmentTable,
    plan: EnqueuePlan,
    only: &str,
    unreadable: &[String],
    run_id: i64,
    as_of: Date,
) -> Tallies {
    log::reset_tallies();
    let sql = due::enqueue_sql(assignments, plan.escalations, plan.skip_enqueued, only);
    let enqueued = with_join_methods(plan.skip_enqueued && !plan.analyzed, || {
        security::as_owner_statement(assignments.owner, &sql, || {
            client
                .update(sql.as_str(), None, &[as_of.into(), run_id.into(), unreadable.to_vec().into()])
                .unwrap_or_else(|e| crate::errors::internal(e.to_string()))
                .len() as i64
        })
    });
    let (scanned, due) = log::tallies();
    Tallies { scanned, due, enqueued }
}

/// Step 2 of a run (log.rs has step 1): the scan and the INSERT, inside a
/// subtransaction so that an error is caught, logged as `failed` and the
/// transaction can still commit the log row. With `max_runtime_minutes`
/// (followup.max_runtime) the statement is cancelled past it, and the error
/// names the limit. Assignments the run cannot evaluate are left out and
/// counted (unreadable.rs). The INSERT runs as the assignments table's
/// owner (security.rs).
///
/// With `workers` over 1 (a run in its own worker, followup.run_workers), a
/// big table is split across that many helper workers (parts.rs); should any
/// of them not finish, the one statement runs here over the whole table, and
/// the messages the others committed count as enqueued by this run.
pub fn scan_and_finish(run_id: i64, as_of: Date, max_runtime_minutes: i32, workers: i32) {
    // exported here, outside the subtransaction below (PostgreSQL exports
    // no snapshot from a subtransaction)
    let split = if workers > 1 { parts::prepare(workers) } else { None };
    let result = with_time_limit(max_runtime_minutes, || {
        in_subtransaction(|| {
            Spi::connect_mut(|client| {
                let assignments = registry::require_assignment_table(client);
                registry::require_current_schema(client);
                let plan = EnqueuePlan::current(client);
                let by_parts = match &split {
                    Some(split) => parts::run(client, split, run_id, as_of, max_runtime_minutes, plan),
                    None => parts::Finished::default(),
                };
                if let Some(all) = by_parts.complete {
                    return log::Outcome { scanned: all.scanned, due: all.due, enqueued: all.enqueued, skipped: 0 };
                }
                let plan = if by_parts.committed.enqueued > 0 { EnqueuePlan::current(client) } else { plan };
                let attempt = |client: &mut SpiClient<'_>, only: &str, unreadable: &[String]| {
                    enqueue(client, &assignments, plan, only, unreadable, run_id, as_of)
                };
                let probe = |only: &str| {
                    format!(
                        "SELECT pg_catalog.count(p.*) FROM ({}) AS p",
                        due::preview_sql(&assignments, plan.escalations, only)
                    )
                };
                match skipping_unreadable(client, &assignments, "$3", attempt, probe, as_of) {
                    Ok((tallies, skipped)) => {
                        if skipped > 0 {
                            warning!(
                                "pg_followup: run {run_id} skipped {skipped} assignment(s) whose active_when or columns it cannot evaluate (followup.runs.assignments_skipped)"
                            );
                        }
                        log::Outcome {
                            scanned: tallies.scanned,
                            due: tallies.due,
                            enqueued: tallies.enqueued + by_parts.committed.enqueued,
                            skipped: skipped as i64,
                        }
                    }
                    Err(failure) => crate::errors::raise(failure.code, failure.message),
                }
            })
        })
    })
    .map_err(|failure| {
        if max_runtime_minutes > 0 && failure.message == "canceling statement due to statement timeout" {
            format!("cancelled: the run took longer than followup.max_runtime ({max_runtime_minutes} min)")
        } else {
            failure.message
        }
    });
    log::finish(run_id, result);
}

unsafe extern "C-unwind" {
    /// utils/timeout.h: PostgreSQL's own statement timeout, which also ends
    /// a lock wait. (Not in pgrx's bindings.)
    fn enable_timeout_after(id: std::ffi::c_int, delay_ms: std::ffi::c_int);
    fn disable_timeout(id: std::ffi::c_int, keep_indicator: bool);
}
/// `STATEMENT_TIMEOUT` of `enum TimeoutId` (the fourth, in every supported major).
const STATEMENT_TIMEOUT: std::ffi::c_int = 3;

/// Runs `f` under PostgreSQL's statement timeout set to `minutes` (none for
/// 0): past it, the work is cancelled with "canceling statement due to
/// statement timeout", also while it waits for a lock. Setting the
/// statement_timeout parameter would not do: its timer is armed only when a
/// client's statement starts.
pub(crate) fn with_time_limit<T>(minutes: i32, f: impl FnOnce() -> T) -> T {
    if minutes <= 0 {
        return f();
    }
    let ms = minutes.saturating_mul(60_000);
    unsafe { enable_timeout_after(STATEMENT_TIMEOUT, ms) };
    let result = f();
    unsafe { disable_timeout(STATEMENT_TIMEOUT, false) };
    result
}

/// Runs `f` (the run's INSERT) with JIT off (see planner.rs), with
/// `enable_mergejoin = off`, and with `hash_only` also `enable_nestloop = off`.
///
/// The planner underestimates how many messages are due. With statistics on
/// the outbox it still weighs the anti-join well, except that it once chose a
/// merge anti-join: a sort of every due message's text key, 1.6× slower at
/// 1,000,000 assignments than the hash anti-join or the index probes it picks
/// when merge joins are off. Without statistics (an outbox filled since it was
/// created or truncated, before autovacuum analyzed it) it believes few due
/// messages are enqueued and probes the index for each: 1.5 s for a same-day
/// rerun at 1,000,000, against 0.75 s with a hash anti-join. Such an outbox
/// holds at most a few runs' messages, so hashing it is cheap. A disabled
/// join method adds 1e10 to the cost of any plan that still needs one, which
/// is one more reason JIT must not decide by cost here.
fn with_join_methods<T>(hash_only: bool, f: impl FnOnce() -> T) -> T {
    let no_mergejoin = (c"enable_mergejoin", c"off");
    let no_nestloop = (c"enable_nestloop", c"off");
    if hash_only {
        with_settings(&[NO_JIT, no_mergejoin, no_nestloop], f)
    } else {
        with_settings(&[NO_JIT, no_mergejoin], f)
    }
}

/// Starts a run and waits for it; returns its run_id (`followup.run_now`
/// returns the log row).
#[pg_extern(sql = false)]
fn _run_now(as_of: Option<Date>) -> i64 {
    worker::run_and_wait(as_of_or_today(as_of), RunCause::Manual)
}

/// The settings a run goes by, taken where it is started (the scheduler,
/// or the session calling run_now) and handed to its worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunSettings {
    /// followup.timezone: turns timestamps into local dates.
    pub timezone: String,
    /// followup.max_runtime, minutes (0: none).
    pub max_runtime_minutes: i32,
    /// followup.run_workers: how many workers a big run is split across.
    pub workers: i32,
}

impl RunSettings {
    pub fn current() -> RunSettings {
        RunSettings {
            timezone: crate::gucs::timezone(),
            max_runtime_minutes: crate::gucs::MAX_RUNTIME_MINUTES.get(),
            workers: crate::gucs::RUN_WORKERS.get(),
        }
    }
}
