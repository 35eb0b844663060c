//! Running a PromQL query: the engine (`crate::promql`) names the samples each selector
//! reads, they are read here (one batch of series per selector, the same label set of
//! several sources merged), then the engine evaluates them off the async threads, under
//! the query's deadline and samples limit.

use std::time::Duration;

use sea_orm::DatabaseConnection;

use super::{ReadError, read_samples, select_series};
use crate::{
    error::AppError,
    promql::{self, EngineError, EvalRange, Expr, Fetch, Limits, Series, Value},
};

/// How long a query may run and how many samples it may hold.
#[derive(Clone, Copy, Debug)]
pub struct QueryLimits {
    pub timeout: Duration,
    pub max_samples: usize,
}

/// Why a query failed: the engine's refusal (bad data, execution, timeout), or the
/// service's (the database).
#[derive(Debug)]
pub enum QueryError {
    Engine(EngineError),
    App(AppError),
}

impl From<AppError> for QueryError {
    fn from(err: AppError) -> Self {
        QueryError::App(err)
    }
}

/// Prometheus' words for a query past its deadline (`promql.ErrQueryTimeout`).
pub fn timed_out() -> EngineError {
    EngineError::Timeout("query timed out in query execution".to_owned())
}

/// Prometheus' words for a query over the samples limit (`promql.ErrTooManySamples`).
pub fn too_many_samples() -> EngineError {
    EngineError::Execution("query processing would load too many samples into memory in query execution".to_owned())
}

/// Evaluates `expr` over `range`: its selectors' samples read from every source, then
/// the engine, within `limits`.
pub async fn run(
    db: &DatabaseConnection,
    expr: Expr,
    range: EvalRange,
    limits: QueryLimits,
) -> Result<Value, QueryError> {
    let deadline = tokio::time::Instant::now() + limits.timeout;
    let fetches = promql::fetches(&expr, &range, promql::DEFAULT_LOOKBACK_MS);
    let data = match tokio::time::timeout_at(deadline, read_all(db, &fetches, limits.max_samples, deadline)).await {
        Ok(data) => data?,
        Err(_) => return Err(QueryError::Engine(timed_out())),
    };
    let engine_limits = Limits { max_samples: limits.max_samples, deadline: Some(deadline.into_std()) };
    let evaluated = tokio::task::spawn_blocking(move || promql::evaluate(&expr, &range, data, &engine_limits))
        .await
        .map_err(|err| QueryError::App(AppError::internal(format!("PromQL evaluation failed: {err}"))))?;
    evaluated.map_err(QueryError::Engine)
}

/// The series of each fetch, in the fetches' order; a selector read twice over the same
/// window (`x / x`) is read once. Fails past `max_samples` samples in all, and once
/// `deadline` has passed (checked before each read, as well as while waiting on one).
async fn read_all(
    db: &DatabaseConnection,
    fetches: &[Fetch],
    max_samples: usize,
    deadline: tokio::time::Instant,
) -> Result<Vec<Vec<Series>>, QueryError> {
    let mut data: Vec<Vec<Series>> = Vec::with_capacity(fetches.len());
    let mut loaded = 0usize;
    for (at, fetch) in fetches.iter().enumerate() {
        if tokio::time::Instant::now() >= deadline {
            return Err(QueryError::Engine(timed_out()));
        }
        let same = fetches[..at].iter().position(|earlier| {
            earlier.matchers == fetch.matchers && earlier.start_ms == fetch.start_ms && earlier.end_ms == fetch.end_ms
        });
        if let Some(earlier) = same {
            let copy = data[earlier].clone();
            data.push(copy);
            continue;
        }
        let selected = select_series(db, fetch, false).await?;
        let budget = max_samples.saturating_sub(loaded);
        let points = match read_samples(db, &selected, fetch.start_ms..=fetch.end_ms, fetch.latest_only, budget).await {
            Ok(points) => points,
            Err(ReadError::TooManySamples) => return Err(QueryError::Engine(too_many_samples())),
            Err(ReadError::App(err)) => return Err(QueryError::App(err)),
        };
        loaded += points.iter().map(Vec::len).sum::<usize>();
        let series = selected
            .into_iter()
            .zip(points)
            .filter(|(_, points)| !points.is_empty())
            .map(|(selected, points)| Series { labels: selected.labels, points })
            .collect();
        data.push(series);
    }
    Ok(data)
}
