//! A run over a big assignments table, split across helper workers.
//!
//! A first run (at install, after a long outage) inserts every due message
//! at once; one statement keeps one core busy, and most of its time is the
//! outbox's index maintenance. With followup.run_workers = N (default 2) and
//! a table of at least `MIN_BLOCKS_PER_PART` pages per part (as of its last
//! VACUUM or ANALYZE), the run's
//! worker splits the table's pages into N equal ranges (by ctid, which
//! PostgreSQL scans as a range), starts one helper worker per range, and
//! waits for them. Each helper runs the run's own INSERT (due.rs) over its
//! range, as the table's owner, and records its tallies in
//! `followup._run_parts` in the transaction that enqueued the messages.
//!
//! What makes the parts add up to the one statement:
//!
//! * One snapshot. The run's worker exports its snapshot and every helper
//!   imports it (REPEATABLE READ, `SET TRANSACTION SNAPSHOT`), so each row
//!   version is seen by exactly one part: a row updated while the run works
//!   (it moves to another page, perhaps into another range) is neither read
//!   twice nor missed, as it could be with a snapshot per part.
//! * Disjoint messages. A message's key starts with its assignment, which is
//!   in one range; two parts never insert the same key.
//! * One run. One run id, one log row, the run lock held by the run's
//!   worker throughout; the tallies are the parts' sums.
//! * Failure. A helper that fails (an unreadable row in its range, a
//!   cancel, a crash) rolls its part back, tallies included; a helper that
//!   cannot start leaves its range undone. The run's worker then runs the
//!   one statement over the whole table itself, with its handling of
//!   unreadable rows; what the finished parts committed is in the outbox
//!   already and counts as enqueued by this run (their keys make the
//!   statement skip them). When the run itself fails or is cancelled, its
//!   helpers are stopped.

use super::{enqueue, EnqueuePlan, Tallies};
use crate::bgw;
use crate::errors::{in_subtransaction, internal};
use crate::query::execute;
use crate::registry;
use pgrx::bgworkers::{BackgroundWorker, DynamicBackgroundWorker};
use pgrx::datum::Date;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

/// Pages of the assignments table per part below which a run is not split:
/// starting a worker costs a few milliseconds, and a run over fewer than
/// about 50,000 assignments takes little more.
const MIN_BLOCKS_PER_PART: u32 = 500;

/// A split decided before the run's subtransaction: the page ranges (first
/// block, end block or None for the rest of the table) and the exported
/// snapshot the helpers share.
pub struct Split {
    ranges: Vec<(u32, Option<u32>)>,
    snapshot: String,
}

/// What the parts did: `complete`, the sum of all parts when every one
/// finished; `committed`, the sum of those that did.
#[derive(Default)]
pub struct Finished {
    pub complete: Option<Tallies>,
    pub committed: Tallies,
}

/// Splits the run into at most `workers` parts when the assignments table
/// is big enough; exports the run's snapshot for them. Must be called
/// outside any subtransaction. None: run the one statement.
pub fn prepare(workers: i32) -> Option<Split> {
    Spi::connect(|client| {
        let assignments = registry::load_assignment_table(&client)?;
        let blocks = estimated_blocks(&client, &assignments);
        let parts = (workers.max(1) as u32).min(blocks / MIN_BLOCKS_PER_PART);
        if parts < 2 {
            return None;
        }
        let snapshot: String = crate::query::one(&client, "SELECT pg_catalog.pg_export_snapshot()", &[])?;
        let bounds: Vec<u32> = (0..parts).map(|k| (blocks as u64 * k as u64 / parts as u64) as u32).collect();
        // the last range is open: the table may have grown since its pages
        // were counted
        let ranges = (0..parts as usize).map(|k| (bounds[k], bounds.get(k + 1).copied())).collect();
        Some(Split { ranges, snapshot })
    })
}

/// The pages of the table (or of its largest partition, one level down), as
/// of its last VACUUM or ANALYZE: read from the catalogue, so that deciding
/// takes no lock on the table (the run's time limit starts after it, and a
/// lock wait here would outlast it).
fn estimated_blocks(client: &SpiClient<'_>, assignments: &registry::AssignmentTable) -> u32 {
    crate::query::one::<i64>(
        client,
        "SELECT pg_catalog.max(c.relpages)::pg_catalog.int8 FROM pg_catalog.pg_class AS c
          WHERE c.oid OPERATOR(pg_catalog.=) $1
             OR c.oid IN (SELECT i.inhrelid FROM pg_catalog.pg_inherits AS i WHERE i.inhparent OPERATOR(pg_catalog.=) $1)",
        &[assignments.relid.into()],
    )
    .unwrap_or(0)
    .clamp(0, u32::MAX as i64) as u32
}

/// SQL over the assignments table's columns: the row is in the page range.
fn range_sql((first, end): (u32, Option<u32>)) -> String {
    let from = format!("ctid OPERATOR(pg_catalog.>=) '({first},0)'::pg_catalog.tid");
    match end {
        Some(end) => format!("{from} AND ctid OPERATOR(pg_catalog.<) '({end},0)'::pg_catalog.tid"),
        None => from,
    }
}

/// Runs the parts of `split` in helper workers and waits for them; returns
/// what they did, read from `followup._run_parts` (and removes those rows).
pub fn run(
    client: &mut SpiClient<'_>,
    split: &Split,
    run_id: i64,
    as_of: Date,
    max_runtime_minutes: i32,
    plan: EnqueuePlan,
) -> Finished {
    let owner = super::worker::extension_owner();
    let mut helpers: Vec<Helper> = Vec::new();
    for (part, range) in split.ranges.iter().enumerate() {
        let args = PartArgs {
            database: unsafe { pg_sys::MyDatabaseId },
            user: owner,
            run_id,
            part: part as i32,
            range: *range,
            as_of,
            plan,
            max_runtime_minutes,
            snapshot: split.snapshot.clone(),
            timezone: crate::gucs::timezone(),
        };
        match args.encode().and_then(|extra| launch(run_id, part, &extra)) {
            Some(worker) => helpers.push(Helper(Some(worker))),
            None => break,
        }
    }
    if helpers.len() < split.ranges.len() {
        // a range without a helper: the run does the whole table itself
        for helper in &mut helpers {
            helper.stop();
        }
    }
    for helper in &mut helpers {
        helper.wait();
    }
    // Removes this run's rows, and any left by an earlier run whose worker
    // died. A statement that writes, so that it reads with a snapshot taken
    // now, after the helpers committed (a read-only SPI statement would
    // reuse the transaction's first snapshot).
    let rows: Vec<Tallies> = client
        .update(
            "DELETE FROM followup._run_parts WHERE run_id <= $1 RETURNING run_id = $1, scanned, due, enqueued",
            None,
            &[run_id.into()],
        )
        .unwrap_or_else(|e| internal(e.to_string()))
        .filter(|row| row.get::<bool>(1).ok().flatten() == Some(true))
        .map(|row| {
            let get = |i: usize| row.get::<i64>(i).ok().flatten().unwrap_or(0);
            Tallies { scanned: get(2), due: get(3), enqueued: get(4) }
        })
        .collect();
    let committed = rows.iter().fold(Tallies::default(), |sum, t| sum + *t);
    let complete = (rows.len() == split.ranges.len()).then_some(committed);
    Finished { complete, committed }
}

/// A helper worker, stopped if the run ends without waiting for it (an
/// error or a cancel unwinds through here).
struct Helper(Option<DynamicBackgroundWorker>);

impl Helper {
    fn wait(&mut self) {
        if let Some(worker) = self.0.take() {
            let _ = worker.wait_for_shutdown();
        }
    }

    fn stop(&mut self) {
        if let Some(worker) = self.0.take() {
            let _ = worker.terminate().wait_for_shutdown();
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        if let Some(worker) = self.0.take() {
            // no waiting while unwinding: the signal is enough
            let _ = worker.terminate();
        }
    }
}

fn launch(run_id: i64, part: usize, extra: &str) -> Option<DynamicBackgroundWorker> {
    let worker = bgw::builder(
        &format!("pg_followup run {run_id} part {}", part + 1),
        "pg_followup run part",
        "followup_run_part_main",
        None,
    )
    .set_extra(extra)
    .set_notify_pid(unsafe { pg_sys::MyProcPid })
    .load_dynamic()
    .ok()?;
    worker.wait_for_startup().ok().map(|_| worker)
}

/// What a helper is told, in `bgw_extra` (at most 127 bytes; a split is
/// left out when they do not fit): "database user run part first end
/// as-of flags max-runtime snapshot timezone", `end` - for the rest of the
/// table, flags the EnqueuePlan as three 0/1 digits.
struct PartArgs {
    database: pg_sys::Oid,
    user: pg_sys::Oid,
    run_id: i64,
    part: i32,
    range: (u32, Option<u32>),
    as_of: Date,
    plan: EnqueuePlan,
    max_runtime_minutes: i32,
    snapshot: String,
    timezone: String,
}

impl PartArgs {
    fn encode(&self) -> Option<String> {
        let flag = |b: bool| if b { '1' } else { '0' };
        let extra = format!(
            "{} {} {} {} {} {} {} {}{}{} {} {} {}",
            self.database.to_u32(),
            self.user.to_u32(),
            self.run_id,
            self.part,
            self.range.0,
            self.range.1.map_or("-".to_string(), |end| end.to_string()),
            self.as_of.into_inner(),
            flag(self.plan.escalations),
            flag(self.plan.skip_enqueued),
            flag(self.plan.analyzed),
            self.max_runtime_minutes,
            self.snapshot,
            self.timezone
        );
        (extra.len() < pg_sys::BGW_EXTRALEN as usize).then_some(extra)
    }

    fn decode(extra: &str) -> Option<PartArgs> {
        let parts: Vec<&str> = extra.split_whitespace().collect();
        let [database, user, run_id, part, first, end, as_of, flags, max_runtime, snapshot, timezone] = parts[..]
        else {
            return None;
        };
        let flags: Vec<bool> = flags.chars().map(|c| c == '1').collect();
        let [escalations, skip_enqueued, analyzed] = flags[..] else { return None };
        Some(PartArgs {
            database: pg_sys::Oid::from(database.parse::<u32>().ok()?),
            user: pg_sys::Oid::from(user.parse::<u32>().ok()?),
            run_id: run_id.parse().ok()?,
            part: part.parse().ok()?,
            range: (first.parse().ok()?, if end == "-" { None } else { Some(end.parse().ok()?) }),
            as_of: Date::saturating_from_raw(as_of.parse().ok()?),
            plan: EnqueuePlan { escalations, skip_enqueued, analyzed },
            max_runtime_minutes: max_runtime.parse().ok()?,
            snapshot: snapshot.to_string(),
            timezone: timezone.to_string(),
        })
    }
}

/// Runs `body` in a transaction of its own that is REPEATABLE READ with the
/// snapshot `id` exported by the run: what `SET TRANSACTION ISOLATION LEVEL
/// REPEATABLE READ; SET TRANSACTION SNAPSHOT` do, before the transaction's
/// first snapshot is taken (through SPI they would come after the statement's
/// own; BackgroundWorker::transaction takes one at once).
fn in_imported_snapshot(id: &str, body: impl FnOnce()) {
    let id = std::ffi::CString::new(id).unwrap_or_else(|_| internal("bad snapshot id"));
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::XactIsoLevel = pg_sys::XACT_REPEATABLE_READ as i32;
        pg_sys::ImportSnapshot(id.as_ptr());
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
    body();
    unsafe {
        pg_sys::PopActiveSnapshot();
        pg_sys::CommitTransactionCommand();
    }
}

/// Entry point of a helper worker: one part of a run, in one transaction.
/// An error rolls the part back (in a subtransaction, so that it is logged
/// without the app's values); the run then sees no `_run_parts` row for it.
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn followup_run_part_main(_arg: pg_sys::Datum) {
    bgw::install_signal_handlers(false);
    let extra = BackgroundWorker::get_extra().to_string();
    let Some(args) = PartArgs::decode(&extra) else {
        log!("pg_followup: bad run part arguments {extra:?}");
        return;
    };
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(args.database), Some(args.user));
    bgw::pin_search_path();
    in_imported_snapshot(&args.snapshot, || {
        super::worker::pin_settings(&args.timezone);
        let outcome = in_subtransaction(|| {
            super::with_time_limit(args.max_runtime_minutes, || {
                Spi::connect_mut(|client| {
                    let assignments = registry::require_assignment_table(client);
                    let only = range_sql(args.range);
                    let tallies = enqueue(client, &assignments, args.plan, &only, &[], args.run_id, args.as_of);
                    execute(
                        client,
                        "INSERT INTO followup._run_parts (run_id, part, scanned, due, enqueued)
                         VALUES ($1, $2, $3, $4, $5)",
                        &[
                            args.run_id.into(),
                            args.part.into(),
                            tallies.scanned.into(),
                            tallies.due.into(),
                            tallies.enqueued.into(),
                        ],
                    );
                })
            })
        });
        if let Err(failure) = outcome {
            // the SQLSTATE only: the message may quote a value of the app's
            // row (unreadable.rs finds and counts it without its values)
            log!(
                "pg_followup: part {} of run {} stopped with SQLSTATE {}; the run does the whole table itself",
                args.part + 1,
                args.run_id,
                failure.sqlstate()
            );
        }
    });
}
