//! Timestamps as API.md writes them: RFC 3339, UTC, microseconds.

use chrono::{DateTime, SecondsFormat, Utc};

pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub fn now_rfc3339() -> String {
    rfc3339(Utc::now())
}

/// Microseconds since the Unix epoch: how the database stores timestamps.
pub fn now_micros() -> i64 {
    Utc::now().timestamp_micros()
}

pub fn micros_to_rfc3339(micros: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(micros).map_or_else(String::new, rfc3339)
}

pub fn now_seconds() -> i64 {
    Utc::now().timestamp()
}
