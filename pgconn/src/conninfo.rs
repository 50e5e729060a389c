//! The database connection string, read the way libpq reads it.
//!
//! tokio-postgres parses most of a connection string (hosts, ports, user,
//! `target_session_attrs`...) but knows only `disable`, `prefer` and `require`
//! for `sslmode`, nothing of `sslrootcert`, and none of the libpq environment
//! variables. So this module takes `sslmode` and `sslrootcert` out of the
//! string (either form: `key=value ...` or a `postgres://` URL), hands the
//! rest to tokio-postgres, completes it from `PGHOST`, `PGPORT`, `PGUSER`,
//! `PGDATABASE`, `PGPASSWORD`, `PGSSLMODE`, `PGSSLROOTCERT`, and decides which
//! certificate checks the TLS connection makes (tls.rs builds them):
//!
//! | sslmode       | TLS                          | certificate checked                                |
//! | ------------- | ---------------------------- | -------------------------------------------------- |
//! | `disable`     | never                        | -                                                  |
//! | `prefer`      | if the server offers it      | chain, if a root certificate file exists; else none |
//! | `require`     | always                       | chain, if a root certificate file exists; else none |
//! | `verify-ca`   | always                       | chain (the root certificate file must exist)       |
//! | `verify-full` | always                       | chain and host name                                |
//!
//! The root certificate file is `sslrootcert`, or `~/.postgresql/root.crt`
//! when it is not set; `sslrootcert=system` means the system's trusted roots
//! and requires `verify-full`, as in libpq. Over a Unix socket there is no TLS
//! whatever `sslmode` says, as with libpq.

use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<SslMode, String> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            // libpq's "allow" tries without TLS first; tokio-postgres has no such order
            "allow" => return Err("sslmode 'allow' is not supported: use 'prefer' or 'disable'".to_string()),
            _ => return Err(format!("invalid sslmode '{value}' (disable, prefer, require, verify-ca, verify-full)")),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Which roots a server certificate is checked against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Roots {
    /// No check at all (`prefer` or `require` without a root certificate file).
    None,
    /// The certificates of a PEM file.
    File(PathBuf),
    /// The system's trusted roots (`sslrootcert=system`).
    System,
}

/// The database to connect to, and how.
pub struct Database {
    pub config: tokio_postgres::Config,
    pub sslmode: SslMode,
    pub roots: Roots,
    /// Whether the host name must match the certificate (verify-full).
    pub check_hostname: bool,
}

/// Parses a connection string (empty: everything from the environment).
/// `application_name` is the program's, unless the string names one; `env`
/// reads an environment variable (a parameter, for the tests).
pub fn parse(conninfo: &str, application_name: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Database, String> {
    let (rest, ssl) = split_ssl_options(conninfo)?;
    let mut config: tokio_postgres::Config = rest.parse().map_err(|e| format!("{e}"))?;
    complete_from_env(&mut config, env)?;
    if config.get_application_name().is_none() {
        config.application_name(application_name);
    }

    let sslmode = match ssl.sslmode.or_else(|| env("PGSSLMODE")) {
        Some(mode) => SslMode::parse(&mode)?,
        None => SslMode::Prefer,
    };
    let sslrootcert = ssl.sslrootcert.or_else(|| env("PGSSLROOTCERT"));
    let verify = matches!(sslmode, SslMode::VerifyCa | SslMode::VerifyFull);
    let roots = match sslrootcert.as_deref() {
        _ if sslmode == SslMode::Disable => Roots::None,
        Some("system") if sslmode != SslMode::VerifyFull => {
            return Err(format!(
                "weak sslmode '{}' may not be used with sslrootcert=system (use 'verify-full')",
                sslmode.name()
            ))
        }
        Some("system") => Roots::System,
        named => {
            let path = match named {
                Some(path) => PathBuf::from(path),
                None => env("HOME").map(|home| Path::new(&home).join(".postgresql/root.crt")).unwrap_or_default(),
            };
            if !path.as_os_str().is_empty() && path.exists() {
                Roots::File(path)
            } else if verify {
                return Err(format!(
                    "root certificate file '{}' does not exist: name one with sslrootcert, use the system's \
                     trusted roots with sslrootcert=system, or choose an sslmode that does not verify the server",
                    path.display()
                ));
            } else {
                Roots::None
            }
        }
    };

    // Sockets never carry TLS (the server does not offer it there); libpq
    // ignores sslmode for them, so must we, or 'require' could never connect.
    let all_sockets = !config.get_hosts().is_empty()
        && config.get_hostaddrs().is_empty()
        && config.get_hosts().iter().all(|h| !matches!(h, tokio_postgres::config::Host::Tcp(_)));
    config.ssl_mode(match sslmode {
        _ if all_sockets => tokio_postgres::config::SslMode::Disable,
        SslMode::Disable => tokio_postgres::config::SslMode::Disable,
        SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => tokio_postgres::config::SslMode::Require,
    });
    Ok(Database { config, sslmode, roots, check_hostname: sslmode == SslMode::VerifyFull })
}

/// libpq's environment variables for what the string leaves out (tokio-postgres
/// reads none), and a connect timeout.
fn complete_from_env(config: &mut tokio_postgres::Config, env: &dyn Fn(&str) -> Option<String>) -> Result<(), String> {
    if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
        match env("PGHOST") {
            Some(hosts) => hosts.split(',').for_each(|h| {
                config.host(h);
            }),
            // libpq's default on Debian-family systems, else TCP to localhost
            None if Path::new("/var/run/postgresql").is_dir() => {
                config.host("/var/run/postgresql");
            }
            None => {
                config.host("localhost");
            }
        }
    }
    if config.get_ports().is_empty() {
        if let Some(ports) = env("PGPORT") {
            for port in ports.split(',') {
                config.port(port.trim().parse().map_err(|_| format!("PGPORT '{ports}' is not a port number"))?);
            }
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
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    Ok(())
}

#[derive(Default, Debug, PartialEq)]
struct SslOptions {
    sslmode: Option<String>,
    sslrootcert: Option<String>,
}

/// Takes sslmode and sslrootcert out of a connection string; returns the rest
/// in the same form, for tokio-postgres.
fn split_ssl_options(conninfo: &str) -> Result<(String, SslOptions), String> {
    let trimmed = conninfo.trim();
    if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
        return Ok(split_url(trimmed));
    }
    let mut ssl = SslOptions::default();
    let mut rest = String::new();
    for (key, value) in key_values(trimmed)? {
        match key.as_str() {
            "sslmode" => ssl.sslmode = Some(value),
            "sslrootcert" => ssl.sslrootcert = Some(value),
            "sslcert" | "sslkey" | "sslpassword" | "sslcrl" | "sslcrldir" => {
                return Err(format!("{key}: client certificates and CRLs are not supported"))
            }
            _ => {
                if !rest.is_empty() {
                    rest.push(' ');
                }
                rest.push_str(&format!("{key}='{}'", value.replace('\\', "\\\\").replace('\'', "\\'")));
            }
        }
    }
    Ok((rest, ssl))
}

/// `postgres://...?sslmode=verify-full&sslrootcert=/etc/ca.pem&...`: the two
/// query parameters out, the rest untouched.
fn split_url(url: &str) -> (String, SslOptions) {
    let mut ssl = SslOptions::default();
    let Some((base, query)) = url.split_once('?') else { return (url.to_string(), ssl) };
    let mut kept = Vec::new();
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match percent_decode(key).as_str() {
            "sslmode" => ssl.sslmode = Some(percent_decode(value)),
            "sslrootcert" => ssl.sslrootcert = Some(percent_decode(value)),
            _ => kept.push(pair),
        }
    }
    if kept.is_empty() {
        (base.to_string(), ssl)
    } else {
        (format!("{base}?{}", kept.join("&")), ssl)
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// libpq's `keyword = value` syntax: values unquoted (a backslash escapes the
/// next character) or in single quotes (`\'` and `\\` inside).
fn key_values(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(format!("missing '=' after '{key}' in the connection string"));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => return Err(format!("unterminated quoted value for '{key}' in the connection string")),
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn key_value_syntax() {
        let pairs = key_values(r"host=a,b  port = 5432 password='it\'s \\ x' dbname=my\ db").unwrap();
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(pairs, [("host", "a,b"), ("port", "5432"), ("password", r"it's \ x"), ("dbname", "my db")]);
        assert!(key_values("host").is_err());
        assert!(key_values("password='open").is_err());
    }

    #[test]
    fn ssl_options_come_out_of_both_forms() {
        let (rest, ssl) = split_ssl_options("host=db sslmode=verify-full sslrootcert='/etc/my ca.pem' user=n").unwrap();
        assert_eq!(rest, "host='db' user='n'");
        assert_eq!(ssl.sslmode.as_deref(), Some("verify-full"));
        assert_eq!(ssl.sslrootcert.as_deref(), Some("/etc/my ca.pem"));
        let (rest, ssl) = split_ssl_options(
            "postgres://u@h1:5432,h2:5433/app?sslmode=verify-ca&sslrootcert=%2Fetc%2Fca.pem&connect_timeout=3",
        )
        .unwrap();
        assert_eq!(rest, "postgres://u@h1:5432,h2:5433/app?connect_timeout=3");
        assert_eq!((ssl.sslmode.as_deref(), ssl.sslrootcert.as_deref()), (Some("verify-ca"), Some("/etc/ca.pem")));
        let (rest, _) = split_ssl_options("postgresql://h/app?sslmode=require").unwrap();
        assert_eq!(rest, "postgresql://h/app");
        assert!(split_ssl_options("host=h sslcert=/c.pem").is_err());
    }

    #[test]
    fn sslmodes_as_libpq() {
        let db = parse("host=h sslmode=disable", "test", &no_env).unwrap();
        assert_eq!((db.sslmode, db.roots, db.check_hostname), (SslMode::Disable, Roots::None, false));
        // require without a root certificate file: encrypted, nothing checked
        let db = parse("host=h sslmode=require sslrootcert=/nonexistent", "test", &no_env).unwrap();
        assert_eq!((db.roots, db.config.get_ssl_mode()), (Roots::None, tokio_postgres::config::SslMode::Require));
        // require with one: checked as verify-ca
        let file = std::env::current_exe().unwrap();
        let conninfo = format!("host=h sslmode=require sslrootcert='{}'", file.display());
        assert_eq!(parse(&conninfo, "test", &no_env).unwrap().roots, Roots::File(file.clone()));
        let conninfo = format!("host=h sslmode=verify-ca sslrootcert='{}'", file.display());
        let db = parse(&conninfo, "test", &no_env).unwrap();
        assert_eq!((db.roots, db.check_hostname), (Roots::File(file.clone()), false));
        let conninfo = format!("host=h sslmode=verify-full sslrootcert='{}'", file.display());
        assert!(parse(&conninfo, "test", &no_env).unwrap().check_hostname);
        assert!(parse("host=h sslmode=verify-ca sslrootcert=/nonexistent", "test", &no_env).is_err());
        assert!(parse("host=h sslmode=verify-full", "test", &no_env).is_err(), "no root certificate file at all");
        assert_eq!(
            parse("host=h sslmode=verify-full sslrootcert=system", "test", &no_env).unwrap().roots,
            Roots::System
        );
        assert!(parse("host=h sslmode=require sslrootcert=system", "test", &no_env).is_err());
        assert!(parse("host=h sslmode=allow", "test", &no_env).is_err());
        assert!(parse("host=h sslmode=bogus", "test", &no_env).is_err());
        // the default is prefer
        assert_eq!(parse("host=h", "test", &no_env).unwrap().sslmode, SslMode::Prefer);
        // a socket never carries TLS
        let db = parse("host=/run/postgresql sslmode=require", "test", &no_env).unwrap();
        assert_eq!(db.config.get_ssl_mode(), tokio_postgres::config::SslMode::Disable);
    }

    #[test]
    fn environment_fills_the_gaps() {
        let env = |name: &str| match name {
            "PGHOST" => Some("a,b".to_string()),
            "PGPORT" => Some("5001,5002".to_string()),
            "PGUSER" => Some("u".to_string()),
            "PGSSLMODE" => Some("require".to_string()),
            _ => None,
        };
        let db = parse("dbname=app", "test", &env).unwrap();
        assert_eq!(db.config.get_hosts().len(), 2);
        assert_eq!(db.config.get_ports(), [5001, 5002]);
        assert_eq!(db.config.get_user(), Some("u"));
        assert_eq!(db.sslmode, SslMode::Require);
        assert_eq!(db.config.get_application_name(), Some("test"));
        let named = parse("host=h application_name=mine", "test", &env).unwrap();
        assert_eq!(named.config.get_application_name(), Some("mine"));
        // the string wins over the environment
        assert_eq!(parse("host=h user=me sslmode=disable", "test", &env).unwrap().sslmode, SslMode::Disable);
        assert_eq!(parse("host=h user=me", "test", &env).unwrap().config.get_user(), Some("me"));
    }
}
