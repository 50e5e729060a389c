//! followup-notifier: the reference consumer of pg_followup's outbox.
//!
//! LISTENs on followup_outbox, claims messages in batches (followup.claim, or
//! followup.claim_digest with --digest), POSTs them to a webhook, up to
//! --concurrency at once, acks or fails each as it completes (followup.ack /
//! followup.fail), and hands back what it did not send (followup.release).
//! See notifier/README.md for the configuration and the delivery semantics.
//!
//! Modules, and who uses whom (one way, no cycles; `module_graph_is_one_way`
//! below checks it):
//!
//! ```text
//! main ──> delivery ──> db ──> protocol
//!  │         │  │        └───> log, pgconn (the connection string, rustls)
//!  │         │  └──> webhook, shutdown, metrics
//!  └──> metrics ──> db (its Probe: the health and age queries)
//! ```
//!
//! - protocol: the outbox protocol's data (Batch, Item, FailOutcome) and the
//!   Idempotency-Key formats; imports nothing of ours.
//! - db: the two connections and the protocol's SQL, returning protocol
//!   types.
//! - delivery: the loop (claim, deliver, ack or fail, release).
//! - metrics: counters the loop updates, /metrics and /healthz.
//! - webhook: the HTTP client. config (flags and environment), shutdown
//!   (signals), log (log format, error text) are leaves everyone may use; the
//!   connection string as libpq reads it and rustls for the database are the
//!   `pgconn` crate's, shared with the console.

mod config;
mod db;
mod delivery;
mod log;
mod metrics;
mod protocol;
mod shutdown;
mod webhook;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use pgconn::tls;
use tokio::sync::watch;
use tracing::{error, info, warn};

use config::{human, Config};
use db::{Db, Probe};
use delivery::{Delivered, Deliverer};
use metrics::Metrics;
use shutdown::Shutdown;
use webhook::Webhook;

/// Pauses before reconnecting after the database connection failed: doubled
/// after each failed attempt, from the first to the last.
const RECONNECT_FIRST: Duration = Duration::from_secs(1);
const RECONNECT_MAX: Duration = Duration::from_secs(30);

fn main() -> ExitCode {
    config::drop_empty_env();
    // clap prints its own errors (and --help, --version) and exits 2 on bad flags
    let args = config::Args::parse();
    log::init(args.log_format);
    let config = match Config::from_args(args) {
        Ok(config) => config,
        Err(e) => {
            error!("{e}");
            return ExitCode::from(2);
        }
    };
    tls::install_provider();
    // One thread is plenty: the work is waiting (for the webhook's answers
    // and the database's, on two connections), and one thread keeps the
    // state of the deliveries without locks and the log in the order of events.
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("cannot start the tokio runtime");
    runtime.block_on(run(&config))
}

enum Stop {
    /// A configuration problem: retrying cannot help.
    Fatal(String),
    Db(tokio_postgres::Error),
}

impl From<tokio_postgres::Error> for Stop {
    fn from(e: tokio_postgres::Error) -> Self {
        Stop::Db(e)
    }
}

async fn run(config: &Config) -> ExitCode {
    let shutdown = match Shutdown::install() {
        Ok(shutdown) => shutdown,
        Err(e) => {
            error!("cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let webhook = match Webhook::new(
        config.webhook_url.clone(),
        config.request_timeout,
        config.ca_file.as_deref(),
        config.concurrency,
    ) {
        Ok(webhook) => webhook,
        Err(e) => {
            error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let metrics = Arc::new(Metrics::new());
    let (probe_tx, probe_rx) = watch::channel::<Option<Probe>>(None);
    if let Some(addr) = config.metrics_addr {
        match metrics::serve(addr, Arc::clone(&metrics), probe_rx).await {
            Ok(bound) => info!("serving /metrics and /healthz on http://{bound}"),
            Err(e) => {
                error!("--metrics-addr {addr}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let mut deliverer = Deliverer {
        config,
        webhook: &webhook,
        metrics: &metrics,
        shutdown: &shutdown,
        delivered: Delivered::default(),
    };
    let mut started = false;
    let mut pause = RECONNECT_FIRST;
    loop {
        let mut connected = false;
        let result = session(&mut deliverer, &probe_tx, &mut started, &mut connected).await;
        probe_tx.send_replace(None);
        metrics.connected.set(0);
        match result {
            Ok(()) => {
                info!("stopped");
                return ExitCode::SUCCESS;
            }
            Err(Stop::Fatal(message)) => {
                error!("{message}");
                return ExitCode::FAILURE;
            }
            // Failing at start is most likely the configuration (wrong
            // database, extension not installed, a certificate refused): say
            // so and exit, and let a service manager decide about restarts.
            // Once running, a lost connection is an outage to ride out.
            Err(Stop::Db(e)) if !started => {
                error!("cannot start: {}", db::error_text(&e));
                return ExitCode::FAILURE;
            }
            Err(Stop::Db(e)) => {
                if connected {
                    pause = RECONNECT_FIRST;
                }
                warn!("database error: {}; reconnecting in {}", db::error_text(&e), human(pause));
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = shutdown.wait() => {
                        info!("stopped");
                        return ExitCode::SUCCESS;
                    }
                }
                pause = (pause * 2).min(RECONNECT_MAX);
            }
        }
    }
}

/// One connection's life: connect, check the lease, serve.
async fn session(
    deliverer: &mut Deliverer<'_>,
    probe: &watch::Sender<Option<Probe>>,
    started: &mut bool,
    connected: &mut bool,
) -> Result<(), Stop> {
    let config = deliverer.config;
    let tls = tls::postgres(&config.database).map_err(Stop::Fatal)?;
    let db = Db::connect(&config.database.config, tls).await?;
    *connected = true;
    let seconds = db.lease_seconds(&config.lease).await?;
    if !(seconds > 0.0 && seconds <= 86_400.0) {
        return Err(Stop::Fatal(format!("the lease '{}' must be positive and at most 1 day", config.lease)));
    }
    let lease = Duration::from_secs_f64(seconds);
    delivery::check_lease(lease, config.request_timeout).map_err(Stop::Fatal)?;
    let server = db.server().await?;
    probe.send_replace(Some(db.probe()));
    deliverer.metrics.connected.set(1);
    let sslmode = config.database.sslmode.name();
    if *started {
        info!("reconnected to {server} (sslmode {sslmode}); listening on followup_outbox");
    } else {
        info!(
            "consumer {} connected to {server} (sslmode {sslmode}), listening on followup_outbox; delivering to {} \
             ({} {}, concurrency {}, lease {}, request timeout {}, poll every {})",
            config.consumer,
            deliverer.webhook.url(),
            if config.digest { "digests of up to" } else { "batch" },
            if config.digest { format!("{} recipients", config.batch_size) } else { config.batch_size.to_string() },
            config.concurrency,
            human(lease),
            human(config.request_timeout),
            human(config.poll_interval)
        );
    }
    *started = true;
    deliverer.serve(&db, lease).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    /// Every module's source, to read its `crate::` references (main, the
    /// root, uses them all).
    const MODULES: [(&str, &str); 8] = [
        ("config", include_str!("config.rs")),
        ("db", include_str!("db.rs")),
        ("delivery", include_str!("delivery.rs")),
        ("log", include_str!("log.rs")),
        ("metrics", include_str!("metrics.rs")),
        ("protocol", include_str!("protocol.rs")),
        ("shutdown", include_str!("shutdown.rs")),
        ("webhook", include_str!("webhook.rs")),
    ];

    /// The modules `source` names as `crate::<module>` outside comments.
    fn uses(source: &str) -> BTreeSet<String> {
        let mut used = BTreeSet::new();
        for line in source.lines().map(str::trim_start).filter(|l| !l.starts_with("//")) {
            for (i, _) in line.match_indices("crate::") {
                let name: String = line[i + 7..].chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
                used.insert(name);
            }
        }
        used
    }

    fn graph() -> BTreeMap<&'static str, BTreeSet<String>> {
        MODULES.iter().map(|(name, source)| (*name, uses(source))).collect()
    }

    /// The dependency direction described at the top of this file.
    #[test]
    fn module_graph_is_one_way() {
        let graph = graph();
        let known: BTreeSet<&str> = MODULES.iter().map(|(name, _)| *name).collect();
        for (module, used) in &graph {
            for target in used {
                assert!(known.contains(target.as_str()), "{module} uses crate::{target}, not in MODULES");
            }
        }
        assert!(graph["protocol"].is_empty(), "protocol imports nothing of ours: {:?}", graph["protocol"]);
        for (module, forbidden) in [
            ("db", ["delivery", "metrics", "webhook"].as_slice()),
            ("metrics", ["delivery", "webhook"].as_slice()),
            ("webhook", ["delivery", "db", "metrics"].as_slice()),
        ] {
            for target in forbidden {
                assert!(!graph[module].contains(*target), "{module} must not use {target}");
            }
        }
        assert!(
            graph["delivery"].contains("db") && graph["db"].contains("protocol"),
            "main -> delivery -> db -> protocol"
        );

        // No cycle anywhere: remove modules that use nothing left, until none is left.
        let mut left: BTreeMap<&str, BTreeSet<String>> = graph.clone();
        while !left.is_empty() {
            let leaves: Vec<&str> = left
                .iter()
                .filter(|(_, used)| used.iter().all(|t| !left.contains_key(t.as_str())))
                .map(|(m, _)| *m)
                .collect();
            assert!(!leaves.is_empty(), "a cycle among {:?}", left.keys().collect::<Vec<_>>());
            for leaf in leaves {
                left.remove(leaf);
            }
        }
    }

    #[test]
    fn uses_reads_code_not_comments() {
        let used = uses("use crate::db::{Db, Probe};\n// crate::delivery in a comment\nlet x = crate::log::chain(e);");
        assert_eq!(used.into_iter().collect::<Vec<_>>(), ["db", "log"]);
    }
}
