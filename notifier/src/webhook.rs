//! The webhook client: reqwest over rustls, one pooled client for the life of
//! the process, so consecutive deliveries reuse kept-alive connections (and
//! their TLS sessions) instead of opening one per message: one connection per
//! request in flight, at most --concurrency.
//!
//! Certificates are verified against the system's trusted roots plus the
//! certificates of `--ca-file`. Redirects are not followed: a 3xx is a failed
//! delivery, like any answer outside 2xx.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use reqwest::header::{HeaderValue, CONTENT_TYPE};

use crate::config::human;
use crate::log::chain;

/// How much of an error answer's body goes into the error text, and how long
/// to wait for it once the status is known.
const ERROR_BODY_BYTES: usize = 200;
const ERROR_BODY_WAIT: Duration = Duration::from_millis(500);
/// A 2xx body is read (and dropped) so that the connection can be reused;
/// past this size the connection is given up instead.
const SUCCESS_BODY_LIMIT: usize = 64 * 1024;
/// Idle kept-alive connections are closed after this long.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Where to POST, and how long one request may take.
pub struct Webhook {
    client: reqwest::Client,
    url: reqwest::Url,
    timeout: Duration,
}

/// What the server answered.
pub struct Answer {
    pub status: reqwest::StatusCode,
    /// The start of an error answer's body, for last_error.
    pub body_start: String,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {}", self.status.as_u16())?;
        if let Some(reason) = self.status.canonical_reason() {
            write!(f, " {reason}")?;
        }
        if !self.body_start.is_empty() {
            write!(f, ": {}", self.body_start)?;
        }
        Ok(())
    }
}

/// Why no answer was obtained; the text goes into last_error.
pub struct PostError(String);

impl fmt::Display for PostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Webhook {
    /// `connections`: the most requests ever in flight at once (the
    /// notifier's concurrency), so the most idle connections worth keeping.
    pub fn new(
        url: reqwest::Url,
        timeout: Duration,
        ca_file: Option<&Path>,
        connections: usize,
    ) -> Result<Webhook, String> {
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("followup-notifier/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(connections)
            // small requests, each answer awaited: don't let Nagle delay them
            .tcp_nodelay(true)
            .no_proxy();
        if let Some(path) = ca_file {
            let certs = pgconn::tls::read_certificates(path).map_err(|e| format!("--ca-file: {e}"))?;
            let certs = certs
                .iter()
                .map(|der| reqwest::Certificate::from_der(der))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("--ca-file '{}': {}", path.display(), chain(&e)))?;
            builder = builder.tls_certs_merge(certs);
        }
        let client = builder.build().map_err(|e| format!("cannot set up the HTTP client: {}", chain(&e)))?;
        Ok(Webhook { client, url, timeout })
    }

    pub fn url(&self) -> &reqwest::Url {
        &self.url
    }

    /// POSTs `body` as JSON with the extra `headers` (names and values must be
    /// header-safe: the caller's job, see protocol::idempotency_key). The
    /// whole exchange, from the DNS lookup to the end of the answer, is
    /// bounded by the timeout, so a webhook that hangs costs one timeout.
    pub async fn post(&self, headers: &[(&'static str, &str)], body: String) -> Result<Answer, PostError> {
        let mut request = self
            .client
            .post(self.url.clone())
            .timeout(self.timeout)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut response = request.send().await.map_err(|e| self.error(&e))?;
        let status = response.status();
        let mut body = Vec::new();
        if status.is_success() {
            // The status is the outcome: a server that answers 2xx and then
            // fails over the body has still accepted the message. Reading the
            // body lets the connection go back to the pool.
            while let Ok(Some(chunk)) = response.chunk().await {
                body.extend_from_slice(&chunk);
                if body.len() > SUCCESS_BODY_LIMIT {
                    break;
                }
            }
        } else {
            // An error's body usually says why: worth a short wait for last_error.
            let _ = tokio::time::timeout(ERROR_BODY_WAIT, async {
                while let Ok(Some(chunk)) = response.chunk().await {
                    body.extend_from_slice(&chunk);
                    if body.len() >= ERROR_BODY_BYTES {
                        break;
                    }
                }
            })
            .await;
        }
        let body_start = if status.is_success() {
            String::new()
        } else {
            one_line(&String::from_utf8_lossy(&body), ERROR_BODY_BYTES)
        };
        Ok(Answer { status, body_start })
    }

    fn error(&self, e: &reqwest::Error) -> PostError {
        if e.is_timeout() {
            return PostError(format!("request timed out after {}", human(self.timeout)));
        }
        // A certificate problem says so plainly, whatever wraps it.
        if let Some(tls) = rustls_error(e) {
            return PostError(format!("TLS error: {tls}"));
        }
        PostError(format!("connection error: {}", chain(e)))
    }
}

/// The rustls error behind an error, if any. (An io::Error's source() skips
/// the error it wraps, so io::Errors are looked inside too.)
fn rustls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(tls) = e.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    if let Some(inner) = e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
        if let Some(tls) = rustls_error(inner) {
            return Some(tls);
        }
    }
    rustls_error(e.source()?)
}

/// Text for a one-line log entry or last_error: control characters become
/// spaces, at most `max` characters.
fn one_line(text: &str, max: usize) -> String {
    let mut out: String =
        text.chars().map(|c| if c.is_control() { ' ' } else { c }).take(max).collect::<String>().trim().to_string();
    if text.chars().count() > max {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        let answer = Answer { status: reqwest::StatusCode::SERVICE_UNAVAILABLE, body_start: "busy".into() };
        assert_eq!(answer.to_string(), "HTTP 503 Service Unavailable: busy");
        let answer = Answer { status: reqwest::StatusCode::from_u16(599).unwrap(), body_start: String::new() };
        assert_eq!(answer.to_string(), "HTTP 599");
        assert!(!answer.is_success());
    }

    #[test]
    fn one_lines() {
        assert_eq!(one_line("a\r\nb", 10), "a  b");
        assert_eq!(one_line("abcdef", 3), "abc…");
    }

    #[test]
    fn tls_errors_are_found_inside_io_errors() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let nested = std::io::Error::other(std::io::Error::new(std::io::ErrorKind::InvalidData, tls.clone()));
        assert_eq!(rustls_error(&nested), Some(&tls));
        assert_eq!(rustls_error(&std::io::Error::other("no")), None);
    }
}
