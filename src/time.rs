//! Timestamps as API.md writes them: RFC 3339, UTC, microseconds.

use chrono::{DateTime, SecondsFormat, Utc};

pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub fn now_rfc3339() -> String {
    rfc3339(Utc::now())
}
