//! The consumer loop: claim a batch, deliver each item, ack or fail it at
//! once, wait for a notification (or the poll interval) when there is no work.
//!
//! A claim hands out a [`Batch`]: one lease and the [`Item`]s to POST under
//! it. Today an item is one outbox message; an item carries a list of message
//! ids so that a claim mode that groups messages (one POST for several) goes
//! through the same loop: ack, fail and release all take the item's ids.
//!
//! Delivery is at-least-once. An item is acked right after its 2xx, not at
//! the end of the batch, so a crash re-delivers at most the one item whose
//! answer arrived but whose ack did not commit, plus the one in flight; the
//! rest of the batch simply comes back when the lease expires, never having
//! been sent. Every request carries the message's Idempotency-Key, which is
//! the same on every attempt, so the receiver can drop the duplicates.
//!
//! A delivery whose ack was lost with the connection (the database went away
//! between the 2xx and the ack's answer, or a failover lost the committed ack
//! with the old primary) is remembered: when such a message is handed out
//! again it is acked without being POSTed again.
//!
//! Items of a batch that are not sent (shutdown, or the lease running out)
//! are handed back with followup.release: pending and claimable at once,
//! with no attempt counted and their last_error untouched.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use crate::config::{human, Config};
use crate::db::{Db, FailOutcome};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::webhook::Webhook;

/// Time allowed for the ack after a request, when deciding whether a
/// delivery can still finish inside the lease.
pub const ACK_ALLOWANCE: Duration = Duration::from_millis(250);

const SHUTDOWN_REASON: &str = "notifier shut down before delivery";
const LEASE_REASON: &str = "lease about to expire before delivery";

/// How many delivered messages are remembered (about 50 bytes each).
const REMEMBERED: usize = 100_000;

/// What one claim handed out, under one lease.
pub struct Batch {
    pub lease_id: String,
    pub items: Vec<Item>,
}

/// One POST.
pub struct Item {
    /// The outbox messages it delivers.
    pub message_ids: Vec<i64>,
    /// The Idempotency-Key header.
    pub key: String,
    /// The JSON body.
    pub body: String,
}

/// Everything the loop needs, for the life of the process (across
/// reconnections).
pub struct Deliverer<'a> {
    pub config: &'a Config,
    pub webhook: &'a Webhook,
    pub metrics: &'a Metrics,
    pub shutdown: &'a Shutdown,
    pub delivered: Delivered,
}

/// The messages this process POSTed with a 2xx answer, the most recent
/// [`REMEMBERED`].
#[derive(Default)]
pub struct Delivered {
    ids: HashSet<i64>,
    order: VecDeque<i64>,
}

impl Delivered {
    fn insert(&mut self, ids: &[i64]) {
        for &id in ids {
            if self.ids.insert(id) {
                self.order.push_back(id);
            }
        }
        while self.order.len() > REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
    }

    /// Whether every message of the item was POSTed with success before.
    fn contains_all(&self, ids: &[i64]) -> bool {
        ids.iter().all(|id| self.ids.contains(id))
    }
}

impl Deliverer<'_> {
    /// Serves until shutdown is requested (Ok) or the database fails (Err:
    /// the caller reconnects; messages we held come back when their lease
    /// expires).
    pub async fn serve(&mut self, db: &Db, lease: Duration) -> Result<(), tokio_postgres::Error> {
        loop {
            if self.shutdown.requested() {
                return Ok(());
            }
            // Measured before the claim is sent, so our idea of the lease's end is
            // never later than the database's (visible_at = claim's now() + lease).
            let claimed_at = Instant::now();
            let batch = if self.config.digest {
                db.claim_digest(&self.config.consumer, self.config.batch_size, &self.config.lease).await?
            } else {
                db.claim(&self.config.consumer, self.config.batch_size, &self.config.lease).await?
            };
            if batch.items.is_empty() {
                tokio::select! {
                    _ = db.wakeups.notified() => {}
                    _ = tokio::time::sleep(self.config.poll_interval) => {}
                    _ = self.shutdown.wait() => return Ok(()),
                }
                continue;
            }
            self.deliver_batch(db, &batch, claimed_at + lease).await?;
        }
    }

    async fn deliver_batch(
        &mut self,
        db: &Db,
        batch: &Batch,
        lease_ends: Instant,
    ) -> Result<(), tokio_postgres::Error> {
        let lease_id = batch.lease_id.as_str();
        for (i, item) in batch.items.iter().enumerate() {
            // Both checks come before a request starts, never during one: a
            // request that has begun is finished and acked (or failed).
            let rest = &batch.items[i..];
            if self.shutdown.requested() {
                return self.release(db, lease_id, rest, SHUTDOWN_REASON).await;
            }
            // A delivery that might outlast the lease could be re-claimed and sent
            // again by another consumer meanwhile; give the rest back instead, so
            // it is re-claimed (by us, or another) under a fresh lease at once.
            if Instant::now() + self.config.request_timeout + ACK_ALLOWANCE > lease_ends {
                warn!(
                    "lease {lease_id} is about to expire with {} messages undelivered; \
                     a smaller --batch-size or a longer --lease avoids this",
                    message_count(rest)
                );
                self.release(db, lease_id, rest, LEASE_REASON).await?;
                if i == 0 {
                    // Not even the first message fitted (the claim itself took
                    // most of the lease). A release costs no attempt, so claiming
                    // again at once could go round like this for ever: pause.
                    warn!(
                        "no message of lease {lease_id} could start inside it; claiming again in {}",
                        human(self.config.poll_interval)
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(self.config.poll_interval) => {}
                        _ = self.shutdown.wait() => {}
                    }
                }
                return Ok(());
            }
            self.deliver(db, lease_id, item).await?;
        }
        Ok(())
    }

    /// One item: POST, then ack or fail. Logs one line with the outcome.
    async fn deliver(&mut self, db: &Db, lease_id: &str, item: &Item) -> Result<(), tokio_postgres::Error> {
        let ids = item.message_ids.as_slice();
        let message_id = id_ranges(ids);
        let key = item.key.as_str();
        if self.delivered.contains_all(ids) {
            // POSTed with success before a reconnect, and handed out again
            // because the ack did not survive: ack it, do not send it twice.
            if db.ack(lease_id, ids).await? == ids.len() as i64 {
                info!(
                    message_id = %message_id, key = %key,
                    "already delivered by this notifier before the connection was lost; acked without posting it again"
                );
            } else {
                warn!(
                    message_id = %message_id, key = %key,
                    "already delivered by this notifier before the connection was lost; not posted again, \
                     but the ack was refused: the lease is no longer ours"
                );
            }
            return Ok(());
        }

        // a digest lists all of its messages
        let ids_header = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let headers = if self.config.digest {
            [("Idempotency-Key", key), ("X-Followup-Message-Ids", ids_header.as_str())]
        } else {
            [("Idempotency-Key", key), ("X-Followup-Message-Id", message_id.as_str())]
        };
        let started = Instant::now();
        let answer = self.webhook.post(&headers, item.body.clone()).await;
        let elapsed = started.elapsed();
        self.metrics.latency.observe(elapsed.as_secs_f64());
        let elapsed_ms = elapsed.as_millis() as u64;
        let error = match answer {
            Ok(answer) if answer.is_success() => {
                let status = answer.status.as_u16();
                // Counted and remembered before the ack is sent: if the
                // connection dies before its answer, we know not to send
                // these again.
                self.metrics.delivered.inc_by(ids.len() as u64);
                self.delivered.insert(ids);
                if db.ack(lease_id, ids).await? == ids.len() as i64 {
                    info!(message_id = %message_id, key = %key, status, elapsed_ms, "delivered");
                } else {
                    // Only possible after our lease expired and another consumer
                    // re-claimed the message: it may be delivered once more, with
                    // the same Idempotency-Key.
                    warn!(
                        message_id = %message_id, key = %key, status, elapsed_ms,
                        "delivered, but the ack was refused: the lease is no longer ours"
                    );
                }
                return Ok(());
            }
            Ok(answer) => answer.to_string(),
            Err(e) => e.to_string(),
        };
        let mut outcomes = Vec::new();
        for &id in ids {
            let outcome = db.fail(lease_id, id, &error).await?;
            match outcome {
                FailOutcome::Pending => {
                    self.metrics.failed.inc();
                }
                FailOutcome::Dead => {
                    self.metrics.failed.inc();
                    self.metrics.dead.inc();
                }
                FailOutcome::LeaseNotCurrent | FailOutcome::Cancelled => {}
                FailOutcome::Unknown(ref answer) => {
                    error!(message_id = id, answer = %answer, "followup.fail gave an answer this notifier does not know; is the extension newer than the notifier?");
                }
            }
            outcomes.push(outcome);
        }
        let outcome = match outcomes.first() {
            Some(FailOutcome::Pending) => "pending, retried after the backoff",
            Some(FailOutcome::Dead) => "dead: max attempts reached (followup.requeue_dead to retry)",
            Some(FailOutcome::Cancelled) => "cancelled: withdrawn by an admin, not retried",
            Some(FailOutcome::Unknown(_)) => "unknown: see the error above",
            _ => "not recorded: the lease is no longer ours",
        };
        warn!(message_id = %message_id, key = %key, elapsed_ms, error = %error, outcome, "failed");
        Ok(())
    }

    /// Hands the unsent rest of a batch back with followup.release: pending and
    /// visible at once, no attempt counted, last_error untouched. Logs one line
    /// for the lot.
    async fn release(
        &self,
        db: &Db,
        lease_id: &str,
        items: &[Item],
        reason: &str,
    ) -> Result<(), tokio_postgres::Error> {
        let ids: Vec<i64> = items.iter().flat_map(|item| item.message_ids.iter().copied()).collect();
        let released = db.release(lease_id, &ids).await?;
        self.metrics.released.inc_by(released.max(0) as u64);
        let asked = ids.len() as i64;
        let noun = if asked == 1 { "message" } else { "messages" };
        if released == asked {
            info!(
                "released {released} undelivered {noun} ({reason}) -> pending, claimable at once, \
                 no attempt counted: message_ids={}",
                id_ranges(&ids)
            );
        } else {
            // Only possible once our lease has expired: another consumer
            // re-claimed those messages and now owns their outcome.
            warn!(
                "released {released} of {asked} undelivered {noun} ({reason}) -> pending, claimable at once, \
                 no attempt counted; the other {} were no longer held by lease {lease_id} \
                 (re-claimed by another consumer): message_ids={}",
                asked - released,
                id_ranges(&ids)
            );
        }
        Ok(())
    }
}

fn message_count(items: &[Item]) -> usize {
    items.iter().map(|item| item.message_ids.len()).sum()
}

/// Message ids as ranges, for a log line: `[3, 4, 5, 9, 11, 12]` gives
/// `3-5,9,11-12`. A batch is claimed in id order, so it is mostly one range.
pub fn id_ranges(ids: &[i64]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < ids.len() {
        let start = ids[i];
        let mut end = start;
        while i + 1 < ids.len() && ids[i + 1] == end + 1 {
            i += 1;
            end = ids[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if end == start {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}-{end}"));
        }
        i += 1;
    }
    out
}

/// `<assignment_id>/<cycle_start>/<kind>/<sequence>`: the outbox's unique
/// key, identical on every attempt, so a provider can deduplicate on it.
///
/// assignment_id is the application's text and may contain anything; it is
/// percent-encoded where it could break the header (control characters,
/// non-ASCII) or the key's structure ('/', '%'). Ordinary ids are unchanged.
/// A digest's Idempotency-Key: `digest/<role>/<recipient>/<hash>`, the hash
/// (64-bit FNV-1a, hex) over its message ids, so that a retry of the same
/// messages carries the same key and any other set of messages another one.
pub fn digest_key(role: &str, recipient_id: &str, message_ids: &[i64]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in message_ids.iter().flat_map(|id| id.to_le_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("digest/{role}/{}/{hash:016x}", escape_key_part(recipient_id))
}

/// A part of an Idempotency-Key with '/', '%' and non-printable bytes
/// percent-encoded, so that parts cannot run into each other.
fn escape_key_part(part: &str) -> String {
    let mut escaped = String::with_capacity(part.len());
    for byte in part.bytes() {
        if byte.is_ascii_graphic() && byte != b'/' && byte != b'%' {
            escaped.push(byte as char);
        } else {
            escaped.push_str(&format!("%{byte:02X}"));
        }
    }
    escaped
}

pub fn idempotency_key(assignment_id: &str, cycle_start: &str, kind: &str, sequence: i32) -> String {
    format!("{}/{cycle_start}/{kind}/{sequence}", escape_key_part(assignment_id))
}

/// Refuses a lease too short for even one delivery: every batch would be
/// released untouched and the notifier would spin.
pub fn check_lease(lease: Duration, request_timeout: Duration) -> Result<(), String> {
    if lease <= request_timeout + ACK_ALLOWANCE {
        return Err(format!(
            "the lease ({}) must be longer than the request timeout ({}) plus {}",
            human(lease),
            human(request_timeout),
            human(ACK_ALLOWANCE)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod digest_key_tests {
    use super::digest_key;

    #[test]
    fn a_digest_key_names_the_recipient_and_changes_with_the_messages() {
        let key = digest_key("mentor", "101", &[2, 4, 6]);
        assert!(key.starts_with("digest/mentor/101/"), "{key}");
        assert_eq!(key, digest_key("mentor", "101", &[2, 4, 6]), "stable for the same messages");
        assert_ne!(key, digest_key("mentor", "101", &[2, 4, 7]));
        assert_ne!(key, digest_key("mentor", "102", &[2, 4, 6]));
        assert_eq!(digest_key("mentor", "a/b c", &[1]).split('/').nth(2), Some("a%2Fb%20c"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(assignment_id: &str) -> String {
        idempotency_key(assignment_id, "2026-09-27", "reminder", 3)
    }

    #[test]
    fn keys() {
        assert_eq!(key("42"), "42/2026-09-27/reminder/3");
        assert_eq!(key("a-b_c.d"), "a-b_c.d/2026-09-27/reminder/3");
        assert_eq!(key("x/y z%\r\n"), "x%2Fy%20z%25%0D%0A/2026-09-27/reminder/3");
        assert_eq!(key("é"), "%C3%A9/2026-09-27/reminder/3");
    }

    #[test]
    fn ranges() {
        assert_eq!(id_ranges(&[]), "");
        assert_eq!(id_ranges(&[7]), "7");
        assert_eq!(id_ranges(&[41, 42, 43]), "41-43");
        assert_eq!(id_ranges(&[3, 4, 5, 9, 11, 12]), "3-5,9,11-12");
        assert_eq!(id_ranges(&[5, 4]), "5,4");
    }

    #[test]
    fn leases() {
        assert!(check_lease(Duration::from_secs(300), Duration::from_secs(10)).is_ok());
        assert!(check_lease(Duration::from_secs(2), Duration::from_millis(500)).is_ok());
        assert!(check_lease(Duration::from_secs(10), Duration::from_secs(10)).is_err());
    }

    #[test]
    fn remembers_deliveries() {
        let mut delivered = Delivered::default();
        delivered.insert(&[1, 2]);
        assert!(delivered.contains_all(&[1, 2]));
        assert!(!delivered.contains_all(&[2, 3]));
        for id in 10..(10 + REMEMBERED as i64) {
            delivered.insert(&[id]);
        }
        assert!(!delivered.contains_all(&[1]), "the oldest are forgotten");
        assert_eq!((delivered.ids.len(), delivered.order.len()), (REMEMBERED, REMEMBERED));
    }
}
