//! Engine tests over hand-built series. Expected values are derived by hand from
//! Prometheus 2.42's code (`promql/engine.go`, `functions.go`, `quantile.go`).

use super::*;

const STALE: u64 = 0x7ff0_0000_0000_0002;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn series(pairs: &[(&str, &str)], points: &[(i64, f64)]) -> Series {
    Series { labels: labels(pairs), points: points.to_vec() }
}

/// Runs `query` the way the API does: plan the fetches, read them from `db` (only the
/// newest point of the window for a latest-only fetch), evaluate.
pub(super) fn run(query: &str, range: EvalRange, db: &[Series], limits: &Limits) -> Result<Value, EngineError> {
    let expr = parse(query)?;
    let data = fetches(&expr, &range, DEFAULT_LOOKBACK_MS)
        .iter()
        .map(|f| {
            db.iter()
                .filter(|s| f.matches(&s.labels))
                .map(|s| {
                    let mut points: Vec<(i64, f64)> =
                        s.points.iter().copied().filter(|p| p.0 >= f.start_ms && p.0 <= f.end_ms).collect();
                    if f.latest_only {
                        points.drain(..points.len().saturating_sub(1));
                    }
                    Series { labels: s.labels.clone(), points }
                })
                .filter(|s| !s.points.is_empty())
                .collect()
        })
        .collect();
    evaluate(&expr, &range, data, limits)
}

fn instant(query: &str, t_ms: i64, db: &[Series]) -> Result<Value, EngineError> {
    run(query, EvalRange::instant(t_ms), db, &Limits::default())
}

fn range(query: &str, start: i64, end: i64, step: i64, db: &[Series]) -> Result<Value, EngineError> {
    run(query, EvalRange { start_ms: start, end_ms: end, step_ms: step }, db, &Limits::default())
}

/// The instant vector answer as (labels, value), sorted by labels.
fn vector(value: Result<Value, EngineError>) -> Vec<(Labels, f64)> {
    match value {
        Ok(Value::Vector(v)) => {
            let mut out: Vec<(Labels, f64)> = v.into_iter().map(|(l, _, v)| (l, v)).collect();
            out.sort_by(|a, b| a.0.cmp(&b.0));
            out
        }
        other => panic!("expected a vector, got {other:?}"),
    }
}

fn single(value: Result<Value, EngineError>) -> f64 {
    let v = vector(value);
    assert_eq!(v.len(), 1, "expected one sample, got {v:?}");
    v[0].1
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

fn execution_error(value: Result<Value, EngineError>) -> String {
    match value {
        Err(EngineError::Execution(msg)) => msg,
        other => panic!("expected an execution error, got {other:?}"),
    }
}

/// `x` at every minute from 0 to 10 minutes, value = minutes.
fn minutes() -> Vec<Series> {
    vec![series(&[("__name__", "x"), ("job", "a")], &(0..=10).map(|m| (m * 60_000, m as f64)).collect::<Vec<_>>())]
}

#[test]
fn only_a_vector_selector_at_one_instant_reads_its_newest_sample_alone() {
    let latest = |query: &str, range: EvalRange| -> Vec<bool> {
        let expr = parse(query).expect("parses");
        fetches(&expr, &range, DEFAULT_LOOKBACK_MS).iter().map(|f| f.latest_only).collect()
    };
    let at = EvalRange::instant(600_000);
    let over = EvalRange { start_ms: 0, end_ms: 600_000, step_ms: 60_000 };
    assert_eq!(latest("x", at), [true]);
    assert_eq!(latest("x + rate(y[5m])", at), [true, false]);
    assert_eq!(latest("x offset 1m", at), [true]);
    assert_eq!(latest("max_over_time(x[10m:1m])", at), [false]);
    assert_eq!(latest("x", over), [false]);
    assert_eq!(latest("x @ 300", over), [true]);
    assert_eq!(latest("max_over_time((x @ 300)[10m:1m])", over), [true]);
    assert_eq!(latest("(x)[10m:1m] @ 300", over), [false]);
}

#[test]
fn one_plus_one_is_a_scalar_at_the_query_time() {
    assert_eq!(instant("1+1", 4000, &[]), Ok(Value::Scalar { t_ms: 4000, v: 2.0 }));
}

#[test]
fn a_scalar_range_query_is_one_unlabelled_series() {
    let got = range("2 * time()", 0, 30_000, 15_000, &[]).unwrap();
    let want =
        Value::Matrix(vec![Series { labels: Labels::new(), points: vec![(0, 0.0), (15_000, 30.0), (30_000, 60.0)] }]);
    assert_eq!(got, want);
}

#[test]
fn strings_and_matrices_are_refused_in_range_queries() {
    assert!(matches!(range("x[5m]", 0, 60_000, 15_000, &[]), Err(EngineError::BadData(_))));
    assert!(matches!(range("\"a\"", 0, 60_000, 15_000, &[]), Err(EngineError::BadData(_))));
    assert_eq!(instant("\"a\"", 1000, &[]), Ok(Value::String { t_ms: 1000, v: "a".into() }));
}

#[test]
fn rate_and_increase_extrapolate_across_a_counter_reset() {
    // Window [0s, 60s]: samples 10@5s, 20@20s, 5@35s (reset), 15@50s. Increase 5 + 20 = 25
    // over 45 s sampled; both gaps (5 s, 10 s) are under 1.1 x 15 s, so it extends to 60 s.
    let db = vec![series(&[("__name__", "c")], &[(5_000, 10.0), (20_000, 20.0), (35_000, 5.0), (50_000, 15.0)])];
    assert!(close(single(instant("increase(c[1m])", 60_000, &db)), 25.0 * 60.0 / 45.0));
    assert!(close(single(instant("rate(c[1m])", 60_000, &db)), 25.0 / 45.0));
    assert_eq!(single(instant("resets(c[1m])", 60_000, &db)), 1.0);
    assert_eq!(single(instant("changes(c[1m])", 60_000, &db)), 3.0);
}

#[test]
fn increase_stops_extrapolating_at_the_counter_zero_point() {
    // 2@30s, 5@45s, 8@60s in [0s, 60s]: zero would be reached 10 s before the first sample
    // (30 x 2/6), sooner than the 30 s to the window start, so the interval is 40 s.
    let db = vec![series(&[("__name__", "c")], &[(30_000, 2.0), (45_000, 5.0), (60_000, 8.0)])];
    assert!(close(single(instant("increase(c[1m])", 60_000, &db)), 8.0));
}

#[test]
fn delta_extrapolates_half_an_interval_when_far_from_the_boundary() {
    // 1@40s, 2@50s, 3@60s: 40 s to the start is past 1.1 x 10 s, so only 5 s is added.
    let db = vec![series(&[("__name__", "g")], &[(40_000, 1.0), (50_000, 2.0), (60_000, 3.0)])];
    assert!(close(single(instant("delta(g[1m])", 60_000, &db)), 2.0 * 25.0 / 20.0));
    assert!(close(single(instant("irate(g[1m])", 60_000, &db)), 0.1));
    assert!(close(single(instant("idelta(g[1m])", 60_000, &db)), 1.0));
    assert!(close(single(instant("deriv(g[1m])", 60_000, &db)), 0.1));
}

#[test]
fn rate_needs_two_samples() {
    let db = vec![series(&[("__name__", "c")], &[(30_000, 2.0)])];
    assert!(vector(instant("rate(c[1m])", 60_000, &db)).is_empty());
}

#[test]
fn irate_treats_a_drop_as_a_reset() {
    let db = vec![series(&[("__name__", "c")], &[(0, 10.0), (10_000, 4.0)])];
    assert!(close(single(instant("irate(c[1m])", 10_000, &db)), 0.4));
}

#[test]
fn the_lookback_window_is_five_minutes_inclusive() {
    let db = vec![series(&[("__name__", "x")], &[(0, 1.0)])];
    assert_eq!(single(instant("x", 300_000, &db)), 1.0);
    assert!(vector(instant("x", 300_001, &db)).is_empty());
}

#[test]
fn a_stale_marker_ends_the_series() {
    let db = vec![series(&[("__name__", "x")], &[(0, 1.0), (10_000, f64::from_bits(STALE)), (20_000, 2.0)])];
    assert_eq!(single(instant("x", 5_000, &db)), 1.0);
    assert!(vector(instant("x", 15_000, &db)).is_empty());
    assert_eq!(single(instant("x", 25_000, &db)), 2.0);
    // Stale points never enter range windows.
    assert_eq!(single(instant("count_over_time(x[1m])", 30_000, &db)), 2.0);
}

#[test]
fn a_plain_nan_is_a_value_not_a_stale_marker() {
    let db = vec![series(&[("__name__", "x")], &[(0, f64::NAN)])];
    assert!(single(instant("x", 1_000, &db)).is_nan());
}

#[test]
fn range_windows_are_closed_at_both_ends_as_in_2_42() {
    // Points at 8, 9 and 10 minutes are all within [8m, 10m].
    assert_eq!(single(instant("count_over_time(x[2m])", 600_000, &minutes())), 3.0);
    assert_eq!(single(instant("sum_over_time(x[2m])", 600_000, &minutes())), 27.0);
}

#[test]
fn offset_and_at_move_the_evaluation_time() {
    let db = minutes();
    assert_eq!(single(instant("x offset 2m", 600_000, &db)), 8.0);
    assert_eq!(single(instant("x @ 120", 600_000, &db)), 2.0);
    assert_eq!(single(instant("x @ 300 offset 1m", 600_000, &db)), 4.0);
    assert_eq!(single(instant("x offset -1m", 300_000, &db)), 6.0);
    assert_eq!(single(instant("last_over_time(x[1m] @ 180)", 600_000, &db)), 3.0);
    let Ok(Value::Matrix(m)) = range("x @ start()", 60_000, 180_000, 60_000, &db) else { panic!() };
    assert_eq!(m[0].points, vec![(60_000, 1.0), (120_000, 1.0), (180_000, 1.0)]);
    let Ok(Value::Matrix(m)) = range("x @ end()", 60_000, 180_000, 60_000, &db) else { panic!() };
    assert_eq!(m[0].points, vec![(60_000, 3.0), (120_000, 3.0), (180_000, 3.0)]);
}

#[test]
fn subqueries_evaluate_at_aligned_steps() {
    let db = minutes();
    // Inner steps 7, 8, 9, 10 minutes.
    assert_eq!(single(instant("max_over_time(x[3m:1m])", 600_000, &db)), 10.0);
    assert_eq!(single(instant("count_over_time(x[3m:1m])", 600_000, &db)), 4.0);
    assert_eq!(single(instant("sum_over_time(x[2m:1m] offset 1m)", 600_000, &db)), 7.0 + 8.0 + 9.0);
    // At 10.5 minutes the aligned steps are 8, 9 and 10 minutes.
    assert_eq!(single(instant("min_over_time(x[2m30s:1m])", 630_000, &db)), 8.0);
    assert!(close(single(instant("rate(x[5m:1m])", 600_000, &db)), 1.0 / 60.0));
    // Millisecond steps: 599,998, 599,999 and 600,000 ms.
    assert_eq!(single(instant("count_over_time(x[2ms:1ms])", 600_000, &db)), 3.0);
    let Ok(Value::Matrix(m)) = instant("x[2m:1m]", 600_000, &db) else { panic!() };
    assert_eq!(m[0].points, vec![(480_000, 8.0), (540_000, 9.0), (600_000, 10.0)]);
}

#[test]
fn a_range_selector_at_an_instant_keeps_raw_points_and_the_name() {
    let Ok(Value::Matrix(m)) = instant("x[1m]", 600_000, &minutes()) else { panic!() };
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].labels.get("__name__").map(String::as_str), Some("x"));
    assert_eq!(m[0].points, vec![(540_000, 9.0), (600_000, 10.0)]);
}

#[test]
fn fetch_windows_cover_ranges_offsets_lookback_and_subqueries() {
    let r = EvalRange { start_ms: 1_000_000, end_ms: 2_000_000, step_ms: 15_000 };
    let f = fetches(&parse("rate(x[5m] offset 1m) + y").unwrap(), &r, DEFAULT_LOOKBACK_MS);
    assert_eq!((f[0].start_ms, f[0].end_ms), (1_000_000 - 300_000 - 60_000, 2_000_000 - 60_000));
    assert_eq!((f[1].start_ms, f[1].end_ms), (1_000_000 - 300_000, 2_000_000));
    assert_eq!(f[0].metric_name(), Some("x"));
    let f = fetches(&parse("max_over_time(z[10m:1m] offset 5m)").unwrap(), &r, DEFAULT_LOOKBACK_MS);
    assert_eq!((f[0].start_ms, f[0].end_ms), (1_000_000 - 300_000 - 600_000 - 300_000, 2_000_000 - 300_000));
    let f = fetches(&parse("z @ 100 offset 10s").unwrap(), &r, DEFAULT_LOOKBACK_MS);
    assert_eq!((f[0].start_ms, f[0].end_ms), (100_000 - 300_000 - 10_000, 100_000 - 10_000));
    let f = fetches(&parse("z[1m] @ end()").unwrap(), &EvalRange::instant(5_000_000), DEFAULT_LOOKBACK_MS);
    assert_eq!((f[0].start_ms, f[0].end_ms), (5_000_000 - 60_000, 5_000_000));
}

#[test]
fn fetch_matchers_are_anchored_regexes_and_include_the_name() {
    let expr = parse(r#"up{job=~"a|b", env!~"dev.*", zone!="x"}"#).unwrap();
    let f = &fetches(&expr, &EvalRange::instant(0), DEFAULT_LOOKBACK_MS)[0];
    assert!(f.matches(&labels(&[("__name__", "up"), ("job", "a"), ("env", "prod")])));
    assert!(!f.matches(&labels(&[("__name__", "up"), ("job", "ab")])));
    assert!(!f.matches(&labels(&[("__name__", "up"), ("job", "a"), ("env", "devel")])));
    assert!(!f.matches(&labels(&[("__name__", "down"), ("job", "a")])));
    assert!(!f.matches(&labels(&[("__name__", "up"), ("job", "b"), ("zone", "x")])));
}

#[test]
fn one_to_one_matching_refuses_duplicates_with_prometheus_texts() {
    let db = vec![
        series(&[("__name__", "a"), ("job", "j"), ("i", "1")], &[(0, 1.0)]),
        series(&[("__name__", "a"), ("job", "j"), ("i", "2")], &[(0, 2.0)]),
        series(&[("__name__", "b"), ("job", "j")], &[(0, 10.0)]),
    ];
    let msg = execution_error(instant("b + on(job) a", 0, &db));
    assert_eq!(
        msg,
        r#"found duplicate series for the match group {job="j"} on the right hand-side of the operation: [{__name__="a", i="2", job="j"}, {__name__="a", i="1", job="j"}];many-to-many matching not allowed: matching labels must be unique on one side"#
    );
    let msg = execution_error(instant("a + on(job) b", 0, &db));
    assert_eq!(msg, "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)");
    let got = vector(instant("a + on(job) group_left b", 0, &db));
    assert_eq!(got.len(), 2);
    assert_eq!(got[0], (labels(&[("job", "j"), ("i", "1")]), 11.0));
    let got = vector(instant("b - on(job) group_right a", 0, &db));
    assert_eq!(got[1], (labels(&[("job", "j"), ("i", "2")]), 8.0));
}

#[test]
fn group_left_copies_labels_from_the_one_side() {
    let db = vec![
        series(&[("__name__", "req"), ("job", "j"), ("i", "1")], &[(0, 4.0)]),
        series(&[("__name__", "info"), ("job", "j"), ("team", "t")], &[(0, 1.0)]),
    ];
    let got = vector(instant("req * on(job) group_left(team) info", 0, &db));
    assert_eq!(got, vec![(labels(&[("job", "j"), ("i", "1"), ("team", "t")]), 4.0)]);
}

#[test]
fn set_operators_match_on_label_sets() {
    let db = vec![
        series(&[("__name__", "a"), ("job", "1")], &[(0, 1.0)]),
        series(&[("__name__", "a"), ("job", "2")], &[(0, 2.0)]),
        series(&[("__name__", "b"), ("job", "2")], &[(0, 20.0)]),
        series(&[("__name__", "b"), ("job", "3")], &[(0, 30.0)]),
    ];
    let jobs = |v: Vec<(Labels, f64)>| v.into_iter().map(|(l, v)| (l["job"].clone(), v)).collect::<Vec<_>>();
    assert_eq!(jobs(vector(instant("a and b", 0, &db))), vec![("2".into(), 2.0)]);
    assert_eq!(jobs(vector(instant("a unless b", 0, &db))), vec![("1".into(), 1.0)]);
    assert_eq!(jobs(vector(instant("a or b", 0, &db))), vec![("1".into(), 1.0), ("2".into(), 2.0), ("3".into(), 30.0)]);
    assert_eq!(jobs(vector(instant("a and on() b", 0, &db))).len(), 2);
}

#[test]
fn comparisons_filter_and_keep_the_name_unless_bool() {
    let db = vec![
        series(&[("__name__", "x"), ("job", "1")], &[(0, 1.0)]),
        series(&[("__name__", "x"), ("job", "2")], &[(0, 5.0)]),
    ];
    assert_eq!(vector(instant("x > 2", 0, &db)), vec![(labels(&[("__name__", "x"), ("job", "2")]), 5.0)]);
    assert_eq!(vector(instant("2 < x", 0, &db)), vec![(labels(&[("__name__", "x"), ("job", "2")]), 5.0)]);
    assert_eq!(
        vector(instant("x > bool 2", 0, &db)),
        vec![(labels(&[("job", "1")]), 0.0), (labels(&[("job", "2")]), 1.0)]
    );
    assert_eq!(vector(instant("x + 1", 0, &db))[0].0, labels(&[("job", "1")]));
    assert_eq!(instant("1 > bool 2", 0, &db), Ok(Value::Scalar { t_ms: 0, v: 0.0 }));
    assert_eq!(single(instant("x % 3 == 2", 0, &db)), 2.0);
    assert_eq!(single(instant("-x < -2", 0, &db)), -5.0);
}

#[test]
fn functions_drop_the_name_except_last_over_time() {
    let db = minutes();
    assert_eq!(vector(instant("abs(x)", 600_000, &db))[0].0, labels(&[("job", "a")]));
    assert_eq!(vector(instant("rate(x[5m])", 600_000, &db))[0].0, labels(&[("job", "a")]));
    assert_eq!(vector(instant("last_over_time(x[5m])", 600_000, &db))[0].0, labels(&[("__name__", "x"), ("job", "a")]));
    assert_eq!(vector(instant("sort(x)", 600_000, &db))[0].0, labels(&[("__name__", "x"), ("job", "a")]));
}

#[test]
fn the_same_labelset_twice_is_an_error() {
    let db = vec![
        series(&[("__name__", "a"), ("job", "1")], &[(0, 1.0), (30_000, 2.0)]),
        series(&[("__name__", "b"), ("job", "1")], &[(0, 1.0), (30_000, 2.0)]),
    ];
    let msg = execution_error(instant(r#"rate({__name__=~"a|b"}[1m])"#, 30_000, &db));
    assert_eq!(msg, "vector cannot contain metrics with the same labelset");
    let msg = execution_error(instant(r#"{__name__=~"a|b"} * 2"#, 30_000, &db));
    assert_eq!(msg, "vector cannot contain metrics with the same labelset");
}

#[test]
fn aggregations_group_by_and_without() {
    let db = vec![
        series(&[("__name__", "x"), ("job", "a"), ("i", "1")], &[(0, 1.0)]),
        series(&[("__name__", "x"), ("job", "a"), ("i", "2")], &[(0, 3.0)]),
        series(&[("__name__", "x"), ("job", "b"), ("i", "1")], &[(0, 10.0)]),
    ];
    let a = labels(&[("job", "a")]);
    let b = labels(&[("job", "b")]);
    assert_eq!(vector(instant("sum by (job) (x)", 0, &db)), vec![(a.clone(), 4.0), (b.clone(), 10.0)]);
    assert_eq!(vector(instant("avg without (i) (x)", 0, &db)), vec![(a.clone(), 2.0), (b.clone(), 10.0)]);
    assert_eq!(vector(instant("count(x)", 0, &db)), vec![(Labels::new(), 3.0)]);
    assert_eq!(vector(instant("max by (job) (x)", 0, &db))[0].1, 3.0);
    assert_eq!(vector(instant("min(x)", 0, &db))[0].1, 1.0);
    assert_eq!(vector(instant("group by (job) (x)", 0, &db)), vec![(a.clone(), 1.0), (b, 1.0)]);
    assert_eq!(vector(instant("stdvar by (job) (x)", 0, &db))[0], (a.clone(), 1.0));
    assert_eq!(vector(instant("stddev by (job) (x)", 0, &db))[0], (a, 1.0));
    assert_eq!(vector(instant("quantile(0.5, x)", 0, &db))[0].1, 3.0);
    assert_eq!(vector(instant("quantile(0.25, x)", 0, &db))[0].1, 2.0);
}

#[test]
fn topk_breaks_ties_as_go_heap_does() {
    // Go's heap keeps the later of two equal values here (derived step by step from
    // container/heap with k = 2 over a=1, b=2, c=2, d=3).
    let db = vec![
        series(&[("__name__", "x"), ("s", "a")], &[(0, 1.0)]),
        series(&[("__name__", "x"), ("s", "b")], &[(0, 2.0)]),
        series(&[("__name__", "x"), ("s", "c")], &[(0, 2.0)]),
        series(&[("__name__", "x"), ("s", "d")], &[(0, 3.0)]),
    ];
    let Ok(Value::Vector(v)) = instant("topk(2, x)", 0, &db) else { panic!() };
    let got: Vec<(&str, f64)> = v.iter().map(|(l, _, v)| (l["s"].as_str(), *v)).collect();
    assert_eq!(got, vec![("d", 3.0), ("c", 2.0)]);
    let Ok(Value::Vector(v)) = instant("bottomk(1, x)", 0, &db) else { panic!() };
    assert_eq!(v[0].0["__name__"], "x");
    assert_eq!(v[0].2, 1.0);
    assert!(vector(instant("topk(0, x)", 0, &db)).is_empty());
}

#[test]
fn count_values_writes_values_into_a_label() {
    let db = vec![
        series(&[("__name__", "x"), ("i", "1")], &[(0, 1.0)]),
        series(&[("__name__", "x"), ("i", "2")], &[(0, 1.0)]),
        series(&[("__name__", "x"), ("i", "3")], &[(0, 2.5)]),
    ];
    assert_eq!(
        vector(instant(r#"count_values("v", x)"#, 0, &db)),
        vec![(labels(&[("v", "1")]), 2.0), (labels(&[("v", "2.5")]), 1.0)]
    );
    assert!(matches!(instant(r#"count_values("1a", x)"#, 0, &db), Err(EngineError::Execution(_))));
}

#[test]
fn histogram_quantile_interpolates_classic_buckets() {
    let bucket = |le: &str, v: f64| series(&[("__name__", "h_bucket"), ("job", "j"), ("le", le)], &[(0, v)]);
    let db = vec![bucket("0.1", 10.0), bucket("0.5", 20.0), bucket("1", 30.0), bucket("+Inf", 40.0)];
    let got = vector(instant("histogram_quantile(0.6, h_bucket)", 0, &db));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, labels(&[("job", "j")]));
    assert!(close(got[0].1, 0.7));
    assert!(close(single(instant("histogram_quantile(0.5, h_bucket)", 0, &db)), 0.5));
    // In the +Inf bucket: the highest finite bound.
    assert_eq!(single(instant("histogram_quantile(0.9, h_bucket)", 0, &db)), 1.0);
    assert_eq!(single(instant("histogram_quantile(2, h_bucket)", 0, &db)), f64::INFINITY);
    let without_inf = &db[..3];
    assert!(single(instant("histogram_quantile(0.5, h_bucket)", 0, without_inf)).is_nan());
}

#[test]
fn label_replace_and_label_join_rewrite_labels() {
    let db = vec![series(&[("__name__", "x"), ("src", "ab-cd"), ("o", "1")], &[(0, 1.0)])];
    assert_eq!(
        vector(instant(r#"label_replace(x, "dst", "${2}_$1", "src", "(.*)-(.*)")"#, 0, &db))[0].0,
        labels(&[("__name__", "x"), ("src", "ab-cd"), ("o", "1"), ("dst", "cd_ab")])
    );
    // No match: unchanged; a regex matches the whole value only.
    assert_eq!(vector(instant(r#"label_replace(x, "dst", "y", "src", "b")"#, 0, &db))[0].0, db[0].labels);
    // An empty replacement removes the label.
    assert_eq!(
        vector(instant(r#"label_replace(x, "o", "", "src", ".*")"#, 0, &db))[0].0,
        labels(&[("__name__", "x"), ("src", "ab-cd")])
    );
    assert_eq!(vector(instant(r#"label_join(x, "j", "/", "src", "o")"#, 0, &db))[0].0["j"], "ab-cd/1");
    assert!(matches!(instant(r#"label_replace(x, "a-b", "", "src", ".*")"#, 0, &db), Err(EngineError::Execution(_))));
}

#[test]
fn scalar_and_vector_convert_between_types() {
    let db = vec![
        series(&[("__name__", "x"), ("i", "1")], &[(0, 1.0)]),
        series(&[("__name__", "x"), ("i", "2")], &[(0, 2.0)]),
        series(&[("__name__", "y")], &[(0, 7.0)]),
    ];
    let Ok(Value::Scalar { v, .. }) = instant("scalar(x)", 0, &db) else { panic!() };
    assert!(v.is_nan());
    assert_eq!(instant("scalar(y)", 0, &db), Ok(Value::Scalar { t_ms: 0, v: 7.0 }));
    assert_eq!(vector(instant("vector(3)", 0, &db)), vec![(Labels::new(), 3.0)]);
    assert_eq!(single(instant("timestamp(y)", 10_000, &db)), 0.0);
    assert_eq!(instant("time()", 10_000, &db), Ok(Value::Scalar { t_ms: 10_000, v: 10.0 }));
}

#[test]
fn absent_reports_the_equality_matchers() {
    let db = minutes();
    assert_eq!(vector(instant(r#"absent(nope{job="j", env=~"p"})"#, 0, &db)), vec![(labels(&[("job", "j")]), 1.0)]);
    assert!(vector(instant("absent(x)", 0, &db)).is_empty());
    assert_eq!(vector(instant(r#"absent_over_time(nope{job="j"}[1m])"#, 0, &db)), vec![(labels(&[("job", "j")]), 1.0)]);
    assert!(vector(instant("absent_over_time(x[1m])", 60_000, &db)).is_empty());
}

#[test]
fn simple_math_functions() {
    let db = vec![series(&[("__name__", "x")], &[(0, 2.5)])];
    assert_eq!(single(instant("ceil(x)", 0, &db)), 3.0);
    assert_eq!(single(instant("floor(x)", 0, &db)), 2.0);
    assert_eq!(single(instant("round(x)", 0, &db)), 3.0);
    assert_eq!(single(instant("round(x, 2)", 0, &db)), 2.0);
    assert_eq!(single(instant("clamp(x, 0, 1)", 0, &db)), 1.0);
    assert!(vector(instant("clamp(x, 2, 1)", 0, &db)).is_empty());
    assert_eq!(single(instant("clamp_min(x, 3)", 0, &db)), 3.0);
    assert_eq!(single(instant("clamp_max(x, 1)", 0, &db)), 1.0);
    assert_eq!(single(instant("sqrt(x * 10)", 0, &db)), 5.0);
    assert!(close(single(instant("log2(x * 4 / 2.5)", 0, &db)), 2.0));
    assert!(close(single(instant("exp(ln(x))", 0, &db)), 2.5));
    assert_eq!(single(instant("x ^ 2", 0, &db)), 6.25);
}

#[test]
fn range_queries_step_through_time_and_sort_by_labels() {
    let db = vec![
        series(&[("__name__", "c"), ("job", "b")], &(0..=40).map(|i| (i * 15_000, (i * 2) as f64)).collect::<Vec<_>>()),
        series(&[("__name__", "c"), ("job", "a")], &(0..=40).map(|i| (i * 15_000, i as f64)).collect::<Vec<_>>()),
    ];
    let Ok(Value::Matrix(m)) = range("sum by (job) (rate(c[1m]))", 300_000, 600_000, 60_000, &db) else { panic!() };
    assert_eq!(m.len(), 2);
    assert_eq!(m[0].labels, labels(&[("job", "a")]));
    assert_eq!(m[0].points.len(), 6);
    for &(_, v) in &m[0].points {
        assert!(close(v, 1.0 / 15.0));
    }
    for &(_, v) in &m[1].points {
        assert!(close(v, 2.0 / 15.0));
    }
}

#[test]
fn over_time_functions() {
    let db = vec![series(&[("__name__", "g")], &[(0, 1.0), (10_000, 4.0), (20_000, 2.0), (30_000, 5.0)])];
    let at = |q: &str| single(instant(q, 30_000, &db));
    assert_eq!(at("avg_over_time(g[1m])"), 3.0);
    assert_eq!(at("min_over_time(g[1m])"), 1.0);
    assert_eq!(at("max_over_time(g[1m])"), 5.0);
    assert_eq!(at("sum_over_time(g[1m])"), 12.0);
    assert_eq!(at("count_over_time(g[1m])"), 4.0);
    assert_eq!(at("last_over_time(g[1m])"), 5.0);
    assert_eq!(at("present_over_time(g[1m])"), 1.0);
    assert_eq!(at("stdvar_over_time(g[1m])"), 2.5);
    assert!(close(at("stddev_over_time(g[1m])"), 2.5f64.sqrt()));
    assert_eq!(at("quantile_over_time(0.5, g[1m])"), 3.0);
    assert_eq!(at("resets(g[1m])"), 1.0);
    // Slope 0.1/s through the points at 0 s and 30 s of a line.
    let line = vec![series(&[("__name__", "l")], &[(0, 0.0), (10_000, 1.0), (20_000, 2.0)])];
    assert!(close(single(instant("predict_linear(l[1m], 10)", 20_000, &line)), 3.0));
}

#[test]
fn the_samples_limit_and_the_deadline_stop_evaluation() {
    let db = minutes();
    let tight = Limits { max_samples: 3, deadline: None };
    let got = run("x[5m]", EvalRange::instant(600_000), &db, &tight);
    assert_eq!(execution_error(got), "query processing would load too many samples into memory in query execution");
    let past = Limits { max_samples: 1000, deadline: Some(std::time::Instant::now()) };
    assert!(matches!(run("x", EvalRange::instant(0), &db, &past), Err(EngineError::Timeout(_))));
}

#[test]
fn constructs_outside_2_42_or_native_histograms_are_refused() {
    assert!(matches!(parse("sort_by_label(x)"), Err(EngineError::BadData(_))));
    assert!(matches!(parse("limitk(1, x)"), Err(EngineError::BadData(_))));
    assert!(matches!(parse("foo("), Err(EngineError::BadData(_))));
    assert!(matches!(parse(r#"x{a=~"("}"#), Err(EngineError::BadData(_))));
    let msg = execution_error(instant("histogram_count(x)", 0, &minutes()));
    assert!(msg.contains("histogram_count"), "{msg}");
}

/// The benchmark shapes of issue 21, timed in whatever profile the tests are built with:
/// `cargo test --lib promql::tests::benchmark_shapes -- --ignored --nocapture`.
#[test]
#[ignore = "timing only"]
fn benchmark_shapes() {
    let step = 15_000;
    let hour = 3_600_000;
    let counters: Vec<Series> = (0..1000)
        .map(|i| {
            let job = format!("job{}", i % 10);
            let instance = format!("i{i}");
            let points = (0..=(hour + 300_000) / step).map(|k| (k * step, (k * (i + 1)) as f64)).collect();
            Series { labels: labels(&[("__name__", "x"), ("job", &job), ("instance", &instance)]), points }
        })
        .collect();
    let t = std::time::Instant::now();
    let got = range("sum by (job) (rate(x[5m]))", 300_000, 300_000 + hour, step, &counters).unwrap();
    println!("(a) sum by (job) (rate(x[5m])), 1,000 series, 1 h at 15 s: {:?}", t.elapsed());
    assert!(matches!(got, Value::Matrix(m) if m.len() == 10));

    let day = 24 * hour;
    let les = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"];
    let buckets: Vec<Series> = (0..10)
        .flat_map(|i| {
            les.iter().enumerate().map(move |(b, le)| {
                let instance = format!("i{i}");
                let points = (0..=(day + 300_000) / step).map(|k| (k * step, (k * (b as i64 + 1)) as f64)).collect();
                Series { labels: labels(&[("__name__", "h_bucket"), ("instance", &instance), ("le", le)]), points }
            })
        })
        .collect();
    let t = std::time::Instant::now();
    let got =
        range("histogram_quantile(0.99, sum by (le) (rate(h_bucket[5m])))", 300_000, 300_000 + day, 60_000, &buckets)
            .unwrap();
    println!("(b) histogram_quantile over 120 bucket series, 24 h at 60 s: {:?}", t.elapsed());
    assert!(matches!(got, Value::Matrix(m) if m.len() == 1));

    // (c) A step-invariant `@` call over a long window: computed once per series.
    let t = std::time::Instant::now();
    let got = range("max_over_time(x[1h] @ 3900)", 300_000, 300_000 + hour, step, &counters).unwrap();
    println!("(c) max_over_time(x[1h] @ 3900), 1,000 series, 1 h at 15 s: {:?}", t.elapsed());
    assert!(matches!(got, Value::Matrix(m) if m.len() == 1000));
}

#[test]
fn holt_winters_smooths_as_2_42_does() {
    // 1, 2, 4 with sf = tf = 0.5: s = 1, b = 1; then s = 1 + 1 = 2; then b = 0.5 x (2 - 1)
    // + 0.5 x 1 = 1 and s = 0.5 x 4 + 0.5 x (2 + 1) = 3.5.
    let db = vec![series(&[("__name__", "g"), ("job", "a")], &[(0, 1.0), (60_000, 2.0), (120_000, 4.0)])];
    let got = vector(instant("holt_winters(g[5m], 0.5, 0.5)", 120_000, &db));
    assert_eq!(got, vec![(labels(&[("job", "a")]), 3.5)]);
    assert_eq!(
        execution_error(instant("holt_winters(g[5m], 1, 0.5)", 120_000, &db)),
        "invalid smoothing factor. Expected: 0 < sf < 1, got: 1.000000"
    );
    assert_eq!(
        execution_error(instant("holt_winters(g[5m], 0.5, 0)", 120_000, &db)),
        "invalid trend factor. Expected: 0 < tf < 1, got: 0.000000"
    );
    // Without samples the factors are never checked.
    assert!(vector(instant("holt_winters(nothing[5m], 2, 2)", 120_000, &db)).is_empty());
    // 3.x's name is not 2.42's.
    assert!(matches!(parse("double_exponential_smoothing(g[5m], 0.5, 0.5)"), Err(EngineError::BadData(_))));
}

#[test]
fn at_pinned_range_functions_give_one_value_at_every_step() {
    let db = minutes();
    let pinned = single(instant("sum_over_time(x[5m] @ 300)", 300_000, &db)); // 0 + 1 + ... + 5
    assert_eq!(pinned, 1.0 + 2.0 + 3.0 + 4.0 + 5.0);
    let Ok(Value::Matrix(m)) = range("sum_over_time(x[5m] @ 300)", 0, 600_000, 30_000, &db) else {
        panic!("expected a matrix")
    };
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].points.len(), 21);
    assert!(m[0].points.iter().all(|p| p.1 == pinned));
    // A parameter that changes with the step is used at each step.
    let Ok(Value::Matrix(m)) = range("quantile_over_time(time() / 600, x[5m] @ 300)", 0, 600_000, 300_000, &db) else {
        panic!("expected a matrix")
    };
    let values: Vec<f64> = m[0].points.iter().map(|p| p.1).collect();
    assert_eq!(values, vec![0.0, 2.5, 5.0]);
    // predict_linear extrapolates from each step's time, as in Prometheus (not step-invariant).
    let Ok(Value::Matrix(m)) = range("predict_linear(x[5m] @ 300, 0)", 300_000, 360_000, 60_000, &db) else {
        panic!("expected a matrix")
    };
    let values: Vec<f64> = m[0].points.iter().map(|p| p.1).collect();
    assert!(close(values[0], 5.0) && close(values[1], 6.0), "{values:?}");
}
