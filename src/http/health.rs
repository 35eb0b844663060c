//! Probes and metrics: `/healthz` (compatibility), `/livez`, `/readyz`, `/metrics`.

use axum::{
    Router,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde::Serialize;
use serde_json::json;

use crate::{config::Environment, error::AppError, http::error::HttpError, state::AppState};

pub const SERVICE_NAME: &str = "killkrill-backend";

#[derive(Serialize, utoipa::ToSchema)]
struct Health {
    status: &'static str,
    service: &'static str,
    version: &'static str,
    timestamp: String,
    environment: &'static str,
    checks: Checks,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Checks {
    database: &'static str,
}

/// Health with the database check: 200 `healthy`, or 503 `unhealthy` naming the check.
#[utoipa::path(operation_id = "health_healthz", get, path = "/healthz", tag = "health", responses((status = 200, description = "Healthy", body = Health), (status = 503, description = "Database unavailable", body = Health)))]
pub async fn healthz(State(state): State<AppState>) -> Response {
    health(state.db.health().is_ok(), state.config.environment)
}

fn health(db_ok: bool, environment: Environment) -> Response {
    let status = if db_ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = Health {
        status: if db_ok { "healthy" } else { "unhealthy" },
        service: SERVICE_NAME,
        version: env!("CARGO_PKG_VERSION"),
        timestamp: crate::time::now_rfc3339(),
        environment: environment.as_str(),
        checks: Checks { database: check_word(db_ok) },
    };
    (status, axum::Json(body)).into_response()
}

/// Liveness: the process answers. Never touches a dependency.
#[utoipa::path(operation_id = "health_livez", get, path = "/livez", tag = "health", responses((status = 200, description = "The process answers", body = crate::http::schemas::Liveness)))]
pub async fn livez() -> Response {
    axum::Json(json!({ "status": "alive" })).into_response()
}

/// Readiness: 503 while the database is unreachable, so traffic moves elsewhere.
#[utoipa::path(operation_id = "health_readyz", get, path = "/readyz", tag = "health", responses((status = 200, description = "Ready", body = crate::http::schemas::Readiness), (status = 503, description = "Database unavailable", body = crate::http::schemas::Readiness)))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    readiness(state.db.health().is_ok())
}

fn readiness(db_ok: bool) -> Response {
    let status = if db_ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "status": if db_ok { "ready" } else { "not_ready" },
        "checks": { "database": check_word(db_ok) },
    });
    (status, axum::Json(body)).into_response()
}

/// Prometheus text format 0.0.4.
#[utoipa::path(operation_id = "health_metrics", get, path = "/metrics", tag = "health", responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> Result<Response, HttpError> {
    let text = state.metrics.render().map_err(AppError::internal)?;
    let mut response = text.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    Ok(response)
}

fn check_word(ok: bool) -> &'static str {
    if ok { "ok" } else { "unavailable" }
}

/// How long a client is told to wait before trying again while the service starts.
const STARTING_RETRY_AFTER_SECONDS: u64 = 5;

/// What the HTTP port answers until the database has answered at start-up: `/livez` 200,
/// `/readyz` and `/healthz` 503 naming the database, anything else 503 with the error body.
pub fn starting_router(environment: Environment) -> Router {
    Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(|| async { readiness(false) }))
        .route("/healthz", get(move || async move { health(false, environment) }))
        .fallback(|| async {
            let retry_after = [(header::RETRY_AFTER, HeaderValue::from(STARTING_RETRY_AFTER_SECONDS))];
            (retry_after, AppError::Unavailable(STARTING.to_owned()))
        })
        .layer(axum::middleware::from_fn(crate::http::middleware::observe_starting))
}

/// The message of every request refused while the service starts.
pub const STARTING: &str = "The service is starting: the database has not answered yet";
