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
//! The statement also keeps each message inside its organization's send
//! window (README, "Send windows and digests"): one whose window is closed is
//! not handed out but made visible at the window's next opening.
//!
//! The statement is generated from the registration and kept as a prepared
//! plan per backend (plan_cache.rs), planned and run with JIT off (a claim's
//! or a digest's statement plans above `jit_above_cost` for large batches over
//! a large outbox; planner.rs). The SQL wrapper `followup.claim`
//! (sql/outbox.sql) validates the arguments and returns the claimed rows.

use crate::local_time::today;
use crate::plan_cache;
use crate::planner::without_jit;
use crate::registry::{self, AssignmentTable};
use crate::run::due::{active_when_sql, cycle_start_sql, open_snoozes_sql, policy_join_sql, policy_value, window_of};
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
/// handed out, how many were withdrawn or deferred to their send window's
/// next opening, and how many were picked.
///
/// A lease that expired as often as attempts allow belongs to a message that
/// keeps killing its consumer: it goes dead, not out again. Without a
/// registered assignments table there is nothing to check against, and every
/// picked message is handed out.
///
/// `kind` says what is picked: the oldest visible messages (a claim), or all
/// visible messages of the digest's recipients (see `pick_sql`).
fn claim_sql(assignments: Option<&AssignmentTable>, kind: Kind) -> String {
    let (joins, reason) = match assignments {
        Some(assignments) => withdraw_reason_sql(assignments),
        None => (String::new(), "NULL::pg_catalog.text".to_string()),
    };
    format!(
        "WITH picked AS (
             SELECT o.message_id, o.assignment_id, o.cycle_start, o.organization,
                    o.status = 'claimed' AND o.attempts >= $4 AS exhausted
               {pick}),
         judged AS (
             SELECT picked.message_id, picked.exhausted, {reason} AS withdraw, {opens_at} AS opens_at
               FROM picked {joins} {window_joins}),
         withdrawn AS (
             UPDATE followup.outbox AS o
                SET status = 'cancelled', cancelled_at = pg_catalog.clock_timestamp(), cancel_reason = j.withdraw,
                    lease_id = NULL, claimed_by = NULL
               FROM judged AS j
              WHERE o.message_id = j.message_id AND j.withdraw IS NOT NULL
             RETURNING o.message_id),
         deferred AS (
             UPDATE followup.outbox AS o
                SET visible_at = j.opens_at
               FROM judged AS j
              WHERE o.message_id = j.message_id AND j.withdraw IS NULL AND j.opens_at > {now}
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
              WHERE o.message_id = j.message_id AND j.withdraw IS NULL AND j.opens_at <= {now}
             RETURNING o.message_id, o.status),
         recorded AS (
             INSERT INTO followup.outbox_leases AS l (lease_id, consumer, message_ids, expires_at)
             SELECT $5, $1, pg_catalog.array_agg(h.message_id), pg_catalog.clock_timestamp() + $3
               FROM handed_out AS h WHERE h.status = 'claimed'
             HAVING pg_catalog.count(*) > 0
             ON CONFLICT (lease_id) DO UPDATE SET message_ids = l.message_ids || EXCLUDED.message_ids)
         SELECT (SELECT pg_catalog.array_agg(h.message_id ORDER BY h.message_id)
                   FROM handed_out AS h WHERE h.status = 'claimed'),
                (SELECT pg_catalog.count(*) FROM withdrawn) + (SELECT pg_catalog.count(*) FROM deferred),
                (SELECT pg_catalog.count(*) FROM picked)",
        pick = pick_sql(kind),
        now = WINDOW_NOW,
        window_joins = WINDOW_JOINS,
        opens_at = opens_at_sql(),
    )
}

/// The instant a claim judges send windows at (stable within the statement,
/// so the window functions inline).
const WINDOW_NOW: &str = "pg_catalog.statement_timestamp()";

/// The send window of a picked message: its organization's policy (`wown`),
/// else the default row (`wdflt`). By the message's organization at enqueue.
const WINDOW_JOINS: &str = "CROSS JOIN (SELECT * FROM followup.policies WHERE organization = '*') AS wdflt
         LEFT JOIN followup.policies AS wown
                ON wown.organization = picked.organization AND wown.organization <> '*'";

/// SQL: when the picked message's send window next opens (now, when it is
/// open or there is none).
fn opens_at_sql() -> String {
    let opening = |p: &str| format!("followup._next_opening({WINDOW_NOW}, {})", window_of(p));
    format!("CASE WHEN wown.organization IS NULL THEN {} ELSE {} END", opening("wdflt"), opening("wown"))
}

/// The messages a claim may hand out: visible, neither delivered nor withdrawn
/// (the claim index's predicate, sql/schema.sql).
const CLAIMABLE: &str = "o.delivered_at IS NULL AND o.cancelled_at IS NULL
                AND o.status IN ('pending', 'claimed')
                AND o.visible_at <= pg_catalog.clock_timestamp()";

/// SQL, `FROM … LIMIT $2` with the outbox row as `o`: what a pass picks and
/// locks (`FOR UPDATE SKIP LOCKED`), oldest first.
///
/// A claim walks the claim index (`outbox_undelivered`) from its oldest entry.
/// A digest takes the messages of the recipients `$7` (roles) / `$8` (ids), as
/// their advisory locks were taken, each through the recipient index
/// (`outbox_undelivered_by_recipient`): the lateral subquery with its own
/// locking clause is never flattened, so the plan stays a loop over the few
/// recipients, however the generic plan estimates them (walking the claim
/// index and filtering took a second per digest over a million messages).
fn pick_sql(kind: Kind) -> String {
    match kind {
        Kind::Claim => format!(
            "FROM followup.outbox AS o
              WHERE {CLAIMABLE}
              ORDER BY o.message_id
              LIMIT $2
                FOR UPDATE SKIP LOCKED"
        ),
        Kind::Digest => format!(
            "FROM ROWS FROM (pg_catalog.unnest($7::pg_catalog.text[]), pg_catalog.unnest($8::pg_catalog.text[]))
                    AS r(role, id)
              CROSS JOIN LATERAL (
                    SELECT o.message_id, o.assignment_id, o.cycle_start, o.organization, o.status, o.attempts
                      FROM followup.outbox AS o
                     WHERE {CLAIMABLE}
                       AND coalesce(o.recipient_id, '') = r.id
                       AND o.recipient_role = r.role::followup.recipient_role
                       FOR UPDATE SKIP LOCKED) AS o
              ORDER BY o.message_id
              LIMIT $2"
        ),
    }
}

/// A claim statement kept per backend.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Claim,
    Digest,
}

thread_local! {
    /// The kept statements and the plan_cache generation they were built at.
    static STATEMENTS: RefCell<Vec<(Kind, u64, OwnedPreparedStatement)>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with the kept statement of `kind`, preparing it first when the
/// registrations changed since.
fn with_statement<R>(
    client: &mut SpiClient<'_>,
    kind: Kind,
    f: impl FnOnce(&mut SpiClient<'_>, &OwnedPreparedStatement) -> R,
) -> R {
    let generation = plan_cache::generation();
    STATEMENTS.with(|s| s.borrow_mut().retain(|(_, built, _)| *built == generation));
    let fresh = STATEMENTS.with(|s| s.borrow().iter().any(|(k, _, _)| *k == kind));
    if !fresh {
        let assignments = registry::load_assignment_table(client);
        let mut types = vec![
            PgOid::from(pg_sys::TEXTOID),
            PgOid::from(pg_sys::INT4OID),
            PgOid::from(pg_sys::INTERVALOID),
            PgOid::from(pg_sys::INT4OID),
            PgOid::from(pg_sys::UUIDOID),
            PgOid::from(pg_sys::DATEOID),
        ];
        if kind == Kind::Digest {
            types.extend([PgOid::from(pg_sys::TEXTARRAYOID), PgOid::from(pg_sys::TEXTARRAYOID)]);
        }
        let statement = client
            .prepare_mut(claim_sql(assignments.as_ref(), kind).as_str(), &types)
            .unwrap_or_else(|e| crate::errors::internal(e.to_string()))
            .keep();
        let mut watched = plan_cache::registration_tables();
        watched.extend(assignments.map(|a| a.relid));
        plan_cache::watch(watched);
        STATEMENTS.with(|s| s.borrow_mut().push((kind, generation, statement)));
    }
    STATEMENTS.with(|s| {
        let statements = s.borrow();
        let (_, _, statement) = statements.iter().find(|(k, _, _)| *k == kind).expect("prepared above");
        let _executing = plan_cache::Executing::enter();
        f(client, statement)
    })
}

/// The arguments of one claim pass.
struct Pass<'a> {
    consumer: &'a str,
    wanted: i32,
    lease: Interval,
    lease_id: Uuid,
    today: pgrx::datum::Date,
    /// The digest's locked recipients (roles, ids).
    recipients: Option<(Vec<String>, Vec<String>)>,
}

/// Runs one pass: (ids handed out, messages withdrawn or deferred, messages picked).
fn claim_pass(client: &mut SpiClient<'_>, pass: &Pass<'_>) -> (Vec<i64>, i64, i64) {
    let attempts_allowed = crate::gucs::MAX_ATTEMPTS.get();
    let kind = if pass.recipients.is_some() { Kind::Digest } else { Kind::Claim };
    with_statement(client, kind, |client, statement| {
        let mut args = vec![
            pass.consumer.into(),
            pass.wanted.into(),
            pass.lease.into(),
            attempts_allowed.into(),
            pass.lease_id.into(),
            pass.today.into(),
        ];
        if let Some((roles, ids)) = &pass.recipients {
            args.push(roles.clone().into());
            args.push(ids.clone().into());
        }
        let row =
            client.update(statement, None, &args).unwrap_or_else(|e| crate::errors::internal(e.to_string())).first();
        (
            row.get::<Vec<i64>>(1).ok().flatten().unwrap_or_default(),
            row.get::<i64>(2).ok().flatten().unwrap_or(0),
            row.get::<i64>(3).ok().flatten().unwrap_or(0),
        )
    })
}

/// Claims up to `max_messages` still-due messages for `consumer` under
/// `lease_id`; returns their ids. Messages found no longer due (withdrawn) or
/// outside their send window (deferred) do not count: the claim picks again
/// until it has `max_messages` or no more visible messages are left.
#[pg_extern(sql = false)]
fn _claim(consumer: &str, max_messages: i32, lease: Interval, lease_id: Uuid) -> Vec<i64> {
    let today = today();
    let mut claimed: Vec<i64> = Vec::new();
    without_jit(|| {
        Spi::connect_mut(|client| loop {
            let wanted = max_messages - claimed.len() as i32;
            let pass = Pass { consumer, wanted, lease, lease_id, today, recipients: None };
            let (ids, set_aside, picked) = claim_pass(client, &pass);
            claimed.extend(ids);
            // Only withdrawals and deferrals leave a pass short of what it
            // picked; a pass that picked fewer than it wanted found no more
            // visible messages.
            if set_aside == 0 || picked < wanted as i64 || claimed.len() as i32 >= max_messages {
                return claimed;
            }
        })
    })
}

/// Messages one digest hands out at most (all of a recipient's claimable
/// messages, for up to max_recipients recipients).
const DIGEST_MESSAGES_MAX: i32 = 10_000;

/// Advisory lock class of the digest's recipients
/// (`pg_try_advisory_xact_lock(class, hashtext(recipient))`): two digests at
/// once never split a recipient between them.
const DIGEST_LOCK_CLASS: i32 = 0x666F_6C64; // "fold"

/// The next recipients for a digest, in the order of their oldest claimable
/// message, each locked for this transaction (a recipient another digest
/// holds is skipped); `seen` are the ones already taken or tried.
fn lock_recipients(
    client: &SpiClient<'_>,
    wanted: usize,
    seen: &mut std::collections::HashSet<(String, String)>,
) -> Vec<(String, String)> {
    let mut locked = Vec::new();
    let walk = format!(
        "SELECT o.recipient_role::pg_catalog.text, coalesce(o.recipient_id, '')
               FROM followup.outbox AS o
              WHERE {CLAIMABLE}
              ORDER BY o.message_id"
    );
    let mut cursor = client.open_cursor(&walk, &[]);
    // Fetch about as many rows as recipients are wanted, then more: a digest
    // of one recipient reads a handful of rows, not a page of 500.
    let mut batch = (wanted as i64).clamp(8, 500);
    'walk: loop {
        let rows = cursor.fetch(batch).unwrap_or_else(|e| crate::errors::internal(e.to_string()));
        batch = (batch * 4).min(500);
        if rows.is_empty() {
            break;
        }
        for row in rows {
            let recipient: (String, String) = (
                row.get::<String>(1).ok().flatten().unwrap_or_default(),
                row.get::<String>(2).ok().flatten().unwrap_or_default(),
            );
            if !seen.insert(recipient.clone()) {
                continue;
            }
            let mine = crate::query::one::<bool>(
                client,
                "SELECT pg_catalog.pg_try_advisory_xact_lock($1, pg_catalog.hashtext($2 || '/' || $3))",
                &[DIGEST_LOCK_CLASS.into(), recipient.0.as_str().into(), recipient.1.as_str().into()],
            )
            .unwrap_or(false);
            if mine {
                locked.push(recipient);
                if locked.len() >= wanted {
                    break 'walk;
                }
            }
        }
    }
    locked
}

/// A digest: up to `max_recipients` recipients with all of their claimable,
/// still-due messages, under `lease_id`; returns the message ids.
#[pg_extern(sql = false)]
fn _claim_digest(consumer: &str, max_recipients: i32, lease: Interval, lease_id: Uuid) -> Vec<i64> {
    let today = today();
    let mut claimed: Vec<i64> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut served = 0usize;
    without_jit(|| {
        Spi::connect_mut(|client| {
            while served < max_recipients as usize && (claimed.len() as i32) < DIGEST_MESSAGES_MAX {
                let recipients = lock_recipients(client, max_recipients as usize - served, &mut seen);
                if recipients.is_empty() {
                    break;
                }
                let (roles, ids): (Vec<String>, Vec<String>) = recipients.into_iter().unzip();
                let pass = Pass {
                    consumer,
                    wanted: DIGEST_MESSAGES_MAX - claimed.len() as i32,
                    lease,
                    lease_id,
                    today,
                    recipients: Some((roles, ids)),
                };
                let (handed_out, _, _) = claim_pass(client, &pass);
                served += count_recipients(client, &handed_out);
                claimed.extend(handed_out);
            }
        })
    });
    claimed
}

/// How many recipients these messages have.
fn count_recipients(client: &SpiClient<'_>, message_ids: &[i64]) -> usize {
    if message_ids.is_empty() {
        return 0;
    }
    crate::query::one::<i64>(
        client,
        "SELECT pg_catalog.count(DISTINCT (o.recipient_role, o.recipient_id)) FROM followup.outbox AS o
          WHERE o.message_id = ANY ($1)",
        &[message_ids.to_vec().into()],
    )
    .unwrap_or(0) as usize
}
