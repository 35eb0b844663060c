//! `/api/v1/logs` and `/api/v1/metrics`: ingest (an ingest key of the source, or
//! maintainer+) and reads (viewer+; ingest keys can never read).

use crate::http::openapi::ErrorResponse;
use axum::{
    extract::{FromRequestParts, State},
    http::{HeaderMap, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    auth::{Principal, Role},
    error::{AppError, FieldError},
    http::error::HttpError,
    http::principal::{AtLeastMaintainer, AtLeastViewer},
    http::{
        context::RequestContext,
        extract::{Body, Json, Query, is_json, refuse_nul},
        pagination::{listing, page},
    },
    service::{
        ingestor::Ingestor,
        logs::{self, Cursor, Level, LogFilter, NewLog},
        samples::{self, Aggregation, NewSample},
    },
    state::AppState,
    time,
};

impl FromRequestParts<AppState> for Ingestor {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let ingest_key = parts
            .headers
            .get(crate::auth::X_API_KEY)
            .and_then(|v| v.to_str().ok())
            .filter(|k| k.starts_with(crate::auth::keys::INGEST_KEY_PREFIX));
        // The principal extractor records the user in the audit slot itself. A user's role
        // is checked here too (authorize checks it again), before the body is parsed.
        match ingest_key {
            Some(key) => Ok(Ingestor::Key(state.ingest_keys.authenticate(state.db.conn(), key.trim()).await?)),
            None => Ok(Ingestor::User(AtLeastMaintainer::from_request_parts(parts, state).await?.0)),
        }
    }
}

/// One log entry as clients send it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct LogInput {
    pub timestamp: Option<Value>,
    pub level: Option<Value>,
    #[schema(required = true, min_length = 1)]
    pub message: Option<String>,
    pub hostname: Option<String>,
    pub application: Option<String>,
    pub attributes: Option<Value>,
    /// Stream labels; the server adds `source`, `level`, `hostname` and `application`.
    pub labels: Option<BTreeMap<String, String>>,
}

impl From<LogInput> for NewLog {
    fn from(entry: LogInput) -> Self {
        NewLog {
            timestamp: entry.timestamp.filter(|v| !v.is_null()).map(|v| time_of(&v)).transpose(),
            level: entry.level.filter(|v| !v.is_null()).map(|v| level_of(&v)).transpose(),
            message: entry.message.unwrap_or_default(),
            hostname: entry.hostname,
            application: entry.application,
            attributes: entry.attributes,
            labels: entry.labels.unwrap_or_default(),
        }
    }
}

/// A time as JSON carries it: RFC 3339, or Unix seconds (a number, or a numeric string).
fn time_of(value: &Value) -> Result<i64, String> {
    match value {
        Value::Number(n) => n.as_f64().map_or_else(|| Err(time::TIME_FORMAT.to_owned()), time::timestamp_from_seconds),
        Value::String(text) => time::parse_timestamp(text),
        _ => Err(time::TIME_FORMAT.to_owned()),
    }
}

/// A level as JSON carries it: a name, or a syslog severity (a number, or a numeric string).
fn level_of(value: &Value) -> Result<Level, String> {
    match value {
        Value::Number(n) => n.as_u64().map_or_else(|| Err(logs::LEVEL_FORMAT.to_owned()), Level::from_severity),
        Value::String(text) => Level::parse(text),
        _ => Err(logs::LEVEL_FORMAT.to_owned()),
    }
}

/// A step as JSON carries it: seconds (a number), or a duration (`"60s"`, `"5m"` …).
fn step_of(value: &Value) -> Result<i64, String> {
    match value {
        Value::Number(n) => n.as_f64().map_or_else(|| Err(time::STEP_FORMAT.to_owned()), time::step_from_seconds),
        Value::String(text) => time::parse_step(text),
        _ => Err(time::STEP_FORMAT.to_owned()),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct LogBatch {
    source_id: String,
    #[schema(min_items = 1, max_items = 10000)]
    logs: Vec<LogInput>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct IngestQuery {
    pub source_id: Option<String>,
}

fn is_ndjson(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| {
        let ct = ct.split(';').next().unwrap_or_default().trim();
        ct == "application/x-ndjson" || ct == "application/ndjson" || ct == "application/jsonl"
    })
}

fn malformed(err: serde_json::Error) -> AppError {
    AppError::Invalid(format!("Malformed JSON: {err}"))
}

/// Parses a JSON batch, or NDJSON (one entry a line, `source_id` in the query).
pub fn parse_logs(headers: &HeaderMap, query: IngestQuery, body: &[u8]) -> Result<(String, Vec<LogInput>), HttpError> {
    if is_ndjson(headers) {
        refuse_nul(body)?;
        let source_id = query.source_id.ok_or_else(|| {
            AppError::Validation(vec![FieldError::new("source_id", "is required in the query for NDJSON")])
        })?;
        let mut entries = Vec::new();
        for (n, line) in body.split(|b| *b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let entry = serde_json::from_slice(line)
                .map_err(|e| AppError::Invalid(format!("Malformed JSON on line {}: {e}", n + 1)))?;
            entries.push(entry);
        }
        return Ok((source_id, entries));
    }
    if !is_json(headers) {
        return Err(HttpError::UnsupportedMediaType(
            "Expected Content-Type: application/json or application/x-ndjson".into(),
        ));
    }
    refuse_nul(body)?;
    let batch: LogBatch = serde_json::from_slice(body).map_err(malformed)?;
    Ok((batch.source_id, batch.logs))
}

#[utoipa::path(operation_id = "telemetry_ingest_logs", post, path = "/api/v1/logs", tag = "logs", security(("bearer" = []), ("api_key" = [])), params(IngestQuery), request_body(content((LogBatch = "application/json"), (LogInput = "application/x-ndjson"))), responses((status = 202, body = crate::http::schemas::Accepted), (status = 400, description = "Invalid input", body = ErrorResponse), (status = 401, description = "Missing or invalid credentials", body = ErrorResponse), (status = 403, description = "Not allowed", body = ErrorResponse), (status = 404, description = "Not found", body = ErrorResponse), (status = 413, body = ErrorResponse), (status = 415, body = ErrorResponse)))]
pub async fn ingest_logs(
    State(state): State<AppState>,
    ingestor: Ingestor,
    ctx: RequestContext,
    headers: HeaderMap,
    Query(query): Query<IngestQuery>,
    Body(body): Body,
) -> Result<Response, HttpError> {
    let (source_id, entries) = parse_logs(&headers, query, &body)?;
    let source = ingestor.authorize(state.db.conn(), &source_id, ctx.client_ip).await?;
    let entries = entries.into_iter().map(NewLog::from).collect();
    let ingested = logs::ingest(&state.db, &state.metrics, state.config.retention, &source, entries).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(json!({ "accepted": ingested.accepted, "dropped": ingested.dropped })))
        .into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    pub source_id: Option<String>,
    pub level: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub q: Option<String>,
    pub limit: Option<u64>,
    pub cursor: Option<String>,
}

#[utoipa::path(operation_id = "telemetry_query_logs", get, path = "/api/v1/logs", tag = "logs", security(("bearer" = []), ("api_key" = [])), params(LogsQuery), responses((status = 200, body = crate::http::schemas::LogPage), (status = 400, description = "Invalid input", body = ErrorResponse), (status = 401, description = "Missing or invalid credentials", body = ErrorResponse), (status = 403, description = "Not allowed", body = ErrorResponse)))]
pub async fn query_logs(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<LogsQuery>,
) -> Result<Response, HttpError> {
    principal.require_role(Role::Viewer)?;
    let page = page(q.limit, None)?;
    let filter = LogFilter::parse(q.source_id, q.level.as_deref(), q.since.as_deref(), q.until.as_deref(), q.q)?;
    let cursor = q.cursor.as_deref().map(Cursor::decode).transpose()?;
    let (entries, next_cursor) = logs::query(state.db.conn(), &filter, page.limit, cursor).await?;
    Ok(axum::Json(json!({ "logs": entries, "limit": page.limit, "next_cursor": next_cursor })).into_response())
}

/// One sample as clients send it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SampleInput {
    #[schema(required = true, max_length = 255, pattern = "^[a-zA-Z_:][a-zA-Z0-9_:]*$")]
    pub name: Option<String>,
    #[serde(rename = "type")]
    #[schema(pattern = "^(counter|gauge|histogram|summary|unknown)$")]
    pub metric_type: Option<String>,
    pub labels: Option<BTreeMap<String, Value>>,
    #[schema(required = true)]
    pub value: Option<f64>,
    pub timestamp: Option<Value>,
}

impl From<SampleInput> for NewSample {
    fn from(input: SampleInput) -> Self {
        // Numbers and booleans are taken as their text.
        let text = |value: Value| match value {
            Value::String(s) => Some(s),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        };
        NewSample {
            name: input.name.unwrap_or_default(),
            metric_type: input.metric_type,
            labels: input.labels.unwrap_or_default().into_iter().map(|(k, v)| (k, text(v))).collect(),
            value: input.value,
            timestamp: input.timestamp.filter(|v| !v.is_null()).map(|v| time_of(&v)).transpose(),
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricBatch {
    pub source_id: String,
    #[schema(min_items = 1, max_items = 10000)]
    pub metrics: Vec<SampleInput>,
}

#[utoipa::path(operation_id = "telemetry_ingest_metrics", post, path = "/api/v1/metrics", tag = "metrics", security(("bearer" = []), ("api_key" = [])), request_body = MetricBatch, responses((status = 202, body = crate::http::schemas::Accepted), (status = 400, description = "Invalid input", body = ErrorResponse), (status = 401, description = "Missing or invalid credentials", body = ErrorResponse), (status = 403, description = "Not allowed", body = ErrorResponse), (status = 404, description = "Not found", body = ErrorResponse), (status = 413, body = ErrorResponse)))]
pub async fn ingest_metrics(
    State(state): State<AppState>,
    ingestor: Ingestor,
    ctx: RequestContext,
    Json(batch): Json<MetricBatch>,
) -> Result<Response, HttpError> {
    let source = ingestor.authorize(state.db.conn(), &batch.source_id, ctx.client_ip).await?;
    let inputs = batch.metrics.into_iter().map(NewSample::from).collect();
    let ingested =
        samples::ingest(&state.db, &state.metrics, state.config.retention, &source, inputs, Vec::new()).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(json!({ "accepted": ingested.accepted, "dropped": ingested.dropped })))
        .into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SeriesQuery {
    name: Option<String>,
    source_id: Option<String>,
    limit: Option<u64>,
    offset: Option<u64>,
}

#[utoipa::path(operation_id = "telemetry_list_metrics", get, path = "/api/v1/metrics", tag = "metrics", security(("bearer" = []), ("api_key" = [])), params(SeriesQuery), responses((status = 200, body = crate::http::schemas::SeriesList), (status = 400, description = "Invalid input", body = ErrorResponse), (status = 401, description = "Missing or invalid credentials", body = ErrorResponse), (status = 403, description = "Not allowed", body = ErrorResponse)))]
pub async fn list_metrics(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<SeriesQuery>,
) -> Result<Response, HttpError> {
    principal.require_role(Role::Viewer)?;
    let page = page(q.limit, q.offset)?;
    let (series, total) =
        samples::list_series(state.db.conn(), q.name.as_deref(), q.source_id.as_deref(), page.limit, page.offset)
            .await?;
    Ok(axum::Json(listing("metrics", series, total, page)).into_response())
}

/// `POST /api/v1/metrics/query`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RangeQuery {
    #[schema(pattern = "^[a-zA-Z_:][a-zA-Z0-9_:]*$")]
    pub metric: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// RFC 3339 (`"2026-11-25T10:30:00Z"`) or Unix seconds, as a number or a string.
    pub start: Value,
    /// As `start`; not before it.
    pub end: Value,
    /// Seconds (a number), or a duration: `"500ms"`, `"60s"`, `"5m"`, `"1h"`, `"1d"`. At
    /// most 11,000 steps per series.
    pub step: Value,
    #[schema(pattern = "^(avg|sum|min|max|count|rate)$")]
    pub aggregation: Option<String>,
}

impl From<RangeQuery> for samples::RangeQuery {
    fn from(q: RangeQuery) -> Self {
        samples::RangeQuery {
            metric: q.metric,
            labels: q.labels,
            start_micros: time_of(&q.start),
            end_micros: time_of(&q.end),
            step_micros: step_of(&q.step),
            aggregation: Aggregation::parse(q.aggregation.as_deref()),
        }
    }
}

#[utoipa::path(operation_id = "telemetry_query_metrics", post, path = "/api/v1/metrics/query", tag = "metrics", security(("bearer" = []), ("api_key" = [])), request_body = RangeQuery, responses((status = 200, description = "Prometheus matrix", body = crate::http::schemas::MatrixResponse), (status = 400, description = "Invalid input", body = ErrorResponse), (status = 401, description = "Missing or invalid credentials", body = ErrorResponse), (status = 403, description = "Not allowed", body = ErrorResponse)))]
pub async fn query_metrics(
    State(state): State<AppState>,
    _: AtLeastViewer,
    ctx: RequestContext,
    Json(q): Json<RangeQuery>,
) -> Result<Response, HttpError> {
    // A query is a read: it changes nothing, so it leaves no audit row.
    ctx.audit.mark_handled();
    let result = samples::query(state.db.conn(), q.into()).await?;
    // Sized up front: an all-series answer runs to megabytes, grown by doubling otherwise.
    let points: usize = result.iter().map(|s| s.values.len()).sum();
    let mut body = Vec::with_capacity(64 + result.len() * 128 + points * 32);
    serde_json::to_writer(&mut body, &crate::http::prometheus::matrix(result))
        .map_err(|e| AppError::Internal(e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_come_as_names_or_syslog_severities() {
        assert_eq!(level_of(&json!("WARN")), Ok(Level::Warning));
        assert_eq!(level_of(&json!(3)), Ok(Level::Error));
        assert_eq!(level_of(&json!("0")), Ok(Level::Emergency));
        assert_eq!(level_of(&json!(8)), Err("syslog severity 8 is not 0-7".to_owned()));
        for bad in [json!(3.5), json!(-1), json!(true), json!(["info"])] {
            assert_eq!(level_of(&bad), Err(logs::LEVEL_FORMAT.to_owned()), "{bad}");
        }
        assert!(level_of(&json!("loud")).is_err());
    }

    #[test]
    fn times_come_as_rfc3339_or_unix_seconds() {
        assert_eq!(time_of(&json!("2026-11-25T10:30:45.123456Z")), Ok(1_795_602_645_123_456));
        assert_eq!(time_of(&json!(1_795_602_645.5)), Ok(1_795_602_645_500_000));
        assert_eq!(time_of(&json!("1795602645")), Ok(1_795_602_645_000_000));
        assert!(time_of(&json!("yesterday")).is_err());
        assert_eq!(time_of(&json!(-5)), Err("is out of range".to_owned()));
        assert_eq!(time_of(&json!(null)), Err(time::TIME_FORMAT.to_owned()));
        assert_eq!(time_of(&json!({"at": 5})), Err(time::TIME_FORMAT.to_owned()));
    }

    #[test]
    fn steps_come_as_seconds_or_durations() {
        assert_eq!(step_of(&json!(60)), Ok(60_000_000));
        assert_eq!(step_of(&json!("60s")), Ok(60_000_000));
        assert_eq!(step_of(&json!("5m")), Ok(300_000_000));
        assert_eq!(step_of(&json!("1h")), Ok(3_600_000_000));
        assert_eq!(step_of(&json!("250ms")), Ok(250_000));
        assert_eq!(step_of(&json!("15")), Ok(15_000_000));
        for bad in [json!(0), json!("-5s"), json!("5 parsecs"), json!(null), json!("")] {
            assert!(step_of(&bad).is_err(), "{bad}");
        }
    }
}
