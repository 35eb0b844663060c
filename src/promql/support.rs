//! The Prometheus 2.42 language subset: `promql-parser` follows Prometheus 3.x, so what
//! 3.x added (functions, aggregations, `or` inside selectors) is refused here as 2.42's
//! parser refuses it, with a `bad_data` error.

use std::time::Duration;

use promql_parser::parser::{Expr, Offset, VectorSelector};

use super::EngineError;

/// Every function Prometheus 2.42 knows (`promql/parser/functions.go`).
const FUNCTIONS_2_42: &[&str] = &[
    "abs",
    "absent",
    "absent_over_time",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atanh",
    "avg_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "cos",
    "cosh",
    "count_over_time",
    "days_in_month",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "deg",
    "delta",
    "deriv",
    "exp",
    "floor",
    "histogram_count",
    "histogram_fraction",
    "histogram_quantile",
    "histogram_sum",
    "holt_winters",
    "hour",
    "idelta",
    "increase",
    "irate",
    "label_replace",
    "label_join",
    "ln",
    "log10",
    "log2",
    "last_over_time",
    "max_over_time",
    "min_over_time",
    "minute",
    "month",
    "pi",
    "predict_linear",
    "present_over_time",
    "quantile_over_time",
    "rad",
    "rate",
    "resets",
    "round",
    "scalar",
    "sgn",
    "sin",
    "sinh",
    "sort",
    "sort_desc",
    "sqrt",
    "stddev_over_time",
    "stdvar_over_time",
    "sum_over_time",
    "tan",
    "tanh",
    "time",
    "timestamp",
    "vector",
    "year",
];

/// Every aggregation operator of Prometheus 2.42.
const AGGREGATIONS_2_42: &[&str] =
    &["sum", "avg", "count", "min", "max", "group", "stddev", "stdvar", "topk", "bottomk", "count_values", "quantile"];

/// Refuses what Prometheus 2.42's parser would refuse but `promql-parser` accepts.
pub(crate) fn check_supported_syntax(expr: &Expr) -> Result<(), EngineError> {
    match expr {
        Expr::Call(call) => {
            let name = call.func.name;
            if !FUNCTIONS_2_42.contains(&name) {
                return Err(EngineError::BadData(format!("unknown function with name {name:?}")));
            }
            call.args.args.iter().try_for_each(|a| check_supported_syntax(a))
        }
        Expr::Aggregate(agg) => {
            let op = agg.op.to_string().to_lowercase();
            if !AGGREGATIONS_2_42.contains(&op.as_str()) {
                return Err(EngineError::BadData(format!("unknown aggregation operator {op:?}")));
            }
            if let Some(p) = &agg.param {
                check_supported_syntax(p)?;
            }
            check_supported_syntax(&agg.expr)
        }
        Expr::Binary(b) => {
            if let Some(m) = &b.modifier
                && (m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some())
            {
                return Err(EngineError::BadData("unexpected fill modifier in binary expression".into()));
            }
            check_supported_syntax(&b.lhs)?;
            check_supported_syntax(&b.rhs)
        }
        Expr::Unary(u) => check_supported_syntax(&u.expr),
        Expr::Paren(p) => check_supported_syntax(&p.expr),
        Expr::Subquery(sq) => {
            check_duration(&sq.range)?;
            if let Some(step) = &sq.step {
                check_duration(step)?;
            }
            check_offset(&sq.offset)?;
            check_supported_syntax(&sq.expr)
        }
        Expr::VectorSelector(vs) => check_selector(vs),
        Expr::MatrixSelector(ms) => {
            check_duration(&ms.range)?;
            check_selector(&ms.vs)
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => Ok(()),
        Expr::Extension(_) => Err(EngineError::BadData("unsupported expression".into())),
    }
}

fn check_selector(vs: &VectorSelector) -> Result<(), EngineError> {
    if !vs.matchers.or_matchers.is_empty() {
        return Err(EngineError::BadData("unexpected \"or\" in label matching".into()));
    }
    check_offset(&vs.offset)
}

fn check_offset(offset: &Option<Offset>) -> Result<(), EngineError> {
    match offset {
        Some(Offset::Pos(d) | Offset::Neg(d)) => check_duration(d),
        None => Ok(()),
    }
}

/// Prometheus keeps durations as Go `time.Duration` (int64 nanoseconds), so its parser
/// refuses any longer than about 292 years; the time arithmetic relies on that bound.
fn check_duration(d: &Duration) -> Result<(), EngineError> {
    if d.as_nanos() > i64::MAX as u128 {
        return Err(EngineError::BadData(format!(
            "not a valid duration string: {:?} (duration out of range)",
            promql_parser::util::display_duration(d)
        )));
    }
    Ok(())
}

/// Prometheus 2.42's lexer wants a unit in every duration (`x[5]`: "missing unit character
/// in duration"; `offset 5`: "unexpected number ... in offset, expected duration");
/// promql-parser reads a bare number there as seconds. Strings and comments are skipped.
pub(crate) fn check_duration_units(query: &str) -> Result<(), EngineError> {
    let bytes = query.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'"' | b'\'' | b'`' => {
                i += 1;
                while i < bytes.len() && bytes[i] != c {
                    if bytes[i] == b'\\' && c != b'`' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'[' => {
                let end = query[i..].find(']').map_or(bytes.len(), |e| i + e);
                if query[i + 1..end].split(':').any(|part| is_bare_number(part.trim())) {
                    return Err(EngineError::BadData("parse error: missing unit character in duration".into()));
                }
                i = end + 1;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b':') {
                    i += 1;
                }
                if query[start..i].eq_ignore_ascii_case("offset") {
                    let rest = query[i..].trim_start();
                    let rest = rest.strip_prefix('-').unwrap_or(rest);
                    let len = rest
                        .find(|ch: char| !(ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '+' | '-')))
                        .unwrap_or(rest.len());
                    let token = &rest[..len];
                    if is_bare_number(token) {
                        return Err(EngineError::BadData(format!(
                            "parse error: unexpected number {token:?} in offset, expected duration"
                        )));
                    }
                }
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// A number without a unit (`5`, `1.5`, `1e30`).
fn is_bare_number(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-'))
        && s.parse::<f64>().is_ok()
}
