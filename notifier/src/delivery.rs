//! The consumer loop: claim, deliver up to `--concurrency` items at once, ack
//! or fail each as it completes, hand back what is not sent, and wait for a
//! notification (or the poll interval) when there is no work.
//!
//! A claim hands out a [`Batch`]: one lease and the [`Item`]s to POST under
//! it. An item is one outbox message (`followup.claim`) or one recipient's
//! digest of several (`followup.claim_digest`); ack, fail and release all act
//! on the item's message ids, so both go through the same loop.
//!
//! **Slots.** `--concurrency N` is how many things may be under way at once:
//! requests in flight (each on its own connection of the webhook client's
//! keep-alive pool), fails being recorded, and acks (an ack in flight, and
//! the group of answers waiting for the next one, count one each, however
//! many messages they carry). Items start in the order they were claimed and
//! finish in whatever order the webhook answers; a slot takes the next item as
//! soon as it is free. The next claim is made when fewer items are queued
//! than one claim brings (one claim kept ahead, so that requests go on while
//! it runs). So with `--concurrency 1` the loop is: claim, then POST, ack,
//! POST, ack ... and claim again, one thing at a time; with more, requests go
//! on while acks and claims commit.
//!
//! **Acks** are grouped: one `followup.ack` is in flight at a time, and the
//! 2xx answers that arrive meanwhile wait for the next one, which takes all
//! of those under the same lease (a commit costs the same for one message or
//! fifty). An answer is never forgotten: it is acked, or, if the connection
//! dies first, remembered (below). Fails are sent as each error arrives, one
//! `followup.fail` per message. Claims and releases go on one database
//! connection, acks and fails on another (see db.rs), each pipelined.
//!
//! **The lease rule.** A POST starts only if it (at most the request
//! timeout) and its ack can finish inside its lease: a delivery that outlasts
//! its lease could be re-claimed and sent by another consumer meanwhile. What
//! cannot start in time is handed back with `followup.release` (pending and
//! claimable at once, no attempt counted, last_error untouched) and claimed
//! again, by us or another consumer, under a fresh lease.
//!
//! **Stopping.** On shutdown no request starts; the claimed items not
//! started are released at once; the requests in flight finish (within the
//! request timeout) and are acked or failed; then the loop returns. When the
//! database connection fails, no request starts either; those in flight
//! finish and their 2xx answers are remembered; the loop then returns the
//! error (the caller reconnects; what we held comes back when its lease ends).
//!
//! **At least once, never twice by us.** Every request carries the same
//! Idempotency-Key on every attempt, so a receiver can drop duplicates. A
//! crash re-delivers at most the requests in flight and the answers not yet
//! acked (one message with `--concurrency 1`). A delivery
//! whose ack was lost with the connection (the database went away between
//! the 2xx and the ack's answer, or a failover lost the committed ack with
//! the old primary) is remembered ([`Delivered`]): when such a message is
//! handed out again it is acked without being POSTed again. Within one
//! process a message is never in two deliveries at once: a request ends
//! before its lease does, and only then can the message be claimed again.

use std::cell::Cell;
use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use tracing::{error, info, warn};

use crate::config::{human, Config};
use crate::db::Db;
use crate::metrics::Metrics;
use crate::protocol::{id_ranges, Batch, FailOutcome, Item};
use crate::shutdown::Shutdown;
use crate::webhook::{Answer, PostError, Webhook};

/// Time allowed for the ack after a request, when deciding whether a
/// delivery can still finish inside the lease.
pub const ACK_ALLOWANCE: Duration = Duration::from_millis(250);

const SHUTDOWN_REASON: &str = "notifier shut down before delivery";
const LEASE_REASON: &str = "lease about to expire before delivery";

/// How many delivered messages are remembered (about 50 bytes each).
const REMEMBERED: usize = 100_000;

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
        let mut pipeline = Pipeline {
            config: self.config,
            webhook: self.webhook,
            metrics: self.metrics,
            db,
            lease,
            tasks: FuturesUnordered::new(),
            queue: VecDeque::new(),
            acks: VecDeque::new(),
            requests: 0,
            failing: 0,
            claiming: false,
            acking: false,
            claim_at: Instant::now(),
            wake_early: false,
            stopping: false,
            error: None,
        };
        pipeline.run(self.shutdown, &mut self.delivered).await
    }
}

/// A lease as the loop keeps it: when it ends by our clock (never later
/// than the database's: measured before the claim was sent), and whether
/// any of its items started.
struct Lease {
    id: String,
    ends: Instant,
    started: Cell<bool>,
}

/// A claimed item waiting for a delivery slot.
struct Queued {
    lease: Rc<Lease>,
    item: Item,
}

/// A delivery whose answer was a 2xx (or that was delivered before a
/// reconnect), waiting for its ack.
struct Answered {
    lease: Rc<Lease>,
    item: Item,
    /// The answer's status, or None when it was not POSTed again.
    status: Option<u16>,
    elapsed_ms: u64,
}

/// What a task of the loop finished with.
enum Event {
    Claimed { claimed_at: Instant, batch: Result<Batch, tokio_postgres::Error> },
    Posted { lease: Rc<Lease>, item: Item, answer: Result<Answer, PostError>, elapsed: Duration },
    Acked { group: Vec<Answered>, acked: Result<i64, tokio_postgres::Error> },
    Failed { item: Item, error: String, elapsed_ms: u64, outcomes: Result<Vec<FailOutcome>, tokio_postgres::Error> },
    Released { lease_id: String, ids: Vec<i64>, reason: &'static str, released: Result<i64, tokio_postgres::Error> },
}

type Task<'a> = Pin<Box<dyn Future<Output = Event> + 'a>>;

/// One connection's loop. The tasks (requests, claims, acks, fails,
/// releases) run concurrently in `tasks`; all the state is changed here,
/// between them, on one thread.
struct Pipeline<'a> {
    config: &'a Config,
    webhook: &'a Webhook,
    metrics: &'a Metrics,
    db: &'a Db,
    lease: Duration,
    tasks: FuturesUnordered<Task<'a>>,
    /// Claimed items not started yet, in claim order (so a lease's items are
    /// next to each other).
    queue: VecDeque<Queued>,
    /// 2xx answers waiting for an ack.
    acks: VecDeque<Answered>,
    /// Requests in flight.
    requests: usize,
    /// Items whose fails are being recorded.
    failing: usize,
    claiming: bool,
    acking: bool,
    /// No claim before this instant (after a claim found nothing, or none of
    /// a claim's items could start).
    claim_at: Instant,
    /// Whether a notification may bring `claim_at` forward (it may after an
    /// empty claim, not during the pause after a lease too short to use).
    wake_early: bool,
    /// Shutdown requested or the database failed: nothing new starts.
    stopping: bool,
    /// The database error that stopped the loop.
    error: Option<tokio_postgres::Error>,
}

impl<'a> Pipeline<'a> {
    async fn run(&mut self, shutdown: &Shutdown, delivered: &mut Delivered) -> Result<(), tokio_postgres::Error> {
        loop {
            if !self.stopping && shutdown.requested() {
                self.stop();
            }
            self.start(delivered);
            if self.tasks.is_empty() {
                if self.stopping {
                    break;
                }
                // Nothing under way and nothing to claim yet: wait for a
                // notification, the poll interval, or a shutdown.
                tokio::select! {
                    _ = self.db.wakeups.notified(), if self.wake_early => self.claim_at = Instant::now(),
                    _ = tokio::time::sleep_until(self.claim_at.into()) => {}
                    _ = shutdown.wait() => self.stop(),
                }
                continue;
            }
            let waiting = !self.stopping && self.claim_at > Instant::now();
            tokio::select! {
                Some(event) = self.tasks.next() => self.handle(event, delivered),
                _ = self.db.wakeups.notified(), if waiting && self.wake_early => self.claim_at = Instant::now(),
                _ = tokio::time::sleep_until(self.claim_at.into()), if waiting => {}
                _ = shutdown.wait(), if !self.stopping => self.stop(),
            }
        }
        match self.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Slots taken: requests in flight, fails being recorded, the ack in
    /// flight and the groups of answers waiting for theirs.
    fn busy(&self) -> usize {
        let mut groups: Vec<&Rc<Lease>> = Vec::new();
        for answered in &self.acks {
            if !groups.iter().any(|lease| Rc::ptr_eq(lease, &answered.lease)) {
                groups.push(&answered.lease);
            }
        }
        self.requests + self.failing + usize::from(self.acking) + groups.len()
    }

    /// Starts what can start: the next group of acks, items into free slots
    /// (releasing what the lease rule forbids), and a claim when everything
    /// claimed has started.
    fn start(&mut self, delivered: &mut Delivered) {
        if !self.acking && self.error.is_none() {
            self.ack_next_group();
        }
        while !self.stopping && self.busy() < self.config.concurrency {
            let Some(next) = self.queue.front() else { break };
            // Checked before a request starts, never during one: a request
            // that has begun is finished and acked (or failed).
            if Instant::now() + self.config.request_timeout + ACK_ALLOWANCE > next.lease.ends {
                self.release_lease_rest();
                continue;
            }
            let Some(Queued { lease, item }) = self.queue.pop_front() else { break };
            lease.started.set(true);
            if delivered.contains_all(&item.message_ids) {
                // POSTed with success before a reconnect, and handed out again
                // because the ack did not survive: ack it, do not send it twice.
                self.acks.push_back(Answered { lease, item, status: None, elapsed_ms: 0 });
                if !self.acking {
                    self.ack_next_group();
                }
            } else {
                self.post(lease, item);
            }
        }
        if !self.stopping && !self.claiming && self.wants_claim() && Instant::now() >= self.claim_at {
            self.claim();
        }
    }

    /// Whether the next claim is due. With one slot: when nothing is queued
    /// or under way (claim, then deliver one at a time, then claim). With
    /// more: as soon as fewer items are queued than one claim brings (or than
    /// there are slots, when a claim brings fewer), so one claim is kept
    /// ahead and its items arrive before the slots run dry. A claim takes
    /// about as long as a batch's requests at 0 ms, and a digest claim of 100
    /// recipients longer than 32 slots need to send the queue at 50 ms: with
    /// the claim made only when the queue fell below the slots, the slots
    /// stood idle for most of each claim (digests at 50 ms reached 0.35-0.60
    /// of the limit, bench/notifier_throughput.sh). The price: a queue of up
    /// to two claims' items, whose leases run while they wait (the lease
    /// rule still applies to each).
    fn wants_claim(&self) -> bool {
        let slots = self.config.concurrency;
        if slots == 1 {
            self.queue.is_empty() && self.busy() == 0
        } else {
            self.queue.len() < slots.max(self.config.batch_size.max(1) as usize)
        }
    }

    /// Gives back the queued items of the lease at the front of the queue,
    /// which is about to end: a delivery that might outlast its lease could be
    /// re-claimed and sent again by another consumer meanwhile.
    fn release_lease_rest(&mut self) {
        let Some(lease) = self.queue.front().map(|q| Rc::clone(&q.lease)) else { return };
        let rest = self.take_queued(&lease);
        warn!(
            "lease {} is about to expire with {} messages undelivered; \
             a smaller --batch-size, a longer --lease or a higher --concurrency avoids this",
            lease.id,
            rest.iter().map(|item| item.message_ids.len()).sum::<usize>()
        );
        self.release(&lease.id, &rest, LEASE_REASON);
        if !lease.started.get() {
            // Not even the first item fitted (the claim itself took most of
            // the lease). A release costs no attempt, so claiming again at
            // once could go round like this for ever: pause.
            warn!(
                "no message of lease {} could start inside it; claiming again in {}",
                lease.id,
                human(self.config.poll_interval)
            );
            self.claim_at = Instant::now() + self.config.poll_interval;
            self.wake_early = false;
        }
    }

    /// Removes the queued items of `lease` (they are next to each other, at
    /// the front when called).
    fn take_queued(&mut self, lease: &Rc<Lease>) -> Vec<Item> {
        let mut items = Vec::new();
        while self.queue.front().is_some_and(|q| Rc::ptr_eq(&q.lease, lease)) {
            if let Some(queued) = self.queue.pop_front() {
                items.push(queued.item);
            }
        }
        items
    }

    /// Shutdown: nothing new starts; what is queued goes back at once, so
    /// that other notifiers can take it while our requests finish.
    fn stop(&mut self) {
        self.stopping = true;
        while let Some(lease) = self.queue.front().map(|q| Rc::clone(&q.lease)) {
            let rest = self.take_queued(&lease);
            self.release(&lease.id, &rest, SHUTDOWN_REASON);
        }
    }

    /// The database failed: nothing more is sent to it. Requests in flight
    /// finish (their 2xx answers are remembered); queued items and waiting
    /// acks are left to the lease's expiry, or to the memory of deliveries.
    fn fail_db(&mut self, e: tokio_postgres::Error) {
        self.error.get_or_insert(e);
        self.stopping = true;
        self.queue.clear();
        self.acks.clear();
    }

    fn claim(&mut self) {
        self.claiming = true;
        let (db, config) = (self.db, self.config);
        self.tasks.push(Box::pin(async move {
            // Measured before the claim is sent, so our idea of the lease's end is
            // never later than the database's (visible_at = claim's now() + lease).
            let claimed_at = Instant::now();
            let batch = if config.digest {
                db.claim_digest(&config.consumer, config.batch_size, &config.lease).await
            } else {
                db.claim(&config.consumer, config.batch_size, &config.lease).await
            };
            Event::Claimed { claimed_at, batch }
        }));
    }

    fn post(&mut self, lease: Rc<Lease>, item: Item) {
        self.requests += 1;
        let (webhook, metrics, digest) = (self.webhook, self.metrics, self.config.digest);
        self.tasks.push(Box::pin(async move {
            // a digest lists all of its messages
            let ids = item.message_ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
            let id_header = if digest { "X-Followup-Message-Ids" } else { "X-Followup-Message-Id" };
            let headers = [("Idempotency-Key", item.key.as_str()), (id_header, ids.as_str())];
            metrics.in_flight.inc();
            let started = Instant::now();
            let answer = webhook.post(&headers, item.body.clone()).await;
            let elapsed = started.elapsed();
            metrics.in_flight.dec();
            metrics.latency.observe(elapsed.as_secs_f64());
            Event::Posted { lease, item, answer, elapsed }
        }));
    }

    /// The next ack: every waiting 2xx under the lease of the oldest one, in
    /// one statement.
    fn ack_next_group(&mut self) {
        let Some(lease) = self.acks.front().map(|a| Rc::clone(&a.lease)) else { return };
        let (group, others): (Vec<Answered>, Vec<Answered>) =
            self.acks.drain(..).partition(|a| Rc::ptr_eq(&a.lease, &lease));
        self.acks.extend(others);
        self.acking = true;
        let db = self.db;
        self.tasks.push(Box::pin(async move {
            let ids: Vec<i64> = group.iter().flat_map(|a| a.item.message_ids.iter().copied()).collect();
            let acked = db.ack(&lease.id, &ids).await;
            Event::Acked { group, acked }
        }));
    }

    fn fail(&mut self, lease: Rc<Lease>, item: Item, error: String, elapsed_ms: u64) {
        self.failing += 1;
        let db = self.db;
        self.tasks.push(Box::pin(async move {
            let mut outcomes = Vec::new();
            for &id in &item.message_ids {
                match db.fail(&lease.id, id, &error).await {
                    Ok(outcome) => outcomes.push(outcome),
                    Err(e) => return Event::Failed { item, error, elapsed_ms, outcomes: Err(e) },
                }
            }
            Event::Failed { item, error, elapsed_ms, outcomes: Ok(outcomes) }
        }));
    }

    fn release(&mut self, lease_id: &str, items: &[Item], reason: &'static str) {
        let ids: Vec<i64> = items.iter().flat_map(|item| item.message_ids.iter().copied()).collect();
        if ids.is_empty() {
            return;
        }
        let (db, lease_id) = (self.db, lease_id.to_string());
        self.tasks.push(Box::pin(async move {
            let released = db.release(&lease_id, &ids).await;
            Event::Released { lease_id, ids, reason, released }
        }));
    }

    fn handle(&mut self, event: Event, delivered: &mut Delivered) {
        match event {
            Event::Claimed { claimed_at, batch } => {
                self.claiming = false;
                match batch {
                    Ok(batch) if batch.items.is_empty() => {
                        self.claim_at = Instant::now() + self.config.poll_interval;
                        self.wake_early = true;
                    }
                    Ok(Batch { lease_id, items }) => {
                        let lease =
                            Rc::new(Lease { id: lease_id, ends: claimed_at + self.lease, started: Cell::new(false) });
                        if self.stopping {
                            // claimed while we were asked to stop: straight back
                            if self.error.is_none() {
                                self.release(&lease.id, &items, SHUTDOWN_REASON);
                            }
                        } else {
                            self.queue.extend(items.into_iter().map(|item| Queued { lease: Rc::clone(&lease), item }));
                        }
                    }
                    Err(e) => self.fail_db(e),
                }
            }
            Event::Posted { lease, item, answer, elapsed } => {
                self.requests -= 1;
                let elapsed_ms = elapsed.as_millis() as u64;
                match answer {
                    Ok(answer) if answer.is_success() => {
                        // Counted and remembered before the ack is sent: if the
                        // connection dies before its answer, we know not to send
                        // these again.
                        self.metrics.delivered.inc_by(item.message_ids.len() as u64);
                        delivered.insert(&item.message_ids);
                        if self.error.is_none() {
                            let status = Some(answer.status.as_u16());
                            self.acks.push_back(Answered { lease, item, status, elapsed_ms });
                        }
                    }
                    answer => {
                        let error = match answer {
                            Ok(answer) => answer.to_string(),
                            Err(e) => e.to_string(),
                        };
                        // (after a database error it comes back when its lease
                        // expires, as an attempt)
                        if self.error.is_none() {
                            self.fail(lease, item, error, elapsed_ms);
                        }
                    }
                }
            }
            Event::Acked { group, acked } => {
                self.acking = false;
                match acked {
                    Ok(acked) => log_acked(&group, acked),
                    Err(e) => self.fail_db(e),
                }
            }
            Event::Failed { item, error, elapsed_ms, outcomes } => {
                self.failing -= 1;
                match outcomes {
                    Ok(outcomes) => self.count_failed(&item, &error, elapsed_ms, &outcomes),
                    Err(e) => self.fail_db(e),
                }
            }
            Event::Released { lease_id, ids, reason, released } => match released {
                Ok(released) => {
                    self.metrics.released.inc_by(released.max(0) as u64);
                    log_released(&lease_id, &ids, reason, released);
                }
                Err(e) => self.fail_db(e),
            },
        }
    }

    /// Counts a failed item's outcomes and logs one line for it.
    fn count_failed(&self, item: &Item, error: &str, elapsed_ms: u64, outcomes: &[FailOutcome]) {
        for (&id, outcome) in item.message_ids.iter().zip(outcomes) {
            match outcome {
                FailOutcome::Pending => {
                    self.metrics.failed.inc();
                }
                FailOutcome::Dead => {
                    self.metrics.failed.inc();
                    self.metrics.dead.inc();
                }
                FailOutcome::LeaseNotCurrent | FailOutcome::Cancelled => {}
                FailOutcome::Unknown(answer) => {
                    error!(message_id = id, answer = %answer, "followup.fail gave an answer this notifier does not know; is the extension newer than the notifier?");
                }
            }
        }
        let outcome = match outcomes.first() {
            Some(FailOutcome::Pending) => "pending, retried after the backoff",
            Some(FailOutcome::Dead) => "dead: max attempts reached (followup.requeue_dead to retry)",
            Some(FailOutcome::Cancelled) => "cancelled: withdrawn by an admin, not retried",
            Some(FailOutcome::Unknown(_)) => "unknown: see the error above",
            _ => "not recorded: the lease is no longer ours",
        };
        let (message_id, key) = (id_ranges(&item.message_ids), item.key.as_str());
        warn!(message_id = %message_id, key = %key, elapsed_ms, error = %error, outcome, "failed");
    }
}

/// One line per acked delivery, once its ack has been answered.
fn log_acked(group: &[Answered], acked: i64) {
    let asked: usize = group.iter().map(|a| a.item.message_ids.len()).sum();
    let all = acked == asked as i64;
    for answered in group {
        let (message_id, key) = (id_ranges(&answered.item.message_ids), answered.item.key.as_str());
        let elapsed_ms = answered.elapsed_ms;
        match (answered.status, all) {
            (Some(status), true) => info!(message_id = %message_id, key = %key, status, elapsed_ms, "delivered"),
            (None, true) => info!(
                message_id = %message_id, key = %key,
                "already delivered by this notifier before the connection was lost; acked without posting it again"
            ),
            // Only possible after our lease expired and another consumer
            // re-claimed the message: it may be delivered once more, with the
            // same Idempotency-Key. (An ack answers how many it acked, not
            // which: with others in the same ack, this one may have been.)
            (Some(status), false) => warn!(
                message_id = %message_id, key = %key, status, elapsed_ms,
                "delivered, but the ack was refused: the lease is no longer ours{}", refused_part(acked, asked)
            ),
            (None, false) => warn!(
                message_id = %message_id, key = %key,
                "already delivered by this notifier before the connection was lost; not posted again, \
                 but the ack was refused: the lease is no longer ours{}", refused_part(acked, asked)
            ),
        }
    }
}

/// For a refused ack of several messages: how many of them it did ack.
fn refused_part(acked: i64, asked: usize) -> String {
    if asked == 1 {
        String::new()
    } else {
        format!(" ({acked} of the {asked} messages of its ack were acked)")
    }
}

/// One line for a release, with the ids as ranges.
fn log_released(lease_id: &str, ids: &[i64], reason: &str, released: i64) {
    let asked = ids.len() as i64;
    let noun = if asked == 1 { "message" } else { "messages" };
    if released == asked {
        info!(
            "released {released} undelivered {noun} ({reason}) -> pending, claimable at once, \
             no attempt counted: message_ids={}",
            id_ranges(ids)
        );
    } else {
        // Only possible once our lease has expired: another consumer
        // re-claimed those messages and now owns their outcome.
        warn!(
            "released {released} of {asked} undelivered {noun} ({reason}) -> pending, claimable at once, \
             no attempt counted; the other {} were no longer held by lease {lease_id} \
             (re-claimed by another consumer): message_ids={}",
            asked - released,
            id_ranges(ids)
        );
    }
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

    #[test]
    fn refused_acks_say_how_many_of_a_group() {
        assert_eq!(refused_part(0, 1), "");
        assert_eq!(refused_part(2, 3), " (2 of the 3 messages of its ack were acked)");
    }
}
