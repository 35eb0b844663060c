//! Timestamps as docs/API.md writes them: RFC 3339, UTC, microseconds.

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

/// A query parameter's time: RFC 3339 or Unix seconds, as microseconds.
pub fn parse_time(field: &str, value: &str) -> Result<i64, crate::error::AppError> {
    let invalid = || {
        crate::error::AppError::Validation(vec![crate::error::FieldError::new(
            field,
            "must be an RFC 3339 time or Unix seconds",
        )])
    };
    if let Ok(seconds) = value.parse::<f64>() {
        if !seconds.is_finite() {
            return Err(invalid());
        }
        return Ok((seconds * 1_000_000.0) as i64);
    }
    chrono::DateTime::parse_from_rfc3339(value).map(|t| t.timestamp_micros()).map_err(|_| invalid())
}
