//! The database side: the outbox protocol (followup.claim / ack / fail /
//! release) on two connections. The first LISTENs on followup_outbox and
//! sends claims, releases and the metrics server's checks; the second sends
//! acks and fails. A commit waits for its WAL flush, and one connection runs
//! its statements one after the other: on one connection every ack would
//! queue behind the claim before it (and the claim behind the acks), on two
//! they overlap.
//!
//! Every statement is sent with `query_typed`: parse, bind and execute of an
//! unnamed statement in one round trip, so nothing outlives its transaction
//! on the server. That is what PgBouncer's transaction pooling needs (the
//! next transaction may run on another server connection, where a named
//! prepared statement would be missing, or collide with another client's).
//! For the same reason every result column is of a built-in type (casts to
//! text): a column of the extension's enum types would make tokio-postgres
//! look the type up with a prepared statement of its own.
//!
//! The delivery loop sends its claims, acks, fails and releases without
//! waiting for one another (several deliveries are under way at once), and
//! the metrics server its checks: tokio-postgres pipelines them on each
//! connection, each its own transaction. Nothing depends on the order between
//! the two connections: a claim cannot hand out a message whose ack or fail
//! is still on its way (the message is leased to us until that commits), and
//! acks, fails and releases name disjoint messages.
//!
//! Lease ids travel as text (`::text` / `::uuid` in the SQL) so that the
//! uuid crate is not needed for a value we only hand back.

use std::sync::Arc;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{AsyncMessage, Client};
use tokio_postgres_rustls::MakeRustlsConnect;
use tracing::{info, warn};

use crate::protocol::{digest_key, idempotency_key, Batch, FailOutcome, Item};

/// The claim: the outbox rows of one new lease, each with the parts of its
/// idempotency key and the row as JSON (the webhook's body).
const CLAIM: &str = "SELECT m.lease_id::text, m.message_id, m.assignment_id,
                            to_char(m.cycle_start, 'YYYY-MM-DD'), m.kind::text, m.sequence,
                            to_jsonb(m)::text
                       FROM followup.claim($1, $2, $3::interval) AS m";

/// The digest: one row per recipient of one new lease, with its messages'
/// ids and the body (the recipient and its outbox rows as JSON).
const CLAIM_DIGEST: &str = "SELECT d.lease_id::text, d.recipient_role::text, coalesce(d.recipient_id, ''), d.message_ids,
                                   jsonb_build_object('recipient_role', d.recipient_role, 'recipient_id', d.recipient_id,
                                                      'messages', d.messages)::text
                              FROM followup.claim_digest($1, $2, $3::interval) AS d";

pub struct Db {
    /// Claims, releases, LISTEN and the metrics server's checks.
    client: Arc<Client>,
    /// Acks and fails, on a second connection, so that their commits (each
    /// waits for its WAL flush) overlap the claims' instead of queueing
    /// behind them on one connection.
    outcomes: Client,
    /// Signalled on every NOTIFY followup_outbox, and when a connection
    /// ends (so a waiting consumer notices at once and reconnects).
    pub wakeups: Arc<Notify>,
    drivers: [JoinHandle<()>; 2],
}

impl Drop for Db {
    fn drop(&mut self) {
        for driver in &self.drivers {
            driver.abort();
        }
    }
}

impl Db {
    /// Connects (trying the hosts in order, as the connection string says)
    /// and LISTENs. LISTEN comes before the first claim, so a run that commits
    /// in between is not missed: either the claim sees its messages or its
    /// notification wakes us. Through a transaction-pooling PgBouncer the
    /// LISTEN may land on a server connection we never see again: then the
    /// poll interval is what finds new work.
    pub async fn connect(config: &tokio_postgres::Config, tls: MakeRustlsConnect) -> Result<Db, tokio_postgres::Error> {
        let wakeups = Arc::new(Notify::new());
        let (client, connection) = config.connect(tls.clone()).await?;
        let main = drive(connection, Arc::clone(&wakeups));
        let (outcomes, connection) = config.connect(tls).await?;
        let second = drive(connection, Arc::clone(&wakeups));
        client.batch_execute("LISTEN followup_outbox").await?;
        Ok(Db { client: Arc::new(client), outcomes, wakeups, drivers: [main, second] })
    }

    /// A handle for the metrics server's checks, on the claims' connection.
    pub fn probe(&self) -> Probe {
        Probe { client: Arc::clone(&self.client) }
    }

    /// Where we are connected: "host:port" as the server sees it (behind a
    /// PgBouncer, the server's own address), or "local socket".
    pub async fn server(&self) -> Result<String, tokio_postgres::Error> {
        let row = self
            .client
            .query_typed_one(
                "SELECT coalesce(host(inet_server_addr()) || ':' || inet_server_port(), 'local socket')",
                &[],
            )
            .await?;
        Ok(row.get(0))
    }

    /// The lease as seconds, asking PostgreSQL to parse the interval the
    /// same way followup.claim will ('5 minutes', '00:05:00', 'PT5M'...).
    pub async fn lease_seconds(&self, lease: &str) -> Result<f64, tokio_postgres::Error> {
        let row = self
            .client
            .query_typed_one("SELECT extract(epoch FROM $1::interval)::float8", &[(&lease, Type::TEXT)])
            .await?;
        Ok(row.get(0))
    }

    /// One claim of up to `batch_size` messages, one delivery each.
    pub async fn claim(&self, consumer: &str, batch_size: i32, lease: &str) -> Result<Batch, tokio_postgres::Error> {
        let params: [(&(dyn ToSql + Sync), Type); 3] =
            [(&consumer, Type::TEXT), (&batch_size, Type::INT4), (&lease, Type::TEXT)];
        let rows = self.client.query_typed(CLAIM, &params).await?;
        let lease_id = rows.first().map(|r| r.get::<_, String>(0)).unwrap_or_default();
        let items = rows
            .iter()
            .map(|r| {
                let message_id: i64 = r.get(1);
                let key = idempotency_key(r.get(2), r.get(3), r.get(4), r.get(5));
                Item { message_ids: vec![message_id], key, body: r.get(6) }
            })
            .collect();
        Ok(Batch { lease_id, items })
    }

    /// One digest of up to `recipients` recipients, one delivery each.
    pub async fn claim_digest(
        &self,
        consumer: &str,
        recipients: i32,
        lease: &str,
    ) -> Result<Batch, tokio_postgres::Error> {
        let params: [(&(dyn ToSql + Sync), Type); 3] =
            [(&consumer, Type::TEXT), (&recipients, Type::INT4), (&lease, Type::TEXT)];
        let rows = self.client.query_typed(CLAIM_DIGEST, &params).await?;
        let lease_id = rows.first().map(|r| r.get::<_, String>(0)).unwrap_or_default();
        let items = rows
            .iter()
            .map(|r| {
                let message_ids: Vec<i64> = r.get(3);
                let key = digest_key(r.get(1), r.get(2), &message_ids);
                Item { message_ids, key, body: r.get(4) }
            })
            .collect();
        Ok(Batch { lease_id, items })
    }

    /// Marks messages delivered; returns how many our lease still held.
    pub async fn ack(&self, lease_id: &str, message_ids: &[i64]) -> Result<i64, tokio_postgres::Error> {
        let row = self
            .outcomes
            .query_typed_one(
                "SELECT followup.ack($1::uuid, $2)",
                &[(&lease_id, Type::TEXT), (&message_ids, Type::INT8_ARRAY)],
            )
            .await?;
        Ok(row.get(0))
    }

    pub async fn fail(
        &self,
        lease_id: &str,
        message_id: i64,
        error: &str,
    ) -> Result<FailOutcome, tokio_postgres::Error> {
        let row = self
            .outcomes
            .query_typed_one(
                "SELECT followup.fail($1::uuid, $2, $3)",
                &[(&lease_id, Type::TEXT), (&message_id, Type::INT8), (&error, Type::TEXT)],
            )
            .await?;
        Ok(FailOutcome::from_sql(row.get(0)))
    }

    /// Gives undelivered messages back without waiting for the lease to
    /// expire; returns how many our lease still held (and so were released).
    pub async fn release(&self, lease_id: &str, message_ids: &[i64]) -> Result<i64, tokio_postgres::Error> {
        let row = self
            .client
            .query_typed_one(
                "SELECT followup.release($1::uuid, $2)",
                &[(&lease_id, Type::TEXT), (&message_ids, Type::INT8_ARRAY)],
            )
            .await?;
        Ok(row.get(0))
    }
}

/// tokio-postgres needs a connection polled to make progress; this task does
/// that and turns notifications into wakeups. Notify keeps one permit, so
/// notifications that arrive while the loop is busy collapse into one extra
/// claim afterwards.
fn drive<S, T>(mut connection: tokio_postgres::Connection<S, T>, wake: Arc<Notify>) -> JoinHandle<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(AsyncMessage::Notification(_)) => wake.notify_one(),
                Ok(AsyncMessage::Notice(notice)) => info!("server notice: {}", notice.message()),
                Ok(_) => {}
                Err(e) => {
                    warn!("database connection lost: {}", error_text(&e));
                    break;
                }
            }
        }
        wake.notify_one();
    })
}

/// The metrics server's view of the database: shares the delivery loop's
/// claims connection (tokio-postgres pipelines the two), so /healthz says
/// whether *that* connection works. (A broken acks connection shows at the
/// next ack or fail, which makes the loop reconnect both.)
#[derive(Clone)]
pub struct Probe {
    client: Arc<Client>,
}

impl Probe {
    /// Whether the server takes writes: a primary, not in recovery, and not
    /// read-only (default_transaction_read_only).
    pub async fn writable(&self) -> Result<bool, tokio_postgres::Error> {
        let row = self
            .client
            .query_typed_one(
                "SELECT NOT pg_catalog.pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off'",
                &[],
            )
            .await?;
        Ok(row.get(0))
    }

    /// Seconds since the claimable message with the lowest id (the one the
    /// next claim hands out first) was enqueued; 0 when none is claimable.
    /// "Claimable" is the extension's one definition (the view
    /// followup.claimable, read through the claim index by the SECURITY
    /// DEFINER function followup.oldest_claimable_age): the notifier keeps no
    /// copy of it. Needs EXECUTE on that function.
    pub async fn oldest_claimable_age(&self) -> Result<f64, tokio_postgres::Error> {
        let row = self
            .client
            .query_typed_one("SELECT extract(epoch FROM followup.oldest_claimable_age())::float8", &[])
            .await?;
        Ok(row.get(0))
    }
}

/// tokio-postgres's Display says only what failed ("db error", "error
/// connecting to server"); the why (the server's message, the OS error, the
/// TLS alert) is in the sources.
pub fn error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => crate::log::chain(e),
    }
}

/// Whether the server refused a statement for lack of privilege.
pub fn is_permission_denied(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
}
