//! Prometheus' JSON forms: a range query's answer as a matrix, times as seconds, values
//! as strings (`"NaN"`, `"+Inf"`), printed as Prometheus prints them.

use serde::Serialize;

use crate::{float::whole, service::samples::SeriesPoints};

/// A range query's answer in Prometheus' matrix shape (values as strings, as Prometheus
/// does), written straight from the points: an all-series answer has 100,000s of them,
/// and a JSON tree with a `String` per value cost more than the query itself.
pub fn matrix(result: Vec<SeriesPoints>) -> Matrix {
    Matrix { status: "success", data: MatrixData { result_type: "matrix", result } }
}

#[derive(Debug, Serialize)]
pub struct Matrix {
    status: &'static str,
    data: MatrixData,
}

#[derive(Debug, Serialize)]
struct MatrixData {
    #[serde(rename = "resultType")]
    result_type: &'static str,
    result: Vec<SeriesPoints>,
}

impl Serialize for SeriesPoints {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("metric", &self.metric)?;
        map.serialize_entry("values", &Points(&self.values))?;
        map.end()
    }
}

/// `[[unix_seconds, "value"], ...]`.
struct Points<'a>(&'a [(f64, f64)]);

impl Serialize for Points<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|(t, v)| (PointTime(*t), PointValue(*v))))
    }
}

/// A timestamp in seconds: whole seconds as an integer, as Prometheus writes them.
struct PointTime(f64);

impl Serialize for PointTime {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match whole(self.0) {
            Some(seconds) => serializer.serialize_i64(seconds),
            None => serializer.serialize_f64(self.0),
        }
    }
}

/// A value as Prometheus writes it: a string, `"NaN"`, `"+Inf"` and `"-Inf"` as Go's
/// `strconv` spells them.
struct PointValue(f64);

impl Serialize for PointValue {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match whole(self.0) {
            Some(n) => serializer.serialize_str(itoa::Buffer::new().format(n)),
            None if self.0.is_nan() => serializer.serialize_str("NaN"),
            None if self.0.is_infinite() => serializer.serialize_str(if self.0 > 0.0 { "+Inf" } else { "-Inf" }),
            None => match fast_decimal(self.0, &mut zmij::Buffer::new()) {
                Some(printed) => serializer.serialize_str(printed),
                None => serializer.collect_str(&self.0),
            },
        }
    }
}

/// A sample value as the query API writes it (Prometheus' `jsonutil.MarshalValue`): as
/// [`PointValue`], but with an exponent below 1e-6 and from 1e21 on, Go's way (`1e-07`,
/// `1.5e+21`).
pub fn sample_value(x: f64) -> String {
    let magnitude = x.abs();
    if x.is_finite() && magnitude != 0.0 && !(1e-6..1e21).contains(&magnitude) {
        return go_exponent(x);
    }
    value_text(x)
}

/// A value in Go's `strconv.FormatFloat(x, 'f', -1, 64)` (a scalar result's form), with
/// `NaN`, `+Inf`, `-Inf`.
pub fn value_text(x: f64) -> String {
    match whole(x) {
        Some(n) => itoa::Buffer::new().format(n).to_owned(),
        None if x.is_nan() => "NaN".to_owned(),
        None if x.is_infinite() => (if x > 0.0 { "+Inf" } else { "-Inf" }).to_owned(),
        None => match fast_decimal(x, &mut zmij::Buffer::new()) {
            Some(printed) => printed.to_owned(),
            None => x.to_string(),
        },
    }
}

/// Go's `FormatFloat(x, 'e', -1, 64)`: the shortest digits, the exponent signed and of
/// two digits at least.
fn go_exponent(x: f64) -> String {
    let rust = format!("{x:e}");
    let (mantissa, exponent) = rust.split_once('e').unwrap_or((&rust, "0"));
    let (sign, digits) = match exponent.strip_prefix('-') {
        Some(digits) => ('-', digits),
        None => ('+', exponent),
    };
    format!("{mantissa}e{sign}{digits:0>2}")
}

/// A finite `x` as `Display` writes it (the shortest digits that read back as `x`, never
/// an exponent, as Go's `strconv.FormatFloat(x, 'f', -1, 64)`), when `zmij`, several times
/// faster, writes the same: a fraction it does not write with an exponent. `None` for the
/// rest: an exponent, a whole number (which it ends in `.0`), and a tie, an `x` exactly
/// halfway between two shortest decimals (2067776186925270.25, or 8 + 2^-16), of
/// which `Display` may pick the other.
fn fast_decimal(x: f64, buffer: &mut zmij::Buffer) -> Option<&str> {
    let printed = buffer.format_finite(x);
    if printed.contains('e') || printed.ends_with(".0") {
        return None;
    }
    let decimals = printed.len() - printed.find('.')? - 1;
    // x = odd × 2^lowest; halfway between two numbers of `decimals` decimals exactly when
    // its own decimals (as many as -lowest) are one more, the last a 5.
    let bits = x.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let fraction = bits & ((1 << 52) - 1);
    let significand = if biased == 0 { fraction } else { fraction | 1 << 52 };
    let lowest = Ord::max(biased, 1) - 1075 + significand.trailing_zeros() as i32;
    (lowest != -(decimals as i32) - 1).then_some(printed)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    #[test]
    fn matrix_is_prometheus_shaped_with_string_values() {
        let metric = BTreeMap::from([("__name__".to_owned(), "up".to_owned()), ("job".to_owned(), "a".to_owned())]);
        let values = vec![
            (1.5, 2.0),
            (61.5, 0.25),
            (121.5, f64::NAN),
            (181.5, 1e21),
            (240.0, -0.0),
            (300.0, -3.0),
            (360.0, f64::INFINITY),
            (420.0, f64::NEG_INFINITY),
        ];
        let body = serde_json::to_value(matrix(vec![SeriesPoints { metric, values }])).unwrap();
        assert_eq!(
            body,
            json!({"status": "success", "data": {"resultType": "matrix", "result": [{
                "metric": {"__name__": "up", "job": "a"},
                "values": [
                    [1.5, "2"], [61.5, "0.25"], [121.5, "NaN"], [181.5, "1000000000000000000000"], [240, "-0"],
                    [300, "-3"], [360, "+Inf"], [420, "-Inf"],
                ],
            }]}})
        );
    }

    #[test]
    fn sample_values_print_as_prometheus_prints_them() {
        let cases = [
            (1.0, "1"),
            (0.25, "0.25"),
            (-0.0, "-0"),
            (1e-6, "0.000001"),
            (1e-7, "1e-07"),
            (-1.5e-7, "-1.5e-07"),
            (1e21, "1e+21"),
            (1.25e300, "1.25e+300"),
            (5e-324, "5e-324"),
            (123456789012.5, "123456789012.5"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
        ];
        for (x, printed) in cases {
            assert_eq!(sample_value(x), printed, "{x:e}");
        }
        assert_eq!(value_text(1e21), "1000000000000000000000");
        assert_eq!(value_text(1e-7), "0.0000001");
    }

    #[test]
    fn fractions_print_as_display_prints_them() {
        // xorshift64*: a fixed sequence of bit patterns, so a failure reproduces.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        let mut fast = 0;
        for i in 0..400_000 {
            let bits = next();
            let x = match i % 5 {
                // Any finite double.
                0 => f64::from_bits(bits),
                // Rates and averages: fractions between 1e-9 and 1e12.
                1 => (bits >> 11) as f64 / (1u64 << 53) as f64 * 10f64.powi((bits % 22) as i32 - 9),
                // Decimal fractions as written by people and by scrapers.
                2 => (bits % 10_000_000) as f64 / 10f64.powi((bits % 9) as i32),
                // Fractions of few bits, where ties are: an odd number over a power of two.
                3 => ((bits >> 12) | 1) as f64 / (1u64 << (bits % 40)) as f64 / 2f64.powi((bits % 7) as i32 * 8),
                // Near the boundaries: whole numbers around 2^53 and 1e16, and their neighbours.
                _ => f64::from_bits(
                    [9_007_199_254_740_992f64, 1e16, 1e-5, 1e-7, 0.1][(bits % 5) as usize]
                        .to_bits()
                        .wrapping_add(bits % 64)
                        .wrapping_sub(32),
                ),
            };
            if !x.is_finite() {
                continue;
            }
            if let Some(printed) = fast_decimal(x, &mut zmij::Buffer::new()) {
                assert_eq!(printed, x.to_string(), "{:#x}", x.to_bits());
                fast += 1;
            }
        }
        // Most of the fractions take the fast path (not only the exotic rest).
        assert!(fast > 150_000, "{fast}");
        for whole_or_exponent in [1.0, -0.0, 2f64.powi(60), 1e21, 1e-7, 5e-324, f64::MAX] {
            assert_eq!(fast_decimal(whole_or_exponent, &mut zmij::Buffer::new()), None, "{whole_or_exponent}");
        }
        assert_eq!(fast_decimal(0.1, &mut zmij::Buffer::new()), Some("0.1"));
        // Ties: Display writes 2067776186925270.3 where zmij writes .2.
        let halfway = 2_067_776_186_925_270.0 + 0.25;
        for tie in [halfway, 8.0 + 2f64.powi(-16), 2f64.powi(46) + 0.125] {
            assert_eq!(fast_decimal(tie, &mut zmij::Buffer::new()), None, "{tie}");
        }
        assert_eq!(serde_json::to_string(&PointValue(halfway)).unwrap(), r#""2067776186925270.3""#);
    }
}
