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

use crate::{error::FieldError, http::pagination::MAX_LIMIT};

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
                       every response carries X-Correlation-ID. No string in a JSON body may hold \
                       U+0000 (such a body is answered 400).",
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

/// Completes what the handlers' annotations cannot say: what the shared layers answer
/// ([`shared_layers`]), a source create's required fields ([`source_create`]) and the
/// request rules of [`strict`](crate::http::strict) (keys may live `api_key_max_days`).
pub fn complete(doc: &mut serde_json::Value, api_key_max_days: u32) {
    crate::http::strict::requests(doc, api_key_max_days);
    shared_layers(doc);
    source_create(doc);
}

/// An operation with a JSON body can also answer 400, 413 and 415 (the body extractor's),
/// one with query parameters 400, and `limit`/`offset` carry the bounds `page` enforces.
fn shared_layers(doc: &mut serde_json::Value) {
    use serde_json::{Value, json};
    let error = |description: &str| {
        json!({
            "description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
        })
    };
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else { return };
    for operation in paths.values_mut().filter_map(Value::as_object_mut).flat_map(|item| item.values_mut()) {
        let json_body = operation.pointer("/requestBody/content/application~1json").is_some();
        let mut query = false;
        for parameter in operation.get_mut("parameters").and_then(Value::as_array_mut).into_iter().flatten() {
            if parameter["in"] != "query" {
                continue;
            }
            query = true;
            let bounds = match parameter["name"].as_str() {
                Some("limit") => json!({"minimum": 1, "maximum": MAX_LIMIT}),
                Some("offset") => json!({"minimum": 0, "maximum": i64::MAX}),
                _ => continue,
            };
            if let (Some(schema), Value::Object(bounds)) = (parameter["schema"].as_object_mut(), bounds) {
                schema.extend(bounds);
            }
        }
        let Some(responses) = operation.get_mut("responses").and_then(Value::as_object_mut) else { continue };
        if json_body || query {
            responses.entry("400").or_insert_with(|| error("Invalid input"));
        }
        if json_body {
            responses.entry("413").or_insert_with(|| error("The body is over the size limit"));
            responses.entry("415").or_insert_with(|| error("The body is not application/json"));
        }
    }
}

/// One schema, `SourceInput`, serves a source's create and its partial update; a create
/// needs some fields as well, present and not null.
fn source_create(doc: &mut serde_json::Value) {
    use crate::service::sources::SourceInput;
    let create = doc.pointer_mut("/paths/~1api~1v1~1sources/post/requestBody/content/application~1json/schema");
    if let Some(schema) = create {
        let required = SourceInput::REQUIRED_ON_CREATE;
        let strings: serde_json::Map<_, _> =
            required.iter().map(|field| ((*field).to_owned(), serde_json::json!({"type": "string"}))).collect();
        *schema = serde_json::json!({
            "allOf": [{"$ref": "#/components/schemas/SourceInput"}],
            "required": required,
            "properties": strings,
        });
    }
}

/// The rendered document, built once with the router.
#[derive(Clone, Debug)]
pub struct OpenApiJson(pub std::sync::Arc<String>);

#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "This document", content_type = "application/json", body = Object)))]
pub async fn openapi_json(Extension(doc): Extension<OpenApiJson>) -> Response {
    let mut response = doc.0.as_str().to_owned().into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
