//! The consumer loop: claim a batch, deliver each message, ack or fail it at
//! once, wait for a notification (or the poll interval) when there is no work.
//!
//! Delivery is at-least-once. A message is acked right after its 2xx, not at
//! the end of the batch, so a crash re-delivers at most the one message whose
//! answer arrived but whose ack did not commit, plus the one in flight; the
//! rest of the batch simply comes back when the lease expires, never having
//! been sent. Every request carries the message's Idempotency-Key, which is
//! the same on every attempt, so the receiver can drop the duplicates.
//!
//! Messages of a batch that are not sent (shutdown, or the lease running out)
//! are handed back with followup.release: pending and claimable at once,
//! with no attempt counted and their last_error untouched.

use std::time::{Duration, Instant};

use crate::config::Config;
use crate::db::{Batch, Db, FailOutcome, Message};
use crate::http::human;
use crate::log::log;
use crate::shutdown::Shutdown;

/// Time allowed for the ack after a request, when deciding whether a
/// delivery can still finish inside the lease.
pub const ACK_ALLOWANCE: Duration = Duration::from_millis(250);

const SHUTDOWN_REASON: &str = "notifier shut down before delivery";
const LEASE_REASON: &str = "lease about to expire before delivery";

/// Serves until shutdown is requested (Ok) or the database fails (Err: the
/// caller reconnects; messages we held come back when their lease expires).
pub async fn serve(
    config: &Config,
    db: &Db,
    lease: Duration,
    shutdown: &Shutdown,
) -> Result<(), tokio_postgres::Error> {
    loop {
        if shutdown.requested() {
            return Ok(());
        }
        // Measured before the claim is sent, so our idea of the lease's end is
        // never later than the database's (visible_at = claim's now() + lease).
        let claimed_at = Instant::now();
        let batch = db.claim(&config.consumer, config.batch_size, &config.lease).await?;
        if batch.messages.is_empty() {
            tokio::select! {
                _ = db.wakeups.notified() => {}
                _ = tokio::time::sleep(config.poll_interval) => {}
                _ = shutdown.wait() => return Ok(()),
            }
            continue;
        }
        deliver_batch(config, db, batch, claimed_at + lease, shutdown).await?;
    }
}

async fn deliver_batch(
    config: &Config,
    db: &Db,
    batch: Batch,
    lease_ends: Instant,
    shutdown: &Shutdown,
) -> Result<(), tokio_postgres::Error> {
    let lease_id = batch.lease_id.as_str();
    for (i, message) in batch.messages.iter().enumerate() {
        // Both checks come before a request starts, never during one: a
        // request that has begun is finished and acked (or failed).
        let rest = &batch.messages[i..];
        if shutdown.requested() {
            return release(db, lease_id, rest, SHUTDOWN_REASON).await;
        }
        // A delivery that might outlast the lease could be re-claimed and sent
        // again by another consumer meanwhile; give the rest back instead, so
        // it is re-claimed (by us, or another) under a fresh lease at once.
        if Instant::now() + config.request_timeout + ACK_ALLOWANCE > lease_ends {
            log!(
                "lease {lease_id} is about to expire with {} messages undelivered; \
                 a smaller --batch-size or a longer --lease avoids this",
                rest.len()
            );
            release(db, lease_id, rest, LEASE_REASON).await?;
            if i == 0 {
                // Not even the first message fitted (the claim itself took
                // most of the lease). A release costs no attempt, so claiming
                // again at once could go round like this for ever: pause.
                log!(
                    "no message of lease {lease_id} could start inside it; claiming again in {}",
                    human(config.poll_interval)
                );
                tokio::select! {
                    _ = tokio::time::sleep(config.poll_interval) => {}
                    _ = shutdown.wait() => {}
                }
            }
            return Ok(());
        }
        deliver(config, db, lease_id, message).await?;
    }
    Ok(())
}

/// One message: POST, then ack or fail. Logs one line with the outcome.
async fn deliver(config: &Config, db: &Db, lease_id: &str, message: &Message) -> Result<(), tokio_postgres::Error> {
    let key = idempotency_key(message);
    let id = message.message_id.to_string();
    let headers = [("Idempotency-Key", key.as_str()), ("X-Followup-Message-Id", id.as_str())];
    let started = Instant::now();
    let error = match config.webhook.post(&headers, message.json.as_bytes()).await {
        Ok(response) if response.is_success() => {
            let ms = started.elapsed().as_millis();
            if db.ack(lease_id, message.message_id).await? {
                log!("delivered message_id={id} key={key} status={} in {ms}ms", response.status);
            } else {
                // Only possible after our lease expired and another consumer
                // re-claimed the message: it may be delivered once more, with
                // the same Idempotency-Key.
                log!(
                    "delivered message_id={id} key={key} status={} in {ms}ms, but the ack was refused: \
                     the lease is no longer ours",
                    response.status
                );
            }
            return Ok(());
        }
        Ok(response) => response.to_string(),
        Err(e) => e.to_string(),
    };
    let ms = started.elapsed().as_millis();
    let outcome = match db.fail(lease_id, message.message_id, &error).await? {
        FailOutcome::Pending => "pending, retried after the backoff",
        FailOutcome::Dead => "dead: max attempts reached (followup.requeue_dead to retry)",
        FailOutcome::LeaseNotCurrent => "not recorded: the lease is no longer ours",
    };
    log!("failed message_id={id} key={key} after {ms}ms: {error} -> {outcome}");
    Ok(())
}

/// Hands the unsent rest of a batch back with followup.release: pending and
/// visible at once, no attempt counted, last_error untouched. Logs one line
/// for the lot.
async fn release(db: &Db, lease_id: &str, messages: &[Message], reason: &str) -> Result<(), tokio_postgres::Error> {
    let ids: Vec<i64> = messages.iter().map(|m| m.message_id).collect();
    let released = db.release(lease_id, &ids).await?;
    let asked = ids.len() as i64;
    let noun = if asked == 1 { "message" } else { "messages" };
    if released == asked {
        log!(
            "released {released} undelivered {noun} ({reason}) -> pending, claimable at once, \
             no attempt counted: message_ids={}",
            id_ranges(&ids)
        );
    } else {
        // Only possible once our lease has expired: another consumer
        // re-claimed those messages and now owns their outcome.
        log!(
            "released {released} of {asked} undelivered {noun} ({reason}) -> pending, claimable at once, \
             no attempt counted; the other {} were no longer held by lease {lease_id} \
             (re-claimed by another consumer): message_ids={}",
            asked - released,
            id_ranges(&ids)
        );
    }
    Ok(())
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
pub fn idempotency_key(message: &Message) -> String {
    let mut assignment = String::with_capacity(message.assignment_id.len());
    for byte in message.assignment_id.bytes() {
        if byte.is_ascii_graphic() && byte != b'/' && byte != b'%' {
            assignment.push(byte as char);
        } else {
            assignment.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("{assignment}/{}/{}/{}", message.cycle_start, message.kind, message.sequence)
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
mod tests {
    use super::*;

    fn message(assignment_id: &str) -> Message {
        Message {
            message_id: 7,
            assignment_id: assignment_id.to_string(),
            cycle_start: "2026-09-27".to_string(),
            kind: "reminder".to_string(),
            sequence: 3,
            json: "{}".to_string(),
        }
    }

    #[test]
    fn keys() {
        assert_eq!(idempotency_key(&message("42")), "42/2026-09-27/reminder/3");
        assert_eq!(idempotency_key(&message("a-b_c.d")), "a-b_c.d/2026-09-27/reminder/3");
        assert_eq!(idempotency_key(&message("x/y z%\r\n")), "x%2Fy%20z%25%0D%0A/2026-09-27/reminder/3");
        assert_eq!(idempotency_key(&message("é")), "%C3%A9/2026-09-27/reminder/3");
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
}
