//! Functions over range vectors (`rate(x[5m])`, `avg_over_time(...)`): evaluated one
//! series at a time, with a binary-searched window per step, as Prometheus 2.42 does.

use std::collections::HashSet;
use std::sync::Arc;

use promql_parser::parser::Expr;

use super::eval::{Evaluator, unparen, window_bounds};
use super::labels::drop_name;
use super::plan::{at_ms, duration_ms, offset_ms};
use super::value::{Ctx, StepSeries, Val, same_labelset_error};
use super::{EngineError, Labels};

/// The per-window computation of a range function; `None` drops the step.
type WindowFn = fn(&Window) -> Option<f64>;

/// One step's window of one series, with what the functions need to know about it.
pub(crate) struct Window<'a> {
    pub points: &'a [(i64, f64)],
    /// The evaluation time of the step.
    pub ts: i64,
    /// Window bounds (`rangeStart`/`rangeEnd` of Prometheus' `extrapolatedRate`).
    pub range_start: i64,
    pub range_end: i64,
    pub range_ms: i64,
    /// The scalar argument at this step (`quantile_over_time`'s φ, `predict_linear`'s t).
    pub param: f64,
    /// The second scalar argument (`holt_winters`' trend factor).
    pub param2: f64,
}

pub(crate) fn window_fn(name: &str) -> Option<WindowFn> {
    let f: WindowFn = match name {
        "rate" => |w| extrapolated_rate(w, true, true),
        "increase" => |w| extrapolated_rate(w, true, false),
        "delta" => |w| extrapolated_rate(w, false, false),
        "irate" => |w| instant_value(w.points, true),
        "idelta" => |w| instant_value(w.points, false),
        "deriv" => deriv,
        "predict_linear" => predict_linear,
        "resets" => resets,
        "changes" => changes,
        "avg_over_time" => |w| Some(avg(w.points)),
        "min_over_time" => |w| Some(min(w.points)),
        "max_over_time" => |w| Some(max(w.points)),
        "sum_over_time" => |w| Some(kahan(w.points.iter().map(|p| p.1))),
        "count_over_time" => |w| Some(w.points.len() as f64),
        "last_over_time" => |w| w.points.last().map(|p| p.1),
        "present_over_time" | "absent_over_time" => |_| Some(1.0),
        "stddev_over_time" => |w| Some(variance(w.points).sqrt()),
        "stdvar_over_time" => |w| Some(variance(w.points)),
        "holt_winters" => holt_winters,
        "quantile_over_time" => |w| {
            let mut values: Vec<f64> = w.points.iter().map(|p| p.1).collect();
            Some(super::aggregate::quantile(w.param, &mut values))
        },
        _ => return None,
    };
    Some(f)
}

impl Evaluator {
    /// Evaluates a function whose argument `matrix_arg` is a range selector or subquery.
    pub(crate) fn eval_range_function(
        &mut self,
        name: &str,
        args: &[&Expr],
        matrix_arg: usize,
        ctx: &Ctx,
    ) -> Result<Val, EngineError> {
        let Some(f) = window_fn(name) else {
            return Err(EngineError::Execution(format!("unsupported function: {name}")));
        };
        let base = self.budget.current;
        let mut params: Vec<Vec<f64>> = Vec::new();
        for (i, arg) in args.iter().enumerate() {
            if i != matrix_arg {
                match self.eval(arg, ctx)? {
                    Val::Scalar(values) => params.push(values),
                    _ => return Err(EngineError::Execution(format!("{name}: expected a scalar argument"))),
                }
            }
        }
        let (series, range_ms, at, offset, held) = match unparen(args[matrix_arg]) {
            Expr::MatrixSelector(ms) => (
                self.raw_range_series(&ms.vs)?,
                duration_ms(&ms.range),
                at_ms(&ms.vs.at, &self.range),
                offset_ms(&ms.vs.offset),
                0,
            ),
            Expr::Subquery(sq) => {
                let (series, range_ms, held) = self.eval_subquery(sq, ctx)?;
                (series, range_ms, at_ms(&sq.at, &self.range), offset_ms(&sq.offset), held)
            }
            _ => return Err(EngineError::Execution(format!("{name}: expected a range vector"))),
        };
        let keep_name = name == "last_over_time";
        let steps = ctx.steps();
        // With `@` every step sees the same window, so (as Prometheus evaluates such a
        // step-invariant call once) the value is computed once per series and parameter
        // values; `predict_linear` depends on the step's time and is not step-invariant.
        let step_invariant = at.is_some() && name != "predict_linear";
        let mut out: Vec<StepSeries> = Vec::with_capacity(series.len());
        for s in &series {
            self.budget.check_deadline()?;
            let mut points = Vec::new();
            let mut largest_window = 0usize;
            let mut memo: Option<((u64, u64), Option<f64>)> = None;
            let mut i = 0usize;
            while i < steps {
                let ts = ctx.time_at(i);
                let range_end = at.unwrap_or(ts).saturating_sub(offset);
                let range_start = range_end.saturating_sub(range_ms);
                let (lo, hi) = window_bounds(&s.points, range_start, range_end);
                if lo == hi {
                    // Skip to the first step whose window reaches the next sample.
                    match (at, s.points.get(lo)) {
                        (None, Some(next)) => {
                            i = ctx.first_step_at_or_after(next.0.saturating_add(offset)).max(i + 1);
                            continue;
                        }
                        _ => break,
                    }
                }
                largest_window = largest_window.max(hi - lo);
                let window = Window {
                    points: &s.points[lo..hi],
                    ts,
                    range_start,
                    range_end,
                    range_ms,
                    param: params.first().and_then(|p| p.get(i).copied()).unwrap_or(f64::NAN),
                    param2: params.get(1).and_then(|p| p.get(i).copied()).unwrap_or(f64::NAN),
                };
                if name == "holt_winters" {
                    check_holt_winters_factors(window.param, window.param2)?;
                }
                let key = (window.param.to_bits(), window.param2.to_bits());
                let value = match memo {
                    Some((k, v)) if k == key => v,
                    _ => {
                        let v = f(&window);
                        if step_invariant {
                            memo = Some((key, v));
                        }
                        v
                    }
                };
                if let Some(v) = value {
                    points.push((ts, v));
                }
                i += 1;
            }
            self.budget.check(largest_window + points.len())?;
            if !points.is_empty() {
                self.budget.add(points.len())?;
                let labels = if keep_name { s.labels.clone() } else { Arc::new(drop_name(&s.labels)) };
                out.push(StepSeries { labels, points });
            }
        }
        self.budget.current = self.budget.current.saturating_sub(held);
        if name == "absent_over_time" {
            return absent_over_time(&out, ctx, args[matrix_arg], base, &mut self.budget);
        }
        let mut seen = HashSet::with_capacity(out.len());
        if out.iter().any(|s| !seen.insert(s.labels.clone())) {
            return Err(same_labelset_error());
        }
        Ok(Val::Vector(out))
    }
}

/// `absent_over_time`: 1 at the steps where no series had a sample.
fn absent_over_time(
    present: &[StepSeries],
    ctx: &Ctx,
    arg: &Expr,
    base: usize,
    budget: &mut super::value::Budget,
) -> Result<Val, EngineError> {
    let found: HashSet<i64> = present.iter().flat_map(|s| s.points.iter().map(|p| p.0)).collect();
    budget.current = base;
    let mut points = Vec::new();
    for t in ctx.times() {
        if !found.contains(&t) {
            if points.len() % 4096 == 0 {
                budget.check_deadline()?;
            }
            budget.add(1)?;
            points.push((t, 1.0));
        }
    }
    if points.is_empty() {
        return Ok(Val::Vector(Vec::new()));
    }
    Ok(Val::Vector(vec![StepSeries { labels: Arc::new(absent_labels(arg)), points }]))
}

/// The labels `absent()` reports: those pinned by exactly one equality matcher.
pub(crate) fn absent_labels(arg: &Expr) -> Labels {
    let vs = match unparen(arg) {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        _ => return Labels::new(),
    };
    let mut out = Labels::new();
    let mut has = HashSet::new();
    for m in &vs.matchers.matchers {
        if m.name == super::labels::METRIC_NAME {
            continue;
        }
        if matches!(m.op, promql_parser::label::MatchOp::Equal) && !has.contains(&m.name) {
            super::labels::set_or_remove(&mut out, &m.name, &m.value);
            has.insert(m.name.clone());
        } else {
            out.remove(&m.name);
        }
    }
    out
}

/// Prometheus 2.42's `extrapolatedRate`: the increase over the window, corrected for
/// counter resets and extrapolated towards the window's bounds when the first/last sample
/// is close to them (and never below a counter's zero point).
fn extrapolated_rate(w: &Window, is_counter: bool, is_rate: bool) -> Option<f64> {
    let points = w.points;
    if points.len() < 2 {
        return None;
    }
    let (first, last) = (points[0], points[points.len() - 1]);
    let mut result = last.1 - first.1;
    if is_counter {
        let mut prev = first.1;
        for p in &points[1..] {
            if p.1 < prev {
                result += prev;
            }
            prev = p.1;
        }
    }
    let mut duration_to_start = first.0.saturating_sub(w.range_start) as f64 / 1000.0;
    let duration_to_end = w.range_end.saturating_sub(last.0) as f64 / 1000.0;
    let sampled_interval = (last.0 - first.0) as f64 / 1000.0;
    let average_between = sampled_interval / (points.len() - 1) as f64;
    if is_counter && result > 0.0 && first.1 >= 0.0 {
        let duration_to_zero = sampled_interval * (first.1 / result);
        if duration_to_zero < duration_to_start {
            duration_to_start = duration_to_zero;
        }
    }
    let threshold = average_between * 1.1;
    let mut extrapolate_to = sampled_interval;
    extrapolate_to += if duration_to_start < threshold { duration_to_start } else { average_between / 2.0 };
    extrapolate_to += if duration_to_end < threshold { duration_to_end } else { average_between / 2.0 };
    let mut factor = extrapolate_to / sampled_interval;
    if is_rate {
        factor /= w.range_ms as f64 / 1000.0;
    }
    Some(result * factor)
}

/// `irate`/`idelta`: from the last two samples.
fn instant_value(points: &[(i64, f64)], is_rate: bool) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let (prev, last) = (points[points.len() - 2], points[points.len() - 1]);
    let mut result = if is_rate && last.1 < prev.1 { last.1 } else { last.1 - prev.1 };
    let interval = last.0 - prev.0;
    if interval == 0 {
        return None;
    }
    if is_rate {
        result /= interval as f64 / 1000.0;
    }
    Some(result)
}

/// Neumaier-compensated summation step (Prometheus' `kahanSumInc`).
pub(crate) fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if sum.abs() >= inc.abs() { c + ((sum - t) + inc) } else { c + ((inc - t) + sum) };
    (t, c)
}

fn kahan(values: impl Iterator<Item = f64>) -> f64 {
    let (mut sum, mut c) = (0.0, 0.0);
    for v in values {
        (sum, c) = kahan_inc(v, sum, c);
    }
    if sum.is_infinite() { sum } else { sum + c }
}

fn avg(points: &[(i64, f64)]) -> f64 {
    let (mut mean, mut count, mut c) = (0.0f64, 0.0f64, 0.0f64);
    for &(_, v) in points {
        count += 1.0;
        if mean.is_infinite() {
            if v.is_infinite() && (mean > 0.0) == (v > 0.0) {
                continue;
            }
            if !v.is_infinite() && !v.is_nan() {
                continue;
            }
        }
        (mean, c) = kahan_inc(v / count - mean / count, mean, c);
    }
    if mean.is_infinite() { mean } else { mean + c }
}

fn min(points: &[(i64, f64)]) -> f64 {
    let mut m = points[0].1;
    for &(_, v) in points {
        if v < m || m.is_nan() {
            m = v;
        }
    }
    m
}

fn max(points: &[(i64, f64)]) -> f64 {
    let mut m = points[0].1;
    for &(_, v) in points {
        if v > m || m.is_nan() {
            m = v;
        }
    }
    m
}

fn variance(points: &[(i64, f64)]) -> f64 {
    let (mut count, mut mean, mut c_mean, mut aux, mut c_aux) = (0.0f64, 0.0, 0.0, 0.0, 0.0);
    for &(_, v) in points {
        count += 1.0;
        let delta = v - (mean + c_mean);
        (mean, c_mean) = kahan_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_inc(delta * (v - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}

fn resets(w: &Window) -> Option<f64> {
    let count = w.points.windows(2).filter(|p| p[1].1 < p[0].1).count();
    Some(count as f64)
}

fn changes(w: &Window) -> Option<f64> {
    let count = w.points.windows(2).filter(|p| p[1].1 != p[0].1 && !(p[1].1.is_nan() && p[0].1.is_nan())).count();
    Some(count as f64)
}

/// Least-squares slope and intercept at `intercept_time` (Prometheus' `linearRegression`).
fn linear_regression(points: &[(i64, f64)], intercept_time: i64) -> (f64, f64) {
    let (mut n, mut sum_x, mut c_x, mut sum_y, mut c_y) = (0.0f64, 0.0, 0.0, 0.0, 0.0);
    let (mut sum_xy, mut c_xy, mut sum_x2, mut c_x2) = (0.0f64, 0.0, 0.0, 0.0);
    let init_y = points[0].1;
    let mut const_y = true;
    for (i, &(t, v)) in points.iter().enumerate() {
        if const_y && i > 0 && v != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = t.saturating_sub(intercept_time) as f64 / 1e3;
        (sum_x, c_x) = kahan_inc(x, sum_x, c_x);
        (sum_y, c_y) = kahan_inc(v, sum_y, c_y);
        (sum_xy, c_xy) = kahan_inc(x * v, sum_xy, c_xy);
        (sum_x2, c_x2) = kahan_inc(x * x, sum_x2, c_x2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    let (sum_x, sum_y, sum_xy, sum_x2) = (sum_x + c_x, sum_y + c_y, sum_xy + c_xy, sum_x2 + c_x2);
    let cov_xy = sum_xy - sum_x * sum_y / n;
    let var_x = sum_x2 - sum_x * sum_x / n;
    let slope = cov_xy / var_x;
    (slope, sum_y / n - slope * sum_x / n)
}

fn deriv(w: &Window) -> Option<f64> {
    if w.points.len() < 2 {
        return None;
    }
    Some(linear_regression(w.points, w.points[0].0).0)
}

fn predict_linear(w: &Window) -> Option<f64> {
    if w.points.len() < 2 {
        return None;
    }
    let (slope, intercept) = linear_regression(w.points, w.ts);
    Some(slope * w.param + intercept)
}

/// `holt_winters`' factors must lie strictly between 0 and 1; Prometheus checks them each
/// time the function runs on a window, so only when some series has samples.
fn check_holt_winters_factors(sf: f64, tf: f64) -> Result<(), EngineError> {
    if sf <= 0.0 || sf >= 1.0 {
        return Err(EngineError::Execution(format!(
            "invalid smoothing factor. Expected: 0 < sf < 1, got: {}",
            go_percent_f(sf)
        )));
    }
    if tf <= 0.0 || tf >= 1.0 {
        return Err(EngineError::Execution(format!(
            "invalid trend factor. Expected: 0 < tf < 1, got: {}",
            go_percent_f(tf)
        )));
    }
    Ok(())
}

/// Go's `%f`.
fn go_percent_f(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        format!("{v:.6}")
    }
}

/// Prometheus 2.42's `holt_winters` (double exponential smoothing): the last smoothed
/// value, with smoothing factor `param` and trend factor `param2`.
fn holt_winters(w: &Window) -> Option<f64> {
    let (sf, tf) = (w.param, w.param2);
    let points = w.points;
    if points.len() < 2 {
        return None;
    }
    let (mut s0, mut s1) = (0.0f64, points[0].1);
    let mut b = points[1].1 - points[0].1;
    for (i, p) in points.iter().enumerate().skip(1) {
        let x = sf * p.1;
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        (s0, s1) = (s1, x + y);
    }
    Some(s1)
}
