//! `--metrics-addr`: counters the delivery loop keeps (prometheus-client) and a
//! small HTTP/1.1 server (hyper) with two routes:
//!
//! - `GET /metrics`: Prometheus text format (0.0.4). The counters, the
//!   latency histogram and the requests in flight, whether the database
//!   connection is up, and the age of the oldest claimable message, read from
//!   the database at each scrape.
//!
//! The delivery loop updates [`Metrics`]; this module reads the database only
//! through db.rs's [`Probe`] (the health and age queries), and knows nothing
//! of the loop.
//! - `GET /healthz`: 200 while the notifier is connected to a primary that
//!   takes writes, 503 otherwise (no connection, a standby, a read-only
//!   server), with a one-line reason.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::warn;

use crate::db::{self, Probe};

/// A scrape or a health check waits this long for the database at most.
const DB_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// What the delivery loop counts. Cheap to update (atomics); the registry
/// holds clones of the same counters.
pub struct Metrics {
    pub delivered: Counter,
    pub failed: Counter,
    pub dead: Counter,
    pub released: Counter,
    /// Duration of each webhook request, whatever its outcome.
    pub latency: Histogram,
    /// Webhook requests started and not yet answered (at most --concurrency).
    pub in_flight: Gauge,
    pub connected: Gauge,
    oldest: Arc<OldestClaimable>,
    registry: Registry,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("followup_notifier");
        let delivered = Counter::default();
        let failed = Counter::default();
        let dead = Counter::default();
        let released = Counter::default();
        let latency = Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]);
        let in_flight = Gauge::default();
        let connected = Gauge::default();
        let oldest = Arc::new(OldestClaimable::default());
        registry.register(
            "delivered",
            "Messages POSTed with a 2xx answer (acked, or acked again when handed out once more)",
            delivered.clone(),
        );
        registry.register(
            "failed",
            "Failed delivery attempts recorded with followup.fail (an error answer, a timeout, a connection \
             or TLS error), including those that made the message dead",
            failed.clone(),
        );
        registry.register("dead", "Messages that followup.fail made dead (max attempts reached)", dead.clone());
        registry.register(
            "released",
            "Messages handed back undelivered with followup.release (shutdown, or a lease about to end)",
            released.clone(),
        );
        registry.register_with_unit(
            "delivery_duration",
            "Duration of the webhook requests, from the start of the request to the end of the answer",
            Unit::Seconds,
            latency.clone(),
        );
        registry.register(
            "requests_in_flight",
            "Webhook requests started and not answered yet (at most --concurrency)",
            in_flight.clone(),
        );
        registry.register("database_connected", "1 while connected to the database, else 0", connected.clone());
        registry.register_collector(Box::new(Arc::clone(&oldest)));
        Metrics { delivered, failed, dead, released, latency, in_flight, connected, oldest, registry }
    }

    /// The exposition, after reading the age of the oldest claimable message.
    async fn render(&self, probe: Option<Probe>) -> String {
        let age = match probe {
            Some(probe) => match tokio::time::timeout(DB_CHECK_TIMEOUT, probe.oldest_claimable_age()).await {
                Ok(Ok(age)) => Some(age),
                Ok(Err(e)) => {
                    if db::is_permission_denied(&e) {
                        self.oldest.warn_once(&db::error_text(&e));
                    }
                    None
                }
                Err(_) => None,
            },
            None => None,
        };
        *self.oldest.value.lock().unwrap() = age;
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// The age gauge: present only when it could be read at this scrape (an
/// absent series rather than a stale or made-up value).
#[derive(Debug, Default)]
struct OldestClaimable {
    value: Mutex<Option<f64>>,
    warned: AtomicBool,
}

impl OldestClaimable {
    fn warn_once(&self, error: &str) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            warn!(
                "cannot read the age of the oldest claimable message ({error}); grant the notifier's role \
                 EXECUTE ON FUNCTION followup.oldest_claimable_age() to have it in /metrics"
            );
        }
    }
}

impl Collector for OldestClaimable {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(age) = *self.value.lock().unwrap() else { return Ok(()) };
        let metric = ConstGauge::new(age);
        let metric_encoder = encoder.encode_descriptor(
            "oldest_claimable_age",
            "Seconds since the claimable message with the lowest id (the next one a claim hands out) was \
             enqueued, from followup.oldest_claimable_age(); 0 when none is claimable",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?;
        metric.encode(metric_encoder)
    }
}

/// Binds the address (an error here is a configuration error, reported at
/// start) and serves it in the background for the life of the process.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    probe: watch::Receiver<Option<Probe>>,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    warn!("metrics server: cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let metrics = Arc::clone(&metrics);
            let probe = probe.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let metrics = Arc::clone(&metrics);
                    let probe = probe.borrow().clone();
                    async move { Ok::<_, std::convert::Infallible>(route(request, &metrics, probe).await) }
                });
                // A client that goes away mid-request is no concern of ours.
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(bound)
}

async fn route(request: Request<Incoming>, metrics: &Metrics, probe: Option<Probe>) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return answer(StatusCode::METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", "GET only\n".into());
    }
    match request.uri().path() {
        "/metrics" => answer(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", metrics.render(probe).await),
        "/healthz" => {
            let (status, text) = health(probe).await;
            answer(status, "text/plain; charset=utf-8", format!("{text}\n"))
        }
        _ => answer(StatusCode::NOT_FOUND, "text/plain; charset=utf-8", "not found: /metrics or /healthz\n".into()),
    }
}

async fn health(probe: Option<Probe>) -> (StatusCode, String) {
    let Some(probe) = probe else {
        return (StatusCode::SERVICE_UNAVAILABLE, "not connected to the database".to_string());
    };
    match tokio::time::timeout(DB_CHECK_TIMEOUT, probe.writable()).await {
        Ok(Ok(true)) => (StatusCode::OK, "ok: connected to a writable primary".to_string()),
        Ok(Ok(false)) => {
            (StatusCode::SERVICE_UNAVAILABLE, "connected to a server that does not take writes".to_string())
        }
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("database check failed: {}", db::error_text(&e))),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, format!("database check took more than {DB_CHECK_TIMEOUT:?}")),
    }
}

fn answer(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, hyper::header::HeaderValue::from_static(content_type));
    response
}
