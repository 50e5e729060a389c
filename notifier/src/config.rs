//! Configuration: command-line flags (clap), each with an environment-variable
//! fallback and a default, so the notifier can be configured either way (a
//! systemd EnvironmentFile, a container's env, or flags by hand). A flag wins
//! over its environment variable, which wins over the default; a variable set
//! to the empty string counts as unset.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use pgconn::conninfo::{self, Database};

const ABOUT: &str = "Delivers pg_followup's outbox (followup.outbox) to an HTTP(S) webhook.";
const LONG_ABOUT: &str = "Delivers pg_followup's outbox (followup.outbox) to an HTTP(S) webhook.

LISTENs on followup_outbox (a hint: polling alone delivers everything), claims messages \
in batches with followup.claim, POSTs each one as JSON with the headers Idempotency-Key \
and X-Followup-Message-Id, up to --concurrency at once, acks it on a 2xx answer and fails \
it (retried after a backoff) otherwise. SIGTERM or SIGINT: release the claimed messages \
not sent yet (followup.release: claimable at once, no attempt counted), finish the \
requests in flight, exit 0.

A flag wins over its environment variable, which wins over the default. DURATION: a \
number of seconds, or a number with a unit: 500ms, 10s, 2m.";

#[derive(Parser, Debug)]
#[command(name = "followup-notifier", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Args {
    /// libpq-style connection string ('host=... dbname=...') or postgres:// URL.
    /// Parts it leaves out come from PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD,
    /// PGSSLMODE and PGSSLROOTCERT, as with psql. sslmode (disable, prefer, require,
    /// verify-ca, verify-full) and sslrootcert work as in libpq; several hosts with
    /// target_session_attrs=read-write follow a failover.
    #[arg(short = 'd', long, env = "FOLLOWUP_DATABASE", value_name = "CONNINFO", hide_env_values = true)]
    pub database: Option<String>,

    /// Where each message is POSTed as JSON (http:// or https://).
    #[arg(short = 'w', long, env = "FOLLOWUP_WEBHOOK_URL", value_name = "URL", value_parser = parse_webhook_url)]
    pub webhook_url: reqwest::Url,

    /// Consumer name recorded in followup.outbox.claimed_by [default: <hostname>-<pid>].
    #[arg(short = 'c', long, env = "FOLLOWUP_CONSUMER", value_name = "NAME")]
    pub consumer: Option<String>,

    /// Messages claimed at a time, 1 to 10000.
    #[arg(short = 'b', long, env = "FOLLOWUP_BATCH_SIZE", value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(i32).range(1..=10_000))]
    pub batch_size: i32,

    /// Deliveries under way at once, 1 to 1000: POSTs in flight (each on its own
    /// kept-alive connection), fails being recorded, and acks (one per lease's group of
    /// answers, however many messages). 1 delivers one message at a time.
    #[arg(long, env = "FOLLOWUP_CONCURRENCY", value_name = "N", default_value_t = 16,
          value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub concurrency: u16,

    /// How long a claimed batch is ours (a PostgreSQL interval). Messages not acked or
    /// failed by then go to another consumer. Must exceed the request timeout.
    #[arg(short = 'l', long, env = "FOLLOWUP_LEASE", value_name = "INTERVAL", default_value = "5 minutes")]
    pub lease: String,

    /// Limit on one webhook request (connect, TLS, send, the answer); past it the
    /// delivery counts as failed. Also bounds how long a shutdown waits.
    #[arg(short = 't', long, env = "FOLLOWUP_REQUEST_TIMEOUT", value_name = "DURATION", default_value = "10s",
          value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// When idle, look for work at least this often even without a notification
    /// (retries whose backoff ended and expired leases do not notify).
    #[arg(short = 'p', long, env = "FOLLOWUP_POLL_INTERVAL", value_name = "DURATION", default_value = "10s",
          value_parser = parse_duration)]
    pub poll_interval: Duration,

    /// PEM file of CA certificates trusted for the webhook, in addition to the
    /// system's trusted roots.
    #[arg(long, env = "FOLLOWUP_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,

    /// Serve GET /metrics (Prometheus) and GET /healthz on this address.
    #[arg(long, env = "FOLLOWUP_METRICS_ADDR", value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,

    /// One POST per recipient with all of its claimable messages
    /// (followup.claim_digest); --batch-size is then the number of recipients
    /// a claim takes, 1 to 1000.
    #[arg(long, env = "FOLLOWUP_DIGEST")]
    pub digest: bool,

    /// Log lines as text or as JSON objects (one a line, on stderr).
    #[arg(long, env = "FOLLOWUP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The validated configuration.
pub struct Config {
    pub database: Database,
    pub webhook_url: reqwest::Url,
    pub ca_file: Option<PathBuf>,
    pub consumer: String,
    pub batch_size: i32,
    /// Deliveries under way at once (requests in flight, and answers waiting
    /// for their ack).
    pub concurrency: usize,
    /// Claim whole recipients (followup.claim_digest), one POST each.
    pub digest: bool,
    /// Passed to followup.claim as is; PostgreSQL parses it (see db::lease_seconds).
    pub lease: String,
    pub request_timeout: Duration,
    pub poll_interval: Duration,
    pub metrics_addr: Option<SocketAddr>,
}

/// Empty FOLLOWUP_* variables count as unset (clap would take them as
/// values). Call before `Args::parse`, while the process has one thread.
pub fn drop_empty_env() {
    for (name, value) in std::env::vars_os() {
        if value.is_empty() && name.to_string_lossy().starts_with("FOLLOWUP_") {
            std::env::remove_var(name);
        }
    }
}

impl Config {
    /// Checks what clap could not, and reads the libpq environment.
    pub fn from_args(args: Args) -> Result<Config, String> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let database = conninfo::parse(args.database.as_deref().unwrap_or(""), "followup-notifier", &env)
            .map_err(|e| format!("--database: {e}"))?;
        if args.digest && args.batch_size > 1000 {
            return Err(format!(
                "--batch-size: with --digest it counts recipients, at most 1000, not {}",
                args.batch_size
            ));
        }
        let metrics_addr = match args.metrics_addr {
            Some(addr) => Some(
                addr.to_socket_addrs()
                    .ok()
                    .and_then(|mut addrs| addrs.next())
                    .ok_or_else(|| format!("--metrics-addr: '{addr}' is not a HOST:PORT address"))?,
            ),
            None => None,
        };
        Ok(Config {
            database,
            webhook_url: args.webhook_url,
            ca_file: args.ca_file,
            consumer: args.consumer.unwrap_or_else(|| format!("{}-{}", hostname(), std::process::id())),
            batch_size: args.batch_size,
            concurrency: usize::from(args.concurrency),
            digest: args.digest,
            lease: args.lease,
            request_timeout: args.request_timeout,
            poll_interval: args.poll_interval,
            metrics_addr,
        })
    }
}

fn parse_webhook_url(text: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("'{text}': {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("'{text}' is not an http:// or https:// URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("'{text}' has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("'{text}': credentials in the URL are not supported"));
    }
    Ok(url)
}

/// "10", "10s", "1.5s", "500ms", "2m" -> Duration. Zero is refused: a zero
/// timeout fails every delivery and a zero poll interval spins.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| format!("'{text}' is not a duration (e.g. 10s, 500ms, 2m)"))?;
    let seconds = match unit.trim() {
        "" | "s" => number,
        "ms" => number / 1000.0,
        "m" | "min" => number * 60.0,
        _ => return Err(format!("'{text}': unknown unit (use ms, s or m)")),
    };
    if !(seconds > 0.0 && seconds <= 86_400.0) {
        return Err(format!("'{text}' must be more than 0 and at most a day"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// 1.5 s -> "1.5s", 0.5 s -> "500ms": durations in log lines and errors.
pub fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

/// The machine's name, for the default consumer name (std has no hostname()).
fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "notifier".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("followup-notifier").chain(args.iter().copied()))
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("3h").is_err());
        assert_eq!(human(Duration::from_millis(1500)), "1.5s");
        assert_eq!(human(Duration::from_millis(500)), "500ms");
    }

    #[test]
    fn flags_win_over_defaults() {
        let args =
            parse(&["--webhook-url=https://127.0.0.1:9/hook", "-b", "7", "--lease", "2 seconds", "-c", "me"]).unwrap();
        assert_eq!(args.batch_size, 7);
        assert_eq!(args.lease, "2 seconds");
        assert_eq!(args.consumer.as_deref(), Some("me"));
        assert_eq!(args.request_timeout, Duration::from_secs(10));
        assert_eq!(args.concurrency, 16, "the default");
        assert_eq!(args.log_format, LogFormat::Text);
        assert_eq!(args.webhook_url.scheme(), "https");
    }

    #[test]
    fn bad_arguments() {
        assert!(parse(&["--nope"]).is_err());
        assert!(parse(&["--webhook-url=http://h/", "--batch-size=0"]).is_err());
        assert!(parse(&["--webhook-url=ftp://h/"]).is_err());
        assert!(parse(&["--webhook-url=http://u:p@h/"]).is_err());
        assert!(parse(&["--webhook-url=http://h/", "--log-format=xml"]).is_err());
        assert!(parse(&["--webhook-url=http://h/", "--request-timeout=0"]).is_err());
        assert!(parse(&["--webhook-url=http://h/", "--concurrency=0"]).is_err());
        assert!(parse(&["--webhook-url=http://h/", "--concurrency=1001"]).is_err());
        assert_eq!(parse(&["--webhook-url=http://h/", "--concurrency=1"]).unwrap().concurrency, 1);
    }
}
