//! Sessions: who is logged in, each with their own database connection.
//!
//! A login opens a connection with the person's role and password (PostgreSQL
//! checks them: SCRAM, pg_hba, VALID UNTIL); the password is used for that
//! handshake and dropped. The session is a random 256-bit token in a cookie,
//! kept here only as its SHA-256, so a memory dump of the table does not hand
//! out live cookies. A session ends at logout, after `idle` unused, `max`
//! after login, or when its connection drops (the person logs in again);
//! ending it closes the connection. At most `cap` sessions live at once.
//!
//! Failed logins (and failed HTTP Basic credentials) are slowed down per
//! client address: attempts from one address run one at a time, every failure
//! takes at least `FAILURE_FLOOR` (whatever the server said, so the answer's
//! timing tells nothing about which roles exist), and after
//! `FREE_FAILURES` failures in `FAILURE_WINDOW` each further attempt waits
//! twice as long as the one before, up to `MAX_PENALTY`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgconn::conninfo::Database;
use pgconn::tls::MakeRustlsConnect;
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::Client;

use crate::db::{self, DbError};

const FAILURE_FLOOR: Duration = Duration::from_secs(1);
const FREE_FAILURES: u32 = 3;
const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
const MAX_PENALTY: Duration = Duration::from_secs(30);

pub struct Session {
    /// the role PostgreSQL logged in (session_user)
    pub role: String,
    pub client: Client,
    created: Instant,
    last_seen: Mutex<Instant>,
}

/// Why a login (or a request's Basic credentials) got no connection.
#[derive(Debug)]
pub enum LoginError {
    /// The server refused the credentials (or none were given).
    Refused,
    /// Too many sessions (or API connections) already.
    Full,
    /// The server cannot be reached (logged here, with why).
    Unavailable,
}

#[derive(Default)]
struct Failures {
    count: u32,
    last: Option<Instant>,
}

pub struct Sessions {
    database: Database,
    tls: MakeRustlsConnect,
    idle: Duration,
    max: Duration,
    cap: usize,
    live: Mutex<HashMap<[u8; 32], Arc<Session>>>,
    failures: Mutex<HashMap<IpAddr, Failures>>,
    /// one login attempt at a time per address
    attempts: Mutex<HashMap<IpAddr, Arc<tokio::sync::Mutex<()>>>>,
    /// connections of HTTP Basic requests in flight
    basic_slots: Arc<Semaphore>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Sessions {
    pub fn new(database: Database, tls: MakeRustlsConnect, idle: Duration, max: Duration, cap: usize) -> Sessions {
        Sessions {
            database,
            tls,
            idle,
            max,
            cap,
            live: Mutex::default(),
            failures: Mutex::default(),
            attempts: Mutex::default(),
            basic_slots: Arc::new(Semaphore::new(cap)),
        }
    }

    pub fn database(&self) -> (&Database, &MakeRustlsConnect) {
        (&self.database, &self.tls)
    }

    /// Logs a person in: a new session (never one the browser brought
    /// along) and its token.
    pub async fn login(&self, user: &str, password: &str, from: IpAddr) -> Result<(String, Arc<Session>), LoginError> {
        if self.count() >= self.cap {
            return Err(LoginError::Full);
        }
        let client = self.connect_checked(user, password, from).await?;
        let role: String = match client.query_one("SELECT session_user::text", &[]).await {
            Ok(row) => row.get(0),
            Err(e) => {
                tracing::warn!("cannot read the session's role: {e}");
                return Err(LoginError::Unavailable);
            }
        };
        let token = new_token();
        let now = Instant::now();
        let session = Arc::new(Session { role, client, created: now, last_seen: Mutex::new(now) });
        let mut live = self.live.lock().unwrap();
        if live.len() >= self.cap {
            return Err(LoginError::Full);
        }
        live.insert(digest(&token), Arc::clone(&session));
        Ok((token, session))
    }

    /// A connection for one request with HTTP Basic credentials (the JSON
    /// API), slowed down on failure like a login. At most `cap` such
    /// connections at once (beside the sessions): the permit goes with the
    /// connection and is returned when the request is done.
    pub async fn connect_basic(
        &self,
        user: &str,
        password: &str,
        from: IpAddr,
    ) -> Result<(Client, OwnedSemaphorePermit), LoginError> {
        let permit = Arc::clone(&self.basic_slots).try_acquire_owned().map_err(|_| LoginError::Full)?;
        Ok((self.connect_checked(user, password, from).await?, permit))
    }

    async fn connect_checked(&self, user: &str, password: &str, from: IpAddr) -> Result<Client, LoginError> {
        let lock = Arc::clone(self.attempts.lock().unwrap().entry(from).or_default());
        let _one_at_a_time = lock.lock().await;
        tokio::time::sleep(self.penalty(from)).await;
        let started = Instant::now();
        let refused = || async {
            self.record_failure(from);
            tokio::time::sleep(FAILURE_FLOOR.saturating_sub(started.elapsed())).await;
            LoginError::Refused
        };
        if user.is_empty() || password.is_empty() {
            return Err(refused().await);
        }
        match db::connect(&self.database, &self.tls, user, Some(password)).await {
            Ok(client) => {
                self.failures.lock().unwrap().remove(&from);
                Ok(client)
            }
            Err(DbError::Sql { code, message }) if code.starts_with("28") => {
                tracing::info!(client = %from, "login refused for a role: {message}");
                Err(refused().await)
            }
            Err(DbError::Sql { code, message }) => {
                tracing::warn!(client = %from, sqlstate = %code, "login failed: {message}");
                Err(LoginError::Unavailable)
            }
            Err(DbError::Unavailable(message)) => {
                tracing::warn!("cannot reach the database: {message}");
                Err(LoginError::Unavailable)
            }
        }
    }

    fn penalty(&self, from: IpAddr) -> Duration {
        let mut failures = self.failures.lock().unwrap();
        let Some(f) = failures.get(&from) else { return Duration::ZERO };
        if f.last.is_some_and(|last| last.elapsed() > FAILURE_WINDOW) {
            failures.remove(&from);
            return Duration::ZERO;
        }
        if f.count < FREE_FAILURES {
            return Duration::ZERO;
        }
        let doublings = (f.count - FREE_FAILURES).min(10);
        (Duration::from_secs(1) * 2u32.pow(doublings)).min(MAX_PENALTY)
    }

    fn record_failure(&self, from: IpAddr) {
        let mut failures = self.failures.lock().unwrap();
        let f = failures.entry(from).or_default();
        f.count += 1;
        f.last = Some(Instant::now());
    }

    /// The live session of a token, touched; None when there is none, or it
    /// expired or lost its connection (it is then ended).
    pub fn get(&self, token: &str) -> Option<Arc<Session>> {
        let key = digest(token);
        let mut live = self.live.lock().unwrap();
        let session = live.get(&key)?;
        let now = Instant::now();
        let mut last_seen = session.last_seen.lock().unwrap();
        if self.expired(session, *last_seen, now) {
            drop(last_seen);
            live.remove(&key);
            return None;
        }
        *last_seen = now;
        drop(last_seen);
        Some(Arc::clone(session))
    }

    fn expired(&self, session: &Session, last_seen: Instant, now: Instant) -> bool {
        now.duration_since(last_seen) > self.idle
            || now.duration_since(session.created) > self.max
            || session.client.is_closed()
    }

    /// Ends a session (logout); its connection closes once no request uses it.
    pub fn end(&self, token: &str) -> bool {
        self.live.lock().unwrap().remove(&digest(token)).is_some()
    }

    pub fn count(&self) -> usize {
        self.live.lock().unwrap().len()
    }

    /// Ends every expired session and forgets old failures; run periodically.
    pub fn sweep(&self) {
        let now = Instant::now();
        let mut live = self.live.lock().unwrap();
        let before = live.len();
        live.retain(|_, s| !self.expired(s, *s.last_seen.lock().unwrap(), now));
        let ended = before - live.len();
        drop(live);
        if ended > 0 {
            tracing::info!("{ended} session(s) expired");
        }
        self.failures.lock().unwrap().retain(|_, f| f.last.is_some_and(|l| l.elapsed() <= FAILURE_WINDOW));
        self.attempts.lock().unwrap().retain(|_, lock| Arc::strong_count(lock) > 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_kept_hashed() {
        let (a, b) = (new_token(), new_token());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert_ne!(digest(&a), digest(&b));
        assert_eq!(digest(&a), digest(&a.clone()));
    }

    #[test]
    fn failures_slow_down_an_address() {
        let db = pgconn::conninfo::parse("host=h", "t", &|_| None).unwrap();
        let tls = pgconn::tls::postgres(&db).unwrap();
        let s = Sessions::new(db, tls, Duration::from_secs(60), Duration::from_secs(600), 2);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for _ in 0..FREE_FAILURES {
            assert_eq!(s.penalty(a), Duration::ZERO);
            s.record_failure(a);
        }
        assert_eq!(s.penalty(a), Duration::from_secs(1));
        s.record_failure(a);
        assert_eq!(s.penalty(a), Duration::from_secs(2));
        for _ in 0..20 {
            s.record_failure(a);
        }
        assert_eq!(s.penalty(a), MAX_PENALTY);
        assert_eq!(s.penalty(b), Duration::ZERO, "another address is not slowed down");
    }
}
