//! Configuration: command-line flags, each with an environment-variable
//! fallback and a default, so the notifier can be configured either way (a
//! unit file's `Environment=`, a container's env, or flags by hand).
//!
//! Hand-written rather than clap: seven options do not justify the compile
//! time, and the table below doubles as the `--help` text.

use std::time::Duration;

use crate::http::Webhook;

/// One option: its flags, its environment variable, its default, its help.
struct Opt {
    long: &'static str,
    short: char,
    value: &'static str,
    env: &'static str,
    default: Option<&'static str>,
    help: &'static str,
}

const OPTS: &[Opt] = &[
    Opt {
        long: "database",
        short: 'd',
        value: "CONNINFO",
        env: "FOLLOWUP_DATABASE",
        default: None,
        help: "libpq-style connection string ('host=... dbname=...') or postgres:// URL. \
               Parts it leaves out come from PGHOST, PGPORT, PGUSER, PGDATABASE and \
               PGPASSWORD, as with psql. No TLS: use a local socket or a trusted network.",
    },
    Opt {
        long: "webhook-url",
        short: 'w',
        value: "URL",
        env: "FOLLOWUP_WEBHOOK_URL",
        default: None,
        help: "Required. Where each message is POSTed as JSON; http:// only \
               (put a TLS-terminating proxy in front for https).",
    },
    Opt {
        long: "consumer",
        short: 'c',
        value: "NAME",
        env: "FOLLOWUP_CONSUMER",
        default: None,
        help: "Consumer name recorded in followup.outbox.claimed_by [default: <hostname>-<pid>].",
    },
    Opt {
        long: "batch-size",
        short: 'b',
        value: "N",
        env: "FOLLOWUP_BATCH_SIZE",
        default: Some("100"),
        help: "Messages claimed at a time, 1 to 10000.",
    },
    Opt {
        long: "lease",
        short: 'l',
        value: "INTERVAL",
        env: "FOLLOWUP_LEASE",
        default: Some("5 minutes"),
        help: "How long a claimed batch is ours (a PostgreSQL interval). Messages not \
               acked or failed by then go to another consumer. Must exceed the request timeout.",
    },
    Opt {
        long: "request-timeout",
        short: 't',
        value: "DURATION",
        env: "FOLLOWUP_REQUEST_TIMEOUT",
        default: Some("10s"),
        help: "Limit on one webhook request (connect, send, response headers); \
               past it the delivery counts as failed. Also bounds how long a shutdown waits.",
    },
    Opt {
        long: "poll-interval",
        short: 'p',
        value: "DURATION",
        env: "FOLLOWUP_POLL_INTERVAL",
        default: Some("10s"),
        help: "When idle, look for work at least this often even without a notification \
               (retries whose backoff ended and expired leases do not notify).",
    },
];

/// The validated configuration.
pub struct Config {
    pub database: tokio_postgres::Config,
    pub webhook: Webhook,
    pub consumer: String,
    pub batch_size: i32,
    /// Passed to followup.claim as is; PostgreSQL parses it (see db::lease_seconds).
    pub lease: String,
    pub request_timeout: Duration,
    pub poll_interval: Duration,
}

pub enum Command {
    Run(Box<Config>),
    Help,
    Version,
}

pub fn usage() -> String {
    let mut text = String::from(
        "followup-notifier: delivers pg_followup's outbox (followup.outbox) to an HTTP webhook.\n\n\
         LISTENs on followup_outbox, claims messages in batches with followup.claim, POSTs each\n\
         one as JSON with the headers Idempotency-Key and X-Followup-Message-Id, acks it on a\n\
         2xx answer and fails it (retried after a backoff) otherwise. SIGTERM or SIGINT: finish\n\
         the message in flight, release the rest of the batch (followup.release: claimable\n\
         at once, no attempt counted), exit 0.\n\n\
         Usage: followup-notifier [OPTIONS]\n\n\
         Options (a flag wins over its environment variable, which wins over the default):\n",
    );
    for opt in OPTS {
        text.push_str(&format!("  -{}, --{} {}\n", opt.short, opt.long, opt.value));
        text.push_str(&format!("        {}\n", wrap(opt.help, 70).join("\n        ")));
        text.push_str(&format!("        env: {}", opt.env));
        if let Some(default) = opt.default {
            text.push_str(&format!("    default: {default}"));
        }
        text.push('\n');
    }
    text.push_str(
        "  -h, --help       print this help\n  -V, --version    print the version\n\n\
         DURATION: a number of seconds, or a number with a unit: 500ms, 10s, 2m.\n",
    );
    text
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let line = lines.last_mut().unwrap();
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(word.to_string());
        } else {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    lines
}

/// Parses the command line (without the program name) and the environment.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut given: Vec<(&'static Opt, String)> = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            _ => {}
        }
        // --name=value, --name value, -x value
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if arg.starts_with("--") => (name.to_string(), Some(value.to_string())),
            _ => (arg.clone(), None),
        };
        let opt = OPTS
            .iter()
            .find(|o| name == format!("--{}", o.long) || name == format!("-{}", o.short))
            .ok_or_else(|| format!("unknown argument '{arg}'"))?;
        let value = match inline {
            Some(value) => value,
            None => args.next().ok_or_else(|| format!("--{} needs a value", opt.long))?,
        };
        given.push((opt, value));
    }
    let value = |long: &str| -> Option<String> {
        let opt = OPTS.iter().find(|o| o.long == long).expect("known option");
        given
            .iter()
            .rev()
            .find(|(o, _)| o.long == long)
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var(opt.env).ok().filter(|v| !v.is_empty()))
            .or_else(|| opt.default.map(str::to_string))
    };

    let request_timeout =
        parse_duration(&value("request-timeout").unwrap()).map_err(|e| format!("--request-timeout: {e}"))?;
    let poll_interval =
        parse_duration(&value("poll-interval").unwrap()).map_err(|e| format!("--poll-interval: {e}"))?;
    let url = value("webhook-url").ok_or("a webhook URL is required (--webhook-url or FOLLOWUP_WEBHOOK_URL)")?;
    let webhook = Webhook::new(&url, request_timeout).map_err(|e| format!("--webhook-url: {e}"))?;
    let batch_size = value("batch-size")
        .unwrap()
        .parse::<i32>()
        .ok()
        .filter(|n| (1..=10_000).contains(n))
        .ok_or("--batch-size must be a whole number from 1 to 10000")?;
    let consumer = value("consumer").unwrap_or_else(|| format!("{}-{}", hostname(), std::process::id()));
    let database = database_config(value("database").as_deref())?;

    Ok(Command::Run(Box::new(Config {
        database,
        webhook,
        consumer,
        batch_size,
        lease: value("lease").unwrap(),
        request_timeout,
        poll_interval,
    })))
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

/// The connection string, completed from the libpq environment variables
/// (tokio-postgres, unlike libpq, does not read them itself).
fn database_config(conninfo: Option<&str>) -> Result<tokio_postgres::Config, String> {
    let mut config: tokio_postgres::Config = conninfo.unwrap_or("").parse().map_err(|e| format!("--database: {e}"))?;
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
        match env("PGHOST") {
            Some(hosts) => hosts.split(',').for_each(|h| {
                config.host(h);
            }),
            // libpq's default on Debian-family systems, else TCP to localhost
            None if std::path::Path::new("/var/run/postgresql").is_dir() => {
                config.host("/var/run/postgresql");
            }
            None => {
                config.host("localhost");
            }
        }
    }
    if config.get_ports().is_empty() {
        if let Some(port) = env("PGPORT") {
            config.port(port.parse().map_err(|_| format!("PGPORT '{port}' is not a port number"))?);
        }
    }
    if config.get_user().is_none() {
        if let Some(user) = env("PGUSER") {
            config.user(user);
        }
    }
    if config.get_dbname().is_none() {
        if let Some(dbname) = env("PGDATABASE") {
            config.dbname(dbname);
        }
    }
    if config.get_password().is_none() {
        if let Some(password) = env("PGPASSWORD") {
            config.password(password);
        }
    }
    if config.get_application_name().is_none() {
        config.application_name("followup-notifier");
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    Ok(config)
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

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("3h").is_err());
    }

    #[test]
    fn flags_win_over_defaults() {
        let args = ["--webhook-url=http://127.0.0.1:9/hook", "-b", "7", "--lease", "2 seconds", "-c", "me"];
        let Command::Run(config) = parse(args.map(String::from)).unwrap() else { panic!("not a run") };
        assert_eq!(config.batch_size, 7);
        assert_eq!(config.lease, "2 seconds");
        assert_eq!(config.consumer, "me");
    }

    #[test]
    fn bad_arguments() {
        assert!(parse(["--nope".to_string()]).is_err());
        assert!(parse(["--webhook-url=http://h/".to_string(), "--batch-size=0".to_string()]).is_err());
        assert!(parse(["--webhook-url=https://h/".to_string()]).is_err());
    }
}
