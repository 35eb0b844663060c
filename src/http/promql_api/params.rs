//! The query API's parameters, read as Prometheus reads them: from the URL and, for a
//! POST, from an `application/x-www-form-urlencoded` body (whose values come first);
//! times as RFC 3339 or Unix seconds, durations as `5m` or seconds; each refusal worded
//! as Prometheus 2.42 words it (`web/api/v1/api.go`).

use axum::{
    extract::{FromRequest, Request},
    http::{Method, header},
};

use super::{ApiError, PromError};
use crate::http::extract::Body;

/// A request's parameters, in Prometheus' order: the body's, then the URL's.
#[derive(Debug, Default)]
pub struct Params(Vec<(String, String)>);

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let query = req.uri().query().unwrap_or_default().to_owned();
        let form = req.method() == Method::POST
            && req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
                v.split(';').next().unwrap_or_default().trim().eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        let body = if form { Some(Body::from_request(req, state).await?.0) } else { None };
        Ok(Params::parse(body.as_deref(), query.as_bytes()))
    }
}

impl Params {
    /// The pairs of a form body (if any), then those of the URL's query string.
    pub fn parse(form: Option<&[u8]>, query: &[u8]) -> Params {
        let mut pairs = Vec::new();
        if let Some(body) = form {
            pairs.extend(url::form_urlencoded::parse(body).into_owned());
        }
        pairs.extend(url::form_urlencoded::parse(query).into_owned());
        Params(pairs)
    }

    /// The first value of `name`; empty counts as absent, as Go's `FormValue` has it.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str()).filter(|v| !v.is_empty())
    }

    /// Every value of `name`, in order.
    pub fn values(&self, name: &str) -> Vec<&str> {
        self.0.iter().filter(|(key, _)| key == name).map(|(_, value)| value.as_str()).collect()
    }

    /// A time parameter (`time`, `start`, `end`) that may be left out.
    pub fn time(&self, name: &str) -> Result<Option<Instant>, PromError> {
        self.value(name)
            .map(|text| {
                parse_time(text).map_err(|err| invalid(name, &format!("Invalid time value for '{name}': {err}")))
            })
            .transpose()
    }

    /// A time parameter that must be given (`query_range`'s `start` and `end`).
    pub fn required_time(&self, name: &str) -> Result<Instant, PromError> {
        parse_time(self.value(name).unwrap_or_default()).map_err(|err| invalid(name, &err))
    }

    /// A duration parameter (`step`, `timeout`), in nanoseconds.
    pub fn duration(&self, name: &str) -> Result<Option<i128>, PromError> {
        self.value(name).map(|text| parse_duration(text).map_err(|err| invalid(name, &err))).transpose()
    }

    /// `limit` of the label and series endpoints (Prometheus 2.48's): 0 or absent is no
    /// limit.
    pub fn limit(&self) -> Result<usize, PromError> {
        let Some(text) = self.value("limit") else { return Ok(usize::MAX) };
        match text.parse::<i64>() {
            Ok(0) => Ok(usize::MAX),
            Ok(n) if n > 0 => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
            Ok(_) => Err(invalid("limit", "limit must be non-negative")),
            Err(_) => Err(invalid("limit", &format!("strconv.Atoi: parsing {text:?}: invalid syntax"))),
        }
    }
}

/// `invalid parameter "<name>": <why>`, bad_data.
pub fn invalid(name: &str, why: &str) -> PromError {
    PromError::bad_data(format!("invalid parameter {name:?}: {why}"))
}

/// A point in time, in nanoseconds since the Unix epoch (Prometheus keeps a `time.Time`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Instant(pub i128);

const NANOS_PER_SECOND: i128 = 1_000_000_000;
const NANOS_PER_MILLI: i128 = 1_000_000;

/// Prometheus' own boundary times (`minTime` and `maxTime` of its API), which clients
/// send for "no bound"; Go's parser reads no year beyond four digits, so they are spelled
/// out.
const MIN_TIME_TEXT: &str = "-292273086-05-16T16:47:06Z";
const MAX_TIME_TEXT: &str = "292277026596-12-04T15:30:07.999999999Z";
/// The milliseconds the engine and the store can hold either way (microseconds in i64).
const MAX_MILLIS: i64 = i64::MAX / 1000 - 1;

impl Instant {
    pub const MIN: Instant = Instant(-(MAX_MILLIS as i128) * NANOS_PER_MILLI);
    pub const MAX: Instant = Instant(MAX_MILLIS as i128 * NANOS_PER_MILLI);

    pub fn now() -> Instant {
        Instant(i128::from(crate::time::now_micros()) * 1000)
    }

    /// Milliseconds (Prometheus' `timestamp.FromTime`: rounded down), within what the
    /// store can hold.
    pub fn millis(self) -> i64 {
        let millis = self.0.div_euclid(NANOS_PER_MILLI).clamp(-(MAX_MILLIS as i128), MAX_MILLIS as i128);
        millis as i64
    }
}

/// `time.Time` from Unix seconds with a fraction (kept to the millisecond, rounded) or
/// RFC 3339 (to the nanosecond), as Prometheus' `parseTime`.
pub fn parse_time(text: &str) -> Result<Instant, String> {
    let cannot = || format!("cannot parse {text:?} to a valid timestamp");
    if let Some(seconds) = go_float(text) {
        if !seconds.is_finite() || seconds.abs() >= MAX_MILLIS as f64 / 1000.0 {
            return Err(cannot());
        }
        let whole = seconds.trunc();
        let millis = ((seconds - whole) * 1000.0).round();
        return Ok(Instant(whole as i128 * NANOS_PER_SECOND + millis as i128 * NANOS_PER_MILLI));
    }
    match text {
        MIN_TIME_TEXT => return Ok(Instant::MIN),
        MAX_TIME_TEXT => return Ok(Instant::MAX),
        _ => {}
    }
    let parsed = chrono::DateTime::parse_from_rfc3339(text).map_err(|_| cannot())?;
    let nanos = i128::from(parsed.timestamp()) * NANOS_PER_SECOND + i128::from(parsed.timestamp_subsec_nanos());
    Ok(Instant(nanos.clamp(Instant::MIN.0, Instant::MAX.0)))
}

/// A float as Go's `strconv.ParseFloat` reads one (decimal forms, `Inf`, `NaN`); `None`
/// for anything else, which then may be a date.
fn go_float(text: &str) -> Option<f64> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    let plain = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
        && digits.bytes().next().is_some_and(|b| b.is_ascii_digit() || b == b'.');
    let named = ["inf", "infinity", "nan"].iter().any(|name| digits.eq_ignore_ascii_case(name));
    if plain || named { text.parse().ok() } else { None }
}

/// A duration in nanoseconds from seconds (`15`, `0.5`) or Prometheus' form (`1h30m`,
/// `500ms`), as Prometheus' `parseDuration`.
pub fn parse_duration(text: &str) -> Result<i128, String> {
    if let Some(seconds) = go_float(text) {
        let nanos = seconds * 1e9;
        if nanos.is_nan() {
            return Err(format!("cannot parse {text:?} to a valid duration"));
        }
        if nanos >= i64::MAX as f64 || nanos <= i64::MIN as f64 {
            return Err(format!("cannot parse {text:?} to a valid duration. It overflows int64"));
        }
        return Ok(nanos as i128);
    }
    prometheus_duration(text).ok_or_else(|| format!("cannot parse {text:?} to a valid duration"))
}

/// Prometheus' duration syntax (`model.ParseDuration`): whole numbers with the units
/// `y w d h m s ms`, each at most once and in that order, or `0`.
pub fn prometheus_duration(text: &str) -> Option<i128> {
    if text == "0" {
        return Some(0);
    }
    const UNITS: [(&str, i128); 7] = [
        ("y", 365 * 24 * 3600 * NANOS_PER_SECOND),
        ("w", 7 * 24 * 3600 * NANOS_PER_SECOND),
        ("d", 24 * 3600 * NANOS_PER_SECOND),
        ("h", 3600 * NANOS_PER_SECOND),
        ("m", 60 * NANOS_PER_SECOND),
        ("s", NANOS_PER_SECOND),
        ("ms", NANOS_PER_MILLI),
    ];
    let mut rest = text;
    let mut next_unit = 0;
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 30 {
            return None;
        }
        let number: i128 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        // `ms` before `m`: the longer unit where both fit.
        let (at, (unit, nanos)) = UNITS
            .iter()
            .enumerate()
            .skip(next_unit)
            .find(|(_, (unit, _))| rest.starts_with(unit) && !(*unit == "m" && rest.starts_with("ms")))?;
        rest = &rest[unit.len()..];
        next_unit = at + 1;
        total = total.checked_add(number.checked_mul(*nanos)?)?;
    }
    (!text.is_empty() && total <= i128::from(i64::MAX)).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_prometheus_parses_them() {
        assert_eq!(parse_time("4"), Ok(Instant(4 * NANOS_PER_SECOND)));
        assert_eq!(parse_time("1.0006").unwrap().millis(), 1001, "fractions round to the millisecond");
        assert_eq!(parse_time("-1.5").unwrap().millis(), -1500);
        assert_eq!(parse_time("1e3").unwrap().millis(), 1_000_000);
        assert_eq!(parse_time("2026-01-01T00:00:00Z").unwrap().millis(), 1_767_225_600_000);
        assert_eq!(parse_time("2026-01-01T00:00:00.0019+01:00").unwrap().millis(), 1_767_222_000_001);
        assert_eq!(parse_time(MIN_TIME_TEXT), Ok(Instant::MIN));
        assert_eq!(parse_time(MAX_TIME_TEXT), Ok(Instant::MAX));
        for bad in ["", "abc", "NaN", "Inf", "1e300", "2026-13-01T00:00:00Z", "0x10"] {
            assert_eq!(parse_time(bad), Err(format!("cannot parse {bad:?} to a valid timestamp")), "{bad}");
        }
    }

    #[test]
    fn durations_parse_as_prometheus_parses_them() {
        let s = NANOS_PER_SECOND;
        assert_eq!(parse_duration("15"), Ok(15 * s));
        assert_eq!(parse_duration("0.5"), Ok(s / 2));
        assert_eq!(parse_duration("15s"), Ok(15 * s));
        assert_eq!(parse_duration("1h30m"), Ok(5400 * s));
        assert_eq!(parse_duration("1m500ms"), Ok(60 * s + s / 2));
        assert_eq!(parse_duration("2w1d"), Ok(15 * 24 * 3600 * s));
        assert_eq!(parse_duration("0"), Ok(0));
        assert_eq!(parse_duration("-1"), Ok(-s));
        for bad in ["", "abc", "1.5m", "5m1h", "1s1s", "m", "1x"] {
            assert_eq!(parse_duration(bad), Err(format!("cannot parse {bad:?} to a valid duration")), "{bad}");
        }
        assert!(parse_duration("1e10").unwrap_err().ends_with("It overflows int64"));
    }
}
