//! bench-receiver: the webhook of `bench/notifier_throughput.sh`.
//!
//! Answers every request with `200 ok` after `--delay-ms`, over HTTP/1.1 with
//! keep-alive, or HTTPS with `--tls-cert` / `--tls-key`. It reads each body
//! (so the connection can be reused) and keeps three counters, nothing else:
//! requests, connections, and the most requests it held at once. It is built
//! to cost the notifier's side as little as possible: one thread, no log per
//! request, a sleep that is a timer and not a thread.
//!
//! It binds 127.0.0.1 on a free port and writes the port to `--port-file`
//! (written to a temporary name, then renamed: a reader never sees half of
//! it). On SIGTERM or SIGINT it writes the counters to `--count-file` (one
//! `name value` line each) and exits 0.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio_rustls::TlsAcceptor;

#[derive(Parser)]
#[command(
    name = "bench-receiver",
    about = "Answers every POST with 200 after a delay (the notifier benchmark's webhook)"
)]
struct Args {
    /// Where to write the port it listens on (127.0.0.1, chosen by the system).
    #[arg(long, value_name = "FILE")]
    port_file: PathBuf,
    /// Where to write the counters on SIGTERM.
    #[arg(long, value_name = "FILE")]
    count_file: PathBuf,
    /// Milliseconds to wait before each answer.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    delay_ms: u64,
    /// PEM certificate chain: serve HTTPS.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Its PEM private key.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    connections: AtomicU64,
    in_flight: AtomicU64,
    most_in_flight: AtomicU64,
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(acceptor(cert, key)?),
        _ => None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(serve(args, tls))
}

fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .and_then(|builder| builder.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| format!("TLS: {e}"))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

async fn serve(args: Args, tls: Option<TlsAcceptor>) -> Result<(), String> {
    let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| format!("cannot listen: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let partial = args.port_file.with_extension("tmp");
    std::fs::write(&partial, port.to_string())
        .and_then(|()| std::fs::rename(&partial, &args.port_file))
        .map_err(|e| format!("{}: {e}", args.port_file.display()))?;
    let counters = Arc::new(Counters::default());
    let delay = Duration::from_millis(args.delay_ms);
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    eprintln!("bench-receiver: accept: {e}");
                    continue;
                }
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        };
        let _ = stream.set_nodelay(true);
        counters.connections.fetch_add(1, Ordering::Relaxed);
        let (counters, tls) = (Arc::clone(&counters), tls.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| answer(request, delay, Arc::clone(&counters)));
            let http = hyper::server::conn::http1::Builder::new();
            // A client that goes away, or a refused handshake, is the client's business.
            match tls {
                Some(tls) => {
                    if let Ok(stream) = tls.accept(stream).await {
                        let _ = http.serve_connection(TokioIo::new(stream), service).await;
                    }
                }
                None => {
                    let _ = http.serve_connection(TokioIo::new(stream), service).await;
                }
            }
        });
    }
    let text = format!(
        "requests {}\nconnections {}\nmost_in_flight {}\n",
        counters.requests.load(Ordering::Relaxed),
        counters.connections.load(Ordering::Relaxed),
        counters.most_in_flight.load(Ordering::Relaxed)
    );
    std::fs::write(&args.count_file, text).map_err(|e| format!("{}: {e}", args.count_file.display()))
}

async fn answer(
    request: Request<Incoming>,
    delay: Duration,
    counters: Arc<Counters>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let now = counters.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
    counters.most_in_flight.fetch_max(now, Ordering::Relaxed);
    // the whole body, so that the connection can take the next request
    let _ = request.into_body().collect().await;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    counters.requests.fetch_add(1, Ordering::Relaxed);
    counters.in_flight.fetch_sub(1, Ordering::Relaxed);
    Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
}
