//! Every HTTP route of the service, in one place, and the layers each passes through.

use std::{sync::Arc, time::Duration};

use axum::{
    Extension, Router,
    extract::DefaultBodyLimit,
    http::{HeaderName, HeaderValue, Method, StatusCode},
    middleware,
};
use tower::ServiceBuilder;
use tower_http::{
    catch_panic::CatchPanicLayer,
    cors::{AllowHeaders, AllowMethods, AllowOrigin, Any, CorsLayer},
    timeout::RequestBodyTimeoutLayer,
};
use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    config::CorsOrigins,
    error::AppError,
    http::{
        audit, auth,
        context::X_CORRELATION_ID,
        elastic, health, loki,
        openapi::{self, ApiDoc, OpenApiJson},
        otlp, promql_api, remote_write, sources, status, telemetry,
        timeout::RequestTimeoutLayer,
        users,
    },
    state::AppState,
};

/// How long a request body may go without sending a byte (or half the request timeout, if
/// shorter, so that a stalled body is named as such before the whole request times out):
/// then the request is answered 408.
const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The whole HTTP API. Every route is registered with `routes!`, which also collects its
/// `#[utoipa::path]` into the OpenAPI document served at `/api/v1/openapi.json`.
pub fn router(state: AppState) -> Router {
    let (routes, doc) = api().split_for_parts();
    let mut doc = serde_json::to_value(&doc).unwrap_or_default();
    openapi::complete(&mut doc, state.config.api_key_max_days);
    let doc = OpenApiJson(Arc::new(serde_json::to_string_pretty(&doc).unwrap_or_else(|_| "{}".to_owned())));
    // The agents' protocols and Prometheus' query API answer in their own forms and are
    // described in docs/API.md, not in the OpenAPI document of the JSON API.
    let routes = routes
        .layer(Extension(doc))
        .merge(remote_write::router())
        .merge(promql_api::router())
        .merge(loki::router())
        .merge(otlp::router())
        .merge(elastic::router());
    with_layers(routes, state)
}

/// The API's routes and their OpenAPI description, built by the same calls.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::livez))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .routes(routes!(openapi::openapi_json))
        .routes(routes!(auth::login))
        .routes(routes!(auth::refresh))
        .routes(routes!(auth::verify))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::me))
        .routes(routes!(auth::change_password))
        .routes(routes!(auth::list_api_keys, auth::create_api_key))
        .routes(routes!(auth::delete_api_key))
        .routes(routes!(users::list, users::create))
        .routes(routes!(users::get, users::update, users::delete))
        .routes(routes!(users::roles))
        .routes(routes!(audit::list))
        .routes(routes!(audit::verify))
        .routes(routes!(audit::export))
        .routes(routes!(status::license))
        .routes(routes!(status::status))
        .routes(routes!(status::get_config, status::put_config))
        .routes(routes!(sources::list, sources::create))
        .routes(routes!(sources::get, sources::update, sources::delete))
        .routes(routes!(sources::list_keys, sources::create_key))
        .routes(routes!(sources::delete_key))
        .routes(routes!(telemetry::query_logs, telemetry::ingest_logs))
        .routes(routes!(telemetry::list_metrics, telemetry::ingest_metrics))
        .routes(routes!(telemetry::query_metrics))
}

/// Adds the 404 fallback and the layers every request passes through (outermost first):
/// correlation id, error body, log line and metrics; the in-flight body budget (and the
/// body size limit for a declared length); panic catcher; request timeout;
/// body idle timeout; CORS; body size limit. Public so tests can put probe routes
/// (a handler that panics, one that sleeps) behind exactly the production stack.
pub fn with_layers(routes: Router<AppState>, state: AppState) -> Router {
    routes
        .fallback(not_found)
        .layer(
            ServiceBuilder::new()
                .layer(middleware::from_fn_with_state(state.clone(), crate::http::middleware::observe))
                .layer(middleware::from_fn_with_state(state.clone(), crate::http::budget::admit))
                .layer(CatchPanicLayer::new())
                .layer(RequestTimeoutLayer::new(state.config.request_timeout, StatusCode::REQUEST_TIMEOUT))
                .layer(RequestBodyTimeoutLayer::new(BODY_IDLE_TIMEOUT.min(state.config.request_timeout / 2)))
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
