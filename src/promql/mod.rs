//! PromQL evaluation with Prometheus 2.42's semantics, pure and synchronous.
//!
//! A query runs in two phases so that the engine needs no storage handle:
//! 1. [`fetches`] lists, for every selector of the expression (in a fixed walk order), the
//!    label matchers and the inclusive time window of raw samples the evaluation reads;
//! 2. the caller reads those samples and calls [`evaluate`] with `data[i]` holding the
//!    series of `fetches[i]`.
//!
//! Parsing is `promql-parser`'s; [`parse`] also refuses what Prometheus 2.42 does not know
//! (functions, aggregations and modifiers added in 3.x), as 2.42's parser would.
//!
//! Layout: `plan` computes the fetch windows, `eval` walks the tree over all steps of the
//! query at once (as Prometheus' engine does), `functions`, `aggregate` and `binary` hold
//! the operators (`range_functions` those over range vectors), `value` the internal
//! step-series types, `labels` the label helpers, `support` the 2.42 language subset.

mod aggregate;
mod binary;
mod eval;
mod functions;
mod labels;
mod plan;
mod range_functions;
mod support;
mod value;

#[cfg(test)]
mod robustness_tests;
#[cfg(test)]
mod tests;

use std::time::Instant;

pub use promql_parser::label::Matchers;
pub use promql_parser::parser::Expr;

/// A label set, including `__name__`. Labels with an empty value do not exist.
pub type Labels = std::collections::BTreeMap<String, String>;

/// The lookback delta of instant selectors (Prometheus' `--query.lookback-delta` default).
pub const DEFAULT_LOOKBACK_MS: i64 = 300_000;

/// Prometheus' `--query.max-samples` default.
pub const DEFAULT_MAX_SAMPLES: usize = 50_000_000;

/// One series: its labels and its points (milliseconds, oldest first). Values are raw:
/// NaN payloads are kept, so a stale marker is `f64::from_bits(0x7ff0_0000_0000_0002)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub points: Vec<(i64, f64)>,
}

/// The raw samples one selector of the expression reads.
#[derive(Debug, Clone)]
pub struct Fetch {
    /// The selector's matchers, including the `__name__` matcher.
    pub matchers: Matchers,
    /// First millisecond of the window (inclusive).
    pub start_ms: i64,
    /// Last millisecond of the window (inclusive).
    pub end_ms: i64,
    /// Whether only the newest sample of the window counts: a vector selector evaluated
    /// at one instant (the whole query's, or pinned with `@`), which takes a series'
    /// latest sample in the lookback window and nothing older.
    pub latest_only: bool,
}

impl Fetch {
    /// The metric name when a matcher pins it (`__name__="x"`), for SQL push-down.
    pub fn metric_name(&self) -> Option<&str> {
        self.matchers
            .matchers
            .iter()
            .find(|m| m.name == "__name__" && matches!(m.op, promql_parser::label::MatchOp::Equal))
            .map(|m| m.value.as_str())
    }

    /// True when `labels` satisfies every matcher (regexes fully anchored, RE2 semantics).
    /// A missing label matches as the empty string, as in Prometheus.
    pub fn matches(&self, labels: &Labels) -> bool {
        labels::matchers_match(&self.matchers, labels)
    }
}

/// The evaluation times: an instant query has `start_ms == end_ms` and `step_ms == 0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalRange {
    pub start_ms: i64,
    pub end_ms: i64,
    pub step_ms: i64,
}

impl EvalRange {
    /// An instant query at `t_ms`.
    pub fn instant(t_ms: i64) -> Self {
        EvalRange { start_ms: t_ms, end_ms: t_ms, step_ms: 0 }
    }

    fn is_instant(&self) -> bool {
        self.start_ms == self.end_ms && self.step_ms == 0
    }
}

/// Resource limits of one query.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most samples held in memory at once (Prometheus' `--query.max-samples`).
    pub max_samples: usize,
    /// Query deadline; evaluation stops with [`EngineError::Timeout`] once passed.
    pub deadline: Option<Instant>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_samples: DEFAULT_MAX_SAMPLES, deadline: None }
    }
}

/// A query answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar {
        t_ms: i64,
        v: f64,
    },
    String {
        t_ms: i64,
        v: String,
    },
    /// An instant query's vector: labels, evaluation time, value.
    Vector(Vec<(Labels, i64, f64)>),
    /// A range query's answer (sorted by labels), or a range selector at an instant.
    Matrix(Vec<Series>),
}

/// Why a query failed; each variant maps to one Prometheus API error type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// Parse errors, bad regexes, bad parameters: 400 `bad_data`.
    #[error("{0}")]
    BadData(String),
    /// What the engine refuses or fails while evaluating, and the samples limit: 422
    /// `execution`.
    #[error("{0}")]
    Execution(String),
    /// The deadline passed: 503 `timeout`.
    #[error("{0}")]
    Timeout(String),
}

/// Parses `query`, refusing constructs Prometheus 2.42 does not have.
///
/// `promql-parser` panics on some inputs Prometheus refuses (a unitless duration too large
/// for `Duration::from_secs_f64`, such as `x[1e30]`); such a panic becomes a parse error.
pub fn parse(query: &str) -> Result<Expr, EngineError> {
    register_2_42_functions();
    support::check_duration_units(query)?;
    let parsed = std::panic::catch_unwind(|| promql_parser::parser::parse(query))
        .map_err(|_| EngineError::BadData("parse error: invalid duration or number in the expression".into()))?;
    let expr = parsed.map_err(EngineError::BadData)?;
    support::check_supported_syntax(&expr)?;
    Ok(expr)
}

/// Teaches `promql-parser` (which has Prometheus 3's function table) the 2.42 functions
/// 3.x renamed: `holt_winters` (3.x's `double_exponential_smoothing`).
fn register_2_42_functions() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use promql_parser::parser::Function;
        use promql_parser::parser::value::ValueType;
        let holt_winters = Function::new(
            "holt_winters",
            vec![ValueType::Matrix, ValueType::Scalar, ValueType::Scalar],
            0,
            ValueType::Vector,
            false,
        );
        // Only a name clash with a built-in fails, and 3.x has no `holt_winters`.
        let _ = promql_parser::parser::register_extra_functions(vec![holt_winters]);
    });
}

/// The raw samples the evaluation of `expr` over `range` reads, one entry per selector in
/// the walk order [`evaluate`] expects its `data` in.
pub fn fetches(expr: &Expr, range: &EvalRange, lookback_ms: i64) -> Vec<Fetch> {
    plan::fetches(expr, range, lookback_ms)
}

/// Evaluates `expr` over `range` with `data[i]` the series read for `fetches(..)[i]`.
///
/// An instant query answers the expression's own type; a range query answers a matrix
/// (a scalar expression becomes one series without labels).
pub fn evaluate(expr: &Expr, range: &EvalRange, data: Vec<Vec<Series>>, limits: &Limits) -> Result<Value, EngineError> {
    eval::run(expr, range, data, limits, DEFAULT_LOOKBACK_MS)
}
