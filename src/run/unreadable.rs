//! Assignments a statement cannot evaluate, and how the run and preview go
//! on without them.
//!
//! `active_when` is the app's own expression and the assignments table the
//! app's own data: one row can make it fail (a text that does not cast, a
//! division by zero). One such row must not stop everybody's reminders. The
//! statement is tried as it is; only when it fails with a data exception
//! (SQLSTATE class 22) are the rows it cannot evaluate looked for, by halving
//! ranges of the table's row positions (ctid) and evaluating each half in a
//! subtransaction, down to single rows; then the statement runs again
//! without them (due.rs puts the exclusion before active_when, so it is
//! never evaluated on them). The rows are counted in the run log
//! (`assignments_skipped`), never shown: their values may be anyone's.
//!
//! The search costs about two scans of the table for each unreadable row,
//! and only when there is one.

use crate::errors::{in_subtransaction, Failure};
use crate::registry::{quote_literal, AssignmentTable};
use crate::security;
use pgrx::datum::Date;
use pgrx::spi::SpiClient;

/// How often the statement is tried again without the rows found so far
/// (rows can become unreadable while the search runs).
const ATTEMPTS: usize = 3;

/// Runs `attempt(exclusion)` (the exclusion is SQL over the assignments
/// table's columns, true for the rows to consider), first with none, then
/// without the rows the probe `probe(only)` finds unreadable. Returns what
/// the attempt returned and how many rows were left out. Failures other than
/// data exceptions, and a data exception that persists, are returned.
///
/// `probe(only)` is SQL that evaluates every row `only` is true for, with
/// `$1` the as-of date (the preview's query over a range of rows).
pub fn skipping_unreadable<R>(
    client: &mut SpiClient<'_>,
    assignments: &AssignmentTable,
    exclusion_param: &str,
    mut attempt: impl FnMut(&mut SpiClient<'_>, &str, &[String]) -> R,
    probe: impl Fn(&str) -> String,
    as_of: Date,
) -> Result<(R, usize), Failure> {
    let mut unreadable: Vec<String> = Vec::new();
    let mut last_failure = None;
    for _ in 0..ATTEMPTS {
        let only = if unreadable.is_empty() { "true".to_string() } else { exclusion_sql(assignments, exclusion_param) };
        let outcome = in_subtransaction(std::panic::AssertUnwindSafe(|| attempt(client, &only, &unreadable)));
        match outcome {
            Ok(result) => return Ok((result, unreadable.len())),
            Err(failure) if failure.is_data_exception() => {
                let found = find(client, assignments, &Probe { sql: &probe, as_of })?;
                let before = unreadable.len();
                for id in found {
                    if !unreadable.contains(&id) {
                        unreadable.push(id);
                    }
                }
                if unreadable.len() == before {
                    // nothing new to leave out: the failure is not a row's
                    return Err(failure);
                }
                last_failure = Some(failure);
            }
            Err(failure) => return Err(failure),
        }
    }
    Err(last_failure.expect("an attempt failed"))
}

/// SQL over the assignments table's columns: the row is none of the ids in
/// the text array `param`.
fn exclusion_sql(assignments: &AssignmentTable, param: &str) -> String {
    format!(
        "NOT (({id})::pg_catalog.text OPERATOR(pg_catalog.=) ANY ({param}::pg_catalog.text[]))",
        id = assignments.id_column
    )
}

/// The statement that evaluates a range of rows, and its as-of date.
struct Probe<'a, F: Fn(&str) -> String> {
    sql: &'a F,
    as_of: Date,
}

/// A row position, (block, item).
type Tid = (u32, u32);

/// Items per block are numbered from 1; no heap page holds more than this.
const ITEMS_PER_BLOCK: u32 = 2048;

fn tid_sql((block, item): Tid) -> String {
    format!("'({block},{item})'::pg_catalog.tid")
}

/// The ids (as text) of the rows on which `probe` fails with a data
/// exception. `probe(only)` is a statement evaluating every row `only` is
/// true for.
fn find<F: Fn(&str) -> String>(
    client: &mut SpiClient<'_>,
    assignments: &AssignmentTable,
    probe: &Probe<'_, F>,
) -> Result<Vec<String>, Failure> {
    let blocks = table_blocks(client, assignments);
    let mut found = Vec::new();
    // ranges [start, end) of row positions still to look at, and whether
    // they are known to hold an unreadable row (the whole table is)
    let mut ranges: Vec<(Tid, Tid, bool)> = vec![((0, 0), (blocks + 1, 0), true)];
    while let Some((start, end, known_unreadable)) = ranges.pop() {
        let only = format!("ctid >= {} AND ctid < {}", tid_sql(start), tid_sql(end));
        if !known_unreadable && evaluates(client, assignments, probe, &only)? {
            continue;
        }
        if end.0 > start.0 + 1 {
            // several blocks: halve them
            let middle = start.0 + (end.0 - start.0) / 2;
            ranges.push((start, (middle, 0), false));
            ranges.push(((middle, 0), end, false));
        } else {
            // one block: halve its items
            let (first, last) = (start.1, if end.0 > start.0 { ITEMS_PER_BLOCK } else { end.1 });
            if last - first > 1 {
                let middle = first + (last - first) / 2;
                ranges.push((start, (start.0, middle), false));
                ranges.push(((start.0, middle), (start.0, last), false));
            } else {
                found.extend(unreadable_at(client, assignments, probe, start)?);
            }
        }
    }
    Ok(found)
}

/// The ids of the rows at one position (one per partition) that `probe`
/// cannot evaluate.
fn unreadable_at<F: Fn(&str) -> String>(
    client: &mut SpiClient<'_>,
    assignments: &AssignmentTable,
    probe: &Probe<'_, F>,
    tid: Tid,
) -> Result<Vec<String>, Failure> {
    let sql = format!(
        "SELECT ({id})::pg_catalog.text FROM {table} WHERE ctid = {tid}",
        id = assignments.id_column,
        table = assignments.table,
        tid = tid_sql(tid)
    );
    let ids: Vec<String> = security::as_owner_statement(assignments.owner, &sql, || {
        client
            .select(sql.as_str(), None, &[])
            .map(|rows| rows.filter_map(|r| r.get::<String>(1).ok().flatten()).collect())
            .unwrap_or_default()
    });
    let mut unreadable = Vec::new();
    for id in ids {
        let only = format!(
            "ctid = {tid} AND ({id_column})::pg_catalog.text OPERATOR(pg_catalog.=) {literal}",
            tid = tid_sql(tid),
            id_column = assignments.id_column,
            literal = quote_literal(&id)
        );
        if !evaluates(client, assignments, probe, &only)? {
            unreadable.push(id);
        }
    }
    Ok(unreadable)
}

/// Does `probe(only)` run through (true), or fail with a data exception
/// (false)? Any other failure is returned.
fn evaluates<F: Fn(&str) -> String>(
    client: &mut SpiClient<'_>,
    assignments: &AssignmentTable,
    probe: &Probe<'_, F>,
    only: &str,
) -> Result<bool, Failure> {
    let sql = (probe.sql)(only);
    let outcome = in_subtransaction(std::panic::AssertUnwindSafe(|| {
        security::as_owner_statement(assignments.owner, &sql, || {
            client
                .select(sql.as_str(), None, &[probe.as_of.into()])
                .map(|_| ())
                .unwrap_or_else(|e| crate::errors::internal(e.to_string()))
        })
    }));
    match outcome {
        Ok(()) => Ok(true),
        Err(failure) if failure.is_data_exception() => Ok(false),
        Err(failure) => Err(failure),
    }
}

/// The largest number of blocks of the table or of any of its partitions
/// (a ctid range applies to each partition alike).
fn table_blocks(client: &SpiClient<'_>, assignments: &AssignmentTable) -> u32 {
    crate::query::one::<i64>(
        client,
        "SELECT pg_catalog.max(pg_catalog.pg_relation_size(t.relid)
                               / pg_catalog.current_setting('block_size')::pg_catalog.int8)
           FROM (SELECT $1::pg_catalog.regclass AS relid
                 UNION ALL
                 SELECT p.relid FROM pg_catalog.pg_partition_tree($1) AS p WHERE p.isleaf) AS t",
        &[assignments.relid.into()],
    )
    .unwrap_or(0)
    .clamp(0, u32::MAX as i64 - 2) as u32
}
