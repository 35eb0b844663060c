//! No input makes the engine panic or overflow: extreme offsets, `@` times, ranges,
//! steps, parameters and invalid arguments get an answer or an error of the kind
//! Prometheus 2.42 gives.

use super::*;

fn db() -> Vec<Series> {
    let labels: Labels =
        [("__name__", "x"), ("job", "a")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    vec![Series { labels, points: (0..=10).map(|m| (m * 60_000, m as f64)).collect() }]
}

fn run(query: &str, range: EvalRange, limits: &Limits) -> Result<Value, EngineError> {
    super::tests::run(query, range, &db(), limits)
}

const PROBES: &[&str] = &[
    "x offset 290y",
    "x offset -290y",
    "x offset 292y",
    "x offset 100000000y",
    "x @ 1e300",
    "x @ -1e300",
    "x @ 9.2e15",
    "x @ 9.3e15",
    "x @ 9e18",
    "x @ -9.2e15",
    "rate(x[100000000y])",
    "x[100000000y]",
    "rate(x[290y] offset 290y)",
    "rate(x[290y] @ 9.2e15)",
    "rate(x[1m] @ -9.2e15 offset -290y)",
    "max_over_time(x[100y:1ms])",
    "max_over_time(x[1h:1ms])",
    "x[100y:1ms]",
    "max_over_time(x[290y:290y] offset 290y)",
    "max_over_time(x[1m:1m] @ 9.2e15 offset -290y)",
    "time() * 1e308",
    "vector(time() * 1e308)",
    "timestamp(x) * 1e308",
    "topk(1e300, x)",
    "topk(-1e300, x)",
    "topk(9.3e18, x)",
    "topk(NaN, x)",
    "topk(Inf, x)",
    "bottomk(9223372036854775807, x)",
    "quantile(NaN, x)",
    "quantile(Inf, x)",
    "quantile_over_time(NaN, x[5m])",
    "histogram_quantile(NaN, x)",
    "label_replace(x, \"dst\", \"$1\", \"job\", \"(\")",
    "label_replace(x, \"1dst\", \"$1\", \"job\", \"(.*)\")",
    "label_replace(x, \"dst\", \"$99999999999999999999\", \"job\", \"(.*)\")",
    "label_replace(x, \"dst\", \"${1\", \"job\", \"(.*)\")",
    "label_join(x, \"1\", \",\", \"job\")",
    "count_values(\"1bad\", x)",
    "count_values(\"\", x)",
    "count_values(\"__name__\", x)",
    "round(x, 0)",
    "round(x, 1e-320)",
    "round(x, Inf)",
    "round(x, NaN)",
    "predict_linear(x[5m], 1e308)",
    "predict_linear(x[5m], NaN)",
    "clamp(x, NaN, NaN)",
    "day_of_month(vector(1e300))",
    "year(vector(-1e300))",
    "days_in_month(vector(9.2e18))",
    "hour(vector(NaN))",
    "minute(x * 1e18)",
    "x % 0",
    "x ^ 1e308",
    "-x",
    "absent_over_time(x[100000000y])",
    "absent(nonexistent offset 290y)",
    "timestamp(x offset -290y)",
    "holt_winters(x[5m], 0.5, 0.5)",
    "x[1ms:1ms]",
    "rate(x[0s])",
    "x[0s:1ms]",
    "sum_over_time(x[5m:0s])",
    "scalar(x) * 1e308",
    "sort(x * NaN)",
    "changes(x[1m:1s] offset 1ms)",
];

fn message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// Every probe at ordinary and extreme query times answers without a panic. Debug builds
/// check arithmetic overflow, so an overflow in time arithmetic fails here too.
#[test]
fn no_probe_panics_at_any_query_time() {
    let ranges = [
        EvalRange::instant(600_000),
        EvalRange::instant(0),
        EvalRange::instant(i64::MAX / 2),
        EvalRange::instant(i64::MIN / 2),
        EvalRange { start_ms: 0, end_ms: 600_000, step_ms: 60_000 },
        EvalRange { start_ms: i64::MAX - 1000, end_ms: i64::MAX, step_ms: 1 },
        EvalRange { start_ms: i64::MIN, end_ms: i64::MIN + 1000, step_ms: 1 },
        EvalRange { start_ms: 0, end_ms: i64::MAX, step_ms: i64::MAX },
        EvalRange { start_ms: i64::MIN, end_ms: i64::MAX, step_ms: i64::MAX },
    ];
    let limits = Limits {
        max_samples: 1_000_000,
        deadline: Some(std::time::Instant::now() + std::time::Duration::from_secs(120)),
    };
    let mut failures = Vec::new();
    for q in PROBES {
        for r in &ranges {
            match std::panic::catch_unwind(|| run(q, *r, &limits)) {
                Err(payload) => failures.push(format!("{q} {r:?}: {}", message(payload))),
                Ok(Err(EngineError::Timeout(_))) => failures.push(format!("{q} {r:?}: timed out")),
                Ok(_) => {}
            }
        }
    }
    assert!(failures.is_empty(), "panics: {failures:#?}");
}

fn instant(query: &str) -> Result<Value, EngineError> {
    run(query, EvalRange::instant(600_000), &Limits::default())
}

fn bad_data(query: &str) -> String {
    match instant(query) {
        Err(EngineError::BadData(msg)) => msg,
        other => panic!("{query}: expected bad_data, got {other:?}"),
    }
}

fn execution(query: &str) -> String {
    match instant(query) {
        Err(EngineError::Execution(msg)) => msg,
        other => panic!("{query}: expected an execution error, got {other:?}"),
    }
}

fn empty_vector(query: &str) {
    assert_eq!(instant(query), Ok(Value::Vector(Vec::new())), "{query}");
}

#[test]
fn durations_past_292_years_are_refused_as_prometheus_refuses_them() {
    for q in ["x offset 293y", "x[300y]", "rate(x[100000000y])", "x[5m:1000y]", "x[1000y:1m]", "x[5m:1m] offset 293y"] {
        assert!(bad_data(q).contains("out of range"), "{q}");
    }
    // Up to int64 nanoseconds they are valid and far away.
    empty_vector("x offset 292y");
    empty_vector("x offset -292y");
    empty_vector("rate(x[292y] offset 292y)");
}

#[test]
fn float_durations_that_crash_the_parser_are_bad_data() {
    for q in ["x[1e300]", "x[1e30]", "x offset 1e300", "x offset -1e300", "x[5m:1e300]"] {
        assert!(matches!(parse(q), Err(EngineError::BadData(_))), "{q}");
    }
}

#[test]
fn extreme_at_times_select_nothing() {
    for q in ["x @ 1e300", "x @ -1e300", "x @ 9.3e15", "x @ -9.3e15", "rate(x[292y] @ 9.2e15)", "x[1m:1m] @ 1e300"] {
        match instant(q) {
            Ok(Value::Vector(v)) => assert!(v.is_empty(), "{q}"),
            Ok(Value::Matrix(m)) => assert!(m.is_empty(), "{q}"),
            other => panic!("{q}: {other:?}"),
        }
    }
}

#[test]
fn fetch_windows_saturate_instead_of_overflowing() {
    let expr = parse("x[292y:1m] offset 292y").unwrap();
    let f = &fetches(&expr, &EvalRange::instant(i64::MIN + 5), DEFAULT_LOOKBACK_MS)[0];
    assert_eq!(f.start_ms, i64::MIN);
    let expr = parse("x offset -292y").unwrap();
    let f = &fetches(&expr, &EvalRange { start_ms: 0, end_ms: i64::MAX, step_ms: 1 }, DEFAULT_LOOKBACK_MS)[0];
    assert_eq!(f.end_ms, i64::MAX);
}

#[test]
fn a_one_millisecond_subquery_step_over_years_is_bounded_by_the_samples_limit() {
    // 100 years of 1 ms steps: the literal would need 3e12 values.
    let limits = Limits { max_samples: 1_000_000, deadline: None };
    let got = run("max_over_time(vector(1)[100y:1ms])", EvalRange::instant(600_000), &limits);
    assert!(matches!(got, Err(EngineError::Execution(m)) if m.contains("too many samples")));
    // The selector's sparse data is found without visiting every empty step.
    let started = std::time::Instant::now();
    let got = run("count_over_time(x[100y:1ms] offset 1y)", EvalRange::instant(600_000), &limits);
    assert_eq!(got, Ok(Value::Vector(Vec::new())));
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    // Dense data counts against the limit.
    let got = run("count_over_time(x[1h:1ms])", EvalRange::instant(600_000), &limits);
    assert!(matches!(got, Err(EngineError::Execution(m)) if m.contains("too many samples")));
}

#[test]
fn a_range_query_over_the_whole_time_line_answers() {
    let r = EvalRange { start_ms: i64::MIN, end_ms: i64::MAX, step_ms: i64::MAX };
    let got = run("x", r, &Limits::default()).unwrap();
    assert_eq!(got, Value::Matrix(Vec::new()));
    let got = run("time()", r, &Limits::default()).unwrap();
    let Value::Matrix(m) = got else { panic!("{got:?}") };
    assert_eq!(m[0].points.len(), 3);
}

#[test]
fn huge_or_nan_aggregation_parameters_answer_as_prometheus() {
    assert_eq!(execution("topk(1e300, x)"), "Scalar value 1e+300 overflows int64");
    assert_eq!(execution("topk(NaN, x)"), "Scalar value NaN overflows int64");
    assert_eq!(execution("bottomk(-Inf, x)"), "Scalar value -Inf overflows int64");
    // 2^63 does not fit, 2^62 does (and keeps every series).
    assert!(execution("topk(9223372036854775808, x)").contains("overflows int64"));
    assert_eq!(vector_len(instant("topk(4611686018427387904, x)")), 1);
    assert!(first_value(instant("quantile(NaN, x)")).is_nan());
    assert_eq!(first_value(instant("quantile(Inf, x)")), f64::INFINITY);
    assert_eq!(first_value(instant("quantile(-Inf, x)")), f64::NEG_INFINITY);
    assert!(first_value(instant("quantile_over_time(NaN, x[5m])")).is_nan());
}

fn vector_len(v: Result<Value, EngineError>) -> usize {
    match v {
        Ok(Value::Vector(v)) => v.len(),
        other => panic!("{other:?}"),
    }
}

fn first_value(v: Result<Value, EngineError>) -> f64 {
    match v {
        Ok(Value::Vector(v)) if !v.is_empty() => v[0].2,
        other => panic!("{other:?}"),
    }
}

#[test]
fn invalid_regexes_and_label_names_are_execution_errors() {
    assert_eq!(
        execution(r#"label_replace(x, "dst", "$1", "job", "(")"#),
        "invalid regular expression in label_replace(): ("
    );
    assert_eq!(
        execution(r#"label_replace(x, "1dst", "$1", "job", "(.*)")"#),
        "invalid destination label name in label_replace(): 1dst"
    );
    assert_eq!(execution(r#"count_values("1bad", x)"#), "invalid label name \"1bad\"");
    assert_eq!(execution(r#"count_values("", x)"#), "invalid label name \"\"");
    // A group reference past the last group expands to nothing, as Go's Expand does.
    assert_eq!(vector_len(instant(r#"label_replace(x, "dst", "$99999999999999999999", "job", "(.*)")"#)), 1);
}

#[test]
fn overflowing_values_are_infinities_not_errors() {
    assert_eq!(instant("time() * 1e308"), Ok(Value::Scalar { t_ms: 600_000, v: f64::INFINITY }));
    assert_eq!(first_value(instant("timestamp(x) * 1e308")), f64::INFINITY);
    assert!(first_value(instant("day_of_month(vector(1e300))")).is_nan());
    assert!(first_value(instant("year(vector(-1e300))")).is_nan());
    assert!(first_value(instant("round(x, 0)")).is_nan());
}

#[test]
fn clamp_propagates_nan_bounds_as_go_math_does() {
    assert!(first_value(instant("clamp(x, NaN, NaN)")).is_nan());
    assert!(first_value(instant("clamp_min(x, NaN)")).is_nan());
    assert!(first_value(instant("clamp_max(x, NaN)")).is_nan());
    assert_eq!(first_value(instant("clamp(x, 0, 5)")), 5.0);
}

#[test]
fn durations_without_a_unit_are_refused_as_2_42_refuses_them() {
    for q in ["x[5]", "rate(x[1.5])", "x[5:1m]", "x[5m:1]", "x[ 5 ]", "x offset 5", "x offset -1e300", "x OFFSET 1"] {
        assert!(matches!(parse(q), Err(EngineError::BadData(_))), "{q}");
    }
    for q in [
        "x[5m]",
        "x[5m:]",
        "x[5m:1m] offset -5m",
        r#"x{offset="5"}"#,
        r#"x{a="[5]", b='offset 5', c=`[1]`}"#,
        "sum by (offset) (x)",
        "x # offset 5 [1]",
        "x offset 1h30m",
    ] {
        assert!(parse(q).is_ok(), "{q}");
    }
}
