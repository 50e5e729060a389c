//! Flags (clap), each also read from `FOLLOWUP_CONSOLE_<FLAG>`, and the
//! checks clap cannot make: the connection string (pgconn), a listener that
//! is loopback unless it serves HTTPS, certificate and key given together.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use pgconn::conninfo::{self, Database};

const ABOUT: &str = "pg_followup's web console and JSON API.";
const LONG_ABOUT: &str = "pg_followup's web console and JSON API.

People log in with their own PostgreSQL role and password: each session is one \
database connection opened with them, and every page and action runs with that \
role's own privileges (console/roles.sql creates the groups followup_viewer, \
followup_support and followup_admin). The console keeps no password and holds no \
privilege of its own.

Without --tls-cert and --tls-key it serves plain HTTP, and then only on a loopback \
address. A flag wins over its environment variable (FOLLOWUP_CONSOLE_<FLAG>). \
DURATION: 90s, 30m, 12h, 1h 30m.";

#[derive(Parser, Debug)]
#[command(name = "followup-console", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Args {
    /// libpq-style connection string ('host=... dbname=...') or postgres:// URL naming the
    /// server, the database and the TLS options (sslmode, sslrootcert), as the notifier's;
    /// PGHOST, PGPORT, PGDATABASE, PGSSLMODE and PGSSLROOTCERT fill what it leaves out.
    /// The user and password of each connection are the person's who logs in.
    #[arg(
        long,
        env = "FOLLOWUP_CONSOLE_DATABASE_URL",
        value_name = "CONNINFO",
        default_value = "",
        hide_default_value = true,
        hide_env_values = true
    )]
    pub database_url: String,

    /// Address to listen on. Without --tls-cert/--tls-key only a loopback address
    /// (127.0.0.1, ::1) is accepted; port 0 picks a free port (logged at start).
    #[arg(long, env = "FOLLOWUP_CONSOLE_LISTEN", value_name = "ADDR:PORT", default_value = "127.0.0.1:8080")]
    pub listen: String,

    /// PEM certificate chain to serve HTTPS with (needs --tls-key).
    #[arg(long, env = "FOLLOWUP_CONSOLE_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "FOLLOWUP_CONSOLE_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// A session unused this long ends (its database connection is closed).
    #[arg(long, env = "FOLLOWUP_CONSOLE_SESSION_IDLE", value_name = "DURATION", default_value = "30m",
          value_parser = parse_duration)]
    pub session_idle: Duration,

    /// A session ends this long after login, used or not.
    #[arg(long, env = "FOLLOWUP_CONSOLE_SESSION_MAX", value_name = "DURATION", default_value = "12h",
          value_parser = parse_duration)]
    pub session_max: Duration,

    /// At most this many sessions (database connections) at once; a login beyond
    /// it is answered 503.
    #[arg(long, env = "FOLLOWUP_CONSOLE_MAX_SESSIONS", value_name = "N", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_sessions: u32,

    /// Log lines as text or as JSON objects (one a line, on stderr).
    #[arg(long, env = "FOLLOWUP_CONSOLE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The validated configuration.
pub struct Config {
    pub database: Database,
    pub listen: SocketAddr,
    pub tls: Option<Tls>,
    pub session_idle: Duration,
    pub session_max: Duration,
    pub max_sessions: usize,
}

/// Empty FOLLOWUP_CONSOLE_* variables count as unset (clap would take them as
/// values, e.g. an environment file's `FOLLOWUP_CONSOLE_TLS_CERT=`). Call
/// before `Args::parse`, while the process has one thread.
pub fn drop_empty_env() {
    for (name, value) in std::env::vars_os() {
        if value.is_empty() && name.to_string_lossy().starts_with("FOLLOWUP_CONSOLE_") {
            std::env::remove_var(name);
        }
    }
}

impl Config {
    pub fn from_args(args: Args) -> Result<Config, String> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let database = conninfo::parse(&args.database_url, "followup-console", &env)
            .map_err(|e| format!("--database-url: {e}"))?;
        let listen = args
            .listen
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| format!("--listen: '{}' is not an ADDR:PORT address", args.listen))?;
        let tls = match (args.tls_cert, args.tls_key) {
            (Some(cert), Some(key)) => Some(Tls { cert, key }),
            _ => None,
        };
        if tls.is_none() && !listen.ip().is_loopback() {
            return Err(format!(
                "--listen {listen}: without --tls-cert and --tls-key the console serves plain HTTP, which it does \
                 only on a loopback address (127.0.0.1 or ::1); give it a certificate to listen on {}",
                listen.ip()
            ));
        }
        if args.session_max < args.session_idle {
            return Err(format!(
                "--session-max ({}) must not be shorter than --session-idle ({})",
                humantime::format_duration(args.session_max),
                humantime::format_duration(args.session_idle)
            ));
        }
        Ok(Config {
            database,
            listen,
            tls,
            session_idle: args.session_idle,
            session_max: args.session_max,
            max_sessions: args.max_sessions as usize,
        })
    }
}

/// "30m", "12h", "90s", "1h 30m" (humantime); zero is refused.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| format!("'{text}': {e} (e.g. 90s, 30m, 12h)"))?;
    if d.is_zero() {
        return Err(format!("'{text}' must be more than zero"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> Result<Config, String> {
        let args = Args::try_parse_from(std::iter::once("followup-console").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        Config::from_args(args)
    }

    #[test]
    fn plain_http_only_on_loopback() {
        assert!(config(&["--database-url=host=h", "--listen=127.0.0.1:0"]).is_ok());
        assert!(config(&["--database-url=host=h", "--listen=[::1]:8080"]).is_ok());
        let refused = config(&["--database-url=host=h", "--listen=0.0.0.0:8080"]).err().unwrap();
        assert!(refused.contains("only on a loopback address"), "{refused}");
        // with a certificate any address will do (the files are read at start)
        let ok = config(&["--database-url=host=h", "--listen=0.0.0.0:8443", "--tls-cert=c.pem", "--tls-key=k.pem"]);
        assert!(ok.unwrap().tls.is_some());
        // one without the other is refused by clap
        assert!(config(&["--listen=0.0.0.0:8443", "--tls-cert=c.pem"]).is_err());
    }

    #[test]
    fn durations_and_defaults() {
        let c = config(&["--database-url=host=h"]).unwrap();
        assert_eq!((c.session_idle, c.session_max), (Duration::from_secs(1800), Duration::from_secs(12 * 3600)));
        assert_eq!(c.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.database.config.get_application_name(), Some("followup-console"));
        let c = config(&["--database-url=host=h", "--session-idle=90s", "--session-max=1h 30m"]).unwrap();
        assert_eq!((c.session_idle, c.session_max), (Duration::from_secs(90), Duration::from_secs(5400)));
        assert!(config(&["--session-idle=0s"]).is_err());
        assert!(config(&["--session-idle=soon"]).is_err());
        assert!(config(&["--database-url=host=h", "--session-idle=2h", "--session-max=1h"]).is_err());
        assert!(config(&["--log-format=xml"]).is_err());
        assert!(config(&["--database-url=host=h sslmode=bogus"]).is_err());
    }
}
