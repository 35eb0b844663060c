//! Aggregation operators (`sum by (job) (...)`, `topk`, `count_values`, ...) and the
//! quantile helpers they share with `quantile_over_time` and `histogram_quantile`.

use std::collections::HashMap;
use std::sync::Arc;

use promql_parser::parser::{AggregateExpr, LabelModifier};

use super::eval::{Evaluator, StepArg, range_eval};
use super::labels::{METRIC_NAME, is_valid_label_name, key_on, key_without};
use super::value::{Budget, Ctx, Lbl, Sample, Val};
use super::{EngineError, Labels};

/// The grouping clause: sorted label names, and whether they are excluded (`without`).
struct Grouping {
    names: Vec<String>,
    without: bool,
}

impl Grouping {
    fn key(&self, labels: &Labels) -> String {
        if self.without { key_without(labels, &self.names) } else { key_on(labels, &self.names) }
    }

    /// The output labels of the group `labels` falls in.
    fn group_labels(&self, labels: &Labels) -> Labels {
        if self.without {
            labels
                .iter()
                .filter(|(k, _)| k.as_str() != METRIC_NAME && !self.names.contains(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        } else {
            labels.iter().filter(|(k, _)| self.names.contains(k)).map(|(k, v)| (k.clone(), v.clone())).collect()
        }
    }
}

/// One group's running state at one step.
#[derive(Default)]
struct Acc {
    value: f64,
    mean: f64,
    count: usize,
    /// `topk`/`bottomk` heap or `quantile` values, with the samples' labels.
    heap: Vec<(Lbl, f64)>,
}

impl Evaluator {
    pub(crate) fn eval_aggregate(&mut self, agg: &AggregateExpr, ctx: &Ctx) -> Result<Val, EngineError> {
        let op = agg.op.to_string().to_lowercase();
        let mut grouping = match &agg.modifier {
            None => Grouping { names: Vec::new(), without: false },
            Some(LabelModifier::Include(l)) => Grouping { names: l.labels.clone(), without: false },
            Some(LabelModifier::Exclude(l)) => Grouping { names: l.labels.clone(), without: true },
        };
        grouping.names.sort();
        grouping.names.dedup();
        let base = self.budget.current;
        let param = match &agg.param {
            Some(p) => self.eval(p, ctx)?,
            None => Val::Scalar(Vec::new()),
        };
        let input = self.eval(&agg.expr, ctx)?;
        if !matches!(input, Val::Vector(_)) {
            return Err(EngineError::Execution(format!("{op}: expected an instant vector")));
        }
        let args = [param, input];
        if op == "count_values" {
            let label = match &args[0] {
                Val::Str(s) => s.clone(),
                _ => String::new(),
            };
            if !is_valid_label_name(&label) {
                return Err(EngineError::Execution(format!("invalid label name {label:?}")));
            }
            if !grouping.without {
                grouping.names.push(label.clone());
                grouping.names.sort();
            }
            return count_values(&mut self.budget, ctx, base, &args, &grouping, &label);
        }
        // Group of each input series and each group's labels, computed once for all steps.
        let mut group_of_key: HashMap<String, usize> = HashMap::new();
        let mut group_labels: Vec<Lbl> = Vec::new();
        let series = match &args[1] {
            Val::Vector(series) => series.as_slice(),
            _ => &[],
        };
        let group_of: Vec<usize> = series
            .iter()
            .map(|s| {
                *group_of_key.entry(grouping.key(&s.labels)).or_insert_with(|| {
                    group_labels.push(Arc::new(grouping.group_labels(&s.labels)));
                    group_labels.len() - 1
                })
            })
            .collect();
        let mut accs: Vec<Option<Acc>> = (0..group_labels.len()).map(|_| None).collect();
        range_eval(&mut self.budget, ctx, base, &args, |_, _, a| {
            aggregate_step(&op, &a[0], a[1].vector(), &group_of, &group_labels, &mut accs)
        })
    }
}

fn aggregate_step(
    op: &str,
    param: &StepArg,
    samples: &[Sample],
    group_of: &[usize],
    group_labels: &[Lbl],
    accs: &mut [Option<Acc>],
) -> Result<Vec<(Lbl, f64)>, EngineError> {
    let mut k = 0usize;
    if op == "topk" || op == "bottomk" {
        let f = param.scalar();
        // Go's `convertibleToInt64`: 2^63 itself does not fit.
        if !(f >= i64::MIN as f64 && f < i64::MAX as f64) {
            return Err(EngineError::Execution(format!("Scalar value {} overflows int64", go_float(f))));
        }
        let k_int = f as i64;
        if k_int < 1 {
            return Ok(Vec::new());
        }
        k = usize::try_from(k_int).unwrap_or(usize::MAX);
    }
    let mut order = Vec::new();
    for s in samples {
        let g = group_of[s.src];
        if accs[g].is_none() {
            let mut acc = Acc { value: s.v, mean: s.v, count: 1, heap: Vec::new() };
            match op {
                "stddev" | "stdvar" => acc.value = 0.0,
                "topk" | "bottomk" | "quantile" => acc.heap.push((s.labels.clone(), s.v)),
                "group" => acc.value = 1.0,
                _ => {}
            }
            accs[g] = Some(acc);
            order.push(g);
            continue;
        }
        let Some(acc) = accs[g].as_mut() else { continue };
        let v = s.v;
        match op {
            "sum" => acc.value += v,
            "avg" => {
                acc.count += 1;
                if acc.mean.is_infinite() {
                    if v.is_infinite() && (acc.mean > 0.0) == (v > 0.0) {
                        continue;
                    }
                    if !v.is_infinite() && !v.is_nan() {
                        continue;
                    }
                }
                let n = acc.count as f64;
                acc.mean += v / n - acc.mean / n;
            }
            "max" => {
                if acc.value < v || acc.value.is_nan() {
                    acc.value = v;
                }
            }
            "min" => {
                if acc.value > v || acc.value.is_nan() {
                    acc.value = v;
                }
            }
            "count" => acc.count += 1,
            "group" => {}
            "stddev" | "stdvar" => {
                acc.count += 1;
                let delta = v - acc.mean;
                acc.mean += delta / acc.count as f64;
                acc.value += delta * (v - acc.mean);
            }
            "topk" | "bottomk" => {
                let less: fn(f64, f64) -> bool = if op == "topk" { top_less } else { bottom_less };
                let h = &mut acc.heap;
                let replaces = if op == "topk" { h[0].1 < v } else { h[0].1 > v };
                if h.len() < k || replaces || h[0].1.is_nan() {
                    if h.len() == k {
                        if k == 1 {
                            h[0] = (s.labels.clone(), v);
                            continue;
                        }
                        heap_pop(h, less);
                    }
                    heap_push(h, (s.labels.clone(), v), less);
                }
            }
            "quantile" => acc.heap.push((s.labels.clone(), v)),
            _ => return Err(EngineError::Execution(format!("unsupported aggregation: {op}"))),
        }
    }
    let mut out = Vec::with_capacity(order.len());
    for g in order {
        let Some(mut acc) = accs[g].take() else { continue };
        let value = match op {
            "avg" => acc.mean,
            "count" => acc.count as f64,
            "stdvar" => acc.value / acc.count as f64,
            "stddev" => (acc.value / acc.count as f64).sqrt(),
            "topk" | "bottomk" => {
                let less: fn(f64, f64) -> bool = if op == "topk" { top_less } else { bottom_less };
                // The heap keeps the weakest element on top; report strongest first.
                stable_sort(&mut acc.heap, |a, b| less(b.1, a.1));
                out.extend(acc.heap);
                continue;
            }
            "quantile" => {
                let mut values: Vec<f64> = acc.heap.iter().map(|p| p.1).collect();
                quantile(param.scalar(), &mut values)
            }
            _ => acc.value,
        };
        out.push((group_labels[g].clone(), value));
    }
    Ok(out)
}

/// `count_values`: groups by the value written into the label `label`.
fn count_values(
    budget: &mut Budget,
    ctx: &Ctx,
    base: usize,
    args: &[Val],
    grouping: &Grouping,
    label: &str,
) -> Result<Val, EngineError> {
    range_eval(budget, ctx, base, args, |_, _, a| {
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut out: Vec<(Lbl, f64)> = Vec::new();
        for s in a[1].vector() {
            let mut labels = (*s.labels).clone();
            labels.insert(label.to_string(), format_value(s.v));
            let key = grouping.key(&labels);
            match index.get(&key) {
                Some(&i) => out[i].1 += 1.0,
                None => {
                    index.insert(key, out.len());
                    out.push((Arc::new(grouping.group_labels(&labels)), 1.0));
                }
            }
        }
        Ok(out)
    })
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)`.
pub(crate) fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        format!("{v}")
    }
}

/// Go's `%v` of a float64 (shortest form, exponent for large and small magnitudes).
fn go_float(v: f64) -> String {
    if v.is_nan() || v.is_infinite() {
        return format_value(v);
    }
    let abs = v.abs();
    if abs != 0.0 && !(1e-4..1e21).contains(&abs) {
        let s = format!("{v:e}");
        match s.split_once('e') {
            Some((m, e)) => {
                let (sign, digits) = e.strip_prefix('-').map_or(("+", e), |d| ("-", d));
                format!("{m}e{sign}{digits:0>2}")
            }
            None => s,
        }
    } else {
        format!("{v}")
    }
}

/// Order of `topk`'s heap: NaN is the weakest, then smaller values.
fn top_less(a: f64, b: f64) -> bool {
    a.is_nan() || a < b
}

/// Order of `bottomk`'s heap: NaN is the weakest, then larger values.
fn bottom_less(a: f64, b: f64) -> bool {
    a.is_nan() || a > b
}

/// Go's `container/heap` push, so ties resolve as in Prometheus.
fn heap_push(h: &mut Vec<(Lbl, f64)>, item: (Lbl, f64), less: fn(f64, f64) -> bool) {
    h.push(item);
    let mut j = h.len() - 1;
    while j > 0 {
        let i = (j - 1) / 2;
        if !less(h[j].1, h[i].1) {
            break;
        }
        h.swap(i, j);
        j = i;
    }
}

/// Go's `container/heap` pop (the removed element is dropped).
fn heap_pop(h: &mut Vec<(Lbl, f64)>, less: fn(f64, f64) -> bool) {
    let n = h.len() - 1;
    h.swap(0, n);
    let mut i = 0;
    loop {
        let j1 = 2 * i + 1;
        if j1 >= n {
            break;
        }
        let mut j = j1;
        if j1 + 1 < n && less(h[j1 + 1].1, h[j1].1) {
            j = j1 + 1;
        }
        if !less(h[j].1, h[i].1) {
            break;
        }
        h.swap(i, j);
        i = j;
    }
    h.pop();
}

/// A stable sort by a strict "less" (Go's `sort.Sort` is an insertion sort, hence stable,
/// for the up to 12 elements `topk` usually keeps).
fn stable_sort<T>(v: &mut [T], less: impl Fn(&T, &T) -> bool) {
    v.sort_by(|a, b| {
        if less(a, b) {
            std::cmp::Ordering::Less
        } else if less(b, a) {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        }
    });
}

/// Prometheus' `quantile`: linear interpolation between the closest ranks, NaN sorted
/// first. `values` is sorted in place.
pub(crate) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// `histogram_quantile(φ, buckets)` over classic `le` buckets.
pub(crate) fn histogram_quantile(
    budget: &mut Budget,
    ctx: &Ctx,
    base: usize,
    vals: &[Val],
) -> Result<Val, EngineError> {
    // Per input series: its bucket group (labels but `le`, name included), its upper bound
    // and the output labels (without name and `le`).
    let mut per_series: HashMap<usize, Option<(String, f64, Lbl)>> = HashMap::new();
    range_eval(budget, ctx, base, vals, |_, _, a| {
        let q = a[0].scalar();
        let mut groups: HashMap<&str, usize> = HashMap::new();
        let mut buckets: Vec<(Lbl, Vec<(f64, f64)>)> = Vec::new();
        for s in a[1].vector() {
            per_series.entry(s.src).or_insert_with(|| {
                let upper = s.labels.get("le")?.trim().parse::<f64>().ok()?;
                let mut group: Labels = (*s.labels).clone();
                group.remove("le");
                let key = key_without_le(&group);
                group.remove(METRIC_NAME);
                Some((key, upper, Arc::new(group)))
            });
        }
        for s in a[1].vector() {
            let Some(Some((key, upper, labels))) = per_series.get(&s.src) else { continue };
            let i = *groups.entry(key.as_str()).or_insert_with(|| {
                buckets.push((labels.clone(), Vec::new()));
                buckets.len() - 1
            });
            buckets[i].1.push((*upper, s.v));
        }
        Ok(buckets.into_iter().map(|(labels, mut b)| (labels, bucket_quantile(q, &mut b))).collect())
    })
}

fn key_without_le(labels: &Labels) -> String {
    let mut key = String::new();
    for (k, v) in labels {
        key.push_str(k);
        key.push('\u{fffe}');
        key.push_str(v);
        key.push('\u{ffff}');
    }
    key
}

/// Prometheus' `bucketQuantile`: linear interpolation within the bucket holding the rank,
/// after merging equal bounds and forcing counts to be monotonic.
fn bucket_quantile(q: f64, buckets: &mut [(f64, f64)]) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    if !buckets.last().is_some_and(|b| b.0 == f64::INFINITY) {
        return f64::NAN;
    }
    // Merge buckets with the same upper bound.
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for &(upper, count) in buckets.iter() {
        match merged.last_mut() {
            Some(last) if last.0 == upper => last.1 += count,
            _ => merged.push((upper, count)),
        }
    }
    let mut max = merged[0].1;
    for b in merged.iter_mut().skip(1) {
        if b.1 > max {
            max = b.1;
        } else if b.1 < max {
            b.1 = max;
        }
    }
    if merged.len() < 2 {
        return f64::NAN;
    }
    let observations = merged[merged.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let b = merged[..merged.len() - 1].partition_point(|b| b.1 < rank);
    if b == merged.len() - 1 {
        return merged[merged.len() - 2].0;
    }
    if b == 0 && merged[0].0 <= 0.0 {
        return merged[0].0;
    }
    let (mut start, end, mut count) = (0.0, merged[b].0, merged[b].1);
    if b > 0 {
        start = merged[b - 1].0;
        count -= merged[b - 1].1;
        rank -= merged[b - 1].1;
    }
    start + (end - start) * (rank / count)
}
