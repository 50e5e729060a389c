//! The outbox protocol's data, as the notifier sees it: what a claim hands
//! out ([`Batch`] of [`Item`]s under one lease), what followup.fail answers
//! ([`FailOutcome`]), and the Idempotency-Key formats. Plain data and pure
//! functions: this module imports no other module of the crate, so the
//! database side (db.rs) and the loop (delivery.rs) both build on it.

/// What one claim handed out, under one lease.
pub struct Batch {
    pub lease_id: String,
    pub items: Vec<Item>,
}

/// One POST. With `followup.claim` an item is one outbox message; with
/// `followup.claim_digest` it is one recipient's digest of many messages.
/// Ack, fail and release all act on the item's message ids.
pub struct Item {
    /// The outbox messages it delivers (one, or a digest's).
    pub message_ids: Vec<i64>,
    /// The Idempotency-Key header.
    pub key: String,
    /// The JSON body.
    pub body: String,
}

/// What followup.fail said.
#[derive(Debug, PartialEq)]
pub enum FailOutcome {
    /// Back to pending, retried after the backoff (or retry_in).
    Pending,
    /// followup.max_attempts reached; followup.requeue_dead brings it back.
    Dead,
    /// Our lease no longer holds the message (it expired and another consumer
    /// re-claimed it): that consumer now owns the outcome.
    LeaseNotCurrent,
    /// An admin withdrew the message (followup.cancel): nothing to retry.
    Cancelled,
    /// An answer this notifier does not know (a newer extension?): reported
    /// as an error, never taken for one of the above.
    Unknown(String),
}

impl FailOutcome {
    pub fn from_sql(text: &str) -> FailOutcome {
        match text {
            "pending" => FailOutcome::Pending,
            "dead" => FailOutcome::Dead,
            "lease_not_current" => FailOutcome::LeaseNotCurrent,
            "cancelled" => FailOutcome::Cancelled,
            other => FailOutcome::Unknown(other.to_string()),
        }
    }
}

/// `<assignment_id>/<cycle_start>/<kind>/<sequence>`: the outbox's unique
/// key, identical on every attempt, so a provider can deduplicate on it.
///
/// assignment_id is the application's text and may contain anything; it is
/// percent-encoded where it could break the header (control characters,
/// non-ASCII) or the key's structure ('/', '%'). Ordinary ids are unchanged.
pub fn idempotency_key(assignment_id: &str, cycle_start: &str, kind: &str, sequence: i32) -> String {
    format!("{}/{cycle_start}/{kind}/{sequence}", escape_key_part(assignment_id))
}

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
    fn a_digest_key_names_the_recipient_and_changes_with_the_messages() {
        let key = digest_key("mentor", "101", &[2, 4, 6]);
        assert!(key.starts_with("digest/mentor/101/"), "{key}");
        assert_eq!(key, digest_key("mentor", "101", &[2, 4, 6]), "stable for the same messages");
        assert_ne!(key, digest_key("mentor", "101", &[2, 4, 7]));
        assert_ne!(key, digest_key("mentor", "102", &[2, 4, 6]));
        assert_eq!(digest_key("mentor", "a/b c", &[1]).split('/').nth(2), Some("a%2Fb%20c"));
    }

    #[test]
    fn fail_outcomes() {
        assert_eq!(FailOutcome::from_sql("pending"), FailOutcome::Pending);
        assert_eq!(FailOutcome::from_sql("lease_not_current"), FailOutcome::LeaseNotCurrent);
        assert_eq!(FailOutcome::from_sql("retried"), FailOutcome::Unknown("retried".into()));
    }

    #[test]
    fn ranges() {
        assert_eq!(id_ranges(&[]), "");
        assert_eq!(id_ranges(&[7]), "7");
        assert_eq!(id_ranges(&[41, 42, 43]), "41-43");
        assert_eq!(id_ranges(&[3, 4, 5, 9, 11, 12]), "3-5,9,11-12");
        assert_eq!(id_ranges(&[5, 4]), "5,4");
    }
}
