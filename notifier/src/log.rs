//! Logs: one line per event on stderr (a service manager collects it), with
//! tracing. `--log-format text` gives `<UTC timestamp> <LEVEL> <message>
//! key=value...`; `--log-format json` one JSON object a line with the same
//! fields (`timestamp`, `level`, `message`, and e.g. `message_id`, `key`,
//! `status`, `elapsed_ms`, `error`).

use crate::config::LogFormat;

pub fn init(format: LogFormat) {
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr).with_target(false).with_ansi(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).with_span_list(false).init(),
    }
}
