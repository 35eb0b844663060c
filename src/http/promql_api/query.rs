//! `/query` and `/query_range`: PromQL over GET or a POST form, their parameters checked
//! in Prometheus' order and words, the answer in its envelope.

use std::time::Duration;

use axum::{extract::State, response::Response};

use super::{
    ApiError, ErrorType, PromError, Reader,
    params::{Instant, Params, invalid, parse_duration},
    render::{MatrixSeries, Point, QueryData, ScalarPoint, Seconds, VectorSample, success},
};
use crate::{
    promql::{self, EngineError, EvalRange, Value},
    service::promql::query::{self as run, QueryError, QueryLimits},
    state::AppState,
};

/// Prometheus' cap on the points of one series of a range query.
const MAX_POINTS: i128 = 11_000;

/// `GET|POST /query`: `query` at `time` (now when left out), within `timeout`.
pub async fn instant(State(state): State<AppState>, _: Reader, params: Params) -> Result<Response, ApiError> {
    let time = params.time("time")?.unwrap_or_else(Instant::now);
    let limits = limits(&state, &params)?;
    let expr =
        promql::parse(params.value("query").unwrap_or_default()).map_err(|err| invalid("query", &err.to_string()))?;
    let value =
        run::run(state.db.conn(), expr, EvalRange::instant(time.millis()), limits).await.map_err(query_error)?;
    Ok(answer(value))
}

/// `GET|POST /query_range`: `query` from `start` to `end` every `step`.
pub async fn range(State(state): State<AppState>, _: Reader, params: Params) -> Result<Response, ApiError> {
    let start = params.required_time("start")?;
    let end = params.required_time("end")?;
    if end < start {
        return Err(invalid("end", "end timestamp must not be before start time").into());
    }
    let step = parse_duration(params.value("step").unwrap_or_default()).map_err(|err| invalid("step", &err))?;
    if step <= 0 {
        let why = "zero or negative query resolution step widths are not accepted. Try a positive integer";
        return Err(invalid("step", why).into());
    }
    if (end.0 - start.0) / step > MAX_POINTS {
        return Err(PromError::bad_data(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        )
        .into());
    }
    let limits = limits(&state, &params)?;
    let expr =
        promql::parse(params.value("query").unwrap_or_default()).map_err(|err| PromError::bad_data(err.to_string()))?;
    // The engine counts in milliseconds (Prometheus truncates the step to them).
    let step_ms = i64::try_from(step / 1_000_000).unwrap_or(i64::MAX).max(1);
    let range = EvalRange { start_ms: start.millis(), end_ms: end.millis(), step_ms };
    let value = run::run(state.db.conn(), expr, range, limits).await.map_err(query_error)?;
    Ok(answer(value))
}

/// The query's deadline and samples limit: `timeout` may shorten
/// `PROMQL_QUERY_TIMEOUT_SECONDS`, and the query ends a second before the request
/// timeout would cut it, so that it answers Prometheus' timeout error instead.
fn limits(state: &AppState, params: &Params) -> Result<QueryLimits, PromError> {
    let config = &state.config;
    let mut timeout = config.promql_query_timeout.min(config.request_timeout.saturating_sub(Duration::from_secs(1)));
    if let Some(asked) = params.duration("timeout")? {
        timeout = timeout.min(Duration::from_nanos(u64::try_from(asked).unwrap_or(0)));
    }
    Ok(QueryLimits { timeout, max_samples: config.promql_max_samples })
}

fn query_error(err: QueryError) -> ApiError {
    match err {
        QueryError::Engine(EngineError::BadData(message)) => PromError::bad_data(message).into(),
        QueryError::Engine(EngineError::Execution(message)) => PromError::new(ErrorType::Execution, message).into(),
        QueryError::Engine(EngineError::Timeout(message)) => PromError::new(ErrorType::Timeout, message).into(),
        QueryError::App(err) => err.into(),
    }
}

/// The engine's value in Prometheus' `{"resultType", "result"}`; a matrix series
/// without points is left out, as Prometheus never has one.
fn answer(value: Value) -> Response {
    match value {
        Value::Scalar { t_ms, v } => success(QueryData { result_type: "scalar", result: ScalarPoint(t_ms, v) }, &[]),
        Value::String { t_ms, v } => success(QueryData { result_type: "string", result: (Seconds(t_ms), v) }, &[]),
        Value::Vector(samples) => {
            let result: Vec<VectorSample> =
                samples.iter().map(|(metric, t, v)| VectorSample { metric, value: Point(*t, *v) }).collect();
            success(QueryData { result_type: "vector", result }, &[])
        }
        Value::Matrix(series) => {
            let result: Vec<MatrixSeries> = series
                .iter()
                .filter(|s| !s.points.is_empty())
                .map(|s| MatrixSeries { metric: &s.labels, values: &s.points })
                .collect();
            success(QueryData { result_type: "matrix", result }, &[])
        }
    }
}
