//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` annotations
//! and the request/response types, collected by the same router that serves them
//! (`router.rs` registers every API route through `utoipa_axum::routes!`).

use axum::{
    Extension,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::{
    Modify, OpenApi, ToSchema,
    openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
};

use crate::error::FieldError;

/// The error body of every error response.
#[derive(Serialize, ToSchema)]
#[allow(dead_code, reason = "documentation schema; the body is rendered by the middleware")]
pub struct ErrorResponse {
    /// The HTTP reason phrase.
    error: String,
    message: String,
    correlation_id: String,
    status_code: u16,
    /// Present on validation errors (400).
    details: Option<Vec<FieldError>>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "KillKrill backend",
        description = "Centralized logs and metrics. Errors always have the ErrorResponse body; \
                       every response carries X-Correlation-ID.",
        license(name = "AGPL-3.0-only"),
    ),
    modifiers(&SecuritySchemes),
    components(schemas(ErrorResponse, FieldError)),
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
        components
            .add_security_scheme("api_key", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))));
    }
}

/// The rendered document, built once with the router.
#[derive(Clone, Debug)]
pub struct OpenApiJson(pub std::sync::Arc<String>);

#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "This document", content_type = "application/json")))]
pub async fn openapi_json(Extension(doc): Extension<OpenApiJson>) -> Response {
    let mut response = doc.0.as_str().to_owned().into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
