//! Every HTTP route of the service, in one place, and the layers each passes through.

use std::time::Duration;

use axum::{
    Router,
    extract::DefaultBodyLimit,
    http::{HeaderName, HeaderValue, Method, StatusCode},
    middleware,
    routing::{delete, get, post},
};
use tower::ServiceBuilder;
use tower_http::{
    catch_panic::CatchPanicLayer,
    cors::{AllowHeaders, AllowMethods, AllowOrigin, Any, CorsLayer},
    timeout::{RequestBodyTimeoutLayer, TimeoutLayer},
};

use crate::{
    config::CorsOrigins,
    error::AppError,
    http::{audit, auth, health, middleware::X_CORRELATION_ID, sources, status, telemetry, users},
    state::AppState,
};

/// How long a request body may go without sending a byte.
const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The whole HTTP API.
pub fn router(state: AppState) -> Router {
    let routes = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/livez", get(health::livez))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .nest("/api/v1", api_v1());
    with_layers(routes, state)
}

/// `/api/v1`: what needs credentials says so in its handler's arguments (`Principal`).
fn api_v1() -> Router<AppState> {
    Router::new()
        .route("/auth/login", post(auth::login))
        .route("/auth/refresh", post(auth::refresh))
        .route("/auth/verify", get(auth::verify))
        .route("/auth/logout", post(auth::logout))
        .route("/auth/me", get(auth::me))
        .route("/auth/change-password", post(auth::change_password))
        .route("/auth/api-keys", get(auth::list_api_keys).post(auth::create_api_key))
        .route("/auth/api-keys/{id}", delete(auth::delete_api_key))
        .route("/users", get(users::list).post(users::create))
        .route("/users/{id}", get(users::get).put(users::update).delete(users::delete))
        .route("/roles", get(users::roles))
        .route("/audit", get(audit::list))
        .route("/audit/verify", get(audit::verify))
        .route("/status", get(status::status))
        .route("/admin/config", get(status::get_config).put(status::put_config))
        .route("/sources", get(sources::list).post(sources::create))
        .route("/sources/{id}", get(sources::get).put(sources::update).delete(sources::delete))
        .route("/sources/{id}/keys", get(sources::list_keys).post(sources::create_key))
        .route("/sources/{id}/keys/{key_id}", delete(sources::delete_key))
        .route("/logs", get(telemetry::query_logs).post(telemetry::ingest_logs))
        .route("/metrics", get(telemetry::list_metrics).post(telemetry::ingest_metrics))
        .route("/metrics/query", post(telemetry::query_metrics))
}

/// Adds the 404 fallback and the layers every request passes through (outermost first):
/// correlation id, error body, log line and metrics; panic catcher; request timeout;
/// body idle timeout; CORS; body size limit. Public so tests can put probe routes
/// (a handler that panics, one that sleeps) behind exactly the production stack.
pub fn with_layers(routes: Router<AppState>, state: AppState) -> Router {
    routes
        .fallback(not_found)
        .layer(
            ServiceBuilder::new()
                .layer(middleware::from_fn_with_state(state.clone(), crate::http::middleware::observe))
                .layer(CatchPanicLayer::new())
                .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, state.config.request_timeout))
                .layer(RequestBodyTimeoutLayer::new(BODY_IDLE_TIMEOUT))
                .layer(cors(&state.config.cors_origins))
                .layer(DefaultBodyLimit::max(state.config.max_body_bytes)),
        )
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> AppError {
    AppError::NotFound(format!("Resource not found: {}", uri.path()))
}

/// `*` allows any origin without credentials; a list allows those origins with them.
fn cors(origins: &CorsOrigins) -> CorsLayer {
    let base = CorsLayer::new().expose_headers([X_CORRELATION_ID]).max_age(Duration::from_secs(600));
    match origins {
        CorsOrigins::Any => base
            .allow_origin(Any)
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::OPTIONS])
            .allow_headers(Any),
        CorsOrigins::List(list) => base
            .allow_origin(AllowOrigin::list(list.iter().filter_map(|o| HeaderValue::from_str(o).ok())))
            .allow_methods(AllowMethods::mirror_request())
            .allow_headers(AllowHeaders::list([
                HeaderName::from_static("authorization"),
                HeaderName::from_static("content-type"),
                HeaderName::from_static("x-api-key"),
                X_CORRELATION_ID,
            ]))
            .allow_credentials(true),
    }
}
