//! Function calls: dispatch, and the functions over instant vectors and scalars.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Datelike, Timelike};
use promql_parser::parser::{Call, Expr};
use regex::Regex;

use super::eval::{Evaluator, StepArg, range_eval, unparen};
use super::labels::{drop_name, is_valid_label_name, set_or_remove};
use super::range_functions::absent_labels;
use super::value::{Ctx, Lbl, Sample, Val};
use super::{EngineError, Labels};

/// Functions of Prometheus 2.42 that only apply to native histograms, which this store
/// does not hold.
const NATIVE_HISTOGRAM_FUNCTIONS: &[&str] = &["histogram_count", "histogram_sum", "histogram_fraction"];

impl Evaluator {
    pub(crate) fn eval_call(&mut self, call: &Call, ctx: &Ctx) -> Result<Val, EngineError> {
        let name = call.func.name;
        let args: Vec<&Expr> = call.args.args.iter().map(|a| unparen(a)).collect();
        if NATIVE_HISTOGRAM_FUNCTIONS.contains(&name) {
            return Err(EngineError::Execution(format!(
                "unsupported function: {name} (native histograms are not supported)"
            )));
        }
        if let Some(i) = args.iter().position(|a| matches!(a, Expr::MatrixSelector(_) | Expr::Subquery(_))) {
            return self.eval_range_function(name, &args, i, ctx);
        }
        let base = self.budget.current;
        match name {
            "time" => return Ok(Val::Scalar(self.scalar_steps(ctx, |t| t as f64 / 1000.0)?)),
            "pi" => return Ok(Val::Scalar(self.scalar_steps(ctx, |_| std::f64::consts::PI)?)),
            _ => {}
        }
        // `timestamp(selector)` reports the raw samples' times, not the step's.
        let raw_timestamps = name == "timestamp" && matches!(args.first(), Some(Expr::VectorSelector(_)));
        let vals = if let (true, Some(Expr::VectorSelector(vs))) = (raw_timestamps, args.first()) {
            vec![self.eval_vector_selector(vs, ctx, true)?]
        } else {
            let mut vals = Vec::with_capacity(args.len());
            for arg in &args {
                vals.push(self.eval(arg, ctx)?);
            }
            vals
        };
        let budget = &mut self.budget;
        let out = match name {
            "vector" => {
                range_eval(budget, ctx, base, &vals, |_, _, a| Ok(vec![(Arc::new(Labels::new()), a[0].scalar())]))?
            }
            "scalar" => {
                let steps = ctx.steps();
                let v = range_eval(budget, ctx, base, &vals, |_, _, a| {
                    let vec = a[0].vector();
                    Ok(vec![(Arc::new(Labels::new()), if vec.len() == 1 { vec[0].v } else { f64::NAN })])
                })?;
                return Ok(Val::Scalar(match v {
                    Val::Vector(mut s) if !s.is_empty() => s.swap_remove(0).points.into_iter().map(|p| p.1).collect(),
                    _ => vec![f64::NAN; steps],
                }));
            }
            "timestamp" => {
                map_values(budget, ctx, base, &vals, |s, _| if raw_timestamps { s.v } else { s.t as f64 / 1000.0 })?
            }
            "absent" => {
                let labels = Arc::new(absent_labels(args[0]));
                range_eval(budget, ctx, base, &vals, |_, _, a| {
                    Ok(if a[0].vector().is_empty() { vec![(labels.clone(), 1.0)] } else { Vec::new() })
                })?
            }
            "round" => map_values(budget, ctx, base, &vals, |s, a| {
                let to_nearest = a.get(1).map(StepArg::scalar).unwrap_or(1.0);
                let inverse = 1.0 / to_nearest;
                (s.v * inverse + 0.5).floor() / inverse
            })?,
            "clamp" => {
                let mut names = NameCache::default();
                range_eval(budget, ctx, base, &vals, |_, _, a| {
                    let (lo, hi) = (a[1].scalar(), a[2].scalar());
                    if hi < lo {
                        return Ok(Vec::new());
                    }
                    Ok(a[0].vector().iter().map(|s| (names.dropped(s), go_max(lo, go_min(hi, s.v)))).collect())
                })?
            }
            "clamp_min" => map_values(budget, ctx, base, &vals, |s, a| go_max(a[1].scalar(), s.v))?,
            "clamp_max" => map_values(budget, ctx, base, &vals, |s, a| go_min(a[1].scalar(), s.v))?,
            "sort" | "sort_desc" => {
                let descending = name == "sort_desc";
                range_eval(budget, ctx, base, &vals, |_, _, a| {
                    let mut v: Vec<(Lbl, f64)> = a[0].vector().iter().map(|s| (s.labels.clone(), s.v)).collect();
                    sort_by_value(&mut v, descending);
                    Ok(v)
                })?
            }
            "label_replace" => label_replace(budget, ctx, base, &vals)?,
            "label_join" => label_join(budget, ctx, base, &vals)?,
            "histogram_quantile" => super::aggregate::histogram_quantile(budget, ctx, base, &vals)?,
            "days_in_month" | "day_of_month" | "day_of_week" | "day_of_year" | "hour" | "minute" | "month" | "year" => {
                let f = date_fn(name);
                if vals.is_empty() {
                    range_eval(budget, ctx, base, &vals, |ts, _, _| {
                        Ok(vec![(Arc::new(Labels::new()), f(ts.div_euclid(1000)))])
                    })?
                } else {
                    map_values(budget, ctx, base, &vals, |s, _| if s.v.is_finite() { f(s.v as i64) } else { f64::NAN })?
                }
            }
            _ => match math_fn(name) {
                Some(f) => map_values(budget, ctx, base, &vals, |s, _| f(s.v))?,
                None => return Err(EngineError::Execution(format!("unsupported function: {name}"))),
            },
        };
        Ok(out)
    }
}

/// Go's `math.Max`: NaN if either is NaN (Rust's `f64::max` ignores a NaN).
fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() { f64::NAN } else { a.max(b) }
}

/// Go's `math.Min`: NaN if either is NaN.
fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() { f64::NAN } else { a.min(b) }
}

/// Caches each input series' labels without `__name__`, so steps share one label set.
#[derive(Default)]
struct NameCache {
    by_src: HashMap<usize, Lbl>,
}

impl NameCache {
    fn dropped(&mut self, s: &Sample) -> Lbl {
        self.by_src
            .entry(s.src)
            .or_insert_with(|| {
                if s.labels.contains_key(super::labels::METRIC_NAME) {
                    Arc::new(drop_name(&s.labels))
                } else {
                    s.labels.clone()
                }
            })
            .clone()
    }
}

/// Applies `f` to every sample of the first argument, dropping `__name__`.
fn map_values(
    budget: &mut super::value::Budget,
    ctx: &Ctx,
    base: usize,
    vals: &[Val],
    f: impl Fn(&Sample, &[StepArg]) -> f64,
) -> Result<Val, EngineError> {
    let mut names = NameCache::default();
    range_eval(budget, ctx, base, vals, |_, _, a| {
        Ok(a[0].vector().iter().map(|s| (names.dropped(s), f(s, a))).collect())
    })
}

fn math_fn(name: &str) -> Option<fn(f64) -> f64> {
    Some(match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "exp" => f64::exp,
        "sqrt" => f64::sqrt,
        "ln" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "sin" => f64::sin,
        "cos" => f64::cos,
        "tan" => f64::tan,
        "asin" => f64::asin,
        "acos" => f64::acos,
        "atan" => f64::atan,
        "sinh" => f64::sinh,
        "cosh" => f64::cosh,
        "tanh" => f64::tanh,
        "asinh" => f64::asinh,
        "acosh" => f64::acosh,
        "atanh" => f64::atanh,
        "deg" => |v| v * 180.0 / std::f64::consts::PI,
        "rad" => |v| v * std::f64::consts::PI / 180.0,
        "sgn" => |v: f64| {
            if v < 0.0 {
                -1.0
            } else if v > 0.0 {
                1.0
            } else {
                v
            }
        },
        _ => return None,
    })
}

/// Date functions of a Unix time in seconds, in UTC.
fn date_fn(name: &str) -> fn(i64) -> f64 {
    fn at(secs: i64) -> Option<DateTime<chrono::Utc>> {
        DateTime::from_timestamp(secs, 0)
    }
    match name {
        "days_in_month" => |s| {
            at(s).map_or(f64::NAN, |t| {
                let (y, m) = (t.year(), t.month());
                let next = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                let first = chrono::NaiveDate::from_ymd_opt(y, m, 1);
                let next_first = chrono::NaiveDate::from_ymd_opt(next.0, next.1, 1);
                match (first, next_first) {
                    (Some(a), Some(b)) => (b - a).num_days() as f64,
                    _ => f64::NAN,
                }
            })
        },
        "day_of_month" => |s| at(s).map_or(f64::NAN, |t| t.day() as f64),
        "day_of_week" => |s| at(s).map_or(f64::NAN, |t| t.weekday().num_days_from_sunday() as f64),
        "day_of_year" => |s| at(s).map_or(f64::NAN, |t| t.ordinal() as f64),
        "hour" => |s| at(s).map_or(f64::NAN, |t| t.hour() as f64),
        "minute" => |s| at(s).map_or(f64::NAN, |t| t.minute() as f64),
        "month" => |s| at(s).map_or(f64::NAN, |t| t.month() as f64),
        _ => |s| at(s).map_or(f64::NAN, |t| t.year() as f64),
    }
}

/// `sort`/`sort_desc`: NaN last either way. Stable, as Go's insertion sort is for the
/// small vectors these usually see.
fn sort_by_value(v: &mut [(Lbl, f64)], descending: bool) {
    v.sort_by(|a, b| match (a.1.is_nan(), b.1.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        _ if descending => b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal),
        _ => a.1.partial_cmp(&b.1).unwrap_or(std::cmp::Ordering::Equal),
    });
}

fn string_arg(vals: &[Val], i: usize) -> &str {
    match vals.get(i) {
        Some(Val::Str(s)) => s,
        _ => "",
    }
}

/// The first argument's series at every step with their labels mapped by `relabel`, which
/// runs once per input series rather than once per step.
fn relabel_each(
    budget: &mut super::value::Budget,
    ctx: &Ctx,
    base: usize,
    vals: &[Val],
    relabel: impl Fn(&Lbl) -> Lbl,
) -> Result<Val, EngineError> {
    let mut cache: HashMap<usize, Lbl> = HashMap::new();
    range_eval(budget, ctx, base, vals, |_, _, a| {
        Ok(a[0]
            .vector()
            .iter()
            .map(|s| (cache.entry(s.src).or_insert_with(|| relabel(&s.labels)).clone(), s.v))
            .collect())
    })
}

fn label_replace(budget: &mut super::value::Budget, ctx: &Ctx, base: usize, vals: &[Val]) -> Result<Val, EngineError> {
    let (dst, replacement, src, pattern) =
        (string_arg(vals, 1), string_arg(vals, 2), string_arg(vals, 3), string_arg(vals, 4));
    let regex = Regex::new(&format!("^(?:{pattern})$"))
        .map_err(|_| EngineError::Execution(format!("invalid regular expression in label_replace(): {pattern}")))?;
    if !is_valid_label_name(dst) {
        return Err(EngineError::Execution(format!("invalid destination label name in label_replace(): {dst}")));
    }
    relabel_each(budget, ctx, base, vals, |labels| {
        let value = labels.get(src).map(String::as_str).unwrap_or("");
        match regex.captures(value) {
            None => labels.clone(),
            Some(caps) => {
                let mut expanded = String::new();
                caps.expand(replacement, &mut expanded);
                let mut out = (**labels).clone();
                set_or_remove(&mut out, dst, &expanded);
                Arc::new(out)
            }
        }
    })
}

fn label_join(budget: &mut super::value::Budget, ctx: &Ctx, base: usize, vals: &[Val]) -> Result<Val, EngineError> {
    let (dst, separator) = (string_arg(vals, 1), string_arg(vals, 2));
    let sources: Vec<&str> = (3..vals.len()).map(|i| string_arg(vals, i)).collect();
    if let Some(bad) = sources.iter().find(|s| !is_valid_label_name(s)) {
        return Err(EngineError::Execution(format!("invalid source label name in label_join(): {bad}")));
    }
    if !is_valid_label_name(dst) {
        return Err(EngineError::Execution(format!("invalid destination label name in label_join(): {dst}")));
    }
    relabel_each(budget, ctx, base, vals, |labels| {
        let joined: Vec<&str> =
            sources.iter().map(|name| labels.get(*name).map(String::as_str).unwrap_or("")).collect();
        let mut out = (**labels).clone();
        set_or_remove(&mut out, dst, &joined.join(separator));
        Arc::new(out)
    })
}
