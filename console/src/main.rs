//! followup-console: pg_followup's web console and JSON API.
//!
//! PostgreSQL decides who you are (a login is a database connection opened
//! with your own role and password) and the GRANTs decide what you may do
//! (every statement runs on that connection); the console keeps no user store
//! and holds no privilege of its own. See README.md, "Console".
//!
//! Modules, each using only those after it (main -> routes -> session ->
//! db, views, charts):
//!
//! | module    | one concern                                                              |
//! |-----------|--------------------------------------------------------------------------|
//! | `main`    | start: flags, logging, the listener (HTTPS, or plain on loopback), shutdown |
//! | `config`  | flags and `FOLLOWUP_CONSOLE_*` variables, checked                        |
//! | `routes`  | the router; CSRF guard and security headers; who is asking; pages and the JSON API |
//! | `session` | logins, one database connection per session, expiry, slowing failed logins |
//! | `db`      | the SQL of every page and action; SQLSTATEs                               |
//! | `views`   | the HTML (maud templates; every value escaped)                           |
//! | `charts`  | the overview's SVG charts (plotters)                                     |
//!
//! The connection string and its TLS are the `pgconn` crate's (shared with
//! the notifier).

mod charts;
mod config;
mod db;
mod routes;
mod session;
mod views;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tracing::{error, info};

use config::{Config, LogFormat};
use routes::AppState;
use session::Sessions;

/// How long a shutdown waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    config::drop_empty_env();
    // clap prints its own errors (and --help, --version) and exits 2 on bad flags
    let args = config::Args::parse();
    init_log(args.log_format);
    let config = match Config::from_args(args) {
        Ok(config) => config,
        Err(e) => {
            error!("{e}");
            return ExitCode::from(2);
        }
    };
    pgconn::tls::install_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("cannot start the tokio runtime");
    runtime.block_on(serve(config))
}

/// One line per event on stderr: `<UTC time> <LEVEL> <message> key=value`,
/// or one JSON object a line.
fn init_log(format: LogFormat) {
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr).with_target(false).with_ansi(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).with_span_list(false).init(),
    }
}

async fn serve(config: Config) -> ExitCode {
    let tls = match pgconn::tls::postgres(&config.database) {
        Ok(tls) => tls,
        Err(e) => {
            error!("--database-url: {e}");
            return ExitCode::from(2);
        }
    };
    let https = config.tls.is_some();
    let sessions = Sessions::new(config.database, tls, config.session_idle, config.session_max, config.max_sessions);
    let state = Arc::new(AppState { sessions, https });
    let sweeper = Arc::clone(&state);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(15));
        loop {
            tick.tick().await;
            sweeper.sessions.sweep();
        }
    });
    let app = routes::router(state).into_make_service_with_connect_info::<SocketAddr>();

    let handle = axum_server::Handle::new();
    tokio::spawn(shutdown_on_signal(handle.clone()));
    let announce = {
        let handle = handle.clone();
        async move {
            if let Some(addr) = handle.listening().await {
                let scheme = if https { "https" } else { "http" };
                info!("serving the console on {scheme}://{addr}");
            }
        }
    };
    tokio::spawn(announce);
    let served = match &config.tls {
        Some(files) => {
            let rustls = match axum_server::tls_rustls::RustlsConfig::from_pem_file(&files.cert, &files.key).await {
                Ok(rustls) => rustls,
                Err(e) => {
                    error!("--tls-cert {} / --tls-key {}: {e}", files.cert.display(), files.key.display());
                    return ExitCode::from(2);
                }
            };
            axum_server::bind_rustls(config.listen, rustls).handle(handle).serve(app).await
        }
        None => axum_server::bind(config.listen).handle(handle).serve(app).await,
    };
    match served {
        Ok(()) => {
            info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            error!("--listen {}: {e}", config.listen);
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_on_signal(handle: axum_server::Handle<SocketAddr>) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            error!("cannot install the SIGTERM handler: {e}");
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    info!("shutting down");
    handle.graceful_shutdown(Some(SHUTDOWN_GRACE));
}
