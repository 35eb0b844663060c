//! The fetch plan: which raw samples each selector reads, as Prometheus 2.42's
//! `getTimeRangesForSelector` computes them (the whole query range, minus subquery ranges
//! and offsets on the path, minus the selector's range or the lookback delta, minus its own
//! offset; an `@` pins the time).

use std::time::{Duration, SystemTime};

use promql_parser::label::{MatchOp, Matcher, Matchers};
use promql_parser::parser::{AtModifier, Expr, Offset, VectorSelector};

use super::{EvalRange, Fetch};

/// Milliseconds of an `offset` modifier (negative offsets look ahead).
pub(crate) fn offset_ms(offset: &Option<Offset>) -> i64 {
    match offset {
        None => 0,
        Some(Offset::Pos(d)) => duration_ms(d),
        Some(Offset::Neg(d)) => duration_ms(d).saturating_neg(),
    }
}

pub(crate) fn duration_ms(d: &Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The time an `@` modifier pins, `start()`/`end()` resolved against the query range.
pub(crate) fn at_ms(at: &Option<AtModifier>, range: &EvalRange) -> Option<i64> {
    match at.as_ref()? {
        AtModifier::Start => Some(range.start_ms),
        AtModifier::End => Some(range.end_ms),
        AtModifier::At(t) => Some(system_time_ms(t)),
    }
}

fn system_time_ms(t: &SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => duration_ms(&d),
        Err(before) => duration_ms(&before.duration()).saturating_neg(),
    }
}

/// Offsets and ranges of the subqueries enclosing a selector (Prometheus' `subqueryTimes`).
#[derive(Clone, Copy, Default)]
struct SubqueryPath {
    offset_ms: i64,
    range_ms: i64,
    at_ms: Option<i64>,
}

/// Calls `visit` for every vector selector of `expr` (including those inside range
/// selectors) in the fixed pre-order walk both `fetches` and the evaluator use, with the
/// selector's range (0 for instant selectors) and its enclosing subqueries.
fn walk<'a>(
    expr: &'a Expr,
    path: SubqueryPath,
    range: &EvalRange,
    visit: &mut dyn FnMut(&'a VectorSelector, i64, SubqueryPath),
) {
    match expr {
        Expr::VectorSelector(vs) => visit(vs, 0, path),
        Expr::MatrixSelector(ms) => visit(&ms.vs, duration_ms(&ms.range), path),
        Expr::Aggregate(agg) => {
            if let Some(param) = &agg.param {
                walk(param, path, range, visit);
            }
            walk(&agg.expr, path, range, visit);
        }
        Expr::Unary(u) => walk(&u.expr, path, range, visit),
        Expr::Binary(b) => {
            walk(&b.lhs, path, range, visit);
            walk(&b.rhs, path, range, visit);
        }
        Expr::Paren(p) => walk(&p.expr, path, range, visit),
        Expr::Subquery(sq) => {
            let own_offset = offset_ms(&sq.offset);
            let own_range = duration_ms(&sq.range);
            let inner = match at_ms(&sq.at, range) {
                Some(at) => SubqueryPath { offset_ms: own_offset, range_ms: own_range, at_ms: Some(at) },
                None => SubqueryPath {
                    offset_ms: path.offset_ms.saturating_add(own_offset),
                    range_ms: path.range_ms.saturating_add(own_range),
                    at_ms: path.at_ms,
                },
            };
            walk(&sq.expr, inner, range, visit);
        }
        Expr::Call(call) => {
            for arg in &call.args.args {
                walk(arg, path, range, visit);
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

/// Every vector selector of `expr` in walk order (the index is its `data` slot).
pub(crate) fn selectors<'a>(expr: &'a Expr, range: &EvalRange) -> Vec<&'a VectorSelector> {
    let mut out = Vec::new();
    walk(expr, SubqueryPath::default(), range, &mut |vs, _, _| out.push(vs));
    out
}

pub(crate) fn fetches(expr: &Expr, range: &EvalRange, lookback_ms: i64) -> Vec<Fetch> {
    let mut out = Vec::new();
    walk(expr, SubqueryPath::default(), range, &mut |vs, range_ms, path| {
        let (mut start, mut end) = (range.start_ms, range.end_ms);
        if let Some(at) = path.at_ms {
            (start, end) = (at, at);
        }
        if let Some(at) = at_ms(&vs.at, range) {
            (start, end) = (at, at);
        } else {
            start = start.saturating_sub(path.offset_ms.saturating_add(path.range_ms));
            end = end.saturating_sub(path.offset_ms);
        }
        start = start.saturating_sub(if range_ms == 0 { lookback_ms } else { range_ms });
        let own_offset = offset_ms(&vs.offset);
        let one_instant =
            vs.at.is_some() || (path.range_ms == 0 && (path.at_ms.is_some() || range.start_ms == range.end_ms));
        out.push(Fetch {
            matchers: full_matchers(vs),
            start_ms: start.saturating_sub(own_offset),
            end_ms: end.saturating_sub(own_offset),
            latest_only: range_ms == 0 && one_instant,
        });
    });
    out
}

/// The selector's matchers with its metric name (written before the braces) as a
/// `__name__` equality matcher, as Prometheus' `LabelMatchers` hold it.
pub(crate) fn full_matchers(vs: &VectorSelector) -> Matchers {
    let mut matchers = vs.matchers.clone();
    if let Some(name) = &vs.name {
        let name_matcher = Matcher::new(MatchOp::Equal, super::labels::METRIC_NAME, name);
        matchers.matchers.insert(0, name_matcher.clone());
        for group in &mut matchers.or_matchers {
            group.insert(0, name_matcher.clone());
        }
    }
    matchers
}
