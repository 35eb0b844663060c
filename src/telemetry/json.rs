//! The log line: one JSON object per event, `timestamp` and `level` first, then the
//! event's fields in the order they were written (`event` first by convention).
//!
//! Written straight into a per-thread buffer, without building a JSON tree: the request
//! log line is on every request's path. The shape is the one `tracing_subscriber`'s JSON
//! format with flattened fields gave, which dashboards and tests already read.

use std::{cell::RefCell, fmt, io::Write as _, time::SystemTime};

use tracing::{
    Event, Subscriber,
    field::{Field, Visit},
};
use tracing_subscriber::{layer::Context, registry::LookupSpan};

use super::sink::LineSink;

/// A `tracing` layer that writes each event as one JSON line to a [`LineSink`].
#[derive(Debug)]
pub struct JsonLines {
    sink: LineSink,
}

impl JsonLines {
    pub fn new(sink: LineSink) -> Self {
        Self { sink }
    }
}

impl<S> tracing_subscriber::Layer<S> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        thread_local! {
            static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
        }
        LINE.with(|line| match line.try_borrow_mut() {
            Ok(mut line) => {
                line.clear();
                format_event(event, SystemTime::now(), &mut line);
                self.sink.push(&line);
            }
            // An event logged while formatting another (a field's `Debug` that logs).
            Err(_) => {
                let mut line = Vec::with_capacity(256);
                format_event(event, SystemTime::now(), &mut line);
                self.sink.push(&line);
            }
        });
    }
}

/// Appends `event` as one JSON object and a newline.
pub fn format_event(event: &Event<'_>, at: SystemTime, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"timestamp\":\"");
    write_timestamp(at, out);
    out.extend_from_slice(b"\",\"level\":\"");
    out.extend_from_slice(event.metadata().level().as_str().as_bytes());
    out.push(b'"');
    event.record(&mut Fields { out });
    out.extend_from_slice(b"}\n");
}

struct Fields<'a> {
    out: &'a mut Vec<u8>,
}

impl Fields<'_> {
    /// `,"name":`, or `None` for the fields `tracing-log` adds to records of the `log`
    /// crate (their target and source position), which the line leaves out.
    fn key(&mut self, field: &Field) -> Option<&mut Vec<u8>> {
        if field.name().starts_with("log.") {
            return None;
        }
        self.out.extend_from_slice(b",\"");
        escape_into(field.name(), self.out);
        self.out.extend_from_slice(b"\":");
        Some(self.out)
    }

    fn json<T: serde::Serialize + ?Sized>(&mut self, field: &Field, value: &T) {
        if let Some(out) = self.key(field) {
            // Numbers and booleans: cannot fail. NaN and infinities become `null`.
            let _ = serde_json::to_writer(&mut *out, value);
        }
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if let Some(out) = self.key(field) {
            out.push(b'"');
            escape_into(value, out);
            out.push(b'"');
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if let Some(out) = self.key(field) {
            out.push(b'"');
            let _ = fmt::write(&mut Escaped(out), format_args!("{value:?}"));
            out.push(b'"');
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.json(field, &value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.json(field, &value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.json(field, &value);
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.json(field, &value);
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.json(field, &value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.json(field, &value);
    }
}

/// Writes formatted text into a JSON string, escaped.
struct Escaped<'a>(&'a mut Vec<u8>);

impl fmt::Write for Escaped<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        escape_into(s, self.0);
        Ok(())
    }
}

/// JSON string escaping as `serde_json` does it: `"`, `\` and control characters.
fn escape_into(text: &str, out: &mut Vec<u8>) {
    let bytes = text.as_bytes();
    let mut start = 0;
    for (at, &byte) in bytes.iter().enumerate() {
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..at]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{byte:04x}");
        } else {
            out.extend_from_slice(escape);
        }
        start = at + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// RFC 3339 in UTC with microseconds, as every timestamp of docs/API.md. The date and time
/// of day are formatted once per second per thread.
fn write_timestamp(at: SystemTime, out: &mut Vec<u8>) {
    thread_local! {
        static SECOND: RefCell<(u64, [u8; 19])> = const { RefCell::new((u64::MAX, [0; 19])) };
    }
    let since_epoch = at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let seconds = since_epoch.as_secs();
    SECOND.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != seconds {
            let text = chrono::DateTime::from_timestamp(i64::try_from(seconds).unwrap_or(i64::MAX), 0)
                .unwrap_or_default()
                .format("%Y-%m-%dT%H:%M:%S")
                .to_string();
            if text.len() == 19 {
                cached.1.copy_from_slice(text.as_bytes());
                cached.0 = seconds;
            } else {
                // Outside years 0-9999: not cached, written as chrono gives it.
                out.extend_from_slice(text.as_bytes());
                let _ = write!(out, ".{:06}Z", since_epoch.subsec_micros());
                return;
            }
        }
        out.extend_from_slice(&cached.1);
        let _ = write!(out, ".{:06}Z", since_epoch.subsec_micros());
    });
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::{Value, json};
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;
    use crate::telemetry::sink::tests::Memory;

    /// The lines `log` writes, as text.
    fn raw_lines(log: impl FnOnce()) -> Vec<String> {
        let memory = Memory::default();
        let (sink, guard) = LineSink::spawn(memory.clone(), "test-log").unwrap();
        let subscriber = tracing_subscriber::registry().with(JsonLines::new(sink));
        tracing::subscriber::with_default(subscriber, log);
        drop(guard);
        let bytes = memory.0.lock().unwrap().0.clone();
        String::from_utf8(bytes).unwrap().lines().map(str::to_owned).collect()
    }

    /// The lines `log` writes, parsed.
    fn lines(log: impl FnOnce()) -> Vec<Value> {
        raw_lines(log).iter().map(|line| serde_json::from_str(line).unwrap()).collect()
    }

    #[test]
    fn fields_keep_their_types_and_order_after_timestamp_and_level() {
        let error = std::io::Error::other("disk \"full\"");
        let raw = raw_lines(|| {
            tracing::warn!(
                event = "request_completed",
                status_code = 404u16,
                delta = -3i64,
                duration_seconds = 0.25,
                ratio = f64::NAN,
                ok = false,
                client_ip = %std::net::Ipv4Addr::LOCALHOST,
                error = %error,
            );
        });
        assert_eq!(raw.len(), 1);
        assert!(raw[0].starts_with("{\"timestamp\":\""), "{}", raw[0]);
        assert!(
            raw[0].contains("\",\"level\":\"WARN\",\"event\":\"request_completed\",\"status_code\":404,"),
            "{}",
            raw[0]
        );
        let line: Value = serde_json::from_str(&raw[0]).unwrap();
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["event"], "request_completed");
        assert_eq!(line["status_code"], 404);
        assert_eq!(line["delta"], -3);
        assert_eq!(line["duration_seconds"], 0.25);
        assert_eq!(line["ratio"], Value::Null, "NaN is not JSON");
        assert_eq!(line["ok"], false);
        assert_eq!(line["client_ip"], "127.0.0.1");
        assert_eq!(line["error"], "disk \"full\"");
        let at = chrono::DateTime::parse_from_rfc3339(line["timestamp"].as_str().unwrap()).unwrap();
        assert!((chrono::Utc::now() - at.to_utc()).num_seconds().abs() < 60);
    }

    #[test]
    fn strings_are_escaped_and_messages_kept() {
        let nasty = "quote \" backslash \\ newline \n tab \t bell \u{7} é ✓";
        let lines = lines(|| {
            tracing::info!(event = "x", path = nasty);
            tracing::error!("plain {} message", 42);
        });
        assert_eq!(lines[0]["path"], json!(nasty));
        assert_eq!(lines[1]["message"], "plain 42 message");
        assert_eq!(lines[1]["level"], "ERROR");
    }

    #[test]
    fn timestamps_are_utc_with_microseconds() {
        let mut out = Vec::new();
        let at = SystemTime::UNIX_EPOCH + Duration::from_micros(1_764_763_878_000_042);
        write_timestamp(at, &mut out);
        write_timestamp(at + Duration::from_micros(1), &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), "2025-12-03T12:11:18.000042Z2025-12-03T12:11:18.000043Z");
    }
}
