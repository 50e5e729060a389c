//! The database side: one connection that LISTENs on followup_outbox and
//! speaks the outbox protocol (SPEC §8) through followup.claim / ack / fail /
//! release.
//!
//! Lease ids travel as text (`::text` / `::text::uuid` in the SQL) so that the
//! uuid crate is not needed for a value we only hand back.

use std::sync::Arc;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Client, NoTls, Statement};

use crate::log::log;

/// One claimed message.
pub struct Message {
    pub message_id: i64,
    pub assignment_id: String,
    /// ISO date, formatted by PostgreSQL with to_char so DateStyle cannot change it.
    pub cycle_start: String,
    pub kind: String,
    pub sequence: i32,
    /// The outbox row as a JSON object: the webhook's request body.
    pub json: String,
}

/// Messages claimed together under one lease.
pub struct Batch {
    pub lease_id: String,
    pub messages: Vec<Message>,
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
}

impl FailOutcome {
    fn from_sql(text: &str) -> FailOutcome {
        match text {
            "pending" => FailOutcome::Pending,
            "dead" => FailOutcome::Dead,
            _ => FailOutcome::LeaseNotCurrent,
        }
    }
}

pub struct Db {
    client: Client,
    /// Signalled on every NOTIFY followup_outbox, and when the connection
    /// ends (so a waiting consumer notices at once and reconnects).
    pub wakeups: Arc<Notify>,
    driver: JoinHandle<()>,
    claim: Statement,
    ack: Statement,
    fail: Statement,
    release: Statement,
}

impl Drop for Db {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Db {
    /// Connects, prepares the protocol statements and LISTENs. LISTEN comes
    /// before the first claim, so a run that commits in between is not missed:
    /// either the claim sees its messages or its notification wakes us.
    pub async fn connect(config: &tokio_postgres::Config) -> Result<Db, tokio_postgres::Error> {
        let (client, mut connection) = config.connect(NoTls).await?;
        let wakeups = Arc::new(Notify::new());

        // tokio-postgres needs its connection polled to make progress; this
        // task does that and turns notifications into wakeups. Notify keeps
        // one permit, so notifications that arrive while a batch is being
        // delivered collapse into one extra claim afterwards.
        let wake = Arc::clone(&wakeups);
        let driver = tokio::spawn(async move {
            while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                match message {
                    Ok(AsyncMessage::Notification(_)) => wake.notify_one(),
                    Ok(AsyncMessage::Notice(notice)) => log!("server notice: {}", notice.message()),
                    Ok(_) => {}
                    Err(e) => {
                        log!("database connection lost: {}", error_text(&e));
                        break;
                    }
                }
            }
            wake.notify_one();
        });

        let claim = client
            .prepare(
                "SELECT m.lease_id::text, m.message_id, m.assignment_id,
                        to_char(m.cycle_start, 'YYYY-MM-DD'), m.kind::text, m.sequence,
                        to_jsonb(m)::text
                   FROM followup.claim($1::text, $2::int, $3::text::interval) AS m",
            )
            .await?;
        let ack = client.prepare("SELECT followup.ack($1::text::uuid, ARRAY[$2::bigint])").await?;
        let fail = client.prepare("SELECT followup.fail($1::text::uuid, $2::bigint, $3::text)").await?;
        // Hands messages back undelivered: pending and claimable at once (by us
        // or another consumer, whom its NOTIFY wakes), without counting an
        // attempt and without touching last_error. One round trip for the lot.
        let release = client.prepare("SELECT followup.release($1::text::uuid, $2::bigint[])").await?;
        client.batch_execute("LISTEN followup_outbox").await?;
        Ok(Db { client, wakeups, driver, claim, ack, fail, release })
    }

    /// The lease as seconds, asking PostgreSQL to parse the interval the
    /// same way followup.claim will ('5 minutes', '00:05:00', 'PT5M'...).
    pub async fn lease_seconds(&self, lease: &str) -> Result<f64, tokio_postgres::Error> {
        let row = self.client.query_one("SELECT extract(epoch FROM $1::text::interval)::float8", &[&lease]).await?;
        Ok(row.get(0))
    }

    pub async fn claim(&self, consumer: &str, batch_size: i32, lease: &str) -> Result<Batch, tokio_postgres::Error> {
        let rows = self.client.query(&self.claim, &[&consumer, &batch_size, &lease]).await?;
        let lease_id = rows.first().map(|r| r.get::<_, String>(0)).unwrap_or_default();
        let messages = rows
            .iter()
            .map(|r| Message {
                message_id: r.get(1),
                assignment_id: r.get(2),
                cycle_start: r.get(3),
                kind: r.get(4),
                sequence: r.get(5),
                json: r.get(6),
            })
            .collect();
        Ok(Batch { lease_id, messages })
    }

    /// Marks one message delivered; false when our lease no longer holds it.
    pub async fn ack(&self, lease_id: &str, message_id: i64) -> Result<bool, tokio_postgres::Error> {
        let row = self.client.query_one(&self.ack, &[&lease_id, &message_id]).await?;
        Ok(row.get::<_, i64>(0) == 1)
    }

    pub async fn fail(
        &self,
        lease_id: &str,
        message_id: i64,
        error: &str,
    ) -> Result<FailOutcome, tokio_postgres::Error> {
        let row = self.client.query_one(&self.fail, &[&lease_id, &message_id, &error]).await?;
        Ok(FailOutcome::from_sql(row.get(0)))
    }

    /// Gives undelivered messages back without waiting for the lease to
    /// expire; returns how many our lease still held (and so were released).
    pub async fn release(&self, lease_id: &str, message_ids: &[i64]) -> Result<i64, tokio_postgres::Error> {
        let row = self.client.query_one(&self.release, &[&lease_id, &message_ids]).await?;
        Ok(row.get(0))
    }
}

/// tokio-postgres's Display says only what failed ("db error", "error
/// connecting to server"); the why (the server's message, the OS error) is
/// in the source.
pub fn error_text(e: &tokio_postgres::Error) -> String {
    match (e.as_db_error(), std::error::Error::source(e)) {
        (Some(db), _) => format!("{}: {}", db.severity(), db.message()),
        (None, Some(source)) => format!("{e}: {source}"),
        (None, None) => e.to_string(),
    }
}
