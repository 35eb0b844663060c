//! `/api/v1/auth/*`: login, refresh, verify, logout, me, change-password and API keys.

use crate::http::openapi::ErrorResponse;
use crate::service::identity::api_keys::CreatedApiKey;
use axum::{
    extract::{Path, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{
    auth::{Principal, roles},
    error::{AppError, FieldError},
    http::error::HttpError,
    http::{
        context::RequestContext,
        extract::{Json, Query},
        pagination::{listing, page},
    },
    service::identity::{api_keys::NewApiKey, sessions::TokenResponse},
    state::AppState,
    time::micros_to_rfc3339,
};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    username: Option<String>,
    email: Option<String>,
    password: String,
}

/// Token responses must not be cached by anything on the way.
fn token_response(status: StatusCode, tokens: TokenResponse) -> Response {
    let mut response = (status, axum::Json(tokens)).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[utoipa::path(operation_id = "auth_login", post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest, responses((status = 200, body = TokenResponse), (status = 400, description = "Invalid input", body = ErrorResponse), (status = 401, description = "Missing or invalid credentials", body = ErrorResponse), (status = 429, description = "Too many failed logins", body = ErrorResponse)))]
pub async fn login(
    State(state): State<AppState>,
    ctx: RequestContext,
    Json(body): Json<LoginRequest>,
) -> Result<Response, HttpError> {
    let login = body
        .username
        .or(body.email)
        .filter(|l| !l.trim().is_empty())
        .ok_or_else(|| AppError::Validation(vec![FieldError::new("username", "username or email is required")]))?;
    let result = state.identity.login(&login, &body.password, &ctx.audit_meta(None), ctx.client_ip).await;
    // The login service audits successes, failures and throttled attempts itself.
    if matches!(&result, Ok(_) | Err(AppError::Unauthorized(_) | AppError::TooManyRequests { .. })) {
        ctx.audit.mark_handled();
    }
    Ok(token_response(StatusCode::OK, result?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    refresh_token: String,
}

#[utoipa::path(operation_id = "auth_refresh", post, path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshRequest, responses((status = 200, body = TokenResponse), (status = 401, description = "Missing or invalid credentials", body = ErrorResponse)))]
pub async fn refresh(
    State(state): State<AppState>,
    ctx: RequestContext,
    Json(body): Json<RefreshRequest>,
) -> Result<Response, HttpError> {
    let tokens = state.identity.refresh(&body.refresh_token, &ctx.audit_meta(None)).await?;
    ctx.audit.mark_handled();
    Ok(token_response(StatusCode::OK, tokens))
}

#[utoipa::path(operation_id = "auth_verify", get, path = "/api/v1/auth/verify", tag = "auth", security(("bearer" = []), ("api_key" = [])), responses((status = 200, body = Verified), (status = 401, description = "Missing or invalid credentials", body = ErrorResponse)))]
pub async fn verify(principal: Principal, ctx: RequestContext) -> Result<Response, HttpError> {
    let expires_at = principal.token.as_ref().map(|claims| micros_to_rfc3339(claims.exp.saturating_mul(1_000_000)));
    Ok(axum::Json(Verified {
        valid: true,
        identity: &principal.user_id,
        username: &principal.username,
        roles: roles::names(&principal.roles),
        permissions: roles::permission_names(&principal.roles),
        auth_method: principal.auth_method.as_str(),
        expires_at,
        correlation_id: &ctx.correlation_id,
    })
    .into_response())
}

/// The body of `GET /api/v1/auth/verify`, typed so that it is written straight out.
#[derive(Serialize, utoipa::ToSchema)]
struct Verified<'a> {
    valid: bool,
    identity: &'a str,
    username: &'a str,
    roles: Vec<&'static str>,
    permissions: Vec<&'static str>,
    auth_method: &'static str,
    expires_at: Option<String>,
    correlation_id: &'a str,
}

#[utoipa::path(operation_id = "auth_logout", post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])), responses((status = 200, body = crate::http::schemas::Message), (status = 400, description = "Invalid input", body = ErrorResponse), (status = 401, description = "Missing or invalid credentials", body = ErrorResponse)))]
pub async fn logout(
    State(state): State<AppState>,
    principal: Principal,
    ctx: RequestContext,
) -> Result<Response, HttpError> {
    let claims = principal
        .token
        .as_ref()
        .ok_or_else(|| AppError::Invalid("Only token sessions can be logged out; delete the API key instead".into()))?;
    state.identity.logout(claims, &ctx.audit_meta(Some(&principal.user_id))).await?;
    ctx.audit.mark_handled();
    Ok(axum::Json(json!({ "message": "Logged out successfully" })).into_response())
}

#[utoipa::path(operation_id = "auth_me", get, path = "/api/v1/auth/me", tag = "auth", security(("bearer" = []), ("api_key" = [])), responses((status = 200, body = crate::http::schemas::Me), (status = 401, description = "Missing or invalid credentials", body = ErrorResponse)))]
pub async fn me(State(state): State<AppState>, principal: Principal) -> Result<Response, HttpError> {
    let user = state
        .identity
        .user_as(&principal.user_id, &principal.roles)
        .await?
        .ok_or_else(|| AppError::Unauthorized("Authentication required".into()))?;
    let mut view = serde_json::to_value(user).map_err(AppError::internal)?;
    view["auth_method"] = json!(principal.auth_method.as_str());
    Ok(axum::Json(view).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    current_password: String,
    new_password: String,
}

#[utoipa::path(operation_id = "auth_change_password", post, path = "/api/v1/auth/change-password", tag = "auth", security(("bearer" = []), ("api_key" = [])), request_body = ChangePasswordRequest, responses((status = 200, body = TokenResponse), (status = 400, description = "Invalid input", body = ErrorResponse), (status = 401, description = "Missing or invalid credentials", body = ErrorResponse), (status = 403, description = "Not allowed", body = ErrorResponse)))]
pub async fn change_password(
    State(state): State<AppState>,
    principal: Principal,
    ctx: RequestContext,
    Json(body): Json<ChangePasswordRequest>,
) -> Result<Response, HttpError> {
    let tokens = state
        .identity
        .change_password(
            &principal.user_id,
            &body.current_password,
            &body.new_password,
            &ctx.audit_meta(Some(&principal.user_id)),
        )
        .await?;
    ctx.audit.mark_handled();
    Ok(token_response(StatusCode::OK, tokens))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct KeyListQuery {
    user_id: Option<String>,
    limit: Option<u64>,
    offset: Option<u64>,
}

#[utoipa::path(operation_id = "auth_list_api_keys", get, path = "/api/v1/auth/api-keys", tag = "api-keys", security(("bearer" = []), ("api_key" = [])), params(KeyListQuery), responses((status = 200, body = crate::http::schemas::ApiKeyList), (status = 400, description = "Invalid input", body = ErrorResponse), (status = 401, description = "Missing or invalid credentials", body = ErrorResponse)))]
pub async fn list_api_keys(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<KeyListQuery>,
) -> Result<Response, HttpError> {
    let page = page(query.limit, query.offset)?;
    let (keys, total) =
        state.identity.list_api_keys(&principal, query.user_id.as_deref(), page.limit, page.offset).await?;
    Ok(axum::Json(listing("api_keys", keys, total, page)).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    #[schema(min_length = 1, max_length = 128)]
    name: String,
    roles: Option<Vec<String>>,
    /// Days until the key expires: at most `API_KEY_MAX_DAYS` (365 unless configured),
    /// which is also the default.
    #[schema(minimum = 1)]
    expires_in_days: Option<u32>,
}

#[utoipa::path(operation_id = "auth_create_api_key", post, path = "/api/v1/auth/api-keys", tag = "api-keys", security(("bearer" = []), ("api_key" = [])), request_body = CreateKeyRequest, responses((status = 201, body = CreatedApiKey), (status = 400, description = "Invalid input", body = ErrorResponse), (status = 401, description = "Missing or invalid credentials", body = ErrorResponse)))]
pub async fn create_api_key(
    State(state): State<AppState>,
    principal: Principal,
    ctx: RequestContext,
    Json(body): Json<CreateKeyRequest>,
) -> Result<Response, HttpError> {
    let roles = body.roles.as_deref().map(|r| roles::parse_list("roles", r)).transpose()?;
    let new = NewApiKey { name: body.name, roles, expires_in_days: body.expires_in_days };
    let created = state.identity.create_api_key(&principal, new, &ctx.audit_meta(Some(&principal.user_id))).await?;
    ctx.audit.mark_handled();
    let mut response = (StatusCode::CREATED, axum::Json(created)).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

#[utoipa::path(operation_id = "auth_delete_api_key", delete, path = "/api/v1/auth/api-keys/{id}", tag = "api-keys", security(("bearer" = []), ("api_key" = [])), params(("id" = String, Path)), responses((status = 204), (status = 401, description = "Missing or invalid credentials", body = ErrorResponse), (status = 404, description = "Not found", body = ErrorResponse)))]
pub async fn delete_api_key(
    State(state): State<AppState>,
    principal: Principal,
    ctx: RequestContext,
    Path(key_id): Path<String>,
) -> Result<StatusCode, HttpError> {
    state.identity.delete_api_key(&principal, &key_id, &ctx.audit_meta(Some(&principal.user_id))).await?;
    ctx.audit.mark_handled();
    Ok(StatusCode::NO_CONTENT)
}
