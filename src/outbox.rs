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
//! It also withdraws a message superseded by a newer sequence of the same
//! assignment, cycle and kind (`superseded`), and keeps each message inside
//! its calendar (README, "Send windows, calendars and digests"): one whose
//! window is closed, on a day not in `send_days` or a quiet day, or whose
//! recipient is away, is not handed out but made visible at the first
//! opening it may go out at (rule/calendar.rs).
//!
//! The statement is generated from the registration and kept as a prepared
//! plan per backend (plan_cache.rs), planned and run with JIT off (a claim's
//! or a digest's statement plans above `jit_above_cost` for large batches over
//! a large outbox; planner.rs). The SQL wrapper `followup.claim`
//! (sql/outbox.sql) validates the arguments and returns the claimed rows.

use crate::errors::in_subtransaction;
use crate::local_time::today;
use crate::plan_cache;
use crate::planner::without_jit;
use crate::registry::{self, AssignmentTable};
use crate::rule::calendar::{away_until_sql, calendar_sql, earliest_sql, key_sql, local_day_sql, superseded_sql};
use crate::rule::cycle::{active_when_sql, cycle_start_sql};
use crate::rule::policy::Policy;
use crate::rule::snoozes::open_snoozes_sql;
use crate::security;
use pgrx::datum::{Interval, Uuid};
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient};
use pgrx::PgOid;
use std::cell::RefCell;

/// SQL: why the picked message (a row `picked` with assignment_id and
/// cycle_start) is no longer due, or NULL while it is; with the joins it
/// needs. `today` is the parameter holding today (for snoozes).
fn withdraw_reason_sql(assignments: &AssignmentTable, today: &str) -> (String, String) {
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
        policy = Policy::EFFECTIVE.join_sql("a.organization"),
    );
    // the outbox and the snoozes both hold the id as text
    let snoozed = format!(
        "picked.assignment_id IN (SELECT sz.assignment_id {})",
        open_snoozes_sql(&format!("{today}::pg_catalog.date"))
    );
    let reason = format!(
        "CASE WHEN a.found IS NULL THEN 'assignment_inactive'
              WHEN a.cycle_start IS DISTINCT FROM picked.cycle_start THEN 'contact_logged'
              WHEN NOT a.active THEN 'assignment_inactive'
              WHEN {snoozed} THEN 'snoozed'
              WHEN NOT {enabled} THEN 'policy_disabled'
         END",
        enabled = Policy::EFFECTIVE.value("enabled"),
    );
    (joins, reason)
}

/// One claim pass: `$1` consumer, `$2` how many, `$3` lease, `$4`
/// followup.max_attempts, `$5` the lease id, `$6` today. Returns the ids
/// handed out, how many were withdrawn or deferred to their send window's
/// next opening, and how many were picked.
///
/// A lease that expired as often as attempts allow belongs to a message that
/// keeps killing its consumer: it goes dead, not out again. A message
/// deferred (its calendar or its recipient's absence holds it) is pending
/// again, whoever's lease had expired on it: `end_away` and the next
/// opening find it like any other pending message. Without a
/// registered assignments table there is nothing to check against, and every
/// picked message is handed out.
///
/// `kind` says what is picked: the oldest visible messages (a claim), or all
/// visible messages of the digest's recipients (see `pick_sql`).
fn claim_sql(assignments: Option<&AssignmentTable>, kind: Kind) -> String {
    let (joins, reason) = match assignments {
        Some(assignments) => withdraw_reason_sql(assignments, "$6"),
        None => (String::new(), "NULL::pg_catalog.text".to_string()),
    };
    let away_until = away_until_sql("picked.recipient_role", "picked.recipient_id", "cal.today");
    format!(
        "WITH picked AS (
             SELECT o.message_id, o.assignment_id, o.cycle_start, o.kind, o.sequence, o.recipient_role,
                    o.recipient_id, o.organization, o.status = 'claimed' AND o.attempts >= $4 AS exhausted
               {pick}),
         calendars AS MATERIALIZED (
             SELECT k.key, cal.*, {today} AS today, {opens_at} AS opens_at
               FROM (SELECT DISTINCT {key} AS key FROM picked) AS k
              CROSS JOIN LATERAL {calendar} AS cal),
         judged AS (
             SELECT picked.message_id, picked.exhausted,
                    coalesce({reason}, CASE WHEN {superseded} THEN 'superseded' END) AS withdraw,
                    CASE WHEN aw.until_day IS NULL THEN cal.opens_at ELSE {held_until} END AS opens_at
               FROM picked {joins}
               JOIN calendars AS cal ON cal.key = {picked_key}
               CROSS JOIN LATERAL (SELECT {away_until} AS until_day) AS aw),
         withdrawn AS (
             UPDATE followup.outbox AS o
                SET status = 'cancelled', cancelled_at = pg_catalog.clock_timestamp(), cancel_reason = j.withdraw,
                    lease_id = NULL, claimed_by = NULL
               FROM judged AS j
              WHERE o.message_id = j.message_id AND j.withdraw IS NOT NULL
             RETURNING o.message_id),
         deferred AS (
             UPDATE followup.outbox AS o
                SET visible_at = j.opens_at, status = 'pending', lease_id = NULL, claimed_by = NULL
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
        key = key_sql("picked.organization"),
        picked_key = key_sql("picked.organization"),
        calendar = calendar_sql("k.key", WINDOW_NOW),
        today = local_day_sql("cal", WINDOW_NOW),
        opens_at = earliest_sql("cal", WINDOW_NOW, "NULL::pg_catalog.date"),
        held_until = earliest_sql("cal", WINDOW_NOW, "aw.until_day"),
        superseded = superseded_sql("picked"),
    )
}

/// The instant a claim judges calendars at (stable within the statement).
const WINDOW_NOW: &str = "pg_catalog.statement_timestamp()";

/// SQL, `FROM … LIMIT $2` with the outbox row as `o`: what a pass picks and
/// locks (`FOR UPDATE SKIP LOCKED`), oldest first, among the messages
/// `followup.claimable` (sql/outbox.sql) says a consumer may take.
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
        Kind::Claim => "FROM followup.claimable AS o
              ORDER BY o.message_id
              LIMIT $2
                FOR UPDATE SKIP LOCKED"
            .to_string(),
        Kind::Digest => format!(
            "FROM ROWS FROM (pg_catalog.unnest($7::pg_catalog.text[]), pg_catalog.unnest($8::pg_catalog.text[]))
                    AS r(role, id)
              CROSS JOIN LATERAL (
                    SELECT o.message_id, o.assignment_id, o.cycle_start, o.kind, o.sequence, o.recipient_role,
                           o.recipient_id, o.organization, o.status, o.attempts
                      FROM followup.claimable AS o
                     WHERE coalesce(o.recipient_id, '') = r.id
                       AND o.recipient_role = r.role::followup.recipient_role
                       FOR UPDATE SKIP LOCKED) AS o
              ORDER BY o.message_id
              LIMIT $2"
        ),
    }
}

/// Which claim statement: a plain claim or a digest's.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Claim,
    Digest,
}

/// Runs `f` with the kept statement of `kind` (plan_cache.rs), as the
/// assignments table's owner (security.rs), since the still-due check reads
/// the app's table.
fn with_statement<R>(
    client: &mut SpiClient<'_>,
    kind: Kind,
    f: impl FnOnce(&mut SpiClient<'_>, &OwnedPreparedStatement) -> R,
) -> R {
    let key = match kind {
        Kind::Claim => "outbox.claim",
        Kind::Digest => "outbox.digest",
    };
    let build = |client: &mut SpiClient<'_>| {
        registry::require_current_schema(client);
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
        plan_cache::Statement {
            sql: claim_sql(assignments.as_ref(), kind),
            types,
            owner: assignments.as_ref().map(|a| a.owner),
            reads: assignments.iter().map(|a| a.relid).collect(),
        }
    };
    plan_cache::with_kept(client, key, build, f)
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

/// What a pass looked at: how many messages, of which recipients.
#[derive(Clone)]
struct Candidates {
    wanted: i32,
    recipients: Option<(Vec<String>, Vec<String>)>,
}

/// Runs `claim` (a whole claim or digest) in a subtransaction. One that
/// meets a message whose assignment cannot be evaluated (active_when fails
/// on its row) is rolled back; the messages of the pass it failed in that
/// cannot be evaluated are held back (`hold_unreadable`), and it runs
/// again: one bad row stops nobody else's reminders. `claim` records each
/// pass's candidates in the cell it is given.
fn holding_unreadable<R>(
    client: &mut SpiClient<'_>,
    today: pgrx::datum::Date,
    mut claim: impl FnMut(&mut SpiClient<'_>, &RefCell<Option<Candidates>>) -> R,
) -> R {
    loop {
        let last_pass = RefCell::new(None);
        match in_subtransaction(std::panic::AssertUnwindSafe(|| claim(client, &last_pass))) {
            Ok(claimed) => return claimed,
            Err(failure) => {
                let candidates = last_pass.take();
                let held = match candidates {
                    Some(candidates) if failure.is_data_exception() => hold_unreadable(client, &candidates, today),
                    _ => 0,
                };
                if held == 0 {
                    crate::errors::raise(failure.code, failure.message);
                }
            }
        }
    }
}

/// Runs one pass: (ids handed out, messages withdrawn or deferred, messages
/// picked).
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
    without_jit(|| {
        Spi::connect_mut(|client| {
            holding_unreadable(client, today, |client, last_pass| {
                let mut claimed: Vec<i64> = Vec::new();
                loop {
                    let wanted = max_messages - claimed.len() as i32;
                    let pass = Pass { consumer, wanted, lease, lease_id, today, recipients: None };
                    last_pass.replace(Some(Candidates { wanted, recipients: None }));
                    let (ids, set_aside, picked) = claim_pass(client, &pass);
                    claimed.extend(ids);
                    // Only withdrawals and deferrals leave a pass short of what it
                    // picked; a pass that picked fewer than it wanted found no more
                    // visible messages.
                    if set_aside == 0 || picked < wanted as i64 || claimed.len() as i32 >= max_messages {
                        return claimed;
                    }
                }
            })
        })
    })
}

/// Messages one digest hands out at most (all of a recipient's claimable
/// messages, for up to max_recipients recipients).
const DIGEST_MESSAGES_MAX: i32 = 10_000;

/// The next recipients for a digest, in the order of their oldest claimable
/// message, each locked for this transaction (a recipient another digest
/// holds is skipped); `seen` are the ones already taken or tried.
fn lock_recipients(
    client: &SpiClient<'_>,
    wanted: usize,
    seen: &mut std::collections::HashSet<(String, String)>,
) -> Vec<(String, String)> {
    let mut locked = Vec::new();
    let walk = "SELECT o.recipient_role::pg_catalog.text, coalesce(o.recipient_id, '')
               FROM followup.claimable AS o
              ORDER BY o.message_id";
    let mut cursor = client.open_cursor(walk, &[]);
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
            if recipient_lock(client, &recipient).try_acquire(false) {
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
    without_jit(|| {
        Spi::connect_mut(|client| {
            holding_unreadable(client, today, |client, last_pass| {
                let mut claimed: Vec<i64> = Vec::new();
                let mut seen = std::collections::HashSet::new();
                let mut served = 0usize;
                while served < max_recipients as usize && (claimed.len() as i32) < DIGEST_MESSAGES_MAX {
                    let recipients = lock_recipients(client, max_recipients as usize - served, &mut seen);
                    if recipients.is_empty() {
                        break;
                    }
                    let (roles, ids): (Vec<String>, Vec<String>) = recipients.into_iter().unzip();
                    let wanted = DIGEST_MESSAGES_MAX - claimed.len() as i32;
                    last_pass.replace(Some(Candidates { wanted, recipients: Some((roles.clone(), ids.clone())) }));
                    let pass = Pass { consumer, wanted, lease, lease_id, today, recipients: Some((roles, ids)) };
                    let (handed_out, _, _) = claim_pass(client, &pass);
                    served += count_recipients(client, &handed_out);
                    claimed.extend(handed_out);
                }
                claimed
            })
        })
    })
}

/// The lock of a digest's recipient, for the claiming transaction (two
/// digests at once never split a recipient between them): a lock of the
/// extension's own that no other role can take (security.rs), keyed by the
/// hash of the recipient's id, per role.
fn recipient_lock(client: &SpiClient<'_>, (role, id): &(String, String)) -> security::Lock {
    let hash = crate::query::one::<i32>(client, "SELECT pg_catalog.hashtext($1)", &[id.as_str().into()]).unwrap_or(0);
    security::Lock::Recipient { role_index: if role == "coordinator" { 2 } else { 1 }, hash: hash as u32 }
}

/// How long a message whose assignment cannot be evaluated is held back
/// before a claim tries it again.
const HOLD_UNREADABLE: &str = "1 hour";

/// Holds back the messages among a pass's candidates whose assignment row
/// the still-due check cannot evaluate: each is judged alone, as the
/// table's owner, in a subtransaction; those that fail with a data
/// exception stay pending, visible again in an hour, with the reason in
/// last_error (no values of the row). Returns how many it held.
fn hold_unreadable(client: &mut SpiClient<'_>, pass: &Candidates, today: pgrx::datum::Date) -> usize {
    let Some(assignments) = registry::load_assignment_table(client) else { return 0 };
    let candidates_sql = match &pass.recipients {
        None => "SELECT o.message_id, o.assignment_id, o.cycle_start FROM followup.claimable AS o
              ORDER BY o.message_id LIMIT $1 FOR UPDATE SKIP LOCKED",
        Some(_) => "SELECT o.message_id, o.assignment_id, o.cycle_start FROM followup.claimable AS o
              WHERE (o.recipient_role::pg_catalog.text, coalesce(o.recipient_id, '')) IN
                    (SELECT * FROM ROWS FROM (pg_catalog.unnest($2::pg_catalog.text[]), pg_catalog.unnest($3::pg_catalog.text[])))
              ORDER BY o.message_id LIMIT $1 FOR UPDATE SKIP LOCKED",
    };
    let (roles, ids) = pass.recipients.clone().unwrap_or_default();
    let candidates: Vec<(i64, String, pgrx::datum::Date)> = client
        .update(candidates_sql, None, &[pass.wanted.into(), roles.into(), ids.into()])
        .map(|rows| {
            rows.filter_map(|r| Some((r.get::<i64>(1).ok()??, r.get::<String>(2).ok()??, r.get(3).ok()??))).collect()
        })
        .unwrap_or_default();
    let (joins, reason) = withdraw_reason_sql(&assignments, "$3");
    let judge = format!(
        "SELECT {reason} FROM (SELECT $1::pg_catalog.text AS assignment_id, $2::pg_catalog.date AS cycle_start) AS picked {joins}"
    );
    let mut held = Vec::new();
    let mut sqlstate = String::new();
    for (message_id, assignment_id, cycle_start) in candidates {
        let judged = in_subtransaction(std::panic::AssertUnwindSafe(|| {
            security::as_owner_statement(assignments.owner, &judge, || {
                client
                    .select(judge.as_str(), None, &[assignment_id.as_str().into(), cycle_start.into(), today.into()])
                    .map(|_| ())
                    .unwrap_or_else(|e| crate::errors::internal(e.to_string()))
            })
        }));
        if let Err(failure) = judged {
            if failure.is_data_exception() {
                sqlstate = failure.sqlstate();
                held.push(message_id);
            }
        }
    }
    if !held.is_empty() {
        crate::query::execute(
            client,
            &format!(
                "UPDATE followup.outbox AS o
                    SET visible_at = pg_catalog.clock_timestamp() + interval '{HOLD_UNREADABLE}',
                        last_error = pg_catalog.format('held: its assignment cannot be evaluated (SQLSTATE %s); tried again after {HOLD_UNREADABLE}', $2::pg_catalog.text)
                  WHERE o.message_id OPERATOR(pg_catalog.=) ANY ($1)"
            ),
            &[held.clone().into(), sqlstate.as_str().into()],
        );
        warning!(
            "pg_followup: {} message(s) held back for {HOLD_UNREADABLE}: their assignment cannot be evaluated (SQLSTATE {sqlstate})",
            held.len()
        );
    }
    held.len()
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
