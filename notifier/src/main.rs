//! followup-notifier: the reference consumer of pg_followup's outbox.
//!
//! LISTENs on followup_outbox, claims messages in batches (followup.claim),
//! POSTs each to a webhook and acks or fails it (followup.ack / followup.fail),
//! and hands back what it did not send (followup.release).
//! See notifier/README.md for the configuration and the delivery semantics.
//!
//! Modules: config (flags and environment), db (connection and the protocol's
//! SQL), delivery (the claim/deliver/ack loop), http (the webhook client),
//! shutdown (signals), log (stderr lines).

mod config;
mod db;
mod delivery;
mod http;
mod log;
mod shutdown;

use std::process::ExitCode;
use std::time::Duration;

use config::{Command, Config};
use db::Db;
use log::log;
use shutdown::Shutdown;

/// Pause before reconnecting after the database connection failed.
const RECONNECT_DELAY: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let config = match config::parse(std::env::args().skip(1)) {
        Ok(Command::Run(config)) => config,
        Ok(Command::Help) => {
            print!("{}", config::usage());
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("followup-notifier {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("followup-notifier: {e}\nTry 'followup-notifier --help'.");
            return ExitCode::from(2);
        }
    };
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
            log!("cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut started = false;
    loop {
        match session(config, &shutdown, &mut started).await {
            Ok(()) => {
                log!("stopped");
                return ExitCode::SUCCESS;
            }
            Err(Stop::Fatal(message)) => {
                log!("{message}");
                return ExitCode::FAILURE;
            }
            // Failing at start is most likely the configuration (wrong
            // database, extension not installed): say so and exit, and let a
            // service manager decide about restarts. Once running, a lost
            // connection is an outage to ride out.
            Err(Stop::Db(e)) if !started => {
                log!("cannot start: {}", db::error_text(&e));
                return ExitCode::FAILURE;
            }
            Err(Stop::Db(e)) => {
                log!("database error: {}; reconnecting in {}", db::error_text(&e), http::human(RECONNECT_DELAY));
                tokio::select! {
                    _ = tokio::time::sleep(RECONNECT_DELAY) => {}
                    _ = shutdown.wait() => {
                        log!("stopped");
                        return ExitCode::SUCCESS;
                    }
                }
            }
        }
    }
}

/// One connection's life: connect, check the lease, serve.
async fn session(config: &Config, shutdown: &Shutdown, started: &mut bool) -> Result<(), Stop> {
    let db = Db::connect(&config.database).await?;
    let seconds = db.lease_seconds(&config.lease).await?;
    if !(seconds > 0.0 && seconds <= 86_400.0) {
        return Err(Stop::Fatal(format!("the lease '{}' must be positive and at most 1 day", config.lease)));
    }
    let lease = Duration::from_secs_f64(seconds);
    delivery::check_lease(lease, config.request_timeout).map_err(Stop::Fatal)?;
    if *started {
        log!("reconnected; listening on followup_outbox");
    } else {
        log!(
            "consumer {} listening on followup_outbox; delivering to {} (batch {}, lease {}, request timeout {}, poll every {})",
            config.consumer,
            config.webhook.url(),
            config.batch_size,
            http::human(lease),
            http::human(config.request_timeout),
            http::human(config.poll_interval)
        );
    }
    *started = true;
    delivery::serve(config, &db, lease, shutdown).await?;
    Ok(())
}
