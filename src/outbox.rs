//! The consumer protocol's claim, with the still-due check (README, "Only
//! still-due reminders are delivered").
//!
//! A claim picks the oldest visible messages (`FOR UPDATE SKIP LOCKED`) and,
//! in the same statement, joins each to its assignment once: a message whose
//! assignment's cycle start moved on (contact was logged on any path),
//! that no longer matches `active_when` or is gone, that is snoozed, or whose
//! organization's policy is disabled is withdrawn (`cancelled`, with its
//! reason) instead of handed out. The check uses the run's own definitions
//! (run/due.rs: cycle start, active_when, the effective policy, snoozes), so
//! a claim never disagrees with what a run would enqueue.
//!
//! The statement is generated from the registration and kept as a prepared
//! plan per backend (plan_cache.rs). The SQL wrapper `followup.claim`
//! (sql/outbox.sql) validates the arguments and returns the claimed rows.

use crate::local_time::today;
use crate::plan_cache;
use crate::registry::{self, AssignmentTable};
use crate::run::due::{active_when_sql, cycle_start_sql, open_snoozes_sql, policy_join_sql, policy_value};
use pgrx::datum::{Interval, Uuid};
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient};
use pgrx::PgOid;
use std::cell::RefCell;

/// SQL: why the picked message (a row `picked` with assignment_id and
/// cycle_start) is no longer due, or NULL while it is; with the joins it
/// needs. `$6` is today (for snoozes).
fn withdraw_reason_sql(assignments: &AssignmentTable) -> (String, String) {
    let joins = format!(
        "LEFT JOIN LATERAL (SELECT true AS found, {cycle_start} AS cycle_start,
                                  coalesce(({active_when}), false) AS active,
                                  ({organization})::pg_catalog.text AS organization
                             FROM {table}
                            WHERE {is_the_assignment}
                            LIMIT 1) AS a ON true
         {policy}",
        cycle_start = cycle_start_sql(assignments),
        active_when = active_when_sql(assignments),
        organization = assignments.organization_column.as_deref().unwrap_or("NULL"),
        table = assignments.table,
        is_the_assignment = assignments.id_equals_sql("picked.assignment_id"),
        policy = policy_join_sql("a.organization"),
    );
    // the outbox and the snoozes both hold the id as text
    let snoozed =
        format!("picked.assignment_id IN (SELECT sz.assignment_id {})", open_snoozes_sql("$6::pg_catalog.date"));
    let reason = format!(
        "CASE WHEN a.found IS NULL THEN 'assignment_inactive'
              WHEN a.cycle_start IS DISTINCT FROM picked.cycle_start THEN 'contact_logged'
              WHEN NOT a.active THEN 'assignment_inactive'
              WHEN {snoozed} THEN 'snoozed'
              WHEN NOT {enabled} THEN 'policy_disabled'
         END",
        enabled = policy_value("enabled"),
    );
    (joins, reason)
}

/// One claim pass: `$1` consumer, `$2` how many, `$3` lease, `$4`
/// followup.max_attempts, `$5` the lease id, `$6` today. Returns the ids
/// handed out, how many were withdrawn and how many were picked.
///
/// A lease that expired as often as attempts allow belongs to a message that
/// keeps killing its consumer: it goes dead, not out again. Without a
/// registered assignments table there is nothing to check against, and every
/// picked message is handed out.
fn claim_sql(assignments: Option<&AssignmentTable>) -> String {
    let (joins, reason) = match assignments {
        Some(assignments) => withdraw_reason_sql(assignments),
        None => (String::new(), "NULL::pg_catalog.text".to_string()),
    };
    format!(
        "WITH picked AS (
             SELECT o.message_id, o.assignment_id, o.cycle_start,
                    o.status = 'claimed' AND o.attempts >= $4 AS exhausted
               FROM followup.outbox AS o
              WHERE o.delivered_at IS NULL AND o.cancelled_at IS NULL
                AND o.status IN ('pending', 'claimed')
                AND o.visible_at <= pg_catalog.clock_timestamp()
              ORDER BY o.message_id
              LIMIT $2
                FOR UPDATE SKIP LOCKED),
         judged AS (
             SELECT picked.message_id, picked.exhausted, {reason} AS withdraw
               FROM picked {joins}),
         withdrawn AS (
             UPDATE followup.outbox AS o
                SET status = 'cancelled', cancelled_at = pg_catalog.clock_timestamp(), cancel_reason = j.withdraw,
                    lease_id = NULL, claimed_by = NULL
               FROM judged AS j
              WHERE o.message_id = j.message_id AND j.withdraw IS NOT NULL
             RETURNING o.message_id),
         handed_out AS (
             UPDATE followup.outbox AS o
                SET status = CASE WHEN j.exhausted THEN 'dead'::followup.message_status ELSE 'claimed' END,
                    attempts = CASE WHEN j.exhausted THEN o.attempts ELSE o.attempts + 1 END,
                    last_error = CASE WHEN j.exhausted
                                      THEN pg_catalog.format('lease expired %s times without ack or fail', o.attempts)
                                      ELSE o.last_error END,
                    lease_id = CASE WHEN j.exhausted THEN NULL ELSE $5 END,
                    claimed_by = CASE WHEN j.exhausted THEN NULL ELSE $1 END,
                    visible_at = pg_catalog.clock_timestamp() + $3
               FROM judged AS j
              WHERE o.message_id = j.message_id AND j.withdraw IS NULL
             RETURNING o.message_id, o.status),
         recorded AS (
             INSERT INTO followup.outbox_leases AS l (lease_id, consumer, message_ids, expires_at)
             SELECT $5, $1, pg_catalog.array_agg(h.message_id), pg_catalog.clock_timestamp() + $3
               FROM handed_out AS h WHERE h.status = 'claimed'
             HAVING pg_catalog.count(*) > 0
             ON CONFLICT (lease_id) DO UPDATE SET message_ids = l.message_ids || EXCLUDED.message_ids)
         SELECT (SELECT pg_catalog.array_agg(h.message_id ORDER BY h.message_id)
                   FROM handed_out AS h WHERE h.status = 'claimed'),
                (SELECT pg_catalog.count(*) FROM withdrawn),
                (SELECT pg_catalog.count(*) FROM picked)"
    )
}

thread_local! {
    /// The claim statement and the plan_cache generation it was built at.
    static CLAIM: RefCell<Option<(u64, OwnedPreparedStatement)>> = const { RefCell::new(None) };
}

/// Runs `f` with the kept claim statement, preparing it first when the
/// registrations changed since.
fn with_claim_statement<R>(
    client: &mut SpiClient<'_>,
    f: impl FnOnce(&mut SpiClient<'_>, &OwnedPreparedStatement) -> R,
) -> R {
    let generation = plan_cache::generation();
    let fresh = CLAIM.with(|c| matches!(&*c.borrow(), Some((built, _)) if *built == generation));
    if !fresh {
        let assignments = registry::load_assignment_table(client);
        let types = [
            PgOid::from(pg_sys::TEXTOID),
            PgOid::from(pg_sys::INT4OID),
            PgOid::from(pg_sys::INTERVALOID),
            PgOid::from(pg_sys::INT4OID),
            PgOid::from(pg_sys::UUIDOID),
            PgOid::from(pg_sys::DATEOID),
        ];
        let statement = client
            .prepare_mut(claim_sql(assignments.as_ref()).as_str(), &types)
            .unwrap_or_else(|e| crate::errors::internal(e.to_string()))
            .keep();
        let mut watched = plan_cache::registration_tables();
        watched.extend(assignments.map(|a| a.relid));
        plan_cache::watch(watched);
        CLAIM.with(|c| *c.borrow_mut() = Some((generation, statement)));
    }
    CLAIM.with(|c| {
        let cached = c.borrow();
        let (_, statement) = cached.as_ref().expect("prepared above");
        let _executing = plan_cache::Executing::enter();
        f(client, statement)
    })
}

/// Claims up to `max_messages` still-due messages for `consumer` under
/// `lease_id`; returns their ids. Messages found no longer due are withdrawn
/// and do not count: the claim picks again until it has `max_messages` or no
/// more visible messages are left.
#[pg_extern(sql = false)]
fn _claim(consumer: &str, max_messages: i32, lease: Interval, lease_id: Uuid) -> Vec<i64> {
    let attempts_allowed = crate::gucs::MAX_ATTEMPTS.get();
    let today = today();
    let mut claimed: Vec<i64> = Vec::new();
    Spi::connect_mut(|client| loop {
        let wanted = max_messages - claimed.len() as i32;
        let (ids, withdrawn, picked) = with_claim_statement(client, |client, statement| {
            let row = client
                .update(
                    statement,
                    None,
                    &[
                        consumer.into(),
                        wanted.into(),
                        lease.into(),
                        attempts_allowed.into(),
                        lease_id.into(),
                        today.into(),
                    ],
                )
                .unwrap_or_else(|e| crate::errors::internal(e.to_string()))
                .first();
            (
                row.get::<Vec<i64>>(1).ok().flatten().unwrap_or_default(),
                row.get::<i64>(2).ok().flatten().unwrap_or(0),
                row.get::<i64>(3).ok().flatten().unwrap_or(0),
            )
        });
        claimed.extend(ids);
        // Only withdrawals can leave a pass short of what it picked; a pass
        // that picked fewer than it wanted found no more visible messages.
        if withdrawn == 0 || picked < wanted as i64 || claimed.len() as i32 >= max_messages {
            return claimed;
        }
    })
}
