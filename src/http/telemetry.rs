//! `/api/v1/logs` and `/api/v1/metrics`: ingest (an ingest key of the source, or
//! maintainer+) and reads (viewer+; ingest keys can never read).

use crate::http::openapi::ErrorResponse;
use axum::{
    extract::{FromRequestParts, State},
    http::{HeaderMap, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::json;

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
        logs::{self, Cursor, LogFilter, LogInput},
        samples::{self, RangeQuery, SampleInput},
    },
    state::AppState,
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

#[derive(Deserialize, utoipa::ToSchema)]
pub struct LogBatch {
    source_id: String,
    #[schema(min_items = 1, max_items = 10000)]
    logs: Vec<LogInput>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct IngestQuery {
    source_id: Option<String>,
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
fn parse_logs(headers: &HeaderMap, query: IngestQuery, body: &[u8]) -> Result<(String, Vec<LogInput>), HttpError> {
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
    let accepted = logs::ingest(&state.db, &source.id, entries).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(json!({ "accepted": accepted }))).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    source_id: Option<String>,
    level: Option<String>,
    since: Option<String>,
    until: Option<String>,
    q: Option<String>,
    limit: Option<u64>,
    cursor: Option<String>,
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

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricBatch {
    source_id: String,
    #[schema(min_items = 1, max_items = 10000)]
    metrics: Vec<SampleInput>,
}

#[utoipa::path(operation_id = "telemetry_ingest_metrics", post, path = "/api/v1/metrics", tag = "metrics", security(("bearer" = []), ("api_key" = [])), request_body = MetricBatch, responses((status = 202, body = crate::http::schemas::Accepted), (status = 400, description = "Invalid input", body = ErrorResponse), (status = 401, description = "Missing or invalid credentials", body = ErrorResponse), (status = 403, description = "Not allowed", body = ErrorResponse), (status = 404, description = "Not found", body = ErrorResponse), (status = 413, body = ErrorResponse)))]
pub async fn ingest_metrics(
    State(state): State<AppState>,
    ingestor: Ingestor,
    ctx: RequestContext,
    Json(batch): Json<MetricBatch>,
) -> Result<Response, HttpError> {
    let source = ingestor.authorize(state.db.conn(), &batch.source_id, ctx.client_ip).await?;
    let accepted = samples::ingest(&state.db, &source.id, batch.metrics).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(json!({ "accepted": accepted }))).into_response())
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

#[utoipa::path(operation_id = "telemetry_query_metrics", post, path = "/api/v1/metrics/query", tag = "metrics", security(("bearer" = []), ("api_key" = [])), request_body = RangeQuery, responses((status = 200, description = "Prometheus matrix", body = crate::http::schemas::MatrixResponse), (status = 400, description = "Invalid input", body = ErrorResponse), (status = 401, description = "Missing or invalid credentials", body = ErrorResponse), (status = 403, description = "Not allowed", body = ErrorResponse)))]
pub async fn query_metrics(
    State(state): State<AppState>,
    _: AtLeastViewer,
    ctx: RequestContext,
    Json(q): Json<RangeQuery>,
) -> Result<Response, HttpError> {
    // A query is a read: it changes nothing, so it leaves no audit row.
    ctx.audit.mark_handled();
    let result = samples::query(state.db.conn(), q).await?;
    // Sized up front: an all-series answer runs to megabytes, grown by doubling otherwise.
    let points: usize = result.iter().map(|s| s.values.len()).sum();
    let mut body = Vec::with_capacity(64 + result.len() * 128 + points * 32);
    serde_json::to_writer(&mut body, &crate::http::prometheus::matrix(result))
        .map_err(|e| AppError::Internal(e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}
