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

/// Why a time could not be read, whichever transport brought it.
pub const TIME_FORMAT: &str = "must be an RFC 3339 time or Unix seconds";
/// Why a step could not be read, whichever transport brought it.
pub const STEP_FORMAT: &str = "must be seconds (a number) or a duration such as \"60s\", \"5m\", \"1h\"";

/// Unix seconds as microseconds, when they fall in the years 1970 to 9999 (what RFC 3339
/// can write).
pub fn timestamp_from_seconds(seconds: f64) -> Result<i64, String> {
    if !(0.0..=253_402_300_799.0).contains(&seconds) {
        return Err("is out of range".to_owned());
    }
    Ok((seconds * 1_000_000.0).round() as i64)
}

/// A time sent as text: RFC 3339, or Unix seconds written as a number, as microseconds.
pub fn parse_timestamp(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        return timestamp_from_seconds(seconds);
    }
    let micros =
        chrono::DateTime::parse_from_rfc3339(text).map(|t| t.timestamp_micros()).map_err(|_| TIME_FORMAT.to_owned())?;
    // The range numbers have: an offset can carry a time past 9999 (which would read back
    // as `+10000-...`, not RFC 3339) or before 1970.
    if !(0..=253_402_300_799_999_999).contains(&micros) {
        return Err("is out of range".to_owned());
    }
    Ok(micros)
}

/// A step of seconds as microseconds: at least 1 ms.
pub fn step_from_seconds(seconds: f64) -> Result<i64, String> {
    let micros = (seconds * 1_000_000.0).round();
    if !micros.is_finite() || micros < 1_000.0 {
        return Err("must be at least 1 ms".to_owned());
    }
    Ok(micros as i64)
}

/// A step sent as text: `"60"`, `"60s"`, `"5m"`, `"1h"`, `"1d"`, `"500ms"`, as microseconds.
pub fn parse_step(text: &str) -> Result<i64, String> {
    let err = || STEP_FORMAT.to_owned();
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| err())?;
    let factor = match unit {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        _ => return Err(err()),
    };
    step_from_seconds(number * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_from_rfc3339_and_unix_seconds() {
        assert_eq!(parse_timestamp("2026-11-25T10:30:45.123456Z"), Ok(1_795_602_645_123_456));
        assert_eq!(timestamp_from_seconds(1_795_602_645.5), Ok(1_795_602_645_500_000));
        assert_eq!(parse_timestamp("1795602645"), Ok(1_795_602_645_000_000));
        assert_eq!(parse_timestamp(" 1795602645.5 "), Ok(1_795_602_645_500_000));
        assert!(parse_timestamp("yesterday").is_err());
        assert!(timestamp_from_seconds(-5.0).is_err());
        assert!(timestamp_from_seconds(f64::NAN).is_err() && parse_timestamp("inf").is_err());
        assert_eq!(parse_timestamp("9999-12-31T23:59:59.999999Z"), Ok(253_402_300_799_999_999));
        assert!(parse_timestamp("9999-12-31T23:59:59.999999-23:59").is_err(), "past 9999 in UTC");
        assert!(parse_timestamp("1969-12-31T23:59:59Z").is_err(), "before 1970, as for numbers");
    }

    #[test]
    fn steps_parse_in_seconds_and_units() {
        assert_eq!(step_from_seconds(60.0), Ok(60_000_000));
        assert_eq!(parse_step("60s"), Ok(60_000_000));
        assert_eq!(parse_step("5m"), Ok(300_000_000));
        assert_eq!(parse_step("1h"), Ok(3_600_000_000));
        assert_eq!(parse_step("250ms"), Ok(250_000));
        assert_eq!(parse_step("15"), Ok(15_000_000));
        assert!(step_from_seconds(0.0).is_err());
        for bad in ["-5s", "5 parsecs", ""] {
            assert!(parse_step(bad).is_err(), "{bad}");
        }
    }
}
