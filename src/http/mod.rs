//! The HTTP transport: extractors, middleware and handlers. Routes live in `router.rs`.

pub mod audit;
pub mod auth;
pub mod budget;
pub mod context;
pub mod elastic;
pub mod error;
pub mod extract;
pub mod health;
pub mod ingest_auth;
pub mod loki;
pub mod middleware;
pub mod openapi;
pub mod otlp;
pub mod pagination;
pub mod plain_text;
pub mod principal;
pub mod prometheus;
pub mod promql_api;
pub mod remote_write;
pub mod schemas;
pub mod sources;
pub mod status;
pub mod strict;
pub mod telemetry;
pub mod timeout;
pub mod users;

/// 201 Created with `Location` and the new resource as the body.
pub fn created(location: String, body: impl serde::Serialize) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut response = (axum::http::StatusCode::CREATED, axum::Json(body)).into_response();
    if let Ok(value) = location.parse() {
        response.headers_mut().insert(axum::http::header::LOCATION, value);
    }
    response
}
