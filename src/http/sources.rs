//! `/api/v1/sources` and their ingest keys. Reads need viewer, changes maintainer.

use crate::http::openapi::ErrorResponse;
use crate::service::ingest_keys::CreatedIngestKey;
use axum::{
    extract::{Path, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Deserialize;

use crate::{
    auth::{Principal, Role},
    error::{AppError, FieldError},
    http::error::HttpError,
    http::principal::AtLeastMaintainer,
    http::{
        context::RequestContext,
        extract::{Json, Query},
        pagination::{listing, page},
    },
    service::{
        ingest_keys,
        sources::{self, SourceFilter, SourceInput, SourceView},
    },
    state::AppState,
};

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(rename = "type")]
    source_type: Option<String>,
    enabled: Option<String>,
    limit: Option<u64>,
    offset: Option<u64>,
}

fn parse_bool(field: &str, value: &str) -> Result<bool, AppError> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(AppError::Validation(vec![FieldError::new(field, "must be true or false")])),
    }
}

#[utoipa::path(operation_id = "sources_list", get, path = "/api/v1/sources", tag = "sources", security(("bearer" = []), ("api_key" = [])), params(ListQuery), responses((status = 200, body = crate::http::schemas::SourceList), (status = 400, description = "Invalid input", body = ErrorResponse), (status = 401, description = "Missing or invalid credentials", body = ErrorResponse), (status = 403, description = "Not allowed", body = ErrorResponse)))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<ListQuery>,
) -> Result<Response, HttpError> {
    principal.require_role(Role::Viewer)?;
    let page = page(q.limit, q.offset)?;
    let filter = SourceFilter {
        source_type: q.source_type,
        enabled: q.enabled.as_deref().map(|v| parse_bool("enabled", v)).transpose()?,
    };
    let (items, total) = sources::list(state.db.conn(), &filter, page.limit, page.offset).await?;
    Ok(axum::Json(listing("sources", items, total, page)).into_response())
}

#[utoipa::path(operation_id = "sources_create", post, path = "/api/v1/sources", tag = "sources", security(("bearer" = []), ("api_key" = [])), request_body = SourceInput, responses((status = 201, body = SourceView, headers(("Location" = String, description = "The new source's URL"))), (status = 400, description = "Invalid input", body = ErrorResponse), (status = 401, description = "Missing or invalid credentials", body = ErrorResponse), (status = 403, description = "Not allowed", body = ErrorResponse), (status = 409, description = "Conflict", body = ErrorResponse)))]
pub async fn create(
    State(state): State<AppState>,
    AtLeastMaintainer(principal): AtLeastMaintainer,
    ctx: RequestContext,
    Json(input): Json<SourceInput>,
) -> Result<Response, HttpError> {
    let view =
        sources::create(state.db.conn(), input, &principal.user_id, &ctx.audit_meta(Some(&principal.user_id))).await?;
    ctx.audit.mark_handled();
    Ok(crate::http::created(format!("/api/v1/sources/{}", view.id), view))
}

#[utoipa::path(operation_id = "sources_get", get, path = "/api/v1/sources/{id}", tag = "sources", security(("bearer" = []), ("api_key" = [])), params(("id" = String, Path)), responses((status = 200, body = SourceView), (status = 401, description = "Missing or invalid credentials", body = ErrorResponse), (status = 403, description = "Not allowed", body = ErrorResponse), (status = 404, description = "Not found", body = ErrorResponse)))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, HttpError> {
    principal.require_role(Role::Viewer)?;
    let source = sources::find(state.db.conn(), &id).await?;
    Ok(axum::Json(SourceView::from(source)).into_response())
}

#[utoipa::path(operation_id = "sources_update", put, path = "/api/v1/sources/{id}", tag = "sources", security(("bearer" = []), ("api_key" = [])), params(("id" = String, Path)), request_body = SourceInput, responses((status = 200, body = SourceView), (status = 400, description = "Invalid input", body = ErrorResponse), (status = 401, description = "Missing or invalid credentials", body = ErrorResponse), (status = 403, description = "Not allowed", body = ErrorResponse), (status = 404, description = "Not found", body = ErrorResponse), (status = 409, description = "Conflict", body = ErrorResponse)))]
pub async fn update(
    State(state): State<AppState>,
    AtLeastMaintainer(principal): AtLeastMaintainer,
    ctx: RequestContext,
    Path(id): Path<String>,
    Json(input): Json<SourceInput>,
) -> Result<Response, HttpError> {
    let view = sources::update(state.db.conn(), &id, input, &ctx.audit_meta(Some(&principal.user_id))).await?;
    ctx.audit.mark_handled();
    Ok(axum::Json(view).into_response())
}

#[utoipa::path(operation_id = "sources_delete", delete, path = "/api/v1/sources/{id}", tag = "sources", security(("bearer" = []), ("api_key" = [])), params(("id" = String, Path)), responses((status = 204, description = "Deleted with its ingest keys, logs and metrics"), (status = 401, description = "Missing or invalid credentials", body = ErrorResponse), (status = 403, description = "Not allowed", body = ErrorResponse), (status = 404, description = "Not found", body = ErrorResponse)))]
pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    ctx: RequestContext,
    Path(id): Path<String>,
) -> Result<StatusCode, HttpError> {
    principal.require_role(Role::Maintainer)?;
    sources::delete(state.db.conn(), &state.ingest_keys, &id, &ctx.audit_meta(Some(&principal.user_id))).await?;
    ctx.audit.mark_handled();
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct KeysQuery {
    limit: Option<u64>,
    offset: Option<u64>,
}

#[utoipa::path(operation_id = "sources_list_keys", get, path = "/api/v1/sources/{id}/keys", tag = "sources", security(("bearer" = []), ("api_key" = [])), params(("id" = String, Path), KeysQuery), responses((status = 200, body = crate::http::schemas::IngestKeyList), (status = 401, description = "Missing or invalid credentials", body = ErrorResponse), (status = 403, description = "Not allowed", body = ErrorResponse), (status = 404, description = "Not found", body = ErrorResponse)))]
pub async fn list_keys(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    Query(q): Query<KeysQuery>,
) -> Result<Response, HttpError> {
    principal.require_role(Role::Maintainer)?;
    let page = page(q.limit, q.offset)?;
    let (keys, total) = ingest_keys::list(state.db.conn(), &id, page.limit, page.offset).await?;
    Ok(axum::Json(listing("keys", keys, total, page)).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    #[schema(min_length = 1, max_length = 128)]
    name: String,
}

#[utoipa::path(operation_id = "sources_create_key", post, path = "/api/v1/sources/{id}/keys", tag = "sources", security(("bearer" = []), ("api_key" = [])), params(("id" = String, Path)), request_body = CreateKey, responses((status = 201, body = CreatedIngestKey), (status = 400, description = "Invalid input", body = ErrorResponse), (status = 401, description = "Missing or invalid credentials", body = ErrorResponse), (status = 403, description = "Not allowed", body = ErrorResponse), (status = 404, description = "Not found", body = ErrorResponse)))]
pub async fn create_key(
    State(state): State<AppState>,
    AtLeastMaintainer(principal): AtLeastMaintainer,
    ctx: RequestContext,
    Path(id): Path<String>,
    Json(body): Json<CreateKey>,
) -> Result<Response, HttpError> {
    let created = ingest_keys::create(
        state.db.conn(),
        &id,
        &body.name,
        &principal.user_id,
        &ctx.audit_meta(Some(&principal.user_id)),
    )
    .await?;
    ctx.audit.mark_handled();
    let mut response = (StatusCode::CREATED, axum::Json(created)).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    Ok(response)
}

#[utoipa::path(operation_id = "sources_delete_key", delete, path = "/api/v1/sources/{id}/keys/{key_id}", tag = "sources", security(("bearer" = []), ("api_key" = [])), params(("id" = String, Path), ("key_id" = String, Path)), responses((status = 204), (status = 401, description = "Missing or invalid credentials", body = ErrorResponse), (status = 403, description = "Not allowed", body = ErrorResponse), (status = 404, description = "Not found", body = ErrorResponse)))]
pub async fn delete_key(
    State(state): State<AppState>,
    principal: Principal,
    ctx: RequestContext,
    Path((id, key_id)): Path<(String, String)>,
) -> Result<StatusCode, HttpError> {
    principal.require_role(Role::Maintainer)?;
    let meta = ctx.audit_meta(Some(&principal.user_id));
    ingest_keys::delete(state.db.conn(), &state.ingest_keys, &id, &key_id, &meta).await?;
    ctx.audit.mark_handled();
    Ok(StatusCode::NO_CONTENT)
}
