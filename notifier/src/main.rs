//! followup-notifier: the reference consumer of pg_followup's outbox.
//!
//! LISTENs on followup_outbox, claims messages in batches (followup.claim),
//! POSTs each to a webhook and acks or fails it (followup.ack / followup.fail),
//! and hands back what it did not send (followup.release).
//! See notifier/README.md for the configuration and the delivery semantics.
//!
//! Modules: config (flags and environment), db (connection and the
//! protocol's SQL), delivery (the claim/deliver/ack loop), webhook (the HTTP
//! client), metrics (/metrics and /healthz), shutdown (signals), log. The
//! connection string as libpq reads it and rustls for the database are the
//! `pgconn` crate's, shared with the console.

mod config;
mod db;
mod delivery;
mod log;
mod metrics;
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
    // One thread is plenty: the work is one connection and one request at a
    // time, and it keeps the order of events in the log the order they ran.
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
    let webhook = match Webhook::new(config.webhook_url.clone(), config.request_timeout, config.ca_file.as_deref()) {
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
             ({} {}, lease {}, request timeout {}, poll every {})",
            config.consumer,
            deliverer.webhook.url(),
            if config.digest { "digests of up to" } else { "batch" },
            if config.digest { format!("{} recipients", config.batch_size) } else { config.batch_size.to_string() },
            human(lease),
            human(config.request_timeout),
            human(config.poll_interval)
        );
    }
    *started = true;
    deliverer.serve(&db, lease).await?;
    Ok(())
}
