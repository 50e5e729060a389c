//! A minimal HTTP/1.1 client: one POST per connection to an `http://` URL.
//!
//! Hand-written on tokio's TcpStream because the notifier needs exactly one
//! thing from HTTP: send a JSON body with a few headers and learn the status
//! code. An HTTP crate (hyper + its utilities) would triple the build. The
//! price, accepted for a reference consumer: no TLS (put a local proxy in
//! front of an https endpoint), no keep-alive (one TCP connection per message),
//! no redirects (a 3xx is a failed delivery).

use std::fmt;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

/// Response headers larger than this are not worth waiting for: we only need
/// the status line.
const MAX_HEAD: usize = 16 * 1024;
/// How much of an error answer's body goes into the error text, and how long
/// to wait for it after the headers.
const ERROR_BODY_BYTES: usize = 200;
const ERROR_BODY_WAIT: Duration = Duration::from_millis(500);

/// Where to POST, and how long one request may take.
pub struct Webhook {
    url: String,
    host: String,
    port: u16,
    /// Path and query, as sent in the request line.
    target: String,
    /// The Host header: the URL's authority.
    authority: String,
    timeout: Duration,
}

/// What the server answered.
pub struct Response {
    pub status: u16,
    pub reason: String,
    /// The start of the body, if it came with the headers: for error messages.
    pub body_start: String,
}

impl Response {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

impl fmt::Display for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {} {}", self.status, self.reason)?;
        if !self.body_start.is_empty() {
            write!(f, ": {}", self.body_start)?;
        }
        Ok(())
    }
}

/// Why no response was obtained.
pub enum PostError {
    Timeout(Duration),
    Io(std::io::Error),
    Protocol(String),
}

impl fmt::Display for PostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PostError::Timeout(limit) => write!(f, "request timed out after {}", human(*limit)),
            PostError::Io(e) => write!(f, "connection error: {e}"),
            PostError::Protocol(what) => write!(f, "bad HTTP response: {what}"),
        }
    }
}

impl From<std::io::Error> for PostError {
    fn from(e: std::io::Error) -> Self {
        PostError::Io(e)
    }
}

/// 1.5 s -> "1.5s", 0.5 s -> "500ms".
pub fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

impl Webhook {
    /// Parses `http://host[:port][/path][?query]` (host may be `[ipv6]`).
    pub fn new(url: &str, timeout: Duration) -> Result<Webhook, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            if url.starts_with("https://") {
                format!("'{url}': https is not supported; put a TLS-terminating proxy in front")
            } else {
                format!("'{url}' is not an http:// URL")
            }
        })?;
        let (authority, target) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        let target = target.split('#').next().unwrap_or("/").to_string();
        if authority.contains('@') {
            return Err(format!("'{url}': credentials in the URL are not supported"));
        }
        // [v6addr]:port, host:port, or either without a port
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed.split_once(']').ok_or_else(|| format!("'{url}': unclosed '['"))?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        let port = match port {
            Some(p) => p.parse::<u16>().map_err(|_| format!("'{url}': bad port '{p}'"))?,
            None => 80,
        };
        if host.is_empty() {
            return Err(format!("'{url}' has no host"));
        }
        if target.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(format!("'{url}': the path must not contain spaces or control characters"));
        }
        Ok(Webhook {
            url: url.to_string(),
            host: host.to_string(),
            port,
            target,
            authority: authority.to_string(),
            timeout,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// POSTs `body` as JSON with the extra `headers` (names and values must be
    /// header-safe: the caller's job, see delivery::idempotency_key). The whole
    /// exchange, from DNS lookup to the end of the response headers, is bounded
    /// by the timeout, so a webhook that hangs costs one timeout, not the
    /// notifier.
    pub async fn post(&self, headers: &[(&str, &str)], body: &[u8]) -> Result<Response, PostError> {
        let deadline = Instant::now() + self.timeout;
        let (mut stream, mut buf, head_end) = match timeout_at(deadline, self.send(headers, body)).await {
            Ok(result) => result?,
            Err(_) => return Err(PostError::Timeout(self.timeout)),
        };
        let status_line_end = find(&buf, b"\r\n").unwrap_or(head_end);
        let status_line = String::from_utf8_lossy(&buf[..status_line_end]).into_owned();
        let (status, reason) = parse_status_line(&status_line)
            .ok_or_else(|| PostError::Protocol(format!("not an HTTP status line: {}", one_line(&status_line, 80))))?;

        // The body of a 2xx is not awaited: the status is all the outcome
        // depends on, and a server that answers 200 and then dawdles over the
        // body has still accepted the message. An error's body usually says
        // why, which is worth a short wait for last_error.
        if !(200..300).contains(&status) {
            let want = head_end + content_length(&buf[..head_end]).unwrap_or(usize::MAX).min(ERROR_BODY_BYTES);
            let until = deadline.min(Instant::now() + ERROR_BODY_WAIT);
            // a timeout or an error here only shortens the error text
            let _ = timeout_at(until, read_until(&mut stream, &mut buf, |b| b.len() >= want)).await;
        }
        Ok(Response {
            status,
            reason,
            body_start: one_line(&String::from_utf8_lossy(&buf[head_end.min(buf.len())..]), ERROR_BODY_BYTES),
        })
    }

    /// Connects, sends the request, reads up to the end of the response
    /// headers. Returns the stream, what was read, and where the headers end.
    async fn send(&self, headers: &[(&str, &str)], body: &[u8]) -> Result<(TcpStream, Vec<u8>, usize), PostError> {
        let mut stream = TcpStream::connect((self.host.as_str(), self.port)).await?;
        // Small request, answer awaited right after: don't let Nagle delay it.
        stream.set_nodelay(true)?;

        let mut request = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: followup-notifier/{}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.target,
            self.authority,
            env!("CARGO_PKG_VERSION"),
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(body);
        stream.write_all(&bytes).await?;

        let mut buf = Vec::with_capacity(1024);
        let complete =
            read_until(&mut stream, &mut buf, |b| find(b, b"\r\n\r\n").is_some() || b.len() > MAX_HEAD).await?;
        let head_end = match find(&buf, b"\r\n\r\n") {
            Some(i) => i + 4,
            None if buf.len() > MAX_HEAD => return Err(PostError::Protocol("response headers too large".into())),
            // EOF before the blank line: a complete status line is still an answer
            None if !complete && find(&buf, b"\r\n").is_some() => buf.len(),
            None if buf.is_empty() => return Err(PostError::Protocol("connection closed without a response".into())),
            None => return Err(PostError::Protocol("connection closed in the middle of the response".into())),
        };
        Ok((stream, buf, head_end))
    }
}

/// Reads into `buf` until `done(buf)` (true) or EOF (false).
async fn read_until(stream: &mut TcpStream, buf: &mut Vec<u8>, done: impl Fn(&[u8]) -> bool) -> std::io::Result<bool> {
    let mut chunk = [0u8; 4096];
    while !done(buf) {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(false);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(true)
}

/// The Content-Length header's value, if the head has a valid one.
fn content_length(head: &[u8]) -> Option<usize> {
    String::from_utf8_lossy(head).lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim().eq_ignore_ascii_case("content-length").then(|| value.trim().parse().ok())?
    })
}

/// "HTTP/1.1 503 Service Unavailable" -> (503, "Service Unavailable").
fn parse_status_line(line: &str) -> Option<(u16, String)> {
    let rest = line.strip_prefix("HTTP/1.")?;
    let mut parts = rest.splitn(3, ' ');
    let _minor = parts.next()?;
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    let status = code.parse::<u16>().ok().filter(|s| (100..600).contains(s))?;
    Some((status, parts.next().unwrap_or("").trim().to_string()))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
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
    fn urls() {
        let t = Duration::from_secs(1);
        let w = Webhook::new("http://example.org/hooks/in?x=1", t).unwrap();
        assert_eq!((w.host.as_str(), w.port, w.target.as_str()), ("example.org", 80, "/hooks/in?x=1"));
        let w = Webhook::new("http://127.0.0.1:8080", t).unwrap();
        assert_eq!((w.host.as_str(), w.port, w.target.as_str()), ("127.0.0.1", 8080, "/"));
        let w = Webhook::new("http://[::1]:81/a", t).unwrap();
        assert_eq!((w.host.as_str(), w.port, w.authority.as_str()), ("::1", 81, "[::1]:81"));
        let w = Webhook::new("http://h?q", t).unwrap();
        assert_eq!(w.target, "/?q");
        assert!(Webhook::new("https://example.org/", t).is_err());
        assert!(Webhook::new("http://:80/", t).is_err());
        assert!(Webhook::new("http://h:99999/", t).is_err());
    }

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line("HTTP/1.1 200 OK"), Some((200, "OK".into())));
        assert_eq!(parse_status_line("HTTP/1.0 503 Service Unavailable"), Some((503, "Service Unavailable".into())));
        assert_eq!(parse_status_line("HTTP/1.1 204"), Some((204, "".into())));
        assert_eq!(parse_status_line("SSH-2.0-OpenSSH"), None);
        assert_eq!(parse_status_line("HTTP/1.1 2000 OK"), None);
    }

    #[test]
    fn content_lengths() {
        assert_eq!(content_length(b"HTTP/1.1 500 X\r\ncontent-length: 16\r\n\r\n"), Some(16));
        assert_eq!(content_length(b"HTTP/1.1 500 X\r\nContent-Type: text/plain\r\n\r\n"), None);
    }
}
