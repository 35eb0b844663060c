//! What every request passes through: a correlation id, the one error body, security
//! headers, one JSON log line and the request metrics.

use std::{
    net::{IpAddr, SocketAddr},
    time::Instant,
};

use axum::{
    body::Body,
    extract::{ConnectInfo, MatchedPath, Request, State},
    http::{HeaderValue, Method, Response, StatusCode, header},
    middleware::Next,
    response::IntoResponse,
};

use crate::{
    error::{AppError, NUL_IN_TEXT},
    http::context::{AuditSlot, CorrelationId, X_CORRELATION_ID, correlation_id},
    http::error::{ErrorBody, ErrorInfo, default_message},
    http::plain_text::ProtocolBody,
    http::{elastic, promql_api},
    metrics::UNMATCHED_ENDPOINT,
    service::audit::{self, AuditEntry, AuditMeta, AuditStatus, Plane},
    state::AppState,
};

/// The routes (of `router.rs`) of the data plane: ingest, and the metric query sent as
/// POST; so are all routes under `/elastic` (`elastic::serves`: `_bulk` and the calls
/// agents make before it) and Prometheus' query API (`promql_api::serves`, whose
/// queries clients send as POST). Every other route changes the control plane. The audit policy
/// (`audit::audits_refusal`) reads it.
const DATA_PLANE: [&str; 10] = [
    "/api/v1/logs",
    "/api/v1/metrics",
    "/api/v1/metrics/query",
    crate::http::remote_write::WRITE_PATH,
    crate::http::remote_write::PUSH_PATH,
    crate::http::loki::PUSH_PATH,
    crate::http::otlp::PATHS[0],
    crate::http::otlp::PATHS[1],
    crate::http::otlp::PATHS[2],
    crate::http::otlp::PATHS[3],
];

/// The plane of a matched route template.
pub fn plane(template: &str) -> Plane {
    if DATA_PLANE.contains(&template) || elastic::serves(template) || promql_api::serves(template) {
        Plane::Data
    } else {
        Plane::Control
    }
}

/// The outermost layer of every route (and of the fallback).
pub async fn observe(State(state): State<AppState>, mut request: Request, next: Next) -> Response<Body> {
    let started = Instant::now();
    let id = correlation_id(&request);
    request.extensions_mut().insert(CorrelationId(id.clone()));
    let method = request.method().clone();
    let changes_state = matches!(method, Method::POST | Method::PUT | Method::PATCH | Method::DELETE);
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let endpoint = matched.as_ref().map_or(UNMATCHED_ENDPOINT, MatchedPath::as_str);
    let plane = matched.as_ref().map(|_| plane(endpoint));
    // Only state-changing requests can be audited; a read's extractors write to a slot of
    // their own that nobody reads.
    let audit_slot = changes_state.then(AuditSlot::default);
    if let Some(slot) = &audit_slot {
        request.extensions_mut().insert(slot.clone());
    }
    let uri = request.uri().clone();
    let path = uri.path();
    let client_ip = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip());

    // No stored text can hold a NUL (PostgreSQL refuses it; SQLite's string functions stop
    // at it), so a path or query with one is refused here, the same on every database.
    let mut response = if uri.path_and_query().is_some_and(|pq| pq.as_str().contains("%00")) {
        AppError::Invalid(NUL_IN_TEXT.to_owned()).into_response()
    } else {
        next.run(request).await
    };

    let status = response.status();
    if let Some(slot) = audit_slot.filter(|slot| !slot.handled())
        && let user_id = slot.user_id()
        && audit::audits_refusal(plane, user_id.as_deref())
    {
        let meta = AuditMeta { user_id, client_ip: client_ip.map(|ip| ip.to_string()), correlation_id: id.to_string() };
        audit_request(&state, &meta, method.as_str(), endpoint, path, status.as_u16()).await;
    }
    if status.is_client_error() || status.is_server_error() {
        response = render_error(response, &id, method.as_str(), path);
    }
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&id) {
        headers.insert(X_CORRELATION_ID, value);
    }
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));

    let elapsed = started.elapsed().as_secs_f64();
    state.metrics.observe_request(endpoint, method_label(&method), status.as_u16(), elapsed);
    let client_ip = ClientIp(client_ip);
    macro_rules! log_request {
        ($level:ident) => {
            tracing::$level!(
                event = "request_completed",
                correlation_id = &*id,
                method = method.as_str(),
                path = path,
                status_code = status.as_u16(),
                duration_seconds = elapsed,
                client_ip = %client_ip,
            )
        };
    }
    if status.is_server_error() {
        log_request!(error);
    } else if status.is_client_error() {
        log_request!(warn);
    } else {
        log_request!(info);
    }
    response
}

/// The outermost layer while the service starts (`health::starting_router`), before there
/// is a state: the correlation id, the error body, the security header and the log line.
pub async fn observe_starting(request: Request, next: Next) -> Response<Body> {
    let started = Instant::now();
    let id = correlation_id(&request);
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let client_ip = ClientIp(request.extensions().get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip()));
    let mut response = next.run(request).await;
    let status = response.status();
    if status.is_client_error() || status.is_server_error() {
        response = render_error(response, &id, method.as_str(), &path);
    }
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&id) {
        headers.insert(X_CORRELATION_ID, value);
    }
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    tracing::info!(
        event = "request_completed",
        correlation_id = &*id,
        method = method.as_str(),
        path,
        status_code = status.as_u16(),
        duration_seconds = started.elapsed().as_secs_f64(),
        client_ip = %client_ip,
        starting = true,
    );
    response
}

/// The `method` label of the request metrics: the standard methods by name, any other
/// (clients may send any token) as `other`, so the label's values stay a fixed set.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// The client's address in the request log line, `unknown` when there is none.
struct ClientIp(Option<IpAddr>);

impl std::fmt::Display for ClientIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(ip) => ip.fmt(f),
            None => f.write_str("unknown"),
        }
    }
}

/// The audit row of a refused control-plane request (the audit policy: `audit::audits_refusal`):
/// action `METHOD /route/{template}`.
async fn audit_request(state: &AppState, meta: &AuditMeta, method: &str, endpoint: &str, path: &str, status: u16) {
    let template: Vec<&str> = endpoint.split('/').collect();
    let resource_type = template.get(3).copied().unwrap_or(endpoint);
    let resource_id =
        template.iter().position(|segment| segment.starts_with('{')).and_then(|at| path.split('/').nth(at));
    let entry = AuditEntry::new(&format!("{method} {endpoint}"), resource_type, resource_id, audit_status(status));
    if let Err(err) = audit::record(state.db.conn(), meta, entry).await {
        tracing::error!(event = "audit_write_failed", correlation_id = %meta.correlation_id, error = %err);
    }
}

/// How a refused request ended, for its audit row: denied for lack of credentials or
/// rights (401, 403, 429), else a failure.
fn audit_status(status: u16) -> AuditStatus {
    match status {
        200..=399 => AuditStatus::Success,
        401 | 403 | 429 => AuditStatus::Denied,
        _ => AuditStatus::Failure,
    }
}

/// Gives an error response our JSON body, keeping its status and headers (`Allow`,
/// `WWW-Authenticate`, `Retry-After`), or under `/elastic` Elasticsearch's error body,
/// under `/prometheus/api/v1` Prometheus'. A
/// JSON body written on purpose by a handler (e.g. `/healthz` answering 503), and a
/// protocol's own error form, are left alone.
fn render_error(response: Response<Body>, id: &str, method: &str, path: &str) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    let info = parts.extensions.remove::<ErrorInfo>();
    if parts.extensions.get::<ProtocolBody>().is_some() {
        if let Some(cause) = info.and_then(|info| info.internal_cause) {
            tracing::error!(event = "internal_error", correlation_id = id, error = %cause);
        }
        return Response::from_parts(parts, body);
    }
    let is_json =
        parts.headers.get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if info.is_none() && is_json {
        return Response::from_parts(parts, body);
    }
    let status = parts.status;
    let (message, details) = match info {
        Some(info) => {
            if let Some(cause) = &info.internal_cause {
                tracing::error!(event = "internal_error", correlation_id = id, error = %cause);
            }
            (info.message, info.details)
        }
        None => (default_message(status, method, path), Vec::new()),
    };
    // A protocol's routes answer errors in the protocol's own form, whichever layer
    // refused the request.
    if elastic::serves(path) {
        return elastic::render_error(parts, &message);
    }
    if promql_api::serves(path) {
        let kind = promql_api::ErrorType::of_status(status);
        return promql_api::render::error_response(parts, kind, &message);
    }
    let body = ErrorBody {
        error: status.canonical_reason().unwrap_or("Error"),
        message: &message,
        correlation_id: id,
        status_code: status.as_u16(),
        details: &details,
    };
    let bytes = match serde_json::to_vec(&body) {
        Ok(bytes) => bytes,
        Err(_) => return Response::from_parts(parts, Body::empty()),
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let mut response = Response::from_parts(parts, Body::from(bytes));
    if status == StatusCode::UNAUTHORIZED && !response.headers().contains_key(header::WWW_AUTHENTICATE) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}
