//! The reminder run (SPEC §3-§5): which messages are due on a date, and the
//! run that enqueues them under the advisory lock and logs itself in
//! `followup.runs`.
//!
//! A run is one set-based `INSERT … SELECT … ON CONFLICT DO NOTHING` into the
//! outbox. The outbox's unique idempotency key (assignment_id, cycle_start,
//! kind, sequence) is what makes any number of runs for one date (sequential,
//! concurrent, with or without the lock) enqueue each message once; the lock
//! only keeps runs from doing the same work twice at the same time.
//!
//! `run_now` starts the run in a dynamic background worker and waits for it:
//! the worker commits the `running` row before it scans, so other sessions see
//! the run in progress. The scheduler (scheduler.rs) calls `execute` in its
//! own process.

use crate::errors::raise;
use crate::query::select_one;
use crate::registry::{self, convert, AssignmentTable, DateKind, TIMEZONE_SQL};
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, DynamicBackgroundWorker};
use pgrx::datum::Date;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::PgSqlErrorCode::*;
use std::cell::Cell;

/// The advisory lock every run takes: `pg_try_advisory_lock(7381237527265899888)`,
/// the ASCII bytes of "followup" as a bigint. Advisory locks are per database.
pub const LOCK_KEY: i64 = 0x666F_6C6C_6F77_7570;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    Schedule,
    Manual,
    CatchUp,
}

impl Trigger {
    pub fn as_sql(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
            Trigger::CatchUp => "catch_up",
        }
    }

    fn parse(value: &str) -> Option<Trigger> {
        match value {
            "schedule" => Some(Trigger::Schedule),
            "manual" => Some(Trigger::Manual),
            "catch_up" => Some(Trigger::CatchUp),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------
// What is due
// ---------------------------------------------------------------------------

/// The local date (in followup.timezone) of a date/timestamp column value.
fn local_date(expr: &str, kind: DateKind) -> String {
    convert(expr, kind, DateKind::Date)
}

/// One row per message due on `$1` (a date), in the outbox's column names:
/// assignment_id, cycle_start, kind, sequence, recipient_role, recipient_id,
/// days_since_contact, then the payload columns as p1..pn (see payload_sql).
/// With `tally`, the scan also counts the active assignments it reads
/// (followup._tally_scanned).
///
/// Shaped for a million assignments: one plain scan per message kind (a
/// second sequential scan is cheaper than expanding every row into both
/// kinds), texts built only for the messages actually due, and no escalation
/// scan at all when no enabled policy escalates (or no coordinator column is
/// registered).
pub fn due_sql(assignments: &AssignmentTable, tally: bool, escalations: bool) -> String {
    let or_null = |column: &Option<String>| column.clone().unwrap_or_else(|| "NULL".to_string());
    let last_contact = local_date(&assignments.last_contact_column, assignments.last_contact_kind);
    let cycle_start = match &assignments.created_column {
        Some((created, kind)) => {
            format!("coalesce({last_contact}, {})", local_date(created, *kind))
        }
        None => last_contact,
    };
    // Payload columns travel as p1..pn; the JSON is built by the caller only
    // for the rows it keeps (payload_sql), not for every message due.
    let payload_scan: String = assignments
        .payload_columns
        .iter()
        .enumerate()
        .map(|(i, (_, quoted))| format!(", {quoted} AS p{}", i + 1))
        .collect();
    let payload_out = payload_columns(assignments, "s");
    let active_when = assignments.active_when.as_deref().unwrap_or("true");
    // Assignments with their cycle start, age and effective policy. The
    // innermost query reads only the assignments table, unaliased, so
    // active_when sees exactly its columns (qualified by the table name or
    // not). A row without a cycle start has a NULL age, which no condition
    // accepts.
    let scan = |counted: bool| {
        // OFFSET 0 keeps the planner from pushing the outer filters into the
        // scan, so the tally counts every active assignment.
        let (tally, fence) = if counted {
            (", followup._tally_scanned(NULL::pg_catalog.text) AS counted", "OFFSET 0")
        } else {
            ("", "")
        };
        format!(
            "(SELECT a.*, $1::pg_catalog.date - a.cycle_start AS age,
                     coalesce(own.enabled, dflt.enabled) AS enabled,
                     CASE WHEN own.organization IS NULL THEN dflt.remind_after_days ELSE own.remind_after_days END AS remind_after,
                     CASE WHEN own.organization IS NULL THEN dflt.repeat_every_days ELSE own.repeat_every_days END AS repeat_every,
                     CASE WHEN own.organization IS NULL THEN dflt.escalate_after_days ELSE own.escalate_after_days END AS escalate_after,
                     CASE WHEN own.organization IS NULL THEN dflt.max_reminders ELSE own.max_reminders END AS max_reminders
                FROM (SELECT {id} AS id, {mentor} AS mentor, {coordinator} AS coordinator,
                             ({organization})::pg_catalog.text AS organization, {cycle_start} AS cycle_start
                             {payload_scan}{tally}
                        FROM {table}
                       WHERE ({active_when})
                      {fence}) AS a
                CROSS JOIN (SELECT * FROM followup.policies WHERE organization = '*') AS dflt
                LEFT JOIN followup.policies AS own
                       ON own.organization = a.organization AND own.organization <> '*') AS s",
            id = assignments.id_column,
            mentor = assignments.mentor_column,
            coordinator = or_null(&assignments.coordinator_column),
            organization = or_null(&assignments.organization_column),
            table = assignments.table,
        )
    };
    let sequence = "CASE WHEN s.repeat_every IS NULL THEN 1 ELSE 1 + (s.age - s.remind_after) / s.repeat_every END";
    let reminders = format!(
        "SELECT (s.id)::pg_catalog.text AS assignment_id, s.cycle_start, 'reminder'::followup.message_kind AS kind,
                {sequence} AS sequence, 'mentor'::followup.recipient_role AS recipient_role,
                (s.mentor)::pg_catalog.text AS recipient_id, s.age AS days_since_contact{payload_out}
           FROM {scan}
          WHERE s.enabled AND s.mentor IS NOT NULL AND s.age >= s.remind_after
            AND (s.max_reminders IS NULL OR {sequence} <= s.max_reminders)",
        scan = scan(tally)
    );
    if !escalations || assignments.coordinator_column.is_none() {
        return reminders;
    }
    format!(
        "{reminders}
         UNION ALL
         SELECT (s.id)::pg_catalog.text, s.cycle_start, 'escalation'::followup.message_kind, 1,
                'coordinator'::followup.recipient_role, (s.coordinator)::pg_catalog.text, s.age{payload_out}
           FROM {scan}
          WHERE s.enabled AND s.coordinator IS NOT NULL AND s.age >= s.escalate_after",
        scan = scan(false)
    )
}

/// `, alias.p1, …, alias.pn`: the payload columns of a row aliased `alias`
/// that carries them (the assignments scan, or a row of due_sql).
fn payload_columns(assignments: &AssignmentTable, alias: &str) -> String {
    (1..=assignments.payload_columns.len()).map(|i| format!(", {alias}.p{i}")).collect()
}

/// The JSON payload of a row of due_sql aliased `alias`: the registered
/// payload columns by name.
fn payload_sql(assignments: &AssignmentTable, alias: &str) -> String {
    if assignments.payload_columns.is_empty() {
        return "'{}'::pg_catalog.jsonb".to_string();
    }
    let pairs: Vec<String> = assignments
        .payload_columns
        .iter()
        .enumerate()
        .map(|(i, (raw, _))| format!("{}, {alias}.p{}", registry::quote_literal(raw), i + 1))
        .collect();
    format!("pg_catalog.jsonb_build_object({})", pairs.join(", "))
}

/// Is `o` (an outbox row) the message `d` (a row of due_sql)? The
/// idempotency key.
const SAME_MESSAGE: &str = "o.assignment_id = d.assignment_id AND o.cycle_start = d.cycle_start
                            AND o.kind = d.kind AND o.sequence = d.sequence";

/// Does any enabled policy escalate? (Decides whether a run scans for escalations.)
fn any_policy_escalates(client: &SpiClient<'_>) -> bool {
    crate::query::one(
        client,
        "SELECT EXISTS (SELECT 1 FROM followup.policies WHERE enabled AND escalate_after_days IS NOT NULL)",
        &[],
    )
    .unwrap_or(true)
}

/// `followup.preview`: the due messages not yet in the outbox, as outbox rows.
fn preview_sql(assignments: &AssignmentTable, escalations: bool) -> String {
    format!(
        "SELECT NULL::pg_catalog.int8 AS message_id, NULL::pg_catalog.int8 AS run_id,
                d.assignment_id, d.cycle_start, d.kind, d.sequence, d.recipient_role, d.recipient_id,
                d.days_since_contact, {payload} AS payload, pg_catalog.now() AS enqueued_at,
                'pending'::followup.message_status AS status, 0 AS attempts, pg_catalog.now() AS visible_at,
                NULL::pg_catalog.uuid AS lease_id, NULL::pg_catalog.text AS claimed_by,
                NULL::pg_catalog.timestamptz AS delivered_at, NULL::pg_catalog.text AS last_error
           FROM ({due}) AS d
          WHERE NOT EXISTS (SELECT 1 FROM followup.outbox AS o WHERE {SAME_MESSAGE})
          ORDER BY d.assignment_id, d.kind",
        payload = payload_sql(assignments, "d"),
        due = due_sql(assignments, false, escalations)
    )
}

/// The run's one INSERT. `$1` as-of date, `$2` run id.
///
/// ON CONFLICT DO NOTHING on the idempotency key is what makes any number of
/// runs, with or without the lock, enqueue each message once.
///
/// `skip_enqueued` adds an anti-join against the outbox in front of it: a
/// rerun, or any day's run where most due messages were enqueued on earlier
/// days, then drops those with one hash (or index) anti-join instead of
/// building each row and probing the unique index for it — about 4× cheaper
/// for a same-day rerun. The caller leaves it out when the outbox has no pages:
/// there is nothing to skip, and a planner that sees an empty table may choose
/// to rescan it (the table this statement is filling) for every candidate.
///
/// The due tally sits behind an OFFSET 0 fence, so it counts every due
/// message, enqueued before or not; the difference is `duplicates_suppressed`.
/// The JSON payload is built only for rows that get past the anti-join.
fn enqueue_sql(assignments: &AssignmentTable, escalations: bool, skip_enqueued: bool) -> String {
    let payload_columns = payload_columns(assignments, "due");
    let anti_join = if skip_enqueued {
        format!("WHERE NOT EXISTS (SELECT 1 FROM followup.outbox AS o WHERE {SAME_MESSAGE})")
    } else {
        String::new()
    };
    format!(
        "INSERT INTO followup.outbox (run_id, assignment_id, cycle_start, kind, sequence, recipient_role,
                                      recipient_id, days_since_contact, payload)
         SELECT $2, d.assignment_id, d.cycle_start, d.kind, d.sequence, d.recipient_role,
                d.recipient_id, d.days_since_contact, {payload}
           FROM (SELECT followup._tally_due(due.assignment_id) AS assignment_id, due.cycle_start, due.kind,
                        due.sequence, due.recipient_role, due.recipient_id, due.days_since_contact{payload_columns}
                   FROM ({due}) AS due
                 OFFSET 0) AS d
         {anti_join}
         ON CONFLICT ON CONSTRAINT outbox_idempotency_key DO NOTHING",
        payload = payload_sql(assignments, "d"),
        due = due_sql(assignments, true, escalations)
    )
}

/// SQL text of `followup.preview`'s query (it is run with RETURN QUERY EXECUTE).
#[pg_extern(sql = false)]
fn _preview_sql() -> String {
    Spi::connect(|client| preview_sql(&registry::require_assignment_table(&client), any_policy_escalates(&client)))
}

// Counters the run's INSERT bumps as rows flow through it, so one statement
// yields the number of assignments scanned and of messages due without a
// second pass. Volatile functions in a subquery's target list are evaluated
// once per row that subquery emits.
thread_local! {
    static SCANNED: Cell<i64> = const { Cell::new(0) };
    static DUE: Cell<i64> = const { Cell::new(0) };
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

// ---------------------------------------------------------------------------
// Executing a run
// ---------------------------------------------------------------------------

/// `followup.preview`'s as-of date: `as_of`, or today in followup.timezone.
#[pg_extern(sql = false)]
fn _as_of(as_of: Option<Date>) -> Option<Date> {
    select_one::<Date>(
        &format!("SELECT coalesce($1, (pg_catalog.now() AT TIME ZONE {TIMEZONE_SQL})::pg_catalog.date)"),
        &[as_of.into()],
    )
}

/// Today in followup.timezone, or `as_of`, as an ISO date.
pub fn as_of_or_today(as_of: Option<Date>) -> String {
    select_one::<String>(
        &format!("SELECT pg_catalog.to_char(coalesce($1, (pg_catalog.now() AT TIME ZONE {TIMEZONE_SQL})::pg_catalog.date), 'YYYY-MM-DD')"),
        &[as_of.into()],
    )
    .unwrap_or_else(|| raise(ERRCODE_INTERNAL_ERROR, "could not determine the as-of date"))
}

pub fn next_run_id() -> i64 {
    Spi::get_one::<i64>("SELECT pg_catalog.nextval('followup.runs_run_id_seq')")
        .ok()
        .flatten()
        .unwrap_or_else(|| raise(ERRCODE_INTERNAL_ERROR, "could not allocate a run id"))
}

/// The pid holding the run lock in this database, if any.
fn lock_holder(client: &SpiClient<'_>) -> Option<i32> {
    crate::query::one::<i32>(
        client,
        "SELECT pid FROM pg_catalog.pg_locks
          WHERE locktype = 'advisory' AND granted
            AND database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
            AND classid = ($1 >> 32)::pg_catalog.oid
            AND objid = ($1 & 4294967295)::pg_catalog.oid
            AND objsubid = 1
          LIMIT 1",
        &[LOCK_KEY.into()],
    )
}

fn update(client: &mut SpiClient<'_>, sql: &str, args: &[pgrx::datum::DatumWithOid<'_>]) {
    client.update(sql, None, args).unwrap_or_else(|e| raise(ERRCODE_INTERNAL_ERROR, e.to_string()));
}

/// What the first step of a run found.
pub enum Start {
    /// Another run holds the lock: logged as skipped.
    Skipped,
    /// We hold the lock and the `running` row is written.
    Running,
}

/// Step 1, in its own transaction: take the lock (or log `skipped`), mark
/// runs whose process died `abandoned`, write the `running` row.
pub fn start(run_id: i64, as_of: &str, trigger: Trigger) -> Start {
    let pid = unsafe { pg_sys::MyProcPid };
    Spi::connect_mut(|client| {
        let locked =
            crate::query::one::<bool>(client, "SELECT pg_catalog.pg_try_advisory_lock($1)", &[LOCK_KEY.into()])
                .unwrap_or(false);
        if !locked {
            let holder = lock_holder(client)
                .map(|p| format!("another run holds the lock (pid {p})"))
                .unwrap_or_else(|| "another run holds the lock".to_string());
            update(
                client,
                "INSERT INTO followup.runs (run_id, trigger, status, as_of, finished_at, error, backend_pid)
                 VALUES ($1, $2::followup.run_trigger, 'skipped', $3::pg_catalog.date, pg_catalog.clock_timestamp(), $4, $5)",
                &[run_id.into(), trigger.as_sql().into(), as_of.into(), holder.into(), pid.into()],
            );
            return Start::Skipped;
        }
        mark_abandoned(client);
        update(
            client,
            "INSERT INTO followup.runs (run_id, trigger, status, as_of, backend_pid)
             VALUES ($1, $2::followup.run_trigger, 'running', $3::pg_catalog.date, $4)",
            &[run_id.into(), trigger.as_sql().into(), as_of.into(), pid.into()],
        );
        Start::Running
    })
}

/// With the run lock held, no other run can be running: a `running` row left
/// behind belongs to a process that died (crash, kill, restart).
pub fn mark_abandoned(client: &mut SpiClient<'_>) {
    update(
        client,
        "WITH gone AS (
             UPDATE followup.runs
                SET status = 'abandoned', finished_at = pg_catalog.clock_timestamp(),
                    error = pg_catalog.format('the process running it (pid %s) ended before it finished', backend_pid)
              WHERE status = 'running'
                AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_locks l
                                 WHERE l.pid = runs.backend_pid AND l.locktype = 'advisory' AND l.granted
                                   AND l.classid = ($1 >> 32)::pg_catalog.oid
                                   AND l.objid = ($1 & 4294967295)::pg_catalog.oid)
             RETURNING run_id, error)
         SELECT followup._raise_alert('run_abandoned', run_id, pg_catalog.format('run %s was abandoned: %s', run_id, error))
           FROM gone",
        &[LOCK_KEY.into()],
    );
}

/// Counts of a finished scan.
struct Outcome {
    scanned: i64,
    due: i64,
    enqueued: i64,
}

/// Step 2: the scan and the INSERT, inside a subtransaction so that an error
/// is caught, logged as `failed` and the transaction can still commit the
/// log row. Returns the status written.
pub fn scan_and_finish(run_id: i64, as_of: &str) -> &'static str {
    let result = in_subtransaction(|| {
        Spi::connect_mut(|client| {
            let assignments = registry::require_assignment_table(client);
            SCANNED.set(0);
            DUE.set(0);
            let escalations = any_policy_escalates(client);
            // Has the outbox any pages (else there is nothing to skip), and
            // has it been analyzed with rows in it (else the planner has no
            // statistics to weigh the anti-join with)?
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
            // The as-of date as a date, so the scan compares dates rather
            // than parsing the text once per row.
            let as_of_date = crate::query::one::<Date>(client, "SELECT $1::pg_catalog.date", &[as_of.into()]);
            let enqueued = with_join_methods(skip_enqueued && !analyzed, || {
                client
                    .update(
                        enqueue_sql(&assignments, escalations, skip_enqueued).as_str(),
                        None,
                        &[as_of_date.into(), run_id.into()],
                    )
                    .unwrap_or_else(|e| raise(ERRCODE_INTERNAL_ERROR, e.to_string()))
                    .len() as i64
            });
            Outcome { scanned: SCANNED.get(), due: DUE.get(), enqueued }
        })
    });
    Spi::connect_mut(|client| match result {
        Ok(outcome) => {
            update(
                client,
                "UPDATE followup.runs
                    SET status = 'succeeded', finished_at = pg_catalog.clock_timestamp(),
                        assignments_scanned = $2, reminders_enqueued = $3, duplicates_suppressed = $4
                  WHERE run_id = $1",
                &[
                    run_id.into(),
                    outcome.scanned.into(),
                    outcome.enqueued.into(),
                    (outcome.due - outcome.enqueued).into(),
                ],
            );
            update(client, "SELECT followup._resolve_alerts()", &[]);
            if outcome.enqueued > 0 {
                // Delivered to LISTENers when this transaction commits.
                update(
                    client,
                    "SELECT pg_catalog.pg_notify('followup_outbox',
                            pg_catalog.json_build_object('run_id', $1::pg_catalog.int8, 'enqueued', $2::pg_catalog.int8)::pg_catalog.text)",
                    &[run_id.into(), outcome.enqueued.into()],
                );
            }
            "succeeded"
        }
        Err(message) => {
            update(
                client,
                "UPDATE followup.runs SET status = 'failed', finished_at = pg_catalog.clock_timestamp(), error = $2
                  WHERE run_id = $1",
                &[run_id.into(), message.as_str().into()],
            );
            update(
                client,
                "SELECT followup._raise_alert('run_failed', $1, pg_catalog.format('run %s failed: %s', $1, $2::pg_catalog.text))",
                &[run_id.into(), message.as_str().into()],
            );
            "failed"
        }
    })
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
        crate::planner::with_settings(&[crate::planner::NO_JIT, no_mergejoin, no_nestloop], f)
    } else {
        crate::planner::with_settings(&[crate::planner::NO_JIT, no_mergejoin], f)
    }
}

pub fn release_lock() {
    Spi::run_with_args("SELECT pg_catalog.pg_advisory_unlock($1)", &[LOCK_KEY.into()]).ok();
}

/// Runs `body` in an internal subtransaction, the way PL/pgSQL runs a block
/// with an EXCEPTION clause: on error the subtransaction is rolled back and
/// the error's message returned; the outer transaction stays usable.
fn in_subtransaction<R>(body: impl FnOnce() -> R + std::panic::UnwindSafe) -> Result<R, String> {
    unsafe {
        let memory_context = pg_sys::CurrentMemoryContext;
        let resource_owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        let result = PgTryBuilder::new(|| Ok(body()))
            .catch_others(|caught| match caught {
                CaughtError::PostgresError(report) | CaughtError::ErrorReport(report) => {
                    Err(report.message().to_string())
                }
                CaughtError::RustPanic { ereport, .. } => Err(ereport.message().to_string()),
            })
            .execute();
        if result.is_ok() {
            pg_sys::ReleaseCurrentSubTransaction();
        } else {
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
        }
        pg_sys::MemoryContextSwitchTo(memory_context);
        pg_sys::CurrentResourceOwner = resource_owner;
        result
    }
}

// ---------------------------------------------------------------------------
// run_now: a dynamic background worker per run
// ---------------------------------------------------------------------------

/// Starts a run and waits for it; returns its run_id (`followup.run_now`
/// returns the log row).
#[pg_extern(sql = false)]
fn _run_now(as_of: Option<Date>) -> i64 {
    let as_of = as_of_or_today(as_of);
    let run_id = next_run_id();
    if !crate::gucs::RUN_IN_WORKER.get() {
        run_in_this_session(run_id, &as_of, Trigger::Manual);
        return run_id;
    }
    // The worker uses the caller's followup.timezone (it may have been SET in
    // this session) to turn timestamps into local dates, as preview does.
    match launch_worker(run_id, &as_of, Trigger::Manual, &crate::gucs::timezone()) {
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
            run_in_this_session(run_id, &as_of, Trigger::Manual);
        }
    }
    run_id
}

/// Starts the dynamic worker for one run in this database, as the extension
/// owner, notifying this process when it starts and stops. None when no
/// worker slot is free.
pub fn launch_worker(run_id: i64, as_of: &str, trigger: Trigger, timezone: &str) -> Option<DynamicBackgroundWorker> {
    let owner: pg_sys::Oid = in_transaction(|| {
        select_one("SELECT extowner FROM pg_catalog.pg_extension WHERE extname = 'pg_followup'", &[])
            .unwrap_or_else(|| raise(ERRCODE_INTERNAL_ERROR, "pg_followup is not installed in this database"))
    });
    let database = unsafe { pg_sys::MyDatabaseId };
    let extra =
        format!("{} {} {} {} {} {}", database.to_u32(), owner.to_u32(), run_id, as_of, trigger.as_sql(), timezone);
    // The handle must outlive the caller's transaction (the scheduler waits
    // across several).
    let launch = || {
        BackgroundWorkerBuilder::new(&format!("pg_followup run {run_id}"))
            .set_type("pg_followup run")
            .set_library("pg_followup")
            .set_function("followup_run_worker_main")
            .enable_spi_access()
            .set_start_time(BgWorkerStartTime::RecoveryFinished)
            .set_restart_time(None)
            .set_extra(&extra)
            .set_notify_pid(unsafe { pg_sys::MyProcPid })
            .load_dynamic()
            .ok()
    };
    // SAFETY: only the worker handle is allocated in TopMemoryContext; it is
    // small and lives as long as the caller waits for the worker.
    unsafe { pgrx::PgMemoryContexts::TopMemoryContext.switch_to(|_| launch()) }
}

/// Runs `body` in the current transaction, or in a new one when there is
/// none (the scheduler calls between transactions).
fn in_transaction<R>(body: impl FnOnce() -> R + std::panic::UnwindSafe + std::panic::RefUnwindSafe) -> R {
    if unsafe { pg_sys::IsTransactionState() } {
        body()
    } else {
        BackgroundWorker::transaction(body)
    }
}

/// A run id, from a background worker (outside any transaction).
pub fn next_run_id_in_worker() -> i64 {
    BackgroundWorker::transaction(next_run_id)
}

/// The logged status of a run, from a background worker.
pub fn status_of(run_id: i64) -> Option<String> {
    BackgroundWorker::transaction(move || {
        select_one::<String>("SELECT status::text FROM followup.runs WHERE run_id = $1", &[run_id.into()])
    })
}

/// The whole run inside the caller's transaction (followup.run_in_worker is
/// off, or no worker slot is free). The lock is a session lock, so other runs
/// see it at once; the log row becomes visible when the caller commits.
fn run_in_this_session(run_id: i64, as_of: &str, trigger: Trigger) {
    if let Start::Running = start(run_id, as_of, trigger) {
        scan_and_finish(run_id, as_of);
        release_lock();
    }
}

unsafe extern "C-unwind" {
    /// PostgreSQL's own SIGTERM handler for backends (tcop/postgres.c).
    #[link_name = "die"]
    fn postgres_die(signal: std::ffi::c_int);
}

/// Entry point of the dynamic worker started by `_run_now`. `bgw_extra` holds
/// "database-oid user-oid run-id as-of trigger timezone".
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn followup_run_worker_main(_arg: pg_sys::Datum) {
    unsafe {
        // Terminate like a backend (at the next interrupt check), so that
        // pg_terminate_backend and shutdown stop a long scan cleanly.
        pg_sys::pqsignal(pg_sys::SIGTERM as i32, Some(postgres_die));
        pg_sys::BackgroundWorkerUnblockSignals();
    }
    let extra = BackgroundWorker::get_extra().to_string();
    let parts: Vec<&str> = extra.split_whitespace().collect();
    let [database, user, run_id, as_of, trigger, timezone] = parts[..] else {
        log!("pg_followup: bad run worker arguments {extra:?}");
        return;
    };
    let (Ok(database), Ok(user), Ok(run_id), Some(trigger)) =
        (database.parse::<u32>(), user.parse::<u32>(), run_id.parse::<i64>(), Trigger::parse(trigger))
    else {
        log!("pg_followup: bad run worker arguments {extra:?}");
        return;
    };
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(pg_sys::Oid::from(database)), Some(pg_sys::Oid::from(user)));
    execute_in_worker_with_timezone(run_id, as_of, trigger, timezone);
}

/// `execute_in_worker` with followup.timezone set for this process first.
pub fn execute_in_worker_with_timezone(run_id: i64, as_of: &str, trigger: Trigger, timezone: &str) -> &'static str {
    let timezone = timezone.to_string();
    BackgroundWorker::transaction(move || {
        Spi::run_with_args("SELECT pg_catalog.set_config('followup.timezone', $1, false)", &[timezone.as_str().into()])
            .ok();
    });
    execute_in_worker(run_id, as_of, trigger)
}

/// A whole run from a background worker: one transaction per step, so the
/// `running` row is committed (and visible) before the scan starts.
pub fn execute_in_worker(run_id: i64, as_of: &str, trigger: Trigger) -> &'static str {
    let as_of = as_of.to_string();
    let started = BackgroundWorker::transaction(|| {
        pin_search_path();
        start(run_id, &as_of, trigger)
    });
    let status = match started {
        Start::Skipped => "skipped",
        Start::Running => BackgroundWorker::transaction(|| {
            pin_search_path();
            scan_and_finish(run_id, &as_of)
        }),
    };
    BackgroundWorker::transaction(release_lock);
    status
}

/// The run's SQL is schema-qualified; active_when is resolved in pg_catalog.
fn pin_search_path() {
    Spi::run("SET LOCAL search_path = pg_catalog, pg_temp").ok();
}
