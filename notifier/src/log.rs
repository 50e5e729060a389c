//! Logs: one line per event on stderr (a service manager collects it), with
//! tracing. `--log-format text` gives `<UTC timestamp> <LEVEL> <message>
//! key=value...`; `--log-format json` one JSON object a line with the same
//! fields (`timestamp`, `level`, `message`, and e.g. `message_id`, `key`,
//! `status`, `elapsed_ms`, `error`).
//!
//! Also how an error is written in a log line or a `last_error`: with its
//! causes ([`chain`]), for the database's errors and the webhook's alike.

use crate::config::LogFormat;

pub fn init(format: LogFormat) {
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr).with_target(false).with_ansi(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).with_span_list(false).init(),
    }
}

/// An error and its causes, "outer: inner: innermost", without the repeats
/// that wrappers add, and without the URL (reqwest names it in every error;
/// it is the same on every line).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(e);
    while let Some(err) = current {
        let text = err.to_string();
        let text = match text.find(" for url (") {
            Some(i) => text[..i].to_string(),
            None => text,
        };
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = err.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::chain;

    #[derive(Debug)]
    struct Wrapper(&'static str, std::io::Error);

    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.1)
        }
    }

    #[test]
    fn chains() {
        let refused = || std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        assert_eq!(chain(&refused()), "Connection refused");
        let wrapped = Wrapper("error sending request for url (http://127.0.0.1:9/hook)", refused());
        assert_eq!(chain(&wrapped), "error sending request: Connection refused", "the URL is left out");
        let repeated = Wrapper("connect: Connection refused", refused());
        assert_eq!(chain(&repeated), "connect: Connection refused", "a cause its wrapper repeats is said once");
    }
}
