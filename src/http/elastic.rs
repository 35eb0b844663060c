//! Elasticsearch-compatible ingest under `/elastic`, so that an agent's "Elasticsearch URL"
//! can be `http://host:5000/elastic`: `_bulk`, and the calls agents make before it (the
//! version on `/`, the license, cluster health, templates, ILM policies, pipelines).
//!
//! Every answer, errors included, carries `X-Elastic-Product: Elasticsearch` (the official
//! clients refuse a server without it) and errors take Elasticsearch's form,
//! `{"error":{"root_cause":[…],"type","reason"},"status"}`, never the API's error body.
//! Each endpoint checks the credential as `_bulk` does: an agent configured wrongly learns
//! it at start-up. The wire format and the document mapping are `protocol::elastic`'s.

use std::{borrow::Cow, time::Instant};

use axum::{
    Router,
    body::Bytes,
    extract::{Path, RawQuery, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header, response::Parts},
    middleware::map_response,
    response::{IntoResponse, Response},
    routing::{any, get, post},
};
use serde_json::{Value, json};

use crate::{
    budget,
    error::AppError,
    http::{
        context::RequestContext,
        error::{HttpError, status_of},
        extract::Body,
        ingest_auth::ProtocolSource,
        plain_text::ProtocolBody,
    },
    metrics::IngestKind,
    protocol::{
        codec::{self, CodecError},
        elastic::{self, Action, BulkAnswer, Failure, Item},
    },
    service::logs::{self, NewLog},
    state::AppState,
};

/// The path prefix of these routes.
pub const PREFIX: &str = "/elastic";

/// The Elasticsearch version `/` reports: the last 8.x line, so that 8.x agents that
/// refuse an older server (Filebeat) accept it, and those that pick their request format
/// by major version (Vector) use the 8.x format.
const VERSION: &str = "8.19.0";
const LUCENE_VERSION: &str = "9.12.2";
const CLUSTER_NAME: &str = "killkrill";
/// Stable across restarts and replicas: they are one "cluster" to an agent.
const CLUSTER_UUID: &str = "a2lsbGtyaWxsLWVsYXN0";

const X_ELASTIC_PRODUCT: &str = "x-elastic-product";

/// The routes under `/elastic`, with the product header on every answer.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/elastic", get(root))
        .route("/elastic/", get(root))
        .route("/elastic/_license", get(license))
        .route("/elastic/_xpack", get(xpack))
        .route("/elastic/_cluster/health", get(cluster_health))
        .route("/elastic/_cat/health", get(cat_health))
        .route("/elastic/_nodes", get(nodes))
        .route("/elastic/_nodes/{*filter}", get(nodes))
        .route("/elastic/_index_template/{name}", any(setting))
        .route("/elastic/_component_template/{name}", any(setting))
        .route("/elastic/_template/{name}", any(setting))
        .route("/elastic/_ilm/policy/{name}", any(setting))
        .route("/elastic/_ingest/pipeline/{id}", any(setting))
        .route("/elastic/_data_stream/{name}", any(setting))
        .route("/elastic/_bulk", post(bulk).put(bulk))
        .route("/elastic/{index}/_bulk", post(bulk_into).put(bulk_into))
        .route("/elastic/{index}/_doc", post(one_document))
        .route("/elastic/{index}/_doc/{id}", post(one_document).put(one_document))
        .route("/elastic/{index}/_create/{id}", post(one_document).put(one_document))
        .route("/elastic/{index}", get(index).put(create_index))
        .layer(map_response(with_product))
}

/// Whether `path` (or a route template) is under `/elastic`: its errors take
/// Elasticsearch's form, and its routes are all data plane (ingest, and the calls agents
/// make before it).
pub fn serves(path: &str) -> bool {
    path.strip_prefix(PREFIX).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

async fn with_product(mut response: Response) -> Response {
    response.headers_mut().insert(X_ELASTIC_PRODUCT, HeaderValue::from_static("Elasticsearch"));
    response
}

/// The `error.type` of an error answered with `status`.
fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 | 403 => "security_exception",
        404 => "resource_not_found_exception",
        408 => "timeout_exception",
        413 => "content_too_long_exception",
        415 => "media_type_header_exception",
        429 => "es_rejected_execution_exception",
        503 => "unavailable_shards_exception",
        400..=499 => elastic::ILLEGAL_ARGUMENT,
        _ => "exception",
    }
}

/// A whole request refused, in Elasticsearch's form (with its `WWW-Authenticate` on 401).
fn refuse(failure: &Failure) -> Response {
    let status = StatusCode::from_u16(failure.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = (status, [(header::CONTENT_TYPE, "application/json")], failure.body()).into_response();
    response.extensions_mut().insert(ProtocolBody);
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"security\", ApiKey"));
    }
    response
}

/// A service error in Elasticsearch's form. An internal cause is logged, never sent.
fn app_error(err: AppError, ctx: &RequestContext) -> Response {
    let status = status_of(&err);
    let reason = match &err {
        AppError::Validation(details) => {
            details.iter().map(|d| format!("{}: {}", d.field, d.message)).collect::<Vec<_>>().join("; ")
        }
        AppError::Internal(cause) => {
            tracing::error!(event = "internal_error", correlation_id = %ctx.correlation_id, error = %cause);
            "An internal error occurred".to_owned()
        }
        other => other.to_string(),
    };
    let mut response = refuse(&Failure { status: status.as_u16(), kind: error_type(status), reason });
    if let AppError::TooManyRequests { retry_after_seconds } = err {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_seconds));
    }
    response
}

/// An error of the HTTP layer (body too large or too slow) in Elasticsearch's form.
fn http_error(err: HttpError, ctx: &RequestContext) -> Response {
    match err {
        HttpError::App(err) => app_error(err, ctx),
        HttpError::UnsupportedMediaType(reason) => {
            refuse(&Failure { status: 415, kind: error_type(StatusCode::UNSUPPORTED_MEDIA_TYPE), reason })
        }
        HttpError::RequestTimeout(reason) => {
            refuse(&Failure { status: 408, kind: error_type(StatusCode::REQUEST_TIMEOUT), reason })
        }
    }
}

/// Gives an error response that has no Elasticsearch body yet (from the framework or an
/// outer layer: 404, 405, 408, 413 before the handler) that body and the product header,
/// keeping its status and headers. Called by the request middleware for paths this
/// module [`serves`].
pub fn render_error(mut parts: Parts, reason: &str) -> Response {
    let status = parts.status;
    let failure = Failure { status: status.as_u16(), kind: error_type(status), reason: reason.to_owned() };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.insert(X_ELASTIC_PRODUCT, HeaderValue::from_static("Elasticsearch"));
    if status == StatusCode::UNAUTHORIZED {
        parts.headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"security\", ApiKey"));
    }
    Response::from_parts(parts, axum::body::Body::from(failure.body()))
}

fn json_answer(body: &Value) -> Response {
    axum::Json(body).into_response()
}

/// The answer to send instead when the credential of a handshake call is refused.
fn refused(source: Result<ProtocolSource, AppError>, ctx: &RequestContext) -> Option<Response> {
    source.err().map(|err| app_error(err, ctx))
}

/// `GET`/`HEAD /`: who this "cluster" is, in the form of Elasticsearch 8.
async fn root(source: Result<ProtocolSource, AppError>, ctx: RequestContext) -> Response {
    if let Some(refused) = refused(source, &ctx) {
        return refused;
    }
    json_answer(&json!({
        "name": CLUSTER_NAME,
        "cluster_name": CLUSTER_NAME,
        "cluster_uuid": CLUSTER_UUID,
        "version": {
            "number": VERSION,
            "build_flavor": "default",
            "build_type": "docker",
            "build_hash": "killkrill",
            "build_date": "2025-07-24T00:00:00.000000000Z",
            "build_snapshot": false,
            "lucene_version": LUCENE_VERSION,
            "minimum_wire_compatibility_version": "7.17.0",
            "minimum_index_compatibility_version": "7.0.0",
        },
        "tagline": "You Know, for Search",
    }))
}

/// `GET /_license`: an active basic license (Beats refuse an `oss` one, or none).
async fn license(source: Result<ProtocolSource, AppError>, ctx: RequestContext) -> Response {
    if let Some(refused) = refused(source, &ctx) {
        return refused;
    }
    json_answer(&json!({
        "license": {
            "status": "active",
            "uid": CLUSTER_UUID,
            "type": "basic",
            "issue_date": "2025-01-01T00:00:00.000Z",
            "issue_date_in_millis": 1_735_689_600_000_i64,
            "max_nodes": 1000,
            "max_resource_units": null,
            "issued_to": CLUSTER_NAME,
            "issuer": "elasticsearch",
            "start_date_in_millis": -1,
        }
    }))
}

/// `GET /_xpack`: the features Beats look for before setting up ILM.
async fn xpack(source: Result<ProtocolSource, AppError>, ctx: RequestContext) -> Response {
    if let Some(refused) = refused(source, &ctx) {
        return refused;
    }
    json_answer(&json!({
        "build": { "hash": "killkrill", "date": "2025-07-24T00:00:00.000000000Z" },
        "license": { "uid": CLUSTER_UUID, "type": "basic", "mode": "basic", "status": "active" },
        "features": {
            "ilm": { "available": true, "enabled": true },
            "security": { "available": true, "enabled": true },
        },
        "tagline": "You know, for X",
    }))
}

/// `GET /_cluster/health`: green (Vector's health check wants a 200).
async fn cluster_health(source: Result<ProtocolSource, AppError>, ctx: RequestContext) -> Response {
    if let Some(refused) = refused(source, &ctx) {
        return refused;
    }
    json_answer(&json!({
        "cluster_name": CLUSTER_NAME,
        "status": "green",
        "timed_out": false,
        "number_of_nodes": 1,
        "number_of_data_nodes": 1,
        "active_primary_shards": 0,
        "active_shards": 0,
        "relocating_shards": 0,
        "initializing_shards": 0,
        "unassigned_shards": 0,
        "delayed_unassigned_shards": 0,
        "number_of_pending_tasks": 0,
        "number_of_in_flight_fetch": 0,
        "task_max_waiting_in_queue_millis": 0,
        "active_shards_percent_as_number": 100.0,
    }))
}

/// `GET`/`HEAD /_cat/health`: one text line (rsyslog's `HEAD` wants the 200), or JSON
/// with `?format=json`.
async fn cat_health(
    source: Result<ProtocolSource, AppError>,
    ctx: RequestContext,
    RawQuery(query): RawQuery,
) -> Response {
    if let Some(refused) = refused(source, &ctx) {
        return refused;
    }
    let now = crate::time::now_seconds();
    let clock = chrono::DateTime::from_timestamp(now, 0).map(|t| t.format("%H:%M:%S").to_string()).unwrap_or_default();
    if query_param(query.as_deref(), "format").as_deref() == Some("json") {
        return json_answer(&json!([{
            "epoch": now.to_string(), "timestamp": clock, "cluster": CLUSTER_NAME, "status": "green",
            "node.total": "1", "node.data": "1", "shards": "0", "pri": "0", "relo": "0", "init": "0",
            "unassign": "0", "pending_tasks": "0", "max_task_wait_time": "-", "active_shards_percent": "100.0%",
        }]));
    }
    let line = format!("{now} {clock} {CLUSTER_NAME} green 1 1 0 0 0 0 0 0 - 100.0%\n");
    ([(header::CONTENT_TYPE, "text/plain; charset=UTF-8")], line).into_response()
}

/// `GET /_nodes[/…]`: no node addresses to sniff (clients keep the URL they were given).
async fn nodes(source: Result<ProtocolSource, AppError>, ctx: RequestContext) -> Response {
    if let Some(refused) = refused(source, &ctx) {
        return refused;
    }
    json_answer(&json!({
        "_nodes": { "total": 0, "successful": 0, "failed": 0 },
        "cluster_name": CLUSTER_NAME,
        "nodes": {},
    }))
}

/// Index templates, component templates, ILM policies, ingest pipelines and data
/// streams, which agents check and create at start-up: reads answer `{}` (found),
/// writes are acknowledged, and nothing is kept. KillKrill stores every document the
/// same way whatever its index.
async fn setting(method: Method, source: Result<ProtocolSource, AppError>, ctx: RequestContext) -> Response {
    if let Some(refused) = refused(source, &ctx) {
        return refused;
    }
    match method {
        Method::GET | Method::HEAD => json_answer(&json!({})),
        _ => json_answer(&json!({ "acknowledged": true })),
    }
}

/// `GET`/`HEAD /{index}`: every index exists, empty of settings and mappings.
async fn index(Path(name): Path<String>, source: Result<ProtocolSource, AppError>, ctx: RequestContext) -> Response {
    if let Some(refused) = refused(source, &ctx) {
        return refused;
    }
    if let Some(unknown) = not_an_index(&name, "GET") {
        return unknown;
    }
    json_answer(&json!({ name: { "aliases": {}, "mappings": {}, "settings": {} } }))
}

/// `PUT /{index}`: acknowledged (an index needs no creating).
async fn create_index(
    Path(name): Path<String>,
    source: Result<ProtocolSource, AppError>,
    ctx: RequestContext,
) -> Response {
    if let Some(refused) = refused(source, &ctx) {
        return refused;
    }
    if let Some(unknown) = not_an_index(&name, "PUT") {
        return unknown;
    }
    json_answer(&json!({ "acknowledged": true, "shards_acknowledged": true, "index": name }))
}

/// Index names never start with `_`: such a path is an Elasticsearch API KillKrill does not
/// serve (`_search`, `_mapping` …), answered as unknown rather than as an index.
fn not_an_index(name: &str, method: &str) -> Option<Response> {
    name.starts_with('_').then(|| {
        let reason = format!("no handler found for uri [{PREFIX}/{name}] and method [{method}]");
        refuse(&Failure { status: 404, kind: error_type(StatusCode::NOT_FOUND), reason })
    })
}

/// The first value of `name` in a query string.
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes()).find(|(key, _)| key == name).map(|(_, value)| value.into_owned())
}

/// `POST`/`PUT /_bulk`.
async fn bulk(
    State(state): State<AppState>,
    source: Result<ProtocolSource, AppError>,
    ctx: RequestContext,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Result<Body, HttpError>,
) -> Response {
    ingest_bulk(&state, source, &ctx, &headers, query.as_deref(), None, body).await
}

/// `POST`/`PUT /{index}/_bulk`: the index of actions that name none.
async fn bulk_into(
    State(state): State<AppState>,
    Path(index): Path<String>,
    source: Result<ProtocolSource, AppError>,
    ctx: RequestContext,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Result<Body, HttpError>,
) -> Response {
    ingest_bulk(&state, source, &ctx, &headers, query.as_deref(), Some(&index), body).await
}

/// The index and `_id` of a single-document route.
#[derive(serde::Deserialize)]
struct DocumentPath {
    index: String,
    id: Option<String>,
}

/// `POST /{index}/_doc`, and `PUT`/`POST /{index}/_doc/{id}` or `/{index}/_create/{id}`:
/// one document (rsyslog's `omelasticsearch` outside bulk mode, scripts), stored as a
/// bulk action would store it and answered as Elasticsearch answers an indexed document:
/// 201, or the refusal in its error form.
async fn one_document(
    State(state): State<AppState>,
    Path(DocumentPath { index, id }): Path<DocumentPath>,
    source: Result<ProtocolSource, AppError>,
    ctx: RequestContext,
    headers: HeaderMap,
    body: Result<Body, HttpError>,
) -> Response {
    let source = match source {
        Ok(ProtocolSource(source)) => source,
        Err(err) => return app_error(err, &ctx),
    };
    if let Some(unknown) = not_an_index(&index, "POST") {
        return unknown;
    }
    let body = match read_body(&state, &headers, body, &ctx) {
        Ok(body) => body,
        Err(refused) => return *refused,
    };
    let action =
        Action { name: "index".to_owned(), outcome: elastic::parse_document(&body, &index), index: Some(index), id };
    let answered = match store(&state, &source, vec![action]).await {
        Ok(mut answered) => answered.remove(0),
        Err(err) => return app_error(err, &ctx),
    };
    match answered.outcome {
        Ok(_) => {
            let location = format!("{PREFIX}/{}/_doc/{}", answered.index.as_deref().unwrap_or_default(), answered.id);
            let body = json!({
                "_index": answered.index,
                "_id": answered.id,
                "_version": 1,
                "result": "created",
                "_shards": { "total": 1, "successful": 1, "failed": 0 },
                "_seq_no": 0,
                "_primary_term": 1,
            });
            let mut response = (StatusCode::CREATED, axum::Json(body)).into_response();
            if let Ok(location) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            response
        }
        Err(failure) => refuse(&failure),
    }
}

/// The request body, gzip decoded within the body limit; or the refusal to answer.
fn read_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Body, HttpError>,
    ctx: &RequestContext,
) -> Result<Bytes, Box<Response>> {
    let body = body.map_err(|err| Box::new(http_error(err, ctx)))?.0;
    let encoding = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok());
    let status = |status: StatusCode, reason: String| {
        Box::new(refuse(&Failure { status: status.as_u16(), kind: error_type(status), reason }))
    };
    match codec::decode_content(&body, encoding, state.config.max_body_bytes) {
        Ok(Cow::Borrowed(_)) => Ok(body.clone()),
        Ok(Cow::Owned(decoded)) => {
            // Refused, the request is answered 503 by `http::budget`, whatever is returned here.
            budget::charge_copy(decoded.len()).map_err(|err| Box::new(app_error(err, ctx)))?;
            Ok(Bytes::from(decoded))
        }
        Err(CodecError::TooLarge(reason)) => Err(status(StatusCode::PAYLOAD_TOO_LARGE, reason)),
        Err(CodecError::Malformed(reason)) => Err(Box::new(refuse(&Failure::invalid("parse_exception", reason)))),
        Err(err @ CodecError::UnsupportedEncoding(_)) => {
            Err(status(StatusCode::UNSUPPORTED_MEDIA_TYPE, err.to_string()))
        }
    }
}

/// Reads the bulk body, stores the documents that can be stored, and answers one item
/// per action. The body is read whatever its content type (agents send `application/json`,
/// `application/x-ndjson` or the vendor types), gzip decoded within the body limit.
async fn ingest_bulk(
    state: &AppState,
    source: Result<ProtocolSource, AppError>,
    ctx: &RequestContext,
    headers: &HeaderMap,
    query: Option<&str>,
    url_index: Option<&str>,
    body: Result<Body, HttpError>,
) -> Response {
    let started = Instant::now();
    let source = match source {
        Ok(ProtocolSource(source)) => source,
        Err(err) => return app_error(err, ctx),
    };
    let body = match read_body(state, headers, body, ctx) {
        Ok(body) => body,
        Err(refused) => return *refused,
    };
    let actions = match elastic::parse_bulk(&body, url_index) {
        Ok(actions) => actions,
        Err(failure) => return refuse(&failure),
    };

    let answered = match store(state, &source, actions).await {
        Ok(answered) => answered,
        // More documents than a batch holds is invalid input, not a body over the byte
        // limit (413): the sender should split it.
        Err(AppError::TooLarge(reason)) => return refuse(&Failure::invalid(elastic::ILLEGAL_ARGUMENT, reason)),
        Err(err) => return app_error(err, ctx),
    };
    let items = answered
        .iter()
        .map(|a| Item { name: &a.name, index: a.index.as_deref(), id: &a.id, outcome: a.outcome.as_ref().copied() })
        .collect();
    let took = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let answer = BulkAnswer::new(took, items);
    let bytes = match query_param(query, "filter_path") {
        None => serde_json::to_vec(&answer),
        Some(filter) => {
            serde_json::to_value(&answer).and_then(|v| serde_json::to_vec(&elastic::filter_path(v, &filter)))
        }
    };
    match bytes {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(err) => app_error(AppError::internal(err), ctx),
    }
}

/// An action's answer: its name, index and `_id` (given, or made), and its outcome (its
/// sequence number in the batch, or why it was refused).
struct Answered {
    name: String,
    index: Option<String>,
    id: String,
    outcome: Result<u64, Failure>,
}

/// Stores the documents of `actions` that can be stored (nothing of a refused one);
/// answers each action, in order.
async fn store(
    state: &AppState,
    source: &crate::storage::entity::source::Model,
    actions: Vec<Action>,
) -> Result<Vec<Answered>, AppError> {
    let mut answered = Vec::with_capacity(actions.len());
    let mut entries = Vec::with_capacity(actions.len());
    for action in actions {
        let outcome = action.outcome.map(|document| entries.push(new_log(document))).map(|()| 0);
        let id = action.id.unwrap_or_else(elastic::new_id);
        answered.push(Answered { name: action.name, index: action.index, id, outcome });
    }
    let refused_here = answered.len() - entries.len();
    if refused_here > 0 {
        state.metrics.observe_ingest(&source.id, IngestKind::Logs, refused_here, false);
    }
    if entries.is_empty() {
        return Ok(answered);
    }
    // A document older than the source's retention is answered as created (Elasticsearch
    // has no word for "accepted, not kept"), and dropped by the service.
    let mut stored =
        logs::ingest_each(&state.db, &state.metrics, state.config.retention, source, entries).await?.into_iter();
    let mut seq_no = 0;
    for outcome in answered.iter_mut().map(|a| &mut a.outcome).filter(|outcome| outcome.is_ok()) {
        *outcome = match stored.next() {
            Some(Ok(_)) => {
                seq_no += 1;
                Ok(seq_no - 1)
            }
            Some(Err(reason)) => Err(Failure::invalid(elastic::MAPPER_PARSING, without_position(&reason))),
            None => Err(Failure::invalid(elastic::MAPPER_PARSING, "the document was not stored")),
        };
    }
    Ok(answered)
}

/// A service reason without its `logs[i].` prefixes, whose `i` counts the documents
/// stored, not the actions of the bulk body (`logs[3].message: is over …` → `message: is
/// over …`).
fn without_position(reason: &str) -> String {
    reason
        .split("; ")
        .map(|part| match part.strip_prefix("logs[").and_then(|rest| rest.split_once("].")) {
            Some((n, rest)) if n.bytes().all(|b| b.is_ascii_digit()) => rest,
            _ => part,
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn new_log(document: elastic::Document) -> NewLog {
    NewLog {
        timestamp: Ok(document.timestamp),
        level: Ok(document.level),
        message: document.message,
        hostname: document.hostname,
        application: document.application,
        labels: document.labels,
        attributes: (!document.attributes.is_empty()).then_some(Value::Object(document.attributes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_reasons_lose_the_position_in_the_stored_batch() {
        assert_eq!(
            without_position("logs[3].message: must not contain NUL characters; logs[3].labels: too many"),
            "message: must not contain NUL characters; labels: too many"
        );
        assert_eq!(without_position("logs[x].y: z"), "logs[x].y: z");
    }

    #[test]
    fn only_paths_under_the_prefix_are_served() {
        for path in ["/elastic", "/elastic/", "/elastic/_bulk", "/elastic/a/_bulk"] {
            assert!(serves(path), "{path}");
        }
        for path in ["/elasticsearch", "/api/v1/logs", "/"] {
            assert!(!serves(path), "{path}");
        }
    }
}
