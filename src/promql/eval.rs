//! The tree walk: each node is evaluated over every step of its range at once (as
//! Prometheus' engine does), so selectors scan each series once per query, not per step.

use std::collections::HashMap;
use std::sync::Arc;

use promql_parser::parser::value::ValueType;
use promql_parser::parser::{Expr, SubqueryExpr, VectorSelector};

use super::plan::{at_ms, duration_ms, offset_ms, selectors};
use super::value::{Budget, Collector, Ctx, Lbl, Sample, StepSeries, Val, is_stale, same_labelset_error};
use super::{EngineError, EvalRange, Labels, Limits, Series, Value};

/// Subqueries without a step use Prometheus' default global evaluation interval.
const DEFAULT_SUBQUERY_STEP_MS: i64 = 60_000;

pub(crate) struct Evaluator {
    /// Raw series per selector slot, sorted by labels.
    data: Vec<Vec<StepSeries>>,
    slots: HashMap<*const VectorSelector, usize>,
    /// The query's own range, against which `@ start()` / `@ end()` resolve.
    pub range: EvalRange,
    pub lookback_ms: i64,
    pub budget: Budget,
}

pub(crate) fn run(
    expr: &Expr,
    range: &EvalRange,
    data: Vec<Vec<Series>>,
    limits: &Limits,
    lookback_ms: i64,
) -> Result<Value, EngineError> {
    let instant = range.is_instant();
    if !instant {
        if range.step_ms <= 0 {
            return Err(EngineError::BadData(
                "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
            ));
        }
        if range.end_ms < range.start_ms {
            return Err(EngineError::BadData("end timestamp must not be before start time".into()));
        }
        if !matches!(expr.value_type(), ValueType::Vector | ValueType::Scalar) {
            return Err(EngineError::BadData(format!(
                "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                documented_type(expr.value_type())
            )));
        }
    }
    let sels = selectors(expr, range);
    if sels.len() != data.len() {
        return Err(EngineError::Execution(format!(
            "the query has {} selectors but {} series sets were given",
            sels.len(),
            data.len()
        )));
    }
    let slots = sels.iter().enumerate().map(|(i, vs)| (*vs as *const VectorSelector, i)).collect();
    let mut ev = Evaluator {
        data: data.into_iter().map(prepare_series).collect(),
        slots,
        range: *range,
        lookback_ms,
        budget: Budget::new(limits),
    };
    let ctx = if instant {
        Ctx { start: range.start_ms, end: range.start_ms, step: 1 }
    } else {
        Ctx { start: range.start_ms, end: range.end_ms, step: range.step_ms }
    };
    let val = ev.eval(expr, &ctx)?;
    ev.budget.check_deadline()?;
    Ok(into_answer(val, &ctx, instant))
}

fn documented_type(t: ValueType) -> &'static str {
    match t {
        ValueType::Vector => "instant vector",
        ValueType::Matrix => "range vector",
        ValueType::Scalar => "scalar",
        ValueType::String => "string",
    }
}

/// Sorts series by labels and their points by time, as storage hands them to Prometheus.
fn prepare_series(series: Vec<Series>) -> Vec<StepSeries> {
    let mut out: Vec<StepSeries> = series
        .into_iter()
        .map(|mut s| {
            if !s.points.is_sorted_by_key(|p| p.0) {
                s.points.sort_by_key(|p| p.0);
            }
            StepSeries { labels: Arc::new(s.labels), points: s.points }
        })
        .collect();
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    out
}

fn to_series(s: StepSeries) -> Series {
    Series { labels: Arc::unwrap_or_clone(s.labels), points: s.points }
}

fn into_answer(val: Val, ctx: &Ctx, instant: bool) -> Value {
    match val {
        Val::Str(v) => Value::String { t_ms: ctx.start, v },
        Val::Scalar(values) if instant => {
            Value::Scalar { t_ms: ctx.start, v: values.first().copied().unwrap_or(f64::NAN) }
        }
        Val::Scalar(values) => {
            Value::Matrix(vec![Series { labels: Labels::new(), points: ctx.times().zip(values).collect() }])
        }
        Val::Vector(series) if instant => Value::Vector(
            series
                .into_iter()
                .filter_map(|s| {
                    let v = s.points.first()?.1;
                    Some((Arc::unwrap_or_clone(s.labels), ctx.start, v))
                })
                .collect(),
        ),
        Val::Vector(series) => {
            let mut out: Vec<Series> = series.into_iter().filter(|s| !s.points.is_empty()).map(to_series).collect();
            out.sort_by(|a, b| a.labels.cmp(&b.labels));
            Value::Matrix(out)
        }
        Val::Matrix(series) => Value::Matrix(series.into_iter().map(to_series).collect()),
    }
}

/// Strips parentheses, as Prometheus does before looking at a function's arguments.
pub(crate) fn unparen(mut expr: &Expr) -> &Expr {
    while let Expr::Paren(p) = expr {
        expr = &p.expr;
    }
    expr
}

/// One argument of a per-step operation.
pub(crate) enum StepArg<'a> {
    Vector(&'a [Sample]),
    Scalar(f64),
    /// A string argument (functions read strings from their `Val`s).
    Str,
}

impl StepArg<'_> {
    pub fn scalar(&self) -> f64 {
        match self {
            StepArg::Scalar(v) => *v,
            _ => f64::NAN,
        }
    }

    pub fn vector(&self) -> &[Sample] {
        match self {
            StepArg::Vector(v) => v,
            _ => &[],
        }
    }
}

/// Prometheus' `rangeEval`: evaluates `f` at every step with the step's slice of each
/// argument and gathers its output samples into series.
pub(crate) fn range_eval(
    budget: &mut Budget,
    ctx: &Ctx,
    base_samples: usize,
    args: &[Val],
    mut f: impl FnMut(i64, usize, &[StepArg]) -> Result<Vec<(Lbl, f64)>, EngineError>,
) -> Result<Val, EngineError> {
    let mut cursors: Vec<Vec<usize>> = args
        .iter()
        .map(|a| match a {
            Val::Vector(series) => vec![0; series.len()],
            _ => Vec::new(),
        })
        .collect();
    let mut step_vectors: Vec<Vec<Sample>> = args.iter().map(|_| Vec::new()).collect();
    let args_samples = budget.current;
    let mut out = Collector::default();
    let mut out_count = 0usize;
    for (i, ts) in ctx.times().enumerate() {
        budget.check_deadline()?;
        let mut in_step = 0usize;
        for (a, arg) in args.iter().enumerate() {
            if let Val::Vector(series) = arg {
                let vec = &mut step_vectors[a];
                vec.clear();
                for (si, s) in series.iter().enumerate() {
                    let c = &mut cursors[a][si];
                    if let Some(&(t, v)) = s.points.get(*c)
                        && t == ts
                    {
                        *c += 1;
                        vec.push(Sample { labels: s.labels.clone(), src: si, t, v });
                    }
                }
                in_step += vec.len();
            }
        }
        budget.current = args_samples + out_count;
        budget.add(in_step)?;
        let step_args: Vec<StepArg> = args
            .iter()
            .enumerate()
            .map(|(a, arg)| match arg {
                Val::Vector(_) => StepArg::Vector(&step_vectors[a]),
                Val::Scalar(values) => StepArg::Scalar(values.get(i).copied().unwrap_or(f64::NAN)),
                Val::Str(_) => StepArg::Str,
                Val::Matrix(_) => StepArg::Vector(&[]),
            })
            .collect();
        let result = f(ts, i, &step_args)?;
        out_count += result.len();
        budget.current = args_samples + out_count;
        budget.check(0)?;
        for (labels, v) in result {
            out.push(labels, ts, v)?;
        }
    }
    budget.current = base_samples + out.total_points();
    Ok(Val::Vector(out.series))
}

impl Evaluator {
    pub(crate) fn eval(&mut self, expr: &Expr, ctx: &Ctx) -> Result<Val, EngineError> {
        self.budget.check_deadline()?;
        match expr {
            Expr::NumberLiteral(n) => Ok(Val::Scalar(self.scalar_steps(ctx, |_| n.val)?)),
            Expr::StringLiteral(s) => Ok(Val::Str(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, ctx),
            Expr::Unary(u) => self.eval_negation(&u.expr, ctx),
            Expr::VectorSelector(vs) => self.eval_vector_selector(vs, ctx, false),
            Expr::MatrixSelector(ms) => {
                let end = at_ms(&ms.vs.at, &self.range).unwrap_or(ctx.start).saturating_sub(offset_ms(&ms.vs.offset));
                let series = self.raw_range_series(&ms.vs)?;
                self.window_matrix(series, end.saturating_sub(duration_ms(&ms.range)), end)
            }
            Expr::Subquery(sq) => {
                let (series, _, _) = self.eval_subquery(sq, ctx)?;
                let end = at_ms(&sq.at, &self.range).unwrap_or(ctx.start).saturating_sub(offset_ms(&sq.offset));
                self.window_matrix(series, end.saturating_sub(duration_ms(&sq.range)), end)
            }
            Expr::Call(call) => self.eval_call(call, ctx),
            Expr::Aggregate(agg) => self.eval_aggregate(agg, ctx),
            Expr::Binary(b) => self.eval_binary(b, ctx),
            Expr::Extension(_) => Err(EngineError::Execution("unsupported expression: extension".into())),
        }
    }

    /// A scalar's value at every step, within the samples limit (a subquery's steps are
    /// not bounded by the API's points-per-series check).
    pub(crate) fn scalar_steps(&self, ctx: &Ctx, f: impl Fn(i64) -> f64) -> Result<Vec<f64>, EngineError> {
        self.budget.check(ctx.steps())?;
        Ok(ctx.times().map(f).collect())
    }

    fn slot(&self, vs: &VectorSelector) -> Result<usize, EngineError> {
        self.slots
            .get(&(vs as *const VectorSelector))
            .copied()
            .ok_or_else(|| EngineError::Execution("selector without fetched data".into()))
    }

    /// Evaluates an instant selector at every step: the newest sample within the lookback
    /// window, none when that sample is a stale marker. With `timestamps`, the value is the
    /// sample's time in seconds (what `timestamp()` reports).
    pub(crate) fn eval_vector_selector(
        &mut self,
        vs: &VectorSelector,
        ctx: &Ctx,
        timestamps: bool,
    ) -> Result<Val, EngineError> {
        let slot = self.slot(vs)?;
        let at = at_ms(&vs.at, &self.range);
        let offset = offset_ms(&vs.offset);
        let steps = ctx.steps();
        let mut out = Vec::with_capacity(self.data[slot].len());
        for s in &self.data[slot] {
            self.budget.check_deadline()?;
            let mut points = Vec::new();
            let mut from = 0usize;
            let mut i = 0usize;
            while i < steps {
                let ts = ctx.time_at(i);
                let reference = at.unwrap_or(ts).saturating_sub(offset);
                let idx = from + s.points[from..].partition_point(|p| p.0 <= reference);
                if at.is_none() {
                    from = idx;
                }
                let found = idx.checked_sub(1).and_then(|i| s.points.get(i)).copied();
                let Some((t, v)) =
                    found.filter(|&(t, v)| t >= reference.saturating_sub(self.lookback_ms) && !is_stale(v))
                else {
                    // Nothing until the next sample comes into view: skip the steps in
                    // between rather than visiting each (a 1 ms subquery step over years).
                    match (at, s.points.get(idx)) {
                        (None, Some(next)) => {
                            i = ctx.first_step_at_or_after(next.0.saturating_add(offset)).max(i + 1);
                            continue;
                        }
                        _ => break,
                    }
                };
                self.budget.add(1)?;
                points.push((ts, if timestamps { t as f64 / 1000.0 } else { v }));
                i += 1;
            }
            if !points.is_empty() {
                out.push(StepSeries { labels: s.labels.clone(), points });
            }
        }
        Ok(Val::Vector(out))
    }

    /// A range selector's raw series with stale markers removed (they never enter windows).
    pub(crate) fn raw_range_series(&self, vs: &VectorSelector) -> Result<Vec<StepSeries>, EngineError> {
        let slot = self.slot(vs)?;
        Ok(self.data[slot]
            .iter()
            .map(|s| StepSeries {
                labels: s.labels.clone(),
                points: s.points.iter().copied().filter(|p| !is_stale(p.1)).collect(),
            })
            .collect())
    }

    /// The points of each series within `[mint, maxt]` (closed at both ends, as in
    /// Prometheus 2.42), as a range vector at one instant.
    fn window_matrix(&mut self, series: Vec<StepSeries>, mint: i64, maxt: i64) -> Result<Val, EngineError> {
        let mut out = Vec::new();
        for s in series {
            let (lo, hi) = window_bounds(&s.points, mint, maxt);
            if lo < hi {
                self.budget.add(hi - lo)?;
                out.push(StepSeries { labels: s.labels, points: s.points[lo..hi].to_vec() });
            }
        }
        Ok(Val::Matrix(out))
    }

    /// Evaluates a subquery's inner expression over its own steps (aligned to multiples of
    /// the step, as Prometheus aligns them) and returns its series with the window's range
    /// and end-time rule: `(series, range_ms, at/offset)`.
    pub(crate) fn eval_subquery(
        &mut self,
        sq: &SubqueryExpr,
        ctx: &Ctx,
    ) -> Result<(Vec<StepSeries>, i64, usize), EngineError> {
        let offset = offset_ms(&sq.offset);
        let range = duration_ms(&sq.range);
        let step = match &sq.step {
            Some(d) if !d.is_zero() => duration_ms(d).max(1),
            _ => DEFAULT_SUBQUERY_STEP_MS,
        };
        let (outer_start, outer_end) = match at_ms(&sq.at, &self.range) {
            Some(at) => (at, at),
            None => (ctx.start, ctx.end),
        };
        let earliest = outer_start.saturating_sub(offset).saturating_sub(range);
        let mut start = step * (earliest / step);
        if start < earliest {
            start = start.saturating_add(step);
        }
        let inner = Ctx { start, end: outer_end.saturating_sub(offset), step };
        let before = self.budget.current;
        let val = if inner.end < inner.start { Val::Vector(Vec::new()) } else { self.eval(&sq.expr, &inner)? };
        let series = match val {
            Val::Vector(series) => series,
            Val::Scalar(values) => {
                vec![StepSeries { labels: Arc::new(Labels::new()), points: inner.times().zip(values).collect() }]
            }
            _ => return Err(EngineError::Execution("subquery of a non-vector expression".into())),
        };
        let held = self.budget.current.saturating_sub(before);
        Ok((series, range, held))
    }

    fn eval_negation(&mut self, inner: &Expr, ctx: &Ctx) -> Result<Val, EngineError> {
        match self.eval(inner, ctx)? {
            Val::Scalar(values) => Ok(Val::Scalar(values.into_iter().map(|v| -v).collect())),
            Val::Vector(series) => {
                let mut seen = std::collections::HashSet::new();
                let mut out = Vec::with_capacity(series.len());
                for s in series {
                    let labels = Arc::new(super::labels::drop_name(&s.labels));
                    if !seen.insert(labels.clone()) {
                        return Err(same_labelset_error());
                    }
                    out.push(StepSeries { labels, points: s.points.into_iter().map(|(t, v)| (t, -v)).collect() });
                }
                Ok(Val::Vector(out))
            }
            _ => Err(EngineError::Execution("unary minus applies to scalars and instant vectors".into())),
        }
    }
}

/// The index range of `points` within `[mint, maxt]`.
pub(crate) fn window_bounds(points: &[(i64, f64)], mint: i64, maxt: i64) -> (usize, usize) {
    let lo = points.partition_point(|p| p.0 < mint);
    let hi = points.partition_point(|p| p.0 <= maxt);
    (lo, hi.max(lo))
}
