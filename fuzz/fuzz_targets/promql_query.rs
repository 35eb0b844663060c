//! PromQL query text (`query=`): parsed as the API parses it, planned, and evaluated as an
//! instant and as a range query over a few in-memory series, under a deadline and a
//! samples limit as the service sets them. Any answer or error will do; a panic will not.
#![no_main]

use std::time::{Duration, Instant};

use killkrill::promql::{self, EvalRange, Labels, Limits, Series};
use libfuzzer_sys::fuzz_target;

/// Three series of two metrics, a sample a minute for ten minutes, with a counter reset, a
/// NaN and a stale marker among them.
fn store() -> Vec<Series> {
    let series = |labels: &[(&str, &str)], value: fn(i64) -> f64| Series {
        labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Labels>(),
        points: (0..=10).map(|m| (m * 60_000, value(m))).collect(),
    };
    vec![
        series(&[("__name__", "x"), ("job", "a"), ("le", "0.5")], |m| m as f64),
        series(&[("__name__", "x"), ("job", "b"), ("le", "+Inf")], |m| if m == 5 { 0.0 } else { (m * 3) as f64 }),
        series(&[("__name__", "y"), ("job", "a"), ("instance", "h:1")], |m| match m {
            4 => f64::NAN,
            7 => f64::from_bits(0x7ff0_0000_0000_0002),
            _ => -(m as f64) / 3.0,
        }),
    ]
}

fn run(expr: &promql::Expr, range: EvalRange, store: &[Series]) {
    let data = promql::fetches(expr, &range, promql::DEFAULT_LOOKBACK_MS)
        .iter()
        .map(|fetch| {
            store
                .iter()
                .filter(|s| fetch.matches(&s.labels))
                .map(|s| {
                    let mut points: Vec<(i64, f64)> =
                        s.points.iter().copied().filter(|p| p.0 >= fetch.start_ms && p.0 <= fetch.end_ms).collect();
                    if fetch.latest_only {
                        points.drain(..points.len().saturating_sub(1));
                    }
                    Series { labels: s.labels.clone(), points }
                })
                .filter(|s| !s.points.is_empty())
                .collect()
        })
        .collect();
    let limits = Limits { max_samples: 1_000_000, deadline: Some(Instant::now() + Duration::from_secs(2)) };
    let _ = promql::evaluate(expr, &range, data, &limits);
}

fuzz_target!(|data: &[u8]| {
    static INIT: std::sync::Once = std::sync::Once::new();
    // `promql::parse` turns promql-parser's known panics into parse errors with
    // catch_unwind; libfuzzer-sys' hook would abort before unwinding. A panic that escapes
    // is still a crash (the harness aborts on it).
    INIT.call_once(|| std::panic::set_hook(Box::new(|info| eprintln!("panic: {info}"))));
    let Ok(query) = std::str::from_utf8(data) else { return };
    let Ok(expr) = promql::parse(query) else { return };
    let store = store();
    run(&expr, EvalRange::instant(300_000), &store);
    run(&expr, EvalRange { start_ms: 0, end_ms: 600_000, step_ms: 60_000 }, &store);
});
