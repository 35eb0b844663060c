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
